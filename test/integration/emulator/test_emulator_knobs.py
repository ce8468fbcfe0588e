"""The lab's knobs on the emulator (Emulator.set_knobs): an install that fails at a chosen step
(and what 4.6 leaves behind then), a slow install, what 4.6's checks find on the host (its
machine checks, a missing prerequisite package: Emulator.hide_package). (edition=community is in
test_standalone_manager.py, seed_blueprints in test_install_join.py.) Every test starts from
fresh hosts and an empty database."""

import time

import pytest

from cfylab import (answers_rest, cfy_manager, failed, install, last_line, nodes, ok,
                    prepare, rest, start_cluster)

INSTALL_LOG = "/var/log/cloudify/manager/cfy_manager.log"


@pytest.mark.parametrize("component", ["manager", "restservice", "cli"])
def test_fail_at_makes_the_install_fail_at_that_step(fresh_lab, emulator, component):
    host = fresh_lab["mgr1"]
    prepare(fresh_lab, emulator, "mgr1")
    emulator.set_knobs("mgr1", fail_at=component)
    reason = last_line(failed(cfy_manager(host, "install")))
    assert reason == (f"ProcessExecutionError: Failed to install {component}: simulated failure "
                      f"(lab knob fail_at={component}); see {INSTALL_LOG}")
    assert not host.exists("/etc/cloudify/.install")
    log = host.read(INSTALL_LOG)
    assert f"[{component.upper()}] - ERROR - Failed to install {component}" in log
    emulator.set_knobs("mgr1", fail_at=None)
    assert "fail_at" not in host.read("/var/lib/cloudify-lab/knobs.json")


def test_install_seconds_stretches_the_install(fresh_lab, emulator):
    prepare(fresh_lab, emulator, "mgr1")
    emulator.set_knobs("mgr1", install_seconds=3)
    start = time.monotonic()
    ok(cfy_manager(fresh_lab["mgr1"], "install"))
    assert time.monotonic() - start >= 3


def test_46s_machine_checks_fail_the_install_before_it_starts(fresh_lab, emulator):
    """4.6's validations.py on the host: the private IP must be one of its addresses, CentOS or
    RHEL 7 with Python 2.7 (the lab's hosts stand in for one; knobs say otherwise), enough memory
    and disk. Every failure at once, as `Validation error(s):`, and nothing installed;
    validations.skip_validations skips them (and 4.6's config rules with them)."""
    host = fresh_lab["mgr1"]
    prepare(fresh_lab, emulator, "mgr1", manager={"private_ip": fresh_lab["mgr2"].ip})
    emulator.set_knobs("mgr1", host_distro="ubuntu 18.04", host_memory_mb=2048)
    out = failed(cfy_manager(host, "install"))
    assert "ValidationError: Validation error(s):" in out, out
    for expected in (f"The provided private IP ({fresh_lab['mgr2'].ip}) is not associated with any "
                     "INET-type address available on this machine",
                     "Cloudify manager does not support the current distro (`ubuntu`)",
                     "Cloudify manager does not support the current distro version (`18.04`)",
                     "(Current: 2048MB, Required: 3700MB)"):
        assert expected in out, (expected, out)
    assert "Installing manager..." not in out and not host.exists("/etc/cloudify/.install")
    assert "cloudify_db" not in fresh_lab.db.databases()
    # the same host with 4.6's escape hatch (and its own address): nothing is checked
    prepare(fresh_lab, emulator, "mgr1", validations={"skip_validations": True})
    out = ok(cfy_manager(host, "install"))
    assert "Skipping validations" in out and "Validation error" not in out, out
    emulator.set_knobs("mgr1", host_distro=None, host_memory_mb=None)


@pytest.mark.parametrize("package, component, rpm", [
    ("sudo", "ManagerComponent", "sudo"),
    ("openssh-server", "SanityComponent", "openssh-server")])
def test_46s_prerequisite_packages_are_checked_even_with_validations_skipped(
        fresh_lab, emulator, package, component, rpm):
    """components_dependencies.py / base_component.py: `rpm -q` of each component's packages
    (the lab's Debian hosts: dpkg of their stand-ins, cloudify_ha/defaults.yaml), before the
    skip_validations test; the first component that lacks one stops the install, nothing done."""
    host = fresh_lab["mgr1"]
    prepare(fresh_lab, emulator, "mgr1", validations={"skip_validations": True})
    emulator.hide_package("mgr1", package)
    out = failed(cfy_manager(host, "install"))
    assert (f"ValidationError: Prerequisite packages for {component} missing: \n`{rpm}` - "
            in out), out
    assert f"Possible solution is to run - sudo yum install {rpm}" in out
    assert "Skipping validations" not in out and "Installing manager..." not in out
    assert not host.exists("/etc/cloudify/.install")


BOOT_SCRIPT = "/etc/lab/boot.d/cloudify-manager"


def test_an_install_failing_after_its_nginx_step_leaves_nginx_answering_502(fresh_lab, emulator):
    """4.6 starts nginx (enabled at boot) at its nginx step, before postgresql_client, rabbitmq
    and restservice (cloudify-4.6.md section 0.4): a failure before the nginx step leaves
    nothing answering; after it, port 80 answers 502 with nothing behind it, no .install, no
    database created, and so again after a reboot, until `cfy_manager remove -f`."""
    lab, host = fresh_lab, fresh_lab["mgr1"]
    prepare(lab, emulator, "mgr1")
    emulator.set_knobs("mgr1", fail_at="nginx")
    failed(cfy_manager(host, "install"))
    assert not answers_rest(host.ip) and not host.exists(BOOT_SCRIPT)
    emulator.set_knobs("mgr1", fail_at="rabbitmq")
    assert "Failed to install rabbitmq" in last_line(failed(cfy_manager(host, "install")))
    answer = rest(host.ip, "GET", "/status")
    assert (answer.status, answer.content_type) == (502, "text/html"), answer
    assert b"<title>502 Bad Gateway</title>" in answer.raw
    assert rest(host.ip, "GET", "/cluster/nodes", auth=None).status == 502
    assert not host.exists("/etc/cloudify/.install") and host.exists(BOOT_SCRIPT)
    assert not answers_rest(host.ip, 22000)  # nothing of the manager's own services runs
    assert "cloudify_db" not in lab.db.databases()
    lab.kill("mgr1")
    lab.power_on("mgr1")
    assert rest(host.ip, "GET", "/status").status == 502  # nginx is enabled at boot
    ok(cfy_manager(host, "remove", "-f"))
    assert not answers_rest(host.ip) and not host.exists(BOOT_SCRIPT)


def test_a_join_failing_after_its_put_leaves_an_offline_never_initialized_record(fresh_lab,
                                                                                 emulator):
    """4.6's join GETs /cluster/nodes on the leader, PUTs /cluster/nodes/<name>, then configures
    consul and syncthing locally (create_cluster_node): a failure there leaves the leader's
    record of the node, offline and never initialized, and the joiner's services running as a
    standalone manager; the same name cannot join again while that record is listed."""
    lab = fresh_lab
    ok(install(lab, emulator, "mgr1"))
    ok(start_cluster(lab["mgr1"]))
    prepare(lab, emulator, "mgr2", join="mgr1")
    emulator.set_knobs("mgr2", fail_at="create_cluster_node")
    reason = last_line(failed(cfy_manager(lab["mgr2"], "install")))
    assert reason.startswith("ProcessExecutionError: Failed running command: sudo "
                             "/opt/manager/env/bin/create_cluster_node --config /tmp/"), reason
    assert reason.endswith("(simulated failure (lab knob fail_at=create_cluster_node)).")
    calls = [(e["method"], e["path"], e["status"]) for e in emulator.audit("mgr1")
             if e["kind"] == "rest" and e["remote"] == lab["mgr2"].ip]
    assert calls == [("GET", "/api/v3.1/cluster/nodes", 200),
                     ("PUT", "/api/v3.1/cluster/nodes/mgr2", 200)]
    assert not lab["mgr2"].exists("/etc/cloudify/.install")
    assert rest(lab["mgr2"].ip, "GET", "/status").status == 200  # standalone, half-installed
    seen, until = [], time.monotonic() + 2  # a few of the lab's heartbeats: it never acks
    while time.monotonic() < until:
        record = nodes(lab["mgr1"].ip)["mgr2"]
        seen.append((record["online"], record["initialized"], record["master"]))
    assert set(seen) == {(False, False, False)}, seen
    # torn down and installed again under the same name: the leader still lists it
    emulator.set_knobs("mgr2", fail_at=None)
    ok(cfy_manager(lab["mgr2"], "remove", "-f"))
    prepare(lab, emulator, "mgr2", join="mgr1")
    assert last_line(failed(cfy_manager(lab["mgr2"], "install"))) == \
        "NetworkError: REST service returned an unexpected response: 409"
