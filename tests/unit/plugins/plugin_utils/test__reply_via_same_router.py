"""The reply_via_same_router role's variables on the controller: checked (every problem, naming
the entry and the field), and turned into apply_state's state and checks: marks, tables, rules,
connmark entries, reverse-path filters (plugins/plugin_utils/_reply_via_same_router.py)."""
import json

import pytest

from ansible_collections.netpolicy.routing.plugins.module_utils._rules import parse_fwmark
from ansible_collections.netpolicy.routing.plugins.plugin_utils._reply_via_same_router import role_input

ROUTER2 = {'name': 'router2', 'mac': '52:54:00:C2:A5:43', 'interface': 'eth0', 'gateway': '192.168.1.2'}
SYSCTL_FILE = '/etc/sysctl.d/60-netpolicy-reply_via_same_router.conf'


def variables(routers, **more):
    found = {'reply_via_same_router_routers': routers, 'reply_via_same_router_forward_interfaces': [],
             'reply_via_same_router_confirm_timeout': 0}
    found.update(('reply_via_same_router_' + key, value) for key, value in more.items())
    return found


def errors(routers, **more):
    found = role_input(variables(routers, **more))
    assert not found.errors or (found.state, found.checks) == (None, None)
    return found.errors


def state(routers, **more):
    found = role_input(variables(routers, **more))
    assert found.errors == [], found.errors
    json.dumps(found.state)  # what the module gets, through JSON
    return found.state


def checks(routers, **more):
    found = role_input(variables(routers, **more))
    assert found.errors == [], found.errors
    return found.checks


# ---------------------------------------------------------------- the desired state

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
        # a router matched by its MAC needs no looser reverse-path filter
        'sysctl': {'file': SYSCTL_FILE, 'values': {}},
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


def test_a_given_mark_or_table_later_in_the_list_is_not_taken_by_an_earlier_entry():
    routers = [dict(ROUTER2, name='a', mac='52:54:00:00:00:0a'),
               dict(ROUTER2, name='b', mac='52:54:00:00:00:0b', mark=1, table=301)]
    desired = state(routers)
    assert [entry['id'] for entry in desired['rt_tables_entry']['entries']] == [302, 301]
    assert [rule['fwmark'] for rule in desired['ip_rule']['rules']] == ['0x20000/0xff0000', '0x10000/0xff0000']


def test_second_uplink_by_interface_both_families():
    desired = state([{'name': 'isp2', 'interface': 'wan2', 'gateway': '192.0.2.1', 'gateway6': '2001:db8:2::1'}],
                    forward_interfaces=['docker0'])
    assert desired['route_table']['tables'][0]['routes'] == [
        {'dest': 'default', 'gateway': '192.0.2.1', 'dev': 'wan2'},
        {'dest': 'default', 'gateway': '2001:db8:2::1', 'dev': 'wan2'}]
    assert [rule['family'] for rule in desired['ip_rule']['rules']] == ['ipv4', 'ipv6']
    assert desired['connmark_return']['entries'] == [{'mark': 0x10000, 'in_interface': 'wan2', 'exclude_source': []}]
    assert desired['connmark_return']['restore_on'] == {'output': True, 'prerouting': ['docker0']}
    assert desired['sysctl'] == {'file': SYSCTL_FILE, 'values': {'net.ipv4.conf.wan2.rp_filter': '2'}}


def test_an_ipv6_gateway_alone_gives_an_ipv6_rule():
    desired = state([{'name': 'isp3', 'interface': 'wan3', 'gateway': '2001:db8:3::1'}])
    assert [rule['family'] for rule in desired['ip_rule']['rules']] == ['ipv6']


def test_point_to_point_uplink_without_gateway():
    desired = state([{'name': 'dsl', 'interface': 'ppp0'}])
    assert desired['route_table']['tables'][0]['routes'] == [{'dest': 'default', 'dev': 'ppp0'}]
    assert [rule['family'] for rule in desired['ip_rule']['rules']] == ['ipv4']


def test_no_routers_no_state():
    desired = state([])
    assert desired['ip_rule']['rules'] == [] and desired['connmark_return']['entries'] == []


def test_one_entry_per_service():
    services = [{'proto': 'tcp', 'port': 80}, {'proto': 'udp', 'port': '8000-8100'}]
    entries = state([dict(ROUTER2, services=services)])['connmark_return']['entries']
    assert [(entry['protocol'], entry['dport']) for entry in entries] == [('tcp', 80), ('udp', '8000-8100')]
    assert all(entry['source_mac'] == '52:54:00:c2:a5:43' for entry in entries)


def test_reverse_path_filters_of_the_uplinks_matched_by_interface():
    routers = [{'name': 'a', 'interface': 'wan'}, {'name': 'b', 'interface': 'WAN'},
               {'name': 'c', 'interface': 'eth0.100', 'mac': None},  # a null MAC is no MAC
               {'name': 'd', 'interface': 'wan', 'mac': '52:54:00:00:00:0d', 'gateway': '192.0.2.1'},
               dict(ROUTER2)]
    values = state(routers)['sysctl']['values']
    # interface names are case-sensitive (the Jinja's unique filter was not: it dropped WAN);
    # a VLAN's dot is a slash in a sysctl name
    assert values == {'net.ipv4.conf.wan.rp_filter': '2', 'net.ipv4.conf.WAN.rp_filter': '2',
                      'net.ipv4.conf.eth0/100.rp_filter': '2'}


def test_names_and_interfaces_checked_as_text_go_on_as_text():
    # A name of 1.5 or True passes the checks as text; the agent refuses a saved state that
    # has a number or a bool for a name.
    desired = state([{'name': 1.5, 'interface': 5, 'gateway': 'FE80::A'}])
    assert desired['rt_tables_entry']['entries'] == [{'name': '1.5', 'id': 301}]
    assert desired['route_table']['tables'][0]['routes'] == [{'dest': 'default', 'gateway': 'FE80::A', 'dev': '5'}]
    assert state([{'name': True, 'interface': 'lan0'}])['rt_tables_entry']['entries'][0]['name'] == 'True'


# ---------------------------------------------------------------- checks, empty, defaults

def test_checks_of_what_only_the_host_can_tell():
    routers = [dict(ROUTER2, gateway6='2001:db8::2'), {'name': 'dsl', 'interface': 'ppp0'}]
    assert checks(routers, forward_interfaces=['docker0']) == [
        {'field': 'reply_via_same_router_routers[0] (router2).interface', 'interface': 'eth0'},
        {'field': 'reply_via_same_router_routers[1] (dsl).interface', 'interface': 'ppp0'},
        {'field': 'reply_via_same_router_forward_interfaces[0]', 'interface': 'docker0'},
        {'field': 'reply_via_same_router_routers[0] (router2).gateway', 'gateway': '192.168.1.2', 'interface': 'eth0'},
        {'field': 'reply_via_same_router_routers[0] (router2).gateway6', 'gateway': '2001:db8::2',
         'interface': 'eth0'},
    ]


@pytest.mark.parametrize('routers, forward_interfaces, empty', [
    ([], [], True),
    ([], ['docker0'], True),  # nothing to mark: nothing to save for the agent
    ([ROUTER2], [], False),
])
def test_empty_when_there_is_no_router(routers, forward_interfaces, empty):
    found = role_input(variables(routers, forward_interfaces=forward_interfaces))
    assert found.errors == [] and found.empty is empty


def test_missing_variables_take_the_role_defaults():
    found = role_input({})
    assert found.errors == [] and found.empty
    assert found.checks == [] and found.state == state([])
    found = role_input({'reply_via_same_router_routers': [ROUTER2]})
    assert found.errors == [] and not found.empty


# ---------------------------------------------------------------- the checks of the variables

@pytest.mark.parametrize('routers', [
    [],
    [ROUTER2],
    [dict(ROUTER2, exclude_sources=['192.168.1.0/24', '2001:db8::/32', '10.0.0.1', '::1'],
          services=[{'proto': 'tcp', 'port': 80}, {'proto': 'udp', 'port': '8000-8100'}], mark=255, table=7375)],
    [{'name': 'isp2', 'interface': 'wan2', 'gateway': '192.0.2.1', 'gateway6': 'fe80::1'},
     {'name': 'isp3.v6', 'interface': 'wan3', 'gateway': '2001:db8:3::1'}, {'name': 'dsl', 'interface': 'ppp0'}],
    [ROUTER2, dict(ROUTER2, name='router3', mac='52:54:00:00:03:01', gateway='192.168.1.3')],
    # the edges of what is allowed
    [dict(ROUTER2, services=[{'proto': 'sctp', 'port': '1-65535'}, {'proto': 'tcp', 'port': '080'},
                             {'proto': 'tcp', 'port': '5-5'}], mark=1, table=1),
     dict(ROUTER2, name='r3', mac='52:54:00:00:03:01', table=2147483647, gateway='FE80::1',
          exclude_sources=['::/0', '0.0.0.0/0', '1:2:3:4:5:6:7:8', '::ffff:1'])],
    [{'name': 'n%d' % index, 'interface': 'e%d' % index} for index in range(255)],
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
    (dict(ROUTER2, exclude_sources=['192.168.1.1/24']),
     "(router2).exclude_sources[0]: 192.168.1.1/24 has host bits set (did you mean 192.168.1.0/24?)"),
    (dict(ROUTER2, exclude_sources=['2001:db8::1/64']),
     "(router2).exclude_sources[0]: 2001:db8::1/64 has host bits set (did you mean 2001:db8::/64?)"),
    (dict(ROUTER2, exclude_sources='192.168.1.0/24'), "(router2).exclude_sources: not a list"),
    (dict(ROUTER2, services=[{'proto': 'icmp', 'port': 80}]), "(router2).services[0].proto: not one of tcp, udp, sctp"),
    (dict(ROUTER2, services=[{'proto': 'tcp', 'port': 0}]), "(router2).services[0].port: not a port"),
    (dict(ROUTER2, services=[{'proto': 'tcp', 'port': 65536}]), "(router2).services[0].port: not a port"),
    (dict(ROUTER2, services=[{'proto': 'tcp', 'port': '90-80'}]), "(router2).services[0].port: not a port"),
    (dict(ROUTER2, mark=0), "(router2).mark: not a number 1..255: 0"),
    (dict(ROUTER2, mark=256), "(router2).mark: not a number 1..255: 256"),
    (dict(ROUTER2, table=254), "(router2).table: not a table number 1..2147483647 (not 253-255): 254"),
    (dict(ROUTER2, table=2147483648), "(router2).table: not a table number"),
    # more of each message, and the coercions of the values
    (dict(ROUTER2, name='unspec'), "(unspec).name: not a usable routing table name: 'unspec'"),
    (dict(ROUTER2, name='-x'), "(-x).name: not a usable routing table name: '-x'"),
    (dict(ROUTER2, name=['isp']), "(['isp']).name: not a usable routing table name: \"['isp']\""),
    (dict((key, value) for key, value in ROUTER2.items() if key != 'name'),
     "(?).name: not a usable routing table name: ''"),
    # a null name or interface is missing, not the text 'None'
    (dict(ROUTER2, name=None), "(None).name: not a usable routing table name: ''"),
    (dict(ROUTER2, interface=None), "(router2).interface: not an interface name: ''"),
    (dict(ROUTER2, interface='a"b'), "(router2).interface: not an interface name: 'a\"b'"),
    (dict(ROUTER2, mac=''), "(router2).mac: not a MAC address (aa:bb:cc:dd:ee:ff): ''"),
    (dict(ROUTER2, mac=[]), "(router2).mac: not a MAC address (aa:bb:cc:dd:ee:ff): []"),
    (dict(ROUTER2, gateway=''), "(router2).gateway: not an IP address: ''"),
    (dict(ROUTER2, gateway='192.168.1.0/24'), "(router2).gateway: not an IP address: '192.168.1.0/24'"),
    (dict(ROUTER2, gateway=3232235778), "(router2).gateway: not an IP address: 3232235778"),
    # the pattern lets through too many groups: they are counted
    (dict(ROUTER2, gateway='1:2:3:4:5:6:7::8'), "(router2).gateway: not an IP address: '1:2:3:4:5:6:7::8'"),
    (dict(ROUTER2, gateway6='fe80::1%eth0'), "(router2).gateway6: not an IPv6 address: 'fe80::1%eth0'"),
    (dict(ROUTER2, exclude_sources=['2001:db8::/129']),
     "(router2).exclude_sources[0]: not an IP address or prefix: '2001:db8::/129'"),
    (dict(ROUTER2, exclude_sources=['10.0.0.0/08']),
     "(router2).exclude_sources[0]: not an IP address or prefix: '10.0.0.0/08'"),
    (dict(ROUTER2, exclude_sources=['10.0.0.0/8/8']),
     "(router2).exclude_sources[0]: not an IP address or prefix: '10.0.0.0/8/8'"),
    (dict(ROUTER2, exclude_sources=None), "(router2).exclude_sources: not a list"),
    # a mapping is not a list (the Jinja iterated its keys)
    (dict(ROUTER2, exclude_sources={'192.168.1.0/24': 1}), "(router2).exclude_sources: not a list"),
    (dict(ROUTER2, services={'proto': 'tcp', 'port': 80}), "(router2).services: not a list"),
    (dict(ROUTER2, services='tcp/80'), "(router2).services: not a list"),
    (dict(ROUTER2, services=['tcp/80']), "(router2).services[0].proto: not one of tcp, udp, sctp"),
    (dict(ROUTER2, services=[{'port': 80}]), "(router2).services[0].proto: not one of tcp, udp, sctp"),
    (dict(ROUTER2, services=[{'proto': 'TCP', 'port': 80}]), "(router2).services[0].proto: not one of tcp, udp, sctp"),
    (dict(ROUTER2, services=[{'proto': 'tcp'}]),
     "(router2).services[0].port: not a port (1-65535) or range (FIRST-LAST): None"),
    (dict(ROUTER2, services=[{'proto': 'tcp', 'port': 80.0}]),
     "(router2).services[0].port: not a port (1-65535) or range (FIRST-LAST): 80.0"),
    (dict(ROUTER2, services=[{'proto': 'tcp', 'port': '80,443'}]), "(router2).services[0].port: not a port"),
    (dict(ROUTER2, services=[{'proto': 'tcp', 'port': '0-80'}]), "(router2).services[0].port: not a port"),
    (dict(ROUTER2, mark='2'), "(router2).mark: not a number 1..255: '2'"),
    (dict(ROUTER2, mark=True), "(router2).mark: not a number 1..255: True"),
    (dict(ROUTER2, mark=1.0), "(router2).mark: not a number 1..255: 1.0"),
    (dict(ROUTER2, table=0), "(router2).table: not a table number 1..2147483647 (not 253-255): 0"),
    (dict(ROUTER2, table='200'), "(router2).table: not a table number 1..2147483647 (not 253-255): '200'"),
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


def test_a_router_and_an_uplink_on_one_interface_do_not_conflict():
    assert errors([ROUTER2, {'name': 'isp', 'interface': 'eth0'}]) == []


def test_a_bad_mark_still_takes_its_value():
    # True equals 1: the second entry's mark 1 is reported as a duplicate, as the Jinja did
    found = errors([dict(ROUTER2, mark=True), dict(ROUTER2, name='r3', mac='52:54:00:00:03:01', mark=1)])
    assert found == ['reply_via_same_router_routers[0] (router2).mark: not a number 1..255: True',
                     'reply_via_same_router_routers[1] (r3).mark: 1 is used by another entry']


def test_the_index_of_a_bad_item_is_its_place_in_the_list():
    # (the Jinja counted only the bad ones: its loop had a filter)
    found = errors([dict(ROUTER2, exclude_sources=['192.168.1.0/24', 'lan'])], forward_interfaces=['lan0', 'a b'])
    assert found == ["reply_via_same_router_routers[0] (router2).exclude_sources[1]: not an IP address or prefix: 'lan'",
                     "reply_via_same_router_forward_interfaces[1]: not an interface name: 'a b'"]


@pytest.mark.parametrize('routers, message', [
    ({'a': 1}, 'reply_via_same_router_routers: not a list'),
    ('router2', 'reply_via_same_router_routers: not a list'),
    (None, 'reply_via_same_router_routers: not a list'),
    (5.5, 'reply_via_same_router_routers: not a list'),
    (['router2'], "reply_via_same_router_routers[0]: not a dict: 'router2'"),
    ([[]], 'reply_via_same_router_routers[0]: not a dict: []'),
    ([{'name': 'n%d' % index, 'interface': 'e%d' % index} for index in range(256)],
     'reply_via_same_router_routers: more than 255 entries'),
])
def test_bad_routers(routers, message):
    assert errors(routers) == [message]


@pytest.mark.parametrize('forward_interfaces, message', [
    (['x' * 16], "reply_via_same_router_forward_interfaces[0]: not an interface name: '%s'" % ('x' * 16)),
    ([''], "reply_via_same_router_forward_interfaces[0]: not an interface name: ''"),
    ([['lan0']], "reply_via_same_router_forward_interfaces[0]: not an interface name: ['lan0']"),
    # not a list (the Jinja took a string's characters or a mapping's keys for interfaces)
    ('lan0', 'reply_via_same_router_forward_interfaces: not a list'),
    ({'lan0': 1}, 'reply_via_same_router_forward_interfaces: not a list'),
    (None, 'reply_via_same_router_forward_interfaces: not a list'),
    (5, 'reply_via_same_router_forward_interfaces: not a list'),
])
def test_bad_forward_interfaces(forward_interfaces, message):
    assert errors([ROUTER2], forward_interfaces=forward_interfaces) == [message]


@pytest.mark.parametrize('timeout, problem', [
    (-1, True), ('-1', True), ('-0.5', False), ('-1.5', True), (0, False), ('30', False),
    # what Jinja's int makes 0 (the role's argument spec refuses them before)
    ('soon', False), ([1], False), (float('inf'), False), (float('nan'), False),
])
def test_confirm_timeout_read_as_jinja_int_reads_it(timeout, problem):
    found = errors([ROUTER2], confirm_timeout=timeout)
    assert found == (['reply_via_same_router_confirm_timeout: must be 0 or more'] if problem else [])


def test_every_problem_at_once_and_the_other_variables():
    found = errors([dict(ROUTER2, mac='x', mark=0)], forward_interfaces=['bad name'], confirm_timeout=-1)
    assert found == [
        "reply_via_same_router_routers[0] (router2).mac: not a MAC address (aa:bb:cc:dd:ee:ff): 'x'",
        'reply_via_same_router_routers[0] (router2).mark: not a number 1..255: 0',
        "reply_via_same_router_forward_interfaces[0]: not an interface name: 'bad name'",
        'reply_via_same_router_confirm_timeout: must be 0 or more',
    ]


def test_the_fields_of_one_router_in_order():
    router = {'name': 'main', 'interface': 'a b', 'mac': 'x', 'gateway6': 'y', 'exclude_sources': ['z'],
              'services': [{'proto': 'icmp'}], 'mark': 0, 'table': 0}
    at = 'reply_via_same_router_routers[0] (main)'
    assert errors([router]) == [
        "%s.name: not a usable routing table name: 'main'" % at,
        "%s.interface: not an interface name: 'a b'" % at,
        "%s.mac: not a MAC address (aa:bb:cc:dd:ee:ff): 'x'" % at,
        "%s.gateway: required with mac (the router's address)" % at,
        "%s.gateway6: not an IPv6 address: 'y'" % at,
        "%s.exclude_sources[0]: not an IP address or prefix: 'z'" % at,
        '%s.services[0].proto: not one of tcp, udp, sctp' % at,
        '%s.mark: not a number 1..255: 0' % at,
        '%s.table: not a table number 1..2147483647 (not 253-255): 0' % at,
    ]


@pytest.mark.parametrize('value', [None, True, 5, 1.5, float('nan'), [], {}, {'a': [1]}, 'x' * 5000, '\x00', '{{ x }}'])
def test_never_raises(value):
    for routers in (value, [value], [dict(ROUTER2, **{key: value}) for key in ROUTER2],
                    [dict(ROUTER2, services=[value]), dict(ROUTER2, services=[{'proto': 'tcp', 'port': value}])],
                    [dict(ROUTER2, mark=value, table=value, exclude_sources=[value], gateway6=value)]):
        role_input(variables(routers, forward_interfaces=value, confirm_timeout=value))
        role_input(variables(routers, forward_interfaces=[value]))


@pytest.mark.parametrize('mark', [1, 255])
def test_fwmark_rules_have_no_bits_outside_their_mask(mark):
    """ip_rule refuses a mark with bits outside its mask: the lowest and highest mark are within it."""
    marks = [rule['fwmark'] for rule in state([dict(ROUTER2, mark=mark)])['ip_rule']['rules']]
    assert marks and all(parse_fwmark(fwmark, None, 'fwmark')[0] for fwmark in marks)
