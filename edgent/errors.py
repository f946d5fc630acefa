"""Exceptions that edgent raises for bad input.

Every error a user can cause derives from :class:`EdgentError`, so that the command line can print its
message (which says what was wrong and how to fix it) instead of a traceback.
"""

from __future__ import annotations


class EdgentError(Exception):
    """Base class of errors caused by input: a bad argument, file, model name or message."""


class ConfigError(EdgentError, ValueError):
    """An argument or configuration value is out of range or malformed."""


class ModelError(EdgentError, ValueError):
    """A model name, weights file, exit point or partition point is wrong."""


class InputError(EdgentError, ValueError):
    """A tensor handed to a model part has the wrong shape or dtype."""


class DataError(EdgentError, FileNotFoundError):
    """A data set, trace or profile file is missing or malformed."""


class OverloadedError(EdgentError):
    """The edge will not compute a request in time (it waited past its deadline): answered ``overloaded``."""

    code = "overloaded"
