"""kitchen.yml's run, as far as it goes without Docker: its pillar (test/kitchen/pillar.sls) as a
pillar root's only pillar, and the SLS its state_top applies, compiled by Salt's HighState for
its minion on CentOS 7 grains (RedHat, systemd, iptables only, as the image has it)."""

import shutil

import pytest
import yaml

from render_setup import REPO, Minion, args_of, base_opts, functions_of, opts_for
from test_render_packages import redhat_problems

KITCHEN = yaml.safe_load((REPO / "kitchen.yml").read_text(encoding="utf-8"))
PROVISIONER = KITCHEN["provisioner"]
MINION = PROVISIONER["salt_minion_id"]
APPLIED = PROVISIONER["state_top"]["base"][MINION]


@pytest.fixture(scope="module")
def kitchen_minion(render_root, file_root, host_grains):
    root = render_root / "pillar-kitchen"
    root.mkdir()
    (root / "top.sls").write_text(yaml.safe_dump(PROVISIONER["pillars"]["top.sls"]))
    for name, path in PROVISIONER["pillars_from_files"].items():
        shutil.copy(REPO / path, root / name)
    opts = opts_for(base_opts(render_root, file_root, [root], MINION), host_grains, MINION,
                    init="systemd", os_family="RedHat", os="CentOS", osmajorrelease=7)
    minion = Minion(opts, binaries=("iptables",))
    yield minion
    minion.close()


@pytest.mark.parametrize("sls", APPLIED)
def test_kitchens_states_compile_for_its_manager_on_centos_7(kitchen_minion, sls):
    high, errors = kitchen_minion.render(sls)
    assert errors == [] and redhat_problems(kitchen_minion.state, high) == []
    assert "cloudify_ha.refused" not in functions_of(high).values()


def test_the_installer_writes_the_vault_repositories_then_installs_from_the_pillars_url(
        kitchen_minion):
    high, _ = kitchen_minion.render("cloudify_ha.installer")
    funs = functions_of(high)
    assert {sid: fun for sid, fun in funs.items() if fun == "pkgrepo.managed"} == {
        f"cloudify_ha-repos-{rid}": "pkgrepo.managed" for rid in ("base", "updates", "extras")}
    package = args_of(high, "cloudify_ha-installer-package")
    assert package["sources"] == [{"cloudify-manager-install": yaml.safe_load(
        (REPO / PROVISIONER["pillars_from_files"]["cloudify_ha.sls"]).read_text())[
            "cloudify_ha"]["clusters"]["kitchen"]["installer"]["source"]}]
    assert package["require"][-1] == {"sls": "cloudify_ha.repos"}


def test_the_firewall_is_iptables_as_on_a_minimal_el7_host(kitchen_minion):
    high, _ = kitchen_minion.render("cloudify_ha.firewall")
    assert "cloudify_ha-firewall-iptables-loaded" in functions_of(high)
