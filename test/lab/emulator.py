"""The lab side of the Cloudify emulator: build its packages, drive its knobs, read its audit."""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from .proc import run

CFYEMU = Path(__file__).resolve().parent / "cfyemu"
# the real cloudify-cli 4.6 that `make cfy` installs (Python 2.7): every `cfy` in the lab runs it
CFY46 = Path(__file__).resolve().parents[2] / ".cfy-4.6"
MANAGER_PACKAGE = "cloudify-manager-install"
CLI_PACKAGE = "cloudify-cli"
VERSION = "4.6.0-1"
DPKG_STATUS = "/var/lib/dpkg/status"

WRAPPER = """#!/bin/sh
# {what} (the cloudify_ha lab)
PYTHONPATH={lib} exec {python} -m cfyemu.{module} "$@"
"""


def _wrapper(path, what, lib, module, python):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(WRAPPER.format(what=what, lib=lib, module=module, python=python))
    path.chmod(0o755)


def real_cli(home=CFY46):
    """(lib, python) of the machine's real cfy 4.6, or a clear error naming the fix."""
    try:
        python = Path((home / "python").read_text().strip())
    except OSError:
        python = None
    lib = home / "lib"
    if not python or not python.exists() or not (lib / "bin" / "cfy").exists() \
            or not (home / ".complete").exists():
        raise RuntimeError(f"the real Cloudify CLI 4.6 is not installed in {home}: run "
                           "'make cfy' (it needs Python 2.7: pyenv install 2.7.18)")
    return lib, python


def _embedded(dest, cli):
    """/opt/cfy/embedded as the 4.6 CLI RPM lays it out: links to the machine's real install."""
    lib, python = cli
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    (dest / "lib").symlink_to(lib)
    (dest / "bin" / "python2.7").symlink_to(python)


def _copy_code(dest):
    shutil.copytree(CFYEMU, dest / "cfyemu", ignore=shutil.ignore_patterns("__pycache__", "*.md"))


def _control(root, package, description):
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {VERSION}\nArchitecture: all\n"
        "Maintainer: cloudify_ha lab <lab@localhost>\n"
        f"Description: {description}\n This package is the cloudify_ha test lab's emulator.\n")


def build_packages(out_dir, python=sys.executable, cli_home=CFY46, knobs=None):
    """Build the two .deb packages into out_dir; returns {package name: path}. ``knobs``: the
    manager package's defaults for the emulator's knobs (a host's own knobs win)."""
    out_dir = Path(out_dir)
    cli = real_cli(cli_home)
    work = out_dir / "build"
    shutil.rmtree(work, ignore_errors=True)
    built = {}

    root = work / MANAGER_PACKAGE
    base = root / "opt" / "cloudify-manager-install"
    lib = "/opt/cloudify-manager-install/lib"
    _copy_code(base / "lib")
    # 4.6 checks a license's signature with Cloudify's key (premium): the lab signs its
    # licenses with a key of its own, whose public half the package carries
    key = out_dir / LICENSE_KEY
    if not key.exists():
        run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
             "-out", key])
    run(["openssl", "pkey", "-in", key, "-pubout", "-out", base / "lib" / "lab-license-key.pub"])
    if knobs:
        (base / "lib" / "lab-knobs.json").write_text(json.dumps(knobs))
    _wrapper(base / "bin" / "cfy_manager", "cfy_manager, the Cloudify Manager installer", lib,
             "installer", python)
    _wrapper(base / "bin" / "cfy", "cfy, the real Cloudify CLI 4.6", lib, "realcfy", python)
    _embedded(base / "cli" / "embedded", cli)
    _wrapper(base / "bin" / "cloudify-services", "the manager's services", lib, "service", python)
    _wrapper(root / "usr" / "bin" / "cfy_manager", "cfy_manager", lib, "installer", python)
    _control(root, MANAGER_PACKAGE, "Cloudify Manager 4.6 installer (emulated)")

    cli_root = work / CLI_PACKAGE
    _copy_code(cli_root / "opt" / "cfy" / "lib")
    _embedded(cli_root / "opt" / "cfy" / "embedded", cli)
    for path in (cli_root / "opt" / "cfy" / "bin" / "cfy", cli_root / "usr" / "bin" / "cfy"):
        _wrapper(path, "cfy, the real Cloudify CLI 4.6", "/opt/cfy/lib", "realcfy", python)
    _control(cli_root, CLI_PACKAGE, "Cloudify CLI 4.6 (the real one, audited by the lab)")

    for name, pkg_root in ((MANAGER_PACKAGE, root), (CLI_PACKAGE, cli_root)):
        target = out_dir / f"{name}_{VERSION}_all.deb"
        run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", pkg_root, target])
        built[name] = target
    shutil.rmtree(work, ignore_errors=True)
    return built


LICENSE_KEY = "lab-license-key.pem"
# the fields of 4.6's own test licenses (cloudify-manager tests/integration_tests/resources/
# licenses/test_valid_paying_license.yaml)
LICENSE_FIELDS = {"capabilities": ["Mock1", "Mock2"], "cloudify_version": "4.6",
                  "customer_id": "CloudifyLab", "expiration_date": "11/24/2030",
                  "license_edition": "Spire", "trial": False}


def make_license(key, **fields):
    """A license file's text as 4.6's are (a `license` mapping and a binary `signature`),
    signed with the lab's key (cfyemu/snapshots.py license_signed_bytes); ``fields`` override
    LICENSE_FIELDS (None drops one)."""
    body = {k: v for k, v in dict(LICENSE_FIELDS, **fields).items() if v is not None}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "license"
        data.write_bytes(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key), str(data)],
                                   stdout=subprocess.PIPE, check=True).stdout
    return yaml.safe_dump({"license": body, "signature": signature}, default_flow_style=False)


def ensure_license(host, key=None):
    """Upload the lab's license through ``host``'s active profile with the real `cfy license
    upload`, unless the manager has one: 4.6 answers most endpoints (blueprints, snapshots,
    maintenance mode) with 400 missing_cloudify_license until then. ``key``: the lab's signing
    key (by default where the lab's fixtures build the packages)."""
    listed = host.run(["cfy", "license", "list", "--json"], check=False)
    if listed.returncode == 0 and '"customer_id"' in listed.stdout:
        return
    key = key or host.dir.parents[1] / "srv" / "cloudify_ha_packages" / LICENSE_KEY
    host.write("/root/lab-license.yaml", make_license(key))
    host.run(["cfy", "license", "upload", "/root/lab-license.yaml"])


class Emulator:
    """Per-host controls of the emulator, for tests (not used by the formula)."""

    def __init__(self, lab, packages):
        self.lab = lab
        self.packages = packages

    @property
    def license_key(self):
        return Path(self.packages[MANAGER_PACKAGE]).parent / LICENSE_KEY

    def license(self, **fields):
        """A license signed with the lab's key (make_license)."""
        return make_license(self.license_key, **fields)

    def ensure_license(self, host):
        ensure_license(self.lab[host], self.license_key)

    def install_package(self, host, package=MANAGER_PACKAGE):
        """Install the package the way an admin would on a fresh host: dpkg -i."""
        self.lab[host].run(["dpkg", "-i", str(self.packages[package])])

    def set_knobs(self, host, **knobs):
        """fail_at=<component>, install_seconds=<float>, edition=community; None clears one."""
        current = json.loads(self.lab[host].read("/var/lib/cloudify-lab/knobs.json") or "{}")
        current.update(knobs)
        current = {k: v for k, v in current.items() if v is not None}
        self.lab[host].write("/var/lib/cloudify-lab/knobs.json", json.dumps(current))

    def seed_blueprints(self, host, *names):
        """Leave blueprint files on a host, as a previous standalone manager would: not empty."""
        for name in names:
            self.lab[host].write(f"/opt/manager/resources/blueprints/default_tenant/{name}/blueprint.yaml",
                                 f"tosca_definitions_version: cloudify_dsl_1_3\n# {name}\n")

    def hide_package(self, host, package):
        """The host's dpkg no longer lists `package` as installed (its own copy of the status
        file; the machine keeps it), as the lab hides nft for iptables hosts: for 4.6's
        prerequisite checks, which the emulator makes with dpkg. A wipe brings it back."""
        status = self.lab[host].read(DPKG_STATUS)
        stanzas = status.split("\n\n")
        hidden = [s for s in stanzas if s.startswith(f"Package: {package}\n")]
        assert len(hidden) == 1 and "Status: install ok installed" in hidden[0], package
        stanzas[stanzas.index(hidden[0])] = hidden[0].replace(
            "Status: install ok installed", "Status: deinstall ok config-files")
        self.lab[host].write(DPKG_STATUS, "\n\n".join(stanzas))

    def audit(self, host):
        """The host's audit entries (cli and rest), oldest first."""
        path = self.lab[host].dir / "upper" / "var" / "log" / "cloudify-lab" / "audit.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def all_audit(self):
        return {name: self.audit(name) for name in self.lab.hosts}

    def mutating(self, host=None):
        """Every mutating command and REST call (on one host, or on all)."""
        hosts = [host] if host else list(self.lab.hosts)
        found = []
        for name in hosts:
            for entry in self.audit(name):
                if entry["kind"] == "cli" and entry["mutating"]:
                    found.append(entry)
                elif entry["kind"] == "rest" and entry["method"] in ("PUT", "PATCH", "DELETE", "POST"):
                    found.append(entry)
        return found

    def clear_audit(self):
        for host in self.lab.hosts.values():
            host.run(["sh", "-c", "[ ! -e /var/log/cloudify-lab/audit.jsonl ] || "
                      ": > /var/log/cloudify-lab/audit.jsonl"])
