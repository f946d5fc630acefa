"""The Edgent device agent: the whole adaptive loop for one device and one edge server, per request.

Per request (:meth:`EdgentAgent.handle`), with the time from the request's arrival to its answer as its
``total_ms`` (everything below is charged to it):

1. **Decide.** The policy picks (exit, partition, codec) from the latency table's candidates: ``edgent`` reads
   the configuration map at the change detector's (BOCPD) state (:class:`edgent.adapt.dynamic.
   DynamicConfigurator`) when a map is given, else plans like ``static``; ``static`` is the static planner at
   the estimated bandwidth; ``edge-only``, ``device-only`` and ``neurosurgeon`` restrict it to the main exit
   at point 0, on the device, or at any point. Predictions are corrected online by the measured compute
   (:class:`edgent.plan.calibration.ComputeCalibration`), and ``static``-style decisions rank by the corrected
   prediction. The map's choice must fit the requirement with its compute at the ``margin_quantile`` of its
   measured ratios (the map was built on the offline prediction, with no margin for a busy device's spread),
   else the best configuration that does is taken (source ``...+calibrated``). While the edge is unreachable
   the decision is restricted to on-device configurations, and the connection is re-opened in the background
   (no request waits on a reconnect).
2. **Co-infer** with the codec the plan was priced with (:func:`edgent.plan.transfer.wire_codec`: raw uint8 pixels
   at point 0), after every codec was warmed up once at start (a codec's first call loads its library). When
   the plan is predicted to answer before the give-up point (the requirement less the fastest on-device exit,
   as whole exits measured on the device correct it at the margin quantile), counting what its device part and
   encoding really took, the client gives up on the edge there and falls back in time; a plan predicted later
   gets the edge until the requirement (:meth:`edgent.runtime.client.DeviceClient.reserves`).
3. **Probe while the device computes.** When the plan runs on the device and no transfer has crossed the link
   for ``probe_idle_s`` (device-only plans during an outage, say), a probe sized to the current estimate
   (``probe_link_ms`` of traffic at the estimated rate plus the shaper's burst, within ``[min_probe_bytes,
   max_probe_bytes]``) crosses the idle link during the on-device compute, for at most the plan's calibrated
   prediction (at least ``probe_share`` of the slack); the request waits for it only when it outlasts the
   compute, and that wait is in its ``total_ms``. A probe that does not finish in time is evidence of a rate
   below its bytes over its wait. (Plans that cross the link are their own samples.)
4. **Learn.** The answer's bandwidth sample (the estimator corrects the shaper's burst and takes the edge's
   reported time out), or, for a request the edge did not answer, the bound :func:`edgent.runtime.bandwidth.
   timeout_bound_bps` (of the wait less the edge's calibrated compute; none when the edge had less than a round
   trip beyond it), goes to the estimator and to the change detector; the compute times go to the calibration
   (device part with its encoding, edge compute with its decoding).
5. **Record** one JSON line: the decision, the offline and the calibrated prediction, the estimate, the sample,
   where the answer came from, whether it met the requirement, and ``no_exit_could_meet`` when no on-device
   exit was predicted to fit in what was left when the device fell back.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Sequence

import numpy as np
import torch

from edgent.adapt.config_map import Candidates, ConfigurationMap
from edgent.adapt.dynamic import DynamicConfigurator
from edgent.errors import ConfigError, EdgentError
from edgent.jsonio import dumps_finite
from edgent.plan.calibration import ComputeCalibration
from edgent.plan.link import Link, shaper_burst_bytes
from edgent.plan.load import EdgeLoadModel
from edgent.plan.transfer import wire_codec
from edgent.runtime.bandwidth import timeout_bound_bps
from edgent.runtime.client import FALLBACK_SWITCH_MS, DeviceClient, InferenceResult

POLICIES: tuple[str, ...] = ("edgent", "static", "edge-only", "device-only", "neurosurgeon", "rightsize")


@dataclass
class AgentOptions:
    """How the agent decides and measures.

    Attributes:
        deadline_ms: the latency requirement of every request.
        policy: one of :data:`POLICIES`.
        prior_rate_bps: the bandwidth assumed before the first sample.
        prior_rtt_ms: the round-trip time assumed before the first measurement.
        probe_idle_s: probe when no transfer crossed the link for this long (None: never).
        probe_link_ms: a probe carries this much time of traffic at the estimated rate (beyond the burst).
        min_probe_bytes, max_probe_bytes: the probe's size limits.
        probe_share: the share of the request's slack (deadline minus the fastest on-device exit) a probe may use.
        calibrate: correct predictions by measured compute (online calibration).
        reconnect_every_s: how often the background reconnect tries while the edge is unreachable.
        load_aware: price the edge's wait under its load (:class:`edgent.plan.load.EdgeLoadModel`, learnt from
            its replies) into every plan that crosses the link, and tell the edge each request's remaining
            deadline (its admission control); False: plan as if the edge were idle and dedicated (the paper).
        margin: the share of the deadline a plan keeps in reserve (predictions are means; the margin absorbs
            their spread).
        device_timing: how the device runs, for the records: ``"wall clock"`` (as it is) or ``"EMULATED: ..."``.
        fallback_prior_margin / fallback_prior_runs: until the device has run an exit whole
            ``fallback_prior_runs`` times on real requests (device-only plans, fallbacks), the fallback's budget
            keeps at least this factor over that exit's predicted time: the exit timed at start is warm, and a fallback's exit, run cold after other
            work (often at an outage's start), can take longer (docs/deploy.md).
        margin_quantile: the configuration map's choice must fit the deadline with its compute at this quantile
            of its recent measured/predicted ratios (a margin against the compute's spread on a busy device);
            else the best configuration that does is taken.
    """

    deadline_ms: float = 200.0
    policy: str = "edgent"
    prior_rate_bps: float = 1e6
    prior_rtt_ms: float = 20.0
    probe_idle_s: float | None = 1.0
    probe_link_ms: float = 40.0
    min_probe_bytes: int = 4096
    max_probe_bytes: int = 256 * 1024
    probe_share: float = 0.5
    calibrate: bool = True
    reconnect_every_s: float = 0.25
    load_aware: bool = True
    margin: float = 0.0
    device_timing: str = "wall clock"
    margin_quantile: float = 0.9
    fallback_prior_margin: float = 1.5
    fallback_prior_runs: int = 3

    @property
    def margin_ms(self) -> float:
        """The time (ms) a plan keeps in reserve: ``margin`` of the deadline."""
        return self.margin * self.deadline_ms

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ConfigError(f"unknown policy {self.policy!r}; policies: {', '.join(POLICIES)}")
        if not (math.isfinite(self.deadline_ms) and self.deadline_ms > 0):
            raise ConfigError(f"the deadline must be > 0 ms, got {self.deadline_ms!r}")
        if not self.prior_rate_bps > 0:
            raise ConfigError(f"the prior rate must be > 0 bit/s, got {self.prior_rate_bps!r}")
        if not 0 <= self.margin < 1:
            raise ConfigError(f"the planning margin must be a share of the deadline in [0, 1), got {self.margin!r}")
        if not 0 < self.probe_share <= 1:
            raise ConfigError(f"probe_share must be in (0, 1], got {self.probe_share!r}")
        if not 0 < self.min_probe_bytes <= self.max_probe_bytes:
            raise ConfigError("need 0 < min_probe_bytes <= max_probe_bytes")
        if not 0.5 <= self.margin_quantile < 1:
            raise ConfigError(f"margin_quantile must be in [0.5, 1), got {self.margin_quantile!r}")
        if not (math.isfinite(self.fallback_prior_margin) and self.fallback_prior_margin >= 1.0):
            raise ConfigError(f"fallback_prior_margin must be a number >= 1, got {self.fallback_prior_margin!r}")
        if self.fallback_prior_runs < 0:
            raise ConfigError(f"fallback_prior_runs must be >= 0, got {self.fallback_prior_runs!r}")


@dataclass
class AgentStats:
    """Running totals for the live view and the summary."""

    requests: int = 0
    met: int = 0
    fallbacks: int = 0
    offloaded: int = 0
    switches: int = 0
    changes: int = 0
    probes: int = 0
    labelled: int = 0
    correct: int = 0
    fallbacks_met: int = 0
    fallbacks_could_meet: int = 0
    exits_used: dict[int, int] = field(default_factory=dict)
    card_accuracy_sum: float = 0.0

    def to_json(self) -> dict[str, Any]:
        n = max(self.requests, 1)
        return {
            "requests": self.requests, "met": self.met, "met_share": self.met / n,
            "fallbacks": self.fallbacks, "fallbacks_met": self.fallbacks_met,
            "fallbacks_that_could_meet": self.fallbacks_could_meet, "offloaded": self.offloaded,
            "switches": self.switches, "changes_detected": self.changes, "probes": self.probes,
            "exits_used": {str(k): v for k, v in sorted(self.exits_used.items())},
            "mean_card_accuracy_of_exits_used": self.card_accuracy_sum / n if self.requests else None,
            "labelled": self.labelled,
            "measured_accuracy": self.correct / self.labelled if self.labelled else None,
        }


class _Reconnector(threading.Thread):
    """Re-opens the client's connection in the background while the edge is unreachable."""

    def __init__(self, agent: "EdgentAgent") -> None:
        super().__init__(name="edgent-reconnect", daemon=True)
        self.agent = agent
        self.wanted = threading.Event()
        self.stopped = threading.Event()

    def run(self) -> None:
        a = self.agent
        while not self.stopped.is_set():
            if not self.wanted.wait(timeout=0.5):
                continue
            with a.lock:
                if a.client.connected:
                    self.wanted.clear()
                    continue
                with contextlib.suppress(EdgentError, OSError):
                    a.client.connect(force=True)
                if a.client.connected:
                    a.time_round_trip()
                    self.wanted.clear()
                    continue
            self.stopped.wait(a.options.reconnect_every_s)


class EdgentAgent:
    """The adaptive device agent (see the module docstring).

    Args:
        client: the device's client of one edge server; its estimator should know the link's shaper.
        candidates: every (exit, partition, codec) configuration with its costs (from the latency tables).
        options: :class:`AgentOptions`.
        config_map: the configuration map for ``edgent`` (None: ``edgent`` plans with the static planner).
        detector: the change detector behind the map (default BOCPD).
        records: a path or an open text file for one JSON line per request (None: no records).
    """

    def __init__(self, client: DeviceClient, candidates: Candidates, options: AgentOptions,
                 config_map: ConfigurationMap | None = None, detector: Any = None,
                 records: str | Path | IO[str] | None = None) -> None:
        self.client = client
        self.cands = candidates
        self.options = options
        self.tables = {t.codec: t for t in candidates.tables}
        self.conf: DynamicConfigurator | None = None
        self.detector: Any = None
        if options.policy == "edgent" and config_map is not None:
            self.conf = DynamicConfigurator(config_map, candidates, detector)
        else:
            from edgent.adapt.detectors import make_detector

            self.detector = detector if detector is not None else make_detector("bocpd")
        self.calibration = ComputeCalibration()
        self._measured: set[int] = set()  # candidates whose compute the calibration has seen
        # (bytes, perf_counter when sent) of the last transfer the edge did not answer, until it answers again
        self._unanswered: tuple[float, float] | None = None
        self.stats = AgentStats()
        self.lock = threading.Lock()
        self.seq = 0
        self.t0 = time.perf_counter()
        self._last_config: Any = None
        self.last_state_bps: float | None = None  # the change detector's state (mean rate) at the last map read
        self._own_file = isinstance(records, (str, Path))
        if self._own_file:
            try:
                self._records: IO[str] | None = open(records, "a")  # type: ignore[arg-type]
            except OSError as exc:
                raise ConfigError(f"cannot open the records file {records}: {exc.strerror or exc}") from None
        else:
            self._records = records  # type: ignore[assignment]
        last = int(candidates.exit.max())
        main = candidates.exit == last
        self.allowed = {
            "edgent": np.ones(len(candidates), bool), "static": np.ones(len(candidates), bool),
            "edge-only": main & (candidates.partition == 0),
            "device-only": main & ~candidates.crosses,
            "neurosurgeon": main,
            "rightsize": ~candidates.crosses,
        }[options.policy]
        self.on_device = ~candidates.crosses
        # the predicted on-device time of every exit (the fallback's budget), corrected as the device is measured
        t0 = candidates.tables[0]
        self.device_exit_offline_ms = t0.fallback_device_ms()
        client.device_exit_ms = dict(self.device_exit_offline_ms)
        client.fallback_reserve = True
        client.fallback_margin_ms = options.margin_ms  # a fallback chooses its exit as a plan does
        #: the edge's wait as this device sees it (learnt from the edge's replies; used when load-aware)
        self.edge_load = EdgeLoadModel()
        client.send_deadline = options.load_aware
        #: the last fallbacks' switch times (ms from the give-up point to the fallback's start): the client keeps
        #: their margin quantile in reserve (at least FALLBACK_SWITCH_MS), see _learn_switch
        self.switch_ms: deque[float] = deque(maxlen=8)
        self.last_queue_ms = 0.0
        # the measured/predicted ratios of whole exits run on the device (device-only plans, fallbacks from point
        # 0), per exit: what the fallback's budget is corrected by (a JPEG encode's ratio says nothing about it)
        self.exit_calibration = ComputeCalibration()
        #: exit -> its whole runs on the device on real requests (not the timing at start)
        self.exit_runs: dict[int, int] = {}
        client.warm_up(candidates.codecs)  # the first forward and a codec's first call: no request's cost
        self.time_fallback_exit()
        # the first connection, before any request (a refused token raises here: a person must fix it)
        if not client.connected:
            client.connect(force=True)
        if client.connected:
            self.time_round_trip()
        self.reconnector = _Reconnector(self)
        self.reconnector.start()
        if not client.connected:
            self.reconnector.wanted.set()

    # ------------------------------------------------------------------ life cycle
    def close(self) -> None:
        self.reconnector.stopped.set()
        self.reconnector.wanted.set()
        self.reconnector.join(timeout=5.0)
        if self._own_file and self._records is not None:
            self._records.close()
        self._records = None

    def __enter__(self) -> "EdgentAgent":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ estimates
    @property
    def rate_bps(self) -> float:
        """The bandwidth estimate (bit/s) the decision uses."""
        return self.client.estimator.rate_bps or self.options.prior_rate_bps

    @property
    def rtt_ms(self) -> float:
        """The round-trip estimate (ms) the decision uses."""
        r = self.client.estimator.rtt_ms
        return self.options.prior_rtt_ms if r is None else r

    def _observe(self, rate_bps: float | None) -> bool:
        """Feed one sample to the change detector; True on a detected change."""
        if not rate_bps or not rate_bps > 0:
            return False
        changed = self.conf.observe(rate_bps) if self.conf is not None else bool(self.detector.update(rate_bps))
        self.stats.changes += int(changed)
        return changed

    def time_round_trip(self) -> None:
        """One HEALTH round trip on a fresh connection: an RTT sample with no handshake in it. The HELLO's round
        trip, the only other one the estimator gets, includes the edge's handshake work and the WELCOME (with an
        advertisement, kilobytes over the link); measured on a busy moment, it can exceed every later request's
        network time, and then no request gives a bandwidth sample or a lower bound for as long as it is the
        smallest (docs/runtime.md). A failure here is the next request's to meet."""
        with contextlib.suppress(EdgentError, OSError):
            self.client.health(timeout_s=1.0)

    def time_fallback_exit(self, repeats: int = 3) -> None:
        """Time the fastest exit (as predicted) whole on the device ``repeats`` times, as a fallback runs it, and
        teach the fallback's budget (:meth:`fallback_exit_ms`) what it measured: the give-up point then holds the
        device's own time for it from the first request (a fallback at an outage's start is often the device's
        first whole exit)."""
        if not self.options.calibrate:
            return
        e = min(self.device_exit_offline_ms, key=self.device_exit_offline_ms.get)
        for _ in range(repeats):
            self.exit_calibration.observe("device", self.device_exit_offline_ms[e], self.client.time_exit_ms(e), e)

    def fallback_exit_ms(self) -> dict[int, float]:
        """Exit -> the device's time for the whole exit as the fallback budgets it: the offline prediction times
        the margin quantile of the measured ratios of whole exits on the device, the larger of that exit's and
        the last ones of any exit (the device's slowness now shows in every exit it runs: a fallback exit run
        seldom, whose own ratios are timings from a quieter moment, is budgeted as slow as the device is now;
        with none measured: the prediction as it is), and at least ``fallback_prior_margin`` until the device has
        run that exit whole ``fallback_prior_runs`` times on real requests."""
        o = self.options
        if not o.calibrate:
            return dict(self.device_exit_offline_ms)
        cal, q = self.exit_calibration, o.margin_quantile
        now = cal.factor("device", None, q)

        def prior(e: int) -> float:
            return o.fallback_prior_margin if self.exit_runs.get(e, 0) < o.fallback_prior_runs else 1.0

        return {e: v * max(cal.factor("device", e, q), now, prior(e)) for e, v in self.device_exit_offline_ms.items()}

    def _fastest_exit_ms(self) -> float:
        return min(self.client.device_exit_ms.values())

    def probe_bytes(self) -> int:
        """The next probe's size: ``probe_link_ms`` of traffic at the estimate beyond the shaper's burst."""
        r = self.rate_bps
        want = r / 8 * self.options.probe_link_ms / 1e3 + shaper_burst_bytes(r)
        return int(min(max(want, self.options.min_probe_bytes), self.options.max_probe_bytes))

    def _probe_wanted(self) -> bool:
        """A probe is due: the link has been idle for ``probe_idle_s``, the edge is connected and the policy may
        use the link."""
        o, est, client = self.options, self.client.estimator, self.client
        if o.probe_idle_s is None or est.idle_for_s() <= o.probe_idle_s or not client.connected:
            return False
        return bool(self.allowed.any() and (self.allowed & self.cands.crosses).any())

    def _probe(self, budget_ms: float) -> dict[str, Any] | None:
        """One probe of :meth:`probe_bytes` that may take ``budget_ms``; what it gave (None: no time for one)."""
        o, est, client = self.options, self.client.estimator, self.client
        if budget_ms < 5.0:
            return None
        size = self.probe_bytes()
        t0 = time.perf_counter()
        self.stats.probes += 1
        out: dict[str, Any] = {"bytes": size, "budget_ms": round(budget_ms, 3)}
        try:
            sample = client.probe(size, timeout_s=budget_ms / 1e3)
            out["sample_bps"] = None if sample is None else sample.rate_bps
            out["kind"] = "measured" if sample is None else sample.kind
            self._unanswered = None
        except EdgentError as exc:
            waited_ms = (time.perf_counter() - t0) * 1e3
            out["error"] = str(exc)
            if "no answer" in str(exc):
                bound = timeout_bound_bps(size, waited_ms, 0.0)
                self._unanswered = (float(size), t0)
                if est.add_upper_bound(bound) is not None:
                    out["sample_bps"], out["kind"] = bound, "upper_bound"
                else:  # consistent with every kept sample: no news for the estimate or the detector
                    out["sample_bps"], out["kind"] = None, "upper_bound_above_samples"
            else:
                out["sample_bps"], out["kind"] = None, "none"
        out["ms"] = round((time.perf_counter() - t0) * 1e3, 3)
        if out.get("sample_bps"):
            out["change"] = self._observe(out["sample_bps"])
        return out

    def _silence_bound(self) -> None:
        """While the edge stays silent after a transfer it did not answer (the connection timed out and the
        reconnect has not got through), the rate was at most that transfer's bytes over the time since it was
        sent: the bound falls as the silence lasts, so an outage is seen even with no traffic. (A refused or
        reset connection, an edge that is gone, is not a slow link and sets no such bound.)"""
        if self._unanswered is None:
            return
        size, t_sent = self._unanswered
        bound = timeout_bound_bps(size, (time.perf_counter() - t_sent) * 1e3, 0.0)
        if self.client.estimator.add_upper_bound(bound) is not None:
            self._observe(bound)

    # ------------------------------------------------------------------ deciding
    def calibration_factors(self, k: int) -> tuple[float, float]:
        """The (device, edge) compute factors the calibration gives candidate ``k`` now: its own once measured,
        else its side's (1, 1 without calibration)."""
        if not self.options.calibrate:
            return 1.0, 1.0
        key = self.cands.configs[k] if k in self._measured else None
        return self.calibration.factor("device", key), self.calibration.factor("edge", key)

    def _calibrated_ms(self, lat: np.ndarray, quantile: float = 0.5) -> np.ndarray:
        """Every candidate's latency with its device and edge compute corrected by the calibration (the median
        ratio; ``quantile``: that quantile of the ratios, for a margin)."""
        if not self.options.calibrate:
            return lat
        c, cal, q = self.cands, self.calibration, quantile
        # a configuration never measured takes its side's factor; only the measured ones have their own
        fd = np.full(len(c), cal.factor("device", quantile=q))
        fe = np.full(len(c), cal.factor("edge", quantile=q))
        for k in self._measured:
            fd[k], fe[k] = cal.factor("device", c.configs[k], q), cal.factor("edge", c.configs[k], q)
        return lat + c.device_ms * (fd - 1.0) + c.edge_ms * (fe - 1.0)

    def fixed(self, config: Any, link: Link | None = None) -> tuple[int, str, float, float]:
        """Like :meth:`decide`, for a configuration chosen by the caller (a benchmark's plan): (its index,
        ``"fixed"``, its offline and calibrated prediction), priced on ``link`` (default: the estimates)."""
        c = self.cands
        k = c.index(config)
        if link is None:
            link = Link(self.rate_bps, self.rate_bps, self.rtt_ms)
        self.last_queue_ms = queue = self.edge_load.queue_ms() if self.options.load_aware else 0.0
        lat = c.latency_ms(link, queue)
        return k, "fixed", float(lat[k]), float(self._calibrated_ms(lat)[k])

    def decide(self, edge_up: bool, budget_ms: float | None = None) -> tuple[int, str, float, float]:
        """(candidate index, source, offline prediction ms, calibrated prediction ms) for the next request, which
        has ``budget_ms`` left of its deadline (default: the whole deadline)."""
        c, o = self.cands, self.options
        rate, rtt = self.rate_bps, self.rtt_ms
        queue = self.edge_load.queue_ms() if o.load_aware else 0.0
        self.last_queue_ms = queue
        lat = c.latency_ms(Link(rate, rate, rtt), queue)
        cal = self._calibrated_ms(lat)
        allowed = self.allowed if edge_up else (self.allowed & self.on_device)
        # what the plan may take: the rest of the request's deadline, less the margin kept for the spread
        limit_ms = (o.deadline_ms if budget_ms is None else budget_ms) - o.margin_ms
        source = "static"
        if not allowed.any():  # an edge-only policy with the edge gone: the best on-device configuration
            allowed, source = self.on_device, "edge-unreachable"
        if self.conf is not None and edge_up:
            d = self.conf.decide(rate, rtt, queue)
            k, source = c.index(d.config), d.source
            self.last_state_bps = None if d.state is None else float(d.state.mean_rate_bps)
            if o.calibrate:
                # the map's choice priced with the compute measured on recent requests (at the margin quantile of
                # their ratios), at the bandwidth state the map read: when that misses the deadline and another
                # configuration fits, take the best that does (the map was built on the offline compute
                # prediction, with no margin for a busy device's spread), on the link at the state's rate (the
                # map's own view of it: the estimate's window still holds an outage's bounds after the link is back)
                state_bps = self.last_state_bps or rate
                at_state = self._calibrated_ms(c.latency_ms(Link(state_bps, state_bps, rtt), queue),
                                               o.margin_quantile)
                if at_state[k] > limit_ms:
                    # the best that fits; when none does (a backlog ate the deadline), the fastest, as Edgent's
                    # rule says, so that the requests behind this one can meet theirs
                    alt = c.best(at_state, limit_ms, allowed)
                    if alt != k and (at_state[alt] <= limit_ms or at_state[alt] < at_state[k]):
                        k, source = alt, f"{source}+calibrated"
        else:  # feasible with the margin (the compute at the margin quantile of its ratios), ranked as the rule says
            k = c.best(self._calibrated_ms(lat, o.margin_quantile), limit_ms, allowed)
            if not edge_up and source == "static":
                source = "edge-unreachable"
        return k, source, float(lat[k]), float(cal[k])

    # ------------------------------------------------------------------ one request
    def handle(self, x: torch.Tensor | np.ndarray, label: int | None = None, t_arrival: float | None = None,
               config: Any = None, link: Link | None = None) -> dict[str, Any]:
        """Serve one request (see the module docstring); returns its record (also written to the records).

        ``config``: run this configuration (:class:`edgent.adapt.config_map.Configuration`) instead of deciding,
        priced on ``link`` when given (a benchmark that measures fixed plans on a known link); everything else,
        from the give-up point to the record, is the agent's own."""
        t_arrival = time.perf_counter() if t_arrival is None else t_arrival
        o, c, client, est = self.options, self.cands, self.client, self.client.estimator
        # the on-device time of every exit, at the margin quantile of its measured ratios: the client's give-up
        # point and fallback choice
        client.device_exit_ms = self.fallback_exit_ms()
        locked = self.lock.acquire(blocking=False)  # held by the background reconnect: the edge is not ready
        try:
            edge_up = locked and client.connected
            if not edge_up:
                self.reconnector.wanted.set()
                self._silence_bound()
            estimate_before = self.rate_bps
            # a request that waited on the device (behind the previous one) has only the rest of its deadline
            if config is None:
                k, source, pred_offline, pred_cal = self.decide(
                    edge_up, o.deadline_ms - (time.perf_counter() - t_arrival) * 1e3)
            else:
                k, source, pred_offline, pred_cal = self.fixed(config, link)
            used = self.calibration_factors(k)
            cfg = c.configs[k]
            table = self.tables.get(cfg.codec, c.tables[0])  # (every table has the same exits and units)
            n_units = table.exit_costs(cfg.exit).num_units
            codec = wire_codec(cfg.codec, cfg.partition, n_units, table.raw_input) or cfg.codec
            if c.crosses[k] and not edge_up and config is None:  # (decide() restricts) never wait on a reconnect
                raise EdgentError("internal: an edge configuration was chosen with the edge unreachable")
            probe: dict[str, Any] | None = None
            prober = None
            if edge_up and not c.crosses[k] and self._probe_wanted():  # the link is idle during the compute
                spent_ms = (time.perf_counter() - t_arrival) * 1e3
                slack_ms = o.deadline_ms - self._fastest_exit_ms() - spent_ms
                budget_ms = min(max(pred_cal - spent_ms, slack_ms * o.probe_share), o.deadline_ms - spent_ms)
                box: list[Any] = [None]

                def run_probe() -> None:
                    box[0] = self._probe(budget_ms)

                prober = threading.Thread(target=run_probe, name="edgent-probe", daemon=True)
                prober.start()
            try:
                # the give-up point follows the plan's calibrated prediction (DeviceClient.reserves)
                res = client.infer(x, cfg.exit, cfg.partition, codec, deadline_ms=o.deadline_ms,
                                   t_arrival=t_arrival, predicted_ms=pred_cal,
                                   predicted_device_ms=float(c.device_ms[k]) * used[0])
            finally:
                if prober is not None:
                    prober.join()
                    probe = box[0]
            if not client.connected and c.crosses[k]:
                self.reconnector.wanted.set()
        finally:
            if locked:
                self.lock.release()
        return self._learn_and_record(res, k, source, codec, pred_offline, pred_cal, probe, estimate_before,
                                      label, t_arrival, used)

    def _learn_switch(self, res: InferenceResult) -> None:
        """Learn how long a fallback takes to start after the give-up point (the edge's timeout firing, the
        connection closed, the exit chosen: on a busy host more than the constant reserved for it) from a
        fallback that gave up there, and keep the margin quantile of the last ones in reserve
        (``client.fallback_switch_ms``, at least :data:`edgent.runtime.client.FALLBACK_SWITCH_MS`)."""
        o, client = self.options, self.client
        if not (res.where == "fallback" and res.give_up_reserved and res.fallback_left_ms is not None
                and "no answer" in (res.fallback_reason or "")):
            return
        # the fallback started at deadline - left, the give-up point was give_up_ms (the same exit times: the
        # client's are set once per request, in handle): the switch took the difference
        late_ms = (o.deadline_ms - res.fallback_left_ms) - client.give_up_ms(o.deadline_ms)
        self.switch_ms.append(max(late_ms, 0.0))
        client.fallback_switch_ms = max(FALLBACK_SWITCH_MS, float(np.quantile(self.switch_ms, o.margin_quantile)))

    def _learn_and_record(self, res: InferenceResult, k: int, source: str, codec: str, pred_offline: float,
                          pred_cal: float, probe: dict[str, Any] | None, estimate_before: float,
                          label: int | None, t_arrival: float, used: tuple[float, float]) -> dict[str, Any]:
        o, c, est = self.options, self.cands, self.client.estimator
        cfg = c.configs[k]
        sample_kind, sample = None, None
        if res.where == "edge":
            sample, sample_kind = res.bandwidth_sample_bps, res.bandwidth_sample_kind or "measured"
            self._unanswered = None
        elif res.where == "fallback" and c.crosses[k] and "no answer" in (res.fallback_reason or ""):
            size = float(res.upload_bytes or c.tx_bytes[k])
            # of the wait, the edge's own compute (as calibrated) and the wait its queue was predicted to hold
            # the request for (load-aware: the learnt wait the plan was priced with) are no link time: a busy edge
            # is slow, not the link
            edge_ms = float(c.edge_ms[k]) * used[1] + self.last_queue_ms
            waited_ms = res.total_ms - res.device_ms - res.encode_ms - edge_ms
            if waited_ms <= self.rtt_ms:
                # the edge had less than a round trip beyond its compute to answer (the request's budget was spent
                # before it was sent, or the edge is that slow): no evidence about the link
                sample_kind = "no_evidence"
            else:
                bound = timeout_bound_bps(size, res.total_ms - edge_ms, res.device_ms, res.encode_ms)
                self._unanswered = (size, t_arrival + (res.total_ms - waited_ms) / 1e3)
                if est.add_upper_bound(bound) is not None:
                    sample, sample_kind = bound, "upper_bound"
                else:  # consistent with every kept sample: no news for the estimate or the detector
                    sample_kind = "upper_bound_above_samples"
        changed = self._observe(sample)
        self._learn_switch(res)
        refused = res.where == "fallback" and "edge error overloaded" in (res.fallback_reason or "")
        if res.edge_load is not None and (res.where == "edge" or refused):  # the edge's load, learnt
            self.edge_load.observe(res.edge_load, (res.server_timings_ms or {}).get("queue_ms"), refused)
        # calibration: what was measured against what was predicted, per side and configuration
        if res.where in ("edge", "device"):
            self._measured.add(k)
        if res.where == "edge":
            # the priced device part includes the encoding (a JPEG of the input, say), the edge part the decoding
            self.calibration.observe("device", float(c.device_ms[k]), res.device_ms + res.encode_ms, cfg)
            server = res.server_timings_ms or {}
            if server.get("compute_ms") is not None:
                self.calibration.observe("edge", float(c.edge_ms[k]),
                                         float(server["compute_ms"]) + float(server.get("decode_ms") or 0.0), cfg)
        elif res.where == "device":
            self.calibration.observe("device", float(c.device_ms[k]), res.device_ms, cfg)
        if res.where == "device" or (res.where == "fallback" and cfg.partition == 0):  # a whole exit on the device
            self.exit_calibration.observe("device", self.device_exit_offline_ms[res.exit], res.device_ms, res.exit)
            self.exit_runs[res.exit] = self.exit_runs.get(res.exit, 0) + 1
        total_ms = (time.perf_counter() - t_arrival) * 1e3
        met = total_ms <= o.deadline_ms
        s = self.stats
        s.requests += 1
        s.met += int(met)
        s.offloaded += int(res.where == "edge")
        s.exits_used[res.exit] = s.exits_used.get(res.exit, 0) + 1
        s.card_accuracy_sum += float(c.tables[0].exits[res.exit - 1].accuracy)
        if self._last_config is not None and cfg != self._last_config:
            s.switches += 1
        self._last_config = cfg
        could_meet = None
        if res.where == "fallback":
            s.fallbacks += 1
            s.fallbacks_met += int(met)
            # could any on-device exit, as predicted, have made it in what was left when the device fell back?
            left_ms = o.deadline_ms if res.fallback_left_ms is None else res.fallback_left_ms
            could_meet = min(self.client.device_exit_ms.values()) <= left_ms
            s.fallbacks_could_meet += int(could_meet)
        probs = torch.softmax(res.logits[0].float(), dim=0)
        top = int(res.classes[0])
        if label is not None:
            s.labelled += 1
            s.correct += int(top == label)
        server = res.server_timings_ms or {}
        rec = {
            "seq": self.seq,
            "time_s": round(t_arrival - self.t0, 6),
            "time_unix_s": round(time.time(), 6),
            "policy": o.policy, "device_timing": o.device_timing,
            "plan": {"exit": cfg.exit, "partition": cfg.partition, "codec": codec, "planned_codec": cfg.codec,
                     "source": source, "candidate": k, "upload_bytes_priced": int(c.tx_bytes[k])},
            "estimate_bps": estimate_before, "estimate_after_bps": est.rate_bps, "rtt_ms": self.rtt_ms,
            "sample_bps": sample, "sample_kind": sample_kind, "change_detected": changed, "probe": probe,
            "bocpd_state_bps": self.last_state_bps,
            "predicted_ms": {"offline": round(pred_offline, 3), "calibrated": round(pred_cal, 3),
                             "edge_queue": round(self.last_queue_ms, 3)},
            "calibration_used": {"device": used[0], "edge": used[1]},
            "calibration": {"device": self.calibration.factor("device", cfg),
                            "edge": self.calibration.factor("edge", cfg)} if o.calibrate else None,
            "measured_ms": {"device": round(res.device_ms, 3), "encode": round(res.encode_ms, 3),
                            "network": None if res.network_ms is None else round(res.network_ms, 3),
                            "edge_queue": server.get("queue_ms"), "edge_compute": server.get("compute_ms"),
                            "edge_total": server.get("server_ms")},
            "bytes": {"upload": res.upload_bytes, "download": res.download_bytes},
            "where": res.where, "fallback_reason": res.fallback_reason, "exit_used": res.exit,
            "give_up_reserved": res.give_up_reserved,
            "no_exit_could_meet": None if could_meet is None else not could_meet,
            "fallback_left_ms": None if res.fallback_left_ms is None else round(res.fallback_left_ms, 3),
            "deadline_ms": o.deadline_ms, "total_ms": round(total_ms, 3), "met": met,
            "prediction": {"class": top, "confidence": round(float(probs[top]), 6), "exit": res.exit},
            "label": label, "correct": None if label is None else top == label,
        }
        self.seq += 1
        if self._records is not None:
            self._records.write(dumps_finite(rec) + "\n")
            self._records.flush()
        return rec

    def run(self, inputs: Sequence[Any] | Any, on_record: Any = None, rate_per_s: float | None = None,
            count: int | None = None, duration_s: float | None = None, queue_late: bool = True) -> AgentStats:
        """Serve ``inputs`` (an iterable of ``(image, label or None)``): at ``rate_per_s`` (arrivals on a fixed
        schedule; a late request starts at once) or back to back, until ``count`` requests, ``duration_s`` or
        the inputs end; ``on_record(record)`` after each.

        ``queue_late``: a request whose due time passed while the previous one ran has waited in a queue since
        then, and that wait is part of its time (a stream of requests); False: it arrives when the device is
        free to take it (a camera that hands over its newest frame when asked), and its time counts from then."""
        t_start = time.perf_counter()
        n = 0
        for item in inputs:
            if count is not None and n >= count:
                break
            now = time.perf_counter()
            if duration_s is not None and now - t_start >= duration_s:
                break
            t_arr = now
            if rate_per_s:  # the request arrives at its due time; a late one has waited since then
                t_arr = t_start + n / rate_per_s
                if t_arr > now:
                    time.sleep(t_arr - now)
                elif not queue_late:
                    t_arr = now
            img, label = item
            rec = self.handle(img, label, t_arrival=t_arr)
            n += 1
            if on_record is not None:
                on_record(rec)
        return self.stats
