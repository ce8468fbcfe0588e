"""The cluster firewall on each backend an EL7 or Debian manager has, proven by real traffic:
nftables (Debian's default), iptables (no nft) and firewalld (CentOS 7's default, run for real
in each host with its own D-Bus). The cluster ports open between the managers only (8301 on
udp too), the REST port from the pillar's sources only, everything else as the backend leaves
it; a re-run changes nothing; a manager gone from pillar loses its way in; a reboot brings the
rules back the way the backend does. And one whole build and rejoin on firewalld hosts.

Each test installs its hosts' firewall with a reset (Lab.set_firewall takes effect at a
reinstall) and puts the session's nftables hosts back at its end."""

import json
import os
import sys
import textwrap
import uuid

import pytest

from lab.formula import OrchRun, deep, minion_pillar, nodes, orch, shadow_pillar
from lab.hosts import reach
from lab.proc import wait_until

MANAGERS = ("mgr1", "mgr2", "mgr3")
TCP_PORTS = (8300, 8301, 8500, 22000)
# what reach() says, as a firewall sees it: let through (a listener answered, or the host's
# stack refused: nothing listens) or stopped (no answer, or an ICMP error)
THROUGH, STOPPED = {"open", "refused"}, {"dropped", "rejected"}

# a UDP listener that writes each datagram's text to a file, after a first line once bound
LISTEN_UDP = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", int(sys.argv[1])))
    with open(sys.argv[2], "a", buffering=1) as out:
        out.write("bound\\n")
        while True:
            out.write(s.recv(100).decode() + "\\n")
""")
SEND_UDP = ("import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "[s.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2]))) for _ in range(3)]")


def udp_arrivals(lab, dst, port, senders):
    """Which of `senders` a UDP listener on dst:port hears from: each sends three datagrams,
    in order, and the last one's are awaited (a datagram a firewall let through would have
    arrived before them)."""
    path = f"/tmp/{lab.dir.name}-udp-{uuid.uuid4().hex[:8]}"
    listener = dst.popen([sys.executable, "-c", LISTEN_UDP, str(port), path])
    try:
        wait_until(lambda: _lines(path)[:1] == ["bound"], 10, f"a UDP listener on {dst.name}")
        for src in senders:
            src.run([sys.executable, "-c", SEND_UDP, dst.ip, str(port), src.name])
        last = senders[-1].name
        wait_until(lambda: last in _lines(path), 10, f"{last}'s datagrams to {dst.name}:{port}")
        return {line for line in _lines(path)[1:]}
    finally:
        listener.kill()
        listener.wait()
        if os.path.exists(path):
            os.unlink(path)


def _lines(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().split()
    except FileNotFoundError:
        return []


def apply_firewall(salt_cli, hosts=MANAGERS, test=False):
    """state.apply cloudify_ha.firewall on the hosts: {host: {state id: (result, changes)}}."""
    out = {}
    for host in hosts:
        args = ["state.apply", "cloudify_ha.firewall"] + (["test=True"] if test else [])
        ret = salt_cli.run(*args, minion_tgt=host, _timeout=180)
        assert isinstance(ret.data, dict), ret
        out[host] = {key.split("_|-")[1]: (v["result"], v["changes"]) for key, v in ret.data.items()}
        assert all(r is True or (test and r is None) for r, _ in out[host].values()), (host, ret.data)
    return out


@pytest.fixture
def firewall_lab(lab, salt_cli):
    """The lab's managers reinstalled with a firewall of the test's choice, the formula's
    modules synced to them (as the orchestration's first step does); nftables again
    afterwards."""
    def use(kind):
        lab.set_firewall(kind)
        lab.reset()
        ret = salt_cli.run("saltutil.sync_all", minion_tgt="mgr*")
        assert ret.returncode == 0, ret
        return lab
    yield use
    lab.set_firewall("nftables")
    lab.reset()


def lb_only_pillar(salt_cli, lab, managers=MANAGERS):
    """The session's pillar with the REST port open to the load balancer only (beside the
    managers), and the cluster's managers cut to `managers`."""
    pillar = deep(minion_pillar(salt_cli))
    cluster = pillar["clusters"]["lab"]
    cluster["firewall"]["rest_sources"] = [lab["lb"].ip]
    cluster["managers"] = [m for m in cluster["managers"] if m["name"] in managers]
    return pillar


@pytest.mark.parametrize("backend", ["nftables", "iptables", "firewalld"])
def test_each_backend_lets_the_cluster_in_and_nobody_else(firewall_lab, salt_cli, pillar_dir,
                                                          backend):
    lab = firewall_lab(backend)
    mgr1, mgr2, mgr3, lb, cli = (lab[n] for n in ("mgr1", "mgr2", "mgr3", "lb", "cli"))
    with shadow_pillar(pillar_dir, lb_only_pillar(salt_cli, lab)):
        assert salt_cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt="*").returncode == 0
        first = apply_firewall(salt_cli)
        # the backend the formula found on the host (the pillar says auto)
        assert all(any(f"-firewall-{backend}-" in sid and changes for sid, (_, changes)
                       in states.items()) for states in first.values()), first
        for port in TCP_PORTS:
            assert reach(mgr2, mgr1, port) in THROUGH, port
            assert reach(lb, mgr1, port) in STOPPED, port
            assert reach(cli, mgr3, port) in STOPPED, port
        assert udp_arrivals(lab, mgr1, 8301, [lb, cli, mgr2]) == {"mgr2"}
        # the REST port: from the managers and the pillar's sources only
        assert reach(lb, mgr1, 80) in THROUGH and reach(mgr3, mgr1, 80) in THROUGH
        assert reach(cli, mgr1, 80) in STOPPED
        # every other port as the backend leaves it: firewalld's zone closes what it does
        # not open, nftables and iptables let it be
        assert reach(cli, mgr1, 9999) in (STOPPED if backend == "firewalld" else THROUGH)

        # a second run and a test run change nothing
        for again in (apply_firewall(salt_cli), apply_firewall(salt_cli, test=True)):
            assert {h: {s: c for s, (_, c) in st.items() if c} for h, st in again.items()} == \
                {h: {} for h in MANAGERS}, again

    # mgr3 leaves the cluster's pillar: its way into mgr1 is taken away, mgr2's stays
    with shadow_pillar(pillar_dir, lb_only_pillar(salt_cli, lab, managers=("mgr1", "mgr2"))):
        assert salt_cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt="mgr1"
                            ).returncode == 0
        apply_firewall(salt_cli, hosts=("mgr1",))
        for port in TCP_PORTS:
            assert reach(mgr3, mgr1, port) in STOPPED, port
            assert reach(mgr2, mgr1, port) in THROUGH, port
        assert udp_arrivals(lab, mgr1, 8301, [mgr3, mgr2]) == {"mgr2"}

    # a reboot: firewalld loads its permanent configuration at boot; nftables and iptables
    # rules are gone until the formula loads them again (the rejoin orchestration does)
    lab.kill("mgr1")
    mgr1.boot()
    if backend == "firewalld":
        assert reach(lb, mgr1, 8300) in STOPPED and reach(mgr2, mgr1, 8300) in THROUGH
        assert reach(mgr3, mgr1, 8300) in STOPPED
    else:
        assert reach(lb, mgr1, 8300) in THROUGH


def test_a_cluster_is_built_and_a_rebooted_manager_rejoins_on_firewalld_hosts(
        firewall_lab, salt_run_cli, salt_cli):
    lab = firewall_lab("firewalld")
    run = orch(salt_run_cli)
    assert run.returncode == 0, run
    assert sorted(nodes(lab["mgr1"])) == list(MANAGERS)
    for name in MANAGERS:
        assert lab[name].run(["firewall-cmd", "--state"]).stdout.strip() == "running"
        rules = lab[name].run(["firewall-cmd", "--permanent", "--list-rich-rules"]).stdout
        assert rules.count('source ipset="cloudify_ha_') == 6, (name, rules)
    # a reboot: firewalld restores the rules, so the rejoin finds nothing to change
    lab.kill("mgr3")
    lab.power_on("mgr3")
    run = OrchRun(salt_run_cli.run("state.orch", "cloudify_ha.orch.rejoin",
                                   "pillar=" + json.dumps({"node": "mgr3"}), _timeout=600))
    assert run.returncode == 0, run
    # (on nftables this step reloads the rules: test_rejoin.py)
    prepare = run["cloudify_ha-rejoin-mgr3-prepare"]
    assert (prepare["result"], prepare["changes"]) == (True, {}), run
    assert {s for s in run.changed() if not s.endswith("-sync")} == set(), run
    wait_until(lambda: nodes(lab["mgr2"]).get("mgr3", {}).get("state") == "replica", 60,
               "mgr3 online again")
