"""_states/cloudify_ha_firewall.py: every branch, with a fake cmd.run_all that plays a host's
firewall (what is loaded, and what loading a file does)."""

import copy
import ipaddress
import os
from unittest.mock import patch

import pytest

from formula_code import firewall_state_module

FW = firewall_state_module()
MARKER = "cloudify_ha lab 0123456789abcdef"
NFT_FILE, IPT_FILE = "/etc/cloudify_ha/firewall.nft", "/etc/cloudify_ha/firewall.iptables"
IP6T_FILE = "/etc/cloudify_ha/firewall.ip6tables"


class Host:
    """A host's firewall as the commands see it. `load_sets` is the marker a load leaves
    (None: the load does not take), `load_fails` makes the load command exit 1."""

    def __init__(self, marker=None, jump=True, load_sets=MARKER, load_fails=False):
        self.marker, self.jump = marker, jump
        self.load_sets, self.load_fails = load_sets, load_fails
        self.calls = []

    def run_all(self, argv, **kwargs):
        assert kwargs == {"python_shell": False, "ignore_retcode": True,
                          "output_loglevel": "quiet"}
        self.calls.append(argv)
        ok = {"retcode": 0, "stdout": "", "stderr": ""}
        if argv[:3] == ["nft", "list", "table"]:
            if self.marker is None:
                return {"retcode": 1, "stdout": "", "stderr": "No such file or directory"}
            return dict(ok, stdout=f'table inet cloudify_ha {{\n comment "{self.marker}"\n}}')
        if argv[:2] in (["nft", "-f"], ["iptables-restore", "--noflush"],
                        ["ip6tables-restore", "--noflush"]):
            if self.load_fails:
                return {"retcode": 1, "stdout": "", "stderr": "Error: syntax error, line 3"}
            self.marker = self.load_sets
            return ok
        if argv[0] in ("iptables", "ip6tables") and argv[1] == "-C":
            return ok if self.jump else dict(ok, retcode=1)
        if argv[0] in ("iptables", "ip6tables") and argv[1] == "-I":
            self.jump = True
            return ok
        if argv[0] in ("iptables", "ip6tables") and argv[1] == "-S":
            if self.marker is None:
                return {"retcode": 1, "stdout": "", "stderr": "No chain/target/match by that name."}
            return dict(ok, stdout=f'-A CLOUDIFY_HA -m comment --comment "{self.marker}" -j RETURN')
        raise AssertionError(f"unexpected command {argv}")

    @property
    def mutating(self):
        return [c for c in self.calls if c[:2] in (
            ["nft", "-f"], ["iptables-restore", "--noflush"], ["iptables", "-I"],
            ["ip6tables-restore", "--noflush"], ["ip6tables", "-I"])]


def run(host, test=False, ipv6=True, **kwargs):
    exists = os.path.exists
    with patch.object(FW, "__salt__", {"cmd.run_all": host.run_all}, create=True), \
            patch.object(FW, "__opts__", {"test": test}, create=True), \
            patch.object(FW.os.path, "exists",
                         lambda p: ipv6 if p == "/proc/net/if_inet6" else exists(p)):
        return FW.rules_loaded(**kwargs)


BACKENDS = [("nftables", NFT_FILE), ("iptables", IPT_FILE), ("ip6tables", IP6T_FILE)]


@pytest.mark.parametrize("backend,path", BACKENDS)
def test_loaded_rules_are_left_alone(backend, path):
    host = Host(marker=MARKER)
    assert run(host, name=path, backend=backend, marker=MARKER) == {
        "name": path, "changes": {}, "result": True,
        "comment": f"the {backend} rules of {path} are loaded ({MARKER})"}
    assert host.mutating == []


@pytest.mark.parametrize("backend,path", BACKENDS)
def test_missing_or_old_rules_are_loaded_then_checked(backend, path):
    host = Host(marker="cloudify_ha lab ffffffffffffffff")
    assert run(host, name=path, backend=backend, marker=MARKER) == {
        "name": path, "changes": {"loaded": {"old": None, "new": MARKER}}, "result": True,
        "comment": f"the {backend} rules of {path} were loaded"}
    assert host.marker == MARKER
    assert len(host.mutating) == 1


@pytest.mark.parametrize("tool,path", [("iptables", IPT_FILE), ("ip6tables", IP6T_FILE)])
def test_the_jump_from_input_is_added_when_missing(tool, path):
    host = Host(marker=MARKER, jump=False)
    ret = run(host, name=path, backend=tool, marker=MARKER)
    assert ret["result"] is True and ret["changes"]
    assert host.mutating == [[f"{tool}-restore", "--noflush", path],
                             [tool, "-I", "INPUT", "1", "-j", "CLOUDIFY_HA"]]


def test_a_kernel_without_ipv6_needs_no_ip6tables_rules_and_gets_no_command():
    host = Host(marker=None, jump=False)
    assert run(host, ipv6=False, name=IP6T_FILE, backend="ip6tables", marker=MARKER) == {
        "name": IP6T_FILE, "changes": {}, "result": True,
        "comment": "this host's kernel has no IPv6 (/proc/net/if_inet6 is missing): no IPv6 "
                   f"rules are needed, {IP6T_FILE} is not loaded"}
    assert host.calls == []
    # IPv4 is loaded as ever
    assert run(host, ipv6=False, name=IPT_FILE, backend="iptables", marker=MARKER)["changes"]


@pytest.mark.parametrize("backend,path", BACKENDS)
def test_test_mode_reports_and_loads_nothing(backend, path):
    host = Host(marker=None, jump=False)
    assert run(host, test=True, name=path, backend=backend, marker=MARKER) == {
        "name": path, "changes": {"loaded": {"old": None, "new": MARKER}}, "result": None,
        "comment": f"the {backend} rules of {path} would be loaded"}
    assert host.mutating == []


def test_a_failed_load_says_why():
    host = Host(marker=None, load_fails=True)
    assert run(host, name=NFT_FILE, backend="nftables", marker=MARKER) == {
        "name": NFT_FILE, "changes": {}, "result": False,
        "comment": f"loading {NFT_FILE} into nftables failed (exit 1): Error: syntax error, line 3"}


def test_a_load_that_does_not_show_is_not_a_change():
    host = Host(marker=None, load_sets=None)
    assert run(host, name=NFT_FILE, backend="nftables", marker=MARKER) == {
        "name": NFT_FILE, "changes": {}, "result": False,
        "comment": f"{NFT_FILE} was loaded into nftables, but the rules do not carry '{MARKER}' "
                   "afterwards: something else rewrites them"}


def test_unknown_backend_is_refused_before_any_command():
    host = Host()
    assert run(host, name=NFT_FILE, backend="pf", marker=MARKER) == {
        "name": NFT_FILE, "changes": {}, "result": False,
        "comment": "unknown firewall backend 'pf': use one of ip6tables, iptables, nftables"}
    assert host.calls == []


# ---- firewalld ----------------------------------------------------------------------------------
class Firewalld:
    """firewalld as firewall-cmd shows it, in its permanent and its runtime configuration: ipsets
    ({name: (type, entries)}) and each zone's rich rules; like firewalld, a new ipset is
    permanent only, runtime gets it at --reload, a hash:net refuses overlapping entries, one
    command takes several --add-rich-rule/--remove-rich-rule (each its own), and a rule is
    printed back as firewalld writes it (`source NOT`). `sticks` False makes every change exit 0
    and change nothing; `fails`, an argument that makes the command carrying it fail."""

    def __init__(self, sticks=True, default_zone="public", fails=None):
        self.config = {c: {"ipsets": {}, "rules": {}} for c in ("permanent", "runtime")}
        self.sticks, self.default_zone, self.fails = sticks, default_zone, fails
        self.calls = []

    def run_all(self, argv, **kwargs):
        assert kwargs == {"python_shell": False, "ignore_retcode": True,
                          "output_loglevel": "quiet"}
        assert isinstance(argv, list) and argv[0] == "firewall-cmd", argv
        self.calls.append(argv)
        if self.fails and self.fails in argv:
            return {"retcode": 13, "stdout": "", "stderr": "Error: COMMAND_FAILED: 'python-nftables'"
                                                           " failed: internal:0:0-0: Error"}
        args = argv[1:]
        where = "permanent" if "--permanent" in args else "runtime"
        args = [a for a in args if a != "--permanent"]
        conf = self.config[where]
        pairs = [a[2:].partition("=")[::2] for a in args if "=" in a]
        opts = dict(pairs)
        flags = [a for a in args if "=" not in a]
        ok = {"retcode": 0, "stdout": "success", "stderr": ""}
        fail = lambda code, text: {"retcode": code, "stdout": "", "stderr": f"Error: {text}"}  # noqa
        zone = opts.get("zone", self.default_zone)
        rules = conf["rules"].setdefault(zone, set())
        if flags == ["--reload"]:
            if self.sticks:
                self.config["runtime"] = copy.deepcopy(self.config["permanent"])
            return ok
        if flags == ["--get-ipsets"]:
            return dict(ok, stdout=" ".join(sorted(conf["ipsets"])))
        if flags == ["--list-rich-rules"]:
            return dict(ok, stdout="\n".join(sorted(rules)))
        if "new-ipset" in opts:
            if where != "permanent":
                return fail(122, "--new-ipset is a permanent option")
            assert opts.get("option", "family=inet6") == "family=inet6", argv
            if self.sticks:
                conf["ipsets"][opts["new-ipset"]] = (opts["type"], set())
            return ok
        if "ipset" in opts:
            name = opts["ipset"]
            if name not in conf["ipsets"]:
                return fail(135, f"INVALID_IPSET: {name}")
            kind, entries = conf["ipsets"][name]
            if flags == ["--get-entries"]:
                return dict(ok, stdout="\n".join(sorted(entries)))
            if "set-description" in opts:
                return ok
            for op, value in pairs:
                if op == "add-entry":
                    net = ipaddress.ip_network(value)
                    if kind == "hash:net" and any(net.overlaps(ipaddress.ip_network(e))
                                                  for e in entries):
                        return fail(136, f"INVALID_ENTRY: Entry '{value}' overlaps")
                    if self.sticks:
                        entries.add(value)
                elif op == "remove-entry" and self.sticks:
                    entries.discard(value)
            return ok
        if {"add-rich-rule", "remove-rich-rule"} & set(opts):
            for op, rule in pairs:
                rule = rule.replace(" source not ", " source NOT ")
                if op == "add-rich-rule" and self.sticks:
                    rules.add(rule)
                elif op == "remove-rich-rule" and self.sticks:
                    rules.discard(rule)
            return ok
        raise AssertionError(f"unexpected command {argv}")

    @property
    def mutating(self):
        reads = ("--get-ipsets", "--get-entries", "--list-rich-rules")
        return [c for c in self.calls if not any(a in reads for a in c)]


PEERS = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
SETS = dict(FW._ipset("prod", role) for role in FW.ROLES)
PEER_SET, REST_SET, AGENT_SET, LB_SET = SETS
V6_SET = "cloudify_ha_ipv6"


def opening(name, tcp=(), udp=(), sources=(), cluster="prod"):
    return {"cluster": cluster, "name": name, "tcp": list(tcp), "udp": list(udp),
            "sources": list(sources)}


OPENINGS = [opening("peers", [8300], [8301], PEERS),
            opening("rest", [80], [], PEERS + ["10.0.1.0/24"])]


def rules_of(ipset, port, protocol):
    where = f'port port="{port}" protocol="{protocol}"'
    return {f'rule family="ipv4" source ipset="{ipset}" {where} accept',
            f'rule family="ipv4" source NOT ipset="{ipset}" {where} drop',
            f'rule family="ipv6" source NOT ipset="{V6_SET}" {where} drop'}


RULES = rules_of(PEER_SET, 8300, "tcp") | rules_of(PEER_SET, 8301, "udp") | rules_of(
    REST_SET, 80, "tcp")


def present(host, test=False, **kwargs):
    args = {"name": "prod", "openings": OPENINGS, "zone": ""}
    args.update(kwargs)
    with patch.object(FW, "__salt__", {"cmd.run_all": host.run_all}, create=True), \
            patch.object(FW, "__opts__", {"test": test}, create=True):
        return FW.firewalld_present(**args)


def converged(host, **kwargs):
    ret = present(host, **kwargs)
    assert ret["result"] is True, ret
    host.calls.clear()
    return ret


def test_firewalld_ipset_names_fit_firewalld_and_differ_per_cluster():
    assert list(SETS) == [f"{PEER_SET[:-6]}_{role}" for role in ("peers", "rest", "agents", "lb")]
    assert list(SETS.values()) == ["hash:ip", "hash:net", "hash:net", "hash:net"]
    assert all(len(FW._ipset("x" * 63, role)[0]) <= 31 for role in FW.ROLES)
    assert len(V6_SET) <= 31
    assert FW._ipset("prod", "rest") != FW._ipset("staging", "rest")


def test_firewalld_a_new_host_gets_ipsets_rules_and_one_reload_then_a_rerun_changes_nothing():
    host = Firewalld()
    ret = present(host)
    assert ret["result"] is True, ret
    assert "then firewall-cmd --reload" in ret["comment"]
    assert ret["changes"]["permanent"]["ipsets_created"] == [V6_SET, PEER_SET, REST_SET]
    assert ret["changes"]["permanent"]["entries_added"] == {
        PEER_SET: PEERS, REST_SET: ["10.0.0.11/32", "10.0.0.12/31", "10.0.1.0/24"]}
    for conf in ("permanent", "runtime"):
        assert host.config[conf]["rules"]["public"] == RULES
        assert host.config[conf]["ipsets"][PEER_SET] == ("hash:ip", set(PEERS))
        assert host.config[conf]["ipsets"][V6_SET] == ("hash:net", set())
    assert ["firewall-cmd", "--permanent", f"--new-ipset={V6_SET}", "--type=hash:net",
            "--option=family=inet6"] in host.calls
    assert ["firewall-cmd", "--reload"] in host.calls
    assert not [c for c in host.mutating if "--permanent" not in c and c[1:] != ["--reload"]]
    # the rules in one command
    assert len([c for c in host.calls if any(a.startswith("--add-rich-rule=") for a in c)]) == 1
    host.calls.clear()
    again = present(host)
    assert (again["result"], again["changes"], host.mutating) == (True, {}, [])
    assert again["comment"] == "firewalld has the rules of prod: 9 rich rules on 3 ipsets"


def test_firewalld_drops_every_other_source_of_each_port_ipv6_included():
    """The drop rules name the port's own ipset (NOT) and, for IPv6, the empty one: a source
    outside the ipset is stopped whatever the zone's target, services or ports allow."""
    host = Firewalld()
    converged(host)
    drops = {r for r in host.config["runtime"]["rules"]["public"] if r.endswith(" drop")}
    assert drops == {
        f'rule family="{family}" source NOT ipset="{ipset}" port port="{port}" '
        f'protocol="{proto}" drop'
        for port, proto, own in ((8300, "tcp", PEER_SET), (8301, "udp", PEER_SET),
                                 (80, "tcp", REST_SET))
        for family, ipset in (("ipv4", own), ("ipv6", V6_SET))}


def test_firewalld_agents_and_a_load_balancer_each_get_their_ipset_and_rules():
    host = Firewalld()
    openings = OPENINGS + [opening("agents", [5671, 53333], [], PEERS + ["10.0.2.0/24"]),
                           opening("lb", [8080], [], ["0.0.0.0/0"], cluster="other")]
    ret = present(host, openings=openings)
    assert ret["result"] is True, ret
    other_lb = FW._ipset("other", "lb")[0]
    assert host.config["runtime"]["ipsets"][AGENT_SET] == (
        "hash:net", {"10.0.0.11/32", "10.0.0.12/31", "10.0.2.0/24"})
    assert host.config["runtime"]["ipsets"][other_lb] == ("hash:net",
                                                           {"0.0.0.0/1", "128.0.0.0/1"})
    assert host.config["runtime"]["rules"]["public"] == (
        RULES | rules_of(AGENT_SET, 5671, "tcp") | rules_of(AGENT_SET, 53333, "tcp")
        | rules_of(other_lb, 8080, "tcp"))


def test_firewalld_a_manager_gone_from_pillar_and_a_new_rest_port_are_taken_away_and_only_ours():
    host = Firewalld()
    converged(host)
    theirs = 'rule family="ipv4" source address="10.9.9.9" port port="80" protocol="tcp" accept'
    for conf in ("permanent", "runtime"):
        host.config[conf]["rules"]["public"].add(theirs)
    ret = present(host, openings=[opening("peers", [8300], [8301], PEERS[:2]),
                                  opening("rest", [443], [], ["0.0.0.0/0"])])
    assert ret["result"] is True, ret
    for conf in ("permanent", "runtime"):
        assert ret["changes"][conf]["entries_removed"] == {
            PEER_SET: ["10.0.0.13"],
            REST_SET: ["10.0.0.11/32", "10.0.0.12/31", "10.0.1.0/24"]}
        assert ret["changes"][conf]["entries_added"] == {REST_SET: ["0.0.0.0/1", "128.0.0.0/1"]}
        assert set(ret["changes"][conf]["rules_removed"]) == rules_of(REST_SET, 80, "tcp")
        rules = host.config[conf]["rules"]["public"]
        assert theirs in rules and not any('port="80"' in r for r in rules if r != theirs)
        assert rules_of(REST_SET, 443, "tcp") <= rules
    assert ["firewall-cmd", "--reload"] not in host.calls  # the ipsets were there: no reload


def test_firewalld_the_rules_of_a_cluster_this_host_left_are_taken_away():
    host = Firewalld()
    converged(host, openings=OPENINGS + [opening("lb", [8080], [], ["10.5.0.0/16"],
                                                 cluster="old")])
    ret = present(host)
    assert ret["result"] is True, ret
    old_lb = FW._ipset("old", "lb")[0]
    assert set(ret["changes"]["runtime"]["rules_removed"]) == rules_of(old_lb, 8080, "tcp")
    assert host.config["runtime"]["rules"]["public"] == RULES


def test_firewalld_an_overlapping_source_is_collapsed_before_it_reaches_the_hash_net():
    host = Firewalld()
    rest = lambda sources: [OPENINGS[0], opening("rest", [80], [], sources)]  # noqa: E731
    ret = present(host, openings=rest(["10.0.1.5", "10.0.1.0/24", "10.0.0.0/8"]))
    assert ret["result"] is True, ret
    assert host.config["runtime"]["ipsets"][REST_SET] == ("hash:net", {"10.0.0.0/8"})
    everywhere = present(host, openings=rest(["10.0.1.0/24", "0.0.0.0/0"]))
    assert everywhere["result"] is True, everywhere
    assert host.config["runtime"]["ipsets"][REST_SET] == ("hash:net",
                                                           {"0.0.0.0/1", "128.0.0.0/1"})


def test_firewalld_runtime_drift_is_repaired_without_a_reload():
    host = Firewalld()
    converged(host)
    host.config["runtime"]["ipsets"][PEER_SET][1].discard("10.0.0.12")
    host.config["runtime"]["rules"]["public"].clear()
    ret = present(host)
    assert ret["result"] is True and set(ret["changes"]) == {"runtime"}, ret
    assert all("--permanent" not in c for c in host.mutating) and host.mutating
    assert ["firewall-cmd", "--reload"] not in host.calls


def test_firewalld_an_entry_someone_put_in_the_ipv6_ipset_is_taken_out():
    host = Firewalld()
    converged(host)
    for conf in ("permanent", "runtime"):
        host.config[conf]["ipsets"][V6_SET][1].add("fd00::/64")
    ret = present(host)
    assert ret["result"] is True, ret
    assert ret["changes"]["runtime"]["entries_removed"] == {V6_SET: ["fd00::/64"]}
    assert host.config["runtime"]["ipsets"][V6_SET] == ("hash:net", set())


def test_firewalld_in_a_named_zone():
    host = Firewalld()
    converged(host, zone="internal")
    assert host.config["runtime"]["rules"]["internal"] == RULES
    assert not host.config["runtime"]["rules"].get("public")


def test_firewalld_test_mode_reports_and_changes_nothing():
    host = Firewalld()
    ret = present(host, test=True)
    assert ret["result"] is None and "would be changed" in ret["comment"]
    assert "then firewall-cmd --reload" in ret["comment"]
    assert set(ret["changes"]["permanent"]["rules_added"]) == RULES
    assert host.mutating == []


def test_firewalld_a_change_that_does_not_show_is_not_a_change():
    host = Firewalld()
    converged(host)
    host.config["runtime"]["ipsets"][PEER_SET][1].discard("10.0.0.12")
    host.sticks = False
    ret = present(host)
    assert (ret["result"], ret["changes"]) == (False, {})
    assert "still differs afterwards" in ret["comment"]
    assert "run the state again" in ret["comment"]


def test_firewalld_a_failed_command_says_which_and_why():
    host = Firewalld(fails="--reload")
    ret = present(host)
    assert (ret["result"], ret["changes"]) == (False, {})
    assert ret["comment"].startswith("firewall-cmd --reload failed (exit 13): Error: COMMAND_")
    assert ret["comment"].endswith("run the state again, it starts from what firewalld holds")


def test_firewalld_a_failed_read_changes_nothing():
    host = Firewalld(fails="--get-ipsets")
    ret = present(host)
    assert (ret["result"], ret["changes"], host.mutating) == (False, {}, [])
    assert ret["comment"].startswith("firewall-cmd --permanent --get-ipsets failed (exit 13)")
    assert "run the state again" not in ret["comment"]


@pytest.mark.parametrize("kwargs, where", [
    ({"openings": [opening("peers", [8300], [], ["10.0.0.12\" accept rule family=\"ipv4"])]},
     "openings:0:sources"),
    ({"openings": [opening("rest", [80], [], ["10.0.0.12/24"])]}, "openings:0:sources"),
    ({"openings": [opening("rest", [80], [], [])]}, "openings:0:sources"),
    ({"openings": [opening("rest", [80], [], "10.0.0.0/24")]}, "openings:0:sources"),
    ({"openings": [opening("rest", [80], [], ["fd00::/64"])]}, "openings:0:sources"),
    ({"openings": "peers"}, "openings must be a list"),
    ({"openings": [opening("peers", ["22; reboot"], [], PEERS)]}, "openings:0:tcp"),
    ({"openings": [opening("peers", [True], [], PEERS)]}, "openings:0:tcp"),
    ({"openings": [opening("peers", [], [70000], PEERS)]}, "openings:0:udp"),
    ({"openings": [opening("web", [80], [], PEERS)]}, "openings:0:name"),
    ({"openings": [opening("rest", [80], [], PEERS, cluster="")]}, "openings:0:cluster"),
    ({"openings": [dict(opening("rest", [80], [], PEERS), action="accept")]}, "openings:0"),
    ({"openings": [opening("rest", [80], [], PEERS), opening("rest", [443], [], PEERS)]},
     "openings:1"),
    ({"openings": [opening("rest", [80], [], PEERS), opening("lb", [80], [], ["0.0.0.0/0"])]},
     "openings:1:tcp: port 80 is also in openings:0"),
    ({"zone": "public --permanent"}, "zone"),
    ({"name": ""}, "name"),
])
def test_firewalld_a_value_that_is_not_plain_data_is_refused_before_any_command(kwargs, where):
    host = Firewalld()
    ret = present(host, **kwargs)
    assert (ret["result"], ret["changes"]) == (False, {})
    assert ret["comment"].startswith(where) and ret["comment"].endswith("nothing was changed")
    assert host.calls == []


def test_the_states_zone_rule_is_the_pillars():
    """The state checks its zone itself (it can be called without the formula's pillar): the
    same rule as the pillar's validation, not a second one that could drift."""
    from formula_code import pillar_util  # pylint: disable=import-outside-toplevel
    assert FW.ZONE_RE.pattern == pillar_util().FIREWALLD_ZONE_RE.pattern


def test_the_states_roles_are_the_plans():
    """Every opening the plan makes has an ipset of its own in the state."""
    from formula_code import firewall_plan_module  # pylint: disable=import-outside-toplevel
    plan = firewall_plan_module()
    c = {"name": "prod", "managers": [{"private_ip": ip} for ip in PEERS],
         "rest": {"ssl": False}, "loadbalancer": {"port": 80, "sources": ["0.0.0.0/0"]},
         "firewall": {"rest_sources": ["10.0.1.0/24"], "agent_sources": []}}
    made = [o["name"] for o in plan._manager_openings(c)] + [plan._lb_opening(c)["name"]]
    assert made == list(FW.ROLES)
