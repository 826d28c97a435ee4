"""Safe apply (source_routing_confirm_timeout) over a real management path.

The controller runs ansible-playbook in a namespace of its own and manages the
router by SSH across the lab's internet, through isp1 to the router's wan1
address (tests/lab/ssh.py). A good change is confirmed over a fresh connection
and stays after the timeout. A change that cuts the path fails, saying the
router puts its previous state back, and the router does so by itself within
the timeout: it is reachable again and exactly as before.

The change that cuts: a policy for the router's own management address,
198.51.100.2, out by isp2. The router's answers to the controller then leave by
wan2, where isp2 drops them (not its customer's address).
"""
import os
import time

import pytest

from tests.lab import ssh, topologies
from tests.lab.lab import LabCommandError
from tests.lab.playbook import REPO, recap, run_playbook, snapshot

SEED001 = os.path.join(REPO, 'playbooks', 'seed001_source_host.yml')
PING = os.path.join(REPO, 'tests', 'integration', 'files', 'ssh_ping.yml')
TIMEOUT = 8
MARGIN = 3  # seconds: the machine may be busy
GOOD = {'name': 'macbook', 'from': ['192.168.1.10'], 'interface': 'wan2', 'gateway': '192.0.2.1', 'snat': '192.0.2.2'}
CUT = {'name': 'cutoff', 'from': [ssh.ROUTER_ADDRESS], 'interface': 'wan2', 'gateway': '192.0.2.1'}

pytestmark = pytest.mark.slow


@pytest.fixture
def lab(lab_factory):
    return lab_factory(ssh.with_controller(topologies.two_isp()))


@pytest.fixture
def management(lab):
    with ssh.Management(lab) as running:
        yield running


def policies(*items, timeout=TIMEOUT):
    # no saved state: installing the agent copies its files one by one, minutes over SSH
    return {'source_routing_policies': list(items), 'source_routing_confirm_timeout': timeout,
            'source_routing_persist': False}


def wait_for(condition, deadline):
    """Poll ``condition`` until it is true or time.monotonic() passes ``deadline``; its last value."""
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_good_change_is_confirmed_and_stays(lab, management):
    assert recap(management.playbook(PING))['ok'] == 2  # the harness: a module and a command over SSH

    applied = management.playbook(SEED001, extra_vars=policies(GOOD))
    ended = time.monotonic()
    assert recap(applied)['changed'] > 0
    assert 'puts its previous state back' not in applied.stdout
    after = snapshot(lab)
    assert 'from 192.168.1.10 lookup macbook' in after['rules']

    # past the timeout: nothing was rolled back
    time.sleep(max(0.0, ended + TIMEOUT + 2 - time.monotonic()))
    assert snapshot(lab) == after
    assert management.reachable()


def test_change_that_cuts_the_management_path_is_rolled_back(lab, management):
    run_playbook(lab, SEED001, extra_vars=policies(GOOD, timeout=0))  # the state to come back to
    before = snapshot(lab)
    assert management.reachable()

    with pytest.raises(LabCommandError) as failed:
        management.playbook(SEED001, extra_vars=policies(GOOD, CUT))
    ended = time.monotonic()

    deadline = ended + TIMEOUT + MARGIN
    assert wait_for(lambda: snapshot(lab) == before, deadline), 'the router did not put its previous state back'
    assert wait_for(management.reachable, deadline)
    assert recap(management.playbook(PING))['failed'] == 0
    assert 'puts its previous state back' in failed.value.output
