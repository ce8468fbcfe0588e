"""The formula's Python files loaded by path, and the example pillar, for the unit tests.

_modules/cloudify_ha.py and _states/cloudify_ha.py share a file name: each is loaded under its
own module name, the way Salt's loader would give each its own namespace.
"""

import copy
import functools
import importlib.util
import pathlib
import sys

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]


def load(relpath, module_name):
    """The module at REPO/relpath, imported (once) as `module_name`."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, REPO / relpath)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def pillar_util():
    return load("_utils/cloudify_ha_pillar.py", "cloudify_ha_pillar_under_test")


def rest_util():
    return load("_utils/cloudify_ha_rest.py", "cloudify_ha_rest_under_test")


def execution_module():
    return load("_modules/cloudify_ha.py", "cloudify_ha_module_under_test")


def state_module():
    return load("_states/cloudify_ha.py", "cloudify_ha_state_under_test")


@functools.lru_cache(maxsize=1)
def _parsed_example():
    with open(REPO / "pillar.example", encoding="utf-8") as fh:
        return yaml.safe_load(fh)["cloudify_ha"]


def example_pillar():
    """A fresh copy of pillar.example's `cloudify_ha` mapping."""
    return copy.deepcopy(_parsed_example())


# pillar.example's secrets: nothing the formula returns, logs or puts on a command line has them
EXAMPLE_SECRETS = ("CHANGE-ME-admin-password", "CHANGE-ME-db-password",
                   "CHANGE-ME-postgres-password", "CHANGE-ME-check-password")


def firewall_state_module():
    return load("_states/cloudify_ha_firewall.py", "cloudify_ha_firewall_state_under_test")


def beacon_module():
    return load("_beacons/cloudify_ha.py", "cloudify_ha_beacon_under_test")


def grain_module():
    return load("_grains/cloudify_ha.py", "cloudify_ha_grain_under_test")


def runner_module():
    return load("_runners/cloudify_ha.py", "cloudify_ha_runner_under_test")


def files_util():
    return load("_utils/cloudify_ha_files.py", "cloudify_ha_files_under_test")


def orch_util():
    return load("_utils/cloudify_ha_orch.py", "cloudify_ha_orch_under_test")


def firewall_plan_module():
    return load("_modules/cloudify_ha_firewall.py", "cloudify_ha_firewall_module_under_test")
