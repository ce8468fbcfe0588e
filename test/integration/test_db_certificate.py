"""The database's certificate as the managers' psql checks its name (issue 38, item 4), on the
lab's real PostgreSQL 15 and psql 15: a certificate that has the database's address only in an
IP entry of its subjectAltName (EL7's psql 9.2 reads only the CN; test/unit/test_db_certificate.py
holds that branch) is taken by psql 15 and read by cloudify_ha.database_certificate; one that
names another host makes the data guard say what to fix. The lab's own certificate is put back
after each."""

import contextlib

import pytest

MANAGER = "mgr1"


@pytest.fixture(scope="module")
def call(lab, salt_cli):
    """call(function): the function's answer on the manager, its modules synced first."""
    ret = salt_cli.run("saltutil.sync_all", minion_tgt=MANAGER)
    assert ret.returncode == 0, ret

    def run(function):
        return salt_cli.run(function, minion_tgt=MANAGER)
    return run


@contextlib.contextmanager
def server_certificate(db, **names):
    db.server_certificate(**names)
    try:
        yield
    finally:
        db.server_certificate()


def test_a_certificate_naming_the_address_only_in_its_san_passes_psql_15_and_is_read(lab, call):
    db = lab.db
    with server_certificate(db, cn="cloudify_ha lab database", ips=[db.ip]):
        # psql 15 with verify-full, from the manager's own namespace, takes it
        assert db.query("select 1", via=lab[MANAGER]).stdout.strip() == "1"
        guard = call("cloudify_ha.database_holds_data")
        assert guard.returncode == 0, guard
        assert guard.data["host"] == f"{db.ip}:5432"
        cert = call("cloudify_ha.database_certificate")
        assert cert.returncode == 0, cert
        assert {k: cert.data[k] for k in ("host", "subject_cn", "dns_names", "ip_addresses",
                                          "issuer_cn", "libpq_accepts")} == {
            "host": f"{db.ip}:5432", "subject_cn": "cloudify_ha lab database",
            "dns_names": [], "ip_addresses": [db.ip], "issuer_cn": "cloudify_ha lab CA",
            "libpq_accepts": {"before_9_5": False, "9_5_to_14": False, "15_on": True}}
        # the lab CA issues for 30 days (test/lab/pki.py)
        assert cert.data["days_left"] in (29, 30)


def test_a_certificate_naming_another_host_makes_the_guard_say_what_to_fix(lab, call):
    db = lab.db
    with server_certificate(db, cn="db.elsewhere.example", ips=[], dns=["db.elsewhere.example"]):
        guard = call("cloudify_ha.database_holds_data")
    assert guard.returncode != 0, guard
    message = guard.data
    assert message.startswith(
        f"ERROR: could not query the external database at {db.ip}:5432 as postgres: its "
        f"certificate does not name database:host {db.ip} the way psql 15."), message
    assert "The certificate must name database:host: as its CN for libpq before 9.5" in message
    assert ("It names CN 'db.elsewhere.example' and subjectAltName "
            "'DNS:db.elsewhere.example'.") in message
    assert f"Re-issue it with CN={db.ip} and subjectAltName IP:{db.ip}" in message
    # psql's own words close it (15 counts the CN it checked too: no IP entry)
    assert message.endswith(
        f'server certificate for "db.elsewhere.example" (and 1 other name) does not match '
        f'host name "{db.ip}")'), message
    assert "(psql said: psql: error: connection to server at" in message
    # and the lab's own certificate is back: the guard answers again
    assert call("cloudify_ha.database_holds_data").returncode == 0
