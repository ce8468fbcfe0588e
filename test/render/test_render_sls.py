"""Every minion-side SLS, for every role of pillar.example and of the lab's pillar, compiled by
Salt's own HighState: the state IDs and functions each role gets, and that Salt can call each
of them with the arguments the SLS gives (the state engine's own checks, before it runs one)."""

import pytest
import yaml

from render_setup import (CLI, FOLLOWER, LB, LEADER, LOCK, REPO, STRANGER, UNLOCKED_SLS, Minion,
                          args_of, functions_of, minion_sls, opts_for, problems_of)

INSTALLER = {"cloudify_ha-installer-prerequisites": "pkg.installed",
             "cloudify_ha-installer-package": "pkg.installed",
             "cloudify_ha-installer-psql": "pkg.installed"}
NOT_A_MANAGER = {"cloudify_ha-installer-not-a-manager": "cloudify_ha.refused"}
MANAGER_INSTALLED = {"cloudify_ha-manager-installed": "cloudify_ha.manager_installed"}
SYNC = {**{f"cloudify_ha-sync-{kind}": f"saltutil.sync_{kind}"
           for kind in ("utils", "modules", "states", "beacons", "grains")},
        "cloudify_ha-sync-reload-modules": "module.run"}
# the same for every role: they name no role
EVERYONE = {
    "cloudify_ha": {"cloudify_ha-what-to-run": "test.succeed_without_changes"},
    "cloudify_ha.sync": SYNC,
    "cloudify_ha.reactor.master": {"cloudify_ha-reactor-master-config": "file.managed"},
    "cloudify_ha.cluster.absent": {"cloudify_ha-cluster-absent-missing-pillar":
                                   "cloudify_ha.refused"},
    "cloudify_ha.cluster.down": {"cloudify_ha-cluster-down-missing-pillar": "cloudify_ha.refused"},
    "cloudify_ha.lock": {},
    # the pillars' repositories are RedHat's (cloudify_ha:packages): none on this Debian host
    "cloudify_ha.repos": {"cloudify_ha-repos-nothing-here": "test.succeed_without_changes"},
}
NOTHING = {
    "cloudify_ha.cli": {"cloudify_ha-cli-nothing-here": "test.succeed_without_changes"},
    "cloudify_ha.firewall": {"cloudify_ha-firewall-nothing-to-do": "test.succeed_without_changes"},
    "cloudify_ha.loadbalancer": {"cloudify_ha-loadbalancer-nothing-here":
                                 "test.succeed_without_changes"},
    "cloudify_ha.profile": {"cloudify_ha-profile-nothing-here": "test.succeed_without_changes"},
    "cloudify_ha.check_user": {"cloudify_ha-check-user-nothing-here":
                               "test.succeed_without_changes"},
    # only with the orchestration's cloudify_ha_orch:backends
    "cloudify_ha.backends": {"cloudify_ha-backends-nothing-here": "test.succeed_without_changes"},
}
NOT_MANAGER_SLS = {sls: NOT_A_MANAGER for sls in ("cloudify_ha.installer", "cloudify_ha.manager",
                                                  "cloudify_ha.cluster.leader",
                                                  "cloudify_ha.cluster.follower")}
NFTABLES = {"cloudify_ha-firewall-nftables-file": "file.managed",
            "cloudify_ha-firewall-nftables-loaded": "cloudify_ha_firewall.rules_loaded"}
MANAGER = {
    **EVERYONE, **NOTHING,
    "cloudify_ha.installer": INSTALLER,
    "cloudify_ha.firewall": NFTABLES,
    "cloudify_ha.manager": {**INSTALLER, **MANAGER_INSTALLED},
    "cloudify_ha.cluster.leader": {
        **INSTALLER, **MANAGER_INSTALLED,
        "cloudify_ha-cluster-leader-started": "cloudify_ha.cluster_started",
        "cloudify_ha-cluster-leader-joined": "cloudify_ha.joined",
        # both pillars give a license
        "cloudify_ha-cluster-license": "cloudify_ha.license_present"},
    "cloudify_ha.cluster.follower": {**INSTALLER,
                                     "cloudify_ha-cluster-follower-joined": "cloudify_ha.joined"},
    "cloudify_ha.profile": {"cloudify_ha-profile-local": "cloudify_ha.profile_updated"},
}
# a manager of a cluster with a load balancer (pillar.example's) makes its check user
EXAMPLE_MANAGER = {**MANAGER, "cloudify_ha.check_user": {
    "cloudify_ha-check-user-present": "cloudify_ha.check_user_present"}}


BACKUP_TARGET = "backup1.example.com"


def cli_host(cluster):
    package = {f"cloudify_ha-profile-{cluster}-cli-package": "pkg.installed"}
    return {**EVERYONE, **NOTHING, **NOT_MANAGER_SLS,
            "cloudify_ha.cli": package,
            "cloudify_ha.profile": {
                **package, f"cloudify_ha-profile-{cluster}": "cloudify_ha.profile_updated"}}


STRANGER_ROLE = {**EVERYONE, **NOTHING, **NOT_MANAGER_SLS}
LB_ROLE = {**STRANGER_ROLE,
           # its port to loadbalancer:sources
           "cloudify_ha.firewall": NFTABLES,
           "cloudify_ha.loadbalancer": {
               "cloudify_ha-loadbalancer-package": "pkg.installed",
               "cloudify_ha-loadbalancer-prod-servers": "cloudify_ha_lb.backend_servers",
               "cloudify_ha-loadbalancer-prod-check-user": "cloudify_ha.check_credentials_accepted",
               "cloudify_ha-loadbalancer-servers-state-saved": "cloudify_ha_lb.servers_state_saved",
               "cloudify_ha-loadbalancer-socket-dir": "cloudify_ha_lb.directory_created",
               # pillar.example's haproxy_run_dir is EL7's (none): /run/haproxy needs an entry
               "cloudify_ha-loadbalancer-socket-dir-at-boot": "file.managed",
               "cloudify_ha-loadbalancer-config-private": "file.managed",
               "cloudify_ha-loadbalancer-config": "file.managed",
               # systemd is init here (the `minion` fixture's default)
               "cloudify_ha-loadbalancer-running": "service.running"}}

ROLES = {
    ("example", LEADER): EXAMPLE_MANAGER,
    ("example", FOLLOWER): EXAMPLE_MANAGER,
    ("example", CLI): cli_host("prod"),
    ("example", LB): LB_ROLE,
    ("example", STRANGER): STRANGER_ROLE,
    # the backup target: nothing of Cloudify on it (cloudify_ha.orch.backup calls its module)
    ("example", BACKUP_TARGET): STRANGER_ROLE,
    ("lab", "mgr1"): MANAGER,
    ("lab", "mgr2"): MANAGER,
    ("lab", "cli"): cli_host("lab"),
    # the lab's pillar has no load balancer: its LB host is no role of the cluster
    ("lab", "lb"): STRANGER_ROLE,
}
CASES = [(pillar, mid, sls) for (pillar, mid), table in ROLES.items() for sls in sorted(table)]


@pytest.mark.parametrize("pillar,minion_id", sorted(ROLES))
def test_every_sls_but_sync_takes_the_hosts_lock_first_and_releases_it_last(minion, pillar,
                                                                            minion_id):
    m = minion(pillar, minion_id)
    for sls in sorted(minion_sls()):
        high, errors = m.render(sls)
        assert errors == [], sls
        lock = {sid: fun for sid, fun in functions_of(high, lock=True).items() if sid in LOCK}
        assert lock == ({} if sls in UNLOCKED_SLS else LOCK), sls
        if lock:
            # as written (args_of leaves out the `order` Salt adds to every state)
            locked, unlocked = ({k: v for a in high[sid]["cloudify_ha"] if isinstance(a, dict)
                                 for k, v in a.items()} for sid in LOCK)
            assert (locked["order"], locked["failhard"], unlocked["order"]) == (
                "first", True, "last"), sls


def test_the_role_tables_cover_every_minion_sls_of_the_formula():
    for table in ROLES.values():
        assert set(table) == minion_sls()


@pytest.mark.parametrize("pillar,minion_id,sls", CASES)
def test_each_role_gets_exactly_its_states(minion, pillar, minion_id, sls):
    high, errors = minion(pillar, minion_id).render(sls)
    assert errors == []
    assert functions_of(high) == ROLES[(pillar, minion_id)][sls]


@pytest.mark.parametrize("pillar,minion_id,sls", CASES)
def test_salt_can_call_every_rendered_state_with_its_arguments(minion, pillar, minion_id, sls):
    m = minion(pillar, minion_id)
    high, errors = m.render(sls)
    assert errors == []
    assert problems_of(m.state, high) == []


# ---- what the states are given ---------------------------------------------------------------
def test_the_leader_starts_the_cluster_with_its_own_name_and_address(minion):
    high, _ = minion("example", LEADER).render("cloudify_ha.cluster.leader")
    started = args_of(high, "cloudify_ha-cluster-leader-started")
    assert (started["name"], started["host_ip"], started["cluster"]) == ("cfy-mgr1", "10.0.0.11",
                                                                         "prod")
    assert started["require"] == [{"cloudify_ha": "cloudify_ha-manager-installed"}]
    assert args_of(high, "cloudify_ha-manager-installed")["allow_database_reset"] is False


def test_a_follower_joins_with_its_own_name_and_no_hint_outside_the_orchestration(minion):
    high, _ = minion("example", FOLLOWER).render("cloudify_ha.cluster.follower")
    joined = args_of(high, "cloudify_ha-cluster-follower-joined")
    assert {k: joined[k] for k in ("name", "host_ip", "cluster", "replace_stale",
                                   "if_cluster_runs", "active_hint", "remove_failed_join",
                                   "offline_wait", "wait", "boot_wait")} == {
        "name": "cfy-mgr2", "host_ip": "10.0.0.12", "cluster": "prod", "replace_stale": False,
        "if_cluster_runs": False, "active_hint": None, "remove_failed_join": True,
        "offline_wait": 60, "wait": 120, "boot_wait": 300}


WAITS = {"active_node": 30, "cluster_start": 600, "started": 45, "online": 50, "boot": 400,
         "offline": 70, "install": 3600}


@pytest.mark.parametrize("role, sls, state_id", [
    (LEADER, "cloudify_ha.cluster.leader", "cloudify_ha-cluster-leader-joined"),
    (FOLLOWER, "cloudify_ha.cluster.follower", "cloudify_ha-cluster-follower-joined")])
def test_the_clusters_waits_reach_the_states(minion, role, sls, state_id):
    """waits: online, boot and offline are the join's; started the cluster start's check
    (active_node, cluster_start and install are read by the execution module itself)."""
    pillar = {"cloudify_ha": {"clusters": {"prod": {"waits": WAITS}}}}
    high, errors = minion("example", role, pillar=pillar).render(sls)
    assert errors == []
    joined = args_of(high, state_id)
    assert (joined["wait"], joined["boot_wait"], joined["offline_wait"]) == (50, 400, 70)
    if role == LEADER:
        assert args_of(high, "cloudify_ha-cluster-leader-started")["wait"] == 45


def test_the_orchestrations_pillar_reaches_the_follower_as_hint_and_rejoin(minion):
    pillar = {"cloudify_ha_orch": {"active": {"prod": "10.0.0.11"}, "rejoin": True}}
    high, _ = minion("example", FOLLOWER, pillar=pillar).render("cloudify_ha.cluster.follower")
    joined = args_of(high, "cloudify_ha-cluster-follower-joined")
    assert (joined["active_hint"], joined["replace_stale"], joined["if_cluster_runs"]) == (
        "10.0.0.11", True, True)


def test_the_lab_installer_comes_from_the_labs_package_and_psql_from_its_client(minion):
    high, _ = minion("lab", "mgr2").render("cloudify_ha.installer")
    package = args_of(high, "cloudify_ha-installer-package")
    assert package["sources"] == [
        {"cloudify-manager-install":
         "salt://cloudify_ha_packages/cloudify-manager-install_4.6_amd64.deb"}]
    assert args_of(high, "cloudify_ha-installer-psql")["name"] == "postgresql-client-15"


DEFAULTS = yaml.safe_load((REPO / "cloudify_ha" / "defaults.yaml").read_text())["cloudify_ha"]


@pytest.mark.parametrize("family", ["RedHat", "Debian"])
def test_a_manager_gets_4_6s_prerequisite_packages_of_its_os_family_first(minion, family):
    """RedHat: the rpms cloudify-manager-install 4.6 checks (`rpm -q`, even with validations
    skipped: components_dependencies.py); Debian: the lab's stand-ins, which its emulated
    installer checks with dpkg. Installed before the installer package."""
    high, errors = minion("lab", "mgr2", os_family=family).render("cloudify_ha.installer")
    assert errors == []
    wanted = DEFAULTS["os_family"][family]["lookup"]["prerequisite_packages"]
    assert args_of(high, "cloudify_ha-installer-prerequisites") == {
        "pkgs": wanted, "refresh": False}
    assert args_of(high, "cloudify_ha-installer-package")["require"] == [
        {"pkg": "cloudify_ha-installer-prerequisites"}]
    if family == "RedHat":
        assert {"sudo", "yum", "python-backports-ssl_match_hostname", "systemd-sysv", "openssl",
                "initscripts", "openssh-server"} <= set(wanted)


@pytest.mark.parametrize("pillar_name, family, pillar, wanted", [
    ("lab", "Suse", None, None),  # a family 4.6 never ran on: nothing assumed
    ("lab", "RedHat", {"cloudify_ha": {"lookup": {"prerequisite_packages": []}}}, None),
    ("lab", "Debian", {"cloudify_ha": {"lookup": {"prerequisite_packages": ["sudo"]}}},
     ["sudo"]),
])
def test_the_pillars_prerequisite_packages_win_over_the_os_familys(minion, pillar_name, family,
                                                                  pillar, wanted):
    high, errors = minion(pillar_name, "mgr2", pillar=pillar, os_family=family).render(
        "cloudify_ha.installer")
    assert errors == []
    if wanted is None:
        assert "cloudify_ha-installer-prerequisites" not in high
        assert "require" not in args_of(high, "cloudify_ha-installer-package")
    else:
        assert args_of(high, "cloudify_ha-installer-prerequisites")["pkgs"] == wanted


HASH = "sha256=" + "ab" * 32
HASHED = {"cloudify_ha": {"clusters": {"prod": {"installer": {
    "source": "http://repo.example.com/pub/cloudify-manager-install-4.6.rpm", "source_hash": HASH,
    "cli_source": "https://repo.example.com/pub/cloudify-cli-4.6.rpm", "cli_source_hash": HASH}}}}}


@pytest.mark.parametrize("role, sls, sid, source, package", [
    (LEADER, "cloudify_ha.installer", "cloudify_ha-installer-package",
     HASHED["cloudify_ha"]["clusters"]["prod"]["installer"]["source"], "cloudify-manager-install"),
    (CLI, "cloudify_ha.cli", "cloudify_ha-profile-prod-cli-package",
     HASHED["cloudify_ha"]["clusters"]["prod"]["installer"]["cli_source"], "cloudify-cli"),
])
def test_a_source_with_a_hash_is_fetched_and_checked_before_the_package_manager_sees_it(
        minion, role, sls, sid, source, package):
    m = minion("example", role, pillar=HASHED)
    high, errors = m.render(sls)
    assert errors == [] and problems_of(m.state, high) == []
    fetched = args_of(high, f"{sid}-file")
    local = f"{m.state.opts['cachedir']}/cloudify_ha/packages/{source.rsplit('/', 1)[1]}"
    assert (functions_of(high)[f"{sid}-file"], fetched) == ("file.managed", {
        "name": local, "source": source, "source_hash": HASH, "makedirs": True,
        "mode": "0644", "require_in": [{"pkg": sid}]})
    assert args_of(high, sid)["sources"] == [{package: local}]
    # nothing anywhere turns a verification off
    assert "skip_verify" not in repr(high) and "verify_ssl" not in repr(high)


def test_the_reactor_configuration_goes_where_the_pillar_says_from_the_formulas_file(minion):
    pillar = {"cloudify_ha": {"reactor": {"config_file": "/etc/salt/master.d/cha.conf"}}}
    m = minion("example", STRANGER, pillar=pillar)
    high, errors = m.render("cloudify_ha.reactor.master")
    assert (errors, problems_of(m.state, high)) == ([], [])
    assert args_of(high, "cloudify_ha-reactor-master-config") == {
        "name": "/etc/salt/master.d/cha.conf", "source": "salt://cloudify_ha/reactor/master.conf",
        "mode": "0644", "makedirs": True}


@pytest.mark.parametrize("config_file", ["/etc/salt/master", "/etc/salt/master.d/x.conf\n"
                                         "cloudify_ha-evil:\n  cmd.run:\n    - name: reboot",
                                         "/etc/salt/master.d/../minion.d/x.conf"])
def test_the_reactor_configuration_refuses_a_file_outside_master_d(minion, config_file):
    """The master.sls of before rendered this value raw: a newline in it added a state that
    ran as root on the salt-master's host while the orchestration refused the same pillar."""
    pillar = {"cloudify_ha": {"reactor": {"config_file": config_file}}}
    m = minion("example", STRANGER, pillar=pillar)
    high, errors = m.render("cloudify_ha.reactor.master")
    assert (errors, functions_of(high)) == ([], {"cloudify_ha-reactor-master-invalid-pillar":
                                                 "cloudify_ha.refused"})
    assert args_of(high, "cloudify_ha-reactor-master-invalid-pillar")["comment"] == (
        "the cloudify_ha pillar is invalid; nothing was changed here. Fix:\n"
        f"- cloudify_ha:reactor:config_file: {config_file!a} is not a '.conf' file directly in "
        "/etc/salt/master.d/: the formula replaces that file whole and the salt-master reads it;"
        " e.g. /etc/salt/master.d/cloudify_ha_reactor.conf")


def test_the_reactor_configuration_waits_for_the_formulas_modules(example_opts, host_grains):
    opts = opts_for(example_opts, host_grains, STRANGER)
    opts.update(module_dirs=[], states_dirs=[], utils_dirs=[])
    m = Minion(opts)
    try:
        high, errors = m.render("cloudify_ha.reactor.master")
    finally:
        m.close()
    assert (errors, functions_of(high)) == ([], {"cloudify_ha-reactor-master-not-synced":
                                                 "test.fail_without_changes"})
    assert args_of(high, "cloudify_ha-reactor-master-not-synced")["name"].startswith(
        "the cloudify_ha modules are not on this minion: run saltutil.sync_all on it")


def test_the_cli_host_gets_the_cli_package_and_a_profile_named_after_the_cluster(minion):
    high, _ = minion("example", CLI).render("cloudify_ha.profile")
    profile = args_of(high, "cloudify_ha-profile-prod")
    assert (profile["name"], profile["cluster"], profile["require"]) == (
        "prod", "prod", [{"pkg": "cloudify_ha-profile-prod-cli-package"}])
    assert args_of(high, "cloudify_ha-profile-prod-cli-package")["name"] == "cloudify-cli"


def test_the_retire_pillar_turns_cluster_absent_into_the_removal_of_that_node(minion):
    pillar = {"cloudify_ha_orch": {"node": "cfy-mgr3", "cluster": "prod"}}
    m = minion("example", LEADER, pillar=pillar)
    high, errors = m.render("cloudify_ha.cluster.absent")
    assert (errors, functions_of(high)) == ([], {"cloudify_ha-cluster-absent-cfy-mgr3":
                                                 "cloudify_ha.node_absent"})
    assert args_of(high, "cloudify_ha-cluster-absent-cfy-mgr3") == {"name": "cfy-mgr3",
                                                                     "cluster": "prod"}
    assert problems_of(m.state, high) == []


def test_the_down_pillar_turns_cluster_down_into_the_listed_check(minion):
    pillar = {"cloudify_ha_orch": {"node": "cfy-mgr3", "cluster": "prod"}}
    m = minion("example", LEADER, pillar=pillar)
    high, errors = m.render("cloudify_ha.cluster.down")
    assert (errors, functions_of(high)) == ([], {"cloudify_ha-cluster-down-cfy-mgr3-listed":
                                                 "cloudify_ha.listed"})
    assert problems_of(m.state, high) == []


@pytest.mark.parametrize("init, running", [("systemd", "service.running"),
                                           ("sysvinit", "service.running"),
                                           ("unknown", "cloudify_ha_lb.running")])
def test_haproxy_is_the_init_systems_service_where_one_starts_it_at_boot(minion, init, running):
    """haproxy_manager auto: the service (enabled, so the init starts it at boot) under systemd
    or a SysV init; where there is none (a container), the formula runs it from a pid file."""
    m = minion("example", LB, init=init)
    high, errors = m.render("cloudify_ha.loadbalancer")
    assert (errors, problems_of(m.state, high)) == ([], [])
    assert functions_of(high)["cloudify_ha-loadbalancer-running"] == running
    args = args_of(high, "cloudify_ha-loadbalancer-running")
    if running == "service.running":
        assert (args["name"], args["enable"], args["reload"]) == ("haproxy", True, True)
    else:
        assert args["pidfile"] == "/run/haproxy.pid"


@pytest.mark.parametrize("family, socket, entry", [
    # EL7's unit makes nothing under /run: systemd-tmpfiles makes the socket's directory at boot
    ("RedHat", "/run/haproxy/admin.sock", "d /run/haproxy 0750 root root -"),
    # EL7's own place, which its package made: nothing to make at boot
    ("RedHat", "/var/lib/haproxy/stats", None),
    # Debian's package makes /run/haproxy at every start, but no directory below it
    ("Debian", "/run/haproxy/admin.sock", None),
    ("Debian", "/run/haproxy/lb/admin.sock", "d /run/haproxy/lb 0750 root root -"),
])
def test_the_admin_sockets_directory_is_there_after_a_boot(minion, family, socket, entry):
    # the lab's pillar sets no lookup: each family's defaults (cloudify_ha/defaults.yaml)
    high, errors = minion("lab", "lb", pillar=lab_lb(admin_socket=socket),
                          os_family=family).render("cloudify_ha.loadbalancer")
    assert errors == []
    sid = "cloudify_ha-loadbalancer-socket-dir-at-boot"
    args = args_of(high, sid)
    assert args["name"] == "/etc/tmpfiles.d/cloudify_ha-haproxy.conf"
    if entry is None:
        assert functions_of(high)[sid] == "file.absent"
    else:
        assert functions_of(high)[sid] == "file.managed"
        assert (args["contents"], args["mode"]) == (entry, "0644")


def lab_lb(**settings):
    """The lab's pillar with its `lb` host as the load balancer (and the secret it needs)."""
    return {"cloudify_ha": {"clusters": {"lab": {"loadbalancer": {
        "minion_ids": ["lb"], "check_password": "lab-check-pw", **settings}}}}}


ENFORCING = {"selinux": {"enabled": True, "enforced": "Enforcing"}}


@pytest.mark.parametrize("grains, port, boolean", [
    (ENFORCING, 8080, True),
    (ENFORCING, 80, False),   # http_port_t: HAProxy may bind it
    (ENFORCING, 8443, False),
    ({"selinux": {"enabled": True, "enforced": "Permissive"}}, 8080, False),
    ({"selinux": {"enabled": False, "enforced": "Disabled"}}, 8080, False),
    ({}, 8080, False),
])
def test_selinux_lets_haproxy_use_a_port_only_where_it_enforces_and_the_port_needs_it(
        minion, grains, port, boolean):
    pillar = {"cloudify_ha": {"clusters": {"prod": {"loadbalancer": {"port": port}}}}}
    m = minion("example", LB, pillar=pillar, grains=grains)
    high, errors = m.render("cloudify_ha.loadbalancer")
    assert errors == []
    sid = "cloudify_ha-loadbalancer-selinux-ports"
    assert (sid in high) is boolean
    if boolean:
        assert functions_of(high)[sid] == "selinux.boolean"
        assert args_of(high, sid) == {"name": "haproxy_connect_any", "value": True,
                                      "persist": True, "require_in": [
                                          {"service": "cloudify_ha-loadbalancer-running"}]}


def test_an_invalid_pillar_refuses_the_load_balancer(minion):
    pillar = {"cloudify_ha": {"clusters": {"prod": {"loadbalancer": {"fall": 0}}}}}
    m = minion("example", LB, pillar=pillar)
    high, errors = m.render("cloudify_ha.loadbalancer")
    assert (errors, functions_of(high)) == ([], {"cloudify_ha-loadbalancer-invalid-pillar":
                                                 "cloudify_ha.refused"})
    assert args_of(high, "cloudify_ha-loadbalancer-invalid-pillar")["comment"] == (
        "the cloudify_ha pillar is invalid; nothing was changed here. Fix:\n"
        "- cloudify_ha:clusters:prod:loadbalancer:fall: 0 must be a whole number from 1 to 100")
    assert problems_of(m.state, high) == []


def test_the_checks_catch_what_the_state_engine_would_refuse(minion):
    # hand-written high data with one mistake per state: each must be reported
    m = minion("example", LEADER)
    high = {sid: dict(body, __sls__="handmade", __env__="base") for sid, body in {
        "unknown-keyword": {"cloudify_ha": ["refused", {"comment": "c"},
                                            {"allow_test_mode_failure": True}]},
        "missing-argument": {"cloudify_ha": ["refused"]},
        "no-such-function": {"cloudify_ha": ["no_such_state"]},
        "dangling-require": {"test": ["succeed_without_changes",
                                      {"require": [{"pkg": "nowhere"}]}]},
        "module-run-keyword": {"module": ["run", {"test.echo": [{"text": "x"}, {"bogus": 1}]}]},
    }.items()}
    problems = problems_of(m.state, high)
    # 3008 reports the dangling requisite itself too, in its own words
    assert [sid for sid in high if not any(sid in p for p in problems)] == [], problems
    assert [p for p in problems if p.startswith(
        "unknown-keyword: 'allow_test_mode_failure' is an invalid keyword argument")], problems


MANAGERS_SECRETS_EMPTIED = {"cloudify_ha": {"clusters": {"prod": {"database": {
    "password": "", "postgres_password": "", "ca_key": "", "client_key": ""}}}}}


@pytest.mark.parametrize("role, sls", [(LB, "cloudify_ha.loadbalancer"), (CLI, "cloudify_ha.profile")])
def test_a_host_that_is_no_manager_renders_its_role_without_the_managers_secrets(minion, role,
                                                                                 sls):
    want, _ = minion("example", role).render(sls)
    got, errors = minion("example", role, pillar=MANAGERS_SECRETS_EMPTIED).render(sls)
    assert (errors, functions_of(got)) == ([], functions_of(want))


def test_a_manager_without_its_secrets_refuses_naming_each(minion):
    high, errors = minion("example", LEADER, pillar=MANAGERS_SECRETS_EMPTIED).render(
        "cloudify_ha.installer")
    assert (errors, functions_of(high)) == ([], {"cloudify_ha-installer-invalid-pillar":
                                                 "cloudify_ha.refused"})
    comment = args_of(high, "cloudify_ha-installer-invalid-pillar")["comment"]
    for key in ("database:password", "database:postgres_password", "database:ca_key",
                "database:client_key"):
        assert f"- cloudify_ha:clusters:prod:{key}: required" in comment, comment


@pytest.mark.parametrize("hint, kept", [("10.0.0.11", "10.0.0.11"), ("10.0.0.99", None),
                                        ("203.0.113.5", None), (["10.0.0.11"], None)])
def test_the_active_node_hint_is_kept_only_when_it_is_a_managers_private_ip(minion, hint, kept):
    m = minion("example", FOLLOWER, pillar={"cloudify_ha_orch": {"active": {"prod": hint}}})
    for sls, sid in (("cloudify_ha.cluster.follower", "cloudify_ha-cluster-follower-joined"),
                     ("cloudify_ha.profile", "cloudify_ha-profile-local")):
        high, errors = m.render(sls)
        assert (errors, args_of(high, sid)["active_hint"]) == ([], kept), sls


# ---- the orchestration's drain and undrain on the load balancers ---------------------------------
@pytest.mark.parametrize("asked, out, back", [
    ({"cluster": "prod", "out": ["cfy-mgr2"]}, ["cfy-mgr2"], []),
    ({"cluster": "prod", "back": ["cfy-mgr3", "cfy-mgr1"]}, [], ["cfy-mgr1", "cfy-mgr3"]),
    # only the cluster's manager names are kept, as the settings spell them
    ({"cluster": "prod", "out": ["cfy-mgr2", "x\n  evil: true", "../../etc", 7]}, ["cfy-mgr2"],
     []),
    ({"cluster": "prod", "out": "cfy-mgr2"}, [], []),
])
def test_the_backends_sls_takes_out_and_puts_back_only_managers_of_the_cluster(minion, asked,
                                                                               out, back):
    m = minion("example", LB, pillar={"cloudify_ha_orch": {"backends": asked}})
    high, errors = m.render("cloudify_ha.backends")
    assert (errors, functions_of(high)) == ([], {
        "cloudify_ha-backends-prod": "cloudify_ha_lb.backend_servers"})
    assert args_of(high, "cloudify_ha-backends-prod") == {
        "name": "cloudify_prod", "admin_socket": "/run/haproxy/admin.sock", "out": out,
        "back": back, "state_file": "/var/lib/haproxy/server-state", "inter": "2s", "fall": 2,
        "timeout_connect": "5s"}
    assert problems_of(m.state, high) == []


@pytest.mark.parametrize("asked", [{"cluster": "staging", "out": ["cfy-mgr2"]}, "prod", None,
                                   {"cluster": ["prod"], "out": ["cfy-mgr2"]}])
def test_the_backends_sls_of_another_cluster_or_no_cluster_does_nothing(minion, asked):
    m = minion("example", LB, pillar={"cloudify_ha_orch": {"backends": asked}})
    high, errors = m.render("cloudify_ha.backends")
    assert (errors, functions_of(high)) == ([], {
        "cloudify_ha-backends-nothing-here": "test.succeed_without_changes"})


def test_the_load_balancer_puts_back_the_members_the_orchestration_names(minion):
    asked = {"cluster": "prod", "back": ["cfy-mgr1", "cfy-mgr2", "cfy-mgr3"]}
    high, errors = minion("example", LB, pillar={"cloudify_ha_orch": {"backends": asked}}).render(
        "cloudify_ha.loadbalancer")
    assert errors == []
    servers = args_of(high, "cloudify_ha-loadbalancer-prod-servers")
    assert (servers["back"], servers["require_in"]) == (
        ["cfy-mgr1", "cfy-mgr2", "cfy-mgr3"], [{"file": "cloudify_ha-loadbalancer-config"}])
    # applied without the orchestration: the servers the formula took out stay out
    high, _ = minion("example", LB).render("cloudify_ha.loadbalancer")
    assert args_of(high, "cloudify_ha-loadbalancer-prod-servers")["back"] == []
    saved = args_of(high, "cloudify_ha-loadbalancer-servers-state-saved")
    assert (saved["name"], saved["onchanges"]) == (
        "/var/lib/haproxy/server-state", [{"file": "cloudify_ha-loadbalancer-config"}])
    assert {"cloudify_ha_lb": "cloudify_ha-loadbalancer-servers-state-saved"} in args_of(
        high, "cloudify_ha-loadbalancer-running")["require"]


def test_a_manager_makes_the_check_user_its_load_balancer_logs_in_as(minion):
    m = minion("example", FOLLOWER, pillar={"cloudify_ha_orch": {"active": {"prod": "10.0.0.11"}}})
    high, errors = m.render("cloudify_ha.check_user")
    assert errors == []
    assert args_of(high, "cloudify_ha-check-user-present") == {
        "name": "cloudify_ha_check", "cluster": "prod", "active_hint": "10.0.0.11"}
    assert problems_of(m.state, high) == []
    high, _ = minion("example", LB).render("cloudify_ha.loadbalancer")
    assert args_of(high, "cloudify_ha-loadbalancer-prod-check-user") == {
        "name": "cloudify_ha_check", "cluster": "prod",
        "require_in": [{"file": "cloudify_ha-loadbalancer-config"}]}


# ---- Salt's service module in systemd's offline mode ---------------------------------------------
def test_where_salts_service_states_would_do_nothing_haproxy_is_run_by_the_formula(minion):
    # systemctl installed, systemd not PID 1 (a container): auto is direct
    m = minion("example", LB, init="unknown", binaries=("nft", "systemctl"))
    high, errors = m.render("cloudify_ha.loadbalancer")
    assert (errors, functions_of(high)["cloudify_ha-loadbalancer-running"]) == (
        [], "cloudify_ha_lb.running")
    # and the service asked for by name is refused, not silently a no-op
    service = {"cloudify_ha": {"lookup": {"haproxy_manager": "service"}}}
    high, errors = minion("example", LB, init="unknown", binaries=("nft", "systemctl"),
                          pillar=service).render("cloudify_ha.loadbalancer")
    assert (errors, functions_of(high)) == ([], {
        "cloudify_ha-loadbalancer-no-service-manager": "cloudify_ha.refused"})
    assert args_of(high, "cloudify_ha-loadbalancer-no-service-manager")["comment"].startswith(
        "cloudify_ha:lookup:haproxy_manager is service, but Salt's service module here is "
        "systemd's offline mode")
