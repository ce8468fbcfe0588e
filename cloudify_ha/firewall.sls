# The cluster's ports between its managers: 8300/tcp (cluster RPC), 8301/tcp+udp (gossip),
# 8500/tcp (consul), 22000/tcp (file sync) from the cluster's managers only; the REST port from
# the managers and firewall:rest_sources (load balancer, CLI hosts) when that list is set.
# firewalld where it runs, else nftables (the formula's own table), else iptables (its own chain).
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- set me = mapdata.me %}
{%- if me.manager and (me.cluster.get("firewall") or {}).get("enabled", True) %}
{%-   set fw = me.cluster.get("firewall") or {} %}
{%-   set backend = fw.get("backend", "auto") %}
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
{%-   set rest_port = 443 if (me.cluster.get("rest") or {}).get("ssl") else 80 %}
{%-   set rest_sources = fw.get("rest_sources") or [] %}
{%-   set rest_allowed = (peers + rest_sources) if rest_sources else [] %}
{%-   set ctx = {"cluster": me.cluster_name, "peers": peers, "rest_port": rest_port,
                 "rest_allowed": rest_allowed, "tcp_ports": [8300, 8301, 8500, 22000],
                 "udp_ports": [8301]} %}

{%-   if backend == "firewalld" %}
{%-     for ip in peers %}
{%-       for port, proto in [(8300, "tcp"), (8301, "tcp"), (8301, "udp"), (8500, "tcp"), (22000, "tcp")] %}
{%-         set rule = 'rule family="ipv4" source address="' ~ ip ~ '" port port="' ~ port ~ '" protocol="' ~ proto ~ '" accept' %}

cloudify_ha-firewall-firewalld-{{ ip }}-{{ port }}-{{ proto }}:
  cmd.run:
    - name: firewall-cmd --add-rich-rule='{{ rule }}' && firewall-cmd --permanent --add-rich-rule='{{ rule }}'
    - unless: firewall-cmd --query-rich-rule='{{ rule }}' && firewall-cmd --permanent --query-rich-rule='{{ rule }}'
{%-       endfor %}
{%-     endfor %}
{%-     for source in (rest_allowed or ["0.0.0.0/0"]) %}
{%-       set rule = 'rule family="ipv4" source address="' ~ source ~ '" port port="' ~ rest_port ~ '" protocol="tcp" accept' %}

cloudify_ha-firewall-firewalld-rest-{{ source }}:
  cmd.run:
    - name: firewall-cmd --add-rich-rule='{{ rule }}' && firewall-cmd --permanent --add-rich-rule='{{ rule }}'
    - unless: firewall-cmd --query-rich-rule='{{ rule }}' && firewall-cmd --permanent --query-rich-rule='{{ rule }}'
{%-     endfor %}

{%-   elif backend == "nftables" %}
{%-     set template = "salt://" ~ tplroot ~ "/files/firewall.nft.jinja" %}
{%-     set digest = salt["hashutil.digest"](salt["slsutil.renderer"](template, default_renderer="jinja", digest="", **ctx), "sha256")[:16] %}
{%-     set rules = salt["slsutil.renderer"](template, default_renderer="jinja", digest=digest, **ctx) %}

cloudify_ha-firewall-nftables-file:
  file.managed:
    - name: {{ mapdata.lookup.firewall_dir }}/firewall.nft
    - makedirs: true
    - mode: "0644"
    - contents: |
        # managed by Salt (cloudify_ha.firewall), do not edit
        table inet cloudify_ha
        delete table inet cloudify_ha
        {{ rules | indent(8) }}

cloudify_ha-firewall-nftables-loaded:
  cloudify_ha_firewall.rules_loaded:
    - name: {{ mapdata.lookup.firewall_dir }}/firewall.nft
    - backend: nftables
    - marker: cloudify_ha {{ me.cluster_name }} {{ digest }}
    - require:
      - file: cloudify_ha-firewall-nftables-file

{%-   else %}
{%-     set template = "salt://" ~ tplroot ~ "/files/firewall.iptables.jinja" %}
{%-     set digest = salt["hashutil.digest"](salt["slsutil.renderer"](template, default_renderer="jinja", digest="", **ctx), "sha256")[:16] %}
{%-     set rules = salt["slsutil.renderer"](template, default_renderer="jinja", digest=digest, **ctx) %}

cloudify_ha-firewall-iptables-file:
  file.managed:
    - name: {{ mapdata.lookup.firewall_dir }}/firewall.iptables
    - makedirs: true
    - mode: "0644"
    - contents: |
        # managed by Salt (cloudify_ha.firewall), do not edit
        {{ rules | indent(8) }}

cloudify_ha-firewall-iptables-loaded:
  cloudify_ha_firewall.rules_loaded:
    - name: {{ mapdata.lookup.firewall_dir }}/firewall.iptables
    - backend: iptables
    - marker: cloudify_ha {{ me.cluster_name }} {{ digest }}
    - require:
      - file: cloudify_ha-firewall-iptables-file
{%-   endif %}
{%- else %}

cloudify_ha-firewall-nothing-to-do:
  test.succeed_without_changes:
    - name: the cluster firewall is disabled here or this minion is not a manager
{%- endif %}
