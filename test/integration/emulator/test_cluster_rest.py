"""The REST API of a three-node cluster (cloudify-4.6.md sections 2 and 3): what the active node,
the replicas and the node list answer. One cluster for the module: these tests only read it, or
put back what they change."""

import subprocess
import sys
import textwrap

import pytest

from cfylab import ADMIN_PASSWORD, CHECK_KEYS, MANAGERS, NODE_KEYS, nodes, rest
from lab.proc import wait_until

REPLICAS = ("mgr2", "mgr3")
ADMIN = ("admin", ADMIN_PASSWORD)


pytestmark = pytest.mark.usefixtures("shared_cluster")


def assert_error_body(answer, status, error_code):
    assert answer.status == status, answer
    assert answer.content_type == "application/json", answer
    assert set(answer.body) == {"message", "error_code", "server_traceback"}, answer.body
    assert all(isinstance(v, str) for v in answer.body.values()), answer.body
    assert answer.body["error_code"] == error_code, answer.body
    assert answer.body["message"], answer.body


# ---- the active node --------------------------------------------------------------------------
def test_active_node_status_answers_200_running(lab):
    answer = rest(lab["mgr1"].ip, "GET", "/status")
    assert answer.status == 200
    assert answer.body["status"] == "running"
    assert answer.body["services"] and all("display_name" in s for s in answer.body["services"])


def test_active_node_cluster_is_initialized_with_the_consul_leader_and_no_logs_unasked(lab):
    answer = rest(lab["mgr1"].ip, "GET", "/cluster")
    assert answer.status == 200
    assert answer.body == {"initialized": True, "consul": {"leader": f"{lab['mgr1'].ip}:8300"}}


def test_cluster_logs_and_error_come_only_with_include_and_since_skips_seen_logs(lab):
    ip = lab["mgr1"].ip
    answer = rest(ip, "GET", "/cluster?_include=logs,initialized,error")
    assert answer.status == 200
    assert set(answer.body) == {"initialized", "logs", "error"}
    assert answer.body["initialized"] is True and answer.body["error"] is None
    logs = answer.body["logs"]
    assert len(logs) >= 2
    for entry in logs:
        assert set(entry) == {"message", "timestamp", "cursor"}
        assert isinstance(entry["timestamp"], int) and entry["timestamp"] > 10 ** 15  # microseconds
    later = rest(ip, "GET", f"/cluster?_include=logs&since={logs[0]['cursor']}").body
    assert set(later) == {"initialized", "logs"}
    assert later["logs"] == logs[1:]


def test_an_unknown_include_field_answers_400_no_such_include_field_error(lab):
    """4.6's rest_decorators.marshal_with; the fields are those of the public client's
    ClusterState (initialized, logs, error)."""
    answer = rest(lab["mgr1"].ip, "GET", "/cluster?_include=initialized,consul")
    assert_error_body(answer, 400, "no_such_include_field_error")
    assert answer.body["message"] == ("Include keys '[u'consul']' do not exist. Allowed keys "
                                      "are: ['initialized', 'logs', 'error']")


def test_node_list_shows_every_member_with_its_checks(lab):
    answer = rest(lab["mgr1"].ip, "GET", "/cluster/nodes")
    assert answer.status == 200
    assert set(answer.body) == {"items", "metadata"}
    items = {n["name"]: n for n in answer.body["items"]}
    assert set(items) == set(MANAGERS)
    for name, node in items.items():
        assert NODE_KEYS <= set(node), node
        assert set(node["checks"]) == CHECK_KEYS
        assert node["host_ip"] == lab[name].ip
        assert node["master"] is (name == "mgr1")
        assert node["online"] is True and node["initialized"] is True
        assert node["remote_database"] is True
        assert all(node["checks"].values()), node["checks"]


def test_one_node_by_name_and_an_unknown_name(lab):
    answer = rest(lab["mgr1"].ip, "GET", "/cluster/nodes/mgr2")
    assert answer.status == 200
    assert answer.body["name"] == "mgr2" and "options" in answer.body
    assert_error_body(rest(lab["mgr1"].ip, "GET", "/cluster/nodes/nosuch"), 404, "not_found_error")


def test_patch_cluster_naming_the_active_node_answers_the_cluster_state(lab):
    answer = rest(lab["mgr1"].ip, "PATCH", "/cluster", body={"master": "mgr1"})
    assert answer.status == 200
    assert answer.body["initialized"] is True
    assert answer.body["consul"] == {"leader": f"{lab['mgr1'].ip}:8300"}
    assert_error_body(rest(lab["mgr1"].ip, "PATCH", "/cluster", body={"master": "nosuch"}), 404,
                      "not_found_error")


# ---- replicas ---------------------------------------------------------------------------------
@pytest.mark.parametrize("replica", REPLICAS)
@pytest.mark.parametrize("method,path,auth", [
    ("GET", "/status", ADMIN),
    ("GET", "/cluster", ADMIN),
    ("GET", "/cluster/nodes", ADMIN),
    ("GET", "/blueprints", ADMIN),
    ("PATCH", "/cluster", ADMIN),
    ("GET", "/status", None),
    ("GET", "/status", ("admin", "wrong")),
], ids=["status", "cluster", "nodes", "blueprints", "patch", "no-auth", "bad-auth"])
def test_replica_answers_every_call_with_400_not_cluster_master(lab, replica, method, path, auth):
    answer = rest(lab[replica].ip, method, path, auth=auth, body={} if method == "PATCH" else None)
    assert_error_body(answer, 400, "not_cluster_master")


# ---- authentication and errors ----------------------------------------------------------------
@pytest.mark.parametrize("auth", [("admin", "wrong-password"), ("nobody", ADMIN_PASSWORD), None],
                         ids=["bad-password", "unknown-user", "no-header"])
@pytest.mark.parametrize("path", ["/status", "/cluster/nodes"])
def test_bad_credentials_answer_401_with_an_error_body(lab, auth, path):
    assert_error_body(rest(lab["mgr1"].ip, "GET", path, auth=auth), 401, "unauthorized_error")


def test_unknown_resource_answers_404_with_an_error_body(lab):
    assert_error_body(rest(lab["mgr1"].ip, "GET", "/no/such/thing"), 404, "not_found_error")


# ---- adding and removing nodes on the leader ---------------------------------------------------
@pytest.mark.parametrize("name,ip_of", [("mgr2", "lb"), ("newnode", "mgr3")],
                         ids=["existing-name", "existing-ip"])
def test_adding_an_existing_name_or_address_answers_409(lab, name, ip_of):
    answer = rest(lab["mgr1"].ip, "PUT", f"/cluster/nodes/{name}",
                  body={"host_ip": lab[ip_of].ip, "node_name": name, "database_ip": lab["db"].ip})
    assert_error_body(answer, 409, "conflict_error")
    assert set(nodes(lab["mgr1"].ip)) == set(MANAGERS)


def test_adding_a_node_on_another_database_is_an_incompatible_architecture(lab):
    answer = rest(lab["mgr1"].ip, "PUT", "/cluster/nodes/other",
                  body={"host_ip": lab["lb"].ip, "node_name": "other", "database_ip": lab["lb"].ip})
    assert_error_body(answer, 400, "incompatible_cluster_architecture")
    assert set(nodes(lab["mgr1"].ip)) == set(MANAGERS)


# an empty file-replication index on 22000: what an empty joiner shows the leader
EMPTY_SYNC_PEER = textwrap.dedent("""
    import socketserver, sys
    class H(socketserver.StreamRequestHandler):
        def handle(self):
            self.rfile.readline(); self.wfile.write(b"2\\n{}")
    socketserver.TCPServer.allow_reuse_address = True
    socketserver.TCPServer((sys.argv[1], 22000), H).serve_forever()
""")


def test_add_node_answers_the_new_node_and_delete_answers_the_removed_one(lab):
    leader, phantom = lab["mgr1"].ip, lab["lb"]
    peer = phantom.popen([sys.executable, "-c", EMPTY_SYNC_PEER, phantom.ip],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: phantom.run(["ss", "-Htln", "sport = :22000"]).stdout.strip(), 10,
                   "the fake empty joiner to listen on 22000")
        added = rest(leader, "PUT", "/cluster/nodes/phantom", body={
            "host_ip": phantom.ip, "node_name": "phantom", "database_ip": lab["db"].ip})
        assert added.status == 200, added
        assert added.body["name"] == "phantom" and added.body["host_ip"] == phantom.ip
        assert added.body["credentials"] and isinstance(added.body["required"], dict)
        assert not any(added.body[k] for k in ("initialized", "online", "master")), added.body
        listed = nodes(leader)
        assert set(listed) == set(MANAGERS) | {"phantom"}
        assert listed["phantom"]["online"] is False
    finally:
        removed = rest(leader, "DELETE", "/cluster/nodes/phantom")
        peer.kill()
        peer.wait()
    assert removed.status == 200 and removed.body["name"] == "phantom"
    assert set(nodes(leader)) == set(MANAGERS)
    # three of four nodes were always up: the leader never lost its majority
    assert rest(leader, "GET", "/status").status == 200


def test_deleting_a_non_member_answers_404(lab):
    answer = rest(lab["mgr1"].ip, "DELETE", "/cluster/nodes/nosuch")
    assert_error_body(answer, 404, "not_found_error")
