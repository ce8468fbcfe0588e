# Run on a live manager (cloudify_ha.orch.retire passes pillar cloudify_ha_orch:node and
# :cluster): the dead node is removed from the cluster through the active node.
{%- set node = salt["pillar.get"]("cloudify_ha_orch:node") %}
{%- set cluster = salt["pillar.get"]("cloudify_ha_orch:cluster") %}
{%- if node and cluster %}

cloudify_ha-cluster-absent-{{ node }}:
  cloudify_ha.node_absent:
    - name: {{ node }}
    - cluster: {{ cluster }}
{%- else %}

cloudify_ha-cluster-absent-missing-pillar:
  cloudify_ha.refused:
    - comment: cloudify_ha.cluster.absent needs pillar cloudify_ha_orch:node and cloudify_ha_orch:cluster
{%- endif %}
