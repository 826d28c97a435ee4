"""The action plugin of apply_state: how a role's variables become the module's arguments."""
import pytest

from ansible_collections.netpolicy.routing.plugins.action import apply_state
from ansible_collections.netpolicy.routing.plugins.plugin_utils._role_input import RoleInput

STATE = {'role': 'split_access', 'version': 1}
CHECKS = [{'field': 'split_access_uplinks[0] (isp1).interface', 'interface': 'wan1'}]


@pytest.fixture
def role_input(monkeypatch):
    """split_access's role_input replaced by one that returns what the test sets."""
    calls = []
    outcome = {'built': RoleInput([], STATE, CHECKS, False)}

    def fake(variables):
        calls.append(variables)
        return outcome['built']
    monkeypatch.setitem(apply_state.ROLE_INPUTS, 'split_access', fake)
    return calls, outcome


def test_without_variables_the_arguments_pass_unchanged():
    args = {'role': 'source_routing', 'state': {'version': 1}, 'persist': True}
    assert apply_state.module_args(args) == (args, [])


def test_variables_become_state_and_checks(role_input):
    calls = role_input[0]
    variables = {'split_access_uplinks': []}
    args, errors = apply_state.module_args({'role': 'split_access', 'variables': variables, 'persist': True,
                                            'agent': True})
    assert errors == [] and calls == [variables]
    assert args == {'role': 'split_access', 'state': STATE, 'checks': CHECKS, 'persist': True, 'agent': True}


def test_a_role_with_nothing_saves_nothing(role_input):
    outcome = role_input[1]
    outcome['built'] = RoleInput([], {'ip_rule': {'rules': []}}, [], True)
    args = apply_state.module_args({'role': 'split_access', 'variables': {}, 'persist': True, 'agent': True})[0]
    assert args['persist'] is False and args['agent'] is False


def test_errors_of_the_variables_stop_the_task(role_input):
    outcome = role_input[1]
    outcome['built'] = RoleInput(['split_access_uplinks[0] (isp1).interface: required', 'b'], None, None, False)
    assert apply_state.module_args({'role': 'split_access', 'variables': {}}) == (
        None, ['split_access_uplinks[0] (isp1).interface: required', 'b'])


@pytest.mark.parametrize('args, message', [
    ({'variables': {}}, 'variables: needs role'),
    ({'role': 'split_access', 'variables': {}, 'state': {}}, 'variables: state and checks come from'),
    ({'role': 'split_access', 'variables': {}, 'checks': [{'field': 'x'}]}, 'variables: state and checks come from'),
    ({'role': 'split_access', 'variables': ['a']}, 'variables: not a dict'),
])
def test_bad_use_of_variables(role_input, args, message):
    result, errors = apply_state.module_args(args)
    assert result is None and len(errors) == 1 and errors[0].startswith(message)
    assert role_input[0] == []


def test_every_role_of_the_module_has_its_input():
    from ansible_collections.netpolicy.routing.plugins.module_utils._apply import APPLY_STATE_SPEC
    assert sorted(apply_state.ROLE_INPUTS) == sorted(APPLY_STATE_SPEC['role']['choices'])


class FakeTask(object):
    def __init__(self, args, check_mode=False):
        self.args = args
        self.check_mode = check_mode


class FakeConnection(object):
    def __init__(self, log):
        self.log = log

    def reset(self):
        self.log.append('reset')


def run_action(monkeypatch, args, replies, check_mode=False):
    """Run the plugin with the module's replies given in order (an exception is raised);
    return (result, [what happened])."""
    from ansible.errors import AnsibleConnectionFailure  # noqa: F401 (replies may hold one)
    from ansible.plugins.action import ActionBase

    log = []
    replies = list(replies)

    def execute(self, module_name, module_args, task_vars):
        log.append(dict(module_args))
        reply = replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return dict(reply)
    monkeypatch.setattr(ActionBase, 'run', lambda self, tmp=None, task_vars=None: {})
    monkeypatch.setattr(apply_state.ActionModule, '_execute_module', execute)
    action = object.__new__(apply_state.ActionModule)
    action._task = FakeTask(args, check_mode)
    action._connection = FakeConnection(log)
    result = action.run(task_vars={})
    assert replies == []  # every reply was asked for
    return result, log


ARMED = {'changed': True, 'commands': ['ip rule add priority 1000 from 192.168.1.10 lookup 201'],
         'rollback': {'pid': 42, 'timeout': 30}}
ARGS = {'role': 'source_routing', 'state': {'version': 1}, 'confirm_timeout': 30}


def test_without_a_timeout_the_module_runs_once(monkeypatch):
    result, log = run_action(monkeypatch, dict(ARGS, confirm_timeout=0), [{'changed': True, 'commands': ['x']}])
    assert result == {'changed': True, 'commands': ['x']} and len(log) == 1


def test_an_armed_change_is_confirmed_over_a_new_connection(monkeypatch):
    confirmed = {'changed': True, 'commands': ['confirm source_routing (rollback disarmed)']}
    result, log = run_action(monkeypatch, ARGS, [ARMED, confirmed])
    assert log[1:] == ['reset', {'role': 'source_routing', 'confirm': True}]
    assert result['commands'] == ARMED['commands'] + confirmed['commands']
    assert not result.get('failed') and result['rollback'] == ARMED['rollback']


@pytest.mark.parametrize('reply', [{'changed': False, 'commands': []}, {'failed': True, 'msg': 'put back'}])
def test_nothing_armed_nothing_to_confirm(monkeypatch, reply):
    result, log = run_action(monkeypatch, ARGS, [reply])
    assert len(log) == 1 and result == reply


def test_check_mode_arms_and_confirms_nothing(monkeypatch):
    result, log = run_action(monkeypatch, ARGS, [{'changed': True, 'commands': ['x']}], check_mode=True)
    assert len(log) == 1


def test_a_change_that_cut_the_path_is_reported_with_its_rollback(monkeypatch):
    from ansible.errors import AnsibleConnectionFailure
    # given variables, the message names the role's variable
    monkeypatch.setitem(apply_state.ROLE_INPUTS, 'source_routing', lambda variables: RoleInput([], {}, [], False))
    args = {'role': 'source_routing', 'variables': {}, 'confirm_timeout': 30}
    result, log = run_action(monkeypatch, args, [AnsibleConnectionFailure('timed out'),
                                                 AnsibleConnectionFailure('no route to host')])
    assert result['failed'] and 'unreachable' not in result
    assert result['msg'] == ('source_routing: the router could not be reached again after the change (no route to '
                             'host); it puts its previous state back by itself 30 s after the change '
                             '(source_routing_confirm_timeout) unless it already did')


def test_a_change_too_late_to_confirm_fails(monkeypatch):
    too_late = {'failed': True, 'msg': 'too late: the router already put its previous state back'}
    result, log = run_action(monkeypatch, ARGS, [ARMED, too_late])
    assert result['failed'] and result['msg'].startswith(
        'source_routing: the change could not be confirmed (too late: the router already put its previous state '
        'back); it puts its previous state back by itself 30 s after the change (confirm_timeout)')


def test_a_lost_reply_of_a_change_that_was_made_is_confirmed(monkeypatch):
    from ansible.errors import AnsibleConnectionFailure
    confirmed = {'changed': True, 'commands': ['confirm source_routing (rollback disarmed)']}
    result, log = run_action(monkeypatch, ARGS, [AnsibleConnectionFailure('reset by peer'), confirmed])
    assert result['changed'] and not result.get('unreachable') and not result.get('failed')
    assert result['commands'] == confirmed['commands']


def test_a_connection_that_failed_before_the_change_stays_unreachable(monkeypatch):
    from ansible.errors import AnsibleConnectionFailure
    nothing_pending = {'changed': False, 'commands': []}
    result, log = run_action(monkeypatch, ARGS, [AnsibleConnectionFailure('refused'), nothing_pending])
    assert result['unreachable'] and result['msg'] == 'refused'
