"""The steady CPU clock: the device's work timed at the host's reference speed (edgent.profile.hostspeed)."""

from __future__ import annotations

import time

import pytest
import torch

from edgent.errors import ConfigError
from edgent.profile import hostspeed
from edgent.profile.hostspeed import REFERENCE_MS, SpeedProbe, SteadyCall, steady_ms
from edgent.profile import throttle as throttle_module
from edgent.profile.throttle import Slowdown
from edgent.profile.timing import call_timer, time_interleaved, time_per_call

from .conftest import FakeClock, busy


class FakeProbe(SpeedProbe):
    """A reference whose time is set by the test: the host at ``speed`` x its reference speed."""

    def __init__(self, speed: float) -> None:  # no matrices: the reference's time is the test's
        self.speed = speed
        self.calls = 0

    def cpu_ms(self) -> float:
        self.calls += 1
        return REFERENCE_MS / self.speed


def test_steady_ms_rescales_by_the_reference_around_the_work():
    assert steady_ms(10.0, REFERENCE_MS, REFERENCE_MS) == pytest.approx(10.0)
    # the host ran the reference 1.25x slower than its reference speed: the work would have taken 1/1.25 of it
    assert steady_ms(10.0, 1.25 * REFERENCE_MS, 1.25 * REFERENCE_MS) == pytest.approx(8.0)
    assert steady_ms(10.0, 1.0, 3.0, reference_ms=2.0) == pytest.approx(10.0)  # the mean of before and after
    call = SteadyCall(10.0, 2 * REFERENCE_MS, 2 * REFERENCE_MS, 5.0)
    assert call.host_speed == pytest.approx(0.5)
    assert set(call.to_json()) == {"work_cpu_ms", "probe_before_ms", "probe_after_ms", "steady_ms"}
    for bad in ((1.0, 0.0, 0.0), (1.0, -1.0, 0.5), (1.0, float("nan"), 1.0)):
        with pytest.raises(ConfigError, match="reference"):
            steady_ms(*bad)
    with pytest.raises(ConfigError, match="probe"):
        SpeedProbe(size=0)


def test_the_probe_times_real_work_on_the_thread_clock():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        probe = SpeedProbe(size=64, matmuls=2)
        assert probe.cpu_ms() > 0
        out, call = probe.time_call(lambda: busy(0.01) or "done")
    finally:
        torch.set_num_threads(old)
    assert out == "done"
    assert call.work_cpu_ms >= 9.9 and call.probe_before_ms > 0 and call.probe_after_ms > 0
    assert call.steady_ms == pytest.approx(steady_ms(call.work_cpu_ms, call.probe_before_ms, call.probe_after_ms))


def test_slowdown_on_the_steady_clock_takes_factor_x_the_work_at_reference_speed(monkeypatch):
    # a host running at half its reference speed: the 20 ms of CPU the work took are 10 ms at reference speed
    slow = FakeProbe(speed=0.5)
    monkeypatch.setattr(hostspeed, "_PROBE", slow)
    sd = Slowdown(5.0, clock="steady-cpu")
    t0 = time.perf_counter()
    with sd.scope():
        busy(0.02)
    assert time.perf_counter() - t0 >= 0.049  # really waits (a loaded host only adds)
    assert slow.calls == 2  # once before the work, once after
    assert sd.last is not None and sd.last.work_cpu_ms >= 19.9
    assert sd.last.steady_ms == pytest.approx(sd.last.work_cpu_ms * 0.5)
    clock = FakeClock()  # the call's length, on a wall clock no other tenant moves
    monkeypatch.setattr(throttle_module, "time", clock)
    t0 = clock.perf_counter()
    with sd.scope():
        busy(0.02)
    assert clock.perf_counter() - t0 == pytest.approx(5 * sd.last.steady_ms / 1e3, abs=1e-3)  # 5 x 10 ms, not x 20
    # at the reference speed it is the plain CPU clock; waiting costs nothing
    monkeypatch.setattr(hostspeed, "_PROBE", FakeProbe(speed=1.0))
    sd = Slowdown(5.0, clock="steady-cpu")
    t0 = clock.perf_counter()
    with sd.scope():
        busy(0.02)
        time.sleep(0.05)  # real waiting: not on the CPU clock
    assert 19.9 <= sd.last.work_cpu_ms < 45 and sd.last.steady_ms == pytest.approx(sd.last.work_cpu_ms)
    assert clock.perf_counter() - t0 == pytest.approx(5 * sd.last.steady_ms / 1e3, abs=1e-3)
    assert "reference speed" in sd.describe()
    # the body's error still passes through, after the call was timed and slowed
    with pytest.raises(RuntimeError, match="bad"):
        with sd.scope():
            raise RuntimeError("bad")
    assert sd.last is not None


def test_call_timer_on_each_clock(monkeypatch):
    monkeypatch.setattr(hostspeed, "_PROBE", FakeProbe(speed=2.0))  # a host twice its reference speed
    assert call_timer("steady-cpu")(lambda: busy(0.01)) == pytest.approx(20.0, rel=0.3)
    assert call_timer("thread-cpu")(lambda: time.sleep(0.02)) < 5.0  # waiting is not on the CPU clock
    assert call_timer("wall")(lambda: time.sleep(0.02)) >= 19.9
    st = time_per_call(lambda: busy(0.002), warmup=1, reps=3, min_total_s=0.0, clock="steady-cpu")
    assert st.method == "per-call steady-cpu" and st.median_ms == pytest.approx(4.0, rel=0.3)
    (st,) = time_interleaved([lambda: busy(0.002)], throttled=False, quick=True, clock="steady-cpu", rounds=2,
                             calls=1)
    assert st.method == "interleaved per-call steady-cpu" and st.median_ms == pytest.approx(4.0, rel=0.3)
    monkeypatch.setenv("EDGENT_PROFILE_CLOCK", "cycles")
    with pytest.raises(ConfigError, match="EDGENT_PROFILE_CLOCK"):
        call_timer()
