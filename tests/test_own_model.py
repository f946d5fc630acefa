"""Bring your own model: a torchvision model that is not in the zoo, from architecture reference to co-inference
on loopback, all by the command line; and every wrong input on that path gets one line naming the option and the
fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from edgent.cli.main import main

REPO = Path(__file__).resolve().parents[1]
ARCH = "torchvision:squeezenet1_1"  # not in the zoo
CLASSES = ("circle", "square", "stripes")


def write_shapes_folder(root: Path, per_class: int, size: int = 40, seed: int = 0) -> Path:
    """An ImageFolder (no train/test split) of three visibly different kinds of random images."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for k, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
            if name == "circle":
                mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2
            elif name == "square":
                mask = (abs(yy - size / 2) < size / 4) & (abs(xx - size / 2) < size / 4)
            else:
                mask = (xx // 4) % 2 == 0
            img[mask] = rng.integers(180, 255)
            Image.fromarray(img).save(root / name / f"{i:03d}.png")
    return root


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got: {err}"
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"


def _start_server(args: list[str], tmp_path: Path) -> tuple[subprocess.Popen, int]:
    ready = tmp_path / "ready"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "edgent.cli.main", "serve", *args, "--port", "0",
                             "--ready-file", str(ready)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    for _ in range(1200):
        if ready.is_file() and ready.read_text().strip():
            return proc, int(ready.read_text().strip())
        if proc.poll() is not None:
            raise AssertionError(f"edgent serve exited: {proc.stderr.read()}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("edgent serve did not become ready")


@pytest.mark.slow
def test_own_torchvision_model_from_convert_to_coinference(tmp_path, capsys):
    data = write_shapes_folder(tmp_path / "shapes", per_class=70)
    model = tmp_path / "my-model"
    traces = tmp_path / "traces"
    traces.mkdir()
    (traces / "t1").write_text("".join(f"{t:.1f}\t{r}\n" for t, r in enumerate([1.5, 0.8, 0.3, 2.0, 1.0, 0.5] * 3)))

    rc, out, err = run_cli(["convert", "--arch", ARCH, "--num-classes", "3", "--input-size", "3,48,48",
                            "--out", str(model), "--json"], capsys)
    assert rc == 0, err
    desc = json.loads(out)["description"]
    assert len(desc["exits"]) == 4  # three automatic exits and the main one
    spec = json.loads((model / "model.json").read_text())
    assert spec["arch"] == ARCH and spec["num_classes"] == 3 and spec["input_shape"] == [3, 48, 48]

    rc, out, err = run_cli(["train", "--model", str(model), "--data", str(data), "--exits-only", "--epochs", "1",
                            "--batch-size", "32", "--threads", "1"], capsys)
    assert rc == 0, err
    trained = json.loads(out.strip().splitlines()[-1])
    card = json.loads((model / "card.json").read_text())
    assert card["classes"] == list(CLASSES) and card["training"]["mode"] == "exits-only"
    assert [e["top1"] for e in card["exits"]] == [e["top1"] for e in trained["exits"]]

    rc, out, err = run_cli(["eval", "--model", str(model), "--data", str(data), "--json"], capsys)
    assert rc == 0, err
    evaluated = json.loads(out)
    assert [e["top1"] for e in evaluated["exits"]] == pytest.approx([e["top1"] for e in card["exits"]])

    for role in ("device", "edge"):
        rc, out, err = run_cli(["profile", "--model", str(model), "--role", role, "--quick"], capsys)
        assert rc == 0, err
        assert (model / "latency" / f"{role}-torch.json").is_file()

    rc, out, err = run_cli(["plan", "--model", str(model), "--bandwidth", "1Mbit", "--deadline", "2s", "--json"],
                           capsys)
    assert rc == 0, err
    plan = json.loads(out)
    assert 1 <= plan["exit"] <= 4 and plan["accuracy"] == pytest.approx(card["exits"][plan["exit"] - 1]["top1"])

    rc, out, err = run_cli(["map", "build", "--traces", str(traces), "--model", str(model), "--deadline-ms", "2000",
                            "--warmup-s", "0", "--out", str(tmp_path / "map.json")], capsys)
    assert rc == 0, err
    assert json.loads((tmp_path / "map.json").read_text())["model"] == spec["name"]

    server, port = _start_server(["--model", str(model), "--threads", "0"], tmp_path)
    try:
        for runtime in ("torch", "onnx"):
            rc, out, err = run_cli(["infer", "--model", str(model), "--port", str(port), "--count", "2",
                                    "--exit", "2", "--partition", "3", "--device-runtime", runtime, "--json"], capsys)
            assert rc == 0, err
            records = [json.loads(line) for line in out.strip().splitlines()]
            assert len(records) == 2, records
            for r in records:
                assert r["outcome"]["where"] == "edge" and r["outcome"]["exit_used"] == 2, r
                assert r["outcome"]["partition_used"] == 3 and 0 <= r["outcome"]["classes"][0] < 3
    finally:
        server.terminate()
        server.wait(timeout=30)


# ---------------------------------------------------------------------------------------------- wrong inputs
@pytest.fixture(scope="module")
def alexnet_table(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("table") / "alexnet.table.json"
    assert main(["plan", "--model", "alexnet-cifar10", "--bandwidth", "1Mbit", "--deadline", "300ms",
                 "--save-table", str(path), "--json"]) == 0
    return path


PLAN = ["plan", "--bandwidth", "1Mbit", "--deadline", "300ms"]


def test_plan_table_rejects_accuracies_of_the_wrong_length(alexnet_table, capsys):
    rc, _, err = run_cli([*PLAN, "--table", str(alexnet_table), "--accuracies", "0.5,0.6"], capsys)
    assert_one_line_error(rc, err, "--accuracies", "5 exits")


def test_plan_table_applies_accuracies_of_the_right_length(alexnet_table, capsys):
    rc, out, err = run_cli([*PLAN, "--table", str(alexnet_table), "--accuracies", "0.1,0.2,0.3,0.4,0.9",
                            "--json"], capsys)
    assert rc == 0, err
    assert json.loads(out)["accuracy"] in (0.1, 0.2, 0.3, 0.4, 0.9)


def test_plan_table_rejects_a_card_of_another_model(alexnet_table, tmp_path, capsys):
    card = tmp_path / "other.card.json"
    card.write_text(json.dumps({"model": "other-model", "exits": [{"top1": 0.5}] * 5}))
    rc, _, err = run_cli([*PLAN, "--table", str(alexnet_table), "--card", str(card)], capsys)
    assert_one_line_error(rc, err, "--card", "other-model")


def test_plan_table_rejects_another_codec(alexnet_table, capsys):
    rc, _, err = run_cli([*PLAN, "--table", str(alexnet_table), "--codec", "float16"], capsys)
    assert_one_line_error(rc, err, "--codec float16", "--save-table")


@pytest.mark.parametrize("option", ["--device-profile", "--edge-profile", "--device-runtime"])
def test_plan_table_rejects_latency_model_options(alexnet_table, tmp_path, option, capsys):
    value = "onnx" if option == "--device-runtime" else str(tmp_path / "missing.json")
    rc, _, err = run_cli([*PLAN, "--table", str(alexnet_table), option, value], capsys)
    assert_one_line_error(rc, err, option, "drop")


def test_plan_rejects_a_device_profile_that_does_not_exist(tmp_path, capsys):
    rc, _, err = run_cli([*PLAN, "--model", "alexnet-cifar10", "--device-profile", str(tmp_path / "nope.json")],
                         capsys)
    assert_one_line_error(rc, err, "--device-profile", "does not exist")


def _quick_edge_profile(tmp_path: Path, capsys) -> Path:
    path = tmp_path / "alexnet-edge.json"
    rc, _, err = run_cli(["profile", "--model", "alexnet-cifar10", "--role", "edge", "--quick", "--out", str(path)],
                         capsys)
    assert rc == 0, err
    return path


def test_plan_takes_a_measured_profile_and_rejects_one_of_another_role_or_model(tmp_path, capsys):
    profile = _quick_edge_profile(tmp_path, capsys)
    rc, out, err = run_cli([*PLAN, "--model", "alexnet-cifar10", "--edge-profile", str(profile), "--json"], capsys)
    assert rc == 0, err
    doc = json.loads(profile.read_text())
    main_exit = json.loads(out)
    assert main_exit["exit"] in range(1, 6)
    rc, _, err = run_cli([*PLAN, "--model", "alexnet-cifar10", "--device-profile", str(profile)], capsys)
    assert_one_line_error(rc, err, "--device-profile", "measured as the edge")
    rc, _, err = run_cli([*PLAN, "--model", "resnet18", "--accuracies", "0.1,0.2,0.3,0.4", "--edge-profile",
                          str(profile)], capsys)
    assert_one_line_error(rc, err, "--edge-profile", doc["model"], "edgent profile --model resnet18")


def test_map_build_never_takes_alexnets_card_for_another_models_table(alexnet_table, tmp_path, capsys):
    other = json.loads(alexnet_table.read_text())
    other["model"] = "someone-elses-model"
    table = tmp_path / "other.table.json"
    table.write_text(json.dumps(other))
    traces = tmp_path / "traces"
    traces.mkdir()
    (traces / "t").write_text("0\t1.0\n1\t0.5\n2\t2.0\n3\t1.0\n")
    args = ["map", "build", "--traces", str(traces), "--deadline-ms", "300", "--warmup-s", "0",
            "--table-source", str(table), "--out", str(tmp_path / "m.json")]
    rc, _, err = run_cli(args, capsys)
    assert_one_line_error(rc, err, "--model", "--accuracies", "someone-elses-model")
    rc, _, err = run_cli([*args, "--model", "alexnet-cifar10"], capsys)
    assert_one_line_error(rc, err, "--model", "someone-elses-model")
    rc, _, err = run_cli([*args, "--accuracies", "0.5,0.6,0.7,0.8,0.85"], capsys)
    assert rc == 0, err
    assert json.loads((tmp_path / "m.json").read_text())["model"] == "someone-elses-model"


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("own") / "sq"
    assert main(["convert", "--arch", ARCH, "--num-classes", "3", "--input-size", "3,48,48", "--out", str(out),
                 "--json"]) == 0
    return out


def test_eval_rejects_data_with_other_classes(small_folder, tiny_cifar, capsys):
    rc, _, err = run_cli(["eval", "--model", str(small_folder), "--data", str(tiny_cifar)], capsys)
    assert_one_line_error(rc, err, "--data", "10 classes", "--num-classes 10")


def test_train_rejects_data_with_other_classes(small_folder, tiny_cifar, tmp_path, capsys):
    rc, _, err = run_cli(["train", "--model", str(small_folder), "--data", str(tiny_cifar), "--exits-only",
                          "--epochs", "1", "--out", str(tmp_path / "o")], capsys)
    assert_one_line_error(rc, err, "--data", "--num-classes 10")


def test_convert_names_what_to_change_for_an_untraceable_model(tmp_path, capsys):
    arch = tmp_path / "branchy.py"
    arch.write_text("import torch\n\n"
                    "class Net(torch.nn.Module):\n"
                    "    def __init__(self, num_classes):\n"
                    "        super().__init__()\n"
                    "        self.fc = torch.nn.Linear(12, num_classes)\n"
                    "    def forward(self, x):\n"
                    "        if x.sum() > 0:\n"
                    "            x = x * 2\n"
                    "        return self.fc(x.flatten(1))\n\n"
                    "def build(num_classes):\n"
                    "    return Net(num_classes)\n")
    rc, _, err = run_cli(["convert", "--arch", f"{arch}:build", "--num-classes", "2", "--input-size", "3,2,2",
                          "--out", str(tmp_path / "m")], capsys)
    assert_one_line_error(rc, err, "--arch", "cannot be traced", "control flow")


def test_convert_rejects_an_unknown_torchvision_model(tmp_path, capsys):
    rc, _, err = run_cli(["convert", "--arch", "torchvision:no_such_net", "--num-classes", "2", "--out",
                          str(tmp_path / "m")], capsys)
    assert_one_line_error(rc, err, "no_such_net")


def test_a_model_folder_round_trips_and_its_chain_is_in_eval_mode(small_folder):
    from edgent.model.fx_chain import chain_from_model
    from edgent.model.zoo import load_model, load_model_spec
    import torchvision

    spec = load_model_spec(str(small_folder))
    chain = load_model(str(small_folder))
    assert not chain.training and chain.name == spec.name and chain.num_exits == len(spec.exits) + 1
    assert load_model_spec(str(small_folder / "model.json")).name == spec.name
    # a model in training mode converts into a chain in eval mode: batch norm runs on a batch of one
    net = torchvision.models.mobilenet_v3_small(num_classes=3).train()
    c = chain_from_model(net, (3, 32, 32), "m", 3, exits=[{"after": "features.3"}])
    assert not c.training and not any(m.training for m in c.modules())
    with torch.no_grad():
        assert c(torch.randn(1, 3, 32, 32), exit=1).shape == (1, 3)


def test_onnx_device_parts_equal_the_chain(small_folder, tmp_path, monkeypatch):
    from edgent.model.onnx_parts import OnnxDeviceChain
    from edgent.model.zoo import load_model

    monkeypatch.setenv("EDGENT_CACHE", str(tmp_path / "cache"))
    chain = load_model(str(small_folder))
    onnx = OnnxDeviceChain(chain, threads=1)
    x = torch.randn(2, *chain.input_shape)
    for ep in chain.exit_points:
        for p in (1, ep.num_units // 2, ep.num_units):
            torch.testing.assert_close(onnx.run_device(x, ep.exit, p), chain.run_device(x, ep.exit, p),
                                       atol=1e-4, rtol=1e-4)
    # one export per (model, exit, part, weights), reused
    files = sorted((tmp_path / "cache" / "onnx").glob("*.onnx"))
    again = OnnxDeviceChain(load_model(str(small_folder)), threads=1)
    again.run_device(x, 1, 1)
    assert sorted((tmp_path / "cache" / "onnx").glob("*.onnx")) == files


def test_automatic_exits_fall_at_equal_shares_of_the_flops():
    from torch import nn

    from edgent.model.convert import auto_exits
    from edgent.model.fx_chain import chain_units

    # eight identical convolutions (equal FLOPs) and a head: the shares 1/4, 1/2, 3/4 end after units 2, 4, 6
    body = [nn.Conv2d(4, 4, 3, padding=1) for _ in range(8)]
    net = nn.Sequential(*body, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    units = chain_units(net, (4, 8, 8))
    assert [e["after"] for e in auto_exits(units, (4, 8, 8), 3)] == [2, 4, 6]
    assert [e["after"] for e in auto_exits(units, (4, 8, 8), 1)] == [4]
    # never after the flattened vector (a linear head needs a feature map), never the same unit twice
    many = auto_exits(units, (4, 8, 8), 20)
    assert len({e["after"] for e in many}) == len(many) and max(e["after"] for e in many) <= 9


def test_plan_refuses_a_profile_of_another_runtime(tmp_path, capsys):
    doc = json.loads(_quick_edge_profile(tmp_path, capsys).read_text())
    doc["role"] = "device"
    path = tmp_path / "device-torch.json"
    path.write_text(json.dumps(doc))
    rc, _, err = run_cli([*PLAN, "--model", "alexnet-cifar10", "--device-profile", str(path),
                          "--device-runtime", "onnx"], capsys)
    assert_one_line_error(rc, err, "--device-profile", "under torch", "--runtime onnx")


def test_image_folder_splits_resizes_and_keeps_the_training_class_order(tmp_path):
    from edgent.data.imagefolder import load_labelled

    root = write_shapes_folder(tmp_path / "flat", per_class=10, size=20)
    train = load_labelled(root, "train", (3, 24, 16), test_share=0.2, seed=1)
    test = load_labelled(root, "test", (3, 24, 16), test_share=0.2, seed=1)
    assert train.classes == test.classes == CLASSES
    assert train.images.shape == (24, 3, 24, 16) and test.images.shape == (6, 3, 24, 16)
    assert train.images.dtype == np.uint8 and np.bincount(test.labels).tolist() == [2, 2, 2]
    grey = load_labelled(root, "test", (1, 8, 8), test_share=0.2, seed=1)
    assert grey.images.shape == (6, 1, 8, 8)
    # a train/ and test/ layout: the test split takes the training split's classes and order
    for split, names in (("train", ("a", "b", "c")), ("test", ("c", "a"))):
        for n in names:
            write_shapes_folder(tmp_path / "split" / split / n, per_class=1, size=8)
    t = load_labelled(tmp_path / "split", "test", (3, 8, 8))
    assert t.classes == ("a", "b", "c") and sorted(set(t.labels.tolist())) == [0, 2]


def test_convert_names_the_exit_that_matches_no_unit(tmp_path, capsys):
    rc, _, err = run_cli(["convert", "--arch", ARCH, "--num-classes", "3", "--input-size", "3,48,48",
                          "--exits", "features.3,no.such.module", "--out", str(tmp_path / "m")], capsys)
    assert_one_line_error(rc, err, "--exits", "no.such.module", "units are")
