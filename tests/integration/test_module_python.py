"""The module tests really run the modules with the interpreter they ask for.

tests/helpers/modules.py runs a module with the venv's Python, or with
NETPOLICY_TEST_PYTHON (`make integration-debian`: Debian's /usr/bin/python3
with python3-pyroute2 0.7.2). Here the module process traces its own imports
(PYTHONVERBOSE), and the pyroute2 it loaded must be the one that interpreter has.
"""
import os
import re
import subprocess

from tests.helpers.modules import module_python, run_module

# Debian's pyroute2 0.7.2 says __version__ = 'unknown'; its package metadata has the version.
PROBE = ('import sys, importlib.metadata, pyroute2; print(sys.executable); print(pyroute2.__file__); '
         'print(importlib.metadata.version("pyroute2"))')


def test_module_loads_the_pyroute2_of_the_chosen_interpreter(netns, record_property):
    python = module_python()
    if os.environ.get('NETPOLICY_TEST_PYTHON'):
        assert python == os.environ['NETPOLICY_TEST_PYTHON']
    probe = subprocess.run([python, '-c', PROBE], capture_output=True, text=True, timeout=60, check=True)
    executable, pyroute2_file, version = probe.stdout.split()
    record_property('module_python', '%s pyroute2 %s' % (executable, version))

    # A rule added: the one thing the modules write through pyroute2 (reads use _netlink's codec).
    result = run_module('ip_rule', {'netns': netns.name, 'rules': [{'priority': 2000, 'from': '192.0.2.10', 'table': 100}]},
                        env={'PYTHONVERBOSE': '1'})
    assert not result.get('failed'), result
    loaded = set(re.findall(r'(/\S+/pyroute2/__init__\.py)\b', result['stderr']))
    assert loaded == {pyroute2_file}, 'module process loaded %s, %s has pyroute2 %s in %s' % (
        sorted(loaded), python, version, pyroute2_file)
