"""Shared fixtures and helpers of the test suite: a tiny synthetic CIFAR-like ImageFolder and where the real data
lives, the root check for tests that need root, plot and network-namespace checks, CPU-time busy work, a fake clock
for timing code, and the small hand-made latency tables and fake predictors several test files use.

Test modules import the plain helpers with ``from .conftest import ...`` (``tests`` is a package); fixtures need no
import. Imports of edgent modules other than the data loader stay inside the helpers, so that one broken module
does not stop every test from being collected."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from edgent.data.cifar10 import CLASSES

REPO = Path(__file__).resolve().parents[1]
SHARED_ARCHIVE = REPO.parent / "shared" / "datasets" / "cifar10-jpeg.tar.xz"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep each test session's data cache apart from the user's, except for the real CIFAR-10 decode."""
    if "EDGENT_CACHE" not in os.environ:
        monkeypatch.setenv("EDGENT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def write_image_folder(root: Path, per_class: int = 3, seed: int = 0) -> Path:
    """Write a CIFAR-10 shaped ImageFolder (train/ and test/) of random 32x32 JPEGs; return its root."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for label, name in enumerate(CLASSES):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                arr = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
                arr[..., label % 3] = 200  # a learnable hint
                Image.fromarray(arr).save(d / f"{i:04d}.jpg")
    return root


@pytest.fixture
def tiny_cifar(tmp_path) -> Path:
    return write_image_folder(tmp_path / "tiny-cifar")


def real_cifar_available() -> bool:
    return SHARED_ARCHIVE.is_file() or bool(os.environ.get("EDGENT_DATA"))


# ---------------------------------------------------------------------------------------------- root
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
_skip_without_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (network namespaces, tc, cgroups); CI runs "
                                        "as root")


def needs_root(test):
    """Mark a test as needing root (marker ``root``) and skip it without root."""
    return pytest.mark.root(_skip_without_root(test))


def netns_names() -> str:
    """``ip netns list``: the network namespaces that exist now."""
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


# ---------------------------------------------------------------------------------------------- outputs
def check_png(path: Path) -> None:
    """``path`` is a real plot: a PNG of some size whose pixels are not all alike."""
    import matplotlib.image as mpimg

    assert path.is_file() and path.stat().st_size > 5000, path
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400
    assert float(np.std(img[..., :3])) > 0.01, "the plot is a blank image"


# ---------------------------------------------------------------------------------------------- time
def busy(seconds: float) -> None:
    """Work for ``seconds`` of this thread's CPU time: the same work however throttled or loaded the host is."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class FakeClock:
    """A stand-in for the ``time`` module of the code under test (``monkeypatch.setattr(module, "time", clock)``),
    so that timing code is tested on its arithmetic, not on how busy the shared machine is.

    The wall clock (``perf_counter``, ``monotonic``) moves only when the test says (:meth:`work`, :meth:`wait`) or
    the code sleeps, plus ``tick_s`` per read so that spin loops end; the thread's CPU clock (``thread_time``,
    ``process_time``) moves only with :meth:`work`. ``slept`` lists the sleeps asked for."""

    def __init__(self, tick_s: float = 1e-6) -> None:
        self.wall_s = 1000.0
        self.cpu_s = 0.0
        self.tick_s = tick_s
        self.slept: list[float] = []

    def perf_counter(self) -> float:
        self.wall_s += self.tick_s
        return self.wall_s

    monotonic = perf_counter

    def thread_time(self) -> float:
        return self.cpu_s

    process_time = thread_time

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.wall_s += max(0.0, seconds)

    def work(self, seconds: float) -> None:
        """The thread computes for ``seconds``: both clocks move."""
        self.wall_s += seconds
        self.cpu_s += seconds

    def wait(self, seconds: float) -> None:
        """The thread waits (or is preempted) for ``seconds``: only the wall clock moves."""
        self.wall_s += seconds

    def __getattr__(self, name: str):
        return getattr(time, name)


# ---------------------------------------------------------------------------------------------- latency tables
def toy_table():
    """Two exits: a cheap shallow one and an accurate deep one; the input is small, the middle tensor big."""
    from edgent.plan.table import ExitCosts, LatencyTable

    e1 = ExitCosts(1, 0.70, (10.0, 10.0), (0.5, 0.5), (3000, 40000, 0), 40)
    e2 = ExitCosts(2, 0.80, (10.0, 60.0, 60.0), (0.5, 1.0, 1.0), (3000, 40000, 2000, 0), 40)
    return LatencyTable("toy", (e1, e2))


def hand_table(main_device_ms=(100.0, 100.0, 100.0)):
    """Two exits at 80 kbit/s (10 bytes per ms), no result bytes. Totals by partition point:
    exit 1 (acc 0.6): p0 200+2=202, p1 100+50+1=151, p2 120 (device only);
    exit 2 (acc 0.8): p0 200+3=203, p1 100+50+2=152, p2 200+10+1=211, p3 300 (device only)."""
    from edgent.plan.table import ExitCosts, LatencyTable

    return LatencyTable("hand", (
        ExitCosts(1, 0.6, (100.0, 20.0), (1.0, 1.0), (2000, 500, 0), 0),
        ExitCosts(2, 0.8, main_device_ms, (1.0, 1.0, 1.0), (2000, 500, 100, 0), 0),
    ))


class FlopsPredictor:
    """A fake latency model: ``ms_per_mflop`` per million FLOPs plus a constant per unit."""

    def __init__(self, ms_per_mflop: float, const_ms: float) -> None:
        self.ms_per_mflop, self.const_ms = ms_per_mflop, const_ms
        self.seen: list[str] = []

    def predict_unit_ms(self, unit) -> float:
        self.seen.append(unit.name)
        return unit.flops / 1e6 * self.ms_per_mflop + self.const_ms


# ---------------------------------------------------------------------------------------------- models
@pytest.fixture(scope="module")
def chain():
    """alexnet-cifar10 with seeded random weights (the runtime and testbed tests serve and call it)."""
    from edgent.model.zoo import load_for_inference

    return load_for_inference("alexnet-cifar10", random_weights=True, seed=0)
