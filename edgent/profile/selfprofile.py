"""The device profiles itself once: a measured profile of one model on this machine, cached by model and machine.

A real device prices its own compute by timing itself: :func:`device_profile` times every unit of the model on
this machine as it is (:func:`edgent.profile.throttle.real_emulation`: torch's threads, the wall clock, nothing
emulated) with :func:`edgent.profile.profiler.profile_model`, the same measurement as ``edgent profile --model M
--role device``, and keeps the result in ``$EDGENT_CACHE/device-profiles/`` (default
``~/.cache/edgent/device-profiles/``) under a name keyed by the model (its name and its units) and the machine
(:func:`edgent.profile.machine.machine_fingerprint`: CPU, cores, torch threads, runtime, torch version). The next
call on the same machine for the same model finds it; another machine, thread count or model profiles anew.

The file is an ordinary measured profile (format ``edgent-profile``): the latency tables take it as the device's
latency model (:func:`edgent.plan.sources.role_latency_model`), with its own timing of the input preprocessing.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgent.profile.machine import MachineFingerprint, machine_fingerprint
from edgent.profile.throttle import DeviceEmulation, real_emulation


def profiles_dir() -> Path:
    """Where the device's own profiles are cached (``$EDGENT_CACHE/device-profiles``)."""
    from edgent.data.cifar10 import cache_dir

    return cache_dir() / "device-profiles"


def model_signature(chain: Any) -> str:
    """A short hash of what a profile of ``chain`` times: its name, its exits and every unit's name and shapes
    (not its weights: timing does not depend on their values)."""
    from edgent.model.describe import describe_chain

    parts = [chain.name]
    for ep in chain.exit_points:
        parts.append([ep.exit, ep.after_trunk_units, ep.num_units,
                      [[u.name, list(u.input_shape), list(u.output_shape)] for u in describe_chain(chain, ep.exit)]])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12]


def cached_profile_path(chain: Any, fingerprint: MachineFingerprint, quick: bool = False) -> Path:
    """The cache file of ``chain``'s device profile on the machine ``fingerprint`` (a quick profile apart)."""
    return profiles_dir() / (f"{chain.name}-{model_signature(chain)}-{fingerprint.runtime}-{fingerprint.key()}"
                             f"{'-quick' if quick else ''}.json")


@dataclass(frozen=True)
class DeviceProfile:
    """A device profile found in the cache or measured now.

    Attributes:
        path: the profile file (the device's latency model; ``--device-profile`` takes the same kind of file).
        cached: whether it was found in the cache (False: measured now).
        seconds: how long the measurement took (when measured now: now; when cached: then).
        timed_on: how the device was timed (``"wall clock"``, or ``"EMULATED: ..."``).
        fingerprint: the machine it belongs to.
    """

    path: Path
    cached: bool
    seconds: float
    timed_on: str
    fingerprint: MachineFingerprint

    def describe(self) -> str:
        how = (f"cached {self.path}" if self.cached else f"measured now in {self.seconds:.1f} s, cached in "
               f"{self.path}")
        return f"device latency model: this machine's own profile (timing: {self.timed_on}; {how})"


def estimate_profile_s(chain: Any, emulation: DeviceEmulation, quick: bool = False) -> float:
    """About how long (s) :func:`device_profile` will take here: one forward of every exit timed now, times the
    forwards the profile runs (:func:`edgent.profile.profiler.time_units_in_place`)."""
    import torch

    from edgent.profile.profiler import forwards_per_exit

    x = torch.zeros(1, *chain.input_shape)
    with emulation.real_part(), torch.no_grad():
        for ep in chain.exit_points:  # warm-up
            chain.forward(x, ep.exit)
        t0 = time.perf_counter()
        for ep in chain.exit_points:
            chain.forward(x, ep.exit)
        one_round_s = time.perf_counter() - t0
    return one_round_s * (forwards_per_exit(quick) + 1) * emulation.slowdown


def device_profile(chain: Any, quick: bool = False, threads: int | None = None, refresh: bool = False,
                   progress: Callable[[str], None] | None = None) -> DeviceProfile:
    """This machine's own profile of ``chain`` as the device (see the module docstring): from the cache, or
    measured now on the wall clock with ``threads`` torch threads (default: torch's now) and cached. ``refresh``
    measures again even when cached; ``progress`` hears what is done (with the expected duration first)."""
    from edgent.jsonio import write_json_file
    from edgent.profile.profiler import profile_model

    say = progress or (lambda s: None)
    emulation = real_emulation(threads)
    fp = machine_fingerprint(emulation.threads, "torch")
    path = cached_profile_path(chain, fp, quick)
    if not refresh and path.is_file():
        try:
            doc = json.loads(path.read_text())
            if doc.get("format") == "edgent-profile" and doc.get("model") == chain.name:
                return DeviceProfile(path, True, float(doc.get("seconds", 0.0)), str(doc.get("timed_on")), fp)
        except (OSError, ValueError):
            pass  # a broken cache file: measure again
    say(f"profiling this device once for {chain.name} on the wall clock ({fp.describe()}): about "
        f"{estimate_profile_s(chain, emulation, quick):.0f} s ...")
    doc = profile_model(chain, "device", emulation, quick=quick)
    write_json_file(path, doc)
    return DeviceProfile(path, False, float(doc["seconds"]), str(doc["timed_on"]), fp)
