"""Profiling on this host: unit timings of a model, the synthetic-layer sweep, and the weak-device emulation.

Public API: :func:`load_profile` / :class:`ModelProfile` (measured per-unit ms by (exit, unit index)),
:func:`profile_model`, :func:`edgent.profile.sweep.run_sweep`, and in :mod:`edgent.profile.throttle`
:func:`cpu_quota`, :class:`QuotaCgroup`, :class:`Slowdown`, :class:`DeviceEmulation`, :func:`role_emulation`.
"""

from edgent.profile.profiler import ModelProfile, load_profile, profile_model, save_profile
from edgent.profile.throttle import DeviceEmulation, QuotaCgroup, Slowdown, cpu_quota, role_emulation

__all__ = ["DeviceEmulation", "ModelProfile", "QuotaCgroup", "Slowdown", "cpu_quota", "load_profile",
           "profile_model", "role_emulation", "save_profile"]
