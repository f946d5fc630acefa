"""Argument types for the command line: each checks a value when the command line is parsed, so that a bad value
is refused at once with one line naming the option and what it accepts (argparse adds the option's name).

Each factory returns a callable for ``add_argument(type=...)`` that raises ``argparse.ArgumentTypeError``.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Callable


def port(allow_zero: bool = False) -> Callable[[str], int]:
    """A TCP port, 1..65535 (0 too when ``allow_zero``: "any free port")."""
    low = 0 if allow_zero else 1

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or not low <= v <= 65535:
            extra = " (0: any free port)" if allow_zero else ""
            raise argparse.ArgumentTypeError(f"{text!r} is not a port: give an integer in {low}..65535{extra}")
        return v

    return parse


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer of at least ``low`` (and at most ``high``)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < low or (high is not None and v > high):
            span = f"at least {low}" if high is None else f"in {low}..{high}"
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed: give an integer {span}")
        return v

    return parse


def number(low: float = 0.0, *, allow_low: bool = False, high: float | None = None) -> Callable[[str], float]:
    """A finite number above ``low`` (or equal to it when ``allow_low``), at most ``high``; NaN and infinities
    are refused."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        ok = math.isfinite(v) and (v >= low if allow_low else v > low) and (high is None or v <= high)
        if not ok:
            span = f"{'at least' if allow_low else 'greater than'} {low:g}"
            if high is not None:
                span += f" and at most {high:g}"
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed: give a finite number {span}")
        return v

    return parse


def existing_file(what: str) -> Callable[[str], str]:
    """The path of a readable file that exists (``what`` names it in the message)."""

    def parse(text: str) -> str:
        p = Path(text)
        if not p.is_file():
            raise argparse.ArgumentTypeError(f"{what} {text} does not exist (or is not a file): give the path of "
                                             "an existing file")
        if not os.access(p, os.R_OK):
            raise argparse.ArgumentTypeError(f"{what} {text} is not readable: check its permissions")
        return text

    return parse


def token_file(text: str) -> str:
    """The token held by the file ``text`` (surrounding white space removed): the file must exist, be UTF-8 and
    hold a non-empty token."""
    existing_file("the token file")(text)
    try:
        token = Path(text).read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise argparse.ArgumentTypeError(f"the token file {text} is not UTF-8 text: write the token as text") from None
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read the token file {text}: {exc.strerror or exc}") from None
    if not token:
        raise argparse.ArgumentTypeError(f"the token file {text} is empty: write the shared token in it (an empty "
                                         "token would admit anyone), or drop the option")
    return token


def token(text: str) -> str:
    """A non-empty token given on the command line."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the token is empty: give the shared token (an empty token would admit "
                                         "anyone), or drop the option")
    return text.strip()


def new_file(what: str) -> Callable[[str], str]:
    """A file to write (or append to): its folder must exist and be writable."""

    def parse(text: str) -> str:
        p = Path(text)
        folder = p.parent if str(p.parent) else Path(".")
        if p.is_dir():
            raise argparse.ArgumentTypeError(f"{what} {text} is a folder: give a file name")
        if not folder.is_dir():
            raise argparse.ArgumentTypeError(f"the folder {folder} of {what} {text} does not exist: create it "
                                             "first or give another path")
        if not os.access(folder, os.W_OK):
            raise argparse.ArgumentTypeError(f"the folder {folder} of {what} {text} is not writable")
        return text

    return parse
