"""pytest fixtures of the namespace lab.

- ``lab_factory``: ``lab = lab_factory(topologies.three_isp())`` builds a lab
  that is torn down after the test, pass or fail.
- ``two_isp_lab``: a fresh two_isp lab per test.

Registered by tests/integration/conftest.py (``pytest_plugins``); elsewhere
use ``-p tests.lab.pytest_plugin``.
"""
import pytest

from tests.lab import Lab, topologies


@pytest.fixture
def lab_factory():
    labs = []

    def make(topology, **kwargs):
        lab = Lab(topology, **kwargs)
        labs.append(lab)
        return lab.up()

    try:
        yield make
    finally:
        errors = []
        for lab in reversed(labs):
            try:
                lab.down()
            except Exception as exc:  # tear down the others all the same
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def two_isp_lab(lab_factory):
    return lab_factory(topologies.two_isp())
