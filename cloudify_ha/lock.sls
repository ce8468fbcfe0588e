# One run of the formula's SLS files at a time on this host (cloudify_ha.run_locked): the first
# state of every such run, its lock released by the last. Every SLS of the formula but sync
# includes this one. Rendered only where the formula's modules are synced (a new minion gets
# them from the orchestration's sync step before anything else).
{%- if "cloudify_ha.node_state" in salt %}

cloudify_ha-lock-run-locked:
  cloudify_ha.run_locked:
    - order: first
    # waited in vain (lock_wait): nothing else in this run runs
    - failhard: true

cloudify_ha-lock-run-unlocked:
  cloudify_ha.run_unlocked:
    - order: last
{%- endif %}
