# The Cloudify installer package (cfy_manager) on a manager, and psql for the database check.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- set me = mapdata.me %}
{%- set lookup = mapdata.lookup %}
{%- if mapdata.invalid %}

cloudify_ha-installer-invalid-pillar:
  cloudify_ha.refused:
    - comment: {{ mapdata.invalid | json }}
{%- elif me.manager %}
{%-   set installer = me.cluster.installer %}

cloudify_ha-installer-package:
  pkg.installed:
    - name: {{ lookup.installer_package | json }}
    - refresh: {{ lookup.refresh | json }}
{%-   if installer.source %}
    - sources:
      - {{ lookup.installer_package | json }}: {{ installer.source | json }}
{%-   elif installer.version %}
    - version: {{ installer.version | json }}
{%-   endif %}

{%-   if lookup.psql_package %}

cloudify_ha-installer-psql:
  pkg.installed:
    - name: {{ lookup.psql_package | json }}
    - refresh: {{ lookup.refresh | json }}
{%-   endif %}
{%- else %}

cloudify_ha-installer-not-a-manager:
  cloudify_ha.refused:
    - comment: {{ ("minion " ~ grains["id"] ~ " is not a manager of any cluster in pillar "
                   "cloudify_ha:clusters") | json }}
{%- endif %}
