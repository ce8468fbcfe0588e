#!py
"""A manager minion started, or its cloudify_ha beacon says it is not a healthy member: rejoin it.

Built as data (the py renderer): nothing from the event is ever rendered into YAML. The event's
payload is written by the minion and Salt does not check an ``id`` in it (a beacon's event batch
is not verified), so the id is used only when it is a plain minion id (ASCII letters, digits,
``.``, ``_``, ``-``) and the event's tag names that same minion; anything else makes no reaction
and a warning. A minion that forges both can at most ask for the rejoin of a manager named in
pillar, which changes nothing on a healthy one: the runner runs one rejoin at a time and
coalesces repeated events, and the orchestration checks the id against the cluster pillar and
acts only where a check finds something to do."""

import logging
import re

log = logging.getLogger("cloudify_ha.reactor")

MINION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}", re.ASCII)
TAGS = ("salt/minion/{}/start", "salt/beacon/{}/cloudify_ha/")


def run():
    # `tag` and `data` are the event's, set by the reactor
    minion = data.get("id") if isinstance(data, dict) else None  # noqa: F821
    if not isinstance(minion, str) or not MINION_ID.fullmatch(minion):
        if minion is not None:
            log.warning("cloudify_ha reactor: ignored an event whose id is not a plain minion "
                        "id: %r (tag %r)", minion, tag)  # noqa: F821
        return {}
    if tag not in [t.format(minion) for t in TAGS]:  # noqa: F821
        log.warning("cloudify_ha reactor: ignored an event for %r under another tag: %r",
                    minion, tag)  # noqa: F821
        return {}
    # cached: the runner drops an id that is no manager on the master's facts of a few
    # seconds ago, without compiling the pillar for each event of a burst
    reaction = {"runner.cloudify_ha.rejoin": [{"args": [{"node": minion}, {"cached": True}]}]}
    return {f"cloudify_ha-reactor-rejoin-{minion}": reaction}
