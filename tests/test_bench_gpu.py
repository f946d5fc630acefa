"""``edgent bench gpu`` runs as one command; without a GPU it runs the CPU path and says it was not measured on a
GPU (the GPU figures come from a machine that has one)."""

from __future__ import annotations

import json

import pytest

from edgent.cli.main import main
from edgent.model.placement import cuda_available


@pytest.mark.skipif(cuda_available(), reason="this machine has a GPU: the CPU path is not what runs")
def test_bench_gpu_quick_on_the_cpu_says_not_measured_on_a_gpu(tmp_path, capsys):
    assert main(["bench", "gpu", "--quick", "--out-dir", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "gpu.json").read_text())
    assert doc["measured_on_gpu"] is False and doc["gpu"] is None
    assert doc["status"].startswith("not measured on a GPU") and doc["verdict"] == "not measured on a GPU"
    assert set(doc["models"]) == {"alexnet-cifar10", "resnet50-224"}
    for m in doc["models"].values():
        assert m["rows"] and all(r["variant"] == "eager_fp32" and r["median_ms"] > 0 for r in m["rows"])
    assert {r["batch"] for r in doc["models"]["alexnet-cifar10"]["rows"]} == {1, 8}
    assert doc["machine"]["cpu"] and doc["command"].startswith("edgent bench gpu --quick")
    assert "not measured on a GPU" in capsys.readouterr().out
