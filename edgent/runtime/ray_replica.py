"""The edge's replicas on Ray Serve: one Ray Serve deployment per model, whose replicas load the model and compute
the requests the front (:class:`edgent.runtime.ray_backend.RayCompute`) hands them, in batches made by Ray
Serve's own ``@serve.batch``.

This module imports Ray at the top: it is imported only by the Ray engine and in the replicas' processes (Ray
finds the class here by its module path, so every machine of the cluster needs edgent installed).

A request reaches a replica as plain fields (model, exit, partition, codec name, shape, preprocessing name) and
the payload bytes, as the front received and checked them; the replica builds its own :class:`EdgeJob` from its
own copy of the model, decodes the payload with the codec named, and computes with
:func:`edgent.runtime.compute.compute_batch`, like the local engines.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from ray import serve

from edgent.codec import get_codec
from edgent.errors import EdgentError
from edgent.model.placement import PartRunner, choose_placement
from edgent.model.preprocess import get_preprocess
from edgent.model.zoo import load_for_inference
from edgent.runtime.compute import EdgeJob, compute_batch


class EdgeReplica:
    """One replica of a model's deployment (see the module docstring). ``source``: the model as ``edgent serve``
    was given it (``ref``: zoo name or model folder, ``weights``, ``random_weights``, ``seed``); ``placement``:
    ``--device``, ``--fp16``, ``--edge-mode`` and ``--compile-mode`` as given, resolved here (the replica's machine
    may have a GPU where the front's has none)."""

    def __init__(self, source: dict[str, Any], placement: dict[str, Any], max_batch_size: int,
                 batch_wait_timeout_s: float, torch_threads: int) -> None:
        if torch_threads > 0:
            torch.set_num_threads(torch_threads)
        self.chain = load_for_inference(source["ref"], source.get("weights"), bool(source.get("random_weights")),
                                        int(source.get("seed", 0)))
        self.placement, self.precision_reason = choose_placement(
            [source["ref"]], placement.get("device", "auto"), placement.get("fp16", "auto"),
            placement.get("mode"), placement.get("compile_mode"))
        runner = PartRunner(self.chain, self.placement)
        self.runner = None if runner.trivial else runner
        self._jobs: dict[tuple[Any, ...], EdgeJob] = {}
        self._batched.set_max_batch_size(max_batch_size)
        self._batched.set_batch_wait_timeout_s(batch_wait_timeout_s)
        with torch.inference_mode():  # the first request is not slow
            if self.runner is None:
                self.chain(torch.zeros((1, *self.chain.input_shape)))
            else:
                self.runner.warm_up(self.chain.num_exits, 0)

    def describe(self) -> dict[str, Any]:
        """Where this replica runs its parts, and why in that precision."""
        return {"placement": self.placement.describe(), "precision": self.precision_reason,
                "torch_threads": torch.get_num_threads()}

    async def compute(self, request: dict[str, Any]) -> tuple[Any, ...] | dict[str, str]:
        """One request: ``(logits as a float32 array, timings)``, or ``{"code": ..., "message": ...}`` for a
        request it could not compute (the front answers the device with that error)."""
        request["t_arrived"] = time.perf_counter()
        return await self._batched(request)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.002)
    async def _batched(self, requests: list[dict[str, Any]]) -> list[tuple[Any, ...] | dict[str, str]]:
        """A batch made by Ray Serve: its requests grouped by what they compute, each group run as one batch."""
        t_start = time.perf_counter()
        out: list[tuple[Any, ...] | dict[str, str] | None] = [None] * len(requests)
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, r in enumerate(requests):
            try:
                job = self._job(r)
            except EdgentError as exc:
                out[i] = _error(getattr(exc, "code", "bad_request"), str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - a field of a type no check foresaw: the device is told
                out[i] = _error("bad_request", f"{type(exc).__name__}: {exc}")
                continue
            groups.setdefault(job.group, []).append(i)
        for idx in groups.values():
            jobs = [self._job(requests[i]) for i in idx]
            try:
                logits, timings = compute_batch(jobs, [requests[i]["payload"] for i in idx], self.runner)
            except EdgentError as exc:
                for i in idx:
                    out[i] = _error(getattr(exc, "code", "bad_request"), str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - a torch failure: the device gets an answer
                for i in idx:
                    out[i] = _error("internal", f"the edge could not compute: {type(exc).__name__}: {exc}")
                continue
            for i, lg, t in zip(idx, logits, timings):
                t["replica_queue_ms"] = (t_start - requests[i]["t_arrived"]) * 1e3
                out[i] = (lg.numpy(), t)
        return out  # type: ignore[return-value]

    def _job(self, r: dict[str, Any]) -> EdgeJob:
        key = (r["model"], r["exit"], r["partition"], r["codec"], tuple(r["shape"]), r["preprocess"])
        job = self._jobs.get(key)
        if job is None:
            if r["model"] != self.chain.name:
                raise EdgentError(f"this replica serves {self.chain.name}, not {r['model']!r}")
            codec = get_codec(r["codec"])
            shape = tuple(int(d) for d in r["shape"])
            pre = None if r["preprocess"] is None else get_preprocess(r["preprocess"])
            job = EdgeJob(self.chain.name, self.chain, int(r["exit"]), int(r["partition"]), codec, shape, pre,
                          codec.payload_bytes(shape))
            if len(self._jobs) >= 1024:
                self._jobs.clear()
            self._jobs[key] = job
        return job



def _error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}
