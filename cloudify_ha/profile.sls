# cfy profiles that list every node of the cluster: the local profile on each manager, and a
# profile named after the cluster on each CLI host.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- set me = mapdata.me %}

{%- if me.manager %}

cloudify_ha-profile-local:
  cloudify_ha.profile_updated:
    - name: {{ mapdata.lookup.local_profile }}
    - cluster: {{ me.cluster_name }}
{%- endif %}

{%- for cname in me.cli_of %}
{%-   set cli = (mapdata.clusters[cname].get("installer") or {}) %}

cloudify_ha-profile-{{ cname }}-cli-package:
  pkg.installed:
    - name: {{ mapdata.lookup.cli_package }}
    - refresh: {{ mapdata.lookup.refresh }}
{%-   if cli.get("cli_source") %}
    - sources:
      - {{ mapdata.lookup.cli_package }}: {{ cli.cli_source }}
{%-   endif %}

cloudify_ha-profile-{{ cname }}:
  cloudify_ha.profile_updated:
    - name: {{ cname }}
    - cluster: {{ cname }}
    - require:
      - pkg: cloudify_ha-profile-{{ cname }}-cli-package
{%- endfor %}

{%- if not me.manager and not me.cli_of %}

cloudify_ha-profile-nothing-here:
  test.succeed_without_changes:
    - name: minion {{ grains["id"] }} is neither a manager nor a CLI host of a cluster
{%- endif %}
