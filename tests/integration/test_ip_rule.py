"""netpolicy.routing.ip_rule against the real kernel, in a fresh namespace per test."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers.modules import REPO, COLLECTIONS, run_module

SYSTEM_PYTHON = '/usr/bin/python3'


def ip_rule(ns, check=False, diff=False, python=None, **args):
    args['netns'] = ns.name
    return run_module('ip_rule', args, check=check, diff=diff, python=python)


def shown(ns):
    """`ip rule` of both families, as text: what the kernel really holds."""
    return ns.ip('rule').stdout + '--- ipv6\n' + ns.ip('-6', 'rule').stdout


def lines(ns, family='-4'):
    return [line.replace('\t', ' ').strip() for line in ns.ip(family, 'rule').stdout.splitlines()]


def converge(ns, python=None, **args):
    """check, apply, again, check again (as community.crypto's create-destroy does); the results."""
    before = shown(ns)
    check = ip_rule(ns, check=True, diff=True, python=python, **args)
    assert shown(ns) == before, 'check mode changed the kernel'
    applied = ip_rule(ns, diff=True, python=python, **args)
    again = ip_rule(ns, diff=True, python=python, **args)
    again_check = ip_rule(ns, check=True, python=python, **args)
    for result in (check, applied, again, again_check):
        assert not result.get('failed'), result
    assert check['commands'] == applied['commands']
    assert check['diff'] == applied['diff']
    assert check['changed'] == applied['changed']
    assert not again['changed'] and again['commands'] == []
    assert not again_check['changed']
    assert again['diff']['before'] == again['diff']['after'] == applied['diff']['after']
    return applied


SEEDS = [
    # ip rule add from 192.168.1.169 table sunusroute (seed 001, table by name)
    ({'from': '192.168.1.169', 'table': 'sunusroute', 'priority': 1001}, '1001: from 192.168.1.169 lookup sunusroute'),
    # ip rule add fwmark 4 table 4 (seed 003)
    ({'fwmark': 4, 'table': 4, 'priority': 1002}, '1002: from all fwmark 0x4 lookup 4'),
    # ip rule add fwmark 0x2 lookup router2 (seed 004)
    ({'fwmark': '0x2', 'table': 'router2', 'priority': 1003}, '1003: from all fwmark 0x2 lookup router2'),
    # ip rule add from $IP1 table 1 (seed 002)
    ({'from': '198.51.100.2', 'table': 1, 'priority': 1004}, '1004: from 198.51.100.2 lookup 1'),
    # split access: ip rule add priority N lookup main suppress_prefixlength 0
    ({'table': 'main', 'suppress_prefixlength': 0, 'priority': 1005}, '1005: from all lookup main suppress_prefixlength 0'),
]

SELECTORS = [
    ({'to': '203.0.113.0/24', 'table': 100}, 'from all to 203.0.113.0/24 lookup 100'),
    ({'iif': 'lo', 'table': 100}, 'from all iif lo lookup 100'),
    ({'oif': 'wan0', 'table': 100}, 'from all oif wan0 [detached] lookup 100'),
    ({'fwmark': '0x10/0xff', 'table': 100}, 'from all fwmark 0x10/0xff lookup 100'),
    ({'fwmark': 1, 'fwmask': '0x3', 'table': 100}, 'from all fwmark 0x1/0x3 lookup 100'),
    ({'fwmark': 0, 'fwmask': 255, 'table': 100}, 'from all fwmark 0/0xff lookup 100'),
    ({'tos': '0x10', 'table': 100}, 'from all tos 0x10 lookup 100'),
    ({'ipproto': 'tcp', 'dport': 443, 'table': 100}, 'from all ipproto tcp dport 443 lookup 100'),
    ({'ipproto': 'udp', 'sport': '1000-2000', 'table': 100}, 'from all ipproto udp sport 1000-2000 lookup 100'),
    ({'dport': '5000-5010', 'table': 100}, 'from all dport 5000-5010 lookup 100'),
    ({'uidrange': '1000-1999', 'table': 100}, 'from all uidrange 1000-1999 lookup 100'),
    ({'uidrange': 33, 'table': 100}, 'from all uidrange 33-33 lookup 100'),
    ({'invert': True, 'from': '192.168.0.0/16', 'table': 100}, 'not from 192.168.0.0/16 lookup 100'),
    ({'action': 'nop'}, 'from all nop'),
    ({'from': '192.168.7.0/24', 'action': 'blackhole'}, 'from 192.168.7.0/24 blackhole'),
    ({'from': '192.168.8.0/24', 'action': 'unreachable'}, 'from 192.168.8.0/24 unreachable'),
    ({'from': '192.168.9.0/24', 'action': 'prohibit'}, 'from 192.168.9.0/24 prohibit'),
    ({'to': '192.168.0.0/16', 'goto': 3000}, 'from all to 192.168.0.0/16 goto 3000'),
    ({'table': 'local', 'from': '192.0.2.1'}, 'from 192.0.2.1 lookup local'),
    ({'table': 4000000000, 'from': '192.0.2.2'}, 'from 192.0.2.2 lookup 4000000000'),
    ({'from': '192.0.2.3', 'to': '198.51.100.0/24', 'tos': 8, 'fwmark': 7, 'iif': 'lo', 'oif': 'lan0',
      'uidrange': '0-10', 'ipproto': 'udp', 'sport': 53, 'dport': '1024-65534', 'invert': True, 'table': 200,
      'suppress_prefixlength': 8},
     'not from 192.0.2.3 to 198.51.100.0/24 tos 0x08 fwmark 0x7 iif lo oif lan0 [detached] uidrange 0-10 '
     'ipproto udp sport 53 dport 1024-65534 lookup 200 suppress_prefixlength 8'),
]

SELECTORS6 = [
    ({'from': '2001:db8:1::/64', 'table': 100}, 'from 2001:db8:1::/64 lookup 100'),
    ({'to': '2001:db8:2::1', 'table': 'main'}, 'from all to 2001:db8:2::1 lookup main'),
    ({'family': 'ipv6', 'fwmark': 2, 'table': 102}, 'from all fwmark 0x2 lookup 102'),
    ({'family': 'ipv6', 'ipproto': 'ipv6-icmp', 'action': 'prohibit'}, 'from all ipproto ipv6-icmp prohibit'),
    ({'family': 'ipv6', 'table': 'main', 'suppress_prefixlength': 0}, 'from all lookup main suppress_prefixlength 0'),
    ({'from': '2001:db8:3::/48', 'goto': 3000}, 'from 2001:db8:3::/48 goto 3000'),
    ({'family': 'ipv6', 'tos': '0x24', 'dport': 53, 'ipproto': 'udp', 'table': 100},
     'from all tos 0x24 ipproto udp dport 53 lookup 100'),
]


def goto_targets(ns):
    """The rules the goto selectors jump to (else `ip rule` shows them [unresolved])."""
    ns.ip('rule', 'add', 'priority', '3000', 'nop')
    ns.ip('-6', 'rule', 'add', 'priority', '3000', 'nop')


def numbered(cases, first):
    rules, expected = [], []
    for offset, (rule, text) in enumerate(cases):
        rule = dict(rule)
        rule['priority'] = first + offset
        rules.append(rule)
        expected.append('%d: %s' % (first + offset, text))
    return rules, expected


RT_TABLES = '255\tlocal\n254\tmain\n253\tdefault\n0\tunspec\n100\tsunusroute\n200\trouter2\n'


def test_seed_rules_apply_idempotent_check_and_diff(netns):
    netns.rt_tables(RT_TABLES)
    result = converge(netns, rules=[rule for rule, text in SEEDS])
    assert result['changed']
    assert result['commands'][0] == 'ip rule add priority 1001 from 192.168.1.169 lookup sunusroute'
    assert result['diff']['before'] == ''
    assert ' 1001:\tfrom 192.168.1.169 lookup sunusroute\n' in result['diff']['after']
    for rule, text in SEEDS:
        assert text in lines(netns)
    assert [rule['priority'] for rule in result['rules']] == [1001, 1002, 1003, 1004, 1005]
    assert result['rules'][0]['table'] == 'sunusroute'


def test_every_selector_is_what_the_kernel_shows(netns):
    goto_targets(netns)
    rules, expected = numbered(SELECTORS, 2000)
    rules6, expected6 = numbered(SELECTORS6, 2100)
    result = converge(netns, rules=rules + rules6)
    assert len(result['commands']) == len(rules) + len(rules6)
    assert [line for line in lines(netns) if line.startswith('2')] == expected
    assert [line for line in lines(netns, '-6') if line.startswith('2')] == expected6
    # The commands are real iproute2 syntax: the same rules added by hand are the same rules.
    again = ip_rule(netns, rules=rules + rules6, state='absent')
    assert len(again['commands']) == len(rules) + len(rules6)
    for command in result['commands']:
        netns.ip(*command.split()[1:])
    assert [line for line in lines(netns) if line.startswith('2')] == expected
    assert not ip_rule(netns, rules=rules + rules6)['changed']


@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason='no system python')
def test_debian_python3_pyroute2(netns):
    """Debian 12's python3-pyroute2 (0.7.2) speaks to the kernel the same way."""
    probe = subprocess.run([SYSTEM_PYTHON, '-c', 'import pyroute2'], capture_output=True, check=False)
    if probe.returncode:
        pytest.skip('no python3-pyroute2')
    goto_targets(netns)
    rules, expected = numbered(SELECTORS, 2000)
    rules6, expected6 = numbered(SELECTORS6, 2100)
    converge(netns, python=SYSTEM_PYTHON, rules=rules + rules6, purge_priorities='2000-2999')
    assert [line for line in lines(netns) if line.startswith('2')] == expected
    assert [line for line in lines(netns, '-6') if line.startswith('2')] == expected6
    assert not ip_rule(netns, rules=rules + rules6)['changed']
    gone = ip_rule(netns, python=SYSTEM_PYTHON, rules=[], purge_priorities='2000-2999')
    assert len(gone['commands']) == len(rules) + len(rules6)
    assert not [line for line in lines(netns) + lines(netns, '-6') if line.startswith('2')]


def test_rules_added_by_hand_are_recognized(netns):
    netns.rt_tables(RT_TABLES)
    netns.ip('rule', 'add', 'from', '192.168.1.169', 'table', 'sunusroute')
    netns.ip('rule', 'add', 'fwmark', '0x2', 'lookup', 'router2')
    netns.ip('rule', 'add', 'priority', '900', 'lookup', 'main', 'suppress_prefixlength', '0')
    netns.ip('-6', 'rule', 'add', 'from', '2001:db8::/64', 'table', '5')
    before = shown(netns)
    for args in ({'from': '192.168.1.169', 'table': 'sunusroute'},
                 {'from': '192.168.1.169/32', 'table': 100, 'priority': 32765},
                 {'fwmark': 2, 'table': 200},
                 {'fwmark': '0x2/0xffffffff', 'table': 'router2', 'priority': 32764},
                 {'table': 'main', 'suppress_prefixlength': 0},
                 {'from': '2001:db8:0::/64', 'table': 5}):
        result = ip_rule(netns, **args)
        assert not result.get('failed'), result
        assert not result['changed'], (args, result['commands'])
    assert shown(netns) == before
    # A rule without priority that is new gets the priority `ip rule add` would give it.
    result = ip_rule(netns, **{'from': '192.168.1.170', 'table': 'sunusroute'})
    assert result['commands'] == ['ip rule add priority 899 from 192.168.1.170 lookup sunusroute']
    assert '899: from 192.168.1.170 lookup sunusroute' in lines(netns)


def test_table_names_from_the_namespace_rt_tables(netns):
    netns.rt_tables('7375\tsunusroute\n')
    result = ip_rule(netns, diff=True, **{'from': '192.168.1.169', 'table': 'sunusroute', 'priority': 10})
    assert result['commands'] == ['ip rule add priority 10 from 192.168.1.169 lookup sunusroute']
    assert result['rules'][0]['table'] == 'sunusroute'
    assert netns.ip('rule', 'show', 'priority', '10').stdout.split() == [
        '10:', 'from', '192.168.1.169', 'lookup', 'sunusroute']
    # The kernel holds the number.
    assert not ip_rule(netns, **{'from': '192.168.1.169', 'table': 7375, 'priority': 10})['changed']


def test_purge_priorities_owns_a_range_exactly(netns):
    netns.ip('rule', 'add', 'priority', '1500', 'from', '192.0.2.50', 'table', '100')
    netns.ip('rule', 'add', 'priority', '1999', 'fwmark', '9', 'table', '101')
    netns.ip('rule', 'add', 'priority', '2000', 'from', '192.0.2.51', 'table', '100')
    netns.ip('rule', 'add', 'priority', '999', 'from', '192.0.2.52', 'table', '100')
    netns.ip('-6', 'rule', 'add', 'priority', '1600', 'from', '2001:db8::/48', 'table', '100')
    netns.ip('-6', 'rule', 'add', 'priority', '1700', 'from', '2001:db8:1::/48', 'table', '100')
    rules = [{'priority': 1000, 'from': '192.0.2.10', 'table': 102},
             {'priority': 1500, 'from': '192.0.2.50', 'table': 100},
             {'priority': 1700, 'from': '2001:db8:1::/48', 'table': 100}]

    # Only IPv6 first: the IPv4 rules in range stay.
    result = ip_rule(netns, rules=[], purge_priorities='1000-1999', family='ipv6')
    assert result['commands'] == ['ip -6 rule del priority 1600 from 2001:db8::/48 lookup 100',
                                  'ip -6 rule del priority 1700 from 2001:db8:1::/48 lookup 100']
    netns.ip('-6', 'rule', 'add', 'priority', '1600', 'from', '2001:db8::/48', 'table', '100')
    netns.ip('-6', 'rule', 'add', 'priority', '1700', 'from', '2001:db8:1::/48', 'table', '100')

    result = converge(netns, rules=rules, purge_priorities='1000-1999')
    assert result['commands'] == [
        'ip rule add priority 1000 from 192.0.2.10 lookup 102',
        'ip rule del priority 1999 from all fwmark 0x9 lookup 101',
        'ip -6 rule del priority 1600 from 2001:db8::/48 lookup 100',
    ]
    assert result['diff']['before'] == (' 1500:\tfrom 192.0.2.50 lookup 100\n'
                                        ' 1600:\tfrom 2001:db8::/48 lookup 100  [ipv6]\n'
                                        ' 1700:\tfrom 2001:db8:1::/48 lookup 100  [ipv6]\n'
                                        ' 1999:\tfrom all fwmark 0x9 lookup 101\n')
    assert lines(netns) == ['0: from all lookup local', '999: from 192.0.2.52 lookup 100',
                            '1000: from 192.0.2.10 lookup 102', '1500: from 192.0.2.50 lookup 100',
                            '2000: from 192.0.2.51 lookup 100', '32766: from all lookup main',
                            '32767: from all lookup default']
    assert lines(netns, '-6') == ['0: from all lookup local', '1700: from 2001:db8:1::/48 lookup 100',
                                  '32766: from all lookup main']
    # The kernel's own rules are never purged.
    result = ip_rule(netns, rules=[], purge_priorities='0-4294967295', check=True)
    assert len(result['commands']) == 5
    assert not [command for command in result['commands'] if 'lookup local' in command or 'lookup main' in command]


def test_a_changed_rule_is_added_before_the_old_one_goes(netns):
    netns.ip('rule', 'add', 'priority', '1000', 'from', '192.0.2.10', 'table', '101')
    netns.ip('rule', 'add', 'priority', '1100', 'goto', '1200')
    result = converge(netns, purge_priorities='1000-1199', rules=[
        {'priority': 1000, 'from': '192.0.2.10', 'table': 102},
        {'priority': 1100, 'goto': 1300},
    ])
    # The kernel refuses a second goto at 1100 (it ignores the target), so that one goes first.
    assert result['commands'] == ['ip rule del priority 1100 from all goto 1200',
                                  'ip rule add priority 1000 from 192.0.2.10 lookup 102',
                                  'ip rule add priority 1100 from all goto 1300',
                                  'ip rule del priority 1000 from 192.0.2.10 lookup 101']
    assert '1000: from 192.0.2.10 lookup 102' in lines(netns)
    assert '1100: from all goto 1300 [unresolved]' in lines(netns)


def test_absent(netns):
    netns.ip('rule', 'add', 'from', '192.0.2.10', 'table', '100')
    netns.ip('rule', 'add', 'from', '192.0.2.10', 'table', '100')
    netns.ip('rule', 'add', 'priority', '500', 'from', '192.0.2.11', 'table', '100')
    netns.ip('-6', 'rule', 'add', 'priority', '500', 'from', '2001:db8::1', 'table', '100')
    assert '32764: from 192.0.2.10 lookup 100' in lines(netns)

    check = ip_rule(netns, check=True, diff=True, state='absent', **{'from': '192.0.2.10', 'table': 100})
    result = ip_rule(netns, diff=True, state='absent', **{'from': '192.0.2.10', 'table': 100})
    assert check['commands'] == result['commands'] == [
        'ip rule del priority 32764 from 192.0.2.10 lookup 100',
        'ip rule del priority 32765 from 192.0.2.10 lookup 100']
    assert result['diff']['after'] == ''
    assert result['rules'] == []
    assert not ip_rule(netns, state='absent', **{'from': '192.0.2.10', 'table': 100})['changed']

    # With a priority, only there.
    assert not ip_rule(netns, state='absent', **{'from': '192.0.2.11', 'table': 100, 'priority': 501})['changed']
    result = ip_rule(netns, state='absent', rules=[{'from': '192.0.2.11', 'table': 100, 'priority': 500},
                                                   {'from': '2001:db8::1', 'table': 100}])
    assert result['commands'] == ['ip rule del priority 500 from 192.0.2.11 lookup 100',
                                  'ip -6 rule del priority 500 from 2001:db8::1 lookup 100']
    assert lines(netns) == ['0: from all lookup local', '32766: from all lookup main', '32767: from all lookup default']
    assert lines(netns, '-6') == ['0: from all lookup local', '32766: from all lookup main']


# Every check has a unit test (test__rules.py); these show the kernel is left alone.
BAD = [
    ({'rules': [{'from': '192.0.2.1', 'table': 1}, {'from': '192.0.2.2', 'table': 1},
                {'from': 'x', 'table': 1}]}, "rules[2].from: not an IP address or prefix: 'x'"),
    ({'rules': [{'from': '192.0.2.1', 'table': 'nosuchtable'}]}, "rules[0].table: unknown routing table name 'nosuchtable'"),
    ({'fwmark': '0x100000000', 'table': 1}, 'fwmark: a 32-bit mark 4294967296 is out of range'),
    ({'fwmask': '0xff', 'table': 1}, 'fwmask: a mask needs a fwmark'),
    ({'fwmark': '0x1', 'fwmask': '0xff00', 'table': 1}, 'fwmark: 0x1 has bits outside mask 0xff00'),
    ({'rules': [{'fwmark': '0x1/0xff00', 'table': 1}]}, 'rules[0].fwmark: 0x1 has bits outside mask 0xff00'),
    ({'from': '192.0.2.1', 'to': '2001:db8::1', 'table': 1}, 'to: mixed address families in one rule'),
    ({'priority': 100, 'goto': 100}, 'goto: goto 100 must be a priority after'),
    ({'from': '192.0.2.1'}, 'table: action lookup needs a table'),
    ({'sport': '2000-1000', 'table': 1}, 'sport: range 2000-1000 is reversed'),
    ({'rules': [], 'from': '192.0.2.1'}, 'from: give either rules or the options of one rule'),
    ({'rules': [{'priority': 5, 'from': '192.0.2.1', 'table': 1},
                {'priority': 5, 'from': '192.0.2.1', 'table': 1, 'invert': True}]},
     'rules[1]: conflicts with'),
    ({'rules': [{'from': '10.0.0.1', 'table': 1}, {'priority': 20, 'from': '10.0.0.1', 'table': 1}]},
     'rules[1]: conflicts with rules[0]: the same rule, one with priority 20 and one without'),
]


@pytest.mark.parametrize('args, message', BAD, ids=[message.split(':')[0] for args, message in BAD])
def test_bad_input_fails_naming_the_field_and_changes_nothing(netns, args, message):
    netns.ip('rule', 'add', 'priority', '100', 'from', '192.0.2.99', 'table', '100')
    netns.ip('-6', 'rule', 'add', 'priority', '100', 'from', '2001:db8::99', 'table', '100')
    before = shown(netns)
    result = ip_rule(netns, purge_priorities=args.pop('purge_priorities', '0-1999'), **args)
    assert result.get('failed'), result
    assert message in result['msg'], result['msg']
    assert 'Traceback' not in result.get('stderr', '')
    assert shown(netns) == before


def test_what_the_kernel_would_refuse_fails_before_touching_anything(netns):
    # The kernel counts `not from X` and `from X` at one priority as one rule.
    netns.ip('rule', 'add', 'priority', '5', 'not', 'from', '192.0.2.1', 'lookup', '100')
    # and deletes the first rule that has the attributes of a delete request.
    netns.ip('rule', 'add', 'priority', '50', 'from', '192.0.2.1', 'fwmark', '1', 'lookup', '100')
    netns.ip('rule', 'add', 'priority', '50', 'from', '192.0.2.1', 'lookup', '100')
    before = shown(netns)
    result = ip_rule(netns, rules=[{'priority': 4, 'action': 'nop'},
                                   {'priority': 5, 'from': '192.0.2.1', 'table': 100}])
    assert result.get('failed') and 'the kernel counts it as the same rule' in result['msg'], result
    result = ip_rule(netns, state='absent', **{'priority': 50, 'from': '192.0.2.1', 'table': 100})
    assert result.get('failed') and 'cannot delete' in result['msg'], result
    assert shown(netns) == before
    # Both deleted together works: the kernel's order is followed.
    result = ip_rule(netns, rules=[], purge_priorities='50')
    assert result['commands'] == ['ip rule del priority 50 from 192.0.2.1 fwmark 0x1 lookup 100',
                                  'ip rule del priority 50 from 192.0.2.1 lookup 100']
    assert not [line for line in lines(netns) if line.startswith('50:')]


def test_rules_with_selectors_of_their_own_are_told_apart(netns):
    # realms is not an option of the module: such a rule is never one of ours,
    netns.ip('rule', 'add', 'priority', '8', 'from', '192.0.2.1', 'lookup', '100')
    netns.ip('rule', 'add', 'priority', '8', 'from', '192.0.2.1', 'lookup', '100', 'realms', '3')
    result = converge(netns, purge_priorities='8', **{'priority': 8, 'from': '192.0.2.1', 'table': 100})
    # and its delete names it, not the plain rule that comes first.
    assert result['commands'] == ['ip rule del priority 8 from 192.0.2.1 lookup 100 realms 3']
    assert [line for line in lines(netns) if line.startswith('8:')] == ['8: from 192.0.2.1 lookup 100']
    # The kernel refuses the plain rule next to a realms one (it compares realms only when given).
    netns.ip('rule', 'add', 'priority', '9', 'from', '192.0.2.1', 'lookup', '100', 'realms', '3')
    before = shown(netns)
    result = ip_rule(netns, **{'priority': 9, 'from': '192.0.2.1', 'table': 100})
    assert result.get('failed') and 'the kernel counts it as the same rule' in result['msg'], result
    assert shown(netns) == before


ROLLBACK = textwrap.dedent('''
    import json, sys
    sys.path[:0] = [%(collections)r, %(repo)r]
    from ansible_collections.netpolicy.routing.plugins.module_utils import _netlink, _rules
    from ansible_collections.netpolicy.routing.plugins.module_utils._engine import EngineError

    real_connect = _netlink.connect

    class FailingThirdAdd:
        """The real socket, but the kernel 'refuses' the third add."""
        def __init__(self):
            self.ipr = real_connect()
            self.adds = 0
        def rule(self, command, **request):
            if command == 'add':
                self.adds += 1
                if self.adds == 3:
                    raise _netlink.NetlinkError(22, 'Invalid argument')
            return self.ipr.rule(command, **request)
        def __getattr__(self, name):
            return getattr(self.ipr, name)

    _netlink.connect = FailingThirdAdd
    params = json.loads(sys.argv[1])
    try:
        _rules.change(params, False, False)
    except EngineError as exc:
        print(json.dumps({'msg': str(exc), 'commands': exc.commands, 'failed_command': exc.failed_command}))
''')


def test_a_failure_midway_is_rolled_back(netns):
    netns.ip('rule', 'add', 'priority', '1500', 'from', '192.0.2.50', 'table', '100')
    netns.ip('-6', 'rule', 'add', 'priority', '1600', 'from', '2001:db8::/48', 'table', '100')
    before = shown(netns)
    params = {'netns': netns.name, 'state': 'present', 'purge_priorities': '1000-1999', 'rules': [
        {'priority': 1000, 'from': '192.0.2.10', 'table': '101'},
        {'priority': 1001, 'from': '2001:db8:1::/64', 'table': '101'},
        {'priority': 1002, 'fwmark': '3', 'table': '103'},
    ]}
    proc = subprocess.run([sys.executable, '-c', ROLLBACK % {'collections': COLLECTIONS, 'repo': REPO},
                           json.dumps(params)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    failure = json.loads(proc.stdout)
    assert failure['failed_command'] == 'ip rule add priority 1002 from all fwmark 0x3 lookup 103'
    assert 'the 2 change(s) already made were undone' in failure['msg']
    assert shown(netns) == before
