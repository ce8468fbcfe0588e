# Test pillar for the lab master. The first pillar root is per run (written by test/conftest.py:
# lab.sls with this run's addresses); this directory is the second.
base:
  '*':
    - lab
