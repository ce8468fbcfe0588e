"""`python -m lab sweep|check-clean`: remove or look for what lab runs left on this machine."""

import re
import sys
from pathlib import Path

import psutil

from .core import BASE, NAME_RE, sweep
from .hosts import netns_list
from .proc import run


def leftovers():
    """Everything a lab run creates that still exists: namespaces, links, mounts, processes, dirs."""
    found = []
    found += [f"netns {ns}" for ns in netns_list() if NAME_RE.match(ns)]
    links = run(["ip", "-o", "link"], check=False).stdout
    found += [f"link {n}" for n in re.findall(r"^\d+: (chl[0-9a-f]{4}[^:@ ]*)", links, re.M)]
    for line in Path("/proc/self/mounts").read_text().splitlines():
        if "/chl-" in line.split()[1]:
            found.append(f"mount {line.split()[1]}")
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any("/chl-" in a for a in proc.info["cmdline"] or ()) and proc.pid != psutil.Process().pid:
                found.append(f"process {proc.pid} {' '.join(proc.info['cmdline'])[:120]}")
        except psutil.NoSuchProcess:
            continue
    found += [f"dir {d}" for d in BASE.glob("chl-*")]
    return found


def main(argv):
    cmd = argv[1] if len(argv) > 1 else "help"
    if cmd == "sweep":
        sweep(verbose=True)
        return 0
    if cmd == "check-clean":
        left = leftovers()
        if left:
            print("the lab left these behind:\n  " + "\n  ".join(left))
            return 1
        print("lab check: no namespace, link, mount, process or directory left behind")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
