"""The cluster firewall on each backend an EL7 or Debian manager has, proven by real traffic:
nftables (Debian's default), iptables (no nft) and firewalld (CentOS 7's default, run for real
in each host with its own D-Bus). The cluster ports open between the managers only (8301 on
udp too), the REST port from the pillar's sources only, everything else as the backend leaves
it; a re-run changes nothing; a manager gone from pillar loses its way in; a reboot brings the
rules back the way the backend does. And one whole build and rejoin on firewalld hosts.

Each test installs its hosts' firewall with a reset (Lab.set_firewall takes effect at a
reinstall); the module puts the session's nftables hosts back at its end."""

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
    args = ["state.apply", "cloudify_ha.firewall"] + (["test=True"] if test else [])
    ret = salt_cli.run("-L", *args, minion_tgt=",".join(hosts), _timeout=180)
    assert isinstance(ret.data, dict) and sorted(ret.data) == sorted(hosts), ret
    out = {}
    for host, states in ret.data.items():
        assert isinstance(states, dict), (host, states)
        out[host] = {key.split("_|-")[1]: (v["result"], v["changes"]) for key, v in states.items()}
        assert all(r is True or (test and r is None) for r, _ in out[host].values()), (host, states)
    return out


def changed(applied):
    return {host: {sid: c for sid, (_, c) in states.items() if c}
            for host, states in applied.items()}


@pytest.fixture(scope="module")
def firewall_lab(lab, salt_cli):
    """use({host: firewall}): the lab reset with the managers' OS on those firewalls (the
    others on nftables) and the formula's modules synced to them, as the orchestration's first
    step does. The session's nftables managers again after the module."""
    def use(firewalls):
        for name in MANAGERS:
            lab.set_firewall(firewalls.get(name, "nftables"), [name])
        lab.reset()
        ret = salt_cli.run("saltutil.sync_all", minion_tgt="mgr*")
        assert ret.returncode == 0, ret
        return lab
    yield use
    lab.set_firewall("nftables")
    lab.reset()


def lb_only_pillar(salt_cli, lab, managers=MANAGERS):
    """The session's pillar with the REST port open to the load balancer only (beside the
    managers), and the cluster's managers cut to `managers` (the first one leads)."""
    pillar = deep(minion_pillar(salt_cli))
    cluster = pillar["clusters"]["lab"]
    cluster["firewall"]["rest_sources"] = [lab["lb"].ip]
    cluster["managers"] = [m for m in cluster["managers"] if m["name"] in managers]
    cluster["leader"] = managers[0]
    return pillar


# one manager per backend: each host's firewall is its own, and a cluster may mix them
BACKEND_OF = {"mgr1": "nftables", "mgr2": "iptables", "mgr3": "firewalld"}


def test_each_backend_lets_the_cluster_in_and_nobody_else(firewall_lab, salt_cli, pillar_dir):
    lab = firewall_lab(BACKEND_OF)
    lb, cli = lab["lb"], lab["cli"]
    with shadow_pillar(pillar_dir, lb_only_pillar(salt_cli, lab)):
        assert salt_cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt="*").returncode == 0
        first = apply_firewall(salt_cli)
        for name, backend in BACKEND_OF.items():  # the backend found on the host (pillar: auto)
            assert [sid for sid in changed(first)[name]] and all(
                f"-firewall-{backend}-" in sid for sid in changed(first)[name]), first
        for name in MANAGERS:
            dst, peer = lab[name], lab[next(m for m in MANAGERS if m != name)]
            for port in TCP_PORTS:
                assert reach(peer, dst, port) in THROUGH, (name, port)
                assert reach(lb, dst, port) in STOPPED, (name, port)
            assert udp_arrivals(lab, dst, 8301, [lb, cli, peer]) == {peer.name}, name
            # the REST port: from the managers and the pillar's sources only
            assert reach(lb, dst, 80) in THROUGH and reach(peer, dst, 80) in THROUGH, name
            assert reach(cli, dst, 80) in STOPPED, name
            # every other port as the backend leaves it: firewalld's zone closes what it does
            # not open, nftables and iptables let it be
            assert reach(cli, dst, 9999) in (
                STOPPED if BACKEND_OF[name] == "firewalld" else THROUGH), name
        # a second run and a test run change nothing
        assert changed(apply_firewall(salt_cli)) == {m: {} for m in MANAGERS}
        assert changed(apply_firewall(salt_cli, test=True)) == {m: {} for m in MANAGERS}

    # mgr2 leaves the cluster's pillar: its way into the nftables and the firewalld host is
    # taken away, the other's stays
    with shadow_pillar(pillar_dir, lb_only_pillar(salt_cli, lab, managers=("mgr1", "mgr3"))):
        assert salt_cli.run("-L", "saltutil.refresh_pillar", "wait=True",
                            minion_tgt="mgr1,mgr3").returncode == 0
        apply_firewall(salt_cli, hosts=("mgr1", "mgr3"))
        for name, other in (("mgr1", "mgr3"), ("mgr3", "mgr1")):
            for port in TCP_PORTS:
                assert reach(lab["mgr2"], lab[name], port) in STOPPED, (name, port)
                assert reach(lab[other], lab[name], port) in THROUGH, (name, port)
            assert udp_arrivals(lab, lab[name], 8301, [lab["mgr2"], lab[other]]) == {other}

    # a reboot: firewalld loads its permanent configuration at boot; the nftables and iptables
    # rules are gone until the formula loads them again (the rejoin orchestration does)
    for name in MANAGERS:
        lab.kill(name)
        lab[name].boot()
    assert reach(lb, lab["mgr3"], 8300) in STOPPED
    assert reach(lab["mgr2"], lab["mgr3"], 8300) in STOPPED
    assert reach(lab["mgr1"], lab["mgr3"], 8300) in THROUGH
    assert reach(lb, lab["mgr1"], 8300) in THROUGH and reach(lb, lab["mgr2"], 8300) in THROUGH


def test_a_cluster_is_built_and_a_rebooted_manager_rejoins_on_firewalld_hosts(
        firewall_lab, salt_run_cli, salt_cli):
    lab = firewall_lab({name: "firewalld" for name in MANAGERS})
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
