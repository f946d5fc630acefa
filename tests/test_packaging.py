"""The package installs as a package: a wheel built from the repository carries the data its commands read at run
time, and once installed in a fresh virtual environment (nothing of the checkout on the path) ``edgent plan`` and
``edgent serve`` work."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO

# What `edgent plan` / `serve` / the zoo read from inside the package (edgent/latency/predictor.py FITTED_DIR,
# edgent/model/zoo.py WEIGHTS_DIR), and the PEP 561 marker pyproject.toml names.
REQUIRED_IN_WHEEL = [
    "edgent/py.typed",
    "edgent/latency/fitted/device.json",
    "edgent/latency/fitted/edge.json",
    "edgent/latency/fitted/device.paper.json",
    "edgent/latency/fitted/edge.paper.json",
    "edgent/model/weights/alexnet-cifar10.safetensors",
    "edgent/model/weights/alexnet-cifar10.card.json",
]


def _clean_env() -> dict[str, str]:
    """The environment for the installed commands: no PYTHONPATH, no virtualenv of the caller, no user site."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _build_wheel(dist: Path, tmp: Path) -> Path:
    """Build the wheel from a copy of the sources (pyproject.toml and edgent/), so that the build neither writes
    build/ or egg-info into the checkout nor picks up stale files a previous build left in build/lib."""
    src = tmp / "src"
    src.mkdir()
    shutil.copy2(REPO / "pyproject.toml", src / "pyproject.toml")
    shutil.copytree(REPO / "edgent", src / "edgent", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # --no-build-isolation: setuptools comes from this environment, so no network is needed
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(dist), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = sorted(dist.glob("edgent-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _fresh_venv(venv: Path, wheel: Path) -> Path:
    """A new virtual environment with only the wheel installed in it; its dependencies (torch, ...) come from this
    environment's site-packages through a .pth file written after the install. Lines of a .pth file only extend
    sys.path (the .pth files in the added folder, such as an editable install's finder, are not run), and the new
    venv's own site-packages comes first, so ``import edgent`` finds the installed wheel. Returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # installed by this environment's pip into the new venv before the .pth exists, so pip sees a bare venv
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                           "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    new_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True, env=_clean_env()).stdout.strip())
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (new_site / "_edgent_test_deps.pth").write_text("".join(f"{d}\n" for d in deps))
    return python


@pytest.mark.slow
def test_wheel_installs_and_plans_and_serves(tmp_path):
    wheel = _build_wheel(tmp_path / "dist", tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [n for n in REQUIRED_IN_WHEEL if n not in names]
    assert not missing, f"the wheel lacks {missing}"
    assert not any(n.startswith(("tests/", "benchmarks/", "docs/")) for n in names)

    venv = tmp_path / "venv"
    python = _fresh_venv(venv, wheel)
    edgent = venv / "bin" / "edgent"
    assert edgent.is_file(), "the wheel's console script was not installed"
    cwd = tmp_path / "elsewhere"  # outside the repository: nothing to find relative to the checkout
    cwd.mkdir()
    env = _clean_env()

    where = subprocess.run([str(python), "-c", "import edgent; print(edgent.__file__)"], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    imported = Path(where.stdout.strip()).resolve()
    assert imported.is_relative_to(venv.resolve()), f"edgent imported from {imported}, not the new venv"
    assert not imported.is_relative_to(REPO)

    plan = subprocess.run([str(edgent), "plan", "--model", "alexnet-cifar10", "--bandwidth", "400kbit",
                           "--deadline", "300ms", "--json"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    p = json.loads(plan.stdout)
    assert p["model"] == "alexnet-cifar10" and p["feasible"] is True
    assert 1 <= p["exit"] <= 5 and p["partition"] >= 0
    assert 0 < p["predicted_ms"] <= p["deadline_ms"] == 300.0
    assert 0 < p["accuracy"] <= 1

    ready = tmp_path / "ready"
    log = open(tmp_path / "serve.log", "w+")
    server = subprocess.Popen([str(edgent), "serve", "--port", "0", "--ready-file", str(ready)], cwd=cwd, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        give_up = time.monotonic() + 180  # a limit for a broken server, not a latency being tested
        while not ready.exists():
            assert server.poll() is None, f"edgent serve exited with {server.returncode}: {log.seek(0) or log.read()}"
            assert time.monotonic() < give_up, "edgent serve never became ready"
            time.sleep(0.2)
        port = int(ready.read_text())
        assert port > 0
        # one request through the served committed weights (random pixels: no data set needed)
        infer = subprocess.run([str(edgent), "infer", "--port", str(port), "--random-input", "--json"], cwd=cwd,
                               env=env, capture_output=True, text=True, timeout=300)
        assert infer.returncode == 0, infer.stdout + infer.stderr
        rec = json.loads(infer.stdout.strip().splitlines()[-1])
        assert rec["outcome"]["where"] == "edge", rec
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            rc = server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            raise
        log.close()
    assert rc == 0, (tmp_path / "serve.log").read_text()
