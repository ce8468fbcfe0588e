"""A broken pillar stops the orchestration in its first step: the message names the key and the
fix, the exit code is non-zero, and no host is touched (no other step exists, no command ran)."""

import pytest

from lab.formula import deep, minion_pillar, orch, shadow_pillar

ROOT = "cloudify_ha:clusters:lab"


def _set(path, value):
    def change(pillar):
        node = pillar["clusters"]["lab"]
        *parents, last = path
        for key in parents:
            node = node[key]
        node[last] = value
    return change


def _dup_ip(pillar):
    managers = pillar["clusters"]["lab"]["managers"]
    managers[2]["private_ip"] = managers[1]["private_ip"]


def _second_cluster_reuses_minion(pillar):
    other = deep(pillar["clusters"]["lab"])
    other["managers"] = [dict(other["managers"][0], name="other1", private_ip="10.9.9.1")]
    other["leader"] = "other1"
    pillar["clusters"]["other"] = other


def _per_manager_database(pillar):
    pillar["clusters"]["lab"]["managers"][1]["database_ip"] = "10.9.9.9"


def _del(path):
    def change(pillar):
        node = pillar["clusters"]["lab"]
        *parents, last = path
        for key in parents:
            node = node[key]
        del node[last]
    return change


def _typo(pillar):
    pillar["clusters"]["lab"]["replace_stal"] = pillar["clusters"]["lab"].pop("replace_stale")


MISTAKES = {
    "two leaders": (_set(["leader"], ["mgr1", "mgr2"]), f"{ROOT}:leader: exactly one leader"),
    "leader not a manager": (_set(["leader"], "mgr9"),
                             f"{ROOT}:leader: 'mgr9' is not the name of a manager"),
    "duplicate private ip": (_dup_ip, f"{ROOT}:managers:2:private_ip:"),
    "minion in two clusters": (_second_cluster_reuses_minion,
                               "cloudify_ha:clusters:other:managers:0:minion_id: 'mgr1' is used twice"),
    "bad address": (_set(["managers", 0, "public_ip"], "10.0.0.300"),
                    f"{ROOT}:managers:0:public_ip: '10.0.0.300' is not an IPv4 address"),
    "missing admin password": (_del(["admin", "password"]),
                               f"{ROOT}:admin:password: required secret is missing"),
    "per-manager database": (_per_manager_database,
                             f"{ROOT}:managers:1:database_ip: a cluster has ONE database"),
    "rest ssl with a join": (_set(["rest", "ssl"], True), f"{ROOT}:rest:ssl: 4.6 cannot build"),
    "missing database ca": (_del(["database", "ca_cert"]), f"{ROOT}:database:ca_cert: required"),
    # the managers' secrets: the master holds none, the managers report them missing
    "cert without key": (_set(["database", "client_key"], ""),
                         f"{ROOT}:database:client_key: required on the managers (PEM, a secret)"),
    "ca without its key": (_set(["database", "ca_key"], ""),
                           f"{ROOT}:database:ca_key: required on the managers with "
                           "database:ca_cert"),
    "misspelt key": (_typo, f"{ROOT}:replace_stal: unknown key (did you mean 'replace_stale'?)"),
    "bad port": (_set(["database", "port"], "fivefourthreetwo"),
                 f"{ROOT}:database:port: 'fivefourthreetwo' is not a TCP port number"),
    # passwords 4.6 cannot carry (README "Safety"); the message never shows them
    "db password through 4.6's shell": (_set(["database", "password"], "two words-pw"),
                                        f"{ROOT}:database:password: has a character 4.6 cannot "
                                        "carry"),
    "non-ASCII admin password": (_set(["admin", "password"], "p\u00e4ssw\u00f6rd-1"),
                                 f"{ROOT}:admin:password: has a non-ASCII or control character"),
    # what used to fail only at the last step, after hosts were touched
    "a system database": (_set(["database", "name"], "template1"),
                          f"{ROOT}:database:name: 'template1' is PostgreSQL's own"),
    "a manager as a CLI host": (_set(["cli_hosts"], ["mgr2"]),
                                f"{ROOT}:cli_hosts:0: 'mgr2' is also a manager"),
    "an endless install": (_set(["waits", "install"], 10 ** 12),
                           f"{ROOT}:waits:install: 1000000000000 must be a whole number of "
                           "seconds from 60 to 86400"),
}


def nothing_ran(emulator):
    """No Cloudify command and no change through the REST API, on any host."""
    audit = emulator.all_audit()
    return not [e for entries in audit.values() for e in entries if e["kind"] == "cli"] \
        and emulator.mutating() == []


@pytest.fixture(scope="module")
def good_pillar(salt_cli):
    """The lab's pillar, with every minion holding the formula's modules: a minion the master's
    grains cache shows without them is only pinged by the orchestration (it cannot report its
    own pillar's errors before the sync; its states then refuse on the host), and the module
    before this one may have left every minion new (test_old_salt_managers)."""
    for fun in ("saltutil.sync_all", "saltutil.refresh_pillar"):
        ret = salt_cli.run(fun, *(["wait=True"] if fun.endswith("pillar") else []),
                           minion_tgt="*")
        assert ret.returncode == 0, ret
    return minion_pillar(salt_cli)


def refused(broken, pillar_dir, emulator, salt_run_cli):
    """The orchestration with a broken cloudify_ha pillar: it must stop in its first step,
    fail, and run nothing on any host; the step's comment."""
    emulator.clear_audit()
    with shadow_pillar(pillar_dir, broken):
        run = orch(salt_run_cli)
    assert run.returncode != 0, run
    assert list(run.steps) == ["cloudify_ha-orch-validate"], run
    step = run["cloudify_ha-orch-validate"]
    assert step["result"] is False
    assert "nothing was changed on any host" in step["comment"]
    assert nothing_ran(emulator)
    return step["comment"]


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_pillar_mistake_is_named_and_nothing_runs(mistake, good_pillar, pillar_dir, emulator,
                                                    salt_run_cli):
    change, expected = MISTAKES[mistake]
    broken = deep(good_pillar)
    change(broken)
    comment = refused(broken, pillar_dir, emulator, salt_run_cli)
    assert expected in comment, comment


def test_an_unknown_cluster_in_the_orchestration_pillar_is_named(emulator, salt_run_cli):
    emulator.clear_audit()
    run = orch(salt_run_cli, cluster="nope")
    assert run.returncode != 0, run
    assert list(run.steps) == ["cloudify_ha-orch-validate"], run
    assert "cluster 'nope' (from the orchestration's pillar 'cluster') is not defined under " \
           "cloudify_ha:clusters; defined: lab" in run["cloudify_ha-orch-validate"]["comment"]
    assert nothing_ran(emulator)


@pytest.mark.parametrize("kind, key, expected", [
    ("ec", "client_key", "is an EC key: 4.6 checks it with `openssl rsa -check`"),
    ("another certificate's", "client_key", "is not the key of database:client_cert"),
])
def test_a_key_46_refuses_is_named_and_nothing_runs(kind, key, expected, lab, good_pillar,
                                                     pillar_dir, emulator, salt_run_cli):
    """Keys live in the managers' pillar only: each manager checks its own (orch_facts), and the
    orchestration refuses the run before any host is touched, naming the key; 4.6 would stop at
    `Key file ... is invalid` on a host already touched (cloudify-4.6.md section 0.4)."""
    if kind == "ec":
        cert, pem = lab.ca.issue("mistake-ec", "mgr", client=True, key_spec=(
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"))
        database = {"client_cert": cert.read_text(), "client_key": pem.read_text()}
    else:
        _, pem = lab.client_cert("mistake-other")
        database = {"client_key": pem.read_text()}
    broken = deep(good_pillar)
    broken["clusters"]["lab"]["database"].update(database)
    emulator.clear_audit()
    with shadow_pillar(pillar_dir, broken):
        run = orch(salt_run_cli)
    assert run.returncode != 0, run
    assert list(run.steps) == ["cloudify_ha-orch-validate"], run
    comment = run["cloudify_ha-orch-validate"]["comment"]
    assert f"{ROOT}:database:{key}: {expected}" in comment, comment
    assert "PRIVATE KEY" not in run.text and pem.read_text().splitlines()[1] not in run.text
    assert nothing_ran(emulator)
