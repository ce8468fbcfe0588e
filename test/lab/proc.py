"""Small process helpers shared by the lab: run a command, poll a condition, reap a process."""

import signal
import subprocess
import time

import psutil


class LabError(RuntimeError):
    """The lab could not do what it was asked; the message says what and why."""


def run(argv, check=True, timeout=120, input=None, env=None, capture=True):
    """Run argv (never through a shell); raise LabError with its output when check fails."""
    proc = subprocess.run(
        [str(a) for a in argv],
        input=input,
        capture_output=capture,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if check and proc.returncode != 0:
        raise LabError(
            f"command failed (exit {proc.returncode}): {' '.join(map(str, argv))}\n"
            f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc


def wait_until(predicate, timeout, what, interval=0.05, max_interval=0.5):
    """Poll predicate() until it returns a truthy value; raise LabError after timeout seconds.

    The interval backs off from `interval` to `max_interval` so quick effects are seen quickly
    and slow ones do not burn the CPU.
    """
    deadline = time.monotonic() + timeout
    delay = interval
    last_exc = None
    while True:
        try:
            value = predicate()
        except Exception as exc:  # pylint: disable=broad-except
            value, last_exc = None, exc
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise LabError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(delay)
        delay = min(delay * 1.5, max_interval)


def alive(pid):
    """True when pid runs and is not a zombie (kill -0 succeeds on zombies)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return False



def kill_all(procs, timeout=10):
    """SIGKILL every psutil.Process given (those already gone are skipped); wait for them."""
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=timeout)
