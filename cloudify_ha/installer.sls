# The Cloudify installer package (cfy_manager) on a manager, and psql for the database check.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- from tplroot ~ "/macros.jinja" import refused with context %}
{%- set me = mapdata.me %}
{%- set lookup = mapdata.lookup %}
{%- if mapdata.invalid %}
{{- refused("cloudify_ha-installer-invalid-pillar", mapdata.invalid) }}
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
{{- refused("cloudify_ha-installer-not-a-manager",
             "minion " ~ grains["id"] ~ " is not a manager of any cluster in pillar "
             "cloudify_ha:clusters") }}
{%- endif %}

# one run of the formula at a time on this host
include:
  - {{ tplroot }}.lock
