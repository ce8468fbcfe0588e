"""The emulated manager's services in one daemon: the REST API (80, or 443 with SSL), file
replication (22000) and, once clustered, the cluster agent (8300, 8301, 8500).

Started by `cfy_manager install` and at boot (/etc/lab/boot.d/cloudify-manager, the lab's
stand-in for enabled systemd units). `python -m cfyemu.service start|stop|run`.
"""

import base64
import datetime
import functools
import io
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import string
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from . import cluster as clustermod
from . import snapshots as day2mod
from .common import (CONFIG, DEFAULT_TENANT, EXTERNAL_CERT, EXTERNAL_KEY, OPT, PIDFILE,
                     PORTS, RESOURCES, RUN_DIR, SERVICE_LOG, USER_DATA_DIRS, RestError, audit,
                     knobs, load_config)
from .store import Store

API = "/api/v3.1"
# who may call what: cloudify-manager-install 4.6's authorization.conf (components/restservice/
# config/authorization.conf, `permissions`), for the actions of the endpoints emulated here. The
# `default` system role is 4.6's "User exists, but have no permissions": of these, status and
# maintenance only
_ALL = ("sys_admin", "manager", "user", "operations", "viewer")
PERMISSIONS = {
    "status_get": _ALL + ("default",),
    "maintenance_mode_get": _ALL + ("default",),
    "version_get": _ALL + ("default",),
    "maintenance_mode_set": ("sys_admin",),
    **{action: ("sys_admin",) for action in (
        "cluster_status_get", "cluster_start_or_join", "cluster_config_update",
        "cluster_node_get", "cluster_node_list", "cluster_node_validate",
        "cluster_node_config_update", "cluster_node_remove",
        "user_get", "user_list", "user_create", "user_delete", "user_update")},
    "blueprint_get": _ALL, "blueprint_list": _ALL,
    "blueprint_upload": ("sys_admin", "manager", "user"),
    "blueprint_delete": ("sys_admin", "manager", "user"),
    # snapshots: sys_admin alone, every one of them
    **{action: ("sys_admin",) for action in (
        "snapshot_get", "snapshot_list", "snapshot_create", "snapshot_delete", "snapshot_upload",
        "snapshot_download", "snapshot_status_update", "snapshot_restore")},
    "license_upload": ("sys_admin",), "license_list": _ALL + ("default",),
    "execution_get": _ALL, "execution_list": _ALL,
    "secret_get": _ALL, "secret_list": _ALL,
    "secret_create": ("sys_admin", "manager", "user"),
    "secret_update": ("sys_admin", "manager", "user"),
    "secret_delete": ("sys_admin", "manager", "user"),
}
# the system roles of 4.6's authorization.conf (`roles`, type system_role), in its order
SYSTEM_ROLES = ("sys_admin", "default")
TENANT_ROLES = ("manager", "user", "operations", "viewer")
# what 4.6's restservice step writes (restservice.py REST_CONFIG_PATH): until it exists there is
# no REST service behind nginx, which the nginx step started (cloudify-4.6.md section 0.4)
REST_CONFIG = OPT / "cloudify-rest.conf"
# 4.6's maintenance mode: a local file (cloudify-rest.conf maintenance_folder, constants.py
# MAINTENANCE_MODE_STATUS_FILE), never replicated to the other nodes
MAINTENANCE_STATUS = OPT / "maintenance" / "status.json"
# endpoints that pass while maintenance mode is activated: every endpoint whose NAME contains
# one of these (rest-service constants.py ALLOWED_MAINTENANCE_ENDPOINTS, utils.py
# check_allowed_endpoint: a substring match on request.endpoint)
ALLOWED_MAINTENANCE_ENDPOINTS = ("status", "version", "license", "maintenance", "snapshots")
FORBIDDEN_METHODS = ("POST", "PATCH", "PUT")  # constants.py: what activating blocks
MAINTENANCE_REFUSED = ("Your request was rejected since Cloudify manager is currently in "
                       "maintenance mode")
# 4.6's endpoint names (rest/endpoint_mapper.py: '<version>/<url>') of the routes emulated here
ENDPOINTS = [(re.compile(pattern), name) for pattern, name in (
    (r"/status", "v3.1/status"),
    (r"/version", "v3.1/version"),
    (r"/maintenance", "v3.1/maintenance"),
    (r"/maintenance/[^/]+", "v3.1/maintenance/<string:maintenance_action>"),
    (r"/cluster", "v3.1/cluster"),
    (r"/cluster/nodes", "v3.1/cluster/nodes"),
    (r"/cluster/nodes/[^/]+", "v3.1/cluster/nodes/<string:node_id>"),
    (r"/blueprints", "v3.1/blueprints"),
    (r"/blueprints/[^/]+", "v3.1/blueprints/<string:blueprint_id>"),
    (r"/snapshots", "v3.1/snapshots"),
    (r"/snapshots/[^/]+", "v3.1/snapshots/<string:snapshot_id>"),
    (r"/snapshots/[^/]+/archive", "v3.1/snapshots/<string:snapshot_id>/archive"),
    (r"/snapshots/[^/]+/restore", "v3.1/snapshots/<string:snapshot_id>/restore"),
    (r"/executions", "v3.1/executions"),
    (r"/executions/[^/]+", "v3.1/executions/<string:execution_id>"),
    (r"/secrets", "v3.1/secrets"),
    (r"/secrets/[^/]+", "v3.1/secrets/<string:key>"),
    (r"/license", "v3.1/license"),
    (r"/users", "v3.1/users"),
    (r"/users/[^/]+", "v3.1/users/<string:username>"),
)]
# the fields of the ClusterState answer that `_include` may name: what 4.6's public client
# reads (cloudify_rest_client/cluster.py ClusterState); `consul` is in an answer without
# `_include` but is not one of them (inferred: the server's response class is premium)
CLUSTER_STATE_FIELDS = ("initialized", "logs", "error")
SERVICES = ["Cloudify Console", "PostgreSQL", "AMQP-Postgres", "Manager Rest-Service",
            "RabbitMQ", "Webserver", "Management Worker"]


def log(message):
    SERVICE_LOG.parent.mkdir(parents=True, exist_ok=True)
    with open(SERVICE_LOG, "a", encoding="utf-8") as fh:
        fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")


def local_ips():
    addrs = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True,
                           check=False).stdout
    return set(re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", addrs))


class Service:
    def __init__(self):
        self.config = load_config()
        self.store = Store(self.config)
        self.db_ok = False
        self.agent = None
        self.cluster_logs = []  # [{"message", "timestamp", "cursor"}]
        self.cluster_error = None
        self.starting = False
        self.restart_at_initialized = False  # knob cluster_start_restart=initialized
        self.gateway_until = 0.0  # until then nginx answers 502 (a restart in cluster start)
        self.booted_at = None  # a boot (serve_forever): 502 for boot_502_seconds from then
        self.lock = threading.RLock()
        state = clustermod.load_state()
        if state:
            self._start_agent(state)

    def bad_gateway(self):
        """Whether nginx answers 502 now: while the REST service restarts during `cluster
        start`, and after a boot for `boot_502_seconds` (the knob read at each request, so that
        a test can hold the window open and then end it)."""
        now = time.monotonic()
        if now < self.gateway_until:
            return True
        if self.booted_at is None:
            return False
        window = float(knobs().get("boot_502_seconds", BOOT_502_SECONDS) or 0)
        if now < self.booted_at + window:
            return True
        self.booted_at = None  # the REST service is up: a later knob does not bring nginx back
        return False

    # ---- checks ------------------------------------------------------------------------------
    def local_checks(self):
        return {"services": True, "database": self.db_ok}

    def _db_probe_loop(self):
        while True:
            self.db_ok = self.store.probe()
            time.sleep(2.0)

    # ---- cluster -------------------------------------------------------------------------------
    def _start_agent(self, state):
        self.agent = clustermod.Agent(state, self.local_checks, self._cluster_log,
                                      public_ip=self.config["manager"].get("public_ip") or None)
        self.agent.start()

    def _cluster_log(self, message):
        now = time.time()
        with self.lock:
            cursor = f"{int(now * 1e6)}-{len(self.cluster_logs)}"
            self.cluster_logs.append({"message": message, "timestamp": int(now * 1e6),
                                      "cursor": cursor})
        log(f"[cluster] {message}")

    def cluster_state(self, include=None, since=None):
        if include is not None:
            # 4.6's marshal_with (rest_decorators.py _validate_fields): unknown `_include` keys
            unknown = [k for k in include if k not in CLUSTER_STATE_FIELDS]
            if unknown:
                raise RestError(400, "no_such_include_field_error",
                                f"Include keys '[{', '.join(f'u{k!r}' for k in unknown)}]' do not "
                                f"exist. Allowed keys are: {list(CLUSTER_STATE_FIELDS)}")
        agent = self.agent
        state = {"initialized": bool(agent and not self.starting)}
        if agent:
            ip = agent.leader_ip()
            state["consul"] = {"leader": f"{ip}:{PORTS['rpc']}" if ip else None}
        # cloudify-4.6.md section 3: `logs`/`error` only when `_include` asks for them
        if include is not None and "error" in include:
            state["error"] = self.cluster_error
        if include is not None and "logs" in include:
            with self.lock:
                logs = list(self.cluster_logs)
            if since:
                cursors = [entry["cursor"] for entry in logs]
                if since in cursors:
                    logs = logs[cursors.index(since) + 1:]
            state["logs"] = logs
        if include is not None:
            state = {k: v for k, v in state.items() if k in include or k == "initialized"}
        if state["initialized"] and self.restart_at_initialized:
            # knob cluster_start_restart=initialized: the restart begins right after the first
            # answer that shows the cluster initialized (see _restart_rest_and_nginx)
            self.restart_at_initialized = False
            self._restart_rest_and_nginx()
        return state

    def start_cluster(self, body):
        if self.agent or self.starting:
            raise RestError(400, "cluster_already_initialized",
                            "This manager machine is already part of a Cloudify Manager cluster")
        host_ip = body.get("host_ip") or ""
        node_name = body.get("node_name") or ""
        if not host_ip or not node_name:
            raise RestError(400, "bad_parameters_error",
                            "Both host_ip and node_name are required to start a cluster")
        self.starting = True
        self.cluster_error = None
        threading.Thread(target=self._start_cluster, args=(host_ip, node_name, body), daemon=True).start()
        return {"initialized": False}

    def _start_cluster(self, host_ip, node_name, body):
        try:
            self._cluster_log("Starting the cluster")
            time.sleep(0.3)
            if host_ip not in local_ips() | {"localhost"}:
                raise RuntimeError(f"Failed to start consul: the bind address {host_ip} is not "
                                   "an address of this machine")
            self._cluster_log(f"Consul agent started on {host_ip}")
            if knobs().get("cluster_start_restart", "initializing") == "initializing":
                self._restart_rest_and_nginx(wait=True)
            credentials = secrets.token_hex(16)
            state = {
                "node_name": node_name, "host_ip": host_ip, "credentials": credentials,
                "term": 1, "voted_for": node_name, "members_version": 1,
                "members": {node_name: {
                    "host_ip": host_ip, "public_ip": self.config["manager"]["public_ip"] or host_ip,
                    "database_ip": self.config["postgresql_client"]["host"],
                    "credentials": credentials, "required": {}, "initialized": True,
                    "options": body.get("options") or {}}},
                "removed_credentials": [],
            }
            clustermod.save_state(state)
            clustermod.write_cluster_marker(state)
            self._start_agent(state)
            self._cluster_log("Syncthing file replication configured")
            self._cluster_log(f"Node {node_name} is the active node")
            self.restart_at_initialized = knobs().get("cluster_start_restart") == "initialized"
            self.starting = False
            self._cluster_log("HA Cluster configuration complete")
        except Exception as exc:  # pylint: disable=broad-except
            self.cluster_error = str(exc)
            self.starting = False
            self._cluster_log(f"Error: {exc}")

    def _restart_rest_and_nginx(self, wait=False):
        """4.6's `cluster start` restarts the REST service and nginx while it initializes
        (cloudify_cli/commands/cluster.py _wait_for_cluster_initialized: "we also restart the
        restservice and nginx, which might lead to intermittent connection errors"): nginx
        answers 502 while the REST service behind it starts again, for
        `cluster_start_restart_seconds` (knob; inferred: the restart is in the private premium
        package). `wait`: the initialization goes on once the REST service is back."""
        seconds = float(knobs().get("cluster_start_restart_seconds",
                                    CLUSTER_START_RESTART_SECONDS) or 0)
        self._cluster_log("Restarting the REST service and nginx")
        self.gateway_until = max(self.gateway_until, time.monotonic() + seconds)
        if wait and seconds:
            time.sleep(seconds)

    # ---- maintenance mode (rest-service maintenance.py, resources_v2_1/maintenance_mode.py) ----
    @staticmethod
    def _maintenance_state():
        try:
            return json.loads(MAINTENANCE_STATUS.read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _write_maintenance(state):
        MAINTENANCE_STATUS.parent.mkdir(parents=True, exist_ok=True)
        MAINTENANCE_STATUS.write_text(json.dumps(state))

    @functools.cached_property
    def day2(self):
        """Snapshots, executions, secrets and the license (snapshots.py)."""
        return day2mod.Day2(self)

    def running_executions(self):
        """Executions in no end state (4.6: every tenant's, system workflows included): the
        emulated snapshot workflows', and knob running_executions=<n> standing for n that have
        not ended (a failover leaves such: cloudify-4.6-day2.md section 5.1)."""
        return self.day2.running_executions()

    def maintenance_gate(self, route, headers, remote, method="GET"):
        """4.6's maintenance_mode_handler, a before_request hook (before authentication):
        while the mode is activated every endpoint but the allowed ones answers 503
        `maintenance_mode_active`; `activating` turns `activated` at the first request once no
        execution runs; while executions still run, no endpoint emulated here is blocked (4.6
        blocks only execution, deployment and snapshot changes then)."""
        endpoint = endpoint_of(route)
        if endpoint is None:  # "failed to route the request - this is a 404. Abort early."
            return
        host = (headers.get("Host") or "").rsplit(":", 1)[0]
        if remote in ("127.0.0.1", host) and headers.get("X-BYPASS-MAINTENANCE"):
            return  # utils.is_internal_request and is_bypass_maintenance_mode
        state = self._maintenance_state()
        if not state:
            return
        if state["status"] == "activating":
            if self.running_executions():
                # _handle_activating_mode: snapshot creation and restore, new executions
                name = endpoint.split("/", 1)[1]
                if (name == "snapshots/<string:snapshot_id>" and method in FORBIDDEN_METHODS) \
                        or name == "snapshots/<string:snapshot_id>/restore" \
                        or (name == "executions" and method in FORBIDDEN_METHODS):
                    raise RestError(503, "entering_maintenance_mode", MAINTENANCE_REFUSED)
                return
            state = dict(state, status="activated", activated_at=_timestamp(),
                         remaining_executions=[])
            self._write_maintenance(state)
        if any(word in endpoint for word in ALLOWED_MAINTENANCE_ENDPOINTS):
            return
        if state["status"] == "activated":
            raise RestError(503, "maintenance_mode_active", MAINTENANCE_REFUSED)

    def maintenance(self, method, action, username):
        deactivated = {"status": "deactivated", "activated_at": "", "activation_requested_at": "",
                       "remaining_executions": [], "requested_by": ""}
        state = self._maintenance_state()
        if action is None:
            if method != "GET":
                raise RestError(405, "method_not_allowed", f"Method {method} not allowed")
            if state and state["status"] == "activating":
                state["remaining_executions"] = self.running_executions()
            return 200, state or deactivated
        if method != "POST":
            raise RestError(405, "method_not_allowed", f"Method {method} not allowed")
        if action == "activate":
            if state:
                return 304, None
            running, now = self.running_executions(), _timestamp()
            state = {"status": "activating" if running else "activated",
                     "activated_at": "" if running else now, "activation_requested_at": now,
                     "remaining_executions": running, "requested_by": username or ""}
            self._write_maintenance(state)
            return 200, state
        if action == "deactivate":
            if not state:
                return 304, None
            MAINTENANCE_STATUS.unlink(missing_ok=True)
            return 200, deactivated
        raise RestError(400, "bad_parameters_error", f"Invalid action: {action}, Valid action "
                        "values are: ['activate', 'deactivate']")

    # ---- REST dispatch ---------------------------------------------------------------------------
    def dispatch(self, method, path, query, headers, body, port, remote=None):
        if self.config["manager"]["security"]["ssl_enabled"] and port == PORTS["rest"]:
            if path.startswith("/api/"):
                raise RestError(400, "", "", bare=True)
        if not path.startswith(API + "/"):
            raise RestError(404, "not_found_error", f"Requested resource {path} not found")
        route = path[len(API):]
        agent = self.agent
        if agent and agent.removed:
            raise RestError(400, "removed_from_cluster",
                            "This node was removed from the Cloudify Manager cluster")
        if agent and not agent.is_active():
            # an elected node still starting its services names no active node
            leader = agent.leader_ip() if agent.leader != agent.name else None
            raise RestError(400, "not_cluster_master",
                            "This node is not the active node of the Cloudify Manager cluster"
                            + (f"; the active node is {leader}" if leader else ""))
        # premium's license check is a before_request hook registered before maintenance mode's
        self.day2.license_gate(endpoint_of(route))
        self.maintenance_gate(route, headers, remote, method)
        user = self.authenticate(headers)
        if route.startswith("/cluster") and knobs().get("edition") == "community":
            raise RestError(404, "missing_premium_package_error",
                            "This feature requires the Cloudify premium package")
        action = action_of(method, route)
        if action:
            self.authorize(user, action, headers.get("Tenant"))
        return self.route(method, route, query, body, user["username"])

    def authenticate(self, headers):
        """The user whose Basic credentials came, or 401 with 4.6's text (security/
        authentication.py, app_logging.py raise_unauthorized_user_error; a user shows as
        <User username=`x`>: storage/models_base.py __repr__)."""
        header = headers.get("Authorization") or ""
        if not header.startswith("Basic "):
            raise RestError(401, "unauthorized_error",
                            "User unauthorized: No authentication info provided")
        try:
            username, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise RestError(401, "unauthorized_error",
                            "User unauthorized: No authentication info provided") from None
        try:
            user, good = self.store.authenticate(username, password)
        except Exception:  # pylint: disable=broad-except
            raise RestError(500, "internal_server_error",
                            "Internal error: could not reach the database") from None
        if user is None:
            raise RestError(401, "unauthorized_error", "User unauthorized: Authentication "
                            f"failed for <User username=`{username}`>")
        if not good:
            raise RestError(401, "unauthorized_error", "User unauthorized: Authentication "
                            f"failed for <User username=`{username}`>. Bad credentials or "
                            "locked account")
        return user

    def authorize(self, user, action, tenant):
        """4.6's @authorize (security/authorization.py): the Tenant header's tenant must exist;
        the user's roles are its roles in that tenant plus its system role; one of them must be
        allowed the action (PERMISSIONS). Without a Tenant header only the system role counts."""
        if tenant:
            try:
                exists = self.store.tenant_exists(tenant)
            except Exception:  # pylint: disable=broad-except
                raise RestError(500, "internal_server_error",
                                "Internal error: could not reach the database") from None
            if not exists:
                raise RestError(403, "forbidden_error", "Authorization failed: Tried to "
                                f"authenticate with invalid tenant name: {tenant}")
        if not user["active"]:
            raise RestError(403, "forbidden_error",
                            f"Authorization failed: User `{user['username']}` is deactivated")
        roles = {user["role"]} | ({user["tenants"][tenant]} if tenant in user["tenants"] else set())
        if roles & set(PERMISSIONS[action]):
            return
        raise RestError(403, "forbidden_error",
                        f"User `{user['username']}` is not permitted to perform the action "
                        f"{action}" + (f" in the tenant `{tenant}`" if tenant else ""))

    def route(self, method, route, query, body, username=None):
        include = query.get("_include", [None])[0]
        include = include.split(",") if include else None
        if route == "/users" and method == "PUT":
            return self.create_user(body if isinstance(body, dict) else {})
        m = re.fullmatch(r"/users/([^/]+)", route)
        if m:
            return self.user(method, m.group(1), query, body if isinstance(body, dict) else {})
        if route == "/status" and method == "GET":
            return 200, {"status": "running",
                         "services": [{"display_name": s, "instances": [{"state": "running"}]}
                                      for s in SERVICES]}
        if route == "/maintenance":  # `cfy status` reads it after /status
            return self.maintenance(method, None, username)
        m = re.fullmatch(r"/maintenance/([^/]+)", route)
        if m:
            return self.maintenance(method, m.group(1), username)
        if route == "/cluster":
            if method == "GET":
                return 200, self.cluster_state(include, query.get("since", [None])[0])
            if method == "PUT":
                return 200, self.start_cluster(body or {})
            if method == "PATCH":
                return 200, self.set_active(body or {})
        if route == "/cluster/nodes" and method == "GET":
            if not self.agent:  # 4.6: 404 "if the cluster isn't created yet" (ref section 0.3)
                raise RestError(404, "not_found_error", "Cluster not initialized: there are no "
                                "cluster nodes")
            items = self.agent.nodes()
            return 200, {"items": items, "metadata": {"pagination": {
                "total": len(items), "size": len(items), "offset": 0}}}
        m = re.fullmatch(r"/cluster/nodes/([^/]+)", route)
        if m:
            return self.node(method, m.group(1), body or {})
        if route == "/blueprints" and method == "GET":
            items = self.store.blueprints(DEFAULT_TENANT)
            return 200, {"items": items, "metadata": {"pagination": {
                "total": len(items), "size": len(items), "offset": 0}}}
        m = re.fullmatch(r"/blueprints/([^/]+)", route)
        if m:
            return self.blueprint(method, m.group(1), query, body)
        m = re.fullmatch(r"/snapshots(?:/([^/]+)(?:/(archive|restore))?)?", route)
        if m:
            return self.day2.snapshots(method, m.group(1), m.group(2), query, body, username)
        m = re.fullmatch(r"/executions(?:/([^/]+))?", route)
        if m and method == "GET":
            if m.group(1):
                return 200, self.day2.execution(m.group(1))
            return 200, self.day2.executions(query)
        m = re.fullmatch(r"/secrets(?:/([^/]+))?", route)
        if m:
            return self.day2.secrets(method, m.group(1), body, username)
        if route == "/license":
            return self.day2.license(method, body)
        if route == "/version" and method == "GET":
            return 200, day2mod.version_data()
        raise RestError(404, "not_found_error", f"Requested resource {API}{route} not found")

    # ---- users (4.6 rest-service resources_v3/users.py; the rest is the premium package's) ----
    def create_user(self, body):
        """PUT /users: {username, password, role (a system role, default `default`)}."""
        for key, optional in (("username", False), ("password", False), ("role", True)):
            if key not in body:
                if optional:
                    continue
                raise RestError(400, "bad_parameters_error", f"Missing {key} in json request body")
            if not isinstance(body[key], str):  # get_json_and_verify_params's type check
                raise RestError(400, "bad_parameters_error",
                                f"{key} parameter is expected to be of type unicode but is of "
                                f"type {type(body[key]).__name__}")
        password = body["password"]
        validate_password(password)
        role = body.get("role", "default")
        validate_inputs({"username": body["username"], "role": role})
        verify_system_role(role)
        if not self.store.create_user(body["username"], password, role):
            # inferred: premium's create_user; 4.6's storage turns an SQL error into this
            raise RestError(409, "storage_error", "SQL Storage error: duplicate key value "
                            f"violates unique constraint: user {body['username']} exists")
        # 201: what 4.6's client waits for (cloudify_rest_client/users.py create:
        # expected_status_code=201; any other status is an error to `cfy users create`)
        return 201, user_response(self.store.user(body["username"]), get_data=False)

    def user(self, method, username, query, body):
        """GET (user_get), POST (user_update: password or role), DELETE /users/<username>."""
        validate_inputs({"username": username})
        if method == "GET":
            user = self.store.user(username)
            if user is None:
                raise RestError(404, "not_found_error",
                                f"Requested `User` with ID `{username}` was not found")
            get_data = query.get("_get_data", ["false"])[0].lower() in ("true", "1", "yes")
            return 200, user_response(user, get_data)
        if method == "POST":
            password, role = body.get("password"), body.get("role")
            if password and role:
                raise RestError(400, "bad_parameters_error", "Both `password` and `role` provided")
            if password:
                validate_password(password)
            elif role:
                verify_system_role(role)
            else:
                raise RestError(400, "bad_parameters_error",
                                "Neither `password` nor `role` provided")
            if not self.store.update_user(username, password=password or None,
                                          role=role or None):
                raise RestError(404, "not_found_error",
                                f"Requested `User` with ID `{username}` was not found")
            return 200, user_response(self.store.user(username), get_data=False)
        if method == "DELETE":
            user = self.store.user(username)
            if user is None or not self.store.delete_user(username):
                raise RestError(404, "not_found_error",
                                f"Requested `User` with ID `{username}` was not found")
            return 200, user_response(user, get_data=False)
        raise RestError(405, "method_not_allowed", f"Method {method} not allowed")

    def _need_cluster(self):
        if not self.agent:
            raise RestError(400, "not_cluster_member",
                            "This manager is not part of a Cloudify Manager cluster")
        return self.agent

    def node(self, method, name, body):
        agent = self._need_cluster() if method != "GET" or self.agent else None
        if agent is None:
            raise RestError(404, "not_found_error", f"Node {name} not found")
        if method == "GET":
            if name not in agent.members:
                raise RestError(404, "not_found_error", f"Node {name} not found")
            return 200, agent.node_view(name)
        if method == "PUT":
            return 200, self.add_node(agent, name, body)
        if method == "PATCH":
            if name not in agent.members:
                raise RestError(404, "not_found_error", f"Node {name} not found")
            with agent.lock:
                agent.members[name].setdefault("options", {}).update(body.get("options") or {})
                agent.state["members_version"] += 1
                clustermod.save_state(agent.state)
                return 200, agent.node_view(name)
        if method == "DELETE":
            if name not in agent.members:
                raise RestError(404, "not_found_error", f"Node {name} is not a member of the cluster")
            if name == agent.name:
                raise RestError(400, "bad_parameters_error",
                                f"Cannot remove {name}: it is the active node; set another node "
                                "as the active node first")
            view = agent.remove_member(name)
            log(f"[cluster] node {name} removed from the cluster")
            return 200, view
        raise RestError(405, "method_not_allowed", f"Method {method} not allowed")

    def add_node(self, agent, name, body):
        host_ip, database_ip = body.get("host_ip"), body.get("database_ip")
        if not host_ip or not body.get("node_name"):
            raise RestError(400, "bad_parameters_error", "host_ip and node_name are required")
        ours = str(self.config["postgresql_client"]["host"]).partition(":")[0]
        if (database_ip or "") != ours:
            raise RestError(400, "incompatible_cluster_architecture",
                            f"The joining node uses the database at {database_ip}, but this "
                            f"cluster's database is at {ours}: a cluster has one database")
        for other, member in agent.members.items():
            if other == name or member["host_ip"] == host_ip:
                raise RestError(409, "conflict_error",
                                f"Node {other} with address {member['host_ip']} is already a "
                                "member of the cluster")
        try:
            index = clustermod.remote_index(host_ip, timeout=3.0)
        except (OSError, ValueError) as exc:
            raise RestError(400, "cluster_join_error",
                            f"Could not read the joining node's file replication index at "
                            f"{host_ip}:{PORTS['sync']}: {exc}") from None
        # the RPMs' own files (agent packages) are on every installed host: only what a user
        # put there counts (inferred: 4.6's check is in the private premium package)
        index = [rel for rel in index if rel.split("/", 1)[0] in USER_DATA_DIRS]
        if index:
            raise RestError(400, "cluster_join_error",
                            f"The joining node is not empty: it holds {len(index)} resource file(s) "
                            "(blueprints, deployments or plugins); only an empty manager can join")
        credentials = secrets.token_hex(16)
        required = {"consul": {"encrypt": secrets.token_hex(8)},
                    "syncthing": {"device_id": secrets.token_hex(8)}}
        view = agent.add_member(name, host_ip, database_ip, credentials, required)
        log(f"[cluster] node {name} ({host_ip}) added to the cluster")
        return view

    def set_active(self, body):
        agent = self._need_cluster()
        name = body.get("master")
        if name not in agent.members:
            raise RestError(404, "not_found_error", f"Node {name} is not a member of the cluster")
        view = agent.node_view(name)
        if not view["online"]:
            raise RestError(400, "bad_parameters_error",
                            f"Can't set node {name} as the active, it's offline")
        if name != agent.name:
            try:
                agent.transfer_to(name)
            except (OSError, ValueError) as exc:
                raise RestError(500, "internal_server_error",
                                f"Could not reach node {name}: {exc}") from None
        return self.cluster_state()

    def blueprint(self, method, blueprint_id, query, body):
        target = RESOURCES / "blueprints" / DEFAULT_TENANT / blueprint_id
        if method == "GET":
            for item in self.store.blueprints(DEFAULT_TENANT):
                if item["id"] == blueprint_id:
                    return 200, item
            raise RestError(404, "not_found_error", f"Requested `Blueprint` with ID `{blueprint_id}` was not found")
        if method == "PUT":
            main = query.get("application_file_name", ["blueprint.yaml"])[0]
            if any(b["id"] == blueprint_id for b in self.store.blueprints(DEFAULT_TENANT)):
                raise RestError(409, "conflict_error", f"blueprint with id={blueprint_id} already exists")
            _extract_blueprint(body if isinstance(body, bytes) else b"", target, main)
            self.store.add_blueprint(DEFAULT_TENANT, blueprint_id, main)
            return 201, {"id": blueprint_id, "main_file_name": main, "tenant_name": DEFAULT_TENANT}
        if method == "DELETE":
            if not self.store.delete_blueprint(DEFAULT_TENANT, blueprint_id):
                raise RestError(404, "not_found_error", f"Requested `Blueprint` with ID `{blueprint_id}` was not found")
            for path in sorted(target.rglob("*"), reverse=True) if target.exists() else []:
                path.unlink() if path.is_file() else path.rmdir()
            if target.exists():
                target.rmdir()
            return 200, {"id": blueprint_id}
        raise RestError(405, "method_not_allowed", f"Method {method} not allowed")


def endpoint_of(route):
    """4.6's endpoint name of a route (rest/endpoint_mapper.py), None when nothing routes it."""
    return next((name for pattern, name in ENDPOINTS if pattern.fullmatch(route)), None)


def action_of(method, route):
    """The 4.6 authorization action of an emulated endpoint (its @authorize), or None."""
    if route == "/users":
        return {"PUT": "user_create", "GET": "user_list"}.get(method)
    if re.fullmatch(r"/users/[^/]+", route):
        return {"GET": "user_get", "POST": "user_update", "DELETE": "user_delete"}.get(method)
    if route == "/status":
        return "status_get"
    if route == "/version":
        return "version_get"
    if route == "/maintenance":
        return {"GET": "maintenance_mode_get"}.get(method)
    if re.fullmatch(r"/maintenance/[^/]+", route):
        return "maintenance_mode_set"
    if route == "/cluster":
        return {"GET": "cluster_status_get", "PUT": "cluster_start_or_join",
                "PATCH": "cluster_config_update"}.get(method)
    if route == "/cluster/nodes":
        return "cluster_node_list"
    if re.fullmatch(r"/cluster/nodes/[^/]+", route):
        return {"GET": "cluster_node_get", "PUT": "cluster_node_validate",
                "PATCH": "cluster_node_config_update",
                "DELETE": "cluster_node_remove"}.get(method)
    if route == "/blueprints":
        return "blueprint_list"
    if re.fullmatch(r"/blueprints/[^/]+", route):
        return {"GET": "blueprint_get", "PUT": "blueprint_upload",
                "DELETE": "blueprint_delete"}.get(method)
    # rest-service resources_v3_1/snapshots.py (Snapshots, SnapshotsId, SnapshotsIdArchive,
    # SnapshotsIdRestore)
    if route == "/snapshots":
        return {"GET": "snapshot_list"}.get(method)
    if re.fullmatch(r"/snapshots/[^/]+", route):
        return {"GET": "snapshot_get", "PUT": "snapshot_create", "DELETE": "snapshot_delete",
                "PATCH": "snapshot_status_update"}.get(method)
    if re.fullmatch(r"/snapshots/[^/]+/archive", route):
        return {"GET": "snapshot_download", "PUT": "snapshot_upload"}.get(method)
    if re.fullmatch(r"/snapshots/[^/]+/restore", route):
        return {"POST": "snapshot_restore"}.get(method)
    if route == "/license":  # resources_v3_1/license.py License
        return {"PUT": "license_upload", "GET": "license_list"}.get(method)
    if route == "/executions":  # resources_v1/executions.py Executions, ExecutionsId
        return {"GET": "execution_list"}.get(method)
    if re.fullmatch(r"/executions/[^/]+", route):
        return {"GET": "execution_get"}.get(method)
    if route == "/secrets":  # resources_v3/secrets.py Secrets, SecretsKey
        return {"GET": "secret_list"}.get(method)
    if re.fullmatch(r"/secrets/[^/]+", route):
        return {"GET": "secret_get", "PUT": "secret_create", "PATCH": "secret_update",
                "DELETE": "secret_delete"}.get(method)
    return None


def validate_inputs(values):
    """4.6 rest_utils.validate_inputs: not empty, at most 256, letters, digits, '-', '.', '_'
    only (what Python 2's urllib.quote leaves alone), starting with a letter."""
    for name, value in values.items():
        prefix = f"The `{name}` argument"
        if not value:
            raise RestError(400, "bad_parameters_error", f"{prefix} is empty")
        if len(value) > 256:
            raise RestError(400, "bad_parameters_error",
                            f"{prefix} is too long. Maximum allowed length is 256 characters")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", value, re.ASCII):
            raise RestError(400, "bad_parameters_error",
                            f'{prefix} contains illegal characters. Only letters, digits and the '
                            'characters "-", "." and "_" are allowed')
        if value[0] not in string.ascii_letters:
            raise RestError(400, "bad_parameters_error", f"{prefix} must begin with a letter")


def validate_password(password):
    """4.6 rest_utils.validate_and_decode_password."""
    if not password:
        raise RestError(400, "bad_parameters_error", "The password is empty")
    if len(password) > 256:
        raise RestError(400, "bad_parameters_error",
                        "The password is too long. Maximum allowed length is 256 characters")
    if len(password) < 5:
        raise RestError(400, "bad_parameters_error",
                        "The password is too short. Minimum allowed length is 5 characters")


def verify_system_role(role):
    """4.6 rest_utils.verify_role(role, is_system_role=True)."""
    if role in SYSTEM_ROLES:
        return
    if role in TENANT_ROLES:
        raise RestError(400, "bad_parameters_error",
                        f"Role `{role}` is a tenant_role and cannot be assigned as a system_role")
    raise RestError(400, "bad_parameters_error", f"Invalid role: `{role}`. Valid system_role "
                    f"roles are: {[str(r) for r in SYSTEM_ROLES]}")


def user_response(user, get_data):
    """4.6's UserResponse (responses_v3.py) of User.to_response (management_models.py): without
    _get_data, `tenants` and `groups` are counts."""
    tenants = {t: {"tenant-role": r, "roles": [r]} for t, r in user["tenants"].items()}
    out = {"username": user["username"], "role": user["role"], "active": user["active"],
           "last_login_at": user["last_login_at"], "is_locked": False,
           "group_system_roles": {}, "tenants": tenants if get_data else len(tenants),
           "groups": [] if get_data else 0, "tenant_roles": None}
    if get_data:
        out["tenant_roles"] = {"direct": dict(user["tenants"]), "groups": {}}
    return out


def _timestamp():
    """4.6's utils.get_formatted_timestamp: UTC, milliseconds, a 'Z'."""
    return f"{datetime.datetime.utcnow().isoformat()[:-3]}Z"


def _extract_blueprint(archive, target, main):
    """A blueprint upload as 4.6's REST service takes it: a tar(.gz) archive of ONE directory,
    whose files become the blueprint's resources; `main` must be among them."""
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
            members = tar.getmembers()
            tops = {m.name.split("/", 1)[0] for m in members}
            if len(tops) != 1 or any(m.name.startswith("/") or ".." in m.name.split("/") or
                                     not (m.isfile() or m.isdir()) for m in members):
                raise RestError(400, "invalid_blueprint_error",
                                "Archive must contain exactly 1 directory")
            top = tops.pop()
            files = {m.name[len(top) + 1:]: m for m in members if m.isfile()}
            if main not in files:
                raise RestError(400, "invalid_blueprint_error",
                                f"{main} does not exist in the application directory")
            target.mkdir(parents=True, exist_ok=True)
            for name, member in files.items():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                (target / name).write_bytes(tar.extractfile(member).read())
    except tarfile.TarError as exc:
        raise RestError(400, "invalid_blueprint_error", f"Not a blueprint archive: {exc}") from None


def make_handler(service, port):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            return

        def _serve(self, method):
            status = 500
            url = urlparse(self.path)
            if service.bad_gateway():  # nginx up, the REST service not yet
                status = 502
                self._bad_gateway()
                audit({"kind": "rest", "method": method, "path": url.path, "status": status,
                       "port": port, "remote": self.client_address[0], "t": time.time()})
                return
            upload = None
            try:
                # cloudify_rest_client labels every request application/json, a blueprint
                # archive or a license too: the service reads those as bytes, as 4.6's does;
                # a snapshot archive goes to a file under the file server root first
                # (upload_manager.py receive_uploaded_data), a chunk at a time
                if method == "PUT" and STREAMED_UPLOAD.fullmatch(url.path):
                    upload = self._body_to_file()
                    body = day2mod.UploadedFile(upload)
                else:
                    raw = self._body()
                    as_bytes = method == "PUT" and RAW_BODY.fullmatch(url.path)
                    if raw and not as_bytes and "json" in (self.headers.get("Content-Type") or ""):
                        body = json.loads(raw)
                    else:
                        body = raw or None
                status, payload = service.dispatch(method, url.path, parse_qs(url.query),
                                                   self.headers, body, port,
                                                   self.client_address[0])
                self._send(status, payload)
            except RestError as err:
                status = err.status
                if err.bare:
                    self._send(status, None)
                else:
                    self._send(status, err.body())
            except Exception as exc:  # pylint: disable=broad-except
                status = 500
                self._send(500, {"message": f"Internal error: {exc}",
                                 "error_code": "internal_server_error",
                                 "server_traceback": traceback.format_exc()})
            finally:
                if upload:
                    Path(upload).unlink(missing_ok=True)
                audit({"kind": "rest", "method": method, "path": url.path, "status": status,
                       "port": port, "remote": self.client_address[0], "t": time.time()})

        def _body(self):
            """The request body: by Content-Length, or chunked (requests streams an upload from
            a generator, as cloudify_rest_client sends a blueprint archive)."""
            out = io.BytesIO()
            self._copy_body(out)
            return out.getvalue()

        def _body_to_file(self):
            root = RESOURCES if RESOURCES.is_dir() else Path(tempfile.gettempdir())
            fd, path = tempfile.mkstemp(dir=root, prefix="tmp")
            with os.fdopen(fd, "wb") as out:
                self._copy_body(out)
            return path

        def _copy_body(self, out):
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline().strip():  # trailers, then the blank line
                            pass
                        return
                    self._copy_exactly(size, out)
                    self.rfile.readline()
            self._copy_exactly(int(self.headers.get("Content-Length") or 0), out)

        def _copy_exactly(self, size, out):
            while size > 0:
                chunk = self.rfile.read(min(size, 1 << 16))
                if not chunk:
                    raise ConnectionError("the client closed the connection mid-body")
                out.write(chunk)
                size -= len(chunk)

        def _bad_gateway(self):
            self._body()
            data = BAD_GATEWAY.encode()
            self.send_response(502, "Bad Gateway")
            self.send_header("Server", "nginx/1.13.7")
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send(self, status, payload):
            if isinstance(payload, day2mod.FileBody):
                self._send_file(status, payload)
                return
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            if payload is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send_file(self, status, payload):
            with open(payload.path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Disposition",
                                 f"attachment; filename={payload.filename}")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                shutil.copyfileobj(fh, self.wfile, 1 << 16)

        def do_GET(self):  # noqa: N802
            self._serve("GET")

        def do_PUT(self):  # noqa: N802
            self._serve("PUT")

        def do_PATCH(self):  # noqa: N802
            self._serve("PATCH")

        def do_DELETE(self):  # noqa: N802
            self._serve("DELETE")

        def do_POST(self):  # noqa: N802
            self._serve("POST")

    return Handler


# bodies the service reads as bytes whatever their Content-Type says, and the one it streams
STREAMED_UPLOAD = re.compile(re.escape(API) + r"/snapshots/[^/]+/archive")
RAW_BODY = re.compile(re.escape(API) + r"/(blueprints/[^/]+|license)")
# what 4.6's nginx answers while the REST service behind it is down or starting
BAD_GATEWAY = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body bgcolor=\"white\">\r\n"
               "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.13.7</center>"
               "\r\n</body>\r\n</html>\r\n")
# after a boot, nginx answers 502 this long before the REST service takes requests (4.6: every
# boot; the REST service's unit has no start timeout, TimeoutStartSec=0, and at boot it starts
# beside every other service: cloudify-4.6.md sections 0.3, 0.4); knob boot_502_seconds.
# 30 s: inferred, "tens of seconds", the order of the 48 s 4.6's own installer gives the REST
# service to open its port (cfy_manager/utils/network.py wait_for_port: 24 tries, 2 s apart)
BOOT_502_SECONDS = 30.0
# how long the restart of the REST service and nginx during `cluster start` makes nginx answer
# 502 (the restart is in the private premium package); knob cluster_start_restart_seconds.
# 20 s: inferred, one REST service start on a running host, within the same 48 s
CLUSTER_START_RESTART_SECONDS = 20.0


def serve_forever(boot=False):
    service = Service()
    if not REST_CONFIG.exists():
        # the install's nginx step started nginx, its restservice step has not run: nothing
        # behind it, so every request is a 502, for good (cloudify-4.6.md section 0.4)
        service.gateway_until = math.inf
        log("nginx answers 502: no REST service is installed behind it")
    elif boot:
        service.booted_at = time.monotonic()
        window = knobs().get("boot_502_seconds", BOOT_502_SECONDS)
        log(f"booting: nginx answers 502 for {float(window or 0):g}s (boot_502_seconds)")
    if REST_CONFIG.exists():
        threading.Thread(target=service._db_probe_loop, daemon=True, name="db-probe").start()  # pylint: disable=protected-access
        clustermod.start_sync_server()
    servers = []
    http = ThreadingHTTPServer(("0.0.0.0", PORTS["rest"]), make_handler(service, PORTS["rest"]))
    servers.append(http)
    security = service.config["manager"]["security"]
    if security["ssl_enabled"]:
        https = ThreadingHTTPServer(("0.0.0.0", PORTS["rest_ssl"]),
                                    make_handler(service, PORTS["rest_ssl"]))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(EXTERNAL_CERT, EXTERNAL_KEY)  # what the nginx step deployed
        https.socket = ctx.wrap_socket(https.socket, server_side=True)
        servers.append(https)
    for server in servers:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    log(f"services started (pid {os.getpid()})")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    log("services stopped")


# ---- process control -------------------------------------------------------------------------
def running_pid():
    try:
        pid = int(PIDFILE.read_text())
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            if any(line.startswith("State:") and "Z" in line.split()[1] for line in fh):
                return None
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        return pid if b"cfyemu.service" in cmdline else None
    except (OSError, ValueError):
        return None


def start(wait=30.0, boot=False):
    """Start the daemon in the background (double fork); return once REST answers locally
    (after a boot, nginx's 502 at first: see BOOT_502_SECONDS)."""
    if running_pid():
        return True
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork():
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        SERVICE_LOG.parent.mkdir(parents=True, exist_ok=True)
        out = os.open(SERVICE_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(devnull, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        PIDFILE.write_text(str(os.getpid()))
        try:
            os.execv(sys.executable, [sys.executable, "-m", "cfyemu.service", "run",
                                      *(["--boot"] if boot else [])])
        finally:
            os._exit(1)
    os.waitpid(pid, 0)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if _listening(PORTS["rest"]):
            return True
        time.sleep(0.05)
    return False


def stop(wait=15.0):
    pid = running_pid()
    if not pid:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and running_pid():
        time.sleep(0.05)
    if running_pid():
        os.kill(pid, signal.SIGKILL)
    PIDFILE.unlink(missing_ok=True)
    # its main thread shows as a zombie while its other threads still exit, holding the REST
    # port: a start right after would see the old listener answer, then reset (a restart at
    # the restservice step, nginx running since the nginx step)
    while time.monotonic() < deadline and _listening(PORTS["rest"]):
        time.sleep(0.05)


def _listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def main(argv):
    cmd = argv[1] if len(argv) > 1 else "run"
    if cmd == "run":
        serve_forever(boot="--boot" in argv[2:])
    elif cmd == "start":  # the boot (BOOT_SCRIPT): what enabled systemd units start
        if not CONFIG.exists():
            return 0  # nothing installed: nothing to start at boot
        # an install that failed after its nginx step left its units enabled (nginx alone, or
        # from the restservice step on the manager's services): they start at boot without
        # /etc/cloudify/.install, as on 4.6
        return 0 if start(boot=True) else 1
    elif cmd == "stop":
        stop()
    elif cmd == "restart":
        stop()
        return 0 if start() else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv) or 0)
