"""The master-side runner (_runners/cloudify_ha.py): its argument checks, before anything runs."""

import os
from unittest.mock import MagicMock

import pytest

from formula_code import example_pillar, files_util, pillar_util, runner_module

RUNNER = runner_module()
P = pillar_util()
UTILS = {"cloudify_ha_files.open_private": files_util().open_private}


class MasterMinion:
    """The master's own minion, with the formula's plan (the real pillar schema) loaded."""

    functions = {"cloudify_ha.plan": lambda pillar, cluster=None: P.plan(pillar, cluster)}


def master_pillar(enabled=True):
    pillar = example_pillar()
    pillar["reactor"] = {"enabled": enabled}
    return pillar, MasterMinion()


@pytest.fixture
def master(tmp_path, monkeypatch):
    """__opts__ and __salt__ of a master; the orchestration call is a mock."""
    salt = {"state.orchestrate": MagicMock(return_value={"data": "ran"})}
    monkeypatch.setattr(RUNNER, "__opts__", {"cachedir": str(tmp_path)}, raising=False)
    monkeypatch.setattr(RUNNER, "__salt__", salt, raising=False)
    monkeypatch.setattr(RUNNER, "__utils__", UTILS, raising=False)
    monkeypatch.setattr(RUNNER, "_master_pillar", master_pillar)
    return salt


@pytest.mark.parametrize("node", ["mgr2\n", "mgr2\n  evil: true", "../etc", "*", "", "mgr\u0662",
                                  "x" * 256, True, None, ["mgr2"]])
def test_rejoin_refuses_a_node_that_is_not_a_plain_minion_id_and_runs_nothing(master, node):
    answer = RUNNER.rejoin(node)
    assert answer["result"] is False
    assert answer["comment"].startswith("node: must be the minion id of a manager")
    master["state.orchestrate"].assert_not_called()


def test_rejoin_of_a_managers_minion_id_runs_the_rejoin_orchestration_with_it(master):
    assert RUNNER.rejoin("cfy-mgr2.example.com") == {"data": "ran"}
    master["state.orchestrate"].assert_called_once_with(
        "cloudify_ha.orch.rejoin", pillar={"cloudify_ha_orch": {"node": "cfy-mgr2.example.com"}})


@pytest.mark.parametrize("node", ["admin1.example.com", "cfy-lb1.example.com", "cfy-mgr2", 123])
def test_rejoin_of_a_minion_that_is_no_manager_is_ignored_before_anything_runs(master, node):
    answer = RUNNER.rejoin(node, force=True)
    assert (answer["result"], answer["comment"]) == (
        True, f"ignored: '{node}' is not the minion id of a manager of any cluster in pillar "
              "cloudify_ha:clusters; nothing ran")
    master["state.orchestrate"].assert_not_called()


def test_rejoin_with_an_invalid_master_pillar_runs_nothing(master, monkeypatch):
    pillar, minion = master_pillar()
    pillar["clusters"]["prod"]["leadr"] = "x"
    monkeypatch.setattr(RUNNER, "_master_pillar", lambda: (pillar, minion))
    answer = RUNNER.rejoin("cfy-mgr2.example.com")
    assert answer["result"] is False and "invalid on the master" in answer["comment"]
    master["state.orchestrate"].assert_not_called()


def test_rejoin_while_paused_runs_nothing_unless_forced(master, monkeypatch):
    monkeypatch.setattr(RUNNER, "_master_pillar", lambda: master_pillar(enabled=False))
    assert RUNNER.rejoin("cfy-mgr2.example.com")["comment"].startswith(
        "automatic rejoins are paused")
    master["state.orchestrate"].assert_not_called()
    assert RUNNER.rejoin("cfy-mgr2.example.com", force=True) == {"data": "ran"}


class Compiles:
    """The master's pillar compile (what a forged event costs), counted."""

    def __init__(self, enabled=True):
        self.count, self.enabled = 0, enabled

    def __call__(self):
        self.count += 1
        return master_pillar(self.enabled)


def test_a_burst_of_forged_events_costs_one_pillar_compile(master, monkeypatch):
    """200 start events for minions that are no managers, as the reactor passes them: the
    first compiles the master's pillar, the rest are dropped on the managers' ids it found."""
    compiles = Compiles()
    monkeypatch.setattr(RUNNER, "_master_pillar", compiles)
    answers = [RUNNER.rejoin(f"forged{i}.example.com", cached=True) for i in range(200)]
    assert compiles.count == 1
    assert {a["comment"].split(":")[0] for a in answers} == {"ignored"}
    master["state.orchestrate"].assert_not_called()
    # a manager's own event in the same burst is not dropped
    assert RUNNER.rejoin("cfy-mgr2.example.com", cached=True) == {"data": "ran"}
    assert compiles.count == 1


def test_the_managers_ids_are_compiled_again_once_they_are_old(master, monkeypatch, tmp_path):
    compiles = Compiles()
    monkeypatch.setattr(RUNNER, "_master_pillar", compiles)
    RUNNER.rejoin("forged.example.com", cached=True)
    facts = tmp_path / "cloudify_ha" / "master-facts.json"
    old = facts.stat().st_mtime - RUNNER.FACTS_SECONDS - 1
    os.utime(facts, (old, old))
    RUNNER.rejoin("forged.example.com", cached=True)
    assert compiles.count == 2


def test_a_rejoin_run_by_hand_compiles_the_pillar_every_time(master, monkeypatch):
    compiles = Compiles()
    monkeypatch.setattr(RUNNER, "_master_pillar", compiles)
    for _ in range(3):
        RUNNER.rejoin("cfy-mgr2.example.com")
    assert compiles.count == 3


def test_paused_rejoins_are_known_from_the_cache_too(master, monkeypatch):
    compiles = Compiles(enabled=False)
    monkeypatch.setattr(RUNNER, "_master_pillar", compiles)
    for _ in range(5):
        assert RUNNER.rejoin("cfy-mgr2.example.com", cached=True)["comment"].startswith(
            "automatic rejoins are paused")
    assert compiles.count == 1
    master["state.orchestrate"].assert_not_called()


@pytest.mark.parametrize("name", ["force", "cached"])
@pytest.mark.parametrize("value", ["False", "True", "no", 0, 1, None])
def test_boolean_arguments_are_booleans_and_nothing_else(master, monkeypatch, name, value):
    """force="False" (a string, as an API client or a hand-written reaction may send it) is
    true in Python: it would run a paused rejoin."""
    compiles = Compiles(enabled=False)
    monkeypatch.setattr(RUNNER, "_master_pillar", compiles)
    answer = RUNNER.rejoin("cfy-mgr2.example.com", **{name: value})
    assert (answer["result"], answer["comment"]) == (
        False, f"{name}: {value!r} must be true or false; nothing ran")
    assert compiles.count == 0
    master["state.orchestrate"].assert_not_called()


@pytest.mark.parametrize("name", ["rejoin.lock", "pending-cfy-mgr2.example.com.lock",
                                  "master-facts.json"])
def test_the_runners_files_are_never_links_to_others(master, tmp_path, name):
    (tmp_path / "cloudify_ha").mkdir()
    target = tmp_path / "master.pem"
    target.write_text("precious\n", encoding="utf-8")
    (tmp_path / "cloudify_ha" / name).symlink_to(target)
    answer = RUNNER.rejoin("cfy-mgr2.example.com")
    assert target.read_text(encoding="utf-8") == "precious\n"
    if name != "master-facts.json":
        assert (answer["result"], answer["comment"]) == (False, (
            f"{tmp_path / 'cloudify_ha' / name} is a symbolic link: the formula's own files "
            "are never followed elsewhere; remove it (it is re-created at the next run); "
            "nothing was changed"))
        master["state.orchestrate"].assert_not_called()
    else:  # the cache is written anew beside it (a rename replaces the link, not its target)
        assert not (tmp_path / "cloudify_ha" / name).is_symlink()


def test_rejoin_in_a_cluster_in_maintenance_mode_logs_and_skips(master, caplog):
    """The rejoin orchestration refuses a cluster in 4.6's maintenance mode (its one step); the
    runner the reactor calls logs it and answers that it skipped, result True."""
    refusal = ("cluster prod: cfy-mgr1 (10.0.0.11) is in maintenance mode (activated); the "
               "rejoin of cfy-mgr2.example.com did not run: nothing was changed")
    step = "cloudify_ha-rejoin-cfy-mgr2.example.com-maintenance"
    master["state.orchestrate"].return_value = {"data": {"master_master": {
        f"cloudify_ha_|-{step}_|-{step}_|-refused": {
            "__id__": step, "result": False, "comment": refusal, "changes": {}}}},
        "retcode": 1}
    with caplog.at_level("WARNING"):
        answer = RUNNER.rejoin("cfy-mgr2.example.com")
    assert answer == {"node": "cfy-mgr2.example.com", "result": True,
                      "comment": f"skipped: {refusal}; run 'salt-run cloudify_ha.rejoin "
                                 "node=cfy-mgr2.example.com' once it is off"}
    assert f"cloudify_ha rejoin of cfy-mgr2.example.com skipped: {refusal}" in caplog.text


@pytest.mark.parametrize("ret", [
    {"data": {"master_master": {"x": {"__id__": "cloudify_ha-rejoin-m-joined", "result": False,
                                      "comment": "failed"}}}, "retcode": 1},
    {"data": {"master_master": {"x": {"__id__": "cloudify_ha-rejoin-m-maintenance",
                                      "result": True, "comment": "?"}}}},
    {"data": "a string"}, {"data": {"m": ["a list"]}}, "text", None])
def test_rejoin_returns_any_other_orchestration_answer_as_it_is(master, ret):
    master["state.orchestrate"].return_value = ret
    assert RUNNER.rejoin("cfy-mgr2.example.com") == ret
