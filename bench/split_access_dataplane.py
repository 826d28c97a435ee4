#!/usr/bin/env python3
"""Bench: the data plane of the split_access recipe against plain forwarding.

Builds two two_isp labs side by side (named with the test lab's prefix, removed
at the end even on failure):

  plain    the lab as built: one default route, masquerade out wan1
  recipe   the same after playbooks/seed002_split_access.yml (balancing by
           nftables numgen and conntrack marks, a fwmark rule per uplink, SNAT
           per uplink, port forward)

and measures, on the same machine in the same run:

  throughput       one iperf3 TCP stream client1 -> server, through the router,
                   in alternating rounds
  new connections  two LAN clients opening TCP connections to the server as fast
                   as they can (connect, the server closes, close), per second,
                   in short slices that alternate between the labs (ABBA)

then prints the medians and the ratios recipe / plain (target: >= 0.95 both).

The machine's load from other work changes from second to second and moves a
single slice by 10-30 %, far more than the recipe's cost: so the connection
rate is taken in many short slices, plain and recipe one right after the other
(plain recipe, recipe plain, recipe plain, plain recipe, ...), and each recipe
slice is divided by the plain slice next to it: the median of these paired
ratios with its quartiles, and the ratio of all connections, are printed with
the ratio of the labs' medians. So is the CPU time per connection of the
clients and the server (/proc/PID/schedstat), which includes the router's work
(a packet sent on a veth is routed and filtered in the sender's softirq) and
does not depend on how much CPU the other work left to the bench; plain /
recipe is the rate the same CPU would give.

--control leaves the second lab plain too (an A/A run): the bench's own bias
and noise, to read the real runs against.

    cd /work/main && .venv/bin/python bench/split_access_dataplane.py [--seconds 2] [--rounds 8] \
        [--slices 120] [--slice-seconds 0.5] [--control]

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

# For each line SECONDS read from stdin: opens connections for that long, each
# until the server has closed it, and prints "done failed cpu_ns" (its CPU time
# in the slice, from /proc/self/schedstat). It stays running between slices, so
# a slice measures connections, not Python starting.
# The client resets its end (SO_LINGER 0), so no TIME_WAIT is left on
# either side: otherwise, the LAN being NATed to one address, the server's TIME_WAIT
# entries collide with reused source ports and slow the later rounds down.
CONNECTOR = r'''
import socket, struct, sys, time
host, port = sys.argv[1], int(sys.argv[2])
linger = struct.pack("ii", 1, 0)
def cpu_ns():
    with open("/proc/self/schedstat") as handle:
        return int(handle.read().split()[0])
for line in sys.stdin:
    done = failed = 0
    start = cpu_ns()
    end = time.monotonic() + float(line)
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
    print(done, failed, cpu_ns() - start, flush=True)
'''


def start(lab, node, argv, stdin=subprocess.DEVNULL):
    return subprocess.Popen(['ip', 'netns', 'exec', lab.name(node)] + argv,
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
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


def start_connectors(lab):
    """The connectors of client1 and client2, waiting for their first slice.

    Each is pinned to a CPU of its own (client1 the first, client2 the second),
    the same in both labs: the connectors live for the whole run, and left to
    the scheduler two of one lab may share a CPU for much of it while those of
    the other lab each have one. (Before they were pinned, an A/A run with both
    labs plain came out 3.6 % apart; after, within 1.3 %.)
    """
    cpus = sorted(os.sched_getaffinity(0))
    return [start(lab, node, ['taskset', '-c', str(cpus[index % len(cpus)]),
                              sys.executable, '-c', CONNECTOR, SERVER, str(ACCEPT_PORT)], stdin=subprocess.PIPE)
            for index, node in enumerate(('client1', 'client2'))]


def cpu_ns(pid):
    """CPU time a process has run, in ns (/proc/PID/schedstat)."""
    with open('/proc/%d/schedstat' % pid) as handle:
        return int(handle.read().split()[0])


def connection_rate(lab, connectors, acceptor, seconds):
    """New connections per second from client1 and client2 at once, for one
    slice of ``seconds``, and the CPU time per connection (µs) of the two
    clients and the server's acceptor; raises if any connection failed."""
    acceptor_start = cpu_ns(acceptor.pid)
    for proc in connectors:
        proc.stdin.write('%r\n' % seconds)
        proc.stdin.flush()
    done = failed = cpu = 0
    for proc in connectors:
        counts = [int(word) for word in proc.stdout.readline().split()]
        if len(counts) != 3:
            raise RuntimeError('%s: a connector stopped' % lab.prefix)
        done, failed, cpu = done + counts[0], failed + counts[1], cpu + counts[2]
    cpu += cpu_ns(acceptor.pid) - acceptor_start
    if failed:
        raise RuntimeError('%s: %d connections failed' % (lab.prefix, failed))
    return done / seconds, cpu / 1000.0 / max(done, 1)


def abba(round_):
    """The order of the two labs in a round: plain first in rounds 0, 3, 4, 7, ...
    (plain recipe, recipe plain, recipe plain, plain recipe, ...), so each lab
    is as often first as second in a round."""
    return ['plain', 'recipe'] if round_ % 4 in (0, 3) else ['recipe', 'plain']


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seconds', type=float, default=2.0, help='length of each iperf3 round')
    parser.add_argument('--rounds', type=int, default=8, help='iperf3 rounds per lab')
    parser.add_argument('--slice-seconds', type=float, default=0.5, help='length of each connection slice')
    parser.add_argument('--slices', type=int, default=120, help='connection slices per lab')
    parser.add_argument('--control', action='store_true',
                        help='leave the second lab plain too (an A/A run: the bench\'s own bias and noise)')
    args = parser.parse_args(argv)
    results = {name: {'throughput': [], 'rate': [], 'cpu': []} for name in ('plain', 'recipe')}
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
        if not args.control:
            run_playbook(recipe, PLAYBOOK)
        labs = {'plain': plain, 'recipe': recipe}
        acceptors = {}
        for name, lab in labs.items():
            started = start_servers(lab)
            servers.extend(started)
            acceptors[name] = started[1]
        for round_ in range(args.rounds):
            for name in abba(round_):
                results[name]['throughput'].append(throughput(labs[name], args.seconds))
        connectors = {name: start_connectors(lab) for name, lab in labs.items()}
        for procs in connectors.values():
            servers.extend(procs)
        for round_ in range(args.slices):
            for name in abba(round_):
                rate, cpu = connection_rate(labs[name], connectors[name], acceptors[name], args.slice_seconds)
                results[name]['rate'].append(rate)
                results[name]['cpu'].append(cpu)
        # the recipe's connections really were balanced over both uplinks
        return {recipe.uplink_of(seen) for seen in recipe.connect('client1', SERVER, 80, count=4)}


def quartiles(values):
    values = sorted(values)
    return [values[len(values) // 4], statistics.median(values), values[(3 * len(values)) // 4]]


def print_results(args, results, spread):
    medians = {name: {key: statistics.median(values) for key, values in data.items()}
               for name, data in results.items()}
    paired = [recipe / plain for plain, recipe in zip(results['plain']['rate'], results['recipe']['rate'])]
    if args.control:
        print('CONTROL RUN: "recipe" is a second plain lab')
    print('split_access data plane: %d iperf3 rounds of %.1f s, %d connection slices of %.2f s (medians)' % (
        args.rounds, args.seconds, args.slices, args.slice_seconds))
    print('  %-28s %14s %14s %7s' % ('', 'plain', 'recipe', 'ratio'))
    print('  %-28s %14.2f %14.2f %7.3f' % ('throughput, Gbit/s (iperf3)', medians['plain']['throughput'] / 1e9,
                                           medians['recipe']['throughput'] / 1e9,
                                           medians['recipe']['throughput'] / medians['plain']['throughput']))
    print('  %-28s %14.0f %14.0f %7.3f' % ('new connections per second', medians['plain']['rate'],
                                           medians['recipe']['rate'],
                                           medians['recipe']['rate'] / medians['plain']['rate']))
    print('  new connections, recipe / plain slice next to it: median %.3f (quartiles %.3f to %.3f); '
          'all recipe / all plain connections: %.3f' % (quartiles(paired)[1], quartiles(paired)[0], quartiles(paired)[2],
                                                        sum(results['recipe']['rate']) / sum(results['plain']['rate'])))
    cost = [plain / recipe for plain, recipe in zip(results['plain']['cpu'], results['recipe']['cpu'])]
    print('  %-28s %14.1f %14.1f %7.3f  (plain / recipe)' % (
        'CPU µs per new connection', medians['plain']['cpu'], medians['recipe']['cpu'],
        medians['plain']['cpu'] / medians['recipe']['cpu']))
    print('  CPU per connection, plain / recipe slice next to it: median %.3f (quartiles %.3f to %.3f)' % (
        quartiles(cost)[1], quartiles(cost)[0], quartiles(cost)[2]))
    print('  recipe balanced over: %s' % ', '.join(sorted(str(uplink) for uplink in spread)))
    print('  raw: %s' % json.dumps(results))


if __name__ == '__main__':
    sys.exit(main())
