"""cloudify_ha:packages: the yum repositories and repository ids of the formula's package states,
each mistake refused naming its key and the fix, and what a minion of each OS family gets."""

import pytest
import yaml

from formula_code import REPO, example_pillar, pillar_util

P = pillar_util()
WHERE = "cloudify_ha:packages:RedHat"
VAULT = {"id": "base", "baseurl": "http://vault.centos.org/7.9.2009/os/$basearch/",
         "gpgkey": "file:///etc/pki/rpm-gpg/RPM-GPG-KEY-CentOS-7"}


def errors_with(packages):
    pillar = example_pillar()
    pillar["packages"] = packages
    return P.validate(pillar)[0]


def test_pillar_example_and_the_vault_repositories_are_valid():
    assert P.validate(example_pillar()) == ([], [])
    assert errors_with({"RedHat": {"repos": [VAULT], "fromrepo": ["base", "epel"]}}) == []
    assert errors_with({"RedHat": {}}) == errors_with({"RedHat": {"repos": []}}) == []
    pillar = example_pillar()
    del pillar["packages"]
    assert P.validate(pillar) == ([], [])


@pytest.mark.parametrize("packages, error", [
    (["base"], "cloudify_ha:packages: must be a mapping of OS family to its package sources "
               "(packages:RedHat; see pillar.example)"),
    ({"Debian": {}}, "cloudify_ha:packages:Debian: the formula sets package sources for the "
                     "RedHat family only (yum, where Cloudify 4.6 runs); apt and other families' "
                     "sources are not managed: set them up on those hosts yourself and remove "
                     "this key"),
    ({"redhat": {}}, "cloudify_ha:packages:redhat: the formula sets package sources for the "
                     "RedHat family only (yum, where Cloudify 4.6 runs) (did you mean "
                     "'RedHat'?); apt and other families' sources are not managed: set them up "
                     "on those hosts yourself and remove this key"),
    ({"RedHat": {"repo": []}}, f"{WHERE}:repo: unknown key (did you mean 'repos'?); remove it "
                               "or fix its spelling (see pillar.example)"),
    ({"RedHat": {"repos": VAULT}}, f"{WHERE}:repos: must be a list of repositories (id, name, "
                                   "baseurl, gpgkey, gpgcheck; see pillar.example)"),
    ({"RedHat": {"fromrepo": "base"}}, f"{WHERE}:fromrepo: must be a list of repository ids "
                                       "(e.g. [base, updates]), or [] for the host's enabled "
                                       "repositories"),
    ({"RedHat": {"fromrepo": ["base,epel"]}}, f"{WHERE}:fromrepo:0: 'base,epel' is not a yum "
                                              "repository id (ASCII letters, digits, '.', '_', "
                                              "'-', starting with a letter or digit, e.g. base)"),
    ({"RedHat": {"repos": [{**VAULT, "gpgcheck": False}]}},
     f"{WHERE}:repos:0:baseurl: 'http://vault.centos.org/7.9.2009/os/$basearch/' comes over "
     "plain http, which anyone on the way can change, and its packages install as root: set "
     "gpgcheck: true (with the repository's gpgkey) or serve it over https"),
    ({"RedHat": {"repos": [{**VAULT, "gpgkey": "http://vault.centos.org/RPM-GPG-KEY-CentOS-7"}]}},
     f"{WHERE}:repos:0:gpgkey: 'http://vault.centos.org/RPM-GPG-KEY-CentOS-7' comes over plain "
     "http: whoever changes it on the way signs the packages yum then trusts; fetch it over "
     "https or give it as a file:///path on the host"),
    ({"RedHat": {"repos": [{**VAULT, "gpgcheck": "yes"}]}},
     f"{WHERE}:repos:0:gpgcheck: 'yes' must be true or false"),
    ({"RedHat": {"repos": [VAULT, {**VAULT, "baseurl": "https://mirror.example.com/os/"}]}},
     f"{WHERE}:repos:1:id: 'base' is also the id of {WHERE}:repos:0: give each repository its "
     "own id"),
    ({"RedHat": {"repos": [{"baseurl": VAULT["baseurl"]}]}},
     f"{WHERE}:repos:0:id: required; the repository's id (its [section] under "
     "/etc/yum.repos.d, e.g. base)"),
    ({"RedHat": {"repos": [{"id": "base"}]}},
     f"{WHERE}:repos:0:baseurl: required; the repository's URL (e.g. "
     "http://vault.centos.org/7.9.2009/os/$basearch/)"),
    ({"RedHat": {"repos": [{**VAULT, "mirrorlist": "http://mirrorlist.centos.org/"}]}},
     f"{WHERE}:repos:0:mirrorlist: unknown key; remove it or fix its spelling (see "
     "pillar.example)"),
    ({"RedHat": {"repos": [{**VAULT, "baseurl": "https://mirror.example.com/os/../../x/"}]}},
     f"{WHERE}:repos:0:baseurl: 'https://mirror.example.com/os/../../x/' is not a repository "
     "URL: http(s)://host/path or file:///path, of ASCII letters, digits, '.', '_', '+', '%', "
     "'~', '-' and yum variables such as $basearch between slashes"),
    ({"RedHat": {"repos": [{**VAULT, "baseurl": "https://mirror.example.com/$(reboot)/"}]}},
     f"{WHERE}:repos:0:baseurl: 'https://mirror.example.com/$(reboot)/' is not a repository "
     "URL: http(s)://host/path or file:///path, of ASCII letters, digits, '.', '_', '+', '%', "
     "'~', '-' and yum variables such as $basearch between slashes"),
    ({"RedHat": {"repos": [{**VAULT, "name": "CentOS 7 base"}]}},
     f"{WHERE}:repos:0:name: 'CentOS 7 base' is not a plain repository name (ASCII letters, "
     "digits, _ . , ( ) + - and yum variables such as $releasever, no space, starting with a "
     "letter or digit), or empty for the id"),
])
def test_a_package_source_mistake_is_refused_naming_the_key_and_the_fix(packages, error):
    assert errors_with(packages) == [error]


def test_a_yum_variable_is_taken_whole_and_quickly_even_when_the_url_is_refused():
    # each $variable matches one way only: a long refused URL costs no backtracking
    url = "https://mirror.example.com/" + "$basearch" * 200 + "/%"
    assert not P.KINDS["repo_url"][0](url + "!")
    assert P.KINDS["repo_url"][0]("file:///srv/centos/$releasever/os/$basearch/")


def test_each_family_gets_its_repositories_with_their_defaults_and_fromrepo_as_yum_takes_it():
    packages = {"RedHat": {"repos": [VAULT, {**VAULT, "id": "updates", "name": "upd",
                                             "gpgcheck": False,
                                             "baseurl": "https://vault.centos.org/u/"}],
                           "fromrepo": ["base", "updates", "epel"]}}
    assert P.packages_for(packages, "RedHat") == {
        "repos": [{**VAULT, "name": "base", "gpgcheck": True},
                  {"id": "updates", "name": "upd", "gpgcheck": False, "gpgkey": VAULT["gpgkey"],
                   "baseurl": "https://vault.centos.org/u/"}],
        "fromrepo": "base,updates,epel"}
    nothing = {"repos": [], "fromrepo": ""}
    assert P.packages_for(packages, "Debian") == P.packages_for(packages, None) == nothing
    assert P.packages_for(None, "RedHat") == P.packages_for({"RedHat": {}}, "RedHat") == nothing


@pytest.mark.parametrize("family, repos", [("RedHat", 1), ("Debian", 0)])
def test_a_minions_settings_carry_its_familys_package_sources(family, repos):
    out = P.for_minion(example_pillar(), "cfy-mgr1.example.com",
                       grains={"id": "cfy-mgr1.example.com", "os_family": family})
    assert out["errors"] == []
    assert (len(out["packages"]["repos"]), out["packages"]["fromrepo"]) == (
        repos, "cloudify_ha-os" if repos else "")


def test_an_invalid_pillar_gives_no_package_source():
    pillar = example_pillar()
    pillar["packages"]["RedHat"]["repos"][0]["gpgcheck"] = "no"
    out = P.for_minion(pillar, "cfy-mgr1.example.com", grains={"os_family": "RedHat"})
    assert out["errors"] and out["packages"] == {"repos": [], "fromrepo": ""}


def test_the_readmes_el7_pillar_is_valid_and_rewrites_centos_base_repos_sections():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## EL7 today", 1)[1].split("\n## ", 1)[0]
    example = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    assert errors_with(example["cloudify_ha"]["packages"]) == []
    repos = P.packages_for(example["cloudify_ha"]["packages"], "RedHat")["repos"]
    assert [r["id"] for r in repos] == ["base", "updates", "extras"]
    assert all(r["gpgcheck"] and r["baseurl"].startswith("http://vault.centos.org/7.9.2009/")
               for r in repos)
