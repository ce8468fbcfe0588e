"""`make demo`: build a real 3-manager cluster in the lab with the formula, and show it.

Runs under pytest for its fixtures (lab, salt-master, one salt-minion per host); not collected by
`make test` (the file name does not start with test_). Everything is removed at the end.
"""

import shlex
import sys
import threading
import time

from lab.formula import active_profile, demo_hints, nodes, orch, profile_entries
from lab.proc import wait_until


def _say(text=""):
    print(text, flush=True)


def _steps(run):
    for sid, step in sorted(run.steps.items(), key=lambda i: i[1].get("__run_num__", 0)):
        mark = {True: "ok     ", False: "FAILED ", None: "would  "}[step["result"]]
        changed = "changed" if step.get("changes") else "-"
        _say(f"  {mark} {sid:<40} {changed:<8} {step.get('duration', 0) / 1000:6.1f}s")


def test_demo(lab, salt_run_cli, emulator):
    demo_start = time.monotonic()
    _say("\n== cloudify_ha demo: lab hosts ==")
    for name, host in lab.hosts.items():
        _say(f"  {name:<5} {host.ip:<15} ({host.kind})")
    _say("\n== salt-run state.orch cloudify_ha.orch (build from empty hosts) ==")
    start = time.monotonic()
    run = orch(salt_run_cli)
    _steps(run)
    _say(f"  exit code {run.returncode}, {time.monotonic() - start:.1f}s")
    assert run.returncode == 0, run

    _say("\n== cfy cluster nodes list (on mgr2) ==")
    _say(lab["mgr2"].run(["cfy", "cluster", "nodes", "list"]).stdout)
    for name in ("mgr1", "mgr2", "mgr3"):  # a joiner's is named after the leader it joined
        own = active_profile(lab[name])
        _say(f"  profile {own!r} on {name}: {profile_entries(lab[name], own)}")
    _say(f"  profile 'lab' on cli:      {profile_entries(lab['cli'], 'lab')}")

    _say("\n== the same orchestration again: nothing to do ==")
    emulator.clear_audit()
    start = time.monotonic()
    again = orch(salt_run_cli)
    _steps(again)
    _say(f"  exit code {again.returncode}, {time.monotonic() - start:.1f}s, mutating Cloudify "
         f"commands: {len(emulator.mutating())}")
    assert again.returncode == 0 and not again.changed()

    _say("\n== the leader host dies ==")
    lab.kill("mgr1")
    start = time.monotonic()
    leaders = wait_until(lambda: [n for n, row in nodes(lab["mgr2"]).items()
                                  if row["state"] == "leader" and n != "mgr1"], 20, "a new leader")
    _say(f"  new leader {leaders} after {time.monotonic() - start:.1f}s")
    _say(lab["mgr3"].run(["cfy", "cluster", "nodes", "list"]).stdout)
    lab.power_on("mgr1")
    wait_until(lambda: nodes(lab["mgr2"])["mgr1"]["state"] == "replica", 30, "mgr1 back")
    _say("  mgr1 is back, as a replica")
    _say(f"\n== the demo took {time.monotonic() - demo_start:.0f}s; the lab is up ==")
    for label, argv in demo_hints(lab, salt_run_cli.config_dir):
        _say(f"  {label + ':' if label else '':<10} {shlex.join(argv)}")
    if sys.stdin.isatty():
        _say("  Ctrl-C removes the lab (or `make demo-down` from another shell)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    else:
        _say("  (not a terminal: the lab is removed now)")
