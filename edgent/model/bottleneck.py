"""A learned bottleneck at a partition point: a small encoder the device runs and a decoder the edge runs.

The split-computing recipe (BottleFit, Entropic Student): a model's own tensor at an early cut is too large to
send, so a small encoder turns it into a few channels of coarse integer symbols, and a decoder on the edge turns
them back into (an approximation of) the tensor the rest of the model expects. The trunk is frozen; only the
encoder and decoder are trained, by distillation from the model's own outputs (``edgent.train.bottleneck``).

Layout (``K`` channels, ``L`` levels, the cut's tensor ``(C, H, W)``):

- encoder (device): ``Conv2d(C, K, 3, stride s)`` (``s`` 1 or 2), then each value rounded and clamped to
  ``0..L-1``;
- wire: the ``K x H/s x W/s`` symbols packed at ``ceil(log2 L)`` bits each, then losslessly compressed with
  zstandard when that is smaller (:class:`edgent.codec.BottleneckCodec`);
- decoder (edge): ``Conv2d(K, D, 3)``, ReLU, nearest upsampling x``s``, ``Conv2d(D, D, 3)``, ReLU,
  ``Conv2d(D, C, 3)``, ReLU (the tensors at the cuts it is meant for follow a ReLU or a max-pool of one).

Saved as ``<model>.bottleneck.safetensors`` with its :class:`BottleneckSpec` in the file's metadata (strings only,
nothing that runs code on load), next to the model's weights; its accuracies per exit go in the model card
under ``codec_accuracy`` (``edgent.model.card``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from edgent.errors import ModelError

WEIGHTS_DIR = Path(__file__).with_name("weights")


@dataclass(frozen=True)
class BottleneckSpec:
    """What a bottleneck is: the model and point it belongs to, and its code's shape.

    Attributes:
        model: the zoo name of the model.
        point: the partition point it sits at (the device runs trunk units ``[0, point)``); it must lie before
            the first exit's branch so that one bottleneck serves every exit.
        after_unit: the name of the trunk unit before the cut (``point - 1``), for people.
        in_shape: the cut's tensor shape ``(C, H, W)`` without batch.
        channels: ``K``, channels of the code.
        levels: ``L``, integer levels per symbol (``0..L-1``).
        hidden: ``D``, the decoder's width.
    """

    model: str
    point: int
    after_unit: str
    in_shape: tuple[int, int, int]
    channels: int
    levels: int
    hidden: int = 64
    stride: int = 2

    def __post_init__(self) -> None:
        if (self.channels < 1 or not 2 <= self.levels <= 256 or self.point < 1 or len(self.in_shape) != 3
                or self.stride not in (1, 2)):
            raise ModelError(f"bad bottleneck spec {self!r}: channels >= 1, levels 2..256, point >= 1, a 3-D shape, "
                             "stride 1 or 2")

    @property
    def code_shape(self) -> tuple[int, int, int]:
        """Shape of the symbols of one sample, ``(K, ceil(H/s), ceil(W/s))`` for the encoder's stride ``s``."""
        _, h, w = self.in_shape
        s = self.stride
        return (self.channels, (h + s - 1) // s, (w + s - 1) // s)

    @property
    def bits_per_symbol(self) -> int:
        return max(1, math.ceil(math.log2(self.levels)))

    @property
    def name(self) -> str:
        """The codec name that selects this bottleneck: ``bneck-<model>``."""
        return f"bneck-{self.model}"

    def to_metadata(self) -> dict[str, str]:
        return {"bottleneck_spec": json.dumps(asdict(self))}

    @classmethod
    def from_metadata(cls, meta: dict[str, str] | None, where: str) -> "BottleneckSpec":
        try:
            d = json.loads((meta or {})["bottleneck_spec"])
            d["in_shape"] = tuple(int(v) for v in d["in_shape"])
            return cls(**d)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{where} holds no valid bottleneck spec ({exc!r}); retrain it with "
                             "`edgent train --bottleneck AFTER_UNIT --channels K`") from exc


class Bottleneck(nn.Module):
    """Encoder and decoder of one :class:`BottleneckSpec` (see the module docstring)."""

    def __init__(self, spec: BottleneckSpec) -> None:
        super().__init__()
        self.spec = spec
        c = spec.in_shape[0]
        self.encoder = nn.Conv2d(c, spec.channels, 3, stride=spec.stride, padding=1)
        with torch.no_grad():  # start in the middle of the levels, so that rounding keeps information from step 1
            self.encoder.bias.fill_((spec.levels - 1) / 2)
        self.decoder = nn.Sequential(
            nn.Conv2d(spec.channels, spec.hidden, 3, padding=1), nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest") if spec.stride == 2 else nn.Identity(),
            nn.Conv2d(spec.hidden, spec.hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(spec.hidden, c, 3, padding=1), nn.ReLU(),
        )

    def encode_symbols(self, x: torch.Tensor) -> torch.Tensor:
        """The code of a batch of cut tensors: uint8 symbols ``(N, K, H/2, W/2)`` in ``0..L-1`` (device)."""
        y = self.encoder(x)
        return torch.round(y).clamp_(0, self.spec.levels - 1).to(torch.uint8)

    def decode_symbols(self, q: torch.Tensor) -> torch.Tensor:
        """The reconstructed cut tensor ``(N, C, H, W)`` of a batch of symbols (edge)."""
        out = self.decoder(q.float())
        _, h, w = self.spec.in_shape
        return out[..., :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode and decode with a straight-through rounding (what training runs)."""
        y = self.encoder(x).clamp(0, self.spec.levels - 1)
        y = y + (torch.round(y) - y).detach()
        return self.decode_symbols(y)


def bottleneck_path(model: str, folder: str | Path | None = None) -> Path:
    """Where the bottleneck of ``model`` lives: ``<folder or the package's weights>/<model>.bottleneck.safetensors``."""
    return Path(folder or WEIGHTS_DIR) / f"{model}.bottleneck.safetensors"


def save_bottleneck(neck: Bottleneck, path: str | Path) -> Path:
    """Write ``neck``'s weights and spec to ``path`` (safetensors)."""
    from edgent.model.weights import save_weights

    save_weights(neck, path, metadata=neck.spec.to_metadata())
    return Path(path)


def load_bottleneck(path: str | Path) -> Bottleneck:
    """The bottleneck saved at ``path``, in eval mode (spec from the file's metadata, weights checked)."""
    from safetensors import safe_open

    from edgent.model.weights import load_weights

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no bottleneck at {path}; train one with `edgent train --bottleneck AFTER_UNIT --channels K`")
    with safe_open(str(path), framework="pt") as f:
        spec = BottleneckSpec.from_metadata(f.metadata(), str(path))
    neck = Bottleneck(spec)
    load_weights(neck, path)
    return neck.eval()


def forward_all_from(chain: nn.Module, h: torch.Tensor, point: int) -> list[torch.Tensor]:
    """Every exit's output of ``chain`` (a ``MultiExitChain``) from the trunk tensor ``h`` at ``point``, which
    must lie at or before the first branch (what training and evaluating a bottleneck need)."""
    outputs: list[torch.Tensor] = []
    done = point
    for ep in chain.exit_points:
        if ep.after_trunk_units < point:
            raise ModelError(f"point {point} lies after exit {ep.exit}'s branch; a bottleneck must come before it")
        for unit in chain.trunk[done:ep.after_trunk_units]:
            h = unit(h)
        done = ep.after_trunk_units
        out = h
        for unit in chain.branches[ep.exit - 1]:
            out = unit(out)
        outputs.append(out)
    return outputs
