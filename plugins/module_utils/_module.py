# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: what every module does around its one call."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.netpolicy.routing.plugins.module_utils._engine import EngineError, InputError
from ansible_collections.netpolicy.routing.plugins.module_utils import _lock
from ansible_collections.netpolicy.routing.plugins.module_utils import _netlink

NETNS_SPEC = dict(netns=dict(type='str'))


def require_pyroute2(module):
    # Imported here: the agent on the router imports this file without Ansible installed.
    from ansible.module_utils.basic import missing_required_lib

    if not _netlink.HAS_PYROUTE2:
        module.fail_json(msg=missing_required_lib('pyroute2 (Debian: python3-pyroute2)'),
                         exception=_netlink.PYROUTE2_IMPORT_ERROR)


def run(module, change):
    """Call ``change(params, check_mode, diff)`` and turn its outcome into the module result.

    ``change`` returns the result dict (see _engine.execute); InputError and
    EngineError become a clean failure that names the field or the command.
    """
    try:
        # The namespace first: its lock is held from before the change reads the
        # kernel until it verified (see _lock; check mode needs none).
        _netlink.enter_netns(module.params.get('netns'))
        with _lock.held(lock_label(module), needed=not module.check_mode):
            result = change(module.params, module.check_mode, module._diff)
    except InputError as exc:
        module.fail_json(msg=str(exc), field=exc.field, changed=False)
    except EngineError as exc:
        module.fail_json(msg=str(exc), commands=exc.commands, failed_command=exc.failed_command, changed=False)
    module.exit_json(**result)


def lock_label(module):
    """'ip_rule module': who holds the lock, as a waiter's message says."""
    # Ansible passes the task's module name; run outside Ansible, _name is 'basic.py'.
    name = module._name if module._name and not module._name.endswith('.py') else 'netpolicy.routing'
    return '%s module' % name.rsplit('.', 1)[-1]
