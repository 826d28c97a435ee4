# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the role reply_via_same_router's variables, on the controller.

role_input checks the variables (every problem, in the order of the routers and their
fields) and turns them into the arguments of the role's one ``apply_state`` task: the
desired state (table names, default routes, rules, connmark entries, reverse-path
filters) and the checks only the router can answer (interfaces, gateways' subnets).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from collections.abc import Mapping

from ansible_collections.netpolicy.routing.plugins.plugin_utils._role_input import (
    IPV4_RE, RoleInput, host_bits_error, is_integer, is_list, is_table_id, to_int, to_str)

ROLE = 'reply_via_same_router'
ROUTERS = 'reply_via_same_router_routers'
FORWARD_INTERFACES = 'reply_via_same_router_forward_interfaces'
CONFIRM_TIMEOUT = 'reply_via_same_router_confirm_timeout'
# roles/reply_via_same_router/defaults/main.yml, for a variable not handed over.
DEFAULTS = {ROUTERS: [], FORWARD_INTERFACES: [], CONFIRM_TIMEOUT: 0}

SYSCTL_FILE = '/etc/sysctl.d/60-netpolicy-reply_via_same_router.conf'

# The role owns the mark byte 0x00ff0000 (a router's mark N is N << 16), rule
# priorities 500-999 (a router's rule is 500 + N) and, by default, tables 301, 302, ...
MARK_SHIFT = 16
MARK_MASK = 0xff0000
MAX_MARK = 255
PRIORITY_BASE = 500
PRIORITIES = '500-999'
FIRST_TABLE = 301

# Matched whole (fullmatch): a trailing newline is not part of a name or address.
IPV6_RE = re.compile(r'(([0-9a-f]{1,4}:){7}[0-9a-f]{1,4}|(([0-9a-f]{1,4}:){0,6}[0-9a-f]{1,4})?::'
                     r'(([0-9a-f]{1,4}:){0,6}[0-9a-f]{1,4})?)')
PREFIX_LENGTH_RE = re.compile(r'(0|[1-9][0-9]{0,2})')
TABLE_NAME_RE = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.-]*')
DIGITS_RE = re.compile(r'[0-9]+')
# Names iproute2 gives tables of its own, or reads as keywords.
RESERVED_NAMES = ('unspec', 'default', 'main', 'local', 'all', 'cache')
# At most 15 characters, none of them space, '/', ':', quotes or backslash.
INTERFACE_RE = re.compile(r'[^\s/:"\'\\]{1,15}')
MAC_RE = re.compile(r'[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}')
PORT_RE = re.compile(r'[0-9]{1,5}(-[0-9]{1,5})?')
PROTOCOLS = ('tcp', 'udp', 'sctp')


def role_input(variables):
    """RoleInput of the role's public variables (a variable not given has its default)."""
    routers, forward_interfaces, confirm_timeout = (
        variables.get(name, DEFAULTS[name]) for name in (ROUTERS, FORWARD_INTERFACES, CONFIRM_TIMEOUT))
    errors = input_errors(routers, forward_interfaces, confirm_timeout)
    if errors:
        return RoleInput(errors, None, None, not (is_list(routers) and routers))
    # Names and interfaces were checked as text: they go on as text (a name of true
    # passes as 'True', and the agent refuses a saved state with a bool for a name).
    routers = [dict(router, name=to_str(router['name']), interface=to_str(router['interface']))
               for router in routers]
    return RoleInput([], desired_state(routers, forward_interfaces),
                     host_checks(routers, forward_interfaces), not routers)


# ---------------------------------------------------------------- the checks of the variables

def input_errors(routers, forward_interfaces, confirm_timeout):
    """Every problem of the variables, one message each, naming the variable and item."""
    errors = []
    if not is_list(routers):
        errors.append('%s: not a list' % ROUTERS)
        routers = []
    # What the routers before the current one took: a second one is an error.
    taken = {'names': [], 'matches': [], 'marks': [], 'tables': []}
    for index, router in enumerate(routers):
        errors.extend(_router_errors(index, router, taken))
    if len(routers) > MAX_MARK:  # one mark each
        errors.append('%s: more than %d entries' % (ROUTERS, MAX_MARK))
    if not is_list(forward_interfaces):
        errors.append('%s: not a list' % FORWARD_INTERFACES)
    else:
        for index, interface in enumerate(forward_interfaces):
            if not INTERFACE_RE.fullmatch(to_str(interface)):
                errors.append('%s[%d]: not an interface name: %r' % (FORWARD_INTERFACES, index, interface))
    if to_int(confirm_timeout) < 0:
        errors.append('%s: must be 0 or more' % CONFIRM_TIMEOUT)
    return errors


def _router_errors(index, router, taken):
    if not isinstance(router, Mapping):
        return ['%s[%d]: not a dict: %r' % (ROUTERS, index, router)]
    at = '%s[%d] (%s)' % (ROUTERS, index, router.get('name', '?'))
    errors = []
    name = _required_text(router, 'name')
    if (not TABLE_NAME_RE.fullmatch(name) or DIGITS_RE.fullmatch(name) or name in RESERVED_NAMES):
        errors.append('%s.name: not a usable routing table name: %r' % (at, name))
    elif name in taken['names']:
        errors.append('%s.name: used twice' % at)
    taken['names'].append(name)

    interface = _required_text(router, 'interface')
    if not INTERFACE_RE.fullmatch(interface):
        errors.append('%s.interface: not an interface name: %r' % (at, interface))

    # A router is matched by its MAC address on the interface, an uplink by the interface alone.
    mac = router.get('mac')
    if mac is not None:
        if not MAC_RE.fullmatch(to_str(mac)):
            errors.append('%s.mac: not a MAC address (aa:bb:cc:dd:ee:ff): %r' % (at, mac))
        if router.get('gateway') is None:
            errors.append("%s.gateway: required with mac (the router's address)" % at)
        match = (interface, to_str(mac).lower())
    else:
        match = (interface, None)
    if match in taken['matches']:
        errors.append('%s: another entry already matches %s'
                      % (at, ('mac ' + match[1]) if match[1] else ('interface ' + interface)))
    taken['matches'].append(match)

    errors.extend(_gateway_errors(at, router.get('gateway'), router.get('gateway6')))
    errors.extend(_exclude_sources_errors(at, router.get('exclude_sources', [])))
    errors.extend(_services_errors(at, router.get('services', [])))
    errors.extend(_number_errors(at, router.get('mark'), 'mark', taken['marks'], _is_mark,
                                 'not a number 1..%d' % MAX_MARK))
    errors.extend(_number_errors(at, router.get('table'), 'table', taken['tables'], is_table_id,
                                 'not a table number 1..2147483647 (not 253-255)'))
    return errors


def _gateway_errors(at, gateway, gateway6):
    errors = []
    if gateway is not None and not _family(gateway):
        errors.append('%s.gateway: not an IP address: %r' % (at, gateway))
    if gateway6 is not None:
        if _family(gateway6) != 'ipv6':
            errors.append('%s.gateway6: not an IPv6 address: %r' % (at, gateway6))
        elif gateway is None or _family(gateway) != 'ipv4':
            errors.append('%s.gateway6: needs an IPv4 gateway beside it' % at)
    return errors


def _exclude_sources_errors(at, sources):
    if not is_list(sources):
        return ['%s.exclude_sources: not a list' % at]
    errors = []
    for index, source in enumerate(sources):
        problem = ('not an IP address or prefix: %r' % (source,) if not _prefix_family(source)
                   else host_bits_error(source))
        if problem:
            errors.append('%s.exclude_sources[%d]: %s' % (at, index, problem))
    return errors


def _services_errors(at, services):
    if not is_list(services):
        return ['%s.services: not a list' % at]
    errors = []
    for index, service in enumerate(services):
        if not isinstance(service, Mapping) or service.get('proto', '') not in PROTOCOLS:
            errors.append('%s.services[%d].proto: not one of %s' % (at, index, ', '.join(PROTOCOLS)))
        elif not _is_port(service.get('port', '')):
            errors.append('%s.services[%d].port: not a port (1-65535) or range (FIRST-LAST): %r'
                          % (at, index, service.get('port')))
    return errors


def _number_errors(at, number, field, taken, usable, what):
    """The error of a router's mark or table (None: not given); ``taken`` gets it."""
    if number is None:
        return []
    if not usable(number):
        error = '%s.%s: %s: %r' % (at, field, what, number)
    elif number in taken:
        error = '%s.%s: %d is used by another entry' % (at, field, number)
    else:
        error = None
    # even a bad one: a later entry with an equal value is reported as a duplicate, as before
    taken.append(number)
    return [error] if error else []


def _is_mark(value):
    return is_integer(value) and 1 <= value <= MAX_MARK


def _required_text(router, key):
    """A required field as text: '' when missing or null (null is not the name 'None')."""
    value = router.get(key)
    return '' if value is None else to_str(value)


def _family(address):
    """'ipv4' or 'ipv6' of an address written in full, else ''."""
    text = to_str(address).lower()
    if IPV4_RE.fullmatch(text):
        return 'ipv4'
    # The pattern lets through more groups than an address has: count them.
    groups = len([group for group in text.split(':') if group])
    if IPV6_RE.fullmatch(text) and groups <= (7 if '::' in text else 8):
        return 'ipv6'
    return ''


def _prefix_family(value):
    """The family of an address or ADDRESS/LENGTH, else ''."""
    parts = to_str(value).split('/')
    family = _family(parts[0])
    if len(parts) == 1:
        return family
    if (len(parts) == 2 and PREFIX_LENGTH_RE.fullmatch(parts[1])
            and to_int(parts[1]) <= (32 if family == 'ipv4' else 128)):
        return family
    return ''


def _is_port(value):
    """A port 1-65535 or a range FIRST-LAST of them (a number or its text)."""
    text = to_str(value)
    if not PORT_RE.fullmatch(text):
        return False
    ends = [to_int(end) for end in text.split('-')]
    return min(ends) >= 1 and max(ends) <= 65535 and ends[0] <= ends[-1]


# ---------------------------------------------------------------- valid variables: the arguments

def desired_state(routers, forward_interfaces):
    """apply_state's ``state``: what the role applies and saves for the agent.

    Marks and tables not given are the lowest free ones, in list order.
    """
    marks = [router['mark'] for router in routers if router.get('mark') is not None]
    tables = [router['table'] for router in routers if router.get('table') is not None]
    names, table_args, rules, entries = [], [], [], []
    for router in routers:
        mark = router.get('mark')
        if mark is None:
            mark = _lowest_free(range(1, MAX_MARK + 1), marks)
            marks.append(mark)
        table = router.get('table')
        if table is None:
            # two candidates per router: always one free
            table = _lowest_free(range(FIRST_TABLE, FIRST_TABLE + 1 + 2 * len(routers)), tables)
            tables.append(table)
        names.append({'name': router['name'], 'id': table})
        routes, families = _default_routes(router)
        table_args.append({'table': str(table), 'purge': True, 'routes': routes})
        bits = mark << MARK_SHIFT
        rules.extend({'priority': PRIORITY_BASE + mark, 'fwmark': '0x%x/0x%x' % (bits, MARK_MASK),
                      'table': str(table), 'family': family} for family in families)
        entries.extend(_connmark_entries(router, bits))
    return {
        'role': ROLE, 'version': 1,
        'rt_tables_entry': {'entries': names},
        'route_table': {'tables': table_args},
        'ip_rule': {'purge_priorities': PRIORITIES, 'rules': rules},
        'connmark_return': {'name': 'reply_via_router', 'mask': MARK_MASK, 'entries': entries,
                            'restore_on': {'output': True, 'prerouting': list(forward_interfaces)}},
        'sysctl': {'file': SYSCTL_FILE, 'values': _rp_filters(routers)},
    }


def _lowest_free(candidates, taken):
    return min(number for number in candidates if number not in taken)


def _default_routes(router):
    """The routes of a router's table and the families of its rules: a default route by each
    gateway, or one by the interface alone (a point-to-point uplink, IPv4)."""
    gateways = [gateway for gateway in (router.get('gateway'), router.get('gateway6')) if gateway is not None]
    if not gateways:
        return [{'dest': 'default', 'dev': router['interface']}], ['ipv4']
    routes = [{'dest': 'default', 'gateway': gateway, 'dev': router['interface']} for gateway in gateways]
    return routes, ['ipv6' if ':' in to_str(gateway) else 'ipv4' for gateway in gateways]


def _connmark_entries(router, bits):
    """The router's connmark_return entries: one per service, or one for every connection."""
    match = {'mark': bits, 'in_interface': router['interface'],
             'exclude_source': list(router.get('exclude_sources', []))}
    if router.get('mac') is not None:
        match['source_mac'] = to_str(router['mac']).lower()
    services = router.get('services', [])
    if not services:
        return [match]
    return [dict(match, exclude_source=list(match['exclude_source']), protocol=service['proto'],
                 dport=service['port']) for service in services]


def _rp_filters(routers):
    """{sysctl: '2'}: loose reverse-path filtering on the interfaces of uplinks (matched by
    interface, no MAC): connections arrive on them from sources the main table routes by
    another interface, which strict filtering would drop. A VLAN's dot is a slash in a sysctl name.
    """
    interfaces = set(to_str(router['interface']).replace('.', '/')
                     for router in routers if router.get('mac') is None)
    return dict(('net.ipv4.conf.%s.rp_filter' % interface, '2') for interface in sorted(interfaces))


# ---------------------------------------------------------------- what only the router can tell

def host_checks(routers, forward_interfaces):
    """apply_state's ``checks``: the interfaces exist, each gateway is on its interface's subnet."""
    checks = [{'field': '%s[%d] (%s).interface' % (ROUTERS, index, router['name']), 'interface': router['interface']}
              for index, router in enumerate(routers)]
    checks.extend({'field': '%s[%d]' % (FORWARD_INTERFACES, index), 'interface': interface}
                  for index, interface in enumerate(forward_interfaces))
    for index, router in enumerate(routers):
        checks.extend({'field': '%s[%d] (%s).%s' % (ROUTERS, index, router['name'], key),
                       'gateway': router[key], 'interface': router['interface']}
                      for key in ('gateway', 'gateway6') if router.get(key) is not None)
    return checks
