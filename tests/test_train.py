"""Joint multi-exit training end to end on a tiny synthetic data set: weights, card, resume, eval."""

from __future__ import annotations

import json

import pytest
import torch

from edgent.cli.main import main
from edgent.errors import ConfigError, ModelError
from edgent.model.card import read_card
from edgent.model.weights import load_weights, save_weights
from edgent.model.alexnet import build_alexnet_cifar10
from edgent.train.trainer import TrainConfig, train


def test_train_writes_weights_and_card_and_resumes(tiny_cifar, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(epochs=1, batch_size=16, data=str(tiny_cifar), out_dir=str(out), command="edgent train test")
    card = train(cfg)
    assert [e["units"] for e in card["exits"]] == [12, 16, 19, 20, 22]
    assert all(0.0 <= e["top1"] <= 1.0 for e in card["exits"])
    assert card["reproduce"] == "edgent train test"
    assert "JPEG" in card["dataset"]["note"]
    assert card["trunk"][0]["name"] == "conv1" and card["trunk"][0]["output_bytes"] == 64 * 32 * 32 * 4
    assert card["training"]["exit_loss_weights"] == [1.0] * 5
    assert read_card(out / "alexnet-cifar10.card.json").exit_top1 == tuple(e["top1"] for e in card["exits"])
    model = load_weights(build_alexnet_cifar10(), out / "alexnet-cifar10.safetensors")
    # the folded model evaluates to the accuracy recorded in the card
    rc = main(["eval", "--model", "alexnet-cifar10", "--weights", str(out / "alexnet-cifar10.safetensors"),
               "--data", str(tiny_cifar), "--json"])
    assert rc == 0
    cfg2 = TrainConfig(epochs=3, batch_size=16, data=str(tiny_cifar), out_dir=str(out), command="x")
    with pytest.raises(ConfigError, match="another configuration"):
        train(cfg2, resume=True)
    assert model is not None


@pytest.mark.slow
def test_resume_continues_an_interrupted_run_exactly(tiny_cifar, tmp_path):
    def cfg(out):
        return TrainConfig(epochs=2, batch_size=8, data=str(tiny_cifar), out_dir=str(out), command="x")

    full = train(cfg(tmp_path / "a"))
    assert train(cfg(tmp_path / "b"), stop_after_epoch=1) is None
    resumed = train(cfg(tmp_path / "b"), resume=True)
    assert [h["train_loss"] for h in resumed["training"]["history"]] == pytest.approx(
        [h["train_loss"] for h in full["training"]["history"]], rel=1e-4)
    assert [e["top1"] for e in resumed["exits"]] == [e["top1"] for e in full["exits"]]


def test_train_rejects_bad_config():
    with pytest.raises(ConfigError, match="alexnet-cifar10"):
        train(TrainConfig(model="resnet18"))
    with pytest.raises(ConfigError, match="at least 1"):
        train(TrainConfig(epochs=0))


def test_weights_errors(tmp_path):
    m = build_alexnet_cifar10()
    with pytest.raises(ModelError, match="does not exist"):
        load_weights(m, tmp_path / "none.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(ModelError, match="corrupt"):
        load_weights(m, bad)
    other = torch.nn.Linear(3, 4)
    path = tmp_path / "other.safetensors"
    save_weights(other, path)
    with pytest.raises(ModelError, match="does not match"):
        load_weights(m, path)
    lin5 = torch.nn.Linear(3, 5)
    with pytest.raises(ModelError, match="shape"):
        load_weights(lin5, path)


def test_cli_errors_are_clear(capsys, tmp_path, monkeypatch):
    assert main(["info", "--model", "nosuchnet"]) == 2
    err = capsys.readouterr().err
    assert "'nosuchnet'" in err and "alexnet-cifar10" in err  # the bad name and the known ones
    monkeypatch.setenv("EDGENT_DATA", str(tmp_path / "missing"))
    assert main(["eval", "--model", "alexnet-cifar10", "--weights", str(tmp_path / "w.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_info_json(capsys):
    assert main(["info", "--model", "alexnet-cifar10", "--json"]) == 0
    desc = json.loads(capsys.readouterr().out)
    assert [e["units"] for e in desc["exits"]] == [12, 16, 19, 20, 22]
    assert desc["exits"][0]["partition_points"] == list(range(13))
    assert len(desc["trunk"]) == 22
    conv1 = desc["trunk"][0]
    assert conv1["kind"] == "conv" and conv1["output_shape"] == [64, 32, 32]
    assert conv1["flops"] == 2 * 64 * 32 * 32 * 3 * 25
    assert conv1["params"] == 64 * 3 * 25 + 64


@pytest.mark.slow
def test_cut_and_anneal_shares_the_first_epochs_and_ends_at_zero_lr(tiny_cifar, tmp_path):
    def cfg(out, **kw):
        return TrainConfig(epochs=4, batch_size=8, data=str(tiny_cifar), out_dir=str(out), command="x", **kw)

    assert train(cfg(tmp_path / "a"), stop_after_epoch=1) is None
    # a run cut after epoch 1 resumes from the full schedule's checkpoint, then anneals over one epoch
    card = train(cfg(tmp_path / "a", cut_at_epoch=1, anneal_epochs=1), resume=True)
    assert [h["epoch"] for h in card["training"]["history"]] == [1, 2]
    state = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    assert all(g["lr"] == pytest.approx(0.0, abs=1e-12) for g in state["optimizer"]["param_groups"])
    with pytest.raises(ConfigError, match="cut-at-epoch"):
        train(cfg(tmp_path / "b", cut_at_epoch=9, anneal_epochs=1))
