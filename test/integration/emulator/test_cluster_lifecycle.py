"""Starting a cluster, moving its active node, removing nodes, tearing a manager down
(cloudify-4.6.md sections 2, 4 and 5). Every test changes the cluster: each starts from fresh
hosts and an empty database."""

import re

from cfylab import (ISO_LINE, answers_rest, cfy, cfy_manager, failed, install, last_line, nodes,
                    ok, prepare, read_yaml, rest, wait_for_nodes)
from lab.proc import wait_until

ALL_UP = {"mgr1": "leader", "mgr2": "replica", "mgr3": "replica"}


def installed_leader(lab, emulator):
    proc = install(lab, emulator, "mgr1")
    ok(proc)
    return lab["mgr1"]


# ---- cluster start ------------------------------------------------------------------------------
def test_cluster_start_prints_its_logs_and_where_it_started(fresh_lab, emulator):
    leader = installed_leader(fresh_lab, emulator)
    lines = ok(cfy(leader, "cluster", "start", "--cluster-node-name", "mgr1", "--cluster-host-ip",
                   leader.ip, "-o", "color=blue")).strip().splitlines()
    assert lines[0] == "Creating a new Cloudify Manager cluster"
    assert lines[-1] == f"Cloudify Manager cluster started at {leader.ip}."
    assert len(lines) > 2 and all(ISO_LINE.match(line) for line in lines[1:-1]), lines
    marker = leader.read("/etc/cloudify/cluster")
    assert marker and '"node_name": "mgr1"' in marker
    assert rest(leader.ip, "GET", "/cluster").body["initialized"] is True
    node = nodes(leader.ip)["mgr1"]
    assert (node["master"], node["online"], node["host_ip"]) == (True, True, leader.ip)
    assert node["options"] == {"color": "blue"}
    profile = read_yaml(leader, "/root/.cloudify/profiles/localhost/context")
    # 4.6 lists the start node at the PROFILE's address (localhost), not --cluster-host-ip
    assert [(n["name"], n["manager_ip"]) for n in profile["_cluster"]] == [("mgr1", "localhost")]


def test_cluster_start_without_flags_takes_localhost_and_a_random_name(fresh_lab, emulator):
    leader = installed_leader(fresh_lab, emulator)
    out = ok(cfy(leader, "cluster", "start"))
    assert out.strip().splitlines()[-1] == "Cloudify Manager cluster started at localhost."
    (node,) = nodes(leader.ip).values()
    assert re.fullmatch(r"cloudify_manager_[A-Z0-9]{6}", node["name"]), node["name"]
    assert node["host_ip"] == "localhost"  # the trap: no joiner can reach it there


def test_put_cluster_answers_at_once_and_the_start_completes_asynchronously(fresh_lab, emulator):
    leader = installed_leader(fresh_lab, emulator)
    answer = rest(leader.ip, "PUT", "/cluster", body={"host_ip": leader.ip, "node_name": "mgr1",
                                                      "options": {}})
    assert (answer.status, answer.body) == (200, {"initialized": False})
    wait_until(lambda: rest(leader.ip, "GET", "/cluster").body["initialized"], 10,
               "the cluster to be initialized")
    assert nodes(leader.ip)["mgr1"]["master"] is True


def _cluster_reads(emulator, host):
    return [e["status"] for e in emulator.audit(host) if e["kind"] == "rest"
            and e["path"] == "/api/v3.1/cluster" and e["method"] == "GET"]


def test_cluster_start_restarts_the_rest_service_and_nginx_while_it_initializes(fresh_lab,
                                                                              emulator):
    """4.6's `cluster start` restarts the REST service and nginx while the cluster initializes;
    the real cfy polls GET /cluster every 3 s and goes on past the errors that makes
    (cloudify_cli commands/cluster.py _wait_for_cluster_initialized)."""
    leader = installed_leader(fresh_lab, emulator)
    emulator.set_knobs("mgr1", cluster_start_restart_seconds=4)  # longer than cfy's 3 s poll
    emulator.clear_audit()
    out = ok(cfy(leader, "cluster", "start", "--cluster-node-name", "mgr1", "--cluster-host-ip",
                 leader.ip))
    assert "Restarting the REST service and nginx" in out
    reads = _cluster_reads(emulator, "mgr1")
    assert 502 in reads and reads[-1] == 200, reads
    assert rest(leader.ip, "GET", "/cluster").body["initialized"] is True


def test_the_restart_can_come_right_after_the_cluster_shows_initialized(fresh_lab, emulator):
    """Knob cluster_start_restart=initialized: the worst case for a client that checks again
    at once (where 4.6 puts the restart is in its private premium package): the first answer
    showing the cluster initialized is followed by nginx's 502 while the REST service restarts."""
    leader = installed_leader(fresh_lab, emulator)
    emulator.set_knobs("mgr1", cluster_start_restart="initialized",
                       cluster_start_restart_seconds=3)
    assert rest(leader.ip, "PUT", "/cluster", body={"host_ip": leader.ip, "node_name": "mgr1",
                                                     "options": {}}).status == 200
    wait_until(lambda: rest(leader.ip, "GET", "/cluster").body["initialized"], 10,
               "the cluster to be initialized")
    assert rest(leader.ip, "GET", "/status").status == 502
    wait_until(lambda: rest(leader.ip, "GET", "/status").status == 200, 10, "the REST service")
    assert rest(leader.ip, "GET", "/cluster").status == 200  # one restart, not one per read


# ---- set-active (one cluster for both: each build costs seconds) ----------------------------------
def test_set_active_moves_the_active_node_and_refuses_an_offline_one(cluster):
    lab = cluster
    # the CLI confirms through its profile: it must know mgr2 (the seed's joins do not tell it)
    ok(cfy(lab["mgr1"], "cluster", "update-profile"))
    out = ok(cfy(lab["mgr1"], "cluster", "set-active", "mgr2"))
    assert out.strip().splitlines() == ["Waiting for mgr2 to become the active node...",
                                        "mgr2 set as the new active node"]
    assert rest(lab["mgr2"].ip, "GET", "/status").status == 200
    assert rest(lab["mgr1"].ip, "GET", "/status").body["error_code"] == "not_cluster_master"
    moved = {"mgr1": "replica", "mgr2": "leader", "mgr3": "replica"}
    wait_for_nodes(lab, "mgr2", moved)

    lab.kill("mgr3")
    wait_for_nodes(lab, "mgr2", {**moved, "mgr3": "offline"})
    out = failed(cfy(lab["mgr1"], "cluster", "set-active", "mgr3"))
    assert out.strip() == "Can't set node mgr3 as the active, it's offline"
    assert nodes(lab["mgr2"].ip)["mgr2"]["master"] is True


# ---- removing nodes ------------------------------------------------------------------------------
def test_a_removed_node_stays_installed_answers_removed_and_rejoins_only_once_reinstalled(
        cluster, emulator):
    lab, mgr3 = cluster, cluster["mgr3"]
    out = ok(cfy(lab["mgr1"], "cluster", "nodes", "remove", "mgr3"))
    # 4.6 takes the node out of every profile on the host, then says so
    assert out.strip().splitlines() == ["Profile localhost: mgr3 removed from cluster nodes list",
                                        "Node mgr3 was removed successfully!"]
    assert set(nodes(lab["mgr1"].ip)) == {"mgr1", "mgr2"}
    assert mgr3.exists("/etc/cloudify/.install")
    assert mgr3.exists("/etc/cloudify/cluster")
    assert answers_rest(mgr3.ip)
    answer = rest(mgr3.ip, "GET", "/status")
    assert (answer.status, answer.body["error_code"]) == (400, "removed_from_cluster")
    # it cannot simply install again: it must be torn down first
    assert "already installed" in failed(cfy_manager(mgr3, "install"))
    ok(cfy_manager(mgr3, "remove", "-f"))
    prepare(lab, emulator, "mgr3", join="mgr1")
    ok(cfy_manager(mgr3, "install"))
    wait_for_nodes(lab, "mgr1", ALL_UP)


def test_remove_force_tears_the_manager_down(fresh_lab, emulator):
    leader = installed_leader(fresh_lab, emulator)
    out = ok(cfy_manager(leader, "remove", "-f"))
    assert last_line(out) == "Cloudify Manager successfully removed!"
    for path in ("/etc/cloudify/.install", "/etc/cloudify/cluster", "/opt/manager",
                 "/usr/bin/cfy", "/root/.cloudify", "/etc/lab/boot.d/cloudify-manager"):
        assert not leader.exists(path), path
    assert not answers_rest(leader.ip)
    # the package stays: the host is back to "rpm installed"
    assert leader.exists("/usr/bin/cfy_manager")
