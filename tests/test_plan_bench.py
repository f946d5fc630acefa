"""The static experiments and the planner benchmark, on tables whose answers are known."""

from __future__ import annotations

import json

import pytest

from edgent.bench import experiments, static
from edgent.bench import planner as bench_planner
from edgent.plan import ExitCosts, LatencyTable, OverheadModel


def paper_like_table() -> LatencyTable:
    """Two exits: a cheap early exit (acc 0.6, 150 ms on the device) and the full model (acc 0.8, 890 ms on
    the device, 5 ms on the edge); the input is 12000 bytes, the tensor after unit 1 of the full model 2000.
    At 400 kbit/s (50 bytes/ms) the full model takes at best 190 + 40 + 4 + 0.8 = 234.8 ms (split after unit 1),
    edge only 240 + 5 + 0.8 = 245.8 ms; the early exit on the device 150 ms."""
    return LatencyTable("paper-like", (
        ExitCosts(1, 0.6, (100.0, 50.0), (0.5, 0.5), (12000, 40000, 0), 40),
        ExitCosts(2, 0.8, (190.0, 300.0, 400.0), (1.0, 2.0, 2.0), (12000, 2000, 1000, 0), 40),
    ))


def test_run_static_reproduces_the_expected_choices(tmp_path):
    result = static.run_static(paper_like_table(), overhead=OverheadModel(0.0, 0.0), float32_input_bytes=12000)
    assert result["compute"]["device_to_edge_ratio"] == pytest.approx(890 / 5)
    v = result["variants"]["as_sent"]
    a = {r["bandwidth_kbit"]: r for r in v["a_bandwidth_sweep"]["rows"]}
    # 50 kbit/s: edge only 1920+ ms; split after unit 1: 190 + 320 + 4 + 6.4 = 520.4 ms -> full model, partition 1
    assert (a[50]["exit"], a[50]["partition"], a[50]["feasible"]) == (2, 1, True)
    # 2 Mbit/s: edge only 48 + 5 = 53 ms beats the split (190 + 8 + 4)
    assert (a[2000]["exit"], a[2000]["partition"]) == (2, 0)
    c = v["c_policies"]["rows"]
    met = v["findings"]["c_deadlines_met_by_policy"]
    assert met["device"] == [] and met["rightsize"] == [200.0, 300.0, 400.0, 500.0]
    at_100 = {r["policy"]: r for r in c if r["deadline_ms"] == 100.0}
    assert not any(r["met"] for r in at_100.values())  # nothing fits 100 ms at 400 kbit/s
    assert met["edgent"] == [200.0, 300.0, 400.0, 500.0]
    at_200 = {r["policy"]: r for r in c if r["deadline_ms"] == 200.0}
    assert (at_200["edgent"]["exit"], at_200["edgent"]["partition"]) == (1, 2)  # only the early exit fits
    assert not at_200["neurosurgeon"]["met"] and not at_200["edge"]["met"]
    assert met["neurosurgeon"] == met["edge"] == [300.0, 400.0, 500.0]
    at_300 = {r["policy"]: r for r in c if r["deadline_ms"] == 300.0}
    assert (at_300["edgent"]["exit"], at_300["edgent"]["partition"]) == (2, 1)
    assert at_300["edgent"]["predicted_ms"] == pytest.approx(234.8)
    assert v["findings"]["b_exit_non_decreasing_with_deadline"]
    paths = static.plot_static(result, tmp_path)
    assert [p.name for p in paths] == ["static_bandwidth.png", "static_deadline.png", "static_accuracy.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)
    json.dumps(result)  # the result is plain JSON


def test_float32_input_variant_changes_only_point_zero():
    t = experiments.with_input_bytes(paper_like_table(), 777)
    assert [e.transfer_bytes[0] for e in t.exits] == [777, 777]
    assert t.exits[1].transfer_bytes[1:] == paper_like_table().exits[1].transfer_bytes[1:]


def test_bench_static_command_from_saved_table(tmp_path, capsys):
    from edgent.cli.main import main

    path = paper_like_table().save(tmp_path / "t.json")
    assert main(["bench", "static", "--table", str(path), "--out-dir", str(tmp_path / "out")]) == 0
    data = json.loads((tmp_path / "out" / "static.json").read_text())
    assert data["benchmark"] == "static" and "machine" in data and set(data["variants"]) == {"as_sent",
                                                                                              "float32_input"}
    assert (tmp_path / "out" / "static_accuracy.png").is_file()
    assert "ratio 178x" in capsys.readouterr().out


def test_planner_benchmark_runs_and_scales(tmp_path):
    result = bench_planner.run(repeats=400, models=(), synthetic_sizes=(10, 100, 10000))
    rows = result["synthetic"]
    assert [r["pairs"] for r in rows] == [55, 505, 50005]
    assert all(0 < r["min_us"] <= r["median_us"] <= r["p99_us"] for r in rows)
    assert rows[-1]["min_us"] > 2 * rows[0]["min_us"]  # 1000x more pairs costs more (min: robust to load)
    assert result["synthetic_fit"]["us_per_pair"] > 0


def test_run_static_with_measured_table_adds_the_oracle():
    from dataclasses import replace

    predicted = paper_like_table()
    # really, the device runs the full model's first unit in 90 ms, not 190: the split fits 200 ms
    main = predicted.exits[1]
    measured = replace(predicted, exits=(predicted.exits[0], replace(main, device_unit_ms=(90.0, 300.0, 400.0))))
    result = static.run_static(predicted, overhead=OverheadModel(0.0, 0.0), measured=measured)
    rows = result["variants"]["as_sent"]["c_policies"]["rows"]
    at_200 = {r["policy"]: r for r in rows if r["deadline_ms"] == 200.0}
    assert (at_200["oracle"]["exit"], at_200["oracle"]["partition"], at_200["oracle"]["met"]) == (2, 1, True)
    assert at_200["oracle"]["predicted_ms"] == pytest.approx(134.8)
    assert at_200["edgent"]["exit"] == 1 and at_200["edgent"]["measured_table_ms"] == pytest.approx(150.0)
    assert at_200["neurosurgeon"]["met_measured"] and not at_200["neurosurgeon"]["met"]
    assert "oracle" in result["variants"]["as_sent"]["findings"]["c_deadlines_met_by_policy"]
