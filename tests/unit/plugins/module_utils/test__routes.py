"""Routes as values: normalize, identity, netlink round trip, command text, planning, the memo
of a no-op (no kernel)."""
import os
import socket

import pytest

from ansible_collections.netpolicy.routing.plugins.module_utils import _netlink
from ansible_collections.netpolicy.routing.plugins.module_utils._engine import ADD, DELETE, REPLACE, InputError
from ansible_collections.netpolicy.routing.plugins.module_utils._routes import (
    KnownRoutes, LocalAddresses, Memo, RouteKind, SpecTexts, TableTarget, _ipv4_prefix, check_sources, complete,
    from_netlink, key, normalize_excludes, normalize_route, normalize_routes, parse_route_text, route_options,
    route_shape, routes_of_dump, spec_text, table_entries, to_request)

INTERFACES = {'lo': 1, 'wan1': 2, 'wan2': 3}
NAMES = dict((index, name) for name, index in INTERFACES.items())


def route(**spec):
    return normalize_route(spec, 'routes[0]', 100, INTERFACES)


@pytest.mark.parametrize('spec,expected', [
    (dict(dest='192.0.2.0/24', gateway='198.51.100.1'),
     dict(family='ipv4', dest='192.0.2.0/24', metric=0, scope='global', proto='boot', dev=None)),
    (dict(dest='192.0.2.0/24', dev='wan1'), dict(family='ipv4', scope='link')),
    (dict(dest='0.0.0.0/0', gateway='198.51.100.1'), dict(dest='default')),
    (dict(dest='192.0.2.7', dev='wan1'), dict(dest='192.0.2.7/32')),
    (dict(dest='2001:DB8:0::/48', gateway='2001:db8:1::1'),
     dict(family='ipv6', dest='2001:db8::/48', metric=1024, scope='global')),
    (dict(dest='2001:db8::/48', dev='wan1', metric=0), dict(metric=1024)),
    (dict(dest='default', type='blackhole'), dict(family='ipv4', type='blackhole', scope='global')),
    (dict(dest='default', type='unreachable', family='ipv6'), dict(family='ipv6', metric=1024)),
    (dict(dest='default', gateway='198.51.100.1', proto='4'), dict(proto='static')),
    (dict(dest='default', gateway='198.51.100.1', proto='77'), dict(proto='77')),
    (dict(dest='default', nexthops=[{'gateway': '203.0.113.1', 'dev': 'wan2', 'weight': 1},
                                    {'gateway': '198.51.100.1', 'dev': 'wan1', 'weight': 2}]),
     dict(nexthops=(('198.51.100.1', 'wan1', 2), ('203.0.113.1', 'wan2', 1)), scope='global')),
])
def test_normalize_route(spec, expected):
    normalized = route(**spec)
    for name, value in expected.items():
        assert normalized[name] == value, name


@pytest.mark.parametrize('spec,message', [
    (dict(dest='x', dev='wan1'), "routes[0].dest: not an IP address or prefix: 'x'"),
    (dict(dest='192.0.2.1/24', dev='wan1'), 'routes[0].dest: prefix \'192.0.2.1/24\' has host bits set '
                                            '(did you mean 192.0.2.0/24?)'),
    (dict(dest='192.0.2.0/33', dev='wan1'), 'routes[0].dest: not an IP address or prefix'),
    (dict(dest='default', gateway='gw'), "routes[0].gateway: not an IP address: 'gw'"),
    (dict(dest='default', dev='eth9'), "routes[0].dev: no interface 'eth9'"),
    (dict(dest='default', gateway='198.51.100.1', src='nope'), 'routes[0].src: not an IP address'),
    (dict(dest='192.0.2.0/24', gateway='2001:db8::1'), 'routes[0]: mixed address families: dest is ipv4'),
    (dict(dest='default', gateway='198.51.100.1', family='ipv6'), 'routes[0].family: family ipv6 does not match'),
    (dict(dest='default'), 'routes[0]: a unicast route needs gateway, dev or nexthops'),
    (dict(dest='default', type='throw', gateway='198.51.100.1'), 'routes[0].type: a throw route has no gateway'),
    (dict(dest='default', gateway='198.51.100.1', metric=-1), 'routes[0].metric: metric -1 is out of range'),
    (dict(dest='default', gateway='198.51.100.1', proto='bogus'), 'routes[0].proto: unknown route protocol'),
    (dict(dest='default', gateway='198.51.100.1', proto='300'), 'routes[0].proto: route protocol 300 is out of range'),
    (dict(dest='2001:db8::/32', dev='wan1', scope='link'), 'routes[0].scope: IPv6 routes have no scope'),
    (dict(dest='default', gateway='198.51.100.1', nexthops=[{'gateway': '198.51.100.1'}, {'gateway': '203.0.113.1'}]),
     'routes[0].nexthops: give either nexthops or gateway/dev'),
    (dict(dest='default', nexthops=[{'gateway': '198.51.100.1'}]), 'routes[0].nexthops: a multipath route needs'),
    (dict(dest='default', nexthops=[{'gateway': '198.51.100.1'}, {'gateway': '198.51.100.1'}]),
     'routes[0].nexthops: the same nexthop is listed twice'),
    (dict(dest='default', nexthops=[{'gateway': '198.51.100.1', 'weight': 257}, {'gateway': '203.0.113.1'}]),
     'routes[0].nexthops[0].weight: weight 257 is out of range 1..256'),
    (dict(dest='default', nexthops=[{'gateway': '198.51.100.1'}, {'gateway': '203.0.113.1', 'dev': 'x'}]),
     "routes[0].nexthops[1].dev: no interface 'x'"),
    (dict(dest='default', nexthops=[{'gateway': '198.51.100.1'}, {'gateway': '2001:db8::1'}]),
     'routes[0]: mixed address families'),
    (dict(dest='default', nexthops=[{'dev': 'wan1'}, {'weight': 2}]),
     'routes[0].nexthops[1]: a nexthop needs a gateway, a dev or both'),
    (dict(dest='default', nexthops=[{'dev': 'wan1'}, {'dev': 'wan1'}]), 'routes[0].nexthops: the same nexthop is listed'),
    (dict(dest='default', nexthops=[{'gateway': '2001:db8:1::1'}, {'dev': 'wan2'}]),
     'routes[0].nexthops[1].gateway: required for IPv6'),
    (dict(dest='default', nexthops=[{'dev': 'wan1'}, {'gateway': '203.0.113.1', 'dev': 'wan2'}], onlink=True),
     'routes[0].nexthops[0].gateway: onlink is for nexthops with a gateway'),
    # What the kernel refuses whatever the namespace holds.
    (dict(dest='10.2.0.0/16', gateway='198.51.100.1', dev='wan1', scope='host'),
     'routes[0].scope: a route with a gateway cannot have scope host'),
    (dict(dest='10.2.0.0/16', nexthops=[{'gateway': '198.51.100.1'}, {'gateway': '203.0.113.1'}], scope='host'),
     'routes[0].scope: a route with nexthops cannot have scope host'),
    (dict(dest='10.2.0.0/16', gateway='198.51.100.1', dev='wan1', onlink=True, scope='link'),
     'routes[0].scope: an onlink gateway cannot have scope link'),
    (dict(dest='10.2.0.0/16', nexthops=[{'gateway': '198.51.100.1'}, {'gateway': '203.0.113.1'}], onlink=True,
          scope='link'), 'routes[0].scope: an onlink gateway cannot have scope link'),
])
def test_normalize_route_rejects(spec, message):
    with pytest.raises(InputError) as caught:
        route(**spec)
    assert message in str(caught.value)


@pytest.mark.parametrize('spec', [
    dict(dest='10.2.0.0/16', dev='wan1', scope='host'),
    dict(dest='10.2.0.0/16', type='blackhole', scope='host'),
    # The kernel takes these where a route of scope host leads to the gateway (its own address, say).
    dict(dest='10.2.0.0/16', gateway='198.51.100.2', dev='wan1', scope='link'),
    dict(dest='10.2.0.0/16', gateway='198.51.100.1', dev='wan1', onlink=True, scope='site'),
])
def test_scopes_the_kernel_may_take_are_left_to_it(spec):
    assert route(**spec)['scope'] == spec['scope']


def test_absent_routes_need_only_a_dest():
    assert normalize_route({'dest': '192.0.2.0/24'}, 'routes[0]', 100, INTERFACES, absent=True)['dest'] == '192.0.2.0/24'


@pytest.mark.parametrize('text,expected', [
    ('192.0.2.0/24', ('ipv4', '192.0.2.0/24')),
    ('0.0.0.0/0', ('ipv4', 'default')),
    ('192.0.2.1/24', None),     # host bits: ipaddress explains
    ('192.0.2.0', None),        # no length
    ('192.000.2.0/24', None),   # not canonical
    ('192.0.2.0/33', None),
    ('192.0.2.0/024', None),    # not canonical
    ('192.0.2.0/+24', None),
    ('192.0.2.0/\uff12\uff14', None),  # digits, but not ASCII ones
    ('192.0.2.0/', None),
    ('192.0.2/24', None),
    ('192.0.2.7/32', ('ipv4', '192.0.2.7/32')),
    ('2001:db8::/32', None),
])
def test_ipv4_prefix_fast_path(text, expected):
    assert _ipv4_prefix(text) == expected


def test_conflicting_routes_are_refused_and_duplicates_merged():
    same = [{'dest': '192.0.2.0/24', 'dev': 'wan1'}, {'dest': '192.0.2.0/24', 'dev': 'wan1'}]
    assert len(normalize_routes(same, 'routes', 100, INTERFACES)) == 1
    other_metric = [{'dest': '192.0.2.0/24', 'dev': 'wan1'}, {'dest': '192.0.2.0/24', 'dev': 'wan2', 'metric': 5}]
    assert len(normalize_routes(other_metric, 'routes', 100, INTERFACES)) == 2
    with pytest.raises(InputError) as caught:
        normalize_routes([{'dest': '192.0.2.0/24', 'dev': 'wan1'}, {'dest': '192.0.2.0/24', 'dev': 'wan2'}],
                         'tables[1].routes', 100, INTERFACES)
    assert str(caught.value).startswith('tables[1].routes[1]: conflicts with tables[1].routes[0]')


def test_excludes():
    assert normalize_excludes(['default', '2001:db8::/32'], 'copy_exclude') == {
        (None, 'default'), ('ipv6', '2001:db8::/32')}
    with pytest.raises(InputError) as caught:
        normalize_excludes(['default', 'bad'], 'copy_exclude')
    assert str(caught.value).startswith('copy_exclude[1]:')


ROUND_TRIP = [
    dict(dest='192.0.2.0/24', gateway='198.51.100.1', dev='wan1', metric=7, proto='static', src='198.51.100.2'),
    dict(dest='192.0.2.0/24', dev='wan2'),
    dict(dest='default', gateway='192.168.7.1', dev='wan1', onlink=True),
    dict(dest='10.0.0.0/8', type='blackhole'),
    dict(dest='default', nexthops=[{'gateway': '198.51.100.1', 'dev': 'wan1', 'weight': 3},
                                   {'gateway': '203.0.113.1', 'dev': 'wan2'}], onlink=True),
    dict(dest='2001:db8:5::/48', gateway='2001:db8:1::1', dev='wan1', metric=5),
    dict(dest='default', nexthops=[{'gateway': '2001:db8:1::1', 'dev': 'wan1'},
                                   {'gateway': '2001:db8:2::1', 'dev': 'wan2', 'weight': 9}]),
]


@pytest.mark.parametrize('spec', ROUND_TRIP)
def test_netlink_round_trip(spec):
    """What we send decodes back to the same route, as the kernel would dump it."""
    wanted = route(**spec)
    request = to_request(ADD, wanted, INTERFACES)
    data = _netlink.encode_route(request)
    raw = _netlink._decode_route(request['family'], data, 0, len(data))
    assert from_netlink(raw, NAMES) == wanted


def test_delete_request_matches_by_identity_only():
    request = to_request(DELETE, route(dest='192.0.2.0/24', gateway='198.51.100.1', metric=9), INTERFACES)
    assert (request['type'], request['scope'], request['proto'], request['priority']) == (0, 255, 0, 9)
    assert 'gateway' not in request


def test_large_table_ids_travel_in_rta_table():
    wanted = normalize_route({'dest': 'default', 'dev': 'wan1'}, 'routes[0]', 4000000000, INTERFACES)
    data = _netlink.encode_route(to_request(ADD, wanted, INTERFACES))
    assert data[4] == 0  # rtm_table: RT_TABLE_UNSPEC, the id is in RTA_TABLE
    assert _netlink._decode_route(socket.AF_INET, data, 0, len(data))['table'] == 4000000000


def _raw(**fields):
    raw = {'family': socket.AF_INET, 'dst_len': 24, 'src_len': 0, 'tos': 0, 'table': 100, 'proto': 2,
           'scope': 253, 'type': 1, 'flags': 0, 'dst': '198.51.100.0', 'gateway': None, 'oif': 2,
           'priority': 0, 'prefsrc': '198.51.100.2', 'multipath': None}
    raw.update(fields)
    return raw


def test_from_netlink_skips_what_is_not_ours():
    assert from_netlink(_raw(type=2), NAMES) is None  # local
    assert from_netlink(_raw(type=3), NAMES) is None  # broadcast
    assert from_netlink(_raw(src_len=64, family=socket.AF_INET6, dst='2001:db8::'), NAMES) is None
    connected = from_netlink(_raw(flags=16), NAMES)  # linkdown is not onlink
    assert connected['proto'] == 'kernel' and connected['scope'] == 'link' and not connected['onlink']
    assert from_netlink(_raw(type=6, oif=1, family=socket.AF_INET6, dst='2001:db8::', dst_len=32,
                             priority=1024, scope=0, prefsrc=None), NAMES)['dev'] is None


def _message(wanted, action=ADD):
    """One message of a dump as dump_route_messages gives it: (data, offset of the rtmsg, end)."""
    data = b'pad' + _netlink.encode_route(to_request(action, wanted, INTERFACES))
    return data, 3, len(data)


# Routes that come in shapes: alike but for their dest, or but for one other attribute.
SHAPED = [route(dest='192.0.%d.0/24' % third, gateway='198.51.100.1', dev='wan1') for third in range(4)] + [
    route(dest='192.0.9.0/24', gateway='198.51.100.1', dev='wan1', metric=5),
    route(dest='192.0.10.0/24', gateway='198.51.100.9', dev='wan1'),
    route(dest='192.0.11.0/25', gateway='198.51.100.1', dev='wan1'),
    route(dest='192.0.11.128/25', gateway='198.51.100.1', dev='wan1'),
    route(dest='192.0.12.0/24', dev='wan2', proto='static', src='198.51.100.2'),
    route(dest='192.0.13.0/24', dev='wan2', proto='static', src='198.51.100.2'),
    route(dest='10.0.0.0/8', type='blackhole'),
    route(dest='default', gateway='198.51.100.1', dev='wan1'),
    route(dest='172.16.0.0/12', nexthops=[{'gateway': '198.51.100.1', 'dev': 'wan1', 'weight': 3},
                                          {'gateway': '203.0.113.1', 'dev': 'wan2'}], onlink=True),
    route(dest='172.32.0.0/12', nexthops=[{'gateway': '198.51.100.1', 'dev': 'wan1', 'weight': 3},
                                          {'gateway': '203.0.113.1', 'dev': 'wan2'}], onlink=True),
]
SHAPED_V6 = [route(dest='2001:db8:%x::/48' % index, gateway='2001:db8:1::1', dev='wan1') for index in range(3)] + [
    route(dest='2001:db8:ff::/64', gateway='2001:db8:1::1', dev='wan1', metric=7),
    route(dest='default', family='ipv6', type='unreachable'),
]


@pytest.mark.parametrize('family,routes', [('ipv4', SHAPED), ('ipv6', SHAPED_V6)])
def test_routes_of_dump_decode_each_shape_once(family, routes, monkeypatch):
    """A dump's routes are those of decoding each message, but each shape of message is decoded once."""
    decoded = []
    decode_routes = _netlink.decode_routes
    monkeypatch.setattr(_netlink, 'decode_routes', lambda *args: decoded.append(args) or decode_routes(*args))
    messages = [_message(wanted) for wanted in routes]
    assert routes_of_dump(family, 100, messages, NAMES) == routes
    shapes = set((wanted['dest'].partition('/')[2], str(dict(wanted, dest=None))) for wanted in routes)
    assert len(decoded) == len(shapes) < len(routes)


def test_routes_of_dump_keep_what_decoding_leaves_out():
    """The routes of other tables (kernels before 4.20 do not filter a dump) and of types the
    kernel keeps for itself are left out, also when a later message has their shape."""
    mine = route(dest='192.0.2.0/24', dev='wan1')
    other_table = [_message(dict(mine, table=101, dest='192.0.%d.0/24' % third)) for third in (3, 4)]
    local = []
    for third in (5, 6):
        data = _netlink.encode_route(dict(to_request(ADD, dict(mine, dest='192.0.%d.0/24' % third), INTERFACES), type=2))
        local.append((data, 0, len(data)))
    assert routes_of_dump('ipv4', 100, other_table + local + [_message(mine)], NAMES) == [mine]


def test_routes_of_dump_read_a_message_laid_out_otherwise():
    """A destination that is not right after RTA_TABLE is found by decoding the whole message."""
    wanted = route(dest='192.0.2.0/24', gateway='198.51.100.1', dev='wan1', metric=9)
    data = _netlink.encode_route(to_request(ADD, wanted, INTERFACES))
    header = 12 + 8
    dst, rest = data[header:header + 8], data[header + 8:]
    moved = data[:header] + rest + dst  # RTA_DST last
    assert _netlink.dst_span(socket.AF_INET, moved, 0, len(moved)) is None
    assert _netlink.dst_span(socket.AF_INET, data, 0, len(data)) == (header + 4, header + 8)
    others = [route(dest='192.0.%d.0/24' % third, gateway='198.51.100.1', dev='wan1', metric=9) for third in (3, 4)]
    messages = [_message(others[0]), (moved, 0, len(moved)), _message(others[1])]
    assert routes_of_dump('ipv4', 100, messages, NAMES) == [others[0], wanted, others[1]]


@pytest.mark.parametrize('action', [ADD, DELETE, REPLACE])
def test_kind_requests_are_each_route_encoded(action):
    """RouteKind.request encodes a shape once and puts each route's own dest in: the same bytes."""
    kind = RouteKind(None, INTERFACES, {})
    for wanted in SHAPED + SHAPED_V6 + [route(**spec) for spec in ROUND_TRIP]:
        assert kind.request(action, wanted) == _netlink.encode_route(to_request(action, wanted, INTERFACES))
    assert len(kind.requests) < len(SHAPED + SHAPED_V6 + ROUND_TRIP)


def test_spec_texts_are_spec_text():
    texts = SpecTexts(lambda table: 'isp1')
    for wanted in SHAPED + SHAPED_V6 + [route(**spec) for spec in ROUND_TRIP]:
        assert texts(wanted) == spec_text(wanted, 'isp1')
        assert SpecTexts(lambda table: None)(wanted) == spec_text(wanted, None)
    assert len(texts.around) < len(SHAPED + SHAPED_V6 + ROUND_TRIP)


def test_spec_text_and_kind_text():
    kind = RouteKind(None, INTERFACES, {100: 'isp1'})
    wanted = route(dest='192.0.2.0/24', gateway='198.51.100.1', dev='wan1', proto='static', metric=5)
    assert kind.text(ADD, wanted) == 'ip route add 192.0.2.0/24 via 198.51.100.1 dev wan1 table isp1 proto static metric 5'
    assert kind.text(DELETE, wanted).startswith('ip route del 192.0.2.0/24 ')
    six = route(dest='default', type='unreachable', family='ipv6')
    assert kind.text(REPLACE, six) == 'ip -6 route replace unreachable default table isp1'
    assert kind.render(six) == 'ipv6 unreachable default table isp1'
    assert spec_text(route(dest='192.0.2.0/24', dev='wan1', scope='global'), '7') == \
        '192.0.2.0/24 dev wan1 table 7 scope global'


def test_complete_takes_the_interface_the_kernel_chose():
    wanted = route(dest='default', gateway='198.51.100.1')
    have = dict(wanted, dev='wan1')
    assert complete(wanted, have) == have
    assert complete(wanted, dict(have, gateway='198.51.100.9'))['dev'] is None
    multi = route(dest='default', nexthops=[{'gateway': '198.51.100.1'}, {'gateway': '203.0.113.1', 'dev': 'wan2'}])
    kernel = dict(multi, nexthops=(('198.51.100.1', 'wan1', 1), ('203.0.113.1', 'wan2', 1)))
    assert complete(multi, kernel) == kernel


def test_table_entries_single_and_list_form():
    single = table_entries({'table': '5', 'routes': None, 'purge': None, 'copy_from': None, 'copy_exclude': None,
                            'family': None, 'state': 'present', 'tables': None})
    assert single == [('', {'table': '5', 'routes': [], 'purge': False, 'copy_from': None, 'copy_exclude': [],
                            'family': None, 'state': 'present'})]
    listed = table_entries({'state': 'absent', 'tables': [{'table': '5', 'state': None}, {'table': '6', 'state': 'present'}]})
    assert [(field, entry['state']) for field, entry in listed] == [('tables[0].', 'absent'), ('tables[1].', 'present')]


class _Kind(RouteKind):
    def __init__(self):
        super(_Kind, self).__init__(None, INTERFACES, {})


def _target(kernel=None, **entry):
    base = {'table': '4', 'routes': [], 'purge': False, 'copy_from': None, 'copy_exclude': [],
            'family': None, 'state': 'present'}
    base.update(entry)
    return TableTarget('', base, None, {'main': 254}, INTERFACES, None, _reader(kernel or {}))


def _reader(kernel):
    return lambda family, table: kernel.get((family, table), [])


def test_copy_from_plan():
    main = [
        from_netlink(_raw(table=254), NAMES),  # connected route: copied as proto boot
        route(dest='default', gateway='198.51.100.1', dev='wan1'),
        route(dest='10.0.0.0/8', gateway='198.51.100.1', dev='wan1', metric=5),
    ]
    main = [dict(item, table=254) for item in main]
    kernel = {('ipv4', 254): main}
    target = _target(copy_from='main', copy_exclude=['default'], family='ipv4',
                     routes=[{'dest': '10.0.0.0/8', 'type': 'blackhole', 'metric': 5}])
    plan = target.plan(_Kind(), _reader(kernel))
    assert plan.commands == [
        'ip route add 198.51.100.0/24 dev wan1 table 4 src 198.51.100.2',
        'ip route add blackhole 10.0.0.0/8 table 4 metric 5',  # the listed route wins
    ]


class _AddressSocket:
    """dump_route_messages of table local and dump_addresses, as the kernel of a small router gives them."""

    LOCAL = [('127.0.0.0', 8, 2), ('127.0.0.1', 32, 2), ('127.255.255.255', 32, 3), ('198.51.100.2', 32, 2),
             ('198.51.100.255', 32, 3), ('192.0.2.0', 24, 2)]  # the last one: AnyIP
    ADDRESSES = [(socket.AF_INET6, '2001:db8:1::2/64', 0, 0, 2), (socket.AF_INET6, 'fe80::2/64', 253, 0, 2),
                 (socket.AF_INET6, '2001:db8:2::2/64', 0, 0x40, 3),  # tentative
                 (socket.AF_INET6, '::1/128', 254, 0x80, 1), (socket.AF_INET, '198.51.100.2/24', 0, 0x80, 2)]

    def __init__(self):
        self.dumps = 0

    def dump_route_messages(self, family, table):
        assert (family, table) == (socket.AF_INET, 255)
        self.dumps += 1
        messages = []
        for dst, length, route_type in self.LOCAL:
            data = _netlink.encode_route({'family': family, 'table': table, 'dst': dst, 'dst_len': length, 'proto': 2,
                                          'scope': 254, 'type': route_type, 'flags': 0, 'oif': 1})
            messages.append((data, 0, len(data)))
        return messages

    def dump_addresses(self):
        self.dumps += 1
        return [{'kind': 'address', 'action': 'new', 'family': family, 'address': address, 'scope': scope,
                 'flags': flags, 'ifindex': ifindex} for family, address, scope, flags, ifindex in self.ADDRESSES]


@pytest.mark.parametrize('spec,problem', [
    (dict(dest='10.2.0.0/16', dev='wan1', src='198.51.100.2'), None),
    (dict(dest='10.2.0.0/16', dev='wan1', src='127.0.0.5'), None),        # within local 127.0.0.0/8
    (dict(dest='10.2.0.0/16', dev='wan1', src='192.0.2.77'), None),       # AnyIP
    (dict(dest='10.2.0.0/16', type='blackhole', src='198.51.100.2'), None),
    (dict(dest='10.2.0.0/16', dev='wan1', src='198.51.100.7'), '198.51.100.7 is not a local address'),
    (dict(dest='10.2.0.0/16', dev='wan1', src='198.51.100.255'), '198.51.100.255 is not a local address'),
    (dict(dest='10.2.0.0/16', dev='wan1', src='127.255.255.255'), 'is not a local address'),
    (dict(dest='2001:db8:9::/48', dev='wan2', src='2001:db8:1::2'), None),
    (dict(dest='2001:db8:9::/48', dev='wan1', src='fe80::2'), None),
    (dict(dest='2001:db8:9::/48', gateway='2001:db8:1::1', src='fe80::2'), None),  # the kernel picks the interface
    (dict(dest='2001:db8:9::/48', dev='wan1', src='2001:DB8:1:0::2'), None),
    (dict(dest='2001:db8:9::/48', dev='wan1', src='2001:db8:1::9'), '2001:db8:1::9 is not a local address'),
    (dict(dest='2001:db8:9::/48', dev='wan1', src='2001:db8:2::2'), '2001:db8:2::2 is tentative on wan2'),
    (dict(dest='2001:db8:9::/48', dev='wan2', src='fe80::2'), 'fe80::2 is an address of wan1 only, with link scope'),
    (dict(dest='2001:db8:9::/48', dev='wan1', src='::1'), '::1 is an address of lo only, with host scope'),
    (dict(dest='2001:db8:9::/48', type='blackhole', src='::1'), None),  # the kernel gives it the loopback
])
def test_local_addresses_take_what_the_kernel_takes_as_src(spec, problem):
    found = LocalAddresses(_AddressSocket(), INTERFACES).refusal(route(**spec))
    if problem is None:
        assert found is None
    else:
        assert problem in found


def test_a_src_is_checked_where_a_listed_route_is_sent_and_addresses_read_once():
    sock = _AddressSocket()
    local = LocalAddresses(sock, INTERFACES)
    listed = [{'dest': '10.%d.0.0/16' % index, 'dev': 'wan1', 'src': '198.51.100.2'} for index in range(3)]
    have = dict(route(dest='10.9.0.0/16', dev='wan1', src='198.51.100.9'), table=4)
    # The kernel has 10.9.0.0/16 as asked already: nothing to send, nothing to check.
    listed.append('10.9.0.0/16 dev wan1 src 198.51.100.9')
    target = _target(kernel={('ipv4', 4): [have]}, routes=listed)
    plan = target.plan(_Kind(), _reader({('ipv4', 4): [have]}))
    assert len(plan.ops) == 3
    check_sources(plan, [target], local)
    assert sock.dumps == 1
    target = _target(routes=listed[:1] + [{'dest': '10.5.0.0/16', 'dev': 'wan1', 'src': '198.51.100.7'}])
    with pytest.raises(InputError) as caught:
        check_sources(target.plan(_Kind(), _reader({})), [target], local)
    assert str(caught.value).startswith('routes[1].src: 198.51.100.7 is not a local address')
    # Deleted routes are not looked at.
    target = _target(kernel={('ipv4', 4): [have]}, routes=[], purge=True)
    plan = target.plan(_Kind(), _reader({('ipv4', 4): [have]}))
    assert plan.commands == ['ip route del 10.9.0.0/16 dev wan1 table 4 src 198.51.100.9']
    check_sources(plan, [target], LocalAddresses(None, INTERFACES))


def test_purge_never_owns_kernel_routes():
    connected = from_netlink(_raw(table=4), NAMES)
    stale = dict(route(dest='10.0.0.0/8', gateway='198.51.100.1', dev='wan1'), table=4)
    kernel = {('ipv4', 4): [connected, stale]}
    plan = _target(purge=True, family='ipv4').plan(_Kind(), _reader(kernel))
    assert plan.commands == ['ip route del 10.0.0.0/8 via 198.51.100.1 dev wan1 table 4']
    assert key(stale) == ('ipv4', 4, '10.0.0.0/8', 0, 0)


@pytest.mark.parametrize('table,message', [
    ('local', 'table: table local (255)'),
    ('255', 'table: table local (255)'),
    ('0', 'table: table id 0 is out of range'),
    ('nope', "table: unknown routing table name 'nope'"),
])
def test_bad_tables(table, message):
    with pytest.raises(InputError) as caught:
        TableTarget('', {'table': table, 'routes': [], 'purge': False, 'copy_from': None, 'copy_exclude': [],
                         'family': None, 'state': 'present'}, None, {'main': 254, 'local': 255}, INTERFACES, None,
                    _reader({}))
    assert message in str(caught.value)


@pytest.mark.parametrize('sizes,expected', [
    ([], []),
    ([100] * 3, [(0, 3)]),
    ([30000, 30000, 30000], [(0, 2), (2, 1)]),   # 64 KiB per send
    ([70000, 10], [(0, 1), (1, 1)]),             # an oversized request still goes, alone
])
def test_requests_are_sent_in_batches_of_64k(sizes, expected):
    batches = list(_netlink._batches([b'x' * size for size in sizes]))
    assert [(start, len(chunk)) for start, chunk in batches] == expected


# ---------------------------------------------------------------- the string form

@pytest.mark.parametrize('text,expected', [
    ('100.64.1.0/24 via 198.51.100.1 dev wan1 metric 10',
     dict(dest='100.64.1.0/24', gateway='198.51.100.1', dev='wan1', metric=10)),
    ('blackhole 100.64.2.0/24', dict(type='blackhole', dest='100.64.2.0/24')),
    ('  192.0.2.0/24   dev\twan1 ', dict(dest='192.0.2.0/24', dev='wan1')),
    ('ipv6 unreachable default', dict(family='ipv6', type='unreachable', dest='default')),
    ('unicast default via 198.51.100.1', dict(type='unicast', dest='default', gateway='198.51.100.1')),
    # Words between the destination and the first nexthop come in any order.
    ('192.0.2.0/24 metric 5 scope global src 198.51.100.2 proto static dev wan1',
     dict(dest='192.0.2.0/24', metric=5, scope='global', src='198.51.100.2', proto='static', dev='wan1')),
    ('default via 192.168.7.1 dev wan1 onlink', dict(dest='default', gateway='192.168.7.1', dev='wan1', onlink=True)),
    ('default nexthop via 198.51.100.1 dev wan1 weight 2 nexthop via 203.0.113.1 dev wan2',
     dict(dest='default', nexthops=[{'gateway': '198.51.100.1', 'dev': 'wan1', 'weight': 2},
                                    {'gateway': '203.0.113.1', 'dev': 'wan2'}])),
    ('default metric 7 nexthop via 198.51.100.1 onlink nexthop via 203.0.113.1 weight 3 onlink',
     dict(dest='default', metric=7, onlink=True, nexthops=[{'gateway': '198.51.100.1'},
                                                           {'gateway': '203.0.113.1', 'weight': 3}])),
])
def test_parse_route_text(text, expected):
    assert parse_route_text(text, 'routes[0]') == expected


@pytest.mark.parametrize('text,message', [
    ('100.64.1.0/24 vai 198.51.100.1', "unknown word 'vai' in route '100.64.1.0/24 vai 198.51.100.1'"),
    ('', "no destination in route ''"),
    ('blackhole', "no destination in route 'blackhole'"),
    ('via 198.51.100.1', "no destination before 'via'"),
    ('ipv6 nexthop via 2001:db8::1', "no destination before 'nexthop'"),
    ('default dev wan1 dev wan2', "'dev' given twice"),
    ('default via', "'via' needs a value"),
    ('default dev wan1 metric ten', "'metric' needs a number, got 'ten'"),
    ('default dev wan1 metric -1', "'metric' needs a number, got '-1'"),
    ('default dev wan1 table 100', "'table' is not a word of a route here"),
    ('default dev wan1 weight 2', "unknown word 'weight'"),
    ('default blackhole', "unknown word 'blackhole'"),
    ('default nexthop weight 2 nexthop via 203.0.113.1', 'no via or dev (nexthop 1)'),
    ('default nexthop via 198.51.100.1 nexthop via 203.0.113.1 weight x', "'weight' needs a number, got 'x' (nexthop 2)"),
    ('default nexthop via 198.51.100.1 src 198.51.100.2', "'src' after a nexthop (route words come before"),
    ('default nexthop via 198.51.100.1 bogus', "unknown word 'bogus' (nexthop 1)"),
    ('default nexthop via 198.51.100.1 via 198.51.100.9', "'via' given twice (nexthop 1)"),
    ('default nexthop via 198.51.100.1 onlink nexthop via 203.0.113.1', 'onlink on some nexthops only'),
])
def test_parse_route_text_rejects(text, message):
    with pytest.raises(InputError) as caught:
        parse_route_text(text, 'tables[0].routes[3]')
    assert caught.value.field == 'tables[0].routes[3]'
    assert str(caught.value).startswith('tables[0].routes[3]: ')
    assert message in str(caught.value)
    assert str(caught.value).endswith(' in route %r' % text)


def test_a_whole_file_on_one_line_is_not_quoted_whole():
    """Routes joined with spaces instead of newlines: the error names the line and quotes its start."""
    text = ' '.join('100.64.%d.0/24 via 198.51.100.1' % third for third in range(1000))
    with pytest.raises(InputError) as caught:
        normalize_routes([text], 'routes', 100, INTERFACES)
    message = str(caught.value)
    assert message.startswith("routes[0]: unknown word '100.64.1.0/24' in route '100.64.0.0/24 via 198.51.100.1 ")
    assert message.endswith('... (%d characters)' % (len(text) + 2)) and len(message) < 400
    with pytest.raises(InputError) as caught:
        normalize_routes([[text] * 3], 'routes', 100, INTERFACES)
    assert 'a route is a mapping of options or a string, got [' in str(caught.value) and len(str(caught.value)) < 400


@pytest.mark.parametrize('spec', ROUND_TRIP + [
    # point-to-point links: nexthops without a gateway, alone or beside one with
    dict(dest='default', nexthops=[{'dev': 'wan1'}, {'dev': 'wan2', 'weight': 2}]),
    dict(dest='default', nexthops=[{'dev': 'wan2'}, {'gateway': '198.51.100.1', 'dev': 'wan1'}]),
    dict(dest='default', type='unreachable', family='ipv6'),
    dict(dest='192.0.2.0/24', dev='wan1', scope='global'),
    dict(dest='192.0.2.7', dev='wan1', proto='77'),
])
def test_commands_read_back_as_strings(spec):
    """The words of the commands (without the table) are the string form of the same route."""
    wanted = route(**spec)
    text = spec_text(wanted, '100').replace(' table 100', '')
    if wanted['family'] == 'ipv6':
        text = 'ipv6 ' + text
    assert route(**parse_route_text(text, 'routes[0]')) == wanted


@pytest.mark.parametrize('element,message', [
    ({'dest': 'default', 'device': 'wan1'}, 'routes[2].device: not an option (known: dest, dev'),
    ({'gateway': '198.51.100.1'}, 'routes[2].dest: required'),
    ({'dest': 'default', 'dev': 'wan1', 'metric': 'ten'}, "routes[2].metric: expected int, got 'ten'"),
    ({'dest': 'default', 'type': 'local'}, "routes[2].type: one of blackhole, prohibit, throw, unicast, unreachable"),
    ({'dest': 'default', 'nexthops': [{'gateway': '198.51.100.1'}, {'dev': 'wan2', 'weight': 'two'}]},
     "routes[2].nexthops[1].weight: expected int, got 'two'"),
    (5, 'routes[2]: a route is a mapping of options or a string, got 5'),
    (['default', 'dev', 'wan1'], 'routes[2]: a route is a mapping of options or a string'),
])
def test_route_options_checks_mappings_as_ansible_did(element, message):
    with pytest.raises(InputError) as caught:
        route_options(element, 'routes[2]')
    assert str(caught.value).startswith(message)


def test_route_options_fills_in_defaults_and_converts():
    options = route_options({'dest': '192.0.2.0/24', 'dev': 'wan1', 'metric': '5', 'onlink': 'yes'}, 'routes[0]')
    assert options['metric'] == 5 and options['onlink'] is True and options['type'] == 'unicast'
    assert options['proto'] == 'boot' and options['gateway'] is None


@pytest.mark.parametrize('element,expected', [
    ('192.0.2.0/24 via 198.51.100.1', ('192.0.2.0/24', ('text', (), ('via', '198.51.100.1')))),
    ('ipv6 blackhole 2001:db8::/32', ('2001:db8::/32', ('text', ('ipv6', 'blackhole'), ()))),
    ('via 198.51.100.1', (None, None)),
    ('blackhole', (None, None)),
    ({'dest': '192.0.2.0/24', 'metric': 1, 'dev': 'wan1'},
     ('192.0.2.0/24', ('dict', (('dev', 'str', 'wan1'), ('metric', 'int', 1))))),
    ({'dest': 'default', 'nexthops': []}, (None, None)),
    ({'dest': 7, 'dev': 'wan1'}, (None, None)),
    ({'dev': 'wan1'}, (None, None)),
    (7, (None, None)),
])
def test_route_shape(element, expected):
    assert route_shape(element) == expected


MIXED = [
    '100.64.1.0/24 via 198.51.100.1 dev wan1 metric 10',
    '100.64.2.0/24 via 198.51.100.1 dev wan1 metric 10',
    {'dest': '100.64.3.0/24', 'gateway': '198.51.100.1', 'dev': 'wan1', 'metric': 10},
    {'gateway': '198.51.100.1', 'dest': '100.64.4.0/24', 'metric': 10, 'dev': 'wan1'},
    'blackhole 100.64.5.0/24',
    'blackhole default metric 5',
    'blackhole 2001:db8:5::/48',
    'default nexthop via 198.51.100.1 dev wan1 weight 2 nexthop via 203.0.113.1 dev wan2',
    '2001:db8:7::/48 via 2001:db8:1::1',
    '2001:db8:8::/48 via 2001:db8:1::1 metric 0',
    {'dest': '100.64.9.0/24', 'dev': 'wan2', 'onlink': 'yes'},
    {'dest': '100.64.10.0/24', 'dev': 'wan2', 'onlink': True},
]


def test_normalize_routes_mixed_forms_as_one_by_one():
    """Routes of one shape are copies of the first with their own dest: the same as normalizing each."""
    routes = normalize_routes(MIXED, 'routes', 100, INTERFACES)
    one_by_one = [normalize_route(route_options(element, 'routes[%d]' % index), 'routes[%d]' % index, 100, INTERFACES)
                  for index, element in enumerate(MIXED)]
    assert list(routes.values()) == one_by_one
    assert one_by_one[1]['dest'] == '100.64.2.0/24' and one_by_one[1]['metric'] == 10
    assert one_by_one[5]['family'] == 'ipv4' and one_by_one[6]['family'] == 'ipv6'
    assert one_by_one[9]['metric'] == 1024


def test_string_and_mapping_of_one_route_are_the_same_route():
    both = ['192.0.2.0/24 via 198.51.100.1 dev wan1', {'dest': '192.0.2.0/24', 'gateway': '198.51.100.1', 'dev': 'wan1'}]
    assert len(normalize_routes(both, 'routes', 100, INTERFACES)) == 1
    with pytest.raises(InputError) as caught:
        normalize_routes(['192.0.2.0/24 dev wan1', {'dest': '192.0.2.0/24', 'dev': 'wan2'}], 'routes', 100, INTERFACES)
    assert str(caught.value).startswith('routes[1]: conflicts with routes[0]')


def test_a_string_of_several_lines_is_a_route_per_line():
    """As a file of routes read with lookup('file') gives them; blank lines left out."""
    text = '192.0.2.0/24 via 198.51.100.1 dev wan1\n\n  192.0.3.0/24 via 198.51.100.1 dev wan1  \r\n'
    lines = normalize_routes([text, '192.0.4.0/24 dev wan2'], 'routes', 100, INTERFACES)
    one_by_one = normalize_routes(['192.0.2.0/24 via 198.51.100.1 dev wan1', '192.0.3.0/24 via 198.51.100.1 dev wan1',
                                   '192.0.4.0/24 dev wan2'], 'routes', 100, INTERFACES)
    assert lines == one_by_one and len(lines) == 3
    # the routes of one line are named by it
    with pytest.raises(InputError) as caught:
        normalize_routes(['192.0.2.0/24 dev wan1\n192.0.3.0/24 vai 198.51.100.1\n'], 'routes', 100, INTERFACES)
    assert str(caught.value) == "routes[0] line 2: unknown word 'vai' in route '192.0.3.0/24 vai 198.51.100.1'"
    with pytest.raises(InputError) as caught:
        normalize_routes(['192.0.9.0/24 dev wan2', '192.0.2.0/24 dev wan1\n192.0.9.0/24 dev wan1'], 'tables[0].routes',
                         100, INTERFACES)
    assert str(caught.value).startswith('tables[0].routes[1] line 2: conflicts with tables[0].routes[0]: same dest')


@pytest.mark.parametrize('routes,message', [
    # The second of a shape still has its dest checked, and a family of its own.
    (['192.0.2.0/24 via 198.51.100.1', 'x via 198.51.100.1'], "routes[1].dest: not an IP address or prefix: 'x'"),
    (['192.0.2.0/24 via 198.51.100.1', '192.0.3.1/24 via 198.51.100.1'], "routes[1].dest: prefix '192.0.3.1/24' has host"),
    (['192.0.2.0/24 via 198.51.100.1', '2001:db8::/32 via 198.51.100.1'], 'routes[1]: mixed address families'),
    (['192.0.2.0/24 dev wan1', '192.0.3.0/24 dev eth9'], "routes[1].dev: no interface 'eth9'"),
    ([{'dest': '192.0.2.0/24', 'dev': 'wan1', 'metric': 1}, {'dest': '192.0.3.0/24', 'dev': 'wan1', 'metric': True}],
     'routes[1].metric: expected int, got True'),
    (['192.0.2.0/24 vai 198.51.100.1'], "routes[0]: unknown word 'vai' in route '192.0.2.0/24 vai 198.51.100.1'"),
    (['default via gw'], "routes[0].gateway: not an IP address: 'gw'"),
    (['default via 198.51.100.1 dev wan1 scope sky'], "routes[0].scope"),
    (['default via 198.51.100.1 proto bogus'], 'routes[0].proto: unknown route protocol'),
    (['blackhole default via 198.51.100.1'], 'routes[0].type: a blackhole route has no gateway'),
    (['ipv6 default via 198.51.100.1'], 'routes[0].family: family ipv6 does not match'),
    (['default nexthop via 198.51.100.1'], 'routes[0].nexthops: a multipath route needs at least two'),
    (['default nexthop via 198.51.100.1 weight 300 nexthop via 203.0.113.1'],
     'routes[0].nexthops[0].weight: weight 300 is out of range 1..256'),
])
def test_normalize_routes_rejects_strings_and_shapes(routes, message):
    with pytest.raises(InputError) as caught:
        normalize_routes(routes, 'routes', 100, INTERFACES)
    assert str(caught.value).startswith(message)


def _table_of(specs, **extra):
    """The routes of table 100 as the kernel would dump them."""
    return [dict(route(**spec), **extra) for spec in specs]


def test_known_routes_give_what_normalizing_gives():
    """A string that is the text of a route the table has is that route, the same as normalizing it."""
    kernel = list(dict((key(item), item) for item in _table_of(ROUND_TRIP)).values())  # one per key, as dumped
    kernel.append(from_netlink(_raw(), NAMES))  # a connected route (proto kernel)
    kernel += _table_of([dict(dest='192.0.%d.0/24' % n, gateway='198.51.100.1', dev='wan1') for n in range(3, 9)])
    tables = {(family, 100): [item for item in kernel if item['family'] == family] for family in ('ipv4', 'ipv6')}
    strings = [spec_text(item, None) for item in kernel]
    known = KnownRoutes(_reader(tables), 100, None, INTERFACES, None)
    found = normalize_routes(strings, 'routes', 100, INTERFACES, known=known.get)
    assert found == normalize_routes(strings, 'routes', 100, INTERFACES)
    assert all(known.get(text) is not None for text in strings if ':' not in text)
    # The very dicts the kernel gave: the plan compares them by identity first.
    assert [item for item in found.values() if item in kernel] == list(found.values())


def test_known_routes_leave_out_what_does_not_read_back():
    six = _table_of([dict(dest='default', dev='wan1', family='ipv6')])   # text 'default dev wan1' is IPv4
    tos = _table_of([dict(dest='192.0.2.0/24', dev='wan1')], tos=8)     # TOS has no word in the text
    tables = {('ipv6', 100): six, ('ipv4', 100): tos}
    known = KnownRoutes(_reader(tables), 100, None, INTERFACES, None)
    assert known.get('default dev wan1') is None
    assert known.get('192.0.2.0/24 dev wan1') is None
    routes = normalize_routes(['default dev wan1', '192.0.2.0/24 dev wan1'], 'routes', 100, INTERFACES,
                              known=known.get)
    assert [(item['family'], item['tos']) for item in routes.values()] == [('ipv4', 0), ('ipv4', 0)]


def test_known_routes_keep_the_family_and_the_conflict_checks():
    tables = {('ipv4', 100): _table_of([dict(dest='192.0.2.0/24', dev='wan1')])}
    read = []

    def reader(family, table):
        read.append(family)
        return tables.get((family, table), [])

    assert KnownRoutes(reader, 100, 'ipv6', INTERFACES, None).get('192.0.2.0/24 dev wan1') is None
    assert read == []   # not the entry's family: not even read
    known = KnownRoutes(reader, 100, None, INTERFACES, None)
    with pytest.raises(InputError) as caught:
        normalize_routes(['192.0.2.0/24 dev wan1', '192.0.2.0/24 dev wan2'], 'routes', 100, INTERFACES,
                         known=known.get)
    assert str(caught.value).startswith('routes[1]: conflicts with routes[0]')
    assert read == ['ipv4']   # once, and only the family the strings have


class FakeReads:
    """TableReads' dump and asked, over messages given as bytes per (family, table)."""

    def __init__(self, dumps):
        self.dumps = dumps
        self.asked = set(dumps)

    def dump(self, family, table):
        data = b'..' + b''.join(self.dumps[(family, table)])
        messages, offset = [], 2
        for message in self.dumps[(family, table)]:
            messages.append((data, offset, offset + len(message)))
            offset += len(message)
        return messages


PARAMS = {'table': '100', 'routes': ['10.0.0.0/8 via 198.51.100.1'], 'netns': 'lab'}
DUMPS = {('ipv4', 100): [b'route one', b'route two']}


def test_a_memo_knows_a_rerun_on_the_same_inputs_and_nothing_else(tmp_path):
    directory = str(tmp_path / 'memo')
    result = {'changed': False, 'commands': [], 'tables': [100], 'table': 100}

    def memo(params=None, names=None, interfaces=None):
        return Memo(params or PARAMS, names or {'main': 254}, interfaces or INTERFACES, directory=directory)

    assert memo().recall(FakeReads(DUMPS)) is None  # nothing remembered yet
    memo().remember(FakeReads(DUMPS), dict(result, changed=True, commands=['ip route add ...']))
    assert os.stat(directory).st_mode & 0o777 == 0o700
    assert os.stat(memo().path).st_mode & 0o777 == 0o600
    # The same run again has nothing to do: the result of a no-op, with the same tables.
    assert memo().recall(FakeReads(DUMPS)) == result
    # Anything that differs plans as always.
    assert memo().recall(FakeReads({('ipv4', 100): [b'route one', b'route 2']})) is None
    assert memo().recall(FakeReads({('ipv4', 100): [b'route one']})) is None
    assert memo(params=dict(PARAMS, routes=['10.0.0.0/8 via 198.51.100.9'])).recall(FakeReads(DUMPS)) is None
    assert memo(names={'main': 254, 'isp1': 100}).recall(FakeReads(DUMPS)) is None
    assert memo(interfaces={'lo': 1, 'wan1': 3, 'wan2': 2}).recall(FakeReads(DUMPS)) is None
    # The message boundaries count, not only the bytes.
    assert memo().recall(FakeReads({('ipv4', 100): [b'route on', b'eroute two']})) is None


def test_a_memo_that_cannot_be_trusted_is_not_used(tmp_path):
    directory = tmp_path / 'memo'
    memo = Memo(PARAMS, {}, INTERFACES, directory=str(directory))
    memo.remember(FakeReads(DUMPS), {'tables': [100], 'table': 100})
    with open(memo.path, 'a') as handle:
        handle.write('damaged')
    assert memo.recall(FakeReads(DUMPS)) is None
    memo.remember(FakeReads(DUMPS), {'tables': [100], 'table': 100})
    assert memo.recall(FakeReads(DUMPS)) is not None
    # Readable by others: someone else could have written it.
    os.chmod(str(directory), 0o755)
    assert memo.recall(FakeReads(DUMPS)) is None


def test_nexthops_without_a_gateway_in_words():
    wanted = route(dest='default', nexthops=[{'dev': 'wan2', 'weight': 2}, {'dev': 'wan1'}])
    assert wanted['nexthops'] == ((None, 'wan1', 1), (None, 'wan2', 2))
    assert spec_text(wanted, None) == 'default nexthop dev wan1 weight 1 nexthop dev wan2 weight 2'
