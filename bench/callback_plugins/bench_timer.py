# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Bench helper, not part of the collection: wall time of each task, as one JSON line."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: bench_timer
type: aggregate
short_description: Prints the wall time of every task as JSON (bench helper)
description:
  - Used by bench/routes_10k.py only.
'''

import json
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'bench_timer'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self.started = None
        self.times = []

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.started = (task.get_name(), time.monotonic())

    def _done(self, result, ok):
        name, started = self.started
        self.times.append({'task': name, 'seconds': time.monotonic() - started, 'ok': ok,
                           'changed': bool(result._result.get('changed')),
                           'msg': result._result.get('msg') if not ok else None})

    def v2_runner_on_ok(self, result):
        self._done(result, True)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._done(result, False)

    def v2_playbook_on_stats(self, stats):
        self._display.display('BENCH_TIMES ' + json.dumps(self.times))
