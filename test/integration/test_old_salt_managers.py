"""The core of the lab suite with the MANAGERS' minions on Salt 3006.8 (Python 3.10) beside the
session's 3008 master: what a shop that upgrades its master first meets, since Cloudify 4.6
runs on CentOS/RHEL 7 and 3006.8 is the last Salt built for EL7. The CLI, LB and DB hosts keep
the session's 3008 minions.

The tests are the 3008 suite's own (imported from test_orch), run here on the mixed fleet,
plus a pillar mistake and one rejoin through the reactor from a 3006.8 minion's start event.
"""

import time

import pytest

from lab.formula import (deep, member_state, minion_pillar, orch, reactor_idle, rejoin_returns,
                         shadow_pillar, with_manager_secrets)
from lab.proc import wait_until
from lab.saltlab import minion_python, salt_versions, use_python

# the same tests, on this module's minions (pytest collects what a module holds)
from test_orch import (MANAGERS, built_cluster,  # noqa: F401  pylint: disable=unused-import
                       test_build_from_empty, test_dry_run_on_empty_hosts_reports_and_changes_nothing,
                       test_joins_failing_at_each_installer_step_converge_with_no_data_lost,
                       test_rerun_changes_nothing_and_runs_nothing_mutating)
from test_pillar_mistakes import MISTAKES, nothing_ran

SALT = "3006.8"


@pytest.fixture(scope="module", autouse=True)
def managers_on_3006(lab, lab_minions, salt_cli):
    """The managers' minions restarted under Salt 3006.8, as new minions (no cache, no modules):
    every test here starts from them; afterwards the session's Salt again, also as new minions."""
    python = minion_python(SALT)
    before = {name: lab.minions[name].python_executable for name in MANAGERS}
    use_python(lab, MANAGERS, python)
    try:
        lab.reset(new_minions=True)
        versions = salt_versions(salt_cli, list(MANAGERS) + ["cli"])
        assert {m: versions[m] for m in MANAGERS} == {m: SALT for m in MANAGERS}, versions
        assert versions["cli"] != SALT, versions
        yield
    finally:
        for name, python in before.items():
            use_python(lab, [name], python)
        lab.reset(new_minions=True)


def test_a_pillar_mistake_is_named_and_nothing_runs(pillar_dir, emulator, salt_cli, salt_run_cli):
    change, expected = MISTAKES["bad port"]
    broken = deep(minion_pillar(salt_cli, minion="cli"))
    change(broken)
    emulator.clear_audit()
    with shadow_pillar(pillar_dir, broken):
        run = orch(salt_run_cli)
    assert run.returncode != 0, run
    assert list(run.steps) == ["cloudify_ha-orch-validate"], run
    assert expected in run["cloudify_ha-orch-validate"]["comment"], run
    assert nothing_ran(emulator)


def test_a_wiped_manager_rejoins_through_the_reactor(built_cluster, salt_cli, pillar_dir,  # noqa: F811
                                                     emulator, event_listener):
    lab = built_cluster
    pillar = with_manager_secrets(minion_pillar(salt_cli, minion="cli"), lab)
    pillar["reactor"] = {"enabled": True}
    with shadow_pillar(pillar_dir, pillar):
        assert salt_cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt="*").returncode == 0
        since = time.time()
        lab.wipe("mgr2")
        # the 3006.8 minion's start event -> the master's reactor -> cloudify_ha.rejoin
        returns = wait_until(lambda: [r for r in rejoin_returns(event_listener, "mgr2", since)
                                      if isinstance(r, dict) and "data" in r], 300,
                             "the reactor's rejoin of mgr2")
        assert returns[0]["retcode"] == 0, returns[0]
        wait_until(lambda: member_state(lab, "mgr2", via="mgr3") == "replica", 60, "mgr2 online")
        assert lab["mgr2"].exists("/etc/cloudify/.install")
        joins = [e for e in emulator.audit("mgr2") if e.get("prog") == "cfy_manager"]
        assert [e["exit"] for e in joins] == [0], joins
        wait_until(lambda: reactor_idle(event_listener, since), 300, "the rejoin runs to return")
