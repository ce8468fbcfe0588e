"""`cfy_manager`: the emulated 4.6 installer (install, remove, start/stop/restart/configure).

Follows ../shared/cloudify-4.6.md section 5: the flag rules and their exact texts, config.yaml
merged over the package defaults and rewritten after install (postgres_password -> <removed>),
the install-time join over http:80 only, and the data-loss trap: a non-join install really drops
cloudify_db, stage and composer on the external PostgreSQL.
"""

import argparse
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import cluster as clustermod
from . import service
from .common import (BOOT_SCRIPT, CFY_BIN, CLUSTER_MARKER, CONFIG, DEFAULT_TENANT, ETC,
                     EXTERNAL_CERT, EXTERNAL_KEY, INSTALL_LOG, INSTALL_MARKER, OPT, PACKAGE_LIB,
                     PORTS, RESOURCES, RPM_PAYLOAD, VERSION, AuditedCommand, is_external_db,
                     knobs, load_config, merge, read_user_config, write_config_in_place)
from .rest import NetworkFailure, call
from .snapshots import deploy_security_config
from .store import create_schema

# 4.6's order (service_components.py SERVICE_COMPONENTS["manager_service"]), the components
# this emulator has: nginx comes BEFORE restservice, and the cluster step before cli, which
# usage_collector and sanity follow (no-ops here: they only hold cli.log's window open)
COMPONENTS = ["manager", "nginx", "postgresql_client", "rabbitmq", "restservice", "stage",
              "composer", "cluster", "cli", "usage_collector", "sanity"]
DATABASES = ("cloudify_db", "stage", "composer")
# knob fail_at=create_cluster_node: the join's step after its PUT (4.6 components/cluster)
CREATE_CLUSTER_NODE = "create_cluster_node"
CREATE_CLUSTER_NODE_BIN = "/opt/manager/env/bin/create_cluster_node"
MUTATING = {"install", "remove", "start", "stop", "restart", "configure"}


class InstallError(Exception):
    """Printed as '<kind>: <message>' (or the bare message when kind is empty); exit 1."""

    def __init__(self, message, kind=""):
        super().__init__(message)
        self.kind = kind

    def render(self):
        return f"{self.kind}: {self}" if self.kind else str(self)


# 4.6's cfy_manager/logger.py: FORMAT_MESSAGE, and the ColoredFormatter of its console handler
BOLD, COLOR, RESET = "\033[1;%dm", "\033[0;%dm", "\033[0m"
RED, GREEN, YELLOW, BLUE, WHITE = 31, 32, 33, 34, 37
LEVEL_COLOR = {"DEBUG": BLUE, "INFO": WHITE, "NOTICE": GREEN, "WARNING": YELLOW, "ERROR": RED}


class Logger:
    """4.6's installer logging (cfy_manager/logger.py): every line to cfy_manager.log as
    `asctime - [NAME] - LEVEL - msg`; INFO and up also to STDOUT (never stderr) in the same
    format, coloured by its ColoredFormatter. `console=False`: the file only (4.6's debug
    lines); `file=False`: the console only (4.6's `Admin password:` line, for which it raises
    the file handler's level)."""

    def __init__(self):
        INSTALL_LOG.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(INSTALL_LOG, "a", encoding="utf-8")  # pylint: disable=consider-using-with

    def __call__(self, component, message, console=True, level="INFO", file=True):
        if level == "DEBUG":  # the console handler is at INFO (no -v); the file's at DEBUG
            console = False
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d}"
        name = f"[{component.upper()}]"
        if file:
            self.fh.write(f"{stamp} - {name} - {level} - {message}\n")
            self.fh.flush()
        if console:
            color = LEVEL_COLOR[level]
            print(f"{stamp} - {BOLD % BLUE}{name}{RESET} - {BOLD % color}{level}{RESET} - "
                  f"{COLOR % color}{message}{RESET}", flush=True)


def parse(argv):
    parser = argparse.ArgumentParser(prog="cfy_manager")
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install")
    inst.add_argument("--private-ip")
    inst.add_argument("--public-ip")
    inst.add_argument("-a", "--admin-password")
    inst.add_argument("--clean-db", action="store_true")
    inst.add_argument("--join-cluster")
    inst.add_argument("--database-ip")
    inst.add_argument("--postgres-password")
    inst.add_argument("-v", "--verbose", action="store_true")
    rem = sub.add_parser("remove")
    rem.add_argument("-f", "--force", action="store_true")
    rem.add_argument("-v", "--verbose", action="store_true")
    for name in ("start", "stop", "restart", "configure"):
        p = sub.add_parser(name)
        p.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


# ---- install ---------------------------------------------------------------------------------
def check_flags(args):
    join_flags = [args.join_cluster, args.database_ip, args.postgres_password]
    if args.admin_password and any(join_flags) and not all(join_flags):
        raise InstallError("The --join-cluster, --database-ip, --admin-password and "
                           "--postgres-password flags must be used together")
    if (args.join_cluster or args.database_ip) and not args.admin_password:
        raise InstallError("The --join-cluster, --database-ip and --admin-password"
                           "flags must be used together")
    if args.admin_password and INSTALL_MARKER.exists() and not args.clean_db:
        raise InstallError("The --admin-password argument can only be used in conjunction with "
                           "the --clean-db flag.")


def effective_config(args):
    config = load_config()
    overrides = {"manager": {"security": {}}, "postgresql_client": {}, "cluster": {}}
    if args.private_ip:
        overrides["manager"]["private_ip"] = args.private_ip
    if args.public_ip:
        overrides["manager"]["public_ip"] = args.public_ip
    if args.admin_password:
        overrides["manager"]["security"]["admin_password"] = args.admin_password
    if args.join_cluster:
        overrides["cluster"]["master_ip"] = args.join_cluster
    if args.database_ip:
        overrides["postgresql_client"]["host"] = args.database_ip
    if args.postgres_password:
        overrides["postgresql_client"]["postgres_password"] = args.postgres_password
    return merge(config, overrides)


# what the lab's hosts (Debian, Python 3) stand in for: a CentOS 7 host with Python 2.7; the
# knobs host_distro / host_python / host_memory_mb / host_disk_gb say otherwise for a test
HOST_FACTS = {"host_distro": "centos 7", "host_python": "2.7"}


def _host_checks(config, log):
    """4.6's machine checks (validations.py `validate`): each failure appended, all raised
    together after the checks that raise at once. Memory, disk space, OpenSSL and the private
    IP's interface are this host's own; distro and Python are knobs (HOST_FACTS)."""
    facts, rules, manager = dict(HOST_FACTS, **knobs()), config["validations"], config["manager"]
    errors = []
    log("validations", "Validating IP address...")
    local = _local_addresses()
    if manager["private_ip"] not in local:
        errors.append(
            f"The provided private IP ({manager['private_ip']}) is not associated with any "
            "INET-type address available on this machine (available INET-type addresses: "
            f"{', '.join(a for a in local if a != manager['private_ip'])}). This will cause "
            "installation to fail. If you are certain that this IP address should be used, "
            "please set the 'skip_validations' parameter to 'false'")
    log("validations", "Validating Python version...")
    if facts["host_python"] != rules["expected_python_version"]:
        errors.append(f"Local python version (`{facts['host_python']}`) does not match expected "
                      f"version (`{rules['expected_python_version']}`)")
    log("validations", "Validating supported distributions...")
    distro, _, version = facts["host_distro"].partition(" ")
    if distro not in rules["supported_distros"]:
        errors.append(f"Cloudify manager does not support the current distro (`{distro}`),"
                      f"supported distros are: {rules['supported_distros']}")
    if version.split(".")[0] not in rules["supported_distro_versions"]:
        errors.append("Cloudify manager does not support the current distro version "
                      f"(`{version}`), supported versions are: "
                      f"{rules['supported_distro_versions']}")
    log("validations", "Validating memory requirement...")
    memory = facts.get("host_memory_mb", _memory_mb())
    if memory < rules["minimum_required_total_physical_memory_in_mb"]:
        errors.append("The provided host does not have enough memory to run Cloudify Manager "
                      f"(Current: {memory}MB, Required: "
                      f"{rules['minimum_required_total_physical_memory_in_mb']}MB).")
    log("validations", "Validating disk space requirement...")
    disk = facts.get("host_disk_gb", _disk_gb("/opt"))
    if disk < rules["minimum_required_available_disk_space_in_gb"]:
        errors.append("The provided host does not have enough disk space to run Cloudify "
                      f"Manager (Current: {disk}GB, Required: "
                      f"{rules['minimum_required_available_disk_space_in_gb']}GB).")
    return errors


def _local_addresses():
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], stdout=subprocess.PIPE, text=True,
                         check=False).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3]


def _memory_mb():
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.lower().startswith("memtotal"):
                return int(line.split(":")[1].split()[0]) // 1024
    return 0


def _disk_gb(path):
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_bsize // (1024 ** 3)


def validate(config, joining, log):
    """4.6's validations.py `validate`: the inputs always; unless validations.skip_validations,
    the machine checks (collected), then the database and certificate rules (each raises at
    once), then the collected failures as one `Validation error(s):` error."""
    manager = config["manager"]
    for key, what, flag in (("private_ip", "Private IP", "--private-ip"),
                            ("public_ip", "Public IP", "--public-ip")):
        if not manager.get(key):
            raise InstallError(f"{what} not set in the config.\nPossible solutions are:\n1. Set "
                               f"the `{key}` key in {CONFIG}\n2. Use the `{flag}` flag when "
                               "running `cfy_manager install/configure`", "ValidationError")
    _check_dependencies(config, log)
    if not is_external_db(config):
        raise InstallError("this lab emulates the external-database topology only: set "
                           "postgresql_client.host to the database's address", "ValidationError")
    if config["validations"].get("skip_validations"):
        log("validations", "Skipping validations")
        return
    log("validations", "Validating local machine...", level="NOTICE")
    errors = _host_checks(config, log)
    config_rules(config, joining, log)
    if errors:
        raise InstallError("Validation error(s):\n" + "\n".join(errors), "ValidationError")
    log("validations", "All validations passed successfully!", level="NOTICE")


def config_rules(config, joining, log=None):
    """4.6's rules about config.yaml's database and certificate inputs (validations.py
    `_validate_postgres_*`, `_validate_cert_inputs`): the first one broken raises."""
    manager, client = config["manager"], config["postgresql_client"]
    if not client.get("ssl_enabled"):
        raise InstallError("When using an external database, SSL must be enabled",
                           "ValidationError")
    if not client.get("postgres_password") or client["postgres_password"] == "<removed>":
        raise InstallError("postgresql_client.postgres_password is required when using an "
                           "external database", "ValidationError")
    _validate_cert_inputs(config["ssl_inputs"], log or (lambda *a, **k: None))
    if joining and not manager["security"].get("admin_password"):
        raise InstallError("manager.security.admin_password is required to join a cluster",
                           "ValidationError")


# ---- 4.6's certificate rules (validations.py 281-369) -----------------------------------------
def _validate_cert_inputs(inputs, log):
    """validations.py `_validate_cert_inputs` (363-369): the internal CA, then each cert/key pair."""
    _check_internal_ca_cert(inputs, log)
    for prefix in ("internal", "postgresql_server", "postgresql_client", "external",
                   "external_ca"):
        _check_key_and_cert(inputs, prefix, log)


def _check_internal_ca_cert(inputs, log):
    """validations.py `_check_internal_ca_cert` (342-360): ca_cert_path is the manager's internal
    CA, refused without its key unless an internal certificate and key are given."""
    if inputs.get("ca_key_path") and inputs.get("ca_cert_path"):
        _check_ssl_file(inputs, "ca_key_path", "Key", log)
        _check_ssl_file(inputs, "ca_cert_path", "Cert", log)
    elif inputs.get("ca_key_path"):
        raise InstallError("Internal CA key provided, but the internal CA cert was not",
                           "ValidationError")
    elif inputs.get("ca_cert_path") and not (inputs.get("internal_cert_path")
                                             and inputs.get("internal_key_path")):
        raise InstallError("If ca_cert_path was provided, but ca_key_path was not provided, both "
                           "internal_cert_path and internal_key_path must be provided.",
                           "ValidationError")


def _check_ssl_file(inputs, input_name, kind, log):
    """validations.py `_check_ssl_file` (281-303): the file exists, and `openssl rsa -in <key>
    -check -noout` (a key: RSA only, and no passphrase is given: an encrypted key fails) or
    `openssl x509 -in <cert> -noout` succeeds; its message ends with a space (its empty `{3}`)."""
    filename = inputs.get(input_name) or ""
    if not os.path.isfile(filename):
        raise InstallError(f"{kind} file {filename} (input name: {input_name}) does not exist",
                           "ValidationError")
    argv = ["openssl", "rsa", "-in", filename, "-check", "-noout"] if kind == "Key" else \
        ["openssl", "x509", "-in", filename, "-noout"]
    if _sudo(argv, log).returncode != 0:
        raise InstallError(f"{kind} file {filename} (input name: {input_name}) is invalid ",
                           "ValidationError")


def _check_key_and_cert(inputs, prefix, log):
    """validations.py `_check_key_and_cert` (306-339): both or neither; each file checked; the
    key's modulus equal to the certificate's."""
    cert_input, key_input = f"{prefix}_cert_path", f"{prefix}_key_path"
    cert, key = inputs.get(cert_input), inputs.get(key_input)
    if not cert and not key:
        return
    if not (cert and key):
        raise InstallError(f"Either both {cert_input} and {key_input} must be provided, or "
                           "neither.", "ValidationError")
    _check_ssl_file(inputs, key_input, "Key", log)
    _check_ssl_file(inputs, cert_input, "Cert", log)
    moduli = []
    for argv in (["openssl", "rsa", "-noout", "-modulus", "-in", key],
                 ["openssl", "x509", "-noout", "-modulus", "-in", cert]):
        proc = _sudo(argv, log)
        if proc.returncode:  # common.sudo without ignore_failures
            raise InstallError(_failed(["sudo", *argv], proc.stderr), "ProcessExecutionError")
        moduli.append(proc.stdout.strip())
    if moduli[0] != moduli[1]:
        raise InstallError(f"Key {key} ({key_input}) does not match the cert {cert} "
                           f"({cert_input})", "ValidationError")


def _sudo(argv, log):
    """4.6's common.sudo (utils/common.py 31-68): `Running: [...]` logged at DEBUG, the list
    with 'sudo' first, as Python 2 prints it (the file handler takes DEBUG: cfy_manager.log gets
    every argument, passwords included); then the command, without a terminal (an encrypted key
    cannot ask for its passphrase). The lab runs as root: no sudo binary is needed."""
    log("utils", f"Running: {['sudo', *argv]!r}", level="DEBUG")
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, check=False, start_new_session=True)


def _failed(argv, stderr):
    """4.6's ProcessExecutionError text (utils/common.py 54-57): the command joined, arguments
    and all."""
    return f"Failed running command: {' '.join(argv)} ({stderr})."


def _py2_str(value):
    """4.6 (Python 2) formats config values into byte strings ('...'.format(...)): a non-ASCII
    one, which its YAML loader (ruamel) hands over as unicode, raises UnicodeEncodeError there,
    with Python 2's text for it."""
    try:
        return str(value).encode("ascii").decode()
    except UnicodeEncodeError as exc:
        if exc.end - exc.start == 1:
            what = f"character u{ascii(exc.object[exc.start])}"
            where = f"position {exc.start}"
        else:
            what, where = "characters", f"position {exc.start}-{exc.end - 1}"
        raise InstallError(f"'ascii' codec can't encode {what} in {where}: ordinal not in "
                           "range(128)", "UnicodeEncodeError") from None


# ---- 4.6's prerequisite packages -------------------------------------------------------------
# components/components_dependencies.py: each component needs 'default' and its own; checked
# by base_component.py validate_dependencies (`rpm -q <name>`), in validations.py validate()
# BEFORE the skip_validations test: skipping validations skips none of this
DEPENDENCY_REASONS = {
    "sudo": "necessary to run commands with root privileges",
    "openssl-1.0.2k": "necessary for creating certificates",
    "logrotate": "used in Cloudify logs",
    "systemd-sysv": "required to create Cloudify services",
    "initscripts": "required by the RabbitMQ server",
    "sed": "required by the CLI",
    "tar": "required to untar packages",
    "yum": "used to install Cloudify's required packages",
    "python-setuptools": "required by python",
    "python-backports": "required by python",
    "python-backports-ssl_match_hostname": "required by python",
    "openssh-server": "required by the sanity check",
}
DEFAULT_DEPENDENCIES = ["sudo", "logrotate", "yum", "python-setuptools", "python-backports",
                        "python-backports-ssl_match_hostname"]
# service_components.py SERVICE_COMPONENTS, in service_names.py SERVICE_INSTALLATION_ORDER, as
# (component class, its own dependencies)
SERVICE_COMPONENTS = {
    "database_service": [("PostgresqlServerComponent", ["systemd-sysv"])],
    "queue_service": [],
    "composer_service": [],
    "manager_service": [
        ("ManagerComponent", []), ("ManagerIpSetterComponent", ["systemd-sysv"]),
        ("NginxComponent", ["systemd-sysv", "openssl-1.0.2k"]), ("PythonComponent", []),
        ("PostgresqlClientComponent", []), ("RabbitMQComponent", ["initscripts", "systemd-sysv"]),
        ("RestServiceComponent", ["systemd-sysv"]), ("InfluxDBComponent", ["systemd-sysv"]),
        ("AmqpInfluxComponent", ["systemd-sysv"]), ("JavaComponent", []),
        ("AmqpPostgresComponent", ["systemd-sysv"]), ("StageComponent", ["systemd-sysv"]),
        ("ComposerComponent", ["systemd-sysv", "tar"]), ("MgmtWorkerComponent", ["systemd-sysv"]),
        ("RiemannComponent", ["systemd-sysv"]), ("ClusterComponent", []),
        ("CliComponent", ["sed"]), ("UsageCollectorComponent", []),
        ("SanityComponent", ["openssh-server"]),
    ],
}
SERVICE_ORDER = ["database_service", "queue_service", "composer_service", "manager_service"]
# The lab's translation of 4.6's `rpm -q <rpm>` on its Debian hosts: `dpkg-query` of the Debian
# package that stands in for it (the formula's defaults.yaml installs the same ones on Debian)
RPM_ON_DEBIAN = {
    "sudo": "sudo", "logrotate": "logrotate", "yum": "apt", "python-setuptools":
    "python3-setuptools", "python-backports": "python3", "python-backports-ssl_match_hostname":
    "python3", "systemd-sysv": "init-system-helpers", "openssl-1.0.2k": "openssl",
    "initscripts": "sysvinit-utils", "sed": "sed", "tar": "tar",
    "openssh-server": "openssh-server",
}


def _package_installed(rpm, cache):
    deb = RPM_ON_DEBIAN[rpm]
    if deb not in cache:
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", deb], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, check=False)
        cache[deb] = proc.returncode == 0 and proc.stdout.strip() == "install ok installed"
    return cache[deb]


def _check_dependencies(config, log):
    """validations.py `_validate_dependencies` over the components of services_to_install: the
    first component with a missing package raises 4.6's message."""
    log("validations", "Validating dependencies...")
    cache = {}
    for service in (s for s in SERVICE_ORDER if s in config["services_to_install"]):
        for component, own in SERVICE_COMPONENTS[service]:
            missing = [dep for dep in DEFAULT_DEPENDENCIES + own
                       if not _package_installed(dep, cache)]
            if missing:
                reasons = "\n".join(f"`{dep}` - {DEPENDENCY_REASONS[dep]}" for dep in missing)
                raise InstallError(
                    f"Prerequisite packages for {component} missing: \n{reasons}.\n Please "
                    "ensure these packages are installed and try again.\n Possible solution is "
                    f"to run - sudo yum install {' '.join(missing)}", "ValidationError")


def _handle_certs(config, log):
    """4.6's nginx step on a clean install (nginx.py _handle_certs): /etc/cloudify/ssl made anew,
    then the external (REST) certificate: the user's pair when both files exist, else one
    generated for the public IP (CN) with the public and private IPs, 127.0.0.1 and localhost as
    SANs (certificates.py _format_ips), signed by external_ca_cert_path/key when given, else
    self-signed. Whatever manager.security.ssl_enabled says."""
    shutil.rmtree(ETC / "ssl", ignore_errors=True)
    (ETC / "ssl").mkdir(parents=True)
    inputs, manager = config["ssl_inputs"], config["manager"]
    _deploy_ca(inputs, log)
    cert, key = inputs.get("external_cert_path") or "", inputs.get("external_key_path") or ""
    log("nginx", "Handling external certificate...")
    if os.path.isfile(cert) and os.path.isfile(key):
        shutil.copy(cert, EXTERNAL_CERT)
        shutil.copy(key, EXTERNAL_KEY)
        log("nginx", "Deployed user provided external cert and key")
        return
    log("nginx", "Generating external certificate...")
    ips = list(dict.fromkeys([manager["public_ip"], manager["private_ip"], "127.0.0.1"]))
    sans = ",".join([f"IP:{ip}" for ip in ips] + ["DNS:localhost"])
    subject = ["-subj", f"/CN={manager['public_ip']}"]
    sign_cert, sign_key = inputs.get("external_ca_cert_path"), inputs.get("external_ca_key_path")
    common = ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(EXTERNAL_KEY)]
    if sign_cert and sign_key:
        csr = ETC / "ssl" / "cloudify_external.csr"
        ext = ETC / "ssl" / "cloudify_external.ext"
        ext.write_text(f"subjectAltName={sans}\n")
        _openssl(*common, "-out", str(csr), *subject)
        _openssl("openssl", "x509", "-req", "-in", str(csr), "-CA", sign_cert, "-CAkey", sign_key,
                 "-CAcreateserial", "-days", "3650", "-extfile", str(ext),
                 "-out", str(EXTERNAL_CERT))
        csr.unlink()
        ext.unlink()
    else:
        _openssl(*common, "-x509", "-days", "3650", "-addext", f"subjectAltName={sans}",
                 "-out", str(EXTERNAL_CERT), *subject)


def _deploy_ca(inputs, log):
    """4.6's nginx step begins with the internal CA (nginx.py _handle_ca_cert,
    _deploy_cert_and_key): the user's ca_cert_path/ca_key_path copied into /etc/cloudify/ssl,
    where a snapshot takes them from (snapshots/utils.py: the whole directory). Not emulated:
    the CA 4.6 generates when none is given."""
    log("nginx", "Handling CA certificate...")
    for key, name in (("ca_cert_path", "cloudify_internal_ca_cert.pem"),
                      ("ca_key_path", "cloudify_internal_ca_key.pem")):
        if os.path.isfile(inputs.get(key) or ""):
            shutil.copy(inputs[key], ETC / "ssl" / name)


def _openssl(*argv):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False)
    if proc.returncode:
        raise InstallError(f"Command '{' '.join(argv[:3])} ...' failed: {proc.stdout.strip()[-300:]}",
                           "ProcessExecutionError")


def _copy_client_certificate(config):
    """4.6's postgresql_client._configure_ssl: with ssl_enabled it copies the client certificate
    and key unconditionally (`sudo cp -rp <path> /etc/cloudify/ssl/postgresql.crt`), so an empty
    or missing path fails the install here (cloudify-4.6.md section 0.2)."""
    if not config["postgresql_client"].get("ssl_enabled"):
        return
    inputs = config["ssl_inputs"]
    (ETC / "ssl").mkdir(parents=True, exist_ok=True)
    for key, dest in (("postgresql_client_cert_path", "postgresql.crt"),
                      ("postgresql_client_key_path", "postgresql.key")):
        path = inputs.get(key) or ""
        if not os.path.isfile(path):
            raise InstallError(f"Command 'cp -rp {path!r} {ETC / 'ssl' / dest}' failed: cp: "
                               f"cannot stat {path!r}: No such file or directory",
                               "ProcessExecutionError")
        shutil.copy(path, ETC / "ssl" / dest)


# ---- the database, as 4.6 creates and reaches it ----------------------------------------------
# 4.6 runs as root with postgres' home at /var/lib/pgsql (CentOS); the lab's hosts have
# Debian's postgres user, whose home is /var/lib/postgresql: the same file, as libpq reads it
PG_PORT = 5432
CREATE_DB_SCRIPT = Path(__file__).with_name("create_default_db.sh")


def _write_pgpass(path, line, owner):
    """postgresql_client.py `_create_pgpass`: the line written raw, then chmod 400 and chown."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(line)
    os.replace(tmp, path)
    os.chmod(path, 0o400)
    os.chown(path, owner.pw_uid, owner.pw_gid)


def _create_pgpass_files(config):
    """postgresql_client.py `_create_postgres_pgpass_files` (its _configure step, before the
    client certificate): the postgres user's ~/.pgpass with postgres_password for database
    `postgres`, the cloudify user's /etc/cloudify/.pgpass (`*`) with the password, each
    `host:port:db:user:password` as it is: libpq ends a password at an unescaped ':' and drops
    each '\\', so such a password reaches the server changed."""
    client = config["postgresql_client"]
    host = _py2_str(client["host"])
    postgres = pwd.getpwnam("postgres")
    if client.get("postgres_password"):
        _write_pgpass(Path(postgres.pw_dir) / ".pgpass",
                      f"{host}:{PG_PORT}:postgres:postgres:{_py2_str(client['postgres_password'])}",
                      postgres)
    # the lab has no cloudify user: the file is root's
    _write_pgpass(ETC / ".pgpass",
                  f"{host}:{PG_PORT}:*:{_py2_str(client['username'])}:"
                  f"{_py2_str(client['password'])}", pwd.getpwuid(0))


def _prepare_db(config, log):
    """restservice/db.py `prepare_db` on a first install: a copy of create_default_db.sh in a
    temporary file (chmod o+rx), run as `su - postgres -c "<script> <db> <user> <password>
    <host>"`: the string split by shlex, then run by postgres' login shell (bash), which expands
    every argument, then the script splices the password into `CREATE USER ... WITH PASSWORD
    '<password>'` and connects with ~postgres/.pgpass. A password one of them mangles creates
    the database with another password, or fails the install; the `Running:` line, password
    included, goes to cfy_manager.log."""
    client = config["postgresql_client"]
    log("db", "Configuring SQL DB...", level="NOTICE")
    fd, script = tempfile.mkstemp()
    with os.fdopen(fd, "w") as fh:
        fh.write(CREATE_DB_SCRIPT.read_text())
    try:
        _sudo(["chmod", "o+rx", script], log)
        command = 'su - postgres -c "{cmd} {db} {user} {password} {host}"'.format(
            cmd=script, db=_py2_str(client["db_name"]), user=_py2_str(client["username"]),
            password=_py2_str(client["password"]), host=_py2_str(client["host"]))
        argv = shlex.split(command)
        proc = _sudo(argv, log)
        if proc.returncode:
            raise InstallError(_failed(["sudo", *argv], proc.stderr), "ProcessExecutionError")
    finally:
        os.unlink(script)
    log("db", "SQL DB successfully configured", level="NOTICE")


def _populate_db(config, log):
    """restservice/db.py `populate_db`: create_tables_and_add_defaults.py, run by common.sudo,
    connects the way the REST service does (its SQLAlchemy URI: common.py `rest_db_uri`); a
    password that URI reads otherwise than the one the database was given fails here, with
    4.6's ProcessExecutionError (the script's own traceback in its place)."""
    log("db", "Populating DB and creating AMQP resources...", level="NOTICE")
    security = config["manager"]["security"]
    try:
        create_schema(config, security["admin_username"], security["admin_password"])
    except Exception as exc:  # pylint: disable=broad-except
        raise InstallError(_failed(["sudo", "-E", "/opt/manager/env/bin/python",
                                    "create_tables_and_add_defaults.py", "<args file>"],
                                   f"{type(exc).__name__}: {exc}"),
                           "ProcessExecutionError") from None
    log("db", "DB populated and AMQP resources successfully created", level="NOTICE")


def _check_database(config, log):
    """A joiner skips DB creation but proves it can reach the cluster's database as postgres,
    as database creation does (psql with ~postgres/.pgpass, libpq's defaults)."""
    client = config["postgresql_client"]
    home = pwd.getpwnam("postgres").pw_dir
    proc = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-h", str(client["host"]).partition(":")[0],
         "-d", "postgres", "-XAtq", "-v", "ON_ERROR_STOP=1", "-v", f"db={client['db_name']}"],
        input="SELECT 1 FROM pg_database WHERE datname = :'db'\n", stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, check=False, timeout=60,
        env={"HOME": home, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PGCONNECT_TIMEOUT": "10"})
    if proc.returncode:
        raise InstallError(f"Could not connect to the database at {client['host']}: "
                           f"{' '.join(proc.stderr.split())[-300:]}", "ProcessExecutionError")
    if proc.stdout.strip() != "1":
        raise InstallError(f"Database {client['db_name']} does not exist on {client['host']}: "
                           "the cluster's first manager creates it", "ValidationError")
    log("postgresql_client", "Joining node: skipping database creation")


def _join(config, log):
    master = config["cluster"]["master_ip"]
    security = config["manager"]["security"]
    node_name = config["cluster"].get("node_name") or socket.gethostname()
    host_ip = config["cluster"].get("host_ip") or config["manager"]["private_ip"]
    database_ip = str(config["postgresql_client"]["host"]).partition(":")[0]
    auth = {"username": security["admin_username"], "password": security["admin_password"],
            "tenant": DEFAULT_TENANT}
    log("cluster", f"Master ip found, joining to cluster with {master} as master")
    base = f"http://{master}:{PORTS['rest']}/api/v3.1"  # 4.6 hard-codes http and port 80
    try:
        status, body = call("GET", f"{base}/cluster/nodes", timeout=10, **auth)
    except NetworkFailure as exc:
        raise InstallError(f"Could not connect to the cluster master at {master}: {exc}",
                           "NetworkError") from None
    if status == 401:
        log("cluster", f"GET /cluster/nodes answered 401: {body}", console=False, level="ERROR")
        raise InstallError("Could not authenticate against the cluster master: Master and "
                           "replica nodes must have the same admin password", "NetworkError")
    if status != 200:
        log("cluster", f"GET /cluster/nodes answered {status}: {body}", console=False, level="ERROR")
        raise InstallError(f"REST service returned an unexpected response: {status}", "NetworkError")
    members = {n["name"]: {"host_ip": n["host_ip"], "public_ip": n.get("public_ip"),
                           "database_ip": n.get("database_ip"), "credentials": n.get("credentials"),
                           "required": n.get("required", {}), "initialized": n.get("initialized")}
               for n in body.get("items", [])}
    log("cluster", f'Adding cluster node "{node_name}" to the cluster')
    try:
        status, node = call("PUT", f"{base}/cluster/nodes/{node_name}", timeout=30,
                            body={"host_ip": host_ip, "node_name": node_name,
                                  "database_ip": database_ip}, **auth)
    except NetworkFailure as exc:
        raise InstallError(f"Could not connect to the cluster master at {master}: {exc}",
                           "NetworkError") from None
    if status != 200:
        # 4.6 hides the server's reason on the console; it is only in the log
        log("cluster", f"PUT /cluster/nodes/{node_name} answered {status}: {node}",
            console=False, level="ERROR")
        raise InstallError(f"REST service returned an unexpected response: {status}", "NetworkError")
    if knobs().get("fail_at") == CREATE_CLUSTER_NODE:
        # 4.6 runs create_cluster_node (consul and syncthing, locally) after the PUT: a failure
        # there leaves the leader's record of this node, never initialized (cluster.py
        # _join_to_cluster; common.run's message)
        log("cluster", f"{CREATE_CLUSTER_NODE} failed: the lab's knob fail_at="
            f"{CREATE_CLUSTER_NODE} made this step fail", console=False, level="ERROR")
        raise InstallError(f"Failed running command: sudo {CREATE_CLUSTER_NODE_BIN} --config "
                           f"/tmp/tmp{os.urandom(3).hex()} (simulated failure (lab knob fail_at="
                           f"{CREATE_CLUSTER_NODE})).", "ProcessExecutionError")
    try:
        call("GET", f"http://{master}:{PORTS['consul']}/v1/status/leader", timeout=5)
    except NetworkFailure as exc:
        raise InstallError(f"Could not reach the cluster's consul at {master}:{PORTS['consul']}: "
                           f"{exc}", "ClusterError") from None
    members[node_name] = {"host_ip": host_ip, "public_ip": config["manager"]["public_ip"],
                          "database_ip": database_ip, "credentials": node["credentials"],
                          "required": node.get("required", {}), "initialized": False}
    state = {"node_name": node_name, "host_ip": host_ip, "credentials": node["credentials"],
             "term": 0, "voted_for": None, "members_version": 0, "members": members,
             "removed_credentials": []}
    clustermod.save_state(state)
    if not _restart_services():
        raise InstallError("The manager's services did not start", "ProcessExecutionError")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            status = clustermod.control_call({"type": "status"})
            if (status.get("leader") and status.get("leader") != node_name
                    and (status.get("leader_contact_age") or 99) < 3):
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    else:
        raise InstallError(f"Node {node_name} did not join the cluster within 60 seconds: the "
                           f"cluster at {master} was not reachable on ports "
                           f"{PORTS['rpc']}/{PORTS['gossip']}", "ClusterError")
    clustermod.write_cluster_marker(clustermod.load_state())
    log("cluster", "Node has been added to the cluster successfully!")


def _verify_restservice(config, log):
    """4.6's restservice step checks the REST service with the admin credentials it was given:
    a joiner's service runs on the cluster's database, whose admin user is the leader's."""
    security = config["manager"]["security"]
    log("restservice", "Verifying Rest service is working as expected...")
    try:
        status, _ = call("GET", f"http://127.0.0.1:{PORTS['rest']}/api/v3.1/status", timeout=10,
                         username=security["admin_username"],
                         password=security["admin_password"])
    except NetworkFailure as exc:
        raise InstallError(f"Could not connect to the REST service: {exc}", "NetworkError") from None
    if status == 401:
        raise InstallError("Could not connect to the REST service: 401 unauthorized. Possible "
                           "access control misconfiguration,Master and replica nodes must have "
                           "the same admin password", "NetworkError")


def _restart_services():
    service.stop()
    return service.start()


def _start_nginx(log):
    """4.6's nginx step ends with `systemctl enable nginx` and a restart (nginx.py
    _start_and_verify_service), before postgresql_client, rabbitmq and restservice: from here on
    port 80 answers, 502 with nothing behind it, and at every boot (BOOT_SCRIPT, the lab's
    enabled units)."""
    BOOT_SCRIPT.parent.mkdir(parents=True, exist_ok=True)
    BOOT_SCRIPT.write_text("#!/bin/sh\n# lab: what systemd's enabled cloudify units do at boot\n"
                           f"exec {PACKAGE_LIB.parent}/bin/cloudify-services \"$@\"\n")
    os.chmod(BOOT_SCRIPT, 0o755)
    log("nginx", "Starting NGINX service...")
    if not _restart_services():
        raise InstallError("NGINX did not start", "ProcessExecutionError")


CLI_HOME = Path("/opt/cfy")


def _cfy(*argv):
    """The real cfy 4.6, as 4.6's installer runs it (cli.py `_configure`: common.run of
    ['cfy', ...], no shell); a failure is common.run's ProcessExecutionError, which names the
    whole command, `-p <password>` included (utils/common.py 54-57), and which 4.6 logs at
    ERROR: cli.py raised the file handler to ERROR around these commands, so it reaches
    cfy_manager.log."""
    env = dict(os.environ, CFYEMU_CALLER="cfy_manager", HOME=os.path.expanduser("~root"))
    proc = subprocess.run([str(CFY_BIN), *argv], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode:
        raise InstallError(_failed(["cfy", *argv], proc.stderr), "ProcessExecutionError")


def _install_cli(config, log):
    """The cli component: the CLI package under /opt/cfy (4.6 yum-installs its cloudify-cli RPM),
    then 4.6's own profile setup: `cfy profiles use <name> --skip-credentials-validation` and
    `cfy profiles set -u <admin> -p <password> -t default_tenant -c <cert> --ssl on|off`,
    password on argv and all, so cli.log gets what 4.6 writes (cloudify-4.6.md section 0.1)."""
    shutil.rmtree(CLI_HOME, ignore_errors=True)
    shutil.copytree(PACKAGE_LIB.parent / "cli", CLI_HOME, symlinks=True)
    for path in (CLI_HOME / "bin" / "cfy", CFY_BIN):
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PACKAGE_LIB.parent / "bin" / "cfy", path)
        os.chmod(path, 0o755)
    security = config["manager"]["security"]
    # a joiner's profile is named after, and points at, the leader (cli.py _configure): its cli
    # step comes after the cluster step, when this node is a replica that cannot check them
    name = (config["cluster"].get("master_ip")
            or config["manager"].get("cli_local_profile_host_name") or "localhost")
    log("cli", "Setting CLI for the current user (root)...")
    _cfy("profiles", "use", name, "--skip-credentials-validation")
    # 4.6 cli.py _configure: -c is always the external certificate the nginx step deployed
    _cfy("profiles", "set", "-u", security["admin_username"], "-p", security["admin_password"],
         "-t", DEFAULT_TENANT, "-c", str(EXTERNAL_CERT),
         "--ssl", "on" if security.get("ssl_enabled") else "off")
    log("cli", "Cloudify CLI successfully configured")


def install(args, log):
    check_flags(args)
    if INSTALL_MARKER.exists() and not args.clean_db:
        raise InstallError("Cloudify Manager is already installed on this machine; remove it "
                           "with 'cfy_manager remove -f' or reinstall with --clean-db (which "
                           "drops the database)")
    config = effective_config(args)
    joining = bool(config["cluster"].get("master_ip"))
    log("main", "Installing desired components...", level="NOTICE")
    validate(config, joining, log)
    if not config["manager"]["security"].get("admin_password"):
        config["manager"]["security"]["admin_password"] = os.urandom(9).hex()
    # 4.6's set_globals: print_password_to_screen, on the console only, generated or given;
    # it raises the file handler's level to ERROR, formats the line ('Admin password:
    # {0}'.format(password): a non-ASCII password stops the install here, before any component)
    # and puts the level back, which an exception skips: the error line reaches the file
    admin_password = _py2_str(config["manager"]["security"]["admin_password"])
    log("globals", f"Admin password: {admin_password}", level="WARNING", file=False)
    knob = knobs()
    delay = float(knob.get("install_seconds", 0)) / len(COMPONENTS)
    log("main", f"Installing Cloudify Manager {VERSION} on {config['manager']['private_ip']}")
    for component in COMPONENTS:
        if component == "cluster" and not joining:
            continue
        log(component, f"Installing {component}...")
        if delay:
            time.sleep(delay)
        if knob.get("fail_at") == component:
            log(component, f"Failed to install {component}: the lab's knob fail_at={component} "
                "made this step fail", console=False, level="ERROR")
            raise InstallError(f"Failed to install {component}: simulated failure (lab knob "
                               f"fail_at={component}); see {INSTALL_LOG}", "ProcessExecutionError")
        if component == "manager":
            for path in (OPT, RESOURCES, ETC / "ssl"):
                path.mkdir(parents=True, exist_ok=True)
        elif component == "nginx":
            _handle_certs(config, log)
            _start_nginx(log)
        elif component == "postgresql_client":
            _create_pgpass_files(config)
            _copy_client_certificate(config)
            if joining:
                _check_database(config, log)
        elif component == "restservice":
            for rel in RPM_PAYLOAD:  # the RPMs install before the REST service starts
                (RESOURCES / rel).parent.mkdir(parents=True, exist_ok=True)
                (RESOURCES / rel).write_bytes(f"lab stand-in for {rel}\n".encode())
            write_config_in_place(_user_view(config))
            deploy_security_config()
            if not joining:  # 4.6's restservice _configure_db: create_default_db.sh, then schema
                _prepare_db(config, log)
                _populate_db(config, log)
            service.REST_CONFIG.write_text("# lab: the REST service is configured\n")
            if not _restart_services():
                raise InstallError("The manager's REST service did not start",
                                   "ProcessExecutionError")
            _verify_restservice(config, log)
        elif component == "cli":
            _install_cli(config, log)
        elif component == "cluster":
            _join(config, log)
        log(component, f"{component} installed successfully", console=False)
    INSTALL_MARKER.write_text("")
    final = _user_view(config)
    final["postgresql_client"]["postgres_password"] = "<removed>"
    write_config_in_place(final)
    log("main", "Installation finished successfully!", level="NOTICE")
    scheme = "https" if config["manager"]["security"].get("ssl_enabled") else "http"
    log("main", f"Manager is up at {scheme}://{config['manager']['public_ip']}", level="NOTICE")
    log("globals", f"Admin password: {admin_password}", level="WARNING", file=False)


def _user_view(config):
    """What the installer writes back: the user's keys with the effective values."""
    user = read_user_config()
    out = merge(user, {})
    for section in ("manager", "postgresql_client", "ssl_inputs", "cluster"):
        out[section] = merge(out.get(section, {}), config[section])
    out.setdefault("services_to_install", config["services_to_install"])
    return out


# ---- remove / services -----------------------------------------------------------------------
def remove(args, log):
    if not args.force:
        raise InstallError("This action requires additional confirmation. Add the '-f' or "
                           "'--force' flags to your command if you are certain this command "
                           "should be executed.")
    log("main", "Removing Cloudify Manager...")
    service.stop()
    for path in (BOOT_SCRIPT, CFY_BIN, INSTALL_MARKER, CLUSTER_MARKER):
        path.unlink(missing_ok=True)
    shutil.rmtree(OPT, ignore_errors=True)
    shutil.rmtree(ETC / "ssl", ignore_errors=True)
    shutil.rmtree(CLI_HOME, ignore_errors=True)
    shutil.rmtree(Path(os.path.expanduser("~root")) / ".cloudify", ignore_errors=True)
    log("main", "Cloudify Manager successfully removed!")


def services(args, log):
    if CLUSTER_MARKER.exists():
        raise InstallError(f"This manager is part of a Cloudify Manager cluster: "
                           f"'cfy_manager {args.command}' is not supported on cluster members; "
                           "use systemctl to control its services")
    if not INSTALL_MARKER.exists():
        raise InstallError("Cloudify Manager is not installed")
    if args.command in ("stop", "restart"):
        service.stop()
        log("main", "Cloudify Manager services stopped")
    if args.command in ("start", "restart", "configure"):
        if not service.start():
            raise InstallError("The manager's services did not start", "ProcessExecutionError")
        log("main", "Cloudify Manager services started")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), "")
    record = AuditedCommand("cfy_manager", argv, command in MUTATING)
    code = 1
    try:
        args = parse(argv)
        log = Logger()
        {"install": install, "remove": remove}.get(args.command, services)(args, log)
        code = 0
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 1
    except InstallError as err:  # 4.6's sys.excepthook: logger.error('<Type>: <message>')
        try:
            Logger()("main", err.render(), level="ERROR")
        except OSError:
            print(err.render(), flush=True)
        code = 1
    finally:
        record.finish(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
