"""Run a module of this collection the way Ansible runs it on a router: a
separate Python process with the module arguments in a JSON file.

The interpreter is the venv's by default; NETPOLICY_TEST_PYTHON=/usr/bin/python3
runs the modules with Debian's python3 and python3-pyroute2 instead (only
ansible's own module_utils and this collection are put on its path then).
"""
import json
import os
import subprocess
import sys
import tempfile

import ansible

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, '.cache', 'collections')
MODULES = os.path.join(REPO, 'plugins', 'modules')


def module_python():
    return os.environ.get('NETPOLICY_TEST_PYTHON') or sys.executable


def _pythonpath():
    """ansible (for ansible.module_utils) and ansible_collections, nothing else."""
    shim = os.path.join(REPO, '.cache', 'module-path')
    os.makedirs(shim, exist_ok=True)
    for name, target in (('ansible', os.path.dirname(ansible.__file__)),
                         ('ansible_collections', os.path.join(COLLECTIONS, 'ansible_collections'))):
        link = os.path.join(shim, name)
        if os.path.realpath(link) != os.path.realpath(target):
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(target, link)
    return shim


def run_module(name, args, check=False, diff=False, python=None, env=None):
    """Run module ``name`` with ``args``; return its result dict.

    ``failed`` is in the result when the module failed; ``rc`` and ``stderr``
    are added for inspection. A traceback (non-JSON output) raises.
    """
    params = dict(args)
    params['_ansible_check_mode'] = check
    params['_ansible_diff'] = diff
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': params}, handle)
        args_file = handle.name
    run_env = dict(os.environ)
    run_env['PYTHONPATH'] = _pythonpath()
    run_env.pop('PYTHONHOME', None)
    if env:
        run_env.update(env)
    try:
        proc = subprocess.run([python or module_python(), os.path.join(MODULES, name + '.py'), args_file],
                              capture_output=True, text=True, env=run_env, timeout=300, check=False)
    finally:
        os.unlink(args_file)
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else '')
    except ValueError:
        raise AssertionError('module %s printed no JSON result (rc=%s)\nstdout:\n%s\nstderr:\n%s'
                             % (name, proc.returncode, proc.stdout, proc.stderr))
    result['rc'] = proc.returncode
    result['stderr'] = proc.stderr
    return result
