"""`salt-run state.orch cloudify_ha.orch` in the lab: build, re-run, dry run, failures, failover.

One lab per session; tests that need empty hosts start from `fresh_lab` (every host but the DB
wiped, the external database emptied). Tests that build on a cluster ask for `built_cluster`,
which builds one only when the lab does not hold a healthy one already.
"""

import base64
import copy
import json
import shlex
import subprocess
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import pytest

from lab.formula import (OrchRun, active_profile, blueprint_ids, cluster_healthy, demo_hints,
                         encodings, files_containing, http_get, jobs_published, lb_view,
                         leaky_logs, member_state, minion_pillar, nodes, orch, profile_entries,
                         shadow_pillar, sizes, upload_blueprint)
from lab.hosts import reach
from lab.proc import wait_until

MANAGERS = ("mgr1", "mgr2", "mgr3")
INSTALL_LOG, CLI_LOG = "/var/log/cloudify/manager/cfy_manager.log", "/root/.cloudify/logs/cli.log"
EVERYONE = sorted(MANAGERS + ("cli",))
STEPS = ["cloudify_ha-orch-validate", "cloudify_ha-orch-sync", "cloudify_ha-orch-lab-cli",
         "cloudify_ha-orch-lab-prepare",
         "cloudify_ha-orch-lab-leader-mgr1", "cloudify_ha-orch-lab-join-mgr2",
         "cloudify_ha-orch-lab-join-mgr3", "cloudify_ha-orch-lab-profiles"]


def healthy(lab):
    return cluster_healthy(lab, MANAGERS)


@pytest.fixture
def built_cluster(lab, emulator, salt_run_cli):
    """A healthy 3-manager cluster built by the formula (built now if the lab has none)."""
    if not healthy(lab):
        lab.reset()
        run = orch(salt_run_cli)
        assert run.returncode == 0, run
    emulator.clear_audit()
    return lab


def test_build_from_empty(lab, emulator, salt_cli, salt_run_cli, event_listener):
    # new hosts, new minions: none of them holds the formula's modules yet
    lab.reset(new_minions=True)
    since = time.time()
    run = orch(salt_run_cli)
    assert run.returncode == 0, run
    assert list(run.steps) == STEPS or sorted(run.steps) == sorted(STEPS), run
    assert all(result is True for result in run.results().values()), run

    # the render pinged them (a minion answers a function it lacks only after loading every
    # module it has), then the sync gave each the modules and the grain that says so
    asked = jobs_published(event_listener, since)
    assert ("test.ping", EVERYONE) in asked, asked
    assert [fun for fun, _ in asked if fun == "cloudify_ha.orch_facts"] == [], asked
    assert sorted(run.minion_states("cloudify_ha-orch-sync")) == EVERYONE, run
    expected = salt_run_cli.run("salt.cmd", "cloudify_ha_master.formula_modules").data
    assert "grains/cloudify_ha.py" in expected
    for minion in EVERYONE:
        assert salt_cli.run("grains.get", "cloudify_ha_modules", minion_tgt=minion).data == \
            expected, minion

    listed = nodes(lab["mgr3"])
    assert sorted(listed) == list(MANAGERS)
    assert [n for n in listed.values() if n["state"] == "leader"] == [listed["mgr1"]]
    assert sorted(n["state"] for n in listed.values()) == ["leader", "replica", "replica"]
    assert {n["database"] for n in listed.values()} == {"REMOTE"}
    assert {n["host_ip"] for n in listed.values()} == {lab[m].ip for m in MANAGERS}

    # profiles as 4.6 keeps them: every node by name at its PUBLIC address (a second address
    # on each lab manager), the start node as `localhost` in its own; a joiner's profile is the
    # one its installer made, named after the leader it joined through (no `localhost` there),
    # active, and holding the credentials, so an admin's `cfy` works on every manager
    every = {m: lab[m].public_ip for m in MANAGERS}
    for name in MANAGERS:
        own = "localhost" if name == "mgr1" else lab["mgr1"].ip
        assert active_profile(lab[name]) == own, name
        assert profile_entries(lab[name], own) == dict(
            every, **({"mgr1": "localhost"} if name == "mgr1" else {})), name
        assert (name == "mgr1") == lab[name].exists("/root/.cloudify/profiles/localhost"), name
        assert lab[name].run(["stat", "-c", "%a", f"/root/.cloudify/profiles/{own}/context"]
                             ).stdout.strip() == "600"
        assert lab[name].run(["stat", "-c", "%a", "/etc/cloudify/config.yaml"]).stdout.strip() == "600"
        # the real cfy logged the installer's `profiles set -p <password>` here, 0644
        assert lab[name].run(["stat", "-c", "%a", "/root/.cloudify/logs/cli.log"]
                             ).stdout.strip() == "600"
    assert profile_entries(lab["cli"], "lab") == every

    # the pillar's license, uploaded once through the active node (never on a command line):
    # the real cfy reads it back from every manager (one database)
    leader_states = run.minion_states("cloudify_ha-orch-lab-leader-mgr1")["mgr1"]
    uploaded = next(v for k, v in leader_states.items() if "cloudify_ha-cluster-license" in k)
    assert uploaded["changes"]["license"]["new"]["customer_id"] == "CloudifyLab", uploaded
    assert "signature" not in repr(uploaded) and "BEGIN" not in repr(uploaded), uploaded
    for name in MANAGERS:
        listed = lab[name].run(["cfy", "license", "list", "--json"]).stdout
        assert '"customer_id": "CloudifyLab"' in listed, (name, listed)

    # exactly one non-join install (the leader's) and one join per follower
    installs = {m: [e for e in emulator.audit(m) if e["kind"] == "cli" and e["prog"] == "cfy_manager"]
                for m in MANAGERS}
    assert {m: len(v) for m, v in installs.items()} == {"mgr1": 1, "mgr2": 1, "mgr3": 1}
    assert all(e["exit"] == 0 for v in installs.values() for e in v)


def test_rerun_changes_nothing_and_runs_nothing_mutating(built_cluster, emulator, salt_run_cli,
                                                        event_listener):
    since = time.time()
    run = orch(salt_run_cli)
    assert run.returncode == 0, run
    assert all(result is True for result in run.results().values()), run
    assert run.changed() == set(), run
    assert emulator.mutating() == []
    # the master's grains cache knows every minion holds the modules: one question to all
    asked = jobs_published(event_listener, since)
    assert ("cloudify_ha.orch_facts", EVERYONE) in asked, asked
    assert [fun for fun, _ in asked if fun == "test.ping"] == [], asked


def test_profiles_list_each_node_at_the_pillars_address_not_the_clusters(
        built_cluster, salt_cli, salt_run_cli, pillar_dir):
    """4.6's update-profile takes a node's address from the cluster's answer (plain HTTP) and
    keeps it for good; the formula writes the pillar's public_ip by node name. Here mgr3's
    public address moves in pillar (the cluster still reports the one its install was given):
    every profile follows the pillar, and back."""
    lab = built_cluster
    pillar = minion_pillar(salt_cli)
    (mgr3,) = [m for m in pillar["clusters"]["lab"]["managers"] if m["name"] == "mgr3"]
    mgr3["public_ip"] = lab["mgr3"].ip  # its cluster address: reachable, and not the reported one
    every = {m: lab[m].public_ip for m in MANAGERS}
    with shadow_pillar(pillar_dir, pillar):
        run = orch(salt_run_cli)
        assert run.returncode == 0, run
        assert run.changed() == {"cloudify_ha-orch-lab-profiles"}, run
        reported = salt_cli.run("cloudify_ha.cluster_nodes", minion_tgt="mgr2").data
        assert {n["name"]: n["public_ip"] for n in reported} == every
        moved = dict(every, mgr3=lab["mgr3"].ip)
        assert profile_entries(lab["cli"], "lab") == moved
        assert profile_entries(lab["mgr1"], "localhost") == dict(moved, mgr1="localhost")
        # and the real cfy walks it
        assert sorted(nodes(lab["cli"], credentials=("admin", lab.passwords["admin"]))) == \
            list(MANAGERS)
    run = orch(salt_run_cli)
    assert run.returncode == 0 and run.changed() == {"cloudify_ha-orch-lab-profiles"}, run
    assert profile_entries(lab["cli"], "lab") == every


def test_secrets_stay_off_argv_job_cache_and_logs(built_cluster, emulator, salt_run_cli, lab):
    lab.reset()
    # what earlier tests wrote does not count (the emulator's tests type the seed's commands,
    # passwords on argv, through Salt on purpose)
    before = sizes(lab.dir / "sf")
    run = orch(salt_run_cli)
    assert run.returncode == 0, run
    entries = [e for m in MANAGERS + ("cli",) for e in emulator.audit(m) if e["kind"] == "cli"]
    # the formula's commands; 4.6's installer runs `cfy profiles set -p <password>` itself
    # (caller cfy_manager): that one is Cloudify's, which is why cli.log is made 0600
    formula = [e for e in entries if e.get("caller") != "cfy_manager"]
    assert formula and not [e for e in formula if e["secret_on_argv"]]
    secrets = list(lab.passwords.values())
    sf = lab.dir / "sf"
    # the master's minion data cache holds the pillar by design (as the pillar files do);
    # jobs, events and logs must not
    assert files_containing(sf, secrets, skip=("/minions/", "/pillar"), after=before) == []
    assert not [s for s in secrets if s in run.text]
    assert_logs_closed(lab, MANAGERS)
    # 4.6 did leak (the emulator logs what 4.6 logs): the lines are there, their secrets not
    assert f"cloudify_db cloudify ****** {lab['db'].ip}']" in lab["mgr1"].read(INSTALL_LOG)
    for name in MANAGERS:
        assert "Setting password to `******`" in lab[name].read(CLI_LOG), name


def assert_logs_closed(lab, names):
    """The logs 4.6 writes secrets into (cloudify-4.6.md section 0.4) are 0600 and hold no
    secret of the lab in any encoding (lab.formula.encodings)."""
    users = {"admin": "admin", "db": "cloudify", "postgres": "postgres"}
    needles = {form for key, secret in lab.passwords.items()
               for form in encodings(secret, users[key])}
    for name in names:
        logs = leaky_logs(lab[name])
        assert sorted(logs) == sorted([INSTALL_LOG, CLI_LOG]), (name, sorted(logs))
        for path, (mode, text) in logs.items():
            assert mode == "600", (name, path)
            assert not [n for n in needles if n in text], (name, path)


def test_the_demos_closing_hints_work_as_printed(built_cluster, salt_run_cli, lab):
    """`make demo` ends by printing these: each runs, as printed, from a root shell."""
    for label, argv in demo_hints(lab, salt_run_cli.config_dir):
        proc = subprocess.run(shlex.split(shlex.join(argv)), capture_output=True, text=True,
                              timeout=120, check=False)
        assert proc.returncode == 0, (label, argv, proc.stdout[-500:], proc.stderr[-500:])
        assert "mgr2" in proc.stdout, (label, proc.stdout[-500:])
        assert lab.passwords["admin"] not in shlex.join(argv)


def strings_in(data):
    """Every string value in nested data, stripped."""
    if isinstance(data, dict):
        return {s for v in data.values() for s in strings_in(v)}
    if isinstance(data, list):
        return {s for v in data for s in strings_in(v)}
    return {data.strip()} if isinstance(data, str) else set()


def test_each_host_holds_only_the_secrets_its_role_uses(built_cluster, salt_cli, salt_run_cli,
                                                        salt_master, lab):
    """The lab's pillar gives each host only its role's secrets (test/pillar/cloudify_ha.sls)
    and the cluster was built with it: a manager holds them all, the CLI host the admin
    password only, the master (its own minion, which runs the orchestration) none."""
    _cert, key = lab.client_cert("managers")
    managers_only = {lab.passwords["db"], lab.passwords["postgres"],
                     lab.ca.key.read_text().strip(), key.read_text().strip()}
    admin = lab.passwords["admin"]
    manager = strings_in(minion_pillar(salt_cli, minion="mgr2"))
    cli = strings_in(minion_pillar(salt_cli, minion="cli"))
    # the pillar of the master's own minion, which runs the orchestrations (its id: the master's
    # with _master), as the master's pillar system renders it
    ret = salt_run_cli.run("pillar.show_pillar", f"{salt_master.id}_master")
    assert ret.returncode == 0, ret
    master = strings_in(ret.data)
    assert managers_only | {admin} <= manager
    assert (admin in cli, managers_only & cli) == (True, set())
    assert (managers_only | {admin}) & master == set()
    assert "lab" in json.dumps(ret.data)  # the master still has the cluster's public settings


def test_dry_run_on_empty_hosts_reports_and_changes_nothing(fresh_lab, emulator, salt_run_cli):
    lab = fresh_lab
    run = orch(salt_run_cli, test=True)
    assert run.returncode == 0, run
    for step in ("cloudify_ha-orch-lab-prepare", "cloudify_ha-orch-lab-leader-mgr1",
                 "cloudify_ha-orch-lab-join-mgr2", "cloudify_ha-orch-lab-join-mgr3"):
        assert run[step]["result"] is None, (step, run)
        assert run[step]["changes"], (step, run)
    leader = run.minion_states("cloudify_ha-orch-lab-leader-mgr1")["mgr1"]
    installed = next(c for k, c in leader.items() if k.startswith("cloudify_ha_|-cloudify_ha-manager"))
    assert installed["changes"] == {"installed": {"old": "package_installed", "new": "installed"}}
    # each manager's own profile named as the real run keeps it (cloudify-4.6.md section 0.1):
    # localhost on the start node, the leader's address on a joiner
    profiles = run.minion_states("cloudify_ha-orch-lab-profiles")
    assert {m: next(c["name"] for k, c in profiles[m].items() if "profile-local" in k)
            for m in MANAGERS} == {"mgr1": "localhost", "mgr2": lab["mgr1"].ip,
                                   "mgr3": lab["mgr1"].ip}, profiles
    for name in MANAGERS:
        assert not lab[name].exists("/etc/cloudify/.install")
        assert lab[name].run(["dpkg", "-s", "cloudify-manager-install"], check=False).returncode != 0
    assert emulator.mutating() == []
    assert lab.db.query("SELECT count(*) FROM pg_database WHERE datname = 'cloudify_db'"
                        ).stdout.strip() == "0"


def test_a_failed_leader_install_leaves_its_logs_closed_too(fresh_lab, emulator, salt_run_cli):
    """The leader's install fails at its last step (sanity), after 4.6 wrote the database
    password into cfy_manager.log (its restservice step created the databases) and cfy the
    admin password into cli.log (the cli step): both logs are 0600 and the secrets are out of
    them, the rest of each log kept."""
    lab = fresh_lab
    emulator.install_package("mgr1")
    emulator.set_knobs("mgr1", fail_at="sanity")
    run = orch(salt_run_cli)
    assert run.returncode != 0, run
    assert "Failed to install sanity" in _step_text(run, "cloudify_ha-orch-lab-leader-mgr1"), run
    assert_logs_closed(lab, ["mgr1"])
    log = lab["mgr1"].read(INSTALL_LOG)
    assert f"cloudify_db cloudify ****** {lab['db'].ip}']" in log
    assert " - [SANITY] - ERROR - Failed to install sanity" in log
    assert "Setting password to `******`" in lab["mgr1"].read(CLI_LOG)
    emulator.set_knobs("mgr1", fail_at=None)


def _step_text(run, step):
    return f"{run[step].get('comment')} {run.minion_states(step)}"


def test_joins_failing_at_each_installer_step_converge_with_no_data_lost(fresh_lab, emulator,
                                                                        salt_run_cli):
    """A join that fails at its nginx step (nothing runs yet), at its restservice step (nginx
    runs from the nginx step on and answers 502: cloudify-4.6.md section 0.4), after it (at
    stage) and at the cluster step (4.6 leaves services RUNNING without .install: section 0.2);
    each run stops at the failed follower, the next picks up, a half-installed follower (502 or
    a standalone manager) is torn down on purpose (cfy_manager remove -f) and joined again.
    Then the leader dies while the
    last follower's join runs (it fails at its cluster step, half-installed), and the re-run
    joins it through the survivor. The leader and the cluster's data (blueprint rows) are
    never touched."""
    lab = fresh_lab
    join2, join3 = "cloudify_ha-orch-lab-join-mgr2", "cloudify_ha-orch-lab-join-mgr3"
    emulator.install_package("mgr2")
    removals = []
    # 4.6's order: ... nginx, postgresql_client, rabbitmq, restservice, stage, ..., cluster, cli
    for step, payload, port in (("nginx", False, "refused"), ("restservice", False, "open"),
                                ("stage", True, "open"), ("cluster", True, "open")):
        emulator.set_knobs("mgr2", fail_at=step)
        run = orch(salt_run_cli)
        assert run.returncode != 0, run
        assert run["cloudify_ha-orch-lab-leader-mgr1"]["result"] is True, run
        assert run[join2]["result"] is False, run
        assert f"Failed to install {step}" in _step_text(run, join2), (step, run)
        assert run[join3]["result"] is False and "requisite" in run[join3]["comment"].lower()
        assert not lab["mgr2"].exists("/etc/cloudify/.install")
        # the RPMs' files (agent packages) come with the restservice step, before any join
        assert lab["mgr2"].exists("/opt/manager/resources/packages/agents/"
                                  "centos-core-agent.tar.gz") is payload, step
        # its nginx answers (502 before the restservice step, then the services left running)
        # or nothing listens
        assert reach(lab["mgr2"], lab["mgr2"], 80) == port, step
        removals.append(sum(1 for e in emulator.audit("mgr2")
                            if e.get("prog") == "cfy_manager" and e["argv"][:1] == ["remove"]))
        if step == "nginx":  # the cluster's data, on the leader alone so far
            upload_blueprint(lab["mgr1"], "keep")
    # torn down before the attempts after restservice's (nginx's 502) and stage's (services)
    assert removals == [0, 0, 1, 2], removals
    assert [e for e in emulator.audit("mgr3") if e["kind"] == "cli"] == []
    assert sorted(nodes(lab["mgr1"])) == ["mgr1"]

    # mgr2 joins; the leader dies while mgr3's join is at its restservice step (2 s a step)
    emulator.set_knobs("mgr2", fail_at=None)
    emulator.set_knobs("mgr3", install_seconds=18)
    try:
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(orch, salt_run_cli)
            wait_until(lambda: "Installing restservice" in (
                lab["mgr3"].read("/var/log/cloudify/manager/cfy_manager.log") or ""), 600,
                "mgr3's join at its restservice step")
            lab.kill("mgr1")
            run = running.result()
        assert run.returncode != 0, run
        joined = _joined_state(run, join2, "mgr2")
        assert joined["result"] is True and "removed_failed_install" in joined["changes"], joined
        assert joined["comment"].endswith("(after tearing down its failed install)"), joined
        assert run[join3]["result"] is False, run
        assert "Failed to install" not in _step_text(run, join3)  # no knob: the leader's death
        assert not lab["mgr3"].exists("/etc/cloudify/.install")
        assert reach(lab["mgr3"], lab["mgr3"], 80) == "open"  # left running, half-installed

        # mgr2, alone of the old two, is active (4.6's active minority mode): mgr3 is torn
        # down and joins through it; the dead leader is only checked
        emulator.set_knobs("mgr3", install_seconds=None)
        run = orch(salt_run_cli)
        assert run.returncode == 0, run
        assert "removed_failed_install" in _joined_state(run, join3, "mgr3")["changes"], run
        listed = nodes(lab["mgr2"])
        assert {n: listed[n]["state"] for n in MANAGERS} == {
            "mgr1": "offline", "mgr2": "leader", "mgr3": "replica"}, listed
    finally:
        lab.power_on("mgr1")
    assert blueprint_ids(lab) == ["keep"]
    # the leader was never reinstalled: its data survived every failed join
    assert len([e for e in emulator.audit("mgr1") if e.get("prog") == "cfy_manager"]) == 1
    assert sum(1 for e in emulator.audit("mgr2") if e.get("prog") == "cfy_manager"
               and e["argv"][:1] == ["remove"]) == 3
    wait_until(lambda: member_state(lab, "mgr1") == "replica", 60, "mgr1 back as a replica")
    # the old leader's reboot lost its firewall rules: a run loads them again, joins nothing
    emulator.clear_audit()
    run = orch(salt_run_cli)
    assert run.returncode == 0, run
    assert not [e for e in emulator.mutating() if e.get("prog") == "cfy_manager"], run


def _joined_state(run, step, minion):
    (joined,) = [c for k, c in run.minion_states(step)[minion].items()
                 if k.startswith("cloudify_ha_|-cloudify_ha-cluster-follower-joined")]
    return joined


def test_rerun_after_the_leader_dies_uses_the_new_active_node(built_cluster, emulator,
                                                              salt_run_cli):
    lab = built_cluster
    lab.kill("mgr1")
    try:
        wait_until(lambda: any(n["state"] == "leader" and n["name"] != "mgr1"
                               for n in nodes(lab["mgr2"]).values()), 20, "a new leader")
        # the profiles the formula keeps let cfy fail over: on every survivor and the CLI host
        wait_until(lambda: nodes(lab["mgr3"])["mgr1"]["state"] == "offline", 20, "mgr1 offline")
        assert nodes(lab["cli"], ("admin", lab.passwords["admin"]))["mgr1"]["state"] == "offline"
        emulator.clear_audit()
        run = orch(salt_run_cli)
        assert run.returncode == 0, run
        assert all(result is True for result in run.results().values()), run
        # the dead leader's step was a read-only check run on a live manager
        step = run["cloudify_ha-orch-lab-leader-mgr1"]
        assert step["comment"].endswith("No changes made to mgr2."), run
        job = salt_run_cli.run("jobs.lookup_jid", step["__jid__"])
        ran = {c["__id__"]: c for c in job.data["mgr2"].values()}
        assert sorted(ran) == ["cloudify_ha-cluster-down-mgr1-listed", "cloudify_ha-lock-run-locked",
                               "cloudify_ha-lock-run-unlocked"], ran
        check = ran["cloudify_ha-cluster-down-mgr1-listed"]
        assert check["result"] is True
        assert "mgr1: its minion does not answer; the cluster lists it (offline" in check["comment"]
        assert emulator.mutating() == []
    finally:
        lab.power_on("mgr1")
    wait_until(lambda: nodes(lab["mgr2"])["mgr1"]["state"] == "replica", 30,
               "mgr1 back as a replica")


def test_a_wiped_follower_rejoins_at_4_6_liveness_timing(built_cluster, emulator, salt_run_cli):
    """4.6's liveness at its defaults (the lab's package turns it down for speed:
    test/lab/fixtures.py LAB_KNOBS): a heartbeat every 15 s and a node offline only once its
    check's TTL (30 s) ran out, so a dead node is still listed online for a while
    (cloudify-4.6.md section 0.3). A host wiped and rejoined in that window: the join waits
    (waits:offline) for its old entry to go offline, replaces it, and the node is back."""
    lab = built_cluster
    timing = {"heartbeat_seconds": 15, "offline_after_seconds": 30}
    for name in MANAGERS:
        emulator.set_knobs(name, **timing)
    try:
        lab.wipe("mgr3", power_on=False)
        dead = time.monotonic()
        states = []  # polled for 8 s: a dead node is not offline within seconds
        while time.monotonic() - dead < 8:
            states.append(member_state(lab, "mgr3", via="mgr2"))
        assert set(states) == {"replica"}, states
        lab.power_on("mgr3")  # a reinstalled OS: no manager, the knobs gone with the wipe
        emulator.set_knobs("mgr3", **timing)
        run = OrchRun(salt_run_cli.run("state.orch", "cloudify_ha.orch.rejoin",
                                       "pillar=" + json.dumps({"node": "mgr3"}), _timeout=900))
        assert run.returncode == 0, run
        on_host = run.minion_states("cloudify_ha-rejoin-mgr3-joined")["mgr3"]
        (joined,) = [c for k, c in on_host.items() if k.endswith("-joined")]
        assert "removed_stale" in joined["changes"], joined
        wait_until(lambda: member_state(lab, "mgr3") == "replica", 60, "mgr3 online again")
    finally:
        for name in MANAGERS:
            emulator.set_knobs(name, heartbeat_seconds=None, offline_after_seconds=None)


CLUSTER_PORTS = [(8300, "tcp"), (8301, "tcp"), (8301, "udp"), (8500, "tcp"), (22000, "tcp")]


def _status(lab, name):
    return http_get(lab[name], f"http://{lab[name].ip}/api/v3.1/status", "admin",
                    lab.passwords["admin"])[0]


def test_a_partition_with_two_active_nodes_changes_nothing(built_cluster, emulator,
                                                            salt_run_cli):
    """4.6's active minority mode (cloudify-4.6.md section 0.3): a replica cut off from the
    cluster's ports becomes active on its own while the majority keeps its active node, so two
    nodes answer 200 on /status. The orchestration changes nothing and names both; once the
    network heals one active node is left and a re-run changes nothing."""
    lab = built_cluster
    listed = nodes(lab["mgr2"])
    cut = next(n for n in MANAGERS if listed[n]["state"] == "replica")
    leader = next(n for n in MANAGERS if listed[n]["state"] == "leader")
    # no probe from the bridge: the formula's firewall already drops the bridge's connections
    try:
        for port, proto in CLUSTER_PORTS:
            lab[cut].block_port(port, proto, probe=False)
        wait_until(lambda: _status(lab, cut) == 200, 30, f"{cut} active on its own")
        assert _status(lab, leader) == 200
        emulator.clear_audit()
        run = orch(salt_run_cli)
        assert run.returncode != 0, run
        text = json.dumps(run.steps)
        assert "split brain in cluster 'lab'" in text, run
        assert all(f"{n} ({lab[n].ip})" in text for n in (leader, cut)), run
        assert emulator.mutating() == []
    finally:
        for port, proto in CLUSTER_PORTS:
            lab[cut].unblock_port(port, proto, probe=False)
    wait_until(lambda: sorted(_status(lab, n) for n in MANAGERS) == [200, 400, 400], 60,
               "one active node after the partition heals")
    wait_until(lambda: healthy(lab), 60, "every node online again")
    emulator.clear_audit()
    run = orch(salt_run_cli)
    assert run.returncode == 0, run
    assert emulator.mutating() == []



def _leader(lab):
    return next(n for n, row in nodes(lab["mgr2"]).items() if row["state"] == "leader")


def test_maintenance_mode_stops_every_orchestration_and_shows_in_status(built_cluster, emulator,
                                                                        salt_run_cli):
    """4.6's maintenance mode (cloudify-4.6-day2.md section 5.1), turned on with the real cfy on
    the active node: the build, the rejoin and the retire change nothing and say so (the
    cluster, the node, the state, `cfy maintenance-mode deactivate`), the reactor's runner skips
    the rejoin, and `salt-run cloudify_ha.status` shows it. Once it is off, a run changes
    nothing."""
    lab = built_cluster
    leader = _leader(lab)
    activated = lab[leader].run(["cfy", "maintenance-mode", "activate"], check=False)
    assert activated.returncode == 0, activated
    expected = (f"cluster lab: {leader} ({lab[leader].ip}) is in maintenance mode (activated)",
                "'cfy maintenance-mode deactivate'")
    try:
        emulator.clear_audit()
        for test in (False, True):
            run = orch(salt_run_cli, test=test)
            assert run.returncode != 0, run
            assert list(run.steps) == ["cloudify_ha-orch-validate", "cloudify_ha-orch-sync",
                                       "cloudify_ha-orch-lab-maintenance"], run
            comment = run["cloudify_ha-orch-lab-maintenance"]["comment"]
            assert all(e in comment for e in expected), comment
        for sls, pillar, sid in (
                ("cloudify_ha.orch.rejoin", {"node": "mgr3"}, "cloudify_ha-rejoin-mgr3-maintenance"),
                ("cloudify_ha.orch.retire", {"cluster": "lab", "node": "mgr3"},
                 "cloudify_ha-retire-mgr3-maintenance")):
            run = OrchRun(salt_run_cli.run("state.orch", sls, "pillar=" + json.dumps(pillar)))
            assert run.returncode != 0 and list(run.steps) == [sid], run
            assert all(e in run[sid]["comment"] for e in expected), run
        # the runner the reactor calls (forced: the lab's pillar pauses automatic rejoins): it
        # logs and skips
        skipped = salt_run_cli.run("cloudify_ha.rejoin", "node=mgr3", "force=True")
        assert skipped.returncode == 0, skipped
        assert (skipped.data["result"], skipped.data["comment"].split(";")[0]) == (
            True, f"skipped: {expected[0]}"), skipped.data
        status = salt_run_cli.run("cloudify_ha.status")
        assert status.returncode == 0, status
        seen = status.data.get("data", status.data)["lab"]
        assert seen["maintenance mode"].startswith(f"activated on {leader} ({lab[leader].ip}) "
                                                   "since "), seen
        assert seen["active node"] == f"{leader} ({lab[leader].ip})"
        assert {row["node"]: row["local"] for row in seen["managers"]} == {
            m: "leader" if m == leader else "replica" for m in MANAGERS}
        assert emulator.mutating() == []
    finally:
        assert lab[leader].run(["cfy", "maintenance-mode", "deactivate"]).returncode == 0
    emulator.clear_audit()
    run = orch(salt_run_cli)
    assert run.returncode == 0 and run.changed() == set(), run
    assert emulator.mutating() == []
    status = salt_run_cli.run("cloudify_ha.status").data
    assert status.get("data", status)["lab"]["maintenance mode"] == "off"


def test_a_snapshot_through_salt_on_the_active_node(built_cluster, emulator, salt_cli):
    """cloudify_ha.snapshot (issue 34, first stage) on the emulated 4.6 with the real cfy: in
    maintenance mode, created, the mode left, the archive verified; while an execution runs,
    4.6's refusal comes back and maintenance mode is not left on."""
    lab = built_cluster
    leader = _leader(lab)
    emulator.clear_audit()
    ret = salt_cli.run("cloudify_ha.snapshot", "timeout=120", "poll=1", minion_tgt=leader)
    assert ret.returncode == 0, ret
    out = ret.data
    assert (out["status"], out["quiesce"], out["maintenance"], out["version"]) == (
        "created", "maintenance", "turned on and off", "4.6"), out
    assert out["id"].startswith("lab-") and lab[leader].exists(out["path"]), out
    runs = [e["argv"][:2] for e in emulator.audit(leader) if e["kind"] == "cli"]
    assert ["maintenance-mode", "activate"] in runs and ["snapshots", "create"] in runs, runs
    assert runs[-1] == ["maintenance-mode", "deactivate"], runs
    assert not any(e.get("secret_on_argv") for e in emulator.audit(leader)), runs
    assert "Status:\tdeactivated" in lab[leader].run(["cfy", "maintenance-mode", "status"]).stdout

    emulator.set_knobs(leader, running_executions=1)
    try:
        refused = salt_cli.run("cloudify_ha.snapshot", "quiesce=none", "timeout=30",
                               minion_tgt=leader)
    finally:
        emulator.set_knobs(leader, running_executions=None)
    assert refused.returncode != 0
    assert "You cannot start a system-wide execution if there are other executions running" \
        in str(refused.data), refused
    assert "Status:\tdeactivated" in lab[leader].run(["cfy", "maintenance-mode", "status"]).stdout
    ok = lab[leader].run(["cfy", "snapshots", "delete", out["id"]], check=False)
    assert ok.returncode == 0, ok


def _backup_pillar(pillar, lab, public_key):
    """The lab's pillar with a backup of cluster lab to the `lb` host, and what `lb` holds of
    it: the cluster without any Cloudify secret (the backup target's role)."""
    pillar = copy.deepcopy(pillar)
    pillar["clusters"]["lab"]["backup"] = {
        "target": {"minion_id": "lb", "address": lab["lb"].ip,
                   "directory": "/var/backups/cloudify_ha"},
        "port": 4550, "timeout": 300, "keep": 2, "keep_on_cluster": 1, "recipient": public_key}
    target = lb_view(pillar)
    settings = target["clusters"]["lab"]
    settings.pop("license", None)
    return pillar, target


def test_a_backup_off_the_cluster_encrypted_verified_and_not_sent_twice(
        built_cluster, salt_cli, salt_run_cli, pillar_dir, tmp_path):
    """cloudify_ha.orch.backup (issue 34 items 1 and 2) with the real cfy: a blueprint uploaded,
    the snapshot taken on the active node, streamed encrypted to the lb host (a backup target
    with no Cloudify secret), verified there with its manifest; the archive decrypts with the
    test's private key (never in pillar) into 4.6's snapshot holding the blueprint; a re-run
    with that snapshot sends nothing; no archive byte, key or password in the job cache."""
    lab = built_cluster
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--quiet"]
    subprocess.run(gpg + ["--passphrase", "", "--quick-gen-key", "lab backup <b@lab.invalid>",
                          "rsa2048", "encr", "never"], check=True, capture_output=True)
    public = subprocess.run(gpg + ["--armor", "--export", "b@lab.invalid"], check=True,
                            capture_output=True, text=True).stdout
    upload_blueprint(lab[_leader(lab)], "backed-up")
    pillar, target = _backup_pillar(minion_pillar(salt_cli), lab, public)
    try:
        with shadow_pillar(pillar_dir, pillar, per_minion={"lb": target}):
            for minion in MANAGERS + ("lb",):
                assert salt_cli.run("saltutil.refresh_pillar", "wait=True",
                                    minion_tgt=minion).returncode == 0
            lb_pillar = json.dumps(minion_pillar(salt_cli, minion="lb"))
            assert "BEGIN PGP PUBLIC KEY BLOCK" in lb_pillar
            assert not [s for s in lab.passwords.values() if s in lb_pillar]
            # from here on (the pillar reads above return it, as pillar.item does)
            before = sizes(lab.dir / "sf")
            run = OrchRun(salt_run_cli.run("state.orch", "cloudify_ha.orch.backup",
                                           'pillar={"cluster": "lab"}', _timeout=600))
            assert run.returncode == 0, run
            assert all(r is True for r in run.results().values()), run
            assert {"cloudify_ha-backup-lab-receive", "cloudify_ha-backup-lab-send",
                    "cloudify_ha-backup-lab-verify"} <= set(run.steps), run
            # salt.function's changes: {minion: what the function returned}
            (sent,) = run["cloudify_ha-backup-lab-send"]["changes"]["ret"].values()
            sid = sent["id"]
            base = f"/var/backups/cloudify_ha/lab/{sid}"
            manifest = json.loads(lab["lb"].read(f"{base}.json"))
            assert manifest == {
                "id": sid, "cluster": "lab", "time": manifest["time"], "cloudify_version": "4.6",
                "size": sent["size"], "sha256": sent["sha256"], "encrypted": True,
                "recipient_fingerprint": sent["recipient_fingerprint"], "file": f"{sid}.zip.gpg"}
            modes = lab["lb"].run(["find", "/var/backups/cloudify_ha", "-printf", "%m %P\n"]
                                  ).stdout.split("\n")
            assert sorted(m for m in modes if m) == sorted(
                ["700 ", "700 lab", f"600 lab/{sid}.zip.gpg", f"600 lab/{sid}.json"]), modes
            # the test's private key (in /tmp, which every lab host sees) opens it
            clear = tmp_path / "snapshot.zip"
            lab["lb"].run(gpg + ["--output", str(clear), "--decrypt", f"{base}.zip.gpg"])
            with zipfile.ZipFile(clear) as archive:
                assert json.loads(archive.read("metadata.json"))["snapshot_version"] == "4.6"
                assert [n for n in archive.namelist()
                        if n.startswith("blueprints/") and "backed-up" in n], archive.namelist()
            # the cluster keeps one snapshot of its own (keep_on_cluster)
            listed = json.loads(lab[_leader(lab)].run(["cfy", "snapshots", "list", "--json"]
                                                      ).stdout)
            assert [s["id"] for s in listed if s["id"].startswith("lab-")] == [sid], listed

            # a re-run with that snapshot: at the target already, nothing sent
            stamp = lab["lb"].run(["stat", "-c", "%Y %s", f"{base}.zip.gpg"]).stdout
            again = OrchRun(salt_run_cli.run(
                "state.orch", "cloudify_ha.orch.backup",
                "pillar=" + json.dumps({"cluster": "lab", "snapshot": sid}), _timeout=600))
            assert again.returncode == 0, again
            assert "cloudify_ha-backup-lab-stored" in again.steps, again
            assert not {"cloudify_ha-backup-lab-snapshot", "cloudify_ha-backup-lab-send",
                        "cloudify_ha-backup-lab-receive"} & set(again.steps), again
            assert lab["lb"].run(["stat", "-c", "%Y %s", f"{base}.zip.gpg"]).stdout == stamp
    finally:
        for minion in MANAGERS + ("lb",):
            salt_cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt=minion)
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
    # no archive byte, no key, no password in any job, event or log written meanwhile
    cipher = lab["lb"].run(["od", "-An", "-tx1", "-N48", "-j512", f"{base}.zip.gpg"]).stdout
    chunk = bytes(int(b, 16) for b in cipher.split())
    needles = list(lab.passwords.values()) + [
        line for line in public.splitlines()[2:6] if len(line) > 40] + [
        chunk.hex(), base64.b64encode(chunk).decode()[:40]]
    assert files_containing(lab.dir / "sf", needles, skip=("/minions/", "/pillar"),
                            after=before) == []
    assert not [n for n in needles if n in run.text + again.text]
