# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the split_access role's variables, checked and
turned into apply_state's ``state`` and ``checks`` on the controller.

The uplinks get their defaults filled in (table 101, 102, ..., mark 1, 2, ...,
weight 1), every problem of the variables is named, and the desired state is
built: table names, one default route per uplink table plus the main table's
(multipath) default, the fwmark and source-address rules, the sysctls and the
nftables rule set that balances new LAN connections over the uplinks by weight.
With no uplink, the state removes what the role put on the router.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import re

from ansible_collections.netpolicy.routing.plugins.plugin_utils._role_input import (
    IPV4_RE, MANAGED, RoleInput, is_list, is_table_id, or_default, to_int, to_str)

# defaults/main.yml: what a variable is when the play does not give it.
MONITOR_DEFAULTS = {'enabled': False, 'targets': {}, 'probe': 'icmp', 'interval': 0.5, 'down': 3, 'up': 3}
DEFAULTS = {
    'split_access_lan_interfaces': [],
    'split_access_uplinks': [],
    'split_access_balance': 'per_connection',
    'split_access_port_forwards': [],
    'split_access_monitor': MONITOR_DEFAULTS,
    'split_access_confirm_timeout': 0,
    'split_access_persist': True,
}

# The values of split_access_balance (its argument spec's choices).
BALANCES = ('per_connection', 'multipath', 'failover')
# The role owns the byte 0x000000ff of the packet and conntrack marks; the rest is kept.
MASK = 0xff
KEEP = 0xffffffff - MASK
# Rule priorities: main without its default routes first, then the fwmark rules,
# then the source-address rules, each 0..99 by the uplink's place in the list.
# The replies of port forwards come before everything else of the collection's
# (400-499, before reply_via_same_router's 500-999 and source policies' 1000-1999):
# a forwarded connection can only be answered by the uplink it came in on.
PRIORITY_RANGE = '400-499,3000-3999'
PRIORITY_FORWARD_REPLIES = 400
PRIORITY_MAIN = 3000
PRIORITY_FWMARK = 3100
PRIORITY_FROM = 3200
MAX_UPLINKS = 100

NFT_TABLE = 'inet netpolicy_split_access'
NFT_PATH = '/etc/netpolicy/routing/split_access.nft'
SYSCTL_PATH = '/etc/sysctl.d/60-netpolicy-split_access.conf'
# Always on: forwarding, the fwmark seen by the source check, and an L4 hash of the multipath route.
SYSCTLS = [('net.ipv4.ip_forward', 1), ('net.ipv4.conf.all.src_valid_mark', 1),
           ('net.ipv4.fib_multipath_hash_policy', 1)]

# Matched whole (fullmatch): a trailing newline is not part of a name or address.
NAME_RE = re.compile(r'[A-Za-z][A-Za-z0-9_]{0,30}')
IFNAME_RE = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.:-]{0,14}')
PROBE_RE = re.compile(r'(icmp|tcp:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]'
                      r'|6553[0-5]))')
RESERVED_NAMES = ('main', 'local', 'default', 'unspec', 'all', 'cache')
# The duplicates of these fields among the uplinks are refused, in this order.
UNIQUE_FIELDS = ('name', 'interface', 'table', 'mark')
# Ansible's ``bool`` filter: these strings (any case), and ints by their text.
TRUE_WORDS = ('yes', 'on', 'true', '1')
FALSE_WORDS = ('no', 'off', 'false', '0')


def role_input(variables):
    """RoleInput of the role's public variables (``split_access_*``, by name)."""
    given = dict(DEFAULTS)
    given.update(variables)
    errors = []  # in the order of the variables, as the role's checks gave them
    lan_interfaces = _a_list(given, 'split_access_lan_interfaces', errors)
    uplinks = [_uplink(index, item) for index, item in
               enumerate(_a_list(given, 'split_access_uplinks', errors) or [])]
    names = [uplink['name'] for uplink in uplinks]
    errors.extend(_uplink_errors(uplinks, lan_interfaces))
    # Port forwards count only with uplinks (without, there is nothing to forward on).
    forwards = []
    if uplinks:
        forwards = [_forward(item, uplinks) for item in
                    (_a_list(given, 'split_access_port_forwards', errors) or [])]
        errors.extend(_forward_errors(forwards, names))
    monitor = _monitor(given['split_access_monitor'])
    errors.extend(_monitor_errors(given['split_access_monitor'], monitor, names))
    if _to_bool(monitor['enabled']) and not _to_bool(given['split_access_persist']):
        # the agent runs the monitor from the saved state, which persist false removes
        errors.append('split_access_monitor.enabled: needs split_access_persist (the agent runs the monitor '
                      'from the saved state)')
    errors.extend(_timeout_errors(given['split_access_confirm_timeout']))
    if given['split_access_balance'] not in BALANCES:
        errors.append('split_access_balance: not one of %s: %r' % (', '.join(BALANCES), given['split_access_balance']))
    if errors:
        return RoleInput(errors, None, None, not uplinks)

    checks = _checks(lan_interfaces, uplinks, forwards)
    if not uplinks:
        return RoleInput([], _removed_state(), checks, True)
    balance = given['split_access_balance']
    return RoleInput([], _state(uplinks, lan_interfaces, balance, forwards, monitor), checks, False)


# ---------------------------------------------------------------- the variables, filled in

def _a_list(given, name, errors):
    """The list variable ``name``, or None: anything else is an error (the Jinja went over a
    string's characters or a dict's keys, and failed on the rest)."""
    value = given[name]
    if is_list(value):
        return list(value)
    errors.append('%s: not a list: %r' % (name, value))
    return None


def _text(item, key):
    """A text field of an item: '' when missing or null (the item may be no dict at all)."""
    value = item.get(key) if isinstance(item, dict) else None
    return '' if value is None else to_str(value)


def _optional_text(item, key):
    """An optional text field: '' when missing or false ('' , 0, [] ...), as ``default('', true)``."""
    value = item.get(key) if isinstance(item, dict) else None
    return to_str(or_default(value, ''))


def _number(item, key, default):
    """An int field: ``default`` when missing or null, else what ``| int`` reads (0 for junk)."""
    value = item.get(key) if isinstance(item, dict) else None
    return default if value is None else to_int(value)


def _uplink(index, item):
    """An uplink with every default filled in; also what the agent's saved state holds."""
    return {
        'index': index,
        'name': _text(item, 'name'),
        'interface': _text(item, 'interface'),
        'gateway': _optional_text(item, 'gateway'),
        'address': _optional_text(item, 'address'),
        'table': _number(item, 'table', 101 + index),
        'mark': _number(item, 'mark', 1 + index),
        'weight': _number(item, 'weight', 1),
    }


def _forward(item, uplinks):
    """A port forward with its defaults (tcp, to_port = port, every uplink) and the
    interfaces of its uplinks."""
    field = item.get if isinstance(item, dict) else {}.get
    port = field('port', 0)
    names = field('uplinks')
    if names is None:
        names = [uplink['name'] for uplink in uplinks]
    return {
        'proto': or_default(field('proto'), 'tcp'),
        'port': to_int(port),
        'to': _text(item, 'to'),
        'to_port': to_int(or_default(field('to_port'), port)),
        'uplinks': names,
        # (uplinks that are no list: an error, and no interface)
        'interfaces': [uplink['interface'] for uplink in uplinks
                       if is_list(names) and uplink['name'] in names],
    }


def _monitor(value):
    """The monitor's options over their defaults; a dict given in part keeps the other defaults."""
    monitor = copy.deepcopy(MONITOR_DEFAULTS)
    if isinstance(value, dict):
        monitor.update(value)
    return monitor


# ---------------------------------------------------------------- the checks of the variables

def _uplink_errors(uplinks, lan_interfaces):
    """The uplinks' problems; ``lan_interfaces`` is None when it is no list (reported)."""
    errors = []
    if uplinks and lan_interfaces == []:
        errors.append('split_access_lan_interfaces: at least one LAN interface is needed')
    for uplink in uplinks:
        errors.extend(_one_uplink_errors(uplink, uplinks[:uplink['index']], lan_interfaces or []))
    if len(uplinks) > MAX_UPLINKS:
        errors.append('split_access_uplinks: at most %d uplinks' % MAX_UPLINKS)
    return errors


def _one_uplink_errors(uplink, earlier, lan_interfaces):
    where = 'split_access_uplinks[%d] (%s)' % (uplink['index'], uplink['name'])
    errors = []
    name, interface = uplink['name'], uplink['interface']
    if not NAME_RE.fullmatch(name):
        errors.append('%s.name: not a name (a letter, then letters, digits or _, at most 31): %r' % (where, name))
    if name in RESERVED_NAMES:
        errors.append('%s.name: a reserved routing table name: %r' % (where, name))
    if not interface:
        errors.append('%s.interface: required' % where)
    elif not IFNAME_RE.fullmatch(interface):
        errors.append('%s.interface: not an interface name: %r' % (where, interface))
    elif interface in lan_interfaces:
        errors.append('%s.interface: %r is a LAN interface' % (where, interface))
    for field in ('gateway', 'address'):
        if uplink[field] and not IPV4_RE.fullmatch(uplink[field]):
            errors.append('%s.%s: not an IPv4 address: %r' % (where, field, uplink[field]))
    if not is_table_id(uplink['table']):
        errors.append('%s.table: not a usable table number (1..2147483647, not 253-255): %d'
                      % (where, uplink['table']))
    if not 1 <= uplink['mark'] <= MASK:
        errors.append('%s.mark: not 1..255: %d' % (where, uplink['mark']))
    # nftables' numgen map gets one slot per unit of weight.
    if not 1 <= uplink['weight'] <= 256:
        errors.append('%s.weight: not 1..256: %d' % (where, uplink['weight']))
    for field in UNIQUE_FIELDS:
        if uplink[field] in [other[field] for other in earlier]:
            errors.append('%s.%s: the same as an earlier uplink: %r' % (where, field, uplink[field]))
    return errors


def _forward_errors(forwards, names):
    errors = []
    seen = set()  # proto/port/uplink: each forwarded once
    for index, forward in enumerate(forwards):
        where = 'split_access_port_forwards[%d]' % index
        if forward['proto'] not in ('tcp', 'udp'):
            errors.append('%s.proto: not tcp or udp: %r' % (where, forward['proto']))
        for field in ('port', 'to_port'):
            if not 1 <= forward[field] <= 65535:
                errors.append('%s.%s: not a port (1..65535): %r' % (where, field, forward[field]))
        if not IPV4_RE.fullmatch(forward['to']):
            errors.append('%s.to: not an IPv4 address: %r' % (where, forward['to']))
        if not isinstance(forward['uplinks'], list):
            errors.append('%s.uplinks: not a list: %r' % (where, forward['uplinks']))
            continue
        if not forward['uplinks']:
            errors.append('%s.uplinks: no uplink' % where)
        for number, name in enumerate(forward['uplinks']):
            if name not in names:
                errors.append('%s.uplinks[%d]: not an uplink of split_access_uplinks: %r' % (where, number, name))
            key = '%s/%s/%s' % (forward['proto'], forward['port'], name)
            if key in seen:
                errors.append('%s: %s port %s on %s is forwarded twice'
                              % (where, forward['proto'], forward['port'], name))
            seen.add(key)
    return errors


def _monitor_errors(given, monitor, names):
    if given and not isinstance(given, dict):
        return ['split_access_monitor: not a dict: %r' % (given,)]
    errors = []
    targets = or_default(monitor['targets'], {})
    if not isinstance(targets, dict):
        errors.append('split_access_monitor.targets: not a dict: %r' % (targets,))
        targets = {}
    for name, addresses in targets.items():
        if name not in names:
            errors.append('split_access_monitor.targets.%s: not an uplink of split_access_uplinks' % (name,))
        # one address may be given without a list (a dict: its keys, as Jinja iterates it)
        if isinstance(addresses, str) or not _iterable(addresses):
            addresses = [addresses]
        for number, address in enumerate(addresses):
            if not IPV4_RE.fullmatch(to_str(address)):
                errors.append('split_access_monitor.targets.%s[%d]: not an IPv4 address: %r' % (name, number, address))
    if _to_bool(monitor['enabled']) and not monitor['targets']:
        errors.append('split_access_monitor.targets: needed when the monitor is enabled')
    if not PROBE_RE.fullmatch(to_str(monitor['probe'])):
        errors.append('split_access_monitor.probe: not icmp or tcp:PORT: %r' % (monitor['probe'],))
    if _to_float(monitor['interval']) <= 0:
        errors.append('split_access_monitor.interval: not more than 0: %r' % (monitor['interval'],))
    for field in ('down', 'up'):
        if to_int(monitor[field]) < 1:
            errors.append('split_access_monitor.%s: not 1 or more: %r' % (field, monitor[field]))
    return errors


def _timeout_errors(timeout):
    # An infinite one ('1e999' too) is no int: 0 for to_int, an exception for Jinja's int.
    if abs(_to_float(timeout)) == float('inf'):
        return ['split_access_confirm_timeout: not a number of seconds: %r' % (timeout,)]
    if to_int(timeout) < 0:
        return ['split_access_confirm_timeout: not 0 or more: %r' % (timeout,)]
    return []


def _iterable(value):
    try:
        iter(value)
    except TypeError:
        return False
    return True


def _to_bool(value):
    """Ansible's ``bool`` filter (without its deprecation warning for other values)."""
    if isinstance(value, str):
        value = value.lower()
    elif isinstance(value, int):  # True and False too
        value = str(value).lower()
    try:
        if value in TRUE_WORDS:
            return True
        if value in FALSE_WORDS:
            return False
    except TypeError:
        return False
    return value == 1


def _to_float(value):
    """Jinja's ``float`` filter; a number too big for a float is 0.0 (there, an exception)."""
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0


# ---------------------------------------------------------------- what only the router can tell

def _checks(lan_interfaces, uplinks, forwards):
    """apply_state's checks before it changes anything: the interfaces exist, the LAN has
    IPv4 subnets, and every forward points into them."""
    checks = [{'field': 'split_access_lan_interfaces[%d]' % index, 'interface': interface, 'ipv4': True}
              for index, interface in enumerate(lan_interfaces)]
    checks.extend({'field': 'split_access_uplinks[%d] (%s).interface' % (uplink['index'], uplink['name']),
                   'interface': uplink['interface']} for uplink in uplinks)
    checks.extend({'field': 'split_access_port_forwards[%d].to' % index, 'host_of': forward['to'],
                   'interfaces': lan_interfaces} for index, forward in enumerate(forwards))
    return checks


# ---------------------------------------------------------------- the state

def _removed_state():
    """No uplink: the role's rules, nftables table and sysctls go (and what the last run's
    saved state names: see the module)."""
    return {
        'ip_rule': {'rules': [], 'purge_priorities': PRIORITY_RANGE},
        'nftables': {'table': NFT_TABLE, 'file': NFT_PATH, 'content': None},
        'sysctl': {'file': SYSCTL_PATH, 'values': {}},
    }


def _state(uplinks, lan_interfaces, balance, forwards, monitor):
    """The module's state, also the agent's saved state."""
    return {
        'role': 'split_access',
        'version': 1,
        'uplinks': uplinks,
        'lan_interfaces': lan_interfaces,
        'balance': balance,
        'port_forwards': forwards,
        'monitor': monitor,
        'rt_tables_entry': {'entries': [{'name': uplink['name'], 'id': uplink['table']} for uplink in uplinks]},
        'route_table': {'tables': _tables(uplinks, balance)},
        'ip_rule': {'rules': _rules(uplinks, forwards), 'purge_priorities': PRIORITY_RANGE},
        # For the uplinks with a dynamic address: the agent adds their source-address rules.
        'address_rules': [{'interface': uplink['interface'], 'priority': PRIORITY_FROM + uplink['index'],
                           'table': str(uplink['table']), 'family': 'ipv4'}
                          for uplink in uplinks if not uplink['address']],
        'nftables': {'table': NFT_TABLE, 'file': NFT_PATH,
                     'content': _nft_rule_set(uplinks, lan_interfaces, _slots(uplinks, balance), forwards)},
        'sysctl': {'file': SYSCTL_PATH, 'values': _sysctls(uplinks)},
    }


def _uplink_route(uplink):
    route = {'dest': 'default', 'dev': uplink['interface']}
    if uplink['gateway']:
        route['gateway'] = uplink['gateway']
    return route


def _main_default(uplinks, balance):
    """The router's own default route: weighted multipath over the uplinks with a gateway
    (failover: the first uplink only)."""
    routed = uplinks[:1] if balance == 'failover' else uplinks
    gateways = [uplink for uplink in routed if uplink['gateway']]
    if len(gateways) > 1:
        return {'dest': 'default', 'nexthops': [
            {'gateway': uplink['gateway'], 'dev': uplink['interface'], 'weight': uplink['weight']}
            for uplink in gateways]}
    if gateways:
        return {'dest': 'default', 'gateway': gateways[0]['gateway'], 'dev': gateways[0]['interface']}
    if routed:
        return {'dest': 'default', 'dev': routed[0]['interface']}
    return {}


def _tables(uplinks, balance):
    tables = [{'table': str(uplink['table']), 'routes': [_uplink_route(uplink)], 'purge': True, 'family': 'ipv4'}
              for uplink in uplinks]
    tables.append({'table': 'main', 'routes': [_main_default(uplinks, balance)], 'family': 'ipv4'})
    return tables


def _rules(uplinks, forwards):
    rules = _forward_reply_rules(uplinks, forwards)
    rules.append({'priority': PRIORITY_MAIN, 'table': 'main', 'suppress_prefixlength': 0, 'family': 'ipv4'})
    rules.extend({'priority': PRIORITY_FWMARK + uplink['index'], 'fwmark': '%#x/%#x' % (uplink['mark'], MASK),
                  'table': str(uplink['table']), 'family': 'ipv4'} for uplink in uplinks)
    rules.extend({'priority': PRIORITY_FROM + uplink['index'], 'from': uplink['address'],
                  'table': str(uplink['table']), 'family': 'ipv4'} for uplink in uplinks if uplink['address'])
    return rules


def _forward_reply_rules(uplinks, forwards):
    """The replies of each port forward leave by the uplink the connection came in on (its
    conntrack mark), before any source policy for the forward's host could route them
    elsewhere. Matched by the host, protocol and port they are sent from, so the host's own
    connections are still routed by its policy."""
    rules = []
    for uplink in uplinks:
        for forward in forwards:
            rule = {'priority': PRIORITY_FORWARD_REPLIES + uplink['index'], 'from': forward['to'],
                    'ipproto': forward['proto'], 'sport': str(forward['to_port']),
                    'fwmark': '%#x/%#x' % (uplink['mark'], MASK), 'table': str(uplink['table']), 'family': 'ipv4'}
            # two forwards to one port of the host (from two ports of the uplink) share a rule
            if uplink['name'] in forward['uplinks'] and rule not in rules:
                rules.append(rule)
    return rules


def _sysctls(uplinks):
    values = dict(SYSCTLS)
    for uplink in uplinks:
        # sysctl's dotted key writes a VLAN's dot as a slash
        values['net.ipv4.conf.%s.rp_filter' % uplink['interface'].replace('.', '/')] = 2
    return values


# ---------------------------------------------------------------- the nftables rule set

def _slots(uplinks, balance):
    """The marks new LAN connections take in turn: one slot per unit of weight
    (per_connection), the first uplink's (failover), none (multipath: the route decides)."""
    if balance == 'per_connection':
        return [uplink['mark'] for uplink in uplinks for _unit in range(uplink['weight'])]
    if balance == 'failover':
        return [uplinks[0]['mark']]
    return []


def _set_mark(mark):
    return 'meta mark set meta mark & %#x | %#x' % (KEEP, mark)


def _interface_set(interfaces):
    # as JSON strings (the Jinja's to_json): quoted, escaped
    return ', '.join(json.dumps(interface, default=str) for interface in interfaces)


def _nft_rule_set(uplinks, lan_interfaces, slots, forwards):
    """The rule set file's content: table inet netpolicy_split_access replaced in one transaction."""
    lines = [
        '# ' + MANAGED,
        '# netpolicy.routing.split_access: replaces table %s in one transaction.' % NFT_TABLE,
        'table %s {}' % NFT_TABLE,
        'delete table %s' % NFT_TABLE,
        'table %s {' % NFT_TABLE,
    ]
    for uplink in uplinks:
        lines.extend([
            '\tchain uplink_%d {' % uplink['mark'],
            '\t\tcounter comment "new connections given to %s"' % uplink['name'],
            '\t\tct mark set ct mark & %#x | %#x' % (KEEP, uplink['mark']),
            '\t\t' + _set_mark(uplink['mark']),
            '\t}',
        ])
    lines.extend([
        '\t# A NEW connection from the LAN gets its uplink here: by weight',
        '\t# (per_connection) or the first (failover). When the agent\'s health monitor',
        '\t# takes an uplink out, it replaces this chain\'s rule with one over the live',
        '\t# uplinks (and puts it back when the uplink returns).',
        '\tchain balance {',
    ])
    if len(slots) == 1:
        lines.append('\t\tjump uplink_%d' % slots[0])
    elif slots:
        lines.append('\t\tnumgen inc mod %d vmap { %s }' % (len(slots), ', '.join(
            '%d : jump uplink_%d' % (slot, mark) for slot, mark in enumerate(slots))))
    lines.extend([
        '\t}',
        '\t# Packets from the LAN: the connection\'s uplink is copied onto the packet',
        '\t# (routed by the fwmark rules); a NEW connection is given an uplink first.',
        '\t# Nothing else needs the mark: what arrives on an uplink goes to the LAN',
        '\t# or to the router itself.',
        '\tchain from_lan {',
    ])
    restore = ['\t\tct mark & %#x == %#x %s' % (MASK, uplink['mark'], _set_mark(uplink['mark'])) for uplink in uplinks]
    lines.extend(restore)
    if slots:
        lines.append('\t\tmeta nfproto ipv4 ct state new ct mark & %#x == 0 jump balance' % MASK)
    lines.extend([
        '\t}',
        '\tchain prerouting {',
        '\t\ttype filter hook prerouting priority mangle; policy accept;',
        '\t\tiifname { %s } jump from_lan' % _interface_set(lan_interfaces),
    ])
    # connections coming in on an uplink (port forwards, the router's own services) keep it
    lines.extend('\t\tiifname "%s" ct state new ct mark & %#x == 0 jump uplink_%d'
                 % (uplink['interface'], MASK, uplink['mark']) for uplink in uplinks)
    lines.extend([
        '\t}',
        '\tchain output {',
        '\t\ttype route hook output priority mangle; policy accept;',
    ])
    lines.extend(restore)
    lines.extend([
        '\t}',
        '\tchain dstnat {',
        '\t\ttype nat hook prerouting priority dstnat; policy accept;',
    ])
    lines.extend('\t\tiifname { %s } meta nfproto ipv4 fib daddr type local %s dport %d dnat ip to %s:%d'
                 % (_interface_set(forward['interfaces']), forward['proto'], forward['port'], forward['to'],
                    forward['to_port']) for forward in forwards)
    lines.extend([
        '\t}',
        '\t# Run for the first packet of each connection only. One that leaves by an uplink',
        '\t# without having been given one (multipath, the router\'s own) keeps the uplink',
        '\t# its route chose: a later change of the routes does not move it.',
        '\tchain srcnat {',
        '\t\ttype nat hook postrouting priority srcnat; policy accept;',
    ])
    lines.extend('\t\tmeta nfproto ipv4 oifname "%s" ct mark & %#x == 0 ct mark set ct mark & %#x | %#x'
                 % (uplink['interface'], MASK, KEEP, uplink['mark']) for uplink in uplinks)
    for uplink in uplinks:
        if uplink['address']:
            lines.append('\t\tmeta nfproto ipv4 oifname "%s" snat ip to %s' % (uplink['interface'], uplink['address']))
        else:
            lines.append('\t\tmeta nfproto ipv4 oifname "%s" masquerade' % uplink['interface'])
    lines.extend(['\t}', '}'])
    return '\n'.join(lines) + '\n'
