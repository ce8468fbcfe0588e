"""An emulated Cloudify Manager 4.5.5/4.6 (installer, CLI, REST service, cluster) for the lab.

Shipped to lab hosts inside the `cloudify-manager-install` and `cloudify-cli` .deb packages that
test/lab/emulator.py builds; see test/lab/cfyemu/README.md for every behaviour and its source.
"""
