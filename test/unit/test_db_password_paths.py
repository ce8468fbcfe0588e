"""The characters a database password keeps through 4.6, found by running its four paths (the
emulator's, each citing 4.6: test/lab/cfyemu/README.md) on every printable ASCII character in
several positions: the installer's `su - postgres -c "<script> <db> <user> <password> <host>"`
(split by shlex, as common.sudo splits a string, then run by bash, postgres' login shell),
create_default_db.sh (its unquoted ${password}, then the SQL literal `'...'`; psql here only
records what it is asked), ~postgres/.pgpass (libpq's reading of a line: fe-connect.c
passwordFromFile) and the REST service's URI (SQLAlchemy 1.2's parse: common.parse_db_uri), and
Python 2's str (non-ASCII: UnicodeEncodeError). The pillar (cloudify_ha_pillar.DB_PASSWORD_RE)
keeps only characters every position carries, and refuses each one some position mangles, or
that it refuses on purpose (CONSERVATIVE)."""

import os
import shlex
import string
import subprocess

import pytest

from formula_code import pillar_util
from lab.cfyemu import common, installer

P = pillar_util()
HOST = "10.0.0.5"
# positions and company each character is tried in ({c}: the character); the directory the
# shell runs in holds files those globs match (postgres' home is never empty)
TEMPLATES = ["Pw-{c}-12345", "{c}Pw-12345", "Pw-12345{c}", "{c}", "Pw-{c}a]-12345",
             "Pw-[a{c}-12345", "Pw-{c}a,b}-x", "Pw-{a,b{c}-x", "Pw-{c}41-{c}"]
FILES = ("Pw-a-12345", "Pw-a-x", "Pw-b-x")
# refused though the four paths carry them: '!' is bash's history expansion wherever a shell is
# interactive; '/' ends the password in stage's and composer's `postgres://user:<password>@...`
# (Node's URL parsing; 4.6's stage.py _set_db_url, composer.py _set_db_url)
CONSERVATIVE = {"!", "/"}
FAKE_PSQL = "() { printf '%s\\n' \"$*\" >> \"$PSQL_LOG\"; }"


def through_shell(password, workdir):
    """(the host, the CREATE USER statement) create_default_db.sh sends psql when 4.6 runs it
    with this password; None when the shell refuses the command."""
    command = 'su - postgres -c "{cmd} {db} {user} {password} {host}"'.format(
        cmd=installer.CREATE_DB_SCRIPT, db="cloudify_db", user="cloudify", password=password,
        host=HOST)
    try:
        argv = shlex.split(command)
    except ValueError:
        return None
    if argv[:4] != ["su", "-", "postgres", "-c"] or len(argv) != 5:
        return None
    log = workdir / "psql.log"
    log.write_text("")
    proc = subprocess.run(["bash", "-c", argv[4]], cwd=workdir, capture_output=True, text=True,
                          check=False, timeout=30,
                          env={"PATH": os.environ["PATH"], "PSQL_LOG": str(log), "HOME": "/x",
                               "BASH_FUNC_psql%%": FAKE_PSQL})
    if proc.returncode:
        return None
    created = [line for line in log.read_text().splitlines() if "CREATE USER" in line]
    if len(created) != 1:
        return None
    host, _, sql = created[0].removeprefix("-h ").partition(" -c ")
    return host, sql


def pgpass_password(line):
    """libpq's password from a ~/.pgpass line whose first four fields match (fe-connect.c
    passwordFromFile): four fields of which `\\` escapes the next character and `:` ends each,
    then the rest, up to an unescaped `:`, with each `\\` dropped before the character it
    escapes."""
    rest = line
    for _ in range(4):
        index, escaped = 0, False
        while index < len(rest) and (escaped or rest[index] != ":"):
            escaped = not escaped and rest[index] == "\\"
            index += 1
        rest = rest[index + 1:]
    out, index = [], 0
    while index < len(rest) and rest[index] != ":":
        if rest[index] == "\\" and index + 1 < len(rest):
            index += 1
        out.append(rest[index])
        index += 1
    return "".join(out)


def carried(password, workdir):
    """The paths this password comes through unchanged (each one's name), as a set."""
    paths = set()
    try:
        installer._py2_str(password)  # pylint: disable=protected-access
    except installer.InstallError:
        return paths
    paths.add("python2")
    shell = through_shell(password, workdir)
    if shell is not None and shell[0] == HOST:
        paths.add("arguments")  # the shell kept the script's arguments in their places
        # the password reached the SQL literal as it is, and the literal holds it
        # (standard_conforming_strings on: only a quote ends or changes it)
        if shell[1] == f"CREATE USER cloudify WITH PASSWORD '{password}';" and "'" not in password:
            paths.add("sql")
    if pgpass_password(f"{HOST}:5432:postgres:postgres:{password}") == password:
        paths.add("pgpass")
    uri = common.parse_db_uri(common.rest_db_uri({"postgresql_client": {
        "username": "cloudify", "password": password, "host": HOST, "db_name": "cloudify_db"}}))
    if (uri["username"], uri["password"], uri["host"], uri["database"]) == (
            "cloudify", password, HOST, "cloudify_db"):
        paths.add("uri")
    return paths


ALL = {"python2", "arguments", "sql", "pgpass", "uri"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("postgres-home")
    for name in FILES:
        (path / name).write_text("")
    return path


def test_the_pillars_database_password_characters_are_carried_in_every_position(workdir):
    allowed = [c for c in string.printable if P.DB_PASSWORD_RE.fullmatch(c)]
    assert set(allowed) == set(string.ascii_letters + string.digits + "_.,+=^@-")
    punctuation = [c for c in allowed if not c.isalnum()]
    for char in punctuation + [string.ascii_letters + string.digits]:
        for template in TEMPLATES:
            password = template.replace("{c}", char)
            if P.DB_PASSWORD_RE.fullmatch(password):
                assert carried(password, workdir) == ALL, password


def test_every_character_a_path_mangles_is_refused_by_the_pillar(workdir):
    mangled, kept = {}, set()
    for char in [c for c in string.printable if c not in "\t\n\r\x0b\x0c"] + ["\u00e9"]:
        if P.DB_PASSWORD_RE.fullmatch(char):
            continue
        for template in TEMPLATES:
            lost = ALL - carried(template.replace("{c}", char), workdir)
            if lost:
                mangled[char] = (template.replace("{c}", char), sorted(lost))
                break
        else:
            kept.add(char)
    assert kept == CONSERVATIVE, kept
    # a few witnesses, as cloudify-4.6.md section 0.4 measured them on 4.6's own script
    assert mangled[" "] == ("Pw- -12345", ["arguments", "sql"])  # two words: "two words"
    assert mangled["'"] == ("Pw-'-12345", ["arguments", "sql"])  # a syntax error: "it's"
    assert mangled["$"] == ("Pw-$-12345", ["sql"])  # $- expanded: "a$HOME"
    assert mangled[":"] == ("Pw-:-12345", ["pgpass"])  # "p:w"
    assert mangled["%"] == ("Pw-%41-%", ["uri"])
    assert mangled["*"] == ("Pw-*-12345", ["sql"])  # the glob matched a file
    assert mangled["\u00e9"][1] == sorted(ALL)
    for char, (password, _) in mangled.items():
        errors, _ = P.validate(_with_db_password(password), "cfy-mgr1.example.com")
        assert len(errors) == 1 and "has a character 4.6 cannot carry" in errors[0], char


def _with_db_password(password):
    from formula_code import example_pillar  # pylint: disable=import-outside-toplevel

    pillar = example_pillar()
    pillar["clusters"]["prod"]["database"]["password"] = password
    return pillar
