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
