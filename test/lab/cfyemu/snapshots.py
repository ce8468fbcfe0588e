"""4.6's day-2 data on the emulated manager: snapshots (create, list, download, upload, delete,
restore), the executions of their system workflows, secrets, the license and its gate.

Sources, all at the 4.6 tags (cfyemu/README.md "Snapshots, executions, secrets and the
license" cites each rule): cloudify-manager rest-service (resources_v2/snapshots.py,
resource_manager.py, upload_manager.py, maintenance.py, constants.py) and its system workflows
(workflows/cloudify_system_workflows/snapshots/), cloudify-common (cloudify_rest_client,
cloudify/cryptography_utils.py, models_states.py), cloudify-manager-install (the restservice
and nginx components). What the premium package decides (the license check) is inferred and
said so.

A snapshot is a real zip64 archive of the real files and a real `pg_dump -a` of the external
database; a restore really truncates the tables and runs the dump back with psql.
"""

import base64
import datetime
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path

import yaml

from .common import (DEFAULT_TENANT, ETC, OPT, PACKAGE_LIB, RESOURCES, VERSION, RestError,
                     knobs)

SNAPSHOTS = RESOURCES / "snapshots"
# 4.6's rest-security.conf (rest-service constants.py SECURITY_FILE_LOCATION), written by the
# install's restservice step (MI restservice.py _deploy_security_configuration, mode 660)
SECURITY = OPT / "rest-security.conf"
SSL_DIR = ETC / "ssl"
# what a snapshot copies from /opt/manager/resources (snapshots/utils.py
# copy_files_between_manager_and_snapshot), plus /etc/cloudify/ssl as `ssl` and
# rest-security.conf
DATA_FOLDERS = ("blueprints", "deployments", "uploaded-blueprints", "plugins",
                "global-resources", "tenant-resources", "authenticators")
ARCHIVE_CERT_DIR = "ssl"
SECURITY_FILENAME = "rest-security.conf"
METADATA_FILENAME = "metadata.json"
ADMIN_DUMP_FILE = "admin_account.json"
PG_DUMP_FILE = "pg_data"
# snapshots/postgres.py: tables a restore keeps, and those a dump leaves out
TABLES_TO_KEEP = ("alembic_version", "provider_context", "roles", "licenses")
TABLES_TO_EXCLUDE_ON_DUMP = TABLES_TO_KEEP + ("snapshots",)
# the schema revision a 4.6 manager's dump carries (metadata.json schema_revision): the
# emulator's schema has no migrations; this is the value its snapshots write
SCHEMA_REVISION = "lab-4.6"
# 4.6's pg_dump is 9.5.3's (MI config.yaml ps_libs_rpm_url), whose dump leaves search_path
# alone; the lab's (Debian's 15) empties it at the top (PostgreSQL's CVE-2018-1058 fix, 9.5.12
# and later), so the queries 4.6 appends to a dump (postgres.py _append_dump) name their schema
# here to run as 4.6's do
SCHEMA = "public."
# cloudify/models_states.py
EXECUTION_END_STATES = ("terminated", "failed", "cancelled")
EXECUTION_WAITING_STATES = ("scheduled", "queued")
SNAPSHOT_STATES = ("created", "failed", "creating", "uploaded")
# rest-service constants.py: the endpoints that answer without a license (a substring match on
# the endpoint's name, as utils.check_allowed_endpoint does for maintenance mode)
ALLOWED_LICENSE_ENDPOINTS = ("status", "version", "license", "tokens", "config", "cluster",
                             "tenants")
MISSING_LICENSE = ("This Cloudify Manager has no license: upload one with "
                   "`cfy license upload <license file>`")  # inferred: premium's text
EXPIRED_LICENSE = "This Manager`s Cloudify license has expired"  # tests/.../test_license.py
UNVERIFIED_LICENSE = "The license could not be verified"  # tests/.../test_license.py
# the lab's license signing key (the real check uses Cloudify's key, in the premium package):
# the lab builds its package with the public half (test/lab/emulator.py)
LICENSE_PUBLIC_KEY = PACKAGE_LIB / "lab-license-key.pub"
# knobs' defaults (inferred lengths: a snapshot of a near-empty manager, a gunicorn restart,
# 4.6's `sleep 3` before the post-restore commands)
SNAPSHOT_SECONDS = 0.5
RESTORE_RESTART_SECONDS = 2.0
POST_RESTORE_SECONDS = 3.0


def timestamp(when=None):
    """4.6's utils.get_formatted_timestamp: UTC, milliseconds, a 'Z'."""
    when = when or datetime.datetime.now(datetime.timezone.utc)
    return f"{when.astimezone(datetime.timezone.utc).replace(tzinfo=None).isoformat(timespec='milliseconds')}Z"


def _iso(value):
    return timestamp(value) if isinstance(value, datetime.datetime) else value


# ---- rest-security.conf and 4.6's secrets encryption ----------------------------------------
def new_security_config():
    """MI globals.py _generate_flask_security_config."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return {"hash_salt": base64.b64encode(os.urandom(32)).decode(),
            "secret_key": base64.b64encode(os.urandom(32)).decode(),
            "encoding_alphabet": "".join(sorted(alphabet, key=lambda _: os.urandom(1))),
            "encoding_block_size": 24, "encoding_min_length": 5,
            "encryption_key": base64.urlsafe_b64encode(os.urandom(64)).decode()}


def deploy_security_config():
    """The restservice step: a first install generates the file, an existing one's values win
    (MI restservice.py _get_flask_security: security_config.update(current_config)); 660."""
    config = new_security_config()
    try:
        config.update(json.loads(SECURITY.read_text()))
    except (OSError, ValueError):
        pass
    write_security_config(config)


def write_security_config(config):
    SECURITY.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(SECURITY, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o660)
    with os.fdopen(fd, "w") as fh:
        json.dump(config, fh)
    os.chmod(SECURITY, 0o660)


def _fernet(key):
    """cloudify/cryptography_utils.py Fernet256: a 64-byte key, signing half then encryption
    half (a 32-byte key is Fernet's own)."""
    from cryptography.fernet import Fernet  # pylint: disable=import-outside-toplevel

    raw = base64.urlsafe_b64decode(key)
    if len(raw) != 64:
        return Fernet(key)
    from cryptography.hazmat.primitives.ciphers import algorithms  # pylint: disable=import-outside-toplevel

    fernet = Fernet(Fernet.generate_key())
    # pylint: disable=protected-access
    fernet._signing_key, fernet._encryption_key = raw[:32], raw[32:]
    if hasattr(fernet, "_aes"):  # newer cryptography keeps the cipher made from the key
        fernet._aes = algorithms.AES(raw[32:])
    return fernet


def encrypt(value):
    key = json.loads(SECURITY.read_text())["encryption_key"]
    return _fernet(key).encrypt(value.encode()).decode()


def decrypt(token):
    """With the key rest-security.conf holds NOW (cryptography_utils._get_encryption_key): a
    database restored without its snapshot's key cannot be read (InvalidToken, a 500)."""
    from cryptography.fernet import InvalidToken  # pylint: disable=import-outside-toplevel

    key = json.loads(SECURITY.read_text())["encryption_key"]
    try:
        return _fernet(key).decrypt(token.encode()).decode()
    except InvalidToken:
        raise RestError(500, "internal_server_error", "Internal error occurred in manager REST "
                        "server - InvalidToken: ") from None


# ---- libpq for pg_dump and psql --------------------------------------------------------------
def libpq_env(config):
    """How the snapshot workflow's pg_dump and psql reach the external database
    (snapshots/postgres.py: --host, --port, -U <cloudify user>, the database): the password from
    the cloudify user's pgpass the install wrote, SSL as the REST service connects (verify-full
    against the CA, the client pair)."""
    client, inputs = config["postgresql_client"], config["ssl_inputs"]
    host, _, port = str(client["host"]).partition(":")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "PGHOST": host,
           "PGPORT": port or "5432", "PGUSER": client["username"],
           "PGPASSFILE": str(ETC / ".pgpass"), "PGCONNECT_TIMEOUT": "10",
           "PGSSLMODE": "verify-full"}
    if inputs.get("ca_cert_path"):
        env["PGSSLROOTCERT"] = inputs["ca_cert_path"]
    if inputs.get("postgresql_client_cert_path"):
        env["PGSSLCERT"] = inputs["postgresql_client_cert_path"]
        env["PGSSLKEY"] = inputs.get("postgresql_client_key_path") or ""
    return env


def _run(argv, env):
    """snapshots/utils.py run: a failure raises with the command and its stderr."""
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, check=False, timeout=600)
    if proc.returncode:
        raise RuntimeError(f"Failed running command: {' '.join(argv)} ({proc.stderr.strip()}).")
    return proc.stdout


# ---- the archive ---------------------------------------------------------------------------
def archive_path(snapshot_id):
    return SNAPSHOTS / snapshot_id / f"{snapshot_id}.zip"


def _copy_path(source, destination):
    """snapshots/utils.py copy_snapshot_path: a missing source is skipped; a directory replaces
    the destination."""
    source, destination = Path(source), Path(destination)
    if not source.exists():
        return False
    if source.is_file():
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, destination)
    else:
        if destination.exists():
            shutil.rmtree(destination)
        shutil.copytree(source, destination)
    return True


def make_zip64_archive(zip_filename, directory):
    """snapshots/utils.py make_zip64_archive: deflated, zip64, every directory and file."""
    base = os.path.normpath(directory)
    with zipfile.ZipFile(zip_filename, "w", compression=zipfile.ZIP_DEFLATED,
                         allowZip64=True) as archive:
        for dirpath, dirnames, filenames in os.walk(base):
            for dirname in sorted(dirnames):
                path = os.path.join(dirpath, dirname)
                archive.write(path, os.path.relpath(path, base))
            for filename in filenames:
                path = os.path.join(dirpath, filename)
                if os.path.isfile(path):
                    archive.write(path, os.path.relpath(path, base))


def _version(text):
    return tuple(int(part) for part in str(text).split(".") if part.isdigit())


# ---- the license -----------------------------------------------------------------------------
def license_signed_bytes(license_fields):
    """What the lab's signature covers (inferred: the real format is premium's)."""
    return json.dumps(license_fields, sort_keys=True, separators=(",", ":")).encode()


def _verify_signature(license_fields, signature):
    if not LICENSE_PUBLIC_KEY.exists() or not signature:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        data, sig = Path(tmp) / "license", Path(tmp) / "sig"
        data.write_bytes(license_signed_bytes(license_fields))
        sig.write_bytes(signature)
        proc = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(LICENSE_PUBLIC_KEY),
                               "-signature", str(sig), str(data)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, check=False)
    return proc.returncode == 0


def _expiration(value):
    """A license's expiration_date (MM/DD/YYYY in 4.6's test licenses) as the REST service
    stores it ('%Y-%m-%dT%H:%M:%S.%fZ', management_models.py License.expired)."""
    if value in (None, ""):
        return None
    when = datetime.datetime.strptime(str(value), "%m/%d/%Y")
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _expired(expiration_date):
    if not expiration_date:
        return False
    return datetime.datetime.strptime(expiration_date, "%Y-%m-%dT%H:%M:%S.%fZ") < \
        datetime.datetime.utcnow()


class FileBody:
    """A response streamed from a file (4.6: nginx sends the archive, make_streaming_response)."""

    def __init__(self, path, filename):
        self.path, self.filename = Path(path), filename


class UploadedFile:
    """A request body the handler streamed to a file (4.6's upload_manager writes the chunks
    to a file under the file server root before anything reads them)."""

    def __init__(self, path):
        self.path = Path(path)


class Day2:
    """The routes and background work of 4.6's snapshots, executions, secrets and license."""

    def __init__(self, service):
        self.service = service
        self._license_ok_until = 0.0

    @property
    def store(self):
        return self.service.store

    # ---- executions ----------------------------------------------------------------------
    def running_executions(self):
        """Executions in no end state (maintenance.py get_running_executions; every tenant's,
        system workflows included): the emulated workflows' and the knob's stand-ins."""
        found = []
        try:
            rows, _ = self.store.run("SELECT id, status, deployment_id, workflow_id FROM "
                                     "executions WHERE NOT status = ANY(:ends) ORDER BY "
                                     "created_at", ends=list(EXECUTION_END_STATES))
            found = [{"id": r[0], "status": r[1], "deployment_id": r[2], "workflow_id": r[3]}
                     for r in rows]
        except Exception:  # pylint: disable=broad-except
            pass  # no database (yet): only the knob's
        count = int(knobs().get("running_executions") or 0)
        return found + [{"id": f"lab-execution-{i}", "status": "started", "deployment_id": "lab",
                         "workflow_id": "install"} for i in range(count)]

    def _active_execution_ids(self):
        return [e["id"] for e in self.running_executions()
                if e["status"] not in EXECUTION_WAITING_STATES]

    def _check_no_active_executions(self):
        """resource_manager.py _check_for_any_active_executions (no `queue`)."""
        running = self._active_execution_ids()
        if running:
            raise RestError(400, "existing_running_execution_error",
                            "You cannot start a system-wide execution if there are other "
                            "executions running. Currently running executions: "
                            f"[{', '.join(f'u{i!r}' for i in running)}]")

    def _new_execution(self, workflow_id, username):
        execution_id = str(uuid.uuid4())
        self.store.run("INSERT INTO executions (id, workflow_id, status, is_system_workflow, "
                       "tenant, created_by, started_at) VALUES (:i, :w, 'started', true, :t, :u,"
                       " now())", i=execution_id, w=workflow_id, t=DEFAULT_TENANT, u=username)
        return self.execution(execution_id)

    def _end_execution(self, execution_id, status, error=""):
        self.store.run("UPDATE executions SET status = :s, error = :e, ended_at = now() "
                       "WHERE id = :i", s=status, e=error, i=execution_id)

    def execution(self, execution_id):
        rows, columns = self.store.run(
            "SELECT id, workflow_id, status, error, is_system_workflow, deployment_id, tenant,"
            " created_by, created_at, started_at, ended_at FROM executions WHERE id = :i",
            i=execution_id)
        if not rows:
            for fake in self.running_executions():
                if fake["id"] == execution_id:
                    return self._execution_view(dict(fake, error="", is_system_workflow=False,
                                                     tenant=DEFAULT_TENANT))
            raise RestError(404, "not_found_error",
                            f"Requested `Execution` with ID `{execution_id}` was not found")
        return self._execution_view(dict(zip(columns, rows[0])))

    @staticmethod
    def _execution_view(row):
        return {"id": row["id"], "workflow_id": row["workflow_id"], "status": row["status"],
                "status_display": row["status"], "error": row.get("error") or "",
                "is_system_workflow": bool(row.get("is_system_workflow")),
                "deployment_id": row.get("deployment_id"), "blueprint_id": None,
                "tenant_name": row.get("tenant") or DEFAULT_TENANT,
                "created_by": row.get("created_by") or "admin",
                "created_at": _iso(row.get("created_at")), "started_at": _iso(row.get("started_at")),
                "ended_at": _iso(row.get("ended_at")), "visibility": "tenant",
                "is_dry_run": False, "scheduled_for": None, "parameters": {}}

    def executions(self, query):
        rows, columns = self.store.run(
            "SELECT id, workflow_id, status, error, is_system_workflow, deployment_id, tenant,"
            " created_by, created_at, started_at, ended_at FROM executions ORDER BY created_at")
        items = [self._execution_view(dict(zip(columns, row))) for row in rows]
        known = {item["id"] for item in items}
        items += [self._execution_view(dict(fake, error="", is_system_workflow=False,
                                            tenant=DEFAULT_TENANT))
                  for fake in self.running_executions() if fake["id"] not in known]
        system = query.get("_include_system_workflows", ["false"])[0].lower() == "true"
        if not system:
            items = [i for i in items if not i["is_system_workflow"]]
        for key in ("deployment_id", "status", "workflow_id", "id"):
            if key in query:
                items = [i for i in items if str(i[key]) in query[key]]
        return _listing(items)

    # ---- the license gate and the license ---------------------------------------------------
    def license_gate(self, endpoint):
        """premium's LicenseHandler.check_license_expiration_date, a before_request hook
        registered before maintenance mode's (server.py): every endpoint whose name contains
        none of ALLOWED_LICENSE_ENDPOINTS needs a license (commit 558d68888 took `snapshots`
        and `maintenance` out of the allowed ones); an expired trial license blocks them too.
        4.6's installer accepts this answer's 400 from its check of /blueprints (MI
        restservice.py _verify_restservice): the status is 400; the texts are inferred."""
        if endpoint is None or any(word in endpoint for word in ALLOWED_LICENSE_ENDPOINTS):
            return
        if knobs().get("edition") == "community":  # server.py: only if premium_enabled
            return
        if time.monotonic() < self._license_ok_until:
            return
        rows, _ = self.store.run("SELECT trial, expiration_date FROM licenses")
        if not rows:
            raise RestError(400, "missing_cloudify_license", MISSING_LICENSE)
        if rows[0][0] and _expired(rows[0][1]):
            raise RestError(400, "expired_cloudify_license", EXPIRED_LICENSE)
        self._license_ok_until = time.monotonic() + 2.0

    def license(self, method, body):
        if method == "GET":
            rows, columns = self.store.run(
                "SELECT customer_id, expiration_date, license_edition, trial, cloudify_version,"
                " capabilities FROM licenses")
            items = [self._license_view(dict(zip(columns, row))) for row in rows]
            return 200, _listing(items)
        if method != "PUT":
            raise RestError(405, "method_not_allowed", f"Method {method} not allowed")
        return 200, self._upload_license(body if isinstance(body, bytes) else b"")

    @staticmethod
    def _license_view(row):
        return {"customer_id": row["customer_id"], "expiration_date": row["expiration_date"],
                "license_edition": row["license_edition"], "trial": bool(row["trial"]),
                "cloudify_version": row["cloudify_version"],
                "capabilities": json.loads(row["capabilities"] or "null"),
                "expired": _expired(row["expiration_date"])}

    def _upload_license(self, raw):
        """premium's upload_license (inferred from 4.6's test_license.py): the signature must
        verify (the lab's key), a license for an older version is refused, the new license
        replaces the old one (one license per manager)."""
        try:
            document = yaml.safe_load(raw.decode())
            fields, signature = document["license"], document["signature"]
            if not isinstance(fields, dict) or not isinstance(signature, bytes):
                raise TypeError
        except (ValueError, TypeError, KeyError, UnicodeDecodeError, yaml.YAMLError):
            raise RestError(400, "unverified_cloudify_license", UNVERIFIED_LICENSE) from None
        if not _verify_signature(fields, signature):
            raise RestError(400, "unverified_cloudify_license", UNVERIFIED_LICENSE)
        version = fields.get("cloudify_version")
        if version not in (None, "") and _version(version) < _version(VERSION):
            raise RestError(400, "unverified_cloudify_license",
                            f"This license is valid for Cloudify Managers with versions "
                            f"{version} and below (this manager is {VERSION})")
        try:
            expiration = _expiration(fields.get("expiration_date"))
        except ValueError:
            raise RestError(400, "unverified_cloudify_license", UNVERIFIED_LICENSE) from None
        self.store.run("DELETE FROM licenses")
        self.store.run("INSERT INTO licenses (customer_id, expiration_date, license_edition, "
                       "trial, cloudify_version, capabilities, signature) VALUES (:c, :e, :l, "
                       ":t, :v, :cap, :s)", c=str(fields.get("customer_id")), e=expiration,
                       l=fields.get("license_edition"), t=bool(fields.get("trial")),
                       v=None if version in (None, "") else str(version),
                       cap=json.dumps(fields.get("capabilities")), s=signature)
        self._license_ok_until = 0.0
        return {"customer_id": str(fields.get("customer_id")), "expiration_date": expiration,
                "license_edition": fields.get("license_edition"),
                "trial": bool(fields.get("trial")), "capabilities": fields.get("capabilities"),
                "cloudify_version": version, "expired": _expired(expiration)}

    # ---- secrets (rest-service resources_v3/secrets.py; encrypted as cryptography_utils) -----
    def secrets(self, method, key, body, username):
        if key is None:
            if method != "GET":
                raise RestError(405, "method_not_allowed", f"Method {method} not allowed")
            rows, columns = self.store.run("SELECT key, tenant, visibility, is_hidden_value, "
                                           "created_by, created_at, updated_at FROM secrets "
                                           "ORDER BY key")
            return 200, _listing([self._secret_view(dict(zip(columns, r))) for r in rows])
        rows, columns = self.store.run("SELECT key, tenant, value, visibility, is_hidden_value, "
                                       "created_by, created_at, updated_at FROM secrets WHERE "
                                       "tenant = :t AND key = :k", t=DEFAULT_TENANT, k=key)
        current = dict(zip(columns, rows[0])) if rows else None
        missing = RestError(404, "not_found_error",
                            f"Requested `Secret` with ID `{key}` was not found")
        if method == "GET":
            if not current:
                raise missing
            return 200, dict(self._secret_view(current), value=decrypt(current["value"]))
        if method == "PUT":
            body = body if isinstance(body, dict) else {}
            if "value" not in body:
                raise RestError(400, "bad_parameters_error", "Missing value in json request body")
            if current and not str(body.get("update_if_exists")).lower() == "true":
                raise RestError(409, "conflict_error", f"<Secret id=`{key}` tenant=`"
                                f"{DEFAULT_TENANT}`> already exists on <Tenant name=`"
                                f"{DEFAULT_TENANT}`> or with global visibility")
            self.store.run("DELETE FROM secrets WHERE tenant = :t AND key = :k",
                           t=DEFAULT_TENANT, k=key)
            self.store.run("INSERT INTO secrets (key, tenant, value, visibility, is_hidden_value,"
                           " created_by) VALUES (:k, :t, :v, :vis, :h, :u)", k=key,
                           t=DEFAULT_TENANT, v=encrypt(str(body["value"])),
                           vis=body.get("visibility") or "tenant",
                           h=bool(body.get("is_hidden_value")), u=username)
            return 200, self.secrets("GET", key, None, username)[1]
        if method == "DELETE":
            if not current:
                raise missing
            self.store.run("DELETE FROM secrets WHERE tenant = :t AND key = :k",
                           t=DEFAULT_TENANT, k=key)
            return 200, self._secret_view(current)
        raise RestError(405, "method_not_allowed", f"Method {method} not allowed")

    @staticmethod
    def _secret_view(row):
        # private_resource and resource_availability: 4.6's response carries them (the CLI's
        # `secrets get` pops both)
        return {"key": row["key"], "tenant_name": row.get("tenant") or DEFAULT_TENANT,
                "visibility": row["visibility"], "is_hidden_value": bool(row["is_hidden_value"]),
                "created_by": row["created_by"], "created_at": _iso(row["created_at"]),
                "updated_at": _iso(row["updated_at"]), "private_resource": False,
                "resource_availability": row["visibility"]}

    # ---- snapshots ---------------------------------------------------------------------------
    def snapshot_row(self, snapshot_id):
        rows, columns = self.store.run("SELECT id, status, error, visibility, created_by, "
                                       "created_at FROM snapshots WHERE id = :i", i=snapshot_id)
        if not rows:
            raise RestError(404, "not_found_error",
                            f"Requested `Snapshot` with ID `{snapshot_id}` was not found")
        return self._snapshot_view(dict(zip(columns, rows[0])))

    @staticmethod
    def _snapshot_view(row):
        return {"id": row["id"], "status": row["status"], "error": row["error"] or "",
                "visibility": row["visibility"], "created_by": row["created_by"],
                "created_at": _iso(row["created_at"]), "tenant_name": DEFAULT_TENANT,
                "private_resource": False, "resource_availability": row["visibility"]}

    def _create_snapshot_model(self, snapshot_id, status, username):
        """resource_manager.py create_snapshot_model: a second one of an id is a conflict."""
        rows, _ = self.store.run(
            "INSERT INTO snapshots (id, status, visibility, created_by) VALUES (:i, :s, "
            "'private', :u) ON CONFLICT (id) DO NOTHING RETURNING id", i=snapshot_id, s=status,
            u=username)
        if not rows:
            raise RestError(409, "conflict_error", f"<Snapshot id=`{snapshot_id}` tenant=`"
                            f"{DEFAULT_TENANT}`> already exists on <Tenant name=`"
                            f"{DEFAULT_TENANT}`> or with global visibility")

    def _set_snapshot_status(self, snapshot_id, status, error=""):
        self.store.run("UPDATE snapshots SET status = :s, error = :e WHERE id = :i", s=status,
                       e=error, i=snapshot_id)

    def snapshots(self, method, snapshot_id, action, query, body, username):
        if snapshot_id is None:
            if method != "GET":
                raise RestError(405, "method_not_allowed", f"Method {method} not allowed")
            rows, columns = self.store.run("SELECT id, status, error, visibility, created_by, "
                                           "created_at FROM snapshots ORDER BY created_at")
            return 200, _listing([self._snapshot_view(dict(zip(columns, r))) for r in rows])
        if action is None:
            if method == "GET":
                return 200, self.snapshot_row(snapshot_id)
            if method == "PUT":
                return 201, self.create(snapshot_id, body if isinstance(body, dict) else {},
                                        username)
            if method == "DELETE":
                return 200, self.delete(snapshot_id)
            if method == "PATCH":  # the workflow's update_status
                self.snapshot_row(snapshot_id)
                self._set_snapshot_status(snapshot_id, (body or {}).get("status"),
                                          (body or {}).get("error", ""))
                return 200, None
        elif action == "archive":
            if method == "GET":
                return 200, self.download(snapshot_id)
            if method == "PUT":
                return 201, self.upload(snapshot_id, body, query, username)
        elif action == "restore" and method == "POST":
            return 200, self.restore(snapshot_id, body if isinstance(body, dict) else {},
                                     username)
        raise RestError(405, "method_not_allowed", f"Method {method} not allowed")

    def create(self, snapshot_id, body, username):
        """resources_v2/snapshots.py SnapshotsId.put -> resource_manager.create_snapshot: the
        model (creating) first, then the system workflow, refused (and the model deleted) while
        any execution runs; bypass_maintenance (allowed in maintenance mode)."""
        from .service import validate_inputs  # pylint: disable=import-outside-toplevel
        validate_inputs({"snapshot_id": snapshot_id})
        if str(body.get("queue", "false")).lower() == "true":  # `cfy snapshots create --queue`
            raise RestError(400, "bad_parameters_error", "queue is not emulated")
        self._create_snapshot_model(snapshot_id, "creating", username)
        try:
            self._check_no_active_executions()
        except RestError:
            self.store.run("DELETE FROM snapshots WHERE id = :i", i=snapshot_id)
            raise
        execution = self._new_execution("create_snapshot", username)
        options = {key: str(body.get(key, default)).lower() == "true" for key, default in (
            ("include_logs", "true"), ("include_events", "true"))}
        threading.Thread(target=self._create_worker, args=(snapshot_id, execution["id"], options),
                         daemon=True, name=f"snapshot-{snapshot_id}").start()
        return execution

    def _create_worker(self, snapshot_id, execution_id, options):
        """snapshot_create.py SnapshotCreate.create: every failure marks the SNAPSHOT failed and
        is logged; the workflow itself ends terminated (it catches BaseException)."""
        tempdir = Path(tempfile.mkdtemp("-snapshot-data"))
        try:
            delay = float(knobs().get("snapshot_seconds", SNAPSHOT_SECONDS) or 0)
            if delay:
                time.sleep(delay)
            failure = knobs().get("snapshot_create_fail")
            if failure:
                raise RuntimeError(f"{failure} (lab knob snapshot_create_fail)")
            self._dump_files(tempdir)
            self._dump_postgres(tempdir, execution_id, options)
            (tempdir / "agents.json").write_text(json.dumps({DEFAULT_TENANT: {}}))
            (tempdir / "networks.json").write_text(json.dumps({
                "networks": {"default": self.service.config["manager"]["private_ip"]},
                "active_networks": []}))
            (tempdir / METADATA_FILENAME).write_text(json.dumps({
                "snapshot_version": VERSION, "schema_revision": SCHEMA_REVISION}))
            target = archive_path(snapshot_id)
            target.parent.mkdir(parents=True, exist_ok=False)
            make_zip64_archive(target, tempdir)
            self._set_snapshot_status(snapshot_id, "created")
            _log(f"snapshot {snapshot_id} created")
        except BaseException as exc:  # pylint: disable=broad-except
            try:
                self._set_snapshot_status(snapshot_id, "failed", str(exc))
            except Exception:  # pylint: disable=broad-except
                pass
            _log(f"Snapshot creation failed: {exc}")
        finally:
            shutil.rmtree(tempdir, ignore_errors=True)
            try:
                self._end_execution(execution_id, "terminated")
            except Exception:  # pylint: disable=broad-except
                pass

    @staticmethod
    def _dump_files(tempdir):
        for folder in DATA_FOLDERS:
            _copy_path(RESOURCES / folder, tempdir / folder)
        _copy_path(SSL_DIR, tempdir / ARCHIVE_CERT_DIR)
        _copy_path(SECURITY, tempdir / SECURITY_FILENAME)

    def _dump_postgres(self, tempdir, execution_id, options):
        """snapshots/postgres.py dump, dump_stage, dump_composer: pg_dump -a of the database
        without the kept tables (and logs/events when excluded), the admin row as JSON, then a
        query that deletes this execution appended to the dump."""
        config = self.service.config
        env, db = libpq_env(config), config["postgresql_client"]["db_name"]
        exclude = list(TABLES_TO_EXCLUDE_ON_DUMP)
        exclude += [] if options["include_logs"] else ["logs"]
        exclude += [] if options["include_events"] else ["events"]
        flags = [f"--exclude-table={t}" for t in exclude] + \
            [f"--exclude-table-data={t}" for t in exclude]
        dump = tempdir / PG_DUMP_FILE
        _run(["pg_dump", "-a", db, "-f", str(dump), *flags], env)
        _run(["psql", db, "-c", "select row_to_json(row) from (select * from users where id=0)"
              " row;", "-t", "-o", str(tempdir / ADMIN_DUMP_FILE)], env)
        with open(dump, "a", encoding="utf-8") as fh:
            fh.write(f"\nDELETE FROM {SCHEMA}executions WHERE id = '{execution_id}';\n")
        for name in ("stage", "composer"):
            exists = _run(["psql", db, "-XAtq", "-c",
                           f"SELECT 1 FROM pg_database WHERE datname='{name}'"], env).strip()
            if exists:
                _run(["pg_dump", "-a", name, "-f", str(tempdir / f"{name}_data"),
                      '--exclude-table="SequelizeMeta"',
                      '--exclude-table-data="SequelizeMeta"'], env)

    def delete(self, snapshot_id):
        """SnapshotsId.delete: the model, then the directory."""
        view = self.snapshot_row(snapshot_id)
        self.store.run("DELETE FROM snapshots WHERE id = :i", i=snapshot_id)
        shutil.rmtree(SNAPSHOTS / snapshot_id, ignore_errors=True)
        return view

    def download(self, snapshot_id):
        """SnapshotsIdArchive.get: a failed snapshot is refused; the size of a missing archive
        (still creating) is an internal error."""
        view = self.snapshot_row(snapshot_id)
        if view["status"] == "failed":
            raise RestError(400, "snapshot_action_error", "Failed snapshot cannot be downloaded")
        path = archive_path(snapshot_id)
        if not path.is_file():
            raise RestError(500, "internal_server_error",
                            "Internal error occurred in manager REST server - OSError: [Errno "
                            f"2] No such file or directory: '{path}'")
        return FileBody(path, f"{snapshot_id}.zip")

    def upload(self, snapshot_id, body, query, username):
        """upload_manager.py UploadedSnapshotsManager: the body was saved to a file first, then
        the model (uploaded; a conflict if the id exists), then the archive moved into place.
        Nothing checks the archive."""
        if query.get("snapshot_archive_url"):
            raise RestError(400, "bad_parameters_error", "snapshot_archive_url is not emulated")
        if not isinstance(body, UploadedFile):
            raise RestError(400, "bad_parameters_error", "Missing snapshot archive")
        self._create_snapshot_model(snapshot_id, "uploaded", username)
        target = archive_path(snapshot_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(body.path), target)
        return self.snapshot_row(snapshot_id)

    # ---- restore -------------------------------------------------------------------------------
    def restore(self, snapshot_id, body, username):
        """SnapshotsIdRestore.post: only on a cluster of one node that is not initializing,
        `recreate_deployments_envs` and `force` required, `no_reboot` only with
        `restore_certificates`; resource_manager.restore_snapshot: a failed snapshot is refused,
        then the system workflow (refused while any execution runs)."""
        agent = self.service.agent
        if self.service.starting:
            raise RestError(400, "illegal_action_error", "Action `restore snapshot` is not "
                            "available while initializing a cluster")
        if agent and len(agent.members) > 1:
            raise RestError(400, "illegal_action_error", "Action `restore snapshot` is not "
                            "available on a cluster with more than one node")
        for key in ("recreate_deployments_envs", "force"):
            if key not in body:
                raise RestError(400, "bad_parameters_error",
                                f"Missing {key} in json request body")
        flags = {key: str(body.get(key, "false")).lower() == "true" for key in (
            "force", "restore_certificates", "no_reboot")}
        if flags["no_reboot"] and not flags["restore_certificates"]:
            raise RestError(400, "bad_parameters_error", "`no_reboot` is only relevant when "
                            "`restore_certificates` is activated")
        if self.snapshot_row(snapshot_id)["status"] == "failed":
            raise RestError(400, "snapshot_action_error", "Failed snapshot cannot be restored")
        self._check_no_active_executions()
        rows, _ = self.store.run("SELECT id FROM users WHERE username = :u", u=username)
        bootstrap_admin = bool(rows) and rows[0][0] == 0
        execution = self._new_execution("restore_snapshot", username)
        threading.Thread(target=self._restore_worker, daemon=True, name=f"restore-{snapshot_id}",
                         args=(snapshot_id, execution["id"], flags, bootstrap_admin)).start()
        return execution

    def _restore_worker(self, snapshot_id, execution_id, flags, bootstrap_admin):
        """snapshot_restore.py SnapshotRestore.restore, in its order; the post-restore commands
        (the snapshot's admin row) run a few seconds after the workflow ends, whatever
        happened."""
        tempdir = Path(tempfile.mkdtemp("-snapshot-data"))
        post_restore = []
        status, error = "terminated", ""
        try:
            with zipfile.ZipFile(archive_path(snapshot_id)) as archive:
                archive.extractall(tempdir)
            metadata = json.loads((tempdir / METADATA_FILENAME).read_text())
            snapshot_version = metadata["snapshot_version"]
            _log(f"Validating snapshot\nManager version = {VERSION}, snapshot version = "
                 f"{snapshot_version}")
            if _version(snapshot_version) > _version(VERSION):
                raise RuntimeError("Cannot restore a newer manager's snapshot on this manager "
                                   f"[{snapshot_version} > {VERSION}]")
            if flags["restore_certificates"]:
                raise RuntimeError("restore_certificates is not emulated")
            self._validate_v4(bootstrap_admin, flags["force"])
            self._restore_files(tempdir)
            self._restore_db(tempdir, execution_id)
            post_restore.append(tempdir / ADMIN_DUMP_FILE)
            admin_row = json.loads((tempdir / ADMIN_DUMP_FILE).read_text().strip() or "{}")
            self._restart_rest_service()
            _log("Successfully restored snapshot")
        except BaseException as exc:  # pylint: disable=broad-except
            status, error = "failed", str(exc) or type(exc).__name__
            admin_row = None
            _log(f"Restore of snapshot {snapshot_id} failed: {error}")
        finally:
            shutil.rmtree(tempdir, ignore_errors=True)
            try:
                self._end_execution(execution_id, status, error)
            except Exception:  # pylint: disable=broad-except
                pass
        if post_restore and admin_row:
            delay = float(knobs().get("post_restore_seconds", POST_RESTORE_SECONDS) or 0)
            threading.Timer(delay, self._restore_admin_user, args=(admin_row,)).start()

    def _validate_v4(self, bootstrap_admin, force):
        """SnapshotRestoreValidator._validate_v_4_snapshot: the bootstrap admin only; an empty
        manager (no blueprint) unless forced."""
        if not bootstrap_admin:
            raise RuntimeError("The current user is not authorized to restore v4 snapshots. "
                               "Only the bootstrap admin is allowed to perform this action")
        rows, _ = self.store.run("SELECT count(*) FROM blueprints")
        if rows[0][0]:
            if not force:
                raise RuntimeError("Snapshot restoration on a non-empty manager is not "
                                   "permitted. Pass the --force flag to force the restore and "
                                   "delete existing data from the manager")
            _log("Forcing snapshot restoration on a non-empty manager. Existing data will be "
                 "deleted")

    @staticmethod
    def _restore_files(tempdir):
        """_restore_files_to_manager: the resource folders the archive has, then
        rest-security.conf updated with the snapshot's (_restore_security_file)."""
        for folder in DATA_FOLDERS:
            _copy_path(tempdir / folder, RESOURCES / folder)
        current = json.loads(SECURITY.read_text())
        current.update(json.loads((tempdir / SECURITY_FILENAME).read_text()))
        write_security_config(current)

    def _restore_db(self, tempdir, execution_id):
        """_restore_db -> postgres.restore: TRUNCATE every table but the kept ones, the dump,
        this execution inserted again (started) and the CURRENT admin's name and password kept
        for the workflow's sake, in one transaction; then stage and composer. psql runs as
        4.6's _restore_dump does, without ON_ERROR_STOP: an SQL error rolls the transaction
        back and psql still exits 0 (the data stays as it was; the workflow goes on)."""
        config = self.service.config
        env, db = libpq_env(config), config["postgresql_client"]["db_name"]
        tables = _run(["psql", db, "-XAtq", "-c", "SELECT tablename FROM pg_tables WHERE "
                       "schemaname = 'public';"], env).split()
        execution = self.execution(execution_id)
        rows, _ = self.store.run("SELECT username, password_hash FROM users WHERE id = 0")
        if not rows:
            raise RuntimeError("Illegal state - missing admin user in db")
        username, password = rows[0]
        dump = tempdir / f"{PG_DUMP_FILE}.new"
        with open(dump, "w", encoding="utf-8") as out:
            for table in tables:
                if table not in TABLES_TO_KEEP:
                    out.write(f"TRUNCATE {table} CASCADE;\n")
            with open(tempdir / PG_DUMP_FILE, encoding="utf-8") as original:
                shutil.copyfileobj(original, out)
            out.write(f"\nINSERT INTO {SCHEMA}executions (id, created_at, is_system_workflow, status, "
                      f"workflow_id, tenant, created_by, started_at) VALUES ('{execution_id}', "
                      f"'{execution['created_at']}', 't', 'started', 'restore_snapshot', "
                      f"'{DEFAULT_TENANT}', '{execution['created_by']}', now());\n")
            out.write(f"\nUPDATE {SCHEMA}users SET username='{username}', "
                      f"password_hash='{password}' "
                      "WHERE id=0;\n")
        _run(["psql", db, "-X", "--single-transaction", "-f", str(dump)], env)
        for name in ("stage", "composer"):
            if (tempdir / f"{name}_data").exists():
                _run(["psql", name, "-X", "--single-transaction", "-f",
                      str(tempdir / f"{name}_data")], env)
        _log("Successfully restored database")

    def _restart_rest_service(self):
        """_restart_rest_service: `systemctl restart cloudify-restservice`, then wait for it:
        nginx answers 502 meanwhile (knob restore_restart_seconds)."""
        seconds = float(knobs().get("restore_restart_seconds", RESTORE_RESTART_SECONDS) or 0)
        _log("Restarting the REST service")
        self.service.gateway_until = max(self.service.gateway_until, time.monotonic() + seconds)
        time.sleep(seconds)

    def _restore_admin_user(self, admin_row):
        """_restore_admin_user's post-restore command: every non-empty column of the
        snapshot's admin row but its id written over users.id 0."""
        admin_row = {k: v for k, v in admin_row.items() if k != "id" and v}
        columns = [c for c in ("username", "password_hash", "role", "api_token_key")
                   if c in admin_row]
        if not columns:
            return
        try:
            self.store.run(f"UPDATE users SET {', '.join(f'{c} = :{c}' for c in columns)} "
                           "WHERE id = 0", **{c: admin_row[c] for c in columns})
            _log("post-restore: the snapshot's admin user restored")
        except Exception as exc:  # pylint: disable=broad-except
            _log(f"post-restore: the admin user could not be restored: {exc}")


def version_data():
    """GET /version (rest/resources_v1/version.py get_version_data, responses.Version): the
    REST service's package version, the edition; the lab's hosts pass for CentOS 7."""
    edition = "community" if knobs().get("edition") == "community" else "premium"
    return {"version": VERSION, "edition": edition, "build": None, "date": None,
            "commit": None, "distribution": "centos", "distro_release": "Core"}


def _listing(items):
    return {"items": items, "metadata": {"pagination": {"total": len(items), "size": len(items),
                                                        "offset": 0}}}


def _log(message):
    from .service import log  # pylint: disable=import-outside-toplevel

    log(f"[snapshots] {message}")
