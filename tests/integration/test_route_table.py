"""netpolicy.routing.route_table against the real kernel, in a fresh namespace per test."""
import json
import os
import socket
import time

import pytest

from ansible_collections.netpolicy.routing.plugins.module_utils import _netlink
from ansible_collections.netpolicy.routing.plugins.module_utils._routes import MEMO_DIR, from_netlink, memo_path, routes_of_dump
from tests.helpers.fuzz import in_child
from tests.helpers.modules import run_module

DEBIAN_PYTHON = '/usr/bin/python3'


def lab(ns):
    """wan1 and wan2 with IPv4 and IPv6 lab addresses (veth pairs: both ends in ``ns``, up)."""
    for ifname, v4, v6 in (('wan1', '198.51.100.2/24', '2001:db8:1::2/64'),
                           ('wan2', '203.0.113.2/24', '2001:db8:2::2/64')):
        ns.ip('link', 'add', ifname, 'type', 'veth', 'peer', 'name', ifname + 'p')
        for end in (ifname, ifname + 'p'):
            # No link-local addresses: their routes appear late and would race the snapshots.
            ns.ip('link', 'set', end, 'addrgenmode', 'none')
        ns.ip('addr', 'add', v4, 'dev', ifname)
        ns.ip('addr', 'add', v6, 'dev', ifname, 'nodad')
        ns.ip('link', 'set', ifname, 'up')
        ns.ip('link', 'set', ifname + 'p', 'up')
    # The carrier comes up a moment later, and the routes' "linkdown" goes with it:
    # a snapshot taken in between would differ from the next one.
    deadline = time.monotonic() + 5
    while any('linkdown' in ns.ip(family, 'route', 'show', 'table', 'all').stdout for family in ('-4', '-6')):
        assert time.monotonic() < deadline, 'the veth links of the test namespace did not come up'
        time.sleep(0.02)
    return ns


def _ip_route_show(ns, table, family):
    # A table without routes does not exist for the kernel: `ip route show` fails then.
    return ns.ip(family, 'route', 'show', 'table', str(table), check=False).stdout


def show(ns, table, family='-4'):
    return sorted(line.strip() for line in _ip_route_show(ns, table, family).splitlines()
                  if line.strip() and not line.startswith(('\t', ' ')))


def show_full(ns, table, family='-4'):
    """Multipath routes span lines in `ip route` output: join them."""
    return _ip_route_show(ns, table, family).replace('\n\t', ' ').split('\n')


def snapshot(ns):
    return (ns.ip('-4', 'route', 'show', 'table', 'all').stdout,
            ns.ip('-6', 'route', 'show', 'table', 'all').stdout)


def route_table(ns, check=False, diff=False, python=None, **args):
    args['netns'] = ns.name
    return run_module('route_table', args, check=check, diff=diff, python=python)


ROUTES = [
    {'dest': 'default', 'gateway': '198.51.100.1', 'dev': 'wan1'},
    {'dest': '192.0.2.0/24', 'dev': 'wan2'},
    {'dest': '192.168.10.0/24', 'gateway': '203.0.113.1', 'metric': 20, 'proto': 'static'},
    {'dest': '2001:db8:10::/48', 'gateway': '2001:db8:1::1', 'dev': 'wan1'},
]


def test_apply_check_rerun_diff(netns):
    ns = lab(netns)
    check = route_table(ns, table='101', routes=ROUTES, check=True, diff=True)
    assert check['changed'] and 'failed' not in check, check
    assert show(ns, 101) == []

    real = route_table(ns, table='101', routes=ROUTES, diff=True)
    assert real['changed'] and 'failed' not in real, real
    assert check['commands'] == real['commands']
    assert check['diff'] == real['diff']
    assert real['commands'] == [
        'ip route add default via 198.51.100.1 dev wan1 table 101',
        'ip route add 192.0.2.0/24 dev wan2 table 101',
        'ip route add 192.168.10.0/24 via 203.0.113.1 table 101 proto static metric 20',
        'ip -6 route add 2001:db8:10::/48 via 2001:db8:1::1 dev wan1 table 101',
    ]
    assert real['diff']['before'] == ''
    assert '192.0.2.0/24 dev wan2 table 101\n' in real['diff']['after']
    assert show(ns, 101) == ['192.0.2.0/24 dev wan2 scope link',
                             '192.168.10.0/24 via 203.0.113.1 dev wan2 proto static metric 20',
                             'default via 198.51.100.1 dev wan1']
    assert show(ns, 101, '-6') == ['2001:db8:10::/48 via 2001:db8:1::1 dev wan1 metric 1024 pref medium']
    assert real['table'] == 101 and real['tables'] == [101]
    assert len(real['routes']) == 4 and check['routes'] == real['routes']

    again = route_table(ns, table='101', routes=ROUTES, diff=True)
    assert not again['changed'] and again['commands'] == [], again
    assert again['diff']['before'] == again['diff']['after']
    # The rerun knows the interface the kernel chose for the route given by gateway only.
    assert '192.168.10.0/24 via 203.0.113.1 dev wan2 table 101 proto static metric 20\n' in again['diff']['after']
    quiet = route_table(ns, table='101', routes=ROUTES, check=True)
    assert not quiet['changed'] and 'routes' not in quiet, 'the table is listed in diff mode only'

    # One attribute differs: replaced in place, predicted exactly.
    moved = [dict(ROUTES[0], gateway='198.51.100.9')] + ROUTES[1:]
    check = route_table(ns, table='101', routes=moved, check=True)
    real = route_table(ns, table='101', routes=moved)
    assert check['commands'] == real['commands'] == [
        'ip route replace default via 198.51.100.9 dev wan1 table 101']
    assert 'default via 198.51.100.9 dev wan1' in show(ns, 101)


# ROUTES in the string form, one of them left a mapping: both forms mix.
ROUTE_STRINGS = [
    'default via 198.51.100.1 dev wan1',
    '192.0.2.0/24 dev wan2',
    {'dest': '192.168.10.0/24', 'gateway': '203.0.113.1', 'metric': 20, 'proto': 'static'},
    '2001:db8:10::/48 via 2001:db8:1::1 dev wan1',
]


def test_string_form_apply_check_rerun(netns):
    ns = lab(netns)
    check = route_table(ns, table='101', routes=ROUTE_STRINGS, check=True, diff=True)
    assert check['changed'] and 'failed' not in check, check
    assert show(ns, 101) == []

    real = route_table(ns, table='101', routes=ROUTE_STRINGS, diff=True)
    assert real['changed'] and 'failed' not in real and not real.get('warnings'), real
    assert check['commands'] == real['commands'] and check['diff'] == real['diff']
    assert real['commands'] == [
        'ip route add default via 198.51.100.1 dev wan1 table 101',
        'ip route add 192.0.2.0/24 dev wan2 table 101',
        'ip route add 192.168.10.0/24 via 203.0.113.1 table 101 proto static metric 20',
        'ip -6 route add 2001:db8:10::/48 via 2001:db8:1::1 dev wan1 table 101',
    ]
    assert show(ns, 101) == ['192.0.2.0/24 dev wan2 scope link',
                             '192.168.10.0/24 via 203.0.113.1 dev wan2 proto static metric 20',
                             'default via 198.51.100.1 dev wan1']

    again = route_table(ns, table='101', routes=ROUTE_STRINGS, diff=True)
    assert not again['changed'] and again['commands'] == [], again
    assert not route_table(ns, table='101', routes=ROUTE_STRINGS, check=True)['changed']
    # The same routes as mappings: nothing to do either.
    assert not route_table(ns, table='101', routes=ROUTES)['changed']
    # As one string, the routes separated by commas: Ansible splits it into the list.
    joined = ','.join(ROUTE_STRINGS[:2] + ['192.168.10.0/24 via 203.0.113.1 metric 20 proto static'] + ROUTE_STRINGS[3:])
    assert not route_table(ns, table='101', routes=joined)['changed']

    moved = ['default via 198.51.100.9 dev wan1'] + ROUTE_STRINGS[1:]
    check = route_table(ns, table='101', routes=moved, check=True)
    real = route_table(ns, table='101', routes=moved)
    assert check['commands'] == real['commands'] == [
        'ip route replace default via 198.51.100.9 dev wan1 table 101'], real


def test_routes_one_per_line_as_a_file_gives_them(netns):
    ns = lab(netns)
    text = '\n'.join(['default via 198.51.100.1 dev wan1', '', '192.0.2.0/24 dev wan2',
                      '192.168.10.0/24 via 203.0.113.1 metric 20 proto static',
                      '2001:db8:10::/48 via 2001:db8:1::1 dev wan1']) + '\n'
    check = route_table(ns, table='101', routes=text, check=True)
    real = route_table(ns, table='101', routes=text)
    assert real['changed'] and check['commands'] == real['commands'] and len(real['commands']) == 4, real
    # the same routes as the list of strings: nothing to do, in either form
    assert not route_table(ns, table='101', routes=ROUTE_STRINGS)['changed']
    assert not route_table(ns, table='101', routes=text)['changed']

    # a bad line is named by its number, and nothing changes
    before = snapshot(ns)
    bad = route_table(ns, table='101', routes=text.replace('192.0.2.0/24 dev wan2', '192.0.2.0/24 dev wan9'))
    assert bad['failed'] and bad['msg'] == "routes[0] line 3.dev: no interface 'wan9' in this network namespace", bad
    assert snapshot(ns) == before


def test_a_rerun_on_an_unchanged_table_is_known_from_its_dump(netns):
    ns = lab(netns)
    routes = ['100.64.1.0/24 via 198.51.100.1 dev wan1', '100.64.2.0/24 via 203.0.113.1 dev wan2']
    path = memo_path(MEMO_DIR, os.stat('/run/netns/' + ns.name).st_ino, {'table': '130'})
    # A namespace gone before this one may have had its inode, and left a memo of its own.
    if os.path.exists(path):
        os.unlink(path)
    assert route_table(ns, table='130', routes=routes, check=True)['changed']
    assert not os.path.exists(path)  # check mode writes no memo
    assert route_table(ns, table='130', routes=routes)['changed']
    with open(path) as handle:
        memo = json.load(handle)
    assert memo['reads'] == [['ipv4', 130]] and memo['result'] == {'tables': [130], 'table': 130}

    # The rerun returns from the memo: a result only the memo holds proves it.
    memo['result']['tables'] = [130, 'from the memo']
    with open(path, 'w') as handle:
        json.dump(memo, handle)
    for check in (False, True):
        rerun = route_table(ns, table='130', routes=routes, check=check)
        assert not rerun['changed'] and rerun['commands'] == [] and rerun['tables'] == [130, 'from the memo']
    # Diff mode plans (it shows the routes), and writes the memo again.
    shown = route_table(ns, table='130', routes=routes, diff=True)
    assert not shown['changed'] and shown['tables'] == [130] and len(shown['routes']) == 2

    # A route changed behind the module's back, or other arguments: planned as always.
    ns.ip('route', 'replace', '100.64.2.0/24', 'via', '198.51.100.1', 'dev', 'wan1', 'table', '130')
    fixed = route_table(ns, table='130', routes=routes)
    assert fixed['commands'] == ['ip route replace 100.64.2.0/24 via 203.0.113.1 dev wan2 table 130'], fixed
    assert not route_table(ns, table='130', routes=routes)['changed']
    fewer = route_table(ns, table='130', routes=routes[:1], purge=True)
    assert fewer['commands'] == ['ip route del 100.64.2.0/24 via 203.0.113.1 dev wan2 table 130'], fewer
    assert show(ns, 130) == ['100.64.1.0/24 via 198.51.100.1 dev wan1']

    # A damaged memo is not used.
    with open(path, 'w') as handle:
        handle.write('{"key": ')
    assert route_table(ns, table='130', routes=routes[:1], purge=True)['tables'] == [130]


def test_string_form_types_multipath_list_form(netns):
    ns = lab(netns)
    strings = [
        'default nexthop via 198.51.100.1 dev wan1 weight 2 nexthop via 203.0.113.1 dev wan2',
        'ipv6 default nexthop via 2001:db8:1::1 dev wan1 weight 3 nexthop via 2001:db8:2::1',
        'blackhole 192.0.2.0/26',
        'prohibit 192.0.2.128/26 metric 5',
        'ipv6 unreachable 2001:db8:66::/48',
        '198.18.0.0/24 via 192.168.77.1 dev wan1 onlink',
        '198.18.1.0/24 dev wan2 src 203.0.113.2 scope global proto static',
    ]
    mappings = [
        {'dest': 'default', 'nexthops': [{'gateway': '198.51.100.1', 'dev': 'wan1', 'weight': 2},
                                         {'gateway': '203.0.113.1', 'dev': 'wan2'}]},
        {'dest': 'default', 'nexthops': [{'gateway': '2001:db8:1::1', 'dev': 'wan1', 'weight': 3},
                                         {'gateway': '2001:db8:2::1'}]},
        {'dest': '192.0.2.0/26', 'type': 'blackhole'},
        {'dest': '192.0.2.128/26', 'type': 'prohibit', 'metric': 5},
        {'dest': '2001:db8:66::/48', 'type': 'unreachable', 'family': 'ipv6'},
        {'dest': '198.18.0.0/24', 'gateway': '192.168.77.1', 'dev': 'wan1', 'onlink': True},
        {'dest': '198.18.1.0/24', 'dev': 'wan2', 'src': '203.0.113.2', 'scope': 'global', 'proto': 'static'},
    ]
    tables = [{'table': '105', 'purge': True, 'routes': strings},
              {'table': '106', 'routes': ['default via 203.0.113.1 dev wan2']}]
    check = route_table(ns, tables=tables, check=True)
    real = route_table(ns, tables=tables)
    assert check['commands'] == real['commands'] and len(real['commands']) == 8, real
    assert 'ip route add default table 105 nexthop via 198.51.100.1 dev wan1 weight 2 ' \
        'nexthop via 203.0.113.1 dev wan2 weight 1' in real['commands']
    assert 'ip route add 198.18.1.0/24 dev wan2 table 105 proto static scope global src 203.0.113.2' in real['commands']
    assert 'nexthop via 2001:db8:2::1 dev wan2 weight 1' in ' '.join(show_full(ns, 105, '-6'))
    assert 'prohibit 192.0.2.128/26 metric 5' in show(ns, 105)
    assert show(ns, 106) == ['default via 203.0.113.1 dev wan2']
    assert not route_table(ns, tables=tables)['changed']
    assert not route_table(ns, tables=tables, check=True)['changed']
    # The mappings of the same routes: the same table, nothing to do.
    assert not route_table(ns, table='105', purge=True, routes=mappings)['changed']


def test_absent_and_purge(netns):
    ns = lab(netns)
    assert route_table(ns, table='102', routes=ROUTES)['changed']
    ns.ip('route', 'add', '198.18.0.0/15', 'via', '198.51.100.1', 'table', '102')

    absent = route_table(ns, table='102', routes=[{'dest': '192.0.2.0/24'}, {'dest': '10.9.0.0/16'}], state='absent')
    # Matched by dest and metric: the attributes of an absent route do not matter.
    assert absent['commands'] == ['ip route del 192.0.2.0/24 dev wan2 table 102'], absent
    assert not route_table(ns, table='102', routes=[{'dest': '192.0.2.0/24', 'dev': 'wan2'}], state='absent')['changed']

    keep = [ROUTES[0]]
    check = route_table(ns, table='102', routes=keep, purge=True, family='ipv4', check=True, diff=True)
    real = route_table(ns, table='102', routes=keep, purge=True, family='ipv4', diff=True)
    assert check['commands'] == real['commands']
    assert sorted(real['commands']) == [
        'ip route del 192.168.10.0/24 via 203.0.113.1 dev wan2 table 102 proto static metric 20',
        'ip route del 198.18.0.0/15 via 198.51.100.1 dev wan1 table 102']
    assert real['diff']['after'] == 'default via 198.51.100.1 dev wan1 table 102\n'
    assert show(ns, 102) == ['default via 198.51.100.1 dev wan1']
    assert show(ns, 102, '-6') != [], 'family ipv4: IPv6 routes are not purged'

    flush = route_table(ns, table='102', state='absent', purge=True)
    assert sorted(flush['commands']) == [
        'ip -6 route del 2001:db8:10::/48 via 2001:db8:1::1 dev wan1 table 102',
        'ip route del default via 198.51.100.1 dev wan1 table 102']
    assert show(ns, 102) == [] and show(ns, 102, '-6') == []
    assert not route_table(ns, table='102', state='absent', purge=True)['changed']


def test_purge_keeps_connected_routes_of_main(netns):
    ns = lab(netns)
    before = show(ns, 'main')
    result = route_table(ns, table='main', purge=True, family='ipv4',
                         routes=[{'dest': 'default', 'gateway': '198.51.100.1'}])
    assert result['commands'] == ['ip route add default via 198.51.100.1 table main'], result
    assert show(ns, 'main') == sorted(before + ['default via 198.51.100.1 dev wan1'])


def test_multipath_weights_ipv4_ipv6(netns):
    ns = lab(netns)
    routes = [
        {'dest': 'default', 'nexthops': [{'gateway': '198.51.100.1', 'dev': 'wan1', 'weight': 2},
                                         {'gateway': '203.0.113.1', 'dev': 'wan2'}]},
        {'dest': 'default', 'nexthops': [{'gateway': '2001:db8:1::1', 'dev': 'wan1', 'weight': 3},
                                         {'gateway': '2001:db8:2::1'}]},
    ]
    check = route_table(ns, table='103', routes=routes, check=True)
    real = route_table(ns, table='103', routes=routes)
    assert check['commands'] == real['commands'] == [
        'ip route add default table 103 nexthop via 198.51.100.1 dev wan1 weight 2 '
        'nexthop via 203.0.113.1 dev wan2 weight 1',
        'ip -6 route add default table 103 nexthop via 2001:db8:1::1 dev wan1 weight 3 '
        'nexthop via 2001:db8:2::1 weight 1'], real
    v4 = ' '.join(show_full(ns, 103))
    assert 'nexthop via 198.51.100.1 dev wan1 weight 2' in v4 and 'nexthop via 203.0.113.1 dev wan2 weight 1' in v4
    v6 = ' '.join(show_full(ns, 103, '-6'))
    assert 'nexthop via 2001:db8:1::1 dev wan1 weight 3' in v6 and 'nexthop via 2001:db8:2::1 dev wan2 weight 1' in v6
    assert not route_table(ns, table='103', routes=routes)['changed']

    # Listed in another order: the same route.
    swapped = [dict(routes[0], nexthops=routes[0]['nexthops'][::-1]), routes[1]]
    assert not route_table(ns, table='103', routes=swapped)['changed']

    reweighted = [routes[0], dict(routes[1], nexthops=[{'gateway': '2001:db8:1::1', 'dev': 'wan1'},
                                                       {'gateway': '2001:db8:2::1', 'dev': 'wan2', 'weight': 5}])]
    real = route_table(ns, table='103', routes=reweighted)
    assert real['commands'] == ['ip -6 route replace default table 103 nexthop via 2001:db8:1::1 dev wan1 weight 1 '
                                'nexthop via 2001:db8:2::1 dev wan2 weight 5'], real
    assert 'nexthop via 2001:db8:2::1 dev wan2 weight 5' in ' '.join(show_full(ns, 103, '-6'))
    assert not route_table(ns, table='103', routes=reweighted)['changed']


def test_multipath_over_point_to_point_links(netns):
    """Nexthops without a gateway (ppp, tunnels), as a mapping and in words (IPv4: the kernel
    takes none in an IPv6 multipath route)."""
    ns = lab(netns)
    routes = [{'dest': 'default', 'nexthops': [{'dev': 'wan1'}, {'dev': 'wan2', 'weight': 2}]},
              '192.0.2.0/24 nexthop dev wan1 nexthop via 203.0.113.1 dev wan2 weight 3']
    check = route_table(ns, table='104', routes=routes, check=True)
    real = route_table(ns, table='104', routes=routes)
    assert check['commands'] == real['commands'] == [
        'ip route add default table 104 nexthop dev wan1 weight 1 nexthop dev wan2 weight 2',
        'ip route add 192.0.2.0/24 table 104 nexthop dev wan1 weight 1 nexthop via 203.0.113.1 dev wan2 weight 3'], real
    v4 = ' '.join(show_full(ns, 104))
    assert 'nexthop dev wan1 weight 1' in v4 and 'nexthop dev wan2 weight 2' in v4, v4
    assert 'nexthop via 203.0.113.1 dev wan2 weight 3' in v4, v4
    assert not route_table(ns, table='104', routes=routes)['changed']
    assert not route_table(ns, table='104', routes=routes, check=True)['changed']


def test_every_type_onlink_src_scope(netns):
    ns = lab(netns)
    routes = [
        {'dest': '192.0.2.0/26', 'type': 'blackhole'},
        {'dest': '192.0.2.64/26', 'type': 'unreachable'},
        {'dest': '192.0.2.128/26', 'type': 'prohibit'},
        {'dest': '192.0.2.192/26', 'type': 'throw'},
        {'dest': 'default', 'type': 'unreachable', 'family': 'ipv6'},
        {'dest': '2001:db8:66::/48', 'type': 'blackhole'},
        {'dest': '198.18.0.0/24', 'gateway': '192.168.77.1', 'dev': 'wan1', 'onlink': True},
        {'dest': '198.18.1.0/24', 'dev': 'wan2', 'src': '203.0.113.2', 'scope': 'global'},
        {'dest': '2001:db8:77::/48', 'gateway': '2001:db8:99::1', 'dev': 'wan1', 'onlink': True},
    ]
    check = route_table(ns, table='104', routes=routes, check=True)
    real = route_table(ns, table='104', routes=routes)
    assert check['commands'] == real['commands'] and len(real['commands']) == 9, real
    assert 'ip route add 198.18.0.0/24 via 192.168.77.1 dev wan1 table 104 onlink' in real['commands']
    assert 'ip route add 198.18.1.0/24 dev wan2 table 104 scope global src 203.0.113.2' in real['commands']
    assert show(ns, 104) == ['198.18.0.0/24 via 192.168.77.1 dev wan1 onlink',
                             '198.18.1.0/24 dev wan2 src 203.0.113.2',
                             'blackhole 192.0.2.0/26', 'prohibit 192.0.2.128/26',
                             'throw 192.0.2.192/26', 'unreachable 192.0.2.64/26']
    assert show(ns, 104, '-6') == ['2001:db8:77::/48 via 2001:db8:99::1 dev wan1 metric 1024 onlink pref medium',
                                   'blackhole 2001:db8:66::/48 dev lo metric 1024 pref medium',
                                   'unreachable default dev lo metric 1024 pref medium']
    assert not route_table(ns, table='104', routes=routes)['changed']

    # A type change is a replace of the same route.
    changed = [dict(routes[0], type='prohibit')] + routes[1:]
    assert route_table(ns, table='104', routes=changed)['commands'] == [
        'ip route replace prohibit 192.0.2.0/26 table 104']


def test_the_kernel_dumps_routes_as_the_shape_reading_expects(netns):
    """routes_of_dump decodes a message once per shape only if the kernel writes RTA_DST right
    after RTA_TABLE, as encode_route does: it does, for both families and every kind of route;
    and what it reads is what decoding every message gives."""
    ns = lab(netns)
    routes = ['192.0.2.%d/32 via 198.51.100.1 dev wan1' % last for last in range(8)] + [
        '198.18.0.0/24 via 192.168.77.1 dev wan1 onlink', '198.18.1.0/24 dev wan2 src 203.0.113.2 scope global',
        'blackhole 192.0.3.0/24', '198.18.2.0/24 nexthop via 198.51.100.1 dev wan1 nexthop via 203.0.113.1 dev wan2',
        'default via 198.51.100.1 dev wan1', 'unreachable default metric 7'] + [
        '2001:db8:%x::/48 via 2001:db8:1::1 dev wan1' % index for index in range(8)] + [
        'blackhole 2001:db8:66::/48', 'default via 2001:db8:2::1 dev wan2 metric 5']
    assert route_table(ns, table='105', routes=routes)['changed']

    def read():
        _netlink.enter_netns(ns.name)
        names = dict((index, name) for name, index in _netlink.interface_map().items())
        found = {}
        with _netlink.RouteSocket() as sock:
            for family, af in (('ipv4', socket.AF_INET), ('ipv6', socket.AF_INET6)):
                for table in (105, 254):
                    messages = sock.dump_route_messages(af, table)
                    spans = [_netlink.dst_span(af, *message) for message in messages]
                    decoded = [from_netlink(raw, names) for raw in _netlink.decode_routes(af, table, messages)]
                    found[(family, table)] = (
                        sum(1 for message in messages if message[0][message[1] + 1]),  # dst_len: has a dest
                        sum(1 for span in spans if span is not None),
                        routes_of_dump(family, table, messages, names),
                        [route for route in decoded if route is not None])
        return found

    found = in_child(read)
    for (family, table), (with_dest, spans, shaped, decoded) in found.items():
        assert spans == with_dest > 0, (family, table)
        assert shaped == decoded, (family, table)
    assert len(found[('ipv4', 105)][2]) == 14 and len(found[('ipv6', 105)][2]) == 10


def test_copy_from_main_without_default(netns):
    """Seed 003: table 4 = main without its default route, plus another default."""
    ns = lab(netns)
    ns.ip('route', 'add', 'default', 'via', '198.51.100.1')
    ns.ip('route', 'add', '192.168.98.0/24', 'via', '203.0.113.1')
    args = dict(table='4', copy_from='main', copy_exclude=['default'], purge=True, family='ipv4',
                routes=[{'dest': 'default', 'gateway': '203.0.113.1', 'dev': 'wan2'}])
    check = route_table(ns, check=True, **args)
    real = route_table(ns, **args)
    assert check['commands'] == real['commands'], real
    assert show(ns, 4) == ['192.168.98.0/24 via 203.0.113.1 dev wan2',
                           '198.51.100.0/24 dev wan1 scope link src 198.51.100.2',
                           '203.0.113.0/24 dev wan2 scope link src 203.0.113.2',
                           'default via 203.0.113.1 dev wan2']
    assert not route_table(ns, **args)['changed']

    # A route that leaves main leaves the copy (purge); the listed default stays.
    ns.ip('route', 'del', '192.168.98.0/24')
    again = route_table(ns, **args)
    assert again['commands'] == ['ip route del 192.168.98.0/24 via 203.0.113.1 dev wan2 table 4'], again


def test_table_by_name_from_namespace_rt_tables(netns):
    ns = lab(netns)
    ns.rt_tables('# netns-local names\n254\tmain\n7375\tmacbook\n')
    result = route_table(ns, table='macbook', routes=[{'dest': 'default', 'gateway': '198.51.100.1'}])
    assert result['commands'] == ['ip route add default via 198.51.100.1 table macbook'], result
    assert result['table'] == 7375
    assert show(ns, 7375) == ['default via 198.51.100.1 dev wan1']


def test_list_form_two_tables(netns):
    ns = lab(netns)
    tables = [
        {'table': '201', 'purge': True, 'routes': [{'dest': 'default', 'gateway': '198.51.100.1', 'dev': 'wan1'}]},
        # Above 255: the id travels in RTA_TABLE, not in the message header.
        {'table': '70000', 'purge': True, 'routes': [{'dest': 'default', 'gateway': '203.0.113.1', 'dev': 'wan2'},
                                                     {'dest': 'default', 'gateway': '2001:db8:2::1', 'dev': 'wan2'}]},
    ]
    check = route_table(ns, tables=tables, check=True, diff=True)
    real = route_table(ns, tables=tables, diff=True)
    assert check['commands'] == real['commands'] == [
        'ip route add default via 198.51.100.1 dev wan1 table 201',
        'ip route add default via 203.0.113.1 dev wan2 table 70000',
        'ip -6 route add default via 2001:db8:2::1 dev wan2 table 70000'], real
    assert real['tables'] == [201, 70000] and 'table' not in real
    assert show(ns, 201) == ['default via 198.51.100.1 dev wan1']
    assert show(ns, 70000) == ['default via 203.0.113.1 dev wan2']
    assert show(ns, 70000, '-6') == ['default via 2001:db8:2::1 dev wan2 metric 1024 pref medium']
    assert not route_table(ns, tables=tables)['changed']

    # One change over both tables: the second one's route refused, the first one's undone.
    tables[0]['routes'].append({'dest': '192.0.2.0/24', 'gateway': '198.51.100.1'})
    tables[1]['routes'].append({'dest': '192.0.2.0/24', 'gateway': '192.168.99.1'})
    before = snapshot(ns)
    failed = route_table(ns, tables=tables)
    assert failed.get('failed') and 'undone' in failed['msg'], failed
    assert snapshot(ns) == before


BAD = [
    (dict(table='110', routes=[{'dest': '192.0.2.0/24', 'dev': 'wan1'}, {'dest': 'x', 'dev': 'wan1'}]),
     "routes[1].dest: not an IP address or prefix: 'x'"),
    (dict(table='110', routes=[{'dest': '192.0.2.1/24', 'dev': 'wan1'}]),
     'routes[0].dest: prefix \'192.0.2.1/24\' has host bits set'),
    (dict(table='110', routes=[{'dest': 'default', 'gateway': '198.51.100.300'}]),
     'routes[0].gateway: not an IP address'),
    (dict(table='110', routes=[{'dest': 'default', 'dev': 'eth9'}]),
     "routes[0].dev: no interface 'eth9'"),
    (dict(table='nosuchtable', routes=[{'dest': 'default', 'dev': 'wan1'}]),
     "table: unknown routing table name 'nosuchtable'"),
    (dict(table='local', routes=[{'dest': 'default', 'dev': 'wan1'}]),
     'table: table local (255)'),
    (dict(table='0', routes=[{'dest': 'default', 'dev': 'wan1'}]),
     'table: table id 0 is out of range'),
    (dict(table='110', routes=[{'dest': '192.0.2.0/24', 'dev': 'wan1'},
                               {'dest': '192.0.2.0/24', 'dev': 'wan2'}]),
     'routes[1]: conflicts with routes[0]'),
    (dict(table='110', routes=[{'dest': '192.0.2.0/24', 'gateway': '2001:db8:1::1'}]),
     'routes[0]: mixed address families'),
    (dict(table='110', routes=[{'dest': '192.0.2.0/24', 'type': 'blackhole', 'dev': 'wan1'}]),
     'routes[0].type: a blackhole route has no gateway'),
    (dict(table='110', routes=[{'dest': 'default', 'nexthops': [{'gateway': '198.51.100.1', 'weight': 0},
                                                                {'gateway': '203.0.113.1'}]}]),
     'routes[0].nexthops[0].weight: weight 0 is out of range'),
    (dict(tables=[{'table': '110', 'routes': [{'dest': 'default', 'dev': 'wan1'}]},
                  {'table': '111', 'routes': [{'dest': 'default', 'dev': 'wan1', 'proto': 'nonsense'}]}]),
     'tables[1].routes[0].proto: unknown route protocol'),
    (dict(table='110', copy_from='nosuchtable'), "copy_from: unknown routing table name"),
    # The string form, and mappings checked by the module itself.
    (dict(table='110', routes=['192.0.2.0/24 dev wan1', '100.64.1.0/24 vai 198.51.100.1']),
     "routes[1]: unknown word 'vai' in route '100.64.1.0/24 vai 198.51.100.1'"),
    (dict(tables=[{'table': '110', 'routes': ['default dev wan1']},
                  {'table': '111', 'routes': ['default via 198.51.100.1', 'x via 198.51.100.1']}]),
     "tables[1].routes[1].dest: not an IP address or prefix: 'x'"),
    (dict(table='110', routes=['192.0.2.0/24 dev wan1', '192.0.3.0/24 dev eth9']),
     "routes[1].dev: no interface 'eth9'"),
    (dict(table='110', routes=['default dev wan1 table 110']),
     "routes[0]: 'table' is not a word of a route here"),
    (dict(table='110', routes=['default via 198.51.100.1 scope sky']),
     "routes[0].scope: one of global, host, link, site, got 'sky'"),
    (dict(table='110', routes=['192.0.2.0/24 dev wan1', {'dest': '192.0.2.0/24', 'dev': 'wan2'}]),
     'routes[1]: conflicts with routes[0]'),
    (dict(table='110', routes=[{'dest': 'default', 'device': 'wan1'}]), 'routes[0].device: not an option'),
    (dict(table='110', routes=[{'gateway': '198.51.100.1'}]), 'routes[0].dest: required'),
    (dict(table='110', routes=[7]), 'routes[0]: a route is a mapping of options or a string, got 7'),
]


@pytest.mark.parametrize('args,message', BAD, ids=[message.split(':')[0] for args, message in BAD])
def test_bad_input_touches_nothing(netns, args, message):
    ns = lab(netns)
    ns.ip('route', 'add', '192.0.2.0/24', 'via', '198.51.100.1', 'table', '110')
    before = snapshot(ns)
    result = route_table(ns, **args)
    assert result.get('failed') and message in result['msg'], result
    assert 'Traceback' not in result.get('msg', '')
    assert snapshot(ns) == before


# Routes the kernel always refuses, with the `ip route add` words of each: check mode fails
# on them as the real run does, naming the option, and the kernel refuses them indeed.
KERNEL_REFUSES = [
    ({'dest': '10.2.0.0/16', 'gateway': '198.51.100.1', 'dev': 'wan1', 'scope': 'host'},
     '10.2.0.0/16 via 198.51.100.1 dev wan1 scope host', 'routes[0].scope: a route with a gateway cannot have scope host'),
    ('10.2.0.0/16 scope host nexthop via 198.51.100.1 dev wan1 nexthop via 203.0.113.1 dev wan2',
     '10.2.0.0/16 scope host nexthop via 198.51.100.1 dev wan1 nexthop via 203.0.113.1 dev wan2',
     'routes[0].scope: a route with nexthops cannot have scope host'),
    ('10.2.0.0/16 via 198.51.100.1 dev wan1 onlink scope link', '10.2.0.0/16 via 198.51.100.1 dev wan1 onlink scope link',
     'routes[0].scope: an onlink gateway cannot have scope link'),
    ({'dest': '10.2.0.0/16', 'dev': 'wan1', 'src': '198.51.100.7'}, '10.2.0.0/16 dev wan1 src 198.51.100.7',
     'routes[0].src: 198.51.100.7 is not a local address'),
    ('10.2.0.0/16 dev wan1 src 198.51.100.255', '10.2.0.0/16 dev wan1 src 198.51.100.255',
     'routes[0].src: 198.51.100.255 is not a local address'),
    ({'dest': '2001:db8:9::/48', 'dev': 'wan1', 'src': '2001:db8:1::9'}, '2001:db8:9::/48 dev wan1 src 2001:db8:1::9',
     'routes[0].src: 2001:db8:1::9 is not a local address'),
]


@pytest.mark.parametrize('route,words,message', KERNEL_REFUSES, ids=[words for route, words, message in KERNEL_REFUSES])
def test_what_the_kernel_refuses_fails_in_check_mode_too(netns, route, words, message):
    ns = lab(netns)
    before = snapshot(ns)
    for check in (True, False):
        result = route_table(ns, table='110', routes=[route], check=check)
        assert result.get('failed') and message in result['msg'] and not result.get('commands'), (check, result)
        assert snapshot(ns) == before
    refused = ns.ip('route', 'add', *(words.split() + ['table', '110']), check=False)
    assert refused.returncode != 0, refused


def test_src_the_kernel_takes_is_taken(netns):
    ns = lab(netns)
    ns.ip('route', 'add', 'local', '192.0.2.0/24', 'dev', 'lo', 'table', 'local')  # AnyIP
    routes = ['10.2.0.0/16 dev wan1 src 192.0.2.77', '10.3.0.0/16 dev wan1 src 127.0.0.5',
              '10.4.0.0/16 dev wan2 src 198.51.100.2', '2001:db8:9::/48 dev wan2 src 2001:db8:1::2']
    check = route_table(ns, table='110', routes=routes, check=True)
    assert check['changed'] and 'failed' not in check, check
    real = route_table(ns, table='110', routes=routes)
    assert real['commands'] == check['commands'] and 'failed' not in real, real
    assert not route_table(ns, table='110', routes=routes)['changed']


def test_failure_midway_is_rolled_back(netns):
    ns = lab(netns)
    ns.ip('route', 'add', '192.0.2.0/26', 'via', '198.51.100.1', 'table', '120')
    before = snapshot(ns)
    routes = [
        {'dest': '192.0.2.0/26', 'gateway': '203.0.113.1'},   # replace
        {'dest': '192.0.2.64/26', 'gateway': '198.51.100.1'},
        # Only the kernel knows: no route to this gateway.
        {'dest': '192.0.2.128/26', 'gateway': '192.168.99.1'},
        {'dest': '192.0.2.192/26', 'gateway': '198.51.100.1'},
    ]
    result = route_table(ns, table='120', routes=routes)
    assert result.get('failed'), result
    assert result['failed_command'] == 'ip route add 192.0.2.128/26 via 192.168.99.1 table 120'
    # The kernel's words: "Nexthop has invalid gateway (Network is unreachable)".
    assert 'Network is unreachable' in result['msg'] and 'undone' in result['msg'], result
    assert snapshot(ns) == before


def test_debian_python_smoke(netns):
    """Debian 12's /usr/bin/python3 (pyroute2 0.7.2): apply, rerun, multipath, IPv6."""
    ns = lab(netns)
    routes = ROUTES + [{'dest': '10.20.0.0/16', 'nexthops': [{'gateway': '198.51.100.1', 'weight': 2},
                                                             {'gateway': '203.0.113.1'}]},
                       '10.30.0.0/16 nexthop via 198.51.100.1 nexthop via 203.0.113.1 weight 3',
                       'blackhole 10.40.0.0/16']
    real = route_table(ns, table='130', routes=routes, python=DEBIAN_PYTHON)
    assert real['changed'] and len(real['commands']) == 7, real
    assert not route_table(ns, table='130', routes=routes, python=DEBIAN_PYTHON)['changed']
    bad = route_table(ns, table='130', routes=[{'dest': 'default', 'dev': 'eth9'}], python=DEBIAN_PYTHON)
    assert bad.get('failed') and "routes[0].dev: no interface 'eth9'" in bad['msg'], bad
    bad = route_table(ns, table='130', routes=['default vai 198.51.100.1'], python=DEBIAN_PYTHON)
    assert bad.get('failed') and "routes[0]: unknown word 'vai'" in bad['msg'], bad
