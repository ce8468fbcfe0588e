# cfy profiles that list every node of the cluster: the local profile on each manager, and a
# profile named after the cluster on each CLI host.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- set me = mapdata.me %}
{#- the active node the orchestration's plan found, per cluster (cloudify_ha.joined explains) #}
{%- set hints = salt["pillar.get"]("cloudify_ha_orch:active", {}) or {} %}
{%- if me.cli_of %}

include:
  - {{ tplroot }}.cli
{%- endif %}

{%- if me.manager %}

cloudify_ha-profile-local:
  cloudify_ha.profile_updated:
    - name: {{ mapdata.lookup.local_profile }}
    - cluster: {{ me.cluster_name }}
    - active_hint: {{ hints.get(me.cluster_name) | json }}
{%- endif %}

{%- for cname in me.cli_of %}

cloudify_ha-profile-{{ cname }}:
  cloudify_ha.profile_updated:
    - name: {{ cname }}
    - cluster: {{ cname }}
    - active_hint: {{ hints.get(cname) | json }}
    - require:
      - pkg: cloudify_ha-profile-{{ cname }}-cli-package
{%- endfor %}

{%- if not me.manager and not me.cli_of %}

cloudify_ha-profile-nothing-here:
  test.succeed_without_changes:
    - name: minion {{ grains["id"] }} is neither a manager nor a CLI host of a cluster
{%- endif %}
