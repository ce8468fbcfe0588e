"""4.6's maintenance mode (rest-service maintenance.py, resources_v2_1/maintenance_mode.py,
constants.py; cloudify-4.6-day2.md section 5.1), driven by the real `cfy maintenance-mode`:
while it is activated every endpoint but status, version, license, maintenance and snapshots
answers 503 `maintenance_mode_active`, before authentication, and a joiner's install fails
with 4.6's own message. The test starts from fresh hosts and an empty database."""

from cfylab import cfy, failed, install, last_line, nodes, ok, rest, start_cluster

REFUSED = "Your request was rejected since Cloudify manager is currently in maintenance mode"


def test_maintenance_mode_blocks_all_but_46s_allowed_endpoints_and_a_join(fresh_lab, emulator):
    lab = fresh_lab
    leader, ip = lab["mgr1"], lab["mgr1"].ip
    ok(install(lab, emulator, "mgr1"))
    ok(start_cluster(leader))
    emulator.ensure_license("mgr1")  # 4.6 serves /maintenance only with a license
    assert rest(ip, "GET", "/maintenance").body["status"] == "deactivated"

    out = ok(cfy(leader, "maintenance-mode", "activate"))
    assert "Entering maintenance mode..." in out
    state = rest(ip, "GET", "/maintenance").body
    assert (state["status"], state["requested_by"], state["remaining_executions"]) == \
        ("activated", "admin", [])
    assert state["activated_at"].endswith("Z")
    out = ok(cfy(leader, "maintenance-mode", "status"))
    assert "Status:\tactivated" in out and "Most requests will be blocked" in out, out
    # blocked before authentication; a route that does not exist is still a 404
    for method, path in (("GET", "/cluster"), ("GET", "/cluster/nodes"), ("GET", "/blueprints"),
                         ("PUT", "/cluster/nodes/mgr2"), ("DELETE", "/cluster/nodes/mgr2")):
        answer = rest(ip, method, path, auth=None, body={} if method == "PUT" else None)
        assert (answer.status, answer.body["error_code"], answer.body["message"]) == \
            (503, "maintenance_mode_active", REFUSED), (method, path, answer)
    assert rest(ip, "GET", "/status").status == 200  # a load balancer's check goes on
    assert rest(ip, "GET", "/status", auth=None).status == 401
    assert rest(ip, "GET", "/nothing-here").status == 404
    assert "maintenance mode" in failed(cfy(leader, "cluster", "nodes", "list"))
    # a joiner's install-time join: 4.6's own message (components/cluster/cluster.py)
    out = failed(install(lab, emulator, "mgr2", join="mgr1"))
    assert last_line(out) == "NetworkError: REST service returned an unexpected response: 503"
    assert not lab["mgr2"].exists("/etc/cloudify/.install")
    assert "Maintenance mode is already on." in failed(cfy(leader, "maintenance-mode", "activate"))

    assert "Maintenance mode is off." in ok(cfy(leader, "maintenance-mode", "deactivate"))
    assert rest(ip, "GET", "/cluster/nodes").status == 200
    assert "Maintenance mode is already off." in failed(cfy(leader, "maintenance-mode",
                                                            "deactivate"))

    # executions still running: `activating`, and 4.6 blocks only execution, deployment and
    # snapshot changes then (test_snapshots.py); activated at the first request once they end
    emulator.set_knobs("mgr1", running_executions=2)
    ok(cfy(leader, "maintenance-mode", "activate"))
    state = rest(ip, "GET", "/maintenance").body
    assert (state["status"], len(state["remaining_executions"]), state["activated_at"]) == \
        ("activating", 2, "")
    assert rest(ip, "GET", "/cluster/nodes").status == 200
    emulator.set_knobs("mgr1", running_executions=None)
    assert rest(ip, "GET", "/cluster/nodes").status == 503
    assert rest(ip, "GET", "/maintenance").body["status"] == "activated"
    ok(cfy(leader, "maintenance-mode", "deactivate"))
    assert sorted(nodes(ip)) == ["mgr1"]
