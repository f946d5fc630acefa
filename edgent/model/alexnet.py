"""The paper's branchy AlexNet for 32x32 CIFAR-10 inputs: a 22-unit trunk and five exits.

Trunk (paper): conv1 relu1 pool1 lrn1 | conv2 relu2 pool2 lrn2 | conv3 relu3 | conv4 relu4 | conv5 relu5 pool3
fc1 relu6 dropout1 fc2 relu7 dropout2 fc3. Exits 1-3 branch off after the conv1, conv2 and conv3 blocks (branch:
conv, conv, fc), exit 4 after conv4 (conv, fc, fc), exit 5 is the trunk. The sub-models to the five exits have
12, 16, 19, 20 and 22 units, as in the paper.

Our choices, where the paper is silent (recorded in the model card too):

- Widths scaled to CIFAR-10's 32x32 inputs and a 2-core CPU training budget: conv1 64 (5x5), conv2 96 (5x5),
  conv3 160, conv4 160, conv5 128 (3x3); fc1 2048->512, fc2 512->256, fc3 256->10.
- Pools are 3x3, stride 2, padding 1 (32 -> 16 -> 8 -> 4), as AlexNet's overlapping pooling.
- LRN as in AlexNet: size 5, alpha 1e-4, beta 0.75, k 2.
- Training puts a batch norm after every convolution (``ConvBN``); for inference it is folded into the
  convolution's weights and bias (:func:`fold_batch_norms`), so the deployed units are plain convolutions.
- Branch units (each unit one layer, ReLUs and pools counted as units as in the trunk):
  exit 1 after lrn1: conv(64->48) relu pool conv(48->96) relu pool dropout fc  (8 units, 12 in all)
  exit 2 after lrn2: conv(96->96) relu pool conv(96->96) relu pool dropout fc  (8, 16)
  exit 3 after relu3: conv(160->96) relu lrn pool conv(96->96) relu pool dropout fc  (9, 19)
  exit 4 after relu4: conv(160->96) relu pool dropout fc(1536->256) relu dropout fc  (8, 20)
"""

from __future__ import annotations

import torch
from torch import nn

from edgent.model.chain import MultiExitChain, NamedUnit

INPUT_SHAPE = (3, 32, 32)
NUM_CLASSES = 10


class ConvBN(nn.Module):
    """A convolution with a batch norm used while training; :meth:`fold` turns it into the plain convolution."""

    def __init__(self, c_in: int, c_out: int, kernel: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))

    def fold(self) -> nn.Conv2d:
        """The convolution with the batch norm's running statistics folded into its weights and bias."""
        return torch.nn.utils.fusion.fuse_conv_bn_eval(self._with_bias().eval(), self.bn.eval())

    def _with_bias(self) -> nn.Conv2d:
        c = self.conv
        out = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, bias=True)
        with torch.no_grad():
            out.weight.copy_(c.weight)
            out.bias.zero_()
        return out


class FlattenLinear(nn.Linear):
    """A fully connected layer that flattens its input first (the paper's fc units take the pooled maps)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.flatten(x, 1))


def _conv(c_in: int, c_out: int, kernel: int, train_bn: bool) -> nn.Module:
    if train_bn:
        return ConvBN(c_in, c_out, kernel, kernel // 2)
    return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)


def _pool() -> nn.Module:
    return nn.MaxPool2d(kernel_size=3, stride=2, padding=1)


def _lrn() -> nn.Module:
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)


def build_alexnet_cifar10(train_bn: bool = False) -> MultiExitChain:
    """Build the branchy AlexNet (random weights).

    Args:
        train_bn: build the training form, with a batch norm after each convolution. The inference form
            (the default) has plain convolutions, which is what the committed weights hold.
    """
    c = lambda ci, co, k: _conv(ci, co, k, train_bn)  # noqa: E731
    trunk: list[NamedUnit] = [
        ("conv1", c(3, 64, 5)), ("relu1", nn.ReLU()), ("pool1", _pool()), ("lrn1", _lrn()),
        ("conv2", c(64, 96, 5)), ("relu2", nn.ReLU()), ("pool2", _pool()), ("lrn2", _lrn()),
        ("conv3", c(96, 160, 3)), ("relu3", nn.ReLU()),
        ("conv4", c(160, 160, 3)), ("relu4", nn.ReLU()),
        ("conv5", c(160, 128, 3)), ("relu5", nn.ReLU()), ("pool3", _pool()),
        ("fc1", FlattenLinear(128 * 4 * 4, 512)), ("relu6", nn.ReLU()), ("dropout1", nn.Dropout(0.5)),
        ("fc2", FlattenLinear(512, 256)), ("relu7", nn.ReLU()), ("dropout2", nn.Dropout(0.5)),
        ("fc3", FlattenLinear(256, NUM_CLASSES)),
    ]
    exit1: list[NamedUnit] = [
        ("conv1", c(64, 48, 3)), ("relu1", nn.ReLU()), ("pool1", _pool()),
        ("conv2", c(48, 96, 3)), ("relu2", nn.ReLU()), ("pool2", _pool()),
        ("dropout", nn.Dropout(0.3)), ("fc", FlattenLinear(96 * 4 * 4, NUM_CLASSES)),
    ]
    exit2: list[NamedUnit] = [
        ("conv1", c(96, 96, 3)), ("relu1", nn.ReLU()), ("pool1", _pool()),
        ("conv2", c(96, 96, 3)), ("relu2", nn.ReLU()), ("pool2", _pool()),
        ("dropout", nn.Dropout(0.3)), ("fc", FlattenLinear(96 * 2 * 2, NUM_CLASSES)),
    ]
    exit3: list[NamedUnit] = [
        ("conv1", c(160, 96, 3)), ("relu1", nn.ReLU()), ("lrn1", _lrn()), ("pool1", _pool()),
        ("conv2", c(96, 96, 3)), ("relu2", nn.ReLU()), ("pool2", _pool()),
        ("dropout", nn.Dropout(0.3)), ("fc", FlattenLinear(96 * 2 * 2, NUM_CLASSES)),
    ]
    exit4: list[NamedUnit] = [
        ("conv1", c(160, 96, 3)), ("relu1", nn.ReLU()), ("pool1", _pool()),
        ("dropout1", nn.Dropout(0.3)), ("fc1", FlattenLinear(96 * 4 * 4, 256)), ("relu2", nn.ReLU()),
        ("dropout2", nn.Dropout(0.3)), ("fc2", FlattenLinear(256, NUM_CLASSES)),
    ]
    return MultiExitChain(
        name="alexnet-cifar10",
        trunk=trunk,
        exits=[(4, exit1), (8, exit2), (10, exit3), (12, exit4)],
        input_shape=INPUT_SHAPE,
        num_classes=NUM_CLASSES,
    )


def fold_batch_norms(train_model: MultiExitChain) -> MultiExitChain:
    """The inference form of a trained model: same weights, every ``ConvBN`` folded into a plain convolution."""
    infer = build_alexnet_cifar10(train_bn=False)
    src_units = list(train_model.trunk) + [u for b in train_model.branches for u in b]
    dst_units = list(infer.trunk) + [u for b in infer.branches for u in b]
    for src, dst in zip(src_units, dst_units, strict=True):
        if isinstance(src, ConvBN):
            folded = src.fold()
            dst.load_state_dict(folded.state_dict())
        else:
            dst.load_state_dict(src.state_dict())
    return infer.eval()
