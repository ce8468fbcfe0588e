"""The steps of cloudify_ha's orchestrations, built as data.

Pure Python (no Salt imports): plan + what the minions answered in, ordered high data out.
``cloudify_ha/orch/init.sls``, ``orch/rejoin.sls`` and ``orch/retire.sls`` (the ``py`` renderer) ask
the minions once and hand their answers here through the ``cloudify_ha_master.orch_steps`` execution
function; unit tests call these functions directly with tables of answers. No value from
pillar, an event or a runner argument becomes text: every step is a dict, every refusal
carries its message as data (values quoted with ``ascii()`` where they are not validated).
"""

import re

# Every salt.state step runs with concurrent=True: Salt's own state queue is never asked to
# order the formula's runs. 3006.8's waits only for OLDER jids (a job with an older jid that
# reaches the minion second runs beside the first); 3006.21+/3008.4's with queue=True park the
# waiting job in cachedir/queues/<master>/ where saltutil.find_job does not look (the master
# drops the step as "Minion did not return a state result"), and with queue=<int> two waiting
# jobs each wait for the other forever. Instead every SLS of the formula (but sync) takes the
# host's own lock first (cloudify_ha/lock.sls, cloudify_ha.run_locked): a waiting run is a
# running job the master sees. The sync step takes no lock: it only writes module files.
RUN = {"concurrent": True}
MINION_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}", re.ASCII)
NODE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", re.ASCII)
# a manager in one of these states (orch_facts' node, cloudify_ha.node_state) is a cluster
# member: it installs nothing (down: clustered, its REST service not answering yet). Any other
# (absent, package_installed, half_installed, installed, removed, no answer) may install and
# answer /status as a standalone manager before it joins (cloudify-4.6.md section 0.4)
MEMBER_STATES = ("leader", "replica", "down")
NOT_SYNCED = ("the cloudify_ha modules on the master are missing or older than the formula: run "
              "'salt-run saltutil.sync_all' (once, and after each upgrade of the formula), then "
              "re-run")
# 4.6's maintenance mode (cloudify-4.6-day2.md section 5.1): while it is on, 4.6 answers every
# call but status, version, license, maintenance and snapshots with 503, joins included
MAINTENANCE_ON = ("activated", "activating")
LEAVE_MAINTENANCE = "cfy maintenance-mode deactivate"


def _step(fun, **args):
    """One state: {"<module>.<function>": [{arg: value}, ...]}, requisites as given."""
    return {fun: [{key: value} for key, value in args.items()]}


def refused(sid, comment, **requisites):
    """A formula refusal step (cloudify_ha.refused): fails with `comment`, changes nothing."""
    return {sid: _step("cloudify_ha.refused", comment=comment, **requisites)}


def salt_refused(sid, text):
    """Salt's own failing state: for a master where the formula's states may be missing."""
    return {sid: _step("test.fail_without_changes", name=text)}


# ---- cloudify_ha.orch -----------------------------------------------------------------------
def everyone(plan):
    """Every minion the orchestration asks, in the pillar's order, each once."""
    out = []
    for settings in plan["clusters"].values():
        lb_ids = (settings.get("loadbalancer") or {}).get("minion_ids") or []
        for mid in [m["minion_id"] for m in settings["managers"]] + settings["cli_hosts"] + lb_ids:
            if mid not in out:
                out.append(mid)
    return out


def _answered(answer):
    return isinstance(answer, dict) and "ret" in answer and not answer.get("failed")


def read_answers(plan, answers, ids=None):
    """(alive, stale, hints) from the minions' answers to orch_facts (or test.ping).

    A minion's answer is its own word: it decides only whether that minion is up, whether its
    modules are current and whether IT says it is the active node (``ids``: the minions to
    read, by default ``everyone``). The hint is the PILLAR's
    private_ip of the one manager that says so (never an address a minion reports), and only
    where exactly one manager of the cluster says so (with two, a split brain, the steps poll
    every manager and refuse to act)."""
    managers = {m["minion_id"]: (cname, m["private_ip"])
                for cname, settings in plan["clusters"].items() for m in settings["managers"]}
    alive, stale, leaders = [], [], {}
    for mid in everyone(plan) if ids is None else ids:
        answer = answers.get(mid)
        if not _answered(answer):
            continue
        alive.append(mid)
        facts = answer["ret"] if isinstance(answer["ret"], dict) else {}
        if facts.get("modules_current") is not True:
            stale.append(mid)
        elif facts.get("node") == "leader" and mid in managers:
            cname, ip = managers[mid]
            leaders.setdefault(cname, []).append(ip)
    hints = {cname: ips[0] for cname, ips in leaders.items() if len(ips) == 1}
    return alive, stale, hints


def members(plan, answers):
    """The minion ids of the managers that say they are cluster members (MEMBER_STATES): the
    others are taken out of their cluster's load balancers before their install."""
    out = set()
    for settings in plan["clusters"].values():
        for manager in settings["managers"]:
            answer = answers.get(manager["minion_id"])
            facts = answer["ret"] if _answered(answer) and isinstance(answer["ret"], dict) else {}
            if facts.get("node") in MEMBER_STATES:
                out.add(manager["minion_id"])
    return out


def maintenance_of(plan, answers):
    """{cluster: (manager, status)}: the clusters one of whose managers says it is in 4.6's
    maintenance mode, in the answers to orch_facts (its ``maintenance``) or to
    cloudify_ha.maintenance_mode. A minion's answer is its own word: only a status that is one
    of 4.6's counts, and the manager named is the pillar's entry of that minion."""
    managers = {m["minion_id"]: (cname, m)
                for cname, settings in plan["clusters"].items() for m in settings["managers"]}
    found = {}
    for mid in everyone(plan):
        answer = answers.get(mid)
        if mid not in managers or not _answered(answer) or not isinstance(answer["ret"], dict):
            continue
        state = answer["ret"].get("maintenance", answer["ret"])
        status = state.get("status") if isinstance(state, dict) else None
        if status in MAINTENANCE_ON:
            cname, manager = managers[mid]
            found.setdefault(cname, (manager, status))
    return found


def maintenance_text(cname, manager, status, what):
    """The refusal of a run in a cluster in maintenance mode: the cluster, the node, the state
    and the command that ends it."""
    return (f"cluster {cname}: {manager['name']} ({manager['private_ip']}) is in maintenance "
            f"mode ({status}); {what}: nothing was changed (while it is on, 4.6 refuses cluster "
            "calls and joins with 503 maintenance_mode_active). Leave it with "
            f"'{LEAVE_MAINTENANCE}' on that node, then re-run")


def pillar_errors(plan, answers, ids=None):
    """[(error, [minion ids])]: what the minions found wrong with their own pillar (each checks
    the secrets its roles use, which the master does not hold), each error once. A minion's
    text is its own word: it is only ever data in a refusal's comment."""
    found = {}
    for mid in everyone(plan) if ids is None else ids:
        answer = answers.get(mid)
        facts = answer.get("ret") if _answered(answer) else None
        errors = facts.get("pillar_errors") if isinstance(facts, dict) else None
        if isinstance(errors, list):
            for error in errors:
                plain = isinstance(error, str) and error.isascii() and error.isprintable()
                found.setdefault(error if plain else ascii(error), []).append(mid)
    return list(found.items())


def orch_steps(plan, answers, tplroot="cloudify_ha"):
    """The high data of ``cloudify_ha.orch``: validate, sync, per cluster the CLI package, the
    followers' preparation, the leader, each follower one at a time, the profiles and the load
    balancer, each step requiring the one before it in its cluster."""
    opened = _opening(plan, answers, "cloudify_ha-orch", "build", tplroot)
    if "refused" in opened:
        return opened["refused"]
    high, alive, hints, synced = opened["high"], opened["alive"], opened["hints"], \
        opened["synced"]
    parallel = len(plan["clusters"]) > 1
    maintenance = maintenance_of(plan, answers)
    joined = members(plan, answers)
    for cname, settings in plan["clusters"].items():
        if cname in maintenance:
            high.update(refused(f"cloudify_ha-orch-{cname}-maintenance", maintenance_text(
                cname, *maintenance[cname], "the cluster was not built or converged")))
            continue
        high.update(_cluster_steps(cname, settings, alive, hints, parallel, synced, tplroot,
                                   joined))
    return high


def _opening(plan, answers, prefix, what, tplroot, ids=None):
    """The first steps of an orchestration: ``<prefix>-validate`` (the plan's errors, or the
    errors the minions report of their own pillar, refuse the whole run) and ``<prefix>-sync``
    (the minions whose modules are stale). {"refused": high} or {"high", "alive", "hints",
    "synced": the sync step's state module}."""
    if plan["errors"]:
        text = "\n".join(["the cloudify_ha pillar is invalid; nothing was changed on any host. "
                          "Fix:"] + [f"- {e}" for e in plan["errors"]])
        return {"refused": refused(f"{prefix}-validate", text)}
    text = "\n".join([f"the cloudify_ha pillar is valid: {len(plan['clusters'])} cluster(s) to "
                      f"{what}"] + [f"warning: {w}" for w in plan["warnings"]]) + "\n"
    high = {f"{prefix}-validate": _step("test.succeed_without_changes", name=text)}
    # a new host (pinged, not asked orch_facts) answered True: up, and its modules are stale
    alive, stale, hints = read_answers(plan, answers, ids)
    reported = pillar_errors(plan, answers, ids)
    if reported:
        text = "\n".join(["the cloudify_ha pillar of some minions is invalid; nothing was "
                          "changed on any host. Fix:"]
                         + [f"- {error} (pillar of {', '.join(mids)})"
                            for error, mids in reported])
        return {"refused": refused(f"{prefix}-validate", text)}
    if stale:
        high[f"{prefix}-sync"] = _step(
            "salt.state", **RUN, tgt=stale, tgt_type="list", sls=f"{tplroot}.sync",
            test=False, require=[{"test": f"{prefix}-validate"}])
        synced = "salt"
    else:
        high[f"{prefix}-sync"] = _step(
            "test.succeed_without_changes",
            name="the formula's modules are current on every minion that answers",
            require=[{"test": f"{prefix}-validate"}])
        synced = "test"
    return {"high": high, "alive": alive, "hints": hints, "synced": synced}


def backends_step(sid, cname, settings, node, alive, out, require, tplroot, parallel=False):
    """One manager taken out of (``out``) or put back into its cluster's load balancers, on the
    load balancers' minions that answer (cloudify_ha.backends): {sid: step}, or {} when there is
    nothing to put back into. Taking out is refused while a load balancer's minion does not
    answer: that HAProxy would send requests to the manager's standalone REST service."""
    ids = (settings.get("loadbalancer") or {}).get("minion_ids") or []
    up = [mid for mid in ids if mid in alive]
    down = [mid for mid in ids if mid not in alive]
    if out and down:
        return refused(sid, f"cluster {cname}: {node} is not a cluster member yet: during its "
                            "install its REST service answers /status as a standalone manager, "
                            "which the load balancers would send requests to; it cannot be taken "
                            f"out of load balancer(s) {', '.join(down)}, whose minion does not "
                            "answer: bring them up (or remove them from loadbalancer:minion_ids) "
                            "and re-run; nothing was installed", require=require)
    if not up:
        return {}
    change = {"cluster": cname, "out" if out else "back": [node]}
    return {sid: _step("salt.state", **RUN, tgt=up, tgt_type="list", sls=f"{tplroot}.backends",
                       pillar={"cloudify_ha_orch": {"backends": change}}, parallel=parallel,
                       require=require)}


def _cluster_steps(cname, c, alive, hints, parallel, synced, tplroot, joined=()):
    high = {}
    prefix = f"cloudify_ha-orch-{cname}"
    up = [m for m in c["managers"] if m["minion_id"] in alive]
    prev = (synced, "cloudify_ha-orch-sync")
    if not up:
        ids = ", ".join(m["minion_id"] for m in c["managers"])
        return refused(f"{prefix}-no-manager-answers",
                       f"cluster {cname}: none of its managers' minions answers ({ids}); "
                       "nothing can be done")
    hint = {"pillar": {"cloudify_ha_orch": {"active": hints}}} if hints.get(cname) else {}
    cli_up = [h for h in c["cli_hosts"] if h in alive]
    if cli_up:
        # the CLI hosts' package installs while the managers install theirs
        high[f"{prefix}-cli"] = _step("salt.state", **RUN, tgt=cli_up, tgt_type="list",
                                      sls=f"{tplroot}.cli", parallel=True,
                                      require=[{prev[0]: prev[1]}])
    # the followers' firewall and packages while the leader installs (its step prepares it)
    followers_up = [m["minion_id"] for m in c["followers"] if m["minion_id"] in alive]
    prepare = f"{prefix}-prepare"
    if followers_up:
        high[prepare] = _step("salt.state", **RUN, tgt=followers_up, tgt_type="list",
                              sls=[f"{tplroot}.firewall", f"{tplroot}.installer"], parallel=True,
                              require=[{prev[0]: prev[1]}])
    for m in [c["leader_manager"]] + c["followers"]:
        is_leader = m["name"] == c["leader"]
        sid = f"{prefix}-{'leader' if is_leader else 'join'}-{m['name']}"
        require = [{prev[0]: prev[1]}]
        if not is_leader and followers_up:
            require.append({"salt": prepare})
        # a manager that is no member may install: out of the load balancers until it is one
        drained = bool(c.get("loadbalancer")) and m["minion_id"] in alive \
            and m["minion_id"] not in joined
        if drained:
            out = backends_step(f"{prefix}-lb-out-{m['name']}", cname, c, m["name"], alive, True,
                                require, tplroot, parallel)
            high.update(out)
            require = [{next(iter(step)).split(".")[0]: out_sid}
                       for out_sid, step in out.items()] or require
        if m["minion_id"] in alive:
            sls = ([f"{tplroot}.firewall", f"{tplroot}.installer", f"{tplroot}.cluster.leader"]
                   if is_leader else f"{tplroot}.cluster.follower")
            high[sid] = _step("salt.state", **RUN, tgt=m["minion_id"], sls=sls, **hint,
                              parallel=parallel or is_leader, require=require)
        else:
            # checked from a live manager instead: read-only
            high[sid] = _step("salt.state", **RUN, tgt=up[0]["minion_id"],
                              sls=f"{tplroot}.cluster.down",
                              pillar={"cloudify_ha_orch": {"node": m["name"], "cluster": cname}},
                              parallel=parallel or is_leader, require=require)
        prev = ("salt", sid)
        if drained:
            back = backends_step(f"{prefix}-lb-back-{m['name']}", cname, c, m["name"], alive,
                                 False, [{"salt": sid}], tplroot, parallel)
            high.update(back)
            prev = ("salt", next(iter(back))) if back else prev
    profile_targets = [m["minion_id"] for m in up] + cli_up
    require = [{"salt": prev[1]}] + ([{"salt": f"{prefix}-cli"}] if cli_up else [])
    high[f"{prefix}-profiles"] = _step("salt.state", **RUN, tgt=profile_targets,
                                       tgt_type="list", sls=f"{tplroot}.profile", **hint,
                                       parallel=parallel, require=require)
    prev = ("salt", f"{prefix}-profiles")
    cli_down = [h for h in c["cli_hosts"] if h not in alive]
    if cli_down:
        high.update(refused(f"{prefix}-profiles-not-refreshed",
                            f"cluster {cname}: the minions of CLI hosts {', '.join(cli_down)} do "
                            "not answer: their profiles were not refreshed; re-run when they are up",
                            require=[{"salt": prev[1]}]))
    lb = c.get("loadbalancer")
    if lb:
        # the check user the load balancers' health checks log in as, through the active node
        leaders = [m["minion_id"] for m in up if m["private_ip"] == hints.get(cname)]
        high[f"{prefix}-check-user"] = _step(
            "salt.state", **RUN, tgt=(leaders or [up[0]["minion_id"]])[0],
            sls=f"{tplroot}.check_user", **hint, parallel=parallel, require=[{"salt": prev[1]}])
        prev = ("salt", f"{prefix}-check-user")
        lb_down = [h for h in lb["minion_ids"] if h not in alive]
        if lb_down:
            high.update(refused(f"{prefix}-loadbalancer",
                                f"cluster {cname}: load balancer minion(s) {', '.join(lb_down)} "
                                "do not answer", require=[{"salt": prev[1]}]))
        else:
            # every manager is a member once every step above succeeded: servers the formula
            # took out (an earlier run that died mid-join) are put back
            back = {"cluster": cname, "back": [m["name"] for m in c["managers"]]}
            high[f"{prefix}-loadbalancer"] = _step(
                "salt.state", **RUN, tgt=list(lb["minion_ids"]), tgt_type="list",
                sls=[f"{tplroot}.firewall", f"{tplroot}.loadbalancer"],
                pillar={"cloudify_ha_orch": {"backends": back}}, parallel=parallel,
                require=[{"salt": prev[1]}])
    return high


# ---- cloudify_ha.orch.rejoin ----------------------------------------------------------------
def rejoin_target(plan, node):
    """(cluster settings, manager) of the manager whose minion id is `node`, or (None, None):
    only a string that is a plain minion id AND a manager's minion_id in pillar is one."""
    if not isinstance(node, str) or not MINION_ID_RE.fullmatch(node) or plan["errors"]:
        return None, None
    for settings in plan["clusters"].values():
        for manager in settings["managers"]:
            if manager["minion_id"] == node:
                return settings, manager
    return None, None


def rejoin_steps(plan, node, pings, tplroot="cloudify_ha", node_state=None):
    """The high data of ``cloudify_ha.orch.rejoin`` for `node` (a minion id), `pings` being the
    answers of the cluster's managers, CLI hosts and load balancers to
    cloudify_ha.maintenance_mode (test.ping for a minion without the formula's modules): see
    rejoin_target; `node_state` the node's answer to cloudify_ha.node_state: a node that is no
    member (MEMBER_STATES) is taken out of the load balancers before its join and put back
    after it. Nothing but a refusal in a cluster in maintenance mode (the runner's rejoin logs
    it and skips)."""
    if plan["errors"]:
        return salt_refused("cloudify_ha-rejoin-validate",
                            f"rejoin of {ascii(node)}: the cloudify_ha pillar is invalid; nothing "
                            "was changed. Run salt-run state.orch cloudify_ha.orch test=True to "
                            "see the errors")
    settings, manager = rejoin_target(plan, node)
    if settings is None:
        return {"cloudify_ha-rejoin-ignored": _step(
            "test.succeed_without_changes",
            name=f"ignored: {ascii(node)} is not the minion id of a manager of any cluster in "
                 "pillar cloudify_ha:clusters; nothing ran")}
    prefix = f"cloudify_ha-rejoin-{node}"
    maintenance = maintenance_of(plan, pings).get(settings["name"])
    if maintenance:
        return refused(f"{prefix}-maintenance", maintenance_text(
            settings["name"], *maintenance, f"the rejoin of {node} did not run"))
    alive = [mid for mid in rejoin_ping_targets(settings) if _answered(pings.get(mid))]
    high = {
        f"{prefix}-sync": _step("salt.state", tgt=node, sls=f"{tplroot}.sync", test=False,
                                **RUN),
        f"{prefix}-prepare": _step("salt.state", tgt=node,
                                   sls=[f"{tplroot}.firewall", f"{tplroot}.installer"],
                                   **RUN, require=[{"salt": f"{prefix}-sync"}]),
    }
    require = [{"salt": f"{prefix}-prepare"}]
    name = manager["name"]
    drained = bool(settings.get("loadbalancer")) and node_state not in MEMBER_STATES
    if drained:
        out = backends_step(f"{prefix}-lb-out", settings["name"], settings, name, alive, True,
                            require, tplroot)
        high.update(out)
        require = [{next(iter(step)).split(".")[0]: sid} for sid, step in out.items()] or require
    high[f"{prefix}-joined"] = _step("salt.state", tgt=node, sls=f"{tplroot}.cluster.follower",
                                     pillar={"cloudify_ha_orch": {"rejoin": True}}, **RUN,
                                     require=require)
    last = f"{prefix}-joined"
    if drained:
        back = backends_step(f"{prefix}-lb-back", settings["name"], settings, name, alive, False,
                             [{"salt": last}], tplroot)
        high.update(back)
        last = next(iter(back), last)
    members_up = [mid for mid in alive if mid not in _lb_ids(settings)]
    # not only on a change: a rejoin also repairs profiles an earlier run left stale
    high[f"{prefix}-profiles"] = _step("salt.state", tgt=members_up, tgt_type="list",
                                       sls=f"{tplroot}.profile", **RUN,
                                       require=[{"salt": last}])
    return high


def _lb_ids(settings):
    return list((settings.get("loadbalancer") or {}).get("minion_ids") or [])


def rejoin_ping_targets(settings):
    """The managers, CLI hosts and load balancers of a cluster, each once."""
    return list(dict.fromkeys([m["minion_id"] for m in settings["managers"]]
                              + list(settings["cli_hosts"]) + _lb_ids(settings)))


# ---- cloudify_ha.orch.retire ----------------------------------------------------------------
RETIRE_USAGE = ("give the cluster and the node to retire: "
                "pillar='{\"cluster\": \"<name>\", \"node\": \"<node name>\"}'")


def retire_problem(cluster, node):
    """Why the retire's own arguments cannot be used (None when they can)."""
    if not cluster or not node:
        return RETIRE_USAGE
    if not isinstance(node, str) or not NODE_NAME_RE.fullmatch(node):
        return (f"node: {ascii(node)} is not a Cloudify node name (ASCII letters, digits, '.', "
                f"'_', '-'); {RETIRE_USAGE}")
    return None


def retire_steps(plan, cluster, node, pings, tplroot="cloudify_ha"):
    """The high data of ``cloudify_ha.orch.retire``: the node removed through a live manager of
    the cluster, then the profiles refreshed where that changed something."""
    problem = retire_problem(cluster, node)
    if problem:
        return salt_refused("cloudify_ha-retire-validate", problem)
    if plan["errors"]:
        return refused("cloudify_ha-retire-validate",
                       "the cloudify_ha pillar is invalid: " + "; ".join(plan["errors"]))
    settings = plan["clusters"][cluster]
    alive = [m["minion_id"] for m in settings["managers"] if _answered(pings.get(m["minion_id"]))]
    if not alive:
        return refused(f"cloudify_ha-retire-{node}",
                       f"no manager of cluster {cluster} answers; nothing can be retired")
    maintenance = maintenance_of(plan, pings).get(cluster)
    if maintenance:
        return refused(f"cloudify_ha-retire-{node}-maintenance", maintenance_text(
            cluster, *maintenance, f"{node} was not retired"))
    return {
        "cloudify_ha-retire-sync": _step("salt.state", tgt=alive[0], sls=f"{tplroot}.sync",
                                         test=False, **RUN),
        f"cloudify_ha-retire-{node}": _step(
            "salt.state", tgt=alive[0], sls=f"{tplroot}.cluster.absent", **RUN,
            pillar={"cloudify_ha_orch": {"node": node, "cluster": cluster}},
            require=[{"salt": "cloudify_ha-retire-sync"}]),
        f"cloudify_ha-retire-{node}-profiles": _step(
            "salt.state", tgt=alive + list(settings["cli_hosts"]), tgt_type="list", **RUN,
            sls=f"{tplroot}.profile", onchanges=[{"salt": f"cloudify_ha-retire-{node}"}]),
    }


# ---- cloudify_ha.orch.backup ----------------------------------------------------------------
BACKUP_USAGE = ("back up every cluster with a backup section, or the one named: "
                "pillar='{\"cluster\": \"<name>\"}'; send a snapshot the cluster holds (again): "
                "pillar='{\"cluster\": \"<name>\", \"snapshot\": \"<id>\"}'")
# how much longer than the backup's own timeout a step's job may take before the master stops
# waiting for it (the minion's function bounds itself by the timeout)
BACKUP_JOB_MARGIN = 300
SNAPSHOT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}", re.ASCII)


def backup_clusters(plan, cluster=None, snapshot=None):
    """([names of the clusters to back up], problem or None): those with a ``backup`` section,
    or the one named (refused when it has none)."""
    if snapshot is not None:
        if not cluster:
            return [], f"snapshot: give the cluster it belongs to as well; {BACKUP_USAGE}"
        if not isinstance(snapshot, str) or not SNAPSHOT_ID_RE.fullmatch(snapshot) or \
                not snapshot.startswith(f"{cluster}-"):
            return [], (f"snapshot: {ascii(snapshot)} is not a snapshot id of cluster "
                        f"{ascii(cluster)} (<cluster>-<UTC time>, as cloudify_ha.orch.backup "
                        "names them)")
    if plan["errors"]:
        return [], None
    names = [n for n, s in plan["clusters"].items() if isinstance(s.get("backup"), dict)]
    if cluster and not names:
        return [], (f"cluster {ascii(cluster)} has no backup section: add "
                    f"cloudify_ha:clusters:{cluster}:backup (target, recipient; see "
                    "pillar.example), then re-run")
    if not names:
        return [], ("no cluster in pillar has a backup section: add "
                    "cloudify_ha:clusters:<name>:backup (see pillar.example)")
    return names, None


def backup_everyone(plan, cluster=None, snapshot=None):
    """The managers and the backup target of each cluster to back up, each once."""
    names, _ = backup_clusters(plan, cluster, snapshot)
    out = []
    for cname in names:
        settings = plan["clusters"][cname]
        for mid in [m["minion_id"] for m in settings["managers"]] + \
                [settings["backup"]["target"]["minion_id"]]:
            if mid not in out:
                out.append(mid)
    return out


def _stored_manifest(answer, snapshot_id):
    """The target's answer to cloudify_ha_backup.stored, when it is the manifest of that
    snapshot with its sha256 (the minion's word: it only decides whether to send again)."""
    manifest = answer.get("ret") if _answered(answer) else None
    if isinstance(manifest, dict) and manifest.get("id") == snapshot_id and \
            isinstance(manifest.get("sha256"), str) and \
            re.fullmatch(r"[0-9a-f]{64}", manifest["sha256"]):
        return manifest
    return None


def backup_steps(plan, answers, cluster=None, snapshot=None, stored=None, stamp=None,
                 tplroot="cloudify_ha"):
    """The high data of ``cloudify_ha.orch.backup``: validate, sync, then per cluster a snapshot
    on its ACTIVE node (or the ``snapshot`` given), the stream (the target's receiver beside the
    active node's sender, in parallel), the target's verify, and retention at the target and
    on the cluster. ``stamp``: the UTC time that names a new snapshot (``<cluster>-<stamp>``);
    ``stored``: the target's answer to ``cloudify_ha_backup.stored`` for ``snapshot``."""
    prefix = "cloudify_ha-backup"
    names, problem = backup_clusters(plan, cluster, snapshot)
    if problem:
        return refused(f"{prefix}-validate", problem)
    ids = backup_everyone(plan, cluster, snapshot)
    opened = _opening({**plan, "clusters": {n: plan["clusters"][n] for n in names}}, answers,
                      prefix, "back up", tplroot, ids=ids)
    if "refused" in opened:
        return opened["refused"]
    high, alive, hints = opened["high"], opened["alive"], opened["hints"]
    previous = {}  # (target address, port) -> the last step of the cluster streaming there
    for cname in names:
        settings = plan["clusters"][cname]
        backup, target = settings["backup"], settings["backup"]["target"]
        snapshot_id = snapshot or f"{cname}-{stamp}"
        steps, last = _backup_cluster_steps(
            cname, settings, snapshot_id, alive, hints.get(cname), bool(snapshot),
            _stored_manifest((stored or {}).get(target["minion_id"]) or {}, snapshot_id)
            if snapshot else None,
            [{opened["synced"]: f"{prefix}-sync"}] + previous.get(
                (target["address"], backup["port"]), []))
        high.update(steps)
        previous[(target["address"], backup["port"])] = last
    return high


def _backup_cluster_steps(cname, settings, snapshot_id, alive, active_ip, given, manifest,
                          require):
    """({sid: step}, [the requisite on its last step]) of one cluster's backup; ``given``: the
    snapshot is the operator's (not taken now); ``manifest``: the target holds it already."""
    prefix = f"cloudify_ha-backup-{cname}"
    backup, target = settings["backup"], settings["backup"]["target"]
    tid = target["minion_id"]
    if tid not in alive:
        return refused(f"{prefix}-target", (
            f"cluster {cname}: the backup target {tid} does not answer: nothing was "
            "snapshotted or sent, and nothing changed on the cluster; bring it up (or fix "
            f"clusters:{cname}:backup:target) and re-run"), require=require), \
            [{"cloudify_ha": f"{prefix}-target"}]
    active = next((m for m in settings["managers"] if m["private_ip"] == active_ip
                   and m["minion_id"] in alive), None)
    if active is None:
        return refused(f"{prefix}-active", (
            f"cluster {cname}: no manager whose minion answers says it is the active node (or "
            "two do): nothing was snapshotted; check `salt-run cloudify_ha.status` and "
            "re-run"), require=require), [{"cloudify_ha": f"{prefix}-active"}]
    on_active = {"tgt": active["minion_id"]}
    on_target = {"tgt": tid}
    job = backup["timeout"] + BACKUP_JOB_MARGIN
    where = {"directory": target["directory"], "cluster": cname, "snapshot_id": snapshot_id}
    high = {}
    if manifest is not None:
        # a re-run: the target has this snapshot with its manifest already
        high[f"{prefix}-stored"] = _step(
            "test.succeed_without_changes",
            name=f"cluster {cname}: snapshot {snapshot_id} is at the backup target {tid} "
                 f"already (manifest with sha256 {manifest['sha256']}): not sent again",
            require=require)
        verified = {"test": f"{prefix}-stored"}
    else:
        if given:  # the operator's snapshot, which the cluster holds: no new one
            high[f"{prefix}-snapshot"] = _step(
                "test.succeed_without_changes", require=require,
                name=f"cluster {cname}: snapshot {snapshot_id} is sent as the cluster holds it "
                     "(no new snapshot)")
            made = {"test": f"{prefix}-snapshot"}
        else:
            high[f"{prefix}-snapshot"] = _step(
                "salt.function", name="cloudify_ha.snapshot", **on_active, timeout=job,
                kwarg={"quiesce": backup["quiesce"], "timeout": backup["timeout"],
                       "cluster": cname, "snapshot_id": snapshot_id},
                require=require)
            made = {"salt": f"{prefix}-snapshot"}
        high[f"{prefix}-receive"] = _step(
            "salt.function", name="cloudify_ha_backup.receive", **on_target, timeout=job,
            kwarg=dict(where, address=target["address"], port=backup["port"],
                       sources=[m["private_ip"] for m in settings["managers"]],
                       timeout=backup["timeout"], encrypted=backup["encrypt"]),
            parallel=True, require=[made])
        high[f"{prefix}-send"] = _step(
            "salt.function", name="cloudify_ha.backup_send", **on_active, timeout=job,
            kwarg={"snapshot_id": snapshot_id, "cluster": cname}, parallel=True, require=[made])
        high[f"{prefix}-verify"] = _step(
            "salt.function", name="cloudify_ha_backup.verify", **on_target, timeout=job,
            kwarg=dict(where, encrypted=backup["encrypt"]),
            require=[{"salt": f"{prefix}-receive"}, {"salt": f"{prefix}-send"}])
        verified = {"salt": f"{prefix}-verify"}
    high[f"{prefix}-keep-target"] = _step(
        "salt.function", name="cloudify_ha_backup.prune", **on_target, timeout=BACKUP_JOB_MARGIN,
        kwarg={"directory": target["directory"], "cluster": cname, "keep": backup["keep"]},
        require=[verified])
    high[f"{prefix}-keep-cluster"] = _step(
        "salt.function", name="cloudify_ha.prune_snapshots", **on_active,
        timeout=BACKUP_JOB_MARGIN, kwarg={"keep": backup["keep_on_cluster"], "cluster": cname},
        require=[verified])
    return high, [{"salt": f"{prefix}-keep-target"}, {"salt": f"{prefix}-keep-cluster"}]
