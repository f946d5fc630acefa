"""What the latency models regress on: the paper's variables per layer type, and richer features.

The paper (Edgent, after Neurosurgeon) regresses each layer type's latency on a few variables:

==========================  ==========================================================================
layer type                  variables
==========================  ==========================================================================
convolution                 size of the input feature maps; (filter size / stride)^2 x number of filters
ReLU, LRN, dropout          input data size
pooling                     input data size, output data size
fully connected             input data size, output data size
model loading               model size
==========================  ==========================================================================

Kinds the paper does not list (batch norm, other activations, add, cat, mul, flatten, identity) get the
element-wise form (input data size). Sizes are elements per sample (batch 1).

The richer features add the work (FLOPs), the output size, the parameters (weights read) and the shape
descriptors the non-linear correction compares layers by (:func:`shape_key`).
"""

from __future__ import annotations

import math

import numpy as np

from edgent.errors import ModelError
from edgent.model.describe import LayerInfo

#: Every layer kind the latency models know (the kinds of :mod:`edgent.model.describe`).
KNOWN_KINDS = ("conv", "fc", "bn", "lrn", "maxpool", "avgpool", "dropout", "relu", "act", "flatten",
               "identity", "add", "cat", "mul")
POOL_KINDS = ("maxpool", "avgpool")
ELEMENTWISE_KINDS = ("bn", "dropout", "relu", "act", "flatten", "identity", "add", "cat", "mul")


def check_kind(layer: LayerInfo) -> str:
    """The layer's kind, or a clear :class:`ModelError` if the latency models do not know it."""
    if layer.kind not in KNOWN_KINDS:
        raise ModelError(
            f"no latency model for layer kind {layer.kind!r} (input {layer.input_shape}, {layer.detail or 'no detail'}); "
            f"known kinds: {', '.join(KNOWN_KINDS)}. Add the layer to edgent.model.describe and the profiler's sweep"
        )
    return layer.kind


def _spatial(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape[1:])) if len(shape) >= 2 else 1


def paper_feature_names(kind: str) -> list[str]:
    """Names of the paper's variables of ``kind`` (without the intercept)."""
    if kind == "conv":
        return ["input_size", "kernel_over_stride_sq_x_filters"]
    if kind in POOL_KINDS or kind == "fc":
        return ["input_size", "output_size"]
    return ["input_size"]


def paper_features(layer: LayerInfo) -> np.ndarray:
    """The paper's variables of ``layer`` (see the module docstring)."""
    kind = check_kind(layer)
    if kind == "conv":
        return np.array([layer.input_size, (layer.kernel / max(layer.stride, 1)) ** 2 * layer.out_channels], float)
    if kind in POOL_KINDS or kind == "fc":
        return np.array([layer.input_size, layer.output_size], float)
    return np.array([layer.input_size], float)


def rich_feature_names(kind: str) -> list[str]:
    """Names of :func:`rich_features` of ``kind``; the first is the constant."""
    if kind in ("conv", "fc"):
        return ["const", "flops", "input_size", "output_size", "params"]
    if kind in POOL_KINDS:
        return ["const", "input_size", "output_size", "window_work"]
    if kind == "lrn":
        return ["const", "input_size", "window_work"]
    if kind in ("add", "cat", "mul"):
        return ["const", "input_size", "output_size"]
    return ["const", "input_size"]


def _window_work(layer: LayerInfo) -> float:
    if layer.kernel > 0 and layer.kind in POOL_KINDS:
        return float(layer.output_size * layer.kernel ** 2)
    if layer.kind == "lrn":
        return float(layer.input_size * max(layer.kernel, 1))
    return float(layer.input_size)  # adaptive/global pooling reads every input once


def rich_features(layer: LayerInfo) -> np.ndarray:
    """Linear features of the better predictor: a constant, the work and the data moved (see names)."""
    kind = check_kind(layer)
    if kind in ("conv", "fc"):
        return np.array([1.0, layer.flops, layer.input_size, layer.output_size, layer.params], float)
    if kind in POOL_KINDS:
        return np.array([1.0, layer.input_size, layer.output_size, _window_work(layer)], float)
    if kind == "lrn":
        return np.array([1.0, layer.input_size, _window_work(layer)], float)
    if kind in ("add", "cat", "mul"):
        return np.array([1.0, layer.input_size, layer.output_size], float)
    return np.array([1.0, layer.input_size], float)


def shape_key(layer: LayerInfo) -> np.ndarray:
    """Log-scale shape descriptors by which the non-linear correction finds similar layers of the same kind.

    Conv: input channels per group, output channels, output positions, kernel, stride, groups. FC: input and
    output features. Pooling: channels, input positions, output positions, kernel. Others: channels and
    positions of the input.
    """
    kind = check_kind(layer)
    lg = lambda v: math.log2(max(float(v), 1.0))  # noqa: E731
    c_in = layer.input_shape[0] if layer.input_shape else 1
    if kind == "conv":
        return np.array([lg(layer.in_channels / max(layer.groups, 1)), lg(layer.out_channels),
                         lg(_spatial(layer.output_shape)), lg(layer.kernel), lg(layer.stride), lg(layer.groups)])
    if kind == "fc":
        return np.array([lg(layer.in_channels or layer.input_size), lg(layer.out_channels or layer.output_size)])
    if kind in POOL_KINDS:
        return np.array([lg(c_in), lg(_spatial(layer.input_shape)), lg(_spatial(layer.output_shape)),
                         lg(layer.kernel)])
    return np.array([lg(c_in), lg(_spatial(layer.input_shape))])
