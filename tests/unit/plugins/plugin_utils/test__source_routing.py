"""The source_routing role's variables on the controller: checked (every problem, naming the
policy and the field), and turned into apply_state's state and checks: tables, rules, nftables
rules, sysctls (plugins/plugin_utils/_source_routing.py)."""
import json

import pytest

from ansible_collections.netpolicy.routing.plugins.module_utils._rules import parse_fwmark
from ansible_collections.netpolicy.routing.plugins.plugin_utils._source_routing import role_input

MACBOOK = {'name': 'macbook', 'from': ['192.168.1.169'], 'interface': 'wan2', 'gateway': '192.0.2.1',
           'snat': '192.0.2.74'}
WEB = {'name': 'web', 'from': ['192.168.99.0/24'], 'protocol': 'tcp', 'dports': [80, 443],
       'interface': 'wan3', 'gateway': '100.65.3.1', 'snat': 'masquerade'}


def state(policies, **variables):
    found = role_input(dict(variables, source_routing_policies=policies))
    assert found.errors == [], found.errors
    return found.state


def errors(policies, **variables):
    found = role_input(dict(variables, source_routing_policies=policies))
    assert found.state is None and found.checks is None
    return found.errors


def rules(policies):
    return state(policies)['ip_rule']['rules']


def nft_rules(policies, chain):
    """The rules of ``chain`` in the rule set file, one a line as written."""
    content = state(policies)['nftables']['content']
    body = content.split('\tchain %s {\n' % chain)[1].split('\t}\n')[0]
    return [line[2:] for line in body.splitlines()[1:]]


def rp_filter_keys(policies):
    return sorted(state(policies)['sysctl']['values'])


# ---------------------------------------------------------------- the state

def test_seed001_host_policy():
    found = state([MACBOOK])
    assert found['rt_tables_entry'] == {'entries': [{'name': 'macbook', 'id': 201}]}
    assert found['route_table']['tables'] == [
        {'table': '201', 'purge': True, 'copy_from': 'main', 'copy_exclude': ['default'],
         'routes': [{'dest': 'default', 'gateway': '192.0.2.1', 'dev': 'wan2'}]}]
    assert found['ip_rule'] == {'purge_priorities': '1000-1999', 'rules': [
        {'priority': 1000, 'table': '201', 'family': 'ipv4', 'from': '192.168.1.169'}]}
    assert nft_rules([MACBOOK], 'prerouting') == []
    assert nft_rules([MACBOOK], 'postrouting') == ['oifname "wan2" ip saddr { 192.168.1.169 } ct mark set ct mark & 0xffffff00 snat ip to 192.0.2.74']
    assert found['sysctl'] == {'file': '/etc/sysctl.d/60-netpolicy-source_routing.conf',
                               'values': {'net.ipv4.conf.wan2.rp_filter': 2}}


def test_seed003_service_policy_is_routed_by_connection_mark():
    policies = [MACBOOK, WEB]
    assert rules(policies)[1] == {'priority': 1010, 'table': '202', 'family': 'ipv4', 'fwmark': '0x200/0xff00'}
    assert nft_rules(policies, 'prerouting') == [
        'ct state new ct mark & 0x0000ff00 == 0x00000000 ip saddr { 192.168.99.0/24 } tcp dport { 80, 443 }'
        ' ct mark set ct mark & 0xffff00ff | 0x00000200',
        'ct direction original ct mark & 0x0000ff00 == 0x00000200 meta mark set meta mark & 0xffff00ff | 0x00000200']
    assert nft_rules(policies, 'postrouting')[1] == \
        'oifname "wan3" meta nfproto ipv4 ct mark & 0x0000ff00 == 0x00000200 ct mark set ct mark & 0xffffff00 masquerade'


def test_the_whole_state_of_seeds_001_and_003():
    found = role_input({'source_routing_policies': [MACBOOK, WEB]})
    assert found.errors == [] and found.empty is False
    assert found.checks == [{'field': 'source_routing_policies[0] (macbook).interface', 'interface': 'wan2'},
                            {'field': 'source_routing_policies[1] (web).interface', 'interface': 'wan3'}]
    assert {key: value for key, value in found.state.items() if key not in ('policies', 'nftables')} == {
        'version': 1, 'role': 'source_routing',
        'rt_tables_entry': {'entries': [{'name': 'macbook', 'id': 201}, {'name': 'web', 'id': 202}]},
        'route_table': {'tables': [
            {'table': '201', 'routes': [{'dest': 'default', 'gateway': '192.0.2.1', 'dev': 'wan2'}],
             'purge': True, 'copy_from': 'main', 'copy_exclude': ['default']},
            {'table': '202', 'routes': [{'dest': 'default', 'gateway': '100.65.3.1', 'dev': 'wan3'}],
             'purge': True, 'copy_from': 'main', 'copy_exclude': ['default']}]},
        'ip_rule': {'purge_priorities': '1000-1999', 'rules': [
            {'priority': 1000, 'table': '201', 'family': 'ipv4', 'from': '192.168.1.169'},
            {'priority': 1010, 'table': '202', 'family': 'ipv4', 'fwmark': '0x200/0xff00'}]},
        'sysctl': {'file': '/etc/sysctl.d/60-netpolicy-source_routing.conf',
                   'values': {'net.ipv4.conf.wan2.rp_filter': 2, 'net.ipv4.conf.wan3.rp_filter': 2}}}
    # the policies with their defaults filled in, saved for the agent as the role saved them
    assert found.state['policies'][1] == {
        'index': 1, 'label': 'source_routing_policies[1] (web)', 'name': 'web', 'from': ['192.168.99.0/24'],
        'to': [], 'protocol': 'tcp', 'dports': ['80', '443'], 'interface': 'wan3', 'gateway': '100.65.3.1',
        'snat': 'masquerade', 'table': 202, 'priority': 1010, 'mark': 2, 'fwmark': '0x200/0xff00',
        'families': ['ipv4'], 'source_families': ['ipv4']}
    # the rule set file, byte for byte as the role's template wrote it
    assert found.state['nftables'] == {
        'file': '/etc/netpolicy/routing/source_routing.nft', 'table': 'inet netpolicy_source_routing',
        'content': '# Ansible managed\n'
                   '# netpolicy.routing.source_routing: marks of service policies and NAT of all\n'
                   '# policies. Loading this file replaces the table in one transaction.\n'
                   'table inet netpolicy_source_routing {}\n'
                   'delete table inet netpolicy_source_routing\n'
                   'table inet netpolicy_source_routing {\n'
                   '\t# NEW connections of a service policy get its mark (byte 0x0000ff00 of the\n'
                   '\t# conntrack mark); every packet the client sends gets it back, for ip rule fwmark.\n'
                   '\tchain prerouting {\n'
                   '\t\ttype filter hook prerouting priority mangle; policy accept;\n'
                   '\t\tct state new ct mark & 0x0000ff00 == 0x00000000 ip saddr { 192.168.99.0/24 }'
                   ' tcp dport { 80, 443 } ct mark set ct mark & 0xffff00ff | 0x00000200\n'
                   '\t\tct direction original ct mark & 0x0000ff00 == 0x00000200'
                   ' meta mark set meta mark & 0xffff00ff | 0x00000200\n'
                   '\t}\n'
                   "\t# Before split_access's NAT (priority srcnat): the first NAT chain that maps a\n"
                   '\t# connection gives it its source address, and a policy\'s is the more specific.\n'
                   '\tchain postrouting {\n'
                   '\t\ttype nat hook postrouting priority srcnat - 1; policy accept;\n'
                   '\t\toifname "wan2" ip saddr { 192.168.1.169 } ct mark set ct mark & 0xffffff00 snat ip to 192.0.2.74\n'
                   '\t\toifname "wan3" meta nfproto ipv4 ct mark & 0x0000ff00 == 0x00000200 ct mark set ct mark & 0xffffff00 masquerade\n'
                   '\t}\n'
                   '}\n'}
    json.dumps(found.state)  # what is saved for the agent


def test_point_to_point_ipv6_and_to():
    policy = {'name': 'vpn', 'from': ['192.168.1.10', '2001:db8:1:1::10'], 'to': ['2001:db8:5::/48'],
              'interface': 'eth0.2', 'table': 7375, 'priority': 1500}
    assert state([policy])['route_table']['tables'][0]['routes'] == [
        {'dest': 'default', 'dev': 'eth0.2', 'family': 'ipv6'}]
    assert rules([policy]) == [
        {'priority': 1500, 'table': '7375', 'family': 'ipv6', 'from': '2001:db8:1:1::10', 'to': '2001:db8:5::/48'}]
    assert rp_filter_keys([policy]) == []


def test_point_to_point_mixed_families_without_nat():
    policy = {'name': 'vpn', 'from': ['192.168.1.10', '2001:db8:1:1::10'], 'interface': 'eth0.2'}
    assert state([policy])['route_table']['tables'][0]['routes'] == [
        {'dest': 'default', 'dev': 'eth0.2', 'family': 'ipv4'}, {'dest': 'default', 'dev': 'eth0.2', 'family': 'ipv6'}]
    assert rules([policy]) == [
        {'priority': 1000, 'table': '201', 'family': 'ipv4', 'from': '192.168.1.10'},
        {'priority': 1000, 'table': '201', 'family': 'ipv6', 'from': '2001:db8:1:1::10'}]
    # no NAT: only split_access's balancing mark goes (see test_a_policy_takes_its_connections_out_of_balancing)
    assert nft_rules([policy], 'postrouting') == [
        'oifname "eth0.2" ip saddr { 192.168.1.10 } ct mark set ct mark & 0xffffff00',
        'oifname "eth0.2" ip6 saddr { 2001:db8:1:1::10 } ct mark set ct mark & 0xffffff00']
    # a dot in an interface name is a slash in a sysctl key
    assert rp_filter_keys([policy]) == ['net.ipv4.conf.eth0/2.rp_filter']


def test_a_rule_per_source_and_destination_of_its_family():
    policy = dict(MACBOOK, **{'from': ['192.168.1.10', '192.168.1.11'], 'to': ['203.0.113.0/24', '198.51.100.7']})
    assert [(rule['from'], rule['to']) for rule in rules([policy])] == [
        ('192.168.1.10', '203.0.113.0/24'), ('192.168.1.10', '198.51.100.7'),
        ('192.168.1.11', '203.0.113.0/24'), ('192.168.1.11', '198.51.100.7')]
    assert nft_rules([policy], 'postrouting') == [
        'oifname "wan2" ip saddr { 192.168.1.10, 192.168.1.11 } ip daddr { 203.0.113.0/24, 198.51.100.7 }'
        ' ct mark set ct mark & 0xffffff00 snat ip to 192.0.2.74']


def test_service_policy_without_ports_and_ipv6():
    policy = {'name': 'voip', 'from': ['192.168.1.0/24', '2001:db8:1::/64'], 'protocol': 'udp',
              'interface': 'ppp0', 'snat': 'masquerade', 'mark': 7}
    assert rules([policy]) == [{'priority': 1000, 'table': '201', 'family': family, 'fwmark': '0x700/0xff00'}
                               for family in ('ipv4', 'ipv6')]
    assert nft_rules([policy], 'prerouting') == [
        'ct state new ct mark & 0x0000ff00 == 0x00000000 ip saddr { 192.168.1.0/24 } meta l4proto udp'
        ' ct mark set ct mark & 0xffff00ff | 0x00000700',
        'ct state new ct mark & 0x0000ff00 == 0x00000000 ip6 saddr { 2001:db8:1::/64 } meta l4proto udp'
        ' ct mark set ct mark & 0xffff00ff | 0x00000700',
        'ct direction original ct mark & 0x0000ff00 == 0x00000700 meta mark set meta mark & 0xffff00ff | 0x00000700']
    assert nft_rules([policy], 'postrouting') == [
        'oifname "ppp0" meta nfproto ipv4 ct mark & 0x0000ff00 == 0x00000700 ct mark set ct mark & 0xffffff00 masquerade',
        'oifname "ppp0" meta nfproto ipv6 ct mark & 0x0000ff00 == 0x00000700 ct mark set ct mark & 0xffffff00 masquerade']


def test_explicit_priorities_order_the_marks():
    policies = [dict(WEB, priority=1900), dict(WEB, name='ssh', dports=[22], priority=1100)]
    marks = nft_rules(policies, 'prerouting')
    assert 'tcp dport { 22 }' in marks[0] and 'tcp dport { 80, 443 }' in marks[1]
    # equal priorities keep list order
    policies = [dict(WEB, priority=1500), dict(WEB, name='ssh', dports=[22], priority=1500)]
    marks = nft_rules(policies, 'prerouting')
    assert 'tcp dport { 80, 443 }' in marks[0] and 'tcp dport { 22 }' in marks[1]


def test_nothing_removes_everything():
    for variables in ({}, {'source_routing_policies': []}, {'source_routing_policies': None}):
        found = role_input(variables)
        assert found.errors == [] and found.checks == [] and found.empty is True
        assert found.state['nftables']['content'] is None  # the table goes
        assert found.state['ip_rule'] == {'purge_priorities': '1000-1999', 'rules': []}
        assert found.state['rt_tables_entry'] == {'entries': []} and found.state['sysctl']['values'] == {}


# ---------------------------------------------------------------- coercions, as the role's Jinja did

def test_single_values_are_lists_of_one():
    policy = dict(WEB, **{'from': '192.168.99.0/24', 'to': '203.0.113.0/24', 'dports': 443})
    found = state([policy])['policies'][0]
    assert (found['from'], found['to'], found['dports']) == (['192.168.99.0/24'], ['203.0.113.0/24'], ['443'])


def test_null_fields_take_the_defaults():
    policy = dict(MACBOOK, to=None, protocol=None, dports=None, table=None, priority=None, mark=None)
    found = state([MACBOOK, dict(policy, name='other')])['policies'][1]
    assert (found['to'], found['dports'], found['table'], found['priority'], found['mark']) == ([], [], 202, 1010, 2)


def test_ports_as_strings_and_ranges():
    policy = dict(WEB, protocol='sctp', dports=['8000-8100', 65535, '1'])
    assert nft_rules([policy], 'prerouting')[0].split(' ct mark set')[0].endswith('sctp dport { 8000-8100, 65535, 1 }')


def test_interfaces_differing_in_case_each_get_loose_filtering():
    # (the Jinja's `unique` ignored case: WAN1 got no rp_filter key)
    policies = [dict(MACBOOK, interface='wan1'), dict(MACBOOK, name='other', interface='WAN1')]
    assert rp_filter_keys(policies) == ['net.ipv4.conf.WAN1.rp_filter', 'net.ipv4.conf.wan1.rp_filter']


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize('policy', [MACBOOK, WEB, dict(MACBOOK, snat=None, gateway=None),
                                    dict(WEB, dports=['8000-8100', 65535], protocol='udp'),
                                    dict(MACBOOK, **{'from': ['2001:db8::/32'], 'gateway': 'fe80::1',
                                                     'snat': '2001:db8:2::2'})])
def test_good_input(policy):
    assert role_input({'source_routing_policies': [policy]}).errors == []


@pytest.mark.parametrize('change, message', [
    ({'name': 'main'}, "[0] (main).name: not a usable table name: 'main' (letters, digits, _ . -, starting with"
                       " a letter or _, at most 31, not a builtin name)"),
    ({'name': '1x'}, "[0] (1x).name: not a usable table name"),
    ({'name': 'x' * 32}, "[0] (%s).name: not a usable table name" % ('x' * 32)),
    ({'name': None}, "[0] ().name: not a usable table name: ''"),
    ({'name': ['isp']}, "[0] (['isp']).name: not a usable table name: \"['isp']\""),
    ({'from': []}, '[0] (macbook).from: at least one host or subnet is needed'),
    ({'from': None}, '[0] (macbook).from: at least one host or subnet is needed'),
    ({'from': ['192.168.1.256']}, "[0] (macbook).from[0]: not an IP address or prefix: '192.168.1.256'"),
    ({'from': ['10.0.0.0/33']}, "[0] (macbook).from[0]: not an IP address or prefix: '10.0.0.0/33'"),
    ({'from': ['192.168.1.1/24']}, "[0] (macbook).from[0]: 192.168.1.1/24 has host bits set (did you mean 192.168.1.0/24?)"),
    ({'from': ['192.168.1.0/24'], 'to': ['203.0.113.9/28']},
     "[0] (macbook).to[0]: 203.0.113.9/28 has host bits set (did you mean 203.0.113.0/28?)"),
    ({'from': [['192.168.1.10']]}, "[0] (macbook).from[0]: not an IP address or prefix: \"['192.168.1.10']\""),
    ({'to': ['x']}, "[0] (macbook).to[0]: not an IP address or prefix: 'x'"),
    ({'to': ['2001:db8::1']}, '[0] (macbook).to[0]: 2001:db8::1 has no source of its family in from'),
    ({'dports': [80]}, '[0] (macbook).dports: needs protocol (tcp, udp or sctp)'),
    ({'protocol': 'icmp'}, "[0] (macbook).protocol: not one of tcp, udp, sctp: 'icmp'"),
    ({'protocol': 'TCP', 'dports': [80]}, "[0] (macbook).protocol: not one of tcp, udp, sctp: 'TCP'"),
    ({'protocol': ''}, "[0] (macbook).protocol: not one of tcp, udp, sctp: ''"),
    ({'protocol': 'tcp', 'dports': [0]}, "[0] (macbook).dports[0]: not a port (1..65535) or range FIRST-LAST: '0'"),
    ({'protocol': 'tcp', 'dports': [70000]},
     "[0] (macbook).dports[0]: not a port (1..65535) or range FIRST-LAST: '70000'"),
    ({'protocol': 'tcp', 'dports': ['90-80']}, "[0] (macbook).dports[0]: not a port"),
    ({'protocol': 'tcp', 'dports': ['http']},
     "[0] (macbook).dports[0]: not a port (1..65535) or range FIRST-LAST: 'http'"),
    ({'protocol': 'tcp', 'dports': [1.5]}, "[0] (macbook).dports[0]: not a port (1..65535) or range FIRST-LAST: '1.5'"),
    ({'interface': None}, '[0] (macbook).interface: is required'),
    ({'interface': ''}, '[0] (macbook).interface: is required'),
    ({'gateway': '192.0.2.1/24'}, "[0] (macbook).gateway: not an IP address: '192.0.2.1/24'"),
    ({'gateway': ''}, "[0] (macbook).gateway: not an IP address: ''"),
    ({'gateway': ['192.0.2.1']}, "[0] (macbook).gateway: not an IP address: ['192.0.2.1']"),
    ({'gateway': '2001:db8::1'}, '[0] (macbook).gateway: 2001:db8::1 is IPv6, but from has IPv4 sources'),
    ({'snat': 'masq'}, "[0] (macbook).snat: not an IP address or masquerade: 'masq'"),
    ({'snat': '2001:db8::2'}, '[0] (macbook).snat: 2001:db8::2 is IPv6, but from has IPv4 sources'),
    ({'table': 254}, '[0] (macbook).table: not a table number 1..2147483647 but not 253-255: 254'),
    ({'table': 0}, '[0] (macbook).table: not a table number'),
    ({'table': 2 ** 31}, '[0] (macbook).table: not a table number'),
    ({'table': '7375'}, "[0] (macbook).table: not a table number 1..2147483647 but not 253-255: '7375'"),
    ({'priority': 2000}, '[0] (macbook).priority: not in the range of this role, 1000..1999: 2000'),
    ({'priority': 999}, '[0] (macbook).priority: not in the range of this role, 1000..1999: 999'),
    ({'priority': 'first'}, "[0] (macbook).priority: not in the range of this role, 1000..1999: 'first'"),
    ({'mark': 256}, '[0] (macbook).mark: not 1..255: 256'),
    ({'mark': 0}, '[0] (macbook).mark: not 1..255: 0'),
    ({'mark': 'x'}, "[0] (macbook).mark: not 1..255: 'x'"),
])
def test_bad_input(change, message):
    found = errors([dict(MACBOOK, **change)])
    assert len(found) == 1 and found[0].startswith('source_routing_policies' + message), found


def test_mixed_families_need_no_gateway_and_no_snat_address():
    policy = dict(MACBOOK, **{'from': ['192.168.1.10', '2001:db8::10']})
    assert errors([policy]) == [
        'source_routing_policies[0] (macbook).gateway: 192.0.2.1 is IPv4, but from has IPv6 sources',
        'source_routing_policies[0] (macbook).snat: 192.0.2.74 is IPv4, but from has IPv6 sources']


@pytest.mark.parametrize('field, value', [('table', True), ('table', 202.0), ('priority', 1500.0),
                                          ('priority', True), ('mark', True), ('mark', 2.0), ('mark', 1.5)])
def test_numbers_are_ints_not_bools_or_floats(field, value):
    # The Jinja took True and floats for numbers: table True became the table 'True', 202.0 '202.0'
    # (a float mark even broke the Jinja itself).
    found = errors([dict(MACBOOK, **{field: value})])
    assert len(found) == 1 and found[0].startswith('source_routing_policies[0] (macbook).%s: not ' % field)
    assert found[0].endswith(': %r' % value)


@pytest.mark.parametrize('change, field', [({'name': 'macbook\n'}, 'name'), ({'from': ['192.168.1.10\n']}, 'from[0]'),
                                           ({'to': ['203.0.113.0/24\n']}, 'to[0]'),
                                           ({'gateway': '192.0.2.1\n'}, 'gateway'), ({'snat': '192.0.2.2\n'}, 'snat'),
                                           ({'protocol': 'tcp', 'dports': ['80\n']}, 'dports[0]')])
def test_a_trailing_newline_is_not_part_of_a_value(change, field):
    # (the Jinja's `match` let it through: `$` matches before a final newline)
    found = errors([dict(MACBOOK, **change)])
    assert len(found) == 1 and found[0].startswith('source_routing_policies[0] (macbook%s).%s: not ' % (
        '\n' if field == 'name' else '', field)), found


@pytest.mark.parametrize('policies, message', [
    ({'a': 1}, "source_routing_policies: not a list of policies: {'a': 1}"),
    (5.5, 'source_routing_policies: not a list of policies: 5.5'),
    ('macbook', "source_routing_policies: not a list of policies: 'macbook'"),
    (['macbook'], "source_routing_policies[0]: not a policy (a mapping): 'macbook'"),
    ([[]], 'source_routing_policies[0]: not a policy (a mapping): []'),
    ([None], 'source_routing_policies[0]: not a policy (a mapping): None'),
    ([dict(MACBOOK, **{'from': 5})], 'source_routing_policies[0] (macbook).from: not a list: 5'),
    ([dict(MACBOOK, **{'from': {'192.168.1.10': 1}})],
     "source_routing_policies[0] (macbook).from: not a list: {'192.168.1.10': 1}"),
    ([dict(MACBOOK, to=True)], 'source_routing_policies[0] (macbook).to: not a list: True'),
    ([dict(WEB, dports={'a': 1})], "source_routing_policies[0] (web).dports: not a list: {'a': 1}"),
])
def test_shapes_the_jinja_failed_on_are_named(policies, message):
    assert errors(policies) == [message]


def test_the_interfaces_are_left_to_the_router():
    # the role cannot tell what the router has: apply_state checks it (tests/integration)
    found = role_input({'source_routing_policies': [dict(MACBOOK, interface='ppp0')]})
    assert found.errors == [] and found.checks == [
        {'field': 'source_routing_policies[0] (macbook).interface', 'interface': 'ppp0'}]
    assert role_input({'source_routing_policies': [MACBOOK, WEB]}).checks == [
        {'field': 'source_routing_policies[0] (macbook).interface', 'interface': 'wan2'},
        {'field': 'source_routing_policies[1] (web).interface', 'interface': 'wan3'}]


def test_conflicts_between_policies():
    found = errors([MACBOOK, dict(WEB, name='macbook', table=201, mark=1)])
    assert found == ["source_routing_policies[1] (macbook).name: two policies are named 'macbook'",
                     'source_routing_policies[1] (macbook).table: 201 is the table of another policy',
                     'source_routing_policies[1] (macbook).mark: 1 is the mark of another policy']
    # the defaults count too: the second policy's default table is 202
    assert errors([MACBOOK, WEB, dict(WEB, name='x', table=202)]) == [
        'source_routing_policies[2] (x).table: 202 is the table of another policy']


def test_every_problem_at_once_in_order():
    # tests/integration/test_role_source_routing.py's bad variables
    dsl = {key: value for key, value in WEB.items() if key != 'protocol'}
    v6 = {'name': 'client2v6', 'from': ['2001:db8:1:1::11'], 'interface': 'wan2', 'gateway': '2001:db8:2::1',
          'snat': '192.0.2.2'}
    assert errors([dict(MACBOOK, interface='ppp0', priority=2000), dict(dsl, name='macbook', gateway='192.0.2.300'),
                   v6], source_routing_confirm_timeout=-1) == [
        'source_routing_confirm_timeout: must be 0 or more, not -1',
        'source_routing_policies[0] (macbook).priority: not in the range of this role, 1000..1999: 2000',
        "source_routing_policies[1] (macbook).name: two policies are named 'macbook'",
        'source_routing_policies[1] (macbook).dports: needs protocol (tcp, udp or sctp)',
        "source_routing_policies[1] (macbook).gateway: not an IP address: '192.0.2.300'",
        'source_routing_policies[2] (client2v6).snat: 192.0.2.2 is IPv4, but from has IPv6 sources']


@pytest.mark.parametrize('timeout, message', [
    (-1, 'source_routing_confirm_timeout: must be 0 or more, not -1'),
    ('-5', 'source_routing_confirm_timeout: must be 0 or more, not -5'),
    ('-1.5', 'source_routing_confirm_timeout: must be 0 or more, not -1.5'),  # | int reads '-1.5' as -1
])
def test_confirm_timeout_is_validated(timeout, message):
    assert errors([], source_routing_confirm_timeout=timeout) == [message]


@pytest.mark.parametrize('timeout', [0, 30, '30', 'soon', [1], None])
def test_confirm_timeout_that_reads_as_zero_or_more(timeout):
    # as `| int` read it: what is no number is 0 (the module's own option check sees the rest)
    assert role_input({'source_routing_policies': [], 'source_routing_confirm_timeout': timeout}).errors == []


@pytest.mark.parametrize('mark', [1, 255])
def test_fwmark_rules_have_no_bits_outside_their_mask(mark):
    """ip_rule refuses a mark with bits outside its mask: the lowest and highest mark are within it."""
    marks = [rule['fwmark'] for rule in rules([dict(WEB, mark=mark)]) if 'fwmark' in rule]
    assert marks and all(parse_fwmark(fwmark, None, 'fwmark')[0] for fwmark in marks)
