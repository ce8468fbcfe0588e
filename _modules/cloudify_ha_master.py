"""
cloudify_ha on the master: what its orchestrations ask before they run (which copies of the
formula's modules are current, which minions lack them) and the steps they run, built as data.

Master-side only: the orchestrations (``cloudify_ha/orch/*.sls``, the ``py`` renderer) call it
through the master's own minion; it reads the master's file server and grains cache and never
talks to Cloudify (``cloudify_ha`` is the module that does). Salt syncs it to minions with the
rest of ``_modules``, where nothing calls it.
"""

import os
import types

from salt.exceptions import SaltInvocationError

__virtualname__ = "cloudify_ha_master"

# what cloudify_ha.sync copies: the beacon too (the managers run it, and it calls the cloudify_ha
# module); the grain tells the master which minions hold these modules (_grains/cloudify_ha.py)
SYNCED_KINDS = ("utils", "modules", "states", "beacons", "grains")
GRAIN = "cloudify_ha_modules"


def __virtual__():
    return __virtualname__


def _builder():
    """_utils/cloudify_ha_orch.py as a module. ``__utils__`` maps each function of a _utils file
    (as "<file>.<function>"), not the file: its namespace is the globals of any function of it."""
    return types.SimpleNamespace(**__utils__["cloudify_ha_orch.orch_steps"].__globals__)


def formula_modules(saltenv="base"):
    """
    What ``cloudify_ha.sync`` copies to a minion: every file of the master's ``_utils``,
    ``_modules``, ``_states``, ``_beacons`` and ``_grains`` in ``saltenv``, as
    ``{"<kind>/<file>": "<hash type>:<hash>"}``.
    Run on the master (the orchestration renders it); pass the result to
    ``cloudify_ha.modules_current`` on the minions.

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudify_ha_master.formula_modules
    """
    out = {}
    for kind in SYNCED_KINDS:
        for path in __salt__["cp.list_master"](saltenv=saltenv, prefix=f"_{kind}/"):
            found = __salt__["cp.hash_file"](f"salt://{path}", saltenv)
            if found:
                out[f"{kind}/{os.path.basename(path)}"] = f"{found['hash_type']}:{found['hsum']}"
    return out


def minions_without_modules(minion_ids):
    """
    The minions among ``minion_ids`` that the master's grains cache shows without this
    formula's modules: their cached grains lack ``cloudify_ha_modules``, the grain the sync
    puts on a minion with the modules. Run on the master (the orchestration renders it), which
    then asks these minions ``test.ping`` instead of ``cloudify_ha.orch_facts``: a minion
    answers a function it does not have only after loading every module it has (seconds). A
    minion the cache holds no grains of (``minion_data_cache: False``) is not listed: it is
    asked ``orch_facts``, as before the grain existed.

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudify_ha_master.minions_without_modules '[cfy-mgr1, cfy-mgr2]'
    """
    # the master's code, imported where it runs: not into every job of every minion
    import salt.utils.master  # pylint: disable=import-outside-toplevel

    ids = list(minion_ids or [])
    if not ids:
        return []
    cached = salt.utils.master.MasterPillarUtil(
        ids, "list", use_cached_grains=True, grains_fallback=False,
        opts=__opts__).get_minion_grains()
    return [mid for mid in ids if (cached.get(mid) or {}) and GRAIN not in cached[mid]]


ARGUMENTS = ("cluster", "node", "snapshot")


def orch_argument(name):
    """
    An argument of the formula's orchestrations (``cluster``, ``node``, ``snapshot``) from the
    pillar they
    run with: ``cloudify_ha_orch:<name>`` (``pillar='{"cloudify_ha_orch": {"cluster":
    "prod"}}'``, what the formula's runner passes), else the short form of the documented
    command lines, a top-level ``<name>`` (``pillar='{"cluster": "prod"}'``), but only when it
    came with the command: a top-level key of that name that the master's own pillar holds
    belongs to another formula (its compile is asked only when the short form is there).
    None when neither gives it.

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudify_ha_master.orch_argument cluster
    """
    if name not in ARGUMENTS:
        raise SaltInvocationError(f"name: {ascii(name)} is not one of {', '.join(ARGUMENTS)}")
    given = __pillar__.get("cloudify_ha_orch")
    if isinstance(given, dict) and name in given:
        return _plain(given[name])
    if name not in __pillar__:
        return None
    value = _plain(__pillar__[name])
    own = _own_pillar()
    if name in own and _plain(own[name]) == value:
        return None
    return value


def _own_pillar():
    """The master's pillar compiled without the command's. Not pillar.items: from 3008 on its
    compile starts from the pillar the caller runs with (the command's included)."""
    # the master's code, imported where it runs: not into every job of every minion
    import salt.pillar  # pylint: disable=import-outside-toplevel

    opts = dict(__opts__, pillar={})
    return salt.pillar.get_pillar(opts, dict(__grains__), opts["id"],
                                  saltenv=opts.get("saltenv"),
                                  pillarenv=opts.get("pillarenv")).compile_pillar() or {}


def _plain(value):
    """Plain data: 3008 hands pillar over as MaskedDict/MaskedList (cloudify_ha_pillar.plain)."""
    return __utils__["cloudify_ha_pillar.plain"](value)


def ask(targets, fun, kwarg=None, timeout=5):
    """
    What an orchestration asks its minions before it builds its steps: ``fun`` (with
    ``kwarg``) of the minions among ``targets`` that hold the formula's modules, ``test.ping``
    of those the master's grains cache shows without them (``minions_without_modules``: a
    minion answers a function it lacks only after loading every module it has, seconds on
    each). ``saltutil.cmd``'s answers, by minion id. Run on the master (the orchestration
    renders it).

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudify_ha_master.ask '[cfy-mgr1, cfy-mgr2]' cloudify_ha.maintenance_mode
    """
    targets = list(targets or [])
    answers = {}
    if not targets:
        return answers
    bare = __salt__["cloudify_ha_master.minions_without_modules"](targets)
    asked = [mid for mid in targets if mid not in bare]
    if asked:
        answers.update(__salt__["saltutil.cmd"](tgt=asked, tgt_type="list", fun=fun,
                                                kwarg=kwarg or {}, timeout=timeout))
    if bare:
        answers.update(__salt__["saltutil.cmd"](tgt=bare, tgt_type="list", fun="test.ping",
                                                timeout=timeout))
    return answers


def orch_steps(kind, plan, answers=None, node=None, cluster=None, tplroot="cloudify_ha",
               node_state=None, snapshot=None, stored=None, stamp=None):
    """
    The steps (high data) of one of the formula's orchestrations, built as data from the plan
    and the minions' answers the orchestration gathered (``_utils/cloudify_ha_orch.py``):
    ``kind`` is ``orch``, ``rejoin`` (``node``: a minion id; ``node_state``: its answer to
    ``cloudify_ha.node_state``), ``retire`` (``cluster`` and ``node``: a node name) or
    ``backup`` (``cluster``, ``snapshot``: the one to send, ``stored``: the target's answer to
    ``cloudify_ha_backup.stored`` for it, ``stamp``: the UTC time naming a new snapshot). Pure:
    asks nothing, changes nothing.

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudify_ha_master.orch_steps orch "$(salt-run salt.cmd cloudify_ha.plan --out=json)"
    """
    builder = _builder()
    answers = answers or {}
    if kind == "orch":
        return builder.orch_steps(plan, answers, tplroot)
    if kind == "rejoin":
        return builder.rejoin_steps(plan, node, answers, tplroot, node_state=node_state)
    if kind == "retire":
        return builder.retire_steps(plan, cluster, node, answers, tplroot)
    if kind == "backup":
        return builder.backup_steps(plan, answers, cluster=cluster, snapshot=snapshot,
                                    stored=stored, stamp=stamp, tplroot=tplroot)
    raise SaltInvocationError(f"kind: {ascii(kind)} is not one of orch, rejoin, retire, backup")


def orch_targets(kind, plan, node=None, cluster=None):
    """
    Whom an orchestration asks before it builds its steps (see ``orch_steps``): for ``orch``
    every minion of the plan, for ``rejoin`` the managers, CLI hosts and load balancers of
    `node`'s cluster (none when `node` is not a manager in pillar), for ``retire`` the
    cluster's managers, for ``backup`` the managers and the backup target of each cluster to
    back up (``cluster``: the one named).

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudify_ha_master.orch_targets rejoin "$(salt-run salt.cmd cloudify_ha.plan --out=json)" node=cfy-mgr2
    """
    builder = _builder()
    if kind == "orch":
        return [] if plan["errors"] else builder.everyone(plan)
    if kind == "rejoin":
        settings, _ = builder.rejoin_target(plan, node)
        return builder.rejoin_ping_targets(settings) if settings else []
    if kind == "retire":
        if builder.retire_problem(cluster, node) or plan["errors"]:
            return []
        return [m["minion_id"] for m in plan["clusters"][cluster]["managers"]]
    if kind == "backup":
        return builder.backup_everyone(plan, cluster)
    raise SaltInvocationError(f"kind: {ascii(kind)} is not one of orch, rejoin, retire, backup")
