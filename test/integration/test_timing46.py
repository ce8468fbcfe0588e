"""4.6's timing, one layer (issue 32 item 7): the rest of the suite runs the emulator with its
timing turned down (test/lab/fixtures.py LAB_KNOBS says why); here one cluster, shared by every
check, runs at 4.6's (cloudify-4.6.md section 0.4, cfyemu/README.md): a heartbeat every 15 s,
a dead node offline after 30 s, 30 s without an active node after a failover, 30 s of nginx's
502 after a boot.

A failover: the active node dies and, while the new one starts its services, a rejoin (the
reactor's orchestration) that needs the active node waits for it (waits:active_node) instead of
failing; the profiles put the new active node first. A reboot and rejoin: the old active node comes back and the rejoin
orchestration (the reactor's) meets its 502 window, waits through it (waits:boot) and finds it a
member again. The checks follow each other on the one cluster: no sleeps, bounded polls."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from lab.fixtures import AT_46
from lab.formula import OrchRun, cluster_healthy, member_state, nodes, orch, profile_entries
from lab.proc import wait_until

MANAGERS = ("mgr1", "mgr2", "mgr3")


def _healthy(lab):
    return cluster_healthy(lab, MANAGERS)


@pytest.fixture(scope="module")
def at_46(lab, emulator, salt_run_cli):
    """A healthy cluster (built now if the lab has none), its managers at 4.6's timing;
    a dict the checks share (the node that died)."""
    if not _healthy(lab):
        lab.reset()
        run = orch(salt_run_cli)
        assert run.returncode == 0, run
    for name in MANAGERS:
        emulator.set_knobs(name, **AT_46)
    shared = {}
    yield shared
    for name in MANAGERS:
        if not lab[name].pids():  # the failover check killed it and the rejoin did not run
            lab.power_on(name)
        emulator.set_knobs(name, **{k: None for k in AT_46})


def _polls_for_the_active_node(emulator, lab, asker, others):
    """Whether `asker` asked another manager's /status more than once (active_node asking
    again: a single read is any step's; the orchestration's own reads are of the host itself)."""
    return any(len([e for e in emulator.audit(m) if e["kind"] == "rest"
                    and e["path"].endswith("/status") and e["remote"] == lab[asker].ip]) > 1
               for m in others)


def test_a_rejoin_in_a_failover_waits_for_the_new_active_node_and_profiles_put_it_first(
        lab, at_46, emulator, salt_cli, salt_run_cli):
    """The reactor's rejoin (here: of a live replica, as a minion's restart or the beacon runs
    it) lands in the failover window: its join step asks again until the new active node
    answers, instead of failing. The window is held open until the step is seen asking (the
    knob is read at each request), then it closes at 4.6's 30 s after the election."""
    old = next(n for n, row in nodes(lab["mgr2"]).items() if row["state"] == "leader")
    live = [n for n in MANAGERS if n != old]
    rejoining = live[0]
    for name in live:
        emulator.set_knobs(name, failover_seconds=600)
    emulator.clear_audit()
    lab.kill(old)
    at_46["dead"] = old
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(salt_run_cli.run, "state.orch", "cloudify_ha.orch.rejoin",
                              "pillar=" + json.dumps({"node": rejoining}), _timeout=900)
        try:
            wait_until(lambda: _polls_for_the_active_node(emulator, lab, rejoining, live[1:]),
                       300, f"{rejoining}'s rejoin to ask again for the active node")
        finally:
            for name in live:
                emulator.set_knobs(name, failover_seconds=AT_46["failover_seconds"])
        run = OrchRun(pending.result())
    # asked again while no node was active, and then passed: without the wait the step fails
    # at once ("no active node in cluster 'lab'"); nothing about Cloudify changed
    assert run.returncode == 0, run
    assert run.steps[f"cloudify_ha-rejoin-{rejoining}-joined"]["result"] is True, run
    assert emulator.mutating() == []
    new = next(n for n, row in nodes(lab[rejoining]).items() if row["state"] == "leader")
    assert new in live
    # the CLI host's profile: rewritten with the new active node first, 4.6's cfy then works
    applied = salt_cli.run("state.apply", "cloudify_ha.profile", minion_tgt="cli",
                           _timeout=300)
    assert applied.returncode == 0, applied
    assert list(profile_entries(lab["cli"], "lab"))[0] == new
    listed = nodes(lab["cli"], credentials=("admin", lab.passwords["admin"]))
    assert listed[new]["state"] == "leader", listed


def test_the_old_active_node_rebooted_rejoins_through_its_502_window(
        lab, at_46, emulator, salt_run_cli):
    old = at_46.get("dead")
    if old is None:
        pytest.fail("the failover check did not run first: no node to bring back")
    emulator.clear_audit()
    since = time.time()
    lab.power_on(old)
    run = OrchRun(salt_run_cli.run("state.orch", "cloudify_ha.orch.rejoin",
                                   "pillar=" + json.dumps({"node": old}), _timeout=900))
    assert run.returncode == 0, run
    # the rejoin met the boot window: the host's nginx answered 502 to the formula's reads
    assert [e for e in emulator.audit(old) if e["kind"] == "rest" and e["status"] == 502
            and e["t"] >= since and e["remote"] != "127.0.0.1"], "no 502 was served"
    wait_until(lambda: member_state(lab, old) == "replica", 120, f"{old} online again")
    assert emulator.mutating() == []
