# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: routing policy rules (``ip rule``).

A rule is a plain dict with every attribute the kernel keeps, filled with the
kernel's defaults, so a rule read from the kernel and a rule from the playbook
compare equal exactly when they are the same rule. Its identity is all of it
(rules have no "replace": a changed rule is a new rule).

normalize (user input -> rule) -> plan (engine) -> order -> apply (netlink).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import socket

from ansible_collections.netpolicy.routing.plugins.module_utils import _netlink
from ansible_collections.netpolicy.routing.plugins.module_utils._engine import (
    ADD, DELETE, ApplyError, EngineError, InputError, Kind, Op, Plan, build_plan, execute)
from ansible_collections.netpolicy.routing.plugins.module_utils._module import NETNS_SPEC
from ansible_collections.netpolicy.routing.plugins.module_utils._rt_tables import (
    resolve_table, table_label, table_names)

ACTIONS = ('lookup', 'goto', 'nop', 'blackhole', 'unreachable', 'prohibit')
# FR_ACT_* of linux/fib_rules.h
ACTION_CODES = {'lookup': 1, 'goto': 2, 'nop': 3, 'blackhole': 6, 'unreachable': 7, 'prohibit': 8}
ACTION_NAMES = dict((code, name) for name, code in ACTION_CODES.items())
FAMILIES = {'ipv4': socket.AF_INET, 'ipv6': socket.AF_INET6}
FAMILY_NAMES = dict((code, name) for name, code in FAMILIES.items())
FIB_RULE_INVERT = 0x2
RTPROT_KERNEL = 2
U32_MAX = 0xffffffff
# The kernel refuses port 0 and 65535 in a rule's port range.
PORT_MIN, PORT_MAX = 1, 65534
# and uid 4294967295 (it means "no uid") in a uid range.
UID_MAX = U32_MAX - 1
IFNAMSIZ = 16
# Selectors of rules made by others that this module does not set: {name: value when unset}.
FOREIGN = {'l3mdev': 0, 'suppress_ifgroup': U32_MAX, 'tun_id': 0, 'flow': 0}

# What iproute2 prints for the common ones (/etc/protocols may be missing).
IP_PROTOCOLS = {'icmp': 1, 'igmp': 2, 'tcp': 6, 'udp': 17, 'gre': 47, 'esp': 50, 'ah': 51,
                'ipv6-icmp': 58, 'sctp': 132, 'udplite': 136}
IP_PROTOCOL_ALIASES = {'icmpv6': 58, 'icmp6': 58}
IP_PROTOCOL_NAMES = dict((number, name) for name, number in IP_PROTOCOLS.items())

# The options of one rule, as a single rule at the top level or as items of ``rules``.
RULE_OPTIONS = {
    'priority': dict(type='int'),
    'from': dict(type='str'),
    'to': dict(type='str'),
    'iif': dict(type='str'),
    'oif': dict(type='str'),
    'fwmark': dict(type='str'),
    'fwmask': dict(type='str'),
    'tos': dict(type='str'),
    'ipproto': dict(type='str'),
    'sport': dict(type='str'),
    'dport': dict(type='str'),
    'uidrange': dict(type='str'),
    'invert': dict(type='bool', default=False),
    'table': dict(type='str'),
    'action': dict(type='str', choices=list(ACTIONS)),
    'goto': dict(type='int'),
    'suppress_prefixlength': dict(type='int'),
    'family': dict(type='str', choices=list(FAMILIES)),
}

IP_RULE_SPEC = dict(
    rules=dict(type='list', elements='dict', options=RULE_OPTIONS),
    state=dict(type='str', default='present', choices=['present', 'absent']),
    purge_priorities=dict(type='str'),
)
IP_RULE_SPEC.update(RULE_OPTIONS)
IP_RULE_SPEC.update(NETNS_SPEC)

# The attributes of a rule, in the order of its identity.
FIELDS = ('family', 'priority', 'invert', 'from', 'to', 'tos', 'fwmark', 'fwmask', 'iif', 'oif',
          'uidrange', 'ipproto', 'sport', 'dport', 'action', 'table', 'goto',
          'suppress_prefixlength', 'other')


# ---------------------------------------------------------------- user input

def _number(value, field, what, low=0, high=U32_MAX):
    """An int from an int or a decimal / 0x hex string, within low..high."""
    if isinstance(value, bool):
        raise InputError(field, 'not %s: %r' % (what, value))
    if isinstance(value, int):
        number = value
    else:
        try:
            number = int(str(value).strip(), 0)
        except ValueError:
            raise InputError(field, 'not %s: %r' % (what, value))
    if number < low or number > high:
        raise InputError(field, '%s %d is out of range %d..%d' % (what, number, low, high))
    return number


def parse_prefix(value, field):
    """(family name, 'address/len') of an address or prefix; None for 'all'."""
    text = str(value).strip()
    if text in ('all', 'any', 'default'):
        return None
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InputError(field, 'not an IP address or prefix: %r' % value)
    if '/' in text and network.network_address != ipaddress.ip_interface(text).ip:
        raise InputError(field, '%s has host bits set (the prefix is %s)' % (text, network))
    return ('ipv%d' % network.version), '%s/%d' % (network.network_address, network.prefixlen)


def parse_range(value, field, what, low, high):
    """(start, end) of 'N' or 'N-M'."""
    text = str(value).strip()
    parts = text.split('-', 1) if not text.startswith('-') else [text]
    start = _number(parts[0], field, what, low, high)
    end = _number(parts[1], field, what, low, high) if len(parts) > 1 else start
    if start > end:
        raise InputError(field, 'range %s is reversed (start above end)' % text)
    return start, end


def parse_fwmark(mark, mask, field):
    """(mark, mask) as the kernel keeps them; (None, None) when the rule has no mark."""
    prefix = field + '.' if field else ''
    mark_field, mask_field = prefix + 'fwmark', prefix + 'fwmask'
    if mark is None:
        if mask is not None:
            raise InputError(mask_field, 'a mask needs a fwmark to go with it')
        return None, None
    text = str(mark).strip()
    if '/' in text:
        text, inline = text.split('/', 1)
        inline_mask = _number(inline, mark_field, 'a 32-bit mark mask')
        if mask is not None and _number(mask, mask_field, 'a 32-bit mark mask') != inline_mask:
            raise InputError(mask_field, 'differs from the mask given in fwmark %r' % mark)
        mask = inline_mask
    number = _number(text, mark_field, 'a 32-bit mark')
    if mask is None:
        # The kernel's default: all bits when a mark is given, no match at all for mark 0.
        mask_number = U32_MAX if number else 0
    else:
        mask_number = _number(mask, mask_field, 'a 32-bit mark mask')
    if number & ~mask_number:
        # The kernel keeps such a rule but compares only the bits of the mask: 0x1/0xff00
        # matches every packet whose bits 0xff00 are clear, not what was written.
        raise InputError(mark_field, '%#x has bits outside mask %#x' % (number, mask_number))
    if not number and not mask_number:
        return None, None
    return number, mask_number


def parse_ipproto(value, field):
    text = str(value).strip().lower()
    if text in IP_PROTOCOLS:
        return IP_PROTOCOLS[text]
    if text in IP_PROTOCOL_ALIASES:
        return IP_PROTOCOL_ALIASES[text]
    try:
        return _number(text, field, 'an IP protocol number', 1, 255)
    except InputError:
        try:
            return socket.getprotobyname(text)
        except (OSError, socket.error):
            raise InputError(field, 'unknown IP protocol %r (use a name like tcp, udp, icmp or a number)' % value)


def parse_priorities(value):
    """[(low, high), ...] of purge_priorities '1000-1999', '1000' or '400-499,3000-3999';
    None when not given."""
    if value is None:
        return None
    return [parse_range(part, 'purge_priorities', 'a priority', 0, U32_MAX) for part in str(value).split(',')]


def _interface(value, field):
    text = str(value)
    if not text or len(text) >= IFNAMSIZ or '/' in text or any(c.isspace() for c in text):
        raise InputError(field, 'not an interface name: %r' % value)
    return text


def normalize(raw, field='', names=None, netns=None, default_family=None):
    """The rule ``raw`` (options of one rule) with the kernel's defaults filled in.

    ``field`` is the prefix of every field in error messages ('rules[2]').
    ``priority`` stays None when not given: the plan picks it.
    """
    def name(option):
        return '%s.%s' % (field, option) if field else option

    def get(option):
        return raw.get(option)

    families = {}
    rule = dict((key, None) for key in FIELDS)
    rule['invert'] = bool(get('invert'))
    rule['tos'] = 0
    rule['other'] = {}
    if get('family') is not None:
        if get('family') not in FAMILIES:
            raise InputError(name('family'), 'must be ipv4 or ipv6, not %r' % get('family'))
        families['family'] = get('family')
    for option in ('from', 'to'):
        if get(option) is not None:
            parsed = parse_prefix(get(option), name(option))
            if parsed is not None:
                families[option] = parsed[0]
                rule[option] = parsed[1]
    if len(set(families.values())) > 1:
        given = ', '.join('%s is %s' % (option, families[option]) for option in ('family', 'from', 'to') if option in families)
        last = [option for option in ('family', 'from', 'to') if option in families][-1]
        raise InputError(name(last), 'mixed address families in one rule (%s)' % given)
    rule['family'] = list(families.values())[0] if families else (default_family or 'ipv4')

    if get('priority') is not None:
        rule['priority'] = _number(get('priority'), name('priority'), 'a priority')
    if get('tos') is not None:
        tos = _number(get('tos'), name('tos'), 'a TOS / DS field', 0, 255)
        if tos & 0x3:
            raise InputError(name('tos'), 'ECN bits (0x3) must be 0, got %#x' % tos)
        rule['tos'] = tos
    rule['fwmark'], rule['fwmask'] = parse_fwmark(get('fwmark'), get('fwmask'), field)
    for option in ('iif', 'oif'):
        if get(option) is not None:
            rule[option] = _interface(get(option), name(option))
    if get('uidrange') is not None:
        rule['uidrange'] = '%d-%d' % parse_range(get('uidrange'), name('uidrange'), 'a uid', 0, UID_MAX)
    if get('ipproto') is not None:
        rule['ipproto'] = parse_ipproto(get('ipproto'), name('ipproto'))
    for option in ('sport', 'dport'):
        if get(option) is not None:
            rule[option] = port_text(parse_range(get(option), name(option), 'a port', PORT_MIN, PORT_MAX))

    action = get('action')
    if action is None:
        action = 'goto' if get('goto') is not None else 'lookup'
    if action not in ACTIONS:
        raise InputError(name('action'), 'must be one of %s, not %r' % (', '.join(ACTIONS), action))
    rule['action'] = action
    if action == 'lookup':
        if get('table') is None:
            raise InputError(name('table'), 'action lookup needs a table (name or id)')
        rule['table'] = resolve_table(get('table'), netns, field=name('table'), names=names)
    elif get('table') is not None:
        raise InputError(name('table'), 'a table goes with action lookup only, not %s' % action)
    if action == 'goto':
        if get('goto') is None:
            raise InputError(name('goto'), 'action goto needs the priority to go to')
        if rule['priority'] is None:
            raise InputError(name('priority'), 'a goto rule needs its own priority (the target must be after it)')
        rule['goto'] = _number(get('goto'), name('goto'), 'a priority')
        if rule['goto'] <= rule['priority']:
            raise InputError(name('goto'), 'goto %d must be a priority after the rule\'s own %d (the kernel '
                             'supports forward goto only)' % (rule['goto'], rule['priority']))
    elif get('goto') is not None:
        raise InputError(name('goto'), 'goto goes with action goto only, not %s' % action)
    if get('suppress_prefixlength') is not None:
        if action != 'lookup':
            raise InputError(name('suppress_prefixlength'), 'goes with action lookup only, not %s' % action)
        longest = 32 if rule['family'] == 'ipv4' else 128
        rule['suppress_prefixlength'] = _number(get('suppress_prefixlength'), name('suppress_prefixlength'),
                                                'a prefix length', 0, longest)
    return rule


def port_text(port_range):
    start, end = port_range
    return str(start) if start == end else '%d-%d' % (start, end)


def rule_inputs(params):
    """[(field prefix, options)] of the rules the task lists: ``rules`` or the top-level one."""
    single = dict((option, params.get(option)) for option in RULE_OPTIONS)
    # invert is false by default and family is also the default of ``rules``: neither makes a rule.
    given = [option for option in RULE_OPTIONS
             if option != 'family' and single[option] is not None and single[option] is not False]
    if params.get('rules') is not None:
        if given:
            raise InputError(given[0], 'give either rules or the options of one rule, not both')
        return [('rules[%d]' % index, raw) for index, raw in enumerate(params['rules'])]
    if given:
        return [('', single)]
    return []


# ---------------------------------------------------------------- kernel side

def key(rule):
    """The identity of a rule: every attribute the kernel keeps, except the protocol."""
    return tuple(tuple(sorted(rule[field].items())) if field == 'other' else rule[field] for field in FIELDS)


def from_netlink(msg):
    """(rule, protocol) of one RTM_NEWRULE message, with the same defaults as ``normalize``."""
    attrs = {}
    unknown = []
    for attr in msg['attrs']:
        if attr[0] == 'UNKNOWN':
            unknown.append(attr[1]['header']['type'])
        else:
            attrs[attr[0]] = attr[1]
    rule = dict((field, None) for field in FIELDS)
    rule['family'] = FAMILY_NAMES.get(msg['family'], str(msg['family']))
    rule['priority'] = attrs.get('FRA_PRIORITY', 0)
    rule['invert'] = bool(msg['flags'] & FIB_RULE_INVERT)
    for field, attr, length in (('from', 'FRA_SRC', 'src_len'), ('to', 'FRA_DST', 'dst_len')):
        if msg[length]:
            rule[field] = '%s/%d' % (ipaddress.ip_address(attrs.get(attr)), msg[length])
    rule['tos'] = msg['tos']
    mark, mask = attrs.get('FRA_FWMARK', 0), attrs.get('FRA_FWMASK', 0)
    if mark or mask:
        rule['fwmark'], rule['fwmask'] = mark, mask
    rule['iif'] = attrs.get('FRA_IIFNAME')
    rule['oif'] = attrs.get('FRA_OIFNAME')
    if 'FRA_UID_RANGE' in attrs:
        rule['uidrange'] = attrs['FRA_UID_RANGE'].replace(':', '-')
    rule['ipproto'] = attrs.get('FRA_IP_PROTO') or None
    for field, attr in (('sport', 'FRA_SPORT_RANGE'), ('dport', 'FRA_DPORT_RANGE')):
        if attr in attrs:
            rule[field] = port_text([int(part) for part in attrs[attr].split(':')])
    rule['action'] = ACTION_NAMES.get(msg['action'], str(msg['action']))
    if rule['action'] == 'lookup':
        rule['table'] = attrs.get('FRA_TABLE', msg['table'])
    if rule['action'] == 'goto':
        rule['goto'] = attrs.get('FRA_GOTO')
    suppress = attrs.get('FRA_SUPPRESS_PREFIXLEN', U32_MAX)
    if suppress != U32_MAX:
        rule['suppress_prefixlength'] = suppress
    # Selectors this module does not manage: a rule that has them is never one of ours.
    other = {}
    for name, unset in FOREIGN.items():
        if attrs.get('FRA_' + name.upper(), unset) != unset:
            other[name] = attrs['FRA_' + name.upper()]
    # 28, 29: FRA_SPORT_MASK / FRA_DPORT_MASK, which newer kernels report for every port
    # selector; pyroute2 cannot decode their value. Others (DSCP, flow label) are selectors.
    for number in unknown:
        if number not in (28, 29):
            other['attr%d' % number] = True
    rule['other'] = other
    return rule, attrs.get('FRA_PROTOCOL', 0)


def to_request(rule):
    """The keyword arguments of ``IPRoute.rule()`` for ``rule``: every attribute explicit."""
    request = dict(family=FAMILIES[rule['family']], priority=rule['priority'],
                   action=ACTION_CODES[rule['action']], table=rule['table'] or 0,
                   flags=FIB_RULE_INVERT if rule['invert'] else 0, tos=rule['tos'])
    for field, address, length in (('from', 'src', 'src_len'), ('to', 'dst', 'dst_len')):
        if rule[field]:
            request[address], prefixlen = rule[field].split('/')
            request[length] = int(prefixlen)
    if rule['fwmark'] is not None:
        request['fwmark'], request['fwmask'] = rule['fwmark'], rule['fwmask']
    if rule['iif']:
        request['iifname'] = rule['iif']
    if rule['oif']:
        request['oifname'] = rule['oif']
    if rule['uidrange']:
        request['uid_range'] = rule['uidrange'].replace('-', ':')
    if rule['ipproto']:
        request['ip_proto'] = rule['ipproto']
    for field, attr in (('sport', 'sport_range'), ('dport', 'dport_range')):
        if rule[field]:
            start, end = (rule[field].split('-') + [rule[field]])[:2]
            request[attr] = '%s:%s' % (start, end)
    if rule['goto'] is not None:
        request['goto'] = rule['goto']
    if rule['suppress_prefixlength'] is not None:
        request['suppress_prefixlen'] = rule['suppress_prefixlength']
    # Foreign selectors of a rule read from the kernel (deleted by a purge, put back by a
    # rollback): sent as they were, so the request names that rule and no other.
    for name in FOREIGN:
        if name in rule['other']:
            request[name] = rule['other'][name]
    return request


def rule_words(rule, label):
    """The selector and action words of ``rule`` as iproute2 spells them."""
    words = []
    if rule['invert']:
        words.append('not')
    words += ['from', _prefix_text(rule['from'])]
    if rule['to']:
        words += ['to', _prefix_text(rule['to'])]
    if rule['tos']:
        words += ['tos', '%#04x' % rule['tos']]
    if rule['fwmark'] is not None:
        mark = '%#x' % rule['fwmark'] if rule['fwmark'] else '0'
        words += ['fwmark', mark if rule['fwmask'] == U32_MAX else '%s/%#x' % (mark, rule['fwmask'])]
    if rule['iif']:
        words += ['iif', rule['iif']]
    if rule['oif']:
        words += ['oif', rule['oif']]
    if rule['uidrange']:
        words += ['uidrange', rule['uidrange']]
    if rule['ipproto']:
        words += ['ipproto', IP_PROTOCOL_NAMES.get(rule['ipproto'], str(rule['ipproto']))]
    if rule['sport']:
        words += ['sport', rule['sport']]
    if rule['dport']:
        words += ['dport', rule['dport']]
    if rule['action'] == 'lookup':
        words += ['lookup', label(rule['table'])]
    elif rule['action'] == 'goto':
        words += ['goto', str(rule['goto'])]
    else:
        words.append(rule['action'])
    if rule['suppress_prefixlength'] is not None:
        words += ['suppress_prefixlength', str(rule['suppress_prefixlength'])]
    for name, value in sorted(rule['other'].items()):
        if name == 'flow':
            words += ['realms', '%d/%d' % (value >> 16, value & 0xffff) if value >> 16 else str(value)]
        elif name in ('suppress_ifgroup', 'tun_id'):
            words += [name, str(value)]
        else:
            words.append(name)
    return words


def _prefix_text(prefix):
    """'all', or the prefix as iproute2 prints it (no /32 or /128 for a host)."""
    if not prefix:
        return 'all'
    address, length = prefix.split('/')
    return address if int(length) == ipaddress.ip_address(address).max_prefixlen else prefix


class RuleKind(Kind):
    """Rules of both families, added and deleted through one netlink socket."""

    def __init__(self, labels=None):
        self.labels = labels or {}

    def label(self, table):
        return self.labels.get(table, str(table))

    def key(self, item):
        return key(item)

    def text(self, action, item):
        ip = 'ip -6 rule' if item['family'] == 'ipv6' else 'ip rule'
        verb = 'add' if action == ADD else 'del'
        return '%s %s priority %d %s' % (ip, verb, item['priority'], ' '.join(rule_words(item, self.label)))

    def render(self, item):
        # As `ip rule show` prints it; IPv6 rules marked, since `from all` reads the same in both.
        line = '%5d:\t%s' % (item['priority'], ' '.join(rule_words(item, self.label)))
        return line + ('  [ipv6]' if item['family'] == 'ipv6' else '')

    def apply(self, ops):
        applied = []
        ipr = _netlink.connect()
        try:
            for op in ops:
                try:
                    _netlink.rule_request(ipr, 'add' if op.action == ADD else 'del', to_request(op.item))
                except _netlink.NetlinkError as exc:
                    raise ApplyError(str(exc), applied=applied, failed=op)
                applied.append(op)
        finally:
            ipr.close()


def read_rules():
    """[(rule, protocol)] of both families, in the kernel's order (priority, then age)."""
    with _netlink.RouteSocket() as sock:
        return [from_netlink(msg) for family in (socket.AF_INET, socket.AF_INET6) for msg in sock.dump_rules(family)]


# ---------------------------------------------------------------- planning

def _without_priority(rule):
    return tuple(value for field, value in zip(FIELDS, key(rule)) if field != 'priority')


def default_priority(priorities):
    """The priority the kernel gives a rule added without one: one below the second rule's."""
    ordered = sorted(priorities)
    if len(ordered) > 1 and ordered[1] > 0:
        return ordered[1] - 1
    return 0


def resolve_priorities(desired, current):
    """Give every desired rule without a priority one: that of an existing rule with the
    same other attributes, else the one the kernel would pick (so check mode and
    ``commands`` show it, and the request says it), the listed rules before it counted."""
    resolved = []
    taken = dict((family, [rule['priority'] for rule in current if rule['family'] == family]) for family in FAMILIES)
    for rule in desired:
        rule = dict(rule)
        if rule['priority'] is None:
            same = [have for have in current if _without_priority(have) == _without_priority(rule)]
            if same:
                rule['priority'] = same[0]['priority']
            else:
                rule['priority'] = default_priority(taken[rule['family']])
        # As if the listed rules were added one after the other with `ip rule add`.
        taken[rule['family']].append(rule['priority'])
        resolved.append(rule)
    return resolved


def kernel_same(new, old):
    """True when the kernel refuses to add ``new`` next to ``old`` (EEXIST).

    The kernel compares fewer attributes than the identity here: it ignores
    ``not`` and the goto target, and source, destination and tos only count when
    the new rule has them.
    """
    if (new['family'], new['priority'], new['action']) != (old['family'], old['priority'], old['action']):
        return False
    for field in ('table', 'fwmark', 'fwmask', 'iif', 'oif', 'uidrange', 'ipproto', 'sport', 'dport',
                  'suppress_prefixlength'):
        if new[field] != old[field]:
            return False
    for field in ('from', 'to', 'tos'):
        if new[field] and new[field] != old[field]:
            return False
    return not [name for name in old['other'] if name != 'flow']


def delete_hits(target, rule):
    """True when a delete request for ``target`` would remove ``rule``: the kernel
    deletes the first rule that matches the attributes the request sets."""
    if (target['family'], target['priority'], target['action']) != (rule['family'], rule['priority'], rule['action']):
        return False
    for field in ('table', 'fwmark', 'fwmask', 'iif', 'oif', 'uidrange', 'ipproto', 'sport', 'dport',
                  'from', 'to', 'tos'):
        if target[field] and target[field] != rule[field]:
            return False
    # Unset is -1 here, so 0 counts.
    if target['suppress_prefixlength'] is not None and target['suppress_prefixlength'] != rule['suppress_prefixlength']:
        return False
    for name in FOREIGN:
        if name in target['other'] and target['other'][name] != rule['other'].get(name):
            return False
    return True


def order_ops(ops, rules):
    """Adds before deletes, so a rule that changes never leaves a gap where traffic
    falls through to later rules; except a delete of a rule the kernel counts as the
    same as an add (see ``kernel_same``), which must go first. Deletes go in the
    kernel's order of ``rules``, so each removes the first rule its request matches."""
    adds = [op for op in ops if op.action == ADD]
    position = dict((key(rule), index) for index, rule in reversed(list(enumerate(rules))))
    deletes = sorted((op for op in ops if op.action == DELETE), key=lambda op: position.get(key(op.item), -1))
    early = [op for op in deletes if any(kernel_same(add.item, op.item) for add in adds)]
    late = [op for op in deletes if op not in early]
    return early + adds + late


def plan_rules(kind, current, desired, state='present', purge=None, purge_family=None, fields=None):
    """The Plan from ``current`` [(rule, protocol)] to ``desired`` rules.

    ``purge`` [(low, high), ...]: rules in those priority ranges, of ``purge_family``
    (or both), that are not desired are deleted; the kernel's own rules never are.
    ``fields``: the option prefix of each desired rule, for error messages.
    """
    rules = [rule for rule, protocol in current]
    kernel_made = set(key(rule) for rule, protocol in current if protocol == RTPROT_KERNEL)
    fields = fields or [''] * len(desired)
    if state == 'absent':
        # Without a priority, every copy of the rule goes, whatever its priority.
        doomed = []
        for rule in desired:
            doomed += [have for have in rules if _without_priority(have) == _without_priority(rule)
                       and rule['priority'] in (None, have['priority'])]
        plan = build_plan(kind, rules, doomed, state='absent')
    else:
        _check_same_rules(desired, fields)
        resolved = resolve_priorities(desired, rules)
        _check_conflicts(resolved, fields, kind)
        owned = None
        if purge is not None:
            def owned(rule):
                return (any(low <= rule['priority'] <= high for low, high in purge) and key(rule) not in kernel_made
                        and purge_family in (None, rule['family']))
        plan = build_plan(kind, rules, resolved, owned=owned)
    ops = _with_duplicates(kind, plan.ops, rules)
    ops = order_ops(ops, rules)
    _check_adds_and_deletes(ops, rules, kind)
    return Plan(ops, lambda: plan.before, lambda: plan.after)


def _with_duplicates(kind, ops, rules):
    """A rule the kernel holds twice (added without NLM_F_EXCL) is deleted twice."""
    counts = {}
    for rule in rules:
        counts[key(rule)] = counts.get(key(rule), 0) + 1
    result = []
    for op in ops:
        result.append(op)
        if op.action == DELETE:
            result += [Op(DELETE, op.item, op.text)] * (counts.get(key(op.item), 1) - 1)
    return result


def _check_same_rules(desired, fields):
    """Two listed rules alike but for their priority, one of them without one: a rule
    without a priority matches the same rule at any priority, so which priority is meant
    is not clear (and both would be added, each at its own)."""
    seen = {}
    for index, rule in enumerate(desired):
        rest = _without_priority(rule)
        for other in seen.get(rest, []):
            priorities = (desired[other]['priority'], rule['priority'])
            if priorities == (None, None):
                raise InputError(fields[index] or 'rules', 'the same rule as %s, without a priority either: '
                                 'list it once' % fields[other])
            if None in priorities:
                given = [priority for priority in priorities if priority is not None][0]
                raise InputError(fields[index] or 'rules', 'conflicts with %s: the same rule, one with priority %d '
                                 'and one without, which matches it at any priority; give both the same priority '
                                 'or list it once' % (fields[other], given))
        seen.setdefault(rest, []).append(index)


def _check_conflicts(resolved, fields, kind):
    """Two listed rules the kernel cannot hold both."""
    for index, rule in enumerate(resolved):
        for other in resolved[:index]:
            if key(other) != key(rule) and (kernel_same(rule, other) or kernel_same(other, rule)):
                raise InputError(fields[index] or 'rules', 'conflicts with %r: the kernel counts both as one rule '
                                 'at priority %d; give them different priorities'
                                 % (kind.render(other).strip(), rule['priority']))


def _check_adds_and_deletes(ops, rules, kind):
    """Refuse, before touching anything, what the kernel would do differently from the plan:
    an add it would refuse as a duplicate of a rule that stays, or a delete that would
    remove another rule (the kernel deletes the first rule matching the attributes given)."""
    deleted = [op.item for op in ops if op.action == DELETE]
    staying = [rule for rule in rules if rule not in deleted]
    remaining = list(rules)
    for op in ops:
        if op.action == ADD:
            for rule in staying:
                if kernel_same(op.item, rule):
                    raise EngineError('cannot add %r: the kernel counts it as the same rule as the existing %r '
                                      '(it ignores not and the goto target, and from/to/tos when unset); give it '
                                      'another priority or remove that rule; nothing was changed'
                                      % (op.text, kind.render(rule).strip()))
            continue
        hits = [index for index, rule in enumerate(remaining) if delete_hits(op.item, rule)]
        if hits and key(remaining[hits[0]]) != key(op.item):
            raise EngineError('cannot delete %r alone: the kernel deletes the first rule matching the '
                              'attributes it is given, which is %r; nothing was changed'
                              % (op.text, kind.render(remaining[hits[0]]).strip()))
        if hits:
            del remaining[hits[0]]


# ---------------------------------------------------------------- the module's one call

def desired_rules(params, names):
    """The normalized rules of the task, with their option prefixes."""
    rules, fields = [], []
    default_family = params.get('family')
    for field, raw in rule_inputs(params):
        rules.append(normalize(raw, field, names=names, netns=params.get('netns'), default_family=default_family))
        fields.append(field)
    return rules, fields


def table_labels(params, names, rules_with_fields):
    """{id: name} for commands and diff: the names the task used, then iproute2's."""
    labels = {}
    for name, number in names.items():
        labels.setdefault(number, table_label(number, names))
    for field, raw in rules_with_fields:
        table = raw.get('table')
        if table is not None:
            try:
                int(str(table), 0)
            except ValueError:
                labels[names[str(table).strip()]] = str(table).strip()
    return labels


def change(params, check_mode, diff):
    """What the ip_rule module does: validate, plan, apply, verify."""
    netns = params.get('netns')
    state = params.get('state') or 'present'
    names = table_names(netns)
    desired, fields = desired_rules(params, names)
    purge = parse_priorities(params.get('purge_priorities'))
    if purge is not None and state == 'absent':
        raise InputError('purge_priorities', 'goes with state present only')
    purge_family = params.get('family')
    _netlink.enter_netns(netns)
    kind = RuleKind(table_labels(params, names, rule_inputs(params)))

    def replan():
        return plan_rules(kind, read_rules(), desired, state, purge, purge_family, fields)

    plan = replan()
    result = execute(plan, kind, replan=replan, check_mode=check_mode, diff=diff)
    # The rules as they are now (or would be, in check mode: the same priorities are picked).
    rules = [rule for rule, protocol in read_rules()]
    result['rules'] = [public(rule, kind) for rule in resolve_priorities(desired, rules)] if state == 'present' else []
    return result


def public(rule, kind):
    """A rule as the module returns it: the options of the rule, plus its ``ip rule`` line."""
    result = dict((field, rule[field]) for field in FIELDS if field != 'other')
    if rule['table'] is not None:
        result['table'] = kind.label(rule['table'])
    if rule['fwmark'] is not None:
        result['fwmark'] = '%#x/%#x' % (rule['fwmark'], rule['fwmask'])
        result['fwmask'] = '%#x' % rule['fwmask']
    result['text'] = kind.render(rule).strip()
    return result
