# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the variables of the role source_routing, on the controller.

``role_input`` checks ``source_routing_policies`` (and the confirm timeout), fills in
each policy's defaults (table, priority, mark in list order) and builds what the
role's one ``apply_state`` task applies: table names, tables, rules, the nftables
rule set (marks of service policies, NAT of all) and the reverse-path filters.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.netpolicy.routing.plugins.plugin_utils._role_input import (
    IPV4, MANAGED, RoleInput, host_bits_error, is_integer, is_list, is_table_id, or_default, to_int, to_str)
from ansible_collections.netpolicy.routing.plugins.plugin_utils._split_access import KEEP as SPLIT_ACCESS_KEEP

ROLE = 'source_routing'
VARIABLE = 'source_routing_policies'

# What the role owns on the router.
PRIORITIES = '1000-1999'
# What the argument spec allows for protocol (None: any protocol, routed by source address).
PROTOCOLS = (None, 'tcp', 'udp', 'sctp')
MARK_MASK = 0x0000ff00  # the second byte of the packet and conntrack marks
KEEP_MASK = 0xffffffff - MARK_MASK  # the other bytes, left as they are
NFT_FILE = '/etc/netpolicy/routing/source_routing.nft'
NFT_TABLE = 'netpolicy_source_routing'
SYSCTL_FILE = '/etc/sysctl.d/60-netpolicy-source_routing.conf'

# Defaults of a policy, by its position in the list.
FIRST_TABLE, FIRST_PRIORITY, PRIORITY_STEP = 201, 1000, 10
BUILTIN_TABLE_NAMES = ('main', 'local', 'default', 'unspec', 'all', 'cache')
TABLE_NAME_RE = re.compile(r'[A-Za-z_][A-Za-z0-9_.-]{0,30}')

# Address syntax, checked here so bad input fails before anything changes (the
# modules check it again, but only once the task runs). Always matched whole
# (fullmatch): a trailing newline is not part of an address.
_H = '[0-9a-fA-F]{1,4}'
_IPV6 = ('((H:){7}H|(H:){1,7}:|(H:){1,6}:H|(H:){1,5}(:H){1,2}|(H:){1,4}(:H){1,3}|(H:){1,3}(:H){1,4}'
         '|(H:){1,2}(:H){1,5}|H:(:H){1,6}|:((:H){1,7}|:))').replace('H', _H)
ADDRESS_RE = re.compile('%s|%s' % (IPV4, _IPV6))
PREFIX_RE = re.compile(r'%s(/(3[0-2]|[12]?[0-9]))?|%s(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?' % (IPV4, _IPV6))
PORTS_RE = re.compile(r'[0-9]{1,5}(-[0-9]{1,5})?')

NFT_RULESET = '''# %(managed)s
# netpolicy.routing.source_routing: marks of service policies and NAT of all
# policies. Loading this file replaces the table in one transaction.
table inet %(table)s {}
delete table inet %(table)s
table inet %(table)s {
\t# NEW connections of a service policy get its mark (byte 0x0000ff00 of the
\t# conntrack mark); every packet the client sends gets it back, for ip rule fwmark.
\tchain prerouting {
\t\ttype filter hook prerouting priority mangle; policy accept;
%(prerouting)s\t}
\t# Before split_access's NAT (priority srcnat): the first NAT chain that maps a
\t# connection gives it its source address, and a policy's is the more specific.
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat - 1; policy accept;
%(postrouting)s\t}
}
'''


def role_input(variables):
    """RoleInput of the role's public ``variables`` (missing ones take the role's defaults)."""
    errors = _timeout_errors(variables.get('source_routing_confirm_timeout', 0))
    policies, policy_errors = _policies(variables.get(VARIABLE, []))
    errors.extend(policy_errors)
    if errors:
        return RoleInput(errors, None, None, not policies)
    checks = [{'field': policy['label'] + '.interface', 'interface': policy['interface']} for policy in policies]
    return RoleInput([], _state(policies), checks, not policies)


def _timeout_errors(timeout):
    if to_int(timeout) < 0:
        return ['source_routing_confirm_timeout: must be 0 or more, not %s' % (timeout,)]
    return []


# ---------------------------------------------------------------- the policies

def _family(address):
    return 'ipv6' if ':' in address else 'ipv4'


def _of_family(addresses, family):
    return [address for address in addresses if _family(address) == family]


def _as_list(value, wrap_numbers=False):
    """The items of a list option; a string (or, for ports, a number) is one item.
    None when the value is no list at all."""
    value = or_default(value, [])
    if isinstance(value, str) or (wrap_numbers and isinstance(value, (int, float))):
        return [value]
    if is_list(value):
        return list(value)
    return None


def _policies(given):
    """(the policies with their defaults filled in, the errors of their shape and values)."""
    given = or_default(given, [])
    if not is_list(given):
        return [], ['%s: not a list of policies: %r' % (VARIABLE, given)]
    policies, errors = [], []
    for index, raw in enumerate(given):
        if not isinstance(raw, dict):
            errors.append('%s[%d]: not a policy (a mapping): %r' % (VARIABLE, index, raw))
            continue
        policy, shape_errors = _policy(index, raw)
        policies.append(policy)
        errors.extend(shape_errors)
    if errors:
        # Values of a shape the role could not read at all (its Jinja failed on them,
        # past the argument spec): these are told alone, the values are not checked.
        return policies, errors
    return policies, _value_errors(policies)


def _policy(index, raw):
    """(policy ``raw`` at ``index`` with its defaults filled in, errors of its lists)."""
    label = '%s[%d] (%s)' % (VARIABLE, index, to_str(or_default(raw.get('name'), '')))
    errors = []
    lists = {}
    for field in ('from', 'to', 'dports'):
        items = _as_list(raw.get(field), wrap_numbers=field == 'dports')
        if items is None:
            errors.append('%s.%s: not a list: %r' % (label, field, raw.get(field)))
            items = []
        lists[field] = [to_str(item) for item in items]
    source_families = sorted(set(_family(source) for source in lists['from']))
    if lists['to']:
        target_families = set(_family(target) for target in lists['to'])
        families = [family for family in source_families if family in target_families]
    else:
        families = source_families
    mark = _given(raw, 'mark', index + 1)
    policy = {
        'index': index,
        'label': label,
        'name': to_str(or_default(raw.get('name'), '')),
        'from': lists['from'],
        'to': lists['to'],
        'protocol': raw.get('protocol'),
        'dports': lists['dports'],
        'interface': to_str(or_default(raw.get('interface'), '')),
        'gateway': raw.get('gateway'),
        'snat': raw.get('snat'),
        'table': _given(raw, 'table', FIRST_TABLE + index),
        'priority': _given(raw, 'priority', FIRST_PRIORITY + PRIORITY_STEP * index),
        'mark': mark,
        # as ip rule gives it: the mark shifted into this role's byte, with that byte as mask
        'fwmark': '%#x/%#x' % (mark * 256 if is_integer(mark) else 0, MARK_MASK),
        'families': families,
        'source_families': source_families,
    }
    return policy, errors


def _given(raw, field, default):
    value = raw.get(field)
    return default if value is None else value


def _value_errors(policies):
    """Every problem of the policies' values, in order, each naming the policy and the field."""
    errors = []
    names, tables, marks = set(), set(), set()
    for policy in policies:
        label = policy['label']
        errors.extend(_name_errors(policy, names))
        if not policy['from']:
            errors.append('%s.from: at least one host or subnet is needed' % label)
        errors.extend(_address_errors(policy))
        if policy['protocol'] not in PROTOCOLS:
            errors.append('%s.protocol: not one of tcp, udp, sctp: %r' % (label, policy['protocol']))
        elif policy['dports'] and not policy['protocol']:
            errors.append('%s.dports: needs protocol (tcp, udp or sctp)' % label)
        for index, ports in enumerate(policy['dports']):
            if not _is_port_range(ports):
                errors.append('%s.dports[%d]: not a port (1..65535) or range FIRST-LAST: %r' % (label, index, ports))
        if not policy['interface']:
            errors.append('%s.interface: is required' % label)
        for field in ('gateway', 'snat'):
            errors.extend(_next_hop_errors(policy, field))
        errors.extend(_number_errors(policy, tables, marks))
    return errors


def _name_errors(policy, names):
    name = policy['name']
    seen = name in names
    names.add(name)
    if not TABLE_NAME_RE.fullmatch(name) or name in BUILTIN_TABLE_NAMES:
        return ['%s.name: not a usable table name: %r (letters, digits, _ . -, starting with a letter or _,'
                ' at most 31, not a builtin name)' % (policy['label'], name)]
    if seen:
        return ['%s.name: two policies are named %r' % (policy['label'], name)]
    return []


def _address_errors(policy):
    errors = []
    for field in ('from', 'to'):
        for index, value in enumerate(policy[field]):
            if not PREFIX_RE.fullmatch(value):
                errors.append('%s.%s[%d]: not an IP address or prefix: %r' % (policy['label'], field, index, value))
                continue
            problem = host_bits_error(value)
            if problem:
                errors.append('%s.%s[%d]: %s' % (policy['label'], field, index, problem))
            elif field == 'to' and _family(value) not in policy['source_families']:
                errors.append('%s.to[%d]: %s has no source of its family in from' % (policy['label'], index, value))
    return errors


def _is_port_range(ports):
    if not PORTS_RE.fullmatch(ports):
        return False
    bounds = [int(bound) for bound in ports.split('-')]
    return 1 <= bounds[0] <= bounds[-1] <= 65535


def _next_hop_errors(policy, field):
    """Errors of the gateway or the SNAT address: an address of the family of every source."""
    value = policy[field]
    if value is None or (field == 'snat' and value == 'masquerade'):
        return []
    if not ADDRESS_RE.fullmatch(to_str(value)):
        return ['%s.%s: not an IP address%s: %r' % (policy['label'], field,
                                                    ' or masquerade' if field == 'snat' else '', value)]
    family = _family(value)
    if any(source_family != family for source_family in policy['source_families']):
        return ['%s.%s: %s is %s, but from has %s sources' % (
            policy['label'], field, value, 'IPv6' if family == 'ipv6' else 'IPv4',
            'IPv4' if family == 'ipv6' else 'IPv6')]
    return []


def _number_errors(policy, tables, marks):
    """Errors of the table, priority and mark; ``tables`` and ``marks`` collect the valid ones
    of the policies so far, as one policy's may not be another's."""
    label, table, priority, mark = policy['label'], policy['table'], policy['priority'], policy['mark']
    errors = []
    if not is_table_id(table):
        errors.append('%s.table: not a table number 1..2147483647 but not 253-255: %r' % (label, table))
    elif table in tables:
        errors.append('%s.table: %d is the table of another policy' % (label, table))
    else:
        tables.add(table)
    if not is_integer(priority) or not 1000 <= priority <= 1999:
        errors.append('%s.priority: not in the range of this role, 1000..1999: %r' % (label, priority))
    if not is_integer(mark) or not 1 <= mark <= 255:
        errors.append('%s.mark: not 1..255: %r' % (label, mark))
    elif mark in marks:
        errors.append('%s.mark: %d is the mark of another policy' % (label, mark))
    else:
        marks.add(mark)
    return errors


# ---------------------------------------------------------------- the state

def _state(policies):
    """apply_state's ``state``: each module's arguments (also what is saved for the agent).
    What the last run saved and this one no longer has the module finds itself."""
    return {
        'version': 1,
        'role': ROLE,
        'policies': policies,
        'rt_tables_entry': {'entries': [{'name': policy['name'], 'id': policy['table']} for policy in policies]},
        'route_table': {'tables': [_table(policy) for policy in policies]},
        'ip_rule': {'purge_priorities': PRIORITIES, 'rules': [rule for policy in policies for rule in _rules(policy)]},
        'nftables': {
            'file': NFT_FILE,
            'table': 'inet ' + NFT_TABLE,
            # none without policies: the table goes
            'content': _nft_ruleset(policies) if policies else None,
        },
        'sysctl': {'file': SYSCTL_FILE, 'values': dict((key, 2) for key in _rp_filter_keys(policies))},
    }


def _table(policy):
    """The policy's table: its default route by the uplink, and a copy of the main table's
    other routes, so its hosts still reach the LAN, VPNs and the router's other networks."""
    if policy['gateway']:
        routes = [{'dest': 'default', 'gateway': policy['gateway'], 'dev': policy['interface']}]
    else:
        # a point-to-point uplink: a device route, for each family the policy routes
        routes = [{'dest': 'default', 'dev': policy['interface'], 'family': family} for family in policy['families']]
    return {'table': str(policy['table']), 'routes': routes, 'purge': True,
            'copy_from': 'main', 'copy_exclude': ['default']}


def _rules(policy):
    """A service policy: one fwmark rule per family. Else one rule per source (and destination)."""
    rules = []
    for family in policy['families']:
        base = {'priority': policy['priority'], 'table': str(policy['table']), 'family': family}
        if policy['protocol']:
            rules.append(dict(base, fwmark=policy['fwmark']))
            continue
        targets = _of_family(policy['to'], family)
        for source in _of_family(policy['from'], family):
            if targets:
                rules.extend(dict(base, **{'from': source, 'to': target}) for target in targets)
            else:
                rules.append(dict(base, **{'from': source}))
    return rules


def _by_priority(policies):
    # the order the policies' ip rules are looked up in, so a connection gets the mark
    # of the policy that routes it
    return sorted(policies, key=lambda policy: (policy['priority'], policy['index']))


def _hex(number):
    return '%#010x' % number


def _addresses(policy, family):
    """nftables words matching the policy's sources (and destinations) of ``family``."""
    nfproto = 'ip6' if family == 'ipv6' else 'ip'
    words = ['%s saddr { %s }' % (nfproto, ', '.join(_of_family(policy['from'], family)))]
    targets = _of_family(policy['to'], family)
    if targets:
        words.append('%s daddr { %s }' % (nfproto, ', '.join(targets)))
    return words


def _prerouting(policies):
    """NEW connections of a service policy get its conntrack mark (unless another policy's
    came first); then every packet of the client's direction gets it as its packet mark."""
    marks, restores = [], []
    for policy in _by_priority(policies):
        if not policy['protocol']:
            continue
        mark = _hex(policy['mark'] * 256)
        for family in policy['families']:
            words = ['ct state new', 'ct mark & %s == 0x00000000' % _hex(MARK_MASK)] + _addresses(policy, family)
            if policy['dports']:
                words.append('%s dport { %s }' % (policy['protocol'], ', '.join(policy['dports'])))
            else:
                words.append('meta l4proto %s' % (policy['protocol'],))
            words.append('ct mark set ct mark & %s | %s' % (_hex(KEEP_MASK), mark))
            marks.append(' '.join(words))
        restores.append('ct direction original ct mark & %s == %s meta mark set meta mark & %s | %s'
                        % (_hex(MARK_MASK), mark, _hex(KEEP_MASK), mark))
    return marks + restores


def _postrouting(policies):
    """The first packet of each connection of a policy, on its uplink: the conntrack mark of
    split_access's balancing goes, then SNAT or masquerade. Matched by source (and
    destination), or for a service policy by its connection mark.

    split_access gives every NEW connection from the LAN an uplink in the conntrack mark
    before routing, also one that a policy then routes by another uplink. Left there, the
    health monitor's flush of the uplink taken out would reset the policy's connections,
    which do not use it (split_access marks again by the uplink a connection really leaves
    by when no policy SNATs it)."""
    rules = []
    for policy in _by_priority(policies):
        for family in policy['families']:
            words = ['oifname "%s"' % policy['interface']]
            if policy['protocol']:
                words += ['meta nfproto %s' % family,
                          'ct mark & %s == %s' % (_hex(MARK_MASK), _hex(policy['mark'] * 256))]
            else:
                words += _addresses(policy, family)
            words.append('ct mark set ct mark & %s' % _hex(SPLIT_ACCESS_KEEP))
            if policy['snat'] == 'masquerade':
                words.append('masquerade')
            elif policy['snat']:
                words.append('snat %s to %s' % ('ip6' if family == 'ipv6' else 'ip', policy['snat']))
            rules.append(' '.join(words))
    return rules


def _nft_ruleset(policies):
    def lines(rules):
        return ''.join('\t\t%s\n' % rule for rule in rules)
    return NFT_RULESET % {'managed': MANAGED, 'table': NFT_TABLE,
                          'prerouting': lines(_prerouting(policies)), 'postrouting': lines(_postrouting(policies))}


def _rp_filter_keys(policies):
    """Loose reverse-path filtering on the uplinks of IPv4 policies: replies come back on the
    policy's uplink although the main table routes their source elsewhere. A dot in an
    interface name is a slash in a sysctl key."""
    interfaces = set(policy['interface'] for policy in policies if 'ipv4' in policy['families'])
    # (sorted ignoring case, as the role's Jinja did: the saved state keeps its order)
    interfaces = sorted(sorted(interfaces), key=str.lower)
    return ['net.ipv4.conf.%s.rp_filter' % interface.replace('.', '/') for interface in interfaces]
