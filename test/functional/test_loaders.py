"""The formula's modules as Salt's loader loads them: names, __utils__, pillar, state wiring."""

import hashlib
import inspect
import shutil

import salt.loader

from functional_setup import (MINION_ID, REPO, example_pillar, sandbox_loaders,
                              sandbox_minion_opts, secrets_of)


def test_the_execution_module_loads_as_cloudify_ha(loaders):
    assert "cloudify_ha.node_state" in loaders.modules
    func = loaders.modules["cloudify_ha.active_node"]
    assert inspect.getfile(func.func) == str(REPO / "_modules" / "cloudify_ha.py")


def test_the_state_module_loads_as_cloudify_ha(loaders):
    for name in ("manager_installed", "cluster_started", "joined", "profile_updated",
                 "node_absent", "listed"):
        assert f"cloudify_ha.{name}" in loaders.states, name


def test_plan_with_a_pillar_passed_in_has_no_secret(loaders):
    pillar = example_pillar()
    result = loaders.modules.cloudify_ha.plan(pillar=pillar)
    assert (result["errors"], result["warnings"], sorted(result["clusters"])) == ([], [], ["prod"])
    prod = result["clusters"]["prod"]
    assert (prod["leader_manager"]["name"], [m["name"] for m in prod["followers"]]) == (
        "cfy-mgr1", ["cfy-mgr2", "cfy-mgr3"])
    assert prod["database"] == {"host": "10.0.0.5", "port": 5432, "name": "cloudify_db"}
    assert [s for s in secrets_of(pillar) if s in repr(result)] == []


def test_plan_reads_the_minions_pillar(loaders):
    result = loaders.modules.cloudify_ha.plan(cluster="prod")
    assert (result["errors"], sorted(result["clusters"])) == ([], ["prod"])
    assert result["clusters"]["prod"]["admin"] == {"username": "admin", "tenant": "default_tenant"}
    assert [s for s in secrets_of(example_pillar()) if s in repr(result)] == []


def test_plan_of_an_unknown_cluster(loaders):
    result = loaders.modules.cloudify_ha.plan(cluster="qa")
    assert (result["errors"], result["clusters"]) == (
        ["cluster 'qa' (from the orchestration's pillar 'cluster') is not defined under "
         "cloudify_ha:clusters; defined: prod"], {})


def test_profile_nodes_reads_a_profile(loaders, tmp_path, monkeypatch):
    func = loaders.modules["cloudify_ha.profile_nodes"]
    monkeypatch.setitem(func.__globals__, "PROFILES_DIR", str(tmp_path))
    (tmp_path / "prod").mkdir()
    # as the real cfy 4.6 writes it (PyYAML 3.10, Python 2): tagged, every text !!python/unicode
    (tmp_path / "prod" / "context").write_text(
        "!CloudifyProfileContext\n_cluster:\n"
        "- {manager_ip: !!python/unicode 'localhost', name: !!python/unicode 'cfy-mgr2'}\n"
        "- {manager_ip: !!python/unicode '10.0.0.11', name: !!python/unicode 'cfy-mgr1'}\n"
        "manager_ip: !!python/unicode 'localhost'\n")
    assert loaders.modules.cloudify_ha.profile_nodes(profile="prod") == ["cfy-mgr1", "cfy-mgr2"]
    assert loaders.modules.cloudify_ha.profile_cluster(profile="prod") == [
        {"name": "cfy-mgr2", "manager_ip": "localhost"},
        {"name": "cfy-mgr1", "manager_ip": "10.0.0.11"}]
    assert loaders.modules.cloudify_ha.profile_nodes(profile="missing") is None


def test_a_state_runs_through_the_loader_and_fails_cleanly(loaders):
    # a cluster the pillar does not define: the state fails before any host is asked anything
    ret = loaders.states.cloudify_ha.listed(name="cfy-mgr2", cluster="qa")
    assert ret.filtered == {
        "name": "cfy-mgr2", "changes": {}, "result": False,
        "comment": f"cfy-mgr2: no cluster in pillar cloudify_ha:clusters:qa lists minion "
                   f"'{MINION_ID}' as a manager"}


def test_the_grain_runs_from_the_synced_files_through_salts_grains_loader(minion_opts, tmp_path):
    # what cloudify_ha.sync leaves in extension_modules, and the master's hashes of it
    extmods, expected = tmp_path / "extmods", {}
    for kind, name in (("grains", "cloudify_ha.py"), ("modules", "cloudify_ha.py"),
                       ("utils", "cloudify_ha_rest.py")):
        source = REPO / f"_{kind}" / name
        (extmods / kind).mkdir(parents=True, exist_ok=True)
        shutil.copy(source, extmods / kind / name)
        expected[f"{kind}/{name}"] = "sha256:" + hashlib.sha256(source.read_bytes()).hexdigest()
    opts = dict(minion_opts, extension_modules=str(extmods), grains_cache=False)
    assert salt.loader.grains(opts, force_refresh=True)["cloudify_ha_modules"] == expected


def test_a_minion_reports_its_own_pillar_errors_in_orch_facts(tmp_path):
    """orch_facts on this Salt's real loader, for a manager whose pillar lacks a secret its role
    needs: the minion names it (the master then refuses the whole run)."""
    pillar = example_pillar()
    del pillar["clusters"]["prod"]["database"]["postgres_password"]
    facts = sandbox_loaders(sandbox_minion_opts(tmp_path, pillar)).modules.cloudify_ha.orch_facts({})
    assert facts == {
        "modules_current": False, "node": "absent", "cluster": "prod", "private_ip": "10.0.0.11",
        "pillar_errors": [
            "cloudify_ha:clusters:prod:database:postgres_password: required secret is missing; "
            "set it in this minion's pillar (ideally from an encrypted source such as GPG "
            "pillar)"]}, facts
