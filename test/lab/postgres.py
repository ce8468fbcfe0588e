"""The external database: a real PostgreSQL 15 on the lab's DB host, SSL only, client certificates."""

import glob
import os
import shutil
from pathlib import Path

from .proc import LabError, run, wait_until

PORT = 5432


def pg_bindir(major="15"):
    path = Path(f"/usr/lib/postgresql/{major}/bin")
    if not (path / "initdb").exists():
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        raise LabError(f"PostgreSQL {major} server binaries not found in {path} (found: {found}); "
                       "run 'make deps' to install the Debian 'postgresql' package")
    return path


class PostgresServer:
    """PostgreSQL on `host` (a lab Host), listening on host.ip:5432 with SSL required.

    Authentication: scram-sha-256 over SSL AND a client certificate signed by the lab CA
    (clientcert=verify-ca); any non-SSL connection is rejected by pg_hba.
    """

    def __init__(self, host, directory, ca, superuser_password, subnet_cidr, ip=None, name="db"):
        self.host = host
        self.ip = ip or host.ip  # a second server on the DB host listens on a second address
        self.name = name
        self.dir = Path(directory)
        self.data = self.dir / "data"
        self.sock = self.dir / "sock"
        self.log = self.dir / "postgresql.log"
        self.ca = ca
        self.password = superuser_password
        self.subnet = subnet_cidr
        self.bin = pg_bindir()
        self.client_cert = self.client_key = None

    def _as_postgres(self, argv, **kwargs):
        return self.host.run(["runuser", "-u", "postgres", "--"] + argv, **kwargs)

    def create(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        shutil.chown(self.dir, "postgres", "postgres")
        shutil.chown(self.sock, "postgres", "postgres")
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        shutil.chown(pwfile, "postgres", "postgres")
        try:
            self._as_postgres([self.bin / "initdb", "-D", self.data, "-U", "postgres",
                               f"--pwfile={pwfile}", "--auth-host=scram-sha-256",
                               "--auth-local=peer", "-E", "UTF8", "--no-locale"])
        finally:
            pwfile.unlink()
        cert, key = self.ca.issue(f"{self.name}-server", self.ip, ips=[self.ip])
        for src, dst in ((cert, "server.crt"), (key, "server.key"), (self.ca.cert, "root.crt")):
            shutil.copy(src, self.data / dst)
            shutil.chown(self.data / dst, "postgres", "postgres")
            os.chmod(self.data / dst, 0o600)
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(
                f"\n# cloudify_ha lab\nlisten_addresses = '{self.ip}'\nport = {PORT}\n"
                f"unix_socket_directories = '{self.sock}'\nssl = on\n"
                "ssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                "ssl_ca_file = 'root.crt'\npassword_encryption = 'scram-sha-256'\n"
                "max_connections = 200\nshared_buffers = 32MB\nfsync = off\n"
                "synchronous_commit = off\nfull_page_writes = off\n")
        (self.data / "pg_hba.conf").write_text(
            "# cloudify_ha lab: SSL with a CA-signed client certificate, or nothing\n"
            "local all postgres peer\n"
            f"hostssl all all {self.subnet} scram-sha-256 clientcert=verify-ca\n"
            "hostnossl all all 0.0.0.0/0 reject\n")
        self.client_cert, self.client_key = self.ca.issue("lab-client", "lab", client=True)
        return self

    def start(self):
        self._as_postgres([self.bin / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60",
                           "start"])
        wait_until(lambda: self.query("select 1", check=False).returncode == 0, 30,
                   "PostgreSQL to accept SSL connections")

    def stop(self):
        if (self.data / "postmaster.pid").exists():
            self._as_postgres([self.bin / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"],
                              check=False)

    def running(self):
        return self._as_postgres([self.bin / "pg_ctl", "-D", self.data, "status"],
                                 check=False).returncode == 0

    def dsn(self, dbname="postgres", sslmode="verify-full", user="postgres"):
        parts = [f"host={self.ip}", f"port={PORT}", f"dbname={dbname}", f"user={user}",
                 f"sslmode={sslmode}", f"sslrootcert={self.ca.cert}"]
        if sslmode != "disable":
            parts += [f"sslcert={self.client_cert}", f"sslkey={self.client_key}"]
        return " ".join(parts)

    def query(self, sql, dbname="postgres", sslmode="verify-full", check=True, via=None,
              password=None):
        """Run sql with psql as the superuser; from the machine, or from inside host `via`.

        The password travels in PGPASSWORD, never on argv.
        """
        argv = ["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", self.dsn(dbname, sslmode), "-c", sql]
        env = {"PATH": os.environ["PATH"], "PGPASSWORD": password or self.password,
               "PGCONNECT_TIMEOUT": "5"}
        if via is not None:
            return via.run(argv, check=check, env=env)
        return run(argv, check=check, env=env)

    def databases(self):
        out = self.query("select datname from pg_database where not datistemplate").stdout
        return set(out.split())
