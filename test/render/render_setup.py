"""What the render tests share: Salt's own compiler run over the formula, without daemons.

A minion is opts + grains + a compiled pillar; its SLS are rendered by ``salt.state.HighState``
(what ``state.show_sls`` runs). The master's orchestrations and the reactor SLS are rendered by
``salt.state.Compiler`` (what the reactor runs) with Salt's renderers built over the real
execution modules, where the few functions that need a master or a minion's answer are given
canned answers. Every rendered state is then checked the way Salt's state engine checks it
before it runs it.
"""

import collections
import collections.abc
import importlib.util
import pathlib
import shutil

import salt.config
import salt.loader
import salt.state
import salt.utils.args
import yaml
from salt.exceptions import SaltInvocationError

REPO = pathlib.Path(__file__).resolve().parents[2]
FORMULA_DIRS = ("cloudify_ha", "_modules", "_states", "_utils", "_beacons", "_grains", "_runners")

# pillar.example's hosts
LEADER, FOLLOWER, FOLLOWER3 = "cfy-mgr1.example.com", "cfy-mgr2.example.com", "cfy-mgr3.example.com"
CLI, LB = "admin1.example.com", "cfy-lb1.example.com"
STRANGER = "web1.example.com"  # in no cluster
MASTER_ID = "saltmaster_master"  # the master's own minion (salt.minion.MasterMinion)
MANAGERS = {"cfy-mgr1": (LEADER, "10.0.0.11"), "cfy-mgr2": (FOLLOWER, "10.0.0.12"),
            "cfy-mgr3": (FOLLOWER3, "10.0.0.13")}

# pillar.example's throwaway database PKI: the pillar's validation checks keys as 4.6 does
EXAMPLE_DB = yaml.safe_load((REPO / "pillar.example").read_text(encoding="utf-8"))[
    "cloudify_ha"]["clusters"]["prod"]["database"]

# test/pillar/cloudify_ha.sls's facts (test/lab/fixtures.py `pillar_dir` writes them per lab run)
LAB_FACTS = {
    "managers": [{"name": f"mgr{i}", "ip": f"10.10.0.1{i}", "public_ip": f"10.10.0.11{i}"}
                 for i in (1, 2, 3)],
    "db_ip": "10.10.0.5",
    "subnet": "10.10.0.0/24",
    "passwords": {"admin": "lab-admin-pw", "db": "lab-db-pw", "postgres": "lab-postgres-pw"},
    **{key: EXAMPLE_DB[key] for key in ("ca_cert", "ca_key", "client_cert", "client_key")},
    "packages": {"manager": "salt://cloudify_ha_packages/cloudify-manager-install_4.6_amd64.deb",
                 "cli": "salt://cloudify_ha_packages/cloudify-cli_4.6_amd64.deb"},
    # pillar.example's license (the lab signs its own: test/lab/emulator.py make_license)
    "license": yaml.safe_load((REPO / "pillar.example").read_text(encoding="utf-8"))[
        "cloudify_ha"]["clusters"]["prod"]["license"],
}

def example_pillar():
    """A fresh copy of pillar.example's `cloudify_ha` mapping."""
    with open(REPO / "pillar.example", encoding="utf-8") as fh:
        return yaml.safe_load(fh)["cloudify_ha"]


def pillar_schema():
    """_utils/cloudify_ha_pillar.py, loaded by path: the schema the SLS render through."""
    spec = importlib.util.spec_from_file_location("cloudify_ha_pillar_of_render_tests",
                                                  REPO / "_utils" / "cloudify_ha_pillar.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def minion_sls():
    """Every minion-side SLS of the formula, as Salt names it (orchestrations and the reactor's
    own SLS run on the master)."""
    found = set()
    for path in (REPO / "cloudify_ha").rglob("*.sls"):
        rel = path.relative_to(REPO).with_suffix("")
        if rel.parts[1] == "orch" or rel.parts[1:] == ("reactor", "rejoin"):
            continue
        parts = rel.parts[:-1] if rel.parts[-1] == "init" else rel.parts  # as Salt names it
        found.add(".".join(parts))
    return found


def formula_root(base):
    """A file root serving only the formula's directories (as an operator's master does): the
    repository itself would make every file listing walk the virtualenvs."""
    root = base / "srv"
    root.mkdir()
    # copies, not symlinks: Salt 3006.8's roots fileserver lists a symlink that leads out of
    # the file root but refuses to serve it ("is not available on the salt master")
    for name in FORMULA_DIRS:
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def base_opts(base, file_root, pillar_roots, minion_id):
    opts = salt.config.minion_config(None)
    opts.update({
        "id": minion_id,
        "root_dir": str(base),
        "cachedir": str(base / "cache"),
        "pki_dir": str(base / "pki"),
        "sock_dir": str(base / "sock"),
        "extension_modules": str(base / "extmods"),
        "log_file": str(base / "minion.log"),
        "file_client": "local",
        "master_type": "disable",
        "file_roots": {"base": [str(file_root)]},
        "pillar_roots": {"base": [str(p) for p in pillar_roots]},
        "module_dirs": [str(REPO / "_modules")],
        "states_dirs": [str(REPO / "_states")],
        "utils_dirs": [str(REPO / "_utils")],
        "runner_dirs": [str(REPO / "_runners")],
        "grains_cache": False,
        "state_events": False,
    })
    return opts


def opts_for(opts, grains, minion_id, test=False, **grain_values):
    out = dict(opts, id=minion_id, test=test)
    out["grains"] = dict(grains, id=minion_id, **grain_values)
    return out


def fake_host_probes(functions, binaries, init=None):
    """The firewall plan asks the host which firewall tools it has: answer from `binaries`
    (e.g. {"nft"}) instead of this machine's PATH; `firewall-cmd --state` succeeds when
    firewall-cmd is one of them; `nft --version` says 1.0.6 (Debian 12's), or the version
    given as "nft=0.8". Every other command runs for real. The load balancer's SLS asks whether
    Salt's service module is systemd's offline mode: where systemctl is one of `binaries` and
    `init` is not systemd."""
    functions["cmd.which"]  # noqa: B018  loads cmdmod now, so that a later load keeps the fakes
    versions = dict(b.partition("=")[::2] for b in binaries)
    # the function itself: the loader's entry looks its name up at each call, and that name is
    # the fake below from then on
    loaded = functions["cmd.run_all"]
    real, loader = loaded.func, loaded.loader

    def real_run_all(*args, **kwargs):
        return loader.run(real, *args, **kwargs)
    if "service.offline" in functions:
        functions["service.offline"] = lambda: init != "systemd" and "systemctl" in versions

    def which(cmd):
        return f"/usr/sbin/{cmd}" if cmd in versions else None

    def retcode(cmd, **_kwargs):
        return 0 if cmd == ["firewall-cmd", "--state"] and "firewall-cmd" in versions else 1

    def run_all(cmd, *args, **kwargs):
        if cmd == ["nft", "--version"] and "nft" in versions:
            return {"retcode": 0, "stderr": "", "pid": 1,
                    "stdout": f"nftables v{versions['nft'] or '1.0.6'} (Lester Gooch #5)"}
        return real_run_all(cmd, *args, **kwargs)

    functions["cmd.which"] = which
    functions["cmd.retcode"] = retcode
    functions["cmd.run_all"] = run_all


class Minion:
    """Salt's SLS compiler for one minion: its pillar compiled once (`pillar` merged over it, as
    ``state.sls ... pillar=`` does), then each SLS rendered on its own, as ``state.show_sls``
    renders it."""

    def __init__(self, opts, pillar=None, binaries=("nft",)):
        self.hs = salt.state.HighState(dict(opts), pillar_override=pillar)
        fake_host_probes(self.hs.state.functions, set(binaries), opts["grains"].get("init"))
        self._rendered = {}

    @property
    def state(self):
        return self.hs.state

    def render(self, sls):
        """(high data, errors): what ``state.show_sls`` returns."""
        if sls not in self._rendered:
            self._rendered[sls] = self._render(sls)
        return self._rendered[sls]

    def _render(self, sls):
        # a new HighState per SLS would compile the pillar and the loaders again (0.15 s): start
        # each SLS from an empty high data instead
        self.hs.building_highstate = collections.OrderedDict()
        self.hs.push_active()
        try:
            high, errors = self.hs.render_highstate({"base": [sls]})
        finally:
            self.hs.pop_active()
        return high, errors + self.hs.state.verify_high(high)

    def close(self):
        self.hs.destroy()


def state_ids(high):
    return sorted(k for k in high if not k.startswith("__"))


# the host's lock that every SLS of the formula but these includes (cloudify_ha/lock.sls): its
# own test is test_render_sls.py's; functions_of leaves its two states out
LOCK = {"cloudify_ha-lock-run-locked": "cloudify_ha.run_locked",
        "cloudify_ha-lock-run-unlocked": "cloudify_ha.run_unlocked"}
UNLOCKED_SLS = ("cloudify_ha", "cloudify_ha.sync", "cloudify_ha.reactor.master")


def functions_of(high, lock=False):
    """{state id: "<module>.<function>"}, without the host's lock unless `lock`"""
    out = {}
    for sid, body in high.items():
        if sid.startswith("__") or (sid in LOCK and not lock):
            continue
        for mod, args in body.items():
            if not mod.startswith("__"):
                out[sid] = f"{mod}.{next(a for a in args if isinstance(a, str))}"
    return out


def args_of(high, sid):
    """One state's arguments as a dict, requisites included, without the `order` Salt adds."""
    (mod,) = [k for k in high[sid] if not k.startswith("__")]
    out = {}
    for arg in high[sid][mod]:
        if isinstance(arg, dict):
            out.update(arg)
    out.pop("order", None)
    return out


# ---- Salt's own checks of compiled states ---------------------------------------------------
def compile_chunks(state, high):
    """Low chunks and errors: requisite_in, then compile_high_data (3008 returns errors with the
    chunks, 3006 only the chunks; 3006's requisite_in returns errors only)."""
    errors = list(state.verify_high(high))
    if errors:
        return [], errors
    high = dict(high)
    result = state.requisite_in(high)
    if isinstance(result, tuple):
        high, req_errors = result
    else:
        req_errors = result or []
    errors.extend(req_errors)
    compiled = state.compile_high_data(high)
    chunks, more = compiled if isinstance(compiled, tuple) else (compiled, [])
    return chunks, errors + list(more)


def chunk_problems(state, chunks):
    """What the state engine would refuse when it calls each chunk: a state function its
    loader lacks, a missing argument (verify_data), an unknown keyword (format_call raises
    exactly as State.call does), a requisite on no state, a module.run function that does not
    exist or does not take the keyword given."""
    problems = []
    declared = {(c["state"], c[key]) for c in chunks for key in ("__id__", "name")}
    for chunk in chunks:
        full = f"{chunk['state']}.{chunk['fun']}"
        found = state.verify_data(dict(chunk))
        if found:
            problems.extend(f"{chunk['__id__']}: {e}" for e in found)
            continue
        try:
            salt.utils.args.format_call(state.states[full], chunk,
                                        expected_extra_kws=salt.state.STATE_INTERNAL_KEYWORDS)
        except SaltInvocationError as exc:
            problems.append(f"{chunk['__id__']}: {exc}")
        problems.extend(_requisite_problems(chunk, declared))
        if full == "module.run":
            problems.extend(_module_run_problems(state, chunk))
    return problems


def _requisite_problems(chunk, declared):
    out = []
    for req in ("require", "watch", "onchanges", "onfail", "prereq"):
        for item in chunk.get(req, []):
            for kind, target in item.items():
                if kind not in ("sls", "id") and (kind, target) not in declared:
                    out.append(f"{chunk['__id__']}: {req} {kind}: {target} matches no state")
    return out


def _module_run_problems(state, chunk):
    out = []
    for key, value in chunk.items():
        if "." not in key or key.startswith("__"):
            continue
        if key not in state.functions:
            out.append(f"{chunk['__id__']}: module.run: no function {key}")
            continue
        kwargs = {}
        for item in value or []:
            if isinstance(item, dict):
                kwargs.update(item)
        try:
            salt.utils.args.format_call(state.functions[key], kwargs)
        except SaltInvocationError as exc:
            out.append(f"{chunk['__id__']}: module.run {key}: {exc}")
    return out


def problems_of(state, high):
    chunks, errors = compile_chunks(state, high)
    return errors + chunk_problems(state, chunks)


PROBE = "render-test-mode-probe"


def run_high(state, high, test):
    """Run compiled high data through the state engine: {state id: (result, comment, changes,
    name)}. A probe state runs along: it proves the states ran in the test mode asked for."""
    probe = {PROBE: {"test": ["succeed_with_changes"], "__sls__": "probe", "__env__": "base"}}
    ret = state.call_high({**high, **probe})
    assert isinstance(ret, dict), ret
    out = {r["__id__"]: (r["result"], r["comment"], r["changes"], r["name"])
           for r in ret.values()}
    assert out.pop(PROBE)[0] is (None if test else True)
    return out


# ---- the master's side ----------------------------------------------------------------------
class Answering(collections.abc.Mapping):
    """The master's execution modules with canned answers for the few functions that need a
    running master (saltutil.cmd, the master's grains cache). Not a dict: Salt's Jinja renderer
    would copy a dict, loading every module."""

    def __init__(self, functions, overrides):
        self._functions = functions
        self._overrides = overrides

    def __getitem__(self, key):
        if key in self._overrides:
            return self._overrides[key]
        return self._functions[key]

    def __contains__(self, key):
        return key in self._overrides or key in self._functions

    def __iter__(self):
        yield from self._overrides
        yield from (k for k in self._functions if k not in self._overrides)

    def __len__(self):
        return len(set(self._overrides) | set(self._functions))


def render_on_master(state, sls, overrides, **kwargs):
    """High data of a master-side SLS (orchestration or reaction), rendered with Salt's
    renderers over `state`'s execution modules and `overrides`."""
    rend = salt.loader.render(state.opts, Answering(state.functions, overrides))
    path = REPO / (sls.replace(".", "/") + ".sls")
    if not path.is_file():
        path = REPO / sls.replace(".", "/") / "init.sls"
    high = salt.state.Compiler(state.opts, rend).render_template(
        str(path), saltenv="base", sls=sls, **kwargs)
    for body in high.values():
        if not isinstance(body, dict):
            continue  # Salt's verify_high reports it
        body.setdefault("__sls__", sls)
        body.setdefault("__env__", "base")
    return high
