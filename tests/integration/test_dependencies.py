"""The managed-node dependency check shared by the roles (role agent, tasks_from
dependencies): run on this host with connection local, read-only (it only looks
for nft, conntrack and pyroute2; installing is never asked for here)."""
import os
import subprocess
import sys
import venv

from tests.lab.playbook import REPO

PLAYBOOK = '''
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: netpolicy.routing.agent
        tasks_from: dependencies
      vars:
        agent_install_dependencies: false
        agent_dependencies_variable: split_access_install_dependencies
'''


def run(tmp_path, python):
    playbook = tmp_path / 'dependencies.yml'
    playbook.write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_NOCOLOR='1',
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, '.cache', 'collections'),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp'))
    argv = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'localhost,',
            '-e', 'ansible_python_interpreter=%s' % python, str(playbook)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=300)


def test_nothing_missing_passes(tmp_path):
    result = run(tmp_path, '/usr/bin/python3')   # Debian's, with python3-pyroute2
    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_pyroute2_is_named(tmp_path):
    bare = tmp_path / 'bare'
    venv.create(bare, with_pip=False)            # a Python without pyroute2
    result = run(tmp_path, str(bare / 'bin' / 'python'))
    assert result.returncode == 2
    assert 'the router lacks: python3-pyroute2; install it, or set split_access_install_dependencies: true' \
        in result.stdout, result.stdout
