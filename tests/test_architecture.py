"""The package's shape (docs/architecture.md): the library never imports its leaves (benchmarks, the demo, the
command line), leaves do not import each other, modules form no import cycle, and no private name crosses a
package boundary. Read from the source with ``ast``, so a violation anywhere fails here, imported or not."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "edgent"
LEAVES = ("bench", "demo", "cli")
#: modules of edgent.bench that hold shared definitions, not a benchmark (no ``register``)
BENCH_SHARED = ("edgent.bench.record", "edgent.bench.experiments")


def _modules() -> dict[str, Path]:
    mods = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[tuple[str, str | None]]]:
    """module -> {(imported module, imported name or None)} for every edgent import, at any depth."""
    out: dict[str, set[tuple[str, str | None]]] = defaultdict(set)
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if mod.split(".")[0] != "edgent":
                    continue
                for alias in node.names:
                    sub = f"{mod}.{alias.name}"
                    out[name].add((sub, None) if sub in mods else (mod, alias.name))
            elif isinstance(node, ast.Import):
                out[name].update((a.name, None) for a in node.names if a.name.split(".")[0] == "edgent")
    return out


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


MODS = _modules()
IMPORTS = _imports(MODS)


def test_the_library_never_imports_benchmarks_demo_or_cli() -> None:
    bad = sorted(f"{m} imports {t}" for m, ts in IMPORTS.items() for t, _ in ts
                 if _stage(m) not in LEAVES and _stage(t) in LEAVES)
    assert not bad, "the library must not depend on its leaves:\n" + "\n".join(bad)


def test_leaves_do_not_import_each_other() -> None:
    bad = []
    for m, ts in IMPORTS.items():
        for t, _ in ts:
            if _stage(m) in ("bench", "demo") and _stage(t) in LEAVES and _stage(t) != _stage(m):
                bad.append(f"{m} imports {t}")
            # one benchmark never imports another (shared definitions excepted)
            if (_stage(m) == "bench" and _stage(t) == "bench" and not t.startswith(BENCH_SHARED)
                    and t.split(".")[:3] != m.split(".")[:3]):
                bad.append(f"{m} imports {t}")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycles() -> None:
    graph = {m: {t for t, _ in ts if t in MODS and t != m} for m, ts in IMPORTS.items()}
    # a package's __init__ re-exporting its own modules is not a cycle of ideas: drop parent -> child edges
    graph = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_no_private_names_cross_packages() -> None:
    bad = sorted(f"{m} imports {t}.{n}" for m, ts in IMPORTS.items() for t, n in ts
                 if n is not None and n.startswith("_") and _stage(t) != _stage(m))
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("stage", ["model", "data", "profile", "latency", "plan", "codec", "adapt", "runtime",
                                   "testbed"])
def test_each_library_stage_imports_only_stages_upstream(stage: str) -> None:
    """The data flows one way: a stage may import only the stages before it (and the shared helpers)."""
    order = ["errors", "jsonio", "data", "model", "codec", "profile", "latency", "plan", "adapt", "runtime",
             "testbed", "train", "report"]
    allowed = set(order[: order.index(stage)]) | {stage, "errors", "jsonio", ""}
    bad = sorted(f"{m} imports {t}" for m, ts in IMPORTS.items() if _stage(m) == stage for t, _ in ts
                 if _stage(t) not in allowed)
    assert not bad, "\n".join(bad)


def test_every_benchmark_takes_the_common_options() -> None:
    """``edgent bench NAME`` for every registered benchmark accepts ``--out-dir``, ``--json`` and ``--quick``."""
    import argparse

    from edgent.cli import bench_cmds

    parser = argparse.ArgumentParser()
    bench_cmds.register(parser.add_subparsers())
    bench = next(a for a in parser._subparsers._group_actions[0].choices["bench"]._actions  # noqa: SLF001
                 if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    assert len(bench.choices) >= 7
    for name, sub in bench.choices.items():
        flags = {f for a in sub._actions for f in a.option_strings}  # noqa: SLF001
        assert {"--out-dir", "--json", "--quick"} <= flags, f"bench {name} lacks {({'--out-dir', '--json', '--quick'} - flags)}"
