"""Stand-in for get-pip.py, the script ansible-test downloads to put pip into the
empty virtualenvs it creates. Its download host is not reachable from every
machine (PyPI is), so scripts/sanity places this file where ansible-test caches
that script (~/.ansible/test/cache/get_pip_<version>.py) when it is missing.

ansible-test runs it inside the new virtualenv with the arguments it would give
get-pip.py: pip options and pinned packages (pip==X.Y), plus get-pip's own
--no-setuptools/--no-wheel. This installs the pip bundled with Python
(ensurepip), then the pinned packages from PyPI.
"""
import ensurepip
import os
import subprocess
import sys

GET_PIP_ONLY = ('--no-setuptools', '--no-wheel')

# ensurepip hides pip's configuration (PIP_CONFIG_FILE=/dev/null) in os.environ;
# the install from PyPI needs it (index mirrors, CA bundle).
environ = dict(os.environ)
ensurepip.bootstrap()
args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + args, env=environ)
