"""apply_state against the real kernel: a role's whole state as one change.

Each test has its own `netns` namespace with its own /etc (rt_tables,
the state directory and sysctl file under the test's tmp dir).
"""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.helpers.modules import _pythonpath, module_python, run_module

MODULE = 'apply_state'
NFT = 'table inet np_test {\n    chain out {\n        type filter hook output priority 0;\n        meta mark 0x1 counter\n    }\n}\n'


@pytest.fixture
def router(netns, tmp_path):
    netns.add_dummy('wan1', '198.51.100.2/24')
    netns.add_dummy('wan2', '203.0.113.2/24')
    netns.rt_tables('255\tlocal\n254\tmain\n253\tdefault\n0\tunspec\n')
    netns.files = str(tmp_path)
    return netns


def state_of(router, tables=('101',), rp_filter=True, nft=NFT):
    """A source_routing-like state: a name, a table, two rules, an nftables table, a sysctl."""
    state = {'role': 'source_routing', 'version': 1,
             'rt_tables_entry': {'entries': [{'name': 'isp%d' % (int(table) - 100), 'id': int(table)} for table in tables]},
             'route_table': {'tables': [{'table': table, 'purge': True,
                                         'routes': ['default via 198.51.100.1 dev wan1']} for table in tables]},
             'ip_rule': {'rules': [{'priority': 1000 + index, 'from': '192.168.1.%d' % (10 + index), 'table': table}
                                   for index, table in enumerate(tables)], 'purge_priorities': '1000-1999'},
             'nftables': {'table': 'inet np_test', 'file': os.path.join(router.files, 'test.nft'), 'content': nft},
             'sysctl': {'file': os.path.join(router.files, 'sysctl.conf'),
                        'values': {'net.ipv4.conf.wan1.rp_filter': 2} if rp_filter else {}}}
    return state


def empty_state(router):
    """The state of a role with nothing to apply: everything it had goes."""
    return {'role': 'source_routing', 'version': 1, 'ip_rule': {'rules': [], 'purge_priorities': '1000-1999'},
            'nftables': {'table': 'inet np_test', 'file': os.path.join(router.files, 'test.nft'), 'content': None},
            'sysctl': {'file': os.path.join(router.files, 'sysctl.conf'), 'values': {}}}


def args(router, state, **more):
    return dict(dict(role='source_routing', state=state, persist=True, state_dir=router.files, netns=router.name), **more)


def kernel(router):
    """Everything the module may touch, as text."""
    return {'rules': router.ip('rule').stdout + router.ip('-6', 'rule').stdout,
            # (not the local table: the kernel's, where link-local addresses come and go)
            'routes': ''.join(line + '\n' for line in router.ip('route', 'show', 'table', 'all').stdout.splitlines()
                              if 'table local' not in line),
            'nft': router.run('nft', '-s', 'list', 'ruleset').stdout,
            'rp_filter': router.run('sysctl', '-n', 'net.ipv4.conf.wan1.rp_filter').stdout,
            'rt_tables': _read_tree(os.path.join(router.etc, 'iproute2')),
            'files': _read_tree(router.files)}


def _read_tree(top):
    found = {}
    for directory, dummy, names in os.walk(top):
        # (not lock files: rt_tables_entry's stays behind, iproute2 ignores it; nor the
        # pending confirmation and the rollback's record, checked on their own)
        for name in names:
            if name.endswith(('.lock', '.pending', '.rolled-back')):
                continue
            with open(os.path.join(directory, name)) as handle:
                found[os.path.relpath(os.path.join(directory, name), top)] = handle.read()
    return found


def test_apply_again_check_diff_and_remove(router):
    state = state_of(router)
    predicted = run_module(MODULE, args(router, state), check=True, diff=True)
    assert predicted['changed'] and not predicted.get('failed')
    assert kernel(router)['files'] == {}
    applied = run_module(MODULE, args(router, state), diff=True)
    # Exact but for the table's label: in check mode the new name is not in rt_tables yet.
    assert [line.replace('lookup isp1', 'lookup 101').replace('table isp1', 'table 101')
            for line in applied['commands']] == predicted['commands']
    assert 'ip rule add priority 1000 from 192.168.1.10 lookup isp1' in applied['commands']
    assert 'ip route add default via 198.51.100.1 dev wan1 table 101' in applied['commands']
    assert [diff['before_header'] for diff in applied['diff']] == [
        'rt_tables_entry', 'sysctl', 'route_table', 'ip_rule', 'nftables']
    diffs = dict((diff['before_header'], diff) for diff in applied['diff'])
    assert diffs['sysctl']['before'] == 'net.ipv4.conf.wan1.rp_filter = 0\n'
    assert diffs['sysctl']['after'] == 'net.ipv4.conf.wan1.rp_filter = 2\n'
    assert diffs['nftables']['before'] == '' and 'table inet np_test' in diffs['nftables']['after']
    assert [diff['before_header'] for diff in predicted['diff']] == [diff['before_header'] for diff in applied['diff']]
    now = kernel(router)
    assert '1000:\tfrom 192.168.1.10 lookup isp1' in now['rules'] and 'meta mark 0x00000001' in now['nft']
    assert now['rp_filter'].strip() == '2'
    saved = json.loads(now['files']['source_routing.json'])
    assert 'content' not in saved['nftables'] and saved['sysctl']['before'] == {'net.ipv4.conf.wan1.rp_filter': '0'}

    again = run_module(MODULE, args(router, state), check=True)
    assert not again['changed'] and again['commands'] == []
    assert not run_module(MODULE, args(router, state))['changed']

    # The saved state is root's alone: a file made readable to others is made private again.
    state_file = os.path.join(router.files, 'source_routing.json')
    os.chmod(state_file, 0o644)
    private = run_module(MODULE, args(router, state))
    assert private['changed'] and private['commands'] == ['chmod 600 %s' % state_file]
    assert os.stat(state_file).st_mode & 0o777 == 0o600

    # table 102 comes, then 101 goes: its name, routes and rule go with it
    run_module(MODULE, args(router, state_of(router, ('101', '102'))))
    smaller = run_module(MODULE, args(router, state_of(router, ('102',))))
    assert 'ip route del default via 198.51.100.1 dev wan1 table 101' in smaller['commands']
    assert 'isp1' not in kernel(router)['rt_tables']['rt_tables.d/netpolicy.conf']

    # nothing wanted: everything of the role goes, rp_filter gets its value from before back
    empty = empty_state(router)
    removed = run_module(MODULE, args(router, empty, persist=False), diff=True)
    assert [diff['before_header'] for diff in removed['diff']] == ['rt_tables_entry', 'sysctl', 'route_table',
                                                                   'ip_rule', 'nftables']
    assert removed['changed']
    gone = kernel(router)
    assert '1001:' not in gone['rules'] and 'np_test' not in gone['nft'] and gone['rp_filter'].strip() == '0'
    assert gone['files'] == {} and router.ip('route', 'show', 'table', '102').stdout == ''
    assert not run_module(MODULE, args(router, empty, persist=False))['changed']


def test_without_persist_a_record_still_tells_the_next_run_what_to_remove(router):
    run_module(MODULE, args(router, state_of(router, ('101', '102')), persist=False))
    files = kernel(router)['files']
    assert 'source_routing.json' not in files  # the agent has nothing to apply
    assert json.loads(files['source_routing.applied'])['rt_tables_entry']['entries'][0]['name'] == 'isp1'
    smaller = run_module(MODULE, args(router, state_of(router, ('102',)), persist=False))
    assert 'ip route del default via 198.51.100.1 dev wan1 table 101' in smaller['commands']
    assert 'isp1' not in kernel(router)['rt_tables']['rt_tables.d/netpolicy.conf']
    # persist on: the state file for the agent takes the record's place
    run_module(MODULE, args(router, state_of(router, ('102',))))
    files = kernel(router)['files']
    assert 'source_routing.json' in files and 'source_routing.applied' not in files
    run_module(MODULE, args(router, empty_state(router), persist=False))
    assert kernel(router)['files'] == {}


def test_the_main_tables_default_route_from_before_comes_back(router):
    router.ip('route', 'add', 'default', 'via', '198.51.100.1', 'dev', 'wan1')
    state = state_of(router)
    state['route_table']['tables'].append({'table': 'main', 'routes': ['default via 203.0.113.1 dev wan2'],
                                           'family': 'ipv4'})
    run_module(MODULE, args(router, state))
    run_module(MODULE, args(router, state))  # a later run keeps the first run's record
    assert router.ip('route', 'show', 'default').stdout.strip() == 'default via 203.0.113.1 dev wan2'
    saved = json.loads(kernel(router)['files']['source_routing.json'])
    assert saved['main_default_before'] == 'default via 198.51.100.1 dev wan1'
    removed = run_module(MODULE, args(router, empty_state(router), persist=False))
    assert 'ip route replace default via 198.51.100.1 dev wan1 table main' in removed['commands']
    assert router.ip('route', 'show', 'default').stdout.strip() == 'default via 198.51.100.1 dev wan1'

    # no default route before the role: none after it
    router.ip('route', 'del', 'default')
    run_module(MODULE, args(router, state))
    assert json.loads(kernel(router)['files']['source_routing.json'])['main_default_before'] == ''
    run_module(MODULE, args(router, empty_state(router), persist=False))
    assert router.ip('route', 'show', 'default').stdout.strip() == ''


def test_a_name_line_from_before_the_role_stays(router):
    """A line in rt_tables written by hand before the role, the same name and number the
    role uses (the migration guide says it may stay): removing the role leaves it."""
    router.rt_tables('255\tlocal\n254\tmain\n253\tdefault\n0\tunspec\n101\tisp1\n')
    run_module(MODULE, args(router, state_of(router)))
    removed = run_module(MODULE, args(router, empty_state(router), persist=False))
    assert not removed.get('failed'), removed
    assert '101\tisp1' in kernel(router)['rt_tables']['rt_tables']
    assert '1000:' not in kernel(router)['rules']


def test_a_failure_midway_puts_everything_back(router):
    run_module(MODULE, args(router, state_of(router)))
    before = kernel(router)
    bad = state_of(router, ('101', '102'), nft=NFT.replace('0x1', '0x2'))
    # the kernel refuses this gateway (not on any subnet) after names, sysctls and rules of table 101 are done
    bad['route_table']['tables'][1]['routes'] = ['default via 192.0.2.1']
    result = run_module(MODULE, args(router, bad))
    assert result['failed']
    assert result['msg'].startswith('route_table: failed to apply ip route add default via 192.0.2.1 table ')
    assert result['msg'].endswith('put back the state from before this run')
    assert kernel(router) == before


def test_a_file_it_cannot_read_fails_cleanly_before_any_change(router):
    run_module(MODULE, args(router, state_of(router, ('101', '102'))))
    # the role's own rt_tables file, which a run that drops a name reads first, made unreadable
    folder = os.path.join(router.etc, 'iproute2', 'rt_tables.d')
    (name,) = [name for name in os.listdir(folder) if name.endswith('.conf')]
    os.unlink(os.path.join(folder, name))
    os.mkdir(os.path.join(folder, name))
    before = kernel(router)
    result = run_module(MODULE, args(router, state_of(router, ('101',))))
    assert result['failed'], result
    assert 'Is a directory' in result['msg'] and result['msg'].endswith('; nothing was changed'), result
    assert 'exception' not in result and 'Traceback' not in str(result)
    assert kernel(router) == before


def test_bad_input_touches_nothing(router):
    before = kernel(router)
    for state, message in (
            (dict(state_of(router), role='split_access'), "state.role: is 'split_access'"),
            (dict(state_of(router), ip_rule={'rules': [{'from': 'nowhere', 'table': '101'}]}),
             "ip_rule: rules[0].from: not an IP address or prefix: 'nowhere'"),
            (dict(state_of(router), nftables={'table': 'inet np_test', 'file': os.path.join(router.files, 'x.nft'),
                                              'content': 'table inet np_test { nonsense }'}),
             'nftables: could not load the rule set into a scratch network namespace')):
        result = run_module(MODULE, args(router, state))
        assert result['failed'] and message in result['msg'], result['msg']
        assert kernel(router) == before
    result = run_module(MODULE, dict(role='source_routing', netns=router.name))
    assert result['failed'] and 'state' in result['msg']


def test_confirm_timeout_rolls_back_unless_confirmed(router):
    run_module(MODULE, args(router, state_of(router)))
    before = kernel(router)
    armed = run_module(MODULE, args(router, state_of(router, ('101', '102')), confirm_timeout=2))
    assert armed['changed'] and armed['rollback']['timeout'] == 2
    # no systemd here: the process stays where the module started it, without a word
    assert 'scope' not in armed['rollback'] and not armed.get('warnings'), armed
    assert kernel(router) != before
    deadline = time.time() + 10
    while kernel(router) != before and time.time() < deadline:
        time.sleep(0.2)
    assert kernel(router) == before
    assert os.path.exists(os.path.join(router.files, 'source_routing.rolled-back'))
    late = run_module(MODULE, dict(role='source_routing', confirm=True, netns=router.name, state_dir=router.files))
    assert late['failed'] and 'already put its previous state back' in late['msg']
    # reported once: the record goes with the report
    assert not os.path.exists(os.path.join(router.files, 'source_routing.rolled-back'))

    # (a longer timeout: a module run takes seconds on a busy machine)
    run_module(MODULE, args(router, state_of(router, ('101', '102')), confirm_timeout=8))
    changed = kernel(router)
    confirmed = run_module(MODULE, dict(role='source_routing', confirm=True, netns=router.name, state_dir=router.files))
    assert confirmed['changed'] and not confirmed.get('failed')
    assert not os.path.exists(os.path.join(router.files, 'source_routing.pending'))
    time.sleep(9)
    assert kernel(router) == changed
    assert not run_module(MODULE, dict(role='source_routing', confirm=True, netns=router.name, state_dir=router.files))['changed']


def test_a_restart_before_the_confirmation_comes_back_with_the_state_from_before(router):
    run_module(MODULE, args(router, state_of(router)))
    before = kernel(router)
    armed = run_module(MODULE, args(router, state_of(router, ('101', '102')), confirm_timeout=600))
    assert os.path.exists(os.path.join(router.files, 'source_routing.pending'))
    # The router restarts: the rollback process and the kernel state are gone, the files stay.
    os.kill(armed['rollback']['pid'], signal.SIGKILL)
    subprocess.run(['ip', 'netns', 'del', router.name], check=True)
    subprocess.run(['ip', 'netns', 'add', router.name], check=True)
    router.ip('link', 'set', 'lo', 'up')
    router.add_dummy('wan1', '198.51.100.2/24')
    router.add_dummy('wan2', '203.0.113.2/24')
    # What runs at boot: the agent's apply.
    code = ('import sys\nfrom ansible_collections.netpolicy.routing.plugins.module_utils._agent import main\n'
            'sys.exit(main(sys.argv[1:]))')
    boot = subprocess.run(['ip', 'netns', 'exec', router.name, module_python(), '-c', code, '--state-dir', router.files,
                           'apply'], capture_output=True, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=_pythonpath()))
    assert boot.returncode == 0, boot.stdout + boot.stderr
    assert 'put back the files from before an unconfirmed change' in boot.stdout
    assert kernel(router) == before
    # a confirmation that comes now is told the change was put back
    late = run_module(MODULE, dict(role='source_routing', confirm=True, netns=router.name, state_dir=router.files))
    assert late['failed'] and 'already put its previous state back' in late['msg'], late


def test_checks_of_what_only_the_router_can_tell(router):
    router.add_dummy('lan0', '192.168.1.1/24')
    before = kernel(router)
    checks = [{'field': 'uplinks[0].interface', 'interface': 'wan9'},
              {'field': 'lan[0]', 'interface': 'wan1', 'ipv4': True},
              {'field': 'forwards[0].to', 'host_of': '192.168.1.50', 'interfaces': ['lan0']},
              {'field': 'forwards[1].to', 'host_of': '192.168.1.1', 'interfaces': ['lan0']},
              {'field': 'forwards[2].to', 'host_of': '203.0.113.10', 'interfaces': ['lan0']},
              {'field': 'routers[0].gateway', 'gateway': '198.51.100.1', 'interface': 'wan1'},
              {'field': 'routers[1].gateway', 'gateway': '203.0.113.1', 'interface': 'wan1'},
              {'field': 'routers[2].gateway', 'gateway': '198.51.100.1', 'interface': 'wan9'}]
    for check_mode in (True, False):
        result = run_module(MODULE, args(router, state_of(router), checks=checks), check=check_mode)
        assert result['failed'] and result['msg'].split('; ') == [
            "uplinks[0].interface: no interface 'wan9' on the router (have: lan0, lan0p, lo, wan1, wan1p, wan2, wan2p)",
            'forwards[1].to: 192.168.1.1 is not a host of the subnets of lan0 (192.168.1.1/24)',
            'forwards[2].to: 203.0.113.10 is not a host of the subnets of lan0 (192.168.1.1/24)',
            'routers[1].gateway: 203.0.113.1 is not on the subnet of interface wan1'], result['msg']
        assert kernel(router) == before
    good = [check for check in checks if check['field'] in ('lan[0]', 'forwards[0].to', 'routers[0].gateway')]
    assert not run_module(MODULE, args(router, state_of(router), checks=good)).get('failed')


def test_the_agent_is_installed_with_the_change(router):
    command, library = os.path.join(router.files, 'bin', 'netpolicy-routing'), os.path.join(router.files, 'lib')
    agent = dict(agent=True, agent_command=command, agent_library=library)
    predicted = run_module(MODULE, args(router, state_of(router), **agent), check=True)
    assert not os.path.exists(command) and predicted['agent_changed']
    done = run_module(MODULE, args(router, state_of(router), **agent))
    # (check mode shows the new table by number: see the module's notes)
    assert done['agent_changed'] and done['commands'][-3:] == predicted['commands'][-3:]
    assert done['commands'][-3:] == ['write %s/engine.zip' % library, 'write %s' % command,
                                     'write %s/source_routing.json' % router.files]
    assert os.stat(command).st_mode & 0o777 == 0o755
    # the command runs the engine it was installed with, in the router's namespace
    status = subprocess.run(['ip', 'netns', 'exec', router.name, command, '--state-dir', router.files, 'status'],
                            capture_output=True, text=True, timeout=60, check=False)
    assert status.returncode == 0 and 'source_routing' in status.stdout, status.stdout + status.stderr
    again = run_module(MODULE, args(router, state_of(router), **agent))
    assert not again['changed'] and not again['agent_changed']
    os.chmod(command, 0o700)
    alone = run_module(MODULE, dict(agent, netns=router.name))
    assert alone['changed'] and alone['commands'] == ['chmod 755 %s' % command]


# systemd does not run on the test machine: a stand-in for systemctl that logs its
# arguments and keeps the unit's state in files next to the log.
FAKE_SYSTEMCTL = r"""#!/bin/sh
dir=${0%/*}
echo "$*" >> "$dir/calls"
case "$1" in
  is-enabled) cat "$dir/enabled" 2>/dev/null || echo disabled ;;
  is-active) cat "$dir/active" 2>/dev/null || echo inactive ;;
  enable) echo enabled > "$dir/enabled" ;;
  start|restart)
    if [ -e "$dir/refuse" ]; then echo "Job for $2 failed." >&2; exit 1; fi
    echo active > "$dir/active" ;;
esac
"""

# And for busctl: logs its arguments, one call per line, and refuses when told to.
FAKE_BUSCTL = r"""#!/bin/sh
dir=${0%/*}
echo "$*" >> "$dir/busctl-calls"
if [ -e "$dir/refuse-busctl" ]; then echo "Call failed: Access denied" >&2; exit 1; fi
echo "o \"/org/freedesktop/systemd1/job/42\""
"""

# The module as on a host that systemd runs: in a mount namespace of its own,
# /run/systemd (with system/) and /etc/systemd/system are directories of the test.
WITH_SYSTEMD = """#!/bin/sh
exec unshare --mount --propagation private sh -c \
  'mount --bind "$0/run" /run/systemd && mount --bind "$0/etc" /etc/systemd/system && exec "$@"' %s %s "$@"
"""


class FakeSystemd:
    def __init__(self, top):
        self.top = top
        for directory in ('bin', 'run/system', 'etc'):
            os.makedirs(os.path.join(top, directory))
        self.python = self._script('python', WITH_SYSTEMD % (top, module_python()))
        self._script('bin/systemctl', FAKE_SYSTEMCTL)
        self._script('bin/busctl', FAKE_BUSCTL)
        self.env = dict(os.environ, PATH=os.path.join(top, 'bin') + ':' + os.environ['PATH'])

    def _script(self, name, text):
        path = os.path.join(self.top, name)
        with open(path, 'w') as handle:
            handle.write(text)
        os.chmod(path, 0o755)
        return path

    def calls(self, tool='systemctl'):
        """The calls of ``tool`` (systemctl, busctl) since the last look."""
        path = os.path.join(self.top, 'bin', 'calls' if tool == 'systemctl' else tool + '-calls')
        if not os.path.exists(path):
            return []
        with open(path) as handle:
            found = handle.read().splitlines()
        os.unlink(path)
        return found

    def put(self, name, text):
        with open(os.path.join(self.top, 'bin', name), 'w') as handle:
            handle.write(text + '\n')


def test_the_unit_is_installed_where_systemd_runs(router):
    systemd = FakeSystemd(os.path.join(router.files, 'systemd'))
    command, library = os.path.join(router.files, 'bin', 'netpolicy-routing'), os.path.join(router.files, 'lib')
    agent = dict(agent=True, agent_command=command, agent_library=library, agent_service=True)
    unit = 'netpolicy-routing.service'

    def run(check=False, **more):
        return run_module(MODULE, args(router, state_of(router), **dict(agent, **more)), check=check,
                          python=systemd.python, env=systemd.env)

    predicted = run(check=True)
    assert predicted['commands'][-4:] == ['write /etc/systemd/system/' + unit, 'systemctl daemon-reload',
                                          'systemctl enable ' + unit, 'systemctl restart ' + unit], predicted
    assert systemd.calls() == ['is-enabled ' + unit]   # check mode only asks
    done = run()
    assert done['agent_changed'] and done['commands'] == predicted['commands'][:1] + done['commands'][1:]
    assert done['commands'][-5:] == ['write %s/source_routing.json' % router.files] + predicted['commands'][-4:]
    assert systemd.calls() == ['daemon-reload', 'is-enabled ' + unit, 'enable ' + unit, 'restart ' + unit]
    with open(os.path.join(systemd.top, 'etc', unit)) as handle:
        text = handle.read()
    assert 'ExecStart=%s watch' % command in text and text.startswith('# Written by netpolicy.routing')

    again = run()
    assert not again['changed'] and not again['agent_changed'], again
    assert systemd.calls() == ['is-enabled ' + unit, 'is-active ' + unit]
    # Stopped by hand: started again, not restarted.
    systemd.put('active', 'failed')
    assert run()['commands'] == ['systemctl start ' + unit]
    # A new engine: the agent restarts to run it.
    os.unlink(os.path.join(library, 'engine.zip'))
    assert run()['commands'] == ['write %s/engine.zip' % library, 'systemctl restart ' + unit]
    # systemctl refuses: the task fails and says so; the change itself stays.
    os.unlink(os.path.join(library, 'engine.zip'))
    systemd.put('refuse', '')
    refused = run()
    assert refused['failed'] and refused['msg'] == (
        "the agent's unit: systemctl restart %s failed (exit 1): Job for %s failed. "
        "(the change itself was applied)" % (unit, unit)), refused
    assert os.path.exists(os.path.join(library, 'engine.zip'))
    os.unlink(os.path.join(systemd.top, 'bin', 'refuse'))
    # The agent alone, as the role netpolicy.routing.agent installs it.
    os.unlink(os.path.join(library, 'engine.zip'))
    systemd.calls()
    alone = run_module(MODULE, dict(agent, netns=router.name), python=systemd.python, env=systemd.env)
    assert alone['changed'] and alone['commands'] == ['write %s/engine.zip' % library, 'systemctl restart ' + unit]
    assert systemd.calls() == ['is-enabled ' + unit, 'restart ' + unit]
    # Without agent_service, systemd is left alone.
    assert not run(agent_service=False)['changed'] and systemd.calls() == []


def test_the_rollback_process_gets_a_scope_of_its_own_where_systemd_runs(router, tmp_path_factory):
    # not in router.files (the test's tmp_path): its logs would show as a change
    systemd = FakeSystemd(str(tmp_path_factory.mktemp('fake') / 'systemd'))
    run_module(MODULE, args(router, state_of(router)))
    before = kernel(router)

    def arm(timeout):
        return run_module(MODULE, args(router, state_of(router, ('101', '102')), confirm_timeout=timeout),
                          python=systemd.python, env=systemd.env)

    def confirm():
        return run_module(MODULE, dict(role='source_routing', confirm=True, netns=router.name, state_dir=router.files),
                          python=systemd.python, env=systemd.env)

    armed = arm(600)
    pid = armed['rollback']['pid']
    scope = 'netpolicy-routing-rollback-source_routing-%d.scope' % pid
    assert armed['rollback']['scope'] == scope and not armed.get('warnings'), armed
    assert systemd.calls('busctl') == [
        'call --quiet org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager '
        'StartTransientUnit ssa(sv)a(sa(sv)) %s fail 3 PIDs au 1 %d Description s netpolicy.routing: puts the '
        'source_routing state back unless the change is confirmed CollectMode s inactive-or-failed 0' % (scope, pid)]
    assert confirm()['changed']

    # busctl refuses (no D-Bus, a policy): the change is armed all the same, and the task warns.
    run_module(MODULE, args(router, state_of(router)))
    assert kernel(router) == before
    systemd.put('refuse-busctl', '')
    armed = arm(2)
    assert 'scope' not in armed['rollback'] and len(systemd.calls('busctl')) == 1
    # ansible-core 2.19 returns a module's warnings as events: their messages
    assert [warning['event']['msg'] for warning in armed['warnings']] == [
        'source_routing: the rollback process could not get a systemd scope of its own (busctl failed (exit 1): '
        'Call failed: Access denied); it stays in the connection\'s login session, and if logind ends that '
        'session\'s processes when it closes (KillUserProcesses=yes), a change that cuts the connection is not '
        'put back until the agent\'s next apply'], armed
    deadline = time.time() + 10
    while kernel(router) != before and time.time() < deadline:
        time.sleep(0.2)
    assert kernel(router) == before


def test_no_unit_without_systemd(router):
    """The test machine, like a container or a namespace of a lab, has no /run/systemd/system."""
    assert not os.path.isdir('/run/systemd/system')
    command, library = os.path.join(router.files, 'bin', 'netpolicy-routing'), os.path.join(router.files, 'lib')
    done = run_module(MODULE, args(router, state_of(router), agent=True, agent_command=command, agent_library=library,
                                   agent_service=True))
    assert done['changed'] and not [line for line in done['commands'] if 'systemctl' in line or '/etc/systemd' in line]


def test_dependencies_are_reported_and_checked(router):
    report = run_module(MODULE, dict(dependencies='report'))
    assert report['lacking'] == [] and report['package_manager'] == 'apt' and not report['changed']
    bare = dict(os.environ, PATH='/nonexistent')    # no nft, conntrack or apt-get on this PATH
    failed = run_module(MODULE, args(router, state_of(router), dependencies='check',
                                     dependencies_variable='source_routing_install_dependencies'), env=bare)
    assert failed['failed'] and failed['msg'] == (
        'the router lacks: nftables, conntrack; install them, or set source_routing_install_dependencies: true '
        '(no apt or dnf here: install them by hand)')


# A stand-in for apt-get on a PATH of its own: "installing" nftables or conntrack links
# the real command next to it (the test never installs packages on the host).
FAKE_APT_GET = """#!/bin/sh
dir=${0%%/*}
echo "$*" >> "$dir/calls"
[ -e "$dir/refuse" ] && { echo "E: Unable to locate package conntrack" >&2; exit 100; }
for package in "$@"; do
  case "$package" in
    nftables) /bin/ln -sf %s "$dir/nft" ;;
    conntrack) /bin/ln -sf %s "$dir/conntrack" ;;
  esac
done
"""


def test_dependencies_are_installed_with_the_change(router, tmp_path_factory):
    bin_dir = tmp_path_factory.mktemp('bin')   # not in the router's files, which kernel() compares
    apt_get = bin_dir / 'apt-get'
    apt_get.write_text(FAKE_APT_GET % (shutil.which('nft'), shutil.which('conntrack')))
    apt_get.chmod(0o755)
    lacking = dict(os.environ, PATH=str(bin_dir))    # apt-get, and no nft or conntrack yet
    install = args(router, state_of(router), dependencies='install')
    before = kernel(router)
    # Check mode cannot look at nftables without nft: it says what a real run installs.
    predicted = run_module(MODULE, install, check=True, env=lacking)
    command = 'apt-get -o DPkg::Lock::Timeout=120 install -y --no-install-recommends nftables conntrack'
    assert predicted['failed'] and predicted['msg'] == (
        'the router lacks: nftables, conntrack; a run not in check mode installs them (%s)' % command)
    assert predicted['lacking'] == ['nftables', 'conntrack'] and not (bin_dir / 'calls').exists()
    # The package manager fails: nothing else happens, and the message says why.
    (bin_dir / 'refuse').write_text('')
    refused = run_module(MODULE, install, env=lacking)
    assert refused['failed'] and refused['msg'] == (
        '%s failed (exit 100): E: Unable to locate package conntrack' % command)
    assert kernel(router) == before
    (bin_dir / 'refuse').unlink()
    done = run_module(MODULE, install, env=lacking)
    assert done['changed'] and not done.get('failed') and done['commands'][0] == command, done
    assert (bin_dir / 'calls').read_text().splitlines() == [command[len('apt-get '):]] * 2
    assert kernel(router) != before
    again = run_module(MODULE, install, env=lacking)
    assert not again['changed'] and len((bin_dir / 'calls').read_text().splitlines()) == 2
    # Alone, as the role netpolicy.routing.agent's dependencies task runs it.
    (bin_dir / 'nft').unlink()
    alone = run_module(MODULE, dict(dependencies='install'), env=lacking)
    assert alone['changed'] and alone['commands'] == [
        'apt-get -o DPkg::Lock::Timeout=120 install -y --no-install-recommends nftables']
