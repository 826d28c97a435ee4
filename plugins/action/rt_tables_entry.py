# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The controller side of rt_tables_entry: Ansible's own for any module (the normal action),
the module started with the router's STARTUP_DIR first in PYTHONPATH
(plugins/plugin_utils/_startup_dir.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action.normal import ActionModule as NormalAction

from ansible_collections.netpolicy.routing.plugins.plugin_utils._startup_dir import StartupDirEnvironment


class ActionModule(StartupDirEnvironment, NormalAction):
    pass
