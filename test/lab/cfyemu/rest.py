"""A minimal REST client with the CLI's conventions: Basic auth, the Tenant header, JSON."""

import json
import ssl
import urllib.error
import urllib.request

from .common import DEFAULT_TENANT, basic_auth_header


class NetworkFailure(Exception):
    """Nothing answered (refused, timed out, unreachable)."""


def call(method, url, username=None, password=None, tenant=DEFAULT_TENANT, body=None,
         timeout=5.0, cafile=None):
    """Returns (status, payload): payload is the decoded JSON body, or None for an empty body."""
    data = None
    headers = {"Tenant": tenant or DEFAULT_TENANT}
    if username is not None:
        headers["Authorization"] = basic_auth_header(username, password or "")
    if body is not None:
        if isinstance(body, bytes):
            data = body
            headers["Content-Type"] = "application/octet-stream"
        else:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    context = None
    if url.startswith("https://"):
        context = ssl.create_default_context(cafile=cafile)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = {"message": raw.decode(errors="replace")}
        return err.code, payload
    except (urllib.error.URLError, OSError) as err:
        raise NetworkFailure(str(getattr(err, "reason", err))) from None
