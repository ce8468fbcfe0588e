"""The formula on a highly available Salt: two salt-masters (Salt's multi-master, the second
with the first one's key pair, the same file roots, pillar and reactor), every minion connected
to both. Each master sees every minion start and beacon event, so both reactors react; either
master may run the orchestration, also both at once, also with the other one dead. What keeps
one install and one join per host is on the hosts, not on a master's disk: each manager's
cloudify_ha states take a lock on the minion (Salt's own state queue lets a job with an older
jid that arrives second run beside the first) and re-read the host and the ACTIVE node's view
under it.

The session's master is `master` (the gateway address); this module adds `master2`."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from lab.fixtures import formula_master
from lab.formula import (member_state, minion_pillar, nodes, orch, reactor_idle,
                         rejoin_runs, shadow_pillar, with_manager_secrets)
from lab.proc import wait_until
from lab.saltlab import kill_master, second_master, use_masters, witnessed_by

MANAGERS = ("mgr1", "mgr2", "mgr3")
MASTERS = ("master", "master2")
MEMBER_STEPS = ("cloudify_ha-orch-lab-leader-mgr1", "cloudify_ha-orch-lab-join-mgr2",
                "cloudify_ha-orch-lab-join-mgr3")


def answering(cli, names):
    """The minions among `names` that answer a test.ping published by `cli`'s master."""
    ret = cli.run("-t", "5", "-L", "test.ping", minion_tgt=",".join(names), _timeout=30)
    data = ret.data if isinstance(ret.data, dict) else {}
    return {name for name, answer in data.items() if answer is True}


def reached(cli, names, what):
    wait_until(lambda: answering(cli, names) == set(names), 120, what)


@pytest.fixture(scope="module")
def master2(salt_factories, salt_master, lab, lab_minions, salt_cli):
    """A second master, and every lab minion connected to both; afterwards one master again."""
    factory = second_master(salt_factories, salt_master, lab)
    names = list(lab.minions)
    with formula_master(factory):
        try:
            use_masters(lab, names, [lab.network.gateway, factory.config["interface"]])
            reached(salt_cli, names, "every minion through the first master")
            reached(factory.salt_cli(timeout=120), names, "every minion through the second")
            yield factory
        finally:
            if not salt_master.is_running():
                salt_master.start()
            use_masters(lab, names, [lab.network.gateway], witness="master")
    reached(salt_cli, names, "every minion through the session's master alone")


def shown(run):
    """An orchestration run in full: every step's result and comment, and what failed on which
    minion (a failure message pytest does not shorten)."""
    lines = [f"rc={run.returncode}"]
    for sid, step in sorted(run.steps.items(), key=lambda i: i[1].get("__run_num__", 0)):
        lines.append(f"  {sid}: {step['result']} {step.get('comment')}")
        for minion, states in run.minion_states(sid).items():
            for state in (states.values() if isinstance(states, dict) else [states]):
                if not isinstance(state, dict) or state.get("result") is not True:
                    lines.append(f"    {minion}: {str(state)[:800]}")
    if not run.steps:
        lines.append(run.text[-3000:])
    return "\n".join(lines)


def installs(emulator, host):
    return [e for e in emulator.audit(host) if e.get("prog") == "cfy_manager"
            and e["argv"][:1] == ["install"]]


def test_both_masters_orchestrate_at_once_and_build_one_cluster(fresh_lab, emulator, salt_master,
                                                                 master2):
    """`state.orch cloudify_ha.orch` on both masters at the same moment: one install per host,
    every node joined once, both runs end without an error, and each member step was changed by
    exactly one of them (the other found it done)."""
    lab = fresh_lab
    clis = [salt_master.salt_run_cli(timeout=900), master2.salt_run_cli(timeout=900)]
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(orch, clis))
    assert [r.returncode for r in runs] == [0, 0], "\n".join(map(shown, runs))
    assert {m: len(installs(emulator, m)) for m in MANAGERS} == {m: 1 for m in MANAGERS}
    starts = [e for e in emulator.audit("mgr1") if e["kind"] == "cli"
              and e["argv"][:2] == ["cluster", "start"]]
    assert len(starts) == 1, starts
    listed = nodes(lab["mgr2"])
    assert sorted(n["state"] for n in listed.values()) == ["leader", "replica", "replica"]
    for step in MEMBER_STEPS:
        assert runs[0][step]["__jid__"] != runs[1][step]["__jid__"], step
        assert sum(1 for r in runs if step in r.changed()) == 1, (step, runs)


def test_ten_start_events_seen_by_both_reactors_make_one_join(lab, emulator, salt_cli,
                                                               salt_master, master2, pillar_dir,
                                                               event_listener):
    """On the cluster the first test built: a wiped manager comes back and its start is
    announced ten times, each to both masters: both reactors run rejoins, and the host is
    installed and joined once. (A re-run from the second master: the last test.)"""
    emulator.clear_audit()
    pillar = with_manager_secrets(minion_pillar(salt_cli, minion="cli"), lab)
    pillar["reactor"] = {"enabled": True}
    clis = {"master": salt_cli, "master2": master2.salt_cli(timeout=120)}
    with shadow_pillar(pillar_dir, pillar):
        for cli in clis.values():
            assert cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt="*").returncode == 0
        lab.wipe("mgr3", power_on=False)
        since = time.time()
        lab.power_on("mgr3")  # one start event to each master
        for _ in range(9):
            sent = salt_cli.run("event.send", "salt/minion/mgr3/start", minion_tgt="mgr3")
            assert sent.returncode == 0, sent
        wait_until(lambda: member_state(lab, "mgr3") == "replica", 300, "mgr3 back as a replica")
        wait_until(lambda: reactor_idle(event_listener, since, MASTERS), 300,
                   "every rejoin run of both masters to return")
        runs = {m: [r for r in rejoin_runs(event_listener, since, (m,)) if r[0] == "mgr3"]
                for m in MASTERS}
    # the session master saw all ten (the minion's start and nine sent through it); the
    # second one its own start event at least: a minion sends its events to every master
    assert len(runs["master"]) == 10 and runs["master2"], runs
    assert len(installs(emulator, "mgr3")) == 1
    assert all(ret.get("retcode", 0) == 0 for _, _, ret in runs["master"] + runs["master2"]
               if isinstance(ret, dict)), runs


def test_two_state_runs_beside_each_other_on_one_host_install_once(fresh_lab, emulator,
                                                                     salt_master, master2):
    """What Salt's state queue does not prevent (a job with an older jid reaching the minion
    second runs beside the first), forced with concurrent=True from both masters: the
    formula's host lock makes the second run wait, read the host again and find it done."""
    lab = fresh_lab
    emulator.install_package("mgr1")  # Salt's pkg states take no lock of ours
    clis = [salt_master.salt_cli(timeout=600), master2.salt_cli(timeout=600)]

    def leader(cli):
        return cli.run("state.apply", "cloudify_ha.cluster.leader", "concurrent=True",
                       minion_tgt="mgr1", _timeout=600)

    with ThreadPoolExecutor(2) as pool:
        rets = list(pool.map(leader, clis))
    chunks = []
    for ret in rets:
        assert ret.returncode == 0, ret
        chunks.append({c["__id__"]: c for c in ret.data.values()})
    assert len(installs(emulator, "mgr1")) == 1
    for sid in ("cloudify_ha-manager-installed", "cloudify_ha-cluster-leader-started"):
        assert sum(1 for c in chunks if c[sid]["changes"]) == 1, (sid, chunks)
    assert member_state(lab, "mgr1", via="mgr1") == "leader"


def test_with_one_master_dead_the_other_builds_from_empty(lab, emulator, salt_master, master2):
    """The session's master dies (a power cut); the second one builds a cluster from empty
    hosts, and a re-run from it changes nothing."""
    kill_master(salt_master)
    for minion in lab.minions.values():
        witnessed_by(minion, "master2")
    try:
        lab.reset()
        run = orch(master2.salt_run_cli(timeout=900))
        assert run.returncode == 0, run
        assert {m: len(installs(emulator, m)) for m in MANAGERS} == {m: 1 for m in MANAGERS}
        assert sorted(n["state"] for n in nodes(lab["mgr2"]).values()) == [
            "leader", "replica", "replica"]
        emulator.clear_audit()
        again = orch(master2.salt_run_cli(timeout=900))
        assert again.returncode == 0 and again.changed() == set(), again
        assert emulator.mutating() == []
    finally:
        for minion in lab.minions.values():
            witnessed_by(minion, "master")
        salt_master.start()
