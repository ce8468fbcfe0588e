"""What every part of the emulated Cloudify 4.6 manager shares: paths, config, audit, knobs, REST
errors, database access. Runs inside a lab host; imports only the stdlib, PyYAML and pg8000."""

import base64
import copy
import json
import os
import re
import ssl
import sys
import time
import urllib.parse
from pathlib import Path

import yaml

VERSION = "4.6"
ETC = Path("/etc/cloudify")
CONFIG = ETC / "config.yaml"
INSTALL_MARKER = ETC / ".install"
CLUSTER_MARKER = ETC / "cluster"
LOG_DIR = Path("/var/log/cloudify")
INSTALL_LOG = LOG_DIR / "manager" / "cfy_manager.log"
SERVICE_LOG = LOG_DIR / "rest" / "cloudify-rest-service.log"
OPT = Path("/opt/manager")
RESOURCES = OPT / "resources"
# what a user puts on a manager: the file server folders of 4.6's rest-service
# (manager_rest/constants.py FILE_SERVER_*_FOLDER); the RPMs' own files live beside them
USER_DATA_DIRS = ("blueprints", "uploaded-blueprints", "deployments", "snapshots", "plugins",
                  "tenant-resources", "global-resources")
# what the cloudify-agents RPM puts there at the restservice step (its spec's _agents_dir is
# /opt/manager/resources/packages/agents), before any join: not user data
RPM_PAYLOAD = ("packages/agents/centos-core-agent.tar.gz", "packages/agents/redhat-maipo-agent.tar.gz")
CLUSTER_STATE = OPT / "cluster.json"
# where 4.6's nginx step puts the REST (external) certificate (constants.py EXTERNAL_CERT_PATH)
EXTERNAL_CERT = ETC / "ssl" / "cloudify_external_cert.pem"
EXTERNAL_KEY = ETC / "ssl" / "cloudify_external_key.pem"
SERVICE_STATE = OPT / "service.json"
RUN_DIR = Path("/run/cloudify")
PIDFILE = RUN_DIR / "manager.pid"
BOOT_SCRIPT = Path("/etc/lab/boot.d/cloudify-manager")
CFY_BIN = Path("/usr/bin/cfy")
PACKAGE_LIB = Path("/opt/cloudify-manager-install/lib")
# lab-only files: not part of Cloudify, outside every path the formula manages
AUDIT = Path("/var/log/cloudify-lab/audit.jsonl")
KNOBS = Path("/var/lib/cloudify-lab/knobs.json")
PACKAGE_KNOBS = PACKAGE_LIB / "lab-knobs.json"  # what the lab built its package with

PORTS = {"rest": 80, "rest_ssl": 443, "rpc": 8300, "gossip": 8301, "consul": 8500, "sync": 22000}
DEFAULT_TENANT = "default_tenant"

# config.yaml defaults of the 4.6 installer (the keys this emulator reads)
DEFAULT_CONFIG = {
    "manager": {
        "private_ip": "",
        "public_ip": "",
        "hostname": "",
        "cli_local_profile_host_name": "localhost",
        "security": {"ssl_enabled": False, "admin_username": "admin", "admin_password": ""},
    },
    "postgresql_client": {
        "host": "localhost",
        "db_name": "cloudify_db",
        "username": "cloudify",
        "password": "cloudify",
        "postgres_password": "",
        "ssl_enabled": False,
    },
    "ssl_inputs": {
        "external_cert_path": "",
        "external_key_path": "",
        "external_ca_cert_path": "",
        "external_ca_key_path": "",
        "ca_cert_path": "",
        "ca_key_path": "",
        "internal_cert_path": "",
        "internal_key_path": "",
        "postgresql_client_cert_path": "",
        "postgresql_client_key_path": "",
    },
    "cluster": {"master_ip": "", "node_name": "", "host_ip": ""},
    # 4.6's config.yaml `validations` section, its defaults
    "validations": {"skip_validations": False,
                    "minimum_required_total_physical_memory_in_mb": 3700,
                    "minimum_required_available_disk_space_in_gb": 5,
                    "expected_python_version": "2.7",
                    "supported_distros": ["centos", "redhat"],
                    "supported_distro_versions": ["7"]},
    "services_to_install": ["database_service", "queue_service", "composer_service",
                            "manager_service"],
}


# ---- config ------------------------------------------------------------------------------
def merge(base, override):
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_user_config():
    if not CONFIG.exists():
        return {}
    data = yaml.safe_load(CONFIG.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{CONFIG} must hold a YAML mapping")
    return data


def load_config():
    return merge(DEFAULT_CONFIG, read_user_config())


def write_config_in_place(config):
    """Rewrite config.yaml as the 4.6 installer does: open(..., 'w') keeps the file's mode."""
    CONFIG.parent.mkdir(parents=True, exist_ok=True)
    with open(CONFIG, "w", encoding="utf-8") as fh:
        yaml.safe_dump(config, fh, default_flow_style=False)


def is_external_db(config):
    return config["postgresql_client"]["host"] not in ("localhost", "127.0.0.1", "")


def secrets_of(config=None):
    """Every secret this host knows: to mask them and to tell when one reached argv."""
    found = set()
    if config is None:
        try:
            config = load_config()
        except Exception:  # pylint: disable=broad-except
            config = DEFAULT_CONFIG
    for value in (config["manager"]["security"].get("admin_password"),
                  config["postgresql_client"].get("password"),
                  config["postgresql_client"].get("postgres_password"),
                  os.environ.get("CLOUDIFY_PASSWORD")):
        if value and value not in ("<removed>", "cloudify"):
            found.add(str(value))
    return found


# ---- lab knobs and audit (lab-only) ------------------------------------------------------
def knobs():
    """The host's knobs over the lab package's defaults (PACKAGE_KNOBS), over 4.6's behaviour."""
    merged = {}
    for path in (PACKAGE_KNOBS, KNOBS):
        try:
            merged.update(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    return merged


def audit(entry):
    """Append one JSON line to the lab's audit (one write: whole lines even when concurrent)."""
    entry = dict(entry, host=os.uname().nodename)
    AUDIT.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(AUDIT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
    finally:
        os.close(fd)


SECRET_FLAGS = {"-a", "--admin-password", "--postgres-password", "-p", "--manager-password",
                "--password"}


def mask_argv(argv, known_secrets):
    """(masked argv, whether any secret was on it): secret flags' values and known secrets."""
    masked, leaked, hide_next = [], False, False
    for arg in argv:
        if hide_next:
            masked.append("******")
            leaked, hide_next = True, False
            continue
        name, eq, value = arg.partition("=")
        if name in SECRET_FLAGS and eq:
            masked.append(f"{name}=******")
            leaked = True
        elif arg in SECRET_FLAGS:
            masked.append(arg)
            hide_next = True
        elif any(s and s in arg for s in known_secrets):
            out = arg
            for s in known_secrets:
                out = out.replace(s, "******")
            masked.append(out)
            leaked = True
        else:
            masked.append(arg)
    return masked, leaked


class AuditedCommand:
    """Context manager recording one CLI invocation in the lab audit."""

    def __init__(self, prog, argv, mutating, caller=None):
        self.prog, self.argv, self.mutating = prog, list(argv), mutating
        self.caller = caller
        self.start = time.time()

    def finish(self, code):
        try:
            masked, leaked = mask_argv(self.argv, secrets_of())
        except Exception:  # pylint: disable=broad-except
            masked, leaked = ["<unreadable>"], False
        entry = {"kind": "cli", "prog": self.prog, "argv": masked, "secret_on_argv": leaked,
                 "mutating": self.mutating, "exit": code, "start": self.start, "end": time.time()}
        if self.caller:
            entry["caller"] = self.caller
        audit(entry)


# ---- REST errors and basic auth ----------------------------------------------------------
class RestError(Exception):
    """An error the REST service answers with: {"message", "error_code", "server_traceback"}."""

    def __init__(self, status, error_code, message, bare=False):
        super().__init__(message)
        self.status, self.error_code, self.message, self.bare = status, error_code, message, bare

    def body(self):
        return {"message": self.message, "error_code": self.error_code, "server_traceback": ""}


def basic_auth_header(username, password):
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return f"Basic {token}"


# ---- database ----------------------------------------------------------------------------
def db_ssl_context(config):
    """The cloudify user's connections (REST service, stage, composer): verify-full against
    ssl_inputs.ca_cert_path with the client certificate (4.6's stage/composer URLs, the REST
    service's sslmode=verify-full). Database creation, as postgres, is psql's own (installer.py
    `_prepare_db`)."""
    inputs = config["ssl_inputs"]
    ctx = ssl.create_default_context(cafile=inputs.get("ca_cert_path") or None)
    if inputs.get("postgresql_client_cert_path"):
        ctx.load_cert_chain(inputs["postgresql_client_cert_path"],
                            inputs.get("postgresql_client_key_path") or None)
    return ctx


def rest_db_uri(config):
    """The REST service's database URI as 4.6 builds it (rest-service manager_rest/server.py
    `_set_sql_alchemy`: '{0}://{1}:{2}@{3}/{4}' with the user, password, host and database of
    cloudify-rest.conf, unescaped, then ?sslmode=verify-full&sslcert=...)."""
    client = config["postgresql_client"]
    return (f"postgresql://{client['username']}:{client['password']}@{client['host']}/"
            f"{client['db_name']}?sslmode=verify-full&sslcert={ETC}/ssl/postgresql.crt&"
            f"sslkey={ETC}/ssl/postgresql.key&sslrootcert={ETC}/ssl/cloudify_internal_ca_cert.pem")


# SQLAlchemy 1.2.18's (4.6 rest-service's pin) reading of a URL: sqlalchemy/engine/url.py
# `_parse_rfc1738_args`, whose password is `.*` up to the last '@' and then %-decoded
_RFC1738 = re.compile(r"""
    (?P<name>[\w\+]+)://
    (?:(?P<username>[^:/]*)(?::(?P<password>.*))?@)?
    (?:(?:\[(?P<ipv6host>[^/]+)\]|(?P<ipv4host>[^/:]+))?(?::(?P<port>[^/]*))?)?
    (?:/(?P<database>.*))?
    """, re.X)


def parse_db_uri(uri):
    """{username, password, host, port, database} as SQLAlchemy 1.2 reads ``uri``."""
    parts = _RFC1738.match(uri).groupdict()
    parts["database"] = (parts["database"] or "").split("?", 2)[0]
    for key in ("username", "password"):
        if parts[key] is not None:
            parts[key] = urllib.parse.unquote(parts[key])
    ipv4, ipv6 = parts.pop("ipv4host"), parts.pop("ipv6host")
    parts["host"] = ipv4 or ipv6
    return parts


def db_connect(config, database=None, timeout=5):
    """The cloudify user's pg8000 connection to the external database, SSL always, with the
    user and password SQLAlchemy reads from the REST service's URI (rest_db_uri): a password
    that URI mangles connects as 4.6's REST service would, i.e. not at all."""
    import pg8000.native  # pylint: disable=import-outside-toplevel

    uri = parse_db_uri(rest_db_uri(config))
    return pg8000.native.Connection(
        user=uri["username"], password=uri["password"], host=uri["host"],
        port=int(uri["port"] or 5432), database=database or uri["database"],
        ssl_context=db_ssl_context(config), timeout=timeout)


def eprint(*args):
    print(*args, file=sys.stderr, flush=True)
