# The cfy CLI package on a CLI host (cli_hosts of a cluster). The orchestration installs it while
# the managers install theirs; cloudify_ha.profile includes it.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- set me = mapdata.me %}

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
{%- endfor %}

{%- if not me.cli_of %}

cloudify_ha-cli-nothing-here:
  test.succeed_without_changes:
    - name: minion {{ grains["id"] }} is not a CLI host of a cluster
{%- endif %}
