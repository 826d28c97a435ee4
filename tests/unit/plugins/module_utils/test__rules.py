"""_rules: normalizing user input, reading kernel messages, planning (pure logic, no kernel)."""
import socket
import struct

import pytest

from ansible_collections.netpolicy.routing.plugins.module_utils import _netlink
from ansible_collections.netpolicy.routing.plugins.module_utils._engine import (
    ADD, DELETE, EngineError, InputError)
from ansible_collections.netpolicy.routing.plugins.module_utils._rules import (
    RuleKind, default_priority, delete_hits, from_netlink, kernel_same, key, normalize, parse_fwmark,
    parse_priorities, plan_rules, resolve_priorities, rule_inputs, to_request)

NAMES = {'main': 254, 'local': 255, 'default': 253, 'unspec': 0, 'isp1': 101, 'isp2': 102}
KIND = RuleKind(labels={254: 'main', 255: 'local', 253: 'default', 101: 'isp1', 102: 'isp2'})


def rule(**options):
    return normalize(options, names=NAMES)


@pytest.mark.parametrize('options, expected', [
    ({'from': '192.0.2.10', 'table': 'isp1'}, {'family': 'ipv4', 'from': '192.0.2.10/32', 'table': 101, 'action': 'lookup'}),
    ({'from': '192.0.2.0/24', 'table': '101'}, {'from': '192.0.2.0/24', 'table': 101}),
    ({'to': 'all', 'table': 5}, {'to': None, 'from': None}),
    ({'from': '2001:DB8:0::/64', 'table': 5}, {'family': 'ipv6', 'from': '2001:db8::/64'}),
    ({'family': 'ipv6', 'table': 'main'}, {'family': 'ipv6', 'table': 254}),
    ({'fwmark': '4', 'table': 4}, {'fwmark': 4, 'fwmask': 0xffffffff}),
    ({'fwmark': '0x2/0xff', 'table': 4}, {'fwmark': 2, 'fwmask': 0xff}),
    ({'fwmark': '0x2/0xff', 'fwmask': '255', 'table': 4}, {'fwmark': 2, 'fwmask': 0xff}),
    ({'fwmark': 1, 'fwmask': '0x3', 'table': 4}, {'fwmark': 1, 'fwmask': 3}),
    ({'fwmark': '0', 'table': 4}, {'fwmark': None, 'fwmask': None}),
    ({'fwmark': '0/0xff', 'table': 4}, {'fwmark': 0, 'fwmask': 0xff}),
    ({'tos': '0x10', 'table': 4}, {'tos': 16}),
    ({'ipproto': 'TCP', 'table': 4}, {'ipproto': 6}),
    ({'ipproto': 'icmpv6', 'family': 'ipv6', 'table': 4}, {'ipproto': 58}),
    ({'ipproto': '47', 'table': 4}, {'ipproto': 47}),
    ({'sport': '80', 'dport': '1000-2000', 'table': 4}, {'sport': '80', 'dport': '1000-2000'}),
    ({'dport': '53-53', 'table': 4}, {'dport': '53'}),
    ({'uidrange': '100', 'table': 4}, {'uidrange': '100-100'}),
    ({'uidrange': '0-4294967294', 'table': 4}, {'uidrange': '0-4294967294'}),
    ({'invert': True, 'from': '192.0.2.1', 'table': 4}, {'invert': True}),
    ({'priority': 10, 'goto': 20}, {'action': 'goto', 'goto': 20, 'table': None}),
    ({'action': 'prohibit'}, {'action': 'prohibit', 'table': None}),
    ({'table': 'main', 'suppress_prefixlength': 0}, {'suppress_prefixlength': 0}),
    ({'iif': 'ppp0', 'oif': 'wan.10', 'table': 4}, {'iif': 'ppp0', 'oif': 'wan.10'}),
    ({'table': 4}, {'priority': None, 'tos': 0, 'other': {}}),
])
def test_normalize_good(options, expected):
    got = rule(**options)
    for field, value in expected.items():
        assert got[field] == value, field


@pytest.mark.parametrize('options, field, message', [
    ({'from': 'x', 'table': 1}, 'from', 'not an IP address or prefix'),
    ({'from': '192.0.2.1/24', 'table': 1}, 'from', 'host bits set (the prefix is 192.0.2.0/24)'),
    ({'to': '2001:db8::1/129', 'table': 1}, 'to', 'not an IP address or prefix'),
    ({'from': '192.0.2.1', 'to': '2001:db8::1', 'table': 1}, 'to', 'mixed address families'),
    ({'family': 'ipv6', 'from': '192.0.2.1', 'table': 1}, 'from', 'mixed address families'),
    ({'family': 'ipx', 'table': 1}, 'family', 'must be ipv4 or ipv6'),
    ({'table': 'nope'}, 'table', "unknown routing table name 'nope'"),
    ({'table': '0'}, 'table', 'out of range'),
    ({'table': 4294967296}, 'table', 'out of range'),
    ({}, 'table', 'action lookup needs a table'),
    ({'action': 'nop', 'table': 1}, 'table', 'with action lookup only'),
    ({'fwmark': '4294967296', 'table': 1}, 'fwmark', 'out of range 0..4294967295'),
    ({'fwmark': '-1', 'table': 1}, 'fwmark', 'out of range'),
    ({'fwmark': '1/0x1ffffffff', 'table': 1}, 'fwmark', 'out of range'),
    ({'fwmark': 'mark', 'table': 1}, 'fwmark', "not a 32-bit mark: 'mark'"),
    ({'fwmask': '0xff', 'table': 1}, 'fwmask', 'a mask needs a fwmark'),
    ({'fwmark': '1/0xff', 'fwmask': '0xf', 'table': 1}, 'fwmask', 'differs from the mask'),
    ({'fwmark': '0x1', 'fwmask': '0xff00', 'table': 1}, 'fwmark', '0x1 has bits outside mask 0xff00'),
    ({'fwmark': '0x1/0xff00', 'table': 1}, 'fwmark', '0x1 has bits outside mask 0xff00'),
    ({'fwmark': '0x1ff', 'fwmask': 255, 'table': 1}, 'fwmark', '0x1ff has bits outside mask 0xff'),
    ({'fwmark': '0x5/0', 'table': 1}, 'fwmark', '0x5 has bits outside mask 0'),
    ({'tos': '256', 'table': 1}, 'tos', 'out of range'),
    ({'tos': '0x02', 'table': 1}, 'tos', 'ECN bits'),
    ({'ipproto': 'nosuch', 'table': 1}, 'ipproto', 'unknown IP protocol'),
    ({'ipproto': '256', 'table': 1}, 'ipproto', 'unknown IP protocol'),
    ({'sport': '0', 'table': 1}, 'sport', 'out of range 1..65534'),
    ({'dport': '65535', 'table': 1}, 'dport', 'out of range 1..65534'),
    ({'dport': '90-80', 'table': 1}, 'dport', 'reversed'),
    ({'dport': '80-x', 'table': 1}, 'dport', 'not a port'),
    ({'uidrange': '5-4294967295', 'table': 1}, 'uidrange', 'out of range'),
    ({'uidrange': '10-5', 'table': 1}, 'uidrange', 'reversed'),
    ({'iif': 'a-very-long-name', 'table': 1}, 'iif', 'not an interface name'),
    ({'oif': 'has space', 'table': 1}, 'oif', 'not an interface name'),
    ({'priority': -1, 'table': 1}, 'priority', 'out of range'),
    ({'priority': 4294967296, 'table': 1}, 'priority', 'out of range'),
    ({'action': 'goto', 'priority': 5}, 'goto', 'needs the priority to go to'),
    ({'goto': 9}, 'priority', 'needs its own priority'),
    ({'goto': 5, 'priority': 5}, 'goto', 'after the rule'),
    ({'goto': 4, 'priority': 5}, 'goto', 'after the rule'),
    ({'goto': 9, 'action': 'nop', 'priority': 5}, 'goto', 'with action goto only'),
    ({'suppress_prefixlength': 33, 'table': 1}, 'suppress_prefixlength', 'out of range 0..32'),
    ({'suppress_prefixlength': 129, 'family': 'ipv6', 'table': 1}, 'suppress_prefixlength', 'out of range 0..128'),
    ({'suppress_prefixlength': 0, 'action': 'blackhole'}, 'suppress_prefixlength', 'with action lookup only'),
])
def test_normalize_bad_names_the_field(options, field, message):
    with pytest.raises(InputError) as caught:
        normalize(options, field='rules[2]', names=NAMES)
    assert caught.value.field == 'rules[2].%s' % field
    assert str(caught.value).startswith('rules[2].%s: ' % field)
    assert message in str(caught.value)


def test_top_level_field_names_have_no_prefix():
    with pytest.raises(InputError) as caught:
        normalize({'from': 'x', 'table': 1}, names=NAMES)
    assert str(caught.value) == "from: not an IP address or prefix: 'x'"


@pytest.mark.parametrize('mark, mask, expected', [
    (None, None, (None, None)),
    ('7', None, (7, 0xffffffff)),
    ('0x7/0xf', None, (7, 15)),
    (0, None, (None, None)),
    ('0xffffffff', '0xffffffff', (0xffffffff, 0xffffffff)),
    ('0/0xff', None, (0, 0xff)),  # the bits of the mask clear
    ('0', '0xff00', (0, 0xff00)),
    ('0x100/0xff00', None, (0x100, 0xff00)),
])
def test_parse_fwmark(mark, mask, expected):
    assert parse_fwmark(mark, mask, '') == expected


@pytest.mark.parametrize('value, expected', [(None, None), ('1000-1999', [(1000, 1999)]), ('1000', [(1000, 1000)]),
                                             (' 0 - 32765 ', [(0, 32765)]),
                                             ('400-499, 3000-3999', [(400, 499), (3000, 3999)])])
def test_parse_priorities(value, expected):
    assert parse_priorities(value) == expected


@pytest.mark.parametrize('value', ['2000-1000', 'x', '-5', '1-4294967296', '400-499,', '400-499,,3000'])
def test_parse_priorities_bad(value):
    with pytest.raises(InputError) as caught:
        parse_priorities(value)
    assert caught.value.field == 'purge_priorities'


def params(**options):
    base = dict((option, None) for option in ('rules', 'priority', 'from', 'table', 'family', 'action'))
    base['invert'] = False
    base.update(options)
    return base


def test_rule_inputs():
    assert rule_inputs(params()) == []
    assert rule_inputs(params(rules=[{'table': 1}, {'table': 2}])) == [('rules[0]', {'table': 1}), ('rules[1]', {'table': 2})]
    [(field, single)] = rule_inputs(params(table='1', family='ipv6'))
    assert field == '' and single['table'] == '1' and single['family'] == 'ipv6'
    with pytest.raises(InputError) as caught:
        rule_inputs(params(rules=[], table='1'))
    assert caught.value.field == 'table'
    with pytest.raises(InputError) as caught:
        rule_inputs(params(rules=[], priority=0))
    assert caught.value.field == 'priority'


def msg(family=2, attrs=(), src_len=0, dst_len=0, tos=0, action=1, flags=0, table=0):
    return {'family': family, 'src_len': src_len, 'dst_len': dst_len, 'tos': tos, 'table': table, 'action': action,
            'flags': flags, 'attrs': list(attrs)}


KERNEL_DEFAULTS = [('FRA_SUPPRESS_PREFIXLEN', 0xffffffff), ('FRA_PROTOCOL', 0)]


@pytest.mark.parametrize('message, options', [
    (msg(src_len=32, attrs=[('FRA_TABLE', 101), ('FRA_PRIORITY', 32765), ('FRA_SRC', '192.0.2.10')] + KERNEL_DEFAULTS),
     {'from': '192.0.2.10', 'table': 'isp1', 'priority': 32765}),
    (msg(attrs=[('FRA_TABLE', 4), ('FRA_PRIORITY', 7), ('FRA_FWMARK', 4), ('FRA_FWMASK', 0xffffffff)] + KERNEL_DEFAULTS),
     {'fwmark': 4, 'table': 4, 'priority': 7}),
    (msg(attrs=[('FRA_TABLE', 254), ('FRA_PRIORITY', 9), ('FRA_SUPPRESS_PREFIXLEN', 0), ('FRA_PROTOCOL', 0)]),
     {'table': 'main', 'suppress_prefixlength': 0, 'priority': 9}),
    (msg(family=10, dst_len=64, tos=16, flags=2, action=8,
         attrs=[('FRA_TABLE', 0), ('FRA_PRIORITY', 600), ('FRA_IIFNAME', 'lan0'), ('FRA_OIFNAME', 'lo'),
                ('FRA_UID_RANGE', '100:200'), ('FRA_SPORT_RANGE', '1000:2000'), ('FRA_DPORT_RANGE', '80:80'),
                ('UNKNOWN', {'header': {'length': 6, 'type': 29}}), ('FRA_IP_PROTO', 6), ('FRA_DST', '2001:db8::')]
         + KERNEL_DEFAULTS),
     {'priority': 600, 'to': '2001:db8::/64', 'tos': 16, 'invert': True, 'action': 'prohibit', 'iif': 'lan0',
      'oif': 'lo', 'uidrange': '100-200', 'sport': '1000-2000', 'dport': 80, 'ipproto': 'tcp'}),
    (msg(action=2, attrs=[('FRA_TABLE', 0), ('FRA_PRIORITY', 700), ('FRA_GOTO', 800)] + KERNEL_DEFAULTS),
     {'priority': 700, 'goto': 800}),
])
def test_a_rule_read_from_the_kernel_equals_the_rule_written(message, options):
    read, protocol = from_netlink(message)
    assert read == rule(**options)
    assert key(read) == key(rule(**options))


def test_foreign_selectors_make_a_different_rule():
    attrs = [('FRA_TABLE', 4), ('FRA_PRIORITY', 7)] + KERNEL_DEFAULTS
    plain, protocol = from_netlink(msg(attrs=attrs))
    with_realm, protocol = from_netlink(msg(attrs=attrs + [('FRA_FLOW', 3)]))
    with_dscp, protocol = from_netlink(msg(attrs=attrs + [('UNKNOWN', {'header': {'length': 5, 'type': 25}})]))
    assert plain == rule(table=4, priority=7)
    assert key(with_realm) != key(plain) and key(with_dscp) != key(plain)
    kernel_rule, protocol = from_netlink(msg(attrs=[('FRA_TABLE', 254), ('FRA_PRIORITY', 32766),
                                                    ('FRA_SUPPRESS_PREFIXLEN', 0xffffffff), ('FRA_PROTOCOL', 2)]))
    assert protocol == 2 and kernel_rule == rule(table='main', priority=32766)


def test_a_foreign_rule_is_deleted_and_put_back_with_its_selectors():
    realm, protocol = from_netlink(msg(attrs=[('FRA_TABLE', 4), ('FRA_PRIORITY', 7), ('FRA_FLOW', 3)] + KERNEL_DEFAULTS))
    assert realm['other'] == {'flow': 3}
    assert to_request(realm)['flow'] == 3
    plain = rule(table=4, priority=7)
    assert delete_hits(plain, realm) and not delete_hits(realm, plain)
    assert KIND.text(DELETE, realm) == 'ip rule del priority 7 from all lookup 4 realms 3'


def test_to_request_says_everything_explicitly():
    request = to_request(dict(rule(**{'from': '192.0.2.0/24', 'fwmark': '0x2/0xff', 'table': 'isp1', 'invert': True,
                                      'dport': '80-90', 'uidrange': '5'}), priority=1000))
    assert request == {'family': 2, 'priority': 1000, 'action': 1, 'table': 101, 'flags': 2, 'tos': 0,
                       'src': '192.0.2.0', 'src_len': 24, 'fwmark': 2, 'fwmask': 0xff, 'dport_range': '80:90',
                       'uid_range': '5:5'}
    request = to_request(dict(rule(family='ipv6', action='unreachable', sport=53), priority=5))
    assert request == {'family': 10, 'priority': 5, 'action': 7, 'table': 0, 'flags': 0, 'tos': 0, 'sport_range': '53:53'}


@pytest.mark.parametrize('options, text', [
    ({'from': '192.0.2.10', 'table': 'isp2', 'priority': 1000}, 'ip rule add priority 1000 from 192.0.2.10 lookup isp2'),
    ({'fwmark': 4, 'table': 4, 'priority': 1}, 'ip rule add priority 1 from all fwmark 0x4 lookup 4'),
    ({'fwmark': '0/0xff', 'table': 4, 'priority': 1}, 'ip rule add priority 1 from all fwmark 0/0xff lookup 4'),
    ({'table': 'main', 'suppress_prefixlength': 0, 'priority': 2}, 'ip rule add priority 2 from all lookup main suppress_prefixlength 0'),
    ({'from': '2001:db8::/64', 'action': 'blackhole', 'priority': 3}, 'ip -6 rule add priority 3 from 2001:db8::/64 blackhole'),
    ({'invert': True, 'to': '198.51.100.0/24', 'tos': 8, 'iif': 'lan0', 'ipproto': 'udp', 'dport': 53, 'priority': 4,
      'goto': 9}, 'ip rule add priority 4 not from all to 198.51.100.0/24 tos 0x08 iif lan0 ipproto udp dport 53 goto 9'),
])
def test_commands_are_iproute2_syntax(options, text):
    assert KIND.text(ADD, rule(**options)) == text
    assert KIND.text(DELETE, rule(**options)) == text.replace(' add ', ' del ')


@pytest.mark.parametrize('priorities, expected', [
    ([0, 32766, 32767], 32765), ([0, 1000, 32766], 999), ([0], 0), ([], 0), ([0, 0, 5], 0), ([0, 1], 0)])
def test_default_priority_is_the_kernels(priorities, expected):
    assert default_priority(priorities) == expected


LOCAL = rule(table='local', priority=0)
MAIN = rule(table='main', priority=32766)
DEFAULT = rule(table='default', priority=32767)
KERNEL = [(LOCAL, 2), (MAIN, 2), (DEFAULT, 2)]


def test_a_rule_without_priority_matches_at_any_priority_and_gets_the_kernels_when_new():
    existing = rule(**{'from': '192.0.2.1', 'table': 101, 'priority': 500})
    wanted = [rule(**{'from': '192.0.2.1', 'table': 'isp1'}), rule(**{'from': '192.0.2.2', 'table': 'isp1'}),
              rule(**{'from': '192.0.2.3', 'table': 'isp1'})]
    resolved = resolve_priorities(wanted, [LOCAL, existing, MAIN, DEFAULT])
    # As three `ip rule add` in a row: each new one goes before the previous.
    assert [r['priority'] for r in resolved] == [500, 499, 498]
    plan = plan_rules(KIND, KERNEL + [(existing, 0)], wanted)
    assert plan.commands == ['ip rule add priority 499 from 192.0.2.2 lookup isp1',
                             'ip rule add priority 498 from 192.0.2.3 lookup isp1']


def test_plan_is_empty_when_all_is_there():
    existing = rule(**{'from': '192.0.2.1', 'table': 101, 'priority': 500})
    assert not plan_rules(KIND, KERNEL + [(existing, 0)], [existing]).changed


def test_purge_within_the_range_and_family_never_the_kernels_rules():
    in_range = rule(**{'from': '192.0.2.1', 'table': 101, 'priority': 1500})
    in_range6 = rule(**{'from': '2001:db8::/64', 'table': 101, 'priority': 1500})
    outside = rule(**{'from': '192.0.2.2', 'table': 101, 'priority': 2500})
    state = KERNEL + [(in_range, 0), (in_range6, 0), (outside, 0)]
    plan = plan_rules(KIND, state, [], purge=[(1000, 1999)])
    assert plan.commands == ['ip rule del priority 1500 from 192.0.2.1 lookup isp1',
                             'ip -6 rule del priority 1500 from 2001:db8::/64 lookup isp1']
    plan = plan_rules(KIND, state, [], purge=[(1000, 1999)], purge_family='ipv6')
    assert plan.commands == ['ip -6 rule del priority 1500 from 2001:db8::/64 lookup isp1']
    plan = plan_rules(KIND, state, [], purge=[(0, 4294967295)])
    assert len(plan.ops) == 3
    plan = plan_rules(KIND, state, [], purge=[(400, 499), (2000, 2999)])
    assert plan.commands == ['ip rule del priority 2500 from 192.0.2.2 lookup isp1']


def test_adds_go_before_deletes_unless_the_kernel_counts_them_as_one_rule():
    old = rule(**{'from': '192.0.2.1', 'table': 101, 'priority': 1000})
    new = rule(**{'from': '192.0.2.1', 'table': 102, 'priority': 1000})
    old_goto = rule(priority=1100, goto=1200)
    new_goto = rule(priority=1100, goto=1300)
    plan = plan_rules(KIND, KERNEL + [(old, 0), (old_goto, 0)], [new, new_goto], purge=[(1000, 1999)])
    assert [(op.action, op.item['priority']) for op in plan.ops] == [
        (DELETE, 1100), (ADD, 1000), (ADD, 1100), (DELETE, 1000)]


@pytest.mark.parametrize('new, old, same', [
    ({'priority': 5, 'table': 1}, {'priority': 5, 'table': 1, 'from': '192.0.2.1'}, True),
    ({'priority': 5, 'table': 1, 'from': '192.0.2.1'}, {'priority': 5, 'table': 1}, False),
    ({'priority': 5, 'table': 1, 'invert': True}, {'priority': 5, 'table': 1}, True),
    ({'priority': 5, 'goto': 7}, {'priority': 5, 'goto': 8}, True),
    ({'priority': 5, 'table': 1}, {'priority': 6, 'table': 1}, False),
    ({'priority': 5, 'table': 1}, {'priority': 5, 'table': 2}, False),
    ({'priority': 5, 'table': 1}, {'priority': 5, 'table': 1, 'fwmark': 1}, False),
    ({'priority': 5, 'table': 1}, {'priority': 5, 'table': 1, 'family': 'ipv6'}, False),
])
def test_kernel_same(new, old, same):
    assert kernel_same(rule(**new), rule(**old)) is same


def test_delete_hits_the_first_rule_with_the_given_attributes():
    target = rule(**{'from': '192.0.2.1', 'table': 1, 'priority': 50})
    wider = rule(**{'from': '192.0.2.1', 'table': 1, 'priority': 50, 'fwmark': 1})
    assert delete_hits(target, wider) and not delete_hits(wider, target)
    suppress = rule(table=1, priority=50, suppress_prefixlength=0)
    assert not delete_hits(suppress, rule(table=1, priority=50))
    assert delete_hits(rule(table=1, priority=50), suppress)
    with pytest.raises(EngineError) as caught:
        plan_rules(KIND, KERNEL + [(wider, 0), (target, 0)], [target], state='absent')
    assert 'cannot delete' in str(caught.value)
    # In the kernel's order both go.
    plan = plan_rules(KIND, KERNEL + [(wider, 0), (target, 0)], [], purge=[(50, 50)])
    assert [op.item for op in plan.ops] == [wider, target]


def test_adding_next_to_a_rule_the_kernel_counts_as_the_same_fails_first():
    inverted = rule(**{'from': '192.0.2.1', 'table': 1, 'priority': 5, 'invert': True})
    with pytest.raises(EngineError) as caught:
        plan_rules(KIND, KERNEL + [(inverted, 0)], [rule(**{'from': '192.0.2.1', 'table': 1, 'priority': 5})])
    assert 'the kernel counts it as the same rule' in str(caught.value)


def test_two_listed_rules_the_kernel_cannot_hold_both():
    first = rule(**{'from': '192.0.2.1', 'table': 1, 'priority': 5})
    second = rule(**{'from': '192.0.2.1', 'table': 1, 'priority': 5, 'invert': True})
    with pytest.raises(InputError) as caught:
        plan_rules(KIND, KERNEL, [first, second], fields=['rules[0]', 'rules[1]'])
    assert caught.value.field == 'rules[1]'


@pytest.mark.parametrize('second, message', [
    ({'priority': 20, 'from': '10.0.0.1', 'table': 'isp1'},
     'rules[1]: conflicts with rules[0]: the same rule, one with priority 20 and one without'),
    ({'from': '10.0.0.1', 'table': 'isp1'}, 'rules[1]: the same rule as rules[0], without a priority either'),
])
def test_one_rule_listed_with_and_without_a_priority_is_refused(second, message):
    first = rule(**{'from': '10.0.0.1', 'table': 'isp1'})
    for pair in ([first, rule(**second)], [rule(**second), first]):
        with pytest.raises(InputError) as caught:
            plan_rules(KIND, KERNEL, pair, fields=['rules[0]', 'rules[1]'])
        assert str(caught.value).startswith(message)
    # Alike but for the table, or with a priority each, they are two rules; absent removes every copy.
    other = rule(**{'from': '10.0.0.1', 'table': 'isp2'})
    assert len(plan_rules(KIND, KERNEL, [first, other], fields=['rules[0]', 'rules[1]']).ops) == 2
    both = [rule(**dict(second, priority=20)), rule(**{'from': '10.0.0.1', 'table': 'isp1', 'priority': 30})]
    assert len(plan_rules(KIND, KERNEL, both, fields=['rules[0]', 'rules[1]']).ops) == 2
    assert plan_rules(KIND, KERNEL, [first, rule(**second)], state='absent', fields=['rules[0]', 'rules[1]']).ops == []


def test_absent_without_priority_deletes_every_copy_and_duplicates():
    copy1 = rule(**{'from': '192.0.2.1', 'table': 1, 'priority': 32765})
    copy2 = rule(**{'from': '192.0.2.1', 'table': 1, 'priority': 32764})
    plan = plan_rules(KIND, KERNEL + [(copy2, 0), (copy1, 0), (copy1, 0)], [rule(**{'from': '192.0.2.1', 'table': 1})],
                      state='absent')
    assert plan.commands == ['ip rule del priority 32764 from 192.0.2.1 lookup 1'] + \
        ['ip rule del priority 32765 from 192.0.2.1 lookup 1'] * 2
    assert plan.after == []


def test_diff_lines_read_like_ip_rule_show():
    assert KIND.render(rule(**{'from': '192.0.2.1', 'table': 'isp1', 'priority': 5})) == '    5:\tfrom 192.0.2.1 lookup isp1'
    assert KIND.render(rule(family='ipv6', table='main', priority=32766)) == '32766:\tfrom all lookup main  [ipv6]'


def _rtattr(kind, payload):
    length = 4 + len(payload)
    return struct.pack('=HH', length, kind) + payload + b'\0' * (-length % 4)


def test_a_dumped_rule_message_decodes_to_what_from_netlink_reads():
    """_netlink's own decoder (no pyroute2 on the read path) gives the fields and value forms from_netlink expects."""
    body = struct.pack('=BBBBBBBBI', socket.AF_INET6, 64, 0, 16, 0, 0, 0, 8, 2)
    for kind, payload in ((6, struct.pack('=I', 600)), (1, socket.inet_pton(socket.AF_INET6, '2001:db8::')),
                          (3, b'lan0\0'), (17, b'lo\0'), (20, struct.pack('=II', 100, 200)),
                          (23, struct.pack('=HH', 1000, 2000)), (24, struct.pack('=HH', 80, 80)), (22, b'\x06'),
                          (15, struct.pack('=I', 0)), (14, struct.pack('=I', 0xffffffff)), (21, b'\x00'),
                          (18, b''), (29, b'\xff\xff')):
        body += _rtattr(kind, payload)
    message = _netlink._decode_rule(body, 0, len(body))
    read, protocol = from_netlink(message)
    assert read == rule(priority=600, to='2001:db8::/64', tos=16, invert=True, action='prohibit', iif='lan0', oif='lo',
                        uidrange='100-200', sport='1000-2000', dport=80, ipproto='tcp')
    with_dscp = body + _rtattr(25, b'\x08')
    assert from_netlink(_netlink._decode_rule(with_dscp, 0, len(with_dscp)))[0]['other'] == {'attr25': True}
