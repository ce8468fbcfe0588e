"""Day 2 with the reactor on: managers that come back rejoin by themselves, events are trusted
only for their authenticated sender, repeated events make one join, a dead node is retired and
replaced, and `salt-run cloudify_ha.status` agrees with `cfy cluster nodes list` throughout.

The session's test pillar pauses the reactor (cloudify_ha:reactor:enabled: false) so that other
modules' host restarts trigger nothing; this module serves a pillar with it on, and the
cloudify_ha beacon configured on every minion."""

import time
from pathlib import Path

import pytest

from lab.formula import (blueprint_ids, deep, member_state, minion_pillar, nodes, orch,
                         reactor_idle, rejoin_returns, shadow_pillar, upload_blueprint)
from lab.proc import wait_until

MANAGERS = ("mgr1", "mgr2", "mgr3")


@pytest.fixture(scope="module")
def reactive_pillar(salt_cli):
    pillar = deep(minion_pillar(salt_cli))
    pillar["reactor"] = {"enabled": True}
    return pillar


@pytest.fixture(scope="module")
def reactive(lab, salt_cli, salt_run_cli, pillar_dir, reactive_pillar, event_listener):
    # built with the reactor paused (the session's pillar): the reset's start events run no
    # rejoin, so none is still running, or fails on a host a test kills, when the tests start
    # (test_a_dead_node_is_retired_and_replaced builds with the reactor on)
    since = time.time()
    lab.reset()
    run = orch(salt_run_cli)
    assert run.returncode == 0, run
    upload_blueprint(lab["mgr1"], "keep")
    wait_until(lambda: reactor_idle(event_listener, since), 120, "the reset's rejoin runs to return")
    beacons = {"cloudify_ha": [{"interval": 2}]}
    with shadow_pillar(pillar_dir, reactive_pillar, beacons=beacons):
        assert salt_cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt="*").returncode == 0
        yield lab
    # with the reactor paused again: the next module's hosts start from nothing
    lab.reset()


@pytest.fixture(autouse=True)
def quiet_reactor(reactive, event_listener):
    """Each test ends once the rejoin runs it caused have returned: the next starts quiet."""
    since = time.time()
    yield
    wait_until(lambda: reactor_idle(event_listener, since), 300, "the test's rejoin runs to return")


def own_status_reads(emulator, lab, host):
    """The host's reads of its own /status (the beacon's, when nothing else runs there)."""
    return [e for e in emulator.audit(host) if e["kind"] == "rest" and
            e["path"].endswith("/status") and e["remote"] == lab[host].ip]


def status(salt_run_cli):
    ret = salt_run_cli.run("cloudify_ha.status")
    assert ret.returncode == 0, ret
    data = ret.data if isinstance(ret.data, dict) else {}
    return data.get("data", data)["lab"]


def assert_status_matches_nodes_list(salt_run_cli, lab, via):
    listed = nodes(lab[via])
    seen = status(salt_run_cli)
    assert {row["node"]: row["state"] for row in seen["managers"]} == \
        {name: row["state"] for name, row in listed.items()}
    leader = next(n for n, row in listed.items() if row["state"] == "leader")
    assert seen["active node"].startswith(f"{leader} ")
    assert seen["listed, not in pillar"] == [] and seen["in pillar, not listed"] == []


def installs(emulator, host):
    return [e for e in emulator.audit(host) if e.get("prog") == "cfy_manager" and
            e["argv"][:1] == ["install"]]


def test_a_rebooted_follower_changes_nothing(reactive, emulator, event_listener, salt_run_cli):
    """A reboot, through the 502 window of 4.6's nginx (cloudify-4.6.md section 0.3): the
    window is made longer than its 5 s default so that the reactor's rejoin surely meets it
    (the minion's own start takes about that long)."""
    lab = reactive
    emulator.set_knobs("mgr3", boot_502_seconds=20)
    emulator.clear_audit()
    since = time.time()
    lab.kill("mgr3")
    lab.power_on("mgr3")
    # the minion's start event runs the rejoin orchestration; a repeated event would be
    # coalesced into it (a return without its data). The beacon does not fire: since its
    # minion started, the member has not been healthy yet
    returns = wait_until(lambda: [r for r in rejoin_returns(event_listener, "mgr3", since)
                                  if isinstance(r, dict) and "data" in r], 120,
                         "the reactor's rejoin of mgr3")
    run = returns[0]
    steps = next(iter(run["data"].values()))
    assert run["retcode"] == 0, [(s["__id__"], s["comment"], s.get("changes")) for s in steps.values()
                                 if s["result"] is not True]
    # the module sync may refresh the minion's cache; the reboot lost the host's firewall rules
    # and the rejoin loads them again; nothing else changes, nothing about Cloudify
    changed = {s["__id__"]: s["changes"] for s in steps.values()
               if s["changes"] and not s["__id__"].endswith("-sync")}
    assert list(changed) == ["cloudify_ha-rejoin-mgr3-prepare"], steps
    on_host = changed["cloudify_ha-rejoin-mgr3-prepare"]["ret"]["mgr3"]
    assert [s["__id__"] for s in on_host.values() if s["changes"]] == \
        ["cloudify_ha-firewall-nftables-loaded"], on_host
    assert "cloudify_ha lab " in lab["mgr3"].run(["nft", "list", "table", "inet", "cloudify_ha"]).stdout
    wait_until(lambda: member_state(lab, "mgr3") == "replica", 30, "mgr3 online again")
    assert emulator.mutating() == []
    # the rejoin met the window: mgr3's nginx answered 502 to the formula's reads
    assert [e for e in emulator.audit("mgr3") if e["kind"] == "rest" and e["status"] == 502
            and e["t"] >= since and e["remote"] != "127.0.0.1"], "no 502 was served"
    emulator.set_knobs("mgr3", boot_502_seconds=None)
    assert_status_matches_nodes_list(salt_run_cli, lab, "mgr2")


def test_a_wiped_follower_is_back_in_the_cluster_with_no_human_action(reactive, emulator,
                                                                      salt_run_cli):
    lab = reactive
    emulator.clear_audit()
    start = time.monotonic()
    lab.wipe("mgr2")
    wait_until(lambda: member_state(lab, "mgr2", via="mgr3") == "replica"
               and lab["mgr2"].exists("/etc/cloudify/.install"), 240, "mgr2 to rejoin")
    print(f"\nrejoin of a wiped follower: {time.monotonic() - start:.1f}s from the wipe to online")
    assert len(installs(emulator, "mgr2")) == 1
    # the stale entry was removed through the active node before the join
    assert [e for m in MANAGERS for e in emulator.audit(m)
            if e["kind"] == "rest" and e["method"] == "DELETE" and e["path"].endswith("/mgr2")]
    assert_status_matches_nodes_list(salt_run_cli, lab, "mgr3")


def test_the_old_leader_wiped_rejoins_the_new_leader(reactive, emulator, salt_run_cli):
    lab = reactive
    old = next(n for n, row in nodes(lab["mgr3"]).items() if row["state"] == "leader")
    lab.kill(old)
    survivors = [m for m in MANAGERS if m != old]
    new = wait_until(lambda: next((n for n, row in nodes(lab[survivors[0]]).items()
                                   if row["state"] == "leader" and n != old), None), 20,
                     "a new leader")
    emulator.clear_audit()
    lab.wipe(old)
    wait_until(lambda: member_state(lab, old, via=new) == "replica"
               and lab[old].exists("/etc/cloudify/.install"), 240, f"{old} to rejoin")
    assert nodes(lab[new])[new]["state"] == "leader"
    assert len(installs(emulator, old)) == 1
    # a join, never a non-join install: the cluster's data is still there
    assert blueprint_ids(lab) == ["keep"]
    assert_status_matches_nodes_list(salt_run_cli, lab, new)


def test_events_are_trusted_for_their_sender_only(reactive, salt_cli, emulator, event_listener):
    lab = reactive
    emulator.clear_audit()
    since = time.time()
    # a minion outside the cluster pillar, claiming in its payload to be a manager
    ret = salt_cli.run("event.send", "salt/minion/lb/start", 'data={"id": "mgr2", "node": "mgr2"}',
                       minion_tgt="lb")
    assert ret.returncode == 0, ret
    (run,) = wait_until(lambda: rejoin_returns(event_listener, "lb", since), 60,
                        "the reactor's run for lb")
    # the runner itself ignores it, before any lock or orchestration
    assert (run["node"], run["result"]) == ("lb", True), run
    assert run["comment"].startswith("ignored: 'lb' is not the minion id of a manager"), run
    assert not rejoin_returns(event_listener, "mgr2", since)
    assert [e for m in MANAGERS for e in emulator.audit(m) if e["kind"] == "cli"] == []


def test_the_beacon_reports_a_member_removed_behind_salts_back(reactive, emulator, event_listener):
    lab = reactive
    listed = nodes(lab["mgr2"])
    leader = next(n for n, row in listed.items() if row["state"] == "leader")
    target = next(m for m in MANAGERS if m != leader)
    # the beacon must have seen the member healthy (it fires only on a change from that): two
    # of its reads of the local /status, 2 s apart, in the audit
    emulator.clear_audit()
    wait_until(lambda: len(own_status_reads(emulator, lab, target)) >= 2, 30,
               f"the beacon on {target} to read its /status")
    since = time.time()
    # no reboot, no start event: only the beacon on the target's running minion sees it
    removed = lab[leader].run(["cfy", "cluster", "nodes", "remove", target], check=False)
    assert f"Node {target} was removed successfully!" in removed.stdout, removed
    emulator.clear_audit()
    (run,) = wait_until(lambda: rejoin_returns(event_listener, target, since), 60,
                        f"the beacon's rejoin run for {target}")
    def fired():
        return event_listener.get_events([("master", f"salt/beacon/{target}/cloudify_ha/")],
                                         after_time=since)

    assert [(e.data["state"], e.data["previous"]) for e in fired()] == [("removed", "replica")]
    # the formula never touches a removed host: the run says why and what to do
    steps = next(iter(run["data"].values()))
    assert run["retcode"] != 0
    joined = next(s for s in steps.values() if s["__id__"] == f"cloudify_ha-rejoin-{target}-joined")
    assert joined["result"] is False
    assert "removed from the cluster and can never rejoin" in str(joined["changes"]), joined
    assert emulator.mutating() == []
    # once it has been checked a few more times (the rejoin took longer than 2 intervals): still
    # one event, not one per check
    assert len(fired()) == 1
    # rebuilt, it joins by itself (its minion's start event)
    lab.wipe(target)
    wait_until(lambda: member_state(lab, target, via=leader) == "replica", 240, f"{target} to rejoin")


def test_a_rejoin_in_maintenance_mode_is_logged_and_skipped(reactive, salt_cli, salt_master,
                                                          emulator, event_listener):
    """4.6's maintenance mode on the active node (cloudify-4.6-day2.md section 5.1): a minion's
    start event reaches the reactor, whose rejoin logs that the cluster is in maintenance mode
    and skips, changing nothing."""
    lab = reactive
    leader = next(n for n, row in nodes(lab["mgr2"]).items() if row["state"] == "leader")
    target = next(m for m in MANAGERS if m != leader)
    assert lab[leader].run(["cfy", "maintenance-mode", "activate"]).returncode == 0
    try:
        emulator.clear_audit()
        since = time.time()
        ret = salt_cli.run("event.send", f"salt/minion/{target}/start", minion_tgt=target)
        assert ret.returncode == 0, ret
        (run,) = wait_until(lambda: rejoin_returns(event_listener, target, since), 120,
                            f"the reactor's rejoin of {target}")
        refusal = (f"cluster lab: {leader} ({lab[leader].ip}) is in maintenance mode "
                   f"(activated); the rejoin of {target} did not run")
        assert (run["node"], run["result"]) == (target, True), run
        assert run["comment"].startswith(f"skipped: {refusal}"), run
        assert "'cfy maintenance-mode deactivate'" in run["comment"], run
        log = Path(salt_master.config["log_file"]).read_text(errors="replace")
        assert f"cloudify_ha rejoin of {target} skipped: {refusal}" in log
        assert emulator.mutating() == []
    finally:
        assert lab[leader].run(["cfy", "maintenance-mode", "deactivate"]).returncode == 0


def test_five_events_for_one_node_make_one_join(reactive, salt_cli, emulator, event_listener):
    lab = reactive
    emulator.clear_audit()
    lab.wipe("mgr3", power_on=False)
    since = time.time()
    lab.power_on("mgr3")  # its minion's start event is the first
    for _ in range(4):
        assert salt_cli.run("event.send", "salt/minion/mgr3/start", minion_tgt="mgr3").returncode == 0
    wait_until(lambda: len(rejoin_returns(event_listener, "mgr3", since)) >= 5, 300,
               "five rejoin runs for mgr3 to return")
    wait_until(lambda: member_state(lab, "mgr3") == "replica", 30, "mgr3 online")
    assert len(installs(emulator, "mgr3")) == 1


def test_a_dead_node_is_retired_and_replaced(reactive, salt_run_cli, salt_cli, pillar_dir,
                                             reactive_pillar, emulator):
    lab = reactive
    lab.kill("mgr3")
    wait_until(lambda: member_state(lab, "mgr3", via="mgr2") == "offline", 20, "mgr3 offline")
    ret = salt_run_cli.run("state.orch", "cloudify_ha.orch.retire",
                           'pillar={"cluster": "lab", "node": "mgr3"}')
    assert ret.returncode == 0, ret
    assert "mgr3" not in nodes(lab["mgr2"])
    # the replacement: the host rebuilt under a new node name, in pillar, joined by the
    # normal orchestration
    replaced = deep(reactive_pillar)
    next(m for m in replaced["clusters"]["lab"]["managers"] if m["name"] == "mgr3")["name"] = "mgr3b"
    with shadow_pillar(pillar_dir, replaced, beacons={"cloudify_ha": [{"interval": 2}]}):
        lab.wipe("mgr3")  # its start event may join it as mgr3b before the orchestration does
        run = orch(salt_run_cli)
        assert run.returncode == 0, run
        listed = nodes(lab["mgr2"])
        assert "mgr3b" in listed and "mgr3" not in listed
        assert listed["mgr3b"]["state"] == "replica"
        seen = status(salt_run_cli)
        assert {row["node"]: row["state"] for row in seen["managers"]} == \
            {name: row["state"] for name, row in listed.items()}
