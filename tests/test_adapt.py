"""Change detection (BOCPD, Page-Hinkley), the configuration map and the dynamic configurator."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from edgent.adapt.bocpd import BandwidthState, Bocpd, BocpdConfig, log_mbps
from edgent.adapt.config_map import (Candidates, Configuration, ConfigurationMap, MapReward, StateGrid,
                                     build_config_map)
from edgent.adapt.detectors import PageHinkley, make_detector
from edgent.adapt.dynamic import DynamicConfigurator, EwmaEstimator, edge_queue_ms
from edgent.adapt.traces import BandwidthTrace, synthetic_trace
from edgent.errors import ConfigError, DataError
from edgent.plan.link import Link

from .conftest import toy_table


# -- BOCPD -------------------------------------------------------------------------------------------------------

def reference_bocpd(xs, c: BocpdConfig):
    """Untruncated BOCPD written directly from Adams & MacKay (scipy's Student-t), for comparison."""
    probs = np.array([1.0])
    mu, kappa, alpha, beta = (np.array([v]) for v in (c.mu0, c.kappa0, c.alpha0, c.beta0))
    for x in xs:
        scale = np.sqrt(beta * (kappa + 1) / (alpha * kappa))
        pred = stats.t.pdf(x, 2 * alpha, mu, scale)
        grow = probs * pred * (1 - c.hazard)
        cp = (probs * pred).sum() * c.hazard
        probs = np.r_[cp, grow]
        probs /= probs.sum()
        mu_n = (kappa * mu + x) / (kappa + 1)
        beta_n = beta + kappa * (x - mu) ** 2 / (2 * (kappa + 1))
        mu = np.r_[c.mu0, mu_n]
        kappa = np.r_[c.kappa0, kappa + 1]
        alpha = np.r_[c.alpha0, alpha + 0.5]
        beta = np.r_[c.beta0, beta_n]
    return probs, mu, beta


def test_bocpd_matches_the_untruncated_reference():
    rng = np.random.default_rng(0)
    xs = np.r_[rng.normal(0.0, 0.2, 25), rng.normal(1.0, 0.2, 15)]
    cfg = BocpdConfig(max_run=100)
    det = Bocpd(cfg)
    for x in xs:
        det.update_log(float(x))
    ref, mu, _ = reference_bocpd(xs, cfg)
    got = det.run_length_probs
    np.testing.assert_allclose(got[: ref.size], ref, rtol=1e-6, atol=1e-12)
    assert got[ref.size:].sum() == pytest.approx(0.0, abs=1e-12)
    r = det.map_run_length
    assert det.state.mean_log_mbps == pytest.approx(mu[r])


def test_bocpd_truncation_keeps_a_fixed_size_distribution():
    det = Bocpd(BocpdConfig(max_run=20))
    for x in np.random.default_rng(1).normal(0, 0.1, 500):
        det.update_log(float(x))
        p = det.run_length_probs
        assert p.size == 21 and p.sum() == pytest.approx(1.0) and (p >= 0).all()
    assert det.map_run_length == 20  # one long run: the mass sits in the last bin
    st = det.state
    assert abs(st.mean_log_mbps) < 0.1 and 0.05 < st.std_log < 0.2


@pytest.mark.parametrize("name", ["bocpd", "page-hinkley"])
def test_detectors_find_known_change_points(name):
    hits, delays, false = 0, [], 0
    total = 0
    for seed in range(10):
        syn = synthetic_trace([1e6, 3e5, 2e6, 8e5, 1.6e6], 60, 0.15, seed=seed)
        det = make_detector(name)
        found = [i for i, r in enumerate(syn.trace.rate_bps) if det.update(float(r))]
        for cp in syn.change_point_samples:
            near = [f for f in found if cp <= f <= cp + 10]
            if near:
                hits += 1
                delays.append(near[0] - cp)
        false += len([f for f in found if not any(cp <= f <= cp + 10 for cp in syn.change_point_samples)])
        total += len(syn.change_point_samples)
    assert hits == total
    assert np.mean(delays) <= 3.0
    assert false <= 3  # over 3000 samples


def test_bocpd_has_few_false_alarms_on_a_stationary_trace():
    det = Bocpd()
    xs = np.random.default_rng(5).normal(0.3, 0.25, 3000)
    alarms = sum(det.update_log(float(x)) for x in xs)
    assert alarms <= 5  # of 3000 samples; the default hazard expects a change every 100


def test_bocpd_state_follows_the_new_state():
    syn = synthetic_trace([2e6, 5e5], [80, 40], 0.1, seed=2)
    det = Bocpd()
    for r in syn.trace.rate_bps:
        det.update(float(r))
    st = det.state
    assert st.mean_rate_bps == pytest.approx(5e5, rel=0.1)
    assert 30 <= st.run_samples <= 40
    assert st.conservative_rate_bps(1.0) < st.mean_rate_bps


def test_zero_throughput_samples_are_floored():
    det = Bocpd()
    assert det.update(0.0) in (True, False)
    assert math.isfinite(det.state.mean_log_mbps)
    assert log_mbps(0.0) == pytest.approx(math.log(1e-3))


def test_detector_configs_are_checked():
    with pytest.raises(ConfigError):
        BocpdConfig(hazard=0.0)
    with pytest.raises(ConfigError):
        make_detector("cusum")
    ph = PageHinkley()
    ph.update(1e6)
    assert ph.state.std_log > 0  # the prior keeps one sample from claiming zero spread


# -- candidates and the map ----------------------------------------------------------------------------------------

def test_trace_latency_equals_planner_at_constant_rate():
    c = Candidates([toy_table()])
    const = BandwidthTrace("c", np.array([0.0]), np.array([4e5]), 100.0)
    on_trace = c.latency_on_trace(const, np.array([1.0, 7.3]), rtt_ms=20.0)
    planned = c.latency_ms(Link(4e5, 4e5, 20.0))
    np.testing.assert_allclose(on_trace[0], planned, rtol=1e-9)
    np.testing.assert_allclose(on_trace[1], planned, rtol=1e-9)


def test_trace_latency_sees_a_drop_during_the_upload():
    c = Candidates([toy_table()])
    edge_only = c.index(Configuration(2, 0, "float32"))
    tr = BandwidthTrace("drop", np.array([0.0, 1.0]), np.array([1e6, 1e5]), 10.0)
    lat = c.latency_on_trace(tr, np.array([0.0, 0.99]))[:, edge_only]
    assert lat[0] == pytest.approx(24.0 + 2.5 + 0.32, abs=0.05)  # 3000 B up at 1 Mbit/s, edge, 40 B back
    # 10 kbit go at 1 Mbit/s before the drop, the other 14 kbit at 100 kbit/s; the 40 B result too
    assert lat[1] == pytest.approx(10.0 + 140.0 + 2.5 + 3.2, abs=0.05)


def test_state_grid_cells_and_bounds():
    g = StateGrid()
    st = BandwidthState(math.log(0.5), 0.15, 10, 10)
    cell = g.cell(st)
    b = g.describe_cell(cell)
    assert b["rate_lo_bps"] <= 0.5e6 < b["rate_hi_bps"]
    assert b["std_lo"] <= 0.15 < b["std_hi"]
    assert g.cells(np.array([st.mean_log_mbps]), np.array([st.std_log]))[0] == cell
    far = BandwidthState(50.0, 9.0, 1, 1)
    assert 0 <= g.cell(far) < g.n_cells
    g3 = StateGrid(last_edges=(-0.2, 0.2))
    low = BandwidthState(0.0, 0.1, 5, 5, last_log_mbps=-0.5)
    high = BandwidthState(0.0, 0.1, 5, 5, last_log_mbps=0.5)
    assert g3.cell(high) - g3.cell(low) == 2
    assert g3.cells(np.array([0.0, 0.0]), np.array([0.1, 0.1]), np.array([-0.5, 0.5])).tolist() == \
        [g3.cell(low), g3.cell(high)]


def test_reward_is_deadline_then_accuracy_then_throughput():
    r = MapReward()
    count = np.array([100.0])
    acc = np.array([0.7, 0.8, 0.8, 0.9])
    # per cell (one here): met counts and summed speed of 4 candidates over 100 requests
    met = np.array([[100.0, 99.0, 99.0, 85.0]])
    speed = np.array([[50.0, 10.0, 20.0, 90.0]])
    acc_sum = count[:, None] * acc
    assert r.choose(met, acc_sum, speed, w=1e6)[0] == 0  # deadline strictly first
    # at W = 1 one miss is worth 1 accuracy summed over requests: +10 points on 100 requests buys it;
    # candidates 1 and 2 tie on deadline and accuracy, 2 is faster; 3 would lose 14 more misses for 10 points
    assert r.choose(met, acc_sum, speed, w=1.0)[0] == 2
    assert r.choose(np.array([[5.0, 5.0]]), np.array([[3.5, 3.5]]), np.array([[1.0, 2.0]]), w=1.0)[0] == 1


def test_reward_weight_is_the_smallest_meeting_the_target():
    # two cells; in cell 0 the accurate candidate misses 10 of 100, in cell 1 it misses 1 of 100
    met = np.array([[100.0, 90.0], [100.0, 99.0]])
    count = np.array([100.0, 100.0])
    acc = np.array([0.7, 0.8])
    speed = np.zeros((2, 2))
    w, pick, share = MapReward(met_target=0.99).solve(met, count, acc, speed, servable=200.0)
    assert pick.tolist() == [0, 1] and share == pytest.approx(0.995)
    assert w <= 10.0 + 1e-6  # spends the one miss of cell 1 (worth 10 points) but not the ten of cell 0
    w, pick, share = MapReward(met_target=1.0).solve(met, count, acc, speed, servable=200.0)
    assert pick.tolist() == [0, 0] and share == 1.0
    w, pick, _ = MapReward(met_target=0.9).solve(met, count, acc, speed, servable=200.0)
    assert w == 1.0 and pick.tolist() == [0, 1]  # W >= 1: 10 misses are never traded for 10 points


def two_state_traces(n: int = 4) -> list[BandwidthTrace]:
    return [synthetic_trace([3e6, 1.5e5, 3e6, 1.5e5], 50, 0.05, seed=s, name=f"s{s}").trace for s in range(n)]


def test_map_picks_edge_when_fast_and_device_when_slow(tmp_path):
    c = Candidates([toy_table()])
    m = build_config_map(two_state_traces(), c, 100.0, lambda: make_detector("bocpd"), period_s=0.5, rtt_ms=10)
    fast = m.lookup(BandwidthState(math.log(3.0), 0.15, 20, 20))
    slow = m.lookup(BandwidthState(math.log(0.15), 0.15, 20, 20))
    assert fast == Configuration(2, 0, "uint8")  # full accuracy, edge only: the raw pixels the table prices
    assert slow == Configuration(1, 2, "float32")  # shallow exit on the device meets 100 ms
    assert m.lookup(BandwidthState(math.log(40.0), 0.05, 20, 20)) is None  # never seen
    path = m.save(tmp_path / "map.json")
    back = ConfigurationMap.load(path)
    assert back.lookup(BandwidthState(math.log(3.0), 0.15, 20, 20)) == fast
    conf = DynamicConfigurator.from_file(path)  # the map carries its latency table for the fallback
    for _ in range(10):
        conf.observe(3e6)
    assert conf(3e6, 10.0, None) == (2, 0, "uint8")
    assert back.filled_cells == m.filled_cells
    (tmp_path / "bad.json").write_text('{"map_version": 1}')
    with pytest.raises(DataError, match="malformed"):
        ConfigurationMap.load(tmp_path / "bad.json")


# -- the dynamic configurator ---------------------------------------------------------------------------------------

def make_configurator(**kw) -> DynamicConfigurator:
    c = Candidates([toy_table()])
    m = build_config_map(two_state_traces(), c, 100.0, lambda: make_detector("bocpd"), period_s=0.5, rtt_ms=10)
    return DynamicConfigurator(m, c, **kw)


def test_configurator_switches_on_a_change():
    cfg = make_configurator()
    for _ in range(20):
        cfg.observe(3e6)
    assert cfg(3e6, 10.0, None) == (2, 0, "uint8")
    for _ in range(3):
        cfg.observe(1.5e5)
    assert cfg(1.5e5, 10.0, None) == (1, 2, "float32")
    assert cfg.changes >= 1


def test_hysteresis_stops_flapping_on_noise():
    # a state whose mean sits on a bin edge: noise moves the running mean back and forth across it
    grid = StateGrid()
    edge_log = grid.mean_min + 40 * grid.mean_step
    c = Candidates([toy_table()])
    cells = np.full(grid.n_cells, -1)
    lo_cell = grid.cell(BandwidthState(edge_log - 0.01, 0.15, 10, 10))
    hi_cell = grid.cell(BandwidthState(edge_log + 0.01, 0.15, 10, 10))
    cells[lo_cell], cells[hi_cell] = 0, 1
    m = ConfigurationMap("toy", 100.0, grid, [Configuration(1, 2, "float32"), Configuration(2, 0, "float32")],
                         cells, np.zeros(grid.n_cells, dtype=np.int64))
    rng = np.random.default_rng(0)
    xs = edge_log + rng.normal(0, 0.15, 400)
    switches = {}
    for h in (0.0, 0.5):
        cfg = DynamicConfigurator(m, c, hysteresis=h)
        for x in xs:
            cfg.observe(math.exp(x) * 1e6)
            cfg.decide()
        switches[h] = cfg.switches
    assert switches[0.0] >= 3
    assert switches[0.5] <= 1


def test_fallback_and_no_samples_use_the_static_planner():
    cfg = make_configurator()
    with pytest.raises(ConfigError, match="no throughput samples"):
        cfg.decide()
    d = cfg.decide(bandwidth_bps=3e6, rtt_ms=10.0)
    assert d.source == "no-samples" and d.config == Configuration(2, 0, "uint8")
    for _ in range(10):
        cfg.observe(60e6)  # far above anything in the map's traces
    d = cfg.decide(rtt_ms=10.0)
    assert d.source == "fallback" and d.config == Configuration(2, 0, "uint8")


def test_samples_from_calls_and_edge_load():
    cfg = make_configurator(samples_from_calls=True)
    for _ in range(10):
        out = cfg(1.5e5, 10.0, {"queue_length": 2, "in_service": 1, "workers": 1, "mean_compute_ms": 4.0})
    assert out == (1, 2, "float32")
    assert edge_queue_ms({"queue_length": 2, "in_service": 1, "workers": 3, "mean_compute_ms": 6.0}) == 6.0
    assert edge_queue_ms(None) == 0.0 and edge_queue_ms(2.5) == 2.5
    with pytest.raises(ConfigError):
        cfg.observe(-1.0)


def test_ewma():
    e = EwmaEstimator(0.5)
    assert e.update(1.0) == 1.0
    assert e.update(3.0) == 2.0
    with pytest.raises(ConfigError):
        EwmaEstimator(0.0)


def test_smoothing_pools_neighbouring_mean_bins_only_for_seen_cells():
    from edgent.adapt.config_map import _smooth_mean_axis

    g = StateGrid(n_mean=5, std_edges=(0.2,))
    count = np.zeros(g.n_cells)
    count[0 * 2 + 1], count[1 * 2 + 1], count[3 * 2 + 1] = 4, 6, 10  # mean bins 0, 1, 3; spread bin 1
    count[1 * 2 + 0] = 7  # another spread bin: never pooled with spread bin 1
    out = _smooth_mean_axis(count, g, 1)
    assert out[1] == 10 and out[3] == 10 and out[7] == 10  # 4+6, 4+6(+0), 10(+0+0)
    assert out[5] == 0  # mean bin 2 saw nothing itself: stays empty
    assert out[2] == 7
    met = np.stack([count, 2 * count], axis=1)
    np.testing.assert_allclose(_smooth_mean_axis(met, g, 1)[:, 1], 2 * out)


def test_configurator_plugs_into_the_runtime_session():
    from edgent.runtime.session import as_plan

    cfg = make_configurator()
    for _ in range(10):
        cfg.observe(1.5e5)
    plan = as_plan(cfg(None, None, None))  # what DeviceRuntime does with the estimator's values (may be None)
    assert (plan.exit, plan.partition, plan.codec) == (1, 2, "float32")
