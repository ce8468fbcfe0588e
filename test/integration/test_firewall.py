"""The firewall on each backend an EL7 or Debian host has, proven by real traffic over IPv4 and
IPv6: nftables (Debian's default), iptables with ip6tables (no nft) and firewalld (CentOS 7's
default, run for real in each host with its own D-Bus). On a manager the cluster ports open
between the managers only (8301 on udp too), the REST port to the managers and
firewall:rest_sources, 5671 and 53333 to the managers and firewall:agent_sources; on the load
balancer host its port to loadbalancer:sources; each closed to every other source and to every
IPv6 source; every other port as the backend leaves it. firewalld keeps them closed in a zone
that already allows http and in one whose target is ACCEPT. A re-run and a test run change
nothing; a manager gone from pillar and a load balancer source gone lose their way in; a reboot
brings the rules back the way the backend does. And one whole build, its load balancer and a
rejoin on firewalld hosts.

The hosts have IPv6 addresses on the bridge for this module (Lab.set_ipv6). Each test installs
its hosts' firewall with a reset (Lab.set_firewall takes effect at a reinstall); the module puts
the session's nftables hosts back at its end."""

import json
import os
import sys
import textwrap
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from lab.formula import OrchRun, deep, minion_pillar, nodes, orch, shadow_pillar
from lab.hosts import reach
from lab.proc import wait_until

MANAGERS = ("mgr1", "mgr2", "mgr3")
FIREWALLED = MANAGERS + ("lb",)
TCP_PORTS = (8300, 8301, 8500, 22000)
AGENT_PORTS = (5671, 53333)
REST = 80
OTHER = 9999  # a port the formula does not handle
# the load balancer's health check user's password (a cluster with a load balancer needs one)
CHECK_PASSWORD = "Check-" + uuid.uuid4().hex[:12]
# what reach() says, as a firewall sees it: let through (a listener answered, or the host's
# stack refused: nothing listens) or stopped (no answer, or an ICMP error)
THROUGH, STOPPED = {"open", "refused"}, {"dropped", "rejected"}

# a UDP listener (IPv4 and IPv6) that writes each datagram's text to a file, after a first line
# once bound
LISTEN_UDP = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", int(sys.argv[1])))
    with open(sys.argv[2], "a", buffering=1) as out:
        out.write("bound\\n")
        while True:
            out.write(s.recv(100).decode() + "\\n")
""")
SEND_UDP = ("import socket, sys; s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else "
            "socket.AF_INET, socket.SOCK_DGRAM); "
            "[s.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2]))) for _ in range(3)]")


def udp_arrivals(lab, dst, port, senders, family=4):
    """Which of `senders` (host, IPv4 or 6) a UDP listener on dst:port hears from: each sends
    three datagrams, in order, then dst's own loopback three, which are awaited (a datagram a
    firewall let through would have arrived before them)."""
    path = f"/tmp/{lab.dir.name}-udp-{uuid.uuid4().hex[:8]}"
    listener = dst.popen([sys.executable, "-c", LISTEN_UDP, str(port), path])
    try:
        wait_until(lambda: _lines(path)[:1] == ["bound"], 10, f"a UDP listener on {dst.name}")
        address = dst.ip if family == 4 else dst.ipv6
        for src in senders:
            src.run([sys.executable, "-c", SEND_UDP, address, str(port), src.name])
        dst.run([sys.executable, "-c", SEND_UDP, "::1", str(port), "the-end"])
        wait_until(lambda: "the-end" in _lines(path), 10, f"the datagrams to {dst.name}:{port}")
        return {line for line in _lines(path)[1:]} - {"the-end"}
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


def apply_firewall(salt_cli, hosts=FIREWALLED, test=False):
    """state.apply cloudify_ha.firewall on the hosts: {host: {state id: (result, changes)}}."""
    args = ["state.apply", "cloudify_ha.firewall"] + (["test=True"] if test else [])
    ret = salt_cli.run("-L", *args, minion_tgt=",".join(hosts), _timeout=180)
    # salt-factories hands one minion's answer back without its minion id
    data = {hosts[0]: ret.data} if len(hosts) == 1 else ret.data
    assert isinstance(data, dict) and sorted(data) == sorted(hosts), ret
    out = {}
    for host, states in data.items():
        assert isinstance(states, dict), (host, states)
        out[host] = {key.split("_|-")[1]: (v["result"], v["changes"]) for key, v in states.items()}
        # what each run costs (printed, never asserted)
        print(f"{host}: cloudify_ha.firewall{' test=True' if test else ''} "
              f"{sum(v.get('duration', 0) for v in states.values()) / 1000:.1f} s, "
              f"{sum(1 for v in states.values() if v['changes'])} changed")
        assert all(r is True or (test and r is None) for r, _ in out[host].values()), (host, states)
    return out


def changed(applied):
    return {host: {sid: c for sid, (_, c) in states.items() if c}
            for host, states in applied.items()}


def refresh_pillar(salt_cli, hosts):
    ret = salt_cli.run("-L", "saltutil.refresh_pillar", "wait=True", minion_tgt=",".join(hosts))
    assert ret.returncode == 0, ret


@pytest.fixture(scope="module")
def firewall_lab(lab, salt_cli):
    """use({host: firewall}): the lab reset with the managers' and the LB host's OS on those
    firewalls (the others on nftables) and the formula's modules synced to them, as the
    orchestration's first step does; every host with an IPv6 address for the module. The
    session's nftables hosts, without IPv6, after it."""
    def use(firewalls):
        for name in FIREWALLED:
            lab.set_firewall(firewalls.get(name, "nftables"), [name])
        lab.reset()
        ret = salt_cli.run("-L", "saltutil.sync_all", minion_tgt=",".join(FIREWALLED))
        assert ret.returncode == 0, ret
        return lab
    lab.set_ipv6(True)
    try:
        yield use
    finally:
        lab.set_ipv6(False)
        lab.set_firewall("nftables", FIREWALLED)
        lab.reset()


def firewall_pillar(salt_cli, lab, managers=MANAGERS, lb_sources=("cli",)):
    """The session's pillar with the REST port open to the load balancer (beside the managers),
    the agents' ports to the CLI host (the agents' network here), the cluster's managers cut to
    `managers` (the first one leads) and the lb host its load balancer, open to `lb_sources`."""
    pillar = deep(minion_pillar(salt_cli))
    cluster = pillar["clusters"]["lab"]
    cluster["firewall"].update(rest_sources=[lab["lb"].ip], agent_sources=[lab["cli"].ip])
    cluster["managers"] = [m for m in cluster["managers"] if m["name"] in managers]
    cluster["leader"] = managers[0]
    cluster["loadbalancer"] = {"minion_ids": ["lb"], "port": REST,
                               "sources": [lab[h].ip for h in lb_sources],
                               "check_password": CHECK_PASSWORD}
    return pillar


def firewall_cmd(host, *args):
    proc = host.run(["firewall-cmd", *args], check=False)
    assert proc.returncode == 0, (host.name, args, proc.stdout, proc.stderr)
    return proc.stdout.strip()


def check_manager(lab, name, peer, others):
    """Every port of manager `name` from an allowed and a stopped source, over IPv4 and IPv6,
    and a port the formula does not handle (`others`: THROUGH or STOPPED, as the host's
    firewall leaves it): {(port, who, family): what reach() said} for every one that is not
    what it must be."""
    lb, cli = lab["lb"], lab["cli"]
    wanted = {}
    for port in TCP_PORTS:
        wanted.update({(port, peer, 4): THROUGH, (port, lb, 4): STOPPED, (port, peer, 6): STOPPED})
    wanted.update({(REST, lb, 4): THROUGH, (REST, peer, 4): THROUGH, (REST, cli, 4): STOPPED,
                   (REST, lb, 6): STOPPED})
    for port in AGENT_PORTS:
        wanted.update({(port, cli, 4): THROUGH, (port, peer, 4): THROUGH,
                       (port, lb, 4): STOPPED, (port, cli, 6): STOPPED})
    wanted.update({(OTHER, cli, 4): others, (OTHER, cli, 6): others})
    return wrong_reaches(lab[name], wanted)


def wrong_reaches(dst, wanted):
    """{(port, source host, family): set of what reach() may say} tried at once (a dropped
    connection waits 0.5 s): {(port, source name, family): what it said} where it is wrong."""
    with ThreadPoolExecutor(8) as pool:
        got = dict(zip(wanted, pool.map(lambda k: reach(k[1], dst, k[0], k[2]), wanted)))
    return {(port, src.name, family): said for (port, src, family), said in got.items()
            if said not in wanted[port, src, family]}


# one manager per backend: each host's firewall is its own, and a cluster may mix them; the
# load balancer host on iptables, then on nftables (on firewalld: the build test)
BACKEND_OF = {"mgr1": "nftables", "mgr2": "iptables", "mgr3": "firewalld", "lb": "iptables"}


def test_each_backend_lets_each_port_in_from_its_sources_only_over_ipv4_and_ipv6(
        firewall_lab, salt_cli, pillar_dir):
    lab = firewall_lab(BACKEND_OF)
    lb, cli, mgr1 = lab["lb"], lab["cli"], lab["mgr1"]
    # mgr3's zone already lets http in: the formula's rules must close it to others anyway
    firewall_cmd(lab["mgr3"], "--permanent", "--add-service=http")
    firewall_cmd(lab["mgr3"], "--add-service=http")
    assert reach(cli, lab["mgr3"], REST) in THROUGH
    with shadow_pillar(pillar_dir, firewall_pillar(salt_cli, lab)):
        refresh_pillar(salt_cli, FIREWALLED)
        first = apply_firewall(salt_cli)
        for name, backend in BACKEND_OF.items():  # the backend found on the host (pillar: auto)
            kinds = {"iptables": ("iptables", "ip6tables")}.get(backend, (backend,))
            assert {sid.split("-")[2] for sid in changed(first)[name]} == set(kinds), first
        for name in MANAGERS:
            peer = lab[next(m for m in MANAGERS if m != name)]
            # every other port as the backend leaves it, over both families: firewalld's zone
            # closes what it does not open, nftables and iptables let it be
            others = STOPPED if BACKEND_OF[name] == "firewalld" else THROUGH
            assert check_manager(lab, name, peer, others) == {}, name
            assert udp_arrivals(lab, lab[name], 8301, [lb, cli, peer]) == {peer.name}, name
            assert udp_arrivals(lab, lab[name], 8301, [peer], family=6) == set(), name
        # the load balancer's port: from its sources only, and from no IPv6 source
        assert reach(cli, lb, REST) in THROUGH and reach(mgr1, lb, REST) in STOPPED
        assert reach(cli, lb, REST, 6) in STOPPED
        assert reach(mgr1, lb, OTHER) in THROUGH and reach(mgr1, lb, OTHER, 6) in THROUGH
        # a second run and a test run change nothing
        assert changed(apply_firewall(salt_cli)) == {h: {} for h in FIREWALLED}
        assert changed(apply_firewall(salt_cli, test=True)) == {h: {} for h in FIREWALLED}

        # a zone whose target is ACCEPT lets every other port in, and still none of these
        mgr3 = lab["mgr3"]
        zone = firewall_cmd(mgr3, "--get-default-zone")
        firewall_cmd(mgr3, "--permanent", f"--zone={zone}", "--set-target=ACCEPT")
        firewall_cmd(mgr3, "--reload")
        assert reach(cli, mgr3, OTHER) in THROUGH and reach(cli, mgr3, OTHER, 6) in THROUGH
        assert check_manager(lab, "mgr3", mgr1, THROUGH) == {}
        assert changed(apply_firewall(salt_cli, hosts=("mgr3",))) == {"mgr3": {}}

    # mgr2 leaves the cluster's pillar and the load balancer is open to mgr1 instead of cli:
    # their way in is taken away, the others' stays
    pillar = firewall_pillar(salt_cli, lab, managers=("mgr1", "mgr3"), lb_sources=("mgr1",))
    with shadow_pillar(pillar_dir, pillar):
        refresh_pillar(salt_cli, ("mgr1", "mgr3", "lb"))
        apply_firewall(salt_cli, hosts=("mgr1", "mgr3", "lb"))
        for name, other in (("mgr1", "mgr3"), ("mgr3", "mgr1")):
            ports = TCP_PORTS + AGENT_PORTS + (REST,)
            assert wrong_reaches(lab[name], {
                **{(port, lab["mgr2"], 4): STOPPED for port in ports},
                **{(port, lab[other], 4): THROUGH for port in ports}}) == {}, name
            assert udp_arrivals(lab, lab[name], 8301, [lab["mgr2"], lab[other]]) == {other}
        assert reach(cli, lb, REST) in STOPPED and reach(mgr1, lb, REST) in THROUGH

        # the load balancer host on nftables: the same rules from the same state
        lab.set_firewall("nftables", ["lb"])
        lab.wipe("lb")
        ret = apply_firewall(salt_cli, hosts=("lb",))
        assert set(changed(ret)["lb"]) == {"cloudify_ha-firewall-nftables-file",
                                           "cloudify_ha-firewall-nftables-loaded"}, ret
        assert reach(cli, lb, REST) in STOPPED and reach(mgr1, lb, REST) in THROUGH
        assert reach(mgr1, lb, REST, 6) in STOPPED and reach(cli, lb, OTHER, 6) in THROUGH
        assert changed(apply_firewall(salt_cli, hosts=("lb",))) == {"lb": {}}

    # a reboot: firewalld loads its permanent configuration at boot; the nftables and iptables
    # rules are gone until the formula loads them again (the rejoin orchestration does)
    for name in MANAGERS:
        lab.kill(name)
        lab[name].boot()
    assert reach(lb, lab["mgr3"], 8300) in STOPPED
    assert reach(lab["mgr2"], lab["mgr3"], 8300) in STOPPED
    assert reach(lab["mgr1"], lab["mgr3"], 8300) in THROUGH
    assert reach(lab["mgr1"], lab["mgr3"], 8300, 6) in STOPPED
    assert reach(lb, lab["mgr1"], 8300) in THROUGH and reach(lb, lab["mgr2"], 8300) in THROUGH


def test_a_cluster_and_its_load_balancer_are_built_and_a_rebooted_manager_rejoins_on_firewalld_hosts(
        firewall_lab, salt_run_cli, salt_cli, pillar_dir):
    lab = firewall_lab({name: "firewalld" for name in FIREWALLED})
    cli, lb, mgr1 = lab["cli"], lab["lb"], lab["mgr1"]
    pillar = deep(minion_pillar(salt_cli))
    pillar["clusters"]["lab"]["loadbalancer"] = {
        "minion_ids": ["lb"], "port": REST, "sources": [cli.ip], "inter": "500ms", "fall": 2,
        "rise": 1, "check_password": CHECK_PASSWORD}
    with shadow_pillar(pillar_dir, pillar):
        refresh_pillar(salt_cli, FIREWALLED + ("cli",))
        run = orch(salt_run_cli)
        assert run.returncode == 0, run
        assert sorted(nodes(lab["mgr1"])) == list(MANAGERS)
        for name in MANAGERS:
            assert lab[name].run(["firewall-cmd", "--state"]).stdout.strip() == "running"
            rules = lab[name].run(["firewall-cmd", "--permanent", "--list-rich-rules"]).stdout
            # 8 ports: each an accept rule for its ipset, a drop for the rest and one for IPv6
            assert rules.count('source ipset="cloudify_ha_') == 8, (name, rules)
            assert rules.count('source NOT ipset="cloudify_ha_') == 16, (name, rules)
        # the orchestration's load balancer step opened HAProxy's port to its sources only
        assert reach(cli, lb, REST) == "open"
        assert reach(mgr1, lb, REST) in STOPPED and reach(cli, lb, REST, 6) in STOPPED
        assert reach(cli, lb, OTHER) in STOPPED  # its zone closes the rest
        # a source taken out of pillar loses its way in
        pillar["clusters"]["lab"]["loadbalancer"]["sources"] = [mgr1.ip]
        with shadow_pillar(pillar_dir, pillar):
            refresh_pillar(salt_cli, ("lb",))
            ret = apply_firewall(salt_cli, hosts=("lb",))
            assert changed(ret)["lb"], ret
            assert reach(cli, lb, REST) in STOPPED and reach(mgr1, lb, REST) == "open"
            assert changed(apply_firewall(salt_cli, hosts=("lb",))) == {"lb": {}}
        refresh_pillar(salt_cli, ("lb",))
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
