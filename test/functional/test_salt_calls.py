"""Every call the formula makes into Salt, made for real on this Salt, as the formula makes it.

`salt_calls.formula_calls()` finds the calls by reading the formula's code; `EXERCISES` holds one
exercise per call and the way it is called (positional count, keyword names), and the first
test fails while the two differ: a new call, or a new keyword at a call, needs its exercise here.
Each exercise calls Salt's own function through Salt's real loaders (a minion's, the master's
minion, the runners) or imports, with the same keyword names, in a sandbox: the commands are
`false` and `sh`, every file, root, cache and socket is under tmp. No function of Salt's is
replaced. A signature one Salt lacks fails here (TypeError), and so does a keyword a function
only swallows in its ``**kwargs`` (it would be ignored) unless the exercise says why that is
right. `make test` runs this on every Salt the formula supports.

Two calls need a running master (``saltutil.cmd``, ``LocalClient.cmd``): here they take their
arguments and stop at "the salt master could not be contacted"; the lab makes them against one.
"""

import base64
import contextlib
import dataclasses
import hashlib
import importlib
import inspect
import json
import os
import pathlib
import stat
import textwrap
from typing import Any, Callable, Optional

import pytest
import salt.config
import salt.exceptions
import salt.loader
import salt.minion
import salt.version
import yaml

from functional_setup import example_pillar
from salt_calls import (REF, Api, attr, call_shape, calls_in_jinja, calls_in_python,
                        formula_calls, jinja_env)

SALT = salt.version.__version__
MASTER_ID = "sandbox_master"
CACHED_MINION = "mgr9.example.com"  # a minion the master's cache holds grains of


# ---- the sandbox -----------------------------------------------------------------------------
class Sandbox:
    """A minion's loaders (test/functional/conftest.py), a master's minion and runners over a
    master configuration under tmp, and a few files to read, list, hash and render."""

    def __init__(self, loaders, minion_opts, tmp):
        self.minion = loaders.modules
        self.minion_utils = loaders.utils
        self.tmp = tmp
        self.secret = example_pillar()["clusters"]["prod"]["admin"]["password"]
        write(f"{minion_opts['file_roots']['base'][0]}/sandbox/digest.jinja",
              "{{ digest }} {{ cluster }}")
        self.master_opts = master_opts(tmp / "master")
        self.probe_module = "_modules/sandbox_probe.py"
        write(f"{tmp}/master/srv/{self.probe_module}", "def __virtual__():\n    return False\n")
        write(f"{tmp}/master/srv/sandbox/noop.sls",
              "noop:\n  test.succeed_without_changes:\n    - name: {{ pillar['node'] }}\n")
        self.cache_grains()
        self.yaml = yaml_classes()
        self._exit = contextlib.ExitStack()
        self.master_minion = salt.minion.MasterMinion(self.master_opts)
        self.runners = salt.loader.runner(self.master_opts,
                                          utils=salt.loader.utils(self.master_opts))

    def cache_grains(self):
        """The master's minion data cache holds grains of one minion whose key is accepted, as
        a running master's does once that minion has asked for its pillar: written by Salt's
        own handler of that request (where it writes differs between Salts)."""
        # pylint: disable=import-outside-toplevel
        import salt.daemons.masterapi
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        write(f"{self.master_opts['pki_dir']}/minions/{CACHED_MINION}", key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())
        funcs = salt.daemons.masterapi.RemoteFuncs(self.master_opts)
        funcs._pillar(  # pylint: disable=protected-access
            {"id": CACHED_MINION, "grains": {"id": CACHED_MINION, "probe": 1}})
        destroy(funcs)

    def enter(self, context):
        return self._exit.enter_context(context)

    def close(self):
        self._exit.close()
        destroy(self.master_minion)


def destroy(thing):
    """3008's master-side objects want destroy() (older ones have none)."""
    getattr(thing, "destroy", lambda: None)()


def write(path, text):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def master_opts(root):
    write(root / "pillar" / "top.sls", "base:\n  '*':\n    - cloudify_ha\n")
    write(root / "pillar" / "cloudify_ha.sls", "cloudify_ha:\n  reactor:\n    enabled: false\n")
    paths = {
        "root_dir": str(root), "cachedir": str(root / "cache"), "pki_dir": str(root / "pki"),
        "sock_dir": str(root / "sock"), "extension_modules": str(root / "extmods"),
        "log_file": str(root / "master.log"),
        "file_roots": {"base": [str(root / "srv")]},
        "pillar_roots": {"base": [str(root / "pillar")]},
    }
    # in the file too: a LocalClient reads its master's configuration from the file it is given
    (root / "master").write_text(yaml.safe_dump(paths))
    opts = salt.config.master_config(None)
    opts.update(paths, id=MASTER_ID, conf_file=str(root / "master"))
    return opts


def yaml_classes():
    """What the formula's profile reader and writer make of salt.utils.yaml: a tagged mapping,
    a subclass of SafeOrderedDumper that writes it, a subclass of SaltYamlSafeLoader that
    reads it."""
    import salt.utils.yaml  # pylint: disable=import-outside-toplevel

    class Dumper(salt.utils.yaml.SafeOrderedDumper):  # pylint: disable=too-many-ancestors
        pass

    class Loader(salt.utils.yaml.SaltYamlSafeLoader):  # pylint: disable=too-many-ancestors
        pass

    class Tagged(dict):
        pass

    Dumper.add_representer(Tagged, lambda d, data: d.represent_mapping("!Probe", dict(data)))
    Loader.add_constructor("!Probe", lambda loader, node: loader.construct_mapping(node))
    return Tagged, Dumper, Loader


@pytest.fixture(scope="module")
def sandbox(loaders, minion_opts, tmp_path_factory):
    box = Sandbox(loaders, minion_opts, tmp_path_factory.mktemp("salt-calls"))
    try:
        yield box
    finally:
        box.close()


# ---- the exercises ---------------------------------------------------------------------------
@dataclasses.dataclass
class Exercise:
    """One call of the formula's, made for real.

    `target(sandbox)`: what the formula calls (or reads); `call(sandbox)`: (args, kwargs), with
    the keyword names the formula passes; `spread`: keywords it passes as ``**mapping``;
    `check(value, sandbox)`: true of what comes back; `raises`: the error the call must stop at
    instead; `swallowed`: {keyword: why it is right} for a keyword only the function's
    ``**kwargs`` takes. A target made by `jinja` is called from Salt's Jinja renderer, as the
    formula's SLS and templates call it (3008 masks pillar values outside templates). A call
    the code makes only where its feature test (``_takes``) says the function takes a keyword
    (`Shape.guard`) is made where that test says so; where it says no, the call must fail."""

    target: Callable[[Sandbox], Any]
    call: Callable[[Sandbox], tuple] = lambda sb: ((), {})
    check: Callable[[Any, Sandbox], bool] = lambda value, sb: True
    spread: dict = dataclasses.field(default_factory=dict)
    raises: Optional[tuple] = None
    swallowed: dict = dataclasses.field(default_factory=dict)


def minion(name):
    return lambda sb: sb.minion[name]


def jinja(name):
    """A minion's execution function, called from a template (see `Exercise`)."""
    target = minion(name)
    target.in_template = True
    return target


def master(name):
    return lambda sb: sb.master_minion.functions[name]


def python(dotted):
    """An attribute of an importable salt module, by its dotted name."""

    def resolve(_sb):
        module, _, name = dotted.rpartition(".")
        return getattr(importlib.import_module(module), name)
    return resolve


def formula(name):
    """A private function of the formula's execution module, run in the context of the Salt
    loader that loaded it (where its __salt__, __utils__ and __opts__ are set)."""
    def private(sb):
        public = sb.minion["cloudify_ha.plan"]
        return lambda *args: public.loader.run(public.__globals__[name], *args)
    return private


def equals(expected):
    return lambda value, sb: value == expected


def opened(sb, path, mode):
    return sb.enter(python("salt.utils.files.fopen")(sb)(path, mode))


def file_to_read(sb):
    path = sb.tmp / "fopen.txt"
    path.write_text("read me")
    return path


def private_descriptor(fd, _sb):
    """An open descriptor (closed here) of a regular file."""
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def exception_class(value, _sb):
    return isinstance(value, type) and issubclass(value, Exception)


def pillar_with_prod(value, _sb):
    return "prod" in value["cloudify_ha"]["clusters"]


def pillar_with_unmasked_secret(value, sb):
    secret = value["cloudify_ha"]["clusters"]["prod"]["admin"]["password"]
    return secret == sb.secret and repr(sb.secret) in repr(value)


def orchestrated(value, _sb):
    (states,) = value["data"].values()
    (state,) = states.values()
    return (state["result"], state["name"]) == (True, "mgr9")


def hash_of_probe(value, sb):
    content = (sb.tmp / "master" / "srv" / sb.probe_module).read_bytes()
    return value == {"hash_type": "sha256", "hsum": hashlib.sha256(content).hexdigest()}


def master_pillar(value, _sb):
    return value["cloudify_ha"] == {"reactor": {"enabled": False}}


def util_namespace(name, value):
    """The namespace of one of the formula's _utils files, with what the formula takes there."""
    wanted = {"cloudify_ha_orch": "orch_steps", "cloudify_ha_pillar": "plan",
              "cloudify_ha_rest": "RestError"}[name]
    return value["__name__"].endswith(f".{name}") and wanted in value


CACHED_GRAINS = {CACHED_MINION: {"id": CACHED_MINION, "probe": 1}}
MASTER_PILLAR_UTIL = (([CACHED_MINION], "list"), {"use_cached_grains": True,
                                                 "grains_fallback": False})
NO_MASTER = (salt.exceptions.SaltClientError,)  # "The salt master could not be contacted"
UNMASK_3006 = {"unmask": "3006's pillar.items takes any keyword and masks nothing"}
PYYAML = "salt.utils.yaml hands its keywords to PyYAML's dump"
CONTEXT = "slsutil.renderer hands the keywords it does not name to the template as context"

EXERCISES = {
    # ---- a minion's execution modules (extension modules, SLS and templates)
    (Api("module", "cmd.run_all"), call_shape(1, [
            "env", "ignore_retcode", "output_loglevel", "python_shell", "reset_system_locale",
            "stdin", "timeout"])): Exercise(
        minion("cmd.run_all"),
        lambda sb: ((["sh", "-c", 'read line; echo "$line $PROBE"; exit 3'],),
                    {"python_shell": False, "output_loglevel": "quiet", "ignore_retcode": True,
                     "env": {"PROBE": "env"}, "timeout": 30, "reset_system_locale": False,
                     "stdin": "stdin\n"}),
        lambda value, sb: (value["stdout"], value["retcode"]) == ("stdin env", 3)),
    (Api("module", "cmd.run_all"), call_shape(1, [
            "ignore_retcode", "output_loglevel", "python_shell"])): Exercise(
        minion("cmd.run_all"),
        lambda sb: ((["false"],), {"python_shell": False, "output_loglevel": "quiet",
                                   "ignore_retcode": True}),
        lambda value, sb: value["retcode"] == 1),
    (Api("module", "cmd.retcode"), call_shape(1, [
            "ignore_retcode", "output_loglevel", "python_shell"])): Exercise(
        jinja("cmd.retcode"),
        lambda sb: ((["false"],), {"python_shell": False, "ignore_retcode": True,
                                   "output_loglevel": "quiet"}),
        equals(1)),
    (Api("module", "cmd.which"), call_shape(1, [])): Exercise(
        jinja("cmd.which"), lambda sb: (("sh",), {}), lambda value, sb: value.endswith("/sh")),
    (Api("module", "service.offline"), call_shape(0, [])): Exercise(
        # systemd's service module only (the SLS asks `"service.offline" in salt` first), which
        # a host without systemd does not load: loaded here past its __virtual__
        lambda sb: salt.loader.raw_mod(sb.minion.opts, "systemd_service", None)[
            "systemd_service.offline"],
        check=lambda value, sb: isinstance(value, (bool, str))),
    (Api("module", "file.source_list"), call_shape(3, [])): Exercise(
        jinja("file.source_list"),
        lambda sb: ((["salt://sandbox/missing.jinja", "salt://sandbox/digest.jinja"], "",
                     "base"), {}),
        lambda value, sb: value[0] == "salt://sandbox/digest.jinja"),
    (Api("module", "slsutil.renderer"), call_shape(1, ["default_renderer", "digest"],
                                                   spread=True)): Exercise(
        jinja("slsutil.renderer"),
        lambda sb: (("salt://sandbox/digest.jinja",), {"default_renderer": "jinja",
                                                       "digest": "@DIGEST@"}),
        lambda value, sb: value.strip() == "@DIGEST@ lab",
        spread={"cluster": "lab"}, swallowed={"digest": CONTEXT, "cluster": CONTEXT}),
    (Api("module", "hashutil.digest"), call_shape(2, [])): Exercise(
        jinja("hashutil.digest"), lambda sb: (("rules", "sha256"), {}),
        equals(hashlib.sha256(b"rules").hexdigest())),
    (Api("module", "hashutil.base64_b64encode"), call_shape(1, [])): Exercise(
        jinja("hashutil.base64_b64encode"), lambda sb: (("admin:pw",), {}),
        equals(base64.b64encode(b"admin:pw").decode())),
    (Api("module", "pillar.get"), call_shape(1, [])): Exercise(
        jinja("pillar.get"), lambda sb: (("cloudify_ha:clusters:prod:admin:username",), {}),
        equals("admin")),
    (Api("module", "pillar.get"), call_shape(2, [])): Exercise(
        jinja("pillar.get"), lambda sb: (("cloudify_ha", {}), {}),
        lambda value, sb: pillar_with_prod({"cloudify_ha": value}, sb)),
    (Api("module", "pillar.items"), REF): Exercise(
        minion("pillar.items"), check=lambda value, sb: callable(value)),
    (Api("module", "pillar.items"), call_shape(0, [])): Exercise(
        minion("pillar.items"), check=pillar_with_prod),
    (Api("module", "pillar.items"), call_shape(0, ["unmask"], guard="unmask")): Exercise(
        minion("pillar.items"), lambda sb: ((), {"unmask": True}), pillar_with_unmasked_secret,
        swallowed=UNMASK_3006),
    (Api("module", "pkg.version"), call_shape(1, [])): Exercise(
        minion("pkg.version"), lambda sb: (("cloudify-manager-install",), {}),
        equals("")),  # not installed on this machine
    # ---- the master's minion (what the orchestrations render with, `salt-run salt.cmd`)
    (Api("module", "cp.list_master"), call_shape(0, ["prefix", "saltenv"])): Exercise(
        master("cp.list_master"), lambda sb: ((), {"saltenv": "base", "prefix": "_modules/"}),
        lambda value, sb: value == [sb.probe_module]),
    (Api("module", "cp.hash_file"), call_shape(2, [])): Exercise(
        master("cp.hash_file"), lambda sb: ((f"salt://{sb.probe_module}", "base"), {}),
        hash_of_probe),
    (Api("module", "saltutil.cmd"), call_shape(0, [
            "fun", "kwarg", "tgt", "tgt_type", "timeout"])): Exercise(
        master("saltutil.cmd"),
        lambda sb: ((), {"tgt": [CACHED_MINION], "tgt_type": "list", "fun": "test.arg",
                         "kwarg": {"expected": {}}, "timeout": 5}),
        raises=NO_MASTER),
    (Api("module", "saltutil.cmd"), call_shape(0, ["fun", "tgt", "tgt_type", "timeout"])):
        Exercise(master("saltutil.cmd"),
                 lambda sb: ((), {"tgt": [CACHED_MINION], "tgt_type": "list",
                                  "fun": "test.ping", "timeout": 5}),
                 raises=NO_MASTER),
    # ---- the runners
    (Api("runner", "state.orchestrate"), call_shape(1, ["pillar"])): Exercise(
        lambda sb: sb.runners["state.orchestrate"],
        lambda sb: (("sandbox.noop",), {"pillar": {"node": "mgr9"}}), orchestrated),
    # ---- Salt's __utils__ mapping of the formula's _utils files
    (Api("utils", "cloudify_ha_orch.orch_steps"), attr("__globals__")): Exercise(
        lambda sb: sb.minion_utils["cloudify_ha_orch.orch_steps"],
        check=lambda value, sb: util_namespace("cloudify_ha_orch", value)),
    (Api("utils", "f'{name}.{anchor}'"), attr("__globals__")): Exercise(
        # the formula's own lookup (_util) of each of its _utils files through __utils__
        lambda sb: sb.minion_utils["cloudify_ha_pillar.plan"],
        check=lambda value, sb: all(util_namespace(name, vars(formula("_util")(sb)(name)))
                                    for name in ("cloudify_ha_pillar", "cloudify_ha_rest"))),
    (Api("utils", "cloudify_ha_pillar.plain"), call_shape(1, [])): Exercise(
        lambda sb: sb.minion_utils["cloudify_ha_pillar.plain"],
        lambda sb: (({"a": ["b", {"c": 1}]},), {}), equals({"a": ["b", {"c": 1}]})),
    (Api("utils", "cloudify_ha_pillar.backup_directory_problem"), call_shape(1, [])): Exercise(
        lambda sb: sb.minion_utils["cloudify_ha_pillar.backup_directory_problem"],
        lambda sb: (("/var/backups/cloudify_ha",), {}), equals(None)),
    (Api("utils", "cloudify_ha_files.open_private"), call_shape(1, [])): Exercise(
        lambda sb: sb.minion_utils["cloudify_ha_files.open_private"],
        lambda sb: ((str(sb.tmp / "private-rw"),), {}), private_descriptor),
    (Api("utils", "cloudify_ha_files.open_private"), call_shape(1, ["write"])): Exercise(
        lambda sb: sb.minion_utils["cloudify_ha_files.open_private"],
        lambda sb: ((str(file_to_read(sb)),), {"write": False}), private_descriptor),
    # ---- Salt's Python API
    (Api("python", "salt.exceptions.CommandExecutionError"), REF): Exercise(
        python("salt.exceptions.CommandExecutionError"), check=exception_class),
    (Api("python", "salt.exceptions.CommandExecutionError"), call_shape(1, [])): Exercise(
        python("salt.exceptions.CommandExecutionError"), lambda sb: (("text",), {}),
        lambda value, sb: str(value) == "text"),
    (Api("python", "salt.exceptions.SaltInvocationError"), REF): Exercise(
        python("salt.exceptions.SaltInvocationError"), check=exception_class),
    (Api("python", "salt.exceptions.SaltInvocationError"), call_shape(1, [])): Exercise(
        python("salt.exceptions.SaltInvocationError"), lambda sb: (("text",), {}),
        lambda value, sb: str(value) == "text"),
    (Api("python", "salt.utils.files.fopen"), call_shape(2, [])): Exercise(
        python("salt.utils.files.fopen"), lambda sb: ((file_to_read(sb), "r"), {}),
        lambda value, sb: sb.enter(value).read() == "read me"),  # a context manager
    (Api("python", "salt.utils.files.fopen().read"), call_shape(0, [])): Exercise(
        lambda sb: opened(sb, file_to_read(sb), "r").read, check=equals("read me")),
    (Api("python", "salt.utils.files.fopen().read"), call_shape(1, [])): Exercise(
        lambda sb: opened(sb, file_to_read(sb), "rb").read, lambda sb: ((4097,), {}),
        equals(b"read me")),
    (Api("python", "salt.utils.path.which"), call_shape(1, [])): Exercise(
        python("salt.utils.path.which"), lambda sb: (("sh",), {}),
        lambda value, sb: value.endswith("/sh")),
    (Api("python", "salt.utils.yaml.SafeOrderedDumper"), REF): Exercise(
        python("salt.utils.yaml.SafeOrderedDumper"),
        check=lambda value, sb: issubclass(sb.yaml[1], value)),
    (Api("python", "salt.utils.yaml.SaltYamlSafeLoader"), REF): Exercise(
        python("salt.utils.yaml.SaltYamlSafeLoader"),
        check=lambda value, sb: issubclass(sb.yaml[2], value)),
    (Api("python", "salt.utils.yaml.YAMLError"), REF): Exercise(
        python("salt.utils.yaml.YAMLError"), check=exception_class),
    (Api("python", "salt.utils.yaml.dump"), call_shape(1, ["Dumper", "default_flow_style"])):
        Exercise(python("salt.utils.yaml.dump"),
                 lambda sb: ((sb.yaml[0](a=1),), {"Dumper": sb.yaml[1],
                                                  "default_flow_style": False}),
                 equals("!Probe\na: 1\n"),
                 swallowed={"Dumper": PYYAML, "default_flow_style": PYYAML}),
    (Api("python", "salt.utils.yaml.load"), call_shape(1, ["Loader"])): Exercise(
        python("salt.utils.yaml.load"),
        lambda sb: (("!Probe\na: 1\n",), {"Loader": sb.yaml[2]}), equals({"a": 1})),
    (Api("python", "salt.utils.yaml.safe_dump"), call_shape(1, ["default_flow_style"])):
        Exercise(python("salt.utils.yaml.safe_dump"),
                 lambda sb: (({"b": [1]},), {"default_flow_style": False}),
                 equals("b:\n- 1\n"), swallowed={"default_flow_style": PYYAML}),
    (Api("python", "salt.utils.yaml.safe_load"), call_shape(1, [])): Exercise(
        python("salt.utils.yaml.safe_load"), lambda sb: (("b: [1]",), {}), equals({"b": [1]})),
    (Api("python", "salt.utils.master.MasterPillarUtil"), call_shape(2, [
            "grains_fallback", "opts", "use_cached_grains"])): Exercise(
        python("salt.utils.master.MasterPillarUtil"),
        lambda sb: (MASTER_PILLAR_UTIL[0], {**MASTER_PILLAR_UTIL[1], "opts": sb.master_opts}),
        lambda value, sb: value.get_minion_grains() == CACHED_GRAINS),
    (Api("python", "salt.utils.master.MasterPillarUtil().get_minion_grains"), call_shape(0, [])):
        Exercise(lambda sb: python("salt.utils.master.MasterPillarUtil")(sb)(
            *MASTER_PILLAR_UTIL[0], **MASTER_PILLAR_UTIL[1], opts=sb.master_opts
        ).get_minion_grains, check=equals(CACHED_GRAINS)),
    (Api("python", "salt.minion.MasterMinion"), call_shape(1, [])): Exercise(
        python("salt.minion.MasterMinion"), lambda sb: ((sb.master_opts,), {}),
        lambda value, sb: (value.opts["id"], destroy(value)) == (MASTER_ID, None)),
    (Api("python", "salt.minion.MasterMinion().opts"), REF): Exercise(
        lambda sb: sb.master_minion.opts,
        check=lambda value, sb: value["cachedir"] == sb.master_opts["cachedir"]),
    (Api("python", "salt.minion.MasterMinion().functions"), REF): Exercise(
        lambda sb: sb.master_minion.functions,
        check=lambda value, sb: "cp.list_master" in value),
    (Api("python", "salt.pillar.get_pillar"), call_shape(3, ["pillarenv", "saltenv"])): Exercise(
        python("salt.pillar.get_pillar"),
        lambda sb: ((sb.master_minion.opts, sb.master_minion.opts.get("grains") or {},
                     MASTER_ID), {"saltenv": "base", "pillarenv": None}),
        lambda value, sb: master_pillar(value.compile_pillar(), sb)),
    (Api("python", "salt.pillar.get_pillar"), call_shape(3, ["saltenv"])): Exercise(
        python("salt.pillar.get_pillar"),
        lambda sb: ((sb.master_minion.opts, sb.master_minion.opts.get("grains") or {},
                     MASTER_ID), {"saltenv": "base"}),
        lambda value, sb: master_pillar(value.compile_pillar(), sb)),
    (Api("python", "salt.pillar.get_pillar().compile_pillar"), call_shape(0, [])): Exercise(
        lambda sb: python("salt.pillar.get_pillar")(sb)(
            sb.master_minion.opts, {}, MASTER_ID, saltenv="base").compile_pillar,
        check=master_pillar),
    (Api("python", "salt.client.get_local_client"), call_shape(1, [])): Exercise(
        python("salt.client.get_local_client"), lambda sb: ((sb.master_opts["conf_file"],), {}),
        lambda value, sb: callable(sb.enter(value).cmd)),  # a context manager
    (Api("python", "salt.client.get_local_client().cmd"), call_shape(2, [
            "arg", "full_return", "kwarg", "tgt_type", "timeout"])): Exercise(
        lambda sb: sb.enter(python("salt.client.get_local_client")(sb)(
            sb.master_opts["conf_file"])).cmd,
        lambda sb: (([CACHED_MINION], "cloudify_ha.node_state"),
                    {"arg": [], "kwarg": {}, "tgt_type": "list", "timeout": 5,
                     "full_return": True}),
        raises=NO_MASTER),
}


def describe(api, shape):
    if shape.how == "ref":
        return f"{api.kind} {api.name} (read)"
    if shape.how == "attr":
        return f"{api.kind} {api.name} .{shape.keywords[0]}"
    keywords = ", ".join(f"{k}=" for k in shape.keywords)
    guard = f" where _takes(..., {shape.guard!r})" if shape.guard else ""
    return (f"{api.kind} {api.name}({shape.nargs} positional"
            f"{', ' + keywords if keywords else ''}{', **...' if shape.spread else ''}){guard}")


# ---- the tests -------------------------------------------------------------------------------
def test_every_call_into_salt_the_code_makes_has_its_exercise():
    found = formula_calls()
    missing = {describe(*key): where for key, where in found.items() if key not in EXERCISES}
    stale = [describe(*key) for key in EXERCISES if key not in found]
    assert (missing, stale) == ({}, []), (
        "a call into Salt without its exercise in EXERCISES (where the code makes it), or an "
        "exercise of a call the code no longer makes")


@pytest.mark.parametrize("key", list(EXERCISES), ids=[describe(*k) for k in EXERCISES])
def test_salt_takes_the_call_as_the_formula_makes_it(sandbox, key):
    (api, shape), exercise = key, EXERCISES[key]
    target = exercise.target(sandbox)
    if shape.how == "ref":
        assert exercise.check(target, sandbox), target
        return
    if shape.how == "attr":
        value = getattr(target, shape.keywords[0])
        assert exercise.check(value, sandbox), value
        return
    args, kwargs = exercise.call(sandbox)
    assert (len(args), tuple(sorted(kwargs)), bool(exercise.spread)) == (
        shape.nargs, shape.keywords, shape.spread), "the exercise does not call as the code does"
    kwargs = {**kwargs, **exercise.spread}
    if shape.guard is not None and not formula("_takes")(sandbox)(target, shape.guard):
        # the formula's feature test says this Salt's function lacks the keyword: it must
        with pytest.raises(TypeError):
            target(*args, **kwargs)
        return
    swallowed = only_in_var_keyword(target, kwargs)
    assert set(swallowed) <= set(exercise.swallowed), (
        f"Salt {SALT}'s {api.name} takes {swallowed} only in **kwargs: ignored?")
    if exercise.raises:
        with pytest.raises(exercise.raises):
            target(*args, **kwargs)
        return
    if getattr(exercise.target, "in_template", False):
        value = called_in_template(sandbox, api.name, args, kwargs)
    else:
        value = target(*args, **kwargs)
    assert exercise.check(value, sandbox), value


def called_in_template(sandbox, name, args, kwargs):
    """salt[name](*args, **kwargs) in a template that Salt's Jinja renderer renders, as data."""
    text = sandbox.minion["slsutil.renderer"](
        string="{{ salt[fun](*args, **kwargs) | json }}", default_renderer="jinja",
        fun=name, args=list(args), kwargs=kwargs)
    return json.loads(text)


def only_in_var_keyword(func, kwargs):
    """The keywords of `kwargs` that `func` does not name (its **kwargs takes them)."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return []
    return sorted(k for k in kwargs if k not in params)


# ---- the finder finds what it must -----------------------------------------------------------
def test_the_finder_sees_each_way_python_code_calls_into_salt():
    source = textwrap.dedent('''
        import salt.utils.files
        from salt.exceptions import CommandExecutionError as CEE
        import salt.client

        def f(path):
            __salt__["cmd.run_all"](["true"], python_shell=False, **extra)
            items = __salt__["pillar.items"]
            if _takes(__salt__["pillar.items"], "unmask"):
                __salt__["pillar.items"](unmask=True)
            __salt__["pillar.items"](unmask=True)  # not where the feature test said so
            __utils__["x_util.fun"].__globals__
            __salt__["cloudify_ha.plan"]()  # the formula's own: not Salt's
            __salt__.cp.list_master(saltenv="base")
            with salt.utils.files.fopen(path, "r") as fh:
                fh.read().split()
            with salt.client.get_local_client("c") as local:
                local.cmd("t", "f", arg=[]).items()
            raise CEE("x")
        ''')
    found = {(api, shape) for api, shape, _ in calls_in_python(source, "probe.py")}
    assert found == {
        (Api("module", "cmd.run_all"), call_shape(1, ["python_shell"], spread=True)),
        (Api("module", "cp.list_master"), call_shape(0, ["saltenv"])),
        (Api("module", "pillar.items"), REF),
        (Api("module", "pillar.items"), call_shape(0, ["unmask"], guard="unmask")),
        (Api("module", "pillar.items"), call_shape(0, ["unmask"])),
        (Api("utils", "x_util.fun"), attr("__globals__")),
        (Api("python", "salt.exceptions.CommandExecutionError"), REF),
        (Api("python", "salt.exceptions.CommandExecutionError"), call_shape(1, [])),
        (Api("python", "salt.utils.files.fopen"), call_shape(2, [])),
        (Api("python", "salt.utils.files.fopen().read"), call_shape(0, [])),
        (Api("python", "salt.client.get_local_client"), call_shape(1, [])),
        (Api("python", "salt.client.get_local_client().cmd"), call_shape(2, ["arg"])),
    }, found


def test_the_finder_sees_salt_calls_in_jinja():
    source = ('{%- set a = salt["cmd.which"]("nft") and salt["pillar.get"]("k", {}) %}\n'
              '{{ salt["slsutil.renderer"](src, default_renderer="jinja", **ctx) }}\n'
              '{{ salt["cloudify_ha.plan"]() }}{{ salt["grains.get"] }}{{ salt.test.ping() }}')
    found = {(api, shape) for api, shape, _ in calls_in_jinja(jinja_env(), source, "probe.sls")}
    assert found == {
        (Api("module", "cmd.which"), call_shape(1, [])),
        (Api("module", "pillar.get"), call_shape(2, [])),
        (Api("module", "slsutil.renderer"), call_shape(1, ["default_renderer"], spread=True)),
        (Api("module", "grains.get"), REF),
        (Api("module", "test.ping"), call_shape(0, [])),
    }, found
