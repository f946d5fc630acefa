"""`edgent run` end to end on two network namespaces' worth of link: the edge server in its namespace behind a
``tc tbf``-shaped veth, the device a separate process running ``edgent run`` exactly as a user types it on
another host. A trace with a 20 s outage is replayed on the link and the edge is killed and restarted; the
records must show the outage seen, fallbacks in time, offloading resumed, and every request answered once. The
device is the emulated weak device (``--emulate-device``): this machine timed as it is runs the whole model in a
few ms, and Edgent would rightly never offload."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgent.testbed import MIN_REPLAY_BPS, NetnsTestbed, TraceStep, start_edge_server

from .conftest import needs_root, netns_names

ROOT = Path(__file__).resolve().parents[1]
MODEL = "alexnet-cifar10"
RATE_BPS = 2e6  # before and after the outage
OUTAGE_START_S, OUTAGE_S = 10.0, 20.0  # from the device's first record
KILL_AT_S = 34.0
DURATION_S = 60.0
REQUESTS_PER_S = 2.0  # one request per 500 ms: the emulated device keeps up with the deadline
# the emulated device's fastest exit takes about 250 ms: a deadline that leaves the edge a wait before the give-up
# point (deadline - that exit) and the fallback its time
DEADLINE_MS = 500.0
EDGE_FLAGS = ["--random-weights", "--seed", "0", "--threads", "0", "--torch-threads", "1"]


def _edge_connections(tb: NetnsTestbed, port: int) -> int:
    """Established TCP connections of the edge's port, counted in the edge namespace by the kernel (across edge
    restarts)."""
    out = subprocess.run(["ip", "netns", "exec", tb.netns, "ss", "-Htn", "state", "established",
                          f"( sport = :{port} )"], capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def _records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


@needs_root
@pytest.mark.slow
def test_edgent_run_through_an_outage_and_an_edge_restart(tmp_path: Path) -> None:
    records = tmp_path / "records.jsonl"
    device = None
    with NetnsTestbed(RATE_BPS) as tb:
        netns = tb.netns
        edge, port = start_edge_server(tb, MODEL, 8470, tmp_path / "edge.log", EDGE_FLAGS)
        try:
            device = subprocess.Popen(
                [sys.executable, "-m", "edgent.cli.main", "--allow-cpu-sleep", "run", "--edge",
                 f"{tb.edge_host}:{port}", "--model", MODEL, "--deadline", f"{DEADLINE_MS:g}ms", "--source",
                 "synthetic", "--rate", str(REQUESTS_PER_S), "--duration", f"{DURATION_S:g}s", "--random-weights",
                 "--link-shaper", "packets", "--records", str(records), "--json", "--live", "off",
                 "--emulate-device"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
            t_wait = time.monotonic() + 120
            while not _records(records) and device.poll() is None and time.monotonic() < t_wait:
                time.sleep(0.1)
            assert _records(records), device.communicate(timeout=30) if device.poll() is not None else "no record"
            t0_unix, t0 = time.time(), time.monotonic()
            replay = tb.replay([TraceStep(0.0, RATE_BPS), TraceStep(OUTAGE_START_S, MIN_REPLAY_BPS),
                                TraceStep(OUTAGE_START_S + OUTAGE_S, RATE_BPS)])
            time.sleep(max(0.0, t0 + OUTAGE_START_S - 2.0 - time.monotonic()))
            connections_before = _edge_connections(tb, port)
            time.sleep(max(0.0, t0 + KILL_AT_S - time.monotonic()))
            tb.stop_process(edge, sig=signal.SIGKILL)
            killed_unix = time.time()
            edge, port = start_edge_server(tb, MODEL, port, tmp_path / "edge2.log", EDGE_FLAGS)
            back_unix = time.time()
            time.sleep(max(0.0, t0 + DURATION_S - 5.0 - time.monotonic()))
            connections_after = _edge_connections(tb, port)  # while the device still runs
            out, err = device.communicate(timeout=DURATION_S + 120)
            replay.stop()
        finally:
            if device is not None and device.poll() is None:
                device.kill()
                device.wait()
            tb.stop_process(edge)
        assert device.returncode == 0, err[-3000:]
    assert netns not in netns_names()  # the namespace is removed, also on failure (the with block)

    recs = _records(records)
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    n = len(recs)
    # every request answered, once: the records and the JSON lines count the same requests, none twice or lost
    assert [r["seq"] for r in recs] == list(range(n)) and [x["seq"] for x in lines] == list(range(n))
    assert n >= DURATION_S * REQUESTS_PER_S - 2, n
    summary = json.loads(err.strip().splitlines()[-1])["summary"]
    assert summary["requests"] == n

    def arrival(r: dict) -> float:  # seconds since the replay started, of the request's arrival
        return r["time_unix_s"] - r["total_ms"] / 1e3 - t0_unix

    pre = [r["estimate_after_bps"] for r in recs if OUTAGE_START_S - 5 <= arrival(r) < OUTAGE_START_S]
    assert pre, "no request before the outage"
    pre_bps = sorted(pre)[len(pre) // 2]
    during = [r for r in recs if OUTAGE_START_S + 2 <= arrival(r) < OUTAGE_START_S + OUTAGE_S]
    assert during and all(r["estimate_bps"] < 0.1 * pre_bps for r in during), \
        (pre_bps, [(round(arrival(r), 2), r["estimate_bps"]) for r in during if r["estimate_bps"] >= 0.1 * pre_bps])
    could = [r for r in recs if r["where"] == "fallback" and r["no_exit_could_meet"] is False]
    assert could, "the outage caused no fallback"
    # after the edge returns, offloaded again within 3 s
    back_s, killed_s = back_unix - t0_unix, killed_unix - t0_unix
    assert back_s + 3.0 < DURATION_S, "the edge took too long to restart for the check"
    offloaded = [arrival(r) for r in recs if r["where"] == "edge" and arrival(r) >= back_s]
    assert offloaded and offloaded[0] <= back_s + 3.0, (back_s, offloaded[:3])
    assert not any(r["where"] == "edge" for r in recs if killed_s + 0.5 <= arrival(r) < back_s - 0.5)
    assert connections_before >= 1
    # the edge's connection count returned to its level before
    assert connections_after == connections_before, (connections_before, connections_after)
    # fallbacks meet the requirement whenever an on-device exit was predicted to fit (at least 95 % of them). The
    # emulated device multiplies its thread's CPU time by 100, so other load on this host shows through it many
    # times over (docs/deploy.md): the check holds on a host that runs this test alone, as CI does
    missed = [(r["seq"], r["total_ms"], r["measured_ms"]["device"]) for r in could if not r["met"]]
    assert sum(r["met"] for r in could) >= 0.95 * len(could), \
        f"fallbacks that an on-device exit could make missed the requirement (seq, total ms, device ms): {missed}"
