"""Driving the emulator by hand, as an admin following the docs would (no formula involved)."""

import yaml

from .emulator import MANAGER_PACKAGE


def manager_config(lab, name, admin_password, db_password, join=None, **sections):
    """A 4.6 config.yaml for manager `name` on the lab's external database (SSL, client cert).

    join: the leader's IP for an install-time join (cluster.master_ip, node_name, host_ip).
    Extra keyword arguments are merged into the top-level sections.
    """
    host = lab[name]
    cert, key = lab.client_cert(name)
    config = {
        "manager": {"private_ip": host.ip, "public_ip": host.public_ip,
                    "security": {"admin_username": "admin", "admin_password": admin_password}},
        "postgresql_client": {"host": lab["db"].ip, "username": "cloudify", "password": db_password,
                              "postgres_password": lab.passwords["postgres"], "ssl_enabled": True},
        "ssl_inputs": {"ca_cert_path": str(lab.ca.cert), "ca_key_path": str(lab.ca.key),
                       "postgresql_client_cert_path": str(cert),
                       "postgresql_client_key_path": str(key)},
        "services_to_install": ["queue_service", "composer_service", "manager_service"],
    }
    if join:
        config["cluster"] = {"master_ip": join, "node_name": name, "host_ip": host.ip}
    for section, values in sections.items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
        else:
            config[section] = values
    return config


def write_config(lab, name, config, mode="0600"):
    lab[name].write("/etc/cloudify/config.yaml", yaml.safe_dump(config), mode=mode)


def build_cluster(lab, emulator, names, admin_password, db_password):
    """The seed's procedure, run directly in the hosts: leader install, cluster start, joins."""
    leader = names[0]
    for name in names:
        emulator.install_package(name, MANAGER_PACKAGE)
        join = lab[leader].ip if name != leader else None
        write_config(lab, name, manager_config(lab, name, admin_password, db_password, join=join))
    lab[leader].run(["cfy_manager", "install"])
    lab[leader].run(["cfy", "cluster", "start", "--cluster-node-name", leader,
                     "--cluster-host-ip", lab[leader].ip])
    for name in names[1:]:
        lab[name].run(["cfy_manager", "install"])
