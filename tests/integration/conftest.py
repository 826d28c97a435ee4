"""Fixtures for tests that run against the real kernel in network namespaces.

Every namespace a test creates carries this run's unique prefix (RUN_PREFIX)
and is removed after the test, even when it fails; nothing here touches the
host namespace's routes, rules, nftables or sysctls.
"""
import itertools
import os
import shutil
import subprocess

import pytest

from tests.lab.names import netns_name

pytest_plugins = ['tests.lab.pytest_plugin']

_COUNTER = itertools.count(1)


class Namespace:
    """A bare network namespace for module tests: lo up, nothing else."""

    def __init__(self, name):
        self.name = name
        self.etc = os.path.join('/etc/netns', name)

    def run(self, *argv, check=True):
        """Run argv inside the namespace (ip netns exec: /etc/netns/NAME applies)."""
        return subprocess.run(['ip', 'netns', 'exec', self.name] + list(argv),
                              capture_output=True, text=True, check=check)

    def ip(self, *argv, check=True):
        return subprocess.run(['ip', '-n', self.name] + list(argv), capture_output=True, text=True, check=check)

    def add_dummy(self, ifname, *addresses):
        """An interface that is up with carrier, with the given addresses (CIDR).

        A veth pair inside the namespace (peer ``<ifname>p``): some kernels are built
        without the dummy driver, veth is always there.
        """
        self.ip('link', 'add', ifname, 'type', 'veth', 'peer', 'name', ifname[:14] + 'p')
        self.ip('link', 'set', ifname[:14] + 'p', 'up')
        for address in addresses:
            self.ip('addr', 'add', address, 'dev', ifname)
        self.ip('link', 'set', ifname, 'up')

    def rt_tables(self, text):
        """Give the namespace its own /etc/iproute2/rt_tables (as ip netns exec sees it)."""
        conf = os.path.join(self.etc, 'iproute2')
        os.makedirs(os.path.join(conf, 'rt_tables.d'), exist_ok=True)
        with open(os.path.join(conf, 'rt_tables'), 'w') as handle:
            handle.write(text)
        return conf


@pytest.fixture
def pipelining(monkeypatch):
    """Ansible's pipelining, as on a real router: one process per task, no temporary files
    (a module marks itself with ``pytest.mark.usefixtures('pipelining')``)."""
    monkeypatch.setenv('ANSIBLE_PIPELINING', '1')


@pytest.fixture
def netns(request):
    """A fresh, empty network namespace named with this run's prefix."""
    name = netns_name('t%d' % next(_COUNTER))
    subprocess.run(['ip', 'netns', 'add', name], check=True)
    ns = Namespace(name)
    try:
        ns.ip('link', 'set', 'lo', 'up')
        yield ns
    finally:
        subprocess.run(['ip', 'netns', 'del', name], check=False)
        shutil.rmtree(ns.etc, ignore_errors=True)
