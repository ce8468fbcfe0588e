# salt-run state.orch cloudify_ha.orch.rejoin pillar='{"node": "<minion id>"}'
# (the reactor runs it through `salt-run cloudify_ha.rejoin`, one at a time)
#
# Brings one manager back into its cluster: a rebooted member that is back online -> its firewall
# rules again (a reboot loses them), nothing about Cloudify; a
# wiped or reinstalled host -> its stale entry removed through the ACTIVE node, installed with
# the install-time join; then stale profiles refreshed everywhere; before the cluster has been started ->
# nothing. The node must be a manager of a cluster in pillar, else nothing runs.
{%- set tplroot = tpldir.split("/")[0] %}
{%- set node = salt["pillar.get"]("node") %}
{%- set ns = namespace(cluster=none, manager=none) %}
{%- if "cloudify_ha.plan" in salt %}
{%-   set plan = salt["cloudify_ha.plan"]() %}
{%-   for cname, c in plan.clusters.items() %}
{%-     for m in c.managers %}
{%-       if node and m.minion_id == node %}
{%-         set ns.cluster = c %}
{%-         set ns.manager = m %}
{%-       endif %}
{%-     endfor %}
{%-   endfor %}
{%- endif %}

{%- if "cloudify_ha.plan" not in salt or plan.errors %}

{#- Salt's own state: the formula's modules, its states among them, may be missing here #}
cloudify_ha-rejoin-validate:
  test.fail_without_changes:
    - name: {{ ("rejoin of " ~ node ~ ": the cloudify_ha pillar is invalid or the formula's "
                "modules are not synced to the master (salt-run saltutil.sync_all); nothing was "
                "changed. Run salt-run state.orch cloudify_ha.orch test=True to see the errors")
               | json }}
{%- elif not ns.manager %}
{%-   do salt["log.warning"]("cloudify_ha rejoin: ignored: '" ~ node ~ "' is not a manager of a cluster in pillar cloudify_ha:clusters") %}

cloudify_ha-rejoin-ignored:
  test.succeed_without_changes:
    - name: >-
        ignored: '{{ node }}' is not the minion id of a manager of any cluster in pillar
        cloudify_ha:clusters; nothing ran
{%- else %}
{%-   set c = ns.cluster %}
{%-   set rejoin_pillar = {"cloudify_ha_orch": dict(rejoin=true)} %}

cloudify_ha-rejoin-{{ node }}-sync:
  salt.state:
    - tgt: {{ node }}
    - sls: {{ tplroot }}.sync
    - test: false
    - queue: true

cloudify_ha-rejoin-{{ node }}-prepare:
  salt.state:
    - tgt: {{ node }}
    - sls:
      - {{ tplroot }}.firewall
      - {{ tplroot }}.installer
    - queue: true
    - require:
      - salt: cloudify_ha-rejoin-{{ node }}-sync

cloudify_ha-rejoin-{{ node }}-joined:
  salt.state:
    - tgt: {{ node }}
    - sls: {{ tplroot }}.cluster.follower
    - pillar: {{ rejoin_pillar | json }}
    - queue: true
    - require:
      - salt: cloudify_ha-rejoin-{{ node }}-prepare

{%-   set pings = salt["saltutil.cmd"](tgt=c.managers | map(attribute="minion_id") | list + c.cli_hosts, tgt_type="list", fun="test.ping", timeout=5) %}
{%-   set alive = [] %}
{%-   for mid in c.managers | map(attribute="minion_id") | list + c.cli_hosts %}
{%-     if (pings.get(mid) or {}).get("ret") is sameas true %}
{%-       do alive.append(mid) %}
{%-     endif %}
{%-   endfor %}

cloudify_ha-rejoin-{{ node }}-profiles:
  salt.state:
    - tgt: {{ alive | json }}
    - tgt_type: list
    - sls: {{ tplroot }}.profile
    # not only on a change: a rejoin also repairs profiles an earlier run left stale
    - require:
      - salt: cloudify_ha-rejoin-{{ node }}-joined
{%- endif %}
