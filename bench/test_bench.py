"""`make bench`: what the formula costs in the lab, how it grows with the cluster, against the
project's targets. Prints a table and writes bench/results/<time>.json. Never part of make test.

- floor: an orchestration of the same shape (same steps, same targets) whose states do nothing;
- build from empty for N managers, at emulated install times T (the emulator's install_seconds
  knob), and its critical path from the lab's audit (the installs, the cluster start and the
  joins, which the formula must run one after the other);
- no-op re-run: time, mutating commands, status reads received per node;
- memory: the largest sum of PSS of the salt-master and salt-minions seen during a build;
- fleet: M clusters of 3 managers, each on its own PostgreSQL, built by one orchestration;
- day 2, with the reactor and a load balancer: rejoin latency (a wiped follower's minion start
  event to the node online in the cluster) and LB failover (the leader's death to the first good
  request through HAProxy).

The floor has the build's shape, sync step included, and is measured twice: on warm minions right
after each no-op, on the same built cluster (the no-op's condition: minions that have run jobs,
and the emulated managers' own CPU on the shared cores), and on cold ones (just started on reset
hosts: the build's condition, whose first jobs load the minion's modules). A no-op re-run skips the
sync step when every minion's copies of the formula's modules are current: that saving is the
formula's. Each measurement boots only the hosts it uses.
"""

import contextlib
import json
import os
import re
import resource
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import salt.version

from lab.formula import (OrchRun, active_profile, deep, http_get, member_state, minion_pillar,
                         nodes, orch, profile_entries, reactor_idle, rejoin_runs, run_node,
                         shadow_pillar)
from lab.emulator import CLI_PACKAGE
from lab.proc import wait_until
from lab.saltlab import minions_on_salt, salt_versions

RESULTS = Path(__file__).parent / "results"
# issue 19's targets: what the formula adds beyond what Cloudify itself must take (its
# installs and cluster start, one after the other, and the leader's package install before its
# install) against Salt's own cost (the cold floor); what a no-op costs; what the MASTER pays
# per cluster as the fleet grows (CPU seconds: here every host shares 2 cores, so wall-clock
# fleet ratios measure the lab); day 2's latencies
TARGETS = {"build <= critical path + leader's package install + x cold floor": 1.2,
           "no-op/floor": 1.2,
           "master CPU per cluster M=4 / M=1": 1.1,
           "rejoin - one join (s)": 5.0,
           "LB failover (s)": 3.0}
FLEET = (1, 2, 4)


@pytest.fixture(scope="module")
def report(quick):
    """Every figure of this run; written to bench/results/<time>.json and printed at the end."""
    data = {"cores": os.cpu_count(), "salt": salt.version.__version__, "quick": quick,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "figures": {}, "fleet": {}, "day2": {},
            "targets": TARGETS}
    yield data
    data["verdicts"] = verdicts(data)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{data['time']}.json").write_text(json.dumps(data, indent=1))
    print("\n" + render(data))


@pytest.fixture(scope="module")
def quick(request):
    return request.config.getoption("--bench-quick")


def floor_orch(lab, salt_run_cli, names, cli_hosts):
    """The floor: cloudify_ha.orch's shape with states that do nothing. The same render-time call
    to every minion, the same steps on the same targets with the same requisites (each
    `concurrent: true`, as the formula's since it orders its runs with its own lock): sync; the
    leader's step in parallel with the followers' prepare and the CLI hosts' step; each join
    after the previous member step and the prepare; profiles after the last join and the CLI.
    The master lists its files from a cache (Salt's 20 s): new SLS files are listed once the
    cache is cleared, as an operator would after adding them."""
    root = lab.dir / "srv" / "bench_floor"
    root.mkdir(parents=True, exist_ok=True)
    (root / "nop.sls").write_text("bench-floor-nop:\n  test.succeed_without_changes: []\n")
    leader, followers = names[0], names[1:]
    steps = [("validate", None, []), ("sync", names + cli_hosts, ["test: floor-validate"]),
             ("cli", cli_hosts, ["salt: floor-sync"]), ("prepare", followers, ["salt: floor-sync"]),
             (f"member-{leader}", [leader], ["salt: floor-sync"])]
    prev = f"member-{leader}"
    for n in followers:
        steps.append((f"member-{n}", [n], [f"salt: floor-{prev}", "salt: floor-prepare"]))
        prev = f"member-{n}"
    steps.append(("profiles", names + cli_hosts, [f"salt: floor-{prev}", "salt: floor-cli"]))
    lines = ["{%- set answers = salt['saltutil.cmd'](tgt=" + json.dumps(names + cli_hosts)
             + ", tgt_type='list', fun='test.ping', timeout=5) %}"]
    for step, targets, requires in steps:
        lines.append(f"floor-{step}:")
        if targets is None:
            lines.append("  test.succeed_without_changes: []")
            continue
        lines += ["  salt.state:", "    - concurrent: true", f"    - tgt: {json.dumps(targets)}",
                  "    - tgt_type: list", "    - sls: bench_floor.nop"]
        if step in ("cli", "prepare", f"member-{leader}"):
            lines.append("    - parallel: true")
        lines += ["    - require:"] + [f"      - {r}" for r in requires]
    (root / f"orch{len(names)}.sls").write_text("\n".join(lines) + "\n")
    _ok(salt_run_cli.run("fileserver.clear_file_list_cache"))
    return f"bench_floor.orch{len(names)}"


def power_only(lab, used, new_minions=True):
    """Wipe and boot the hosts a measurement uses (new minions by default: every build is a
    first build) and power off every other host but the databases. The lab's idle minions
    would take the measured run's CPU: a build of 3 in the 12-manager lab took 29.5 s [25.2-29.9]
    with the 9 other managers on and 23.0 s [21.3-26.5] with them off."""
    off = [n for n, h in lab.hosts.items() if n not in used and h.kind != "db"]
    if off:
        with ThreadPoolExecutor(len(off)) as pool:
            list(pool.map(lab.kill, off))
    lab.reset(list(used), new_minions=new_minions)


class PssSampler(threading.Thread):
    """The largest sum of PSS (KiB) of the lab's Salt daemons, sampled every 0.5 s."""

    def __init__(self, marker):
        super().__init__(daemon=True)
        self.marker = marker.encode()
        self.peak = 0
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(0.5):
            total = 0
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    if self.marker not in Path(f"/proc/{pid}/cmdline").read_bytes():
                        continue
                    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                        if line.startswith("Pss:"):
                            total += int(line.split()[1])
                except OSError:
                    continue
            self.peak = max(self.peak, total)


def critical_path(emulator, names):
    """Seconds the formula cannot overlap: every install and the cluster start, from the audit."""
    total = 0.0
    for name in names:
        for entry in emulator.audit(name):
            if entry["kind"] != "cli" or not entry["mutating"]:
                continue
            if entry["prog"] == "cfy_manager" or entry["argv"][:2] == ["cluster", "start"]:
                total += entry["end"] - entry["start"]
    return total


def status_reads(emulator, names):
    return max(sum(1 for e in emulator.audit(n) if e["kind"] == "rest" and
                   e["path"] == "/api/v3.1/status") for n in names)


def _step_kind(sid):
    kind = re.sub(r"^(cloudify_ha-orch-(lab\d*-)?|floor-)", "", sid)
    kind = "members" if re.match(r"(leader|join|member)-", kind) else kind
    return "validate" if kind.startswith("the cloudify_ha pillar") else kind


def _step_targets(sid, names, others):
    """The minions a step of cloudify_ha.orch (or of the floor) targets; `names`: the managers,
    the leader first."""
    member = re.search(r"-(?:leader|join|member)-(.+)$", sid)
    if member:
        return {member.group(1)}
    kind = _step_kind(sid)
    if kind == "prepare":
        return set(names[1:])
    return set(others) if kind == "cli" else set(names) | set(others)


def reads_by_concern(run, emulator, names, lab):
    """REST reads each manager received during a run, by the concern that asked: `plan` (the
    orchestration's render-time question to every minion), else the kind of the step that the
    asking host (the request's source address) was running then (`members`: the leader's and
    the joins' steps together). {concern: {"status": max over managers of GET /api/v3.1/status,
    "reads": max over managers of every GET}}."""
    by_ip = {host.ip: name for name, host in lab.hosts.items()}
    windows, first = [], None
    for sid, start, seconds in _step_spans(run):
        if seconds < 0.1:
            continue  # a test state on the master (validate, a no-op's sync)
        clock = start.time()
        first = clock if first is None else min(first, clock)
        windows.append((clock, seconds, _step_kind(sid),
                        _step_targets(sid, names, set(lab.hosts) - set(names))))
    counts = {}
    for name in names:
        for entry in emulator.audit(name):
            if entry["kind"] != "rest" or entry["method"] != "GET":
                continue
            day = datetime.fromtimestamp(entry["t"]).date()
            asker = by_ip.get(entry.get("remote"))
            concern = "other"
            if first is not None and entry["t"] < datetime.combine(day, first).timestamp():
                concern = "plan"
            for clock, seconds, kind, minions in windows:
                start = datetime.combine(day, clock).timestamp()
                if asker in minions and start - 0.05 <= entry["t"] <= start + seconds + 0.05:
                    concern = kind
                    break
            per = counts.setdefault(concern, {}).setdefault(name, {"status": 0, "reads": 0})
            per["reads"] += 1
            per["status"] += entry["path"] == "/api/v3.1/status"
    return {concern: {key: max(p[key] for p in per.values()) for key in ("status", "reads")}
            for concern, per in sorted(counts.items())}


def run_floor(salt_run_cli, floor):
    return OrchRun(salt_run_cli.run("state.orch", floor, _timeout=600))


def step_seconds(run):
    """Seconds per kind of step of an orchestration run: validate, sync, prepare, members (the
    leader and the joins, or the floor's member steps), profiles, loadbalancer. Steps run in
    parallel, so they may sum to more than the wall time; `timed_run` adds the time before the
    first step and after the last."""
    out = {}
    for sid, step in run.steps.items():
        kind = _step_kind(sid)
        out[kind] = out.get(kind, 0.0) + (step.get("duration") or 0) / 1000
    return out


def _step_spans(run):
    """[(step, start datetime on the master's clock, seconds)] of a run's steps that started."""
    spans = []
    for sid, step in run.steps.items():
        if step.get("start_time"):
            spans.append((sid, datetime.strptime(step["start_time"], "%H:%M:%S.%f"),
                          (step.get("duration") or 0) / 1000))
    return spans


def timeline(run):
    """[step, start (s after the first step started), seconds] of a run, in start order."""
    rows = _step_spans(run)
    if not rows:
        return []
    first = min(r[1] for r in rows)
    return [[sid, round((start - first).total_seconds(), 2), round(sec, 2)]
            for sid, start, sec in sorted(rows, key=lambda r: r[1])]


def around_steps(run, started, wall):
    """(seconds before the first step started, seconds after the last step ended) of a run
    that `started` (a local datetime; the steps' start times are the master's clock, on the
    same machine) and took `wall`: the CLI's start and the render (with its one call to every
    minion) before, the CLI's end after."""
    spans = _step_spans(run)
    if not spans:
        return wall, 0.0
    first = min(start for _, start, _ in spans)
    span = max((start - first).total_seconds() + sec for _, start, sec in spans)
    first_at = datetime.combine(started.date(), first.time())
    if started - first_at > timedelta(hours=1):  # the run crossed midnight
        first_at += timedelta(days=1)
    before = (first_at - started).total_seconds()
    return before, wall - before - span


def _state_durations(run, steps):
    """(state id, seconds) of every state each minion ran in the given steps of a run."""
    for sid in steps:
        for states in run.minion_states(sid).values():
            for state in states.values() if isinstance(states, dict) else ():
                if isinstance(state, dict) and "__id__" in state:
                    yield state["__id__"], (state.get("duration") or 0) / 1000


def slowest_states(run, top=6):
    """The states that took longest on a minion in a run: {state id: seconds}, the largest
    duration of that state over minions and steps."""
    worst = {}
    for state_id, seconds in _state_durations(run, run.steps):
        worst[state_id] = max(worst.get(state_id, 0.0), seconds)
    return dict(sorted(worst.items(), key=lambda i: -i[1])[:top])


def state_seconds(run, step, state_id):
    """How long one state took in one step of a run (the step's one minion)."""
    for found, seconds in _state_durations(run, [step]):
        if found == state_id:
            return seconds
    raise AssertionError(f"{step} ran no state {state_id}: {run}")


def timed_run(fn):
    """(wall seconds, OrchRun, seconds per kind of step) of an orchestration run that must
    succeed; the steps' seconds also get `before steps` and `after steps`."""
    started = datetime.now()
    start = time.monotonic()
    run = fn()
    wall = time.monotonic() - start
    _ok(run)
    steps = step_seconds(run)
    steps["before steps"], steps["after steps"] = around_steps(run, started, wall)
    return wall, run, steps


def medians(dicts):
    keys = {k for d in dicts for k in d}
    return {k: round(statistics.median(d.get(k, 0.0) for d in dicts), 2) for k in sorted(keys)}


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": len(values)}


def managers_pillar(lab, names):
    return [{"name": n, "minion_id": n, "private_ip": lab[n].ip, "public_ip": lab[n].ip}
            for n in names]


def test_bench(lab, emulator, salt_cli, salt_run_cli, pillar_dir, quick, pytestconfig, report):
    wanted = [int(n) for n in pytestconfig.getoption("--bench-sizes").split(",")]
    sizes = [3] if quick else [n for n in wanted if n <= len(lab.managers)]
    base = minion_pillar(salt_cli)
    for size in sizes:
        report["figures"][size] = measure(lab, emulator, salt_run_cli, pillar_dir, base, size,
                                          *_plan(quick, pytestconfig))


def test_bench_managers_on_salt_3006(lab, emulator, salt_cli, salt_run_cli, pillar_dir, quick,
                                     pytestconfig, report):
    """The same build and no-op of 3 managers with the managers' minions on Salt 3006.8 (EL7's
    last Salt, where 4.6 runs) beside the 3008 master; the CLI host keeps the session's."""
    base = minion_pillar(salt_cli)
    names = ["mgr1", "mgr2", "mgr3"]
    with minions_on_salt(lab, salt_cli, names, "3006.8"):
        report["figures 3006.8 managers"] = {3: measure(
            lab, emulator, salt_run_cli, pillar_dir, base, 3, *_plan(quick, pytestconfig))}


def test_cfy_cost(lab, emulator, report):
    """The real cfy 4.6's price per call: `cfy --version` (its start-up: Python 2.7 and its
    imports) run directly, as the 4.6 RPM's /usr/bin/cfy runs it, and through the lab's
    package on a host (its audit wrapper added); wall and CPU seconds (the children's rusage,
    the CLI's own Python included) per call, medians of 10."""
    lib = Path(__file__).resolve().parents[1] / ".cfy-4.6"
    python = (lib / "python").read_text().strip()
    env = dict(os.environ, PYTHONPATH=str(lib / "lib"))
    direct = [_call_cost(lambda: subprocess.run([python, "-s", str(lib / "lib" / "bin" / "cfy"),
                                                 "--version"], env=env, capture_output=True,
                                                check=True)) for _ in range(10)]
    lab.reset(["cli"])
    emulator.install_package("cli", CLI_PACKAGE)
    wrapped = [_call_cost(lambda: lab["cli"].run(["cfy", "--version"])) for _ in range(10)]
    report["cfy 4.6 per call"] = {
        "direct: wall s": summary([w for w, _ in direct]),
        "direct: CPU s": summary([c for _, c in direct]),
        "lab host (audit wrapper): wall s": summary([w for w, _ in wrapped]),
        "lab host (audit wrapper): CPU s": summary([c for _, c in wrapped])}


def _call_cost(call):
    """(wall seconds, CPU seconds of the children reaped meanwhile) of one call."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    call()
    wall, after = time.monotonic() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _plan(quick, pytestconfig):
    """(install times T, repeats) of a measurement."""
    return ([0] if quick else [0, 10]), (1 if quick else pytestconfig.getoption("--bench-repeats"))


def cfy_calls(emulator, names):
    """The real cfy's calls in the audit: {"formula": n, "installer": n, "seconds": wall s of
    all of them} (the installer's own are its profile setup)."""
    calls = [e for n in names for e in emulator.audit(n) if e["kind"] == "cli" and e["prog"] == "cfy"]
    return {"formula": sum(1 for e in calls if not e.get("caller")),
            "installer": sum(1 for e in calls if e.get("caller") == "cfy_manager"),
            "seconds": round(sum(e["end"] - e["start"] for e in calls), 2)}


def measure(lab, emulator, salt_run_cli, pillar_dir, base, size, install_times, repeats):
    """One cluster size: the cold floor, then at each T builds from empty on new minions, each
    followed by a no-op and a warm floor. Returns the row of figures."""
    names = [f"mgr{i}" for i in range(1, size + 1)]
    pillar = deep(base)
    pillar["clusters"]["lab"]["managers"] = managers_pillar(lab, names)
    cli_hosts = pillar["clusters"]["lab"]["cli_hosts"]
    floor = floor_orch(lab, salt_run_cli, names, cli_hosts)
    row = {}
    with shadow_pillar(pillar_dir, pillar):
        # cold: minions just started on freshly reset hosts (the build's condition); warm
        # (below): right after each no-op, on the same built cluster (the no-op's condition,
        # its emulated managers' CPU included)
        cold, all_floors = [], []
        for _ in range(repeats):
            power_only(lab, names + cli_hosts)
            cold.append(timed_run(lambda: run_floor(salt_run_cli, floor)))
        row["cold floor"] = summary([f[0] for f in cold])
        row["cold floor steps"] = medians([f[2] for f in cold])
        for seconds in install_times:
            builds, paths, noops, mutating, reads, pss, concerns = [], [], [], [], [], [], []
            floors, build_cpu, build_cfy, noop_cfy = [], [], [], []
            build_steps, noop_steps, slowest, noop_slowest, packages = [], [], [], [], []
            for _ in range(repeats):
                power_only(lab, names + cli_hosts)
                for n in names:
                    emulator.set_knobs(n, install_seconds=seconds or None)
                emulator.clear_audit()
                sampler = PssSampler(str(lab.dir / "sf"))
                sampler.start()
                busy = cpu_seconds()
                wall, run, steps = timed_run(lambda: orch(salt_run_cli))
                build_cpu.append(cpu_seconds() - busy)
                # new minions: the sync step synced every one of them
                assert set(run.minion_states("cloudify_ha-orch-sync")) >= set(names), run
                builds.append(wall)
                build_steps.append(steps)
                slowest.append(slowest_states(run))
                packages.append(state_seconds(run, f"cloudify_ha-orch-lab-leader-{names[0]}",
                                              "cloudify_ha-installer-package"))
                last_timeline = timeline(run)
                sampler.done.set()
                sampler.join()
                pss.append(sampler.peak / 1024)
                paths.append(critical_path(emulator, names))
                build_cfy.append(cfy_calls(emulator, names + cli_hosts))
                emulator.clear_audit()
                wall, run, steps = timed_run(lambda: orch(salt_run_cli))
                noops.append(wall)
                noop_steps.append(steps)
                mutating.append(len(emulator.mutating()))
                reads.append(status_reads(emulator, names))
                concerns.append(reads_by_concern(run, emulator, names, lab))
                noop_cfy.append(cfy_calls(emulator, names + cli_hosts))
                noop_slowest.append(slowest_states(run))
                floors.append(timed_run(lambda: run_floor(salt_run_cli, floor)))
            all_floors += floors
            row[f"T={seconds}"] = {"build": summary(builds), "critical path": summary(paths),
                                  "floor": summary([f[0] for f in floors]),
                                  "no-op": summary(noops), "no-op mutating": max(mutating),
                                  "no-op status reads per node (max)": max(reads),
                                  "no-op reads per node by concern (max)": {
                                      c: {k: max(r.get(c, {}).get(k, 0) for r in concerns)
                                          for k in ("status", "reads")}
                                      for c in sorted({c for r in concerns for c in r})},
                                  "peak PSS MiB": summary(pss),
                                  "build CPU seconds (machine)": summary(build_cpu),
                                  "leader's package install": summary(packages),
                                  "cfy calls (build)": medians(build_cfy),
                                  "cfy calls (no-op)": medians(noop_cfy),
                                  "build steps": medians(build_steps),
                                  "no-op steps": medians(noop_steps),
                                  "build's slowest states": medians(slowest),
                                  "no-op's slowest states": medians(noop_slowest),
                                  "build timeline (last run)": last_timeline}
        row["floor"] = summary([f[0] for f in all_floors])
        row["floor steps"] = medians([f[2] for f in all_floors])
    return row


def fleet_pillar(base, lab, clusters):
    """`clusters` clusters of 3 managers (mgr1-3, mgr4-6, ...), each on its own PostgreSQL."""
    pillar = deep(base)
    first = pillar["clusters"]["lab"]
    for i in range(clusters):
        cluster = deep(first)
        names = [f"mgr{3 * i + k}" for k in (1, 2, 3)]
        cluster.update(leader=names[0], managers=managers_pillar(lab, names))
        if i:
            cluster["cli_hosts"] = []
            cluster["database"]["host"] = lab.add_database(f"db{i + 1}", 4 + i).ip
        pillar["clusters"]["lab" if i == 0 else f"lab{i + 1}"] = cluster
    return pillar


def test_fleet(lab, emulator, salt_cli, salt_run_cli, salt_master, pillar_dir, quick, report,
               pytestconfig):
    counts = [m for m in FLEET if 3 * m <= len(lab.managers)]
    if len(counts) < 2:
        pytest.skip(f"the fleet needs at least 6 managers in the lab (LAB_MANAGERS); it has "
                    f"{len(lab.managers)}")
    base = minion_pillar(salt_cli)
    for count in counts:
        with shadow_pillar(pillar_dir, fleet_pillar(base, lab, count)):
            times, cpu, master_cpu, step_times = [], [], [], []
            used = [f"mgr{i}" for i in range(1, 3 * count + 1)] + ["cli"]
            for _ in range(1 if quick else pytestconfig.getoption("--bench-repeats")):
                power_only(lab, used)
                emulator.clear_audit()
                busy, master = cpu_seconds(), MasterCpu(salt_master)
                wall, _run, steps = timed_run(lambda: orch(salt_run_cli))
                cpu.append(cpu_seconds() - busy)
                master_cpu.append(master.seconds())
                times.append(wall)
                step_times.append(steps)
            report["fleet"][count] = dict(summary(times), **{
                "cpu seconds": summary(cpu), "master cpu seconds": summary(master_cpu),
                "steps": medians(step_times)})
    lab.reset()


class MasterCpu:
    """CPU seconds the master side spends from now on: the salt-master and every process it
    runs (its workers; by the CPU they add between now and `seconds()`, so a process that
    starts and ends in between is missed: a lower bound) and salt-run with the orchestration's
    own processes (the children this process reaps meanwhile: salt-run is one)."""

    def __init__(self, master):
        self.pid = master.pid
        self.children = self._rusage()
        self.tree = self._tree()

    @staticmethod
    def _rusage():
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def _tree(self):
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return {}
        out = {}
        for proc in procs:
            try:
                times = proc.cpu_times()
                out[(proc.pid, proc.create_time())] = times.user + times.system
            except psutil.NoSuchProcess:
                continue
        return out

    def seconds(self):
        now = self._tree()
        master = sum(cpu - self.tree.get(key, 0.0) for key, cpu in now.items())
        return round(master + self._rusage() - self.children, 2)


def lb_status(lab):
    return http_get(lab["cli"], f"http://{lab['lb'].ip}:80/api/v3.1/status", "admin",
                    lab.passwords["admin"], timeout=1)[0]


def leader_of(lab, via):
    try:
        return next((n for n, row in nodes(lab[via]).items() if row["state"] == "leader"), None)
    except AssertionError:
        return None


def rest_member_state(lab, name, via):
    """`name`'s state (leader, replica, offline) in `via`'s GET /api/v3.1/cluster/nodes, as
    `cfy cluster nodes list` derives it (online and master), asked from the CLI host with one
    short Python process: the real cfy costs 0.5 CPU s a call, which a poll would take from the
    rejoin it times, and each call would add its own 0.5-0.8 s to when the bench sees the node
    online. None when `via` does not answer or lists no such node."""
    status, body = http_get(lab["cli"], f"http://{lab[via].ip}/api/v3.1/cluster/nodes",
                            "admin", lab.passwords["admin"], timeout=2)
    if status != 200:
        return None
    listed = json.loads(body)
    for node in listed.get("items", []) if isinstance(listed, dict) else listed:
        if node.get("name") == name:
            return ("leader" if node.get("master") else "replica") if node.get("online") \
                else "offline"
    return None


def start_event_time(event_listener, minion, since):
    events = event_listener.get_events([("master", f"salt/minion/{minion}/start")],
                                       after_time=since)
    if not events:
        return None
    stamp = max(event.stamp for event in events)
    return (stamp.replace(tzinfo=timezone.utc) if stamp.tzinfo is None else stamp).timestamp()


REJOIN_PARTS = ("reactor: start event to the runner", "runner: its checks and the render",
                "step sync", "step prepare (firewall, installer package)", "step joined",
                "step profiles", "online seen after the joined step ended")


def rejoin_breakdown(event_listener, node, since, started, online, install):
    """Where a rejoin's time went, in seconds: from the minion's start event (`started`, epoch)
    to the runner's `new` event (the reactor), from there to the first step (the runner's
    checks and the orchestration's render with its pings), each step of the rejoin
    orchestration (from the runner's return event), and from the joined step's end to the node
    seen online (`online`, epoch; negative when the poll saw it before the step returned).
    `install` is the join's cfy_manager install (seconds), inside the joined step."""
    fired = [e for e in event_listener.get_events([("master", "salt/run/*/new")],
                                                  after_time=since)
             if e.data.get("fun") == "runner.cloudify_ha.rejoin"
             and run_node(e.data.get("fun_args")) == node]
    spans = next((s for s in (_step_spans(OrchRun(SimpleNamespace(
        returncode=0, data=ret, stdout="", stderr="")))
        for n, done, ret in rejoin_runs(event_listener, since)
        if n == node and done and isinstance(ret, dict)) if s), None)
    if not fired or not spans:
        return {}
    offset = datetime.now().astimezone().utcoffset() or timedelta(0)
    day = datetime.fromtimestamp(started, tz=timezone.utc).date()

    def epoch(clock):  # a step's start_time: the master's local clock, no date
        at = datetime.combine(day, clock.time(), tzinfo=timezone.utc) - offset
        if at.timestamp() < started - 3600:  # crossed midnight
            at += timedelta(days=1)
        return at.timestamp()

    runner = fired[0].stamp.timestamp()
    out = {REJOIN_PARTS[0]: runner - started,
           REJOIN_PARTS[1]: min(epoch(start) for _, start, _ in spans) - runner}
    joined_end = None
    for sid, start, seconds in spans:
        kind = sid.rsplit("-", 1)[-1]
        out[f"step {kind}" if kind != "prepare" else REJOIN_PARTS[3]] = seconds
        if kind == "joined":
            joined_end = epoch(start) + seconds
    out["  of which cfy_manager install"] = install
    if joined_end is not None:
        out[REJOIN_PARTS[6]] = online - joined_end
    return out


def test_day2(lab, emulator, salt_cli, salt_run_cli, pillar_dir, quick, report, event_listener,
              pytestconfig):
    """A cluster of 3 behind HAProxy with the reactor on: a wiped follower rejoins by itself,
    and a dead leader's traffic moves to the new leader."""
    pillar = deep(minion_pillar(salt_cli))
    names = ["mgr1", "mgr2", "mgr3"]
    pillar["clusters"]["lab"]["managers"] = managers_pillar(lab, names)
    pillar["clusters"]["lab"]["loadbalancer"] = {
        "minion_ids": ["lb"], "port": 80, "inter": "500ms", "fall": 2, "rise": 1,
        # the health check's own user (never the admin), which a load balancer now needs
        "check_password": "Check-" + secrets.token_hex(6)}
    rejoins, to_online, failovers, joins, parts = [], [], [], [], []
    # built with the reactor paused: the reset's start events queue no rejoin run that the
    # first measured rejoin would wait behind (the runner runs one at a time)
    quiet_since = time.time()
    used = names + ["cli", "lb"]
    with shadow_pillar(pillar_dir, dict(pillar, reactor={"enabled": False})):
        power_only(lab, used, new_minions=False)
        assert salt_cli.run("-L", "saltutil.refresh_pillar", "wait=True",
                            minion_tgt=",".join(used)).returncode == 0
        _ok(orch(salt_run_cli))
    pillar["reactor"] = {"enabled": True}
    with shadow_pillar(pillar_dir, pillar):
        for _ in range(1 if quick else pytestconfig.getoption("--bench-repeats")):
            # and each fault starts with no rejoin run left from the one before
            wait_until(lambda: reactor_idle(event_listener, quiet_since), 300,
                       "the reactor's rejoin runs to return")
            leader = wait_until(lambda: leader_of(lab, "mgr1") or leader_of(lab, "mgr2"), 30,
                                "a leader")
            follower = next(n for n in names if n != leader)
            since = quiet_since = time.time()
            start = time.monotonic()
            lab.wipe(follower)
            wait_until(lambda: rest_member_state(lab, follower, leader) == "replica"
                       and lab[follower].exists("/etc/cloudify/.install"), 240,
                       f"{follower} to rejoin", max_interval=0.2)
            online = time.time()
            to_online.append(time.monotonic() - start)
            install = [e for e in emulator.audit(follower) if e["kind"] == "cli"
                       and e["prog"] == "cfy_manager" and e["argv"][:1] == ["install"]][-1]
            joins.append(install["end"] - install["start"])
            started = wait_until(lambda: start_event_time(event_listener, follower, since), 30,
                                 f"{follower}'s minion start event")
            rejoins.append(online - started)
            # the rejoin run ends with the profiles: let it finish before the next fault
            # each manager's own profile: `localhost` on the start node, the leader's address
            # on a joiner (4.6's installer names it so)
            wait_until(lambda: all(sorted(profile_entries(lab[n], active_profile(lab[n]) or
                                                          "localhost") or {}) == sorted(names)
                                   for n in names), 60,
                       "every manager's profile to list the three nodes")
            wait_until(lambda: reactor_idle(event_listener, since), 120,
                       "the rejoin run to return")
            parts.append(rejoin_breakdown(event_listener, follower, since, started, online,
                                          joins[-1]))

            wait_until(lambda: lb_status(lab) == 200, 30, "the load balancer to serve")
            lab.kill(leader)
            died = time.monotonic()
            wait_until(lambda: lb_status(lab) == 200, 60, "a good answer through the LB")
            failovers.append(time.monotonic() - died)
            lab.power_on(leader)
            survivor = next(n for n in names if n != leader)
            wait_until(lambda: member_state(lab, leader, survivor) == "replica", 120,
                       f"the old leader {leader} back as a replica")
    report["day2"] = {"rejoin: start event to online": summary(rejoins),
                      "rejoin: wipe to online": summary(to_online),
                      "rejoin: its join (cfy_manager install)": summary(joins),
                      "rejoin - its join": summary([r - j for r, j in zip(rejoins, joins)]),
                      "LB failover": summary(failovers)}
    report["day2 rejoin"] = {key: summary([p[key] for p in parts if key in p])
                             for key in dict.fromkeys(k for p in parts for k in p)}
    lab.reset()


def _ok(ret):
    data = ret.data if hasattr(ret, "data") else None
    assert ret.returncode == 0, (ret.returncode, str(data)[:2000])
    return ret


def cpu_seconds():
    """CPU time the whole machine has spent busy (user, nice, system, irq, softirq, steal),
    in seconds: over a run, divided by the core count, the least wall time the run could take."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


FIGURE_SETS = (("figures", ""), ("figures 3006.8 managers", " (managers' minions on 3006.8)"))


def render(report):
    out = [f"cloudify_ha bench: {report['cores']} cores, salt {report['salt']}"
           f"{' (quick)' if report['quick'] else ''}", "",
           "floor: warm minions on the built cluster, right after each no-op (compared with the "
           "no-op); cold floor: minions just started on reset hosts (compared with the build)"]
    for key, label in FIGURE_SETS:
        if report.get(key):
            out += _figures_table(report[key], label)
    for key, label in FIGURE_SETS:
        for size, row in (report.get(key) or {}).items():
            out += _steps_table(size, row, report["cores"], label)
    out += _growth(report["figures"])
    out += _cfy_lines(report)
    fleet = report.get("fleet") or {}
    if fleet:
        one = fleet.get(1) or fleet.get("1")
        out += ["", f"{'fleet M':>8} {'build (3 managers each)':>24} {'ratio to M=1':>12} "
                    f"{'CPU s':>7} {'CPU s / cores':>13} {'master CPU s':>12} "
                    f"{'per cluster':>11}"]
        for count, fig in fleet.items():
            busy = (fig.get("cpu seconds") or {}).get("median", float("nan"))
            master = (fig.get("master cpu seconds") or {}).get("median", float("nan"))
            out.append(f"{count:>8} {_mm(fig):>24} {fig['median'] / one['median']:>12.2f} "
                       f"{busy:>7.1f} {busy / report['cores']:>13.1f} {master:>12.1f} "
                       f"{master / int(count):>11.1f}")
    for name, top in (report.get("profile") or {}).items():
        if name.startswith("build:"):
            out += ["", f"profile of a build (N=3, T=0), {name[7:]}"]
            out += [f"  {sec:>6.1f}  {prog}" for prog, sec in top.items()]
        elif name.endswith("(s)"):
            out += ["", f"profile of {name}"]
            out += [f"  {sec:>6.2f}  {step}" for step, sec in top.items()]
        else:
            out += ["", f"profile of {name} (py-spy, share of samples)"]
            out += [f"  {share:>6.1%}  {fn}" for fn, share in top.items()]
    if report.get("day2"):
        out += ["", f"{'day 2 (N=3, reactor, HAProxy)':<44} {'seconds':>16}"]
        out += [f"{name:<44} {_mm(fig):>16}" for name, fig in report["day2"].items()]
    if report.get("day2 rejoin"):
        out += ["", "where a rejoin's time went (the rejoin run's steps, from the reactor's "
                    "runner return)"]
        out += [f"{name:<44} {_mm(fig):>16}" for name, fig in report["day2 rejoin"].items()]
    out += ["", "targets: " + "; ".join(f"{k} {v}" for k, v in report["targets"].items())
            + "; no-op: 0 mutating commands, <= 1 status read per manager per concern"]
    out += [f"  {line}" for line in verdicts(report)]
    return "\n".join(out)


def _figures_table(figures, label):
    out = ["", f"build and no-op{label}", f"{'N':>2} {'T':>3} {'floor':>14} {'cold floor':>14} "
           f"{'build':>20} {'crit.path':>10} {'pkg':>5} {'(b-p-pkg)/cold':>14} {'no-op':>20} "
           f"{'noop/floor':>10} {'mut':>3} {'reads':>5} {'PSS MiB':>8}"]
    for size, row in figures.items():
        cold = row.get("cold floor", row["floor"])
        for key, fig in row.items():
            if not key.startswith("T="):
                continue
            build, path, noop = fig["build"], fig["critical path"]["median"], fig["no-op"]
            package = (fig.get("leader's package install") or {}).get("median", 0.0)
            warm = fig.get("floor", row["floor"])
            out.append(
                f"{size:>2} {key[2:]:>3} {_mm(warm):>14} {_mm(cold):>14} {_mm(build):>20} "
                f"{path:>10.1f} {package:>5.1f} "
                f"{(build['median'] - path - package) / cold['median']:>14.2f} {_mm(noop):>20} "
                f"{noop['median'] / warm['median']:>10.2f} {fig['no-op mutating']:>3} "
                f"{fig['no-op status reads per node (max)']:>5} {fig['peak PSS MiB']['median']:>8.0f}")
    return out


def _steps_table(size, row, cores, label=""):
    out = ["", f"N={size}{label}: seconds per step (medians)"]
    tables = [("floor", row["floor steps"]), ("cold floor", row.get("cold floor steps", {}))]
    for key, fig in row.items():
        if key.startswith("T="):
            tables += [(f"build {key}", fig["build steps"]), (f"no-op {key}", fig["no-op steps"])]
    kinds = sorted({k for _, t in tables for k in t})
    out.append(f"{'':<12}" + "".join(f"{k:>14}" for k in kinds))
    for name, table in tables:
        out.append(f"{name:<12}" + "".join(f"{table.get(k, 0.0):>14.2f}" for k in kinds))
    for key, fig in row.items():
        if not key.startswith("T="):
            continue
        for run in ("build", "no-op"):
            if fig.get(f"{run}'s slowest states"):
                out.append(f"slowest states of a {run} at {key}: " + ", ".join(
                    f"{sid} {sec:.2f}" for sid, sec in sorted(
                        fig[f"{run}'s slowest states"].items(), key=lambda i: -i[1])[:6]))
        if fig.get("build CPU seconds (machine)"):
            busy = fig["build CPU seconds (machine)"]["median"]
            out.append(f"a build at {key}: the machine was busy {busy:.1f} CPU s, "
                       f"{busy / cores:.1f} s on {cores} cores "
                       f"({busy / cores / fig['build']['median']:.0%} of the wall time)")
        by = fig.get("no-op reads per node by concern (max)") or {}
        if by:
            out.append(f"no-op at {key}, REST reads one manager received, by concern "
                       "(GET /status / every GET): " + ", ".join(
                           f"{c} {v['status']}/{v['reads']}" for c, v in by.items()))
    return out


def _cfy_lines(report):
    """The real cfy 4.6's price: per call, and calls per build and per no-op."""
    cost = report.get("cfy 4.6 per call")
    out = []
    if cost:
        out += ["", "the real cfy 4.6 (Python 2.7), `cfy --version`, per call: "
                f"{cost['direct: wall s']['median']:.2f} s wall, "
                f"{cost['direct: CPU s']['median']:.2f} CPU s run directly (as the RPM's cfy); "
                f"{cost['lab host (audit wrapper): wall s']['median']:.2f} s, "
                f"{cost['lab host (audit wrapper): CPU s']['median']:.2f} CPU s on a lab host "
                "(the lab's audit wrapper added)"]
    for key, label in FIGURE_SETS:
        for size, row in (report.get(key) or {}).items():
            for t, fig in row.items():
                if t.startswith("T=") and fig.get("cfy calls (build)"):
                    b, n = fig["cfy calls (build)"], fig["cfy calls (no-op)"]
                    out.append(f"cfy calls, N={size} {t}{label}: build {b['formula']:.0f} by the "
                               f"formula + {b['installer']:.0f} by the installers "
                               f"({b['seconds']:.1f} s); no-op {n['formula']:.0f} + "
                               f"{n['installer']:.0f} ({n['seconds']:.1f} s)")
    return out


def verdicts(report):
    """Each target against what was measured. A build's target leaves Cloudify's own part
    (the critical path: the installs and the cluster start, one after the other) and the
    leader's package install (it must end before the leader's install starts) out, and bounds
    the rest by Salt's own cost (the cold floor)."""
    out, targets = [], report["targets"]
    name = "build <= critical path + leader's package install + x cold floor"
    for key, label in FIGURE_SETS:
        for size, row in (report.get(key) or {}).items():
            cold = row.get("cold floor", row["floor"])["median"]
            for t, fig in row.items():
                if not t.startswith("T="):
                    continue
                if name in targets:
                    out.append(_build_verdict(f"N={size} {t}{label}", fig, cold, targets[name]))
                if "no-op/floor" in targets:
                    out.append(_noop_verdict(f"N={size} {t}{label}", fig, row,
                                             targets["no-op/floor"]))
    fleet = {int(k): v for k, v in (report.get("fleet") or {}).items()}
    name = "master CPU per cluster M=4 / M=1"
    if name in targets and 1 in fleet and 4 in fleet and fleet[4].get("master cpu seconds"):
        one, four = (fleet[m]["master cpu seconds"]["median"] / m for m in (1, 4))
        out.append(f"{name}: {four:.1f} / {one:.1f} CPU s = {four / one:.2f} (<= {targets[name]}): "
                   f"{'met' if four / one <= targets[name] else 'missed'}")
    day2 = report.get("day2") or {}
    for name, fig in (("rejoin - one join (s)", day2.get("rejoin - its join")),
                      ("LB failover (s)", day2.get("LB failover"))):
        if name in targets and fig:
            out.append(f"{name}: {fig['median']:.1f} (<= {targets[name]}): "
                       f"{'met' if fig['median'] <= targets[name] else 'missed'}")
    return out


def _build_verdict(label, fig, cold, factor):
    path, build = fig["critical path"]["median"], fig["build"]["median"]
    package = (fig.get("leader's package install") or {}).get("median", 0.0)
    allowed = path + package + factor * cold
    return (f"{label} build {build:.1f} s <= critical path {path:.1f} + leader's package "
            f"install {package:.1f} + {factor} x cold floor {cold:.1f} = {allowed:.1f} s "
            f"(the rest is {(build - path - package) / cold:.2f} x the cold floor): "
            f"{'met' if build <= allowed else 'missed'}")


def _noop_verdict(label, fig, row, target):
    """The no-op's target: its time against the warm floor, no mutating command, and at most
    one /status read per manager per concern."""
    noop = fig["no-op"]["median"] / fig.get("floor", row["floor"])["median"]
    reads = max((c["status"] for c in
                 (fig.get("no-op reads per node by concern (max)") or {}).values()), default=0)
    verdict = "met" if noop <= target and not fig["no-op mutating"] and reads <= 1 else "missed"
    return (f"{label} no-op/floor: {noop:.2f}, {fig['no-op mutating']} mutating "
            f"commands, at most {reads} status read(s) per manager per concern: {verdict}")


def _growth(figures):
    """What each extra manager adds to a build: in all, in the member steps (its join), and in
    every other step (the target: nothing)."""
    sizes = sorted(figures, key=int)
    out = []
    for small, large in zip(sizes, sizes[1:]):
        for key in figures[small]:
            if not key.startswith("T=") or key not in figures[large]:
                continue
            extra = int(large) - int(small)
            a, b = figures[small][key], figures[large][key]
            total = (b["build"]["median"] - a["build"]["median"]) / extra
            members = (b["build steps"].get("members", 0) - a["build steps"].get("members", 0)) / extra
            if not out:
                out += ["", f"{'N':>7} {'T':>3} {'build +s/manager':>17} {'members +s':>11} "
                            f"{'other steps +s':>15}"]
            out.append(f"{small:>3}->{large:<3} {key[2:]:>3} {total:>17.2f} {members:>11.2f} "
                       f"{total - members:>15.2f}")
    return out


def _mm(fig):
    return f"{fig['median']:.1f} [{fig['min']:.1f}-{fig['max']:.1f}]"


def test_profile(lab, emulator, salt_cli, salt_run_cli, pillar_dir, pytestconfig, report):
    """`make bench PROFILE=1`: where a build's time goes (N=3, T=0, new minions).

    1. A build with the CPU time of every process sampled (psutil, every 0.1 s), summed by
       program: which programs the 2 cores spent the build on.
    2. A build under py-spy (active samples only): the salt-run process, where the orchestration
       runs, and one follower's minion with its job processes; the functions with the most
       samples on top of the stack (self) and anywhere on it (inclusive, leaving out the frames
       nearly every sample has)."""
    if not pytestconfig.getoption("--bench-profile"):
        pytest.skip("profiling runs only with --bench-profile (make bench PROFILE=1)")
    out = lab.dir / "profile"
    out.mkdir(exist_ok=True)
    pillar = deep(minion_pillar(salt_cli))
    pillar["clusters"]["lab"]["managers"] = managers_pillar(lab, ["mgr1", "mgr2", "mgr3"])
    profile = report.setdefault("profile", {})
    used = ["mgr1", "mgr2", "mgr3", "cli"]
    with shadow_pillar(pillar_dir, pillar):
        power_only(lab, used)
        sampler = CpuSampler()
        sampler.start()
        busy = cpu_seconds()
        wall, _run, _steps = timed_run(lambda: orch(salt_run_cli))
        busy = cpu_seconds() - busy
        sampler.done.set()
        sampler.join()
        profile["build: CPU seconds by program"] = dict(
            {"(build wall s)": round(wall, 1), "(machine busy CPU s)": round(busy, 1)},
            **sampler.by_program())

        power_only(lab, used)
        with py_spy(lab.minions["mgr2"].pid, out / "minion.txt"):
            cmd = salt_run_cli.cmdline("state.orch", "cloudify_ha.orch")
            run = subprocess.run([SPY, *SPY_RECORD, "-o", str(out / "salt-run.txt"), "--",
                                  *cmd], capture_output=True, text=True, timeout=600, check=False)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    for name, raw in (("salt-run", "salt-run.txt"), ("mgr2 minion and its jobs", "minion.txt")):
        self_time, inclusive = top_functions(out / raw)
        keep_raw(report, out / raw)
        profile[f"a build (N=3, T=0), {name}: self"] = self_time
        profile[f"a build (N=3, T=0), {name}: inclusive"] = inclusive
    lab.reset()


SPY = str(Path(sys.executable).parent / "py-spy")
SPY_RECORD = ("record", "--subprocesses", "--rate", "100", "--format", "raw")


@contextlib.contextmanager
def py_spy(pid, raw):
    """py-spy recording a running process and its children into `raw` while the block runs."""
    spy = subprocess.Popen(  # pylint: disable=consider-using-with
        [SPY, *SPY_RECORD, "-o", str(raw), "--pid", str(pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


def spy_stacks(raw):
    """(stack, sample count) of each line of py-spy's raw output (frames separated by ';')."""
    for line in Path(raw).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            yield stack, int(count)


def keep_raw(report, raw):
    """A copy of py-spy's raw output in bench/results/<time>-py-spy/ (not committed): for a
    closer look than the tables (`py-spy`'s raw format: a stack per line, then its count)."""
    keep = RESULTS / f"{report['time']}-py-spy"
    keep.mkdir(exist_ok=True)
    (keep / Path(raw).name).write_bytes(Path(raw).read_bytes())


JOB_AREAS = (  # (label, what a frame of the stack holds)
    ("state.sls", "sls (salt/modules/state.py:"),
    ("  Salt's pkg state mod_init (its loader's search for pkg.ex_mod_init)",
     "mod_init (salt/states/pkg.py:"),
    ("  rendering the SLS files", "render_state (salt/state.py:"),
    ("  the job's channel to the master (the minion's RSA key)", "gen_token (salt/crypt.py:"),
    ("  the formula's own code (_modules, _states, _utils)", "(cloudify_ha"))


def job_seconds(raw, rate=100):
    """Seconds of py-spy's samples (at `rate` a second) in the minion's job processes (the
    stacks under minion.py's `_thread_return`: not the minion's idle main loop or engines, which
    py-spy counts as active on Python 3.10), in all and by area (JOB_AREAS; a sample counts in
    every area its stack holds)."""
    out = dict.fromkeys(["job processes"] + [label for label, _ in JOB_AREAS], 0.0)
    for stack, count in spy_stacks(raw):
        if "_thread_return (salt/minion.py:" not in stack:
            continue
        out["job processes"] += count / rate
        for label, needle in JOB_AREAS:
            if needle in stack:
                out[label] += count / rate
    return {k: round(v, 2) for k, v in out.items()}


def test_profile_noop(lab, emulator, salt_cli, salt_run_cli, pillar_dir, pytestconfig, report):
    """`make bench PROFILE=1`: where a no-op's time goes on a manager's minion, on the
    session's Salt and on 3006.8 (whose no-op is ~2 x its floor where 3008's is ~1.2 x): a build
    of 3, then the no-op with py-spy on mgr2's minion and its job processes (active samples
    only), and the no-op's seconds per step."""
    if not pytestconfig.getoption("--bench-profile"):
        pytest.skip("profiling runs only with --bench-profile (make bench PROFILE=1)")
    out = lab.dir / "profile"
    out.mkdir(exist_ok=True)
    pillar = deep(minion_pillar(salt_cli))
    names = ["mgr1", "mgr2", "mgr3"]
    pillar["clusters"]["lab"]["managers"] = managers_pillar(lab, names)
    profile = report.setdefault("profile", {})
    for on_salt in (contextlib.nullcontext(), minions_on_salt(lab, salt_cli, names, "3006.8")):
        with on_salt, shadow_pillar(pillar_dir, pillar):
            power_only(lab, names + ["cli"])
            for n in names:
                emulator.set_knobs(n, install_seconds=None)
            version = salt_versions(salt_cli, names)["mgr2"]
            _ok(orch(salt_run_cli))
            raw = out / f"noop-{version}.txt"
            with py_spy(lab.minions["mgr2"].pid, raw):
                wall, run, steps = timed_run(lambda: orch(salt_run_cli))
            assert run.returncode == 0 and not run.changed(), run
        keep_raw(report, raw)
        label = f"a no-op (N=3, {wall:.1f} s), mgr2's minion on Salt {version}"
        profile[f"{label}: steps (s)"] = {k: round(v, 2) for k, v in steps.items()}
        profile[f"{label}: job processes (s)"] = job_seconds(raw)


PROGRAMS = (("ProcessPayload", "salt-minion jobs"), ("salt_minion", "salt-minion"),
            ("salt-minion", "salt-minion"), ("salt_master", "salt-master"),
            ("salt-master", "salt-master"), ("salt_run", "salt-run (the orchestration)"),
            ("salt-run", "salt-run (the orchestration)"), ("pytest", "pytest (the bench)"),
            ("apt-get", "apt-get"), ("dpkg", "dpkg"), ("cfy_manager", "emulated Cloudify"),
            ("cloudify-services", "emulated Cloudify"), ("cfyemu", "emulated Cloudify"),
            ("/cfy", "emulated Cloudify"), ("postgres", "PostgreSQL"), ("nft", "nft"),
            ("py-spy", "py-spy"))


class CpuSampler(threading.Thread):
    """The CPU time (user + system) of every process, sampled every 0.1 s, by program. A
    process that lives less than 0.1 s can be missed: the sums are lower bounds."""

    def __init__(self):
        super().__init__(daemon=True)
        self.done = threading.Event()
        self.seen = {}  # (pid, create time) -> (program, cpu seconds, cpu seconds at start)

    def run(self):
        first = True
        while True:
            for proc in psutil.process_iter(["cmdline", "name", "cpu_times", "create_time"]):
                info = proc.info
                if not info.get("cpu_times"):
                    continue
                cpu = info["cpu_times"].user + info["cpu_times"].system
                key = (proc.pid, info["create_time"])
                known, _, base = self.seen.get(key, (None, None, cpu if first else 0.0))
                # a process that has ended (a zombie) shows no command line: it keeps the
                # program it was seen running; one that exec'd shows its new program
                program = known if known and not info.get("cmdline") else classify(info)
                self.seen[key] = (program, cpu, base)
            first = False
            if self.done.wait(0.1):
                return

    def by_program(self):
        sums = {}
        for program, cpu, base in self.seen.values():
            sums[program] = sums.get(program, 0.0) + cpu - base
        small = [p for p, v in sums.items() if p.startswith("other: ") and v < 0.2]
        if small:
            sums["other (programs under 0.2 s each)"] = sum(sums.pop(p) for p in small)
        return {p: round(v, 1) for p, v in sorted(sums.items(), key=lambda i: -i[1])}


def classify(info):
    """The program a process (psutil's info: cmdline, name) counts for."""
    line = " ".join(info.get("cmdline") or [])
    program = next((p for needle, p in PROGRAMS if needle in line), None)
    return program or f"other: {_command_name(info.get('cmdline'), info.get('name'))}"


def _command_name(cmdline, name):
    """What an unclassified process runs: its program's name, or the script an interpreter
    runs (`python3 -m x` as `python3 -m x`); a kernel thread's name in brackets."""
    words = [w for w in (cmdline or []) if w]
    if not words:
        return f"[{re.sub(r'[/:].*$', '', name or '?')}]"
    name = os.path.basename(words[0])
    if name.startswith(("python", "sh", "bash", "nsenter", "unshare", "su", "runuser")):
        rest = [w for w in words[1:] if not w.startswith("-") or w == "-m"]
        if rest:
            return f"{name} {' '.join(os.path.basename(w) for w in rest[:2])}"
    return name


def top_functions(raw, top=12):
    """({function: share of samples on top of the stack}, {function: share of samples it is on
    the stack of, for functions on fewer than 60 % of them}), from py-spy's raw output (a line
    per stack: frames separated by ';', then a count)."""
    self_counts, counts, total = {}, {}, 0
    for stack, count in spy_stacks(raw):
        total += count
        names = [re.sub(r" \((?:.*/)?(site-packages/)?([^/]+/[^/]+?):\d+\)$", r" (\2)", frame)
                 for frame in stack.split(";")]
        names = [n for n in names if not n.startswith(("process ", "thread "))]
        if names:
            self_counts[names[-1]] = self_counts.get(names[-1], 0) + count
        for name in set(names):
            counts[name] = counts.get(name, 0) + count
    if not total:
        return {}, {}
    best = sorted(self_counts.items(), key=lambda i: -i[1])[:top]
    wide = sorted(((n, c) for n, c in counts.items() if c < 0.6 * total), key=lambda i: -i[1])
    return ({n: round(c / total, 3) for n, c in best},
            {n: round(c / total, 3) for n, c in wide[:top]})