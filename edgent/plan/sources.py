"""Where the planner's inputs come from: the fitted latency models and the model card (through
:func:`edgent.model.card.resolve_accuracies`).

These glue the planner to the other stages for the command line and the benchmarks; the planner itself only
needs a :class:`~edgent.plan.table.LatencyTable`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from edgent.errors import ConfigError, EdgentError
from edgent.plan.table import LatencyTable, build_latency_table


def load_unit_predictor(role: str, path: str | Path | None) -> Any:
    """The latency model of ``role`` ("device" or "edge"): loaded from ``path``, or the fitted default."""
    try:
        import edgent.latency as latency
    except ImportError as exc:
        raise ConfigError("no latency models are available (the package edgent.latency is missing); "
                          "plan from a saved table with --table F instead") from exc
    try:
        if path is not None:
            if not Path(path).is_file():
                raise ConfigError(f"--{role}-profile {path} does not exist; give a fitted predictor or a measured "
                                  f"profile (edgent profile --model M --role {role}), or drop the option")
            return latency.load_predictor(path)
        return latency.default_predictor(role)
    except EdgentError:
        raise
    except (AttributeError, FileNotFoundError, OSError) as exc:
        raise ConfigError(f"cannot load the {role} latency model ({exc}); fit one with the latency tools or pass "
                          f"--{role}-profile F") from exc


def model_latency_path(model: str | Path, role: str, runtime: str = "torch") -> Path | None:
    """The measured profile a model folder keeps for ``role`` under ``runtime`` (``FOLDER/latency/ROLE-RUNTIME.json``,
    written by ``edgent profile --model FOLDER --role ROLE [--runtime onnx]``), or None."""
    from edgent.model.zoo import WEIGHTS_DIR, load_model_spec

    spec = load_model_spec(model)
    if spec.folder is None or spec.folder == WEIGHTS_DIR:
        return None
    path = spec.folder / "latency" / f"{role}-{runtime}.json"
    return path if path.is_file() else None


def role_latency_model(role: str, model: str | Path, path: str | Path | None = None, runtime: str = "torch") -> Any:
    """The latency model of ``role`` for ``model`` run by ``runtime`` ("torch" or "onnx"; the device's): the file
    ``path`` (a fitted predictor, or a measured profile of this model), else the model folder's own measured
    profile for that runtime, else the fitted default (eager PyTorch only)."""
    from edgent.latency.measured import is_model_profile, load_measured
    from edgent.model.zoo import model_name

    if path is None:
        path = model_latency_path(model, role, runtime)
        if path is None and runtime != "torch":
            raise ConfigError(f"no {role} latency model of {model_name(model)} under {runtime}: measure one with "
                              f"`edgent profile --model {model} --role {role} --runtime {runtime}`, or pass "
                              f"--{role}-profile F")
    if path is not None and Path(path).is_file() and is_model_profile(path):
        measured = load_measured(path, _default_or_none(role))
        if measured.model != model_name(model):
            raise ConfigError(f"--{role}-profile {path} is a profile of {measured.model!r}, not of "
                              f"{model_name(model)!r}; profile this model with `edgent profile --model {model} "
                              f"--role {role}`")
        if measured.role != role:
            raise ConfigError(f"--{role}-profile {path} was measured as the {measured.role}, not the {role}")
        measured_runtime = measured.profile.doc.get("runtime", "torch")
        if measured_runtime != runtime:
            raise ConfigError(f"--{role}-profile {path} was measured under {measured_runtime}, but {runtime} will run "
                              f"the {role} part; profile it with `edgent profile --model {model} --role {role} "
                              f"--runtime {runtime}`")
        return measured
    return load_unit_predictor(role, path)


def _default_or_none(role: str) -> Any:
    try:
        return load_unit_predictor(role, None)
    except EdgentError:
        return None


def table_for_model(model: str, *, device_profile: str | Path | None = None,
                    edge_profile: str | Path | None = None, codec: str = "float32",
                    accuracies: Sequence[float] | None = None, card: str | Path | None = None,
                    input_bytes: int | None = None, codecs: str | Sequence[str] | None = None,
                    device_runtime: str = "torch") -> LatencyTable:
    """Build the predicted latency table of a model (zoo name or folder) from its accuracies and the device and
    edge latency models (:func:`role_latency_model`; the device's of ``device_runtime``); with ``codecs``, add
    those codec variants (:func:`with_codecs`)."""
    from edgent.model.card import resolve_accuracies
    from edgent.model.zoo import load_model

    chain = load_model(model, pretrained=False)
    accs = resolve_accuracies(model, accuracies, card, num_exits=chain.num_exits).values
    device = role_latency_model("device", model, device_profile, device_runtime)
    edge = role_latency_model("edge", model, edge_profile)
    table = build_latency_table(chain, accs, device, edge, codec, input_bytes=input_bytes)
    return table if not codecs else with_codecs(table, codecs, card=card, model=model)


#: sample inputs the codec sizes and times are measured on (seeded test images)
CODEC_SAMPLE_IMAGES = 48
#: how codec times are taken (part of the cache key: a change of method must not reuse older measurements)
CODEC_TIMING = "one call after idle on the role's clock"


def with_codecs(table: LatencyTable, codecs: str | Sequence[str] = "card", *, card: str | Path | None = None,
                images: Any = None, model: str | None = None) -> LatencyTable:
    """``table`` with codec variants (:mod:`edgent.plan.codecs`): ``codecs`` is a list of names, ``"card"``
    (every codec whose accuracy the model card holds, see :func:`edgent.model.card.codec_accuracies`) or
    ``"none"``. Sizes and times are measured now on ``images`` (default: :data:`CODEC_SAMPLE_IMAGES` seeded
    CIFAR-10 test images, ``edgent.data.request_images``); encodes are timed as the device role runs them
    (slowdown included) and decodes as the edge does, on one of its threads
    (:func:`edgent.plan.codecs.time_codec_calls`). The measured variants are kept in
    ``~/.cache/edgent/codec-variants`` (``$EDGENT_CACHE``), keyed by everything they depend on. ``model`` is the
    model's reference when the table's name alone does not find it (a model folder's path)."""
    import dataclasses

    from edgent.model.card import codec_accuracies, codec_accuracy_of
    from edgent.model.zoo import load_for_inference
    from edgent.plan.codecs import DEFAULT_CODECS, measure_variants

    if codecs == "none":
        return table
    ref = model or table.model
    measured = codec_accuracies(ref, card)
    if codecs == "card":
        names = [c for c in DEFAULT_CODECS if codec_accuracy_of(measured, c) is not None]
        names += [c for c in measured if c not in names]
    else:
        names = [codecs] if isinstance(codecs, str) else list(codecs)
        missing = [c for c in names if codec_accuracy_of(measured, c) is None]
        if missing:
            raise ConfigError(f"no measured accuracy for codec(s) {', '.join(missing)} of {table.model!r}; measure "
                              f"them with `edgent eval --model {table.model} --codecs {','.join(missing)} "
                              "--update-card CARD`")
    names = [c for c in names if c not in table.codecs]
    if not names:  # nothing measured for this model beyond what the table has
        return table
    accs = {c: codec_accuracy_of(measured, c) for c in names}
    if images is None:
        from edgent.data.cifar10 import request_images

        images = request_images(CODEC_SAMPLE_IMAGES, seed=1)[0]
    from edgent.profile.throttle import role_emulation

    # the edge's decodes on one of its threads: on a shared 2-core host the second thread's wake-up after idle
    # spreads a decode's time more than the decode itself takes (docs/planner.md); one thread is the slower bound
    device, edge = role_emulation("device"), role_emulation("edge").with_real_part(threads=1)
    cache = _variants_cache_path(ref, names, accs, images, [device.to_json(), edge.to_json(), CODEC_TIMING])
    variants = _read_variants(cache)
    if variants is None:
        chain = load_for_inference(ref)
        variants = measure_variants(chain, names, accs, images, device=device, edge=edge)
        _write_variants(cache, variants)
    return dataclasses.replace(table, variants=table.variants + variants)


def _variants_cache_path(model: str, names: Sequence[str], accs: Any, images: Any, timing: Any) -> Path:
    """Where measured variants are kept between commands on this machine: keyed by everything they depend on
    (model and weights, codecs and their accuracies, the sample images, the roles and how they were timed)."""
    import hashlib
    import json

    import numpy as np

    from edgent.data.cifar10 import cache_dir

    from edgent.model.bottleneck import bottleneck_path
    from edgent.model.zoo import load_model_spec

    h = hashlib.sha256(json.dumps([model, list(names), {k: list(v) for k, v in accs.items()}, timing],
                                  sort_keys=True).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    for f in (load_model_spec(model).weights, bottleneck_path(model)):
        if f is not None and Path(f).is_file():
            st = Path(f).stat()
            h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    return cache_dir() / "codec-variants" / f"{model}-{h.hexdigest()[:24]}.json"


def _read_variants(path: Path) -> tuple | None:
    import json

    from edgent.plan.codecs import CodecVariant

    try:
        return tuple(CodecVariant.from_json(v) for v in json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_variants(path: Path, variants: tuple) -> None:
    from edgent.jsonio import write_json_file

    try:
        write_json_file(path, [v.to_json() for v in variants])
    except OSError:
        pass  # a cache only


@dataclass(frozen=True)
class TableSpec:
    """How the latency tables were obtained (recorded in the results)."""

    source: str
    detail: dict[str, Any]


def latency_tables(model: str, codecs: Sequence[str], source: str, accuracies: Sequence[float],
                   device_slowdown: float, repeats: int = 7) -> tuple[list[LatencyTable], TableSpec]:
    """One latency table per codec for ``model``.

    ``source``: ``predictor`` (:func:`role_latency_model`: a model folder's measured profiles, else the fitted
    latency models of :mod:`edgent.latency`),
    ``measure`` (per-unit times measured now on this CPU; the device is this CPU with its times multiplied by
    ``device_slowdown``, an emulated weak device), ``auto`` (predictor when available, else measure) or the path of
    a saved :class:`LatencyTable` JSON (its own codec only).
    """
    from edgent.model.zoo import load_model
    from edgent.plan.table import build_latency_table, table_from_measurements

    if source not in ("auto", "predictor", "measure"):
        import dataclasses

        t = LatencyTable.load(source)
        if len(t.exits) != len(accuracies):
            raise ConfigError(f"table {source} has {len(t.exits)} exits but {len(accuracies)} accuracies were given")
        t = dataclasses.replace(t, exits=tuple(dataclasses.replace(e, accuracy=float(a))
                                               for e, a in zip(t.exits, accuracies)))
        return [t], TableSpec("file", {"path": str(source)})
    chain = load_model(model, pretrained=False)
    if source in ("auto", "predictor"):
        try:
            dev, edge = role_latency_model("device", model), role_latency_model("edge", model)
            tables = [build_latency_table(chain, accuracies, dev, edge, c) for c in codecs]
            return tables, TableSpec("predictor", {"device": repr(dev)[:200], "edge": repr(edge)[:200]})
        except (ImportError, AttributeError, EdgentError, FileNotFoundError) as exc:
            if source == "predictor":
                raise ConfigError(f"the latency predictors are not available ({exc}); use --table-source measure")
    import torch

    from edgent.profile.profiler import measure_unit_ms

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        edge_ms, _ = measure_unit_ms(chain, repeats)
    finally:
        torch.set_num_threads(threads)
    dev_ms = [[v * device_slowdown for v in ex] for ex in edge_ms]
    tables = [table_from_measurements(chain, accuracies, dev_ms, edge_ms, c) for c in codecs]
    return tables, TableSpec("measure", {"edge": "this CPU, 1 torch thread, median of "
                                                  f"{repeats} runs per unit",
                                         "device": f"edge times x {device_slowdown} (emulated weak device)",
                                         "device_slowdown": device_slowdown})
