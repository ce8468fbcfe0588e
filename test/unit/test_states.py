"""_states/cloudify_ha.py: every branch of every state, with a fake execution module.

Each test gives the state a fake ``cloudify_ha`` execution module (one MagicMock per function)
and asserts on the WHOLE return dict. A function the test did not give is a KeyError: a state
that calls something unexpected fails the test instead of passing silently.
"""

import fcntl
import json
import os
from unittest.mock import MagicMock, patch

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

from formula_code import files_util, state_module

STATES = state_module()
UTILS = {"cloudify_ha_files.open_private": files_util().open_private}
MUTATING = ("install", "join", "start_cluster", "remove_node", "use_profile", "update_profile",
            "secure_profile", "set_profile_cluster", "remove_manager", "create_check_user")

MGR1, MGR2, MGR3 = ("cfy-mgr1", "10.0.0.11"), ("cfy-mgr2", "10.0.0.12"), ("cfy-mgr3", "10.0.0.13")
ACTIVE = {"name": "cfy-mgr1", "host": "10.0.0.11"}
ALL_IPS = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
EMPTY_DB = {"holds_data": False, "databases": [], "name": "cloudify_db", "tables": 0, "data": {},
            "rows": {}, "host": "10.0.0.5:5432"}
FULL_DB = {"holds_data": True, "databases": ["cloudify_db", "composer", "stage"],
           "name": "cloudify_db", "tables": 61, "data": {"cloudify_db": 61, "stage": 9,
                                                        "composer": 0},
           "rows": {"blueprints": 2, "deployments": 1, "users": 1}, "host": "10.0.0.5:5432"}


def node(manager, state, database_ip="10.0.0.5"):
    """A member as cloudify_ha.cluster_nodes lists it."""
    name, host_ip = manager
    return {"name": name, "host_ip": host_ip, "state": state, "online": state != "offline",
            "master": state == "leader", "initialized": True, "database_ip": database_ip,
            "checks": {}}


LEADER = node(MGR1, "leader")


class Seq:
    """Successive answers of one function; the last one repeats."""

    def __init__(self, *answers):
        self.answers = answers


class FakeModule(dict):
    """__salt__ with a fake cloudify_ha execution module: cloudify_ha.<fn> -> MagicMock.

    A value is the function's answer, an exception is raised, Seq(...) gives successive answers.
    `order` lists the calls as they happened; `fake.join` is the mock of cloudify_ha.join.
    """

    def __init__(self, **answers):
        super().__init__()
        self.order = []
        for fn, answer in answers.items():
            self[f"cloudify_ha.{fn}"] = MagicMock(name=fn, side_effect=self._answering(fn, answer))

    def _answering(self, fn, answer):
        answers = list(answer.answers) if isinstance(answer, Seq) else [answer]

        def effect(*_args, **_kwargs):
            self.order.append(fn)
            value = answers.pop(0) if len(answers) > 1 else answers[0]
            if isinstance(value, BaseException):
                raise value
            return value
        return effect

    def __getattr__(self, fn):
        try:
            return self[f"cloudify_ha.{fn}"]
        except KeyError:
            raise AttributeError(fn) from None

    def assert_nothing_mutated(self):
        for fn in MUTATING:
            if f"cloudify_ha.{fn}" in self:
                self[f"cloudify_ha.{fn}"].assert_not_called()


class Mentions:
    """Equal to a comment that contains every fragment: for the long, advisory comments."""

    def __init__(self, *fragments):
        self.fragments = fragments

    def __eq__(self, other):
        return isinstance(other, str) and all(f in other for f in self.fragments)

    def __repr__(self):
        return f"<a comment mentioning {self.fragments!r}>"


class FakeClock:
    """The state module's `time`: sleeping advances the clock at once."""

    def __init__(self):
        self.now, self.slept = 1000.0, 0.0

    def monotonic(self):
        return self.now

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        self.slept += seconds


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def configure_loader_modules(clock, tmp_path):
    return {STATES: {"__salt__": {}, "__opts__": {"test": False, "cachedir": str(tmp_path)},
                     "__context__": {}, "__pillar__": {}, "__utils__": UTILS, "time": clock}}


def run(state, fake, test=False, **kwargs):
    with patch.dict(STATES.__salt__, fake), patch.dict(STATES.__opts__, {"test": test}):
        return state(**kwargs)


def ret(name, result, comment, changes=None):
    return {"name": name, "result": result, "comment": comment, "changes": changes or {}}


@pytest.mark.parametrize("test", [False, True])
def test_refused_fails_with_its_comment_also_in_test_mode(test):
    fake = FakeModule()
    assert run(STATES.refused, fake, test=test, name="cloudify_ha-orch-validate",
               comment="the pillar is invalid\n- a:b: fix it") == ret(
        "cloudify_ha-orch-validate", False, "the pillar is invalid\n- a:b: fix it")
    assert fake.order == []


def test_virtual_needs_the_execution_module():
    with patch.dict(STATES.__salt__, {"cloudify_ha.node_state": MagicMock()}):
        assert STATES.__virtual__() == "cloudify_ha"
    assert STATES.__virtual__() == (
        False, "the cloudify_ha execution module is not available: sync the formula's modules "
               "(saltutil.sync_all)")


# ---- manager_installed ---------------------------------------------------------------------------
def installing(**answers):
    """The fake module of a fresh leader host on an empty database, install about to work."""
    defaults = {"node_state": Seq("package_installed", "installed"), "active_node": None,
                "database_holds_data": EMPTY_DB, "install": {"retcode": 0, "output": "ok"},
                "local_api_ok": True}
    return FakeModule(**dict(defaults, **answers))


def install_mgr1(fake, test=False, **kwargs):
    return run(STATES.manager_installed, fake, test, name="cfy-mgr1", cluster="prod", **kwargs)


@pytest.mark.parametrize("state", ["installed", "leader", "replica"])
def test_manager_installed_never_reinstalls(state):
    fake = installing(node_state=state)
    assert install_mgr1(fake) == ret("cfy-mgr1", True, f"cfy-mgr1 is already installed (node "
                                     f"state: {state}); an install is never re-run")
    fake.install.assert_not_called()
    fake.database_holds_data.assert_not_called()


def test_manager_installed_needs_the_installer_package():
    fake = installing(node_state="absent")
    assert install_mgr1(fake) == ret(
        "cfy-mgr1", False, "cfy-mgr1: the cloudify-manager-install package is not installed on "
                           "this host; apply the cloudify_ha.installer SLS first")
    fake.install.assert_not_called()


def test_manager_installed_installs_on_an_empty_database():
    fake = installing()
    assert install_mgr1(fake) == ret(
        "cfy-mgr1", True, "cfy-mgr1 installed on 10.0.0.5:5432",
        {"installed": {"old": "package_installed", "new": "installed"}})
    fake.install.assert_called_once_with(cluster="prod")
    fake.active_node.assert_called_once_with(cluster="prod", required=False)
    assert fake.order == ["node_state", "active_node", "database_holds_data", "install",
                          "node_state", "local_api_ok"]


def test_manager_installed_defers_to_a_running_cluster():
    fake = installing(active_node=ACTIVE)
    assert install_mgr1(fake) == ret("cfy-mgr1", True, Mentions(
        "the cluster already runs (active node 10.0.0.11)", "cloudify_ha.joined",
        "would drop the cluster's database"))
    fake.database_holds_data.assert_not_called()
    fake.install.assert_not_called()


def test_manager_installed_refuses_a_database_that_holds_data():
    fake = installing(database_holds_data=FULL_DB)
    assert install_mgr1(fake) == ret("cfy-mgr1", False, Mentions(
        "cfy-mgr1: refusing to install", "10.0.0.5:5432", "cloudify_db with 61 tables",
        "stage with 9 tables", "2 blueprints, 1 deployments, 1 users",
        "DROP DATABASE on cloudify_db, stage and composer",
        "allow_database_reset: True"))
    fake.assert_nothing_mutated()


def test_manager_installed_resets_the_database_when_allowed():
    fake = installing(database_holds_data=FULL_DB)
    assert install_mgr1(fake, allow_database_reset=True) == ret(
        "cfy-mgr1", True, "cfy-mgr1 installed on 10.0.0.5:5432",
        {"installed": {"old": "package_installed", "new": "installed"},
         "database_reset": {"old": ["cloudify_db", "composer", "stage"],
                            "new": "dropped and recreated"}})
    fake.install.assert_called_once_with(cluster="prod")


@pytest.mark.parametrize("db, allow, changes", [
    (EMPTY_DB, False, {"installed": {"old": "package_installed", "new": "installed"}}),
    (FULL_DB, True, {"installed": {"old": "package_installed", "new": "installed"},
                     "database_reset": {"old": ["cloudify_db", "composer", "stage"],
                                        "new": "dropped and recreated"}}),
])
def test_manager_installed_test_mode_reports_and_installs_nothing(db, allow, changes):
    fake = installing(database_holds_data=db)
    assert install_mgr1(fake, test=True, allow_database_reset=allow) == ret(
        "cfy-mgr1", None, "cfy-mgr1 would be installed as the first manager on 10.0.0.5:5432 "
                          "(non-join install)", changes)
    fake.install.assert_not_called()


def test_manager_installed_test_mode_forecasts_the_installer_package():
    fake = installing(node_state="absent")
    result = install_mgr1(fake, test=True)
    assert result == ret("cfy-mgr1", None, "cfy-mgr1 would be installed as the first manager on "
                         "10.0.0.5:5432 (non-join install)",
                         {"installed": {"old": "package_installed", "new": "installed"}})
    fake.install.assert_not_called()


@pytest.mark.parametrize("after, api_ok", [("package_installed", True), ("down", True),
                                           ("installed", False)])
def test_manager_installed_believes_the_host_not_the_installer(after, api_ok):
    fake = installing(node_state=Seq("package_installed", after), local_api_ok=api_ok)
    assert install_mgr1(fake) == ret("cfy-mgr1", False, Mentions(
        "cfy-mgr1: cfy_manager install returned 0 but the host is not a working manager "
        f"(node state: {after})", "cfy_manager.log"))


def test_manager_installed_advises_on_a_half_installed_leader_without_its_database():
    """An install that failed after its nginx step: the host's own nginx answers 502
    (cloudify-4.6.md section 0.4). Only the OTHER managers are asked whether a cluster runs,
    and the database is never read: the refusal is the half-install's advice."""
    fake = installing(node_state="half_installed")
    assert install_mgr1(fake) == ret("cfy-mgr1", False, Mentions(
        "cfy-mgr1: an earlier install failed part-way", "half-installed",
        "the database was not touched", "'cfy_manager remove -f'"))
    fake.active_node.assert_called_once_with(cluster="prod", required=False, others=True)
    fake.database_holds_data.assert_not_called()
    fake.assert_nothing_mutated()


def test_manager_installed_advises_on_a_half_installed_leader_the_others_cannot_place():
    """The other managers answer, but none as the active node (their nginx answers 502 too):
    still the half-install's advice, with what they said; never the database."""
    unsure = CommandExecutionError("no active node in cluster 'prod': cfy-mgr2 (10.0.0.12): "
                                   "starting (nginx answers 502 while the REST service starts)")
    fake = installing(node_state="half_installed", active_node=unsure)
    assert install_mgr1(fake) == ret("cfy-mgr1", False, Mentions(
        "an earlier install failed part-way", "'cfy_manager remove -f'",
        "whether a cluster already runs could not be told: no active node in cluster 'prod'"))
    fake.database_holds_data.assert_not_called()


def test_manager_installed_half_installed_defers_to_a_cluster_running_elsewhere():
    fake = installing(node_state="half_installed", active_node={"name": "cfy-mgr2",
                                                                "host": "10.0.0.12"})
    assert install_mgr1(fake) == ret("cfy-mgr1", True, Mentions(
        "the cluster already runs (active node 10.0.0.12)", "cloudify_ha.joined"))
    fake.assert_nothing_mutated()


@pytest.mark.parametrize("failing", ["node_state", "active_node", "database_holds_data", "install"])
def test_manager_installed_turns_errors_into_a_failed_state(failing):
    fake = installing(**{failing: CommandExecutionError("psql: connection refused")})
    assert install_mgr1(fake) == ret("cfy-mgr1", False, "cfy-mgr1: psql: connection refused")


# ---- cluster_started -----------------------------------------------------------------------------
def starting(**answers):
    """The fake module of an installed standalone leader whose cluster start is about to work."""
    defaults = {"node_state": Seq("installed", "leader"), "active_node": None,
                "start_cluster": {"retcode": 0, "output": "started"},
                "cluster_status": {"initialized": True}}
    return FakeModule(**dict(defaults, **answers))


def start_on_mgr1(fake, test=False):
    return run(STATES.cluster_started, fake, test, name="cfy-mgr1", host_ip="10.0.0.11",
               cluster="prod")


STARTED = {"cluster": {"old": "standalone",
                       "new": {"node_name": "cfy-mgr1", "host_ip": "10.0.0.11"}}}


@pytest.mark.parametrize("state", ["leader", "replica"])
def test_cluster_started_is_a_no_op_on_a_member(state):
    fake = starting(node_state=state)
    assert start_on_mgr1(fake) == ret("cfy-mgr1", True,
                                      f"cfy-mgr1 is already part of a cluster ({state})")
    fake.start_cluster.assert_not_called()


def test_cluster_started_starts_with_explicit_name_and_address_then_checks():
    fake = starting()
    assert start_on_mgr1(fake) == ret("cfy-mgr1", True, "cluster started on cfy-mgr1 (10.0.0.11)",
                                      STARTED)
    fake.start_cluster.assert_called_once_with("cfy-mgr1", "10.0.0.11", cluster="prod")
    fake.cluster_status.assert_called_once_with(active="10.0.0.11", cluster="prod")
    assert fake.order == ["node_state", "start_cluster", "cluster_status", "node_state"]


@pytest.mark.parametrize("status, after", [({"initialized": False}, "leader"),
                                           ({"initialized": True}, "installed"),
                                           ({}, "leader")])
def test_cluster_started_fails_when_the_start_did_not_take(status, after, clock):
    fake = starting(node_state=Seq("installed", after), cluster_status=status)
    assert start_on_mgr1(fake) == ret("cfy-mgr1", False, "cfy-mgr1: cfy cluster start returned 0 "
                                      "but the cluster is not initialized after 120s (node "
                                      f"state: {after})")
    assert clock.slept == pytest.approx(120)  # waited for, as through 4.6's restart


def test_cluster_started_waits_through_the_rest_restart_of_the_start(clock):
    """4.6 restarts the REST service and nginx while the cluster initializes
    (cloudify-4.6.md section 0.4): the check after `cfy cluster start` may meet nginx's 502."""
    gateway = CommandExecutionError("GET /cluster?_include=initialized on 10.0.0.11 failed: 502")
    fake = starting(node_state=Seq("installed", "down", "down", "leader"),
                    cluster_status=Seq(gateway, gateway, {"initialized": True}))
    assert start_on_mgr1(fake) == ret("cfy-mgr1", True, "cluster started on cfy-mgr1 (10.0.0.11)",
                                      STARTED)
    assert fake.order == ["node_state", "start_cluster"] + ["cluster_status", "node_state"] * 3
    assert 0 < clock.slept < 5


def test_cluster_started_names_the_last_answer_when_it_never_comes(clock):
    gateway = CommandExecutionError("GET /cluster?_include=initialized on 10.0.0.11 failed: 502")
    fake = starting(node_state=Seq("installed", "down"), cluster_status=gateway)
    assert run(STATES.cluster_started, fake, name="cfy-mgr1", host_ip="10.0.0.11",
               cluster="prod", wait=20) == ret(
        "cfy-mgr1", False, "cfy-mgr1: cfy cluster start returned 0 but the cluster is not "
        "initialized after 20s (node state: down); last answer: GET /cluster?_include="
        "initialized on 10.0.0.11 failed: 502")
    assert clock.slept == pytest.approx(20)


def test_cluster_started_test_mode_on_an_installed_manager():
    fake = starting()
    assert start_on_mgr1(fake, test=True) == ret(
        "cfy-mgr1", None, "the cluster would be started on cfy-mgr1 (10.0.0.11)", STARTED)
    fake.start_cluster.assert_not_called()


@pytest.mark.parametrize("state", ["package_installed", "absent"])
def test_cluster_started_test_mode_before_the_install(state):
    fake = starting(node_state=state)
    assert start_on_mgr1(fake, test=True) == ret(
        "cfy-mgr1", None,
        "the cluster would be started on cfy-mgr1 (10.0.0.11) once it is installed",
        {"cluster": {"old": None, "new": {"node_name": "cfy-mgr1", "host_ip": "10.0.0.11"}}})
    fake.start_cluster.assert_not_called()


def test_cluster_started_defers_to_a_cluster_running_elsewhere():
    fake = starting(node_state="package_installed", active_node={"name": "cfy-mgr2",
                                                                 "host": "10.0.0.12"})
    assert start_on_mgr1(fake) == ret("cfy-mgr1", True, "cfy-mgr1: the cluster already runs "
                                      "(active node 10.0.0.12); this host joins it "
                                      "(cloudify_ha.joined)")
    fake.start_cluster.assert_not_called()
    fake.active_node.assert_called_once_with(cluster="prod", required=False)


@pytest.mark.parametrize("state", ["package_installed", "absent", "removed"])
def test_cluster_started_needs_an_installed_manager(state):
    fake = starting(node_state=state)
    assert start_on_mgr1(fake) == ret("cfy-mgr1", False, Mentions(
        f"cfy-mgr1: cannot start a cluster on a host in state '{state}'",
        "installed, standalone manager"))
    fake.start_cluster.assert_not_called()


def test_cluster_started_on_a_half_installed_host_asks_only_the_other_managers():
    fake = starting(node_state="half_installed")
    assert start_on_mgr1(fake) == ret("cfy-mgr1", False, Mentions(
        "cfy-mgr1: an earlier install failed part-way", "'cfy_manager remove -f'"))
    fake.active_node.assert_called_once_with(cluster="prod", required=False, others=True)
    fake.start_cluster.assert_not_called()


def test_cluster_started_leaves_a_clustered_manager_in_its_boot_window_alone():
    fake = starting(node_state="down")  # /etc/cloudify/cluster, nginx answering 502
    assert start_on_mgr1(fake) == ret("cfy-mgr1", True, Mentions(
        "cfy-mgr1 is already part of a cluster", "does not answer yet"))
    fake.start_cluster.assert_not_called()


@pytest.mark.parametrize("failing", ["node_state", "start_cluster"])
def test_cluster_started_turns_errors_into_a_failed_state(failing):
    fake = starting(**{failing: CommandExecutionError("cfy cluster start failed (exit 1)")})
    assert start_on_mgr1(fake) == ret("cfy-mgr1", False,
                                      "cfy-mgr1: cfy cluster start failed (exit 1)")


# ---- joined --------------------------------------------------------------------------------------
BEFORE = [node(MGR3, "replica", database_ip="10.0.0.99"), LEADER]  # mgr2 not yet a member
AFTER = BEFORE + [node(MGR2, "replica")]
JOINED = {"joined": {"old": None, "new": {"active_node": "10.0.0.11", "database": "10.0.0.5"}}}


def joining(**answers):
    """The fake module of a fresh, empty mgr2 whose join is about to work."""
    defaults = {"node_state": "package_installed", "active_node": ACTIVE,
                "cluster_nodes": Seq(BEFORE, AFTER), "resources": [], "database_host": "10.0.0.5",
                "join": {"retcode": 0, "output": "ok"}, "remove_node": {"name": "cfy-mgr2"}}
    return FakeModule(**dict(defaults, **answers))


def join_mgr2(fake, test=False, **kwargs):
    return run(STATES.joined, fake, test, name="cfy-mgr2", host_ip="10.0.0.12", cluster="prod",
               **kwargs)


@pytest.mark.parametrize("manager, local", [(MGR2, "replica"), (MGR1, "leader")])
def test_joined_member_online(manager, local):
    fake = joining(node_state=local, cluster_nodes=AFTER)
    name, host_ip = manager
    assert run(STATES.joined, fake, name=name, host_ip=host_ip, cluster="prod") == ret(
        name, True, f"{name} is a member of the cluster ({local}; active node 10.0.0.11)")
    fake.assert_nothing_mutated()


def test_joined_fresh_empty_host_joins_with_the_pillars_database(clock):
    fake = joining()
    assert join_mgr2(fake) == ret("cfy-mgr2", True,
                                  "cfy-mgr2 joined the cluster (active node 10.0.0.11)", JOINED)
    # the pillar's database, which the active node's own (leader) entry confirms (another
    # entry's differing database_ip is not the active node's word)
    fake.join.assert_called_once_with("10.0.0.11", "10.0.0.5", cluster="prod")
    fake.active_node.assert_called_once_with(cluster="prod", required=True)
    fake.remove_node.assert_not_called()
    assert fake.order == ["node_state", "active_node", "cluster_nodes", "resources",
                          "database_host", "join",
                          "cluster_nodes"]
    assert clock.slept == 0


def test_joined_fails_when_the_node_never_comes_online(clock):
    fake = joining(cluster_nodes=Seq(BEFORE))
    assert join_mgr2(fake, wait=30) == ret("cfy-mgr2", False, Mentions(
        "cfy-mgr2: cfy_manager install returned 0 but cfy-mgr2 is not online as a replica in the "
        "active node's view after 30s", "8301/tcp+udp"))
    fake.join.assert_called_once()
    assert clock.slept == pytest.approx(30, abs=1)


def test_joined_refuses_a_host_that_is_not_empty():
    fake = joining(resources=["blueprints/default_tenant/app/blueprint.yaml", "plugins/x.wgn"])
    assert join_mgr2(fake) == ret("cfy-mgr2", False, Mentions(
        "cfy-mgr2: this host is not empty (2 file(s) under /opt/manager/resources, e.g. "
        "blueprints/default_tenant/app/blueprint.yaml)", "Nothing was changed"))
    fake.assert_nothing_mutated()


def test_joined_tears_down_a_failed_install_then_joins():
    """4.6 leaves a join that failed after its restservice step with services up and no
    .install: torn down (cfy_manager remove -f), re-checked, then joined."""
    fake = joining(node_state=Seq("half_installed", "package_installed"),
                   remove_manager={"retcode": 0, "output": "removed"})
    assert join_mgr2(fake) == ret(
        "cfy-mgr2", True, "cfy-mgr2 joined the cluster (active node 10.0.0.11) (after tearing "
                          "down its failed install)",
        dict(JOINED, removed_failed_install={
            "old": "services running without /etc/cloudify/.install (a failed install)",
            "new": "torn down (cfy_manager remove -f)"}))
    assert fake.order == ["node_state", "active_node", "cluster_nodes", "resources",
                          "database_host", "remove_manager", "node_state", "join",
                          "cluster_nodes"]


def test_joined_stops_when_the_teardown_leaves_the_host_unclean():
    fake = joining(node_state=Seq("half_installed", "half_installed"),
                   remove_manager={"retcode": 0, "output": "removed"})
    assert join_mgr2(fake) == ret("cfy-mgr2", False, Mentions(
        "cfy_manager remove -f returned 0 but the host is not clean (node state: "
        "half_installed)"))
    fake.join.assert_not_called()


@pytest.mark.parametrize("given", [{"remove_failed_join": False},
                                   {"test": True}])
def test_joined_failed_install_left_alone_when_told_or_in_test_mode(given):
    fake = joining(node_state="half_installed", remove_manager={"retcode": 0})
    result = join_mgr2(fake, **given)
    assert result["result"] is (None if given.get("test") else False), result
    fake.assert_nothing_mutated()
    fake.remove_manager.assert_not_called()


def failed_join_record():
    """What a join of mgr2 that failed after its PUT leaves on the active node."""
    return dict(node(MGR2, "offline"), initialized=False)


@pytest.mark.parametrize("local, removed", [
    ("package_installed", ["remove_node", "join"]),
    ("half_installed", ["remove_manager", "node_state", "remove_node", "join"])])
def test_joined_removes_its_failed_joins_record_then_joins_without_replace_stale(local, removed):
    """cloudify-4.6.md section 0.4: a join that failed after its PUT leaves an offline,
    never-initialized record of the node; without replace_stale it is this formula's failed
    join: removed through the active node, and the host joined again."""
    fake = joining(node_state=Seq(local, "package_installed"),
                   cluster_nodes=Seq(BEFORE + [failed_join_record()], AFTER),
                   remove_manager={"retcode": 0, "output": "removed"})
    result = join_mgr2(fake)
    assert result["result"] is True, result
    assert result["changes"]["removed_failed_join"] == {
        "old": "cfy-mgr2 (10.0.0.12): offline, never initialized (a join that failed after "
               "registering)", "new": None}
    assert result["comment"].endswith("(after removing the record its failed join left)")
    fake.remove_node.assert_called_once_with("cfy-mgr2", active="10.0.0.11", cluster="prod")
    start = fake.order.index(removed[0])
    assert fake.order[start:start + len(removed)] == removed, fake.order


def test_joined_test_mode_reports_the_failed_joins_record_and_removes_nothing():
    fake = joining(cluster_nodes=Seq(BEFORE + [failed_join_record()]))
    result = join_mgr2(fake, test=True)
    assert result["result"] is None and "removed_failed_join" in result["changes"], result
    fake.assert_nothing_mutated()


def test_joined_refuses_a_stale_entry_without_replace_stale():
    fake = joining(cluster_nodes=Seq(BEFORE + [node(MGR2, "offline")]))
    assert join_mgr2(fake) == ret("cfy-mgr2", False, Mentions(
        "cfy-mgr2: the cluster still lists cfy-mgr2 (10.0.0.12) as an offline member",
        "Set replace_stale: True"))
    fake.assert_nothing_mutated()


def test_joined_replaces_a_stale_entry_then_joins():
    fake = joining(cluster_nodes=Seq(BEFORE + [node(MGR2, "offline")], AFTER))
    assert join_mgr2(fake, replace_stale=True) == ret(
        "cfy-mgr2", True, "cfy-mgr2 joined the cluster (active node 10.0.0.11)",
        dict(JOINED, removed_stale={"old": "cfy-mgr2", "new": None}))
    fake.remove_node.assert_called_once_with("cfy-mgr2", active="10.0.0.11", cluster="prod")
    fake.join.assert_called_once_with("10.0.0.11", "10.0.0.5", cluster="prod")
    assert fake.order.index("remove_node") < fake.order.index("join")


def test_joined_test_mode_reports_the_stale_entry_and_removes_nothing():
    fake = joining(cluster_nodes=Seq(BEFORE + [node(MGR2, "offline")]))
    assert join_mgr2(fake, test=True, replace_stale=True) == ret(
        "cfy-mgr2", None, "cfy-mgr2 would join the cluster through the active node 10.0.0.11",
        dict(JOINED, removed_stale={"old": "cfy-mgr2", "new": None}))
    fake.assert_nothing_mutated()


def test_joined_waits_for_a_just_wiped_entry_to_go_offline(clock):
    fake = joining(cluster_nodes=Seq(BEFORE + [node(MGR2, "replica")],
                                     BEFORE + [node(MGR2, "replica")],
                                     BEFORE + [node(MGR2, "offline")], AFTER))
    assert join_mgr2(fake, replace_stale=True) == ret(
        "cfy-mgr2", True, "cfy-mgr2 joined the cluster (active node 10.0.0.11)",
        dict(JOINED, removed_stale={"old": "cfy-mgr2", "new": None}))
    fake.remove_node.assert_called_once()
    assert clock.slept == pytest.approx(0.2)  # asked again soon: the first pause is 0.2 s


def test_joined_refuses_when_another_host_is_online_under_this_name(clock):
    fake = joining(cluster_nodes=Seq(AFTER))
    assert join_mgr2(fake, replace_stale=True, offline_wait=45) == ret("cfy-mgr2", False, Mentions(
        "cfy-mgr2: the cluster lists cfy-mgr2 as ONLINE at 10.0.0.12 while this host has no "
        "manager installed (still after offline_wait, 45s)"))
    fake.assert_nothing_mutated()
    assert clock.slept == pytest.approx(45, abs=1)


def test_joined_refuses_the_name_at_another_address():
    fake = joining(cluster_nodes=BEFORE + [node(("cfy-mgr2", "10.0.0.42"), "replica")])
    assert join_mgr2(fake) == ret(
        "cfy-mgr2", False, "cfy-mgr2: the cluster lists cfy-mgr2 at 10.0.0.42, the pillar says "
                           "10.0.0.12; fix the pillar, or retire the old node "
                           "(cloudify_ha.orch.retire) before joining this host")
    fake.assert_nothing_mutated()


def test_joined_refuses_an_address_of_another_member():
    fake = joining(cluster_nodes=BEFORE + [node(("old-mgr", "10.0.0.12"), "offline")])
    assert join_mgr2(fake, replace_stale=True) == ret(
        "cfy-mgr2", False, "cfy-mgr2: address 10.0.0.12 belongs to member old-mgr (offline); "
                           "retire it first or fix the pillar")
    fake.assert_nothing_mutated()


def test_joined_refuses_a_removed_host():
    fake = joining(node_state="removed")
    assert join_mgr2(fake) == ret("cfy-mgr2", False, Mentions(
        "cfy-mgr2: this host was removed from the cluster and can never rejoin",
        "cfy_manager remove -f"))
    fake.assert_nothing_mutated()


@pytest.mark.parametrize("local, what", [("installed", "a standalone manager"),
                                         ("leader", "a leader of another cluster"),
                                         ("replica", "a replica of another cluster")])
def test_joined_refuses_a_host_with_its_own_installation(local, what):
    fake = joining(node_state=local)
    assert join_mgr2(fake) == ret("cfy-mgr2", False, Mentions(
        f"cfy-mgr2: this host already holds {what}", "cfy_manager remove -f"))
    fake.assert_nothing_mutated()


def test_joined_needs_the_installer_package():
    fake = joining(node_state="absent")
    assert join_mgr2(fake) == ret(
        "cfy-mgr2", False, "cfy-mgr2: the cloudify-manager-install package is not installed on "
                           "this host; apply the cloudify_ha.installer SLS first")
    fake.active_node.assert_not_called()


def test_joined_takes_the_pillars_database_when_the_records_carry_none():
    """4.6's node records need not carry database_ip (cloudify-4.6.md section 0.3)."""
    bare = [node(MGR1, "leader", database_ip=None)]
    fake = joining(cluster_nodes=Seq(bare, bare + [node(MGR2, "replica", database_ip=None)]))
    assert join_mgr2(fake)["result"] is True
    fake.join.assert_called_once_with("10.0.0.11", "10.0.0.5", cluster="prod")


def test_joined_refuses_when_the_active_node_reports_another_database():
    fake = joining(cluster_nodes=[node(MGR1, "leader", database_ip="10.0.0.99")])
    assert join_mgr2(fake) == ret(
        "cfy-mgr2", False, "cfy-mgr2: the active node 10.0.0.11 reports its database at "
                           "10.0.0.99, the pillar's database:host is 10.0.0.5; a cluster has one "
                           "database. Nothing was changed: fix the pillar, or check which database "
                           "the cluster really uses")
    fake.assert_nothing_mutated()


def test_joined_test_mode_before_the_cluster_runs():
    fake = joining(node_state="absent", active_node=None)
    assert join_mgr2(fake, test=True) == ret(
        "cfy-mgr2", None, "cfy-mgr2 would join the cluster once it is started (no manager "
                          "answers yet)",
        {"joined": {"old": None, "new": "the cluster's active node"}})
    fake.active_node.assert_called_once_with(cluster="prod", required=False)
    fake.assert_nothing_mutated()


def test_joined_test_mode_with_a_running_cluster():
    fake = joining()
    assert join_mgr2(fake, test=True) == ret(
        "cfy-mgr2", None, "cfy-mgr2 would join the cluster through the active node 10.0.0.11",
        JOINED)
    fake.assert_nothing_mutated()


def test_joined_if_cluster_runs_does_nothing_before_the_cluster_exists():
    fake = joining(active_node=None)
    assert join_mgr2(fake, if_cluster_runs=True) == ret(
        "cfy-mgr2", True, "cfy-mgr2: no manager answers as the cluster's active node: the "
                          "cluster has not been started; nothing to do")
    fake.active_node.assert_called_once_with(cluster="prod", required=False)
    fake.assert_nothing_mutated()


def test_joined_waits_for_a_rebooted_member(clock):
    fake = joining(node_state=Seq("down", "down", "replica"), cluster_nodes=AFTER)
    assert join_mgr2(fake) == ret("cfy-mgr2", True, "cfy-mgr2 is a member of the cluster "
                                  "(replica; active node 10.0.0.11)")
    assert clock.slept == pytest.approx(0.2)  # asked again soon: the first pause is 0.2 s
    fake.assert_nothing_mutated()


def test_joined_gives_up_on_a_member_whose_services_stay_down(clock):
    fake = joining(node_state="down")
    assert join_mgr2(fake, boot_wait=45) == ret("cfy-mgr2", False, Mentions(
        "cfy-mgr2: this manager is installed and clustered but its REST service does not answer",
        "systemctl status"))
    assert clock.slept == pytest.approx(45, abs=1)
    fake.active_node.assert_not_called()


def test_joined_member_that_comes_online(clock):
    fake = joining(node_state="replica",
                   cluster_nodes=Seq(BEFORE + [node(MGR2, "offline")], AFTER))
    assert join_mgr2(fake) == ret("cfy-mgr2", True, Mentions("cfy-mgr2 is a member of the cluster",
                                                             "active node 10.0.0.11"))
    fake.assert_nothing_mutated()


def test_joined_member_found_through_a_failover_says_it_waited():
    fake = joining(node_state="replica", active_node=dict(ACTIVE, waited=41),
                   cluster_nodes=AFTER)
    assert join_mgr2(fake) == ret("cfy-mgr2", True, Mentions(
        "cfy-mgr2 is a member of the cluster", "active node 10.0.0.11, found after waiting 41s "
        "for a failover"))
    fake.assert_nothing_mutated()


def test_joined_through_a_failover_says_it_waited():
    fake = joining(active_node=dict(ACTIVE, waited=41))
    result = join_mgr2(fake)
    assert (result["result"], result["comment"]) == (True, Mentions(
        "cfy-mgr2 joined the cluster (active node 10.0.0.11, found after waiting 41s for a "
        "failover)"))


def test_joined_member_that_stays_offline(clock):
    fake = joining(node_state="replica", cluster_nodes=Seq(BEFORE + [node(MGR2, "offline")]))
    assert join_mgr2(fake) == ret("cfy-mgr2", False, Mentions(
        "cfy-mgr2: a member of the cluster, but offline in the active node's view (10.0.0.11)",
        "8300/tcp, 8301/tcp+udp, 8500/tcp, 22000/tcp"))
    assert clock.slept == pytest.approx(120, abs=1)  # the state's `wait`
    fake.assert_nothing_mutated()


@pytest.mark.parametrize("failing", ["node_state", "active_node", "cluster_nodes", "resources",
                                     "join"])
@pytest.mark.parametrize("error", [CommandExecutionError, SaltInvocationError])
def test_joined_turns_errors_into_a_failed_state(failing, error):
    fake = joining(**{failing: error("no active node in cluster 'prod'")})
    assert join_mgr2(fake) == ret("cfy-mgr2", False, "cfy-mgr2: no active node in cluster 'prod'")


def test_joined_stale_entry_removal_error_stops_before_the_join():
    fake = joining(cluster_nodes=Seq(BEFORE + [node(MGR2, "offline")]),
                   remove_node=CommandExecutionError("DELETE /cluster/nodes/cfy-mgr2 failed"))
    assert join_mgr2(fake, replace_stale=True) == ret(
        "cfy-mgr2", False, "cfy-mgr2: DELETE /cluster/nodes/cfy-mgr2 failed")
    fake.join.assert_not_called()


# ---- the active-node hint and the per-run node state ---------------------------------------------
def test_joined_with_a_hint_asks_the_hinted_node_only():
    fake = joining(node_state="replica", cluster_nodes=AFTER)
    assert join_mgr2(fake, active_hint="10.0.0.11") == ret(
        "cfy-mgr2", True, "cfy-mgr2 is a member of the cluster (replica; active node 10.0.0.11)")
    fake.active_node.assert_not_called()
    fake.cluster_nodes.assert_called_once_with(active="10.0.0.11", cluster="prod")
    fake.assert_nothing_mutated()


@pytest.mark.parametrize("hinted", [
    CommandExecutionError("GET /cluster/nodes on 10.0.0.13 failed: 400 not_cluster_master"),
    [LEADER, node(MGR3, "replica")],  # it answers, but lists another node as the master
])
def test_joined_polls_every_manager_when_the_hint_is_not_the_active_node(hinted):
    fake = joining(node_state="replica", cluster_nodes=Seq(hinted, AFTER))
    assert join_mgr2(fake, active_hint="10.0.0.13") == ret(
        "cfy-mgr2", True, "cfy-mgr2 is a member of the cluster (replica; active node 10.0.0.11)")
    fake.active_node.assert_called_once_with(cluster="prod", required=True)
    assert fake.cluster_nodes.call_args_list[-1].kwargs == {"active": "10.0.0.11",
                                                            "cluster": "prod"}
    fake.assert_nothing_mutated()


def test_joined_with_a_hint_polls_every_manager_before_it_joins(clock):
    fake = joining(cluster_nodes=Seq(BEFORE, BEFORE, AFTER))
    assert join_mgr2(fake, active_hint="10.0.0.11") == ret(
        "cfy-mgr2", True, "cfy-mgr2 joined the cluster (active node 10.0.0.11)", JOINED)
    fake.active_node.assert_called_once_with(cluster="prod", required=True)
    assert fake.order == ["node_state", "cluster_nodes", "resources", "database_host",
                          "active_node", "cluster_nodes", "resources", "database_host", "join",
                          "cluster_nodes"]
    fake.join.assert_called_once_with("10.0.0.11", "10.0.0.5", cluster="prod")


def test_joined_with_a_hint_in_test_mode_polls_nothing_and_joins_nothing():
    fake = joining(cluster_nodes=BEFORE)
    assert join_mgr2(fake, test=True, active_hint="10.0.0.11") == {
        "name": "cfy-mgr2", "result": None, "changes": JOINED,
        "comment": "cfy-mgr2 would join the cluster through the active node 10.0.0.11"}
    fake.active_node.assert_not_called()
    fake.assert_nothing_mutated()


def test_the_states_of_one_run_read_the_node_state_once():
    """The leader SLS: manager_installed, cluster_started, joined in one run (one __context__)."""
    fake = FakeModule(node_state="leader", active_node=ACTIVE, cluster_nodes=AFTER)
    common = {"cluster": "prod"}
    assert run(STATES.manager_installed, fake, name="cfy-mgr1", **common)["result"] is True
    assert run(STATES.cluster_started, fake, name="cfy-mgr1", host_ip="10.0.0.11",
               **common)["result"] is True
    assert run(STATES.joined, fake, name="cfy-mgr1", host_ip="10.0.0.11", **common)["result"]
    fake.node_state.assert_called_once_with(cluster="prod")
    fake.assert_nothing_mutated()


def test_a_state_reads_the_node_state_again_after_it_acts():
    fake = installing()
    assert install_mgr1(fake)["result"] is True
    assert fake.node_state.call_count == 2  # before (package_installed) and after (installed)
    # the run goes on: the next state starts from "installed" without a read, and reads again
    # after it acted
    fake = starting(node_state="leader")
    assert start_on_mgr1(fake)["result"] is True
    fake.start_cluster.assert_called_once()
    assert fake.order.index("start_cluster") < fake.order.index("node_state")
    fake.node_state.assert_called_once_with(cluster="prod")


def test_joined_reads_the_node_state_again_after_a_join(clock):
    fake = joining()
    assert join_mgr2(fake)["result"] is True
    assert "prod" not in STATES.__context__.get("cloudify_ha.node_state", {})


# ---- profile_updated -----------------------------------------------------------------------------
MEMBERS = [LEADER, node(MGR2, "replica"), node(MGR3, "replica")]
# the REST answer's public addresses: the profile never takes them (plain HTTP)
for member, public in zip(MEMBERS, ("203.0.113.1", None, "203.0.113.3")):
    member["public_ip"] = public
# the pillar's public_ip of each manager: what a profile lists
PUBLIC = {"cfy-mgr1": "10.0.0.11", "cfy-mgr2": "10.0.0.12", "cfy-mgr3": "192.0.2.13"}


def at(*entries):
    """Profile entries: (name, address) pairs."""
    return [{"name": n, "manager_ip": a} for n, a in entries]


# what 4.6 leaves: the leader's own profile after `cluster start` + `update-profile` ...
ON_LEADER = at(("cfy-mgr1", "localhost"), ("cfy-mgr2", "10.0.0.12"), ("cfy-mgr3", "192.0.2.13"))
# ... and every other profile (a CLI host's, a replica's) after `update-profile`
EVERY = at(("cfy-mgr1", "10.0.0.11"), ("cfy-mgr2", "10.0.0.12"), ("cfy-mgr3", "192.0.2.13"))
WANTED = ["cfy-mgr1 (10.0.0.11)", "cfy-mgr2 (10.0.0.12)", "cfy-mgr3 (192.0.2.13)"]


def listing(entries):
    return sorted(f"{e['name']} ({e['manager_ip']})" for e in entries)


def profiling(**answers):
    """The fake module of a CLI host whose profile `prod` is active, 0600, and lists every node."""
    defaults = {"active_node": ACTIVE, "cluster_nodes": MEMBERS, "profile_cluster": EVERY,
                "profile_mode": "0o600", "active_profile": "prod", "use_profile": True,
                "local_node": None, "set_profile_cluster": True, "public_addresses": PUBLIC,
                "secure_profile": True}
    return FakeModule(**dict(defaults, **answers))


def update_prod_profile(fake, test=False):
    return run(STATES.profile_updated, fake, test, name="prod", cluster="prod")


@pytest.mark.parametrize("own, entries", [(None, EVERY), ("cfy-mgr1", ON_LEADER),
                                          ("cfy-mgr2", EVERY)])
def test_profile_updated_as_46_leaves_it_is_a_no_op(own, entries):
    fake = profiling(local_node=own, profile_cluster=entries)
    assert update_prod_profile(fake) == ret("prod", True,
                                            "profile prod lists the cluster's 3 nodes")
    fake.assert_nothing_mutated()


@pytest.mark.parametrize("entries", [
    at(("cfy-mgr1", "localhost"), ("cfy-mgr2", "10.0.0.12"), ("cfy-mgr3", "192.0.2.13")),  # not own
    at(("cfy-mgr1", "10.0.0.11"), ("cfy-mgr2", "10.0.0.12"), ("cfy-mgr3", "10.0.0.13")),  # private
    at(("cfy-mgr1", "10.0.0.11"), ("cfy-mgr2", "10.0.0.12")),  # one missing
    EVERY + at(("cfy-mgr4", "10.0.0.14")),  # one gone from the cluster
])
def test_profile_updated_finds_each_way_a_profile_can_be_wrong(entries):
    fake = profiling(profile_cluster=entries)
    assert update_prod_profile(fake, test=True) == ret(
        "prod", None, "profile prod would be updated",
        {"nodes": {"old": listing(entries), "new": WANTED}})
    fake.assert_nothing_mutated()


def test_profile_updated_own_keeps_the_profile_46_made_on_a_joiner():
    """On a joiner, 4.6's installer names the profile after the leader it joined through: the
    state keeps that one (and its credentials) instead of making a `localhost` without any."""
    fake = profiling(own_profile="10.0.0.11", active_profile="10.0.0.11", local_node="cfy-mgr2")
    assert run(STATES.profile_updated, fake, name="localhost", cluster="prod", own=True) == ret(
        "10.0.0.11", True, "profile 10.0.0.11 lists the cluster's 3 nodes")
    fake.own_profile.assert_called_once_with(default="localhost")
    assert [c.kwargs.get("profile") for c in fake.profile_cluster.call_args_list] == [
        "10.0.0.11"]
    fake.assert_nothing_mutated()


def test_profile_updated_test_mode_names_a_joiners_profile_as_the_run_will_keep_it():
    """test=True on a host not yet joined: the profile 4.6's join will leave there, named
    after the node it joins through (cloudify-4.6.md section 0.1), never `localhost`."""
    fake = profiling(own_profile="10.0.0.11", profile_cluster=None, profile_mode=None,
                     active_profile=None, local_node="cfy-mgr2")
    result = run(STATES.profile_updated, fake, test=True, name="localhost", cluster="prod",
                 own=True)
    assert (result["name"], result["result"]) == ("10.0.0.11", None), result
    assert result["comment"] == "profile 10.0.0.11 would be updated"
    fake.own_profile.assert_called_once_with(default="localhost", forecast=True, cluster="prod")
    fake.assert_nothing_mutated()


def test_profile_updated_drops_wrong_entries_and_writes_the_missing_at_the_pillars_address():
    stale = at(("cfy-mgr3", "10.0.0.13"), ("cfy-mgr1", "10.0.0.11"), ("cfy-mgr4", "10.0.0.14"))
    fake = profiling(profile_cluster=Seq(stale, EVERY))
    assert update_prod_profile(fake) == ret("prod", True, "profile prod updated",
                                            {"nodes": {"old": listing(stale), "new": WANTED}})
    fake.set_profile_cluster.assert_called_once_with("prod", EVERY)
    fake.use_profile.assert_not_called()
    assert [f for f in fake.order if f in MUTATING] == ["set_profile_cluster", "secure_profile"]


def test_profile_updated_gives_a_profile_without_the_active_node_its_address_first():
    """A replica's own profile points at itself (no `_cluster`): 4.6's cfy walks only the nodes
    a profile lists, the active node first."""
    fake = profiling(local_node="cfy-mgr2", profile_cluster=Seq([], EVERY))
    assert update_prod_profile(fake)["result"] is True
    fake.set_profile_cluster.assert_called_once_with("prod", EVERY)


def test_profile_updated_keeps_the_entries_that_fit_in_their_order_after_the_active_node():
    kept = at(("cfy-mgr3", "192.0.2.13"), ("cfy-mgr2", "10.0.0.12"), ("cfy-mgr1", "10.0.0.99"))
    fake = profiling(profile_cluster=Seq(kept, EVERY))
    assert update_prod_profile(fake)["result"] is True
    fake.set_profile_cluster.assert_called_once_with("prod", at(
        ("cfy-mgr1", "10.0.0.11"), ("cfy-mgr3", "192.0.2.13"), ("cfy-mgr2", "10.0.0.12")))


# after a failover: 4.6's cfy walks a profile in its order and stops at a 502 (a first node in
# its boot window fails every command, cloudify-4.6.md section 0.4): the active node goes first
FAILED_OVER = {"name": "cfy-mgr2", "host": "10.0.0.12", "waited": 37}
MGR2_FIRST = at(("cfy-mgr2", "10.0.0.12"), ("cfy-mgr1", "10.0.0.11"), ("cfy-mgr3", "192.0.2.13"))


def test_profile_updated_after_a_failover_would_put_the_new_active_node_first():
    fake = profiling(active_node=FAILED_OVER)
    assert update_prod_profile(fake, test=True) == ret(
        "prod", None, "profile prod would be updated",
        {"first": {"old": "cfy-mgr1", "new": "cfy-mgr2"}})
    fake.assert_nothing_mutated()


def test_profile_updated_after_a_failover_puts_the_new_active_node_first_then_is_a_no_op():
    fake = profiling(active_node=FAILED_OVER, profile_cluster=Seq(EVERY, MGR2_FIRST))
    assert update_prod_profile(fake) == ret("prod", True, "profile prod updated",
                                            {"first": {"old": "cfy-mgr1", "new": "cfy-mgr2"}})
    fake.set_profile_cluster.assert_called_once_with("prod", MGR2_FIRST)
    again = profiling(active_node=FAILED_OVER, profile_cluster=MGR2_FIRST)
    assert update_prod_profile(again) == ret(
        "prod", True, "profile prod lists the cluster's 3 nodes, found after waiting 37s for a "
                      "failover")
    again.assert_nothing_mutated()


def test_profile_updated_fails_when_the_active_node_is_still_not_first_after_the_update():
    fake = profiling(active_node=FAILED_OVER)  # set_profile_cluster leaves EVERY as it was
    result = update_prod_profile(fake)
    assert result["result"] is False
    assert "profile prod: lists" in result["comment"]


def test_profile_updated_takes_each_address_from_pillar_never_from_the_rest_answer():
    """The cluster's answer comes over plain HTTP and carries every node's public_ip (4.6's
    update-profile takes those): the profile lists the pillar's, and a node pillar does not
    name gets no entry, so cfy never sends the admin's credentials where no operator said."""
    members = MEMBERS + [dict(node(("cfy-evil", "10.0.0.66"), "replica"),
                              public_ip="198.51.100.66")]
    from_rest = at(("cfy-mgr1", "203.0.113.1"), ("cfy-mgr2", "10.0.0.12"),
                   ("cfy-mgr3", "203.0.113.3"), ("cfy-evil", "198.51.100.66"))
    fake = profiling(cluster_nodes=members, profile_cluster=Seq(from_rest, EVERY))
    assert update_prod_profile(fake) == ret("prod", True, "profile prod updated",
                                            {"nodes": {"old": listing(from_rest), "new": WANTED}})
    fake.public_addresses.assert_called_with(cluster="prod")
    fake.set_profile_cluster.assert_called_once_with("prod", EVERY)
    # and what the pillar wants is a no-op next time
    assert update_prod_profile(profiling(cluster_nodes=members)) == ret(
        "prod", True, "profile prod lists the cluster's 3 nodes")


def test_profile_updated_activates_a_profile_that_is_not_active():
    fake = profiling(active_profile="localhost",
                     profile_cluster=Seq(at(("cfy-mgr1", "10.0.0.11")),
                                         at(("cfy-mgr1", "10.0.0.11")), EVERY))
    assert update_prod_profile(fake) == ret(
        "prod", True, "profile prod updated",
        {"nodes": {"old": ["cfy-mgr1 (10.0.0.11)"], "new": WANTED},
         "active_profile": {"old": "localhost", "new": "prod"}})
    # on a profile that exists, 4.6's `profiles use` only makes it active
    fake.use_profile.assert_called_once_with("prod", "10.0.0.11", cluster="prod")
    fake.set_profile_cluster.assert_called_once_with("prod", EVERY)


def test_profile_updated_creates_a_missing_profile():
    fake = profiling(profile_cluster=Seq(None, [], EVERY), profile_mode=Seq(None, "0o600"),
                     active_profile=None)
    assert update_prod_profile(fake) == ret(
        "prod", True, "profile prod updated",
        {"nodes": {"old": None, "new": WANTED}, "mode": {"old": None, "new": "0o600"},
         "active_profile": {"old": None, "new": "prod"}})
    assert [f for f in fake.order if f in MUTATING] == [
        "use_profile", "set_profile_cluster", "secure_profile"]
    fake.use_profile.assert_called_once_with("prod", "10.0.0.11", cluster="prod")
    fake.set_profile_cluster.assert_called_once_with("prod", EVERY)


def test_profile_updated_only_fixes_the_mode():
    fake = profiling(profile_mode=Seq("0o644", "0o600"))
    assert update_prod_profile(fake) == ret("prod", True, "profile prod updated",
                                            {"mode": {"old": "0o644", "new": "0o600"}})
    fake.secure_profile.assert_called_once_with(profile="prod")
    assert [f for f in fake.order if f in MUTATING] == ["secure_profile"]


def test_profile_updated_test_mode_reports_and_changes_nothing():
    fake = profiling(profile_cluster=at(("cfy-mgr2", "10.0.0.12")), profile_mode="0o644")
    assert update_prod_profile(fake, test=True) == ret(
        "prod", None, "profile prod would be updated",
        {"nodes": {"old": ["cfy-mgr2 (10.0.0.12)"], "new": WANTED},
         "mode": {"old": "0o644", "new": "0o600"}})
    fake.active_node.assert_called_once_with(cluster="prod", required=False)
    fake.assert_nothing_mutated()


def test_profile_updated_test_mode_before_the_cluster_runs():
    fake = profiling(active_node=None, profile_cluster=None)
    assert update_prod_profile(fake, test=True) == ret(
        "prod", None, "profile prod would list the cluster's nodes once it is started",
        {"nodes": {"old": None, "new": "the cluster's nodes"}})
    fake.cluster_nodes.assert_not_called()
    fake.assert_nothing_mutated()


def test_profile_updated_fails_when_the_profile_still_differs():
    short = at(("cfy-mgr1", "10.0.0.11"), ("cfy-mgr2", "10.0.0.12"))
    fake = profiling(profile_cluster=Seq(at(("cfy-mgr1", "10.0.0.11")), short))
    assert update_prod_profile(fake) == ret(
        "prod", False, f"profile prod: lists {listing(short)} after the update, the cluster has "
                       f"{WANTED}")


def test_profile_updated_fails_when_the_mode_did_not_change():
    fake = profiling(profile_mode="0o644")
    assert update_prod_profile(fake) == ret(
        "prod", False, f"profile prod: lists {WANTED} after the update, the cluster has {WANTED}")
    fake.secure_profile.assert_called_once_with(profile="prod")


@pytest.mark.parametrize("failing", ["active_node", "cluster_nodes", "profile_cluster",
                                     "public_addresses", "use_profile", "set_profile_cluster"])
def test_profile_updated_turns_errors_into_a_failed_state(failing):
    answers = {"profile_cluster": Seq(None, [], EVERY), "active_profile": None}  # every act
    answers[failing] = CommandExecutionError("cfy profiles use failed (exit 1)")
    fake = profiling(**answers)
    assert update_prod_profile(fake) == ret("prod", False,
                                            "profile prod: cfy profiles use failed (exit 1)")


def test_profile_updated_with_a_hint_asks_the_hinted_node_only():
    fake = profiling()
    assert run(STATES.profile_updated, fake, name="prod", cluster="prod",
               active_hint="10.0.0.11") == ret("prod", True,
                                               "profile prod lists the cluster's 3 nodes")
    fake.active_node.assert_not_called()
    fake.assert_nothing_mutated()


def test_profile_updated_with_a_hint_polls_every_manager_before_it_changes_the_profile():
    one = at(("cfy-mgr1", "10.0.0.11"))
    fake = profiling(profile_cluster=Seq(one, one, EVERY))
    assert run(STATES.profile_updated, fake, name="prod", cluster="prod",
               active_hint="10.0.0.11") == ret(
        "prod", True, "profile prod updated", {"nodes": {"old": listing(one), "new": WANTED}})
    fake.active_node.assert_called_once_with(cluster="prod", required=True)
    assert fake.order.index("active_node") < fake.order.index("set_profile_cluster")


# ---- node_absent ---------------------------------------------------------------------------------
def removing(**answers):
    defaults = {"active_node": ACTIVE, "remove_node": {"name": "cfy-mgr3"},
                "cluster_nodes": Seq([LEADER, node(MGR2, "replica"), node(MGR3, "offline")],
                                     [LEADER, node(MGR2, "replica")])}
    return FakeModule(**dict(defaults, **answers))


def remove(fake, name="cfy-mgr3", test=False):
    return run(STATES.node_absent, fake, test, name=name, cluster="prod")


REMOVED = {"removed": {"old": {"name": "cfy-mgr3", "host_ip": "10.0.0.13", "state": "offline"},
                       "new": None}}


def test_node_absent_not_a_member():
    fake = removing(cluster_nodes=[LEADER, node(MGR2, "replica")])
    assert remove(fake) == ret("cfy-mgr3", True, "cfy-mgr3 is not a member of the cluster")
    fake.assert_nothing_mutated()


def test_node_absent_removes_a_dead_node_through_the_active_node():
    fake = removing()
    assert remove(fake) == ret("cfy-mgr3", True,
                               "cfy-mgr3 removed from the cluster through 10.0.0.11", REMOVED)
    fake.active_node.assert_called_once_with(cluster="prod", required=True)
    fake.remove_node.assert_called_once_with("cfy-mgr3", active="10.0.0.11", cluster="prod")
    assert fake.order == ["active_node", "cluster_nodes", "remove_node", "cluster_nodes"]


def test_node_absent_test_mode():
    fake = removing()
    assert remove(fake, test=True) == ret(
        "cfy-mgr3", None, "cfy-mgr3 would be removed from the cluster through 10.0.0.11", REMOVED)
    fake.assert_nothing_mutated()


def test_node_absent_refuses_the_active_node():
    fake = removing()
    assert remove(fake, name="cfy-mgr1") == ret("cfy-mgr1", False, Mentions(
        "cfy-mgr1 is the active node: it cannot be removed"))
    fake.assert_nothing_mutated()


def test_node_absent_refuses_an_online_node():
    fake = removing()
    assert remove(fake, name="cfy-mgr2") == ret(
        "cfy-mgr2", False, "cfy-mgr2 is online (replica): only a dead node is retired; stop it "
                           "first if it must go")
    fake.assert_nothing_mutated()


def test_node_absent_fails_when_the_node_is_still_listed():
    fake = removing(cluster_nodes=[LEADER, node(MGR3, "offline")])
    assert remove(fake) == ret("cfy-mgr3", False, "cfy-mgr3: the active node accepted the removal "
                                                  "but still lists it")


@pytest.mark.parametrize("failing", ["active_node", "cluster_nodes", "remove_node"])
def test_node_absent_turns_errors_into_a_failed_state(failing):
    fake = removing(**{failing: CommandExecutionError("no active node in cluster 'prod'")})
    assert remove(fake) == ret("cfy-mgr3", False, "cfy-mgr3: no active node in cluster 'prod'")


# ---- listed --------------------------------------------------------------------------------------
def check_listed(fake, name="cfy-mgr3"):
    return run(STATES.listed, fake, name=name, cluster="prod")


def test_listed_member_that_is_down():
    fake = FakeModule(active_node=ACTIVE, cluster_nodes=[LEADER, node(MGR3, "offline")])
    assert check_listed(fake) == ret(
        "cfy-mgr3", True, "cfy-mgr3: its minion does not answer; the cluster lists it (offline, "
                          "active node 10.0.0.11); it rejoins when its host comes back")
    fake.active_node.assert_called_once_with(cluster="prod", required=False)


def test_listed_not_a_member():
    fake = FakeModule(active_node=ACTIVE, cluster_nodes=[LEADER])
    assert check_listed(fake) == ret("cfy-mgr3", False, Mentions(
        "cfy-mgr3: its minion does not answer and the cluster (active node 10.0.0.11) does not "
        "list it", "bring it up and re-run"))


def test_listed_without_an_active_node():
    fake = FakeModule(active_node=None)
    assert check_listed(fake) == ret("cfy-mgr3", False, Mentions(
        "cfy-mgr3: its minion does not answer and no manager of the cluster answers as the "
        "active node"))


def test_listed_turns_errors_into_a_failed_state():
    fake = FakeModule(active_node=ACTIVE, cluster_nodes=CommandExecutionError("GET failed"))
    assert check_listed(fake) == ret("cfy-mgr3", False, "cfy-mgr3: GET failed")


# ---- one cloudify_ha state at a time on a host ---------------------------------------------------
def lock_path():
    return os.path.join(STATES.__opts__["cachedir"], "cloudify_ha.lock")


def held_lock(record):
    """The host lock, held by another run (which wrote `record`): close the fd to release."""
    fd = os.open(lock_path(), os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, json.dumps(record).encode())
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


OTHER_RUN = {"acts": 3, "holder": {"state": "cfy-mgr1", "pid": 4242, "since": 990.0}}


def test_a_state_waits_for_another_run_on_the_host_then_fails_naming_it(clock):
    fake = installing()
    fd = held_lock(OTHER_RUN)
    try:
        with patch.dict(STATES.__pillar__, {"cloudify_ha": {"lookup": {"lock_wait": 30}}}):
            assert install_mgr1(fake) == ret("cfy-mgr1", False, Mentions(
                "cfy-mgr1: waited 30s for another cloudify_ha state run on this host",
                "'cfy-mgr1', pid 4242", "nothing was changed", "saltutil.running",
                "cloudify_ha:lookup:lock_wait"))
    finally:
        os.close(fd)
    assert 30 <= clock.slept <= 31
    assert fake.order == []  # not even a read: the other run may be changing the host


def test_a_bad_lock_wait_is_named_when_the_lock_is_taken():
    fd = held_lock(OTHER_RUN)
    try:
        with patch.dict(STATES.__pillar__, {"cloudify_ha": {"lookup": {"lock_wait": "1h"}}}):
            assert install_mgr1(installing()) == ret("cfy-mgr1", False, Mentions(
                "cloudify_ha:lookup:lock_wait: must be a positive whole number", "'1h'"))
    finally:
        os.close(fd)


def test_an_act_is_counted_in_the_lock_and_the_lock_is_free_after_the_state():
    assert install_mgr1(installing())["result"] is True
    with open(lock_path(), encoding="utf-8") as fh:
        assert json.load(fh) == {"acts": 1, "holder": None}
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: raises BlockingIOError if held
    STATES.__context__.clear()  # a new run
    assert run(STATES.cluster_started, starting(), name="cfy-mgr1", host_ip="10.0.0.11",
               cluster="prod")["result"] is True
    with open(lock_path(), encoding="utf-8") as fh:
        assert json.load(fh)["acts"] == 2


def test_a_run_reads_the_host_again_after_another_run_acted_on_it():
    # this run read the host (installed, standalone) before another run's act: it must not
    # start a second cluster on what it remembers
    fake = starting(node_state=Seq("installed", "leader"))
    assert start_on_mgr1(fake)["result"] is True  # the act, counted: acts = 1
    with open(lock_path(), "w", encoding="utf-8") as fh:
        json.dump({"acts": 5, "holder": None}, fh)  # other runs acted since
    STATES.__context__["cloudify_ha.node_state"]["prod"] = "installed"  # what this run saw
    again = starting(node_state="leader")
    assert start_on_mgr1(again) == ret("cfy-mgr1", True,
                                       "cfy-mgr1 is already part of a cluster (leader)")
    assert again.order == ["node_state"]
    again.start_cluster.assert_not_called()


def test_test_mode_takes_no_lock():
    fd = held_lock(OTHER_RUN)
    try:
        assert install_mgr1(installing(), test=True)["result"] is None
    finally:
        os.close(fd)


def lock_trap(kind, tmp_path):
    """In the lock file's place, what would make a write of the lock write another file."""
    target = tmp_path / "elsewhere"
    target.write_text("precious\n", encoding="utf-8")
    if kind == "symlink":
        os.symlink(target, lock_path())
        return target, "is a symbolic link"
    if kind == "dangling symlink":
        os.symlink(tmp_path / "nothing-yet", lock_path())
        return tmp_path / "nothing-yet", "is a symbolic link"
    if kind == "hard link":
        os.link(target, lock_path())
        return target, "has 2 hard links"
    os.mkfifo(lock_path())
    return target, "is not a regular file"


@pytest.mark.parametrize("kind", ["symlink", "dangling symlink", "hard link", "fifo"])
@pytest.mark.parametrize("whole_run", [True, False])
def test_the_lock_file_is_never_a_link_to_another_file(tmp_path, kind, whole_run):
    target, what = lock_trap(kind, tmp_path)
    before = target.read_text(encoding="utf-8") if target.exists() else None
    fake = installing()
    if whole_run:
        got = run(STATES.run_locked, fake, name="lock")
    else:
        got = install_mgr1(fake)
    assert got == ret("lock" if whole_run else "cfy-mgr1", False, Mentions(
        f"{lock_path()} {what}: the formula's own files are never followed elsewhere; remove "
        "it", "nothing was changed"))
    assert (target.read_text(encoding="utf-8") if target.exists() else None) == before
    assert fake.order == []


def test_waits_ask_soon_then_at_most_once_an_interval_and_last_at_the_deadline(clock):
    asked = []
    assert STATES._wait_for(lambda: asked.append(clock.now), 5, 1.0) is None
    pauses = [round(b - a, 2) for a, b in zip(asked, asked[1:])]
    assert pauses == [0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 0.6]
    assert asked[-1] == asked[0] + 5


def lock_is_free():
    with open(lock_path(), encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
    return True


def test_a_state_run_holds_the_lock_from_its_first_state_to_its_last():
    assert run(STATES.run_locked, FakeModule(), name="lock") == ret(
        "lock", True, "holding the host's cloudify_ha lock for this state run")
    assert not lock_is_free()
    # the run's own states use the lock it holds (a second flock would wait for itself)
    assert install_mgr1(installing())["result"] is True
    with open(lock_path(), encoding="utf-8") as fh:  # a waiting run is told who holds it
        holder = json.load(fh)["holder"]
    assert (holder["state"], holder["pid"]) == ("lock (a whole state run)", os.getpid())
    assert run(STATES.run_locked, FakeModule(), name="lock2") == ret(
        "lock2", True, "this state run already holds the host's cloudify_ha lock")
    assert not lock_is_free()
    assert run(STATES.run_unlocked, FakeModule(), name="unlock") == ret(
        "unlock", True, "released the host's cloudify_ha lock")
    assert lock_is_free()
    with open(lock_path(), encoding="utf-8") as fh:
        assert json.load(fh) == {"acts": 1, "holder": None}
    assert run(STATES.run_unlocked, FakeModule(), name="unlock") == ret(
        "unlock", True, "no lock was held")


def test_a_state_run_waits_for_another_and_fails_naming_it(clock):
    fd = held_lock(OTHER_RUN)
    try:
        with patch.dict(STATES.__pillar__, {"cloudify_ha": {"lookup": {"lock_wait": 20}}}):
            assert run(STATES.run_locked, FakeModule(), name="lock") == ret("lock", False, Mentions(
                "waited 20s for another cloudify_ha state run on this host", "pid 4242"))
    finally:
        os.close(fd)
    assert 20 <= clock.slept <= 21
    assert "cloudify_ha.run_lock" not in STATES.__context__


def test_a_dry_run_takes_no_run_lock():
    fd = held_lock(OTHER_RUN)
    try:
        assert run(STATES.run_locked, FakeModule(), test=True, name="lock") == ret(
            "lock", True, "test=True reads only: no lock taken")
    finally:
        os.close(fd)


# ---- check_user_present / check_credentials_accepted ------------------------------------------
GOOD_CHECK = {"username": "lbcheck", "role": "default", "tenants": 0, "groups": 0,
              "active": True, "password_ok": True}
ACTIVE_MGR1 = {"name": "cfy-mgr1", "host": "10.0.0.11"}


def test_check_user_present_creates_a_missing_user_through_the_active_node_then_checks():
    fake = FakeModule(active_node=ACTIVE_MGR1, check_user=Seq(None, GOOD_CHECK),
                      create_check_user=True)
    assert run(STATES.check_user_present, fake, name="lbcheck", cluster="prod") == ret(
        "lbcheck", True, "the check user lbcheck created through 10.0.0.11 (role default)",
        {"created": {"old": None, "new": "lbcheck", "role": "default"}})
    assert fake.order == ["active_node", "check_user", "create_check_user", "check_user"]
    fake.create_check_user.assert_called_once_with(active="10.0.0.11", cluster="prod")


def test_check_user_present_is_a_no_op_for_a_user_that_fits():
    fake = FakeModule(active_node=ACTIVE_MGR1, check_user=GOOD_CHECK, create_check_user=True)
    result = run(STATES.check_user_present, fake, name="lbcheck", cluster="prod")
    assert (result["result"], result["changes"]) == (True, {})
    fake.create_check_user.assert_not_called()


def test_check_user_present_test_mode_creates_nothing():
    fake = FakeModule(active_node=ACTIVE_MGR1, check_user=None, create_check_user=True)
    result = run(STATES.check_user_present, fake, test=True, name="lbcheck", cluster="prod")
    assert (result["result"], result["changes"]) == (
        None, {"created": {"old": None, "new": "lbcheck", "role": "default"}})
    fake.create_check_user.assert_not_called()


def test_check_user_present_dry_run_before_the_cluster_runs_says_it_would_create():
    # no manager answers yet (a dry run of the build): asked without the failover wait
    fake = FakeModule(active_node=None, check_user=AssertionError("asked"),
                      create_check_user=True)
    result = run(STATES.check_user_present, fake, test=True, name="lbcheck", cluster="prod")
    assert result == ret("lbcheck", None, "the check user lbcheck would be created through the "
                         "active node once the cluster runs (role default)",
                         {"created": {"old": None, "new": "lbcheck", "role": "default"}})
    fake.active_node.assert_called_once_with(cluster="prod", required=False)


# ---- license_present --------------------------------------------------------------------------
WANT_LICENSE = {"customer_id": "c1", "expiration_date": "2030-12-31", "license_edition": "Spire",
                "trial": False, "cloudify_version": "4.6", "capabilities": None}


def test_license_present_uploads_a_missing_license_then_reads_it_back():
    fake = FakeModule(active_node=ACTIVE_MGR1, license_wanted=WANT_LICENSE,
                      license_info=Seq({}, dict(WANT_LICENSE, expired=False)),
                      upload_license=dict(WANT_LICENSE, expired=False))
    result = run(STATES.license_present, fake, name="prod")
    assert result == ret("prod", True, "cluster prod: the license of customer c1 (Spire, expires "
                         "2030-12-31) uploaded through 10.0.0.11",
                         {"license": {"old": None, "new": WANT_LICENSE}})
    fake.upload_license.assert_called_once_with(active="10.0.0.11", cluster="prod")


def test_license_present_is_a_no_op_when_the_cluster_holds_it():
    fake = FakeModule(active_node=ACTIVE_MGR1, license_wanted=WANT_LICENSE,
                      license_info=dict(WANT_LICENSE, expired=False), upload_license={})
    result = run(STATES.license_present, fake, name="prod")
    assert (result["result"], result["changes"]) == (True, {})
    fake.upload_license.assert_not_called()


def test_license_present_fails_when_the_manager_answers_another_license_after_the_upload():
    fake = FakeModule(active_node=ACTIVE_MGR1, license_wanted=WANT_LICENSE,
                      license_info=Seq({}, dict(WANT_LICENSE, customer_id="c2", expired=False)),
                      upload_license={})
    result = run(STATES.license_present, fake, name="prod")
    assert result == ret("prod", False, "prod: the active node accepted the license but then "
                         "answers another one (it differs in customer_id)")


def test_license_present_dry_run_before_the_cluster_runs_says_it_would_upload():
    fake = FakeModule(active_node=None, license_wanted=WANT_LICENSE,
                      license_info=AssertionError("asked"), upload_license={})
    result = run(STATES.license_present, fake, test=True, name="prod")
    assert (result["result"], result["changes"]) == (
        None, {"license": {"old": None, "new": WANT_LICENSE}})
    assert "would be uploaded through the active node once the cluster runs" in \
        result["comment"]
    fake.upload_license.assert_not_called()


def test_license_present_without_an_active_node_fails_a_real_run():
    fake = FakeModule(active_node=CommandExecutionError("no active node in cluster 'prod'"),
                      license_wanted=WANT_LICENSE, license_info={}, upload_license={})
    result = run(STATES.license_present, fake, name="prod")
    assert result == ret("prod", False, "prod: no active node in cluster 'prod'")
    fake.active_node.assert_called_once_with(cluster="prod", required=True)
    fake.upload_license.assert_not_called()


def test_check_user_present_fails_when_the_new_user_does_not_fit():
    # created meanwhile by someone else, with more rights (the create answered 409: False)
    fake = FakeModule(active_node=ACTIVE_MGR1,
                      check_user=Seq(None, dict(GOOD_CHECK, role="sys_admin")),
                      create_check_user=False)
    result = run(STATES.check_user_present, fake, name="lbcheck", cluster="prod")
    assert result == ret("lbcheck", False, Mentions(
        "lbcheck: the active node accepted the new user but then answers",
        "exists with role sys_admin"))


def test_check_user_present_with_a_stale_password_refuses_and_changes_nothing():
    fake = FakeModule(active_node=ACTIVE_MGR1, check_user=dict(GOOD_CHECK, password_ok=False),
                      create_check_user=True)
    result = run(STATES.check_user_present, fake, name="lbcheck", cluster="prod")
    assert (result["result"], result["changes"]) == (False, {})
    assert "does not accept loadbalancer:check_password" in result["comment"]
    fake.create_check_user.assert_not_called()


@pytest.mark.parametrize("test", [False, True])
def test_check_credentials_accepted_refuses_a_password_the_managers_reject(test):
    fake = FakeModule(check_credentials={"cfy-mgr1": "unauthorized",
                                         "cfy-mgr2": "not_cluster_master"})
    result = run(STATES.check_credentials_accepted, fake, test=test, name="lbcheck",
                 cluster="prod")
    assert (result["result"], result["changes"]) == (False, {})
    assert result["comment"].startswith("cfy-mgr1 reject the check user lbcheck")
