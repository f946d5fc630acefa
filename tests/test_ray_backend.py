"""The edge tier on Ray Serve (``edgent serve --backend ray``): the fast tests need no Ray (options, the error
without Ray, the load a device is told, the plain request a replica gets); the slow one starts a real local Ray
Serve edge as a user would, serves devices through the unchanged wire protocol and client, drives it until Ray
Serve's autoscaler runs two replicas, then stops it with SIGTERM and checks that no process of its cluster is
left."""

from __future__ import annotations

import asyncio
import builtins
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch

from edgent.errors import ConfigError
from edgent.model.zoo import load_for_inference
from edgent.runtime.compute import ComputeLoad, EdgeJob
from edgent.runtime.local import descendant_processes, free_port, serve_process, stop_process
from edgent.runtime.ray_backend import ModelSource, RayCompute, RayOptions, import_ray, ray_request

MODEL = "alexnet-cifar10"


@pytest.fixture(scope="module")
def chain():
    return load_for_inference(MODEL, random_weights=True, seed=0)


# ---------------------------------------------------------------------------------------------- without Ray
def test_without_ray_the_error_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ConfigError, match=r'pip install "edgent\[ray\]"'):
        import_ray()


def test_serve_refuses_ray_options_without_the_ray_backend(capsys):
    from edgent.cli.main import main

    rc = main(["serve", "--random-weights", "--replicas", "2", "--port", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and "--replicas is an option of --backend ray" in err


@pytest.mark.parametrize("kwargs, option", [
    ({"replicas": 0}, "--replicas"),
    ({"replicas": 3, "max_replicas": 2}, "--max-replicas"),
    ({"max_batch_size": 0}, "--ray-batch"),
    ({"target_ongoing_requests": 0.0}, "--target-ongoing"),
    ({"replica_cpus": 0.0}, "--replica-cpus"),
    ({"address": " "}, "--ray-address"),
])
def test_bad_ray_options_are_refused(kwargs, option):
    with pytest.raises(ConfigError, match=option):
        RayOptions(**kwargs).check()


def test_fixed_replicas_or_autoscaling_between_the_bounds():
    fixed = RayOptions(replicas=2).deployment_options("m", gpus=0.0)
    assert fixed["num_replicas"] == 2 and "autoscaling_config" not in fixed
    scaled = RayOptions(replicas=1, max_replicas=3, target_ongoing_requests=4).deployment_options("m", gpus=0.5)
    auto = scaled["autoscaling_config"]
    assert "num_replicas" not in scaled
    assert (auto["min_replicas"], auto["max_replicas"], auto["target_ongoing_requests"]) == (1, 3, 4)
    assert scaled["ray_actor_options"]["num_gpus"] == 0.5


def test_a_local_cluster_has_room_for_the_largest_replica_count():
    kw = RayOptions(replicas=1, max_replicas=8, replica_cpus=1.0).init_kwargs()
    assert kw["num_cpus"] >= 8 and kw["include_dashboard"] is False and kw["address"] == "local"
    joined = RayOptions(address="10.0.0.1:6379").init_kwargs()
    assert joined["address"] == "10.0.0.1:6379" and "num_cpus" not in joined


def test_a_replica_gets_plain_fields_and_the_payload(chain):
    from edgent.codec import get_codec
    from edgent.model.preprocess import get_preprocess

    codec = get_codec("uint8")
    job = EdgeJob(MODEL, chain, chain.num_exits, 0, codec, (2, 3, 32, 32), get_preprocess("cifar10"),
                  codec.payload_bytes((2, 3, 32, 32)))
    req = ray_request(job, memoryview(b"\x01" * 6144))
    assert req == {"model": MODEL, "exit": chain.num_exits, "partition": 0, "codec": "uint8",
                   "shape": [2, 3, 32, 32], "preprocess": "cifar10", "payload": b"\x01" * 6144}
    assert all(isinstance(v, (str, int, list, bytes, type(None))) for v in req.values())


class _Answer:
    """Stands in for a DeploymentResponse: awaitable, answers after ``gate`` is set."""

    def __init__(self, gate: asyncio.Event, batch: int) -> None:
        self.gate, self.batch = gate, batch

    def __await__(self):
        async def wait():
            await self.gate.wait()
            return (torch.zeros(1, 10).numpy(), {"decode_ms": 0.1, "compute_ms": 8.0, "encode_ms": 0.1,
                                                 "batch_size": self.batch})
        return wait().__await__()


class _Handle:
    def __init__(self, gate: asyncio.Event, batch: int) -> None:
        outer = self

        class _Method:
            def remote(self, request):
                assert isinstance(request, dict) and isinstance(request["payload"], bytes)
                return _Answer(gate, batch)

        self.compute = _Method()
        self.outer = outer


def test_the_load_counts_requests_handed_to_ray_until_they_return(chain):
    """waiting + in_service: requests the front handed to Ray and has not had back; workers: the replicas
    running; mean compute: a batch's compute time, mean service: a replica's time per request (a batch's compute
    over its size), as the local batching engine reports them; the batch window: Ray Serve's batch wait."""
    from edgent.codec import get_codec

    async def scenario() -> list[ComputeLoad]:
        gate = asyncio.Event()
        engine = RayCompute({MODEL: chain}, {MODEL: ModelSource(MODEL, random_weights=True)}, RayOptions())
        engine._handles[MODEL] = _Handle(gate, batch=4)
        engine._workers = 2
        codec = get_codec("float32")
        job = EdgeJob(MODEL, chain, chain.num_exits, 0, codec, (1, 3, 32, 32), None,
                      codec.payload_bytes((1, 3, 32, 32)))
        tasks = [asyncio.create_task(engine.run(job, bytes(codec.payload_bytes(job.shape)))) for _ in range(5)]
        await asyncio.sleep(0.01)
        seen = [engine.load()]
        gate.set()
        outs = await asyncio.gather(*tasks)
        assert all(logits.shape == (1, 10) and t["queue_ms"] >= 0 for logits, t in outs)
        seen.append(engine.load())
        return seen

    during, after = asyncio.run(scenario())
    assert (during.waiting, during.in_service, during.workers) == (3, 2, 2)
    assert during.mean_compute_ms is None
    assert (after.waiting, after.in_service, after.workers) == (0, 0, 2)
    assert after.mean_compute_ms == pytest.approx(8.0)  # 8 ms for a batch of 4
    assert after.mean_service_ms == pytest.approx(2.0)
    assert after.batch_window_ms == pytest.approx(RayOptions().batch_wait_timeout_s * 1e3)


def test_descendants_are_found_and_leftovers_killed(tmp_path):
    from edgent.runtime.local import kill_leftovers

    proc = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"])
    try:
        t_end = time.monotonic() + 10
        kids: dict[int, int] = {}
        while len(kids) < 2 and time.monotonic() < t_end:
            kids = descendant_processes(proc.pid)
            time.sleep(0.05)
        assert len(kids) == 2
        proc.kill()  # the children outlive their parent
        proc.wait()
        assert sorted(kill_leftovers(kids, wait_s=0.2)) == sorted(kids)
        time.sleep(0.2)
        assert not kill_leftovers(kids, wait_s=0.0)
    finally:
        if proc.poll() is None:
            proc.kill()


# ---------------------------------------------------------------------------------------------- a real cluster
def _ray_processes(session: int | None = None) -> dict[int, str]:
    """Processes of Ray on this machine (the head's servers and every worker), pid -> name; only those of the
    session ``session`` where given (a process started by ``serve_process`` leads its own session, and Ray's
    processes stay in it)."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            comm = (d / "comm").read_text().strip()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            state, sid = stat[0], int(stat[3])
        except (OSError, IndexError, ValueError):
            continue
        if state == "Z" or (session is not None and sid != session):  # a zombie has ended: only its entry is left
            continue
        if comm in ("raylet", "gcs_server") or cmd.startswith("ray::") or "site-packages/ray/" in cmd:
            out[int(d.name)] = comm
    return out


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_ray_serve_edge_scales_to_two_replicas_and_leaves_nothing_behind(chain, tmp_path):
    pytest.importorskip("ray.serve", reason='Ray Serve is not installed: pip install "edgent[ray]"')
    from edgent.data.cifar10 import to_model_input
    from edgent.runtime.client import DeviceClient

    log = tmp_path / "serve.log"
    port = free_port()
    proc = serve_process(port, model_flags=["--model", MODEL, "--random-weights", "--seed", "0"],
                         extra=["--backend", "ray", "--device", "cpu", "--replicas", "1", "--max-replicas", "2",
                                "--replica-cpus", "1", "--upscale-delay-s", "1", "--torch-threads", "1"],
                         ready_timeout_s=240, output=log)
    cluster: dict[int, int] = {}
    try:
        images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            expected = chain(to_model_input(images)).argmax(1).tolist()
        answers: list[tuple[str, list[int], int]] = []
        workers_seen: list[int] = []
        stop = threading.Event()

        def device(k: int) -> None:  # the unchanged client, as a device uses it
            with DeviceClient("127.0.0.1", port, chain) as client:
                i = k
                while not stop.is_set():
                    r = client.infer(images[i % 8 : i % 8 + 1], chain.num_exits, 0, "uint8")
                    answers.append((r.where, r.classes, i % 8))
                    workers_seen.append(int((r.edge_load or {}).get("workers", 0)))
                    i += 1

        threads = [threading.Thread(target=device, args=(k,), daemon=True) for k in range(6)]
        for t in threads:
            t.start()
        t_end = time.monotonic() + 150
        while time.monotonic() < t_end and not (workers_seen and workers_seen[-1] >= 2):
            time.sleep(0.5)
            assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(2)  # a few answers from both replicas
        stop.set()
        for t in threads:
            t.join(30)
        cluster = descendant_processes(proc.pid)
        text = log.read_text()
        assert workers_seen and max(workers_seen) == 2, text[-3000:]  # from serve.status(), polled by the front
        assert "ray: 2 replicas running" in text
        ours = _ray_processes(session=proc.pid)
        assert {"raylet", "gcs_server"} <= set(ours.values()), ours
        replicas = [p for p, c in ours.items() if c.startswith("ray::ServeRepl")]
        assert len(replicas) == 2, ours
        assert len(answers) >= 20
        assert all(where == "edge" for where, _, _ in answers)
        assert all(classes == [expected[i]] for _, classes, i in answers)
        assert "engine ray (a local Ray cluster started here" in text and "parts on cpu" in text
        # SIGTERM to the server, as `kill PID` sends it
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(120)
        assert rc == 0, log.read_text()[-3000:]
        _assert_nothing_left(proc, cluster, log)
    finally:
        _kill_cluster(proc, cluster)


def test_a_replica_error_reaches_the_device_as_an_error(chain):
    from edgent.codec import get_codec
    from edgent.errors import EdgentError

    class _Failing:
        class compute:  # noqa: N801 - stands in for a handle's method
            @staticmethod
            def remote(request):
                async def answer():
                    return {"code": "bad_request", "message": "codec uint8: payload of 3 bytes does not fit"}
                return answer()

    engine = RayCompute({MODEL: chain}, {MODEL: ModelSource(MODEL)}, RayOptions())
    engine._handles[MODEL] = _Failing()
    codec = get_codec("float32")
    job = EdgeJob(MODEL, chain, chain.num_exits, 0, codec, (1, 3, 32, 32), None, codec.payload_bytes((1, 3, 32, 32)))
    with pytest.raises(EdgentError, match="does not fit") as info:
        asyncio.run(engine.run(job, b"abc"))
    assert info.value.code == "bad_request" and engine.load().waiting + engine.load().in_service == 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_sigterm_to_the_whole_process_group_leaves_no_ray_process(tmp_path):
    """``timeout``, ``kill -- -PGID`` or a service manager signal Ray's own processes too; the front then stops
    what is left of its cluster instead of waiting for a shutdown that cannot happen."""
    pytest.importorskip("ray.serve", reason='Ray Serve is not installed: pip install "edgent[ray]"')
    log = tmp_path / "serve.log"
    proc = serve_process(free_port(), model_flags=["--model", MODEL, "--random-weights", "--seed", "0"],
                         extra=["--backend", "ray", "--device", "cpu"], ready_timeout_s=240, output=log)
    cluster: dict[int, int] = {}
    try:
        time.sleep(1)
        cluster = descendant_processes(proc.pid)
        assert {"raylet", "gcs_server"} <= set(_ray_processes(session=proc.pid).values())
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(120)
        _assert_nothing_left(proc, cluster, log)
    finally:
        _kill_cluster(proc, cluster)


def _assert_nothing_left(proc: subprocess.Popen, cluster: set[int] | list[int], log: Path) -> None:
    """No process of the server's Ray cluster (or of its session) is left, a second after it exited."""
    time.sleep(1)
    left = {p: c for p, c in _ray_processes().items() if p in cluster}
    left.update(_ray_processes(session=proc.pid))
    assert not left, f"Ray processes left behind: {left}\n{log.read_text()[-3000:]}"


def _kill_cluster(proc: subprocess.Popen, cluster: set[int] | list[int]) -> None:
    """Stop the server if it still runs and kill what is left of its cluster: never leave a cluster running on a
    shared machine, whatever the test's outcome."""
    if proc.poll() is None:
        stop_process(proc)
    for p in cluster:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
