"""`cfy_manager install` refusals (cloudify-4.6.md section 5, and the lab's own validation choices):
each is refused before anything changes on the host or on the external database. One prepared
host for the module (package installed, config.yaml written, nothing installed)."""

import contextlib

import pytest
import yaml

from cfylab import (ADMIN_PASSWORD, FLAGS_TOGETHER, FLAGS_TOGETHER_NO_POSTGRES, SSL_REQUIRED,
                    cfy_manager, failed, last_line, prepare)

HOST = "mgr1"


@pytest.fixture(scope="module")
def prepared(lab, emulator):
    lab.reset()
    prepare(lab, emulator, HOST)
    return lab[HOST]


def refused(lab, host, *args):
    """Run `cfy_manager install ...`, assert exit 1 and that nothing was installed anywhere;
    return its last output line (where the reason is)."""
    out = failed(cfy_manager(host, "install", *args))
    assert not host.exists("/etc/cloudify/.install")
    assert not host.exists("/etc/cloudify/cluster")
    assert "cloudify_db" not in lab.db.databases()
    return last_line(out)


@contextlib.contextmanager
def config_changed(host, change):
    """config.yaml with `change(config)` applied, put back afterwards."""
    original = host.read("/etc/cloudify/config.yaml")
    config = yaml.safe_load(original)
    change(config)
    host.write("/etc/cloudify/config.yaml", yaml.safe_dump(config), mode="0600")
    try:
        yield
    finally:
        host.write("/etc/cloudify/config.yaml", original, mode="0600")


def join_flags(lab, leave_out=()):
    flags = {"--join-cluster": lab["mgr2"].ip, "--database-ip": lab["db"].ip,
             "--postgres-password": lab.passwords["postgres"]}
    return [x for k, v in flags.items() if k not in leave_out for x in (k, v)]


@pytest.mark.parametrize("leave_out", [
    ("--postgres-password",),                   # the seed page's join command
    ("--database-ip",),
    ("--join-cluster",),
    ("--join-cluster", "--database-ip"),        # -a with --postgres-password alone
], ids=lambda x: "without " + "+".join(x))
def test_admin_password_with_only_some_join_flags_is_refused(lab, prepared, leave_out):
    reason = refused(lab, prepared, "-a", ADMIN_PASSWORD, *join_flags(lab, leave_out))
    assert reason == FLAGS_TOGETHER


@pytest.mark.parametrize("flags", [["--join-cluster"], ["--database-ip"],
                                   ["--join-cluster", "--database-ip"]], ids="+".join)
def test_join_cluster_or_database_ip_without_admin_password_is_refused(lab, prepared, flags):
    values = {"--join-cluster": lab["mgr2"].ip, "--database-ip": lab["db"].ip}
    args = [x for f in flags for x in (f, values[f])]
    assert refused(lab, prepared, *args) == FLAGS_TOGETHER_NO_POSTGRES


def test_there_is_no_config_file_flag(lab, prepared):
    proc = cfy_manager(prepared, "install", "--config-file", "/etc/cloudify/config.yaml")
    assert proc.returncode == 2, proc
    assert "unrecognized arguments: --config-file" in proc.stderr
    assert not prepared.exists("/etc/cloudify/.install")


def test_external_database_without_ssl_is_refused(lab, prepared):
    with config_changed(prepared, lambda c: c["postgresql_client"].update(ssl_enabled=False)):
        assert refused(lab, prepared) == f"ValidationError: {SSL_REQUIRED}"


def test_a_local_database_is_not_emulated(lab, prepared):
    with config_changed(prepared, lambda c: c["postgresql_client"].update(host="localhost")):
        reason = refused(lab, prepared)
    assert reason.startswith("ValidationError: this lab emulates the external-database "
                             "topology only")


@pytest.mark.parametrize("value", [None, "<removed>"], ids=["absent", "removed"])
def test_postgres_password_is_required_for_an_external_database(lab, prepared, value):
    def change(config):
        if value is None:
            del config["postgresql_client"]["postgres_password"]
        else:
            config["postgresql_client"]["postgres_password"] = value

    with config_changed(prepared, change):
        assert refused(lab, prepared) == ("ValidationError: postgresql_client.postgres_password is "
                                          "required when using an external database")


def test_remove_without_force_is_refused(lab, prepared):
    out = failed(cfy_manager(prepared, "remove"))
    assert last_line(out) == ("This action requires additional confirmation. Add the '-f' or "
                              "'--force' flags to your command if you are certain this command "
                              "should be executed.")


@pytest.mark.parametrize("command", ["start", "stop", "restart", "configure"])
def test_service_commands_on_a_host_without_a_manager_are_refused(lab, prepared, command):
    assert last_line(failed(cfy_manager(prepared, command))) == "Cloudify Manager is not installed"


def test_audit_masks_secrets_on_argv_and_marks_mutating_commands(lab, prepared, emulator):
    failed(cfy_manager(prepared, "install", "-a", ADMIN_PASSWORD, *join_flags(lab)[:4]))
    entry = emulator.audit(HOST)[-1]
    assert set(entry) == {"kind", "prog", "argv", "secret_on_argv", "mutating", "exit", "start",
                          "end", "host"}
    assert (entry["kind"], entry["prog"], entry["host"], entry["exit"]) == ("cli", "cfy_manager",
                                                                            HOST, 1)
    assert entry["mutating"] is True and entry["secret_on_argv"] is True
    assert entry["argv"][:3] == ["install", "-a", "******"]
    assert ADMIN_PASSWORD not in str(emulator.audit(HOST))
    assert entry in emulator.mutating(HOST)
