# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: a change waiting for its confirmation (confirm timeout).

``<state dir>/<role>.pending`` exists from the moment apply_state armed a
rollback until the change is confirmed or put back. It keeps the deadline, the
rollback process (pid and boot) and the role's files as they were before the
change. It lives beside the saved states, not in /run, so a router that
restarts before the confirmation does not come back with the unconfirmed
change: the agent's ``apply`` puts those files back first (see recover).

``<state dir>/<role>.rolled-back`` is the record a rollback leaves (the timed
one or recover's), so that a confirmation that comes too late says the change
was put back; the confirming run removes it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time

from ansible_collections.netpolicy.routing.plugins.module_utils._rt_tables import write_atomically

SUFFIX = '.pending'
ROLLED_BACK_SUFFIX = '.rolled-back'
BOOT_ID = '/proc/sys/kernel/random/boot_id'


def path_of(directory, role):
    return os.path.join(directory, role + SUFFIX)


def outcome_path(pending):
    """The rollback's record beside the pending file ``pending``."""
    return pending[:-len(SUFFIX)] + ROLLED_BACK_SUFFIX


def record_rollback(pending, problems):
    """Leave the record that the change of ``pending`` was put back (``problems``: what could not be)."""
    write_file(outcome_path(pending), json.dumps({'time': time.time(), 'problems': problems}), 0o600)


def boot_id():
    try:
        with open(BOOT_ID) as handle:
            return handle.read().strip()
    except (IOError, OSError):
        return ''


def write_file(path, content, mode):
    """Write ``content`` to ``path`` atomically (see _rt_tables), making its directory first."""
    write_atomically(path, content, mode, directory_mode=0o700)


def read(path):
    """The pending document in ``path``, or None (confirmed, put back, or damaged)."""
    try:
        with open(path) as handle:
            document = json.load(handle)
    except (IOError, OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def write(path, document):
    write_file(path, json.dumps(document), 0o600)


def remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def process_start(pid):
    """The start time of process ``pid`` (clock ticks since boot), or None when there is none
    running (gone, or a zombie no one reaped)."""
    try:
        with open('/proc/%d/stat' % pid) as handle:
            fields = handle.read().rsplit(')', 1)[1].split()
    except (IOError, OSError, IndexError):
        return None
    # fields[0] is the state (field 3 of stat), fields[19] the start time (field 22)
    return None if fields[0] in ('Z', 'X') else fields[19]


def waiting(document):
    """Whether the rollback process of ``document`` still waits: same boot, same process."""
    if document.get('boot') != boot_id():
        return False
    pid = document.get('pid')
    if not isinstance(pid, int) or pid <= 0:
        return True  # being armed: the pid is written right after the fork
    return process_start(pid) is not None and process_start(pid) == document.get('start')


def file_mode(path):
    return 0o644 if path.startswith('/etc/sysctl.d/') or '/iproute2/' in path else 0o600


def restore_files(files):
    """Give each path its recorded content (None: the file did not exist)."""
    for path, content in sorted(files.items()):
        if content is None:
            remove(path)
        else:
            write_file(path, content, file_mode(path))


def recover(directory):
    """Put back the files of changes whose rollback process is gone (the router restarted, or it
    was killed) before they were confirmed; the roles that were. The kernel side follows when
    the states are applied next, from the files as they were before the change. Each leaves
    the record a timed rollback leaves, so a late confirmation says it was put back."""
    try:
        names = sorted(name for name in os.listdir(directory) if name.endswith(SUFFIX))
    except (IOError, OSError):
        return []
    recovered = []
    for name in names:
        path = os.path.join(directory, name)
        document = read(path)
        if document is None or waiting(document):
            continue
        restore_files(document.get('files') or {})
        record_rollback(path, [])
        remove(path)
        recovered.append(name[:-len(SUFFIX)])
    return recovered
