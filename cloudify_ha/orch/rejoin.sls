#!py
"""salt-run state.orch cloudify_ha.orch.rejoin pillar='{"node": "<minion id>"}'
(or the node under cloudify_ha_orch, as the runner passes it: cloudify_ha_master.orch_argument;
the reactor runs it through `salt-run cloudify_ha.rejoin`, one at a time)

Brings one manager back into its cluster: a rebooted member that is back online -> its firewall
rules again (a reboot loses them), nothing about Cloudify; a wiped or reinstalled host -> taken
out of the cluster's load balancers, its stale entry removed through the ACTIVE node, installed
with the install-time join, put back into the load balancers; then stale profiles refreshed
everywhere; before the cluster has been started -> nothing; a cluster in 4.6's maintenance mode
-> nothing, and a refusal that says so. The node must be a plain minion id AND the minion_id of
a manager of a cluster in pillar, else nothing runs.

Built as data (the py renderer): the steps come from cloudify_ha_master.orch_steps
(_utils/cloudify_ha_orch.py); the node is never rendered into text.
"""

import logging
import re

log = logging.getLogger("cloudify_ha.orch.rejoin")
PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}", re.ASCII)
NEEDED = ("cloudify_ha.plan", "cloudify_ha_master.orch_steps", "cloudify_ha_master.orch_targets",
          "cloudify_ha_master.ask", "cloudify_ha_master.orch_argument")


def _salt_fails(sid, text):
    """Salt's own failing state: the formula's states may be missing on this master."""
    step = {"test.fail_without_changes": [dict(name=text)]}
    return {sid: step}


def run():
    tplroot = sls.split(".")[0]  # noqa: F821  (set by the py renderer)
    modules = all(fun in __salt__ for fun in NEEDED)  # noqa: F821
    if modules:
        node = __salt__["cloudify_ha_master.orch_argument"]("node")  # noqa: F821
    else:  # only to name it in the refusal
        node = (__pillar__.get("cloudify_ha_orch") or {}).get("node",  # noqa: F821
                                                               __pillar__.get("node"))  # noqa: F821
    shown = node if isinstance(node, str) and PLAIN.fullmatch(node) else ascii(node)
    if not modules:
        # Salt's own state: the formula's modules, its states among them, may be missing here
        return _salt_fails("cloudify_ha-rejoin-validate", (
            f"rejoin of {shown}: the cloudify_ha pillar is invalid or the formula's modules are "
            "not synced to the master (salt-run saltutil.sync_all); nothing was changed. Run "
            "salt-run state.orch cloudify_ha.orch test=True to see the errors"))
    plan = __salt__["cloudify_ha.plan"]()  # noqa: F821
    targets = __salt__["cloudify_ha_master.orch_targets"]("rejoin", plan, node=node)  # noqa: F821
    # the ping, and whether a manager's node is in 4.6's maintenance mode
    pings = __salt__["cloudify_ha_master.ask"](  # noqa: F821
        targets, "cloudify_ha.maintenance_mode")
    state = None
    if isinstance(node, str) and node in targets and isinstance(pings.get(node), dict) \
            and "ret" in pings[node]:
        # whether the node is a cluster member: one that is not is taken out of the load
        # balancers before it installs (its own word: it only decides that)
        answer = __salt__["cloudify_ha_master.ask"](  # noqa: F821
            [node], "cloudify_ha.node_state", timeout=10).get(node) or {}
        state = answer.get("ret") if answer.get("retcode") == 0 else None
    if not targets and not plan["errors"]:
        log.warning("cloudify_ha rejoin: ignored: %r is not a manager of a cluster in pillar "
                    "cloudify_ha:clusters", node)
    return __salt__["cloudify_ha_master.orch_steps"](  # noqa: F821
        "rejoin", plan, answers=pings, node=node, tplroot=tplroot, node_state=state)
