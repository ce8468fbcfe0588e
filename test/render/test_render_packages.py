"""Where the package states install from (cloudify_ha:packages), compiled by Salt's HighState on
a RedHat and on a Debian minion: the yum repositories the pillar lists are written by
cloudify_ha.repos before every package state of the formula, each of which installs from the
pillar's `fromrepo`; nothing touches the repositories or restricts a package state where the
pillar asks for nothing, nor on another OS family (apt sources are not managed)."""

import inspect

import pytest
import salt.exceptions
import salt.state
import salt.states.pkg
import salt.states.pkgrepo
import salt.utils.args

from render_setup import (CLI, LB, LEADER, STRANGER, args_of, compile_chunks, example_pillar,
                          functions_of, problems_of)

# every package state of the formula, by the SLS that has it and the role that renders it
PACKAGE_STATES = {
    (LEADER, "cloudify_ha.installer"): ["cloudify_ha-installer-prerequisites",
                                        "cloudify_ha-installer-package",
                                        "cloudify_ha-installer-psql"],
    (CLI, "cloudify_ha.cli"): ["cloudify_ha-profile-prod-cli-package"],
    (LB, "cloudify_ha.loadbalancer"): ["cloudify_ha-loadbalancer-package"],
}
CASES = [(role, sls) for role, sls in PACKAGE_STATES]
EXAMPLE = example_pillar()["packages"]["RedHat"]
REPO_SID = f"cloudify_ha-repos-{EXAMPLE['repos'][0]['id']}"
VAULT = {"cloudify_ha": {"packages": {"RedHat": {
    "repos": [{"id": "base", "baseurl": "http://vault.centos.org/7.9.2009/os/$basearch/",
               "gpgkey": "file:///etc/pki/rpm-gpg/RPM-GPG-KEY-CentOS-7"},
              {"id": "updates", "name": "CentOS-$releasever-updates",
               "baseurl": "http://vault.centos.org/7.9.2009/updates/$basearch/",
               "gpgcheck": True}],
    "fromrepo": []}}}}
NOTHING = {"cloudify_ha": {"packages": {"RedHat": {"repos": [], "fromrepo": []}}}}


# what pkgrepo.managed's docstring names for a yum repository (it takes **kwargs and writes
# each into the repo file: a misspelt key would be written, not refused)
YUM_REPO_ARGS = {"name", "humanname", "baseurl", "mirrorlist", "gpgcheck", "gpgkey", "enabled"}


def redhat_problems(state, high):
    """problems_of for a RedHat minion rendered on this Debian machine, whose loader has no yum
    (so no pkg or pkgrepo state): the chunks compiled by Salt; each pkg.installed given to
    Salt's own function as the state engine calls it, every argument one it names (its
    **kwargs would swallow a misspelt one); each pkgrepo.managed given only the yum keys."""
    chunks, errors = compile_chunks(state, high)
    named = set(inspect.signature(salt.states.pkg.installed).parameters) - {"kwargs"}
    for chunk in chunks:
        given = {k for k in chunk if not k.startswith("__")} - set(
            salt.state.STATE_INTERNAL_KEYWORDS) - {"state", "fun", "order"}
        fun = f"{chunk['state']}.{chunk['fun']}"
        if fun == "pkg.installed":
            try:
                salt.utils.args.format_call(salt.states.pkg.installed, chunk,
                                            expected_extra_kws=salt.state.STATE_INTERNAL_KEYWORDS)
            except salt.exceptions.SaltInvocationError as exc:
                errors.append(f"{chunk['__id__']}: {exc}")
            errors.extend(f"{chunk['__id__']}: {k} is no argument of pkg.installed"
                          for k in sorted(given - named))
        elif fun == "pkgrepo.managed":
            errors.extend(f"{chunk['__id__']}: {k} is no yum repository key"
                          for k in sorted(given - YUM_REPO_ARGS))
    return errors


def package_args(high, role, sls):
    return [args_of(high, sid) for sid in PACKAGE_STATES[(role, sls)]]


def sls_requisites_resolve(high):
    """Each `require: - sls: X` names an SLS whose states this high data holds (Salt's own
    check is at run time, which the render tests do not reach)."""
    declared = {body.get("__sls__") for sid, body in high.items() if not sid.startswith("__")}
    wanted = {item["sls"] for sid, body in high.items() if not sid.startswith("__")
              for mod, args in body.items() if not mod.startswith("__")
              for arg in args if isinstance(arg, dict)
              for item in arg.get("require", []) if "sls" in item}
    return wanted <= declared


@pytest.mark.parametrize("role, sls", CASES)
def test_on_redhat_the_pillars_repositories_come_first_and_every_package_installs_from_them(
        minion, role, sls):
    m = minion("example", role, os_family="RedHat")
    high, errors = m.render(sls)
    assert errors == [] and redhat_problems(m.state, high) == []
    assert functions_of(high)[REPO_SID] == "pkgrepo.managed"
    assert args_of(high, REPO_SID) == {
        "name": "cloudify_ha-os", "humanname": EXAMPLE["repos"][0]["name"],
        "baseurl": EXAMPLE["repos"][0]["baseurl"], "gpgkey": EXAMPLE["repos"][0]["gpgkey"],
        "gpgcheck": True}
    assert high[REPO_SID]["__sls__"] == "cloudify_ha.repos"
    for args in package_args(high, role, sls):
        assert args["fromrepo"] == "cloudify_ha-os"
        assert args["require"][-1] == {"sls": "cloudify_ha.repos"}
    assert sls_requisites_resolve(high)


def test_the_installer_package_still_waits_for_4_6s_prerequisites(minion):
    high, _ = minion("example", LEADER, os_family="RedHat").render("cloudify_ha.installer")
    assert args_of(high, "cloudify_ha-installer-package")["require"] == [
        {"pkg": "cloudify_ha-installer-prerequisites"}, {"sls": "cloudify_ha.repos"}]


def test_stock_repositories_are_rewritten_in_place_and_the_hosts_enabled_ones_used(minion):
    """The EL7 today case (README): base and updates pointed at vault, no fromrepo."""
    m = minion("example", LEADER, pillar=VAULT, os_family="RedHat")
    high, errors = m.render("cloudify_ha.installer")
    assert errors == [] and redhat_problems(m.state, high) == []
    assert args_of(high, "cloudify_ha-repos-base") == {
        "name": "base", "humanname": "base", "gpgcheck": True,
        "baseurl": "http://vault.centos.org/7.9.2009/os/$basearch/",
        "gpgkey": "file:///etc/pki/rpm-gpg/RPM-GPG-KEY-CentOS-7"}
    assert args_of(high, "cloudify_ha-repos-updates") == {
        "name": "updates", "humanname": "CentOS-$releasever-updates", "gpgcheck": True,
        "baseurl": "http://vault.centos.org/7.9.2009/updates/$basearch/"}
    for args in package_args(high, LEADER, "cloudify_ha.installer"):
        assert "fromrepo" not in args and args["require"][-1] == {"sls": "cloudify_ha.repos"}


@pytest.mark.parametrize("role, sls", CASES)
@pytest.mark.parametrize("family, pillar", [("Debian", None), ("RedHat", NOTHING)])
def test_nothing_touches_the_repositories_unless_the_pillar_asks_for_the_minions_family(
        minion, role, sls, family, pillar):
    m = minion("example", role, pillar=pillar, os_family=family)
    high, errors = m.render(sls)
    check = problems_of if family == "Debian" else redhat_problems
    assert errors == [] and check(m.state, high) == []
    assert "pkgrepo" not in repr(high) and "fromrepo" not in repr(high)
    assert "cloudify_ha.repos" not in repr(high)
    high, errors = m.render("cloudify_ha.repos")
    assert (errors, functions_of(high)) == ([], {"cloudify_ha-repos-nothing-here":
                                                 "test.succeed_without_changes"})


def test_a_minion_with_no_package_role_writes_no_repository(minion):
    high, errors = minion("example", STRANGER, os_family="RedHat").render("cloudify_ha.repos")
    assert (errors, functions_of(high)) == ([], {"cloudify_ha-repos-nothing-here":
                                                 "test.succeed_without_changes"})


@pytest.mark.parametrize("packages, error", [
    ({"Debian": {"repos": []}},
     "cloudify_ha:packages:Debian: the formula sets package sources for the RedHat family only "
     "(yum, where Cloudify 4.6 runs); apt and other families' sources are not managed: set them "
     "up on those hosts yourself and remove this key"),
    ({"RedHat": {"repos": [{"id": "plain", "baseurl": "http://mirror.example.com/os/",
                            "gpgcheck": False}]}},
     "cloudify_ha:packages:RedHat:repos:0:baseurl: 'http://mirror.example.com/os/' comes over "
     "plain http, which anyone on the way can change, and its packages install as root: set "
     "gpgcheck: true (with the repository's gpgkey) or serve it over https"),
])
@pytest.mark.parametrize("family", ["RedHat", "Debian"])
def test_a_package_source_the_formula_does_not_take_refuses_every_package_sls(
        minion, packages, error, family):
    m = minion("example", LEADER, pillar={"cloudify_ha": {"packages": packages}},
               os_family=family)
    for sls in ("cloudify_ha.installer", "cloudify_ha.repos"):
        high, errors = m.render(sls)
        assert errors == []
        ((sid, fun),) = functions_of(high).items()
        assert fun == "cloudify_ha.refused", sls
        assert f"- {error}" in args_of(high, sid)["comment"].split("\n")
