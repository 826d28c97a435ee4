"""No new exposure: split_access with port forwards adds no way in beyond the forwards it lists.

In three_isp, listeners that answer with their host's name (tests/helpers/scan.py)
run on the router (bound to every address: TCP and UDP 53 and 7000) and on two
LAN hosts (the target ports of the forwards, and ports no forward points to).
Each ISP's namespace plays a hostile neighbour on its customer segment: it
routes the LAN's subnets through the router's addresses on that link, and scans
from its own addresses there, over TCP and UDP, IPv4 and IPv6 (ports 1-1024 and
those of the listeners and forwards), the router's uplink addresses (reached
through the internet core, so by the uplink of each address) and the LAN
addresses (reached by its own link). This lab's router filters nothing, so
before the role the whole LAN answers; what matters is the difference.

The scan runs before split_access and again after it, with the agent's `watch`
running. The only differences allowed: the listed forwards (IPv4), each answered
by its target, from every ISP, on each uplink it is listed for. The router has
the same listening sockets as before, and the agent has no TCP, UDP or raw socket.

Changes to the lab for a scan that means something: no ICMP rate limit
(ratemask empty), so a closed UDP port always says so; the ISPs' anti-spoofing
lets through what is addressed to the ISP itself (a neighbour receives what the
router sends it on the segment) and still drops what it would forward.
"""
import json
import os
import subprocess
import sys
import time

import pytest

from tests.helpers.agent import Watch, wait_for
from tests.lab import topologies
from tests.lab.playbook import run_playbook

SCANNER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'helpers', 'scan.py')

UPLINKS = [
    {'name': 'isp1', 'interface': 'wan1', 'gateway': '198.51.100.1', 'address': '198.51.100.2'},
    {'name': 'isp2', 'interface': 'wan2', 'gateway': '192.0.2.1', 'address': '192.0.2.2'},
    {'name': 'isp3', 'interface': 'wan3', 'gateway': '100.65.3.1'},   # masquerade
]
UPLINK_ADDRESSES = {'isp1': ['198.51.100.2', '2001:db8:1::2'], 'isp2': ['192.0.2.2', '2001:db8:2::2'],
                    'isp3': ['100.65.3.2', '2001:db8:3::2']}
# Where each ISP's scan comes from: its addresses on the customer segment (the neighbour's view)
NEIGHBOURS = {'isp1': ('198.51.100.1', '2001:db8:1::1'), 'isp2': ('192.0.2.1', '2001:db8:2::1'),
              'isp3': ('100.65.3.1', '2001:db8:3::1')}
LAN_SUBNETS = ['192.168.1.0/24', '192.168.2.0/24', '2001:db8:1::/48']
HOSTS = {'192.168.1.1': 'router', '192.168.1.10': 'client1', '192.168.1.50': 'lanserver',
         '192.168.2.1': 'router', '192.168.2.10': 'lan2host',
         '2001:db8:1:1::1': 'router', '2001:db8:1:1::10': 'client1', '2001:db8:1:1::50': 'lanserver',
         '2001:db8:1:2::1': 'router', '2001:db8:1:2::10': 'lan2host'}
TARGETS = sorted(address for addresses in UPLINK_ADDRESSES.values() for address in addresses) + sorted(HOSTS)

# (tcp ports, udp ports) of the listeners; each answers with its node's name
LISTENERS = {
    'router': ([53, 7000], [53, 7000]),
    'lanserver': ([80, 5001, 6000], [5353, 6000]),
    'lan2host': ([22], [123]),
}
FORWARDS = [
    {'proto': 'tcp', 'port': 5001, 'to': '192.168.1.50', 'uplinks': ['isp1', 'isp2']},
    {'proto': 'udp', 'port': 5353, 'to': '192.168.1.50'},                        # every uplink
    {'proto': 'tcp', 'port': 8080, 'to': '192.168.2.10', 'to_port': 22, 'uplinks': ['isp3']},
    # shadows the router's own service on 7000, on isp3 only
    {'proto': 'tcp', 'port': 7000, 'to': '192.168.1.50', 'to_port': 6000, 'uplinks': ['isp3']},
]
EXTRA_PORTS = sorted({5001, 5353, 6000, 7000, 8080})
PORTS = list(range(1, 1025)) + EXTRA_PORTS

PLAY = """\
- name: Split access over three ISPs, with port forwards and the agent
  hosts: router
  gather_facts: false
  roles:
    - role: netpolicy.routing.split_access
"""

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures('pipelining')]


def lab_topology():
    topology = topologies.three_isp()
    for name, node in topology['nodes'].items():
        # our listeners instead of the recording servers (which do not say who they are)
        node.pop('listen', None)
        # ICMP errors without rate limit, so a closed UDP port always says so
        node.setdefault('sysctls', {}).update({'net.ipv4.icmp_ratemask': 0, 'net.ipv6.icmp.ratemask': ''})
        if name.startswith('isp'):
            # the neighbour receives what the router sends it on the segment; forwarded
            # traffic with a source not the customer's is still dropped
            nft = node['nft'].replace('policy accept;\n', 'policy accept;\n        fib daddr type local accept\n', 1)
            assert nft != node['nft'], 'the ISP nftables of tests/lab/topologies.py changed: update this'
            node['nft'] = nft
    return topology


def apply_split_access(lab, directory):
    playbook = directory / 'split_access.yml'
    playbook.write_text(PLAY)
    run_playbook(lab, str(playbook), nodes=['router'], extra_vars={
        'split_access_lan_interfaces': ['lan0', 'lan1'],
        'split_access_uplinks': UPLINKS,
        'split_access_port_forwards': FORWARDS,
        'split_access_persist': True,    # so the agent is installed
        'split_access_service': False,   # no systemd in the lab: the test runs `watch`
        'split_access_install_dependencies': False,
    })


def start_listeners(lab):
    procs = []
    for node, (tcp, udp) in LISTENERS.items():
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            ['ip', 'netns', 'exec', lab.name(node), sys.executable, '-I', SCANNER, 'listen', node,
             ','.join(map(str, tcp)), ','.join(map(str, udp))],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline() == 'ready\n', proc.stderr.read()
    return procs


def scan_from_isps(lab):
    """{(isp, proto, address, port): state}, every ISP scanning at the same time."""
    procs = {}
    for isp, (source, source6) in NEIGHBOURS.items():
        spec = {'addresses': TARGETS, 'tcp': PORTS, 'udp': PORTS, 'timeout': 2.5, 'source': source, 'source6': source6}
        procs[isp] = subprocess.Popen(  # pylint: disable=consider-using-with
            ['ip', 'netns', 'exec', lab.name(isp), sys.executable, '-I', SCANNER, 'scan', json.dumps(spec)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = {}
    for isp, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        for proto, address, port, state in json.loads(out):
            results[(isp, proto, address, port)] = state
    return results


def warm_up(lab):
    """Neighbour entries on every hop of the scan, so fewer first packets wait for ARP or NDP."""
    procs = [subprocess.Popen(  # pylint: disable=consider-using-with
        ['ip', 'netns', 'exec', lab.name(isp), 'sh', '-c',
         ' '.join('ping -q -c 1 -W 2 -I %s %s &' % (sources[':' in target], target) for target in TARGETS) + ' wait'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for isp, sources in NEIGHBOURS.items()]
    for proc in procs:
        proc.wait(timeout=30)


def listening(lab):
    """The router's listening TCP and unbound-peer UDP/raw sockets: {(netid, local address, users)}."""
    sockets = set()
    for line in lab.run('router', 'ss', '-H', '-l', '-ntuwp').stdout.splitlines():
        fields = line.split()
        # netid state recv-q send-q local peer [users:((...))]: the queues vary, the rest must not
        sockets.add((fields[0], fields[4], ' '.join(fields[6:])))
    return sockets


def process_tree(pid):
    """``pid`` and its descendants, now."""
    children = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open('/proc/%s/stat' % entry) as handle:
                    parent = int(handle.read().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):  # gone meanwhile
                continue
            children.setdefault(parent, []).append(int(entry))
    tree, todo = set(), [pid]
    while todo:
        current = todo.pop()
        tree.add(current)
        todo.extend(children.get(current, ()))
    return tree


def inet_sockets_of(pids):
    """The socket inodes of ``pids`` that are TCP, UDP or raw sockets of their namespace (/proc/PID/net)."""
    found = []
    for pid in pids:
        try:
            inodes = {os.readlink('/proc/%d/fd/%s' % (pid, fd))[len('socket:['):-1]
                      for fd in os.listdir('/proc/%d/fd' % pid)
                      if os.readlink('/proc/%d/fd/%s' % (pid, fd)).startswith('socket:[')}
            for table in ('tcp', 'tcp6', 'udp', 'udp6', 'raw', 'raw6'):
                with open('/proc/%d/net/%s' % (pid, table)) as handle:
                    for line in handle.readlines()[1:]:
                        if line.split()[9] in inodes:
                            found.append('%d %s %s' % (pid, table, line.strip()))
        except FileNotFoundError:  # gone meanwhile
            continue
    return found


def arrival(isp, address):
    """The uplink a probe from ``isp`` to ``address`` comes in by."""
    for uplink, addresses in UPLINK_ADDRESSES.items():
        if address in addresses:
            return uplink
    return isp


ROUTER_ADDRESSES = set(address for addresses in UPLINK_ADDRESSES.values() for address in addresses) | set(
    address for address, host in HOSTS.items() if host == 'router')


def expected_forwards(scanned):
    """{probe: state} the forwards must give: each listed uplink, from every ISP, answered by the target.

    A forward takes its port on the router's own addresses only (the role's DNAT
    matches `fib daddr type local`): a neighbour asking a LAN address on that port
    reaches that address as before, not the forward's target.
    """
    expected = {}
    for forward in FORWARDS:
        uplinks = forward.get('uplinks', list(UPLINK_ADDRESSES))
        for isp, proto, address, port in scanned:
            if (proto, port) == (forward['proto'], forward['port']) and ':' not in address \
                    and address in ROUTER_ADDRESSES and arrival(isp, address) in uplinks:
                expected[(isp, proto, address, port)] = 'open ' + HOSTS[forward['to']]
    return expected


def summary(results):
    """What a scan saw, one line per (isp, proto, address, state), the ports as ranges; 'closed' only counted."""
    groups = {}
    closed = 0
    for (isp, proto, address, port), state in results.items():
        if state == 'closed':
            closed += 1
        else:
            groups.setdefault((isp, proto, address, state), []).append(port)
    lines = ['%s -> %s %s: %s %s' % (isp, proto, address, state, _ranges(ports))
             for (isp, proto, address, state), ports in sorted(groups.items())]
    return '\n'.join(lines + ['closed: %d of %d probes' % (closed, len(results))])


def _ranges(ports):
    ports = sorted(ports)
    spans = []
    for port in ports:
        if spans and spans[-1][1] == port - 1:
            spans[-1][1] = port
        else:
            spans.append([port, port])
    return ','.join('%d' % a if a == b else '%d-%d' % (a, b) for a, b in spans)


def describe(probes, before, after):
    """One line per probe: who scanned what, its state before => after."""
    return '\n'.join('%s -> %s %s:%d: %s => %s' % (probe + (before[probe], after[probe])) for probe in sorted(probes))


def test_split_access_adds_only_the_forwards(lab_factory, tmp_path):
    started = time.monotonic()
    lab = lab_factory(lab_topology())
    for isp, addresses in UPLINK_ADDRESSES.items():
        for subnet in LAN_SUBNETS:
            # (isp1 routes the IPv6 LAN, from its /48, through the router already)
            lab.ip(isp, 'route', 'replace', subnet, 'via', addresses[':' in subnet])
    listeners = start_listeners(lab)
    try:
        warm_up(lab)
        sockets_before = listening(lab)
        assert {(netid, local.rsplit(':', 1)[1]) for netid, local, _users in sockets_before} >= {
            ('tcp', '53'), ('tcp', '7000'), ('udp', '53'), ('udp', '7000')}
        before = scan_from_isps(lab)
        scanned_before = time.monotonic()
        print('before:\n' + summary(before))

        # The scan sees something: the router's and the LAN hosts' services from every
        # ISP (this lab's router filters nothing), closed ports as closed.
        router_addresses = [address for address in TARGETS if HOSTS.get(address, 'router') == 'router']
        for isp in NEIGHBOURS:
            for address in router_addresses:
                assert before[(isp, 'tcp', address, 7000)] == 'open router'
                assert before[(isp, 'udp', address, 53)] == 'open router'
                assert before[(isp, 'tcp', address, 80)] == 'closed'
                assert before[(isp, 'udp', address, 5353)] == 'closed'
            for address in ('192.168.1.50', '2001:db8:1:1::50'):
                assert before[(isp, 'tcp', address, 80)] == 'open lanserver'
            for address in ('192.168.2.10', '2001:db8:1:2::10'):
                assert before[(isp, 'udp', address, 123)] == 'open lan2host'
            assert before[(isp, 'tcp', '192.168.1.10', 80)] == 'closed'
            assert before[(isp, 'udp', '2001:db8:1:1::10', 80)] == 'closed'

        apply_split_access(lab, tmp_path)
        applied = time.monotonic()
        watch = Watch(lab)
        try:
            wait_for(lambda: watch.saw('^watching '), 15)
            after = scan_from_isps(lab)
            sockets_after = listening(lab)
            agent = process_tree(watch.proc.pid)
            agent_sockets = [item for item in sockets_after
                             if any('pid=%d,' % pid in item[2] for pid in agent)] + inet_sockets_of(agent)
        finally:
            code = watch.stop()
        assert code == 0, watch.lines
    finally:
        for proc in listeners:
            proc.kill()
            proc.wait()
    scanned_after = time.monotonic()
    print('after:\n' + summary(after))
    print('lab, listeners and scan before: %.1f s, apply: %.1f s, watch and scan after: %.1f s, in all: %.1f s'
          % (scanned_before - started, applied - scanned_before, scanned_after - applied, scanned_after - started))
    changed = {probe for probe in before if after[probe] != before[probe]}
    expected = expected_forwards(before)
    print('changed:\n' + describe(changed, before, after))
    problems = []
    unexpected = changed - set(expected)
    if unexpected:
        problems.append('new ways in, not listed as forwards:\n' + describe(unexpected, before, after))
    wrong = {probe for probe in expected if after[probe] != expected[probe]}
    if wrong:
        problems.append('forwards not answered by their target:\n' + describe(wrong, before, after))
    if agent_sockets:
        problems.append('sockets of the agent:\n' + '\n'.join(map(str, agent_sockets)))
    if sockets_after != sockets_before:
        problems.append('listening sockets of the router: new %s, gone %s'
                        % (sorted(sockets_after - sockets_before), sorted(sockets_before - sockets_after)))
    assert not problems, '\n\n'.join(problems)
