"""The split_access role end to end in the lab: the example playbook of seed 002
on two_isp, then changes (check mode, a weight change under a live connection,
seed 003's uplinks instead of seed 002's, everything removed, bad variables).

The three-uplink measurement (400 connections split 1:2:1) is the molecule
scenario's (roles/split_access/molecule/default).
"""
import contextlib
import os
import re

import pytest

from tests.lab import topologies
from tests.lab.lab import LabCommandError
from tests.lab.playbook import REPO, recap, run_playbook, snapshot

PLAYBOOK = os.path.join(REPO, 'playbooks', 'seed002_split_access.yml')
SEED003 = os.path.join(REPO, 'playbooks', 'seed003_dsl_cable.yml')
SERVER = topologies.SERVER
ISP1 = {'name': 'isp1', 'interface': 'wan1', 'gateway': '198.51.100.1', 'address': '198.51.100.2', 'table': 1, 'mark': 1}
ISP2 = {'name': 'isp2', 'interface': 'wan2', 'gateway': '192.0.2.1', 'address': '192.0.2.2', 'table': 2, 'mark': 2}
UPLINK_ADDRESSES = {'isp1': '198.51.100.2', 'isp2': '192.0.2.2'}

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures('pipelining')]


def test_seed002_on_two_isp(lab_factory):
    topology = topologies.two_isp()
    topology['nodes']['router']['listen'] = [7000]  # a service of the router itself
    lab = lab_factory(topology)
    before = snapshot(lab)
    checked = run_playbook(lab, PLAYBOOK, check=True)
    assert recap(checked)['changed'] > 0
    assert snapshot(lab) == before, 'check mode changed something'

    # (a second run changing nothing: the molecule scenario's idempotence step)
    applied = run_playbook(lab, PLAYBOOK, diff=True)
    assert recap(applied)['changed'] > 0

    # new LAN connections alternate over the two uplinks, from both LAN subnets
    assert lab.uplinks_used('client1', SERVER, 80, 20) == {'isp1': 10, 'isp2': 10}
    assert set(lab.uplinks_used('lan2host', SERVER, 80, 6)) == {'isp1', 'isp2'}
    # the router's own connections: multipath, L4 hash; bound ones leave by their address
    own = lab.uplinks_used('router', SERVER, 80, 20)
    assert 'failed' not in own and len(own) == 2, own
    for uplink, address in UPLINK_ADDRESSES.items():
        assert lab.uplinks_used('router', SERVER, 80, 3, bind=address) == {uplink: 3}
        # the forwarded port answers on each uplink: its replies leave by the uplink they came in on
        assert lab.connect('server', address, 5001, count=3) == [SERVER] * 3
    assert lab.spoofed_drops('isp1') == 0 and lab.spoofed_drops('isp2') == 0

    rules = lab.ip('router', 'rule').stdout
    assert 'fwmark 0x2/0xff lookup isp2' in rules and 'from 192.0.2.2 lookup isp2' in rules
    assert lab.sysctl('router', 'net.ipv4.conf.all.src_valid_mark') == '1'
    with open(os.path.join(lab.etc('router'), 'netpolicy', 'routing', 'split_access.json')) as handle:
        assert '"purge_priorities": "400-499,3000-3999"' in handle.read()

    # an established connection keeps its uplink when the recipe changes
    # (weights 3:1, and isp2's address dynamic: masquerade, no source-address rule)
    isp2_dynamic = {key: value for key, value in ISP2.items() if key != 'address'}
    with lab.hold('client1', SERVER, 443) as held:
        changed = run_playbook(lab, PLAYBOOK, extra_vars={'split_access_uplinks': [
            dict(ISP1, weight=3), dict(isp2_dynamic, weight=1)]})
        assert recap(changed)['changed'] > 0
        assert held.alive()
        assert lab.uplinks_used('client2', SERVER, 80, 8) == {'isp1': 6, 'isp2': 2}
        assert held.alive()
    # the router's own service answers by the uplink the connection came in on, also
    # where no source-address rule says so (else half of the replies would leave by isp1)
    assert lab.connect('server', '192.0.2.2', 7000, count=6) == [SERVER] * 6

    # seed 003 on the same router: the uplinks isp1 and isp2 leave the inventory
    # (everything that was there for them goes), cable and dsl come, failover
    run_playbook(lab, SEED003)
    rules = lab.ip('router', 'rule').stdout
    assert 'isp1' not in rules and 'isp2' not in rules and 'lookup cable' in rules
    assert lab.ip('router', 'route', 'show', 'table', '2').stdout.strip() == ''
    with open(os.path.join(lab.etc('router'), 'iproute2', 'rt_tables.d', 'netpolicy.conf')) as handle:
        names = handle.read()
    assert 'isp1' not in names and 'isp2' not in names and 'cable' in names
    assert 'dnat ip to 192.168.1.50:80' in lab.run('router', 'nft', 'list', 'table', 'inet', 'netpolicy_split_access').stdout
    # failover: every new connection by the first uplink (the cable), the router's own too
    assert lab.uplinks_used('client1', SERVER, 80, 4) == {'isp2': 4}
    assert lab.uplinks_used('router', SERVER, 80, 4) == {'isp2': 4}
    assert lab.uplinks_used('router', SERVER, 80, 2, bind='198.51.100.2') == {'isp1': 2}
    assert lab.connect('server', '198.51.100.2', 80, count=2) == [SERVER] * 2

    # no uplinks: the role's rules, nftables table and files are gone
    run_playbook(lab, PLAYBOOK, extra_vars={'split_access_uplinks': []})
    after = snapshot(lab)
    assert not re.search(r'^3\d{3}:', after['rules'], re.M)
    assert 'netpolicy_split_access' not in after['nft']
    assert not any('split_access' in path for path in after['files'])


def test_bad_variables_change_nothing(two_isp_lab):
    lab = two_isp_lab
    before = snapshot(lab)
    with pytest.raises(LabCommandError) as failed:
        run_playbook(lab, PLAYBOOK, extra_vars={'split_access_uplinks': [{'name': 'isp1', 'gateway': '198.51.100.1'}]})
    assert 'interface' in failed.value.stderr
    bad = {
        'split_access_uplinks': [
            ISP1,
            dict(ISP2, mark=1, weight=0, gateway='192.0.2.300'),
            {'name': 'isp1', 'interface': 'wan3', 'table': 254},
        ],
        'split_access_port_forwards': [
            {'port': 80, 'to': '203.0.113.10'},
            {'port': 5001, 'to': '192.168.1.50', 'uplinks': ['isp9']},
        ],
    }
    with pytest.raises(LabCommandError) as failed:
        run_playbook(lab, PLAYBOOK, extra_vars=bad)
    output = failed.value.stderr
    for message in [
        "split_access_uplinks[1] (isp2).gateway: not an IPv4 address: '192.0.2.300'",
        'split_access_uplinks[1] (isp2).mark: the same as an earlier uplink: 1',
        'split_access_uplinks[1] (isp2).weight: not 1..256: 0',
        "split_access_uplinks[2] (isp1).name: the same as an earlier uplink: 'isp1'",
        'split_access_uplinks[2] (isp1).table: not a usable table number',
        "split_access_port_forwards[1].uplinks[0]: not an uplink of split_access_uplinks: 'isp9'",
    ]:
        assert message in output, message
    assert snapshot(lab) == before
    # what only the router can tell, checked by the change itself before it touches anything
    router_only = {
        'split_access_uplinks': [ISP1, dict(ISP2, interface='wan3')],
        'split_access_port_forwards': [{'port': 80, 'to': '203.0.113.10'}, {'port': 81, 'to': '192.168.1.1'}],
    }
    with pytest.raises(LabCommandError) as failed:
        run_playbook(lab, PLAYBOOK, extra_vars=router_only)
    for message in [
        "split_access_uplinks[1] (isp2).interface: no interface 'wan3' on the router",
        'split_access_port_forwards[0].to: 203.0.113.10 is not a host of the subnets of lan0, lan1 (192.168.1.1/24',
        'split_access_port_forwards[1].to: 192.168.1.1 is not a host of the subnets of lan0, lan1',
    ]:
        assert message in failed.value.stdout + failed.value.stderr, message
    assert snapshot(lab) == before


def test_multipath(two_isp_lab):
    lab = two_isp_lab
    run_playbook(lab, PLAYBOOK, extra_vars={'split_access_balance': 'multipath'})
    # no marks for the LAN: the kernel's multipath route hashes each flow (ports included)
    assert 'numgen' not in lab.run('router', 'nft', 'list', 'table', 'inet', 'netpolicy_split_access').stdout
    spread = lab.uplinks_used('client1', SERVER, 80, 20)
    assert 'failed' not in spread and len(spread) == 2, spread
    # a connection keeps the uplink its first packet took when the weights change (the
    # hash would send about a third of them to the other uplink, with the wrong source)
    with contextlib.ExitStack() as stack:
        held = [stack.enter_context(lab.hold('client1', SERVER, 443)) for dummy in range(12)]
        run_playbook(lab, PLAYBOOK, extra_vars={'split_access_balance': 'multipath',
                                                'split_access_uplinks': [dict(ISP1, weight=5), ISP2]})
        assert [connection.alive() for connection in held] == [True] * 12
    assert lab.spoofed_drops('isp1') == 0 and lab.spoofed_drops('isp2') == 0
    for address in UPLINK_ADDRESSES.values():
        assert lab.connect('server', address, 5001, count=2) == [SERVER] * 2
