"""Session fixtures shared by every layer: the lab, its salt-master and its minions.

Nothing here starts unless a test asks for it: unit tests never build the lab.
"""

import os
import signal

import pytest
import yaml

from lab.core import Lab
from lab.emulator import Emulator, build_packages
from lab.saltlab import REPO, master_overrides, start_minions, stop_minions


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
    return {"root_dir": lab.dir / "sf", "slow_stop": False, "start_timeout": 120}


@pytest.fixture(scope="session")
def pillar_dir(lab):
    """This run's first pillar root; tests may shadow a pillar file of test/pillar here."""
    path = lab.dir / "pillar"
    path.mkdir(exist_ok=True)
    (path / "lab.sls").write_text(yaml.safe_dump({"lab": lab.facts()}))
    return path


@pytest.fixture(scope="session")
def packages(lab):
    """The emulator's .deb packages, in a directory the master also serves as salt://."""
    return build_packages(lab.dir / "srv" / "cloudify_ha_packages")


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
                                             [REPO, lab.dir / "srv"]))
    with factory.started():
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
