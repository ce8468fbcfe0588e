"""_utils/cloudify_ha_rest.py against a real HTTP server on 127.0.0.1 (the emulator's tests
cover Cloudify's answers): what it does with answers no manager should give."""

import http.server
import threading

import pytest
import requests

from formula_code import rest_util

REST = rest_util()


class Handler(http.server.BaseHTTPRequestHandler):
    answers = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        status, ctype, body = self.answers[self.path]
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield REST.Endpoint("127.0.0.1", "admin", "pw", port=httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def test_a_2xx_that_is_not_json_is_a_rest_error_not_a_traceback(server):
    Handler.answers["/api/v3.1/status"] = (200, "text/html", b"<html>maintenance</html>")
    with pytest.raises(REST.RestError) as raised:
        REST.request(server, "GET", "/status")
    assert (raised.value.status, raised.value.error_code) == (200, "bad_response")
    assert "is not JSON (text/html)" in str(raised.value)


def test_an_error_with_a_non_json_body_keeps_its_status(server):
    Handler.answers["/api/v3.1/cluster"] = (502, "text/html", b"<html>Bad Gateway</html>")
    with pytest.raises(REST.RestError) as raised:
        REST.request(server, "GET", "/cluster")
    assert raised.value.status == 502


def test_a_redirect_is_not_followed_and_is_an_error(server):
    Handler.answers["/api/v3.1/tokens"] = (302, "text/plain", b"")
    with pytest.raises(REST.RestError) as raised:
        REST.request(server, "GET", "/tokens")
    assert raised.value.status == 302


def test_a_bad_url_is_unreachable_not_a_traceback():
    with pytest.raises(REST.Unreachable):
        REST.request(REST.Endpoint("bad host name", "admin", "pw"), "GET", "/status",
                     retries=0)


@pytest.mark.parametrize("name", ["../../users/bob", "..", ".", "a/b", "a b", "", "mgr\u0661",
                                  "mgr?x=1", "mgr#x", None, 3])
def test_a_path_segment_is_one_plain_name(name):
    with pytest.raises(ValueError):
        REST.segment(name)


def test_a_node_name_is_its_own_segment():
    assert REST.segment("cfy-mgr3.example_1~") == "cfy-mgr3.example_1~"


class Proxy(http.server.BaseHTTPRequestHandler):
    """A proxy that records what it is sent (the Authorization header among it)."""

    seen = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(502)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def proxy(monkeypatch):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    Proxy.seen = []
    yield Proxy.seen
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def test_the_environments_proxy_never_gets_the_admins_credentials(server, proxy):
    Handler.answers["/api/v3.1/status"] = (200, "application/json", b'{"status": "running"}')
    # what any client that trusts the environment does: the proxy gets the header
    requests.get(server.url("/status"), headers={"Authorization": "Basic x"}, timeout=5)
    assert proxy == [(server.url("/status"), "Basic x")]
    proxy.clear()
    assert REST.request(server, "GET", "/status") == {"status": "running"}
    assert proxy == []
