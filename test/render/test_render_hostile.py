"""Hostile pillar values through Salt's own compiler: every minion SLS of every role refuses,
and nothing else renders, while the pillar holds one (each key's refusal:
test/unit/test_pillar_hostile.py); a hostile SECRET, which the pillar allows, renders the same
states as pillar.example and appears in no rendered state and in no configuration line; the
orchestrations take hostile arguments as data. A database password is no free text: 4.6 passes
it through a shell, SQL, .pgpass and URIs (cloudify_ha_pillar.DB_PASSWORD_RE), so a hostile one
is refused like any other hostile value, without being shown."""

import pytest

from render_setup import CLI, FOLLOWER, LB, LEADER, functions_of, minion_sls
from test_render_orch import Minions, orch
from test_render_templates import haproxy_cfg

ROLES = (LEADER, FOLLOWER, CLI, LB)
# SLS that read no cluster pillar: the same whatever it holds
PILLAR_FREE = {"cloudify_ha", "cloudify_ha.sync", "cloudify_ha.reactor.master", "cloudify_ha.cluster.absent",
               "cloudify_ha.cluster.down", "cloudify_ha.lock"}
INJECTED = "x\n  cmd.run:\n    - name: reboot\nevil"
BAD = {
    "installer:source": {"installer": {"source": f"salt://a/b.rpm\n{INJECTED}"}},
    "admin:tenant": {"admin": {"tenant": "t\r\n    server evil 10.6.6.6:80 check"}},
    "firewall:rest_sources": {"firewall": {"rest_sources": ["10.0.0.0/8' && reboot '"]}},
    "loadbalancer:config_path": {"loadbalancer": {"config_path": "/etc/sudoers"}},
    "managers:1:name": None,  # set below: a list item
}
SECRET = "p@ss' \"$(reboot)` #x: {{ 7*7 }} {% raw %}"
BAD["database:password"] = {"database": {"password": SECRET}}
# the most a database password may hold (every character 4.6's four paths carry)
DB_SECRET = "Db_sec.ret,+=^@-9"


def pillar_with(key):
    if key == "managers:1:name":
        managers = [{"name": "cfy-mgr1", "minion_id": LEADER, "private_ip": "10.0.0.11",
                     "public_ip": "192.0.2.11"},
                    {"name": INJECTED, "minion_id": FOLLOWER, "private_ip": "10.0.0.12",
                     "public_ip": "192.0.2.12"}]
        return {"cloudify_ha": {"clusters": {"prod": {"managers": managers}}}}
    return {"cloudify_ha": {"clusters": {"prod": BAD[key]}}}


@pytest.mark.parametrize("key", list(BAD))
@pytest.mark.parametrize("role", ROLES)
def test_with_a_hostile_value_every_sls_only_refuses(minion, role, key):
    m = minion("example", role, pillar=pillar_with(key))
    for sls in sorted(minion_sls() - PILLAR_FREE):
        high, errors = m.render(sls)
        assert errors == [], (sls, errors)
        funs = functions_of(high)
        assert set(funs.values()) == {"cloudify_ha.refused"}, (sls, funs)
        for sid in funs:
            (args,) = [v for k, v in high[sid].items() if not k.startswith("__")]
            comment = next(a["comment"] for a in args if isinstance(a, dict) and "comment" in a)
            assert "reboot" not in sid and f"{key}:" in comment.replace("'", ""), comment
            if key == "database:password":  # a secret: refused without being shown
                assert "reboot" not in comment, comment
            # the refusal quotes the value: one line per error
            assert all(line.startswith(("the cloudify_ha pillar", "- cloudify_ha:"))
                       for line in comment.splitlines()), comment


@pytest.mark.parametrize("role", ROLES)
def test_a_hostile_secret_renders_what_pillar_example_renders_and_is_in_no_state(minion, role):
    plain = minion("example", role)
    hostile = minion("example", role, pillar={"cloudify_ha": {"clusters": {"prod": {
        "admin": {"password": SECRET}, "database": {"password": DB_SECRET,
                                                    "postgres_password": DB_SECRET}}}}})
    for sls in sorted(minion_sls()):
        want, _ = plain.render(sls)
        got, errors = hostile.render(sls)
        assert (errors, functions_of(got)) == ([], functions_of(want)), sls
        assert SECRET not in repr(got) and "reboot" not in repr(got), sls
        assert DB_SECRET not in repr(got), sls


def test_a_hostile_secret_changes_no_line_of_haproxys_configuration(minion):
    _, want = haproxy_cfg(minion)
    # the admin's password is not the load balancer's: it changes nothing there
    _, admin = haproxy_cfg(minion, pillar={"cloudify_ha": {"clusters": {"prod": {
        "admin": {"password": SECRET}}}}})
    assert admin == want
    _, got = haproxy_cfg(minion, pillar={"cloudify_ha": {"clusters": {"prod": {
        "loadbalancer": {"check_password": SECRET}}}}})
    differ = [(a, b) for a, b in zip(want.splitlines(), got.splitlines()) if a != b]
    assert len(want.splitlines()) == len(got.splitlines()) and len(differ) == 1, differ
    # this machine's HAProxy (2.2 or later) has http-check send
    assert differ[0][1].startswith("    http-check send meth GET uri /api/v3.1/status ver HTTP/1.0")
    assert SECRET not in got


@pytest.mark.parametrize("cluster", ["prod\n  evil: true", "prod' #", ["prod"], {"a": 1}, 7])
def test_the_orchestration_refuses_a_hostile_cluster_argument_as_data(master, cluster):
    high, minions = orch(master, pillar={"cluster": cluster})
    assert functions_of(high) == {"cloudify_ha-orch-validate": "cloudify_ha.refused"}
    assert minions.asked == []


@pytest.mark.parametrize("node", [f"{FOLLOWER}\n  evil: true", "*", f"{FOLLOWER}\n", 7,
                                  ["x"], "cfy-mgr\u0662.example.com"])
def test_the_rejoin_ignores_a_hostile_node_as_data(master, node):
    high, minions = orch(master, "cloudify_ha.orch.rejoin", pillar={"node": node})
    assert functions_of(high) == {"cloudify_ha-rejoin-ignored": "test.succeed_without_changes"}
    assert minions.asked == []


@pytest.mark.parametrize("node", ["cfy-mgr3\n  evil: true", "../users/bob", "-f"])
def test_the_retire_refuses_a_hostile_node_as_data(master, node):
    high, minions = orch(master, "cloudify_ha.orch.retire", pillar={"cluster": "prod",
                                                                      "node": node},
                         minions=Minions(down=[FOLLOWER]))
    assert functions_of(high) == {"cloudify_ha-retire-validate": "test.fail_without_changes"}
    assert minions.asked == []
