# `state.apply cloudify_ha` applies nothing: clusters are built from the master, in order, by
# the orchestration. This says what to run instead.

cloudify_ha-what-to-run:
  test.succeed_without_changes:
    - name: >-
        cloudify_ha builds and keeps clusters from the master: salt-run state.orch
        cloudify_ha.orch (every cluster in pillar; test=True first). On one host:
        cloudify_ha.installer, cloudify_ha.firewall, cloudify_ha.cli, cloudify_ha.profile or
        cloudify_ha.loadbalancer. See the README.
