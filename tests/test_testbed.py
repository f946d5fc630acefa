"""The testbed: the edge in its own network namespace behind a tc-tbf-shaped veth pair (root), or an emulated link
(without root). End-to-end: equality with the local forward, the measured bandwidth, fallback and recovery, eight
concurrent devices, trace replay, and that nothing is left behind."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest
import torch

from edgent.data.cifar10 import to_model_input
from edgent.runtime import DeviceClient
from edgent.runtime.local import free_port, serve_process, stop_process
from edgent.testbed import (MIN_REPLAY_BPS, EmulatedTestbed, NetnsTestbed, TraceStep, cleanup_leftovers, replay_steps,
                            open_testbed)

from .conftest import needs_root, netns_names  # and the ``chain`` fixture (alexnet-cifar10, random weights)


@pytest.fixture(scope="module")
def images():
    return torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))


def edge_in(tb, port: int, extra=()):
    """Start `edgent serve` on the edge side of ``tb``."""
    if tb.kind == "netns":
        return serve_process(port, host=tb.edge_host, prefix=["ip", "netns", "exec", tb.netns], extra=extra)
    return serve_process(port, extra=extra)


@needs_root
def test_netns_testbed_is_created_and_removed():
    with NetnsTestbed(5e6, delay_ms=2) as tb:
        assert tb.netns in netns_names()
        qd = subprocess.run(["tc", "qdisc", "show", "dev", tb.dev_if], capture_output=True, text=True).stdout
        assert "tbf" in qd and "5Mbit" in qd
        tb.set_rate(2e6)
        qd = subprocess.run(["tc", "qdisc", "show", "dev", tb.dev_if], capture_output=True, text=True).stdout
        assert "2Mbit" in qd
        name, dev = tb.netns, tb.dev_if
    assert name not in netns_names()
    assert subprocess.run(["ip", "link", "show", dev], capture_output=True).returncode != 0


@needs_root
def test_removed_on_failure_and_leftovers_cleaned():
    with pytest.raises(RuntimeError):
        with NetnsTestbed(1e6) as tb:
            name = tb.netns
            raise RuntimeError("a failing run")
    assert name not in netns_names()
    # a namespace left by a process that no longer exists (pid 4194303 > pid_max default is never alive)
    subprocess.run(["ip", "netns", "add", "edgent-4194303-1"], check=True)
    assert "edgent-4194303-1" in cleanup_leftovers()
    assert "edgent-4194303-1" not in netns_names()


@needs_root
@pytest.mark.slow
def test_coinference_on_testbed_equals_local_forward(chain, images):
    x = to_model_input(images[:2])
    with NetnsTestbed(100e6, delay_ms=2) as tb:
        port = free_port()
        proc = edge_in(tb, port)
        try:
            with DeviceClient(tb.edge_host, port, chain, link=tb.link) as c, torch.inference_mode():
                for ep in chain.exit_points:
                    ref = chain(x, exit=ep.exit)
                    n = ep.num_units
                    for p in sorted({0, 1, n // 2, n - 2, n - 1}):
                        for codec in ("float32", "int8"):
                            r = c.infer(images[:2], ep.exit, p, codec)
                            assert r.where == "edge", r.fallback_reason
                            err = float((r.logits - ref).abs().max())
                            tol = 1e-4 if codec == "float32" else 0.05 * float(ref.abs().max()) + 1e-3
                            assert err <= tol, (ep.exit, p, codec, err)
                    r = c.infer(images[:2], ep.exit, 0, "uint8")
                    assert r.where == "edge" and float((r.logits - ref).abs().max()) <= 1e-4
        finally:
            stop_process(proc)


@needs_root
@pytest.mark.slow
def test_one_mbit_link_is_measured_within_ten_percent(chain, images):
    rate = 1e6
    with NetnsTestbed(rate, delay_ms=10) as tb:
        port = free_port()
        proc = edge_in(tb, port)
        try:
            with DeviceClient(tb.edge_host, port, chain, link=tb.link) as c:
                for _ in range(6):  # 4 images at the input: ~49 KB, ~0.4 s per request at 1 Mbit/s
                    r = c.infer(images, 5, 0, "float32")
                    assert r.where == "edge"
                est = c.estimator.rate_bps
                assert est == pytest.approx(rate, rel=0.10), est
                assert c.estimator.rtt_ms >= 10
                # the rate changed by the testbed is seen by the estimator
                tb.set_rate(2e6)
                for _ in range(8):
                    c.infer(images, 5, 0, "float32")
                assert c.estimator.rate_bps == pytest.approx(2e6, rel=0.15)
        finally:
            stop_process(proc)


@pytest.mark.slow
def test_testbed_kill_edge_falls_back_and_recovers(chain, images):
    with open_testbed(20e6, delay_ms=4) as tb:
        port = free_port()
        proc = edge_in(tb, port)
        try:
            c = DeviceClient(tb.edge_host, port, chain, link=tb.link, max_backoff_s=0.2)
            assert c.infer(images[:1], 4, 5, "float16").where == "edge"
            stop_process(proc, sig=9)
            r = c.infer(images[:1], 4, 5, "float16", deadline_ms=1000)
            assert r.where == "fallback"
            with torch.inference_mode():
                assert torch.allclose(r.logits, chain(to_model_input(images[:1]), exit=r.exit), atol=1e-4)
            proc = edge_in(tb, port)
            for _ in range(100):
                r = c.infer(images[:1], 4, 5, "float16")
                if r.where == "edge":
                    break
                threading.Event().wait(0.05)
            assert r.where == "edge"
            c.close()
        finally:
            stop_process(proc)


@pytest.mark.slow
def test_testbed_serves_eight_concurrent_devices(chain, images):
    with open_testbed(50e6, delay_ms=2) as tb:
        port = free_port()
        proc = edge_in(tb, port, extra=["--threads", "2"])
        try:
            with torch.inference_mode():
                ref = chain(to_model_input(images[:1]), exit=2)
            bad: list[str] = []
            served = [0] * 8

            def device(i: int) -> None:
                try:
                    with DeviceClient(tb.edge_host, port, chain, link=tb.link, device_exit_ms={2: 1.0}) as c:
                        for _ in range(6):
                            r = c.infer(images[:1], 2, i, "float32")
                            if r.where != "edge" or not torch.allclose(r.logits, ref, atol=1e-4):
                                bad.append(f"{i}: {r.where} {r.fallback_reason}")
                            served[i] += 1
                except Exception as exc:  # noqa: BLE001
                    bad.append(f"{i}: {exc!r}")

            ts = [threading.Thread(target=device, args=(i,)) for i in range(8)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(120)
            assert not bad and served == [6] * 8
        finally:
            stop_process(proc)


def test_emulated_testbed_says_so_and_changes_rate():
    tb = EmulatedTestbed(1e6, delay_ms=5)
    assert tb.kind == "emulated" and "EMULATED" in tb.describe() and tb.link.emulated
    tb.set_rate(3e6)
    assert tb.link.rate_bps == 3e6
    tb.close()


def test_trace_replay_changes_the_rate(tmp_path):
    tb = EmulatedTestbed(1e6)
    rep = tb.replay([TraceStep(0.0, 2e6), TraceStep(0.05, 3e6)])
    rep.join(2)
    assert [r for _, r in rep.applied] == [2e6, 3e6] and tb.link.rate_bps == 3e6
    tb.close()


def test_replay_of_a_loaded_trace_keeps_outages_at_the_floor(tmp_path):
    """The one trace loader (edgent.adapt.traces) keeps an outage as 0 bit/s; the one replay policy runs it at
    MIN_REPLAY_BPS instead of at the previous rate."""
    from edgent.adapt.traces import load_trace

    f = tmp_path / "trace.log"
    f.write_text("10.0\t1.5\n10.5\t0\n11.0\t0.5\n")
    tr = load_trace(f).scaled(0.5)
    assert list(tr.rate_bps) == [0.75e6, 0.0, 0.25e6]
    steps = replay_steps(tr.time_s, tr.rate_bps)
    assert steps == [TraceStep(0.0, 0.75e6), TraceStep(0.5, MIN_REPLAY_BPS), TraceStep(1.0, 0.25e6)]
    # from the middle of a step: the rate in force then, and nothing after t_end
    assert replay_steps(tr.time_s, tr.rate_bps, t_begin=0.7, t_end=1.0) == [TraceStep(0.0, MIN_REPLAY_BPS)]


@needs_root
def test_set_rate_and_replay_change_a_running_testbed(tmp_path, capsys):
    """`edgent testbed set-rate` / `replay` change the link of a testbed `edgent testbed up` made, from another
    command, and remember the rate; `down` removes it whatever happened."""
    from edgent.cli.main import main
    from edgent.testbed import state_dir

    name = f"t{os.getpid()}"

    def tbf_rate() -> str:
        st = __import__("json").loads((state_dir() / f"{name}.json").read_text())
        return subprocess.run(["tc", "qdisc", "show", "dev", st["dev_if"]], capture_output=True, text=True).stdout

    trace = tmp_path / "trace.log"
    trace.write_text("0.0\t0.7\n0.3\t0\n0.6\t0.3\n")  # Norway-style text: seconds, Mbit/s; an outage
    try:
        assert main(["testbed", "up", "--name", name, "--rate-bps", "2000000"]) == 0
        assert "2Mbit" in tbf_rate()
        assert main(["testbed", "set-rate", "500kbit", "--name", name]) == 0
        assert "500Kbit" in tbf_rate()
        assert __import__("json").loads((state_dir() / f"{name}.json").read_text())["rate_bps"] == 500e3
        assert main(["testbed", "replay", str(trace), "--name", name]) == 0
        assert "300Kbit" in tbf_rate()
    finally:
        main(["testbed", "down", "--name", name])
    assert f"edgent-up-{name}" not in netns_names() and not (state_dir() / f"{name}.json").exists()
    capsys.readouterr()
    assert main(["testbed", "set-rate", "1Mbit", "--name", name]) == 2  # a testbed that is not up: said so
    assert "no testbed" in capsys.readouterr().err
