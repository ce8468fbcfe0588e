# Run on a live manager for a manager whose minion does not answer (the orchestration passes
# pillar cloudify_ha_orch:node and :cluster): read-only, it checks that the cluster lists it.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/macros.jinja" import refused with context %}
{%- set node = salt["pillar.get"]("cloudify_ha_orch:node") %}
{%- set cluster = salt["pillar.get"]("cloudify_ha_orch:cluster") %}
{#- plain names only (cloudify_ha_pillar.NAME_RE, matched whole): nothing else reaches a state,
    and that only as data #}
{%- set plain = "([A-Za-z0-9][A-Za-z0-9_.-]{0,62})\\Z" %}
{%- if not (node and cluster) %}
{{- refused("cloudify_ha-cluster-down-missing-pillar",
            "cloudify_ha.cluster.down needs pillar cloudify_ha_orch:node and "
            "cloudify_ha_orch:cluster") }}
{%- elif not (node is string and cluster is string and node | regex_match(plain)
              and cluster | regex_match(plain)) %}
{{- refused("cloudify_ha-cluster-down-invalid-pillar",
            "cloudify_ha_orch:node and :cluster must be a node name and a cluster name "
            "(ASCII letters, digits, '.', '_', '-'); nothing was changed") }}
{%- else %}

{{ ("cloudify_ha-cluster-down-" ~ node ~ "-listed") | json }}:
  cloudify_ha.listed:
    - name: {{ node | json }}
    - cluster: {{ cluster | json }}
{%- endif %}

# one run of the formula at a time on this host
include:
  - {{ tplroot }}.lock
