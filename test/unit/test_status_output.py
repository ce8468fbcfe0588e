"""_output/cloudify_ha_status.py: the exact text it prints for a healthy cluster, one with
problems, the pillar-error form and odd input; fed with hand-written data and with what the
runner's real `status` returns from a fake LocalClient, and once through Salt's own loader."""

import copy

import pytest
import salt.client
import salt.config
import salt.output

from formula_code import REPO, example_pillar, load, pillar_util, runner_module

OUTPUT = load("_output/cloudify_ha_status.py", "cloudify_ha_status_output_under_test")
RUNNER = runner_module()


def row(n, state, local=None):
    return {"node": f"cfy-mgr{n}", "minion": f"cfy-mgr{n}.example.com", "ip": f"10.0.0.1{n}",
            "state": state, "local": str(state if local is None else local)}


HEALTHY = {"prod": {
    "managers": [row(1, "leader"), row(2, "replica"), row(3, "replica")],
    "active node": "cfy-mgr1 (10.0.0.11)",
    "listed, not in pillar": [], "in pillar, not listed": [], "stale profiles": []}}

HEALTHY_TEXT = [
    "cluster prod",
    "+----------+----------------------+-----------+---------+---------+",
    "| node     | minion               | ip        | state   | local   |",
    "+----------+----------------------+-----------+---------+---------+",
    "| cfy-mgr1 | cfy-mgr1.example.com | 10.0.0.11 | leader  | leader  |",
    "| cfy-mgr2 | cfy-mgr2.example.com | 10.0.0.12 | replica | replica |",
    "| cfy-mgr3 | cfy-mgr3.example.com | 10.0.0.13 | replica | replica |",
    "+----------+----------------------+-----------+---------+---------+",
    "active node:            cfy-mgr1 (10.0.0.11)",
    "listed, not in pillar:  -",
    "in pillar, not listed:  -",
    "stale profiles:         -",
    ""]


def test_a_healthy_cluster():
    assert OUTPUT.output(copy.deepcopy(HEALTHY)).split("\n") == HEALTHY_TEXT


def test_clusters_with_problems_each_get_their_table_in_order():
    data = {
        "prod": {
            "managers": [row(1, "error: cfy: command not found",
                             "{'error': 'cfy: command not found'}"),
                         row(2, "no answer (minion down)", "None"),
                         row(3, "not installed", "absent")],
            "active node": "none found: [Errno 111] Connection refused",
            "listed, not in pillar": [], "in pillar, not listed": [], "stale profiles": []},
        "dr": {
            "managers": [{"node": "dr1", "minion": "dr1", "ip": "10.9.0.1", "state": "offline",
                          "local": "replica"}],
            "active node": "dr2 (10.9.0.2)",
            "listed, not in pillar": ["dr2", "dr3"], "in pillar, not listed": ["dr1"],
            "stale profiles": ["admin1.example.com", "dr1"]}}
    assert OUTPUT.output(data).split("\n") == [
        "cluster prod",
        "+----------+----------------------+-----------+-------------------------------"
        "+-------------------------------------+",
        "| node     | minion               | ip        | state                         "
        "| local                               |",
        "+----------+----------------------+-----------+-------------------------------"
        "+-------------------------------------+",
        "| cfy-mgr1 | cfy-mgr1.example.com | 10.0.0.11 | error: cfy: command not found "
        "| {'error': 'cfy: command not found'} |",
        "| cfy-mgr2 | cfy-mgr2.example.com | 10.0.0.12 | no answer (minion down)       "
        "| None                                |",
        "| cfy-mgr3 | cfy-mgr3.example.com | 10.0.0.13 | not installed                 "
        "| absent                              |",
        "+----------+----------------------+-----------+-------------------------------"
        "+-------------------------------------+",
        "active node:            none found: [Errno 111] Connection refused",
        "listed, not in pillar:  -",
        "in pillar, not listed:  -",
        "stale profiles:         -",
        "",
        "cluster dr",
        "+------+--------+----------+---------+---------+",
        "| node | minion | ip       | state   | local   |",
        "+------+--------+----------+---------+---------+",
        "| dr1  | dr1    | 10.9.0.1 | offline | replica |",
        "+------+--------+----------+---------+---------+",
        "active node:            dr2 (10.9.0.2)",
        "listed, not in pillar:  dr2, dr3",
        "in pillar, not listed:  dr1",
        "stale profiles:         admin1.example.com, dr1",
        ""]


def test_a_cluster_without_rows_or_keys_still_prints_every_line():
    assert OUTPUT.output({"prod": {"managers": []}}).split("\n") == [
        "cluster prod",
        "+------+--------+----+-------+-------+",
        "| node | minion | ip | state | local |",
        "+------+--------+----+-------+-------+",
        "+------+--------+----+-------+-------+",
        "active node:            None",
        "listed, not in pillar:  -",
        "in pillar, not listed:  -",
        "stale profiles:         -",
        ""]


def test_an_invalid_pillar_lists_its_errors():
    data = {"errors": ["cloudify_ha:clusters:prod:managers:1:private_ip: '10.0.0' is not an IP "
                       "address", "cloudify_ha:clusters:prod:rest:password: must be set"]}
    assert OUTPUT.output(data) == (
        "the cloudify_ha pillar is invalid:\n"
        "- cloudify_ha:clusters:prod:managers:1:private_ip: '10.0.0' is not an IP address\n"
        "- cloudify_ha:clusters:prod:rest:password: must be set")


@pytest.mark.parametrize("data,text", [("no clusters in pillar", "no clusters in pillar"),
                                       (None, "None"), (["a"], "['a']"), ({}, ""),
                                       ("an error\x1b[2J", "an error\\x1b[2J")])
def test_anything_else_is_printed_as_it_is(data, text):
    assert OUTPUT.output(data) == text


def test_salts_loader_finds_it_by_its_virtual_name(tmp_path):
    opts = copy.deepcopy(salt.config.DEFAULT_MINION_OPTS)
    opts.update(extension_modules=str(tmp_path), outputter_dirs=[str(REPO / "_output")],
                color=False)
    assert salt.output.out_format(copy.deepcopy(HEALTHY), "cloudify_ha_status", opts) == (
        "\n".join(HEALTHY_TEXT).rstrip())


# ---- what the runner's status returns, printed -------------------------------------------------
class LocalClient:
    """The master's LocalClient: `answers` maps (minion, function) to what the minion returns;
    a minion without any answer is down. Records every call."""

    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def cmd(self, targets, fun, arg, kwarg, tgt_type, timeout, full_return):
        assert (tgt_type, full_return) == ("list", True) and arg == []
        self.calls.append((fun, tuple(targets), kwarg))
        return {mid: {"ret": self.answers[mid, fun], "retcode": 0} for mid in targets
                if (mid, fun) in self.answers}


def runner_status(monkeypatch, answers):
    """The runner's status with a fake LocalClient answering `answers`: (data, calls)."""
    pillar = example_pillar()
    plan = pillar_util().plan
    master_minion = type("MasterMinion", (), {"functions": {
        "cloudify_ha.plan": lambda pillar, cluster=None: plan(pillar, cluster)}})
    local = LocalClient(answers)
    monkeypatch.setattr(RUNNER, "_master_pillar", lambda: (pillar, master_minion))
    monkeypatch.setattr(RUNNER, "__opts__", {"conf_file": "/etc/salt/master"}, raising=False)
    monkeypatch.setattr(salt.client, "get_local_client",
                        lambda conf_file: local if conf_file == "/etc/salt/master" else None)
    answer = RUNNER.status()
    assert answer["outputter"] == "cloudify_ha_status"
    return answer["data"], local.calls


OFF = {"status": "deactivated", "activated_at": "", "requested_by": "", "name": "cfy-mgr1",
       "host": "10.0.0.11"}


def test_the_runners_status_of_a_cluster_with_problems_prints_as_a_table(monkeypatch):
    data, calls = runner_status(monkeypatch, {
        ("cfy-mgr1.example.com", "cloudify_ha.maintenance_mode"): OFF,
        ("cfy-mgr1.example.com", "cloudify_ha.node_state"): "leader",
        ("cfy-mgr1.example.com", "cloudify_ha.active_node"): {"name": "cfy-mgr1",
                                                               "host": "10.0.0.11"},
        ("cfy-mgr1.example.com", "cloudify_ha.cluster_nodes"): [
            {"name": "cfy-mgr1", "state": "leader"}, {"name": "cfy-old", "state": "offline"}],
        # a profile lists the members pillar names: cfy-old is none of them
        ("cfy-mgr1.example.com", "cloudify_ha.profile_nodes"): ["cfy-mgr1"],
        ("cfy-mgr3.example.com", "cloudify_ha.node_state"): "installed",
        ("cfy-mgr3.example.com", "cloudify_ha.profile_nodes"): None,
        ("admin1.example.com", "cloudify_ha.profile_nodes"): ["cfy-mgr1", "cfy-mgr2"]})
    assert OUTPUT.output(data).split("\n") == [
        "cluster prod",
        "+----------+----------------------+-----------+-------------------------+-----------+",
        "| node     | minion               | ip        | state                   | local     |",
        "+----------+----------------------+-----------+-------------------------+-----------+",
        "| cfy-mgr1 | cfy-mgr1.example.com | 10.0.0.11 | leader                  | leader    |",
        "| cfy-mgr2 | cfy-mgr2.example.com | 10.0.0.12 | no answer (minion down) | None      |",
        "| cfy-mgr3 | cfy-mgr3.example.com | 10.0.0.13 | not joined              | installed |",
        "+----------+----------------------+-----------+-------------------------+-----------+",
        "active node:            cfy-mgr1 (10.0.0.11)",
        "maintenance mode:       off",
        "listed, not in pillar:  cfy-old",
        "in pillar, not listed:  cfy-mgr2, cfy-mgr3",
        "stale profiles:         admin1.example.com",
        ""]
    assert [(fun, targets) for fun, targets, _ in calls] == [
        ("cloudify_ha.node_state", ("cfy-mgr1.example.com", "cfy-mgr2.example.com",
                                    "cfy-mgr3.example.com")),
        # asked of the nodes that answer as an active node or a standalone manager
        ("cloudify_ha.maintenance_mode", ("cfy-mgr1.example.com", "cfy-mgr3.example.com")),
        ("cloudify_ha.active_node", ("cfy-mgr1.example.com",)),
        ("cloudify_ha.cluster_nodes", ("cfy-mgr1.example.com",)),
        ("cloudify_ha.profile_nodes", ("cfy-mgr1.example.com", "cfy-mgr2.example.com",
                                       "cfy-mgr3.example.com")),
        ("cloudify_ha.profile_nodes", ("admin1.example.com",))]


def test_the_runners_status_in_maintenance_mode_shows_it_and_each_nodes_own_state(monkeypatch):
    """4.6 refuses /cluster/nodes while maintenance mode is activated (503): the status says
    so, and shows each manager's own answer instead of asking the list."""
    state = dict(OFF, status="activated", activated_at="2026-12-07T10:00:00.000Z",
                 requested_by="admin", name="whatever-it-says", host="10.9.9.9")
    data, calls = runner_status(monkeypatch, {
        ("cfy-mgr1.example.com", "cloudify_ha.node_state"): "leader",
        ("cfy-mgr1.example.com", "cloudify_ha.maintenance_mode"): state,
        ("cfy-mgr2.example.com", "cloudify_ha.node_state"): "replica",
        ("cfy-mgr3.example.com", "cloudify_ha.node_state"): "replica"})
    assert OUTPUT.output(data).split("\n")[4:11] == [
        "| cfy-mgr1 | cfy-mgr1.example.com | 10.0.0.11 | leader (its own answer; the node list "
        "could not be read)  | leader  |",
        "| cfy-mgr2 | cfy-mgr2.example.com | 10.0.0.12 | replica (its own answer; the node list "
        "could not be read) | replica |",
        "| cfy-mgr3 | cfy-mgr3.example.com | 10.0.0.13 | replica (its own answer; the node list "
        "could not be read) | replica |",
        "+----------+----------------------+-----------+" + "-" * 59 + "+---------+",
        "active node:            cfy-mgr1 (10.0.0.11)",
        "maintenance mode:       activated on cfy-mgr1 (10.0.0.11) since "
        "2026-12-07T10:00:00.000Z by admin: the formula changes nothing in this cluster; 'cfy "
        "maintenance-mode deactivate' ends it",
        "listed, not in pillar:  -"]
    assert "cloudify_ha.cluster_nodes" not in [fun for fun, _, _ in calls]


def test_the_runners_status_of_an_invalid_pillar_prints_its_errors(monkeypatch):
    pillar = example_pillar()
    del pillar["clusters"]["prod"]["managers"]
    errors = pillar_util().plan(pillar)["errors"]
    assert errors
    master_minion = type("MasterMinion", (), {"functions": {
        "cloudify_ha.plan": lambda pillar, cluster=None: pillar_util().plan(pillar, cluster)}})
    monkeypatch.setattr(RUNNER, "_master_pillar", lambda: (pillar, master_minion))
    answer = RUNNER.status()
    assert answer == {"outputter": "cloudify_ha_status", "data": {"errors": errors}}
    assert OUTPUT.output(answer["data"]).split("\n") == (
        ["the cloudify_ha pillar is invalid:"] + [f"- {e}" for e in errors])


def test_a_cluster_named_errors_is_a_cluster_not_the_error_form():
    # `errors` is a valid cluster name: the error form is told apart by its list
    text = OUTPUT.output({"errors": copy.deepcopy(HEALTHY["prod"])}).split("\n")
    assert text == ["cluster errors"] + HEALTHY_TEXT[1:]


ESCAPES = "\x1b[2J\x1b]0;owned\x07"  # clear the screen, retitle the terminal


def test_minion_and_rest_strings_are_printed_escaped_never_raw():
    """What a minion or a manager says (a node name in a REST answer, an error) cannot move the
    terminal's cursor, clear it, retitle it, or add a line to the table."""
    data = {f"prod{ESCAPES}": {
        "managers": [{"node": f"cfy-mgr1{ESCAPES}", "minion": "cfy-mgr1.example.com",
                      "ip": "10.0.0.11", "state": "error: line one\nline two\r",
                      "local": "{'error': 'caf\u00e9'}"}],
        "active node": f"none found: {ESCAPES}",
        "listed, not in pillar": [f"evil{ESCAPES}"], "in pillar, not listed": [],
        "stale profiles": ["admin1\u2028.example.com"]}}
    text = OUTPUT.output(data)
    assert text.isascii() and all(line.isprintable() for line in text.split("\n")), text
    lines = text.split("\n")
    assert lines[0] == "cluster prod\\x1b[2J\\x1b]0;owned\\x07"
    assert lines[4] == ("| cfy-mgr1\\x1b[2J\\x1b]0;owned\\x07 | cfy-mgr1.example.com | "
                        "10.0.0.11 | error: line one\\nline two\\r | {'error': 'caf\\xe9'} |")
    assert lines[6:9] == ["active node:            none found: \\x1b[2J\\x1b]0;owned\\x07",
                          "listed, not in pillar:  evil\\x1b[2J\\x1b]0;owned\\x07",
                          "in pillar, not listed:  -"]
    assert lines[9] == "stale profiles:         admin1\\u2028.example.com"
    errors = OUTPUT.output({"errors": [f"bad{ESCAPES}"]})
    assert errors == "the cloudify_ha pillar is invalid:\n- bad\\x1b[2J\\x1b]0;owned\\x07"
