"""Every config.yaml the formula writes (_modules/cloudify_ha.py _manager_config), for the leader
and for a joiner, from pillar.example and its variants, passes the emulated installer's 4.6
rules (test/lab/cfyemu/installer.py: validate, its key checks with openssl included, and the
client certificate copy 4.6 runs unconditionally with SSL on): an install on a real 4.6 would
not stop at validation. (`../shared/real-4.6/mi46/mi46-validate` runs 4.6's own validate() on
them by hand.) A key 4.6 refuses, the pillar refuses first."""

import copy

import pytest

from formula_code import example_pillar, execution_module, pillar_util
from lab.cfyemu import installer
from pki_setup import database

M = execution_module()
P = pillar_util()


def variants():
    base = example_pillar()
    yield "pillar.example", base
    other = copy.deepcopy(base)
    other["clusters"]["prod"]["database"].update(name="cloudify_prod", username="cfy_prod")
    yield "another database name and user", other


@pytest.fixture
def written(tmp_path, monkeypatch):
    """The formula's certificate files and the installer's /etc/cloudify, under tmp_path."""
    monkeypatch.setattr(M, "CERT_DIR", str(tmp_path / "cloudify_ha"))
    monkeypatch.setattr(installer, "ETC", tmp_path / "etc-cloudify")
    return tmp_path


@pytest.mark.parametrize("label, pillar", list(variants()), ids=[v[0] for v in variants()])
@pytest.mark.parametrize("role", ["leader", "joiner"])
def test_the_formulas_config_yaml_passes_46s_validation(written, label, pillar, role):
    built = P.plan(pillar)
    assert built["errors"] == [], built["errors"]
    settings = built["clusters"]["prod"]
    leader, follower = settings["managers"][0], settings["managers"][1]
    joining = None if role == "leader" else {"master_ip": leader["private_ip"],
                                             "database_ip": settings["database"]["host"]}
    config = M._manager_config(settings, leader if role == "leader" else follower, joining)
    installer.config_rules(config, joining=joining is not None)  # raises InstallError if not
    installer._copy_client_certificate(config)
    assert (written / "etc-cloudify" / "ssl" / "postgresql.crt").read_text() == \
        settings["database"]["client_cert"]
    if joining:
        assert config["cluster"] == {"master_ip": leader["private_ip"],
                                     "node_name": follower["name"],
                                     "host_ip": follower["private_ip"]}
        assert config["postgresql_client"]["host"] == settings["database"]["host"]


def test_a_config_without_the_cas_key_is_what_46_refuses():
    """The rules above can fail: 4.6 refuses a CA given without its key (cloudify-4.6.md 0.2)."""
    config = {"manager": {"private_ip": "10.0.0.11", "public_ip": "10.0.0.11",
                          "security": {"admin_password": "x"}},
              "postgresql_client": {"host": "10.0.0.5", "ssl_enabled": True,
                                    "postgres_password": "y"},
              "ssl_inputs": {"ca_cert_path": "/nonexistent/ca.pem"}}
    with pytest.raises(installer.InstallError, match="ca_key_path was not provided"):
        installer.config_rules(config, joining=False)


def test_a_rest_ssl_managers_config_yaml_passes_46s_validation(written):
    """REST SSL (one manager: 4.6's join speaks http:80 only) needs no certificate input: 4.6's
    nginx step generates the external certificate (nginx.py _handle_external_cert), so the
    formula writes none and 4.6 validates the file as it is."""
    pillar = copy.deepcopy(example_pillar())
    cluster = pillar["clusters"]["prod"]
    cluster["managers"] = cluster["managers"][:1]
    cluster["rest"] = {"ssl": True}
    built = P.plan(pillar)
    assert built["errors"] == [], built["errors"]
    settings = built["clusters"]["prod"]
    config = M._manager_config(settings, settings["managers"][0])
    assert config["manager"]["security"]["ssl_enabled"] is True
    assert not {"external_cert_path", "external_key_path"} & set(config["ssl_inputs"])
    installer.config_rules(config, joining=False)


@pytest.mark.parametrize("changes, key, rule", [
    ({"client_key": "ec_key", "client_cert": "ec_client_cert"}, "client_key",
     "(input name: postgresql_client_key_path) is invalid "),
    ({"ca_key": "ec_key"}, "ca_key", "(input name: ca_key_path) is invalid "),
    ({"client_key": "encrypted_pkcs8"}, "client_key",
     "(input name: postgresql_client_key_path) is invalid "),
    ({"client_key": "other_key"}, "client_key", "(postgresql_client_key_path) does not match the "
                                                "cert"),
])
def test_a_key_46s_rules_refuse_is_refused_by_the_pillar_first(written, pki, changes, key, rule):
    """The same keys, two verdicts: the pillar's (before any host is touched, naming the key)
    and 4.6's own rules on the config.yaml the formula would have written (validations.py
    _check_ssl_file, _check_key_and_cert, as the emulator runs them)."""
    pillar = database(pki, **changes)
    errors = P.plan(pillar, minion_id="cfy-mgr1.example.com")["errors"]
    assert [e.split(": ", 1)[0] for e in errors] == [f"cloudify_ha:clusters:prod:database:{key}"]
    settings = P.cluster_settings("prod", pillar["clusters"]["prod"])
    config = M._manager_config(settings, settings["managers"][0])
    with pytest.raises(installer.InstallError) as raised:
        installer.config_rules(config, joining=False)
    assert rule in str(raised.value)
