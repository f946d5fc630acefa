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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import torch

from edgent.codec import Codec
from edgent.model.chain import MultiExitChain
from edgent.model.placement import PartRunner

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

    @property
    def group(self) -> tuple[Any, ...]:
        """Jobs of one group run the same computation on tensors of the same shape but for the batch size:
        they can be stacked into one batch."""
        return (self.model, self.exit, self.partition, self.codec.name, self.shape[1:],
                None if self.preprocess is None else id(self.preprocess))


@dataclass(frozen=True)
class ComputeLoad:
    """What an engine knows about its load: requests waiting for a worker, in service, the workers it has, and
    a running mean of the compute time of one request (None before the first)."""

    waiting: int
    in_service: int
    workers: int
    mean_compute_ms: float | None


class EdgeCompute(abc.ABC):
    """An engine that computes edge jobs; the server calls :meth:`start` once, :meth:`run` per request (from its
    event loop), :meth:`load` with every answer, and :meth:`stop` once."""

    #: a short name for ``edgent serve``'s banner and the edge's replies ("local", "ray", ...)
    name: str = "engine"

    async def start(self) -> None:
        """Get ready (warm the models up, connect to a cluster); the server accepts connections after it."""

    @abc.abstractmethod
    async def run(self, job: EdgeJob, payload: bytes, deadline_ms: float | None = None
                  ) -> tuple[torch.Tensor, dict[str, float]]:
        """Decode ``payload``, compute the job, and return the logits (float32, on the CPU) with the timings in
        ms of ``queue_ms``, ``decode_ms``, ``compute_ms`` and ``encode_ms`` (``batch_size`` where batched).
        ``deadline_ms``: how long the device can still wait for the answer, where it said so."""

    @abc.abstractmethod
    def load(self) -> ComputeLoad:
        """The engine's load now."""

    def describe(self) -> str:
        """One line for ``edgent serve``'s banner: the engine, its workers, where it runs the parts."""
        return self.name

    def busy(self) -> bool:
        """Whether any request is waiting or in service."""
        load = self.load()
        return bool(load.waiting or load.in_service)

    async def stop(self) -> None:
        """Release workers and connections (requests still in service may be dropped)."""


class LocalCompute(EdgeCompute):
    """Computes in this process: a pool of ``threads`` worker threads (inline in the event loop with
    ``threads=0``), and inline too when ``inline_when_idle`` and nothing else is waiting or in service (with the
    edge idle no other request could use a worker meanwhile, so the hand-off would only add latency: measured by
    ``edgent bench runtime``, ``docs/runtime.md``). ``runners``: per model, what runs its parts where they do
    not run as ``chain.run_edge`` on the CPU (a GPU, float16, CUDA graphs: :class:`edgent.model.placement.PartRunner`).
    """

    name = "local"

    def __init__(self, models: dict[str, MultiExitChain], threads: int = 1, inline_when_idle: bool = True,
                 runners: dict[str, PartRunner] | None = None) -> None:
        self.models = models
        self.runners = runners or {}
        self.threads = threads
        self.inline_when_idle = inline_when_idle
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="edge-worker")
        self._lock = threading.Lock()
        self._waiting = 0
        self._in_service = 0
        self._mean_compute_ms: float | None = None

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
                           None if self._mean_compute_ms is None else round(self._mean_compute_ms, 3))

    async def run(self, job: EdgeJob, payload: bytes, deadline_ms: float | None = None
                  ) -> tuple[torch.Tensor, dict[str, float]]:
        inline = self.threads == 0 or (self.inline_when_idle and not self._waiting and not self._in_service)
        with self._lock:
            self._waiting += 1
        if inline:
            return self._work(job, payload, time.perf_counter())
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._work, job, payload,
                                                                time.perf_counter())

    def _work(self, job: EdgeJob, payload: bytes, t_queued: float) -> tuple[torch.Tensor, dict[str, float]]:
        """Runs in a worker thread (or inline): decode, compute the edge part, time each step."""
        t0 = time.perf_counter()
        with self._lock:
            self._waiting -= 1
            self._in_service += 1
        try:
            logits, timings = compute_job(job, payload, self.runners.get(job.model))
        finally:
            with self._lock:
                self._in_service -= 1
        self.record_compute_ms(timings["compute_ms"])
        return logits, {"queue_ms": (t0 - t_queued) * 1e3, **timings}

    def record_compute_ms(self, compute_ms: float) -> None:
        """Fold one request's compute time into the running mean that devices are told."""
        with self._lock:
            m = self._mean_compute_ms
            self._mean_compute_ms = compute_ms if m is None else (
                (1 - MEAN_COMPUTE_WEIGHT) * m + MEAN_COMPUTE_WEIGHT * compute_ms)

    async def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def compute_job(job: EdgeJob, payload: bytes, runner: PartRunner | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
    """Decode one job's payload and compute its edge part: the logits (float32, contiguous, on the CPU) and the
    ms spent in ``decode_ms``, ``compute_ms`` (the model's input preprocessing for raw pixels, as on the device,
    and its units; on a GPU until the logits are back) and ``encode_ms``. ``runner``: where the parts run when not
    ``job.chain.run_edge`` on the CPU. Shared by every engine, so that they compute and time alike."""
    t0 = time.perf_counter()
    t = job.codec.decode(payload, job.shape)
    t1 = time.perf_counter()
    with torch.inference_mode():
        if job.preprocess is not None:
            t = job.preprocess(t)
        run = job.chain.run_edge if runner is None else runner.run_edge
        logits = run(t, job.exit, job.partition)
    t2 = time.perf_counter()
    logits = logits.float().contiguous()
    t3 = time.perf_counter()
    return logits, {"decode_ms": (t1 - t0) * 1e3, "compute_ms": (t2 - t1) * 1e3, "encode_ms": (t3 - t2) * 1e3}


def compute_batch(jobs: list[EdgeJob], payloads: list[bytes], runner: PartRunner | None = None
                  ) -> tuple[list[torch.Tensor], list[dict[str, float]]]:
    """Compute jobs of one :attr:`EdgeJob.group` as one batch: each payload decoded on its own, the tensors
    stacked along the batch, one forward of the edge part, the logits split back per job (float32, contiguous).
    Per job the ms of its own ``decode_ms``, the batch's ``compute_ms`` and ``encode_ms``, and ``batch_size``
    (the jobs computed together; a worker's time per request is ``compute_ms / batch_size``). One job is
    :func:`compute_job`. ``runner``: where the parts run when not ``chain.run_edge`` on the CPU."""
    if len(jobs) != len(payloads) or not jobs:
        raise ValueError("compute_batch needs one payload per job, and at least one job")
    if len(jobs) == 1:
        logits, t = compute_job(jobs[0], payloads[0], runner)
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
    with torch.inference_mode():
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
