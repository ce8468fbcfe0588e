"""_states/cloudify_ha_firewall.py: every branch, with a fake cmd.run_all that plays a host's
firewall (what is loaded, and what loading a file does)."""

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
    """firewalld as firewall-cmd shows it: the rich rules of the running and the permanent
    configuration; `sticks` False makes an add exit 0 and change nothing."""

    def __init__(self, running=(), permanent=(), sticks=True):
        self.rules = {"running": set(running), "permanent": set(permanent)}
        self.sticks = sticks
        self.calls = []

    def run_all(self, argv, **kwargs):
        assert kwargs == {"python_shell": False, "ignore_retcode": True,
                          "output_loglevel": "quiet"}
        assert isinstance(argv, list) and argv[0] == "firewall-cmd", argv
        self.calls.append(argv)
        where = "permanent" if "--permanent" in argv else "running"
        option, _, rule = argv[-1].partition("=")
        if option == "--query-rich-rule":
            return {"retcode": 0 if rule in self.rules[where] else 1, "stdout": "", "stderr": ""}
        if option == "--add-rich-rule":
            if self.sticks:
                self.rules[where].add(rule)
            return {"retcode": 0, "stdout": "success", "stderr": ""}
        raise AssertionError(f"unexpected command {argv}")

    @property
    def mutating(self):
        return [c for c in self.calls if c[-1].startswith("--add-rich-rule")]


RULES = [{"source": "10.0.0.12", "port": 8300, "protocol": "tcp"},
         {"source": "10.0.1.0/24", "port": 80, "protocol": "tcp"}]
TEXTS = ['rule family="ipv4" source address="10.0.0.12" port port="8300" protocol="tcp" accept',
         'rule family="ipv4" source address="10.0.1.0/24" port port="80" protocol="tcp" accept']


def rich(host, rules=None, test=False):
    with patch.object(FW, "__salt__", {"cmd.run_all": host.run_all}, create=True), \
            patch.object(FW, "__opts__", {"test": test}, create=True):
        return FW.rich_rules_present(name="cloudify_ha lab", rules=RULES if rules is None else rules)


def test_firewalld_rules_present_are_left_alone():
    host = Firewalld(running=TEXTS, permanent=TEXTS)
    assert rich(host) == {"name": "cloudify_ha lab", "changes": {}, "result": True,
                          "comment": "firewalld has the 2 rules of cloudify_ha lab"}
    assert host.mutating == []


def test_firewalld_missing_rules_are_added_as_argv_then_checked():
    host = Firewalld(running=TEXTS[:1], permanent=TEXTS)
    ret = rich(host)
    assert (ret["result"], ret["changes"]) == (True, {"added": {"old": None, "new": TEXTS[1:]}})
    assert host.mutating == [["firewall-cmd", f"--add-rich-rule={TEXTS[1]}"]]
    assert host.rules["running"] == set(TEXTS)


def test_firewalld_test_mode_adds_nothing():
    host = Firewalld()
    ret = rich(host, test=True)
    assert (ret["result"], ret["changes"]) == (None, {"added": {"old": None, "new": TEXTS}})
    assert host.mutating == []


def test_firewalld_an_add_that_does_not_show_is_not_a_change():
    host = Firewalld(sticks=False)
    ret = rich(host)
    assert (ret["result"], ret["changes"]) == (False, {})
    assert "2 are still missing afterwards" in ret["comment"]


@pytest.mark.parametrize("bad", [
    {"source": "10.0.0.12\" accept rule family=\"ipv4", "port": 22, "protocol": "tcp"},
    {"source": "10.0.0.12/24", "port": 22, "protocol": "tcp"},  # host bits set
    {"source": "10.0.0.12", "port": "22; reboot", "protocol": "tcp"},
    {"source": "10.0.0.12", "port": 22, "protocol": "icmp"},
    {"source": "10.0.0.12", "port": 22, "protocol": "tcp", "action": "drop"},
    "10.0.0.12:22"])
def test_firewalld_a_rule_that_is_not_plain_data_is_refused_before_any_command(bad):
    host = Firewalld()
    ret = rich(host, rules=[RULES[0], bad])
    assert (ret["result"], ret["changes"]) == (False, {})
    assert ret["comment"].startswith("rules:1: ") and "nothing was changed" in ret["comment"]
    assert host.calls == []
