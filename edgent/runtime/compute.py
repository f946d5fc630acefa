"""Where the edge's computations run: the engine behind the edge server's wire protocol.

The server (:mod:`edgent.runtime.server`) owns the sockets, the framing, the bounds and the validation of each
request; once a request is checked it becomes an :class:`EdgeJob` and is handed to an :class:`EdgeCompute`, which
decodes the payload, runs the edge part of the chain and says how long each step took. :class:`LocalCompute` runs
the jobs in this process (a bounded pool of worker threads, or inline while the edge is idle); other engines (a
batching one, a cluster) implement the same four calls, so that the load a device is told means the same whichever
engine runs behind the server.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import itertools
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import torch

from edgent.codec import Codec
from edgent.errors import ConfigError, OverloadedError
from edgent.model.chain import MultiExitChain
from edgent.model.placement import PartRunner
from edgent.plan.load import predicted_wait_ms
from edgent.profile.throttle import Slowdown

#: weight of the newest compute time in the running mean reported to devices
MEAN_COMPUTE_WEIGHT = 0.2


@dataclass(frozen=True)
class EdgeJob:
    """One checked request for the edge: which model, exit and partition, how its payload is coded, its shape
    (batch first), the preprocessing raw pixels get (None otherwise) and the payload's size bound."""

    model: str
    chain: MultiExitChain
    exit: int
    partition: int
    codec: Codec
    shape: tuple[int, ...]
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None
    payload_bytes: int

    @functools.cached_property
    def group(self) -> tuple[Any, ...]:
        """Jobs of one group run the same computation on tensors of the same shape but for the batch size:
        they can be stacked into one batch."""
        return (self.model, self.exit, self.partition, self.codec.name, self.shape[1:],
                None if self.preprocess is None else id(self.preprocess))


@dataclass(frozen=True)
class ComputeLoad:
    """What an engine knows about its load: requests waiting for a worker, in service, the workers it has, a
    running mean of the compute time of one request (None before the first), the running mean of the worker time
    each request takes (``mean_service_ms``: one request's compute when computed one by one, a batch's compute
    over its size when batched; None: as ``mean_compute_ms``), and how long the engine may hold a request to
    batch it (``batch_window_ms``, 0 without batching), and the worker time predicted to be left of the
    computations in service (``in_service_left_ms``: each one's predicted compute time less the time it has run,
    summed; None: not known). :func:`edgent.plan.load.predicted_wait_ms` turns these into the wait of a new
    request (admission control on the edge, load-aware plans on the device)."""

    waiting: int
    in_service: int
    workers: int
    mean_compute_ms: float | None
    mean_service_ms: float | None = None
    batch_window_ms: float = 0.0
    in_service_left_ms: float | None = None

    @property
    def service_ms(self) -> float | None:
        """The worker time per request the engine measured (``mean_service_ms``, else ``mean_compute_ms``)."""
        return self.mean_compute_ms if self.mean_service_ms is None else self.mean_service_ms

    def predicted_wait_ms(self) -> float:
        """The wait (ms) of a request arriving now (:func:`edgent.plan.load.predicted_wait_ms`)."""
        return predicted_wait_ms(self.waiting, self.in_service, self.workers, self.service_ms, self.batch_window_ms,
                                 self.in_service_left_ms)


class EdgeCompute(abc.ABC):
    """An engine that computes edge jobs; the server calls :meth:`start` once, :meth:`run` per request (from its
    event loop), :meth:`load` with every answer, and :meth:`stop` once."""

    #: a short name for ``edgent serve``'s banner and the edge's replies ("local", "ray", ...)
    name: str = "engine"

    #: how many connections the server has open now (the server sets it; an engine alone counts one): an engine
    #: that would compute on the event loop does so only while one is open, since another device's request would
    #: wait in its socket meanwhile, in neither the edge's load nor its ``queue_ms``
    connections: Callable[[], int] = staticmethod(lambda: 1)

    async def start(self) -> None:
        """Get ready (warm the models up, connect to a cluster); the server accepts connections after it."""

    @abc.abstractmethod
    async def run(self, job: EdgeJob, payload: bytes, deadline_ms: float | None = None
                  ) -> tuple[torch.Tensor, dict[str, float]]:
        """Decode ``payload``, compute the job, and return the logits (float32, on the CPU) with the timings in
        ms of ``queue_ms``, ``decode_ms``, ``compute_ms`` and ``encode_ms`` (``batch_size`` where batched).
        ``deadline_ms``: how long the device can still wait for the answer, where it said so."""

    def run_inline(self, job: EdgeJob, payload: bytes, deadline_ms: float | None = None
                   ) -> tuple[torch.Tensor, dict[str, float]] | None:
        """What :meth:`run` returns, computed now in the caller (the event loop) where this engine would compute
        the job inline anyway (an idle local engine: ``LocalCompute``'s ``inline_when_idle``); None, with nothing
        done, where it would hand the job off (then the caller awaits :meth:`run`). Lets the server answer a frame
        in the callback that read it. By default never inline."""
        return None

    @abc.abstractmethod
    def load(self) -> ComputeLoad:
        """The engine's load now."""

    def occupancy(self) -> tuple[int, int, int]:
        """(requests waiting, in service, workers): the part of :meth:`load` that a full queue is judged by
        (engines whose :meth:`load` costs more than a look at their counters override it)."""
        load = self.load()
        return load.waiting, load.in_service, load.workers

    def describe(self) -> str:
        """One line for ``edgent serve``'s banner: the engine, its workers, where it runs the parts."""
        return self.name

    def expected_compute_ms(self, job: EdgeJob) -> float:
        """The compute time (ms) ``job`` is predicted to take once started: by default the engine's running mean
        of one computation (0 before the first). Engines that know better (per group) say so."""
        return self.load().mean_compute_ms or 0.0

    def busy(self) -> bool:
        """Whether any request is waiting or in service."""
        load = self.load()
        return bool(load.waiting or load.in_service)

    async def stop(self) -> None:
        """Release workers and connections (requests still in service may be dropped)."""


class LocalCompute(EdgeCompute):
    """Computes in this process: a pool of ``threads`` worker threads (inline in the event loop with
    ``threads=0``), and inline too when ``inline_when_idle``, nothing else is waiting or in service and one
    connection is open (with the edge idle and no other device connected no other request could use a worker
    meanwhile, so the hand-off would only add latency: measured by ``edgent bench runtime``, ``docs/runtime.md``;
    with other devices connected, their requests would wait unseen in their sockets during the computation).
    ``runners``: per model, what runs its parts where they do not run as ``chain.run_edge`` on the CPU (a GPU,
    float16, CUDA graphs: :class:`edgent.model.placement.PartRunner`).
    """

    name = "local"

    def __init__(self, models: dict[str, MultiExitChain], threads: int = 1, inline_when_idle: bool = True,
                 runners: dict[str, PartRunner] | None = None, slowdown: float = 1.0) -> None:
        self.models = models
        self.runners = runners or {}
        #: an emulated slower edge: each computation takes ``slowdown`` x its thread's CPU time (None: 1)
        self.slowdown = Slowdown(slowdown, "thread-cpu") if slowdown > 1.0 else None
        self.threads = threads
        self.inline_when_idle = inline_when_idle
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="edge-worker")
        self._lock = threading.Lock()
        self._waiting = 0
        self._in_service = 0
        self._mean_compute_ms: float | None = None
        #: per :attr:`EdgeJob.group`, the running mean of one computation's time (ms)
        self._group_compute_ms: dict[Any, float] = {}
        #: computations in service: token -> (perf_counter at their start, their predicted compute ms)
        self._running: dict[int, tuple[float, float]] = {}
        self._tokens = itertools.count()

    async def start(self) -> None:
        for name, chain in self.models.items():  # the first request is not slow
            runner = self.runners.get(name)
            with torch.inference_mode():
                if runner is None:
                    chain(torch.zeros((1, *chain.input_shape)))
                else:
                    runner.warm_up(chain.num_exits, 0)

    def describe(self) -> str:
        places = sorted({r.placement.describe() for r in self.runners.values()}) or ["cpu, float32, eager"]
        how = ("inline on the event loop" if not self.threads else
               f"{self.threads} worker thread{'s' if self.threads != 1 else ''}"
               f"{', inline when idle' if self.inline_when_idle else ''}")
        return f"local ({how}; parts on {'; '.join(places)})"

    def load(self) -> ComputeLoad:
        return ComputeLoad(self._waiting, self._in_service, self.threads,
                           None if self._mean_compute_ms is None else round(self._mean_compute_ms, 3),
                           in_service_left_ms=self.in_service_left_ms())

    def occupancy(self) -> tuple[int, int, int]:
        return self._waiting, self._in_service, self.threads

    def expected_compute_ms(self, job: EdgeJob) -> float:
        """The running mean of ``job``'s group's computations, else of all of them (0 before the first)."""
        m = self._group_compute_ms.get(job.group)
        return m if m is not None else (self._mean_compute_ms or 0.0)

    def in_service_left_ms(self) -> float | None:
        """The worker time (ms) predicted to be left of the computations in service: each one's predicted
        compute time less the time it has run (at least 0), summed (None when nothing is in service)."""
        with self._lock:
            running = list(self._running.values())
        if not running:
            return None
        now = time.perf_counter()
        return round(sum(max(ms - max(now - t0, 0.0) * 1e3, 0.0) for t0, ms in running), 3)

    def _started(self, expected_ms: float) -> int:
        """Note a computation that starts now, predicted to take ``expected_ms``; its token for :meth:`_ended`."""
        with self._lock:
            token = next(self._tokens)
            self._running[token] = (time.perf_counter(), expected_ms)
        return token

    def _ended(self, token: int) -> None:
        with self._lock:
            self._running.pop(token, None)

    def run_inline(self, job: EdgeJob, payload: bytes, deadline_ms: float | None = None
                   ) -> tuple[torch.Tensor, dict[str, float]] | None:
        if not (self.threads == 0 or (self.inline_when_idle and not self._waiting and not self._in_service
                                      and self.connections() <= 1)):
            return None
        with self._lock:
            self._waiting += 1
        return self._work(job, payload, time.perf_counter())

    async def run(self, job: EdgeJob, payload: bytes, deadline_ms: float | None = None
                  ) -> tuple[torch.Tensor, dict[str, float]]:
        out = self.run_inline(job, payload, deadline_ms)
        if out is not None:
            return out
        with self._lock:
            self._waiting += 1
        t = time.perf_counter()
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._work, job, payload, t,
                                                                None if deadline_ms is None else t + deadline_ms / 1e3)

    def _work(self, job: EdgeJob, payload: bytes, t_queued: float, t_deadline: float | None = None
              ) -> tuple[torch.Tensor, dict[str, float]]:
        """Runs in a worker thread (or inline): decode, compute the edge part, time each step. A request whose
        deadline (``t_deadline``, ``perf_counter``) passed while it waited is not computed: the device has given
        up on it, and the worker's time goes to the requests still waiting (OverloadedError)."""
        t0 = time.perf_counter()
        if t_deadline is not None and t0 > t_deadline:
            with self._lock:
                self._waiting -= 1
            raise OverloadedError(f"the request waited {(t0 - t_queued) * 1e3:.1f} ms at the edge, past its "
                                  f"deadline of {(t_deadline - t_queued) * 1e3:.1f} ms; not computed")
        token = self._started(self.expected_compute_ms(job))
        with self._lock:
            self._waiting -= 1
            self._in_service += 1
        try:
            logits, timings = compute_job(job, payload, self.runners.get(job.model), self.slowdown)
        finally:
            with self._lock:
                self._in_service -= 1
            self._ended(token)
        self.record_compute_ms(timings["compute_ms"], job)
        return logits, {"queue_ms": (t0 - t_queued) * 1e3, **timings}

    def record_compute_ms(self, compute_ms: float, job: EdgeJob | None = None) -> None:
        """Fold one computation's time into the running mean that devices are told (and into its group's, for
        ``job``'s group)."""
        w = MEAN_COMPUTE_WEIGHT
        with self._lock:
            m = self._mean_compute_ms
            self._mean_compute_ms = compute_ms if m is None else (1 - w) * m + w * compute_ms
            if job is not None:
                g = self._group_compute_ms.get(job.group)
                self._group_compute_ms[job.group] = compute_ms if g is None else (1 - w) * g + w * compute_ms

    async def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def compute_job(job: EdgeJob, payload: bytes, runner: PartRunner | None = None, slowdown: Slowdown | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
    """Decode one job's payload and compute its edge part: the logits (float32, contiguous, on the CPU) and the
    ms spent in ``decode_ms``, ``compute_ms`` (the model's input preprocessing for raw pixels, as on the device,
    and its units; on a GPU until the logits are back; stretched by ``slowdown`` where the edge is emulated
    slower) and ``encode_ms``. ``runner``: where the parts run when not ``job.chain.run_edge`` on the CPU. Shared
    by every engine, so that they compute and time alike."""
    t0 = time.perf_counter()
    t = job.codec.decode(payload, job.shape)
    t1 = time.perf_counter()
    with torch.inference_mode(), (slowdown.scope() if slowdown is not None else contextlib.nullcontext()):
        if job.preprocess is not None:
            t = job.preprocess(t)
        run = job.chain.run_edge if runner is None else runner.run_edge
        logits = run(t, job.exit, job.partition)
    t2 = time.perf_counter()
    if logits.dtype != torch.float32 or not logits.is_cpu:
        logits = logits.float().cpu()
    if not logits.is_contiguous():
        logits = logits.contiguous()
    t3 = time.perf_counter()
    return logits, {"decode_ms": (t1 - t0) * 1e3, "compute_ms": (t2 - t1) * 1e3, "encode_ms": (t3 - t2) * 1e3}


def compute_batch(jobs: list[EdgeJob], payloads: list[bytes], runner: PartRunner | None = None,
                  slowdown: Slowdown | None = None
                  ) -> tuple[list[torch.Tensor], list[dict[str, float]]]:
    """Compute jobs of one :attr:`EdgeJob.group` as one batch: each payload decoded on its own, the tensors
    stacked along the batch, one forward of the edge part, the logits split back per job (float32, contiguous).
    Per job the ms of its own ``decode_ms``, the batch's ``compute_ms`` and ``encode_ms``, and ``batch_size``
    (the jobs computed together; a worker's time per request is ``compute_ms / batch_size``). One job is
    :func:`compute_job`. ``runner`` and ``slowdown`` as there."""
    if len(jobs) != len(payloads) or not jobs:
        raise ValueError("compute_batch needs one payload per job, and at least one job")
    if len(jobs) == 1:
        logits, t = compute_job(jobs[0], payloads[0], runner, slowdown)
        return [logits], [{**t, "batch_size": 1}]
    if any(j.group != jobs[0].group for j in jobs):
        raise ValueError("compute_batch takes jobs of one group (same model, exit, partition, codec and shape)")
    decode_ms = []
    parts = []
    for job, payload in zip(jobs, payloads):
        t0 = time.perf_counter()
        parts.append(job.codec.decode(payload, job.shape))
        decode_ms.append((time.perf_counter() - t0) * 1e3)
    job = jobs[0]
    t1 = time.perf_counter()
    with torch.inference_mode(), (slowdown.scope() if slowdown is not None else contextlib.nullcontext()):
        x = torch.cat(parts)
        if job.preprocess is not None:
            x = job.preprocess(x)
        run = job.chain.run_edge if runner is None else runner.run_edge
        logits = run(x, job.exit, job.partition)
    t2 = time.perf_counter()
    logits = logits.float()
    out = list(torch.split(logits, [j.shape[0] for j in jobs]))
    out = [o.contiguous() for o in out]
    t3 = time.perf_counter()
    n = len(jobs)
    compute_ms, encode_ms = (t2 - t1) * 1e3, (t3 - t2) * 1e3
    return out, [{"decode_ms": d, "compute_ms": compute_ms, "encode_ms": encode_ms, "batch_size": n}
                 for d in decode_ms]


class BatchTimeModel:
    """The predicted compute time (ms) of a batch of ``n`` jobs of one group: the model's own cost line
    ``a + b * n`` (measured at start-up on its deepest exit from the raw input, the most work any of its groups
    does), scaled per group by a running mean of measured over predicted, times a safety ``margin``. It errs
    long: holding a request for a batch counts on it."""

    def __init__(self, margin: float = 1.25, weight: float = 0.3) -> None:
        self.margin = margin
        self.weight = weight
        self._line: dict[str, tuple[float, float]] = {}
        self._scale: dict[tuple[Any, ...], float] = {}

    def set_line(self, model: str, one_ms: float, n: int, n_ms: float) -> None:
        """The model's cost line from a batch of 1 taking ``one_ms`` and a batch of ``n`` taking ``n_ms``."""
        b = max((n_ms - one_ms) / max(n - 1, 1), 0.0)
        self._line[model] = (max(one_ms - b, 0.0), b)

    def predict_ms(self, job: EdgeJob, n: int) -> float:
        a, b = self._line.get(job.model, (0.0, 0.0))
        return self.margin * self._scale.get(job.group, 1.0) * (a + b * n)

    def observe(self, job: EdgeJob, n: int, compute_ms: float) -> None:
        a, b = self._line.get(job.model, (0.0, 0.0))
        line = a + b * n
        if line <= 0:
            return
        r = compute_ms / line
        s = self._scale.get(job.group)
        self._scale[job.group] = r if s is None else (1 - self.weight) * s + self.weight * max(r, s * 0.5)


@dataclass
class Pending:
    """A job waiting to be batched: its payload, when it arrived and by when (engine clock, s) it must be answered
    (None: no deadline), and where its answer goes (a future, or anything in a test)."""

    job: Any
    payload: bytes
    t_arrival: float
    deadline_at: float | None
    future: Any = None


def release_at(t_open: float, window_s: float, deadlines_at: list[float | None], batch_s: float) -> float:
    """When an open batch must be released (engine clock, s): at the end of its window, or earlier, so that the
    batch, computed in ``batch_s`` from its release, still ends before every member's deadline. A batch never
    holds a request past the point where its deadline would be missed (the deadline minus the predicted batch
    time); a request already past that point is released at once (the returned time is in the past)."""
    t = t_open + window_s
    for d in deadlines_at:
        if d is not None:
            t = min(t, d - batch_s)
    return t


class BatchQueue:
    """The batching policy, apart from threads and the event loop (so that it can be driven by a fake clock).

    Jobs of one ``job.group`` join the group's open batch; the batch is released at :func:`release_at` (the end
    of its window, or earlier for a member's deadline, counting the batch's predicted compute time
    ``predict_ms(job, n)``), or as soon as it holds ``max_batch`` jobs. Released batches wait for a worker; a
    worker takes the oldest (:meth:`take`), merged with the other waiting jobs of its group, oldest first, as
    long as the merged batch, started now, is still predicted to end before each member's deadline."""

    def __init__(self, window_s: float, max_batch: int, predict_ms: Callable[[Any, int], float]) -> None:
        self.window_s = window_s
        self.max_batch = max_batch
        self.predict_ms = predict_ms
        self.open: dict[Any, tuple[float, list[Pending]]] = {}
        self.ready: list[list[Pending]] = []

    def latest_start(self, batch: list[Pending]) -> float:
        """The last moment (s) ``batch`` may start and still end before each member's deadline (inf: none)."""
        return release_at(math.inf, 0.0, [i.deadline_at for i in batch],
                          self.predict_ms(batch[0].job, len(batch)) / 1e3)

    def add(self, item: Pending, now: float) -> None:
        """A job arrives: it joins its group's open batch (opened now when there is none)."""
        group = item.job.group
        t_open, items = self.open.get(group, (now, []))
        if items and release_at(math.inf, 0.0, [i.deadline_at for i in items],
                                self.predict_ms(item.job, len(items) + 1) / 1e3) < now:
            # one more would make the batch too slow for a member: it goes as it is, the newcomer opens the next
            self.ready.append(items)
            t_open, items = now, []
        items.append(item)
        self.open[group] = (t_open, items)
        self.release_due(now)

    def release_time(self, group: Any) -> float:
        """When the open batch of ``group`` is due (:func:`release_at`)."""
        t_open, items = self.open[group]
        return release_at(t_open, self.window_s, [i.deadline_at for i in items],
                          self.predict_ms(items[0].job, len(items)) / 1e3)

    def next_release(self) -> float | None:
        """The earliest time an open batch is due (None: no open batch)."""
        return min((self.release_time(g) for g in self.open), default=None)

    def release_due(self, now: float) -> None:
        """Release every open batch that is due or full."""
        for g in [g for g in self.open if len(self.open[g][1]) >= self.max_batch or self.release_time(g) <= now]:
            self.ready.append(self.open.pop(g)[1])

    def take(self, now: float) -> list[Pending] | None:
        """The batch a free worker starts now (None: nothing released)."""
        if not self.ready:
            return None
        batch = self.ready.pop(0)
        group = batch[0].job.group
        others = [i for b in self.ready if b[0].job.group == group for i in b]
        if group in self.open:
            others += self.open[group][1]
        others.sort(key=lambda i: i.t_arrival)
        taken = set()
        for it in others:
            if len(batch) >= self.max_batch:
                break
            trial = batch + [it]
            if self.latest_start(trial) >= now:
                batch = trial
                taken.add(id(it))
        if taken:
            self.ready = [b for b in ([i for i in b if id(i) not in taken] for b in self.ready) if b]
            if group in self.open:
                t_open, items = self.open[group]
                items = [i for i in items if id(i) not in taken]
                if items:
                    self.open[group] = (t_open, items)
                else:
                    del self.open[group]
        return batch

    def waiting(self) -> list[Pending]:
        """Every job not started yet."""
        return [i for b in self.ready for i in b] + [i for _, items in self.open.values() for i in items]


class BatchingCompute(LocalCompute):
    """Dynamic batching across devices: jobs of the same :attr:`EdgeJob.group` that arrive within
    ``window_ms`` of the first are computed as one batch (at most ``max_batch`` jobs) by ``threads`` workers; the
    policy is :class:`BatchQueue` (no request held past the point where its deadline would be missed, counting
    the batch's predicted compute time from :class:`BatchTimeModel`). An idle edge with nothing else in the
    window holds a request at most ``window_ms``. Each job's answer has its own timings with ``batch_size``;
    ``queue_ms`` is its wait from arrival to the start of its batch."""

    name = "local"

    def __init__(self, models: dict[str, MultiExitChain], threads: int = 1, window_ms: float = 2.0,
                 max_batch: int = 32, time_model: BatchTimeModel | None = None, slowdown: float = 1.0,
                 runners: dict[str, PartRunner] | None = None) -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"batching needs at least one worker thread (--threads 1 or more), got {threads!r}")
        if not (math.isfinite(window_ms) and window_ms >= 0):
            raise ConfigError(f"the batching window must be >= 0 ms, got {window_ms!r}")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(f"the largest batch must be an integer >= 1, got {max_batch!r}")
        super().__init__(models, threads, inline_when_idle=False, runners=runners, slowdown=slowdown)
        self.window_ms = window_ms
        self.time_model = time_model or BatchTimeModel()
        self.queue = BatchQueue(window_ms / 1e3, max_batch, self.time_model.predict_ms)
        self._timer: asyncio.TimerHandle | None = None
        self._busy = 0
        self._mean_service_ms: float | None = None

    async def start(self) -> None:
        await super().start()
        n = min(8, self.queue.max_batch)
        for name, chain in self.models.items():  # the cost line of the most work a group of this model does
            times = {}
            for size in (1, n):
                x = torch.zeros((size, *chain.input_shape))
                with torch.inference_mode():
                    chain(x)
                    best = math.inf
                    for _ in range(3):  # the fastest of three: a busy moment does not stretch the line
                        t0 = time.perf_counter()
                        with self.slowdown.scope() if self.slowdown is not None else contextlib.nullcontext():
                            chain(x)
                        best = min(best, time.perf_counter() - t0)
                times[size] = best * 1e3
            self.time_model.set_line(name, times[1], n, times[n])

    def load(self) -> ComputeLoad:
        return ComputeLoad(self._waiting, self._in_service, self.threads,
                           None if self._mean_compute_ms is None else round(self._mean_compute_ms, 3),
                           None if self._mean_service_ms is None else round(self._mean_service_ms, 3),
                           round(self.window_ms, 3), self.in_service_left_ms())

    def expected_compute_ms(self, job: EdgeJob) -> float:
        """A batch of one of ``job``'s group, as the batching policy predicts it (without its safety margin)."""
        return self.time_model.predict_ms(job, 1) / self.time_model.margin

    def run_inline(self, job: EdgeJob, payload: bytes, deadline_ms: float | None = None) -> None:
        return None  # every job goes through the batching queue

    async def run(self, job: EdgeJob, payload: bytes, deadline_ms: float | None = None
                  ) -> tuple[torch.Tensor, dict[str, float]]:
        loop = asyncio.get_running_loop()
        now = loop.time()
        item = Pending(job, payload, now, None if deadline_ms is None else now + deadline_ms / 1e3,
                       loop.create_future())
        with self._lock:
            self._waiting += 1
        self.queue.add(item, now)
        self._dispatch()
        return await item.future

    def _on_timer(self) -> None:
        self._timer = None
        self.queue.release_due(asyncio.get_running_loop().time())
        self._dispatch()

    def _dispatch(self) -> None:
        """Start released batches while a worker is free, then set the timer for the next open batch due."""
        loop = asyncio.get_running_loop()
        while self._busy < self.threads:
            now = loop.time()
            batch = self.queue.take(now)
            if batch is None:
                break
            self._busy += 1
            with self._lock:
                self._waiting -= len(batch)
                self._in_service += len(batch)
            token = self._started(self.time_model.predict_ms(batch[0].job, len(batch)) / self.time_model.margin)
            fut = loop.run_in_executor(self._pool, self._work_batch, batch, now)
            fut.add_done_callback(lambda f, b=batch, k=token: self._done(f, b, k))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        t = self.queue.next_release()
        if t is not None:
            self._timer = loop.call_at(t, self._on_timer)

    def _work_batch(self, batch: list[Pending], t_start: float
                    ) -> tuple[list[torch.Tensor], list[dict[str, float]]]:
        """Runs in a worker thread: compute one batch, time it."""
        logits, timings = compute_batch([i.job for i in batch], [i.payload for i in batch],
                                        self.runners.get(batch[0].job.model), self.slowdown)
        for i, t in zip(batch, timings):
            t["queue_ms"] = (t_start - i.t_arrival) * 1e3
        return logits, timings

    def _done(self, fut: asyncio.Future, batch: list[Pending], token: int) -> None:
        self._busy -= 1
        self._ended(token)
        with self._lock:
            self._in_service -= len(batch)
        exc = fut.exception() if not fut.cancelled() else asyncio.CancelledError()
        if exc is None:
            logits, timings = fut.result()
            compute_ms = timings[0]["compute_ms"]
            self.record_compute_ms(compute_ms, batch[0].job)
            per = compute_ms / len(batch)
            m = self._mean_service_ms
            self._mean_service_ms = per if m is None else (1 - MEAN_COMPUTE_WEIGHT) * m + MEAN_COMPUTE_WEIGHT * per
            self.time_model.observe(batch[0].job, len(batch), compute_ms)
            for i, lg, t in zip(batch, logits, timings):
                if not i.future.done():
                    i.future.set_result((lg, t))
        else:
            for i in batch:
                if not i.future.done():
                    i.future.set_exception(exc)
        self._dispatch()

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for i in self.queue.waiting():
            if not i.future.done():
                i.future.cancel()
        self.queue.open.clear()
        self.queue.ready.clear()
        await super().stop()
