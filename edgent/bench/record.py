"""Writing benchmark results as JSON with the details of the machine that measured them."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS_DIR = Path("benchmarks") / "results"


def tree_commit(src: str | Path | None = None, dirty: bool = True) -> str | None:
    """The short commit checked out at the source tree ``src`` (default: the working directory's), None outside
    git; with ``dirty``, ``+dirty`` appended when its tracked files differ from it."""
    where = [] if src is None else ["-C", str(src)]
    try:
        rev = subprocess.run(["git", *where, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        if rev.returncode:
            return None
        changed = dirty and subprocess.run(["git", *where, "status", "--porcelain", "--untracked-files=no"],
                                           capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev.stdout.strip() + ("+dirty" if changed else "")


def machine_details() -> dict[str, Any]:
    """What a reader needs to judge a timing: CPU model and count, OS, Python and torch versions, threads."""
    import torch

    from edgent.profile.cpuidle import current_state

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = tree_commit(dirty=False) or ""
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY") or "(torch's default)",
        "cpu_idle": current_state().describe(),
        "is_root": hasattr(os, "geteuid") and os.geteuid() == 0,
        "git_commit": commit,
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_result(name: str, result: dict[str, Any], out_dir: str | Path | None = None) -> Path:
    """Write ``result`` plus machine details to ``<out_dir>/<name>.json`` and return the path."""
    out = Path(out_dir) if out_dir is not None else RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine_details(), **result}, indent=1) + "\n")
    return path


@dataclass(frozen=True)
class BenchOptions:
    """The options every ``edgent bench NAME`` takes: where results go, whether to print them as JSON, and a
    quick (smaller, smoke-test) run."""

    out_dir: Path = RESULTS_DIR
    json: bool = False
    quick: bool = False


def add_common_options(p: argparse.ArgumentParser, quick_help: str = "a smaller, faster run (a smoke test)") -> None:
    """Add ``--out-dir``, ``--json`` and ``--quick`` to a benchmark's parser (every benchmark has all three)."""
    p.add_argument("--out-dir", default=None, help=f"results folder (default {RESULTS_DIR})")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    p.add_argument("--quick", action="store_true", help=quick_help)


def common_options(args: argparse.Namespace) -> BenchOptions:
    """The common options of a parsed command line, as a typed object (the CLI layer calls this)."""
    return BenchOptions(out_dir=Path(args.out_dir) if args.out_dir else RESULTS_DIR, json=bool(args.json),
                        quick=bool(args.quick))


def emit(result: dict[str, Any], path: Path, common: BenchOptions, print_table: Any) -> None:
    """Print a written result: the JSON with ``--json``, else ``print_table(result)``; then where it went."""
    if common.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        print_table(result)
        print(f"wrote {path}")
