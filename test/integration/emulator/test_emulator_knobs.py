"""The lab's knobs on the emulator (Emulator.set_knobs): an install that fails at a chosen step,
a slow install. (edition=community is in test_standalone_manager.py, seed_blueprints in
test_install_join.py.) Every test starts from fresh hosts and an empty database."""

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
    assert f"[{component.upper()}] Failed to install {component}" in log
    emulator.set_knobs("mgr1", fail_at=None)
    assert "fail_at" not in host.read("/var/lib/cloudify-lab/knobs.json")


def test_install_seconds_stretches_the_install(fresh_lab, emulator):
    prepare(fresh_lab, emulator, "mgr1")
    emulator.set_knobs("mgr1", install_seconds=3)
    start = time.monotonic()
    ok(cfy_manager(fresh_lab["mgr1"], "install"))
    assert time.monotonic() - start >= 3
