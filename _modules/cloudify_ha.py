"""
Cloudify Manager 4.5.5/4.6 high availability on an external PostgreSQL.

The only code of the cloudify_ha formula that talks to Cloudify: ``cfy_manager``, ``cfy``, the
REST API and the external database. The states in ``_states/cloudify_ha.py`` make every decision.

Settings come from the ``cloudify_ha:clusters`` pillar (see ``pillar.example``): the cluster
whose ``managers`` list names this minion's id, or the one given with ``cluster=<name>``.

Secrets (admin, database and postgres passwords, the client key) never reach a command line:
``cfy_manager`` reads them from ``/etc/cloudify/config.yaml`` (written 0600), ``cfy`` from its
profile (where 4.6's installer stores them on a manager) or, only where the profile holds none,
from the environment (4.6 refuses every command when both hold one); output and errors are
scrubbed before they are returned or logged.
"""

import datetime
import hashlib
import inspect
import ipaddress
import json
import logging
import math
import os
import re
import socket
import ssl
import struct
import tempfile
import time
import types
import zipfile
from concurrent.futures import ThreadPoolExecutor

import salt.utils.files
import salt.utils.path
import salt.utils.yaml
from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "cloudify_ha"

CONFIG_PATH = "/etc/cloudify/config.yaml"
INSTALL_MARKER = "/etc/cloudify/.install"
CLUSTER_MARKER = "/etc/cloudify/cluster"
INSTALL_LOG = "/var/log/cloudify/manager/cfy_manager.log"
RESOURCES = "/opt/manager/resources"
# where a user's data lives under RESOURCES: the file server folders of 4.6's rest-service
# (manager_rest/constants.py FILE_SERVER_*_FOLDER). The RPMs put their own files beside them
# (the agent packages under packages/agents) at the restservice step, before any join, so
# "empty" cannot mean "no file there" (cloudify-4.6.md section 0.2)
USER_DATA_DIRS = ("blueprints", "uploaded-blueprints", "deployments", "snapshots", "plugins",
                  "tenant-resources", "global-resources")
CERT_DIR = "/etc/cloudify_ha"
PROFILES_DIR = os.path.join(os.path.expanduser("~root"), ".cloudify", "profiles")
# nginx in front of 4.6's REST service answers these (an HTML body) while that service is down or
# starting, after every boot (cloudify-4.6.md section 0.3): "starting", not an error
GATEWAY_ERRORS = (502, 503, 504)
# 4.6's maintenance mode (rest-service maintenance.py, constants.py): while activated, every
# endpoint but status, version, license, maintenance and snapshots answers 503 with these codes
MAINTENANCE_ERRORS = ("maintenance_mode_active", "entering_maintenance_mode")
MAINTENANCE_STATES = ("activated", "activating", "deactivated")
LEAVE_MAINTENANCE = "cfy maintenance-mode deactivate"
# 4.6 premium's license check (a before_request hook: cloudify-premium, inferred from
# cloudify-manager 4.6 tests/integration_tests/tests/agentless_tests/test_license.py)
LICENSE_ERRORS = ("missing_cloudify_license", "expired_cloudify_license")
CLI_LOG = os.path.join(os.path.expanduser("~root"), ".cloudify", "logs", "cli.log")
LOCAL_PROFILE = "localhost"
PROFILE_TAG = "!CloudifyProfileContext"
SERVICES = ["queue_service", "composer_service", "manager_service"]
# how much longer than its own --timeout `cfy cluster start` may run before it is stopped: 4.6's
# cfy checks its deadline only before each poll of GET /cluster (3 s apart), and neither that
# GET nor the start's PUT has a timeout (cloudify_rest_client's HTTPClient.default_timeout_sec
# is None; the cluster client's (5, None) applies only once the profile lists a cluster), so
# the command can outlive its deadline by a poll in flight. Stopped at the same second, it
# would be killed just as it reports (cloudify-4.6.md section 0.4)
CLUSTER_START_GRACE = 120


def __virtual__():
    return __virtualname__


# ---- settings ------------------------------------------------------------------------------
def _util(name):
    """One of this formula's _utils files as a module, its classes included. Salt's
    ``__utils__`` maps each FUNCTION of a _utils file (as "<file>.<function>"), never the file or
    its classes (RestError, Endpoint): the globals of any of its functions are the file's
    namespace. The anchor is one function each file is known to have."""
    anchor = {"cloudify_ha_pillar": "plan", "cloudify_ha_rest": "request"}[name]
    return types.SimpleNamespace(**__utils__[f"{name}.{anchor}"].__globals__)


def _pillar_util():
    return _util("cloudify_ha_pillar")


def _rest():
    return _util("cloudify_ha_rest")


def _pillar(key, default=None):
    """A pillar value as plain data, on every Salt: ``pillar.get`` masks what it returns outside
    templates from 3008 on (only 3008 has its ``unmask``); the loaded pillar (``__pillar__``,
    what ``pillar.get`` reads) holds the plain values on every version."""
    return _pillar_util().lookup(__pillar__, key, default)


def _settings(cluster=None, need_manager=True):
    """(cluster settings, this minion's manager entry or None)."""
    pillar = _pillar("cloudify_ha", {}) or {}
    util = _pillar_util()
    settings, manager = util.find_manager(pillar, __opts__["id"], cluster)
    if settings is None and cluster is not None:
        raw = (pillar.get("clusters") or {}).get(cluster)
        if raw is not None:
            settings = util.cluster_settings(cluster, raw)
    if settings is None:
        where = f"cloudify_ha:clusters:{cluster}" if cluster else "cloudify_ha:clusters"
        raise SaltInvocationError(
            f"no cluster in pillar {where} lists minion '{__opts__['id']}' as a manager"
            + ("" if cluster else "; pass cluster=<name> or add it to a cluster's managers"))
    if need_manager and manager is None:
        raise SaltInvocationError(
            f"minion '{__opts__['id']}' is not a manager of cluster '{settings['name']}' "
            f"(cloudify_ha:clusters:{settings['name']}:managers)")
    return settings, manager


def _wait(settings, key):
    """The cluster's ``waits:<key>`` in seconds (pillar, over the schema's default), refused
    with the key's bounds when it is not one (the SLS and the orchestration refuse such a
    pillar before anything runs; a function called by hand gets this)."""
    least, most, what = _pillar_util().WAITS[key]
    waits = settings.get("waits")
    value = waits.get(key) if isinstance(waits, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise SaltInvocationError(
            f"cloudify_ha:clusters:{settings['name']}:waits:{key}: {value!r} must be a whole "
            f"number of seconds from {least} to {most}: how long the formula waits {what}")
    return value


def _secrets(settings):
    return _pillar_util().secrets_in(settings)


def _scrub(text, settings):
    return _pillar_util().scrub(text, _secrets(settings))


def _write_private(path, content, mode=0o600):
    """Write a file atomically, created with `mode` before any byte is written; True if changed."""
    try:
        with salt.utils.files.fopen(path, "r") as fh:
            if fh.read() == content and (os.stat(path).st_mode & 0o777) == mode:
                return False
    except OSError:
        pass
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".cloudify_ha-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def _cert_paths(settings):
    """The database CA and client certificate files of this cluster, written from pillar."""
    db = settings["database"]
    base = os.path.join(CERT_DIR, settings["name"])
    paths = {"ca": os.path.join(base, "db-ca.pem"), "ca_key": os.path.join(base, "db-ca.key")}
    _write_private(paths["ca"], db["ca_cert"], 0o644)
    _write_private(paths["ca_key"], db["ca_key"], 0o600)
    if db.get("client_cert"):  # required by the pillar's validation; else 4.6's cp fails
        paths["cert"] = os.path.join(base, "db-client.pem")
        paths["key"] = os.path.join(base, "db-client.key")
        _write_private(paths["cert"], db["client_cert"], 0o644)
        _write_private(paths["key"], db["client_key"], 0o600)
    if settings["rest"].get("ca_cert"):
        paths["rest_ca"] = os.path.join(base, "rest-ca.pem")
        _write_private(paths["rest_ca"], settings["rest"]["ca_cert"], 0o644)
    return paths


def _rest_ca(settings):
    """The REST CA file (REST SSL with rest:ca_cert), written from pillar; None otherwise."""
    rest = settings["rest"]
    if not (rest.get("ssl") and rest.get("ca_cert")):
        return None
    path = os.path.join(CERT_DIR, settings["name"], "rest-ca.pem")
    _write_private(path, rest["ca_cert"], 0o644)
    return path


def _endpoint(settings, host):
    return _rest().Endpoint(host, settings["admin"]["username"], settings["admin"]["password"],
                               settings["admin"]["tenant"], settings["rest"].get("ssl"),
                               _rest_ca(settings))


def _call(settings, host, method, path, body=None, timeout=None, retries=None, absent=None,
          conflict=None, data=None):
    """A REST call; RestError/Unreachable become CommandExecutionError (scrubbed). With
    ``absent``, a 404 answers that value instead; with ``conflict``, a 409."""
    rest = _rest()
    try:
        if data is not None:
            return rest.request(_endpoint(settings, host), method, path, timeout=timeout,
                                retries=retries, data=data)
        return rest.request(_endpoint(settings, host), method, path, body=body,
                               timeout=timeout, retries=retries)
    except rest.RestError as exc:
        if absent is not None and exc.status == 404:
            return absent
        if conflict is not None and exc.status == 409:
            return conflict
        if exc.status == 401:
            raise CommandExecutionError(
                f"the manager at {host} rejected the admin credentials (401): check "
                f"cloudify_ha:clusters:{settings['name']}:admin:username/password") from None
        if exc.status == 400 and exc.error_code in LICENSE_ERRORS:
            raise CommandExecutionError(
                f"the manager at {host} refused {method} {path} for want of a license "
                f"({exc.error_code}): 4.6 answers only status, version, license, tokens, "
                "config, cluster and tenants until one is uploaded. Put the license file's text "
                f"in cloudify_ha:clusters:{settings['name']}:license and re-run (or `cfy "
                "license upload <file>` on the active node); nothing was changed") from None
        if exc.status == 503 and exc.error_code in MAINTENANCE_ERRORS:
            raise CommandExecutionError(
                f"the manager at {host} is in maintenance mode: {method} {path} answered 503 "
                f"{exc.error_code}; nothing was changed. Leave it with '{LEAVE_MAINTENANCE}' on "
                "the active node, then re-run") from None
        raise CommandExecutionError(_scrub(f"{method} {path} on {host} failed: {exc}",
                                           settings)) from None
    except rest.Unreachable as exc:
        raise CommandExecutionError(f"{method} {path}: nothing answered at {host} ({exc})") from None


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# emptied in the environment of every command run (Salt adds `env` to the minion's own): cfy
# and the installer send the admin's credentials with every REST call, and a proxy the minion's
# environment names would get them (an empty value is no proxy to Python 2's and 3's urllib)
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                   "ALL_PROXY")


def _run(argv, settings, env=None, timeout=None, stdin=None):
    """Run a Cloudify command: never through a shell, never logged, secrets only in env."""
    binary = salt.utils.path.which(argv[0])
    if binary is None:
        raise CommandExecutionError(f"'{argv[0]}' is not installed on this minion")
    full_env = dict.fromkeys(PROXY_VARIABLES, "")
    full_env["HOME"] = os.path.expanduser("~root")
    full_env.update(env or {})
    result = __salt__["cmd.run_all"](
        [binary] + list(argv[1:]), python_shell=False, output_loglevel="quiet",
        ignore_retcode=True, env=full_env, timeout=timeout, reset_system_locale=False,
        stdin=stdin)
    for stream in ("stdout", "stderr"):  # 4.6's installer colours its console lines
        result[stream] = _scrub(ANSI_ESCAPE.sub("", result.get(stream) or ""), settings)
    return result


def _cfy(args, settings, timeout=120, lines=5):
    """Run ``cfy <args>`` (credentials as _cfy_env gives them, never on argv); its result, or
    CommandExecutionError naming the command, its exit code and the last lines it printed."""
    result = _run(["cfy", *args], settings, env=_cfy_env(settings), timeout=timeout)
    if result["retcode"] != 0:
        raise CommandExecutionError(
            f"cfy {' '.join(args[:2])} failed (exit {result['retcode']}): "
            f"{_tail(result['stdout'] + result['stderr'], lines)}")
    return result


def _active_host(settings, active=None):
    """The address to ask: `active` when the caller knows it, else the cluster's active node."""
    return active or active_node(cluster=settings["name"])["host"]


def _cfy_env(settings):
    """The ``CLOUDIFY_*`` credentials for ``cfy``, each only where the ACTIVE profile holds no
    value of its own: real 4.6 refuses every command, with exit 1, when a value is in the
    profile and in the environment (cloudify-4.6.md section 0.1). A manager's profile holds all
    three (the installer stores them), so there ``cfy`` gets none."""
    admin = settings["admin"]
    active = active_profile()
    context = (_read_profile(active) if active else None) or {}
    env = {}
    for key, variable, value in (("manager_username", "CLOUDIFY_USERNAME", admin["username"]),
                                 ("manager_password", "CLOUDIFY_PASSWORD", admin["password"]),
                                 ("manager_tenant", "CLOUDIFY_TENANT", admin["tenant"])):
        if not context.get(key):
            env[variable] = value
    return env


def _tail(text, lines=15):
    return "\n".join((text or "").strip().splitlines()[-lines:])


def _install_log_tail(settings, lines=25):
    """The relevant end of cfy_manager.log: 4.6 hides join failures behind a bare 400."""
    try:
        with salt.utils.files.fopen(INSTALL_LOG, "r") as fh:
            content = fh.read().splitlines()
    except OSError:
        content = []
    if not content:  # the formula makes it (empty) before the installer runs
        return "(no installer log)"
    start = 0  # this run's first line: 4.6 logs validation errors before its first component
    for index, line in enumerate(content):
        if "Installing desired components" in line or "Installing Cloudify Manager" in line:
            start = index
    relevant = content[start:]
    errors = [line for line in relevant if " ERROR " in line][-lines:]
    tail = [line for line in relevant[-lines:] if line not in errors]
    room = lines - len(errors)  # the errors first, then as much of the end as fits
    picked = errors + (tail[-room:] if room > 0 else [])
    return _scrub("\n".join(picked), settings)


# ---- reading the node and the cluster ---------------------------------------------------------
def _package(settings=None):
    return _pillar("cloudify_ha:lookup:installer_package", "cloudify-manager-install")


def node_state(cluster=None, as_check_user=False):
    """
    What this manager host is, from its local markers and its local REST answer (asked as the
    admin, or with ``as_check_user`` as the load balancer's check user where the cluster has
    one: the beacon asks every 30 s, which need not be the admin).

    absent: the installer package is not installed; package_installed: no
    /etc/cloudify/.install and no manager service answering; half_installed: no
    /etc/cloudify/.install but its REST port answers (an install that failed after its nginx
    step: 4.6 leaves nginx running, answering 502 with nothing behind it, and from its
    restservice step on the manager's services as a standalone manager); installed: a standalone
    manager (not clustered); leader: the active node; replica; removed: removed from its cluster
    (must be torn down to rejoin); down: clustered, but its REST service does not answer.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.node_state
    """
    settings, manager = _settings(cluster)
    checker = as_check_user and (settings.get("loadbalancer") or {}).get("check_password")
    endpoint = (_check_endpoint if checker else _endpoint)(settings, manager["private_ip"])
    if not __salt__["pkg.version"](_package()):
        return "absent"
    rest = _rest()
    if not os.path.exists(INSTALL_MARKER):
        # any HTTP answer means nginx runs: an install went past its nginx step (a 502: nothing
        # behind nginx yet; a 200: its services, past restservice), cloudify-4.6.md section 0.4
        answer = _probe_status(rest, endpoint, 2)
        return "package_installed" if answer == "unreachable" else "half_installed"
    if not os.path.exists(CLUSTER_MARKER):
        return "installed"
    try:
        rest.request(endpoint, "GET", "/status", timeout=(2, 10), retries=1)
        return "leader"
    except rest.RestError as exc:
        if exc.status in GATEWAY_ERRORS:  # nginx is up, the REST service behind it is not yet
            return "down"
        if exc.error_code == "not_cluster_master":
            return "replica"
        if exc.error_code == "removed_from_cluster":
            return "removed"
        if exc.status == 401:
            key = "loadbalancer:check_password" if checker else "admin:password"
            raise CommandExecutionError(
                f"the local manager rejected the {'check user' if checker else 'admin'} "
                f"credentials (401): check cloudify_ha:clusters:{settings['name']}:{key}"
            ) from None
        raise CommandExecutionError(_scrub(f"the local manager answered {exc}", settings)) from None
    except rest.Unreachable:
        return "down"


def _status_of(settings, host, timeout):
    return _probe_status(_rest(), _endpoint(settings, host), timeout)


def _probe_status(rest, endpoint, timeout):
    """One bounded GET /status: active, unauthorized, an error code, or unreachable.

    Safe in a worker thread: it uses no loader dunder (those live in the caller's context).
    """
    try:
        rest.request(endpoint, "GET", "/status", timeout=(timeout, timeout * 3), retries=0)
        return "active"
    except rest.RestError as exc:
        if exc.status == 401:
            return "unauthorized"
        if exc.status in GATEWAY_ERRORS:
            return f"starting (nginx answers {exc.status} while the REST service starts)"
        return exc.error_code or f"http {exc.status}"
    except rest.Unreachable:
        return "unreachable"
    except Exception as exc:  # pylint: disable=broad-except
        return f"error: {exc.__class__.__name__}"


def _probe_initialized(rest, endpoint, timeout):
    """One bounded GET /cluster: True for a clustered node, False for a standalone manager,
    None when it cannot tell (safe in a worker thread, as _probe_status)."""
    try:
        answer = rest.request(endpoint, "GET", "/cluster", timeout=(timeout, timeout * 3),
                              retries=0)
        return bool((answer or {}).get("initialized"))
    except Exception:  # pylint: disable=broad-except
        return None


def active_node(candidates=None, cluster=None, timeout=3, required=True, others=False,
                wait=None):
    """
    The manager answering ``GET /api/v3.1/status`` with 200 among the candidates, polled in
    parallel with bounded timeouts. Candidates default to every manager of the cluster in
    pillar; ``others=True``: every one but this minion's own (a host whose install failed
    part-way answers for itself: nginx's 502, or its services as a standalone manager). Raises
    when none answers, and when two clustered nodes do (split brain), naming them; a
    standalone manager beside a clustered one is not the active node.

    During a failover 4.6 has no active node for tens of seconds (the new one starts its
    services first): while no manager answers as the active node but some answer as replicas
    (not_cluster_master) or as starting (nginx's 502), the managers are asked again, for
    ``wait`` seconds at most (default: the cluster's ``waits:active_node`` in pillar; 0 asks
    once). A split brain, credentials every manager refuses, standalone managers only, or no
    manager answering at all are answered at once.

    Returns ``{"name": <node name or None>, "host": <address>}``, with ``waited`` (seconds)
    when it waited for a failover; with ``required=False``, None when no node answers (a
    cluster that does not run yet) instead of an error.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr2 cloudify_ha.active_node
        salt cfy-mgr2 cloudify_ha.active_node candidates='[10.0.0.11, 10.0.0.12]'
        salt cfy-mgr2 cloudify_ha.active_node wait=0
    """
    settings, me = _settings(cluster, need_manager=False)
    names = {m["private_ip"]: m["name"] for m in settings["managers"]}
    hosts = list(candidates) if candidates else list(names)
    if others and me:
        hosts = [h for h in hosts if h != me["private_ip"]]
        if not hosts and not required:
            return None
    if not hosts:
        raise SaltInvocationError("no candidate managers to ask")
    wait = _wait(settings, "active_node") if wait is None else wait
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or wait < 0:
        raise SaltInvocationError(f"wait: {wait!r} must be a number of seconds, 0 or more")
    start = time.monotonic()
    deadline, pause, again = start + wait, 0.5, False
    while True:
        found, answers = _find_active(settings, hosts, names, timeout, required)
        if found is not BETWEEN:
            if found and again:
                waited = round(time.monotonic() - start)
                log.info("cloudify_ha: %s answered as the active node of %s after %ss",
                         found["host"], settings["name"], waited)
                return dict(found, waited=waited)
            return found
        if time.monotonic() >= deadline:
            break
        if not again:
            again = True
            log.info("cloudify_ha: no active node in cluster %s yet (a failover?); asking again "
                     "for up to %ss", settings["name"], wait)
        time.sleep(min(pause, max(deadline - time.monotonic(), 0)))
        pause = min(pause * 2, 4.0)
    described = "; ".join(f"{names.get(h, h)} ({h}): {a}" for h, a in answers.items())
    after = f" (still after waiting {wait}s for a failover)" if wait else ""
    raise CommandExecutionError(
        f"no active node in cluster '{settings['name']}'{after}: {described}")


# the answers of a node while the cluster is between active nodes: a replica (4.6's failover:
# no node is active until the new one has started its services), or nginx's 502 while its REST
# service starts (a boot)
BETWEEN_ANSWERS = ("not_cluster_master", "starting")
BETWEEN = object()  # _find_active's verdict then: ask again


def _find_active(settings, hosts, names, timeout, required):
    """One round of active_node's poll: (the active node, None when nobody is home and none is
    required, or BETWEEN when replicas or starting nodes answer and no active one; each
    host's answer); raises for every other outcome."""
    rest = _rest()
    endpoints = [_endpoint(settings, h) for h in hosts]
    with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
        answers = dict(zip(hosts, pool.map(lambda e: _probe_status(rest, e, timeout), endpoints)))
    active = [h for h, a in answers.items() if a == "active"]
    standalone = []
    if len(active) > 1:
        # a standalone manager answers /status too (a join that failed part-way leaves one
        # running: cloudify-4.6.md section 0.2); only a clustered one is the cluster's active node
        # endpoints built here: a worker thread has no loader dunder (__utils__)
        asked = [_endpoint(settings, h) for h in active]
        with ThreadPoolExecutor(max_workers=len(active)) as pool:
            clustered = dict(zip(active, pool.map(
                lambda e: _probe_initialized(rest, e, timeout), asked)))
        standalone = [h for h in active if clustered[h] is False]
        if len(standalone) < len(active):
            active = [h for h in active if clustered[h] is not False]
    if len(active) == 1:
        return {"name": names.get(active[0]), "host": active[0]}, answers
    described = "; ".join(f"{names.get(h, h)} ({h}): {a}" for h, a in answers.items())
    if not active:
        if not required and all(a == "unreachable" for a in answers.values()):
            return None, answers
        if all(a == "unauthorized" for a in answers.values()):
            raise CommandExecutionError(
                "every manager rejected the admin credentials (401): check "
                f"cloudify_ha:clusters:{settings['name']}:admin:password")
        if any(str(a).startswith(BETWEEN_ANSWERS) for a in answers.values()):
            return BETWEEN, answers
        raise CommandExecutionError(f"no active node in cluster '{settings['name']}': {described}")
    both = " and ".join(f"{names.get(h, h)} ({h})" for h in active)
    if standalone:  # none of them is clustered
        raise CommandExecutionError(
            f"no cluster runs in '{settings['name']}' but {both} answer as standalone "
            "managers: one is the pillar's leader before its cluster start, another an install "
            "that failed part-way or a manager of its own; nothing was changed")
    raise CommandExecutionError(
        f"split brain in cluster '{settings['name']}': {both} both answer as the active node "
        "(4.6's active minority mode after a network partition: the node with the most recent "
        "database wins once it heals); nothing was changed: restore the network between the "
        "managers, then re-run")


def _normalise(node):
    state = "leader" if node.get("master") else ("replica" if node.get("online") else "offline")
    return {"name": node.get("name"), "host_ip": node.get("host_ip"), "state": state,
            "public_ip": node.get("public_ip") or None,
            "online": bool(node.get("online")), "master": bool(node.get("master")),
            "initialized": bool(node.get("initialized")), "database_ip": node.get("database_ip"),
            "checks": node.get("checks") or {}}


def cluster_status(active=None, cluster=None):
    """
    The active node's ``GET /api/v3.1/cluster``: ``{"initialized": bool, ...}``.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.cluster_status
    """
    settings, _ = _settings(cluster, need_manager=False)
    host = _active_host(settings, active)
    # only what 4.6's public client reads (ClusterState: initialized, logs, error): another
    # field is a 400 no_such_include_field_error (cloudify-4.6.md section 0.4)
    return _call(settings, host, "GET", "/cluster?_include=initialized")


def maintenance_mode(cluster=None):
    """
    This manager's maintenance mode, as its own REST service answers ``GET /maintenance``
    (which 4.6 serves while the mode is on): ``status`` (activated, activating or
    deactivated), ``activated_at``, ``requested_by``, and the node's ``name`` and ``host``,
    when it answers as the active node or a standalone manager; ``status`` None when it does
    not (a replica answers every call with not_cluster_master; nothing answers; a minion that
    is no manager). The mode is each node's own file (4.6: never replicated): the cluster's is
    its active node's. Never raises: the orchestrations ask every manager this instead of a
    ping.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.maintenance_mode
    """
    try:
        settings, manager = _settings(cluster, need_manager=False)
    except SaltInvocationError:
        return {"status": None}
    if manager is None:
        return {"status": None}
    out = {"status": None, "name": manager["name"], "host": manager["private_ip"]}
    rest = _rest()
    try:
        answer = rest.request(_endpoint(settings, manager["private_ip"]), "GET", "/maintenance",
                              timeout=(2, 6), retries=0)
    except Exception:  # pylint: disable=broad-except
        return out  # not the active node, or not up: it has no say
    answer = answer if isinstance(answer, dict) else {}
    if answer.get("status") in MAINTENANCE_STATES:
        out.update(status=answer["status"],
                   activated_at=str(answer.get("activated_at") or ""),
                   requested_by=str(answer.get("requested_by") or ""))
    return out


def cluster_nodes(active=None, cluster=None):
    """
    The cluster's nodes as the active node lists them: name, host_ip, state
    (leader/replica/offline), online, master, initialized, database_ip, checks.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.cluster_nodes
    """
    settings, _ = _settings(cluster, need_manager=False)
    host = _active_host(settings, active)
    # 4.6 answers 404 "if the cluster isn't created yet" (cloudify-4.6.md section 0.3): no nodes
    answer = _call(settings, host, "GET", "/cluster/nodes", absent={"items": []})
    return [_normalise(n) for n in (answer or {}).get("items", [])]


def resources():
    """
    A user's files under /opt/manager/resources on this host: blueprints, uploaded blueprints,
    deployments, snapshots, plugins, tenant and global resources. The files the manager's own
    packages install there (the agent packages) are not counted.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr3 cloudify_ha.resources
    """
    found = []
    for top in USER_DATA_DIRS:
        for root, _dirs, files in os.walk(os.path.join(RESOURCES, top)):
            found += [os.path.relpath(os.path.join(root, f), RESOURCES) for f in files]
    return sorted(found)


def is_empty():
    """
    True when this host holds no Cloudify resources (blueprints, deployments, plugins): only
    an empty manager may join a cluster.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr3 cloudify_ha.is_empty
    """
    return not resources()


def _psql(settings, dbname, sql, **variables):
    """Rows of one query as postgres. The SQL goes in on stdin, where psql interpolates
    ``variables`` (``:'name'``, quoted by psql as SQL literals): no value is spliced into SQL."""
    db = settings["database"]
    paths = _cert_paths(settings)
    conninfo = (f"host={db['host']} port={db['port']} dbname={dbname} user=postgres "
                f"sslmode=verify-full sslrootcert={paths['ca']} connect_timeout=10")
    if "cert" in paths:
        conninfo += f" sslcert={paths['cert']} sslkey={paths['key']}"
    argv = ["psql", "-XAtq", "-v", "ON_ERROR_STOP=1"]
    for name, value in sorted(variables.items()):
        argv += ["-v", f"{name}={value}"]
    result = _run(argv + ["-d", conninfo], settings, env={"PGPASSWORD": db["postgres_password"]},
                  timeout=60, stdin=sql + "\n")
    if result["retcode"] != 0:
        said = _tail(result["stderr"], 3)
        if NAME_MISMATCH.search(said):
            raise CommandExecutionError(_name_mismatch(settings, _psql_version(settings), said))
        raise CommandExecutionError(
            f"could not query the external database at {db['host']}:{db['port']} as postgres: "
            f"{said}")
    return [line.split("|") for line in result["stdout"].splitlines() if line]


# ---- the database's certificate, as libpq checks its name ----------------------------------
# psql (libpq) with sslmode=verify-full checks that the database's certificate names the host it
# connects to (database:host), and each generation reads other names (fe-secure-openssl.c):
# before 9.5 the subject's CN only; from 9.5 the subjectAltName's DNS entries (an address in
# one compared as text), the CN only where there is no DNS entry; from 15 (commit c1932e5,
# "libpq: Allow IP address SANs in server certificates") IP entries too, the CN only where no
# entry is of the host's kind. EL7's own psql is 9.2: an address in an IP entry only fails
# there. Its refusals: 9.2's "server common name ... does not match host name", 9.5's "server
# certificate for ... does not match host name", or no name at all.
NAME_MISMATCH = re.compile(r"does not match host name|could not get server's host name from "
                           r"server certificate")
# PostgreSQL's SSLRequest (protocol-flow.sgml, "SSL Session Encryption"): length 8 and the code
# 1234.5679; the server answers one byte, S to go on with a TLS handshake, N to refuse SSL
SSL_REQUEST = struct.pack("!II", 8, 80877103)
LIBPQ_GENERATIONS = (("before_9_5", (0,)), ("9_5_to_14", (9, 5)), ("15_on", (15,)))


def _psql_version(settings):
    """The local psql's version as a tuple, (9, 2) for 9.2.24, (15, 18) for 15.18; None when
    psql does not say (the query that follows says what is wrong)."""
    result = _run(["psql", "--version"], settings, timeout=30)
    found = re.search(r"\b([0-9]+)\.([0-9]+)", result["stdout"] or "")
    if result["retcode"] != 0 or not found:
        log.debug("psql --version answered %r (exit %s)", result["stdout"], result["retcode"])
        return None
    return int(found.group(1)), int(found.group(2))


def _host_name_matches(pattern, host):
    """libpq's comparison of one name from a certificate: case-insensitive, whole, or a
    leading '*.' that stands for one label."""
    pattern, host = pattern.lower(), host.lower()
    if pattern == host:
        return True
    if len(pattern) < 3 or not pattern.startswith("*.") or len(pattern) > len(host):
        return False
    return host.endswith(pattern[1:]) and "." not in host[:len(host) - len(pattern) + 1]


def _libpq_accepts(version, host, cn, dns_names, ip_addresses):
    """Whether a libpq of ``version`` takes a certificate with these names for ``host``."""
    if version < (9, 5):
        return cn is not None and _host_name_matches(cn, host)
    if version < (15,):
        if dns_names:
            return any(_host_name_matches(name, host) for name in dns_names)
        return cn is not None and _host_name_matches(cn, host)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if any(_host_name_matches(name, host) for name in dns_names):
        return True
    if address is not None and address in ip_addresses:
        return True
    own_kind = ip_addresses if address is not None else dns_names
    return not own_kind and cn is not None and _host_name_matches(cn, host)


def _server_certificate(host, port, ca_cert, timeout):
    """The database server's certificate (as ssl.getpeercert gives it), read after PostgreSQL's
    SSLRequest and verified against ``ca_cert`` (PEM), as psql's verify-full verifies it; its
    name is checked by the caller, as each libpq checks it."""
    context = ssl.create_default_context(cadata=ca_cert)
    context.check_hostname = False
    # OpenSSL's own chain rules, as libpq has them (Python 3.13 adds stricter ones by default)
    context.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
    where = f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(SSL_REQUEST)
            answer = sock.recv(1)
            if answer != b"S":
                raise CommandExecutionError(
                    f"the external database at {where} does not take SSL (it answered "
                    f"{answer!r} to PostgreSQL's SSLRequest): 4.6 needs SSL to its database")
            with context.wrap_socket(sock, server_hostname=host) as tls:
                return tls.getpeercert()
    except ssl.SSLCertVerificationError as exc:
        raise CommandExecutionError(
            f"the certificate of the external database at {where} is not signed by "
            f"database:ca_cert ({exc.verify_message}): give the CA that issued it") from exc
    except (OSError, ssl.SSLError) as exc:
        raise CommandExecutionError(f"could not read the certificate of the external database "
                                    f"at {where}: {exc}") from exc


def database_certificate(cluster=None, timeout=10):
    """
    The external database's certificate as the managers' psql meets it: read over PostgreSQL's
    own SSLRequest and verified against the pillar's ``database:ca_cert``. Returns its subject
    CN, the subjectAltName's DNS names and IP addresses, its issuer CN, ``not_before``,
    ``not_after`` and ``days_left``, and whether each generation of libpq takes it for
    ``database:host`` (``libpq_accepts``: ``before_9_5`` reads only the CN, as EL7's psql 9.2
    does; ``9_5_to_14`` the DNS names, or the CN where there is none; ``15_on`` IP addresses
    too).

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.database_certificate
    """
    settings, _ = _settings(cluster, need_manager=False)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or \
            not 0 < timeout <= 300:
        raise SaltInvocationError(f"timeout: {timeout!r} must be a number of seconds from 1 "
                                  "to 300")
    db = settings["database"]
    cert = _server_certificate(db["host"], db["port"], db["ca_cert"], timeout)

    def first_cn(name):
        return next((value for rdn in name for key, value in rdn if key == "commonName"), None)

    sans = cert.get("subjectAltName") or ()
    dns_names = [value for kind, value in sans if kind == "DNS"]
    ip_addresses = [ipaddress.ip_address(value.strip()) for kind, value in sans
                    if kind == "IP Address"]
    cn = first_cn(cert.get("subject") or ())
    not_after = datetime.datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]),
                                                datetime.timezone.utc)
    not_before = datetime.datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notBefore"]),
                                                 datetime.timezone.utc)
    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "host": f"{db['host']}:{db['port']}", "subject_cn": cn, "dns_names": dns_names,
        "ip_addresses": [str(address) for address in ip_addresses],
        "issuer_cn": first_cn(cert.get("issuer") or ()),
        "not_before": not_before.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "days_left": (not_after - now).days,
        "libpq_accepts": {name: _libpq_accepts(version, str(db["host"]), cn, dns_names,
                                               ip_addresses)
                          for name, version in LIBPQ_GENERATIONS},
    }


def _name_mismatch(settings, version, said=None, cert=None):
    """What to fix when psql refuses the database's certificate for its name: the rule of each
    libpq, this host's psql, the names the certificate carries (read again when not given and
    readable) and what psql said."""
    db = settings["database"]
    host = str(db["host"])
    if cert is None:
        try:
            cert = database_certificate(settings["name"])
        except (CommandExecutionError, SaltInvocationError) as exc:
            log.debug("the database's certificate could not be read again: %s", exc)
    try:
        ipaddress.ip_address(host)
        kind = "IP"
    except ValueError:
        kind = "DNS"
    names = ""
    if cert is not None:
        sans = [f"DNS:{name}" for name in cert["dns_names"]] + \
            [f"IP:{address}" for address in cert["ip_addresses"]]
        names = (f" It names CN {_pillar_util().q(cert['subject_cn'])} and subjectAltName "
                 f"{_pillar_util().q(', '.join(sans)) if sans else 'none'}.")
    return (f"could not query the external database at {host}:{db['port']} as postgres: its "
            f"certificate does not name database:host {host} the way psql "
            f"{'.'.join(map(str, version)) if version else '(version unknown)'} on this host "
            "checks it. The certificate must name "
            "database:host: as its CN for libpq before 9.5 (EL7's psql 9.2 reads nothing "
            "else), in its subjectAltName for 9.5 and later (9.5 to 14 read only DNS entries, "
            "and the CN where there is none; IP entries count from 15 on)." + names +
            f" Re-issue it with CN={host} and subjectAltName {kind}:{host} (every psql takes "
            "that), or set database:host to a name it carries"
            + (f" (psql said: {said})" if said else ""))


def database_holds_data(cluster=None):
    """
    Whether the external database server holds a Cloudify cluster's data, which a non-join
    ``cfy_manager install`` would drop: the pillar's ``database:name`` (``cloudify_db`` by
    default), ``stage`` and ``composer`` (the installer drops all three), any of them with
    tables. Returns ``holds_data``, the databases present, the tables of each (``data``), the
    tables of the configured one (``tables``) and row counts of its main tables (``rows``).

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.database_holds_data
    """
    settings, _ = _settings(cluster, need_manager=False)
    version = _psql_version(settings)
    if version is not None and version < (9, 5):
        # this psql reads only the certificate's CN: say so before it refuses without saying
        # why (a certificate that cannot be read here is left to psql, which says why)
        try:
            cert = database_certificate(settings["name"])
        except (CommandExecutionError, SaltInvocationError) as exc:
            log.debug("the database's certificate could not be read: %s", exc)
        else:
            if not cert["libpq_accepts"]["before_9_5"]:
                raise CommandExecutionError(_name_mismatch(settings, version, cert=cert))
    configured = settings["database"]["name"]
    # validated as a plain PostgreSQL name (cloudify_ha_pillar.PG_IDENT_RE): no comma in it
    wanted = [configured] + [n for n in ("stage", "composer") if n != configured]
    present = {r[0] for r in _psql(
        settings, "postgres",
        "SELECT datname FROM pg_database WHERE datname = ANY (string_to_array(:'names', ','))",
        names=",".join(wanted))}
    result = {"holds_data": False, "databases": sorted(present), "name": configured,
              "tables": 0, "data": {}, "rows": {},
              "host": f"{settings['database']['host']}:{settings['database']['port']}"}
    for dbname in (n for n in wanted if n in present):
        tables = [r[0] for r in _psql(settings, dbname, "SELECT table_name FROM "
                                      "information_schema.tables WHERE table_schema = 'public'")]
        result["data"][dbname] = len(tables)
        if dbname == configured:
            result["tables"] = len(tables)
            for table in ("blueprints", "deployments", "users"):  # fixed names, never input
                if table in tables:
                    result["rows"][table] = int(_psql(settings, dbname,
                                                      f"SELECT count(*) FROM {table}")[0][0])
    result["holds_data"] = any(result["data"].values())
    return result


# ---- acting ----------------------------------------------------------------------------------
def _manager_config(settings, manager, joining=None):
    """The 4.6 config.yaml for this manager (install-time join settings when `joining` gives
    the active node's and the database's addresses)."""
    db = settings["database"]
    paths = _cert_paths(settings)
    host = db["host"] if joining is None else joining["database_ip"]
    config = {
        "manager": {
            "private_ip": manager["private_ip"],
            "public_ip": manager["public_ip"],
            "security": {"ssl_enabled": bool(settings["rest"].get("ssl")),
                         "admin_username": settings["admin"]["username"],
                         "admin_password": settings["admin"]["password"]},
        },
        "postgresql_client": {
            "host": host,
            "db_name": db["name"],
            "username": db["username"],
            "password": db["password"],
            "postgres_password": db["postgres_password"],
            "ssl_enabled": True,
        },
        # 4.6: ca_cert_path is the manager's internal CA (and the database's sslrootcert), which
        # it refuses without ca_key_path; the client files are copied whenever SSL is on
        "ssl_inputs": {"ca_cert_path": paths["ca"], "ca_key_path": paths["ca_key"],
                       "postgresql_client_cert_path": paths.get("cert", ""),
                       "postgresql_client_key_path": paths.get("key", "")},
        "services_to_install": list(SERVICES),
    }
    if joining is not None:
        config["cluster"] = {"master_ip": joining["master_ip"], "node_name": manager["name"],
                             "host_ip": manager["private_ip"]}
    return config


def _leaky_logs():
    """The logs where 4.6 writes secrets (cloudify-4.6.md section 0.4), each with the mode of
    the directory the formula makes when it is missing: cfy_manager.log gets the `Running:
    [...]` line of create_default_db.sh with the database password (and a failed command's
    text), cli.log cfy's "Setting password to `<admin password>`", both made 0644 by Python's
    logging."""
    return ((INSTALL_LOG, 0o755), (CLI_LOG, 0o700))


def _open_logs_privately():
    """Each leaky log made (empty) 0600 before the installer runs: 4.6's logger and cfy's open
    it to append (logging.FileHandler, mode 'a') and never chmod it (cfy_manager/logger.py,
    cloudify_cli/logger.py), so it is never readable by others."""
    for path, dir_mode in _leaky_logs():
        os.makedirs(os.path.dirname(path), mode=dir_mode, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)


def _close_logs(settings):
    """After an install, whatever became of it: each leaky log 0600 and every secret this
    cluster has taken out of it, in any form it is written in, every other line kept."""
    util = _pillar_util()
    users = {settings["admin"].get("password"): settings["admin"]["username"],
             settings["database"].get("password"): settings["database"]["username"],
             settings["database"].get("postgres_password"): "postgres"}
    forms = set()
    for secret in _secrets(settings):
        forms |= util.secret_forms(secret, users.get(secret))
    for path, _ in _leaky_logs():
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
        except FileNotFoundError:
            continue
        with os.fdopen(fd, "r+b") as fh:
            os.fchmod(fd, 0o600)
            text = fh.read().decode("utf-8", "surrogateescape")
            clean = util.scrub(text, forms)
            if clean != text:  # in place: the same file, its owner and mode
                fh.seek(0)
                fh.write(clean.encode("utf-8", "surrogateescape"))
                fh.truncate()


def _install(settings, manager, joining=None):
    config = _manager_config(settings, manager, joining)
    _write_private(CONFIG_PATH, salt.utils.yaml.safe_dump(config, default_flow_style=False))
    timeout = _wait(settings, "install")
    _open_logs_privately()
    try:
        result = _run(["cfy_manager", "install"], settings, timeout=timeout)
    finally:
        os.chmod(CONFIG_PATH, 0o600)
        _close_logs(settings)
    if result["retcode"] != 0:
        console = _tail(result["stderr"] or result["stdout"], 3)
        raise CommandExecutionError(
            f"cfy_manager install failed (exit {result['retcode']}): {console}\n"
            f"--- {INSTALL_LOG} (relevant lines) ---\n{_install_log_tail(settings)}")
    return {"retcode": 0, "output": _tail(result["stdout"], 5)}


def install(cluster=None):
    """
    Install this manager as the cluster's first manager on the external database: a NON-join
    install, which drops and recreates ``cloudify_db``, ``stage`` and ``composer``. The state
    ``cloudify_ha.manager_installed`` guards it; call this directly only on purpose.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.install
    """
    settings, manager = _settings(cluster)
    return _install(settings, manager)


def database_host(cluster=None):
    """
    The cluster's database address, from pillar (``database:host``).

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr2 cloudify_ha.database_host
    """
    settings, _ = _settings(cluster, need_manager=False)
    return settings["database"]["host"]


def join(master_ip, database_ip, cluster=None):
    """
    Install this manager with the install-time join: cluster.master_ip (the active node),
    postgresql_client.host (the cluster's database), the admin
    and postgres passwords, all from config.yaml (0600), never on the command line.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr2 cloudify_ha.join 10.0.0.11 10.0.0.5
    """
    settings, manager = _settings(cluster)
    return _install(settings, manager, joining={"master_ip": master_ip, "database_ip": database_ip})


def remove_manager(cluster=None):
    """
    Tear this host's manager down with ``cfy_manager remove -f``: its services, ``/opt/manager``
    (its local resources) and ``/etc/cloudify/.install`` go; the external database is left
    alone (4.6's postgresql_client component only removes its client packages). The state
    ``cloudify_ha.joined`` calls it for a join that failed part-way; call it directly only on
    purpose.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr2 cloudify_ha.remove_manager
    """
    settings, _ = _settings(cluster)
    result = _run(["cfy_manager", "remove", "-f"], settings, timeout=600)
    if result["retcode"] != 0:
        raise CommandExecutionError(
            f"cfy_manager remove -f failed (exit {result['retcode']}): "
            f"{_tail(result['stderr'] or result['stdout'], 3)}")
    return {"retcode": 0, "output": _tail(result["stdout"], 3)}


def start_cluster(node_name, host_ip, cluster=None):
    """
    ``cfy cluster start`` on this (installed, standalone) manager, always with an explicit node
    name and host IP (the defaults are ``localhost`` and a random name), and with the cluster's
    ``waits:cluster_start`` as its ``--timeout``. The command itself may run
    ``CLUSTER_START_GRACE`` seconds longer before it is stopped: cfy checks its own deadline
    only between its polls, and a poll (like the start's PUT) is a request without a timeout.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.start_cluster mgr1 10.0.0.11
    """
    settings, _ = _settings(cluster)
    timeout = _wait(settings, "cluster_start")
    result = _cfy(["cluster", "start", "--cluster-node-name", node_name,
                   "--cluster-host-ip", host_ip, "--timeout", str(timeout)], settings,
                  timeout=timeout + CLUSTER_START_GRACE, lines=8)
    return {"retcode": 0, "output": _tail(result["stdout"], 5)}


def local_api_ok(cluster=None):
    """
    True when this manager's own REST API answers ``/status`` (200, or 400 as a replica).

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.local_api_ok
    """
    settings, manager = _settings(cluster)
    return _status_of(settings, manager["private_ip"], 3) in ("active", "not_cluster_master")


def _profile_path(profile):
    return os.path.join(PROFILES_DIR, profile, "context")


class _ProfileContext(dict):
    """A profile's context document, written back with the tag cfy 4.6 loads it by."""


class _ProfileDumper(salt.utils.yaml.SafeOrderedDumper):  # pylint: disable=too-many-ancestors
    pass


_ProfileDumper.add_representer(
    _ProfileContext, lambda dumper, data: dumper.represent_mapping(PROFILE_TAG, dict(data)))


def _read_profile(profile):
    """A profile's context as a dict, or None when it does not exist. cfy 4.6 writes it with
    PyYAML 3.10 on Python 2: tagged ``!CloudifyProfileContext``, every text ``!!python/unicode``."""
    path = _profile_path(profile)
    if not os.path.exists(path):
        return None

    class _Loader(salt.utils.yaml.SaltYamlSafeLoader):  # pylint: disable=too-many-ancestors
        pass

    _Loader.add_constructor(PROFILE_TAG,
                            lambda loader, node: loader.construct_mapping(node, deep=True))
    _Loader.add_constructor("tag:yaml.org,2002:python/unicode",
                            lambda loader, node: loader.construct_scalar(node))
    with salt.utils.files.fopen(path, "r") as fh:
        data = salt.utils.yaml.load(fh, Loader=_Loader) or {}
    return data if isinstance(data, dict) else {}


def profile_cluster(profile=LOCAL_PROFILE):
    """
    The nodes a ``cfy`` profile walks, in its order: ``[{"name", "manager_ip"}]`` (4.6 keeps
    ``localhost`` for the node the cluster was started on and the public address of the others),
    or None when the profile does not exist.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.profile_cluster
        salt admin1 cloudify_ha.profile_cluster profile=prod
    """
    context = _read_profile(profile)
    if context is None:
        return None
    return [{"name": n.get("name"), "manager_ip": n.get("manager_ip")}
            for n in context.get("_cluster") or [] if isinstance(n, dict)]


def own_profile(default=LOCAL_PROFILE, forecast=False, cluster=None):
    """
    This manager's own ``cfy`` profile, as 4.6's installer leaves it (its cli step, after the
    cluster step): ``default`` (``localhost``) on a manager installed on its own, which is where
    the cluster is started; on a joiner, the profile named after the leader it joined through
    (``cluster.master_ip`` in its config.yaml), which holds the admin's credentials; there is
    no ``localhost`` profile on a joiner (cloudify-4.6.md section 0.1). ``default`` when neither
    exists, unless ``forecast``: then, on a host not installed yet, the profile its install
    will leave (what ``test=True`` names): ``default`` where the cluster will be started (the
    pillar's leader, while no manager answers as the active node), else the profile named after
    the node it will join through (the active node; the pillar's leader before the cluster
    runs).

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr2 cloudify_ha.own_profile
        salt cfy-mgr2 cloudify_ha.own_profile forecast=True
    """
    if os.path.exists(_profile_path(default)):
        return default
    try:
        with salt.utils.files.fopen(CONFIG_PATH, "r") as fh:
            config = salt.utils.yaml.safe_load(fh) or {}
    except (OSError, ValueError, salt.utils.yaml.YAMLError):
        config = {}
    joined = config.get("cluster") if isinstance(config, dict) else None
    master = joined.get("master_ip") if isinstance(joined, dict) else None
    if _pillar_util()._is_ip(master) and \
            os.path.exists(_profile_path(master)):  # pylint: disable=protected-access
        return master
    if forecast and not os.path.exists(INSTALL_MARKER):
        return _joins_through(cluster) or default
    return default


def _joins_through(cluster):
    """The address a host not installed yet will join through (its profile's name after the
    join), or None where it will start the cluster itself."""
    settings, manager = _settings(cluster)
    try:
        # a forecast: it waits for no failover (waits:active_node is for the steps that act)
        active = active_node(cluster=settings["name"], required=False, others=True, wait=0)
    except (CommandExecutionError, SaltInvocationError):
        active = None  # no telling which node: the state reports what it can
    if active:
        return active["host"]
    leader = next((m for m in settings["managers"] if m["name"] == settings.get("leader")), None)
    if leader is None or leader["private_ip"] == manager["private_ip"]:
        return None
    return leader["private_ip"]


def profile_nodes(profile=LOCAL_PROFILE, own=False):
    """
    The names of the nodes a ``cfy`` profile knows (4.6 merges its ``_cluster`` list by node
    name), sorted, or None when the profile does not exist. ``own=True``: this manager's own
    profile (``own_profile``), ``profile`` its default.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.profile_nodes own=True
        salt admin1 cloudify_ha.profile_nodes profile=prod
    """
    entries = profile_cluster(own_profile(profile) if own else profile)
    return None if entries is None else sorted(str(e["name"]) for e in entries)


def set_profile_cluster(profile, nodes):
    """
    Set the nodes a ``cfy`` profile walks to ``nodes`` (``[{"name", "manager_ip"}]``, the first
    tried first), keeping what the profile stores for an entry of the same name and address (its
    certificate). The file is written 0600 (it holds the admin password). 4.6 has no command
    for this: ``cfy profiles use`` does not touch an existing profile, and ``update-profile``
    only adds nodes it does not know by name, so a profile whose nodes are all gone, or that lists
    a node at an old address, cannot find the cluster again. Returns True if the file changed.

    CLI Example:

    .. code-block:: bash

        salt admin1 cloudify_ha.set_profile_cluster prod '[{"name": "mgr1", "manager_ip": "10.0.0.11"}]'
    """
    context = _read_profile(profile)
    if context is None:
        raise CommandExecutionError(f"cfy profile {profile} does not exist")
    stored = {(n.get("name"), n.get("manager_ip")): n
              for n in context.get("_cluster") or [] if isinstance(n, dict)}
    entries = []
    for node in nodes:
        name, address = str(node["name"]), str(node["manager_ip"])
        entry = dict(stored.get((name, address)) or {})
        entry.update(name=name, manager_ip=address)
        entries.append(entry)
    context["_cluster"] = entries
    text = salt.utils.yaml.dump(_ProfileContext(context), Dumper=_ProfileDumper,
                                default_flow_style=False)
    return _write_private(_profile_path(profile), text)


def public_addresses(cluster=None):
    """
    Each manager's address for ``cfy`` profiles, from pillar: ``{node name: public_ip}``. A
    profile lists a node at this address, never at the one the cluster's (plain HTTP) answer
    carries.

    CLI Example:

    .. code-block:: bash

        salt admin1 cloudify_ha.public_addresses cluster=prod
    """
    settings, _ = _settings(cluster, need_manager=False)
    return {m["name"]: m["public_ip"] for m in settings["managers"]}


def local_node(cluster=None):
    """
    This minion's node name in the cluster, or None when it is not one of its managers (a CLI
    host).

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.local_node
    """
    _, manager = _settings(cluster, need_manager=False)
    return manager["name"] if manager else None


def profile_mode(profile=LOCAL_PROFILE):
    """
    The permission bits of a profile's context file (it holds the admin password), or None.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.profile_mode
    """
    path = _profile_path(profile)
    return oct(os.stat(path).st_mode & 0o777) if os.path.exists(path) else None


def secure_profile(profile=LOCAL_PROFILE):
    """
    Make a profile's context file 0600 (cfy writes it with the umask). Returns True if changed.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.secure_profile
    """
    path = _profile_path(profile)
    if os.path.exists(path) and os.stat(path).st_mode & 0o777 != 0o600:
        os.chmod(path, 0o600)
        return True
    return False


def active_profile():
    """
    The name of the active ``cfy`` profile on this host, or None.

    CLI Example:

    .. code-block:: bash

        salt admin1 cloudify_ha.active_profile
    """
    path = os.path.join(os.path.dirname(PROFILES_DIR), "active.profile")
    try:
        with salt.utils.files.fopen(path, "r") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def use_profile(profile, host, cluster=None):
    """
    ``cfy profiles use <host> --profile-name <profile>`` (validation skipped: the host may be a
    replica): creates the profile, without credentials (``cfy`` then reads them from the
    environment), and makes it active. On a profile that exists, 4.6 only makes it active: the
    address and every option are ignored.

    CLI Example:

    .. code-block:: bash

        salt admin1 cloudify_ha.use_profile prod 10.0.0.11 cluster=prod
    """
    settings, _ = _settings(cluster, need_manager=False)
    args = ["profiles", "use", host, "--profile-name", profile, "--skip-credentials-validation"]
    if settings["rest"].get("ssl"):
        args.append("--ssl")
        if settings["rest"].get("ca_cert"):
            args += ["--rest-certificate", _cert_paths(settings)["rest_ca"]]
    _cfy(args, settings)
    return True


def update_profile(cluster=None):
    """
    ``cfy cluster update-profile`` on the active profile: adds the cluster's nodes to it and
    drops nodes gone from the cluster. When the profile lists the active node (found as
    ``active_node`` finds it, through a failover's wait) but not first, it is moved first
    before: 4.6's ``cfy`` walks a profile in its order and stops at a node answering 502 (a
    node in its boot window), so update-profile would fail (cloudify-4.6.md section 0.4).
    ``first`` in the answer names the node moved.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.update_profile
    """
    settings, _ = _settings(cluster, need_manager=False)
    profile = active_profile()
    entries = profile_cluster(profile) if profile else None
    moved = None
    if entries:
        name = active_node(cluster=settings["name"])["name"]
        first = next((e for e in entries if e["name"] == name), None)
        if first is not None and entries[0] is not first:
            set_profile_cluster(profile, [first, *(e for e in entries if e is not first)])
            moved = name
    result = _cfy(["cluster", "update-profile"], settings)
    return {"retcode": 0, "output": _tail(result["stdout"], 5),
            **({"first": moved} if moved else {})}


def remove_node(name, active=None, cluster=None):
    """
    Remove a node from the cluster through the active node (``DELETE /cluster/nodes/<name>``).
    It does not touch the removed host.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.remove_node mgr3
    """
    try:
        path = f"/cluster/nodes/{_rest().segment(name)}"
    except ValueError as exc:
        raise SaltInvocationError(f"name: {exc}; give the node's name") from None
    settings, _ = _settings(cluster, need_manager=False)
    host = _active_host(settings, active)
    return _normalise(_call(settings, host, "DELETE", path) or {"name": name})


# ---- the load balancer's check user ---------------------------------------------------------
# the role of the health check's user: 4.6's `default` system role, "User exists, but have no
# permissions" (cloudify-manager-install 4.6, restservice/config/authorization.conf), which
# status_get allows and no tenant's data
CHECK_ROLE = "default"


def _check_settings(settings):
    """(user, password) of the cluster's check user (loadbalancer:check_user/check_password)."""
    lb = settings.get("loadbalancer") or {}
    if not lb.get("check_password"):
        raise SaltInvocationError(
            f"cluster '{settings['name']}' has no loadbalancer:check_password in this minion's "
            "pillar")
    return lb["check_user"], lb["check_password"]


def _check_endpoint(settings, host):
    """A manager as the health check reaches it: the check user, no Tenant header (it is in no
    tenant: 4.6 authorizes its system role alone), as HAProxy's check sends it."""
    user, password = _check_settings(settings)
    return _rest().Endpoint(host, user, password, None, settings["rest"].get("ssl"),
                            _rest_ca(settings))


def check_user(active=None, cluster=None):
    """
    The cluster's check user (``loadbalancer:check_user``) as the active node knows it, or None
    when it does not exist: ``role`` (4.6's system role), ``tenants`` and ``groups`` (counts,
    as 4.6 answers them), ``active``, and ``password_ok``: whether the active node accepts the
    pillar's ``loadbalancer:check_password`` for it (one ``GET /status`` as that user).

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.check_user
    """
    settings, _ = _settings(cluster, need_manager=False)
    user, _password = _check_settings(settings)
    host = _active_host(settings, active)
    rest = _rest()
    found = _call(settings, host, "GET", f"/users/{rest.segment(user)}", absent={})
    if not found:
        return None
    out = {"username": found.get("username"), "role": found.get("role"),
           "tenants": found.get("tenants"), "groups": found.get("groups"),
           "active": found.get("active")}
    out["password_ok"] = _check_login(settings, host) == "active"
    return out


def _check_login(settings, host):
    """What a manager answers the check user's GET /status: as _probe_status."""
    return _probe_status(_rest(), _check_endpoint(settings, host), 5)


def create_check_user(active=None, cluster=None):
    """
    Create the cluster's check user through the active node: ``PUT /users`` with the name, the
    pillar's password and 4.6's ``default`` role in a JSON body (never a command line: ``cfy
    users create -p`` would put the password on argv). True when created, False when a user of
    that name exists already (4.6 answers 409). The state ``cloudify_ha.check_user_present``
    decides when.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.create_check_user
    """
    settings, _ = _settings(cluster, need_manager=False)
    user, password = _check_settings(settings)
    host = _active_host(settings, active)
    answer = _call(settings, host, "PUT", "/users", conflict=False,
                   body={"username": user, "password": password, "role": CHECK_ROLE})
    return answer is not False


def check_credentials(cluster=None, timeout=3):
    """
    Every manager's answer to the check user's ``GET /status``, by node name, polled in
    parallel: ``active`` (200: the health check would mark it up), ``unauthorized`` (401: the
    managers do not accept ``loadbalancer:check_password``), ``not_cluster_master`` (a replica,
    which 4.6 answers before it authenticates), ``unreachable``, or another error. What the
    load balancer asks before it writes a new password into HAProxy's configuration.

    CLI Example:

    .. code-block:: bash

        salt cfy-lb1 cloudify_ha.check_credentials cluster=prod
    """
    settings, _ = _settings(cluster, need_manager=False)
    rest = _rest()
    endpoints = {m["name"]: _check_endpoint(settings, m["private_ip"])
                 for m in settings["managers"]}
    with ThreadPoolExecutor(max_workers=min(16, len(endpoints))) as pool:
        answers = pool.map(lambda e: _probe_status(rest, e, timeout), endpoints.values())
    return dict(zip(endpoints, answers))


# ---- the license (4.6 premium) --------------------------------------------------------------
def _license_text(settings):
    text = settings.get("license")
    if not isinstance(text, str) or not text:
        raise SaltInvocationError(
            f"cluster '{settings['name']}' has no license in this minion's pillar "
            f"(cloudify_ha:clusters:{settings['name']}:license)")
    return text


def license_info(active=None, cluster=None):
    """
    The license the cluster's active node holds, as 4.6's ``GET /license`` answers it
    (customer_id, expiration_date, license_edition, trial, cloudify_version, capabilities,
    normalised as ``license_wanted``, and expired), ``{}`` when it holds none, or None when the manager has no license endpoint
    (4.5.5 has no license). Never the signature.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.license_info
    """
    settings, _ = _settings(cluster, need_manager=False)
    host = _active_host(settings, active)
    answer = _call(settings, host, "GET", "/license", absent=False)
    if answer is False:
        return None
    items = answer.get("items") if isinstance(answer, dict) else None
    if not items or not isinstance(items[0], dict):
        return {}
    return _license_view(items[0])


def _license_view(answer):
    """A license as the REST service answers it, normalised as ``license_wanted`` (the
    expiration as a date, the version a string) and whether it ``expired``."""
    try:
        view = _pillar_util().license_summary(answer)
    except ValueError as exc:
        raise CommandExecutionError(f"the manager answered a license the formula cannot read: "
                                    f"{exc}") from None
    return dict(view, expired=bool(answer.get("expired")))


def license_wanted(cluster=None):
    """
    The fields of the pillar's license (``cloudify_ha:clusters:<name>:license``), normalised as
    the state compares them with ``license_info``: never the text nor its signature.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.license_wanted
    """
    settings, _ = _settings(cluster, need_manager=False)
    util = _pillar_util()
    try:
        fields, _sig = util.license_document(_license_text(settings))
        return util.license_summary(fields)
    except ValueError as exc:
        raise SaltInvocationError(f"cloudify_ha:clusters:{settings['name']}:license: {exc}") \
            from None


def upload_license(active=None, cluster=None):
    """
    Upload the pillar's license to the cluster's active node: ``PUT /license`` with the file's
    bytes, as 4.6's ``cfy license upload`` sends them (no file, no command line). The manager's
    answer without the signature. The state ``cloudify_ha.license_present`` decides when.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.upload_license
    """
    settings, _ = _settings(cluster, need_manager=False)
    license_wanted(cluster=settings["name"])  # refused here when the pillar's is no license
    host = _active_host(settings, active)
    answer = _call(settings, host, "PUT", "/license",
                   data=_license_text(settings).encode("utf-8"))
    return _license_view(answer) if isinstance(answer, dict) else {}


# ---- snapshots (issue 34: a backup's first step, on the active node) ------------------------
SNAPSHOT_QUIESCE = ("maintenance", "executions", "none")
# cloudify/models_states.py (4.6): ExecutionState.ACTIVE_STATES, what blocks a snapshot
# (resource_manager.py _check_for_any_active_executions)
ACTIVE_EXECUTION_STATES = ("pending", "started", "cancelling", "force_cancelling",
                           "kill_cancelling")


def _seconds(value, key):
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = 0
    if not number > 0:
        raise SaltInvocationError(f"{key}: {value!r} is not a positive number of seconds")
    return number


def _cfy_json(args, settings):
    result = _cfy([*args, "--json"], settings)
    try:
        return json.loads(result["stdout"])
    except ValueError:
        raise CommandExecutionError(f"cfy {' '.join(args[:2])} --json printed no JSON: "
                                    f"{_tail(result['stdout'], 3)}") from None


def _wait_for(probe, deadline, poll):
    """probe() until it returns a truthy value or the deadline passes; its last answer."""
    while True:
        answer = probe()
        if answer or time.monotonic() >= deadline:
            return answer
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))


def _running_executions(settings):
    listed = _cfy_json(["executions", "list", "--include-system-workflows", "--all-tenants"],
                       settings)
    return [e.get("id") for e in listed if e.get("status") in ACTIVE_EXECUTION_STATES]


def _snapshot_state(settings, snapshot_id):
    listed = _cfy_json(["snapshots", "list"], settings)
    return next((s for s in listed if s.get("id") == snapshot_id), None)


def _leave_maintenance(settings):
    """`cfy maintenance-mode deactivate`; None once the mode is off, else what to tell."""
    try:
        _cfy(["maintenance-mode", "deactivate"], settings)
    except CommandExecutionError as exc:
        status = maintenance_mode(settings["name"])["status"]
        if status is None:  # no answer (4.6 without a license answers /maintenance with 400)
            return (f"{exc}; whether maintenance mode is off could not be read: check with "
                    "'cfy maintenance-mode status'")
        if status != "deactivated":
            return f"maintenance mode is still on ({exc}): run '{LEAVE_MAINTENANCE}'"
    return None


def verify_archive(path, version):
    """
    Check a snapshot archive on this minion: a zip whose every member reads back with its
    CRC, and whose ``metadata.json`` names ``version`` as its ``snapshot_version`` (4.6's
    snapshot_create.py _dump_metadata). Returns ``{"path", "size", "version"}``; raises
    CommandExecutionError saying what is wrong. Reads a member at a time, never the whole
    archive.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.verify_archive /opt/manager/resources/snapshots/s1/s1.zip 4.6
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            if bad is not None:
                raise CommandExecutionError(f"{path}: member {bad} is corrupt (CRC mismatch)")
            metadata = json.loads(archive.read("metadata.json"))
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise CommandExecutionError(f"{path} is not a Cloudify snapshot archive: {exc}") from None
    found = str(metadata.get("snapshot_version") if isinstance(metadata, dict) else None)
    if found != str(version):
        raise CommandExecutionError(f"{path}: metadata.json says snapshot_version {found}, "
                                    f"the cluster runs {version}")
    return {"path": path, "size": os.path.getsize(path), "version": found}


def snapshot(quiesce="maintenance", timeout=3600, poll=5, cluster=None, snapshot_id=None):
    """
    Take a snapshot of the cluster on its ACTIVE node, which this minion must be: quiesce as
    asked (``maintenance``: ``cfy maintenance-mode activate --wait`` within the timeout, which
    waits for running executions; ``executions``: wait until none runs; ``none``), then
    ``cfy snapshots create <cluster>-<UTC time>``, poll ``cfy snapshots list`` until it is
    ``created`` or ``failed`` (4.6 refuses a create while any execution runs), and leave
    maintenance mode again whatever happened, when this call turned it on (a mode that was on
    before is left as found). Then the archive the active node keeps is verified
    (``verify_archive``, against the version the manager answers on ``GET /version``).
    ``timeout`` bounds the whole wait, in seconds; ``poll`` is the interval between reads.
    ``snapshot_id``: the id to create (``<cluster>-...``, what cloudify_ha.orch.backup names
    before it runs, so that its later steps know it); by default ``<cluster>-<UTC time>``.

    Returns ``{"id", "status", "path", "size", "version", "quiesce", "maintenance"}``; any
    failure raises CommandExecutionError saying what happened and whether maintenance mode
    was left. Credentials reach ``cfy`` through its environment, never argv.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.snapshot quiesce=maintenance timeout=3600
    """
    if quiesce not in SNAPSHOT_QUIESCE:
        raise SaltInvocationError(f"quiesce: {quiesce!r} is none of "
                                  f"{', '.join(SNAPSHOT_QUIESCE)}")
    timeout, poll = _seconds(timeout, "timeout"), _seconds(poll, "poll")
    settings, manager = _settings(cluster)
    name = settings["name"]
    active = active_node(cluster=name)["host"]
    if active != manager["private_ip"]:
        raise CommandExecutionError(
            f"cluster {name}: {manager['name']} ({manager['private_ip']}) is not the active "
            f"node ({active} is): take the snapshot there")
    deadline = time.monotonic() + timeout
    if snapshot_id is None:
        snapshot_id = f"{name}-{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%SZ}"
    _snapshot_id_of(settings, snapshot_id)
    before = maintenance_mode(name)["status"]
    ours = quiesce == "maintenance" and before == "deactivated"
    out = {"id": snapshot_id, "quiesce": quiesce,
           "maintenance": "turned on and off" if ours else f"{before or 'unknown'}, left as found"}
    failure = None
    try:
        if ours:
            left = max(1, math.ceil(deadline - time.monotonic()))
            _cfy(["maintenance-mode", "activate", "--wait", "--timeout", str(left)], settings,
                 timeout=left + 60)
        elif quiesce == "executions":
            running = []

            def settled():
                running[:] = _running_executions(settings)
                return not running

            if not _wait_for(settled, deadline, poll):
                raise CommandExecutionError(f"executions still running after {timeout:g} s: "
                                            f"{', '.join(map(str, running))}")
        _cfy(["snapshots", "create", snapshot_id], settings)
        seen = {}

        def ended():
            seen.update(_snapshot_state(settings, snapshot_id) or {"status": "absent"})
            return seen["status"] in ("created", "failed")

        _wait_for(ended, deadline, poll)
        if seen["status"] == "failed":
            raise CommandExecutionError(f"snapshot {snapshot_id} failed: "
                                        f"{seen.get('error') or 'no error given'}")
        if seen["status"] != "created":
            raise CommandExecutionError(f"snapshot {snapshot_id} is still {seen['status']} "
                                        f"after {timeout:g} s")
    except CommandExecutionError as exc:
        failure = str(exc)
    finally:
        left_on = _leave_maintenance(settings) if ours else None
    if failure or left_on:
        raise CommandExecutionError("; ".join(m for m in (
            failure, left_on or ("maintenance mode left again" if ours else None)) if m))
    version = (_call(settings, active, "GET", "/version") or {}).get("version")
    path = os.path.join(RESOURCES, "snapshots", snapshot_id, f"{snapshot_id}.zip")
    out.update(verify_archive(path, version), status="created")
    return out


def _snapshot_id_of(settings, snapshot_id):
    """``snapshot_id`` when it is one of this cluster's (``<cluster>-...``, one REST path
    segment); SaltInvocationError otherwise."""
    try:
        _rest().segment(snapshot_id)
    except ValueError as exc:
        raise SaltInvocationError(f"snapshot_id: {exc}") from None
    if not snapshot_id.startswith(f"{settings['name']}-"):
        raise SaltInvocationError(f"snapshot_id: {snapshot_id!r} is not a snapshot of cluster "
                                  f"{settings['name']} (<cluster>-...)")
    return snapshot_id


def _backup_settings(settings):
    backup = settings.get("backup")
    if not isinstance(backup, dict) or not isinstance(backup.get("target"), dict):
        raise SaltInvocationError(f"cluster {settings['name']} has no backup target "
                                  f"(cloudify_ha:clusters:{settings['name']}:backup:target)")
    return backup


def backup_send(snapshot_id, cluster=None):
    """
    Stream snapshot ``snapshot_id`` of this manager's cluster to the cluster's backup target
    (pillar ``backup``), from this manager, which must be the active node: its archive is
    verified first (``verify_archive``, against the version ``GET /version`` answers), then
    sent through ``cloudify_ha_backup.send``, encrypted for ``backup:recipient`` unless
    ``backup:encrypt`` is false, within ``backup:timeout``. The target's receiver
    (``cloudify_ha_backup.receive``) must run meanwhile: cloudify_ha.orch.backup runs both.
    Returns what was sent (sha256, size, fingerprint); no archive byte, no key.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.backup_send prod-20300101T000000Z
    """
    settings, manager = _settings(cluster)
    backup = _backup_settings(settings)
    snapshot_id = _snapshot_id_of(settings, snapshot_id)
    active = active_node(cluster=settings["name"])["host"]
    if active != manager["private_ip"]:
        raise CommandExecutionError(
            f"cluster {settings['name']}: {manager['name']} ({manager['private_ip']}) is not "
            f"the active node ({active} is): send the snapshot from there")
    version = (_call(settings, active, "GET", "/version") or {}).get("version")
    path = os.path.join(RESOURCES, "snapshots", snapshot_id, f"{snapshot_id}.zip")
    checked = verify_archive(path, version)
    target = backup["target"]
    sent = __salt__["cloudify_ha_backup.send"](
        path, settings["name"], snapshot_id, target["address"], backup["port"],
        recipient=backup["recipient"] if backup["encrypt"] else None,
        timeout=backup["timeout"], version=checked["version"])
    if not backup["encrypt"]:
        sent["warning"] = ("backup:encrypt is false: the archive, which holds the cluster's CA "
                           "key and rest-security.conf, travelled and is kept in clear")
    return sent


def prune_snapshots(keep=None, cluster=None):
    """
    Delete from the cluster, through its active node (``DELETE /snapshots/<id>``), all but the
    ``keep`` newest snapshots whose id starts with ``<cluster>-`` (by default
    ``backup:keep_on_cluster``): every snapshot costs disk on every manager. A snapshot still
    being created, and any other snapshot, is left alone. Returns the ids kept and deleted.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.prune_snapshots keep=1
    """
    settings, _ = _settings(cluster, need_manager=False)
    keep = _backup_settings(settings)["keep_on_cluster"] if keep is None else keep
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise SaltInvocationError(f"keep: {keep!r} must be a whole number, 1 or more")
    host = _active_host(settings)
    listed = _call(settings, host, "GET", "/snapshots") or {}
    items = listed.get("items", []) if isinstance(listed, dict) else []
    ours = sorted((s for s in items if isinstance(s, dict) and isinstance(s.get("id"), str)
                   and s["id"].startswith(f"{settings['name']}-")
                   and s.get("status") in ("created", "failed")),
                  key=lambda s: (str(s.get("created_at")), s["id"]), reverse=True)
    deleted, left = [], []
    for item in ours[keep:]:
        try:
            path = f"/snapshots/{_rest().segment(item['id'])}"
        except ValueError:  # not one path segment: never sent as a path
            left.append(ascii(item["id"]))
            continue
        _call(settings, host, "DELETE", path, absent={})
        deleted.append(item["id"])
    out = {"kept": [s["id"] for s in ours[:keep]], "deleted": deleted}
    if left:
        out["left"] = left
    return out


# ---- the formula's own modules on this minion ----------------------------------------------
def modules_current(expected):
    """
    True when this minion's synced copies of the master's modules are byte for byte the ones
    ``expected`` lists (the answer of ``cloudify_ha_master.formula_modules`` on the master). The
    orchestration asks every minion once, with its ping, and syncs only those that say False or
    cannot answer (a minion without this formula's modules). False for an empty list.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha.modules_current '{"modules/cloudify_ha.py": "sha256:..."}'
    """
    if not isinstance(expected, dict) or not expected:
        return False
    for key, want in expected.items():
        hash_type, _, hsum = str(want).partition(":")
        path = os.path.join(__opts__["extension_modules"], key)
        try:
            digest = hashlib.new(hash_type)
            with salt.utils.files.fopen(path, "rb") as fh:
                digest.update(fh.read())
        except (OSError, ValueError):
            return False
        if digest.hexdigest() != hsum:
            return False
    return True


def _takes(func, keyword):
    """Whether a Salt function takes ``keyword`` (by name or in its ``**kwargs``): what differs
    between the Salts the formula supports is asked of the function, never of a version."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # no signature to read
        return False
    return any(p.name == keyword or p.kind is p.VAR_KEYWORD for p in params)


def _fresh_pillar():
    """``pillar.items``: a pillar the master compiles now, unmasked on every Salt. 3008 masks it
    unless asked ``unmask=True``; 3007.1's takes no ``unmask`` (a TypeError) and masks nothing;
    3006's swallows any keyword and masks nothing."""
    if _takes(__salt__["pillar.items"], "unmask"):
        return __salt__["pillar.items"](unmask=True)
    return __salt__["pillar.items"]()


def orch_facts(expected):
    """
    What the orchestration asks every minion once, at render time (every minion but those the
    master knows lack this module: ``cloudify_ha_master.minions_without_modules``): whether its copies of the
    formula's modules are current (``modules_current``) and, on a manager, its node state
    (``node_state``: one read of its own ``/status``), from which the orchestration finds the
    active node without polling every manager from every step. ``node`` is None on a minion that
    is not a manager, and an error's text never carries a secret. ``pillar_errors``: this
    minion's validation of its own pillar, as its role needs it (its secrets included).
    ``maintenance``: on a node that answers as the active node or a standalone manager, its
    maintenance mode (``maintenance_mode``): the orchestration changes nothing in a cluster
    whose node is in it.

    CLI Example:

    .. code-block:: bash

        salt -L cfy-mgr1,cfy-mgr2 cloudify_ha.orch_facts '{"modules/cloudify_ha.py": "sha256:..."}'
    """
    util = _pillar_util()
    # this minion's own check of its pillar, with the secrets of its roles: the master holds none
    # of them and refuses the whole run while any minion reports an error. The pillar as the
    # master renders it NOW (the SLS of the run get that one), not the copy this minion loaded
    # at its last refresh
    fresh = _fresh_pillar()
    out = {"modules_current": modules_current(expected), "node": None,
           "pillar_errors": util.validate(util.plain((fresh or {}).get("cloudify_ha") or {}),
                                          __opts__["id"])[0]}
    try:
        settings, manager = _settings()
    except SaltInvocationError:
        return out  # a CLI host, a load balancer: no node of its own
    out["cluster"], out["private_ip"] = settings["name"], manager["private_ip"]
    try:
        out["node"] = node_state(settings["name"])
    except (CommandExecutionError, SaltInvocationError) as exc:
        out["error"] = str(exc)
    if out["node"] in ("leader", "installed"):  # a node that answers: it may be in maintenance
        out["maintenance"] = maintenance_mode(settings["name"])
    return out


def settings(defaults=None, pillar=None, minion_id=None, tplroot="cloudify_ha", grains=None):
    """
    What this minion's SLS render from (``map.jinja``): the ``cloudify_ha`` pillar validated
    (``errors`` names each bad key and its fix; an SLS refuses and changes nothing while there is
    one), ``lookup`` (``defaults``, from ``defaults.yaml``: its ``lookup`` and, over it, its
    ``os_family:<the minion's os_family>:lookup``; the pillar's values over both),
    this minion's roles with the public settings of its clusters only: never a password or
    a key, whatever the role, and ``tofs``: the salt:// sources of each template an operator can
    override (``cloudify_ha:tofs``), first found wins. ``pillar``, ``minion_id`` and ``grains``
    are what the SLS renders with (its ``cloudify_ha`` pillar, ``grains["id"]``, its grains);
    by default this minion's. ``tplroot``: the formula's directory on the file server.

    CLI Example:

    .. code-block:: bash

        salt cfy-lb1 cloudify_ha.settings
    """
    util = _pillar_util()
    if pillar is None:
        pillar = _pillar("cloudify_ha", {})
    grains = __grains__ if grains is None else grains
    defaults = util.plain(defaults or {})
    # defaults.yaml's os_family:<this minion's os_family>:lookup over its lookup
    family = grains.get("os_family") if hasattr(grains, "get") else None
    by_family = defaults.get("os_family") if isinstance(defaults.get("os_family"), dict) else {}
    lookup = util.merge(defaults.get("lookup") or {},
                        (by_family.get(family) or {}).get("lookup") or {}
                        if isinstance(family, str) else {})
    return util.for_minion(util.plain(pillar or {}), minion_id or __opts__["id"], lookup,
                           tplroot=tplroot, grains=grains)


def plan(pillar=None, cluster=None):
    """
    Validate the ``cloudify_ha`` pillar and return the orchestration's plan: errors and
    warnings (each names the pillar key and the fix) and, when there is no error, the
    settings of each cluster to build, secrets removed.

    CLI Example:

    .. code-block:: bash

        salt-call cloudify_ha.plan
        salt-run salt.cmd cloudify_ha.plan
    """
    if pillar is None:
        pillar = _pillar("cloudify_ha", {})
    util = _pillar_util()
    result = util.plan(util.plain(pillar), cluster)
    for name, settings in result["clusters"].items():
        result["clusters"][name] = _public(settings)
    return result


def _public(settings):
    """Settings without secrets or keys: what the orchestration may render into job data."""
    return _pillar_util().public(settings)
