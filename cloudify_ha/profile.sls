# cfy profiles that list every node of the cluster: the local profile on each manager, and a
# profile named after the cluster on each CLI host.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- from tplroot ~ "/macros.jinja" import refused with context %}
{%- set me = mapdata.me %}
{%- if mapdata.invalid %}
{{- refused("cloudify_ha-profile-invalid-pillar", mapdata.invalid) }}
{%- endif %}

# one run of the formula at a time on this host
include:
  - {{ tplroot }}.lock
{%- if me.cli_of %}
  - {{ tplroot }}.cli
{%- endif %}

{%- if me.manager %}

cloudify_ha-profile-local:
  cloudify_ha.profile_updated:
    - name: {{ mapdata.lookup.local_profile | json }}
    # 4.6 names a joiner's profile after the leader it joined through: that one is kept
    - own: true
    - cluster: {{ me.cluster_name | json }}
    - active_hint: {{ mapdata.hints.get(me.cluster_name) | json }}
{%- endif %}

{%- for cname in me.cli_of %}

cloudify_ha-profile-{{ cname }}:
  cloudify_ha.profile_updated:
    - name: {{ cname | json }}
    - cluster: {{ cname | json }}
    - active_hint: {{ mapdata.hints.get(cname) | json }}
    - require:
      - pkg: cloudify_ha-profile-{{ cname }}-cli-package
{%- endfor %}

{%- if not me.manager and not me.cli_of and not mapdata.invalid %}

cloudify_ha-profile-nothing-here:
  test.succeed_without_changes:
    - name: {{ ("minion " ~ grains["id"] ~ " is neither a manager nor a CLI host of a cluster")
               | json }}
{%- endif %}
