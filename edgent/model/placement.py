"""Where and how a chain's parts run: the processor (CPU or a CUDA GPU), the precision (float32, or float16 on a
GPU) and the execution mode (eager PyTorch, CUDA graphs, or ``torch.compile``).

Small DNN parts on a GPU are bound by kernel launches, not by arithmetic: eager PyTorch pays the Python and launch
cost of every layer on every call. A CUDA graph records a part's kernels once per (exit, partition, batch shape)
and replays them with one launch, which is the floor of what the GPU can do for that part; ``torch.compile`` fuses
layers (``mode="max-autotune-no-cudagraphs"``, or ``"reduce-overhead"``, which adds CUDA graphs itself).

:class:`PartRunner` is what the edge's compute engines call instead of ``chain.run_edge`` when they run on a GPU:
it takes the part's input on the CPU, runs the part where the placement says, and returns float32 logits on the
CPU. On the CPU with the default placement it is ``chain.run_edge`` itself. ``edgent bench gpu`` measures the
modes against each other (``docs/scale.md``).
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import torch

from edgent.errors import ConfigError
from edgent.model.chain import MultiExitChain

#: the execution modes of :class:`Placement`
MODES: tuple[str, ...] = ("eager", "graph", "compile")
#: the precisions of ``--fp16``: float16 on a GPU when the model card allows it, always, or never
FP16_CHOICES: tuple[str, ...] = ("auto", "on", "off")
#: the largest loss of top-1 accuracy (absolute, at any exit) with which ``--fp16 auto`` runs a model in float16
FP16_MAX_TOP1_LOSS = 0.005
#: captured CUDA graphs (or compiled parts) kept per runner; the least recently used is dropped beyond it
MAX_CACHED_PARTS = 64


def cuda_available() -> bool:
    """Whether torch sees a usable CUDA device."""
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken driver is "no GPU"
        return False


def resolve_device(spec: str) -> str:
    """The torch device for ``--device``: ``"auto"`` (the first GPU where torch sees one, else the CPU),
    ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; a clear error for a GPU that is not there."""
    if not isinstance(spec, str):
        raise ConfigError(f"--device must be cpu, cuda, cuda:N or auto, got {spec!r}")
    spec = spec.strip().lower()
    if spec == "auto":
        return "cuda" if cuda_available() else "cpu"
    if spec == "cpu":
        return "cpu"
    if spec == "cuda" or (spec.startswith("cuda:") and spec[5:].isdigit()):
        if not cuda_available():
            raise ConfigError(f"--device {spec}: torch sees no CUDA GPU on this machine (torch "
                              f"{torch.__version__}, CUDA build {torch.version.cuda or 'none'}); use --device cpu "
                              "or auto, or install a CUDA build of torch")
        index = int(spec[5:]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return spec
    raise ConfigError(f"--device must be cpu, cuda, cuda:N or auto, got {spec!r}")


def device_name(device: str) -> str:
    """A human name of ``device`` for banners and results: the GPU's model, or "cpu"."""
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return "cpu"


def synchronize(device: str | torch.device) -> None:
    """Wait for the work queued on ``device`` (a no-op on the CPU): a GPU call's time is only known after it."""
    d = torch.device(device)
    if d.type == "cuda":
        torch.cuda.synchronize(d)


@dataclass(frozen=True)
class Placement:
    """Where the parts run (``device``: "cpu", "cuda", "cuda:N"), whether in float16 (``fp16``; GPU only), and how
    (``mode``: "eager", "graph": CUDA graphs, GPU only, or "compile": ``torch.compile`` with ``compile_mode``)."""

    device: str = "cpu"
    fp16: bool = False
    mode: str = "eager"
    compile_mode: str | None = None

    def check(self) -> None:
        """Raise ConfigError for a combination that cannot run."""
        if self.mode not in MODES:
            raise ConfigError(f"--edge-mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        on_gpu = self.device.startswith("cuda")
        if self.mode == "graph" and not on_gpu:
            raise ConfigError("--edge-mode graph records CUDA graphs: it needs --device cuda (use eager or compile "
                              "on the CPU)")
        if self.fp16 and not on_gpu:
            raise ConfigError("--fp16 on runs the edge parts in float16, which only pays on a GPU: use it with "
                              "--device cuda")

    def describe(self) -> str:
        """One line for a banner: device, precision, mode."""
        how = self.mode if self.mode != "compile" else f"torch.compile ({self.compile_mode or 'default'})"
        what = "CUDA graphs" if self.mode == "graph" else how
        return f"{device_name(self.device)}, {'float16' if self.fp16 else 'float32'}, {what}"

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "fp16": self.fp16, "mode": self.mode, "compile_mode": self.compile_mode}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "Placement":
        return cls(str(doc.get("device", "cpu")), bool(doc.get("fp16", False)), str(doc.get("mode", "eager")),
                   doc.get("compile_mode"))


def fp16_allowed(model: str) -> tuple[bool, str]:
    """Whether the model card of ``model`` allows running it in float16: its ``precision_accuracy["float16"]``
    (top-1 per exit with the whole model in float16) within :data:`FP16_MAX_TOP1_LOSS` of its float32 top-1 at
    every exit. Returns the answer and why (a card without that measurement does not allow it)."""
    from edgent.model.card import card_path, read_card

    try:
        path = card_path(model)
    except Exception:  # noqa: BLE001 - a model outside the zoo without a folder: no card
        path = None
    if path is None or not path.is_file():
        return False, f"{model} has no model card"
    card = read_card(path)
    entry = card.raw.get("precision_accuracy", {}).get("float16")
    if not entry:
        return False, f"the card of {model} has no float16 accuracy (precision_accuracy.float16)"
    top1 = [float(a) for a in entry.get("top1", [])]
    if len(top1) != len(card.exit_top1):
        return False, f"the float16 accuracy of {model}'s card has {len(top1)} exits, not {len(card.exit_top1)}"
    loss = max(f32 - f16 for f32, f16 in zip(card.exit_top1, top1))
    if loss > FP16_MAX_TOP1_LOSS:
        return False, f"float16 loses {loss:.4f} top-1 on {model} (more than {FP16_MAX_TOP1_LOSS})"
    return True, f"float16 loses at most {max(loss, 0.0):.4f} top-1 on {model} (its model card)"


def choose_placement(models: list[str], device: str = "auto", fp16: str = "auto", mode: str | None = None,
                     compile_mode: str | None = None) -> tuple[Placement, str]:
    """The placement ``edgent serve`` runs its parts with, from ``--device``, ``--fp16`` (auto: float16 on a GPU
    when every served model's card allows it, :func:`fp16_allowed`) and ``--edge-mode`` (default: CUDA graphs on
    a GPU, eager on the CPU); with a line that says why float16 is on or off."""
    dev = resolve_device(device)
    on_gpu = dev.startswith("cuda")
    if fp16 not in FP16_CHOICES:
        raise ConfigError(f"--fp16 must be one of {', '.join(FP16_CHOICES)}, got {fp16!r}")
    if fp16 == "on":
        half, why = True, "--fp16 on"
    elif fp16 == "off" or not on_gpu:
        half, why = False, "--fp16 off" if fp16 == "off" else "no float16 on the CPU"
    else:
        reasons = [fp16_allowed(m) for m in models]
        half = all(ok for ok, _ in reasons)
        why = "; ".join(r for _, r in reasons) + (" -> float16" if half else " -> float32")
    p = Placement(dev, half, mode or ("graph" if on_gpu else "eager"), compile_mode)
    p.check()
    return p, why


class PartRunner:
    """Runs a chain's edge parts with a :class:`Placement`: input on the CPU (float32), float32 logits on the
    CPU out. The chain given is not changed (the runner keeps its own copy on the GPU). Thread-safe: a CUDA graph
    replays from static buffers, one call at a time."""

    def __init__(self, chain: MultiExitChain, placement: Placement | None = None) -> None:
        self.placement = placement or Placement()
        self.placement.check()
        self.device = torch.device(self.placement.device)
        self.dtype = torch.float16 if self.placement.fp16 else torch.float32
        if self.device.type == "cpu" and not self.placement.fp16:
            self.chain = chain.eval()
        else:
            self.chain = copy.deepcopy(chain).to(self.device, self.dtype).eval()
        self._parts: OrderedDict[tuple[Any, ...], Callable[[torch.Tensor], torch.Tensor]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def trivial(self) -> bool:
        """Whether this runner is ``chain.run_edge`` on the CPU (nothing to place, record or compile)."""
        return self.device.type == "cpu" and not self.placement.fp16 and self.placement.mode == "eager"

    def run_edge(self, t: torch.Tensor, exit: int | None, point: int) -> torch.Tensor:
        """Units ``[point, N_exit)`` on ``t`` (the tensor at the point, on the CPU): float32 logits on the CPU."""
        if self.trivial:
            return self.chain.run_edge(t, exit, point)
        x = t.to(self.device, self.dtype, non_blocking=True)
        if self.placement.mode == "eager":
            out = self.chain.run_edge(x, exit, point)
            return out.float().cpu()
        with self._lock:
            part = self._part(exit, point, tuple(x.shape))
            out = part(x)
            return out.float().cpu()  # a copy: the graph's output buffer is reused by the next replay

    def warm_up(self, exit: int | None, point: int, batch: int = 1) -> None:
        """Record (or compile) the part for ``batch`` inputs now, so that the first request does not pay it."""
        shape = (batch, *self.chain.unit_input_shape(exit, point))
        with torch.inference_mode():
            self.run_edge(torch.zeros(shape), exit, point)

    def _part(self, exit: int | None, point: int, shape: tuple[int, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
        key = (exit, point, shape) if self.placement.mode == "graph" else (exit, point)
        part = self._parts.get(key)
        if part is None:
            fn = _edge_fn(self.chain, exit, point)
            if self.placement.mode == "graph":
                part = record_cuda_graph(fn, torch.zeros(shape, device=self.device, dtype=self.dtype))
            else:
                part = torch.compile(fn, mode=self.placement.compile_mode, dynamic=False)
            if len(self._parts) >= MAX_CACHED_PARTS:
                self._parts.popitem(last=False)
            self._parts[key] = part
        else:
            self._parts.move_to_end(key)
        return part


def _edge_fn(chain: MultiExitChain, exit: int | None, point: int) -> Callable[[torch.Tensor], torch.Tensor]:
    units = torch.nn.Sequential(*chain.units(exit)[point:])

    def run(x: torch.Tensor) -> torch.Tensor:
        return units(x)

    return run


def record_cuda_graph(fn: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor,
                      warmup: int = 3) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn`` recorded as a CUDA graph for inputs shaped like ``example`` (on the GPU): the returned function
    copies its input into the graph's input buffer, replays the graph and returns its output buffer (valid until
    the next call). The warm-up runs on a side stream, as recording requires."""
    static_in = example.clone()
    with torch.inference_mode():
        side = torch.cuda.Stream(device=static_in.device)
        side.wait_stream(torch.cuda.current_stream(static_in.device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                fn(static_in)
        torch.cuda.current_stream(static_in.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = fn(static_in)

    def replay(x: torch.Tensor) -> torch.Tensor:
        static_in.copy_(x, non_blocking=True)
        graph.replay()
        return static_out

    return replay
