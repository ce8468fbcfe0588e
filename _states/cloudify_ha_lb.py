"""
HAProxy running from a pid file where no service manager runs it (containers, hosts without
systemd). With systemd, use ``service.running`` instead (the loadbalancer SLS picks).

.. code-block:: yaml

    haproxy:
      cloudify_ha_lb.running:
        - name: /etc/haproxy/haproxy.cfg
        - pidfile: /run/haproxy.pid
        - watch:
          - file: /etc/haproxy/haproxy.cfg
"""

import os

from salt.exceptions import CommandExecutionError

__virtualname__ = "cloudify_ha_lb"


def __virtual__():
    if "cloudify_ha_lb.pids" in __salt__:
        return __virtualname__
    return (False, "the cloudify_ha_lb execution module is not available: sync the formula's "
                   "modules (saltutil.sync_all)")


def directory_created(name, mode="0750"):
    """
    The directory ``name`` exists: created with ``mode`` when it is missing; one that exists is
    left as it is (its mode and owner are its package's: the formula manages a directory's
    mode only where it created it).
    """
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    if os.path.isdir(name) and not os.path.islink(name):
        ret.update(result=True, comment=f"{name} exists (left as it is)")
        return ret
    if __opts__["test"]:
        ret.update(result=None, changes={"created": {"old": None, "new": name, "mode": mode}},
                   comment=f"{name} would be created ({mode})")
        return ret
    try:
        __salt__["cloudify_ha_lb.make_directory"](name, int(str(mode), 8))
    except (CommandExecutionError, OSError) as exc:
        ret["comment"] = str(exc)
        return ret
    if not os.path.isdir(name):
        ret["comment"] = f"{name} was not created"
        return ret
    ret.update(result=True, changes={"created": {"old": None, "new": name, "mode": mode}},
               comment=f"{name} created ({mode})")
    return ret


def running(name, pidfile):
    """
    HAProxy runs with the configuration ``name`` and writes its pids to ``pidfile``. Starts it
    when no live process is listed there; the configuration is checked before. A ``pidfile``
    that is not HAProxy's own is refused (``cloudify_ha_lb.pidfile_problem``), in test mode too.
    """
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    try:
        _pidfile_ok(pidfile)
        before = __salt__["cloudify_ha_lb.pids"](pidfile)
        if before:
            ret.update(result=True, comment=f"HAProxy runs (pids {before})")
            return ret
        if __opts__["test"]:
            ret.update(result=None, changes={"started": {"old": None, "new": name}},
                       comment=f"HAProxy would be started with {name}")
            return ret
        after = __salt__["cloudify_ha_lb.start"](name, pidfile)
        if not after:
            ret["comment"] = f"haproxy -D returned 0 but no live process is listed in {pidfile}"
            return ret
        # a watched change in the same run needs no reload on top of this fresh start
        __context__[f"cloudify_ha_lb.started:{pidfile}"] = after
        ret.update(result=True, changes={"started": {"old": None, "new": after}},
                   comment=f"HAProxy started with {name}")
    except CommandExecutionError as exc:
        ret["comment"] = str(exc)
    return ret


def mod_watch(name, pidfile, **kwargs):
    """A watched change (the configuration): a soft reload, or a start when it is not running."""
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    try:
        _pidfile_ok(pidfile)
        before = __salt__["cloudify_ha_lb.pids"](pidfile)
        fresh = __context__.pop(f"cloudify_ha_lb.started:{pidfile}", None)
        if fresh and set(fresh) == set(before):
            ret.update(result=True, comment=f"HAProxy was just started with {name}")
            return ret
        if __opts__["test"]:
            ret.update(result=None, changes={"reloaded": {"old": before, "new": "new process"}},
                       comment=f"HAProxy would be {'reloaded' if before else 'started'}")
            return ret
        after = __salt__["cloudify_ha_lb.start"](name, pidfile, reload=True)
        if not after or set(after) == set(before):
            ret["comment"] = f"HAProxy was not replaced by a new process (pids {before} -> {after})"
            return ret
        ret.update(result=True, changes={"reloaded": {"old": before, "new": after}},
                   comment=f"HAProxy {'reloaded' if before else 'started'} with {name} "
                           "(established connections finish on the old process)")
    except CommandExecutionError as exc:
        ret["comment"] = str(exc)
    return ret


def backend_servers(name, admin_socket, out=(), back=(), state_file=None, inter="2s", fall=2,
                    timeout_connect="5s"):
    """
    The servers the formula takes out of the backend ``name`` stay out of the running HAProxy
    until it puts them back: ``out`` are recorded (``cloudify_ha_lb.drained``: the configuration
    renders them ``disabled``) and then taken out (``disable server``); ``back`` are put back
    (``cloudify_ha_lb.set_server``: no request before its checks had ``fall`` tries, ``inter``
    apart, to mark it down) and then forgotten, where the formula took them out; any other server the
    formula took out is taken out again where the running HAProxy has it in (a restart from an
    older configuration). A server out of the backend for another reason (an operator's
    ``disable server``) is never recorded, so never put back. Where HAProxy does not run, only the
    record changes: the configuration starts it with those servers out. From HAProxy 1.6 the
    server states are then saved to ``state_file`` (the configuration's ``server-state-file``),
    which a reload or a boot loads.
    """
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    out, back = list(out or ()), [s for s in (back or ()) if s not in (out or ())]
    mod = __salt__
    try:
        record = set(mod["cloudify_ha_lb.drained"]().get(name, []))
        running = mod["cloudify_ha_lb.serving"](admin_socket)
        status = _statuses(name, admin_socket) if running else {}
        operators = sorted(s for s in out if s not in record and _out(status.get(s)))
        take = sorted(s for s in out if s not in record and s not in operators)
        give = sorted(s for s in back if s in record)
        again = sorted(s for s in record - set(give)
                       if s in status and not _out(status[s]))
        changes = {key: value for key, value in (("out", take), ("back", give),
                                                 ("out_again", again)) if value}
        notes = ([f"{', '.join(operators)}: out of {name} already, not by this formula (left to "
                  "whoever took it out)"] if operators else [])
        if not running:
            notes.append("HAProxy does not run: its configuration starts it with the recorded "
                         "servers out")
        if not changes:
            ret.update(result=True, comment="; ".join(
                [f"{name}: the servers the formula took out are out "
                 f"({', '.join(sorted(record)) or 'none'})"] + notes))
            return ret
        if __opts__["test"]:
            ret.update(result=None, changes=changes,
                       comment="; ".join([f"{name}: would take out {take or 'none'}, put back "
                                          f"{give or 'none'}, take out again {again or 'none'}"]
                                         + notes))
            return ret
        if take:  # recorded first: a run that dies after this still knows they are its own
            mod["cloudify_ha_lb.record_drained"](name, sorted(record | set(take)))
        for server in take + again:
            if server in status:
                mod["cloudify_ha_lb.set_server"](name, server, False, admin_socket=admin_socket)
        settle = (int(fall) + 1) * mod["cloudify_ha_lb.seconds"](inter) \
            + mod["cloudify_ha_lb.seconds"](timeout_connect)
        for server in give:
            if server in status and _out(status[server]):
                mod["cloudify_ha_lb.set_server"](name, server, True, admin_socket=admin_socket,
                                                 settle=settle)
        if give:  # forgotten last: a run that dies before this puts them back again
            mod["cloudify_ha_lb.record_drained"](name, sorted((record | set(take)) - set(give)))
        problem = _recheck(name, admin_socket, running, set(take + again), set(give))
        if problem:
            ret["comment"] = problem
            return ret
        if running and state_file and mod["cloudify_ha_lb.features"]()["server_state"]:
            mod["cloudify_ha_lb.save_server_state"](state_file, admin_socket=admin_socket)
        ret.update(result=True, changes=changes, comment="; ".join(
            [f"{name}: took out {take or 'none'}, put back {give or 'none'}, took out again "
             f"{again or 'none'}"] + notes))
    except CommandExecutionError as exc:
        ret["comment"] = str(exc)
    return ret


def _statuses(backend, admin_socket):
    return {s["server"]: s["status"] for s in
            __salt__["cloudify_ha_lb.backends"](admin_socket=admin_socket, backend=backend)}


def _out(status):
    """A server in maintenance (HAProxy's MAINT, or MAINT (via ...) for a tracked one)."""
    return bool(status) and status.startswith("MAINT")


def _recheck(name, admin_socket, running, taken, given):
    """Why the record or the running HAProxy does not show the change made, or None."""
    record = set(__salt__["cloudify_ha_lb.drained"]().get(name, []))
    if not taken <= record or record & given:
        return (f"{name}: the record of drained servers ({', '.join(sorted(record)) or 'none'}) "
                "did not take the change")
    if not running:
        return None
    status = _statuses(name, admin_socket)
    wrong = sorted(s for s in taken if s in status and not _out(status[s]))
    wrong += sorted(s for s in given if s in status and _out(status[s]))
    if wrong:
        return (f"{name}: HAProxy accepted the commands but shows "
                f"{', '.join(f'{s} {status[s]}' for s in wrong)}")
    return None


def servers_state_saved(name, admin_socket):
    """
    The running HAProxy's server states saved to ``name`` (its ``server-state-file``, HAProxy 1.6
    and later) right before a reload, which the new process loads: a server taken out stays out
    and one found down gets no traffic before its first check. Nothing where HAProxy does not
    run or is older than 1.6. Meant to run ``onchanges`` of the configuration.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        if not __salt__["cloudify_ha_lb.features"]()["server_state"]:
            ret["comment"] = "this HAProxy keeps no server state across reloads (before 1.6)"
            return ret
        if not __salt__["cloudify_ha_lb.serving"](admin_socket):
            ret["comment"] = "HAProxy does not run: no server state to keep"
            return ret
        if __opts__["test"]:
            ret.update(result=None, changes={"saved": name},
                       comment=f"the server states would be saved to {name}")
            return ret
        __salt__["cloudify_ha_lb.save_server_state"](name, admin_socket=admin_socket)
        ret.update(changes={"saved": name}, comment=f"the server states saved to {name}")
    except CommandExecutionError as exc:
        ret.update(result=False, comment=str(exc))
    return ret


def _pidfile_ok(pidfile):
    problem = __salt__["cloudify_ha_lb.pidfile_problem"](pidfile)
    if problem:
        raise CommandExecutionError(f"{problem}; nothing was started")
