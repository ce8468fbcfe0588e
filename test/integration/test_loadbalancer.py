"""HAProxy in front of the cluster (real HAProxy on the lab's LB host, started the way the state
starts it on a host without systemd): only the active node receives traffic, a leader's death
moves traffic to the new leader (the time is measured and printed, never asserted), a broken LB
pillar leaves the running HAProxy alone, a re-run neither changes nor reloads anything."""

import hashlib
import time

import pytest

from lab.formula import deep, http_get, minion_pillar, nodes, orch, shadow_pillar
from lab.proc import wait_until

MANAGERS = ("mgr1", "mgr2", "mgr3")
CONFIG = "/etc/haproxy/haproxy.cfg"
PIDFILE = "/run/haproxy.pid"


@pytest.fixture(scope="module")
def lb_pillar(salt_cli):
    pillar = deep(minion_pillar(salt_cli))
    pillar["clusters"]["lab"]["loadbalancer"] = {
        "minion_ids": ["lb"], "port": 80, "inter": "500ms", "fall": 2, "rise": 1}
    return pillar


@pytest.fixture(scope="module")
def balanced(lab, salt_run_cli, pillar_dir, lb_pillar):
    """A cluster built from empty with a load balancer, the LB pillar served for the module."""
    with shadow_pillar(pillar_dir, lb_pillar):
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
    with shadow_pillar(pillar_dir, broken):
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
