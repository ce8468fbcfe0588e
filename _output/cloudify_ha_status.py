"""
Outputter for ``salt-run cloudify_ha.status``: one table of managers per cluster, then the
active node, its maintenance mode, membership differences and stale profiles. ``--out=json``
gives the data instead.
"""

__virtualname__ = "cloudify_ha_status"

COLUMNS = ("node", "minion", "ip", "state", "local")


def __virtual__():
    return __virtualname__


def _table(rows):
    cells = [list(COLUMNS)] + [[str(r.get(c, "")) for c in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    lines = [rule, "| " + " | ".join(v.ljust(w) for v, w in zip(cells[0], widths)) + " |", rule]
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |"
              for row in cells[1:]]
    return lines + [rule]


def output(data, **kwargs):  # pylint: disable=unused-argument
    if not isinstance(data, dict):
        return str(data)
    # the error form holds a LIST under "errors"; a cluster (which may be named errors) a mapping
    if isinstance(data.get("errors"), list):
        return "the cloudify_ha pillar is invalid:\n" + "\n".join(f"- {e}" for e in data["errors"])
    out = []
    for cname, cluster in data.items():
        out.append(f"cluster {cname}")
        out += _table(cluster.get("managers") or [])
        out.append(f"active node:            {cluster.get('active node')}")
        if "maintenance mode" in cluster:  # 4.6's maintenance mode of the active node
            out.append(f"maintenance mode:       {cluster['maintenance mode']}")
        for key in ("listed, not in pillar", "in pillar, not listed", "stale profiles"):
            out.append(f"{key + ':':<24}{', '.join(cluster.get(key) or []) or '-'}")
        out.append("")
    return "\n".join(out)
