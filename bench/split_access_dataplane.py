#!/usr/bin/env python3
"""Bench: the data plane of the split_access recipe against plain forwarding.

Builds two two_isp labs side by side (named with the test lab's prefix, removed
at the end even on failure):

  plain    the lab as built: one default route, masquerade out wan1
  recipe   the same after playbooks/seed002_split_access.yml (balancing by
           nftables numgen and conntrack marks, a fwmark rule per uplink, SNAT
           per uplink, port forward)

and measures, in alternating rounds, on the same machine in the same run:

  throughput       one iperf3 TCP stream client1 -> server, through the router
  new connections  two LAN clients opening TCP connections to the server as fast
                   as they can (connect, the server closes, close), per second

then prints the medians and the ratios recipe / plain (target: >= 0.95 both).

    cd /work/main && .venv/bin/python bench/split_access_dataplane.py [--seconds 3] [--rounds 3]

Needs iperf3 (Debian package iperf3). Run as root on Linux. Not a test: the
numbers depend on the machine and its load.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.lab import Lab, topologies  # noqa: E402
from tests.lab.playbook import run_playbook  # noqa: E402

SERVER = topologies.SERVER
IPERF_PORT = 5201
ACCEPT_PORT = 9000
PLAYBOOK = os.path.join(REPO, 'playbooks', 'seed002_split_access.yml')

# Accepts and closes at once: the server side costs as little as possible, so
# the router's work per new connection shows.
ACCEPTOR = r'''
import socket, sys
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("0.0.0.0", int(sys.argv[1])))
sock.listen(4096)
print("ready", flush=True)
while True:
    conn, peer = sock.accept()
    conn.close()
'''

# Opens connections for SECONDS, each until the server has closed it; prints the
# count. The client then resets its end (SO_LINGER 0), so no TIME_WAIT is left on
# either side: otherwise, the LAN being NATed to one address, the server's TIME_WAIT
# entries collide with reused source ports and slow the later rounds down.
CONNECTOR = r'''
import socket, struct, sys, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
linger = struct.pack("ii", 1, 0)
done = failed = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    sock = socket.socket()
    sock.settimeout(2)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    try:
        sock.connect((host, port))
        sock.recv(1)
        done += 1
    except OSError:
        failed += 1
    finally:
        sock.close()
print(done, failed)
'''


def start(lab, node, argv):
    return subprocess.Popen(['ip', 'netns', 'exec', lab.name(node)] + argv,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True)


def start_servers(lab):
    iperf = start(lab, 'server', ['iperf3', '--server', '--port', str(IPERF_PORT)])
    acceptor = start(lab, 'server', [sys.executable, '-c', ACCEPTOR, str(ACCEPT_PORT)])
    if acceptor.stdout.readline().strip() != 'ready':
        raise RuntimeError('the acceptor did not start in %s' % lab.prefix)
    deadline = time.monotonic() + 5
    while ':%d ' % IPERF_PORT not in lab.run('server', 'ss', '-ltnH').stdout:
        if time.monotonic() > deadline:
            raise RuntimeError('iperf3 did not start in %s' % lab.prefix)
        time.sleep(0.1)
    return [iperf, acceptor]


def throughput(lab, seconds):
    """Bits per second of one TCP stream client1 -> server."""
    out = lab.run('client1', 'iperf3', '--client', SERVER, '--port', IPERF_PORT, '--time', seconds,
                  '--json', timeout=seconds + 30).stdout
    return json.loads(out)['end']['sum_received']['bits_per_second']


def connection_rate(lab, seconds):
    """New connections per second from client1 and client2 at once; raises if any failed."""
    clients = [start(lab, node, [sys.executable, '-c', CONNECTOR, SERVER, str(ACCEPT_PORT), str(seconds)])
               for node in ('client1', 'client2')]
    done = failed = 0
    for proc in clients:
        out, dummy = proc.communicate(timeout=seconds + 30)
        counts = [int(word) for word in out.split()]
        done, failed = done + counts[0], failed + counts[1]
    if failed:
        raise RuntimeError('%s: %d connections failed' % (lab.prefix, failed))
    return done / seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seconds', type=float, default=3.0, help='length of each measurement')
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args(argv)
    results = {'plain': {'throughput': [], 'rate': []}, 'recipe': {'throughput': [], 'rate': []}}
    servers = []
    try:
        spread = measure(args, results, servers)
    finally:
        for proc in servers:  # the labs' teardown killed them; reap them
            proc.wait(timeout=10)
    print_results(args, results, spread)
    return 0


def measure(args, results, servers):
    with Lab(topologies.two_isp()) as plain, Lab(topologies.two_isp()) as recipe:
        os.environ.setdefault('ANSIBLE_PIPELINING', '1')
        run_playbook(recipe, PLAYBOOK)
        labs = {'plain': plain, 'recipe': recipe}
        for lab in labs.values():
            servers.extend(start_servers(lab))
        for round_ in range(args.rounds):
            order = ['plain', 'recipe'] if round_ % 2 == 0 else ['recipe', 'plain']
            for name in order:
                results[name]['throughput'].append(throughput(labs[name], args.seconds))
            for name in order:
                results[name]['rate'].append(connection_rate(labs[name], args.seconds))
        # the recipe's connections really were balanced over both uplinks
        return {recipe.uplink_of(seen) for seen in recipe.connect('client1', SERVER, 80, count=4)}


def print_results(args, results, spread):
    medians = {name: {key: statistics.median(values) for key, values in data.items()}
               for name, data in results.items()}
    print('split_access data plane, %d rounds of %.0f s (medians)' % (args.rounds, args.seconds))
    print('  %-28s %14s %14s %7s' % ('', 'plain', 'recipe', 'ratio'))
    print('  %-28s %14.2f %14.2f %7.3f' % ('throughput, Gbit/s (iperf3)', medians['plain']['throughput'] / 1e9,
                                           medians['recipe']['throughput'] / 1e9,
                                           medians['recipe']['throughput'] / medians['plain']['throughput']))
    print('  %-28s %14.0f %14.0f %7.3f' % ('new connections per second', medians['plain']['rate'],
                                           medians['recipe']['rate'],
                                           medians['recipe']['rate'] / medians['plain']['rate']))
    print('  recipe balanced over: %s' % ', '.join(sorted(str(uplink) for uplink in spread)))
    print('  raw: %s' % json.dumps(results))


if __name__ == '__main__':
    sys.exit(main())
