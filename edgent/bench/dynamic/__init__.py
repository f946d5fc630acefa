"""``edgent bench dynamic``: Edgent's dynamic configurator against the baselines, request by request, on held-out
bandwidth traces (in simulation: latency tables + the traces).

Method (see ``docs/dynamic.md``):

- The trace files of ``--traces`` are split by file (interleaved by sorted name, so every transport mode is on
  both sides): the configuration maps are built on the training files only; every figure is measured on the others.
- Requests are issued at a fixed period along each held-out trace, the same times for every method. A request's
  latency comes from the latency table and the bandwidth the trace gives *during* its transfers (the rate integrated
  over time: :meth:`~edgent.adapt.config_map.Candidates.latency_on_trace`).
- Every method sees the same throughput samples, as a throughput monitor would report them (a sample once its
  interval has passed); none sees the future except the oracle.
- Methods: ``edgent-dynamic`` (BOCPD + map + hysteresis + static fallback), ``edgent-dynamic-ph`` (the same with a
  Page-Hinkley detector and its own map: the simple-detector comparison), ``edgent-static`` (the static planner on an
  EWMA of the samples), ``neurosurgeon`` (partitioning only, on the same EWMA), ``device-only``, ``edge-only``,
  ``oracle`` (per request, the most accurate configuration that meets the deadline on the true future bandwidth).

The simulation itself is the library's (:mod:`edgent.adapt.simulate`); this package holds the benchmark:
its options (:mod:`.options`), the detector and step-cost measurements (:mod:`.measure`), the plot
(:mod:`.plot`), the real-testbed executor (:mod:`.testbed`), the run (:mod:`.run`) and the command
(:mod:`.command`).
"""

from edgent.bench.dynamic.command import register
from edgent.bench.dynamic.options import DynamicOptions
from edgent.bench.dynamic.run import run_benchmark

__all__ = ["DynamicOptions", "register", "run_benchmark"]
