# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The controller side of apply_state: a role's variables become its state here.

With O(variables), the role's public variables are checked and turned into the
module's ``state`` and ``checks`` in Python (plugins/plugin_utils/_ROLE.py)
before anything reaches the router; bad variables fail the task with every
problem named. Without it, the module runs with its arguments as given.

With O(confirm_timeout), the change arms a rollback on the router; the plugin
then drops the connection and confirms over a new one, which disarms it. If the
change cut the path to the router, the new connection fails, the task says so,
and the router puts its previous state back by itself.

The module runs with the router's STARTUP_DIR first in PYTHONPATH
(plugins/plugin_utils/_startup_dir.py).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.action import ActionBase

from ansible_collections.netpolicy.routing.plugins.plugin_utils import _reply_via_same_router
from ansible_collections.netpolicy.routing.plugins.plugin_utils import _source_routing
from ansible_collections.netpolicy.routing.plugins.plugin_utils import _split_access
from ansible_collections.netpolicy.routing.plugins.plugin_utils._role_input import to_int
from ansible_collections.netpolicy.routing.plugins.plugin_utils._startup_dir import StartupDirEnvironment

ROLE_INPUTS = {
    'reply_via_same_router': _reply_via_same_router.role_input,
    'source_routing': _source_routing.role_input,
    'split_access': _split_access.role_input,
}


def module_args(args):
    """(the module's arguments, or None; the errors of the role's variables)."""
    args = dict(args)
    variables = args.pop('variables', None)
    if variables is None:
        return args, []
    role_input = ROLE_INPUTS.get(args.get('role'))
    if role_input is None:
        return None, ['variables: needs role, one of %s' % ', '.join(sorted(ROLE_INPUTS))]
    if args.get('state') is not None or args.get('checks'):
        return None, ['variables: state and checks come from the variables; give one or the other']
    if not isinstance(variables, dict):
        return None, ['variables: not a dict of the role\'s variables']
    built = role_input(variables)
    if built.errors:
        return None, built.errors
    args.update(state=built.state, checks=built.checks)
    if built.empty:
        # nothing to restore after a reboot: no state file, no agent
        args.update(persist=False, agent=False)
    return args, []


def confirm_failure(role, timeout, confirmed, variables):
    """The message of a change that could not be confirmed over a new connection."""
    setting = '%s_confirm_timeout' % role if variables else 'confirm_timeout'
    what = ('the router could not be reached again after the change' if confirmed.get('unreachable')
            else 'the change could not be confirmed')
    return ('%s: %s (%s); it puts its previous state back by itself %d s after the change (%s) unless it '
            'already did' % (role, what, (confirmed.get('msg') or '').strip(), timeout, setting))


class ActionModule(StartupDirEnvironment, ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # unused
        args, errors = module_args(self._task.args)
        if errors:
            result.update(failed=True, changed=False, msg='; '.join(errors), errors=errors)
            return result
        timeout = to_int(args.get('confirm_timeout'))
        if timeout <= 0 or args.get('confirm') or self._task.check_mode:
            result.update(self._run_module(args, task_vars))
            return result
        try:
            result.update(self._run_module(args, task_vars))
        except AnsibleConnectionFailure as exc:
            # The change may have cut the path its own reply came back by: a new
            # connection tells, and the rollback armed before the change undoes it if not.
            result.update(unreachable=True, msg=str(exc))
        if result.get('failed') or not (result.get('rollback') or result.get('unreachable')):
            return result  # failed and put back by the module, or nothing was armed
        confirmed = self._confirm(args, task_vars)
        if confirmed.get('failed') or confirmed.get('unreachable'):
            result.pop('unreachable', None)
            result.update(failed=True, msg=confirm_failure(args['role'], timeout, confirmed,
                                                           'variables' in self._task.args))
        elif not result.get('unreachable'):
            result['commands'] = result.get('commands', []) + confirmed.get('commands', [])
        elif confirmed.get('changed'):
            # the change was made (a rollback was armed) and is confirmed; only its reply was lost
            result.pop('unreachable')
            result.update(changed=True, commands=confirmed.get('commands', []),
                          msg='the reply of the change was lost, but it was made and is confirmed')
        return result  # still unreachable: the connection failed before anything was armed

    def _run_module(self, args, task_vars):
        return self._execute_module(module_name='netpolicy.routing.apply_state', module_args=args,
                                    task_vars=task_vars)

    def _confirm(self, args, task_vars):
        """Confirm the change over a new connection: a result, unreachable when there is none."""
        confirm_args = dict((key, args[key]) for key in ('role', 'state_dir', 'netns') if args.get(key) is not None)
        confirm_args['confirm'] = True
        try:
            self._connection.reset()
            return self._run_module(confirm_args, task_vars)
        except AnsibleConnectionFailure as exc:
            return {'unreachable': True, 'msg': str(exc)}
