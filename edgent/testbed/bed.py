"""One co-inference bed: the link, the weak device, a real edge server and the device's client, started and torn
down as one object.

The demo, ``edgent bench paper`` and the dynamic benchmark's testbed executor all need the same five things in
the same order: a testbed link (:func:`~edgent.testbed.open_testbed`: namespaces and ``tc tbf`` as root, else the
emulated link), the device emulation (:class:`~edgent.profile.device.DeviceThrottle`, one torch thread), an
``edgent serve`` process on the edge side, a :class:`~edgent.runtime.client.DeviceClient` priced by the latency
table (its fallback budget is :meth:`~edgent.plan.table.LatencyTable.fallback_device_ms`) whose bandwidth
estimator corrects the link's shaper burst (:attr:`CoInferenceBed.shaper`), and an unrecorded
warm-up of both sides' first forward passes. :class:`CoInferenceBed` is that sequence, with one teardown that
runs on errors and Ctrl-C too.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgent.errors import EdgentError
from edgent.plan.table import LatencyTable


@dataclass(frozen=True)
class BedOptions:
    """How to bring a bed up.

    Attributes:
        model: zoo model both sides run.
        rate_bps: the link's first rate (a replay or :meth:`CoInferenceBed.set_rate` changes it).
        rtt_ms: round-trip delay the device application adds (this kernel has no netem).
        emulate: True for the emulated link even as root; None picks the namespace testbed as root.
        port: the edge server's port in the namespace (the emulated link takes a free loopback port).
        random_weights: seeded random weights on both sides instead of the trained ones.
        seed: the seed of random weights.
        edge_torch_threads: torch threads of the edge server (it computes inline, no worker hand-off).
        log_dir: where the edge server's log goes (None: discarded).
        client_name: how the device names itself in its HELLO.
    """

    model: str = "alexnet-cifar10"
    rate_bps: float = 1e6
    rtt_ms: float = 20.0
    emulate: bool | None = None
    port: int = 8470
    random_weights: bool = False
    seed: int = 0
    edge_torch_threads: int = 2
    log_dir: Path | None = None
    client_name: str = "edgent-device"


@dataclass
class CoInferenceBed:
    """Link + device emulation + edge server + device client; use as a context manager.

    ``table`` prices the device's fallback (:meth:`LatencyTable.fallback_device_ms`) and names the exits whose
    first forward passes the warm-up runs; ``accuracies`` (top-1 per exit) travels with the client's answers.
    After :meth:`start` (or ``__enter__``, which starts it unless started): ``testbed``, ``throttle``, ``client``, ``chain``, ``edge_process`` and ``edge_port``.
    """

    options: BedOptions
    table: LatencyTable
    accuracies: list[float]
    testbed: Any = field(default=None, init=False)
    throttle: Any = field(default=None, init=False)
    client: Any = field(default=None, init=False)
    chain: Any = field(default=None, init=False)
    edge_process: Any = field(default=None, init=False)
    edge_port: int = field(default=0, init=False)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, init=False, repr=False)

    @property
    def kind(self) -> str:
        """``netns`` (namespaces and ``tc``) or ``emulated`` (token bucket in the device)."""
        return self.testbed.kind

    @property
    def shaper(self) -> str:
        """What shapes the link, for the estimator's burst correction: ``packets`` (``tc tbf`` on the namespace
        veth counts Ethernet packets) or ``app`` (the emulated link's bucket on the application's bytes)."""
        return "packets" if self.kind == "netns" else "app"

    def __enter__(self) -> "CoInferenceBed":
        return self if self.client is not None else self.start()

    def start(self) -> "CoInferenceBed":
        """Bring everything up in order; on any failure, tear down what was started and re-raise."""
        import torch

        from edgent.model.zoo import load_for_inference
        from edgent.profile.device import DeviceThrottle
        from edgent.runtime.bandwidth import BandwidthEstimator
        from edgent.runtime.client import DeviceClient
        from edgent.testbed import open_testbed, start_edge_server

        o = self.options
        try:
            self.testbed = self._stack.enter_context(open_testbed(o.rate_bps, o.rtt_ms, emulate=o.emulate))
            self.throttle = self._stack.enter_context(DeviceThrottle())
            torch.set_num_threads(1)  # the device role: one thread
            self.chain = load_for_inference(o.model, random_weights=o.random_weights, seed=o.seed)
            extra = ["--threads", "0", "--torch-threads", str(o.edge_torch_threads)]
            if o.random_weights:
                extra += ["--random-weights", "--seed", str(o.seed)]
            log = None if o.log_dir is None else Path(o.log_dir) / "edge.log"
            self.edge_process, self.edge_port = start_edge_server(self.testbed, o.model, o.port, log, extra)
            self._stack.callback(self.testbed.stop_process, self.edge_process)
            self.client = self._stack.enter_context(DeviceClient(
                self.testbed.edge_host, self.edge_port, self.chain, link=self.testbed.link, slowdown=self.throttle,
                exit_accuracy={i + 1: float(a) for i, a in enumerate(self.accuracies)},
                estimator=BandwidthEstimator(shaper=self.shaper),
                device_exit_ms=self.table.fallback_device_ms(), client_name=o.client_name))
            if not self.client.connect(force=True):
                raise EdgentError(f"the device cannot reach the edge at {self.testbed.edge_host}:{self.edge_port}: "
                                  f"{getattr(self.client, 'last_connect_error', '?')}")
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def close(self) -> None:
        """Stop the edge server, remove the link and release the device emulation (idempotent)."""
        self._stack.close()

    def warm_up(self, image: np.ndarray) -> None:
        """Unrecorded: both sides' first forward passes (lazy initialisation), the main exit on the edge from the
        raw pixels and the first exit on the device."""
        first, last = self.table.exits[0], self.table.exits[-1]
        self.client.infer(image, int(last.exit), 0, "uint8", fallback=False)
        self.client.infer(image, int(first.exit), int(first.num_units))

    def describe(self) -> dict[str, Any]:
        """What ran, for results and reports: the link, the device, the edge."""
        return {"kind": self.kind, "testbed": self.testbed.describe(), "device": self.throttle.describe(),
                "rtt_delay_ms": self.options.rtt_ms,
                "edge": (f"edgent serve --threads 0 --torch-threads {self.options.edge_torch_threads} "
                         f"({'in the edge namespace' if self.kind == 'netns' else 'a process on loopback'}) at "
                         f"{self.testbed.edge_host}:{self.edge_port}")}

    def edge_exited(self) -> int | None:
        """The edge server's exit code if it has stopped, else None."""
        return None if self.edge_process is None else self.edge_process.poll()


def calibrate_wire(client: Any, image: np.ndarray, codec: str, input_bytes: int, result_bytes: int, netns: bool,
                   requests: int = 5, gap_s: float = 0.05) -> tuple["WireFraming", float]:
    """edgent's framing and per-request runtime overhead, measured on a few edge-only requests (not recorded):
    what a request and its answer carried beyond their payloads; on the namespace testbed, the packets' headers at
    the connection's MSS; and the median time of everything but the device, the link and the edge's compute
    (encoding, decoding, framing, the server's bookkeeping: the planner's per-message cost, two messages each)."""
    import socket
    import time

    from edgent.plan.link import ETHERNET_MSS
    from edgent.plan.overhead import WireFraming

    overheads = []
    for _ in range(requests):
        time.sleep(gap_s)
        r = client.infer(image, client.chain.exit_points[-1].exit, 0, codec, fallback=False)
        compute = float((r.server_timings_ms or {}).get("compute_ms", 0.0))
        overheads.append(r.total_ms - r.device_ms - float(r.network_ms) - compute)
    mss = ETHERNET_MSS
    if netns and client.sock is not None:
        try:
            mss = int(client.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG))
        except OSError:
            pass
    framing = WireFraming.edgent(r.upload_bytes - input_bytes, r.download_bytes - result_bytes, ethernet=netns,
                                 segment_bytes=mss)
    return framing, float(np.median(overheads))
