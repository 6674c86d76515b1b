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
    "PathAccessDeniedError",
    "PathBackupError",
    "PathChangedError",
    "PathRepairError",
    "PathValueError",
    "PathVerifyError",
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


# --------------------------------------------------------------------------------------------
# PATH sanitizing and persistent Path repair (torchdll.sanitize, torchdll.registry)
# --------------------------------------------------------------------------------------------


class PathValueError(ValueError):
    """A PATH value cannot be written as it is: it holds a NUL character, it is longer than the
    32,767 characters of an environment variable, or it has a registry type other than
    ``REG_SZ``/``REG_EXPAND_SZ``. ``what`` names the value, ``reason`` says what is wrong."""

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"{what}: {reason}")

    def __reduce__(self) -> tuple[type[PathValueError], tuple[str, str]]:
        return (type(self), (self.what, self.reason))


class PathRepairError(OSError):
    """Repairing the persistent Windows ``Path`` failed, and the value was not lost.

    ``scope``: ``"user"`` or ``"system"``. ``backup``: the backup file written before anything
    changed (``None`` when nothing was changed, so none was needed). ``winerror``: the Win32
    error of the failing registry call, if any. ``restored``: ``True`` when a change was undone
    and the registry holds the original value again, ``False`` when restoring failed too (then
    ``backup`` holds it: ``torchdll fix-path --undo BACKUP``), ``None`` when nothing was written.
    """

    def __init__(
        self,
        message: str,
        *,
        scope: str | None = None,
        backup: str | None = None,
        winerror: int | None = None,
        restored: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.scope = scope
        self.backup = backup
        self.winerror = winerror
        self.restored = restored

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type[PathRepairError], tuple[str], dict[str, object]]:
        state: dict[str, object] = {"scope": self.scope, "backup": self.backup,
                                    "winerror": self.winerror,
                                    "restored": self.restored}
        return (type(self), (self.message,), state)


class PathAccessDeniedError(PathRepairError):
    """The Path cannot be written with the rights this process has (the system Path needs an
    elevated prompt). Nothing was changed."""


class PathBackupError(PathRepairError):
    """A backup could not be written (so nothing was changed) or read (so nothing was restored)."""


class PathChangedError(PathRepairError):
    """The Path in the registry changed after the plan was made; nothing was written. Plan again."""


class PathVerifyError(PathRepairError):
    """The value read back after writing was not the value written; see ``restored``."""
