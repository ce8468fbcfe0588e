"""The database's keys and certificates, checked as 4.6's validate() checks them (`openssl rsa
-check` on both keys, the client key's modulus against its certificate's) and more (the CA key is
the CA certificate's, the CA signed the client certificate), before any host is touched:
_utils/cloudify_ha_pillar.py `pki_problems`, with `cryptography` and with its `openssl`
fallback alike. Each problem names the key and never shows it."""

import pytest

from pki_setup import database
from formula_code import pillar_util

P = pillar_util()
PROD = "cloudify_ha:clusters:prod:database"
MGR1 = "cfy-mgr1.example.com"


@pytest.fixture(params=["cryptography", "openssl"])
def backend(request, monkeypatch):
    """Each check through both backends: `cryptography` (every Salt onedir ships it) and the
    `openssl` command it falls back to; the cache emptied, as in a new process."""
    monkeypatch.setattr(P, "_PKI_CHECKED", {})
    chosen = P._pki_cryptography if request.param == "cryptography" else P._pki_openssl
    monkeypatch.setattr(P, "_pki_backend", lambda: chosen)
    return request.param


def key_material(pem):
    """The lines of a PEM between its BEGIN and END lines."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def test_a_valid_rsa_pair_passes_on_a_manager_and_on_the_master(pki, backend):
    assert P.validate(database(pki), MGR1) == ([], [])
    assert P.validate(database(pki)) == ([], [])


CASES = [
    # (the database key set to which of pki's PEMs, the key the error names, a fragment)
    ({"client_key": "ec_key", "client_cert": "ec_client_cert"}, "client_key",
     ("is an EC key", "is another kind of key")),
    ({"ca_key": "ec_key"}, "ca_key", ("is an EC key", "is another kind of key")),
    ({"client_key": "encrypted_pkcs8"}, "client_key", ("is encrypted",)),
    ({"client_key": "encrypted_traditional"}, "client_key", ("is encrypted",)),
    ({"ca_key": "encrypted_pkcs8"}, "ca_key", ("is encrypted",)),
    ({"client_key": "other_key"}, "client_key", ("is not the key of database:client_cert",)),
    ({"ca_key": "other_key"}, "ca_key", ("is not the key of database:ca_cert",)),
    ({"client_cert": "client_cert_of_other_ca"}, "client_cert",
     ("is not signed by database:ca_cert",)),
    ({"ca_cert": "other_ca", "ca_key": "other_key"}, "client_cert",
     ("is not signed by database:ca_cert",)),
    ({"client_key": "garbage_key"}, "client_key", ("is not a private key openssl can read",)),
    ({"ca_key": "inconsistent_key"}, "ca_key", ("or fails its RSA check",)),
    ({"client_cert": "garbage_cert"}, "client_cert", ("is not a PEM X.509 certificate",)),
]


@pytest.mark.parametrize("changes, key, fragments", CASES,
                         ids=[",".join(f"{k}={v}" for k, v in c[0].items()) for c in CASES])
def test_a_key_4_6_refuses_is_refused_naming_it_and_never_showing_it(pki, backend, changes,
                                                                    key, fragments):
    errors, _ = P.validate(database(pki, **changes), MGR1)
    assert [e.split(": ", 1)[0] for e in errors] == [f"{PROD}:{key}"], errors
    assert any(f in errors[0] for f in fragments), errors
    if key.endswith("_key"):
        input_name = P.KEY_INPUTS[key]
        assert f"(input name: {input_name}) is invalid" in errors[0] or "match" in errors[0] or \
            "internal certificates" in errors[0], errors
    for pem in pki.values():
        if "PRIVATE KEY" in pem:
            assert not any(line in errors[0] for line in key_material(pem)), errors


def test_the_master_holds_no_key_and_checks_the_certificates(pki, backend):
    pillar = database(pki, client_cert="client_cert_of_other_ca")
    for key in ("ca_key", "client_key"):
        del pillar["clusters"]["prod"]["database"][key]
    errors, _ = P.validate(pillar)
    assert errors == [f"{PROD}:client_cert: is not signed by database:ca_cert (nor by any "
                      "certificate in it): give a client certificate that CA issued"]


def test_a_ca_bundle_may_hold_the_issuer_after_another_certificate(pki, backend):
    pillar = database(pki)
    db = pillar["clusters"]["prod"]["database"]
    db["ca_cert"] = pki["other_ca"] + db["ca_cert"]
    db["ca_key"] = pki["other_key"]  # the internal CA is the bundle's first certificate
    assert P.validate(pillar, MGR1) == ([], [])


def test_an_ec_key_is_refused_by_the_orchestrations_plan(pki):
    result = P.plan(database(pki, client_key="ec_key", client_cert="ec_client_cert"), None, MGR1)
    assert result["clusters"] == {}
    assert result["errors"][0].startswith(f"{PROD}:client_key: is an EC key")


def test_the_checks_run_once_per_content(pki, monkeypatch):
    """Every SLS render validates the pillar: the same PEMs are checked once."""
    calls = []
    monkeypatch.setattr(P, "_PKI_CHECKED", {})

    def counting(what, *pems):
        calls.append(what)
        return P._pki_cryptography(what, *pems)

    counting.__name__ = "_pki_cryptography"
    monkeypatch.setattr(P, "_pki_backend", lambda: counting)
    for _ in range(3):
        assert P.validate(database(pki), MGR1) == ([], [])
    assert sorted(calls) == ["cert", "cert", "key", "key", "signed"]
    assert P.validate(database(pki, client_key="other_key"), MGR1)[0]
    assert len(calls) == 10


def test_without_cryptography_the_openssl_fallback_is_chosen(monkeypatch):
    import builtins  # pylint: disable=import-outside-toplevel

    real_import = builtins.__import__

    def no_cryptography(name, *args, **kwargs):
        if name.startswith("cryptography"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cryptography)
    assert P._pki_backend() is P._pki_openssl


def test_without_openssl_either_a_key_is_refused_as_unchecked(pki, monkeypatch):
    monkeypatch.setattr(P, "_PKI_CHECKED", {})
    monkeypatch.setattr(P, "_pki_backend", lambda: P._pki_openssl)
    monkeypatch.setattr(P.shutil, "which", lambda name: None)
    errors, _ = P.validate(database(pki), MGR1)
    assert [e.split(": ", 1)[0] for e in errors] == [f"{PROD}:ca_key", f"{PROD}:client_key"]
    assert all("neither Python's cryptography package nor openssl" in e for e in errors)
