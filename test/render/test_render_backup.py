"""cloudify_ha.orch.backup rendered by Salt's py renderer on the master (pillar.example as its
pillar, the minions' answers canned), its steps compiled by Salt's state engine; and the backup
target's role: it renders the formula with no Cloudify secret."""

import json

from render_setup import FOLLOWER, FOLLOWER3, LEADER, args_of, functions_of
from test_render_orch import Minions, formula_hashes, orch, refusal_runs, steps

TARGET = "backup1.example.com"


class BackupMinions(Minions):
    """The minions, the backup target among them, answering cloudify_ha_backup.stored with
    `manifest` (the target's)."""

    def __init__(self, manifest=None, **kwargs):
        super().__init__(**kwargs)
        self.manifest = manifest

    def cmd(self, tgt, fun, arg=(), timeout=None, tgt_type="glob", kwarg=None, **kwargs):
        if fun != "cloudify_ha_backup.stored":
            return super().cmd(tgt, fun, arg, timeout, tgt_type, kwarg, **kwargs)
        self.asked.append((fun, list(tgt), tgt_type, kwarg, timeout))
        return {mid: {"ret": self.manifest, "retcode": 0} for mid in tgt}


def test_a_backup_snapshots_on_the_active_node_streams_verifies_and_keeps(master):
    minions = BackupMinions(leader=FOLLOWER)
    high, _ = orch(master, "cloudify_ha.orch.backup", minions=minions)
    assert [(sid, fun) for sid, fun, _ in steps(high)] == [
        ("cloudify_ha-backup-validate", "test.succeed_without_changes"),
        ("cloudify_ha-backup-sync", "test.succeed_without_changes"),
        ("cloudify_ha-backup-prod-snapshot", "salt.function"),
        ("cloudify_ha-backup-prod-receive", "salt.function"),
        ("cloudify_ha-backup-prod-send", "salt.function"),
        ("cloudify_ha-backup-prod-verify", "salt.function"),
        ("cloudify_ha-backup-prod-keep-target", "salt.function"),
        ("cloudify_ha-backup-prod-keep-cluster", "salt.function")]
    assert minions.asked == [("cloudify_ha.orch_facts", [LEADER, FOLLOWER, FOLLOWER3, TARGET],
                              "list", {"expected": formula_hashes()}, 5)]
    snapshot = args_of(high, "cloudify_ha-backup-prod-snapshot")
    assert (snapshot["tgt"], snapshot["name"]) == (FOLLOWER, "cloudify_ha.snapshot")
    sid = snapshot["kwarg"]["snapshot_id"]
    assert sid.startswith("prod-") and len(sid) == len("prod-20300101T000000Z")
    for step, tgt in (("receive", TARGET), ("send", FOLLOWER), ("verify", TARGET)):
        assert args_of(high, f"cloudify_ha-backup-prod-{step}")["tgt"] == tgt
        assert args_of(high, f"cloudify_ha-backup-prod-{step}")["kwarg"]["snapshot_id"] == sid
    assert args_of(high, "cloudify_ha-backup-prod-receive")["parallel"] is True
    assert args_of(high, "cloudify_ha-backup-prod-send")["parallel"] is True
    assert "PGP" not in json.dumps(high, default=str)


def test_a_snapshot_the_target_holds_is_not_sent_again(master):
    sid = "prod-20300101T000000Z"
    minions = BackupMinions(manifest={"id": sid, "sha256": "ab" * 32, "size": 9})
    high, _ = orch(master, "cloudify_ha.orch.backup", minions=minions,
                   pillar={"cluster": "prod", "snapshot": sid})
    assert [sid for sid, _, _ in steps(high)] == [
        "cloudify_ha-backup-validate", "cloudify_ha-backup-sync", "cloudify_ha-backup-prod-stored",
        "cloudify_ha-backup-prod-keep-target", "cloudify_ha-backup-prod-keep-cluster"]
    assert minions.asked[-1] == ("cloudify_ha_backup.stored", [TARGET], "list", {
        "directory": "/var/backups/cloudify_ha", "cluster": "prod", "snapshot_id": sid}, 5)


def test_a_target_down_refuses_before_any_snapshot(master):
    high, _ = orch(master, "cloudify_ha.orch.backup", minions=BackupMinions(down=[TARGET]))
    assert functions_of(high)["cloudify_ha-backup-prod-target"] == "cloudify_ha.refused"
    assert "cloudify_ha-backup-prod-snapshot" not in high
    refusal_runs(master, high, "cloudify_ha-backup-prod-target",
                 "the backup target backup1.example.com does not answer")


def test_an_unknown_cluster_is_refused_and_nobody_asked(master):
    minions = BackupMinions()
    high, _ = orch(master, "cloudify_ha.orch.backup", minions=minions,
                   pillar={"cluster": "nope"})
    assert functions_of(high) == {"cloudify_ha-backup-validate": "cloudify_ha.refused"}
    assert "cluster 'nope'" in args_of(high, "cloudify_ha-backup-validate")["comment"]
    assert minions.asked == []


def test_a_master_without_the_formulas_modules_refuses_the_backup_with_salts_own_state(master):
    high, _ = orch(master, "cloudify_ha.orch.backup", modules=False)
    assert functions_of(high) == {"cloudify_ha-backup-validate": "test.fail_without_changes"}


NO_CLOUDIFY_SECRET = {"cloudify_ha": {"clusters": {"prod": {
    "admin": {"password": ""}, "license": "",
    "database": {"password": "", "postgres_password": "", "ca_key": "", "client_key": ""},
    "loadbalancer": {"check_password": ""}}}}}


def test_the_backup_target_renders_every_sls_without_any_cloudify_secret(minion):
    from render_setup import minion_sls  # pylint: disable=import-outside-toplevel

    whole, bare = minion("example", TARGET), minion("example", TARGET, pillar=NO_CLOUDIFY_SECRET)
    for sls in sorted(minion_sls()):
        want, _ = whole.render(sls)
        got, errors = bare.render(sls)
        assert (errors, functions_of(got)) == ([], functions_of(want)), sls
    # and what its SLS render from holds no key: the recipient is only said to be there
    settings = bare.state.functions["cloudify_ha.settings"]()
    assert settings["errors"] == [] and "PGP" not in json.dumps(settings)
