# The cluster's ports between its managers: 8300/tcp (cluster RPC), 8301/tcp+udp (gossip),
# 8500/tcp (consul), 22000/tcp (file sync) from the cluster's managers only; the REST port from
# the managers and firewall:rest_sources (load balancer, CLI hosts) when that list is set.
# firewalld where it runs, else nftables (the formula's own table), else iptables (its own chain).
# The nftables and iptables templates can be overridden (cloudify_ha:tofs, pillar.example).
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- from tplroot ~ "/macros.jinja" import refused with context %}
{%- set me = mapdata.me %}
{%- if mapdata.invalid %}
{{- refused("cloudify_ha-firewall-invalid-pillar", mapdata.invalid) }}
{%- elif me.manager and me.cluster.firewall.enabled %}
{%-   set fw = me.cluster.firewall %}
{%-   set backend = fw.backend %}
{%-   if backend == "auto" %}
{%-     set firewalld_runs = salt["cmd.which"]("firewall-cmd") and salt["cmd.retcode"](
            ["firewall-cmd", "--state"], python_shell=False, ignore_retcode=True,
            output_loglevel="quiet") == 0 %}
{%-     if firewalld_runs %}
{%-       set backend = "firewalld" %}
{%-     elif salt["cmd.which"]("nft") %}
{%-       set backend = "nftables" %}
{%-     else %}
{%-       set backend = "iptables" %}
{%-     endif %}
{%-   endif %}
{%-   set peers = me.cluster.managers | map(attribute="private_ip") | list %}
{%-   set rest_port = 443 if me.cluster.rest.ssl else 80 %}
{%-   set rest_sources = fw.rest_sources %}
{%-   set rest_allowed = (peers + rest_sources) if rest_sources else [] %}
{%-   set ctx = {"cluster": me.cluster_name, "peers": peers, "rest_port": rest_port,
                 "rest_allowed": rest_allowed, "tcp_ports": [8300, 8301, 8500, 22000],
                 "udp_ports": [8301]} %}

{%-   if backend == "firewalld" %}
{%-     set ports = [] %}
{%-     for proto in ("tcp", "udp") %}
{%-       for port in ctx[proto ~ "_ports"] %}
{%-         do ports.append({"port": port, "protocol": proto}) %}
{%-       endfor %}
{%-     endfor %}

cloudify_ha-firewall-firewalld-rules:
  cloudify_ha_firewall.firewalld_present:
    - name: {{ me.cluster_name | json }}
    - peers: {{ peers | json }}
    - ports: {{ ports | json }}
    - rest_port: {{ rest_port }}
    - rest_sources: {{ rest_allowed | json }}
    - zone: {{ fw.firewalld_zone | json }}

{%-   else %}
{#-     nftables (the formula's own table) or iptables (its own chain): the rules rendered once,
        with a placeholder where the marker's digest goes; the digest is that of the rules
        without it #}
{%-     set suffix = "nft" if backend == "nftables" else "iptables" %}
{%-     set path = mapdata.lookup.firewall_dir ~ "/firewall." ~ suffix %}
{%-     set placeholder = "@CLOUDIFY_HA_DIGEST@" %}
{#-     the template: the first of its TOFS sources (cloudify_ha:tofs) that the file server has,
        as file.managed picks one from a source list #}
{%-     set source = salt["file.source_list"](mapdata.tofs["cloudify_ha-firewall-" ~ backend ~ "-file"],
                                              "", saltenv)[0] %}
{%-     set rendered = salt["slsutil.renderer"](source, default_renderer="jinja",
                                                digest=placeholder, **ctx) %}
{%-     set digest = salt["hashutil.digest"](rendered | replace(placeholder, ""), "sha256")[:16] %}
{%-     set header = "table inet cloudify_ha\ndelete table inet cloudify_ha\n"
                     if backend == "nftables" else "" %}

cloudify_ha-firewall-{{ backend }}-file:
  file.managed:
    - name: {{ path | json }}
    - makedirs: true
    - mode: "0644"
    - contents: {{ ("# managed by Salt (cloudify_ha.firewall), do not edit\n" ~ header
                    ~ rendered | replace(placeholder, digest)) | json }}

cloudify_ha-firewall-{{ backend }}-loaded:
  cloudify_ha_firewall.rules_loaded:
    - name: {{ path | json }}
    - backend: {{ backend }}
    - marker: {{ ("cloudify_ha " ~ me.cluster_name ~ " " ~ digest) | json }}
    - require:
      - file: cloudify_ha-firewall-{{ backend }}-file
{%-   endif %}
{%- else %}

cloudify_ha-firewall-nothing-to-do:
  test.succeed_without_changes:
    - name: the cluster firewall is disabled here or this minion is not a manager
{%- endif %}

# one run of the formula at a time on this host
include:
  - {{ tplroot }}.lock
