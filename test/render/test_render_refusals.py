"""Each minion-side refusal RUNS through Salt's state engine, with and without test=True: it fails
with its message and changes nothing (the orchestrations' refusals: test_render_orch.py)."""

import pytest

from render_setup import CLI, LB, LEADER, STRANGER, functions_of, run_high

HOSTILE_NODE = {"cloudify_ha_orch": {"node": "cfy-mgr3\n  evil: true", "cluster": "prod"}}
BAD_LB = {"cloudify_ha": {"clusters": {"prod": {"loadbalancer": {"fall": 0}}}}}
REFUSALS = [
    ("cloudify_ha.installer", STRANGER, None, "cloudify_ha-installer-not-a-manager",
     f"minion {STRANGER} is not a manager of any cluster in pillar cloudify_ha:clusters"),
    # the SLS that include the installer refuse with it
    ("cloudify_ha.cluster.leader", CLI, None, "cloudify_ha-installer-not-a-manager",
     f"minion {CLI} is not a manager of any cluster in pillar cloudify_ha:clusters"),
    ("cloudify_ha.cluster.absent", LEADER, None, "cloudify_ha-cluster-absent-missing-pillar",
     "cloudify_ha.cluster.absent needs pillar cloudify_ha_orch:node and cloudify_ha_orch:cluster"),
    ("cloudify_ha.cluster.down", LEADER, None, "cloudify_ha-cluster-down-missing-pillar",
     "cloudify_ha.cluster.down needs pillar cloudify_ha_orch:node and cloudify_ha_orch:cluster"),
    ("cloudify_ha.cluster.absent", LEADER, HOSTILE_NODE, "cloudify_ha-cluster-absent-invalid-pillar",
     "cloudify_ha_orch:node and :cluster must be a node name and a cluster name (ASCII letters, "
     "digits, '.', '_', '-'); nothing was changed"),
    ("cloudify_ha.cluster.down", LEADER, HOSTILE_NODE, "cloudify_ha-cluster-down-invalid-pillar",
     "cloudify_ha_orch:node and :cluster must be a node name and a cluster name (ASCII letters, "
     "digits, '.', '_', '-'); nothing was changed"),
    ("cloudify_ha.loadbalancer", LB, BAD_LB, "cloudify_ha-loadbalancer-invalid-pillar",
     "the cloudify_ha pillar is invalid; nothing was changed here. Fix:\n"
     "- cloudify_ha:clusters:prod:loadbalancer:fall: 0 must be a whole number from 1 to 100"),
]


@pytest.mark.parametrize("test", [False, True], ids=["run", "test=True"])
@pytest.mark.parametrize("sls,minion_id,pillar,sid,message", REFUSALS,
                         ids=[f"{r[0]}-{r[1]}" for r in REFUSALS])
def test_the_refusal_fails_with_its_message_and_changes_nothing(minion, test, sls, minion_id,
                                                                pillar, sid, message):
    m = minion("example", minion_id, pillar=pillar, test=test)
    high, errors = m.render(sls)
    assert (errors, list(functions_of(high))) == ([], [sid])
    result, comment, changes, name = run_high(m.state, high, test)[sid]
    assert (result, changes) == (False, {})
    assert message in (comment, name)
