"""`cfy_manager install` on the external database (cloudify-4.6.md section 5): the install-time
join and its refusals, and the data-loss trap of an install without join settings. Every test
starts from fresh hosts and an empty database."""

import json
import threading
import time

from cfylab import (ADMIN_PASSWORD, blueprint_ids, cfy, cfy_manager, failed, install, last_line,
                    nodes, ok, prepare, read_yaml, start_cluster, upload_blueprint, wait_for_nodes)
from lab.proc import wait_until

JOIN_LINES = ["Master ip found, joining to cluster with {leader} as master",
              'Adding cluster node "{name}" to the cluster',
              "Node has been added to the cluster successfully!",
              "Installation finished successfully!",
              "Manager is up at http://{ip}"]


def clustered_leader(lab, emulator, name="mgr1"):
    ok(install(lab, emulator, name))
    ok(start_cluster(lab[name]))
    return lab[name]


def db_oid(lab):
    return lab.db.query("SELECT oid FROM pg_database WHERE datname = 'cloudify_db'").stdout.strip()


def refused_join(lab, name, leader="mgr1"):
    """The joiner did not become a member: no install marker, absent from the leader's list."""
    assert not lab[name].exists("/etc/cloudify/.install")
    assert not lab[name].exists("/etc/cloudify/cluster")
    assert name not in nodes(lab[leader].ip)


# ---- a join that works (one join, everything it must show: each build costs seconds) -----------
def test_a_join_through_the_leaders_rest_api_as_46_does_it(fresh_lab, emulator):
    lab = fresh_lab
    leader = clustered_leader(lab, emulator)
    ok(upload_blueprint(leader, "kept"))
    before = db_oid(lab)
    emulator.clear_audit()
    out = ok(install(lab, emulator, "mgr2", join="mgr1"))
    # the reference messages, in order
    expected = [line.format(leader=lab["mgr1"].ip, name="mgr2", ip=lab["mgr2"].public_ip)
                for line in JOIN_LINES]
    found = [next((i for i, line in enumerate(out.splitlines()) if want in line), None)
             for want in expected]
    assert None not in found and found == sorted(found), (expected, out)
    # registered through the leader's REST API on port 80
    calls = [(e["method"], e["path"], e["port"], e["status"]) for e in emulator.audit("mgr1")
             if e["kind"] == "rest" and e["remote"] == lab["mgr2"].ip]
    assert calls[:2] == [("GET", "/api/v3.1/cluster/nodes", 80, 200),
                         ("PUT", "/api/v3.1/cluster/nodes/mgr2", 80, 200)]
    # the join settings came from config.yaml alone (no flag, no secret on argv)
    (entry,) = [e for e in emulator.audit("mgr2") if e["kind"] == "cli" and e["prog"] == "cfy_manager"]
    assert (entry["prog"], entry["argv"], entry["secret_on_argv"]) == ("cfy_manager", ["install"],
                                                                       False)
    # both markers, and config.yaml keeps the join settings (its password removed)
    joiner = lab["mgr2"]
    assert joiner.exists("/etc/cloudify/.install") and joiner.exists("/etc/cloudify/cluster")
    config = read_yaml(joiner, "/etc/cloudify/config.yaml")
    assert config["cluster"]["master_ip"] == lab["mgr1"].ip
    assert config["postgresql_client"]["postgres_password"] == "<removed>"
    # the joiner skipped database creation: same database, data kept
    assert db_oid(lab) == before
    assert blueprint_ids(lab) == ["kept"]
    wait_for_nodes(lab, "mgr1", {"mgr1": "leader", "mgr2": "replica"})


# ---- the data-loss trap --------------------------------------------------------------------------
def test_install_without_join_settings_drops_the_clusters_data(fresh_lab, emulator):
    lab = fresh_lab
    leader = clustered_leader(lab, emulator)
    ok(install(lab, emulator, "mgr2", join="mgr1"))
    for blueprint in ("app", "db"):
        ok(upload_blueprint(leader, blueprint))
    assert blueprint_ids(lab) == ["app", "db"]
    before = db_oid(lab)
    # "reinstall the leader" on another fresh host: a first install, no join settings
    ok(install(lab, emulator, "mgr3"))
    assert db_oid(lab) != before
    assert blueprint_ids(lab) == []
    assert json.loads(ok(cfy(leader, "blueprints", "list", "--json"))) == []


def test_databases_are_created_as_postgres_with_a_password_and_no_client_certificate(
        fresh_lab, emulator):
    """4.6 creates its databases with `psql -h <host>` and ~postgres/.pgpass: a server that
    requires a client certificate from every user cannot host it (the install fails at its
    restservice step, nothing created); one that requires it from `cloudify` only can, and the
    manager's own connections present the copied certificate (cloudify-4.6.md section 0.2)."""
    lab = fresh_lab
    try:
        lab.db.require_client_cert(["all"])
        out = failed(install(lab, emulator, "mgr1"))
        assert "Installing restservice..." in out and "Installing stage..." not in out, out
        assert "Could not connect to the database" in out and "certificate" in out, out
        assert "cloudify_db" not in lab.db.databases()
        lab.db.require_client_cert(["cloudify"])
        ok(cfy_manager(lab["mgr1"], "remove", "-f"))
        ok(install(lab, emulator, "mgr1"))
        ok(upload_blueprint(lab["mgr1"], "certified"))
        assert blueprint_ids(lab) == ["certified"]
    finally:
        lab.db.require_client_cert(())


def test_drop_database_is_retried_while_the_database_is_being_accessed(fresh_lab, emulator):
    lab = fresh_lab
    ok(install(lab, emulator, "mgr1"))
    prepare(lab, emulator, "mgr2")
    held = {}

    # a client connected to cloudify_db for 6 s: longer than PostgreSQL's own 5 s wait inside
    # DROP DATABASE, so the first attempt fails "being accessed by other users"
    def hold():
        held["proc"] = lab.db.query("SELECT pg_sleep(6)", dbname="cloudify_db", check=False)
        held["end"] = time.monotonic()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        wait_until(lambda: lab.db.query("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                        "'cloudify_db' AND query LIKE '%pg_sleep%'").stdout.strip()
                   == "1", 10, "the holding session to be connected")
        ok(cfy_manager(lab["mgr2"], "install"))
        finished = time.monotonic()
    finally:
        holder.join(15)
    # the session was waited for, not kicked out, and the install outlasted it
    assert held["proc"].returncode == 0, held["proc"]
    assert held["end"] <= finished
    assert blueprint_ids(lab) == []


# ---- joins that are refused (one leader for the three: each build costs seconds) ------------------
def test_joins_that_46_refuses(fresh_lab, emulator):
    lab = fresh_lab
    clustered_leader(lab, emulator)

    # another admin password
    prepare(lab, emulator, "mgr2", join="mgr1", manager={
        "private_ip": lab["mgr2"].ip, "public_ip": lab["mgr2"].ip,
        "security": {"admin_username": "admin", "admin_password": "not-" + ADMIN_PASSWORD}})
    reason = last_line(failed(cfy_manager(lab["mgr2"], "install")))
    assert reason.startswith("NetworkError: ")
    assert reason.endswith("Master and replica nodes must have the same admin password")
    refused_join(lab, "mgr2")

    # a joiner that is not empty
    prepare(lab, emulator, "mgr3", join="mgr1")
    emulator.seed_blueprints("mgr3", "left-over")
    out = failed(cfy_manager(lab["mgr3"], "install"))
    assert last_line(out) == "NetworkError: REST service returned an unexpected response: 400"
    log = lab["mgr3"].read("/var/log/cloudify/manager/cfy_manager.log")
    assert "cluster_join_error" in log and "not empty" in log
    refused_join(lab, "mgr3")

    # a wrong postgres password: refused before it registers (mgr2 reinstalled first)
    lab.wipe("mgr2")
    emulator.clear_audit()
    prepare(lab, emulator, "mgr2", join="mgr1",
            postgresql_client={"postgres_password": "not-the-postgres-password"})
    reason = last_line(failed(cfy_manager(lab["mgr2"], "install")))
    assert reason.startswith(f"ProcessExecutionError: Could not connect to the database at "
                             f"{lab['db'].ip}")
    refused_join(lab, "mgr2")
    assert not emulator.mutating("mgr1")
