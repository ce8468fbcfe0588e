"""cloudify_ha's pillar: its schema, its validation and the plan the orchestration follows.

Pure Python (no Salt imports): used by the execution module on minions, by the runner and the
orchestration on the master, and by unit tests directly. Every error names the pillar key and
the fix, so that a mistake is caught before any host is touched.
"""

import base64
import copy
import datetime
import difflib
import hashlib
import ipaddress
import json
import re
import shlex
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Mapping

import yaml

ROOT = "cloudify_ha:clusters"

CLUSTER_DEFAULTS = {
    "leader": None,
    "managers": [],
    "admin": {"username": "admin", "password": None, "tenant": "default_tenant"},
    "rest": {"ssl": False, "ca_cert": ""},
    "database": {
        "host": None,
        "port": 5432,
        "name": "cloudify_db",
        "username": "cloudify",
        "password": None,
        "postgres_password": None,
        "ca_cert": None,
        "ca_key": "",
        "client_cert": "",
        "client_key": "",
    },
    "installer": {"source": "", "source_hash": "", "cli_source": "", "cli_source_hash": "",
                  "version": ""},
    "allow_database_reset": False,
    "replace_stale": False,
    "remove_failed_joins": True,
    # every bounded wait of the formula against Cloudify, in seconds: WAITS says what each is
    "waits": {"active_node": 120, "cluster_start": 900, "started": 120, "online": 120,
              "boot": 300, "offline": 60, "install": 1800},
    # the sources are IPv4 (the managers' addresses are); empty rest_sources is every address,
    # which needs allow_wide_rest_sources (_validate_misc)
    "firewall": {"enabled": True, "backend": "auto", "rest_sources": [],
                 "allow_wide_rest_sources": False, "agent_sources": [],
                 "allow_wide_agent_sources": False, "firewalld_zone": ""},
    "cli_hosts": [],
    "loadbalancer": None,
    # the text of the cluster's Cloudify license file (4.6 premium: until one is uploaded the
    # REST service refuses blueprints, deployments, users, snapshots...); uploaded on the
    # active node once the cluster is started. Managers only
    "license": None,
    # off-cluster backups (cloudify_ha.orch.backup): BACKUP_DEFAULTS, _validate_backup
    "backup": None,
}
MANAGER_KEYS = {"name", "minion_id", "private_ip", "public_ip"}
# waits:<key>: (least, most, what the formula waits for) in seconds. 4.6's timing
# (cloudify-4.6.md sections 0.3, 0.4): a heartbeat every 15 s, a dead node offline after tens of
# seconds, a failover of tens of seconds (the new active node starts its services), a 502 from
# nginx after every boot while the REST service starts (no bound), `cfy cluster start`'s own
# --timeout default 900 s
WAITS = {
    "active_node": (0, 3600, "for a new active node while the managers answer only as replicas "
                             "or starting (4.6's failover: tens of seconds); 0 fails at once"),
    "cluster_start": (60, 86400, "for `cfy cluster start` (its --timeout; 4.6's default 900)"),
    "started": (1, 3600, "after `cfy cluster start`, for the cluster to show initialized with "
                         "this node active, through 4.6's restart of the REST service and nginx"),
    "online": (1, 3600, "after a join, for the node to be online in the active node's view "
                        "(4.6 heartbeats every 15 s)"),
    "boot": (1, 3600, "for a rebooted member's REST service (nginx answers 502 until then; 4.6 "
                      "sets no bound)"),
    "offline": (1, 3600, "for a wiped or rebuilt host's old entry to show offline (4.6: tens of "
                         "seconds)"),
    "install": (60, 86400, "for one `cfy_manager install`"),
}
# keys that moved: a pillar still using one is told where its value goes now
MOVED_KEYS = {"offline_wait": "waits:offline", "installer:install_timeout": "waits:install"}
LOADBALANCER_DEFAULTS = {
    "minion_ids": [],
    "bind": "0.0.0.0",
    "port": 80,
    "ssl": False,
    "ssl_cert": "",
    "verify_backend_ca": True,
    "inter": "2s",
    "fall": 2,
    "rise": 2,
    "timeout_connect": "5s",
    "timeout_client": "60s",
    "timeout_server": "60s",
    "admin_socket": "/run/haproxy/admin.sock",
    "config_path": "/etc/haproxy/haproxy.cfg",
    # where HAProxy logs: '' for the OS family's (lookup:haproxy_log, haproxy_log_facility)
    "log": "",
    "log_facility": "",
    # the Cloudify user of the health checks (and of the managers' beacon): 4.6's `default`
    # role, which may read /status and no tenant's data; the formula creates it on the active
    # node. Its password is a secret, required where the cluster has a load balancer
    "check_user": "cloudify_ha_check",
    "check_password": None,
    # who may reach `port` through the LB host's firewall: everyone, as a public LB is
    "sources": ["0.0.0.0/0"],
}
SECRET_KEYS = ("admin:password", "database:password", "database:postgres_password")
# the secrets each role uses, and so the only ones its hosts need in their pillar: a manager
# all of them, a load balancer (its health check) and a CLI host (its profile) the admin
# password; the master none (it validates the rest and asks each minion for its own errors)
ROLE_SECRETS = {
    # (the check user's password: the managers create that user, and their beacon uses it)
    "manager": SECRET_KEYS + ("database:ca_key", "database:client_key",
                              "loadbalancer:check_password"),
    # a load balancer holds the check user's password, never the admin's (its health check)
    "lb": ("loadbalancer:check_password", "loadbalancer:ssl_cert"),
    "cli": ("admin:password",),
    # a backup target holds the recipient's PUBLIC key and no Cloudify secret at all
    "backup": ("backup:recipient",),
}
# The passwords 4.6 can carry (README "Safety", cloudify-4.6.md section 0.4): a database
# password goes unescaped through a shell, an SQL literal, .pgpass and URIs, which leave only
# these characters whole (test/unit/test_db_password_paths.py runs the four paths on each)
DB_PASSWORD_RE = re.compile(r"[A-Za-z0-9_.,+=^@-]+", re.ASCII)
DB_PASSWORD_CHARS = "ASCII letters, digits and _ - . , + = ^ @"
# the admin password goes through YAML, argv (no shell), JSON and Basic auth: any printable
# ASCII; 4.6 (Python 2) stops at a non-ASCII one (UnicodeEncodeError)
ADMIN_PASSWORD_RE = re.compile(r"[\x20-\x7e]+", re.ASCII)
MIN_PASSWORD = 8
# the health check's Cloudify user (loadbalancer:check_user): what 4.6's validate_inputs takes
CHECK_USER_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}", re.ASCII)
# PEM material: written to files (0600 where private) from pillar, never rendered into text
PEM_KEYS = ("database:ca_cert", "database:ca_key", "database:client_cert",
            "database:client_key", "rest:ca_cert", "loadbalancer:ssl_cert")

# The schema's character sets: explicit, ASCII only, matched against the WHOLE string
# (re.fullmatch: `$` would let a trailing newline through, `\d` takes any Unicode digit).
ASCII = re.ASCII
# firewalld's own rule for a zone name (it becomes part of a chain name)
FIREWALLD_ZONE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,16}", ASCII)
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", ASCII)
# a plain minion id: the reactor and the runner take no other (cloudify_ha/reactor/rejoin.sls)
MINION_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}", ASCII)
HOST_RE = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                     r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*", ASCII)
# a Cloudify user or tenant name
USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", ASCII)
# a PostgreSQL identifier that needs no quoting (PostgreSQL folds unquoted names to lower case)
PG_IDENT_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}", ASCII)
PACKAGE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}", ASCII)
# an absolute path: plain segments only (no `.`/`..`, no spaces, quotes or newlines)
PATH_RE = re.compile(r"(/[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,254}){1,32}", ASCII)
# a package file: salt://, http(s):// or an absolute path, with plain segments
SOURCE_RE = re.compile(r"(salt:/|https?://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|)"
                       r"(/[A-Za-z0-9_+%~-][A-Za-z0-9_.+%~-]{0,254}){1,32}", ASCII)
VERSION_RE = re.compile(r"[0-9]{1,4}(\.[0-9]{1,4}){1,3}(-[A-Za-z0-9_.]{1,32})?", ASCII)
TIME_RE = re.compile(r"([0-9]{1,9})(us|ms|s|m|h|d)?", ASCII)
# The paths the formula writes, replaces or lets HAProxy replace, each allowed in one place
# only (an allow-list: a deny-list of system files is never complete). The places are the same
# on EL7 and Debian: HAProxy's own run and lib directories (EL7's package makes
# /var/lib/haproxy and puts its socket there, Debian's makes both and uses /run/haproxy),
# /etc/haproxy for its configuration, /run for pid files, the master's master.d for its
# configuration. key: (pattern of the whole path, the place as a message says it, an example)
PLACES = {
    "loadbalancer:admin_socket": (
        re.compile(r"/(run|var/lib)/haproxy(/[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,254}){1,8}", ASCII),
        "under HAProxy's own run or lib directory (/run/haproxy/ or /var/lib/haproxy/): HAProxy "
        "replaces the file at that path with its socket", "/run/haproxy/admin.sock"),
    "loadbalancer:config_path": (
        re.compile(r"/etc/haproxy(/[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,254}){0,7}"
                   r"/[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,250}\.cfg", ASCII),
        "a '.cfg' file under /etc/haproxy/: the formula replaces that file whole",
        "/etc/haproxy/haproxy.cfg"),
    "lookup:haproxy_pidfile": (
        re.compile(r"/run(/[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,254}){0,7}"
                   r"/haproxy[A-Za-z0-9_.+-]{0,240}\.pid", ASCII),
        "a file under /run/ named haproxy*.pid: HAProxy truncates it and writes its pids "
        "there (another program's pid file would be lost)", "/run/haproxy.pid"),
    "reactor:config_file": (
        re.compile(r"/etc/salt/master\.d/[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,250}\.conf", ASCII),
        "a '.conf' file directly in /etc/salt/master.d/: the formula replaces that file whole "
        "and the salt-master reads it", "/etc/salt/master.d/cloudify_ha_reactor.conf"),
    "lookup:haproxy_chroot": (
        re.compile(r"/var/lib/haproxy(/[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,254}){0,7}", ASCII),
        "/var/lib/haproxy or a directory under it (the directory HAProxy's packages make for "
        "its chroot): the formula writes HAProxy's server states there", "/var/lib/haproxy"),
    "lookup:firewall_dir": (
        re.compile(r"/etc/cloudify_ha(/[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,254}){0,7}", ASCII),
        "/etc/cloudify_ha or a directory under it: the formula writes its firewall rules and "
        "the load balancer's certificates there", "/etc/cloudify_ha"),
}
TOP_KEYS = ("lookup", "orchestration", "reactor", "tofs", "packages", "clusters")
LOOKUP_KEYS = {
    # key: (kind, what it must be)
    "installer_package": "package", "cli_package": "package", "psql_package": "package_or_empty",
    "local_profile": "name", "refresh": "bool", "firewall_dir": "lookup:firewall_dir",
    "haproxy_package": "package", "haproxy_service": "package",
    "haproxy_manager": ("auto", "service", "direct"), "haproxy_pidfile": "lookup:haproxy_pidfile",
    "lock_wait": "lock_wait", "prerequisite_packages": "package_list",
    "haproxy_user": "name", "haproxy_group": "name", "haproxy_chroot": "lookup:haproxy_chroot",
    "haproxy_log": "syslog_address", "haproxy_log_facility": "syslog_facility",
    "haproxy_run_dir": "path_or_empty",
}
# where a syslog daemon's UNIX socket may be (HAProxy sends its log lines there): the usual
# /dev/log, a daemon's own under /run, or one inside HAProxy's chroot
SYSLOG_SOCKET_DIRS = ("/dev/", "/run/", "/var/lib/haproxy/")
# HAProxy's syslog facilities (its `log` keyword)
SYSLOG_FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp",
                     "cron", "auth2", "ftp", "ntp", "audit", "alert", "cron2",
                     *(f"local{n}" for n in range(8)))
ORCHESTRATION_KEYS = {"ping_timeout": "ping_timeout"}
# the templates an operator can override (TOFS, as saltstack-formulas/template-formula does):
# state id -> the formula's file, under <path_prefix>/files/<switch value>/ or .../default/
TOFS_FILES = {
    "cloudify_ha-loadbalancer-config": "haproxy.cfg.jinja",
    "cloudify_ha-firewall-nftables-file": "firewall.nft.jinja",
    "cloudify_ha-firewall-iptables-file": "firewall.iptables.jinja",
    "cloudify_ha-firewall-ip6tables-file": "firewall.ip6tables.jinja",
}
TOFS_KEYS = ("path_prefix", "files_switch", "source_files")
TOFS_SWITCH = ["id", "os_family"]
# a path segment on the salt file server: not starting with '-' (never read as an option)
SEGMENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,254}", ASCII)
GRAIN_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}(:[A-Za-z_][A-Za-z0-9_]{0,63}){0,7}", ASCII)
REACTOR_KEYS = {"enabled": "bool", "config_file": "reactor:config_file"}
REACTOR_DEFAULTS = {"enabled": True, "config_file": "/etc/salt/master.d/cloudify_ha_reactor.conf"}
# what a package source needs beside it: over plain http a hash (the minion checks the file
# against it before the package manager sees it); a strong digest only
SOURCE_HASH_RE = re.compile(r"sha256=[0-9a-f]{64}|sha384=[0-9a-f]{96}|sha512=[0-9a-f]{128}",
                            ASCII)
# databases a non-join install must never be pointed at: PostgreSQL's own, and the two the
# installer drops whatever database:name says (a name equal to one of them drops it twice)
RESERVED_DATABASES = ("postgres", "template0", "template1", "stage", "composer")
# bounds of the HAProxy times, in ms (HAProxy reads a bare number as ms): key -> (least, most,
# as a message says them)
TIME_BOUNDS = {"inter": (100, 3_600_000, "100ms to 1h"),
               "timeout_connect": (100, 3_600_000, "100ms to 1h"),
               "timeout_client": (1_000, 86_400_000, "1s to 24h"),
               "timeout_server": (1_000, 86_400_000, "1s to 24h")}
TIME_UNITS = {"us": 0.001, "ms": 1, "": 1, "s": 1_000, "m": 60_000, "h": 3_600_000,
              "d": 86_400_000}
# keys a 4.6 cluster cannot have: each follower must use the leader's database (the seed's
# warning); a second value invites the incompatible_cluster_architecture refusal
PER_MANAGER_DB_KEYS = ("database_ip", "database", "database_host", "db_host")
class PillarError(ValueError):
    """Raised with every problem found; str() lists them one per line."""

    def __init__(self, errors):
        super().__init__("\n".join(errors))
        self.errors = list(errors)


def plain(value):
    """The value as plain dicts and lists: Salt 3008 hands pillar over as MaskedDict/MaskedList,
    whose repr (and Salt's output) hides every string in it; older Salts hand over plain data."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def lookup(data, key, default=None):
    """``key`` ("a:b:c") in nested mappings, as plain data; ``default`` where a part is missing."""
    value = data
    for part in key.split(":"):
        if not isinstance(value, Mapping) or part not in value:
            return default
        value = value[part]
    return plain(value)


def merge(base, override):
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def q(value):
    """A value quoted for a message: its ASCII repr, so that a newline, a quote or a non-ASCII
    character in it is shown escaped and can never add a line, a state or a YAML key."""
    return ascii(value)


def _key(part):
    """One part of a key path for a message: as is when plain, else quoted."""
    return part if isinstance(part, str) and NAME_RE.fullmatch(part) else q(part)


def _is_ip(value):
    if not isinstance(value, str):
        return False
    try:
        ipaddress.IPv4Address(value)
        return True
    except ValueError:
        return False


def _is_ip_port(value):
    """<IPv4> or <IPv4>:<port>, the port 1 to 65535."""
    if not isinstance(value, str):
        return False
    address, colon, port = value.partition(":")
    return _is_ip(address) and (not colon or (port.isascii() and port.isdigit()
                                                and 1 <= int(port) <= 65535
                                                and port == str(int(port))))


def _is_host(value):
    return isinstance(value, str) and (_is_ip(value) or bool(HOST_RE.fullmatch(value)))


def _is_network(value):
    if not isinstance(value, str) or not re.fullmatch(r"[0-9./]{7,18}", value, ASCII):
        return False
    try:
        ipaddress.IPv4Network(value, strict=True)
        return True
    except ValueError:
        return False


def _is_path(value):
    return isinstance(value, str) and bool(PATH_RE.fullmatch(value))


def _is_source(value):
    return (isinstance(value, str) and bool(SOURCE_RE.fullmatch(value))
            and not any(part in (".", "..") for part in value.split("/")))


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _time_ms(value):
    """An HAProxy time in milliseconds (a bare number is ms), or None when it is not one."""
    if _is_int(value) and value >= 0:
        return value
    match = TIME_RE.fullmatch(value) if isinstance(value, str) else None
    return int(match.group(1)) * TIME_UNITS[match.group(2) or ""] if match else None


def _is_pem(value):
    return (isinstance(value, str) and value.lstrip().startswith("-----BEGIN ")
            and "-----END " in value)


def _suggest(key, known):
    if not isinstance(key, str):
        return ""
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _unknown_keys(errors, where, given, known, moved=None):
    """`moved`: {key: where its value goes now} (MOVED_KEYS, with the cluster's path)."""
    for key in sorted(set(given) - set(known), key=q):
        if key in (moved or {}):
            errors.append(f"{where}:{key}: moved to {moved[key]} (every wait of a cluster is "
                          "under waits:, in seconds); move its value there")
            continue
        errors.append(f"{where}:{_key(key)}: unknown key{_suggest(key, known)}; remove it or fix "
                      "its spelling (see pillar.example)")


KINDS = {
    # kind: (check, what the value must be)
    "bool": (lambda v: isinstance(v, bool), "must be true or false"),
    "positive_int": (lambda v: _is_int(v) and v > 0, "must be a positive integer"),
    "name": (lambda v: isinstance(v, str) and bool(NAME_RE.fullmatch(v)),
             "must be letters, digits, '.', '_' or '-' (ASCII, at most 63, starting with a "
             "letter or digit)"),
    "minion_id": (lambda v: isinstance(v, str) and bool(MINION_ID_RE.fullmatch(v)),
                  "is not a plain minion id (ASCII letters, digits, '.', '_', '-', starting "
                  "with a letter or digit)"),
    "user": (lambda v: isinstance(v, str) and bool(USER_RE.fullmatch(v)),
             "must be ASCII letters, digits, '.', '_' or '-' (at most 64, starting with a letter "
             "or digit)"),
    "pg_ident": (lambda v: isinstance(v, str) and bool(PG_IDENT_RE.fullmatch(v)),
                 "is not a plain PostgreSQL name (lower-case ASCII letters, digits and '_', "
                 "starting with a letter or '_', at most 63)"),
    "package": (lambda v: isinstance(v, str) and bool(PACKAGE_RE.fullmatch(v)),
                "is not a package or service name (ASCII letters, digits, '.', '_', '+', '-')"),
    "package_list": (lambda v: isinstance(v, list) and all(
        isinstance(p, str) and PACKAGE_RE.fullmatch(p) for p in v),
        "is not a list of package names (ASCII letters, digits, '.', '_', '+', '-'; [] for "
        "none)"),
    "package_or_empty": (lambda v: v in ("", None, False) or (
        isinstance(v, str) and bool(PACKAGE_RE.fullmatch(v))),
        "is not a package name (ASCII letters, digits, '.', '_', '+', '-'), or empty for none"),
    "path": (_is_path, "is not a plain absolute path (ASCII letters, digits, '.', '_', '+', '-' "
                       "between slashes, no '.' or '..' part)"),
    "source": (lambda v: v == "" or _is_source(v),
               "is not a package file: salt://..., http(s)://host/... or an absolute path, of "
               "ASCII letters, digits, '.', '_', '+', '%', '~', '-' between slashes"),
    "version": (lambda v: v == "" or (isinstance(v, str) and bool(VERSION_RE.fullmatch(v))),
                "is not a package version such as '4.6' or '4.5.5' (a string: quote it in YAML, "
                "4.10 unquoted is the number 4.1)"),
    "ipv4": (_is_ip, "is not an IPv4 address"),
    "pem": (lambda v: v in ("", None) or _is_pem(v),
            "is not PEM text (-----BEGIN ...----- ... -----END ...-----)"),
    "path_or_empty": (lambda v: v == "" or _is_path(v), "is not a plain absolute path, or ''"),
    "syslog_address": (lambda v: (_is_path(v) and v.startswith(SYSLOG_SOCKET_DIRS))
                       or _is_ip_port(v),
                       "is not a syslog address: a UNIX socket's path under "
                       f"{', '.join(SYSLOG_SOCKET_DIRS)} (e.g. /dev/log) or an IPv4 address with "
                       "an optional :port (e.g. 127.0.0.1 or 10.0.0.9:514)"),
    "syslog_facility": (lambda v: v in SYSLOG_FACILITIES,
                        f"is not a syslog facility ({', '.join(SYSLOG_FACILITIES)})"),
    "lock_wait": (lambda v: _is_int(v) and 1 <= v <= 86400,
                  "must be a whole number of seconds from 1 to 86400 (a day)"),
    "ping_timeout": (lambda v: _is_int(v) and 1 <= v <= 300,
                     "must be a whole number of seconds from 1 to 300"),
    "source_hash": (lambda v: v == "" or (isinstance(v, str)
                                          and bool(SOURCE_HASH_RE.fullmatch(v))),
                    "is not a package file's hash: sha256=<64 hex digits>, sha384=<96> or "
                    "sha512=<128>, lower case (e.g. the output of sha256sum), or empty"),
    **{key: ((lambda pattern: lambda v: isinstance(v, str) and bool(pattern.fullmatch(v)))(
        pattern), f"is not {place}; e.g. {example}")
       for key, (pattern, place, example) in PLACES.items()},
}


def _check(errors, where, key, value, kind):
    """One value against its kind; False (and one error naming the key) when it does not fit."""
    if isinstance(kind, tuple):
        if value in kind and isinstance(value, str):
            return True
        errors.append(f"{where}:{key}: {q(value)} is not one of {', '.join(kind)}")
        return False
    check, what = KINDS[kind]
    if check(value):
        return True
    # a PEM value may be a private key: the message (which reaches the orchestration's output
    # and the job cache) never shows it
    shown = "the value" if kind == "pem" else q(value)
    errors.append(f"{where}:{key}: {shown} {what}")
    return False


def _section(errors, where, raw, keys):
    """True when the optional section ``raw`` is a mapping whose values are to be checked (its
    unknown keys reported); an absent section is False, any other value an error and False."""
    if raw is None:
        return False
    if not isinstance(raw, dict):
        errors.append(f"{where}: must be a mapping (see pillar.example)")
        return False
    _unknown_keys(errors, where, raw, keys)
    return True


def _check_section(errors, where, raw, schema):
    """A flat section (lookup, orchestration, reactor): a mapping of known, well-typed keys."""
    if not _section(errors, where, raw, schema):
        return
    for key, kind in schema.items():
        if key in raw:
            _check(errors, where, key, raw[key], kind)


def cluster_settings(name, raw):
    """The cluster's pillar merged over the defaults (no validation)."""
    settings = merge(CLUSTER_DEFAULTS, raw if isinstance(raw, dict) else {})
    if isinstance(settings.get("loadbalancer"), dict):
        settings["loadbalancer"] = merge(LOADBALANCER_DEFAULTS, settings["loadbalancer"])
    if isinstance(settings.get("backup"), dict):
        settings["backup"] = merge(BACKUP_DEFAULTS, settings["backup"])
    settings["name"] = name
    return settings


def roles_of(settings, minion_id):
    """The roles `minion_id` has in a cluster (merged settings): manager, lb, cli."""
    roles = set()
    if minion_id is None:
        return roles
    managers = settings.get("managers")
    if isinstance(managers, list) and any(isinstance(m, dict) and m.get("minion_id") == minion_id
                                          for m in managers):
        roles.add("manager")
    lb = settings.get("loadbalancer")
    if isinstance(lb, dict) and isinstance(lb.get("minion_ids"), list) and \
            minion_id in lb["minion_ids"]:
        roles.add("lb")
    if isinstance(settings.get("cli_hosts"), list) and minion_id in settings["cli_hosts"]:
        roles.add("cli")
    if backup_target(settings) == minion_id:
        roles.add("backup")
    return roles


def validate(pillar, minion_id=None):
    """(errors, warnings) for the whole `cloudify_ha` pillar; errors name key and fix.

    minion_id: validate as that minion, which must hold the secrets of its roles
    (ROLE_SECRETS); without it (the master) no secret is required, a secret given is checked.
    """
    errors, warnings = [], []
    if isinstance(pillar, dict):
        _unknown_keys(errors, "cloudify_ha", pillar, TOP_KEYS)
        _check_section(errors, "cloudify_ha:lookup", pillar.get("lookup"), LOOKUP_KEYS)
        _check_section(errors, "cloudify_ha:orchestration", pillar.get("orchestration"),
                       ORCHESTRATION_KEYS)
        _check_section(errors, "cloudify_ha:reactor", pillar.get("reactor"), REACTOR_KEYS)
        _validate_tofs(errors, pillar.get("tofs"))
        _validate_packages(errors, pillar.get("packages"))
    clusters = (pillar or {}).get("clusters") if isinstance(pillar, dict) else None
    if not isinstance(clusters, dict) or not clusters:
        return (errors + [f"{ROOT}: no cluster defined; add at least one cluster under "
                          f"{ROOT}:<name> (see pillar.example)"], warnings)
    seen = {"minion_id": {}, "name": {}, "private_ip": {}, "database": {}}
    for cname, raw in clusters.items():
        where = f"{ROOT}:{_key(cname)}"
        if not isinstance(cname, str) or not NAME_RE.fullmatch(cname):
            errors.append(f"{where}: cluster name must be letters, digits, '.', '_' or '-' "
                          "(ASCII, at most 63; quote it in YAML if it reads as a number or "
                          "true/false)")
        if not isinstance(raw, dict):
            errors.append(f"{where}: must be a mapping of cluster settings (see pillar.example)")
            continue
        moved = {old: f"{where}:{new}" for old, new in MOVED_KEYS.items()}
        _unknown_keys(errors, where, raw, CLUSTER_DEFAULTS, moved)
        sections = ("admin", "rest", "database", "installer", "firewall", "waits")
        for section in sections:
            if section in raw and not isinstance(raw[section], dict):
                errors.append(f"{where}:{section}: must be a mapping (see pillar.example)")
            elif isinstance(raw.get(section), dict):
                _unknown_keys(errors, f"{where}:{section}", raw[section], CLUSTER_DEFAULTS[section],
                              {old.split(":", 1)[1]: new for old, new in moved.items()
                               if old.startswith(f"{section}:")})
        # a section that is not a mapping is reported above: check the rest without it
        settings = cluster_settings(cname, {k: v for k, v in raw.items()
                                            if k not in sections or isinstance(v, dict)})
        _validate_managers(errors, warnings, where, settings, seen)
        needed = {path for role in roles_of(settings, minion_id) for path in ROLE_SECRETS[role]}
        _validate_secrets(errors, where, settings, needed)
        _validate_database(errors, where, settings, needed)
        db_host = settings["database"].get("host")
        if _is_host(db_host):
            if db_host in seen["database"]:
                errors.append(f"{where}:database:host: {db_host} is also the database of "
                              f"{seen['database'][db_host]}: a non-join install drops the "
                              "'stage' and 'composer' databases whatever cloudify_db is called, "
                              "so two clusters cannot share a PostgreSQL server; give each "
                              "cluster its own")
            else:
                seen["database"][db_host] = where
        _validate_rest(errors, where, settings)
        _validate_misc(errors, where, settings)
        _validate_loadbalancer(errors, where, settings, needed)
        _validate_license(errors, where, settings)
        _validate_backup(errors, where, settings)
        _collect_roles(seen, where, settings)
    _validate_one_role(errors, seen)
    return errors, warnings


def _collect_roles(seen, where, settings):
    """The plain minion ids of this cluster's CLI hosts and load balancers, where each is first
    named (a manager's are in seen["minion_id"] already)."""
    lb = settings.get("loadbalancer")
    for role, ids, at in (("cli", settings.get("cli_hosts"), f"{where}:cli_hosts"),
                          ("lb", lb.get("minion_ids") if isinstance(lb, dict) else None,
                           f"{where}:loadbalancer:minion_ids")):
        for index, mid in enumerate(ids if isinstance(ids, list) else []):
            if isinstance(mid, str) and MINION_ID_RE.fullmatch(mid):
                seen.setdefault(role, {}).setdefault(mid, f"{at}:{index}")


def _validate_one_role(errors, seen):
    """A minion has one role across the whole pillar: a manager (which has cfy and serves the
    REST port itself), a CLI host or a load balancer (HAProxy takes the REST port). The same
    CLI host or load balancer may serve several clusters."""
    managers, cli, lbs = seen["minion_id"], seen.get("cli", {}), seen.get("lb", {})
    for role, ids in (("CLI host", cli), ("load balancer", lbs)):
        for mid, where in ids.items():
            other = (("a manager", managers.get(mid)), ("a CLI host", cli.get(mid)
                                                        if role != "CLI host" else None))
            for what, at in other:
                if at is not None:
                    errors.append(f"{where}: {q(mid)} is also {what} (at {at}): a minion has "
                                  f"one role across the pillar; make another host the {role}")


def _validate_managers(errors, warnings, where, settings, seen):
    managers = settings["managers"]
    if not isinstance(managers, list) or not managers:
        errors.append(f"{where}:managers: list the cluster's managers (name, minion_id, "
                      "private_ip, public_ip), the leader first; 3 or more for HA")
        return
    names = []
    for index, manager in enumerate(managers):
        mwhere = f"{where}:managers:{index}"
        if not isinstance(manager, dict):
            errors.append(f"{mwhere}: must be a mapping with name, minion_id, private_ip, public_ip")
            continue
        for key in PER_MANAGER_DB_KEYS:
            if key in manager:
                errors.append(f"{mwhere}:{key}: a cluster has ONE database: followers use the "
                              f"leader's ({where}:database:host); remove this key")
        _unknown_keys(errors, mwhere, {k for k in manager if k not in PER_MANAGER_DB_KEYS},
                      MANAGER_KEYS)
        valid = {}
        for key in sorted(MANAGER_KEYS):
            value = manager.get(key)
            if value in (None, ""):
                errors.append(f"{mwhere}:{key}: required; set the manager's {key}")
            elif key == "minion_id" and isinstance(value, (list, dict)):
                errors.append(f"{mwhere}:minion_id: must be one minion id, not a "
                              f"{type(value).__name__}")
            elif key == "name":
                if isinstance(value, str) and NAME_RE.fullmatch(value):
                    valid[key] = value
                else:
                    errors.append(f"{mwhere}:name: {q(value)} is not a valid node name (ASCII "
                                  "letters, digits, '.', '_' or '-', at most 63)")
            elif _check(errors, mwhere, key, value, "minion_id" if key == "minion_id" else "ipv4"):
                valid[key] = value
        for key in ("minion_id", "name", "private_ip"):
            value = valid.get(key)
            if value is None:
                continue
            if value in seen[key]:
                errors.append(f"{mwhere}:{key}: '{value}' is used twice (also at "
                              f"{seen[key][value]}); every manager needs its own {key}, across "
                              "all clusters")
            else:
                seen[key][value] = mwhere
        names.append(valid.get("name"))
    leader = settings.get("leader")
    if leader in (None, ""):
        errors.append(f"{where}:leader: required; name the one manager (its `name`) that is "
                      "installed first on the external database and starts the cluster")
    elif isinstance(leader, list):
        errors.append(f"{where}:leader: exactly one leader per cluster; got a list {q(leader)}")
    elif not isinstance(leader, str) or leader not in names:
        errors.append(f"{where}:leader: {q(leader)} is not the name of a manager of this cluster "
                      f"(managers: {', '.join(n for n in names if n)})")
    if len(managers) % 2 == 0:
        warnings.append(f"{where}:managers: {len(managers)} managers: an even count tolerates no "
                        "more failures than one fewer; use an odd count (3, 5, 7)")
    if len(managers) < 3:
        warnings.append(f"{where}:managers: {len(managers)} manager(s): high availability needs "
                        "at least 3")


def _validate_secrets(errors, where, settings, needed):
    """Each password present: a one-line string 4.6 can carry (DB_PASSWORD_RE, ADMIN_PASSWORD_RE),
    MIN_PASSWORD long, not its user's name. A message never shows the value (nor a character of
    it: that would make the validation an oracle)."""
    users = {"admin:password": ("admin:username", settings["admin"].get("username")),
             "database:password": ("database:username", settings["database"].get("username")),
             "database:postgres_password": ("the superuser's name", "postgres")}
    for path in SECRET_KEYS:
        section, key = path.split(":")
        value = (settings.get(section) or {}).get(key)
        if value in (None, ""):
            if path in needed:
                errors.append(f"{where}:{path}: required secret is missing; set it in this "
                              "minion's pillar (ideally from an encrypted source such as GPG "
                              "pillar)")
        elif not isinstance(value, str):
            errors.append(f"{where}:{path}: must be a string (quote it in YAML)")
        elif any(c in value for c in "\n\r\0"):
            # a password is given to cfy_manager in config.yaml and to psql in an environment
            # variable: a line break or NUL there cannot be a password
            errors.append(f"{where}:{path}: must be one line (no line break or NUL character)")
        elif section == "database" and not DB_PASSWORD_RE.fullmatch(value):
            errors.append(f"{where}:{path}: has a character 4.6 cannot carry: its installer "
                          "passes this password unescaped through a shell (su - postgres -c "
                          "\"create_default_db.sh ... <password> ...\"), an SQL literal, a "
                          ".pgpass line and database URIs; use only "
                          f"{DB_PASSWORD_CHARS} (the value is not shown)")
        elif section == "admin" and not ADMIN_PASSWORD_RE.fullmatch(value):
            errors.append(f"{where}:{path}: has a non-ASCII or control character: 4.6's "
                          "installer (Python 2) stops at it with a UnicodeEncodeError and the "
                          "real cfy 4.6 cannot send it; use printable ASCII (the value is not "
                          "shown)")
        elif len(value) < MIN_PASSWORD:
            errors.append(f"{where}:{path}: is shorter than {MIN_PASSWORD} characters; give a "
                          "longer one (the value is not shown)")
        elif isinstance(users[path][1], str) and value.casefold() == users[path][1].casefold():
            errors.append(f"{where}:{path}: is the same as {users[path][0]}; choose a password "
                          "that is not the user's name")


def _validate_database(errors, where, settings, needed):
    db = settings["database"]
    if db.get("host") in (None, ""):
        errors.append(f"{where}:database:host: required; the external PostgreSQL's address "
                      "(the same for every manager of the cluster)")
    elif not _is_host(db["host"]):
        errors.append(f"{where}:database:host: {q(db['host'])} is not an IPv4 address or host "
                      "name")
    port = db.get("port")
    if not _is_int(port) or not 0 < port < 65536:
        errors.append(f"{where}:database:port: {q(port)} is not a TCP port number")
    elif port != 5432:
        errors.append(f"{where}:database:port: {port}: Cloudify 4.6 reaches its external "
                      "database on port 5432 only; serve PostgreSQL on 5432 (or leave the key "
                      "out)")
    if not db.get("ca_cert"):
        errors.append(f"{where}:database:ca_cert: required; 4.6 connects to an external "
                      "database over SSL only: give the PEM of the CA that signed its certificate")
    if db.get("ca_cert") and not db.get("ca_key") and "database:ca_key" in needed:
        errors.append(f"{where}:database:ca_key: required on the managers with database:ca_cert; "
                      "4.6 takes that CA as the manager's internal CA too "
                      "(ssl_inputs.ca_cert_path) and refuses it without its key (ca_key_path): "
                      "give the PEM key of the CA")
    if not db.get("client_cert"):
        errors.append(f"{where}:database:client_cert: required (PEM): 4.6's installer copies "
                      "the client certificate and its key whenever database SSL is on, which it "
                      "always is with an external database; the server may still authenticate "
                      "the cloudify user by password")
    if not db.get("client_key") and "database:client_key" in needed:
        errors.append(f"{where}:database:client_key: required on the managers (PEM, a secret): "
                      "4.6's installer copies it with database:client_cert")
    framed = {}
    for key in ("ca_cert", "ca_key", "client_cert", "client_key"):
        if db.get(key) not in (None, "") and _check(errors, f"{where}:database", key, db[key],
                                                     "pem"):
            framed[key] = db[key]
    errors.extend(f"{where}:database:{key}: {problem}" for key, problem in pki_problems(framed))
    for key, kind in (("name", "pg_ident"), ("username", "pg_ident")):
        if not isinstance(db.get(key), str) or not db.get(key):
            errors.append(f"{where}:database:{key}: must be a non-empty string")
        else:
            _check(errors, f"{where}:database", key, db[key], kind)
    if db.get("name") in RESERVED_DATABASES:
        errors.append(f"{where}:database:name: {q(db['name'])} is PostgreSQL's own or one the "
                      "installer drops besides this one (not one of "
                      f"{', '.join(RESERVED_DATABASES)}): a non-join install drops and "
                      "recreates database:name; give Cloudify its own, e.g. cloudify_db")
    if db.get("username") == "postgres":
        errors.append(f"{where}:database:username: 'postgres' is the superuser "
                      "(database:postgres_password); give Cloudify its own user, e.g. cloudify")


# ---- the database's keys and certificates, as 4.6 checks them ------------------------------
# 4.6 stops at an EC, encrypted or mismatched key (validations.py _check_ssl_file,
# _check_key_and_cert) on a host the run already touched: checked here first (README
# "Safety"), with `cryptography` (every Salt onedir has it), else `openssl` (the key on stdin).
# Every SLS render validates the pillar: answers are kept by the digest of what was checked.
KEY_INPUTS = {"ca_key": "ca_key_path", "client_key": "postgresql_client_key_path"}
PKI_PAIRS = (("ca_key", "ca_cert"), ("client_key", "client_cert"))
_PKI_CHECKED = {}
_CERT_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]*-----END CERTIFICATE-----")


def pki_problems(pems):
    """[(key, problem)] for the database PEMs given (ca_cert, ca_key, client_cert, client_key:
    each PEM text, framing already checked); never a byte of a key in a problem."""
    backend = _pki_backend()
    digest = hashlib.sha256("\0".join([backend.__name__] + [
        f"{k}={pems.get(k) or ''}" for k in sorted(KEY_INPUTS) + ["ca_cert", "client_cert"]]
    ).encode()).hexdigest()
    if digest not in _PKI_CHECKED:
        if len(_PKI_CHECKED) > 64:
            _PKI_CHECKED.clear()
        _PKI_CHECKED[digest] = _pki_check(backend, pems)
    return list(_PKI_CHECKED[digest])


def _pki_check(backend, pems):
    problems, public = [], {}
    for key in ("ca_cert", "client_cert"):
        if pems.get(key):
            public[key] = backend("cert", pems[key])
            if public[key] is None:
                problems.append((key, "is not a PEM X.509 certificate openssl can read (4.6 runs "
                                      "`openssl x509 -in <cert> -noout` on it)"))
    for key, cert in PKI_PAIRS:
        if not pems.get(key):
            continue
        found = backend("key", pems[key])
        stop = f"4.6 stops at 'Key file ... (input name: {KEY_INPUTS[key]}) is invalid'"
        if found == "missing":
            problems.append((key, "cannot be checked here: neither Python's cryptography "
                                  "package nor openssl is installed on this host; install one "
                                  f"(4.6 checks the key with openssl: {stop})"))
        elif found == "encrypted":
            problems.append((key, "is encrypted: 4.6 checks it with `openssl rsa -check` and no "
                                  f"passphrase, and {stop}; give it unencrypted (openssl rsa "
                                  "-in <key> -out <plain key>)"))
        elif found == "unreadable":
            problems.append((key, "is not a private key openssl can read, or fails its RSA "
                                  f"check (`openssl rsa -in <key> -check`): {stop}; give the "
                                  "PEM of an unencrypted RSA key"))
        elif isinstance(found, str):
            problems.append((key, f"is {found} key: 4.6 checks it with `openssl rsa -check`, "
                                  f"which takes RSA keys only, and {stop}; issue an RSA key and "
                                  f"its certificate ({cert})"))
        elif public.get(cert) is not None and public[cert] != found:
            problems.append((key, f"is not the key of database:{cert} (their public keys "
                                  "differ): " + (
                                      "4.6 compares them and stops at 'Key ... does not match the "
                                      "cert ...'" if key == "client_key" else
                                      "4.6 signs the manager's internal certificates with the "
                                      "pair") + "; give the key that certificate was issued for"))
    if public.get("ca_cert") is not None and public.get("client_cert") is not None and \
            not backend("signed", pems["ca_cert"], pems["client_cert"]):
        problems.append(("client_cert", "is not signed by database:ca_cert (nor by any "
                                        "certificate in it): give a client certificate that CA "
                                        "issued"))
    return problems


def _pki_backend():
    try:
        # pylint: disable-next=import-outside-toplevel,unused-import
        import cryptography.x509  # noqa: F401
    except ImportError:
        return _pki_openssl
    return _pki_cryptography


def _pki_cryptography(what, *pems):
    """'cert' -> the certificate's RSA modulus, another kind's name, or None (unreadable);
    'key' -> the RSA modulus, 'encrypted', 'unreadable' or 'an EC'-like kind; 'signed' (ca,
    cert) -> whether a certificate of ca issued cert."""
    # pylint: disable=import-outside-toplevel
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa

    def modulus(public):
        return public.public_numbers().n if isinstance(public, rsa.RSAPublicKey) else \
            type(public).__name__

    if what == "cert":
        try:
            return modulus(x509.load_pem_x509_certificate(pems[0].encode()).public_key())
        except ValueError:
            return None
    if what == "key":
        if _encrypted_pem(pems[0]):
            return "encrypted"
        try:
            key = _load_private_key(serialization, pems[0].encode())
        except TypeError:
            return "encrypted"
        except Exception:  # pylint: disable=broad-except
            return "unreadable"  # ValueError, UnsupportedAlgorithm: never their text (the key)
        if isinstance(key, rsa.RSAPrivateKey):
            return _rsa_consistent(key.private_numbers())
        for kind, name in ((ec.EllipticCurvePrivateKey, "an EC"), (dsa.DSAPrivateKey, "a DSA"),
                           (ed25519.Ed25519PrivateKey, "an Ed25519"),
                           (ed448.Ed448PrivateKey, "an Ed448")):
            if isinstance(key, kind):
                return name
        return "a non-RSA"
    cert = x509.load_pem_x509_certificate(pems[1].encode())
    for block in _CERT_BLOCK.findall(pems[0]):
        try:
            issuer = x509.load_pem_x509_certificate(block.encode())
            if hasattr(cert, "verify_directly_issued_by"):  # cryptography 40+
                cert.verify_directly_issued_by(issuer)
            elif issuer.subject != cert.issuer or not isinstance(issuer.public_key(),
                                                                   rsa.RSAPublicKey):
                continue
            else:
                issuer.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                                           padding.PKCS1v15(), cert.signature_hash_algorithm)
            return True
        except Exception:  # pylint: disable=broad-except
            continue
    return False


def _load_private_key(serialization, data):
    """The key without cryptography's own RSA check (OpenSSL's RSA_check_key, primality tests
    included: ~70 ms a 2048-bit key, at every render), which _rsa_consistent replaces."""
    try:
        return serialization.load_pem_private_key(data, password=None,
                                                  unsafe_skip_rsa_key_validation=True)
    except TypeError as exc:  # cryptography < 39 has no such argument (and always checks)
        if "unsafe_skip_rsa_key_validation" not in str(exc):
            raise
    return serialization.load_pem_private_key(data, password=None)


def _rsa_consistent(numbers):
    """The modulus, when the key's parts agree (n = pq, e and d inverse, the CRT values theirs),
    as `openssl rsa -check` demands; 'unreadable' when not. p and q are not tested for
    primality (openssl is): no key generator makes a composite one."""
    pub = numbers.public_numbers
    p, q, d = numbers.p, numbers.q, numbers.d
    # e*d = 1 modulo p-1 and modulo q-1 (so modulo their lcm): products, no modular power
    if p * q != pub.n or numbers.dmp1 != d % (p - 1) or numbers.dmq1 != d % (q - 1) or \
            (numbers.iqmp * q) % p != 1 or (pub.e * d) % (p - 1) != 1 or \
            (pub.e * d) % (q - 1) != 1:
        return "unreadable"
    return pub.n


def _pki_openssl(what, *pems):
    """_pki_cryptography's answers from the openssl command: PEM text on stdin, never on argv;
    'missing' for a key where there is no openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return "missing" if what == "key" else ("openssl" if what == "cert" else True)

    def run(*args, pem):
        # -passin pass: : an encrypted key fails instead of asking a terminal for its passphrase
        return subprocess.run([openssl, *args], input=pem.encode(), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, check=False, timeout=30)

    def modulus(proc):
        text = proc.stdout.decode("ascii", "replace").strip()
        return int(text[len("Modulus="):], 16) if proc.returncode == 0 and \
            re.fullmatch(r"Modulus=[0-9A-F]+", text) else None

    if what == "cert":
        if run("x509", "-noout", pem=pems[0]).returncode != 0:
            return None
        return modulus(run("x509", "-noout", "-modulus", pem=pems[0])) or "another kind of key"
    if what == "key":
        if _encrypted_pem(pems[0]):
            return "encrypted"
        check = run("rsa", "-check", "-noout", "-passin", "pass:", pem=pems[0])
        if check.returncode == 0:  # a key that fails the check still exits 0: its verdict
            return modulus(run("rsa", "-noout", "-modulus", "-passin", "pass:", pem=pems[0])) \
                if b"RSA key ok" in check.stdout else "unreadable"
        if run("pkey", "-noout", "-passin", "pass:", pem=pems[0]).returncode == 0:
            return "another kind of"
        return "unreadable"
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as cafile:  # certificates: public
        cafile.write(pems[0])
        cafile.flush()
        return run("verify", "-partial_chain", "-no_check_time", "-purpose", "any", "-CAfile",
                   cafile.name, pem=pems[1]).returncode == 0


def _encrypted_pem(pem):
    return "ENCRYPTED PRIVATE KEY" in pem or "Proc-Type: 4,ENCRYPTED" in pem


def _validate_rest(errors, where, settings):
    rest = settings["rest"]
    if not isinstance(rest.get("ssl"), bool):
        errors.append(f"{where}:rest:ssl: must be true or false")
    elif rest["ssl"] and len(settings["managers"] or []) > 1:
        errors.append(f"{where}:rest:ssl: 4.6 cannot build this cluster: the install-time join "
                      "talks to the leader over http port 80 only and fails ('REST service "
                      "returned an unexpected response: 400') when the leader has REST SSL on; "
                      "set rest:ssl: false and terminate TLS on the load balancer")
    if rest.get("ca_cert") not in (None, ""):
        _check(errors, f"{where}:rest", "ca_cert", rest["ca_cert"], "pem")


# ---- the license (4.6 premium) --------------------------------------------------------------
# what a 4.6 license file holds under `license:` (cloudify-manager 4.6 tests/integration_tests/
# resources/licenses/*.yaml; the REST service answers GET /license with the same fields)
LICENSE_FIELDS = ("customer_id", "expiration_date", "license_edition", "trial",
                  "cloudify_version", "capabilities")


def license_document(text):
    """(the `license` mapping, the signature's bytes) of a 4.6 license file's text; ValueError
    naming what is wrong (never a part of the text)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError("is not YAML: give the license file's whole text (a block scalar, "
                         "`license: |`)") from None
    if not isinstance(document, dict) or not isinstance(document.get("license"), dict):
        raise ValueError("holds no `license:` mapping: give the license file's whole text, as "
                         "Cloudify sent it")
    fields, signature = document["license"], document.get("signature")
    if not isinstance(signature, bytes) or not signature:
        raise ValueError("has no binary `signature` (`signature: !!binary |`): give the license "
                         "file's whole text, as Cloudify sent it")
    if fields.get("customer_id") in (None, ""):
        raise ValueError("has no license:customer_id")
    unknown = sorted(str(k) for k in fields if k not in LICENSE_FIELDS)
    if unknown:
        raise ValueError(f"has field(s) 4.6 does not know under `license:`: {', '.join(unknown)}")
    return fields, signature


def license_expiration(value):
    """A license's expiration_date (MM/DD/YYYY in a license file; the REST service answers it as
    '%Y-%m-%dT%H:%M:%S.%fZ') as a date, or None for a license that does not expire."""
    if value in (None, ""):
        return None
    text = str(value)
    for fmt in ("%m/%d/%Y", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%d"):
        try:
            return datetime.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"license:expiration_date {q(text)} is not a date (MM/DD/YYYY)")


def license_summary(fields):
    """What decides whether the manager holds this license: the fields GET /license answers,
    normalised (the expiration as a date, the version as a string)."""
    expiration = license_expiration(fields.get("expiration_date"))
    version = fields.get("cloudify_version")
    return {"customer_id": str(fields.get("customer_id")),
            "expiration_date": expiration.isoformat() if expiration else None,
            "license_edition": fields.get("license_edition"),
            "trial": bool(fields.get("trial")),
            "cloudify_version": None if version in (None, "") else str(version),
            "capabilities": fields.get("capabilities")}


def _validate_license(errors, where, settings):
    text = settings.get("license")
    if text in (None, ""):
        return
    if not isinstance(text, str):
        errors.append(f"{where}:license: must be the license file's text (a YAML block scalar, "
                      "`license: |`), not a " + type(text).__name__)
        return
    try:
        fields, _ = license_document(text)
        summary = license_summary(fields)
    except ValueError as exc:
        errors.append(f"{where}:license: {exc}")
        return
    version = (settings.get("installer") or {}).get("version")
    bound = summary["cloudify_version"]
    if bound and isinstance(version, str) and VERSION_RE.fullmatch(version) \
            and _version_key(bound) < _version_key(version):
        errors.append(f"{where}:license: the license is for Cloudify {bound} and below; "
                      f"installer:version is {version}, whose REST service refuses it: give a "
                      f"license for {version}")
    expires = summary["expiration_date"]
    if summary["trial"] and expires and expires < datetime.date.today().isoformat():
        errors.append(f"{where}:license: a trial license that expired on {expires}: 4.6 "
                      "refuses every endpoint but status, version and license with it; give a "
                      "current license")


def _version_key(text):
    return tuple(int(part) for part in re.findall(r"\d+", str(text)))


def _validate_misc(errors, where, settings):
    for key in ("allow_database_reset", "replace_stale", "remove_failed_joins"):
        if not isinstance(settings.get(key), bool):
            errors.append(f"{where}:{key}: must be true or false")
    _validate_waits(errors, where, settings)
    admin = settings["admin"]
    _check(errors, f"{where}:admin", "username", admin.get("username"), "user")
    _check(errors, f"{where}:admin", "tenant", admin.get("tenant"), "user")
    cli_hosts = settings.get("cli_hosts")
    if not isinstance(cli_hosts, list):
        errors.append(f"{where}:cli_hosts: must be a list of minion ids")
    else:
        for index, host in enumerate(cli_hosts):
            _check(errors, f"{where}:cli_hosts", index, host, "minion_id")
    firewall = settings["firewall"]
    _check(errors, f"{where}:firewall", "backend", firewall.get("backend"),
           ("auto", "firewalld", "nftables", "iptables"))
    if not isinstance(firewall.get("enabled"), bool):
        errors.append(f"{where}:firewall:enabled: must be true or false")
    zone = firewall.get("firewalld_zone")
    if not (isinstance(zone, str) and (zone == "" or FIREWALLD_ZONE_RE.fullmatch(zone))):
        errors.append(f"{where}:firewall:firewalld_zone: {q(zone)} is not a firewalld zone name "
                      "(ASCII letters, digits, '_' or '-', at most 17, not starting with '-') or '' for "
                      "the default zone")
    # a firewall section that is not a mapping is reported already: its defaults are not to blame
    enabled = firewall.get("enabled") is not False and \
        f"{where}:firewall: must be a mapping (see pillar.example)" not in errors
    for key, ports in (("rest_sources", "the REST port"), ("agent_sources", "5671 and 53333")):
        wide = f"allow_wide_{key}"
        if not isinstance(firewall.get(wide), bool):
            errors.append(f"{where}:firewall:{wide}: must be true or false")
        _check_sources(errors, f"{where}:firewall", key, firewall.get(key), ports,
                       wide=wide if enabled and firewall.get(wide) is not True else None)
    if enabled and firewall.get("rest_sources") == [] and \
            firewall.get("allow_wide_rest_sources") is not True:
        errors.append(f"{where}:firewall:rest_sources: empty, which opens the REST port to every "
                      "address; list the addresses of the load balancer and the CLI hosts (e.g. "
                      f"10.0.0.20, 10.0.1.0/24), or set {where}:firewall:allow_wide_rest_sources: "
                      "true to open it to every address on purpose")
    installer = settings["installer"]
    _check(errors, f"{where}:installer", "version", installer.get("version"), "version")
    for key in ("source", "cli_source"):
        source, digest = installer.get(key), installer.get(f"{key}_hash")
        valid = _check(errors, f"{where}:installer", key, source, "source")
        if not _check(errors, f"{where}:installer", f"{key}_hash", digest, "source_hash"):
            continue
        if valid and source.startswith("http://") and not digest:
            errors.append(f"{where}:installer:{key}: {q(source)} comes over plain http, which "
                          "anyone on the way can change, and installs as root: give "
                          f"installer:{key}_hash (sha256=<the file's sha256sum>) or serve it "
                          "over https or salt://")
        elif valid and digest and not source:
            errors.append(f"{where}:installer:{key}_hash: given without installer:{key}; set "
                          f"both or neither")


def _validate_waits(errors, where, settings):
    """Each waits:<key> a whole number of seconds within its bounds (WAITS), named in the
    error with what it waits for. A waits section that is not a mapping is reported already."""
    waits = settings.get("waits")
    if not isinstance(waits, dict):
        return
    for key, (least, most, what) in WAITS.items():
        value = waits.get(key)
        if not _is_int(value) or not least <= value <= most:
            errors.append(f"{where}:waits:{key}: {q(value)} must be a whole number of seconds "
                          f"from {least} to {most}: how long the formula waits {what}")


def _check_sources(errors, where, key, sources, ports, wide=None):
    """where:key is a list of IPv4 addresses or networks (host bits zero) that the firewall lets
    through to `ports`; with `wide` (the key that allows it), a network wider than a /8 is an
    error naming both keys."""
    if not isinstance(sources, list):
        errors.append(f"{where}:{key}: must be a list of IPv4 addresses or networks (e.g. "
                      "10.0.0.20 or 10.0.1.0/24)")
        return
    for index, source in enumerate(sources):
        if not (_is_ip(source) or _is_network(source)):
            errors.append(f"{where}:{key}:{index}: {q(source)} is not an IPv4 address or network "
                          "with its host bits zero (e.g. 10.0.0.20 or 10.0.1.0/24)")
        elif wide and ipaddress.IPv4Network(source).prefixlen < 8:
            errors.append(f"{where}:{key}:{index}: {source} is wider than a /8 (it opens {ports} "
                          f"to more than 16 million addresses); list narrower networks, or set "
                          f"{where}:{wide}: true to open it that wide on purpose")


def _validate_loadbalancer(errors, where, settings, needed):
    lb = settings.get("loadbalancer")
    if lb is None:
        return
    lwhere = f"{where}:loadbalancer"
    if not isinstance(lb, dict):
        errors.append(f"{lwhere}: must be a mapping (see pillar.example) or absent")
        return
    raw_keys = set(lb)
    _unknown_keys(errors, lwhere, raw_keys, LOADBALANCER_DEFAULTS)
    ids = lb.get("minion_ids")
    if not isinstance(ids, list) or not ids:
        errors.append(f"{lwhere}:minion_ids: list the minion ids of the HAProxy host(s)")
    else:
        for index, mid in enumerate(ids):
            _check(errors, f"{lwhere}:minion_ids", index, mid, "minion_id")
    for key, most in (("port", 65535), ("fall", 100), ("rise", 100)):
        value = lb.get(key)
        if not _is_int(value) or not 1 <= value <= most:
            errors.append(f"{lwhere}:{key}: {q(value)} must be a whole number from 1 to {most}")
    for key, (least, most, shown) in TIME_BOUNDS.items():
        value = lb.get(key)
        if not least <= (_time_ms(value) or 0) <= most:
            errors.append(f"{lwhere}:{key}: {q(value)} is not an HAProxy time from {shown} "
                          "(e.g. 2s, 500ms; a bare number is milliseconds)")
    _check(errors, lwhere, "bind", lb.get("bind"), "ipv4")
    for key in ("ssl", "verify_backend_ca"):
        if not isinstance(lb.get(key), bool):
            errors.append(f"{lwhere}:{key}: must be true or false")
    if lb.get("ssl") and not lb.get("ssl_cert") and "loadbalancer:ssl_cert" in needed:
        errors.append(f"{lwhere}:ssl_cert: required when loadbalancer:ssl is true (PEM with the "
                      "certificate and its key, as HAProxy's crt takes it)")
    elif lb.get("ssl_cert") not in (None, ""):
        _check(errors, lwhere, "ssl_cert", lb["ssl_cert"], "pem")
    for key in ("admin_socket", "config_path"):
        _check(errors, lwhere, key, lb.get(key), f"loadbalancer:{key}")
    _check_sources(errors, lwhere, "sources", lb.get("sources"), "the load balancer's port")
    if lb.get("sources") == []:
        errors.append(f"{lwhere}:sources: empty, which lets nobody reach the load balancer; list "
                      "the networks of its clients, or [0.0.0.0/0] for everyone (the default)")
    _validate_lb_host(errors, lwhere, lb)
    _validate_check_user(errors, lwhere, lb, settings["admin"], needed)


def _validate_lb_host(errors, lwhere, lb):
    """The load balancer host's own keys: where HAProxy logs ('' each: the OS family's)."""
    for key, kind in (("log", "syslog_address"), ("log_facility", "syslog_facility")):
        if lb.get(key) != "":
            _check(errors, lwhere, key, lb.get(key), kind)


def _validate_check_user(errors, lwhere, lb, admin, needed):
    """The health check's Cloudify user: a name 4.6 takes (rest_utils.validate_inputs: letters,
    digits, '-', '.', '_', starting with a letter) that is not the admin's, and its password
    (a secret: never shown), printable ASCII (it goes into JSON, Basic auth and HAProxy's
    configuration as base64), MIN_PASSWORD to 256 characters (4.6 takes 5 to 256), not the
    user's name nor the admin's password (the load balancer would then hold the admin's)."""
    user = lb.get("check_user")
    if not (isinstance(user, str) and CHECK_USER_RE.fullmatch(user)):
        errors.append(f"{lwhere}:check_user: {q(user)} is not a Cloudify user name 4.6 takes: "
                      "ASCII letters, digits, '-', '.', '_', starting with a letter, at most 64 "
                      "(e.g. cloudify_ha_check)")
    elif user == admin.get("username"):
        errors.append(f"{lwhere}:check_user: {q(user)} is admin:username: the health check "
                      "needs a user of its own, with no rights but reading /status")
    password = lb.get("check_password")
    what = None
    if password in (None, ""):
        if "loadbalancer:check_password" in needed:
            errors.append(f"{lwhere}:check_password: required secret is missing; set it in "
                          "this minion's pillar (the health check's user, created by the "
                          "orchestration; ideally from an encrypted source such as GPG pillar)")
        return
    if not isinstance(password, str):
        what = "must be a string (quote it in YAML)"
    elif not ADMIN_PASSWORD_RE.fullmatch(password):
        what = "has a non-ASCII or control character; use printable ASCII"
    elif not MIN_PASSWORD <= len(password) <= 256:
        what = f"must be {MIN_PASSWORD} to 256 characters long"
    elif isinstance(user, str) and password.casefold() == user.casefold():
        what = "is the same as loadbalancer:check_user; choose a password that is not its name"
    elif password == admin.get("password"):
        what = ("is admin:password: the load balancers would hold the admin's password; give "
                "the check user its own")
    if what:
        errors.append(f"{lwhere}:check_password: {what} (the value is not shown)")


def _is_relative(value, most=32):
    """A relative salt:// path of plain segments (no '.' or '..' part, no empty part)."""
    parts = value.split("/") if isinstance(value, str) else []
    return 0 < len(parts) <= most and all(SEGMENT_RE.fullmatch(p) and p.strip(".") for p in parts)


def _validate_tofs(errors, tofs):
    """cloudify_ha:tofs: where an operator's own templates are looked for first."""
    where = "cloudify_ha:tofs"
    if not _section(errors, where, tofs, TOFS_KEYS):
        return
    if "path_prefix" in tofs and not _is_relative(tofs["path_prefix"]):
        errors.append(f"{where}:path_prefix: {q(tofs['path_prefix'])} is not a directory on the "
                      "salt file server as salt://<path_prefix>/files/... uses it: ASCII "
                      "letters, digits, '.', '_', '+', '-' between slashes, each part starting "
                      "with a letter, digit or '_', no leading slash (e.g. cloudify_ha_site)")
    switch = tofs.get("files_switch", TOFS_SWITCH)
    if not isinstance(switch, list) or not all(isinstance(g, str) and GRAIN_KEY_RE.fullmatch(g)
                                               for g in switch):
        errors.append(f"{where}:files_switch: {q(switch)} must be a list of grain names (e.g. "
                      "[id, os_family]; 'a:b' for a nested grain)")
    files = tofs.get("source_files", {})
    if not isinstance(files, dict):
        errors.append(f"{where}:source_files: must be a mapping of state id to a list of file "
                      "names (see pillar.example)")
        return
    _unknown_keys(errors, f"{where}:source_files", files, TOFS_FILES)
    for sid, names in files.items():
        if sid in TOFS_FILES and not (isinstance(names, list) and names and
                                      all(_is_relative(n, most=8) for n in names)):
            errors.append(f"{where}:source_files:{sid}: {q(names)} must be a list of file names "
                          "relative to <path_prefix>/files/<switch value>/ (ASCII letters, "
                          "digits, '.', '_', '+', '-' between slashes, each part starting with a "
                          "letter, digit or '_')")


# ---- where the package states install from (cloudify_ha:packages) -------------------------
# yum repositories for the RedHat family (Cloudify 4.6 runs on EL7 only), written with Salt's
# pkgrepo.managed, and the ids every pkg state of the formula installs from (`fromrepo`: yum's
# --disablerepo='*' --enablerepo=<ids>). apt sources are not managed: a key for another family
# is refused. Nothing changes in a host's repositories unless `repos` lists one.
PACKAGES_FAMILIES = ("RedHat",)
PACKAGES_KEYS = ("repos", "fromrepo")
REPO_KEYS = ("id", "name", "baseurl", "gpgkey", "gpgcheck")
# a yum variable ($basearch, $releasever): yum substitutes it, no shell ever sees it (whole:
# a variable is never split into a shorter one and letters, which keeps the match linear)
_YUM_VAR = r"\$[A-Za-z_][A-Za-z0-9_]{0,31}(?![A-Za-z0-9_])"
REPO_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", ASCII)
REPO_NAME_RE = re.compile(rf"[A-Za-z0-9](?:[A-Za-z0-9_.,()+-]|{_YUM_VAR}){{0,127}}", ASCII)
REPO_URL_RE = re.compile(rf"(https?://[A-Za-z0-9.-]{{1,253}}(:[0-9]{{1,5}})?|file://)"
                         rf"(/(?:[A-Za-z0-9_.+%~-]|{_YUM_VAR}){{1,255}}){{1,32}}/?", ASCII)
KINDS.update({
    "repo_id": (lambda v: isinstance(v, str) and bool(REPO_ID_RE.fullmatch(v)),
                "is not a yum repository id (ASCII letters, digits, '.', '_', '-', starting "
                "with a letter or digit, e.g. base)"),
    "repo_name": (lambda v: isinstance(v, str) and bool(REPO_NAME_RE.fullmatch(v)),
                  "is not a plain repository name (ASCII letters, digits, _ . , ( ) + - and "
                  "yum variables such as $releasever, no space, starting with a letter or "
                  "digit), or empty for the id"),
    "repo_url": (lambda v: isinstance(v, str) and len(v) <= 2048 and bool(
        REPO_URL_RE.fullmatch(v)) and not any(part in (".", "..") for part in v.split("/")[3:]),
                 "is not a repository URL: http(s)://host/path or file:///path, of ASCII "
                 "letters, digits, '.', '_', '+', '%', '~', '-' and yum variables such as "
                 "$basearch between slashes"),
})


def _validate_packages(errors, packages):
    """cloudify_ha:packages: the yum repositories and repository ids of the package states."""
    where = "cloudify_ha:packages"
    if packages is None:
        return
    if not isinstance(packages, dict):
        errors.append(f"{where}: must be a mapping of OS family to its package sources "
                      "(packages:RedHat; see pillar.example)")
        return
    for family in sorted(set(packages) - set(PACKAGES_FAMILIES), key=q):
        hint = _suggest(family, PACKAGES_FAMILIES)
        errors.append(f"{where}:{_key(family)}: the formula sets package sources for the "
                      f"RedHat family only (yum, where Cloudify 4.6 runs){hint}; apt and other "
                      "families' sources are not managed: set them up on those hosts yourself "
                      "and remove this key")
    for family in PACKAGES_FAMILIES:
        _validate_family_packages(errors, f"{where}:{family}", packages.get(family))


def _validate_family_packages(errors, where, settings):
    if not _section(errors, where, settings, PACKAGES_KEYS):
        return
    repos = settings.get("repos", [])
    if not isinstance(repos, list):
        errors.append(f"{where}:repos: must be a list of repositories (id, name, baseurl, "
                      "gpgkey, gpgcheck; see pillar.example)")
    else:
        seen = {}
        for index, repo in enumerate(repos):
            _validate_repo(errors, f"{where}:repos:{index}", repo, seen)
    fromrepo = settings.get("fromrepo", [])
    if not isinstance(fromrepo, list):
        errors.append(f"{where}:fromrepo: must be a list of repository ids (e.g. [base, "
                      "updates]), or [] for the host's enabled repositories")
    else:
        for index, rid in enumerate(fromrepo):
            _check(errors, f"{where}:fromrepo", index, rid, "repo_id")


def _validate_repo(errors, where, repo, seen):
    if not isinstance(repo, dict):
        errors.append(f"{where}: must be a mapping with id and baseurl (and name, gpgkey, "
                      "gpgcheck; see pillar.example)")
        return
    _unknown_keys(errors, where, repo, REPO_KEYS)
    rid = repo.get("id")
    if rid in (None, ""):
        errors.append(f"{where}:id: required; the repository's id (its [section] under "
                      "/etc/yum.repos.d, e.g. base)")
    elif _check(errors, where, "id", rid, "repo_id"):
        if rid in seen:
            errors.append(f"{where}:id: {q(rid)} is also the id of {seen[rid]}: give each "
                          "repository its own id")
        seen.setdefault(rid, where)
    if repo.get("name") not in (None, ""):
        _check(errors, where, "name", repo["name"], "repo_name")
    gpgcheck = repo.get("gpgcheck", True)
    if not isinstance(gpgcheck, bool):
        errors.append(f"{where}:gpgcheck: {q(gpgcheck)} must be true or false")
    baseurl = repo.get("baseurl")
    if baseurl in (None, ""):
        errors.append(f"{where}:baseurl: required; the repository's URL (e.g. "
                      "http://vault.centos.org/7.9.2009/os/$basearch/)")
    elif _check(errors, where, "baseurl", baseurl, "repo_url") and \
            baseurl.startswith("http://") and gpgcheck is False:
        errors.append(f"{where}:baseurl: {q(baseurl)} comes over plain http, which anyone on "
                      "the way can change, and its packages install as root: set gpgcheck: "
                      "true (with the repository's gpgkey) or serve it over https")
    gpgkey = repo.get("gpgkey")
    if gpgkey not in (None, ""):
        if isinstance(gpgkey, str) and gpgkey.startswith("http://"):
            errors.append(f"{where}:gpgkey: {q(gpgkey)} comes over plain http: whoever "
                          "changes it on the way signs the packages yum then trusts; fetch it "
                          "over https or give it as a file:///path on the host")
        else:
            _check(errors, where, "gpgkey", gpgkey, "repo_url")


def packages_for(packages, os_family):
    """Where this minion's package states install from (``packages``, cloudify_ha:packages,
    must have passed ``validate``): its OS family's ``repos`` with their defaults (name: the
    id, gpgcheck: true, gpgkey: none) and ``fromrepo`` as yum takes it (comma-separated ids,
    '' for the host's enabled repositories). Another family gets neither."""
    settings = packages.get(os_family) if isinstance(packages, dict) and \
        isinstance(os_family, str) else None
    settings = settings if isinstance(settings, dict) else {}
    repos = [{"id": repo["id"], "name": repo.get("name") or repo["id"],
              "baseurl": repo["baseurl"], "gpgkey": repo.get("gpgkey") or "",
              "gpgcheck": repo.get("gpgcheck", True)} for repo in settings.get("repos") or []]
    return {"repos": repos, "fromrepo": ",".join(settings.get("fromrepo") or [])}


def _grain(grains, key):
    """The grain's values as path segments: a list grain gives each element; a value that is not
    a plain segment (a grain is the minion's to set) is left out."""
    value = grains
    for part in key.split(":"):
        value = value.get(part) if isinstance(value, Mapping) else None
    values = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in values:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            continue
        if _is_relative(str(item), most=1):
            out.append(str(item))
    return out


def tofs_sources(tofs, tplroot, grains):
    """{state id: the salt:// sources of its template, first found wins} (TOFS): under
    ``<path_prefix>/files/``, for each grain of ``files_switch`` its value's directory then
    ``default``, each with the pillar's ``source_files`` before the formula's file name; then the
    formula's own ``<tplroot>/files/default/<file>``, so a partial override still finds the rest.
    ``tofs`` must have passed ``validate``."""
    tofs = tofs if isinstance(tofs, dict) else {}
    prefix = tofs.get("path_prefix", tplroot)
    dirs = [v for key in tofs.get("files_switch", TOFS_SWITCH) for v in _grain(grains or {}, key)]
    dirs.append("default")
    out = {}
    for sid, default in TOFS_FILES.items():
        names = list((tofs.get("source_files") or {}).get(sid) or []) + [default]
        urls = [f"salt://{prefix}/files/{d}/{n}" for d in dirs for n in names]
        own = f"salt://{tplroot}/files/default/{default}"
        out[sid] = list(dict.fromkeys(urls + [own]))
    return out


def plan(pillar, only=None, minion_id=None):
    """{"errors", "warnings", "clusters": {name: settings}} for the orchestration.

    only: build only this cluster (the orchestration's pillar 'cluster' key).
    minion_id: validate as that minion (see validate).
    """
    errors, warnings = validate(pillar, minion_id)
    clusters = {}
    raw = (pillar or {}).get("clusters") if isinstance(pillar, dict) else None
    if only is not None and isinstance(raw, dict) and (not isinstance(only, str)
                                                       or only not in raw):
        errors.append(f"cluster {q(only)} (from the orchestration's pillar 'cluster') is not "
                      f"defined under {ROOT}; defined: "
                      f"{', '.join(sorted(_key(k) for k in raw)) or 'none'}")
    if not errors:
        for cname, craw in raw.items():
            if only is not None and cname != only:
                continue
            settings = cluster_settings(cname, craw)
            leader = next(m for m in settings["managers"] if m["name"] == settings["leader"])
            settings["leader_manager"] = leader
            settings["followers"] = [m for m in settings["managers"] if m is not leader]
            clusters[cname] = settings
    return {"errors": errors, "warnings": warnings, "clusters": clusters}


def public(settings):
    """A cluster's settings without secrets or keys: what an SLS, the orchestration or job data
    may hold (each minion's modules read the secrets they use from its own pillar)."""
    out = {k: v for k, v in settings.items() if k not in ("admin", "database")}
    out["database"] = {"host": settings["database"]["host"], "port": settings["database"]["port"],
                       "name": settings["database"]["name"]}
    out["admin"] = {"username": settings["admin"]["username"],
                    "tenant": settings["admin"]["tenant"]}
    lb = settings.get("loadbalancer")
    if isinstance(lb, dict):
        out["loadbalancer"] = {k: v for k, v in lb.items()
                               if k not in ("ssl_cert", "check_password")}
    # whether the pillar gives a license: its text is the managers' alone
    out["license"] = bool(settings.get("license"))
    backup = settings.get("backup")
    if isinstance(backup, dict):
        # whether there is a recipient: the armored key stays out of job data and SLS
        out["backup"] = dict(backup, recipient=bool(backup.get("recipient")))
    return out


def for_minion(pillar, minion_id, lookup_defaults=None, tplroot="cloudify_ha", grains=None):
    """What this minion's SLS render from: the pillar validated (``errors``, ``warnings``), the
    platform values (``lookup``: the defaults with the pillar's over them) and, only when the
    pillar is valid, the reactor's settings (``reactor``, for the master's own minion), the
    minion's roles (``me``: the cluster it manages, as ``public`` settings,
    and the clusters it is a CLI host or a load balancer of) and those clusters' public
    settings (``clusters``), and where each overridable template is looked for (``tofs``, see
    ``tofs_sources``; ``grains`` the minion's). Never a secret: the states' modules read those
    themselves."""
    built = plan(pillar, minion_id=minion_id)
    errors, warnings = built["errors"], built["warnings"]
    lookup_ = merge(lookup_defaults or {}, (pillar or {}).get("lookup") or {}
                    if isinstance(pillar, dict) and isinstance(pillar.get("lookup"), dict) else {})
    me = {"cluster": None, "cluster_name": None, "manager": None, "cli_of": [], "lb_of": []}
    out = {"errors": errors, "warnings": warnings, "lookup": lookup_, "me": me, "clusters": {},
           "tofs": {}, "reactor": {}, "packages": packages_for(None, None)}
    if errors:
        return out
    out["reactor"] = merge(REACTOR_DEFAULTS, pillar.get("reactor") or {})
    if not _is_relative(tplroot, most=1):
        out["errors"] = [f"the formula's directory {q(tplroot)} is not a plain name (ASCII "
                         "letters, digits, '.', '_', '+', '-'): rename it"]
        return out
    out["tofs"] = tofs_sources(pillar.get("tofs"), tplroot, grains)
    out["packages"] = packages_for(pillar.get("packages"), (grains or {}).get("os_family")
                                   if isinstance(grains, Mapping) else None)
    for cname, settings in built["clusters"].items():
        mine = False
        for manager in settings["managers"]:
            if manager["minion_id"] == minion_id:
                me.update(cluster=public(settings), cluster_name=cname, manager=dict(manager))
                mine = True
        if minion_id in settings["cli_hosts"]:
            me["cli_of"].append(cname)
            mine = True
        if minion_id in ((settings.get("loadbalancer") or {}).get("minion_ids") or []):
            me["lb_of"].append(cname)
            mine = True
        if mine:
            out["clusters"][cname] = public(settings)
    return out


def find_manager(pillar, minion_id, cluster=None):
    """(cluster settings, manager entry) for this minion, or (cluster settings, None)."""
    raw = (pillar or {}).get("clusters") or {}
    for cname, craw in raw.items():
        if cluster is not None and cname != cluster:
            continue
        settings = cluster_settings(cname, craw)
        for manager in settings["managers"] or []:
            if isinstance(manager, dict) and manager.get("minion_id") == minion_id:
                return settings, manager
        if cluster is not None:
            return settings, None
    return None, None


def secrets_in(settings):
    """Every secret of a cluster, to scrub them from anything returned or logged: the
    passwords, the private keys, and each ``user:password`` pair (what HTTP Basic auth and
    URIs carry)."""
    found = set()
    for path in SECRET_KEYS:
        section, key = path.split(":")
        value = (settings.get(section) or {}).get(key)
        if value:
            found.add(str(value))
    for key in ("client_key", "ca_key"):
        value = (settings.get("database") or {}).get(key)
        if value:
            found.add(str(value))
    admin, db = settings.get("admin") or {}, settings.get("database") or {}
    for user, password in ((admin.get("username"), admin.get("password")),
                           (db.get("username"), db.get("password")),
                           ("postgres", db.get("postgres_password"))):
        if user and password:
            found.add(f"{user}:{password}")
    lb = settings.get("loadbalancer")
    if isinstance(lb, dict) and lb.get("check_password"):
        found.add(str(lb["check_password"]))
        if lb.get("check_user"):
            found.add(f"{lb['check_user']}:{lb['check_password']}")
    return found


def secret_forms(secret, username=None):
    """The ways a secret is written where it may end up in a message or a log: as is; escaped
    as JSON, YAML (double and single quoted), Python reprs (4.6's `Running: [...]` lines are a
    Python list's repr) and a shell write it; URL-encoded (``%20`` and ``+`` for a space, hex
    digits in either case); and base64 (standard and URL-safe, as HTTP Basic auth sends
    ``user:password``: ``secrets_in`` lists those pairs, or give ``username``)."""
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             repr(secret)[1:-1], ascii(secret)[1:-1], secret.replace("'", "''"),
             secret.replace("\\", "\\\\").replace("'", "\\'"), shlex.quote(secret)}
    if username:
        forms.add(base64.b64encode(f"{username}:{secret}".encode()).decode())
    try:
        import yaml  # pylint: disable=import-outside-toplevel
        for style in ('"', "'"):
            dumped = yaml.safe_dump(secret, default_style=style, width=1 << 30).rstrip("\n")
            forms.add(dumped[1:-1])
    except ImportError:  # everywhere Salt runs PyYAML is there
        pass
    for quote in (urllib.parse.quote, urllib.parse.quote_plus):
        for safe in ("", "/"):
            encoded = quote(secret, safe=safe)
            forms.update((encoded, re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), encoded)))
    raw = secret.encode("utf-8", "surrogatepass")
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(raw).decode()
        forms.update((encoded, encoded.rstrip("=")))
    return {form for form in forms if form}


def scrub(text, secrets):
    """``text`` with every form of every secret (``secret_forms``) replaced by ``******``."""
    if not isinstance(text, str):
        return text
    forms = {form for secret in secrets if secret for form in secret_forms(str(secret))}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "******")
    return text



# ---- off-cluster backups (cloudify_ha.orch.backup) ------------------------------------------
BACKUP_DEFAULTS = {
    # {minion_id, address, directory}: the host the archives are streamed to
    "target": None,
    # the stream's TCP port on the target (its receiver listens there for one connection)
    "port": 4550,
    # cloudify_ha.snapshot's quiesce: maintenance mode, waiting for executions, or neither
    "quiesce": "maintenance",
    # seconds: the snapshot's whole wait, and the stream's (connect, transfer)
    "timeout": 3600,
    # archives kept at the target per cluster, snapshots kept on the managers
    "keep": 7,
    "keep_on_cluster": 1,
    # encrypt for `recipient` (GnuPG) before the archive leaves the manager
    "encrypt": True,
    "recipient": None,
}
BACKUP_TARGET_KEYS = ("minion_id", "address", "directory")
BACKUP_QUIESCE = ("maintenance", "executions", "none")
BACKUP_TIMEOUT = (60, 86400)
BACKUP_KEEP_MOST = 1000
# where a target's directory may not be: the system's own trees (the receiver writes and
# deletes archives there as root)
BACKUP_FORBIDDEN_DIRS = ("/etc", "/proc", "/sys", "/dev", "/run", "/boot", "/usr")
PGP_PUBLIC_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
PGP_PUBLIC_END = "-----END PGP PUBLIC KEY BLOCK-----"
# an armored block: header lines ("Comment: ..."), base64 lines, the "=" checksum line
PGP_ARMOR_RE = re.compile(r"-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n"
                          r"([A-Za-z][A-Za-z0-9-]{0,63}: [\x20-\x7e]{0,200}\r?\n){0,8}\r?\n"
                          r"([A-Za-z0-9+/=]{1,200}\r?\n){1,2000}"
                          r"-----END PGP PUBLIC KEY BLOCK-----\s*", ASCII)


def backup_target(settings):
    """The minion id of a cluster's backup target (merged settings), or None."""
    backup = settings.get("backup") if isinstance(settings, Mapping) else None
    target = backup.get("target") if isinstance(backup, Mapping) else None
    mid = target.get("minion_id") if isinstance(target, Mapping) else None
    return mid if isinstance(mid, str) and MINION_ID_RE.fullmatch(mid) else None


def backup_directory_problem(value):
    """Why ``value`` cannot be a target's directory (None when it can): a normalised absolute
    path of plain segments, not the root nor under the system's own trees."""
    if not _is_path(value):
        return ("is not a plain absolute path (ASCII letters, digits, '.', '_', '+', '-' "
                "between single slashes, no '.' or '..' part, no trailing slash), e.g. "
                "/var/backups/cloudify_ha")
    for system in BACKUP_FORBIDDEN_DIRS:
        if value == system or value.startswith(system + "/"):
            return (f"is under {system}, one of the system's own trees "
                    f"({', '.join(BACKUP_FORBIDDEN_DIRS)}), where the formula writes and "
                    "deletes no archive; use a directory of its own, e.g. "
                    "/var/backups/cloudify_ha")
    return None


def _validate_backup(errors, where, settings):
    backup = settings.get("backup")
    bwhere = f"{where}:backup"
    if not _section(errors, bwhere, backup, BACKUP_DEFAULTS):
        return
    target = backup.get("target")
    if not isinstance(target, dict):
        errors.append(f"{bwhere}:target: required, a mapping: minion_id (the host the "
                      "archives go to), address (its IPv4 address the managers reach it at) "
                      "and directory (an absolute path there)")
    else:
        twhere = f"{bwhere}:target"
        _unknown_keys(errors, twhere, target, BACKUP_TARGET_KEYS)
        for key, kind in (("minion_id", "minion_id"), ("address", "ipv4")):
            if target.get(key) in (None, ""):
                errors.append(f"{twhere}:{key}: required; set the backup target's {key}")
            else:
                _check(errors, twhere, key, target[key], kind)
        directory = target.get("directory")
        problem = "required; an absolute path on the target, e.g. /var/backups/cloudify_ha" \
            if directory in (None, "") else backup_directory_problem(directory)
        if problem:
            shown = "" if directory in (None, "") else f"{q(directory)} "
            errors.append(f"{twhere}:directory: {shown}{problem}")
        managers = settings.get("managers") if isinstance(settings.get("managers"), list) else []
        for manager in managers:
            if isinstance(manager, dict) and target.get("minion_id") is not None and \
                    manager.get("minion_id") == target.get("minion_id"):
                errors.append(f"{twhere}:minion_id: {q(target['minion_id'])} is a manager of "
                              "this cluster: a backup kept on the cluster is lost with it; "
                              "name another host")
            if isinstance(manager, dict) and target.get("address") is not None and \
                    manager.get("private_ip") == target.get("address"):
                errors.append(f"{twhere}:address: {q(target['address'])} is the private_ip of "
                              f"manager {_key(manager.get('name'))}: give the backup target's "
                              "own address")
    port = backup.get("port")
    if not _is_int(port) or not 1 <= port <= 65535:
        errors.append(f"{bwhere}:port: {q(port)} must be a TCP port from 1 to 65535 (the "
                      "receiver's on the target; default 4550)")
    _check(errors, bwhere, "quiesce", backup.get("quiesce"), BACKUP_QUIESCE)
    least, most = BACKUP_TIMEOUT
    timeout = backup.get("timeout")
    if not _is_int(timeout) or not least <= timeout <= most:
        errors.append(f"{bwhere}:timeout: {q(timeout)} must be a whole number of seconds from "
                      f"{least} to {most}: how long the snapshot, and then the stream, may take")
    for key, what in (("keep", "archives of this cluster kept at the target"),
                      ("keep_on_cluster", "snapshots of this cluster kept on the managers")):
        value = backup.get(key)
        if not _is_int(value) or not 1 <= value <= BACKUP_KEEP_MOST:
            errors.append(f"{bwhere}:{key}: {q(value)} must be a whole number from 1 to "
                          f"{BACKUP_KEEP_MOST}: the {what}")
    encrypt = backup.get("encrypt")
    if not isinstance(encrypt, bool):
        errors.append(f"{bwhere}:encrypt: {q(encrypt)} must be true or false")
    _validate_recipient(errors, bwhere, backup.get("recipient"), encrypt is not False)


def _validate_recipient(errors, bwhere, recipient, required):
    """An ASCII-armored GnuPG public key block; never shown in a message (a private key pasted
    there by mistake must not reach the orchestration's output or the job cache)."""
    if recipient in (None, ""):
        if required:
            errors.append(f"{bwhere}:recipient: required while encrypt is true: the ASCII-armored "
                          "PUBLIC key the archives are encrypted for (gpg --armor --export "
                          "<key id>); its private key stays off every Salt host. Or set "
                          "encrypt: false to send archives in clear")
        return
    if not isinstance(recipient, str):
        errors.append(f"{bwhere}:recipient: must be an ASCII-armored key block (a YAML block "
                      "scalar, `recipient: |`), not a " + type(recipient).__name__)
        return
    if "PRIVATE KEY" in recipient or "SECRET KEY" in recipient:
        errors.append(f"{bwhere}:recipient: holds a PRIVATE key block (the value is not shown): "
                      "remove it from pillar at once (and from where the pillar came from) and "
                      "give the public half instead (gpg --armor --export <key id>); the private "
                      "key belongs on the host that restores, never on a Salt host")
        return
    if not (recipient.isascii() and PGP_ARMOR_RE.fullmatch(recipient.strip() + "\n")):
        errors.append(f"{bwhere}:recipient: is not one ASCII-armored PGP public key block "
                      f"({PGP_PUBLIC_BEGIN} ... {PGP_PUBLIC_END}; the value is not shown): give "
                      "the output of gpg --armor --export <key id>")
