"""What the functional tests and their conftest share: the repository, its example pillar, a
sandboxed minion and its loaders."""

import pathlib
from unittest.mock import patch

import salt.config
import yaml
from saltfactories.utils.functional import Loaders

REPO = pathlib.Path(__file__).resolve().parents[2]
MINION_ID = "cfy-mgr1.example.com"  # pillar.example's first manager


def example_pillar():
    """pillar.example's `cloudify_ha` mapping."""
    with open(REPO / "pillar.example", encoding="utf-8") as fh:
        return yaml.safe_load(fh)["cloudify_ha"]


def secrets_of(pillar):
    cluster = pillar["clusters"]["prod"]
    return [cluster["admin"]["password"], cluster["database"]["password"],
            cluster["database"]["postgres_password"]]


def sandbox_minion_opts(root, pillar):
    """A minion's opts under `root` (no master: local file and pillar roots there), whose pillar
    is `pillar` (the `cloudify_ha` mapping), compiled by Salt from a pillar root."""
    pillar_root = root / "pillar"
    pillar_root.mkdir()
    (pillar_root / "top.sls").write_text(yaml.safe_dump({"base": {"*": ["cloudify_ha"]}}))
    (pillar_root / "cloudify_ha.sls").write_text(yaml.safe_dump({"cloudify_ha": pillar}))
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


def sandbox_loaders(opts):
    # Loaders syncs the extension modules, which fires a pillar refresh on the minion's event
    # bus; without a minion daemon nobody listens and the event would wait its 1 s timeout
    with patch("salt.utils.event.SaltEvent.fire_event", return_value=False):
        return Loaders(opts)
