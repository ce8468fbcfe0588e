# Test pillar for the lab master. The first pillar root is per run (test/conftest.py writes
# lab.yaml there, and tests may shadow cloudify_ha.sls there); this directory is the second.
base:
  '*':
    - cloudify_ha
