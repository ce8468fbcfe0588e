"""Cloudify 4.6 REST client used by the execution module and the runner.

Basic auth, the Tenant header, TLS verification on (against the pillar's CA when given),
bounded timeouts, and retries only where a retry is safe (a GET that found nobody home). The
environment is not trusted: HTTP_PROXY/HTTPS_PROXY/NO_PROXY (a proxy would get the admin's
Authorization header), REQUESTS_CA_BUNDLE and .netrc change nothing.
"""

import base64
import json
import re
import time
import urllib.parse

import requests

API = "/api/v3.1"
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 15.0


class Unreachable(Exception):
    """Nothing answered at that address (refused, timed out, unroutable)."""


class RestError(Exception):
    """The manager answered with an error: HTTP status, Cloudify error_code and message."""

    def __init__(self, status, error_code, message):
        super().__init__(f"{status} {error_code}: {message}" if error_code else f"{status}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message


class Endpoint:
    """How to reach one manager's REST API. ``tenant`` None: no Tenant header (a user in no
    tenant, as the load balancer's check user; 4.6 then authorizes its system role only)."""

    def __init__(self, host, username, password, tenant="default_tenant", ssl=False,
                 ca_cert_path=None, port=None):
        self.host = host
        self.username = username
        self.password = password
        self.tenant = tenant
        self.ssl = bool(ssl)
        self.ca_cert_path = ca_cert_path
        self.port = port or (443 if self.ssl else 80)

    def url(self, path):
        scheme = "https" if self.ssl else "http"
        return f"{scheme}://{self.host}:{self.port}{API}{path}"

    def with_host(self, host):
        return Endpoint(host, self.username, self.password, self.tenant, self.ssl,
                        self.ca_cert_path, self.port)

    def __repr__(self):  # never the password
        return f"<Endpoint {self.url('')} as {self.username}>"


SEGMENT_RE = re.compile(r"[A-Za-z0-9_.~-]{1,255}", re.ASCII)


def segment(value):
    """`value` as ONE path segment of a URL: a node name, never a path of its own
    (``remove_node("../../users/bob")`` must not become ``DELETE /users/bob``)."""
    if not isinstance(value, str) or not SEGMENT_RE.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"{ascii(value)} is not a name that can be part of a REST path")
    return urllib.parse.quote(value, safe="")


def auth_header(username, password):
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def request(endpoint, method, path, body=None, timeout=None, retries=None, data=None):
    """The decoded JSON answer of a 2xx; RestError for an error answer; Unreachable otherwise.
    ``body`` is sent as JSON; ``data`` (bytes) as it is, the way 4.6's client uploads a file
    (a license: ``PUT /license`` with the file's bytes).

    GETs are retried (twice by default, 0.5 s apart) when nothing answered; other methods never.
    """
    if retries is None:
        retries = 2 if method == "GET" else 0
    headers = {"Authorization": auth_header(endpoint.username, endpoint.password)}
    if endpoint.tenant:
        headers["Tenant"] = endpoint.tenant
    verify = (endpoint.ca_cert_path or True) if endpoint.ssl else True
    attempt = 0
    while True:
        try:
            with requests.Session() as session:
                session.trust_env = False
                resp = session.request(method, endpoint.url(path), headers=headers,
                                       json=body if data is None else None, data=data,
                                       timeout=timeout or (CONNECT_TIMEOUT, READ_TIMEOUT),
                                       verify=verify, allow_redirects=False)
            break
        except requests.exceptions.SSLError as exc:
            raise RestError(0, "tls_error", f"TLS verification of {endpoint.host} failed: "
                            f"{exc.__class__.__name__}; check the pillar's rest:ca_cert") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            if attempt >= retries:
                raise Unreachable(f"{endpoint.url(path)}: {exc.__class__.__name__}") from None
            attempt += 1
            time.sleep(0.5)
        except requests.exceptions.RequestException as exc:
            # a broken answer (bad chunking, too many redirects, a bad URL): an error, never a
            # traceback
            raise Unreachable(f"{endpoint.url(path)}: {exc.__class__.__name__}") from None
    if 200 <= resp.status_code < 300:
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise RestError(resp.status_code, "bad_response",
                            f"the answer to {method} {path} is not JSON "
                            f"({resp.headers.get('Content-Type', 'no content type')})") from None
    try:
        payload = resp.json()
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {"message": json.dumps(payload)}
    raise RestError(resp.status_code, payload.get("error_code", ""),
                    payload.get("message") or resp.reason or "")
