"""`cfy_manager install` on the external database (cloudify-4.6.md section 5): the install-time
join and its refusals, and the data-loss trap of an install without join settings. Every test
starts from fresh hosts and an empty database."""

import json
import threading
import time

from cfylab import (ADMIN_PASSWORD, DB_PASSWORD, blueprint_ids, cfy, cfy_manager, failed, install,
                    last_line, nodes, ok, prepare, read_yaml, rest, start_cluster,
                    upload_blueprint, wait_for_nodes)
from lab.manual import manager_config, write_config
from lab.proc import wait_until
from unit.formula_code import example_pillar, pillar_util

JOIN_LINES = ["Master ip found, joining to cluster with {leader} as master",
              'Adding cluster node "{name}" to the cluster',
              "Node has been added to the cluster successfully!",
              "Installation finished successfully!",
              "Manager is up at http://{ip}"]


def clustered_leader(lab, emulator, name="mgr1"):
    ok(install(lab, emulator, name))
    ok(start_cluster(lab[name]))
    return lab[name]


def db_oid(lab):
    return lab.db.query("SELECT oid FROM pg_database WHERE datname = 'cloudify_db'").stdout.strip()


def refused_join(lab, name, leader="mgr1"):
    """The joiner did not become a member: no install marker, absent from the leader's list."""
    assert not lab[name].exists("/etc/cloudify/.install")
    assert not lab[name].exists("/etc/cloudify/cluster")
    assert name not in nodes(lab[leader].ip)


# ---- a join that works (one join, everything it must show: each build costs seconds) -----------
def test_a_join_through_the_leaders_rest_api_as_46_does_it(fresh_lab, emulator):
    lab = fresh_lab
    leader = clustered_leader(lab, emulator)
    ok(upload_blueprint(leader, "kept"))
    before = db_oid(lab)
    emulator.clear_audit()
    out = ok(install(lab, emulator, "mgr2", join="mgr1"))
    # the reference messages, in order
    expected = [line.format(leader=lab["mgr1"].ip, name="mgr2", ip=lab["mgr2"].public_ip)
                for line in JOIN_LINES]
    found = [next((i for i, line in enumerate(out.splitlines()) if want in line), None)
             for want in expected]
    assert None not in found and found == sorted(found), (expected, out)
    # registered through the leader's REST API on port 80
    calls = [(e["method"], e["path"], e["port"], e["status"]) for e in emulator.audit("mgr1")
             if e["kind"] == "rest" and e["remote"] == lab["mgr2"].ip]
    assert calls[:2] == [("GET", "/api/v3.1/cluster/nodes", 80, 200),
                         ("PUT", "/api/v3.1/cluster/nodes/mgr2", 80, 200)]
    # the join settings came from config.yaml alone (no flag, no secret on argv)
    (entry,) = [e for e in emulator.audit("mgr2") if e["kind"] == "cli" and e["prog"] == "cfy_manager"]
    assert (entry["prog"], entry["argv"], entry["secret_on_argv"]) == ("cfy_manager", ["install"],
                                                                       False)
    # both markers, and config.yaml keeps the join settings (its password removed)
    joiner = lab["mgr2"]
    assert joiner.exists("/etc/cloudify/.install") and joiner.exists("/etc/cloudify/cluster")
    config = read_yaml(joiner, "/etc/cloudify/config.yaml")
    assert config["cluster"]["master_ip"] == lab["mgr1"].ip
    assert config["postgresql_client"]["postgres_password"] == "<removed>"
    # the joiner skipped database creation: same database, data kept
    assert db_oid(lab) == before
    assert blueprint_ids(lab) == ["kept"]
    wait_for_nodes(lab, "mgr1", {"mgr1": "leader", "mgr2": "replica"})


# ---- the data-loss trap --------------------------------------------------------------------------
def test_install_without_join_settings_drops_the_clusters_data(fresh_lab, emulator):
    lab = fresh_lab
    leader = clustered_leader(lab, emulator)
    ok(install(lab, emulator, "mgr2", join="mgr1"))
    for blueprint in ("app", "db"):
        ok(upload_blueprint(leader, blueprint))
    assert blueprint_ids(lab) == ["app", "db"]
    before = db_oid(lab)
    # "reinstall the leader" on another fresh host: a first install, no join settings
    ok(install(lab, emulator, "mgr3"))
    assert db_oid(lab) != before
    assert blueprint_ids(lab) == []
    # the license went with the data: 4.6 answers with its license gate, no longer the blueprints
    assert "This Cloudify Manager has no license" in failed(cfy(leader, "blueprints", "list"))


def test_databases_are_created_as_postgres_with_a_password_and_no_client_certificate(
        fresh_lab, emulator):
    """4.6 creates its databases with `psql -h <host>` and ~postgres/.pgpass: a server that
    requires a client certificate from every user cannot host it (the install fails at its
    restservice step, nothing created); one that requires it from `cloudify` only can, and the
    manager's own connections present the copied certificate (cloudify-4.6.md section 0.2)."""
    lab = fresh_lab
    try:
        lab.db.require_client_cert(["all"])
        out = failed(install(lab, emulator, "mgr1"))
        assert "Installing restservice..." in out and "Installing stage..." not in out, out
        assert "Failed running command: sudo su - postgres -c" in out and "certificate" in out, \
            out
        assert "cloudify_db" not in lab.db.databases()
        lab.db.require_client_cert(["cloudify"])
        ok(cfy_manager(lab["mgr1"], "remove", "-f"))
        ok(install(lab, emulator, "mgr1"))
        ok(upload_blueprint(lab["mgr1"], "certified"))
        assert blueprint_ids(lab) == ["certified"]
    finally:
        lab.db.require_client_cert(())


def test_drop_database_is_retried_while_the_database_is_being_accessed(fresh_lab, emulator):
    lab = fresh_lab
    ok(install(lab, emulator, "mgr1"))
    prepare(lab, emulator, "mgr2")
    held = {}

    # a client connected to cloudify_db for 6 s: longer than PostgreSQL's own 5 s wait inside
    # DROP DATABASE, so the first attempt fails "being accessed by other users"
    def hold():
        held["proc"] = lab.db.query("SELECT pg_sleep(6)", dbname="cloudify_db", check=False)
        held["end"] = time.monotonic()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        wait_until(lambda: lab.db.query("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                        "'cloudify_db' AND query LIKE '%pg_sleep%'").stdout.strip()
                   == "1", 10, "the holding session to be connected")
        ok(cfy_manager(lab["mgr2"], "install"))
        finished = time.monotonic()
    finally:
        holder.join(15)
    # the session was waited for, not kicked out, and the install outlasted it
    assert held["proc"].returncode == 0, held["proc"]
    assert held["end"] <= finished
    assert blueprint_ids(lab) == []


# ---- joins that are refused (one leader for the three: each build costs seconds) ------------------
def test_joins_that_46_refuses(fresh_lab, emulator):
    lab = fresh_lab
    clustered_leader(lab, emulator)

    # another admin password
    prepare(lab, emulator, "mgr2", join="mgr1", manager={
        "private_ip": lab["mgr2"].ip, "public_ip": lab["mgr2"].ip,
        "security": {"admin_username": "admin", "admin_password": "not-" + ADMIN_PASSWORD}})
    reason = last_line(failed(cfy_manager(lab["mgr2"], "install")))
    assert reason.startswith("NetworkError: ")
    assert reason.endswith("Master and replica nodes must have the same admin password")
    refused_join(lab, "mgr2")

    # a joiner that is not empty
    prepare(lab, emulator, "mgr3", join="mgr1")
    emulator.seed_blueprints("mgr3", "left-over")
    out = failed(cfy_manager(lab["mgr3"], "install"))
    assert last_line(out) == "NetworkError: REST service returned an unexpected response: 400"
    log = lab["mgr3"].read("/var/log/cloudify/manager/cfy_manager.log")
    assert "cluster_join_error" in log and "not empty" in log
    refused_join(lab, "mgr3")

    # a wrong postgres password: refused before it registers (mgr2 reinstalled first)
    lab.wipe("mgr2")
    emulator.clear_audit()
    prepare(lab, emulator, "mgr2", join="mgr1",
            postgresql_client={"postgres_password": "not-the-postgres-password"})
    reason = last_line(failed(cfy_manager(lab["mgr2"], "install")))
    assert reason.startswith(f"ProcessExecutionError: Could not connect to the database at "
                             f"{lab['db'].ip}")
    refused_join(lab, "mgr2")
    assert not emulator.mutating("mgr1")


# ---- what 4.6 takes: keys and passwords (cloudify-4.6.md section 0.4) --------------------------
def _pillar_errors(section="database", **values):
    """What the formula's pillar validation says of these values (pillar.example otherwise):
    the pillar refuses, before any host is touched, what 4.6 fails on."""
    pillar = example_pillar()
    pillar["clusters"]["prod"][section].update(values)
    return pillar_util().validate(pillar, "cfy-mgr1.example.com")[0]


def test_keys_46_refuses_stop_its_validation_unless_validations_are_skipped(fresh_lab, emulator):
    """validations.py _check_ssl_file / _check_key_and_cert: `openssl rsa -in <key> -check
    -noout` on ca_key_path and the client key (an EC key, an encrypted key: no passphrase is
    given), the client key's modulus against its certificate's; each with 4.6's message (the
    trailing space is 4.6's). Nothing is installed. skip_validations skips them, as 4.6's does.
    The pillar refuses each of these keys, naming it."""
    lab = fresh_lab
    ca = lab.ca
    ec_cert, ec_key = ca.issue("ec-client", "mgr1", client=True,
                               key_spec=("-newkey", "ec", "-pkeyopt",
                                         "ec_paramgen_curve:prime256v1"))
    cert, key = lab.client_cert("mgr1")
    _, other_key = lab.client_cert("someone-else")
    encrypted = ca.dir / "encrypted-client.key"
    lab["mgr1"].run(["openssl", "pkey", "-in", str(key), "-aes256", "-passout", "pass:secret1",
                     "-out", str(encrypted)])
    prepare(lab, emulator, "mgr1")
    cases = [
        ({"postgresql_client_cert_path": str(ec_cert), "postgresql_client_key_path": str(ec_key)},
         f"ValidationError: Key file {ec_key} (input name: postgresql_client_key_path) is "
         "invalid ", {"client_cert": ec_cert, "client_key": ec_key}),
        ({"ca_key_path": str(ec_key)},
         f"ValidationError: Key file {ec_key} (input name: ca_key_path) is invalid ",
         {"ca_key": ec_key}),
        ({"postgresql_client_key_path": str(encrypted)},
         f"ValidationError: Key file {encrypted} (input name: postgresql_client_key_path) is "
         "invalid ", {"client_key": encrypted}),
        ({"postgresql_client_key_path": str(other_key)},
         f"ValidationError: Key {other_key} (postgresql_client_key_path) does not match the cert "
         f"{cert} (postgresql_client_cert_path)", {"client_key": other_key}),
    ]
    host = lab["mgr1"]
    for inputs, reason, pems in cases:
        write_config(lab, "mgr1", manager_config(lab, "mgr1", ADMIN_PASSWORD, DB_PASSWORD,
                                                 ssl_inputs=inputs))
        out = failed(cfy_manager(host, "install"))
        assert last_line(out) == reason, out
        assert "Installing manager..." not in out and not host.exists("/etc/cloudify/.install")
        lab_pki = {"ca_cert": ca.cert, "ca_key": ca.key, "client_cert": cert, "client_key": key}
        errors = _pillar_errors(**{k: v.read_text() for k, v in {**lab_pki, **pems}.items()})
        assert [e.split(": ", 1)[0].rsplit(":", 1)[1] for e in errors] == [
            next(k for k in pems if k.endswith("_key"))], errors
    assert "cloudify_db" not in lab.db.databases()
    # 4.6's escape hatch skips the key checks: the install goes on (and stops at a lab knob)
    emulator.set_knobs("mgr1", fail_at="nginx")
    write_config(lab, "mgr1", manager_config(lab, "mgr1", ADMIN_PASSWORD, DB_PASSWORD,
                                             ssl_inputs=cases[0][0],
                                             validations={"skip_validations": True}))
    assert "simulated failure (lab knob fail_at=nginx)" in last_line(
        failed(cfy_manager(host, "install")))


# database passwords the pillar refuses, forced into config.yaml: 4.6's paths mangle each and
# the install fails (restservice/db.py prepare_db's shell, create_default_db.sh's SQL literal,
# ~postgres/.pgpass, the REST service's SQLAlchemy URI, Python 2's str)
SHELL = "ProcessExecutionError: Failed running command: sudo su - postgres -c"
SCHEMA = "ProcessExecutionError: Failed running command: sudo -E /opt/manager/env/bin/python"
AUTH = "password authentication failed"
MANGLED = [
    # (the postgresql_client key, its value, where 4.6 fails, a fragment of its output)
    ("password", "two words-pw", SHELL, 'could not translate host name "words-pw"'),  # 4th arg
    ("password", "it's-a-pw", SHELL, "unexpected EOF while looking for matching"),
    ("password", "a$HOME-pw", SCHEMA, AUTH),  # created as a/var/lib/postgresql-pw
    ("password", "pct%41-pw", SCHEMA, AUTH),  # SQLAlchemy decodes %41: the REST sends pctA-pw
    ("password", "back\\slash-pw", SCHEMA, AUTH),  # bash dropped the backslash
    ("password", "d\u00e9j\u00e0-vu-pw", "UnicodeEncodeError: 'ascii' codec can't encode character "
     "u'\\xe9' in position 1: ordinal not in range(128)", "Installing postgresql_client"),
    ("postgres_password", "pg:colon-pw", SHELL, AUTH),  # .pgpass ends the password at the ':'
]


def test_database_passwords_46_mangles_fail_its_install_and_the_pillar_refuses_them(
        fresh_lab, emulator):
    lab = fresh_lab
    host = lab["mgr1"]
    prepare(lab, emulator, "mgr1")
    for key, value, reason, fragment in MANGLED:
        errors = _pillar_errors(**{key: value})
        assert len(errors) == 1 and errors[0].startswith(
            f"cloudify_ha:clusters:prod:database:{key}: has a character 4.6 cannot carry"), errors
        assert value not in errors[0]
        write_config(lab, "mgr1", manager_config(lab, "mgr1", ADMIN_PASSWORD, DB_PASSWORD,
                                                 postgresql_client={key: value}))
        out = failed(cfy_manager(host, "install"))
        assert reason in out and fragment in out, (value, out)
        assert not host.exists("/etc/cloudify/.install"), value


def test_the_passwords_the_pillar_keeps_go_through_46_and_the_real_cfy(fresh_lab, emulator):
    """The widest database passwords the pillar keeps (every character it allows) create and
    reach the databases; an admin password of any printable ASCII goes config.yaml -> the
    installer's `cfy profiles set -p` (argv) -> the profile -> Basic auth. A non-ASCII one
    stops 4.6's installer before any component (its set_globals formats it as a Python 2
    str), and the real cfy 4.6 cannot send it either; the pillar refuses it."""
    lab = fresh_lab
    weird_admin = "-p ' \"a\" $HOME `id` \\ %41 :/?#~!{x,y}*"
    db_password, postgres_password = "Db_sec.ret,+=^@-9", "Pg_sec.ret,+=^@-9"
    assert _pillar_errors(password=db_password, postgres_password=postgres_password) == []
    # a non-ASCII admin password: nothing installed, nothing created
    prepare(lab, emulator, "mgr2", manager={
        "private_ip": lab["mgr2"].ip, "public_ip": lab["mgr2"].public_ip,
        "security": {"admin_username": "admin", "admin_password": "p\u00e4ssw\u00f6rd-1"}})
    out = failed(cfy_manager(lab["mgr2"], "install"))
    assert last_line(out) == ("UnicodeEncodeError: 'ascii' codec can't encode character "
                              "u'\\xe4' in position 1: ordinal not in range(128)"), out
    assert "Installing manager..." not in out and "cloudify_db" not in lab.db.databases()
    # the rest of the passwords: installed, and used (the lab's postgres user takes the widest
    # password for the time being)
    lab.db.set_postgres_password(postgres_password)
    try:
        install_out = ok(install(lab, emulator, "mgr1", manager={
            "private_ip": lab["mgr1"].ip, "public_ip": lab["mgr1"].public_ip,
            "security": {"admin_username": "admin", "admin_password": weird_admin}},
            postgresql_client={"password": db_password, "postgres_password": postgres_password}))
    finally:
        lab.db.set_postgres_password(lab.passwords["postgres"])
    assert "Installation finished successfully!" in install_out
    host = lab["mgr1"]
    emulator.ensure_license("mgr1")  # `cfy status` reads /maintenance, which needs one
    assert "Manager Rest-Service" in ok(cfy(host, "status"))  # the profile's Basic auth
    assert rest(host.ip, "GET", "/status", auth=("admin", weird_admin)).status == 200
    assert rest(host.ip, "GET", "/status", auth=("admin", weird_admin[:-1])).status == 401
    assert lab.db.query("SELECT 1", dbname="cloudify_db", user="cloudify",
                        password=db_password, client_cert=False).stdout.strip() == "1"
    # the real cfy 4.6 cannot even store a non-ASCII password in a profile
    out = failed(cfy(host, "profiles", "set", "-u", "admin", "-p", "p\u00e4ssw\u00f6rd-1",
                     "--skip-credentials-validation"))
    assert "'ascii' codec can't encode character u'\\xe4' in position 1" in out, out
    assert _pillar_errors("admin", password=weird_admin) == []
    errors = _pillar_errors("admin", password="p\u00e4ssw\u00f6rd-1")
    assert len(errors) == 1 and "admin:password: has a non-ASCII" in errors[0], errors
