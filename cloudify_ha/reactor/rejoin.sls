# A manager minion started, or its cloudify_ha beacon says it is not a healthy member: rejoin it.
# Only the event's authenticated minion id is used, never a name from the payload; the runner
# runs one rejoin at a time and coalesces repeated events, the orchestration checks the id
# against the cluster pillar.
{%- set minion = data.get("id") %}
{%- if minion %}
cloudify_ha-reactor-rejoin-{{ minion }}:
  runner.cloudify_ha.rejoin:
    - args:
      - node: {{ minion }}
{%- endif %}
