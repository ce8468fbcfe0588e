"""
The cluster's firewall rules, loaded from the rules file the ``cloudify_ha.firewall`` SLS writes,
checked by the marker comment (cluster name and digest of the rules) the loaded rules carry.

.. code-block:: yaml

    cluster-rules:
      cloudify_ha_firewall.rules_loaded:
        - name: /etc/cloudify_ha/firewall.nft
        - backend: nftables      # or iptables
        - marker: cloudify_ha lab 0123456789abcdef

``firewalld_present``: the same ports through firewalld's own configuration (ipsets and rich
rules the formula owns), see its docstring.

A state rather than ``cmd.run`` with ``unless``: on Salt 3008 the first ``unless``/``onlyif``
of a job costs about a second of module loading, on every run, even when nothing changes. This
state runs the two read-only commands itself, and says "changed" only when the re-check sees
the marker after loading.
"""

import hashlib
import ipaddress
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


def _iptables_loaded(marker):
    if _run(["iptables", "-C", "INPUT", "-j", IPT_CHAIN])["retcode"] != 0:
        return False
    out = _run(["iptables", "-S", IPT_CHAIN])
    return out["retcode"] == 0 and marker in out["stdout"]


def _nftables_load(name):
    return [_run(["nft", "-f", name])]


def _iptables_load(name):
    results = [_run(["iptables-restore", "--noflush", name])]
    if results[-1]["retcode"] == 0 and \
            _run(["iptables", "-C", "INPUT", "-j", IPT_CHAIN])["retcode"] != 0:
        results.append(_run(["iptables", "-I", "INPUT", "1", "-j", IPT_CHAIN]))
    return results


BACKENDS = {"nftables": (_nftables_loaded, _nftables_load),
            "iptables": (_iptables_loaded, _iptables_load)}


def rules_loaded(name, backend, marker):
    """
    The rules in file ``name`` are loaded into ``backend`` (``nftables``: the table
    ``inet cloudify_ha``; ``iptables``: the chain ``CLOUDIFY_HA`` jumped to from ``INPUT``), as
    proven by ``marker``, the comment the rules carry. Loads the file when the marker is missing,
    then checks again.
    """
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    if backend not in BACKENDS:
        ret["comment"] = (f"unknown firewall backend '{backend}': use one of "
                          f"{', '.join(sorted(BACKENDS))}")
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
# hash:net takes no /0: "every source" is its two halves
EVERYWHERE = ("0.0.0.0/1", "128.0.0.0/1")
ZONE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,16}", re.ASCII)
CONFIGS = (("permanent", ["--permanent"]), ("runtime", []))


class _Refused(Exception):
    """A value that is not plain data, or a firewall-cmd that failed: the state's comment."""


def _ipsets(cluster):
    """The two ipsets the formula owns for a cluster: its managers (hash:ip) and the REST port's
    sources (hash:net). Named after a digest of the cluster's name, so that they fit firewalld's
    31 characters whatever the name; their description names the cluster."""
    digest = hashlib.sha256(cluster.encode()).hexdigest()[:8]
    return {f"cloudify_ha_{digest}_peers": "hash:ip", f"cloudify_ha_{digest}_rest": "hash:net"}


def _entry(kind, text):
    """An ipset entry as ``ipaddress`` writes it (firewalld may print a /32 either way)."""
    if kind == "hash:ip":
        return str(ipaddress.IPv4Address(text))
    return str(ipaddress.IPv4Network(text, strict=False))


def _rich_rule(ipset, port, protocol):
    return (f'rule family="ipv4" source ipset="{ipset}" port port="{port}" '
            f'protocol="{protocol}" accept')


def _wanted(cluster, peers, ports, rest_port, rest_sources):
    """{"ipsets": {name: (type, entries)}, "rules": [...]}, built only from values checked here
    (IPv4 addresses and networks, port numbers, tcp/udp); _Refused names the first that is not."""
    def port_ok(value):
        return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536

    if not isinstance(cluster, str) or not cluster:
        raise _Refused(f"name: {ascii(cluster)} is not a cluster name")
    try:
        hosts = sorted({ipaddress.IPv4Address(p) for p in peers})
        nets = list(ipaddress.collapse_addresses(
            ipaddress.IPv4Network(s, strict=True) for s in rest_sources))
    except (TypeError, ValueError) as exc:
        raise _Refused(f"peers/rest_sources: {exc}: each must be an IPv4 address (peers) or an "
                       "address or network with its host bits zero (rest_sources)") from None
    if not hosts:
        raise _Refused("peers: the cluster's managers' addresses are needed")
    for index, item in enumerate(ports):
        if not (isinstance(item, dict) and set(item) == {"port", "protocol"}
                and port_ok(item["port"]) and item["protocol"] in PROTOCOLS):
            raise _Refused(f"ports:{index}: {ascii(item)} is not {{port: <1-65535>, protocol: "
                           "tcp|udp}")
    if not port_ok(rest_port):
        raise _Refused(f"rest_port: {ascii(rest_port)} is not a port number")
    # hash:net refuses overlapping entries; collapse_addresses merged them, a /0 is split
    rest = list(EVERYWHERE) if not nets or nets[0].prefixlen == 0 else [str(n) for n in nets]
    (peer_set, peer_type), (rest_set, rest_type) = _ipsets(cluster).items()
    return {"ipsets": {peer_set: (peer_type, [str(h) for h in hosts]),
                       rest_set: (rest_type, rest)},
            "rules": [_rich_rule(peer_set, p["port"], p["protocol"]) for p in ports]
                     + [_rich_rule(rest_set, rest_port, "tcp")]}


def _fwcmd(args):
    out = _run(["firewall-cmd", *args])
    if out["retcode"] != 0:
        detail = (out.get("stderr") or out.get("stdout") or "").strip()[-500:]
        raise _Refused(f"firewall-cmd {' '.join(args)} failed (exit {out['retcode']}): {detail}")
    return out["stdout"]


def _seen(config, zone, wanted):
    """What firewalld holds in one configuration: our ipsets' entries (None: no such ipset) and
    the zone's rich rules that use one of our ipsets (the formula's, whatever their port)."""
    names = set(_fwcmd([*config, "--get-ipsets"]).split())
    ipsets = {}
    for name, (kind, _) in wanted["ipsets"].items():
        ipsets[name] = None if name not in names else {
            _entry(kind, e) for e in _fwcmd([*config, f"--ipset={name}", "--get-entries"]).split()}
    prefix = next(iter(wanted["ipsets"])).rsplit("_", 1)[0] + "_"
    rules = {line.strip() for line in _fwcmd([*config, *zone, "--list-rich-rules"]).splitlines()
             if f'ipset="{prefix}' in line}
    return {"ipsets": ipsets, "rules": rules}


def _diff(seen, wanted):
    """What one configuration lacks or holds too much of (empty: nothing to do)."""
    out = {}
    missing = [n for n, entries in seen["ipsets"].items() if entries is None]
    if missing:
        out["ipsets_created"] = missing
    for name, (_, entries) in wanted["ipsets"].items():
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


def _apply(config, zone, cluster, wanted, diff):
    """Make one configuration match: new ipsets (permanent only), stale rules and entries out
    first (a hash:net refuses an entry that overlaps one still there), then the missing ones."""
    for name in diff.get("ipsets_created", []):
        _fwcmd([*config, f"--new-ipset={name}", f"--type={wanted['ipsets'][name][0]}"])
        _fwcmd([*config, f"--ipset={name}",
                f"--set-description=cloudify_ha (Salt): cluster {cluster}"])
    for rule in diff.get("rules_removed", []):
        _fwcmd([*config, *zone, f"--remove-rich-rule={rule}"])
    for name, entries in diff.get("entries_removed", {}).items():
        _fwcmd([*config, f"--ipset={name}", *[f"--remove-entry={e}" for e in entries]])
    for name, entries in diff.get("entries_added", {}).items():
        _fwcmd([*config, f"--ipset={name}", *[f"--add-entry={e}" for e in entries]])
    for rule in diff.get("rules_added", []):
        _fwcmd([*config, *zone, f"--add-rich-rule={rule}"])


def firewalld_present(name, peers, ports, rest_port, rest_sources, zone=""):
    """
    firewalld lets the cluster ``name``'s ``ports`` in from its managers (``peers``) only and
    ``rest_port`` from ``rest_sources`` (empty: from everywhere), in the permanent configuration
    (what a reload and a reboot restore) and the running one, in ``zone`` ('' : the default zone).

    The formula owns two ipsets per cluster (``cloudify_ha_<digest>_peers`` and ``..._rest``, see
    ``firewall-cmd --info-ipset``) and the zone's rich rules that use them, and only those:
    entries and rules it no longer wants (a manager removed from pillar, a REST port that
    changed) are removed, the operator's own rules are never touched. Every command is an argv.
    firewalld creates ipsets in the permanent configuration only: when one is new the running
    configuration is brought up to date with ``firewall-cmd --reload``, which drops runtime-only
    changes as any reload does; the comment says so.

    .. code-block:: yaml

        cluster-ports:
          cloudify_ha_firewall.firewalld_present:
            - name: prod
            - peers: [10.0.0.11, 10.0.0.12, 10.0.0.13]
            - ports: [{port: 8300, protocol: tcp}]
            - rest_port: 80
            - rest_sources: [10.0.0.0/24]
    """
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    try:
        if not isinstance(zone, str) or zone and not ZONE_RE.fullmatch(zone):
            raise _Refused(f"zone: {ascii(zone)} is not a firewalld zone name")
        if not all(isinstance(v, list) for v in (peers, ports, rest_sources)):
            raise _Refused("peers, ports and rest_sources must be lists")
        wanted = _wanted(name, peers, ports, rest_port, rest_sources)
    except _Refused as exc:
        ret["comment"] = f"{exc}; nothing was changed"
        return ret
    zone_args = [f"--zone={zone}"] if zone else []
    acting = False
    try:
        diffs = {key: _diff(_seen(config, zone_args, wanted), wanted) for key, config in CONFIGS}
        changes = {key: diff for key, diff in diffs.items() if diff}
        if not changes:
            ret.update(result=True, comment=f"firewalld has the rules of cluster {name}: "
                                            f"{len(wanted['rules'])} rich rules on 2 ipsets")
            return ret
        reload = bool(diffs["permanent"].get("ipsets_created")
                      or diffs["runtime"].get("ipsets_created"))
        how = (" (then firewall-cmd --reload: an ipset is new, and firewalld creates ipsets in "
               "the permanent configuration only; runtime-only changes are dropped, as by any "
               "reload)") if reload else ""
        if __opts__["test"]:
            ret.update(result=None, changes=changes,
                       comment=f"firewalld's rules of cluster {name} would be changed{how}")
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
               comment=f"firewalld's rules of cluster {name} were changed{how}")
    return ret
