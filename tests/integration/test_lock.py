"""Two runs at once on one router take turns (plugins/module_utils/_lock.py).

A module run waits while another run holds the lock of its namespace and
finishes correctly after; with a short NETPOLICY_ROUTING_LOCK_TIMEOUT it fails
naming the holder and changes nothing; check mode does not wait. Then a play
and `netpolicy-routing apply` started at the same moment on a lab router: both
were seen waiting for the lock at the same time, both succeed, and the router
ends as the play wants.
"""
import os
import re
import threading
import time

import pytest

from tests.helpers.agent import wait_for
from tests.helpers.lock import Holder, openers
from tests.helpers.modules import run_module
from tests.lab import topologies
from tests.lab.playbook import REPO, recap, run_playbook, snapshot

RULE = {'priority': 1500, 'from': '192.168.1.10', 'table': 7375}
RULE6 = {'priority': 1501, 'from': '2001:db8:1::10', 'table': 7375}
SEED001 = os.path.join(REPO, 'playbooks', 'seed001_source_host.yml')


def ip_rule(ns, check=False, env=None):
    return run_module('ip_rule', {'netns': ns.name, 'rules': [RULE, RULE6],
                                  '_ansible_module_name': 'netpolicy.routing.ip_rule'}, check=check, env=env)


def rules(ns):
    return ns.ip('-4', 'rule').stdout + ns.ip('-6', 'rule').stdout


class Background:
    """``function()`` in a thread: ``done``, ``result`` (or the exception it raised, re-raised by ``join``)."""

    def __init__(self, function):
        self.result = self.error = None
        self.thread = threading.Thread(target=self._run, args=(function,), daemon=True)
        self.thread.start()

    def _run(self, function):
        try:
            self.result = function()
        except Exception as exc:  # handed to the test by join()
            self.error = exc

    @property
    def done(self):
        return not self.thread.is_alive()

    def join(self, limit):
        self.thread.join(limit)
        assert self.done, 'still running after %s s' % limit
        if self.error is not None:
            raise self.error
        return self.result


def test_module_waits_for_the_holder(netns):
    before = rules(netns)
    holder = Holder('netpolicy-routing apply', netns=netns.name)
    try:
        run = Background(lambda: ip_rule(netns))
        # the module is waiting once it has the lock file open too
        wait_for(lambda: openers(holder.path) - {holder.pid}, 60)
        time.sleep(0.5)
        assert not run.done, 'the module ran while another run held the lock'
        assert rules(netns) == before
    finally:
        holder.release()
    result = run.join(60)
    assert (result['rc'], result['changed']) == (0, True), result
    assert result['commands'] == ['ip rule add priority 1500 from 192.168.1.10 lookup 7375',
                                  'ip -6 rule add priority 1501 from 2001:db8:1::10 lookup 7375']
    assert '1500:\tfrom 192.168.1.10 lookup 7375' in rules(netns)
    assert '1501:\tfrom 2001:db8:1::10 lookup 7375' in rules(netns)
    assert not os.path.exists(holder.path), 'the lock file outlived its last holder'
    assert ip_rule(netns)['changed'] is False


def test_timeout_names_the_holder_and_changes_nothing(netns):
    before = rules(netns)
    holder = Holder('netpolicy-routing apply', netns=netns.name)
    try:
        start = time.monotonic()
        result = ip_rule(netns, env={'NETPOLICY_ROUTING_LOCK_TIMEOUT': '1'})
        took = time.monotonic() - start
        # check mode does not wait for the lock: it predicts from what is there now
        checked = ip_rule(netns, check=True, env={'NETPOLICY_ROUTING_LOCK_TIMEOUT': '30'})
        assert rules(netns) == before
    finally:
        holder.release()
    assert result.get('failed') and result['changed'] is False, result
    assert 'Traceback' not in result['stderr']
    assert re.match(r'another netpolicy\.routing run holds the lock of this network namespace '
                    r'\(pid %d, netpolicy-routing apply, since \d\d:\d\d:\d\d\); waited 1 s '
                    r'\(NETPOLICY_ROUTING_LOCK_TIMEOUT\); nothing was changed$' % holder.pid, result['msg']), result
    assert took >= 1
    assert (checked['rc'], checked['changed']) == (0, True), checked
    assert len(checked['commands']) == 2

    bad = ip_rule(netns, env={'NETPOLICY_ROUTING_LOCK_TIMEOUT': 'soon'})
    assert bad['msg'] == "NETPOLICY_ROUTING_LOCK_TIMEOUT: not a number of seconds (0 or more): 'soon'", bad
    assert rules(netns) == before


def state(lab):
    """What the play owns on the router, without nftables counters."""
    found = snapshot(lab)
    found['nft'] = lab.run('router', 'nft', '-s', 'list', 'ruleset').stdout
    return found


@pytest.mark.slow
def test_play_and_agent_started_at_once(lab_factory, monkeypatch):
    monkeypatch.setenv('ANSIBLE_PIPELINING', '1')
    # Both wait for the test's own holder first, for as long as the play needs to reach its
    # first module: under load that may be more than the default 120 s.
    monkeypatch.setenv('NETPOLICY_ROUTING_LOCK_TIMEOUT', '600')
    lab = lab_factory(topologies.two_isp())
    assert recap(run_playbook(lab, SEED001, nodes=['router']))['failed'] == 0
    wanted = state(lab)
    assert os.path.exists(os.path.join(lab.etc('router'), 'netpolicy', 'routing', 'source_routing.json'))

    # Drift, so that the play and the agent both have something to put back.
    lab.ip('router', 'rule', 'del', 'priority', '1000')
    lab.run('router', 'nft', 'delete', 'table', 'inet', 'netpolicy_source_routing')
    assert state(lab) != wanted

    # Held by the test until both are seen waiting, so that they meet at the lock for sure.
    holder = Holder('test: holding until both wait', netns=lab.name('router'))
    try:
        play = Background(lambda: run_playbook(lab, SEED001, nodes=['router']))
        agent = Background(lambda: lab.run('router', lab.agent_command('router'), 'apply', check=False,
                                           timeout=900))
        # the agent and a module of the play: two more processes with the lock file open
        wait_for(lambda: len(openers(holder.path) - {holder.pid}) >= 2 or play.done or agent.done, 300)
        assert not play.done and not agent.done, 'one of them finished without waiting for the lock'
    finally:
        holder.release()
    applied = agent.join(300)
    played = play.join(600)

    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert re.search(r'^netpolicy-routing: waited \d+\.\d s for the lock held by pid %d, '
                     r'test: holding until both wait, since \d\d:\d\d:\d\d' % holder.pid,
                     applied.stderr, re.M), applied.stderr
    assert recap(played)['failed'] == 0
    assert state(lab) == wanted
    assert not os.path.exists(holder.path)
