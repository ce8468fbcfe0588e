"""The lab itself: isolation between hosts, the SSL database, every fault knob, sweeping."""

import json
import os
import socket
import subprocess
import sys
import textwrap

from lab.core import Lab, sweep
from lab.hosts import netns_list, reach, tcp_dropped
from lab.proc import wait_until

MANAGERS = ("mgr1", "mgr2", "mgr3")


def ping(salt_cli, name, timeout=5):
    ret = salt_cli.run("-t", str(timeout), "test.ping", minion_tgt=name, _timeout=60)
    return ret.returncode == 0 and ret.data is True


def answers(salt_cli, name, within=60):
    """Poll (bounded) until the minion answers: a restarted minion needs a moment to reconnect."""
    try:
        wait_until(lambda: ping(salt_cli, name), within, f"minion {name} to answer")
    except Exception:  # noqa: BLE001 - the assertion below says what failed
        return False
    return True


def test_a_file_written_through_one_minion_is_invisible_elsewhere(salt_cli, lab):
    assert salt_cli.run("file.mkdir", "/etc/cloudify", minion_tgt="mgr1").returncode == 0
    ret = salt_cli.run("file.write", "/etc/cloudify/isolation-marker", "mgr1-only", minion_tgt="mgr1")
    assert ret.returncode == 0, ret
    ret = salt_cli.run("file.read", "/etc/cloudify/isolation-marker", minion_tgt="mgr1")
    assert ret.data.strip() == "mgr1-only"
    for other in ("mgr2", "mgr3"):
        ret = salt_cli.run("file.file_exists", "/etc/cloudify/isolation-marker", minion_tgt=other)
        assert ret.data is False, (other, ret)
    assert not os.path.exists("/etc/cloudify/isolation-marker")


def test_each_manager_sees_its_own_address_and_name(salt_cli, lab):
    for name in MANAGERS:
        host = lab[name]
        ret = salt_cli.run("grains.item", "ipv4", "host", minion_tgt=name)
        assert ret.returncode == 0, ret
        assert sorted(ret.data["ipv4"]) == sorted(["127.0.0.1", host.ip, host.public_ip])
        assert ret.data["host"] == name
        others = {ip for o in MANAGERS if o != name for ip in (lab[o].ip, lab[o].public_ip)}
        assert not others & set(ret.data["ipv4"])


def test_database_takes_ssl_with_a_password_and_refuses_plain(lab):
    mgr = lab["mgr1"]
    ok = lab.db.query("select ssl from pg_stat_ssl where pid = pg_backend_pid()", via=mgr)
    assert ok.stdout.strip() == "t"
    # a client certificate is optional, as 4.6's installer needs it to be for postgres
    bare = lab.db.query("select ssl from pg_stat_ssl where pid = pg_backend_pid()", via=mgr,
                        client_cert=False)
    assert bare.stdout.strip() == "t", bare
    plain = lab.db.query("select 1", via=mgr, sslmode="disable", check=False)
    assert plain.returncode != 0
    assert "no encryption" in plain.stderr
    wrong = lab.db.query("select 1", via=mgr, password="not-the-password", check=False)
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr


def test_database_requires_client_certificates_from_the_users_a_knob_names(lab):
    mgr, db = lab["mgr1"], lab.db
    db.query("CREATE ROLE lab_certified LOGIN PASSWORD 'lab-certified'")
    try:
        db.require_client_cert(["lab_certified"])
        as_user = {"via": mgr, "user": "lab_certified", "password": "lab-certified",
                   "check": False}
        refused = db.query("select 1", client_cert=False, **as_user)
        assert refused.returncode != 0 and "certificate" in refused.stderr, refused
        assert db.query("select 1", **as_user).returncode == 0
        # everyone else still gets in with SSL and a password alone
        assert db.query("select 1", via=mgr, client_cert=False).returncode == 0
        db.require_client_cert(["all"])
        assert db.query("select 1", via=mgr, client_cert=False, check=False).returncode != 0
        db.require_client_cert(())
        assert db.query("select 1", client_cert=False, **as_user).returncode == 0
    finally:
        db.require_client_cert(())
        db.query("DROP ROLE IF EXISTS lab_certified")


def test_database_listens_only_on_the_bridge(lab):
    # from inside the DB host, its loopback does not serve PostgreSQL: only eth0 does
    proc = lab["db"].run(["ss", "-Htln", "sport = :5432"])
    listeners = {line.split()[3] for line in proc.stdout.splitlines()}
    assert listeners == {f"{lab['db'].ip}:5432"}


def test_killed_host_stops_answering_and_comes_back(salt_cli, lab):
    assert ping(salt_cli, "mgr3")
    host = lab["mgr3"]
    # the host's own firewall rules die with the power; the lab's network faults do not
    host.run(["nft", "add", "table", "inet", "host_rules"])
    host.block_port(8500)
    try:
        killed = host.kill()
        assert killed, "the host had no process to kill"
        lab.minions["mgr3"].terminate()
        assert not ping(salt_cli, "mgr3", timeout=2)
        assert ping(salt_cli, "mgr2")
        lab.power_on("mgr3")
        assert answers(salt_cli, "mgr3")
        assert host.run(["nft", "list", "table", "inet", "host_rules"], check=False).returncode != 0
        assert host.blocked_ports() == {("tcp", 8500)}
    finally:
        host.unblock_port(8500)


def test_cut_link_isolates_only_that_host(lab):
    try:
        lab["mgr2"].cut_link()
        cut = lab.db.query("select 1", via=lab["mgr2"], check=False)
        assert cut.returncode != 0
        assert lab.db.query("select 1", via=lab["mgr1"]).stdout.strip() == "1"
    finally:
        lab["mgr2"].restore_link()
    assert lab.db.query("select 1", via=lab["mgr2"]).stdout.strip() == "1"


def test_ipv6_addresses_reach_each_other_survive_a_wipe_and_go_away(lab):
    lab.set_ipv6(True)
    try:
        mgr1, cli = lab["mgr1"], lab["cli"]
        assert mgr1.ipv6 and mgr1.ipv6 != cli.ipv6
        assert f"{mgr1.ipv6}/64" in mgr1.run(["ip", "-6", "-o", "addr", "show", "eth0"]).stdout
        # nothing listens on 9: the host's stack answers (refused), over IPv6
        assert reach(cli, mgr1, 9, family=6) == "refused"
        lab.wipe("cli", power_on=False)
        lab.power_on("cli")
        assert reach(cli, mgr1, 9, family=6) == "refused"
    finally:
        lab.set_ipv6(False)
    assert "inet6 fd00:" not in lab["mgr1"].run(["ip", "-6", "-o", "addr"]).stdout
    assert lab["mgr1"].ipv6 is None


LISTENER = textwrap.dedent("""
    import socket, sys, time
    socks = []
    for port in sys.argv[2:]:
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((sys.argv[1], int(port))); s.listen(); socks.append(s)
    time.sleep(600)
""")


def test_blocked_port_blocks_only_that_port_on_that_host(lab):
    hosts = [lab["mgr1"], lab["mgr2"]]
    procs = [h.popen([sys.executable, "-c", LISTENER, h.ip, "8301", "8300"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for h in hosts]
    try:
        for h in hosts:
            wait_until(lambda h=h: _connects(h.ip, 8300) and _connects(h.ip, 8301), 10,
                       f"listeners on {h.name}")
        lab["mgr1"].block_port(8301)
        assert tcp_dropped(lab["mgr1"].ip, 8301)
        assert _connects(lab["mgr1"].ip, 8300)
        assert _connects(lab["mgr2"].ip, 8301)
        # and from inside the blocked host, outgoing traffic to that port is dropped too
        out = lab["mgr1"].run([sys.executable, "-c",
                               f"import socket; socket.create_connection(('{lab['mgr2'].ip}', 8301), 1)"],
                              check=False)
        assert out.returncode != 0 and "timed out" in out.stderr
        lab["mgr1"].unblock_port(8301)
        assert _connects(lab["mgr1"].ip, 8301)
    finally:
        lab["mgr1"].unblock_port(8301)
        for p in procs:
            p.kill()
            p.wait()


def _connects(ip, port):
    try:
        with socket.create_connection((ip, port), timeout=1):
            return True
    except OSError:
        return False


def test_wipe_returns_a_host_to_a_fresh_os(salt_cli, lab):
    lab["mgr2"].write("/etc/cloudify/.install", "")
    lab["mgr2"].write("/root/.cloudify/profiles/x/context", "x")
    lab.wipe("mgr2")
    assert not lab["mgr2"].exists("/etc/cloudify/.install")
    assert not lab["mgr2"].exists("/root/.cloudify/profiles/x/context")
    assert answers(salt_cli, "mgr2")


def test_boot_runs_the_hosts_boot_scripts_with_a_fresh_run_dir(lab):
    host = lab["cli"]
    host.write("/etc/lab/boot.d/hello", "#!/bin/sh\necho \"$1\" >> /var/tmp/booted\n", mode="0755")
    host.write("/run/stale.pid", "123")
    lab.kill("cli")
    lab.power_on("cli")
    assert host.read("/var/tmp/booted") == "start\n"
    assert not host.exists("/run/stale.pid")


def test_a_host_is_a_sysv_debian_that_starts_only_the_services_it_enabled(lab):
    """A fresh host enables no SysV service of the machine's packages, has no systemctl (Salt
    would take it for systemd's offline mode) and says runlevel 2; its boot starts what the
    host enabled with update-rc.d, in order."""
    host = lab["cli"]
    assert host.run(["sh", "-c", "ls /etc/rc2.d"]).stdout.split() == []
    assert not host.exists("/usr/bin/systemctl")
    assert host.run(["runlevel"]).stdout.strip() == "N 2"
    host.write("/etc/init.d/lab-hello", "#!/bin/sh\n### BEGIN INIT INFO\n# Provides: lab-hello\n"
               "# Required-Start:\n# Required-Stop:\n# Default-Start: 2 3 4 5\n"
               "# Default-Stop: 0 1 6\n### END INIT INFO\n"
               "echo \"$1\" >> /var/tmp/hello-sysv\n", mode="0755")
    host.run(["update-rc.d", "lab-hello", "defaults"])
    lab.kill("cli")
    lab.power_on("cli")
    assert host.read("/var/tmp/hello-sysv") == "start\n"
    assert not lab["mgr1"].exists("/var/tmp/hello-sysv")  # the other hosts did not enable it


def test_a_second_lab_does_not_collide_and_the_sweeper_removes_a_dead_runs_leftovers(lab):
    other = Lab(managers=1)
    other.create()
    try:
        assert other.network.prefix != lab.network.prefix
        assert other.prefix != lab.prefix
        assert lab.db.query("select 1").stdout.strip() == "1"
    finally:
        other_dir = other.dir
        # make it look like a crashed run: its owner is gone, its namespaces and files remain
        data = json.loads((other_dir / "lab.json").read_text())
        data["owner"] = {"pid": 999999999, "create_time": 0}
        (other_dir / "lab.json").write_text(json.dumps(data))
        sleeper = other["mgr1"].popen(["sleep", "600"])
    removed = sweep()
    sleeper.wait(timeout=10)
    assert other.rid in removed
    assert not other_dir.exists()
    assert not [ns for ns in netns_list() if ns.startswith(other.prefix)]
    # the live lab was left alone
    assert lab.rid not in removed
    assert lab.dir.exists() and lab["mgr1"].netns in netns_list()
