"""kitchen.yml, which this repository cannot run (no Docker engine, no RubyGems): its pillar passes
the formula's plan for the minion kitchen-salt names, that minion is a manager of it, every path
it names is in the repository, and its image points CentOS 7 at the vault before any yum."""

import re

import yaml

from formula_code import REPO, pillar_util

P = pillar_util()
KITCHEN = yaml.safe_load((REPO / "kitchen.yml").read_text(encoding="utf-8"))
PROVISIONER = KITCHEN["provisioner"]
MINION = PROVISIONER["salt_minion_id"]
PILLAR_FILE = REPO / PROVISIONER["pillars_from_files"]["cloudify_ha.sls"]
DOCKERFILE = REPO / KITCHEN["driver"]["dockerfile"]


def kitchen_pillar():
    return yaml.safe_load(PILLAR_FILE.read_text(encoding="utf-8"))["cloudify_ha"]


def test_the_kitchen_pillar_passes_the_formulas_plan_for_kitchens_minion_a_manager():
    pillar = kitchen_pillar()
    assert P.plan(pillar, minion_id=MINION) == {
        "errors": [], "warnings": [], "clusters": P.plan(pillar)["clusters"]}
    settings, manager = P.find_manager(pillar, MINION)
    assert manager is not None and manager["name"] == settings["leader"]
    # the installer package comes from a URL in that pillar, checked by TLS or a hash
    source = settings["installer"]["source"]
    assert source.startswith("https://") or (source.startswith("http://") and
                                             settings["installer"]["source_hash"])


def test_the_kitchen_minion_renders_as_a_manager_with_the_vault_repositories():
    out = P.for_minion(kitchen_pillar(), MINION, grains={"id": MINION, "os_family": "RedHat"})
    assert out["errors"] == [] and out["me"]["manager"]["minion_id"] == MINION
    assert [(r["id"], r["baseurl"]) for r in out["packages"]["repos"]] == [
        (rid, f"http://vault.centos.org/7.9.2009/{path}/$basearch/")
        for rid, path in (("base", "os"), ("updates", "updates"), ("extras", "extras"))]
    assert all(r["gpgcheck"] for r in out["packages"]["repos"])


def test_every_path_kitchen_names_is_in_the_repository():
    named = [KITCHEN["driver"]["dockerfile"], PROVISIONER["formula"],
             *PROVISIONER["pillars_from_files"].values()]
    named += [sls.replace(".", "/") + ".sls" for targets in PROVISIONER["state_top"].values()
              for sls_list in targets.values() for sls in sls_list]
    assert named and [path for path in named if not (REPO / path).exists()] == []
    # the states are applied to the pillar's manager, not to the container's hostname
    assert list(PROVISIONER["state_top"]["base"]) == [MINION]


def test_the_image_points_centos_7_at_the_vault_before_any_yum():
    text = DOCKERFILE.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    body = "\n".join(lines)
    assert lines[0] == "FROM centos:7"
    vault = body.index("baseurl=http://vault.centos.org/7.9.2009/")
    assert body.index("s/^mirrorlist=/#mirrorlist=/") < vault < body.index("yum ")
    assert len(re.findall(r"\byum\b", body[:vault])) == 0


def test_salt_is_bootstrapped_from_where_the_script_lives_today_at_an_el7_version():
    assert PROVISIONER["salt_install"] == "bootstrap"
    assert PROVISIONER["salt_bootstrap_url"] == (
        "https://github.com/saltstack/salt-bootstrap/releases/latest/download/bootstrap-salt.sh")
    assert PROVISIONER["salt_version"] in ("3006.8", "3007.1")
    assert PROVISIONER["salt_bootstrap_options"] % PROVISIONER["salt_version"] == \
        f"-X onedir {PROVISIONER['salt_version']}"


def test_systemd_gets_the_hosts_cgroup_tree_as_centos_7s_needs_it():
    driver = KITCHEN["driver"]
    assert (driver["privileged"], driver["run_command"]) == (True, "/usr/sbin/init")
    assert "/sys/fs/cgroup:/sys/fs/cgroup:ro" in driver["volume"]
    assert driver["run_options"] == {"cgroupns": "host"}
