"""The ``edgent`` command: one sub-command per stage, each defined in its own module."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

# Before torch loads its OpenMP runtime: worker threads that sleep at once instead of spinning first. Edgent's
# work is single requests after idle spells, which passive waiting makes faster and steadier, at a price on
# work run back to back (`edgent bench idle` under both policies: benchmarks/results/idle.json and
# idle-omp-default/, figures in docs/latency.md). Set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import edgent.cli  # noqa: E402
from edgent.errors import EdgentError  # noqa: E402


def command_modules() -> list[str]:
    """Sub-command modules: every ``edgent/cli/*_cmds.py``; each has ``register(subparsers)`` that adds its
    parsers with ``func`` set, so that a stage adds its commands without editing this file."""
    return sorted(f"edgent.cli.{m.name}" for m in pkgutil.iter_modules(edgent.cli.__path__)
                  if m.name.endswith("_cmds"))


class OneLineParser(argparse.ArgumentParser):
    """A parser whose errors are one line on stderr (the problem, the option and the fix; ``--help`` for the rest)
    and exit code 2. Sub-command parsers are of the same class."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="edgent",
        description="Device-edge co-inference: DNN partitioning and right-sizing (Edgent).",
    )
    parser.add_argument("--allow-cpu-sleep", action="store_true",
                        help="let idle CPUs sleep (by default, as root, edgent keeps them awake while it runs, "
                             "since work after an idle spell can run slower and less steadily when they sleep: "
                             "edgent bench idle; edgent.profile.cpuidle)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in command_modules():
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from edgent.profile.cpuidle import cpus_awake

    try:
        # a command that sets ``manages_cpu_idle`` holds (or compares) the CPUs' state itself
        with cpus_awake(not args.allow_cpu_sleep and not getattr(args, "manages_cpu_idle", False)):
            return int(args.func(args) or 0)
    except EdgentError as exc:
        print(f"edgent {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or socket the user named: say which and why, without a traceback
        print(f"edgent {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgent {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
