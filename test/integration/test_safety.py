"""The formula never loses data: no non-join install over a database holding a cluster's data
(unless the pillar allows it, on purpose), no change to a joiner that is not empty, and the
half-installs 4.6 leaves (a leader's nginx answering 502, a join's record after its PUT) met
with the right advice or cleaned up. And the firewall it writes lets the cluster's ports
through between managers only (real traffic)."""

import json

from lab.formula import (blueprint_ids, deep, http_get, member_state, minion_pillar, nodes, orch,
                         shadow_pillar, upload_blueprint)
from lab.hosts import reach
from lab.proc import wait_until

MANAGERS = ("mgr1", "mgr2", "mgr3")


def test_a_database_holding_data_is_never_dropped_unless_the_pillar_allows_it(
        fresh_lab, emulator, salt_run_cli, salt_cli, pillar_dir):
    lab = fresh_lab
    assert orch(salt_run_cli).returncode == 0
    upload_blueprint(lab["mgr1"], "precious")
    assert blueprint_ids(lab) == ["precious"]
    # every manager host is rebuilt, the external database keeps the cluster's data
    for name in MANAGERS:
        lab.wipe(name)
    emulator.clear_audit()

    run = orch(salt_run_cli)
    assert run.returncode != 0, run
    leader = run.minion_states("cloudify_ha-orch-lab-leader-mgr1")["mgr1"]
    refused = next(c for k, c in leader.items() if "manager_installed" in k)
    assert refused["result"] is False and refused["changes"] == {}
    assert "refusing to install" in refused["comment"]
    assert "already holds Cloudify data" in refused["comment"]
    assert "1 blueprints" in refused["comment"]
    assert "allow_database_reset: True" in refused["comment"]
    assert not [e for m in MANAGERS for e in emulator.audit(m) if e["kind"] == "cli"]
    assert blueprint_ids(lab) == ["precious"]

    # on purpose, for one run: the operator lets the install reset the database
    allowed = deep(minion_pillar(salt_cli))
    allowed["clusters"]["lab"]["allow_database_reset"] = True
    with shadow_pillar(pillar_dir, allowed):
        run = orch(salt_run_cli)
    assert run.returncode == 0, run
    assert blueprint_ids(lab) == []
    assert sorted(nodes(lab["mgr1"])) == list(MANAGERS)


def test_a_joiner_that_is_not_empty_is_left_alone(fresh_lab, emulator, salt_run_cli):
    lab = fresh_lab
    emulator.seed_blueprints("mgr3", "old-app")
    run = orch(salt_run_cli)
    assert run.returncode != 0, run
    assert run["cloudify_ha-orch-lab-join-mgr2"]["result"] is True
    joined = run.minion_states("cloudify_ha-orch-lab-join-mgr3")["mgr3"]
    refused = next(c for k, c in joined.items() if k.endswith("_|-joined"))
    assert refused["result"] is False and refused["changes"] == {}
    assert "this host is not empty (1 file(s) under /opt/manager/resources" in refused["comment"]
    assert lab["mgr3"].exists("/opt/manager/resources/blueprints/default_tenant/old-app/blueprint.yaml")
    assert not lab["mgr3"].exists("/etc/cloudify/.install")
    assert not [e for e in emulator.audit("mgr3") if e["kind"] == "cli"]
    assert sorted(nodes(lab["mgr1"])) == ["mgr1", "mgr2"]


def test_cluster_ports_open_between_managers_only(lab, salt_run_cli):
    if reach(lab["mgr2"], lab["mgr1"], 8300) != "open":  # no cluster yet in this session
        lab.reset()
        assert orch(salt_run_cli).returncode == 0
    for port in (8300, 8301, 8500, 22000):
        assert reach(lab["mgr2"], lab["mgr1"], port) == "open", port
        assert reach(lab["lb"], lab["mgr1"], port) == "dropped", port
        assert reach(lab["cli"], lab["mgr3"], port) == "dropped", port
    # the REST port: from the managers and the pillar's rest_sources (the lab's subnet)
    assert reach(lab["lb"], lab["mgr1"], 80) == "open"
    table = lab["mgr1"].run(["nft", "list", "table", "inet", "cloudify_ha"]).stdout
    assert "cloudify_ha lab" in table
    assert not lab["db"].run(["nft", "list", "tables"]).stdout.count("cloudify_ha")


def test_a_wrong_admin_password_is_a_clear_error(lab, emulator, salt_run_cli, salt_cli,
                                                 pillar_dir):
    if reach(lab["mgr2"], lab["mgr1"], 8300) != "open":  # no cluster yet in this session
        lab.reset()
        assert orch(salt_run_cli).returncode == 0
    wrong = deep(minion_pillar(salt_cli))
    wrong["clusters"]["lab"]["admin"]["password"] = "not-the-admin-password"
    emulator.clear_audit()
    with shadow_pillar(pillar_dir, wrong):
        run = orch(salt_run_cli)
    assert run.returncode != 0, run
    leader = run.minion_states("cloudify_ha-orch-lab-leader-mgr1")["mgr1"]
    failed = [c for c in leader.values() if c["result"] is False]
    assert failed and failed[0]["changes"] == {}
    assert "rejected the admin credentials (401): check " \
           "cloudify_ha:clusters:lab:admin:password" in failed[0]["comment"], failed
    assert run["cloudify_ha-orch-lab-join-mgr2"]["result"] is False  # never reached
    assert emulator.mutating() == []
    assert "not-the-admin-password" not in run.text


def _http_status(lab, name, path="/status"):
    return http_get(lab[name], f"http://{lab[name].ip}/api/v3.1{path}", "admin",
                    lab.passwords["admin"])


def _db_sessions(lab):
    """Sessions ever opened on the cluster's database: a formula that reads it opens one."""
    return lab.db.query("SELECT sessions FROM pg_stat_database WHERE datname = 'cloudify_db'"
                        ).stdout.strip()


def test_a_join_that_failed_after_registering_is_cleaned_up_and_joined_again(fresh_lab, emulator,
                                                                             salt_run_cli):
    """4.6's join PUTs the node on the active node, then configures consul and syncthing
    locally: a failure there leaves an offline, never-initialized record of the node, and the
    host half-installed (cloudify-4.6.md section 0.4). The next run knows it for the formula's
    own failed join: the host torn down, the record removed through the active node, the host
    joined again, without replace_stale (the lab's pillar has it off); the cluster's data kept;
    a run after it changes nothing."""
    lab = fresh_lab
    emulator.set_knobs("mgr3", fail_at="create_cluster_node")
    # and the leader's `cluster start` restarts its REST service and nginx right after the
    # cluster shows initialized (the emulator's worst case of 4.6's restart): the state's check
    # meets nginx's 502 and waits it out
    emulator.set_knobs("mgr1", cluster_start_restart="initialized", cluster_start_restart_seconds=4)
    run = orch(salt_run_cli)
    assert run.returncode != 0, run
    assert run["cloudify_ha-orch-lab-leader-mgr1"]["result"] is True, run
    assert [e for e in emulator.audit("mgr1") if e["kind"] == "rest" and e["status"] == 502
            and e["remote"] == lab["mgr1"].ip], "the check after the start met no 502"
    assert "create_cluster_node" in str(run.minion_states("cloudify_ha-orch-lab-join-mgr3")), run
    status, body = _http_status(lab, "mgr1", "/cluster/nodes")
    record = next(n for n in json.loads(body)["items"] if n["name"] == "mgr3")
    assert (status, record["online"], record["initialized"]) == (200, False, False), record
    upload_blueprint(lab["mgr1"], "keep")
    before = blueprint_ids(lab)
    emulator.set_knobs("mgr3", fail_at=None)
    emulator.clear_audit()

    run = orch(salt_run_cli)
    assert run.returncode == 0, run
    joined = next(c for k, c in run.minion_states("cloudify_ha-orch-lab-join-mgr3")["mgr3"].items()
                  if k.endswith("_|-joined"))
    assert sorted(joined["changes"]) == ["joined", "removed_failed_install",
                                         "removed_failed_join"], joined
    assert joined["comment"].endswith("(after removing the record its failed join left)"), joined
    assert [(e["method"], e["path"]) for e in emulator.audit("mgr1")
            if e["kind"] == "rest" and e["method"] == "DELETE"] == \
        [("DELETE", "/api/v3.1/cluster/nodes/mgr3")]
    wait_until(lambda: member_state(lab, "mgr3") == "replica", 60, "mgr3 online")
    assert blueprint_ids(lab) == before == ["keep"]

    emulator.clear_audit()
    run = orch(salt_run_cli)
    assert run.returncode == 0 and run.changed() == set(), run
    assert emulator.mutating() == []


def test_a_leader_half_installed_before_its_rest_service_gets_the_advice_and_keeps_the_data(
        lab, emulator, salt_run_cli, salt_cli, pillar_dir):
    """Every manager host rebuilt, the database holding the cluster's data; the operator lets
    the leader's install reset it, and that install fails after its nginx step, before its
    restservice step drops anything: port 80 answers 502 (nginx, nothing behind it), no
    .install (cloudify-4.6.md section 0.4). The next runs give the half-install's diagnosis and
    advice, not "starting (nginx answers 502 ...)", never read the database, and change
    nothing; not a blueprint row is lost."""
    if reach(lab["mgr2"], lab["mgr1"], 8300) != "open":  # no cluster yet in this session
        lab.reset()
        assert orch(salt_run_cli).returncode == 0
    if "precious" not in blueprint_ids(lab):
        upload_blueprint(lab["mgr1"], "precious")
    before = blueprint_ids(lab)
    for name in MANAGERS:
        lab.wipe(name)
    emulator.set_knobs("mgr1", fail_at="rabbitmq")
    allowed = deep(minion_pillar(salt_cli))
    allowed["clusters"]["lab"]["allow_database_reset"] = True
    sessions = _db_sessions(lab)
    with shadow_pillar(pillar_dir, allowed):
        run = orch(salt_run_cli)
    assert run.returncode != 0, run
    assert "Failed to install rabbitmq" in str(run.minion_states("cloudify_ha-orch-lab-leader-mgr1"))
    assert _db_sessions(lab) != sessions  # this run's guard read the database: the count shows it
    assert _http_status(lab, "mgr1")[0] == 502 and not lab["mgr1"].exists("/etc/cloudify/.install")
    assert blueprint_ids(lab) == before
    emulator.set_knobs("mgr1", fail_at=None)

    for attempt in (1, 2):
        emulator.clear_audit()
        sessions = _db_sessions(lab)
        run = orch(salt_run_cli)
        assert run.returncode != 0, run
        leader = run.minion_states("cloudify_ha-orch-lab-leader-mgr1")["mgr1"]
        refused = next(c for k, c in leader.items() if "manager_installed" in k)
        assert refused["result"] is False and refused["changes"] == {}, (attempt, refused)
        for fragment in ("an earlier install failed part-way", "half-installed",
                         "'cfy_manager remove -f'", "the database was not touched"):
            assert fragment in refused["comment"], (attempt, refused)
        assert "starting (nginx answers 502" not in refused["comment"], refused
        changed = {(sid, minion, key) for sid in run.steps
                   for minion, chunks in run.minion_states(sid).items()
                   for key, chunk in chunks.items() if chunk.get("changes")}
        assert changed == set(), (attempt, changed)
        assert emulator.mutating() == []
        assert _db_sessions(lab) == sessions, attempt  # the database was not even read
    assert blueprint_ids(lab) == before
    lab.reset()  # the next test starts from hosts it can build on
