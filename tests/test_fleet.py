"""Many devices, one edge: the edge's wait in the plans (edgent.plan.load), admission control, batching across
devices (edgent.runtime.compute.BatchQueue / BatchingCompute), and a device that moves its work onto itself when
the edge saturates."""

from __future__ import annotations

import asyncio
import heapq
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from edgent.adapt.config_map import Candidates
from edgent.plan.load import EdgeLoadModel, predicted_wait_ms, wait_from_load
from edgent.plan.sources import table_for_model
from edgent.profile.throttle import Slowdown, role_emulation
from edgent.runtime import DeviceClient, ServerConfig
from edgent.runtime.agent import AgentOptions, EdgentAgent
from edgent.runtime.compute import BatchingCompute, BatchQueue, LocalCompute, Pending, compute_job, release_at
from edgent.runtime.local import ThreadedServer
from edgent.runtime.server import EdgeServer

MODEL = "alexnet-cifar10"


# ---------------------------------------------------------------------------------------------- the load model
def test_predicted_wait_counts_every_request_ahead_and_the_window():
    assert predicted_wait_ms(3, 1, 2, 10.0) == 20.0
    assert predicted_wait_ms(3, 1, 2, 10.0, batch_window_ms=2.0) == 22.0
    assert predicted_wait_ms(5, 0, 1, None) == 0.0  # nothing measured yet: no wait predicted
    load = {"queue_length": 4, "in_service": 2, "workers": 1, "mean_compute_ms": 8.0, "mean_service_ms": 2.0}
    assert wait_from_load(load) == 12.0  # batched: the service time per request, not a batch's compute
    assert wait_from_load({**load, "mean_service_ms": None}) == 48.0
    assert wait_from_load(None) == 0.0 and wait_from_load(7.5) == 7.5
    with pytest.raises(Exception, match="load"):
        wait_from_load({"queue_length": "many"})
    # the edge says how much work is left of those in service: it replaces counting them whole
    assert predicted_wait_ms(2, 1, 1, 10.0, in_service_left_ms=3.0) == 23.0
    assert predicted_wait_ms(0, 2, 2, 10.0, in_service_left_ms=0.0) == 0.0
    assert wait_from_load({**load, "in_service_left_ms": 1.0}) == 9.0  # 4 waiting x 2 ms + 1 ms left


def test_the_load_model_learns_from_replies_and_forgets_without_them():
    t = [0.0]
    m = EdgeLoadModel(half_life_s=1.0, weight=0.5, clock=lambda: t[0])
    assert m.queue_ms() == 0.0  # no reply yet: an idle edge is assumed
    m.observe({"queue_length": 9, "in_service": 1, "workers": 1, "mean_compute_ms": 10.0}, queue_ms=40.0)
    assert m.queue_ms() == pytest.approx(100.0)  # the edge's own prediction is the larger
    m.observe({"queue_length": 0, "in_service": 0, "workers": 1, "mean_compute_ms": 10.0}, queue_ms=120.0)
    assert m.queue_ms() == pytest.approx(80.0)  # the waits measured: running mean 0.5 * 40 + 0.5 * 120
    t[0] = 2.0  # two half-lives without news
    assert m.queue_ms() == pytest.approx(20.0)
    m.observe({"queue_length": 30, "in_service": 1, "workers": 1, "mean_compute_ms": 10.0}, refused=True)
    assert m.queue_ms() == pytest.approx(310.0) and m.refusals == 1
    with pytest.raises(Exception, match="half-life"):
        EdgeLoadModel(half_life_s=0)


# ---------------------------------------------------------------------------------------------- batching policy
@dataclass(frozen=True)
class FakeJob:
    group: str


def test_release_at_is_the_window_or_the_last_safe_moment():
    assert release_at(10.0, 0.005, [None, None], 0.002) == pytest.approx(10.005)
    assert release_at(10.0, 0.005, [10.004, None], 0.002) == pytest.approx(10.002)
    assert release_at(10.0, 0.005, [10.001], 0.002) < 10.0  # already past: released at once


def _simulate(queue: BatchQueue, arrivals: list[Pending], predict_ms, workers: int) -> list[tuple[float, list]]:
    """Drive ``queue`` by a fake clock: jobs arrive at their times, batches are released when due and started
    when a worker is free, each taking exactly its predicted compute time. Returns (start, batch) per batch."""
    events: list[tuple[float, int, str, object]] = [(a.t_arrival, i, "arrive", a) for i, a in enumerate(arrivals)]
    heapq.heapify(events)
    seq = len(arrivals)
    busy = 0
    started: list[tuple[float, list]] = []
    timer_at = None
    while events:
        now, _, kind, obj = heapq.heappop(events)
        if kind == "arrive":
            queue.add(obj, now)
        elif kind == "done":
            busy -= 1
        queue.release_due(now)
        while busy < workers:
            batch = queue.take(now)
            if batch is None:
                break
            busy += 1
            started.append((now, batch))
            seq += 1
            heapq.heappush(events, (now + predict_ms(batch[0].job, len(batch)) / 1e3, seq, "done", None))
        t = queue.next_release()
        if t is not None and t != timer_at:
            timer_at = t
            seq += 1
            heapq.heappush(events, (max(t, now), seq, "timer", None))
    assert not queue.waiting()
    return started


@pytest.mark.parametrize("workers", [1, 2, 64])
def test_a_batch_never_holds_a_request_past_the_point_where_its_deadline_would_be_missed(workers):
    rng = np.random.default_rng(workers)
    predict_ms = lambda job, n: 2.0 + 0.5 * n  # noqa: E731 - the predicted batch compute, ms
    arrivals = []
    t = 0.0
    for _ in range(400):
        t += rng.exponential(0.0015)
        budget_s = rng.choice([None, rng.uniform(0.001, 0.004), rng.uniform(0.004, 0.05)])
        arrivals.append(Pending(FakeJob(str(rng.integers(0, 3))), b"", t,
                                None if budget_s is None else t + budget_s))
    queue = BatchQueue(0.010, 16, predict_ms)
    started = _simulate(queue, arrivals, predict_ms, workers)
    assert sum(len(b) for _, b in started) == len(arrivals)
    assert max(len(b) for _, b in started) > 4  # batches do form
    assert all(len({i.job.group for i in b}) == 1 and len(b) <= 16 for _, b in started)
    for start, batch in started:
        end = start + predict_ms(batch[0].job, len(batch)) / 1e3
        for i in batch:
            if i.deadline_at is None:
                continue
            alone_ok = i.deadline_at - i.t_arrival >= predict_ms(i.job, 1) / 1e3
            if workers == 64:  # a free worker always: only the batching can make a request late
                if alone_ok:
                    # never held past its last safe moment: it ends in time, or it was in a batch it could not
                    # leave (released at once when a newcomer would have been too many)
                    assert end <= i.deadline_at + 1e-12 or start == pytest.approx(i.t_arrival), (start, i)
                else:
                    assert start == pytest.approx(i.t_arrival)  # hopeless alone: not held at all


def test_a_full_or_idle_window_releases_at_once_or_at_its_end():
    predict_ms = lambda job, n: 1.0  # noqa: E731
    q = BatchQueue(0.005, 3, predict_ms)
    for k in range(3):
        q.add(Pending(FakeJob("a"), b"", 0.0, None), 0.0)
    assert [len(b) for b in q.ready] == [3] and not q.open  # full: released at once
    q.add(Pending(FakeJob("a"), b"", 1.0, None), 1.0)
    assert q.next_release() == pytest.approx(1.005)
    q.release_due(1.004)
    assert q.open
    q.release_due(1.005)
    assert not q.open and len(q.ready) == 2


# ---------------------------------------------------------------------------------------------- batching engine
def _job(server: EdgeServer, chain, exit_: int, point: int, codec: str = "float32", batch: int = 1):
    shape = [batch, *chain.unit_input_shape(exit_, point)]
    return server._check_request({"model": chain.name, "exit": exit_, "partition": point, "codec": codec,
                                  "shape": shape})


def test_batched_results_equal_one_by_one_and_the_timings_say_the_batch(chain):
    server = EdgeServer({chain.name: chain}, ServerConfig(port=0))
    jobs = [_job(server, chain, 5, 2), _job(server, chain, 5, 2, batch=2), _job(server, chain, 3, 0, "uint8")]
    g = torch.Generator().manual_seed(1)
    work = []
    for k in range(12):
        job = jobs[k % 3]
        x = (torch.randint(0, 256, job.shape, dtype=torch.uint8, generator=g) if job.codec.kind == "pixels"
             else torch.randn(job.shape, generator=g))
        work.append((job, job.codec.encode(x)))

    async def main():
        engine = BatchingCompute({chain.name: chain}, threads=1, window_ms=50.0, max_batch=16)
        await engine.start()
        try:
            return await asyncio.gather(*[engine.run(job, payload, None) for job, payload in work])
        finally:
            await engine.stop()

    out = asyncio.run(main())
    sizes = [t["batch_size"] for _, t in out]
    assert max(sizes) > 1
    for (job, payload), (logits, timings) in zip(work, out):
        ref, _ = compute_job(job, payload)
        assert logits.shape == ref.shape and logits.dtype == torch.float32
        torch.testing.assert_close(logits, ref, rtol=1e-4, atol=1e-4)
        assert set(timings) >= {"queue_ms", "decode_ms", "compute_ms", "encode_ms", "batch_size"}


def test_the_server_refuses_what_it_cannot_serve_in_time_and_says_why(chain):
    """Admission control: a request whose remaining deadline is shorter than the edge's predicted wait is
    answered ``overloaded`` at once, with the reason and the load; the device falls back on itself."""
    with ThreadedServer({chain.name: chain}, ServerConfig(port=0, threads=1)) as srv:
        client = DeviceClient("127.0.0.1", srv.port, chain, device_exit_ms={e: 1.0 for e in range(1, 6)})
        x = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
        assert client.infer(x, 5, 0, "uint8", deadline_ms=5000).where == "edge"  # measured compute now known
        compute = srv.server.compute
        compute._waiting = 50  # a long queue, as the engine reports it
        try:
            r = client.infer(x, 5, 0, "uint8", deadline_ms=50)
        finally:
            compute._waiting = 0
        assert r.where == "fallback" and "overloaded" in r.fallback_reason and "deadline" in r.fallback_reason
        assert r.edge_load["queue_length"] == 50
        client.send_deadline = False  # (the paper's device says nothing of its deadline: no early refusal)
        assert client.infer(x, 5, 0, "uint8", deadline_ms=5000).where == "edge"
        client.close()


def test_the_engine_counts_the_work_left_of_what_is_in_service():
    """A computation in service counts for what is predicted to be left of it, not as a whole one."""
    compute = LocalCompute({}, threads=1)
    assert compute.in_service_left_ms() is None and compute.load().in_service_left_ms is None
    now = time.perf_counter()
    compute._running = {0: (now - 3600.0, 10.0), 1: (now + 3600.0, 10.0)}  # long overdue; (not started yet)
    assert compute.in_service_left_ms() == pytest.approx(10.0)
    compute._in_service, compute._waiting, compute._mean_compute_ms = 2, 3, 10.0
    assert compute.load().predicted_wait_ms() == pytest.approx(40.0)  # 3 waiting x 10 ms + 10 ms left
    token = compute._started(5.0)
    compute._ended(token)
    assert token not in compute._running


def test_admission_counts_the_work_in_service_fairly_and_the_requests_own_compute(chain):
    """The edge refuses only when what is really ahead of a request, plus its own kind of computation, exceeds
    what the request has left: a computation in service that is nearly done does not count as a whole one, and
    a short computation is not priced at the mean of the long ones."""
    with ThreadedServer({chain.name: chain}, ServerConfig(port=0, threads=1)) as srv:
        client = DeviceClient("127.0.0.1", srv.port, chain, device_exit_ms={e: 1.0 for e in range(1, 6)})
        x = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
        assert client.infer(x, 5, 0, "uint8", deadline_ms=5000).where == "edge"  # its group's compute known
        compute = srv.server.compute
        own_ms = compute.expected_compute_ms(srv.server._job(
            {"model": chain.name, "exit": 5, "partition": 0, "codec": "uint8", "shape": [1, 3, 32, 32]},
            3 * 32 * 32))
        assert 0 < own_ms < 1000
        deadline_ms = own_ms + 400.0
        compute._mean_compute_ms = 1000.0  # other groups' computations are long
        compute._in_service = 1  # one of them in service, nearly done: 1 ms left
        compute._running = {-1: (time.perf_counter() + 3600.0, 1.0)}
        try:
            served = client.infer(x, 5, 0, "uint8", deadline_ms=deadline_ms + 1.0)
            compute._running = {-1: (time.perf_counter() + 3600.0, 500.0)}  # now 500 ms are left of it
            refused = client.infer(x, 5, 0, "uint8", deadline_ms=deadline_ms + 1.0)
        finally:
            compute._in_service, compute._running = 0, {}
        assert served.where == "edge", served.fallback_reason
        assert refused.where == "fallback" and "overloaded" in refused.fallback_reason
        client.close()


def test_an_idle_edge_admits_a_request_whose_kind_was_once_slow_and_learns_its_compute(chain):
    """A kind of request whose running mean once rose past every deadline (one computation stalled by the host)
    is not refused for good: an idle edge admits it, computes it, and the measured compute brings the mean back;
    while other requests are ahead of it, the same mean still counts."""
    with ThreadedServer({chain.name: chain}, ServerConfig(port=0, threads=1)) as srv:
        client = DeviceClient("127.0.0.1", srv.port, chain, device_exit_ms={e: 1.0 for e in range(1, 6)})
        x = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
        assert client.infer(x, 5, 0, "uint8", deadline_ms=5000).where == "edge"
        compute = srv.server.compute
        job = srv.server._job({"model": chain.name, "exit": 5, "partition": 0, "codec": "uint8",
                               "shape": [1, 3, 32, 32]}, 3 * 32 * 32)
        compute._group_compute_ms[job.group] = 10_000.0  # one stalled computation, as the mean remembers it
        compute._in_service = 1  # another request in service: the stale mean counts, the request is refused
        try:
            busy = client.infer(x, 5, 0, "uint8", deadline_ms=2000)
        finally:
            compute._in_service = 0
        assert busy.where == "fallback" and "overloaded" in busy.fallback_reason
        idle = client.infer(x, 5, 0, "uint8", deadline_ms=2000)  # idle: admitted and computed
        assert idle.where == "edge", idle.fallback_reason
        assert compute.expected_compute_ms(job) < 10_000.0  # the measured compute corrected the mean
        client.close()


# ---------------------------------------------------------------------------------------------- a saturated edge
class SlowCompute(LocalCompute):
    """A test edge made slow: each request holds the one worker ``service_s`` (asleep), then computes."""

    def __init__(self, models, service_s: float) -> None:
        super().__init__(models, threads=1, inline_when_idle=False)
        self.service_s = service_s
        self._sem: asyncio.Semaphore | None = None

    async def run(self, job, payload, deadline_ms=None):
        self._sem = self._sem or asyncio.Semaphore(1)
        t0 = time.perf_counter()
        with self._lock:
            self._waiting += 1
        async with self._sem:
            t1 = time.perf_counter()
            with self._lock:
                self._waiting -= 1
                self._in_service += 1
            try:
                await asyncio.sleep(self.service_s)
                logits, timings = compute_job(job, payload)
            finally:
                with self._lock:
                    self._in_service -= 1
        timings["compute_ms"] = (time.perf_counter() - t1) * 1e3
        self.record_compute_ms(timings["compute_ms"])
        return logits, {"queue_ms": (t1 - t0) * 1e3, **timings}


@pytest.mark.slow
def test_a_device_under_a_saturated_edge_moves_onto_itself_and_back(chain):
    """Eight other devices keep a slow edge's queue long: the load-aware device learns the wait from the edge's
    replies, serves on itself (on-device exits) and meets its requirement; when the others stop, the wait it
    believes decays, it tries the edge again and moves its work back."""
    factor = 12.0  # the device: x12 on its thread's CPU time, its table scaled from the profiled device's
    cands = Candidates([table_for_model(MODEL).with_device_factor(factor / role_emulation("device").slowdown)])
    srv = ThreadedServer({chain.name: chain}, ServerConfig(port=0, threads=1, max_queue=256),
                         compute=SlowCompute({chain.name: chain}, 0.02))
    stop = threading.Event()
    x = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))

    def hammer() -> None:
        c = DeviceClient("127.0.0.1", srv.port, chain, device_exit_ms={e: 1.0 for e in range(1, 6)})
        c.send_deadline = False
        while not stop.is_set():
            c.infer(x, 5, 0, "uint8")
        c.close()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the device's work on its own thread: its slowdown counts that thread's CPU time
    with srv:
        others = [threading.Thread(target=hammer, daemon=True) for _ in range(8)]
        for t in others:
            t.start()
        time.sleep(0.5)
        client = DeviceClient("127.0.0.1", srv.port, chain, slowdown=Slowdown(factor, "thread-cpu"))  # weak
        with EdgentAgent(client, cands, AgentOptions(deadline_ms=80, policy="edgent", probe_idle_s=None,
                                                       margin=0.2)) as agent:
            busy = [agent.handle(x) for _ in range(30)]
            stop.set()
            for t in others:
                t.join(10)
            time.sleep(0.2)
            freed = []
            for _ in range(40):
                freed.append(agent.handle(x))
                time.sleep(0.1)
    torch.set_num_threads(threads)
    later = busy[5:]

    assert sum(r["where"] == "device" for r in later) >= 0.8 * len(later), [r["where"] for r in busy]
    assert sum(r["met"] for r in later) >= 0.9 * len(later)
    assert any(r["predicted_ms"]["edge_queue"] > 100 for r in busy)
    assert sum(r["where"] == "edge" for r in freed[-10:]) >= 8, [r["where"] for r in freed]



# ---------------------------------------------------------------------------------------------- the benchmark
@pytest.mark.slow
def test_bench_fleet_quick_runs_every_method_against_a_real_edge(tmp_path):
    import json
    import subprocess
    import sys

    from .conftest import REPO

    r = subprocess.run([sys.executable, "-m", "edgent.cli.main", "bench", "fleet", "--quick", "--random-weights",
                        "--backend", "local", "--out-dir", str(tmp_path), "--records-dir", str(tmp_path / "rec")],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((tmp_path / "fleet-quick.json").read_text())
    # each device's agent records, one file per N, method and device
    records = tmp_path / "rec" / "N2-edgent-load-aware-device1.jsonl"
    rec = json.loads(records.read_text().splitlines()[0])
    assert {"plan", "predicted_ms", "measured_ms", "where", "fallback_reason"} <= set(rec)
    assert len(list((tmp_path / "rec").glob("*.jsonl"))) == 5 * (1 + 2)
    assert doc["options"]["records_dir"] == str(tmp_path / "rec")
    assert (tmp_path / "fleet-quick.png").is_file()
    assert doc["options"]["backend"] == "local" and set(doc["results"]) == {"1", "2"}
    for per in doc["results"].values():
        assert set(per) == {"edgent-load-blind", "edgent-load-aware", "edgent-load-aware-batching", "edge-only",
                            "device-only"}
        for m, s in per.items():
            assert s["requests"] > 0 and not s["errors"], (m, s)
            assert 0 <= s["met_share"] <= 1 and s["p95_ms"] > 0
        assert per["device-only"]["edge_throughput_per_s"] == 0
        assert per["edge-only"]["where"].get("edge", 0) > 0
    assert "batching_serves_2x_at_largest_N" in doc["checks"]


@pytest.mark.slow
def test_bench_fleet_capacity_runs_a_closed_loop_on_both_edges_for_a_larger_input(tmp_path):
    """``--capacity`` measures both edges in a closed loop, and a model of another input size (64x64) gets its
    CIFAR-10 images at that size (the edge answers them)."""
    import json
    import subprocess
    import sys

    from .conftest import REPO

    r = subprocess.run([sys.executable, "-m", "edgent.cli.main", "bench", "fleet", "--quick", "--random-weights",
                        "--model", "mobilenet_v3_small-cifar10", "--devices", "2", "--methods", "edge-only",
                        "--capacity", "--name", "cap", "--out-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((tmp_path / "cap.json").read_text())
    assert (tmp_path / "cap.png").is_file()
    edge_only = doc["results"]["2"]["edge-only"]
    assert not edge_only["errors"] and edge_only["where"].get("edge", 0) > 0, edge_only
    cap = doc["capacity"]
    assert cap["clients"] == 2 and len(cap["rounds"]) == 2
    for per in cap["rounds"]:
        assert per["one_by_one"]["answers"] > 0 and per["one_by_one"]["failed"] == 0
        assert per["one_by_one"]["max_batch_size"] == 1  # one by one: never batched
        assert per["batching"]["answers"] > 0 and per["batching"]["failed"] == 0
    assert cap["ratio"] == pytest.approx(cap["batching_per_s"] / cap["one_by_one_per_s"], rel=1e-2)
    assert doc["checks"]["capacity_ratio_batching_over_one_by_one"] == cap["ratio"]


def test_a_closed_loop_device_keeps_one_request_at_the_edge(chain):
    """The capacity test's device sends the edge-only configuration back to back, without a deadline, and
    records each answer's batch size; a request the edge refuses is counted as failed, with its reason."""
    from edgent.bench.fleet.device import run_closed_loop

    cands = Candidates([table_for_model(MODEL)])
    images = np.random.default_rng(0).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    cmd = {"id": 0, "closed_loop": True, "link_rate_bps": 1e9, "link_delay_ms": 0.0, "duration_s": 0.3}
    with ThreadedServer({chain.name: chain}, ServerConfig(port=0, threads=1)) as srv:
        res = run_closed_loop({**cmd, "port": srv.port, "t_start": time.monotonic()}, chain, cands, images)
    assert res["failed"] == 0 and len(res["answers"]) >= 2
    assert all(a[2] == 1 and a[1] > 0 for a in res["answers"])  # (done s, total ms, batch size)
    assert [a[0] for a in res["answers"]] == sorted(a[0] for a in res["answers"])
    wrong = np.zeros((2, 3, 16, 16), dtype=np.uint8)  # not the model's input: the edge refuses each request
    with ThreadedServer({chain.name: chain}, ServerConfig(port=0, threads=1)) as srv:
        res = run_closed_loop({**cmd, "duration_s": 0.1, "port": srv.port, "t_start": time.monotonic()}, chain,
                              cands, wrong)
    assert res["failed"] >= 1 and not res["answers"] and "shape" in res["failure_reasons"][0]


def test_capacity_summary_and_checks():
    """The capacity summary counts the answers that ended inside the measured window, and the checks say whether
    the batching edge's capacity is at least twice the one-by-one edge's."""
    from edgent.bench.fleet.options import FleetOptions
    from edgent.bench.fleet.run import checks, summarise_capacity

    opts = FleetOptions(methods=(), capacity=True, duration_s=10.0, warmup_s=2.0)
    answers = [{"answers": [[1.0, 5.0, 1], [2.5, 10.0, 4], [9.9, 20.0, 4]], "failed": 1,
                "failure_reasons": ["RemoteError: busy"]},
               {"answers": [[10.5, 7.0, 2], [3.0, 30.0, 2]], "failed": 0, "failure_reasons": []}]
    s = summarise_capacity(answers, opts)
    assert s["answers"] == 3 and s["throughput_per_s"] == pytest.approx(3 / 8.0, abs=0.01)
    assert s["failed"] == 1 and s["failure_reasons"] == ["RemoteError: busy"]
    assert s["mean_batch_size_per_answer"] == pytest.approx(10 / 3, abs=0.01) and s["max_batch_size"] == 4
    assert summarise_capacity([{"answers": [], "failed": 3}], opts)["answers"] == 0
    assert checks({}, opts, {"ratio": 2.4})["batching_capacity_2x"] is True
    assert checks({}, opts, {"ratio": 1.6})["batching_capacity_2x"] is False
    assert checks({}, opts, {"ratio": None})["batching_capacity_2x"] is False
    assert "batching_capacity_2x" not in checks({}, opts)


def test_fleet_options_refuse_nothing_to_run_and_a_missing_profile(tmp_path):
    from edgent.bench.fleet.options import FleetOptions
    from edgent.errors import ConfigError

    with pytest.raises(ConfigError, match="nothing to run"):
        FleetOptions(methods=())
    with pytest.raises(ConfigError, match="--edge-profile .* does not exist.*edgent profile"):
        FleetOptions(edge_profile=str(tmp_path / "none.json"))
    assert FleetOptions(methods=(), capacity=True).capacity


def test_serve_takes_the_backend_and_batching_options():
    from edgent.cli.main import build_parser

    args = build_parser().parse_args(["serve", "--backend", "local", "--batch-window-ms", "3", "--max-batch", "8"])
    assert args.backend == "local" and args.batch_window_ms == 3.0 and args.max_batch == 8
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--batch-window-ms", "nan"])
    with pytest.raises(Exception, match="batch-window-ms"):
        ServerConfig(batch_window_ms=-1.0).check()
    with pytest.raises(Exception, match="threads"):
        ServerConfig(batch_window_ms=2.0, threads=0).check()


def test_an_edge_can_be_emulated_slower_and_a_bad_factor_is_refused(chain):
    """``edgent serve --slowdown F`` (the fleet's ``--edge-factor``): the engine stretches each computation by F
    on its thread's CPU time; below 1 is refused with the option's name."""
    srv = EdgeServer({chain.name: chain}, ServerConfig(port=0, threads=1, slowdown=3.0))
    assert srv.compute.slowdown is not None and srv.compute.slowdown.factor == 3.0
    assert EdgeServer({chain.name: chain}, ServerConfig(port=0)).compute.slowdown is None
    batching = EdgeServer({chain.name: chain}, ServerConfig(port=0, batch_window_ms=2.0, slowdown=2.0)).compute
    assert isinstance(batching, BatchingCompute) and batching.slowdown.factor == 2.0
    with pytest.raises(Exception, match="--slowdown"):
        ServerConfig(port=0, slowdown=0.5).check()


def test_a_request_that_waited_past_its_deadline_is_not_computed(chain):
    """A worker that reaches a request whose device has given up (its deadline passed while it waited) answers
    ``overloaded`` without computing it, and the engine's counts stay right."""
    from edgent.errors import OverloadedError

    compute = LocalCompute({chain.name: chain}, threads=1)
    srv = EdgeServer({chain.name: chain}, ServerConfig(port=0))
    job = srv._job({"model": chain.name, "exit": 1, "partition": 0, "codec": "uint8", "shape": [1, 3, 32, 32]},
                   3 * 32 * 32)
    compute._waiting = 1
    now = time.perf_counter()
    with pytest.raises(OverloadedError, match="past its deadline"):
        compute._work(job, bytes(3 * 32 * 32), now - 0.2, now - 0.1)
    assert compute._waiting == 0 and compute._in_service == 0 and not compute._running
    compute._waiting = 1
    logits, _ = compute._work(job, bytes(3 * 32 * 32), now, now + 3600.0)  # still in time: computed
    assert logits.shape == (1, chain.num_classes)


def test_the_fleet_bench_waits_for_an_idle_edge(chain):
    """Between runs the fleet benchmark waits until the edge has nothing waiting or in service."""
    from edgent.bench.fleet.run import wait_until_idle
    from edgent.errors import EdgentError

    with ThreadedServer({chain.name: chain}, ServerConfig(port=0, threads=1)) as srv:
        assert wait_until_idle(srv.port, timeout_s=30.0) < 30.0  # idle: at once
        srv.server.compute._waiting = 3  # a backlog, as the engine reports it
        try:
            with pytest.raises(EdgentError, match="still busy"):
                wait_until_idle(srv.port, timeout_s=0.3)
        finally:
            srv.server.compute._waiting = 0
