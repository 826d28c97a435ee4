# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: one change at a time per network namespace.

Two operators running plays, or the agent re-applying while a play runs,
must not interleave their changes on one router: each plans from what it
read, and the other's half-made change would make that plan wrong. So every
change (a module's apply, the agent's ``apply`` and the re-applies of
``watch``) holds the lock of its network namespace from before it reads the
kernel until it has verified what it did.

The lock is ``flock`` on ``/run/netpolicy-routing/lock-<inode>``, where the
inode is that of ``/proc/self/ns/net``: the same for a module run with
``netns: NAME`` from the host, a task run through ``ip netns exec NAME`` and
the agent in that namespace (namespaces share /run). The kernel releases a
flock when its holder dies, so a killed run never leaves the lock taken.
The holder writes who it is into the file, so a waiter can say whom it waited
for. A run that cannot get the lock within the timeout (120 s, or
NETPOLICY_ROUTING_LOCK_TIMEOUT seconds) fails saying who holds it.

Check mode and ``netpolicy-routing status`` take no lock: they change
nothing, so they cannot break another run's change; they must answer even
while a stuck run holds the lock; and they work for a user who cannot write
/run. What they report is the state as it was when they read it, as for any
read.

Imported by the agent without Ansible: standard library only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import fcntl
import json
import os
import sys
import threading
import time

from ansible_collections.netpolicy.routing.plugins.module_utils._engine import EngineError, InputError

# Shared with the monitor's published figures (_monitor.RUN_DIR).
LOCK_DIR = '/run/netpolicy-routing'
TIMEOUT_VARIABLE = 'NETPOLICY_ROUTING_LOCK_TIMEOUT'
DEFAULT_TIMEOUT = 120.0
# How often a waiter tries again: short against a module's change (tenths of a second).
POLL = 0.05

# {netns inode: [fd, depth]} of the locks this thread holds. Per thread, not per
# process: another thread of the agent must wait like another process would (each
# thread opens its own file, and flocks of two open files exclude each other).
_HELD = threading.local()


class LockTimeout(EngineError):
    """Another run held the lock for longer than the timeout; nothing was changed."""


def netns_inode():
    """The identity of the network namespace this process is in."""
    return os.stat('/proc/self/ns/net').st_ino


def lock_path(inode, directory=None):
    return os.path.join(directory or LOCK_DIR, 'lock-%d' % inode)


def timeout_from(environ=None):
    """Seconds to wait: NETPOLICY_ROUTING_LOCK_TIMEOUT if set (0: do not wait), else 120."""
    value = (os.environ if environ is None else environ).get(TIMEOUT_VARIABLE)
    if value is None or not value.strip():
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float('inf'):
        raise InputError(TIMEOUT_VARIABLE, 'not a number of seconds (0 or more): %r' % value)
    return seconds


def agent_label(argv=None):
    """What the agent is, for the lock file: its `apply`, or the re-applies of its `watch`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ['--state-dir']:  # as _agent.main reads it
        argv = argv[2:]
    return 'netpolicy-routing watch (re-apply)' if argv[:1] == ['watch'] else 'netpolicy-routing apply'


def log_to_stderr(line):
    sys.stderr.write('netpolicy-routing: %s\n' % line)
    sys.stderr.flush()


def holder_of(fd):
    """{'pid', 'what', 'since'} the holder wrote into the open lock file, or {} (not written yet)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 4096)
        holder = json.loads(data.decode('utf-8'))
    except (OSError, IOError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def describe(holder):
    """'pid 1234, netpolicy-routing apply, since 12:00:01' (what is known of it)."""
    if not holder:
        return 'holder unknown'
    parts = []
    if holder.get('pid'):
        parts.append('pid %s' % holder['pid'])
    if holder.get('what'):
        parts.append(str(holder['what']))
    if isinstance(holder.get('since'), (int, float)):
        parts.append('since %s' % time.strftime('%H:%M:%S', time.localtime(holder['since'])))
    return ', '.join(parts) or 'holder unknown'


def _depths():
    if not hasattr(_HELD, 'locks'):
        _HELD.locks = {}
    return _HELD.locks


def forget_inherited():
    """In a forked child: the locks the parent holds are not the child's to pass through."""
    _depths().clear()


@contextlib.contextmanager
def held(what, directory=None, timeout=None, log=None, needed=True, stop=None):
    """Hold the lock of the current network namespace while the block runs.

    ``what`` says who holds it ('ip_rule module', 'netpolicy-routing apply').
    Re-entrant within one thread: an inner ``held`` of the same namespace
    passes straight through. ``timeout`` (seconds) defaults to
    NETPOLICY_ROUTING_LOCK_TIMEOUT or 120; then LockTimeout (an EngineError)
    names the holder. ``log(line)`` is told how long the run waited, when it did.
    ``needed=False`` holds nothing (check mode, see the top of this file).
    ``stop()``: true when the caller was told to stop (the agent's SIGTERM); then the
    wait ends at once with an EngineError, as nothing was changed yet.
    """
    if not needed:
        yield
        return
    inode = netns_inode()
    locks = _depths()
    if inode in locks:
        locks[inode][1] += 1
        try:
            yield
        finally:
            locks[inode][1] -= 1
        return

    path = lock_path(inode, directory)
    seconds = timeout_from() if timeout is None else timeout
    fd, waited, holders = _acquire(path, what, seconds, stop)
    if waited and log is not None:
        log('waited %.1f s for the lock held by %s' % (waited, '; then '.join(holders) or 'holder unknown'))
    locks[inode] = [fd, 1]
    try:
        yield
    finally:
        del locks[inode]
        _release(fd, path)


@contextlib.contextmanager
def alone(kind, what, directory=None):
    """Run the block as the only ``what`` of this network namespace (``kind``: the file's
    name, e.g. 'watch'), or EngineError naming the process that already is. Held until
    the block ends; the kernel lets go of it if the process dies."""
    path = os.path.join(directory or LOCK_DIR, '%s-%d' % (kind, netns_inode()))
    while True:
        fd = _open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError) as exc:
            holder = describe(holder_of(fd))
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise EngineError('another %s runs in this network namespace (%s)' % (what, holder))
        if _claim(fd, path, what):
            break
    try:
        yield
    finally:
        _release(fd, path)


def _open(path):
    flags = os.O_RDWR | os.O_CREAT | getattr(os, 'O_CLOEXEC', 0)
    try:
        try:
            return os.open(path, flags, 0o600)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
        try:
            os.makedirs(os.path.dirname(path), 0o755)
        except OSError as exc:
            if exc.errno != errno.EEXIST:  # another run made it first
                raise
        return os.open(path, flags, 0o600)
    except OSError as exc:
        raise EngineError('cannot open the lock file %s: %s' % (path, exc.strerror or exc))


def _acquire(path, what, seconds, stop=None):
    """(fd holding the lock of ``path``, seconds waited, [holders seen while waiting])."""
    start = time.monotonic()
    deadline = start + seconds
    waited, holders = False, []
    while True:
        fd = _open(path)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except (IOError, OSError) as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise
                waited = True
                holder = describe(holder_of(fd))
                if holder != 'holder unknown' and holder not in holders:
                    holders.append(holder)
                if stop is not None and stop():
                    raise EngineError('stopped while waiting for the lock held by %s; nothing was changed'
                                      % (holders[-1] if holders else holder))
                now = time.monotonic()
                if now >= deadline:
                    raise LockTimeout(
                        'another netpolicy.routing run holds the lock of this network namespace (%s); '
                        'waited %g s (%s); nothing was changed'
                        % (holders[-1] if holders else holder, seconds, TIMEOUT_VARIABLE))
                time.sleep(min(POLL, deadline - now))
            if not _claim(fd, path, what):
                continue
            return fd, (time.monotonic() - start if waited else 0.0), holders
        except BaseException:
            os.close(fd)
            raise


def _claim(fd, path, what):
    """With the flock of ``fd`` taken: write who holds it, True. False (``fd`` closed) when
    the file is no longer at ``path``: the holder before us removes it as it lets go, and
    a lock on a file no longer there excludes nobody, so the caller starts again."""
    try:
        current = os.stat(path).st_ino
    except OSError:
        current = None
    if current != os.fstat(fd).st_ino:
        os.close(fd)
        return False
    record = {'pid': os.getpid(), 'what': what, 'since': time.time()}
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(record, sort_keys=True) + '\n').encode('utf-8'))
    return True


def _release(fd, path):
    # Removed while still held (see _acquire), so /run keeps no file per namespace ever locked.
    try:
        os.unlink(path)
    except OSError:
        pass
    os.close(fd)
