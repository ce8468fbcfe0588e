"""_modules/cloudify_ha.py's part of a backup: the snapshot's id given, the sender on the active
node, retention on the cluster (mocked __salt__ and REST for the branches; the stream itself
runs for real in test_backup_stream.py)."""

import json
from unittest.mock import MagicMock

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

# the fixtures of test_module: the example pillar, this minion (cfy-mgr2), its files, the REST
# client's fake managers, the clock
from test_module import (MODULE, REPLICA, FakeCfy, _archive, clock,  # noqa: F401
                         configure_loader_modules, host, managers, pillar, salt,
                         snapshot_cluster)

SID = "prod-20300101T000000Z"
SENT = {"id": SID, "sha256": "ab" * 32, "size": 10, "encrypted": True,
        "recipient_fingerprint": "A" * 40, "to": "10.0.0.30:4550", "seconds": 0.1}


def test_a_snapshot_takes_the_id_the_orchestration_named(salt, host, snapshot_cluster):
    fake = FakeCfy(host, states=["created"])
    salt["cmd.run_all"].side_effect = fake
    out = MODULE.snapshot(timeout=5, poll=0.01, snapshot_id=SID)
    assert ["snapshots", "create", SID] in fake.argv and out["id"] == SID


@pytest.mark.parametrize("sid", ["staging-20300101T000000Z", "prod-x/../../users", "prod-a b",
                                 ".."])
def test_a_snapshot_id_of_another_cluster_or_no_path_segment_is_refused(salt, host,
                                                                        snapshot_cluster, sid):
    salt["cmd.run_all"].side_effect = FakeCfy(host)
    with pytest.raises(SaltInvocationError, match="snapshot_id"):
        MODULE.snapshot(timeout=5, poll=0.01, snapshot_id=sid)
    assert salt["cmd.run_all"].call_args_list == []


@pytest.fixture
def send(salt):
    salt["cloudify_ha_backup.send"] = MagicMock(return_value=dict(SENT))
    return salt["cloudify_ha_backup.send"]


def test_the_sender_checks_the_archive_and_streams_it_encrypted_for_the_recipient(
        host, snapshot_cluster, send, pillar):
    path = _archive(host.resources / "snapshots" / SID / f"{SID}.zip")
    out = MODULE.backup_send(SID)
    assert out == SENT
    send.assert_called_once_with(
        str(path), "prod", SID, "10.0.0.30", 4550,
        recipient=pillar["clusters"]["prod"]["backup"]["recipient"], timeout=3600,
        version="4.6")


def test_unencrypted_the_sender_says_the_archive_travels_in_clear(host, snapshot_cluster, send,
                                                                 pillar):
    pillar["clusters"]["prod"]["backup"].update(encrypt=False, recipient=None)
    _archive(host.resources / "snapshots" / SID / f"{SID}.zip")
    out = MODULE.backup_send(SID)
    assert send.call_args.kwargs["recipient"] is None
    assert "travelled and is kept in clear" in out["warning"]


def test_the_sender_refuses_an_archive_that_is_not_4_6s(host, snapshot_cluster, send):
    _archive(host.resources / "snapshots" / SID / f"{SID}.zip", version="4.5.5")
    with pytest.raises(CommandExecutionError, match="snapshot_version 4.5.5"):
        MODULE.backup_send(SID)
    with pytest.raises(CommandExecutionError, match="is not a Cloudify snapshot archive"):
        MODULE.backup_send("prod-missing")
    send.assert_not_called()


def test_the_sender_runs_only_on_the_active_node(managers, host, send):
    managers({"10.0.0.11": lambda m, p: {"initialized": True} if p == "/cluster" else
              {"status": "running"}, "10.0.0.12": REPLICA, "10.0.0.13": REPLICA})
    with pytest.raises(CommandExecutionError, match=r"is not the active node \(10.0.0.11 is\)"):
        MODULE.backup_send(SID)
    send.assert_not_called()


def test_a_cluster_without_backup_has_nothing_to_send(pillar, snapshot_cluster, send):
    del pillar["clusters"]["prod"]["backup"]
    with pytest.raises(SaltInvocationError, match="has no backup target"):
        MODULE.backup_send(SID)


def listing(managers, items):
    calls = []

    def active(method, path):
        calls.append((method, path))
        if path == "/snapshots" and method == "GET":
            return {"items": items, "metadata": {}}
        if path == "/cluster":
            return {"initialized": True}
        return {"status": "running"}

    managers({"10.0.0.11": REPLICA, "10.0.0.12": active, "10.0.0.13": REPLICA})
    return calls


def test_retention_on_the_cluster_deletes_all_but_the_newest_of_its_own(managers):
    items = [{"id": f"prod-2030010{n}T000000Z", "status": "created",
              "created_at": f"2030-01-0{n}T00:00:00.000Z"} for n in (1, 3, 2)]
    items += [{"id": "prod-20300104T000000Z", "status": "creating",
               "created_at": "2030-01-04T00:00:00.000Z"},
              {"id": "daily_2030-01-01", "status": "created", "created_at": "2029"},
              {"id": "prod-../../users/admin", "status": "failed", "created_at": "2000"}]
    calls = listing(managers, items)
    out = MODULE.prune_snapshots()
    assert out == {"kept": ["prod-20300103T000000Z"],
                   "deleted": ["prod-20300102T000000Z", "prod-20300101T000000Z"],
                   "left": ["'prod-../../users/admin'"]}
    assert [c for c in calls if c[0] == "DELETE"] == [
        ("DELETE", "/snapshots/prod-20300102T000000Z"),
        ("DELETE", "/snapshots/prod-20300101T000000Z")]
    calls[:] = []
    assert MODULE.prune_snapshots(keep=5)["deleted"] == []
    assert not [c for c in calls if c[0] == "DELETE"]


@pytest.mark.parametrize("keep", [0, True, "1"])
def test_retention_keeps_at_least_one(managers, keep):
    listing(managers, [])
    with pytest.raises(SaltInvocationError, match="keep"):
        MODULE.prune_snapshots(keep=keep)


def test_nothing_a_backup_function_returns_holds_the_key(host, snapshot_cluster, send, pillar):
    _archive(host.resources / "snapshots" / SID / f"{SID}.zip")
    key = pillar["clusters"]["prod"]["backup"]["recipient"]
    assert key.strip().splitlines()[3] not in json.dumps(MODULE.backup_send(SID))
