"""A model as a folder: what it is built from, where its weights and card are, how its input is prepared.

A model folder holds ``model.json`` (this module's :class:`ModelSpec`), the weights (safetensors) and the model
card. ``model.json``::

    {"format": "edgent-model", "version": 1, "name": "squeezenet-64",
     "arch": "torchvision:squeezenet1_1",      # or "package.module:function", or "file.py:function"
     "arch_kwargs": {},                         # keyword arguments of the builder (num_classes is added)
     "num_classes": 10, "input_shape": [3, 64, 64],
     "exits": [{"after": "features.4", "head": "linear"}, ...],   # branch exits; the main exit is implicit
     "preprocess": {"name": "imagenet"},        # or {"mean": [...], "std": [...]}
     "weights": "weights.safetensors", "card": "card.json", "description": "..."}

The architecture reference is code: ``torchvision:NAME`` builds ``torchvision.models.NAME(weights=None,
num_classes=K)``; ``module:function`` and ``file.py:function`` (a path relative to the folder) call the function
with ``arch_kwargs`` (and ``num_classes`` when it takes it). A builder returns an ``nn.Module`` (converted with
:func:`edgent.model.fx_chain.chain_from_model` and given the exits of the spec) or a ready
:class:`MultiExitChain` (used as is; its spec lists no exits). Loading a folder runs its builder: load only
folders you trust, as you would run their code. Weights are safetensors (no pickle).

The zoo (:mod:`edgent.model.zoo`) describes its entries with the same :class:`ModelSpec`, and
:func:`edgent.model.zoo.load_model_spec` resolves a zoo name or a folder to one.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from edgent.errors import ModelError
from edgent.model.chain import MultiExitChain

SPEC_FORMAT = "edgent-model"
SPEC_VERSION = 1
SPEC_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "card.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build a model and find its trained state.

    ``exits`` are branch exits as :func:`chain_from_model` takes them; ``preprocess`` is the name of a known
    preprocessing (``edgent.model.preprocess``) or ``{"mean": [...], "std": [...]}``; ``weights`` and ``card``
    are absolute paths (None: none committed); ``folder`` is where the spec was read from (None for the zoo's
    built-in entries); ``builder`` is a Python callable for entries defined in code (the zoo's), used instead
    of ``arch`` when set.
    """

    name: str
    arch: str
    num_classes: int
    input_shape: tuple[int, ...]
    exits: tuple[dict[str, Any], ...] = ()
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    preprocess: dict[str, Any] = field(default_factory=lambda: {"name": "imagenet"})
    weights: Path | None = None
    card: Path | None = None
    description: str = ""
    folder: Path | None = None
    builder: Callable[[], MultiExitChain] | None = field(default=None, compare=False, repr=False)

    # ------------------------------------------------------------------ building
    def build(self) -> MultiExitChain:
        """The chain with freshly initialised weights, in eval mode."""
        if self.builder is not None:
            chain = self.builder()
        else:
            fn = resolve_arch(self.arch, self.folder)
            chain = call_builder(fn, self.arch, self.num_classes, self.arch_kwargs)
        if isinstance(chain, MultiExitChain):
            if self.exits:
                raise ModelError(f"model {self.name!r}: {self.arch} builds a multi-exit chain itself; remove "
                                 "'exits' from its model.json")
            chain.name = self.name
        else:
            from torch import nn

            from edgent.model.fx_chain import chain_from_model

            if not isinstance(chain, nn.Module):
                raise ModelError(f"{self.arch} returned {type(chain).__name__}, not a torch.nn.Module; point "
                                 "--arch at a function that builds the model")
            chain = chain_from_model(chain, self.input_shape, self.name, self.num_classes, list(self.exits))
        if tuple(chain.input_shape) != tuple(self.input_shape) or chain.num_classes != self.num_classes:
            raise ModelError(f"model {self.name!r}: the builder made a chain for input {chain.input_shape} and "
                             f"{chain.num_classes} classes, model.json says {self.input_shape} and "
                             f"{self.num_classes}; fix model.json")
        register_model_preprocess(self)
        return chain.eval()

    @property
    def preprocess_name(self) -> str:
        """The name the runtime uses for this model's preprocessing (registered when the model is built)."""
        if "name" in self.preprocess:
            return str(self.preprocess["name"])
        return f"{self.name}:normalize"

    def to_json(self) -> dict[str, Any]:
        """The ``model.json`` form (paths relative to the folder)."""
        def rel(p: Path | None) -> str | None:
            if p is None:
                return None
            if self.folder is not None:
                try:
                    return str(Path(p).resolve().relative_to(self.folder.resolve()))
                except ValueError:
                    pass
            return str(p)

        return {"format": SPEC_FORMAT, "version": SPEC_VERSION, "name": self.name, "arch": self.arch,
                "arch_kwargs": dict(self.arch_kwargs), "num_classes": self.num_classes,
                "input_shape": list(self.input_shape), "exits": [dict(e) for e in self.exits],
                "preprocess": dict(self.preprocess), "weights": rel(self.weights), "card": rel(self.card),
                "description": self.description}


def check_name(name: str) -> str:
    """A model name: letters, digits and ``_.+-``, at most 64 characters (it names files and wire requests)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ModelError(f"model name {name!r} must be 1-64 letters, digits or _.+- (starting with a letter or "
                         "digit); pass --name NAME")
    return name


def resolve_arch(arch: str, folder: Path | None = None) -> Callable[..., Any]:
    """The builder function an architecture reference names (see the module docstring)."""
    if not isinstance(arch, str) or ":" not in arch:
        raise ModelError(f"architecture reference {arch!r} must be torchvision:NAME, package.module:function or "
                         "path/to/file.py:function")
    where, fn_name = arch.rsplit(":", 1)
    if where == "torchvision":
        import torchvision

        fn = getattr(torchvision.models, fn_name, None)
        if fn is None or not callable(fn) or fn_name.startswith("_"):
            known = ", ".join(sorted(torchvision.models.list_models(module=torchvision.models))[:12])
            raise ModelError(f"torchvision has no model {fn_name!r}; e.g. {known}, ... "
                             "(torchvision.models.list_models())")
        return fn
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_absolute() and folder is not None and (folder / path).is_file():
            path = folder / path
        if not path.is_file():
            raise ModelError(f"architecture file {where} does not exist (paths in model.json are relative to the "
                             "model folder)")
        mod_name = "edgent_user_arch_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise ModelError(f"cannot import {path} as Python")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # user code: any error
            raise ModelError(f"importing {path} failed ({type(exc).__name__}: {exc})") from exc
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise ModelError(f"cannot import {where!r} for --arch {arch} ({exc}); install it or put it on "
                             "PYTHONPATH, or give a file: path/to/file.py:function") from exc
    fn = getattr(module, fn_name, None)
    if fn is None or not callable(fn):
        raise ModelError(f"{where} has no function {fn_name!r} (--arch {arch})")
    return fn


def call_builder(fn: Callable[..., Any], arch: str, num_classes: int, kwargs: dict[str, Any]) -> Any:
    """Call a builder with ``kwargs`` and ``num_classes`` when it accepts it (torchvision's always do)."""
    kw = dict(kwargs)
    try:
        params = inspect.signature(fn).parameters
        takes_kw = any(p.kind == p.VAR_KEYWORD for p in params.values())
        if "num_classes" not in kw and ("num_classes" in params or takes_kw):
            kw["num_classes"] = num_classes
        if arch.startswith("torchvision:"):
            kw.setdefault("weights", None)
    except (TypeError, ValueError):
        pass
    try:
        return fn(**kw)
    except Exception as exc:  # user code: any error
        raise ModelError(f"building {arch} with {kw} failed ({type(exc).__name__}: {exc})") from exc


def register_model_preprocess(spec: ModelSpec) -> None:
    """Make the spec's preprocessing known by name to this process (a named one is already known; a mean/std
    one is registered as ``<name>:normalize``) and record it as the model's default."""
    from edgent.model.preprocess import register_preprocess, set_model_preprocess

    if "name" not in spec.preprocess:
        try:
            mean = tuple(float(v) for v in spec.preprocess["mean"])
            std = tuple(float(v) for v in spec.preprocess["std"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model {spec.name!r}: preprocess must be {{'name': N}} or {{'mean': [...], "
                             f"'std': [...]}}, got {spec.preprocess!r}") from exc
        if len(mean) != spec.input_shape[0] or len(std) != spec.input_shape[0] or min(std) <= 0:
            raise ModelError(f"model {spec.name!r}: preprocess mean/std need {spec.input_shape[0]} values each "
                             "(std > 0)")
        register_preprocess(spec.preprocess_name, mean, std)
    set_model_preprocess(spec.name, spec.preprocess_name)


# ---------------------------------------------------------------------------------------------- folders
def is_model_folder(ref: str | Path) -> bool:
    """Whether ``ref`` is a model folder or a ``model.json`` file."""
    p = Path(ref)
    return (p.is_dir() and (p / SPEC_FILE).is_file()) or (p.is_file() and p.suffix == ".json")


def read_model_folder(ref: str | Path) -> ModelSpec:
    """The :class:`ModelSpec` of a model folder (or of its ``model.json``), with clear errors."""
    p = Path(ref)
    path = p / SPEC_FILE if p.is_dir() else p
    if not path.is_file():
        raise ModelError(f"{ref} is not a model folder (no {SPEC_FILE}); make one with `edgent convert --arch REF "
                         "--num-classes K --out DIR`")
    folder = path.parent
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} is not readable JSON ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("format") != SPEC_FORMAT:
        raise ModelError(f"{path} is not an edgent model spec (format {raw.get('format') if isinstance(raw, dict) else None!r}, "
                         f"expected {SPEC_FORMAT!r})")
    try:
        def opt_path(key: str) -> Path | None:
            v = raw.get(key)
            return None if not v else (folder / v if not Path(v).is_absolute() else Path(v))

        spec = ModelSpec(
            name=check_name(str(raw["name"])), arch=str(raw["arch"]), num_classes=int(raw["num_classes"]),
            input_shape=tuple(int(d) for d in raw["input_shape"]),
            exits=tuple(dict(e) for e in raw.get("exits") or ()), arch_kwargs=dict(raw.get("arch_kwargs") or {}),
            preprocess=dict(raw.get("preprocess") or {"name": "imagenet"}), weights=opt_path("weights"),
            card=opt_path("card"), description=str(raw.get("description", "")), folder=folder)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ModelError):
            raise
        raise ModelError(f"{path} is malformed ({type(exc).__name__}: {exc}); it needs name, arch, num_classes, "
                         "input_shape") from exc
    if spec.num_classes < 1 or len(spec.input_shape) < 1 or min(spec.input_shape) < 1:
        raise ModelError(f"{path}: num_classes and input_shape must be positive")
    return spec


def write_model_folder(spec: ModelSpec, folder: str | Path) -> Path:
    """Write ``spec`` as ``folder/model.json`` (paths relative to the folder); returns the file."""
    from edgent.jsonio import write_json_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = replace(spec, folder=folder)
    path = folder / SPEC_FILE
    write_json_file(path, spec.to_json())
    return path


def weights_digest(chain: MultiExitChain) -> str:
    """A short hash of the chain's parameters and buffers (names, shapes and values): keys caches of exports."""
    h = hashlib.sha256()
    for k, v in sorted(chain.state_dict().items()):
        t = v.detach().contiguous().cpu()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]
