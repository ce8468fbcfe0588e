"""
Outputter for ``salt-run cloudify_ha.status``: one table of managers per cluster, then the
active node, its maintenance mode, membership differences and stale profiles. ``--out=json``
gives the data instead.

Every string it prints comes from minions and managers (a node name a REST answer carries, an
error a minion returns): one that is not printable ASCII is shown escaped (``\x1b[2J``), so it
can neither move the terminal's cursor, clear it or retitle it, nor add a line to the table.
"""

__virtualname__ = "cloudify_ha_status"

COLUMNS = ("node", "minion", "ip", "state", "local")


def __virtual__():
    return __virtualname__


def _shown(value):
    """`value` as printable ASCII: as it is when it is, else with every other character
    escaped the way Python writes it in a string (a backslash too, then)."""
    text = str(value)
    if text.isascii() and text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii")


def _table(rows):
    cells = [list(COLUMNS)] + [[_shown(r.get(c, "")) for c in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    lines = [rule, "| " + " | ".join(v.ljust(w) for v, w in zip(cells[0], widths)) + " |", rule]
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |"
              for row in cells[1:]]
    return lines + [rule]


def output(data, **kwargs):  # pylint: disable=unused-argument
    if not isinstance(data, dict):
        return _shown(data)
    # the error form holds a LIST under "errors"; a cluster (which may be named errors) a mapping
    if isinstance(data.get("errors"), list):
        return "the cloudify_ha pillar is invalid:\n" + "\n".join(
            f"- {_shown(e)}" for e in data["errors"])
    out = []
    for cname, cluster in data.items():
        out.append(f"cluster {_shown(cname)}")
        out += _table(cluster.get("managers") or [])
        out.append(f"active node:            {_shown(cluster.get('active node'))}")
        if "maintenance mode" in cluster:  # 4.6's maintenance mode of the active node
            out.append(f"maintenance mode:       {_shown(cluster['maintenance mode'])}")
        for key in ("listed, not in pillar", "in pillar, not listed", "stale profiles"):
            names = ", ".join(_shown(name) for name in cluster.get(key) or [])
            out.append(f"{key + ':':<24}{names or '-'}")
        out.append("")
    return "\n".join(out)
