"""The device profiles itself once (edgent.profile.selfprofile): on the wall clock unless emulation is asked for,
cached by model and machine, and used as the device's latency model."""

from __future__ import annotations

import dataclasses
import json

import pytest

from edgent.profile.machine import machine_fingerprint
from edgent.profile.selfprofile import cached_profile_path, device_profile

MODEL = "alexnet-cifar10"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGENT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "device-profiles"


def test_the_profile_is_measured_once_and_then_found_by_model_and_machine(chain, cache, monkeypatch):
    import edgent.profile.profiler as profiler

    calls = []
    real = profiler.profile_model

    def counted(*a, **k):
        calls.append(a[2])  # the emulation it was timed with
        return real(*a, **k)

    monkeypatch.setattr(profiler, "profile_model", counted)
    said: list[str] = []
    first = device_profile(chain, quick=True, progress=said.append)
    assert not first.cached and first.path.is_file() and first.path.parent == cache
    assert said and "profiling this device once" in said[0]
    assert len(calls) == 1 and not calls[0].emulated and calls[0].clock == "wall" and calls[0].slowdown == 1.0
    again = device_profile(chain, quick=True)
    assert again.cached and again.path == first.path and len(calls) == 1
    # another thread count is another machine set-up: profiled anew, kept apart
    other = device_profile(chain, quick=True, threads=3 - min(chain_threads(), 2))
    assert not other.cached and other.path != first.path and len(calls) == 2
    assert device_profile(chain, quick=True, refresh=True).cached is False and len(calls) == 3


def chain_threads() -> int:
    import torch

    return torch.get_num_threads()


def test_the_cache_key_is_the_model_and_the_machine(chain):
    from edgent.model.zoo import load_for_inference

    fp = machine_fingerprint()
    here = cached_profile_path(chain, fp)
    other_model = load_for_inference("mobilenet_v3_small-cifar10", random_weights=True, seed=0)
    assert cached_profile_path(other_model, fp) != here
    for change in ({"cpu_model": "another CPU"}, {"cores": fp.cores + 1}, {"torch_threads": fp.torch_threads + 1},
                   {"runtime": "onnx"}, {"torch_version": "0.0"}):
        assert cached_profile_path(chain, dataclasses.replace(fp, **change)) != here, change
    assert cached_profile_path(chain, fp, quick=True) != here
    assert cached_profile_path(chain, machine_fingerprint()) == here  # stable


def test_the_device_is_timed_on_the_wall_clock_unless_emulation_is_asked_for(cache, tmp_path, capsys):
    from edgent.cli.main import main

    assert main(["profile", "--model", MODEL, "--role", "device", "--quick"]) == 0
    err = capsys.readouterr().err
    assert "device timing: wall clock" in err
    (path,) = cache.glob("*.json")
    doc = json.loads(path.read_text())
    assert doc["timed_on"] == "wall clock" and doc["emulation"]["slowdown"] == 1.0
    assert doc["emulation"]["clock"] == "wall" and doc["emulation"]["cpu_quota"] is None
    assert doc["machine"]["key"] in path.name and doc["preprocess"]["clock"] == "wall"

    emulated = tmp_path / "emulated.json"
    assert main(["profile", "--model", MODEL, "--role", "device", "--quick", "--emulate", "--out", str(emulated)]) == 0
    assert "device timing: EMULATED" in capsys.readouterr().err
    doc = json.loads(emulated.read_text())
    assert doc["timed_on"].startswith("EMULATED") and doc["emulation"]["slowdown"] == 100.0
    assert doc["emulation"]["clock"] == "steady-cpu" and doc["preprocess"] is None
    slowed = tmp_path / "slowed.json"
    assert main(["profile", "--model", MODEL, "--role", "device", "--quick", "--slowdown", "3", "--out",
                 str(slowed)]) == 0
    doc = json.loads(slowed.read_text())
    assert doc["timed_on"].startswith("EMULATED") and "x3 slowdown" in doc["timed_on"]
    assert [p.name for p in cache.glob("*.json")] == [path.name]  # only the machine as it is is cached


def test_the_tables_price_the_device_by_its_own_profile(chain, cache):
    from edgent.plan.sources import table_for_model
    from edgent.profile.profiler import load_profile

    prof = device_profile(chain, quick=True)
    measured = load_profile(prof.path)
    table = table_for_model(MODEL, device_profile=prof.path)
    for e in table.exits:
        assert list(e.device_unit_ms) == pytest.approx([measured.unit_ms[(e.exit, i)] for i in range(e.num_units)])
    doc = json.loads(prof.path.read_text())
    assert table.device_preprocess_ms == pytest.approx(doc["preprocess"]["ms"])
