"""Reading and writing edgent's JSON files (profiles, sweeps, predictors, tables, maps) with clear errors."""

from __future__ import annotations

import json
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


def write_json_file(path: str | Path, doc: Any) -> Path:
    """Write ``doc`` as indented JSON to ``path`` (creating its folder) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path
