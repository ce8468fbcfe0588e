"""The manager's data in the external PostgreSQL: users (a system role each, and their roles in
tenants), tenants, blueprints, and what 4.6's snapshots move (secrets, executions, snapshots,
licenses: snapshots.py).

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
# _restore_admin_user); `password_hash` is the emulator's own hash (store.hash_password), the
# column 4.6 names `password` and also fills with a hash
SCHEMA = [
    "CREATE TABLE users (id serial UNIQUE NOT NULL, username text PRIMARY KEY,"
    " password_hash text NOT NULL, role text NOT NULL, active boolean NOT NULL DEFAULT true,"
    " last_login_at text, api_token_key text)",
    "CREATE TABLE tenants (name text PRIMARY KEY)",
    # 4.6's users_tenants: a user's role in a tenant (storage/management_models.py UserTenantAssoc)
    "CREATE TABLE user_tenants (username text NOT NULL, tenant text NOT NULL, role text NOT NULL,"
    " PRIMARY KEY (username, tenant))",
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
        conn.run("INSERT INTO tenants (name) VALUES (:n)", n=DEFAULT_TENANT)
        # 4.6's create_default_user_tenant_and_roles (storage/storage_utils.py): the bootstrap
        # admin (users.id 0) gets the first role (sys_admin) and the role `user` in the default
        # tenant
        conn.run("INSERT INTO users (id, username, password_hash, role, api_token_key)"
                 " VALUES (0, :u, :p, 'sys_admin', :k)",
                 u=admin_username, p=hash_password(admin_password), k=os.urandom(16).hex())
        conn.run("INSERT INTO user_tenants (username, tenant, role) VALUES (:u, :t, 'user')",
                 u=admin_username, t=DEFAULT_TENANT)
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
        """(the user, or None when there is none, and whether the password is its own). The user
        is {"username", "role", "active", "tenants": {tenant: role}}. A good answer is
        remembered for 5 s (one DB trip per burst)."""
        key = (username, hashlib.sha256(password.encode()).hexdigest())
        with self._lock:
            hit = self._auth_cache.get(key)
            if hit and hit[1] > time.monotonic():
                return hit[0], True
        user = self.user(username, with_hash=True)
        if user is None:
            return None, False
        if not verify_password(password, user.pop("password_hash")):
            return user, False
        with self._lock:
            self._auth_cache[key] = (user, time.monotonic() + 5)
        return user, True

    def user(self, username, with_hash=False):
        """A user as authorization reads it, or None."""
        rows, _ = self._run("SELECT username, role, active, last_login_at, password_hash FROM users"
                            " WHERE username = :u", u=username)
        if not rows:
            return None
        tenants, _ = self._run("SELECT tenant, role FROM user_tenants WHERE username = :u",
                               u=username)
        user = {"username": rows[0][0], "role": rows[0][1], "active": rows[0][2],
                "last_login_at": rows[0][3], "tenants": {t: r for t, r in tenants}}
        if with_hash:
            user["password_hash"] = rows[0][4]
        return user

    def tenant_exists(self, name):
        rows, _ = self._run("SELECT 1 FROM tenants WHERE name = :n", n=name)
        return bool(rows)

    def create_user(self, username, password, role):
        """False when a user of that name exists."""
        rows, _ = self._run("INSERT INTO users (username, password_hash, role) VALUES (:u, :p, :r)"
                            " ON CONFLICT (username) DO NOTHING RETURNING username",
                            u=username, p=hash_password(password), r=role)
        return bool(rows)

    def update_user(self, username, password=None, role=None):
        """False when there is no such user."""
        if password is not None:
            rows, _ = self._run("UPDATE users SET password_hash = :p WHERE username = :u "
                                "RETURNING username", u=username, p=hash_password(password))
        else:
            rows, _ = self._run("UPDATE users SET role = :r WHERE username = :u RETURNING username",
                                u=username, r=role)
        with self._lock:
            self._auth_cache = {k: v for k, v in self._auth_cache.items() if k[0] != username}
        return bool(rows)

    def delete_user(self, username):
        """False when there is no such user."""
        self._run("DELETE FROM user_tenants WHERE username = :u", u=username)
        rows, _ = self._run("DELETE FROM users WHERE username = :u RETURNING username", u=username)
        with self._lock:
            self._auth_cache = {k: v for k, v in self._auth_cache.items() if k[0] != username}
        return bool(rows)

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
