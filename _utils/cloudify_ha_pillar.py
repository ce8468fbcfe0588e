"""cloudify_ha's pillar: its schema, its validation and the plan the orchestration follows.

Pure Python (no Salt imports): used by the execution module on minions, by the runner and the
orchestration on the master, and by unit tests directly. Every error names the pillar key and
the fix, so that a mistake is caught before any host is touched.
"""

import copy
import difflib
import ipaddress
import re
from collections.abc import Mapping

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
    "installer": {"source": "", "cli_source": "", "version": "", "install_timeout": 1800},
    "allow_database_reset": False,
    "replace_stale": False,
    "firewall": {"enabled": True, "backend": "auto", "rest_sources": []},
    "cli_hosts": [],
    "loadbalancer": None,
}
MANAGER_KEYS = {"name", "minion_id", "private_ip", "public_ip"}
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
}
SECRET_KEYS = ("admin:password", "database:password", "database:postgres_password")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                     r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
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


def _is_ip(value):
    try:
        ipaddress.IPv4Address(str(value))
        return True
    except ValueError:
        return False


def _is_host(value):
    return isinstance(value, str) and (_is_ip(value) or bool(HOST_RE.match(value)))


def _suggest(key, known):
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _unknown_keys(errors, where, given, known):
    for key in sorted(set(given) - set(known)):
        errors.append(f"{where}:{key}: unknown key{_suggest(key, known)}; remove it or fix its "
                      "spelling (see pillar.example)")


def cluster_settings(name, raw):
    """The cluster's pillar merged over the defaults (no validation)."""
    settings = merge(CLUSTER_DEFAULTS, raw if isinstance(raw, dict) else {})
    if isinstance(settings.get("loadbalancer"), dict):
        settings["loadbalancer"] = merge(LOADBALANCER_DEFAULTS, settings["loadbalancer"])
    settings["name"] = name
    return settings


def validate(pillar):
    """(errors, warnings) for the whole `cloudify_ha` pillar; errors name key and fix."""
    errors, warnings = [], []
    clusters = (pillar or {}).get("clusters") if isinstance(pillar, dict) else None
    if not isinstance(clusters, dict) or not clusters:
        return ([f"{ROOT}: no cluster defined; add at least one cluster under "
                 f"{ROOT}:<name> (see pillar.example)"], warnings)
    seen = {"minion_id": {}, "name": {}, "private_ip": {}, "database": {}}
    for cname, raw in clusters.items():
        where = f"{ROOT}:{cname}"
        if not NAME_RE.match(str(cname)):
            errors.append(f"{where}: cluster name must be letters, digits, '.', '_' or '-'")
        if not isinstance(raw, dict):
            errors.append(f"{where}: must be a mapping of cluster settings (see pillar.example)")
            continue
        _unknown_keys(errors, where, raw, CLUSTER_DEFAULTS)
        sections = ("admin", "rest", "database", "installer", "firewall")
        for section in sections:
            if section in raw and not isinstance(raw[section], dict):
                errors.append(f"{where}:{section}: must be a mapping (see pillar.example)")
            elif isinstance(raw.get(section), dict):
                _unknown_keys(errors, f"{where}:{section}", raw[section], CLUSTER_DEFAULTS[section])
        # a section that is not a mapping is reported above: check the rest without it
        settings = cluster_settings(cname, {k: v for k, v in raw.items()
                                            if k not in sections or isinstance(v, dict)})
        _validate_managers(errors, warnings, where, settings, seen, cname)
        _validate_secrets(errors, where, settings)
        _validate_database(errors, where, settings)
        db_host = settings["database"].get("host")
        if db_host not in (None, "") and not isinstance(db_host, (list, dict)):
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
        _validate_loadbalancer(errors, where, settings)
    return errors, warnings


def _validate_managers(errors, warnings, where, settings, seen, cname):
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
        for key in sorted(MANAGER_KEYS):
            if manager.get(key) in (None, ""):
                errors.append(f"{mwhere}:{key}: required; set the manager's {key}")
        name = manager.get("name")
        if name not in (None, "") and not NAME_RE.match(str(name)):
            errors.append(f"{mwhere}:name: '{name}' is not a valid node name (letters, digits, "
                          "'.', '_' or '-', at most 63)")
        for key in ("private_ip", "public_ip"):
            value = manager.get(key)
            if value not in (None, "") and not _is_ip(value):
                errors.append(f"{mwhere}:{key}: '{value}' is not an IPv4 address")
        for key in ("minion_id", "name", "private_ip"):
            value = manager.get(key)
            if value in (None, ""):
                continue
            if isinstance(value, (list, dict)):  # a bad name or private_ip is reported above
                if key == "minion_id":
                    errors.append(f"{mwhere}:minion_id: must be one minion id, not a "
                                  f"{type(value).__name__}")
                continue
            if value in seen[key]:
                errors.append(f"{mwhere}:{key}: '{value}' is used twice (also at "
                              f"{seen[key][value]}); every manager needs its own {key}, across "
                              "all clusters")
            else:
                seen[key][value] = mwhere
        names.append(name)
    leader = settings.get("leader")
    if leader in (None, ""):
        errors.append(f"{where}:leader: required; name the one manager (its `name`) that is "
                      "installed first on the external database and starts the cluster")
    elif isinstance(leader, list):
        errors.append(f"{where}:leader: exactly one leader per cluster; got a list {leader}")
    elif leader not in names:
        errors.append(f"{where}:leader: '{leader}' is not the name of a manager of this cluster "
                      f"(managers: {', '.join(str(n) for n in names)})")
    if len(managers) % 2 == 0:
        warnings.append(f"{where}:managers: {len(managers)} managers: an even count tolerates no "
                        "more failures than one fewer; use an odd count (3, 5, 7)")
    if len(managers) < 3:
        warnings.append(f"{where}:managers: {len(managers)} manager(s): high availability needs "
                        "at least 3")


def _validate_secrets(errors, where, settings):
    for path in SECRET_KEYS:
        section, key = path.split(":")
        value = (settings.get(section) or {}).get(key)
        if value in (None, ""):
            errors.append(f"{where}:{path}: required secret is missing; set it in pillar "
                          "(ideally from an encrypted source such as GPG pillar)")
        elif not isinstance(value, str):
            errors.append(f"{where}:{path}: must be a string (quote it in YAML)")


def _validate_database(errors, where, settings):
    db = settings["database"]
    if db.get("host") in (None, ""):
        errors.append(f"{where}:database:host: required; the external PostgreSQL's address "
                      "(the same for every manager of the cluster)")
    elif not _is_host(str(db["host"])):
        errors.append(f"{where}:database:host: '{db['host']}' is not an IPv4 address or host name")
    port = db.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        errors.append(f"{where}:database:port: '{port}' is not a TCP port number")
    elif port != 5432:
        errors.append(f"{where}:database:port: {port}: Cloudify 4.6 reaches its external "
                      "database on port 5432 only; serve PostgreSQL on 5432 (or leave the key "
                      "out)")
    if not db.get("ca_cert"):
        errors.append(f"{where}:database:ca_cert: required; 4.6 connects to an external "
                      "database over SSL only: give the PEM of the CA that signed its certificate")
    if db.get("ca_cert") and not db.get("ca_key"):
        errors.append(f"{where}:database:ca_key: required with database:ca_cert; 4.6 takes that "
                      "CA as the manager's internal CA too (ssl_inputs.ca_cert_path) and refuses "
                      "it without its key (ca_key_path): give the PEM key of the CA")
    if not db.get("client_cert") or not db.get("client_key"):
        errors.append(f"{where}:database:client_cert/client_key: both required (PEM): 4.6's "
                      "installer copies the two files whenever database SSL is on, which it "
                      "always is with an external database; the server may still authenticate "
                      "the cloudify user by password")
    for key in ("name", "username"):
        if not isinstance(db.get(key), str) or not db.get(key):
            errors.append(f"{where}:database:{key}: must be a non-empty string")


def _validate_rest(errors, where, settings):
    rest = settings["rest"]
    if not isinstance(rest.get("ssl"), bool):
        errors.append(f"{where}:rest:ssl: must be true or false")
    elif rest["ssl"] and len(settings["managers"] or []) > 1:
        errors.append(f"{where}:rest:ssl: 4.6 cannot build this cluster: the install-time join "
                      "talks to the leader over http port 80 only and fails ('REST service "
                      "returned an unexpected response: 400') when the leader has REST SSL on; "
                      "set rest:ssl: false and terminate TLS on the load balancer")


def _validate_misc(errors, where, settings):
    for key in ("allow_database_reset", "replace_stale"):
        if not isinstance(settings.get(key), bool):
            errors.append(f"{where}:{key}: must be true or false")
    cli_hosts = settings.get("cli_hosts")
    if not isinstance(cli_hosts, list) or not all(isinstance(h, str) and h for h in cli_hosts):
        errors.append(f"{where}:cli_hosts: must be a list of minion ids")
    firewall = settings["firewall"]
    if firewall.get("backend") not in ("auto", "firewalld", "nftables", "iptables"):
        errors.append(f"{where}:firewall:backend: '{firewall.get('backend')}' is not one of "
                      "auto, firewalld, nftables, iptables")
    if not isinstance(firewall.get("enabled"), bool):
        errors.append(f"{where}:firewall:enabled: must be true or false")
    timeout = settings["installer"].get("install_timeout")
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0:
        errors.append(f"{where}:installer:install_timeout: must be a positive number of seconds")


def _validate_loadbalancer(errors, where, settings):
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
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        errors.append(f"{lwhere}:minion_ids: list the minion ids of the HAProxy host(s)")
    for key in ("port", "fall", "rise"):
        value = lb.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0 or \
                (key == "port" and value > 65535):
            errors.append(f"{lwhere}:{key}: '{value}' must be a positive integer")
    for key in ("inter", "timeout_connect", "timeout_client", "timeout_server"):
        if not re.match(r"^\d+(us|ms|s|m|h|d)?$", str(lb.get(key))):
            errors.append(f"{lwhere}:{key}: '{lb.get(key)}' is not an HAProxy time (e.g. 2s, 500ms)")
    if not _is_ip(lb.get("bind")):
        errors.append(f"{lwhere}:bind: '{lb.get('bind')}' is not an IPv4 address")
    if lb.get("ssl") and not lb.get("ssl_cert"):
        errors.append(f"{lwhere}:ssl_cert: required when loadbalancer:ssl is true (PEM with the "
                      "certificate and its key, as HAProxy's crt takes it)")


def plan(pillar, only=None):
    """{"errors", "warnings", "clusters": {name: settings}} for the orchestration.

    only: build only this cluster (the orchestration's pillar 'cluster' key).
    """
    errors, warnings = validate(pillar)
    clusters = {}
    raw = (pillar or {}).get("clusters") if isinstance(pillar, dict) else None
    if only is not None and isinstance(raw, dict) and only not in raw:
        errors.append(f"cluster '{only}' (from the orchestration's pillar 'cluster') is not "
                      f"defined under {ROOT}; defined: {', '.join(sorted(raw)) or 'none'}")
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
    """Every secret of a cluster, to scrub them from anything returned or logged."""
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
    return found


def scrub(text, secrets):
    if not isinstance(text, str):
        return text
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "******")
    return text
