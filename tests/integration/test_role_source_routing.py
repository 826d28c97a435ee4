"""The source_routing role end to end in the lab (three_isp): the example
playbooks of seeds 001 and 003 together, then a policy removed, bad variables that must fail before anything
changes, then no policy at all.

The router starts with strict reverse-path filtering here (all.rp_filter=1),
so the pinned host's replies, which arrive on wan2 while the main table routes
the server by wan1, only get through because the role made wan2 loose.
"""
import os
import re

import pytest

from tests.lab import topologies
from tests.lab.lab import LabCommandError
from tests.lab.playbook import REPO, recap, run_playbook, snapshot

SEED001 = os.path.join(REPO, 'playbooks', 'seed001_source_host.yml')
SEED003 = os.path.join(REPO, 'playbooks', 'seed003_source_service.yml')
SERVER = topologies.SERVER
MACBOOK = {'name': 'macbook', 'from': ['192.168.1.10'], 'interface': 'wan2',
           'gateway': '192.0.2.1', 'snat': '192.0.2.2'}
DSL = {'name': 'dsl', 'from': ['192.168.1.0/24'], 'protocol': 'tcp', 'dports': [80, 443],
       'interface': 'wan3', 'gateway': '100.65.3.1', 'snat': 'masquerade'}
V6 = {'name': 'client2v6', 'from': ['2001:db8:1:1::11'], 'interface': 'wan2',
      'gateway': '2001:db8:2::1', 'snat': 'masquerade'}

pytestmark = pytest.mark.slow


def uplinks(lab, node, host, port, count=2):
    return {lab.uplink_of(seen) or seen for seen in lab.connect(node, host, port, count=count, timeout=2.0)}


def apply(lab, policies, **kwargs):
    return run_playbook(lab, SEED001, extra_vars={'source_routing_policies': policies}, **kwargs)


BAD = [dict(MACBOOK, interface='ppp0', priority=2000),
       dict({key: value for key, value in DSL.items() if key != 'protocol'}, name='macbook', gateway='192.0.2.300'),
       dict(V6, snat='192.0.2.2')]
BAD_MESSAGES = [
    'source_routing_policies[0] (macbook).priority: not in the range of this role, 1000..1999: 2000',
    "source_routing_policies[1] (macbook).name: two policies are named 'macbook'",
    'source_routing_policies[1] (macbook).dports: needs protocol',
    "source_routing_policies[1] (macbook).gateway: not an IP address: '192.0.2.300'",
    'source_routing_policies[2] (client2v6).snat: 192.0.2.2 is IPv4, but from has IPv6 sources',
]


@pytest.fixture
def lab(lab_factory, monkeypatch):
    monkeypatch.setenv('ANSIBLE_PIPELINING', '1')  # quicker, and the role must work with it
    topology = topologies.three_isp()
    topology['nodes']['router']['sysctls'].update({'net.ipv4.conf.all.rp_filter': 1,
                                                  'net.ipv4.conf.default.rp_filter': 1})
    return lab_factory(topology)


def test_seeds_001_and_003_then_removal(lab):
    before = snapshot(lab)
    checked = apply(lab, [MACBOOK, DSL, V6], check=True)
    assert recap(checked)['changed'] > 0
    assert snapshot(lab) == before, 'check mode changed something'

    # (a second run changing nothing is the molecule scenario's idempotence step)
    assert recap(apply(lab, [MACBOOK, DSL, V6], diff=True))['changed'] > 0

    assert uplinks(lab, 'client1', SERVER, 80) == {'isp2'}       # the pinned host, all services
    assert uplinks(lab, 'client1', SERVER, 5001) == {'isp2'}
    assert lab.connect('client1', SERVER, 5001) == ['192.0.2.2']  # with its SNAT address
    assert uplinks(lab, 'client2', SERVER, 80) == {'isp3'}       # the subnet's web service
    assert uplinks(lab, 'client2', SERVER, 443) == {'isp3'}
    assert uplinks(lab, 'client2', SERVER, 5001) == {'isp1'}     # everything else
    assert uplinks(lab, 'lan2host', SERVER, 80) == {'isp1'}      # not in the subnet
    assert uplinks(lab, 'client2', topologies.SERVER6, 80) == {'isp2'}
    assert uplinks(lab, 'client1', topologies.SERVER6, 80) == {'isp1'}
    assert lab.connect('client1', '192.168.2.10', 80) == ['192.168.1.10']  # the LAN stays reachable
    # loose on the policies' IPv4 uplinks only
    assert [lab.sysctl('router', 'net.ipv4.conf.%s.rp_filter' % name) for name in ('wan1', 'wan2', 'wan3')] \
        == ['1', '2', '2']
    with open(os.path.join(lab.etc('router'), 'netpolicy', 'routing', 'source_routing.json')) as handle:
        assert '"purge_priorities": "1000-1999"' in handle.read()
    assert oct(os.stat(os.path.join(lab.etc('router'), 'netpolicy', 'routing', 'source_routing.json')).st_mode)[-3:] \
        == '600'

    # drift: a NAT rule removed by hand is put back by the next run, and only then is it unchanged
    applied = lab.run('router', 'nft', 'list', 'table', 'inet', 'netpolicy_source_routing').stdout
    lab.run('router', 'nft', 'flush', 'chain', 'inet', 'netpolicy_source_routing', 'postrouting')
    assert recap(apply(lab, [MACBOOK, DSL, V6]))['changed'] == 1
    assert lab.run('router', 'nft', 'list', 'table', 'inet', 'netpolicy_source_routing').stdout == applied
    assert lab.connect('client1', SERVER, 5001) == ['192.0.2.2']

    # seed 003 alone: the pinned host's rule, table, name and NAT go, the rest stays
    assert recap(run_playbook(lab, SEED003))['changed'] > 0
    rules = lab.ip('router', 'rule').stdout
    assert '192.168.1.10' not in rules and 'lookup dsl' in rules
    # dsl is now the first policy: its table and mark are the first assigned ones
    assert lab.ip('router', 'route', 'show', 'table', 'dsl').stdout.startswith('default via 100.65.3.1 dev wan3')
    assert lab.ip('router', 'route', 'show', 'table', '202').stdout == ''
    assert lab.ip('router', '-6', 'route', 'show', 'table', '203').stdout == ''
    names = open(os.path.join(lab.etc('router'), 'iproute2', 'rt_tables.d', 'netpolicy.conf')).read()
    assert 'macbook' not in names and 'client2v6' not in names and 'dsl' in names
    assert '192.0.2.2' not in lab.run('router', 'nft', 'list', 'table', 'inet', 'netpolicy_source_routing').stdout
    assert uplinks(lab, 'client1', SERVER, 80) == {'isp3'}
    assert uplinks(lab, 'client1', SERVER, 5001) == {'isp1'}
    # wan2 carries no policy any more: its own (strict) setting is back
    assert [lab.sysctl('router', 'net.ipv4.conf.%s.rp_filter' % name) for name in ('wan1', 'wan2', 'wan3')] \
        == ['1', '1', '2']

    # bad variables: every problem named, nothing changed
    unchanged = snapshot(lab)
    with pytest.raises(LabCommandError) as failed:
        apply(lab, BAD)
    for message in BAD_MESSAGES:
        assert message in failed.value.output
    assert snapshot(lab) == unchanged
    # what only the router can tell: checked by the change itself, before it touches anything
    with pytest.raises(LabCommandError) as failed:
        apply(lab, [dict(MACBOOK, interface='ppp0')])
    assert "source_routing_policies[0] (macbook).interface: no interface 'ppp0' on the router" in failed.value.output
    assert snapshot(lab) == unchanged

    # nothing: everything the role put on the router goes
    assert recap(apply(lab, []))['changed'] > 0
    after = snapshot(lab)
    assert after['rules'] == before['rules']
    assert after['nft'] == before['nft']
    assert after['rp_filter'] == before['rp_filter']
    assert 'dsl' not in open(os.path.join(lab.etc('router'), 'iproute2', 'rt_tables.d', 'netpolicy.conf')).read()
    assert lab.ip('router', 'route', 'show', 'table', '201').stdout == ''
    assert not os.path.exists(os.path.join(lab.etc('router'), 'netpolicy', 'routing', 'source_routing.nft'))
    assert uplinks(lab, 'client2', SERVER, 80) == {'isp1'}


def test_composes_with_split_access(lab):
    """Seed 002's split access over isp1 and isp2, then the pinned host and the
    web service on top: the explicit policies win (1000-1999 before 3000-3999),
    the rest is still balanced, and neither role undoes the other."""
    split_access = os.path.join(REPO, 'playbooks', 'seed002_split_access.yml')
    run_playbook(lab, split_access)
    apply(lab, [MACBOOK, DSL])
    assert recap(run_playbook(lab, split_access))['changed'] == 0  # source_routing left split_access's alone

    assert uplinks(lab, 'client1', SERVER, 5001, count=6) == {'isp2'}
    assert uplinks(lab, 'client2', SERVER, 80, count=6) == {'isp3'}
    assert uplinks(lab, 'client2', SERVER, 5001, count=6) == {'isp1', 'isp2'}


def test_policies_and_split_access_share_the_uplinks(lab):
    """A policy's host is also the target of split_access's port forward, and a policy
    SNATs to another address of a balanced uplink: the forward still answers on every
    uplink (its replies go before the policy), and the policy's address is used
    whichever nftables table was loaded last."""
    split_access = os.path.join(REPO, 'playbooks', 'seed002_split_access.yml')
    lab.ip('router', 'address', 'add', '192.0.2.74/24', 'dev', 'wan2')
    run_playbook(lab, split_access)
    lanserver = {'name': 'lanserver', 'from': ['192.168.1.50'], 'interface': 'wan3', 'gateway': '100.65.3.1',
                 'snat': 'masquerade'}
    apply(lab, [dict(MACBOOK, snat='192.0.2.74'), lanserver])
    # split_access changed after source_routing: its nftables table is loaded last
    changed = run_playbook(lab, split_access, extra_vars={'split_access_uplinks': [
        {'name': 'isp1', 'interface': 'wan1', 'gateway': '198.51.100.1', 'address': '198.51.100.2', 'table': 1,
         'mark': 1, 'weight': 2},
        {'name': 'isp2', 'interface': 'wan2', 'gateway': '192.0.2.1', 'address': '192.0.2.2', 'table': 2, 'mark': 2}]})
    assert recap(changed)['changed'] > 0

    for address in ('198.51.100.2', '192.0.2.2'):
        assert lab.connect('server', address, 5001, count=3) == [SERVER] * 3
    assert uplinks(lab, 'lanserver', SERVER, 80, count=3) == {'isp3'}
    assert lab.connect('client1', SERVER, 80, count=3) == ['192.0.2.74'] * 3
    assert lab.spoofed_drops('isp1') == 0 and lab.spoofed_drops('isp2') == 0

    # A policy's connection keeps no split_access balancing mark (byte 0xff), so the health
    # monitor's flush of an uplink it does not use (conntrack -D --mark N/0xff) leaves it
    # alone; a balanced connection keeps its uplink's mark.
    with lab.hold('client1', SERVER, 443) as pinned, lab.hold('client2', SERVER, 443) as balanced:
        marks = {}
        for line in lab.run('router', 'conntrack', '-L', '-p', 'tcp', '--dport', '443').stdout.splitlines():
            source = re.search(r'src=(\S+)', line).group(1)
            marks[source] = int(re.search(r'mark=(\d+)', line).group(1))
        assert marks['192.168.1.10'] & 0xff == 0, marks
        assert marks['192.168.1.11'] & 0xff in (1, 2), marks
        assert pinned.alive() and balanced.alive()
