"""Hostile pillar values through Salt's own compiler, for every role: every key of the schema
(every leaf of pillar.example, which documents them all) with each generic hostile value
(newline, YAML, shell, Jinja, quotes, non-ASCII, paths, globs, a leading '-'), in every role
that renders the pillar (a manager, a CLI host, a load balancer, the master's own minion with
the reactor's SLS, and the master with the orchestration). Each (key, value, role) is either

- refused naming the key, its value escaped (one line per error, printable ASCII), while
  every SLS of the role only refuses and the orchestration asks no minion; or
- accepted: only a secret, which no SLS, state argument or configuration line ever shows (the
  SLS render from the public settings; HAProxy's check gets it as base64).

One compile per role and value holds every key at once (validation is per key: a key's
refusal is named whatever the others hold); the keys a compile does not name are then compiled
alone. The counts are printed (pytest -s). The orchestrations' own arguments are data too."""

import copy

import pytest

from render_setup import (CLI, FOLLOWER, LB, LEADER, STRANGER, args_of, example_pillar,
                          functions_of, minion_sls, pillar_schema)
from test_render_orch import Minions, orch
from test_render_templates import haproxy_cfg

GENERIC = {
    "newline": "x\r\n  cmd.run:\n    - name: reboot\n\x1b[2J",
    "yaml": "{evil: !!python/object/apply:os.system [reboot]}",
    "shell": "$(reboot); `id` | sh && x",
    "jinja": "{{ salt['cmd.run']('reboot') }}{% raw %}",
    "quotes": "x' \"y",
    "non-ascii": "cfy-mgr\u0662.\uff45xample",
    "path": "../../../etc/shadow",
    "glob": "cfy-mgr[12]*?",
    "leading dash": "-rf",
}
# the role, the minion (None: the master's orchestration), the SLS it renders for the check
ROLES = {
    "manager": (LEADER, "cloudify_ha.cluster.leader"),
    "CLI host": (CLI, "cloudify_ha.profile"),
    "load balancer": (LB, "cloudify_ha.loadbalancer"),
    "master's minion": (STRANGER, "cloudify_ha.reactor.master"),
    "master": (None, "cloudify_ha.orch"),
}
# keys whose value is free text by design: passwords (one line; to files 0600 and env only)
SECRETS = {("clusters", "prod", "admin", "password"), ("clusters", "prod", "database", "password"),
           ("clusters", "prod", "database", "postgres_password"),
           ("clusters", "prod", "loadbalancer", "check_password")}
COUNTS = {}  # role -> {"tried", "refused naming the key", "accepted harmless"}
SCHEMA = pillar_schema()


def leaves(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from leaves(value, prefix + (index,))
    else:
        yield prefix


# every key of the schema: pillar.example's leaves (test_pillar_hostile.py holds it to document
# them all), plus the TOFS keys it shows commented out
KEYS = list(leaves(example_pillar())) + [
    ("tofs", "path_prefix"), ("tofs", "source_files", "cloudify_ha-loadbalancer-config", 0)]


def with_values(values):
    """pillar.example with each key of `values` ({path: value}) set (the TOFS keys added)."""
    pillar = example_pillar()
    for path, value in values.items():
        node = pillar
        for part in path[:-1]:
            if isinstance(node, dict) and part not in node:
                node[part] = [None] if isinstance(path[path.index(part) + 1], int) else {}
            node = node[part]
        node[path[-1]] = value
    return {"cloudify_ha": pillar}


def full_key(path):
    return "cloudify_ha:" + ":".join(str(p) for p in path)


def named(path, errors):
    """Whether an error names the key: itself, or the list it is an item of."""
    wanted = {full_key(path)} | ({full_key(path[:-1])} if isinstance(path[-1], int) else set())
    return any(error.split(": ", 1)[0] in wanted for error in errors)


def refusal(high):
    """The errors a refusal lists (its comment's lines after the first), and its state ids."""
    funs = functions_of(high)
    assert set(funs.values()) == {"cloudify_ha.refused"}, funs
    (sid,) = funs
    comment = args_of(high, sid)["comment"]
    lines = comment.split("\n")
    assert lines[0].startswith("the cloudify_ha pillar") and lines[0].endswith("Fix:"), lines[0]
    assert all(line.startswith("- ") for line in lines[1:]), comment
    return [line[2:] for line in lines[1:]], comment, sid


def compile_role(minion, master, role, pillar):
    """(high data, minions asked: None for a minion role) of the role's SLS with `pillar`."""
    minion_id, sls = ROLES[role]
    if minion_id is None:
        high, minions = orch(master, pillar=pillar, minions=Minions())
        return high, minions.asked
    high, errors = minion("example", minion_id, pillar=pillar).render(sls)
    assert errors == [], errors
    return high, None


def check_refusal(high, asked, value):
    errors, comment, sid = refusal(high)
    assert asked in (None, [])  # the master asked no minion
    assert "reboot" not in sid and "\n" not in sid
    # one line per error, printable ASCII: the value is quoted, never pasted
    for line in comment.split("\n"):
        assert line.isascii() and line.isprintable(), line
    if not (value.isascii() and value.isprintable()):
        assert value not in comment
    return errors


@pytest.mark.parametrize("role", ROLES)
def test_every_key_with_every_generic_hostile_value_is_refused_naming_it_or_is_a_secret(
        minion, master, role):
    counts = COUNTS.setdefault(role, {"tried": 0, "refused naming the key": 0,
                                      "accepted harmless": 0})
    accepted = {}
    for name, value in GENERIC.items():
        high, asked = compile_role(minion, master, role,
                                   with_values({key: value for key in KEYS}))
        errors = check_refusal(high, asked, value)
        for key in KEYS:
            counts["tried"] += 1
            # a secret is judged alone: with every key the same value, the passwords' rule that
            # two of them differ names each of them, whatever the value
            if key not in SECRETS and named(key, errors):
                counts["refused naming the key"] += 1
            else:
                accepted.setdefault(key, []).append(name)
    # what a compile of all keys at once does not name, and every secret: a secret the schema
    # accepts alone (its compile through every role is
    # test_the_hostile_values_a_secret_accepts_...), anything else compiled alone, and refused
    # naming its key
    for key, names in accepted.items():
        for name in names:
            alone = with_values({key: GENERIC[name]})
            if key in SECRETS and not SCHEMA.validate(alone["cloudify_ha"], ROLES[role][0])[0]:
                counts["accepted harmless"] += 1
                continue
            high, asked = compile_role(minion, master, role, alone)
            errors = check_refusal(high, asked, GENERIC[name])
            assert named(key, errors), (key, name, errors)
            counts["refused naming the key"] += 1
    assert counts["tried"] == counts["refused naming the key"] + counts["accepted harmless"]
    assert counts["tried"] == len(KEYS) * len(GENERIC)
    print(f"\nhostile values, {role}: {counts}")


def accepted_secret(key):
    """Every generic hostile value the schema accepts for this secret, in one string (the
    values it refuses, such as a newline, are left out: they are counted refused above)."""
    ok = [v for v in GENERIC.values()
          if not SCHEMA.validate(with_values({key: v})["cloudify_ha"], LEADER)[0]]
    return " ".join(ok)


def hostile_secrets():
    """{secret's key: what it accepts} for each secret that accepts any (the schema's password
    rules may leave a secret none: its values are all counted refused)."""
    secrets = {key: accepted_secret(key) for key in SECRETS}
    # each its own (the schema refuses two passwords alike): the values, then the key's name
    return {key: f"{value} {'-'.join(key[2:])}" for key, value in secrets.items() if value}


@pytest.mark.parametrize("role", [LEADER, FOLLOWER, CLI, LB])
def test_the_hostile_values_a_secret_accepts_render_what_pillar_example_renders(minion, role):
    secrets = hostile_secrets()
    assert secrets  # the admin password takes most of them (test/unit/test_pillar_hostile.py)
    plain = minion("example", role)
    hostile = minion("example", role, pillar=with_values(secrets))
    for sls in sorted(minion_sls()):
        want, _ = plain.render(sls)
        got, errors = hostile.render(sls)
        assert (errors, functions_of(got)) == ([], functions_of(want)), sls
        for secret in secrets.values():
            assert secret not in repr(got), sls
            for part in secret.split(" "):
                assert len(part) < 5 or part not in repr(got), (sls, part)


def test_the_hostile_values_a_secret_accepts_are_nowhere_in_the_orchestration(master):
    secrets = hostile_secrets()
    high, _ = orch(master, pillar=with_values(secrets))
    assert functions_of(high)["cloudify_ha-orch-validate"] == "test.succeed_without_changes"
    for secret in secrets.values():
        assert all(len(part) < 5 or part not in repr(high) for part in secret.split(" "))


def test_a_hostile_admin_secret_changes_no_line_of_haproxys_configuration(minion):
    key = ("clusters", "prod", "admin", "password")
    secret = accepted_secret(key)
    _, want = haproxy_cfg(minion)
    # the admin's password is not the load balancer's: it changes nothing there
    _, admin = haproxy_cfg(minion, pillar=with_values({key: secret}))
    assert admin == want
    check_key = ("clusters", "prod", "loadbalancer", "check_password")
    check = accepted_secret(check_key)
    assert check  # printable ASCII: most of the generic values
    _, got = haproxy_cfg(minion, pillar=with_values({check_key: check}))
    differ = [(a, b) for a, b in zip(want.splitlines(), got.splitlines()) if a != b]
    assert len(want.splitlines()) == len(got.splitlines()) and len(differ) == 1, differ
    # this machine's HAProxy (2.2 or later) has http-check send
    assert differ[0][1].startswith("    http-check send meth GET uri /api/v3.1/status ver HTTP/1.0")
    assert check not in got and "reboot" not in got


@pytest.mark.parametrize("role", [LEADER, CLI, LB, STRANGER])
def test_with_every_key_hostile_every_sls_of_every_role_only_refuses(minion, role):
    pillar = with_values({key: GENERIC["newline"] for key in KEYS})
    m = minion("example", role, pillar=pillar)
    for sls in sorted(minion_sls() - {"cloudify_ha", "cloudify_ha.sync", "cloudify_ha.lock",
                                      "cloudify_ha.cluster.absent", "cloudify_ha.cluster.down"}):
        high, errors = m.render(sls)
        assert errors == [], (sls, errors)
        check_refusal(high, None, GENERIC["newline"])


# ---- the orchestrations' own arguments ------------------------------------------------------
@pytest.mark.parametrize("cluster", ["prod\n  evil: true", "prod' #", ["prod"], {"a": 1}, 7])
def test_the_orchestration_refuses_a_hostile_cluster_argument_as_data(master, cluster):
    # the long form, cloudify_ha_orch:cluster, is the same value (test_render_orch.py)
    high, minions = orch(master, pillar={"cluster": copy.deepcopy(cluster)})
    assert functions_of(high) == {"cloudify_ha-orch-validate": "cloudify_ha.refused"}
    assert minions.asked == []


@pytest.mark.parametrize("node", [f"{FOLLOWER}\n  evil: true", "*", f"{FOLLOWER}\n", 7,
                                  ["x"], "cfy-mgr\u0662.example.com"])
def test_the_rejoin_ignores_a_hostile_node_as_data(master, node):
    # as the runner passes it (cloudify_ha_orch:node); the short form: test_render_orch.py
    high, minions = orch(master, "cloudify_ha.orch.rejoin",
                         pillar={"cloudify_ha_orch": {"node": copy.deepcopy(node)}})
    assert functions_of(high) == {"cloudify_ha-rejoin-ignored": "test.succeed_without_changes"}
    assert minions.asked == []


@pytest.mark.parametrize("node", ["cfy-mgr3\n  evil: true", "../users/bob", "-f"])
def test_the_retire_refuses_a_hostile_node_as_data(master, node):
    high, minions = orch(master, "cloudify_ha.orch.retire", pillar={"cluster": "prod",
                                                                      "node": node},
                         minions=Minions(down=[FOLLOWER]))
    assert functions_of(high) == {"cloudify_ha-retire-validate": "test.fail_without_changes"}
    assert minions.asked == []
