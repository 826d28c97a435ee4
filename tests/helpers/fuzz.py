"""Fuzzing helpers: malformed values, cases drawn deterministically with
hypothesis, and a module call run as Ansible runs it, but in a forked child
instead of a new Python process (about a hundred times cheaper).

A case is a valid set of arguments with one to three of its fields replaced by
something wrong (or removed, or an unknown key added); ``mutated`` records
which, so a test can check that the failure names one of them.
"""
import copy
import ctypes
import json
import os
import pickle
import re
import select
import signal
import subprocess
import time
import traceback

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

DELETE = object()  # a mutation that removes the key

# ---------------------------------------------------------------- values

# Anything at all, of any type, including the shapes JSON can carry.
_SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-2 ** 70, max_value=2 ** 70),
    st.sampled_from([0, -1, 2 ** 31, 2 ** 32, 2 ** 32 - 1, 2 ** 64, 1.5, -0.0, float('inf')]),
    st.text(max_size=20),
    st.sampled_from(['', ' ', '\t', 'null', 'None', 'true', '0x', '-', '/', '..', '\x00', 'a\x00b',
                     '\u00e9t\u00e9', '\u4e2d\u6587', '\U0001f600', 'x' * 300, 'x' * 5000, '$(reboot)', '{{ x }}']),
)
JUNK = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=6)

BAD_ADDRESSES = st.sampled_from([
    '192.0.2.300', '192.0.2', '192.0.2.1.5', '192.0.2.1/33', '192.0.2.1/24', '2001:db8::/129', '2001:db8:::1',
    '2001:db8::1/64', 'fe80::1%eth0', '1.2.3.4/-1', 'localhost', 'x', '', ' ', '0x7f000001', '192.0.2.1 ',
    '::ffff:192.0.2.1/200', '192.0.2.0/24/24', '\u0661.2.3.4'])
BAD_IFNAMES = st.sampled_from(['nosuch0', 'x' * 16, 'a b', 'eth/0', 'eth:0', 'a"b', "a'b", '', '.', '..',
                               '\u00e9th0', 'lan0\x00', ' lan0', 'all'])
BAD_INTS = st.sampled_from([-1, -2 ** 31, 2 ** 32, 2 ** 32 + 1, 2 ** 64, 'abc', '5x', '', '0x', [1], {'a': 1},
                            1.5, float('nan'), True, None])
BAD_TABLES = st.sampled_from([0, 253, 255, -1, 2 ** 31, 2 ** 32, 'nosuch', '', '0x', 'a b', 'local', '255', '-5',
                              [100], {'id': 100}, 1.5])
BAD_MARKS = st.sampled_from([0, -1, 2 ** 32, 2 ** 40, 'zz', '0x', '1/', '0x1/0x1/0x1', '0x100000000', '-1', '1/0',
                             '0x2/0x1', [1], {'m': 1}, ''])
BAD_PORTS = st.sampled_from(['0', '65535', '65536', '10-5', 'a-b', '1-2-3', '-1', '', ' ', 'http', '80,443',
                             0, 70000, -1, [80], {'p': 80}])
BAD_CHOICES = st.sampled_from(['LOOKUP', 'nope', '', ' present', 'ipv5', 'Absent', 1, [], {}, '\u00e9'])
BAD_BOOLS = st.sampled_from(['maybe', 2, -1, 'yess', '', [], {}, [True], 1.5, 'nope'])
BAD_TABLE_NAMES = st.sampled_from(['main', 'local', 'default', 'unspec', 'all', 'cache', '123', '0x10', '.x', '-x',
                                   'a b', 'a/b', 'x' * 300, '\u00e9t\u00e9', '', ' ', 'a\tb', 'a#b'])
BAD_NETNS = st.sampled_from(['', '/', '.', '..', 'a/b', 'a\x00b', 'nosuch-netpolicy-fuzz', 'x' * 300, 5, [1], {'a': 1}])
BAD_PATHS = st.sampled_from(['/tmp/netpolicy-fuzz.conf', 'rt_tables', '/etc/iproute2/rt_tables.d/.conf',
                             '/etc/iproute2/rt_tables.d/x.txt', '/etc/passwd', '/etc/iproute2/../passwd', '', '/',
                             '/etc/iproute2/rt_tables.d/', '/etc/iproute2/rt_tables.d/a\x00.conf',
                             '/etc/iproute2/rt_tables.d/%s.conf' % ('x' * 300), '/etc/iproute2/rt_tables.d/x.conf'])
BAD_MACS = st.sampled_from(['52:54:00:00:02', '52:54:00:00:02:01:03', 'zz:54:00:00:02:01', '52-54-00-00-02-01',
                            '5254.0000.0201', '', 'ff:ff:ff:ff:ff:ff', '52:54:00:00:02:1', ' 52:54:00:00:02:01'])
BAD_LISTS = st.sampled_from(['lan0', 5, {'a': 1}, [None], [[]], [{}], '', [1, 2], ['', ''], True])

KINDS = {
    'address': BAD_ADDRESSES, 'ifname': BAD_IFNAMES, 'int': BAD_INTS, 'table': BAD_TABLES, 'mark': BAD_MARKS,
    'port': BAD_PORTS, 'choice': BAD_CHOICES, 'bool': BAD_BOOLS, 'table_name': BAD_TABLE_NAMES,
    'list': BAD_LISTS, 'netns': BAD_NETNS, 'path': BAD_PATHS, 'mac': BAD_MACS,
    'str': st.one_of(st.text(max_size=40), BAD_ADDRESSES, BAD_IFNAMES),
}


def malformed(kind):
    """A wrong value for a field of ``kind``: one of its typical mistakes, or anything at all."""
    if kind == 'netns':  # never random text: it could name a namespace that is not ours
        return st.one_of(KINDS[kind], st.just(DELETE))
    return st.one_of(KINDS[kind], KINDS[kind], JUNK, st.just(DELETE))


# ---------------------------------------------------------------- cases

def set_path(params, path, value):
    """Set (or, with DELETE, remove) ``path`` ('a', 'rules[1].from') in ``params``."""
    parts = re.findall(r'[^.\[\]]+|\[\d+\]', path)
    node = params
    for part in parts[:-1]:
        if part.startswith('['):
            if not isinstance(node, list) or int(part[1:-1]) >= len(node):
                return False
            node = node[int(part[1:-1])]
        else:
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
    last = parts[-1]
    key = int(last[1:-1]) if last.startswith('[') else last
    if not isinstance(node, list if isinstance(key, int) else dict):
        return False
    if value is DELETE:
        if isinstance(node, dict):
            node.pop(key, None)
        elif key < len(node):
            del node[key]
    elif isinstance(node, list) and key >= len(node):
        node.append(value)
    else:
        node[key] = value
    return True


@st.composite
def mutated(draw, bases, fields, extra=None):
    """A case: a deep copy of one of ``bases`` with 1-3 of ``fields`` ({path: kind}) made wrong.

    Returns {'params', 'mutated': [(path, repr of value)]}. ``extra`` is a
    strategy of further (path, value) mutations (duplicates, ...).
    """
    params = copy.deepcopy(draw(st.sampled_from(bases)))
    changes = []
    paths = sorted(fields)
    for _round in range(draw(st.integers(1, 3))):
        choice = draw(st.integers(0, 9))
        if choice == 0:
            path, value = draw(st.sampled_from(['unknown_option', 'Name'])), draw(JUNK)
        elif choice == 1 and extra is not None:
            path, value = draw(extra)
        else:
            path = draw(st.sampled_from(paths))
            value = draw(malformed(fields[path]))
        if set_path(params, path, value if value is DELETE else copy.deepcopy(value)):
            changes.append((path, 'removed' if value is DELETE else value))
    return {'params': params, 'mutated': changes}


def collect(strategy, count):
    """``count`` examples of ``strategy``, the same ones on every run (derandomized)."""
    found = []

    @settings(derandomize=True, max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def gather(case):
        found.append(case)

    gather()
    return found


def as_json(value):
    """``value`` as Ansible hands module arguments over: through JSON."""
    return json.loads(json.dumps(value))


def field_names(case):
    """Every key in the case's arguments and the leaves of its mutated paths."""
    names = set()

    def walk(value):
        if isinstance(value, dict):
            for key, item in value.items():
                names.add(str(key))
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(case['params'])
    for path, _value in case['mutated']:
        names.update(re.findall(r'[A-Za-z_][A-Za-z0-9_]*', path))
    return names


def names_a_field(message, names):
    """True when ``message`` names one of ``names`` as a word of its own."""
    return any(re.search(r'(?<![A-Za-z0-9_])%s(?![A-Za-z0-9_])' % re.escape(name), message) for name in names if name)


# ---------------------------------------------------------------- the kernel state of a namespace

_COUNTERS = re.compile(r'\[\d+:\d+\]|packets \d+ bytes \d+')


def _output(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return _COUNTERS.sub('', proc.stdout) + proc.stderr


def files(directory):
    """{relative path: bytes} of every file under ``directory``."""
    found = {}
    for root, _dirs, names in os.walk(directory):
        for name in names:
            with open(os.path.join(root, name), 'rb') as handle:
                found[os.path.relpath(os.path.join(root, name), directory)] = handle.read()
    return found


def state(etc):
    """Rules, routes of every table, nftables, iptables (both families) and the rt_tables files
    under ``etc``, of the namespace this process is in."""
    found = {'files': files(etc)}
    for family in ('-4', '-6'):
        found['rules' + family] = _output(['ip', '-j', family, 'rule', 'show'])
        found['routes' + family] = _output(['ip', '-j', family, 'route', 'show', 'table', 'all'])
    found['nft'] = _output(['nft', 'list', 'ruleset'])
    for tool in ('iptables-save', 'ip6tables-save'):
        found[tool] = '\n'.join(line for line in _output([tool]).splitlines() if not line.startswith('#'))
    return found


def differences(before, after):
    return sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))


# ---------------------------------------------------------------- a module call in a forked child

_CLONE_NEWNS = 0x00020000
_CLONE_NEWNET = 0x40000000
_MS_BIND, _MS_REC, _MS_SLAVE = 4096, 16384, 1 << 19
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, '%s: %s' % (what, os.strerror(errno)))


def enter(netns, etc_iproute2):
    """Move this (single-threaded, forked) process into ``netns`` as ``ip netns exec`` does:
    its network namespace, and a mount namespace where /etc/iproute2 is the namespace's own,
    so even a module call without ``netns`` reads and writes only the namespace's files."""
    _check(_libc.unshare(_CLONE_NEWNS), 'unshare')
    _check(_libc.mount(b'none', b'/', None, _MS_REC | _MS_SLAVE, None), 'mount --make-rslave /')
    _check(_libc.mount(etc_iproute2.encode(), b'/etc/iproute2', None, _MS_BIND, None), 'bind /etc/iproute2')
    fd = os.open(os.path.join('/run/netns', netns), os.O_RDONLY)
    try:
        _check(_libc.setns(fd, _CLONE_NEWNET), 'setns')
    finally:
        os.close(fd)


def in_child(func, timeout=60):
    """Run ``func()`` in a forked child; return its (picklable) value, or raise
    RuntimeError with the child's traceback."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read_fd)
            try:
                payload = pickle.dumps(('ok', func()))
            except BaseException:  # handed to the parent
                payload = pickle.dumps(('error', traceback.format_exc()))
            view = memoryview(payload)
            while view:
                view = view[os.write(write_fd, view):]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                raise RuntimeError('the child did not finish within %ss' % timeout)
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    if not chunks:
        raise RuntimeError('the child died without a result')
    status, value = pickle.loads(b''.join(chunks))
    if status != 'ok':
        raise RuntimeError(value)
    return value
