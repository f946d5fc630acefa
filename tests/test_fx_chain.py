"""Automatic conversion of traced models into chains, cut where exactly one tensor is live."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgent.errors import ModelError
from edgent.model.fx_chain import chain_from_model, chain_units
from edgent.model.zoo import load_model

from edgent.model.checks import check_partition_invariant as assert_partition_invariant


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block1 = Residual(8)
        self.block2 = Residual(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.block2(self.block1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def test_residual_blocks_are_never_cut_inside():
    names = [n for n, _ in chain_units(TinyResNet(), (3, 16, 16))]
    # inside a block two tensors are live (x and the conv branch), so each block is one unit, ending at the
    # addition; the relu after it is a unit of its own (one tensor is live before and after it)
    assert names == ["stem", "block1", "block1.relu_1", "block2", "block2.relu_3", "pool", "flatten", "fc"]


def test_tiny_resnet_with_exits_keeps_invariant():
    chain = chain_from_model(TinyResNet(), (3, 16, 16), "tiny", 5,
                             exits=[{"after": "block1", "head": "conv"}, {"after": 1, "head": "linear"}])
    assert [ep.after_trunk_units for ep in chain.exit_points] == [1, 3, 8]
    assert [ep.branch_units for ep in chain.exit_points] == [2, 4, 0]
    assert_partition_invariant(chain.eval())


def test_units_share_parameters_with_the_model():
    model = TinyResNet()
    units = dict(chain_units(model, (3, 16, 16)))
    assert units["stem"].stem.weight is model.stem.weight


@pytest.mark.slow
def test_converted_vgg11_invariant():
    assert_partition_invariant(load_model("vgg11"), batch=1, atol=1e-4)


def test_resnet18_units_are_blocks():
    m = load_model("resnet18")
    assert m.trunk_names[:8] == ["conv1", "bn1", "relu", "maxpool", "layer1.0", "layer1.0.relu", "layer1.1",
                                 "layer1.1.relu"]
    assert m.exit_points[0].after_trunk_units == 8  # after layer1


def test_untraceable_model_is_a_clear_error():
    class Branchy(nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow
                return x
            return -x

    with pytest.raises(ModelError, match="torch.fx"):
        chain_units(Branchy(), (3,))


def test_two_inputs_is_a_clear_error():
    class Two(nn.Module):
        def forward(self, x, y):
            return x + y

    with pytest.raises(ModelError, match="exactly one"):
        chain_units(Two(), (3,))


def test_bad_exit_specs():
    with pytest.raises(ModelError, match="no unit"):
        chain_from_model(TinyResNet(), (3, 16, 16), "t", 5, exits=[{"after": "nope"}])
    with pytest.raises(ModelError, match="between unit 1 and"):
        chain_from_model(TinyResNet(), (3, 16, 16), "t", 5, exits=[{"after": 0}])
    with pytest.raises(ModelError, match="unknown exit head"):
        chain_from_model(TinyResNet(), (3, 16, 16), "t", 5, exits=[{"after": "stem", "head": "mlp"}])
    with pytest.raises(ModelError, match="feature map"):
        chain_from_model(TinyResNet(), (3, 16, 16), "t", 5, exits=[{"after": "pool"}, {"after": "flatten"}])
