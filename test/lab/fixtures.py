"""Session fixtures shared by the tests and the benchmarks: the lab, its salt-master and its
minions (imported by test/conftest.py and bench/conftest.py).

Nothing here starts unless a test asks for it: unit tests never build the lab.
"""

import contextlib
import os
import signal

import pytest
import yaml
from saltfactories.plugins.event_listener import EventListener

from lab.core import Lab
from lab.emulator import LICENSE_KEY, Emulator, build_packages, make_license
from lab.saltlab import REPO, formula_root, master_overrides, start_minions, stop_minions


def pytest_configure(config):
    # a SIGTERM (CI timeout, kill) runs the fixtures' teardown like Ctrl-C does
    def _terminate(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _terminate)


def pytest_sessionfinish(session, exitstatus):
    try:
        from salt._logging.impl import shutdown_temp_handler  # pylint: disable=import-outside-toplevel
    except ImportError:
        return
    shutdown_temp_handler()


@pytest.fixture(scope="session")
def event_listener():
    """salt-factories' store of the daemons' events, keeping each for 30 minutes, not its 120 s:
    the lab's checks read a run's events once it returns (the jobs it published, the reactor's
    runs), and a build or a rejoin on a busy machine takes longer than 2 minutes."""
    with EventListener(timeout=1800) as listener:
        yield listener


@pytest.fixture(scope="session")
def lab():
    """The lab's hosts, network, CA and PostgreSQL: created once per session, always removed."""
    the_lab = Lab(managers=int(os.environ.get("LAB_MANAGERS", "3")))
    the_lab.create()
    try:
        yield the_lab
    finally:
        the_lab.destroy()


@pytest.fixture(scope="session")
def salt_factories_config(lab):
    # code_dir None: salt-factories would put its own site-packages first on every daemon's
    # sys.path, and a minion under another venv's Python (Salt 3006.8) would import this Salt
    return {"root_dir": lab.dir / "sf", "slow_stop": False, "start_timeout": 120,
            "code_dir": None}


@pytest.fixture(scope="session")
def pillar_dir(lab, packages):
    """This run's first pillar root: lab.yaml (the facts test/pillar/cloudify_ha.sls renders
    from); a test may shadow a pillar file of test/pillar here (see the `pillar` fixture)."""
    path = lab.dir / "pillar"
    path.mkdir(exist_ok=True)
    cert, key = lab.client_cert("managers")
    facts = {
        "managers": [{"name": h.name, "ip": h.ip, "public_ip": h.public_ip} for h in lab.managers],
        "db_ip": lab["db"].ip,
        "subnet": lab.subnet_cidr,
        "passwords": lab.passwords,
        "ca_cert": lab.ca.cert.read_text(),
        "ca_key": lab.ca.key.read_text(),
        "client_cert": cert.read_text(),
        "client_key": key.read_text(),
        "packages": {"manager": f"salt://cloudify_ha_packages/{packages['cloudify-manager-install'].name}",
                     "cli": f"salt://cloudify_ha_packages/{packages['cloudify-cli'].name}"},
        # a license as 4.6's are, signed with the key the lab's packages trust
        "license": make_license(packages["cloudify-manager-install"].parent / LICENSE_KEY),
    }
    (path / "lab.yaml").write_text(yaml.safe_dump(facts))
    return path


# The emulator's defaults are 4.6's timing (cfyemu/README.md: Installer, Cluster agent); the
# package most of the suite installs turns it down, because the suite kills, wipes, reboots
# and partitions managers dozens of times and builds clusters dozens more, and at 4.6's timing
# each would wait for it: 30 s before a dead node shows offline (heartbeat_seconds,
# offline_after_seconds), 30 s before a new active node after a failover (failover_seconds),
# 30 s of nginx's 502 after every boot (boot_502_seconds), 20 s of it during each cluster start
# (cluster_start_restart_seconds). Each is turned down, not off: a failover still leaves the
# cluster without an active node for a second, a boot and a cluster start still meet a 502.
LAB_KNOBS = {"heartbeat_seconds": 0.5, "offline_after_seconds": 3.0, "failover_seconds": 1.0,
             "boot_502_seconds": 5.0, "cluster_start_restart_seconds": 2.0}
# 4.6's own (the emulator's defaults), over LAB_KNOBS, for the layer that runs at 4.6's timing
# (test_timing46.py, and the join with a load balancer in test_loadbalancer.py)
AT_46 = {"heartbeat_seconds": 15, "offline_after_seconds": 30, "failover_seconds": 30,
         "boot_502_seconds": 30}


@pytest.fixture(scope="session")
def packages(lab):
    """The emulator's .deb packages, in a directory the master also serves as salt://, built
    with 4.6's timing turned down (LAB_KNOBS, which says why)."""
    return build_packages(lab.dir / "srv" / "cloudify_ha_packages", knobs=LAB_KNOBS)


@pytest.fixture(scope="session")
def emulator(lab, packages):
    return Emulator(lab, packages)


@pytest.fixture
def fresh_lab(lab, emulator):
    """Every host but the DB wiped to a fresh OS, the external database emptied, audit empty."""
    lab.reset()
    return lab


@pytest.fixture(scope="session")
def salt_master(salt_factories, lab, pillar_dir, packages):
    factory = salt_factories.salt_master_daemon(
        "master", overrides=master_overrides(lab, [pillar_dir, REPO / "test" / "pillar"],
                                             [formula_root(lab), lab.dir / "srv"]))
    with formula_master(factory):
        yield factory


@contextlib.contextmanager
def formula_master(factory):
    """A master started as the README sets one up once: the formula's modules and runners
    synced to it, then a restart, so that the reactor (its configuration is in the master's
    overrides) sees the runner. Stopped at the end."""
    with factory.started():
        ret = factory.salt_run_cli(timeout=300).run("saltutil.sync_all")
        assert ret.returncode == 0, ret
        factory.terminate()
        factory.start()
        yield factory


@pytest.fixture(scope="session")
def lab_minions(salt_master, lab):
    factories = start_minions(salt_master, lab, list(lab.hosts))
    try:
        yield factories
    finally:
        stop_minions(factories)


@pytest.fixture(scope="session")
def salt_cli(salt_master, lab_minions):
    return salt_master.salt_cli(timeout=120)


@pytest.fixture(scope="session")
def salt_run_cli(salt_master, lab_minions):
    return salt_master.salt_run_cli(timeout=600)
