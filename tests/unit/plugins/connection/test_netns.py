"""The netns connection plugin, loaded the way Ansible loads it, without a real namespace.

The namespace directory is a temporary one and ``ip`` is either patched out
(argv checks) or a stand-in script that drops ``netns exec NAME`` and runs the
rest, so file transfers really stream through the wrapper.
"""
import os
import stat
import subprocess
import sys

import pytest

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.playbook.play_context import PlayContext
from ansible.plugins.loader import connection_loader
from ansible.utils.collection_loader import AnsibleCollectionConfig
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
COLLECTIONS = os.path.join(REPO, '.cache', 'collections')
PLUGIN = 'netpolicy.routing.netns'

# Stands in for ip: "ip netns exec NAME CMD..." runs CMD here, anything else fails.
FAKE_IP = '''#!/bin/sh
[ "$1 $2" = "netns exec" ] || exit 99
shift 3
exec "$@"
'''


@pytest.fixture(scope='module', autouse=True)
def collection_loader():
    """The collection finder, as ansible's CLI installs it, for this module's tests only.

    Other unit tests import ansible_collections.* as plain packages, which lack
    the collection metadata the plugin loader needs: set those aside while the
    finder is installed, and put them back afterwards.
    """
    if AnsibleCollectionConfig.collection_finder is not None:
        yield
        return
    plain = {name: module for name, module in sys.modules.items()
             if name == 'ansible_collections' or name.startswith('ansible_collections.')}
    for name in plain:
        del sys.modules[name]
    finder = _AnsibleCollectionFinder(paths=[COLLECTIONS])
    finder._install()
    try:
        yield
    finally:
        finder._remove()
        for name in [name for name in sys.modules if name == 'ansible_collections' or name.startswith('ansible_collections.')]:
            del sys.modules[name]
        sys.modules.update(plain)


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """A stand-in for /run/netns holding namespace 'lab-r1'."""
    directory = tmp_path / 'run-netns'
    directory.mkdir()
    (directory / 'lab-r1').write_text('')
    connection(PlayContext())  # loads the plugin module so it can be patched
    monkeypatch.setattr(_plugin_module(), 'NETNS_RUN_DIR', str(directory))
    return directory


@pytest.fixture
def fake_ip(tmp_path):
    path = tmp_path / 'fake-ip'
    path.write_text(FAKE_IP)
    path.chmod(stat.S_IRWXU)
    return str(path)


def connection(play_context=None, **host_vars):
    """The plugin with its options set from ``host_vars``, as the task executor does."""
    play_context = play_context or PlayContext()
    conn = connection_loader.get(PLUGIN, play_context)
    conn.set_options(var_options=host_vars)
    return conn


def _plugin_module():
    return sys.modules[type(connection_loader.get(PLUGIN, PlayContext())).__module__]


def test_loads_with_pipelining():
    conn = connection(inventory_hostname='lab-r1')
    assert conn.transport == PLUGIN
    assert conn.has_pipelining
    assert conn.get_option('ip_executable') == 'ip'
    assert conn.get_option('pipelining') is False


@pytest.mark.parametrize('host_vars, expected', [
    ({'inventory_hostname': 'lab-r1'}, 'lab-r1'),
    ({'inventory_hostname': 'router1', 'ansible_host': 'lab-r1'}, 'lab-r1'),
    ({'inventory_hostname': 'router1', 'ansible_host': '192.0.2.1', 'ansible_netns_name': 'lab-r1'}, 'lab-r1'),
])
def test_namespace_name_from_host_vars(run_dir, monkeypatch, host_vars, expected):
    monkeypatch.setattr(_plugin_module(), 'get_bin_path', lambda name: '/usr/sbin/ip')
    conn = connection(**host_vars)
    conn._connect()
    assert conn.netns == expected
    assert conn._build_exec_argv('echo hi') == ['/usr/sbin/ip', 'netns', 'exec', expected, '/bin/sh', '-c', 'echo hi']


def test_namespace_name_falls_back_to_remote_addr(run_dir, monkeypatch):
    monkeypatch.setattr(_plugin_module(), 'get_bin_path', lambda name: '/usr/sbin/ip')
    play_context = PlayContext()
    play_context.remote_addr = 'lab-r1'
    conn = connection(play_context)
    conn._connect()
    assert conn.netns == 'lab-r1'


@pytest.mark.parametrize('name, message', [
    ('', 'no network namespace name'),
    ('.', "not a network namespace name: '.'"),
    ('..', "not a network namespace name: '..'"),
    ('../etc', "not a network namespace name: '../etc'"),
    ('a/b', "not a network namespace name: 'a/b'"),
])
def test_bad_namespace_name(run_dir, name, message):
    conn = connection(ansible_netns_name=name)
    with pytest.raises(AnsibleConnectionFailure, match=message.replace('.', r'\.')):
        conn._connect()


@pytest.mark.parametrize('name', ['lab-r1', 'r_2', 'ünï', 'a.b'])
def test_good_namespace_name(name):
    assert _plugin_module().netns_name_error(name) is None


def test_missing_namespace_is_a_connection_failure(run_dir):
    conn = connection(ansible_host='lab-r9')
    with pytest.raises(AnsibleConnectionFailure, match="network namespace 'lab-r9' does not exist"):
        conn._connect()
    assert not conn.connected


def test_missing_ip_is_a_connection_failure(run_dir, monkeypatch):
    def not_found(name):
        raise ValueError('Failed to find required executable "%s"' % name)

    monkeypatch.setattr(_plugin_module(), 'get_bin_path', not_found)
    conn = connection(ansible_host='lab-r1')
    with pytest.raises(AnsibleConnectionFailure, match="needs the ip command of iproute2.*'ip' was not found"):
        conn._connect()


def test_ip_executable_absolute_path(run_dir, fake_ip, tmp_path):
    conn = connection(ansible_host='lab-r1', ansible_netns_ip_executable=fake_ip)
    conn._connect()
    assert conn.ip_path == fake_ip
    not_executable = tmp_path / 'not-ip'
    not_executable.write_text('')
    conn = connection(ansible_host='lab-r1', ansible_netns_ip_executable=str(not_executable))
    with pytest.raises(AnsibleConnectionFailure, match='was not found'):
        conn._connect()


class FakePopen:
    """Records what the plugin starts; the command 'succeeds' with fixed output."""

    calls = []

    def __init__(self, argv, stdin=None, stdout=None, stderr=None):
        self.argv = argv
        self.returncode = 0
        FakePopen.calls.append(self)

    def communicate(self, in_data=None):
        self.in_data = in_data
        return b'out', b'err'


def test_exec_command_argv_and_stdin(run_dir, monkeypatch):
    monkeypatch.setattr(_plugin_module(), 'get_bin_path', lambda name: '/usr/sbin/ip')
    monkeypatch.setattr(subprocess, 'Popen', FakePopen)
    FakePopen.calls = []
    conn = connection(ansible_host='lab-r1')
    assert conn.exec_command("/bin/sh -c 'echo 汉语'", in_data=b'module data') == (0, b'out', b'err')
    (call,) = FakePopen.calls
    assert call.argv == [b'/usr/sbin/ip', b'netns', b'exec', b'lab-r1', b'/bin/sh', b'-c',
                         "/bin/sh -c 'echo 汉语'".encode('utf-8')]
    assert call.in_data == b'module data'


def test_exec_command_through_the_wrapper(run_dir, fake_ip):
    conn = connection(ansible_host='lab-r1', ansible_netns_ip_executable=fake_ip)
    rc, stdout, stderr = conn.exec_command('cat; echo " $0" >&2; exit 3', in_data=b'piped')
    assert (rc, stdout, stderr) == (3, b'piped', b' /bin/sh\n')


@pytest.mark.parametrize('content', [b'', b'\x00\xffbinary\n', 'ünï 汉语\n'.encode('utf-8') * 50000])
def test_put_and_fetch_file_round_trip(run_dir, fake_ip, tmp_path, content):
    conn = connection(ansible_host='lab-r1', ansible_netns_ip_executable=fake_ip)
    source = tmp_path / 'source-汉语'
    source.write_bytes(content)
    remote = tmp_path / "remote dir ü 'quoted'"
    remote.mkdir()
    conn.put_file(str(source), str(remote / '汉语 file.txt'))
    assert (remote / '汉语 file.txt').read_bytes() == content
    conn.fetch_file(str(remote / '汉语 file.txt'), str(tmp_path / 'fetched'))
    assert (tmp_path / 'fetched').read_bytes() == content


def test_put_file_errors(run_dir, fake_ip, tmp_path):
    conn = connection(ansible_host='lab-r1', ansible_netns_ip_executable=fake_ip)
    with pytest.raises(AnsibleFileNotFound, match='does not exist'):
        conn.put_file(str(tmp_path / 'missing'), str(tmp_path / 'out'))
    source = tmp_path / 'source'
    source.write_text('x')
    with pytest.raises(AnsibleError, match='failed to transfer file to .*/no/such/dir/out in network namespace lab-r1'):
        conn.put_file(str(source), str(tmp_path / 'no' / 'such' / 'dir' / 'out'))


def test_fetch_missing_file_leaves_nothing(run_dir, fake_ip, tmp_path):
    conn = connection(ansible_host='lab-r1', ansible_netns_ip_executable=fake_ip)
    with pytest.raises(AnsibleError, match='failed to fetch file .*/missing from network namespace lab-r1'):
        conn.fetch_file(str(tmp_path / 'missing'), str(tmp_path / 'fetched'))
    assert not (tmp_path / 'fetched').exists()


def test_close_and_reset(run_dir, fake_ip):
    conn = connection(ansible_host='lab-r1', ansible_netns_ip_executable=fake_ip)
    conn._connect()
    assert conn.connected
    conn.reset()
    assert not conn.connected
