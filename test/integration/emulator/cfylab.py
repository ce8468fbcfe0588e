"""Helpers for the emulator's own tests: run its commands in a host, call its REST API from the
machine, read its files, build clusters the seed's way. Every wait is a bounded poll."""

import base64
import json
import re
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass

import yaml

from lab.emulator import CLI_PACKAGE, MANAGER_PACKAGE, ensure_license
from lab.formula import ProfileLoader
from lab.manual import build_cluster, manager_config, write_config
from lab.proc import LabError, wait_until

MANAGERS = ("mgr1", "mgr2", "mgr3")
# the emulator's own tests use their own passwords (recognisable in a failure's output)
ADMIN_PASSWORD = "EmuAdmin-pw-1"
DB_PASSWORD = "EmuDb-pw-1"
API = "/api/v3.1"

# the reference's exact texts (cloudify-4.6.md sections 4 and 5)
FLAGS_TOGETHER = ("The --join-cluster, --database-ip, --admin-password and --postgres-password "
                  "flags must be used together")
FLAGS_TOGETHER_NO_POSTGRES = ("The --join-cluster, --database-ip and --admin-passwordflags must "
                              "be used together")
ADMIN_NEEDS_CLEAN_DB = ("The --admin-password argument can only be used in conjunction with the "
                        "--clean-db flag.")
SSL_REQUIRED = "When using an external database, SSL must be enabled"
NOT_A_CLUSTER = "This manager is not part of a Cloudify Manager cluster"
ALREADY_A_CLUSTER = "This manager machine is already part of a Cloudify Manager cluster"
NO_ACTIVE_NODE = "An error occurred on the server: No active node in the cluster!"
TABLE_COLUMNS = ["name", "host_ip", "state", "consul", "cloudify services", "database", "heartbeat"]
NODE_KEYS = {"name", "host_ip", "public_ip", "master", "online", "initialized", "credentials",
             "required", "remote_database", "options", "checks"}
CHECK_KEYS = {"consul", "services", "database", "heartbeat"}
# `cfy cluster start` prints each polled log line as "<ISO time> <message>"
# `cluster start` log lines: 4.6 prints utcfromtimestamp(..).isoformat(), whole seconds, no offset
ISO_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d \S")


# ---- commands in a host ------------------------------------------------------------------------
def run_in(host, argv, env=None):
    """Run argv in the host with a clean environment (plus `env`), as root in a login shell
    would; never raises: tests assert on the CompletedProcess."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": "/root", "LANG": "C.UTF-8", **(env or {})}
    return host.run([str(a) for a in argv], check=False, env=env)


def _shown(proc):
    return f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"


def ok(proc):
    """Assert the command succeeded; return its stdout."""
    assert proc.returncode == 0, _shown(proc)
    return proc.stdout


def failed(proc):
    """Assert the command exited 1; return stdout + stderr (where its message is)."""
    assert proc.returncode == 1, _shown(proc)
    return proc.stdout + proc.stderr


def cfy(host, *args, env=None):
    return run_in(host, ["cfy", *args], env=env)


def cfy_manager(host, *args):
    return run_in(host, ["cfy_manager", *args])


ANSI = re.compile(r"\x1b\[[0-9;]*m")
INSTALLER_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - \[[A-Z_]+\] - [A-Z]+ - (.*)")


def last_line(text):
    """The last non-empty line; for 4.6's installer, only its message (without the colours and
    the `asctime - [NAME] - LEVEL - ` its console lines start with)."""
    lines = [ANSI.sub("", line) for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    installer = INSTALLER_LINE.fullmatch(lines[-1])
    return installer.group(1) if installer else lines[-1]


# ---- files in a host ---------------------------------------------------------------------------
def read_yaml(host, path):
    text = host.read(path)
    return None if text is None else yaml.load(text, Loader=ProfileLoader)  # noqa: S506


def write_profile(host, name, context):
    """Write a CLI profile as the CLI would, and make it the active one."""
    host.write(f"/root/.cloudify/profiles/{name}/context",
               "!CloudifyProfileContext\n" + yaml.safe_dump(context, default_flow_style=False))
    host.write("/root/.cloudify/active.profile", name)


def mode_of(host, path):
    return host.run(["stat", "-c", "%a", path]).stdout.strip()


# ---- REST from the machine ---------------------------------------------------------------------
@dataclass
class Answer:
    status: int
    body: object  # decoded JSON, or None
    raw: bytes
    content_type: str


_NO_PROXY = urllib.request.ProxyHandler({})


def rest(ip, method, path, auth=("admin", ADMIN_PASSWORD), tenant="default_tenant", body=None,
         port=80, https=False, cafile=None, timeout=5):
    """One call to an emulated manager's REST API; auth=None sends no Authorization header."""
    headers = {}
    if tenant:
        headers["Tenant"] = tenant
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    scheme = "https" if https else "http"
    request = urllib.request.Request(f"{scheme}://{ip}:{port}{API}{path}", data=data,
                                     method=method, headers=headers)
    handlers = [_NO_PROXY]
    if https:
        context = ssl.create_default_context(cafile=cafile)
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=timeout) as resp:
            status, raw, ctype = resp.status, resp.read(), resp.headers.get("Content-Type") or ""
    except urllib.error.HTTPError as err:
        status, raw, ctype = err.code, err.read(), err.headers.get("Content-Type") or ""
    # nginx's 502 page while the REST service starts is HTML, not JSON (cloudify-4.6.md 0.3)
    return Answer(status, json.loads(raw) if raw and "json" in ctype else None, raw, ctype)


def answers_rest(ip, port=80):
    """True when something accepts a connection on ip:port."""
    try:
        with socket.create_connection((ip, port), timeout=1):
            return True
    except OSError:
        return False


def nodes(ip):
    """The node list a node's /cluster/nodes gives, by name (asserts a 200)."""
    answer = rest(ip, "GET", "/cluster/nodes")
    assert answer.status == 200, answer
    return {n["name"]: n for n in answer.body["items"]}


def active_ip(lab, names=MANAGERS):
    """The address of the node whose /status answers 200, or None."""
    for name in names:
        try:
            if rest(lab[name].ip, "GET", "/status", timeout=2).status == 200:
                return lab[name].ip
        except OSError:
            continue
    return None


def wait_for_nodes(lab, leader, expected, timeout=20):
    """Poll the leader's list until {name: state} equals expected (leader/replica/offline)."""
    seen = {}

    def settled():
        try:
            seen["states"] = {n: node_state(v) for n, v in nodes(lab[leader].ip).items()}
        except (OSError, AssertionError) as exc:
            seen["states"] = repr(exc)
        return seen["states"] == expected

    try:
        wait_until(settled, timeout, f"{leader}'s node list to be {expected}")
    except LabError as exc:
        raise AssertionError(f"{exc}; last seen: {seen.get('states')}") from None


def node_state(node):
    if node["master"]:
        return "leader"
    return "replica" if node["online"] else "offline"


# ---- the nodes table ---------------------------------------------------------------------------
def parse_table(text):
    """(title, columns, rows as dicts) of a CLI table."""
    lines = [line for line in text.splitlines() if line.strip()]  # 4.6 opens with a blank line
    title = lines[0]
    grid = [line for line in lines if line.startswith("|")]
    columns = [c.strip() for c in grid[0].strip("|").split("|")]
    rows = [dict(zip(columns, (c.strip() for c in line.strip("|").split("|"))))
            for line in grid[1:]]
    return title, columns, rows


# ---- building managers -------------------------------------------------------------------------
def prepare(lab, emulator, name, join=None, **sections):
    """Install the package and write config.yaml (0600) for a leader, or a joiner of `join`."""
    emulator.install_package(name, MANAGER_PACKAGE)
    config = manager_config(lab, name, ADMIN_PASSWORD, DB_PASSWORD,
                            join=lab[join].ip if join else None, **sections)
    write_config(lab, name, config)
    return config


def install(lab, emulator, name, join=None, **sections):
    """prepare() then `cfy_manager install`; returns the finished process (not asserted)."""
    prepare(lab, emulator, name, join=join, **sections)
    return cfy_manager(lab[name], "install")


def start_cluster(host):
    return cfy(host, "cluster", "start", "--cluster-node-name", host.name,
               "--cluster-host-ip", host.ip)


def build(lab, emulator, names=MANAGERS):
    """The seed's procedure by config.yaml (no secret on argv); returns once every node is up."""
    build_cluster(lab, emulator, list(names), ADMIN_PASSWORD, DB_PASSWORD)
    wait_for_nodes(lab, names[0], {n: "leader" if n == names[0] else "replica" for n in names})
    # a node's first database probe may still be under way: up means every check passes
    wait_until(lambda: all(all(n["checks"].values()) for n in nodes(lab[names[0]].ip).values()),
               10, "every check of every node to pass")
    return lab


def use_profile(host, target_ip, name, *extra):
    """`cfy profiles use` on host (with the admin's credentials), returning the process."""
    return cfy(host, "profiles", "use", target_ip, "--profile-name", name, "-u", "admin",
               "-p", ADMIN_PASSWORD, "-t", "default_tenant", *extra)


def install_cli(emulator, host_name="cli"):
    emulator.install_package(host_name, CLI_PACKAGE)


def blueprint_ids(lab):
    """Blueprints in the external database, read as postgres (independent of any manager);
    None when there is no cloudify_db at all."""
    if "cloudify_db" not in lab.db.databases():
        return None
    out = lab.db.query("SELECT id FROM blueprints ORDER BY id", dbname="cloudify_db").stdout
    return out.split()


def upload_blueprint(host, blueprint_id):
    """`cfy blueprints upload` of a one-line blueprint, from host's active profile. It has a
    directory of its own: 4.6's cfy uploads the blueprint's whole directory, as a tar.gz."""
    path = f"/root/blueprints/{blueprint_id}/blueprint.yaml"
    host.write(path, "tosca_definitions_version: cloudify_dsl_1_3\n")
    ensure_license(host)  # 4.6 refuses blueprints without one
    return cfy(host, "blueprints", "upload", path, "-b", blueprint_id)
