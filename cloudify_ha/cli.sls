# The cfy CLI package on a CLI host (cli_hosts of a cluster). The orchestration installs it while
# the managers install theirs; cloudify_ha.profile includes it. From the repositories
# cloudify_ha:packages names (cloudify_ha.repos).
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- from tplroot ~ "/macros.jinja" import refused, package_options with context %}
{%- set me = mapdata.me %}
{%- set lookup = mapdata.lookup %}
{%- set packages = mapdata.packages %}
{%- if mapdata.invalid %}
{{- refused("cloudify_ha-cli-invalid-pillar", mapdata.invalid) }}
{%- endif %}

{%- for cname in me.cli_of %}
{%-   set installer = mapdata.clusters[cname].installer %}
{%-   set source = installer.cli_source %}
{%-   if source and installer.cli_source_hash %}
{#-     fetched and checked against its hash before the package manager sees it (installer.sls) #}
{%-     set source = opts.cachedir ~ "/cloudify_ha/packages/" ~ source.rsplit("/", 1)[1] %}

cloudify_ha-profile-{{ cname }}-cli-package-file:
  file.managed:
    - name: {{ source | json }}
    - source: {{ installer.cli_source | json }}
    - source_hash: {{ installer.cli_source_hash | json }}
    - makedirs: true
    - mode: "0644"
    - require_in:
      - pkg: cloudify_ha-profile-{{ cname }}-cli-package
{%-   endif %}

cloudify_ha-profile-{{ cname }}-cli-package:
  pkg.installed:
    - name: {{ lookup.cli_package | json }}
    - refresh: {{ lookup.refresh | json }}
{{- package_options(packages) }}
{%-   if source %}
    - sources:
      - {{ lookup.cli_package | json }}: {{ source | json }}
{%-   endif %}
{%- endfor %}

{%- if not me.cli_of and not mapdata.invalid %}

cloudify_ha-cli-nothing-here:
  test.succeed_without_changes:
    - name: {{ ("minion " ~ grains["id"] ~ " is not a CLI host of a cluster") | json }}
{%- endif %}

# one run of the formula at a time on this host
include:
  - {{ tplroot }}.lock
{%- if me.cli_of and packages.repos %}
  - {{ tplroot }}.repos
{%- endif %}
