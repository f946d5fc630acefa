"""``edgent bench paper``: the paper's three static experiments measured on the real co-inference system.

``edgent bench static`` *predicts* them; this runs each chosen plan for real, on one
:class:`~edgent.testbed.bed.CoInferenceBed`: the testbed link (namespaces and ``tc tbf`` as root, else the
emulated token-bucket link) set to each bandwidth, the slowed device (the device role of
:class:`~edgent.profile.device.DeviceThrottle`, one torch thread), a real ``edgent serve`` edge process (2 torch
threads), and :class:`~edgent.runtime.session.DeviceRuntime` with a fixed plan per configuration. The experiments
themselves are defined in :mod:`edgent.bench.experiments`:

- (a) a bandwidth sweep at a fixed requirement: Edgent's plan per point;
- (b) a requirement sweep at a fixed bandwidth: Edgent's plan per point;
- (c) a range of requirements at a fixed bandwidth: Edgent and every baseline (device only, edge only,
  Neurosurgeon, right-sizing only) and an oracle that knows the *measured* latency of every exit's candidate
  configurations (each exit all on the device, all on the edge, and its predicted best split) and picks the most
  accurate one that meets the requirement.

Each is run for what is sent at partition point 0 (``as_sent``: the 3072 uint8 pixels edgent really sends;
``float32_input``: the 12288-byte normalised input, closer to the paper's sizes). Per point: the plan, the
predicted latency (total and per stage), and for ``--requests`` requests the measured latency per stage and in
total, the share meeting the requirement, and the share within +-10 % (or 5 ms) of the prediction. One
configuration on one link is measured once per experiment and shared by the points that chose it ((b) and (c),
where the link does not change between points).

Requests are isolated: before each one the link stays idle until the shaper's bucket is full again (and at least
:data:`~edgent.bench.paper.measure.MIN_GAP_S`), and each configuration gets one warm-up request that is not
recorded.

The predictions use the planner's wire model: the shaper's burst (:attr:`edgent.plan.Link.burst_bytes`, from
``tc tbf``'s settings or the emulated bucket), the protocol's framing and the TCP/IP/Ethernet headers of every
packet (:class:`edgent.plan.WireFraming`); every request also carries the prediction of the paper's fluid formula
(payload bytes / rate) for comparison. The round-trip time the planner is given is the one the device measures
(the smallest of a few HEALTH round trips at each link setting), as the runtime's own estimator would; the
runtime's own cost per request (encoding, decoding, framing, the server's bookkeeping), the framing bytes and the
MSS are measured at start-up on a few edge-only requests that are not recorded
(:func:`~edgent.testbed.bed.calibrate_wire`). Each measurement also records how much CPU other processes
used meanwhile (:class:`~edgent.bench.paper.measure.CpuWitness`): the host is shared.

Every request carries two predictions: the planner's offline one (the fitted latency models), and the same with
its device and edge compute terms calibrated online (:class:`edgent.plan.calibration.ComputeCalibration`: the
median measured/predicted compute ratio of the same configuration, else of the side, over the last requests
before it, as the runtime can know it); the headline share within +-10 % is of the calibrated one, the offline
share is reported next to it. The plans themselves are the offline planner's.

Output: ``benchmarks/results/paper.json`` (``paper-quick.json`` with ``--quick``) and PNG plots next to it; the
device's per-request records (``records.jsonl``) and the edge's log go to a folder under ``runs/``.

The modules: :mod:`~edgent.bench.paper.measure` (the bed's measurements and the experiments' points),
:mod:`~edgent.bench.paper.summary` (the criteria and the summary), :mod:`~edgent.bench.paper.plot` (the plots),
:mod:`~edgent.bench.paper.command` (the options, the run and the command line).
"""

from edgent.bench.paper.command import PaperOptions, register, run_paper
from edgent.bench.paper.plot import plot_paper
from edgent.bench.paper.summary import STAGES, summarize, within

__all__ = ["STAGES", "PaperOptions", "plot_paper", "register", "run_paper", "summarize", "within"]
