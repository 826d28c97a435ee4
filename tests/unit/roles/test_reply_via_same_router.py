"""The pure logic of the role reply_via_same_router: its two templates, rendered by Ansible's
own templar as the role renders them (input checks, and the desired state: marks, tables,
rules and connmark entries)."""
import json
import os

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

TEMPLATES = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'roles', 'reply_via_same_router', 'templates')
ROUTER2 = {'name': 'router2', 'mac': '52:54:00:C2:A5:43', 'interface': 'eth0', 'gateway': '192.168.1.2'}


def render(name, routers, **variables):
    values = {'reply_via_same_router_routers': routers, 'reply_via_same_router_forward_interfaces': [],
              'reply_via_same_router_confirm_timeout': 0}
    values.update(('reply_via_same_router_' + key, value) for key, value in variables.items())
    with open(os.path.join(TEMPLATES, name)) as handle:
        source = trust_as_template(handle.read())
    return Templar(loader=DataLoader(), variables=values).template(source)


def errors(routers, **variables):
    text = render('errors.j2', routers, **variables).strip()
    return text.split('; ') if text else []


def state(routers, **variables):
    return json.loads(render('state.json.j2', routers, **variables))


def test_seed004_state():
    desired = state([dict(ROUTER2, exclude_sources=['192.168.1.0/24'], services=[{'proto': 'tcp', 'port': 80}],
                          mark=2, table=200)])
    assert desired == {
        'role': 'reply_via_same_router', 'version': 1,
        'rt_tables_entry': {'entries': [{'name': 'router2', 'id': 200}]},
        'route_table': {'tables': [{'table': '200', 'purge': True,
                                    'routes': [{'dest': 'default', 'gateway': '192.168.1.2', 'dev': 'eth0'}]}]},
        'ip_rule': {'purge_priorities': '500-999',
                    'rules': [{'priority': 502, 'fwmark': '0x20000/0xff0000', 'table': '200', 'family': 'ipv4'}]},
        'connmark_return': {
            'name': 'reply_via_router', 'mask': 0xff0000,
            'entries': [{'mark': 0x20000, 'in_interface': 'eth0', 'source_mac': '52:54:00:c2:a5:43',
                         'exclude_source': ['192.168.1.0/24'], 'protocol': 'tcp', 'dport': 80}],
            'restore_on': {'output': True, 'prerouting': []}},
    }


def test_marks_and_tables_not_given_are_the_lowest_free_in_list_order():
    routers = [dict(ROUTER2, name='a', mac='52:54:00:00:00:0a'),
               dict(ROUTER2, name='b', mac='52:54:00:00:00:0b', mark=1, table=302),
               dict(ROUTER2, name='c', mac='52:54:00:00:00:0c')]
    desired = state(routers)
    assert desired['rt_tables_entry']['entries'] == [{'name': 'a', 'id': 301}, {'name': 'b', 'id': 302},
                                                     {'name': 'c', 'id': 303}]
    assert [entry['mark'] for entry in desired['connmark_return']['entries']] == [0x20000, 0x10000, 0x30000]
    assert [rule['priority'] for rule in desired['ip_rule']['rules']] == [502, 501, 503]


def test_second_uplink_by_interface_both_families():
    desired = state([{'name': 'isp2', 'interface': 'wan2', 'gateway': '192.0.2.1', 'gateway6': '2001:db8:2::1'}],
                    forward_interfaces=['docker0'])
    assert desired['route_table']['tables'][0]['routes'] == [
        {'dest': 'default', 'gateway': '192.0.2.1', 'dev': 'wan2'},
        {'dest': 'default', 'gateway': '2001:db8:2::1', 'dev': 'wan2'}]
    assert [rule['family'] for rule in desired['ip_rule']['rules']] == ['ipv4', 'ipv6']
    assert desired['connmark_return']['entries'] == [{'mark': 0x10000, 'in_interface': 'wan2', 'exclude_source': []}]
    assert desired['connmark_return']['restore_on'] == {'output': True, 'prerouting': ['docker0']}


def test_point_to_point_uplink_without_gateway():
    desired = state([{'name': 'dsl', 'interface': 'ppp0'}])
    assert desired['route_table']['tables'][0]['routes'] == [{'dest': 'default', 'dev': 'ppp0'}]


def test_no_routers_no_state():
    desired = state([])
    assert desired['ip_rule']['rules'] == [] and desired['connmark_return']['entries'] == []


@pytest.mark.parametrize('routers', [
    [],
    [ROUTER2],
    [dict(ROUTER2, exclude_sources=['192.168.1.0/24', '2001:db8::/32', '10.0.0.1', '::1'],
          services=[{'proto': 'tcp', 'port': 80}, {'proto': 'udp', 'port': '8000-8100'}], mark=255, table=7375)],
    [{'name': 'isp2', 'interface': 'wan2', 'gateway': '192.0.2.1', 'gateway6': 'fe80::1'},
     {'name': 'isp3.v6', 'interface': 'wan3', 'gateway': '2001:db8:3::1'}, {'name': 'dsl', 'interface': 'ppp0'}],
    [ROUTER2, dict(ROUTER2, name='router3', mac='52:54:00:00:03:01', gateway='192.168.1.3')],
])
def test_good_input(routers):
    assert errors(routers) == []


@pytest.mark.parametrize('router, message', [
    (dict(ROUTER2, name='main'), "(main).name: not a usable routing table name: 'main'"),
    (dict(ROUTER2, name='200'), "(200).name: not a usable routing table name: '200'"),
    (dict(ROUTER2, name='a b'), "(a b).name: not a usable routing table name"),
    (dict(ROUTER2, mac='52:54:00:c2:a5'), "(router2).mac: not a MAC address (aa:bb:cc:dd:ee:ff): '52:54:00:c2:a5'"),
    (dict(ROUTER2, mac='52-54-00-c2-a5-43'), "(router2).mac: not a MAC address"),
    (dict(ROUTER2, gateway=None), "(router2).gateway: required with mac"),
    (dict(ROUTER2, gateway='192.168.1.256'), "(router2).gateway: not an IP address: '192.168.1.256'"),
    (dict(ROUTER2, gateway='2001:db8:::1'), "(router2).gateway: not an IP address"),
    (dict(ROUTER2, gateway6='192.168.1.3'), "(router2).gateway6: not an IPv6 address"),
    (dict(ROUTER2, gateway='2001:db8::2', gateway6='2001:db8::3'), "(router2).gateway6: needs an IPv4 gateway beside it"),
    (dict(ROUTER2, interface='eth0/1'), "(router2).interface: not an interface name: 'eth0/1'"),
    (dict(ROUTER2, interface='a-very-long-interface'), "(router2).interface: not an interface name"),
    (dict(ROUTER2, exclude_sources=['192.168.1.0/33']),
     "(router2).exclude_sources[0]: not an IP address or prefix: '192.168.1.0/33'"),
    (dict(ROUTER2, exclude_sources=['lan']), "(router2).exclude_sources[0]: not an IP address or prefix: 'lan'"),
    (dict(ROUTER2, exclude_sources='192.168.1.0/24'), "(router2).exclude_sources: not a list"),
    (dict(ROUTER2, services=[{'proto': 'icmp', 'port': 80}]), "(router2).services[0].proto: not one of tcp, udp, sctp"),
    (dict(ROUTER2, services=[{'proto': 'tcp', 'port': 0}]), "(router2).services[0].port: not a port"),
    (dict(ROUTER2, services=[{'proto': 'tcp', 'port': 65536}]), "(router2).services[0].port: not a port"),
    (dict(ROUTER2, services=[{'proto': 'tcp', 'port': '90-80'}]), "(router2).services[0].port: not a port"),
    (dict(ROUTER2, mark=0), "(router2).mark: not a number 1..255: 0"),
    (dict(ROUTER2, mark=256), "(router2).mark: not a number 1..255: 256"),
    (dict(ROUTER2, table=254), "(router2).table: not a table number 1..2147483647 (not 253-255): 254"),
    (dict(ROUTER2, table=2147483648), "(router2).table: not a table number"),
])
def test_bad_input_names_the_field(router, message):
    found = errors([router])
    assert len(found) == 1 and found[0].startswith('reply_via_same_router_routers[0] ' + message), found


@pytest.mark.parametrize('second, message', [
    (dict(ROUTER2, mac='52:54:00:00:03:01'), "[1] (router2).name: used twice"),
    (dict(ROUTER2, name='r3', mac='52:54:00:00:03:01', mark=4), "[1] (r3).mark: 4 is used by another entry"),
    (dict(ROUTER2, name='r3', mac='52:54:00:00:03:01', table=200), "[1] (r3).table: 200 is used by another entry"),
    (dict(ROUTER2, name='r3', mac='52:54:00:c2:a5:43'), "[1] (r3): another entry already matches mac 52:54:00:c2:a5:43"),
])
def test_conflicting_entries(second, message):
    first = dict(ROUTER2, mark=4, table=200)
    assert errors([first, second]) == ['reply_via_same_router_routers' + message]


def test_two_uplinks_on_one_interface_conflict():
    uplinks = [{'name': 'a', 'interface': 'wan2'}, {'name': 'b', 'interface': 'wan2'}]
    assert errors(uplinks) == ['reply_via_same_router_routers[1] (b): another entry already matches interface wan2']


def test_every_problem_at_once_and_the_other_variables():
    found = errors([dict(ROUTER2, mac='x', mark=0)], forward_interfaces=['bad name'], confirm_timeout=-1)
    assert found == [
        "reply_via_same_router_routers[0] (router2).mac: not a MAC address (aa:bb:cc:dd:ee:ff): 'x'",
        'reply_via_same_router_routers[0] (router2).mark: not a number 1..255: 0',
        "reply_via_same_router_forward_interfaces[0]: not an interface name: 'bad name'",
        'reply_via_same_router_confirm_timeout: must be 0 or more',
    ]
