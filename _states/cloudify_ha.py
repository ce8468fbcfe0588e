"""
Cloudify Manager 4.5.5/4.6 HA cluster states: every decision of the cloudify_ha formula.

Each state asks first (the local markers and REST answer, the ACTIVE node's view of the
cluster, the external database), acts through the ``cloudify_ha`` execution module only when
something is missing, then asks again and reports a change only when the answer changed.
``test=True`` reports the would-be change and runs nothing that mutates. Errors are
``result: False`` with a comment that says what was found and what to do, and no changes.

.. code-block:: yaml

    mgr2:
      cloudify_ha.joined:
        - host_ip: 10.0.0.12
        - cluster: prod
"""

import logging
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "cloudify_ha"

ERRORS = (CommandExecutionError, SaltInvocationError)


def __virtual__():
    if "cloudify_ha.node_state" in __salt__:
        return __virtualname__
    return (False, "the cloudify_ha execution module is not available: sync the formula's "
                   "modules (saltutil.sync_all)")


def _ret(name):
    return {"name": name, "changes": {}, "result": False, "comment": ""}


def _fail(ret, comment):
    ret.update(result=False, changes={}, comment=comment)
    return ret


def _would(ret, changes, comment):
    ret.update(result=None, changes=changes, comment=comment)
    return ret


def _wait_for(predicate, timeout, interval=1.0):
    """Poll predicate() (bounded); returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def _node_state(cluster, fresh=False):
    """The node's state; with test=True a host without the installer package is forecast as
    if the installer SLS (an earlier step) had installed it.

    Read once per state run (the states of one SLS run ask the same question one after the
    other): ``__context__`` lives as long as the run. ``fresh`` reads again, and stores the new
    answer: after an action, and in polls."""
    cache = __context__.setdefault("cloudify_ha.node_state", {})
    if fresh or cluster not in cache:
        cache[cluster] = __salt__["cloudify_ha.node_state"](cluster=cluster)
    state = cache[cluster]
    if state == "absent" and __opts__["test"]:
        return "package_installed"
    return state


def _forget_node_state(cluster):
    """This host changed (a join, a removal): the next _node_state reads it again."""
    __context__.get("cloudify_ha.node_state", {}).pop(cluster, None)


def _active_and_nodes(cluster, active_hint=None, required=True):
    """(the cluster's active node ``{"name", "host"}`` or None, its member list or None).

    With ``active_hint`` (an address that answered as the active node a moment ago: the
    orchestration's plan reads every manager once) the hint is asked for the member list
    directly. Only the active node answers that (a replica answers every call with
    not_cluster_master), and it lists itself as the master: such an answer proves the hint
    and saves polling every manager for /status. Any other answer falls back to the poll, which
    also detects a split brain. States that are about to change something check again without
    the hint."""
    mod = __salt__
    if active_hint:
        try:
            nodes = mod["cloudify_ha.cluster_nodes"](active=active_hint, cluster=cluster)
        except ERRORS:
            nodes = None
        master = next((n for n in nodes or [] if n["master"] and n["host_ip"] == active_hint),
                      None)
        if master is not None:
            return {"name": master["name"], "host": active_hint}, nodes
        log.info("cloudify_ha: %s does not answer as the active node; polling every manager",
                 active_hint)
    active = mod["cloudify_ha.active_node"](cluster=cluster, required=required)
    if active is None:
        return None, None
    return active, mod["cloudify_ha.cluster_nodes"](active=active["host"], cluster=cluster)


def _pkg_missing(ret, name):
    return _fail(ret, f"{name}: the cloudify-manager-install package is not installed on this "
                      "host; apply the cloudify_ha.installer SLS first")


# ---- refused --------------------------------------------------------------------------------
def refused(name, comment):
    """
    Fails with ``comment``, changing nothing, also under ``test=True``: how the formula's SLS and
    orchestrations stop on a problem they found while rendering (an invalid pillar, a minion
    that is not a manager). The same on every Salt: ``test.configurable_test_state`` fails in
    test mode only from 3007 on (``allow_test_mode_failure``).

    .. code-block:: yaml

        cloudify_ha-orch-validate:
          cloudify_ha.refused:
            - comment: the cloudify_ha pillar is invalid; nothing was changed on any host
    """
    return {"name": name, "changes": {}, "result": False, "comment": str(comment)}


# ---- manager_installed ---------------------------------------------------------------------
def manager_installed(name, cluster=None, allow_database_reset=False):
    """
    The cluster's first manager is installed on the external database (a non-join install).

    Never re-runs an install on a host that has one (``/etc/cloudify/.install``). Refuses, and
    runs nothing, when the external database already holds Cloudify data (a non-join install
    drops it), unless ``allow_database_reset`` is True.

    name
        The manager's node name (for the comment).
    cluster
        The cluster in pillar (default: the one listing this minion).
    allow_database_reset
        Let the install drop an external database that holds Cloudify data.
    """
    ret = _ret(name)
    try:
        state = _node_state(cluster)
        if state == "absent":
            return _pkg_missing(ret, name)
        if state != "package_installed":
            ret.update(result=True, comment=f"{name} is already installed (node state: {state}); "
                                            "an install is never re-run")
            return ret
        running = __salt__["cloudify_ha.active_node"](cluster=cluster, required=False)
        if running:
            ret.update(result=True, comment=(
                f"{name}: not installed here, but the cluster already runs (active node "
                f"{running['host']}): this host joins it (cloudify_ha.joined) instead of a "
                "non-join install, which would drop the cluster's database"))
            return ret
        data = __salt__["cloudify_ha.database_holds_data"](cluster=cluster)
        if data["holds_data"] and not allow_database_reset:
            rows = ", ".join(f"{n} {t}" for t, n in sorted(data["rows"].items())) or "no row count"
            held = ", ".join(f"{db} with {n} tables" for db, n in sorted(data["data"].items()) if n)
            return _fail(ret, (
                f"{name}: refusing to install: the external database {data['host']} already "
                f"holds Cloudify data ({held}; {data['name']}: {rows}). A non-join install runs "
                f"DROP DATABASE on {data['name']}, stage and composer and the cluster's data "
                "would be lost. If a cluster still uses this database, this host should join it "
                "(check the pillar's leader and whether another manager is the active node). If "
                "the data is disposable, set allow_database_reset: True in the cluster's pillar "
                "for one run."))
        change = {"installed": {"old": state, "new": "installed"}}
        if data["holds_data"]:
            change["database_reset"] = {"old": data["databases"], "new": "dropped and recreated"}
        if __opts__["test"]:
            return _would(ret, change, f"{name} would be installed as the first manager on "
                                       f"{data['host']} (non-join install)")
        __salt__["cloudify_ha.install"](cluster=cluster)
        after = _node_state(cluster, fresh=True)
        if after != "installed" or not __salt__["cloudify_ha.local_api_ok"](cluster=cluster):
            return _fail(ret, f"{name}: cfy_manager install returned 0 but the host is not a "
                              f"working manager (node state: {after}); see "
                              "/var/log/cloudify/manager/cfy_manager.log")
        ret.update(result=True, changes=change, comment=f"{name} installed on {data['host']}")
    except ERRORS as exc:
        return _fail(ret, f"{name}: {exc}")
    return ret


# ---- cluster_started ------------------------------------------------------------------------
def cluster_started(name, host_ip, cluster=None):
    """
    The cluster is started on this manager (``cfy cluster start``), always with an explicit node
    name and host IP. A no-op when the manager already belongs to a cluster.

    name
        The node name (``--cluster-node-name``).
    host_ip
        The node's cluster address (``--cluster-host-ip``); never the ``localhost`` default.
    """
    ret = _ret(name)
    try:
        state = _node_state(cluster)
        if state in ("leader", "replica"):
            ret.update(result=True, comment=f"{name} is already part of a cluster ({state})")
            return ret
        if state == "package_installed":
            running = __salt__["cloudify_ha.active_node"](cluster=cluster, required=False)
            if running:
                ret.update(result=True, comment=(
                    f"{name}: the cluster already runs (active node {running['host']}); this "
                    "host joins it (cloudify_ha.joined)"))
                return ret
            if __opts__["test"]:
                return _would(ret, {"cluster": {"old": None, "new": {"node_name": name,
                                                                     "host_ip": host_ip}}},
                              f"the cluster would be started on {name} ({host_ip}) once it is "
                              "installed")
        if state != "installed":
            return _fail(ret, f"{name}: cannot start a cluster on a host in state '{state}': "
                              "it must be an installed, standalone manager (apply "
                              "cloudify_ha.manager first)")
        change = {"cluster": {"old": "standalone", "new": {"node_name": name, "host_ip": host_ip}}}
        if __opts__["test"]:
            return _would(ret, change, f"the cluster would be started on {name} ({host_ip})")
        __salt__["cloudify_ha.start_cluster"](name, host_ip, cluster=cluster)
        started = __salt__["cloudify_ha.cluster_status"](active=host_ip, cluster=cluster)
        after = _node_state(cluster, fresh=True)
        if not started.get("initialized") or after != "leader":
            return _fail(ret, f"{name}: cfy cluster start returned 0 but the cluster is not "
                              f"initialized (node state: {after})")
        ret.update(result=True, changes=change, comment=f"cluster started on {name} ({host_ip})")
    except ERRORS as exc:
        return _fail(ret, f"{name}: {exc}")
    return ret


# ---- joined ---------------------------------------------------------------------------------
def joined(name, host_ip, cluster=None, replace_stale=False, wait=90, if_cluster_runs=False,
           active_hint=None):
    """
    This manager is a member of its cluster, online as a replica (or the active node).

    Asks the ACTIVE node (found by polling every manager) whether this node is a member; a
    replica cannot answer. When it is not, joins with the install-time join (``cfy_manager
    install`` with cluster.master_ip = the active node, the cluster's own database address,
    the admin and postgres passwords, all in config.yaml). Refuses, and touches nothing, on a
    host that is not empty or that holds an installation of its own.

    name
        The node name.
    host_ip
        The node's cluster address.
    replace_stale
        When the cluster lists this node (or its address) as an offline member and this host
        is freshly installed (wiped or rebuilt), remove that stale entry through the active node
        before joining.
    wait
        Seconds to wait, after joining, for the node to be online in the active node's view,
        and for a rebooted member's REST service to come back.
    if_cluster_runs
        Do nothing (result True) when no manager answers as the cluster's active node: for a
        reaction to a minion's start before the cluster has been built.
    active_hint
        The address of the node that answered as the active node a moment ago (the
        orchestration passes what its plan found): asked first for the member list, which only
        the active node answers; when it does not, every manager is polled as without it. A
        join is decided on a poll of every manager, never on the hint alone.
    """
    ret = _ret(name)
    try:
        return _joined(ret, name, host_ip, cluster, replace_stale, wait, if_cluster_runs,
                       active_hint)
    except ERRORS as exc:
        return _fail(ret, f"{name}: {exc}")


def _joined(ret, name, host_ip, cluster, replace_stale, wait, if_cluster_runs=False,
            active_hint=None):
    # pylint: disable=too-many-return-statements,too-many-branches
    mod = __salt__
    local = _node_state(cluster)
    if local == "absent":
        return _pkg_missing(ret, name)
    if local == "down":  # a rebooted member: its services may still be starting
        local = _wait_for(lambda: (lambda st: st if st != "down" else None)(
            _node_state(cluster, fresh=True)), wait, 1.0) or "down"
    if local == "down":
        return _fail(ret, f"{name}: this manager is installed and clustered but its REST service "
                          "does not answer; a rebooted member's services come back by themselves: "
                          "check them (systemctl status 'cloudify-*') and re-run")
    active, nodes = _active_and_nodes(cluster, active_hint,
                                      required=not (__opts__["test"] or if_cluster_runs))
    if active is None and if_cluster_runs:
        ret.update(result=True, comment=f"{name}: no manager answers as the cluster's active "
                                        "node: the cluster has not been started; nothing to do")
        return ret
    if active is None:  # test=True before the cluster exists: an earlier step would start it
        return _would(ret, {"joined": {"old": None, "new": "the cluster's active node"}},
                      f"{name} would join the cluster once it is started (no manager answers yet)")
    me = next((n for n in nodes if n["name"] == name), None)
    same_ip = next((n for n in nodes if n["host_ip"] == host_ip and n["name"] != name), None)
    if me and me["host_ip"] != host_ip:
        return _fail(ret, f"{name}: the cluster lists {name} at {me['host_ip']}, the pillar says "
                          f"{host_ip}; fix the pillar, or retire the old node "
                          "(cloudify_ha.orch.retire) before joining this host")
    if same_ip:
        return _fail(ret, f"{name}: address {host_ip} belongs to member {same_ip['name']} "
                          f"({same_ip['state']}); retire it first or fix the pillar")
    if me and local in ("leader", "replica"):
        # a member that just came back (a reboot) is offline until its heartbeats resume
        if me["online"] or _wait_for(lambda: _is_online(mod, active, name, cluster), wait, 1.0):
            ret.update(result=True, comment=f"{name} is a member of the cluster ({me['state']}; "
                                            f"active node {active['host']})")
            return ret
        return _fail(ret, f"{name}: a member of the cluster, but offline in the active node's "
                          f"view ({active['host']}) although its services run: check ports "
                          "8300/tcp, 8301/tcp+udp, 8500/tcp, 22000/tcp between the managers")
    if local == "removed":
        return _fail(ret, f"{name}: this host was removed from the cluster and can never rejoin "
                          "as it is: tear it down with 'cfy_manager remove -f' (this deletes its "
                          "local manager data) and re-run")
    if local in ("installed", "leader", "replica"):
        what = ("a standalone manager" if local == "installed"
                else f"a {local} of another cluster")
        return _fail(ret, f"{name}: this host already holds {what}; an install-time join needs a "
                          "host with only the installer package. Tear it down with 'cfy_manager "
                          "remove -f' (this deletes its local data) if it is disposable")
    # local == package_installed: a fresh host
    resources = mod["cloudify_ha.resources"]()
    if resources:
        return _fail(ret, f"{name}: this host is not empty ({len(resources)} file(s) under "
                          f"/opt/manager/resources, e.g. {resources[0]}); only an empty manager "
                          "can join a cluster. Nothing was changed; move the data away if it is "
                          "not needed")
    # the join's database is the pillar's: no public source says 4.6's node records carry a
    # database_ip (cloudify-4.6.md section 0.3); one that does and differs is refused
    database_ip = mod["cloudify_ha.database_host"](cluster=cluster)
    leader_entry = next((n for n in nodes if n["master"]), None)
    reported = (leader_entry or {}).get("database_ip")
    if reported and reported != database_ip:
        return _fail(ret, f"{name}: the active node {active['host']} reports its database at "
                          f"{reported}, the pillar's database:host is {database_ip}; a cluster "
                          "has one database. Nothing was changed: fix the pillar, or check "
                          "which database the cluster really uses")
    changes = {}
    if me and me["online"]:  # a host wiped a moment ago still looks alive for a few seconds
        if _wait_for(lambda: not _is_online(mod, active, name, cluster), 20, 1.0):
            me = dict(me, online=False, state="offline")
    if me:  # listed, but this host is fresh: a stale entry of a wiped host
        if me["online"]:
            return _fail(ret, f"{name}: the cluster lists {name} as ONLINE at {host_ip} while this "
                              "host has no manager installed; two hosts share the name/address?")
        if not replace_stale:
            return _fail(ret, f"{name}: the cluster still lists {name} ({host_ip}) as an offline "
                              "member, but this host has no manager installed (wiped or rebuilt). "
                              "Set replace_stale: True in the cluster's pillar to remove the stale "
                              "entry and join, or retire it with cloudify_ha.orch.retire")
        changes["removed_stale"] = {"old": name, "new": None}
    changes["joined"] = {"old": None, "new": {"active_node": active["host"],
                                              "database": database_ip}}
    if __opts__["test"]:
        return _would(ret, changes, f"{name} would join the cluster through the active node "
                                    f"{active['host']}")
    if active_hint:  # about to change the cluster: decide on a poll of every manager
        return _joined(ret, name, host_ip, cluster, replace_stale, wait, if_cluster_runs)
    _forget_node_state(cluster)
    if me:
        mod["cloudify_ha.remove_node"](name, active=active["host"], cluster=cluster)
    mod["cloudify_ha.join"](active["host"], database_ip, cluster=cluster)
    if not _wait_for(lambda: _is_online(mod, active, name, cluster), wait, 1.0):
        return _fail(ret, f"{name}: cfy_manager install returned 0 but {name} is not online as a "
                          f"replica in the active node's view after {wait}s; check ports 8300/tcp, "
                          "8301/tcp+udp, 8500/tcp, 22000/tcp")
    ret.update(result=True, changes=changes,
               comment=f"{name} joined the cluster (active node {active['host']})")
    return ret


def _is_online(mod, active, name, cluster):
    try:
        nodes = mod["cloudify_ha.cluster_nodes"](active=active["host"], cluster=cluster)
    except ERRORS:
        return False
    return any(n["name"] == name and n["online"] for n in nodes)


# ---- profile_updated ------------------------------------------------------------------------
def _profile_fits(entries, expected, own):
    """The profile entries that are right as 4.6 keeps them: a cluster node at its public address
    (``public_ip or host_ip``), or, for this host's own node, ``localhost`` (the start node's
    entry in its own profile)."""
    return [e for e in entries or [] if e["name"] in expected and
            (e["manager_ip"] == expected[e["name"]] or
             (e["manager_ip"] == "localhost" and e["name"] == own))]


def _profile_right(entries, expected, own):
    """A profile that exists and lists exactly the cluster's nodes, each as ``_profile_fits``."""
    good = _profile_fits(entries, expected, own)
    return entries is not None and len(good) == len(entries) and \
        sorted(e["name"] for e in good) == sorted(expected)


def _listing(entries):
    return None if entries is None else sorted(f"{e['name']} ({e['manager_ip']})" for e in entries)


def profile_updated(name, cluster=None, active_hint=None):
    """
    The ``cfy`` profile ``name`` on this host lists exactly the cluster's nodes by name, each at
    its public address (``localhost`` for this host's own entry is what 4.6 writes and is kept),
    and its file (which holds the admin password) is 0600. It makes the profile active, drops
    entries of nodes gone or moved, makes sure it knows the active node (4.6's ``cfy`` walks
    only the nodes a profile lists), then runs ``cfy cluster update-profile``, which adds the
    missing nodes the 4.6 way; a profile that does not exist is created (``cfy profiles use``).

    name
        The profile: ``localhost`` on a manager, the cluster's name on a CLI host.
    active_hint
        As for ``cloudify_ha.joined``: the address to ask first for the member list; a profile
        is changed only after a poll of every manager.
    """
    ret = _ret(name)
    mod = __salt__
    try:
        active, nodes = _active_and_nodes(cluster, active_hint, required=not __opts__["test"])
        if active is None:
            return _would(ret, {"nodes": {"old": _listing(mod["cloudify_ha.profile_cluster"](
                profile=name)), "new": "the cluster's nodes"}},
                          f"profile {name} would list the cluster's nodes once it is started")
        expected = {n["name"]: n.get("public_ip") or n["host_ip"] for n in nodes}
        wanted = sorted(f"{n} ({a})" for n, a in expected.items())
        own = mod["cloudify_ha.local_node"](cluster=cluster)
        entries = mod["cloudify_ha.profile_cluster"](profile=name)
        mode = mod["cloudify_ha.profile_mode"](profile=name)
        was_active = mod["cloudify_ha.active_profile"]()
        changes = {}
        if not _profile_right(entries, expected, own):
            changes["nodes"] = {"old": _listing(entries), "new": wanted}
        if mode != "0o600":
            changes["mode"] = {"old": mode, "new": "0o600"}
        if changes.get("nodes") and was_active != name:
            changes["active_profile"] = {"old": was_active, "new": name}
        if not changes:
            ret.update(result=True, comment=f"profile {name} lists the cluster's {len(expected)} "
                                            "nodes")
            return ret
        if __opts__["test"]:
            return _would(ret, changes, f"profile {name} would be updated")
        if active_hint:  # about to change the profile: decide on a poll of every manager
            return profile_updated(name, cluster)
        if "nodes" in changes:
            if entries is None or was_active != name:
                mod["cloudify_ha.use_profile"](name, active["host"], cluster=cluster)
                entries = mod["cloudify_ha.profile_cluster"](profile=name)
            fits = _profile_fits(entries, expected, own)
            if not any(e["name"] == active["name"] for e in fits):
                fits = [{"name": active["name"], "manager_ip": expected[active["name"]]}] + fits
            if fits != entries:
                mod["cloudify_ha.set_profile_cluster"](name, fits)
            if sorted(e["name"] for e in fits) != sorted(expected):
                mod["cloudify_ha.update_profile"](cluster=cluster)
        mod["cloudify_ha.secure_profile"](profile=name)
        after = mod["cloudify_ha.profile_cluster"](profile=name)
        if not _profile_right(after, expected, own) or \
                mod["cloudify_ha.profile_mode"](profile=name) != "0o600":
            return _fail(ret, f"profile {name}: lists {_listing(after)} after the update, the "
                              f"cluster has {wanted}")
        ret.update(result=True, changes=changes, comment=f"profile {name} updated")
    except ERRORS as exc:
        return _fail(ret, f"profile {name}: {exc}")
    return ret


# ---- node_absent ----------------------------------------------------------------------------
def node_absent(name, cluster=None):
    """
    The dead node ``name`` is not a member of the cluster: removed through the active node.
    Refuses to remove the active node or a node that is online. The removed host is not touched:
    it must be torn down (``cfy_manager remove -f``) before it can join again.
    """
    ret = _ret(name)
    mod = __salt__
    try:
        active, nodes = _active_and_nodes(cluster)
        node = next((n for n in nodes if n["name"] == name), None)
        if node is None:
            ret.update(result=True, comment=f"{name} is not a member of the cluster")
            return ret
        if node["master"]:
            return _fail(ret, f"{name} is the active node: it cannot be removed; if it must go, "
                              "stop it so that another node takes over, then re-run")
        if node["online"]:
            return _fail(ret, f"{name} is online ({node['state']}): only a dead node is retired; "
                              "stop it first if it must go")
        change = {"removed": {"old": {"name": name, "host_ip": node["host_ip"],
                                      "state": node["state"]}, "new": None}}
        if __opts__["test"]:
            return _would(ret, change, f"{name} would be removed from the cluster through "
                                       f"{active['host']}")
        mod["cloudify_ha.remove_node"](name, active=active["host"], cluster=cluster)
        after = mod["cloudify_ha.cluster_nodes"](active=active["host"], cluster=cluster)
        if any(n["name"] == name for n in after):
            return _fail(ret, f"{name}: the active node accepted the removal but still lists it")
        ret.update(result=True, changes=change,
                   comment=f"{name} removed from the cluster through {active['host']}")
    except ERRORS as exc:
        return _fail(ret, f"{name}: {exc}")
    return ret


# ---- listed ---------------------------------------------------------------------------------
def listed(name, cluster=None):
    """
    The node ``name`` is a member of the cluster, as the ACTIVE node lists it, online or not.
    Read-only: the orchestration checks with it, from another manager, a manager whose minion
    does not answer (a member that is down is fine: it rejoins when it comes back; a node that
    never joined cannot be joined while it is down).
    """
    ret = _ret(name)
    try:
        active, nodes = _active_and_nodes(cluster, required=False)
        if active is None:
            return _fail(ret, f"{name}: its minion does not answer and no manager of the cluster "
                              "answers as the active node: the cluster cannot be built or checked; "
                              "bring the hosts up and re-run")
        node = next((n for n in nodes if n["name"] == name), None)
        if node is None:
            return _fail(ret, f"{name}: its minion does not answer and the cluster (active node "
                              f"{active['host']}) does not list it: it cannot join while it is "
                              "down; bring it up and re-run")
        ret.update(result=True, comment=(
            f"{name}: its minion does not answer; the cluster lists it ({node['state']}, active "
            f"node {active['host']}); it rejoins when its host comes back"))
    except ERRORS as exc:
        return _fail(ret, f"{name}: {exc}")
    return ret
