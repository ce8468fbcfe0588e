# Run on a live manager for a manager whose minion does not answer (the orchestration passes
# pillar cloudify_ha_orch:node and :cluster): read-only, it checks that the cluster lists it.
{%- set node = salt["pillar.get"]("cloudify_ha_orch:node") %}
{%- set cluster = salt["pillar.get"]("cloudify_ha_orch:cluster") %}
{%- if node and cluster %}

cloudify_ha-cluster-down-{{ node }}-listed:
  cloudify_ha.listed:
    - name: {{ node }}
    - cluster: {{ cluster }}
{%- else %}

cloudify_ha-cluster-down-missing-pillar:
  cloudify_ha.refused:
    - comment: cloudify_ha.cluster.down needs pillar cloudify_ha_orch:node and cloudify_ha_orch:cluster
{%- endif %}
