"""
cloudify_ha's off-cluster backups: one archive streamed from a host to a backup target, checked
there, kept with a manifest, and the target's old archives pruned.

No Cloudify code: the backup target runs only this module (``receive``, ``verify``, ``stored``,
``prune``); the active manager's ``cloudify_ha.backup_send`` finds the snapshot's archive and
calls ``send`` here. The stream is one TCP connection, memory flat in the archive's size:

    a header line (JSON: magic, cluster, id, encrypted)
    chunks, each a 4-byte big-endian length and at most CHUNK bytes (the archive, or GnuPG's
    output for it: gpg reads the file itself, Python only moves fixed-size chunks)
    a zero length, then a trailer line (JSON: the sender's sha256 and size of what it sent,
    the recipient's fingerprint, the Cloudify version the archive says)
    and back from the receiver, once it has written the file, a line with the sha256 and size
    it wrote (the sender fails when they differ, or when none comes)

No archive byte, no key and no secret is ever returned or logged; every command is argv (gpg
streams through pipes, which no Salt function offers: it runs with ``subprocess``); every file
under the target's directory is created 0600 (its directories 0700), never through a link.
"""

import datetime
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import stat
import struct
import subprocess
import tempfile
import time

import salt.utils.path
from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "cloudify_ha_backup"

MAGIC = "cloudify_ha-backup/1"
CHUNK = 1 << 16
LINE_MOST = 4096
LENGTH = struct.Struct("!I")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", re.ASCII)
# a snapshot id the formula makes: <cluster>-<UTC time>, one plain path segment
SNAPSHOT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}", re.ASCII)
SHA256_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
FINGERPRINT_RE = re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}", re.ASCII)
MANIFEST_KEYS = ("id", "cluster", "time", "cloudify_version", "size", "sha256", "encrypted",
                 "recipient_fingerprint", "file")
# gpg's environment: no agent or locale of the minion's, messages in English
GPG_ENV = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LC_ALL": "C", "LANG": "C"}


def __virtual__():
    return __virtualname__


# ---- names and places -----------------------------------------------------------------------
def _checked(cluster, snapshot_id):
    if not isinstance(cluster, str) or not NAME_RE.fullmatch(cluster):
        raise SaltInvocationError(f"cluster: {ascii(cluster)} is not a cluster name")
    if not isinstance(snapshot_id, str) or not SNAPSHOT_ID_RE.fullmatch(snapshot_id) or \
            not snapshot_id.startswith(f"{cluster}-"):
        raise SaltInvocationError(f"snapshot_id: {ascii(snapshot_id)} is not a snapshot id of "
                                  f"cluster {cluster} (<cluster>-<UTC time>)")


def archive_name(snapshot_id, encrypted):
    return f"{snapshot_id}.zip.gpg" if encrypted else f"{snapshot_id}.zip"


def _cluster_dir(directory, cluster, create=True):
    """<directory>/<cluster>, each made 0700 where missing; refused when either is a link or
    not a directory, or the directory is no place for archives (the pillar's rule)."""
    problem = __utils__["cloudify_ha_pillar.backup_directory_problem"](directory)
    if problem:
        raise SaltInvocationError(f"directory: {ascii(directory)} {problem}")
    path = os.path.join(directory, cluster)
    for each in (directory, path):
        try:
            info = os.lstat(each)
        except FileNotFoundError:
            if not create:
                return None
            os.makedirs(each, mode=0o700, exist_ok=True)
            os.chmod(each, 0o700)
            info = os.lstat(each)
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise CommandExecutionError(f"{each} is not a directory (a link or a file is never "
                                        "followed): move it away, then re-run")
    return path


def _create_private(path):
    """A new file at `path`, 0600, opened for writing; an old one there is replaced (never
    followed: O_NOFOLLOW, O_EXCL after the unlink)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                   0o600)


def _write_json(path, data):
    """`data` as JSON at `path`, atomically, 0600."""
    tmp = f"{path}.tmp"
    fd = _create_private(tmp)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read_json(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "r") as fh:
        try:
            data = json.loads(fh.read(1 << 20))
        except ValueError:
            return None
    return data if isinstance(data, dict) else None


def _remove(*paths):
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _digest_of(path):
    """(sha256, size) of a file, read a chunk at a time."""
    digest, size = hashlib.sha256(), 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        while True:
            chunk = fh.read(CHUNK)
            if not chunk:
                return digest.hexdigest(), size
            digest.update(chunk)
            size += len(chunk)


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the stream's framing -------------------------------------------------------------------
def _recv_exact(sock, count, deadline):
    parts, got = [], 0
    while got < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise CommandExecutionError("the stream did not end within the timeout")
        sock.settimeout(left)
        try:
            part = sock.recv(min(count - got, CHUNK))
        except socket.timeout:
            raise CommandExecutionError("the stream did not end within the timeout") from None
        if not part:
            raise CommandExecutionError("the sender closed the stream before its end (it "
                                        "failed or was stopped: see its step)")
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _recv_line(sock, deadline):
    line = b""
    while not line.endswith(b"\n"):
        if len(line) >= LINE_MOST:
            raise CommandExecutionError("the stream's header or trailer is too long: not a "
                                        "cloudify_ha backup stream")
        line += _recv_exact(sock, 1, deadline)
    try:
        data = json.loads(line)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise CommandExecutionError("the stream's header or trailer is not JSON: not a "
                                    "cloudify_ha backup stream")
    return data


def _line(data):
    return json.dumps(data, sort_keys=True).encode() + b"\n"


# ---- the target: receive, verify, stored, prune ---------------------------------------------
def receive(directory, cluster, snapshot_id, address, port, sources, timeout=3600,
            encrypted=True):
    """
    On the backup target: listen on ``address:port`` for ONE connection from one of
    ``sources`` (the cluster's managers' private IPs; any other is closed at once and logged)
    within ``timeout`` seconds, which also bounds the whole transfer, and write the stream to
    ``<directory>/<cluster>/<id>.zip.gpg.part`` (``.zip.part`` unencrypted; 0600, directories
    0700), its sha256 and size computed while writing. The sender's report (its trailer) is
    kept beside it (``.part.json``) for ``verify``, which renames the file. A stream that
    fails, ends early, names another snapshot or another encryption than ``encrypted`` leaves
    no file. Returns the received sha256 and size, the peer and the refused addresses.

    CLI Example:

    .. code-block:: bash

        salt backup1 cloudify_ha_backup.receive /var/backups/cloudify_ha prod prod-20300101T000000Z 10.0.0.30 4550 '[10.0.0.11, 10.0.0.12]'
    """
    _checked(cluster, snapshot_id)
    port = int(port)
    if not 1 <= port <= 65535:
        raise SaltInvocationError(f"port: {port} is not a TCP port")
    allowed = {str(s) for s in (sources or [])}
    if not allowed:
        raise SaltInvocationError("sources: give the managers' addresses the stream may come "
                                  "from")
    base = _cluster_dir(directory, cluster)
    part = os.path.join(base, archive_name(snapshot_id, encrypted) + ".part")
    claim = f"{part}.json"
    deadline = time.monotonic() + float(timeout)
    refused = []
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((address, port))
        except OSError as exc:
            raise CommandExecutionError(f"cannot listen on {address}:{port}: {exc.strerror} (is "
                                        "another receiver running, or the address not this "
                                        "host's?)") from None
        listener.listen(4)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CommandExecutionError(
                    f"no manager of cluster {cluster} connected to {address}:{port} within "
                    f"{float(timeout):g} s" + (f" (refused: {', '.join(refused)})" if refused
                                               else "") + ": see the send step")
            listener.settimeout(left)
            try:
                conn, peer = listener.accept()
            except socket.timeout:
                continue
            if peer[0] in allowed:
                break
            refused.append(peer[0])
            log.warning("cloudify_ha backup: refused a connection from %s (not a manager of "
                        "cluster %s)", peer[0], cluster)
            conn.close()
    finally:
        listener.close()  # one connection: nobody else gets in
    try:
        with conn:
            header = _recv_line(conn, deadline)
            expected = {"magic": MAGIC, "cluster": cluster, "id": snapshot_id,
                        "encrypted": bool(encrypted)}
            if {k: header.get(k) for k in expected} != expected:
                raise CommandExecutionError(
                    "the stream is not the one expected: got "
                    + json.dumps({k: header.get(k) for k in expected}, sort_keys=True)
                    + ", expected " + json.dumps(expected, sort_keys=True))
            digest, size = hashlib.sha256(), 0
            fd = _create_private(part)
            with os.fdopen(fd, "wb") as out:
                while True:
                    (length,) = LENGTH.unpack(_recv_exact(conn, LENGTH.size, deadline))
                    if length == 0:
                        break
                    if length > CHUNK:
                        raise CommandExecutionError(f"a chunk of {length} bytes (at most {CHUNK}):"
                                                    " not a cloudify_ha backup stream")
                    chunk = _recv_exact(conn, length, deadline)
                    digest.update(chunk)
                    size += length
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            trailer = _recv_line(conn, deadline)
            received = {"sha256": digest.hexdigest(), "size": size}
            _write_json(claim, {"received": received, "sent": trailer, "peer": peer[0],
                                "time": _utc_now()})
            # the acknowledgement: what was written, for the sender to compare
            conn.settimeout(max(1.0, deadline - time.monotonic()))
            conn.sendall(_line(received))
    except BaseException:
        _remove(part, claim)
        raise
    return dict(received, id=snapshot_id, file=part, peer=peer[0], refused=refused)


def verify(directory, cluster, snapshot_id, encrypted=True):
    """
    On the backup target, after ``receive``: the ``.part`` file read again must have the sha256
    and size the receiver computed AND the sender reported; then it is renamed to its final
    name and its manifest ``<id>.json`` written beside it (id, cluster, UTC time, Cloudify
    version, size, sha256, encrypted, recipient fingerprint, file). On a mismatch the
    ``.part`` is removed and this fails saying which differ.

    CLI Example:

    .. code-block:: bash

        salt backup1 cloudify_ha_backup.verify /var/backups/cloudify_ha prod prod-20300101T000000Z
    """
    _checked(cluster, snapshot_id)
    base = _cluster_dir(directory, cluster, create=False)
    name = archive_name(snapshot_id, encrypted)
    part = os.path.join(base or directory, name + ".part")
    claim = _read_json(f"{part}.json") if base else None
    if claim is None or not os.path.exists(part):
        raise CommandExecutionError(f"{part} (and its .json) is not there: the receive step did "
                                    "not complete; re-run the backup")
    found = dict(zip(("sha256", "size"), _digest_of(part)))
    sent = claim.get("sent") if isinstance(claim.get("sent"), dict) else {}
    received = claim.get("received") if isinstance(claim.get("received"), dict) else {}
    problems = [f"{what} {key}: {ascii(view.get(key))}, the file on disk has {found[key]}"
                for what, view in (("the sender reported", sent), ("the receiver wrote", received))
                for key in ("sha256", "size") if view.get(key) != found[key]]
    if problems:
        _remove(part, f"{part}.json")
        raise CommandExecutionError(f"{name}: " + "; ".join(problems)
                                    + ": the partial archive was removed; re-run the backup")
    final = os.path.join(base, name)
    os.replace(part, final)
    fingerprint = sent.get("fingerprint")
    version = sent.get("version")
    manifest = {"id": snapshot_id, "cluster": cluster, "time": _utc_now(),
                "cloudify_version": version if isinstance(version, str) else None,
                "size": found["size"], "sha256": found["sha256"], "encrypted": bool(encrypted),
                "recipient_fingerprint": fingerprint if isinstance(fingerprint, str)
                and FINGERPRINT_RE.fullmatch(fingerprint) else None, "file": name}
    _write_json(os.path.join(base, f"{snapshot_id}.json"), manifest)
    _remove(f"{part}.json")
    return manifest


def _manifest(base, snapshot_id, cluster):
    """The manifest of `snapshot_id` that this module wrote (its keys, its cluster, its file
    name), or None."""
    data = _read_json(os.path.join(base, f"{snapshot_id}.json"))
    if data is None or set(data) != set(MANIFEST_KEYS) or data.get("id") != snapshot_id or \
            data.get("cluster") != cluster or \
            data.get("file") not in (archive_name(snapshot_id, True),
                                     archive_name(snapshot_id, False)) or \
            not isinstance(data.get("sha256"), str) or not SHA256_RE.fullmatch(data["sha256"]):
        return None
    return data


def stored(directory, cluster, snapshot_id):
    """
    On the backup target: the manifest of ``snapshot_id`` when it is there with its sha256 and
    its archive of the manifest's size (the archive is not read: that is ``verify``'s job), else
    None. The orchestration asks it before it sends a snapshot it is given again.

    CLI Example:

    .. code-block:: bash

        salt backup1 cloudify_ha_backup.stored /var/backups/cloudify_ha prod prod-20300101T000000Z
    """
    _checked(cluster, snapshot_id)
    base = _cluster_dir(directory, cluster, create=False)
    manifest = _manifest(base, snapshot_id, cluster) if base else None
    if manifest is None:
        return None
    try:
        info = os.lstat(os.path.join(base, manifest["file"]))
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size != manifest["size"]:
        return None
    return manifest


def prune(directory, cluster, keep):
    """
    On the backup target: keep the ``keep`` newest archives of ``cluster`` (by their
    manifest's time) and remove the others with their manifests. Only archives this module
    wrote (a manifest of its own names each) are counted or removed; any other file stays.

    CLI Example:

    .. code-block:: bash

        salt backup1 cloudify_ha_backup.prune /var/backups/cloudify_ha prod 7
    """
    keep = int(keep)
    if keep < 1:
        raise SaltInvocationError(f"keep: {keep} must be 1 or more")
    if not isinstance(cluster, str) or not NAME_RE.fullmatch(cluster):
        raise SaltInvocationError(f"cluster: {ascii(cluster)} is not a cluster name")
    base = _cluster_dir(directory, cluster, create=False)
    if base is None:
        return {"kept": [], "removed": []}
    found = []
    for entry in sorted(os.listdir(base)):
        stem = entry[:-len(".json")]
        if entry.endswith(".json") and stem.startswith(f"{cluster}-") and \
                SNAPSHOT_ID_RE.fullmatch(stem):
            manifest = _manifest(base, stem, cluster)
            if manifest is not None:
                found.append(manifest)
    found.sort(key=lambda m: (str(m["time"]), m["id"]), reverse=True)
    removed = []
    for manifest in found[keep:]:
        _remove(os.path.join(base, manifest["file"]), os.path.join(base, f"{manifest['id']}.json"))
        removed.append(manifest["id"])
    return {"kept": [m["id"] for m in found[:keep]], "removed": removed}


# ---- the sender -----------------------------------------------------------------------------
def _gpg():
    binary = salt.utils.path.which("gpg") or salt.utils.path.which("gpg2")
    if binary is None:
        raise CommandExecutionError("gpg is not installed on this host (package gnupg2 on "
                                    "EL7, gnupg on Debian): it encrypts the archive")
    return binary


def _gpg_run(argv, stdin=b""):
    proc = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=GPG_ENV, timeout=120, check=False)
    return proc.returncode, proc.stdout.decode("ascii", "replace"), \
        proc.stderr.decode("ascii", "replace")


def import_recipient(homedir, recipient):
    """Import the armored public key (on stdin, never argv) into ``homedir``; the fingerprint
    of its one primary key. Refused: a private key, no key, several keys."""
    if not isinstance(recipient, str) or "PRIVATE KEY" in recipient:
        raise SaltInvocationError("recipient: not a public key block (the value is not shown)")
    gpg = _gpg()
    code, _, err = _gpg_run([gpg, "--batch", "--no-tty", "--homedir", homedir, "--import"],
                            recipient.encode("ascii", "replace"))
    if code != 0:
        raise CommandExecutionError("gpg could not import backup:recipient (exit "
                                    f"{code}): {err.strip().splitlines()[-1:] or ''}")
    code, out, _ = _gpg_run([gpg, "--batch", "--no-tty", "--homedir", homedir, "--with-colons",
                             "--fingerprint", "--list-keys"])
    fingerprints, primary = [], False
    for line in out.splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            primary = True
        elif fields[0] == "sub":
            primary = False
        elif fields[0] == "fpr" and primary and len(fields) > 9:
            fingerprints.append(fields[9])
            primary = False
    if code != 0 or len(fingerprints) != 1 or not FINGERPRINT_RE.fullmatch(fingerprints[0]):
        raise CommandExecutionError(f"backup:recipient holds {len(fingerprints)} public keys: "
                                    "give exactly one")
    return fingerprints[0]


def _connect(address, port, deadline):
    """A connection to the receiver, retried while it does not listen yet (it starts beside
    the sender), until the deadline."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise CommandExecutionError(f"the receiver at {address}:{port} did not accept a "
                                        "connection within the timeout (is the target up, its "
                                        "firewall open to this manager on that port?): see the "
                                        "receive step")
        try:
            return socket.create_connection((address, port), timeout=min(left, 10))
        except OSError:
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def send(path, cluster, snapshot_id, address, port, recipient=None, timeout=3600,
         version=None):
    """
    Stream the file ``path`` to the receiver at ``address:port`` (``receive`` on the backup
    target), encrypted for ``recipient`` (an ASCII-armored public key, imported into a private
    GnuPG home made for this call and removed after it) unless it is None, in fixed-size
    chunks: never the whole file in memory. The connect is retried until the receiver listens;
    ``timeout`` bounds it all. Returns the sha256 and size of what was sent, whether it was
    encrypted and for which key's fingerprint.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha_backup.send /path/prod-20300101T000000Z.zip prod prod-20300101T000000Z 10.0.0.30 4550
    """
    _checked(cluster, snapshot_id)
    deadline = time.monotonic() + float(timeout)
    started = time.monotonic()
    encrypted = recipient is not None
    homedir = tempfile.mkdtemp(prefix="cloudify_ha-gpg-") if encrypted else None
    proc = errors = None
    try:
        fingerprint = import_recipient(homedir, recipient) if encrypted else None
        try:
            source_fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise CommandExecutionError(f"{path}: {exc.strerror}") from None
        with os.fdopen(source_fd, "rb") as archive:
            if encrypted:
                errors = tempfile.TemporaryFile()
                proc = subprocess.Popen(  # pylint: disable=consider-using-with
                    [_gpg(), "--batch", "--no-tty", "--quiet", "--trust-model", "always",
                     "--homedir", homedir, "--recipient", fingerprint, "--output", "-",
                     "--encrypt"], stdin=archive, stdout=subprocess.PIPE, stderr=errors,
                    env=GPG_ENV)
                source = proc.stdout
            else:
                source = archive
            with _connect(address, int(port), deadline) as sock:
                sock.sendall(_line({"magic": MAGIC, "cluster": cluster, "id": snapshot_id,
                                    "encrypted": encrypted}))
                digest, size = hashlib.sha256(), 0
                while True:
                    chunk = source.read(CHUNK)
                    if not chunk:
                        break
                    digest.update(chunk)
                    size += len(chunk)
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise CommandExecutionError("the stream did not end within the timeout")
                    sock.settimeout(left)
                    sock.sendall(LENGTH.pack(len(chunk)) + chunk)
                if proc is not None:
                    code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
                    if code != 0:
                        errors.seek(0)
                        said = errors.read(2000).decode("ascii", "replace").strip()
                        raise CommandExecutionError(f"gpg --encrypt failed (exit {code}): "
                                                    f"{said.splitlines()[-1:] or ''}")
                # the end and the report, only once everything was read and gpg succeeded
                sock.sendall(LENGTH.pack(0) + _line({"sha256": digest.hexdigest(), "size": size,
                                                     "fingerprint": fingerprint,
                                                     "version": version}))
                sock.shutdown(socket.SHUT_WR)
                try:
                    ack = _recv_line(sock, deadline)
                except CommandExecutionError:
                    raise CommandExecutionError(
                        f"the receiver at {address}:{port} closed the connection without "
                        "acknowledging the archive (is this manager's address one the target "
                        "takes? see the receive step)") from None
                if (ack.get("sha256"), ack.get("size")) != (digest.hexdigest(), size):
                    raise CommandExecutionError(
                        f"the receiver wrote {ascii(ack.get('size'))} bytes with sha256 "
                        f"{ascii(ack.get('sha256'))}; this host sent {size} with sha256 "
                        f"{digest.hexdigest()}")
    except (OSError, subprocess.SubprocessError) as exc:
        raise CommandExecutionError(f"the stream to {address}:{port} failed: "
                                    f"{exc.__class__.__name__}: {exc}") from None
    finally:
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
        if errors is not None:
            errors.close()
        if homedir:
            shutil.rmtree(homedir, ignore_errors=True)
    return {"id": snapshot_id, "sha256": digest.hexdigest(), "size": size,
            "encrypted": encrypted, "recipient_fingerprint": fingerprint,
            "to": f"{address}:{port}", "seconds": round(time.monotonic() - started, 3)}
