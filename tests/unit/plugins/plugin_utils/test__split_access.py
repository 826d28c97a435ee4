"""The split_access role's variables on the controller: checked, and turned into
apply_state's state and checks (plugins/plugin_utils/_split_access.py)."""
import json

import pytest

from ansible_collections.netpolicy.routing.plugins.module_utils._rules import parse_fwmark
from ansible_collections.netpolicy.routing.plugins.plugin_utils._split_access import role_input

ISP1 = {'name': 'isp1', 'interface': 'wan1', 'gateway': '198.51.100.1', 'address': '198.51.100.2', 'table': 1,
        'mark': 1}
ISP2 = {'name': 'isp2', 'interface': 'wan2', 'gateway': '192.0.2.1', 'address': '192.0.2.2', 'table': 2, 'mark': 2}
# playbooks/seed002_split_access.yml
SEED002 = {
    'split_access_lan_interfaces': ['lan0', 'lan1'],
    'split_access_uplinks': [ISP1, ISP2],
    'split_access_balance': 'per_connection',
    'split_access_port_forwards': [{'proto': 'tcp', 'port': 5001, 'to': '192.168.1.50'}],
}


def built(**variables):
    """role_input of seed 002's variables with ``variables`` instead."""
    return role_input(dict(SEED002, **variables))


def errors(**variables):
    found = built(**variables)
    assert found.state is None and found.checks is None
    return found.errors


def uplinks(*changes):
    """seed 002's two uplinks, the first ones changed by ``changes`` (dicts; None: removed)."""
    result = []
    for base, change in zip([ISP1, ISP2] + [{}] * len(changes), list(changes) + [{}, {}]):
        result.append({key: value for key, value in dict(base, **change).items() if value is not Ellipsis})
    return [uplink for uplink in result if uplink]


# ---------------------------------------------------------------- the state

def test_seed002_state():
    result = built()
    assert result.errors == [] and result.empty is False
    state = result.state
    assert state['uplinks'][1] == {'index': 1, 'name': 'isp2', 'interface': 'wan2', 'gateway': '192.0.2.1',
                                   'address': '192.0.2.2', 'table': 2, 'mark': 2, 'weight': 1}
    assert state['rt_tables_entry'] == {'entries': [{'name': 'isp1', 'id': 1}, {'name': 'isp2', 'id': 2}]}
    assert state['route_table']['tables'] == [
        {'table': '1', 'routes': [{'dest': 'default', 'dev': 'wan1', 'gateway': '198.51.100.1'}], 'purge': True,
         'family': 'ipv4'},
        {'table': '2', 'routes': [{'dest': 'default', 'dev': 'wan2', 'gateway': '192.0.2.1'}], 'purge': True,
         'family': 'ipv4'},
        {'table': 'main', 'family': 'ipv4', 'routes': [{'dest': 'default', 'nexthops': [
            {'gateway': '198.51.100.1', 'dev': 'wan1', 'weight': 1},
            {'gateway': '192.0.2.1', 'dev': 'wan2', 'weight': 1}]}]}]
    assert state['ip_rule'] == {'purge_priorities': '400-499,3000-3999', 'rules': [
        # the forward's replies leave by the uplink their connection came in on, before any source policy
        {'priority': 400, 'from': '192.168.1.50', 'ipproto': 'tcp', 'sport': '5001', 'fwmark': '0x1/0xff',
         'table': '1', 'family': 'ipv4'},
        {'priority': 401, 'from': '192.168.1.50', 'ipproto': 'tcp', 'sport': '5001', 'fwmark': '0x2/0xff',
         'table': '2', 'family': 'ipv4'},
        {'priority': 3000, 'table': 'main', 'suppress_prefixlength': 0, 'family': 'ipv4'},
        {'priority': 3100, 'fwmark': '0x1/0xff', 'table': '1', 'family': 'ipv4'},
        {'priority': 3101, 'fwmark': '0x2/0xff', 'table': '2', 'family': 'ipv4'},
        {'priority': 3200, 'from': '198.51.100.2', 'table': '1', 'family': 'ipv4'},
        {'priority': 3201, 'from': '192.0.2.2', 'table': '2', 'family': 'ipv4'}]}
    assert state['address_rules'] == []
    assert state['port_forwards'] == [{'proto': 'tcp', 'port': 5001, 'to': '192.168.1.50', 'to_port': 5001,
                                       'uplinks': ['isp1', 'isp2'], 'interfaces': ['wan1', 'wan2']}]
    assert state['monitor'] == {'enabled': False, 'targets': {}, 'probe': 'icmp', 'interval': 0.5, 'down': 3, 'up': 3}
    assert state['sysctl'] == {'file': '/etc/sysctl.d/60-netpolicy-split_access.conf', 'values': {
        'net.ipv4.ip_forward': 1, 'net.ipv4.conf.all.src_valid_mark': 1, 'net.ipv4.fib_multipath_hash_policy': 1,
        'net.ipv4.conf.wan1.rp_filter': 2, 'net.ipv4.conf.wan2.rp_filter': 2}}
    assert state['nftables']['table'] == 'inet netpolicy_split_access'
    assert state['nftables']['file'] == '/etc/netpolicy/routing/split_access.nft'
    json.dumps(state)  # saved by the agent as JSON


def test_seed002_checks():
    assert built().checks == [
        {'field': 'split_access_lan_interfaces[0]', 'interface': 'lan0', 'ipv4': True},
        {'field': 'split_access_lan_interfaces[1]', 'interface': 'lan1', 'ipv4': True},
        {'field': 'split_access_uplinks[0] (isp1).interface', 'interface': 'wan1'},
        {'field': 'split_access_uplinks[1] (isp2).interface', 'interface': 'wan2'},
        {'field': 'split_access_port_forwards[0].to', 'host_of': '192.168.1.50', 'interfaces': ['lan0', 'lan1']}]


def test_seed002_rule_set():
    content = built().state['nftables']['content']
    assert content.startswith('# Ansible managed\n# netpolicy.routing.split_access: replaces table inet '
                              'netpolicy_split_access in one transaction.\ntable inet netpolicy_split_access {}\n'
                              'delete table inet netpolicy_split_access\ntable inet netpolicy_split_access {\n')
    assert content.endswith('\t}\n}\n')
    for line in [
        '\tchain uplink_2 {\n\t\tcounter comment "new connections given to isp2"\n'
        '\t\tct mark set ct mark & 0xffffff00 | 0x2\n\t\tmeta mark set meta mark & 0xffffff00 | 0x2\n\t}\n',
        '\tchain balance {\n\t\tnumgen inc mod 2 vmap { 0 : jump uplink_1, 1 : jump uplink_2 }\n\t}\n',
        '\t\tct mark & 0xff == 0x2 meta mark set meta mark & 0xffffff00 | 0x2\n'
        '\t\tmeta nfproto ipv4 ct state new ct mark & 0xff == 0 jump balance\n\t}\n',
        '\t\tiifname { "lan0", "lan1" } jump from_lan\n'
        '\t\tiifname "wan1" ct state new ct mark & 0xff == 0 jump uplink_1\n',
        '\t\tiifname { "wan1", "wan2" } meta nfproto ipv4 fib daddr type local tcp dport 5001 '
        'dnat ip to 192.168.1.50:5001\n',
        # a connection not given an uplink by the LAN rules keeps the one its first packet took
        '\t\tmeta nfproto ipv4 oifname "wan2" ct mark & 0xff == 0 ct mark set ct mark & 0xffffff00 | 0x2\n',
        '\t\tmeta nfproto ipv4 oifname "wan2" snat ip to 192.0.2.2\n',
    ]:
        assert line in content, line


def test_defaults_of_the_uplinks_and_weights():
    result = built(split_access_uplinks=[{'name': 'isp1', 'interface': 'wan1', 'weight': 2},
                                         {'name': 'isp2', 'interface': 'ppp0', 'gateway': '192.0.2.1'}])
    state = result.state
    assert [(uplink['table'], uplink['mark'], uplink['weight']) for uplink in state['uplinks']] == [
        (101, 1, 2), (102, 2, 1)]
    # isp1 has no gateway: a device route, and no hop of the main table's default
    assert state['route_table']['tables'][0]['routes'] == [{'dest': 'default', 'dev': 'wan1'}]
    assert state['route_table']['tables'][2]['routes'] == [
        {'dest': 'default', 'gateway': '192.0.2.1', 'dev': 'ppp0'}]
    # no address: masqueraded, and the agent adds the source-address rule of the dynamic address
    assert state['address_rules'] == [
        {'interface': 'wan1', 'priority': 3200, 'table': '101', 'family': 'ipv4'},
        {'interface': 'ppp0', 'priority': 3201, 'table': '102', 'family': 'ipv4'}]
    assert [rule['priority'] for rule in state['ip_rule']['rules']] == [400, 401, 3000, 3100, 3101]
    content = state['nftables']['content']
    assert 'numgen inc mod 3 vmap { 0 : jump uplink_1, 1 : jump uplink_1, 2 : jump uplink_2 }' in content
    assert '\t\tmeta nfproto ipv4 oifname "ppp0" masquerade\n' in content


def test_no_gateway_at_all():
    state = built(split_access_uplinks=[{'name': 'a', 'interface': 'ppp0'}, {'name': 'b', 'interface': 'ppp1'}]).state
    assert state['route_table']['tables'][2]['routes'] == [{'dest': 'default', 'dev': 'ppp0'}]


def test_failover_and_multipath():
    failover = built(split_access_balance='failover').state
    assert failover['route_table']['tables'][2]['routes'] == [
        {'dest': 'default', 'gateway': '198.51.100.1', 'dev': 'wan1'}]
    assert '\tchain balance {\n\t\tjump uplink_1\n\t}\n' in failover['nftables']['content']
    multipath = built(split_access_balance='multipath').state['nftables']['content']
    assert '\tchain balance {\n\t}\n' in multipath and 'jump balance' not in multipath


def test_one_uplink_of_weight_one_is_one_slot():
    content = built(split_access_uplinks=[ISP1]).state['nftables']['content']
    assert '\tchain balance {\n\t\tjump uplink_1\n\t}\n' in content


def test_vlan_interface_sysctl_key():
    values = built(split_access_uplinks=[dict(ISP1, interface='eth0.2')]).state['sysctl']['values']
    assert values['net.ipv4.conf.eth0/2.rp_filter'] == 2


def test_no_uplinks_removes_everything():
    result = role_input({'split_access_uplinks': [], 'split_access_lan_interfaces': ['lan0'],
                         'split_access_port_forwards': 5})  # not looked at without uplinks
    assert result.errors == [] and result.empty is True
    assert result.state == {
        'ip_rule': {'rules': [], 'purge_priorities': '400-499,3000-3999'},
        'nftables': {'table': 'inet netpolicy_split_access', 'file': '/etc/netpolicy/routing/split_access.nft',
                     'content': None},
        'sysctl': {'file': '/etc/sysctl.d/60-netpolicy-split_access.conf', 'values': {}}}
    # the LAN interfaces are still checked on the router
    assert result.checks == [{'field': 'split_access_lan_interfaces[0]', 'interface': 'lan0', 'ipv4': True}]


def test_missing_variables_take_the_role_defaults():
    result = role_input({})
    assert result.errors == [] and result.empty is True and result.checks == []


# ---------------------------------------------------------------- coercions, as the role's Jinja did

def test_numbers_given_as_text():
    result = built(split_access_uplinks=[dict(ISP1, table='7', mark='3', weight='2')],
                   split_access_port_forwards=[{'port': '80', 'to': '192.168.1.50', 'to_port': '8080'}])
    assert result.state['uplinks'][0]['table'] == 7 and result.state['uplinks'][0]['mark'] == 3
    assert result.state['port_forwards'][0]['port'] == 80 and result.state['port_forwards'][0]['to_port'] == 8080


def test_null_numbers_take_the_defaults():
    uplink = built(split_access_uplinks=[dict(ISP1, table=None, mark=None, weight=None)]).state['uplinks'][0]
    assert (uplink['table'], uplink['mark'], uplink['weight']) == (101, 1, 1)


def test_false_gateway_and_address_are_none():
    uplink = built(split_access_uplinks=[dict(ISP1, gateway='', address=None)]).state['uplinks'][0]
    assert uplink['gateway'] == '' and uplink['address'] == ''


def test_forward_defaults():
    # proto: a false one is tcp; to_port: 0, null or missing is the port; uplinks: null is all
    forward = built(split_access_port_forwards=[{'proto': '', 'port': 22, 'to': '192.168.1.50', 'to_port': 0,
                                                 'uplinks': None}]).state['port_forwards'][0]
    assert forward == {'proto': 'tcp', 'port': 22, 'to': '192.168.1.50', 'to_port': 22,
                       'uplinks': ['isp1', 'isp2'], 'interfaces': ['wan1', 'wan2']}
    forward = built(split_access_port_forwards=[{'port': 22, 'to': '192.168.1.50', 'uplinks': ['isp2']}])
    assert forward.state['port_forwards'][0]['interfaces'] == ['wan2']


def test_monitor_given_in_part_keeps_the_other_defaults():
    monitor = built(split_access_monitor={'enabled': 'yes', 'targets': {'isp1': '203.0.113.10'},
                                          'interval': '2'}).state['monitor']
    assert monitor == {'enabled': 'yes', 'targets': {'isp1': '203.0.113.10'}, 'probe': 'icmp', 'interval': '2',
                       'down': 3, 'up': 3}
    assert built(split_access_monitor=None).state['monitor']['probe'] == 'icmp'


def test_null_name_and_interface_are_missing():
    # (the Jinja made them the text 'None', a valid name and interface name)
    assert errors(split_access_uplinks=[dict(ISP1, name=None, interface=None)]) == [
        "split_access_uplinks[0] ().name: not a name (a letter, then letters, digits or _, at most 31): ''",
        'split_access_uplinks[0] ().interface: required']


def test_null_to_is_missing():
    assert errors(split_access_port_forwards=[{'port': 80, 'to': None}]) == [
        "split_access_port_forwards[0].to: not an IPv4 address: ''"]


def test_an_infinite_confirm_timeout():
    # (Jinja's int filter raised on it)
    for timeout in (float('inf'), '1e999', float('-inf')):
        assert errors(split_access_confirm_timeout=timeout) == [
            'split_access_confirm_timeout: not a number of seconds: %r' % (timeout,)]
    assert errors(split_access_confirm_timeout='-5') == ["split_access_confirm_timeout: not 0 or more: '-5'"]
    assert built(split_access_confirm_timeout='x').errors == []  # as Jinja's int: 0


@pytest.mark.parametrize('balance', ['round_robin', 'Failover', None, 1])
def test_an_unknown_balance(balance):
    # (the Jinja took any other value as multipath)
    assert errors(split_access_balance=balance) == [
        'split_access_balance: not one of per_connection, multipath, failover: %r' % (balance,)]


def test_an_uplink_that_is_no_dict_has_every_field_missing():
    assert errors(split_access_uplinks=['isp1']) == [
        "split_access_uplinks[0] ().name: not a name (a letter, then letters, digits or _, at most 31): ''",
        'split_access_uplinks[0] ().interface: required']


@pytest.mark.parametrize('name, value', [
    ('split_access_lan_interfaces', 'lan0'),
    ('split_access_uplinks', {'isp1': {}}),
    ('split_access_port_forwards', None),
])
def test_not_a_list(name, value):
    # (the Jinja went over a string's characters or a dict's keys, and failed on the rest)
    assert errors(**{name: value}) == ['%s: not a list: %r' % (name, value)]


def test_uplinks_of_a_forward_not_a_list():
    assert errors(split_access_port_forwards=[{'port': 80, 'to': '192.168.1.50', 'uplinks': 'isp1'}]) == [
        "split_access_port_forwards[0].uplinks: not a list: 'isp1'"]


def test_monitor_not_a_dict():
    assert errors(split_access_monitor='on') == ["split_access_monitor: not a dict: 'on'"]
    # (the Jinja's combine merged a list of dicts, and skipped its nulls)
    assert errors(split_access_monitor=[None]) == ['split_access_monitor: not a dict: [None]']
    assert errors(split_access_monitor={'targets': ['isp1']}) == [
        "split_access_monitor.targets: not a dict: ['isp1']"]


def test_junk_numbers_read_as_zero_and_are_refused():
    assert errors(split_access_uplinks=[dict(ISP1, table=[1], mark='x', weight=float('inf'))]) == [
        'split_access_uplinks[0] (isp1).table: not a usable table number (1..2147483647, not 253-255): 0',
        'split_access_uplinks[0] (isp1).mark: not 1..255: 0',
        'split_access_uplinks[0] (isp1).weight: not 1..256: 0']


def test_a_trailing_newline_is_not_part_of_a_value():
    # (the Jinja's `is match` let it through: `$` matches before a final newline)
    assert built(split_access_uplinks=[dict(ISP1, name='isp1\n')]).errors == [
        "split_access_uplinks[0] (isp1\n).name: not a name (a letter, then letters, digits or _, at most 31): "
        "'isp1\\n'"]
    assert built(split_access_uplinks=[dict(ISP1, gateway='198.51.100.1\n')]).errors == [
        "split_access_uplinks[0] (isp1).gateway: not an IPv4 address: '198.51.100.1\\n'"]


# ---------------------------------------------------------------- every message

@pytest.mark.parametrize('variables, message', [
    ({'split_access_lan_interfaces': []}, 'split_access_lan_interfaces: at least one LAN interface is needed'),
    ({'split_access_uplinks': uplinks({'name': '1x'})},
     "split_access_uplinks[0] (1x).name: not a name (a letter, then letters, digits or _, at most 31): '1x'"),
    ({'split_access_uplinks': uplinks({'name': 'x' * 32})}, 'name: not a name'),
    ({'split_access_uplinks': uplinks({'name': 'main'})},
     "split_access_uplinks[0] (main).name: a reserved routing table name: 'main'"),
    ({'split_access_uplinks': uplinks({'interface': Ellipsis})}, 'split_access_uplinks[0] (isp1).interface: required'),
    ({'split_access_uplinks': uplinks({'interface': 'a b'})},
     "split_access_uplinks[0] (isp1).interface: not an interface name: 'a b'"),
    ({'split_access_uplinks': uplinks({'interface': 'x' * 16})}, '.interface: not an interface name'),
    ({'split_access_uplinks': uplinks({'interface': 'lan1'})},
     "split_access_uplinks[0] (isp1).interface: 'lan1' is a LAN interface"),
    ({'split_access_uplinks': uplinks({}, {'gateway': '192.0.2.300'})},
     "split_access_uplinks[1] (isp2).gateway: not an IPv4 address: '192.0.2.300'"),
    ({'split_access_uplinks': uplinks({'address': '198.51.100.0/24'})},
     "split_access_uplinks[0] (isp1).address: not an IPv4 address: '198.51.100.0/24'"),
    ({'split_access_uplinks': uplinks({'table': 254})},
     'split_access_uplinks[0] (isp1).table: not a usable table number (1..2147483647, not 253-255): 254'),
    ({'split_access_uplinks': uplinks({'table': 2 ** 31})}, '.table: not a usable table number'),
    ({'split_access_uplinks': uplinks({'table': 0})}, '.table: not a usable table number'),
    ({'split_access_uplinks': uplinks({'mark': 256})}, 'split_access_uplinks[0] (isp1).mark: not 1..255: 256'),
    ({'split_access_uplinks': uplinks({'weight': 0})}, 'split_access_uplinks[0] (isp1).weight: not 1..256: 0'),
    ({'split_access_uplinks': uplinks({'weight': 257})}, '.weight: not 1..256: 257'),
    ({'split_access_uplinks': uplinks({}, {'name': 'isp1'}), 'split_access_port_forwards': []},
     "split_access_uplinks[1] (isp1).name: the same as an earlier uplink: 'isp1'"),
    ({'split_access_uplinks': uplinks({}, {'interface': 'wan1'})},
     "split_access_uplinks[1] (isp2).interface: the same as an earlier uplink: 'wan1'"),
    ({'split_access_uplinks': uplinks({}, {'table': 1})},
     'split_access_uplinks[1] (isp2).table: the same as an earlier uplink: 1'),
    ({'split_access_uplinks': uplinks({}, {'mark': 1})},
     'split_access_uplinks[1] (isp2).mark: the same as an earlier uplink: 1'),
    ({'split_access_uplinks': [{'name': 'u%d' % index, 'interface': 'wan%d' % index, 'table': 1000 + index,
                                'mark': 1 + index % 255} for index in range(101)]},
     'split_access_uplinks: at most 100 uplinks'),
    ({'split_access_port_forwards': [{'proto': 'icmp', 'port': 80, 'to': '192.168.1.50'}]},
     "split_access_port_forwards[0].proto: not tcp or udp: 'icmp'"),
    ({'split_access_port_forwards': [{'port': 0, 'to_port': 80, 'to': '192.168.1.50'}]},
     'split_access_port_forwards[0].port: not a port (1..65535): 0'),
    ({'split_access_port_forwards': [{'port': 80, 'to_port': 70000, 'to': '192.168.1.50'}]},
     'split_access_port_forwards[0].to_port: not a port (1..65535): 70000'),
    ({'split_access_port_forwards': [{'port': 80}]}, "split_access_port_forwards[0].to: not an IPv4 address: ''"),
    ({'split_access_port_forwards': [{'port': 80, 'to': '192.168.1.50', 'uplinks': []}]},
     'split_access_port_forwards[0].uplinks: no uplink'),
    ({'split_access_port_forwards': [{'port': 80, 'to': '192.168.1.50', 'uplinks': ['isp1', 'isp9']}]},
     "split_access_port_forwards[0].uplinks[1]: not an uplink of split_access_uplinks: 'isp9'"),
    ({'split_access_port_forwards': [{'port': 80, 'to': '192.168.1.50'},
                                     {'port': 80, 'to': '192.168.1.51', 'uplinks': ['isp2']}]},
     'split_access_port_forwards[1]: tcp port 80 on isp2 is forwarded twice'),
    ({'split_access_monitor': {'targets': {'isp9': ['203.0.113.10']}}},
     'split_access_monitor.targets.isp9: not an uplink of split_access_uplinks'),
    ({'split_access_monitor': {'targets': {'isp1': ['203.0.113.10', 'x']}}},
     "split_access_monitor.targets.isp1[1]: not an IPv4 address: 'x'"),
    ({'split_access_monitor': {'targets': {'isp1': None}}},
     'split_access_monitor.targets.isp1[0]: not an IPv4 address: None'),
    ({'split_access_monitor': {'enabled': True}}, 'split_access_monitor.targets: needed when the monitor is enabled'),
    ({'split_access_monitor': {'probe': 'tcp:65536'}}, "split_access_monitor.probe: not icmp or tcp:PORT: 'tcp:65536'"),
    ({'split_access_monitor': {'interval': 0}}, 'split_access_monitor.interval: not more than 0: 0'),
    ({'split_access_monitor': {'interval': 'often'}}, "split_access_monitor.interval: not more than 0: 'often'"),
    ({'split_access_monitor': {'down': 0}}, 'split_access_monitor.down: not 1 or more: 0'),
    ({'split_access_monitor': {'up': 'x'}}, "split_access_monitor.up: not 1 or more: 'x'"),
    ({'split_access_confirm_timeout': -1}, 'split_access_confirm_timeout: not 0 or more: -1'),
])
def test_each_message(variables, message):
    found = errors(**variables)
    assert len(found) == 1 and message in found[0], found


def test_every_problem_at_once_in_order():
    # tests/integration/test_role_split_access.py's bad variables
    found = errors(split_access_uplinks=[ISP1, dict(ISP2, mark=1, weight=0, gateway='192.0.2.300'),
                                         {'name': 'isp1', 'interface': 'wan3', 'table': 254}],
                   split_access_port_forwards=[{'port': 80, 'to': '203.0.113.10'},
                                               {'port': 5001, 'to': '192.168.1.50', 'uplinks': ['isp9']}])
    assert found == [
        "split_access_uplinks[1] (isp2).gateway: not an IPv4 address: '192.0.2.300'",
        'split_access_uplinks[1] (isp2).weight: not 1..256: 0',
        'split_access_uplinks[1] (isp2).mark: the same as an earlier uplink: 1',
        'split_access_uplinks[2] (isp1).table: not a usable table number (1..2147483647, not 253-255): 254',
        "split_access_uplinks[2] (isp1).name: the same as an earlier uplink: 'isp1'",
        # port 80 goes to every uplink by default: isp1 is in the list twice
        'split_access_port_forwards[0]: tcp port 80 on isp1 is forwarded twice',
        "split_access_port_forwards[1].uplinks[0]: not an uplink of split_access_uplinks: 'isp9'"]


def test_monitor_bool_as_ansible_reads_it():
    # the `bool` filter: 'no' and 0 are false; a string it does not know is false too
    for enabled in ('no', 'off', 0, 'maybe', None):
        assert built(split_access_monitor={'enabled': enabled}).errors == [], enabled
    for enabled in ('YES', 'on', 1, True, 1.0):
        assert built(split_access_monitor={'enabled': enabled}).errors == [
            'split_access_monitor.targets: needed when the monitor is enabled'], enabled


def test_monitor_targets_without_uplinks_are_refused():
    assert role_input({'split_access_monitor': {'targets': {'isp1': ['203.0.113.10']}}}).errors == [
        'split_access_monitor.targets.isp1: not an uplink of split_access_uplinks']


def test_forward_replies_one_rule_per_port_of_the_host_and_uplink():
    forwards = [{'proto': 'tcp', 'port': 2222, 'to': '192.168.1.50', 'to_port': 22, 'uplinks': ['isp2']},
                {'proto': 'tcp', 'port': 22, 'to': '192.168.1.50', 'uplinks': ['isp2']},
                {'proto': 'udp', 'port': 53, 'to': '192.168.1.53', 'uplinks': ['isp1']}]
    rules = built(split_access_port_forwards=forwards).state['ip_rule']['rules']
    assert [rule for rule in rules if rule['priority'] < 1000] == [
        {'priority': 400, 'from': '192.168.1.53', 'ipproto': 'udp', 'sport': '53', 'fwmark': '0x1/0xff',
         'table': '1', 'family': 'ipv4'},
        {'priority': 401, 'from': '192.168.1.50', 'ipproto': 'tcp', 'sport': '22', 'fwmark': '0x2/0xff',
         'table': '2', 'family': 'ipv4'}]


def test_the_monitor_needs_the_saved_state():
    monitor = {'enabled': True, 'targets': {'isp1': ['203.0.113.10']}}
    assert errors(split_access_monitor=monitor, split_access_persist='no') == [
        'split_access_monitor.enabled: needs split_access_persist (the agent runs the monitor from the saved state)']
    assert built(split_access_monitor=monitor, split_access_persist=True).errors == []
    assert built(split_access_persist=False).errors == []


@pytest.mark.parametrize('mark', [1, 255])
def test_fwmark_rules_have_no_bits_outside_their_mask(mark):
    """ip_rule refuses a mark with bits outside its mask: the lowest and highest mark are within it."""
    rules = built(split_access_uplinks=uplinks({'mark': mark})).state['ip_rule']['rules']
    marks = [rule['fwmark'] for rule in rules if 'fwmark' in rule]
    assert marks and all(parse_fwmark(fwmark, None, 'fwmark')[0] for fwmark in marks)
