# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: what the module connmark_return does.

Check the options, pick the backend, plan the owned rule set against the
kernel's, and apply it through the engine.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.netpolicy.routing.plugins.module_utils._engine import (
    InputError, build_plan, execute)
from ansible_collections.netpolicy.routing.plugins.module_utils._connmark import (
    check_interfaces, normalize)
from ansible_collections.netpolicy.routing.plugins.module_utils._iptables import IptablesBackend
from ansible_collections.netpolicy.routing.plugins.module_utils._nft import NftBackend
from ansible_collections.netpolicy.routing.plugins.module_utils import _netlink


def choose_backend(wanted, backends):
    """The backend to use: ``wanted`` or, for auto, the first usable of ``backends`` (nftables first)."""
    reasons = []
    for backend in backends:
        if wanted not in ('auto', backend.name):
            continue
        why_not = backend.usable()
        if why_not is None:
            return backend
        reasons.append('%s: %s' % (backend.name, why_not))
    raise InputError('backend', 'no usable backend (%s)' % '; '.join(reasons))


def change(params, check_mode, diff):
    model = normalize(params)
    _netlink.enter_netns(params['netns'])
    if params['state'] == 'present':
        check_interfaces(model, set(_netlink.interface_map()))
    backend = choose_backend(params['backend'], [NftBackend(), IptablesBackend()])

    if params['state'] == 'present':
        desired = backend.desired(model)
    else:
        desired = backend.absent(model['name'])

    def plan():
        found = build_plan(backend.kind, backend.read(model['name']), desired, state=params['state'])
        # The iptables script for a change depends on what is there (jumps
        # already present are kept): give each op the text of what it runs.
        for op in found.ops:
            op.text = backend.kind.text(op.action, op.item, op.old)
        return found

    result = execute(plan(), backend.kind, replan=plan, check_mode=check_mode, diff=diff)
    result['backend'] = backend.name
    # One line per element reads better than one string with newlines per script.
    result['commands'] = [line for text in result['commands'] for line in text.splitlines()]
    return result
