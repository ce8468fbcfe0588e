# The test pillar: pillar.example's shape with this run's lab (lab.yaml is written per run
# into the first pillar root by test/conftest.py: addresses, certificates, passwords).
{%- import_yaml "lab.yaml" as lab %}
{#- each host gets only the secrets its role uses (cloudify_ha_pillar.ROLE_SECRETS): the
    managers all, the CLI host the admin password, every other host (the lb, which is a load
    balancer only in the tests that shadow this file, and the master's own minion) none #}
{%- set minion = grains.get("id") %}
{%- set manager = minion in lab.managers | map(attribute="name") | list %}
{%- set admin_user = manager or minion == "cli" %}
cloudify_ha:
  # the reactor's automatic rejoins run only in the tests about them (they shadow this file)
  reactor:
    enabled: false
  lookup:
    # the lab's hosts are Debian: psql comes from the (already present) client package
    psql_package: postgresql-client-15
  clusters:
    lab:
      leader: mgr1
      managers:
{%- for m in lab.managers %}
        - name: {{ m.name }}
          minion_id: {{ m.name }}
          private_ip: {{ m.ip }}
          public_ip: {{ m.public_ip }}
{%- endfor %}
      admin:
        username: admin
{%- if admin_user %}
        password: {{ lab.passwords.admin }}
{%- endif %}
        tenant: default_tenant
      rest:
        ssl: false
      database:
        host: {{ lab.db_ip }}
        port: 5432
        name: cloudify_db
        username: cloudify
        ca_cert: |
          {{ lab.ca_cert | indent(10) }}
        client_cert: |
          {{ lab.client_cert | indent(10) }}
{%- if manager %}
        password: {{ lab.passwords.db }}
        postgres_password: {{ lab.passwords.postgres }}
        ca_key: |
          {{ lab.ca_key | indent(10) }}
        client_key: |
          {{ lab.client_key | indent(10) }}
{%- endif %}
{%- if manager %}
      # 4.6 premium's license (uploaded on the active node once the cluster runs): managers only
      license: |
        {{ lab.license | indent(8) }}
{%- endif %}
      installer:
        source: {{ lab.packages.manager }}
        # salt:// sources come over the master's own channel: no hash needed
        source_hash: ""
        cli_source: {{ lab.packages.cli }}
        cli_source_hash: ""
      allow_database_reset: false
      replace_stale: false
      # pillar.example's (4.6's timing); the lab's emulator runs faster unless a test says
      waits:
        active_node: 120
        cluster_start: 900
        started: 120
        online: 120
        boot: 300
        offline: 60
        install: 1800
      firewall:
        enabled: true
        backend: auto
        rest_sources: [{{ lab.subnet }}]
        allow_wide_rest_sources: false
        agent_sources: [{{ lab.subnet }}]
        allow_wide_agent_sources: false
      cli_hosts:
        - cli
