"""_modules/cloudify_ha_lb.py and the cloudify_ha_lb.running state (with its mod_watch), run
together against a fake host: cmd.run_all plays `haproxy -c` and `haproxy -D` (pid file under
tmp_path, soft reloads with -sf), /proc/<pid>/status is the host's process table, and the
admin socket is a real UNIX socket under tmp_path that answers with canned `show stat` CSV."""

import io
import pathlib
import socket
import threading
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
