"""The seed page's procedure (seed/ha-external-database.md, as corrected by cloudify-4.6.md section
5) typed by hand through the salt minions with cmd.run: no formula involved. The followers join
with flags, as the seed shows (passwords on argv are fine here: this reproduces the manual
procedure; the formula never does that).

The module's name sorts it after every other module of this directory on purpose: once the lab's
minions run, every lab reset restarts them, which costs seconds per reset."""

import base64
import json

import yaml

from cfylab import ADMIN_PASSWORD, DB_PASSWORD, FLAGS_TOGETHER, TABLE_COLUMNS, last_line, parse_table
from lab.manual import manager_config
from lab.proc import wait_until

FOLLOWERS = ("mgr2", "mgr3")
CONFIG_FOLLOWS = "----- /etc/cloudify/config.yaml -----"


def sh(salt_cli, minion, command):
    """cmd.run_all on one minion; returns its {retcode, stdout, stderr}."""
    ret = salt_cli.run("cmd.run_all", command, python_shell=True, minion_tgt=minion)
    # the salt CLI's own exit code follows the command's: only the answer's shape is checked here
    assert isinstance(ret.data, dict) and "retcode" in ret.data, ret
    return ret.data


def done(result):
    assert result["retcode"] == 0, result
    return result["stdout"]


def follower_config(lab, name):
    """What the followers keep in config.yaml: the database client's TLS files and its user;
    addresses, admin and postgres passwords come as flags, as in the seed's command."""
    config = manager_config(lab, name, ADMIN_PASSWORD, DB_PASSWORD)
    del config["manager"]
    del config["postgresql_client"]["host"]
    del config["postgresql_client"]["postgres_password"]
    return config


def prepare_host(salt_cli, name, deb, config):
    """Install the package and write config.yaml (0600), as an admin pasting it would."""
    blob = base64.b64encode(yaml.safe_dump(config).encode()).decode()
    done(sh(salt_cli, name, f"dpkg -i {deb} && echo {blob} | base64 -d | "
                            "install -D -m 0600 /dev/stdin /etc/cloudify/config.yaml"))


def join_command(lab, name, postgres_password=True):
    host = lab[name]
    command = (f"cfy_manager install --private-ip {host.ip} --public-ip {host.ip} "
               f"--admin-password {ADMIN_PASSWORD} --join-cluster {lab['mgr1'].ip} "
               f"--database-ip {lab['db'].ip}")
    if postgres_password:
        command += f" --postgres-password {lab.passwords['postgres']}"
    return command


def test_seed_procedure_by_hand_through_salt(salt_cli, lab_minions, fresh_lab, packages):
    lab = fresh_lab
    deb = packages["cloudify-manager-install"]
    prepare_host(salt_cli, "mgr1", deb, manager_config(lab, "mgr1", ADMIN_PASSWORD, DB_PASSWORD))
    for name in FOLLOWERS:
        prepare_host(salt_cli, name, deb, follower_config(lab, name))

    # 1. the first manager on the external database, then `cfy cluster start` with both flags
    leader_ip = lab["mgr1"].ip
    out = done(sh(salt_cli, "mgr1", "cfy_manager install && cfy cluster start --cluster-node-name "
                                    f"mgr1 --cluster-host-ip {leader_ip}"))
    assert out.splitlines()[-1] == f"Cloudify Manager cluster started at {leader_ip}."

    # 2. the seed's join command as printed, without --postgres-password: refused, nothing done
    refused = sh(salt_cli, "mgr2", join_command(lab, "mgr2", postgres_password=False)
                 + "; ls -A /etc/cloudify")
    # 4.6 logs the refusal as its one ERROR line on stdout (main.py _exception_handler)
    error, *listed = refused["stdout"].splitlines()
    assert last_line(error) == FLAGS_TOGETHER and refused["stderr"] == "", refused
    assert listed == ["config.yaml"]

    # 3. the corrected join on both followers; the flags end up in the rewritten config.yaml
    for name in FOLLOWERS:
        out = done(sh(salt_cli, name, join_command(lab, name)
                      + f" && echo {CONFIG_FOLLOWS} && cat /etc/cloudify/config.yaml"))
        installer_output, config_text = out.split(CONFIG_FOLLOWS + "\n")
        assert "Node has been added to the cluster successfully!" in installer_output
        config = yaml.safe_load(config_text)
        assert config["cluster"]["master_ip"] == leader_ip
        assert config["postgresql_client"]["host"] == lab["db"].ip
        assert config["postgresql_client"]["postgres_password"] == "<removed>"

    # 4. the leader's table: one leader, two replicas (online within a heartbeat or two)
    def table_when_settled():
        title, columns, rows = parse_table(done(sh(salt_cli, "mgr1", "cfy cluster nodes list")))
        states = {r["name"]: r["state"] for r in rows}
        if states == {"mgr1": "leader", "mgr2": "replica", "mgr3": "replica"}:
            return title, columns, rows
        return None

    title, columns, rows = wait_until(table_when_settled, 20, "one leader and two replicas")
    assert (title, columns) == ("HA Cluster nodes", TABLE_COLUMNS)
    assert {r["database"] for r in rows} == {"REMOTE"}
    listed = json.loads(done(sh(salt_cli, "mgr1", "cfy cluster nodes list --json")))
    assert {n["name"]: n["host_ip"] for n in listed} == {n: lab[n].ip for n in ("mgr1", *FOLLOWERS)}
