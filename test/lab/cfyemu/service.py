"""The emulated manager's services in one daemon: the REST API (80, or 443 with SSL), file
replication (22000) and, once clustered, the cluster agent (8300, 8301, 8500).

Started by `cfy_manager install` and at boot (/etc/lab/boot.d/cloudify-manager, the lab's
stand-in for enabled systemd units). `python -m cfyemu.service start|stop|run`.
"""

import base64
import io
import json
import os
import re
import secrets
import signal
import socket
import ssl
import string
import subprocess
import sys
import tarfile
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from . import cluster as clustermod
from .common import (CONFIG, DEFAULT_TENANT, EXTERNAL_CERT, EXTERNAL_KEY, PIDFILE,
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
    **{action: ("sys_admin",) for action in (
        "cluster_status_get", "cluster_start_or_join", "cluster_config_update",
        "cluster_node_get", "cluster_node_list", "cluster_node_validate",
        "cluster_node_config_update", "cluster_node_remove",
        "user_get", "user_list", "user_create", "user_delete", "user_update")},
    "blueprint_get": _ALL, "blueprint_list": _ALL,
    "blueprint_upload": ("sys_admin", "manager", "user"),
    "blueprint_delete": ("sys_admin", "manager", "user"),
}
# the system roles of 4.6's authorization.conf (`roles`, type system_role), in its order
SYSTEM_ROLES = ("sys_admin", "default")
TENANT_ROLES = ("manager", "user", "operations", "viewer")
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
        self.gateway_until = 0.0  # until then nginx answers 502 (a boot, serve_forever)
        self.lock = threading.RLock()
        state = clustermod.load_state()
        if state:
            self._start_agent(state)

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
            self.starting = False
            self._cluster_log("HA Cluster configuration complete")
        except Exception as exc:  # pylint: disable=broad-except
            self.cluster_error = str(exc)
            self.starting = False
            self._cluster_log(f"Error: {exc}")

    # ---- REST dispatch ---------------------------------------------------------------------------
    def dispatch(self, method, path, query, headers, body, port):
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
            leader = agent.leader_ip()
            raise RestError(400, "not_cluster_master",
                            "This node is not the active node of the Cloudify Manager cluster"
                            + (f"; the active node is {leader}" if leader else ""))
        user = self.authenticate(headers)
        if route.startswith("/cluster") and knobs().get("edition") == "community":
            raise RestError(404, "missing_premium_package_error",
                            "This feature requires the Cloudify premium package")
        action = action_of(method, route)
        if action:
            self.authorize(user, action, headers.get("Tenant"))
        return self.route(method, route, query, body)

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

    def route(self, method, route, query, body):
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
        if route == "/maintenance" and method == "GET":  # `cfy status` reads it after /status
            return 200, {"status": "deactivated", "activated_at": "", "activation_requested_at": "",
                         "remaining_executions": None, "requested_by": ""}
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
        return 200, user_response(self.store.user(body["username"]), get_data=False)

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
        return self.cluster_state(["initialized", "consul"])

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


def action_of(method, route):
    """The 4.6 authorization action of an emulated endpoint (its @authorize), or None."""
    if route == "/users":
        return {"PUT": "user_create", "GET": "user_list"}.get(method)
    if re.fullmatch(r"/users/[^/]+", route):
        return {"GET": "user_get", "POST": "user_update", "DELETE": "user_delete"}.get(method)
    if route == "/status":
        return "status_get"
    if route == "/maintenance":
        return "maintenance_mode_get"
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
            if time.monotonic() < service.gateway_until:  # nginx up, the REST service not yet
                status = 502
                self._bad_gateway()
                audit({"kind": "rest", "method": method, "path": url.path, "status": status,
                       "port": port, "remote": self.client_address[0], "t": time.time()})
                return
            try:
                raw = self._body()
                # cloudify_rest_client labels every request application/json, a blueprint
                # archive too: the service reads an upload as bytes, as 4.6's does
                upload = method == "PUT" and url.path.startswith(f"{API}/blueprints/")
                if raw and not upload and "json" in (self.headers.get("Content-Type") or ""):
                    body = json.loads(raw)
                else:
                    body = raw or None
                status, payload = service.dispatch(method, url.path, parse_qs(url.query),
                                                   self.headers, body, port)
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
                audit({"kind": "rest", "method": method, "path": url.path, "status": status,
                       "port": port, "remote": self.client_address[0], "t": time.time()})

        def _body(self):
            """The request body: by Content-Length, or chunked (requests streams an upload from
            a generator, as cloudify_rest_client sends a blueprint archive)."""
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                parts = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline().strip():  # trailers, then the blank line
                            pass
                        return b"".join(parts)
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

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
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            if payload is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

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


# what 4.6's nginx answers while the REST service behind it is down or starting
BAD_GATEWAY = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body bgcolor=\"white\">\r\n"
               "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.13.7</center>"
               "\r\n</body>\r\n</html>\r\n")
# after a boot, nginx answers 502 this long before the REST service takes requests (4.6: every
# boot; its length depends on the host, cloudify-4.6.md section 0.3); knob boot_502_seconds
BOOT_502_SECONDS = 5.0


def serve_forever(boot=False):
    service = Service()
    if boot:
        window = knobs().get("boot_502_seconds", BOOT_502_SECONDS)
        service.gateway_until = time.monotonic() + float(window or 0)
        log(f"booting: nginx answers 502 for {float(window or 0):g}s")
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
        try:
            with socket.create_connection(("127.0.0.1", PORTS["rest"]), timeout=0.5):
                return True
        except OSError:
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


def main(argv):
    cmd = argv[1] if len(argv) > 1 else "run"
    if cmd == "run":
        serve_forever(boot="--boot" in argv[2:])
    elif cmd == "start":  # the boot (BOOT_SCRIPT): what enabled systemd units start
        if not CONFIG.exists():
            return 0  # nothing installed: nothing to start at boot
        # an install that failed after its restservice step left its units enabled: they
        # start at boot without /etc/cloudify/.install, as on 4.6
        return 0 if start(boot=True) else 1
    elif cmd == "stop":
        stop()
    elif cmd == "restart":
        stop()
        return 0 if start() else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv) or 0)
