"""The master-side runner (_runners/cloudify_ha.py): its argument checks, before anything runs."""

from unittest.mock import MagicMock

import pytest

from formula_code import runner_module

RUNNER = runner_module()


@pytest.fixture
def master(tmp_path, monkeypatch):
    """__opts__ and __salt__ of a master; the orchestration call is a mock."""
    salt = {"state.orchestrate": MagicMock(return_value={"data": "ran"})}
    monkeypatch.setattr(RUNNER, "__opts__", {"cachedir": str(tmp_path)}, raising=False)
    monkeypatch.setattr(RUNNER, "__salt__", salt, raising=False)
    monkeypatch.setattr(RUNNER, "_master_pillar", lambda: ({"reactor": {"enabled": True}}, None))
    return salt


@pytest.mark.parametrize("node", ["mgr2\n", "mgr2\n  evil: true", "../etc", "*", "", "mgr\u0662",
                                  "x" * 256, True, None, ["mgr2"]])
def test_rejoin_refuses_a_node_that_is_not_a_plain_minion_id_and_runs_nothing(master, node):
    answer = RUNNER.rejoin(node)
    assert answer["result"] is False
    assert answer["comment"].startswith("node: must be the minion id of a manager")
    master["state.orchestrate"].assert_not_called()


def test_rejoin_of_a_minion_id_runs_the_rejoin_orchestration_with_it(master):
    assert RUNNER.rejoin("cfy-mgr2.example.com") == {"data": "ran"}
    master["state.orchestrate"].assert_called_once_with(
        "cloudify_ha.orch.rejoin", pillar={"node": "cfy-mgr2.example.com"})


def test_rejoin_of_a_numeric_minion_id_given_as_a_yaml_integer(master):
    RUNNER.rejoin(123)
    master["state.orchestrate"].assert_called_once_with("cloudify_ha.orch.rejoin",
                                                        pillar={"node": "123"})


def test_rejoin_while_paused_runs_nothing_unless_forced(master, monkeypatch):
    monkeypatch.setattr(RUNNER, "_master_pillar", lambda: ({"reactor": {"enabled": False}}, None))
    assert RUNNER.rejoin("mgr2")["comment"].startswith("automatic rejoins are paused")
    master["state.orchestrate"].assert_not_called()
    assert RUNNER.rejoin("mgr2", force=True) == {"data": "ran"}
