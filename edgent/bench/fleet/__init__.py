"""``edgent bench fleet``: many devices, one edge.

N emulated devices (each its own process, with its compute slowed on its thread's CPU time and its own emulated
link, requests arriving as a Poisson process) against ONE edge on this machine, started as a real ``edgent serve``
process (``--backend`` passed through). Per N and method: share of deadlines met, accuracy, edge throughput
(requests the edge answered per second), p95 latency. Methods (:data:`.options.METHODS`): Edgent load-blind (the
paper: plans as if the edge were idle), Edgent load-aware (the edge's wait learnt from its replies, admission
control), load-aware with batching across devices on the edge, edge only, device only (the most accurate
on-device exit that fits). Modules: :mod:`.options`, :mod:`.device` (one device process), :mod:`.run`,
:mod:`.plot`, :mod:`.command`.
"""

from edgent.bench.fleet.command import register

__all__ = ["register"]
