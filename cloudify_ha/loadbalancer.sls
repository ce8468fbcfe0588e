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
{%- elif clusters and lookup.haproxy_manager == "service" and "service.offline" in salt
         and salt["service.offline"]() %}
{{- refused("cloudify_ha-loadbalancer-no-service-manager",
            "cloudify_ha:lookup:haproxy_manager is service, but Salt's service module here is "
            "systemd's offline mode (systemctl is installed, systemd is not PID 1): its service "
            "states would do nothing; set haproxy_manager to direct (or auto) on this host") }}
{%- elif clusters %}
{%-   set lb = clusters[0].loadbalancer %}
{%-   set manager = lookup.haproxy_manager %}
{#-   systemctl installed but systemd not PID 1 (a container, a chroot): Salt's service module
      is systemd's "offline" mode, whose service states do nothing and say so with success #}
{%-   set offline = "service.offline" in salt and salt["service.offline"]() %}
{%-   if manager == "auto" %}
{#-     an init that starts enabled services at boot; else (a container) the formula runs it #}
{%-     set manager = "service" if grains.get("init") in ("systemd", "sysvinit") and not offline
                      else "direct" %}
{%-   endif %}
{%-   set socket_dir = lb.admin_socket.rsplit("/", 1)[0] %}
{#-   HAProxy as its package runs it (lookup), where it logs (the pillar's, else the OS family's) #}
{%-   set haproxy = {"user": lookup.haproxy_user, "group": lookup.haproxy_group,
                     "chroot": lookup.haproxy_chroot, "log": lb.log or lookup.haproxy_log,
                     "log_facility": lb.log_facility or lookup.haproxy_log_facility,
                     "state_file": lookup.haproxy_chroot ~ "/server-state"} %}
{#-   the ports SELinux lets HAProxy use by default on EL7 (http_port_t); any other needs
      haproxy_connect_any #}
{%-   set selinux = grains.get("selinux") if grains.get("selinux") is mapping else {} %}
{%-   set other_ports = [] %}
{%-   for c in clusters %}
{%-     if c.loadbalancer.port not in (80, 81, 443, 488, 8008, 8009, 8443, 9000) %}
{%-       do other_ports.append(c.loadbalancer.port) %}
{%-     endif %}
{%-   endfor %}

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
    - name: {{ socket_dir | json }}
    - mode: "0750"

{#- /run is empty after a boot: a socket directory there that the package does not make anew
    at every start is made by systemd-tmpfiles at boot (HAProxy does not start without it) #}
{%-   if socket_dir.startswith("/run/") and socket_dir != lookup.haproxy_run_dir %}

cloudify_ha-loadbalancer-socket-dir-at-boot:
  file.managed:
    - name: /etc/tmpfiles.d/cloudify_ha-haproxy.conf
    - contents: {{ ("d " ~ socket_dir ~ " 0750 root root -") | json }}
    - mode: "0644"
    - makedirs: true
{%-   else %}

cloudify_ha-loadbalancer-socket-dir-at-boot:
  file.absent:
    - name: /etc/tmpfiles.d/cloudify_ha-haproxy.conf
{%-   endif %}
{%-   if selinux.get("enforced") == "Enforcing" and other_ports %}

{#- a frontend port SELinux does not give HAProxy by default (http_port_t) #}
cloudify_ha-loadbalancer-selinux-ports:
  selinux.boolean:
    - name: haproxy_connect_any
    - value: true
    - persist: true
    - require_in:
      - {{ "service" if manager == "service" else "cloudify_ha_lb" }}: cloudify_ha-loadbalancer-running
{%-   endif %}

{%-   for c in clusters %}
{%-     set cdir = lookup.firewall_dir ~ "/" ~ c.name %}

{#- the servers the formula took out stay out (put back only those the orchestration says are
    members: cloudify_ha_orch:backends), recorded before the configuration renders them #}
cloudify_ha-loadbalancer-{{ c.name }}-servers:
  cloudify_ha_lb.backend_servers:
    - name: {{ ("cloudify_" ~ c.name) | json }}
    - admin_socket: {{ lb.admin_socket | json }}
    - back: {{ mapdata.backends.get(c.name, {}).get("back", []) | json }}
    - state_file: {{ haproxy.state_file | json }}
    # a server put back gets no request before its checks could mark it down
    - inter: {{ c.loadbalancer.inter | json }}
    - fall: {{ c.loadbalancer.fall | json }}
    - timeout_connect: {{ lb.timeout_connect | json }}
    - require:
      - pkg: cloudify_ha-loadbalancer-package
    - require_in:
      - file: cloudify_ha-loadbalancer-config

{#- a password the managers reject would mark every manager down: refused before it is written #}
cloudify_ha-loadbalancer-{{ c.name }}-check-user:
  cloudify_ha.check_credentials_accepted:
    - name: {{ c.loadbalancer.check_user | json }}
    - cluster: {{ c.name | json }}
    - require_in:
      - file: cloudify_ha-loadbalancer-config
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
    # quiet (-q): HAProxy quotes words of a line it refuses, the health check's credentials among
    # them, and Salt puts what a check_cmd prints in the state's comment (the job cache)
    - check_cmd: haproxy -c -q -f
    - context:
        clusters: {{ clusters | map(attribute="name") | list | json }}
        certs_dir: {{ lookup.firewall_dir | json }}
        haproxy: {{ haproxy | json }}
    - require:
      - pkg: cloudify_ha-loadbalancer-package
      - cloudify_ha_lb: cloudify_ha-loadbalancer-socket-dir
      - file: cloudify_ha-loadbalancer-config-private

{#- HAProxy from 1.6 loads the server states this saves right before a reload: the new process
    keeps servers out or down as the old one had them #}
cloudify_ha-loadbalancer-servers-state-saved:
  cloudify_ha_lb.servers_state_saved:
    - name: {{ haproxy.state_file | json }}
    - admin_socket: {{ lb.admin_socket | json }}
    - onchanges:
      - file: cloudify_ha-loadbalancer-config
{%-   if manager == "service" %}

cloudify_ha-loadbalancer-running:
  service.running:
    - name: {{ lookup.haproxy_service | json }}
    - enable: true
    - reload: true
    - watch:
      - file: cloudify_ha-loadbalancer-config
    - require:
      - cloudify_ha_lb: cloudify_ha-loadbalancer-servers-state-saved
{%-   else %}

cloudify_ha-loadbalancer-running:
  cloudify_ha_lb.running:
    - name: {{ lb.config_path | json }}
    - pidfile: {{ lookup.haproxy_pidfile | json }}
    - watch:
      - file: cloudify_ha-loadbalancer-config
    - require:
      - cloudify_ha_lb: cloudify_ha-loadbalancer-servers-state-saved
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
