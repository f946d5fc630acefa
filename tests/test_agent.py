"""The device agent (edgent.runtime.agent): plans priced as run, the estimator's outage evidence, and the whole loop
against a real edge server on loopback, the edge killed and restarted."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch

from edgent.adapt.config_map import Candidates
from edgent.plan.sources import table_for_model
from edgent.plan.transfer import CODECS, wire_codec
from edgent.runtime import BandwidthEstimator, DeviceClient, ServerConfig
from edgent.runtime.agent import AgentOptions, EdgentAgent
from edgent.runtime.client import FALLBACK_SWITCH_MS, EdgeUnavailable
from edgent.runtime.local import ThreadedServer
from edgent.runtime.protocol import HEADER

MODEL = "alexnet-cifar10"


@pytest.fixture(scope="module")
def cands():
    return Candidates([table_for_model(MODEL, codec=c) for c in CODECS])


@pytest.fixture(scope="module")
def images():
    return torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))


def test_every_plan_is_sent_with_the_codec_and_bytes_it_was_priced_with(chain, cands, images):
    """For every (exit, partition, codec) that crosses the link, the payload the client puts on the wire has the
    priced upload size, in the codec :func:`wire_codec` names (uint8 pixels at point 0)."""
    sent: list[tuple[int, str]] = []

    def capture(frame: bytes, timeout_s: float):
        _magic, _v, _t, _f, meta_len, payload_len = HEADER.unpack(frame[:HEADER.size])
        meta = json.loads(frame[HEADER.size:HEADER.size + meta_len])
        sent.append((payload_len, meta["codec"]))
        raise EdgeUnavailable("captured")

    client = DeviceClient("127.0.0.1", 1, chain, device_exit_ms={e: 1.0 for e in range(1, chain.num_exits + 1)})
    client._request = capture  # type: ignore[method-assign]
    checked = 0
    for k, cfg in enumerate(cands.configs):
        if not cands.crosses[k]:
            continue
        table = cands.tables[0]
        codec = wire_codec(cfg.codec, cfg.partition, table.exit_costs(cfg.exit).num_units, table.raw_input)
        assert codec == cfg.codec  # a configuration names the codec it is sent with
        sent.clear()
        r = client.infer(images, cfg.exit, cfg.partition, codec)
        assert r.where == "fallback"
        assert sent == [(int(cands.tx_bytes[k]), codec)], (cfg, codec)
        assert (codec == "uint8") == (cfg.partition == 0)
        checked += 1
    assert checked == int(cands.crosses.sum()) > 3 * chain.num_exits


def test_wire_codec_names_nothing_for_device_only_and_refuses_unknown_codecs():
    assert wire_codec("int8", 4, 4) is None
    assert wire_codec("int8", 0, 4, raw_input=False) == "int8"
    with pytest.raises(Exception, match="unknown codec"):
        wire_codec("bogus", 1, 4)


def test_estimator_corrects_the_burst_and_takes_timeout_bounds():
    # 3204 B up + 364 B down at 1 Mbit/s through a 1600-byte bucket: only 1604 B were paced
    link_ms = 1604 * 8 / 1e6 * 1e3
    raw = BandwidthEstimator()
    raw.add(3204, link_ms, 364)
    assert raw.rate_bps == pytest.approx(8 * 3568 / (link_ms / 1e3))
    app = BandwidthEstimator(shaper="app")
    s = app.add(3204, link_ms, 364)
    assert s is not None and s.rate_bps == pytest.approx(1e6, rel=1e-6) and s.raw_rate_bps > 2e6
    assert app.add(1000, 0.6, 200) is None  # all burst: no information, nothing kept
    for _ in range(5):
        app.add(3204, link_ms, 364)
    app.add_upper_bound(50e3)  # a request that timed out: the rate was at most 50 kbit/s
    assert app.rate_bps == pytest.approx(50e3)
    app.add(3204, 1604 * 8 / 40e3 * 1e3, 364)  # then a 40 kbit/s sample: harmonic mean of both
    assert app.rate_bps == pytest.approx(2 / (1 / 50e3 + 1 / 40e3), rel=1e-6)
    before = app.rate_bps
    assert app.add_upper_bound(60e3) is None  # above every kept sample: no news, the estimate does not rise
    assert app.rate_bps == pytest.approx(before)
    with pytest.raises(Exception, match="shaper"):
        BandwidthEstimator(shaper="tbf")


def test_options_refuse_what_cannot_run():
    with pytest.raises(Exception, match="policy"):
        AgentOptions(policy="fastest")
    with pytest.raises(Exception, match="deadline"):
        AgentOptions(deadline_ms=0)


@pytest.mark.parametrize("policy", ["static", "device-only", "edge-only", "neurosurgeon"])
def test_policies_restrict_the_decision(chain, cands, policy):
    client = DeviceClient("127.0.0.1", 1, chain, device_exit_ms={e: 1.0 for e in range(1, chain.num_exits + 1)})
    with EdgentAgent(client, cands, AgentOptions(deadline_ms=10_000, policy=policy)) as agent:
        k, source, offline, cal = agent.decide(edge_up=True)
        cfg = cands.configs[k]
        last = int(cands.exit.max())
        if policy != "static":
            assert cfg.exit == last
        if policy == "device-only":
            assert not cands.crosses[k]
        if policy == "edge-only":
            assert cfg.partition == 0
        assert offline == pytest.approx(cal)  # no measurement yet: the calibration is the identity
        k2, source2, _, _ = agent.decide(edge_up=False)
        assert not cands.crosses[k2] and source2 == "edge-unreachable"


def test_the_agent_against_a_real_edge_killed_and_restarted(chain, cands, images, tmp_path):
    """Every request is answered and recorded once; with the edge gone the agent decides on-device at once
    (no request waits on a reconnect) and offloads again after the background reconnect."""
    from edgent.runtime.local import free_port

    port = free_port()
    server = ThreadedServer({MODEL: chain}, ServerConfig(port=port, threads=1)).__enter__()
    client = DeviceClient("127.0.0.1", port, chain, estimator=BandwidthEstimator(shaper="app"),
                          device_exit_ms=cands.tables[0].fallback_device_ms())
    records = tmp_path / "records.jsonl"
    opts = AgentOptions(deadline_ms=60_000, policy="edge-only", reconnect_every_s=0.05)
    try:
        with EdgentAgent(client, cands, opts, records=records) as agent:
            first = [agent.handle(images, label=1) for _ in range(3)]
            assert [r["where"] for r in first] == ["edge"] * 3
            assert all(r["plan"]["codec"] == "uint8" and r["bytes"]["upload"] > r["plan"]["upload_bytes_priced"]
                       for r in first)
            assert first[-1]["predicted_ms"]["offline"] > 0
            server.__exit__(None, None, None)
            down = [agent.handle(images) for _ in range(3)]
            assert all(r["where"] in ("fallback", "device") for r in down)
            assert down[-1]["plan"]["source"] == "edge-unreachable" and down[-1]["where"] == "device"
            server = ThreadedServer({MODEL: chain}, ServerConfig(port=port, threads=1)).__enter__()
            back = None
            for _ in range(400):  # the background reconnect; no request waits for it
                r = agent.handle(images)
                if r["where"] == "edge":
                    back = r
                    break
                threading.Event().wait(0.02)
            assert back is not None
            n = agent.seq
        lines = [json.loads(x) for x in records.read_text().splitlines()]
        assert [x["seq"] for x in lines] == list(range(n))
        assert all(x["total_ms"] > 0 and x["prediction"]["exit"] == x["exit_used"] for x in lines)
        assert agent.stats.requests == n and agent.stats.offloaded >= 4
    finally:
        server.__exit__(None, None, None)


def test_calibration_enters_the_decision(chain, cands):
    client = DeviceClient("127.0.0.1", 1, chain, device_exit_ms={e: 1.0 for e in range(1, chain.num_exits + 1)})
    with EdgentAgent(client, cands, AgentOptions(deadline_ms=10_000, policy="device-only")) as agent:
        k, _, offline, _ = agent.decide(edge_up=True)
        cfg = cands.configs[k]
        for _ in range(3):  # the device measured 3x slower than predicted on this configuration
            agent.calibration.observe("device", float(cands.device_ms[k]), 3 * float(cands.device_ms[k]), cfg)
        _, _, offline2, cal2 = agent.decide(edge_up=True)
        assert offline2 == pytest.approx(offline)
        assert cal2 == pytest.approx(offline + 2 * float(cands.device_ms[k]))
        assert np.isfinite(cal2)


def test_edgent_run_over_loopback_with_the_emulated_link(chain, tmp_path, capsys, monkeypatch):
    """`edgent run` as a user types it: every request answered once, one JSON line each, records kept; the device
    profiles itself on the first run (on the wall clock, said in every output) and finds its profile on the next."""
    from edgent.cli.main import main

    monkeypatch.setenv("EDGENT_CACHE", str(tmp_path / "cache"))
    with ThreadedServer({MODEL: chain}, ServerConfig(port=0, threads=1)) as server:
        records = tmp_path / "run.jsonl"
        argv = ["--allow-cpu-sleep", "run", "--edge", f"127.0.0.1:{server.port}", "--deadline", "5s",
                "--policy", "edgent", "--source", "synthetic", "--count", "6", "--emulate-link", "2Mbit",
                "--random-weights", "--json", "--records", str(records), "--live", "off", "--quick-profile"]
        rc = main(argv)
        assert rc == 0
        captured = capsys.readouterr()
        err = " ".join(captured.err.split())
        # nothing copied: the edge's latency model and card came in the handshake
        assert "advertised its latency model and the model card" in err
        assert "profiling this device once" in err and "measured now in" in err, err
        assert "device: this machine, timing: wall clock" in err
        lines = [json.loads(x) for x in captured.out.splitlines() if x.startswith("{")]
        assert [x["seq"] for x in lines] == list(range(6))
        recs = [json.loads(x) for x in records.read_text().splitlines()]
        assert [r["seq"] for r in recs] == list(range(6))
        assert all(r["policy"] == "edgent" and r["predicted_ms"]["offline"] > 0 for r in recs)
        assert all(r["device_timing"] == "wall clock" for r in recs)
        # this machine, timed as it is, runs the main exit within 5 s: the most accurate plan
        assert all(r["exit_used"] == chain.num_exits and r["where"] in ("device", "edge") for r in recs)
        summary = json.loads([x for x in captured.err.splitlines() if x.startswith('{"summary"')][-1])["summary"]
        assert summary["device_timing"] == summary["device_latency_model_timing"] == "wall clock"
        assert "device-profiles" in summary["device_latency_model"]
        # the same machine and model: the profile is cached; the edge answers an edge-only plan
        rc = main(argv[:-1] + ["--count", "2", "--quick-profile", "--policy", "edge-only"])
        assert rc == 0
        err = " ".join(capsys.readouterr().err.split())
        assert "profiling this device once" not in err and f"cached {summary['device_latency_model']}" in err
        recs = [json.loads(x) for x in records.read_text().splitlines()][6:]
        assert [r["where"] for r in recs] == ["edge", "edge"]


@pytest.mark.parametrize("queue_late", [True, False])
def test_run_charges_a_late_request_its_wait_only_when_requests_queue(chain, cands, queue_late):
    """At a fixed rate, a request due while the previous one ran either arrived at its due time (queue) or when
    the device took it (camera)."""
    client = DeviceClient("127.0.0.1", 1, chain, device_exit_ms={e: 1.0 for e in range(1, chain.num_exits + 1)})
    calls: list[tuple[float, float]] = []  # (arrival, end) as handle saw them
    with EdgentAgent(client, cands, AgentOptions(deadline_ms=10_000, policy="device-only")) as agent:
        def slow_handle(x, label=None, t_arrival=None):
            threading.Event().wait(0.05)  # longer than the period: every request after the first is late
            calls.append((t_arrival, time.perf_counter()))
            return {"seq": len(calls) - 1}

        agent.handle = slow_handle
        agent.run([(None, None)] * 4, rate_per_s=100.0, queue_late=queue_late)
    assert len(calls) == 4
    for (arr0, end0), (arr1, _) in zip(calls, calls[1:]):
        if queue_late:
            assert arr1 == pytest.approx(arr0 + 0.01)  # the schedule's due time, before the previous ended
            assert arr1 < end0
        else:
            assert arr1 >= end0  # taken when the device was free


def test_the_handshake_advertises_the_edge_latency_model_and_card_only_when_asked(chain):
    from edgent.latency.predictor import FITTED_DIR
    from edgent.model.card import card_path
    from edgent.runtime.protocol import HANDSHAKE_VERSION

    with ThreadedServer({MODEL: chain}, ServerConfig(port=0, threads=1)) as server:
        plain = DeviceClient("127.0.0.1", server.port, chain)
        assert plain.connect(force=True)
        assert plain.welcome["handshake"] == HANDSHAKE_VERSION and "advertisement_bytes" not in plain.welcome
        assert plain.advertised is None
        plain.close()
        asking = DeviceClient("127.0.0.1", server.port, chain)
        asking.advertise = True
        assert asking.connect(force=True)
        asking.close()
    ad = asking.advertised
    assert ad is not None and ad["handshake"] == HANDSHAKE_VERSION
    assert ad["models"][MODEL]["edge_latency_model"] == json.loads((FITTED_DIR / "edge.json").read_text())
    card = card_path(MODEL)
    expected = json.loads(card.read_text()) if card is not None and card.is_file() else None
    assert ad["models"][MODEL]["card"] == expected


@pytest.mark.parametrize("codec,partition", [("uint8", 0), ("jpeg75", 0), ("float32", 3), ("int8", 3)])
def test_the_give_up_point_follows_the_plans_prediction_for_every_codec(chain, images, codec, partition):
    """The client keeps the fastest exit's device time in reserve (gives up on the edge at the give-up point)
    only for a plan predicted to answer by then; a plan predicted later (a JPEG of the input at a tight deadline)
    gets the edge until the deadline. Without a prediction the client's default holds."""
    client = DeviceClient("127.0.0.1", 1, chain, device_exit_ms={1: 150.0, 2: 400.0, 3: 450.0, 4: 480.0, 5: 500.0})
    waits: list[float] = []

    def capture(frame: bytes, timeout_s: float):
        waits.append(timeout_s)
        raise EdgeUnavailable("captured")

    client._request = capture  # type: ignore[method-assign]
    assert client.give_up_ms(300.0) == 150.0 - FALLBACK_SWITCH_MS
    assert client.reserves(300.0, predicted_ms=40.0) and not client.reserves(300.0, predicted_ms=250.0)
    assert client.reserves(300.0) is True and not client.reserves(None, predicted_ms=1.0)
    client.infer(images, 5, partition, codec, deadline_ms=300.0)  # warm-up: the codec's first call imports
    results = {}
    for predicted in (40.0, 250.0, None):
        t0 = time.perf_counter()
        r = client.infer(images, 5, partition, codec, deadline_ms=300.0, t_arrival=t0, predicted_ms=predicted)
        results[predicted] = (r.give_up_reserved, waits[-1] * 1e3, (time.perf_counter() - t0) * 1e3)
    # the wait ends at the give-up point (150 ms after arrival, less what the device spent), or at the deadline
    assert results[40.0][0] is True and results[40.0][1] <= 150.0
    assert results[250.0][0] is False and results[250.0][1] > 150.0
    assert results[None][0] is True and results[None][1] <= 150.0


def _record(seq: int, met: bool, where: str, total_ms: float, change: bool = False) -> dict:
    return {"seq": seq, "time_s": seq * 0.1, "met": met, "where": where, "total_ms": total_ms, "exit_used": 1,
            "change_detected": change, "probe": None, "sample_bps": 5e5, "estimate_bps": 6e5,
            "estimate_after_bps": 5.5e5, "bocpd_state_bps": 5.2e5, "rtt_ms": 20.0,
            "plan": {"exit": 5, "partition": 3, "codec": "int8", "source": "map"},
            "predicted_ms": {"offline": 90.0, "calibrated": 95.0}}


def test_the_live_view_shows_bandwidth_changes_configuration_latency_met_share_and_fallbacks(cands):
    from edgent.runtime.liveview import AgentLiveView

    view = AgentLiveView.for_candidates("t", 200.0, cands)
    for i in range(19):
        view.update(_record(i, True, "edge", 100.0 + i, change=i == 4))
    view.update(_record(19, False, "fallback", 250.0))
    text = "\n".join(f"{k}: {v}" for k, v in view.rows())
    n5 = cands.tables[0].exits[4].num_units
    assert "estimate 0.550 Mbit/s" in text and "last sample 0.500" in text and "detector state 0.520" in text
    assert "changes detected: 1" in text and "(at 0.4 s)" in text
    assert f"exit 5, partition 3 (3/{n5} units on the device), codec int8" in text and "answered: fallback" in text
    assert "last 250.0 ms" in text and f"p95 {np.percentile([100.0 + i for i in range(19)] + [250.0], 95):.1f} ms" in text
    assert "95.0 %" in text and "fallbacks 1 (0 met)" in text
    assert "MISSED" in view.line() and "met 95.0 %" in view.line()
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(view.panel())
    assert "deadline met" in console.export_text()


def test_edgent_run_shows_the_live_view_or_plain_lines(chain, tmp_path, capsys, monkeypatch):
    from edgent.cli.main import main

    monkeypatch.setenv("EDGENT_CACHE", str(tmp_path / "cache"))
    with ThreadedServer({MODEL: chain}, ServerConfig(port=0, threads=1)) as server:
        argv = ["--allow-cpu-sleep", "run", "--edge", f"127.0.0.1:{server.port}", "--deadline", "5s",
                "--source", "synthetic", "--count", "3", "--emulate-link", "2Mbit", "--random-weights",
                "--quick-profile", "--policy", "edge-only"]
        assert main(argv + ["--live", "on"]) == 0
        err = capsys.readouterr().err
        assert "configuration" in err and "deadline met" in err and "100.0 %" in err
        assert main(argv + ["--live", "off"]) == 0
        err = capsys.readouterr().err
        assert [line.split()[0] for line in err.splitlines() if line.startswith("#")] == ["#0", "#1", "#2"]
        assert "configuration" not in err


def test_the_give_up_point_counts_what_the_device_part_and_encoding_really_took(chain, images):
    """A plan predicted to answer before the give-up point whose encoding ran late is late as a whole: the edge's
    wait then runs to the deadline (falling back at the give-up point would turn a likely answer into a miss)."""
    import contextlib

    class SlowEncode:
        @contextlib.contextmanager
        def scope(self):
            yield
            time.sleep(0.06)

    client = DeviceClient("127.0.0.1", 1, chain, slowdown=SlowEncode(),
                          device_exit_ms={1: 150.0, 2: 400.0, 3: 450.0, 4: 480.0, 5: 500.0})
    client._request = lambda frame, timeout_s: (_ for _ in ()).throw(EdgeUnavailable("captured"))  # type: ignore
    assert client.give_up_ms(300.0) == 150.0 - FALLBACK_SWITCH_MS
    r = client.infer(images, 5, 0, "jpeg75", deadline_ms=300.0, predicted_ms=120.0)
    assert r.give_up_reserved is True  # by the prediction alone: the answer by 120 ms, before the give-up point
    r = client.infer(images, 5, 0, "jpeg75", deadline_ms=300.0, predicted_ms=120.0, predicted_device_ms=7.0)
    assert r.give_up_reserved is False  # the encoding took 60 ms, not 7: the answer is due after 170 ms
    r = client.infer(images, 5, 0, "jpeg75", deadline_ms=300.0, predicted_ms=120.0, predicted_device_ms=70.0)
    assert r.give_up_reserved is True  # the encoding took about what was priced


@pytest.mark.parametrize("ratios,replaced", [([1.0, 1.0, 1.02, 0.98, 1.0], False),
                                             ([1.0, 1.05, 1.3, 1.35, 1.0], True)])
def test_the_maps_choice_must_fit_with_a_margin_for_the_measured_compute(chain, cands, ratios, replaced):
    """The map holds exit 1 on the device (predicted under the deadline); when the device's measured compute of it
    spreads past the deadline at the margin quantile, though its median fits, the agent takes the best
    configuration that fits instead."""
    from types import SimpleNamespace

    from edgent.adapt.config_map import Configuration

    client = DeviceClient("127.0.0.1", 1, chain, device_exit_ms={e: 1.0 for e in range(1, chain.num_exits + 1)})
    table = cands.tables[0]
    n1 = table.exits[0].num_units
    k0 = cands.index(Configuration(1, n1, table.codec))
    deadline = float(cands.device_ms[k0]) * 1.2  # the device-only exit 1 fits by 20 % as predicted
    with EdgentAgent(client, cands, AgentOptions(deadline_ms=deadline, policy="edgent")) as agent:
        agent.conf = SimpleNamespace(decide=lambda *a: SimpleNamespace(
            config=cands.configs[k0], source="map", state=SimpleNamespace(mean_rate_bps=1e6)))
        agent._measured.add(k0)
        for r in ratios:
            agent.calibration.observe("device", float(cands.device_ms[k0]), r * float(cands.device_ms[k0]),
                                      cands.configs[k0])
        k, source, _, cal = agent.decide(edge_up=True)
        if replaced:
            assert k != k0 and source == "map+calibrated" and cal <= deadline
        else:
            assert k == k0 and source == "map"


@pytest.mark.parametrize("queue_ms, kind", [(0.0, "upper_bound"), (70.0, "no_evidence")])
def test_an_unanswered_request_at_a_busy_edge_is_not_read_as_a_slow_link(chain, cands, queue_ms, kind):
    """A request the edge did not answer in time bounds the link's rate only by the time the edge's queue and
    compute do not explain: behind the wait the load-aware plan was priced with, the same timeout says nothing
    about the link (a busy edge is slow, not the link), and the estimate keeps its samples."""
    from edgent.runtime.client import InferenceResult

    client = DeviceClient("127.0.0.1", 1, chain, device_exit_ms={e: 1.0 for e in range(1, chain.num_exits + 1)})
    with EdgentAgent(client, cands, AgentOptions(deadline_ms=100, prior_rtt_ms=10.0, probe_idle_s=None)) as agent:
        k = next(i for i in range(len(cands)) if cands.crosses[i] and cands.configs[i].partition == 0)
        cfg = cands.configs[k]
        client.estimator.add(200_000, 80.0)  # one measured sample: 20 Mbit/s
        before = client.estimator.rate_bps
        agent.last_queue_ms = queue_ms  # the wait the plan was priced with
        res = InferenceResult(logits=torch.zeros(1, chain.num_classes), classes=[0], exit=1, partition=0,
                              codec=None, where="fallback", requested={}, deadline_ms=100.0,
                              fallback_reason="no answer from the edge within 75 ms", total_ms=80.0, device_ms=3.0,
                              encode_ms=0.1, upload_bytes=12_288)
        rec = agent._learn_and_record(res, k, "static", cfg.codec, 20.0, 20.0, None, before, None,
                                      time.perf_counter() - 0.08, (1.0, 1.0))
    assert rec["sample_kind"] == kind
    assert (client.estimator.rate_bps < before) == (kind == "upper_bound")


def test_the_give_up_point_keeps_the_fallback_switch_the_device_measured(chain, cands):
    """A fallback that starts later after the give-up point than the constant reserved for the switch (a busy
    host: the timeout fires late, the connection takes time to close) moves the give-up point earlier by what
    was measured (the margin quantile of the last ones); one that gave up where the edge was not waited for
    (no reserve, a refusal) teaches nothing, and the reserve never falls below the constant."""
    from edgent.runtime.client import InferenceResult

    client = DeviceClient("127.0.0.1", 1, chain, device_exit_ms={e: 1.0 for e in range(1, chain.num_exits + 1)})
    with EdgentAgent(client, cands, AgentOptions(deadline_ms=100, probe_idle_s=None)) as agent:
        client.device_exit_ms = {e: 20.0 for e in range(1, chain.num_exits + 1)}
        assert client.give_up_ms(100) == pytest.approx(100 - 20 - FALLBACK_SWITCH_MS)

        def fallback(start_ms: float, reserved: bool = True, reason: str = "no answer from the edge within 70 ms"):
            return InferenceResult(logits=torch.zeros(1, chain.num_classes), classes=[0], exit=1, partition=0,
                                   codec=None, where="fallback", requested={}, deadline_ms=100.0,
                                   fallback_reason=reason, total_ms=start_ms + 20.0, device_ms=20.0,
                                   give_up_reserved=reserved, fallback_left_ms=100.0 - start_ms)

        give_up = client.give_up_ms(100)
        agent._learn_switch(fallback(give_up + 30.0, reserved=False))  # waited to the deadline: not a switch
        agent._learn_switch(fallback(give_up + 30.0, reason="edge error overloaded: busy"))
        assert client.fallback_switch_ms == FALLBACK_SWITCH_MS
        for _ in range(5):  # each fallback started 9 ms after the give-up point
            agent._learn_switch(fallback(client.give_up_ms(100) + 9.0))
        assert client.fallback_switch_ms == pytest.approx(9.0) and FALLBACK_SWITCH_MS < 9.0
        assert client.give_up_ms(100) == pytest.approx(100 - 20 - 9.0)
        agent.switch_ms.clear()
        for _ in range(5):  # a quick switch: the constant stays the floor
            agent._learn_switch(fallback(client.give_up_ms(100) + 1.0))
        assert client.fallback_switch_ms == FALLBACK_SWITCH_MS


def test_the_fallback_budget_follows_the_devices_slowness_now_not_only_its_exits_old_timings(chain, cands):
    """The fastest exit is timed at start and then seldom run whole; when the device's recent whole exits (other
    exits, run as plans) run 1.6x their prediction, the fallback budgets its exit 1.6x too, not at its own
    ratios from the quiet start (which put the give-up point too late for the fallback to finish)."""
    client = DeviceClient("127.0.0.1", 1, chain, device_exit_ms={e: 1.0 for e in range(1, chain.num_exits + 1)})
    with EdgentAgent(client, cands, AgentOptions(deadline_ms=100, probe_idle_s=None, calibrate=True)) as agent:
        offline = agent.device_exit_offline_ms
        agent.exit_calibration = type(agent.exit_calibration)()
        agent.exit_runs = {e: 10 for e in offline}  # past the prior
        for _ in range(3):
            agent.exit_calibration.observe("device", offline[1], offline[1] * 1.0, 1)
        assert agent.fallback_exit_ms()[1] == pytest.approx(offline[1])
        for _ in range(5):  # the device is slower now: exit 3 run as plans
            agent.exit_calibration.observe("device", offline[3], offline[3] * 1.6, 3)
        budget = agent.fallback_exit_ms()
        assert budget[1] == pytest.approx(offline[1] * 1.6) and budget[3] == pytest.approx(offline[3] * 1.6)
        client.device_exit_ms = budget
        assert client.give_up_ms(100) == pytest.approx(100 - min(budget.values()) - client.fallback_switch_ms)


def test_a_fallback_keeps_the_plans_margin_when_it_chooses_its_exit(chain, cands):
    """A fallback that starts early (the edge refused the request at once) has most of the deadline left; it
    takes the most accurate exit that ends with the plans' margin to spare, not one that holds the device to the
    deadline (and the next request behind it); with less than that left, the fastest exit as before."""
    client = DeviceClient("127.0.0.1", 1, chain, device_exit_ms={e: 1.0 for e in range(1, chain.num_exits + 1)})
    with EdgentAgent(client, cands, AgentOptions(deadline_ms=100, margin=0.15, probe_idle_s=None)):
        assert client.fallback_margin_ms == pytest.approx(15.0)
        client.exit_accuracy = {1: 0.5, 2: 0.6, 3: 0.7, 4: 0.71, 5: 0.72}
        client.device_exit_ms = {1: 10.0, 2: 40.0, 3: 60.0, 4: 90.0, 5: 95.0}
        assert client.fallback_exit(1, 70.0) == 2  # exit 3 would fit 70 ms with 10 to spare only
        assert client.fallback_exit(1, 80.0) == 3
        assert client.fallback_exit(1, 20.0) == 1  # nothing fits with the margin: the fastest
        client.fallback_margin_ms = 0.0
        assert client.fallback_exit(1, 70.0) == 3


def test_a_slow_hello_does_not_set_the_rtt_for_good(chain, cands):
    """The HELLO's round trip carries the edge's handshake work and the WELCOME; timed on a busy moment it can be
    longer than every later request's network time, which then gives no bandwidth sample at all. The agent times
    one HEALTH round trip on a fresh connection, so the RTT is the smaller of the two."""
    with ThreadedServer({chain.name: chain}, ServerConfig(port=0)) as s:
        client = DeviceClient("127.0.0.1", s.port, chain, device_exit_ms={e: 1.0 for e in range(1, chain.num_exits + 1)})
        real = client.estimator.observe_rtt
        calls = []

        def slow_first(rtt_ms: float) -> None:  # the HELLO's round trip, as a busy moment would stretch it
            calls.append(rtt_ms)
            real(rtt_ms + 50.0 if len(calls) == 1 else rtt_ms)

        client.estimator.observe_rtt = slow_first
        with EdgentAgent(client, cands, AgentOptions(deadline_ms=100, probe_idle_s=None)) as agent:
            assert len(calls) == 2  # the HELLO's and the HEALTH's
            assert agent.rtt_ms < 50.0 and agent.rtt_ms == pytest.approx(calls[1])
        client.close()
