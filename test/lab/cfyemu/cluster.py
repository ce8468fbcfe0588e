"""Cluster mechanics of an emulated 4.6 manager, over the real ports.

- 8300/tcp, "Consul server RPC": a small Raft (terms, votes, leader appends that carry the member
  list). A candidate needs a majority of votes; a node that heard from a live leader recently
  refuses to vote. Under a partition, 4.6's active minority mode (knob minority_mode): the
  leader stays active without its majority and a node cut off from every other becomes active
  on its own, so two nodes answer as active until the partition heals (the higher term wins).
- 8301/tcp+udp, "gossip": every member sends a heartbeat to every other member over BOTH tcp and
  udp every 0.5 s; the leader shows a node's `heartbeat` check OK only when both arrived lately.
- 8500/tcp, "Consul HTTP API": answers /v1/status/leader; a joiner asks it during the join.
- 22000/tcp, "file replication": replicas copy the leader's /opt/manager/resources; the leader
  reads a joiner's index there to refuse a joiner that is not empty.

A node is `online` in the leader's list when its heartbeat and its RPC acknowledgements are both
recent. State survives restarts in /opt/manager/cluster.json.
"""

import hashlib
import json
import os
import random
import shutil
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .common import CLUSTER_MARKER, CLUSTER_STATE, OPT, PORTS, RESOURCES, RUN_DIR, knobs

HEARTBEAT_EVERY = 0.5  # the gossip (Consul's serf probes)
APPEND_EVERY = 0.3
# 4.6's own liveness, each a knob whose default is what 4.6 does (cloudify-4.6.md section 0.3):
# "a simple heartbeat is sent every 15 seconds", and a node shows offline only once its checks'
# TTL ran out: tens of seconds (30 s, two missed heartbeats: inferred, the TTL is in the private
# premium package). Until then a dead node is listed online.
# Partitions: 4.6's "active minority mode" (section 0.3): a leader cut off from its majority
# stays active, and a node that hears from no leader for MINORITY_AFTER_SECONDS and cannot
# reach a majority (its vote requests go unanswered) becomes active on its own; knob minority_mode: "active" (4.6) or "passive" (a
# minority side has no active node). After healing, the higher term wins (4.6: "the node with
# the most recently updated database"; there is one database here).
MINORITY_AFTER_SECONDS = 5.0  # inferred: 4.6's delay is in the private premium package
HEARTBEAT_SECONDS = 15.0  # knob heartbeat_seconds
OFFLINE_AFTER_SECONDS = 30.0  # knob offline_after_seconds
# A failover (cloudify-4.6.md section 0.4): once elected, the new active node starts RabbitMQ
# and the management worker before it answers as the active node; until then its REST service
# answers as a replica's (not_cluster_master) and the cluster has no active node. Knob
# failover_seconds, read at every request (a test may hold the window open); 30 s: inferred,
# "tens of seconds" (the promotion is in the private premium package)
FAILOVER_SECONDS = 30.0
LEASE = 2.5  # minority_mode passive: a leader without a majority's acks this long steps down
ELECTION_TIMEOUT = (1.5, 3.0)
RPC_TIMEOUT = 0.4
CONTROL_SOCKET = RUN_DIR / "agent.sock"


def liveness():
    """(heartbeat interval, offline after), in seconds: the knobs or 4.6's defaults."""
    knob = knobs()
    return (float(knob.get("heartbeat_seconds", HEARTBEAT_SECONDS)),
            float(knob.get("offline_after_seconds", OFFLINE_AFTER_SECONDS)))


def failover_seconds():
    """How long an elected node takes to answer as the active node: the knob or 4.6's."""
    return float(knobs().get("failover_seconds", FAILOVER_SECONDS) or 0)


def active_minority():
    """(minority mode on, seconds without a leader before a node takes the active role)."""
    knob = knobs()
    return (knob.get("minority_mode", "active") == "active",
            float(knob.get("minority_after_seconds", MINORITY_AFTER_SECONDS)))


def rpc_call(ip, message, timeout=RPC_TIMEOUT, port=PORTS["rpc"]):
    """One JSON request, one JSON answer, over a fresh TCP connection."""
    with socket.create_connection((ip, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall((json.dumps(message) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data or b"{}")


def control_call(message, timeout=2.0):
    """Ask the local agent over its unix socket (works when every port is firewalled)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(CONTROL_SOCKET))
        sock.sendall((json.dumps(message) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data or b"{}")


_DIGESTS = {}  # path -> ((size, mtime_ns), sha256): a file is hashed again only once changed


def file_digest(path):
    """sha256 of a file, read a block at a time (a snapshot archive can be large)."""
    stat = path.stat()
    key = (stat.st_size, stat.st_mtime_ns)
    known = _DIGESTS.get(path)
    if known and known[0] == key:
        return known[1]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            digest.update(block)
    _DIGESTS[path] = (key, digest.hexdigest())
    return _DIGESTS[path][1]


def resource_index(root=RESOURCES):
    index = {}
    if root.exists():
        for path in sorted(root.rglob("*")):
            try:
                if path.is_file():
                    index[str(path.relative_to(root))] = file_digest(path)
            except OSError:
                continue  # gone while listed
    return index


def sync_fetch(ip, rel, target, timeout=3.0):
    """Copy one of the leader's files to ``target`` a block at a time, through a temporary
    file beside it (a reader never sees half a file)."""
    tmp = target.with_name(f".{target.name}.sync")
    with socket.create_connection((ip, PORTS["sync"]), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(f"GET {rel}".encode() + b"\n")
        reader = sock.makefile("rb")
        size = int(reader.readline())
        with open(tmp, "wb") as out:
            while size > 0:
                chunk = reader.read(min(size, 1 << 16))
                if not chunk:
                    raise ConnectionError("short read from file replication peer")
                out.write(chunk)
                size -= len(chunk)
    os.replace(tmp, target)


def sync_request(ip, line, timeout=3.0):
    with socket.create_connection((ip, PORTS["sync"]), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(line.encode() + b"\n")
        header = b""
        while not header.endswith(b"\n"):
            chunk = sock.recv(1)
            if not chunk:
                raise ConnectionError("file replication peer closed the connection")
            header += chunk
        size = int(header)
        data = b""
        while len(data) < size:
            chunk = sock.recv(min(65536, size - len(data)))
            if not chunk:
                raise ConnectionError("short read from file replication peer")
            data += chunk
    return data


def remote_index(ip, timeout=3.0):
    return json.loads(sync_request(ip, "INDEX", timeout))


class _LineHandler(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            line = self.rfile.readline()
            if not line:
                return
            answer = self.server.dispatch(json.loads(line), self.client_address)
            self.wfile.write((json.dumps(answer) + "\n").encode())
        except (OSError, ValueError):
            return


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, dispatch):
        self.dispatch = dispatch
        super().__init__(address, _LineHandler)


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path, dispatch):
        self.dispatch = dispatch
        if os.path.exists(path):
            os.unlink(path)
        super().__init__(str(path), _LineHandler)
        os.chmod(path, 0o600)


class _SyncHandler(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline().decode().strip()
        if line == "INDEX":
            payload = json.dumps(resource_index()).encode()
        elif line.startswith("GET "):
            rel = Path(line[4:])
            target = (RESOURCES / rel).resolve()
            if RESOURCES.resolve() not in target.parents or not target.is_file():
                payload = b""
            else:
                with open(target, "rb") as fh:  # a block at a time: archives can be large
                    self.wfile.write(f"{os.fstat(fh.fileno()).st_size}\n".encode())
                    shutil.copyfileobj(fh, self.wfile, 1 << 16)
                return
        elif line == "SECURITY":
            payload = security_payload()
        else:
            payload = b""
        self.wfile.write(f"{len(payload)}\n".encode() + payload)


# rest-security.conf (hash salt, secret key, encryption key) is the same on every node of a
# cluster, whose one database they all read (inferred: premium's join; cloudify-4.6-day2.md
# sections 2.4 and 9.2): replicas take the active node's with the file replication
SECURITY_CONF = OPT / "rest-security.conf"


def security_payload():
    try:
        return SECURITY_CONF.read_bytes()
    except OSError:
        return b""


def sync_security(payload):
    if payload and security_payload() != payload:
        tmp = SECURITY_CONF.with_suffix(".sync")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o660)
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
        os.replace(tmp, SECURITY_CONF)


def start_sync_server():
    """Port 22000: always up on an installed manager (a joiner's index is read before it joins)."""
    server = socketserver.ThreadingTCPServer(("0.0.0.0", PORTS["sync"]), _SyncHandler,
                                             bind_and_activate=False)
    server.daemon_threads = True
    server.allow_reuse_address = True
    server.server_bind()
    server.server_activate()
    threading.Thread(target=server.serve_forever, daemon=True, name="sync").start()
    return server


def load_state():
    try:
        return json.loads(CLUSTER_STATE.read_text())
    except (OSError, ValueError):
        return None


def save_state(state):
    tmp = CLUSTER_STATE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, CLUSTER_STATE)


def write_cluster_marker(state):
    CLUSTER_MARKER.write_text(json.dumps({
        "node_name": state["node_name"], "host_ip": state["host_ip"],
        "cluster_members": sorted(state["members"])}, indent=1) + "\n")


class Agent:
    """The cluster agent of one node."""

    def __init__(self, state, local_checks, log, public_ip=None):
        self.state = state
        self.name = state["node_name"]
        self.local_checks = local_checks  # () -> {"services": bool, "database": bool}
        # this node's manager.public_ip: it reports it to the leader, which keeps it in the
        # node's record (the join's PUT carries only host_ip, node_name and database_ip; 4.6's
        # records have the node's public_ip, which `cfy` profiles use: cloudify-4.6.md 0.1)
        self.public_ip = public_ip
        self.log = log
        self.lock = threading.RLock()
        self.role = "follower"
        self.leader = None
        self.last_leader_contact = 0.0
        self.last_majority = 0.0
        self.elected_at = None  # elected then: active failover_seconds later
        self.peers = {}  # name -> {"tcp_hb", "udp_hb", "rpc_ok", "checks", "initialized"}
        self.election_deadline = self._next_deadline()
        self.transfer_requested = False  # set-active: elect this node now, past the stickiness
        self.servers = []
        self.stopping = threading.Event()
        if len(self.state["members"]) == 1 and self.name in self.state["members"]:
            self._become_leader(elected=False)

    # ---- facts -------------------------------------------------------------------------------
    @property
    def removed(self):
        return bool(self.state.get("removed"))

    @property
    def members(self):
        return self.state["members"]

    def quorum(self):
        return len(self.members) // 2 + 1

    def leads(self):
        """The leader's role, held: elected (or alone), with a majority's acks or in active
        minority mode. Whether it answers as the active node yet is is_active."""
        with self.lock:
            if self.role != "leader" or self.removed:
                return False
            if len(self.members) == 1 or active_minority()[0]:
                return True
            return time.monotonic() - self.last_majority < LEASE

    def is_active(self):
        """Leading, and done starting its services since its election (failover_seconds)."""
        with self.lock:
            return self.leads() and (self.elected_at is None or
                                     time.monotonic() - self.elected_at >= failover_seconds())

    def leader_ip(self):
        with self.lock:
            member = self.members.get(self.leader or "")
            return member["host_ip"] if member else None

    def _next_deadline(self):
        return time.monotonic() + random.uniform(*ELECTION_TIMEOUT)

    def _persist(self):
        save_state(self.state)
        write_cluster_marker(self.state)

    # ---- views ---------------------------------------------------------------------------------
    def node_view(self, name):
        """One node as the leader's /cluster/nodes shows it."""
        member = self.members[name]
        now = time.monotonic()
        if name == self.name:
            local = self.local_checks()
            checks = {"consul": True, "services": local["services"], "database": local["database"],
                      "heartbeat": True}
            online, initialized = True, True
        else:
            peer = self.peers.get(name, {})
            stale = liveness()[1]
            heartbeat = all(now - peer.get(field, -1e9) < stale
                            for field in ("tcp_hb", "udp_hb", "cfy_hb"))
            consul = now - peer.get("rpc_ok", -1e9) < stale
            reported = peer.get("checks", {}) if heartbeat else {}
            checks = {"consul": consul, "services": bool(reported.get("services")),
                      "database": bool(reported.get("database")), "heartbeat": heartbeat}
            online = heartbeat and consul
            initialized = bool(member.get("initialized") or peer.get("initialized"))
        return {
            "name": name,
            "host_ip": member["host_ip"],
            "public_ip": member.get("public_ip") or member["host_ip"],
            # no database_ip: 4.6's public client does not read one, and no public source says
            # the records carry it (cloudify-4.6.md section 0.3); a joiner still SENDS it
            "master": name == self.leader and self.role == "leader" and name == self.name,
            "online": online,
            "initialized": initialized,
            "credentials": member.get("credentials"),
            "required": member.get("required", {}),
            "remote_database": True,
            "options": member.get("options", {}),
            "checks": checks,
        }

    def nodes(self):
        with self.lock:
            return [self.node_view(n) for n in sorted(self.members)]

    def status(self):
        with self.lock:
            return {"name": self.name, "role": self.role, "term": self.state["term"],
                    "leader": self.leader, "leader_ip": self.leader_ip(),
                    "leader_contact_age": time.monotonic() - self.last_leader_contact
                    if self.last_leader_contact else None,
                    "members": sorted(self.members), "removed": self.removed,
                    "active": self.is_active()}

    # ---- membership (leader only) ------------------------------------------------------------
    def add_member(self, name, host_ip, database_ip, credentials, required):
        with self.lock:
            self.members[name] = {"host_ip": host_ip, "database_ip": database_ip,
                                  "credentials": credentials, "required": required,
                                  "initialized": False}
            self.state["members_version"] += 1
            self.state.setdefault("removed_credentials", [])
            self._persist()
            return self.node_view(name)

    def remove_member(self, name):
        with self.lock:
            view = self.node_view(name)
            member = self.members.pop(name)
            self.peers.pop(name, None)
            self.state["members_version"] += 1
            self.state.setdefault("removed_credentials", []).append(member.get("credentials"))
            self._persist()
            notice = {"type": "append", "term": self.state["term"], "leader": self.name,
                      "members": self.members, "members_version": self.state["members_version"],
                      "removed_credentials": self.state["removed_credentials"]}
        try:  # tell the node now if it is reachable; otherwise it learns when it next calls a vote
            rpc_call(member["host_ip"], notice)
        except (OSError, ValueError):
            pass
        return view

    # ---- the loop ------------------------------------------------------------------------------
    def start(self):
        dispatch = self.handle_rpc
        servers = [_TCPServer(("0.0.0.0", PORTS["rpc"]), dispatch),
                   _TCPServer(("0.0.0.0", PORTS["gossip"]), self.handle_gossip),
                   _UnixServer(CONTROL_SOCKET, self.handle_control)]
        for server in servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers = servers
        threading.Thread(target=self._udp_gossip_server, daemon=True, name="gossip-udp").start()
        threading.Thread(target=self._consul_http_server, daemon=True, name="consul").start()
        threading.Thread(target=self._tick_loop, daemon=True, name="raft").start()
        threading.Thread(target=self._heartbeat_loop, daemon=True, name="heartbeat").start()
        threading.Thread(target=self._sync_loop, daemon=True, name="sync").start()

    def _tick_loop(self):
        last_append = 0.0
        while not self.stopping.is_set():
            now = time.monotonic()
            with self.lock:
                role = self.role
            if self.removed:
                pass
            elif role == "leader":
                if now - last_append >= APPEND_EVERY:
                    last_append = now
                    self._send_appends()
            elif self.transfer_requested or now >= self.election_deadline:
                transfer, self.transfer_requested = self.transfer_requested, False
                self._run_election(transfer)
            time.sleep(0.05)

    def _others(self):
        with self.lock:
            return {n: m["host_ip"] for n, m in self.members.items() if n != self.name}

    def _parallel(self, targets, message_for):
        results = {}

        def call(name, ip):
            try:
                results[name] = rpc_call(ip, message_for(name))
            except (OSError, ValueError):
                results[name] = None

        threads = [threading.Thread(target=call, args=(n, ip), daemon=True)
                   for n, ip in targets.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(RPC_TIMEOUT + 0.2)
        return results

    def _send_appends(self):
        with self.lock:
            message = {"type": "append", "term": self.state["term"], "leader": self.name,
                       "members": self.members, "members_version": self.state["members_version"],
                       "removed_credentials": self.state.get("removed_credentials", [])}
        results = self._parallel(self._others(), lambda _n: message)
        now = time.monotonic()
        acks = 1
        with self.lock:
            if self.role != "leader":
                return
            for name, answer in results.items():
                if not answer:
                    continue
                if answer.get("term", 0) > self.state["term"]:
                    self._step_down(answer["term"])
                    return
                if answer.get("ok"):
                    acks += 1
                    peer = self.peers.setdefault(name, {})
                    peer["rpc_ok"] = now
                    member = self.members.get(name)
                    if member is not None and not member.get("initialized"):
                        member["initialized"] = True
                        self._persist()
                    reported = answer.get("public_ip")
                    if member is not None and reported and member.get("public_ip") != reported:
                        member["public_ip"] = reported
                        self.state["members_version"] += 1
                        self._persist()
            if acks >= self.quorum():
                self.last_majority = now
            elif now - self.last_majority > LEASE and not active_minority()[0]:
                self.log("lost contact with a majority of the cluster; stepping down")
                self._step_down(self.state["term"])

    def _run_election(self, transfer=False):
        with self.lock:
            if self.name not in self.members:
                self.election_deadline = self._next_deadline()
                return
            self.state["term"] += 1
            self.state["voted_for"] = self.name
            self.role = "candidate"
            term = self.state["term"]
            self._persist()
            message = {"type": "vote", "term": term, "candidate": self.name,
                       "credentials": self.state.get("credentials"), "transfer": transfer,
                       "members_version": self.state["members_version"]}
        results = self._parallel(self._others(), lambda _n: message)
        votes = 1 + sum(1 for a in results.values() if a and a.get("granted"))
        with self.lock:
            if any(a and a.get("removed") for a in results.values()):
                self._mark_removed()
                return
            higher = [a["term"] for a in results.values() if a and a.get("term", 0) > term]
            if higher:
                self._step_down(max(higher))
            elif self.role == "candidate" and self.state["term"] == term and votes >= self.quorum():
                self._become_leader()
            elif (self.role == "candidate" and self.state["term"] == term and not transfer
                  and 1 + sum(1 for a in results.values() if a is not None) < self.quorum()
                  and active_minority()[0]
                  and time.monotonic() - self.last_leader_contact > active_minority()[1]):
                # cut off from a majority (no answer, not a lost vote) for long enough
                self.log(f"node {self.name} hears from no active node and reaches no majority: "
                         "active minority mode")
                self._become_leader()
            else:
                self.role = "follower"
                self.election_deadline = self._next_deadline()

    def _become_leader(self, elected=True):
        """`elected`: by a vote (a failover, a set-active, a partition), not the node that
        started the cluster or is its only member: it starts its services first."""
        self.role = "leader"
        self.leader = self.name
        self.last_majority = time.monotonic()
        self.elected_at = time.monotonic() if elected else None
        if elected:
            self.log(f"node {self.name} was elected (term {self.state['term']}): it starts its "
                     f"services, then answers as the active node")
        else:
            self.log(f"node {self.name} is now the active node (term {self.state['term']})")

    def _step_down(self, term):
        if term > self.state["term"]:
            self.state["term"] = term
            self.state["voted_for"] = None
            self._persist()
        if self.role == "leader":
            self.log(f"node {self.name} is no longer the active node")
        self.role = "follower"
        if self.leader == self.name:
            self.leader = None
        self.election_deadline = self._next_deadline()

    # ---- RPC handlers --------------------------------------------------------------------------
    def handle_rpc(self, msg, _addr):
        kind = msg.get("type")
        with self.lock:
            if kind == "append":
                return self._on_append(msg)
            if kind == "vote":
                return self._on_vote(msg)
            if kind == "timeout_now":
                self.transfer_requested = True
                return {"ok": True}
            if kind == "status":
                return self.status()
        return {"error": f"unknown message {kind!r}"}

    def _on_append(self, msg):
        term = self.state["term"]
        if msg["term"] < term:
            return {"ok": False, "term": term}
        if self.state.get("credentials") in msg.get("removed_credentials", []):
            self._mark_removed()
            return {"ok": False, "term": msg["term"], "removed": True}
        if msg["term"] > term or self.role != "follower":
            self._step_down(msg["term"])
        self.leader = msg["leader"]
        self.last_leader_contact = time.monotonic()
        self.election_deadline = self._next_deadline()
        if msg["members_version"] > self.state["members_version"]:
            self.state["members"] = msg["members"]
            self.state["members_version"] = msg["members_version"]
            self._persist()
        return {"ok": True, "term": self.state["term"], "checks": self.local_checks(),
                "public_ip": self.public_ip}

    def _mark_removed(self):
        if not self.removed:
            self.state["removed"] = True
            self.role = "follower"
            self.leader = None
            self.log(f"node {self.name} was removed from the cluster")
            self._persist()

    def _on_vote(self, msg):
        term = self.state["term"]
        if msg.get("credentials") in self.state.get("removed_credentials", []):
            return {"granted": False, "term": term, "removed": True}
        recent_leader = (self.leader and self.leader != msg["candidate"]
                         and time.monotonic() - self.last_leader_contact < ELECTION_TIMEOUT[0])
        if self.role == "leader" and self.leads():
            recent_leader = True
        if msg.get("transfer"):
            recent_leader = False
        if msg["term"] < term or recent_leader or msg["candidate"] not in self.members:
            return {"granted": False, "term": term}
        if msg["term"] > term:
            self.state["term"] = msg["term"]
            self.state["voted_for"] = None
            if self.role != "follower":
                self.role = "follower"
                if self.leader == self.name:
                    self.leader = None
        granted = (self.state.get("voted_for") in (None, msg["candidate"])
                   and msg["members_version"] >= self.state["members_version"])
        if granted:
            self.state["voted_for"] = msg["candidate"]
            self.election_deadline = self._next_deadline()
        self._persist()
        return {"granted": granted, "term": self.state["term"]}

    def handle_control(self, msg, _addr):
        if msg.get("type") == "status":
            return self.status()
        return self.handle_rpc(msg, None)

    def transfer_to(self, name):
        ip = self.members[name]["host_ip"]
        return rpc_call(ip, {"type": "timeout_now"}, timeout=1.0)

    # ---- gossip --------------------------------------------------------------------------------
    def handle_gossip(self, msg, _addr):
        self._record_heartbeat(msg, "tcp_hb")
        return {"ok": True}

    def _record_heartbeat(self, msg, field):
        name = msg.get("name")
        with self.lock:
            if name in self.members and msg.get("credentials") == self.members[name].get("credentials"):
                peer = self.peers.setdefault(name, {})
                peer[field] = time.monotonic()
                peer["checks"] = msg.get("checks", {})
                if msg.get("heartbeat"):  # 4.6's own heartbeat rides on this one
                    peer["cfy_hb"] = peer[field]

    def _udp_gossip_server(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", PORTS["gossip"]))
        while not self.stopping.is_set():
            try:
                data, _ = sock.recvfrom(65536)
                self._record_heartbeat(json.loads(data), "udp_hb")
            except (OSError, ValueError):
                continue

    def _heartbeat_loop(self):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        last_heartbeat = -1e9
        while not self.stopping.is_set():
            if not self.removed:
                message = {"name": self.name, "credentials": self.state.get("credentials"),
                           "term": self.state["term"], "checks": self.local_checks()}
                if time.monotonic() - last_heartbeat >= liveness()[0]:
                    message["heartbeat"], last_heartbeat = True, time.monotonic()
                payload = json.dumps(message).encode()
                for _name, ip in self._others().items():
                    try:
                        udp.sendto(payload, (ip, PORTS["gossip"]))
                    except OSError:
                        pass
                self._parallel_gossip(message)
            self.stopping.wait(HEARTBEAT_EVERY)

    def _parallel_gossip(self, message):
        def send(ip):
            try:
                rpc_call(ip, message, port=PORTS["gossip"])
            except (OSError, ValueError):
                pass

        threads = [threading.Thread(target=send, args=(ip,), daemon=True)
                   for ip in self._others().values()]
        for t in threads:
            t.start()

    # ---- consul HTTP API (8500) -------------------------------------------------------------------
    def _consul_http_server(self):
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def do_GET(self):  # noqa: N802
                if self.path == "/v1/status/leader":
                    ip = agent.leader_ip()
                    body = json.dumps(f"{ip}:{PORTS['rpc']}" if ip else "")
                elif self.path == "/v1/status/peers":
                    body = json.dumps([f"{m['host_ip']}:{PORTS['rpc']}" for m in agent.members.values()])
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

        server = ThreadingHTTPServer(("0.0.0.0", PORTS["consul"]), Handler)
        server.daemon_threads = True
        self.servers.append(server)
        server.serve_forever()

    # ---- file replication (replicas pull from the leader) -------------------------------------
    def _sync_loop(self):
        while not self.stopping.is_set():
            self.stopping.wait(1.0)
            with self.lock:
                leader_ip = self.leader_ip() if self.role == "follower" else None
            if not leader_ip or self.removed:
                continue
            try:
                theirs = remote_index(leader_ip, timeout=2.0)
                mine = resource_index()
                for rel, digest in theirs.items():
                    if mine.get(rel) != digest:
                        target = RESOURCES / rel
                        target.parent.mkdir(parents=True, exist_ok=True)
                        sync_fetch(leader_ip, rel, target, timeout=3.0)
                for rel in set(mine) - set(theirs):
                    (RESOURCES / rel).unlink(missing_ok=True)
                sync_security(sync_request(leader_ip, "SECURITY", timeout=2.0))
            except (OSError, ValueError):
                continue

    def stop(self):
        self.stopping.set()
        for server in self.servers:
            try:
                server.shutdown()
                server.server_close()
            except OSError:
                pass
