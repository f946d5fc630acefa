"""`edgent demo`: short real runs (namespace testbed as root, emulated link always) whose report is checked for
content, cleanup on Ctrl-C, and the burst correction of throughput samples."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgent.demo.summary import METHOD_LABELS
from edgent.profile.throttle import role_emulation

from .conftest import check_png, needs_root, netns_names

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "edgent" / "model" / "weights"


def _model_flags() -> list[str]:
    """Use the trained weights and card when they exist; otherwise seeded random weights and stated accuracies."""
    flags = []
    if not (WEIGHTS / "alexnet-cifar10.card.json").is_file():
        flags += ["--accuracies", "0.70,0.74,0.76,0.77,0.78"]
    if not (WEIGHTS / "alexnet-cifar10.safetensors").is_file():
        flags += ["--random-weights"]
    return flags


def _demo(out: Path, *extra: str, duration: float = 8.0) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "edgent.cli.main", "demo", "--duration", str(duration), "--out", str(out),
           "--live", "off", *_model_flags(), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT)


def _check_report(out: Path, kind: str, duration: float = 8.0, period_ms: float = 300.0) -> dict:
    html = (out / "report.html").read_text()
    assert "<table>" in html
    for label in METHOD_LABELS.values():
        assert label in html, f"summary row missing from the HTML: {label}"
    assert "MEASURED" in html  # the measured row, apart from the simulated ones
    assert 'src="timeline.png"' in html and 'src="summary.png"' in html
    check_png(out / "timeline.png")
    check_png(out / "summary.png")
    data = json.loads((out / "report.json").read_text())
    assert data["testbed"]["kind"] == kind
    reqs = data["requests"]
    assert len(reqs) >= 0.5 * duration * 1000 / period_ms, len(reqs)
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == len(reqs)  # DeviceRuntime's own per-request records
    for r in reqs:
        assert r["latency_ms"] > 1.0, r  # milliseconds: no request is done in under 1 ms
        assert 1 <= r["plan"]["exit"] <= 5 and 0 <= r["plan"]["partition"] <= 22
        assert r["where"] in ("edge", "device", "fallback")
        assert 0 <= r["time_s"] <= duration + 1.0
        if r["where"] == "edge":
            assert r["network_ms"] is not None and 0 < r["network_ms"] < r["latency_ms"], r
    times = [r["time_s"] for r in reqs]
    assert times == sorted(times)
    rows = {row["key"]: row for row in data["summary"]}
    assert set(rows) == {"edgent-dynamic-measured", *METHOD_LABELS}
    meas = rows["edgent-dynamic-measured"]
    assert meas["mode"] == "measured" and meas["requests"] == len(reqs)
    lat = np.array([r["latency_ms"] for r in reqs])
    assert meas["met_share"] == pytest.approx(float(np.mean(lat <= data["options"]["deadline_ms"])))
    assert rows["oracle"]["met_share"] >= rows["edge-only"]["met_share"]
    for key, row in rows.items():
        assert 0.0 <= row["met_share"] <= 1.0 and 0.0 < row["card_accuracy"] <= 1.0, key
    return data


@pytest.mark.slow
@needs_root
def test_demo_on_the_namespace_testbed(tmp_path: Path) -> None:
    p = _demo(tmp_path / "rep")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "namespace testbed" in p.stdout
    assert str(tmp_path / "rep" / "report.html") in p.stdout.replace("\n", "")
    data = _check_report(tmp_path / "rep", "netns")
    netns = re.search(r"netns (edgent-[0-9]+-[0-9]+)", data["testbed"]["describe"]).group(1)
    assert netns not in netns_names()  # removed at the end


@pytest.mark.slow
def test_demo_emulated_link(tmp_path: Path) -> None:
    # what a machine without root gets: the emulated link (the device is emulated alike with and without root)
    p = _demo(tmp_path / "rep", "--emulate", "--synthetic-inputs")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    words = " ".join(p.stdout.split())
    dev = role_emulation("device")
    assert "EMULATED" in words  # the run says that its link is emulated, and how the device is
    assert "1 torch thread" in words and f"x{dev.slowdown:g}" in words
    data = _check_report(tmp_path / "rep", "emulated")
    assert "SYNTHETIC" in data["inputs"]
    assert all(r["label"] is None for r in data["requests"])
    assert "EMULATED" in (tmp_path / "rep" / "report.html").read_text()


@pytest.mark.slow
@needs_root
def test_demo_ctrl_c_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "rep"
    cmd = [sys.executable, "-m", "edgent.cli.main", "demo", "--duration", "60", "--out", str(out), "--live", "off",
           *_model_flags()]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        t_end = time.monotonic() + 120
        records = out / "records.jsonl"
        while time.monotonic() < t_end and proc.poll() is None:
            if records.is_file() and len(records.read_text().splitlines()) >= 4:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stdout.read()[-3000:] if proc.stdout else ""
        assert f"edgent-{proc.pid}-" in netns_names()
        proc.send_signal(signal.SIGINT)
        text, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, text[-3000:]
    assert "interrupted" in text
    assert f"edgent-{proc.pid}-" not in netns_names()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"edp{proc.pid}d" not in links
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(out) not in ps and "edgent.cli.main serve --model alexnet-cifar10 --host 0.0.0.0 --port 8470" \
        not in ps.replace(sys.executable + " -m ", "")
    data = json.loads((out / "report.json").read_text())
    assert data["interrupted"] is True and len(data["requests"]) >= 4


def test_default_trace_and_map_traces(tmp_path: Path) -> None:
    from edgent.demo.scenario import DEFAULT_STATES_MBPS_S, default_trace, file_trace, training_traces

    tr = default_trace(60.0, seed=3)
    assert tr.end_s == pytest.approx(60.0)
    assert 0.03e6 < tr.rate_bps.min() and tr.rate_bps.max() < 3e6  # the paper's range, with noise
    assert np.array_equal(tr.rate_bps, default_trace(60.0, seed=3).rate_bps)  # seeded
    assert not np.array_equal(tr.rate_bps, default_trace(60.0, seed=4).rate_bps)
    # the state means are where they should be (log-normal noise of std 0.15 around each)
    edges = np.cumsum([0] + [s for _, s in DEFAULT_STATES_MBPS_S])
    for (mbps, _), a, b in zip(DEFAULT_STATES_MBPS_S, edges[:-1], edges[1:]):
        seg = tr.rate_bps[(tr.time_s >= a) & (tr.time_s < b)]
        assert abs(np.log(np.exp(np.mean(np.log(seg))) / (mbps * 1e6))) < 0.2
    assert default_trace(8.0).end_s >= 8.0

    # --trace FILE: the maps use the other files of the folder (same scale), never FILE itself
    for i in range(3):
        (tmp_path / f"t{i}").write_text("".join(f"{k} {1 + i + 0.1 * k}\n" for k in range(40)))
    (tmp_path / "notes.txt").write_text("not a trace\n")
    one = file_trace(tmp_path / "t1", 0.5, 10.0, start_s=5.0)
    assert one.end_s == pytest.approx(10.0) and one.rate_bps[0] == pytest.approx(0.5 * 2.5e6)
    traces, what = training_traces(0, n_synthetic=2, trace_file=tmp_path / "t1", scale=0.5)
    names = [t.name for t in traces]
    assert "t0" in names and "t2" in names and "t1" not in names
    assert str(tmp_path) in what and "x0.5" in what  # the folder the map traces came from, and their scale
    assert re.search(r"\b1\b[^()]*skipped", what), what  # notes.txt: one file skipped
    t2 = traces[names.index("t2")]
    assert t2.rate_bps[0] == pytest.approx(0.5 * 3e6)
