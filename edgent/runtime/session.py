"""The device runtime: per request, ask a *configurator* for (exit, partition, codec) given the measured
bandwidth, RTT and edge load, co-infer with :class:`DeviceClient`, feed the bandwidth estimator, and write one
JSON line per request (plan, predicted and measured times, bandwidth sample, outcome).

A configurator is any callable ``(bandwidth_bps, rtt_ms, edge_load) -> plan`` where the plan is an
:class:`edgent.plan.Plan` (the one plan type, from the planner to the wire), a tuple ``(exit, partition, codec)``,
or an object with ``exit``, ``partition`` and ``codec`` attributes - the static planner and the dynamic
configurator plug in here.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np
import torch

from edgent.errors import ConfigError, EdgentError
from edgent.jsonio import dumps_finite
from edgent.plan.planner import Plan
from edgent.runtime.client import DeviceClient, InferenceResult

Configurator = Callable[[float | None, float | None, dict[str, Any] | None], Any]


def as_plan(value: Any) -> Plan:
    """Normalise what a configurator returned into a :class:`~edgent.plan.Plan`."""
    if isinstance(value, Plan):
        return value
    if isinstance(value, tuple) and len(value) in (2, 3):
        return Plan.fixed(int(value[0]), int(value[1]), str(value[2]) if len(value) == 3 else "float32")
    if all(hasattr(value, a) for a in ("exit", "partition")):
        return Plan.fixed(int(value.exit), int(value.partition), str(getattr(value, "codec", "float32") or "float32"))
    raise ConfigError(f"a configurator must return (exit, partition, codec) or a plan object, got {value!r}")


def fixed_plan(exit: int, partition: int, codec: str = "float32") -> Configurator:
    """A configurator that always answers the same plan (for tests and `edgent infer`)."""
    plan = Plan.fixed(exit, partition, codec)
    return lambda bandwidth_bps, rtt_ms, edge_load: plan


class DeviceRuntime:
    """Runs requests through a configurator and a :class:`DeviceClient`; writes per-request JSON lines.

    Args:
        client: the device client (its estimator gives bandwidth and RTT).
        configurator: see the module docstring.
        deadline_ms: default per-request deadline.
        records: a path or an open text file for the JSON lines (None: keep no records).
        probe_idle_s: when the link has been idle this long, send a light probe before the next request
            (None: never probe).
        fallback: finish on the device when the edge fails (default); False: the edge only, an edge-side
            failure is recorded (``where: "failed"``) and raised.

    Every record's ``total`` time runs from the request's arrival (the call of :meth:`infer`) to its answer:
    the connect, a probe and planning are part of it.
    """

    def __init__(self, client: DeviceClient, configurator: Configurator, deadline_ms: float | None = None,
                 records: str | Path | IO[str] | None = None, probe_idle_s: float | None = None,
                 fallback: bool = True) -> None:
        self.client = client
        self.configurator = configurator
        self.deadline_ms = deadline_ms
        self.probe_idle_s = probe_idle_s
        self.fallback = fallback
        self._own_file = isinstance(records, (str, Path))
        if self._own_file:
            try:
                self._records: IO[str] | None = open(records, "a")  # type: ignore[arg-type]
            except OSError as exc:
                raise ConfigError(f"cannot open the records file {records}: {exc.strerror or exc}; give a path in "
                                  "an existing, writable folder") from None
        else:
            self._records = records  # type: ignore[assignment]
        self.seq = 0

    def close(self) -> None:
        if self._own_file and self._records is not None:
            self._records.close()
        self._records = None

    def __enter__(self) -> "DeviceRuntime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def infer(self, x: torch.Tensor | np.ndarray, deadline_ms: float | None = None,
              label: int | None = None) -> InferenceResult:
        """One request: plan with the current estimates, co-infer, record. Never raises for an edge-side
        failure unless the runtime is edge-only (``fallback=False``)."""
        t_arrival = time.perf_counter()
        client, est = self.client, self.client.estimator
        deadline = self.deadline_ms if deadline_ms is None else deadline_ms
        try:
            # (a connect waits up to the client's connect_timeout_s, not the deadline: a connection that takes
            # longer than one request's budget, e.g. a TLS handshake over a slow link, is still made once; the
            # wait is part of this request's time)
            if self.probe_idle_s is not None and est.idle_for_s() > self.probe_idle_s and client.connect():
                with contextlib.suppress(EdgentError, OSError):  # a failed probe only means no sample
                    client.probe(timeout_s=client.edge_budget_s(
                        t_arrival, deadline, reserve=self.fallback and client.reserves(deadline)))
            client.connect()  # the first plan gets the RTT of HELLO and the edge's load (no-op when connected)
        except EdgentError:
            pass  # a refused token: the request itself meets it again, and records it
        bw, rtt, load = est.rate_bps, est.rtt_ms, client.last_edge_load
        t0 = time.perf_counter()
        plan = as_plan(self.configurator(bw, rtt, load))
        plan_ms = (time.perf_counter() - t0) * 1e3
        try:
            predicted = plan.predicted_ms if math.isfinite(plan.predicted_ms) else None
            device = None if plan.breakdown is None else plan.breakdown.device_ms
            result = client.infer(x, plan.exit, plan.partition, plan.codec, deadline_ms=deadline,
                                  fallback=self.fallback, t_arrival=t_arrival, predicted_ms=predicted,
                                  predicted_device_ms=device)
        except EdgentError as exc:
            if self.fallback:
                raise  # not an edge-side failure: the caller's mistake
            self.seq += 1
            self._write(self.failure_record(plan, exc, t_arrival, deadline, bw, rtt, label))
            raise
        result.timings_ms["plan_ms"] = plan_ms
        self.seq += 1
        self._write(self.record(plan, result, bw, rtt, label))
        return result

    def _write(self, record: dict[str, Any]) -> None:
        if self._records is not None:
            self._records.write(dumps_finite(record) + "\n")
            self._records.flush()

    def failure_record(self, plan: Plan, exc: Exception, t_arrival: float, deadline_ms: float | None,
                       bw: float | None, rtt: float | None, label: int | None) -> dict[str, Any]:
        """The JSON record of a request the edge did not answer in an edge-only runtime (no answer at all)."""
        total_ms = (time.perf_counter() - t_arrival) * 1e3
        return {
            "seq": self.seq,
            "time_unix_s": round(time.time(), 6),
            "plan": {"exit": plan.exit, "partition": plan.partition, "codec": plan.codec},
            "inputs": {"bandwidth_bps": bw, "rtt_ms": rtt, "edge_load": self.client.last_edge_load},
            "predicted_ms": plan.predicted_ms,
            "measured_ms": {"total": round(total_ms, 4)},
            "outcome": {"where": "failed", "fallback_reason": None, "error": str(exc), "deadline_ms": deadline_ms,
                        "met_deadline": False if deadline_ms is not None else None, "label": label},
        }

    def record(self, plan: Plan, r: InferenceResult, bw: float | None, rtt: float | None,
               label: int | None) -> dict[str, Any]:
        """The JSON record of one request."""
        est = self.client.estimator
        server = r.server_timings_ms or {}
        return {
            "seq": self.seq,
            "time_unix_s": round(time.time(), 6),
            "plan": {"exit": plan.exit, "partition": plan.partition, "codec": plan.codec},
            "inputs": {"bandwidth_bps": bw, "rtt_ms": rtt, "edge_load": r.edge_load},
            "predicted_ms": plan.predicted_stages_ms(),
            "measured_ms": {
                "plan": round(r.timings_ms.get("plan_ms", 0.0), 4),
                "device": round(r.device_ms, 4),
                "encode": round(r.encode_ms, 4),
                "network": None if r.network_ms is None else round(r.network_ms, 4),
                "edge_queue": server.get("queue_ms"),
                "edge_decode": server.get("decode_ms"),
                "edge_compute": server.get("compute_ms"),
                "edge_encode": server.get("encode_ms"),
                "edge_total": server.get("server_ms"),
                "total": round(r.total_ms, 4),
            },
            "bytes": {"upload": r.upload_bytes, "download": r.download_bytes},
            "bandwidth_sample_bps": r.bandwidth_sample_bps,
            "bandwidth_estimate_bps": est.rate_bps,
            "outcome": {
                "where": r.where,
                "fallback_reason": r.fallback_reason,
                "deadline_ms": r.deadline_ms,
                "met_deadline": r.met_deadline,
                "exit_used": r.exit,
                "partition_used": r.partition,
                "classes": r.classes,
                "label": label,
            },
        }


# another name for the same class (docs/runtime.md lists both), kept for callers that use it
CoInferenceSession = DeviceRuntime
