# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: what the router needs, and the agent's files and unit on it.

What the modules and the agent need (nft, conntrack, pyroute2) is found by what
is there, a command or a Python module, so it holds on any distribution, and
named and installed by the package manager's package.

The engine is this collection's module_utils as the running module has them:
Ansible sends a module the module_utils it imports, and apply_state imports
the agent's. They are packed in one zip with fixed file times, so the same
engine makes the same bytes and an unchanged engine is not written again.
The command is run by the Python the module runs with, the router's.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util
import io
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import zipfile

from ansible_collections.netpolicy.routing.plugins.module_utils import _netlink
from ansible_collections.netpolicy.routing.plugins.module_utils._connmark import run_tool
from ansible_collections.netpolicy.routing.plugins.module_utils._rt_tables import write_atomically

PACKAGE = 'ansible_collections.netpolicy.routing.plugins.module_utils'
_PACKAGE_DIRS = ('ansible_collections', 'ansible_collections/netpolicy', 'ansible_collections/netpolicy/routing',
                 'ansible_collections/netpolicy/routing/plugins', 'ansible_collections/netpolicy/routing/plugins/module_utils')
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
ENGINE = 'engine.zip'

# The package of each need, by package manager.
PACKAGES = {
    'apt': {'nftables': 'nftables', 'conntrack': 'conntrack', 'pyroute2': 'python3-pyroute2'},
    'dnf': {'nftables': 'nftables', 'conntrack': 'conntrack-tools', 'pyroute2': 'python3-pyroute2'},
}

COMMAND = '''#!%(python)s
# netpolicy-routing: puts the policy routing state saved by netpolicy.routing back
# (apply), keeps it there (watch) and tells whether it is (status).
# Written by netpolicy.routing; its roles rewrite this file.
import sys

# The engine: the collection's module_utils in one zip, compiled once and kept
# (_bytecode_cache), as the modules' are, instead of on every run.
sys.path.insert(0, %(engine)s)
from ansible_collections.netpolicy.routing.plugins.module_utils import _bytecode_cache  # noqa: E402,F401
from ansible_collections.netpolicy.routing.plugins.module_utils._agent import main  # noqa: E402

sys.exit(main())
'''


# How each package manager installs, unattended.
INSTALL_COMMANDS = {
    'apt': ['apt-get', '-o', 'DPkg::Lock::Timeout=120', 'install', '-y', '--no-install-recommends'],
    'dnf': ['dnf', 'install', '-y'],
}


class MissingPackages(Exception):
    """The router lacks packages and they are not (or could not be) installed."""

    def __init__(self, message, manager, packages):
        self.manager, self.packages = manager, packages
        super(MissingPackages, self).__init__(message)


def lacking():
    """(package manager or None, [the packages of what the router lacks])."""
    manager = 'apt' if shutil.which('apt-get') else 'dnf' if shutil.which('dnf') else None
    present = {'nftables': shutil.which('nft') is not None, 'conntrack': shutil.which('conntrack') is not None,
               'pyroute2': _netlink.HAS_PYROUTE2}
    names = PACKAGES.get(manager, PACKAGES['apt'])
    return manager, [names[need] for need in ('nftables', 'conntrack', 'pyroute2') if not present[need]]


def ensure(install, variable, check_mode):
    """Install what the router lacks (``install``) or check that it lacks nothing; the commands run.

    Raises MissingPackages when something is still lacking: not to be installed
    (the message names ``variable``), no package manager, check mode, or the
    package manager failed.
    """
    manager, packages = lacking()
    if not packages:
        return []
    if not install:
        raise MissingPackages(lacking_message(manager, packages, variable), manager, packages)
    if manager is None:
        raise MissingPackages('the router lacks: %s, and has no apt or dnf to install %s: install %s by hand'
                              % (', '.join(packages), _them(packages), _them(packages)), manager, packages)
    argv = INSTALL_COMMANDS[manager] + packages
    if check_mode:
        raise MissingPackages('the router lacks: %s; a run not in check mode installs %s (%s)'
                              % (', '.join(packages), _them(packages), ' '.join(argv)),
                              manager, packages)
    try:
        code, out, err = run_tool(argv, env=dict(os.environ, DEBIAN_FRONTEND='noninteractive'), timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MissingPackages('%s: %s' % (' '.join(argv), exc), manager, packages)
    if code:
        said = (err or out).strip().splitlines()[-3:]
        raise MissingPackages('%s failed (exit %d): %s' % (' '.join(argv), code, ' '.join(said)), manager, packages)
    # What the package put on disk: a Python module is found from now on.
    importlib.invalidate_caches()
    _netlink.HAS_PYROUTE2 = importlib.util.find_spec('pyroute2') is not None
    manager, still = lacking()
    if still:
        raise MissingPackages('the router still lacks %s after %s' % (', '.join(still), ' '.join(argv)), manager, still)
    return [' '.join(argv)]


def _them(packages):
    return 'them' if len(packages) > 1 else 'it'


def lacking_message(manager, packages, variable):
    """What a role says when the router lacks ``packages`` and may not install them."""
    return 'the router lacks: %s; install %s, or set %s: true%s' % (
        ', '.join(packages), _them(packages), variable,
        '' if manager else ' (no apt or dnf here: install them by hand)')


def engine_sources():
    """[(file name, bytes)] of the module_utils this process has, sorted by name."""
    package = sys.modules[PACKAGE]
    names = sorted(name for finder, name, is_package in pkgutil.iter_modules(package.__path__) if not is_package)
    sources = []
    for name in names:
        # by each module's own loader: files, or the zip Ansible sends (the package has no __init__.py)
        spec = importlib.util.find_spec('%s.%s' % (PACKAGE, name))
        sources.append((name + '.py', spec.loader.get_data(spec.origin)))
    return sources


def engine_archive(sources):
    """The zip of ``sources`` laid out as Ansible lays out a collection's module_utils."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as archive:
        entries = [(directory + '/__init__.py', b'') for directory in _PACKAGE_DIRS]
        entries += [(_PACKAGE_DIRS[-1] + '/' + name, data) for name, data in sources]
        for path, data in entries:
            # stored, not deflated: every run with agent=true builds it to compare, and
            # deflating ~270 kB cost ~10 ms of that run; a few hundred kB on disk cost nothing
            archive.writestr(zipfile.ZipInfo(path, _FIXED_TIME), data, zipfile.ZIP_STORED)
    return buffer.getvalue()


def command_text(python, library):
    return COMMAND % {'python': python, 'engine': json.dumps(os.path.join(library, ENGINE))}


def wanted_files(command, library):
    """[(path, bytes, mode)] of the agent's files."""
    return [(os.path.join(library, ENGINE), engine_archive(engine_sources()), 0o644),
            (command, command_text(sys.executable, library).encode('utf-8'), 0o755)]


def install(command, library, check_mode):
    """Write the agent's files that differ (content or mode); the command-like lines of what changed."""
    commands = []
    for path, data, mode in wanted_files(command, library):
        commands.extend(put_file(path, data, mode, check_mode))
    return commands


def put_file(path, data, mode, check_mode, directory_mode=0o755):
    """Make ``path`` hold ``data`` (bytes or text; None: not exist) with ``mode``; the
    command-like lines of what changed. ``directory_mode``: of the directory, when made."""
    if isinstance(data, str):
        data = data.encode('utf-8')
    try:
        with open(path, 'rb') as handle:
            have = handle.read()
        have_mode = os.stat(path).st_mode & 0o7777
    except (IOError, OSError):
        have, have_mode = None, None
    if data is None:
        if have is None:
            return []
        if not check_mode:
            os.unlink(path)
        return ['rm %s' % path]
    if have == data and have_mode == mode:
        return []
    if have == data:
        if not check_mode:
            os.chmod(path, mode)
        return ['chmod %o %s' % (mode, path)]
    if not check_mode:
        write_atomically(path, data, mode, directory_mode=directory_mode)
    return ['write %s' % path]


# ---------------------------------------------------------------- the unit

UNIT_NAME = 'netpolicy-routing.service'
UNIT_PATH = '/etc/systemd/system/' + UNIT_NAME
# What sd_booted(3) looks at: systemd runs this host.
SYSTEMD_RUNTIME = '/run/systemd/system'

UNIT = '''# Written by netpolicy.routing; its roles rewrite this file.
[Unit]
Description=netpolicy.routing agent: keeps the saved policy routing state applied
Documentation=man:ip-rule(8)
# Early: the state is back before the network is declared up; interfaces that
# come later (ppp, DHCP) are handled as they appear.
DefaultDependencies=no
# After nftables.service, and restarted with it: its /etc/nftables.conf flushes the
# whole ruleset, our tables too, and a restarted agent applies them again.
After=local-fs.target nftables.service
PartOf=nftables.service
Wants=network-pre.target
Before=network-pre.target shutdown.target
Conflicts=shutdown.target

[Service]
Type=simple
ExecStart=%(command)s watch
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
'''


class ServiceError(Exception):
    """systemctl refused; the message names the command and what it said."""


def systemd_runs():
    """Whether systemd runs this host (sd_booted(3)); not in a container or a lab's namespace."""
    return os.path.isdir(SYSTEMD_RUNTIME)


def unit_text(command):
    return UNIT % {'command': command}


def install_service(command, restart, check_mode):
    """Install, enable and start the agent's unit where systemd runs the host; the commands of what changed.

    ``restart``: the agent's command or engine was just written, so a running agent
    restarts to run the new one. Without systemd (a container, a network namespace
    of a lab) there is nothing to do.
    """
    if not systemd_runs():
        return []
    commands = put_file(UNIT_PATH, unit_text(command).encode('utf-8'), 0o644, check_mode)
    unit_changed = bool(commands)
    if unit_changed:
        commands.append('systemctl daemon-reload')
        if not check_mode:
            _systemctl(['daemon-reload'])
    steps = []
    if _systemctl(['is-enabled', UNIT_NAME], query=True) != 'enabled':
        steps.append(['enable', UNIT_NAME])
    if restart or unit_changed:
        steps.append(['restart', UNIT_NAME])
    elif _systemctl(['is-active', UNIT_NAME], query=True) != 'active':
        steps.append(['start', UNIT_NAME])
    for step in steps:
        commands.append('systemctl ' + ' '.join(step))
        if not check_mode:
            _systemctl(step)
    return commands


def _systemctl(arguments, query=False):
    """Run systemctl; a query gives its first line of output (a state), anything else must succeed."""
    try:
        code, out, err = run_tool(['systemctl'] + arguments, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError('systemctl %s: %s' % (' '.join(arguments), exc))
    if query:
        return (out.strip().splitlines() or [''])[0]
    if code:
        raise ServiceError('systemctl %s failed (exit %d): %s' % (' '.join(arguments), code, (err or out).strip()))
    return None
