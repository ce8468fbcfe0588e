"""The formula never loses data: no non-join install over a database holding a cluster's data
(unless the pillar allows it, on purpose), no change to a joiner that is not empty. And the
firewall it writes lets the cluster's ports through between managers only (real traffic)."""

from lab.formula import (blueprint_ids, deep, minion_pillar, nodes, orch, shadow_pillar,
                         upload_blueprint)
from lab.hosts import reach

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
