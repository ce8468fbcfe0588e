#!py
"""salt-run state.orch cloudify_ha.orch.retire pillar='{"cluster": "<name>", "node": "<node name>"}'
(or both under "cloudify_ha_orch": cloudify_ha_master.orch_argument)

Retires a DEAD node: removed from the cluster through the active node (cfy cluster nodes
remove), from a manager of that cluster whose minion answers. Refused for the active node, for
a node that is online, and in a cluster in 4.6's maintenance mode. The dead host is not
touched: rebuild it (or another host), update the pillar (a new node name for a rebuilt host)
and run cloudify_ha.orch to join the replacement.

Built as data (the py renderer): the steps come from cloudify_ha_master.orch_steps
(_utils/cloudify_ha_orch.py); neither argument is ever rendered into text.
"""

NEEDED = ("cloudify_ha.plan", "cloudify_ha_master.orch_steps", "cloudify_ha_master.orch_targets",
          "cloudify_ha_master.ask", "cloudify_ha_master.orch_argument")
USAGE = ("give the cluster and the node to retire: "
         "pillar='{\"cluster\": \"<name>\", \"node\": \"<node name>\"}'")


def _salt_fails(sid, text):
    """Salt's own failing state: the formula's states may be missing on this master."""
    step = {"test.fail_without_changes": [dict(name=text)]}
    return {sid: step}


def run():
    tplroot = sls.split(".")[0]  # noqa: F821  (set by the py renderer)
    if not all(fun in __salt__ for fun in NEEDED):  # noqa: F821
        # Salt's own state: the formula's states may be missing on the master too
        return _salt_fails("cloudify_ha-retire-validate",
                           "the cloudify_ha modules are not synced to the master: run "
                           "'salt-run saltutil.sync_all'")
    argument = __salt__["cloudify_ha_master.orch_argument"]  # noqa: F821
    cluster, node = argument("cluster"), argument("node")
    if not (cluster and node):
        return _salt_fails("cloudify_ha-retire-validate", USAGE)
    plan = __salt__["cloudify_ha.plan"](cluster=cluster)  # noqa: F821
    targets = __salt__["cloudify_ha_master.orch_targets"](  # noqa: F821
        "retire", plan, node=node, cluster=cluster)
    # the ping, and whether a manager's node is in 4.6's maintenance mode
    pings = __salt__["cloudify_ha_master.ask"](  # noqa: F821
        targets, "cloudify_ha.maintenance_mode")
    return __salt__["cloudify_ha_master.orch_steps"](  # noqa: F821
        "retire", plan, answers=pings, node=node, cluster=cluster, tplroot=tplroot)
