"""_utils/cloudify_ha_pillar.py: clusters:<name>:backup, each refusal naming its key and fix."""

import copy

import pytest

from formula_code import example_pillar, pillar_util

P = pillar_util()
BACKUP = "cloudify_ha:clusters:prod:backup"
TARGET = "backup1.example.com"
RECIPIENT = example_pillar()["clusters"]["prod"]["backup"]["recipient"]
PRIVATE = ("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBGsXEy0BCAD-private-bytes\n"
           "-----END PGP PRIVATE KEY BLOCK-----\n")


def with_backup(**changes):
    pillar = example_pillar()
    backup = pillar["clusters"]["prod"]["backup"]
    for key, value in changes.items():
        node, _, leaf = key.rpartition("__")
        where = backup[node] if node else backup
        if value is None:
            where.pop(leaf, None)
        else:
            where[leaf] = value
    return pillar


def errors_of(pillar, minion_id=None):
    return P.validate(pillar, minion_id)[0]


def test_the_examples_backup_is_valid_and_its_defaults_fill_in():
    assert errors_of(example_pillar()) == []
    pillar = example_pillar()
    pillar["clusters"]["prod"]["backup"] = {"target": {
        "minion_id": TARGET, "address": "10.0.0.30", "directory": "/srv/backups"},
        "recipient": RECIPIENT}
    assert errors_of(pillar) == []
    settings = P.cluster_settings("prod", pillar["clusters"]["prod"])
    assert {k: v for k, v in settings["backup"].items() if k not in ("target", "recipient")} == {
        "port": 4550, "quiesce": "maintenance", "timeout": 3600, "keep": 7,
        "keep_on_cluster": 1, "encrypt": True}


def test_a_cluster_without_backup_is_valid():
    pillar = example_pillar()
    del pillar["clusters"]["prod"]["backup"]
    assert errors_of(pillar) == []


@pytest.mark.parametrize("changes, key, says", [
    ({"target": None}, "target", "required, a mapping"),
    ({"target": "backup1"}, "target", "required, a mapping"),
    ({"target__minion_id": None}, "target:minion_id", "required"),
    ({"target__minion_id": "bad id"}, "target:minion_id", "not a plain minion id"),
    ({"target__minion_id": "cfy-mgr1.example.com"}, "target:minion_id", "is a manager of this"),
    ({"target__address": "backup1"}, "target:address", "not an IPv4 address"),
    ({"target__address": "10.0.0.11"}, "target:address", "is the private_ip of manager"),
    ({"target__directory": None}, "target:directory", "required; an absolute path"),
    ({"target__directory": "backups"}, "target:directory", "not a plain absolute path"),
    ({"target__directory": "/var/backups/../../etc"}, "target:directory",
     "not a plain absolute path"),
    ({"target__directory": "/var/backups/"}, "target:directory", "no trailing slash"),
    ({"target__directory": "/var//backups"}, "target:directory", "not a plain absolute path"),
    ({"target__directory": "/"}, "target:directory", "not a plain absolute path"),
    ({"target__directory": "/etc/cloudify_backups"}, "target:directory", "is under /etc"),
    ({"target__directory": "/usr"}, "target:directory", "is under /usr"),
    ({"target__directory": "/run/backups"}, "target:directory", "is under /run"),
    ({"target__directory": "/proc/1"}, "target:directory", "is under /proc"),
    ({"target__extra": 1}, "target:extra", "unknown key"),
    ({"port": 0}, "port", "must be a TCP port"),
    ({"port": "4550"}, "port", "must be a TCP port"),
    ({"port": 70000}, "port", "must be a TCP port"),
    ({"quiesce": "pause"}, "quiesce", "is not one of maintenance, executions, none"),
    ({"timeout": 10}, "timeout", "from 60 to 86400"),
    ({"timeout": 86401}, "timeout", "from 60 to 86400"),
    ({"timeout": True}, "timeout", "from 60 to 86400"),
    ({"keep": 0}, "keep", "from 1 to 1000"),
    ({"keep_on_cluster": 0}, "keep_on_cluster", "from 1 to 1000"),
    ({"keep_on_cluster": 1.5}, "keep_on_cluster", "from 1 to 1000"),
    ({"encrypt": "yes"}, "encrypt", "must be true or false"),
    ({"recipient": None}, "recipient", "required while encrypt is true"),
    ({"recipient": ["key"]}, "recipient", "not a list"),
    ({"recipient": "not a key"}, "recipient", "not one ASCII-armored PGP public key block"),
    ({"recipient": RECIPIENT.replace("PUBLIC KEY BLOCK", "SIGNATURE")}, "recipient",
     "not one ASCII-armored"),
    ({"recipient": RECIPIENT + RECIPIENT}, "recipient", "not one ASCII-armored"),
    ({"recipient": PRIVATE}, "recipient", "holds a PRIVATE key block"),
    ({"recipient": RECIPIENT + PRIVATE}, "recipient", "holds a PRIVATE key block"),
    ({"schedule": "daily"}, "schedule", "unknown key"),
])
def test_each_mistake_is_refused_naming_its_key_and_fix(changes, key, says):
    errors = errors_of(with_backup(**changes))
    mine = [e for e in errors if e.startswith(f"{BACKUP}:{key}: ")]
    assert mine and says in mine[0], errors
    assert "private-bytes" not in "\n".join(errors)


def test_backup_must_be_a_mapping():
    pillar = example_pillar()
    pillar["clusters"]["prod"]["backup"] = "nightly"
    assert errors_of(pillar) == [f"{BACKUP}: must be a mapping (see pillar.example)"]


def test_unencrypted_backups_need_no_recipient():
    assert errors_of(with_backup(encrypt=False, recipient=None)) == []


def test_the_target_is_a_role_of_its_own_with_no_cloudify_secret():
    pillar = example_pillar()
    settings = P.cluster_settings("prod", pillar["clusters"]["prod"])
    assert P.roles_of(settings, TARGET) == {"backup"}
    assert P.ROLE_SECRETS["backup"] == ("backup:recipient",)
    # what the test pillar gives it: the cluster without a single Cloudify secret
    bare = copy.deepcopy(pillar)
    prod = bare["clusters"]["prod"]
    for section, key in (("admin", "password"), ("database", "password"),
                         ("database", "postgres_password"), ("database", "ca_key"),
                         ("database", "client_key"), ("loadbalancer", "check_password")):
        prod[section].pop(key)
    del prod["license"]
    assert errors_of(bare, TARGET) == []
    assert errors_of(bare, "cfy-mgr1.example.com")  # a manager needs them


def test_the_public_settings_say_only_whether_there_is_a_recipient():
    settings = P.cluster_settings("prod", example_pillar()["clusters"]["prod"])
    public = P.public(settings)
    assert public["backup"]["recipient"] is True
    assert "PGP" not in repr(public)
