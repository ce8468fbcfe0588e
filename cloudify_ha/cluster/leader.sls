# The bootstrap leader: installed on the external database, the cluster started on it, and then
# a member like any other; the cluster then holds the pillar's license. When the cluster already
# runs elsewhere (a re-run after a failover, a rebuilt leader host) the first two defer and
# `joined` brings this host in.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- set me = mapdata.me %}

include:
  - {{ tplroot }}.manager

{%- if me.manager %}

cloudify_ha-cluster-leader-started:
  cloudify_ha.cluster_started:
    - name: {{ me.manager.name | json }}
    - host_ip: {{ me.manager.private_ip | json }}
    - cluster: {{ me.cluster_name | json }}
    - wait: {{ me.cluster.waits.started | json }}
    - require:
      - cloudify_ha: cloudify_ha-manager-installed

cloudify_ha-cluster-leader-joined:
  cloudify_ha.joined:
    - name: {{ me.manager.name | json }}
    - host_ip: {{ me.manager.private_ip | json }}
    - cluster: {{ me.cluster_name | json }}
    - replace_stale: {{ me.cluster.replace_stale | json }}
    - remove_failed_join: {{ me.cluster.remove_failed_joins | json }}
    - wait: {{ me.cluster.waits.online | json }}
    - boot_wait: {{ me.cluster.waits.boot | json }}
    - offline_wait: {{ me.cluster.waits.offline | json }}
    - active_hint: {{ mapdata.hints.get(me.cluster_name) | json }}
    - require:
      - cloudify_ha: cloudify_ha-cluster-leader-started
{%- if me.cluster.license %}

# 4.6 premium refuses blueprints, users, snapshots... until the cluster holds a license: the
# pillar's, uploaded through the active node once the cluster runs (its text never in a return)
cloudify_ha-cluster-license:
  cloudify_ha.license_present:
    - name: {{ me.cluster_name | json }}
    - active_hint: {{ mapdata.hints.get(me.cluster_name) | json }}
    - require:
      - cloudify_ha: cloudify_ha-cluster-leader-joined
{%- endif %}
{%- endif %}
