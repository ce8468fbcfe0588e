"""Salt's real loaders pointed at the formula's _modules, _states and _utils: no daemons.

The minion's pillar is pillar.example, compiled by Salt from a pillar root in a temporary
directory; the minion is pillar.example's first manager.
"""

import pytest

from functional_setup import example_pillar, sandbox_loaders, sandbox_minion_opts


@pytest.fixture(scope="module")
def minion_opts(tmp_path_factory):
    return sandbox_minion_opts(tmp_path_factory.mktemp("minion"), example_pillar())


@pytest.fixture(scope="module")
def loaders(minion_opts):
    return sandbox_loaders(minion_opts)


@pytest.fixture(autouse=True)
def reset_loaders_state(loaders):
    try:
        yield
    finally:
        loaders.reset_state()
