"""
The cluster's firewall rules, loaded from the rules file the ``cloudify_ha.firewall`` SLS writes,
checked by the marker comment (cluster name and digest of the rules) the loaded rules carry.

.. code-block:: yaml

    cluster-rules:
      cloudify_ha_firewall.rules_loaded:
        - name: /etc/cloudify_ha/firewall.nft
        - backend: nftables      # or iptables
        - marker: cloudify_ha lab 0123456789abcdef

A state rather than ``cmd.run`` with ``unless``: on Salt 3008 the first ``unless``/``onlyif``
of a job costs about a second of module loading, on every run, even when nothing changes. This
state runs the two read-only commands itself, and says "changed" only when the re-check sees
the marker after loading.
"""

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


def _rich_rule(rule):
    """firewalld's rich rule text for {"source", "port", "protocol"}, built only from values that
    are checked here first (an IPv4 address or network, a port number, tcp/udp): None if one is
    not."""
    import ipaddress  # pylint: disable=import-outside-toplevel

    if not isinstance(rule, dict) or set(rule) != {"source", "port", "protocol"}:
        return None
    source, port, protocol = rule["source"], rule["port"], rule["protocol"]
    try:
        network = ipaddress.IPv4Network(source, strict=True) if isinstance(source, str) else None
    except ValueError:
        network = None
    if network is None or str(source) not in (str(network), str(network.network_address)):
        return None
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536 or \
            protocol not in PROTOCOLS:
        return None
    return (f'rule family="ipv4" source address="{source}" port port="{port}" '
            f'protocol="{protocol}" accept')


def _firewalld_has(rule_text):
    return all(_run(["firewall-cmd", *permanent, f"--query-rich-rule={rule_text}"])["retcode"] == 0
               for permanent in ([], ["--permanent"]))


def rich_rules_present(name, rules):
    """
    firewalld accepts each of ``rules`` (``source``: an IPv4 address or network, ``port``,
    ``protocol``: tcp or udp) in the running and the permanent configuration. Every command is an
    argv (no shell); a rule is checked, added where missing, and checked again.

    .. code-block:: yaml

        cluster-ports:
          cloudify_ha_firewall.rich_rules_present:
            - name: cloudify_ha lab
            - rules:
              - {source: 10.0.0.12, port: 8300, protocol: tcp}
    """
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    texts = []
    for index, rule in enumerate(rules if isinstance(rules, list) else [None]):
        text = _rich_rule(rule)
        if text is None:
            ret["comment"] = (f"rules:{index}: {ascii(rule)} is not {{source: <IPv4 address or "
                              "network>, port: <1-65535>, protocol: tcp|udp}; nothing was changed")
            return ret
        texts.append(text)
    missing = [t for t in texts if not _firewalld_has(t)]
    if not missing:
        ret.update(result=True, comment=f"firewalld has the {len(texts)} rules of {name}")
        return ret
    change = {"added": {"old": None, "new": missing}}
    if __opts__["test"]:
        ret.update(result=None, changes=change,
                   comment=f"{len(missing)} firewalld rules of {name} would be added")
        return ret
    for text in missing:
        for permanent in ([], ["--permanent"]):
            if _run(["firewall-cmd", *permanent, f"--query-rich-rule={text}"])["retcode"] == 0:
                continue
            out = _run(["firewall-cmd", *permanent, f"--add-rich-rule={text}"])
            if out["retcode"] != 0:
                detail = (out.get("stderr") or out.get("stdout") or "").strip()[-500:]
                ret["comment"] = (f"firewall-cmd {' '.join(permanent)} --add-rich-rule failed "
                                  f"(exit {out['retcode']}) for {text}: {detail}")
                return ret
    still = [t for t in texts if not _firewalld_has(t)]
    if still:
        ret["comment"] = (f"firewalld was told to add {len(missing)} rules of {name} but "
                          f"{len(still)} are still missing afterwards: {still[0]}")
        return ret
    ret.update(result=True, changes=change,
               comment=f"{len(missing)} firewalld rules of {name} were added")
    return ret
