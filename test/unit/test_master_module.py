"""_modules/cloudify_ha_master.py: what the orchestrations ask on the master (which files the
formula syncs, which minions lack them), with a fake Salt and a fake grains cache; the steps it
returns are the builder's (test_orch_builder.py) and render through Salt in test/render."""

import re
from unittest.mock import MagicMock

import pytest

from formula_code import REPO, grain_module, load, orch_util

MASTER = load("_modules/cloudify_ha_master.py", "cloudify_ha_master_under_test")


@pytest.fixture
def salt():
    return {}


@pytest.fixture
def configure_loader_modules(salt):
    return {MASTER: {"__salt__": salt, "__opts__": {"id": "saltmaster_master"},
                     "__utils__": {"cloudify_ha_orch.orch_steps": orch_util().orch_steps}}}


def test_formula_modules_lists_what_sync_copies(salt):
    listing = {"_utils/": ["_utils/cloudify_ha_rest.py"], "_modules/": ["_modules/cloudify_ha.py"],
               "_states/": [], "_beacons/": ["_beacons/cloudify_ha.py"],
               "_grains/": ["_grains/cloudify_ha.py"]}
    salt["cp.list_master"] = MagicMock(side_effect=lambda saltenv, prefix: listing[prefix])
    salt["cp.hash_file"] = MagicMock(side_effect=lambda path, saltenv: {
        "hash_type": "sha256", "hsum": path[-10:]})
    assert MASTER.formula_modules() == {"utils/cloudify_ha_rest.py": "sha256:ha_rest.py",
                                        "modules/cloudify_ha.py": "sha256:dify_ha.py",
                                        "beacons/cloudify_ha.py": "sha256:dify_ha.py",
                                        "grains/cloudify_ha.py": "sha256:dify_ha.py"}


def test_sync_copies_the_kinds_modules_current_checks():
    # cloudify_ha.sync cannot ask the module (it installs it): the two lists are kept alike
    sls = (REPO / "cloudify_ha" / "sync.sls").read_text()
    kinds = re.search(r"set kinds = \(([^)]*)\)", sls).group(1)
    assert tuple(k.strip().strip('"') for k in kinds.split(",")) == MASTER.SYNCED_KINDS
    assert "beacons" in MASTER.SYNCED_KINDS  # the managers run the formula's beacon
    # the grain reports the same kinds' files
    assert grain_module().KINDS == MASTER.SYNCED_KINDS


class FakeGrainsCache:
    """salt.utils.master.MasterPillarUtil reading the master's grains cache."""

    grains = {}
    made = []

    def __init__(self, tgt, tgt_type, **kwargs):
        FakeGrainsCache.made.append((tgt, tgt_type, kwargs))
        self.tgt = tgt

    def get_minion_grains(self):
        return {mid: self.grains[mid] for mid in self.tgt if mid in self.grains}


def test_minions_without_modules_reads_only_the_masters_grains_cache(monkeypatch):
    import salt.utils.master  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(salt.utils.master, "MasterPillarUtil", FakeGrainsCache)
    FakeGrainsCache.made = []
    FakeGrainsCache.grains = {
        "synced": {"id": "synced", MASTER.GRAIN: {"modules/cloudify_ha.py": "sha256:ab"}},
        "never-synced": {"id": "never-synced", "os": "CentOS"},
        "grain-without-files": {"id": "grain-without-files", MASTER.GRAIN: {}},
        "no-cache": {}}
    ids = ["synced", "never-synced", "grain-without-files", "no-cache", "unknown"]
    assert MASTER.minions_without_modules(ids) == ["never-synced"]
    # the cache only: never a live call to a minion
    assert FakeGrainsCache.made == [(ids, "list", {"use_cached_grains": True,
                                                   "grains_fallback": False,
                                                   "opts": {"id": "saltmaster_master"}})]
    assert MASTER.minions_without_modules([]) == []
    assert len(FakeGrainsCache.made) == 1


def test_orch_steps_and_targets_are_the_builders():
    plan = {"errors": ["cloudify_ha:x: unknown key"], "warnings": [], "clusters": {}}
    assert MASTER.orch_targets("orch", plan) == []
    assert list(MASTER.orch_steps("orch", plan)) == ["cloudify_ha-orch-validate"]
    with pytest.raises(Exception, match="is not one of orch, rejoin, retire"):
        MASTER.orch_steps("reboot", plan)


def test_ask_asks_the_function_of_minions_with_the_modules_and_pings_the_others(salt):
    """A minion answers a function it lacks only after loading every module it has: those the
    master's grains cache shows without the formula's modules are pinged."""
    calls = []

    def cmd(tgt, tgt_type, fun, timeout, kwarg=None):
        calls.append((fun, tgt, tgt_type, kwarg, timeout))
        return {mid: {"ret": fun, "retcode": 0} for mid in tgt}
    salt["saltutil.cmd"] = cmd
    salt["cloudify_ha_master.minions_without_modules"] = lambda ids: [m for m in ids if m == "new"]
    assert MASTER.ask(["m1", "new", "m2"], "cloudify_ha.maintenance_mode", timeout=7) == {
        "m1": {"ret": "cloudify_ha.maintenance_mode", "retcode": 0},
        "m2": {"ret": "cloudify_ha.maintenance_mode", "retcode": 0},
        "new": {"ret": "test.ping", "retcode": 0}}
    assert calls == [("cloudify_ha.maintenance_mode", ["m1", "m2"], "list", {}, 7),
                     ("test.ping", ["new"], "list", None, 7)]
    calls.clear()
    assert MASTER.ask([], "cloudify_ha.orch_facts") == {} and calls == []
    salt["cloudify_ha_master.minions_without_modules"] = lambda ids: []
    MASTER.ask(["m1"], "cloudify_ha.orch_facts", kwarg={"expected": {}})
    assert calls == [("cloudify_ha.orch_facts", ["m1"], "list", {"expected": {}}, 5)]
