# The load balancer's check user (loadbalancer:check_user): a Cloudify user with 4.6's `default`
# role, which may read /status and nothing else, created through the active node where it is
# missing. HAProxy's health check and the managers' beacon log in as it: the admin's password
# never reaches a load balancer. Applied by the orchestration to one manager of each cluster
# that has a load balancer, before the load balancers' step.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{%- from tplroot ~ "/macros.jinja" import refused with context %}
{%- set me = mapdata.me %}

{%- if mapdata.invalid %}
{{- refused("cloudify_ha-check-user-invalid-pillar", mapdata.invalid) }}
{%- elif me.manager and me.cluster.loadbalancer %}

cloudify_ha-check-user-present:
  cloudify_ha.check_user_present:
    - name: {{ me.cluster.loadbalancer.check_user | json }}
    - cluster: {{ me.cluster_name | json }}
    - active_hint: {{ mapdata.hints.get(me.cluster_name) | json }}
{%- else %}

cloudify_ha-check-user-nothing-here:
  test.succeed_without_changes:
    - name: {{ ("minion " ~ grains["id"] ~ " is not a manager of a cluster with a load "
                "balancer in pillar") | json }}
{%- endif %}

# one run of the formula at a time on this host
include:
  - {{ tplroot }}.lock
