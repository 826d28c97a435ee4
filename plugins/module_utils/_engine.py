# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: snapshot -> plan -> apply -> verify, in one place.

Every module (and the agent) goes the same way:

1. read the current state of the objects it owns (a list of items, plain dicts);
2. ``build_plan`` compares it with the desired items and returns a ``Plan``:
   an ordered list of ``Op`` (add / delete / replace), each with its command text;
3. ``execute`` applies the ops through the kind's ``apply`` (unless check mode),
   reads the state back and re-plans: the new plan must be empty.
   A failure midway puts back the ops already applied.

The same plan drives ``changed``, check mode, ``diff`` and ``commands``, so a
check-mode run predicts exactly what a real run does.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


ADD = 'add'
DELETE = 'delete'
REPLACE = 'replace'


class InputError(Exception):
    """Bad input, found before anything was touched. ``field`` names the option."""

    def __init__(self, field, message):
        self.field = field
        super(InputError, self).__init__('%s: %s' % (field, message) if field else message)


def quoted(value, limit=200):
    """``repr(value)`` for an error message, cut short when longer than ``limit``: a message
    that quotes a whole input (a file of routes that came as one line) should stay readable."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return '%s... (%d characters)' % (text[:limit], len(text))


class ApplyError(Exception):
    """Raised by a kind's ``apply``: ``applied`` ops went through, ``failed`` did not."""

    def __init__(self, message, applied=None, failed=None):
        self.applied = list(applied or [])
        self.failed = failed
        super(ApplyError, self).__init__(message)


class EngineError(Exception):
    """The change could not be made; kernel state was put back as it was where possible."""

    def __init__(self, message, commands=None, failed_command=None):
        self.commands = list(commands or [])
        self.failed_command = failed_command
        super(EngineError, self).__init__(message)


class Op:
    """One change of one kernel object.

    ``item`` is the object as it will be (add, replace) or as it is (delete);
    ``old`` is the object as it was, for replace.
    """

    __slots__ = ('action', 'item', 'old', 'text')

    def __init__(self, action, item, text, old=None):
        self.action = action
        self.item = item
        self.old = old
        self.text = text

    def __repr__(self):
        return 'Op(%r)' % self.text

    def __eq__(self, other):
        return isinstance(other, Op) and (self.action, self.item, self.old) == (other.action, other.item, other.old)

    def __ne__(self, other):
        return not self == other


class Plan:
    """What to change: ``ops`` in order, and the owned state before and after them.

    ``before`` and ``after`` (lists of rendered lines) may be given as functions
    that compute them: only a diff needs them, and with 10,000 routes rendering
    and sorting them costs more than the rest of a no-op run.
    """

    def __init__(self, ops, before, after):
        self.ops = list(ops)
        self._before = before
        self._after = after

    @property
    def before(self):
        if callable(self._before):
            self._before = self._before()
        return self._before

    @property
    def after(self):
        if callable(self._after):
            self._after = self._after()
        return self._after

    @property
    def changed(self):
        return bool(self.ops)

    @property
    def commands(self):
        return [op.text for op in self.ops]


class Kind:
    """What the engine needs to know about one kind of kernel object.

    Subclasses (one per kind: rules, routes, rt_tables lines, ...) provide:

    - ``key(item)``: the identity of an object, as the kernel knows it;
    - ``text(action, item)``: the equivalent iproute2 / nft command line;
    - ``render(item)``: one line for the diff (defaults to the add command's object part);
    - ``apply(ops)``: make the changes; raise ``ApplyError`` naming what went through.
    """

    def key(self, item):
        raise NotImplementedError

    def text(self, action, item):
        raise NotImplementedError

    def render(self, item):
        return self.text(ADD, item)

    def apply(self, ops):
        raise NotImplementedError

    def inverse(self, op):
        """The op that undoes ``op``."""
        if op.action == ADD:
            return Op(DELETE, op.item, self.text(DELETE, op.item))
        if op.action == DELETE:
            return Op(ADD, op.item, self.text(ADD, op.item))
        return Op(REPLACE, op.old, self.text(REPLACE, op.old), old=op.item)


def build_plan(kind, current, desired, state='present', owned=None):
    """Compare ``current`` items with ``desired`` ones and return a Plan.

    - state present: missing desired items are added, differing ones replaced
      (same key, other attributes);
    - state absent: desired items that exist are deleted (matched by key);
    - ``owned``: a predicate over current items; those it accepts and that are
      not desired are deleted (purge). Deletes come first, so a purge never
      collides with an add of the same key.
    """
    current_by_key = {}
    for item in current:
        current_by_key.setdefault(kind.key(item), item)
    desired_by_key = {}
    for item in desired:
        desired_by_key.setdefault(kind.key(item), item)

    deletes, writes = [], []
    if state == 'absent':
        for key, item in desired_by_key.items():
            if key in current_by_key:
                deletes.append(Op(DELETE, current_by_key[key], kind.text(DELETE, current_by_key[key])))
    else:
        for key, item in desired_by_key.items():
            have = current_by_key.get(key)
            if have is None:
                writes.append(Op(ADD, item, kind.text(ADD, item)))
            elif have != item:
                writes.append(Op(REPLACE, item, kind.text(REPLACE, item), old=have))
        if owned is not None:
            for key, item in current_by_key.items():
                if key not in desired_by_key and owned(item):
                    deletes.append(Op(DELETE, item, kind.text(DELETE, item)))

    ops = deletes + writes
    relevant = set(desired_by_key)
    if owned is not None:
        relevant.update(key for key, item in current_by_key.items() if owned(item))

    def before():
        return sorted(kind.render(item) for key, item in current_by_key.items() if key in relevant)

    def after():
        after_by_key = dict((key, item) for key, item in current_by_key.items() if key in relevant)
        for op in ops:
            if op.action == DELETE:
                after_by_key.pop(kind.key(op.item), None)
            else:
                after_by_key[kind.key(op.item)] = op.item
        return sorted(kind.render(item) for item in after_by_key.values())

    return Plan(ops, before, after)


def merge_plans(plans):
    """One plan out of several (a module that owns more than one kind)."""
    ops = [op for plan in plans for op in plan.ops]
    return Plan(ops, lambda: [line for plan in plans for line in plan.before],
                lambda: [line for plan in plans for line in plan.after])


def rollback(kind, applied):
    """Undo ``applied`` ops, newest first. Returns the commands that could not be undone."""
    failed = []
    for op in reversed(applied):
        undo = kind.inverse(op)
        try:
            kind.apply([undo])
        except ApplyError:
            failed.append(undo.text)
    return failed


def execute(plan, kind, replan=None, check_mode=False, diff=False):
    """Apply ``plan`` (unless ``check_mode``) and verify it; return the result dict.

    ``replan`` re-reads the kernel and plans again for the same desired state;
    after a real apply it must return an empty plan. This is the one place check
    mode is read. Raises EngineError when the change cannot be made; what was
    applied is put back first.
    """
    result = {'changed': plan.changed, 'commands': plan.commands}
    if diff:
        result['diff'] = {'before': _lines(plan.before), 'after': _lines(plan.after)}
    if check_mode or not plan.ops:
        return result

    try:
        kind.apply(plan.ops)
    except ApplyError as exc:
        not_undone = rollback(kind, exc.applied)
        failed = exc.failed.text if exc.failed is not None else None
        message = 'failed to apply %s: %s' % (failed or 'the change', exc)
        message += _undo_note(exc.applied, not_undone)
        raise EngineError(message, commands=[op.text for op in exc.applied], failed_command=failed)

    if replan is not None:
        left = replan()
        if left.ops:
            not_undone = rollback(kind, plan.ops)
            message = 'the kernel did not keep the change: still to do after applying: %s' % '; '.join(left.commands)
            message += _undo_note(plan.ops, not_undone)
            raise EngineError(message, commands=plan.commands)
    return result


def _undo_note(applied, not_undone):
    if not applied:
        return '; nothing was changed'
    if not_undone:
        return '; could not undo: %s' % '; '.join(not_undone)
    return '; the %d change(s) already made were undone' % len(applied)


def _lines(lines):
    return ''.join(line + '\n' for line in lines)
