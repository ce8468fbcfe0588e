"""The external database: a real PostgreSQL 15 on the lab's DB host, SSL only, passwords, and
client certificates where a knob requires them."""

import glob
import os
import shutil
import socket
import ssl
import struct
from pathlib import Path

from .proc import LabError, run, wait_until

PORT = 5432


def presented_certificate(ip, port=PORT):
    """The DER of the certificate PostgreSQL at ip:port presents after an SSLRequest (from the
    machine, which reaches every lab address); not verified: the knob compares it whole."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((ip, port), timeout=5) as sock:
        sock.sendall(struct.pack("!II", 8, 80877103))
        if sock.recv(1) != b"S":
            raise LabError(f"PostgreSQL on {ip}:{port} refused SSL")
        with context.wrap_socket(sock) as tls:
            return tls.getpeercert(binary_form=True)


def pg_bindir(major="15"):
    path = Path(f"/usr/lib/postgresql/{major}/bin")
    if not (path / "initdb").exists():
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        raise LabError(f"PostgreSQL {major} server binaries not found in {path} (found: {found}); "
                       "run 'make deps' to install the Debian 'postgresql' package")
    return path


class PostgresServer:
    """PostgreSQL on `host` (a lab Host), listening on host.ip:5432 with SSL required.

    Authentication: scram-sha-256 over SSL; any non-SSL connection is rejected by pg_hba. A
    client certificate is optional (a production server for 4.6: its installer creates the
    databases as `postgres` with a password and no client certificate, cloudify-4.6.md section
    0.2) unless `require_client_cert` names the user (verify-ca against the lab CA).
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
        self.client_cert_users = ()

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
        self._install_server_certificate(self.ip, [self.ip], ())
        self._install(self.ca.cert, "root.crt")
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(
                f"\n# cloudify_ha lab\nlisten_addresses = '{self.ip}'\nport = {PORT}\n"
                f"unix_socket_directories = '{self.sock}'\nssl = on\n"
                "ssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                "ssl_ca_file = 'root.crt'\npassword_encryption = 'scram-sha-256'\n"
                "max_connections = 200\nshared_buffers = 32MB\nfsync = off\n"
                "synchronous_commit = off\nfull_page_writes = off\n")
        self._write_hba()
        self.client_cert, self.client_key = self.ca.issue("lab-client", "lab", client=True)
        return self

    def _install(self, src, name):
        shutil.copy(src, self.data / name)
        shutil.chown(self.data / name, "postgres", "postgres")
        os.chmod(self.data / name, 0o600)

    def _install_server_certificate(self, cn, ips, dns):
        cert, key = self.ca.issue(f"{self.name}-server", cn, ips=ips, dns=dns)
        self._install(cert, "server.crt")
        self._install(key, "server.key")
        return cert

    def server_certificate(self, cn=None, ips=None, dns=()):
        """Knob: the server's certificate re-issued by the lab CA with subject CN `cn` and the
        subjectAltName entries `ips` (IP) and `dns` (DNS); by default the lab's own (CN and IP
        entry: the server's address). Returns once the server presents it to a new connection
        (PostgreSQL 10+ loads its SSL files again on a reload)."""
        cert = self._install_server_certificate(self.ip if cn is None else cn,
                                                [self.ip] if ips is None else list(ips), dns)
        wanted = ssl.PEM_cert_to_DER_cert(cert.read_text())
        # verify-ca: the certificate presented until now may name another host (a knob's)
        self.query("SELECT pg_reload_conf()", sslmode="verify-ca")
        wait_until(lambda: presented_certificate(self.ip) == wanted, 30,
                   f"PostgreSQL on {self.ip} to present its new certificate")

    def _write_hba(self):
        # a quoted "all" would be a user named all; the keyword stays bare
        users = [u if u == "all" else f'"{u}"' for u in self.client_cert_users]
        certified = "".join(f"hostssl all {u} {self.subnet} scram-sha-256 clientcert=verify-ca\n"
                            for u in users)
        (self.data / "pg_hba.conf").write_text(
            "# cloudify_ha lab: SSL and a password (and a CA-signed client certificate for the\n"
            "# users named first), or nothing\n"
            "local all postgres peer\n"
            f"{certified}hostssl all all {self.subnet} scram-sha-256\nhostnossl all all 0.0.0.0/0 reject\n")

    def require_client_cert(self, users=()):
        """Knob: the named database users must present a client certificate signed by the lab
        CA (besides SSL and their password); () for none, the default. ("all",) is every user,
        which 4.6's installer cannot work with. Applied at once (a reload: sessions stay)."""
        if any(not user.replace("_", "").isalnum() for user in users):
            raise LabError(f"not a plain database user name: {users!r}")
        self.client_cert_users = tuple(users)
        self._write_hba()
        self.query("SELECT pg_reload_conf()")

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

    def dsn(self, dbname="postgres", sslmode="verify-full", user="postgres", client_cert=True):
        parts = [f"host={self.ip}", f"port={PORT}", f"dbname={dbname}", f"user={user}",
                 f"sslmode={sslmode}", f"sslrootcert={self.ca.cert}"]
        if sslmode != "disable" and client_cert:
            parts += [f"sslcert={self.client_cert}", f"sslkey={self.client_key}"]
        return " ".join(parts)

    def query(self, sql, dbname="postgres", sslmode="verify-full", check=True, via=None,
              password=None, user="postgres", client_cert=True):
        """Run sql with psql (as the superuser by default, with the lab's client certificate);
        from the machine, or from inside host `via`.

        The password travels in PGPASSWORD, never on argv.
        """
        argv = ["psql", "-XAtq", "-v", "ON_ERROR_STOP=1",
                self.dsn(dbname, sslmode, user, client_cert), "-c", sql]
        env = {"PATH": os.environ["PATH"], "PGPASSWORD": password or self.password,
               "PGCONNECT_TIMEOUT": "5"}
        if via is not None:
            return via.run(argv, check=check, env=env)
        return run(argv, check=check, env=env)

    def set_postgres_password(self, new):
        """The superuser's password becomes `new` (the SQL on psql's stdin, never on argv); the
        lab's own is put back with set_postgres_password(lab.passwords["postgres"])."""
        literal = "'" + new.replace("'", "''") + "'"
        run(["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", self.dsn()], input=f"ALTER ROLE postgres "
            f"PASSWORD {literal};\n", env={"PATH": os.environ["PATH"],
                                          "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "5"})
        self.password = new

    def databases(self):
        out = self.query("select datname from pg_database where not datistemplate").stdout
        return set(out.split())
