"""The lab's knobs on the emulator (Emulator.set_knobs): an install that fails at a chosen step,
a slow install, what 4.6's checks find on the host (its machine checks, a missing prerequisite
package: Emulator.hide_package). (edition=community is in test_standalone_manager.py,
seed_blueprints in test_install_join.py.) Every test starts from fresh hosts and an empty
database."""

import time

import pytest

from cfylab import cfy_manager, failed, last_line, ok, prepare

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
