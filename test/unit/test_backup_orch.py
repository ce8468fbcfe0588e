"""_utils/cloudify_ha_orch.py: cloudify_ha.orch.backup's steps as tables, answers in, steps out."""

import copy
import json

import pytest

from formula_code import example_pillar, orch_util, pillar_util
from test_orch_builder import MGR1, MGR2, MGR3, answers, args, funs, plan_of, steps_of

O, P = orch_util(), pillar_util()
TARGET = "backup1.example.com"
STAMP = "20300101T000000Z"
SID = f"prod-{STAMP}"
STEPS = ["cloudify_ha-backup-validate", "cloudify_ha-backup-sync",
         "cloudify_ha-backup-prod-snapshot", "cloudify_ha-backup-prod-receive",
         "cloudify_ha-backup-prod-send", "cloudify_ha-backup-prod-verify",
         "cloudify_ha-backup-prod-keep-target", "cloudify_ha-backup-prod-keep-cluster"]


def backup_answers(down=(), stale=(), leaders=(MGR1,)):
    out = answers(down=down, stale=stale, leaders=leaders)
    if TARGET not in down:
        out[TARGET] = {"ret": {"modules_current": TARGET not in stale, "node": None},
                       "retcode": 0}
    return out


def manifest(sid=SID, sha="ab" * 32):
    return {TARGET: {"ret": {"id": sid, "cluster": "prod", "sha256": sha, "size": 3},
                     "retcode": 0}}


def test_the_managers_and_the_target_are_asked():
    assert O.backup_everyone(plan_of()) == [MGR1, MGR2, MGR3, TARGET]
    assert O.backup_everyone(plan_of(only="prod"), "prod") == [MGR1, MGR2, MGR3, TARGET]


def test_a_backup_snapshot_on_the_active_node_streamed_verified_and_kept():
    high = O.backup_steps(plan_of(), backup_answers(leaders=(MGR2,)), stamp=STAMP)
    assert list(high) == STEPS
    assert funs(high) == dict(zip(STEPS, ["test.succeed_without_changes"] * 2 + [
        "salt.function"] * 6))
    snap = args(high, "cloudify_ha-backup-prod-snapshot")
    assert (snap["name"], snap["tgt"], snap["kwarg"]) == (
        "cloudify_ha.snapshot", MGR2, {"quiesce": "maintenance", "timeout": 3600,
                                       "cluster": "prod", "snapshot_id": SID})
    receive = args(high, "cloudify_ha-backup-prod-receive")
    assert (receive["name"], receive["tgt"], receive["parallel"]) == (
        "cloudify_ha_backup.receive", TARGET, True)
    assert receive["kwarg"] == {
        "directory": "/var/backups/cloudify_ha", "cluster": "prod", "snapshot_id": SID,
        "address": "10.0.0.30", "port": 4550, "sources": ["10.0.0.11", "10.0.0.12", "10.0.0.13"],
        "timeout": 3600, "encrypted": True}
    send = args(high, "cloudify_ha-backup-prod-send")
    assert (send["name"], send["tgt"], send["parallel"], send["kwarg"]) == (
        "cloudify_ha.backup_send", MGR2, True, {"snapshot_id": SID, "cluster": "prod"})
    assert all(args(high, s)["timeout"] == 3600 + O.BACKUP_JOB_MARGIN for s in STEPS[2:6])
    assert steps_of(high) == [
        ("cloudify_ha-backup-validate", []),
        ("cloudify_ha-backup-sync", ["cloudify_ha-backup-validate"]),
        ("cloudify_ha-backup-prod-snapshot", ["cloudify_ha-backup-sync"]),
        ("cloudify_ha-backup-prod-receive", ["cloudify_ha-backup-prod-snapshot"]),
        ("cloudify_ha-backup-prod-send", ["cloudify_ha-backup-prod-snapshot"]),
        ("cloudify_ha-backup-prod-verify", ["cloudify_ha-backup-prod-receive",
                                            "cloudify_ha-backup-prod-send"]),
        ("cloudify_ha-backup-prod-keep-target", ["cloudify_ha-backup-prod-verify"]),
        ("cloudify_ha-backup-prod-keep-cluster", ["cloudify_ha-backup-prod-verify"])]
    assert (args(high, "cloudify_ha-backup-prod-keep-target")["kwarg"],
            args(high, "cloudify_ha-backup-prod-keep-cluster")["kwarg"],
            args(high, "cloudify_ha-backup-prod-keep-cluster")["tgt"]) == (
        {"directory": "/var/backups/cloudify_ha", "cluster": "prod", "keep": 7},
        {"keep": 1, "cluster": "prod"}, MGR2)
    # no key, no secret in any step
    text = json.dumps(high)
    assert "PGP" not in text and "CHANGE-ME" not in text


def test_stale_modules_on_the_target_are_synced_first():
    high = O.backup_steps(plan_of(), backup_answers(stale=(TARGET,)), stamp=STAMP)
    assert args(high, "cloudify_ha-backup-sync")["tgt"] == [TARGET]
    assert args(high, "cloudify_ha-backup-prod-snapshot")["require"] == [
        {"salt": "cloudify_ha-backup-sync"}]


def test_a_snapshot_given_that_the_target_holds_is_not_sent_again():
    high = O.backup_steps(plan_of(only="prod"), backup_answers(), cluster="prod", snapshot=SID,
                          stored=manifest())
    assert list(high) == STEPS[:2] + ["cloudify_ha-backup-prod-stored"] + STEPS[-2:]
    assert "not sent again" in args(high, "cloudify_ha-backup-prod-stored")["name"]
    assert args(high, "cloudify_ha-backup-prod-keep-target")["require"] == [
        {"test": "cloudify_ha-backup-prod-stored"}]


@pytest.mark.parametrize("stored", [{}, manifest(sid="prod-other"), manifest(sha="x"),
                                    {TARGET: {"ret": None, "retcode": 0}},
                                    {TARGET: {"ret": "prod", "retcode": 1, "failed": True}}])
def test_a_snapshot_given_that_the_target_lacks_is_sent_without_a_new_one(stored):
    high = O.backup_steps(plan_of(only="prod"), backup_answers(), cluster="prod", snapshot=SID,
                          stored=stored)
    assert list(high) == STEPS
    assert funs(high)["cloudify_ha-backup-prod-snapshot"] == "test.succeed_without_changes"
    assert args(high, "cloudify_ha-backup-prod-send")["kwarg"]["snapshot_id"] == SID


def test_unencrypted_backups_say_so_to_the_receiver():
    pillar = example_pillar()
    pillar["clusters"]["prod"]["backup"].update(encrypt=False, recipient=None, port=4999)
    high = O.backup_steps(plan_of(pillar), backup_answers(), stamp=STAMP)
    kwarg = args(high, "cloudify_ha-backup-prod-receive")["kwarg"]
    assert (kwarg["encrypted"], kwarg["port"]) == (False, 4999)
    assert args(high, "cloudify_ha-backup-prod-verify")["kwarg"]["encrypted"] is False


@pytest.mark.parametrize("kwargs, sid, says", [
    ({"down": (TARGET,)}, "cloudify_ha-backup-prod-target",
     "the backup target backup1.example.com does not answer: nothing was snapshotted"),
    ({"leaders": ()}, "cloudify_ha-backup-prod-active", "no manager whose minion answers"),
    ({"leaders": (MGR1, MGR2)}, "cloudify_ha-backup-prod-active", "or two do"),
    ({"down": (MGR1,)}, "cloudify_ha-backup-prod-active", "says it is the active node"),
])
def test_nothing_is_snapshotted_without_a_target_or_one_active_node(kwargs, sid, says):
    high = O.backup_steps(plan_of(), backup_answers(**kwargs), stamp=STAMP)
    assert list(high) == STEPS[:2] + [sid]
    assert funs(high)[sid] == "cloudify_ha.refused"
    assert says in args(high, sid)["comment"]


def no_backup():
    pillar = example_pillar()
    del pillar["clusters"]["prod"]["backup"]
    return pillar


@pytest.mark.parametrize("pillar, kwargs, says", [
    (no_backup(), {}, "no cluster in pillar has a backup section"),
    (no_backup(), {"cluster": "prod"}, "cluster 'prod' has no backup section"),
    (None, {"snapshot": SID}, "give the cluster it belongs to"),
    (None, {"cluster": "prod", "snapshot": "other-2030"}, "is not a snapshot id of cluster"),
    (None, {"cluster": "prod", "snapshot": "prod-x/../y"}, "is not a snapshot id of cluster"),
    (None, {"cluster": "prod", "snapshot": ["prod-1"]}, "is not a snapshot id of cluster"),
])
def test_what_cannot_be_backed_up_is_one_refusal(pillar, kwargs, says):
    plan = plan_of(pillar, only=kwargs.get("cluster"))
    high = O.backup_steps(plan, backup_answers(), stamp=STAMP, **kwargs)
    assert list(high) == ["cloudify_ha-backup-validate"]
    assert says in args(high, "cloudify_ha-backup-validate")["comment"]
    assert O.backup_everyone(plan, kwargs.get("cluster"), kwargs.get("snapshot")) == []


def test_an_unknown_cluster_and_an_invalid_pillar_are_refused_before_anything_runs():
    high = O.backup_steps(plan_of(only="nope"), backup_answers(), cluster="nope", stamp=STAMP)
    assert list(high) == ["cloudify_ha-backup-validate"]
    assert "cluster 'nope'" in args(high, "cloudify_ha-backup-validate")["comment"]
    pillar = example_pillar()
    pillar["clusters"]["prod"]["backup"]["keep"] = 0
    high = O.backup_steps(plan_of(pillar), backup_answers(), stamp=STAMP)
    assert "backup:keep" in args(high, "cloudify_ha-backup-validate")["comment"]


def test_a_target_that_finds_its_pillar_invalid_refuses_the_run():
    got = backup_answers()
    got[TARGET]["ret"]["pillar_errors"] = ["cloudify_ha:clusters:prod:backup:recipient: x"]
    high = O.backup_steps(plan_of(), got, stamp=STAMP)
    assert list(high) == ["cloudify_ha-backup-validate"]
    assert f"(pillar of {TARGET})" in args(high, "cloudify_ha-backup-validate")["comment"]


def test_two_clusters_streaming_to_one_port_of_one_target_go_one_after_the_other():
    pillar = example_pillar()
    staging = copy.deepcopy(pillar["clusters"]["prod"])
    staging["leader"] = "stg-mgr1"
    staging["managers"] = [{"name": f"stg-mgr{n}", "minion_id": f"stg{n}",
                            "private_ip": f"10.1.0.1{n}", "public_ip": f"192.0.2.2{n}"}
                           for n in (1, 2, 3)]
    staging["database"]["host"] = "10.1.0.5"
    staging["cli_hosts"], staging["loadbalancer"] = [], None
    pillar["clusters"]["staging"] = staging
    got = backup_answers()
    for n in (1, 2, 3):
        got[f"stg{n}"] = {"ret": {"modules_current": True, "node": "leader" if n == 1 else
                                  "replica"}, "retcode": 0}
    high = O.backup_steps(plan_of(pillar), got, stamp=STAMP)
    assert args(high, "cloudify_ha-backup-staging-snapshot")["require"] == [
        {"test": "cloudify_ha-backup-sync"}, {"salt": "cloudify_ha-backup-prod-keep-target"},
        {"salt": "cloudify_ha-backup-prod-keep-cluster"}]
    assert args(high, "cloudify_ha-backup-staging-snapshot")["kwarg"]["snapshot_id"] == \
        f"staging-{STAMP}"
