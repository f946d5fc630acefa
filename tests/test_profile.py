"""Profiling: timing statistics, the emulated slowdown, the real cgroup quota, the profiler and the sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from edgent.errors import ConfigError, DataError
from edgent.latency.features import KNOWN_KINDS
from edgent.model.chain import MultiExitChain
from edgent.profile import DeviceEmulation, Slowdown, load_profile, profile_model, save_profile
from edgent.profile.profiler import time_units_in_place
from edgent.profile.sweep import sweep_cases
from edgent.profile.throttle import CGROUP_CPU_ROOT, QuotaCgroup, cpu_quota, shortest_period_us
from edgent.profile import throttle as throttle_module
from edgent.profile import timing as timing_module
from edgent.profile.timing import time_interleaved, time_per_call, time_windows

from .conftest import IS_ROOT, FakeClock, busy

needs_root_cgroup = pytest.mark.skipif(
    not (IS_ROOT and (CGROUP_CPU_ROOT / "cpu.cfs_quota_us").is_file()),
    reason="needs root and a cgroup-v1 cpu controller",
)


def test_time_per_call_and_windows_measure_sleep(monkeypatch):
    # on the real clock: a 2 ms sleep never takes less (a loaded host only adds, so no upper bound here)
    st = time_per_call(lambda: time.sleep(0.002), warmup=1, reps=5, min_total_s=0.0)
    assert st.method == "per-call" and st.samples >= 5
    assert 1.9 <= st.median_ms and st.p10_ms <= st.median_ms <= st.p90_ms
    w = time_windows(lambda: time.sleep(0.002), window_s=0.02, windows=2)
    assert w.method == "window-mean" and w.samples == 2 and 1.9 <= w.median_ms
    # on a fake clock: exactly the time of one call, per call and as a window's mean
    clock = FakeClock()
    monkeypatch.setattr(timing_module, "time", clock)
    st = time_per_call(lambda: clock.wait(0.002), warmup=1, reps=5, min_total_s=0.0, clock="wall")
    assert st.samples == 5 and st.median_ms == pytest.approx(2.0, abs=0.01)
    w = time_windows(lambda: clock.wait(0.002), window_s=0.02, windows=2)
    assert w.samples == 2 and w.median_ms == pytest.approx(2.0, abs=0.01)


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds  # wall time
    while time.perf_counter() < end:
        pass


def test_slowdown_emulation_multiplies_elapsed_time(monkeypatch):
    t0 = time.perf_counter()
    with Slowdown(4.0).scope():
        spin(0.02)
    assert time.perf_counter() - t0 >= 0.079  # really waits (a loaded host only adds)
    clock = FakeClock()  # the arithmetic, on a clock no other tenant moves
    monkeypatch.setattr(throttle_module, "time", clock)
    t0 = clock.perf_counter()
    with Slowdown(4.0).scope():
        clock.wait(0.02)  # the wall clock: waiting counts like work
    assert clock.perf_counter() - t0 == pytest.approx(4 * 0.02, abs=1e-3)
    clock.slept.clear()
    with Slowdown(1.0).scope():
        clock.work(0.02)
    assert clock.slept == []  # x1 adds nothing
    with pytest.raises(ConfigError):
        Slowdown(0.5)


def test_slowdown_on_the_cpu_clock_multiplies_work_not_waiting(monkeypatch):
    # the device role's clock: a call takes factor x the CPU time its thread spent, however long it waited
    t0 = time.perf_counter()
    with Slowdown(5.0, clock="thread-cpu").scope():
        busy(0.02)
    assert time.perf_counter() - t0 >= 0.099  # really waits (a loaded host only adds)
    clock = FakeClock()  # the arithmetic, on a clock no other tenant moves
    monkeypatch.setattr(throttle_module, "time", clock)
    t0 = clock.perf_counter()
    with Slowdown(5.0, clock="thread-cpu").scope():
        clock.work(0.02)
        clock.wait(0.01)  # preempted: not the thread's CPU time
    assert clock.perf_counter() - t0 == pytest.approx(5 * 0.02, abs=1e-3)
    clock.slept.clear()
    t0 = clock.perf_counter()
    with Slowdown(50.0, clock="thread-cpu").scope():
        clock.wait(0.03)  # waiting, no work: 50 x the wall time would be 1.5 s
    assert clock.slept == [] and clock.perf_counter() - t0 == pytest.approx(0.03, abs=1e-3)
    assert "x5" in Slowdown(5.0, clock="thread-cpu").describe() and "CPU" in Slowdown(5.0, clock="thread-cpu").describe()
    with pytest.raises(ConfigError, match="clock"):
        Slowdown(2.0, clock="cycles")


def test_device_role_is_one_thread_slowed_on_its_steady_cpu_clock():
    from edgent.profile.throttle import DEVICE_QUOTA, DEVICE_THREAD_CPU, role_emulation
    from edgent.profile.sweep import sweep_before, sweep_clock

    dev = role_emulation("device")
    assert dev.threads == 1 and dev.cpu_quota is None and dev.clock == "steady-cpu" and dev.slowdown > 1
    text = dev.describe()  # the facts: one thread, x100, the steady CPU clock
    assert "1 torch thread" in text and "x100" in text and "CPU" in text and "reference speed" in text
    assert DeviceEmulation.from_json(json.loads(json.dumps(dev.to_json()))) == dev
    assert DeviceEmulation.from_json({"threads": 1, "cpu_quota": 0.1, "slowdown": 7.0}).clock == "wall"  # old files
    assert sweep_clock(dev) == "steady-cpu" and sweep_before(dev) is None
    assert sweep_clock(DEVICE_THREAD_CPU) == "thread-cpu"
    assert sweep_clock(DEVICE_QUOTA) == "thread-cpu" and sweep_before(DEVICE_QUOTA) is not None
    assert dev.with_real_part(threads=2).clock == "wall" and dev.with_real_part().clock == "steady-cpu"
    for bad in ({"clock": "cycles"}, {"clock": "thread-cpu", "threads": 2},
                {"clock": "thread-cpu", "cpu_quota": 0.1}, {"clock": "steady-cpu", "threads": 2},
                {"clock": "steady-cpu", "cpu_quota": 0.1}):
        with pytest.raises(ConfigError, match="clock"):
            DeviceEmulation(**bad)


def test_device_throttle_of_the_device_role_slows_work_only(monkeypatch):
    from edgent.profile.device import DeviceThrottle

    with DeviceThrottle() as throttle:
        assert throttle.group is None and "x100" in throttle.describe() and "CPU" in throttle.describe()
        t0 = time.perf_counter()
        with throttle.scope():
            busy(0.002)
        last = throttle.slowdown.last  # the work's 2 ms of CPU at the host's reference speed
        assert last is not None and last.work_cpu_ms >= 1.99
        assert time.perf_counter() - t0 >= 100 * last.steady_ms / 1e3 - 1e-4  # x100 of it
        clock = FakeClock()  # the wait it adds, on a clock no other tenant moves
        monkeypatch.setattr(throttle_module, "time", clock)
        with throttle.scope():
            time.sleep(0.01)  # waiting (on the real clock), no work
        last = throttle.slowdown.last
        assert last.work_cpu_ms < 5  # a sleep's CPU time, not its 10 ms
        assert sum(clock.slept) == pytest.approx(100 * last.steady_ms / 1e3, abs=1e-3)  # x100 of that only


def test_cpus_awake_holds_a_wakeup_latency_request_and_says_when_it_cannot(tmp_path):
    from edgent.profile.cpuidle import PM_QOS_PATH, cpus_awake, current_state

    target = tmp_path / "cpu_dma_latency"  # stands in for the kernel's file: the request is 4 bytes, value 0
    target.write_bytes(b"")
    assert not current_state().awake
    with cpus_awake(path=target) as st:
        assert st.awake and current_state() is st and "kept awake" in st.describe()
        assert target.read_bytes() == (0).to_bytes(4, "little", signed=True)
        with cpus_awake(enabled=False) as inner:
            assert not inner.awake and "--allow-cpu-sleep" in inner.why and current_state() is inner
        assert current_state() is st
    assert not current_state().awake
    with cpus_awake(path=tmp_path / "missing") as st:
        assert not st.awake and "has no" in st.why and "may sleep" in st.describe()
    with pytest.raises(RuntimeError):  # the state unwinds on error
        with cpus_awake(path=target):
            raise RuntimeError("boom")
    assert not current_state().awake
    if hasattr(os, "geteuid") and os.geteuid() == 0 and PM_QOS_PATH.exists():
        with cpus_awake() as st:
            assert st.awake, st.why


def test_device_emulation_describes_real_and_emulated():
    emu = DeviceEmulation(threads=1, cpu_quota=0.1, slowdown=8.0)
    text = emu.describe()
    assert all(fact in text for fact in ("1 torch thread", "quota 0.1", "1000 us", "10000 us", "x8")), text
    other = DeviceEmulation(threads=2).describe()
    assert "2 torch thread" in other and "nothing" in other  # no slowdown
    assert DeviceEmulation.from_json(json.loads(json.dumps(emu.to_json()))) == emu
    assert emu.without_slowdown().slowdown == 1.0
    for bad in ({"threads": 0}, {"cpu_quota": 1.5}, {"slowdown": 0.9}):
        with pytest.raises(ConfigError):
            DeviceEmulation(**bad)
    assert shortest_period_us(0.1) == 10000 and shortest_period_us(0.5) == 2000 and shortest_period_us(1.0) == 1000


def test_quota_without_root_is_refused_not_faked(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ConfigError, match="needs root"):
        with cpu_quota(0.5):
            pass


def _edgent_cgroups() -> set[str]:
    return {p.name for p in CGROUP_CPU_ROOT.iterdir() if p.name.startswith("edgent-")} if CGROUP_CPU_ROOT.is_dir() else set()


@needs_root_cgroup
@pytest.mark.root
def test_cpu_quota_slows_this_process_and_cleans_up():
    before = _edgent_cgroups()
    own = Path("/proc/self/cgroup").read_text()
    t0 = time.perf_counter()
    busy(0.03)
    free = time.perf_counter() - t0
    with cpu_quota(0.2) as group:  # 20% of one CPU, 5 ms period
        assert group.path.is_dir() and os.getpid() in group.pids()
        assert group.quota_us == 1000 and group.period_us == 5000
        t0 = time.perf_counter()
        busy(0.03)
        throttled = time.perf_counter() - t0
        assert group.throttled_usec() > 0
    # 30 ms of CPU at 1 ms per 5 ms period cannot take less than ~29 periods, however loaded the host is.
    assert throttled > 0.12, (throttled, free)
    assert not group.path.exists() and _edgent_cgroups() == before
    assert Path("/proc/self/cgroup").read_text() == own
    with pytest.raises(RuntimeError):  # cleaned up on error too
        with cpu_quota(0.5) as group:
            raise RuntimeError("boom")
    assert not group.path.exists() and Path("/proc/self/cgroup").read_text() == own


@needs_root_cgroup
@pytest.mark.root
def test_quota_cgroup_throttles_a_subprocess():
    code = ("import time\nend=time.process_time()+0.04\nt=time.perf_counter()\n"
            "while time.process_time()<end: pass\nprint(time.perf_counter()-t)")
    free = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    with QuotaCgroup(0.1) as group:
        proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()\n" + code],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        group.add_pid(proc.pid)
        out, _ = proc.communicate("go\n", timeout=30)
        assert "1000 us" in group.describe() and "10000 us" in group.describe()
    assert float(out) > 0.3, (out, free)  # 40 ms CPU at 1 ms per 10 ms: >= ~0.37 s, whatever the load
    assert not group.path.exists()


def tiny_chain() -> MultiExitChain:
    trunk = [("conv1", nn.Conv2d(3, 8, 3, padding=1)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
             ("conv2", nn.Conv2d(8, 8, 3, padding=1)), ("relu2", nn.ReLU()), ("flat", nn.Flatten()),
             ("fc", nn.Linear(8 * 4 * 4, 10))]
    branch = [("pool", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(8, 10))]
    return MultiExitChain("tiny", trunk, [(3, branch)], (3, 8, 8), 10).eval()


def test_profiler_records_every_unit_and_round_trips(tmp_path):
    chain = tiny_chain()
    emu = DeviceEmulation(threads=1, slowdown=2.0)
    doc = profile_model(chain, "edge", emu, quick=True)
    assert doc["emulation"]["describe"] == emu.describe()
    assert [(r["exit"], r["index"], r["trunk"]) for r in doc["units"]] == (
        [(2, i, True) for i in range(7)] + [(1, 3 + i, False) for i in range(3)])
    for r in doc["units"]:
        assert 0 < r["measured_ms"] == pytest.approx(r["stats"]["median_ms"], abs=1e-4)
        assert r["ms"] == pytest.approx(2.0 * r["measured_ms"])
        assert r["stats"]["p10_ms"] <= r["stats"]["median_ms"] <= r["stats"]["p90_ms"]
    # the latency stage derives the paper's regression variables from the profile's unit record
    from edgent.latency.features import paper_feature_names, paper_features
    from edgent.model.describe import unit_from_json

    conv_layer = unit_from_json(doc["units"][0]["unit"]).layers[0]
    variables = dict(zip(paper_feature_names(conv_layer.kind), paper_features(conv_layer).tolist()))
    assert variables["input_size"] == 3 * 8 * 8
    assert variables["kernel_over_stride_sq_x_filters"] == 9 * 8
    prof = load_profile(save_profile(doc, tmp_path / "p.json"))
    assert prof.num_units == {1: 6, 2: 7}
    assert prof[(1, 0)] == prof[(2, 0)] == pytest.approx(doc["units"][0]["ms"])  # trunk units are shared
    assert prof.part_ms(1, 0, 6) == pytest.approx(sum(prof[(1, i)] for i in range(6)))
    assert prof.units[(1, 5)].layers[0].kind == "fc"
    with pytest.raises(DataError):
        load_profile(tmp_path / "missing.json")


def test_sweep_covers_every_kind_over_wide_ranges():
    cases = sweep_cases(scale=1.0)
    kinds = {}
    for c in cases[:: max(1, len(cases) // 120)] + [c for c in cases if not c.label.startswith("conv")]:
        layer, fn = c.build()
        kinds.setdefault(layer.kind, []).append(layer)
    assert set(kinds) == set(KNOWN_KINDS)
    convs = [c for c in cases if c.label.startswith("conv")]
    assert len(convs) >= 200
    labels = " ".join(c.label for c in convs)
    assert " g1 " in labels and "k11" in labels and "s2" in labels and "224x224" in labels
    assert any(c.label.split()[4] != "g1" and c.label.split()[1].split("->")[0] == c.label.split()[4][1:]
               for c in convs), "depthwise convolutions"
    sizes = [layer.input_size for layer in kinds["relu"]]
    assert min(sizes) < 1000 and max(sizes) > 100_000


@pytest.mark.slow
def test_profile_cli_sweep_and_fit(tmp_path):
    from edgent.cli.main import main
    from edgent.latency import load_predictor

    sweep = tmp_path / "sweep.json"
    assert main(["profile", "--sweep", "--role", "edge", "--threads", "1", "--quick", "--sweep-scale", "0.02",
                 "--out", str(sweep)]) == 0
    doc = json.loads(sweep.read_text())
    assert {r["layer"]["kind"] for r in doc["records"]} == set(KNOWN_KINDS)
    assert len(doc["loading"]) >= 2 and doc["overheads"]["part_overhead_ms"] >= 0
    out = tmp_path / "edge.json"
    assert main(["profile", "--fit", str(sweep), "--out", str(out)]) == 0
    pred = load_predictor(out)
    assert pred.role == "edge" and pred.emulation.threads == 1
    assert main(["profile", "--model", "alexnet-cifar10", "--out", str(out)]) == 2  # no --role: clear error


def test_interleaved_timings_rank_work_by_duration(monkeypatch):
    clock = FakeClock()  # durations no other tenant can reorder
    monkeypatch.setattr(timing_module, "time", clock)
    fast, slow = (lambda: clock.wait(0.001)), (lambda: clock.wait(0.004))
    a, b = time_interleaved([fast, slow], throttled=False, rounds=3, calls=2, clock="wall")
    assert a.method == "interleaved per-call" and a.samples == 3 and a.calls == 6
    assert a.median_ms == pytest.approx(1.0, abs=0.01) and b.median_ms == pytest.approx(4.0, abs=0.01)
    seen = []
    time_interleaved([fast], throttled=False, rounds=2, calls=2, warmup=1, before=lambda: seen.append(1))
    assert len(seen) == 4  # once before every timed call, never before the warm-up
    w = time_interleaved([fast, slow], throttled=True, rounds=2, window_s=0.01)
    assert w[0].method == "interleaved window-mean"
    assert w[0].median_ms == pytest.approx(1.0, abs=0.01) and w[1].median_ms == pytest.approx(4.0, abs=0.01)


def test_units_are_timed_in_place_for_every_exit():
    chain = tiny_chain()
    x = torch.randn(1, *chain.input_shape)
    with torch.no_grad():
        got = time_units_in_place(chain, x, throttled=False, quick=True)
    assert set(got) == {(ep.exit, i) for ep in chain.exit_points for i in range(ep.num_units)}
    assert all(len(v) >= 6 and min(v) >= 0 for v in got.values())


def test_idle_bench_records_every_measurement():
    from edgent.bench.idle import SLEEPS_MS, run

    res = run(quick=True)
    assert set(res["cpu_ms_after_sleep"]) == {f"{s:g}" for s in SLEEPS_MS}
    assert all(v > 0 for v in res["cpu_ms_after_sleep"].values()) and res["cpu_ms_after_64mb_write"] > 0
    assert "windows" in res["quota"] or "skipped" in res["quota"]
    for w in res["quota"].get("windows", []):
        assert w["wall_over_cpu"] > 5  # a 10% quota turns CPU time into >= ~10x wall time (load only adds)
    edge = res["edge_threads_wall"]
    assert edge["back_to_back"]["p10_ms"] <= edge["back_to_back"]["median_ms"] <= edge["back_to_back"]["p90_ms"]
    states = res["cpu_state_after_100ms_idle"]
    for k in ("may_sleep", "awake"):
        assert states[k]["calls"] >= 3 and states[k]["p10_ms"] <= states[k]["median_ms"] <= states[k]["p90_ms"]
        assert 0 < states[k]["within_10pct_of_median"] <= 1


@needs_root_cgroup
@pytest.mark.root
def test_device_throttle_limits_only_inside_its_scope():
    """The device thread joins the quota group once and stays; the limit is on only inside scope(), so the
    device's own networking runs at full speed, and the group is removed at the end."""
    from edgent.profile.device import DeviceThrottle
    from edgent.profile.throttle import DeviceEmulation

    before = _edgent_cgroups()
    own = Path("/proc/self/cgroup").read_text()
    role = DeviceEmulation(threads=1, cpu_quota=0.1, slowdown=1.0)
    with DeviceThrottle(role) as throttle:
        group = throttle.group
        assert group is not None and (group.path / "cpu.cfs_quota_us").read_text().strip() == "-1"
        with throttle.scope():
            assert (group.path / "cpu.cfs_quota_us").read_text().strip() == "1000"
            t0 = time.perf_counter()
            busy(0.02)
            inside = time.perf_counter() - t0
        assert (group.path / "cpu.cfs_quota_us").read_text().strip() == "-1"
        assert group.path.name in Path("/proc/thread-self/cgroup").read_text()  # still a member
        held_back = group.throttled_usec()
        busy(0.02)
        assert group.throttled_usec() == held_back  # outside the scope the kernel never holds it back
        with throttle.scope():  # a second call: no second move, the limit is back on
            assert (group.path / "cpu.cfs_quota_us").read_text().strip() == "1000"
    # 20 ms of CPU at 1 ms per 10 ms period: at least ~10 periods whatever the load
    assert inside > 0.09 and held_back > 0, inside
    assert not group.path.exists() and _edgent_cgroups() == before
    assert Path("/proc/self/cgroup").read_text() == own
