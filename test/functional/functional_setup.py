"""What the functional tests and their conftest share: the repository and its example pillar."""

import pathlib

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
MINION_ID = "cfy-mgr1.example.com"  # pillar.example's first manager


def example_pillar():
    """pillar.example's `cloudify_ha` mapping."""
    with open(REPO / "pillar.example", encoding="utf-8") as fh:
        return yaml.safe_load(fh)["cloudify_ha"]


def secrets_of(pillar):
    cluster = pillar["clusters"]["prod"]
    return [cluster["admin"]["password"], cluster["database"]["password"],
            cluster["database"]["postgres_password"]]
