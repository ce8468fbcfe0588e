"""_states/cloudify_ha_firewall.py: every branch, with a fake cmd.run_all that plays a host's
firewall (what is loaded, and what loading a file does)."""

import copy
import ipaddress
from unittest.mock import patch

import pytest

from formula_code import firewall_state_module

FW = firewall_state_module()
MARKER = "cloudify_ha lab 0123456789abcdef"
NFT_FILE, IPT_FILE = "/etc/cloudify_ha/firewall.nft", "/etc/cloudify_ha/firewall.iptables"


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
        if argv[:2] in (["nft", "-f"], ["iptables-restore", "--noflush"]):
            if self.load_fails:
                return {"retcode": 1, "stdout": "", "stderr": "Error: syntax error, line 3"}
            self.marker = self.load_sets
            return ok
        if argv[:2] == ["iptables", "-C"]:
            return ok if self.jump else dict(ok, retcode=1)
        if argv[:2] == ["iptables", "-I"]:
            self.jump = True
            return ok
        if argv[:2] == ["iptables", "-S"]:
            if self.marker is None:
                return {"retcode": 1, "stdout": "", "stderr": "No chain/target/match by that name."}
            return dict(ok, stdout=f'-A CLOUDIFY_HA -m comment --comment "{self.marker}" -j RETURN')
        raise AssertionError(f"unexpected command {argv}")

    @property
    def mutating(self):
        return [c for c in self.calls if c[:2] in (["nft", "-f"], ["iptables-restore", "--noflush"],
                                                   ["iptables", "-I"])]


def run(host, test=False, **kwargs):
    with patch.object(FW, "__salt__", {"cmd.run_all": host.run_all}, create=True), \
            patch.object(FW, "__opts__", {"test": test}, create=True):
        return FW.rules_loaded(**kwargs)


@pytest.mark.parametrize("backend,path", [("nftables", NFT_FILE), ("iptables", IPT_FILE)])
def test_loaded_rules_are_left_alone(backend, path):
    host = Host(marker=MARKER)
    assert run(host, name=path, backend=backend, marker=MARKER) == {
        "name": path, "changes": {}, "result": True,
        "comment": f"the {backend} rules of {path} are loaded ({MARKER})"}
    assert host.mutating == []


@pytest.mark.parametrize("backend,path", [("nftables", NFT_FILE), ("iptables", IPT_FILE)])
def test_missing_or_old_rules_are_loaded_then_checked(backend, path):
    host = Host(marker="cloudify_ha lab ffffffffffffffff")
    assert run(host, name=path, backend=backend, marker=MARKER) == {
        "name": path, "changes": {"loaded": {"old": None, "new": MARKER}}, "result": True,
        "comment": f"the {backend} rules of {path} were loaded"}
    assert host.marker == MARKER
    assert len(host.mutating) == 1


def test_iptables_jump_from_input_is_added_when_missing():
    host = Host(marker=MARKER, jump=False)
    ret = run(host, name=IPT_FILE, backend="iptables", marker=MARKER)
    assert ret["result"] is True and ret["changes"]
    assert host.mutating == [["iptables-restore", "--noflush", IPT_FILE],
                             ["iptables", "-I", "INPUT", "1", "-j", "CLOUDIFY_HA"]]


@pytest.mark.parametrize("backend,path", [("nftables", NFT_FILE), ("iptables", IPT_FILE)])
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
        "comment": "unknown firewall backend 'pf': use one of iptables, nftables"}
    assert host.calls == []


# ---- firewalld ----------------------------------------------------------------------------------
class Firewalld:
    """firewalld as firewall-cmd shows it, in its permanent and its runtime configuration: ipsets
    ({name: (type, entries)}) and each zone's rich rules; like firewalld, a new ipset is
    permanent only, runtime gets it at --reload, and a hash:net refuses overlapping entries.
    `sticks` False makes every change exit 0 and change nothing; `fails`, an argument that makes
    the command carrying it fail."""

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
        opts = dict(a[2:].partition("=")[::2] for a in args if "=" in a)
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
            pairs = [a[2:].partition("=")[::2] for a in args if a.startswith("--")]
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
        if "add-rich-rule" in opts:
            if self.sticks:
                rules.add(opts["add-rich-rule"])
            return ok
        if "remove-rich-rule" in opts:
            if self.sticks:
                rules.discard(opts["remove-rich-rule"])
            return ok
        raise AssertionError(f"unexpected command {argv}")

    @property
    def mutating(self):
        reads = ("--get-ipsets", "--get-entries", "--list-rich-rules")
        return [c for c in self.calls if not any(a in reads for a in c)]


PEERS = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
PORTS = [{"port": 8300, "protocol": "tcp"}, {"port": 8301, "protocol": "udp"}]
PEER_SET, REST_SET = FW._ipsets("prod")
RULES = {f'rule family="ipv4" source ipset="{PEER_SET}" port port="8300" protocol="tcp" accept',
         f'rule family="ipv4" source ipset="{PEER_SET}" port port="8301" protocol="udp" accept',
         f'rule family="ipv4" source ipset="{REST_SET}" port port="80" protocol="tcp" accept'}


def present(host, test=False, **kwargs):
    args = {"name": "prod", "peers": PEERS, "ports": PORTS, "rest_port": 80,
            "rest_sources": PEERS + ["10.0.1.0/24"], "zone": ""}
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
    assert (PEER_SET, REST_SET) == (f"{PEER_SET[:-6]}_peers", f"{PEER_SET[:-6]}_rest")
    assert all(len(n) <= 31 for n in FW._ipsets("x" * 63))
    assert FW._ipsets("prod") != FW._ipsets("staging")


def test_firewalld_a_new_host_gets_ipsets_rules_and_one_reload_then_a_rerun_changes_nothing():
    host = Firewalld()
    ret = present(host)
    assert ret["result"] is True, ret
    assert "then firewall-cmd --reload" in ret["comment"]
    assert ret["changes"]["permanent"]["ipsets_created"] == [PEER_SET, REST_SET]
    assert ret["changes"]["permanent"]["entries_added"] == {
        PEER_SET: PEERS, REST_SET: ["10.0.0.11/32", "10.0.0.12/31", "10.0.1.0/24"]}
    for conf in ("permanent", "runtime"):
        assert host.config[conf]["rules"]["public"] == RULES
        assert host.config[conf]["ipsets"][PEER_SET] == ("hash:ip", set(PEERS))
    assert ["firewall-cmd", "--reload"] in host.calls
    assert not [c for c in host.mutating if "--permanent" not in c and c[1:] != ["--reload"]]
    host.calls.clear()
    again = present(host)
    assert (again["result"], again["changes"], host.mutating) == (True, {}, [])
    assert again["comment"] == "firewalld has the rules of cluster prod: 3 rich rules on 2 ipsets"


def test_firewalld_a_manager_gone_from_pillar_and_a_new_rest_port_are_taken_away_and_only_ours():
    host = Firewalld()
    converged(host)
    theirs = 'rule family="ipv4" source address="10.9.9.9" port port="80" protocol="tcp" accept'
    for conf in ("permanent", "runtime"):
        host.config[conf]["rules"]["public"].add(theirs)
    ret = present(host, peers=PEERS[:2], rest_port=443, rest_sources=[])
    assert ret["result"] is True, ret
    for conf in ("permanent", "runtime"):
        assert ret["changes"][conf]["entries_removed"] == {
            PEER_SET: ["10.0.0.13"],
            REST_SET: ["10.0.0.11/32", "10.0.0.12/31", "10.0.1.0/24"]}
        assert ret["changes"][conf]["entries_added"] == {REST_SET: ["0.0.0.0/1", "128.0.0.0/1"]}
        rules = host.config[conf]["rules"]["public"]
        assert theirs in rules and not any('port="80"' in r and REST_SET in r for r in rules)
        assert any('port="443"' in r and REST_SET in r for r in rules)
    assert ["firewall-cmd", "--reload"] not in host.calls  # the ipsets were there: no reload


def test_firewalld_an_overlapping_source_is_collapsed_before_it_reaches_the_hash_net():
    host = Firewalld()
    ret = present(host, rest_sources=["10.0.1.5", "10.0.1.0/24", "10.0.0.0/8", "0.0.0.0/0"][:3])
    assert ret["result"] is True, ret
    assert host.config["runtime"]["ipsets"][REST_SET] == ("hash:net", {"10.0.0.0/8"})
    everywhere = present(host, rest_sources=["10.0.1.0/24", "0.0.0.0/0"])
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
    ({"peers": ["10.0.0.12\" accept rule family=\"ipv4"]}, "peers/rest_sources"),
    ({"rest_sources": ["10.0.0.12/24"]}, "peers/rest_sources"),  # host bits set
    ({"peers": []}, "peers"),
    ({"peers": "10.0.0.11"}, "peers, ports and rest_sources must be lists"),
    ({"ports": [{"port": "22; reboot", "protocol": "tcp"}]}, "ports:0"),
    ({"ports": [{"port": 22, "protocol": "icmp"}]}, "ports:0"),
    ({"ports": [{"port": 22, "protocol": "tcp", "action": "drop"}]}, "ports:0"),
    ({"rest_port": True}, "rest_port"),
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
