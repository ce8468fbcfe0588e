"""
HAProxy in front of a Cloudify cluster: read its backend state from the admin socket, and run
it where no service manager does (``haproxy -D`` with a pid file, soft reloads with ``-sf``).

Salt 3008 has no HAProxy module; this one speaks HAProxy's admin socket protocol directly.
"""

import csv
import io
import logging
import os
import re
import socket
import stat

import salt.utils.files
import salt.utils.path
from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

__virtualname__ = "cloudify_ha_lb"

DEFAULT_SOCKET = "/run/haproxy/admin.sock"


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
        raise CommandExecutionError(f"haproxy -c rejects {config}: "
                                    f"{(result['stdout'] + result['stderr']).strip()[-800:]}")
    return True


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
