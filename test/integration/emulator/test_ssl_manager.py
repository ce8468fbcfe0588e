"""A manager installed with `manager.security.ssl_enabled` (cloudify-4.6.md sections 3 and 5): port
80 answers every API call with a bare 400, 443 serves the API, and the install-time join, which
4.6 hard-codes to http on port 80, cannot join it. One SSL manager (mgr1) for the module."""

import pytest

from cfylab import ADMIN_PASSWORD, cfy_manager, failed, install, last_line, prepare, rest

HOST = "mgr1"
ADMIN = ("admin", ADMIN_PASSWORD)


@pytest.fixture(scope="module")
def ssl_manager(lab, emulator):
    lab.reset()
    host = lab[HOST]
    # with localhost and 127.0.0.1, as 4.6's own certificates have them (_format_ips): the
    # installer's `cfy profiles set --ssl on` checks the credentials at https://localhost
    cert, key = lab.ca.issue(f"{HOST}-rest", host.ip, ips=[host.ip, "127.0.0.1"], dns=["localhost"])
    proc = install(lab, emulator, HOST,
                   manager={"private_ip": host.ip, "public_ip": host.ip,
                            "security": {"ssl_enabled": True, "admin_username": "admin",
                                         "admin_password": ADMIN_PASSWORD}},
                   ssl_inputs={"external_cert_path": str(cert), "external_key_path": str(key)})
    assert proc.returncode == 0, proc
    return host


def https(lab, method, path, auth=ADMIN):
    return rest(lab[HOST].ip, method, path, auth=auth, port=443, https=True,
                cafile=str(lab.ca.cert))


@pytest.mark.parametrize("path,auth", [("/status", ADMIN), ("/cluster", ADMIN),
                                       ("/cluster/nodes", ADMIN), ("/status", None)],
                         ids=["status", "cluster", "nodes", "no-auth"])
def test_port_80_answers_every_api_call_with_a_bare_400(ssl_manager, path, auth):
    answer = rest(ssl_manager.ip, "GET", path, auth=auth)
    assert (answer.status, answer.raw, answer.content_type) == (400, b"", "")


def test_port_443_serves_the_api(lab, ssl_manager):
    assert https(lab, "GET", "/status").status == 200
    assert https(lab, "GET", "/cluster").body == {"initialized": False}
    assert https(lab, "GET", "/status", auth=("admin", "wrong")).status == 401


def test_install_reports_an_https_address(ssl_manager):
    log = ssl_manager.read("/var/log/cloudify/manager/cfy_manager.log")
    assert f"Manager is up at https://{ssl_manager.ip}" in log


def test_joining_an_ssl_leader_fails_on_the_hard_coded_http_port_80(lab, emulator, ssl_manager):
    prepare(lab, emulator, "mgr2", join=HOST)
    out = failed(cfy_manager(lab["mgr2"], "install"))
    assert last_line(out) == "NetworkError: REST service returned an unexpected response: 400"
    assert not lab["mgr2"].exists("/etc/cloudify/.install")
