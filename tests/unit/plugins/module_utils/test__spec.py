"""check_params: the agent's stand-in for AnsibleModule's argument checks.

The saved states below are written by hand as the roles build them
(plugins/plugin_utils/_ROLE.py, through apply_state's action plugin),
and every one must come out exactly as Ansible's own validator gives it: that
keeps the agent applying what the play applied.
"""
import copy

import pytest

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.netpolicy.routing.plugins.module_utils import _spec
from ansible_collections.netpolicy.routing.plugins.module_utils._connmark import CONNMARK_SPEC
from ansible_collections.netpolicy.routing.plugins.module_utils._engine import InputError
from ansible_collections.netpolicy.routing.plugins.module_utils._routes import ROUTE_OPTIONS, ROUTE_TABLE_SPEC
from ansible_collections.netpolicy.routing.plugins.module_utils._rt_tables import ARGUMENT_SPEC as RT_TABLES_SPEC
from ansible_collections.netpolicy.routing.plugins.module_utils._rules import IP_RULE_SPEC

# ---------------------------------------------------------------- the roles' saved arguments

# reply_via_same_router: router2 (by MAC, IPv4 and IPv6 gateways, two services) and ispb (by
# interface eth0.100, table and mark assigned), forwarding from lan1.
REPLY_RT_TABLES = {'entries': [{'name': 'router2', 'id': 301}, {'name': 'ispb', 'id': 302}]}
REPLY_TABLES = {'tables': [
    {'table': '301', 'purge': True, 'routes': [
        {'dest': 'default', 'gateway': '192.168.1.2', 'dev': 'lan0'},
        {'dest': 'default', 'gateway': '2001:db8:1::2', 'dev': 'lan0'}]},
    {'table': '302', 'purge': True, 'routes': [{'dest': 'default', 'gateway': '192.168.2.1', 'dev': 'eth0.100'}]},
]}
REPLY_RULES = {'purge_priorities': '500-999', 'rules': [
    {'priority': 501, 'fwmark': '0x10000/0xff0000', 'table': '301', 'family': 'ipv4'},
    {'priority': 501, 'fwmark': '0x10000/0xff0000', 'table': '301', 'family': 'ipv6'},
    {'priority': 502, 'fwmark': '0x20000/0xff0000', 'table': '302', 'family': 'ipv4'},
]}
REPLY_CONNMARK = {'name': 'reply_via_router', 'mask': 16711680, 'entries': [
    {'mark': 65536, 'in_interface': 'lan0', 'exclude_source': [], 'source_mac': '52:54:00:c2:a5:43',
     'protocol': 'tcp', 'dport': 22},
    {'mark': 65536, 'in_interface': 'lan0', 'exclude_source': [], 'source_mac': '52:54:00:c2:a5:43',
     'protocol': 'udp', 'dport': '5000-5010'},
    {'mark': 131072, 'in_interface': 'eth0.100', 'exclude_source': ['192.168.2.0/24', '2001:db8:2::/48']},
], 'restore_on': {'output': True, 'prerouting': ['lan1']}}
REPLY_CONNMARK_NO_FORWARD = {'name': 'reply_via_router', 'mask': 16711680, 'entries': [
    {'mark': 65536, 'in_interface': 'wan0', 'exclude_source': []}], 'restore_on': {'output': True, 'prerouting': []}}

# source_routing: policy vpn (by source and destination, gateway) and policy voip (by protocol
# and ports through ppp0, so a mark rule and both families).
SOURCE_RT_TABLES = {'entries': [{'name': 'vpn', 'id': 201}, {'name': 'voip', 'id': 202}]}
SOURCE_TABLES = {'tables': [
    {'table': '201', 'routes': [{'dest': 'default', 'gateway': '198.51.100.1', 'dev': 'wan2'}], 'purge': True,
     'copy_from': 'main', 'copy_exclude': ['default']},
    {'table': '202', 'routes': [{'dest': 'default', 'dev': 'ppp0', 'family': 'ipv4'},
                                {'dest': 'default', 'dev': 'ppp0', 'family': 'ipv6'}], 'purge': True,
     'copy_from': 'main', 'copy_exclude': ['default']},
]}
SOURCE_RULES = {'purge_priorities': '1000-1999', 'rules': [
    {'priority': 1000, 'table': '201', 'family': 'ipv4', 'from': '192.168.1.50', 'to': '203.0.113.0/24'},
    {'priority': 1000, 'table': '201', 'family': 'ipv4', 'from': '192.168.1.0/28'},
    {'priority': 1010, 'table': '202', 'family': 'ipv4', 'fwmark': '0x200/0xff00'},
    {'priority': 1010, 'table': '202', 'family': 'ipv6', 'fwmark': '0x200/0xff00'},
]}

# split_access: isp1 (gateway, SNAT address, weight 2), isp2 (ppp, masquerade: its source rule
# comes from address_rules) and isp3 (gateway): a multipath default in main.
SPLIT_RT_TABLES = {'entries': [{'name': 'isp1', 'id': 101}, {'name': 'isp2', 'id': 102}, {'name': 'isp3', 'id': 103}]}
SPLIT_TABLES = {'tables': [
    {'table': '101', 'routes': [{'dest': 'default', 'dev': 'wan1', 'gateway': '198.51.100.1'}], 'purge': True,
     'family': 'ipv4'},
    {'table': '102', 'routes': [{'dest': 'default', 'dev': 'ppp0'}], 'purge': True, 'family': 'ipv4'},
    {'table': '103', 'routes': [{'dest': 'default', 'dev': 'wan3', 'gateway': '203.0.113.1'}], 'purge': True,
     'family': 'ipv4'},
    {'table': 'main', 'routes': [{'dest': 'default', 'nexthops': [
        {'gateway': '198.51.100.1', 'dev': 'wan1', 'weight': 2},
        {'gateway': '203.0.113.1', 'dev': 'wan3', 'weight': 1}]}], 'family': 'ipv4'},
]}
SPLIT_RULES = {'purge_priorities': '3000-3999', 'rules': [
    {'priority': 3000, 'table': 'main', 'suppress_prefixlength': 0, 'family': 'ipv4'},
    {'priority': 3100, 'fwmark': '0x1/0xff', 'table': '101', 'family': 'ipv4'},
    {'priority': 3101, 'fwmark': '0x2/0xff', 'table': '102', 'family': 'ipv4'},
    {'priority': 3102, 'fwmark': '0x3/0xff', 'table': '103', 'family': 'ipv4'},
    {'priority': 3200, 'from': '198.51.100.2', 'table': '101', 'family': 'ipv4'},
    # What address_rules adds for ppp0's current address.
    {'priority': 3201, 'table': '102', 'family': 'ipv4', 'from': '100.64.0.7'},
]}

REAL_ARGUMENTS = [
    ('rt_tables_entry', RT_TABLES_SPEC, REPLY_RT_TABLES),
    ('rt_tables_entry', RT_TABLES_SPEC, SOURCE_RT_TABLES),
    ('rt_tables_entry', RT_TABLES_SPEC, SPLIT_RT_TABLES),
    ('route_table', ROUTE_TABLE_SPEC, REPLY_TABLES),
    ('route_table', ROUTE_TABLE_SPEC, SOURCE_TABLES),
    ('route_table', ROUTE_TABLE_SPEC, SPLIT_TABLES),
    ('ip_rule', IP_RULE_SPEC, REPLY_RULES),
    ('ip_rule', IP_RULE_SPEC, SOURCE_RULES),
    ('ip_rule', IP_RULE_SPEC, SPLIT_RULES),
    ('ip_rule', IP_RULE_SPEC, {'purge_priorities': '3000-3999', 'rules': []}),
    ('connmark_return', CONNMARK_SPEC, REPLY_CONNMARK),
    ('connmark_return', CONNMARK_SPEC, REPLY_CONNMARK_NO_FORWARD),
]


def routes_as_dicts(spec):
    """``spec`` with its routes checked as mappings of ROUTE_OPTIONS.

    route_table takes its routes as raw items (a route may be a string, which
    _routes checks itself); this keeps the nested field names of check_params
    tested whichever way route_table declares them.
    """
    spec = copy.deepcopy(spec)
    spec['routes'] = dict(type='list', elements='dict', options=copy.deepcopy(ROUTE_OPTIONS))
    spec['tables']['options']['routes'] = dict(type='list', elements='dict', default=[],
                                               options=copy.deepcopy(ROUTE_OPTIONS))
    return spec


ROUTES_CHECKED = routes_as_dicts(ROUTE_TABLE_SPEC)

# The agent applies route_table one table at a time; and the routes once more
# as mappings, so their defaults and conversions are compared too.
REAL_ARGUMENTS.extend(('route_table', ROUTE_TABLE_SPEC, {'tables': [table]})
                      for args in (REPLY_TABLES, SOURCE_TABLES, SPLIT_TABLES) for table in args['tables'])
REAL_ARGUMENTS.extend(('route_table_as_mappings', ROUTES_CHECKED, args)
                      for args in (REPLY_TABLES, SOURCE_TABLES, SPLIT_TABLES))


def ansible_result(spec, params):
    # A copy of the spec too: Ansible fills the suboptions of a default mapping
    # in place, which would change CONNMARK_SPEC for every later test.
    return ArgumentSpecValidator(copy.deepcopy(spec)).validate(copy.deepcopy(params))


def ansible_validated(spec, params):
    """What Ansible gives the module for ``params`` (the errors must be none)."""
    result = ansible_result(spec, params)
    assert result.error_messages == []
    return result.validated_parameters


def ansible_refuses(spec, params):
    return bool(ansible_result(spec, params).error_messages)


@pytest.mark.parametrize('module, spec, params', REAL_ARGUMENTS,
                         ids=['%s-%d' % (item[0], index) for index, item in enumerate(REAL_ARGUMENTS)])
def test_saved_arguments_come_out_as_ansible_gives_them(module, spec, params):
    assert _spec.check_params(spec, copy.deepcopy(params)) == ansible_validated(spec, params)


@pytest.mark.parametrize('spec, params', [
    (IP_RULE_SPEC, {'priority': '5', 'table': 101, 'invert': 'yes'}),    # conversions Ansible makes too
    (IP_RULE_SPEC, {'priority': ' 7 ', 'invert': 'OFF'}),
    (IP_RULE_SPEC, {'invert': 'True', 'goto': 7, 'suppress_prefixlength': '0'}),
    (IP_RULE_SPEC, {'invert': 1, 'table': 1.5}),
    (IP_RULE_SPEC, {'invert': '0', 'action': 'blackhole', 'family': 'ipv6'}),
    (IP_RULE_SPEC, {'rules': None}),
    (IP_RULE_SPEC, {}),
    (RT_TABLES_SPEC, {'entries': [{'name': 'isp1', 'id': '101'}]}),
    (RT_TABLES_SPEC, {'name': 'isp1', 'id': 101, 'state': 'absent', 'path': '/tmp/x.conf'}),
    (ROUTE_TABLE_SPEC, {'table': 101, 'routes': [{'dest': '192.0.2.0/24', 'metric': '10', 'onlink': 'yes'}]}),
    (ROUTES_CHECKED, {'table': 101, 'routes': [{'dest': '192.0.2.0/24', 'metric': '10', 'onlink': 'yes'}]}),
    (ROUTE_TABLE_SPEC, {'tables': [{'table': 5, 'routes': [
        {'dest': 'default', 'nexthops': [{'gateway': '192.0.2.1', 'weight': '2'}]}]}]}),
    (ROUTES_CHECKED, {'tables': [{'table': 5, 'routes': [
        {'dest': 'default', 'nexthops': [{'gateway': '192.0.2.1', 'weight': '2'}]}]}]}),
    (ROUTE_TABLE_SPEC, {'tables': [{'table': '5', 'state': 'absent', 'purge': True}]}),
    (ROUTE_TABLE_SPEC, {'table': '5', 'copy_from': 'main', 'copy_exclude': ['default', 10]}),
    (ROUTE_TABLE_SPEC, {'table': '5', 'routes': [{'dest': 'default', 'type': 'blackhole', 'scope': 'link'}]}),
    (ROUTES_CHECKED, {'table': '5', 'routes': [{'dest': 'default', 'type': 'blackhole', 'scope': 'link'}]}),
    (CONNMARK_SPEC, {'name': 'x'}),
    (CONNMARK_SPEC, {'name': 'x', 'restore_on': {}}),
    (CONNMARK_SPEC, {'name': 'x', 'mask': '255', 'backend': 'nftables', 'state': 'absent', 'netns': 'r1'}),
    (CONNMARK_SPEC, {'name': 'x', 'entries': [{'mark': '2', 'dport': [80, 443], 'exclude_source': ['10.0.0.1']}]}),
])
def test_other_good_arguments_come_out_as_ansible_gives_them(spec, params):
    assert _spec.check_params(spec, copy.deepcopy(params)) == ansible_validated(spec, params)


def test_defaults_are_not_shared_with_the_spec():
    first = _spec.check_params(CONNMARK_SPEC, {'name': 'x'})
    first['entries'].append({'mark': 1})
    first['restore_on']['prerouting'].append('lan0')
    second = _spec.check_params(CONNMARK_SPEC, {'name': 'x'})
    assert second['entries'] == [] and second['restore_on'] == {'prerouting': [], 'output': False}
    assert CONNMARK_SPEC['entries']['default'] == [] and CONNMARK_SPEC['restore_on']['default'] == {}


@pytest.mark.parametrize('spec', [ROUTE_TABLE_SPEC, ROUTES_CHECKED])
def test_the_params_given_are_not_changed(spec):
    params = copy.deepcopy(SPLIT_TABLES)
    _spec.check_params(spec, params)
    assert params == SPLIT_TABLES


# ---------------------------------------------------------------- bad input: the field is named

@pytest.mark.parametrize('spec, params, field, message', [
    (IP_RULE_SPEC, {'bogus': 1}, 'bogus', 'not an option (known: action, dport, family'),
    (IP_RULE_SPEC, {'rules': [{'priority': 5}, {'prio': 5}]}, 'rules[1].prio', 'not an option (known: action,'),
    (ROUTES_CHECKED, {'tables': [{'table': '1', 'routes': [{'dest': 'default', 'device': 'x'}]}]},
     'tables[0].routes[0].device', 'not an option'),
    (CONNMARK_SPEC, {'name': 'x', 'restore_on': {'forward': ['lan0']}}, 'restore_on.forward', 'not an option'),
    # wrong type
    (IP_RULE_SPEC, {'priority': 'high'}, 'priority', "expected int, got 'high'"),
    (IP_RULE_SPEC, {'priority': '0x10'}, 'priority', "expected int, got '0x10'"),
    (IP_RULE_SPEC, {'priority': [5]}, 'priority', 'expected int, got [5]'),
    (IP_RULE_SPEC, {'invert': 'maybe'}, 'invert', "expected bool, got 'maybe'"),
    (IP_RULE_SPEC, {'invert': 2}, 'invert', 'expected bool, got 2'),
    (IP_RULE_SPEC, {'invert': [None]}, 'invert', 'expected bool, got [None]'),
    (ROUTE_TABLE_SPEC, {'table': '1', 'purge': {}}, 'purge', 'expected bool, got {}'),
    (IP_RULE_SPEC, {'rules': [{'priority': 5}, 'from 192.0.2.1']}, 'rules[1]', "expected a mapping, got 'from 192"),
    (ROUTES_CHECKED, {'tables': [{'table': '1', 'routes': [{'dest': 'default', 'nexthops': [
        {'gateway': '192.0.2.1'}, {'gateway': '192.0.2.2', 'weight': 'heavy'}]}]}]},
     'tables[0].routes[0].nexthops[1].weight', "expected int, got 'heavy'"),
    (ROUTE_TABLE_SPEC, {'tables': [{'table': '1', 'purge': 'sometimes'}]}, 'tables[0].purge', 'expected bool'),
    (CONNMARK_SPEC, {'name': 'x', 'entries': [{'mark': 'one'}]}, 'entries[0].mark', "expected int, got 'one'"),
    (CONNMARK_SPEC, {'name': 'x', 'restore_on': ['lan0']}, 'restore_on', "expected a mapping, got ['lan0']"),
    (CONNMARK_SPEC, {'name': 'x', 'restore_on': {'output': 'always'}}, 'restore_on.output', 'expected bool'),
    (RT_TABLES_SPEC, {'entries': [{'name': 'a', 'id': 'x'}]}, 'entries[0].id', "expected int, got 'x'"),
    # bad choice
    (IP_RULE_SPEC, {'family': 'IPV4'}, 'family', "one of ipv4, ipv6, got 'IPV4'"),
    (IP_RULE_SPEC, {'state': 'gone'}, 'state', "one of present, absent, got 'gone'"),
    (IP_RULE_SPEC, {'rules': [{'action': 'drop'}]}, 'rules[0].action',
     "one of lookup, goto, nop, blackhole, unreachable, prohibit, got 'drop'"),
    (ROUTES_CHECKED, {'tables': [{'table': '1', 'routes': [{'dest': 'default', 'type': 'local'}]}]},
     'tables[0].routes[0].type', "one of blackhole, prohibit, throw, unicast, unreachable, got 'local'"),
    (ROUTE_TABLE_SPEC, {'tables': [{'table': '1', 'state': 'present'}, {'table': '2', 'state': 'deleted'}]},
     'tables[1].state', "one of present, absent, got 'deleted'"),
    (CONNMARK_SPEC, {'name': 'x', 'entries': [{'mark': 1, 'protocol': 'icmp'}]}, 'entries[0].protocol',
     "one of tcp, udp, sctp, got 'icmp'"),
    (CONNMARK_SPEC, {'name': 'x', 'backend': 'ebtables'}, 'backend', "one of auto, nftables, iptables, got 'ebtables'"),
    # missing required
    (CONNMARK_SPEC, {}, 'name', 'required'),
    (CONNMARK_SPEC, {'name': 'x', 'entries': [{'mark': 1}, {'in_interface': 'lan0'}]}, 'entries[1].mark', 'required'),
    (ROUTE_TABLE_SPEC, {'tables': [{'routes': []}]}, 'tables[0].table', 'required'),
    (ROUTES_CHECKED, {'tables': [{'table': '1', 'routes': [{'dest': 'default'}, {'dev': 'wan1'}]}]},
     'tables[0].routes[1].dest', 'required'),
    (ROUTES_CHECKED, {'table': '1', 'routes': [{'dest': 'default', 'nexthops': [{'weight': 'two'}]}]},
     'routes[0].nexthops[0].weight', 'expected int'),
    (RT_TABLES_SPEC, {'entries': [{'id': 7}]}, 'entries[0].name', 'required'),
])
def test_bad_input_is_refused_naming_the_field(spec, params, field, message):
    with pytest.raises(InputError) as caught:
        _spec.check_params(spec, params)
    assert caught.value.field == field
    assert str(caught.value).startswith('%s: %s' % (field, message))
    assert ansible_refuses(spec, params)


@pytest.mark.parametrize('field, params, expected', [
    ('route_table.', {'tables': [{'table': '1', 'routes': [{'dest': 'default'}, {'dest': 'x', 'dev': ['a']}]}]},
     'route_table.tables[0].routes[1].dev'),
    ('ip_rule.', {'rules': [{'priority': 'x'}]}, 'ip_rule.rules[0].priority'),
    ('ip_rule.', {'unknown': 1}, 'ip_rule.unknown'),
])
def test_the_prefix_names_the_section(field, params, expected):
    spec = ROUTES_CHECKED if field == 'route_table.' else IP_RULE_SPEC
    with pytest.raises(InputError) as caught:
        _spec.check_params(spec, params, field)
    assert caught.value.field == expected


@pytest.mark.parametrize('params, field', [
    (None, 'connmark_return'),
    ([{'name': 'x'}], 'connmark_return'),
    ('name=x', 'connmark_return'),
])
def test_arguments_that_are_not_a_mapping(params, field):
    with pytest.raises(InputError) as caught:
        _spec.check_params(CONNMARK_SPEC, params, field + '.')
    assert caught.value.field == field
    assert 'expected a mapping' in str(caught.value)


def test_a_spec_type_it_does_not_know_is_an_error_not_a_pass():
    with pytest.raises(InputError) as caught:
        _spec.check_params({'size': dict(type='float')}, {'size': 1.5})
    assert str(caught.value) == 'size: the spec has a type this check does not know: float'


# Stricter than Ansible on purpose: a saved state is written by our roles, so
# a value Ansible would coerce (with a warning, or by a loose rule) is a sign of
# a damaged or foreign file.
@pytest.mark.parametrize('spec, params, field', [
    (IP_RULE_SPEC, {'priority': 5.0}, 'priority'),
    (IP_RULE_SPEC, {'priority': True}, 'priority'),
    (IP_RULE_SPEC, {'invert': 'y'}, 'invert'),
    (IP_RULE_SPEC, {'invert': 't'}, 'invert'),
    (IP_RULE_SPEC, {'invert': 1.0}, 'invert'),
    (IP_RULE_SPEC, {'table': True}, 'table'),
    (IP_RULE_SPEC, {'table': ['101']}, 'table'),
    (IP_RULE_SPEC, {'table': {'id': 5}}, 'table'),
    (CONNMARK_SPEC, {'name': None}, 'name'),
    (ROUTE_TABLE_SPEC, {'tables': [{'table': None}]}, 'tables[0].table'),
    (ROUTES_CHECKED, {'tables': [{'table': '1', 'routes': [{'dest': 'default'}, {'dest': 'x', 'dev': ['a']}]}]},
     'tables[0].routes[1].dev'),
    (CONNMARK_SPEC, {'name': 'x', 'entries': [{'mark': 1, 'exclude_source': [{'ip': '10.0.0.1'}]}]},
     'entries[0].exclude_source[0]'),
])
def test_stricter_than_ansible(spec, params, field):
    assert not ansible_refuses(spec, params)
    with pytest.raises(InputError) as caught:
        _spec.check_params(spec, params)
    assert caught.value.field == field


# Where check_params differs from Ansible on purpose.
@pytest.mark.parametrize('spec, params', [
    (ROUTE_TABLE_SPEC, {'table': '5', 'copy_from': 'main', 'copy_exclude': 'default,192.0.2.0/24'}),
    (CONNMARK_SPEC, {'name': 'x', 'restore_on': {'prerouting': 'lan0,lan1'}}),
    (IP_RULE_SPEC, {'rules': {'priority': 5}}),
])
def test_a_list_option_takes_a_list_only(spec, params):
    # Stricter than Ansible (which splits a string at commas): the roles always write lists.
    with pytest.raises(InputError, match='expected a list'):
        _spec.check_params(spec, copy.deepcopy(params))


def test_an_explicit_null_is_not_given():
    # Lenient on purpose: null means "not given", so the default applies.
    assert _spec.check_params(IP_RULE_SPEC, {'rules': [{'priority': 5, 'invert': None}]})['rules'][0]['invert'] is False
    assert _spec.check_params(IP_RULE_SPEC, {'state': None})['state'] == 'present'
