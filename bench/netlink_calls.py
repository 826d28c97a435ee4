#!/usr/bin/env python3
"""Bench: ways to write and read 10,000 routes over netlink, without Ansible.

Compares, in a namespace of its own (test lab prefix, removed at the end):
  pyroute2 IPRoute.route('add') per route, pyroute2 IPRoute.route('dump'),
  _netlink.RouteSocket.send_routes (batches on one socket), _routes.read_routes (one dump, decoded once per shape),
  and `ip -batch` for reference. Used to choose route_table's apply and read paths.

    cd /work/main && .venv/bin/python bench/netlink_calls.py            # pyroute2 of the venv
    cd /work/main && /usr/bin/python3 bench/netlink_calls.py            # Debian's pyroute2 0.7.2
"""
import os
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, '.cache', 'collections'))

from tests.lab.names import netns_name  # noqa: E402
from ansible_collections.netpolicy.routing.plugins.module_utils import _netlink  # noqa: E402
from ansible_collections.netpolicy.routing.plugins.module_utils import _routes  # noqa: E402

import pyroute2  # noqa: E402

COUNT = 10000
TABLE = 100


def dests():
    return ['100.%d.%d.0' % (64 + i // 256, i % 256) for i in range(COUNT)]


def timed(label, func):
    started = time.monotonic()
    result = func()
    print('  %-45s %6.3f s' % (label, time.monotonic() - started))
    return result


def flush(netns):
    subprocess.run(['ip', '-n', netns, 'route', 'flush', 'table', str(TABLE)], capture_output=True)


def main():
    netns = netns_name('bench-nl')
    subprocess.run(['ip', 'netns', 'add', netns], check=True)
    try:
        for argv in (['link', 'set', 'lo', 'up'], ['link', 'add', 'wan1', 'type', 'veth', 'peer', 'name', 'wan1p'],
                     ['addr', 'add', '198.51.100.2/24', 'dev', 'wan1'], ['link', 'set', 'wan1', 'up'],
                     ['link', 'set', 'wan1p', 'up']):
            subprocess.run(['ip', '-n', netns] + argv, check=True)
        print('%d routes, pyroute2 %s, Python %s' % (COUNT, getattr(pyroute2, '__version__', '?'), sys.version.split()[0]))
        with tempfile.NamedTemporaryFile('w', suffix='.batch') as batch:
            batch.write(''.join('route add %s/24 via 198.51.100.1 dev wan1 table %d\n' % (dest, TABLE) for dest in dests()))
            batch.flush()
            timed('ip -batch (process)', lambda: subprocess.run(['ip', '-n', netns, '-batch', batch.name], check=True))
        timed('ip route show table (process)', lambda: subprocess.run(
            ['ip', '-n', netns, 'route', 'show', 'table', str(TABLE)], capture_output=True, check=True))
        flush(netns)

        _netlink.enter_netns(netns)
        oif = socket.if_nametoindex('wan1')
        ipr = pyroute2.IPRoute()

        def pyroute2_add():
            for dest in dests():
                ipr.route('add', dst=dest, dst_len=24, gateway='198.51.100.1', oif=oif, table=TABLE)
        timed("pyroute2 route('add') per route", pyroute2_add)
        timed("pyroute2 route('dump', table=) + attrs", lambda: [
            (msg.get_attr('RTA_DST'), msg.get_attr('RTA_GATEWAY'))
            for msg in ipr.route('dump', table=TABLE, family=socket.AF_INET)])
        ipr.close()
        flush(netns)

        requests = [('add', {'family': socket.AF_INET, 'table': TABLE, 'dst': dest, 'dst_len': 24, 'tos': 0,
                             'priority': 0, 'flags': 0, 'proto': 3, 'scope': 0, 'type': 1,
                             'gateway': '198.51.100.1', 'oif': oif}) for dest in dests()]
        with _netlink.RouteSocket() as sock:
            done, failure = timed('RouteSocket.send_routes (batched)', lambda: sock.send_routes(
                [(action, _netlink.encode_route(route)) for action, route in requests]))
            assert failure is None and len(done) == COUNT, failure
            names = dict((index, name) for name, index in _netlink.interface_map().items())
            routes = timed('_routes.read_routes', lambda: _routes.read_routes(sock, 'ipv4', TABLE, names))
            assert len(routes) == COUNT
    finally:
        subprocess.run(['ip', 'netns', 'del', netns], check=False)


if __name__ == '__main__':
    main()
