"""The database's certificate as each psql checks its name (cloudify_ha.database_certificate and
the data guard): a real TLS server on loopback that answers PostgreSQL's SSLRequest, with
certificates issued by pillar.example's throwaway CA; only `psql --version` and psql's own
answers are canned (cmd.run_all)."""

import datetime
import ipaddress
import socket
import ssl
import struct
import threading
from unittest.mock import MagicMock

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from salt.exceptions import CommandExecutionError

from formula_code import example_pillar, execution_module, pillar_util, rest_util

MODULE = execution_module()
UTILS = {"cloudify_ha_pillar.plan": pillar_util().plan, "cloudify_ha_rest.request":
         rest_util().request}
MINION = "cfy-mgr1.example.com"
EXAMPLE_DB = example_pillar()["clusters"]["prod"]["database"]
CA_KEY = serialization.load_pem_private_key(EXAMPLE_DB["ca_key"].encode(), password=None)
CA_NAME = x509.load_pem_x509_certificate(EXAMPLE_DB["ca_cert"].encode()).subject
SERVER_KEY = rsa.generate_private_key(65537, 2048)
SSL_REQUEST = struct.pack("!II", 8, 80877103)


def server_pem(cn, dns=(), ips=(), days=30, issuer_key=CA_KEY, issuer_name=CA_NAME):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(issuer_name).public_key(SERVER_KEY.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=days, hours=1)))
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i))
                                             for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(
        serialization.Encoding.PEM).decode()


class Postgres:
    """Answers PostgreSQL's SSLRequest on 127.0.0.1 (S, then a TLS handshake with `cert`; or
    `answer` instead of S) for each connection until stopped; records each request."""

    def __init__(self, tmp_path, cert, answer=b"S"):
        (tmp_path / "server.crt").write_text(cert)
        (tmp_path / "server.key").write_bytes(SERVER_KEY.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
        self.answer, self.requests = answer, []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.requests.append(conn.recv(8))
                conn.sendall(self.answer)
                if self.answer == b"S":
                    try:
                        with self.context.wrap_socket(conn, server_side=True) as tls:
                            tls.recv(1)  # until the client closes
                    except (OSError, ssl.SSLError):
                        pass

    def stop(self):
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept (a close alone does not)
        self.sock.close()
        self.thread.join(5)
        assert not self.thread.is_alive()


@pytest.fixture
def postgres(tmp_path):
    servers = []

    def start(cert, answer=b"S"):
        servers.append(Postgres(tmp_path, cert, answer))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def pillar():
    return example_pillar()


@pytest.fixture
def run_all():
    return MagicMock()


@pytest.fixture
def configure_loader_modules(pillar, run_all):
    return {MODULE: {"__salt__": {"cmd.run_all": run_all},
                     "__opts__": {"id": MINION, "test": False}, "__utils__": UTILS,
                     "__pillar__": {"cloudify_ha": pillar}}}


@pytest.fixture(autouse=True)
def host(tmp_path, monkeypatch):
    monkeypatch.setattr(MODULE, "CERT_DIR", str(tmp_path / "etc/cloudify_ha"))
    monkeypatch.setattr("salt.utils.path.which", lambda name: f"/usr/bin/{name}")


def at(pillar, server, host="127.0.0.1"):
    """The pillar's database at the loopback server (by address, or by a name /etc/hosts has)."""
    pillar["clusters"]["prod"]["database"].update(host=host, port=server.port)


def psql(version, stderr=""):
    """cmd.run_all as a psql of `version` answers: its version, and `stderr` for a query."""
    def answer(argv, **_kwargs):
        if argv[1:] == ["--version"]:
            return {"retcode": 0, "stdout": f"psql (PostgreSQL) {version}\n", "stderr": ""}
        return {"retcode": 2 if stderr else 0, "stdout": "", "stderr": stderr}
    return answer


def test_the_certificate_is_read_after_the_sslrequest_and_verified_against_the_pillars_ca(
        pillar, postgres):
    server = postgres(server_pem("cloudify_ha database", dns=["db.example.com"],
                                 ips=["127.0.0.1"], days=30))
    at(pillar, server)
    cert = MODULE.database_certificate()
    assert server.requests == [SSL_REQUEST]
    assert cert.pop("not_before") < cert.pop("not_after")
    assert cert == {
        "host": f"127.0.0.1:{server.port}", "subject_cn": "cloudify_ha database",
        "dns_names": ["db.example.com"], "ip_addresses": ["127.0.0.1"],
        "issuer_cn": "cloudify_ha example database CA (public key: never use it)",
        "days_left": 30,
        "libpq_accepts": {"before_9_5": False, "9_5_to_14": False, "15_on": True}}


@pytest.mark.parametrize("host, cn, dns, ips, accepts", [
    # the address as the CN: every libpq (9.5 to 14 read the CN where there is no DNS entry)
    ("127.0.0.1", "127.0.0.1", [], ["127.0.0.1"], (True, True, True)),
    # the address only in an IP entry: libpq 15 and later only
    ("127.0.0.1", "db", [], ["127.0.0.1"], (False, False, True)),
    # the address as text in a DNS entry: 9.5 and later (15 still compares DNS entries as text)
    ("127.0.0.1", "db", ["127.0.0.1"], [], (False, True, True)),
    # a DNS entry hides the CN from 9.5 to 14; 15 falls back to the CN when no IP entry exists
    ("127.0.0.1", "127.0.0.1", ["db.example.com"], [], (True, False, True)),
    # a name: a wildcard stands for one label
    ("localhost", "*.example.com", ["localhost"], [], (False, True, True)),
    ("localhost", "LOCALHOST", [], [], (True, True, True)),
])
def test_each_libpq_generation_checks_the_names_as_its_source_does(pillar, postgres, host, cn,
                                                                    dns, ips, accepts):
    server = postgres(server_pem(cn, dns=dns, ips=ips))
    at(pillar, server, host)
    got = MODULE.database_certificate()["libpq_accepts"]
    assert (got["before_9_5"], got["9_5_to_14"], got["15_on"]) == accepts


@pytest.mark.parametrize("pattern, host, matches", [
    ("*.example.com", "db.example.com", True), ("*.example.com", "a.db.example.com", False),
    ("*.example.com", "example.com", False), ("*.example.com", ".example.com", False),
    ("DB.Example.com", "db.example.COM", True), ("*", "db", False), ("db*", "db1", False),
])
def test_a_name_matches_as_libpq_compares_it(pattern, host, matches):
    assert MODULE._host_name_matches(pattern, host) is matches


def test_a_psql_before_9_5_is_refused_before_it_runs_when_the_cn_does_not_name_the_host(
        pillar, postgres, run_all):
    server = postgres(server_pem("cloudify_ha database", ips=["127.0.0.1"]))
    at(pillar, server)
    run_all.side_effect = psql("9.2.24")
    with pytest.raises(CommandExecutionError) as raised:
        MODULE.database_holds_data()
    assert str(raised.value) == (
        f"could not query the external database at 127.0.0.1:{server.port} as postgres: its "
        "certificate does not name database:host 127.0.0.1 the way psql 9.2 on this host "
        "checks it. The certificate must name database:host: as its CN for libpq before 9.5 "
        "(EL7's psql 9.2 reads nothing else), in its subjectAltName for 9.5 and later (9.5 to "
        "14 read only DNS entries, and the CN where there is none; IP entries count from 15 "
        "on). It names CN 'cloudify_ha database' and subjectAltName 'IP:127.0.0.1'. Re-issue "
        "it with CN=127.0.0.1 and subjectAltName IP:127.0.0.1 (every psql takes that), or set "
        "database:host to a name it carries")
    # only the version was asked: no query ran
    assert [c.args[0] for c in run_all.call_args_list] == [["/usr/bin/psql", "--version"]]


@pytest.mark.parametrize("version", ["9.2.24", "9.4.26"])
def test_a_psql_before_9_5_runs_its_queries_when_the_cn_names_the_host(pillar, postgres,
                                                                       run_all, version):
    server = postgres(server_pem("127.0.0.1"))
    at(pillar, server)
    run_all.side_effect = psql(version)
    assert MODULE.database_holds_data()["holds_data"] is False
    assert run_all.call_count == 2  # the version, then the databases (none present)


def test_a_newer_psql_is_not_second_guessed_and_its_own_refusal_says_what_to_fix(
        pillar, postgres, run_all):
    server = postgres(server_pem("cloudify_ha database", ips=["127.0.0.1"]))
    at(pillar, server)
    said = ('psql: error: connection to server at "127.0.0.1", port 5432 failed: server '
            'certificate for "cloudify_ha database" does not match host name "127.0.0.1"')
    run_all.side_effect = psql("12.22", stderr=said)
    with pytest.raises(CommandExecutionError) as raised:
        MODULE.database_holds_data()
    message = str(raised.value)
    assert "the way psql 12.22 on this host checks it" in message
    assert "It names CN 'cloudify_ha database' and subjectAltName 'IP:127.0.0.1'." in message
    assert message.endswith(f"(psql said: {said})")
    assert run_all.call_count == 3  # the version (no certificate check), a query, the version


def test_a_certificate_the_pillars_ca_did_not_sign_is_refused_so(pillar, postgres):
    other = rsa.generate_private_key(65537, 2048)
    server = postgres(server_pem("127.0.0.1", issuer_key=other, issuer_name=x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "another CA")])))
    at(pillar, server)
    with pytest.raises(CommandExecutionError) as raised:
        MODULE.database_certificate()
    assert str(raised.value).startswith(
        f"the certificate of the external database at 127.0.0.1:{server.port} is not signed "
        "by database:ca_cert (")
    assert str(raised.value).endswith("): give the CA that issued it")


def test_a_server_without_ssl_is_said_so(pillar, postgres):
    server = postgres(server_pem("127.0.0.1"), answer=b"N")
    at(pillar, server)
    with pytest.raises(CommandExecutionError) as raised:
        MODULE.database_certificate()
    assert str(raised.value) == (
        f"the external database at 127.0.0.1:{server.port} does not take SSL (it answered "
        "b'N' to PostgreSQL's SSLRequest): 4.6 needs SSL to its database")


def test_an_unreadable_certificate_leaves_the_check_to_an_old_psql(pillar, postgres, run_all):
    server = postgres(server_pem("127.0.0.1"), answer=b"N")
    at(pillar, server)
    run_all.side_effect = psql("9.2.24", stderr="psql: SSL is not enabled on the server")
    with pytest.raises(CommandExecutionError) as raised:
        MODULE.database_holds_data()
    assert str(raised.value) == (f"could not query the external database at 127.0.0.1:"
                                 f"{server.port} as postgres: psql: SSL is not enabled on the "
                                 "server")
