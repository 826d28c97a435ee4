"""The engine: planning, check mode, rollback and verification, with a kind held in memory."""
import pytest

from ansible_collections.netpolicy.routing.plugins.module_utils._engine import (
    ADD, DELETE, REPLACE, ApplyError, EngineError, Kind, build_plan, execute, merge_plans, quoted)


class MemoryKind(Kind):
    """Objects {'name', 'value'} keyed by name, stored in a dict; can be told to fail."""

    def __init__(self, state=None, fail_on=None, drops=None):
        self.state = dict(state or {})
        self.fail_on = fail_on
        self.drops = drops or set()
        self.calls = []

    def key(self, item):
        return item['name']

    def text(self, action, item):
        return '%s %s=%s' % (action, item['name'], item['value'])

    def apply(self, ops):
        applied = []
        for op in ops:
            self.calls.append(op.text)
            if self.fail_on is not None and op.item['name'] == self.fail_on and op.action != DELETE:
                raise ApplyError('refused by the kernel', applied=applied, failed=op)
            if op.action == DELETE:
                self.state.pop(op.item['name'], None)
            elif op.item['name'] not in self.drops:
                self.state[op.item['name']] = op.item['value']
            applied.append(op)

    def read(self):
        return [{'name': name, 'value': value} for name, value in sorted(self.state.items())]


def item(name, value):
    return {'name': name, 'value': value}


def test_plan_adds_replaces_and_leaves_equal_alone():
    current = [item('a', 1), item('b', 2)]
    desired = [item('a', 1), item('b', 3), item('c', 4)]
    plan = build_plan(MemoryKind(), current, desired)
    assert [(op.action, op.item['name']) for op in plan.ops] == [(REPLACE, 'b'), (ADD, 'c')]
    assert plan.ops[0].old == item('b', 2)
    assert plan.before == ['add a=1', 'add b=2']
    assert plan.after == ['add a=1', 'add b=3', 'add c=4']


def test_plan_for_equal_state_is_empty():
    plan = build_plan(MemoryKind(), [item('a', 1)], [item('a', 1)])
    assert not plan.changed
    assert plan.commands == []


def test_absent_deletes_what_exists_by_key():
    plan = build_plan(MemoryKind(), [item('a', 1)], [item('a', 99), item('z', 0)], state='absent')
    assert plan.commands == ['delete a=1']
    assert plan.after == []


def test_purge_deletes_owned_unlisted_first():
    current = [item('own1', 1), item('own2', 2), item('foreign', 3)]
    plan = build_plan(MemoryKind(), current, [item('own3', 3)], owned=lambda i: i['name'].startswith('own'))
    assert plan.commands == ['delete own1=1', 'delete own2=2', 'add own3=3']
    assert 'add foreign=3' not in plan.before


def test_merge_plans_keeps_order():
    kind = MemoryKind()
    first = build_plan(kind, [], [item('a', 1)])
    second = build_plan(kind, [], [item('b', 2)])
    assert merge_plans([first, second]).commands == ['add a=1', 'add b=2']


def test_check_mode_changes_nothing_and_reports_the_plan():
    kind = MemoryKind({'a': 1})
    plan = build_plan(kind, kind.read(), [item('a', 2)])
    result = execute(plan, kind, check_mode=True, diff=True)
    assert result == {'changed': True, 'commands': ['replace a=2'],
                      'diff': {'before': 'add a=1\n', 'after': 'add a=2\n'}}
    assert kind.state == {'a': 1}
    assert kind.calls == []


def test_execute_applies_and_verifies():
    kind = MemoryKind()
    desired = [item('a', 1), item('b', 2)]
    plan = build_plan(kind, kind.read(), desired)
    result = execute(plan, kind, replan=lambda: build_plan(kind, kind.read(), desired))
    assert result['changed'] is True
    assert kind.state == {'a': 1, 'b': 2}


def test_failure_midway_puts_back_what_was_applied():
    kind = MemoryKind({'keep': 0, 'old': 5}, fail_on='c')
    desired = [item('a', 1), item('old', 6), item('c', 3)]
    plan = build_plan(kind, kind.read(), desired)
    with pytest.raises(EngineError) as caught:
        execute(plan, kind)
    assert kind.state == {'keep': 0, 'old': 5}
    assert 'add c=3' in str(caught.value)
    assert 'were undone' in str(caught.value)
    assert caught.value.failed_command == 'add c=3'


def test_failure_on_first_op_says_nothing_changed():
    kind = MemoryKind(fail_on='a')
    plan = build_plan(kind, [], [item('a', 1)])
    with pytest.raises(EngineError, match='nothing was changed'):
        execute(plan, kind)


def test_verification_failure_is_rolled_back():
    kind = MemoryKind({'x': 1}, drops={'b'})
    desired = [item('x', 1), item('a', 1), item('b', 2)]
    plan = build_plan(kind, kind.read(), desired)
    with pytest.raises(EngineError, match='did not keep the change: still to do after applying: add b=2'):
        execute(plan, kind, replan=lambda: build_plan(kind, kind.read(), desired))
    assert kind.state == {'x': 1}


def test_quoted_cuts_a_long_value_short():
    assert quoted('default dev wan1') == "'default dev wan1'"
    assert quoted('x' * 198) == repr('x' * 198)
    long_text = 'x' * 5000
    assert quoted(long_text) == "'%s... (5002 characters)" % ('x' * 199)
    assert quoted(['a'] * 1000).startswith("['a', 'a'") and quoted(['a'] * 1000).endswith('... (5000 characters)')
