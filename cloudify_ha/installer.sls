# The Cloudify installer package (cfy_manager) on a manager, and psql for the database check.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- set me = mapdata.me %}
{%- if me.manager %}
{%-   set installer = me.cluster.get("installer") or {} %}

cloudify_ha-installer-package:
  pkg.installed:
    - name: {{ mapdata.lookup.installer_package }}
    - refresh: {{ mapdata.lookup.refresh }}
{%-   if installer.get("source") %}
    - sources:
      - {{ mapdata.lookup.installer_package }}: {{ installer.source }}
{%-   elif installer.get("version") %}
    - version: {{ installer.version }}
{%-   endif %}

{%-   if mapdata.lookup.psql_package %}

cloudify_ha-installer-psql:
  pkg.installed:
    - name: {{ mapdata.lookup.psql_package }}
    - refresh: {{ mapdata.lookup.refresh }}
{%-   endif %}
{%- else %}

cloudify_ha-installer-not-a-manager:
  cloudify_ha.refused:
    - comment: {{ ("minion " ~ grains["id"] ~ " is not a manager of any cluster in pillar "
                   "cloudify_ha:clusters") | json }}
{%- endif %}
