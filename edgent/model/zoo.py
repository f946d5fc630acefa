"""The model zoo: models by name, with their exits, committed weights and model cards.

- ``alexnet-cifar10``: the paper's branchy AlexNet (trained weights and card committed).
- ``resnet18``, ``mobilenet_v2``, ``vgg11``: torchvision's ImageNet models (224x224 inputs, random weights)
  converted automatically into chains with exits attached from a small spec; for timing and partitioning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgent.errors import ModelError
from edgent.model.chain import MultiExitChain
from edgent.model.weights import load_weights

WEIGHTS_DIR = Path(__file__).with_name("weights")


@dataclass(frozen=True)
class ZooEntry:
    """A model the zoo can build, and where its trained weights and card live (if any)."""

    name: str
    build: Callable[[], MultiExitChain]
    description: str
    weights: Path | None = None
    card: Path | None = None


def _alexnet() -> MultiExitChain:
    from edgent.model.alexnet import build_alexnet_cifar10

    return build_alexnet_cifar10(train_bn=False)


def _torchvision(arch: str, exits: list[dict[str, Any]]) -> Callable[[], MultiExitChain]:
    def build() -> MultiExitChain:
        import torchvision

        from edgent.model.fx_chain import chain_from_model

        model = getattr(torchvision.models, arch)(weights=None, num_classes=1000)
        return chain_from_model(model, (3, 224, 224), name=arch, num_classes=1000, exits=exits)

    return build


_ENTRIES = [
    ZooEntry("alexnet-cifar10", _alexnet, "branchy AlexNet for CIFAR-10, 22 trunk units, 5 exits (paper)",
             WEIGHTS_DIR / "alexnet-cifar10.safetensors", WEIGHTS_DIR / "alexnet-cifar10.card.json"),
    ZooEntry("resnet18", _torchvision("resnet18", [{"after": "layer1", "head": "linear"},
                                                   {"after": "layer2", "head": "linear"},
                                                   {"after": "layer3", "head": "linear"}]),
             "torchvision ResNet-18 (random weights), exits after layer1, layer2, layer3"),
    ZooEntry("mobilenet_v2", _torchvision("mobilenet_v2", [{"after": "features.3", "head": "linear"},
                                                           {"after": "features.6", "head": "linear"},
                                                           {"after": "features.13", "head": "linear"}]),
             "torchvision MobileNetV2 (random weights), exits after features.3, .6, .13"),
    ZooEntry("vgg11", _torchvision("vgg11", [{"after": "features.5", "head": "linear"},
                                             {"after": "features.10", "head": "linear"}]),
             "torchvision VGG-11 (random weights), exits after its second and third blocks"),
]
ZOO: dict[str, ZooEntry] = {e.name: e for e in _ENTRIES}


def model_names() -> list[str]:
    """Names the zoo knows."""
    return list(ZOO)


def zoo_entry(name: str) -> ZooEntry:
    """The zoo entry of ``name``, or a clear error listing the known names."""
    if name not in ZOO:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(ZOO)}")
    return ZOO[name]


def load_model(name: str, pretrained: bool = True, weights: str | Path | None = None) -> MultiExitChain:
    """Build ``name`` in eval mode, with its committed weights when ``pretrained`` (or the file ``weights``)."""
    entry = zoo_entry(name)
    model = entry.build()
    path = Path(weights) if weights is not None else (entry.weights if pretrained else None)
    if path is not None:
        if weights is None and not path.is_file():
            raise ModelError(f"{name} has no trained weights at {path}; train them with `edgent train --model {name}`")
        load_weights(model, path)
    return model.eval()


def load_for_inference(name: str, weights: str | Path | None = None, random_weights: bool = False,
                       seed: int = 0) -> MultiExitChain:
    """The chain a device or an edge runs: the committed weights, a weights file, or seeded random weights
    (identical on device and edge when both use the same seed). Always in eval mode."""
    import torch

    if random_weights:
        torch.manual_seed(seed)
        return load_model(name, pretrained=False)
    try:
        return load_model(name, weights=weights)
    except ModelError as exc:
        raise ModelError(f"{exc} (or pass --random-weights with the same --seed on both sides)") from exc
