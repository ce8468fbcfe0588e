# The load balancers' backends around a manager's install: the orchestrations take a manager
# that is not a cluster member yet out of every load balancer of its cluster before its install
# (4.6 answers /status 200 as a standalone manager for minutes before it joins: the health
# check cannot tell it from the active node) and put it back once it is a member. Applied to
# the load balancers with cloudify_ha_orch:backends: {cluster: <name>, out: [...], back: [...]}
# (map.jinja keeps only the cluster's manager names). No reload: the running HAProxy is told
# (disable/enable server), the formula's record makes the configuration render it disabled.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- from tplroot ~ "/macros.jinja" import refused with context %}

{%- if mapdata.invalid %}
{{- refused("cloudify_ha-backends-invalid-pillar", mapdata.invalid) }}
{%- elif mapdata.backends %}
{%-   set lookup = mapdata.lookup %}
{#-   HAProxy's one admin socket: the first cluster's it balances (as haproxy.cfg has it) #}
{%-   set admin_socket = mapdata.clusters[mapdata.me.lb_of[0]].loadbalancer.admin_socket %}
{%-   for cname, wanted in mapdata.backends.items() %}

cloudify_ha-backends-{{ cname }}:
  cloudify_ha_lb.backend_servers:
    - name: {{ ("cloudify_" ~ cname) | json }}
    - admin_socket: {{ admin_socket | json }}
    - out: {{ wanted.out | json }}
    - back: {{ wanted.back | json }}
    - state_file: {{ (lookup.haproxy_chroot ~ "/server-state") | json }}
    # a server put back gets no request before its checks could mark it down
    - inter: {{ mapdata.clusters[cname].loadbalancer.inter | json }}
    - fall: {{ mapdata.clusters[cname].loadbalancer.fall | json }}
    - timeout_connect: {{ mapdata.clusters[mapdata.me.lb_of[0]].loadbalancer.timeout_connect | json }}
{%-   endfor %}
{%- else %}

cloudify_ha-backends-nothing-here:
  test.succeed_without_changes:
    - name: {{ ("minion " ~ grains["id"] ~ " has no backend servers to take out or put back "
                "(cloudify_ha_orch:backends names no cluster it balances)") | json }}
{%- endif %}

# one run of the formula at a time on this host
include:
  - {{ tplroot }}.lock
