"""`edgent bench paper`: the wire model of the link (shaper burst, framing, packet headers), the criteria and the
summary on hand-made data, and a short real run (`--quick`) whose JSON and plots are checked for content."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgent.bench.paper import STAGES, summarize, within
from edgent.plan.link import shaper_burst_bytes
from edgent.plan import ExitCosts, LatencyTable, Link, OverheadModel, Planner, WireFraming

from .conftest import IS_ROOT, check_png, netns_names

ROOT = Path(__file__).resolve().parents[1]


def _table() -> LatencyTable:
    e1 = ExitCosts(1, 0.6, (10.0, 20.0), (1.0, 2.0), (3072, 5000, 0), 40)
    e2 = ExitCosts(2, 0.8, (10.0, 20.0, 30.0), (1.0, 2.0, 3.0), (3072, 5000, 800, 0), 40)
    return LatencyTable("tiny", (e1, e2))


def test_wire_model_by_hand() -> None:
    fr = WireFraming(request_bytes=130, response_bytes=400, segment_bytes=1448, packet_header_bytes=66)
    planner = Planner(_table(), OverheadModel(0.0, 0.0, fr))
    link = Link(400e3, 400e3, rtt_ms=20.0, burst_bytes=1600)
    b = planner.predict(link, 2, 0)
    # up: 3072 + 130 = 3202 bytes in 3 packets (+ 3 x 66) = 3400 on the wire, 1600 of them at once: 1800 bytes
    assert b.upload_ms == pytest.approx(1800 * 8 / 400e3 * 1e3)
    # down: 40 + 400 = 440 bytes, one packet of 506: within the burst
    assert b.download_ms == 0.0
    assert b.total_ms == pytest.approx(36.0 + 6.0 + 20.0)
    assert b.edge_ms == 6.0 and b.device_ms == 0.0
    # device only crosses nothing: no framing, no round trip
    assert planner.predict(link, 2, 3).total_ms == pytest.approx(60.0)
    # 800 bytes + 130 in one packet of 996: all within the burst
    assert planner.predict(link, 2, 2).upload_ms == 0.0
    for (x, p), total in zip(planner.pairs, planner.totals(link)):
        assert total == pytest.approx(planner.predict(link, x, p).total_ms, rel=1e-12)
    # the emulated link counts the application's bytes only
    emu = Planner(_table(), OverheadModel(0.0, 0.0, WireFraming(130, 400)))
    assert emu.predict(link, 2, 0).upload_ms == pytest.approx((3202 - 1600) * 8 / 400e3 * 1e3)


def test_wire_model_off_is_the_papers_formula() -> None:
    # no burst and no framing: exactly payload bytes / rate, as before the wire model existed
    t = _table()
    ov = OverheadModel(0.5, 1e-6)
    link = Link(80e3, 1e6, rtt_ms=10.0)
    planner = Planner(t, ov)
    for (x, p), total in zip(planner.pairs, planner.totals(link, edge_queue_ms=2.0)):
        e = t.exits[x - 1]
        n = e.num_units
        want = sum(e.device_unit_ms[:p]) + sum(e.edge_unit_ms[p:])
        if p < n:
            tx = e.transfer_bytes[p]
            want += tx * 8e3 / 80e3 + 40 * 8e3 / 1e6 + 10.0 + 2 * 0.5 + 1e-6 * (tx + 40) + 2.0
        assert total == pytest.approx(want, rel=1e-12)
    assert link.to_json() == {"uplink_bps": 80e3, "downlink_bps": 1e6, "rtt_ms": 10.0}
    assert WireFraming().counted is False and WireFraming.edgent(130, 400).counted


def test_burst_matches_the_testbeds_shapers() -> None:
    from edgent.runtime.link import AppLink
    from edgent.testbed import tbf_args

    for rate in (50e3, 400e3, 2e6, 20e6):
        args = tbf_args(rate)
        assert shaper_burst_bytes(rate) == int(args[args.index("burst") + 1])
        assert AppLink(rate_bps=rate).bucket_bytes == shaper_burst_bytes(rate)
    assert Link(400e3, 400e3, burst_bytes=1600).idle_to_refill_s() == pytest.approx(0.032)
    with pytest.raises(Exception, match="burst_bytes"):
        Link(1e6, 1e6, burst_bytes=-1)


def test_within_criterion() -> None:
    assert within(109.0, 100.0) and not within(111.0, 100.0)
    assert within(24.9, 20.0) and not within(25.1, 20.0)  # 5 ms floor for short predictions
    assert within(15.1, 20.0) and not within(14.9, 20.0)
    assert list(within([100, 200], [100, 100])) == [True, False]


def _row(policy: str, d: float, exit: int, meas_key: str, met: bool, acc: float) -> dict:
    return {"policy": policy, "deadline_ms": d, "exit": exit, "accuracy": acc, "measurement": meas_key, "met": met}


def _meas(experiment: str, pred: float, totals: list[float], placement: str = "edge only") -> dict:
    n = len(totals)
    return {"experiment": experiment, "placement": placement, "predicted_ms": pred, "predicted_fluid_ms": 1.5 * pred,
            "predicted_stages_ms": {"device": 0.0, "link": pred - 25.0, "rtt": 20.0, "edge": 5.0, "overheads": 0.0},
            "other_load_cpus": 0.1,
            "requests": {"total_ms": totals, "device_ms": [0.0] * n, "link_ms": [t - 25.0 for t in totals],
                         "rtt_ms": [20.0] * n, "edge_ms": [5.0] * n, "overheads_ms": [0.0] * n}}


def test_summary_on_known_data() -> None:
    rows_c = [_row("edgent", 100, 2, "c-0", True, 0.8), _row("oracle", 100, 2, "c-0", True, 0.8),
              _row("device", 100, 2, "c-1", False, 0.8),
              _row("edgent", 300, 2, "c-0", True, 0.8), _row("oracle", 300, 2, "c-0", True, 0.8),
              _row("device", 300, 2, "c-1", True, 0.8)]
    variants = {"as_sent": {
        "a_bandwidth_sweep": {"rows": [_row("edgent", 1000, 2, "a-0", True, 0.8)]},
        "b_deadline_sweep": {"rows": [_row("edgent", 100, 2, "b-0", True, 0.8),
                                      _row("edgent", 200, 2, "b-0", True, 0.8)]},  # shared: counted once
        "c_policies": {"rows": rows_c},
        "measurements": {"a-0": _meas("a", 100, [100.0, 150.0]), "b-0": _meas("b", 60, [60.0, 61.0, 80.0]),
                         "c-0": _meas("c", 60, [60.0, 60.0]),
                         "c-1": _meas("c", 300, [300.0, 250.0], "device only"),
                         "c-2": _meas("c", 40, [41.0])},  # an oracle candidate no row chose: counted too
    }}
    s = summarize(variants)
    assert s["requests"] == 2 + 3 + 2 + 2 + 1
    # outside: 150 vs 100, 80 vs 60, 250 vs 300
    assert s["requests_outside"] == 3 and s["within_share"] == pytest.approx(7 / 10)
    assert s["within_share_by_experiment"]["b"] == {"requests": 3, "within_share": pytest.approx(2 / 3)}
    assert s["within_share_by_placement"]["device only"]["within_share"] == pytest.approx(0.5)
    assert s["within_share_fluid"] == pytest.approx(1 / 10)  # predicted x1.5: only 150 ms of a-0 is within
    assert set(s["stages"]) == set(STAGES)
    assert sum(d["largest_error_of_requests_outside"] for d in s["stages"].values()) == 3
    # in these data every error is on the link (the synthetic device-only rows too)
    assert s["stages"]["link"]["largest_error_of_requests_outside"] == 3
    assert s["stages"]["rtt"]["within_share"] == 1.0
    assert s["within_share_if_measured"]["device_and_edge"] == s["within_share"]  # compute exactly as predicted
    assert s["edgent_meets_every_requirement_the_oracle_meets"] is True
    assert s["other_load_cpus"] == {"median": 0.1, "max": 0.1}
    assert s["device_spread"] is None  # no device call was timed on the steady clock
    # device calls: steady 300, 250 ms (the 250 is outside 300's +-10 %); their raw CPU time x100 200, 250 ms
    req = variants["as_sent"]["measurements"]["c-1"]["requests"]
    req["device_ms"], req["device_raw_ms"], req["device_host_speed"] = [300.0, 250.0], [200.0, 250.0], [1.5, 1.0]
    req2 = variants["as_sent"]["measurements"]["c-0"]["requests"]
    req2["device_raw_ms"], req2["device_host_speed"] = [None, None], [None, None]  # no device compute: skipped
    ds = summarize(variants)["device_spread"]
    assert ds["calls"] == 2 and ds["host_speed"]["median"] == pytest.approx(1.25)
    # own medians 275 and 225: 300 and 250 are within 10 % of 275; 200 and 250 are not within 10 % of 225
    assert ds["within_own_median_steady_clock"] == 1.0 and ds["within_own_median_plain_cpu_clock"] == 0.0
    variants["as_sent"]["c_policies"]["rows"][3]["met"] = False  # Edgent misses 300 ms, which the oracle met
    assert summarize(variants)["edgent_meets_every_requirement_the_oracle_meets"] is False


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path: Path) -> None:
    # as root (CI): the namespace testbed with the real CPU quota; otherwise the emulated link and device
    out, raw = tmp_path / "results", tmp_path / "raw"
    cmd = [sys.executable, "-m", "edgent.cli.main", "bench", "paper", "--quick", "--synthetic-inputs",
           "--out-dir", str(out), "--raw-dir", str(raw)]
    if not IS_ROOT:
        cmd += ["--emulate"]
    if not (ROOT / "edgent" / "model" / "weights" / "alexnet-cifar10.card.json").is_file():
        cmd += ["--accuracies", "0.70,0.74,0.76,0.77,0.78"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    words = " ".join(p.stdout.split())
    data = json.loads((out / "paper-quick.json").read_text())
    assert data["benchmark"] == "paper-quick" and data["quick"] is True
    assert data["testbed"]["kind"] == ("netns" if IS_ROOT else "emulated")
    v = data["variants"]["as_sent"]
    assert [r["bandwidth_kbit"] for r in v["a_bandwidth_sweep"]["rows"]] == [75.0, 1000.0]
    assert [r["deadline_ms"] for r in v["b_deadline_sweep"]["rows"]] == [100.0, 1000.0]
    c = v["c_policies"]["rows"]
    assert {r["policy"] for r in c} == {"edgent", "device", "edge", "neurosurgeon", "rightsize", "oracle"}
    assert len(c) == 2 * 6
    n_req = data["options"]["requests"]
    for exp in ("a_bandwidth_sweep", "b_deadline_sweep", "c_policies"):
        for r in v[exp]["rows"]:
            assert 1 <= r["exit"] <= 5 and 0 <= r["partition"] <= r["units"]
            assert r["requests"] == n_req and 0.0 <= r["within_share"] <= 1.0
            assert r["predicted_ms"] == pytest.approx(sum(r["predicted_stages_ms"][s] for s in STAGES))
            assert r["measured_ms"]["median"] > 1.0  # milliseconds: no request is done in under 1 ms
            meas = v["measurements"][r["measurement"]]
            assert (meas["exit"], meas["partition"]) == (r["exit"], r["partition"])
            req = meas["requests"]
            assert r["measured_ms"]["median"] == pytest.approx(float(np.median(req["total_ms"])))
            assert len(req["total_ms"]) == n_req and set(req["where"]) <= {"edge", "device"}
            for i, total in enumerate(req["total_ms"]):  # the stages add up to the total
                assert sum(req[f"{s}_ms"][i] for s in STAGES) == pytest.approx(total, abs=0.01)
            if r["placement"] == "device only":
                assert set(req["where"]) == {"device"} and max(req["upload_bytes"]) == 0
            else:
                assert set(req["where"]) == {"edge"} and min(req["link_ms"]) > 0
            met = np.mean(np.asarray(req["total_ms"]) <= r["deadline_ms"])
            assert r["met_share"] == pytest.approx(met) and r["met"] == (met >= 0.9)
    # at 1 Mbit/s the 3 KB input crosses in ~15 ms: the edge
    assert v["a_bandwidth_sweep"]["rows"][1]["placement"] == "edge only"
    assert any(r["placement"] == "device only" for r in c)  # at least the device-only baseline
    fr = data["wire_framing"]["as_sent"]
    assert 60 < fr["request_bytes"] < 400 and 100 < fr["response_bytes"] < 1000
    s = data["summary"]
    assert s["requests"] == sum(len(m["requests"]["total_ms"]) for m in v["measurements"].values())
    assert 0.0 <= s["within_share"] <= 1.0 and set(s["stages"]) == set(STAGES)
    assert isinstance(s["edgent_meets_every_requirement_the_oracle_meets"], bool)
    # the printed summary gives the headline figures of the JSON: requests, share within, the oracle verdict
    assert f"{s['requests']} requests" in words and f"{100 * s['within_share']:.1f} %" in words
    verdict = "yes" if s["edgent_meets_every_requirement_the_oracle_meets"] else "NO"
    assert re.search(rf"oracle[^:]*: {verdict}\b", words), words[-2000:]
    assert set(s["within_share_if_measured"]) == {"device", "edge", "device_and_edge", "device_and_edge_fluid_link"}
    for name in ("bandwidth", "deadline", "accuracy", "scatter"):
        check_png(out / f"paper-quick_{name}.png")
    lines = (raw / "records.jsonl").read_text().splitlines()
    assert len(lines) >= s["requests"]  # DeviceRuntime's own records (+ one warm-up per configuration)
    assert (raw / "edge.log").is_file()
    if IS_ROOT:
        netns = data["testbed"]["describe"].split("netns ")[1].split(",")[0]
        assert netns not in netns_names()  # removed at the end
