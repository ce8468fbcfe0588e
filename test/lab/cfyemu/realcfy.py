"""`cfy`: the REAL cloudify-cli 4.6 (Python 2.7, unchanged), where the 4.6 RPM puts it: its code
under /opt/cfy/embedded/lib and its interpreter at /opt/cfy/embedded/bin/python2.7 (in the lab
both are links to the machine's `make cfy` install, .cfy-4.6/). The lab only records each call in
its audit (argv with secrets masked, exit code, and who called: CFYEMU_CALLER, which the emulated
installer sets), as it records the installer's own; nothing of the CLI's behaviour is emulated."""

import os
import subprocess
import sys
from pathlib import Path

from .common import AuditedCommand

EMBEDDED = Path("/opt/cfy/embedded")
PYTHON = EMBEDDED / "bin" / "python2.7"
CFY = EMBEDDED / "lib" / "bin" / "cfy"
# the commands that write a profile on purpose or change the cluster (a read such as
# `cluster nodes list` also saves the profile, merged: 4.6 does that on every read)
MUTATING = {("profiles", "use"), ("profiles", "set"), ("profiles", "delete"),
            ("cluster", "start"), ("cluster", "join"), ("cluster", "set-active"),
            ("cluster", "update-profile"), ("cluster", "remove"), ("cluster", "update"),
            ("cluster", "set-certificate"), ("blueprints", "upload"), ("blueprints", "delete"),
            ("maintenance-mode", "activate"), ("maintenance-mode", "deactivate"),
            ("snapshots", "create"), ("snapshots", "delete"), ("snapshots", "upload"),
            ("snapshots", "restore"), ("license", "upload"), ("secrets", "create"),
            ("secrets", "update"), ("secrets", "delete")}


def command_key(argv):
    words = [a for a in argv if not a.startswith("-")]
    if len(words) >= 3 and words[:2] == ["cluster", "nodes"]:
        return ("cluster", words[2])
    return tuple(words[:2])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    record = AuditedCommand("cfy", argv, command_key(argv) in MUTATING,
                            caller=os.environ.get("CFYEMU_CALLER"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "CFYEMU_CALLER")}
    env["PYTHONPATH"] = str(EMBEDDED / "lib")
    if not PYTHON.exists():
        print(f"cfy: {PYTHON} is missing: the Cloudify CLI package is not installed", flush=True)
        code = 127
    else:
        code = subprocess.call([str(PYTHON), "-s", str(CFY), *argv], env=env)
    record.finish(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
