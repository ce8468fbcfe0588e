# The ports the formula handles on this host, each open to its sources only and closed to every
# other source, IPv6 included (cloudify_ha_firewall.plan says which, to whom, and why): on a
# manager its cluster's ports (8300/tcp, 8301/tcp+udp, 8500/tcp, 22000/tcp) to the cluster's
# managers, the REST port to them and firewall:rest_sources, 5671 and 53333 to them and
# firewall:agent_sources; on a load balancer host loadbalancer:port to loadbalancer:sources.
# firewalld where it runs, else nftables (the formula's own table) where nft is new enough for
# its rules, else iptables and ip6tables (the formula's own chain in each).
# The nftables, iptables and ip6tables templates can be overridden (cloudify_ha:tofs,
# pillar.example).
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- from tplroot ~ "/macros.jinja" import refused with context %}
{%- if mapdata.invalid %}
{{- refused("cloudify_ha-firewall-invalid-pillar", mapdata.invalid) }}
{%- else %}
{%-   set fw = salt["cloudify_ha_firewall.plan"](mapdata.me, mapdata.clusters) %}
{%-   if fw.refused %}
{{- refused("cloudify_ha-firewall-refused", fw.refused) }}
{%-   elif not fw.openings %}

cloudify_ha-firewall-nothing-to-do:
  test.succeed_without_changes:
    - name: this minion is neither a manager nor a load balancer with the cluster firewall enabled
{%-   elif fw.backend == "firewalld" %}

cloudify_ha-firewall-firewalld-rules:
  cloudify_ha_firewall.firewalld_present:
    - name: {{ fw.label | json }}
    - openings: {{ fw.openings | json }}
    - zone: {{ fw.zone | json }}
{%-   else %}
{#-     nftables (the formula's own table), or iptables and ip6tables (its own chain in each):
        each file's rules rendered once, with a placeholder where the marker's digest goes; the
        digest is that of the rules without it #}
{%-     set kinds = ["nftables"] if fw.backend == "nftables" else ["iptables", "ip6tables"] %}
{%-     set placeholder = "@CLOUDIFY_HA_DIGEST@" %}
{%-     for kind in kinds %}
{%-       set suffix = "nft" if kind == "nftables" else kind %}
{%-       set path = mapdata.lookup.firewall_dir ~ "/firewall." ~ suffix %}
{#-       the template: the first of its TOFS sources (cloudify_ha:tofs) that the file server
          has, as file.managed picks one from a source list #}
{%-       set source = salt["file.source_list"](mapdata.tofs["cloudify_ha-firewall-" ~ kind ~ "-file"],
                                                "", saltenv)[0] %}
{%-       set rendered = salt["slsutil.renderer"](source, default_renderer="jinja",
                                                  digest=placeholder, **fw.context) %}
{%-       set digest = salt["hashutil.digest"](rendered | replace(placeholder, ""), "sha256")[:16] %}
{%-       set header = "table inet cloudify_ha\ndelete table inet cloudify_ha\n"
                       if kind == "nftables" else "" %}

cloudify_ha-firewall-{{ kind }}-file:
  file.managed:
    - name: {{ path | json }}
    - makedirs: true
    - mode: "0644"
    - contents: {{ ("# managed by Salt (cloudify_ha.firewall), do not edit\n" ~ header
                    ~ rendered | replace(placeholder, digest)) | json }}

cloudify_ha-firewall-{{ kind }}-loaded:
  cloudify_ha_firewall.rules_loaded:
    - name: {{ path | json }}
    - backend: {{ kind }}
    - marker: {{ ("cloudify_ha " ~ fw.label ~ " " ~ digest) | json }}
    - require:
      - file: cloudify_ha-firewall-{{ kind }}-file
{%-     endfor %}
{%-   endif %}
{%- endif %}

# one run of the formula at a time on this host
include:
  - {{ tplroot }}.lock
