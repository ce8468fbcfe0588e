#!py
"""salt-run state.orch cloudify_ha.orch.backup [pillar='{"cluster": "<name>"}']
(or the cluster under cloudify_ha_orch: cloudify_ha_master.orch_argument; add "snapshot": "<id>"
to send a snapshot the cluster holds, again, instead of taking a new one)

Backs up every cluster with a `backup` section in pillar (or the one named), off the cluster:
  validate -> sync the formula's modules where stale -> on the ACTIVE node, cloudify_ha.snapshot
  (quiesce as pillar says; maintenance mode always left) -> the stream, two steps in parallel:
  the target's receiver (one connection, from the cluster's managers only) and the active
  node's sender (gpg-encrypted for backup:recipient) -> the target verifies sizes and digests,
  renames the archive and writes its manifest -> retention at the target and on the cluster.
A snapshot the target holds with its manifest already is not sent again.

Built as data (the py renderer): the steps come from cloudify_ha_master.orch_steps
(_utils/cloudify_ha_orch.py); this file only asks the managers and the targets, once, which of
them answer, whether their modules are current and which manager is the active node, and, for
a snapshot given, whether its target holds it. No archive byte, key or secret is in any step.
"""

import datetime

NEEDED = ("cloudify_ha.plan", "cloudify_ha_master.orch_steps", "cloudify_ha_master.orch_targets",
          "cloudify_ha_master.ask", "cloudify_ha_master.formula_modules",
          "cloudify_ha_master.orch_argument")


def _salt_fails(sid, text):
    """Salt's own failing state: the formula's states may be missing on this master."""
    step = {"test.fail_without_changes": [dict(name=text)]}
    return {sid: step}


def run():
    tplroot = sls.split(".")[0]  # noqa: F821  (set by the py renderer)
    if not all(fun in __salt__ for fun in NEEDED):  # noqa: F821
        return _salt_fails("cloudify_ha-backup-validate",
                           "the cloudify_ha modules on the master are missing or older than the "
                           "formula: run 'salt-run saltutil.sync_all', then re-run")
    argument = __salt__["cloudify_ha_master.orch_argument"]  # noqa: F821
    cluster, snapshot = argument("cluster") or None, argument("snapshot")
    plan = __salt__["cloudify_ha.plan"](cluster=cluster)  # noqa: F821
    targets = __salt__["cloudify_ha_master.orch_targets"](  # noqa: F821
        "backup", plan, cluster=cluster)
    answers, stored = {}, {}
    if targets:
        timeout = ((__pillar__.get("cloudify_ha") or {}).get("orchestration")  # noqa: F821
                   or {}).get("ping_timeout", 5)
        expected = __salt__["cloudify_ha_master.formula_modules"]()  # noqa: F821
        answers = __salt__["cloudify_ha_master.ask"](  # noqa: F821
            targets, "cloudify_ha.orch_facts", kwarg={"expected": expected}, timeout=timeout)
        backup = (plan["clusters"].get(cluster) or {}).get("backup") if cluster else None
        tid = backup["target"]["minion_id"] if isinstance(backup, dict) else None
        if snapshot is not None and (answers.get(tid) or {}).get("ret"):
            # whether the target holds that snapshot with its manifest (read, not changed);
            # asked of the target that answered, whatever the master's grains cache says of its
            # modules (a target the last run synced shows their grain there only once it asks
            # for its pillar again); without the module its answer is no manifest: sent again
            stored = __salt__["saltutil.cmd"](  # noqa: F821
                tgt=[tid], tgt_type="list", fun="cloudify_ha_backup.stored",
                kwarg={"directory": backup["target"]["directory"], "cluster": cluster,
                       "snapshot_id": snapshot}, timeout=timeout)
    stamp = f"{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%SZ}"
    return __salt__["cloudify_ha_master.orch_steps"](  # noqa: F821
        "backup", plan, answers=answers, cluster=cluster, tplroot=tplroot, snapshot=snapshot,
        stored=stored, stamp=stamp)
