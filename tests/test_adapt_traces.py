"""Bandwidth traces: loaders (with errors that name the line), scaling, slicing and exact transfer times."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgent.adapt.traces import (BandwidthTrace, load_belgium_json, load_cooked, load_mahimahi, load_trace,
                                 load_trace_dir, synthetic_trace)
from edgent.errors import ConfigError, DataError

SHARED_TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces"


def test_cooked_loads_times_and_rates(tmp_path):
    p = tmp_path / "t"
    p.write_text("10.0\t1.0\n10.5\t2.0\n11.5\t0.5\n")
    tr = load_cooked(p)
    assert tr.time_s.tolist() == [0.0, 0.5, 1.5]
    assert tr.rate_bps.tolist() == [1e6, 2e6, 0.5e6]
    assert tr.end_s == pytest.approx(1.5 + 0.75)  # last sample holds for the median step
    assert tr.name == "t"


@pytest.mark.parametrize("body, line, words", [
    ("0 1\n1 2 3\n", 2, "two columns"),
    ("0 1\n1 x\n", 2, "not numbers"),
    ("0 1\n2 1\n1 1\n", 3, "does not increase"),
    ("0 1\n1 -1\n", 2, ">= 0"),
])
def test_cooked_errors_name_the_line(tmp_path, body, line, words):
    p = tmp_path / "bad"
    p.write_text(body)
    with pytest.raises(DataError, match=rf"bad:{line}: .*{words}"):
        load_cooked(p)


def test_belgium_json_loads_durations(tmp_path):
    p = tmp_path / "b.json"
    p.write_text(json.dumps([{"duration_ms": 500, "bandwidth_kbps": 1000, "latency_ms": 20},
                             {"duration_ms": 1000, "bandwidth_kbps": 0, "latency_ms": 20}]))
    tr = load_belgium_json(p)
    assert tr.time_s.tolist() == [0.0, 0.5]
    assert tr.rate_bps.tolist() == [1e6, 0.0]
    assert tr.end_s == pytest.approx(1.5)


def test_belgium_json_error_names_line(tmp_path):
    p = tmp_path / "b.json"
    p.write_text('[\n {"duration_ms": 500, "bandwidth_kbps": 1000},\n {"duration_ms": -1, "bandwidth_kbps": 5}\n]')
    with pytest.raises(DataError, match=r"b.json:3 \(entry 1\).*duration_ms"):
        load_belgium_json(p)
    p.write_text('[\n {"duration_ms": 500,\n "bandwidth_kbps": }\n]')
    with pytest.raises(DataError, match=r"b.json:3: not valid JSON"):
        load_belgium_json(p)


def test_mahimahi_counts_delivery_opportunities(tmp_path):
    p = tmp_path / "mm"
    # 100 opportunities in the first second, 50 in the second: 1.2 and 0.6 Mbit/s
    stamps = [int(i * 10) for i in range(100)] + [1000 + int(i * 20) for i in range(50)]
    p.write_text("\n".join(map(str, stamps)) + "\n")
    tr = load_mahimahi(p)
    assert tr.rate_bps.tolist() == [1.2e6, 0.6e6]
    assert tr.end_s == 2.0
    assert load_trace(p).rate_bps.tolist() == tr.rate_bps.tolist()


def test_mahimahi_error_names_line(tmp_path):
    p = tmp_path / "mm"
    p.write_text("1\n2\n1\n")
    with pytest.raises(DataError, match=r"mm:3: .*never decrease"):
        load_mahimahi(p)
    p.write_text("1\n2.5\n")
    with pytest.raises(DataError, match=r"mm:2: .*integer"):
        load_mahimahi(p)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_trace(tmp_path / "nope")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(DataError, match="empty"):
        load_trace(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        load_trace_dir(tmp_path / "no-dir")


def test_transfer_integrates_the_rate():
    tr = BandwidthTrace("two", np.array([0.0, 1.0]), np.array([1e6, 2e6]), 2.0)
    # 1.5 Mbit starting at 0.5 s: 0.5 Mbit in [0.5, 1), then 1 Mbit at 2 Mbit/s: ends at 1.5 s
    assert tr.transfer_end_s(0.5, 1.5e6 / 8) == pytest.approx(1.5)
    # wraps around: the trace repeats after 2 s (3 Mbit per pass)
    assert tr.transfer_end_s(0.0, 4e6 / 8) == pytest.approx(3.0)
    assert tr.transfer_end_s(0.0, 5e6 / 8) == pytest.approx(3.5)
    assert tr.transfer_ms(np.array([0.0, 1.0]), 1e6 / 8).tolist() == pytest.approx([1000.0, 500.0])
    assert tr.transfer_ms(0.3, 0) == pytest.approx(0.0)


def test_transfer_waits_through_an_outage():
    tr = BandwidthTrace("gap", np.array([0.0, 1.0, 2.0]), np.array([1e6, 0.0, 1e6]), 3.0)
    assert tr.transfer_end_s(0.5, 1e6 / 8) == pytest.approx(2.5)


def test_transfer_matches_a_fine_grained_simulation():
    rng = np.random.default_rng(3)
    tr = BandwidthTrace("rand", np.cumsum(np.r_[0, rng.uniform(0.2, 1.0, 30)]), rng.uniform(0, 3e6, 31), 25.0)
    starts = rng.uniform(0, 20, 50)
    sizes = rng.uniform(0, 2e5, 50)
    got = tr.transfer_end_s(starts, sizes)
    dt = 1e-4
    for s, b, g in zip(starts, sizes, got):
        t, bits = s, 0.0
        while bits < b * 8:
            bits += tr.rate_at(t) * dt
            t += dt
        assert g == pytest.approx(t, abs=2e-3)


def test_scale_and_slice():
    tr = BandwidthTrace("x", np.array([0.0, 1.0, 3.0]), np.array([1e6, 3e6, 2e6]), 4.0)
    assert tr.scaled(0.5).mean_rate_bps == pytest.approx(tr.mean_rate_bps / 2)
    assert tr.scaled(0.5).scale == 0.5
    sl = tr.sliced(0.5, 3.5)
    assert sl.time_s.tolist() == [0.0, 0.5, 2.5]
    assert sl.rate_bps.tolist() == [1e6, 3e6, 2e6]
    assert sl.end_s == pytest.approx(3.0)
    assert sl.bits_until(3.0) == pytest.approx(tr.bits_until(3.5) - tr.bits_until(0.5))
    with pytest.raises(ConfigError):
        tr.sliced(3.0, 5.0)
    with pytest.raises(ConfigError):
        tr.scaled(0)


def test_trace_rejects_bad_arrays():
    with pytest.raises(DataError, match="start at 0"):
        BandwidthTrace("b", np.array([0.0, 0.0]), np.array([1.0, 1.0]), 1.0)
    with pytest.raises(DataError, match="every rate is 0"):
        BandwidthTrace("b", np.array([0.0]), np.array([0.0]), 1.0)


def test_synthetic_trace_has_known_change_points():
    syn = synthetic_trace([1e6, 4e6, 5e5], [10, 20, 30], 0.0, step_s=0.5)
    assert syn.change_point_samples == (10, 30)
    assert syn.change_points_s == (5.0, 15.0)
    assert syn.trace.rate_bps[:10].tolist() == [1e6] * 10
    assert syn.trace.rate_bps[10:30].tolist() == [4e6] * 20
    assert syn.trace.end_s == pytest.approx(30.0)


@pytest.mark.skipif(not SHARED_TRACES.is_dir(), reason="shared traces not present")
def test_shared_trace_sets_load():
    nor = load_trace_dir(SHARED_TRACES / "norway-3g")
    bel = load_trace_dir(SHARED_TRACES / "belgium-4g")
    assert len(nor) == 80 and len(bel) == 40
    assert 0.5e6 < np.median([t.mean_rate_bps for t in nor]) < 3e6
    assert 10e6 < np.median([t.mean_rate_bps for t in bel]) < 60e6
