"""Views of a Windows file system, live or mirrored.

The loader model works on Windows paths. A *view* answers the only questions it asks of the
disk: which files does a folder hold (case-insensitively), what machine is a file built for,
and what are its PE facts. Two views exist:

* :class:`MirrorView` maps a Windows tree copied (or hard-linked) under a host folder, one
  sub-folder per drive (``<root>/C/Windows/System32/...``) and ``<root>/UNC/server/share/...``
  for UNC paths. Folder and file names match case-insensitively, as on NTFS, even on a
  case-sensitive Linux file system. This is how Linux analyses a Windows machine.
* :class:`NativeView` reads the live Windows file system (paths are used as they are).

Views cache directory listings and facts for their lifetime: make a new view after the tree
changes.
"""

from __future__ import annotations

import ntpath
import os
from typing import Dict, Mapping, Optional, Protocol, Tuple

from .model import ImageFacts, Machine

__all__ = ["FileView", "MirrorView", "NativeView", "split_windows_path"]


class FileView(Protocol):
    """What the loader model needs from a file system."""

    def listdir(self, win_dir: str) -> Mapping[str, str]:
        """Lower-case name -> real name of each entry of ``win_dir``; empty if it is absent."""

    def host_path(self, win_path: str) -> Optional[str]:
        """The host path of an existing file or folder, or ``None``."""

    def machine(self, win_path: str) -> Optional[Machine]:
        """The machine a PE file is built for, or ``None`` if it cannot be read as a PE."""

    def facts(self, win_path: str) -> ImageFacts:
        """The PE facts of a file (raises :class:`~torchdll.errors.InvalidImageError`)."""


def split_windows_path(win_path: str) -> Tuple[str, Tuple[str, ...]]:
    """Split an absolute Windows path into an anchor and its components.

    The anchor is ``"C"`` for a drive path and ``"UNC/server/share"`` for a UNC path;
    ``\\\\?\\`` and ``\\\\.\\`` prefixes are removed, ``/`` counts as ``\\``, ``.`` and ``..``
    are folded. Raises :class:`ValueError` for a relative or drive-relative path.
    """
    p = win_path.replace("/", "\\")
    if p.startswith(("\\\\?\\", "\\\\.\\", "\\??\\")):
        p = p[4:]
        if p[:4].upper() == "UNC\\":
            p = "\\\\" + p[4:]
    drive, rest = ntpath.splitdrive(p)
    if not drive:
        raise ValueError(f"not an absolute Windows path: {win_path!r}")
    if drive.startswith("\\\\"):
        parts = [x for x in drive.split("\\") if x]
        if len(parts) != 2:
            raise ValueError(f"malformed UNC path: {win_path!r}")
        anchor = "UNC/" + "/".join(parts)
    else:
        if not rest.startswith("\\"):
            raise ValueError(f"drive-relative path: {win_path!r}")
        anchor = drive[0].upper()
    out: list[str] = []
    for comp in rest.split("\\"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if out:
                out.pop()
            continue
        # Win32 strips trailing dots and spaces from each component.
        comp = comp.rstrip(". ") or comp
        out.append(comp)
    return anchor, tuple(out)


def _scan_dir(host_dir: str) -> Dict[str, str]:
    """Lower-case name -> real name of the entries of a host folder (empty if unreadable).
    The first spelling wins when a case-sensitive host has two names differing by case."""
    out: Dict[str, str] = {}
    try:
        with os.scandir(host_dir) as it:
            for entry in it:
                out.setdefault(entry.name.lower(), entry.name)
    except OSError:
        pass
    return out


class _FactsCache:
    def __init__(self) -> None:
        self._facts: Dict[str, ImageFacts] = {}
        self._machine: Dict[str, Optional[Machine]] = {}

    def machine(self, host: str) -> Optional[Machine]:
        if host not in self._machine:
            from . import _pe
            from .errors import InvalidImageError

            try:
                self._machine[host] = _pe.read_machine(host)
            except InvalidImageError:
                self._machine[host] = None
        return self._machine[host]

    def facts(self, host: str) -> ImageFacts:
        hit = self._facts.get(host)
        if hit is None:
            from . import _pe

            hit = self._facts[host] = _pe.read_facts(host)
        return hit


class MirrorView:
    """A Windows tree mirrored under ``root`` (``root/C/...``, ``root/UNC/server/share/...``)."""

    def __init__(self, root: "str | os.PathLike[str]") -> None:
        self.root = os.path.abspath(os.fspath(root))
        self._listings: Dict[str, Dict[str, str]] = {}
        self._resolved: Dict[str, Optional[str]] = {}
        self._cache = _FactsCache()

    def __repr__(self) -> str:
        return f"MirrorView({self.root!r})"

    def _host_listing(self, host_dir: str) -> Dict[str, str]:
        hit = self._listings.get(host_dir)
        if hit is None:
            hit = self._listings[host_dir] = _scan_dir(host_dir)
        return hit

    def _walk(self, anchor: str, comps: Tuple[str, ...]) -> Optional[str]:
        cur = self.root
        for comp in anchor.split("/") + list(comps):
            real = self._host_listing(cur).get(comp.lower())
            if real is None:
                return None
            cur = os.path.join(cur, real)
        return cur

    def host_path(self, win_path: str) -> Optional[str]:
        if win_path in self._resolved:
            return self._resolved[win_path]
        try:
            anchor, comps = split_windows_path(win_path)
        except ValueError:
            hit = None
        else:
            hit = self._walk(anchor, comps)
        self._resolved[win_path] = hit
        return hit

    def listdir(self, win_dir: str) -> Mapping[str, str]:
        host = self.host_path(win_dir)
        if host is None or not os.path.isdir(host):
            return {}
        return self._host_listing(host)

    def machine(self, win_path: str) -> Optional[Machine]:
        host = self.host_path(win_path)
        return None if host is None else self._cache.machine(host)

    def facts(self, win_path: str) -> ImageFacts:
        host = self.host_path(win_path)
        if host is None:
            from .errors import InvalidImageError

            raise InvalidImageError(win_path, "no such file in the mirrored tree")
        return self._cache.facts(host)

    def to_windows(self, host: "str | os.PathLike[str]") -> str:
        """The Windows path of a host file below :attr:`root` (the inverse mapping)."""
        rel = os.path.relpath(os.path.abspath(os.fspath(host)), self.root)
        parts = rel.split(os.sep)
        if parts[0] == ".." or not parts or parts == ["."]:
            raise ValueError(f"{host} is not below {self.root}")
        if parts[0].upper() == "UNC":
            if len(parts) < 3:
                raise ValueError(f"{host}: incomplete UNC path")
            return "\\\\" + "\\".join(parts[1:])
        if len(parts[0]) != 1 or not parts[0].isalpha():
            raise ValueError(f"{host}: first folder below the root must be a drive letter")
        return parts[0].upper() + ":\\" + "\\".join(parts[1:])


class NativeView:
    """The live file system of the machine torchdll runs on (used on Windows)."""

    def __init__(self) -> None:
        self._listings: Dict[str, Dict[str, str]] = {}
        self._cache = _FactsCache()

    def listdir(self, win_dir: str) -> Mapping[str, str]:
        key = os.path.normcase(win_dir)
        hit = self._listings.get(key)
        if hit is None:
            hit = self._listings[key] = _scan_dir(win_dir)
        return hit

    def host_path(self, win_path: str) -> Optional[str]:
        return win_path if os.path.exists(win_path) else None

    def machine(self, win_path: str) -> Optional[Machine]:
        return self._cache.machine(win_path)

    def facts(self, win_path: str) -> ImageFacts:
        return self._cache.facts(win_path)
