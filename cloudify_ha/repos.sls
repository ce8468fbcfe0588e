# The yum repositories the formula's package states install from (cloudify_ha:packages:RedHat:
# repos), written with Salt's pkgrepo.managed: /etc/yum.repos.d/<id>.repo, or the [<id>] section
# of the file that already holds that id (CentOS-Base.repo's base, updates and extras: a
# baseurl replaces their dead mirrorlist). cloudify_ha.installer, cloudify_ha.cli and
# cloudify_ha.loadbalancer include it where the pillar lists repositories for the minion's OS
# family; without them the host's repositories are left as they are.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- from tplroot ~ "/macros.jinja" import refused with context %}
{%- set me = mapdata.me %}
{%- if mapdata.invalid %}
{{- refused("cloudify_ha-repos-invalid-pillar", mapdata.invalid) }}
{%- elif mapdata.packages.repos and (me.manager or me.cli_of or me.lb_of) %}
{%-   for repo in mapdata.packages.repos %}

cloudify_ha-repos-{{ repo.id }}:
  pkgrepo.managed:
    - name: {{ repo.id | json }}
    - humanname: {{ repo.name | json }}
    - baseurl: {{ repo.baseurl | json }}
    - gpgcheck: {{ repo.gpgcheck | json }}
{%-     if repo.gpgkey %}
    - gpgkey: {{ repo.gpgkey | json }}
{%-     endif %}
{%-   endfor %}
{%- else %}

cloudify_ha-repos-nothing-here:
  test.succeed_without_changes:
    - name: {{ ("minion " ~ grains["id"] ~ ": cloudify_ha:packages lists no repository for "
                "its OS family, or it installs no package of the formula") | json }}
{%- endif %}

# one run of the formula at a time on this host
include:
  - {{ tplroot }}.lock
