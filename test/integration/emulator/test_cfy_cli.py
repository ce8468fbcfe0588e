"""`cfy` against a three-node cluster (cloudify-4.6.md section 4): cluster commands on the active
manager, profiles on the `cli` host (an admin workstation), the failover walk, credentials from
the environment; and `cfy_manager`'s refusals on cluster members (section 5). One cluster for the
module: these tests only read it; each writes its own profile on the `cli` host."""

import json

import pytest

from cfylab import (ADMIN_PASSWORD, ALREADY_A_CLUSTER, MANAGERS, NO_ACTIVE_NODE, TABLE_COLUMNS,
                    cfy, cfy_manager, failed, last_line, mode_of, nodes, ok, parse_table, read_yaml,
                    use_profile, wait_for_nodes, write_profile)

pytestmark = pytest.mark.usefixtures("shared_cluster")

REPLICA_MESSAGE = "This node is not the active node of the Cloudify Manager cluster"


def profile(host, name):
    return read_yaml(host, f"/root/.cloudify/profiles/{name}/context")


def cluster_ips(context):
    return [n["manager_ip"] for n in context["_cluster"]]


def fresh_profile(lab, name, target="mgr1"):
    """A profile named `name` on the cli host, pointing at `target`, with no cluster list yet."""
    ok(use_profile(lab["cli"], lab[target].ip, name))
    assert profile(lab["cli"], name)["_cluster"] == []


def profile_with_nodes(lab, name, entries):
    """A profile on the cli host whose _cluster lists `entries` (host names) in that order."""
    fresh_profile(lab, name)
    context = profile(lab["cli"], name)
    context["_cluster"] = [{"name": e, "manager_ip": lab[e].ip, "rest_port": 80,
                            "rest_protocol": "http"} for e in entries]
    write_profile(lab["cli"], name, context)


# ---- cluster commands ---------------------------------------------------------------------------
def test_cluster_status_says_ready(lab):
    assert ok(cfy(lab["mgr1"], "cluster", "status")).strip() == "Cloudify Manager cluster ready"


def test_nodes_list_prints_the_ha_cluster_nodes_table(lab):
    title, columns, rows = parse_table(ok(cfy(lab["mgr1"], "cluster", "nodes", "list")))
    assert title == "HA Cluster nodes"
    assert columns == TABLE_COLUMNS
    assert {r["name"]: r["state"] for r in rows} == {"mgr1": "leader", "mgr2": "replica",
                                                      "mgr3": "replica"}
    for row in rows:
        assert row["host_ip"] == lab[row["name"]].ip
        assert row["database"] == "REMOTE"
        assert (row["consul"], row["cloudify services"], row["heartbeat"]) == ("OK", "OK", "OK")


def test_nodes_list_json_is_the_table_as_json(lab):
    """4.6's --json prints the table's rows (its columns and labels), not the server's records."""
    listed = json.loads(ok(cfy(lab["mgr1"], "cluster", "nodes", "list", "--json")))
    server = nodes(lab["mgr1"].ip)
    assert [n["name"] for n in listed] == sorted(MANAGERS)
    for node in listed:
        assert set(node) == set(TABLE_COLUMNS)
        assert node["host_ip"] == server[node["name"]]["host_ip"]
        assert node["state"] == ("leader" if node["name"] == "mgr1" else "replica")


def test_nodes_list_refreshes_the_profiles_node_list(lab):
    fresh_profile(lab, "refresh")
    ok(cfy(lab["cli"], "cluster", "nodes", "list"))
    # a node the profile does not have comes in at its record's public_ip (cloudify-4.6.md 0.1)
    assert cluster_ips(profile(lab["cli"], "refresh")) == [lab[m].public_ip
                                                           for m in sorted(MANAGERS)]


def test_cluster_start_on_a_cluster_member_is_refused(lab):
    assert failed(cfy(lab["mgr1"], "cluster", "start", "--cluster-node-name", "again",
                      "--cluster-host-ip", lab["mgr1"].ip)).strip() == ALREADY_A_CLUSTER
    assert set(nodes(lab["mgr1"].ip)) == set(MANAGERS)


def test_set_active_on_the_active_node_says_it_already_is_and_fails(lab):
    out = failed(cfy(lab["mgr1"], "cluster", "set-active", "mgr1"))
    assert out.strip() == "mgr1 is already the current active node!"


def test_nodes_remove_of_a_non_member_is_an_invalid_command(lab):
    out = failed(cfy(lab["mgr1"], "cluster", "nodes", "remove", "nosuch"))
    assert out.strip() == "Invalid command. nosuch is not a member of the cluster."
    assert set(nodes(lab["mgr1"].ip)) == set(MANAGERS)


@pytest.mark.parametrize("command", ["start", "stop", "restart", "configure"])
def test_cfy_manager_service_commands_are_refused_on_cluster_members(lab, command):
    for name in MANAGERS:
        out = failed(cfy_manager(lab[name], command))
        assert last_line(out) == (f"This manager is part of a Cloudify Manager cluster: "
                                  f"'cfy_manager {command}' is not supported on cluster members; "
                                  "use systemctl to control its services")
    wait_for_nodes(lab, "mgr1", {"mgr1": "leader", "mgr2": "replica", "mgr3": "replica"},
                   timeout=1)


# ---- update-profile ------------------------------------------------------------------------------
def test_update_profile_adds_each_new_node_then_says_up_to_date(lab):
    cli = lab["cli"]
    fresh_profile(lab, "update")
    first = ok(cfy(cli, "cluster", "update-profile")).splitlines()
    assert first == (["Fetching the cluster nodes list..."]
                     # 4.6 names the node by host_ip and stores its public_ip (cluster.py)
                     + [f"Adding cluster node {lab[m].ip} to local profile"
                        for m in sorted(MANAGERS)]
                     + ["Profile is up to date with 3 nodes"])
    again = ok(cfy(cli, "cluster", "update-profile")).splitlines()
    assert again == ["Fetching the cluster nodes list...", "Profile is up to date with 3 nodes"]
    assert sorted(cluster_ips(profile(cli, "update"))) == sorted(lab[m].public_ip
                                                                 for m in MANAGERS)


def test_update_profile_drops_nodes_gone_from_the_server(lab):
    profile_with_nodes(lab, "stale", ["mgr1", "lb", "mgr2", "mgr3"])  # lb: a node since removed
    out = ok(cfy(lab["cli"], "cluster", "update-profile"))
    assert "Adding cluster node" not in out
    assert out.splitlines()[-1] == "Profile is up to date with 3 nodes"
    assert cluster_ips(profile(lab["cli"], "stale")) == [lab[m].ip for m in MANAGERS]


# ---- profiles use --------------------------------------------------------------------------------
def test_profiles_use_on_a_replica_fails(lab):
    proc = use_profile(lab["cli"], lab["mgr2"].ip, "on-replica")
    assert f"Can't use manager on-replica. {REPLICA_MESSAGE}" in failed(proc)
    assert profile(lab["cli"], "on-replica") is None


def test_profiles_use_on_a_replica_with_skip_credentials_validation_succeeds(lab):
    out = ok(use_profile(lab["cli"], lab["mgr2"].ip, "on-replica-skip",
                         "--skip-credentials-validation"))
    assert out.splitlines()[-1] == f"Using manager {lab['mgr2'].ip} with port 80"
    context = profile(lab["cli"], "on-replica-skip")
    assert context["manager_ip"] == lab["mgr2"].ip and context["manager_username"] == "admin"
    assert lab["cli"].read("/root/.cloudify/active.profile").strip() == "on-replica-skip"


def test_profiles_are_written_with_the_umask(lab):
    fresh_profile(lab, "modes")
    assert mode_of(lab["cli"], "/root/.cloudify/profiles/modes/context") == "644"


# ---- the failover walk ---------------------------------------------------------------------------
def test_failover_walk_skips_dead_and_replica_nodes_and_moves_each_node_it_tries_first(lab):
    # lb: nothing listens on 80 (connection refused); mgr3: a replica; mgr1: the active node.
    # 4.6 moves every node it tries to the front and saves (cloudify-4.6.md section 0.1)
    profile_with_nodes(lab, "walk", ["lb", "mgr3", "mgr1", "mgr2"])
    assert ok(cfy(lab["cli"], "cluster", "status")).strip() == "Cloudify Manager cluster ready"
    context = profile(lab["cli"], "walk")
    assert cluster_ips(context) == [lab[h].ip for h in ("mgr1", "mgr3", "lb", "mgr2")]
    assert context["manager_ip"] == lab["mgr1"].ip


def test_failover_walk_with_no_active_node_in_the_profile_fails(lab):
    profile_with_nodes(lab, "no-active", ["lb", "mgr2", "mgr3"])
    assert failed(cfy(lab["cli"], "cluster", "status")).strip() == NO_ACTIVE_NODE
    expected = [lab[h].ip for h in ("mgr3", "mgr2", "lb")]  # every node tried, moved first
    assert cluster_ips(profile(lab["cli"], "no-active")) == expected


# ---- credentials ---------------------------------------------------------------------------------
def test_credentials_come_from_the_environment_when_the_profile_has_none(lab):
    cli = lab["cli"]
    ok(cfy(cli, "profiles", "use", lab["mgr1"].ip, "--profile-name", "no-creds",
           "--skip-credentials-validation"))
    assert profile(cli, "no-creds")["manager_password"] is None
    missing = failed(cfy(cli, "cluster", "status"))
    assert "Manager Username must be set in order to use a manager." in missing
    env = {"CLOUDIFY_USERNAME": "admin", "CLOUDIFY_PASSWORD": ADMIN_PASSWORD,
           "CLOUDIFY_TENANT": "default_tenant"}
    assert ok(cfy(cli, "cluster", "status", env=env)).strip() == "Cloudify Manager cluster ready"


def test_credentials_in_the_environment_and_the_profile_refuse_every_command(lab):
    """4.6: a credential in the active profile AND the environment is a conflict, even when
    both hold the same value (the formula gives cfy only what the profile lacks)."""
    fresh_profile(lab, "env-and-profile")
    same = {"CLOUDIFY_USERNAME": "admin"}
    for command in (["cluster", "status"], ["profiles", "show-current"]):
        out = failed(cfy(lab["cli"], *command, env=same))
        assert ("Manager Username is set in profile *and* in the `CLOUDIFY_USERNAME` env "
                "variable. Resolve the conflict before continuing.") in out, command
    assert ok(cfy(lab["cli"], "cluster", "status")).strip() == "Cloudify Manager cluster ready"


def test_every_cluster_command_needs_a_profile(lab):
    cli = lab["cli"]
    cli.run(["rm", "-f", "/root/.cloudify/active.profile"])
    out = failed(cfy(cli, "cluster", "status"))
    assert out.startswith("This command is only available when using a manager."), out
