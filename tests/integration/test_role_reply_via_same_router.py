"""The role netpolicy.routing.reply_via_same_router end to end, in the namespace lab.

Seed 004 itself (two routers) is the role's Molecule scenario; here: three
routers on one LAN, a router's MAC changing, bad input, and a host with two
uplinks of its own (the interface case, IPv4 and IPv6).
"""
import json
import re

import pytest

from tests.lab import topologies
from tests.lab.lab import LabCommandError
from tests.lab.playbook import run_playbook, snapshot

pytestmark = pytest.mark.slow

PLAYBOOK = '''---
- name: Apply the role reply_via_same_router
  hosts: "{{ target }}"
  gather_facts: false
  roles:
    - role: netpolicy.routing.reply_via_same_router
'''

STATE_FILE = 'netpolicy/routing/reply_via_same_router.json'
THREE_ROUTERS = [
    {'name': 'router2', 'mac': '52:54:00:00:02:01', 'interface': 'eth0', 'gateway': '192.168.1.2',
     'exclude_sources': ['192.168.1.0/24']},
    {'name': 'router3', 'mac': '52:54:00:00:03:01', 'interface': 'eth0', 'gateway': '192.168.1.3',
     'exclude_sources': ['192.168.1.0/24'], 'services': [{'proto': 'tcp', 'port': 80}]},
]
# The public address of each router, as the internet server reaches it.
ROUTER_WAN = {'router1': '198.51.100.2', 'router2': '192.0.2.2', 'router3': '100.65.3.2'}


def apply(lab, tmp_path, target, routers, check=False, **variables):
    """Run the role on ``target``; return the number of changed tasks."""
    playbook = tmp_path / 'reply_via_same_router.yml'
    playbook.write_text(PLAYBOOK)
    extra = {'target': target, 'reply_via_same_router_routers': routers,
             'reply_via_same_router_install_dependencies': False}
    extra.update(variables)
    proc = run_playbook(lab, str(playbook), extra_vars=extra, nodes=[target], check=check)
    return int(re.search(r'changed=(\d+)', proc.stdout).group(1))


def reaches(lab, router, port=80, count=2):
    """True when every new connection from the internet through ``router`` is answered."""
    return all(lab.connect('server', ROUTER_WAN[router], port, count=count, timeout=1.5))


BAD_INPUT = [
    # every problem of the input at once
    ([dict(THREE_ROUTERS[0], mac='52:54:00:00:02', exclude_sources=['192.168.1.0/33']),
      dict(THREE_ROUTERS[1], mark=1), dict(THREE_ROUTERS[1], name='router4', mark=1)],
     ["reply_via_same_router_routers[0] (router2).mac: not a MAC address (aa:bb:cc:dd:ee:ff): '52:54:00:00:02'",
      "reply_via_same_router_routers[0] (router2).exclude_sources[0]: not an IP address or prefix: '192.168.1.0/33'",
      "reply_via_same_router_routers[2] (router4).mark: 1 is used by another entry",
      "reply_via_same_router_routers[2] (router4): another entry already matches mac 52:54:00:00:03:01"]),
    # what only the host can tell
    ([THREE_ROUTERS[0], dict(THREE_ROUTERS[1], gateway='10.9.9.9')],
     ["reply_via_same_router_routers[1] (router3).gateway: 10.9.9.9 is not on the subnet of interface eth0"]),
    ([dict(THREE_ROUTERS[0], interface='eth9')], ["reply_via_same_router_routers[0] (router2).interface: no interface 'eth9' on the router"]),
]


def test_three_routers_each_answers_through_itself(lab_factory, tmp_path):
    lab = lab_factory(topologies.three_routers())
    assert reaches(lab, 'router1')
    assert not any(lab.connect('server', ROUTER_WAN['router2'], 80, count=1, timeout=1.0))

    assert apply(lab, tmp_path, 'backend', THREE_ROUTERS) > 0
    for router in ('router1', 'router2', 'router3'):
        assert reaches(lab, router), router
    # router3 only for its listed service: port 5001 through it still fails
    assert lab.connect('server', ROUTER_WAN['router3'], 5001, timeout=1.0) == [None]
    # the backend's own connections keep leaving by its default router
    assert lab.connect('backend', topologies.SERVER, 80, count=3) == ['198.51.100.2'] * 3

    rules = lab.ip('backend', 'rule').stdout
    assert 'fwmark 0x10000/0xff0000 lookup router2' in rules
    assert 'fwmark 0x20000/0xff0000 lookup router3' in rules
    with open('%s/%s' % (lab.etc('backend'), STATE_FILE)) as handle:
        saved = json.load(handle)
    assert [entry['id'] for entry in saved['rt_tables_entry']['entries']] == [301, 302]

    assert apply(lab, tmp_path, 'backend', THREE_ROUTERS) == 0

    # bad input fails before anything changes, naming the entry and field
    before = snapshot(lab, 'backend')
    for routers, messages in BAD_INPUT:
        with pytest.raises(LabCommandError) as failed:
            apply(lab, tmp_path, 'backend', routers)
        for message in messages:
            assert message in failed.value.stdout
        assert snapshot(lab, 'backend') == before, messages

    # router3 gets a new MAC (say its NIC was replaced): only its entries change, a connection
    # that came through router2 lives on
    moved = [dict(THREE_ROUTERS[0]), dict(THREE_ROUTERS[1], mac='52:54:00:00:03:99')]
    before = lab.ip('backend', 'rule').stdout
    with lab.hold('server', ROUTER_WAN['router2'], 5001) as held:
        assert apply(lab, tmp_path, 'backend', moved) > 0
        assert held.alive()
    assert lab.ip('backend', 'rule').stdout == before
    assert reaches(lab, 'router2')
    assert lab.connect('server', ROUTER_WAN['router3'], 80, timeout=1.0) == [None]

    # router3 leaves the inventory: its rule, routes and name go, router2 stays
    assert apply(lab, tmp_path, 'backend', THREE_ROUTERS[:1]) > 0
    assert 'router3' not in lab.ip('backend', 'rule').stdout
    assert lab.ip('backend', 'route', 'show', 'table', '302').stdout == ''
    with open('%s/iproute2/rt_tables.d/netpolicy.conf' % lab.etc('backend')) as handle:
        assert 'router3' not in handle.read()
    assert reaches(lab, 'router2')


def test_second_uplink_of_the_host_itself(lab_factory, tmp_path):
    """A router with two uplinks of its own: connections to its wan2 address are answered by wan2
    (matched by interface, not MAC), IPv4 and IPv6, also those it forwards to a LAN server
    (reply_via_same_router_forward_interfaces); its own traffic keeps the main table (isp1)."""
    topology = topologies.two_isp()
    router = topology['nodes']['router']
    router['listen'] = [8080]
    router['nft'] += topologies.port_forward('wan2', '192.168.1.50', [5001]).replace('lab_nat', 'lab_dnat')
    # strict reverse-path filtering: the role must loosen it on wan2 for the connections to arrive
    router['sysctls'] = {'net.ipv4.conf.all.rp_filter': 1, 'net.ipv4.conf.default.rp_filter': 1}
    lab = lab_factory(topology)
    flows = [('192.0.2.2', 8080, topologies.SERVER), ('2001:db8:2::2', 8080, topologies.SERVER6),
             ('192.0.2.2', 5001, topologies.SERVER)]
    for host, port, dummy in flows:
        assert lab.connect('server', host, port, timeout=1.0) == [None], (host, port)

    uplink = [{'name': 'isp2', 'interface': 'wan2', 'gateway': '192.0.2.1', 'gateway6': '2001:db8:2::1'}]
    variables = {'reply_via_same_router_forward_interfaces': ['lan0'], 'reply_via_same_router_persist': False}
    before = snapshot(lab, 'router')
    assert apply(lab, tmp_path, 'router', uplink, check=True, **variables) > 0
    assert snapshot(lab, 'router') == before
    assert apply(lab, tmp_path, 'router', uplink, **variables) > 0

    for host, port, seen in flows:
        assert lab.connect('server', host, port, count=2) == [seen] * 2, (host, port)
    assert lab.connect('server', '198.51.100.2', 8080) == [topologies.SERVER]
    assert lab.connect('router', topologies.SERVER, 80) == ['198.51.100.2']
    assert lab.connect('client1', topologies.SERVER, 80) == ['198.51.100.2']
    assert 'fwmark 0x10000/0xff0000 lookup isp2' in lab.ip('router', '-6', 'rule').stdout
    assert lab.sysctl('router', 'net.ipv4.conf.wan2.rp_filter') == '2'
    assert apply(lab, tmp_path, 'router', uplink, **variables) == 0
