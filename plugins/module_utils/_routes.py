# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the routes of routing tables (module route_table).

A route is a plain dict with every attribute the kernel keeps filled in
(kernel defaults included), so routes read from the kernel and routes asked
for compare with ``==``:

    family   'ipv4' | 'ipv6'
    table    table id
    dest     'default' or a canonical CIDR
    tos      0 (not an option; part of the kernel's identity of a route)
    metric   kernel default filled in: 0 (IPv4), 1024 (IPv6)
    type     unicast | blackhole | unreachable | prohibit | throw
    gateway, dev, src    text or None
    scope    global | site | link | host (IPv6: always global)
    proto    a name of /etc/iproute2/rt_protos or a number; default boot, as iproute2
    onlink   bool
    nexthops None, or a sorted tuple of (gateway, dev, weight) for a multipath route

Identity (``key``) is the kernel's: family, table, dest, tos, metric.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import functools
import hashlib
import ipaddress
import json
import operator
import os
import socket
import struct
import sys

from ansible_collections.netpolicy.routing.plugins.module_utils._bytecode_cache import private_directory
from ansible_collections.netpolicy.routing.plugins.module_utils._engine import (
    ADD, DELETE, ApplyError, InputError, Kind, build_plan, execute, merge_plans, quoted)
from ansible_collections.netpolicy.routing.plugins.module_utils import _engine
from ansible_collections.netpolicy.routing.plugins.module_utils import _lock
from ansible_collections.netpolicy.routing.plugins.module_utils import _netlink
from ansible_collections.netpolicy.routing.plugins.module_utils import _rt_tables
from ansible_collections.netpolicy.routing.plugins.module_utils import _spec
from ansible_collections.netpolicy.routing.plugins.module_utils._module import NETNS_SPEC
from ansible_collections.netpolicy.routing.plugins.module_utils._rt_tables import (
    resolve_table, table_names, write_atomically)
from ansible_collections.netpolicy.routing.plugins.module_utils._spec import check_params

FAMILIES = ('ipv4', 'ipv6')
AF = {'ipv4': socket.AF_INET, 'ipv6': socket.AF_INET6}
FAMILY_OF_AF = {socket.AF_INET: 'ipv4', socket.AF_INET6: 'ipv6'}
DEFAULT_METRIC = {'ipv4': 0, 'ipv6': 1024}

TYPES = {'unicast': 1, 'blackhole': 6, 'unreachable': 7, 'prohibit': 8, 'throw': 9}
TYPE_NAMES = dict((number, name) for name, number in TYPES.items())
SCOPES = {'global': 0, 'site': 200, 'link': 253, 'host': 254}
SCOPE_NAMES = dict((number, name) for name, number in SCOPES.items())
RT_SCOPE_NOWHERE = 255
# iproute2's rt_protos names (the numbers are fixed by the kernel and iproute2).
PROTOS = {'redirect': 1, 'kernel': 2, 'boot': 3, 'static': 4, 'gated': 8, 'ra': 9, 'mrt': 10,
          'zebra': 11, 'bird': 12, 'dnrouted': 13, 'xorp': 14, 'ntk': 15, 'dhcp': 16,
          'keepalived': 18, 'babel': 42, 'openr': 99, 'bgp': 186, 'isis': 187, 'ospf': 188,
          'rip': 189, 'eigrp': 192}
PROTO_NAMES = dict((number, name) for name, number in PROTOS.items())
DEFAULT_PROTO = 'boot'
RTNH_F_ONLINK = 4
# The kernel's own table of local and broadcast addresses: never managed here.
LOCAL_TABLE = 255
MAX_METRIC = 4294967295

NEXTHOP_OPTIONS = dict(
    gateway=dict(type='str'),
    dev=dict(type='str'),
    weight=dict(type='int', default=1),
)
ROUTE_OPTIONS = dict(
    dest=dict(type='str', required=True),
    gateway=dict(type='str'),
    dev=dict(type='str'),
    src=dict(type='str'),
    metric=dict(type='int'),
    type=dict(type='str', default='unicast', choices=sorted(TYPES)),
    scope=dict(type='str', choices=sorted(SCOPES)),
    onlink=dict(type='bool', default=False),
    proto=dict(type='str', default=DEFAULT_PROTO),
    family=dict(type='str', choices=list(FAMILIES)),
    nexthops=dict(type='list', elements='dict', options=NEXTHOP_OPTIONS),
)
TABLE_OPTIONS = dict(
    table=dict(type='str', required=True),
    # raw: a route is a dict or a string (parse_route_text); change() checks each
    # one itself, so Ansible does not validate 10,000 dicts (see docs/performance.md).
    routes=dict(type='list', elements='raw', default=[], options=ROUTE_OPTIONS),
    state=dict(type='str', choices=['present', 'absent']),
    purge=dict(type='bool', default=False),
    copy_from=dict(type='str'),
    copy_exclude=dict(type='list', elements='str', default=[]),
    family=dict(type='str', choices=list(FAMILIES)),
)
ROUTE_TABLE_SPEC = dict(
    table=dict(type='str'),
    routes=dict(type='list', elements='raw', options=ROUTE_OPTIONS),
    state=dict(type='str', default='present', choices=['present', 'absent']),
    purge=dict(type='bool'),
    copy_from=dict(type='str'),
    copy_exclude=dict(type='list', elements='str'),
    family=dict(type='str', choices=list(FAMILIES)),
    tables=dict(type='list', elements='dict', options=TABLE_OPTIONS),
)
ROUTE_TABLE_SPEC.update(NETNS_SPEC)
ROUTE_TABLE_MODULE_ARGS = dict(
    argument_spec=ROUTE_TABLE_SPEC,
    mutually_exclusive=[('tables', name) for name in ('table', 'routes', 'purge', 'copy_from', 'copy_exclude')],
    required_one_of=[('table', 'tables')],
    required_by={'copy_exclude': 'copy_from'},
    supports_check_mode=True,
)


# ---------------------------------------------------------------- input

class _Addresses:
    """Parses addresses and prefixes, remembering the ones seen (10,000 routes share few gateways)."""

    def __init__(self):
        self.seen = {}

    def address(self, text, field):
        found = self.seen.get(('a', text))
        if found is None:
            try:
                value = ipaddress.ip_address(str(text).strip())
            except ValueError:
                raise InputError(field, 'not an IP address: %r' % (text,))
            found = self.seen[('a', text)] = ('ipv%d' % value.version, str(value))
        return found

    def prefix(self, text, field):
        """(family or None for a bare 'default', canonical dest)."""
        found = self.seen.get(('p', text))
        if found is None:
            value = str(text).strip()
            if value == 'default':
                return None, 'default'
            found = _ipv4_prefix(value)
            if found is not None:
                self.seen[('p', text)] = found
                return found
            try:
                network = ipaddress.ip_network(value, strict=True)
            except ValueError as exc:
                if 'host bits set' in str(exc):
                    raise InputError(field, 'prefix %r has host bits set (did you mean %s?)'
                                     % (text, ipaddress.ip_network(value, strict=False)))
                raise InputError(field, 'not an IP address or prefix: %r' % (text,))
            family = 'ipv%d' % network.version
            found = (family, 'default' if network.prefixlen == 0 else str(network))
            self.seen[('p', text)] = found
        return found


# The canonical IPv4 prefix lengths, and the host bits of each.
_IPV4_LENGTHS = dict((str(bits), bits) for bits in range(33))
_IPV4_HOST_BITS = [(1 << (32 - bits)) - 1 for bits in range(33)]


def _ipv4_prefix(text):
    """(family, dest) of a canonical IPv4 prefix without the cost of ipaddress, else None."""
    address, length = text.partition('/')[::2]
    bits = _IPV4_LENGTHS.get(length)
    if bits is None:
        return None
    try:
        packed = socket.inet_pton(socket.AF_INET, address)  # refuses leading zeros, as canonical text has none
    except (OSError, socket.error):
        return None
    if int.from_bytes(packed, 'big') & _IPV4_HOST_BITS[bits]:
        return None  # host bits set: ipaddress says what is wrong
    return 'ipv4', 'default' if bits == 0 else text


def _proto(value, field):
    text = str(value).strip()
    if text in PROTOS:
        return text
    try:
        number = int(text, 0)
    except ValueError:
        raise InputError(field, 'unknown route protocol %r: use a number 0..255 or one of %s'
                         % (value, ', '.join(sorted(PROTOS))))
    if not 0 <= number <= 255:
        raise InputError(field, 'route protocol %d is out of range 0..255' % number)
    return PROTO_NAMES.get(number, str(number))


def _proto_number(name):
    return PROTOS[name] if name in PROTOS else int(name)


def _hop_order(hop):
    """A multipath route's nexthops (gateway, dev, weight) in one order, wherever they come
    from; a nexthop may lack its gateway (a point-to-point link) or its dev."""
    gateway, dev, weight = hop
    return (gateway or '', dev or '', weight)


def default_scope(route):
    if route['family'] == 'ipv6':
        return 'global'
    if route['type'] == 'unicast' and route['gateway'] is None and route['nexthops'] is None:
        return 'link'
    return 'global'


# ---------------------------------------------------------------- the string form

# Words of a route that take one value, with the option each one gives.
ROUTE_WORDS = {'via': 'gateway', 'dev': 'dev', 'src': 'src', 'metric': 'metric', 'proto': 'proto', 'scope': 'scope'}
NEXTHOP_WORDS = {'via': 'gateway', 'dev': 'dev', 'weight': 'weight'}
_NOT_A_DEST = set(ROUTE_WORDS) | set(FAMILIES) | set(TYPES) | set(('nexthop', 'onlink', 'table'))


def _lead_words(words):
    """(family word, type word, index of the destination) of the words of a route; None for a word not given."""
    family = route_type = None
    position = 0
    if position < len(words) and words[position] in FAMILIES:
        family = words[position]
        position += 1
    if position < len(words) and words[position] in TYPES:
        route_type = words[position]
        position += 1
    return family, route_type, position


def parse_route_text(text, field):
    """The options of one route given as a string in iproute2's words.

        [ipv4|ipv6] [TYPE] DEST [via ADDRESS] [dev IFNAME] [src ADDRESS] [metric NUMBER]
            [proto PROTO] [scope SCOPE] [onlink] [nexthop via ADDRESS [dev IFNAME] [weight NUMBER] [onlink]]...

    The words between DEST and the first nexthop come in any order. The result
    is what the dict form gives (route_options then checks both alike); only the
    grammar is checked here. ``field`` names the route in errors.
    """
    words = text.split()

    def fail(message):
        raise InputError(field, '%s in route %s' % (message, quoted(text)))

    family, route_type, position = _lead_words(words)
    if position == len(words):
        fail('no destination')
    if words[position] in _NOT_A_DEST:
        fail('no destination before %r' % words[position])
    spec = {'dest': words[position]}
    if family:
        spec['family'] = family
    if route_type:
        spec['type'] = route_type
    position += 1
    hops, hop_onlink = [], []
    while position < len(words):
        word = words[position]
        position += 1
        if word == 'nexthop':
            hop, onlink, where = {}, False, ' (nexthop %d)' % (len(hops) + 1)
            while position < len(words) and words[position] != 'nexthop':
                if words[position] == 'onlink':
                    onlink = True
                    position += 1
                elif words[position] not in NEXTHOP_WORDS and words[position] in ROUTE_WORDS:
                    fail('%r after a nexthop (route words come before the first nexthop)' % words[position])
                else:
                    position = _take_value(hop, NEXTHOP_WORDS, words, position, fail, where)
            if 'gateway' not in hop and 'dev' not in hop:
                fail('no via or dev%s' % where)
            hops.append(hop)
            hop_onlink.append(onlink)
        elif word == 'onlink':
            spec['onlink'] = True
        elif word == 'table':
            fail("'table' is not a word of a route here (the table is the entry's table)")
        else:
            position = _take_value(spec, ROUTE_WORDS, words, position - 1, fail, '')
    if hops:
        if any(hop_onlink) and not all(hop_onlink):
            fail('onlink on some nexthops only (it is for every nexthop or none)')
        if all(hop_onlink):
            spec['onlink'] = True
        spec['nexthops'] = hops
    return spec


def _take_value(options, names, words, position, fail, where):
    """Stores the value of the word at ``position`` in ``options``; returns the position after the value."""
    word = words[position]
    name = names.get(word)
    if name is None:
        fail('unknown word %r%s' % (word, where))
    if name in options:
        fail('%r given twice%s' % (word, where))
    if position + 1 == len(words):
        fail('%r needs a value%s' % (word, where))
    value = words[position + 1]
    if name in ('metric', 'weight'):
        if not value.isdigit():
            fail('%r needs a number, got %r%s' % (word, value, where))
        value = int(value)
    options[name] = value
    return position + 2


def route_options(element, field):
    """The options of one element of ``routes``: a dict checked against ROUTE_OPTIONS, or a string."""
    if isinstance(element, str):
        # Then the same checks as a mapping (choices, defaults).
        element = parse_route_text(element, field)
    if isinstance(element, dict):
        return check_params(ROUTE_OPTIONS, element, field + '.')
    raise InputError(field, 'a route is a mapping of options or a string, got %s' % quoted(element))


def normalize_route(spec, field, table, interfaces, family=None, addresses=None, absent=False):
    """The route dict of one user route ``spec`` (module options), or InputError naming ``field``.

    ``family`` is the table entry's; ``interfaces`` the {name: ifindex} of the namespace.
    ``absent``: the route is to be removed, so dest (and metric) are enough.
    """
    addresses = addresses or _Addresses()
    families = {}

    def note_family(name, value):
        if value is not None:
            families.setdefault(value, name)

    given = spec.get('family') or family
    dest_family, dest = addresses.prefix(spec['dest'], field + '.dest')
    note_family('dest', dest_family)
    gateway = spec.get('gateway')
    if gateway is not None:
        gw_family, gateway = addresses.address(gateway, field + '.gateway')
        note_family('gateway', gw_family)
    src = spec.get('src')
    if src is not None:
        src_family, src = addresses.address(src, field + '.src')
        note_family('src', src_family)
    route_type = spec.get('type') or 'unicast'
    dev = spec.get('dev')
    if dev is not None and dev not in interfaces:
        raise InputError(field + '.dev', 'no interface %r in this network namespace' % dev)

    nexthops = None
    if spec.get('nexthops') is not None:
        if gateway is not None or dev is not None:
            raise InputError(field + '.nexthops', 'give either nexthops or gateway/dev, not both')
        if len(spec['nexthops']) < 2:
            raise InputError(field + '.nexthops', 'a multipath route needs at least two nexthops; '
                             'use gateway and dev for one')
        hops = []
        for index, hop in enumerate(spec['nexthops']):
            hop_field = '%s.nexthops[%d]' % (field, index)
            hop_gateway, hop_dev = hop.get('gateway'), hop.get('dev')
            if hop_gateway is None and hop_dev is None:
                raise InputError(hop_field, 'a nexthop needs a gateway, a dev or both')
            if hop_gateway is not None:
                hop_family, hop_gateway = addresses.address(hop_gateway, hop_field + '.gateway')
                note_family('nexthops[%d].gateway' % index, hop_family)
            elif spec.get('onlink'):
                # (the kernel: "Nexthop has invalid gateway")
                raise InputError(hop_field + '.gateway', 'onlink is for nexthops with a gateway')
            if hop_dev is not None and hop_dev not in interfaces:
                raise InputError(hop_field + '.dev', 'no interface %r in this network namespace' % hop_dev)
            weight = 1 if hop.get('weight') is None else hop['weight']
            if not 1 <= weight <= 256:
                raise InputError(hop_field + '.weight', 'weight %d is out of range 1..256' % weight)
            hops.append((hop_gateway, hop_dev, weight))
        if len(set(hop[:2] for hop in hops)) != len(hops):
            raise InputError(field + '.nexthops', 'the same nexthop is listed twice')
        nexthops = tuple(sorted(hops, key=_hop_order))

    if len(families) > 1:
        (first, first_field), (second, second_field) = sorted(families.items(), key=lambda kv: kv[1])[:2]
        raise InputError(field, 'mixed address families: %s is %s but %s is %s'
                         % (first_field, first, second_field, second))
    inferred = next(iter(families), None)
    if inferred and given and inferred != given:
        raise InputError(field + '.family', 'family %s does not match %s, which is %s'
                         % (given, families[inferred], inferred))
    route_family = inferred or given or 'ipv4'
    if nexthops is not None and route_family == 'ipv6':
        for index, hop in enumerate(spec['nexthops']):
            if hop.get('gateway') is None:
                raise InputError('%s.nexthops[%d].gateway' % (field, index),
                                 'required for IPv6 (the kernel takes no nexthop without a gateway in an IPv6 '
                                 'multipath route)')

    if route_type == 'unicast':
        if gateway is None and dev is None and nexthops is None and not absent:
            raise InputError(field, 'a unicast route needs gateway, dev or nexthops (or another type)')
    elif gateway is not None or dev is not None or nexthops is not None:
        raise InputError(field + '.type', 'a %s route has no gateway, dev or nexthops' % route_type)

    metric = spec.get('metric')
    if metric is None or (metric == 0 and route_family == 'ipv6'):
        metric = DEFAULT_METRIC[route_family]  # IPv6: the kernel turns metric 0 into 1024
    if not 0 <= metric <= MAX_METRIC:
        raise InputError(field + '.metric', 'metric %d is out of range 0..%d' % (metric, MAX_METRIC))

    route = {'family': route_family, 'table': table, 'dest': dest, 'tos': 0, 'metric': metric,
             'type': route_type, 'gateway': gateway, 'dev': dev, 'src': src, 'scope': None,
             'proto': _proto(spec.get('proto') or DEFAULT_PROTO, field + '.proto'),
             'onlink': bool(spec.get('onlink')), 'nexthops': nexthops}
    scope = spec.get('scope')
    if scope is not None and route_family == 'ipv6' and scope != 'global':
        raise InputError(field + '.scope', 'IPv6 routes have no scope (the kernel keeps global)')
    route['scope'] = scope or default_scope(route)
    # What the kernel refuses whatever else the namespace holds (fib_create_info, fib_check_nh);
    # scope link with a gateway that is not onlink depends on the routes to the gateway, so the
    # kernel decides that one.
    if route['scope'] == 'host' and (gateway is not None or nexthops is not None):
        raise InputError(field + '.scope', 'a route with %s cannot have scope host (the kernel refuses it: '
                         'host scope is for a destination on this host)'
                         % ('a gateway' if nexthops is None else 'nexthops'))
    if route['scope'] == 'link' and route['onlink'] and (gateway is not None or nexthops is not None):
        raise InputError(field + '.scope', 'an onlink gateway cannot have scope link (the kernel refuses it); '
                         'leave scope out for global')
    return route


# The identity of a route as the kernel knows it (one of each per table).
key = operator.itemgetter('family', 'table', 'dest', 'tos', 'metric')


def normalize_routes(specs, field, table, interfaces, family=None, addresses=None, absent=False, known=None,
                     where=None):
    """{key: route} of a list of user routes; two different routes with one key are an error.

    ``known(text)``: the route a string means when the table has it already, or None
    (see KnownRoutes). ``where``: a dict to fill with {key: the field of the route}.
    """
    addresses = addresses or _Addresses()
    routes = {}
    where = {} if where is None else where
    # Routes that differ only in dest normalize alike: with 10,000 routes over a few
    # gateways, each shape is checked once and the others are copies with their dest.
    shapes = {}
    for element, element_field in route_elements(specs, field):
        route = known(element) if known is not None and isinstance(element, str) else None
        if route is None:
            route = _normalize_element(element, element_field, table, interfaces, family, addresses, absent, shapes)
        route_key = key(route)
        have = routes.get(route_key)
        if have is not None:
            if have != route:
                raise InputError(element_field, 'conflicts with %s: same dest %s and metric %d, other attributes'
                                 % (where[route_key], route['dest'], route['metric']))
            continue
        routes[route_key] = route
        where[route_key] = element_field
    return routes


def route_elements(specs, field):
    """(element, its name in errors) of each route listed in ``specs``.

    A string of several lines holds one route per line, as a file of routes read
    with ``lookup('file')`` gives them (named ``ROUTES[0] line 3``); blank lines are
    left out. (No comments: Ansible splits a string option at its commas before
    the module sees it, so a comma in a comment would cut the text in two.)
    """
    for index, element in enumerate(specs or []):
        element_field = '%s[%d]' % (field, index)
        if not (isinstance(element, str) and '\n' in element):
            yield element, element_field
            continue
        for number, line in enumerate(element.splitlines(), 1):
            words = line.strip()
            if words:
                yield words, '%s line %d' % (element_field, number)


def _normalize_element(element, route_field, table, interfaces, family, addresses, absent, shapes):
    """The route of one element of ``routes``; ``shapes`` remembers the route of each shape seen."""
    dest, shape = route_shape(element)
    if shape is not None:
        dest_family, dest = addresses.prefix(dest, route_field + '.dest')
        shape = (shape, dest_family)
        template = shapes.get(shape)
        if template is not None:
            return dict(template, dest=dest)
    route = normalize_route(route_options(element, route_field), route_field, table, interfaces, family,
                            addresses, absent)
    if shape is not None:
        shapes[shape] = route
    return route


_SHAPE_SCALARS = (str, int, bool, float, type(None))


def route_shape(element):
    """(dest, the rest of ``element`` without its dest) of a route, or (None, None).

    Two routes of one shape give the same route but for dest (normalize_routes).
    None where that is not plain to see (no dest, nested nexthops): such routes
    are normalized one by one.
    """
    if isinstance(element, str):
        words = element.split()
        position = _lead_words(words)[2]
        if position == len(words) or words[position] in _NOT_A_DEST:
            return None, None
        return words[position], ('text', tuple(words[:position]), tuple(words[position + 1:]))
    if isinstance(element, dict):
        dest = element.get('dest')
        if not isinstance(dest, str):
            return None, None
        rest = []
        for name, value in element.items():
            if name != 'dest':
                if not isinstance(value, _SHAPE_SCALARS):
                    return None, None
                # The type too: {'metric': True} is refused where {'metric': 1} is not.
                rest.append((name, type(value).__name__, value))
        return dest, ('dict', tuple(sorted(rest)))
    return None, None


def normalize_excludes(values, field, addresses=None):
    """Set of (family or None, dest) of copy_exclude."""
    addresses = addresses or _Addresses()
    return set(addresses.prefix(value, '%s[%d]' % (field, index)) for index, value in enumerate(values or []))


def excluded(route, excludes):
    return (route['family'], route['dest']) in excludes or (None, route['dest']) in excludes


# ---------------------------------------------------------------- kernel

def from_netlink(raw, names):
    """The route dict of one dumped route (see _netlink._decode_route), or None if not ours to manage.

    ``names`` is {ifindex: name}. Local, broadcast, multicast and other types
    the kernel keeps for itself are skipped.
    """
    route_type = TYPE_NAMES.get(raw['type'])
    family = FAMILY_OF_AF.get(raw['family'])
    if route_type is None or family is None or raw['src_len']:
        return None
    dest = _dest(family, raw['dst'], raw['dst_len'])
    unicast = route_type == 'unicast'
    nexthops = None
    onlink = bool(raw['flags'] & RTNH_F_ONLINK)
    if raw['multipath'] and unicast:
        hops = raw['multipath']
        onlink = all(hop['flags'] & RTNH_F_ONLINK for hop in hops)
        nexthops = tuple(sorted(((_canonical(family, hop['gateway']), names.get(hop['oif']), hop['weight'])
                                 for hop in hops), key=_hop_order))
    scope = SCOPE_NAMES.get(raw['scope'], str(raw['scope'])) if family == 'ipv4' else 'global'
    return {'family': family, 'table': raw['table'], 'dest': dest, 'tos': raw['tos'],
            'metric': raw['priority'] if raw['priority'] or family == 'ipv4' else DEFAULT_METRIC[family],
            'type': route_type,
            'gateway': _canonical(family, raw['gateway']) if unicast and nexthops is None else None,
            'dev': names.get(raw['oif']) if unicast and nexthops is None else None,
            'src': _canonical(family, raw['prefsrc']),
            'scope': scope,
            'proto': PROTO_NAMES.get(raw['proto'], str(raw['proto'])),
            'onlink': onlink, 'nexthops': nexthops}


def _dest(family, address, prefix_length):
    """The dest of a route the kernel gave as an address (text) and a prefix length."""
    if prefix_length == 0:
        return 'default'
    if family == 'ipv4':
        return '%s/%d' % (address, prefix_length)
    return str(ipaddress.ip_network('%s/%d' % (address, prefix_length)))


def _canonical(family, address):
    if address is None or family == 'ipv4':
        return address
    return str(ipaddress.ip_address(address))


def to_request(action, route, interfaces):
    """The _netlink route dict that asks the kernel for ``action`` on ``route``."""
    family = route['family']
    dest = route['dest']
    if dest == 'default':
        dst, dst_len = None, 0
    else:
        dst, dst_len = dest.split('/')
        dst_len = int(dst_len)
    request = {'family': AF[family], 'table': route['table'], 'dst': dst, 'dst_len': dst_len,
               'tos': route['tos'], 'priority': route['metric'], 'flags': 0}
    if action == DELETE:
        # Match by identity only: any type, scope and protocol.
        request.update(proto=0, scope=RT_SCOPE_NOWHERE, type=0)
        return request
    request.update(proto=_proto_number(route['proto']), scope=SCOPES.get(route['scope'], 0),
                   type=TYPES[route['type']], gateway=route['gateway'], oif=interfaces.get(route['dev']),
                   prefsrc=route['src'])
    flags = RTNH_F_ONLINK if route['onlink'] else 0
    if route['nexthops'] is not None:
        request['multipath'] = [{'gateway': gateway, 'oif': interfaces.get(dev), 'weight': weight, 'flags': flags}
                                for gateway, dev, weight in route['nexthops']]
    else:
        request['flags'] = flags
    return request


# Every attribute of a route but its dest and table: routes of a table alike in all of
# these differ only in the dest (its word in their text, its address in their requests).
_kind_of = operator.itemgetter('family', 'tos', 'metric', 'type', 'gateway', 'dev', 'src', 'scope', 'proto', 'onlink',
                               'nexthops')


def spec_text(route, label):
    """The route as ``ip route`` arguments (kernel defaults left out); no table word if ``label`` is None."""
    lead, rest = _spec_words(route, label)
    return ' '.join(lead + [route['dest']] + rest)


def _spec_words(route, label):
    """The words of spec_text before the dest and after it."""
    lead = [route['type']] if route['type'] != 'unicast' else []
    parts = []
    if route['gateway']:
        parts.extend(('via', route['gateway']))
    if route['dev']:
        parts.extend(('dev', route['dev']))
    if label is not None:
        parts.extend(('table', label))
    if route['proto'] != DEFAULT_PROTO:
        parts.extend(('proto', route['proto']))
    if route['scope'] != default_scope(route):
        parts.extend(('scope', route['scope']))
    if route['src']:
        parts.extend(('src', route['src']))
    if route['metric'] != DEFAULT_METRIC[route['family']]:
        parts.extend(('metric', str(route['metric'])))
    if route['nexthops'] is None:
        if route['onlink']:
            parts.append('onlink')
    else:
        for gateway, dev, weight in route['nexthops']:
            parts.append('nexthop')
            if gateway:
                parts.extend(('via', gateway))
            if dev:
                parts.extend(('dev', dev))
            parts.extend(('weight', str(weight)))
            if route['onlink']:
                parts.append('onlink')
    return lead, parts


class SpecTexts:
    """spec_text of many routes: the words around the dest are made once per shape.

    Routes alike in all but their dest (a table of 10,000 routes has a few such
    shapes) differ in their text only by the dest word. ``label(table)`` gives the
    table word, or None for none.
    """

    def __init__(self, label):
        self.label = label
        self.around = {}

    def __call__(self, route):
        shape = (route['table'], _kind_of(route))
        around = self.around.get(shape)
        if around is None:
            lead, rest = _spec_words(route, self.label(route['table']))
            around = self.around[shape] = (''.join(word + ' ' for word in lead), ''.join(' ' + word for word in rest))
        return around[0] + route['dest'] + around[1]


_VERBS = {ADD: 'add', DELETE: 'del'}


class RouteKind(Kind):
    """Routes, applied in batches on one netlink socket."""

    def __init__(self, sock, interfaces, labels):
        self.sock = sock
        self.interfaces = interfaces
        self.labels = labels
        self.spec = SpecTexts(self.label)
        # The encoded request of each shape of route and action, around its destination address.
        self.requests = {}

    def key(self, item):
        return key(item)

    def label(self, table):
        return self.labels.get(table, str(table))

    def text(self, action, item):
        verb = _VERBS.get(action, 'replace')
        prefix = 'ip -6 route' if item['family'] == 'ipv6' else 'ip route'
        return '%s %s %s' % (prefix, verb, self.spec(item))

    def render(self, item):
        text = self.spec(item)
        return text if item['family'] == 'ipv4' else 'ipv6 ' + text

    def apply(self, ops):
        done, failure = self.sock.send_routes([(op.action, self.request(op.action, op.item)) for op in ops])
        if failure is not None:
            index, code, message = failure
            raise ApplyError(message, applied=[ops[i] for i in done], failed=ops[index])

    def request(self, action, route):
        """The netlink request of ``action`` on ``route``, encoded: once per shape of route (all
        but the dest), then for each route of it with its own destination address put in."""
        dest = route['dest']
        encode = _netlink.encode_route
        if dest == 'default':
            return encode(to_request(action, route, self.interfaces))
        address, length = dest.partition('/')[::2]
        shape = (action, length, route['table'], _kind_of(route))
        if shape not in self.requests:
            request = encode(to_request(action, route, self.interfaces))
            span = _netlink.dst_span(AF[route['family']], request, 0, len(request))
            self.requests[shape] = None if span is None else (request[:span[0]], request[span[1]:])
            return request
        around = self.requests[shape]
        if around is None:
            return encode(to_request(action, route, self.interfaces))
        return around[0] + socket.inet_pton(AF[route['family']], address) + around[1]


class KnownRoutes:
    """The routes a table has, by their text: what makes the no-op rerun of a long list of strings cheap.

    A string that is exactly the text of one of the table's routes (``spec_text``
    without the table word) means that very route. That holds where the text
    normalizes back to the route, which is checked once per kind of route (every
    attribute but the dest; the default route apart), as normalize_routes checks
    one route per shape. Routes whose text does not (a TOS, which has no word)
    are left out, and any string not found is normalized as usual.
    """

    def __init__(self, read, table, family, interfaces, addresses):
        self.read = read
        self.table = table
        self.family = family
        self.interfaces = interfaces
        self.addresses = addresses
        self.texts = {}

    def get(self, text):
        # An IPv6 route has a colon in its dest; an IPv4 one has none anywhere.
        family = 'ipv6' if ':' in text else 'ipv4'
        if self.family not in (None, family):
            return None
        texts = self.texts.get(family)
        if texts is None:
            texts = self.texts[family] = self._texts(family)
        return texts.get(text)

    def _texts(self, family):
        texts, verified = {}, {}
        text_of = SpecTexts(lambda table: None)
        for route in self.read(family, self.table):
            text = text_of(route)
            kind = (route['dest'] == 'default', _kind_of(route))
            good = verified.get(kind)
            if good is None:
                good = verified[kind] = self._normalizes_to(text, route)
            if good:
                texts[text] = route
        return texts

    def _normalizes_to(self, text, route):
        try:
            return normalize_route(route_options(text, 'routes'), 'routes', self.table, self.interfaces,
                                   self.family, self.addresses) == route
        except InputError:
            return False


def read_routes(sock, family, table, names):
    """[route] of one table and family as the kernel has them."""
    return routes_of_dump(family, table, sock.dump_route_messages(AF[family], table), names)


def routes_of_dump(family, table, messages, names):
    """[route] of the messages of a dump of one table and family (dump_route_messages).

    Two messages alike in every byte but the destination address give the same
    route but for dest: each such shape is decoded once, and the other routes of
    it are copies with their dest (a table of 10,000 routes has a few shapes).
    """
    af = AF[family]
    routes, shapes = [], {}
    for data, offset, end in messages:
        span = _netlink.dst_span(af, data, offset, end)
        shape = None
        if span is not None:
            start, stop = span
            shape = data[offset:start] + data[stop:end]
            if shape in shapes:
                template = shapes[shape]
                if template is not None:
                    # The rtmsg is part of the shape, its prefix length (second byte) too.
                    address = socket.inet_ntop(af, data[start:stop])
                    routes.append(dict(template, dest=_dest(family, address, data[offset + 1])))
                continue
        raws = _netlink.decode_routes(af, table, [(data, offset, end)])
        route = from_netlink(raws[0], names) if raws else None
        if shape is not None:
            shapes[shape] = route
        if route is not None:
            routes.append(route)
    return routes


class TableReads:
    """read(family, table) of one run: each table dumped once, and decoded only when asked.

    ``dump`` gives a table's messages as they came (what a Memo compares);
    ``asked`` is every table the run read, also before a ``clear``.
    """

    def __init__(self, sock, names):
        self.sock = sock
        self.names = names
        self.messages, self.routes, self.asked = {}, {}, set()

    def dump(self, family, table):
        if (family, table) not in self.messages:
            self.messages[(family, table)] = self.sock.dump_route_messages(AF[family], table)
        return self.messages[(family, table)]

    def __call__(self, family, table):
        self.asked.add((family, table))
        if (family, table) not in self.routes:
            self.routes[(family, table)] = routes_of_dump(family, table, self.dump(family, table), self.names)
        return self.routes[(family, table)]

    def clear(self):
        """Read the kernel again from now on (after a change)."""
        self.messages.clear()
        self.routes.clear()

    def as_read(self):
        """{(family, table): routes} of what was read since the last clear."""
        return dict(self.routes)


# ---------------------------------------------------------------- memo

MEMO_DIR = '/run/netpolicy-routing/route_table'
_MESSAGE_LENGTH = struct.Struct('=I')


class Memo:
    """What a run that left the kernel as it asked saw: the same run again, on the same
    kernel state, has nothing to do, and can tell so from one dump of each table.

    The plan of a run depends on its arguments, the table names, the interfaces and
    the routes of the tables it reads, and on nothing else. (The addresses of the host
    matter to check_sources, but only for routes a plan sends: a no-op run has none,
    and a route whose src went away has changed in the kernel's dump.) A run that ended with the
    kernel as asked (a no-op, or a change it verified) writes the SHA-256 of all of
    these (the routes as the kernel's dump messages, undecoded) and of the code that
    plans, with the tables it read. A later run with the same key is a no-op as
    well, so it returns that result without decoding 10,000 routes, normalizing
    them and planning. Anything that differs (an argument, a route the kernel added
    or lost, an interface renamed, another version of the collection) gives another
    key, and the run plans as always. Diff mode always plans (it shows the routes).

    The files are in ``MEMO_DIR``, one per namespace and table list, mode 0600 in a
    directory only root can read or write (a forged file could hide a change); it is
    in /run, so a reboot empties it. Anything wrong with it (no /run, another owner, a
    damaged file) only means the run plans as always.
    """

    def __init__(self, params, names, interfaces, directory=MEMO_DIR):
        self.directory = directory
        self.inputs = json.dumps([_code_version(), params, sorted(names.items()), sorted(interfaces.items())],
                                 sort_keys=True, default=repr).encode('utf-8')
        self.path = memo_path(directory, _lock.netns_inode(), params)

    def key(self, reads, pairs):
        """The SHA-256 of the inputs and of the tables ``pairs`` as ``reads`` dumps them."""
        digest = hashlib.sha256(self.inputs)
        for family, table in pairs:
            digest.update(('\n%s %d\n' % (family, table)).encode('ascii'))
            # Each message with its length: the same bytes cut otherwise are other routes.
            digest.update(b''.join(_MESSAGE_LENGTH.pack(end - offset) + data[offset:end]
                                   for data, offset, end in reads.dump(family, table)))
        return digest.hexdigest()

    def usable(self):
        return _code_version() is not None and private_directory(self.directory)

    def recall(self, reads):
        """The result of a run that has nothing to do, or None when not known to be one."""
        if not self.usable():
            return None
        try:
            with open(self.path) as handle:
                memo = json.load(handle)
            pairs = [(str(family), int(table)) for family, table in memo['reads']]
            if self.key(reads, pairs) != memo['key']:
                return None
            return dict(memo['result'], changed=False, commands=[])
        except (IOError, OSError, ValueError, TypeError, KeyError):
            return None

    def remember(self, reads, result):
        """After a run that left the kernel as it asked: its key, read from the kernel now."""
        if not self.usable():
            return
        pairs = sorted(reads.asked)
        memo = {'key': self.key(reads, pairs), 'reads': pairs,
                'result': dict((name, result[name]) for name in ('tables', 'table') if name in result)}
        try:
            write_atomically(self.path, json.dumps(memo), 0o600)
        except (IOError, OSError):
            pass  # only slower next time


def memo_path(directory, inode, params):
    """The memo of the tables of ``params`` in the namespace of ``inode``: one file per
    namespace and table list, rewritten by each run of them (so they do not pile up)."""
    tables = [entry.get('table') for field, entry in table_entries(params)]
    name = json.dumps([inode, tables], default=repr).encode('utf-8')
    return os.path.join(directory, hashlib.sha256(name).hexdigest()[:32])


@functools.lru_cache(maxsize=None)
def _code_version():
    """The SHA-256 of the sources that plan (this file and those it builds on) and of the
    Python, or None when a source cannot be read (the memo is then not used)."""
    digest = hashlib.sha256(sys.version.encode('utf-8'))
    for module in (_engine, _netlink, _rt_tables, _spec, sys.modules[__name__]):
        loader = getattr(module, '__loader__', None)
        try:
            source = loader.get_source(module.__name__)
        except (AttributeError, ImportError, IOError, OSError):
            source = None
        if source is None:
            return None
        digest.update(source.encode('utf-8'))
    return digest.hexdigest()


# ---------------------------------------------------------------- plan

def table_entries(params):
    """[(field prefix, entry options)] of the single or the list form."""
    if params.get('tables') is not None:
        entries = []
        for index, entry in enumerate(params['tables']):
            entry = dict(entry)
            entry['state'] = entry.get('state') or params.get('state') or 'present'
            entries.append(('tables[%d].' % index, entry))
        return entries
    entry = dict((name, params.get(name)) for name in TABLE_OPTIONS)
    entry['routes'] = entry['routes'] or []
    entry['purge'] = bool(entry['purge'])
    entry['copy_exclude'] = entry['copy_exclude'] or []
    entry['state'] = entry['state'] or 'present'
    return [('', entry)]


def _table_id(value, field, netns, names):
    number = resolve_table(value, netns, field=field, names=names)
    if number == LOCAL_TABLE:
        raise InputError(field, 'table local (255) holds the kernel\'s own local and broadcast routes; '
                         'it is not managed by route_table')
    return number


class TableTarget:
    """One table entry, validated: what to read and what to want."""

    def __init__(self, field, entry, netns, names, interfaces, addresses, read):
        self.field = field
        self.state = entry['state']
        self.purge = entry['purge']
        self.table = _table_id(entry['table'], field + 'table', netns, names)
        self.label = str(entry['table']).strip()
        self.family = entry.get('family')
        known = None
        if self.state == 'present':
            known = KnownRoutes(read, self.table, self.family, interfaces, addresses).get
        # {key: field} of the listed routes, for what is checked once the plan is made (check_sources).
        self.fields = {}
        self.listed = normalize_routes(entry['routes'], field + 'routes', self.table, interfaces,
                                       self.family, addresses, absent=self.state == 'absent', known=known,
                                       where=self.fields)
        self.copy_from = None
        if entry.get('copy_from') is not None:
            self.copy_from = _table_id(entry['copy_from'], field + 'copy_from', netns, names)
        self.excludes = normalize_excludes(entry.get('copy_exclude'), field + 'copy_exclude', addresses)
        if self.family:
            self.families = (self.family,)
        elif self.purge or self.copy_from is not None:
            self.families = FAMILIES
        else:
            self.families = tuple(sorted(set(route['family'] for route in self.listed.values())))

    def desired(self, read):
        """{key: route} wanted in the table; ``read(family, table)`` gives current routes."""
        wanted = {}
        if self.copy_from is not None:
            for family in self.families:
                for route in read(family, self.copy_from):
                    if excluded(route, self.excludes):
                        continue
                    route = dict(route, table=self.table)
                    if route['proto'] == 'kernel':
                        # The connected routes of addresses are the kernel's in their own
                        # table; a copy elsewhere is an ordinary route (seed 003).
                        route['proto'] = DEFAULT_PROTO
                    wanted[key(route)] = route
        wanted.update(self.listed)
        return wanted

    def plan(self, kind, read):
        current = []
        for family in self.families:
            current.extend(read(family, self.table))
        current_by_key = dict((key(route), route) for route in current)
        desired = [complete(route, current_by_key.get(route_key))
                   for route_key, route in self.desired(read).items()]
        families = self.families

        def owned(route):
            # Purge never removes the kernel's connected routes (proto kernel).
            return route['proto'] != 'kernel' and route['family'] in families

        if self.state == 'absent' and self.purge:
            return build_plan(kind, current, [], owned=owned)
        return build_plan(kind, current, desired, state=self.state, owned=owned if self.purge else None)


def complete(route, have):
    """``route`` with the interface the kernel chose filled in where the user named only a gateway."""
    if have is None or route['type'] != 'unicast':
        return route
    if route['dev'] is None and route['gateway'] is not None and have['gateway'] == route['gateway']:
        route = dict(route, dev=have['dev'])
    if route['nexthops'] is not None and have['nexthops'] is not None and \
            any(dev is None for gateway, dev, weight in route['nexthops']):
        devs = dict(((gateway, weight), dev) for gateway, dev, weight in have['nexthops'])
        hops = [(gateway, dev if dev is not None else devs.get((gateway, weight)), weight)
                for gateway, dev, weight in route['nexthops']]
        route = dict(route, nexthops=tuple(sorted(hops, key=_hop_order)))
    return route


def change(params, check_mode=False, diff=False):
    """The whole of module route_table: validate, plan, apply, verify."""
    netns = params.get('netns')
    _netlink.enter_netns(netns)
    names = table_names(netns)
    interfaces = _netlink.interface_map()
    ifnames = dict((index, name) for name, index in interfaces.items())
    addresses = _Addresses()

    memo = Memo(params, names, interfaces)

    with _netlink.RouteSocket() as sock:
        read = TableReads(sock, ifnames)
        if not diff:
            known = memo.recall(read)
            if known is not None:
                return known

        # The input is checked before anything changes; reading the tables on the way
        # lets a string that is already there be taken as it is (KnownRoutes).
        targets, seen = [], {}
        for field, entry in table_entries(params):
            target = TableTarget(field, entry, netns, names, interfaces, addresses, read)
            if target.table in seen:
                raise InputError(field + 'table', 'table %d is already listed in %stable'
                                 % (target.table, seen[target.table]))
            seen[target.table] = field
            targets.append(target)
        labels = dict((target.table, target.label) for target in targets)
        kind = RouteKind(sock, interfaces, labels)

        def plan():
            return merge_plans([target.plan(kind, read) for target in targets])

        def replan():
            read.clear()
            return plan()

        first = plan()
        check_sources(first, targets, LocalAddresses(sock, interfaces))
        before = read.as_read()
        result = execute(first, kind, replan=replan, check_mode=check_mode, diff=diff)
        if diff:
            result['routes'] = routes_after(kind, first, before, targets)
        result['tables'] = [target.table for target in targets]
        if params.get('tables') is None:
            result['table'] = targets[0].table
        if not check_mode:
            # The kernel is as asked now (a no-op, or a change execute verified).
            memo.remember(read, result)
    return result


def check_sources(plan, targets, local):
    """Refuse, before anything changes, a listed route to add or replace whose src the kernel
    would refuse. Only routes the plan sends are looked at: a route the table has as asked
    is left as it is, so a no-op run (and the memo, which knows only no-op runs) has none
    to check and reads no address."""
    for op in plan.ops:
        route = op.item
        if op.action == DELETE or route['src'] is None:
            continue
        for target in targets:
            field = target.fields.get(key(route))  # copied routes have none: the kernel has them
            if field is not None:
                problem = local.refusal(route)
                if problem is not None:
                    raise InputError(field + '.src', problem)


# The refusal of a src that no interface of the namespace has.
_NOT_LOCAL = '%s is not a local address of this network namespace (the kernel takes as src only an address of the host)'


class LocalAddresses:
    """Whether the kernel takes an address as the src of a route; what that takes is read
    once, when first asked (IPv4: one dump of table local; IPv6: one of the addresses).

    IPv4 (the kernel's fib_valid_prefsrc): the longest match for the address in table
    local is a local route; that is an address of an interface (up or down) or an address
    within a local route (127.0.0.0/8, or ``ip route add local 192.0.2.0/24 dev lo table
    local``). A broadcast address is not. (The kernel also looks in the route's own
    table first, where a local route is rare: not looked at here.)

    IPv6 (ipv6_chk_addr): an address of an interface that is not tentative (its duplicate
    address detection is over); a link-local or host one only for a route out of its own
    interface.
    """

    # rtm_type RTN_LOCAL; ifa_flags IFA_F_TENTATIVE; ifa_scope RT_SCOPE_LINK
    LOCAL_TYPE = 2
    TENTATIVE = 0x40
    LINK_SCOPE = 253

    def __init__(self, sock, interfaces):
        self.sock = sock
        self.names = dict((index, name) for name, index in interfaces.items())
        self.local_routes = None
        self.addresses = None
        self.refusals = {}

    def refusal(self, route):
        """None when the kernel takes ``route['src']``, else the reason it does not."""
        devs = self._devs(route)
        found = self.refusals.get((route['src'], devs), False)
        if found is False:
            if route['family'] == 'ipv4':
                found = self._ipv4_refusal(route['src'])
            else:
                found = self._ipv6_refusal(route['src'], devs)
            self.refusals[(route['src'], devs)] = found
        return found

    @staticmethod
    def _devs(route):
        """The interfaces the route leaves by: a tuple, with '' for one the kernel picks."""
        if route['type'] != 'unicast':
            return ('lo',)  # the kernel gives these routes the loopback interface
        if route['nexthops'] is not None:
            return tuple(sorted(set(dev or '' for gateway, dev, weight in route['nexthops'])))
        return (route['dev'] or '',)

    def _ipv4_refusal(self, src):
        if self.local_routes is None:
            messages = self.sock.dump_route_messages(socket.AF_INET, LOCAL_TABLE)
            self.local_routes = [(ipaddress.ip_network('%s/%d' % (raw['dst'] or '0.0.0.0', raw['dst_len'])),
                                  raw['type']) for raw in _netlink.decode_routes(socket.AF_INET, LOCAL_TABLE, messages)]
        address = ipaddress.ip_address(src)
        matches = [(network.prefixlen, route_type) for network, route_type in self.local_routes if address in network]
        if matches and max(matches)[1] == self.LOCAL_TYPE:
            return None
        return _NOT_LOCAL % src

    def _ipv6_refusal(self, src, devs):
        if self.addresses is None:
            self.addresses = [address for address in self.sock.dump_addresses()
                              if address['family'] == socket.AF_INET6 and address['address']]
        wanted = ipaddress.ip_address(src)
        found = [address for address in self.addresses
                 if ipaddress.ip_address(address['address'].split('/')[0]) == wanted]
        if not found:
            return _NOT_LOCAL % src
        ready = [address for address in found if not address['flags'] & self.TENTATIVE]
        if not ready:
            return ('%s is tentative on %s: the kernel takes it as src only once its duplicate address detection '
                    'is over' % (src, self.names.get(found[0]['ifindex'], found[0]['ifindex'])))
        for address in ready:
            name = self.names.get(address['ifindex'])
            if address['scope'] < self.LINK_SCOPE or all(dev in ('', name) for dev in devs):
                return None
        name = self.names.get(ready[0]['ifindex'], ready[0]['ifindex'])
        return ('%s is an address of %s only, with %s scope: the kernel takes it as src only for a route out of %s'
                % (src, name, 'host' if ready[0]['scope'] > self.LINK_SCOPE else 'link', name))


def routes_after(kind, plan, before, targets):
    """The lines of the tables' routes after ``plan``, of the families read for them."""
    wanted = set((family, target.table) for target in targets for family in target.families)
    after = {}
    for (family, table), routes in before.items():
        if (family, table) in wanted:
            for route in routes:
                after[key(route)] = route
    for op in plan.ops:
        if op.action == DELETE:
            after.pop(key(op.item), None)
        else:
            after[key(op.item)] = op.item
    return [kind.render(route) for route_key, route in sorted(after.items(), key=_sort_key)]


def _sort_key(item):
    family, table, dest, tos, metric = item[0]
    return (table, family, dest != 'default', dest, metric)
