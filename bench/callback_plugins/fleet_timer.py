# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Bench helper, not part of the collection: wall time of each task across a fleet, as one JSON line."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: fleet_timer
type: aggregate
short_description: Prints the wall time of every task of a play on many hosts as JSON (bench helper)
description:
  - Used by bench/fleet.py only.
  - A task's time runs from its start to the start of the next task (or the end of the play),
    so it covers every host of the task (with the linear strategy the next task starts once all
    hosts are done with this one), and the times of a play add up to the play's wall time.
'''

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'fleet_timer'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self.current = None
        self.tasks = []
        self.play_started = None

    def _close(self):
        if self.current is not None:
            self.current['seconds'] = time.monotonic() - self.current.pop('started')
            self.tasks.append(self.current)
            self.current = None
            self._save_progress()

    def _save_progress(self):
        """The tasks done so far, to the file named by FLEET_TIMER_PROGRESS: what a run
        stopped before its end (a fleet run can take long) still tells."""
        path = os.environ.get('FLEET_TIMER_PROGRESS')
        if path:
            with open(path + '.tmp', 'w') as handle:
                json.dump({'tasks': self.tasks}, handle)
            os.rename(path + '.tmp', path)

    def v2_playbook_on_play_start(self, play):
        self._close()
        self.play_started = time.monotonic()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close()
        role = task._role.get_name() if task._role else ''
        self.current = {'task': task.get_name(), 'role': role, 'action': task.action,
                        'started': time.monotonic(), 'ok': 0, 'changed': 0, 'skipped': 0, 'failed': 0}

    def _count(self, key, result=None):
        if self.current is not None:
            self.current[key] += 1
            if key == 'ok' and result is not None and result._result.get('changed'):
                self.current['changed'] += 1

    def v2_runner_on_ok(self, result):
        self._count('ok', result)

    def v2_runner_on_skipped(self, result):
        self._count('skipped')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count('failed')

    def v2_runner_on_unreachable(self, result):
        self._count('failed')

    def v2_playbook_on_stats(self, stats):
        self._close()
        hosts = dict((host, stats.summarize(host)) for host in sorted(stats.processed))
        play = time.monotonic() - self.play_started if self.play_started is not None else None
        self._display.display('FLEET_TIMES ' + json.dumps({'play_seconds': play, 'tasks': self.tasks, 'hosts': hosts}))
