"""_utils/cloudify_ha_orch.py: the orchestrations' steps as tables, minions' answers in, steps
out (the same builder renders through Salt in test/render/test_render_orch.py)."""

import copy

import pytest

from formula_code import example_pillar, orch_util, pillar_util

O, P = orch_util(), pillar_util()
MGR1, MGR2, MGR3 = "cfy-mgr1.example.com", "cfy-mgr2.example.com", "cfy-mgr3.example.com"
CLI, LB = "admin1.example.com", "cfy-lb1.example.com"
IPS = {MGR1: "10.0.0.11", MGR2: "10.0.0.12", MGR3: "10.0.0.13"}
HOSTILE = ["x\n  cmd.run:\n    - name: reboot", "x' #", "$(reboot)", "`id`", "{{ 7*7 }}",
           "a: b", "../../etc", "-rf", "cfy-mgr\u0661", "cfy-mgr1.example.com\n", 7, ["x"],
           {"a": 1}, None]


def plan_of(pillar=None, only=None):
    """What cloudify_ha.plan returns: the plan with public settings only."""
    result = P.plan(pillar if pillar is not None else example_pillar(), only)
    result["clusters"] = {n: P.public(s) for n, s in result["clusters"].items()}
    return result


def answers(down=(), stale=(), leaders=(MGR1,), facts=None):
    """Every minion's answer to orch_facts: `leaders` say they are the active node."""
    out = {}
    for mid in (MGR1, MGR2, MGR3, CLI, LB):
        if mid in down:
            continue
        ret = {"modules_current": mid not in stale, "node": None}
        if mid in IPS:
            ret.update(cluster="prod", private_ip=IPS[mid],
                       node="leader" if mid in leaders else "replica")
        ret.update((facts or {}).get(mid, {}))
        out[mid] = {"ret": ret, "retcode": 0}
    return out


def args(high, sid):
    (body,) = high[sid].values()
    out = {}
    for arg in body:
        out.update(arg)
    return out


def funs(high):
    return {sid: next(iter(body)) for sid, body in high.items()}


FULL = ["cloudify_ha-orch-validate", "cloudify_ha-orch-sync", "cloudify_ha-orch-prod-cli",
        "cloudify_ha-orch-prod-prepare", "cloudify_ha-orch-prod-leader-cfy-mgr1",
        "cloudify_ha-orch-prod-join-cfy-mgr2", "cloudify_ha-orch-prod-join-cfy-mgr3",
        "cloudify_ha-orch-prod-profiles", "cloudify_ha-orch-prod-check-user",
        "cloudify_ha-orch-prod-loadbalancer"]


def hinted(high, sid):
    """Whether a step carries the orchestration's active node hint."""
    return "active" in args(high, sid).get("pillar", {}).get("cloudify_ha_orch", {})


# ---- cloudify_ha.orch -----------------------------------------------------------------------
def test_everyone_is_every_minion_once_in_pillar_order():
    assert O.everyone(plan_of()) == [MGR1, MGR2, MGR3, CLI, LB]


def test_all_up_one_leader_every_step_in_order_with_the_hint():
    high = O.orch_steps(plan_of(), answers())
    assert list(high) == FULL
    assert args(high, "cloudify_ha-orch-prod-join-cfy-mgr2")["pillar"] == {
        "cloudify_ha_orch": {"active": {"prod": "10.0.0.11"}}}
    assert funs(high)["cloudify_ha-orch-sync"] == "test.succeed_without_changes"
    # the load balancer's own firewall (its port to loadbalancer:sources), then HAProxy
    assert args(high, "cloudify_ha-orch-prod-loadbalancer")["sls"] == [
        "cloudify_ha.firewall", "cloudify_ha.loadbalancer"]


@pytest.mark.parametrize("case, kwargs, check", [
    ("a down manager is checked from a live one", {"down": [MGR3]},
     lambda h: (args(h, "cloudify_ha-orch-prod-join-cfy-mgr3")["tgt"],
                args(h, "cloudify_ha-orch-prod-join-cfy-mgr3")["sls"]) == (
                    MGR1, "cloudify_ha.cluster.down")),
    ("two leaders: no hint, every manager is polled", {"leaders": [MGR1, MGR2]},
     lambda h: not any(hinted(h, s) for s in FULL[2:5] + FULL[7:])),
    ("a down CLI host: its profile refresh refused after the others", {"down": [CLI]},
     lambda h: funs(h)["cloudify_ha-orch-prod-profiles-not-refreshed"] == "cloudify_ha.refused"
     and "cloudify_ha-orch-prod-cli" not in h),
    ("a partly down LB: its step refused", {"down": [LB]},
     lambda h: funs(h)["cloudify_ha-orch-prod-loadbalancer"] == "cloudify_ha.refused"
     and "cfy-lb1.example.com do not answer" in args(h, "cloudify_ha-orch-prod-loadbalancer")[
         "comment"]),
    ("a stale module copy is synced first", {"stale": [MGR2]},
     lambda h: (funs(h)["cloudify_ha-orch-sync"], args(h, "cloudify_ha-orch-sync")["tgt"]) == (
         "salt.state", [MGR2])),
    ("no manager answers: the cluster is refused", {"down": [MGR1, MGR2, MGR3]},
     lambda h: list(h)[2:] == ["cloudify_ha-orch-prod-no-manager-answers"]),
])
def test_orch_table(case, kwargs, check):
    assert check(O.orch_steps(plan_of(), answers(**kwargs))), case


def test_a_new_minion_answers_a_ping_and_is_synced():
    raw = answers()
    raw[MGR3] = {"ret": True, "retcode": 0}  # test.ping's answer: no facts
    high = O.orch_steps(plan_of(), raw)
    assert args(high, "cloudify_ha-orch-sync")["tgt"] == [MGR3]
    assert args(high, "cloudify_ha-orch-prod-join-cfy-mgr3")["tgt"] == MGR3


def test_the_hint_is_the_pillars_address_never_the_one_a_minion_reports():
    forged = answers(facts={MGR1: {"private_ip": "203.0.113.66", "cluster": "other"}})
    high = O.orch_steps(plan_of(), forged)
    assert args(high, "cloudify_ha-orch-prod-profiles")["pillar"] == {
        "cloudify_ha_orch": {"active": {"prod": "10.0.0.11"}}}


def test_a_minion_that_is_no_manager_cannot_claim_the_active_node():
    claims = answers(leaders=[], facts={CLI: {"node": "leader", "cluster": "prod",
                                              "private_ip": "10.0.0.99"}})
    high = O.orch_steps(plan_of(), claims)
    assert not any(hinted(high, s) for s in FULL[2:5] + FULL[7:])


@pytest.mark.parametrize("answer", [None, {}, {"failed": True, "ret": "x"}, "up", {"retcode": 0}])
def test_what_is_not_an_answer_is_a_down_minion(answer):
    raw = answers()
    raw[MGR2] = answer
    high = O.orch_steps(plan_of(), raw)
    assert args(high, "cloudify_ha-orch-prod-join-cfy-mgr2")["sls"] == "cloudify_ha.cluster.down"


def with_staging():
    """pillar.example with a second cluster, `staging` (stg-mgr1..3, no CLI host, no LB)."""
    pillar = example_pillar()
    staging = copy.deepcopy(pillar["clusters"]["prod"])
    staging.update(leader="stg-mgr1", cli_hosts=[], loadbalancer=None, managers=[
        {"name": f"stg-mgr{i}", "minion_id": f"stg-mgr{i}", "private_ip": f"10.1.0.1{i}",
         "public_ip": f"192.0.2.3{i}"} for i in (1, 2, 3)])
    staging["database"]["host"] = "10.1.0.5"
    pillar["clusters"]["staging"] = staging
    return pillar


def test_one_cluster_of_several_in_parallel():
    pillar = with_staging()
    both = O.orch_steps(plan_of(pillar), answers())
    assert args(both, "cloudify_ha-orch-prod-join-cfy-mgr2")["parallel"] is True
    assert funs(both)["cloudify_ha-orch-staging-no-manager-answers"] == "cloudify_ha.refused"
    one = O.orch_steps(plan_of(pillar, only="prod"), answers())
    assert list(one) == FULL and args(one, "cloudify_ha-orch-prod-join-cfy-mgr2")["parallel"] is False


def test_a_minion_that_finds_its_pillar_invalid_refuses_the_whole_run():
    missing = "cloudify_ha:clusters:prod:database:postgres_password: required secret is missing"
    raw = answers(facts={MGR1: {"pillar_errors": [missing]}, MGR2: {"pillar_errors": [missing]},
                         CLI: {"pillar_errors": ["x\n  evil: true", 7]}})
    high = O.orch_steps(plan_of(), raw)
    assert funs(high) == {"cloudify_ha-orch-validate": "cloudify_ha.refused"}
    assert args(high, "cloudify_ha-orch-validate")["comment"].splitlines() == [
        "the cloudify_ha pillar of some minions is invalid; nothing was changed on any host. Fix:",
        f"- {missing} (pillar of {MGR1}, {MGR2})",
        f"- 'x\\n  evil: true' (pillar of {CLI})",  # a minion's text: quoted, and only data
        f"- 7 (pillar of {CLI})"]


def test_an_invalid_plan_is_one_refusal_with_every_error():
    high = O.orch_steps(plan_of(example_pillar() | {"extra": 1}), answers())
    assert funs(high) == {"cloudify_ha-orch-validate": "cloudify_ha.refused"}
    assert "- cloudify_ha:extra: unknown key" in args(high, "cloudify_ha-orch-validate")["comment"]


# ---- cloudify_ha.orch.rejoin ------------------------------------------------------------------
def pings(down=()):
    return {mid: {"ret": True, "retcode": 0} for mid in (MGR1, MGR2, MGR3, CLI, LB)
            if mid not in down}


def test_the_rejoin_of_a_rebuilt_host():
    high = O.rejoin_steps(plan_of(), MGR2, pings(down=[MGR3]), node_state="absent")
    assert list(high) == [f"cloudify_ha-rejoin-{MGR2}-{s}"
                          for s in ("sync", "prepare", "lb-out", "joined", "lb-back", "profiles")]
    assert args(high, f"cloudify_ha-rejoin-{MGR2}-joined")["pillar"] == {
        "cloudify_ha_orch": {"rejoin": True}}
    assert args(high, f"cloudify_ha-rejoin-{MGR2}-profiles")["tgt"] == [MGR1, MGR2, CLI]


@pytest.mark.parametrize("node", HOSTILE + [CLI, LB, "cfy-mgr2"],
                         ids=lambda v: ascii(v)[:20])
def test_the_rejoin_of_anything_but_a_managers_minion_id_is_ignored_as_data(node):
    plan = plan_of()
    assert O.rejoin_target(plan, node) == (None, None)
    high = O.rejoin_steps(plan, node, {})
    assert funs(high) == {"cloudify_ha-rejoin-ignored": "test.succeed_without_changes"}
    assert args(high, "cloudify_ha-rejoin-ignored")["name"].startswith(f"ignored: {ascii(node)} ")


# ---- cloudify_ha.orch.retire ------------------------------------------------------------------
def test_the_retire_of_a_node_through_the_first_live_manager():
    high = O.retire_steps(plan_of(only="prod"), "prod", "cfy-mgr1", pings(down=[MGR1]))
    absent = args(high, "cloudify_ha-retire-cfy-mgr1")
    # the active node's own refusal is the node_absent state's, on the live manager
    assert (absent["tgt"], absent["pillar"]) == (
        MGR2, {"cloudify_ha_orch": {"node": "cfy-mgr1", "cluster": "prod"}})
    assert args(high, "cloudify_ha-retire-cfy-mgr1-profiles")["tgt"] == [MGR2, MGR3, CLI]


@pytest.mark.parametrize("node", [v for v in HOSTILE if v not in (None,)] + ["cfy-mgr1.example.com\n"],
                         ids=lambda v: ascii(v)[:20])
def test_a_retire_of_a_node_that_is_no_node_name_is_refused_as_data(node):
    high = O.retire_steps(plan_of(only="prod"), "prod", node, pings())
    assert funs(high) == {"cloudify_ha-retire-validate": "test.fail_without_changes"}
    assert args(high, "cloudify_ha-retire-validate")["name"].startswith(f"node: {ascii(node)} ")


@pytest.mark.parametrize("cluster", ["qa", "prod\n", ["prod"], 7])
def test_a_retire_in_a_cluster_not_in_pillar_is_refused(cluster):
    high = O.retire_steps(plan_of(only=cluster), cluster, "cfy-mgr3", pings())
    assert funs(high) == {"cloudify_ha-retire-validate": "cloudify_ha.refused"}
    assert "is not defined under cloudify_ha:clusters" in args(high, "cloudify_ha-retire-validate")[
        "comment"]


# ---- 4.6's maintenance mode (cloudify-4.6-day2.md section 5.1) ------------------------------
def in_maintenance(status, node=MGR1, shape="maintenance_mode"):
    """A manager's answer that its node is in maintenance mode: to orch_facts (nested) or to
    cloudify_ha.maintenance_mode (the rejoin's and the retire's question)."""
    state = {"status": status, "name": "what-it-says", "host": "10.9.9.9"}
    return {node: {"ret": state if shape == "maintenance_mode" else {"maintenance": state},
                   "retcode": 0}}


@pytest.mark.parametrize("status", ["activated", "activating"])
def test_the_build_of_a_cluster_in_maintenance_mode_is_one_refusal(status):
    facts = answers(facts={MGR1: {"maintenance": {"status": status}}})
    high = O.orch_steps(plan_of(), facts)
    assert list(high) == ["cloudify_ha-orch-validate", "cloudify_ha-orch-sync",
                          "cloudify_ha-orch-prod-maintenance"]
    assert funs(high)["cloudify_ha-orch-prod-maintenance"] == "cloudify_ha.refused"
    # the cluster, the node as pillar names it (never what the minion says), the state, the way
    # out
    assert args(high, "cloudify_ha-orch-prod-maintenance")["comment"] == (
        f"cluster prod: cfy-mgr1 (10.0.0.11) is in maintenance mode ({status}); the cluster was "
        "not built or converged: nothing was changed (while it is on, 4.6 refuses cluster calls "
        "and joins with 503 maintenance_mode_active). Leave it with 'cfy maintenance-mode "
        "deactivate' on that node, then re-run")


@pytest.mark.parametrize("state", [{"status": "deactivated"}, {"status": None},
                                   {"status": "activated\n  cmd.run: reboot"}, "activated",
                                   {"status": ["activated"]}])
def test_maintenance_mode_off_or_not_one_of_46s_states_builds_as_usual(state):
    high = O.orch_steps(plan_of(), answers(facts={MGR1: {"maintenance": state}}))
    assert list(high) == FULL


def test_one_cluster_in_maintenance_mode_leaves_the_others_alone():
    pillar = with_staging()
    facts = answers(facts={MGR1: {"maintenance": {"status": "activated"}}})
    facts.update({f"stg-mgr{i}": {"ret": {"modules_current": True, "node": "replica"},
                                  "retcode": 0} for i in (1, 2, 3)})
    high = O.orch_steps(plan_of(pillar), facts)
    assert [sid for sid in high if sid.startswith("cloudify_ha-orch-prod-")] == [
        "cloudify_ha-orch-prod-maintenance"]
    assert "cloudify_ha-orch-staging-leader-stg-mgr1" in high


def test_the_rejoin_in_a_cluster_in_maintenance_mode_is_one_refusal():
    found = dict(pings(), **in_maintenance("activated", node=MGR3))
    high = O.rejoin_steps(plan_of(), MGR2, found)
    assert funs(high) == {f"cloudify_ha-rejoin-{MGR2}-maintenance": "cloudify_ha.refused"}
    comment = args(high, f"cloudify_ha-rejoin-{MGR2}-maintenance")["comment"]
    assert comment.startswith("cluster prod: cfy-mgr3 (10.0.0.13) is in maintenance mode "
                              f"(activated); the rejoin of {MGR2} did not run: nothing was "
                              "changed"), comment
    assert "'cfy maintenance-mode deactivate'" in comment
    # off: the usual steps, every manager that answered the question a target for profiles
    off = dict(pings(), **in_maintenance("deactivated", node=MGR3))
    high = O.rejoin_steps(plan_of(), MGR2, off)
    assert args(high, f"cloudify_ha-rejoin-{MGR2}-profiles")["tgt"] == [MGR1, MGR2, MGR3, CLI]


def test_the_retire_in_a_cluster_in_maintenance_mode_is_one_refusal():
    found = dict(pings(), **in_maintenance("activating", node=MGR2))
    high = O.retire_steps(plan_of(only="prod"), "prod", "cfy-mgr1", found)
    assert funs(high) == {"cloudify_ha-retire-cfy-mgr1-maintenance": "cloudify_ha.refused"}
    assert args(high, "cloudify_ha-retire-cfy-mgr1-maintenance")["comment"].startswith(
        "cluster prod: cfy-mgr2 (10.0.0.12) is in maintenance mode (activating); cfy-mgr1 was "
        "not retired: nothing was changed")


def test_every_copy_of_the_minion_id_rule_is_the_same():
    """The rule lives in each file that runs apart from the others (Salt loads each _utils,
    runner and SLS on its own): the pillar schema, the step builder, the runner, the reactor and
    the rejoin orchestration must agree on it."""
    import re

    from formula_code import REPO, runner_module

    pattern = P.MINION_ID_RE.pattern
    assert O.MINION_ID_RE.pattern == pattern and runner_module().MINION_ID.pattern == pattern
    for sls in ("cloudify_ha/reactor/rejoin.sls", "cloudify_ha/orch/rejoin.sls"):
        text = (REPO / sls).read_text()
        assert f're.compile(r"{pattern}", re.ASCII)' in text, sls
    assert O.NODE_NAME_RE.pattern == P.NAME_RE.pattern
    assert re.ASCII & P.MINION_ID_RE.flags and re.ASCII & O.MINION_ID_RE.flags


def test_every_state_run_on_a_minion_is_concurrent_for_salt_and_ordered_by_the_formula():
    """No salt.state step asks Salt's state queue to order it (3006.8's lets an older jid that
    arrives second run beside the first; 3008.4's queue=True hides a waiting job from
    saltutil.find_job; queue=<int> deadlocks two waiting jobs): each runs concurrent=True, and
    the formula's SLS files take the host's own lock (lock.sls)."""
    highs = [O.orch_steps(plan_of(), answers(stale=[MGR2])),
             O.rejoin_steps(plan_of(), MGR2, pings()),
             O.retire_steps(plan_of(only="prod"), "prod", "cfy-mgr3", pings())]
    runs = [(sid, args(high, sid)) for high in highs for sid, fun in funs(high).items()
            if fun == "salt.state"]
    assert len(runs) >= 10
    assert [sid for sid, arg in runs if arg.get("concurrent") is not True or "queue" in arg] == []



# ---- the load balancers during a manager's install --------------------------------------------
def steps_of(high):
    """[(step, [required steps])] in order."""
    return [(sid, [t for req in args(high, sid).get("require", []) for t in req.values()])
            for sid in high]


@pytest.mark.parametrize("state, member", [
    ("leader", True), ("replica", True), ("down", True),
    ("absent", False), ("package_installed", False), ("half_installed", False),
    ("installed", False), ("removed", False), (None, False)])
def test_a_manager_that_says_it_is_no_member_is_out_of_the_load_balancers_while_it_joins(
        state, member):
    raw = answers(facts={MGR2: {"node": state}})
    high = O.orch_steps(plan_of(), raw)
    assert (MGR2 in O.members(plan_of(), raw)) is member
    drained = [sid for sid in high if "-lb-" in sid]
    assert drained == ([] if member else ["cloudify_ha-orch-prod-lb-out-cfy-mgr2",
                                          "cloudify_ha-orch-prod-lb-back-cfy-mgr2"])


def test_a_new_host_that_only_answers_a_ping_is_taken_out_too():
    raw = answers()
    raw[MGR3] = {"ret": True, "retcode": 0}
    assert MGR3 not in O.members(plan_of(), raw)
    assert "cloudify_ha-orch-prod-lb-out-cfy-mgr3" in O.orch_steps(plan_of(), raw)


def test_a_minion_that_is_no_manager_is_no_member_whatever_it_says():
    raw = answers(facts={CLI: {"node": "leader"}, LB: {"node": "replica"}})
    assert O.members(plan_of(), raw) == {MGR1, MGR2, MGR3}


def test_a_build_from_empty_takes_each_manager_out_until_it_is_a_member():
    raw = answers(leaders=[], facts={m: {"node": "absent"} for m in (MGR1, MGR2, MGR3)})
    high = O.orch_steps(plan_of(), raw)
    prefix = "cloudify_ha-orch-prod"
    assert steps_of(high)[4:13] == [
        (f"{prefix}-lb-out-cfy-mgr1", ["cloudify_ha-orch-sync"]),
        (f"{prefix}-leader-cfy-mgr1", [f"{prefix}-lb-out-cfy-mgr1"]),
        (f"{prefix}-lb-back-cfy-mgr1", [f"{prefix}-leader-cfy-mgr1"]),
        (f"{prefix}-lb-out-cfy-mgr2", [f"{prefix}-lb-back-cfy-mgr1", f"{prefix}-prepare"]),
        (f"{prefix}-join-cfy-mgr2", [f"{prefix}-lb-out-cfy-mgr2"]),
        (f"{prefix}-lb-back-cfy-mgr2", [f"{prefix}-join-cfy-mgr2"]),
        (f"{prefix}-lb-out-cfy-mgr3", [f"{prefix}-lb-back-cfy-mgr2", f"{prefix}-prepare"]),
        (f"{prefix}-join-cfy-mgr3", [f"{prefix}-lb-out-cfy-mgr3"]),
        (f"{prefix}-lb-back-cfy-mgr3", [f"{prefix}-join-cfy-mgr3"])]
    assert args(high, f"{prefix}-lb-out-cfy-mgr1") == {
        "tgt": [LB], "tgt_type": "list", "sls": "cloudify_ha.backends", "concurrent": True,
        "pillar": {"cloudify_ha_orch": {"backends": {"cluster": "prod", "out": ["cfy-mgr1"]}}},
        "parallel": False, "require": [{"test": "cloudify_ha-orch-sync"}]}
    # every manager is a member once every step above succeeded: all put back at the end
    assert args(high, f"{prefix}-loadbalancer")["pillar"] == {"cloudify_ha_orch": {"backends": {
        "cluster": "prod", "back": ["cfy-mgr1", "cfy-mgr2", "cfy-mgr3"]}}}


def test_a_cluster_without_a_load_balancer_takes_nobody_out():
    pillar = example_pillar()
    pillar["clusters"]["prod"]["loadbalancer"] = None
    raw = answers(facts={MGR2: {"node": "absent"}})
    high = O.orch_steps(plan_of(pillar), raw)
    assert [sid for sid in high if "-lb-" in sid or "check-user" in sid
            or "loadbalancer" in sid] == []


def test_a_manager_that_is_no_member_does_not_install_while_a_load_balancer_is_down():
    raw = answers(down=[LB], facts={MGR2: {"node": "half_installed"}})
    high = O.orch_steps(plan_of(), raw)
    out = "cloudify_ha-orch-prod-lb-out-cfy-mgr2"
    assert funs(high)[out] == "cloudify_ha.refused"
    assert "load balancer(s) cfy-lb1.example.com, whose minion does not answer" in \
        args(high, out)["comment"]
    assert args(high, "cloudify_ha-orch-prod-join-cfy-mgr2")["require"] == [{"cloudify_ha": out}]
    assert "cloudify_ha-orch-prod-lb-back-cfy-mgr2" not in high


def test_the_check_user_is_made_through_the_active_nodes_minion_before_the_load_balancer():
    high = O.orch_steps(plan_of(), answers(leaders=[MGR2]))
    check = args(high, "cloudify_ha-orch-prod-check-user")
    assert (check["tgt"], check["sls"], check["require"]) == (
        MGR2, "cloudify_ha.check_user", [{"salt": "cloudify_ha-orch-prod-profiles"}])
    assert args(high, "cloudify_ha-orch-prod-loadbalancer")["require"] == [
        {"salt": "cloudify_ha-orch-prod-check-user"}]
    # no active node known: the first live manager (the state finds the active node)
    high = O.orch_steps(plan_of(), answers(leaders=[], down=[MGR1]))
    assert args(high, "cloudify_ha-orch-prod-check-user")["tgt"] == MGR2


@pytest.mark.parametrize("state, drained", [("replica", False), ("down", False),
                                            ("leader", False), ("absent", True),
                                            ("half_installed", True), (None, True)])
def test_the_rejoin_takes_out_only_a_node_that_is_no_member(state, drained):
    high = O.rejoin_steps(plan_of(), MGR2, pings(), node_state=state)
    prefix = f"cloudify_ha-rejoin-{MGR2}"
    assert (f"{prefix}-lb-out" in high, f"{prefix}-lb-back" in high) == (drained, drained)
    assert args(high, f"{prefix}-profiles")["tgt"] == [MGR1, MGR2, MGR3, CLI]


def test_the_rejoin_of_a_node_that_is_no_member_waits_for_a_down_load_balancer():
    high = O.rejoin_steps(plan_of(), MGR2, pings(down=[LB]), node_state="absent")
    prefix = f"cloudify_ha-rejoin-{MGR2}"
    assert funs(high)[f"{prefix}-lb-out"] == "cloudify_ha.refused"
    assert args(high, f"{prefix}-joined")["require"] == [{"cloudify_ha": f"{prefix}-lb-out"}]


def test_the_rejoin_pings_the_load_balancers_too():
    settings = plan_of()["clusters"]["prod"]
    assert O.rejoin_ping_targets(settings) == [MGR1, MGR2, MGR3, CLI, LB]
