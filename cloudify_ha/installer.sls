# The Cloudify installer package (cfy_manager) on a manager, the packages 4.6's installer checks
# before it installs anything (lookup:prerequisite_packages, per OS family), and psql for the
# database check.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- from tplroot ~ "/macros.jinja" import refused with context %}
{%- set me = mapdata.me %}
{%- set lookup = mapdata.lookup %}
{%- if mapdata.invalid %}
{{- refused("cloudify_ha-installer-invalid-pillar", mapdata.invalid) }}
{%- elif me.manager %}
{%-   set installer = me.cluster.installer %}
{%-   set prerequisites = lookup.get("prerequisite_packages") or [] %}
{%-   if prerequisites %}

cloudify_ha-installer-prerequisites:
  pkg.installed:
    - pkgs: {{ prerequisites | json }}
    - refresh: {{ lookup.refresh | json }}
{%-   endif %}

cloudify_ha-installer-package:
  pkg.installed:
    - name: {{ lookup.installer_package | json }}
    - refresh: {{ lookup.refresh | json }}
{%-   if prerequisites %}
    - require:
      - pkg: cloudify_ha-installer-prerequisites
{%-   endif %}
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
