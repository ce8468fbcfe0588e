# HAProxy in front of the cluster(s) this minion balances (loadbalancer:minion_ids): every
# manager a server, Cloudify's health check (GET /api/v3.1/status answers 200 on the active
# node only), the config checked with `haproxy -c` before it replaces the running one (0600: it
# holds the health check's credentials), a soft reload that lets established connections finish.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- set me = mapdata.me %}
{%- set lookup = mapdata.lookup %}
{%- set clusters = [] %}
{%- set errors = [] %}
{%- for cname in me.lb_of %}
{%-   set plan = salt["cloudify_ha.plan"](cluster=cname) %}
{%-   do errors.extend(plan.errors) %}
{%-   if not plan.errors %}
{%-     do clusters.append(plan.clusters[cname]) %}
{%-   endif %}
{%- endfor %}

{%- if errors %}

{%-   set text = ["the cloudify_ha pillar is invalid; the load balancer's configuration was not "
                 "changed:"] + errors | map("regex_replace", "^", "- ") | list %}
cloudify_ha-loadbalancer-invalid-pillar:
  cloudify_ha.refused:
    - comment: {{ text | join("\n") | json }}
{%- elif clusters %}
{%-   set lb = clusters[0].loadbalancer %}
{%-   set manager = lookup.haproxy_manager %}
{%-   if manager == "auto" %}
{%-     set manager = "service" if grains.get("init") == "systemd" else "direct" %}
{%-   endif %}

cloudify_ha-loadbalancer-package:
  pkg.installed:
    - name: {{ lookup.haproxy_package }}
    - refresh: {{ lookup.refresh }}

cloudify_ha-loadbalancer-socket-dir:
  file.directory:
    - name: {{ salt["file.dirname"](lb.admin_socket) }}
    - mode: "0750"
    - makedirs: true

{%-   for c in clusters %}
{%-     set cdir = lookup.firewall_dir ~ "/" ~ c.name %}
{%-     if c.loadbalancer.ssl %}

cloudify_ha-loadbalancer-{{ c.name }}-certificate:
  file.managed:
    - name: {{ cdir }}/haproxy.pem
    - contents_pillar: cloudify_ha:clusters:{{ c.name }}:loadbalancer:ssl_cert
    - mode: "0600"
    - makedirs: true
    - show_changes: false
    - require_in:
      - file: cloudify_ha-loadbalancer-config
{%-     endif %}
{%-     if c.rest.ssl and c.rest.ca_cert %}

cloudify_ha-loadbalancer-{{ c.name }}-rest-ca:
  file.managed:
    - name: {{ cdir }}/rest-ca.pem
    - contents_pillar: cloudify_ha:clusters:{{ c.name }}:rest:ca_cert
    - mode: "0644"
    - makedirs: true
    - require_in:
      - file: cloudify_ha-loadbalancer-config
{%-     endif %}
{%-   endfor %}

cloudify_ha-loadbalancer-config:
  file.managed:
    - name: {{ lb.config_path }}
    - source: salt://{{ tplroot }}/files/haproxy.cfg.jinja
    - template: jinja
    - mode: "0600"
    - user: root
    - makedirs: true
    - show_changes: false
    - check_cmd: haproxy -c -f
    - context:
        clusters: {{ clusters | map(attribute="name") | list | json }}
        certs_dir: {{ lookup.firewall_dir }}
    - require:
      - pkg: cloudify_ha-loadbalancer-package
      - file: cloudify_ha-loadbalancer-socket-dir

{%-   if manager == "service" %}

cloudify_ha-loadbalancer-running:
  service.running:
    - name: {{ lookup.haproxy_service }}
    - enable: true
    - reload: true
    - watch:
      - file: cloudify_ha-loadbalancer-config
{%-   else %}

cloudify_ha-loadbalancer-running:
  cloudify_ha_lb.running:
    - name: {{ lb.config_path }}
    - pidfile: {{ lookup.haproxy_pidfile }}
    - watch:
      - file: cloudify_ha-loadbalancer-config
{%-   endif %}
{%- else %}

cloudify_ha-loadbalancer-nothing-here:
  test.succeed_without_changes:
    - name: minion {{ grains["id"] }} is not a load balancer of any cluster in pillar
{%- endif %}
