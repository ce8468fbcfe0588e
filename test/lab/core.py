"""The lab: a bridge, its hosts, a CA, the external PostgreSQL; creation, reset, teardown, sweeping.

Every run gets a random 4-hex run id; its bridge, namespaces and veths carry the prefix
`chl<rid>` and its files live in /tmp/chl-<rid>/ (short: unix sockets are limited to 108 bytes).
`lab.json` there records what the run created and which process owns it, so that a later run's
sweeper removes what a crashed or killed run left behind, and two live runs never collide.
"""

import fcntl
import json
from concurrent.futures import ThreadPoolExecutor
import os
import re
import secrets
import shutil
import signal
import time
from pathlib import Path

import psutil
import salt.config

from .hosts import Host, Network, netns_list
from .pki import LabCA
from .postgres import PostgresServer
from .proc import LabError, alive, kill_all, run

BASE = Path("/tmp")
LOCK = BASE / "chl.lock"
RUN_DIR_RE = re.compile(r"^chl-([0-9a-f]{4})$")
NAME_RE = re.compile(r"^chl([0-9a-f]{4})")

DB_INDEX, LB_INDEX, CLI_INDEX, FIRST_MANAGER_INDEX = 2, 3, 4, 11


def _owner_record():
    me = psutil.Process()
    return {"pid": me.pid, "create_time": me.create_time()}


def _owner_alive(owner):
    try:
        proc = psutil.Process(owner["pid"])
    except (psutil.NoSuchProcess, KeyError, TypeError):
        return False
    return abs(proc.create_time() - owner.get("create_time", 0)) < 1 and alive(owner["pid"])


class Lab:
    """A set of isolated hosts on one bridge.

    managers: how many manager hosts (mgr1..mgrN). Extra host kinds: one DB host (`db`),
    one LB host (`lb`) and one CLI host (`cli`, an admin workstation with only `cfy`).
    """

    def __init__(self, managers=3, passwords=None):
        self.rid = secrets.token_hex(2)
        self.prefix = f"chl{self.rid}"
        self.dir = BASE / f"chl-{self.rid}"
        self.n_managers = managers
        self.network = None
        self.hosts = {}
        self.ca = None
        self.db = None
        self.extra_databases = {}  # name -> PostgresServer on a second address of the DB host
        self.minions = {}  # host name -> pytest-salt-factories minion daemon (set by fixtures)
        # recognisable and unique per run: tests look for them where they must never be
        self.passwords = passwords or {
            "postgres": "PgSecret-" + secrets.token_hex(8),
            "admin": "AdminSecret-" + secrets.token_hex(8),
            "db": "DbSecret-" + secrets.token_hex(8),
        }
        self.created = False

    # ---- facts -----------------------------------------------------------------------------
    @property
    def managers(self):
        return [h for h in self.hosts.values() if h.kind == "manager"]

    def __getitem__(self, name):
        return self.hosts[name]

    @property
    def subnet_cidr(self):
        return f"{self.network.prefix}.0/24"

    def facts(self):
        """What tests and pillar templates need to know about this run's lab."""
        return {
            "rid": self.rid,
            "dir": str(self.dir),
            "bridge": self.network.bridge,
            "master_ip": self.network.gateway,
            "subnet": self.subnet_cidr,
            "hosts": {n: h.describe() for n, h in self.hosts.items()},
            "db": {"host": self.db.host.ip if self.db else None, "port": 5432},
            "ca_cert": str(self.ca.cert) if self.ca else None,
        }

    # ---- creation --------------------------------------------------------------------------
    def create(self):
        sweep()
        with open(LOCK, "w", encoding="ascii") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            octet = _free_octet()
            self.dir.mkdir()
            self.dir.chmod(0o711)  # PostgreSQL runs as postgres and must reach its data dir
            self._record({"octet": octet, "state": "creating"})
        try:
            self._create(octet)
        except BaseException:
            self.destroy()
            raise
        self.created = True
        self._record({"octet": octet, "state": "up", "hosts": list(self.hosts)})
        return self

    def _record(self, extra):
        data = {"owner": _owner_record(), "prefix": self.prefix, "rid": self.rid}
        data.update(extra)
        (self.dir / "lab.json").write_text(json.dumps(data, indent=1))

    def _create(self, octet):
        self.network = Network(f"{self.prefix}br", octet)
        self.network.create()
        ns_dir = self.dir / "ns"
        ns_dir.mkdir()
        # persistent namespace files need a private parent mount
        run(["mount", "--bind", ns_dir, ns_dir])
        run(["mount", "--make-private", ns_dir])
        specs = [("db", "db", DB_INDEX), ("lb", "lb", LB_INDEX), ("cli", "cli", CLI_INDEX)]
        specs += [(f"mgr{i}", "manager", FIRST_MANAGER_INDEX + i - 1)
                  for i in range(1, self.n_managers + 1)]
        for name, kind, index in specs:
            host = Host(self.dir, self.prefix, name, kind, index, self.network)
            self.hosts[name] = host
            host.create()
        hosts_file = ("127.0.0.1 localhost\n" + f"{self.network.gateway} salt master\n"
                      + "".join(f"{h.ip} {h.name}\n" for h in self.hosts.values()))
        for host in self.hosts.values():
            host.set_hosts_file(hosts_file)
        self.ca = LabCA(self.dir / "pki").create()
        self.db = PostgresServer(self.hosts["db"], self.dir / "db", self.ca,
                                 self.passwords["postgres"], self.subnet_cidr).create()
        self.db.start()

    def add_database(self, name="db2", index=5):
        """A second PostgreSQL (for a second cluster) on the DB host, at another address of its
        own on the bridge (4.6 reaches its database on port 5432 only). Created once."""
        if name in self.extra_databases:
            return self.extra_databases[name]
        ip = self.network.address(index)
        self.hosts["db"].run(["ip", "addr", "add", f"{ip}/24", "dev", "eth0"])
        server = PostgresServer(self.hosts["db"], self.dir / name, self.ca, self.passwords["postgres"],
                                self.subnet_cidr, ip=ip, name=name).create()
        self.extra_databases[name] = server
        server.start()
        return server

    # ---- faults and resets -----------------------------------------------------------------
    def client_cert(self, name):
        """(cert, key) of a CA-signed PostgreSQL client certificate for host `name`."""
        cert = self.ca.dir / f"{name}-client.crt"
        if cert.exists():
            return cert, self.ca.dir / f"{name}-client.key"
        return self.ca.issue(f"{name}-client", name, client=True)

    def kill(self, name):
        """Power the host off: every process in it dies at once, its minion included."""
        host = self.hosts[name]
        host.kill()
        minion = self.minions.get(name)
        if minion is not None:
            minion.terminate()  # reaps the dead process and resets the factory

    def power_on(self, name):
        """Boot the host: its boot services, then its salt-minion (returns once it is back)."""
        host = self.hosts[name]
        host.boot()
        if host.kind == "db" and self.db and not self.db.running():
            self.db.start()
        minion = self.minions.get(name)
        if minion is not None and not minion.is_running():
            minion.start()

    def set_firewall(self, kind, names=None):
        """The firewall the named hosts' OS comes with (default: every manager), from their next
        wipe or reset on: "nftables" (the default), "iptables" or "firewalld"."""
        for name in names or [h.name for h in self.managers]:
            self.hosts[name].set_firewall(kind)

    def set_ipv6(self, on=True):
        """Every host gets (or loses) an IPv6 address on the bridge beside its IPv4 one:
        fd00:213:<subnet octet>::<host index>/64 (a unique local address), in host.ipv6. The
        lab has none otherwise (link-local only). Hosts keep it across wipes and power cuts."""
        for host in self.hosts.values():
            host.set_ipv6(f"fd00:213:{self.network.octet:x}::{host.index:x}" if on else None)

    def wipe(self, name, power_on=True):
        """Reinstall the host's OS: killed, every file it wrote gone, then booted again."""
        self.kill(name)
        self.hosts[name].wipe()
        if power_on:
            self.power_on(name)

    def reset(self, names=None, new_minions=False):
        """Cheap per-test reset: wipe the named hosts (default: every host but the DB) in
        parallel and empty the external database of Cloudify's databases and role.

        A wiped host's minion keeps its cache (it lives outside the host), the modules synced
        to it included, as a reinstalled host whose minion state was restored would. With
        `new_minions` the cache goes too: every host comes back as a new host with a new minion
        (its key still accepted), which has none of the formula's modules."""
        names = list(names or [n for n, h in self.hosts.items() if h.kind != "db"])
        with ThreadPoolExecutor(len(names)) as pool:
            list(pool.map(lambda n: self.wipe(n, power_on=False), names))
        if new_minions:
            for name in names:
                minion = self.minions.get(name)
                if minion is not None:  # the paths as the minion resolves them (root_dir)
                    opts = salt.config.minion_config(minion.config["conf_file"])
                    for path in (opts["cachedir"], opts["extension_modules"]):
                        if os.path.isdir(path):
                            shutil.rmtree(path)
        self.reset_database()
        with ThreadPoolExecutor(len(names)) as pool:
            list(pool.map(self.power_on, names))

    def reset_database(self):
        for server in [self.db, *self.extra_databases.values()]:
            for name in ("cloudify_db", "stage", "composer"):
                server.query(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            server.query('DROP ROLE IF EXISTS "cloudify"')

    # ---- teardown --------------------------------------------------------------------------
    def destroy(self):
        for server in self.extra_databases.values():
            server.stop()
        if self.db is not None:
            self.db.stop()
        for host in self.hosts.values():
            host.destroy()
        if self.network is not None:
            self.network.destroy()
        _kill_processes_mentioning(str(self.dir) + "/")
        ns_dir = self.dir / "ns"
        run(["umount", "-l", ns_dir], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.created = False


def _free_octet():
    used = set()
    for lab_json in BASE.glob("chl-*/lab.json"):
        try:
            used.add(json.loads(lab_json.read_text())["octet"])
        except (OSError, ValueError, KeyError):
            continue
    addrs = run(["ip", "-4", "-o", "addr"], check=False).stdout
    used |= {int(m) for m in re.findall(r"inet 10\.213\.(\d+)\.", addrs)}
    for octet in range(1, 255):
        if octet not in used:
            return octet
    raise LabError("no free 10.213.X.0/24 subnet for the lab; run 'make demo-down' to sweep")


def _kill_processes_mentioning(text):
    victims = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid != os.getpid() and any(text in arg for arg in proc.info["cmdline"] or ()):
                victims.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    kill_all(victims, timeout=5)


def sweep(verbose=False):
    """Remove what earlier lab runs left behind; never touch a run whose owner still lives."""
    removed = []
    live_rids = set()
    for run_dir in BASE.glob("chl-*"):
        m = RUN_DIR_RE.match(run_dir.name)
        if not m:
            continue
        rid = m.group(1)
        try:
            data = json.loads((run_dir / "lab.json").read_text())
        except (OSError, ValueError):
            data = {}
        if data and _owner_alive(data.get("owner", {})):
            live_rids.add(rid)
            continue
        _sweep_run(rid, run_dir)
        removed.append(rid)
    # namespaces and links whose run directory is gone
    for ns in netns_list():
        m = NAME_RE.match(ns)
        if m and m.group(1) not in live_rids:
            for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            run(["ip", "netns", "del", ns], check=False)
            removed.append(ns)
    links = run(["ip", "-o", "link"], check=False).stdout
    for name in re.findall(r"^\d+: (chl[0-9a-f]{4}[^:@ ]*)", links, re.M):
        m = NAME_RE.match(name)
        if m and m.group(1) not in live_rids:
            run(["ip", "link", "del", name], check=False)
            removed.append(name)
    if verbose:
        print("swept:", ", ".join(removed) if removed else "nothing")
    return removed


def _sweep_run(rid, run_dir):
    prefix = f"chl{rid}"
    for ns in netns_list():
        if ns.startswith(prefix + "-"):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.05)
            run(["ip", "netns", "del", ns], check=False)
    _kill_processes_mentioning(str(run_dir) + "/")
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    for line in reversed(mounts):
        target = line.split()[1]
        if target.startswith(str(run_dir) + "/") or target == str(run_dir):
            run(["umount", "-l", target], check=False)
    run(["ip", "link", "del", f"{prefix}br"], check=False)
    shutil.rmtree(run_dir, ignore_errors=True)
