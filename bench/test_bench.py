"""`make bench`: what the formula costs in the lab, how it grows with the cluster, against the
project's targets. Prints a table and writes bench/results/<time>.json. Never part of make test.

- floor: an orchestration of the same shape (same steps, same targets) whose states do nothing;
- build from empty for N managers, at emulated install times T (the emulator's install_seconds
  knob), and its critical path from the lab's audit (the installs, the cluster start and the
  joins, which the formula must run one after the other);
- no-op re-run: time, mutating commands, status reads received per node;
- memory: the largest sum of PSS of the salt-master and salt-minions seen during a build.
"""

import json
import os
import statistics
import threading
import time
from pathlib import Path

import pytest
import salt.version

from lab.formula import deep, minion_pillar, orch, shadow_pillar

RESULTS = Path(__file__).parent / "results"
TARGETS = {"build/floor (T=0)": 1.3, "build/critical path (T=10)": 1.15, "no-op/floor": 1.2}


@pytest.fixture(scope="module")
def quick(request):
    return request.config.getoption("--bench-quick")


def floor_orch(lab, names, cli_hosts):
    """The floor: cloudify_ha.orch's steps and targets with states that do nothing."""
    root = lab.dir / "srv" / "bench_floor"
    root.mkdir(parents=True, exist_ok=True)
    (root / "nop.sls").write_text("bench-floor-nop:\n  test.succeed_without_changes: []\n")
    steps = [("validate", None), ("sync", names + cli_hosts), ("prepare", names)]
    steps += [(f"member-{n}", [n]) for n in names] + [("profiles", names + cli_hosts)]
    lines, prev = [], None
    for step, targets in steps:
        lines.append(f"floor-{step}:")
        if targets is None:
            lines.append("  test.succeed_without_changes: []")
        else:
            lines += ["  salt.state:", "    - queue: true", f"    - tgt: {json.dumps(targets)}",
                      "    - tgt_type: list", "    - sls: bench_floor.nop"]
            lines += ["    - require:", f"      - {'test' if prev == 'validate' else 'salt'}: floor-{prev}"]
        prev = step
    (root / f"orch{len(names)}.sls").write_text("\n".join(lines) + "\n")
    return f"bench_floor.orch{len(names)}"


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


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": len(values)}


def test_bench(lab, emulator, salt_cli, salt_run_cli, pillar_dir, quick, pytestconfig):
    wanted = [int(n) for n in pytestconfig.getoption("--bench-sizes").split(",")]
    sizes = [3] if quick else [n for n in wanted if n <= len(lab.managers)]
    install_times = [0] if quick else [0, 10]
    repeats = 1 if quick else 3
    base = minion_pillar(salt_cli)
    figures = {}
    for size in sizes:
        names = [f"mgr{i}" for i in range(1, size + 1)]
        pillar = deep(base)
        pillar["clusters"]["lab"]["managers"] = [
            {"name": n, "minion_id": n, "private_ip": lab[n].ip, "public_ip": lab[n].ip}
            for n in names]
        floor = floor_orch(lab, names, pillar["clusters"]["lab"]["cli_hosts"])
        with shadow_pillar(pillar_dir, pillar):
            row = figures.setdefault(size, {})
            row["floor"] = summary([_timed(lambda: _ok(salt_run_cli.run(
                "state.orch", floor, _timeout=600))) for _ in range(repeats)])
            for seconds in install_times:
                builds, paths, noops, mutating, reads, pss = [], [], [], [], [], []
                for _ in range(repeats):
                    lab.reset()
                    for n in names:
                        emulator.set_knobs(n, install_seconds=seconds or None)
                    emulator.clear_audit()
                    sampler = PssSampler(str(lab.dir / "sf"))
                    sampler.start()
                    builds.append(_timed(lambda: _ok(orch(salt_run_cli))))
                    sampler.done.set()
                    sampler.join()
                    pss.append(sampler.peak / 1024)
                    paths.append(critical_path(emulator, names))
                    emulator.clear_audit()
                    noops.append(_timed(lambda: _ok(orch(salt_run_cli))))
                    mutating.append(len(emulator.mutating()))
                    reads.append(status_reads(emulator, names))
                row[f"T={seconds}"] = {"build": summary(builds), "critical path": summary(paths),
                                      "no-op": summary(noops), "no-op mutating": max(mutating),
                                      "no-op status reads per node (max)": max(reads),
                                      "peak PSS MiB": summary(pss)}
    report = {"cores": os.cpu_count(), "salt": salt.version.__version__, "quick": quick,
              "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "figures": figures,
              "targets": TARGETS}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{report['time']}.json").write_text(json.dumps(report, indent=1))
    print("\n" + render(report))


def _ok(ret):
    data = ret.data if hasattr(ret, "data") else None
    assert ret.returncode == 0, (ret.returncode, str(data)[:2000])
    return ret


def _timed(fn):
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def render(report):
    out = [f"cloudify_ha bench: {report['cores']} cores, salt {report['salt']}"
           f"{' (quick)' if report['quick'] else ''}", "",
           f"{'N':>2} {'T':>3} {'floor':>14} {'build':>20} {'crit.path':>10} {'build/floor':>11} "
           f"{'build/path':>10} {'no-op':>20} {'noop/floor':>10} {'mut':>3} {'reads':>5} {'PSS MiB':>8}"]
    for size, row in report["figures"].items():
        floor = row["floor"]["median"]
        for key, fig in row.items():
            if key == "floor":
                continue
            build, path, noop = fig["build"], fig["critical path"]["median"], fig["no-op"]
            out.append(
                f"{size:>2} {key[2:]:>3} {_mm(row['floor']):>14} {_mm(build):>20} {path:>10.1f} "
                f"{build['median'] / floor:>11.2f} "
                f"{(build['median'] / path if path else float('nan')):>10.2f} {_mm(noop):>20} "
                f"{noop['median'] / floor:>10.2f} {fig['no-op mutating']:>3} "
                f"{fig['no-op status reads per node (max)']:>5} {fig['peak PSS MiB']['median']:>8.0f}")
    out += ["", "targets: " + ", ".join(f"{k} <= {v}" for k, v in report["targets"].items())
            + "; no-op: 0 mutating commands"]
    return "\n".join(out)


def _mm(fig):
    return f"{fig['median']:.1f} [{fig['min']:.1f}-{fig['max']:.1f}]"
