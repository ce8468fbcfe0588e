"""_utils/cloudify_ha_pillar.py: the pillar's validation, the plan, and the secret helpers."""

import base64
import copy

import pytest

from formula_code import EXAMPLE_SECRETS, example_pillar, pillar_util

P = pillar_util()
PROD = "cloudify_ha:clusters:prod"
MGR1, LB1, CLI1 = "cfy-mgr1.example.com", "cfy-lb1.example.com", "admin1.example.com"
DROP = object()  # with_change(): remove the key instead of setting it


def with_change(path, value, pillar=None):
    """pillar.example (or `pillar`) with one value under clusters:prod changed: path is
    colon-separated, list indices as digits; DROP removes the key."""
    pillar = copy.deepcopy(pillar) if pillar is not None else example_pillar()
    *parents, last = path.split(":")
    node = pillar["clusters"]["prod"]
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key = int(last) if isinstance(node, list) else last
    if value is DROP:
        del node[key]
    else:
        node[key] = value
    return pillar


def keys_of(errors):
    """The pillar key each message starts with (the part before the first ': ')."""
    return [error.split(": ", 1)[0] for error in errors]


def second_cluster():
    """A valid cluster 'staging' beside prod: its own managers, addresses and database."""
    staging = copy.deepcopy(example_pillar()["clusters"]["prod"])
    staging["leader"] = "stg-mgr1"
    staging["managers"] = [
        {"name": f"stg-mgr{i}", "minion_id": f"stg-mgr{i}.example.com",
         "private_ip": f"10.1.0.1{i}", "public_ip": f"192.0.2.2{i}"} for i in (1, 2, 3)]
    staging["database"]["host"] = "10.1.0.5"
    staging["loadbalancer"] = None
    return staging


def two_clusters():
    pillar = example_pillar()
    pillar["clusters"]["staging"] = second_cluster()
    return pillar


# ---- pillar.example ---------------------------------------------------------------------------
def test_pillar_example_is_valid_without_warnings():
    assert P.validate(example_pillar()) == ([], [])


def test_example_secrets_are_the_ones_in_pillar_example():
    settings = P.cluster_settings("prod", example_pillar()["clusters"]["prod"])
    db = settings["database"]
    admin_pw, db_pw, postgres_pw, check_pw = EXAMPLE_SECRETS
    assert P.secrets_in(settings) == set(EXAMPLE_SECRETS) | {db["ca_key"], db["client_key"]} | {
        f"admin:{admin_pw}", f"cloudify:{db_pw}", f"postgres:{postgres_pw}",
        f"cloudify_ha_check:{check_pw}"}
    assert db["ca_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")


def test_plan_of_pillar_example():
    result = P.plan(example_pillar())
    assert (result["errors"], result["warnings"], list(result["clusters"])) == ([], [], ["prod"])
    prod = result["clusters"]["prod"]
    assert prod["name"] == "prod"
    assert prod["leader_manager"] == {"name": "cfy-mgr1", "minion_id": "cfy-mgr1.example.com",
                                      "private_ip": "10.0.0.11", "public_ip": "192.0.2.11"}
    assert [m["name"] for m in prod["followers"]] == ["cfy-mgr2", "cfy-mgr3"]
    assert prod["loadbalancer"] == dict(P.LOADBALANCER_DEFAULTS,
                                        minion_ids=["cfy-lb1.example.com"],
                                        check_password="CHANGE-ME-check-password")


def test_plan_follows_the_named_leader_not_the_list_order():
    prod = P.plan(with_change("leader", "cfy-mgr2"))["clusters"]["prod"]
    assert prod["leader_manager"]["name"] == "cfy-mgr2"
    assert [m["name"] for m in prod["followers"]] == ["cfy-mgr1", "cfy-mgr3"]


def test_plan_only_builds_the_named_cluster():
    result = P.plan(two_clusters(), only="staging")
    assert (result["errors"], list(result["clusters"])) == ([], ["staging"])
    assert result["clusters"]["staging"]["leader_manager"]["name"] == "stg-mgr1"


def test_plan_with_an_unknown_cluster_is_an_error_and_builds_nothing():
    assert P.plan(two_clusters(), only="qa") == {
        "errors": ["cluster 'qa' (from the orchestration's pillar 'cluster') is not defined "
                   "under cloudify_ha:clusters; defined: prod, staging"],
        "warnings": [],
        "clusters": {},
    }


def test_plan_with_an_error_builds_nothing():
    result = P.plan(with_change("leader", DROP))
    assert keys_of(result["errors"]) == [f"{PROD}:leader"]
    assert result["clusters"] == {}


# ---- single mistakes --------------------------------------------------------------------------
MISTAKES = [
    # (path under clusters:prod, value, the key the error names, a fragment of its fix)
    ("leader", DROP, "leader", "required; name the one manager"),
    ("leader", "cfy-mgr9", "leader", "'cfy-mgr9' is not the name of a manager"),
    ("leader", ["cfy-mgr1", "cfy-mgr2"], "leader", "exactly one leader per cluster"),
    ("leadr", "cfy-mgr1", "leadr", "unknown key (did you mean 'leader'?)"),
    ("managers", [], "managers", "list the cluster's managers"),
    ("managers:1", "cfy-mgr2", "managers:1", "must be a mapping"),
    ("managers:1:private_ip", "10.0.0.300", "managers:1:private_ip", "is not an IPv4 address"),
    ("managers:2:public_ip", DROP, "managers:2:public_ip", "required"),
    ("managers:1:minion_id", "", "managers:1:minion_id", "required"),
    ("managers:1:name", "cfy mgr2", "managers:1:name", "is not a valid node name"),
    ("managers:2:name", "cfy-mgr2", "managers:2:name",
     f"used twice (also at {PROD}:managers:1)"),
    ("managers:2:minion_id", "cfy-mgr1.example.com", "managers:2:minion_id",
     f"used twice (also at {PROD}:managers:0)"),
    ("managers:2:private_ip", "10.0.0.11", "managers:2:private_ip", "used twice"),
    ("managers:1:minion_id", ["a", "b"], "managers:1:minion_id", "one minion id, not a list"),
    ("managers:1:database_ip", "10.0.0.6", "managers:1:database_ip", "a cluster has ONE database"),
    ("managers:1:pubic_ip", "192.0.2.12", "managers:1:pubic_ip", "did you mean 'public_ip'?"),
    ("admin:password", DROP, "admin:password", "required secret is missing"),
    ("admin:password", 1234, "admin:password", "must be a string (quote it in YAML)"),
    ("database:password", "", "database:password", "required secret is missing"),
    ("database:postgres_password", DROP, "database:postgres_password", "required secret"),
    # what 4.6 can carry (README "Safety"); each message hides the value
    ("admin:password", "short-7", "admin:password", "shorter than 8 characters"),
    ("admin:password", "p\u00e4ssword-1", "admin:password", "non-ASCII or control character"),
    ("admin:password", "pass\tword-1", "admin:password", "non-ASCII or control character"),
    ("database:password", "two words", "database:password", "_ - . , + = ^ @"),
    ("database:password", "it's-a-pw", "database:password", "through a shell"),
    ("database:password", "a$HOME-pw", "database:password", "an SQL literal, a .pgpass line"),
    ("database:password", "p:w-colon", "database:password", "_ - . , + = ^ @"),
    ("database:password", "back\\slash", "database:password", "_ - . , + = ^ @"),
    ("database:password", "pct%41-pw", "database:password", "_ - . , + = ^ @"),
    ("database:password", "slash/pw-1", "database:password", "_ - . , + = ^ @"),
    ("database:password", "d\u00e9j\u00e0-vu-pw", "database:password", "_ - . , + = ^ @"),
    ("database:password", "cloudify", "database:password", "the same as database:username"),
    ("database:password", "Db-pw-7", "database:password", "shorter than 8 characters"),
    ("database:postgres_password", "pg*glob-pw", "database:postgres_password", "_ - . , + = ^"),
    ("database:postgres_password", "POSTGRES", "database:postgres_password",
     "the same as the superuser's name"),
    ("database:host", DROP, "database:host", "required; the external PostgreSQL's address"),
    ("database:host", "db host!", "database:host", "is not an IPv4 address or host name"),
    ("database:host", ["10.0.0.5"], "database:host", "is not an IPv4 address or host name"),
    ("database:port", 5433, "database:port", "on port 5432 only"),
    ("database:port", "5432", "database:port", "is not a TCP port number"),
    ("database:ca_cert", "", "database:ca_cert", "over SSL only"),
    ("database:client_cert", "", "database:client_cert", "required (PEM)"),
    ("database:client_key", DROP, "database:client_key", "required on the managers"),
    ("database:ca_key", "", "database:ca_key", "refuses it without its key"),
    ("database:name", "", "database:name", "must be a non-empty string"),
    ("database:pasword", "x", "database:pasword", "did you mean 'password'?"),
    ("rest:ssl", "yes", "rest:ssl", "must be true or false"),
    ("rest:ssl", True, "rest:ssl", "4.6 cannot build this cluster"),
    ("allow_database_reset", "yes", "allow_database_reset", "must be true or false"),
    ("replace_stale", 1, "replace_stale", "must be true or false"),
    ("remove_failed_joins", "no", "remove_failed_joins", "must be true or false"),
    # every wait: a whole number of seconds within its bounds, the error saying what it waits for
    ("waits:offline", 0, "waits:offline", "0 must be a whole number of seconds from 1 to 3600: "
     "how long the formula waits for a wiped or rebuilt host's old entry to show offline"),
    ("waits:offline", "60", "waits:offline", "'60' must be a whole number of seconds from 1"),
    ("waits:offline", 7200, "waits:offline", "seconds from 1 to 3600"),
    ("waits:offline", True, "waits:offline", "seconds from 1 to 3600"),
    ("waits:active_node", -1, "waits:active_node", "from 0 to 3600: how long the formula waits "
     "for a new active node"),
    ("waits:active_node", 1.5, "waits:active_node", "whole number of seconds from 0 to 3600"),
    ("waits:active_node", None, "waits:active_node", "whole number of seconds from 0 to 3600"),
    ("waits:cluster_start", 59, "waits:cluster_start", "from 60 to 86400: how long the formula "
     "waits for `cfy cluster start` (its --timeout"),
    ("waits:cluster_start", "900", "waits:cluster_start", "seconds from 60 to 86400"),
    ("waits:started", 0, "waits:started", "from 1 to 3600: how long the formula waits after "
     "`cfy cluster start`"),
    ("waits:online", 3601, "waits:online", "from 1 to 3600: how long the formula waits after a "
     "join"),
    ("waits:boot", False, "waits:boot", "from 1 to 3600: how long the formula waits for a "
     "rebooted member's REST service"),
    ("waits:install", 0, "waits:install", "seconds from 60 to 86400"),
    ("waits:install", True, "waits:install", "seconds from 60 to 86400"),
    ("waits:install", 10 ** 9, "waits:install", "from 60 to 86400"),
    ("waits:instal", 600, "waits:instal", "did you mean 'install'?"),
    ("waits", 60, "waits", "must be a mapping"),
    # the keys the waits replace: the error says where the value goes now
    ("offline_wait", 60, "offline_wait", f"moved to {PROD}:waits:offline"),
    ("installer:install_timeout", 1800, "installer:install_timeout",
     f"moved to {PROD}:waits:install"),
    ("cli_hosts", "admin1.example.com", "cli_hosts", "must be a list of minion ids"),
    ("firewall:backend", "ufw", "firewall:backend", "'ufw' is not one of"),
    ("firewall:enabled", "no", "firewall:enabled", "must be true or false"),
    # every source list: IPv4 addresses or networks; wider than a /8 (every address included)
    # only with its allow_wide_ key, which the error names beside it
    ("firewall:rest_sources", [], "firewall:rest_sources",
     f"empty, which opens the REST port to every address; list the addresses of the load "
     f"balancer and the CLI hosts (e.g. 10.0.0.20, 10.0.1.0/24), or set "
     f"{PROD}:firewall:allow_wide_rest_sources: true"),
    ("firewall:rest_sources", DROP, "firewall:rest_sources", "empty, which opens the REST port"),
    ("firewall:rest_sources:1", "0.0.0.0/0", "firewall:rest_sources:1",
     f"0.0.0.0/0 is wider than a /8 (it opens the REST port to more than 16 million addresses); "
     f"list narrower networks, or set {PROD}:firewall:allow_wide_rest_sources: true"),
    ("firewall:rest_sources:1", "10.0.0.0/7", "firewall:rest_sources:1", "wider than a /8"),
    ("firewall:rest_sources", "10.0.0.20", "firewall:rest_sources", "must be a list of IPv4"),
    ("firewall:rest_sources:0", "fd00::1", "firewall:rest_sources:0", "is not an IPv4 address"),
    ("firewall:allow_wide_rest_sources", "yes", "firewall:allow_wide_rest_sources",
     "must be true or false"),
    ("firewall:agent_sources:0", "0.0.0.0/0", "firewall:agent_sources:0",
     f"wider than a /8 (it opens 5671 and 53333 to more than 16 million addresses); list "
     f"narrower networks, or set {PROD}:firewall:allow_wide_agent_sources: true"),
    ("firewall:agent_sources:0", "10.0.2.1/24", "firewall:agent_sources:0", "host bits zero"),
    ("firewall:agent_sources", None, "firewall:agent_sources", "must be a list of IPv4"),
    ("firewall:allow_wide_agent_sources", 1, "firewall:allow_wide_agent_sources",
     "must be true or false"),
    ("firewall:agent_source", [], "firewall:agent_source", "did you mean 'agent_sources'?"),
    ("rest", None, "rest", "must be a mapping"),
    ("firewall", ["10.0.0.20"], "firewall", "must be a mapping"),
    ("loadbalancer", "haproxy", "loadbalancer", "must be a mapping (see pillar.example) or absent"),
    ("loadbalancer:minion_ids", [], "loadbalancer:minion_ids", "minion ids of the HAProxy host"),
    ("loadbalancer:port", 70000, "loadbalancer:port", "must be a whole number from 1 to 65535"),
    ("loadbalancer:fall", 0, "loadbalancer:fall", "must be a whole number from 1 to 100"),
    ("loadbalancer:rise", 10 ** 12, "loadbalancer:rise", "must be a whole number from 1 to 100"),
    ("loadbalancer:inter", "0", "loadbalancer:inter", "is not an HAProxy time from 100ms to 1h"),
    ("loadbalancer:inter", 50, "loadbalancer:inter", "a bare number is milliseconds"),
    ("loadbalancer:timeout_client", "999999999d", "loadbalancer:timeout_client",
     "from 1s to 24h"),
    ("database:name", "postgres", "database:name", "is PostgreSQL's own"),
    ("database:name", "composer", "database:name", "the installer drops"),
    ("installer:source", "http://repo.example.com/cfy.rpm", "installer:source",
     "give installer:source_hash"),
    ("installer:cli_source_hash", "sha256=" + "0" * 64, "installer:cli_source_hash",
     "given without installer:cli_source"),
    ("loadbalancer:inter", "2 seconds", "loadbalancer:inter", "is not an HAProxy time"),
    ("loadbalancer:bind", "any", "loadbalancer:bind", "is not an IPv4 address"),
    ("loadbalancer:ssl", True, "loadbalancer:ssl_cert", "required when loadbalancer:ssl is true"),
    ("loadbalancer:balance", "roundrobin", "loadbalancer:balance", "unknown key"),
    ("loadbalancer:log", "/dev/log local0", "loadbalancer:log", "is not a syslog address"),
    ("loadbalancer:log", "/etc/salt/master", "loadbalancer:log", "is not a syslog address"),
    ("loadbalancer:log", "10.0.0.9:0", "loadbalancer:log", "is not a syslog address"),
    ("loadbalancer:log", "10.0.0.9:514\n", "loadbalancer:log", "is not a syslog address"),
    ("loadbalancer:log", "syslog.example.com", "loadbalancer:log", "is not a syslog address"),
    ("loadbalancer:log_facility", "local8", "loadbalancer:log_facility",
     "is not a syslog facility"),
    ("loadbalancer:sources", [], "loadbalancer:sources", "lets nobody reach the load balancer"),
    ("loadbalancer:sources", ["10.0.0.0/33"], "loadbalancer:sources:0", "is not an IPv4"),
    ("loadbalancer:sources", "0.0.0.0/0", "loadbalancer:sources", "must be a list of IPv4"),
]


@pytest.mark.parametrize("firewall", [
    {"rest_sources": [], "allow_wide_rest_sources": True},
    {"rest_sources": ["0.0.0.0/0"], "allow_wide_rest_sources": True},
    {"rest_sources": ["10.0.0.0/8"], "agent_sources": ["10.0.0.0/8"]},
    {"agent_sources": ["0.0.0.0/0"], "allow_wide_agent_sources": True},
    {"agent_sources": []},
    # a disabled firewall opens nothing: its empty sources are no error
    {"enabled": False, "rest_sources": []},
], ids=["every address on purpose", "0.0.0.0/0 on purpose", "a /8", "agents everywhere on purpose",
        "no agent network", "disabled"])
def test_wide_sources_pass_with_their_allow_wide_key_and_a_8_without(firewall):
    pillar = example_pillar()
    pillar["clusters"]["prod"]["firewall"].update(firewall)
    assert P.validate(pillar, MGR1) == ([], [])


def test_a_public_load_balancer_is_open_to_everyone_by_default():
    pillar = with_change("loadbalancer:sources", DROP)
    assert P.validate(pillar, LB1) == ([], [])
    assert P.cluster_settings("prod", pillar["clusters"]["prod"])["loadbalancer"]["sources"] == [
        "0.0.0.0/0"]


@pytest.mark.parametrize(
    "path, value, key, fix", MISTAKES,
    ids=[f"{m[0]}={'<dropped>' if m[1] is DROP else m[1]!r}" for m in MISTAKES])
def test_one_mistake_is_one_error_naming_its_full_key(path, value, key, fix):
    # as the host that needs the key sees it: a manager (every secret but the LB's) or the LB
    errors, _warnings = P.validate(with_change(path, value),
                                   LB1 if key == "loadbalancer:ssl_cert" else MGR1)
    assert keys_of(errors) == [f"{PROD}:{key}"], errors
    assert fix in errors[0]


@pytest.mark.parametrize("log, facility", [("", ""), ("/dev/log", "local0"),
                                           ("/var/lib/haproxy/dev/log", "daemon"),
                                           ("127.0.0.1", "local2"), ("10.0.0.9:5140", "")])
def test_a_load_balancers_log_target_is_a_socket_or_an_address(log, facility):
    pillar = with_change("loadbalancer:log_facility", facility,
                         with_change("loadbalancer:log", log))
    assert P.validate(pillar, LB1)[0] == []


@pytest.mark.parametrize("key, value, fix", [
    ("haproxy_user", "hap roxy", "must be letters, digits"),
    ("haproxy_chroot", "var/lib/haproxy", "is not /var/lib/haproxy or a directory under it"),
    # the formula writes HAProxy's server states into the chroot: by allow-list, as every path
    ("haproxy_chroot", "/etc", "is not /var/lib/haproxy or a directory under it"),
    ("haproxy_log", "/etc/passwd", "is not a syslog address"),
    ("haproxy_log", "", "is not a syslog address"),
    ("haproxy_log_facility", "local", "is not a syslog facility"),
    ("haproxy_run_dir", "/run/../etc", "is not a plain absolute path, or ''"),
])
def test_the_load_balancer_hosts_platform_values_are_checked(key, value, fix):
    pillar = example_pillar()
    pillar.setdefault("lookup", {})[key] = value
    errors, _ = P.validate(pillar, LB1)
    assert keys_of(errors) == [f"cloudify_ha:lookup:{key}"] and fix in errors[0], errors


def test_an_admin_password_equal_to_its_username_is_refused_without_showing_it():
    pillar = with_change("admin:username", "administrator")
    errors, _ = P.validate(with_change("admin:password", "Administrator", pillar), MGR1)
    assert errors == [f"{PROD}:admin:password: is the same as admin:username; choose a password "
                      "that is not the user's name"]


@pytest.mark.parametrize("password", ["Db_sec.ret,+=^@-9", "12345678", "-leading-dash"])
def test_a_database_password_of_the_characters_4_6_carries_is_kept(password):
    pillar = with_change("database:password", password)
    assert P.validate(with_change("database:postgres_password", password, pillar), MGR1) == \
        ([], [])


@pytest.mark.parametrize("password", [" a b c d ", "it's \"quoted\" $HOME `id` \\ %41 :/?#",
                                      "-p --help", "~!@#$%^&*()_+{}|:<>?[];',./"])
def test_an_admin_password_of_any_printable_ascii_is_kept(password):
    """4.6 carries it: config.yaml (YAML), `cfy profiles set -p` (argv, no shell), JSON and
    Basic auth (test_install_join.py runs one through the real cfy and the installer)."""
    assert P.validate(with_change("admin:password", password), MGR1) == ([], [])


@pytest.mark.parametrize("section", ["admin", "database"])
def test_a_section_that_is_not_a_mapping_is_reported_not_a_crash(section):
    errors, _ = P.validate(with_change(section, "oops"), MGR1)
    assert keys_of(errors)[0] == f"{PROD}:{section}"
    assert "must be a mapping" in errors[0]
    # what the section should have held is reported too, each under its own key
    assert f"{PROD}:{section}:password" in keys_of(errors)


def test_an_invalid_cluster_name():
    pillar = example_pillar()
    pillar["clusters"]["prod cluster"] = pillar["clusters"].pop("prod")
    errors, _ = P.validate(pillar)
    assert errors == ["cloudify_ha:clusters:'prod cluster': cluster name must be letters, "
                      "digits, '.', '_' or '-' (ASCII, at most 63; quote it in YAML if it reads "
                      "as a number or true/false)"]


def test_a_cluster_that_is_not_a_mapping():
    assert P.validate({"clusters": {"prod": "cfy-mgr1"}}) == (
        [f"{PROD}: must be a mapping of cluster settings (see pillar.example)"], [])


@pytest.mark.parametrize("pillar", [None, {}, {"clusters": {}}, {"clusters": ["prod"]}, "prod"])
def test_no_cluster_at_all(pillar):
    assert P.validate(pillar) == (
        ["cloudify_ha:clusters: no cluster defined; add at least one cluster under "
         "cloudify_ha:clusters:<name> (see pillar.example)"], [])


# ---- each role's secrets ------------------------------------------------------------------------
def without_secrets(*paths):
    pillar = example_pillar()
    for path in paths:
        section, key = path.split(":")
        del pillar["clusters"]["prod"][section][key]
    return pillar


CHECK = "loadbalancer:check_password"


MANAGER_ONLY = ("database:password", "database:postgres_password", "database:ca_key",
                "database:client_key")


@pytest.mark.parametrize("minion", [LB1, CLI1, None], ids=["load balancer", "CLI host", "master"])
def test_a_host_that_is_no_manager_needs_none_of_the_managers_secrets(minion):
    assert P.validate(without_secrets(*MANAGER_ONLY), minion) == ([], [])


def test_a_cli_host_needs_the_admin_password_and_not_the_check_users():
    errors, _ = P.validate(without_secrets("admin:password", CHECK, *MANAGER_ONLY), CLI1)
    assert keys_of(errors) == [f"{PROD}:admin:password"]


def test_a_load_balancer_needs_the_check_users_password_and_never_the_admins():
    assert P.validate(without_secrets("admin:password", *MANAGER_ONLY), LB1) == ([], [])
    errors, _ = P.validate(without_secrets(CHECK, *MANAGER_ONLY), LB1)
    assert errors == [f"{PROD}:{CHECK}: required secret is missing; set it in this minion's "
                      "pillar (the health check's user, created by the orchestration; ideally "
                      "from an encrypted source such as GPG pillar)"]


def test_the_master_needs_no_secret_but_checks_one_it_holds():
    assert P.validate(without_secrets("admin:password", CHECK, *MANAGER_ONLY)) == ([], [])
    errors, _ = P.validate(with_change("admin:password", 1234))
    assert keys_of(errors) == [f"{PROD}:admin:password"]


def test_a_manager_needs_every_secret():
    errors, _ = P.validate(without_secrets("admin:password", CHECK, *MANAGER_ONLY), MGR1)
    assert sorted(keys_of(errors)) == sorted(f"{PROD}:{k}" for k in ("admin:password",
                                                                      *MANAGER_ONLY, CHECK))


def test_a_manager_of_a_cluster_without_a_load_balancer_needs_no_check_password():
    pillar = with_change("loadbalancer", DROP)
    assert P.validate(pillar, MGR1) == ([], [])


@pytest.mark.parametrize("user, password, key, fix", [
    ("cloudify ha", "check-pw-123", "check_user", "is not a Cloudify user name 4.6 takes"),
    ("_check", "check-pw-123", "check_user", "starting with a letter"),
    ("admin", "check-pw-123", "check_user", "is admin:username"),
    ("haproxy", "short", "check_password", "must be 8 to 256 characters long"),
    ("haproxy", "x" * 257, "check_password", "must be 8 to 256 characters long"),
    ("haproxy", "HAProxy", "check_password", "must be 8 to 256"),
    ("haproxyhaproxy", "HAProxyHAProxy", "check_password", "is the same as"),
    ("haproxy", "CHANGE-ME-admin-password", "check_password", "is admin:password"),
    ("haproxy", "p\u00e4ss-word-1", "check_password", "non-ASCII or control character"),
    ("haproxy", "pass\nword-12", "check_password", "non-ASCII or control character"),
    ("haproxy", 12345678, "check_password", "must be a string"),
])
def test_a_check_user_4_6_or_the_formula_would_refuse(user, password, key, fix):
    pillar = with_change("loadbalancer:check_user", user,
                         with_change("loadbalancer:check_password", password))
    errors, _ = P.validate(pillar, MGR1)
    assert keys_of(errors) == [f"{PROD}:loadbalancer:{key}"] and fix in errors[0], errors
    assert not isinstance(password, str) or password not in errors[0]


def test_the_check_password_is_a_secret_of_the_cluster_and_of_no_public_setting():
    settings = P.plan(example_pillar())["clusters"]["prod"]
    assert "CHANGE-ME-check-password" in P.secrets_in(settings)
    assert "check_password" not in P.public(settings)["loadbalancer"]


def test_the_settings_of_any_role_hold_no_secret():
    pillar = example_pillar()  # every secret and key in it says CHANGE-ME
    for minion in (MGR1, LB1, CLI1, "web1.example.com"):
        out = P.for_minion(pillar, minion)
        assert out["errors"] == [] and bool(out["clusters"]) is (minion != "web1.example.com")
        assert "CHANGE-ME" not in repr(out) and "PRIVATE KEY" not in repr(out), minion


# ---- across clusters ---------------------------------------------------------------------------
def test_two_valid_clusters():
    assert P.validate(two_clusters()) == ([], [])


def test_two_clusters_cannot_share_a_database_server():
    pillar = two_clusters()
    pillar["clusters"]["staging"]["database"]["host"] = "10.0.0.5"
    errors, _ = P.validate(pillar)
    assert keys_of(errors) == ["cloudify_ha:clusters:staging:database:host"]
    assert f"10.0.0.5 is also the database of {PROD}" in errors[0]


def test_a_minion_cannot_manage_in_two_clusters():
    pillar = two_clusters()
    pillar["clusters"]["staging"]["managers"][2]["minion_id"] = "cfy-mgr3.example.com"
    errors, _ = P.validate(pillar)
    assert keys_of(errors) == ["cloudify_ha:clusters:staging:managers:2:minion_id"]
    assert f"also at {PROD}:managers:2" in errors[0] and "across all clusters" in errors[0]


@pytest.mark.parametrize("change, key, other", [
    (("prod", "cli_hosts", 0, "cfy-mgr2.example.com"), f"{PROD}:cli_hosts:0",
     f"a manager (at {PROD}:managers:1)"),
    (("staging", "cli_hosts", 0, "cfy-mgr3.example.com"), "cloudify_ha:clusters:staging:cli_hosts:0",
     f"a manager (at {PROD}:managers:2)"),
    (("prod", "loadbalancer", "minion_ids", 0, "stg-mgr1.example.com"),
     f"{PROD}:loadbalancer:minion_ids:0",
     "a manager (at cloudify_ha:clusters:staging:managers:0)"),
    (("prod", "loadbalancer", "minion_ids", 0, "admin1.example.com"),
     f"{PROD}:loadbalancer:minion_ids:0", f"a CLI host (at {PROD}:cli_hosts:0)"),
])
def test_a_minion_has_one_role_across_the_pillar(change, key, other):
    """A manager as a CLI host gets a second cfy; a manager or a CLI host as a load balancer
    gets HAProxy on the REST port: each fails only at its last step, after hosts were touched."""
    pillar = two_clusters()
    pillar["clusters"]["staging"]["cli_hosts"] = ["admin2.example.com"]
    cluster, *path, index, mid = change
    node = pillar["clusters"][cluster]
    for part in path:
        node = node[part]
    node[index] = mid
    errors, _ = P.validate(pillar)
    assert keys_of(errors) == [key], errors
    assert errors[0] == (f"{key}: '{mid}' is also {other}: a minion has one role across the "
                         f"pillar; make another host the "
                         f"{'load balancer' if 'loadbalancer' in key else 'CLI host'}")


def test_one_cli_host_or_load_balancer_may_serve_two_clusters():
    pillar = two_clusters()
    pillar["clusters"]["staging"]["cli_hosts"] = ["admin1.example.com"]
    pillar["clusters"]["staging"]["loadbalancer"] = copy.deepcopy(
        pillar["clusters"]["prod"]["loadbalancer"])
    assert P.validate(pillar) == ([], [])


# ---- warnings ------------------------------------------------------------------------------------
def test_two_managers_warn_about_the_even_count_and_ha():
    pillar = example_pillar()
    del pillar["clusters"]["prod"]["managers"][2]
    errors, warnings = P.validate(pillar)
    assert errors == []
    assert keys_of(warnings) == [f"{PROD}:managers", f"{PROD}:managers"]
    assert "an even count" in warnings[0] and "at least 3" in warnings[1]


def test_one_manager_is_valid_with_an_ha_warning_and_may_use_rest_ssl():
    pillar = with_change("rest:ssl", True)
    pillar["clusters"]["prod"]["managers"][1:] = []
    assert P.validate(pillar) == ([], [
        f"{PROD}:managers: 1 manager(s): high availability needs at least 3"])


# ---- cluster_settings, find_manager -----------------------------------------------------------
def test_cluster_settings_defaults():
    settings = P.cluster_settings("c1", {})
    assert settings == dict(copy.deepcopy(P.CLUSTER_DEFAULTS), name="c1")
    assert (settings["database"]["port"], settings["database"]["name"],
            settings["admin"]["username"], settings["admin"]["tenant"],
            settings["waits"]["install"], settings["allow_database_reset"],
            settings["replace_stale"], settings["firewall"]["enabled"],
            settings["loadbalancer"]) == (5432, "cloudify_db", "admin", "default_tenant", 1800,
                                          False, False, True, None)


def test_cluster_settings_merge_sections_key_by_key():
    settings = P.cluster_settings("c1", {"database": {"host": "db1"},
                                         "loadbalancer": {"port": 8080}})
    assert settings["database"] == dict(P.CLUSTER_DEFAULTS["database"], host="db1")
    assert settings["loadbalancer"] == dict(P.LOADBALANCER_DEFAULTS, port=8080)


def test_cluster_settings_never_share_state_with_the_defaults():
    settings = P.cluster_settings("c1", {})
    settings["managers"].append({"name": "x"})
    settings["database"]["host"] = "db1"
    assert P.cluster_settings("c2", None)["managers"] == []
    assert P.CLUSTER_DEFAULTS["database"]["host"] is None


def test_find_manager_by_minion_id():
    settings, manager = P.find_manager(two_clusters(), "stg-mgr2.example.com")
    assert settings["name"] == "staging"
    assert manager == {"name": "stg-mgr2", "minion_id": "stg-mgr2.example.com",
                       "private_ip": "10.1.0.12", "public_ip": "192.0.2.22"}


def test_find_manager_in_a_named_cluster_that_does_not_list_the_minion():
    settings, manager = P.find_manager(two_clusters(), "admin1.example.com", cluster="staging")
    assert (settings["name"], manager) == ("staging", None)


@pytest.mark.parametrize("minion_id, cluster", [("admin1.example.com", None),
                                                ("cfy-mgr1.example.com", "qa")])
def test_find_manager_finds_nothing(minion_id, cluster):
    assert P.find_manager(two_clusters(), minion_id, cluster) == (None, None)


# ---- secrets -------------------------------------------------------------------------------------
def test_secrets_in_includes_the_client_key_and_skips_empty_values():
    settings = P.cluster_settings("c1", {"admin": {"password": "a-pw"},
                                         "database": {"password": "", "postgres_password": "pg-pw",
                                                      "client_key": "-----KEY-----"}})
    assert P.secrets_in(settings) == {"a-pw", "pg-pw", "-----KEY-----", "admin:a-pw",
                                      "postgres:pg-pw"}


def test_scrub_replaces_longer_secrets_first():
    # "pass" first would leave "******word1" behind: part of the longer secret in clear
    assert P.scrub("password1, then pass", {"pass", "password1"}) == "******, then ******"


@pytest.mark.parametrize("shown", [
    'p \\"w\\u00e9',  # JSON
    'p \\"w\\xE9',  # YAML, double-quoted
    "p \"w\\xe9",  # a Python repr
    "p%20%22w%C3%A9", "p+%22w%C3%A9", "p%20%22w%c3%a9",  # URL-encoded, both spaces, both cases
    "cCAid8Op",  # base64
])
def test_scrub_hides_a_secret_however_it_was_escaped_or_encoded(shown):
    assert P.scrub(f"<{shown}>", {'p "w\u00e9'}) == "<******>"


def test_scrub_hides_http_basic_auth_of_a_clusters_admin():
    settings = P.cluster_settings("prod", example_pillar()["clusters"]["prod"])
    header = "Basic " + base64.b64encode(b"admin:CHANGE-ME-admin-password").decode()
    assert P.scrub(f"Authorization: {header}", P.secrets_in(settings)) == (
        "Authorization: Basic ******")


def test_scrub_replaces_every_occurrence_and_ignores_empty_secrets():
    assert P.scrub("s3cret and s3cret", {"s3cret", ""}) == "****** and ******"


@pytest.mark.parametrize("value", [None, 42, ["s3cret"], {"pw": "s3cret"}])
def test_scrub_leaves_non_strings_untouched(value):
    assert P.scrub(value, {"s3cret"}) is value


# cloudify_ha:tofs: an operator's own templates, looked for first

GRAINS = {"id": MGR1, "os_family": "RedHat", "roles": ["web", "../x", ""], "num": 7,
          "nested": {"site": "eu-1"}}


def test_tofs_sources_without_pillar_look_in_the_formulas_directory_by_id_then_os_family():
    sources = P.tofs_sources(None, "cloudify_ha", GRAINS)
    assert set(sources) == set(P.TOFS_FILES)
    assert sources["cloudify_ha-loadbalancer-config"] == [
        f"salt://cloudify_ha/files/{MGR1}/haproxy.cfg.jinja",
        "salt://cloudify_ha/files/RedHat/haproxy.cfg.jinja",
        "salt://cloudify_ha/files/default/haproxy.cfg.jinja"]


def test_tofs_sources_try_the_pillars_names_first_in_each_directory_then_the_formulas_own():
    tofs = {"path_prefix": "site/cfy", "files_switch": ["nested:site", "roles", "num", "missing"],
            "source_files": {"cloudify_ha-firewall-nftables-file": ["eu.nft.jinja"]}}
    sources = P.tofs_sources(tofs, "cloudify_ha", GRAINS)
    # a list grain gives each element; a value that is no plain path segment is left out
    assert sources["cloudify_ha-firewall-nftables-file"] == [
        "salt://site/cfy/files/eu-1/eu.nft.jinja", "salt://site/cfy/files/eu-1/firewall.nft.jinja",
        "salt://site/cfy/files/web/eu.nft.jinja", "salt://site/cfy/files/web/firewall.nft.jinja",
        "salt://site/cfy/files/7/eu.nft.jinja", "salt://site/cfy/files/7/firewall.nft.jinja",
        "salt://site/cfy/files/default/eu.nft.jinja",
        "salt://site/cfy/files/default/firewall.nft.jinja",
        "salt://cloudify_ha/files/default/firewall.nft.jinja"]
    assert sources["cloudify_ha-firewall-iptables-file"][-1] == (
        "salt://cloudify_ha/files/default/firewall.iptables.jinja")


def test_a_grain_value_cannot_climb_out_of_the_site_directory():
    grains = {"id": "../../etc", "os_family": "a/b"}
    assert P.tofs_sources(None, "cloudify_ha", grains)["cloudify_ha-loadbalancer-config"] == [
        "salt://cloudify_ha/files/default/haproxy.cfg.jinja"]


@pytest.mark.parametrize("tofs, key", [
    ("site", "cloudify_ha:tofs"),
    ({"path": "x"}, "cloudify_ha:tofs:path"),
    ({"path_prefix": "/srv/site"}, "cloudify_ha:tofs:path_prefix"),
    ({"path_prefix": "site/../etc"}, "cloudify_ha:tofs:path_prefix"),
    ({"path_prefix": "site//x"}, "cloudify_ha:tofs:path_prefix"),
    ({"path_prefix": "si te"}, "cloudify_ha:tofs:path_prefix"),
    ({"files_switch": "id"}, "cloudify_ha:tofs:files_switch"),
    ({"files_switch": ["id", "os family"]}, "cloudify_ha:tofs:files_switch"),
    ({"source_files": ["haproxy.cfg.jinja"]}, "cloudify_ha:tofs:source_files"),
    ({"source_files": {"cloudify_ha-manager": ["x"]}},
     "cloudify_ha:tofs:source_files:cloudify_ha-manager"),
    ({"source_files": {"cloudify_ha-loadbalancer-config": []}},
     "cloudify_ha:tofs:source_files:cloudify_ha-loadbalancer-config"),
    ({"source_files": {"cloudify_ha-loadbalancer-config": "haproxy.cfg"}},
     "cloudify_ha:tofs:source_files:cloudify_ha-loadbalancer-config"),
    ({"source_files": {"cloudify_ha-loadbalancer-config": ["../haproxy.cfg"]}},
     "cloudify_ha:tofs:source_files:cloudify_ha-loadbalancer-config"),
])
def test_a_bad_tofs_value_is_one_error_naming_its_key(tofs, key):
    pillar = example_pillar()
    pillar["tofs"] = tofs
    errors, _ = P.validate(pillar)
    assert keys_of(errors) == [key], errors


def test_a_valid_tofs_section_passes_and_reaches_the_minions_settings():
    pillar = example_pillar()
    pillar["tofs"] = {"path_prefix": "site", "files_switch": ["id"], "source_files": {
        "cloudify_ha-loadbalancer-config": ["prod/haproxy.cfg.jinja"]}}
    assert P.validate(pillar) == ([], [])
    out = P.for_minion(pillar, LB1, tplroot="cloudify_ha", grains={"id": LB1})
    assert out["tofs"]["cloudify_ha-loadbalancer-config"] == [
        f"salt://site/files/{LB1}/prod/haproxy.cfg.jinja",
        f"salt://site/files/{LB1}/haproxy.cfg.jinja", "salt://site/files/default/prod/haproxy.cfg.jinja",
        "salt://site/files/default/haproxy.cfg.jinja",
        "salt://cloudify_ha/files/default/haproxy.cfg.jinja"]


def test_the_formula_in_a_directory_that_is_no_plain_name_is_refused():
    out = P.for_minion(example_pillar(), LB1, tplroot="../x", grains={})
    assert out["tofs"] == {} and out["me"]["lb_of"] == []
    assert len(out["errors"]) == 1 and "'../x' is not a plain name" in out["errors"][0]
    assert out["errors"][0].endswith(": rename it")


# the minion-id rule is written out where it runs in a loader context of its own (the py
# orchestration and reactor renderers have no __utils__): the copies must not drift
MINION_ID_COPIES = {"_utils/cloudify_ha_orch.py": "MINION_ID_RE", "_runners/cloudify_ha.py":
                    "MINION_ID", "cloudify_ha/reactor/rejoin.sls": "MINION_ID",
                    "cloudify_ha/orch/rejoin.sls": "PLAIN"}


@pytest.mark.parametrize("path, name", sorted(MINION_ID_COPIES.items()))
def test_every_copy_of_the_minion_id_rule_is_the_pillars(path, name):
    import re  # pylint: disable=import-outside-toplevel

    from formula_code import REPO  # pylint: disable=import-outside-toplevel
    found = re.findall(rf'^{name} = re\.compile\(r"([^"]+)", re\.ASCII\)$',
                       (REPO / path).read_text(), re.M)
    assert found == [P.MINION_ID_RE.pattern]
    assert P.MINION_ID_RE.flags & re.ASCII


# ---- the license -------------------------------------------------------------------------------
LICENSE = example_pillar()["clusters"]["prod"]["license"]


def a_license(**fields):
    """pillar.example's license text with `fields` changed under `license:` (None drops one)."""
    document = P.yaml.safe_load(LICENSE)
    for key, value in fields.items():
        if value is None:
            document["license"].pop(key, None)
        else:
            document["license"][key] = value
    return P.yaml.safe_dump(document)


def test_the_example_license_is_read_as_4_6_answers_it():
    fields, signature = P.license_document(LICENSE)
    assert signature.startswith(b"CHANGE-ME")
    assert P.license_summary(fields) == {
        "customer_id": "CHANGE-ME", "expiration_date": "2030-12-31", "license_edition": "Spire",
        "trial": False, "cloudify_version": "4.6", "capabilities": None}
    # as GET /license answers it: the same summary
    assert P.license_summary(dict(fields, expiration_date="2030-12-31T00:00:00.000Z")) == \
        P.license_summary(fields)


@pytest.mark.parametrize("value, fix", [
    ("license: [", "is not YAML"),
    ("just text", "holds no `license:` mapping"),
    ("license:\n  customer_id: x\n", "has no binary `signature`"),
    ("license:\n  customer_id: x\nsignature: not-binary\n", "has no binary `signature`"),
    (a_license(customer_id=None), "has no license:customer_id"),
    (a_license(owner="me"), "4.6 does not know under `license:`: owner"),
    (a_license(expiration_date="someday"), "'someday' is not a date (MM/DD/YYYY)"),
    (a_license(trial=True, expiration_date="01/31/2020"),
     "a trial license that expired on 2020-01-31"),
    (["license"], "must be the license file's text"),
])
def test_a_license_4_6_would_refuse_is_refused_naming_the_key(value, fix):
    errors, _ = P.validate(with_change("license", value), MGR1)
    assert keys_of(errors) == [f"{PROD}:license"] and fix in errors[0], errors


def test_a_license_for_an_older_cloudify_than_the_installers_is_refused():
    pillar = with_change("installer:version", "4.6.1", with_change("license", a_license(
        cloudify_version="4.6")))
    errors, _ = P.validate(pillar, MGR1)
    assert keys_of(errors) == [f"{PROD}:license"] and "for Cloudify 4.6 and below" in errors[0]
    # a license for the same version, for no version, an expired paying one: taken
    for fields in ({"cloudify_version": "4.6.1"}, {"cloudify_version": None},
                   {"expiration_date": "01/31/2020", "cloudify_version": "4.6.1"}):
        assert P.validate(with_change("license", a_license(**fields), pillar), MGR1)[0] == []


def test_no_license_is_fine_and_a_host_is_told_only_whether_there_is_one():
    assert P.validate(with_change("license", DROP), MGR1)[0] == []
    assert P.validate(with_change("license", ""), MGR1)[0] == []
    settings = P.plan(example_pillar())["clusters"]["prod"]
    assert P.public(settings)["license"] is True
    assert P.public(P.plan(with_change("license", DROP))["clusters"]["prod"])["license"] is False
