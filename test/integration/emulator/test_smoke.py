"""The seed's procedure by hand: one leader, two joiners, the nodes table."""

from lab.manual import build_cluster


def test_seed_procedure_builds_a_three_node_cluster(fresh_lab, emulator):
    build_cluster(fresh_lab, emulator, ["mgr1", "mgr2", "mgr3"], "smoke-admin-pw", "smoke-db-pw")
    out = fresh_lab["mgr1"].run(["cfy", "cluster", "nodes", "list"]).stdout
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| mgr")]
    states = {r[1].strip(): (r[3].strip(), r[6].strip()) for r in rows}
    assert states == {"mgr1": ("leader", "REMOTE"), "mgr2": ("replica", "REMOTE"),
                      "mgr3": ("replica", "REMOTE")}
