"""The namespace lab: declarative topologies of routers, ISPs, clients and servers.

    from tests.lab import Lab, topologies
    with Lab(topologies.two_isp()) as lab:
        lab.connect('client1', '203.0.113.10', 80, count=10)

See tests/lab/lab.py for the topology format and docs/lab.md for a tour.
"""
from tests.lab import topologies
from tests.lab.lab import Lab, LabCommandError, TopologyError, teardown, validate

__all__ = ['Lab', 'LabCommandError', 'TopologyError', 'teardown', 'topologies', 'validate']
