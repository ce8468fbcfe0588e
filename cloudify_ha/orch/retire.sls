# salt-run state.orch cloudify_ha.orch.retire pillar='{"cluster": "<name>", "node": "<node name>"}'
#
# Retires a DEAD node: removed from the cluster through the active node (cfy cluster nodes
# remove), from a manager of that cluster whose minion answers. Refused for the active node and
# for a node that is online. The dead host is not touched: rebuild it (or another host), update
# the pillar (a new node name for a rebuilt host) and run cloudify_ha.orch to join the replacement.
{%- set tplroot = tpldir.split("/")[0] %}
{%- set cname = salt["pillar.get"]("cluster") %}
{%- set node = salt["pillar.get"]("node") %}
{%- set plan = salt["cloudify_ha.plan"](cluster=cname) if "cloudify_ha.plan" in salt and cname else none %}
{%- set problem = none %}
{%- if not (cname and node) %}
{%-   set problem = "give the cluster and the node to retire: pillar='{\"cluster\": \"<name>\", \"node\": \"<node name>\"}'" %}
{%- elif plan is none %}
{%-   set problem = "the cloudify_ha modules are not synced to the master: run 'salt-run saltutil.sync_all'" %}
{%- elif plan.errors %}
{%-   set problem = "the cloudify_ha pillar is invalid: " ~ plan.errors | join("; ") %}
{%- endif %}

{%- if problem %}

cloudify_ha-retire-validate:
{%-   if plan is none %}
  {#- Salt's own state: the formula's states may be missing on the master too #}
  test.fail_without_changes:
    - name: {{ problem | json }}
{%-   else %}
  cloudify_ha.refused:
    - comment: {{ problem | json }}
{%-   endif %}
{%- else %}
{%-   set c = plan.clusters[cname] %}
{%-   set ids = c.managers | map(attribute="minion_id") | list %}
{%-   set pings = salt["saltutil.cmd"](tgt=ids, tgt_type="list", fun="test.ping", timeout=5) %}
{%-   set alive = ids | select("in", pings) | list %}
{%-   if not alive %}

cloudify_ha-retire-{{ node }}:
  cloudify_ha.refused:
    - comment: {{ ("no manager of cluster " ~ cname ~ " answers; nothing can be retired") | json }}
{%-   else %}
{%-     set absent_pillar = {"cloudify_ha_orch": dict(node=node, cluster=cname)} %}

cloudify_ha-retire-sync:
  salt.state:
    - tgt: {{ alive[0] }}
    - sls: {{ tplroot }}.sync
    - test: false

cloudify_ha-retire-{{ node }}:
  salt.state:
    - tgt: {{ alive[0] }}
    - sls: {{ tplroot }}.cluster.absent
    - pillar: {{ absent_pillar | json }}
    - require:
      - salt: cloudify_ha-retire-sync

cloudify_ha-retire-{{ node }}-profiles:
  salt.state:
    - tgt: {{ (alive + c.cli_hosts) | json }}
    - tgt_type: list
    - sls: {{ tplroot }}.profile
    - onchanges:
      - salt: cloudify_ha-retire-{{ node }}
{%-   endif %}
{%- endif %}
