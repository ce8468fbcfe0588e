"""_modules/cloudify_ha_firewall.py: what each host opens to whom, and through which firewall,
from the settings cloudify_ha.settings gives the SLS (pillar.example and variants), with the
host's three probes (firewall-cmd --state, which nft, nft --version) played by a fake."""

import copy
from unittest.mock import patch

import pytest

from formula_code import example_pillar, firewall_plan_module, pillar_util

FP = firewall_plan_module()
P = pillar_util()
MGR1, LB1, CLI1 = "cfy-mgr1.example.com", "cfy-lb1.example.com", "admin1.example.com"
PEERS = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]


class Host:
    """The probes' answers: which tools there are, whether firewalld runs, what nft says."""

    def __init__(self, tools=("nft",), firewalld=False, nft="nftables v1.0.6 (Lester Gooch #5)"):
        self.tools, self.firewalld, self.nft = set(tools), firewalld, nft
        self.calls = []

    def which(self, cmd):
        self.calls.append(["which", cmd])
        return f"/usr/sbin/{cmd}" if cmd in self.tools else None

    def retcode(self, argv, **kwargs):
        assert argv == ["firewall-cmd", "--state"] and kwargs["python_shell"] is False
        self.calls.append(argv)
        return 0 if self.firewalld else 252

    def run_all(self, argv, **kwargs):
        assert argv == ["nft", "--version"] and kwargs["python_shell"] is False
        self.calls.append(argv)
        if self.nft is None:
            return {"retcode": 1, "stdout": "", "stderr": "nft: unknown option"}
        return {"retcode": 0, "stdout": self.nft, "stderr": ""}


def settings(pillar=None, minion=MGR1):
    built = P.for_minion(pillar or example_pillar(), minion)
    assert built["errors"] == [], built["errors"]
    return built["me"], built["clusters"]


def plan(host=None, pillar=None, minion=MGR1):
    host = host or Host()
    funcs = {"cmd.which": host.which, "cmd.retcode": host.retcode, "cmd.run_all": host.run_all}
    with patch.object(FP, "__salt__", funcs, create=True):
        return FP.plan(*settings(pillar, minion))


def changed(**firewall):
    pillar = example_pillar()
    pillar["clusters"]["prod"]["firewall"].update(firewall)
    return pillar


def opening(name, tcp, udp, sources, cluster="prod"):
    return {"cluster": cluster, "name": name, "tcp": tcp, "udp": udp, "sources": sources}


MANAGER_OPENINGS = [
    opening("peers", [8300, 8301, 8500, 22000], [8301], PEERS),
    opening("rest", [80], [], PEERS + ["10.0.0.20", "10.0.1.0/24"]),
    opening("agents", [5671, 53333], [], PEERS + ["10.0.2.0/24"])]


def test_a_manager_opens_its_cluster_rest_and_agent_ports_each_to_its_sources():
    out = plan()
    assert (out["refused"], out["backend"], out["zone"], out["label"]) == (
        None, "nftables", "", "prod")
    assert out["openings"] == MANAGER_OPENINGS
    # the templates' context: every opening with a name for its set, and the names the
    # templates had before (operators' copies use them)
    assert out["context"] == {
        "cluster": "prod",
        "openings": [dict(o, set=f"{o['name']}_{i}") for i, o in enumerate(MANAGER_OPENINGS)],
        "peers": PEERS, "tcp_ports": [8300, 8301, 8500, 22000], "udp_ports": [8301],
        "rest_port": 80, "rest_allowed": PEERS + ["10.0.0.20", "10.0.1.0/24"],
        "agent_ports": [5671, 53333], "agent_allowed": PEERS + ["10.0.2.0/24"]}


@pytest.mark.parametrize("firewall, rest, agents", [
    # a network that holds the managers: listed once (an interval set refuses overlaps)
    ({"rest_sources": ["10.0.0.0/24"], "agent_sources": ["10.0.0.0/16", "10.0.0.12"]},
     ["10.0.0.0/24"], ["10.0.0.0/16"]),
    # every address, on purpose; no agent network: the managers only
    ({"rest_sources": [], "allow_wide_rest_sources": True, "agent_sources": []},
     ["0.0.0.0/0"], PEERS),
    ({"rest_sources": ["10.0.0.20", "0.0.0.0/0"], "allow_wide_rest_sources": True},
     ["0.0.0.0/0"], PEERS + ["10.0.2.0/24"]),
], ids=["networks holding the managers", "every address", "every address among others"])
def test_the_sources_beside_the_managers(firewall, rest, agents):
    out = plan(pillar=changed(**firewall))
    assert [o["sources"] for o in out["openings"]] == [PEERS, rest, agents]


def test_rest_ssl_moves_the_rest_port_to_443():
    pillar = example_pillar()
    pillar["clusters"]["prod"]["rest"]["ssl"] = True
    pillar["clusters"]["prod"]["managers"] = pillar["clusters"]["prod"]["managers"][:1]
    assert plan(pillar=pillar)["openings"][1]["tcp"] == [443]


@pytest.mark.parametrize("host, backend", [
    (Host(tools=("firewall-cmd", "nft"), firewalld=True), "firewalld"),
    (Host(tools=("firewall-cmd", "nft"), firewalld=False), "nftables"),
    (Host(nft="nftables v0.9.0 (Fearless Fosdick)"), "nftables"),
    (Host(nft="nftables v0.9 (Fearless Fosdick)"), "nftables"),
    (Host(nft="nftables v0.8 (Joe Btfsplk)"), "iptables"),
    (Host(nft="nftables v0.8.5 (Capital Steven)"), "iptables"),
    (Host(nft=None), "iptables"),
    (Host(nft="something else"), "iptables"),
    (Host(tools=()), "iptables"),
], ids=["firewalld runs", "firewalld installed, not running", "nft 0.9.0", "nft 0.9",
        "EL7's nft 0.8", "nft 0.8.5", "nft without --version", "nft says no version", "no nft"])
def test_auto_picks_firewalld_then_nftables_where_nft_can_take_the_rules_then_iptables(
        host, backend):
    assert plan(host)["backend"] == backend


@pytest.mark.parametrize("backend", ["iptables", "firewalld"])
def test_a_backend_the_pillar_names_is_used_without_asking_the_host(backend):
    host = Host(tools=())
    assert plan(host, pillar=changed(backend=backend))["backend"] == backend
    assert host.calls == []


@pytest.mark.parametrize("host, found", [
    (Host(tools=()), "this host has no nft (or it does not say its version)"),
    (Host(nft="nftables v0.8 (Joe Btfsplk)"), "this host's nft is 0.8 and the formula's "
                                              "nftables rules need 0.9.0 or newer"),
], ids=["no nft", "nft 0.8"])
def test_nftables_named_where_nft_cannot_take_the_rules_is_refused_naming_the_key(host, found):
    out = plan(host, pillar=changed(backend="nftables"))
    assert (out["backend"], out["openings"]) == (None, [])
    assert out["refused"].startswith("cloudify_ha:clusters:prod:firewall:backend: nftables, but ")
    assert found in out["refused"]
    assert plan(Host(), pillar=changed(backend="nftables"))["backend"] == "nftables"


def test_the_load_balancer_host_opens_its_port_to_its_sources_only():
    out = plan(minion=LB1)
    assert (out["refused"], out["backend"], out["label"]) == (None, "nftables", "prod")
    assert out["openings"] == [opening("lb", [80], [], ["0.0.0.0/0"])]
    assert out["context"]["openings"] == [dict(out["openings"][0], set="lb_0")]
    # the manager's names are empty on a host that manages no cluster
    assert (out["context"]["peers"], out["context"]["rest_port"]) == ([], None)
    pillar = example_pillar()
    pillar["clusters"]["prod"]["loadbalancer"].update(port=443, sources=["192.0.2.0/24"])
    assert plan(minion=LB1, pillar=pillar)["openings"] == [
        opening("lb", [443], [], ["192.0.2.0/24"])]


@pytest.mark.parametrize("minion", [MGR1, LB1])
def test_a_disabled_firewall_opens_nothing_and_asks_the_host_nothing(minion):
    host = Host()
    out = plan(host, pillar=changed(enabled=False), minion=minion)
    assert out == {"refused": None, "backend": None, "zone": "", "label": "", "openings": [],
                   "context": {}}
    assert host.calls == []


def test_a_host_with_no_role_opens_nothing():
    assert plan(minion=CLI1)["openings"] == []


def two_clusters_on_one_lb(port=80, sources=None, lb_of_prod_is_a_manager=False):
    """prod, and staging whose load balancer is prod's LB host (or prod's first manager)."""
    pillar = example_pillar()
    staging = copy.deepcopy(pillar["clusters"]["prod"])
    staging["leader"] = "stg-mgr1"
    staging["managers"] = [
        {"name": f"stg-mgr{i}", "minion_id": f"stg-mgr{i}.example.com",
         "private_ip": f"10.1.0.1{i}", "public_ip": f"192.0.2.2{i}"} for i in (1, 2, 3)]
    staging["database"]["host"] = "10.1.0.5"
    staging["loadbalancer"]["port"] = port
    if sources:
        staging["loadbalancer"]["sources"] = sources
    if lb_of_prod_is_a_manager:
        staging["loadbalancer"]["minion_ids"] = [MGR1]
    pillar["clusters"]["staging"] = staging
    return pillar


def test_a_load_balancer_of_two_clusters_on_one_port_with_the_same_sources_opens_it_once():
    out = plan(minion=LB1, pillar=two_clusters_on_one_lb())
    assert out["label"] == "prod+staging"
    assert out["openings"] == [opening("lb", [80], [], ["0.0.0.0/0"])]
    other = plan(minion=LB1, pillar=two_clusters_on_one_lb(port=8080))
    assert other["openings"] == [opening("lb", [80], [], ["0.0.0.0/0"]),
                                 opening("lb", [8080], [], ["0.0.0.0/0"], cluster="staging")]


def test_one_port_for_two_openings_with_different_sources_is_refused_naming_both():
    out = plan(minion=LB1, pillar=two_clusters_on_one_lb(sources=["192.0.2.0/24"]))
    assert (out["backend"], out["openings"]) == (None, [])
    assert out["refused"] == (
        "cloudify_ha:clusters:staging: port 80/tcp is opened on this host both for prod's lb "
        "(0.0.0.0/0) and for staging's lb (192.0.2.0/24); give them the same sources or "
        "different ports")


def test_a_manager_cannot_also_balance_another_cluster():
    """A minion has one role across the pillar (the hardening round): the firewall never has to
    merge a manager's openings with a load balancer's."""
    errors = P.for_minion(two_clusters_on_one_lb(port=8080, lb_of_prod_is_a_manager=True),
                          MGR1)["errors"]
    assert errors == [
        "cloudify_ha:clusters:staging:loadbalancer:minion_ids:0: 'cfy-mgr1.example.com' is also a "
        "manager (at cloudify_ha:clusters:prod:managers:0): a minion has one role across the "
        "pillar; make another host the load balancer"]


def test_the_label_stays_short_enough_for_an_nftables_comment():
    names = [f"cluster-{i:02d}-" + "x" * 40 for i in range(3)]
    label = FP._label(names)
    assert len(label) <= 64 and label.startswith("cluster-00-") and label.endswith("+2-more")
    assert FP._label(["a", "b"]) == "a+b"


@pytest.mark.parametrize("said, version", [
    ("nftables v1.0.6 (Lester Gooch #5)", [1, 0, 6]), ("nftables v0.8 (Joe Btfsplk)", [0, 8]),
    ("nftables v0.9.0 (Fearless Fosdick)\n", [0, 9, 0]), ("", None), ("nftables", None)])
def test_nft_version_reads_what_nft_says(said, version):
    assert FP.nft_version.__doc__ and "CLI Example" in FP.nft_version.__doc__
    host = Host(nft=said)
    with patch.object(FP, "__salt__", {"cmd.which": host.which, "cmd.run_all": host.run_all},
                      create=True):
        assert FP.nft_version() == version


def test_plan_without_arguments_reads_this_minions_settings_and_refuses_an_invalid_pillar():
    bad = example_pillar()
    bad["clusters"]["prod"]["firewall"]["rest_sources"] = ["0.0.0.0/0"]
    funcs = {"cloudify_ha.settings": lambda: P.for_minion(bad, MGR1)}
    with patch.object(FP, "__salt__", funcs, create=True):
        out = FP.plan()
    assert out["openings"] == [] and out["refused"].startswith(
        "the cloudify_ha pillar is invalid: cloudify_ha:clusters:prod:firewall:rest_sources:0:")
