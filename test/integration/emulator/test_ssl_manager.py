"""A manager installed with `manager.security.ssl_enabled` (cloudify-4.6.md sections 3 and 5): port
80 answers every API call with a bare 400, 443 serves the API, and the install-time join, which
4.6 hard-codes to http on port 80, cannot join it. One SSL manager (mgr1) for the module."""

import pytest

from cfylab import ADMIN_PASSWORD, cfy_manager, failed, install, last_line, prepare, rest

HOST = "mgr1"
ADMIN = ("admin", ADMIN_PASSWORD)


EXTERNAL_CERT = "/etc/cloudify/ssl/cloudify_external_cert.pem"


@pytest.fixture(scope="module")
def ssl_manager(lab, emulator):
    """No certificate input: 4.6's nginx step generates the REST certificate (self-signed, CN
    the public IP, SANs public, private, 127.0.0.1 and localhost), and the installer's `cfy
    profiles set --ssl on -c <it>` checks the credentials at https://localhost with it."""
    lab.reset()
    host = lab[HOST]
    proc = install(lab, emulator, HOST,
                   manager={"private_ip": host.ip, "public_ip": host.public_ip,
                            "security": {"ssl_enabled": True, "admin_username": "admin",
                                         "admin_password": ADMIN_PASSWORD}})
    assert proc.returncode == 0, proc
    return host


@pytest.fixture(scope="module")
def rest_ca(ssl_manager, tmp_path_factory):
    """The generated certificate, as a client trusts it: copied off the manager."""
    path = tmp_path_factory.mktemp("ssl") / "cloudify_external_cert.pem"
    path.write_text(ssl_manager.read(EXTERNAL_CERT))
    return path


def https(lab, method, path, cafile, auth=ADMIN):
    return rest(lab[HOST].ip, method, path, auth=auth, port=443, https=True, cafile=str(cafile))


@pytest.mark.parametrize("path,auth", [("/status", ADMIN), ("/cluster", ADMIN),
                                       ("/cluster/nodes", ADMIN), ("/status", None)],
                         ids=["status", "cluster", "nodes", "no-auth"])
def test_port_80_answers_every_api_call_with_a_bare_400(ssl_manager, path, auth):
    answer = rest(ssl_manager.ip, "GET", path, auth=auth)
    assert (answer.status, answer.raw, answer.content_type) == (400, b"", "")


def test_port_443_serves_the_api(lab, ssl_manager, rest_ca):
    assert https(lab, "GET", "/status", rest_ca).status == 200
    assert https(lab, "GET", "/cluster", rest_ca).body == {"initialized": False}
    assert https(lab, "GET", "/status", rest_ca, auth=("admin", "wrong")).status == 401


def test_the_generated_certificate_is_4_6s(ssl_manager, rest_ca):
    text = ssl_manager.run(["openssl", "x509", "-noout", "-subject", "-issuer", "-ext",
                            "subjectAltName", "-in", EXTERNAL_CERT]).stdout
    assert f"subject=CN = {ssl_manager.public_ip}" in text
    assert f"issuer=CN = {ssl_manager.public_ip}" in text  # self-signed: no external CA given
    assert (f"IP Address:{ssl_manager.public_ip}, IP Address:{ssl_manager.ip}, "
            "IP Address:127.0.0.1, DNS:localhost") in text
    # the installer's profile trusts it: `-c` is always the external certificate (cli.py)
    profile = ssl_manager.read("/root/.cloudify/profiles/localhost/context")
    assert EXTERNAL_CERT in profile and "https" in profile


def test_install_reports_an_https_address(ssl_manager):
    log = ssl_manager.read("/var/log/cloudify/manager/cfy_manager.log")
    assert f"Manager is up at https://{ssl_manager.public_ip}" in log


def test_joining_an_ssl_leader_fails_on_the_hard_coded_http_port_80(lab, emulator, ssl_manager):
    prepare(lab, emulator, "mgr2", join=HOST)
    out = failed(cfy_manager(lab["mgr2"], "install"))
    assert last_line(out) == "NetworkError: REST service returned an unexpected response: 400"
    assert not lab["mgr2"].exists("/etc/cloudify/.install")
