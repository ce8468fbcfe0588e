"""Salt's real loaders pointed at the formula's _modules, _states and _utils: no daemons.

The minion's pillar is pillar.example, compiled by Salt from a pillar root in a temporary
directory; the minion is pillar.example's first manager.
"""

from unittest.mock import patch

import pytest
import salt.config
import yaml
from saltfactories.utils.functional import Loaders

from functional_setup import MINION_ID, REPO, example_pillar


@pytest.fixture(scope="module")
def minion_opts(tmp_path_factory):
    root = tmp_path_factory.mktemp("minion")
    pillar_root = root / "pillar"
    pillar_root.mkdir()
    (pillar_root / "top.sls").write_text(yaml.safe_dump({"base": {"*": ["cloudify_ha"]}}))
    (pillar_root / "cloudify_ha.sls").write_text(yaml.safe_dump({"cloudify_ha": example_pillar()}))
    (root / "srv").mkdir()
    opts = salt.config.minion_config(None)
    opts.update({
        "id": MINION_ID,
        "root_dir": str(root),
        "cachedir": str(root / "cache"),
        "pki_dir": str(root / "pki"),
        "sock_dir": str(root / "sock"),
        "extension_modules": str(root / "extmods"),
        "log_file": str(root / "minion.log"),
        "file_client": "local",
        "master_type": "disable",
        "file_roots": {"base": [str(root / "srv")]},
        "pillar_roots": {"base": [str(pillar_root)]},
        "module_dirs": [str(REPO / "_modules")],
        "states_dirs": [str(REPO / "_states")],
        "utils_dirs": [str(REPO / "_utils")],
    })
    return opts


@pytest.fixture(scope="module")
def loaders(minion_opts):
    # Loaders syncs the extension modules, which fires a pillar refresh on the minion's event
    # bus; without a minion daemon nobody listens and the event would wait its 1 s timeout
    with patch("salt.utils.event.SaltEvent.fire_event", return_value=False):
        return Loaders(minion_opts)


@pytest.fixture(autouse=True)
def reset_loaders_state(loaders):
    try:
        yield
    finally:
        loaders.reset_state()
