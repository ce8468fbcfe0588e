"""The master's orchestrations rendered by Salt's py renderer over the real execution modules
(the formula's among them, reading pillar.example as the master's pillar), with the minions'
answers to ``saltutil.cmd`` and the master's grains cache canned: the steps, their targets and
their order; the refusals run through the state engine."""

import hashlib
import importlib.util
import shutil

import pytest
import salt.state
import yaml

from render_setup import (CLI, FOLLOWER, FOLLOWER3, LB, LEADER, MANAGERS, MASTER_ID, REPO,
                          args_of, base_opts, functions_of, opts_for, problems_of,
                          render_on_master, run_high)

EVERYONE = [LEADER, FOLLOWER, FOLLOWER3, CLI, LB]


def _master_module():
    """_modules/cloudify_ha_master.py by path: its `ask` runs over the fake master below (the
    loader's copy would reach a real master's publisher)."""
    spec = importlib.util.spec_from_file_location(
        "cloudify_ha_master_in_render", REPO / "_modules" / "cloudify_ha_master.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MASTER_MODULE = _master_module()


class Minions:
    """What the minions answer the master (``saltutil.cmd``), and what the master asked."""

    def __init__(self, down=(), without_modules=(), stale=(), leader=LEADER,
                 maintenance="deactivated", states=None):
        self.down, self.without_modules, self.stale = set(down), list(without_modules), set(stale)
        self.leader, self.mode = leader, maintenance
        self.states = states or {}  # a manager's node state other than leader/replica
        self.asked = []

    def node_state(self, mid):
        return self.states.get(mid, "leader" if mid == self.leader else "replica")

    def facts(self, mid):
        out = {"modules_current": mid not in self.stale, "node": None}
        for name, (minion_id, ip) in MANAGERS.items():
            if minion_id == mid:
                out.update(cluster="prod", private_ip=ip, node=self.node_state(mid))
        if mid == self.leader:
            out["maintenance"] = self.maintenance(mid)
        return out

    def maintenance(self, mid):
        """cloudify_ha.maintenance_mode: the active node's mode; no say elsewhere."""
        return {"status": self.mode if mid == self.leader else None}

    def cmd(self, tgt, fun, arg=(), timeout=None, tgt_type="glob", kwarg=None, **_kwargs):
        tgt = [tgt] if isinstance(tgt, str) else list(tgt)
        self.asked.append((fun, tgt, tgt_type, kwarg, timeout))
        answer = {"test.ping": lambda mid: True, "cloudify_ha.orch_facts": self.facts,
                  "cloudify_ha.maintenance_mode": self.maintenance,
                  "cloudify_ha.node_state": self.node_state}[fun]
        return {mid: {"ret": answer(mid), "retcode": 0} for mid in tgt if mid not in self.down}

    def minions_without_modules(self, minion_ids):
        return [mid for mid in minion_ids if mid in self.without_modules]

    def ask(self, *args, **kwargs):
        """cloudify_ha_master.ask itself, over this fake master."""
        MASTER_MODULE.__salt__ = self.overrides(with_ask=False)
        return MASTER_MODULE.ask(*args, **kwargs)

    def overrides(self, with_ask=True):
        out = {"saltutil.cmd": self.cmd,
               "cloudify_ha_master.minions_without_modules": self.minions_without_modules}
        if with_ask:
            out["cloudify_ha_master.ask"] = self.ask
        return out


def orch(master, sls="cloudify_ha.orch", pillar=None, minions=None, modules=True):
    state = master(pillar, modules=modules)
    minions = minions or Minions()
    high = render_on_master(state, sls, minions.overrides())
    assert problems_of(state, high) == []
    return high, minions


def steps(high):
    """[(step, state function, [required steps])] in the file's order."""
    funcs = functions_of(high)
    return [(sid, funcs[sid], [target for req in args_of(high, sid).get("require", [])
                               for target in req.values()])
            for sid in high if not sid.startswith("__")]


def refusal_runs(master, high, sid, message, modules=True):
    """Run the step through the state engine, with and without test=True: alone, as if the
    steps it requires had succeeded."""
    body = {k: v for k, v in high[sid].items()}
    (mod,) = [k for k in body if not k.startswith("__")]
    body[mod] = [a for a in body[mod] if not (isinstance(a, dict) and "require" in a)]
    for test in (False, True):
        # a refusal reads no pillar: the master's own pillar runs it
        state = master(None, modules=modules, test=test)
        result, comment, changes, name = run_high(state, {sid: body}, test)[sid]
        assert (result, changes) == (False, {}), (test, comment)
        assert message in comment or message in name, (test, comment, name)


def formula_hashes():
    out = {}
    for kind in ("utils", "modules", "states", "beacons", "grains"):
        for path in sorted((REPO / f"_{kind}").rglob("*")):
            if path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                out[f"{kind}/{path.name}"] = f"sha256:{digest}"
    return out


HINT = {"cloudify_ha_orch": {"active": {"prod": "10.0.0.11"}}}
FULL_RUN = [
    ("cloudify_ha-orch-validate", "test.succeed_without_changes", []),
    ("cloudify_ha-orch-sync", "test.succeed_without_changes", ["cloudify_ha-orch-validate"]),
    ("cloudify_ha-orch-prod-cli", "salt.state", ["cloudify_ha-orch-sync"]),
    ("cloudify_ha-orch-prod-prepare", "salt.state", ["cloudify_ha-orch-sync"]),
    ("cloudify_ha-orch-prod-leader-cfy-mgr1", "salt.state", ["cloudify_ha-orch-sync"]),
    ("cloudify_ha-orch-prod-join-cfy-mgr2", "salt.state",
     ["cloudify_ha-orch-prod-leader-cfy-mgr1", "cloudify_ha-orch-prod-prepare"]),
    ("cloudify_ha-orch-prod-join-cfy-mgr3", "salt.state",
     ["cloudify_ha-orch-prod-join-cfy-mgr2", "cloudify_ha-orch-prod-prepare"]),
    ("cloudify_ha-orch-prod-profiles", "salt.state",
     ["cloudify_ha-orch-prod-join-cfy-mgr3", "cloudify_ha-orch-prod-cli"]),
    ("cloudify_ha-orch-prod-check-user", "salt.state", ["cloudify_ha-orch-prod-profiles"]),
    ("cloudify_ha-orch-prod-loadbalancer", "salt.state", ["cloudify_ha-orch-prod-check-user"]),
]
ALL_BACK = {"cloudify_ha_orch": {"backends": {"cluster": "prod",
                                              "back": ["cfy-mgr1", "cfy-mgr2", "cfy-mgr3"]}}}


# ---- cloudify_ha.orch -------------------------------------------------------------------------
def test_every_minion_current_and_one_leader_builds_every_step_in_order(master):
    high, minions = orch(master)
    assert steps(high) == FULL_RUN
    assert minions.asked == [("cloudify_ha.orch_facts", EVERYONE, "list",
                              {"expected": formula_hashes()}, 5)]
    assert args_of(high, "cloudify_ha-orch-validate")["name"] == (
        "the cloudify_ha pillar is valid: 1 cluster(s) to build\n")


def test_each_step_targets_its_minions_with_its_sls_and_the_active_nodes_hint(master):
    high, _ = orch(master)
    wanted = {
        "cloudify_ha-orch-prod-cli": ([CLI], "cloudify_ha.cli", None, True),
        "cloudify_ha-orch-prod-prepare": (
            [FOLLOWER, FOLLOWER3], ["cloudify_ha.firewall", "cloudify_ha.installer"], None, True),
        "cloudify_ha-orch-prod-leader-cfy-mgr1": (
            LEADER, ["cloudify_ha.firewall", "cloudify_ha.installer", "cloudify_ha.cluster.leader"],
            HINT, True),
        "cloudify_ha-orch-prod-join-cfy-mgr2": (FOLLOWER, "cloudify_ha.cluster.follower", HINT,
                                                False),
        "cloudify_ha-orch-prod-join-cfy-mgr3": (FOLLOWER3, "cloudify_ha.cluster.follower", HINT,
                                                False),
        "cloudify_ha-orch-prod-profiles": (
            [LEADER, FOLLOWER, FOLLOWER3, CLI], "cloudify_ha.profile", HINT, False),
        "cloudify_ha-orch-prod-check-user": (LEADER, "cloudify_ha.check_user", HINT, False),
        # the LB host's firewall (its port to loadbalancer:sources), then HAProxy
        "cloudify_ha-orch-prod-loadbalancer": (
            [LB], ["cloudify_ha.firewall", "cloudify_ha.loadbalancer"], ALL_BACK, False),
    }
    for sid, (tgt, sls, pillar, parallel) in wanted.items():
        args = args_of(high, sid)
        assert (args["tgt"], args["sls"], args.get("pillar"), args["parallel"],
                args["concurrent"]) == (tgt, sls, pillar, parallel, True), sid


def test_a_fresh_cluster_without_an_active_node_passes_no_hint(master):
    high, _ = orch(master, minions=Minions(leader=None))
    assert steps(high) == FULL_RUN
    assert [sid for sid in high if "pillar" in args_of(high, sid)] == [
        "cloudify_ha-orch-prod-loadbalancer"]
    assert args_of(high, "cloudify_ha-orch-prod-loadbalancer")["pillar"] == ALL_BACK


def test_a_manager_that_is_no_member_is_out_of_the_load_balancers_during_its_join(master):
    high, _ = orch(master, minions=Minions(states={FOLLOWER: "absent"}))
    out, back = "cloudify_ha-orch-prod-lb-out-cfy-mgr2", "cloudify_ha-orch-prod-lb-back-cfy-mgr2"
    assert steps(high)[4:8] == [
        FULL_RUN[4],
        (out, "salt.state",
         ["cloudify_ha-orch-prod-leader-cfy-mgr1", "cloudify_ha-orch-prod-prepare"]),
        ("cloudify_ha-orch-prod-join-cfy-mgr2", "salt.state", [out]),
        (back, "salt.state", ["cloudify_ha-orch-prod-join-cfy-mgr2"])]
    assert steps(high)[8] == ("cloudify_ha-orch-prod-join-cfy-mgr3", "salt.state",
                              [back, "cloudify_ha-orch-prod-prepare"])
    for sid, change in ((out, {"out": ["cfy-mgr2"]}), (back, {"back": ["cfy-mgr2"]})):
        args = args_of(high, sid)
        assert (args["tgt"], args["tgt_type"], args["sls"], args["pillar"]) == (
            [LB], "list", "cloudify_ha.backends",
            {"cloudify_ha_orch": {"backends": {"cluster": "prod", **change}}}), sid


def test_a_manager_that_is_no_member_does_not_join_while_a_load_balancer_is_down(master):
    high, _ = orch(master, minions=Minions(states={FOLLOWER: "half_installed"}, down=[LB]))
    out = "cloudify_ha-orch-prod-lb-out-cfy-mgr2"
    assert functions_of(high)[out] == "cloudify_ha.refused"
    assert args_of(high, "cloudify_ha-orch-prod-join-cfy-mgr2")["require"] == [
        {"cloudify_ha": out}]
    refusal_runs(master, high, out,
                 "cluster prod: cfy-mgr2 is not a cluster member yet: during its install its "
                 "REST service answers /status as a standalone manager")


def test_a_new_minion_is_pinged_not_asked_and_synced_first(master):
    high, minions = orch(master, minions=Minions(without_modules=[FOLLOWER3]))
    assert minions.asked == [
        ("cloudify_ha.orch_facts", [LEADER, FOLLOWER, CLI, LB], "list",
         {"expected": formula_hashes()}, 5),
        ("test.ping", [FOLLOWER3], "list", None, 5)]
    assert functions_of(high)["cloudify_ha-orch-sync"] == "salt.state"
    assert {k: v for k, v in args_of(high, "cloudify_ha-orch-sync").items() if k != "concurrent"} == {
        "tgt": [FOLLOWER3], "tgt_type": "list", "sls": "cloudify_ha.sync", "test": False,
        "require": [{"test": "cloudify_ha-orch-validate"}]}
    # every step that waited on the no-op sync now waits on the real one
    assert args_of(high, "cloudify_ha-orch-prod-prepare")["require"] == [
        {"salt": "cloudify_ha-orch-sync"}]


def test_a_minion_with_stale_modules_is_synced(master):
    high, _ = orch(master, minions=Minions(stale=[CLI]))
    assert args_of(high, "cloudify_ha-orch-sync")["tgt"] == [CLI]


def test_a_manager_down_is_checked_from_a_live_one_and_not_targeted(master):
    high, _ = orch(master, minions=Minions(down=[FOLLOWER3]))
    assert [s[0] for s in steps(high)] == [s[0] for s in FULL_RUN]
    down = args_of(high, "cloudify_ha-orch-prod-join-cfy-mgr3")
    assert (down["tgt"], down["sls"], down["pillar"]) == (
        LEADER, "cloudify_ha.cluster.down", {"cloudify_ha_orch": {"node": "cfy-mgr3",
                                                                  "cluster": "prod"}})
    assert args_of(high, "cloudify_ha-orch-prod-prepare")["tgt"] == [FOLLOWER]
    assert args_of(high, "cloudify_ha-orch-prod-profiles")["tgt"] == [LEADER, FOLLOWER, CLI]


def test_an_invalid_pillar_has_the_refusal_as_its_only_step(master):
    bad = {"cloudify_ha": {"clusters": {"prod": {"replace_stael": True}}}}
    high, minions = orch(master, pillar=bad)
    assert functions_of(high) == {"cloudify_ha-orch-validate": "cloudify_ha.refused"}
    assert minions.asked == []
    assert args_of(high, "cloudify_ha-orch-validate")["comment"] == (
        "the cloudify_ha pillar is invalid; nothing was changed on any host. Fix:\n"
        "- cloudify_ha:clusters:prod:replace_stael: unknown key (did you mean 'replace_stale'?); "
        "remove it or fix its spelling (see pillar.example)")
    refusal_runs(master, high, "cloudify_ha-orch-validate",
                 "the cloudify_ha pillar is invalid; nothing was changed on any host")


def test_a_master_without_the_formulas_modules_refuses_with_salts_own_state(master):
    high, _ = orch(master, modules=False)
    assert functions_of(high) == {"cloudify_ha-orch-validate": "test.fail_without_changes"}
    refusal_runs(master, high, "cloudify_ha-orch-validate",
                 "the cloudify_ha modules on the master are missing or older than the formula",
                 modules=False)


def test_no_manager_answering_refuses_the_cluster(master):
    high, _ = orch(master, minions=Minions(down=[LEADER, FOLLOWER, FOLLOWER3]))
    assert steps(high) == [
        FULL_RUN[0], FULL_RUN[1],
        ("cloudify_ha-orch-prod-no-manager-answers", "cloudify_ha.refused", [])]
    refusal_runs(master, high, "cloudify_ha-orch-prod-no-manager-answers",
                 "cluster prod: none of its managers' minions answers (cfy-mgr1.example.com, "
                 "cfy-mgr2.example.com, cfy-mgr3.example.com); nothing can be done")


def test_a_cli_host_or_load_balancer_down_refuses_its_step_after_the_profiles(master):
    high, _ = orch(master, minions=Minions(down=[CLI, LB]))
    assert steps(high)[-4:] == [
        ("cloudify_ha-orch-prod-profiles", "salt.state", ["cloudify_ha-orch-prod-join-cfy-mgr3"]),
        ("cloudify_ha-orch-prod-profiles-not-refreshed", "cloudify_ha.refused",
         ["cloudify_ha-orch-prod-profiles"]),
        ("cloudify_ha-orch-prod-check-user", "salt.state", ["cloudify_ha-orch-prod-profiles"]),
        ("cloudify_ha-orch-prod-loadbalancer", "cloudify_ha.refused",
         ["cloudify_ha-orch-prod-check-user"])]
    refusal_runs(master, high, "cloudify_ha-orch-prod-profiles-not-refreshed",
                 "cluster prod: the minions of CLI hosts admin1.example.com do not answer")
    refusal_runs(master, high, "cloudify_ha-orch-prod-loadbalancer",
                 "cluster prod: load balancer minion(s) cfy-lb1.example.com do not answer")


# ---- cloudify_ha.orch.rejoin ------------------------------------------------------------------
def test_the_rejoin_of_a_manager_syncs_prepares_joins_and_refreshes_profiles(master):
    high, minions = orch(master, "cloudify_ha.orch.rejoin", pillar={"node": FOLLOWER})
    assert steps(high) == [
        (f"cloudify_ha-rejoin-{FOLLOWER}-sync", "salt.state", []),
        (f"cloudify_ha-rejoin-{FOLLOWER}-prepare", "salt.state",
         [f"cloudify_ha-rejoin-{FOLLOWER}-sync"]),
        (f"cloudify_ha-rejoin-{FOLLOWER}-joined", "salt.state",
         [f"cloudify_ha-rejoin-{FOLLOWER}-prepare"]),
        (f"cloudify_ha-rejoin-{FOLLOWER}-profiles", "salt.state",
         [f"cloudify_ha-rejoin-{FOLLOWER}-joined"])]
    joined = args_of(high, f"cloudify_ha-rejoin-{FOLLOWER}-joined")
    assert (joined["tgt"], joined["sls"], joined["pillar"]) == (
        FOLLOWER, "cloudify_ha.cluster.follower", {"cloudify_ha_orch": {"rejoin": True}})
    assert args_of(high, f"cloudify_ha-rejoin-{FOLLOWER}-profiles")["tgt"] == [
        LEADER, FOLLOWER, FOLLOWER3, CLI]
    # the ping is the question whether a manager's node is in maintenance mode; then whether
    # the node is a member
    assert minions.asked == [("cloudify_ha.maintenance_mode", [LEADER, FOLLOWER, FOLLOWER3, CLI, LB],
                              "list", {}, 5),
                             ("cloudify_ha.node_state", [FOLLOWER], "list", {}, 10)]


def test_the_rejoin_of_a_rebuilt_manager_takes_it_out_of_the_load_balancers_meanwhile(master):
    high, _ = orch(master, "cloudify_ha.orch.rejoin", pillar={"node": FOLLOWER},
                   minions=Minions(states={FOLLOWER: "absent"}))
    prefix = f"cloudify_ha-rejoin-{FOLLOWER}"
    assert steps(high) == [
        (f"{prefix}-sync", "salt.state", []),
        (f"{prefix}-prepare", "salt.state", [f"{prefix}-sync"]),
        (f"{prefix}-lb-out", "salt.state", [f"{prefix}-prepare"]),
        (f"{prefix}-joined", "salt.state", [f"{prefix}-lb-out"]),
        (f"{prefix}-lb-back", "salt.state", [f"{prefix}-joined"]),
        (f"{prefix}-profiles", "salt.state", [f"{prefix}-lb-back"])]
    assert args_of(high, f"{prefix}-lb-out")["pillar"] == {
        "cloudify_ha_orch": {"backends": {"cluster": "prod", "out": ["cfy-mgr2"]}}}


def test_the_rejoin_of_an_id_that_is_no_manager_is_ignored_and_asks_nobody(master):
    high, minions = orch(master, "cloudify_ha.orch.rejoin", pillar={"node": CLI})
    assert functions_of(high) == {"cloudify_ha-rejoin-ignored": "test.succeed_without_changes"}
    assert args_of(high, "cloudify_ha-rejoin-ignored")["name"] == (
        f"ignored: '{CLI}' is not the minion id of a manager of any cluster in pillar "
        "cloudify_ha:clusters; nothing ran")
    assert minions.asked == []


def test_a_rejoin_on_a_master_without_the_modules_refuses_with_salts_own_state(master):
    high, _ = orch(master, "cloudify_ha.orch.rejoin", pillar={"node": FOLLOWER}, modules=False)
    assert functions_of(high) == {"cloudify_ha-rejoin-validate": "test.fail_without_changes"}
    refusal_runs(master, high, "cloudify_ha-rejoin-validate",
                 f"rejoin of {FOLLOWER}: the cloudify_ha pillar is invalid or the formula's "
                 "modules are not synced to the master", modules=False)


# ---- cloudify_ha.orch.retire ------------------------------------------------------------------
def test_a_retire_without_cluster_and_node_refuses(master):
    high, minions = orch(master, "cloudify_ha.orch.retire")
    assert functions_of(high) == {"cloudify_ha-retire-validate": "test.fail_without_changes"}
    assert minions.asked == []
    refusal_runs(master, high, "cloudify_ha-retire-validate",
                 "give the cluster and the node to retire: "
                 "pillar='{\"cluster\": \"<name>\", \"node\": \"<node name>\"}'")


def test_a_retire_on_a_master_without_the_modules_refuses_with_salts_own_state(master):
    pillar = {"cluster": "prod", "node": "cfy-mgr3"}
    high, _ = orch(master, "cloudify_ha.orch.retire", pillar=pillar, modules=False)
    assert functions_of(high) == {"cloudify_ha-retire-validate": "test.fail_without_changes"}
    refusal_runs(master, high, "cloudify_ha-retire-validate",
                 "the cloudify_ha modules are not synced to the master", modules=False)


def test_the_retire_of_a_node_removes_it_from_a_live_manager_then_refreshes_profiles(master):
    pillar = {"cluster": "prod", "node": "cfy-mgr3"}
    high, minions = orch(master, "cloudify_ha.orch.retire", pillar=pillar,
                         minions=Minions(down=[FOLLOWER3]))
    assert steps(high) == [
        ("cloudify_ha-retire-sync", "salt.state", []),
        ("cloudify_ha-retire-cfy-mgr3", "salt.state", ["cloudify_ha-retire-sync"]),
        ("cloudify_ha-retire-cfy-mgr3-profiles", "salt.state", [])]
    absent = args_of(high, "cloudify_ha-retire-cfy-mgr3")
    assert (absent["tgt"], absent["sls"], absent["pillar"]) == (
        LEADER, "cloudify_ha.cluster.absent",
        {"cloudify_ha_orch": {"node": "cfy-mgr3", "cluster": "prod"}})
    profiles = args_of(high, "cloudify_ha-retire-cfy-mgr3-profiles")
    assert (profiles["tgt"], profiles["onchanges"]) == (
        [LEADER, FOLLOWER, CLI], [{"salt": "cloudify_ha-retire-cfy-mgr3"}])
    assert minions.asked == [("cloudify_ha.maintenance_mode", [LEADER, FOLLOWER, FOLLOWER3],
                              "list", {}, 5)]


MAINTENANCE = ("cluster prod: cfy-mgr1 (10.0.0.11) is in maintenance mode (activated); {what}: "
               "nothing was changed (while it is on, 4.6 refuses cluster calls and joins with 503 "
               "maintenance_mode_active). Leave it with 'cfy maintenance-mode deactivate' on that "
               "node, then re-run")


def test_each_orchestration_refuses_a_cluster_in_maintenance_mode(master):
    """cloudify-4.6-day2.md section 5.1: one refusal that names the cluster, the node, the
    state and the command that ends it, under test=True too; nothing else runs."""
    for sls, pillar, sid, what in (
            ("cloudify_ha.orch", None, "cloudify_ha-orch-prod-maintenance",
             "the cluster was not built or converged"),
            ("cloudify_ha.orch.rejoin", {"node": FOLLOWER},
             f"cloudify_ha-rejoin-{FOLLOWER}-maintenance", f"the rejoin of {FOLLOWER} did not run"),
            ("cloudify_ha.orch.retire", {"cluster": "prod", "node": "cfy-mgr3"},
             "cloudify_ha-retire-cfy-mgr3-maintenance", "cfy-mgr3 was not retired")):
        high, _ = orch(master, sls, pillar=pillar, minions=Minions(maintenance="activated"))
        refusals = [s for s, fun in functions_of(high).items() if fun == "cloudify_ha.refused"]
        assert refusals == [sid], (sls, functions_of(high))
        assert "salt.state" not in functions_of(high).values(), sls
        refusal_runs(master, high, sid, MAINTENANCE.format(what=what))


def test_a_retire_with_no_manager_answering_refuses(master):
    pillar = {"cluster": "prod", "node": "cfy-mgr3"}
    high, _ = orch(master, "cloudify_ha.orch.retire", pillar=pillar,
                   minions=Minions(down=[LEADER, FOLLOWER, FOLLOWER3]))
    assert functions_of(high) == {"cloudify_ha-retire-cfy-mgr3": "cloudify_ha.refused"}
    refusal_runs(master, high, "cloudify_ha-retire-cfy-mgr3",
                 "no manager of cluster prod answers; nothing can be retired")


# ---- the orchestrations' arguments beside another formula's pillar ----------------------------
@pytest.fixture(scope="module")
def crowded_master(render_root, file_root, host_grains):
    """A master whose own pillar has, beside cloudify_ha, another formula's top-level `cluster`
    and `node` (the keys the documented command lines use)."""
    root = render_root / "pillar-crowded"
    root.mkdir()
    (root / "top.sls").write_text(yaml.safe_dump({"base": {"*": ["cloudify_ha", "other"]}}))
    shutil.copy(REPO / "pillar.example", root / "cloudify_ha.sls")
    (root / "other.sls").write_text("cluster: web\nnode: web1.example.com\n")
    opts = opts_for(base_opts(render_root, file_root, [root], "unset"), host_grains, MASTER_ID)
    built = {}

    def get(pillar=None, modules=True, test=False):
        key = repr(pillar)
        if key not in built:
            built[key] = salt.state.State(dict(opts), pillar_override=pillar)
        return built[key]

    yield get
    for state in built.values():
        if getattr(state, "file_client", None) is not None:
            state.file_client.destroy()


def test_another_formulas_top_level_cluster_key_does_not_pick_the_cluster(crowded_master):
    """Before: `cluster: web` of another formula made every run refuse ('web' is not defined)."""
    high, _ = orch(crowded_master)
    assert steps(high) == FULL_RUN


@pytest.mark.parametrize("pillar", [{"cluster": "qa"}, {"cloudify_ha_orch": {"cluster": "qa"}},
                                    {"cluster": "prod", "cloudify_ha_orch": {"cluster": "qa"}}])
def test_the_command_lines_cluster_is_taken_in_either_form(crowded_master, pillar):
    high, minions = orch(crowded_master, pillar=pillar)
    assert functions_of(high) == {"cloudify_ha-orch-validate": "cloudify_ha.refused"}
    assert "cluster 'qa' (from the orchestration's pillar 'cluster') is not defined" in \
        args_of(high, "cloudify_ha-orch-validate")["comment"]
    assert minions.asked == []


@pytest.mark.parametrize("pillar", [{"node": FOLLOWER}, {"cloudify_ha_orch": {"node": FOLLOWER}}])
def test_the_rejoins_node_is_taken_in_either_form_and_never_from_another_formula(crowded_master,
                                                                                  pillar):
    high, _ = orch(crowded_master, "cloudify_ha.orch.rejoin", pillar=pillar)
    assert f"cloudify_ha-rejoin-{FOLLOWER}-joined" in functions_of(high)
    high, minions = orch(crowded_master, "cloudify_ha.orch.rejoin")
    assert functions_of(high) == {"cloudify_ha-rejoin-ignored": "test.succeed_without_changes"}
    assert minions.asked == []


def test_the_retires_arguments_are_taken_in_either_form(crowded_master):
    pillar = {"cloudify_ha_orch": {"cluster": "prod", "node": "cfy-mgr3"}}
    high, _ = orch(crowded_master, "cloudify_ha.orch.retire", pillar=pillar,
                   minions=Minions(down=[FOLLOWER3]))
    assert "cloudify_ha-retire-cfy-mgr3" in functions_of(high)
    high, _ = orch(crowded_master, "cloudify_ha.orch.retire")
    assert functions_of(high) == {"cloudify_ha-retire-validate": "test.fail_without_changes"}
