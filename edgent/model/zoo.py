"""The model zoo, and the one resolver of ``--model``: a zoo name or a model folder.

The zoo is a folder of model specs (``edgent/model/weights/<name>.model.json``, the format of
:mod:`edgent.model.spec`, next to the weights and cards they name):

- ``alexnet-cifar10``: the paper's branchy AlexNet (trained weights and card committed).
- ``resnet18``, ``mobilenet_v2``, ``vgg11``: torchvision's ImageNet models (224x224 inputs, random weights)
  converted automatically into chains with exits attached from a small spec; for timing and partitioning.
- ``mobilenet_v3_small-cifar10``: torchvision's MobileNetV3-Small for CIFAR-10 upscaled to 64x64, with three
  automatic exits, trained jointly by ``edgent train`` (weights and card committed; the card says how).
- any other ``*.model.json`` committed there (each says what it is in its ``description``).

Every command that takes ``--model`` resolves it with :func:`load_model_spec`: a zoo name, or the path of a model
folder (``edgent convert`` makes one) or of its ``model.json``.
"""

from __future__ import annotations

from pathlib import Path

from edgent.errors import ModelError
from edgent.model.chain import MultiExitChain
from edgent.model.spec import ModelSpec, is_model_folder, read_model_folder
from edgent.model.weights import load_weights

WEIGHTS_DIR = Path(__file__).with_name("weights")

#: A zoo entry is a model spec (kept under this name for the callers that read ``.weights`` / ``.card``).
ZooEntry = ModelSpec


def _read_zoo() -> dict[str, ModelSpec]:
    out: dict[str, ModelSpec] = {}
    for path in sorted(WEIGHTS_DIR.glob("*.model.json"), key=lambda p: (p.name != "alexnet-cifar10.model.json",
                                                                          p.name)):
        spec = read_model_folder(path)
        out[spec.name] = spec
    return out


ZOO: dict[str, ModelSpec] = _read_zoo()


def model_names() -> list[str]:
    """Names the zoo knows."""
    return list(ZOO)


def zoo_entry(name: str) -> ModelSpec:
    """The zoo entry of ``name``, or a clear error listing the known names."""
    if name not in ZOO:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(ZOO)}, or the path of a model folder "
                         "(`edgent convert` makes one)")
    return ZOO[name]


def load_model_spec(ref: str | Path) -> ModelSpec:
    """The spec ``ref`` names: a zoo name, a model folder or its ``model.json`` (the one resolver of
    ``--model``). A ``ModelSpec`` passes through."""
    if isinstance(ref, ModelSpec):
        return ref
    ref_s = str(ref)
    if ref_s in ZOO:
        return ZOO[ref_s]
    if is_model_folder(ref_s):
        return read_model_folder(ref_s)
    if Path(ref_s).exists():
        raise ModelError(f"{ref_s} is not a model folder (no model.json); make one with `edgent convert --arch REF "
                         "--num-classes K --out DIR`")
    return zoo_entry(ref_s)


def model_name(ref: str | Path) -> str:
    """The model name ``ref`` resolves to (a folder's ``name``; a zoo name is its own)."""
    return load_model_spec(ref).name


def load_model(name: str | Path | ModelSpec, pretrained: bool = True,
               weights: str | Path | None = None) -> MultiExitChain:
    """Build the model ``name`` (zoo name or folder) in eval mode, with its trained weights when ``pretrained``
    (or the file ``weights``)."""
    spec = load_model_spec(name)
    model = spec.build()
    path = Path(weights) if weights is not None else (spec.weights if pretrained else None)
    if path is not None:
        if weights is None and not path.is_file():
            where = spec.folder if spec.folder is not None and spec.folder != WEIGHTS_DIR else spec.name
            raise ModelError(f"{spec.name} has no trained weights at {path}; train them with `edgent train --model "
                             f"{where}`")
        load_weights(model, path)
    return model.eval()


def load_for_inference(name: str | Path, weights: str | Path | None = None, random_weights: bool = False,
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
