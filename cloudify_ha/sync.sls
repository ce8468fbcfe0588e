# The formula's execution, state and utility modules on this minion. The orchestration runs this
# step with test=False even in a test run: the states that preview the changes live in them.
{%- for kind in ("utils", "modules", "states") %}

cloudify_ha-sync-{{ kind }}:
  saltutil.sync_{{ kind }}:
    - refresh: {{ loop.last }}
{%- endfor %}
