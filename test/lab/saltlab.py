"""Salt in the lab: a salt-master on the bridge address, a salt-minion inside each host."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attr
import yaml
from saltfactories.cli.call import SaltCall
from saltfactories.daemons.minion import SaltMinion

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


def stop_minions(factories):
    with ThreadPoolExecutor(max(1, len(factories))) as pool:
        list(pool.map(lambda f: f.terminate(), factories.values()))
