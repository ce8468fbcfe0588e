"""The reactor's SLS (cloudify_ha/reactor/rejoin.sls) as the master's reactor compiles it: Salt's
renderers, then ``salt.state.Compiler``'s verify_high and compile_high_data (what
``salt.utils.reactor.Reactor.reactions`` runs), with an event's ``tag`` and ``data``."""

import pytest
import salt.loader
import salt.state
import salt.utils.args
import salt.utils.data

from render_setup import opts_for, render_on_master

SLS = "cloudify_ha.reactor.rejoin"
# the beacon's event data is written by the minion, Salt does not check its `id`: a compromised
# minion chooses it
HOSTILE = [
    "x\n  evil: true",
    "*",
    # YAML that survives both places the id lands: a second reaction, local.cmd.run on every
    # minion, next to the rejoin
    "'x: {}\nevil:\n  local.cmd.run: [{tgt: \"*\"}, {arg: [reboot]}]\nz'",
]


@pytest.fixture(scope="module")
def reactor(example_opts, host_grains):
    opts = opts_for(example_opts, host_grains, "saltmaster_master")
    state = salt.state.State(opts)
    compiler = salt.state.Compiler(opts, salt.loader.render(opts, state.functions))
    yield state, compiler, salt.loader.runner(opts)
    if getattr(state, "file_client", None) is not None:
        state.file_client.destroy()


def reactions(reactor, tag, data):
    """The low chunks the reactor would run for this event (it runs none on an error)."""
    state, compiler, _ = reactor
    high = render_on_master(state, SLS, {}, tag=tag, data=data)
    errors = compiler.verify_high(high)
    assert errors == []
    compiled = compiler.compile_high_data(high)
    chunks, errors = compiled if isinstance(compiled, tuple) else (compiled, [])
    assert errors == []
    return [{k: v for k, v in c.items() if not k.startswith("__") and k != "order"}
            for c in chunks]


def rejoin_of(node):
    return {"state": "runner", "fun": "cloudify_ha.rejoin",
            "name": f"cloudify_ha-reactor-rejoin-{node}", "args": [{"node": node},
                                                                   {"cached": True}]}


def test_a_managers_start_event_runs_the_rejoin_runner_for_that_minion(reactor):
    data = {"id": "mgr2", "cmd": "_minion_event", "data": "Minion mgr2 started",
            "tag": "salt/minion/mgr2/start", "_stamp": "2026-12-02T18:00:00.000000"}
    assert reactions(reactor, "salt/minion/mgr2/start", data) == [rejoin_of("mgr2")]


def test_a_beacon_event_runs_the_same_rejoin(reactor):
    data = {"id": "mgr2", "state": "offline", "_stamp": "2026-12-02T18:00:00.000000"}
    assert reactions(reactor, "salt/beacon/mgr2/cloudify_ha/", data) == [rejoin_of("mgr2")]


def test_an_event_without_an_id_runs_nothing(reactor):
    assert reactions(reactor, "salt/beacon/mgr2/cloudify_ha/", {"state": "offline"}) == []


def test_the_runner_takes_the_node_the_reaction_passes(reactor):
    # the reactor passes a runner's `args` dictlist as its keyword arguments
    runners = reactor[2]
    kwargs = salt.utils.data.repack_dictlist(rejoin_of("mgr2")["args"])
    call = salt.utils.args.format_call(runners["cloudify_ha.rejoin"], kwargs)
    assert (call["args"], call["kwargs"]) == (["mgr2"], {"force": False, "cached": True})


@pytest.mark.parametrize("minion_id", HOSTILE + ["mgr2\n", "mgr\u0662", "../mgr2", "", 7, None,
                                                ["mgr2"], {"mgr2": 1}])
def test_a_hostile_id_in_the_event_data_makes_no_reaction(reactor, minion_id):
    for tag in (f"salt/beacon/{minion_id}/cloudify_ha/", "salt/beacon/x/cloudify_ha/"):
        assert reactions(reactor, tag, {"id": minion_id}) == []


@pytest.mark.parametrize("tag", ["salt/beacon/mgr3/cloudify_ha/", "salt/minion/mgr3/start",
                                 "salt/beacon/mgr2/other/", "salt/auth"])
def test_an_id_that_the_tag_does_not_name_makes_no_reaction(reactor, tag):
    """An event whose tag is not the start or beacon tag of the id it carries is not ours."""
    assert reactions(reactor, tag, {"id": "mgr2"}) == []


def test_payload_data_is_not_a_mapping(reactor):
    assert reactions(reactor, "salt/beacon/mgr2/cloudify_ha/", ["id", "mgr2"]) == []
