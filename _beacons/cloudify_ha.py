"""
Beacon: fires when the local Cloudify manager stops being a healthy cluster member.

Healthy is ``leader`` or ``replica`` (``cloudify_ha.node_state``, asked as the load balancer's
check user where the cluster has one: not the admin every interval). The beacon fires once per
change into an unhealthy state (installed but not joined, removed, REST down, package only), not
at every interval, and never on a host that has not been healthy since the minion started unless
``fire_on_start`` is true (a wiped host's minion start event already triggers the rejoin). The
event, ``salt/beacon/<minion id>/cloudify_ha/``, carries the state; the reactor trusts only the
minion id.

.. code-block:: yaml

    beacons:
      cloudify_ha:
        - interval: 30
        - fire_on_start: false
"""

import logging

log = logging.getLogger(__name__)

__virtualname__ = "cloudify_ha"

HEALTHY = ("leader", "replica")


def __virtual__():
    return __virtualname__


def validate(config):
    if not isinstance(config, list):
        return False, "cloudify_ha beacon: the configuration must be a list (see its docstring)"
    for item in config:
        if not isinstance(item, dict):
            return False, "cloudify_ha beacon: each configuration item must be a mapping"
        unknown = set(item) - {"interval", "fire_on_start", "cluster"}
        if unknown:
            return False, f"cloudify_ha beacon: unknown option(s) {sorted(unknown)}"
    return True, "valid"


def beacon(config):
    options = {}
    for item in config:
        options.update(item)
    try:
        # as the load balancer's check user where the cluster has one: the admin's password
        # is not sent every interval, nor written to the admin's last login
        state = __salt__["cloudify_ha.node_state"](cluster=options.get("cluster"),
                                                   as_check_user=True)
    except Exception as exc:  # pylint: disable=broad-except
        # not a manager in pillar, or pillar broken: nothing to report about a cluster member
        log.debug("cloudify_ha beacon: no node state: %s", exc)
        return []
    last = __context__.get("cloudify_ha.beacon.last")
    __context__["cloudify_ha.beacon.last"] = state
    if state in HEALTHY:
        __context__["cloudify_ha.beacon.was_healthy"] = True
        return []
    if last == state:
        return []
    # a host that has not been healthy since the minion started (a wiped host being rebuilt,
    # absent -> package_installed -> installed) is the start event's business
    was_healthy = __context__.get("cloudify_ha.beacon.was_healthy", False)
    if not (was_healthy or options.get("fire_on_start", False)):
        return []
    return [{"tag": "", "state": state, "previous": last}]
