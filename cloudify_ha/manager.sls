# The cluster's first manager, installed on the external database (never re-run).
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- set me = mapdata.me %}

include:
  - {{ tplroot }}.installer

{%- if me.manager %}

cloudify_ha-manager-installed:
  cloudify_ha.manager_installed:
    - name: {{ me.manager.name | json }}
    - cluster: {{ me.cluster_name | json }}
    - allow_database_reset: {{ me.cluster.allow_database_reset | json }}
    - require:
      - pkg: cloudify_ha-installer-package
{%- endif %}
