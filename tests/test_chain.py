"""The multi-exit chain: the partition invariant on every exit and point, and clear errors for bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgent.errors import InputError, ModelError
from edgent.model.alexnet import build_alexnet_cifar10
from edgent.model.chain import MultiExitChain
from edgent.model.checks import check_partition_invariant as assert_partition_invariant
from edgent.model.zoo import load_model


def test_alexnet_structure_matches_paper():
    m = build_alexnet_cifar10()
    assert m.trunk_names == ["conv1", "relu1", "pool1", "lrn1", "conv2", "relu2", "pool2", "lrn2", "conv3",
                             "relu3", "conv4", "relu4", "conv5", "relu5", "pool3", "fc1", "relu6", "dropout1",
                             "fc2", "relu7", "dropout2", "fc3"]
    assert [ep.num_units for ep in m.exit_points] == [12, 16, 19, 20, 22]
    assert [ep.after_trunk_units for ep in m.exit_points] == [4, 8, 10, 12, 22]
    assert list(m.partition_points(1)) == list(range(13))


def test_partition_invariant_alexnet():
    model = load_model("alexnet-cifar10", pretrained=False)
    assert assert_partition_invariant(model, batch=3) == sum(n + 1 for n in (12, 16, 19, 20, 22))


@pytest.mark.parametrize("name", ["resnet18", pytest.param("mobilenet_v2", marks=pytest.mark.slow)])
def test_partition_invariant_converted_torchvision(name):
    model = load_model(name)
    assert model.num_exits == 4
    assert assert_partition_invariant(model, batch=1, atol=1e-4) == sum(e.num_units + 1 for e in model.exit_points)


def test_forward_all_equals_each_exit():
    m = build_alexnet_cifar10().eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        outs = m.forward_all(x)
        for ep, out in zip(m.exit_points, outs):
            torch.testing.assert_close(out, m(x, exit=ep.exit))


@pytest.mark.parametrize("exit_", [0, 6, -1, "1", 1.0, True])
def test_exit_out_of_range(exit_):
    m = build_alexnet_cifar10()
    with pytest.raises(ModelError, match="exit .* out of range"):
        m.partition_points(exit_)


@pytest.mark.parametrize("point", [-1, 13, 100, 2.5])
def test_partition_point_out_of_range(point):
    m = build_alexnet_cifar10()
    with pytest.raises(ModelError, match="partition point .* out of range.*0..12"):
        m.run_device(torch.zeros(1, 3, 32, 32), 1, point)


def test_wrong_input_shape_and_dtype():
    m = build_alexnet_cifar10()
    with pytest.raises(InputError, match=r"shape \(batch, 3, 32, 32\)"):
        m(torch.zeros(1, 3, 64, 64))
    with pytest.raises(InputError, match="shape"):
        m(torch.zeros(3, 32, 32))
    with pytest.raises(InputError, match="floating-point"):
        m(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(InputError, match="torch.Tensor"):
        m([[1.0]])
    # the edge rejects a tensor that does not fit the partition point it names
    with pytest.raises(InputError, match="partition point 4"):
        m.run_edge(torch.zeros(1, 3, 32, 32), 5, 4)


def test_chain_rejects_bad_exits():
    trunk = [("a", nn.ReLU()), ("b", nn.ReLU())]
    with pytest.raises(ModelError, match="no branch units"):
        MultiExitChain("t", trunk, [(1, [])], (3,), 3)
    with pytest.raises(ModelError, match="outside"):
        MultiExitChain("t", trunk, [(5, [("c", nn.ReLU())])], (3,), 3)
    with pytest.raises(ModelError, match="same trunk unit"):
        MultiExitChain("t", trunk, [(1, [("c", nn.ReLU())]), (1, [("d", nn.ReLU())])], (3,), 3)
    with pytest.raises(ModelError, match="no units"):
        MultiExitChain("t", [], [], (3,), 3)
