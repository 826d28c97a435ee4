# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the collection's modules start with the router's STARTUP_DIR in PYTHONPATH.

Each module run leaves, in STARTUP_DIR on the router, a ``sitecustomize.py`` that
makes Python keep Ansible's own module_utils compiled, as it keeps the
collection's (plugins/module_utils/_bytecode_cache.py). Python runs it only when
the directory is in its PYTHONPATH as it starts, before the AnsiballZ wrapper
imports anything: the collection's action plugins put it there.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.netpolicy.routing.plugins.module_utils._bytecode_cache import STARTUP_DIR


def with_startup_dir(environment):
    """The module's environment, with the router's STARTUP_DIR first in PYTHONPATH."""
    environment = dict(environment)
    environment['PYTHONPATH'] = ':'.join(path for path in (STARTUP_DIR, environment.get('PYTHONPATH')) if path)
    return environment


def environment_string(shell, environment):
    """The prefix of the module's command: ``environment`` (the task's), with STARTUP_DIR first in PYTHONPATH.

    Without a PYTHONPATH in the task, the router's own (from its login's environment)
    still follows STARTUP_DIR: a POSIX shell expands it there. Ansible quotes every
    value it sets, so it cannot say that itself.
    """
    if 'PYTHONPATH' in environment or getattr(shell, 'SHELL_FAMILY', None) != 'sh':
        return shell.env_prefix(**with_startup_dir(environment))
    own = 'PYTHONPATH=%s${PYTHONPATH:+:$PYTHONPATH}' % STARTUP_DIR
    return ' '.join(part for part in (shell.env_prefix(**environment), own) if part)


class StartupDirEnvironment:
    """Before ActionBase among an action plugin's bases: its module runs get the task's environment and STARTUP_DIR."""

    def _compute_environment_string(self, raw_environment_out=None):
        environment = {}
        super(StartupDirEnvironment, self)._compute_environment_string(environment)
        if isinstance(raw_environment_out, dict):
            raw_environment_out.clear()
            raw_environment_out.update(with_startup_dir(environment))
        return environment_string(self._connection._shell, environment)
