# A follower: joined to the cluster through its active node with the install-time join.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- set me = mapdata.me %}
{#- set by the rejoin orchestration (cloudify_ha.orch.rejoin) #}
{%- set rejoin = salt["pillar.get"]("cloudify_ha_orch:rejoin", False) is sameas true %}

include:
  - {{ tplroot }}.installer

{%- if me.manager %}

cloudify_ha-cluster-follower-joined:
  cloudify_ha.joined:
    - name: {{ me.manager.name | json }}
    - host_ip: {{ me.manager.private_ip | json }}
    - cluster: {{ me.cluster_name | json }}
    # the rejoin orchestration (cloudify_ha.orch.rejoin) replaces a rebuilt host's stale entry
    # and does nothing before the cluster has been started
    - replace_stale: {{ (rejoin or me.cluster.replace_stale) | json }}
    - remove_failed_join: {{ me.cluster.remove_failed_joins | json }}
    - wait: {{ me.cluster.waits.online | json }}
    - boot_wait: {{ me.cluster.waits.boot | json }}
    - offline_wait: {{ me.cluster.waits.offline | json }}
    - if_cluster_runs: {{ rejoin | json }}
    - active_hint: {{ mapdata.hints.get(me.cluster_name) | json }}
    - require:
      - pkg: cloudify_ha-installer-package
{%- endif %}
