"""Exceptions raised by torchdll.

Every failure torchdll can explain has its own class. Errors about *input* (a file that is not a
valid PE image, a snapshot that does not parse) subclass :class:`ValueError`; errors about the
*environment* (a DLL that will not load) will subclass :class:`OSError` and keep ``winerror``.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence, Tuple, Union

__all__ = [
    "AMBIGUOUS_LOAD_CODES",
    "DLL_LOAD_CODES",
    "BadImageError",
    "BlockedByPolicyError",
    "CommitLimitError",
    "DllAccessDeniedError",
    "DllInitError",
    "DllLoadError",
    "DllNotFoundError",
    "InvalidImageError",
    "PathAccessDeniedError",
    "PathBackupError",
    "PathChangedError",
    "PathRepairError",
    "PathValueError",
    "PathVerifyError",
    "PathTooLongError",
    "PrecheckWarning",
    "ProbeError",
    "ProbeUnavailableError",
    "ProcedureNotFoundError",
    "SnapshotError",
    "TorchDLLError",
    "TorchDLLWarning",
    "dll_error_class",
]

StrPath = Union[str, "os.PathLike[str]"]


class InvalidImageError(ValueError):
    """A file is not an image torchdll can read (truncated, corrupt, wrong format, unreadable).

    ``path`` names the file, ``reason`` says in a few words what is wrong with it and ``kind``
    which format was expected (``"PE"``, ``"ELF"``, ``"Mach-O"``). The message never depends on
    the locale.
    """

    def __init__(self, path: StrPath, reason: str, kind: str = "PE") -> None:
        self.path = os.fspath(path)
        self.reason = reason
        self.kind = kind
        super().__init__(f"{self.path}: not a readable {kind} image: {reason}")

    def __reduce__(self) -> tuple[type[InvalidImageError], tuple[str, str, str]]:
        return (type(self), (self.path, self.reason, self.kind))


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


# --------------------------------------------------------------------------------------------
# DLL load failures (torchdll.guard, torchdll.probe)
# --------------------------------------------------------------------------------------------

#: Win32 codes of a failed DLL load -> the class that stands for them (winerror.h).
_BY_CODE: "dict[int, str]" = {
    5: "DllAccessDeniedError",  # ERROR_ACCESS_DENIED
    126: "DllNotFoundError",  # ERROR_MOD_NOT_FOUND
    127: "ProcedureNotFoundError",  # ERROR_PROC_NOT_FOUND
    182: "ProcedureNotFoundError",  # ERROR_INVALID_ORDINAL
    193: "BadImageError",  # ERROR_BAD_EXE_FORMAT
    206: "PathTooLongError",  # ERROR_FILENAME_EXCED_RANGE
    216: "BadImageError",  # ERROR_EXE_MACHINE_TYPE_MISMATCH
    225: "BlockedByPolicyError",  # ERROR_VIRUS_INFECTED
    1114: "DllInitError",  # ERROR_DLL_INIT_FAILED
    1455: "CommitLimitError",  # ERROR_COMMITMENT_LIMIT
    4551: "BlockedByPolicyError",  # ERROR_SYSTEM_INTEGRITY_POLICY_VIOLATION
}

#: What each kind means, in a few words (the first line of ``str()``). The text ``str()`` shows
#: comes from the message catalogue (``exc.kind.<kind>``, English and Korean); a test keeps
#: this English table equal to it.
_KIND_TEXT = {
    "DllNotFoundError": "a DLL it needs was not found",
    "ProcedureNotFoundError": "a DLL lacks a function (or ordinal) another DLL imports from it",
    "BadImageError": "a DLL is not a valid image for this process (wrong architecture or corrupt)",
    "DllInitError": "a DLL's initialisation failed",
    "CommitLimitError": "the paging file is too small to commit the DLL",
    "BlockedByPolicyError": "a DLL was blocked by an application-control or antivirus policy",
    "DllAccessDeniedError": "access to a DLL was denied",
    "PathTooLongError": "a DLL path is too long",
    "DllLoadError": "a native library failed to load",
}


class TorchDLLError(OSError):
    """Importing torch (or a companion such as torchvision) failed to load a native library.

    An :class:`OSError`, so ``except OSError`` keeps working; one subclass per kind of failure
    (:func:`dll_error_class` maps a Win32 code to it). The class is chosen from the *number*
    (``winerror``), never from the localised message. Attributes (any may be ``None`` or empty
    when it could not be found out):

    ``winerror``: the Win32 code (``None`` off Windows, or when it could not be recovered);
    ``errno``: the C errno of the original error, or the POSIX equivalent of the kind;
    ``module``: the Python module being imported (``"torch"``); ``dll``: the library the
    importer named in its error; ``culprit``: the library that really fails (a dependency, the
    runtime whose version is wrong...); ``importer``: the module that imports the culprit;
    ``rule``: the loader rule that picked the culprit (``loaded-module``, ``system32``...);
    ``candidates``: the paths the loader tried; ``causes``: ranked findings
    (:class:`~torchdll.report.Finding`) that explain it; ``fix``: steps to follow in order;
    ``report``: the full :class:`~torchdll.report.Report`; ``probe``: the
    :class:`~torchdll.probe.ProbeResult` of a re-probe in a child process, if one ran;
    ``original``: ``"TypeName: message"`` of the error that was caught (also the
    ``__cause__``, which pickling cannot carry); ``notes``: what torchdll could not do.

    Pickles cleanly (DataLoader workers, multiprocessing): everything is kept except the
    traceback; the original exception comes back as ``__cause__`` when it pickles itself.
    """

    kind = "DllLoadError"

    def __init__(
        self,
        summary: str = "",
        *,
        winerror: Optional[int] = None,
        errno: Optional[int] = None,
        module: str = "torch",
        dll: Optional[str] = None,
        culprit: Optional[str] = None,
        importer: Optional[str] = None,
        rule: Optional[str] = None,
        candidates: Sequence[str] = (),
        causes: Sequence[Any] = (),
        fix: Sequence[str] = (),
        report: Any = None,
        probe: Any = None,
        original: Optional[str] = None,
        notes: Sequence[str] = (),
    ) -> None:
        super().__init__(summary)
        self.summary = summary
        self.errno = errno
        self.strerror = summary
        self.winerror = winerror
        self.module = module
        self.dll = dll
        self.culprit = culprit
        self.importer = importer
        self.rule = rule
        self.candidates = tuple(candidates)
        self.causes = tuple(causes)
        self.fix = tuple(fix)
        self.report = report
        self.probe = probe
        self.original = original
        self.notes = tuple(notes)

    @property
    def code(self) -> Optional[int]:
        """``winerror`` (kept for symmetry with :class:`~torchdll.report.Prediction`)."""
        return self.winerror

    def __str__(self) -> str:
        import ntpath

        from .messages import language, text

        lang = language()
        kind = type(self).kind if type(self).kind in _KIND_TEXT else "DllLoadError"
        what = text(f"exc.kind.{kind}", lang)
        if self.winerror is not None:
            head = text("exc.head_code", lang, module=self.module, what=what,
                        winerror=self.winerror)
        else:
            head = text("exc.head", lang, module=self.module, what=what)
        lines = [head]
        if self.dll:
            lines.append("  " + text("exc.loading", lang, dll=self.dll))
        if self.summary:
            lines.append("  " + text("exc.cause", lang, summary=self.summary))
        elif self.culprit and self.culprit != self.dll:
            if self.importer:
                lines.append("  " + text("exc.culprit_by", lang, culprit=self.culprit,
                                         importer=ntpath.basename(self.importer)))
            else:
                lines.append("  " + text("exc.culprit", lang, culprit=self.culprit))
        for i, step in enumerate(self.fix[:3], 1):
            lines.append("  " + text("exc.fix_step", lang, n=i, step=step))
        if self.report is not None:
            lines.append("  " + text("exc.details", lang))
        elif self.original:
            lines.append("  " + text("exc.original", lang, original=self.original))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(winerror={self.winerror!r}, dll={self.dll!r}, culprit={self.culprit!r})"

    def __reduce__(self) -> Tuple[Any, ...]:
        state: Dict[str, Any] = {k: v for k, v in self.__dict__.items() if not k.startswith("__")}
        # OSError keeps these in slots (and winerror only on Windows), not in __dict__
        state.update(errno=self.errno, strerror=self.strerror, winerror=self.winerror)
        cause = self.__cause__
        if cause is not None:
            import pickle

            try:
                pickle.dumps(cause)
            except Exception:  # noqa: BLE001 - an unpicklable cause is simply left out
                cause = None
        state["_pickled_cause"] = cause
        return (_rebuild_dll_error, (type(self), self.summary), state)

    def __setstate__(self, state: Optional[Dict[str, Any]]) -> None:
        state = dict(state or {})
        cause = state.pop("_pickled_cause", None)
        for key, value in state.items():
            setattr(self, key, value)
        if cause is not None:
            self.__cause__ = cause


def _rebuild_dll_error(cls: "type[TorchDLLError]", summary: str) -> TorchDLLError:
    return cls(summary)


class DllNotFoundError(TorchDLLError):
    """126 ``ERROR_MOD_NOT_FOUND``: the named DLL or any DLL it depends on was not found
    (also ctypes' ``FileNotFoundError`` that carries no number; Linux: "cannot open shared
    object file"; macOS: "Library not loaded")."""

    kind = "DllNotFoundError"


class ProcedureNotFoundError(TorchDLLError):
    """127 ``ERROR_PROC_NOT_FOUND`` / 182 ``ERROR_INVALID_ORDINAL``: a loaded DLL lacks a name
    or ordinal another DLL imports (Linux: "undefined symbol", "version `GLIBCXX_...' not
    found"; macOS: "Symbol not found")."""

    kind = "ProcedureNotFoundError"


class BadImageError(TorchDLLError):
    """193 ``ERROR_BAD_EXE_FORMAT`` / 216 ``ERROR_EXE_MACHINE_TYPE_MISMATCH``: wrong
    architecture or a corrupt file (Linux: "wrong ELF class", "invalid ELF header")."""

    kind = "BadImageError"


class DllInitError(TorchDLLError):
    """1114 ``ERROR_DLL_INIT_FAILED``: a DllMain or static initialiser failed (torch >= 2.9 with
    an msvcp140.dll older than 14.40; two OpenMP runtimes...)."""

    kind = "DllInitError"


class CommitLimitError(TorchDLLError):
    """1455 ``ERROR_COMMITMENT_LIMIT``: the paging file is too small (large CUDA DLLs)."""

    kind = "CommitLimitError"


class BlockedByPolicyError(TorchDLLError):
    """4551 ``ERROR_SYSTEM_INTEGRITY_POLICY_VIOLATION`` (Smart App Control, WDAC, AppLocker) or
    225 ``ERROR_VIRUS_INFECTED`` (antivirus)."""

    kind = "BlockedByPolicyError"


class DllAccessDeniedError(TorchDLLError):
    """5 ``ERROR_ACCESS_DENIED``: a DLL or its folder cannot be read."""

    kind = "DllAccessDeniedError"


class PathTooLongError(TorchDLLError):
    """206 ``ERROR_FILENAME_EXCED_RANGE``: a path longer than MAX_PATH without long paths."""

    kind = "PathTooLongError"


class DllLoadError(TorchDLLError):
    """Any other load failure, or one whose code could not be recovered (the fallback)."""

    kind = "DllLoadError"


def dll_error_class(code: Optional[int]) -> "type[TorchDLLError]":
    """The :class:`TorchDLLError` subclass for a Win32 code (:class:`DllLoadError` otherwise)."""
    name = _BY_CODE.get(code) if code is not None else None
    cls = globals()[name] if name else DllLoadError
    assert isinstance(cls, type) and issubclass(cls, TorchDLLError)
    return cls


#: Win32 codes that only a DLL load produces in an import (classified without more evidence).
DLL_LOAD_CODES = frozenset({126, 127, 182, 193, 216, 225, 1114, 1455, 4551, 14001})
#: Codes that a load can produce but other file operations too (need a named DLL as well).
AMBIGUOUS_LOAD_CODES = frozenset({5, 206})


class ProbeError(RuntimeError):
    """A run-time probe could not run or its child process did not answer (not a load
    outcome: load failures are results, see :class:`~torchdll.probe.ProbeResult`)."""


class ProbeUnavailableError(ProbeError):
    """No probe backend can run here (the default one needs Windows)."""


class PrecheckWarning(TorchDLLWarning):
    """A pre-import check found a risk (an old runtime already loaded...); torch was still
    imported."""
