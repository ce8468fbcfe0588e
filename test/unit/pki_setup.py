"""A database PKI made with `cryptography` (every way 4.6 refuses a key, beside a valid RSA
pair), for the unit tests of the pillar's key checks (its fixture: test/unit/conftest.py)."""

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from formula_code import example_pillar


def _key(kind="rsa"):
    return rsa.generate_private_key(65537, 2048) if kind == "rsa" else \
        ec.generate_private_key(ec.SECP256R1())


def _cert(subject_key, cn, issuer_key=None, issuer_name=None, ca=False):
    now = datetime.datetime(2026, 1, 1)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer_name or name).public_key(subject_key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now)
               .not_valid_after(now + datetime.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return builder.sign(issuer_key or subject_key, hashes.SHA256()).public_bytes(
        serialization.Encoding.PEM).decode()


def _pem(key, password=None, traditional=False):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL if traditional else
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password) if password else
        serialization.NoEncryption()).decode()


def _broken(key):
    """The key with a wrong CRT exponent: readable, but `openssl rsa -check` fails it."""
    n = key.private_numbers()
    return rsa.RSAPrivateNumbers(n.p, n.q, n.d, n.dmp1 + 2, n.dmq1, n.iqmp,
                                 n.public_numbers).private_key(
                                     unsafe_skip_rsa_key_validation=True)


def make_pki():
    """A valid RSA pair (CA, client) and every way 4.6 refuses one."""
    ca_key, client_key, other_key, ec_key = _key(), _key(), _key(), _key("ec")
    ca_cert = _cert(ca_key, "db CA", ca=True)
    ca_name = x509.load_pem_x509_certificate(ca_cert.encode()).subject
    other_ca = _cert(other_key, "another CA", ca=True)
    other_name = x509.load_pem_x509_certificate(other_ca.encode()).subject
    return {
        "ca_cert": ca_cert, "ca_key": _pem(ca_key),
        "client_cert": _cert(client_key, "cloudify", ca_key, ca_name),
        "client_key": _pem(client_key, traditional=True),
        # the refusals
        "ec_key": _pem(ec_key),
        "ec_client_cert": _cert(ec_key, "cloudify", ca_key, ca_name),
        "encrypted_pkcs8": _pem(client_key, password=b"secret"),
        "encrypted_traditional": _pem(client_key, password=b"secret", traditional=True),
        "other_key": _pem(other_key),
        "other_ca": other_ca,
        "client_cert_of_other_ca": _cert(client_key, "cloudify", other_key, other_name),
        "inconsistent_key": _pem(_broken(client_key)),
        "garbage_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
                       "-----END PRIVATE KEY-----\n",
        "garbage_cert": "-----BEGIN CERTIFICATE-----\nMIIBdummy\n-----END CERTIFICATE-----\n",
    }


def database(pki, **changes):
    pillar = example_pillar()
    db = pillar["clusters"]["prod"]["database"]
    db.update({k: pki[k] for k in ("ca_cert", "ca_key", "client_cert", "client_key")})
    db.update({k: pki[v] for k, v in changes.items()})
    return pillar
