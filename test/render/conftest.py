"""Fixtures of the render tests: a formula file root, the two pillars, the host's grains.

Only fixtures: nothing here applies outside test/render.
"""

import shutil

import pytest
import salt.loader
import salt.state
import yaml

from render_setup import LAB_FACTS, MASTER_ID, REPO, Minion, base_opts, formula_root, opts_for


@pytest.fixture(scope="session")
def render_root(tmp_path_factory):
    return tmp_path_factory.mktemp("render")


@pytest.fixture(scope="session")
def file_root(render_root):
    return formula_root(render_root)


@pytest.fixture(scope="session")
def example_pillar_root(render_root):
    """pillar.example as the only pillar of every minion (and of the master)."""
    root = render_root / "pillar-example"
    root.mkdir()
    (root / "top.sls").write_text(yaml.safe_dump({"base": {"*": ["cloudify_ha"]}}))
    shutil.copy(REPO / "pillar.example", root / "cloudify_ha.sls")
    return root


@pytest.fixture(scope="session")
def lab_pillar_root(render_root):
    """A first pillar root holding a lab.yaml of fixed values, before test/pillar."""
    root = render_root / "pillar-lab"
    root.mkdir()
    (root / "lab.yaml").write_text(yaml.safe_dump(LAB_FACTS))
    return root


@pytest.fixture(scope="session")
def example_opts(render_root, file_root, example_pillar_root):
    return base_opts(render_root, file_root, [example_pillar_root], "unset")


@pytest.fixture(scope="session")
def lab_opts(render_root, file_root, lab_pillar_root):
    return base_opts(render_root, file_root, [lab_pillar_root, REPO / "test" / "pillar"], "unset")


@pytest.fixture(scope="session")
def host_grains(example_opts):
    # read once: the SLS only read `id` and `init` from the grains, which each test sets
    return salt.loader.grains(example_opts)


@pytest.fixture(scope="session")
def minion(example_opts, lab_opts, host_grains):
    """minion(pillar name, minion id, pillar=..., binaries=..., init=..., os_family=...,
    grains=...): a Minion, built once
    per argument set (pillar and loaders take 0.15 s to build) and reused by every test."""
    built = {}
    bases = {"example": example_opts, "lab": lab_opts}

    def get(pillar_name, minion_id, pillar=None, binaries=("nft",), init="systemd", test=False,
            os_family=None, grains=None):
        key = (pillar_name, minion_id, repr(pillar), tuple(sorted(binaries)), init, test,
               os_family, repr(grains))
        if key not in built:
            family = {"os_family": os_family} if os_family else {}
            opts = opts_for(bases[pillar_name], host_grains, minion_id, test=test, init=init,
                            **family, **(grains or {}))
            built[key] = Minion(opts, pillar=pillar, binaries=binaries)
        return built[key]

    yield get
    for each in built.values():
        each.close()


@pytest.fixture(scope="module")
def master(example_opts, host_grains):
    """master(orchestration pillar, modules=True, test=False): the master's State, its pillar
    compiled (pillar.example, the orchestration's pillar merged over it); without the formula's
    modules (a master never synced) when modules is False. Built once per argument set: a
    loader without the formula's modules loads every module looking for them (seconds)."""
    built = {}

    def get(pillar=None, modules=True, test=False):
        key = (repr(pillar), modules, test)
        if key not in built:
            opts = opts_for(example_opts, host_grains, MASTER_ID, test=test)
            if not modules:
                opts.update(module_dirs=[], states_dirs=[], utils_dirs=[])
            built[key] = salt.state.State(opts, pillar_override=pillar)
        return built[key]

    yield get
    for state in built.values():
        # not State.destroy(): 3008's calls FSClient.close(), which FSClient lacks
        client = getattr(state, "file_client", None)
        if client is not None:
            client.destroy()
