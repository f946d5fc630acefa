"""The static configurator: exact search against brute force, the baselines on hand-made cases, the latency
accounting, infeasible requests, transfer sizes and table building."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from edgent.errors import ConfigError, DataError
from edgent.model.chain import MultiExitChain
from edgent.plan import (ExitCosts, LatencyTable, Link, OverheadModel, Planner, build_latency_table, oracle_plan,
                         payload_bytes, plan, predict_latency, table_from_measurements, transfer_sizes)

from .conftest import FlopsPredictor, hand_table

NO_OVERHEAD = OverheadModel(0.0, 0.0)


# ---------------------------------------------------------------- brute force, written independently of Planner
def brute_total(e: ExitCosts, p: int, link: Link, ov: OverheadModel, queue_ms: float) -> float:
    """Latency of exit ``e`` cut at ``p``, summed unit by unit."""
    total = sum(e.device_unit_ms[:p]) + sum(e.edge_unit_ms[p:])
    total += (e.device_part_ms if p > 0 else 0.0) + (e.edge_part_ms if p < e.num_units else 0.0)
    if p < e.num_units:
        total += e.transfer_bytes[p] * 8 / link.uplink_bps * 1000 + e.result_bytes * 8 / link.downlink_bps * 1000
        total += link.rtt_ms + queue_ms + 2 * ov.fixed_ms_per_message
        total += ov.per_byte_ms * (e.transfer_bytes[p] + e.result_bytes)
    return total


def brute_candidates(table: LatencyTable, policy: str) -> list[tuple[int, int]]:
    main = table.exits[-1]
    if policy == "edgent":
        return [(e.exit, p) for e in table.exits for p in range(e.num_units + 1)]
    if policy == "device":
        return [(main.exit, main.num_units)]
    if policy == "edge":
        return [(main.exit, 0)]
    if policy == "neurosurgeon":
        return [(main.exit, p) for p in range(main.num_units + 1)]
    if policy == "rightsize":
        return [(e.exit, e.num_units) for e in table.exits]
    raise AssertionError(policy)


def brute_plan(table, link, deadline_ms, policy, ov, queue_ms):
    """(feasible, best accuracy, best total, all pairs with their totals)."""
    totals = {(x, p): brute_total(table.exits[x - 1], p, link, ov, queue_ms)
              for x, p in brute_candidates(table, policy)}
    feasible = {k: v for k, v in totals.items() if v <= deadline_ms}
    if feasible:
        acc = max(table.exits[x - 1].accuracy for x, _ in feasible)
        best = min(v for (x, _), v in feasible.items() if table.exits[x - 1].accuracy == acc)
        return True, acc, best, totals
    best = min(totals.values())
    return False, None, best, totals


@st.composite
def tables(draw):
    n_exits = draw(st.integers(1, 5))
    times = st.floats(0.0, 200.0, allow_nan=False)
    exits = []
    for i in range(1, n_exits + 1):
        n = draw(st.integers(1, 12))
        exits.append(ExitCosts(
            exit=i, accuracy=draw(st.sampled_from([0.5, 0.6, 0.7, 0.8])),
            device_unit_ms=tuple(draw(st.lists(times, min_size=n, max_size=n))),
            edge_unit_ms=tuple(draw(st.lists(times, min_size=n, max_size=n))),
            transfer_bytes=(*draw(st.lists(st.integers(0, 200_000), min_size=n, max_size=n)), 0),
            result_bytes=draw(st.integers(0, 4000)),
            device_part_ms=draw(st.sampled_from([0.0, 0.5, 3.0])), edge_part_ms=draw(st.sampled_from([0.0, 0.1])),
        ))
    return LatencyTable("random", tuple(exits), draw(st.sampled_from(["float32", "float16", "int8"])))


links = st.builds(Link, st.floats(1e3, 1e8), st.floats(1e3, 1e8), st.floats(0.0, 100.0))
overheads = st.builds(OverheadModel, st.floats(0.0, 5.0), st.floats(0.0, 1e-4))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=tables(), link=links, deadline=st.floats(1.0, 3000.0), ov=overheads, queue=st.floats(0.0, 50.0),
       policy=st.sampled_from(["edgent", "device", "edge", "neurosurgeon", "rightsize"]))
def test_planner_matches_brute_force(table, link, deadline, ov, queue, policy):
    got = Planner(table, ov).plan(link, deadline, policy, edge_queue_ms=queue)
    feasible, acc, best, totals = brute_plan(table, link, deadline, policy, ov, queue)
    # skip requests whose answer hinges on rounding at the deadline
    assume(all(abs(v - deadline) > 1e-6 * max(1.0, deadline) for v in totals.values()))
    assert (got.exit, got.partition) in totals, "the plan left the policy's search space"
    assert got.feasible == feasible
    assert got.fallback == (not feasible)
    assert got.predicted_ms == pytest.approx(totals[(got.exit, got.partition)], rel=1e-9, abs=1e-9)
    assert got.predicted_ms == pytest.approx(best, rel=1e-9, abs=1e-9)
    assert got.breakdown.total_ms == got.predicted_ms
    if feasible:
        assert got.accuracy == acc and got.predicted_ms <= deadline and got.reason == ""
        # a unique best pair must be the one chosen
        winners = [k for k, v in totals.items()
                   if table.exits[k[0] - 1].accuracy == acc and abs(v - best) <= 1e-9 * max(1.0, best)]
        if len(winners) == 1:
            assert (got.exit, got.partition) == winners[0]
    else:
        assert got.predicted_ms > deadline and "deadline" in got.reason
    assert got.accuracy == table.exits[got.exit - 1].accuracy


@settings(max_examples=100, deadline=None)
@given(table=tables(), link=links, ov=overheads, queue=st.floats(0.0, 50.0))
def test_totals_and_predict_match_brute_force(table, link, ov, queue):
    planner = Planner(table, ov)
    for (x, p), total in zip(planner.pairs, planner.totals(link, edge_queue_ms=queue)):
        want = brute_total(table.exits[x - 1], p, link, ov, queue)
        assert total == pytest.approx(want, rel=1e-9, abs=1e-9)
        assert planner.predict(link, x, p, edge_queue_ms=queue).total_ms == pytest.approx(want, rel=1e-9, abs=1e-9)
    assert len(planner.pairs) == table.num_pairs


# ---------------------------------------------------------------- hand-made cases with known answers
LINK_80K = Link(80_000, 80_000, 0.0)


@pytest.mark.parametrize("deadline, policy, want", [
    (160, "edgent", (2, 1, True, 152)),
    (160, "neurosurgeon", (2, 1, True, 152)),
    (160, "device", (2, 3, False, 300)),
    (160, "edge", (2, 0, False, 203)),
    (160, "rightsize", (1, 2, True, 120)),
    (130, "edgent", (1, 2, True, 120)),  # the full model cannot make it: exit early, on the device
    (130, "neurosurgeon", (2, 1, False, 152)),
    (250, "edge", (2, 0, True, 203)),
    (350, "device", (2, 3, True, 300)),
    (350, "rightsize", (2, 3, True, 300)),
    (100, "edgent", (1, 2, False, 120)),  # nothing fits: the fastest configuration overall
    (100, "rightsize", (1, 2, False, 120)),
])
def test_baselines_on_hand_made_case(deadline, policy, want):
    got = plan(hand_table(), LINK_80K, deadline, policy, overhead=NO_OVERHEAD)
    assert (got.exit, got.partition, got.feasible) == want[:3]
    assert got.predicted_ms == pytest.approx(want[3])
    assert got.policy == policy
    assert got.accuracy == (0.8 if got.exit == 2 else 0.6)


def test_infeasible_plan_says_why_and_falls_back_to_fastest():
    got = plan(hand_table(), LINK_80K, 100, overhead=NO_OVERHEAD)
    assert not got.feasible and got.fallback
    assert (got.exit, got.partition) == (1, 2)
    assert "120.0" in got.reason and "100.0" in got.reason  # the fastest plan's latency against the deadline
    assert "bottleneck" in got.reason and "device" in got.reason
    slow_link = Link(8_000, 8_000, 0.0)  # 1 byte/ms: now the fastest is still device-only exit 1
    got = plan(hand_table(), slow_link, 50, "edge", overhead=NO_OVERHEAD)
    assert "upload" in got.reason and "2000.0" in got.reason  # the bottleneck and its time
    assert got.to_json()["reason"] == got.reason and got.to_json()["fallback"] is True


def test_oracle_plans_on_measured_times():
    predicted = hand_table()
    measured = hand_table(main_device_ms=(10.0, 10.0, 10.0))  # the device is really faster than predicted
    assert (plan(predicted, LINK_80K, 130, overhead=NO_OVERHEAD).exit) == 1
    got = oracle_plan(measured, LINK_80K, 130, overhead=NO_OVERHEAD)
    assert (got.exit, got.partition, got.policy, got.feasible) == (2, 3, "oracle", True)
    assert got.predicted_ms == pytest.approx(30.0)


def test_equal_accuracy_prefers_faster_exit():
    table = LatencyTable("tie", (
        ExitCosts(1, 0.7, (50.0,), (1.0,), (1000, 0), 0),
        ExitCosts(2, 0.7, (30.0,), (1.0,), (1000, 0), 0),
        ExitCosts(3, 0.6, (5.0,), (1.0,), (1000, 0), 0),
    ))
    got = plan(table, LINK_80K, 100, overhead=NO_OVERHEAD)
    assert (got.exit, got.partition) == (2, 1)


def test_breakdown_counts_every_cost():
    table = LatencyTable("acc", (ExitCosts(1, 0.9, (10.0, 20.0), (1.0, 2.0), (300, 100, 0), 50),))
    link = Link(8_000, 16_000, 20.0)  # up 1 byte/ms, down 2 bytes/ms
    ov = OverheadModel(0.5, 0.01)
    b = predict_latency(table, link, 1, 1, edge_queue_ms=5.0, overhead=ov)
    assert (b.device_ms, b.edge_ms, b.upload_ms, b.download_ms, b.rtt_ms, b.queue_ms) == (10.0, 2.0, 100.0, 25.0,
                                                                                         20.0, 5.0)
    assert b.serialization_ms == pytest.approx(2 * 0.5 + 0.01 * 150)
    assert b.total_ms == pytest.approx(10 + 2 + 100 + 25 + 20 + 5 + 2.5)
    local = predict_latency(table, link, 1, 2, edge_queue_ms=5.0, overhead=ov)  # device only: nothing crosses
    assert local == type(b)(30.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 30.0)
    edge_only = predict_latency(table, link, 1, 0, edge_queue_ms=5.0, overhead=ov)
    assert edge_only.device_ms == 0.0 and edge_only.edge_ms == 3.0 and edge_only.upload_ms == 300.0


def test_queueing_delay_moves_work_to_the_device():
    table = LatencyTable("q", (ExitCosts(1, 0.9, (40.0,), (1.0,), (80, 0), 0),))
    assert plan(table, LINK_80K, 100, overhead=NO_OVERHEAD).partition == 0  # 8 ms + 1 ms on the edge
    assert plan(table, LINK_80K, 100, edge_queue_ms=50.0, overhead=NO_OVERHEAD).partition == 1


@pytest.mark.parametrize("kwargs, match", [
    ({"deadline_ms": 0}, "deadline"),
    ({"deadline_ms": 100, "policy": "bogus"}, "unknown policy"),
    ({"deadline_ms": 100, "edge_queue_ms": -1}, "queueing"),
])
def test_plan_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        plan(hand_table(), LINK_80K, **kwargs)


def test_predict_rejects_bad_points():
    with pytest.raises(ConfigError, match="exit 7 is out of range"):
        predict_latency(hand_table(), LINK_80K, 7, 0)
    with pytest.raises(ConfigError, match="partition point 4 is out of range"):
        predict_latency(hand_table(), LINK_80K, 2, 4)


@pytest.mark.parametrize("kwargs, match", [
    ({"uplink_bps": 0, "downlink_bps": 1e6}, "uplink_bps"),
    ({"uplink_bps": 1e6, "downlink_bps": float("nan")}, "downlink_bps"),
    ({"uplink_bps": 1e6, "downlink_bps": 1e6, "rtt_ms": -1}, "rtt_ms"),
])
def test_link_rejects_bad_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Link(**kwargs)


def test_table_validation():
    with pytest.raises(ConfigError, match="transfer sizes"):
        ExitCosts(1, 0.5, (1.0,), (1.0,), (10,), 0)
    with pytest.raises(ConfigError, match="device-only point"):
        ExitCosts(1, 0.5, (1.0,), (1.0,), (10, 5), 0)
    with pytest.raises(ConfigError, match="edge unit times"):
        ExitCosts(1, 0.5, (1.0, 2.0), (1.0,), (10, 5, 0), 0)
    with pytest.raises(ConfigError, match="accuracy"):
        ExitCosts(1, 1.5, (1.0,), (1.0,), (10, 0), 0)
    with pytest.raises(ConfigError, match="in order"):
        LatencyTable("bad", (ExitCosts(2, 0.5, (1.0,), (1.0,), (10, 0), 0),))
    with pytest.raises(ConfigError, match="unknown codec"):
        LatencyTable("bad", (ExitCosts(1, 0.5, (1.0,), (1.0,), (10, 0), 0),), codec="zip")


def test_table_json_round_trip(tmp_path):
    t = hand_table()
    assert LatencyTable.load(t.save(tmp_path / "t.json")) == t
    (tmp_path / "bad.json").write_text('{"model": "x"}')
    with pytest.raises(DataError, match="malformed"):
        LatencyTable.load(tmp_path / "bad.json")
    with pytest.raises(DataError, match="does not exist"):
        LatencyTable.load(tmp_path / "missing.json")


# ---------------------------------------------------------------- transfer sizes and table building
@pytest.mark.parametrize("codec, want", [("float32", 4 * 384), ("float16", 2 * 384), ("int8", 384 + 8)])
def test_payload_bytes(codec, want):
    assert payload_bytes((6, 8, 8), codec) == want


def test_payload_bytes_rejects_unknown_codec():
    with pytest.raises(ConfigError, match="known codecs"):
        payload_bytes((3,), "bfloat8")


def tiny_chain() -> MultiExitChain:
    trunk = [("conv", nn.Conv2d(3, 4, 3, padding=1)), ("relu", nn.ReLU()), ("pool", nn.MaxPool2d(2)),
             ("flat", nn.Flatten()), ("fc", nn.Linear(4 * 4 * 4, 10))]
    branch = [("bflat", nn.Flatten()), ("bfc", nn.Linear(4 * 8 * 8, 10))]
    return MultiExitChain("tiny", trunk, [(2, branch)], (3, 8, 8), 10).eval()


def test_build_latency_table_from_chain_and_predictors():
    from edgent.model.describe import describe_chain

    chain = tiny_chain()
    dev, edge = FlopsPredictor(100.0, 0.5), FlopsPredictor(1.0, 0.01)
    t = build_latency_table(chain, [0.4, 0.6], dev, edge, "float16")
    assert [e.num_units for e in t.exits] == [4, 5] and t.codec == "float16" and t.model == "tiny"
    units = describe_chain(chain, 2)
    assert t.exits[1].device_unit_ms == tuple(u.flops / 1e6 * 100.0 + 0.5 for u in units)
    assert t.exits[1].edge_unit_ms == tuple(u.flops / 1e6 + 0.01 for u in units)
    # point 0: uint8 pixels; then float16 tensors; device only: nothing
    assert t.exits[1].transfer_bytes == (3 * 8 * 8, 2 * 4 * 64, 2 * 4 * 64, 2 * 4 * 16, 2 * 64, 0)
    assert t.exits[0].transfer_bytes == (192, 2 * 256, 2 * 256, 2 * 256, 0)
    assert t.exits[1].result_bytes == 40 and [e.accuracy for e in t.exits] == [0.4, 0.6]
    with pytest.raises(ConfigError, match="2 exits but 1 accuracies"):
        build_latency_table(chain, [0.5], dev, edge)


def test_transfer_sizes_of_alexnet():
    from edgent.model.zoo import load_model

    chain = load_model("alexnet-cifar10", pretrained=False)
    sizes = transfer_sizes(chain, 5, "float32")
    assert sizes[0] == 3 * 32 * 32 and sizes[-1] == 0 and len(sizes) == 23
    assert sizes[1] == 4 * math.prod(chain.unit_input_shape(5, 1))
    assert transfer_sizes(chain, 5, "int8")[1] == math.prod(chain.unit_input_shape(5, 1)) + 8
    assert transfer_sizes(chain, 5, "float32", input_bytes=12288)[0] == 12288


def test_table_from_measurements():
    chain = tiny_chain()
    t = table_from_measurements(chain, [0.4, 0.6], [[1, 2, 3, 4], [1, 2, 3, 4, 5]], [[0.1] * 4, [0.1] * 5])
    assert t.exits[1].device_unit_ms == (1.0, 2.0, 3.0, 4.0, 5.0)
    assert t.exits[1].transfer_bytes == transfer_sizes(chain, 2)
    with pytest.raises(ConfigError, match="exit 2 has 5 units"):
        table_from_measurements(chain, [0.4, 0.6], [[1, 2, 3, 4], [1, 2]], [[0.1] * 4, [0.1] * 2])


class PartPredictor(FlopsPredictor):
    """A fake latency model that also charges a constant per part (one ``run_device``/``run_edge`` call)."""

    def __init__(self, ms_per_mflop: float, const_ms: float, part_ms: float) -> None:
        super().__init__(ms_per_mflop, const_ms)
        self.part_ms = part_ms

    def predict_units_ms(self, units) -> float:
        return sum(self.predict_unit_ms(u) for u in units) + self.part_ms if units else 0.0


def test_part_call_overhead_is_charged_once_per_non_empty_part():
    t = build_latency_table(tiny_chain(), [0.4, 0.6], PartPredictor(100.0, 0.5, 2.0), PartPredictor(1.0, 0.0, 0.3))
    e = t.exits[1]
    assert e.device_part_ms == pytest.approx(2.0) and e.edge_part_ms == pytest.approx(0.3)
    link = Link(1e6, 1e6)
    dev_prep, edge_prep = t.device_preprocess_ms, t.edge_preprocess_ms
    assert dev_prep > 0.5 and edge_prep >= 0.0  # four elementwise passes, each >= the fake's 0.5 ms constant
    edge_only = predict_latency(t, link, 2, 0, overhead=NO_OVERHEAD)
    assert edge_only.device_ms == 0.0 and edge_only.edge_ms == pytest.approx(sum(e.edge_unit_ms) + 0.3 + edge_prep)
    device_only = predict_latency(t, link, 2, 5, overhead=NO_OVERHEAD)
    assert device_only.edge_ms == 0.0
    assert device_only.device_ms == pytest.approx(sum(e.device_unit_ms) + 2.0 + dev_prep)
    mid = predict_latency(t, link, 2, 2, overhead=NO_OVERHEAD)
    assert mid.device_ms == pytest.approx(sum(e.device_unit_ms[:2]) + 2.0 + dev_prep)
    assert mid.edge_ms == pytest.approx(sum(e.edge_unit_ms[2:]) + 0.3)


class FactorPredictor(FlopsPredictor):
    """A fake part model that is additive over units but cheaper than the units alone (factor 0.8)."""

    def part_terms_ms(self, units):
        return tuple(0.8 * self.predict_unit_ms(u) for u in units), 1.5

    def predict_units_ms(self, units) -> float:
        terms, const = self.part_terms_ms(units)
        return sum(terms) + const if units else 0.0


def test_table_prices_every_part_as_the_part_model_does():
    from edgent.model.describe import describe_chain

    device, edge = FactorPredictor(100.0, 0.5), FactorPredictor(1.0, 0.1)
    chain = tiny_chain()
    t = build_latency_table(chain, [0.4, 0.6], device, edge)
    units = describe_chain(chain, 2)
    link = Link(1e6, 1e6)
    for p in range(len(units) + 1):
        got = predict_latency(t, link, 2, p, overhead=NO_OVERHEAD)
        dev = device.predict_units_ms(units[:p]) + (t.device_preprocess_ms if p > 0 else 0.0)  # raw input
        assert got.device_ms == pytest.approx(dev)
        edge_want = edge.predict_units_ms(units[p:]) + (t.edge_preprocess_ms if p == 0 else 0.0)
        assert got.edge_ms == pytest.approx(edge_want)


def test_preprocessing_runs_where_the_input_is_first_computed_on():
    """Raw pixels at point 0: the edge preprocesses. The model's float input at point 0: the device does, and
    pays only the preprocessing (the part's constant cost comes with units to run). Either way the device
    preprocesses whenever it runs units."""
    t = build_latency_table(tiny_chain(), [0.4, 0.6], PartPredictor(100.0, 0.5, 2.0), PartPredictor(1.0, 0.1, 0.3))
    raw = predict_latency(t, Link(1e6, 1e6), 2, 0, overhead=NO_OVERHEAD)
    cooked_table = replace(t, raw_input=False)
    cooked = predict_latency(cooked_table, Link(1e6, 1e6), 2, 0, overhead=NO_OVERHEAD)
    assert raw.device_ms == 0.0 and cooked.device_ms == pytest.approx(t.device_preprocess_ms)
    assert raw.edge_ms - cooked.edge_ms == pytest.approx(t.edge_preprocess_ms) and t.edge_preprocess_ms > 0
    for table in (t, cooked_table):  # survives a save and load
        assert LatencyTable.from_json(json.loads(json.dumps(table.to_json()))) == table
    with pytest.raises(ConfigError, match="device_preprocess_ms"):
        replace(t, device_preprocess_ms=-1.0)


def test_table_of_chain_with_multi_layer_units():
    """Units that hold several layers (as in converted resnet18) are described layer by layer and timed."""
    trunk = [("block", nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())),
             ("head", nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 10)))]
    chain = MultiExitChain("blocks", trunk, [], (3, 8, 8), 10).eval()
    t = build_latency_table(chain, [0.5], FlopsPredictor(1.0, 0.0), FlopsPredictor(1.0, 0.0))
    from edgent.model.describe import describe_chain

    units = describe_chain(chain)
    assert [len(u.layers) for u in units] == [3, 2]
    assert units[0].layers[0].flops > 0 and t.exits[0].device_unit_ms[0] == pytest.approx(units[0].flops / 1e6)


def test_one_device_call_pricing_for_planner_fallback_and_benchmarks():
    """Every caller prices a device call through ``LatencyTable.device_call_ms``: the planner's per-pair device
    time, the client's fallback budget (the whole exit), and the hand-derived sum of units, call constant and
    preprocessing."""
    t = build_latency_table(tiny_chain(), [0.4, 0.6], FlopsPredictor(100.0, 0.5), FlopsPredictor(1.0, 0.0))
    t = replace(t, exits=tuple(replace(e, device_part_ms=0.7) for e in t.exits), device_preprocess_ms=0.3)
    planner = Planner(t)
    for j, (exit, p) in enumerate(planner.pairs):
        e = t.exit_costs(exit)
        by_hand = sum(e.device_unit_ms[:p]) + (0.7 + 0.3 if p > 0 else 0.0)
        assert planner.device_ms[j] == pytest.approx(by_hand)
        assert t.device_call_ms(exit, p) == pytest.approx(by_hand)
    assert t.fallback_device_ms() == {e.exit: pytest.approx(sum(e.device_unit_ms) + 1.0) for e in t.exits}
    # a table whose point 0 sends the model's input: the device preprocesses even at point 0
    model_in = replace(t, raw_input=False)
    assert model_in.device_call_ms(1, 0) == pytest.approx(0.3)
    with pytest.raises(ConfigError, match="out of range"):
        t.device_call_ms(1, t.exits[0].num_units + 1)


def test_compute_calibration_learns_each_side_from_past_requests_only():
    from edgent.plan.calibration import ComputeCalibration

    cal = ComputeCalibration(window=4, min_samples=2, min_predicted_ms=1.0)
    assert cal.factor("device") == 1.0 and cal.predict_total_ms(100.0, 60.0, 10.0) == 100.0
    assert cal.observe("device", 50.0, 75.0)  # the host runs 1.5x slower than the fit
    assert cal.factor("device") == 1.0  # one ratio is not enough
    assert cal.observe("device", 20.0, 30.0)
    assert cal.factor("device") == pytest.approx(1.5) and cal.factor("edge") == 1.0  # each side on its own
    assert cal.predict_total_ms(100.0, 60.0, 10.0) == pytest.approx(130.0)
    # parts predicted shorter than min_predicted_ms, and nonsense, teach nothing
    for p, m in ((0.5, 5.0), (10.0, float("nan")), (10.0, 0.0), (float("inf"), 3.0)):
        assert not cal.observe("device", p, m)
    assert cal.factor("device") == pytest.approx(1.5)
    for _ in range(4):  # the window forgets: the host sped up again
        cal.observe("device", 10.0, 9.0)
    assert cal.factor("device") == pytest.approx(0.9)
    cal.observe("edge", 4.0, 6.0)
    cal.observe("edge", 4.0, 2.0)
    assert cal.factor("edge") == pytest.approx(1.0)  # the median of 1.5 and 0.5
    doc = cal.to_json()
    assert doc["samples"] == {"device": 4, "edge": 2} and doc["factor"]["device"] == pytest.approx(0.9)
    with pytest.raises(ConfigError, match="side"):
        cal.observe("cloud", 1.0, 1.0)
    # per configuration: its own ratios once it has enough, else the side's
    cal.observe("device", 10.0, 5.0, key=(1, 0))
    assert cal.factor("device", (1, 0)) == pytest.approx(cal.factor("device"))  # one ratio: the side's
    cal.observe("device", 10.0, 5.0, key=(1, 0))
    assert cal.factor("device", (1, 0)) == pytest.approx(0.5)
    assert cal.factor("device", (5, 22)) == pytest.approx(cal.factor("device"))  # never seen: the side's
    assert cal.predict_total_ms(100.0, 60.0, 0.0, key=(1, 0)) == pytest.approx(70.0)
    for bad in ({"window": 0}, {"min_samples": 5, "window": 4}, {"min_predicted_ms": float("nan")}):
        with pytest.raises(ConfigError, match="calibration"):
            ComputeCalibration(**bad)


def test_latency_table_prices_the_timed_preprocessing_of_the_models_own_kind():
    class Timed(FlopsPredictor):
        def predict_preprocess_ms(self, name, input_shape):
            return {"cifar10": 7.0, "imagenet": 3.0}.get(name)

    chain = tiny_chain()  # "tiny": not a CIFAR-10 model, so ImageNet statistics
    t = build_latency_table(chain, [0.4, 0.6], Timed(1.0, 0.0), FlopsPredictor(1.0, 0.0))
    assert t.device_preprocess_ms == 3.0
    assert build_latency_table(chain, [0.4, 0.6], Timed(1.0, 0.0), Timed(1.0, 0.0),
                               preprocess="cifar10").edge_preprocess_ms == 7.0
    # no timing of the function: the elementwise passes, priced like any unit (4 passes over 192 elements)
    assert 0 < t.edge_preprocess_ms < 1.0
