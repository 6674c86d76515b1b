"""Exceptions raised by torchdll.

Every failure torchdll can explain has its own class. Errors about *input* (a file that is not a
valid PE image, a snapshot that does not parse) subclass :class:`ValueError`; errors about the
*environment* (a DLL that will not load) will subclass :class:`OSError` and keep ``winerror``.
"""

from __future__ import annotations

import os
from typing import Union

__all__ = [
    "InvalidImageError",
    "SnapshotError",
    "TorchDLLWarning",
]

StrPath = Union[str, "os.PathLike[str]"]


class InvalidImageError(ValueError):
    """A file is not a PE image torchdll can read (truncated, corrupt, not a PE, unreadable).

    ``path`` names the file and ``reason`` says, in a few words, what is wrong with it. The
    message never depends on the locale.
    """

    def __init__(self, path: StrPath, reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: not a readable PE image: {reason}")

    def __reduce__(self) -> tuple[type[InvalidImageError], tuple[str, str]]:
        return (type(self), (self.path, self.reason))


class SnapshotError(ValueError):
    """A snapshot file or mirrored tree is missing, malformed or of an unsupported schema."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")

    def __reduce__(self) -> tuple[type[SnapshotError], tuple[str, str]]:
        return (type(self), (self.source, self.reason))


class TorchDLLWarning(UserWarning):
    """Something torchdll noticed but could not act on (for example an unusable cache)."""


def __dir__() -> list[str]:
    return __all__
