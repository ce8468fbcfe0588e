# The Cloudify installer package (cfy_manager) on a manager, the packages 4.6's installer checks
# before it installs anything (lookup:prerequisite_packages, per OS family), and psql for the
# database check, each from the repositories cloudify_ha:packages names (cloudify_ha.repos).
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- from tplroot ~ "/macros.jinja" import refused, package_options with context %}
{%- set me = mapdata.me %}
{%- set lookup = mapdata.lookup %}
{%- set packages = mapdata.packages %}
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
{{- package_options(packages) }}
{%-   endif %}
{%-   set source = installer.source %}
{%-   if source and installer.source_hash %}
{#-     the package file fetched and checked against its hash (file.managed) before the package
        manager sees it: pkg.installed's own fetch of a source checks none #}
{%-     set source = opts.cachedir ~ "/cloudify_ha/packages/" ~ source.rsplit("/", 1)[1] %}

cloudify_ha-installer-package-file:
  file.managed:
    - name: {{ source | json }}
    - source: {{ installer.source | json }}
    - source_hash: {{ installer.source_hash | json }}
    - makedirs: true
    - mode: "0644"
    - require_in:
      - pkg: cloudify_ha-installer-package
{%-   endif %}

cloudify_ha-installer-package:
  pkg.installed:
    - name: {{ lookup.installer_package | json }}
    - refresh: {{ lookup.refresh | json }}
{{- package_options(packages, [{"pkg": "cloudify_ha-installer-prerequisites"}]
                    if prerequisites else []) }}
{%-   if source %}
    - sources:
      - {{ lookup.installer_package | json }}: {{ source | json }}
{%-   elif installer.version %}
    - version: {{ installer.version | json }}
{%-   endif %}

{%-   if lookup.psql_package %}

cloudify_ha-installer-psql:
  pkg.installed:
    - name: {{ lookup.psql_package | json }}
    - refresh: {{ lookup.refresh | json }}
{{- package_options(packages) }}
{%-   endif %}
{%- else %}
{{- refused("cloudify_ha-installer-not-a-manager",
             "minion " ~ grains["id"] ~ " is not a manager of any cluster in pillar "
             "cloudify_ha:clusters") }}
{%- endif %}

# one run of the formula at a time on this host
include:
  - {{ tplroot }}.lock
{%- if me.manager and packages.repos %}
  - {{ tplroot }}.repos
{%- endif %}
