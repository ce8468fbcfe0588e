"""
cloudify_ha on the master: serialized rejoins for the reactor, and an operator's status view.

``salt-run cloudify_ha.rejoin node=<minion id>`` runs the ``cloudify_ha.orch.rejoin``
orchestration one at a time (a file lock in the master's cache dir: reactor threads and
``salt-run`` processes alike); while one rejoin of a node waits, further events for that node are
coalesced into it. An id that is no manager is dropped before the master's pillar is compiled
(a list of the managers' ids, kept a few seconds): a burst of forged start events costs one
compile. ``salt-run cloudify_ha.status`` only reads.
"""

import fcntl
import json
import logging
import os
import re
import tempfile
import time

import salt.client
import salt.minion
import salt.pillar
from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

__virtualname__ = "cloudify_ha"


def __virtual__():
    return __virtualname__


def _master_pillar():
    """(the master's cloudify_ha pillar, the master's minion) as the orchestration sees them."""
    master_minion = salt.minion.MasterMinion(__opts__)
    opts = master_minion.opts
    pillar = salt.pillar.get_pillar(opts, opts.get("grains") or {}, opts["id"],
                                    saltenv=opts.get("saltenv") or "base").compile_pillar()
    return pillar.get("cloudify_ha") or {}, master_minion


# the same rule as the reactor's (cloudify_ha/reactor/rejoin.sls): a plain ASCII minion id
MINION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}", re.ASCII)
MAINTENANCE_STATES = ("activated", "activating", "deactivated")  # 4.6's (constants.py)


# seconds the master's cloudify_ha facts (the managers' minion ids, whether the pillar is valid,
# whether rejoins are paused) are reused by the reactor's rejoins (cached=True) before the
# pillar is compiled again; a rejoin run by hand compiles it
FACTS_SECONDS = 30


def _lock_dir():
    path = os.path.join(__opts__["cachedir"], "cloudify_ha")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def _open_private(name, write=True):
    """A descriptor of the runner's own file `name` in its directory: never a link planted in
    its place (_utils/cloudify_ha_files.py)."""
    return __utils__["cloudify_ha_files.open_private"](os.path.join(_lock_dir(), name),
                                                       write=write)


def rejoin(node, force=False, cached=False):
    """
    Rejoin one manager (its minion id) with ``cloudify_ha.orch.rejoin``, one rejoin at a time.
    The reactor calls this with the event's minion id; it must be a plain minion id and a
    manager's ``minion_id`` in the master's pillar (checked here first, then again by the
    orchestration), else nothing runs. With ``cached=True`` (the reactor's) the managers' ids
    come from a compile of the master's pillar at most ``FACTS_SECONDS`` old, so that a burst
    of events for minions that are no managers compiles it once; else it is compiled now.

    Pillar ``cloudify_ha:reactor:enabled: false`` (on the master) pauses the reactor's rejoins,
    e.g. during maintenance; ``force=True`` runs one anyway. A cluster in 4.6's maintenance mode
    changes nothing either: the orchestration refuses, and this logs it and answers that it
    skipped the rejoin (result True: re-run it once the mode is off).

    CLI Example:

    .. code-block:: bash

        salt-run cloudify_ha.rejoin node=cfy-mgr2.example.com
    """
    for name, value in (("force", force), ("cached", cached)):
        if not isinstance(value, bool):
            # a string "False" is true in Python: only the booleans YAML and the CLI make
            return {"node": repr(node), "result": False,
                    "comment": f"{name}: {value!r} must be true or false; nothing ran"}
    if isinstance(node, int) and not isinstance(node, bool):
        node = str(node)  # salt-run node=123 arrives as a YAML integer
    if not isinstance(node, str) or not MINION_ID.fullmatch(node):
        # checked before anything runs: the orchestration would otherwise get it as pillar
        return {"node": repr(node), "result": False,
                "comment": "node: must be the minion id of a manager (ASCII letters, digits, "
                           "'.', '_', '-'); nothing ran"}
    facts = _master_facts(fresh=not cached)
    if facts["valid"] is False:
        return {"node": node, "result": False,
                "comment": "the cloudify_ha pillar is invalid on the master; nothing ran. Run "
                           "salt-run state.orch cloudify_ha.orch test=True to see the errors"}
    if facts["valid"] and node not in facts["managers"]:
        log.warning("cloudify_ha rejoin: ignored: %r is not a manager of a cluster in pillar "
                    "cloudify_ha:clusters", node)
        return {"node": node, "result": True,
                "comment": f"ignored: {node!r} is not the minion id of a manager of any cluster "
                           "in pillar cloudify_ha:clusters; nothing ran"}
    if not force and facts["enabled"] is False:
        log.info("cloudify_ha rejoin of %s skipped: automatic rejoins are paused", node)
        return {"node": node, "result": True,
                "comment": "automatic rejoins are paused (pillar cloudify_ha:reactor:enabled "
                           "is false on the master); force=True runs one"}
    try:
        return _rejoin_one_at_a_time(node)
    except CommandExecutionError as exc:  # a lock file that is a trap
        return {"node": node, "result": False, "comment": str(exc)}


def _rejoin_one_at_a_time(node):
    pending = _open_private(f"pending-{node}.lock")
    try:
        try:
            fcntl.flock(pending, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("cloudify_ha rejoin of %s coalesced into one already waiting", node)
            return {"node": node, "result": True,
                    "comment": f"coalesced: a rejoin of {node} is already waiting to run"}
        serial = _open_private("rejoin.lock")
        try:
            fcntl.flock(serial, fcntl.LOCK_EX)
            # from here on a new event for this node queues one more run (it may come from a
            # change this run does not see)
            os.close(pending)
            pending = None
            log.info("cloudify_ha rejoin of %s starts", node)
            ret = __salt__["state.orchestrate"](
                "cloudify_ha.orch.rejoin", pillar={"cloudify_ha_orch": {"node": node}})
            refusal = _maintenance_refusal(ret)
            if refusal is None:
                return ret
            log.warning("cloudify_ha rejoin of %s skipped: %s", node, refusal)
            return {"node": node, "result": True,
                    "comment": f"skipped: {refusal}; run 'salt-run cloudify_ha.rejoin "
                               f"node={node}' once it is off"}
        finally:
            os.close(serial)
    finally:
        if pending is not None:
            os.close(pending)


def _maintenance_refusal(ret):
    """The comment of the rejoin orchestration's refusal of a cluster in maintenance mode (its
    one step, ``cloudify_ha-rejoin-<node>-maintenance``), or None."""
    data = ret.get("data") if isinstance(ret, dict) else None
    for chunks in (data or {}).values() if isinstance(data, dict) else ():
        for chunk in (chunks or {}).values() if isinstance(chunks, dict) else ():
            if isinstance(chunk, dict) and str(chunk.get("__id__", "")).endswith("-maintenance") \
                    and chunk.get("result") is False:
                return str(chunk.get("comment"))
    return None


def _master_facts(fresh=False):
    """What rejoin needs to know of the master's pillar: ``valid`` (None when the formula's
    modules are not on the master: the orchestration then refuses by itself), the managers'
    minion ids, and ``enabled``. From the runner's cache when it is younger than
    FACTS_SECONDS and not ``fresh``, else from a compile of the master's pillar (then
    cached)."""
    if not fresh:
        cached = _cached_facts()
        if cached is not None:
            return cached
    pillar, master_minion = _master_pillar()
    facts = {"valid": None, "managers": [],
             "enabled": (pillar.get("reactor") or {}).get("enabled", True) is not False}
    functions = getattr(master_minion, "functions", None) or {}
    if "cloudify_ha.plan" in functions:
        plan = functions["cloudify_ha.plan"](pillar=pillar)
        facts["valid"] = not plan["errors"]
        facts["managers"] = sorted(m["minion_id"] for c in plan["clusters"].values()
                                   for m in c["managers"])
    _cache_facts(facts)
    return facts


def _cached_facts():
    try:
        fd = _open_private("master-facts.json", write=False)
    except CommandExecutionError:
        return None  # not there, or not the runner's own file: compile instead
    try:
        if not 0 <= time.time() - os.fstat(fd).st_mtime <= FACTS_SECONDS:
            return None
        with os.fdopen(os.dup(fd), "r", encoding="utf-8") as fh:
            facts = json.load(fh)
    except ValueError:
        return None
    finally:
        os.close(fd)
    keys = {"valid", "managers", "enabled"}
    return facts if isinstance(facts, dict) and set(facts) == keys else None


def _cache_facts(facts):
    """The facts written whole (a new file renamed over the old: a reader never sees half)."""
    fd, tmp = tempfile.mkstemp(dir=_lock_dir(), prefix=".master-facts-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(facts, fh)
        os.replace(tmp, os.path.join(_lock_dir(), "master-facts.json"))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _profile_name(cname, is_manager, lookup):
    return lookup.get("local_profile", "localhost") if is_manager else cname


def status(cluster=None, timeout=10):
    """
    For every cluster in pillar (or one): each manager's state (leader, replica, offline, not
    installed, not joined, removed, no answer), the active node, its maintenance mode (while
    4.6's maintenance mode is activated the node list cannot be read: each manager's state is
    then its own answer), nodes the cluster lists that pillar does not and the reverse, and CLI
    profiles that do not list the cluster's nodes. Reads only. A table for people;
    ``--out=json`` for scripts (under ``data``).

    CLI Example:

    .. code-block:: bash

        salt-run cloudify_ha.status
        salt-run cloudify_ha.status cluster=prod --out=json
    """
    pillar, master_minion = _master_pillar()
    plan = master_minion.functions["cloudify_ha.plan"](pillar=pillar, cluster=cluster)
    if plan["errors"]:
        return {"outputter": "cloudify_ha_status", "data": {"errors": plan["errors"]}}
    lookup = pillar.get("lookup") or {}
    out = {}
    with salt.client.get_local_client(__opts__["conf_file"]) as local:
        for cname, settings in plan["clusters"].items():
            out[cname] = _cluster_status(local, cname, settings, lookup, timeout)
    return {"outputter": "cloudify_ha_status", "data": out}


def _maintenance(local, cname, managers, states, timeout):
    """4.6's maintenance mode of the cluster: the answer of a manager that answers as the active
    node (or a standalone manager) and is in it, else of one that is not, else {}."""
    asked = {m["minion_id"]: m for m in managers
             if states.get(m["minion_id"]) in ("leader", "installed")}
    answers = _ask(local, list(asked), "cloudify_ha.maintenance_mode", kwarg={"cluster": cname},
                   timeout=timeout)
    known = []
    for mid, manager in asked.items():
        answer = answers.get(mid)
        if isinstance(answer, dict) and answer.get("status") in MAINTENANCE_STATES:
            # the node named as pillar names that minion's manager, not as it says
            known.append(dict(answer, name=manager["name"], host=manager["private_ip"]))
    return next((a for a in known if a["status"] != "deactivated"), known[0] if known else {})


def _maintenance_text(maintenance):
    status = maintenance.get("status")
    if not status:
        return "unknown (no manager answers as the active node)"
    if status == "deactivated":
        return "off"
    since = f" since {maintenance['activated_at']}" if maintenance.get("activated_at") else ""
    by = f" by {maintenance['requested_by']}" if maintenance.get("requested_by") else ""
    return (f"{status} on {maintenance.get('name')} ({maintenance.get('host')}){since}{by}: the "
            "formula changes nothing in this cluster; 'cfy maintenance-mode deactivate' ends it")


def _ask(local, targets, fun, arg=(), kwarg=None, timeout=10):
    if not targets:
        return {}
    answers = local.cmd(targets, fun, arg=list(arg), kwarg=kwarg or {}, tgt_type="list",
                        timeout=timeout, full_return=True)
    return {mid: a.get("ret") if a.get("retcode", 0) == 0 else {"error": a.get("ret")}
            for mid, a in answers.items()}


def _cluster_status(local, cname, settings, lookup, timeout):
    managers = settings["managers"]
    ids = [m["minion_id"] for m in managers]
    states = _ask(local, ids, "cloudify_ha.node_state", kwarg={"cluster": cname},
                  timeout=timeout)
    maintenance = _maintenance(local, cname, managers, states, timeout)
    listed, active, problem = None, None, None
    blocked = maintenance.get("status") == "activated"  # 4.6 refuses /cluster/nodes then
    if blocked:
        active = {"name": maintenance["name"], "host": maintenance["host"]}
    for mid in [] if blocked else ids:
        if states.get(mid) in ("leader", "replica"):
            # a view: it waits for no failover (cloudify_ha.active_node's waits:active_node)
            got = _ask(local, [mid], "cloudify_ha.active_node",
                       kwarg={"cluster": cname, "wait": 0}, timeout=timeout).get(mid)
            if isinstance(got, dict) and "host" in got:
                nodes = _ask(local, [mid], "cloudify_ha.cluster_nodes",
                             kwarg={"cluster": cname, "active": got["host"]},
                             timeout=timeout).get(mid)
                if isinstance(nodes, list):
                    active, listed = got, nodes
                    break
                got = nodes
            problem = (got or {}).get("error") if isinstance(got, dict) else got
    by_name = {n["name"]: n for n in listed or []}
    rows = []
    for m in managers:
        local_state = states.get(m["minion_id"])
        node = by_name.get(m["name"])
        if node is not None:
            state = node["state"]
        elif local_state is None:
            state = "no answer (minion down)"
        elif isinstance(local_state, dict):
            state = f"error: {local_state.get('error')}"
        elif local_state in ("absent", "package_installed"):
            state = "not installed"
        elif local_state == "removed":
            state = "removed"
        elif local_state == "half_installed":
            state = "half-installed (an install failed part-way)"
        elif listed is None and local_state in ("leader", "replica", "down"):
            state = f"{local_state} (its own answer; the node list could not be read)"
        else:
            state = "not joined"
        rows.append({"node": m["name"], "minion": m["minion_id"], "ip": m["private_ip"],
                     "state": state, "local": str(local_state)})
    # 4.6 merges profiles by node name; a profile lists the members pillar names (only they
    # have an address from pillar: cloudify_ha.profile_updated)
    pillar_names = {m["name"] for m in managers}
    expected = sorted(n["name"] for n in listed or [] if n["name"] in pillar_names)
    profiles = _ask(local, ids, "cloudify_ha.profile_nodes",
                    kwarg={"profile": _profile_name(cname, True, lookup), "own": True},
                    timeout=timeout)
    profiles.update(_ask(local, settings.get("cli_hosts") or [], "cloudify_ha.profile_nodes",
                         kwarg={"profile": cname}, timeout=timeout))
    stale = sorted(mid for mid, names in profiles.items()
                   if listed is not None and names is not None and names != expected)
    return {
        "managers": rows,
        "active node": (f"{active.get('name')} ({active['host']})" if active else
                        f"none found{': ' + str(problem) if problem else ''}"),
        "maintenance mode": _maintenance_text(maintenance),
        "listed, not in pillar": sorted(set(by_name) - pillar_names),
        "in pillar, not listed": sorted(pillar_names - set(by_name)) if listed is not None else [],
        "stale profiles": stale,
    }
