"""Saving and loading model weights as safetensors files (no pickle, nothing that runs code on load)."""

from __future__ import annotations

from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from edgent.errors import ModelError


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write ``model``'s state dict to ``path`` (safetensors), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata=metadata)
    tmp.chmod(0o644)  # weights are data anyone running the model reads
    tmp.replace(path)


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load weights saved by :func:`save_weights` into ``model``, checking every name and shape."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"weights file {path} is corrupt or not a safetensors file: {exc}") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ModelError(
            f"weights file {path} does not match the model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}"
        )
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ModelError(
                f"weights file {path} does not match the model: {k} has shape {tuple(state[k].shape)}, "
                f"the model expects {tuple(v.shape)}"
            )
        if state[k].dtype != v.dtype:
            state[k] = state[k].to(v.dtype)
    model.load_state_dict(state)
    return model
