"""Driving the formula in the lab as an operator would, and reading what it did."""

import base64
import contextlib
import copy
import json
import os
import shlex
import sys
import urllib.parse
from pathlib import Path

import yaml

from .emulator import ensure_license

ORCH = "cloudify_ha.orch"


class OrchRun:
    """One `salt-run state.orch` run: its exit code and its steps by state ID."""

    def __init__(self, ret):
        self.ret = ret
        self.returncode = ret.returncode
        data = ret.data if isinstance(ret.data, dict) else {}
        data = data.get("data", data)
        chunks = next(iter(data.values()), {}) if data else {}
        self.steps = {}
        if isinstance(chunks, dict):
            for chunk in chunks.values():
                if isinstance(chunk, dict) and "__id__" in chunk:
                    self.steps[chunk["__id__"]] = chunk
        self.text = (ret.stdout or "") + (ret.stderr or "")

    def __getitem__(self, step_id):
        return self.steps[step_id]

    def results(self):
        return {sid: s["result"] for sid, s in self.steps.items()}

    def changed(self):
        return {sid for sid, s in self.steps.items() if s.get("changes")}

    def minion_states(self, step_id):
        """The states one salt.state step ran, {minion: {state key: chunk}}."""
        changes = self.steps[step_id].get("changes") or {}
        return changes.get("ret") or {}

    def comments(self):
        return "\n".join(str(s.get("comment", "")) for s in self.steps.values())

    def __repr__(self):
        lines = [f"<OrchRun rc={self.returncode}"]
        for sid, step in sorted(self.steps.items(), key=lambda i: i[1].get("__run_num__", 0)):
            lines.append(f"  {sid}: {step['result']} {str(step.get('comment'))[:300]}")
        if not self.steps:
            lines.append(self.text[-3000:])
        return "\n".join(lines) + ">"


def orch(salt_run_cli, cluster=None, test=False, timeout=900):
    args = ["state.orch", ORCH]
    if cluster:
        args.append("pillar=" + json.dumps({"cluster": cluster}))
    if test:
        args.append("test=True")
    return OrchRun(salt_run_cli.run(*args, _timeout=timeout))


def cfy_json(host, *args):
    """A `cfy ... --json` command on a lab host (its own profile and credentials)."""
    proc = host.run(["cfy", *args, "--json"], check=False)
    assert proc.returncode == 0, (host.name, args, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


def nodes(host, credentials=None):
    """`cfy cluster nodes list` on a host, parsed from the table people read: {name: row}
    with the columns name, host_ip, state, consul, cloudify services, database, heartbeat.
    ``credentials`` (username, password): in CLOUDIFY_* variables, as an admin on a CLI host
    whose profile holds none runs cfy."""
    env = None
    if credentials:
        env = dict(os.environ, CLOUDIFY_USERNAME=credentials[0], CLOUDIFY_PASSWORD=credentials[1],
                   CLOUDIFY_TENANT="default_tenant")
    proc = host.run(["cfy", "cluster", "nodes", "list"], check=False, env=env)
    assert proc.returncode == 0, (host.name, proc.stdout, proc.stderr)
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in proc.stdout.splitlines() if line.startswith("|")]
    header, body = rows[0], rows[1:]
    return {row[0]: dict(zip(header, row)) for row in body}


def cluster_healthy(lab, managers=("mgr1", "mgr2", "mgr3")):
    """The lab's cluster lists exactly `managers`, each the leader or a replica (asked on mgr2;
    False while it does not answer)."""
    try:
        listed = nodes(lab["mgr2"])
    except AssertionError:
        return False
    return sorted(listed) == sorted(managers) and all(n["state"] in ("leader", "replica")
                                                      for n in listed.values())


def member_state(lab, name, via="mgr2"):
    """`name`'s state in `cfy cluster nodes list`, asked on `via` first, then on mgr3, mgr2,
    mgr1 (a host whose profile cannot reach the active node fails); None when none answers."""
    for host in (via, "mgr3", "mgr2", "mgr1"):
        try:
            return nodes(lab[host]).get(name, {}).get("state")
        except AssertionError:
            continue
    return None


class ProfileLoader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
    """Reads the real cfy 4.6's profiles: `!CloudifyProfileContext` documents written by PyYAML
    3.10 on Python 2, every text tagged `!!python/unicode` (without touching yaml.SafeLoader)."""


ProfileLoader.add_constructor("!CloudifyProfileContext",
                              lambda loader, node: loader.construct_mapping(node, deep=True))
ProfileLoader.add_constructor("tag:yaml.org,2002:python/unicode",
                              lambda loader, node: loader.construct_scalar(node))


def blueprint_ids(lab):
    """The blueprints in the cluster's database: the data no failure may lose."""
    return lab.db.query("SELECT id FROM blueprints ORDER BY id", dbname="cloudify_db"
                        ).stdout.split()


def upload_blueprint(host, blueprint_id):
    """``cfy blueprints upload`` of a one-line blueprint from ``host`` (the real 4.6 cfy)."""
    # a directory of its own: 4.6's cfy uploads the blueprint's whole directory, as a tar.gz
    path = f"/root/blueprints/{blueprint_id}/blueprint.yaml"
    host.write(path, "tosca_definitions_version: cloudify_dsl_1_3\n")
    ensure_license(host)  # 4.6 refuses blueprints without one
    host.run(["cfy", "blueprints", "upload", path, "-b", blueprint_id])


def read_profile(host, profile="localhost"):
    """A profile's context on a lab host, or None."""
    text = host.read(f"/root/.cloudify/profiles/{profile}/context")
    return None if text is None else (yaml.load(text, Loader=ProfileLoader) or {})  # noqa: S506


def active_profile(host):
    """The name of the host's active cfy profile (4.6: `localhost` on the start node, the
    leader's address on a joiner), or None."""
    text = host.read("/root/.cloudify/active.profile")
    return text.strip() if text else None


def profile_entries(host, profile="localhost"):
    """{node name: address} of a profile's `_cluster`, or None when there is no profile."""
    data = read_profile(host, profile)
    return None if data is None else {n["name"]: n["manager_ip"] for n in data.get("_cluster") or []}


def minion_pillar(salt_cli, minion="mgr1"):
    """The cloudify_ha pillar as a minion renders it (unmasked), to derive broken variants."""
    ret = salt_cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt=minion)
    assert ret.returncode == 0, ret
    ret = salt_cli.run("pillar.item", "cloudify_ha", "unmask=True", minion_tgt=minion)
    assert ret.returncode == 0, ret
    return ret.data["cloudify_ha"]


def demo_hints(lab, salt_config_dir):
    """What `make demo` prints at its end, as [(label, argv)]: commands that work when pasted
    into a root shell while the lab is up (shlex.join them). Inside a host through nsenter, as
    the lab runs everything (`ip netns exec` would start a fresh mount namespace without the
    host's overlays: no /etc/cloudify, no cfy). The REST call reads the admin password from a
    0600 netrc file in the lab's directory: the hint never shows it."""
    netrc = lab.dir / "demo.netrc"
    netrc.touch(mode=0o600)
    netrc.write_text(f"machine {lab['mgr1'].ip} login admin password {lab.passwords['admin']}\n")
    salt_bin = Path(sys.prefix) / "bin"
    managers = ",".join(h.name for h in lab.managers)
    return [
        ("salt", [str(salt_bin / "salt"), "-c", str(salt_config_dir), "-L", managers,
                  "cloudify_ha.node_state"]),
        ("", [str(salt_bin / "salt-run"), "-c", str(salt_config_dir), "cloudify_ha.status"]),
        ("a manager", lab["mgr2"].prefix() + ["cfy", "cluster", "nodes", "list"]),
        ("REST", lab["cli"].prefix() + ["curl", "-sf", "--netrc-file", str(netrc),
                                        f"http://{lab['mgr1'].ip}/api/v3.1/cluster/nodes"]),
    ]


def with_manager_secrets(cloudify_ha, lab, cluster="lab"):
    """A copy of a pillar read from a host that is no manager (it holds no manager secret: see
    test/pillar/cloudify_ha.sls) with the managers' secrets added, as a shadowed pillar served
    to every minion must hold them."""
    out = copy.deepcopy(cloudify_ha)
    settings = out["clusters"][cluster]
    _cert, key = lab.client_cert("managers")
    settings["admin"]["password"] = lab.passwords["admin"]
    settings["database"].update(password=lab.passwords["db"],
                                postgres_password=lab.passwords["postgres"],
                                ca_key=lab.ca.key.read_text(), client_key=key.read_text())
    return out


# a shadowed pillar that differs per minion: each minion's own JSON file, else the default's;
# the values never become text of the pillar SLS (the py renderer returns the data)
PER_MINION_PILLAR = """#!py
import json
import pathlib


def run():
    here = pathlib.Path({directory!r})
    mine = here / ("{tag}-" + __grains__["id"] + ".json")
    return json.loads((mine if mine.exists() else here / "{tag}-default.json").read_text())
"""


def lb_view(cloudify_ha, cluster="lab"):
    """What a load balancer's pillar holds of a full pillar: no admin password and none of the
    managers' secrets (cloudify_ha_pillar.ROLE_SECRETS), the check user's password kept."""
    out = copy.deepcopy(cloudify_ha)
    settings = out["clusters"][cluster]
    settings["admin"].pop("password", None)
    for key in ("password", "postgres_password", "ca_key", "client_key"):
        settings["database"].pop(key, None)
    return out


def shadow_lb_pillar(pillar_dir, cloudify_ha, lb="lb", cluster="lab", **top_level):
    """shadow_pillar with the load balancer `lb` given only what its role holds (lb_view)."""
    return shadow_pillar(pillar_dir, cloudify_ha, per_minion={lb: lb_view(cloudify_ha, cluster)},
                         **top_level)


@contextlib.contextmanager
def shadow_pillar(pillar_dir, cloudify_ha, per_minion=None, **top_level):
    """Serve another cloudify_ha pillar (shadowing test/pillar/cloudify_ha.sls) for a while;
    ``per_minion`` {minion id: cloudify_ha}: what those minions get instead (a host holds only
    the secrets of its role)."""
    path = Path(pillar_dir) / "cloudify_ha.sls"
    previous = path.read_text() if path.exists() else None
    shadows = []
    if per_minion:
        tag = f"shadow-{os.urandom(4).hex()}"  # its own files: a shadow may shadow another
        for mid, data in [("default", cloudify_ha), *per_minion.items()]:
            shadow = Path(pillar_dir) / f"{tag}-{mid}.json"
            shadow.write_text(json.dumps(dict(top_level, cloudify_ha=data)))
            shadow.chmod(0o600)
            shadows.append(shadow)
        path.write_text(PER_MINION_PILLAR.format(directory=str(pillar_dir), tag=tag))
    else:
        path.write_text(yaml.safe_dump(dict(top_level, cloudify_ha=cloudify_ha),
                                       default_flow_style=False))
    path.chmod(0o600)
    try:
        yield path
    finally:
        for shadow in shadows:
            shadow.unlink()
        if previous is None:
            path.unlink()
        else:
            path.write_text(previous)


def deep(data):
    return copy.deepcopy(data)


def sizes(root):
    """{path: size} of every file under root: what files_containing(after=...) skips."""
    out = {}
    for path in Path(root).rglob("*"):
        if path.is_file() and not path.is_symlink():
            out[str(path)] = path.stat().st_size
    return out


def files_containing(root, needles, skip=(), after=None):
    """Every file under root whose bytes contain one of the needles: [(path, needle)].

    after: a sizes() snapshot; only what was written since is read (files that grew are read
    from their old end, files that are new in full), so that an earlier test's jobs and log
    lines do not count.
    """
    found = []
    for path in Path(root).rglob("*"):
        if not path.is_file() or path.is_symlink() or any(s in str(path) for s in skip):
            continue
        start = (after or {}).get(str(path), 0)
        try:
            with open(path, "rb") as fh:
                fh.seek(start)
                data = fh.read()
        except OSError:
            continue
        for needle in needles:
            if needle.encode() in data:
                found.append((str(path), needle))
    return found


def encodings(secret, username=None):
    """Every way a secret may be written that a test should look for: as it is, JSON-, YAML-,
    Python- and shell-quoted, URL-encoded, base64 (alone and as HTTP Basic's user:secret)."""
    forms = {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1], secret.replace("'", "''"),
             shlex.quote(secret), urllib.parse.quote(secret), urllib.parse.quote(secret, safe=""),
             urllib.parse.quote_plus(secret), base64.b64encode(secret.encode()).decode()}
    if username:
        forms.add(base64.b64encode(f"{username}:{secret}".encode()).decode())
    return forms


def leaky_logs(host):
    """{path: (mode, text)} of the two logs 4.6 writes secrets into (cloudify-4.6.md 0.4)."""
    return {path: (host.run(["stat", "-c", "%a", path]).stdout.strip(), host.read(path))
            for path in ("/var/log/cloudify/manager/cfy_manager.log",
                         "/root/.cloudify/logs/cli.log") if host.exists(path)}


def http_get(host, url, username, password, timeout=3):
    """(status, body) of a GET from inside a lab host, with Basic auth; (0, error) when nothing
    answered."""
    script = (
        "import base64, sys, urllib.request, urllib.error\n"
        "req = urllib.request.Request(sys.argv[1], headers={'Authorization': 'Basic ' + "
        "base64.b64encode(sys.stdin.read().encode()).decode(), 'Tenant': 'default_tenant'})\n"
        "try:\n"
        "    r = urllib.request.urlopen(req, timeout=float(sys.argv[2])); print(r.status); "
        "print(r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code); print(e.read().decode())\n"
        "except Exception as e:\n"
        "    print(0); print(e)\n")
    # the credentials travel on stdin, never on argv
    proc = host.run([sys.executable, "-c", script, url, str(timeout)],
                    input=f"{username}:{password}")
    status, _, body = proc.stdout.partition("\n")
    return int(status), body


def jobs_published(event_listener, since):
    """The jobs the master published since a time, in order: [(function, sorted minions)]."""
    return [(e.data.get("fun"), sorted(e.data.get("minions") or []))
            for e in event_listener.get_events([("master", "salt/job/*/new")], after_time=since)]


# ---- the reactor's rejoin runs, from the master's events ------------------------------------
def rejoin_runs(event_listener, since, masters=("master",)):
    """The reactor's `cloudify_ha.rejoin` runs fired since a time on the masters named (their
    salt-factories ids), in order: [(node, done, return)]. A run fired before `since` is not one
    of them, even if it returns after."""
    runs = []
    for master in masters:
        fired = event_listener.get_events([(master, "salt/run/*/new")], after_time=since)
        done = {e.tag.split("/")[2]: e.data.get("return") for e in
                event_listener.get_events([(master, "salt/run/*/ret")], after_time=since)}
        for event in fired:
            if event.data.get("fun") != "runner.cloudify_ha.rejoin":
                continue
            jid = event.tag.split("/")[2]
            runs.append((run_node(event.data.get("fun_args")), jid in done, done.get(jid)))
    return runs


def run_node(fun_args):
    """The node a rejoin run is for, from its fun_args ([{"node": ...}] or ["node=..."])."""
    for arg in fun_args or ():
        if isinstance(arg, dict) and "node" in arg:
            return str(arg["node"])
        if isinstance(arg, str) and arg.startswith("node="):
            return arg[len("node="):]
    return None


def rejoin_returns(event_listener, node, since, masters=("master",)):
    """The returns of the reactor's rejoin runs for `node` fired since a time."""
    return [ret for n, done, ret in rejoin_runs(event_listener, since, masters)
            if n == node and done]


def reactor_idle(event_listener, since, masters=("master",)):
    """True once every rejoin run the reactor fired since a time has returned."""
    return all(done for _, done, _ in rejoin_runs(event_listener, since, masters))
