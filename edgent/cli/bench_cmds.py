"""``edgent bench NAME``: the benchmarks, one module each in :mod:`edgent.bench`."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import edgent.bench


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark and write its results under benchmarks/results/")
    bench_sub = p.add_subparsers(dest="bench", metavar="NAME")
    bench_sub.required = True
    for m in sorted(pkgutil.iter_modules(edgent.bench.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"edgent.bench.{m.name}")
        if hasattr(module, "register"):
            module.register(bench_sub)
