"""The process-wide registry of ``os.add_dll_directory`` handles that torchdll added.

CPython's ``os.add_dll_directory`` returns an ``_AddedDllDirectory`` whose capsule has **no
destructor**: dropping the handle does *not* remove the folder, only ``close()`` does, and a
second ``close()`` raises ``TypeError("Provided cookie was not returned from
os.add_dll_directory")`` (``Lib/os.py``, ``Modules/posixmodule.c``). This module keeps every
handle torchdll adds, for the life of the process, so that:

* a folder is added once per process, however often (and from however many threads) the guard
  runs: keys are ``ntpath.normcase(ntpath.normpath(path))``;
* only absolute folders that exist are added; the rest are skipped with a reason;
* closing is idempotent (:meth:`DllDirectory.close`): a second close, or a handle someone
  else already closed, is not an error;
* a guard that fails rolls back exactly the folders *it* added (:meth:`DllDirectoryRegistry.
  release`), never one that an earlier, successful guard added and torch still needs.

One re-entrant lock, :data:`LOCK`, serialises every change of ``PATH`` and of the DLL folders
made by torchdll (the guard holds it while it prepares and imports). torchdll never calls
``SetDefaultDllDirectories`` or ``SetDllDirectory``: both change the search of every later
load in the process, for good.
"""

from __future__ import annotations

import ntpath
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["LOCK", "REGISTRY", "AddResult", "DllDirectory", "DllDirectoryRegistry", "is_absolute_windows_path"]

#: The one lock around PATH and DLL-directory changes made by torchdll (re-entrant: nested
#: guards in one thread are fine).
LOCK = threading.RLock()

AddFunction = Callable[[str], Any]


def is_absolute_windows_path(path: str) -> bool:
    """``C:\\...`` or ``\\\\server\\share\\...``: what ``AddDllDirectory`` needs (``\\foo``
    is drive-relative and ``C:foo`` is relative to the drive's current folder)."""
    p = path.replace("/", "\\")
    if p.startswith("\\\\"):
        return len([x for x in p[2:].split("\\") if x]) >= 2
    return len(p) >= 3 and p[0].isalpha() and p[1] == ":" and p[2] == "\\"


def _key(path: str) -> str:
    return ntpath.normcase(ntpath.normpath(path))


class DllDirectory:
    """One folder added with ``os.add_dll_directory`` (the handle is kept here)."""

    def __init__(self, path: str, handle: Any, registry: Optional[DllDirectoryRegistry] = None) -> None:
        self.path = path
        self.key = _key(path)
        self._handle = handle
        self._registry = registry
        self.closed = False

    def close(self) -> bool:
        """Remove the folder from the DLL search (``RemoveDllDirectory``). Idempotent: returns
        ``True`` when this call removed it, ``False`` when it was already closed (by us, or by
        someone holding the same handle: CPython's ``TypeError`` for that is swallowed)."""
        with LOCK:
            if self.closed:
                return False
            self.closed = True
            if self._registry is not None:
                self._registry._forget(self)
            try:
                self._handle.close()
            except TypeError:
                return False  # the capsule was already invalidated by another close()
            return True

    def __repr__(self) -> str:
        state = "closed" if self.closed else "active"
        return f"DllDirectory({self.path!r}, {state})"


class AddResult:
    """What :meth:`DllDirectoryRegistry.add_all` did: folders added now, folders that were
    already there (kept, not owned by this call), and folders skipped with the reason."""

    def __init__(self) -> None:
        self.added: List[DllDirectory] = []
        self.kept: List[DllDirectory] = []
        self.skipped: List[Tuple[str, str]] = []

    @property
    def paths(self) -> Tuple[str, ...]:
        """Every folder that is in the DLL search for this import (added now or before)."""
        return tuple(d.path for d in [*self.kept, *self.added])


class DllDirectoryRegistry:
    """Handles of the folders torchdll added, by normalised path (see the module docstring)."""

    def __init__(self) -> None:
        self._entries: Dict[str, DllDirectory] = {}

    def __contains__(self, path: str) -> bool:
        return _key(path) in self._entries

    def active(self) -> Tuple[str, ...]:
        """The folders currently added, in the order they were added."""
        with LOCK:
            return tuple(d.path for d in self._entries.values())

    def _forget(self, entry: DllDirectory) -> None:
        if self._entries.get(entry.key) is entry:
            del self._entries[entry.key]

    def add(self, path: str, add_dll_directory: AddFunction,
            isdir: Callable[[str], bool]) -> Tuple[Optional[DllDirectory], bool, Optional[str]]:
        """Add one folder unless it is already there: ``(entry, added_now, skip_reason)``.

        Relative and missing folders are never passed to ``add_dll_directory`` (CPython would
        raise ``OSError`` [WinError 87] / ``FileNotFoundError`` [WinError 3]); an ``OSError``
        it raises anyway (a race, access denied) becomes a skip reason, never an exception.
        """
        if not is_absolute_windows_path(path):
            return None, False, "not an absolute path"
        with LOCK:
            hit = self._entries.get(_key(path))
            if hit is not None:
                return hit, False, None
            try:
                exists = isdir(path)
            except OSError:
                exists = False
            if not exists:
                return None, False, "the folder does not exist"
            try:
                handle = add_dll_directory(path)
            except OSError as exc:
                code = getattr(exc, "winerror", None) or exc.errno
                return None, False, f"os.add_dll_directory failed ({type(exc).__name__}, error {code})"
            entry = DllDirectory(path, handle, self)
            self._entries[entry.key] = entry
            return entry, True, None

    def add_all(self, paths: Sequence[str], add_dll_directory: AddFunction,
                isdir: Callable[[str], bool]) -> AddResult:
        """Add each folder in order (duplicates, by normalised path, are skipped)."""
        out = AddResult()
        seen: set[str] = set()
        with LOCK:
            for path in paths:
                if _key(path) in seen:
                    continue
                seen.add(_key(path))
                entry, new, reason = self.add(path, add_dll_directory, isdir)
                if entry is None:
                    out.skipped.append((path, reason or "skipped"))
                elif new:
                    out.added.append(entry)
                else:
                    out.kept.append(entry)
        return out

    def release(self, entries: Sequence[DllDirectory]) -> int:
        """Close ``entries`` (a failed guard's own additions); returns how many were removed."""
        with LOCK:
            return sum(1 for e in reversed(list(entries)) if e.close())


#: The registry of this process.
REGISTRY = DllDirectoryRegistry()
