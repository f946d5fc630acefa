"""What identifies this machine for a device profile: the CPU, the cores, torch's threads, the runtime.

A profile timed on the wall clock is a fact about one machine running one model with one runtime and one thread
count; :func:`machine_fingerprint` names those, and a profile cached under its :meth:`MachineFingerprint.key` is
found again only by the same machine set up the same way (:mod:`edgent.profile.selfprofile`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class MachineFingerprint:
    """The facts a wall-clock device profile depends on.

    Attributes:
        cpu_model: the CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere).
        cores: logical CPUs of the machine (``os.cpu_count``).
        torch_threads: torch intra-op threads the device runs its work with.
        runtime: what runs the units (``torch`` or ``onnx``).
        torch_version: torch's version (kernels change between versions).
        machine: the architecture (``platform.machine``).
    """

    cpu_model: str
    cores: int
    torch_threads: int
    runtime: str
    torch_version: str
    machine: str

    def key(self) -> str:
        """A short stable hash of every field (part of the cache file's name)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> str:
        return (f"{self.cpu_model}, {self.cores} CPU(s), {self.torch_threads} torch thread(s), {self.runtime} "
                f"(torch {self.torch_version}, {self.machine})")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "key": self.key()}


def cpu_model_name() -> str:
    """The CPU's model name, as the OS reports it (``unknown`` when it does not)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_fingerprint(torch_threads: int | None = None, runtime: str = "torch") -> MachineFingerprint:
    """This machine's :class:`MachineFingerprint` for a device running ``torch_threads`` threads (default: as
    many as torch uses now) under ``runtime``."""
    import torch

    threads = torch.get_num_threads() if torch_threads is None else int(torch_threads)
    return MachineFingerprint(cpu_model=cpu_model_name(), cores=os.cpu_count() or 1, torch_threads=threads,
                              runtime=runtime, torch_version=torch.__version__.split("+")[0],
                              machine=platform.machine() or "unknown")
