"""Reading and writing edgent's JSON files (profiles, sweeps, predictors, tables, maps) with clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from edgent.errors import DataError


def read_json_file(path: str | Path, what: str, how_to_make: str) -> Any:
    """Parse the JSON file ``path``; a missing or unparsable file is a :class:`DataError` naming ``what`` it
    should be and ``how_to_make`` one."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise DataError(f"{what} {path} does not exist; {how_to_make}") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"{what} {path} is not valid JSON: {exc}") from exc


def finite_or_none(doc: Any) -> Any:
    """``doc`` with every NaN or infinite float (in dicts, lists and tuples, at any depth) replaced by None:
    JSON has no such numbers, and Python's json module would write them as the invalid tokens NaN/Infinity."""
    if isinstance(doc, float):
        return doc if math.isfinite(doc) else None
    if isinstance(doc, dict):
        return {k: finite_or_none(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [finite_or_none(v) for v in doc]
    return doc


def dumps_finite(doc: Any, **kw: Any) -> str:
    """``json.dumps`` of :func:`finite_or_none` of ``doc``; never writes NaN or Infinity."""
    return json.dumps(finite_or_none(doc), allow_nan=False, **kw)


def write_json_file(path: str | Path, doc: Any) -> Path:
    """Write ``doc`` as indented JSON to ``path`` (creating its folder) and return the path; NaN and infinite
    numbers are written as null."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_finite(doc, indent=1) + "\n")
    return path
