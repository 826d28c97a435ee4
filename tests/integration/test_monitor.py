"""The health monitor of split_access, run by `netpolicy-routing watch`, on the
three_isp lab (tests/integration/files/monitor_three_isp.yml): one ISP dies
upstream (its link to the router stays up) while clients open a new connection
every 50 ms and hold long-lived ones; then it comes back. Times are printed.
"""
import collections
import contextlib
import json
import os
import re
import time

import pytest

from tests.lab import topologies
from tests.lab.playbook import REPO, recap, run_playbook
from tests.lab.recorder import peer_text

from tests.helpers.agent import NewConnections, Watch, agent, wait_for
from tests.helpers.lock import Holder

PLAYBOOK = os.path.join(REPO, 'tests', 'integration', 'files', 'monitor_three_isp.yml')
SERVER = topologies.SERVER

pytestmark = pytest.mark.slow


def hook_was_told(path):
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return handle.read().splitlines()


def monitored_router(lab_factory):
    """The three_isp lab with split_access and its monitor applied, and a notification
    hook (as mwan3 users have hotplug scripts) that records what it is told: (lab, its record)."""
    lab = lab_factory(topologies.three_isp())
    assert recap(run_playbook(lab, PLAYBOOK, nodes=['router']))['failed'] == 0
    told = os.path.join(lab.state_dir, 'hook.log')
    hooks = os.path.join(lab.etc('router'), 'netpolicy', 'routing', 'hook.d')
    os.makedirs(hooks)
    with open(os.path.join(hooks, '50-record'), 'w') as handle:
        handle.write('#!/bin/sh\necho "$1 $2" >> %s\n' % told)
    os.chmod(os.path.join(hooks, '50-record'), 0o755)
    return lab, told


def test_one_isp_dies_upstream_and_comes_back(lab_factory):
    lab, told = monitored_router(lab_factory)
    watch = Watch(lab)
    held_connections = contextlib.ExitStack()
    try:
        wait_for(lambda: watch.saw('^monitor: probing isp1, isp2, isp3 every 0.5s'), 10)
        time.sleep(2)  # a few good rounds
        held = [held_connections.enter_context(lab.hold('client1', SERVER, 80)) for dummy in range(6)]
        by_uplink = collections.Counter(lab.uplink_of(peer_text(conn.seen)) for conn in held)
        assert by_uplink == {'isp1': 2, 'isp2': 2, 'isp3': 2}, by_uplink
        clients = NewConnections(lab, 'client2')
        time.sleep(1)

        died = time.monotonic()
        # upstream: isp2 stops forwarding; its link to the router (wan2) stays up
        lab.nft('isp2', 'table inet outage { chain forward { type filter hook forward priority 0; policy drop; }; }')
        wait_for(lambda: watch.saw('^isp2: out'), 3)
        wait_for(lambda: watch.saw(r'^isp2: conntrack -D --mark 0x2/0xff$'), 2)
        time.sleep(0.5)
        # the dead uplink's connections are gone from conntrack, the others' are there
        marked = {mark: lab.run('router', 'conntrack', '-L', '--mark', '%d/255' % mark).stdout.count('dport=80')
                  for mark in (1, 2, 3)}
        assert marked[2] == 0 and marked[1] >= 2 and marked[3] >= 2, marked
        # what the monitor took out is no drift
        status = agent(lab, 'status')
        assert 'split_access: in sync with the kernel' in status.stdout, status.stdout
        assert re.search(r'uplink isp2 \(wan2\): up, .*; monitor: out since ', status.stdout), status.stdout
        time.sleep(0.5)
        back = time.monotonic()
        lab.run('isp2', 'nft', 'delete', 'table', 'inet', 'outage')
        wait_for(lambda: watch.saw('^isp2: back in'), 3)
        time.sleep(1.5)
        results = clients.stop()

        failed_after = [start - died for start, uplink in results if uplink is None and start >= died]
        last_failure = max(failed_after) if failed_after else 0.0
        first_back = min(start - back for start, uplink in results if uplink == 'isp2' and start >= back)
        print('new connections failing for %.2f s after the ISP died (%d failed); back on isp2 %.2f s after it '
              'recovered' % (last_failure, len(failed_after), first_back))
        assert last_failure <= 2.0
        assert first_back <= 2.0
        assert not [uplink for start, uplink in results if start < died and uplink is None]
        # held connections on the healthy uplinks all survived
        alive = collections.Counter((lab.uplink_of(peer_text(conn.seen)), conn.alive(timeout=1.0)) for conn in held)
        assert alive[('isp1', True)] == 2 and alive[('isp3', True)] == 2, alive

        status = agent(lab, 'status')
        assert re.search(r'uplink isp2 \(wan2\): up, new connections \d+ \(\d+%\); monitor: in since .*, loss \d+%, '
                         r'rtt [\d.]+ ms', status.stdout), status.stdout
        assert 'split_access: in sync with the kernel' in status.stdout
        wait_for(lambda: hook_was_told(told) == ['isp2 out', 'isp2 in'], 2)

        # A carrier blip of wan2: out at once, back once its probes answer again; the
        # connections it carries are not deleted, and go on.
        blip = [held_connections.enter_context(lab.hold('client1', SERVER, 80)) for dummy in range(3)]
        on_isp2 = [conn for conn in blip if lab.uplink_of(peer_text(conn.seen)) == 'isp2']
        assert len(on_isp2) == 1, [conn.seen for conn in blip]
        lines = len(watch.lines)
        lab.ip('router', 'link', 'set', 'wan2', 'down')
        wait_for(lambda: watch.saw(r'^isp2: out: .*its connections are deleted if its link is still down in 1\.\d s$'),
                 2)
        time.sleep(0.3)
        lab.ip('router', 'link', 'set', 'wan2', 'up')
        wait_for(lambda: any(line == 'isp2: back in' for line in watch.lines[lines:]), 5)
        assert not [line for line in watch.lines[lines:] if 'conntrack -D' in line], watch.lines[lines:]
        assert on_isp2[0].alive(timeout=2.0)
    finally:
        held_connections.close()
        watch.stop()
        print('\n'.join(watch.lines))

    # The same with TCP probes (a connection to port 80 of the target through each uplink).
    path = os.path.join(lab.etc('router'), 'netpolicy', 'routing', 'split_access.json')
    with open(path) as handle:
        state = json.load(handle)
    state['monitor']['probe'] = 'tcp:80'
    with open(path, 'w') as handle:
        json.dump(state, handle)
    watch = Watch(lab)
    try:
        wait_for(lambda: watch.saw('^monitor: probing isp1, isp2, isp3 every 0.5s'), 10)
        time.sleep(1)
        lab.nft('isp3', 'table inet outage { chain forward { type filter hook forward priority 0; policy drop; }; }')
        took = wait_for(lambda: watch.saw('^isp3: out'), 2.5)
        lab.run('isp3', 'nft', 'delete', 'table', 'inet', 'outage')
        took_back = wait_for(lambda: watch.saw('^isp3: back in'), 2.5)
        print('tcp:80 probes: out in %.2f s, back in %.2f s' % (took, took_back))
        assert not watch.saw('^(isp1|isp2): out'), watch.lines
    finally:
        watch.stop()


def test_a_restarted_watch_keeps_a_dead_uplink_out(lab_factory):
    # A restart of the agent's unit (an upgrade, `systemctl restart nftables`) while isp2 is dead.
    lab, told = monitored_router(lab_factory)
    watch = Watch(lab)
    try:
        wait_for(lambda: watch.saw('^monitor: probing isp1, isp2, isp3 every 0.5s'), 10)
        time.sleep(1)
        lab.nft('isp2', 'table inet outage { chain forward { type filter hook forward priority 0; policy drop; }; }')
        wait_for(lambda: watch.saw(r'^isp2: conntrack -D --mark 0x2/0xff$'), 4)
        wait_for(lambda: hook_was_told(told) == ['isp2 out'], 2)
    finally:
        watch.stop()
        print('\n'.join(watch.lines))
    # No watch: apply and status go by the saved state alone (nothing would bring isp2 back).
    status = json.loads(agent(lab, 'status', '--json').stdout)
    assert [state['in_sync'] for state in status['states'] if state['role'] == 'split_access'] == [False]

    restarted = time.time()
    clients = NewConnections(lab, 'client2')
    watch = Watch(lab)
    try:
        wait_for(lambda: watch.saw('^monitor: probing'), 10)
        # From the first apply of the new watch on: no new connection, no default route for isp2.
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            balance = lab.run('router', 'nft', 'list', 'chain', 'inet', 'netpolicy_split_access', 'balance').stdout
            default = lab.ip('router', 'route', 'show', 'default').stdout
            assert 'uplink_1' in balance and 'uplink_2' not in balance, balance
            assert 'wan1' in default and 'wan2' not in default, default
        results = clients.stop()
        assert results and not [uplink for start, uplink in results if uplink in (None, 'isp2')], results
        assert 'isp2: out (as the previous watch left it)' in watch.lines
        assert not [line for line in watch.lines if 'conntrack -D' in line or 'out: no new connections' in line]
        assert hook_was_told(told) == ['isp2 out']
        status = json.loads(agent(lab, 'status', '--json').stdout)
        assert [state['in_sync'] for state in status['states'] if state['role'] == 'split_access'] == [True]
        monitor = [uplink['monitor'] for uplink in status['uplinks'] if uplink['name'] == 'isp2'][0]
        assert monitor['state'] == 'out' and monitor['since'] < restarted, monitor

        lab.run('isp2', 'nft', 'delete', 'table', 'inet', 'outage')
        wait_for(lambda: watch.saw('^isp2: back in$'), 3)
        wait_for(lambda: hook_was_told(told) == ['isp2 out', 'isp2 in'], 2)
    finally:
        clients.stop()
        watch.stop()
        print('\n'.join(watch.lines))


def test_a_failed_take_out_is_followed_up_by_the_next_apply(lab_factory, monkeypatch):
    lab, told = monitored_router(lab_factory)
    # A play holds the lock of the router's namespace when isp2 dies: the agent does not wait for it.
    monkeypatch.setenv('NETPOLICY_ROUTING_LOCK_TIMEOUT', '0')
    watch = Watch(lab)
    holder = None
    try:
        wait_for(lambda: watch.saw('^monitor: probing isp1, isp2, isp3 every 0.5s'), 10)
        time.sleep(1)
        holder = Holder('a play', netns=lab.name('router'))
        lab.nft('isp2', 'table inet outage { chain forward { type filter hook forward priority 0; policy drop; }; }')
        wait_for(lambda: watch.saw('^isp2: could not take it out: '), 3)
        time.sleep(0.5)  # the apply of the whole state after it fails too
        assert hook_was_told(told) == []
        assert not [line for line in watch.lines if 'conntrack -D' in line]
        holder.release()
        # nothing else happens on the router: the agent tries again by itself (after 1 s,
        # then 2, 4, ... while it fails)
        wait_for(lambda: watch.saw(r'^isp2: conntrack -D --mark 0x2/0xff$'), 4)
        wait_for(lambda: hook_was_told(told) == ['isp2 out'], 2)
        balance = lab.run('router', 'nft', 'list', 'chain', 'inet', 'netpolicy_split_access', 'balance').stdout
        assert 'uplink_1' in balance and 'uplink_2' not in balance, balance
        assert len([line for line in watch.lines if 'conntrack -D' in line]) == 1

        lab.run('isp2', 'nft', 'delete', 'table', 'inet', 'outage')
        wait_for(lambda: watch.saw('^isp2: back in$'), 3)
        wait_for(lambda: hook_was_told(told) == ['isp2 out', 'isp2 in'], 2)
    finally:
        if holder is not None:
            holder.release()
        watch.stop()
        print('\n'.join(watch.lines))
