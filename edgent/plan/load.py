"""The edge's load as a planning input: the time a request waits at a shared edge before its computation ends.

An edge serves many devices; a request that reaches a busy edge waits behind the requests before it. The
planner prices that wait as its ``edge_queue_ms`` term (added to every configuration that crosses the link, see
:mod:`edgent.plan.planner`), so that a device moves work onto itself, or to an earlier exit, while the edge is
busy, and back when it frees up. This module is the one home of that wait:

- :func:`predicted_wait_ms`: the wait of a request that arrives now, from what the edge reports with every answer
  (the ``load`` of a RESULT, STATUS, WELCOME or ``overloaded`` ERROR: requests waiting and in service, workers,
  and the measured time a worker spends per request, ``mean_service_ms``, which under batching is a batch's
  compute over its size). The edge uses it for admission control; the device, through :class:`EdgeLoadModel`.
- :class:`EdgeLoadModel`: what a device believes about the wait, learnt from the edge's replies: the larger of
  the edge's own prediction at its last reply and a running mean of the waits this device's requests met
  (``queue_ms`` of the reply's timings). With no reply the belief decays (half-life ``half_life_s``): a device
  that moved its work onto itself sends no requests and gets no news, so it tries the edge again after a while;
  if the edge is still busy, its answer (or its early ``overloaded``) restores the belief.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from edgent.errors import ConfigError


def predicted_wait_ms(waiting: float, in_service: float, workers: float, service_ms: float | None,
                      batch_window_ms: float = 0.0, in_service_left_ms: float | None = None) -> float:
    """The wait (ms) of a request arriving now at an edge with ``waiting`` requests queued and ``in_service``
    being computed by ``workers`` workers, each request taking ``service_ms`` of a worker (None: unknown, no
    wait predicted), plus the batching window the edge may hold a request for.

    ``in_service_left_ms``: the work (worker ms, summed over the computations in service) the edge predicts is
    left of them, from when each started; the edge knows it, and says it with its load. Without it, every
    request in service is counted whole (it may be part done): the prediction errs on the side of a longer
    wait."""
    window = max(float(batch_window_ms), 0.0)
    if service_ms is None or not math.isfinite(service_ms) or service_ms <= 0:
        return window + (0.0 if in_service_left_ms is None else max(float(in_service_left_ms), 0.0)
                         / max(float(workers), 1.0))
    if in_service_left_ms is None or not math.isfinite(in_service_left_ms):
        in_service_work = max(float(in_service), 0.0) * float(service_ms)
    else:
        in_service_work = max(float(in_service_left_ms), 0.0)
    work = max(float(waiting), 0.0) * float(service_ms) + in_service_work
    return work / max(float(workers), 1.0) + window


def wait_from_load(load: Mapping[str, Any] | float | None) -> float:
    """:func:`predicted_wait_ms` of the edge's ``load`` dict as sent on the wire (``queue_length``,
    ``in_service``, ``workers``, ``mean_service_ms`` or else ``mean_compute_ms``, ``batch_window_ms``,
    ``in_service_left_ms`` where the edge says it); a number is taken as the wait in ms; None is no wait."""
    if load is None:
        return 0.0
    if isinstance(load, (int, float)) and not isinstance(load, bool):
        return max(float(load), 0.0)
    try:
        service = load.get("mean_service_ms")
        if service is None:
            service = load.get("mean_compute_ms")
        left = load.get("in_service_left_ms")
        return predicted_wait_ms(float(load.get("queue_length") or 0), float(load.get("in_service") or 0),
                                 float(load.get("workers") or 1), None if service is None else float(service),
                                 float(load.get("batch_window_ms") or 0.0), None if left is None else float(left))
    except (TypeError, ValueError, AttributeError):
        raise ConfigError(f"the edge load must be a wait in ms or the edge's load dict, got {load!r}") from None


@dataclass
class EdgeLoadModel:
    """A device's view of the edge's wait, learnt from the edge's replies (see the module docstring).

    Args:
        half_life_s: without news from the edge the belief halves every ``half_life_s`` seconds.
        weight: weight of the newest measured wait in the running mean.
        clock: seconds (``time.monotonic`` by default; a fake one in tests).
    """

    half_life_s: float = 1.0
    weight: float = 0.3
    clock: Callable[[], float] = time.monotonic
    _reported_ms: float = field(default=0.0, repr=False)
    _measured_ms: float | None = field(default=None, repr=False)
    _t_s: float | None = field(default=None, repr=False)
    observations: int = 0
    refusals: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.half_life_s) and self.half_life_s > 0):
            raise ConfigError(f"the load model's half-life must be > 0 s, got {self.half_life_s!r}")
        if not 0 < self.weight <= 1:
            raise ConfigError(f"the load model's weight must be in (0, 1], got {self.weight!r}")

    def observe(self, load: Mapping[str, Any] | None, queue_ms: float | None = None,
                refused: bool = False) -> None:
        """One reply of the edge: its ``load`` dict, the wait this request met there (``queue_ms``, None when
        it was not computed), and whether the edge refused it as ``overloaded`` (then its reported load is
        what the device learns; the refusal itself is counted)."""
        now = self.clock()
        self._decay_to(now)
        if load is not None:
            self._reported_ms = wait_from_load(load)
        if queue_ms is not None and math.isfinite(queue_ms) and queue_ms >= 0:
            m = self._measured_ms
            self._measured_ms = queue_ms if m is None else (1 - self.weight) * m + self.weight * queue_ms
        self.refusals += int(refused)
        self.observations += 1
        self._t_s = now

    def _decay_to(self, now: float) -> None:
        if self._t_s is None:
            return
        f = 0.5 ** (max(now - self._t_s, 0.0) / self.half_life_s)
        self._reported_ms *= f
        if self._measured_ms is not None:
            self._measured_ms *= f
        self._t_s = now

    def queue_ms(self) -> float:
        """The wait (ms) a request sent now is predicted to meet at the edge (0 before any reply)."""
        if self._t_s is None:
            return 0.0
        f = 0.5 ** (max(self.clock() - self._t_s, 0.0) / self.half_life_s)
        return f * max(self._reported_ms, self._measured_ms or 0.0)
