"""The agent netpolicy-routing, as the roles install it, on the two_isp lab with
two roles composed on the router (tests/integration/files/agent_two_roles.yml):
a reboot (lab torn down and built again, the router's /etc kept), an uplink
going down and up and a masquerade uplink's new address under `watch`, damaged
and foreign state files, `status`, and the systemd unit.
"""
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from ansible_collections.netpolicy.routing.plugins.module_utils import _agent
from tests.lab import topologies
from tests.lab.playbook import REPO, recap, run_playbook, snapshot
from tests.lab.recorder import peer_text
from tests.helpers.agent import Watch, agent, wait_for
from tests.helpers.lock import Holder, openers

PLAYBOOK = os.path.join(REPO, 'tests', 'integration', 'files', 'agent_two_roles.yml')
SERVER = topologies.SERVER

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures('pipelining')]


def seen(lab, node, **kwargs):
    """The source addresses the server saw for two new connections from ``node``."""
    return [peer_text(address) if address else None
            for address in lab.connect(node, SERVER, 80, count=2, timeout=2.0, **kwargs)]


def kernel_state(lab):
    """Rules, routes, nftables and rp_filter of the router, and its files, as a reboot must keep them.

    Not what a rebuilt lab makes different anyway: link-local addresses (new
    MAC addresses), the order of nftables tables (the order they were made
    in), counter values.
    """
    state = snapshot(lab)
    state['routes'] = [line for line in state['routes'].splitlines() if not line.startswith('local fe80::')]
    tables = re.split(r'(?m)^(?=table )', lab.run('router', 'nft', '-s', 'list', 'ruleset').stdout)
    state['nft'] = sorted(tables)
    return state


@pytest.fixture
def router_lab(lab_factory):
    lab = lab_factory(topologies.two_isp())
    applied = run_playbook(lab, PLAYBOOK, nodes=['router'])
    assert recap(applied)['failed'] == 0
    return lab


def test_reboot_then_apply(lab_factory, tmp_path):
    topology = topologies.two_isp()
    lab = lab_factory(topology)
    # The agent outside the lab's directory, which goes with the lab.
    agent_vars = {'agent_command': str(tmp_path / 'bin' / 'netpolicy-routing'), 'agent_library': str(tmp_path / 'lib')}
    run_playbook(lab, PLAYBOOK, nodes=['router'], extra_vars=agent_vars)
    states = sorted(os.listdir(os.path.join(lab.etc('router'), 'netpolicy', 'routing')))
    assert states == ['source_routing.json', 'source_routing.nft', 'split_access.json', 'split_access.nft']
    before = kernel_state(lab)

    # The reboot: every namespace gone, the same topology built again, the router's /etc kept.
    kept = tmp_path / 'etc'
    shutil.copytree(lab.etc('router'), kept)
    lab.down()
    lab = lab_factory(topology, prefix=lab.prefix)
    assert kernel_state(lab) != before
    shutil.copytree(kept, lab.etc('router'), dirs_exist_ok=True)

    applied = lab.run('router', agent_vars['agent_command'], 'apply', check=False)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert 'split_access: ip rule add' in applied.stdout
    assert 'source_routing: nft -f' in applied.stdout
    assert kernel_state(lab) == before

    again = lab.run('router', agent_vars['agent_command'], 'apply', check=False)
    assert (again.returncode, again.stdout.strip()) == (0, '2 saved state(s) applied: no change')
    # traffic flows as before: client1 balanced, client2 by isp2 (the source policy wins)
    assert lab.uplinks_used('client1', SERVER, 80, 4) == {'isp1': 2, 'isp2': 2}
    assert lab.uplinks_used('client2', SERVER, 80, 3) == {'isp2': 3}


def ipv4_state(lab):
    """The router's IPv4 rules and routes (the lab's IPv6 addresses do not survive a link down) and nftables."""
    return {'rules': lab.ip('router', '-4', 'rule').stdout,
            'routes': lab.ip('router', '-4', 'route', 'show', 'table', 'all').stdout,
            'nft': lab.run('router', 'nft', '-s', 'list', 'ruleset').stdout}


def test_watch_status_and_bad_states(router_lab):
    lab = router_lab
    settled = ipv4_state(lab)
    watch = Watch(lab)
    try:
        wait_for(lambda: watch.saw('^watching '), 10)
        time.sleep(0.3)  # its first apply (nothing to do) done

        # one watch per router: a second one says who runs and ends
        second = Watch(lab)
        assert second.proc.wait(timeout=10) == 1
        second.reader.join(timeout=5)
        assert re.match(r'error: another netpolicy-routing watch runs in this network namespace \(pid %d, '
                        % watch.proc.pid, second.lines[-1]), second.lines

        # an uplink down then up: the kernel drops every route through it, in every table
        lab.ip('router', 'link', 'set', 'wan1', 'down')
        wait_for(lambda: watch.saw('^wan1: down$'), 2)
        assert 'table isp1' not in lab.ip('router', '-4', 'route', 'show', 'table', 'all').stdout
        lab.ip('router', 'link', 'set', 'wan1', 'up')
        took = wait_for(lambda: ipv4_state(lab) == settled, 2)
        print('uplink back up: state restored in %.2f s' % took)
        assert watch.saw('^wan1: up$')
        assert lab.uplinks_used('router', SERVER, 80, 2, bind='198.51.100.2') == {'isp1': 2}
        assert lab.uplinks_used('client1', SERVER, 80, 4) == {'isp1': 2, 'isp2': 2}

        # the masquerade uplink gets another address: its source rule and NAT follow
        lab.ip('router', 'address', 'del', '192.0.2.2/24', 'dev', 'wan2')
        lab.ip('router', 'address', 'add', '192.0.2.3/24', 'dev', 'wan2')

        def follows():
            rules = lab.ip('router', '-4', 'rule').stdout
            return ('from 192.0.2.3 lookup isp2' in rules and '192.0.2.2' not in rules
                    and 'default via 192.0.2.1' in lab.ip('router', 'route', 'show', 'table', 'isp2').stdout)
        took = wait_for(follows, 2)
        print('new address: rules and routes followed in %.2f s' % took)
        assert watch.saw(r'^wan2: address 192\.0\.2\.3/24 added$')
        assert seen(lab, 'router', bind='192.0.2.3') == ['192.0.2.3', '192.0.2.3']
        assert seen(lab, 'client2') == ['192.0.2.3', '192.0.2.3']

        # someone else's change: the whole ruleset flushed (`systemctl reload nftables` with
        # Debian's /etc/nftables.conf, which starts with `flush ruleset`) and a rule deleted
        # by hand: both put back, then nothing more is applied
        def ours():
            return {'rules': lab.ip('router', '-4', 'rule').stdout,
                    'nft': [lab.run('router', 'nft', '-s', 'list', 'table', 'inet', table, check=False).stdout
                            for table in ('netpolicy_split_access', 'netpolicy_source_routing')]}
        time.sleep(0.5)  # the address change's apply done
        before = ours()
        lab.run('router', 'nft', 'flush', 'ruleset')
        lab.ip('router', 'rule', 'del', 'priority', '3101')
        took = wait_for(lambda: ours() == before, 2)
        print('ruleset flushed and a rule deleted: put back in %.2f s' % took)
        assert 'split_access: ip rule add priority 3101 from all fwmark 0x2/0xff lookup isp2' in watch.lines
        assert 'source_routing: nft -f /etc/netpolicy/routing/source_routing.nft' in watch.lines
        assert seen(lab, 'client2') == ['192.0.2.3', '192.0.2.3']
        time.sleep(0.5)  # the last re-apply done
        settled_lines = len(watch.lines)
        time.sleep(1.0)
        assert watch.lines[settled_lines:] == []    # its own changes start no further apply
    finally:
        code = watch.stop()
    assert code == 0, watch.lines
    assert watch.lines[-1] == 'stopping (SIGTERM)'
    assert not [line for line in watch.lines if line.startswith('error:') and 'wan1' not in line], watch.lines

    # a stop while watch waits for the lock (a play's change in progress) ends the wait at
    # once: a unit's stop or restart is never held up until the lock's timeout
    holder = Holder('test: a change in progress', netns=lab.name('router'))
    try:
        waiting = Watch(lab)
        wait_for(lambda: len(openers(holder.path) - {holder.pid}) >= 1, 10)
        start = time.monotonic()
        code = waiting.stop()
        took = time.monotonic() - start
    finally:
        holder.release()
    assert code == 0 and took < 2, (took, waiting.lines)
    assert any(re.search(r'stopped while waiting for the lock held by pid %d, test: a change in progress'
                         % holder.pid, line) for line in waiting.lines), waiting.lines
    assert waiting.lines[-1] == 'stopping (SIGTERM)'

    status = agent(lab, 'status')
    assert status.returncode == 0, status.stdout
    assert 'split_access: in sync with the kernel' in status.stdout
    assert re.search(r'uplink isp1 \(wan1\): up, new connections [1-9]\d* \(\d+%\)', status.stdout), status.stdout

    # drift: status says what differs, apply puts it back
    lab.ip('router', 'rule', 'del', 'priority', '3101')
    lab.run('router', 'nft', 'delete', 'table', 'inet', 'netpolicy_source_routing')
    status = agent(lab, 'status')
    assert status.returncode == 1
    assert 'split_access: drifted (1 to change, 0 errors)\n' \
           '  would run: ip rule add priority 3101 from all fwmark 0x2/0xff lookup isp2\n' in status.stdout
    assert 'source_routing: drifted (1 to change, 0 errors)\n' \
           '  would run: nft -f /etc/netpolicy/routing/source_routing.nft\n' in status.stdout

    # damaged and foreign state files: reported, not applied; the good ones applied all the same
    directory = os.path.join(lab.etc('router'), 'netpolicy', 'routing')
    for name, text in (('broken.json', '{"role": "split_access", "version": 1,'),
                       ('other.json', '{"hosts": ["a", "b"]}'),
                       ('reply_via_same_router.json', '{"role": "reply_via_same_router", "version": 7}'),
                       ('split.json', '{"role": "split_access", "version": 1}')):
        with open(os.path.join(directory, name), 'w') as handle:
            handle.write(text)
    applied = agent(lab, 'apply')
    assert applied.returncode == 1
    lines = applied.stdout.splitlines()
    problems = [line for line in lines if 'not applied' in line]
    assert len(problems) == 4, lines
    assert problems[0].startswith('error: /etc/netpolicy/routing/broken.json: not applied: not JSON (')
    assert problems[1:] == [
        'error: /etc/netpolicy/routing/other.json: not applied: not a netpolicy.routing state (no "role")',
        'error: /etc/netpolicy/routing/reply_via_same_router.json: not applied: state version 7, '
        'this agent reads version 1',
        'error: /etc/netpolicy/routing/split.json: not applied: holds the state of split_access, '
        'so it should be named split_access.json']
    assert 'split_access: ip rule add priority 3101 from all fwmark 0x2/0xff lookup isp2' in lines
    assert 'source_routing: nft -f /etc/netpolicy/routing/source_routing.nft' in lines
    for name in ('broken.json', 'other.json', 'reply_via_same_router.json', 'split.json'):
        os.unlink(os.path.join(directory, name))
    assert agent(lab, 'status').returncode == 0

    # an interface gone: the rest is applied, each failure named, exit 1
    lab.ip('router', 'rule', 'del', 'priority', '3100')
    lab.ip('router', 'link', 'set', 'wan2', 'down')
    lab.ip('router', 'link', 'set', 'wan2', 'name', 'wan2old')
    applied = agent(lab, 'apply')
    assert applied.returncode == 1
    assert 'split_access: ip rule add priority 3100 from all fwmark 0x1/0xff lookup isp1' in applied.stdout
    assert "error: split_access: route_table.tables[1] (table 102): tables[0].routes[0].dev: " \
           "no interface 'wan2' in this network namespace" in applied.stdout
    assert 'uplink isp2 (wan2): missing' in agent(lab, 'status').stdout


def write_state(path, state):
    """Write a saved state as the roles do: another file renamed over it."""
    with open(path + '.new', 'w') as handle:
        json.dump(state, handle)
    os.rename(path + '.new', path)


def test_watch_waits_for_what_keeps_undoing_a_state(router_lab):
    # Another tool deletes split_access's rule 3101 ten times a second for 4 s: watch puts it
    # back at once REPAIRS_MAX times, then ever later (2 s, then 4 s), not five times a second.
    lab = router_lab
    watch = Watch(lab)
    try:
        wait_for(lambda: watch.saw('^watching '), 10)
        time.sleep(0.3)  # its first apply (nothing to do) done
        put_back = 'split_access: ip rule add priority 3101 from all fwmark 0x2/0xff lookup isp2'
        ended = time.monotonic() + 4.0
        while time.monotonic() < ended:
            lab.ip('router', 'rule', 'del', 'priority', '3101', check=False)
            time.sleep(0.1)
        made = watch.lines.count(put_back)
        print('put back %d times in 4 s' % made)
        assert _agent.REPAIRS_MAX <= made <= _agent.REPAIRS_MAX + 2, watch.lines
        assert watch.saw('^split_access: put back 5 times in 30 s: something keeps undoing it; its route, rule '
                         'and nftables events now wait 2 s$'), watch.lines
        # left alone now: back at the end of the wait
        wait_for(lambda: '3101:' in lab.ip('router', '-4', 'rule').stdout, 4.5)
        wait_for(lambda: watch.lines.count(put_back) == made + 1, 1)
    finally:
        code = watch.stop()
    assert code == 0, watch.lines
    assert not [line for line in watch.lines if line.startswith('error:')], watch.lines


def test_watch_follows_its_state_files(router_lab):
    """A saved state rewritten while watch runs (a role's run, a hand edit): applied again,
    and the monitor follows its section."""
    lab = router_lab
    path = os.path.join(lab.etc('router'), 'netpolicy', 'routing', 'split_access.json')
    with open(path) as handle:
        state = json.load(handle)
    watch = Watch(lab)
    try:
        wait_for(lambda: watch.saw('^watching '), 10)
        state['monitor'] = dict(state['monitor'], enabled=True,
                                targets={'isp1': ['198.51.100.1'], 'isp2': ['192.0.2.1']})
        write_state(path, state)
        took = wait_for(lambda: watch.saw(r'^monitor: probing isp1, isp2 every 0\.5s'), 3)
        print('monitor enabled in the state file: started in %.2f s' % took)
        assert watch.saw(r'^saved state changed \(split_access\.json\): applying every state again$'), watch.lines

        # a damaged monitor section, edited by hand: refused by name, the monitor stopped, watch goes on
        state['monitor']['probe'] = 'tcp'
        with open(path, 'w') as handle:
            json.dump(state, handle)
        problem = "monitor.probe: not icmp or tcp:PORT: 'tcp'"
        refused = 'error: /etc/netpolicy/routing/split_access.json: not applied: ' + problem
        wait_for(lambda: refused in watch.lines, 3)
        wait_for(lambda: watch.saw('^monitor: stopped'), 1)
        status = agent(lab, 'status')
        assert status.returncode == 1, status.stdout
        assert 'not applied: /etc/netpolicy/routing/split_access.json: ' + problem in status.stdout
        assert 'source_routing: in sync with the kernel' in status.stdout
        time.sleep(0.5)
        assert watch.proc.poll() is None, watch.lines
    finally:
        code = watch.stop()
    assert code == 0, watch.lines
    assert [line for line in watch.lines if line.startswith('error:')] == [refused], watch.lines


def test_watch_applies_the_states_a_change_in_progress_leaves(router_lab):
    """A play's change holds the lock while it changes the kernel, then writes its state:
    a watch woken by the kernel's events must apply the state written, not the one before."""
    lab = router_lab
    path = os.path.join(lab.etc('router'), 'netpolicy', 'routing', 'split_access.json')
    with open(path) as handle:
        state = json.load(handle)
    watch = Watch(lab)
    holder = None
    try:
        wait_for(lambda: watch.saw('^watching '), 10)
        time.sleep(0.3)  # its first apply (nothing to do) done
        holder = Holder('test: a play that drops rule 3101', netns=lab.name('router'))
        lab.ip('router', 'rule', 'del', 'priority', '3101')   # the change first, the state file last
        time.sleep(0.5)  # the watch woke up and waits for the lock
        state['ip_rule']['rules'] = [rule for rule in state['ip_rule']['rules'] if rule.get('priority') != 3101]
        write_state(path, state)
        holder.release()
        time.sleep(1.5)  # the watch's apply, and the one for the state file
    finally:
        if holder is not None:
            holder.release()
        code = watch.stop()
    assert code == 0, watch.lines
    assert '3101:' not in lab.ip('router', '-4', 'rule').stdout
    assert not [line for line in watch.lines if 'priority 3101' in line], watch.lines


def test_usage():
    from ansible_collections.netpolicy.routing.plugins.module_utils._agent import main
    import io
    out = io.StringIO()
    assert main(['restart'], out=out) == 2
    assert out.getvalue().startswith('usage: netpolicy-routing')


def test_unit_file_verifies(tmp_path):
    if not shutil.which('systemd-analyze'):
        pytest.skip('systemd-analyze is not installed')
    command = tmp_path / 'netpolicy-routing'
    command.write_text('#!/bin/sh\n')
    command.chmod(0o755)
    from ansible_collections.netpolicy.routing.plugins.module_utils._install import unit_text
    unit = tmp_path / 'netpolicy-routing.service'
    unit.write_text(unit_text(str(command)))
    verified = subprocess.run(['systemd-analyze', 'verify', str(unit)], capture_output=True, text=True, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert 'ExecStart=%s watch' % command in unit.read_text()
