"""Two clusters in one pillar, each on its own PostgreSQL, built by one orchestration (in
parallel), and one of them converged alone with pillar='{"cluster": ...}'.

The session's lab has three managers: cluster `lab` gets mgr1 and mgr2, cluster `lab2` gets mgr3
(the orchestration warns about both sizes, as it should, and builds them)."""

from lab.formula import deep, minion_pillar, nodes, orch, shadow_pillar


def two_cluster_pillar(base, lab, db2):
    pillar = deep(base)
    first = pillar["clusters"]["lab"]
    managers = {m["name"]: m for m in first["managers"]}
    second = deep(first)
    first["managers"] = [managers["mgr1"], managers["mgr2"]]
    second.update(leader="mgr3", managers=[managers["mgr3"]], cli_hosts=[])
    second["database"]["host"] = db2.ip
    second["firewall"]["rest_sources"] = [lab.subnet_cidr]
    pillar["clusters"]["lab2"] = second
    return pillar


def test_two_clusters_are_built_by_one_orchestration(fresh_lab, salt_cli, salt_run_cli,
                                                      pillar_dir, emulator):
    lab = fresh_lab
    db2 = lab.add_database("db2")
    pillar = two_cluster_pillar(minion_pillar(salt_cli), lab, db2)
    with shadow_pillar(pillar_dir, pillar):
        run = orch(salt_run_cli)
        assert run.returncode == 0, run
        assert all(result is True for result in run.results().values()), run
        for step in ("cloudify_ha-orch-lab-leader-mgr1", "cloudify_ha-orch-lab-join-mgr2",
                     "cloudify_ha-orch-lab2-leader-mgr3", "cloudify_ha-orch-lab2-profiles"):
            assert run[step]["changes"], (step, run)
        assert "warning: cloudify_ha:clusters:lab2:managers: 1 manager(s)" in \
            run["cloudify_ha-orch-validate"]["name"]

        assert sorted(nodes(lab["mgr2"])) == ["mgr1", "mgr2"]
        assert sorted(nodes(lab["mgr3"])) == ["mgr3"]
        # each cluster's data lives in its own database
        for server in (lab.db, db2):
            assert server.query("SELECT count(*) FROM pg_database WHERE datname = 'cloudify_db'"
                                ).stdout.strip() == "1"

        emulator.clear_audit()
        only = orch(salt_run_cli, cluster="lab2")
        assert only.returncode == 0, only
        assert not [s for s in only.steps if s.startswith("cloudify_ha-orch-lab-")], only
        assert "cloudify_ha-orch-lab2-leader-mgr3" in only.steps
        assert only.changed() == set(), only
        assert emulator.mutating() == []


def test_two_clusters_cannot_share_a_database_server(salt_cli, salt_run_cli, pillar_dir, lab):
    pillar = two_cluster_pillar(minion_pillar(salt_cli), lab, lab.db)
    with shadow_pillar(pillar_dir, pillar):
        run = orch(salt_run_cli)
    assert run.returncode != 0, run
    assert list(run.steps) == ["cloudify_ha-orch-validate"]
    assert (f"cloudify_ha:clusters:lab2:database:host: {lab.db.ip} is also the database of "
            "cloudify_ha:clusters:lab") in run["cloudify_ha-orch-validate"]["comment"]
