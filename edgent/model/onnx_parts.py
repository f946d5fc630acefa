"""Parts of a chain under ONNX Runtime: the device part of a plan run by onnxruntime instead of eager PyTorch.

A *part* is units ``[start, stop)`` of the sub-model to one exit. :func:`export_part` exports it once to ONNX
(TorchScript-based exporter, dynamic batch) into a cache keyed by the model name, exit, start, stop and a hash of
the weights (:func:`edgent.model.spec.weights_digest`), so new weights never reuse an old export.
:class:`OnnxDeviceChain` stands where a :class:`MultiExitChain` runs on the device (``run_device``, ``forward``,
``run_edge`` for a local fallback), with every other attribute the chain's own. :class:`OnnxUnits` is the
per-unit form the profiler times (one session per unit).
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgent.errors import ConfigError, ModelError
from edgent.model.chain import MultiExitChain
from edgent.model.spec import weights_digest

RUNTIMES = ("torch", "onnx")
OPSET = 17


def onnx_cache_dir() -> Path:
    """Where exported parts are kept: ``$EDGENT_CACHE/onnx`` (default ``~/.cache/edgent/onnx``)."""
    return Path(os.environ.get("EDGENT_CACHE", Path.home() / ".cache" / "edgent")) / "onnx"


def check_runtime(runtime: str) -> str:
    """``runtime`` if known, else a clear error."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"--device-runtime {runtime!r}: use {' or '.join(RUNTIMES)}")
    if runtime == "onnx":
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise ConfigError("--device-runtime onnx needs onnxruntime: pip install onnxruntime") from exc
    return runtime


class _Part(nn.Module):
    def __init__(self, units: list[nn.Module]) -> None:
        super().__init__()
        self.units = nn.ModuleList(units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for u in self.units:
            x = u(x)
        return x


def export_part(chain: MultiExitChain, exit: int, start: int, stop: int, cache_dir: Path | None = None,
                digest: str | None = None) -> Path:
    """The ONNX file of units ``[start, stop)`` of ``exit``'s sub-model, exported on first use."""
    ep = chain.exit_point(exit)
    if not 0 <= start < stop <= ep.num_units:
        raise ConfigError(f"part [{start}, {stop}) is outside exit {exit}'s units 0..{ep.num_units}")
    digest = digest or weights_digest(chain)
    folder = Path(cache_dir) if cache_dir is not None else onnx_cache_dir()
    path = folder / f"{chain.name}-e{exit}-u{start}-{stop}-{digest}.onnx"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    part = _Part(chain.units(exit)[start:stop]).eval()
    x = torch.zeros((1, *chain.unit_input_shape(exit, start)))
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(part, (x,), str(tmp), dynamo=False, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=OPSET)
        except Exception as exc:  # the exporter raises many types
            tmp.unlink(missing_ok=True)
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise ConfigError(f"exporting units {start}..{stop - 1} of exit {exit} of {chain.name} to ONNX failed "
                              f"({type(exc).__name__}: {first}); use --device-runtime torch") from exc
    tmp.replace(path)
    return path


class OrtPart:
    """One ONNX Runtime session: torch tensor in, torch tensor out (float32, CPU)."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = path
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        (y,) = self.session.run(None, {"x": arr})
        return torch.from_numpy(y)


class OnnxDeviceChain:
    """A chain whose device-side computation runs under ONNX Runtime: each (exit, start, stop) part is
    exported and opened once, on first use. Inputs are checked as the chain checks them."""

    runtime = "onnx"

    def __init__(self, chain: MultiExitChain, threads: int | None = None, cache_dir: Path | None = None) -> None:
        check_runtime("onnx")
        self.chain = chain.eval()
        self.threads = threads if threads is not None else torch.get_num_threads()
        self.cache_dir = cache_dir
        self.digest = weights_digest(chain)
        self._parts: dict[tuple[int, int, int], OrtPart] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # everything else is the chain's
        return getattr(self.__dict__["chain"], name)

    def part(self, exit: int, start: int, stop: int) -> OrtPart:
        """The session of units ``[start, stop)`` of ``exit`` (exported and opened on first use)."""
        key = (exit, start, stop)
        with self._lock:
            if key not in self._parts:
                path = export_part(self.chain, exit, start, stop, self.cache_dir, self.digest)
                self._parts[key] = OrtPart(path, self.threads)
            return self._parts[key]

    def prepare(self, exit: int, point: int) -> None:
        """Export and open the device part of (exit, point) now, not on the first request."""
        if point > 0:
            self.part(self.chain.exit_point(exit).exit, 0, point)

    def eval(self) -> "OnnxDeviceChain":
        self.chain.eval()
        return self

    def run_device(self, x: torch.Tensor, exit: int | None, point: int) -> torch.Tensor:
        ep = self.chain.exit_point(exit)
        x = self.chain.run_device(x, ep.exit, 0)  # the chain's checks of the input; point 0 computes nothing
        if isinstance(point, bool) or not isinstance(point, int) or not 0 <= point <= ep.num_units:
            raise ModelError(f"partition point {point!r} is out of range: exit {ep.exit} of model "
                             f"{self.chain.name!r} has points 0..{ep.num_units}")
        return x if point == 0 else self.part(ep.exit, 0, point)(x)

    def run_edge(self, t: torch.Tensor, exit: int | None, point: int) -> torch.Tensor:
        ep = self.chain.exit_point(exit)
        if point >= ep.num_units:
            return self.chain.run_edge(t, ep.exit, point)
        return self.part(ep.exit, point, ep.num_units)(t)

    def forward(self, x: torch.Tensor, exit: int | None = None) -> torch.Tensor:
        ep = self.chain.exit_point(exit)
        return self.run_device(x, ep.exit, ep.num_units)

    __call__ = forward


class OnnxUnits:
    """Every unit of every exit as its own ONNX Runtime session: what ``edgent profile --runtime onnx`` times
    in place (``units(exit)``, ``forward``, ``exit_points`` as the chain's)."""

    def __init__(self, chain: MultiExitChain, threads: int = 1, cache_dir: Path | None = None) -> None:
        check_runtime("onnx")
        self.chain = chain.eval()
        digest = weights_digest(chain)
        self.exit_points = chain.exit_points
        self._units: dict[int, list[OrtPart]] = {}
        trunk_parts: dict[int, OrtPart] = {}
        main = chain.exit_points[-1].exit
        for i in range(chain.exit_points[-1].num_units):
            trunk_parts[i] = OrtPart(export_part(chain, main, i, i + 1, cache_dir, digest), threads)
        for ep in chain.exit_points:
            units = [trunk_parts[i] for i in range(ep.after_trunk_units)]
            units += [OrtPart(export_part(chain, ep.exit, i, i + 1, cache_dir, digest), threads)
                      for i in range(ep.after_trunk_units, ep.num_units)] if ep.exit != main else \
                [trunk_parts[i] for i in range(ep.after_trunk_units, ep.num_units)]
            self._units[ep.exit] = units

    def units(self, exit: int | None = None) -> list[OrtPart]:
        return self._units[self.chain.exit_point(exit).exit]

    def forward(self, x: torch.Tensor, exit: int | None = None) -> torch.Tensor:
        for u in self.units(exit):
            x = u(x)
        return x
