"""The netns connection plugin, end to end: ansible-playbook against three namespaces.

Each namespace gets an interface with its own addresses and its own
/etc/netns/NAME/iproute2; the playbook runs a command, Python modules (with
the venv's python and Debian's /usr/bin/python3), copy and fetch with unicode
names, and raw, and must see each namespace's state only. A second run changes
nothing. Runs with and without pipelining.
"""
import itertools
import json
import os
import re
import shutil
import subprocess

import pytest

from tests.lab.names import netns_name

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = os.path.join(REPO, 'tests', 'integration', 'files', 'connection_netns')
VENV_BIN = os.path.join(REPO, '.venv', 'bin')
VENV_PYTHON = os.path.join(VENV_BIN, 'python')
SYSTEM_PYTHON = '/usr/bin/python3'
ROUTERS = ('r1', 'r2', 'r3')
_COUNTER = itertools.count(1)

RECAP = re.compile(r'^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', re.M)


def _router(index):
    """Interface and addresses of router number ``index`` (1-based): all different."""
    return {
        'lab_interface': 'lan%d' % index,
        'lab_address': '192.168.%d.1/24' % (60 + index),
        'lab_address6': '2001:db8:%d::1/64' % (60 + index),
        'lab_table_id': 1000 + index,
    }


@pytest.fixture
def lab():
    """Three namespaces (host name -> namespace name), removed with their /etc/netns even on failure."""
    tag = 'cn%d' % next(_COUNTER)
    names = {}
    try:
        for index, host in enumerate(ROUTERS, 1):
            name = netns_name('%s-%s' % (tag, host))
            subprocess.run(['ip', 'netns', 'add', name], check=True)
            names[host] = name
            router = _router(index)
            ip = ['ip', '-n', name]
            subprocess.run(ip + ['link', 'set', 'lo', 'up'], check=True)
            # A veth pair inside the namespace: dummy interfaces are not in every kernel.
            subprocess.run(ip + ['link', 'add', router['lab_interface'], 'type', 'veth',
                                 'peer', 'name', router['lab_interface'] + 'p'], check=True)
            subprocess.run(ip + ['addr', 'add', router['lab_address'], 'dev', router['lab_interface']], check=True)
            subprocess.run(ip + ['addr', 'add', router['lab_address6'], 'dev', router['lab_interface'], 'nodad'],
                           check=True)
            for ifname in (router['lab_interface'], router['lab_interface'] + 'p'):
                subprocess.run(ip + ['link', 'set', ifname, 'up'], check=True)
            # An empty iproute2 directory of its own: ip netns exec binds it over /etc/iproute2.
            os.makedirs(os.path.join('/etc/netns', name, 'iproute2', 'rt_tables.d'))
        yield names
    finally:
        for name in names.values():
            subprocess.run(['ip', 'netns', 'del', name], check=False)
            shutil.rmtree(os.path.join('/etc/netns', name), ignore_errors=True)


def _inventory(path, hosts):
    """Write a YAML (here: JSON) inventory: group ``routers`` of the given {host: vars}."""
    inventory = {'routers': {'hosts': hosts, 'vars': {'ansible_connection': 'netpolicy.routing.netns'}}}
    with open(path, 'w') as handle:
        json.dump(inventory, handle)
    return path


def _ansible_env(tmp_path, pipelining):
    env = dict(os.environ)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': os.path.join(REPO, '.cache', 'collections'),
        'ANSIBLE_LOCAL_TEMP': os.path.join(REPO, '.cache', 'ansible-tmp'),
        'ANSIBLE_REMOTE_TMP': str(tmp_path / 'remote-tmp'),
        'ANSIBLE_PIPELINING': str(pipelining),
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_STDOUT_CALLBACK': 'default',
        'ANSIBLE_RETRY_FILES_ENABLED': 'False',
        'PATH': VENV_BIN + os.pathsep + env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin'),
    })
    env.pop('ANSIBLE_CONFIG', None)
    return env


def _run(argv, tmp_path, pipelining):
    (tmp_path / 'remote-tmp').mkdir(mode=0o755, exist_ok=True)
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=str(tmp_path), check=False,
                          env=_ansible_env(tmp_path, pipelining), timeout=120)
    return proc, proc.stdout + proc.stderr


def _recap(output):
    """{host: (ok, changed, unreachable, failed)} from the PLAY RECAP."""
    return {match.group(1): tuple(int(n) for n in match.groups()[1:]) for match in RECAP.finditer(output)}


@pytest.mark.slow
@pytest.mark.parametrize('pipelining', [True, False], ids=['pipelining', 'no-pipelining'])
def test_playbook_on_three_namespaces(lab, tmp_path, pipelining):
    fetch_dir = tmp_path / 'fetched'
    fetch_dir.mkdir()
    hosts = {}
    for index, host in enumerate(ROUTERS, 1):
        router = _router(index)
        others = [_router(other) for other in range(1, len(ROUTERS) + 1) if other != index]
        hosts[host] = dict(
            ansible_host=lab[host],
            # One router runs its modules with Debian's python3 (and its libraries).
            ansible_python_interpreter=SYSTEM_PYTHON if host == 'r3' else VENV_PYTHON,
            lab_interface=router['lab_interface'],
            lab_address=router['lab_address'],
            lab_address6=router['lab_address6'],
            lab_table_id=router['lab_table_id'],
            lab_foreign=[o[key].split('/')[0] for o in others for key in ('lab_interface', 'lab_address', 'lab_address6')],
            fetch_dir=str(fetch_dir),
        )
    inventory = _inventory(str(tmp_path / 'inventory.yml'), hosts)
    argv = [os.path.join(VENV_BIN, 'ansible-playbook'), '-i', inventory, os.path.join(FILES, 'playbook.yml')]

    first, output = _run(argv, tmp_path, pipelining)
    assert first.returncode == 0, output
    recap = _recap(output)
    assert set(recap) == set(ROUTERS), output
    # changed: lineinfile, copy and fetch; nothing failed or unreachable.
    assert {host: recap[host][1:] for host in ROUTERS} == {host: (3, 0, 0) for host in ROUTERS}, output

    # Each namespace's files went to its own /etc/netns/NAME, and came back by fetch.
    for index, host in enumerate(ROUTERS, 1):
        etc = os.path.join('/etc/netns', lab[host], 'iproute2')
        with open(os.path.join(etc, 'rt_tables.d', 'netpolicy-lab.conf')) as handle:
            assert handle.read() == '%d lab_%s\n' % (_router(index)['lab_table_id'], host)
        with open(os.path.join(etc, 'netpolicy-lab-ünï-汉语.txt'), encoding='utf-8') as handle:
            assert handle.read() == '%s ünï 汉语\n' % host
        with open(str(fetch_dir / ('%s-汉语.txt' % host)), encoding='utf-8') as handle:
            assert handle.read() == '%s ünï 汉语\n' % host
    # ... and never to the controller's own /etc/iproute2.
    assert not os.path.exists('/etc/iproute2/rt_tables.d/netpolicy-lab.conf')
    assert not os.path.exists('/etc/iproute2/netpolicy-lab-ünï-汉语.txt')

    second, output = _run(argv, tmp_path, pipelining)
    assert second.returncode == 0, output
    recap = _recap(output)
    assert {host: recap[host][1:] for host in ROUTERS} == {host: (0, 0, 0) for host in ROUTERS}, output


def test_missing_namespace_is_unreachable(tmp_path):
    missing = netns_name('cn-missing')
    inventory = _inventory(str(tmp_path / 'inventory.yml'), {'ghost': dict(ansible_host=missing)})
    argv = [os.path.join(VENV_BIN, 'ansible'), '-i', inventory, 'ghost', '-m', 'ansible.builtin.raw', '-a', 'true']
    proc, output = _run(argv, tmp_path, pipelining=True)
    assert proc.returncode != 0
    assert 'UNREACHABLE' in output
    assert "network namespace '%s' does not exist" % missing in output
