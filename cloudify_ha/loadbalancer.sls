# HAProxy in front of the cluster(s) this minion balances (loadbalancer:minion_ids): every
# manager a server, Cloudify's health check (GET /api/v3.1/status answers 200 on the active
# node only), the config checked with `haproxy -c` before it replaces the running one (0600: it
# holds the health check's credentials), a soft reload that lets established connections finish.
# Its template can be overridden (cloudify_ha:tofs, pillar.example): the first source found wins.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- from tplroot ~ "/macros.jinja" import refused with context %}
{%- set me = mapdata.me %}
{%- set lookup = mapdata.lookup %}
{%- set clusters = [] %}
{%- for cname in me.lb_of %}
{%-   do clusters.append(mapdata.clusters[cname]) %}
{%- endfor %}

{%- if mapdata.invalid %}
{{- refused("cloudify_ha-loadbalancer-invalid-pillar", mapdata.invalid) }}
{%- elif clusters %}
{%-   set lb = clusters[0].loadbalancer %}
{%-   set manager = lookup.haproxy_manager %}
{%-   if manager == "auto" %}
{%-     set manager = "service" if grains.get("init") == "systemd" else "direct" %}
{%-   endif %}

{#- from the repositories cloudify_ha:packages names (cloudify_ha.repos) #}
{%-   from tplroot ~ "/macros.jinja" import package_options with context %}

cloudify_ha-loadbalancer-package:
  pkg.installed:
    - name: {{ lookup.haproxy_package | json }}
    - refresh: {{ lookup.refresh | json }}
{{- package_options(mapdata.packages) }}

{#- created 0750 where it is missing; a directory HAProxy's package made is left as it is #}
cloudify_ha-loadbalancer-socket-dir:
  cloudify_ha_lb.directory_created:
    - name: {{ lb.admin_socket.rsplit("/", 1)[0] | json }}
    - mode: "0750"

{%-   for c in clusters %}
{%-     set cdir = lookup.firewall_dir ~ "/" ~ c.name %}
{%-     if c.loadbalancer.ssl %}

cloudify_ha-loadbalancer-{{ c.name }}-certificate:
  file.managed:
    - name: {{ (cdir ~ "/haproxy.pem") | json }}
    - contents_pillar: {{ ("cloudify_ha:clusters:" ~ c.name ~ ":loadbalancer:ssl_cert") | json }}
    - mode: "0600"
    - makedirs: true
    - show_changes: false
    - require_in:
      - file: cloudify_ha-loadbalancer-config
{%-     endif %}
{%-     if c.rest.ssl and c.rest.ca_cert %}

cloudify_ha-loadbalancer-{{ c.name }}-rest-ca:
  file.managed:
    - name: {{ (cdir ~ "/rest-ca.pem") | json }}
    - contents_pillar: {{ ("cloudify_ha:clusters:" ~ c.name ~ ":rest:ca_cert") | json }}
    - mode: "0644"
    - makedirs: true
    - require_in:
      - file: cloudify_ha-loadbalancer-config
{%-     endif %}
{%-   endfor %}

{#- the file exists 0600 before its first content is written: a replaced file keeps its mode,
    so the health check's credentials are never in a 0644 file, not even for a moment #}
cloudify_ha-loadbalancer-config-private:
  file.managed:
    - name: {{ lb.config_path | json }}
    - replace: false
    - mode: "0600"
    - user: root
    - makedirs: true

cloudify_ha-loadbalancer-config:
  file.managed:
    - name: {{ lb.config_path | json }}
    - source: {{ mapdata.tofs["cloudify_ha-loadbalancer-config"] | json }}
    - template: jinja
    - mode: "0600"
    - user: root
    - makedirs: true
    - show_changes: false
    - check_cmd: haproxy -c -f
    - context:
        clusters: {{ clusters | map(attribute="name") | list | json }}
        certs_dir: {{ lookup.firewall_dir | json }}
    - require:
      - pkg: cloudify_ha-loadbalancer-package
      - cloudify_ha_lb: cloudify_ha-loadbalancer-socket-dir
      - file: cloudify_ha-loadbalancer-config-private

{%-   if manager == "service" %}

cloudify_ha-loadbalancer-running:
  service.running:
    - name: {{ lookup.haproxy_service | json }}
    - enable: true
    - reload: true
    - watch:
      - file: cloudify_ha-loadbalancer-config
{%-   else %}

cloudify_ha-loadbalancer-running:
  cloudify_ha_lb.running:
    - name: {{ lb.config_path | json }}
    - pidfile: {{ lookup.haproxy_pidfile | json }}
    - watch:
      - file: cloudify_ha-loadbalancer-config
{%-   endif %}
{%- else %}

cloudify_ha-loadbalancer-nothing-here:
  test.succeed_without_changes:
    - name: {{ ("minion " ~ grains["id"] ~ " is not a load balancer of any cluster in pillar")
               | json }}
{%- endif %}

# one run of the formula at a time on this host
include:
  - {{ tplroot }}.lock
{%- if clusters and mapdata.packages.repos %}
  - {{ tplroot }}.repos
{%- endif %}
