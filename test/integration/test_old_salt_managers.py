"""The core of the lab suite with the MANAGERS' minions on the last Salts built for EL7, 3006.8
and 3007.1 (Python 3.10), beside the session's 3008 master: what a shop that upgrades its master
first meets, since Cloudify 4.6 runs on CentOS/RHEL 7. The CLI, LB and DB hosts keep the
session's 3008 minions. Every test runs once per old Salt, the tests of one Salt together.

The tests are the 3008 suite's own (imported from test_orch), run here on the mixed fleet, plus
a pillar mistake only the managers can see (a secret of theirs: the master holds none), which
they report through orch_facts, one rejoin through the reactor from an old minion's start event
and one failed follower and its re-run (test_orch's every-installer-step version of it runs on
3008). Per Salt, one cluster is built from empty and serves every test but the last, which
needs empty hosts again.
"""

import time

import pytest

from lab.formula import (member_state, minion_pillar, nodes, orch, reactor_idle, rejoin_returns,
                         shadow_pillar, with_manager_secrets)
from lab.proc import wait_until
from lab.saltlab import minions_on_salt, salt_versions

# the same tests, on this module's minions (pytest collects what a module holds, in this order)
from test_orch import (  # noqa: F401  pylint: disable=unused-import
    MANAGERS, _joined_state, _step_text, built_cluster,
    test_dry_run_on_empty_hosts_reports_and_changes_nothing, test_build_from_empty,
    test_rerun_changes_nothing_and_runs_nothing_mutating)
from test_pillar_mistakes import MISTAKES, refused

# EL7's last Salts: both authenticate with protocol 2, which a 3008 master takes only with
# minimum_auth_version: 2 (the lab master's; README "Supported Salt")
OLD_SALTS = ("3006.8", "3007.1")


@pytest.fixture(scope="module", autouse=True, params=OLD_SALTS)
def managers_on_old_salt(request, lab, lab_minions, salt_cli):  # pylint: disable=unused-argument
    """The managers' minions restarted under an old Salt, as new minions (no cache, no modules):
    every test here starts from them; afterwards the session's Salt again, also as new minions."""
    with minions_on_salt(lab, salt_cli, MANAGERS, request.param):
        assert salt_versions(salt_cli, [*MANAGERS, "cli"])["cli"] != request.param
        yield request.param


def test_the_managers_report_their_own_pillar_mistake_and_nothing_runs(
        built_cluster, pillar_dir, emulator, salt_cli, salt_run_cli):  # noqa: F811
    """A managers' secret missing: the master, which holds none, cannot see it; each manager
    answers orch_facts with it and the master refuses the whole run, naming them."""
    change, expected = MISTAKES["cert without key"]
    broken = with_manager_secrets(minion_pillar(salt_cli, minion="cli"), built_cluster)
    change(broken)
    comment = refused(broken, pillar_dir, emulator, salt_run_cli)
    assert comment.startswith("the cloudify_ha pillar of some minions is invalid"), comment
    (line,) = [line for line in comment.splitlines() if expected in line]
    assert line.endswith(" (pillar of mgr1, mgr2, mgr3)"), comment


def test_a_wiped_manager_rejoins_through_the_reactor(built_cluster, salt_cli, pillar_dir,  # noqa: F811
                                                     emulator, event_listener):
    lab = built_cluster
    pillar = with_manager_secrets(minion_pillar(salt_cli, minion="cli"), lab)
    pillar["reactor"] = {"enabled": True}
    with shadow_pillar(pillar_dir, pillar):
        assert salt_cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt="*").returncode == 0
        since = time.time()
        lab.wipe("mgr2")
        # the old minion's start event -> the master's reactor -> cloudify_ha.rejoin
        returns = wait_until(lambda: [r for r in rejoin_returns(event_listener, "mgr2", since)
                                      if isinstance(r, dict) and "data" in r], 300,
                             "the reactor's rejoin of mgr2")
        assert returns[0]["retcode"] == 0, returns[0]
        wait_until(lambda: member_state(lab, "mgr2", via="mgr3") == "replica", 60, "mgr2 online")
        assert lab["mgr2"].exists("/etc/cloudify/.install")
        joins = [e for e in emulator.audit("mgr2") if e.get("prog") == "cfy_manager"]
        assert [e["exit"] for e in joins] == [0], joins
        wait_until(lambda: reactor_idle(event_listener, since), 300, "the rejoin runs to return")


def test_a_failed_follower_is_torn_down_and_joined_by_the_rerun(fresh_lab, emulator,
                                                               salt_run_cli):
    """A follower's join fails after its restservice step (4.6 leaves its services running
    without .install: half-installed): the run stops there; the re-run tears it down
    (cfy_manager remove -f), joins it, then the next follower. The leader installs once."""
    lab = fresh_lab
    join2, join3 = "cloudify_ha-orch-lab-join-mgr2", "cloudify_ha-orch-lab-join-mgr3"
    emulator.set_knobs("mgr2", fail_at="stage")
    run = orch(salt_run_cli)
    assert run.returncode != 0, run
    assert run["cloudify_ha-orch-lab-leader-mgr1"]["result"] is True, run
    assert run[join2]["result"] is False, run
    assert "Failed to install stage" in _step_text(run, join2), run
    assert run[join3]["result"] is False and "requisite" in run[join3]["comment"].lower(), run
    assert not lab["mgr2"].exists("/etc/cloudify/.install")
    assert [e for e in emulator.audit("mgr3") if e["kind"] == "cli"] == []

    emulator.set_knobs("mgr2", fail_at=None)
    run = orch(salt_run_cli)
    assert run.returncode == 0, run
    joined = _joined_state(run, join2, "mgr2")
    assert joined["result"] is True and "removed_failed_install" in joined["changes"], joined
    listed = nodes(lab["mgr1"])
    assert {n: listed[n]["state"] for n in MANAGERS} == {
        "mgr1": "leader", "mgr2": "replica", "mgr3": "replica"}, listed
    assert len([e for e in emulator.audit("mgr1") if e.get("prog") == "cfy_manager"]) == 1
