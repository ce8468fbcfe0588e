"""Salt in the lab: a salt-master on the bridge address, a salt-minion inside each host."""

import contextlib
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attr
import psutil
import yaml
from salt.utils.immutabletypes import freeze
from saltfactories.cli.call import SaltCall
from saltfactories.daemons.minion import SaltMinion

from .proc import kill_all

REPO = Path(__file__).resolve().parents[2]


@attr.s(kw_only=True, slots=True)
class NetnsSaltMinion(SaltMinion):
    """A salt-minion started inside a lab host (nsenter prefix; nsenter execs in place)."""

    ns_prefix = attr.ib(factory=list)

    def cmdline(self, *args):
        return [*self.ns_prefix, *super().cmdline(*args)]

    def salt_call_cli(self, factory_class=None, **kwargs):
        """salt-call inside the same host, not in the machine's namespaces."""
        if factory_class is None:
            prefix = self.ns_prefix

            @attr.s(kw_only=True, slots=True)
            class _HostSaltCall(SaltCall):
                def cmdline(self, *a, **kw):
                    return [*prefix, *super().cmdline(*a, **kw)]

            factory_class = _HostSaltCall
        return SaltMinion.salt_call_cli(self, factory_class=factory_class, **kwargs)


# what an operator's file_roots holds of this repository: the formula, not its venv or tests
FORMULA_DIRS = ("cloudify_ha", "_modules", "_states", "_utils", "_runners", "_beacons", "_grains",
                "_output")


def formula_root(lab):
    """A file root holding the formula's directories (symlinks into the working tree, so an
    edit is served at once): what a gitfs remote or a formula checkout gives an operator."""
    root = lab.dir / "formula"
    root.mkdir(exist_ok=True)
    for name in FORMULA_DIRS:
        link = root / name
        if (REPO / name).is_dir() and not link.exists():
            link.symlink_to(REPO / name)
    return root


def master_overrides(lab, pillar_dirs, file_dirs):
    """The lab master: an operator's master serving the formula as its file_roots (and a
    directory of packages, as an operator would serve the installer rpm)."""
    return {
        "interface": lab.network.gateway,
        "file_roots": {"base": [str(d) for d in file_dirs]},
        "pillar_roots": {"base": [str(d) for d in pillar_dirs]},
        "worker_threads": 4,
        # Salt's default, not salt-factories' 0: with 0 the master rebuilds its file list at
        # every request, and a request that meets a rebuild sleeps a whole second (Salt's
        # wait_lock): each step on several minions waited 1-2 s more than on an operator's
        # master. A new file under file_roots is listed after `fileserver.clear_file_list_cache`
        "fileserver_list_cache_time": 20,
        # every minion of the lab is ours: no pending-key round trips at start
        "auto_accept": True,
        # EL7's last Salt (3006.8) authenticates with protocol 2; a 3008 master requires 3 by
        # default and rejects it ("minimum required: 3"): what a shop with 4.6 managers sets
        "minimum_auth_version": 2,
        "log_level_logfile": "info",
        "keep_jobs_seconds": 86400,
        # the formula's reactor, exactly as cloudify_ha.reactor.master installs it on a master
        "reactor": yaml.safe_load((REPO / "cloudify_ha" / "reactor" / "master.conf").read_text())[
            "reactor"],
    }


# a second salt-master's address on the bridge (the first one's is the gateway, .1)
SECOND_MASTER_INDEX = 6
# what a second master shares with the first: an operator installs the formula, its pillar and
# its reactor the same way on both (README "Two masters")
SHARED_MASTER_KEYS = ("file_roots", "pillar_roots", "worker_threads", "fileserver_list_cache_time",
                      "auto_accept", "minimum_auth_version", "log_level_logfile",
                      "keep_jobs_seconds", "reactor", "ret_port", "publish_port")


def second_master(salt_factories, first, lab, name="master2"):
    """A second salt-master (not started) on its own bridge address, as Salt's multi-master
    setup has it: the first master's key pair (a minion checks the master's public key), the
    same ports, file roots, pillar roots and reactor."""
    address = lab.network.address(SECOND_MASTER_INDEX)
    lab.network.add_address(address)
    overrides = {key: _thawed(first.config[key]) for key in SHARED_MASTER_KEYS}
    overrides["interface"] = address
    factory = salt_factories.salt_master_daemon(name, overrides=overrides)
    for keyfile in ("master.pem", "master.pub"):
        shutil.copyfile(Path(first.config["pki_dir"]) / keyfile,
                        Path(factory.config["pki_dir"]) / keyfile)
    return factory


def _thawed(value):
    """A plain copy of a value of a factory's (immutable) configuration."""
    if isinstance(value, Mapping):
        return {k: _thawed(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_thawed(v) for v in value]
    return value


def kill_master(factory):
    """Knob: the master's host dies: SIGKILL to the salt-master and every process it started
    at once (no clean shutdown). start() brings it back."""
    pid = factory.pid
    if pid:
        try:
            procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        kill_all(procs)
    factory.terminate()  # reaps it and resets the factory, so that start() works again


def use_masters(lab, names, addresses, witness=None):
    """The named hosts' minions connect to every master in `addresses` (Salt's hot multi-master:
    `master` a list, one connection to each) from their next start; running ones are restarted.
    One address: back to a single master. `witness`: the id of the master whose event of a
    minion's start tells salt-factories that it started (default: as it was)."""
    master = list(addresses) if len(addresses) > 1 else addresses[0]
    for name in names:
        minion = lab.minions[name]
        path = Path(minion.config["conf_file"])
        config = yaml.safe_load(path.read_text())
        config["master"] = master
        path.write_text(yaml.safe_dump(config))
        _reconfigured(minion, master=master)
        if witness:
            witnessed_by(minion, witness)
    running = [lab.minions[n] for n in names if lab.minions[n].is_running()]
    with ThreadPoolExecutor(max(1, len(running))) as pool:
        list(pool.map(lambda m: m.terminate(), running))
        list(pool.map(lambda m: m.start(), running))


def witnessed_by(minion, master_id):
    """salt-factories waits for a minion's start event as one master saw it (its `master-id`):
    with that master dead, another one has to be the witness."""
    pytest_minion = dict(_thawed(minion.config["pytest-minion"]), **{"master-id": master_id})
    _reconfigured(minion, **{"pytest-minion": pytest_minion})


def _reconfigured(factory, **changes):
    """The factory's own (frozen) view of its configuration, with `changes`."""
    factory.config = freeze(dict(_thawed(factory.config), **changes))


def minion_overrides(lab):
    gateway = lab.network.gateway
    return {
        "master": gateway,
        # the factories' log server and event listener are reachable from a host at the bridge IP
        "pytest-minion": {"log": {"host": gateway}, "returner_address": {"host": gateway}},
        "log_level_logfile": "info",
        # Salt's default, not salt-factories' 0.05: the beacons run once a second whatever
        # loop_interval says, but count their `interval` in loop_intervals (a beacon's 2 s
        # would be 40 s)
        "loop_interval": 1,
    }


def start_minions(master, lab, names):
    """Create and start a minion in each named host, in parallel; returns {name: factory}."""
    factories = {}
    for name in names:
        host = lab[name]
        factories[name] = master.salt_minion_daemon(
            name, factory_class=NetnsSaltMinion, ns_prefix=host.prefix(),
            overrides=minion_overrides(lab))
    with ThreadPoolExecutor(len(factories)) as pool:
        list(pool.map(lambda f: f.start(), factories.values()))
    lab.minions.update(factories)
    return factories


def minion_python(salt_version):
    """The Python of the venv `make` builds for Salt `salt_version` (.venv-<version>)."""
    python = REPO / f".venv-{salt_version}" / "bin" / "python"
    if not python.exists():
        raise FileNotFoundError(f"{python} is missing: run 'make venvs' (make test builds it)")
    return str(python)


def use_python(lab, names, python):
    """Run the named hosts' minions under another Python (another venv, another Salt) from their
    next start on; a running one is stopped. salt-factories' generated scripts and its engine
    import only Salt and msgpack, which every venv has."""
    for name in names:
        minion = lab.minions[name]
        if minion.is_running():
            minion.terminate()
        minion.python_executable = python


def salt_versions(salt_cli, names):
    """{minion: the Salt version it runs}, from test.version."""
    ret = salt_cli.run("-L", "test.version", minion_tgt=",".join(names))
    assert ret.returncode == 0, ret
    return ret.data


@contextlib.contextmanager
def minions_on_salt(lab, salt_cli, names, version):
    """The block runs with these minions restarted as new minions (no cache, no modules) on
    another Salt (a venv of `make venvs`); then the session's Salt again, every host's minion
    new."""
    before = {n: lab.minions[n].python_executable for n in names}
    use_python(lab, names, minion_python(version))
    try:
        lab.reset(names, new_minions=True)
        assert set(salt_versions(salt_cli, names).values()) == {version}
        yield
    finally:
        for name, python in before.items():
            use_python(lab, [name], python)
        lab.reset(new_minions=True)


def stop_minions(factories):
    with ThreadPoolExecutor(max(1, len(factories))) as pool:
        list(pool.map(lambda f: f.terminate(), factories.values()))
