"""Exceptions that reach the user.

Every error a user can cause (a bad file, a wrong dataset path, a negative wavelength) is raised
as a subclass of :class:`XtalscreenError` with a message that names the file, frame or argument
and says what to do. The CLI prints that message on one line and exits non-zero; ``--debug``
shows the traceback.
"""

from __future__ import annotations


class XtalscreenError(Exception):
    """Base class of all user-facing errors."""


class InputError(XtalscreenError, ValueError):
    """A file, dataset or frame cannot be read or does not match what was expected.

    Parameters
    ----------
    message : str
        What is wrong and what to do about it.
    path : str, optional
        The file concerned; prefixed to the message.
    frame : int, optional
        The frame index inside ``path``.
    """

    def __init__(self, message: str, *, path: str | None = None, frame: int | None = None):
        self.path = None if path is None else str(path)
        self.frame = frame
        where = ""
        if self.path is not None:
            where = self.path if frame is None else f"{self.path} (frame {frame})"
            where += ": "
        super().__init__(where + message)
        self.reason = message


class ParameterError(XtalscreenError, ValueError):
    """An argument or configuration value is out of range; the message names it."""


def check_positive(name: str, value, unit: str = "") -> float:
    """Return ``float(value)`` or raise :class:`ParameterError` naming ``name`` if it is not > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {value!r}") from None
    if not v > 0 or v != v or v == float("inf"):
        u = f" {unit}" if unit else ""
        raise ParameterError(f"{name} must be > 0{u}, got {value!r}")
    return v
