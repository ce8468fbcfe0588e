"""_modules/cloudify_ha_lb.py and the cloudify_ha_lb.running state (with its mod_watch), run
together against a fake host: cmd.run_all plays `haproxy -c` and `haproxy -D` (pid file under
tmp_path, soft reloads with -sf), /proc/<pid>/status is the host's process table, and the
admin socket is a real UNIX socket under tmp_path that answers with canned `show stat` CSV."""

import base64
import http.server
import io
import os
import pathlib
import socket
import subprocess
import threading
import time
import types
import urllib.error
import urllib.request
from contextlib import ExitStack
from unittest.mock import patch

import pytest
import salt.utils.files
import salt.utils.path
from salt.exceptions import CommandExecutionError

from formula_code import load

MODULE = load("_modules/cloudify_ha_lb.py", "cloudify_ha_lb_module_under_test")
STATE = load("_states/cloudify_ha_lb.py", "cloudify_ha_lb_state_under_test")
HAPROXY = "/usr/sbin/haproxy"
CONFIG_V1 = "global\n    daemon\nfrontend cloudify\n    bind 0.0.0.0:80\n"
CONFIG_V2 = CONFIG_V1 + "    timeout client 30s\n"
BAD_CONFIG = CONFIG_V1 + "bakend cloudify_prod\n"
ALERT = ("[ALERT]    (7) : config : parsing [haproxy.cfg:5] : unknown keyword 'bakend' out of "
         "section.\n[ALERT]    (7) : config : Fatal errors found in configuration.\n")
BIND_ALERT = ("[ALERT]    (2001) : Starting frontend cloudify: cannot bind socket (Address "
              "already in use) [0.0.0.0:80]\n")
REAL_FOPEN = salt.utils.files.fopen


class Host:
    """A host without a service manager, as the module's commands and files see it. `procs`
    maps a pid to its process (name, state, the configuration it runs, soft-stopping after a
    -sf); `start_fails` makes `haproxy -D` exit 1; `daemon_dies` makes it exit 0 with a pid
    file whose process is gone; `rewrites_pidfile` False makes it exit 0 and leave the file."""

    def __init__(self, start_fails=False, daemon_dies=False, rewrites_pidfile=True):
        self.procs = {}
        self.next_pid = 2001
        self.start_fails, self.daemon_dies = start_fails, daemon_dies
        self.rewrites_pidfile = rewrites_pidfile
        self.calls = []

    def spawn(self, name="haproxy", state="S (sleeping)", config=None):
        pid, self.next_pid = self.next_pid, self.next_pid + 1
        self.procs[pid] = {"name": name, "state": state, "config": config, "stopping": False}
        return pid

    def run_all(self, argv, **kwargs):
        assert kwargs == {"python_shell": False, "output_loglevel": "quiet",
                          "ignore_retcode": True}
        assert isinstance(argv, list) and argv[0] == HAPROXY, argv
        self.calls.append(argv)
        if argv[1:3] == ["-c", "-f"] and len(argv) == 4:
            config = _read(argv[3])
            if config is None or "bakend" in config:
                return {"retcode": 1, "stdout": "", "stderr": ALERT, "pid": 7}
            return {"retcode": 0, "stdout": "Configuration file is valid\n", "stderr": "",
                    "pid": 7}
        if argv[1:3] == ["-D", "-f"] and argv[4] == "-p":
            config, pidfile, rest = argv[3], argv[5], argv[6:]
            assert rest == [] or (rest[0] == "-sf" and all(p.isdigit() for p in rest[1:])), argv
            if self.start_fails:
                return {"retcode": 1, "stdout": "", "stderr": BIND_ALERT, "pid": 2000}
            for old in rest[1:]:
                self.procs[int(old)]["stopping"] = True  # finishes its connections, then exits
            if not self.rewrites_pidfile:
                return {"retcode": 0, "stdout": "", "stderr": "", "pid": 2000}
            pid = self.spawn(config=_read(config))
            if self.daemon_dies:
                del self.procs[pid]
            with open(pidfile, "w", encoding="utf-8") as fh:  # its directory must exist
                fh.write(f"{pid}\n")
            return {"retcode": 0, "stdout": "", "stderr": "", "pid": 2000}
        raise AssertionError(f"unexpected command {argv}")

    def fopen(self, path, *args, **kwargs):
        """/proc/<pid>/status from the process table; every other path is the real file."""
        path = str(path)
        if path.startswith("/proc/"):
            assert args == ("r",) and path.endswith("/status"), (path, args)
            pid = int(path.split("/")[2])
            if pid not in self.procs:
                raise FileNotFoundError(2, "No such file or directory", path)
            proc = self.procs[pid]
            return io.StringIO(f"Name:\t{proc['name']}\nUmask:\t0022\nState:\t{proc['state']}\n"
                               f"Tgid:\t{pid}\nPid:\t{pid}\nPPid:\t1\n")
        return REAL_FOPEN(path, *args, **kwargs)

    @property
    def starts(self):
        return [c for c in self.calls if c[1] == "-D"]

    def running(self, config=None):
        """The pids of live haproxy processes that are not stopping (running `config`)."""
        return sorted(pid for pid, p in self.procs.items()
                      if p["name"] == "haproxy" and not p["state"].startswith("Z")
                      and not p["stopping"] and config in (None, p["config"]))


def _read(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return None


@pytest.fixture
def files(tmp_path):
    """The configuration (CONFIG_V1) and the pid file's path, in a directory not made yet."""
    config = tmp_path / "haproxy.cfg"
    config.write_text(CONFIG_V1, encoding="utf-8")
    return str(config), str(tmp_path / "run" / "haproxy" / "haproxy.pid")


def write_pidfile(pidfile, *pids, extra=""):
    path = pathlib.Path(pidfile)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{p}\n" for p in pids) + extra, encoding="utf-8")


def on(host, installed=True, extra=()):
    """The module's Salt: cmd.run_all and /proc from `host`, haproxy on PATH (or not)."""
    stack = ExitStack()
    which = {"haproxy": HAPROXY if installed else None}
    for patcher in [patch.object(MODULE, "__salt__", {"cmd.run_all": host.run_all}, create=True),
                    patch.object(salt.utils.files, "fopen", host.fopen),
                    patch.object(salt.utils.path, "which", which.get), *extra]:
        stack.enter_context(patcher)
    return stack


def call(host, fun, *args, installed=True, **kwargs):
    with on(host, installed):
        return getattr(MODULE, fun)(*args, **kwargs)


def state(host, fun, test=False, context=None, installed=True, **kwargs):
    """The state function `fun` with the real execution module under it."""
    salt_ = {"cloudify_ha_lb.pids": MODULE.pids, "cloudify_ha_lb.start": MODULE.start,
             "cloudify_ha_lb.pidfile_problem": MODULE.pidfile_problem,
             "cloudify_ha_lb.make_directory": MODULE.make_directory}
    with on(host, installed, extra=[
            patch.object(STATE, "__salt__", salt_, create=True),
            patch.object(STATE, "__opts__", {"test": test}, create=True),
            patch.object(STATE, "__context__", {} if context is None else context, create=True)]):
        return getattr(STATE, fun)(**kwargs)


# ---- the execution module: pids, check_config, start ------------------------------------------
def test_virtual_names():
    assert MODULE.__virtual__() == "cloudify_ha_lb"
    with patch.object(STATE, "__salt__", {"cloudify_ha_lb.pids": MODULE.pids}, create=True):
        assert STATE.__virtual__() == "cloudify_ha_lb"
    with patch.object(STATE, "__salt__", {"cmd.run_all": None}, create=True):
        assert STATE.__virtual__() == (
            False, "the cloudify_ha_lb execution module is not available: sync the formula's "
                   "modules (saltutil.sync_all)")


def test_pids_of_a_missing_pidfile_are_none(files):
    assert call(Host(), "pids", files[1]) == []


def test_pids_are_the_live_haproxy_processes_listed(files):
    host = Host()
    live, zombie = host.spawn(), host.spawn(state="Z (zombie)")
    reused, also_live = host.spawn(name="postgres"), host.spawn()
    dead = host.next_pid
    write_pidfile(files[1], live, dead, zombie, reused, also_live, extra="-1 garbage 12a\n")
    assert call(host, "pids", files[1]) == [live, also_live]
    assert host.calls == []


def test_pids_of_an_empty_pidfile_are_none(files):
    write_pidfile(files[1])
    assert call(Host(), "pids", files[1]) == []


def test_check_config_accepts_a_valid_configuration(files):
    host = Host()
    assert call(host, "check_config", files[0]) is True
    assert host.calls == [[HAPROXY, "-c", "-f", files[0]]]


def test_check_config_rejects_with_haproxys_message(tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text(BAD_CONFIG, encoding="utf-8")
    with pytest.raises(CommandExecutionError) as err:
        call(Host(), "check_config", str(bad))
    assert str(err.value) == f"haproxy -c rejects {bad}: {ALERT.strip()}"


def test_check_config_keeps_the_last_800_characters_of_a_long_message(files):
    host = Host()
    lines = "".join(f"[WARNING]  (7) : line {i:04d} is deprecated\n" for i in range(60))

    def run_all(argv, **kwargs):
        host.calls.append(argv)
        return {"retcode": 1, "stdout": lines, "stderr": ALERT, "pid": 7}

    with patch.object(MODULE, "__salt__", {"cmd.run_all": run_all}, create=True), \
            patch.object(salt.utils.path, "which", {"haproxy": HAPROXY}.get):
        with pytest.raises(CommandExecutionError) as err:
            MODULE.check_config(files[0])
    assert str(err.value) == f"haproxy -c rejects {files[0]}: {(lines + ALERT).strip()[-800:]}"
    assert len((lines + ALERT).strip()) > 800


CHECK_TOKEN = base64.b64encode(b"cloudify_ha_check:s3cret-Check-pw").decode()


@pytest.mark.parametrize("line", [
    f'    http-check send meth GET uri /api/v3.1/status hdr Authorization "Basic {CHECK_TOKEN}"\n',
    f"    option httpchk GET /api/v3.1/status HTTP/1.0\\r\\nAuthorization:\\ Basic\\ {CHECK_TOKEN}\n"])
def test_check_config_never_repeats_the_health_checks_credentials(files, line):
    """HAProxy quotes words of a line it refuses: the Basic token, its decoded pair and the
    password are masked in the error (the state's comment, the job cache)."""
    pathlib.Path(files[0]).write_text(CONFIG_V1 + line, encoding="utf-8")
    host = Host()
    said = (f"[ALERT] parsing [haproxy.cfg:6] : 'Basic {CHECK_TOKEN}' unknown; 'cloudify_ha_check:"
            "s3cret-Check-pw'; 's3cret-Check-pw'\n")

    def run_all(argv, **kwargs):
        host.calls.append(argv)
        return {"retcode": 1, "stdout": "", "stderr": said, "pid": 7}

    with patch.object(MODULE, "__salt__", {"cmd.run_all": run_all}, create=True), \
            patch.object(salt.utils.path, "which", {"haproxy": HAPROXY}.get):
        with pytest.raises(CommandExecutionError) as err:
            MODULE.check_config(files[0])
    assert str(err.value) == (f"haproxy -c rejects {files[0]}: [ALERT] parsing [haproxy.cfg:6] "
                              ": 'Basic *****' unknown; '*****'; '*****'")


def test_the_real_haproxy_quotes_a_refused_lines_words_unless_quiet(tmp_path):
    """Why the SLS's check_cmd is `haproxy -c -q -f`: HAProxy 2.6 prints the words of a server
    line it refuses (the token among them), and nothing at all with -q (make deps installs
    HAProxy: the lab's load balancers run it)."""
    bad = tmp_path / "bad.cfg"
    bad.write_text("defaults\n  mode http\nbackend b\n  server s1 192.0.2.1:80 check "
                   f'"Basic {CHECK_TOKEN}"\n', encoding="utf-8")
    loud = subprocess.run([HAPROXY, "-c", "-f", str(bad)], capture_output=True, text=True,
                          check=False)
    quiet = subprocess.run([HAPROXY, "-c", "-q", "-f", str(bad)], capture_output=True,
                           text=True, check=False)
    assert loud.returncode != 0 and CHECK_TOKEN in loud.stdout + loud.stderr
    assert quiet.returncode != 0 and quiet.stdout + quiet.stderr == ""


def test_without_haproxy_installed_nothing_runs(files):
    host = Host()
    for fun, args in (("check_config", files[:1]), ("start", files)):
        with pytest.raises(CommandExecutionError, match="^haproxy is not installed on this "
                                                        "minion$"):
            call(host, fun, *args, installed=False)
    assert host.calls == []


def test_start_runs_a_daemon_with_a_pidfile_in_a_directory_it_makes(files):
    host = Host()
    config, pidfile = files
    assert call(host, "start", config, pidfile) == [2001]
    assert host.calls == [[HAPROXY, "-c", "-f", config],
                          [HAPROXY, "-D", "-f", config, "-p", pidfile]]
    assert host.running(CONFIG_V1) == [2001]


@pytest.mark.parametrize("reload", [False, True])
def test_start_of_a_stale_pidfile_starts_afresh_without_sf(files, reload):
    host = Host()
    config, pidfile = files
    zombie = host.spawn(state="Z (zombie)")
    write_pidfile(pidfile, 1999, zombie)  # 1999: dead
    assert call(host, "start", config, pidfile, reload=reload) == [2002]
    assert host.starts == [[HAPROXY, "-D", "-f", config, "-p", pidfile]]


def test_start_with_reload_hands_over_from_the_live_processes_with_sf(files):
    host = Host()
    config, pidfile = files
    old1, zombie, old2 = host.spawn(config=CONFIG_V1), host.spawn(state="Z"), host.spawn()
    write_pidfile(pidfile, old1, 1999, zombie, old2)
    assert call(host, "start", config, pidfile, reload=True) == [2004]
    assert host.starts == [[HAPROXY, "-D", "-f", config, "-p", pidfile,
                            "-sf", str(old1), str(old2)]]
    assert host.running() == [2004]
    assert host.procs[old1]["stopping"] and host.procs[old2]["stopping"]


def test_start_without_reload_while_haproxy_runs_is_refused_and_starts_nothing(files):
    # a second daemon would take the pid file and leave the first one running, untracked
    host = Host()
    config, pidfile = files
    old = host.spawn(config=CONFIG_V1)
    write_pidfile(pidfile, old)
    with pytest.raises(CommandExecutionError, match=rf"HAProxy already runs \(pid {old} in "):
        call(host, "start", config, pidfile)
    assert host.starts == [] and host.procs[old]["stopping"] is False


def test_start_with_a_rejected_configuration_runs_no_daemon(files, tmp_path):
    host = Host()
    bad = tmp_path / "bad.cfg"
    bad.write_text(BAD_CONFIG, encoding="utf-8")
    with pytest.raises(CommandExecutionError, match="^haproxy -c rejects "):
        call(host, "start", str(bad), files[1], reload=True)
    assert host.starts == []


def test_start_that_fails_says_why(files):
    host = Host(start_fails=True)
    with pytest.raises(CommandExecutionError) as err:
        call(host, "start", *files)
    assert str(err.value) == f"haproxy did not start: {BIND_ALERT.strip()}"
    assert host.running() == []


# ---- the execution module: the admin socket ---------------------------------------------------
STAT_FIELDS = ("pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,"
               "wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,"
               "iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,"
               "check_code,check_duration").split(",")


def stat_line(pxname, svname, status, check_status="", check_code="", stot=""):
    row = dict.fromkeys(STAT_FIELDS, "")
    row.update(pxname=pxname, svname=svname, status=status, check_status=check_status,
               check_code=check_code, stot=stot)
    return ",".join(row[f] for f in STAT_FIELDS) + ",\n"  # HAProxy ends every line with a comma


SHOW_STAT = ("# " + ",".join(STAT_FIELDS) + ",\n"
             + stat_line("stats", "FRONTEND", "OPEN", stot="3")
             + stat_line("cloudify_prod", "FRONTEND", "OPEN", stot="40")
             + stat_line("cloudify_prod", "cfy-mgr1", "UP", "L7OK", "200", "37")
             + stat_line("cloudify_prod", "cfy-mgr2", "DOWN", "L7STS", "503", "2")
             + stat_line("cloudify_prod", "cfy-mgr3", "MAINT", stot="")
             + stat_line("cloudify_prod", "BACKEND", "UP", stot="40")
             + stat_line("cloudify_test", "cfy-t1", "UP 1/3", "L7STS", "503", "5")
             + stat_line("cloudify_test", "cfy-t2", "DOWN 1/2", "L7OK", "200", "0")
             + stat_line("cloudify_test", "BACKEND", "UP", stot="5")
             + stat_line("cloudify_dr", "cfy-dr1", "DOWN", "L4CON", "", "0")
             + "\n")


class AdminSocket:
    """HAProxy's admin socket at `path`: one connection, one command, `answer`, closed."""

    def __init__(self, path, answer):
        self.path, self.answer, self.commands = str(path), answer, []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.server.accept()
        with conn:
            got = b""
            while not got.endswith(b"\n"):
                chunk = conn.recv(1024)
                if not chunk:
                    break
                got += chunk
            self.commands.append(got.decode())
            conn.sendall(self.answer.encode())

    def close(self):
        self.thread.join(timeout=10)
        self.server.close()


@pytest.fixture
def admin_socket(tmp_path):
    sock = AdminSocket(tmp_path / "admin.sock", SHOW_STAT)
    yield sock
    sock.close()


def test_backends_are_every_server_of_show_stat(admin_socket):
    assert MODULE.backends(admin_socket.path) == [
        {"backend": "cloudify_prod", "server": "cfy-mgr1", "status": "UP", "check": "L7OK",
         "check_code": "200", "sessions": 37},
        {"backend": "cloudify_prod", "server": "cfy-mgr2", "status": "DOWN", "check": "L7STS",
         "check_code": "503", "sessions": 2},
        {"backend": "cloudify_prod", "server": "cfy-mgr3", "status": "MAINT", "check": "",
         "check_code": "", "sessions": 0},
        {"backend": "cloudify_test", "server": "cfy-t1", "status": "UP 1/3", "check": "L7STS",
         "check_code": "503", "sessions": 5},
        {"backend": "cloudify_test", "server": "cfy-t2", "status": "DOWN 1/2", "check": "L7OK",
         "check_code": "200", "sessions": 0},
        {"backend": "cloudify_dr", "server": "cfy-dr1", "status": "DOWN", "check": "L4CON",
         "check_code": "", "sessions": 0}]
    assert admin_socket.commands == ["show stat\n"]


def test_backends_of_one_backend(admin_socket):
    assert [s["server"] for s in MODULE.backends(admin_socket.path, "cloudify_test")] == [
        "cfy-t1", "cfy-t2"]


def test_receiving_are_the_up_servers_of_each_backend(admin_socket):
    assert MODULE.receiving(admin_socket.path) == {
        "cloudify_prod": ["cfy-mgr1"], "cloudify_test": ["cfy-t1"], "cloudify_dr": []}


def test_receiving_of_one_backend(admin_socket):
    assert MODULE.receiving(admin_socket.path, backend="cloudify_dr") == {"cloudify_dr": []}


def test_a_socket_that_does_not_answer_says_which(tmp_path):
    path = tmp_path / "admin.sock"
    with pytest.raises(CommandExecutionError) as err:
        MODULE.backends(str(path))
    assert str(err.value) == (f"HAProxy's admin socket {path} does not answer: [Errno 2] No such "
                              "file or directory; is HAProxy running with this 'stats socket'?")


# ---- the state: cloudify_ha_lb.running ---------------------------------------------------------
def test_running_haproxy_is_left_alone(files):
    host = Host()
    config, pidfile = files
    pid = host.spawn(config=CONFIG_V1)
    write_pidfile(pidfile, pid)
    for test in (False, True):
        assert state(host, "running", test=test, name=config, pidfile=pidfile) == {
            "name": config, "changes": {}, "result": True,
            "comment": f"HAProxy runs (pids [{pid}])"}
    assert host.calls == []


@pytest.mark.parametrize("stale", ["no pidfile", "dead", "zombie", "pid reused"])
def test_not_running_is_checked_then_started(files, stale):
    host = Host()
    config, pidfile = files
    if stale == "dead":
        write_pidfile(pidfile, 1999)
    elif stale == "zombie":
        write_pidfile(pidfile, host.spawn(state="Z (zombie)"))
    elif stale == "pid reused":
        write_pidfile(pidfile, host.spawn(name="postgres"))
    new = host.next_pid
    context = {}
    assert state(host, "running", context=context, name=config, pidfile=pidfile) == {
        "name": config, "changes": {"started": {"old": None, "new": [new]}}, "result": True,
        "comment": f"HAProxy started with {config}"}
    assert host.calls == [[HAPROXY, "-c", "-f", config],
                          [HAPROXY, "-D", "-f", config, "-p", pidfile]]
    assert host.running(CONFIG_V1) == [new]
    assert context == {f"cloudify_ha_lb.started:{pidfile}": [new]}


def test_not_running_under_test_reports_and_runs_nothing(files):
    host = Host()
    config, pidfile = files
    write_pidfile(pidfile, 1999)
    context = {}
    assert state(host, "running", test=True, context=context, name=config, pidfile=pidfile) == {
        "name": config, "changes": {"started": {"old": None, "new": config}}, "result": None,
        "comment": f"HAProxy would be started with {config}"}
    assert host.calls == [] and host.running() == [] and context == {}


def test_running_with_a_rejected_configuration_starts_nothing(files, tmp_path):
    host = Host()
    bad = tmp_path / "bad.cfg"
    bad.write_text(BAD_CONFIG, encoding="utf-8")
    assert state(host, "running", name=str(bad), pidfile=files[1]) == {
        "name": str(bad), "changes": {}, "result": False,
        "comment": f"haproxy -c rejects {bad}: {ALERT.strip()}"}
    assert host.starts == [] and host.running() == []


def not_a_pidfile(kind, pidfile, tmp_path):
    """Put at `pidfile` what HAProxy must not truncate; the message's end for it."""
    path = pathlib.Path(pidfile)
    path.parent.mkdir(parents=True, exist_ok=True)
    target = tmp_path / "shadow"
    target.write_text("root:$6$secret:19000:0:99999:7:::\n", encoding="utf-8")
    if kind == "symlink":
        path.symlink_to(target)
        return "is a symbolic link"
    if kind == "hard link":
        path.hardlink_to(target)
        return "has 2 hard links"
    if kind == "directory":
        path.mkdir()
        return "is not a regular file"
    if kind == "text":
        path.write_text("# not a pid file\n1234\n", encoding="utf-8")
        return "is not a pid file (it holds more than process ids)"
    path.write_text("1\n" * 3000, encoding="utf-8")
    return "is not a pid file (6000 bytes)"


@pytest.mark.parametrize("kind", ["symlink", "hard link", "directory", "text", "huge"])
@pytest.mark.parametrize("fun, test", [("running", False), ("running", True),
                                       ("mod_watch", False), ("mod_watch", True)])
def test_a_pidfile_that_is_not_haproxys_is_refused_and_nothing_runs(files, tmp_path, kind, fun,
                                                                    test):
    host = Host()
    config, pidfile = files
    what = not_a_pidfile(kind, pidfile, tmp_path)
    assert state(host, fun, test=test, name=config, pidfile=pidfile) == {
        "name": config, "changes": {}, "result": False,
        "comment": f"cloudify_ha:lookup:haproxy_pidfile: {pidfile} {what}; HAProxy would "
                   "truncate it: give HAProxy a pid file of its own (e.g. /run/haproxy.pid); "
                   "nothing was started"}
    assert host.calls == []
    assert (tmp_path / "shadow").read_text(encoding="utf-8").startswith("root:$6$")


def test_start_refuses_a_pidfile_that_is_not_haproxys(files, tmp_path):
    host = Host()
    not_a_pidfile("symlink", files[1], tmp_path)
    with pytest.raises(CommandExecutionError, match="is a symbolic link; HAProxy would truncate"):
        call(host, "start", *files)
    assert host.calls == []


def test_a_stale_pidfile_whose_pid_another_process_reuses_is_haproxys_own(files):
    host = Host()
    reused = host.spawn(name="sshd")
    write_pidfile(files[1], reused)
    assert call(host, "pidfile_problem", files[1]) is None
    assert call(host, "start", *files) == [reused + 1]


@pytest.mark.parametrize("test", [False, True])
def test_the_socket_directory_is_created_0750_when_missing(tmp_path, test):
    path = tmp_path / "run" / "haproxy"
    ret = state(Host(), "directory_created", test=test, name=str(path))
    changes = {"created": {"old": None, "new": str(path), "mode": "0750"}}
    if test:
        assert ret == {"name": str(path), "changes": changes, "result": None,
                       "comment": f"{path} would be created (0750)"}
        assert not path.exists()
        return
    assert ret == {"name": str(path), "changes": changes, "result": True,
                   "comment": f"{path} created (0750)"}
    assert path.is_dir() and (path.stat().st_mode & 0o777) == 0o750


def test_an_existing_socket_directory_is_left_as_its_package_made_it(tmp_path):
    path = tmp_path / "haproxy"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    assert state(Host(), "directory_created", name=str(path)) == {
        "name": str(path), "changes": {}, "result": True,
        "comment": f"{path} exists (left as it is)"}
    assert (path.stat().st_mode & 0o777) == 0o755


def test_a_file_in_the_socket_directorys_place_is_refused(tmp_path):
    path = tmp_path / "haproxy"
    path.write_text("x", encoding="utf-8")
    assert state(Host(), "directory_created", name=str(path)) == {
        "name": str(path), "changes": {}, "result": False,
        "comment": f"{path} exists and is not a directory: remove it or choose another place "
                   "for HAProxy's admin socket"}


def test_running_when_the_start_fails_says_why(files):
    host = Host(start_fails=True)
    config, pidfile = files
    context = {}
    assert state(host, "running", context=context, name=config, pidfile=pidfile) == {
        "name": config, "changes": {}, "result": False,
        "comment": f"haproxy did not start: {BIND_ALERT.strip()}"}
    assert context == {}


def test_running_when_the_daemon_dies_at_once_is_no_change(files):
    host = Host(daemon_dies=True)
    config, pidfile = files
    context = {}
    assert state(host, "running", context=context, name=config, pidfile=pidfile) == {
        "name": config, "changes": {}, "result": False,
        "comment": f"haproxy -D returned 0 but no live process is listed in {pidfile}"}
    assert len(host.starts) == 1 and context == {}


def test_running_without_haproxy_installed(files):
    host = Host()
    config, pidfile = files
    assert state(host, "running", installed=False, name=config, pidfile=pidfile) == {
        "name": config, "changes": {}, "result": False,
        "comment": "haproxy is not installed on this minion"}
    assert host.calls == []


# ---- the state: mod_watch (the configuration changed) -----------------------------------------
def running_with(host, files, config_text):
    """HAProxy running the configuration, which then changes to `config_text`."""
    config, pidfile = files
    old = host.spawn(config=CONFIG_V1)
    write_pidfile(pidfile, old)
    with open(config, "w", encoding="utf-8") as fh:
        fh.write(config_text)
    return old


def test_a_changed_configuration_is_a_soft_reload(files):
    host = Host()
    config, pidfile = files
    old = running_with(host, files, CONFIG_V2)
    new = host.next_pid
    assert state(host, "mod_watch", name=config, pidfile=pidfile, sfun="running") == {
        "name": config, "changes": {"reloaded": {"old": [old], "new": [new]}}, "result": True,
        "comment": f"HAProxy reloaded with {config} (established connections finish on the old "
                   "process)"}
    assert host.calls == [[HAPROXY, "-c", "-f", config],
                          [HAPROXY, "-D", "-f", config, "-p", pidfile, "-sf", str(old)]]
    assert host.running(CONFIG_V2) == [new]
    assert host.procs[old]["stopping"] is True


def test_a_changed_configuration_under_test_reports_and_reloads_nothing(files):
    host = Host()
    config, pidfile = files
    old = running_with(host, files, CONFIG_V2)
    assert state(host, "mod_watch", test=True, name=config, pidfile=pidfile) == {
        "name": config, "changes": {"reloaded": {"old": [old], "new": "new process"}},
        "result": None, "comment": "HAProxy would be reloaded"}
    assert host.calls == [] and host.running(CONFIG_V1) == [old]


def test_a_watch_while_not_running_under_test_would_start(files):
    host = Host()
    config, pidfile = files
    assert state(host, "mod_watch", test=True, name=config, pidfile=pidfile) == {
        "name": config, "changes": {"reloaded": {"old": [], "new": "new process"}},
        "result": None, "comment": "HAProxy would be started"}
    assert host.calls == []


def test_a_watch_while_not_running_starts_without_sf(files):
    host = Host()
    config, pidfile = files
    write_pidfile(pidfile, 1999)
    assert state(host, "mod_watch", name=config, pidfile=pidfile) == {
        "name": config, "changes": {"reloaded": {"old": [], "new": [2001]}}, "result": True,
        "comment": f"HAProxy started with {config} (established connections finish on the old "
                   "process)"}
    assert host.starts == [[HAPROXY, "-D", "-f", config, "-p", pidfile]]


def test_a_watch_right_after_the_start_in_the_same_run_does_not_reload(files):
    host = Host()
    config, pidfile = files
    context = {}
    assert state(host, "running", context=context, name=config, pidfile=pidfile)["changes"] == {
        "started": {"old": None, "new": [2001]}}
    assert state(host, "mod_watch", context=context, name=config, pidfile=pidfile) == {
        "name": config, "changes": {}, "result": True,
        "comment": f"HAProxy was just started with {config}"}
    assert len(host.starts) == 1 and host.running() == [2001]
    assert context == {}


def test_a_watch_after_a_start_whose_process_is_gone_starts_again(files):
    host = Host()
    config, pidfile = files
    context = {}
    state(host, "running", context=context, name=config, pidfile=pidfile)
    del host.procs[2001]
    assert state(host, "mod_watch", context=context, name=config, pidfile=pidfile) == {
        "name": config, "changes": {"reloaded": {"old": [], "new": [2002]}}, "result": True,
        "comment": f"HAProxy started with {config} (established connections finish on the old "
                   "process)"}
    assert host.starts[-1] == [HAPROXY, "-D", "-f", config, "-p", pidfile]
    assert context == {}


def test_a_reload_with_a_rejected_configuration_keeps_the_old_process(files):
    host = Host()
    config, pidfile = files
    old = running_with(host, files, BAD_CONFIG)
    assert state(host, "mod_watch", name=config, pidfile=pidfile) == {
        "name": config, "changes": {}, "result": False,
        "comment": f"haproxy -c rejects {config}: {ALERT.strip()}"}
    assert host.starts == [] and host.running(CONFIG_V1) == [old]


def test_a_reload_that_fails_says_why_and_keeps_the_old_process(files):
    host = Host(start_fails=True)
    config, pidfile = files
    old = running_with(host, files, CONFIG_V2)
    assert state(host, "mod_watch", name=config, pidfile=pidfile) == {
        "name": config, "changes": {}, "result": False,
        "comment": f"haproxy did not start: {BIND_ALERT.strip()}"}
    assert host.running(CONFIG_V1) == [old]


def test_a_reload_that_leaves_the_same_pids_is_not_a_change(files):
    host = Host(rewrites_pidfile=False)
    config, pidfile = files
    old = running_with(host, files, CONFIG_V2)
    assert state(host, "mod_watch", name=config, pidfile=pidfile) == {
        "name": config, "changes": {}, "result": False,
        "comment": f"HAProxy was not replaced by a new process (pids [{old}] -> [{old}])"}


def test_a_reload_whose_new_process_dies_is_not_a_change(files):
    host = Host(daemon_dies=True)
    config, pidfile = files
    old = running_with(host, files, CONFIG_V2)
    assert state(host, "mod_watch", name=config, pidfile=pidfile) == {
        "name": config, "changes": {}, "result": False,
        "comment": f"HAProxy was not replaced by a new process (pids [{old}] -> [])"}


# ---- what the installed HAProxy parses ---------------------------------------------------------
@pytest.mark.parametrize("said, version, has", [
    ("HA-Proxy version 1.5.18 2016/05/10\nCopyright 2000-2016 Willy Tarreau\n", "1.5.18", set()),
    ("HA-Proxy version 1.6.3 2015/12/25\n", "1.6.3", {"server_state"}),
    ("HA-Proxy version 1.8.19-1+deb10u4 2022/05/21\n", "1.8.19", {"server_state", "ssl_min_ver"}),
    ("HAProxy version 2.2.0 2020/07/07 - https://haproxy.org/\n", "2.2.0",
     {"server_state", "ssl_min_ver", "http_check_send"}),
    ("HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/\nStatus: long-term\n",
     "2.6.12", {"server_state", "ssl_min_ver", "http_check_send"}),
])
def test_features_follow_the_version_haproxy_says(said, version, has):
    calls = []

    def run_all(argv, **kwargs):
        calls.append((argv, kwargs))
        return {"retcode": 0, "stdout": said, "stderr": "", "pid": 7}

    with patch.object(MODULE, "__salt__", {"cmd.run_all": run_all}, create=True), \
            patch.object(salt.utils.path, "which", {"haproxy": HAPROXY}.get):
        found = MODULE.features()
    assert found == {"version": version, **{name: name in has for name in MODULE.FEATURES}}
    assert calls == [([HAPROXY, "-v"], {"python_shell": False, "output_loglevel": "quiet",
                                         "ignore_retcode": True})]


def test_without_haproxy_every_feature_is_off_and_nothing_runs():
    with patch.object(MODULE, "__salt__", {}, create=True), \
            patch.object(salt.utils.path, "which", {}.get):
        assert MODULE.features() == {"version": None, "server_state": False,
                                     "ssl_min_ver": False, "http_check_send": False}


def test_a_version_haproxy_does_not_say_is_an_error():
    def run_all(argv, **kwargs):
        return {"retcode": 0, "stdout": "something else\n", "stderr": "", "pid": 7}

    with patch.object(MODULE, "__salt__", {"cmd.run_all": run_all}, create=True), \
            patch.object(salt.utils.path, "which", {"haproxy": HAPROXY}.get):
        with pytest.raises(CommandExecutionError, match="^haproxy -v did not say its version: "
                                                        "something else$"):
            MODULE.features()


def test_this_machines_haproxy_has_every_feature():
    """The real `haproxy -v` of this machine (Debian 12's 2.6) through the module's parser."""
    done = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, check=True)

    def run_all(argv, **kwargs):
        return {"retcode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}

    with patch.object(MODULE, "__salt__", {"cmd.run_all": run_all}, create=True):
        found = MODULE.features()
    assert found["version"].startswith("2.6.") and all(found[n] for n in MODULE.FEATURES)


# ---- servers taken out and put back, against this machine's real HAProxy -------------------------
class _Manager(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        body = self.server.name.encode()
        self.send_response(self.server.code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def real_haproxy(request, tmp_path, monkeypatch):
    """This machine's HAProxy in front of three managers on 127.0.0.1 (by default mgr1 and mgr2
    answer 200, mgr3 400; indirect parametrization gives other codes), its admin socket and
    server-state file in tmp_path, the formula's record of drained servers there too; `start()`
    (re)starts it from the configuration, a soft reload when it runs; `get()` is a request
    through its frontend, answered with the server's name. Yields a namespace: sock,
    state_file, start, status(), get()."""
    codes = getattr(request, "param", (200, 200, 400))
    servers = []
    for name, code in zip(("mgr1", "mgr2", "mgr3"), codes):
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Manager)
        httpd.name, httpd.code = name, code
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
    sock, state_file, pidfile = (str(tmp_path / n) for n in ("admin.sock", "state", "pid"))
    config = tmp_path / "haproxy.cfg"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config.write_text(
        f"global\n    stats socket {sock} mode 600 level admin\n"
        f"    server-state-file {state_file}\n"
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n"
        "    timeout server 5s\n    load-server-state-from-file global\n"
        f"frontend cloudify_prod\n    bind 127.0.0.1:{port}\n    default_backend cloudify_prod\n"
        "backend cloudify_prod\n    balance first\n    option httpchk GET /api/v3.1/status\n"
        "    http-check expect status 200\n    default-server inter 100ms fall 1 rise 1\n"
        + "".join(f"    server {s.name} 127.0.0.1:{s.server_address[1]} check\n"
                  for s in servers))
    monkeypatch.setattr(MODULE, "DRAINED", str(tmp_path / "drained.json"))

    def start():
        old = pathlib.Path(pidfile).read_text().split() if os.path.exists(pidfile) else []
        subprocess.run(["haproxy", "-D", "-f", str(config), "-p", pidfile]
                       + (["-sf", *old] if old else []), check=True, capture_output=True)
        wait(lambda: MODULE.serving(sock) and len(status()) == 3, "HAProxy's admin socket")

    def status():
        return {s["server"]: s["status"].split()[0] for s in MODULE.backends(sock)}

    def get():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                return resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.read().decode()

    yield types.SimpleNamespace(sock=sock, state_file=state_file, start=start, status=status,
                                get=get)
    if os.path.exists(pidfile):
        for pid in pathlib.Path(pidfile).read_text().split():
            subprocess.run(["kill", pid], check=False)
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def wait(predicate, what, timeout=10):
    """A bounded poll (HAProxy's checks run every 100 ms here)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def servers_state(name="cloudify_prod", sock=None, test=False, **kwargs):
    """cloudify_ha_lb.backend_servers with the real execution module under it."""
    salt_ = {f"cloudify_ha_lb.{f}": getattr(MODULE, f) for f in (
        "drained", "record_drained", "serving", "backends", "set_server", "save_server_state",
        "features", "seconds")}
    kwargs.setdefault("inter", "100ms")
    kwargs.setdefault("fall", 1)
    kwargs.setdefault("timeout_connect", "1s")
    with patch.object(STATE, "__salt__", salt_, create=True), \
            patch.object(STATE, "__opts__", {"test": test}, create=True), \
            patch.object(MODULE, "__salt__", {"cmd.run_all": _run_all}, create=True):
        return STATE.backend_servers(name=name, admin_socket=sock, **kwargs)


def _run_all(argv, **kwargs):
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return {"retcode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def test_a_joiner_stays_out_across_a_reload_and_an_operators_server_is_never_put_back(
        real_haproxy):
    lb = real_haproxy
    lb.start()
    wait(lambda: lb.status() == {"mgr1": "UP", "mgr2": "UP", "mgr3": "DOWN"}, "the checks")
    MODULE.set_server("cloudify_prod", "mgr3", False, admin_socket=lb.sock)  # an operator's
    out = servers_state(sock=lb.sock, out=["mgr2", "mgr3"], state_file=lb.state_file)
    assert (out["result"], out["changes"]) == (True, {"out": ["mgr2"]}), out
    assert "mgr3: out of cloudify_prod already, not by this formula" in out["comment"]
    assert MODULE.drained() == {"cloudify_prod": ["mgr2"]}
    assert lb.status() == {"mgr1": "UP", "mgr2": "MAINT", "mgr3": "MAINT"}
    # a soft reload re-reads the configuration (no `disabled` in it here): the saved state keeps
    # both out, and the one found down is not sent traffic before its first check
    lb.start()
    assert lb.status() == {"mgr1": "UP", "mgr2": "MAINT", "mgr3": "MAINT"}
    again = servers_state(sock=lb.sock, out=["mgr2"], state_file=lb.state_file)
    assert (again["result"], again["changes"]) == (True, {}), again
    back = servers_state(sock=lb.sock, back=["mgr1", "mgr2", "mgr3"], state_file=lb.state_file)
    assert (back["result"], back["changes"]) == (True, {"back": ["mgr2"]}), back
    assert MODULE.drained() == {}
    wait(lambda: lb.status() == {"mgr1": "UP", "mgr2": "UP", "mgr3": "MAINT"}, "mgr2 back up")


def test_a_restart_that_let_a_joiner_in_is_corrected_and_test_mode_changes_nothing(
        real_haproxy):
    lb = real_haproxy
    MODULE.record_drained("cloudify_prod", ["mgr2"])  # a run took it out, then HAProxy restarted
    lb.start()
    wait(lambda: lb.status()["mgr2"] == "UP", "mgr2 up after the restart")
    would = servers_state(sock=lb.sock, test=True, state_file=lb.state_file)
    assert (would["result"], would["changes"]) == (None, {"out_again": ["mgr2"]}), would
    assert lb.status()["mgr2"] == "UP" and not os.path.exists(lb.state_file)
    done = servers_state(sock=lb.sock, state_file=lb.state_file)
    assert (done["result"], done["changes"]) == (True, {"out_again": ["mgr2"]}), done
    assert lb.status()["mgr2"] == "MAINT" and os.path.exists(lb.state_file)


def test_without_haproxy_running_only_the_record_changes(tmp_path, monkeypatch):
    monkeypatch.setattr(MODULE, "DRAINED", str(tmp_path / "drained.json"))
    sock = str(tmp_path / "none.sock")
    out = servers_state(sock=sock, out=["mgr2"], state_file=str(tmp_path / "state"))
    assert (out["result"], out["changes"]) == (True, {"out": ["mgr2"]}), out
    assert "HAProxy does not run" in out["comment"]
    assert MODULE.drained() == {"cloudify_prod": ["mgr2"]}
    back = servers_state(sock=sock, back=["mgr2"])
    assert (back["result"], back["changes"], MODULE.drained()) == (True, {"back": ["mgr2"]}, {})


def test_set_server_takes_only_plain_names():
    with pytest.raises(CommandExecutionError, match="is not a backend or server name"):
        MODULE.set_server("cloudify_prod", "mgr2\nshutdown sessions", False)


@pytest.mark.parametrize("real_haproxy", [(400, 200, 200)], indirect=True)
def test_a_server_put_back_gets_no_request_before_its_checks_mark_it_down(real_haproxy):
    """HAProxy marks a server it takes out of maintenance UP until its checks fail: the first
    server in `balance first` order, a replica (400), would get requests. Put back with weight 0
    until its checks had their chance, it gets none."""
    lb = real_haproxy
    lb.start()
    wait(lambda: lb.status() == {"mgr1": "DOWN", "mgr2": "UP", "mgr3": "UP"}, "the checks")
    for _ in range(3):  # HAProxy does not always mark it UP: a few rounds
        out = servers_state(sock=lb.sock, out=["mgr1"])
        assert out["changes"] == {"out": ["mgr1"]}, out
        answers = []
        stop = threading.Event()

        def poll():
            while not stop.is_set():
                answers.append(lb.get())

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            back = servers_state(sock=lb.sock, back=["mgr1"])
        finally:
            stop.set()
            poller.join()
        assert (back["result"], back["changes"]) == (True, {"back": ["mgr1"]}), back
        assert answers and set(answers) == {"mgr2"}, answers
        assert lb.status()["mgr1"] == "DOWN"
    assert "(initial 1)" in MODULE._ask(lb.sock, "get weight cloudify_prod/mgr1")
    assert MODULE._ask(lb.sock, "get weight cloudify_prod/mgr1").startswith("1 ")


@pytest.mark.parametrize("value, seconds", [("500ms", 0.5), ("2s", 2), ("1m", 60), (250, 0.25),
                                            ("100us", 0.0001)])
def test_haproxy_times_in_seconds(value, seconds):
    assert MODULE.seconds(value) == pytest.approx(seconds)
