"""The ``edgent`` command: one sub-command per stage, each defined in its own module."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import edgent.cli
from edgent.errors import EdgentError


def command_modules() -> list[str]:
    """Sub-command modules: every ``edgent/cli/*_cmds.py``; each has ``register(subparsers)`` that adds its
    parsers with ``func`` set, so that a stage adds its commands without editing this file."""
    return sorted(f"edgent.cli.{m.name}" for m in pkgutil.iter_modules(edgent.cli.__path__)
                  if m.name.endswith("_cmds"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgent",
        description="Device-edge co-inference: DNN partitioning and right-sizing (Edgent).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in command_modules():
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EdgentError as exc:
        print(f"edgent {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgent {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
