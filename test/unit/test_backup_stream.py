"""_modules/cloudify_ha_backup.py: the stream of an archive to the backup target, for real.

Real sockets on 127.0.0.1 (the receiver in a thread, the sender in this one), real gpg with a
throwaway key pair made in a tmp GNUPGHOME; the private key stays in the test and decrypts what
the target kept.
"""

import hashlib
import json
import os
import socket
import stat
import subprocess
import threading
import zipfile

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

from formula_code import load, pillar_util

CLUSTER, SID = "prod", "prod-20300101T000000Z"


@pytest.fixture(scope="module")
def backup():
    module = load("_modules/cloudify_ha_backup.py", "cloudify_ha_backup_under_test")
    module.__utils__ = {"cloudify_ha_pillar.backup_directory_problem":
                        pillar_util().backup_directory_problem}
    return module


@pytest.fixture(scope="module")
def keypair(tmp_path_factory):
    """(GNUPGHOME holding the private key, the armored public key)."""
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    env = dict(os.environ, GNUPGHOME=str(home))
    subprocess.run(["gpg", "--batch", "--quiet", "--passphrase", "", "--quick-gen-key",
                    "backup test <backup@test.invalid>", "rsa2048", "encr", "never"],
                   env=env, check=True, capture_output=True)
    public = subprocess.run(["gpg", "--armor", "--export", "backup@test.invalid"], env=env,
                            check=True, capture_output=True, text=True).stdout
    yield env, public
    # the key generation started an agent for that home: it goes with the test
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], env=env,
                   check=False, capture_output=True)


@pytest.fixture
def archive(tmp_path):
    """A zip of a few hundred KiB (more than a few chunks) with a metadata.json."""
    path = tmp_path / f"{SID}.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"snapshot_version": "4.6"}))
        zf.writestr("blob", os.urandom(300_000))
    return path


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Receiver(threading.Thread):
    def __init__(self, backup, directory, port, sources=("127.0.0.1",), timeout=20,
                 encrypted=True, snapshot_id=SID):
        super().__init__(daemon=True)
        self.args = (str(directory), CLUSTER, snapshot_id, "127.0.0.1", port, list(sources))
        self.kwargs = {"timeout": timeout, "encrypted": encrypted}
        self.backup, self.result, self.error = backup, None, None
        self.start()

    def run(self):
        try:
            self.result = self.backup.receive(*self.args, **self.kwargs)
        except Exception as exc:  # pylint: disable=broad-except
            self.error = exc

    def outcome(self):
        self.join(30)
        assert not self.is_alive()
        return self.result, self.error


def modes(root):
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")}


def test_an_encrypted_archive_goes_over_checked_and_decrypts_with_the_private_key(
        backup, keypair, archive, tmp_path):
    env, public = keypair
    target, port = tmp_path / "target", free_port()
    receiver = Receiver(backup, target, port)
    sent = backup.send(str(archive), CLUSTER, SID, "127.0.0.1", port, recipient=public,
                       timeout=20, version="4.6")
    received, error = receiver.outcome()
    assert error is None, error
    assert (received["sha256"], received["size"]) == (sent["sha256"], sent["size"])
    assert sent["encrypted"] and len(sent["recipient_fingerprint"]) == 40
    assert received["file"].endswith(f"{CLUSTER}/{SID}.zip.gpg.part")
    manifest = backup.verify(str(target), CLUSTER, SID)
    assert manifest == {
        "id": SID, "cluster": CLUSTER, "time": manifest["time"], "cloudify_version": "4.6",
        "size": sent["size"], "sha256": sent["sha256"], "encrypted": True,
        "recipient_fingerprint": sent["recipient_fingerprint"], "file": f"{SID}.zip.gpg"}
    kept = target / CLUSTER / f"{SID}.zip.gpg"
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == sent["sha256"]
    # every file 0600, every directory 0700; the .part and its report are gone
    assert modes(target) == {CLUSTER: 0o700, f"{CLUSTER}/{SID}.zip.gpg": 0o600,
                             f"{CLUSTER}/{SID}.json": 0o600}
    assert json.loads((target / CLUSTER / f"{SID}.json").read_text()) == manifest
    # ciphertext, which the private key (the test's only) turns back into the archive
    assert archive.read_bytes()[:4] not in kept.read_bytes()[:64]
    clear = subprocess.run(["gpg", "--batch", "--quiet", "--decrypt", str(kept)], env=env,
                           check=True, capture_output=True).stdout
    assert clear == archive.read_bytes()
    assert backup.stored(str(target), CLUSTER, SID) == manifest
    assert public not in json.dumps([sent, received, manifest])


def test_an_unencrypted_archive_goes_as_it_is(backup, archive, tmp_path):
    target, port = tmp_path / "target", free_port()
    receiver = Receiver(backup, target, port, encrypted=False)
    sent = backup.send(str(archive), CLUSTER, SID, "127.0.0.1", port, timeout=20)
    assert receiver.outcome()[1] is None
    assert sent["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    manifest = backup.verify(str(target), CLUSTER, SID, encrypted=False)
    assert (manifest["file"], manifest["encrypted"], manifest["recipient_fingerprint"]) == (
        f"{SID}.zip", False, None)
    assert (target / CLUSTER / f"{SID}.zip").read_bytes() == archive.read_bytes()


def frames(backup, header, body, trailer):
    """A raw stream as a sender writes one, with any header, body and trailer."""
    out = json.dumps(header).encode() + b"\n"
    for start in range(0, len(body), backup.CHUNK):
        chunk = body[start:start + backup.CHUNK]
        out += backup.LENGTH.pack(len(chunk)) + chunk
    return out + backup.LENGTH.pack(0) + json.dumps(trailer).encode() + b"\n"


def raw_send(port, data):
    for _ in range(100):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        except ConnectionRefusedError:
            threading.Event().wait(0.05)
            continue
        with sock:
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(4096):  # the receiver's acknowledgement, if any
                    pass
            except OSError:  # the receiver refused the stream and closed
                pass
            return
    raise AssertionError("the receiver never listened")


def test_a_digest_the_sender_reports_wrong_fails_the_verify_and_removes_the_part(backup,
                                                                                 tmp_path):
    target, port = tmp_path / "target", free_port()
    receiver = Receiver(backup, target, port, encrypted=False)
    body = b"x" * 200_000
    header = {"magic": backup.MAGIC, "cluster": CLUSTER, "id": SID, "encrypted": False}
    raw_send(port, frames(backup, header, body, {"sha256": "0" * 64, "size": len(body),
                                                 "fingerprint": None, "version": "4.6"}))
    assert receiver.outcome()[1] is None
    with pytest.raises(CommandExecutionError, match="the sender reported sha256: '0000"):
        backup.verify(str(target), CLUSTER, SID, encrypted=False)
    assert modes(target) == {CLUSTER: 0o700}
    assert backup.stored(str(target), CLUSTER, SID) is None


def test_a_stream_cut_short_leaves_no_file(backup, tmp_path):
    target, port = tmp_path / "target", free_port()
    receiver = Receiver(backup, target, port, encrypted=False)
    header = {"magic": backup.MAGIC, "cluster": CLUSTER, "id": SID, "encrypted": False}
    raw_send(port, frames(backup, header, b"y" * 100_000, {})[:50_000])
    error = receiver.outcome()[1]
    assert isinstance(error, CommandExecutionError) and "closed the stream" in str(error)
    assert modes(target) == {CLUSTER: 0o700}


@pytest.mark.parametrize("change", [{"id": "prod-other"}, {"encrypted": True},
                                    {"magic": "something else"}])
def test_a_stream_of_another_snapshot_or_kind_is_refused(backup, tmp_path, change):
    target, port = tmp_path / "target", free_port()
    receiver = Receiver(backup, target, port, encrypted=False)
    header = dict({"magic": backup.MAGIC, "cluster": CLUSTER, "id": SID, "encrypted": False},
                  **change)
    raw_send(port, frames(backup, header, b"z" * 10, {}))
    error = receiver.outcome()[1]
    assert isinstance(error, CommandExecutionError) and "not the one expected" in str(error)
    assert modes(target) == {CLUSTER: 0o700}


def test_a_connection_from_an_address_that_is_no_manager_is_refused(backup, archive,
                                                                    tmp_path):
    """Only the managers' addresses get in: 127.0.0.1 is not among the sources here, so the
    sender's connection is closed, the receiver keeps waiting and times out naming it."""
    target, port = tmp_path / "target", free_port()
    receiver = Receiver(backup, target, port, sources=("10.9.9.9",), timeout=3,
                        encrypted=False)
    with pytest.raises(CommandExecutionError):
        backup.send(str(archive), CLUSTER, SID, "127.0.0.1", port, timeout=2)
    error = receiver.outcome()[1]
    assert isinstance(error, CommandExecutionError)
    assert "refused: 127.0.0.1" in str(error) and "within 3 s" in str(error), error
    assert modes(target) == {CLUSTER: 0o700}


def test_the_receiver_gives_up_when_nobody_connects(backup, tmp_path):
    with pytest.raises(CommandExecutionError, match=r"no manager of cluster prod connected to "
                                                    r"127\.0\.0\.1:\d+ within 1 s"):
        backup.receive(str(tmp_path / "t"), CLUSTER, SID, "127.0.0.1", free_port(),
                       ["10.0.0.1"], timeout=1)


def test_the_sender_gives_up_when_nobody_listens(backup, archive):
    with pytest.raises(CommandExecutionError, match="did not accept a connection within"):
        backup.send(str(archive), CLUSTER, SID, "127.0.0.1", free_port(), timeout=1)


@pytest.mark.parametrize("recipient, message", [
    ("-----BEGIN PGP PRIVATE KEY BLOCK-----\nxx\n-----END PGP PRIVATE KEY BLOCK-----\n",
     "not a public key block"),
    ("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n",
     "could not import|holds 0 public keys"),
])
def test_a_recipient_that_is_no_public_key_stops_the_sender_before_it_connects(
        backup, archive, recipient, message):
    with pytest.raises((CommandExecutionError, SaltInvocationError), match=message) as caught:
        backup.send(str(archive), CLUSTER, SID, "127.0.0.1", free_port(), recipient=recipient,
                    timeout=1)
    assert "xx" not in str(caught.value)


def test_retention_keeps_the_newest_archives_it_wrote_and_nothing_else_goes(backup, tmp_path):
    base = tmp_path / "target" / CLUSTER
    base.mkdir(parents=True)
    ids = [f"{CLUSTER}-2030010{n}T000000Z" for n in range(1, 5)]
    for n, sid in enumerate(ids):
        (base / f"{sid}.zip.gpg").write_bytes(b"a" * n)
        (base / f"{sid}.json").write_text(json.dumps({
            "id": sid, "cluster": CLUSTER, "time": f"2030-01-0{n + 1}T00:00:00Z",
            "cloudify_version": "4.6", "size": n, "sha256": "a" * 64, "encrypted": True,
            "recipient_fingerprint": None, "file": f"{sid}.zip.gpg"}))
    others = [f"{CLUSTER}-20200101T000000Z.zip.gpg", "notes.txt", f"{CLUSTER}-x.json"]
    for name in others:
        (base / name).write_text("{}")
    assert backup.prune(str(tmp_path / "target"), CLUSTER, 2) == {
        "kept": [ids[3], ids[2]], "removed": [ids[1], ids[0]]}
    assert sorted(p.name for p in base.iterdir()) == sorted(
        others + [f"{s}{ext}" for s in ids[2:] for ext in (".zip.gpg", ".json")])
    assert backup.prune(str(tmp_path / "target"), CLUSTER, 2)["removed"] == []


@pytest.mark.parametrize("directory", ["/etc/backups", "relative", "/var/../etc", "/"])
def test_the_target_directory_is_checked_as_the_pillar_checks_it(backup, directory):
    with pytest.raises(SaltInvocationError, match="directory"):
        backup.receive(directory, CLUSTER, SID, "127.0.0.1", 1, ["10.0.0.1"], timeout=1)


def test_a_link_in_place_of_the_clusters_directory_is_never_followed(backup, tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "t" / CLUSTER).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CommandExecutionError, match="is not a directory"):
        backup.receive(str(tmp_path / "t"), CLUSTER, SID, "127.0.0.1", free_port(),
                       ["10.0.0.1"], timeout=1)
