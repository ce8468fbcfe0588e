"""The manager's data in the external PostgreSQL: users, tenants, blueprints, and what 4.6's
snapshots move (secrets, executions, snapshots, licenses: snapshots.py).

No connection is kept open: a non-join install on another manager must be able to drop the
database (the data-loss trap), as it could when the real REST service's pool was idle.
"""

import hashlib
import hmac
import os
import threading
import time

from .common import DEFAULT_TENANT, db_connect

# 4.6's names where a snapshot reads them (rest-service storage/management_models.py): the
# bootstrap admin is users.id 0, whose row a restore replaces (snapshot_restore.py
# _restore_admin_user); `password` is the emulator's own hash (store.hash_password)
SCHEMA = [
    "CREATE TABLE users (id integer PRIMARY KEY, username text UNIQUE NOT NULL,"
    " password text NOT NULL, role text NOT NULL, api_token_key text)",
    "CREATE TABLE tenants (id integer PRIMARY KEY, name text UNIQUE NOT NULL)",
    "CREATE TABLE blueprints (id text NOT NULL, tenant text NOT NULL, main_file_name text,"
    " created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tenant, id))",
    "CREATE TABLE deployments (id text NOT NULL, tenant text NOT NULL, blueprint_id text,"
    " PRIMARY KEY (tenant, id))",
    "CREATE TABLE plugins (id text PRIMARY KEY, tenant text NOT NULL)",
    "CREATE TABLE secrets (key text NOT NULL, tenant text NOT NULL, value text NOT NULL,"
    " visibility text NOT NULL, is_hidden_value boolean NOT NULL DEFAULT false,"
    " created_by text, created_at timestamptz NOT NULL DEFAULT now(),"
    " updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tenant, key))",
    "CREATE TABLE executions (id text PRIMARY KEY, workflow_id text NOT NULL, status text NOT NULL,"
    " error text NOT NULL DEFAULT '', is_system_workflow boolean NOT NULL,"
    " deployment_id text, tenant text NOT NULL, created_by text,"
    " created_at timestamptz NOT NULL DEFAULT now(), started_at timestamptz, ended_at timestamptz)",
    "CREATE TABLE snapshots (id text PRIMARY KEY, status text NOT NULL, error text NOT NULL"
    " DEFAULT '', visibility text NOT NULL, created_by text,"
    " created_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE licenses (customer_id text PRIMARY KEY, expiration_date text,"
    " license_edition text, trial boolean NOT NULL DEFAULT false, cloudify_version text,"
    " capabilities text, signature bytea)",
]


def hash_password(password, salt=None):
    salt = salt or os.urandom(8).hex()
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 20000).hex()
    return f"pbkdf2_sha256${salt}${digest}"


def verify_password(password, stored):
    try:
        _, salt, _ = stored.split("$")
    except ValueError:
        return False
    return hmac.compare_digest(hash_password(password, salt), stored)


def create_schema(config, admin_username, admin_password):
    conn = db_connect(config)
    try:
        for stmt in SCHEMA:
            conn.run(stmt)
        conn.run("INSERT INTO tenants (id, name) VALUES (0, :n)", n=DEFAULT_TENANT)
        conn.run("INSERT INTO users (id, username, password, role, api_token_key)"
                 " VALUES (0, :u, :p, 'sys_admin', :k)",
                 u=admin_username, p=hash_password(admin_password), k=os.urandom(16).hex())
    finally:
        conn.close()


class Store:
    def __init__(self, config):
        self.config = config
        self._auth_cache = {}
        self._lock = threading.Lock()

    def run(self, sql, **params):
        """(rows, column names) of one statement, on a connection of its own."""
        rows, columns = self._run(sql, **params)
        return rows or [], [c["name"] for c in columns or []]

    def _run(self, sql, **params):
        conn = db_connect(self.config, timeout=5)
        try:
            return conn.run(sql, **params), conn.columns
        finally:
            conn.close()

    def probe(self):
        try:
            self._run("SELECT 1")
            return True
        except Exception:  # pylint: disable=broad-except
            return False

    def authenticate(self, username, password):
        """The user's role, or None. A good answer is remembered for 5 s (one DB trip per burst)."""
        key = (username, hashlib.sha256(password.encode()).hexdigest())
        with self._lock:
            hit = self._auth_cache.get(key)
            if hit and hit[1] > time.monotonic():
                return hit[0]
        rows, _ = self._run("SELECT password, role FROM users WHERE username = :u", u=username)
        if not rows or not verify_password(password, rows[0][0]):
            return None
        with self._lock:
            self._auth_cache[key] = (rows[0][1], time.monotonic() + 5)
        return rows[0][1]

    def blueprints(self, tenant):
        rows, _ = self._run("SELECT id, main_file_name, created_at FROM blueprints WHERE tenant = :t"
                            " ORDER BY created_at", t=tenant)
        # description: 4.6's Blueprint has one (storage/resource_models.py), which `cfy
        # blueprints list` reads; the lab's blueprints have none
        return [{"id": r[0], "main_file_name": r[1], "created_at": r[2].isoformat(),
                 "tenant_name": tenant, "description": None} for r in rows]

    def add_blueprint(self, tenant, blueprint_id, main_file_name):
        self._run("INSERT INTO blueprints (id, tenant, main_file_name) VALUES (:i, :t, :m)",
                  i=blueprint_id, t=tenant, m=main_file_name)

    def delete_blueprint(self, tenant, blueprint_id):
        rows, _ = self._run("DELETE FROM blueprints WHERE tenant = :t AND id = :i RETURNING id",
                            t=tenant, i=blueprint_id)
        return bool(rows)
