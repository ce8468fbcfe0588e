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


def _pidfile_ok(pidfile):
    problem = __salt__["cloudify_ha_lb.pidfile_problem"](pidfile)
    if problem:
        raise CommandExecutionError(f"{problem}; nothing was started")
