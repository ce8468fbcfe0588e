"""The states' decisions as tables: ``_decide_<state>(facts)`` is a pure function of what was read.

Each row gives the facts read so far and the verdict: the kind (need / ok / refuse / would /
act), and for ``need`` the fact asked for next, else fragments of the comment (and the changes,
for would / act). Nothing here has a ``__salt__``: a decision that tried to read or act would
fail with a NameError. test_states.py drives the same states through their readers and acts.
"""

import pytest

from formula_code import state_module

STATES = state_module()


def node(name, host_ip, state, master=False, database_ip=None, public_ip=None, initialized=True):
    return {"name": name, "host_ip": host_ip, "state": state, "online": state != "offline",
            "master": master, "database_ip": database_ip, "public_ip": public_ip,
            "initialized": initialized}


LEADER = node("m1", "10.0.0.11", "leader", master=True)
ACTIVE = {"name": "m1", "host": "10.0.0.11"}
JOIN = {"name": "m2", "host_ip": "10.0.0.12", "test": False, "replace_stale": False,
        "if_cluster_runs": False, "remove_failed_join": True}
CLUSTER = {"active": ACTIVE, "nodes": [LEADER]}
FRESH = dict(JOIN, local="package_installed", **CLUSTER)
EMPTY = dict(FRESH, resources=[], database_ip="10.0.0.5")
# an install that failed after its nginx step: nginx (or the services) up, no .install
# (cloudify-4.6.md sections 0.2, 0.4)
HALF = dict(EMPTY, local="half_installed")
# what a join that failed after its PUT leaves on the active node (cloudify-4.6.md section 0.4)
FAILED_JOIN = node("m2", "10.0.0.12", "offline", initialized=False)


def facts(base, **more):
    return dict(base, **more)


def verdict_of(decide, given):
    verdict = decide(dict(given))
    return verdict.kind, (verdict.text if verdict.kind == "need" else verdict)


JOIN_TABLE = [
    # (facts, kind, the fact needed or fragments of the comment)
    (JOIN, "need", "local"),
    (facts(JOIN, local="absent"), "refuse", ["cloudify-manager-install package is not installed"]),
    (facts(JOIN, local="down"), "refuse", ["REST service does not answer", "systemctl"]),
    (facts(JOIN, local="package_installed"), "need", "cluster"),
    (facts(JOIN, local="package_installed", active=None, nodes=None, if_cluster_runs=True),
     "ok", ["the cluster has not been started; nothing to do"]),
    (facts(JOIN, local="package_installed", active=None, nodes=None, test=True),
     "would", ["m2 would join the cluster once it is started"]),
    (facts(FRESH, nodes=[LEADER, node("m2", "10.0.0.42", "replica")]),
     "refuse", ["lists m2 at 10.0.0.42, the pillar says 10.0.0.12"]),
    (facts(FRESH, nodes=[LEADER, node("old", "10.0.0.12", "offline")]),
     "refuse", ["address 10.0.0.12 belongs to member old (offline)"]),
    (facts(FRESH, local="replica", nodes=[LEADER, node("m2", "10.0.0.12", "replica")]),
     "ok", ["m2 is a member of the cluster (replica; active node 10.0.0.11)"]),
    (facts(FRESH, local="replica", nodes=[LEADER, node("m2", "10.0.0.12", "offline")]),
     "need", "came_online"),
    (facts(FRESH, local="replica", nodes=[LEADER, node("m2", "10.0.0.12", "offline")],
           came_online=True), "ok", ["m2 is a member of the cluster"]),
    (facts(FRESH, local="replica", nodes=[LEADER, node("m2", "10.0.0.12", "offline")],
           came_online=False), "refuse", ["offline in the active node's view", "8301/tcp+udp"]),
    (facts(FRESH, local="removed"), "refuse", ["can never rejoin", "cfy_manager remove -f"]),
    (facts(FRESH, local="installed"), "refuse", ["already holds a standalone manager"]),
    (facts(FRESH, local="leader"), "refuse", ["already holds a leader of another cluster"]),
    (FRESH, "need", "resources"),
    (facts(FRESH, resources=["plugins/x.wgn"]), "refuse", ["not empty (1 file(s)",
                                                          "plugins/x.wgn"]),
    (facts(FRESH, resources=[]), "need", "database_ip"),
    (facts(EMPTY, nodes=[node("m1", "10.0.0.11", "leader", master=True,
                              database_ip="10.0.0.99")]),
     "refuse", ["reports its database at 10.0.0.99", "database:host is 10.0.0.5"]),
    (facts(EMPTY, nodes=[node("m1", "10.0.0.11", "leader", master=True,
                              database_ip="10.0.0.5")]), "act", ["m2 would join"]),
    (EMPTY, "act", ["m2 would join the cluster through the active node 10.0.0.11"]),
    (facts(EMPTY, nodes=[LEADER, node("m2", "10.0.0.12", "replica")]), "need", "went_offline"),
    (facts(EMPTY, nodes=[LEADER, node("m2", "10.0.0.12", "replica")], went_offline=False),
     "refuse", ["lists m2 as ONLINE at 10.0.0.12 while this host has no manager"]),
    (facts(EMPTY, nodes=[LEADER, node("m2", "10.0.0.12", "replica")], went_offline=True),
     "refuse", ["still lists m2 (10.0.0.12) as an offline member", "replace_stale: True"]),
    (facts(EMPTY, nodes=[LEADER, node("m2", "10.0.0.12", "offline")]),
     "refuse", ["still lists m2 (10.0.0.12) as an offline member"]),
    (facts(EMPTY, nodes=[LEADER, node("m2", "10.0.0.12", "offline")], replace_stale=True),
     "act", ["m2 would join"]),
    ({k: v for k, v in HALF.items() if k not in ("resources", "database_ip")},
     "need", "resources"),
    (facts(HALF, resources=["blueprints/default_tenant/a/blueprint.yaml"]), "refuse",
     ["not empty (1 file(s)", "an install failed part-way", "never torn down"]),
    (facts(HALF, remove_failed_join=False), "refuse",
     ["failed part-way", "remove_failed_joins is false", "'cfy_manager remove -f'",
      "database is left alone"]),
    (HALF, "act", ["m2 would join the cluster through the active node 10.0.0.11 (after "
                   "tearing down its failed install)"]),
    # its own record, never initialized: this formula's failed join, replace_stale or not
    (facts(EMPTY, nodes=[LEADER, FAILED_JOIN]), "act",
     ["m2 would join the cluster through the active node 10.0.0.11 (after removing the record "
      "its failed join left)"]),
    (facts(HALF, nodes=[LEADER, FAILED_JOIN]), "act",
     ["(after tearing down its failed install) (after removing the record its failed join "
      "left)"]),
    (facts(EMPTY, nodes=[LEADER, FAILED_JOIN], remove_failed_join=False), "refuse",
     ["offline and never initialized", "remove_failed_joins is false",
      "'cfy cluster nodes remove m2' through the active node (10.0.0.11)"]),
    # a record that was initialized once is a member's: only replace_stale removes it
    (facts(EMPTY, nodes=[LEADER, node("m2", "10.0.0.12", "offline", initialized=True)]),
     "refuse", ["still lists m2 (10.0.0.12) as an offline member", "replace_stale: True"]),
]


def check(decide, given, kind, expected):
    got_kind, got = verdict_of(decide, given)
    assert got_kind == kind, got
    if kind == "need":
        assert got == expected
    else:
        for fragment in expected:
            assert fragment in got.text, (fragment, got.text)


@pytest.mark.parametrize("given, kind, expected", JOIN_TABLE)
def test_join_decision(given, kind, expected):
    check(STATES._decide_join, given, kind, expected)


def test_join_decision_changes():
    """What an act reports: the join through the active node, and a stale entry it removes."""
    verdict = STATES._decide_join(facts(EMPTY, nodes=[LEADER, node("m2", "10.0.0.12", "offline")],
                                        replace_stale=True))
    assert verdict.changes == {
        "removed_stale": {"old": "m2", "new": None},
        "joined": {"old": None, "new": {"active_node": "10.0.0.11", "database": "10.0.0.5"}}}
    assert verdict.done == "m2 joined the cluster (active node 10.0.0.11)"
    assert STATES._decide_join(dict(EMPTY)).changes == {
        "joined": {"old": None, "new": {"active_node": "10.0.0.11", "database": "10.0.0.5"}}}
    half = STATES._decide_join(dict(HALF))
    assert half.changes == {
        "removed_failed_install": {
            "old": "services running without /etc/cloudify/.install (a failed install)",
            "new": "torn down (cfy_manager remove -f)"},
        "joined": {"old": None, "new": {"active_node": "10.0.0.11", "database": "10.0.0.5"}}}
    assert half.done == ("m2 joined the cluster (active node 10.0.0.11) (after tearing down its "
                         "failed install)")
    failed = STATES._decide_join(facts(EMPTY, nodes=[LEADER, FAILED_JOIN]))
    assert failed.changes == {
        "removed_failed_join": {"old": "m2 (10.0.0.12): offline, never initialized (a join "
                                       "that failed after registering)", "new": None},
        "joined": {"old": None, "new": {"active_node": "10.0.0.11", "database": "10.0.0.5"}}}


INSTALL = {"name": "m1", "test": False, "allow_database_reset": False}
EMPTY_DB = {"holds_data": False, "databases": [], "name": "cloudify_db", "data": {}, "rows": {},
            "host": "db:5432"}
FULL_DB = {"holds_data": True, "databases": ["cloudify_db", "stage"], "name": "cloudify_db",
           "data": {"cloudify_db": 61, "stage": 0}, "rows": {"blueprints": 2},
           "host": "db:5432"}
READY = facts(INSTALL, local="package_installed", running=None)

INSTALL_TABLE = [
    (INSTALL, "need", "local"),
    (facts(INSTALL, local="absent"), "refuse",
     ["cloudify-manager-install package is not installed"]),
    (facts(INSTALL, local="leader"), "ok", ["already installed (node state: leader)"]),
    (facts(INSTALL, local="package_installed"), "need", "running"),
    (facts(INSTALL, local="package_installed", running=ACTIVE), "ok",
     ["the cluster already runs (active node 10.0.0.11)", "joins it"]),
    (READY, "need", "database"),
    (facts(READY, database=EMPTY_DB), "act", ["m1 would be installed as the first manager"]),
    (facts(READY, database=FULL_DB), "refuse",
     ["refusing to install", "cloudify_db with 61 tables", "cloudify_db: 2 blueprints",
      "allow_database_reset: True"]),
    (facts(READY, database=FULL_DB, allow_database_reset=True), "act", ["would be installed"]),
    (facts(INSTALL, local="half_installed"), "need", "running"),
    (facts(INSTALL, local="half_installed", running=ACTIVE), "ok", ["joins it"]),
    (facts(INSTALL, local="half_installed", running=None), "refuse",
     ["failed part-way", "'cfy_manager remove -f'", "database is left alone",
      "the database was not touched"]),
    # the other managers could not tell whether a cluster runs: the same advice, and what
    # they said; never the database
    (facts(INSTALL, local="half_installed", running=None,
           running_unknown="no active node in cluster 'prod': m2 (10.0.0.12): starting"),
     "refuse", ["failed part-way", "'cfy_manager remove -f'",
                "whether a cluster already runs could not be told: no active node"]),
]


@pytest.mark.parametrize("given, kind, expected", INSTALL_TABLE)
def test_install_decision(given, kind, expected):
    check(STATES._decide_install, given, kind, expected)


def test_install_decision_names_the_database_it_resets():
    verdict = STATES._decide_install(facts(READY, database=FULL_DB, allow_database_reset=True))
    assert verdict.changes == {
        "installed": {"old": "package_installed", "new": "installed"},
        "database_reset": {"old": ["cloudify_db", "stage"], "new": "dropped and recreated"}}


START = {"name": "m1", "host_ip": "10.0.0.11", "test": False}
START_TABLE = [
    (START, "need", "local"),
    (facts(START, local="replica"), "ok", ["already part of a cluster (replica)"]),
    # a rebooted leader inside nginx's 502 window (cloudify-4.6.md section 0.3)
    (facts(START, local="down"), "ok", ["already part of a cluster", "does not answer yet"]),
    (facts(START, local="package_installed"), "need", "running"),
    (facts(START, local="package_installed", running=ACTIVE), "ok", ["cluster already runs"]),
    (facts(START, local="package_installed", running=None, test=True), "would",
     ["would be started on m1 (10.0.0.11) once it is installed"]),
    (facts(START, local="package_installed", running=None), "refuse",
     ["cannot start a cluster on a host in state 'package_installed'"]),
    (facts(START, local="removed"), "refuse", ["in state 'removed'"]),
    (facts(START, local="half_installed"), "need", "running"),
    (facts(START, local="half_installed", running=ACTIVE), "ok", ["cluster already runs"]),
    (facts(START, local="half_installed", running=None), "refuse",
     ["failed part-way", "'cfy_manager remove -f'"]),
    (facts(START, local="half_installed", running=None, test=True), "refuse",
     ["failed part-way"]),
    (facts(START, local="installed"), "act", ["the cluster would be started on m1 (10.0.0.11)"]),
]


@pytest.mark.parametrize("given, kind, expected", START_TABLE)
def test_start_decision(given, kind, expected):
    check(STATES._decide_start, given, kind, expected)


MEMBERS = [LEADER, node("m2", "10.0.0.12", "replica", public_ip="192.0.2.12")]
EVERY = [{"name": "m1", "manager_ip": "10.0.0.11"}, {"name": "m2", "manager_ip": "192.0.2.12"}]
PROFILE = {"name": "prod", "test": False, "active": ACTIVE, "nodes": MEMBERS}
SEEN = facts(PROFILE, own=None, entries=EVERY, mode="0o600", was_active="prod",
             addresses={"m1": "10.0.0.11", "m2": "192.0.2.12"})
PROFILE_TABLE = [
    ({"name": "prod", "test": False}, "need", "cluster"),
    (facts(PROFILE, active=None, nodes=None, test=True), "need", "entries"),
    (facts(PROFILE, active=None, nodes=None, test=True, entries=None), "would",
     ["would list the cluster's nodes once it is started"]),
    (PROFILE, "need", "profile"),
    (SEEN, "ok", ["lists the cluster's 2 nodes"]),
    (facts(SEEN, own="m1", entries=[{"name": "m1", "manager_ip": "localhost"}, EVERY[1]]), "ok",
     ["lists the cluster's 2 nodes"]),
    (facts(SEEN, entries=[{"name": "m1", "manager_ip": "localhost"}, EVERY[1]]), "act",
     ["would be updated"]),
    (facts(SEEN, entries=[EVERY[0], {"name": "m2", "manager_ip": "10.0.0.12"}]), "act",
     ["would be updated"]),
    (facts(SEEN, entries=EVERY[:1]), "act", ["would be updated"]),
    (facts(SEEN, mode="0o644"), "act", ["would be updated"]),
    # the pillar's address, not the REST answer's
    (facts(SEEN, addresses={"m1": "10.0.0.11", "m2": "198.51.100.2"}), "act",
     ["would be updated"]),
    # a node the cluster lists and pillar does not name: no entry for it
    (facts(SEEN, addresses={"m1": "10.0.0.11"}), "act", ["would be updated"]),
    (facts(SEEN, addresses={"m1": "10.0.0.11"}, entries=EVERY[:1]), "ok",
     ["lists the cluster's 1 nodes"]),
]


@pytest.mark.parametrize("given, kind, expected", PROFILE_TABLE)
def test_profile_decision(given, kind, expected):
    check(STATES._decide_profile, given, kind, expected)


def test_profile_decision_changes():
    verdict = STATES._decide_profile(facts(SEEN, entries=None, mode=None, was_active="other"))
    assert verdict.changes == {
        "nodes": {"old": None, "new": ["m1 (10.0.0.11)", "m2 (192.0.2.12)"]},
        "mode": {"old": None, "new": "0o600"},
        "active_profile": {"old": "other", "new": "prod"}}
    assert STATES._decide_profile(facts(SEEN, mode="0o644", was_active="other")).changes == {
        "mode": {"old": "0o644", "new": "0o600"}}  # a mode fix does not switch the profile


ABSENT = {"name": "m2", "test": False}
ABSENT_TABLE = [
    (ABSENT, "need", "cluster"),
    (facts(ABSENT, active=ACTIVE, nodes=[LEADER]), "ok", ["m2 is not a member of the cluster"]),
    (facts(ABSENT, name="m1", active=ACTIVE, nodes=[LEADER]), "refuse", ["m1 is the active node"]),
    (facts(ABSENT, active=ACTIVE, nodes=MEMBERS), "refuse", ["m2 is online (replica)"]),
    (facts(ABSENT, active=ACTIVE, nodes=[LEADER, node("m2", "10.0.0.12", "offline")]), "act",
     ["m2 would be removed from the cluster through 10.0.0.11"]),
]


@pytest.mark.parametrize("given, kind, expected", ABSENT_TABLE)
def test_absent_decision(given, kind, expected):
    check(STATES._decide_absent, given, kind, expected)


LISTED_TABLE = [
    (ABSENT, "need", "cluster"),
    (facts(ABSENT, active=None, nodes=None), "refuse", ["no manager of the cluster answers"]),
    (facts(ABSENT, active=ACTIVE, nodes=[LEADER]), "refuse", ["does not list it"]),
    (facts(ABSENT, active=ACTIVE, nodes=[LEADER, node("m2", "10.0.0.12", "offline")]), "ok",
     ["the cluster lists it (offline, active node 10.0.0.11)"]),
]


@pytest.mark.parametrize("given, kind, expected", LISTED_TABLE)
def test_listed_decision(given, kind, expected):
    check(STATES._decide_listed, given, kind, expected)


CHECK = {"name": "lbcheck", "test": False, "host": "10.0.0.11"}
GOOD_USER = {"username": "lbcheck", "role": "default", "tenants": 0, "groups": 0, "active": True,
             "password_ok": True}
CHECK_USER_TABLE = [
    (CHECK, "need", "user"),
    (facts(CHECK, user=None), "act", ["the check user lbcheck would be created through "
                                      "10.0.0.11 (role default)"]),
    (facts(CHECK, user=GOOD_USER), "ok", ["the check user lbcheck exists (role default) and "
                                          "accepts the pillar's password"]),
    # more rights than reading /status: never changed, refused
    (facts(CHECK, user=dict(GOOD_USER, role="sys_admin")), "refuse",
     ["exists with role sys_admin, in 0 tenant(s) and 0 group(s)", "cfy users delete lbcheck"]),
    (facts(CHECK, user=dict(GOOD_USER, tenants=1)), "refuse", ["in 1 tenant(s)"]),
    (facts(CHECK, user=dict(GOOD_USER, groups=2)), "refuse", ["and 2 group(s)"]),
    (facts(CHECK, user=dict(GOOD_USER, active=False)), "refuse",
     ["is deactivated", "cfy users activate lbcheck"]),
    # a password Cloudify does not accept: detected, never rotated here
    (facts(CHECK, user=dict(GOOD_USER, password_ok=False)), "refuse",
     ["does not accept loadbalancer:check_password", "never changes its password",
      "the load balancers keep the password they have"]),
]


@pytest.mark.parametrize("given, kind, expected", CHECK_USER_TABLE)
def test_check_user_decision(given, kind, expected):
    check(STATES._decide_check_user, given, kind, expected)


def test_check_user_decision_changes():
    verdict = STATES._decide_check_user(facts(CHECK, user=None))
    assert verdict.changes == {"created": {"old": None, "new": "lbcheck", "role": "default"}}


CREDENTIALS = {"name": "lbcheck", "test": False}
CREDENTIALS_TABLE = [
    (CREDENTIALS, "need", "answers"),
    (facts(CREDENTIALS, answers={"m1": "active", "m2": "not_cluster_master"}), "ok",
     ["m1 accepts the check user lbcheck with the pillar's password"]),
    (facts(CREDENTIALS, answers={"m1": "unauthorized", "m2": "not_cluster_master"}), "refuse",
     ["m1 reject the check user lbcheck with loadbalancer:check_password (unauthorized)",
      "HAProxy's configuration was left as it is"]),
    (facts(CREDENTIALS, answers={"m1": "forbidden_error", "m2": "active"}), "refuse",
     ["m1 reject", "(forbidden_error)"]),
    (facts(CREDENTIALS, answers={"m1": "unreachable", "m2": "not_cluster_master"}), "ok",
     ["no manager answers as the active node (m1: unreachable; m2: not_cluster_master)",
      "could not be checked"]),
]


@pytest.mark.parametrize("given, kind, expected", CREDENTIALS_TABLE)
def test_check_credentials_decision(given, kind, expected):
    check(STATES._decide_check_credentials, given, kind, expected)


@pytest.mark.parametrize("decide, table", [
    (STATES._decide_join, JOIN_TABLE), (STATES._decide_install, INSTALL_TABLE),
    (STATES._decide_start, START_TABLE), (STATES._decide_profile, PROFILE_TABLE),
    (STATES._decide_absent, ABSENT_TABLE), (STATES._decide_listed, LISTED_TABLE),
    (STATES._decide_check_user, CHECK_USER_TABLE),
    (STATES._decide_check_credentials, CREDENTIALS_TABLE)])
def test_a_decision_never_changes_the_facts_it_is_given(decide, table):
    for given, _kind, _expected in table:
        before = repr(given)
        decide(given)
        assert repr(given) == before


WANT = {"customer_id": "c1", "expiration_date": "2030-12-31", "license_edition": "Spire",
        "trial": False, "cloudify_version": "4.6", "capabilities": None}
LIC = {"name": "prod", "test": False, "host": "10.0.0.11"}
LICENSE_TABLE = [
    (LIC, "need", "want"),
    (facts(LIC, want=WANT), "need", "have"),
    (facts(LIC, want=WANT, have={}), "act",
     ["the license of customer c1 (Spire, expires 2030-12-31) would be uploaded through "
      "10.0.0.11"]),
    (facts(LIC, want=WANT, have=dict(WANT, expired=False)), "ok",
     ["the manager holds the pillar's license of customer c1"]),
    # another license on the manager (renewed, or another customer's): replaced by the pillar's
    (facts(LIC, want=WANT, have=dict(WANT, expiration_date="2029-12-31", expired=False)), "act",
     ["differs from the pillar's in expiration_date", "would be uploaded"]),
    (facts(LIC, want=dict(WANT, expiration_date=None), have=dict(WANT, expired=True)), "act",
     ["differs from the pillar's in expiration_date"]),
    # the pillar's own license has expired (a paying one: 4.6 goes on): said, not re-uploaded
    (facts(LIC, want=WANT, have=dict(WANT, expired=True)), "ok", ["which has EXPIRED"]),
    # a 4.5.5 manager: no license endpoint, nothing to hold
    (facts(LIC, want=WANT, have=None), "ok", ["has no license endpoint (4.5.5"]),
]


@pytest.mark.parametrize("given, kind, expected", LICENSE_TABLE)
def test_license_decision(given, kind, expected):
    check(STATES._decide_license, given, kind, expected)


def test_license_decision_changes_hold_the_fields_never_the_text():
    verdict = STATES._decide_license(facts(LIC, want=WANT, have=dict(WANT, trial=True,
                                                                     expired=False)))
    assert verdict.changes == {"license": {"old": dict(WANT, trial=True), "new": WANT}}
