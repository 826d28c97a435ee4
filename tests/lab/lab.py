"""The namespace lab: build a declarative topology of network namespaces, drive
traffic through it, tear it down.

A topology is plain data::

    {
      'name': 'two_isp',
      'nodes': {                       # one network namespace per node
        'router': {
          'forwarding': True,          # net.ipv4.ip_forward and IPv6 forwarding
          'sysctls': {'net.ipv4.conf.all.rp_filter': 2},
          'bridges': ['lan0'],         # bridge interfaces of this node
          'macs': {'lan0': '52:54:00:00:01:01'},
          'addresses': {'lan0': ['192.168.1.1/24', '2001:db8:1:1::1/64']},
          'routes': ['default via 198.51.100.1 dev wan1'],   # `ip route add` arguments
          'nft': 'table ip lab_nat { ... }',                 # loaded with nft -f
          'listen': [80],              # TCP ports of the recording server
        },
        ...
      },
      'links': [                       # veth pairs, 'node:interface' at each end
        {'a': 'router:wan1', 'b': 'isp1:cust0'},
        {'a': 'router:lan0p1', 'b': 'client1:eth0', 'bridge': 'lan0'},  # end a joins bridge lan0
      ],
      'uplinks': {'isp1': ['198.51.100.0/24']},   # for Lab.uplink_of
    }

Every node's namespace is named PREFIX-NODE and gets /etc/netns/PREFIX-NODE/iproute2
(a copy of the standard files, with an empty rt_tables.d), so routing table
names resolve per router. Everything a lab creates carries its prefix, and
teardown(prefix) removes exactly that: the namespaces (their interfaces, routes,
rules, nftables and conntrack go with them), the processes running in them, the
/etc/netns directories and the lab's state directory under /run/netpolicy-lab.
The host namespace is never touched: veth pairs are created directly inside
their namespaces.
"""
import atexit
import collections
import contextlib
import copy
import ipaddress
import itertools
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from tests.lab import netns as _netns
from tests.lab.names import RUN_PREFIX
from tests.lab.recorder import peer_text

STATE_ROOT = '/run/netpolicy-lab'
ETC_NETNS = '/etc/netns'
HOST_IPROUTE2 = '/etc/iproute2'
HOST_NETPOLICY = '/etc/netpolicy'
RECORDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'recorder.py')
IFNAME_MAX = 15  # IFNAMSIZ - 1
# The variables that would install the agent's systemd unit (see Lab.inventory).
SERVICE_VARIABLES = ('split_access_service', 'source_routing_service', 'reply_via_same_router_service',
                     'agent_service')
NODE_KEYS = {'forwarding', 'sysctls', 'bridges', 'macs', 'addresses', 'routes', 'nft', 'listen'}
STANDARD_RT_TABLES = '255\tlocal\n254\tmain\n253\tdefault\n0\tunspec\n'

_NODE_NAME = re.compile(r'^[a-z][a-z0-9_]*$')
_IFNAME = re.compile(r'^[A-Za-z0-9_.-]+$')
_LAB_COUNTER = itertools.count(1)


class TopologyError(ValueError):
    """A topology that cannot be built; the message names the field."""


class LabCommandError(subprocess.CalledProcessError):
    """A command of the lab failed; unlike CalledProcessError, says why."""

    def __str__(self):
        return '%s\n%s' % (super().__str__(), (self.stderr or '').strip())


# ---------------------------------------------------------------- topology


def _end(text, field, nodes):
    """'router:wan1' -> ('router', 'wan1'), checked."""
    node, sep, ifname = str(text).partition(':')
    if not sep or node not in nodes:
        raise TopologyError('%s: not NODE:INTERFACE with a known node: %r' % (field, text))
    _check_ifname(ifname, field)
    return node, ifname


def _check_ifname(ifname, field):
    if not _IFNAME.match(ifname) or len(ifname) > IFNAME_MAX or ifname == 'lo':
        raise TopologyError('%s: not a usable interface name (at most %d characters): %r'
                            % (field, IFNAME_MAX, ifname))


def interfaces(topology):
    """{node: [interface, ...]}: bridges first, then link ends, in topology order."""
    result = {node: list(spec.get('bridges', ())) for node, spec in topology['nodes'].items()}
    for link in topology.get('links', ()):
        for end in ('a', 'b'):
            node, ifname = link[end].split(':', 1)
            result[node].append(ifname)
    return result


def validate(topology):
    """Raise TopologyError, naming the field, if ``topology`` cannot be built."""
    nodes = topology.get('nodes')
    if not isinstance(nodes, dict) or not nodes:
        raise TopologyError('nodes: must be a non-empty dict')
    seen = {}
    for node, spec in nodes.items():
        if not _NODE_NAME.match(node):
            raise TopologyError('nodes: not a node name (a-z, 0-9, _): %r' % node)
        unknown = set(spec) - NODE_KEYS
        if unknown:
            raise TopologyError('nodes.%s: unknown keys %s' % (node, ', '.join(sorted(unknown))))
        seen[node] = set()
        for ifname in spec.get('bridges', ()):
            _check_ifname(ifname, 'nodes.%s.bridges' % node)
            seen[node].add(ifname)
    for index, link in enumerate(topology.get('links', ())):
        field = 'links[%d]' % index
        ends = []
        for end in ('a', 'b'):
            node, ifname = _end(link.get(end), '%s.%s' % (field, end), nodes)
            if ifname in seen[node]:
                raise TopologyError('%s.%s: interface %s of %s is defined twice' % (field, end, ifname, node))
            seen[node].add(ifname)
            ends.append(node)
        if ends[0] == ends[1]:
            raise TopologyError('%s: both ends on node %s' % (field, ends[0]))
        bridge = link.get('bridge')
        if bridge is not None and bridge not in nodes[ends[0]].get('bridges', ()):
            raise TopologyError('%s.bridge: %r is not a bridge of %s' % (field, bridge, ends[0]))
    for node, spec in nodes.items():
        for key in ('addresses', 'macs'):
            for ifname, value in spec.get(key, {}).items():
                if ifname not in seen[node] and ifname != 'lo':
                    raise TopologyError('nodes.%s.%s: no interface %r on %s' % (node, key, ifname, node))
        for ifname, cidrs in spec.get('addresses', {}).items():
            for cidr in cidrs:
                try:
                    ipaddress.ip_interface(cidr)
                except ValueError:
                    raise TopologyError('nodes.%s.addresses.%s: not an address/prefix: %r' % (node, ifname, cidr))
        for port in spec.get('listen', ()):
            if not isinstance(port, int) or not 0 < port < 65536:
                raise TopologyError('nodes.%s.listen: not a TCP port: %r' % (node, port))
    for name, nets in topology.get('uplinks', {}).items():
        for net in nets:
            try:
                ipaddress.ip_network(net)
            except ValueError:
                raise TopologyError('uplinks.%s: not a network: %r' % (name, net))


def node_commands(topology, node):
    """The `ip -batch` lines that configure ``node`` once its veth ends exist."""
    spec = topology['nodes'][node]
    ifnames = interfaces(topology)[node]
    lines = ['link add %s type bridge' % bridge for bridge in spec.get('bridges', ())]
    for ifname, mac in spec.get('macs', {}).items():
        lines.append('link set dev %s address %s' % (ifname, mac))
    for link in topology.get('links', ()):
        if link.get('bridge') and link['a'].split(':', 1)[0] == node:
            lines.append('link set dev %s master %s' % (link['a'].split(':', 1)[1], link['bridge']))
    for ifname, cidrs in spec.get('addresses', {}).items():
        for cidr in cidrs:
            # nodad: an IPv6 address is usable at once, not after ~1 s of DAD
            nodad = ' nodad' if ipaddress.ip_interface(cidr).version == 6 else ''
            lines.append('addr add %s dev %s%s' % (cidr, ifname, nodad))
    lines += ['link set dev %s up' % ifname for ifname in ['lo'] + ifnames]
    lines += ['route add %s' % route for route in spec.get('routes', ())]
    return lines


def node_sysctls(spec):
    values = {}
    if os.path.isdir('/proc/sys/net/ipv6'):
        # no duplicate address detection: link-local addresses usable at once, so
        # neighbour discovery for forwarded packets works from the first packet
        values.update({'net.ipv6.conf.all.accept_dad': 0, 'net.ipv6.conf.default.accept_dad': 0})
    if spec.get('forwarding'):
        values.update({'net.ipv4.ip_forward': 1, 'net.ipv6.conf.all.forwarding': 1})
    if spec.get('bridges') and os.path.isdir('/proc/sys/net/bridge'):
        # bridged frames skip netfilter, as on a router without br_netfilter loaded
        for family in ('iptables', 'ip6tables', 'arptables'):
            values['net.bridge.bridge-nf-call-' + family] = 0
    values.update(spec.get('sysctls', {}))
    return values


def link_commands(topology, name):
    """The `ip -batch` lines, run in the host namespace, that create every veth
    pair directly inside its two namespaces (nothing appears in the host's)."""
    lines = []
    for link in topology.get('links', ()):
        (node_a, if_a), (node_b, if_b) = (link[end].split(':', 1) for end in ('a', 'b'))
        lines.append('link add %s netns %s type veth peer name %s netns %s'
                     % (if_a, name(node_a), if_b, name(node_b)))
    return lines


# ---------------------------------------------------------------- teardown by prefix


def namespaces(prefix):
    """Names of the existing namespaces of the lab with this prefix."""
    try:
        entries = os.listdir(_netns.NETNS_RUN)
    except FileNotFoundError:
        return []
    return sorted(entry for entry in entries if entry.startswith(prefix + '-'))


def _pids_in(netns):
    proc = subprocess.run(['ip', 'netns', 'pids', netns], capture_output=True, text=True, check=False)
    return [int(pid) for pid in proc.stdout.split()]


def _kill_all(names, grace=1.0):
    """SIGTERM every process in these namespaces, SIGKILL what is left after ``grace``."""
    deadline = time.monotonic() + grace
    sig = signal.SIGTERM
    while True:
        pids = [pid for netns in names for pid in _pids_in(netns)]
        if not pids:
            return
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        time.sleep(0.05)


def teardown(prefix):
    """Remove everything of the lab with this prefix; safe to call twice."""
    names = namespaces(prefix)
    _kill_all(names)
    if names:
        subprocess.run(['ip', '-force', '-batch', '-'], input=''.join('netns del %s\n' % n for n in names),
                       capture_output=True, text=True, check=False)
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(ETC_NETNS):
            if entry.startswith(prefix + '-'):
                shutil.rmtree(os.path.join(ETC_NETNS, entry), ignore_errors=True)
    shutil.rmtree(os.path.join(STATE_ROOT, prefix), ignore_errors=True)
    left = namespaces(prefix)
    if left:
        raise RuntimeError('lab %s: namespaces left after teardown: %s' % (prefix, ', '.join(left)))


def new_prefix():
    """A prefix no existing namespace uses: RUN_PREFIX-labN."""
    while True:
        prefix = '%s-lab%d' % (RUN_PREFIX, next(_LAB_COUNTER))
        if not namespaces(prefix) and not os.path.exists(os.path.join(STATE_ROOT, prefix)):
            return prefix


# ---------------------------------------------------------------- teardown on exit and signals

_LIVE = set()
_LIVE_LOCK = threading.RLock()  # re-entered when a signal arrives while it is held
_HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _teardown_live():
    with _LIVE_LOCK:
        labs = list(_LIVE)
    for lab in labs:
        with contextlib.suppress(Exception):
            lab.down()


def _on_signal(signum, frame):
    """Tear down, then die of the same signal as if we had never caught it."""
    _teardown_live()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_handlers():
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in _HANDLED_SIGNALS:
        # only where nobody else handles it (pytest, molecule keep their own)
        if signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, _on_signal)


atexit.register(_teardown_live)


# ---------------------------------------------------------------- traffic


def _family(address):
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


class HeldConnection:
    """A long-lived TCP connection to a recording server."""

    def __init__(self, sock, seen, timeout):
        self.sock = sock
        self.seen = seen          # the source address the server saw
        self.timeout = timeout
        self._buffer = b''
        self._pings = 0

    def _line(self):
        while b'\n' not in self._buffer:
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError('closed by the server')
            self._buffer += data
        line, self._buffer = self._buffer.split(b'\n', 1)
        return line.decode()

    def alive(self, timeout=None):
        """True if a ping goes to the server and its echo comes back within ``timeout``."""
        self._pings += 1
        token = 'ping %d' % self._pings
        try:
            self.sock.settimeout(self.timeout if timeout is None else timeout)
            self.sock.sendall((token + '\n').encode())
            while self._line() != token:  # a late echo of an earlier ping
                pass
            return True
        except OSError:
            return False

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------- the lab


class Lab:
    """A running lab: ``with Lab(topologies.two_isp()) as lab: ...``."""

    def __init__(self, topology, prefix=None):
        validate(topology)
        self.topology = copy.deepcopy(topology)
        self.prefix = prefix or new_prefix()
        self.state_dir = os.path.join(STATE_ROOT, self.prefix)
        self._servers = []

    # names and paths

    @property
    def nodes(self):
        return list(self.topology['nodes'])

    def name(self, node):
        """The real namespace name of ``node``."""
        if node not in self.topology['nodes']:
            raise KeyError('no node %r in topology %s' % (node, self.topology.get('name')))
        return '%s-%s' % (self.prefix, node)

    def names(self):
        return {node: self.name(node) for node in self.nodes}

    def etc(self, node):
        """/etc/netns/<name>: what `ip netns exec` shows as /etc inside the node."""
        return os.path.join(ETC_NETNS, self.name(node))

    def inventory(self, nodes=None, python='/usr/bin/python3'):
        """An Ansible inventory (dict, YAML/JSON-ready) of ``nodes`` (default: all),
        each reached through the collection's netns connection plugin. Modules
        run with ``python`` (default Debian's, as on a router; None: discover)."""
        hosts = {}
        for node in nodes or self.nodes:
            hosts[node] = {'ansible_connection': 'netpolicy.routing.netns', 'ansible_host': self.name(node),
                           # the agent the roles install: in the lab's directory, not the host's /usr/local
                           'agent_command': self.agent_command(node),
                           'agent_library': os.path.join(self.state_dir, 'agent', node, 'lib')}
            # No systemd unit: a node shares this machine's /run and /etc/systemd, so on a
            # machine that runs systemd the unit would be the machine's own (and point into
            # the lab). Tests that want the agent run `netpolicy-routing watch` themselves.
            hosts[node].update((name, False) for name in SERVICE_VARIABLES)
            if python:
                hosts[node]['ansible_python_interpreter'] = python
        return {'all': {'hosts': hosts}}

    def agent_command(self, node):
        """Where the roles install the agent command for ``node`` (see inventory)."""
        return os.path.join(self.state_dir, 'agent', node, 'bin', 'netpolicy-routing')

    # commands

    def run(self, node, *argv, check=True, input=None, timeout=120):
        """Run argv inside ``node`` (ip netns exec: its /etc/netns applies)."""
        return self._run(['ip', 'netns', 'exec', self.name(node)] + [str(arg) for arg in argv],
                         check=check, input=input, timeout=timeout)

    def ip(self, node, *argv, check=True):
        """`ip -n NAME ...` inside ``node``."""
        return self._run(['ip', '-n', self.name(node)] + [str(arg) for arg in argv], check=check)

    def nft(self, node, ruleset):
        """Load an nftables ruleset (text) in ``node``."""
        return self.run(node, 'nft', '-f', '-', input=ruleset)

    @staticmethod
    def _run(argv, check=True, input=None, timeout=120):
        proc = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout, check=False)
        if check and proc.returncode:
            raise LabCommandError(proc.returncode, argv, proc.stdout, proc.stderr)
        return proc

    def pids(self, node):
        """Processes running in ``node`` (its recording server, anything a test started)."""
        return _pids_in(self.name(node))

    def sysctl(self, node, key):
        return _netns.get_sysctl(self.name(node), key)

    # traffic

    def _open(self, node, host, port, timeout, bind):
        sock = _netns.tcp_socket(self.name(node), _family(host))
        try:
            sock.settimeout(timeout)
            if bind:
                sock.bind((bind, 0))
            sock.connect((host, port))
            held = HeldConnection(sock, None, timeout)
            held.seen = held._line()
            return held
        except BaseException:
            sock.close()
            raise

    def connect(self, node, host, port, count=1, timeout=2.0, bind=None):
        """Open ``count`` new TCP connections from ``node`` to host:port, one
        after another; return the source address the server saw for each
        (None where the connection failed)."""
        seen = []
        for dummy in range(count):
            try:
                held = self._open(node, host, port, timeout, bind)
            except OSError:
                seen.append(None)
                continue
            held.close()
            seen.append(held.seen)
        return seen

    @contextlib.contextmanager
    def hold(self, node, host, port, timeout=2.0, bind=None):
        """A long-lived connection: ``with lab.hold(...) as conn: conn.alive()``.
        Raises OSError if it cannot be opened."""
        held = self._open(node, host, port, timeout, bind)
        try:
            yield held
        finally:
            held.close()

    def uplinks_used(self, node, host, port, count, timeout=2.0, bind=None):
        """Counter {uplink: connections} of ``count`` new connections from ``node`` to
        host:port, by the source address the server saw; a failed one counts as 'failed'."""
        return collections.Counter(self.uplink_of(seen) or 'failed'
                                   for seen in self.connect(node, host, port, count=count, timeout=timeout, bind=bind))

    def uplink_of(self, address):
        """The uplink (topology 'uplinks') an address belongs to, or None."""
        if address is None:
            return None
        address = ipaddress.ip_address(peer_text(address))
        for uplink, nets in self.topology.get('uplinks', {}).items():
            if any(address in ipaddress.ip_network(net) for net in nets):
                return uplink
        return None

    def log(self, node):
        """[(source address, port), ...] the recording server of ``node`` saw, oldest first."""
        with open(os.path.join(self.state_dir, node + '.log')) as handle:
            return [(line.split()[0], int(line.split()[1])) for line in handle if line.strip()]

    def spoofed_drops(self, node):
        """Packets an ISP dropped for a source address not its customer's."""
        out = self.run(node, 'nft', '-j', 'list', 'counter', 'inet', 'lab_antispoof', 'spoofed').stdout
        for item in json.loads(out)['nftables']:
            if 'counter' in item:
                return item['counter']['packets']
        raise LookupError('no spoofed counter in %s' % node)

    # build and teardown

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()

    def up(self):
        """Build the lab; on any failure (or Ctrl-C) remove what was built, then raise."""
        if namespaces(self.prefix) or os.path.exists(self.state_dir):
            # not ours: tearing it down on a failure would remove someone else's lab
            raise RuntimeError('lab %s: that prefix is in use (namespaces or %s exist)'
                               % (self.prefix, self.state_dir))
        with _LIVE_LOCK:
            _LIVE.add(self)
        _install_handlers()
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return self

    def down(self):
        """Remove everything of this lab (namespaces, processes, files); idempotent."""
        for proc in self._servers:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for proc in self._servers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self._servers = []
        try:
            teardown(self.prefix)
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(self)

    def detach(self):
        """Leave the lab running after this process ends (the CLI's `up`)."""
        with _LIVE_LOCK:
            _LIVE.discard(self)
        self._servers = []

    def _build(self):
        nodes = self.topology['nodes']
        os.makedirs(self.state_dir, mode=0o700)
        with open(os.path.join(self.state_dir, 'lab.json'), 'w') as handle:
            json.dump({'prefix': self.prefix, 'names': self.names(), 'topology': self.topology}, handle, indent=1)
        self._run(['ip', '-batch', '-'], input=''.join('netns add %s\n' % self.name(n) for n in nodes))
        for node, spec in nodes.items():
            _make_etc(self.etc(node))
            values = node_sysctls(spec)
            if values:
                _netns.set_sysctls(self.name(node), values)
        links = link_commands(self.topology, self.name)
        if links:
            self._run(['ip', '-batch', '-'], input='\n'.join(links) + '\n')
        _run_parallel([(['ip', '-n', self.name(node), '-batch', '-'], '\n'.join(node_commands(self.topology, node)) + '\n')
                       for node in nodes])
        _run_parallel([(['ip', 'netns', 'exec', self.name(node), 'nft', '-f', '-'], spec['nft'])
                       for node, spec in nodes.items() if spec.get('nft')])
        started = self._start_servers()
        self._wait_links_up()
        self._wait_servers(started)

    def _wait_links_up(self, timeout=10.0):
        """Wait until the kernel has every interface operationally up.

        A veth end is fully up only after the kernel's link watcher has seen
        its carrier (that attaches its queue and lets IPv6 use its addresses);
        that runs up to a second later, and a packet sent before is lost.
        """
        deadline = time.monotonic() + timeout
        while True:
            outputs = _run_parallel([(['ip', '-n', self.name(node), '-br', 'link', 'show'], '')
                                     for node in self.nodes])
            down = ['%s:%s' % (node, fields[0].split('@')[0])
                    for node, out in zip(self.nodes, outputs)
                    for fields in (line.split() for line in out.splitlines())
                    if fields and fields[0] != 'lo' and fields[1] != 'UP']
            if not down:
                return
            if time.monotonic() > deadline:
                raise RuntimeError('lab %s: interfaces not up after %.0f s: %s'
                                   % (self.prefix, timeout, ', '.join(down)))
            time.sleep(0.05)

    def _start_servers(self):
        started = []
        for node, spec in self.topology['nodes'].items():
            if not spec.get('listen'):
                continue
            log = os.path.join(self.state_dir, node + '.log')
            with open(os.path.join(self.state_dir, node + '.err'), 'w') as err:
                proc = subprocess.Popen(
                    ['ip', 'netns', 'exec', self.name(node), sys.executable, '-I', RECORDER, log]
                    + [str(port) for port in spec['listen']],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                    start_new_session=True,  # Ctrl-C reaches us, and we tear down in order
                )
            self._servers.append(proc)
            started.append((node, proc))
        return started

    def _wait_servers(self, started):
        deadline = time.monotonic() + 15
        for node, proc in started:
            readable = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]
            line = proc.stdout.readline() if readable else b''
            proc.stdout.close()
            if line.strip() != b'ready':
                with open(os.path.join(self.state_dir, node + '.err')) as err:
                    raise RuntimeError('recording server of %s did not start: %s' % (node, err.read().strip()))


def _make_etc(path):
    """/etc/netns/NAME/iproute2: the standard files, no rt_tables.d entries."""
    conf = os.path.join(path, 'iproute2')
    os.makedirs(os.path.join(conf, 'rt_tables.d'))
    if os.path.isdir(HOST_IPROUTE2):
        for entry in os.listdir(HOST_IPROUTE2):
            source = os.path.join(HOST_IPROUTE2, entry)
            if os.path.isfile(source):
                shutil.copy(source, conf)
    if not os.path.exists(os.path.join(conf, 'rt_tables')):  # iproute2 >= 6.5 keeps it in /usr/share
        with open(os.path.join(conf, 'rt_tables'), 'w') as handle:
            handle.write(STANDARD_RT_TABLES)
    # /etc/netpolicy inside the node (the roles' saved state, the agent's files). `ip netns exec`
    # bind-mounts /etc/netns/NAME/netpolicy over /etc/netpolicy, which needs the mount point on
    # the host: an empty directory, left in place (a real router has it anyway).
    os.makedirs(os.path.join(path, 'netpolicy'))
    # Likewise the node's own /etc/sysctl.d (the host always has the mount point).
    os.makedirs(os.path.join(path, 'sysctl.d'))
    os.makedirs(HOST_NETPOLICY, exist_ok=True)


def _run_parallel(commands):
    """Run (argv, stdin text) commands at the same time; return their outputs,
    or raise on the first failure."""
    procs = [(argv, text, subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True))
             for argv, text in commands]
    failure = None
    outputs = []
    for argv, text, proc in procs:
        out, err = proc.communicate(text, timeout=120)
        outputs.append(out)
        if proc.returncode and failure is None:
            failure = LabCommandError(proc.returncode, argv, out, err + '\ninput:\n' + text)
    if failure:
        raise failure
    return outputs
