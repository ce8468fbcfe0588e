# Apply on the salt-master's own minion: the reactor configuration of cloudify_ha.
{%- set tplroot = tpldir.split("/")[0] %}

cloudify_ha-reactor-master-config:
  file.managed:
    - name: {{ salt["config.get"]("cloudify_ha:reactor:config_file", "/etc/salt/master.d/cloudify_ha_reactor.conf") }}
    - source: salt://{{ tplroot }}/reactor/master.conf
    - mode: "0644"
    - makedirs: true
