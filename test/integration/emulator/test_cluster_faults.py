"""Faults in a running cluster (cloudify-4.6.md sections 2 and 6): a node whose gossip port is
blocked goes offline in the active node's view; a dead leader is replaced and comes back as a
replica. One cluster for the module (a build costs seconds): each test puts its fault back and
waits for every node to be up again; the leader's death, which moves the leader, comes last."""

import time

import pytest

from cfylab import MANAGERS, active_ip, build, cfy, nodes, ok, parse_table, rest, wait_for_nodes
from lab.proc import wait_until

ALL_UP = {"mgr1": "leader", "mgr2": "replica", "mgr3": "replica"}


@pytest.fixture(scope="module")
def cluster(lab, emulator):
    """A fresh three-node cluster for the module (mgr1 leader)."""
    lab.reset()
    return build(lab, emulator)


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_blocked_gossip_port_turns_the_node_offline_in_the_leaders_view(cluster, proto):
    lab = cluster
    lab["mgr3"].block_port(8301, proto)
    try:
        wait_for_nodes(lab, "mgr1", {**ALL_UP, "mgr3": "offline"}, timeout=15)
        assert nodes(lab["mgr1"].ip)["mgr3"]["checks"]["heartbeat"] is False
        rows = parse_table(ok(cfy(lab["mgr1"], "cluster", "nodes", "list")))[2]
        mgr3 = next(r for r in rows if r["name"] == "mgr3")
        assert (mgr3["state"], mgr3["heartbeat"]) == ("offline", "FAIL")
    finally:
        lab["mgr3"].unblock_port(8301, proto)
    wait_for_nodes(lab, "mgr1", ALL_UP, timeout=15)


def test_killed_leader_is_replaced_within_10_seconds_and_returns_as_a_replica(cluster):
    lab = cluster
    survivors = [n for n in MANAGERS if n != "mgr1"]
    killed_at = time.monotonic()
    lab.kill("mgr1")
    new_ip = wait_until(lambda: active_ip(lab, survivors), 10 - (time.monotonic() - killed_at),
                        "a new active node within 10 s of the leader's death")
    new_leader = next(n for n in survivors if lab[n].ip == new_ip)
    assert nodes(new_ip)["mgr1"]["online"] is False
    lab.power_on("mgr1")
    others = [n for n in survivors if n != new_leader]
    wait_for_nodes(lab, new_leader, {new_leader: "leader", "mgr1": "replica", others[0]: "replica"})
    # its cluster agent is back before its REST service: nginx says 502 meanwhile (a boot)
    answer = wait_until(lambda: (lambda a: a if a.status != 502 else None)(
        rest(lab["mgr1"].ip, "GET", "/status")), 30, "mgr1's REST service after its boot")
    assert (answer.status, answer.body["error_code"]) == (400, "not_cluster_master")
