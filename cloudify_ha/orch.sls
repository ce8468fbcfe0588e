# salt-run state.orch cloudify_ha.orch [pillar='{"cluster": "<name>"}']
#
# Builds every cluster in pillar (or the one named), clusters in parallel:
#   validate -> sync the formula's modules to minions whose copies are not current -> the
#   bootstrap leader (firewall, installer package, install on the external database, start the
#   cluster), while the other managers get their firewall and installer package and the CLI hosts
#   their CLI package -> each other manager joins, one at a time -> cfy profiles on managers and
#   CLI hosts -> load balancer.
# Every step requires the one before it in its cluster: a failure stops that cluster there.
# Steps ask the cluster's ACTIVE node, not the pillar's leader, so a re-run after a failover
# works. Managers whose minion does not answer are checked from a live manager instead.
# Secrets never travel in this file's data: each minion reads its own pillar.
{%- set tplroot = tpldir.split("/")[0] %}
{%- set only = salt["pillar.get"]("cluster") or none %}
{%- set ping_timeout = salt["pillar.get"]("cloudify_ha:orchestration:ping_timeout", 5) %}

{%- if "cloudify_ha.plan" not in salt or "cloudify_ha.minions_without_modules" not in salt %}

{#- Salt's own state: without the formula's modules the master has no formula state either #}
cloudify_ha-orch-validate:
  test.fail_without_changes:
    - name: >-
        the cloudify_ha modules on the master are missing or older than the formula: run
        'salt-run saltutil.sync_all' (once, and after each upgrade of the formula), then re-run
{%- else %}
{%-   set plan = salt["cloudify_ha.plan"](cluster=only) %}
{%-   if plan.errors %}

{%-     set text = ["the cloudify_ha pillar is invalid; nothing was changed on any host. Fix:"]
                   + plan.errors | map("regex_replace", "^", "- ") | list %}
cloudify_ha-orch-validate:
  cloudify_ha.refused:
    - comment: {{ text | join("\n") | json }}
{%-   else %}

{%-     set text = ["the cloudify_ha pillar is valid: " ~ plan.clusters | length ~ " cluster(s) to build"]
                   + plan.warnings | map("regex_replace", "^", "warning: ") | list %}
cloudify_ha-orch-validate:
  test.succeed_without_changes:
    - name: {{ (text | join("\n") ~ "\n") | json }}

{#- Which minions answer, whether their copies of the formula's modules are current, and each
    manager's node state: one call for all, so that a dead host is checked, not targeted, a no-op
    run syncs nothing, and the steps are told which node answered as the active one (they ask
    it first instead of polling every manager; cloudify_ha.joined explains). A minion that the
    master's grains cache shows without the formula's modules (a new host) is only pinged: it
    would answer orch_facts only after loading every module it has. #}
{%-     set ns = namespace(everyone=[]) %}
{%-     for cname, c in plan.clusters.items() %}
{%-       set lb_ids = (c.loadbalancer or {}).get("minion_ids", []) %}
{%-       set ns.everyone = ns.everyone + c.managers | map(attribute="minion_id") | list
                              + c.cli_hosts + lb_ids %}
{%-     endfor %}
{%-     set expected = salt["cloudify_ha.formula_modules"]() %}
{%-     set everyone = ns.everyone | unique | list %}
{%-     set new_hosts = salt["cloudify_ha.minions_without_modules"](everyone) %}
{%-     set asked = everyone | reject("in", new_hosts) | list %}
{%-     set answers = {} %}
{%-     if asked %}
{%-       do answers.update(salt["saltutil.cmd"](tgt=asked, tgt_type="list",
                                                fun="cloudify_ha.orch_facts",
                                                kwarg={"expected": expected}, timeout=ping_timeout)) %}
{%-     endif %}
{%-     if new_hosts %}
{%-       do answers.update(salt["saltutil.cmd"](tgt=new_hosts, tgt_type="list", fun="test.ping",
                                                timeout=ping_timeout)) %}
{%-     endif %}
{%-     set alive, stale, leaders = [], [], {} %}
{%-     for mid in everyone %}
{%-       set answer = answers.get(mid) or {} %}
{%-       if "ret" in answer and not answer.get("failed") %}
{%-         do alive.append(mid) %}
{%-         set facts = answer.ret if answer.ret is mapping else {} %}
{%-         if facts.get("modules_current") is not sameas true %}
{%-           do stale.append(mid) %}
{%-         elif facts.get("node") == "leader" %}
{%-           do leaders.setdefault(facts.cluster, []).append(facts.private_ip) %}
{%-         endif %}
{%-       endif %}
{%-     endfor %}
{#- a hint only where exactly one manager says it is the active node: with two (a split brain)
    the steps poll every manager and refuse to act #}
{%-     set hints = {} %}
{%-     for cname, ips in leaders.items() %}
{%-       if ips | length == 1 %}
{%-         do hints.update({cname: ips[0]}) %}
{%-       endif %}
{%-     endfor %}
{%-     set orch_pillar = {"cloudify_ha_orch": dict(active=hints)} %}
{%-     set parallel = plan.clusters | length > 1 %}

{%-     if stale %}

cloudify_ha-orch-sync:
  salt.state:
    - queue: true
    - tgt: {{ stale | json }}
    - tgt_type: list
    - sls: {{ tplroot }}.sync
    - test: false
    - require:
      - test: cloudify_ha-orch-validate
{%-       set synced = "salt" %}
{%-     else %}

cloudify_ha-orch-sync:
  test.succeed_without_changes:
    - name: the formula's modules are current on every minion that answers
    - require:
      - test: cloudify_ha-orch-validate
{%-       set synced = "test" %}
{%-     endif %}

{%-     for cname, c in plan.clusters.items() %}
{%-       set up = c.managers | selectattr("minion_id", "in", alive) | list %}
{%-       set down = c.managers | rejectattr("minion_id", "in", alive) | list %}
{%-       set prev = namespace(id="cloudify_ha-orch-sync", kind=synced) %}

{%-       if not up %}

cloudify_ha-orch-{{ cname }}-no-manager-answers:
  cloudify_ha.refused:
    - comment: {{ ("cluster " ~ cname ~ ": none of its managers' minions answers ("
                   ~ c.managers | map(attribute="minion_id") | join(", ")
                   ~ "); nothing can be done") | json }}
{%-       else %}
{%-         set helper = up[0].minion_id %}
{%-         set cli_up = c.cli_hosts | select("in", alive) | list %}
{%-         if cli_up %}

{#- the CLI hosts' package installs while the managers install theirs #}
cloudify_ha-orch-{{ cname }}-cli:
  salt.state:
    - queue: true
    - tgt: {{ cli_up | json }}
    - tgt_type: list
    - sls: {{ tplroot }}.cli
    - parallel: true
    - require:
      - {{ prev.kind }}: {{ prev.id }}
{%-         endif %}

{#- the followers' firewall and packages while the leader installs (its step prepares it) #}
{%-         set followers_up = c.followers | selectattr("minion_id", "in", alive)
                                | map(attribute="minion_id") | list %}
{%-         set prepare = "cloudify_ha-orch-" ~ cname ~ "-prepare" %}
{%-         if followers_up %}

{{ prepare }}:
  salt.state:
    - queue: true
    - tgt: {{ followers_up | json }}
    - tgt_type: list
    - sls:
      - {{ tplroot }}.firewall
      - {{ tplroot }}.installer
    - parallel: true
    - require:
      - {{ prev.kind }}: {{ prev.id }}
{%-         endif %}

{%-         for m in [c.leader_manager] + c.followers %}
{%-           set is_leader = m.name == c.leader %}
{%-           set step = "cloudify_ha-orch-" ~ cname ~ ("-leader-" if is_leader else "-join-") ~ m.name %}
{%-           if m.minion_id in alive %}

{{ step }}:
  salt.state:
    - queue: true
    - tgt: {{ m.minion_id }}
{%-             if is_leader %}
    - sls:
      - {{ tplroot }}.firewall
      - {{ tplroot }}.installer
      - {{ tplroot }}.cluster.leader
{%-             else %}
    - sls: {{ tplroot }}.cluster.follower
{%-             endif %}
{%-             if hints.get(cname) %}
    - pillar: {{ orch_pillar | json }}
{%-             endif %}
    - parallel: {{ parallel or is_leader }}
    - require:
      - {{ prev.kind }}: {{ prev.id }}
{%-             if not is_leader and followers_up %}
      - salt: {{ prepare }}
{%-             endif %}
{%-           else %}

{{ step }}:
  salt.state:
    - queue: true
    - tgt: {{ helper }}
    - sls: {{ tplroot }}.cluster.down
{%-             set down_pillar = {"cloudify_ha_orch": dict(node=m.name, cluster=cname)} %}
    - pillar: {{ down_pillar | json }}
    - parallel: {{ parallel or is_leader }}
    - require:
      - {{ prev.kind }}: {{ prev.id }}
{%-             if not is_leader and followers_up %}
      - salt: {{ prepare }}
{%-             endif %}
{%-           endif %}
{%-           set prev.id = step %}
{%-           set prev.kind = "salt" %}
{%-         endfor %}

{%-         set profile_targets = up | map(attribute="minion_id") | list
                                  + c.cli_hosts | select("in", alive) | list %}
{%-         set cli_down = c.cli_hosts | reject("in", alive) | list %}

cloudify_ha-orch-{{ cname }}-profiles:
  salt.state:
    - queue: true
    - tgt: {{ profile_targets | json }}
    - tgt_type: list
    - sls: {{ tplroot }}.profile
{%-         if hints.get(cname) %}
    - pillar: {{ orch_pillar | json }}
{%-         endif %}
    - parallel: {{ parallel }}
    - require:
      - salt: {{ prev.id }}
{%-         if cli_up %}
      - salt: cloudify_ha-orch-{{ cname }}-cli
{%-         endif %}
{%-         set prev.id = "cloudify_ha-orch-" ~ cname ~ "-profiles" %}
{%-         if cli_down %}

cloudify_ha-orch-{{ cname }}-profiles-not-refreshed:
  cloudify_ha.refused:
    - comment: {{ ("cluster " ~ cname ~ ": the minions of CLI hosts " ~ cli_down | join(", ")
                   ~ " do not answer: their profiles were not refreshed; re-run when they are up")
                  | json }}
    - require:
      - salt: {{ prev.id }}
{%-         endif %}

{%-         if c.loadbalancer %}
{%-           set lb_up = c.loadbalancer.minion_ids | select("in", alive) | list %}

cloudify_ha-orch-{{ cname }}-loadbalancer:
{%-           if lb_up | length == c.loadbalancer.minion_ids | length %}
  salt.state:
    - queue: true
    - tgt: {{ lb_up | json }}
    - tgt_type: list
    - sls: {{ tplroot }}.loadbalancer
    - parallel: {{ parallel }}
{%-           else %}
  cloudify_ha.refused:
    - comment: {{ ("cluster " ~ cname ~ ": load balancer minion(s) "
                   ~ c.loadbalancer.minion_ids | reject("in", alive) | join(", ") ~ " do not answer")
                  | json }}
{%-           endif %}
    - require:
      - salt: {{ prev.id }}
{%-         endif %}
{%-       endif %}
{%-     endfor %}
{%-   endif %}
{%- endif %}
