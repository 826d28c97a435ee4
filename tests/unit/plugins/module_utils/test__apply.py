"""The pure logic of module_utils/_apply.py: what a role's previous state leaves to remove,
the sysctls' values from before, the saved document, the rollback's scope (busctl faked)."""
import contextlib
import json
import os
import subprocess
import threading
import time

import pytest

from ansible_collections.netpolicy.routing.plugins.module_utils import _apply
from ansible_collections.netpolicy.routing.plugins.module_utils import _pending
from ansible_collections.netpolicy.routing.plugins.module_utils._engine import EngineError

PREVIOUS = {
    'role': 'split_access', 'version': 1,
    'rt_tables_entry': {'entries': [{'name': 'isp1', 'id': 101}, {'name': 'isp2', 'id': 102}]},
    'route_table': {'tables': [{'table': '101', 'routes': [], 'family': 'ipv4'}, {'table': '102', 'routes': []},
                               {'table': 'main', 'routes': []}]},
    'connmark_return': {'name': 'reply_via_router', 'entries': [{'mark': 65536, 'in_interface': 'wan1'}]},
    'sysctl': {'values': {'net.ipv4.conf.wan1.rp_filter': 2, 'net.ipv4.conf.wan2.rp_filter': 2},
               'before': {'net.ipv4.conf.wan1.rp_filter': '1', 'net.ipv4.conf.wan2.rp_filter': '0'}},
}


def test_removals_of_what_the_state_no_longer_has():
    state = {'rt_tables_entry': {'entries': [{'name': 'isp2', 'id': 102}]},
             'route_table': {'tables': [{'table': '102'}, {'table': 'main'}]}}
    tables, entries, connmark = _apply.removals(state, PREVIOUS)
    # the family of the old table is kept: an IPv4 role does not empty the table's IPv6 routes
    assert tables == [{'table': '101', 'routes': [], 'purge': True, 'state': 'absent', 'family': 'ipv4'}]
    assert entries == [{'name': 'isp1', 'id': 101}]
    assert connmark == {'name': 'reply_via_router', 'state': 'absent'}


def test_main_is_never_emptied_and_nothing_goes_without_a_previous_state():
    assert _apply.removals({}, {'route_table': {'tables': [{'table': 'main'}]}}) == ([], [], None)
    assert _apply.removals({}, {}) == ([], [], None)


def test_sysctls_keep_their_value_from_before_the_role_and_get_it_back():
    state = {'sysctl': {'values': {'net.ipv4.conf.wan2.rp_filter': 2, 'net.ipv4.conf.wan3.rp_filter': 2}}}
    live = {'net.ipv4.conf.wan1.rp_filter': '2', 'net.ipv4.conf.wan2.rp_filter': '2',
            'net.ipv4.conf.wan3.rp_filter': '1'}
    values, before, give_back = _apply.sysctl_plan(state, PREVIOUS, live)
    assert values == {'net.ipv4.conf.wan2.rp_filter': '2', 'net.ipv4.conf.wan3.rp_filter': '2'}
    # wan2's value from before the first run, not the role's own 2; wan3 is new: its live value
    assert before == {'net.ipv4.conf.wan2.rp_filter': '0', 'net.ipv4.conf.wan3.rp_filter': '1'}
    assert give_back == {'net.ipv4.conf.wan1.rp_filter': '1'}


def test_an_interface_that_is_gone_gets_nothing_back():
    live = {'net.ipv4.conf.wan1.rp_filter': None, 'net.ipv4.conf.wan2.rp_filter': '0'}
    assert _apply.sysctl_plan({}, PREVIOUS, live) == ({}, {}, {})


def test_saved_document_has_no_file_content_and_the_values_from_before():
    state = {'role': 'source_routing', 'version': 1,
             'nftables': {'table': 'inet t', 'file': '/x.nft', 'content': 'table inet t {}'},
             'sysctl': {'file': '/s.conf', 'values': {'net.ipv4.conf.wan1.rp_filter': 2}}}
    change = _apply.Change.__new__(_apply.Change)
    change.state, change.sysctl_values = state, {'net.ipv4.conf.wan1.rp_filter': '2'}
    change.sysctl_before = {'net.ipv4.conf.wan1.rp_filter': '1'}
    change.main_before = 'default via 198.51.100.1 dev wan1'
    saved = json.loads(change.saved())
    assert saved['nftables'] == {'table': 'inet t', 'file': '/x.nft'}
    assert saved['sysctl']['before'] == {'net.ipv4.conf.wan1.rp_filter': '1'}
    assert saved['main_default_before'] == 'default via 198.51.100.1 dev wan1'
    assert state['nftables']['content'] == 'table inet t {}'


MAIN = {'route_table': {'tables': [{'table': 'main', 'routes': [{'dest': 'default', 'dev': 'ppp0'}]}]}}


def unread():
    raise AssertionError('the live route is read only on the first run that sets it')


def test_main_default_recorded_on_the_first_run_then_kept():
    assert _apply.main_default_plan(MAIN, {}, lambda: 'default via 198.51.100.1 dev wan1') == (
        'default via 198.51.100.1 dev wan1', None)
    assert _apply.main_default_plan(MAIN, {}, lambda: '') == ('', None)
    kept = dict(MAIN, main_default_before='default via 198.51.100.1 dev wan1')
    assert _apply.main_default_plan(MAIN, kept, unread) == ('default via 198.51.100.1 dev wan1', None)
    # saved before the record existed: unknown, so nothing is recorded (or given back later)
    assert _apply.main_default_plan(MAIN, MAIN, unread) == (None, None)


def test_main_default_given_back_when_the_state_no_longer_sets_it():
    previous = dict(MAIN, main_default_before='default via 198.51.100.1 dev wan1')
    assert _apply.main_default_plan({}, previous, unread) == (
        None, {'table': 'main', 'routes': ['default via 198.51.100.1 dev wan1'], 'family': 'ipv4'})
    assert _apply.main_default_plan({}, dict(MAIN, main_default_before=''), unread) == (
        None, {'table': 'main', 'routes': ['default'], 'state': 'absent', 'family': 'ipv4'})
    assert _apply.main_default_plan({}, MAIN, unread) == (None, None)
    assert _apply.main_default_plan({}, {}, unread) == (None, None)


def test_routes_come_back_from_json_with_their_nexthops_as_tuples():
    route = {'dest': 'default', 'nexthops': [['198.51.100.1', 'wan1', 1], ['203.0.113.1', 'wan2', 2]]}
    assert _apply._route_from_json(route)['nexthops'] == (('198.51.100.1', 'wan1', 1), ('203.0.113.1', 'wan2', 2))
    assert _apply._route_from_json({'dest': 'default', 'nexthops': None})['nexthops'] is None


def test_sysctl_file_text():
    assert _apply.sysctl_text('split_access', {'b': '2', 'a': '1'}) == (
        '# Managed by netpolicy.routing.split_access; the role rewrites this file.\na = 1\nb = 2\n')


def test_the_rollback_scope_where_systemd_runs_or_a_warning(monkeypatch, tmp_path):
    monkeypatch.setattr(_apply._install, 'SYSTEMD_RUNTIME', str(tmp_path / 'absent'))
    monkeypatch.setattr(_apply, 'run_tool', lambda argv, timeout=None: pytest.fail('no systemd: nothing to ask'))
    assert _apply.own_scope('split_access', 4242) == (None, None)

    monkeypatch.setattr(_apply._install, 'SYSTEMD_RUNTIME', str(tmp_path))
    calls = []
    monkeypatch.setattr(_apply, 'run_tool', lambda argv, timeout=None: calls.append(argv) or (0, 'o "/job/1"\n', ''))
    assert _apply.own_scope('split_access', 4242) == ('netpolicy-routing-rollback-split_access-4242.scope', None)
    assert calls[0][:2] == ['busctl', 'call'] and calls[0][calls[0].index('PIDs'):][:4] == ['PIDs', 'au', '1', '4242']

    for failure, problem in ((OSError(2, 'No such file or directory'), 'busctl: [Errno 2] No such file or directory'),
                             (subprocess.TimeoutExpired(['busctl'], 30),
                              "busctl: Command '['busctl']' timed out after 30 seconds")):
        def fail(argv, timeout=None, failure=failure):
            raise failure
        monkeypatch.setattr(_apply, 'run_tool', fail)
        scope, warning = _apply.own_scope('split_access', 4242)
        assert scope is None and warning.startswith(
            'split_access: the rollback process could not get a systemd scope of its own (%s); ' % problem)


class NothingToRestore:
    def restore(self):
        return []


@pytest.mark.parametrize('step', [-3600, 3600])
def test_the_rollback_waits_its_timeout_whatever_the_wall_clock_does(tmp_path, monkeypatch, step):
    pending, outcome = str(tmp_path / 'split_access.pending'), str(tmp_path / 'split_access.rolled-back')
    _pending.write(pending, {'timeout': 0.5, 'pid': None})
    _apply.extend(pending, 0.5)
    # The wall clock steps an hour back or forth once the change is applied.
    wall = time.time
    monkeypatch.setattr(time, 'time', lambda: wall() + step)
    monkeypatch.setattr(_apply._lock, 'held', lambda what: contextlib.nullcontext())  # not this host's /run
    waiter = threading.Thread(target=_apply._wait_and_roll_back,
                              args=('split_access', pending, NothingToRestore()), daemon=True)
    waiter.start()
    time.sleep(0.2)
    assert os.path.exists(pending) and not os.path.exists(outcome)   # not before its time
    waiter.join(timeout=3)
    assert not waiter.is_alive()                                       # nor an hour late
    assert not os.path.exists(pending) and json.loads(open(outcome).read())['problems'] == []


def test_a_confirmation_after_a_restart_put_the_change_back_says_so(tmp_path):
    pending = str(tmp_path / 'split_access.pending')
    _pending.write(pending, {'boot': 'another boot', 'pid': 1, 'files': {}})
    assert _pending.recover(str(tmp_path)) == ['split_access']
    with pytest.raises(EngineError, match='too late: the router already put its previous state back$'):
        _apply.confirm('split_access', pending, check_mode=False)
    # said once
    assert _apply.confirm('split_access', pending, check_mode=False) == {'changed': False, 'commands': []}
