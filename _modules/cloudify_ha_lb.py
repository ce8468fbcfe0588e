"""
HAProxy in front of a Cloudify cluster: read its backend state from the admin socket, and run
it where no service manager does (``haproxy -D`` with a pid file, soft reloads with ``-sf``).

Salt 3008 has no HAProxy module; this one speaks HAProxy's admin socket protocol directly.
"""

import base64
import binascii
import csv
import io
import json
import logging
import os
import re
import socket
import stat
import tempfile
import time

import salt.utils.files
import salt.utils.path
from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

__virtualname__ = "cloudify_ha_lb"

DEFAULT_SOCKET = "/run/haproxy/admin.sock"
# a backend or server name as the formula writes them (cloudify_<cluster>, a node name)
SERVER_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", re.ASCII)


def __virtual__():
    return __virtualname__


def _ask(sock_path, command, timeout=5):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(sock_path)
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError as exc:
        raise CommandExecutionError(f"HAProxy's admin socket {sock_path} does not answer: {exc}; "
                                    "is HAProxy running with this 'stats socket'?") from None
    return b"".join(chunks).decode(errors="replace")


def backends(admin_socket=DEFAULT_SOCKET, backend=None):
    """
    Every server of every backend (or of one) as HAProxy sees it: backend, server, status
    (UP, DOWN, MAINT, ...), the last health check's status and code, and sessions served.

    CLI Example:

    .. code-block:: bash

        salt cfy-lb1 cloudify_ha_lb.backends
        salt cfy-lb1 cloudify_ha_lb.backends backend=cloudify_prod
    """
    text = _ask(admin_socket, "show stat")
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    servers = []
    for row in rows:
        if row.get("svname") in ("FRONTEND", "BACKEND", None):
            continue
        if backend and row.get("pxname") != backend:
            continue
        servers.append({"backend": row["pxname"], "server": row["svname"],
                        "status": row.get("status", ""), "check": row.get("check_status", ""),
                        "check_code": row.get("check_code", ""),
                        "sessions": int(row.get("stot") or 0)})
    return servers


def receiving(admin_socket=DEFAULT_SOCKET, backend=None):
    """
    The servers that receive traffic (status UP), per backend: with Cloudify's health check,
    the cluster's active node.

    CLI Example:

    .. code-block:: bash

        salt cfy-lb1 cloudify_ha_lb.receiving
    """
    out = {}
    for server in backends(admin_socket, backend):
        out.setdefault(server["backend"], [])
        if server["status"].startswith("UP"):
            out[server["backend"]].append(server["server"])
    return out


def _binary():
    binary = salt.utils.path.which("haproxy")
    if binary is None:
        raise CommandExecutionError("haproxy is not installed on this minion")
    return binary


PIDFILE_TEXT = re.compile(r"\s*([0-9]{1,10}\s+)*([0-9]{1,10})?\s*", re.ASCII)


def pidfile_problem(pidfile):
    """
    Why HAProxy must not write its pids to ``pidfile`` (it truncates the file it is given), or
    None: a path that does not exist yet, or a regular file (no other hard link) holding only
    process ids. A symbolic link, another kind of file or a file with other content is refused
    (the pillar's schema already keeps the path to /run/haproxy*.pid and the like).

    CLI Example:

    .. code-block:: bash

        salt cfy-lb1 cloudify_ha_lb.pidfile_problem /run/haproxy.pid
    """
    try:
        info = os.lstat(pidfile)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{pidfile} cannot be read ({exc.strerror})"
    what = None
    if stat.S_ISLNK(info.st_mode):
        what = "is a symbolic link"
    elif not stat.S_ISREG(info.st_mode):
        what = "is not a regular file"
    elif info.st_nlink != 1:
        what = f"has {info.st_nlink} hard links"
    elif info.st_size > 4096:
        what = f"is not a pid file ({info.st_size} bytes)"
    if what is None:
        with salt.utils.files.fopen(pidfile, "rb") as fh:
            content = fh.read(4097)
        text = content.decode("ascii", errors="replace")
        if not PIDFILE_TEXT.fullmatch(text):
            what = "is not a pid file (it holds more than process ids)"
    if what is None:
        return None
    return (f"cloudify_ha:lookup:haproxy_pidfile: {pidfile} {what}; HAProxy would truncate it: "
            "give HAProxy a pid file of its own (e.g. /run/haproxy.pid)")


def _process_name(pid):
    """The name of live process `pid`, or None when there is none (a zombie is none)."""
    try:
        with salt.utils.files.fopen(f"/proc/{pid}/status", "r") as fh:
            status = fh.read()
    except OSError:
        return None
    if "\nState:\tZ" in status:
        return None
    return status.split("\n", 1)[0].partition("\t")[2].strip()


def make_directory(path, mode=0o750):
    """
    Create the directory ``path`` (and its missing parents) with ``mode``, owned by the
    minion's user; True when created, False when it exists already (it is left as it is: its
    mode and owner are those its package gave it). Refused where something that is not a
    directory is in the way.

    CLI Example:

    .. code-block:: bash

        salt cfy-lb1 cloudify_ha_lb.make_directory /run/haproxy
    """
    if os.path.isdir(path) and not os.path.islink(path):
        return False
    if os.path.lexists(path):
        raise CommandExecutionError(f"{path} exists and is not a directory: remove it or choose "
                                    "another place for HAProxy's admin socket")
    os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
    os.mkdir(path, mode)
    os.chmod(path, mode)  # mkdir's mode goes through the umask
    return True


# `haproxy -v`: "HA-Proxy version 1.5.18 2016/05/10" (EL7), "HAProxy version 2.6.12-1+deb12u4"
VERSION_RE = re.compile(r"HA-?Proxy version ([0-9]{1,3})\.([0-9]{1,3})(?:\.([0-9]{1,4}))?")
# what the formula's haproxy.cfg uses beyond what HAProxy 1.5 (EL7's) has, from the version
# that brought it (HAProxy's configuration.txt of each branch)
FEATURES = {
    # `set server <b>/<s> state maint|ready`, `server-state-file`, `load-server-state-from-file`
    "server_state": (1, 6),
    # `ssl-min-ver` on bind/server lines and in ssl-default-*-options
    "ssl_min_ver": (1, 8),
    # `http-check send meth ... uri ... ver ... hdr ...`
    "http_check_send": (2, 2),
}


def version():
    """
    The installed HAProxy's version as ``[major, minor, patch]``, from ``haproxy -v``; None
    when HAProxy is not installed.

    CLI Example:

    .. code-block:: bash

        salt cfy-lb1 cloudify_ha_lb.version
    """
    binary = salt.utils.path.which("haproxy")
    if binary is None:
        return None
    result = __salt__["cmd.run_all"]([binary, "-v"], python_shell=False,
                                     output_loglevel="quiet", ignore_retcode=True)
    match = VERSION_RE.search(result.get("stdout") or "")
    if result["retcode"] != 0 or not match:
        raise CommandExecutionError(f"haproxy -v did not say its version: "
                                    f"{(result['stdout'] + result['stderr']).strip()[-300:]}")
    return [int(part or 0) for part in match.groups()]


def features():
    """
    What the installed HAProxy can do of what the formula's haproxy.cfg uses beyond HAProxy
    1.5 (``FEATURES``: each True or False), and its ``version``. Without HAProxy (a ``test=True``
    run before its package is installed) every feature is False: the configuration every
    supported HAProxy parses.

    CLI Example:

    .. code-block:: bash

        salt cfy-lb1 cloudify_ha_lb.features
    """
    found = version()
    out = {name: found is not None and tuple(found[:2]) >= since
           for name, since in FEATURES.items()}
    out["version"] = ".".join(map(str, found)) if found else None
    return out


def pids(pidfile):
    """
    The live HAProxy processes listed in a pid file (zombies excluded).

    CLI Example:

    .. code-block:: bash

        salt cfy-lb1 cloudify_ha_lb.pids /run/haproxy.pid
    """
    try:
        with salt.utils.files.fopen(pidfile, "r") as fh:
            listed = [int(p) for p in fh.read().split() if p.isdigit()]
    except OSError:
        return []
    return [pid for pid in listed if _process_name(pid) == "haproxy"]


def check_config(config):
    """
    ``haproxy -c -f <config>``: True, or an error with HAProxy's message.

    CLI Example:

    .. code-block:: bash

        salt cfy-lb1 cloudify_ha_lb.check_config /etc/haproxy/haproxy.cfg
    """
    result = __salt__["cmd.run_all"]([_binary(), "-c", "-f", config], python_shell=False,
                                     output_loglevel="quiet", ignore_retcode=True)
    if result["retcode"] != 0:
        said = (result["stdout"] + result["stderr"]).strip()
        for secret in _config_secrets(config):
            said = said.replace(secret, "*****")
        raise CommandExecutionError(f"haproxy -c rejects {config}: {said[-800:]}")
    return True


# a health check's credentials as the formula's haproxy.cfg holds them: `hdr Authorization
# "Basic <token>"` (http-check send) or `Authorization:\ Basic\ <token>` (1.5's option httpchk)
BASIC_TOKEN_RE = re.compile(r"Basic(?:\\ |[ \t])+([A-Za-z0-9+/]{4,}={0,2})")


def _config_secrets(config):
    """What of a configuration's text is a secret: each Basic token of its health checks, what
    it decodes to and the password in it (HAProxy quotes a line's words in some of its errors,
    e.g. a server line's unknown keyword), longest first."""
    try:
        with salt.utils.files.fopen(config, "rb") as fh:
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    found = set()
    for token in BASIC_TOKEN_RE.findall(text):
        found.add(token)
        try:
            pair = base64.b64decode(token, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            continue
        found.add(pair)
        if ":" in pair and pair.split(":", 1)[1]:
            found.add(pair.split(":", 1)[1])
    return sorted(found, key=len, reverse=True)


def start(config, pidfile, reload=False):
    """
    Start HAProxy as a daemon with a pid file; with ``reload=True`` and HAProxy running, a soft
    reload: the new process takes the listeners and the old ones finish their established
    connections (``-sf``). Without it, refused while HAProxy runs. The configuration is checked
    first. Returns the new pids.

    CLI Example:

    .. code-block:: bash

        salt cfy-lb1 cloudify_ha_lb.start /etc/haproxy/haproxy.cfg /run/haproxy.pid reload=True
    """
    problem = pidfile_problem(pidfile)
    if problem:
        raise CommandExecutionError(problem)
    check_config(config)
    old = pids(pidfile)
    if old and not reload:
        # a second daemon would take over the pid file and leave the first one untracked
        raise CommandExecutionError(f"HAProxy already runs (pid {', '.join(map(str, old))} in "
                                    f"{pidfile}): reload=True hands over to a new process")
    argv = [_binary(), "-D", "-f", config, "-p", pidfile]
    if reload and old:
        argv += ["-sf"] + [str(p) for p in old]
    os.makedirs(os.path.dirname(pidfile) or "/", exist_ok=True)
    result = __salt__["cmd.run_all"](argv, python_shell=False, output_loglevel="quiet",
                                     ignore_retcode=True)
    if result["retcode"] != 0:
        raise CommandExecutionError(f"haproxy did not start: "
                                    f"{(result['stdout'] + result['stderr']).strip()[-800:]}")
    return pids(pidfile)


# ---- servers taken out of a backend by the formula ---------------------------------------------
# The servers this formula took out of its backends (a manager joining: 4.6 answers /status as
# a standalone manager for minutes before it joins), {backend: [server, ...]}: HAProxy does not
# say who put a server in maintenance, and one an operator took out must stay out
DRAINED = "/var/lib/cloudify_ha/haproxy-drained.json"


def drained():
    """
    The servers the formula took out of each backend (its record, ``DRAINED``): the
    configuration renders them ``disabled`` and the ``backend_servers`` state keeps them out of
    the running HAProxy until the orchestration puts them back.

    CLI Example:

    .. code-block:: bash

        salt cfy-lb1 cloudify_ha_lb.drained
    """
    try:
        with salt.utils.files.fopen(DRAINED, "r") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CommandExecutionError(f"{DRAINED} cannot be read ({exc}): remove it only if no "
                                    "manager is joining (it lists the servers the formula took "
                                    "out of HAProxy)") from None
    if not isinstance(data, dict):
        raise CommandExecutionError(f"{DRAINED} is not the formula's record of drained servers")
    return {str(b): sorted({str(s) for s in servers}) for b, servers in data.items()
            if isinstance(servers, list) and servers}


def record_drained(backend, servers):
    """
    Set the formula's record of the servers it took out of ``backend`` (``DRAINED``), written
    atomically (0644). Returns the whole record.

    CLI Example:

    .. code-block:: bash

        salt cfy-lb1 cloudify_ha_lb.record_drained cloudify_prod '[cfy-mgr2]'
    """
    data = drained()
    if servers:
        data[backend] = sorted(set(servers))
    else:
        data.pop(backend, None)
    os.makedirs(os.path.dirname(DRAINED), mode=0o755, exist_ok=True)
    _replace(DRAINED, json.dumps(data, sort_keys=True))
    return data


def _replace(path, text):
    """Write ``path`` anew (0644) through a temporary file beside it: never half written."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or "/", prefix=".cloudify_ha-")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def serving(admin_socket=DEFAULT_SOCKET):
    """
    True when HAProxy answers on its admin socket, False when nothing listens there (not
    started, or a socket file left by a process that is gone).

    CLI Example:

    .. code-block:: bash

        salt cfy-lb1 cloudify_ha_lb.serving
    """
    try:
        _ask(admin_socket, "show info", timeout=2)
    except CommandExecutionError:
        return False
    return True


def _tell(admin_socket, command):
    """One runtime command HAProxy answers with nothing on success (1.5 and later)."""
    answer = _ask(admin_socket, command)
    if answer.strip():
        raise CommandExecutionError(f"HAProxy refused '{command}': {answer.strip()[:200]}")


def _server_names(backend, server):
    for name in (backend, server):
        if not SERVER_NAME_RE.fullmatch(str(name)):
            raise CommandExecutionError(f"{ascii(name)} is not a backend or server name")


def set_server(backend, server, up, admin_socket=DEFAULT_SOCKET, settle=0):
    """
    Take ``server`` out of ``backend`` in the running HAProxy (``disable server``: maintenance,
    no traffic, no checks; HAProxy 1.5 and later) or put it back. HAProxy marks a server it
    takes out of maintenance UP until its checks fail (a replica would get requests for
    ``fall`` checks), so it is put back with weight 0 (no request), given up to ``settle``
    seconds for its checks to mark it DOWN, then its configured weight (``set weight ...
    100%``). The running HAProxy only: a reload starts from the configuration (and, from HAProxy
    1.6, from the saved server state). Returns the server's status.

    CLI Example:

    .. code-block:: bash

        salt cfy-lb1 cloudify_ha_lb.set_server cloudify_prod cfy-mgr2 up=False
    """
    _server_names(backend, server)
    if not up:
        _tell(admin_socket, f"disable server {backend}/{server}")
        return _status_of(backend, server, admin_socket)
    _tell(admin_socket, f"set weight {backend}/{server} 0")
    _tell(admin_socket, f"enable server {backend}/{server}")
    deadline, pause = time.monotonic() + float(settle), 0.1
    status = _status_of(backend, server, admin_socket)
    while not status.startswith("DOWN") and time.monotonic() < deadline:
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 0.5)
        status = _status_of(backend, server, admin_socket)
    _tell(admin_socket, f"set weight {backend}/{server} 100%")
    return _status_of(backend, server, admin_socket)


def _status_of(backend, server, admin_socket):
    return next((s["status"] for s in backends(admin_socket, backend) if s["server"] == server),
                "")


TIME_UNITS = {"us": 0.000001, "ms": 0.001, "": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(value):
    """
    An HAProxy time (``500ms``, ``2s``; a bare number is milliseconds) in seconds.

    CLI Example:

    .. code-block:: bash

        salt cfy-lb1 cloudify_ha_lb.seconds 500ms
    """
    match = re.fullmatch(r"([0-9]{1,9})(us|ms|s|m|h|d)?", str(value), re.ASCII)
    if not match:
        raise CommandExecutionError(f"{ascii(value)} is not an HAProxy time")
    return int(match.group(1)) * TIME_UNITS[match.group(2) or ""]


def save_server_state(path, admin_socket=DEFAULT_SOCKET):
    """
    Write the running HAProxy's server states (``show servers state``) to ``path``, the
    configuration's ``server-state-file`` (HAProxy 1.6 and later): the process a reload or a
    boot starts loads them, so that a server taken out stays out and one found down is not
    sent traffic before its first check. Written atomically; True when written.

    CLI Example:

    .. code-block:: bash

        salt cfy-lb1 cloudify_ha_lb.save_server_state /var/lib/haproxy/server-state
    """
    text = _ask(admin_socket, "show servers state")
    if not text.lstrip().startswith("1\n"):  # the format's version line
        raise CommandExecutionError(f"HAProxy did not answer its server states: {text[:200]}")
    _replace(path, text)
    return True
