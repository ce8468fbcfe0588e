"""
Cloudify Manager 4.5.5/4.6 HA cluster states: every decision of the cloudify_ha formula.

Each state asks first (the local markers and REST answer, the ACTIVE node's view of the
cluster, the external database), acts through the ``cloudify_ha`` execution module only when
something is missing, then asks again and reports a change only when the answer changed.
``test=True`` reports the would-be change and runs nothing that mutates. Errors are
``result: False`` with a comment that says what was found and what to do, and no changes.

How a state is written here: a pure decision ``_decide_<state>(facts)``, a function of what was
read that returns a verdict (``_ok``, ``_refuse``, ``_would_be``, ``_act``, or ``_need(fact)`` for
a fact it has not been given yet: table-tested in test/unit/test_states.py), the readers of
those facts (``_READ_<STATE>``), and the act with its one named re-check. ``_converge`` drives
them and is the one place an error becomes a failed state.

.. code-block:: yaml

    mgr2:
      cloudify_ha.joined:
        - host_ip: 10.0.0.12
        - cluster: prod
"""

import contextlib
import fcntl
import json
import logging
import os
import time
from typing import NamedTuple

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "cloudify_ha"

ERRORS = (CommandExecutionError, SaltInvocationError)
CLUSTER_PORTS = "8300/tcp, 8301/tcp+udp, 8500/tcp, 22000/tcp"


def __virtual__():
    if "cloudify_ha.node_state" in __salt__:
        return __virtualname__
    return (False, "the cloudify_ha execution module is not available: sync the formula's "
                   "modules (saltutil.sync_all)")


# ---- verdicts and the driver ----------------------------------------------------------------
class Verdict(NamedTuple):
    """What a decision says: ``kind`` is need / ok / refuse / would / act; ``text`` the comment
    (for ``need``: the fact to read; for ``act``: the comment under test=True); ``done`` the
    comment once an act worked."""
    kind: str
    text: str
    changes: dict = None
    done: str = ""


def _need(fact):
    return Verdict("need", fact)


def _ok(comment):
    return Verdict("ok", comment)


def _refuse(comment):
    return Verdict("refuse", comment)


def _would_be(changes, comment):
    """Only under test=True: the change an earlier step makes possible."""
    return Verdict("would", comment, changes)


def _act(changes, would, done):
    return Verdict("act", would, changes, done)


def _decided(facts, decide, readers):
    """Decide, reading each fact the decision asks for, until it says something else. A state
    that was given an active-node hint decides again on a poll of every manager before it acts."""
    given = dict(facts)
    while True:
        verdict = decide(facts)
        if verdict.kind == "need":
            facts.update(readers[verdict.text](facts))
        elif verdict.kind == "act" and not facts["test"] and facts.get("active_hint"):
            facts.clear()
            facts.update(given, active_hint=None)
        else:
            return verdict


def _converge(name, facts, decide, readers, act=None, label=None):
    """A state's return: decide (``_decided``), then act and re-check (``act(facts)`` returns
    None, or the failure's comment), all under the host's lock (``_host_lock``). Every error of
    the execution module ends here, as a failed state that names ``label`` (the node) and
    changes nothing it reports."""
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    facts = dict(facts, name=name, test=bool(__opts__["test"]))
    try:
        with _host_lock(name, facts["test"]) as acted:
            verdict = _decided(facts, decide, readers)
            if verdict.kind == "ok":
                ret.update(result=True, comment=verdict.text)
            elif verdict.kind == "refuse":
                ret.update(comment=verdict.text)
            elif verdict.kind == "would" or facts["test"]:
                ret.update(result=None, changes=verdict.changes, comment=verdict.text)
            else:
                acted()
                failure = act(facts)
                if failure:
                    ret.update(comment=failure)
                else:
                    ret.update(result=True, changes=verdict.changes, comment=verdict.done)
    except ERRORS as exc:
        ret.update(result=False, changes={}, comment=f"{label or name}: {exc}")
    return ret


LOCK_FILE = "cloudify_ha.lock"
LOCK_WAIT = 3600  # pillar cloudify_ha:lookup:lock_wait; as defaults.yaml


@contextlib.contextmanager
def _host_lock(name, test):
    """A state's decide, act and re-check under the host's lock (``run_locked``): the lock this
    state run already holds, else one taken for this state alone (a state applied outside the
    formula's SLS files). Reads the host again when another run acted on it since this run
    last looked (an act count in the lock file; ``__context__`` keeps what this run saw).
    test=True takes no lock: it only reads. Yields ``acted()``, to be called before an act."""
    if test:
        yield lambda: None
        return
    held = __context__.get(RUN_LOCK)
    fd = held if held is not None else _locked_fd(name)
    try:
        acts = _lock_record(fd).get("acts", 0)
        if __context__.get("cloudify_ha.acts") != acts:  # another run changed this host
            __context__.pop("cloudify_ha.node_state", None)
        holder = {"state": name, "pid": os.getpid(), "since": time.time()}
        _write_lock_record(fd, {"acts": acts, "holder": holder})

        def acted():
            _write_lock_record(fd, {"acts": acts + 1, "holder": holder})
            __context__["cloudify_ha.acts"] = acts + 1

        __context__["cloudify_ha.acts"] = acts
        yield acted
        # the run that holds the lock holds it on: it stays the holder a waiter is told of
        _write_lock_record(fd, {"acts": __context__["cloudify_ha.acts"],
                                "holder": _run_holder(name) if held is not None else None})
    finally:
        if held is None:
            os.close(fd)  # releases the lock


RUN_LOCK = "cloudify_ha.run_lock"


def _locked_fd(name):
    """An open descriptor of the host's lock file, holding its exclusive lock (bounded wait).
    The file is never a link to another (``cloudify_ha_files.open_private``): the lock's record
    is written into it as root."""
    fd = __utils__["cloudify_ha_files.open_private"](
        os.path.join(__opts__["cachedir"], LOCK_FILE))
    try:
        _take_lock(fd, name)
    except BaseException:
        os.close(fd)
        raise
    return fd


def run_locked(name):
    """
    The rest of this state run holds the host's cloudify_ha lock: one formula state run at a
    time on a host, whoever starts it (two masters' orchestrations, a reactor's rejoin, an
    operator's ``state.apply``, ``salt-call``). Every SLS of the formula includes
    ``cloudify_ha.lock``, which puts this state first and ``run_unlocked`` last; the
    orchestrations run their steps with ``concurrent=True``, so that Salt's own state queue never
    holds a job back: 3006.8's waits only for OLDER jids (a job with an older jid that reaches the
    minion second runs beside the first), 3006.21+/3008.4 with ``queue=True`` park a waiting job
    where ``saltutil.find_job`` does not look (the master drops the step as "did not return"),
    and with an integer two waiting jobs wait for each other forever. A run waiting here is a
    running job the master can see. Waits ``cloudify_ha:lookup:lock_wait`` seconds at most (then
    fails, naming the holder, and the run's other states fail on their own lock: nothing
    changes); the lock ends with ``run_unlocked`` or with the job's process. test=True takes no
    lock.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    if __opts__["test"]:
        ret["comment"] = "test=True reads only: no lock taken"
        return ret
    if __context__.get(RUN_LOCK) is not None:
        ret["comment"] = "this state run already holds the host's cloudify_ha lock"
        return ret
    start = time.monotonic()
    try:
        fd = __context__[RUN_LOCK] = _locked_fd(name)
    except ERRORS as exc:
        ret.update(result=False, comment=str(exc))
        return ret
    _write_lock_record(fd, dict(_lock_record(fd), holder=_run_holder(name)))
    waited = time.monotonic() - start
    ret["comment"] = ("holding the host's cloudify_ha lock for this state run" +
                      (f" (waited {waited:.0f}s for another run)" if waited >= 1 else ""))
    return ret


def _run_holder(name):
    """Who holds the lock for a whole state run, as a waiting run is told: the lock's state, this
    job's pid, since when."""
    holder = __context__.setdefault("cloudify_ha.run_holder", {
        "state": f"{name} (a whole state run)", "pid": os.getpid(), "since": time.time()})
    return holder


def run_unlocked(name):
    """
    Ends the lock ``run_locked`` took (the last state of a formula state run).
    """
    fd = __context__.pop(RUN_LOCK, None)
    if fd is not None:
        _write_lock_record(fd, dict(_lock_record(fd), holder=None))
        os.close(fd)
    return {"name": name, "changes": {}, "result": True,
            "comment": "released the host's cloudify_ha lock" if fd is not None else
                       "no lock was held"}


def _take_lock(fd, name):
    wait = None
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        if wait is None:
            wait = _lock_wait()
            deadline = time.monotonic() + wait
            log.info("cloudify_ha: %s waits for another cloudify_ha state run on this host", name)
        if time.monotonic() >= deadline:
            holder = _lock_record(fd).get("holder") or {}
            raise CommandExecutionError(
                f"waited {wait}s for another cloudify_ha state run on this host (state "
                f"{holder.get('state')!r}, pid {holder.get('pid')}) to end; nothing was "
                "changed. Find its job with saltutil.running on this minion, wait for it and "
                "re-run, or raise cloudify_ha:lookup:lock_wait")
        time.sleep(1.0)


def _lock_wait():
    value = ((__pillar__.get("cloudify_ha") or {}).get("lookup") or {}).get("lock_wait", LOCK_WAIT)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SaltInvocationError("cloudify_ha:lookup:lock_wait: must be a positive whole number "
                                  f"of seconds, not {value!r}")
    return value


def _lock_record(fd):
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}


def _write_lock_record(fd, record):
    data = json.dumps(record).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _wait_for(predicate, timeout, interval=1.0):
    """Poll predicate() until it is true or `timeout` s have passed; returns its last value.
    The pauses start at 0.2 s and double up to `interval`: what is nearly there (a node whose
    first heartbeat is due) is seen at once, what takes long is not asked more than once an
    `interval`. The last ask is at the deadline."""
    deadline = time.monotonic() + timeout
    pause = min(0.2, interval)
    while True:
        value = predicate()
        left = deadline - time.monotonic()
        if value or left <= 0:
            return value
        time.sleep(min(pause, left))
        pause = min(pause * 2, interval)


# ---- what the states read -------------------------------------------------------------------
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
    the hint (``_decided``)."""
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


def _read_local(facts):
    return {"local": _node_state(facts["cluster"])}


def _read_running(facts):
    """The cluster's active node if one answers (a host about to install or start a cluster).
    A half-installed host is not asked about itself (its nginx answers 502, or its services as
    a standalone manager); when the others cannot tell either, what they said is kept
    (``running_unknown``): such a host is refused anyway unless a cluster runs."""
    half = facts.get("local") == "half_installed"
    try:
        running = __salt__["cloudify_ha.active_node"](cluster=facts["cluster"], required=False,
                                                      **({"others": True} if half else {}))
    except ERRORS as exc:
        if not half:
            raise
        return {"running": None, "running_unknown": str(exc)}
    return {"running": running}


def _half_installed_advice(name, f):
    """The refusal of a host an earlier install left half-installed (never its database)."""
    unknown = f.get("running_unknown")
    return _refuse(
        f"{name}: an earlier install failed part-way: the host is half-installed, its nginx "
        "(and, past the restservice step, its services as a standalone manager) running "
        "without /etc/cloudify/.install. Nothing was changed and the database was not touched: "
        "see /var/log/cloudify/manager/cfy_manager.log, run "
        "'cfy_manager remove -f' on it (its local files only; the database is left alone) and "
        "re-run; the new install checks the database as any first install does"
        + (f" (whether a cluster already runs could not be told: {unknown})" if unknown else ""))


def _read_cluster(required):
    """A reader of the active node and its member list; ``required(facts)``: whether no active
    node is an error."""
    def read(facts):
        active, nodes = _active_and_nodes(facts["cluster"], facts.get("active_hint"),
                                          required=required(facts))
        return {"active": active, "nodes": nodes}
    return read


def _is_online(cluster, active, name):
    try:
        nodes = __salt__["cloudify_ha.cluster_nodes"](active=active["host"], cluster=cluster)
    except ERRORS:
        return False
    return any(n["name"] == name and n["online"] for n in nodes)


def _failover(active):
    """What a comment adds when the active node was found only after a failover's wait
    (cloudify_ha.active_node's ``waited``)."""
    waited = (active or {}).get("waited")
    return f", found after waiting {waited}s for a failover" if waited else ""


def _member(nodes, name):
    return next((n for n in nodes or [] if n["name"] == name), None)


def _pkg_missing(name):
    return _refuse(f"{name}: the cloudify-manager-install package is not installed on this host; "
                   "apply the cloudify_ha.installer SLS first")


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
    return _converge(name, {"cluster": cluster, "allow_database_reset": allow_database_reset},
                     _decide_install, _READ_INSTALL, _install)


def _decide_install(f):
    name = f["name"]
    if "local" not in f:
        return _need("local")
    if f["local"] == "absent":
        return _pkg_missing(name)
    if f["local"] not in ("package_installed", "half_installed"):
        return _ok(f"{name} is already installed (node state: {f['local']}); an install is never "
                   "re-run")
    if "running" not in f:
        return _need("running")
    if f["running"]:
        return _ok(f"{name}: not installed here, but the cluster already runs (active node "
                   f"{f['running']['host']}): this host joins it (cloudify_ha.joined) instead of "
                   "a non-join install, which would drop the cluster's database")
    if f["local"] == "half_installed":
        return _half_installed_advice(name, f)
    if "database" not in f:
        return _need("database")
    data = f["database"]
    if data["holds_data"] and not f["allow_database_reset"]:
        rows = ", ".join(f"{n} {t}" for t, n in sorted(data["rows"].items())) or "no row count"
        held = ", ".join(f"{db} with {n} tables" for db, n in sorted(data["data"].items()) if n)
        return _refuse(
            f"{name}: refusing to install: the external database {data['host']} already holds "
            f"Cloudify data ({held}; {data['name']}: {rows}). A non-join install runs DROP "
            f"DATABASE on {data['name']}, stage and composer and the cluster's data would be "
            "lost. If a cluster still uses this database, this host should join it (check the "
            "pillar's leader and whether another manager is the active node). If the data is "
            "disposable, set allow_database_reset: True in the cluster's pillar for one run.")
    changes = {"installed": {"old": f["local"], "new": "installed"}}
    if data["holds_data"]:
        changes["database_reset"] = {"old": data["databases"], "new": "dropped and recreated"}
    return _act(changes, f"{name} would be installed as the first manager on {data['host']} "
                         "(non-join install)", f"{name} installed on {data['host']}")


_READ_INSTALL = {
    "local": _read_local,
    "running": _read_running,
    "database": lambda f: {"database": __salt__["cloudify_ha.database_holds_data"](
        cluster=f["cluster"])},
}


def _install(f):
    """The non-join install, then the re-check: an installed host whose REST API answers."""
    __salt__["cloudify_ha.install"](cluster=f["cluster"])
    after = _node_state(f["cluster"], fresh=True)
    if after != "installed" or not __salt__["cloudify_ha.local_api_ok"](cluster=f["cluster"]):
        return (f"{f['name']}: cfy_manager install returned 0 but the host is not a working "
                f"manager (node state: {after}); see /var/log/cloudify/manager/cfy_manager.log")
    return None


# ---- cluster_started ------------------------------------------------------------------------
def cluster_started(name, host_ip, cluster=None, wait=120):
    """
    The cluster is started on this manager (``cfy cluster start``), always with an explicit node
    name and host IP. A no-op when the manager already belongs to a cluster.

    name
        The node name (``--cluster-node-name``).
    host_ip
        The node's cluster address (``--cluster-host-ip``); never the ``localhost`` default.
    wait
        Seconds the check after the start waits for the cluster to show initialized with this
        node its active node: 4.6 restarts the REST service and nginx while it initializes,
        which may still answer 502 when ``cfy cluster start`` returns. The formula's SLS pass
        the cluster's ``waits:started`` (``cfy cluster start`` itself runs under
        ``waits:cluster_start``).
    """
    return _converge(name, {"host_ip": host_ip, "cluster": cluster, "wait": wait}, _decide_start,
                     _READ_START, _start)


def _decide_start(f):
    name, host_ip, local = f["name"], f["host_ip"], f.get("local")
    if local is None:
        return _need("local")
    if local in ("leader", "replica"):
        return _ok(f"{name} is already part of a cluster ({local})")
    if local == "down":  # clustered (/etc/cloudify/cluster), its REST service not up yet: a boot
        return _ok(f"{name} is already part of a cluster (its REST service does not answer yet, "
                   "as after a boot; the join check that follows waits for it)")
    if local in ("package_installed", "half_installed"):
        if "running" not in f:
            return _need("running")
        if f["running"]:
            return _ok(f"{name}: the cluster already runs (active node {f['running']['host']}); "
                       "this host joins it (cloudify_ha.joined)")
        if local == "half_installed":
            return _half_installed_advice(name, f)
        if f["test"]:
            return _would_be({"cluster": {"old": None, "new": {"node_name": name,
                                                               "host_ip": host_ip}}},
                             f"the cluster would be started on {name} ({host_ip}) once it is "
                             "installed")
    if local != "installed":
        return _refuse(f"{name}: cannot start a cluster on a host in state '{local}': it must be "
                       "an installed, standalone manager (apply cloudify_ha.manager first)")
    return _act({"cluster": {"old": "standalone", "new": {"node_name": name, "host_ip": host_ip}}},
                f"the cluster would be started on {name} ({host_ip})",
                f"cluster started on {name} ({host_ip})")


_READ_START = {"local": _read_local, "running": _read_running}


def _start(f):
    """``cfy cluster start``, then the re-check: the cluster initialized, this host its leader,
    waited for (``wait``) through the restart of the REST service and nginx 4.6 does while the
    cluster initializes (cloudify-4.6.md section 0.4): a 502 or no answer is not an answer."""
    name, host_ip, cluster = f["name"], f["host_ip"], f["cluster"]
    __salt__["cloudify_ha.start_cluster"](name, host_ip, cluster=cluster)
    seen = {}

    def started():
        try:
            status = __salt__["cloudify_ha.cluster_status"](active=host_ip, cluster=cluster)
            seen["error"] = None
        except ERRORS as exc:
            status, seen["error"] = {}, str(exc)
        seen["after"] = _node_state(cluster, fresh=True)
        return bool((status or {}).get("initialized")) and seen["after"] == "leader"

    if _wait_for(started, f["wait"], 1.0):
        return None
    why = f"; last answer: {seen['error']}" if seen["error"] else ""
    return (f"{name}: cfy cluster start returned 0 but the cluster is not initialized after "
            f"{f['wait']}s (node state: {seen['after']}){why}")


# ---- joined ---------------------------------------------------------------------------------
def joined(name, host_ip, cluster=None, replace_stale=False, wait=120, if_cluster_runs=False,
           active_hint=None, remove_failed_join=True, offline_wait=60, boot_wait=300):
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
    remove_failed_join
        A host whose earlier join failed part-way (no ``/etc/cloudify/.install``, its nginx, or
        its services as a standalone manager, running, as 4.6 leaves it) and that holds no user
        files is torn down (``cfy_manager remove -f``, its local files only) and joined again;
        the record a join that failed after registering with the active node left there
        (offline, never initialized) is removed through the active node first. False: refuse
        and name the command instead.
    offline_wait
        Seconds a freshly installed host's own entry, still listed online (a host wiped a moment
        ago), may take to show offline before this join goes on (4.6: tens of seconds); the
        formula's SLS pass the cluster's ``waits:offline``.
    wait
        Seconds to wait, after joining (or for a member back from a reboot), for the node to be
        online in the active node's view (4.6 heartbeats every 15 s); ``waits:online``.
    boot_wait
        Seconds to wait for a rebooted member's REST service to come back (nginx answers 502
        until then; 4.6 sets no bound); ``waits:boot``. How long to wait for a new active node
        during a failover is the cluster's ``waits:active_node`` (``cloudify_ha.active_node``).
    if_cluster_runs
        Do nothing (result True) when no manager answers as the cluster's active node: for a
        reaction to a minion's start before the cluster has been built.
    active_hint
        The address of the node that answered as the active node a moment ago (the
        orchestration passes what its plan found): asked first for the member list, which only
        the active node answers; when it does not, every manager is polled as without it. A
        join is decided on a poll of every manager, never on the hint alone.
    """
    return _converge(name, {"host_ip": host_ip, "cluster": cluster,
                            "replace_stale": replace_stale, "wait": wait,
                            "boot_wait": boot_wait, "remove_failed_join": remove_failed_join,
                            "offline_wait": offline_wait,
                            "if_cluster_runs": if_cluster_runs, "active_hint": active_hint},
                     _decide_join, _READ_JOIN, _join)


def _decide_join(f):
    # pylint: disable=too-many-return-statements,too-many-branches
    name, host_ip, local = f["name"], f["host_ip"], f.get("local")
    if local is None:
        return _need("local")
    if local == "absent":
        return _pkg_missing(name)
    if local == "down":
        return _refuse(f"{name}: this manager is installed and clustered but its REST service "
                       "does not answer; a rebooted member's services come back by themselves: "
                       "check them (systemctl status 'cloudify-*') and re-run")
    if "nodes" not in f:
        return _need("cluster")
    active, nodes = f["active"], f["nodes"]
    if active is None and f["if_cluster_runs"]:
        return _ok(f"{name}: no manager answers as the cluster's active node: the cluster has "
                   "not been started; nothing to do")
    if active is None:  # test=True before the cluster exists: an earlier step would start it
        return _would_be({"joined": {"old": None, "new": "the cluster's active node"}},
                         f"{name} would join the cluster once it is started (no manager answers "
                         "yet)")
    me = _member(nodes, name)
    same_ip = next((n for n in nodes if n["host_ip"] == host_ip and n["name"] != name), None)
    if me and me["host_ip"] != host_ip:
        return _refuse(f"{name}: the cluster lists {name} at {me['host_ip']}, the pillar says "
                       f"{host_ip}; fix the pillar, or retire the old node "
                       "(cloudify_ha.orch.retire) before joining this host")
    if same_ip:
        return _refuse(f"{name}: address {host_ip} belongs to member {same_ip['name']} "
                       f"({same_ip['state']}); retire it first or fix the pillar")
    if me and local in ("leader", "replica"):
        # a member that just came back (a reboot) is offline until its heartbeats resume
        if not me["online"] and "came_online" not in f:
            return _need("came_online")
        if me["online"] or f["came_online"]:
            return _ok(f"{name} is a member of the cluster ({me['state']}; active node "
                       f"{active['host']}{_failover(active)})")
        return _refuse(f"{name}: a member of the cluster, but offline in the active node's view "
                       f"({active['host']}) although its services run: check ports "
                       f"{CLUSTER_PORTS} between the managers")
    if local == "removed":
        return _refuse(f"{name}: this host was removed from the cluster and can never rejoin as "
                       "it is: tear it down with 'cfy_manager remove -f' (this deletes its local "
                       "manager data) and re-run")
    if local in ("installed", "leader", "replica"):
        what = "a standalone manager" if local == "installed" else f"a {local} of another cluster"
        return _refuse(f"{name}: this host already holds {what}; an install-time join needs a "
                       "host with only the installer package. Tear it down with 'cfy_manager "
                       "remove -f' (this deletes its local data) if it is disposable")
    return _decide_fresh_join(f, active, nodes, me)


def _decide_fresh_join(f, active, nodes, me):
    """The rest of ``_decide_join``, for a fresh host (only the installer package)."""
    name, host_ip = f["name"], f["host_ip"]
    if "resources" not in f:
        return _need("resources")
    half = f["local"] == "half_installed"
    if f["resources"]:
        return _refuse(f"{name}: this host is not empty ({len(f['resources'])} file(s) under "
                       f"/opt/manager/resources, e.g. {f['resources'][0]}); only an empty "
                       "manager can join a cluster. Nothing was changed; move the data away if "
                       "it is not needed" + (
                           " (its services run without /etc/cloudify/.install: an install "
                           "failed part-way, and a host with user files is never torn down "
                           "by the formula)" if half else ""))
    if half and not f["remove_failed_join"]:
        return _refuse(f"{name}: an earlier install failed part-way: its services run as a "
                       "standalone manager without /etc/cloudify/.install, and it cannot join "
                       "as it is. Nothing was changed (remove_failed_joins is false): run "
                       "'cfy_manager remove -f' on it (its local files only; the database is "
                       "left alone) and re-run")
    if "database_ip" not in f:
        return _need("database_ip")
    # the join's database is the pillar's: no public source says 4.6's node records carry a
    # database_ip (cloudify-4.6.md section 0.3); one that does and differs is refused
    reported = (next((n for n in nodes if n["master"]), None) or {}).get("database_ip")
    if reported and reported != f["database_ip"]:
        return _refuse(f"{name}: the active node {active['host']} reports its database at "
                       f"{reported}, the pillar's database:host is {f['database_ip']}; a cluster "
                       "has one database. Nothing was changed: fix the pillar, or check which "
                       "database the cluster really uses")
    changes = {}
    if half:
        changes["removed_failed_install"] = {
            "old": "services running without /etc/cloudify/.install (a failed install)",
            "new": "torn down (cfy_manager remove -f)"}
    if me and me["online"]:  # a host wiped a moment ago still looks alive for a few seconds
        if "went_offline" not in f:
            return _need("went_offline")
        if f["went_offline"]:
            me = dict(me, online=False, state="offline")
    if me:  # listed, but this host is fresh: a stale entry of a wiped host
        if me["online"]:
            return _refuse(f"{name}: the cluster lists {name} as ONLINE at {host_ip} while this "
                           "host has no manager installed (still after offline_wait, "
                           f"{f.get('offline_wait')}s); two hosts share the name/address?")
        if not me.get("initialized", True):
            # never initialized: no member ever ran under this record. 4.6's join PUTs it on
            # the active node, then configures consul and syncthing locally: a join of this
            # host that failed after its PUT left it (cloudify-4.6.md section 0.4)
            if not f["remove_failed_join"]:
                return _refuse(f"{name}: the cluster lists {name} ({host_ip}) offline and never "
                               "initialized: the record of an earlier join of this host that "
                               "failed after registering with the active node. Nothing was "
                               "changed (remove_failed_joins is false): remove it with 'cfy "
                               f"cluster nodes remove {name}' through the active node "
                               f"({active['host']}) and re-run")
            changes["removed_failed_join"] = {
                "old": f"{name} ({host_ip}): offline, never initialized (a join that failed "
                       "after registering)", "new": None}
        elif not f["replace_stale"]:
            return _refuse(f"{name}: the cluster still lists {name} ({host_ip}) as an offline "
                           "member, but this host has no manager installed (wiped or rebuilt). "
                           "Set replace_stale: True in the cluster's pillar to remove the stale "
                           "entry and join, or retire it with cloudify_ha.orch.retire")
        else:
            changes["removed_stale"] = {"old": name, "new": None}
    changes["joined"] = {"old": None, "new": {"active_node": active["host"],
                                              "database": f["database_ip"]}}
    torn = " (after tearing down its failed install)" if half else ""
    if "removed_failed_join" in changes:
        torn += " (after removing the record its failed join left)"
    return _act(changes, f"{name} would join the cluster through the active node "
                         f"{active['host']}{torn}", f"{name} joined the cluster (active node "
                                                    f"{active['host']}{_failover(active)}){torn}")


def _read_local_up(facts):
    """The node state; a rebooted member (``down``: its services may still be starting) is
    waited for, ``boot_wait`` seconds at most."""
    cluster = facts["cluster"]
    local = _node_state(cluster)
    if local == "down":
        local = _wait_for(lambda: (lambda st: st if st != "down" else None)(
            _node_state(cluster, fresh=True)), facts["boot_wait"], 1.0) or "down"
    return {"local": local}


_READ_JOIN = {
    "local": _read_local_up,
    "cluster": _read_cluster(lambda f: not (f["test"] or f["if_cluster_runs"])),
    "came_online": lambda f: {"came_online": _wait_for(
        lambda: _is_online(f["cluster"], f["active"], f["name"]), f["wait"], 1.0)},
    "resources": lambda f: {"resources": __salt__["cloudify_ha.resources"]()},
    "database_ip": lambda f: {"database_ip": __salt__["cloudify_ha.database_host"](
        cluster=f["cluster"])},
    "went_offline": lambda f: {"went_offline": _wait_for(
        lambda: not _is_online(f["cluster"], f["active"], f["name"]), f["offline_wait"], 1.0)},
}


def _join(f):
    """The stale entry removed (when decided), the install-time join, then the re-check: this
    node online in the active node's view."""
    name, cluster, active = f["name"], f["cluster"], f["active"]
    _forget_node_state(cluster)
    if f["local"] == "half_installed":
        __salt__["cloudify_ha.remove_manager"](cluster=cluster)
        after = _node_state(cluster, fresh=True)
        if after != "package_installed":
            return (f"{name}: cfy_manager remove -f returned 0 but the host is not clean (node "
                    f"state: {after}); nothing else was done")
    if _member(f["nodes"], name):
        __salt__["cloudify_ha.remove_node"](name, active=active["host"], cluster=cluster)
    __salt__["cloudify_ha.join"](active["host"], f["database_ip"], cluster=cluster)
    if not _wait_for(lambda: _is_online(cluster, active, name), f["wait"], 1.0):
        return (f"{name}: cfy_manager install returned 0 but {name} is not online as a replica "
                f"in the active node's view after {f['wait']}s; check ports {CLUSTER_PORTS}")
    return None


# ---- profile_updated ------------------------------------------------------------------------
def _profile_fits(entries, expected, own):
    """The profile entries that are right as 4.6 keeps them: a cluster node at the pillar's
    public address for it, or, for this host's own node, ``localhost`` (the start node's entry
    in its own profile)."""
    return [e for e in entries or [] if e["name"] in expected and
            (e["manager_ip"] == expected[e["name"]] or
             (e["manager_ip"] == "localhost" and e["name"] == own))]


def _profile_right(entries, expected, own, first=None):
    """A profile that exists and lists exactly the cluster's nodes, each as ``_profile_fits``,
    and ``first`` (the active node) first when given."""
    good = _profile_fits(entries, expected, own)
    return entries is not None and len(good) == len(entries) and \
        sorted(e["name"] for e in good) == sorted(expected) and \
        (first is None or entries[0]["name"] == first)


def _first(active, expected):
    """The node a profile lists first: the active node (the real cfy 4.6 walks a profile in its
    order and stops at the first answer that is not a connection error, not_cluster_master or
    removed_from_cluster: a first entry in its boot window answers 502 and every command fails,
    cloudify-4.6.md section 0.4), when pillar names it."""
    return active["name"] if active and active.get("name") in expected else None


def _listing(entries):
    return None if entries is None else sorted(f"{e['name']} ({e['manager_ip']})" for e in entries)


def _expected_profile(nodes, addresses):
    """Each node's address in the profile: the pillar's ``public_ip`` for the node of that name
    (4.6 merges profiles by name). Never the address the REST answer (plain HTTP) carries: a
    node the cluster lists that pillar does not name gets no entry (cloudify_ha.status lists
    it), so that cfy never sends the admin's credentials to an address no operator wrote."""
    return {n["name"]: addresses[n["name"]] for n in nodes if n["name"] in addresses}


def profile_updated(name, cluster=None, active_hint=None, own=False):
    """
    The ``cfy`` profile ``name`` on this host lists exactly the cluster's nodes that pillar
    names, by name, each at the pillar's ``public_ip`` for it (``localhost`` for this host's
    own entry is what 4.6 writes and is kept), and its file (which holds the admin password) is
    0600. It makes the profile active (a profile that does not exist is created with ``cfy
    profiles use``), then writes its node list, the active node first (4.6's ``cfy`` walks only
    the nodes a profile lists, in their order, and stops at a node answering 502: a profile
    whose first node is not the active one, as after a failover, is rewritten; changes:
    ``first``), as ``cfy cluster update-profile`` would write it (``name`` and
    ``manager_ip``; what the profile stores for an entry it keeps is kept) but with the
    pillar's addresses: update-profile takes them from the cluster's plain-HTTP answer.

    name
        The profile: ``localhost`` on a manager, the cluster's name on a CLI host.
    own
        On a manager: the manager's own profile as 4.6's installer made it, ``name`` on the node
        the cluster was started on, the profile named after the leader it joined through on a
        joiner (``cloudify_ha.own_profile``); 4.6 makes no ``localhost`` profile on a joiner.
    active_hint
        As for ``cloudify_ha.joined``: the address to ask first for the member list; a profile
        is changed only after a poll of every manager.
    """
    if own:
        try:
            # test=True: on a host not installed yet, the profile its install will leave (a
            # joiner's is named after the node it joins through, never localhost)
            name = __salt__["cloudify_ha.own_profile"](
                default=name, **({"forecast": True, "cluster": cluster} if __opts__["test"]
                                 else {}))
        except ERRORS as exc:
            return {"name": name, "changes": {}, "result": False, "comment": f"profile: {exc}"}
    return _converge(name, {"cluster": cluster, "active_hint": active_hint}, _decide_profile,
                     _READ_PROFILE, _update_profile, label=f"profile {name}")


def _decide_profile(f):
    name = f["name"]
    if "nodes" not in f:
        return _need("cluster")
    if f["active"] is None:  # test=True before the cluster exists
        if "entries" not in f:
            return _need("entries")
        return _would_be({"nodes": {"old": _listing(f["entries"]), "new": "the cluster's nodes"}},
                         f"profile {name} would list the cluster's nodes once it is started")
    if "mode" not in f:
        return _need("profile")
    expected = _expected_profile(f["nodes"], f["addresses"])
    first, entries = _first(f["active"], expected), f["entries"]
    changes = {}
    if not _profile_right(entries, expected, f["own"]):
        changes["nodes"] = {"old": _listing(entries),
                            "new": sorted(f"{n} ({a})" for n, a in expected.items())}
    elif not _profile_right(entries, expected, f["own"], first):
        changes["first"] = {"old": entries[0]["name"], "new": first}
    if f["mode"] != "0o600":
        changes["mode"] = {"old": f["mode"], "new": "0o600"}
    if (changes.get("nodes") or changes.get("first")) and f["was_active"] != name:
        changes["active_profile"] = {"old": f["was_active"], "new": name}
    if not changes:
        return _ok(f"profile {name} lists the cluster's {len(expected)} nodes"
                   f"{_failover(f['active'])}")
    return _act(changes, f"profile {name} would be updated", f"profile {name} updated")


_READ_PROFILE = {
    "cluster": _read_cluster(lambda f: not f["test"]),
    "entries": lambda f: {"entries": __salt__["cloudify_ha.profile_cluster"](profile=f["name"])},
    "profile": lambda f: {
        "own": __salt__["cloudify_ha.local_node"](cluster=f["cluster"]),
        "addresses": __salt__["cloudify_ha.public_addresses"](cluster=f["cluster"]),
        "entries": __salt__["cloudify_ha.profile_cluster"](profile=f["name"]),
        "mode": __salt__["cloudify_ha.profile_mode"](profile=f["name"]),
        "was_active": __salt__["cloudify_ha.active_profile"](),
    },
}


def _update_profile(f):
    """The profile made active (created when missing), its node list written (the entries that
    fit kept as they are, the active node first, every other node at the pillar's address), the
    file made 0600; then the re-check: the profile as ``_profile_right`` and 0600."""
    mod, name, active, entries = __salt__, f["name"], f["active"], f["entries"]
    expected = _expected_profile(f["nodes"], f["addresses"])
    first = _first(active, expected)
    if not _profile_right(entries, expected, f["own"], first):
        if entries is None or f["was_active"] != name:
            mod["cloudify_ha.use_profile"](name, active["host"], cluster=f["cluster"])
            entries = mod["cloudify_ha.profile_cluster"](profile=name)
        fits = {e["name"]: e for e in _profile_fits(entries, expected, f["own"])}
        order = list(dict.fromkeys([*([first] if first else []), *fits, *sorted(expected)]))
        wanted = [fits.get(n) or {"name": n, "manager_ip": expected[n]} for n in order]
        if wanted != entries:
            mod["cloudify_ha.set_profile_cluster"](name, wanted)
    mod["cloudify_ha.secure_profile"](profile=name)
    after = mod["cloudify_ha.profile_cluster"](profile=name)
    if not _profile_right(after, expected, f["own"], first) or \
            mod["cloudify_ha.profile_mode"](profile=name) != "0o600":
        return (f"profile {name}: lists {_listing(after)} after the update, the cluster has "
                f"{sorted(f'{n} ({a})' for n, a in expected.items())}")
    return None


# ---- node_absent ----------------------------------------------------------------------------
def node_absent(name, cluster=None):
    """
    The dead node ``name`` is not a member of the cluster: removed through the active node.
    Refuses to remove the active node or a node that is online. The removed host is not touched:
    it must be torn down (``cfy_manager remove -f``) before it can join again.
    """
    return _converge(name, {"cluster": cluster}, _decide_absent, _READ_ABSENT, _remove)


def _decide_absent(f):
    name = f["name"]
    if "nodes" not in f:
        return _need("cluster")
    node = _member(f["nodes"], name)
    if node is None:
        return _ok(f"{name} is not a member of the cluster")
    if node["master"]:
        return _refuse(f"{name} is the active node: it cannot be removed; if it must go, stop it "
                       "so that another node takes over, then re-run")
    if node["online"]:
        return _refuse(f"{name} is online ({node['state']}): only a dead node is retired; stop it "
                       "first if it must go")
    return _act({"removed": {"old": {"name": name, "host_ip": node["host_ip"],
                                     "state": node["state"]}, "new": None}},
                f"{name} would be removed from the cluster through {f['active']['host']}",
                f"{name} removed from the cluster through {f['active']['host']}")


_READ_ABSENT = {"cluster": _read_cluster(lambda f: True)}


def _remove(f):
    """The removal through the active node, then the re-check: the active node no longer lists
    it."""
    name, cluster, host = f["name"], f["cluster"], f["active"]["host"]
    __salt__["cloudify_ha.remove_node"](name, active=host, cluster=cluster)
    if _member(__salt__["cloudify_ha.cluster_nodes"](active=host, cluster=cluster), name):
        return f"{name}: the active node accepted the removal but still lists it"
    return None


# ---- listed ---------------------------------------------------------------------------------
def listed(name, cluster=None):
    """
    The node ``name`` is a member of the cluster, as the ACTIVE node lists it, online or not.
    Read-only: the orchestration checks with it, from another manager, a manager whose minion
    does not answer (a member that is down is fine: it rejoins when it comes back; a node that
    never joined cannot be joined while it is down).
    """
    return _converge(name, {"cluster": cluster}, _decide_listed, _READ_LISTED)


def _decide_listed(f):
    name = f["name"]
    if "nodes" not in f:
        return _need("cluster")
    if f["active"] is None:
        return _refuse(f"{name}: its minion does not answer and no manager of the cluster answers "
                       "as the active node: the cluster cannot be built or checked; bring the "
                       "hosts up and re-run")
    node = _member(f["nodes"], name)
    if node is None:
        return _refuse(f"{name}: its minion does not answer and the cluster (active node "
                       f"{f['active']['host']}) does not list it: it cannot join while it is "
                       "down; bring it up and re-run")
    return _ok(f"{name}: its minion does not answer; the cluster lists it ({node['state']}, "
               f"active node {f['active']['host']}{_failover(f['active'])}); it rejoins when its "
               "host comes back")


_READ_LISTED = {"cluster": _read_cluster(lambda f: False)}


# ---- check_user_present ---------------------------------------------------------------------
def check_user_present(name, cluster=None, active_hint=None):
    """
    The load balancer's check user ``name`` (``loadbalancer:check_user``) exists in the cluster
    with 4.6's ``default`` role, in no tenant and no group, active, and accepts the pillar's
    ``loadbalancer:check_password``: created through the active node when it is missing. A user
    of that name with more rights, deactivated, or with another password is refused, never
    changed: the formula does not rotate that password, and a refusal here stops the
    orchestration before the load balancers get a password the managers would reject.
    """
    return _converge(name, {"cluster": cluster, "active_hint": active_hint},
                     _decide_check_user, _READ_CHECK_USER, _create_check_user)


def _decide_check_user(f):
    name = f["name"]
    if "user" not in f:
        return _need("user")
    user = f["user"]
    if user is None:
        return _act({"created": {"old": None, "new": name, "role": "default"}},
                    f"the check user {name} would be created through {f['host']} (role default)",
                    f"the check user {name} created through {f['host']} (role default)")
    if user["role"] != "default" or user["tenants"] or user["groups"]:
        return _refuse(f"the Cloudify user {name} exists with role {user['role']}, in "
                       f"{user['tenants']} tenant(s) and {user['groups']} group(s): the health "
                       "check's user must have the default role only (it reads /status and "
                       f"nothing else); remove that user (cfy users delete {name}) or name "
                       "another in loadbalancer:check_user; nothing was changed")
    if not user["active"]:
        return _refuse(f"the Cloudify user {name} is deactivated: every health check would fail "
                       f"and the load balancers mark every manager down; activate it (cfy users "
                       f"activate {name}) or delete it; nothing was changed")
    if not user["password_ok"]:
        return _refuse(f"the Cloudify user {name} exists but the active node does not accept "
                       "loadbalancer:check_password for it (401): the formula never changes its "
                       "password; set it to the pillar's in Cloudify (cfy users set-password), "
                       "put the old one back in pillar, or delete the user so that the next run "
                       "creates it; the load balancers keep the password they have")
    return _ok(f"the check user {name} exists (role default) and accepts the pillar's password")


def _read_check_user(facts):
    host = _active_or_none(facts)
    if host is None:  # test=True before the cluster runs: the user does not exist yet
        return {"user": None, "host": "the active node once the cluster runs"}
    user = __salt__["cloudify_ha.check_user"](active=host, cluster=facts["cluster"])
    return {"user": user, "host": host}


_READ_CHECK_USER = {"user": _read_check_user}


def _create_check_user(f):
    """The user created through the active node (409: another run made it meanwhile), then the
    re-check: the active node lists it with the default role and accepts its password."""
    __salt__["cloudify_ha.create_check_user"](active=f["host"], cluster=f["cluster"])
    again = __salt__["cloudify_ha.check_user"](active=f["host"], cluster=f["cluster"])
    verdict = _decide_check_user(dict(f, user=again))
    if verdict.kind != "ok":
        return (f"{f['name']}: the active node accepted the new user but then answers: "
                f"{verdict.text}")
    return None


# ---- license_present ---------------------------------------------------------------------------
def license_present(name, cluster=None, active_hint=None):
    """
    The cluster ``name`` holds the pillar's license (``cloudify_ha:clusters:<name>:license``):
    uploaded through the active node when the manager holds none or another one (4.6 keeps one
    license per manager database, the new one replacing the old). A manager without a license
    endpoint (4.5.5, which has no license) has nothing to hold. Nothing of the license's text
    is in the return.
    """
    return _converge(name, {"cluster": cluster or name, "active_hint": active_hint},
                     _decide_license, _READ_LICENSE, _upload_license)


def _license_differs(have, want):
    """The fields of `want` (license_wanted) the manager's license `have` (license_info)
    answers otherwise."""
    return sorted(k for k in want if have.get(k) != want[k])


def _decide_license(f):
    name = f["name"]
    for fact in ("want", "have"):
        if fact not in f:
            return _need(fact)
    want, have = f["want"], f["have"]
    what = f"license of customer {want['customer_id']} ({want['license_edition'] or 'no edition'}"
    what += f", expires {want['expiration_date']})" if want["expiration_date"] else ", no expiry)"
    if have is None:
        return _ok(f"cluster {name}: the manager at {f['host']} has no license endpoint (4.5.5 "
                   "has no license); the pillar's is uploaded once the cluster runs 4.6")
    if not have:
        return _act({"license": {"old": None, "new": want}},
                    f"cluster {name}: the {what} would be uploaded through {f['host']}",
                    f"cluster {name}: the {what} uploaded through {f['host']}")
    differs = _license_differs(have, want)
    if differs:
        old = {k: v for k, v in have.items() if k in want}
        return _act({"license": {"old": old, "new": want}},
                    f"cluster {name}: the manager's license differs from the pillar's in "
                    f"{', '.join(differs)}: the {what} would be uploaded through {f['host']}",
                    f"cluster {name}: the {what} uploaded through {f['host']} (it differed in "
                    f"{', '.join(differs)})")
    if have.get("expired"):
        return _ok(f"cluster {name}: the manager holds the pillar's {what}, which has EXPIRED: "
                   "give a current one in pillar")
    return _ok(f"cluster {name}: the manager holds the pillar's {what}")


def _read_license(facts):
    host = _active_or_none(facts)
    if host is None:  # test=True before the cluster runs: it will hold none
        return {"have": {}, "host": "the active node once the cluster runs"}
    return {"have": __salt__["cloudify_ha.license_info"](active=host, cluster=facts["cluster"]),
            "host": host}


def _active_or_none(facts):
    """The active node's address (the orchestration's hint, else asked); under test=True None
    where no manager answers yet (a dry run before the build: the earlier states only said
    what they would do), which a real run answers with the error."""
    if facts.get("active_hint"):
        return facts["active_hint"]
    found = __salt__["cloudify_ha.active_node"](cluster=facts["cluster"],
                                                required=not facts["test"])
    return found["host"] if found else None


_READ_LICENSE = {"want": lambda f: {"want": __salt__["cloudify_ha.license_wanted"](
    cluster=f["cluster"])}, "have": _read_license}


def _upload_license(f):
    """The license uploaded through the active node, then the re-check: the manager answers the
    pillar's license."""
    __salt__["cloudify_ha.upload_license"](active=f["host"], cluster=f["cluster"])
    again = __salt__["cloudify_ha.license_info"](active=f["host"], cluster=f["cluster"])
    differs = _license_differs(again or {}, f["want"]) if again else ["everything"]
    if differs:
        return (f"{f['name']}: the active node accepted the license but then answers another "
                f"one (it differs in {', '.join(differs)})")
    return None


# ---- check_credentials_accepted -------------------------------------------------------------
def check_credentials_accepted(name, cluster=None):
    """
    Read-only: the cluster's managers accept the check user ``name`` with the pillar's
    ``loadbalancer:check_password`` (each asked ``GET /status`` as that user): refused when one
    answers 401 or 403, so that a load balancer never loads a password the managers reject
    (every health check would fail and every manager be marked down). Where no manager answers
    as the active node (a cluster not built yet, or down) there is nothing to check against.
    """
    return _converge(name, {"cluster": cluster}, _decide_check_credentials,
                     {"answers": lambda f: {"answers": __salt__["cloudify_ha.check_credentials"](
                         cluster=f["cluster"])}})


def _decide_check_credentials(f):
    name = f["name"]
    if "answers" not in f:
        return _need("answers")
    answers = f["answers"]
    rejected = sorted(n for n, a in answers.items() if a in ("unauthorized", "forbidden_error"))
    if rejected:
        return _refuse(f"{', '.join(rejected)} reject the check user {name} with "
                       f"loadbalancer:check_password ({answers[rejected[0]]}): Cloudify has "
                       "another password for it, or it does not exist yet (the orchestration's "
                       "check-user step creates it); HAProxy's configuration was left as it is")
    active = sorted(n for n, a in answers.items() if a == "active")
    if active:
        return _ok(f"{', '.join(active)} accepts the check user {name} with the pillar's "
                   "password")
    shown = "; ".join(f"{n}: {a}" for n, a in sorted(answers.items()))
    return _ok(f"no manager answers as the active node ({shown}): the check user {name} could "
               "not be checked; HAProxy's checks will mark a manager up once it does")
