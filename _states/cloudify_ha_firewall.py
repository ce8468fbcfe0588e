"""
The cluster's firewall rules, loaded from the rules file the ``cloudify_ha.firewall`` SLS writes,
checked by the marker comment (cluster name and digest of the rules) the loaded rules carry.

.. code-block:: yaml

    cluster-rules:
      cloudify_ha_firewall.rules_loaded:
        - name: /etc/cloudify_ha/firewall.nft
        - backend: nftables      # or iptables, ip6tables
        - marker: cloudify_ha lab 0123456789abcdef

``firewalld_present``: the same ports through firewalld's own configuration (ipsets and rich
rules the formula owns), see its docstring. What is opened to whom is
``cloudify_ha_firewall.plan``'s (the execution module).

A state rather than ``cmd.run`` with ``unless``: on Salt 3008 the first ``unless``/``onlyif``
of a job costs about a second of module loading, on every run, even when nothing changes. This
state runs the two read-only commands itself, and says "changed" only when the re-check sees
the marker after loading.
"""

import functools
import hashlib
import ipaddress
import os
import re

__virtualname__ = "cloudify_ha_firewall"

NFT_TABLE = ("inet", "cloudify_ha")
IPT_CHAIN = "CLOUDIFY_HA"


def __virtual__():
    return __virtualname__


def _run(argv):
    return __salt__["cmd.run_all"](argv, python_shell=False, ignore_retcode=True,
                                   output_loglevel="quiet")


def _nftables_loaded(marker):
    out = _run(["nft", "list", "table", *NFT_TABLE])
    return out["retcode"] == 0 and marker in out["stdout"]


def _xtables_loaded(tool, marker):
    if _run([tool, "-C", "INPUT", "-j", IPT_CHAIN])["retcode"] != 0:
        return False
    out = _run([tool, "-S", IPT_CHAIN])
    return out["retcode"] == 0 and marker in out["stdout"]


def _nftables_load(name):
    return [_run(["nft", "-f", name])]


def _xtables_load(tool, name):
    results = [_run([f"{tool}-restore", "--noflush", name])]
    if results[-1]["retcode"] == 0 and \
            _run([tool, "-C", "INPUT", "-j", IPT_CHAIN])["retcode"] != 0:
        results.append(_run([tool, "-I", "INPUT", "1", "-j", IPT_CHAIN]))
    return results


# backend: (are the rules with this marker loaded?, load file name); ip6tables is iptables'
# counterpart for IPv6 (the same chain in ip6tables' filter table)
BACKENDS = {"nftables": (_nftables_loaded, _nftables_load)}
BACKENDS.update({tool: (functools.partial(_xtables_loaded, tool),
                        functools.partial(_xtables_load, tool))
                 for tool in ("iptables", "ip6tables")})
# a kernel without IPv6 (ipv6.disable=1) has no such file, and no ip6tables table to load into
IPV6_PROC = "/proc/net/if_inet6"


def rules_loaded(name, backend, marker):
    """
    The rules in file ``name`` are loaded into ``backend`` (``nftables``: the table
    ``inet cloudify_ha``; ``iptables`` and ``ip6tables``: the chain ``CLOUDIFY_HA`` jumped to
    first from ``INPUT``), as proven by ``marker``, the comment the rules carry. Loads the file
    when the marker is missing, then checks again. On a host whose kernel has no IPv6, there is
    nothing to load into ip6tables, and nothing to close.
    """
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    if backend not in BACKENDS:
        ret["comment"] = (f"unknown firewall backend '{backend}': use one of "
                          f"{', '.join(sorted(BACKENDS))}")
        return ret
    if backend == "ip6tables" and not os.path.exists(IPV6_PROC):
        ret.update(result=True, comment=f"this host's kernel has no IPv6 ({IPV6_PROC} is "
                                        f"missing): no IPv6 rules are needed, {name} is not loaded")
        return ret
    loaded, load = BACKENDS[backend]
    if loaded(marker):
        ret.update(result=True, comment=f"the {backend} rules of {name} are loaded ({marker})")
        return ret
    if __opts__["test"]:
        ret.update(result=None, changes={"loaded": {"old": None, "new": marker}},
                   comment=f"the {backend} rules of {name} would be loaded")
        return ret
    for out in load(name):
        if out["retcode"] != 0:
            detail = (out.get("stderr") or out.get("stdout") or "").strip()[-500:]
            ret["comment"] = (f"loading {name} into {backend} failed (exit {out['retcode']}): "
                              f"{detail}")
            return ret
    if not loaded(marker):
        ret["comment"] = (f"{name} was loaded into {backend}, but the rules do not carry "
                          f"'{marker}' afterwards: something else rewrites them")
        return ret
    ret.update(result=True, changes={"loaded": {"old": None, "new": marker}},
               comment=f"the {backend} rules of {name} were loaded")
    return ret


# ---- firewalld ------------------------------------------------------------------------------
PROTOCOLS = ("tcp", "udp")
# what each opening of the plan is (cloudify_ha_firewall.plan): its ipset's name ends with it
ROLES = ("peers", "rest", "agents", "lb")
OPENING_KEYS = {"cluster", "name", "tcp", "udp", "sources"}
# hash:net takes no /0: "every source" is its two halves
EVERYWHERE = ("0.0.0.0/1", "128.0.0.0/1")
# the IPv6 sources the formula lets in: none. Its drop rules for IPv6 name this (empty) ipset,
# which makes them the formula's own: a rich rule has no comment
IPV6_SET = "cloudify_ha_ipv6"
PREFIX = "cloudify_ha_"
ZONE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,16}", re.ASCII)
CONFIGS = (("permanent", ["--permanent"]), ("runtime", []))


class _Refused(Exception):
    """A value that is not plain data, or a firewall-cmd that failed: the state's comment."""


def _ipset(cluster, role):
    """The ipset of one opening of a cluster: its managers (``peers``, hash:ip), the sources of
    its REST port, of its agents' ports or of its load balancer's port (hash:net). Named after a
    digest of the cluster's name, so that it fits firewalld's 31 characters whatever the name;
    its description names the cluster."""
    digest = hashlib.sha256(cluster.encode()).hexdigest()[:8]
    return f"{PREFIX}{digest}_{role}", "hash:ip" if role == "peers" else "hash:net"


def _entry(kind, text):
    """An ipset entry as ``ipaddress`` writes it (firewalld may print a /32 either way)."""
    if kind == "hash:ip":
        return str(ipaddress.ip_address(text))
    return str(ipaddress.ip_network(text, strict=False))


def _rules(ipset, port, protocol):
    """The opening's accept rule, and the drop rules for every other IPv4 source and for every
    IPv6 source. firewalld puts drop rules in the zone's deny chain, before its allow chain
    (its services, ports and the accept rules) and before the zone's target: a `trusted` zone, a
    zone whose target is ACCEPT or one that allows the port's service cannot let them through.
    Written as firewalld prints them back (`NOT`), so that they compare equal."""
    where = f'port port="{port}" protocol="{protocol}"'
    return [f'rule family="ipv4" source ipset="{ipset}" {where} accept',
            f'rule family="ipv4" source NOT ipset="{ipset}" {where} drop',
            f'rule family="ipv6" source NOT ipset="{IPV6_SET}" {where} drop']


def _port_ok(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


def _wanted(openings):
    """{"ipsets": {name: (type, entries, options)}, "rules": [...]}, built only from values
    checked here (IPv4 addresses and networks, port numbers, the openings' roles); _Refused
    names the first that is not."""
    ipsets = {IPV6_SET: ("hash:net", [], ["--option=family=inet6"])}
    accept, drop = [], []
    ports_seen = {}
    for index, opening in enumerate(openings):
        where = f"openings:{index}"
        if not (isinstance(opening, dict) and set(opening) == OPENING_KEYS):
            raise _Refused(f"{where}: {ascii(opening)} is not {{cluster, name, tcp, udp, "
                           "sources}")
        cluster, role = opening["cluster"], opening["name"]
        if not isinstance(cluster, str) or not cluster:
            raise _Refused(f"{where}:cluster: {ascii(cluster)} is not a cluster name")
        if role not in ROLES:
            raise _Refused(f"{where}:name: {ascii(role)} is not one of {', '.join(ROLES)}")
        ipset, kind = _ipset(cluster, role)
        sources = opening["sources"]
        try:
            if not isinstance(sources, list) or not sources:
                raise TypeError("a non-empty list is needed")
            if kind == "hash:ip":
                entries = [str(h) for h in sorted({ipaddress.IPv4Address(s) for s in sources})]
            else:
                nets = list(ipaddress.collapse_addresses(
                    ipaddress.IPv4Network(s, strict=True) for s in sources))
                # hash:net refuses overlapping entries; collapse_addresses merged them
                entries = list(EVERYWHERE) if nets[0].prefixlen == 0 else [str(n) for n in nets]
        except (TypeError, ValueError) as exc:
            raise _Refused(f"{where}:sources: {exc}: each must be an IPv4 address (peers) or an "
                           "address or network with its host bits zero") from None
        if ipset in ipsets:
            raise _Refused(f"{where}: cluster {cluster}'s {role} is given twice")
        ipsets[ipset] = (kind, entries, [])
        for protocol in PROTOCOLS:
            ports = opening[protocol]
            if not isinstance(ports, list) or not all(_port_ok(p) for p in ports):
                raise _Refused(f"{where}:{protocol}: {ascii(ports)} is not a list of port "
                               "numbers (1-65535)")
            for port in ports:
                if (protocol, port) in ports_seen:
                    raise _Refused(f"{where}:{protocol}: port {port} is also in "
                                   f"{ports_seen[protocol, port]}: a drop rule of one would "
                                   "stop the other's sources")
                ports_seen[protocol, port] = where
                rule, *drops = _rules(ipset, port, protocol)
                accept.append(rule)
                drop.extend(drops)
    return {"ipsets": ipsets, "rules": accept + drop}


def _fwcmd(args):
    out = _run(["firewall-cmd", *args])
    if out["retcode"] != 0:
        detail = (out.get("stderr") or out.get("stdout") or "").strip()[-500:]
        raise _Refused(f"firewall-cmd {' '.join(args)} failed (exit {out['retcode']}): {detail}")
    return out["stdout"]


def _seen(config, zone, wanted):
    """What firewalld holds in one configuration: the wanted ipsets' entries (None: no such
    ipset) and the zone's rich rules that use an ipset of the formula's (any cluster's, any
    port's: the formula's, whether it still wants them or not)."""
    names = set(_fwcmd([*config, "--get-ipsets"]).split())
    ipsets = {}
    for name, (kind, _, _) in wanted["ipsets"].items():
        ipsets[name] = None if name not in names else {
            _entry(kind, e) for e in _fwcmd([*config, f"--ipset={name}", "--get-entries"]).split()}
    rules = {line.strip() for line in _fwcmd([*config, *zone, "--list-rich-rules"]).splitlines()
             if f'ipset="{PREFIX}' in line}
    return {"ipsets": ipsets, "rules": rules}


def _diff(seen, wanted):
    """What one configuration lacks or holds too much of (empty: nothing to do)."""
    out = {}
    missing = [n for n, entries in seen["ipsets"].items() if entries is None]
    if missing:
        out["ipsets_created"] = missing
    for name, (_, entries, _) in wanted["ipsets"].items():
        have = seen["ipsets"][name] or set()
        added = [e for e in entries if e not in have]
        removed = sorted(have - set(entries))
        if added:
            out.setdefault("entries_added", {})[name] = added
        if removed:
            out.setdefault("entries_removed", {})[name] = removed
    added = [r for r in wanted["rules"] if r not in seen["rules"]]
    removed = sorted(seen["rules"] - set(wanted["rules"]))
    if added:
        out["rules_added"] = added
    if removed:
        out["rules_removed"] = removed
    return out


def _apply(config, zone, name, wanted, diff):
    """Make one configuration match: new ipsets (permanent only), stale rules and entries out
    first (a hash:net refuses an entry that overlaps one still there), then the missing ones;
    the rules of a zone in one command each way."""
    for ipset in diff.get("ipsets_created", []):
        kind, _, options = wanted["ipsets"][ipset]
        _fwcmd([*config, f"--new-ipset={ipset}", f"--type={kind}", *options])
        _fwcmd([*config, f"--ipset={ipset}", f"--set-description=cloudify_ha (Salt): {name}"])
    if diff.get("rules_removed"):
        _fwcmd([*config, *zone, *[f"--remove-rich-rule={r}" for r in diff["rules_removed"]]])
    for ipset, entries in diff.get("entries_removed", {}).items():
        _fwcmd([*config, f"--ipset={ipset}", *[f"--remove-entry={e}" for e in entries]])
    for ipset, entries in diff.get("entries_added", {}).items():
        _fwcmd([*config, f"--ipset={ipset}", *[f"--add-entry={e}" for e in entries]])
    if diff.get("rules_added"):
        _fwcmd([*config, *zone, *[f"--add-rich-rule={r}" for r in diff["rules_added"]]])


def firewalld_present(name, openings, zone=""):
    """
    firewalld lets each of the ``openings`` in from its sources only, in the permanent
    configuration (what a reload and a reboot restore) and the running one, in ``zone`` (''
    the default zone); ``name`` says whose rules they are (the clusters' names). An opening is
    ``{cluster, name, tcp, udp, sources}``, ``name`` one of ``peers`` (the cluster's managers),
    ``rest``, ``agents``, ``lb`` (see ``cloudify_ha_firewall.plan``), ``sources`` IPv4
    addresses or networks (``0.0.0.0/0``: every IPv4 source).

    Each port gets an accept rule for its ipset and drop rules for every other source, IPv4 and
    IPv6: firewalld applies drop rules before its accept rules, services and ports and before
    the zone's target, so the ports stay closed to others in a ``trusted`` zone, a zone whose
    target is ACCEPT or one that allows ``http``. The formula owns one ipset per opening
    (``cloudify_ha_<digest of the cluster>_<name>``, see ``firewall-cmd --info-ipset``), the
    empty ``cloudify_ha_ipv6`` (the IPv6 sources it lets in: none) and the zone's rich rules
    that use them, and only those: entries and rules it no longer wants (a manager removed from
    pillar, a REST port that changed, a cluster this host left) are removed, the operator's own
    rules are never touched. Every command is an argv. firewalld creates ipsets in the permanent
    configuration only: when one is new the running configuration is brought up to date with
    ``firewall-cmd --reload``, which drops runtime-only changes as any reload does; the
    comment says so.

    .. code-block:: yaml

        cluster-ports:
          cloudify_ha_firewall.firewalld_present:
            - name: prod
            - openings:
              - {cluster: prod, name: peers, tcp: [8300], udp: [8301],
                 sources: [10.0.0.11, 10.0.0.12, 10.0.0.13]}
              - {cluster: prod, name: rest, tcp: [80], udp: [], sources: [10.0.0.0/24]}
    """
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    try:
        if not isinstance(name, str) or not name:
            raise _Refused(f"name: {ascii(name)} is not the rules' name")
        if not isinstance(zone, str) or zone and not ZONE_RE.fullmatch(zone):
            raise _Refused(f"zone: {ascii(zone)} is not a firewalld zone name")
        if not isinstance(openings, list):
            raise _Refused("openings must be a list")
        wanted = _wanted(openings)
    except _Refused as exc:
        ret["comment"] = f"{exc}; nothing was changed"
        return ret
    zone_args = [f"--zone={zone}"] if zone else []
    acting = False
    try:
        diffs = {key: _diff(_seen(config, zone_args, wanted), wanted) for key, config in CONFIGS}
        changes = {key: diff for key, diff in diffs.items() if diff}
        if not changes:
            ret.update(result=True, comment=f"firewalld has the rules of {name}: "
                                            f"{len(wanted['rules'])} rich rules on "
                                            f"{len(wanted['ipsets'])} ipsets")
            return ret
        reload = bool(diffs["permanent"].get("ipsets_created")
                      or diffs["runtime"].get("ipsets_created"))
        how = (" (then firewall-cmd --reload: an ipset is new, and firewalld creates ipsets in "
               "the permanent configuration only; runtime-only changes are dropped, as by any "
               "reload)") if reload else ""
        if __opts__["test"]:
            ret.update(result=None, changes=changes,
                       comment=f"firewalld's rules of {name} would be changed{how}")
            return ret
        acting = True
        _apply(["--permanent"], zone_args, name, wanted, diffs["permanent"])
        if reload:
            _fwcmd(["--reload"])
        else:
            _apply([], zone_args, name, wanted, diffs["runtime"])
        left = {key: _diff(_seen(config, zone_args, wanted), wanted) for key, config in CONFIGS}
        left = {key: diff for key, diff in left.items() if diff}
        if left:
            raise _Refused(f"firewalld was changed but still differs afterwards: {left}; "
                           "something else rewrites its configuration")
    except _Refused as exc:
        ret["comment"] = str(exc) + ("; part of the change may be made: run the state again, it "
                                     "starts from what firewalld holds" if acting else "")
        return ret
    ret.update(result=True, changes=changes,
               comment=f"firewalld's rules of {name} were changed{how}")
    return ret
