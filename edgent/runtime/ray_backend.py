"""The edge tier on Ray Serve: ``edgent serve --backend ray``.

The front is edgent's own server (:class:`edgent.runtime.server.EdgeServer`: the wire protocol, the bounds and the
checks of every request, unchanged); behind it, :class:`RayCompute` hands each checked request to a Ray Serve
deployment (one per model, :class:`edgent.runtime.ray_replica.EdgeReplica`) through a ``DeploymentHandle``. Ray
Serve does the rest as it is meant to: replicas on any machine of the cluster, its own batching
(``@serve.batch``), and autoscaling of the replicas on the requests each one has ongoing or queued
(``autoscaling_config``: ``target_ongoing_requests``, ``min_replicas`` .. ``max_replicas``). edgent schedules
nothing itself.

What goes to a replica: the payload bytes as received and the request's plain fields (model, exit, partition,
codec name, shape, preprocessing name), never an object built from what a device sent.

Ray is imported only when this engine starts (``pip install "edgent[ray]"``); without it edgent runs as before and
``--backend ray`` says how to install it. By default the engine starts a local Ray cluster in this process
(:meth:`RayOptions.init_kwargs`: logical CPUs = this machine's, a small object store, no dashboard) and stops it
on shutdown; with ``--ray-address`` it joins a running cluster and, on shutdown, deletes only its own applications.

Shutdown (SIGTERM or SIGINT to ``edgent serve``): the front stops taking requests and lets those in service end
(:meth:`EdgeServer.stop`), then, on a cluster it started, ``serve.shutdown()`` and ``ray.shutdown()``, each given
``SERVE_SHUTDOWN_TIMEOUT_S``; the processes of the cluster (known while its raylet lived) that are still there
after that are killed. A SIGTERM to the whole process group (``timeout``, ``kill -- -PGID``) also reaches Ray's
own processes, after which Ray cannot shut down in order: the front then stops what is left of the cluster at
once. On a cluster it joined it deletes its applications and disconnects.

The load reported to devices means what it means under the local engine (:class:`~edgent.runtime.compute.ComputeLoad`):
``waiting + in_service`` is the requests this front has handed to Ray and not had back (counted here, exact);
``workers`` the replicas running now (from ``serve.status()``, polled); the split between waiting and in service
puts at most one request per replica in service; ``mean_compute_ms`` is a running mean of a replica's compute time
per request (a batch's compute time over its size).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgent.errors import ConfigError, EdgentError
from edgent.model.chain import MultiExitChain
from edgent.model.preprocess import preprocess_name
from edgent.runtime.compute import MEAN_COMPUTE_WEIGHT, ComputeLoad, EdgeCompute, EdgeJob
from edgent.runtime.local import descendant_processes, kill_leftovers

log = logging.getLogger("edgent.serve")

#: how to get Ray Serve (the optional extra of pyproject.toml)
RAY_INSTALL = 'pip install "edgent[ray]"  (or: pip install "ray[serve]==2.60.0")'
#: the prefix of the Ray Serve applications edgent deploys (one per model)
APP_PREFIX = "edgent-"
#: how often the front asks Ray Serve how many replicas run (s)
STATUS_POLL_S = 1.0
#: how often handles and replicas report their ongoing requests to the autoscaler (s; Ray's default is 10)
METRICS_PUSH_S = 0.5
#: the autoscaler's averaging window (s; Ray's default is 30)
LOOK_BACK_PERIOD_S = 3.0
#: how long Ray Serve, and then Ray, may take to shut down in order before what is left is stopped (s)
SERVE_SHUTDOWN_TIMEOUT_S = 10.0


def import_ray() -> tuple[Any, Any]:
    """``(ray, ray.serve)``, or a ConfigError that says how to install them."""
    # read by Ray Serve when it is first imported: the front's handle reports its queue to the autoscaler this often
    os.environ.setdefault("RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S", str(METRICS_PUSH_S))
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        raise ConfigError(f"--backend ray needs Ray Serve, which is not installed ({exc}); install it with: "
                          f"{RAY_INSTALL}") from None
    return ray, serve


@dataclass(frozen=True)
class ModelSource:
    """How a replica gets a model: as ``edgent serve --model`` was given it (a zoo name or a model folder, which
    must exist at the same path on every machine of the cluster), with ``--weights``/``--random-weights``/``--seed``."""

    ref: str
    weights: str | None = None
    random_weights: bool = False
    seed: int = 0


@dataclass(frozen=True)
class RayOptions:
    """The Ray engine's settings (``edgent serve --backend ray``; ``docs/scale.md``).

    ``address``: a running cluster to join (``"auto"``: the one started on this machine with ``ray start``);
    None starts a local one. ``replicas`` .. ``max_replicas``: the replicas of each model (autoscaled between the
    two on ``target_ongoing_requests`` per replica when they differ). ``max_ongoing_requests``: per replica; more
    wait at the front's handle. ``max_batch_size`` / ``batch_wait_timeout_s``: Ray Serve's batching.
    ``replica_cpus`` / ``replica_gpus``: Ray resources per replica (GPUs only where the parts run on one).
    ``upscale_delay_s`` / ``downscale_delay_s``: how long the load must stay before Ray adds / removes one."""

    address: str | None = None
    replicas: int = 1
    max_replicas: int | None = None
    target_ongoing_requests: float = 2.0
    max_ongoing_requests: int = 32
    max_batch_size: int = 8
    batch_wait_timeout_s: float = 0.002
    replica_cpus: float = 1.0
    replica_gpus: float = 1.0
    upscale_delay_s: float = 2.0
    downscale_delay_s: float = 30.0
    object_store_bytes: int = 256 * 1024 * 1024
    placement: dict[str, Any] = field(default_factory=lambda: {"device": "cpu", "fp16": "auto"})

    @property
    def top_replicas(self) -> int:
        return self.replicas if self.max_replicas is None else self.max_replicas

    def check(self) -> None:
        """Raise ConfigError (naming the ``edgent serve`` option) for settings Ray cannot run."""
        if not isinstance(self.replicas, int) or self.replicas < 1:
            raise ConfigError(f"--replicas must be an integer of at least 1, got {self.replicas!r}")
        if self.top_replicas < self.replicas:
            raise ConfigError(f"--max-replicas ({self.top_replicas}) must be at least --replicas ({self.replicas})")
        if not 1 <= self.max_batch_size <= 256:
            raise ConfigError(f"--ray-batch must be 1..256, got {self.max_batch_size}")
        if self.max_ongoing_requests < 1:
            raise ConfigError(f"--max-ongoing must be at least 1, got {self.max_ongoing_requests}")
        options = {"target_ongoing_requests": "--target-ongoing", "replica_cpus": "--replica-cpus",
                   "batch_wait_timeout_s": "--ray-batch-wait-ms (in s here)", "upscale_delay_s": "--upscale-delay-s",
                   "downscale_delay_s": "--downscale-delay-s", "replica_gpus": "--replica-gpus"}
        for name, option in options.items():
            v = getattr(self, name)
            positive = name in ("target_ongoing_requests", "replica_cpus")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (positive and v == 0):
                raise ConfigError(f"{option} must be a {'positive' if positive else 'non-negative'} number, "
                                  f"got {v!r}")
        if self.address is not None and not self.address.strip():
            raise ConfigError("--ray-address is empty: give ADDR (host:port of the head node), 'auto', or none "
                              "to start a local cluster")

    def deployment_options(self, name: str, gpus: float) -> dict[str, Any]:
        """The Ray Serve options of a model's deployment: fixed replicas, or autoscaling between the bounds."""
        env = {"RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": str(METRICS_PUSH_S)}
        opts: dict[str, Any] = {
            "name": name, "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": self.replica_cpus, "num_gpus": gpus,
                                  "runtime_env": {"env_vars": env}},
        }
        if self.top_replicas == self.replicas:
            opts["num_replicas"] = self.replicas
        else:
            opts["autoscaling_config"] = {
                "min_replicas": self.replicas, "initial_replicas": self.replicas,
                "max_replicas": self.top_replicas, "target_ongoing_requests": self.target_ongoing_requests,
                "upscale_delay_s": self.upscale_delay_s, "downscale_delay_s": self.downscale_delay_s,
                "look_back_period_s": LOOK_BACK_PERIOD_S, "metrics_interval_s": METRICS_PUSH_S}
        return opts

    def init_kwargs(self) -> dict[str, Any]:
        """``ray.init``'s arguments: join ``address``, or start a local cluster sized for this machine (logical
        CPUs: this machine's, and enough for ``max_replicas`` replicas of ``replica_cpus``; a small object store:
        requests and answers are small; no dashboard)."""
        common = {"logging_level": logging.WARNING, "log_to_driver": False}
        if self.address is not None:
            return {"address": self.address, **common}
        cpus = max(os.cpu_count() or 1, int(self.top_replicas * self.replica_cpus + 0.999))
        # "local": always a new cluster (ray.init() alone would join one that `ray start` left on this machine)
        return {"address": "local", "num_cpus": cpus, "object_store_memory": self.object_store_bytes,
                "include_dashboard": False, **common}


class RayCompute(EdgeCompute):
    """Computes on Ray Serve (see the module docstring). ``models``: the chains the front checks requests against
    (name -> chain); ``sources``: how the replicas load each (name -> :class:`ModelSource`)."""

    name = "ray"

    def __init__(self, models: dict[str, MultiExitChain], sources: dict[str, ModelSource],
                 options: RayOptions | None = None) -> None:
        self.models = models
        self.sources = sources
        self.options = options or RayOptions()
        self.options.check()
        missing = set(models) - set(sources)
        if missing:
            raise EdgentError(f"no model source for {', '.join(sorted(missing))}")
        self._ray: Any = None
        self._serve: Any = None
        self._handles: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._in_flight = 0
        self._workers = 0
        self._mean_compute_ms: float | None = None
        self._mean_service_ms: float | None = None
        self._started_cluster = False
        self._stop_poll = threading.Event()
        self._poller: threading.Thread | None = None
        self._cluster_processes: dict[int, int] = {}
        self.replica_info: dict[str, Any] = {}
        self.cluster_address: str | None = None

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._start_sync)

    def _start_sync(self) -> None:
        ray, serve = import_ray()
        self._ray, self._serve = ray, serve
        kwargs = self.options.init_kwargs()
        try:
            ctx = ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {self.options.address}" if self.options.address else "a local Ray cluster"
            raise ConfigError(f"cannot start or join {where}: {exc}") from exc
        self._started_cluster = self.options.address is None
        self.cluster_address = getattr(ctx, "address_info", {}).get("address") or self.options.address
        try:
            gpus = self._replica_gpus(ray)
            self._check_resources(ray, gpus)
            serve.start(proxy_location="Disabled")
            for name, src in self.sources.items():
                from edgent.runtime.ray_replica import EdgeReplica

                dep = serve.deployment(EdgeReplica).options(**self.options.deployment_options(name, gpus))
                app = dep.bind(asdict(src), dict(self.options.placement), self.options.max_batch_size,
                               self.options.batch_wait_timeout_s, max(1, int(self.options.replica_cpus)))
                try:
                    handle = serve.run(app, name=APP_PREFIX + name, route_prefix=None)
                    self.replica_info[name] = handle.describe.remote().result(timeout_s=120)
                except Exception as exc:  # noqa: BLE001 - a replica that cannot start: say why, no traceback
                    raise EdgentError(f"Ray Serve could not start the replicas of {name}: {exc}") from exc
                self._handles[name] = handle
            self._workers = self._running_replicas()
        except BaseException:
            self._shutdown_sync()
            raise
        self._poller = threading.Thread(target=self._poll, name="ray-status", daemon=True)
        self._poller.start()

    def _replica_gpus(self, ray: Any) -> float:
        """GPUs a replica asks Ray for: ``replica_gpus`` where the parts are to run on a GPU (``--device cuda``, or
        ``auto`` on a cluster that has GPUs), else none (Ray hides the GPUs from an actor that asks for none)."""
        device = str(self.options.placement.get("device", "cpu"))
        if device.startswith("cuda"):
            return self.options.replica_gpus
        if device == "auto" and ray.cluster_resources().get("GPU", 0) > 0:
            return self.options.replica_gpus
        return 0.0

    def _check_resources(self, ray: Any, gpus: float) -> None:
        """Refuse settings whose first replicas no machine of the cluster could take (Ray would wait for them)."""
        have = ray.cluster_resources()
        o = self.options
        need_cpus = o.replicas * o.replica_cpus * len(self.sources)
        if have.get("CPU", 0) < need_cpus:
            raise ConfigError(f"the Ray cluster has {have.get('CPU', 0):g} CPUs, {need_cpus:g} needed for --replicas "
                              f"{o.replicas} x --replica-cpus {o.replica_cpus:g} x {len(self.sources)} model(s): "
                              "lower them or add machines (docs/scale.md)")
        if gpus and have.get("GPU", 0) < gpus * o.replicas * len(self.sources):
            raise ConfigError(f"--device {o.placement.get('device')}: the Ray cluster has {have.get('GPU', 0):g} GPUs, "
                              f"{gpus * o.replicas * len(self.sources):g} needed (--replica-gpus {gpus:g}); use "
                              "--device cpu or add a machine with a GPU")

    def _running_replicas(self) -> int:
        """Replicas in state RUNNING over edgent's applications, from Ray Serve's status API."""
        status = self._serve.status()
        n = 0
        for app_name, app in status.applications.items():
            if app_name.startswith(APP_PREFIX) and app_name[len(APP_PREFIX):] in self.sources:
                for dep in app.deployments.values():
                    n += int(dep.replica_states.get("RUNNING", 0))
        return n

    def _poll(self) -> None:
        last = self._workers
        while not self._stop_poll.wait(STATUS_POLL_S):
            if self._started_cluster:  # known while the raylet lives: its workers outlive it
                self._cluster_processes.update(descendant_processes(os.getpid()))
            try:
                n = self._running_replicas()
            except Exception as exc:  # noqa: BLE001 - the cluster is going away; keep the last figure
                log.debug("serve.status() failed: %s", exc)
                continue
            self._workers = n
            if n != last:
                print(f"edgent serve: ray: {n} replica{'s' if n != 1 else ''} running", flush=True)
                last = n

    async def stop(self) -> None:
        self._stop_poll.set()
        await asyncio.get_running_loop().run_in_executor(None, self._shutdown_sync)

    def _shutdown_sync(self) -> None:
        """Delete edgent's applications; where this engine started the cluster, shut Ray Serve down and stop the
        cluster, leaving no process of it behind (see the module's note on shutdown)."""
        ray, serve = self._ray, self._serve
        if ray is None or not ray.is_initialized():
            return
        self._stop_poll.set()
        if not self._started_cluster:
            _bounded(lambda: [serve.delete(APP_PREFIX + name) for name in self.sources], "deleting the applications")
            _bounded(ray.shutdown, "disconnecting from the cluster")
            return
        self._cluster_processes.update(descendant_processes(os.getpid()))
        if _head_alive(self._cluster_processes) and _bounded(serve.shutdown, "Ray Serve's shutdown"):
            _bounded(ray.shutdown, "stopping the local cluster")
            left = kill_leftovers(self._cluster_processes)
        else:
            # the cluster was hit first (e.g. a SIGTERM to the whole process group): Ray can no longer shut down in
            # order (and the driver would exit with the raylet), so what is left of it is stopped at once
            print("edgent serve: ray: the local cluster cannot shut down in order (was it signalled too?); "
                  "stopping what is left of it", file=sys.stderr, flush=True)
            left = kill_leftovers(self._cluster_processes, wait_s=0.0)
        if left:
            print(f"edgent serve: ray: killed {len(left)} leftover process(es) of the local cluster",
                  file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ requests
    def load(self) -> ComputeLoad:
        with self._lock:
            n = self._in_flight
        workers = max(self._workers, 1)
        in_service = min(n, workers)
        return ComputeLoad(n - in_service, in_service, workers,
                           None if self._mean_compute_ms is None else round(self._mean_compute_ms, 3),
                           None if self._mean_service_ms is None else round(self._mean_service_ms, 3),
                           round(self.options.batch_wait_timeout_s * 1e3, 3))

    async def run(self, job: EdgeJob, payload: bytes, deadline_ms: float | None = None
                  ) -> tuple[torch.Tensor, dict[str, float]]:
        request = ray_request(job, payload)
        with self._lock:
            self._in_flight += 1
        t0 = time.perf_counter()
        try:
            answer = await self._handles[job.model].compute.remote(request)
        finally:
            with self._lock:
                self._in_flight -= 1
        round_trip_ms = (time.perf_counter() - t0) * 1e3
        if isinstance(answer, dict):  # the replica could not compute it: {"code": ..., "message": ...}
            err = EdgentError(str(answer.get("message")))
            err.code = str(answer.get("code", "internal"))  # type: ignore[attr-defined]
            raise err
        logits, timings = torch.from_numpy(np.array(answer[0], dtype=np.float32)), dict(answer[1])  # a copy
        batch = max(int(timings.get("batch_size", 1)), 1)
        self.record_compute_ms(timings["compute_ms"], batch)
        work_ms = timings["decode_ms"] + timings["compute_ms"] + timings["encode_ms"]
        timings["queue_ms"] = max(round_trip_ms - work_ms, 0.0)  # everything but the work: Ray, batching, waiting
        return logits, timings

    def record_compute_ms(self, compute_ms: float, batch_size: int = 1) -> None:
        """Fold one answer's compute time (of its whole batch of ``batch_size``) into the running means that
        devices are told, as the local engines do: ``mean_compute_ms`` of a computation, ``mean_service_ms`` of a
        replica's time per request (the batch's compute over its size)."""
        def fold(m: float | None, x: float) -> float:
            return x if m is None else (1 - MEAN_COMPUTE_WEIGHT) * m + MEAN_COMPUTE_WEIGHT * x

        with self._lock:
            self._mean_compute_ms = fold(self._mean_compute_ms, compute_ms)
            self._mean_service_ms = fold(self._mean_service_ms, compute_ms / max(batch_size, 1))

    def describe(self) -> str:
        """One line for ``edgent serve``'s banner: the cluster, the replicas, where they run the parts."""
        o = self.options
        where = (f"joined the Ray cluster at {o.address}" if o.address
                 else f"a local Ray cluster started here ({self.cluster_address or 'not started'})")
        reps = f"{o.replicas}" if o.top_replicas == o.replicas else f"{o.replicas}..{o.top_replicas} (autoscaled)"
        places = sorted({str(i.get("placement")) for i in self.replica_info.values()}) or ["not started"]
        return (f"ray ({where}; replicas per model {reps}, batches up to {o.max_batch_size}; parts on "
                f"{'; '.join(places)})")


def _bounded(fn: Any, what: str, timeout_s: float = SERVE_SHUTDOWN_TIMEOUT_S) -> bool:
    """Run ``fn`` in a thread for at most ``timeout_s``; whether it returned in time without an error."""
    done: list[bool] = []

    def run() -> None:
        try:
            fn()
            done.append(True)
        except Exception as exc:  # noqa: BLE001 - shutting down anyway
            log.warning("%s failed: %s", what, exc)

    t = threading.Thread(target=run, name="ray-shutdown", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        print(f"edgent serve: ray: {what} did not end within {timeout_s:g} s", file=sys.stderr, flush=True)
    return bool(done)


def _head_alive(processes: dict[int, int]) -> bool:
    """Whether the head's servers (``gcs_server``, ``raylet``) among ``processes`` (pid -> start time) still run."""
    head = 0
    for pid, started in processes.items():
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            comm, rest = "", []
        if comm in ("gcs_server", "raylet"):
            if int(rest[19]) != started or rest[0] == "Z":
                return False
            head += 1
    return head == 2 or not processes


def ray_request(job: EdgeJob, payload: bytes) -> dict[str, Any]:
    """What goes to a replica for a checked job: its plain fields and the payload bytes as received."""
    return {"model": job.model, "exit": job.exit, "partition": job.partition, "codec": job.codec.name,
            "shape": list(job.shape), "preprocess": None if job.preprocess is None else preprocess_name(job.preprocess),
            "payload": bytes(payload)}
