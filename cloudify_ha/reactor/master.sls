# Apply on the salt-master's own minion: the reactor configuration of cloudify_ha, written to
# cloudify_ha:reactor:config_file (a .conf file in /etc/salt/master.d/) from the validated
# settings; while the pillar is invalid it only refuses. The master's own minion needs the
# formula's modules (saltutil.sync_all) and the cloudify_ha pillar (no secret).
{%- set tplroot = tpldir.split("/")[0] %}
{%- if "cloudify_ha.settings" not in salt %}

cloudify_ha-reactor-master-not-synced:
  test.fail_without_changes:
    - name: >-
        the cloudify_ha modules are not on this minion: run saltutil.sync_all on it, then
        re-apply cloudify_ha.reactor.master; nothing was changed
{%- else %}
{%-   from tplroot ~ "/map.jinja" import mapdata with context %}
{%-   from tplroot ~ "/macros.jinja" import refused with context %}
{%-   if mapdata.invalid %}
{{- refused("cloudify_ha-reactor-master-invalid-pillar", mapdata.invalid) }}
{%-   else %}

cloudify_ha-reactor-master-config:
  file.managed:
    - name: {{ mapdata.reactor.config_file | json }}
    - source: {{ ("salt://" ~ tplroot ~ "/reactor/master.conf") | json }}
    - mode: "0644"
    - makedirs: true
{%-   endif %}
{%- endif %}
