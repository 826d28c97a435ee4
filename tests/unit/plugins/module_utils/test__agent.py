"""The agent's pure logic: state files, what a state depends on, which events matter, the
status text, the command line, and the decoding of netlink events.

Nothing here touches the kernel: state files live in tmp_path, table names
and interface addresses are patched, the modules' ``change`` functions are
replaced by recorders, and netlink messages are built by hand with struct.
"""
import contextlib
import copy
import errno
import io
import json
import os
import socket
import struct
import time
from unittest import mock

import pytest

from ansible_collections.netpolicy.routing.plugins.module_utils import _agent as agent
from ansible_collections.netpolicy.routing.plugins.module_utils import _netlink
from ansible_collections.netpolicy.routing.plugins.module_utils import _rt_tables
from ansible_collections.netpolicy.routing.plugins.module_utils._engine import EngineError, InputError

# ---------------------------------------------------------------- states as the roles save them

REPLY_STATE = {
    'role': 'reply_via_same_router', 'version': 1,
    'rt_tables_entry': {'entries': [{'name': 'router2', 'id': 301}, {'name': 'ispb', 'id': 302}]},
    'sysctl': {'file': '/etc/sysctl.d/60-netpolicy-reply_via_same_router.conf',
               'values': {'net.ipv4.conf.eth0/100.rp_filter': 2}},
    'route_table': {'tables': [
        {'table': '301', 'purge': True, 'routes': [
            {'dest': 'default', 'gateway': '192.168.1.2', 'dev': 'lan0'},
            {'dest': 'default', 'gateway': '2001:db8:1::2', 'dev': 'lan0'}]},
        {'table': '302', 'purge': True, 'routes': [{'dest': 'default', 'gateway': '192.168.2.1', 'dev': 'eth0.100'}]},
    ]},
    'ip_rule': {'purge_priorities': '500-999', 'rules': [
        {'priority': 501, 'fwmark': '0x10000/0xff0000', 'table': '301', 'family': 'ipv4'},
        {'priority': 501, 'fwmark': '0x10000/0xff0000', 'table': '301', 'family': 'ipv6'},
        {'priority': 502, 'fwmark': '0x20000/0xff0000', 'table': '302', 'family': 'ipv4'}]},
    'connmark_return': {'name': 'reply_via_router', 'mask': 16711680, 'entries': [
        {'mark': 65536, 'in_interface': 'lan0', 'exclude_source': [], 'source_mac': '52:54:00:c2:a5:43',
         'protocol': 'tcp', 'dport': 22},
        {'mark': 131072, 'in_interface': 'eth0.100', 'exclude_source': ['192.168.2.0/24']}],
        'restore_on': {'output': True, 'prerouting': ['lan1']}},
}

SOURCE_STATE = {
    'version': 1, 'role': 'source_routing',
    # the role's own bookkeeping: not read by the agent
    'policies': [{'name': 'vpn', 'interface': 'tun7', 'table': 201}],
    'rt_tables_entry': {'entries': [{'name': 'vpn', 'id': 201}, {'name': 'voip', 'id': 202}]},
    'route_table': {'tables': [
        {'table': '201', 'routes': [{'dest': 'default', 'gateway': '198.51.100.1', 'dev': 'wan2'}], 'purge': True,
         'copy_from': 'main', 'copy_exclude': ['default']},
        {'table': '202', 'routes': [{'dest': 'default', 'dev': 'ppp0', 'family': 'ipv4'},
                                    {'dest': 'default', 'dev': 'ppp0', 'family': 'ipv6'}], 'purge': True,
         'copy_from': 'main', 'copy_exclude': ['default']}]},
    'ip_rule': {'purge_priorities': '1000-1999', 'rules': [
        {'priority': 1000, 'table': '201', 'family': 'ipv4', 'from': '192.168.1.50', 'to': '203.0.113.0/24'},
        {'priority': 1010, 'table': '202', 'family': 'ipv4', 'fwmark': '0x200/0xff00'}]},
    'nftables': {'file': '/etc/netpolicy/routing/source_routing.nft', 'table': 'inet netpolicy_source_routing'},
    'sysctl': {'file': '/etc/sysctl.d/60-netpolicy-source_routing.conf',
               'values': {'net.ipv4.conf.wan2.rp_filter': 2},
               'before': {'net.ipv4.conf.wan2.rp_filter': '1'}},
}

SPLIT_STATE = {
    'role': 'split_access', 'version': 1,
    'uplinks': [{'name': 'isp1', 'interface': 'wan1', 'table': 101, 'mark': 1},
                {'name': 'isp2', 'interface': 'ppp0', 'table': 102, 'mark': 2},
                {'name': 'isp3', 'interface': 'wan3', 'table': 103, 'mark': 3}],
    'lan_interfaces': ['lan0'], 'balance': 'per_connection',
    'rt_tables_entry': {'entries': [{'name': 'isp1', 'id': 101}, {'name': 'isp2', 'id': 102},
                                    {'name': 'isp3', 'id': 103}]},
    'route_table': {'tables': [
        {'table': '101', 'routes': [{'dest': 'default', 'dev': 'wan1', 'gateway': '198.51.100.1'}], 'purge': True,
         'family': 'ipv4'},
        {'table': '102', 'routes': [{'dest': 'default', 'dev': 'ppp0'}], 'purge': True, 'family': 'ipv4'},
        {'table': '103', 'routes': [{'dest': 'default', 'dev': 'wan3', 'gateway': '203.0.113.1'}], 'purge': True,
         'family': 'ipv4'},
        {'table': 'main', 'routes': [{'dest': 'default', 'nexthops': [
            {'gateway': '198.51.100.1', 'dev': 'wan1', 'weight': 1},
            {'gateway': '203.0.113.1', 'dev': 'wan3', 'weight': 1}]}], 'family': 'ipv4'}]},
    'ip_rule': {'rules': [
        {'priority': 3000, 'table': 'main', 'suppress_prefixlength': 0, 'family': 'ipv4'},
        {'priority': 3100, 'fwmark': '0x1/0xff', 'table': '101', 'family': 'ipv4'},
        {'priority': 3101, 'fwmark': '0x2/0xff', 'table': '102', 'family': 'ipv4'},
        {'priority': 3102, 'fwmark': '0x3/0xff', 'table': '103', 'family': 'ipv4'},
        {'priority': 3200, 'from': '198.51.100.2', 'table': '101', 'family': 'ipv4'}],
        'purge_priorities': '3000-3999'},
    'address_rules': [{'interface': 'ppp0', 'priority': 3201, 'table': '102', 'family': 'ipv4'}],
    'nftables': {'table': 'inet netpolicy_split_access', 'file': '/etc/netpolicy/routing/split_access.nft'},
    'sysctl': {'file': '/etc/sysctl.d/60-netpolicy-split_access.conf', 'values': {
        'net.ipv4.ip_forward': 1, 'net.ipv4.conf.all.src_valid_mark': 1, 'net.ipv4.fib_multipath_hash_policy': 1,
        'net.ipv4.conf.wan1.rp_filter': 2, 'net.ipv4.conf.ppp0.rp_filter': 2, 'net.ipv4.conf.wan3.rp_filter': 2}},
}

STATES = {'reply_via_same_router': REPLY_STATE, 'source_routing': SOURCE_STATE, 'split_access': SPLIT_STATE}


def write(directory, name, content):
    """Write a state file: ``content`` is a document (written as JSON) or the raw text/bytes."""
    path = directory / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


# ---------------------------------------------------------------- check_state / read_state

@pytest.mark.parametrize('role', sorted(STATES))
def test_the_roles_states_are_good(role):
    agent.check_state(copy.deepcopy(STATES[role]), role + '.json')


@pytest.mark.parametrize('state', [
    {'role': 'split_access', 'version': 1},                           # every section is optional
    {'role': 'source_routing', 'version': 1, 'uplinks': 'bookkeeping', 'anything': None},
    # the monitor's settings as the role saves them, given as strings or one address without a list
    {'role': 'split_access', 'version': 1, 'uplinks': [{'name': 'isp1', 'interface': 'wan1', 'mark': 1}],
     'monitor': {'enabled': True, 'targets': {'isp1': '203.0.113.10'}, 'probe': 'tcp:443', 'interval': '0.5',
                 'down': '3', 'up': None}},
    {'role': 'source_routing', 'version': 1, 'address_rules': [], 'route_table': {}},
])
def test_minimal_states_are_good(state):
    agent.check_state(state, state['role'] + '.json')


@pytest.mark.parametrize('state, filename, problem', [
    ([], 'split_access.json', 'not a netpolicy.routing state (no "role")'),
    ('split_access', 'split_access.json', 'not a netpolicy.routing state (no "role")'),
    ({}, 'split_access.json', 'not a netpolicy.routing state (no "role")'),
    ({'name': 'split_access', 'version': 1}, 'split_access.json', 'not a netpolicy.routing state (no "role")'),
    ({'role': 'nat', 'version': 1}, 'nat.json',
     "unknown role 'nat' (known: reply_via_same_router, source_routing, split_access)"),
    ({'role': None, 'version': 1}, 'split_access.json', 'unknown role None'),
    ({'role': ['split_access'], 'version': 1}, 'split_access.json', "unknown role ['split_access']"),
    ({'role': 'split_access', 'version': 1}, 'source_routing.json',
     'holds the state of split_access, so it should be named split_access.json'),
    ({'role': 'split_access', 'version': 1}, 'split_access.json.bak',
     'holds the state of split_access, so it should be named split_access.json'),
    ({'role': 'split_access', 'version': 2}, 'split_access.json', 'state version 2, this agent reads version 1'),
    ({'role': 'split_access'}, 'split_access.json', 'state version None, this agent reads version 1'),
    ({'role': 'split_access', 'version': '1'}, 'split_access.json', "state version '1', this agent reads version 1"),
    ({'role': 'split_access', 'version': 1, 'route_table': []}, 'split_access.json',
     'section route_table is not a mapping'),
    ({'role': 'split_access', 'version': 1, 'ip_rule': None}, 'split_access.json', 'section ip_rule is not a mapping'),
    ({'role': 'split_access', 'version': 1, 'sysctl': 'net.ipv4.ip_forward=1'}, 'split_access.json',
     'section sysctl is not a mapping'),
    ({'role': 'split_access', 'version': 1, 'address_rules': {'interface': 'ppp0'}}, 'split_access.json',
     'section address_rules is not a list'),
    ({'role': 'reply_via_same_router', 'version': 1, 'connmark_return': [{'name': 'x'}]},
     'reply_via_same_router.json', 'section connmark_return is not a mapping'),
])
def test_bad_states_are_refused(state, filename, problem):
    with pytest.raises(agent.StateFileError) as caught:
        agent.check_state(state, filename)
    assert str(caught.value).startswith(problem)


UPLINK = {'name': 'isp1', 'interface': 'wan1', 'mark': 1, 'weight': 1, 'gateway': '198.51.100.1'}


@pytest.mark.parametrize('sections, problem', [
    ({'uplinks': 'bookkeeping'}, "uplinks: not a list: 'bookkeeping'"),
    ({'uplinks': ['isp1']}, "uplinks[0]: not a mapping: 'isp1'"),
    ({'uplinks': [dict(UPLINK, name=None)]}, 'uplinks[0].name: not a name: None'),
    ({'uplinks': [dict(UPLINK, interface='')]}, "uplinks[0].interface: not a name: ''"),
    ({'uplinks': [dict(UPLINK, mark='1')]}, "uplinks[0].mark: not 1..255: '1'"),
    ({'uplinks': [dict(UPLINK, mark=256)]}, 'uplinks[0].mark: not 1..255: 256'),
    ({'uplinks': [dict(UPLINK, weight='heavy')]}, "uplinks[0].weight: not 1..256: 'heavy'"),
    ({'uplinks': [dict(UPLINK, gateway=['198.51.100.1'])]}, "uplinks[0].gateway: not an address: ['198.51.100.1']"),
    ({'monitor': ['enabled']}, "monitor: not a mapping: ['enabled']"),
    ({'monitor': {'probe': 'tcp'}}, "monitor.probe: not icmp or tcp:PORT: 'tcp'"),
    ({'monitor': {'probe': 'tcp:http'}}, "monitor.probe: not icmp or tcp:PORT: 'tcp:http'"),
    ({'monitor': {'probe': 'tcp:65536'}}, "monitor.probe: not icmp or tcp:PORT: 'tcp:65536'"),
    ({'monitor': {'interval': 'often'}}, "monitor.interval: not a number of seconds above 0: 'often'"),
    ({'monitor': {'interval': -1}}, 'monitor.interval: not a number of seconds above 0: -1'),
    ({'monitor': {'interval': float('inf')}}, 'monitor.interval: not a number of seconds above 0: inf'),
    ({'monitor': {'down': 0.5}}, 'monitor.down: not a number of rounds, 1 or more: 0.5'),
    ({'monitor': {'up': '2.5'}}, "monitor.up: not a number of rounds, 1 or more: '2.5'"),
    ({'monitor': {'targets': ['isp1']}}, "monitor.targets: not a mapping: ['isp1']"),
    ({'monitor': {'targets': {'isp1': 7}}}, 'monitor.targets.isp1: not a list of IPv4 addresses: 7'),
    ({'monitor': {'targets': {'isp1': ['gw.example']}}}, "monitor.targets.isp1: not an IPv4 address: 'gw.example'"),
])
def test_bad_monitor_settings_are_refused(sections, problem):
    state = dict({'role': 'split_access', 'version': 1, 'uplinks': [UPLINK]}, **sections)
    with pytest.raises(agent.StateFileError) as caught:
        agent.check_state(state, 'split_access.json')
    assert str(caught.value) == problem


def test_a_boolean_version_is_refused():
    with pytest.raises(agent.StateFileError):
        agent.check_state({'role': 'split_access', 'version': True}, 'split_access.json')


def test_read_state_of_a_good_file(tmp_path):
    path = write(tmp_path, 'split_access.json', SPLIT_STATE)
    assert agent.read_state(path) == SPLIT_STATE


@pytest.mark.parametrize('name, content, problem', [
    ('split_access.json', '{"role": "split_access", "version": 1', 'not JSON ('),
    ('split_access.json', '', 'not JSON ('),
    ('split_access.json', 'role: split_access\nversion: 1\n', 'not JSON ('),
    ('split_access.json', '[1, 2]', 'not a netpolicy.routing state (no "role")'),
    ('split_access.json', '{"version": 1}', 'not a netpolicy.routing state (no "role")'),
    ('split_access.json', '{"role": "firewall", "version": 1}', "unknown role 'firewall'"),
    ('source_routing.json', json.dumps(SPLIT_STATE), 'holds the state of split_access, so it should be named'),
    ('split_access.json', '{"role": "split_access", "version": 0}', 'state version 0, this agent reads version 1'),
    ('split_access.json', '{"role": "split_access", "version": 1, "address_rules": "ppp0"}',
     'section address_rules is not a list'),
])
def test_read_state_of_a_bad_file(tmp_path, name, content, problem):
    path = write(tmp_path, name, content)
    with pytest.raises(agent.StateFileError) as caught:
        agent.read_state(path)
    assert str(caught.value).startswith(problem)


@pytest.mark.parametrize('make', ['missing', 'directory'])
def test_read_state_of_what_cannot_be_read(tmp_path, make):
    path = tmp_path / 'split_access.json'
    if make == 'directory':
        path.mkdir()
    with pytest.raises(agent.StateFileError) as caught:
        agent.read_state(str(path))
    assert str(caught.value).startswith('cannot read it: ')


def test_read_state_of_a_file_that_is_not_text(tmp_path):
    path = write(tmp_path, 'split_access.json', b'\xff\xfe{\x00"\x00r\x00')
    with pytest.raises(agent.StateFileError):
        agent.read_state(path)


# ---------------------------------------------------------------- read_states

def test_read_states_in_role_order_with_the_problems_listed(tmp_path):
    # Written in an order unlike ROLES and unlike the names' sort order.
    write(tmp_path, 'split_access.json', SPLIT_STATE)
    write(tmp_path, 'source_routing.json', SOURCE_STATE)
    write(tmp_path, 'reply_via_same_router.json', REPLY_STATE)
    write(tmp_path, 'broken.json', '{')
    write(tmp_path, 'nat.json', {'role': 'nat', 'version': 1})
    write(tmp_path, 'old-split_access.json', SPLIT_STATE)
    write(tmp_path, 'split_access.nft', 'table inet netpolicy_split_access {}')   # not a state: not read
    write(tmp_path, 'notes.txt', 'hello')
    (tmp_path / 'sub.json').mkdir()
    states, problems = agent.read_states(str(tmp_path))
    assert states == [('reply_via_same_router', REPLY_STATE), ('source_routing', SOURCE_STATE),
                      ('split_access', SPLIT_STATE)]
    assert [(os.path.basename(path), problem.split(' ')[0]) for path, problem in problems] == [
        ('broken.json', 'not'), ('nat.json', 'unknown'), ('old-split_access.json', 'holds'), ('sub.json', 'cannot')]
    assert all(path == str(tmp_path / os.path.basename(path)) for path, problem in problems)


def test_read_states_of_a_missing_directory_is_nothing(tmp_path):
    assert agent.read_states(str(tmp_path / 'none')) == ([], [])


def test_read_states_of_an_empty_directory_is_nothing(tmp_path):
    assert agent.read_states(str(tmp_path)) == ([], [])


def test_read_states_of_a_file_instead_of_a_directory(tmp_path):
    path = write(tmp_path, 'routing', 'x')
    states, problems = agent.read_states(path)
    assert states == []
    assert len(problems) == 1 and problems[0][0] == path and problems[0][1].startswith('cannot list it: ')


def test_read_states_keeps_the_good_ones_when_one_is_bad(tmp_path):
    write(tmp_path, 'split_access.json', SPLIT_STATE)
    write(tmp_path, 'source_routing.json', dict(SOURCE_STATE, version=7))
    states, problems = agent.read_states(str(tmp_path))
    assert [role for role, state in states] == ['split_access']
    assert problems == [(str(tmp_path / 'source_routing.json'), 'state version 7, this agent reads version 1')]


def test_state_files_change_with_any_rewrite_of_a_state(tmp_path):
    write(tmp_path, 'split_access.json', SPLIT_STATE)
    write(tmp_path, 'split_access.pending', '{}')       # not a saved state
    first = agent.state_files(str(tmp_path))
    assert [entry[0] for entry in first] == ['split_access.json']
    assert agent.state_files(str(tmp_path)) == first
    # as a role writes it: another file renamed over it (a new inode), even with the same text
    write(tmp_path, 'new', SPLIT_STATE)
    os.rename(str(tmp_path / 'new'), str(tmp_path / 'split_access.json'))
    second = agent.state_files(str(tmp_path))
    assert second != first
    # edited in place: its size and time
    write(tmp_path, 'split_access.json', dict(SPLIT_STATE, monitor={'enabled': True}))
    assert agent.state_files(str(tmp_path)) != second
    write(tmp_path, 'source_routing.json', SOURCE_STATE)
    assert agent.changed_files(second, agent.state_files(str(tmp_path))) == ['source_routing.json', 'split_access.json']
    assert agent.state_files(str(tmp_path / 'missing')) == ()


# ---------------------------------------------------------------- interfaces_of / tables_of

@pytest.mark.parametrize('role, interfaces', [
    # routes' dev, connmark in_interface and restore_on.prerouting, the sysctl key eth0/100
    ('reply_via_same_router', {'lan0', 'eth0.100', 'lan1'}),
    # not tun7: the role's bookkeeping (policies) is not a section
    ('source_routing', {'wan2', 'ppp0'}),
    # routes and nexthops, address_rules, rp_filter keys (not "all")
    ('split_access', {'wan1', 'ppp0', 'wan3'}),
])
def test_interfaces_of_the_roles_states(role, interfaces):
    assert agent.interfaces_of(STATES[role]) == interfaces


@pytest.mark.parametrize('state, interfaces', [
    ({}, set()),
    ({'role': 'split_access', 'version': 1}, set()),
    ({'ip_rule': {'rules': [{'iif': 'lan0', 'oif': 'wan1', 'table': '5'}], 'iif': 'lan9'}}, {'lan0', 'wan1', 'lan9'}),
    ({'ip_rule': {'rules': [{'iif': '', 'oif': None}]}}, set()),
    ({'route_table': {'tables': [{'table': '5', 'routes': [{'dest': 'default', 'dev': 'wan1'}, 'default dev wan9']}]}},
     {'wan1'}),
    ({'connmark_return': {'name': 'x', 'entries': [{'mark': 1, 'in_interface': 'lan0'}]}}, {'lan0'}),
    ({'connmark_return': {'name': 'x', 'restore_on': {'prerouting': ['lan1', 'lan2'], 'output': True}}},
     {'lan1', 'lan2'}),
    ({'address_rules': [{'interface': 'ppp0', 'priority': 3201}]}, {'ppp0'}),
    ({'sysctl': {'values': {'net.ipv4.conf.default.rp_filter': 2, 'net.ipv4.conf.all.rp_filter': 2,
                            'net.ipv4.ip_forward': 1}}}, set()),
    ({'sysctl': {'values': {'net.ipv6.conf.eth0/100.accept_ra': 2, 'net.ipv4.conf.wan1.rp_filter': 2}}},
     {'eth0.100', 'wan1'}),
    ({'uplinks': [{'interface': 'wan1'}], 'lan_interfaces': ['lan0']}, set()),   # not sections
])
def test_interfaces_of(state, interfaces):
    assert agent.interfaces_of(state) == interfaces


@pytest.mark.parametrize('state', [
    {'connmark_return': {'name': 'x', 'restore_on': None}},
    {'sysctl': {'file': '/etc/sysctl.d/x.conf', 'values': None}},
])
def test_interfaces_of_null_subsections(state):
    assert agent.interfaces_of(state) == set()


@pytest.mark.parametrize('state, tables', [
    (SPLIT_STATE, (['101', '102', '103', 'main'], [])),
    (SOURCE_STATE, (['201', '202'], ['main', 'main'])),
    (REPLY_STATE, (['301', '302'], [])),
    ({}, ([], [])),
    ({'route_table': {}}, ([], [])),
    ({'route_table': {'tables': None}}, ([], [])),
    ({'route_table': {'tables': [{'table': 'isp1', 'copy_from': 'isp2'}, 'junk', {'copy_from': None}]}},
     (['isp1'], ['isp2'])),
    ({'route_table': {'tables': [{'table': 101}]}}, ([101], [])),
])
def test_tables_of(state, tables):
    assert agent.tables_of(state) == tables


@pytest.mark.parametrize('state, ranges', [
    (SPLIT_STATE, [(3000, 3000), (3100, 3100), (3101, 3101), (3102, 3102), (3200, 3200), (3201, 3201),
                   (3000, 3999)]),
    (REPLY_STATE, [(501, 501), (501, 501), (502, 502), (500, 999)]),
    ({}, []),
    ({'ip_rule': {'purge_priorities': '400-499,3000-3999'}}, [(400, 499), (3000, 3999)]),
    # a rule without a priority: the kernel picked one, any deleted rule may be it
    ({'ip_rule': {'rules': [{'priority': 10, 'table': '5'}, {'table': '6'}]}}, [(0, 0xffffffff)]),
    ({'address_rules': [{'interface': 'ppp0'}]}, [(0, 0xffffffff)]),
    # damage is said by the apply, not here
    ({'ip_rule': {'rules': [{'priority': 'x'}, 'junk'], 'purge_priorities': '9-1'}}, [(0, 0xffffffff)]),
    ({'ip_rule': {'rules': [{'priority': 'x'}], 'purge_priorities': 'many'}}, []),
])
def test_priorities_of(state, ranges):
    assert agent.priorities_of(state) == ranges


@pytest.mark.parametrize('state, tables', [
    (SPLIT_STATE, {('inet', 'netpolicy_split_access')}),
    (SOURCE_STATE, {('inet', 'netpolicy_source_routing')}),
    (REPLY_STATE, {('inet', 'netpolicy_reply_via_router'), ('ip', 'mangle'), ('ip6', 'mangle')}),
    ({}, set()),
    ({'nftables': {'table': 'junk'}, 'connmark_return': {'name': ''}}, set()),
])
def test_nftables_tables_of(state, tables):
    assert agent.nftables_tables_of(state) == tables


# ---------------------------------------------------------------- address_rules

ADDRESSES = {'ppp0': [('ipv4', '100.64.0.7'), ('ipv6', '2001:db8:7::1'), ('ipv4', '100.64.0.8')],
             'wan1': [('ipv4', '198.51.100.2')]}


@pytest.mark.parametrize('templates, rules', [
    ([], []),
    ([{'interface': 'ppp0', 'priority': 3201, 'table': '102', 'family': 'ipv4'}], [
        {'priority': 3201, 'table': '102', 'family': 'ipv4', 'from': '100.64.0.7'},
        {'priority': 3201, 'table': '102', 'family': 'ipv4', 'from': '100.64.0.8'}]),
    # family ipv4 when none is given
    ([{'interface': 'wan1', 'priority': 3200, 'table': '101'}], [
        {'priority': 3200, 'table': '101', 'family': 'ipv4', 'from': '198.51.100.2'}]),
    ([{'interface': 'ppp0', 'priority': 3201, 'table': '102', 'family': 'ipv6'}], [
        {'priority': 3201, 'table': '102', 'family': 'ipv6', 'from': '2001:db8:7::1'}]),
    # no address of the family, or no such interface (yet): no rule
    ([{'interface': 'wan1', 'priority': 3200, 'table': '101', 'family': 'ipv6'}], []),
    ([{'interface': 'ppp1', 'priority': 3202, 'table': '103', 'family': 'ipv4'}], []),
    ([{'interface': 'wan1', 'priority': 3200, 'table': '101'}, {'interface': 'ppp1', 'priority': 3202}], [
        {'priority': 3200, 'table': '101', 'family': 'ipv4', 'from': '198.51.100.2'}]),
])
def test_address_rules(templates, rules):
    assert agent.address_rules(copy.deepcopy(templates), ADDRESSES) == rules


@pytest.mark.parametrize('templates, field', [
    (['ppp0'], 'address_rules[0]'),
    ([{'priority': 3200}], 'address_rules[0]'),
    ([{'interface': 'wan1'}, {'interface': ''}], 'address_rules[1]'),
    ([{'interface': 'wan1'}, None], 'address_rules[1]'),
])
def test_address_rules_refuses_bad_templates(templates, field):
    with pytest.raises(InputError) as caught:
        agent.address_rules(templates, ADDRESSES)
    assert caught.value.field == field
    assert str(caught.value) == '%s: expected a mapping with an interface' % field


# ---------------------------------------------------------------- sysctl_path

@pytest.mark.parametrize('key, path', [
    ('net.ipv4.ip_forward', '/proc/sys/net/ipv4/ip_forward'),
    ('net.ipv4.conf.all.src_valid_mark', '/proc/sys/net/ipv4/conf/all/src_valid_mark'),
    ('net.ipv4.conf.wan1.rp_filter', '/proc/sys/net/ipv4/conf/wan1/rp_filter'),
    ('net.ipv4.conf.eth0/100.rp_filter', '/proc/sys/net/ipv4/conf/eth0.100/rp_filter'),
    ('net.ipv6.conf.br0/10/20.accept_ra', '/proc/sys/net/ipv6/conf/br0.10.20/accept_ra'),
    ('net.ipv4.fib_multipath_hash_policy', '/proc/sys/net/ipv4/fib_multipath_hash_policy'),
])
def test_sysctl_path(key, path):
    assert agent.sysctl_path(key) == path


# ---------------------------------------------------------------- format_status

def test_format_status_of_everything():
    document = {
        'problems': ['/etc/netpolicy/routing/nat.json: unknown role \'nat\''],
        'states': [
            {'role': 'reply_via_same_router', 'in_sync': True, 'differences': [], 'errors': []},
            {'role': 'split_access', 'in_sync': False,
             'differences': ['ip rule add priority 3000 table main suppress_prefixlength 0',
                             'ip route replace default dev wan1 table 101'],
             'errors': ['sysctl: no such sysctl (is the interface there?): net.ipv4.conf.wan3.rp_filter']},
        ],
        'uplinks': [
            {'name': 'isp1', 'interface': 'wan1', 'up': True, 'new_connections': 75, 'share': 0.75},
            {'name': 'isp2', 'interface': 'ppp0', 'up': False, 'new_connections': 25, 'share': 0.25},
            {'name': 'isp3', 'interface': 'wan3', 'up': None, 'new_connections': 0, 'share': 0.0},
        ],
    }
    assert agent.format_status(document).splitlines() == [
        "not applied: /etc/netpolicy/routing/nat.json: unknown role 'nat'",
        'reply_via_same_router: in sync with the kernel',
        'split_access: drifted (2 to change, 1 errors)',
        '  would run: ip rule add priority 3000 table main suppress_prefixlength 0',
        '  would run: ip route replace default dev wan1 table 101',
        '  error: sysctl: no such sysctl (is the interface there?): net.ipv4.conf.wan3.rp_filter',
        'uplink isp1 (wan1): up, new connections 75 (75%)',
        'uplink isp2 (ppp0): down, new connections 25 (25%)',
        'uplink isp3 (wan3): missing, new connections 0 (0%)',
    ]


@pytest.mark.parametrize('document, text', [
    ({'problems': [], 'states': [], 'uplinks': []}, 'no saved state'),
    ({'problems': ['/x/a.json: not JSON (...)'], 'states': [], 'uplinks': []}, 'not applied: /x/a.json: not JSON (...)'),
    ({'problems': [], 'states': [{'role': 'split_access', 'in_sync': True, 'differences': [], 'errors': []}],
      'uplinks': [{'name': 'isp1', 'interface': 'wan1', 'up': True, 'new_connections': 0, 'share': None}]},
     'split_access: in sync with the kernel\nuplink isp1 (wan1): up, new connections 0 (-)'),
    ({'problems': [], 'states': [{'role': 'source_routing', 'in_sync': False, 'differences': [],
                                  'errors': ['nftables: nft is missing']}], 'uplinks': []},
     'source_routing: drifted (0 to change, 1 errors)\n  error: nftables: nft is missing'),
])
def test_format_status(document, text):
    assert agent.format_status(document) == text


# ---------------------------------------------------------------- Watcher.affected

TABLE_NAMES = {'default': 253, 'main': 254, 'local': 255, 'isp1': 101, 'isp2': 102, 'isp3': 103,
               'vpn': 201, 'voip': 202, 'router2': 301, 'ispb': 302}
IFNAMES = {1: 'lo', 2: 'wan1', 3: 'ppp0', 4: 'wan3', 5: 'lan0', 6: 'eth0.100', 7: 'lan1', 8: 'wan2', 9: 'docker0'}
ALL_ROLES = {'reply_via_same_router', 'source_routing', 'split_access'}


@pytest.fixture
def names(monkeypatch):
    """The table names the Watcher sees, instead of the host's rt_tables files."""
    monkeypatch.setattr(_rt_tables, 'table_names', lambda netns=None: dict(TABLE_NAMES))
    monkeypatch.setattr(_rt_tables, 'source_files', lambda netns=None: [])


def watcher(**extra):
    return agent.Watcher([(role, STATES[role]) for role in agent.ROLES], **extra)


def link(name, up, action='new', ifindex=None):
    return {'kind': 'link', 'action': action, 'ifindex': ifindex or 99, 'ifname': name, 'up': up}


def address(ifindex, text, action='new'):
    return {'kind': 'address', 'action': action, 'ifindex': ifindex, 'address': text}


def route(table, action):
    return {'kind': 'route', 'action': action, 'table': table}


def test_watcher_knows_the_tables_by_number(names):
    found = watcher()
    assert found.set_tables == {'reply_via_same_router': {301, 302}, 'source_routing': {201, 202},
                                'split_access': {101, 102, 103, 254}}
    assert found.copied_tables == {'reply_via_same_router': set(), 'source_routing': {254},
                                   'split_access': set()}
    assert found.interfaces['split_access'] == {'wan1', 'ppp0', 'wan3'}


def test_watcher_resolves_names_and_skips_unknown_ones(names):
    state = {'route_table': {'tables': [{'table': 'isp2'}, {'table': 'isp9'}, {'table': '0'},
                                        {'table': '7', 'copy_from': 'vpn'}]}}
    found = agent.Watcher([('split_access', state)])
    assert found.set_tables == {'split_access': {102, 7}}
    assert found.copied_tables == {'split_access': {201}}


def test_overrun_applies_everything(names):
    assert watcher().affected({'kind': 'overrun'}, IFNAMES) == (
        ALL_ROLES, 'netlink events were lost: applying everything')


@pytest.mark.parametrize('event, roles', [
    (route(101, 'new'), set()),                        # a route added to a table a role sets: its own doing
    (route(101, 'delete'), {'split_access'}),          # a route gone from it: put it back
    (route(302, 'delete'), {'reply_via_same_router'}),
    (route(254, 'new'), {'source_routing'}),           # main is copied by source_routing
    (route(254, 'delete'), {'source_routing', 'split_access'}),   # ... and set by split_access
    (route(255, 'delete'), set()),
    (route(500, 'delete'), set()),
    (route(500, 'new'), set()),
])
def test_route_events(names, event, roles):
    assert watcher().affected(event, IFNAMES) == (roles, None)


def rule(priority, action):
    return {'kind': 'rule', 'action': action, 'priority': priority}


def nftables(family, table, action='delete'):
    return {'kind': 'nftables', 'action': action, 'family': family, 'table': table}


@pytest.mark.parametrize('event, roles', [
    (rule(3101, 'delete'), {'split_access'}),          # one of its rules gone: put it back
    (rule(3999, 'delete'), {'split_access'}),          # in its range: a stale one, or a new one to purge
    (rule(502, 'delete'), {'reply_via_same_router'}),
    (rule(1500, 'delete'), {'source_routing'}),
    (rule(3101, 'new'), set()),                        # an added rule: its own doing, as a route added
    (rule(0, 'delete'), set()),
    (rule(32766, 'delete'), set()),
    (nftables('inet', 'netpolicy_split_access'), {'split_access'}),
    (nftables('inet', 'netpolicy_split_access', 'new'), {'split_access'}),   # a rule added by hand, or ours
    (nftables('inet', 'netpolicy_source_routing'), {'source_routing'}),
    (nftables('inet', 'netpolicy_reply_via_router'), {'reply_via_same_router'}),
    (nftables('ip', 'mangle'), {'reply_via_same_router'}),
    (nftables('ip', 'netpolicy_split_access'), set()),  # another family: another table
    (nftables('inet', 'filter'), set()),
])
def test_rule_and_nftables_events(names, event, roles):
    assert watcher().affected(event, IFNAMES) == (roles, None)


def test_a_failing_state_is_not_applied_again_for_its_own_undoing(names):
    # split_access's last apply failed halfway: the engine put back what it had done, which
    # deleted rules, routes and nftables objects of its own. Those events must not start the
    # same failing apply again (five times a second); a link or address change still does.
    found = watcher(failing={'split_access'})
    assert found.affected(rule(3101, 'delete'), IFNAMES) == (set(), None)
    assert found.affected(route(101, 'delete'), IFNAMES) == (set(), None)
    assert found.affected(route(254, 'delete'), IFNAMES) == ({'source_routing'}, None)
    assert found.affected(nftables('inet', 'netpolicy_split_access'), IFNAMES) == (set(), None)
    assert found.affected(link('wan1', False), IFNAMES) == ({'split_access'}, 'wan1: down')
    assert found.affected(address(3, '100.64.0.7/32'), IFNAMES)[0] == {'source_routing', 'split_access'}
    assert found.affected({'kind': 'overrun'}, IFNAMES)[0] == ALL_ROLES


def test_a_report_names_the_roles_that_failed():
    report = agent.Report()
    report.error('source_routing', 'ip_rule', 'boom')
    report.errors.append('the lock: not taken')   # not a role's
    assert report.failed == {'source_routing'}


@pytest.mark.parametrize('event, roles', [
    (route(101, 'delete'), {'split_access'}),          # a route gone from a table it fills
    (route(101, 'new'), set()),
    (route(254, 'new'), set()),                        # main changed: source_routing copies it, nothing undone
    (route(254, 'delete'), {'split_access'}),          # ... but split_access fills main
    (rule(3101, 'delete'), {'split_access'}),
    (rule(3101, 'new'), set()),
    (nftables('inet', 'netpolicy_split_access'), {'split_access'}),
    (link('wan1', False), set()),
    (address(3, '100.64.0.7/32'), set()),
    ({'kind': 'overrun'}, set()),
])
def test_what_an_event_undid(names, event, roles):
    assert watcher().undone(event) == roles


def test_a_report_names_the_roles_that_changed_something():
    report = agent.Report()
    report.change('split_access', ['ip rule add priority 3101 from all fwmark 0x2/0xff lookup isp2'])
    report.change('source_routing', [])
    assert report.changed == {'split_access'}


def test_repairs_below_the_limit_are_made_at_once():
    repairs = agent.Repairs()
    for second in range(agent.REPAIRS_MAX - 1):
        assert repairs.repaired({'split_access'}, 100.0 + second) == []
    assert repairs.held(104.0) == set() and repairs.deadline() is None
    # older than the window: they no longer count
    assert repairs.repaired({'split_access'}, 100.0 + agent.REPAIRS_WINDOW + 1) == []


def test_a_state_undone_again_and_again_waits_longer_each_time():
    repairs = agent.Repairs()
    for second in range(agent.REPAIRS_MAX - 1):
        repairs.repaired({'split_access', 'source_routing'} if second == 0 else {'split_access'}, 100.0 + second)
    lines = repairs.repaired({'split_access'}, 104.0)
    assert lines == ['split_access: put back 5 times in 30 s: something keeps undoing it; its route, rule and '
                     'nftables events now wait 2 s']
    assert repairs.held(105.9) == {'split_access'} and repairs.deadline() == 106.0
    assert repairs.due(105.9) == set()
    assert repairs.due(106.0) == {'split_access'}   # applied again then
    assert repairs.held(106.0) == set() and repairs.deadline() is None
    # undone again soon after: twice as long, up to HOLD_MOST
    waits = []
    now = 106.5
    for _round in range(6):
        line, = repairs.repaired({'split_access'}, now)
        assert line.startswith('split_access: undone again: its route, rule and nftables events now wait ')
        waits.append(float(line.rsplit(' ', 2)[1]))
        now = repairs.deadline() + 0.5
        repairs.due(now)
    assert waits == [4, 8, 16, agent.HOLD_MOST, agent.HOLD_MOST, agent.HOLD_MOST]
    assert repairs.held(now) == set()


def test_a_state_left_alone_for_the_window_counts_at_once_again():
    repairs = agent.Repairs()
    for second in range(agent.REPAIRS_MAX):
        repairs.repaired({'split_access'}, 100.0 + second)
    assert repairs.forget(110.0) == []   # still waiting, and then within the window
    repairs.due(106.0)
    assert repairs.forget(104.0 + agent.REPAIRS_WINDOW - 0.1) == []
    assert repairs.forget(104.0 + agent.REPAIRS_WINDOW) == [
        'split_access: not undone for 30 s: its events count at once again']
    assert repairs.forget(200.0) == []
    # and the count starts again from nothing
    assert repairs.repaired({'split_access'}, 201.0) == []


def test_link_lines_only_on_change(names):
    found = watcher()
    seen = [found.affected(event, IFNAMES) for event in [
        link('wan1', True), link('wan1', True), link('wan1', False), link('wan1', False), link('wan1', True),
        link('wan1', True, action='delete'), link('wan1', True)]]
    assert seen == [({'split_access'}, 'wan1: up'), ({'split_access'}, None), ({'split_access'}, 'wan1: down'),
                    ({'split_access'}, None), ({'split_access'}, 'wan1: up'), ({'split_access'}, 'wan1: gone'),
                    ({'split_access'}, 'wan1: up')]


def test_link_state_carries_over_to_the_next_watcher(names):
    known = {'wan1': True, 'ppp0': False}
    found = watcher(link_up=known)
    assert found.affected(link('wan1', True), IFNAMES) == ({'split_access'}, None)
    assert found.affected(link('ppp0', True), IFNAMES) == ({'source_routing', 'split_access'}, 'ppp0: up')
    assert known == {'wan1': True, 'ppp0': False}   # a copy is kept


def test_link_named_by_its_index(names):
    event = link(None, True, ifindex=6)
    assert watcher().affected(event, IFNAMES) == ({'reply_via_same_router'}, 'eth0.100: up')


@pytest.mark.parametrize('event, result', [
    (address(3, '100.64.0.7/32'), ({'source_routing', 'split_access'}, 'ppp0: address 100.64.0.7/32 added')),
    (address(3, '100.64.0.7/32', 'delete'),
     ({'source_routing', 'split_access'}, 'ppp0: address 100.64.0.7/32 removed')),
    (address(5, '2001:db8:1::1/64'), ({'reply_via_same_router'}, 'lan0: address 2001:db8:1::1/64 added')),
    (address(7, '192.168.7.1/24'), ({'reply_via_same_router'}, 'lan1: address 192.168.7.1/24 added')),
])
def test_address_events(names, event, result):
    assert watcher().affected(event, IFNAMES) == result


@pytest.mark.parametrize('event', [
    link('docker0', True), link('docker0', False, action='delete'), link(None, True, ifindex=1),
    address(9, '172.17.0.1/16'), address(1, '127.0.0.1/8', 'delete'),
])
def test_unrelated_interfaces_are_nothing(names, event):
    found = watcher()
    assert found.affected(event, IFNAMES) == (set(), None)
    assert 'docker0' not in found.link_up


def test_an_interface_no_longer_known_applies_every_state(names):
    # An address event of an interface already gone: its name cannot be told.
    roles, line = watcher().affected(address(42, '192.0.2.1/24', 'delete'), IFNAMES)
    assert roles == ALL_ROLES


def test_no_states_no_roles(names):
    found = agent.Watcher([])
    assert found.affected({'kind': 'overrun'}, IFNAMES) == (set(), 'netlink events were lost: applying everything')
    assert found.affected(link('wan1', True), IFNAMES) == (set(), None)
    assert found.affected(route(254, 'delete'), IFNAMES) == (set(), None)


# ---------------------------------------------------------------- applying a state (recorders only)

@pytest.fixture
def recorded(monkeypatch):
    """Every section's apply replaced by a recorder: [(section, params or values, check_mode)]."""
    calls = []

    def recorder(section, commands=None):
        def change(params, check_mode, diff=False):
            calls.append((section, params, check_mode))
            return {'changed': bool(commands), 'commands': list(commands or [])}
        return change

    monkeypatch.setattr(agent._rt_tables, 'change', recorder('rt_tables_entry'))
    monkeypatch.setattr(agent._routes, 'change', recorder('route_table', ['ip route replace default dev x table 5']))
    monkeypatch.setattr(agent._rules, 'change', recorder('ip_rule'))
    monkeypatch.setattr(agent._connmark_return, 'change', recorder('connmark_return'))
    monkeypatch.setattr(agent, 'apply_sysctls', recorder('sysctl'))
    monkeypatch.setattr(agent, 'apply_nft_file', lambda section, check_mode, compare=True: recorder(
        'nftables', ['nft -f %s' % section['file']])(section, check_mode))
    monkeypatch.setattr(agent, 'interface_addresses', lambda: {'ppp0': [('ipv4', '100.64.0.7')]})
    return calls


def test_steps_in_apply_order():
    assert [(section, where) for section, where, run in agent.steps(SPLIT_STATE)] == [
        ('rt_tables_entry', 'rt_tables_entry'), ('sysctl', 'sysctl'),
        ('route_table', 'route_table.tables[0] (table 101)'), ('route_table', 'route_table.tables[1] (table 102)'),
        ('route_table', 'route_table.tables[2] (table 103)'), ('route_table', 'route_table.tables[3] (table main)'),
        ('ip_rule', 'ip_rule'), ('nftables', 'nftables')]
    assert [section for section, where, run in agent.steps(REPLY_STATE)] == [
        'rt_tables_entry', 'sysctl', 'route_table', 'route_table', 'ip_rule', 'connmark_return']
    assert agent.steps({'role': 'split_access', 'version': 1}) == []
    # what the monitor changes to take an uplink out, alone
    assert [(section, where) for section, where, run in agent.steps(SPLIT_STATE, fast=True)] == [
        ('route_table', 'route_table.tables[3] (table main)'), ('nftables', 'nftables')]
    assert [section for section, where, run in agent.steps({'address_rules': [{'interface': 'ppp0'}]})] == ['ip_rule']


def test_apply_state_runs_every_section_with_checked_arguments(recorded):
    report = agent.Report()
    agent.apply_state('split_access', copy.deepcopy(SPLIT_STATE), report, check_mode=True)
    assert [section for section, params, check_mode in recorded] == [
        'rt_tables_entry', 'sysctl', 'route_table', 'route_table', 'route_table', 'route_table', 'ip_rule', 'nftables']
    assert all(check_mode for section, params, check_mode in recorded)
    rt_tables_params = recorded[0][1]
    assert rt_tables_params['state'] == 'present' and rt_tables_params['netns'] is None
    assert [params['tables'][0]['table'] for section, params, check_mode in recorded[2:6]] == ['101', '102', '103', 'main']
    rules = recorded[6][1]['rules']
    assert rules[-1] == dict(rules[-1], priority=3201, table='102', family='ipv4', invert=False, **{'from': '100.64.0.7'})
    assert recorded[6][1]['purge_priorities'] == '3000-3999'
    assert report.errors == []
    assert report.changes == ['split_access: ip route replace default dev x table 5'] * 4 + [
        'split_access: nft -f /etc/netpolicy/routing/split_access.nft']


def test_a_bad_section_is_reported_and_the_others_still_applied(recorded):
    state = copy.deepcopy(REPLY_STATE)
    state['rt_tables_entry']['entries'][1]['id'] = 'three hundred'
    state['connmark_return']['entries'][0]['protocol'] = 'icmp'
    state['ip_rule']['rules'][2]['priority'] = 'high'
    report = agent.Report()
    agent.apply_state('reply_via_same_router', state, report)
    assert [section for section, params, check_mode in recorded] == ['sysctl', 'route_table', 'route_table']
    assert report.errors == [
        "reply_via_same_router: rt_tables_entry: rt_tables_entry.entries[1].id: expected int, got 'three hundred'",
        "reply_via_same_router: ip_rule: ip_rule.rules[2].priority: expected int, got 'high'",
        "reply_via_same_router: connmark_return: connmark_return.entries[0].protocol: one of tcp, udp, sctp, "
        "got 'icmp'",
    ]


def test_apply_state_reports_engine_and_os_errors(recorded, monkeypatch):
    def engine_fails(params, check_mode, diff=False):
        raise EngineError('RTNETLINK answers: No such device')

    def os_fails(values, check_mode):
        raise OSError(errno.EACCES, 'Permission denied')

    monkeypatch.setattr(agent._routes, 'change', engine_fails)
    monkeypatch.setattr(agent, 'apply_sysctls', os_fails)
    report = agent.Report()
    agent.apply_state('source_routing', copy.deepcopy(SOURCE_STATE), report)
    assert report.errors == [
        'source_routing: sysctl: failed: [Errno 13] Permission denied',
        'source_routing: route_table.tables[0] (table 201): RTNETLINK answers: No such device',
        'source_routing: route_table.tables[1] (table 202): RTNETLINK answers: No such device',
    ]
    assert [section for section, params, check_mode in recorded] == ['rt_tables_entry', 'ip_rule', 'nftables']


def test_a_bad_table_is_named_by_its_own_index(recorded):
    state = copy.deepcopy(SOURCE_STATE)
    del state['route_table']['tables'][1]['table']
    report = agent.Report()
    agent.apply_state('source_routing', state, report)
    assert report.errors == ['source_routing: route_table.tables[1]: route_table.tables[1].table: required']


def test_report_splits_multi_line_commands():
    report = agent.Report()
    report.change('split_access', ['nft -f x', 'ip rule add a\nip rule add b'])
    report.error('split_access', 'ip_rule', 'boom')
    assert report.changes == ['split_access: nft -f x', 'split_access: ip rule add a', 'split_access: ip rule add b']
    assert report.errors == ['split_access: ip_rule: boom']


# ---------------------------------------------------------------- main: the command line

@pytest.mark.parametrize('argv', [
    [], ['bogus'], ['--help'], ['-h'], ['apply', 'now'], ['apply', '--json'], ['watch', '--json'],
    ['status', '--yaml'], ['status', '--json', '--json'], ['--json', 'status'], ['--state-dir'],
    ['--state-dir', '/tmp/x'], ['--state-dir', '/tmp/x', 'restart'], ['--state-dir', '/a', '--state-dir', '/b', 'apply'],
    ['APPLY'],
])
def test_main_usage_errors(argv):
    out = io.StringIO()
    assert agent.main(argv, out=out) == agent.EXIT_USAGE == 2
    assert out.getvalue() == agent.USAGE + '\n'
    assert out.getvalue().startswith('usage: netpolicy-routing [--state-dir DIR] COMMAND\n')


def test_main_without_pyroute2(monkeypatch, tmp_path):
    monkeypatch.setattr(_netlink, 'HAS_PYROUTE2', False)
    out = io.StringIO()
    assert agent.main(['--state-dir', str(tmp_path), 'apply'], out=out) == agent.EXIT_FAILED
    assert out.getvalue() == 'error: pyroute2 is missing (Debian: apt install python3-pyroute2)\n'


@pytest.fixture
def with_pyroute2(monkeypatch):
    # main() refuses to run without it; nothing below gets as far as using it.
    monkeypatch.setattr(_netlink, 'HAS_PYROUTE2', True)


@pytest.mark.parametrize('command, text', [
    (['apply'], '0 saved state(s) applied: no change\n'),
    (['status'], 'no saved state\n'),
])
def test_main_with_no_saved_state(with_pyroute2, tmp_path, command, text):
    out = io.StringIO()
    assert agent.main(['--state-dir', str(tmp_path / 'none')] + command, out=out) == agent.EXIT_OK
    assert out.getvalue() == text


def test_main_status_json_with_no_saved_state(with_pyroute2, tmp_path):
    out = io.StringIO()
    assert agent.main(['--state-dir', str(tmp_path), 'status', '--json'], out=out) == agent.EXIT_OK
    assert json.loads(out.getvalue()) == {'problems': [], 'states': [], 'uplinks': []}


def test_main_reports_a_bad_state_file(with_pyroute2, tmp_path):
    path = write(tmp_path, 'nat.json', {'role': 'nat', 'version': 1})
    out = io.StringIO()
    assert agent.main(['--state-dir', str(tmp_path), 'apply'], out=out) == agent.EXIT_FAILED
    assert out.getvalue() == ("error: %s: not applied: unknown role 'nat' (known: reply_via_same_router, "
                              "source_routing, split_access)\n" % path)
    out = io.StringIO()
    assert agent.main(['--state-dir', str(tmp_path), 'status'], out=out) == agent.EXIT_FAILED
    assert out.getvalue().startswith('not applied: %s: unknown role' % path)


# ---------------------------------------------------------------- Signals (no signal sent)

def test_signals_wait_says_whether_there_is_something_to_read():
    read_end, write_end = os.pipe()
    try:
        signals = agent.Signals()
        assert signals.wait([read_end], [], 0) == ([], [])
        os.write(write_end, b'x')
        assert signals.wait([read_end], [], 0) == ([read_end], [])
        assert signals.waiting is False
    finally:
        os.close(read_end)
        os.close(write_end)


def test_signals_stop_at_once_while_waiting_and_after_an_apply_otherwise():
    signals = agent.Signals()
    signals.handle(15, None)                # during an apply: only noted
    assert signals.received == 'SIGTERM'
    with pytest.raises(agent.Stop):
        signals.wait([], [], 0)                  # the next wait stops
    signals = agent.Signals()
    signals.waiting = True
    with pytest.raises(agent.Stop) as caught:
        signals.handle(2, None)
    assert str(caught.value) == 'SIGINT'


# ---------------------------------------------------------------- decode_event

IFF_RUNNING = 0x40
ARPHRD_ETHER = 1
RTM_NEWRULE = 32
RTM_DELRULE = 33
RTM_NEWNEIGH = 28


def rtattr(kind, payload):
    length = 4 + len(payload)
    return struct.pack('=HH', length, kind) + payload + b'\0' * (-length % 4)


def message(kind, body):
    """A whole netlink message (header + body), as the kernel sends it."""
    return struct.pack('=IHHII', 16 + len(body), kind, 0, 0, 0) + body


def decode(kind, body):
    data = message(kind, body)
    return _netlink.decode_event(kind, data, 16, len(data))


def ifinfomsg(ifindex, flags):
    return struct.pack('=BxHiII', socket.AF_UNSPEC, ARPHRD_ETHER, ifindex, flags, 0)


def ifaddrmsg(family, prefixlen, ifindex, scope=0):
    return struct.pack('=BBBBI', family, prefixlen, 0, scope, ifindex)


def rtmsg(family, dst_len, table, rtype=1):
    # family, dst_len, src_len, tos, table, protocol (boot), scope (global), type, flags
    return struct.pack('=BBBBBBBBI', family, dst_len, 0, 0, table, 3, 0, rtype, 0)


IFLA_MTU = 4
IFLA_OPERSTATE = 16
IFA_LABEL = 3
IFA_CACHEINFO = 6
RTA_DST = 1
RTA_OIF = 4
RTA_TABLE = 15


@pytest.mark.parametrize('kind, flags, action, up', [
    (16, 0x1 | 0x10000 | IFF_RUNNING, 'new', True),     # RTM_NEWLINK, up with carrier
    (16, 0x1, 'new', False),                            # up, no carrier
    (16, 0x10000, 'new', False),                        # carrier, administratively down
    (16, 0, 'new', False),
    (17, 0x1 | 0x10000, 'delete', True),                # RTM_DELLINK
])
def test_decode_link(kind, flags, action, up):
    body = (ifinfomsg(7, flags) + rtattr(IFLA_MTU, struct.pack('=I', 1500))
            + rtattr(3, b'eth0.100\0') + rtattr(IFLA_OPERSTATE, b'\x06'))
    assert decode(kind, body) == {'kind': 'link', 'action': action, 'ifindex': 7, 'ifname': 'eth0.100', 'up': up}


def test_decode_link_without_a_name():
    assert decode(16, ifinfomsg(3, 0x1)) == {'kind': 'link', 'action': 'new', 'ifindex': 3, 'ifname': None,
                                             'up': False}


@pytest.mark.parametrize('kind, family, prefixlen, attrs, action, text', [
    # IPv4: IFA_LOCAL is the address (IFA_ADDRESS is the peer on point-to-point links), in either order
    (20, socket.AF_INET, 24, [(2, '192.0.2.1'), (1, '192.0.2.1')], 'new', '192.0.2.1/24'),
    (20, socket.AF_INET, 32, [(1, '100.64.0.1'), (2, '100.64.0.7')], 'new', '100.64.0.7/32'),
    (20, socket.AF_INET, 32, [(2, '100.64.0.7'), (1, '100.64.0.1')], 'new', '100.64.0.7/32'),
    (21, socket.AF_INET, 24, [(2, '198.51.100.2'), (1, '198.51.100.2')], 'delete', '198.51.100.2/24'),
    # IPv6: IFA_ADDRESS only
    (20, socket.AF_INET6, 64, [(1, '2001:db8:1::1')], 'new', '2001:db8:1::1/64'),
    (21, socket.AF_INET6, 128, [(1, '2001:db8::7')], 'delete', '2001:db8::7/128'),
])
def test_decode_address(kind, family, prefixlen, attrs, action, text):
    body = ifaddrmsg(family, prefixlen, 4)
    for attr, value in attrs:
        body += rtattr(attr, socket.inet_pton(family, value))
    body += rtattr(IFA_LABEL, b'wan3\0') + rtattr(IFA_CACHEINFO, b'\xff' * 16)
    assert decode(kind, body) == {'kind': 'address', 'action': action, 'ifindex': 4, 'address': text}


@pytest.mark.parametrize('kind, header_table, attrs, action, table', [
    (25, 101, [], 'delete', 101),                                       # RTM_DELROUTE, table in the header
    (24, 254, [], 'new', 254),                                          # RTM_NEWROUTE
    (25, 101, [(RTA_TABLE, 101)], 'delete', 101),
    (25, 252, [(RTA_TABLE, 1000)], 'delete', 1000),                     # RT_TABLE_COMPAT: the real id in RTA_TABLE
    (24, 252, [(RTA_OIF, 3), (RTA_TABLE, 2147483647)], 'new', 2147483647),
])
def test_decode_route(kind, header_table, attrs, action, table):
    body = rtmsg(socket.AF_INET, 24, header_table) + rtattr(RTA_DST, socket.inet_pton(socket.AF_INET, '192.0.2.0'))
    for attr, value in attrs:
        body += rtattr(attr, struct.pack('=I', value))
    assert decode(kind, body) == {'kind': 'route', 'action': action, 'table': table}


def test_decode_ipv6_route():
    body = rtmsg(socket.AF_INET6, 0, 252) + rtattr(RTA_TABLE, struct.pack('=I', 202))
    assert decode(25, body) == {'kind': 'route', 'action': 'delete', 'table': 202}


def fib_rule_hdr(family=socket.AF_INET, table=0):
    # family, dst_len, src_len, tos, table, res1, res2, action (to table), flags
    return struct.pack('=BBBBBBBBI', family, 0, 0, 0, table, 0, 0, 1, 0)


FRA_TABLE = 15
FRA_PRIORITY = 6
FRA_FWMARK = 10


@pytest.mark.parametrize('kind, family, attrs, action, priority', [
    (RTM_NEWRULE, socket.AF_INET, [(FRA_TABLE, 101), (FRA_PRIORITY, 3100), (FRA_FWMARK, 1)], 'new', 3100),
    (RTM_DELRULE, socket.AF_INET6, [(FRA_PRIORITY, 501), (FRA_TABLE, 301)], 'delete', 501),
    (RTM_DELRULE, socket.AF_INET, [(FRA_TABLE, 255)], 'delete', 0),     # priority 0 has no FRA_PRIORITY
])
def test_decode_rule(kind, family, attrs, action, priority):
    body = fib_rule_hdr(family)
    for attr, value in attrs:
        body += rtattr(attr, struct.pack('=I', value))
    assert decode(kind, body) == {'kind': 'rule', 'action': action, 'priority': priority}


@pytest.mark.parametrize('kind', [RTM_NEWNEIGH, 2, 3, 26, 0])
def test_decode_other_messages_is_none(kind):
    assert decode(kind, b'\0' * 32) is None


NFNL_SUBSYS_NFTABLES = 10
NFTA_NAME = 1     # NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, ...: the table's name
NFTA_OTHER = 3


def nft_message(msg, family, table):
    body = struct.pack('=BBH', family, 0, 0) + rtattr(NFTA_NAME, table.encode() + b'\0')
    body += rtattr(NFTA_OTHER | 0x8000, rtattr(1, b'\0' * 4))   # a nested attribute, skipped
    return (NFNL_SUBSYS_NFTABLES << 8) | msg, body


@pytest.mark.parametrize('msg, family, action, name', [
    (2, 1, 'delete', 'inet'),     # NFT_MSG_DELTABLE, NFPROTO_INET
    (8, 2, 'delete', 'ip'),       # NFT_MSG_DELRULE, NFPROTO_IPV4
    (6, 10, 'new', 'ip6'),        # NFT_MSG_NEWRULE, NFPROTO_IPV6
    (5, 1, 'delete', 'inet'),     # NFT_MSG_DELCHAIN
    (14, 1, 'delete', 'inet'),    # NFT_MSG_DELSETELEM
    (26, 1, 'delete', 'inet'),    # NFT_MSG_DESTROYTABLE
    (0, 99, 'new', '99'),         # a family nft has no name for
])
def test_decode_nftables_event(msg, family, action, name):
    kind, body = nft_message(msg, family, 'netpolicy_split_access')
    data = message(kind, body)
    assert _netlink.decode_nftables_event(kind, data, 16, len(data)) == {
        'kind': 'nftables', 'action': action, 'family': name, 'table': 'netpolicy_split_access'}


@pytest.mark.parametrize('kind', [
    (NFNL_SUBSYS_NFTABLES << 8) | 15,    # NFT_MSG_NEWGEN: the end of a transaction
    (NFNL_SUBSYS_NFTABLES << 8) | 17,    # NFT_MSG_TRACE
    (NFNL_SUBSYS_NFTABLES << 8) | 1,     # NFT_MSG_GETTABLE
    (1 << 8) | 2,                        # conntrack's subsystem
    2, 3,                                # NLMSG_ERROR, NLMSG_DONE
])
def test_decode_nftables_other_messages_is_none(kind):
    data = message(kind, struct.pack('=BBH', 1, 0, 0) + rtattr(NFTA_NAME, b'x\0'))
    assert _netlink.decode_nftables_event(kind, data, 16, len(data)) is None


class FakeSocket:
    """recv() hands out the given chunks (bytes, or an exception to raise), then EAGAIN."""

    def __init__(self, chunks):
        self.chunks = list(chunks)

    def recv(self, size):
        if not self.chunks:
            raise BlockingIOError(errno.EAGAIN, 'Resource temporarily unavailable')
        chunk = self.chunks.pop(0)
        if isinstance(chunk, Exception):
            raise chunk
        return chunk


def event_socket(chunks):
    events = _netlink.EventSocket.__new__(_netlink.EventSocket)
    events.sock = FakeSocket(chunks)
    return events


def test_events_decodes_every_message_of_every_chunk():
    up = message(16, ifinfomsg(2, 0x10001) + rtattr(3, b'wan1\0'))
    neighbour = message(RTM_NEWNEIGH, b'\0' * 12)
    gone = message(25, rtmsg(socket.AF_INET, 0, 101))
    added = message(20, ifaddrmsg(socket.AF_INET, 32, 3) + rtattr(2, socket.inet_pton(socket.AF_INET, '100.64.0.7')))
    events = event_socket([up + neighbour + gone, added])
    assert events.events() == [
        {'kind': 'link', 'action': 'new', 'ifindex': 2, 'ifname': 'wan1', 'up': True},
        {'kind': 'route', 'action': 'delete', 'table': 101},
        {'kind': 'address', 'action': 'new', 'ifindex': 3, 'address': '100.64.0.7/32'},
    ]
    assert events.events() == []


def test_nftables_events_decodes_with_its_own_decoder():
    events = _netlink.NftablesEventSocket.__new__(_netlink.NftablesEventSocket)
    deleted = message(*nft_message(2, 1, 'netpolicy_split_access'))
    generation = message((NFNL_SUBSYS_NFTABLES << 8) | 15, struct.pack('=BBH', 0, 0, 0))
    events.sock = FakeSocket([deleted + generation])
    assert events.events() == [{'kind': 'nftables', 'action': 'delete', 'family': 'inet',
                                'table': 'netpolicy_split_access'}]


def test_events_says_when_events_were_lost():
    gone = message(25, rtmsg(socket.AF_INET, 0, 101))
    events = event_socket([OSError(errno.ENOBUFS, 'No buffer space available'), gone])
    assert events.events() == [{'kind': 'overrun'}, {'kind': 'route', 'action': 'delete', 'table': 101}]


def test_events_raises_other_errors():
    events = event_socket([OSError(errno.EBADF, 'Bad file descriptor')])
    with pytest.raises(OSError):
        events.events()


def test_events_stops_at_a_truncated_header():
    gone = message(25, rtmsg(socket.AF_INET, 0, 101))
    bad = struct.pack('=IHHII', 8, 25, 0, 0, 0)   # length shorter than a header
    assert event_socket([gone + bad + gone]).events() == [{'kind': 'route', 'action': 'delete', 'table': 101}]


def test_a_hung_hook_is_killed_and_a_finished_one_forgotten(tmp_path):
    hooks = tmp_path / 'hook.d'
    hooks.mkdir()
    for name, body in (('10-quick', 'exit 0'), ('20-hung', 'sleep 300')):
        (hooks / name).write_text('#!/bin/sh\n%s\n' % body)
        (hooks / name).chmod(0o755)
    logged = []
    uplinks = agent.Uplinks(str(tmp_path), logged.append)
    uplinks.run_hooks('isp1', 'out')
    quick, hung = [proc for proc, path, started in uplinks.hooks]
    quick.wait(timeout=10)
    uplinks.reap_hooks(time.monotonic())
    assert [path for proc, path, started in uplinks.hooks] == [str(hooks / '20-hung')] and not logged
    uplinks.reap_hooks(time.monotonic() + agent.HOOK_TIMEOUT + 1)
    assert uplinks.hooks == [] and hung.returncode is not None
    assert logged == ['error: hook %s ran longer than 60 s: killed' % (hooks / '20-hung')]


def test_the_monitor_counts_on_the_monotonic_clock(tmp_path, monkeypatch):
    # The wall clock stepped back an hour: the first probe round is still due now.
    wall = time.time
    monkeypatch.setattr(time, 'time', lambda: wall() - 3600)
    monkeypatch.setattr(agent._monitor, 'run_path', lambda: str(tmp_path / 'monitor-1.json'))  # not this host's /run
    logged = []
    uplinks = agent.Uplinks(str(tmp_path), logged.append)
    state = dict(SPLIT_STATE, monitor={'enabled': True, 'targets': {'isp1': ['203.0.113.10']}})
    uplinks.update([('split_access', state)])
    try:
        assert logged and logged[0].startswith('monitor: probing isp1 every 0.5s')
        assert abs(uplinks.deadline() - time.monotonic()) < 1.0
    finally:
        uplinks.close()


def test_a_take_out_still_owed_is_not_recorded_for_the_next_watch(tmp_path, monkeypatch):
    # isp1's take-out failed (its flush and hooks still owed), isp2's link went down (its
    # flush deferred): the next watch must not keep them out without doing those, so the
    # record leaves them to its probes, which take them out again in full.
    record = str(tmp_path / 'run' / 'monitor-1.json')
    monkeypatch.setattr(agent._monitor, 'run_path', lambda: record)   # not this host's /run
    state = dict(SPLIT_STATE, monitor={'enabled': True, 'down': 2, 'up': 2, 'targets': {
        'isp1': ['203.0.113.10'], 'isp2': ['203.0.113.10'], 'isp3': ['203.0.113.10']}})
    uplinks = agent.Uplinks(str(tmp_path), lambda line: None)
    uplinks.publish = lambda now, force=False: None
    uplinks.update([('split_access', state)])
    now = time.monotonic()
    for name in ('isp1', 'isp3'):
        uplinks.monitor.health[name].record(False, None, now)
        uplinks.monitor.health[name].record(False, None, now)
    uplinks.acted([('isp1', 'out')], ['split_access: nftables: nft -f failed'])
    uplinks.acted(uplinks.link('ppp0', False, now), [])     # isp2's interface
    assert uplinks.out() == {'isp1', 'isp2', 'isp3'}
    uplinks.close()
    assert agent._monitor.left_out(record) == {'isp3': pytest.approx(time.time(), abs=5)}


def test_a_restarted_watch_keeps_out_what_the_previous_one_left_out(tmp_path, monkeypatch):
    record = str(tmp_path / 'run' / 'monitor-1.json')
    monkeypatch.setattr(agent._monitor, 'run_path', lambda: record)   # not this host's /run
    flushed = []
    monkeypatch.setattr(agent._monitor, 'flush_conntrack', lambda mark, mask: flushed.append(mark) or 'flushed')
    state = dict(SPLIT_STATE, monitor={'enabled': True, 'down': 2, 'up': 2,
                                       'targets': {'isp1': ['203.0.113.10'], 'isp2': ['203.0.113.10']}})
    logged = []
    before = agent.Uplinks(str(tmp_path), logged.append)
    before.update([('split_access', state)])
    now = time.monotonic()
    for health in before.monitor.health.values():
        health.record(False, None, now)
        health.record(False, None, now)          # isp1, isp2 out; isp3 (no targets) follows its link
    went_out = before.monitor.figures()['isp1']['since']
    before.close()
    assert agent._monitor.published() == {}     # apply and status: no watch runs

    logged, hooks = [], []
    after = agent.Uplinks(str(tmp_path), logged.append)
    monkeypatch.setattr(after, 'run_hooks', lambda name, change: hooks.append((name, change)))
    # isp2 is no longer monitored
    after.update([('split_access', dict(state, monitor=dict(state['monitor'], targets={
        'isp1': ['203.0.113.10']})))])
    try:
        assert logged[1:] == ['isp1: out (as the previous watch left it)']
        assert after.out() == {'isp1'} and flushed == [] and hooks == []
        assert after.monitor.figures()['isp1']['since'] == pytest.approx(went_out, abs=0.01)
        # its probes decide, as always
        assert after.monitor.health['isp1'].record(True, 0.01, now + 1) is None
        assert after.monitor.health['isp1'].record(True, 0.01, now + 2) == 'in'
    finally:
        after.close()
    assert not os.path.exists(record)           # nothing out: nothing to keep


@pytest.fixture
def acting(tmp_path, monkeypatch):
    """Uplinks of SPLIT_STATE as acted() sees them: [logged lines], [conntrack flushes], hook runs recorded."""
    logged, flushed = [], []
    uplinks = agent.Uplinks(str(tmp_path), logged.append)
    uplinks.state = SPLIT_STATE
    monkeypatch.setattr(agent._monitor, 'flush_conntrack', lambda mark, mask: flushed.append(mark) or 'flushed')
    monkeypatch.setattr(uplinks, 'run_hooks', lambda name, change: logged.append('hooks: %s %s' % (name, change)))
    return uplinks, logged, flushed


def test_acted_logs_flushes_and_runs_the_hooks(acting):
    uplinks, logged, flushed = acting
    uplinks.acted([('isp2', 'out'), ('isp1', 'in')], [])
    assert logged == ['isp2: out: no new connections, not in the default route', 'isp2: flushed',
                      'hooks: isp2 out', 'isp1: back in', 'hooks: isp1 in']
    assert flushed == [2]


def test_acted_says_when_the_uplink_could_not_be_taken_out(acting):
    uplinks, logged, flushed = acting
    uplinks.acted([('isp2', 'out'), ('isp1', 'in')], ['split_access: nftables: nft not found (Debian: nftables)'])
    assert logged == ['isp2: could not take it out: split_access: nftables: nft not found (Debian: nftables)',
                      'isp1: could not take it back in: split_access: nftables: nft not found (Debian: nftables)']
    assert flushed == []


def applied_report(failing=()):
    """The report of an apply of SPLIT_STATE whose steps ``failing`` (their where) had an error."""
    report = agent.Report()
    for section, where, run in agent.steps(SPLIT_STATE):
        if where in failing:
            report.error('split_access', where, 'failed')
        else:
            report.succeeded.add(('split_access', where))
    return report


def test_a_failed_take_out_is_followed_up_once_a_later_apply_makes_it(acting):
    uplinks, logged, flushed = acting
    uplinks.acted([('isp2', 'out')], ['split_access: nftables: nft -f failed'])
    del logged[:]
    # the whole state applied again: the nftables step fails again, then only the dead
    # uplink's own table (its interface gone): that does not keep it in
    uplinks.applied(applied_report(failing=['nftables']))
    assert logged == [] and flushed == []
    uplinks.applied(applied_report(failing=['route_table.tables[1] (table 102)']))
    assert logged == ['isp2: out: no new connections, not in the default route', 'isp2: flushed', 'hooks: isp2 out']
    assert flushed == [2]
    uplinks.applied(applied_report())                 # once
    assert len(logged) == 3 and flushed == [2]


def test_a_failed_take_out_is_tried_again_later_and_later(acting):
    uplinks, logged, flushed = acting
    start = time.monotonic()
    uplinks.acted([('isp2', 'out')], ['split_access: nftables: nft -f failed'])
    assert start + 1.0 <= uplinks.retry_at < start + 1.5 and uplinks.deadline() == uplinks.retry_at
    assert not uplinks.retry_due(uplinks.retry_at - 0.1)
    assert uplinks.retry_due(uplinks.retry_at) and uplinks.retry_at is None
    # that apply fails too (the lock not taken: no step ran): the next one waits twice as long
    failed = agent.Report()
    failed.errors.append('another netpolicy.routing run holds the lock of this network namespace')
    before = time.monotonic()
    uplinks.applied(failed)
    assert before + 2.0 <= uplinks.retry_at < before + 2.5
    uplinks.retry_at = None
    uplinks.applied(failed)
    uplinks.retry_at = None
    uplinks.applied(failed)
    uplinks.retry_at = None
    before = time.monotonic()
    for dummy in range(6):
        uplinks.retry_at = None
        uplinks.applied(failed)
    assert uplinks.retry_at < before + agent.RETRY_MOST + 0.5    # at most RETRY_MOST
    # an apply of the other states only: no retry counted
    uplinks.retry_at = None
    uplinks.applied(failed, attempted=False)
    assert uplinks.retry_at is None
    # made at last: followed up, nothing more to try
    uplinks.applied(applied_report())
    assert flushed == [2] and uplinks.retry_at is None and uplinks.retry_wait == agent.RETRY_FIRST


def test_a_change_made_at_once_is_not_followed_up_again(acting):
    uplinks, logged, flushed = acting
    uplinks.acted([('isp2', 'out')], ['split_access: nftables: nft -f failed'])
    del logged[:]
    uplinks.acted([('isp2', 'in')], [])               # back before any apply made it out
    assert logged == ['isp2: back in']                # the hooks were never told out: nor in
    del logged[:]
    uplinks.applied(applied_report())
    assert logged == [] and flushed == []


def test_a_failed_take_out_of_the_last_uplink_deletes_nothing(acting):
    uplinks, logged, flushed = acting
    uplinks.monitor = FakeMonitor()
    uplinks.monitor.taken_out = {'isp1', 'isp2', 'isp3'}
    uplinks.publish = lambda now, force=False: None  # not to this host's /run
    uplinks.acted([('isp3', 'out')], ['split_access: nftables: nft -f failed'])
    del logged[:]
    uplinks.applied(applied_report())
    assert logged == ['isp3: out: no new connections, not in the default route', 'hooks: isp3 out',
                      'every uplink is out: keeping the last configuration']
    assert flushed == []
    uplinks.monitor = None


def test_a_partial_apply_reports_only_its_own_files_problems(tmp_path, monkeypatch):
    write(tmp_path, 'other.json', '{"hosts": []}')
    write(tmp_path, 'split_access.json', '{"role": "split_access", "version": 7}')
    monkeypatch.setattr(agent._monitor, 'published', lambda path=None: {})
    monkeypatch.setattr(agent._lock, 'held', lambda *args, **kwargs: contextlib.nullcontext())
    report = agent.Report()
    agent.apply_all(str(tmp_path), report, roles={'split_access'}, out=set(), fast=True)
    assert report.errors == ['%s: not applied: state version 7, this agent reads version 1'
                             % (tmp_path / 'split_access.json')]
    report = agent.Report()
    agent.apply_all(str(tmp_path), report, out=set())
    assert len(report.errors) == 2


class FakeMonitor:
    """What Uplinks asks of the monitor: isp2's interface goes down, then maybe up."""

    interval = 0.5

    def __init__(self):
        self.health = {'isp1': mock.Mock(down=3, interface='wan1'), 'isp2': mock.Mock(down=3, interface='wan2')}
        self.taken_out = set()

    def link(self, ifname, up, now):
        # down: out at once; up: back in only after good probe rounds (none here)
        if up:
            return []
        self.taken_out.add('isp2')
        return [('isp2', 'out')]

    def tick(self, now):
        return []

    def out(self):
        return set(self.taken_out)

    def deadline(self):
        return None


def test_a_link_down_deletes_the_connections_only_if_it_stays_down(acting):
    uplinks, logged, flushed = acting
    uplinks.monitor = FakeMonitor()
    uplinks.publish = lambda now, force=False: None  # not to this host's /run
    start = time.monotonic()
    uplinks.acted(uplinks.link('wan2', False, start), [])
    assert flushed == [] and logged[0].startswith('isp2: out: no new connections, not in the default route; '
                                                  'its connections are deleted if its link is still down in 1.')
    assert logged[1] == 'hooks: isp2 out'
    assert uplinks.deadline() == start + 1.5
    uplinks.tick(start + 1.4)
    assert flushed == []
    uplinks.tick(start + 1.5)
    assert flushed == [2] and uplinks.deadline() is None

    # a blip: the link back before the time is up (the uplink still out, waiting for
    # good rounds): its connections are kept
    del flushed[:]
    uplinks.acted(uplinks.link('wan2', False, start + 10), [])
    uplinks.acted(uplinks.link('wan2', True, start + 10.3), [])
    uplinks.tick(start + 20)
    assert flushed == [] and uplinks.deadline() is None and uplinks.out() == {'isp2'}
    uplinks.monitor = None  # (the fixture's uplinks has no real monitor to close)


def test_a_link_down_whose_take_out_failed_deletes_the_connections_once_it_is_made(acting):
    uplinks, logged, flushed = acting
    uplinks.monitor = FakeMonitor()
    uplinks.publish = lambda now, force=False: None  # not to this host's /run
    start = time.monotonic()
    uplinks.acted(uplinks.link('wan2', False, start), ['split_access: nftables: nft -f failed'])
    # nothing to flush until an apply makes it: the only deadline is that apply, 1 s later
    assert uplinks.deadline() == uplinks.retry_at and start + 1.0 <= uplinks.retry_at < start + 1.5
    uplinks.tick(start + 2)
    assert flushed == [] and logged == ['isp2: could not take it out: split_access: nftables: nft -f failed']
    uplinks.applied(applied_report())
    assert logged[1].startswith('isp2: out: no new connections, not in the default route; its connections are '
                                'deleted if its link is still down in 1.')
    assert logged[2:] == ['hooks: isp2 out']
    assert uplinks.deadline() == start + 1.5
    uplinks.tick(start + 2)
    assert flushed == [2]

    # a blip: the link back before an apply made the change: its connections are kept
    del flushed[:], logged[:]
    uplinks.acted(uplinks.link('wan2', False, start + 10), ['split_access: nftables: nft -f failed'])
    uplinks.link('wan2', True, start + 10.3)
    uplinks.applied(applied_report())
    uplinks.tick(start + 20)
    assert logged[1:] == ['isp2: out: no new connections, not in the default route', 'hooks: isp2 out']
    assert flushed == [] and uplinks.deadline() is None
    uplinks.monitor = None
