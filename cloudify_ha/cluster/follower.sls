# A follower: joined to the cluster through its active node with the install-time join.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- set me = mapdata.me %}

include:
  - {{ tplroot }}.installer

{%- if me.manager %}

cloudify_ha-cluster-follower-joined:
  cloudify_ha.joined:
    - name: {{ me.manager.name }}
    - host_ip: {{ me.manager.private_ip }}
    - cluster: {{ me.cluster_name }}
    # the rejoin orchestration (cloudify_ha.orch.rejoin) replaces a rebuilt host's stale entry
    # and does nothing before the cluster has been started
    - replace_stale: {{ salt["pillar.get"]("cloudify_ha_orch:rejoin", False) or me.cluster.get("replace_stale", False) }}
    - if_cluster_runs: {{ salt["pillar.get"]("cloudify_ha_orch:rejoin", False) }}
    - active_hint: {{ (salt["pillar.get"]("cloudify_ha_orch:active", {}) or {}).get(me.cluster_name) | json }}
    - require:
      - pkg: cloudify_ha-installer-package
{%- endif %}
