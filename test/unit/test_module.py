"""_modules/cloudify_ha.py: the execution module, with a fake Salt (cmd.run_all, pkg.version)
and pillar, the host's files under tmp_path, and the REST client's `request` replaced by a fake.
"""

import base64
import copy
import hashlib
import json
import os
import re
import stat
import threading
import urllib.parse
import zipfile
from types import SimpleNamespace
from unittest.mock import MagicMock, create_autospec, patch

import pytest
import yaml
from salt.exceptions import CommandExecutionError, SaltInvocationError

from formula_code import (REPO, EXAMPLE_SECRETS, example_pillar, execution_module, grain_module,
                          files_util, pillar_util, rest_util, state_module)
from lab.emulator import real_cli

MODULE = execution_module()
PILLAR_UTIL = pillar_util()
REST = rest_util()
# what Salt's loader gives the module: it reaches each _utils module through one of its functions
UTILS = {"cloudify_ha_pillar.plan": PILLAR_UTIL.plan, "cloudify_ha_rest.request": REST.request}

MINION = "cfy-mgr2.example.com"
ADMIN_PW, DB_PW, POSTGRES_PW, CHECK_PW = EXAMPLE_SECRETS
DATA = REPO / "test" / "unit" / "data"
# pillar.example's throwaway database PKI (RSA, as 4.6 checks it)
_DB = example_pillar()["clusters"]["prod"]["database"]
CLIENT_KEY, CA_KEY, DB_CA, CLIENT_CERT = (_DB[k] for k in ("client_key", "ca_key", "ca_cert",
                                                          "client_cert"))
SECRETS = EXAMPLE_SECRETS + (CLIENT_KEY.strip(), CA_KEY.strip())
LB_PEM = "-----BEGIN CERTIFICATE-----\nLB CERT AND KEY\n-----END PRIVATE KEY-----\n"


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def done(stdout="", stderr="", retcode=0):
    return {"retcode": retcode, "stdout": stdout, "stderr": stderr, "pid": 4242}


def assert_no_secret(text):
    for secret in SECRETS:
        assert secret not in str(text)


@pytest.fixture
def pillar():
    """pillar.example, with a database client certificate and key."""
    data = example_pillar()
    data["clusters"]["prod"]["database"].update(ca_cert=DB_CA, ca_key=CA_KEY,
                                                client_cert=CLIENT_CERT, client_key=CLIENT_KEY)
    return data


class MaskedDict(dict):
    """What Salt 3008 loads pillar as: plain values inside, every string hidden in its repr."""

    def __repr__(self):
        return "{'**********'}"


class MaskedList(list):
    def __repr__(self):
        return "['**********']"


def masked(value):
    if isinstance(value, dict):
        return MaskedDict({k: masked(v) for k, v in value.items()})
    if isinstance(value, list):
        return MaskedList(masked(v) for v in value)
    return value


@pytest.fixture
def salt(pillar):
    # no pillar.get: it masks its answer on 3008 (outside templates) and has no unmask before;
    # pillar.items is a fresh pillar from the master (the same pillar here)
    return {"pkg.version": MagicMock(return_value="4.6.0-ga"),
            "cmd.run_all": MagicMock(return_value=done()),
            "pillar.items": MagicMock(side_effect=lambda unmask=None: {"cloudify_ha": pillar})}


@pytest.fixture
def configure_loader_modules(salt, pillar):
    return {MODULE: {"__salt__": salt, "__opts__": {"id": MINION, "test": False},
                     "__utils__": UTILS, "__pillar__": {"cloudify_ha": pillar}}}


@pytest.fixture(autouse=True)
def host(tmp_path, monkeypatch):
    """The manager host's files under tmp_path; every command is installed in /usr/bin."""
    paths = SimpleNamespace(
        config=tmp_path / "etc/cloudify/config.yaml", install=tmp_path / "etc/cloudify/.install",
        cluster=tmp_path / "etc/cloudify/cluster", certs=tmp_path / "etc/cloudify_ha",
        log=tmp_path / "var/log/cfy_manager.log", resources=tmp_path / "opt/manager/resources",
        profiles=tmp_path / "root/.cloudify/profiles")
    for constant, path in (("CONFIG_PATH", paths.config), ("INSTALL_MARKER", paths.install),
                           ("CLUSTER_MARKER", paths.cluster), ("CERT_DIR", paths.certs),
                           ("INSTALL_LOG", paths.log), ("RESOURCES", paths.resources),
                           ("PROFILES_DIR", paths.profiles),
                           ("CLI_LOG", paths.profiles.parent / "logs/cli.log")):
        monkeypatch.setattr(MODULE, constant, str(path))
    monkeypatch.setattr("salt.utils.path.which", lambda name: f"/usr/bin/{name}")
    return paths


class FakeManagers:
    """The REST client's `request` for a set of managers: host -> "active", an exception, or a
    callable(method, path) giving the answer. Records every call."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __call__(self, endpoint, method, path, body=None, timeout=None, retries=None):
        self.calls.append(SimpleNamespace(endpoint=endpoint, method=method, path=path,
                                          retries=retries))
        answer = self.answers.get(endpoint.host, REST.Unreachable(f"{endpoint.host}: refused"))
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            return answer(method, path)
        return {"status": "running"}


@pytest.fixture
def managers(monkeypatch):
    """Install a FakeManagers as the REST client's request: managers({host: answer})."""
    def install(answers):
        fake = FakeManagers(answers)
        monkeypatch.setattr(REST, "request", fake)
        return fake
    return install


REPLICA = REST.RestError(400, "not_cluster_master", "not the active node")
STARTING = REST.RestError(502, "", "Bad Gateway")


class FakeClock:
    """The module's `time`: sleeping advances the clock at once and runs what a test scheduled
    for that moment (at(seconds, action))."""

    def __init__(self):
        self.now, self.slept, self.due = 1000.0, 0.0, []

    def monotonic(self):
        return self.now

    def time(self):
        return self.now

    def at(self, seconds, action):
        self.due.append((self.now + seconds, action))

    def sleep(self, seconds):
        self.now += seconds
        self.slept += seconds
        for when, action in [d for d in self.due if d[0] <= self.now]:
            self.due.remove((when, action))
            action()


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(MODULE, "time", fake)
    return fake


# ---- commands ---------------------------------------------------------------------------------
COMMANDS = {
    "install": (lambda: MODULE.install(), ["/usr/bin/cfy_manager", "install"]),
    "join": (lambda: MODULE.join("10.0.0.11", "10.0.0.5"), ["/usr/bin/cfy_manager", "install"]),
    "remove_manager": (lambda: MODULE.remove_manager(),
                       ["/usr/bin/cfy_manager", "remove", "-f"]),
    "start_cluster": (lambda: MODULE.start_cluster("cfy-mgr2", "10.0.0.12"),
                      ["/usr/bin/cfy", "cluster", "start", "--cluster-node-name", "cfy-mgr2",
                       "--cluster-host-ip", "10.0.0.12", "--timeout", "900"]),
    "use_profile": (lambda: MODULE.use_profile("prod", "10.0.0.11", cluster="prod"),
                    ["/usr/bin/cfy", "profiles", "use", "10.0.0.11", "--profile-name", "prod",
                     "--skip-credentials-validation"]),
    "update_profile": (lambda: MODULE.update_profile(),
                       ["/usr/bin/cfy", "cluster", "update-profile"]),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_commands_run_without_a_shell_quietly_and_without_secrets(command, salt):
    call, argv = COMMANDS[command]
    call()
    (args, kwargs), = salt["cmd.run_all"].call_args_list
    assert args == (argv,)
    assert_no_secret(args)
    assert (kwargs["python_shell"], kwargs["output_loglevel"]) == (False, "quiet")
    assert_no_secret({k: v for k, v in kwargs.items() if k != "env"})


def test_cluster_start_passes_the_pillars_wait_as_its_timeout_and_runs_a_grace_longer(salt,
                                                                                      pillar):
    """4.6's cfy checks its --timeout only between its 3 s polls, and a poll has no timeout of
    its own: the command is stopped CLUSTER_START_GRACE after its own deadline."""
    pillar["clusters"]["prod"]["waits"]["cluster_start"] = 600
    MODULE.start_cluster("cfy-mgr2", "10.0.0.12")
    (args, kwargs), = salt["cmd.run_all"].call_args_list
    assert args[0][-2:] == ["--timeout", "600"]
    assert kwargs["timeout"] == 600 + MODULE.CLUSTER_START_GRACE > 600


def test_cluster_start_refuses_a_pillar_wait_out_of_bounds_before_running(salt, pillar):
    pillar["clusters"]["prod"]["waits"]["cluster_start"] = 10
    with pytest.raises(SaltInvocationError, match=re.escape(
            "cloudify_ha:clusters:prod:waits:cluster_start: 10 must be a whole number of seconds "
            "from 60 to 86400")):
        MODULE.start_cluster("cfy-mgr2", "10.0.0.12")
    salt["cmd.run_all"].assert_not_called()


def test_install_runs_under_the_pillars_install_wait(salt, host, pillar):
    pillar["clusters"]["prod"]["waits"]["install"] = 2400
    MODULE.install()
    assert [c.kwargs["timeout"] for c in salt["cmd.run_all"].call_args_list
            if c.args[0][:2] == ["/usr/bin/cfy_manager", "install"]] == [2400]


CREDENTIALS = {"CLOUDIFY_USERNAME": "admin", "CLOUDIFY_PASSWORD": ADMIN_PW,
               "CLOUDIFY_TENANT": "default_tenant"}


@pytest.mark.parametrize("stored, passed", [
    (None, CREDENTIALS),  # no active profile: all from the environment
    ("manager_username: null\nmanager_password: null\nmanager_tenant: null\n", CREDENTIALS),
    # what 4.6's installer leaves on a manager: the profile holds all three, cfy gets none
    (f"manager_username: admin\nmanager_password: {ADMIN_PW}\nmanager_tenant: default_tenant\n",
     {}),
    ("manager_username: !!python/unicode 'admin'\n",
     {k: v for k, v in CREDENTIALS.items() if k != "CLOUDIFY_USERNAME"}),
])
@pytest.mark.parametrize("command", ["start_cluster", "use_profile", "update_profile"])
def test_cfy_gets_from_the_environment_only_what_the_active_profile_lacks(command, stored, passed,
                                                                          salt, host):
    """4.6 refuses every command when a credential is in the active profile AND the environment
    (cloudify-4.6.md section 0.1)."""
    if stored is not None:
        write_profile(host, "localhost", "!CloudifyProfileContext\nmanager_ip: localhost\n" + stored)
        (host.profiles.parent / "active.profile").write_text("localhost")
    COMMANDS[command][0]()
    env = salt["cmd.run_all"].call_args.kwargs["env"]
    assert {k: v for k, v in env.items() if k.startswith("CLOUDIFY_")} == passed


def test_cfy_manager_gets_no_secret_even_in_its_environment(salt):
    MODULE.install()
    assert_no_secret(salt["cmd.run_all"].call_args.kwargs["env"])


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_command_is_given_the_minions_proxy(command, salt):
    """cfy and the installer send the admin's credentials to the managers: a proxy from the
    minion's environment (Salt adds `env` to it) would get them. Empty is no proxy to urllib."""
    COMMANDS[command][0]()
    env = salt["cmd.run_all"].call_args.kwargs["env"]
    assert {k: env[k] for k in env if k.lower().endswith("_proxy")} == {
        "http_proxy": "", "https_proxy": "", "all_proxy": "", "HTTP_PROXY": "",
        "HTTPS_PROXY": "", "ALL_PROXY": ""}


def test_command_output_is_scrubbed(salt):
    salt["cmd.run_all"].return_value = done(stdout=f"using {ADMIN_PW}\nProfile is up to date")
    assert MODULE.update_profile() == {"retcode": 0,
                                       "output": "using ******\nProfile is up to date"}


def test_a_missing_command_is_an_error_and_runs_nothing(salt, monkeypatch):
    monkeypatch.setattr("salt.utils.path.which", lambda name: None)
    with pytest.raises(CommandExecutionError, match="'cfy' is not installed on this minion"):
        MODULE.update_profile()
    salt["cmd.run_all"].assert_not_called()


def test_a_failed_cfy_command_says_why_without_secrets(salt):
    salt["cmd.run_all"].return_value = done(stderr=f"An error occurred on the server: bad "
                                                   f"password {ADMIN_PW}", retcode=1)
    with pytest.raises(CommandExecutionError) as raised:
        MODULE.start_cluster("cfy-mgr2", "10.0.0.12")
    assert str(raised.value) == ("cfy cluster start failed (exit 1): An error occurred on the "
                                 "server: bad password ******")


# ---- install / join ------------------------------------------------------------------------------
def config_seen_by_cfy_manager(salt, host, rewrite_mode=0o644):
    """Make cmd.run_all record config.yaml (content, mode) as cfy_manager finds it, then rewrite
    it the way 4.6 does (with the umask's mode)."""
    seen = {}

    def run_all(argv, **kwargs):
        seen["mode"] = mode_of(host.config)
        seen["config"] = yaml.safe_load(host.config.read_text())
        os.chmod(host.config, rewrite_mode)
        return done(stdout="Installation finished successfully!")
    salt["cmd.run_all"].side_effect = run_all
    return seen


def test_join_writes_the_join_settings_to_a_private_config(salt, host):
    seen = config_seen_by_cfy_manager(salt, host)
    assert MODULE.join("10.0.0.11", "10.0.0.55") == {
        "retcode": 0, "output": "Installation finished successfully!"}
    config = seen["config"]
    assert seen["mode"] == 0o600
    assert config["cluster"] == {"master_ip": "10.0.0.11", "node_name": "cfy-mgr2",
                                 "host_ip": "10.0.0.12"}
    # the database the state passes (the pillar's: the state checks any reported one)
    assert config["postgresql_client"] == {"host": "10.0.0.55", "db_name": "cloudify_db",
                                           "username": "cloudify", "password": DB_PW,
                                           "postgres_password": POSTGRES_PW, "ssl_enabled": True}
    assert config["manager"] == {"private_ip": "10.0.0.12", "public_ip": "192.0.2.12",
                                 "security": {"ssl_enabled": False, "admin_username": "admin",
                                              "admin_password": ADMIN_PW}}
    assert config["services_to_install"] == ["queue_service", "composer_service",
                                             "manager_service"]
    assert mode_of(host.config) == 0o600  # again, after cfy_manager rewrote it


@pytest.mark.parametrize("retcode", [0, 1])
def test_install_keeps_46s_leaky_logs_private_and_takes_the_secrets_out(salt, host, retcode):
    """cloudify-4.6.md section 0.4: 4.6 logs create_default_db.sh's `Running: [...]` line, the
    database password in it, into cfy_manager.log, and cfy logs `Setting password to <pw>` into
    cli.log, both created 0644 by Python's logging, which appends to a log that exists and keeps
    its mode. Both exist 0600 before the installer runs; after it, succeeded or failed, both are
    0600 and hold no secret in any form, every other line kept."""
    cli_log, install_log = host.profiles.parent / "logs/cli.log", host.log
    install_log.parent.mkdir(parents=True)
    install_log.write_text("an earlier run's line\n")
    install_log.chmod(0o644)
    basic = base64.b64encode(f"admin:{ADMIN_PW}".encode()).decode()
    leaks = {install_log: [
        f"[UTILS] - DEBUG - Running: ['sudo', 'su', '-', 'postgres', '-c', '/tmp/tmpx "
        f"cloudify_db cloudify {DB_PW} 10.0.0.5']",
        f"[MAIN] - ERROR - ProcessExecutionError: Failed running command: cfy profiles set -u "
        f"admin -p {ADMIN_PW} -t default_tenant ().",
        f"a JSON body {json.dumps({'password': POSTGRES_PW})}",
        f"a URL postgres://cloudify:{urllib.parse.quote(DB_PW, safe='')}@10.0.0.5/stage",
        f"an Authorization: Basic {basic}"],
        cli_log: [f"[INFO] Setting password to `{ADMIN_PW}`"]}
    seen = {}

    def installer(*_args, **_kwargs):
        for path, lines in leaks.items():
            seen[path.name] = mode_of(path)
            with open(path, "a", encoding="utf-8") as fh:  # as logging.FileHandler opens it
                fh.write("".join(f"{line}\nkept line {index}\n" for index, line in
                                 enumerate(lines)))
        return done(retcode=retcode, stdout="ok")
    salt["cmd.run_all"].side_effect = installer
    if retcode:
        with pytest.raises(CommandExecutionError):
            MODULE.install()
    else:
        MODULE.install()
    assert seen == {"cfy_manager.log": 0o600, "cli.log": 0o600}
    for path, lines in leaks.items():
        text = path.read_text()
        assert mode_of(path) == 0o600
        for secret in (ADMIN_PW, DB_PW, POSTGRES_PW, basic, json.dumps(POSTGRES_PW)[1:-1]):
            assert secret not in text, (path, secret)
        assert [line for line in text.splitlines() if line.startswith("kept line")] == [
            f"kept line {index}" for index in range(len(lines))]
        assert text.count("******") == len(lines), text
    assert install_log.read_text().startswith("an earlier run's line\n")


def test_install_is_a_non_join_install_on_the_pillars_database(salt, host):
    seen = config_seen_by_cfy_manager(salt, host)
    MODULE.install()
    assert "cluster" not in seen["config"]
    assert seen["config"]["postgresql_client"]["host"] == "10.0.0.5"


def test_install_writes_the_database_certificates_from_pillar(salt, host):
    seen = config_seen_by_cfy_manager(salt, host)
    MODULE.install()
    inputs = seen["config"]["ssl_inputs"]
    # what 4.6's validations accept: the CA with its key (cloudify-4.6.md section 0.2)
    assert inputs == {"ca_cert_path": str(host.certs / "prod/db-ca.pem"),
                      "ca_key_path": str(host.certs / "prod/db-ca.key"),
                      "postgresql_client_cert_path": str(host.certs / "prod/db-client.pem"),
                      "postgresql_client_key_path": str(host.certs / "prod/db-client.key")}
    assert (host.certs / "prod/db-ca.pem").read_text() == DB_CA
    assert (host.certs / "prod/db-ca.key").read_text() == CA_KEY
    assert (host.certs / "prod/db-client.key").read_text() == CLIENT_KEY
    assert {k: mode_of(v) for k, v in inputs.items()} == {
        "ca_cert_path": 0o644, "ca_key_path": 0o600, "postgresql_client_cert_path": 0o644,
        "postgresql_client_key_path": 0o600}


INSTALL_LOG = """\
2019-06-01 10:00:00 INFO - Installing Cloudify Manager
2019-06-01 10:00:05 ERROR - an old failure of an earlier run
2019-06-01 11:00:00 INFO - Installing Cloudify Manager
2019-06-01 11:00:01 INFO - Master ip found, joining to cluster with 10.0.0.11 as master
2019-06-01 11:00:02 ERROR - 401: Master and replica nodes must have the same admin password \
(CHANGE-ME-admin-password)
2019-06-01 11:00:03 INFO - Installation failed
"""


def test_a_failed_install_shows_the_relevant_log_lines_without_secrets(salt, host):
    host.log.parent.mkdir(parents=True)
    host.log.write_text(INSTALL_LOG)
    salt["cmd.run_all"].return_value = done(
        stderr=f"NetworkError: REST service returned an unexpected response: 401 {DB_PW}",
        retcode=1)
    with pytest.raises(CommandExecutionError) as raised:
        MODULE.join("10.0.0.11", "10.0.0.5")
    message = str(raised.value)
    assert message.startswith("cfy_manager install failed (exit 1): NetworkError: REST service "
                              "returned an unexpected response: 401 ******\n")
    assert ("ERROR - 401: Master and replica nodes must have the same admin password (******)"
            in message)
    assert "Installation failed" in message
    assert "an old failure of an earlier run" not in message
    assert_no_secret(message)
    assert mode_of(host.config) == 0o600


# a password with what each encoding changes: a space, both quotes, a slash, '+', '%', '&'
SPECIAL_PW = "Adm1n pw'with\"quotes/+%&"


def forms_of(user, password):
    """The forms a secret takes where 4.6 and its libraries print it."""
    return {
        "json": json.dumps(password)[1:-1],
        "yaml double-quoted": yaml.safe_dump(password, default_style='"').strip()[1:-1],
        "yaml single-quoted": password.replace("'", "''"),
        "url %20": urllib.parse.quote(password, safe=""),
        "url +": urllib.parse.quote_plus(password, safe=""),
        "url lower-case hex": re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(),
                                     urllib.parse.quote(password, safe="")),
        "basic base64": base64.b64encode(f"{user}:{password}".encode()).decode(),
    }


FORMS = [(who, form) for who in ("admin", "database") for form in forms_of("u", "p")]


@pytest.mark.parametrize("who, form", FORMS, ids=[f"{w}-{f}" for w, f in FORMS])
def test_every_form_of_a_secret_in_an_installer_error_is_scrubbed_from_the_state_comment(
        salt, host, pillar, who, form, tmp_path):
    """A failed install's console and log lines reach the state's comment (and so the job
    cache): a password there is hidden whichever way it was escaped or encoded."""
    user = "admin" if who == "admin" else "cloudify"
    section = pillar["clusters"]["prod"]["admin" if who == "admin" else "database"]
    section["password"] = SPECIAL_PW
    shown = forms_of(user, SPECIAL_PW)[form]
    assert shown != SPECIAL_PW or form == "yaml single-quoted" and "'" not in SPECIAL_PW
    host.log.parent.mkdir(parents=True)
    host.log.write_text("2019-06-01 11:00:00 INFO - Installing Cloudify Manager\n"
                        f"2019-06-01 11:00:02 ERROR - config: {{password: \"{shown}\"}}\n")
    salt["cmd.run_all"].return_value = done(
        stdout=f"Authorization: Basic {shown}\nERROR - postgresql://{user}:{shown}@10.0.0.5/x",
        retcode=1)
    states = state_module()
    fakes = {"cloudify_ha.node_state": lambda cluster=None: "package_installed",
             "cloudify_ha.active_node": lambda cluster=None, required=True: None,
             "cloudify_ha.database_holds_data": lambda cluster=None: {
                 "holds_data": False, "databases": [], "name": "cloudify_db", "tables": 0,
                 "data": {}, "rows": {}, "host": "10.0.0.5:5432"},
             "cloudify_ha.install": MODULE.install}
    with patch.object(states, "__salt__", fakes, create=True), \
            patch.object(states, "__opts__", {"test": False, "cachedir": str(tmp_path)},
                         create=True), \
            patch.object(states, "__context__", {}, create=True), \
            patch.object(states, "__utils__", {"cloudify_ha_files.open_private":
                                               files_util().open_private}, create=True), \
            patch.object(states, "__pillar__", {}, create=True):
        ret = states.manager_installed(name="cfy-mgr2", cluster="prod")
    assert (ret["result"], ret["changes"]) == (False, {})
    comment = ret["comment"]
    assert comment.startswith("cfy-mgr2: cfy_manager install failed (exit 1): Authorization: "
                              "Basic ******\nERROR - postgresql://"), comment
    assert "ERROR - config: {password: \"******\"}" in comment, comment
    assert shown not in comment and SPECIAL_PW not in comment
    assert_no_secret(comment)


def test_a_validation_error_shows_only_this_runs_lines(salt, host):
    # 4.6 validates after 'Installing desired components...' and before its first component
    host.log.parent.mkdir(parents=True)
    host.log.write_text(INSTALL_LOG + (
        "2019-06-01 12:00:00,001 - [MAIN] - NOTICE - Installing desired components...\n"
        "2019-06-01 12:00:01,002 - [MAIN] - ERROR - ValidationError: If ca_cert_path was "
        "provided, but ca_key_path was not provided, ...\n"))
    salt["cmd.run_all"].return_value = done(retcode=1)
    with pytest.raises(CommandExecutionError) as raised:
        MODULE.install()
    log_part = str(raised.value).split("(relevant lines) ---\n", 1)[1]
    assert "ValidationError: If ca_cert_path" in log_part
    assert "Master and replica" not in log_part and "Installation failed" not in log_part


def test_the_installers_coloured_console_is_shown_plain_and_without_secrets(salt, host):
    # 4.6's ColoredFormatter, on stdout; the console also shows `Admin password: <pw>`
    coloured = ("2019-06-01 12:00:00,001 - \x1b[1;34m[MAIN]\x1b[0m - \x1b[1;31mERROR\x1b[0m - "
                "\x1b[0;31mProcessExecutionError: Failed to install nginx\x1b[0m\n")
    salt["cmd.run_all"].return_value = done(
        stdout=f"\x1b[0;33mAdmin password: {ADMIN_PW}\x1b[0m\n" + coloured, retcode=1)
    with pytest.raises(CommandExecutionError) as raised:
        MODULE.install()
    message = str(raised.value)
    assert message.startswith(
        "cfy_manager install failed (exit 1): Admin password: ******\n2019-06-01 12:00:00,001 - "
        "[MAIN] - ERROR - ProcessExecutionError: Failed to install nginx\n"), message
    assert "\x1b" not in message
    assert_no_secret(message)


def test_the_log_tail_keeps_an_early_error_and_the_very_end(salt, host):
    # 4.6 logs the real cause once, then many lines of teardown before it exits
    host.log.parent.mkdir(parents=True)
    host.log.write_text("\n".join(
        ["t INFO - Installing Cloudify Manager", "t ERROR - Failed adding node: 400"]
        + [f"t INFO - teardown {i}" for i in range(40)]))
    salt["cmd.run_all"].return_value = done(retcode=1)
    with pytest.raises(CommandExecutionError) as raised:
        MODULE.install()
    log_part = str(raised.value).split("(relevant lines) ---\n", 1)[1].splitlines()
    assert log_part == (["t ERROR - Failed adding node: 400"]
                        + [f"t INFO - teardown {i}" for i in range(16, 40)])


def test_a_failed_install_without_a_log(salt):
    salt["cmd.run_all"].return_value = done(stdout="Boom", retcode=2)
    with pytest.raises(CommandExecutionError, match=r"exit 2\): Boom\n.*\n\(no installer log\)"):
        MODULE.install()


# ---- _write_private ---------------------------------------------------------------------------
def test_write_private_creates_a_0600_file_and_its_private_directory(tmp_path):
    path = tmp_path / "new/dir/secret.yaml"
    assert MODULE._write_private(str(path), "password: x\n") is True
    assert (path.read_text(), mode_of(path), mode_of(path.parent)) == (
        "password: x\n", 0o600, 0o700)


def test_write_private_leaves_an_identical_file_alone(tmp_path):
    path = tmp_path / "secret.yaml"
    MODULE._write_private(str(path), "a")
    inode = os.stat(path).st_ino
    assert MODULE._write_private(str(path), "a") is False
    assert os.stat(path).st_ino == inode


def test_write_private_fixes_the_mode_of_an_identical_file(tmp_path):
    path = tmp_path / "secret.yaml"
    path.write_text("a")
    path.chmod(0o644)
    assert MODULE._write_private(str(path), "a") is True
    assert mode_of(path) == 0o600


def test_write_private_with_another_mode(tmp_path):
    path = tmp_path / "ca.pem"
    MODULE._write_private(str(path), "PEM", 0o644)
    assert mode_of(path) == 0o644


def test_write_private_replaces_atomically_a_file_already_private(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    path.write_text("old")
    real_replace, seen = os.replace, {}

    def replace(src, dst):
        seen.update(src_mode=mode_of(src), src=open(src).read(), dst=open(dst).read())
        real_replace(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    MODULE._write_private(str(path), "new")
    assert seen == {"src_mode": 0o600, "src": "new", "dst": "old"}
    assert path.read_text() == "new"


def test_write_private_failure_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    path.write_text("old")

    def replace(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="disk full"):
        MODULE._write_private(str(path), "new")
    assert (path.read_text(), sorted(os.listdir(tmp_path))) == ("old", ["config.yaml"])


# ---- profiles ---------------------------------------------------------------------------------
PROFILE = """\
!CloudifyProfileContext
_cluster:
- manager_ip: 10.0.0.13
  name: cfy-mgr3
  rest_port: 80
- manager_ip: 10.0.0.11
  name: cfy-mgr1
  rest_port: 80
manager_ip: 10.0.0.13
manager_password: CHANGE-ME-admin-password
manager_tenant: default_tenant
"""


def write_profile(host, name, text, mode=0o644):
    path = host.profiles / name / "context"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("active, first", [("10.0.0.11", "cfy-mgr1"), ("10.0.0.13", None)])
def test_update_profile_puts_the_active_node_first_before_cfy_walks_it(salt, host, managers,
                                                                        active, first):
    """4.6's cfy stops at a first entry answering 502 (a node in its boot window): the active
    node goes first, then update-profile runs; a profile already in that order is not written."""
    path = write_profile(host, "prod", PROFILE, 0o600)
    (host.profiles.parent / "active.profile").write_text("prod\n")
    before = path.read_text()
    managers({active: "active", "10.0.0.12": REPLICA})
    answer = MODULE.update_profile(cluster="prod")
    assert answer.get("first") == first
    order = [e["name"] for e in MODULE.profile_cluster("prod")]
    assert order == (["cfy-mgr1", "cfy-mgr3"] if first else ["cfy-mgr3", "cfy-mgr1"])
    assert (path.read_text() == before) is (first is None)
    (args, _), = salt["cmd.run_all"].call_args_list
    assert args[0] == ["/usr/bin/cfy", "cluster", "update-profile"]


def test_profile_nodes_reads_a_tagged_profile(host):
    write_profile(host, "prod", PROFILE)
    assert MODULE.profile_nodes("prod") == ["cfy-mgr1", "cfy-mgr3"]
    assert MODULE.profile_cluster("prod") == [{"name": "cfy-mgr3", "manager_ip": "10.0.0.13"},
                                              {"name": "cfy-mgr1", "manager_ip": "10.0.0.11"}]


def test_profile_cluster_reads_what_the_real_cfy_46_wrote(host):
    """A profile written by cloudify-cli 4.6 (PyYAML 3.10 on Python 2: !!python/unicode tags,
    flow-style nodes), captured from the real CLI after `cluster start` and `update-profile`."""
    write_profile(host, "localhost", (DATA / "leader_localhost_context_real46.yaml").read_text())
    assert MODULE.profile_cluster() == [{"name": "mgr1", "manager_ip": "localhost"},
                                        {"name": "mgr2", "manager_ip": "192.0.2.12"},
                                        {"name": "mgr3", "manager_ip": "10.0.0.13"}]
    assert MODULE.profile_nodes() == ["mgr1", "mgr2", "mgr3"]


def test_profile_nodes_of_a_profile_without_a_cluster(host):
    write_profile(host, "localhost", "!CloudifyProfileContext\nmanager_ip: 10.0.0.12\n")
    assert MODULE.profile_nodes() == []


def test_set_profile_cluster_writes_the_nodes_privately_and_keeps_what_it_knows(host):
    path = write_profile(host, "localhost",
                         (DATA / "leader_localhost_context_real46.yaml").read_text(), 0o644)
    nodes = [{"name": "mgr2", "manager_ip": "192.0.2.12"},
             {"name": "mgr1", "manager_ip": "localhost"}]
    assert MODULE.set_profile_cluster("localhost", nodes) is True
    assert mode_of(path) == 0o600
    assert MODULE.profile_cluster() == nodes
    text = path.read_text()
    assert text.startswith("!CloudifyProfileContext\n")
    # the start node's entry keeps its certificate; the other keys of the profile stay
    assert "public_rest_cert.crt_localhost" in text and "manager_password: S3cretAdm1n" in text
    assert MODULE.set_profile_cluster("localhost", nodes) is False


def test_public_addresses_are_the_pillars_by_node_name():
    assert MODULE.public_addresses(cluster="prod") == {
        "cfy-mgr1": "192.0.2.11", "cfy-mgr2": "192.0.2.12", "cfy-mgr3": "192.0.2.13"}


def test_set_profile_cluster_of_a_missing_profile_is_an_error():
    with pytest.raises(CommandExecutionError, match="cfy profile prod does not exist"):
        MODULE.set_profile_cluster("prod", [])


def test_profile_nodes_of_a_missing_profile():
    assert (MODULE.profile_nodes("prod"), MODULE.profile_mode("prod")) == (None, None)


def test_secure_profile_makes_the_profile_private_once(host):
    path = write_profile(host, "prod", PROFILE, 0o644)
    assert MODULE.profile_mode("prod") == "0o644"
    assert MODULE.secure_profile("prod") is True
    assert (mode_of(path), MODULE.profile_mode("prod")) == (0o600, "0o600")
    assert MODULE.secure_profile("prod") is False
    assert MODULE.secure_profile("missing") is False


def test_active_profile(host):
    assert MODULE.active_profile() is None
    (host.profiles.parent).mkdir(parents=True)
    (host.profiles.parent / "active.profile").write_text("prod\n")
    assert MODULE.active_profile() == "prod"


def test_use_profile_with_rest_ssl_passes_the_ca_file(salt, pillar, host):
    pillar["clusters"]["prod"]["rest"] = {"ssl": True, "ca_cert": "REST CA"}
    MODULE.use_profile("prod", "10.0.0.11", cluster="prod")
    argv = salt["cmd.run_all"].call_args.args[0]
    assert argv[-3:] == ["--ssl", "--rest-certificate", str(host.certs / "prod/rest-ca.pem")]
    assert (host.certs / "prod/rest-ca.pem").read_text() == "REST CA"


# ---- active_node --------------------------------------------------------------------------------
def test_active_node_is_the_one_manager_that_answers_200(managers):
    fake = managers({"10.0.0.11": REPLICA, "10.0.0.12": "active", "10.0.0.13": REPLICA})
    assert MODULE.active_node() == {"name": "cfy-mgr2", "host": "10.0.0.12"}
    assert sorted(c.endpoint.host for c in fake.calls) == ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
    assert {(c.method, c.path, c.retries, c.endpoint.username, c.endpoint.password)
            for c in fake.calls} == {("GET", "/status", 0, "admin", ADMIN_PW)}


def test_active_node_without_one_names_every_node_and_its_answer(managers, clock):
    managers({"10.0.0.12": REPLICA, "10.0.0.13": REST.RestError(500, "", "Internal error")})
    with pytest.raises(CommandExecutionError) as raised:
        MODULE.active_node(wait=0)
    assert str(raised.value) == ("no active node in cluster 'prod': cfy-mgr1 (10.0.0.11): "
                                 "unreachable; cfy-mgr2 (10.0.0.12): not_cluster_master; "
                                 "cfy-mgr3 (10.0.0.13): http 500")
    assert clock.slept == 0


# 4.6's failover (cloudify-4.6.md section 0.4): no node answers as the active one for tens of
# seconds while the new one starts its services; replicas answer not_cluster_master meanwhile
def test_active_node_during_a_failover_waits_for_the_new_active_node(managers, clock):
    answers = {"10.0.0.12": REPLICA, "10.0.0.13": REPLICA}
    fake = managers(answers)
    clock.at(40, lambda: answers.update({"10.0.0.13": "active"}))
    found = MODULE.active_node()
    assert (found["name"], found["host"]) == ("cfy-mgr3", "10.0.0.13")
    assert 40 <= clock.slept < 45  # asked again, backing off to 4 s between rounds
    assert found["waited"] == round(clock.slept)
    assert len([c for c in fake.calls if c.endpoint.host == "10.0.0.13"]) > 5


def test_active_node_waits_through_nginxs_502_after_a_boot(managers, clock):
    answers = {"10.0.0.11": STARTING, "10.0.0.12": REPLICA, "10.0.0.13": REPLICA}
    managers(answers)
    clock.at(20, lambda: answers.update({"10.0.0.11": "active"}))
    assert MODULE.active_node()["host"] == "10.0.0.11"
    assert 20 <= clock.slept < 25


def test_active_node_waits_no_longer_than_the_pillars_wait(managers, clock, pillar):
    pillar["clusters"]["prod"]["waits"]["active_node"] = 30
    managers({"10.0.0.12": REPLICA, "10.0.0.13": REPLICA})
    with pytest.raises(CommandExecutionError) as raised:
        MODULE.active_node()
    assert str(raised.value).startswith("no active node in cluster 'prod' (still after waiting "
                                        "30s for a failover): cfy-mgr1 (10.0.0.11): unreachable; "
                                        "cfy-mgr2 (10.0.0.12): not_cluster_master")
    assert clock.slept == pytest.approx(30)


def test_active_node_the_callers_wait_wins_over_the_pillars(managers, clock):
    managers({"10.0.0.12": REPLICA})
    with pytest.raises(CommandExecutionError, match=r"after waiting 7s for a failover"):
        MODULE.active_node(wait=7)
    assert clock.slept == pytest.approx(7)


@pytest.mark.parametrize("answers, error", [
    ({}, "no active node in cluster 'prod': cfy-mgr1 (10.0.0.11): unreachable; cfy-mgr2 "
         "(10.0.0.12): unreachable"),
    ({"10.0.0.12": REST.RestError(500, "", "Internal error")}, "cfy-mgr2 (10.0.0.12): http 500"),
    ({ip: REST.RestError(401, "unauthorized_error", "no") for ip in
      ("10.0.0.11", "10.0.0.12", "10.0.0.13")}, "every manager rejected the admin credentials"),
], ids=["nobody answers", "a server error", "credentials refused"])
def test_active_node_waits_for_no_failover_when_no_manager_answers_as_a_member(managers, clock,
                                                                              answers, error):
    """Only replicas and starting managers mean a failover may be under way: anything else is
    answered at once, whatever waits:active_node says."""
    managers(answers)
    with pytest.raises(CommandExecutionError, match=re.escape(error)):
        MODULE.active_node()
    assert clock.slept == 0


def test_active_node_a_split_brain_is_not_waited_for(managers, clock):
    managers({"10.0.0.11": _manager(True), "10.0.0.12": REPLICA, "10.0.0.13": _manager(True)})
    with pytest.raises(CommandExecutionError, match="split brain"):
        MODULE.active_node()
    assert clock.slept == 0


def test_active_node_not_required_and_nobody_home_is_not_waited_for(managers, clock):
    managers({})
    assert MODULE.active_node(required=False) is None
    assert clock.slept == 0


@pytest.mark.parametrize("wait", [-1, True, "60", [5]])
def test_active_node_refuses_a_wait_that_is_no_number_of_seconds(managers, wait):
    managers({"10.0.0.11": "active"})
    with pytest.raises(SaltInvocationError, match="wait: .* must be a number of seconds, 0 or "
                                                  "more"):
        MODULE.active_node(wait=wait)


@pytest.mark.parametrize("value", [-1, 3601, "60", True, None])
def test_active_node_refuses_a_pillar_wait_out_of_bounds_naming_the_key(managers, pillar, value):
    """The SLS and the orchestration refuse such a pillar first; a call by hand gets this."""
    pillar["clusters"]["prod"]["waits"]["active_node"] = value
    managers({"10.0.0.11": "active"})
    with pytest.raises(SaltInvocationError, match=re.escape(
            f"cloudify_ha:clusters:prod:waits:active_node: {value!r} must be a whole number of "
            "seconds from 0 to 3600: how long the formula waits for a new active node")):
        MODULE.active_node()


def test_active_node_while_nginx_answers_502_says_the_manager_is_starting(managers):
    managers({"10.0.0.11": REST.RestError(502, "", "Bad Gateway"), "10.0.0.12": REPLICA,
              "10.0.0.13": REPLICA})
    with pytest.raises(CommandExecutionError, match=r"cfy-mgr1 \(10.0.0.11\): starting \(nginx "
                                                    r"answers 502 while the REST service starts\)"):
        MODULE.active_node()


def _manager(initialized):
    """A manager answering /status 200, and /cluster as a clustered or a standalone one."""
    return lambda method, path: ({"initialized": initialized} if path == "/cluster"
                                 else {"status": "running"})


def test_active_node_reports_a_split_brain_naming_both(managers):
    """4.6's active minority mode: two clustered nodes answer as active; nothing is picked."""
    managers({"10.0.0.11": _manager(True), "10.0.0.12": REPLICA, "10.0.0.13": _manager(True)})
    with pytest.raises(CommandExecutionError) as raised:
        MODULE.active_node()
    assert str(raised.value).startswith("split brain in cluster 'prod': cfy-mgr1 (10.0.0.11) and "
                                        "cfy-mgr3 (10.0.0.13) both answer as the active node")
    assert "nothing was changed" in str(raised.value)


def test_active_node_a_standalone_manager_beside_the_cluster_is_not_the_active_node(managers):
    """A join that failed part-way leaves a standalone manager answering /status 200."""
    fake = managers({"10.0.0.11": _manager(True), "10.0.0.12": _manager(False),
                     "10.0.0.13": REPLICA})
    assert MODULE.active_node() == {"name": "cfy-mgr1", "host": "10.0.0.11"}
    assert sorted(c.endpoint.host for c in fake.calls if c.path == "/cluster") == [
        "10.0.0.11", "10.0.0.12"]


def test_active_node_reads_no_loader_dunder_in_its_worker_threads(managers, monkeypatch):
    """On a minion, __utils__ is None in a thread the loader did not start (measured: a
    TypeError in the lab): every endpoint is built before the polls fan out."""
    real = MODULE._util

    def main_thread_only(name):
        assert threading.current_thread() is threading.main_thread(), name
        return real(name)
    monkeypatch.setattr(MODULE, "_util", main_thread_only)
    managers({"10.0.0.11": _manager(True), "10.0.0.12": _manager(False), "10.0.0.13": REPLICA})
    assert MODULE.active_node() == {"name": "cfy-mgr1", "host": "10.0.0.11"}


def test_active_node_two_standalone_managers_are_named_not_a_split_brain(managers):
    managers({"10.0.0.11": _manager(False), "10.0.0.12": _manager(False), "10.0.0.13": REPLICA})
    with pytest.raises(CommandExecutionError, match=r"no cluster runs in 'prod' but cfy-mgr1 "
                       r"\(10.0.0.11\) and cfy-mgr2 \(10.0.0.12\) answer as standalone"):
        MODULE.active_node()


def test_active_node_one_answer_needs_no_cluster_read(managers):
    fake = managers({"10.0.0.11": "active", "10.0.0.12": REPLICA})
    assert MODULE.active_node()["host"] == "10.0.0.11"
    assert [c for c in fake.calls if c.path == "/cluster"] == []


def test_active_node_not_required_and_nobody_home(managers):
    managers({})
    assert MODULE.active_node(required=False) is None


def test_active_node_not_required_is_still_an_error_when_replicas_answer(managers):
    managers({"10.0.0.12": REPLICA})
    with pytest.raises(CommandExecutionError, match="no active node in cluster 'prod'"):
        MODULE.active_node(required=False)


def test_active_node_when_every_manager_rejects_the_credentials(managers):
    unauthorized = REST.RestError(401, "unauthorized_error", "bad credentials")
    managers({ip: unauthorized for ip in ("10.0.0.11", "10.0.0.12", "10.0.0.13")})
    with pytest.raises(CommandExecutionError, match="every manager rejected the admin credentials "
                                                    r"\(401\): check cloudify_ha:clusters:prod"):
        MODULE.active_node()


def test_active_node_asks_only_the_candidates(managers):
    fake = managers({"10.0.0.13": "active", "10.9.9.9": REPLICA})
    assert MODULE.active_node(candidates=["10.0.0.13", "10.9.9.9"]) == {"name": "cfy-mgr3",
                                                                        "host": "10.0.0.13"}
    assert sorted(c.endpoint.host for c in fake.calls) == ["10.0.0.13", "10.9.9.9"]


def test_active_node_of_the_others_leaves_this_hosts_own_answer_out(managers):
    """A host whose install failed after its nginx step answers 502 itself
    (cloudify-4.6.md section 0.4): `others` asks every manager but this one (cfy-mgr2)."""
    fake = managers({"10.0.0.12": REST.RestError(502, "", "Bad Gateway")})
    with pytest.raises(CommandExecutionError, match="cfy-mgr2 .10.0.0.12.: starting"):
        MODULE.active_node(required=False)
    fake.calls.clear()
    assert MODULE.active_node(required=False, others=True) is None
    assert sorted(c.endpoint.host for c in fake.calls) == ["10.0.0.11", "10.0.0.13"]
    managers({"10.0.0.12": REST.RestError(502, "", "Bad Gateway"), "10.0.0.13": "active"})
    assert MODULE.active_node(others=True) == {"name": "cfy-mgr3", "host": "10.0.0.13"}


def test_active_node_from_a_host_outside_the_cluster(managers, configure_loader_modules):
    configure_loader_modules[MODULE]["__opts__"]["id"] = "admin1.example.com"
    managers({"10.0.0.11": "active"})
    assert MODULE.active_node(cluster="prod") == {"name": "cfy-mgr1", "host": "10.0.0.11"}
    with pytest.raises(SaltInvocationError, match="no cluster in pillar cloudify_ha:clusters lists "
                                                  "minion 'admin1.example.com' as a manager"):
        MODULE.active_node()


# ---- node_state ---------------------------------------------------------------------------------
@pytest.mark.parametrize("local_answer, expected", [
    ("active", "leader"),
    (REPLICA, "replica"),
    (REST.RestError(400, "removed_from_cluster", "removed"), "removed"),
    (REST.Unreachable("refused"), "down"),
    (REST.RestError(502, "", "Bad Gateway"), "down"),  # nginx, while the REST service starts
    (REST.RestError(504, "", "Gateway Time-out"), "down"),
])
def test_node_state_of_a_clustered_manager_from_its_rest_answer(local_answer, expected, host,
                                                                 managers):
    for marker in (host.install, host.cluster):
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    fake = managers({"10.0.0.12": local_answer})
    assert MODULE.node_state() == expected
    assert [c.endpoint.host for c in fake.calls] == ["10.0.0.12"]


def test_node_state_from_the_local_markers(salt, host, managers):
    fake = managers({})
    salt["pkg.version"].return_value = ""
    assert MODULE.node_state() == "absent"
    salt["pkg.version"].assert_called_with("cloudify-manager-install")
    assert fake.calls == []
    salt["pkg.version"].return_value = "4.6.0-ga"
    assert MODULE.node_state() == "package_installed"  # nothing answers on its address
    assert [(c.endpoint.host, c.path, c.retries) for c in fake.calls] == [
        ("10.0.0.12", "/status", 0)]
    host.install.parent.mkdir(parents=True)
    host.install.touch()
    fake.calls.clear()
    managers({"10.0.0.12": "active"})
    assert MODULE.node_state() == "installed"
    assert fake.calls == []


@pytest.mark.parametrize("answer", ["active", REST.RestError(502, None, "Bad Gateway"),
                                    REST.RestError(401, "unauthorized_error", "no"),
                                    REST.RestError(500, "internal_server_error", "boom")])
def test_node_state_half_installed_when_services_answer_without_install_marker(salt, host,
                                                                                 managers, answer):
    """4.6 leaves a failed install's services running without /etc/cloudify/.install
    (cloudify-4.6.md section 0.2): any answer on the manager's own address says so."""
    managers({"10.0.0.12": answer})
    salt["pkg.version"].return_value = "4.6.0-ga"
    assert MODULE.node_state() == "half_installed"


def test_resources_counts_a_users_files_not_the_packages_own(host):
    """The RPMs put the agent packages under /opt/manager/resources before any join."""
    for rel in ("packages/agents/centos-core-agent.tar.gz", "cloudify/types/types.yaml"):
        (host.resources / rel).parent.mkdir(parents=True, exist_ok=True)
        (host.resources / rel).write_text("x")
    assert MODULE.resources() == [] and MODULE.is_empty()
    for rel in ("blueprints/default_tenant/app/blueprint.yaml", "plugins/p/plugin.wgn",
                "uploaded-blueprints/default_tenant/app/app.tar.gz", "snapshots/s/s.zip",
                "deployments/default_tenant/d/x", "tenant-resources/t/f",
                "global-resources/g"):
        (host.resources / rel).parent.mkdir(parents=True, exist_ok=True)
        (host.resources / rel).write_text("x")
    assert len(MODULE.resources()) == 7 and not MODULE.is_empty()
    assert "packages/agents/centos-core-agent.tar.gz" not in MODULE.resources()


def test_node_state_with_wrong_credentials(host, managers):
    for marker in (host.install, host.cluster):
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    managers({"10.0.0.12": REST.RestError(401, "unauthorized_error", "no")})
    with pytest.raises(CommandExecutionError, match=r"rejected the admin credentials \(401\): "
                       "check cloudify_ha:clusters:prod:admin:password"):
        MODULE.node_state()


# ---- the manager's own profile -----------------------------------------------------------------
def _profile_dir(host, name):
    (host.profiles / name).mkdir(parents=True, exist_ok=True)
    (host.profiles / name / "context").write_text("!CloudifyProfileContext {}\n")


@pytest.mark.parametrize("config, made, expected", [
    (None, ["localhost"], "localhost"),                       # the start node
    ({"cluster": {"master_ip": "10.0.0.11"}}, ["10.0.0.11"], "10.0.0.11"),  # a joiner
    ({"cluster": {"master_ip": "10.0.0.11"}}, ["localhost", "10.0.0.11"], "localhost"),
    ({"cluster": {"master_ip": "10.0.0.11"}}, [], "localhost"),  # not made yet: created
    ({"cluster": {"master_ip": "../../etc"}}, ["../../etc"], "localhost"),  # not an address
    ({"cluster": "10.0.0.11"}, ["10.0.0.11"], "localhost"),
    ("not: [yaml", ["10.0.0.11"], "localhost"),
])
def test_own_profile_is_the_one_46s_installer_made(host, config, made, expected):
    """4.6's cli step names a joiner's profile after cluster.master_ip (cli.py _configure)."""
    host.config.parent.mkdir(parents=True, exist_ok=True)
    if config is not None:
        host.config.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    for name in made:
        _profile_dir(host, name)
    assert MODULE.own_profile() == expected


@pytest.mark.parametrize("minion, answers, installed, expected", [
    # not installed yet, the cluster runs: its join goes through the active node
    (MINION, {"10.0.0.13": "active"}, False, "10.0.0.13"),
    # nothing runs yet: the orchestration starts the cluster on the pillar's leader first
    (MINION, {}, False, "10.0.0.11"),
    ("cfy-mgr1.example.com", {}, False, "localhost"),  # the leader starts it: localhost
    (MINION, {"10.0.0.13": "active"}, True, "localhost"),  # installed: no forecast
    # the others cannot tell: the pillar's leader, as before the cluster runs
    (MINION, {"10.0.0.11": REST.RestError(502, "", "Bad Gateway")}, False, "10.0.0.11"),
    (MINION, {"10.0.0.11": REPLICA, "10.0.0.13": REPLICA}, False, "10.0.0.11"),  # a failover
])
def test_own_profile_forecast_names_the_profile_the_install_will_leave(
        minion, answers, installed, expected, host, managers, configure_loader_modules, clock):
    """What test=True names: a joiner's profile after the node it joins through
    (cloudify-4.6.md section 0.1), never `localhost`; a forecast waits for no failover."""
    configure_loader_modules[MODULE]["__opts__"]["id"] = minion
    if installed:
        host.install.parent.mkdir(parents=True, exist_ok=True)
        host.install.touch()
    managers(answers)
    assert MODULE.own_profile(forecast=True) == expected
    assert MODULE.own_profile() == "localhost"  # what exists today
    assert clock.slept == 0


def test_profile_nodes_of_the_own_profile(host):
    host.config.parent.mkdir(parents=True, exist_ok=True)
    host.config.write_text(yaml.safe_dump({"cluster": {"master_ip": "10.0.0.11"}}))
    (host.profiles / "10.0.0.11").mkdir(parents=True)
    (host.profiles / "10.0.0.11" / "context").write_text(
        "!CloudifyProfileContext\n_cluster:\n- {name: !!python/unicode 'm2', manager_ip: "
        "192.0.2.12}\n- {name: m1, manager_ip: 192.0.2.11}\n")
    assert MODULE.profile_nodes(own=True) == ["m1", "m2"]
    assert MODULE.profile_nodes() is None  # no localhost profile on a joiner


# ---- REST reads and writes ----------------------------------------------------------------------
NODES = {"items": [
    {"name": "cfy-mgr1", "host_ip": "10.0.0.11", "master": True, "online": True,
     "initialized": True, "database_ip": "10.0.0.5", "credentials": "secret-ish",
     "checks": {"consul": True}},
    {"name": "cfy-mgr3", "host_ip": "10.0.0.13", "public_ip": "192.0.2.13", "master": False,
     "online": False},
]}


def test_cluster_status_asks_only_for_what_46s_public_client_reads(managers):
    """4.6 answers an unknown `_include` field with 400 no_such_include_field_error; its public
    client's ClusterState reads initialized, logs and error (cloudify-4.6.md section 0.4)."""
    fake = managers({"10.0.0.11": lambda method, path: {"initialized": True}})
    assert MODULE.cluster_status(active="10.0.0.11") == {"initialized": True}
    (call,) = fake.calls
    path, _, query = call.path.partition("?_include=")
    assert path == "/cluster" and set(query.split(",")) <= {"initialized", "logs", "error"}


@pytest.mark.parametrize("answer, expected", [
    # what 4.6 answers on the active node (maintenance_mode.py MaintenanceMode.get)
    ({"status": "activating", "activated_at": "", "requested_by": "admin",
      "remaining_executions": [{"id": "x"}], "activation_requested_at": "t"},
     {"status": "activating", "activated_at": "", "requested_by": "admin"}),
    ({"status": "deactivated", "activated_at": "", "remaining_executions": [],
      "requested_by": "", "activation_requested_at": ""},
     {"status": "deactivated", "activated_at": "", "requested_by": ""}),
    # not the active node, not up, or an answer that is not 4.6's: no say
    (REPLICA, {"status": None}),
    (REST.Unreachable("refused"), {"status": None}),
    (REST.RestError(502, "", "Bad Gateway"), {"status": None}),
    ({"status": "on"}, {"status": None}),
    ("activated", {"status": None}),
])
def test_maintenance_mode_is_the_local_nodes_answer(answer, expected, managers):
    reply = answer if isinstance(answer, BaseException) else (lambda method, path: answer)
    fake = managers({"10.0.0.12": reply})
    assert MODULE.maintenance_mode() == dict(expected, name="cfy-mgr2", host="10.0.0.12")
    assert [(c.endpoint.host, c.method, c.path, c.retries) for c in fake.calls] == [
        ("10.0.0.12", "GET", "/maintenance", 0)]


def test_maintenance_mode_of_a_minion_that_is_no_manager(managers, configure_loader_modules):
    configure_loader_modules[MODULE]["__opts__"]["id"] = "admin1.example.com"
    fake = managers({})
    assert MODULE.maintenance_mode() == {"status": None}
    assert MODULE.maintenance_mode(cluster="prod") == {"status": None}
    assert fake.calls == []


@pytest.mark.parametrize("code", ["maintenance_mode_active", "entering_maintenance_mode"])
def test_a_call_refused_for_maintenance_mode_says_how_to_leave_it(managers, code):
    """4.6 answers 503 to every call but a few while in maintenance mode
    (cloudify-4.6-day2.md section 5.1)."""
    managers({"10.0.0.11": REST.RestError(503, code, "Your request was rejected since "
                                                    "Cloudify manager is currently in "
                                                    "maintenance mode")})
    with pytest.raises(CommandExecutionError) as raised:
        MODULE.cluster_nodes(active="10.0.0.11")
    assert str(raised.value) == (
        f"the manager at 10.0.0.11 is in maintenance mode: GET /cluster/nodes answered 503 "
        f"{code}; nothing was changed. Leave it with 'cfy maintenance-mode deactivate' on the "
        "active node, then re-run")


def test_cluster_nodes_before_the_cluster_exists_are_none(managers):
    """4.6 answers 404 on /cluster/nodes until `cfy cluster start` has run."""
    managers({"10.0.0.11": REST.RestError(404, "not_found_error", "no cluster")})
    assert MODULE.cluster_nodes(active="10.0.0.11") == []


def test_cluster_nodes_are_normalised(managers):
    fake = managers({"10.0.0.11": lambda method, path: NODES})
    assert MODULE.cluster_nodes(active="10.0.0.11") == [
        {"name": "cfy-mgr1", "host_ip": "10.0.0.11", "state": "leader", "public_ip": None,
         "online": True, "master": True, "initialized": True, "database_ip": "10.0.0.5",
         "checks": {"consul": True}},
        {"name": "cfy-mgr3", "host_ip": "10.0.0.13", "state": "offline",
         "public_ip": "192.0.2.13", "online": False,
         "master": False, "initialized": False, "database_ip": None, "checks": {}},
    ]
    assert [(c.method, c.path) for c in fake.calls] == [("GET", "/cluster/nodes")]


def test_remove_node_deletes_through_the_active_node(managers):
    fake = managers({"10.0.0.11": lambda method, path: None})
    assert MODULE.remove_node("cfy-mgr3", active="10.0.0.11")["name"] == "cfy-mgr3"
    assert [(c.endpoint.host, c.method, c.path) for c in fake.calls] == [
        ("10.0.0.11", "DELETE", "/cluster/nodes/cfy-mgr3")]


@pytest.mark.parametrize("name", ["../../users/bob", "cfy-mgr3/..", "", None])
def test_remove_node_refuses_a_name_that_is_not_one_path_segment(managers, name):
    fake = managers({"10.0.0.11": lambda method, path: None})
    with pytest.raises(SaltInvocationError) as raised:
        MODULE.remove_node(name, active="10.0.0.11")
    assert str(raised.value).startswith("name: ") and fake.calls == []


@pytest.mark.parametrize("error, message", [
    (REST.RestError(401, "unauthorized_error", "no"),
     "the manager at 10.0.0.11 rejected the admin credentials (401): check "
     "cloudify_ha:clusters:prod:admin:username/password"),
    (REST.RestError(500, "internal", f"cannot log in with {DB_PW}"),
     "GET /cluster/nodes on 10.0.0.11 failed: 500 internal: cannot log in with ******"),
    (REST.Unreachable("http://10.0.0.11:80/api/v3.1/cluster/nodes: ConnectTimeout"),
     "GET /cluster/nodes: nothing answered at 10.0.0.11 (http://10.0.0.11:80/api/v3.1/cluster/"
     "nodes: ConnectTimeout)"),
])
def test_rest_errors_become_scrubbed_command_errors(managers, error, message):
    managers({"10.0.0.11": error})
    with pytest.raises(CommandExecutionError) as raised:
        MODULE.cluster_nodes(active="10.0.0.11")
    assert str(raised.value) == message


# ---- the external database ----------------------------------------------------------------------
def psql_answers(answers, version="psql (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"):
    """cmd.run_all answering `psql --version` with `version`, each psql query with the stdout
    of the first matching fragment."""
    def run_all(argv, **kwargs):
        if argv[1:] == ["--version"]:
            return done(stdout=version + "\n")
        sql = kwargs["stdin"]
        return done(stdout=next(out for fragment, out in answers if fragment in sql))
    return run_all


def test_database_holds_data_asks_postgres_with_the_password_in_the_environment(salt, host):
    salt["cmd.run_all"].side_effect = psql_answers([
        ("pg_database", "cloudify_db\nstage\ncomposer\n"),
        ("information_schema", "blueprints\ndeployments\nusers\nexecutions\n"),
        ("FROM blueprints", "2\n"), ("FROM deployments", "1\n"), ("FROM users", "1\n")])
    assert MODULE.database_holds_data() == {
        "holds_data": True, "databases": ["cloudify_db", "composer", "stage"], "tables": 4,
        "name": "cloudify_db", "data": {"cloudify_db": 4, "stage": 4, "composer": 4},
        "rows": {"blueprints": 2, "deployments": 1, "users": 1}, "host": "10.0.0.5:5432"}
    # first the local psql's version (a psql before 9.5 reads only the certificate's CN)
    assert salt["cmd.run_all"].call_args_list[0][0][0] == ["/usr/bin/psql", "--version"]
    for args, kwargs in salt["cmd.run_all"].call_args_list[1:]:
        argv = args[0]
        assert argv[:4] == ["/usr/bin/psql", "-XAtq", "-v", "ON_ERROR_STOP=1"]
        conninfo = argv[argv.index("-d") + 1]
        assert "sslmode=verify-full" in conninfo and "user=postgres" in conninfo
        assert f"sslrootcert={host.certs / 'prod/db-ca.pem'}" in conninfo
        assert (kwargs["python_shell"], kwargs["output_loglevel"]) == (False, "quiet")
        assert kwargs["env"]["PGPASSWORD"] == POSTGRES_PW
        assert_no_secret(argv)


def test_database_with_empty_databases_holds_no_data(salt):
    salt["cmd.run_all"].side_effect = psql_answers([("pg_database", "stage\n"),
                                                    ("information_schema", "")])
    assert MODULE.database_holds_data() == {
        "holds_data": False, "databases": ["stage"], "tables": 0, "rows": {},
        "name": "cloudify_db", "data": {"stage": 0}, "host": "10.0.0.5:5432"}
    assert salt["cmd.run_all"].call_count == 3  # psql --version, then the two queries


def test_the_data_guard_checks_the_configured_database_and_stage(salt, pillar):
    """A pillar naming its own database: that one is checked (a non-join install drops it),
    its name given to psql as a variable, never spliced into the SQL; stage's tables count too."""
    pillar["clusters"]["prod"]["database"]["name"] = "cfy_prod"
    salt["cmd.run_all"].side_effect = psql_answers([
        ("pg_database", "cfy_prod\nstage\n"), ("information_schema", "blueprints\n"),
        ("FROM blueprints", "0\n")])
    found = MODULE.database_holds_data()
    assert (found["holds_data"], found["data"], found["tables"]) == (
        True, {"cfy_prod": 1, "stage": 1}, 1)
    first_argv, first_kwargs = salt["cmd.run_all"].call_args_list[1]  # [0]: psql --version
    assert "names=cfy_prod,stage,composer" in first_argv[0]
    assert "cfy_prod" not in first_kwargs["stdin"] and ":'names'" in first_kwargs["stdin"]


def test_database_unreachable(salt):
    salt["cmd.run_all"].return_value = done(
        stderr=f"psql: FATAL: password authentication failed ({POSTGRES_PW})", retcode=2)
    with pytest.raises(CommandExecutionError) as raised:
        MODULE.database_holds_data()
    assert str(raised.value) == ("could not query the external database at 10.0.0.5:5432 as "
                                 "postgres: psql: FATAL: password authentication failed (******)")


# ---- settings, resources, plan -------------------------------------------------------------------
def test_a_minion_that_is_not_a_manager_of_the_named_cluster(configure_loader_modules):
    configure_loader_modules[MODULE]["__opts__"]["id"] = "admin1.example.com"
    with pytest.raises(SaltInvocationError) as raised:
        MODULE.install(cluster="prod")
    assert str(raised.value) == ("minion 'admin1.example.com' is not a manager of cluster 'prod' "
                                 "(cloudify_ha:clusters:prod:managers)")


def test_resources_lists_the_files_of_the_host(host):
    assert (MODULE.resources(), MODULE.is_empty()) == ([], True)
    (host.resources / "blueprints/t/app").mkdir(parents=True)
    (host.resources / "blueprints/t/app/blueprint.yaml").write_text("x")
    assert (MODULE.resources(), MODULE.is_empty()) == (["blueprints/t/app/blueprint.yaml"], False)


def test_plan_from_pillar_has_no_secret(pillar):
    pillar["clusters"]["prod"]["loadbalancer"].update(ssl=True, ssl_cert=LB_PEM)
    result = MODULE.plan()
    assert (result["errors"], result["warnings"], list(result["clusters"])) == ([], [], ["prod"])
    prod = result["clusters"]["prod"]
    assert prod["database"] == {"host": "10.0.0.5", "port": 5432, "name": "cloudify_db"}
    assert prod["admin"] == {"username": "admin", "tenant": "default_tenant"}
    assert "ssl_cert" not in prod["loadbalancer"] and "LB CERT AND KEY" not in repr(result)
    assert_no_secret(repr(result))


def test_a_masked_pillar_is_read_as_plain_data(configure_loader_modules, pillar):
    configure_loader_modules[MODULE]["__pillar__"]["cloudify_ha"] = masked(pillar)
    settings, manager = MODULE._settings()  # pylint: disable=protected-access
    assert (manager["name"], settings["admin"]["password"]) == ("cfy-mgr2", ADMIN_PW)
    assert type(settings["database"]) is dict and type(manager) is dict  # noqa: E721
    assert "cfy-mgr3" in repr(MODULE.plan())


def test_plan_of_a_given_pillar_with_errors():
    # the loaded pillar is valid: the errors can only come from the one given
    result = MODULE.plan(pillar={"clusters": {"prod": {"leader": "x"}}})
    assert result["clusters"] == {} and "cloudify_ha:clusters:prod:managers: list the" in \
        result["errors"][0]


# ---- the formula's modules on this minion ----------------------------------------------------------
def test_the_grain_lists_the_formulas_synced_files(tmp_path):
    grain = grain_module()
    files = {"modules/cloudify_ha.py": b"print('m')\n", "utils/cloudify_ha_rest.py": b"u\n",
             "grains/cloudify_ha.py": b"g\n", "modules/someone_else.py": b"not ours\n",
             "runners/cloudify_ha.py": b"not synced to minions\n"}
    for rel, content in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(content)
    (tmp_path / "modules" / "__pycache__").mkdir()
    grain.__opts__ = {"extension_modules": str(tmp_path)}
    assert grain.modules() == {"cloudify_ha_modules": {
        rel: "sha256:" + hashlib.sha256(files[rel]).hexdigest()
        for rel in ("modules/cloudify_ha.py", "utils/cloudify_ha_rest.py", "grains/cloudify_ha.py")}}
    grain.__opts__ = {"extension_modules": str(tmp_path / "none")}  # a minion never synced
    assert grain.modules() == {"cloudify_ha_modules": {}}


@pytest.fixture
def extmods(tmp_path, configure_loader_modules):
    configure_loader_modules[MODULE]["__opts__"]["extension_modules"] = str(tmp_path / "extmods")
    (tmp_path / "extmods/modules").mkdir(parents=True)
    (tmp_path / "extmods/modules/cloudify_ha.py").write_bytes(b"print('v2')\n")
    return {"modules/cloudify_ha.py": "sha256:" + hashlib.sha256(b"print('v2')\n").hexdigest()}


def test_modules_current_when_every_copy_matches(extmods):
    assert MODULE.modules_current(extmods) is True


@pytest.mark.parametrize("change", ["other content", "missing file", "unknown hash", "nothing"])
def test_modules_not_current(extmods, change):
    if change == "other content":
        extmods["modules/cloudify_ha.py"] = "sha256:" + "0" * 64
    elif change == "missing file":
        extmods["states/cloudify_ha.py"] = extmods["modules/cloudify_ha.py"]
    elif change == "unknown hash":
        extmods["modules/cloudify_ha.py"] = "nosuchhash:abc"
    else:
        extmods = {}
    assert MODULE.modules_current(extmods) is False


# ---- the orchestration's one question to every minion ---------------------------------------------
def test_orch_facts_of_a_manager(extmods, host, managers):
    for marker in (host.install, host.cluster):
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    fake = managers({"10.0.0.12": REPLICA})
    assert MODULE.orch_facts(extmods) == {"modules_current": True, "node": "replica",
                                          "cluster": "prod", "private_ip": "10.0.0.12",
                                          "pillar_errors": []}
    assert [c.path for c in fake.calls] == ["/status"]  # its own /status, once


def test_orch_facts_of_the_active_node_carry_its_maintenance_mode(extmods, host, managers):
    for marker in (host.install, host.cluster):
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    fake = managers({"10.0.0.12": lambda method, path: (
        {"status": "activated", "activated_at": "2026-12-07T10:00:00.000Z",
         "requested_by": "admin", "remaining_executions": []} if path == "/maintenance"
        else {"status": "running"})})
    facts = MODULE.orch_facts(extmods)
    assert (facts["node"], facts["maintenance"]) == ("leader", {
        "status": "activated", "activated_at": "2026-12-07T10:00:00.000Z",
        "requested_by": "admin", "name": "cfy-mgr2", "host": "10.0.0.12"})
    assert [c.path for c in fake.calls] == ["/status", "/maintenance"]


def test_orch_facts_of_a_host_that_is_not_a_manager(extmods, configure_loader_modules, managers):
    configure_loader_modules[MODULE]["__opts__"]["id"] = "admin1.example.com"
    fake = managers({})
    assert MODULE.orch_facts({}) == {"modules_current": False, "node": None,
                                     "pillar_errors": []}
    assert fake.calls == []


def test_orch_facts_report_the_secrets_this_minions_role_lacks(extmods, pillar, managers, salt):
    """A manager without the postgres password says so; the master, which holds no secret,
    refuses the whole run with it (test_orch_builder.py). It checks the pillar the master
    renders now, unmasked, not the copy the minion loaded earlier."""
    fresh = copy.deepcopy(pillar)
    del fresh["clusters"]["prod"]["database"]["postgres_password"]
    salt["pillar.items"] = MagicMock(return_value={"cloudify_ha": fresh})
    managers({})
    facts = MODULE.orch_facts(extmods)
    salt["pillar.items"].assert_called_once_with(unmask=True)
    assert facts["pillar_errors"] == [
        "cloudify_ha:clusters:prod:database:postgres_password: required secret is missing; set "
        "it in this minion's pillar (ideally from an encrypted source such as GPG pillar)"]


# pillar.items as each Salt declares it: 3006 (**kwargs), 3007.1 (no unmask), 3008 (unmask)
def _items_3006(*args, **kwargs):  # pylint: disable=unused-argument
    return {}


def _items_3007(*args, pillar=None, pillar_enc=None, pillarenv=None, saltenv=None):  # pylint: disable=unused-argument
    return {}


def _items_3008(*args, pillar=None, pillar_enc=None, pillarenv=None, saltenv=None, unmask=None):  # pylint: disable=unused-argument
    return {}


@pytest.mark.parametrize("signature, asked", [
    (_items_3006, {"unmask": True}), (_items_3007, {}), (_items_3008, {"unmask": True})])
def test_orch_facts_ask_for_the_unmasked_pillar_only_where_pillar_items_takes_it(
        extmods, pillar, managers, salt, signature, asked):
    """Feature detection, not a version check: 3007.1's pillar.items raises a TypeError on
    unmask (test/functional/test_salt_calls.py runs it on each real Salt)."""
    salt["pillar.items"] = create_autospec(signature, return_value={"cloudify_ha": pillar})
    managers({})
    assert MODULE.orch_facts(extmods)["pillar_errors"] == []
    salt["pillar.items"].assert_called_once_with(**asked)


def test_orch_facts_carry_a_node_error_without_its_secret(extmods, host, managers):
    for marker in (host.install, host.cluster):
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    managers({"10.0.0.12": REST.RestError(401, "unauthorized_error", "no")})
    facts = MODULE.orch_facts(extmods)
    assert facts["node"] is None and "rejected the admin credentials (401)" in facts["error"]
    assert_no_secret(facts)


def test_the_real_cfy_46_reads_the_profile_set_profile_cluster_writes(host, tmp_path):
    """The CLI loads profiles with PyYAML 3.10's full loader on Python 2: it must take back what
    the formula writes, tag and all (the real cloudify-cli 4.6 of `make cfy`)."""
    import subprocess  # pylint: disable=import-outside-toplevel
    write_profile(host, "localhost", (DATA / "leader_localhost_context_real46.yaml").read_text())
    (host.profiles.parent / "active.profile").write_text("localhost")
    MODULE.set_profile_cluster("localhost", [{"name": "mgr3", "manager_ip": "10.0.0.13"},
                                             {"name": "mgr1", "manager_ip": "localhost"}])
    lib, python = real_cli()  # the lab's own lookup: a clear error when `make cfy` has not run
    proc = subprocess.run(
        [str(python), "-s", str(lib / "bin" / "cfy"), "profiles", "show-current"],
        env={"HOME": str(tmp_path / "root"), "PYTHONPATH": str(lib), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "localhost" in proc.stdout and "admin" in proc.stdout
    assert MODULE.profile_cluster()[0] == {"name": "mgr3", "manager_ip": "10.0.0.13"}


# ---- the load balancer's check user ---------------------------------------------------------
CHECK = ("cloudify_ha_check", CHECK_PW)


def users(found=None, check_answer="active"):
    """The active node 10.0.0.11: GET /users/<name> (404 or `found`), PUT /users (201, or 409
    when `found`), GET /status as the admin (200) or as the check user (`check_answer`)."""
    def answer(endpoint, method, path, body=None, **_):
        if path == "/status" and endpoint.username == CHECK[0]:
            if check_answer == "active":
                return {"status": "running"}
            raise check_answer
        if path == f"/users/{CHECK[0]}" and method == "GET":
            if found is None:
                raise REST.RestError(404, "not_found_error", "Requested `User` was not found")
            return found
        if path == "/users" and method == "PUT":
            if found is not None:
                raise REST.RestError(409, "storage_error", f"SQL Storage error: {body}")
            return {"username": body["username"], "role": body["role"]}
        return {"status": "running"}
    return answer


def test_check_user_as_the_active_node_knows_it():
    found = {"username": CHECK[0], "role": "default", "tenants": 0, "groups": 0, "active": True}
    answer = users(found)
    calls = []

    def request(endpoint, method, path, body=None, timeout=None, retries=None):
        calls.append((endpoint.host, endpoint.username, endpoint.tenant, method, path))
        return answer(endpoint, method, path, body)

    with patch.object(REST, "request", request):
        assert MODULE.check_user(active="10.0.0.11") == dict(found, password_ok=True)
    # the user read as the admin (in its tenant), the password tried as the check user: no tenant
    assert calls == [("10.0.0.11", "admin", "default_tenant", "GET", f"/users/{CHECK[0]}"),
                     ("10.0.0.11", CHECK[0], None, "GET", "/status")]


@pytest.mark.parametrize("check_answer, ok", [
    ("active", True), (REST.RestError(401, "unauthorized_error", "bad"), False),
    (REST.RestError(403, "forbidden_error", "deactivated"), False)])
def test_check_user_says_whether_the_pillars_password_is_accepted(check_answer, ok):
    found = {"username": CHECK[0], "role": "default", "tenants": 0, "groups": 0, "active": True}
    answer = users(found, check_answer)
    with patch.object(REST, "request", lambda e, m, p, body=None, **k: answer(e, m, p, body)):
        assert MODULE.check_user(active="10.0.0.11")["password_ok"] is ok


def test_check_user_that_does_not_exist_is_none():
    answer = users(None)
    with patch.object(REST, "request", lambda e, m, p, body=None, **k: answer(e, m, p, body)):
        assert MODULE.check_user(active="10.0.0.11") is None


@pytest.mark.parametrize("found, created", [(None, True), ({"username": CHECK[0]}, False)])
def test_create_check_user_puts_the_password_in_a_json_body_with_the_default_role(found,
                                                                                  created):
    seen = []
    answer = users(found)

    def request(endpoint, method, path, body=None, timeout=None, retries=None):
        seen.append((endpoint.username, method, path, body))
        return answer(endpoint, method, path, body)

    with patch.object(REST, "request", request):
        assert MODULE.create_check_user(active="10.0.0.11") is created
    assert seen == [("admin", "PUT", "/users",
                     {"username": CHECK[0], "password": CHECK_PW, "role": "default"})]


def test_create_check_user_failing_says_why_without_the_password():
    def request(endpoint, method, path, body=None, timeout=None, retries=None):
        raise REST.RestError(400, "bad_parameters_error", f"rejected {body}")

    with patch.object(REST, "request", request):
        with pytest.raises(CommandExecutionError, match="^PUT /users on 10.0.0.11 failed: 400 "
                                                        "bad_parameters_error") as err:
            MODULE.create_check_user(active="10.0.0.11")
    assert CHECK_PW not in str(err.value)


def test_check_credentials_asks_every_manager_as_the_check_user(managers):
    fake = managers({"10.0.0.11": None, "10.0.0.12": REPLICA,
                     "10.0.0.13": REST.RestError(401, "unauthorized_error", "no")})
    fake.answers["10.0.0.11"] = lambda method, path: {"status": "running"}
    assert MODULE.check_credentials() == {"cfy-mgr1": "active", "cfy-mgr2": "not_cluster_master",
                                          "cfy-mgr3": "unauthorized"}
    assert {(c.endpoint.username, c.endpoint.tenant, c.path) for c in fake.calls} == {
        (CHECK[0], None, "/status")}


def test_the_check_user_of_a_cluster_without_its_password_is_an_error(pillar):
    del pillar["clusters"]["prod"]["loadbalancer"]["check_password"]
    with pytest.raises(SaltInvocationError, match="has no loadbalancer:check_password"):
        MODULE.check_credentials()


@pytest.mark.parametrize("as_check_user, user, key", [
    (False, "admin", "admin:password"),
    (True, CHECK[0], "loadbalancer:check_password")])
def test_node_state_asks_as_the_admin_or_as_the_check_user(host, managers, as_check_user, user,
                                                           key):
    for marker in (host.install, host.cluster):
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    fake = managers({"10.0.0.12": REPLICA})
    assert MODULE.node_state(as_check_user=as_check_user) == "replica"
    assert [c.endpoint.username for c in fake.calls] == [user]
    managers({"10.0.0.12": REST.RestError(401, "unauthorized_error", "no")})
    with pytest.raises(CommandExecutionError, match=rf"check cloudify_ha:clusters:prod:{key}$"):
        MODULE.node_state(as_check_user=as_check_user)


# ---- snapshot and verify_archive (issue 34, first stage) -------------------------------------
def _archive(path, version="4.6", corrupt=False):
    """A snapshot archive as 4.6 writes it (metadata.json and a dump)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", json.dumps({"snapshot_version": version}))
        archive.writestr("pg_data", "COPY public.blueprints (id) FROM stdin;\n" * 50)
    if corrupt:  # one byte of the dump's compressed data changed: its CRC no longer matches
        data = bytearray(path.read_bytes())
        offset = data.index(b"pg_data") + len(b"pg_data") + 10
        data[offset] ^= 0xFF
        path.write_bytes(bytes(data))
    return path


class FakeCfy:
    """cmd.run_all for the cfy commands snapshot() runs: the snapshot's states as listed one
    after another, what `create` answers, the executions still running at each read; writes the
    archive where the active node keeps it once the snapshot is created."""

    def __init__(self, host, states=("creating", "created"), create=None, running=(),
                 deactivate=None, error=""):
        self.host, self.states, self.create, self.running = host, list(states), create, list(running)
        self.deactivate, self.error = deactivate, error
        self.argv, self.snapshot_id = [], None

    def __call__(self, argv, **kwargs):
        args = argv[1:]
        self.argv.append(args)
        if args[:2] == ["snapshots", "create"]:
            self.snapshot_id = args[2]
            return self.create or done(stdout="Started workflow execution.")
        if args[:2] == ["snapshots", "list"]:
            status = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            if status == "created":
                sid = self.snapshot_id
                _archive(self.host.resources / "snapshots" / sid / f"{sid}.zip")
            return done(stdout=json.dumps([{"id": "older", "status": "created"},
                                           {"id": self.snapshot_id, "status": status,
                                            "error": self.error}]))
        if args[:2] == ["executions", "list"]:
            now = self.running.pop(0) if self.running else []
            return done(stdout=json.dumps([{"id": i, "status": "started"} for i in now] +
                                          [{"id": "old", "status": "terminated"}]))
        if args == ["maintenance-mode", "deactivate"] and self.deactivate:
            return self.deactivate
        return done()


@pytest.fixture
def snapshot_cluster(managers):
    """cfy-mgr2 (this minion) the active node; its maintenance mode as `mode` holds it."""
    mode = {"status": "deactivated"}

    def active(method, path):
        if path == "/maintenance":
            return dict(mode)
        if path == "/version":
            return {"version": "4.6", "edition": "premium"}
        return {"initialized": True} if path == "/cluster" else {"status": "running"}

    managers({"10.0.0.11": REPLICA, "10.0.0.12": active, "10.0.0.13": REPLICA})
    return mode


def _snapshot_id_of(argv):
    return next(a[2] for a in argv if a[:2] == ["snapshots", "create"])


def test_snapshot_in_maintenance_mode_creates_polls_leaves_and_verifies(salt, host,
                                                                        snapshot_cluster):
    fake = FakeCfy(host)
    salt["cmd.run_all"].side_effect = fake
    out = MODULE.snapshot(timeout=600, poll=0.01)
    sid = _snapshot_id_of(fake.argv)
    assert re.fullmatch(r"prod-\d{8}T\d{6}Z", sid)
    assert fake.argv == [["maintenance-mode", "activate", "--wait", "--timeout", "600"],
                         ["snapshots", "create", sid], ["snapshots", "list", "--json"],
                         ["snapshots", "list", "--json"], ["maintenance-mode", "deactivate"]]
    path = str(host.resources / "snapshots" / sid / f"{sid}.zip")
    assert out == {"id": sid, "status": "created", "quiesce": "maintenance",
                   "maintenance": "turned on and off", "path": path,
                   "size": os.path.getsize(path), "version": "4.6"}
    for args, kwargs in salt["cmd.run_all"].call_args_list:
        assert_no_secret(args)
        assert (kwargs["python_shell"], kwargs["output_loglevel"]) == (False, "quiet")


@pytest.mark.parametrize("fake_kwargs, timeout, said", [
    ({"create": done(stderr="You cannot start a system-wide execution if there are other "
                            "executions running. Currently running executions: [u'x']",
                     retcode=1)}, 5,
     "cfy snapshots create failed (exit 1): You cannot start a system-wide execution"),
    ({"states": ["creating", "failed"], "error": "pg_dump: server version mismatch"}, 5,
     "snapshot {sid} failed: pg_dump: server version mismatch"),
    ({"states": ["creating"]}, 0.05, "snapshot {sid} is still creating after 0.05 s"),
], ids=["refused", "failed", "timeout"])
def test_a_snapshot_that_fails_leaves_maintenance_mode_and_says_so(fake_kwargs, timeout, said,
                                                                   salt, host, snapshot_cluster):
    fake = FakeCfy(host, **fake_kwargs)
    salt["cmd.run_all"].side_effect = fake
    with pytest.raises(CommandExecutionError) as raised:
        MODULE.snapshot(timeout=timeout, poll=0.01)
    sid = _snapshot_id_of(fake.argv)
    assert str(raised.value).startswith(said.format(sid=sid)), raised.value
    assert str(raised.value).endswith("; maintenance mode left again")
    assert fake.argv[-1] == ["maintenance-mode", "deactivate"]
    assert not (host.resources / "snapshots" / sid).exists()


def test_a_snapshot_whose_maintenance_mode_stays_on_says_what_to_run(salt, host, snapshot_cluster):
    fake = FakeCfy(host, states=["failed"], deactivate=done(stderr="503", retcode=1))

    def run(argv, **kwargs):
        if argv[1:3] == ["maintenance-mode", "activate"]:
            snapshot_cluster["status"] = "activated"  # what the manager answers from then on
        return fake(argv, **kwargs)

    salt["cmd.run_all"].side_effect = run
    with pytest.raises(CommandExecutionError) as raised:
        MODULE.snapshot(timeout=5, poll=0.01)
    assert str(raised.value).endswith(
        "failed: no error given; maintenance mode is still on (cfy maintenance-mode deactivate "
        "failed (exit 1): 503): run "
        "'cfy maintenance-mode deactivate'"), raised.value


def test_a_maintenance_mode_on_before_is_left_as_found(salt, host, snapshot_cluster):
    snapshot_cluster["status"] = "activated"
    fake = FakeCfy(host, states=["created"])
    salt["cmd.run_all"].side_effect = fake
    out = MODULE.snapshot(timeout=5, poll=0.01)
    assert out["maintenance"] == "activated, left as found"
    assert [a[0] for a in fake.argv] == ["snapshots", "snapshots"]


def test_snapshot_waiting_for_executions_instead(salt, host, snapshot_cluster):
    fake = FakeCfy(host, states=["created"], running=[["a", "b"], ["b"], []])
    salt["cmd.run_all"].side_effect = fake
    out = MODULE.snapshot(quiesce="executions", timeout=5, poll=0.01)
    assert out["maintenance"] == "deactivated, left as found"
    listing = ["executions", "list", "--include-system-workflows", "--all-tenants", "--json"]
    assert fake.argv[:3] == [listing] * 3
    assert fake.argv[3][:2] == ["snapshots", "create"]


def test_snapshot_waiting_for_executions_gives_up_naming_them(salt, host, snapshot_cluster):
    fake = FakeCfy(host, running=[["stuck-1"]] * 1000)
    salt["cmd.run_all"].side_effect = fake
    with pytest.raises(CommandExecutionError, match=r"^executions still running after 0.05 s: "
                                                    r"stuck-1$"):
        MODULE.snapshot(quiesce="executions", timeout=0.05, poll=0.01)
    assert all(a[:2] == ["executions", "list"] for a in fake.argv)


def test_snapshot_without_quiescing(salt, host, snapshot_cluster):
    fake = FakeCfy(host, states=["created"])
    salt["cmd.run_all"].side_effect = fake
    assert MODULE.snapshot(quiesce="none", timeout=5, poll=0.01)["status"] == "created"
    assert [a[:2] for a in fake.argv] == [["snapshots", "create"], ["snapshots", "list"]]


def test_snapshot_on_a_replica_runs_nothing(salt, managers):
    managers({"10.0.0.11": "active", "10.0.0.12": REPLICA, "10.0.0.13": REPLICA})
    with pytest.raises(CommandExecutionError, match=r"cfy-mgr2 \(10.0.0.12\) is not the active "
                                                    r"node \(10.0.0.11 is\)"):
        MODULE.snapshot()
    salt["cmd.run_all"].assert_not_called()


@pytest.mark.parametrize("kwargs, said", [
    ({"quiesce": "pause"}, "quiesce: 'pause' is none of maintenance, executions, none"),
    ({"timeout": 0}, "timeout: 0 is not a positive number of seconds"),
    ({"poll": "soon"}, "poll: 'soon' is not a positive number of seconds"),
])
def test_snapshot_refuses_bad_arguments_before_anything(kwargs, said, salt):
    with pytest.raises(SaltInvocationError, match=re.escape(said)):
        MODULE.snapshot(**kwargs)
    salt["cmd.run_all"].assert_not_called()


def test_verify_archive_accepts_4_6s_archive(tmp_path):
    path = _archive(tmp_path / "s1.zip")
    assert MODULE.verify_archive(str(path), "4.6") == {
        "path": str(path), "size": path.stat().st_size, "version": "4.6"}


@pytest.mark.parametrize("make, said", [
    (lambda p: _archive(p, version="4.5.5"),
     "metadata.json says snapshot_version 4.5.5, the cluster runs 4.6"),
    (lambda p: _archive(p, corrupt=True), "member pg_data is corrupt"),
    (lambda p: p.write_text("not a zip\n"), "is not a Cloudify snapshot archive: File is not a "
                                            "zip file"),
    (lambda p: zipfile.ZipFile(p, "w").writestr("pg_data", ""),
     "is not a Cloudify snapshot archive: \"There is no item named 'metadata.json'"),
    (lambda p: None, "is not a Cloudify snapshot archive: [Errno 2]"),
], ids=["version", "crc", "not-zip", "no-metadata", "missing"])
def test_verify_archive_refuses_saying_why(make, said, tmp_path):
    path = tmp_path / "s1.zip"
    make(path)
    with pytest.raises(CommandExecutionError) as raised:
        MODULE.verify_archive(str(path), "4.6")
    assert said in str(raised.value), raised.value


def test_a_snapshot_that_cannot_read_maintenance_mode_says_so(salt, host, snapshot_cluster):
    """4.6 without a license refuses /maintenance: activate and deactivate fail, the mode
    cannot be read; nothing claims it is on or off."""
    refused = done(stderr="This Cloudify Manager has no license", retcode=1)
    fake = FakeCfy(host, deactivate=refused)

    def run(argv, **kwargs):
        if argv[1:3] == ["maintenance-mode", "activate"]:
            snapshot_cluster["status"] = "no license"  # not a state: maintenance_mode gives None
            fake.argv.append(argv[1:])
            return refused
        return fake(argv, **kwargs)

    salt["cmd.run_all"].side_effect = run
    with pytest.raises(CommandExecutionError) as raised:
        MODULE.snapshot(timeout=5, poll=0.01)
    assert str(raised.value) == (
        "cfy maintenance-mode activate failed (exit 1): This Cloudify Manager has no license; "
        "cfy maintenance-mode deactivate failed (exit 1): This Cloudify Manager has no license; "
        "whether maintenance mode is off could not be read: check with 'cfy maintenance-mode "
        "status'")
    assert [a[:2] for a in fake.argv] == [["maintenance-mode", "activate"],
                                          ["maintenance-mode", "deactivate"]]


# ---- the license -------------------------------------------------------------------------------
LICENSE_TEXT = example_pillar()["clusters"]["prod"]["license"]
LICENSE_ANSWER = {"customer_id": "CHANGE-ME", "expiration_date": "2030-12-31T00:00:00.000Z",
                  "license_edition": "Spire", "trial": False, "cloudify_version": "4.6",
                  "capabilities": None, "expired": False}
LICENSE_VIEW = {"customer_id": "CHANGE-ME", "expiration_date": "2030-12-31",
                "license_edition": "Spire", "trial": False, "cloudify_version": "4.6",
                "capabilities": None, "expired": False}


@pytest.mark.parametrize("answer, view", [
    ({"items": [LICENSE_ANSWER], "metadata": {}}, LICENSE_VIEW),
    ({"items": [], "metadata": {}}, {}),
    # 4.5.5: no such endpoint
    (REST.RestError(404, "not_found", "Not Found"), None)])
def test_license_info_as_the_active_node_answers_it(answer, view):
    calls = []

    def request(endpoint, method, path, body=None, timeout=None, retries=None):
        calls.append((endpoint.host, endpoint.username, method, path))
        if isinstance(answer, Exception):
            raise answer
        return answer

    with patch.object(REST, "request", request):
        assert MODULE.license_info(active="10.0.0.11") == view
    assert calls == [("10.0.0.11", "admin", "GET", "/license")]


def test_license_wanted_is_the_pillars_license_without_its_text():
    assert MODULE.license_wanted() == {k: v for k, v in LICENSE_VIEW.items() if k != "expired"}


def test_upload_license_puts_the_files_bytes_as_4_6s_cli_does():
    seen = []

    def request(endpoint, method, path, body=None, timeout=None, retries=None, data=None):
        seen.append((endpoint.host, method, path, body, data))
        return LICENSE_ANSWER

    with patch.object(REST, "request", request):
        assert MODULE.upload_license(active="10.0.0.11") == LICENSE_VIEW
    assert seen == [("10.0.0.11", "PUT", "/license", None, LICENSE_TEXT.encode())]


def test_a_license_that_is_no_license_is_refused_before_anything_is_sent(pillar):
    pillar["clusters"]["prod"]["license"] = "license: {}\n"
    with patch.object(REST, "request", MagicMock(side_effect=AssertionError("sent"))):
        with pytest.raises(SaltInvocationError, match=r"^cloudify_ha:clusters:prod:license: has "
                                                      r"no binary `signature`"):
            MODULE.upload_license(active="10.0.0.11")
    del pillar["clusters"]["prod"]["license"]
    with pytest.raises(SaltInvocationError, match="has no license in this minion's pillar"):
        MODULE.license_wanted()


@pytest.mark.parametrize("code", ["missing_cloudify_license", "expired_cloudify_license"])
def test_an_unlicensed_manager_refusing_a_call_names_the_license_key(code):
    def request(endpoint, method, path, body=None, timeout=None, retries=None):
        raise REST.RestError(400, code, "no license")

    with patch.object(REST, "request", request):
        with pytest.raises(CommandExecutionError) as err:
            MODULE.create_check_user(active="10.0.0.11")
    assert f"refused PUT /users for want of a license ({code})" in str(err.value)
    assert "cloudify_ha:clusters:prod:license" in str(err.value)
    assert CHECK_PW not in str(err.value)
