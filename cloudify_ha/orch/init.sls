#!py
"""salt-run state.orch cloudify_ha.orch [pillar='{"cluster": "<name>"}']
(or the cluster under cloudify_ha_orch, which no other formula's pillar collides with:
cloudify_ha_master.orch_argument)

Builds every cluster in pillar (or the one named), clusters in parallel:
  validate -> sync the formula's modules to minions whose copies are not current -> the
  bootstrap leader (firewall, installer package, install on the external database, start the
  cluster), while the other managers get their firewall and installer package and the CLI hosts
  their CLI package -> each other manager joins, one at a time -> cfy profiles on managers and
  CLI hosts -> load balancer.
Every step requires the one before it in its cluster: a failure stops that cluster there.
Steps ask the cluster's ACTIVE node, not the pillar's leader, so a re-run after a failover
works. Managers whose minion does not answer are checked from a live manager instead.
Secrets never travel in this file's data: each minion reads its own pillar.

Built as data (the py renderer): the steps come from cloudify_ha_master.orch_steps
(_utils/cloudify_ha_orch.py); this file only asks the minions, once, which of them answer,
whether their copies of the formula's modules are current and, on a manager, its node state.
A minion that the master's grains cache shows without the formula's modules (a new host) is
only pinged: it would answer orch_facts only after loading every module it has.
"""

NOT_SYNCED = ("the cloudify_ha modules on the master are missing or older than the formula: run "
              "'salt-run saltutil.sync_all' (once, and after each upgrade of the formula), then "
              "re-run")
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
        # Salt's own state: without the formula's modules the master has no formula state either
        return _salt_fails("cloudify_ha-orch-validate", NOT_SYNCED)
    only = __salt__["cloudify_ha_master.orch_argument"]("cluster") or None  # noqa: F821
    plan = __salt__["cloudify_ha.plan"](cluster=only)  # noqa: F821
    answers = {}
    everyone = __salt__["cloudify_ha_master.orch_targets"]("orch", plan)  # noqa: F821
    if everyone:
        timeout = ((__pillar__.get("cloudify_ha") or {}).get("orchestration")  # noqa: F821
                   or {}).get("ping_timeout", 5)
        expected = __salt__["cloudify_ha_master.formula_modules"]()  # noqa: F821
        # orch_facts, or test.ping of a minion the master knows lacks the formula's modules
        answers = __salt__["cloudify_ha_master.ask"](  # noqa: F821
            everyone, "cloudify_ha.orch_facts", kwarg={"expected": expected}, timeout=timeout)
    return __salt__["cloudify_ha_master.orch_steps"](  # noqa: F821
        "orch", plan, answers=answers, tplroot=tplroot)
