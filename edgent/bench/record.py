"""Writing benchmark results as JSON with the details of the machine that measured them."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

RESULTS_DIR = Path("benchmarks") / "results"


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
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
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
