"""Where the edge's parts run (edgent.model.placement) and the shared batch computation of the engines."""

from __future__ import annotations

import json

import pytest
import torch

from edgent.codec import get_codec
from edgent.errors import ConfigError
from edgent.model.placement import (
    FP16_MAX_TOP1_LOSS,
    Placement,
    PartRunner,
    choose_placement,
    cuda_available,
    fp16_allowed,
    resolve_device,
)
from edgent.model.preprocess import PREPROCESSORS, get_preprocess, preprocess_name
from edgent.model.zoo import load_for_inference
from edgent.runtime.compute import EdgeJob, LocalCompute, compute_batch, compute_job

MODEL = "alexnet-cifar10"


@pytest.fixture(scope="module")
def chain():
    return load_for_inference(MODEL, random_weights=True, seed=0)


def test_devices_resolve_or_say_what_is_wrong():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("AUTO") == ("cuda" if cuda_available() else "cpu")
    with pytest.raises(ConfigError, match="--device must be"):
        resolve_device("tpu")
    if not cuda_available():
        with pytest.raises(ConfigError, match="sees no CUDA GPU"):
            resolve_device("cuda:0")


def test_gpu_only_settings_are_refused_on_the_cpu():
    with pytest.raises(ConfigError, match="needs --device cuda"):
        Placement("cpu", mode="graph").check()
    with pytest.raises(ConfigError, match="--fp16"):
        Placement("cpu", fp16=True).check()
    with pytest.raises(ConfigError, match="--edge-mode"):
        Placement("cpu", mode="fast").check()


def test_fp16_follows_the_card_and_is_off_on_the_cpu(tmp_path, monkeypatch):
    p, why = choose_placement([MODEL], "cpu", "auto")
    assert p == Placement("cpu", False, "eager") and "CPU" in why
    card = json.loads(__import__("edgent.model.card", fromlist=["x"]).card_path(MODEL).read_text())
    top1 = [e["top1"] for e in card["exits"]]
    path = tmp_path / "card.json"
    monkeypatch.setattr("edgent.model.card.card_path", lambda model: path)
    path.write_text(json.dumps(card))
    assert fp16_allowed(MODEL)[0] is False  # not measured: not allowed
    card["precision_accuracy"] = {"float16": {"top1": [a - FP16_MAX_TOP1_LOSS / 2 for a in top1]}}
    path.write_text(json.dumps(card))
    assert fp16_allowed(MODEL)[0] is True
    card["precision_accuracy"] = {"float16": {"top1": [a - 2 * FP16_MAX_TOP1_LOSS for a in top1]}}
    path.write_text(json.dumps(card))
    ok, why = fp16_allowed(MODEL)
    assert not ok and "loses" in why


def test_on_the_cpu_the_runner_is_the_chain(chain):
    r = PartRunner(chain)
    assert r.trivial and r.chain is chain
    x = torch.randn(2, *chain.unit_input_shape(chain.num_exits, 3))
    with torch.inference_mode():
        assert torch.equal(r.run_edge(x, chain.num_exits, 3), chain.run_edge(x, chain.num_exits, 3))


def test_preprocess_names_round_trip():
    for name in PREPROCESSORS:
        assert preprocess_name(get_preprocess(name)) == name
    with pytest.raises(ConfigError):
        preprocess_name(lambda t: t)


def _job(chain, codec_name: str, point: int, batch: int = 1) -> EdgeJob:
    codec = get_codec(codec_name)
    shape = (batch, *chain.unit_input_shape(chain.num_exits, point))
    pre = get_preprocess("cifar10") if codec.kind == "pixels" else None
    return EdgeJob(MODEL, chain, chain.num_exits, point, codec, shape, pre, codec.payload_bytes(shape))


def test_a_batch_computes_what_each_job_computes_alone(chain):
    g = torch.Generator().manual_seed(0)
    for codec, point in (("float32", 4), ("uint8", 0)):
        jobs = [_job(chain, codec, point, batch=b) for b in (1, 2, 1)]
        if codec == "uint8":
            payloads = [get_codec(codec).encode(torch.randint(0, 256, j.shape, dtype=torch.uint8, generator=g))
                        for j in jobs]
        else:
            payloads = [get_codec(codec).encode(torch.randn(j.shape, generator=g)) for j in jobs]
        together = compute_batch(jobs, payloads)
        for job, payload, logits, timings in zip(jobs, payloads, *together):
            alone, _ = compute_job(job, payload)
            assert logits.shape == alone.shape and torch.allclose(logits, alone, atol=1e-5)
            assert timings["batch_size"] == 3 and timings["compute_ms"] > 0
    with pytest.raises(ValueError, match="one group"):
        compute_batch([_job(chain, "float32", 4), _job(chain, "float32", 5)], [b"", b""])


def test_the_local_engine_says_where_its_parts_run(chain):
    assert "parts on cpu, float32, eager" in LocalCompute({MODEL: chain}).describe()


@pytest.mark.slow
def test_compiled_parts_on_the_cpu_compute_what_eager_parts_compute(chain):
    r = PartRunner(chain, Placement("cpu", mode="compile"))
    assert not r.trivial
    x = torch.randn(1, *chain.unit_input_shape(chain.num_exits, 5))
    with torch.inference_mode():
        assert torch.allclose(r.run_edge(x, chain.num_exits, 5), chain.run_edge(x, chain.num_exits, 5), atol=1e-4)


@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("mode, fp16", [("eager", False), ("graph", False), ("graph", True)])
def test_gpu_parts_compute_what_cpu_parts_compute(chain, mode, fp16):
    r = PartRunner(chain, Placement("cuda", fp16=fp16, mode=mode))
    for batch in (1, 3, 1):
        x = torch.randn(batch, *chain.unit_input_shape(chain.num_exits, 2))
        with torch.inference_mode():
            out = r.run_edge(x, chain.num_exits, 2)
            ref = chain.run_edge(x, chain.num_exits, 2)
        assert out.device.type == "cpu" and out.dtype == torch.float32
        assert torch.allclose(out, ref, atol=5e-2 if fp16 else 1e-3, rtol=5e-2 if fp16 else 1e-3)


def test_unit_timing_waits_for_the_device_after_every_unit(chain):
    """On a GPU every unit is timed to the end of its kernels: the profiler calls ``sync`` before each forward
    and after each unit (here counted on the CPU)."""
    from edgent.profile.profiler import time_units_in_place

    calls = []
    x = torch.randn(1, *chain.input_shape)
    with torch.inference_mode():
        samples = time_units_in_place(chain, x, throttled=False, quick=True, sync=lambda: calls.append(1))
    forwards = len(samples[(chain.num_exits, 0)])
    units_per_round = sum(ep.num_units for ep in chain.exit_points)
    assert len(calls) == forwards * (units_per_round + len(chain.exit_points))


def test_profile_refuses_a_gpu_it_does_not_have(capsys):
    from edgent.cli.main import main

    if cuda_available():
        pytest.skip("this machine has a GPU")
    rc = main(["profile", "--model", MODEL, "--role", "edge", "--device", "cuda", "--out", "/tmp/x.json"])
    assert rc == 2 and "sees no CUDA GPU" in capsys.readouterr().err
