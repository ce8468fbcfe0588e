"""
Grain ``cloudify_ha_modules``: the cloudify_ha formula's files synced to this minion, as
``{"<kind>/<file>": "sha256:<hex>"}`` (the files named ``cloudify_ha*`` of the kinds
``cloudify_ha.sync`` copies).

``cloudify_ha.sync`` puts this grain on a minion with the formula's modules, and the minion sends
its grains to the master with its next pillar request. The orchestration reads the master's
grains cache before it asks any minion anything: a minion whose cached grains lack this one has
never held the formula's modules, so it is asked ``test.ping`` instead of
``cloudify_ha.orch_facts``. A minion answers a function it does not have only after it has
loaded every module it has, to suggest similar names: seconds on every new minion.

.. code-block:: bash

    salt cfy-mgr1 grains.get cloudify_ha_modules
"""

import hashlib
import os

# the kinds cloudify_ha.sync copies (SYNCED_KINDS in _modules/cloudify_ha_master.py)
KINDS = ("utils", "modules", "states", "beacons", "grains")


def modules():
    """The formula's synced files on this minion and their sha256."""
    root = __opts__.get("extension_modules") or ""
    found = {}
    for kind in KINDS:
        folder = os.path.join(root, kind)
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            path = os.path.join(folder, name)
            if not name.startswith("cloudify_ha") or not os.path.isfile(path):
                continue
            try:
                with open(path, "rb") as handle:
                    found[f"{kind}/{name}"] = "sha256:" + hashlib.sha256(handle.read()).hexdigest()
            except OSError:
                continue
    return {"cloudify_ha_modules": found}
