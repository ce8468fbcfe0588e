"""`cfy`: the emulated cloudify-cli 4.6 (profiles, cluster, blueprints, status).

Follows ../shared/cloudify-4.6.md section 4: exact messages, the `HA Cluster nodes` table,
--json, exit codes (errors print their message and exit 1), credentials from the profile or
CLOUDIFY_USERNAME / CLOUDIFY_PASSWORD / CLOUDIFY_TENANT, and the profile failover: every request
walks `_cluster` in order (5 s connect timeout), skips nodes that are unreachable, answer
not_cluster_master or removed_from_cluster, moves the node that answers to the front and saves.
"""

import argparse
import json
import os
import random
import string
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from . import profile as profiles
from .common import DEFAULT_TENANT, AuditedCommand
from .rest import NetworkFailure, call

MUTATING = {("profiles", "use"), ("profiles", "set"), ("profiles", "delete"),
            ("cluster", "start"), ("cluster", "remove"), ("cluster", "set-active"),
            ("cluster", "update-profile"), ("blueprints", "upload"), ("blueprints", "delete")}
SKIP_CODES = {"not_cluster_master", "removed_from_cluster"}


class CliError(Exception):
    pass


# ---- output ----------------------------------------------------------------------------------
def table(title, columns, rows):
    """A PrettyTable-like table (cloudify-cli prints its tables with prettytable, centred)."""
    cells = [[str(c) for c in columns]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(row):
        return "|" + "|".join(f" {v.center(w)} " for v, w in zip(row, widths)) + "|"

    out = [title, rule, line(cells[0]), rule] + [line(r) for r in cells[1:]] + [rule, ""]
    print("\n".join(out), flush=True)


def say(message):
    print(message, flush=True)


# ---- credentials and the client ----------------------------------------------------------------
def current_profile(required=True):
    name = profiles.active_name()
    ctx = profiles.load(name) if name else None
    if ctx is None and required:
        raise CliError("This command is only available when using a manager. Please use the "
                       "`cfy profiles use` command to connect to a Cloudify Manager.")
    return ctx


def credentials(ctx):
    username = os.environ.get("CLOUDIFY_USERNAME") or ctx.get("manager_username")
    password = os.environ.get("CLOUDIFY_PASSWORD") or ctx.get("manager_password")
    tenant = os.environ.get("CLOUDIFY_TENANT") or ctx.get("manager_tenant") or DEFAULT_TENANT
    if not username or not password:
        raise CliError("Manager Username or Manager Password not set. Provide them with "
                       "`cfy profiles set -u USERNAME -p PASSWORD` or the CLOUDIFY_USERNAME "
                       "and CLOUDIFY_PASSWORD environment variables")
    return username, password, tenant


class Client:
    def __init__(self, ctx):
        self.ctx = ctx
        self.username, self.password, self.tenant = credentials(ctx)

    def _url(self, ip, port, protocol, path):
        return f"{protocol}://{ip}:{port}/api/v3.1{path}"

    def _one(self, ip, method, path, body, port=None, protocol=None, timeout=5.0):
        ctx = self.ctx
        return call(method, self._url(ip, port or ctx.get("rest_port") or 80,
                                      protocol or ctx.get("rest_protocol") or "http", path),
                    self.username, self.password, self.tenant, body, timeout=timeout,
                    cafile=ctx.get("rest_certificate") or None)

    def request(self, method, path, body=None, expect=(200, 201)):
        nodes = self.ctx.get("_cluster") or []
        if not nodes:
            ip = self.ctx["manager_ip"]
            try:
                status, payload = self._one(ip, method, path, body)
            except NetworkFailure as exc:
                raise CliError(f"Can't connect to the manager at {ip}: {exc}") from None
            return self._check(status, payload, expect)
        for index, node in enumerate(list(nodes)):
            try:
                status, payload = self._one(node["manager_ip"], method, path, body,
                                            node.get("rest_port"), node.get("rest_protocol"))
            except NetworkFailure:
                continue
            if status == 400 and (payload or {}).get("error_code") in SKIP_CODES:
                continue
            if index:
                nodes.insert(0, nodes.pop(index))
                self.ctx["_cluster"] = nodes
                self.ctx["manager_ip"] = node["manager_ip"]
                profiles.save(self.ctx)
            return self._check(status, payload, expect)
        raise CliError("An error occurred on the server: No active node in the cluster!")

    @staticmethod
    def _check(status, payload, expect):
        if status in expect:
            return payload
        message = (payload or {}).get("message") or f"HTTP {status}"
        raise CliError(f"An error occurred on the server: {message}")


def cluster_client():
    """A client for cluster commands: refuses unless the manager is clustered."""
    client = Client(current_profile())
    state = client.request("GET", "/cluster")
    if not state.get("initialized"):
        raise CliError("This manager is not part of a Cloudify Manager cluster")
    return client


def node_state(node):
    if node.get("master"):
        return "leader"
    return "replica" if node.get("online") else "offline"


def ok(value):
    return "OK" if value else "FAIL"


def refresh_profile(ctx, nodes, verbose):
    known = {n["manager_ip"] for n in ctx.get("_cluster") or []}
    live = {n["host_ip"] for n in nodes}
    cluster_nodes = [n for n in ctx.get("_cluster") or [] if n["manager_ip"] in live]
    for node in nodes:
        if node["host_ip"] not in known:
            if verbose:
                say(f"Adding cluster node {node['host_ip']} to local profile")
            cluster_nodes.append({"name": node["name"], "manager_ip": node["host_ip"],
                                  "rest_port": ctx.get("rest_port"),
                                  "rest_protocol": ctx.get("rest_protocol"),
                                  "rest_certificate": ctx.get("rest_certificate"),
                                  "ssh_user": ctx.get("ssh_user"), "ssh_key": ctx.get("ssh_key"),
                                  "ssh_port": ctx.get("_ssh_port")})
    if cluster_nodes != (ctx.get("_cluster") or []):
        ctx["_cluster"] = cluster_nodes
        profiles.save(ctx)
    return cluster_nodes


# ---- commands ----------------------------------------------------------------------------------
def cmd_cluster(args):
    sub = args.cluster_command
    if sub == "start":
        return cluster_start(args)
    client = cluster_client()
    if sub == "status":
        say("Cloudify Manager cluster ready")
    elif sub == "update-profile":
        say("Fetching the cluster nodes list...")
        nodes = client.request("GET", "/cluster/nodes")["items"]
        cluster_nodes = refresh_profile(client.ctx, nodes, verbose=True)
        say(f"Profile is up to date with {len(cluster_nodes)} nodes")
    elif sub == "set-active":
        set_active(client, args.name)
    elif sub == "nodes":
        nodes_command(client, args)
    return 0


def cluster_start(args):
    ctx = current_profile()
    client = Client(ctx)
    state = client.request("GET", "/cluster")
    if state.get("initialized"):
        raise CliError("This manager machine is already part of a Cloudify Manager cluster")
    host_ip = args.cluster_host_ip or ctx["manager_ip"]
    node_name = args.cluster_node_name or "cloudify_manager_" + "".join(
        random.choice(string.ascii_uppercase + string.digits) for _ in range(6))
    options = dict(o.split("=", 1) for o in args.options or [])
    say("Creating a new Cloudify Manager cluster")
    client.request("PUT", "/cluster", {"host_ip": host_ip, "node_name": node_name,
                                       "options": options})
    deadline = time.monotonic() + args.timeout
    cursor = None
    while time.monotonic() < deadline:
        query = "/cluster?_include=logs,initialized,error" + (f"&since={cursor}" if cursor else "")
        state = client.request("GET", query)
        for entry in state.get("logs") or []:
            stamp = datetime.fromtimestamp(entry["timestamp"] / 1e6, timezone.utc).isoformat()
            say(f"{stamp} {entry['message']}")
            cursor = entry["cursor"]
        if state.get("error"):
            raise CliError(f"Error while configuring the Cloudify Manager cluster: {state['error']}")
        if state.get("initialized"):
            break
        time.sleep(0.5)
    else:
        raise CliError(f"Timed out after {args.timeout} seconds waiting for the cluster to start")
    ctx["_cluster"] = [{"name": node_name, "manager_ip": host_ip,
                        "rest_port": ctx.get("rest_port"), "rest_protocol": ctx.get("rest_protocol"),
                        "rest_certificate": ctx.get("rest_certificate"),
                        "ssh_user": ctx.get("ssh_user"), "ssh_key": ctx.get("ssh_key"),
                        "ssh_port": ctx.get("_ssh_port")}]
    profiles.save(ctx)
    say(f"Cloudify Manager cluster started at {host_ip}.")
    return 0


def set_active(client, name):
    nodes = {n["name"]: n for n in client.request("GET", "/cluster/nodes")["items"]}
    if name not in nodes:
        raise CliError(f"Invalid command. {name} is not a member of the cluster.")
    if not nodes[name]["online"]:
        raise CliError(f"Can't set node {name} as the active, it's offline")
    if nodes[name]["master"]:
        say(f"{name} is already the current active node!")
        return
    client.request("PATCH", "/cluster", {"master": name})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            current = {n["name"]: n for n in client.request("GET", "/cluster/nodes")["items"]}
            if current.get(name, {}).get("master"):
                say(f"{name} set as the new active node")
                return
        except CliError:
            pass
        time.sleep(0.5)
    raise CliError(f"Timed out waiting for {name} to become the active node")


def nodes_command(client, args):
    sub = args.nodes_command
    if sub == "list":
        nodes = client.request("GET", "/cluster/nodes")["items"]
        refresh_profile(client.ctx, nodes, verbose=False)
        if args.json:
            say(json.dumps(nodes, indent=2))
            return
        rows = [[n["name"], n["host_ip"], node_state(n), ok(n["checks"].get("consul")),
                 ok(n["checks"].get("services")),
                 "REMOTE" if n.get("remote_database") else ok(n["checks"].get("database")),
                 ok(n["checks"].get("heartbeat"))] for n in nodes]
        table("HA Cluster nodes", ["name", "host_ip", "state", "consul", "cloudify services",
                                   "database", "heartbeat"], rows)
    elif sub == "get":
        node = client.request("GET", f"/cluster/nodes/{args.name}")
        if args.json:
            say(json.dumps(node, indent=2))
            return
        table(f"Node {args.name}", ["name", "host_ip", "state", "initialized"],
              [[node["name"], node["host_ip"], node_state(node), node.get("initialized")]])
        say("Node options:")
        for key, value in (node.get("options") or {}).items():
            say(f"\t{key}: {value}")
    elif sub == "remove":
        names = [n["name"] for n in client.request("GET", "/cluster/nodes")["items"]]
        if args.name not in names:
            raise CliError(f"Invalid command. {args.name} is not a member of the cluster.")
        client.request("DELETE", f"/cluster/nodes/{args.name}")
        say(f"Node {args.name} was removed successfully!")


def cmd_profiles(args):
    sub = args.profiles_command
    if sub == "use":
        return profiles_use(args)
    ctx = current_profile(required=sub != "list")
    if sub == "show-current":
        view = {k: v for k, v in ctx.items() if k != "manager_password"}
        if args.json:
            say(json.dumps(view, indent=2, default=str))
        else:
            table("Active profile:", ["name", "manager_ip", "rest_port", "rest_protocol",
                                      "manager_username", "manager_tenant", "cluster"],
                  [[ctx["_profile_name"], ctx["manager_ip"], ctx.get("rest_port"),
                    ctx.get("rest_protocol"), ctx.get("manager_username"),
                    ctx.get("manager_tenant"),
                    ", ".join(n["manager_ip"] for n in ctx.get("_cluster") or [])]])
    elif sub == "set":
        for key, attr in (("manager_username", "manager_username"),
                          ("manager_password", "manager_password"),
                          ("manager_tenant", "manager_tenant"),
                          ("rest_certificate", "rest_certificate")):
            value = getattr(args, attr)
            if value is not None:
                ctx[key] = value
        if args.ssl is not None:
            on = args.ssl.lower() in ("on", "true", "yes")
            ctx["rest_protocol"], ctx["rest_port"] = ("https", 443) if on else ("http", 80)
        profiles.save(ctx)
        say("Settings saved successfully")
    elif sub == "list":
        root = profiles.home() / "profiles"
        names = sorted(p.name for p in root.iterdir()) if root.exists() else []
        active = profiles.active_name()
        table("Profiles:", ["name", "manager_ip"],
              [[("*" if n == active else "") + n, (profiles.load(n) or {}).get("manager_ip")]
               for n in names])
    return 0


def profiles_use(args):
    name = args.profile_name or args.manager_ip
    existing = profiles.load(name)
    protocol = "https" if args.ssl else "http"
    port = args.rest_port or (443 if args.ssl else 80)
    ctx = existing or profiles.new(name, args.manager_ip)
    ctx.update({"manager_ip": args.manager_ip, "rest_port": port, "rest_protocol": protocol})
    for key, value in (("manager_username", args.manager_username),
                       ("manager_password", args.manager_password),
                       ("manager_tenant", args.manager_tenant),
                       ("rest_certificate", args.rest_certificate)):
        if value is not None:
            ctx[key] = value
    for key, env in (("manager_username", "CLOUDIFY_USERNAME"),
                     ("manager_password", "CLOUDIFY_PASSWORD"),
                     ("manager_tenant", "CLOUDIFY_TENANT")):
        if not ctx.get(key) and os.environ.get(env):
            ctx[key] = os.environ[env]
    ctx["manager_tenant"] = ctx.get("manager_tenant") or DEFAULT_TENANT
    say(f"Attempting to connect to {args.manager_ip} through port {port}, using {protocol} "
        f"(SSL mode: {bool(args.ssl)})...")
    if not args.skip_credentials_validation:
        ctx["_cluster"] = []
        Client(ctx).request("GET", "/status")
    say(f"Using manager {args.manager_ip} with port {port}")
    say(f"Initializing profile {name}...")
    profiles.save(ctx)
    profiles.set_active(name)
    say("Initialization completed successfully")
    return 0


def cmd_blueprints(args):
    client = Client(current_profile())
    if args.blueprints_command == "upload":
        path = Path(args.path)
        say(f"Uploading blueprint {path}...")
        client.request("PUT", f"/blueprints/{args.blueprint_id}?application_file_name={path.name}",
                       path.read_bytes())
        say(f"Blueprint uploaded. The blueprint's id is {args.blueprint_id}")
    elif args.blueprints_command == "delete":
        client.request("DELETE", f"/blueprints/{args.blueprint_id}")
        say(f"Blueprint deleted")
    elif args.blueprints_command == "list":
        items = client.request("GET", "/blueprints")["items"]
        if args.json:
            say(json.dumps(items, indent=2))
        else:
            say("Listing all blueprints...")
            table("Blueprints:", ["id", "main_file_name", "created_at", "tenant_name"],
                  [[b["id"], b["main_file_name"], b["created_at"], b["tenant_name"]] for b in items])
    return 0


def cmd_status(args):
    ctx = current_profile()
    client = Client(ctx)
    say(f"Retrieving manager services status... [ip={ctx['manager_ip']}]")
    status = client.request("GET", "/status")
    if args.json:
        say(json.dumps(status, indent=2))
        return 0
    table("Services:", ["service", "status"],
          [[s["display_name"], s["instances"][0]["state"] if s.get("instances") else "unknown"]
           for s in status["services"]])
    return 0


def parser():
    p = argparse.ArgumentParser(prog="cfy")
    p.add_argument("-v", "--verbose", action="count")
    sub = p.add_subparsers(dest="command", required=True)

    prof = sub.add_parser("profiles").add_subparsers(dest="profiles_command", required=True)
    use = prof.add_parser("use")
    use.add_argument("manager_ip")
    use.add_argument("--profile-name")
    use.add_argument("-u", "--manager-username")
    use.add_argument("-p", "--manager-password")
    use.add_argument("-t", "--manager-tenant")
    use.add_argument("--rest-port", type=int)
    use.add_argument("--ssl", action="store_true")
    use.add_argument("-c", "--rest-certificate")
    use.add_argument("--skip-credentials-validation", action="store_true")
    pset = prof.add_parser("set")
    pset.add_argument("-u", "--manager-username")
    pset.add_argument("-p", "--manager-password")
    pset.add_argument("-t", "--manager-tenant")
    pset.add_argument("-c", "--rest-certificate")
    pset.add_argument("--ssl")
    show = prof.add_parser("show-current")
    show.add_argument("--json", action="store_true")
    prof.add_parser("list")

    clus = sub.add_parser("cluster").add_subparsers(dest="cluster_command", required=True)
    start = clus.add_parser("start")
    start.add_argument("--timeout", type=int, default=900)
    start.add_argument("--cluster-host-ip")
    start.add_argument("--cluster-node-name")
    start.add_argument("-o", "--options", action="append")
    clus.add_parser("status")
    clus.add_parser("update-profile")
    sa = clus.add_parser("set-active")
    sa.add_argument("name")
    nodes = clus.add_parser("nodes").add_subparsers(dest="nodes_command", required=True)
    nl = nodes.add_parser("list")
    nl.add_argument("--json", action="store_true")
    ng = nodes.add_parser("get")
    ng.add_argument("name")
    ng.add_argument("--json", action="store_true")
    nr = nodes.add_parser("remove")
    nr.add_argument("name")

    bps = sub.add_parser("blueprints").add_subparsers(dest="blueprints_command", required=True)
    up = bps.add_parser("upload")
    up.add_argument("path")
    up.add_argument("-b", "--blueprint-id", required=True)
    bl = bps.add_parser("list")
    bl.add_argument("--json", action="store_true")
    bd = bps.add_parser("delete")
    bd.add_argument("blueprint_id")

    st = sub.add_parser("status")
    st.add_argument("--json", action="store_true")
    return p


def _command_key(argv):
    words = [a for a in argv if not a.startswith("-")]
    if len(words) >= 3 and words[:2] == ["cluster", "nodes"]:
        return ("cluster", words[2])
    return tuple(words[:2])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    record = AuditedCommand("cfy", argv, _command_key(argv) in MUTATING)
    code = 1
    try:
        args = parser().parse_args(argv)
        handler = {"cluster": cmd_cluster, "profiles": cmd_profiles, "blueprints": cmd_blueprints,
                   "status": cmd_status}[args.command]
        code = handler(args) or 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except CliError as err:
        print(str(err), flush=True)
        code = 1
    finally:
        record.finish(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
