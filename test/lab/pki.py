"""The lab's certificate authority: a CA, server certificates with IP SANs, client certificates.

Every key is RSA: 4.6's installer checks the CA key and the database client key with `openssl rsa
-check` (cfy_manager/components/validations.py `_check_ssl_file`), which takes no other kind."""

from pathlib import Path

from .proc import run

KEY = ("-newkey", "rsa:2048")


class LabCA:
    """A throwaway CA under `directory`; every key is 0600."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.cert = self.dir / "ca.crt"
        self.key = self.dir / "ca.key"

    def create(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        run(["openssl", "req", "-x509", *KEY, "-nodes", "-keyout", self.key, "-out", self.cert,
             "-days", "30", "-subj", "/CN=cloudify_ha lab CA"])
        self.key.chmod(0o600)
        return self

    def issue(self, name, cn, ips=(), client=False, dns=(), key_spec=KEY):
        """Issue `name`.crt / `name`.key signed by the CA; returns (cert path, key path).
        key_spec: openssl req's key options (RSA 2048 unless a test wants another kind)."""
        cert, key, csr = (self.dir / f"{name}.{ext}" for ext in ("crt", "key", "csr"))
        ext = self.dir / f"{name}.ext"
        lines = ["basicConstraints=CA:FALSE",
                 f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}"]
        if ips or dns:
            lines.append("subjectAltName=" + ",".join([f"IP:{ip}" for ip in ips] +
                                                      [f"DNS:{name}" for name in dns]))
        ext.write_text("\n".join(lines) + "\n")
        run(["openssl", "req", *key_spec, "-nodes", "-keyout", key, "-out", csr,
             "-subj", f"/CN={cn}"])
        run(["openssl", "x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
             "-CAcreateserial", "-out", cert, "-days", "30", "-extfile", ext])
        key.chmod(0o600)
        csr.unlink()
        ext.unlink()
        return cert, key
