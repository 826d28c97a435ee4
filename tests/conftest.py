"""Shared pytest setup: the repository root is importable as `tests.*`, and the
collection as Ansible imports it: `ansible_collections.netpolicy.routing`
(scripts/bootstrap links .cache/collections/ansible_collections/netpolicy/routing
to this checkout)."""
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (REPO, os.path.join(REPO, '.cache', 'collections')):
    if path not in sys.path:
        sys.path.insert(0, path)


def pytest_sessionfinish(session, exitstatus):
    """A run in which no test passed fails (exit 5), like one that collected none.

    pytest already exits 5 when it collects no test; this extends that to runs
    where every test was skipped or deselected, so a suite that quietly stopped
    testing anything cannot pass.
    """
    if exitstatus != pytest.ExitCode.OK or session.config.option.collectonly:
        return
    reporter = session.config.pluginmanager.get_plugin('terminalreporter')
    if reporter is not None and not reporter.stats.get('passed'):
        reporter.ensure_newline()
        reporter.write_line('no test passed (all skipped or deselected): failing with exit status 5', red=True)
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
