"""Frozen data shared by every layer: PE facts, load contexts, resolutions and edges.

Nothing here does I/O. Paths inside these objects are *Windows* paths (``C:\\x\\y.dll``) whenever
they describe the target machine, even when torchdll runs on Linux and reads a mirrored tree; the
:mod:`torchdll.fsview` layer maps them to files on the host.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import cached_property
from typing import Mapping, Optional, Tuple

__all__ = [
    "Candidate",
    "ExportTable",
    "ImageFacts",
    "ImportedModule",
    "LoadContext",
    "LoadFlags",
    "Machine",
    "Resolution",
    "RichInfo",
    "Rule",
    "Skip",
    "VersionInfo",
]


class Machine(enum.IntEnum):
    """``IMAGE_FILE_HEADER.Machine`` values (winnt.h), plus the hybrid ARM64 kinds.

    ARM64EC images carry ``AMD64`` in their header and ARM64X images ``ARM64``; torchdll tells
    them apart by the CHPE metadata pointer of the load-config directory and reports them with
    the pseudo values below (the COFF object values of the same names, ntimage.h).
    """

    UNKNOWN = 0x0000
    I386 = 0x014C
    ARMNT = 0x01C4
    AMD64 = 0x8664
    ARM64 = 0xAA64
    ARM64EC = 0xA641
    ARM64X = 0xA64E

    @property
    def label(self) -> str:
        return _MACHINE_LABELS.get(self, f"0x{int(self):04x}")

    @classmethod
    def from_label(cls, label: str) -> Machine:
        text = label.strip().lower()
        for member, name in _MACHINE_LABELS.items():
            if name == text or member.name.lower() == text:
                return member
        raise ValueError(f"unknown machine {label!r}")


_MACHINE_LABELS = {
    Machine.UNKNOWN: "unknown",
    Machine.I386: "x86",
    Machine.ARMNT: "arm",
    Machine.AMD64: "x64",
    Machine.ARM64: "arm64",
    Machine.ARM64EC: "arm64ec",
    Machine.ARM64X: "arm64x",
}


class LoadFlags(enum.IntFlag):
    """``LoadLibraryExW`` ``dwFlags`` (libloaderapi.h; anchors.md section 3.1)."""

    NONE = 0
    DONT_RESOLVE_DLL_REFERENCES = 0x00000001
    LOAD_LIBRARY_AS_DATAFILE = 0x00000002
    LOAD_WITH_ALTERED_SEARCH_PATH = 0x00000008
    LOAD_IGNORE_CODE_AUTHZ_LEVEL = 0x00000010
    LOAD_LIBRARY_AS_IMAGE_RESOURCE = 0x00000020
    LOAD_LIBRARY_AS_DATAFILE_EXCLUSIVE = 0x00000040
    LOAD_LIBRARY_REQUIRE_SIGNED_TARGET = 0x00000080
    SEARCH_DLL_LOAD_DIR = 0x00000100
    SEARCH_APPLICATION_DIR = 0x00000200
    SEARCH_USER_DIRS = 0x00000400
    SEARCH_SYSTEM32 = 0x00000800
    SEARCH_DEFAULT_DIRS = 0x00001000
    SAFE_CURRENT_DIRS = 0x00002000
    SEARCH_SYSTEM32_NO_FORWARDER = 0x00004000
    OS_INTEGRITY_CONTINUITY = 0x00008000


#: every ``LOAD_LIBRARY_SEARCH_*`` bit: any of them selects the "search flags" mode (A).
SEARCH_MASK = 0x00000100 | 0x00000200 | 0x00000400 | 0x00000800 | 0x00001000 | 0x00004000


# --------------------------------------------------------------------------------------------
# PE facts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportedModule:
    """One import descriptor: the DLL name as written in the image and what is taken from it."""

    dll: str
    delay: bool = False
    names: Tuple[str, ...] = ()
    ordinals: Tuple[int, ...] = ()


@dataclass(frozen=True)
class ExportTable:
    """The export directory of an image, complete (no 8192 cap).

    ``names`` maps each exported name to its ordinal (ordinal base applied). ``ordinals`` is
    every ordinal whose address is non-zero. ``forwarders`` maps ``#N`` for *every* forwarded
    ordinal, and also the name of every forwarded named export, to its forwarder string
    (``NTDLL.RtlFoo`` or ``dll.#12``). ``names`` may be a lazy mapping (see :mod:`torchdll._pe`).
    """

    dll_name: str = ""
    ordinal_base: int = 1
    names: Mapping[str, int] = field(default_factory=dict)
    ordinals: frozenset[int] = frozenset()
    forwarders: Mapping[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ordinals)

    def has_name(self, name: str) -> bool:
        return name in self.names

    def has_ordinal(self, ordinal: int) -> bool:
        return ordinal in self.ordinals

    def forwarder_of_name(self, name: str) -> Optional[str]:
        return self.forwarders.get(name)

    def forwarder_of_ordinal(self, ordinal: int) -> Optional[str]:
        return self.forwarders.get(f"#{ordinal}")


@dataclass(frozen=True)
class VersionInfo:
    """``VS_VERSIONINFO``: the fixed file/product versions and the first string table."""

    file_version: Optional[Tuple[int, int, int, int]] = None
    product_version: Optional[Tuple[int, int, int, int]] = None
    strings: Mapping[str, str] = field(default_factory=dict)

    @property
    def file_version_str(self) -> Optional[str]:
        return None if self.file_version is None else ".".join(map(str, self.file_version))


@dataclass(frozen=True)
class RichInfo:
    """What the Rich header says about the tools that built an image.

    ``entries`` holds ``(product_id, build, count)``; ``max_build`` is the newest compiler or
    linker build; ``toolset`` the MSVC toolset (``"14.42"``) that build belongs to, when known.
    """

    entries: Tuple[Tuple[int, int, int], ...] = ()
    max_build: int = 0
    toolset: Optional[str] = None


@dataclass(frozen=True)
class ImageFacts:
    """What torchdll knows about one PE file, read without a full parse."""

    path: str
    size: int
    mtime_ns: int
    machine: Machine
    is_dll: bool
    characteristics: int = 0
    dll_characteristics: int = 0
    subsystem: int = 0
    linker_version: Tuple[int, int] = (0, 0)
    rich: Optional[RichInfo] = None
    dependent_load_flags: int = 0
    signed: bool = False
    imports: Tuple[ImportedModule, ...] = ()
    exports: ExportTable = field(default_factory=ExportTable)
    version: Optional[VersionInfo] = None
    warnings: Tuple[str, ...] = ()

    @cached_property
    def static_imports(self) -> Tuple[ImportedModule, ...]:
        return tuple(i for i in self.imports if not i.delay)

    @cached_property
    def delay_imports(self) -> Tuple[ImportedModule, ...]:
        return tuple(i for i in self.imports if i.delay)


# --------------------------------------------------------------------------------------------
# The loader model
# --------------------------------------------------------------------------------------------


class Rule(str, enum.Enum):
    """Which step of the Windows search found (or was asked to find) a module."""

    FULL_PATH = "full-path"
    API_SET = "api-set"
    LOADED = "loaded-module"
    KNOWN_DLL = "known-dll"
    DLL_LOAD_DIR = "dll-load-dir"
    ALTERED_DIR = "altered-dir"
    APP_DIR = "app-dir"
    USER_DIR = "user-dir"
    DLL_DIRECTORY = "dll-directory"
    SYSTEM32 = "system32"
    SYSTEM_DIR = "system-dir"
    WINDOWS_DIR = "windows-dir"
    CWD = "cwd"
    PATH = "path"


class Skip(str, enum.Enum):
    """Why a candidate file was not used."""

    ABSENT = "absent"
    WRONG_MACHINE = "wrong-machine"
    UNREADABLE = "unreadable"
    SELECTED = "selected"


@dataclass(frozen=True)
class Candidate:
    """One place the loader looked: ``outcome`` is :attr:`Skip.SELECTED` for the winner."""

    path: str
    rule: Rule
    outcome: Skip


@dataclass(frozen=True)
class Resolution:
    """The outcome of resolving one module name for one load call.

    ``path`` is ``None`` when nothing was found; ``error`` then holds the Win32 code the loader
    would return (126 not found, 193 bad image named by full path, 87 invalid parameter).
    ``host`` is the API-set host when the name was an API-set contract.
    """

    name: str
    path: Optional[str]
    rule: Optional[Rule]
    candidates: Tuple[Candidate, ...] = ()
    error: Optional[int] = None
    host: Optional[str] = None
    notes: Tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        return self.path is not None


@dataclass(frozen=True)
class LoadContext:
    """Everything the Windows loader consults for one load call in one process.

    Directories are Windows paths. ``loaded`` maps a lower-case base name to the full path of
    the module that is already in the process (the first one loaded, when several share a name).
    ``known_dlls`` maps lower-case names to the file name in ``system32``.
    ``user_dirs`` are the ``AddDllDirectory`` folders in the order they were added.
    ``default_flags`` is what ``SetDefaultDllDirectories`` set, or ``None`` if never called.
    ``apisets`` maps lower-case contract names (without the ``-lX-Y-Z`` version and ``.dll``)
    to hosts, see :mod:`torchdll.apisets`.
    """

    app_dir: str
    system32: str = "C:\\Windows\\System32"
    windows_dir: str = "C:\\Windows"
    system_dir: str = "C:\\Windows\\System"
    cwd: str = ""
    path: Tuple[str, ...] = ()
    safe_dll_search_mode: bool = True
    dll_directory: Optional[str] = None
    user_dirs: Tuple[str, ...] = ()
    default_flags: Optional[int] = None
    loaded: Mapping[str, str] = field(default_factory=dict)
    known_dlls: Mapping[str, str] = field(default_factory=dict)
    machine: Machine = Machine.AMD64
