"""4.6's timing, one layer (issue 32 item 7): the rest of the suite runs the emulator with its
timing turned down (test/lab/fixtures.py LAB_KNOBS says why); here one cluster, shared by every
check, runs at 4.6's (cloudify-4.6.md section 0.4, cfyemu/README.md): a heartbeat every 15 s,
a dead node offline after 30 s, 30 s without an active node after a failover, 30 s of nginx's
502 after a boot.

A failover: the active node dies and, while the new one starts its services, every step that
needs the active node waits for it (waits:active_node) instead of failing; the profiles put the
new active node first. A reboot and rejoin: the old active node comes back and the rejoin
orchestration (the reactor's) meets its 502 window, waits through it (waits:boot) and finds it a
member again. The checks follow each other on the one cluster: no sleeps, bounded polls."""

import json
import time

import pytest

from lab.formula import OrchRun, member_state, nodes, orch, profile_entries
from lab.proc import wait_until

MANAGERS = ("mgr1", "mgr2", "mgr3")
# the emulator's defaults (4.6's), over the lab package's LAB_KNOBS
AT_46 = {"heartbeat_seconds": 15, "offline_after_seconds": 30, "failover_seconds": 30,
         "boot_502_seconds": 30}


def _healthy(lab):
    try:
        listed = nodes(lab["mgr2"])
    except AssertionError:
        return False
    return sorted(listed) == list(MANAGERS) and all(n["state"] in ("leader", "replica")
                                                   for n in listed.values())


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


def test_a_failover_is_waited_for_and_the_profile_puts_the_new_active_node_first(
        lab, at_46, emulator, salt_cli):
    old = next(n for n, row in nodes(lab["mgr2"]).items() if row["state"] == "leader")
    asker = next(n for n in MANAGERS if n != old)
    lab.kill(old)
    at_46["dead"] = old
    found = salt_cli.run("cloudify_ha.active_node", minion_tgt=asker, _timeout=300)
    assert found.returncode == 0, found
    assert found.data["name"] != old, found.data
    # the cluster had no active node for 4.6's tens of seconds: asked again, not failed
    assert found.data.get("waited", 0) >= 10, found.data
    # the CLI host's profile: rewritten with the new active node first, 4.6's cfy then works
    applied = salt_cli.run("state.apply", "cloudify_ha.profile", minion_tgt="cli",
                           _timeout=300)
    assert applied.returncode == 0, applied
    assert list(profile_entries(lab["cli"], "lab"))[0] == found.data["name"]
    listed = nodes(lab["cli"], credentials=("admin", lab.passwords["admin"]))
    assert listed[found.data["name"]]["state"] == "leader", listed


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
