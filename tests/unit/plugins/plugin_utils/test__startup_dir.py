"""The collection's modules start with the router's STARTUP_DIR first in PYTHONPATH."""
import importlib
import os
import subprocess

import pytest
from ansible.plugins.action import ActionBase
from ansible.plugins.action.normal import ActionModule as NormalAction

from ansible_collections.netpolicy.routing.plugins.module_utils._bytecode_cache import STARTUP_DIR
from ansible_collections.netpolicy.routing.plugins.plugin_utils import _startup_dir

MODULES = ['apply_state', 'connmark_return', 'ip_rule', 'route_table', 'rt_tables_entry']


def test_the_startup_dir_comes_first_in_pythonpath():
    assert _startup_dir.with_startup_dir({'LANG': 'C'}) == {'LANG': 'C', 'PYTHONPATH': STARTUP_DIR}
    assert _startup_dir.with_startup_dir({'PYTHONPATH': '/opt/lib'}) == {'PYTHONPATH': STARTUP_DIR + ':/opt/lib'}


class Shell(object):
    SHELL_FAMILY = 'sh'

    @staticmethod
    def env_prefix(**environment):
        return ' '.join('%s=%s' % item for item in sorted(environment.items()))


@pytest.mark.parametrize('module', MODULES)
def test_every_module_gets_the_task_environment_and_the_startup_dir(module, monkeypatch):
    def task_environment(self, raw_environment_out=None):
        raw_environment_out.update(LANG='C', PYTHONPATH='/opt/lib')
        return 'ignored'
    monkeypatch.setattr(ActionBase, '_compute_environment_string', task_environment)
    plugin = importlib.import_module('ansible_collections.netpolicy.routing.plugins.action.' + module)
    action = object.__new__(plugin.ActionModule)
    action._connection = type('Connection', (object,), {'_shell': Shell()})()
    raw = {}
    assert action._compute_environment_string(raw) == 'LANG=C PYTHONPATH=%s:/opt/lib' % STARTUP_DIR
    assert raw == {'LANG': 'C', 'PYTHONPATH': STARTUP_DIR + ':/opt/lib'}
    if module != 'apply_state':  # the others run the module as Ansible's own action does
        assert issubclass(plugin.ActionModule, NormalAction)


def run_shell(prefix, environment):
    """What PYTHONPATH a program started with ``prefix`` by /bin/sh sees."""
    script = '%s /usr/bin/env' % prefix
    ran = subprocess.run(['/bin/sh', '-c', script], env=environment, capture_output=True, text=True, check=True)
    return [line for line in ran.stdout.splitlines() if line.startswith('PYTHONPATH=')]


def test_the_routers_own_pythonpath_follows_the_startup_dir():
    from ansible.plugins.shell.sh import ShellModule
    shell = ShellModule()
    prefix = _startup_dir.environment_string(shell, {'LANG': 'C'})
    assert run_shell(prefix, {'PATH': os.environ['PATH']}) == ['PYTHONPATH=' + STARTUP_DIR]
    assert run_shell(prefix, {'PATH': os.environ['PATH'], 'PYTHONPATH': '/opt/lib'}) == [
        'PYTHONPATH=%s:/opt/lib' % STARTUP_DIR]
    # the task's own replaces the router's, as Ansible's environment does
    prefix = _startup_dir.environment_string(shell, {'PYTHONPATH': '/task lib'})
    assert run_shell(prefix, {'PATH': os.environ['PATH'], 'PYTHONPATH': '/opt/lib'}) == [
        'PYTHONPATH=%s:/task lib' % STARTUP_DIR]


def test_other_shells_get_the_startup_dir_alone():
    class PowerShell(Shell):
        SHELL_FAMILY = 'powershell'
    assert _startup_dir.environment_string(PowerShell(), {}) == 'PYTHONPATH=' + STARTUP_DIR
