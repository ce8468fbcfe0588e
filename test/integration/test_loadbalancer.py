"""HAProxy in front of the cluster (real HAProxy on the lab's LB host, started the way the state
starts it on a host without an init, then as the SysV service the lab's boot starts): only the
active node receives traffic, a leader's death moves traffic to the new leader (the time is
measured and printed, never asserted), a broken LB pillar leaves the running HAProxy alone, a
re-run neither changes nor reloads anything, HAProxy runs as its own user in its chroot, its
health check logs in as the least-privileged check user (the LB host never holds the admin's
password), a pillar password Cloudify does not accept stops the run before the LB, and HAProxy
serves again after the LB host reboots with no formula run in between."""

import base64
import hashlib
import json
import secrets
import subprocess
import sys
import time

import pytest

from lab.fixtures import AT_46
from lab.formula import (OrchRun, deep, encodings, files_containing, http_get, jobs_published,
                         minion_pillar, nodes, orch, shadow_lb_pillar)
from lab.proc import wait_until

MANAGERS = ("mgr1", "mgr2", "mgr3")
CONFIG = "/etc/haproxy/haproxy.cfg"
PIDFILE = "/run/haproxy.pid"
CHECK_USER = "cloudify_ha_check"
CHECK_PASSWORD = "CheckSecret-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def lb_pillar(salt_cli):
    pillar = deep(minion_pillar(salt_cli))
    pillar["clusters"]["lab"]["loadbalancer"] = {
        "minion_ids": ["lb"], "port": 80, "inter": "500ms", "fall": 2, "rise": 1,
        "check_password": CHECK_PASSWORD}
    return pillar


@pytest.fixture(scope="module")
def balanced(lab, salt_run_cli, pillar_dir, lb_pillar):
    """A cluster built from empty with a load balancer, the LB pillar served for the module (the
    LB host gets only the secrets its role holds: the check user's password)."""
    with shadow_lb_pillar(pillar_dir, lb_pillar):
        lab.reset()
        run = orch(salt_run_cli)
        assert run.returncode == 0, run
        assert run["cloudify_ha-orch-lab-loadbalancer"]["changes"], run
        try:
            yield lab
        finally:
            # its health checks would keep writing to the managers' audit in later modules
            lab.wipe("lb")


def receiving(salt_cli):
    ret = salt_cli.run("cloudify_ha_lb.receiving", minion_tgt="lb")
    assert ret.returncode == 0, ret
    return ret.data


def through_lb(lab, path="/api/v3.1/cluster/nodes"):
    return http_get(lab["cli"], f"http://{lab['lb'].ip}:80{path}", "admin",
                    lab.passwords["admin"])


def served_by(emulator, lab, path="/api/v3.1/cluster/nodes"):
    """The managers whose REST API answered `path` for the load balancer."""
    return sorted(m for m in MANAGERS for e in emulator.audit(m)
                  if e["kind"] == "rest" and e["path"] == path and e["remote"] == lab["lb"].ip)


def lb_pids(lab):
    return lab["lb"].read(PIDFILE).split()


def runs_as(lab, pid):
    """(user, root directory) of a process on the LB host: whom HAProxy dropped root for, and
    its chroot."""
    host = lab["lb"]
    return (host.run(["stat", "-c", "%U", f"/proc/{pid}"]).stdout.strip(),
            host.run(["readlink", f"/proc/{pid}/root"]).stdout.strip())


def test_only_the_active_node_receives_traffic(balanced, salt_cli, emulator):
    lab = balanced
    wait_until(lambda: receiving(salt_cli) == {"cloudify_lab": ["mgr1"]}, 10,
               "HAProxy to mark only the active node UP")
    emulator.clear_audit()
    status, body = through_lb(lab)
    assert status == 200, body
    assert served_by(emulator, lab) == ["mgr1"]
    assert lab["lb"].run(["stat", "-c", "%a %U", CONFIG]).stdout.split() == ["600", "root"]
    assert lab.passwords["admin"] not in lab["lb"].run(["ps", "-eo", "args"]).stdout
    # root bound the port and the admin socket (which the receiving check above used); HAProxy
    # itself runs as its package's user in its chroot
    assert {runs_as(lab, pid) for pid in lb_pids(lab)} == {("haproxy", "/var/lib/haproxy")}


def test_the_lb_host_holds_the_check_users_password_and_never_the_admins(balanced, salt_cli,
                                                                         emulator):
    lab = balanced
    admin = lab.passwords["admin"]
    # the check user: 4.6's default role, in no tenant (the admin asks the active node)
    status, body = http_get(lab["cli"], f"http://{lab['mgr1'].ip}/api/v3.1/users/{CHECK_USER}",
                            "admin", admin)
    assert status == 200, body
    assert '"role": "default"' in body and '"tenants": 0' in body
    # HAProxy logs in as it: no Tenant header, the check user's Basic credentials
    auth = base64.b64encode(f"{CHECK_USER}:{CHECK_PASSWORD}".encode()).decode()
    assert f'hdr Authorization "Basic {auth}"' in lab["lb"].read(CONFIG)
    # it may read /status and nothing else of Cloudify's
    assert http_get(lab["cli"], f"http://{lab['mgr1'].ip}/api/v3.1/status", CHECK_USER,
                    CHECK_PASSWORD)[0] == 200
    for path in ("/api/v3.1/blueprints", "/api/v3.1/cluster/nodes", "/api/v3.1/users/admin"):
        assert http_get(lab["cli"], f"http://{lab['mgr1'].ip}{path}", CHECK_USER,
                        CHECK_PASSWORD)[0] == 403, path
    # nowhere on the LB host, in no form: its pillar, its files (everything it wrote), its
    # processes' arguments
    ret = salt_cli.run("pillar.items", "unmask=True", minion_tgt="lb")
    assert ret.returncode == 0 and "CHANGE-ME" not in str(ret.data)
    assert admin not in str(ret.data) and CHECK_PASSWORD in str(ret.data)
    for root in (lab["lb"].dir / "upper", lab.dir / "sf" / "lb"):  # the host, its minion
        assert files_containing(root, encodings(admin, "admin")) == [], root
    assert admin not in lab["lb"].run(["ps", "-eo", "args"]).stdout


def test_a_check_password_cloudify_does_not_accept_stops_the_run_before_the_lb(
        balanced, salt_run_cli, salt_cli, pillar_dir, lb_pillar):
    """Rotation is not the formula's: a pillar password the check user does not have is found
    on the managers (the orchestration stops before the load balancer) and on the load balancer
    itself (applied directly, it keeps the configuration it has): never a silent stale one."""
    lab = balanced
    config = lab["lb"].read(CONFIG)
    before = lb_pids(lab)
    changed = deep(lb_pillar)
    changed["clusters"]["lab"]["loadbalancer"]["check_password"] = "Rotated-" + CHECK_PASSWORD
    with shadow_lb_pillar(pillar_dir, changed):
        run = orch(salt_run_cli)
        assert run.returncode != 0, run
        assert run["cloudify_ha-orch-lab-check-user"]["result"] is False, run
        assert "does not accept loadbalancer:check_password" in str(
            run["cloudify_ha-orch-lab-check-user"]), run["cloudify_ha-orch-lab-check-user"]
        assert "cloudify_ha-orch-lab-loadbalancer" not in run.steps or \
            run["cloudify_ha-orch-lab-loadbalancer"]["result"] is False
        direct = salt_cli.run("state.apply", "cloudify_ha.loadbalancer", minion_tgt="lb")
        assert direct.returncode != 0
        refusal = next(c for c in direct.data.values()
                       if c["__id__"] == "cloudify_ha-loadbalancer-lab-check-user")
        assert refusal["result"] is False and "reject the check user" in refusal["comment"]
    assert lab["lb"].read(CONFIG) == config and lb_pids(lab) == before
    assert through_lb(lab)[0] == 200


def test_rerun_changes_nothing_and_does_not_reload(balanced, salt_run_cli):
    lab = balanced
    before = lb_pids(lab)
    run = orch(salt_run_cli)
    assert run.returncode == 0, run
    assert run.changed() == set(), run
    assert lb_pids(lab) == before


def test_a_broken_lb_pillar_leaves_the_running_config_alone(balanced, salt_run_cli, salt_cli,
                                                            pillar_dir, lb_pillar):
    lab = balanced
    config = hashlib.sha256(lab["lb"].read(CONFIG).encode()).hexdigest()
    before = lb_pids(lab)
    broken = deep(lb_pillar)
    broken["clusters"]["lab"]["loadbalancer"]["inter"] = "fast"
    with shadow_lb_pillar(pillar_dir, broken):
        run = orch(salt_run_cli)
        assert run.returncode != 0, run
        assert "cloudify_ha:clusters:lab:loadbalancer:inter: 'fast' is not an HAProxy time" in \
            run["cloudify_ha-orch-validate"]["comment"]
        # applied directly on the LB minion, the SLS refuses as well
        direct = salt_cli.run("state.apply", "cloudify_ha.loadbalancer", minion_tgt="lb")
        assert direct.returncode != 0
        ran = {c["__id__"]: c for c in direct.data.values()}
        # the refusal, and the host's lock around it (lock.sls)
        assert sorted(ran) == ["cloudify_ha-loadbalancer-invalid-pillar",
                               "cloudify_ha-lock-run-locked", "cloudify_ha-lock-run-unlocked"]
        state = ran["cloudify_ha-loadbalancer-invalid-pillar"]
        assert state["result"] is False
        assert state["comment"].startswith("the cloudify_ha pillar is invalid; nothing was "
                                           "changed here. Fix:\n- cloudify_ha:clusters:lab:"
                                           "loadbalancer:inter: 'fast' is not an HAProxy time")
    assert hashlib.sha256(lab["lb"].read(CONFIG).encode()).hexdigest() == config
    assert lb_pids(lab) == before
    assert through_lb(lab)[0] == 200


def test_the_leaders_death_moves_traffic_to_the_new_leader(balanced, salt_cli, emulator):
    lab = balanced
    assert through_lb(lab)[0] == 200
    lab.kill("mgr1")
    died = time.monotonic()
    try:
        wait_until(lambda: through_lb(lab, "/api/v3.1/status")[0] == 200, 30,
                   "a good answer through the load balancer after the leader died")
        failover = time.monotonic() - died
        print(f"\nLB failover: {failover:.2f}s from the leader's death to the first good request")
        emulator.clear_audit()
        assert through_lb(lab)[0] == 200
        leader = next(n for n, row in nodes(lab["mgr2"]).items() if row["state"] == "leader")
        assert served_by(emulator, lab) == [leader] != ["mgr1"]
        assert receiving(salt_cli) == {"cloudify_lab": [leader]}
    finally:
        lab.power_on("mgr1")
    wait_until(lambda: nodes(lab["mgr2"])["mgr1"]["state"] == "replica", 30,
               "mgr1 back as a replica")


# a client of the cluster: every ~100 ms a GET through the load balancer (as the admin) and, to
# see the hazard the load balancer must hide, the joiner's own /status (as the check user);
# credentials on stdin, one JSON line per answer on stdout, until it is terminated
POLLER = """
import base64, json, sys, time, urllib.error, urllib.request
cfg = json.loads(sys.stdin.readline())
def get(url, user, password):
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(url, headers={"Authorization": "Basic " + auth})
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except Exception:
        return 0
while True:
    for kind, url, user, password in cfg["polls"]:
        print(json.dumps([kind, time.time(), get(url, user, password)]), flush=True)
    time.sleep(0.1)
"""
POLL_PATH = "/api/v3.1/blueprints"


class Poller:
    """POLLER on the cli host for the duration of a `with` block; `answers` afterwards."""

    def __init__(self, lab, joiner):
        self.lab, self.joiner, self.answers = lab, joiner, []
        self.polls = [("lb", f"http://{lab['lb'].ip}{POLL_PATH}", "admin", lab.passwords["admin"]),
                      ("direct", f"http://{lab[joiner].ip}/api/v3.1/status", CHECK_USER,
                       CHECK_PASSWORD)]

    def __enter__(self):
        self.proc = self.lab["cli"].popen([sys.executable, "-c", POLLER], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, text=True)
        self.proc.stdin.write(json.dumps({"polls": self.polls}) + "\n")
        self.proc.stdin.flush()
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        self.answers = [json.loads(line) for line in out.splitlines() if line.strip()]

    def of(self, kind):
        return [status for k, _t, status in self.answers if k == kind]


def poll_requests_served_by(emulator, lab, name):
    """The client's requests through the load balancer that `name`'s REST API answered."""
    return [e for e in emulator.audit(name) if e["kind"] == "rest" and e["path"] == POLL_PATH
            and e["remote"] == lab["lb"].ip]


def rebuild_and_rejoin(lab, emulator, rejoin, name="mgr1", install_seconds=15, knobs=None):
    """`name` rebuilt (a fresh OS) and joined again by `rejoin()` with a long install, while a
    client polls through the load balancer: (the poller, rejoin's result). ``knobs``: the
    managers' emulator knobs during the rejoin (then turned back to the lab's)."""
    lab.wipe(name)
    emulator.set_knobs(name, install_seconds=install_seconds)
    for host in MANAGERS if knobs else ():
        emulator.set_knobs(host, **knobs)
    try:
        with Poller(lab, name) as poller:
            result = rejoin()
    finally:
        for host in MANAGERS if knobs else ():
            emulator.set_knobs(host, **{k: None for k in knobs})
    return poller, result


def assert_out_until_a_member_then_serving_once_active(lab, emulator, poller, name="mgr1"):
    # the hazard was there: the joiner answered /status 200 as a standalone manager ...
    assert 200 in poller.of("direct"), poller.answers[-20:]
    # ... and the load balancer sent it nothing (every answer came from the active node)
    served = poll_requests_served_by(emulator, lab, name)
    assert served == [], [(e["status"], e["t"]) for e in served]
    assert set(poller.of("lb")) == {200}, poller.answers[-20:]
    assert nodes(lab["mgr2"])[name]["state"] == "replica"
    # a member now, first in the pillar's order: once active, it serves
    lab["mgr2"].run(["cfy", "cluster", "set-active", name])
    wait_until(lambda: through_lb(lab, POLL_PATH)[0] == 200
               and poll_requests_served_by(emulator, lab, name), 30,
               f"{name}, now the active node, to serve through the load balancer")


def test_a_rebuilt_first_manager_gets_no_request_before_it_is_a_member(
        balanced, salt_run_cli, emulator, pillar_dir, lb_pillar):
    """The pillar's first manager (first in HAProxy's `balance first` order) rebuilt while
    another node is active: the orchestration takes it out of the load balancer before its
    install (4.6's standalone window answers /status 200, and the check user exists in the
    cluster's database it runs on) and puts it back once it is a member."""
    lab = balanced
    assert nodes(lab["mgr2"])["mgr1"]["state"] == "replica"  # the leader's death test's end
    rebuilt = deep(lb_pillar)
    rebuilt["clusters"]["lab"]["replace_stale"] = True
    with shadow_lb_pillar(pillar_dir, rebuilt):
        poller, run = rebuild_and_rejoin(lab, emulator, lambda: orch(salt_run_cli))
    assert run.returncode == 0, run
    assert {"cloudify_ha-orch-lab-lb-out-mgr1", "cloudify_ha-orch-lab-lb-back-mgr1"} <= \
        run.changed(), run
    assert_out_until_a_member_then_serving_once_active(lab, emulator, poller)


def test_the_reactors_rejoin_keeps_a_rebuilt_manager_out_until_it_is_a_member(
        balanced, salt_run_cli, emulator):
    """The rejoin orchestration (the reactor's) of a rebuilt manager at 4.6's timing (issue 32
    item 7): its old entry shows offline only after 30 s, the joined node online after a 15 s
    heartbeat, while the load balancer keeps it out until it is a member."""
    lab = balanced
    lab["mgr2"].run(["cfy", "cluster", "set-active", "mgr2"])
    wait_until(lambda: nodes(lab["mgr2"])["mgr2"]["state"] == "leader", 30, "mgr2 active")

    def rejoin():
        ret = salt_run_cli.run("state.orch", "cloudify_ha.orch.rejoin",
                               "pillar=" + json.dumps({"node": "mgr1"}), _timeout=900)
        return OrchRun(ret)

    # no failover in this scenario: the failover window stays the lab's (the emulator reads it
    # at every request, and a 30 s one would reopen on mgr2, elected by set-active just now)
    at_46 = {k: v for k, v in AT_46.items() if k != "failover_seconds"}
    poller, run = rebuild_and_rejoin(lab, emulator, rejoin, knobs=at_46)
    assert run.returncode == 0, run
    assert {"cloudify_ha-rejoin-mgr1-lb-out", "cloudify_ha-rejoin-mgr1-lb-back"} <= \
        run.changed(), run
    assert_out_until_a_member_then_serving_once_active(lab, emulator, poller)


def test_a_server_a_dead_run_left_out_is_put_back_once_it_is_a_member(
        balanced, salt_run_cli, salt_cli):
    """A run that died between taking a manager out and putting it back (simulated: the
    backends SLS applied alone, as the dead run's first step): the next run puts it back."""
    lab = balanced
    left = salt_cli.run("state.apply", "cloudify_ha.backends", minion_tgt="lb",
                        pillar={"cloudify_ha_orch": {"backends": {"cluster": "lab",
                                                                  "out": ["mgr3"]}}})
    assert left.returncode == 0, left
    assert servers(salt_cli)["mgr3"] == "MAINT"
    run = orch(salt_run_cli)
    assert run.returncode == 0, run
    assert "cloudify_ha-orch-lab-loadbalancer" in run.changed(), run
    assert servers(salt_cli)["mgr3"] != "MAINT"
    assert lab["lb"].read("/var/lib/cloudify_ha/haproxy-drained.json").strip() == "{}"


def servers(salt_cli):
    ret = salt_cli.run("cloudify_ha_lb.backends", minion_tgt="lb")
    assert ret.returncode == 0, ret
    return {s["server"]: s["status"] for s in ret.data}


def test_the_sysv_service_serves_again_after_the_lb_host_reboots(balanced, salt_run_cli, salt_cli,
                                                                 pillar_dir, lb_pillar,
                                                                 event_listener):
    """haproxy_manager service on a Debian host whose init is SysV (as the lab boots its hosts):
    Salt's own service module enables HAProxy (insserv, update-rc.d), the boot starts it, and its
    admin socket's directory is made again in the fresh /run; nothing of the formula runs."""
    lab = balanced
    service = deep(lb_pillar)
    service.setdefault("lookup", {})["haproxy_manager"] = "service"
    with shadow_lb_pillar(pillar_dir, service):
        run = orch(salt_run_cli)
        assert run.returncode == 0, run
        step = run["cloudify_ha-orch-lab-loadbalancer"]
        states = run.minion_states("cloudify_ha-orch-lab-loadbalancer").get("lb", {})
        running = next((s for s in states.values()
                        if s["__id__"] == "cloudify_ha-loadbalancer-running"), step)
        # the running HAProxy is the service's (the same pid file): only its boot start is new
        assert running["changes"] == {"haproxy": True}, running
        assert lab["lb"].run(["ls", "/etc/rc2.d"]).stdout.split() == ["S01haproxy"]
        before = lb_pids(lab)
        lab.kill("lb")
        since = time.time()
        lab.power_on("lb")
        wait_until(lambda: through_lb(lab, "/api/v3.1/status")[0] == 200, 30,
                   "HAProxy serving again after the LB host's reboot")
        assert receiving(salt_cli) == {"cloudify_lab": ["mgr1"]}
        pids = lb_pids(lab)
        assert pids != before and {runs_as(lab, pid) for pid in pids} == {
            ("haproxy", "/var/lib/haproxy")}
        assert [job for job in jobs_published(event_listener, since)
                if job[0] not in ("cloudify_ha_lb.receiving", "saltutil.find_job")] == []
