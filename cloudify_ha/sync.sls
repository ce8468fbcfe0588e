# The formula's execution, state and utility modules, its beacon and its grain on this minion
# (the same kinds as SYNCED_KINDS in _modules/cloudify_ha_master.py). The orchestration runs this
# step with test=False even in a test run: the states that preview the changes live in them.
# The minion reloads its modules only when one of them changed: saltutil.sync_*'s own refresh
# reloads every module of the minion on every run, changed or not. The reload also reloads the
# beacons and the grains: the grain reaches the master's grains cache with the minion's next
# pillar request (the orchestration's next step on it).
{%- set kinds = ("utils", "modules", "states", "beacons", "grains") %}
{%- for kind in kinds %}

cloudify_ha-sync-{{ kind }}:
  saltutil.sync_{{ kind }}:
    - refresh: false
{%- endfor %}

cloudify_ha-sync-reload-modules:
  module.run:
    # and waits for the reload, so that the next step finds the new modules
    - saltutil.refresh_modules:
      - async: false
    - onchanges:
{%- for kind in kinds %}
      - saltutil: cloudify_ha-sync-{{ kind }}
{%- endfor %}
