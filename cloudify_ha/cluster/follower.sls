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
    - replace_stale: {{ me.cluster.get("replace_stale", False) }}
    - require:
      - pkg: cloudify_ha-installer-package
{%- endif %}
