"""``edgent bench dynamic`` end to end on synthetic traces and a toy latency table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgent.adapt.traces import synthetic_trace
from edgent.adapt.simulate import split_by_file
from edgent.cli.main import main
from .conftest import toy_table


def write_traces(d, n=8):
    d.mkdir()
    for i in range(n):
        rng = np.random.default_rng(100 + i)
        means = rng.choice([3e6, 1.2e6, 2e5], 6)
        syn = synthetic_trace(means, 40, 0.1, step_s=0.8, seed=i, name=f"t{i}")
        tr = syn.trace
        (d / f"trace_{i:02d}").write_text("".join(f"{t:.3f}\t{r / 1e6:.6f}\n" for t, r in zip(tr.time_s, tr.rate_bps)))
    return d


@pytest.mark.slow
def test_bench_dynamic_runs_and_ranks_methods(tmp_path, capsys):
    traces = write_traces(tmp_path / "traces")
    table = toy_table().save(tmp_path / "toy.json")
    out = tmp_path / "out"
    rc = main(["bench", "dynamic", "--traces", str(traces), "--model", "toy", "--table-source", str(table),
               "--accuracies", "0.7,0.8", "--deadline-ms", "100", "--rtt-ms", "10", "--out-dir", str(out),
               "--name", "dyn", "--json"])
    assert rc == 0
    res = json.loads((out / "dyn.json").read_text())
    assert set(res["traces"]["train"]).isdisjoint(res["traces"]["test"])
    methods = res["methods"]
    assert set(methods) == {"edgent-dynamic", "edgent-dynamic-ph", "edgent-static", "neurosurgeon", "device-only",
                            "edge-only", "oracle"}
    o = methods["oracle"]
    for name, m in methods.items():
        assert m["requests"] == o["requests"]
        assert m["deadline_met_share"] <= o["deadline_met_share"] + 1e-12, name
    dyn, static = methods["edgent-dynamic"], methods["edgent-static"]
    assert dyn["met_share_where_oracle_meets"] >= 0.97
    assert dyn["deadline_met_share"] > static["deadline_met_share"]  # EWMA lags the drops
    assert dyn["mean_accuracy"] > methods["device-only"]["mean_accuracy"] or methods["device-only"][
        "deadline_met_share"] < dyn["deadline_met_share"]
    assert res["step_cost"]["map"]["median_us"] > 0
    assert (out / "dyn.png").stat().st_size > 10_000
    assert (out / "dyn.map.json").is_file()
    det = res["detectors_on_synthetic"]
    assert det["bocpd"]["recall"] >= 0.9
    assert json.loads(capsys.readouterr().out)["model"] == "toy"


def test_split_by_file_never_shares_a_file(tmp_path):
    syn = [synthetic_trace([1e6], 5, name=f"f{i}").trace for i in range(7)]
    train, test = split_by_file(syn, 2)
    assert [t.name for t in train] == ["f0", "f2", "f4", "f6"]
    assert [t.name for t in test] == ["f1", "f3", "f5"]


@pytest.mark.slow
def test_bench_dynamic_replays_decisions_on_the_testbed(tmp_path):
    """--testbed-seconds runs every method's decisions for real (here on the emulated link, which also works
    without root) and compares them with the simulation, request by request."""
    traces = write_traces(tmp_path / "traces", n=4)
    out = tmp_path / "out"
    rc = main(["bench", "dynamic", "--traces", str(traces), "--table-source", "predictor", "--deadline-ms", "300",
               "--period-ms", "500", "--out-dir", str(out), "--name", "dyn", "--testbed-seconds", "4",
               "--emulate"])
    assert rc == 0
    tb = json.loads((out / "dyn.json").read_text())["testbed"]
    assert tb["kind"] == "emulated" and tb["requests_per_method"] >= 8
    methods = tb["methods"]
    assert set(methods) == {"edgent-dynamic", "edgent-dynamic-ph", "edgent-static", "neurosurgeon", "device-only",
                            "edge-only"}
    records = json.loads((out / "dyn-testbed" / "records.json").read_text())
    assert len(records) == 6 * tb["requests_per_method"]
    for name, m in methods.items():
        assert 0.0 <= m["met_share_real"] <= 1.0 and m["requests"] == tb["requests_per_method"]
    # the same plans on the same link: the measured latency follows the simulated one (within the device
    # emulation's spread), for the edge (link-bound) and for the device (compute-bound) alike
    assert 0.5 < methods["edge-only"]["median_real_over_simulated"] < 2.0, methods["edge-only"]
    assert 0.3 < methods["device-only"]["median_real_over_simulated"] < 2.0, methods["device-only"]
    assert all(r["where"] in ("edge", "device", "fallback") for r in records)


def test_replay_steps_start_at_the_rate_in_force_and_floor_outages():
    from edgent.adapt.traces import BandwidthTrace
    from edgent.bench.dynamic.testbed import MIN_REPLAY_BPS, replay_steps

    tr = BandwidthTrace("t", np.array([0.0, 1.0, 2.0, 3.0, 4.0]), np.array([1e6, 2e6, 0.0, 3e6, 4e6]), 5.0)
    steps = replay_steps(tr, 1.5, 3.2)
    assert [(s.time_s, s.rate_bps) for s in steps] == [(0.0, 2e6), (0.5, MIN_REPLAY_BPS), (1.5, 3e6)]
    assert replay_steps(tr, 0.0, 0.5)[0].rate_bps == 1e6 and len(replay_steps(tr, 0.0, 0.5)) == 1
