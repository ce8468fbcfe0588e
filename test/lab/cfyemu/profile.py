"""CLI profiles on disk: ~/.cloudify/profiles/<name>/context, a YAML document tagged
!CloudifyProfileContext, as cloudify-cli 4.6 writes it (no chmod: the umask decides)."""

import os
from pathlib import Path

import yaml

TAG = "!CloudifyProfileContext"


class ProfileContext(dict):
    pass


def _represent(dumper, data):
    return dumper.represent_mapping(TAG, dict(data))


def _construct(loader, node):
    return ProfileContext(loader.construct_mapping(node, deep=True))


yaml.SafeDumper.add_representer(ProfileContext, _represent)
yaml.SafeLoader.add_constructor(TAG, _construct)


def home():
    return Path(os.environ.get("HOME") or "/root") / ".cloudify"


def profile_path(name):
    return home() / "profiles" / name / "context"


def new(name, manager_ip, username=None, password=None, tenant=None, rest_port=80,
        rest_protocol="http", rest_certificate=None):
    return ProfileContext({
        "_profile_name": name,
        "manager_ip": manager_ip,
        "ssh_key": None,
        "_ssh_port": None,
        "ssh_user": None,
        "provider_context": {},
        "manager_username": username,
        "manager_password": password,
        "manager_tenant": tenant,
        "rest_port": rest_port,
        "rest_protocol": rest_protocol,
        "rest_certificate": rest_certificate,
        "kerberos_env": False,
        "_cluster": [],
    })


def load(name):
    path = profile_path(name)
    if not path.exists():
        return None
    data = yaml.safe_load(path.read_text())
    return ProfileContext(data or {})


def save(ctx):
    path = profile_path(ctx["_profile_name"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(ctx, fh, default_flow_style=False)


def active_name():
    try:
        return (home() / "active.profile").read_text().strip() or None
    except OSError:
        return None


def set_active(name):
    home().mkdir(parents=True, exist_ok=True)
    (home() / "active.profile").write_text(name)
