"""Fixtures of the emulator's own tests (the lab's fixtures are in test/conftest.py)."""

import pytest

from cfylab import build, install_cli


@pytest.fixture
def cluster(fresh_lab, emulator):
    """A fresh three-node cluster (mgr1 leader), built by the seed's procedure; for tests that
    change it."""
    return build(fresh_lab, emulator)


@pytest.fixture(scope="module")
def shared_cluster(lab, emulator):
    """One three-node cluster for a whole module whose tests only read it (or put back what they
    change), plus the CLI package on the `cli` host."""
    lab.reset()
    build(lab, emulator)
    install_cli(emulator)
    return lab
