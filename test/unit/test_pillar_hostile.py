"""Hostile values in every string key of the pillar: each is refused with a message naming its
key (and quoting the value so that it cannot add a line), or it is a secret or PEM text, which
never becomes text anywhere (files and environment variables only: test_module.py and
test/render/test_render_hostile.py show where it goes)."""

import pytest

from formula_code import example_pillar, pillar_util

P = pillar_util()
HOSTILE = {
    "newline": "x\n  cmd.run:\n    - name: reboot",
    "trailing newline": "cfy-mgr1\n",
    "cr": "x\rserver evil 10.6.6.6:80",
    "quotes": "x' \"y",
    "command": "$(reboot)",
    "backticks": "`id`",
    "braces": "{x}",
    "jinja": "{{ 7*7 }}",
    "yaml mapping": "a: b",
    "yaml comment": "x #y",
    "arabic digit": "10.0.0.\u0661",
    "fullwidth": "\uff41dmin",
    "dotdot": "../../etc/sudoers",
    "leading dash": "-rf",
    "space": "a b",
    "nul": "a\0b",
    "empty list": [],
    "mapping": {"a": 1},
    "number": 4.1,
}
# secrets: never shown in a message; each kept when 4.6 can carry it (the admin password: any
# printable ASCII; a database password: P.DB_PASSWORD_RE), at least P.MIN_PASSWORD long and not
# its user's name (README "Safety")
SECRETS = {"admin:password", "database:password", "database:postgres_password",
           "loadbalancer:check_password"}
CLUSTER = "cloudify_ha:clusters:prod"


def string_keys():
    """Every key of pillar.example whose value is a string (list items by index), plus the
    string keys it leaves at their defaults; as (where, path) with where 'cluster' or 'top'."""
    found = []

    def walk(prefix, node):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(prefix + [key], value)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(prefix + [index], value)
        elif isinstance(node, str):
            found.append(tuple(prefix))

    pillar = example_pillar()
    walk([], {k: v for k, v in pillar.items() if k != "clusters"})
    walk(["clusters", "prod"], pillar["clusters"]["prod"])
    for key in ("installer:version", "installer:cli_source", "rest:ca_cert",
                "loadbalancer:ssl_cert", "loadbalancer:bind", "loadbalancer:inter",
                "loadbalancer:timeout_connect", "loadbalancer:timeout_client",
                "loadbalancer:timeout_server", "loadbalancer:admin_socket",
                "loadbalancer:config_path", "leader"):
        path = ("clusters", "prod", *key.split(":"))
        if path not in found:
            found.append(path)
    return found


KEYS = string_keys()


def test_the_walk_finds_every_kind_of_string_key():
    names = {":".join(str(p) for p in k) for k in KEYS}
    for expected in ("lookup:installer_package", "lookup:firewall_dir", "reactor:config_file",
                     "clusters:prod:managers:1:minion_id", "clusters:prod:admin:tenant",
                     "clusters:prod:database:name", "clusters:prod:firewall:rest_sources:1",
                     "clusters:prod:loadbalancer:minion_ids:0", "clusters:prod:cli_hosts:0",
                     "clusters:prod:installer:source", "clusters:prod:loadbalancer:admin_socket"):
        assert expected in names
    assert len(KEYS) >= 45


def with_value(path, value):
    pillar = example_pillar()
    node = pillar
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return pillar


def full_key(path):
    return "cloudify_ha:" + ":".join(str(p) for p in path)


@pytest.mark.parametrize("path", KEYS, ids=[":".join(map(str, k)) for k in KEYS])
@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_value_is_refused_naming_its_key_or_is_a_secret(path, name):
    value = HOSTILE[name]
    errors, _ = P.validate(with_value(path, value))
    key = full_key(path)
    short = ":".join(str(p) for p in path[2:]) if path[0] == "clusters" else None
    if short in SECRETS:
        carried = (P.ADMIN_PASSWORD_RE if short in ("admin:password", "loadbalancer:check_password")
                   else P.DB_PASSWORD_RE)
        kept = isinstance(value, str) and bool(carried.fullmatch(value)) and \
            len(value) >= P.MIN_PASSWORD
        assert (errors == []) is kept, errors
        assert all(str(value) not in e and ascii(value) not in e for e in errors), errors
        return
    assert errors, f"{key} accepted {value!r}"
    # the error names the key (a list item, or a key checked as a whole: its parent)
    named = [e for e in errors if e.startswith(key) or key.startswith(e.split(": ", 1)[0])]
    assert named, errors
    for error in errors:
        # one line, ASCII: the value is quoted, never pasted
        assert "\n" not in error and "\r" not in error and "\0" not in error
        assert error.isascii(), error
        if isinstance(value, str) and len(value) > 3 and value not in ("a: b",):
            assert value not in error or ascii(value) in error, error


@pytest.mark.parametrize("name", ["x\n  evil: true", "prod\n", "prod\u0661", 4.1, False, 1])
def test_a_hostile_or_retyped_cluster_name_is_refused_and_quoted(name):
    """YAML re-types unquoted names: a cluster called `no` is False, `01` is 1."""
    pillar = example_pillar()
    pillar["clusters"][name] = pillar["clusters"].pop("prod")
    errors, _ = P.validate(pillar)
    assert errors[0].startswith(f"cloudify_ha:clusters:{ascii(name)}: cluster name must be ")
    assert all("\n" not in e and e.isascii() for e in errors)


@pytest.mark.parametrize("key", ["lookup", "orchestration", "reactor"])
def test_an_unknown_key_in_a_top_section_is_an_error_naming_it(key):
    pillar = example_pillar()
    pillar.setdefault(key, {})["bogus\nkey"] = 1
    errors, _ = P.validate(pillar)
    assert errors == [f"cloudify_ha:{key}:'bogus\\nkey': unknown key; remove it or fix its "
                      "spelling (see pillar.example)"]


def test_an_unknown_top_level_key_is_an_error_naming_it():
    pillar = example_pillar()
    pillar["clustres"] = {}
    assert P.validate(pillar)[0] == ["cloudify_ha:clustres: unknown key (did you mean "
                                     "'clusters'?); remove it or fix its spelling (see "
                                     "pillar.example)"]


@pytest.mark.parametrize("path, value, fragment", [
    ("loadbalancer:admin_socket", "/run/admin.sock", "is not under HAProxy's own run or lib"),
    ("loadbalancer:admin_socket", "/tmp/haproxy.sock", "e.g. /run/haproxy/admin.sock"),
    ("loadbalancer:admin_socket", "/usr/lib/haproxy/x", "(/run/haproxy/ or /var/lib/haproxy/)"),
    ("loadbalancer:admin_socket", "/run/haproxy", "is not under HAProxy's own run or lib"),
    ("loadbalancer:config_path", "/etc/sudoers", "is not a '.cfg' file under /etc/haproxy/"),
    ("loadbalancer:config_path", "/boot/grub/grub.cfg", "e.g. /etc/haproxy/haproxy.cfg"),
    ("loadbalancer:config_path", "/etc/haproxy/../passwd.cfg", "under /etc/haproxy/"),
    ("database:name", "template1", "is PostgreSQL's own or one the installer drops"),
    ("database:name", "stage", "give Cloudify its own"),
    ("loadbalancer:inter", "0", "is not an HAProxy time from 100ms to 1h"),
    ("loadbalancer:timeout_server", "999999999d", "is not an HAProxy time from 1s to 24h"),
    ("loadbalancer:fall", 10 ** 12, "must be a whole number from 1 to 100"),
    ("waits:install", 10 ** 12, "from 60 to 86400"),
    ("waits:active_node", 10 ** 12, "from 0 to 3600"),
    ("installer:source", "http://mirror.example.com/cfy.rpm", "give installer:source_hash"),
    ("installer:cli_source_hash", "md5=0123456789abcdef0123456789abcdef", "sha256=<64 hex"),
    ("installer:version", "4.10\n", "is not a package version"),
    ("firewall:rest_sources:1", "10.0.1.5/24", "host bits zero"),
    ("database:name", "Cloudify", "lower-case"),
    ("database:username", "postgres", "is the superuser"),
    ("admin:password", "pw\nsecond line", "must be one line"),
])
def test_plausible_but_harmful_values_are_refused(path, value, fragment):
    pillar = with_value(("clusters", "prod", *[int(p) if p.isdigit() else p
                                               for p in path.split(":")]), value)
    errors, _ = P.validate(pillar)
    assert len(errors) == 1 and fragment in errors[0], errors


@pytest.mark.parametrize("path", ["database:ca_key", "database:client_key",
                                  "loadbalancer:ssl_cert"])
def test_a_key_that_is_not_pem_is_refused_without_showing_it(path):
    key = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC-the-secret-key-material"
    errors, _ = P.validate(with_value(("clusters", "prod", *path.split(":")), key))
    assert errors == [f"{CLUSTER}:{path}: the value is not PEM text (-----BEGIN ...----- ... "
                      "-----END ...-----)"]


def test_an_unquoted_yaml_version_is_refused_not_rounded():
    # `version: 4.10` in YAML is the float 4.1: it must be quoted
    errors, _ = P.validate(with_value(("clusters", "prod", "installer", "version"), 4.10))
    assert errors == [f"{CLUSTER}:installer:version: 4.1 is not a package version such as '4.6' "
                      "or '4.5.5' (a string: quote it in YAML, 4.10 unquoted is the number 4.1)"]


def test_pillar_example_documents_every_key_of_the_schema():
    pillar = example_pillar()
    prod = pillar["clusters"]["prod"]
    sections = {
        "cloudify_ha": (pillar, P.TOP_KEYS),
        "lookup": (pillar["lookup"], P.LOOKUP_KEYS),
        "orchestration": (pillar["orchestration"], P.ORCHESTRATION_KEYS),
        "reactor": (pillar["reactor"], P.REACTOR_KEYS),
        "clusters:prod": (prod, P.CLUSTER_DEFAULTS),
        "managers:0": (prod["managers"][0], P.MANAGER_KEYS),
        "loadbalancer": (prod["loadbalancer"], P.LOADBALANCER_DEFAULTS),
        "packages": (pillar["packages"], P.PACKAGES_FAMILIES),
        "packages:RedHat": (pillar["packages"]["RedHat"], P.PACKAGES_KEYS),
        "packages:RedHat:repos:0": (pillar["packages"]["RedHat"]["repos"][0], P.REPO_KEYS),
        **{name: (prod[name], P.CLUSTER_DEFAULTS[name])
           for name in ("admin", "rest", "database", "installer", "firewall")},
    }
    missing = {name: sorted(set(schema) - set(given)) for name, (given, schema) in
               sections.items() if set(schema) - set(given)}
    assert missing == {}
