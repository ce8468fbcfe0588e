"""
What the ``cloudify_ha.firewall`` SLS opens on this host, to whom, and through which firewall.

A manager opens its cluster's ports (8300/tcp, 8301/tcp+udp, 8500/tcp, 22000/tcp) to the
cluster's managers, the REST port (80, 443 with REST SSL) to the managers and
``firewall:rest_sources``, and the ports its agents use (5671 AMQP, 53333 internal REST) to the
managers and ``firewall:agent_sources``; a load balancer host opens ``loadbalancer:port`` to
``loadbalancer:sources``. Each of these ports is closed to every other source, IPv6 included:
the sources are IPv4 (the managers' addresses are), so no IPv6 source reaches them.

The plan is data (``plan``); the states of ``_states/cloudify_ha_firewall.py`` load it. The
only commands run are three read-only probes of the host, for ``backend: auto``:
``firewall-cmd --state``, where ``nft`` is and ``nft --version``.
"""

import ipaddress
import re

__virtualname__ = "cloudify_ha_firewall"

CLUSTER_TCP = [8300, 8301, 8500, 22000]
CLUSTER_UDP = [8301]
# what 4.6's agents connect to on every manager: RabbitMQ (AMQP over TLS) and the internal REST
# service with the file server (4.6 prerequisites, "Network Ports")
AGENT_TCP = [5671, 53333]
EVERYONE = "0.0.0.0/0"
# The oldest nft the formula's nftables template is written for. It uses an inet table, named
# ipv4_addr sets with `flags interval` and their elements, rule comments (the marker), a numeric
# base chain priority and policy: all in nft 0.9.0's nft(8). It avoids what came later: a table
# comment (0.9.7), a symbolic priority such as `filter - 1` (after 0.9.0) and `auto-merge`
# (overlaps are removed here instead). EL7's nft 0.8 is older: `auto` picks iptables there.
NFT_MINIMUM = (0, 9, 0)
NFT_VERSION_RE = re.compile(r"\bv?([0-9]+)\.([0-9]+)(?:\.([0-9]+))?")


def __virtual__():
    return __virtualname__


def _run(argv):
    return __salt__["cmd.run_all"](argv, python_shell=False, ignore_retcode=True,
                                   output_loglevel="quiet")


def _firewalld_runs():
    return bool(__salt__["cmd.which"]("firewall-cmd")) and __salt__["cmd.retcode"](
        ["firewall-cmd", "--state"], python_shell=False, ignore_retcode=True,
        output_loglevel="quiet") == 0


def nft_version():
    """
    The version of this host's ``nft`` as a list of numbers, as it says it (``[1, 0, 6]``,
    ``[0, 8]``), or None when there is no ``nft`` or it does not say.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha_firewall.nft_version
    """
    if not __salt__["cmd.which"]("nft"):
        return None
    out = _run(["nft", "--version"])
    found = NFT_VERSION_RE.search(out.get("stdout") or "") if out.get("retcode") == 0 else None
    return [int(part) for part in found.groups() if part is not None] if found else None


def _shown(version):
    return ".".join(str(part) for part in version)


def _new_enough(version):
    return version is not None and tuple(version + [0] * (3 - len(version))) >= NFT_MINIMUM


def _backend(wanted, where):
    """(backend, refusal): the pillar's choice, or for ``auto`` firewalld where it runs, else
    nftables where its nft is new enough for the template, else iptables."""
    if wanted == "auto":
        if _firewalld_runs():
            return "firewalld", None
        version = nft_version()
        return ("nftables" if _new_enough(version) else "iptables"), None
    if wanted == "nftables":
        version = nft_version()
        need = _shown(NFT_MINIMUM)
        if version is None:
            return None, (f"{where}:firewall:backend: nftables, but this host has no nft (or it "
                          f"does not say its version); install nftables {need} or newer, or set "
                          "backend to iptables, firewalld or auto")
        if not _new_enough(version):
            return None, (f"{where}:firewall:backend: nftables, but this host's nft is "
                          f"{_shown(version)} and the formula's nftables rules need {need} or "
                          "newer (EL7 ships 0.8); set backend to iptables or firewalld, or auto "
                          "(which picks iptables here)")
    return wanted, None


def _sources(values):
    """IPv4 addresses and networks without any that another one covers (an nftables interval
    set and a firewalld hash:net refuse overlapping elements), in their first order; a /32 is
    written as its address."""
    nets = [ipaddress.IPv4Network(v, strict=True) for v in values]
    kept = []
    for net in sorted(set(nets), key=lambda n: n.prefixlen):
        if not any(net.subnet_of(k) for k in kept):
            kept.append(net)
    order = {net: i for i, net in reversed(list(enumerate(nets)))}
    return [str(n.network_address) if n.prefixlen == 32 else str(n)
            for n in sorted(kept, key=order.get)]


def _manager_openings(c):
    fw = c["firewall"]
    peers = [m["private_ip"] for m in c["managers"]]
    rest = _sources(peers + fw["rest_sources"]) if fw["rest_sources"] else [EVERYONE]
    return [
        {"cluster": c["name"], "name": "peers", "tcp": list(CLUSTER_TCP),
         "udp": list(CLUSTER_UDP), "sources": _sources(peers)},
        {"cluster": c["name"], "name": "rest", "tcp": [443 if c["rest"]["ssl"] else 80],
         "udp": [], "sources": rest},
        {"cluster": c["name"], "name": "agents", "tcp": list(AGENT_TCP), "udp": [],
         "sources": _sources(peers + fw["agent_sources"])},
    ]


def _lb_opening(c):
    lb = c["loadbalancer"]
    return {"cluster": c["name"], "name": "lb", "tcp": [lb["port"]], "udp": [],
            "sources": _sources(lb.get("sources") or [EVERYONE])}


def _one_rule_per_port(openings):
    """Each port in one opening: a port two openings open to the same sources is kept in the
    first only; to different sources, a refusal (one opening's drop rule would stop the other's
    sources on firewalld, where a rule cannot say "neither set")."""
    seen = {}
    out = []
    for opening in openings:
        kept = dict(opening)
        for proto in ("tcp", "udp"):
            kept[proto] = []
            for port in opening[proto]:
                first = seen.setdefault((proto, port), opening)
                if first is opening:
                    kept[proto].append(port)
                elif first["sources"] != opening["sources"]:
                    return None, (
                        f"cloudify_ha:clusters:{opening['cluster']}: port {port}/{proto} is "
                        f"opened on this host both for {first['cluster']}'s {first['name']} "
                        f"({', '.join(first['sources'])}) and for {opening['cluster']}'s "
                        f"{opening['name']} ({', '.join(opening['sources'])}); give them the "
                        "same sources or different ports")
        if kept["tcp"] or kept["udp"]:
            out.append(kept)
    return out, None


def _label(names):
    """The clusters' names as the rules' marker shows them (at most 64 characters: an nftables
    comment holds 128)."""
    label = "+".join(names)
    return label if len(label) <= 64 else f"{names[0][:56]}+{len(names) - 1}-more"


def plan(me=None, clusters=None):
    """
    This host's firewall as the ``cloudify_ha.firewall`` SLS applies it: ``backend``
    (``firewalld``, ``nftables``, ``iptables``, or None with nothing to open), firewalld's
    ``zone``, ``label`` (the clusters' names, the rules' marker), ``openings`` (each a
    cluster's ``peers``, ``rest``, ``agents`` or ``lb`` ports with the IPv4 sources they are
    open to; every other source is dropped, IPv6 included), the ``context`` the nftables and
    iptables templates render with, and ``refused``: why nothing may be applied (None when all
    is well). ``me`` and ``clusters`` are what ``cloudify_ha.settings`` returns; by default
    this minion's.

    A host's firewall settings (``enabled``, ``backend``, ``firewalld_zone``) are those of the
    cluster it manages, else of the first cluster it balances whose firewall is enabled.

    CLI Example:

    .. code-block:: bash

        salt cfy-mgr1 cloudify_ha_firewall.plan
    """
    out = {"refused": None, "backend": None, "zone": "", "label": "", "openings": [],
           "context": {}}
    if me is None or clusters is None:
        settings = __salt__["cloudify_ha.settings"]()
        if settings["errors"]:
            return dict(out, refused="the cloudify_ha pillar is invalid: "
                                     + "; ".join(settings["errors"]))
        me, clusters = settings["me"], settings["clusters"]
    mine = []
    if me.get("manager") and me.get("cluster") and me["cluster"]["firewall"]["enabled"]:
        mine.append((me["cluster"], _manager_openings(me["cluster"])))
    for cname in me.get("lb_of") or []:
        c = clusters.get(cname)
        if c and c["firewall"]["enabled"] and c.get("loadbalancer"):
            mine.append((c, [_lb_opening(c)]))
    if not mine:
        return out
    openings, refusal = _one_rule_per_port([o for _, found in mine for o in found])
    decider = mine[0][0]
    backend, refusal = (None, refusal) if refusal else _backend(
        decider["firewall"]["backend"], f"cloudify_ha:clusters:{decider['name']}")
    if refusal:
        return dict(out, refused=refusal)
    label = _label(list(dict.fromkeys(c["name"] for c, _ in mine)))
    managed = me["cluster"] if mine[0][0] is me.get("cluster") else None
    out.update(backend=backend, zone=decider["firewall"]["firewalld_zone"], label=label,
               openings=openings, context=_context(label, managed, openings))
    return out


def _context(label, managed, openings):
    """What the nftables and iptables templates render with: ``cluster`` (the label),
    ``openings`` (each with ``set``, a name for its sources), and for the cluster this host
    manages (``managed``) the names the templates had before load balancer hosts and agents had
    rules (empty on a host that manages none)."""
    out = {"cluster": label,
           "openings": [dict(o, set=f"{o['name']}_{i}") for i, o in enumerate(openings)],
           "peers": [], "tcp_ports": [], "udp_ports": [], "rest_port": None,
           "rest_allowed": [], "agent_ports": [], "agent_allowed": []}
    if managed:
        ours = {o["name"]: o for o in _manager_openings(managed)}
        out.update(peers=ours["peers"]["sources"], tcp_ports=ours["peers"]["tcp"],
                   udp_ports=ours["peers"]["udp"], rest_port=ours["rest"]["tcp"][0],
                   rest_allowed=ours["rest"]["sources"], agent_ports=ours["agents"]["tcp"],
                   agent_allowed=ours["agents"]["sources"])
    return out
