"""The modules keep their compiled module_utils on the router (plugins/module_utils/_bytecode_cache.py).

ansible-playbook runs apply_state (report only) on a lab router through the
netns connection, as Ansible runs any module: its module_utils come in the
AnsiballZ zip. After the run, each module_utils file the module imports has
its compiled file in the cache, named by the SHA-256 of this checkout's source,
and no other version of it; the run also leaves the startup file, through which
the next run (the action plugin puts its directory in PYTHONPATH) keeps
Ansible's own module_utils as well. A damaged file does not break the next run,
which writes it anew. The agent's command, run from its engine zip, keeps the
compiled engine the same way. The cache is the router's
/run/netpolicy-routing/bytecode: the lab's namespaces share the host's /run, as
they share its lock files.
"""
import importlib
import json
import os

import pytest

from ansible_collections.netpolicy.routing.plugins.module_utils import _bytecode_cache, _install
from tests.lab import topologies
from tests.lab.playbook import recap, run_playbook

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE_UTILS = os.path.join(REPO, 'plugins', 'module_utils')
# What apply_state imports, among others (through _apply).
IMPORTED = ['_apply', '_engine', '_lock', '_netlink', '_routes', '_rules', '_rt_tables']
PLAY = [{
    'hosts': 'all',
    'gather_facts': False,
    'tasks': [{'netpolicy.routing.apply_state': {'role': 'source_routing', 'dependencies': 'report'}}],
}]


@pytest.fixture
def writes_bytecode(monkeypatch):
    # as on a router: the test run's PYTHONDONTWRITEBYTECODE would reach the modules through the local connection
    monkeypatch.delenv('PYTHONDONTWRITEBYTECODE', raising=False)
    monkeypatch.setenv('ANSIBLE_PIPELINING', '1')


# Ansible's, which the AnsiballZ wrapper imports before the module runs: a module and a package.
ANSIBLE_IMPORTED = ['ansible.module_utils.basic', 'ansible.module_utils._internal._ansiballz._loader',
                    'ansible.module_utils.six']


def source_of(fullname):
    """The source of a module_utils of this checkout, or of the controller's Ansible, as the zip has it."""
    if fullname.startswith(_bytecode_cache.PREFIX):
        path = os.path.join(MODULE_UTILS, fullname[len(_bytecode_cache.PREFIX):] + '.py')
    else:
        path = importlib.import_module(fullname).__file__
    with open(path, encoding='utf-8') as handle:
        return handle.read()


def kept_file(name):
    fullname = name if name.startswith('ansible.') else _bytecode_cache.PREFIX + name
    return os.path.join(_bytecode_cache.BYTECODE_DIR,
                        _bytecode_cache.cache_name(fullname, source_of(fullname).encode('utf-8')))


def versions(name):
    fullname = name if name.startswith('ansible.') else _bytecode_cache.PREFIX + name
    return sorted(entry for entry in os.listdir(_bytecode_cache.BYTECODE_DIR)
                  if entry.rpartition('.')[0] == '%s.%s' % (fullname, _bytecode_cache.TAG))


def test_module_runs_keep_their_compiled_module_utils(lab_factory, writes_bytecode):
    lab = lab_factory(topologies.fleet(1))
    playbook = os.path.join(lab.state_dir, 'report.yml')
    with open(playbook, 'w') as handle:
        json.dump(PLAY, handle)  # JSON is YAML

    # The startup file of another version (an earlier checkout) would load the first run's
    # module_utils through its own finder, as on the first run after an upgrade.
    startup = os.path.join(_bytecode_cache.STARTUP_DIR, _bytecode_cache.STARTUP_FILE)
    if os.path.exists(startup):
        os.unlink(startup)
    first = run_playbook(lab, playbook, nodes=['r01'])
    assert recap(first, 'r01')['failed'] == 0, first.stdout
    for directory in (_bytecode_cache.BYTECODE_DIR, _bytecode_cache.STARTUP_DIR):
        info = os.lstat(directory)
        assert info.st_uid == os.geteuid() and info.st_mode & 0o777 == 0o700, directory
    for name in IMPORTED:
        path = kept_file(name)
        assert versions(name) == [os.path.basename(path)], name
        with open(path, 'rb') as handle:
            assert handle.read().startswith(_bytecode_cache.HEADER), name
    with open(startup, encoding='utf-8') as handle:
        assert handle.read() == _bytecode_cache.startup_text(source_of(_bytecode_cache.__name__))

    damaged = kept_file('_apply')
    with open(damaged, 'wb') as handle:
        handle.write(b'damaged')
    second = run_playbook(lab, playbook, nodes=['r01'])
    assert recap(second, 'r01')['failed'] == 0, second.stdout
    with open(damaged, 'rb') as handle:
        assert handle.read().startswith(_bytecode_cache.HEADER)
    assert versions('_apply') == [os.path.basename(damaged)]
    # the second run started with the startup file in place
    for name in ANSIBLE_IMPORTED:
        assert versions(name) == [os.path.basename(kept_file(name))], name


# Each module of the collection, in check mode, with arguments that ask for nothing there.
EVERY_MODULE = [{
    'hosts': 'all',
    'gather_facts': False,
    'check_mode': True,
    'tasks': [
        {'netpolicy.routing.apply_state': {'role': 'source_routing', 'dependencies': 'report'}},
        {'netpolicy.routing.ip_rule': {'priority': 1990, 'from': '192.0.2.9', 'table': 100, 'state': 'absent'}},
        {'netpolicy.routing.route_table': {'table': 100, 'routes': []}},
        {'netpolicy.routing.rt_tables_entry': {'name': 'npr-startup', 'state': 'absent'}},
        {'netpolicy.routing.connmark_return': {'name': 'startup', 'state': 'absent'}},
    ],
}]


def test_every_module_starts_with_the_startup_dir_in_pythonpath(lab_factory, monkeypatch):
    lab = lab_factory(topologies.fleet(1))
    playbook = os.path.join(lab.state_dir, 'every-module.yml')
    with open(playbook, 'w') as handle:
        json.dump(EVERY_MODULE, handle)
    monkeypatch.setenv('ANSIBLE_PIPELINING', '1')
    monkeypatch.setenv('ANSIBLE_VERBOSITY', '3')  # the netns connection shows each command it runs
    proc = run_playbook(lab, playbook, nodes=['r01'])
    assert recap(proc, 'r01') == dict(recap(proc, 'r01'), failed=0, changed=0), proc.stdout
    python_runs = [line for line in proc.stdout.splitlines() if ' EXEC ' in line and 'python' in line]
    assert len(python_runs) == len(EVERY_MODULE[0]['tasks']), proc.stdout
    for line in python_runs:
        assert 'PYTHONPATH=%s' % _bytecode_cache.STARTUP_DIR in line, line


def test_the_agent_keeps_its_compiled_engine(lab_factory, writes_bytecode, tmp_path):
    lab = lab_factory(topologies.fleet(1))
    # The agent as apply_state installs it: its command, and the engine zip built from these sources.
    library = tmp_path / 'lib'
    library.mkdir()
    (library / _install.ENGINE).write_bytes(_install.engine_archive(_install.engine_sources()))
    command = tmp_path / 'netpolicy-routing'
    command.write_text(_install.command_text('/usr/bin/python3', str(library)))
    command.chmod(0o755)
    for name in versions('_agent'):
        os.unlink(os.path.join(_bytecode_cache.BYTECODE_DIR, name))

    status = lab.run('r01', command, 'status', '--json', check=False)
    assert status.stdout.startswith('{'), status.stdout + status.stderr
    path = kept_file('_agent')
    assert versions('_agent') == [os.path.basename(path)]
    with open(path, 'rb') as handle:
        assert handle.read().startswith(_bytecode_cache.HEADER)
