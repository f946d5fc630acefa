"""Where the device's requests come from (``edgent run --source``): uint8 images of the model's input shape, with
their label when one is known.

Sources: ``testsplit`` (the CIFAR-10 test split, labelled), ``synthetic`` (seeded random images), a folder of
images (any size and format PIL reads, resized to the model's input; the label is the name of the image's
sub-folder when the folder has one per class, as an ImageFolder), ``stdin`` (raw RGB frames, height x width x 3
bytes each at the model's input size, as ``ffmpeg -f rawvideo -pix_fmt rgb24 -s WxH -`` writes them), a video
file or ``camera[:N]`` (through OpenCV, when installed).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from edgent.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")


@dataclass
class RequestSource:
    """An iterable of ``(uint8 image C x H x W, label or None)`` and a sentence that says what it is."""

    description: str
    frames: Callable[[], Iterator[tuple[np.ndarray, int | None]]]
    labelled: bool = False

    def __iter__(self) -> Iterator[tuple[np.ndarray, int | None]]:
        return self.frames()


def fit_image(rgb_hwc: np.ndarray, input_shape: Sequence[int]) -> np.ndarray:
    """An RGB image (H x W x 3 uint8, any size) resized (bilinear) to the model's ``input_shape`` (C, H, W)."""
    from PIL import Image

    c, h, w = (int(v) for v in input_shape)
    img = Image.fromarray(np.ascontiguousarray(rgb_hwc, dtype=np.uint8)).convert("RGB")
    if img.size != (w, h):
        img = img.resize((w, h), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
    if c != 3:
        raise ConfigError(f"the model takes {c}-channel inputs; edgent run's sources give RGB images")
    return np.ascontiguousarray(arr)


def _cv2(what: str) -> Any:
    try:
        import cv2  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError(f"--source {what} needs OpenCV, which is not installed: pip install opencv-python-headless "
                          "(or give a folder of images, stdin frames or testsplit)") from None
    return cv2


def open_source(spec: str, input_shape: Sequence[int], seed: int = 0, loop: bool = True) -> RequestSource:
    """The request source named by ``spec`` (see the module docstring). Finite sources (a folder, the test split,
    a video) start over when ``loop`` is set; stdin and a camera run until they end."""
    shape = tuple(int(v) for v in input_shape)
    if spec == "testsplit":
        from edgent.data.cifar10 import load_split

        split = load_split("test")
        order = np.random.default_rng(seed).permutation(len(split))

        def test_frames() -> Iterator[tuple[np.ndarray, int | None]]:
            while True:
                for i in order:
                    yield fit_image(split.images[i].transpose(1, 2, 0), shape), int(split.labels[i])
                if not loop:
                    return
        return RequestSource(f"CIFAR-10 test split ({split.source}), seeded order", test_frames, True)
    if spec == "synthetic":
        def syn_frames() -> Iterator[tuple[np.ndarray, int | None]]:
            rng = np.random.default_rng(seed)
            while True:
                yield rng.integers(0, 256, size=shape, dtype=np.uint8), None
        return RequestSource("SYNTHETIC seeded random images (no labels)", syn_frames)
    if spec == "stdin":
        c, h, w = shape
        size = h * w * c

        def stdin_frames() -> Iterator[tuple[np.ndarray, int | None]]:
            stream = sys.stdin.buffer
            while True:
                buf = stream.read(size)
                if len(buf) < size:
                    return
                yield np.frombuffer(buf, np.uint8).reshape(h, w, c).transpose(2, 0, 1).copy(), None
        return RequestSource(f"raw RGB frames of {w}x{h} on stdin", stdin_frames)
    if spec == "camera" or spec.startswith("camera:"):
        cv2 = _cv2(spec)
        index = int(spec.split(":", 1)[1]) if ":" in spec else 0
        return RequestSource(f"camera {index} (OpenCV)", lambda: _video_frames(cv2, index, shape, False))
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"--source {spec}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
        classes = sorted({p.parent.name for p in files if p.parent != path})
        by_class = bool(classes) and all(p.parent != path for p in files)

        def folder_frames() -> Iterator[tuple[np.ndarray, int | None]]:
            from PIL import Image

            while True:
                for p in files:
                    with Image.open(p) as im:
                        arr = np.asarray(im.convert("RGB"))
                    yield fit_image(arr, shape), (classes.index(p.parent.name) if by_class else None)
                if not loop:
                    return
        what = f"{len(files)} images of {path}" + (f" ({len(classes)} class folders: labelled)" if by_class else "")
        return RequestSource(what, folder_frames, by_class)
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        cv2 = _cv2(spec)
        return RequestSource(f"video {path} (OpenCV)", lambda: _video_frames(cv2, str(path), shape, loop))
    raise ConfigError(f"--source {spec!r}: give testsplit, synthetic, stdin, camera[:N], a folder of images or a "
                      f"video file ({', '.join(VIDEO_SUFFIXES)}); {spec!r} is none of these")


def _video_frames(cv2: Any, what: Any, shape: tuple[int, ...], loop: bool) -> Iterator[tuple[np.ndarray, None]]:
    cap = cv2.VideoCapture(what)
    if not cap.isOpened():
        raise DataError(f"OpenCV cannot open {what!r}")
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                if loop and isinstance(what, str):
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, bgr = cap.read()
                if not ok:
                    return
            yield fit_image(bgr[:, :, ::-1], shape), None
    finally:
        cap.release()
