"""One manager installed on the external database, not clustered (cloudify-4.6.md sections 2, 3
and 5): node states before and after install, what install leaves on the host, what the REST API
and the CLI say on a standalone manager. One install for the module (mgr1); mgr2 only has the
package; mgr3 has nothing. Tests only read, or put back what they change."""

import pytest

from cfylab import (ADMIN_NEEDS_CLEAN_DB, ADMIN_PASSWORD, ANSI, DB_PASSWORD, INSTALLER_LINE,
                    NOT_A_CLUSTER,
                    answers_rest, cfy, cfy_manager, failed, install, last_line, mode_of, ok,
                    read_yaml, rest)
from lab.emulator import MANAGER_PACKAGE
from lab.proc import wait_until

HOST = "mgr1"
INSTALL_LOG = "/var/log/cloudify/manager/cfy_manager.log"
CLI_LOG = "/root/.cloudify/logs/cli.log"


@pytest.fixture(scope="module")
def standalone(lab, emulator):
    """mgr1 installed (config.yaml 0600, no flags); mgr2 with the package only; mgr3 bare."""
    lab.reset()
    proc = install(lab, emulator, HOST)
    assert proc.returncode == 0, proc
    emulator.install_package("mgr2", MANAGER_PACKAGE)
    return proc


def db_oid(lab):
    return lab.db.query("SELECT oid FROM pg_database WHERE datname = 'cloudify_db'").stdout.strip()


# ---- node states -----------------------------------------------------------------------------
def test_absent_host_has_no_package_and_nothing_answers(lab, standalone):
    host = lab["mgr3"]
    assert host.run(["dpkg", "-s", MANAGER_PACKAGE], check=False).returncode != 0
    assert not host.exists("/usr/bin/cfy_manager")
    assert not answers_rest(host.ip)


def test_package_only_host_has_no_install_marker_and_nothing_answers(lab, standalone):
    host = lab["mgr2"]
    assert host.run(["dpkg", "-s", MANAGER_PACKAGE], check=False).returncode == 0
    assert host.exists("/usr/bin/cfy_manager")
    assert not host.exists("/etc/cloudify/.install")
    assert not answers_rest(host.ip)


def test_standalone_manager_answers_status_and_cluster_not_initialized(lab, standalone):
    ip = lab[HOST].ip
    assert rest(ip, "GET", "/status").status == 200
    answer = rest(ip, "GET", "/cluster")
    assert (answer.status, answer.body) == (200, {"initialized": False})


# ---- what install leaves ------------------------------------------------------------------------
def test_install_prints_the_success_lines(lab, standalone):
    lines = [last_line(line) for line in standalone.stdout.splitlines()]
    assert lines[-3:] == ["Installation finished successfully!",
                          f"Manager is up at http://{lab[HOST].public_ip}",
                          f"Admin password: {ADMIN_PASSWORD}"]


def test_install_output_is_46s_coloured_log_lines_on_stdout_only(lab, standalone):
    """4.6's console handler: stdout, `asctime - [NAME] - LEVEL - msg` coloured; its file
    handler: the same without colours, and never the `Admin password:` line (4.6 raises the
    file handler's level around it), which the console shows twice, given or generated."""
    assert standalone.stderr == ""
    lines = standalone.stdout.splitlines()
    assert all(INSTALLER_LINE.fullmatch(ANSI.sub("", line)) for line in lines), lines
    assert "\x1b[1;34m[MAIN]\x1b[0m - \x1b[1;32mNOTICE\x1b[0m - " in standalone.stdout
    shown = [line for line in lines if "Admin password:" in line]
    assert len(shown) == 2 and all("WARNING" in line for line in shown), shown
    log = lab[HOST].read("/var/log/cloudify/manager/cfy_manager.log")
    assert "\x1b[" not in log and "Admin password" not in log and ADMIN_PASSWORD not in log
    assert " - [MAIN] - NOTICE - Installation finished successfully!" in log


def test_46_writes_the_passwords_into_logs_it_leaves_readable_to_all(lab, standalone):
    """cloudify-4.6.md section 0.4: common.sudo logs `Running: [...]` at DEBUG, the file
    handler's level, so create_default_db.sh's line puts the database password in
    cfy_manager.log, which 4.6's logging.FileHandler creates 0644; the real cfy logs the
    installer's `profiles set -p <admin password>` to cli.log, 0644 too. (The formula makes both
    0600 before the install and takes the secrets out after it.) The .pgpass files are 0400."""
    host, db = lab[HOST], lab["db"].ip
    running = [line for line in host.read(INSTALL_LOG).splitlines()
               if "Running: ['sudo', 'su', '-', 'postgres', '-c', '/tmp/tmp" in line]
    assert len(running) == 1 and " - [UTILS] - DEBUG - " in running[0], running
    assert running[0].endswith(f" cloudify_db cloudify {DB_PASSWORD} {db}']"), running
    assert mode_of(host, INSTALL_LOG) == "644"
    assert f"Setting password to `{ADMIN_PASSWORD}`" in host.read(CLI_LOG)
    assert mode_of(host, CLI_LOG) == "644"
    assert host.read("/var/lib/postgresql/.pgpass") == \
        f"{db}:5432:postgres:postgres:{lab.passwords['postgres']}"
    assert host.read("/etc/cloudify/.pgpass") == f"{db}:5432:*:cloudify:{DB_PASSWORD}"
    assert {mode_of(host, p) for p in ("/var/lib/postgresql/.pgpass", "/etc/cloudify/.pgpass")} \
        == {"400"}


def test_install_writes_the_install_marker_and_no_cluster_marker(lab, standalone):
    assert lab[HOST].exists("/etc/cloudify/.install")
    assert not lab[HOST].exists("/etc/cloudify/cluster")


def test_install_log_is_written(lab, standalone):
    log = lab[HOST].read("/var/log/cloudify/manager/cfy_manager.log")
    assert log and "Installation finished successfully!" in log


def test_config_yaml_is_rewritten_with_the_postgres_password_removed(lab, standalone):
    config = read_yaml(lab[HOST], "/etc/cloudify/config.yaml")
    client = config["postgresql_client"]
    assert client["postgres_password"] == "<removed>"
    # every other secret stays in the file
    assert client["password"] == DB_PASSWORD
    assert config["manager"]["security"]["admin_password"] == ADMIN_PASSWORD
    assert lab.passwords["postgres"] not in lab[HOST].read("/etc/cloudify/config.yaml")


def test_config_yaml_rewrite_keeps_the_files_mode(lab, standalone):
    assert mode_of(lab[HOST], "/etc/cloudify/config.yaml") == "600"


def test_installer_creates_the_localhost_profile(lab, standalone, emulator):
    host = lab[HOST]
    assert host.read("/root/.cloudify/profiles/localhost/context").startswith(
        "!CloudifyProfileContext\n")
    context = read_yaml(host, "/root/.cloudify/profiles/localhost/context")
    assert (context["manager_ip"], context["manager_username"], context["manager_password"],
            context["manager_tenant"]) == ("localhost", "admin", ADMIN_PASSWORD, "default_tenant")
    assert (context["rest_port"], context["rest_protocol"], context["_cluster"]) == (80, "http", [])
    assert host.read("/root/.cloudify/active.profile").strip() == "localhost"
    assert mode_of(host, "/root/.cloudify/profiles/localhost/context") == "644"
    emulator.ensure_license(HOST)  # `cfy status` reads /maintenance, which needs one
    assert "Manager Rest-Service" in ok(cfy(host, "status"))


# ---- what a standalone manager refuses -----------------------------------------------------------
@pytest.mark.parametrize("command", [["cluster", "status"], ["cluster", "nodes", "list"],
                                     ["cluster", "update-profile"], ["cluster", "set-active", HOST],
                                     ["cluster", "nodes", "remove", "mgr2"]], ids=" ".join)
def test_cluster_commands_on_a_standalone_manager_say_not_part_of_a_cluster(lab, standalone,
                                                                              command):
    assert failed(cfy(lab[HOST], *command)).strip() == NOT_A_CLUSTER


def test_reinstall_on_an_installed_host_exits_1_and_keeps_the_database(lab, standalone):
    before = db_oid(lab)
    out = failed(cfy_manager(lab[HOST], "install"))
    assert last_line(out).startswith("Cloudify Manager is already installed on this machine")
    assert db_oid(lab) == before


def test_admin_password_on_an_installed_host_needs_clean_db(lab, standalone):
    before = db_oid(lab)
    out = failed(cfy_manager(lab[HOST], "install", "-a", ADMIN_PASSWORD))
    assert last_line(out) == ADMIN_NEEDS_CLEAN_DB
    assert db_oid(lab) == before


def test_stop_and_start_work_on_a_standalone_manager(lab, standalone):
    host = lab[HOST]
    try:
        ok(cfy_manager(host, "stop"))
        assert not answers_rest(host.ip)
        ok(cfy_manager(host, "start"))
        assert rest(host.ip, "GET", "/status").status == 200
    finally:
        cfy_manager(host, "start")
        wait_until(lambda: answers_rest(host.ip), 30, "mgr1's REST service to be back")


def test_community_edition_answers_404_on_every_cluster_endpoint(lab, standalone, emulator):
    ip = lab[HOST].ip
    emulator.set_knobs(HOST, edition="community")
    try:
        for path in ("/cluster", "/cluster/nodes", "/cluster/nodes/mgr1"):
            answer = rest(ip, "GET", path)
            assert answer.status == 404, (path, answer)
            assert answer.body["error_code"] == "missing_premium_package_error"
        assert rest(ip, "PUT", "/cluster", body={"host_ip": ip, "node_name": HOST}).status == 404
        assert rest(ip, "GET", "/status").status == 200
    finally:
        emulator.set_knobs(HOST, edition=None)
    assert rest(ip, "GET", "/cluster").body == {"initialized": False}
