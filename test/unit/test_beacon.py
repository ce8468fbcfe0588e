"""_beacons/cloudify_ha.py: when it fires, with a fake node_state that plays the local manager
one check after another."""

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

from formula_code import beacon_module

BEACON = beacon_module()
STATES = []  # what node_state answers at each check; an exception is raised


def node_state(cluster=None, as_check_user=False):
    assert as_check_user is True  # the beacon never asks as the admin
    value = STATES.pop(0)
    if isinstance(value, Exception):
        raise value
    return value


@pytest.fixture
def configure_loader_modules():
    STATES.clear()
    return {BEACON: {"__salt__": {"cloudify_ha.node_state": node_state}, "__context__": {}}}


def checks(*states, config=({"interval": 30},)):
    """The beacon's events, one check per state (the same minion: its __context__ stays)."""
    STATES.extend(states)
    return [BEACON.beacon(list(config)) for _ in states]


def event(state, previous):
    return [{"tag": "", "state": state, "previous": previous}]


def test_a_healthy_member_fires_nothing():
    assert checks("replica", "replica", "leader", "replica") == [[], [], [], []]


def test_it_fires_once_per_change_into_an_unhealthy_state():
    assert checks("replica", "down", "down", "removed", "removed", "replica", "installed") == \
        [[], event("down", "replica"), [], event("removed", "down"), [], [],
         event("installed", "replica")]


def test_a_host_not_healthy_since_the_minion_started_fires_nothing():
    # a wiped host being rebuilt: its start event triggers the rejoin, not each step of it
    assert checks("absent", "package_installed", "installed", "replica", "down") == \
        [[], [], [], [], event("down", "replica")]


def test_fire_on_start():
    config = ({"interval": 30}, {"fire_on_start": True})
    assert checks("installed", "installed", "package_installed", config=config) == \
        [event("installed", None), [], event("package_installed", "installed")]


@pytest.mark.parametrize("error", [SaltInvocationError("not a manager in pillar"),
                                   CommandExecutionError("rejected the admin credentials (401)")])
def test_no_node_state_fires_nothing_and_forgets_nothing(error):
    assert checks("replica", error, "down") == [[], [], event("down", "replica")]


def test_the_cluster_option_reaches_node_state():
    seen = []
    BEACON.__salt__["cloudify_ha.node_state"] = (
        lambda cluster=None, as_check_user=False: seen.append((cluster, as_check_user))
        or "leader")
    assert BEACON.beacon([{"interval": 30}, {"cluster": "prod"}]) == []
    assert seen == [("prod", True)]


def test_validate():
    assert BEACON.validate([{"interval": 30}, {"fire_on_start": True}, {"cluster": "prod"}]) == \
        (True, "valid")
    assert BEACON.validate({"interval": 30})[0] is False
    assert BEACON.validate(["interval"])[0] is False
    valid, comment = BEACON.validate([{"intervall": 30}])
    assert valid is False and "unknown option(s) ['intervall']" in comment
