"""The models' input preprocessing by name: part of what a model is. The runtime runs it on either side (the
device names it in its request when it sends raw pixels, codecs ``uint8`` and ``jpeg``; the edge only runs the
ones listed here), and the latency stage times it like any layer (:func:`edgent.profile.sweep.measure_preprocess`)."""

from __future__ import annotations

from typing import Callable

import torch

from edgent.errors import ConfigError, InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _normalise(mean: tuple[float, ...], std: tuple[float, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(pixels: torch.Tensor) -> torch.Tensor:
        if pixels.dtype != torch.uint8 or pixels.dim() != 4 or pixels.shape[1] != len(mean):
            raise InputError(f"preprocessing takes uint8 images (N, {len(mean)}, H, W), got "
                             f"{pixels.dtype} {tuple(pixels.shape)}")
        m = torch.tensor(mean).view(1, -1, 1, 1)
        s = torch.tensor(std).view(1, -1, 1, 1)
        return (pixels.float().div_(255.0) - m) / s

    return run


def _cifar10(pixels: torch.Tensor) -> torch.Tensor:
    from edgent.data.cifar10 import to_model_input

    if pixels.dtype != torch.uint8:
        raise InputError(f"preprocessing 'cifar10' takes uint8 pixels, got {pixels.dtype}")
    return to_model_input(pixels)


PREPROCESSORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "cifar10": _cifar10,
    "imagenet": _normalise(IMAGENET_MEAN, IMAGENET_STD),
    "scale01": lambda p: _normalise((0.0,) * p.shape[1], (1.0,) * p.shape[1])(p),
}


#: model name -> the name of its preprocessing, for models whose spec says it (:func:`set_model_preprocess`)
_MODEL_PREPROCESS: dict[str, str] = {}


def register_preprocess(name: str, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    """Make a normalisation (uint8 / 255, - mean, / std per channel) known under ``name`` in this process: what
    a model folder with its own mean and std does when it is loaded (on the device and on the edge alike)."""
    PREPROCESSORS[name] = _normalise(tuple(mean), tuple(std))


def set_model_preprocess(model_name: str, preprocess: str) -> None:
    """Record the preprocessing of ``model_name`` (from its spec), which :func:`default_preprocess` returns."""
    get_preprocess(preprocess)
    _MODEL_PREPROCESS[model_name] = preprocess


def default_preprocess(model_name: str) -> str:
    """The preprocessing a model was trained with: the one its spec names when it was loaded, else by the
    zoo's convention (CIFAR-10 statistics for a ``*cifar10*`` name, ImageNet statistics otherwise)."""
    if model_name in _MODEL_PREPROCESS:
        return _MODEL_PREPROCESS[model_name]
    return "cifar10" if "cifar10" in model_name else "imagenet"


def get_preprocess(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The preprocessing function called ``name`` (uint8 (N, C, H, W) -> float32 model input)."""
    if not isinstance(name, str) or name not in PREPROCESSORS:
        raise ConfigError(f"unknown preprocessing {name!r}; known: {', '.join(PREPROCESSORS)}")
    return PREPROCESSORS[name]


def preprocess_name(fn: Callable[[torch.Tensor], torch.Tensor]) -> str:
    """The name under which ``fn`` is known (:func:`get_preprocess`'s inverse): what travels to another process
    that runs the same preprocessing (a cluster's worker looks it up by name again)."""
    for name, known in PREPROCESSORS.items():
        if known is fn:
            return name
    raise ConfigError(f"the preprocessing {fn!r} is not one of the known ones ({', '.join(PREPROCESSORS)})")
