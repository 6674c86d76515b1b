"""A small, complete and bounded reader of the Mach-O facts torchdll needs on macOS.

One entry point, :func:`read_macho_facts`, maps the file (``mmap``, never a full read), picks one
architecture slice of a universal ("fat") file, walks that slice's load commands and fills a
:class:`MachOFacts`: the architectures present, CPU type, file type and header flags, the install
name (``LC_ID_DYLIB``), every dylib dependency (``LC_LOAD_DYLIB``, ``LC_LOAD_WEAK_DYLIB``,
``LC_REEXPORT_DYLIB``, ``LC_LAZY_LOAD_DYLIB``, ``LC_LOAD_UPWARD_DYLIB``) with its versions, the
``LC_RPATH`` entries exactly as stored (``@loader_path`` is *not* expanded: that is the dyld model's
job, :mod:`torchdll.dyld`), the minimum OS (``LC_BUILD_VERSION`` or ``LC_VERSION_MIN_*``), the UUID
and the main executable's ``LC_DYLD_ENVIRONMENT`` entries. :func:`is_macho` only sniffs the magic.

The checks are the ones dyld makes before it maps an image (``MachOFile::isMachO`` and
``validLoadCommands`` in dyld's sources), so a file this module accepts is one whose headers dyld
would accept too:

* a fat header lists 1..:data:`MAX_FAT_ARCHES` slices, each inside the file; the chosen slice
  starts with a thin Mach-O header whose CPU type is the one the fat header names;
* ``sizeofcmds`` fits in the slice after the header, ``ncmds`` commands fill it exactly, each
  ``cmdsize`` is at least 8, a multiple of 4 and inside ``sizeofcmds``;
* a string in a load command (a dylib name, an rpath) starts inside its command and ends with a
  NUL before the command's end, and is at most :data:`MAX_NAME` bytes long;
* every segment's file range (``LC_SEGMENT``/``LC_SEGMENT_64``) lies inside the slice: this is
  how a truncated download shows (dyld: "truncated mach-o error: segment ... extends ... past end
  of file").

Every bound is explicit (:data:`MAX_FAT_ARCHES`, :data:`MAX_LOAD_COMMANDS`,
:data:`MAX_SIZEOFCMDS`, :data:`MAX_NAME`), so hostile input cannot make the reader hang or
allocate much more than its load commands. Anything that is not a readable Mach-O image raises
:class:`~torchdll.errors.InvalidImageError` and nothing else (OS errors included); survivable
oddities (an unknown platform, a duplicated ``LC_RPATH``) end up in :attr:`MachOFacts.warnings`.

No third-party package is used (tests use ``macholib`` and ``llvm-objdump`` as oracles).
"""

from __future__ import annotations

import enum
import mmap
import os
import platform
import struct
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ._fileio import OpenFile, sniff
from ._fileio import os_reason as _os_reason
from .errors import InvalidImageError


def _invalid(path: str, reason: str) -> InvalidImageError:
    return InvalidImageError(path, reason, "Mach-O")


__all__ = [
    "MAX_FAT_ARCHES",
    "MAX_LOAD_COMMANDS",
    "MAX_NAME",
    "MAX_SIZEOFCMDS",
    "DylibKind",
    "DylibRef",
    "MachOFacts",
    "MinOS",
    "arch_name",
    "facts_from_buffer",
    "format_version",
    "host_arch",
    "is_macho",
    "read_macho_facts",
]

StrPath = Union[str, "os.PathLike[str]"]

#: Most slices a fat header may list (real universal binaries have 2-4; ``0xcafebabe`` is also
#: the magic of Java class files, whose "count" is their major version, 45 or more).
MAX_FAT_ARCHES = 32
#: Most load commands walked (real images have a few dozen; ld64 caps nothing, dyld neither).
MAX_LOAD_COMMANDS = 65536
#: Largest ``sizeofcmds`` accepted (torch's biggest dylib has a few KB of load commands).
MAX_SIZEOFCMDS = 32 << 20
#: Longest string read from a load command (dyld copies paths into ``PATH_MAX`` (1024) buffers).
MAX_NAME = 4096
#: How much of the file :func:`is_macho` reads.
HEAD_READ = 8

# <mach-o/loader.h>, <mach-o/fat.h>
MH_MAGIC = 0xFEEDFACE
MH_CIGAM = 0xCEFAEDFE
MH_MAGIC_64 = 0xFEEDFACF
MH_CIGAM_64 = 0xCFFAEDFE
FAT_MAGIC = 0xCAFEBABE
FAT_MAGIC_64 = 0xCAFEBABF

LC_REQ_DYLD = 0x80000000
LC_SEGMENT = 0x1
LC_LOAD_DYLIB = 0xC
LC_ID_DYLIB = 0xD
LC_SEGMENT_64 = 0x19
LC_UUID = 0x1B
LC_LOAD_WEAK_DYLIB = 0x18 | LC_REQ_DYLD
LC_RPATH = 0x1C | LC_REQ_DYLD
LC_REEXPORT_DYLIB = 0x1F | LC_REQ_DYLD
LC_LAZY_LOAD_DYLIB = 0x20
LC_LOAD_UPWARD_DYLIB = 0x23 | LC_REQ_DYLD
LC_VERSION_MIN_MACOSX = 0x24
LC_VERSION_MIN_IPHONEOS = 0x25
LC_DYLD_ENVIRONMENT = 0x27
LC_VERSION_MIN_TVOS = 0x2F
LC_VERSION_MIN_WATCHOS = 0x30
LC_BUILD_VERSION = 0x32

CPU_ARCH_ABI64 = 0x01000000
CPU_ARCH_ABI64_32 = 0x02000000
CPU_TYPE_X86 = 7
CPU_TYPE_X86_64 = CPU_TYPE_X86 | CPU_ARCH_ABI64
CPU_TYPE_ARM = 12
CPU_TYPE_ARM64 = CPU_TYPE_ARM | CPU_ARCH_ABI64
CPU_TYPE_ARM64_32 = CPU_TYPE_ARM | CPU_ARCH_ABI64_32
CPU_TYPE_POWERPC = 18
CPU_TYPE_POWERPC64 = CPU_TYPE_POWERPC | CPU_ARCH_ABI64
CPU_SUBTYPE_MASK = 0xFF000000
CPU_SUBTYPE_ARM64E = 2
CPU_SUBTYPE_X86_64_H = 8

#: ``mach_header.filetype`` values.
FILETYPES = {
    0x1: "object",
    0x2: "execute",
    0x3: "fvmlib",
    0x4: "core",
    0x5: "preload",
    0x6: "dylib",
    0x7: "dylinker",
    0x8: "bundle",
    0x9: "dylib_stub",
    0xA: "dsym",
    0xB: "kext_bundle",
    0xC: "fileset",
}

#: ``LC_BUILD_VERSION.platform`` values (``PLATFORM_*`` in loader.h).
PLATFORMS = {
    1: "macos",
    2: "ios",
    3: "tvos",
    4: "watchos",
    5: "bridgeos",
    6: "maccatalyst",
    7: "iossimulator",
    8: "tvossimulator",
    9: "watchossimulator",
    10: "driverkit",
    11: "visionos",
    12: "visionossimulator",
}

_VERSION_MIN = {
    LC_VERSION_MIN_MACOSX: "macos",
    LC_VERSION_MIN_IPHONEOS: "ios",
    LC_VERSION_MIN_TVOS: "tvos",
    LC_VERSION_MIN_WATCHOS: "watchos",
}

_ARCH_PREFERENCE = ("arm64", "x86_64")


class DylibKind(str, enum.Enum):
    """Which load command named a dependency."""

    LOAD = "load"  # LC_LOAD_DYLIB
    WEAK = "weak"  # LC_LOAD_WEAK_DYLIB: a missing library is not an error
    REEXPORT = "reexport"  # LC_REEXPORT_DYLIB
    LAZY = "lazy"  # LC_LAZY_LOAD_DYLIB (obsolete; loaded like LC_LOAD_DYLIB by dyld 4)
    UPWARD = "upward"  # LC_LOAD_UPWARD_DYLIB


_DYLIB_COMMANDS = {
    LC_LOAD_DYLIB: DylibKind.LOAD,
    LC_LOAD_WEAK_DYLIB: DylibKind.WEAK,
    LC_REEXPORT_DYLIB: DylibKind.REEXPORT,
    LC_LAZY_LOAD_DYLIB: DylibKind.LAZY,
    LC_LOAD_UPWARD_DYLIB: DylibKind.UPWARD,
}


def format_version(value: int) -> str:
    """A packed ``xxxx.yy.zz`` Mach-O version as text: ``0x050000`` -> ``"5.0.0"``."""
    return f"{value >> 16}.{(value >> 8) & 0xFF}.{value & 0xFF}"


@dataclass(frozen=True)
class DylibRef:
    """One dylib load command: the install name it asks for and the versions recorded at link
    time (``current_version`` of the library linked against, ``compatibility_version`` it
    promised)."""

    name: str
    kind: DylibKind
    current_version: int
    compatibility_version: int
    timestamp: int = 0

    @property
    def weak(self) -> bool:
        return self.kind is DylibKind.WEAK

    @property
    def current(self) -> str:
        return format_version(self.current_version)

    @property
    def compatibility(self) -> str:
        return format_version(self.compatibility_version)


@dataclass(frozen=True)
class MinOS:
    """The minimum OS an image was built for (``LC_BUILD_VERSION`` or ``LC_VERSION_MIN_*``)."""

    platform: str  # "macos", "ios", ... or "platform-N" for an unknown value
    version: int  # packed xxxx.yy.zz
    sdk: int  # packed, 0 when not recorded
    command: str  # "LC_BUILD_VERSION" or "LC_VERSION_MIN_MACOSX" ...

    @property
    def text(self) -> str:
        """``"11.0"`` (the patch level only when it is not zero, as ``otool`` prints it)."""
        major, minor, patch = self.version >> 16, (self.version >> 8) & 0xFF, self.version & 0xFF
        return f"{major}.{minor}.{patch}" if patch else f"{major}.{minor}"

    @property
    def parts(self) -> Tuple[int, int, int]:
        return (self.version >> 16, (self.version >> 8) & 0xFF, self.version & 0xFF)


@dataclass(frozen=True)
class MachOFacts:
    """What one architecture slice of a Mach-O file says about loading it.

    ``arch`` is the slice that was read and ``arches`` every slice the file holds, in file order
    (one entry for a thin file). ``slice_offset``/``slice_size`` locate the slice in the file.
    ``install_name`` is ``None`` for anything without ``LC_ID_DYLIB`` (executables, bundles such
    as Python extension modules). ``rpaths`` keeps duplicates and order, as dyld walks them.
    """

    path: str
    size: int
    mtime_ns: int
    arch: str
    arches: Tuple[str, ...]
    fat: bool
    cputype: int
    cpusubtype: int
    filetype: int
    flags: int
    is_64: bool
    little_endian: bool
    slice_offset: int
    slice_size: int
    ncmds: int
    sizeofcmds: int
    install_name: Optional[str]
    id_current_version: Optional[int]
    id_compatibility_version: Optional[int]
    dependencies: Tuple[DylibRef, ...]
    rpaths: Tuple[str, ...]
    min_os: Optional[MinOS]
    uuid: Optional[str]
    dyld_environment: Tuple[str, ...] = ()
    warnings: Tuple[str, ...] = ()

    @property
    def filetype_name(self) -> str:
        return FILETYPES.get(self.filetype, f"filetype-{self.filetype}")

    @property
    def is_dylib(self) -> bool:
        return self.filetype == 0x6

    @property
    def is_bundle(self) -> bool:
        return self.filetype == 0x8

    @property
    def is_executable(self) -> bool:
        return self.filetype == 0x2

    def dependency_names(self, *kinds: DylibKind) -> Tuple[str, ...]:
        """Install names of the dependencies of the given kinds (all kinds when none given)."""
        return tuple(d.name for d in self.dependencies if not kinds or d.kind in kinds)


# --------------------------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------------------------


def arch_name(cputype: int, cpusubtype: int = 0) -> str:
    """The name ``lipo``/``otool`` print for a CPU type (``"arm64"``, ``"x86_64"``, ...)."""
    sub = cpusubtype & ~CPU_SUBTYPE_MASK & 0xFFFFFFFF
    if cputype == CPU_TYPE_ARM64:
        return "arm64e" if sub == CPU_SUBTYPE_ARM64E else "arm64"
    if cputype == CPU_TYPE_X86_64:
        return "x86_64h" if sub == CPU_SUBTYPE_X86_64_H else "x86_64"
    names = {
        CPU_TYPE_X86: "i386",
        CPU_TYPE_ARM: "arm",
        CPU_TYPE_ARM64_32: "arm64_32",
        CPU_TYPE_POWERPC: "ppc",
        CPU_TYPE_POWERPC64: "ppc64",
    }
    return names.get(cputype, f"cpu-0x{cputype & 0xFFFFFFFF:x}")


def host_arch() -> Optional[str]:
    """The architecture a process on this machine runs as, on macOS; ``None`` elsewhere."""
    import sys

    if sys.platform != "darwin":
        return None
    machine = platform.machine()
    return {"arm64": "arm64", "x86_64": "x86_64"}.get(machine)


def _choose(arches: Sequence[str], wanted: Optional[str]) -> Optional[int]:
    if wanted is not None:
        return arches.index(wanted) if wanted in arches else None
    for pref in ((host_arch(),) if host_arch() else ()) + _ARCH_PREFERENCE:
        if pref in arches:
            return arches.index(pref)
    return 0 if arches else None


# --------------------------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------------------------


def _magic_kind(head: bytes) -> Optional[str]:
    if len(head) < 4:
        return None
    (le,) = struct.unpack_from("<I", head, 0)
    if le in (MH_MAGIC, MH_MAGIC_64, MH_CIGAM, MH_CIGAM_64):
        return "thin"
    (be,) = struct.unpack_from(">I", head, 0)
    if be in (FAT_MAGIC, FAT_MAGIC_64):
        return "fat"
    return None


def is_macho(path: StrPath) -> bool:
    """Whether ``path`` starts like a Mach-O file (thin, or fat with a plausible slice count).

    Reads :data:`HEAD_READ` bytes; never raises (an unreadable file is simply not Mach-O).
    """
    try:
        with open(os.fspath(path), "rb") as fh:
            head = fh.read(HEAD_READ)
    except (OSError, ValueError):
        return False
    kind = _magic_kind(head)
    if kind == "thin":
        return True
    if kind == "fat" and len(head) >= 8:
        count: int = struct.unpack_from(">I", head, 4)[0]
        return 1 <= count <= MAX_FAT_ARCHES
    return False


_NOT_MACHO = {
    "lfs": "a Git LFS pointer file, not the library itself",
    "html": "an HTML/XML text file (a web page saved under a library name?)",
    "elf": "an ELF file (a Linux binary), not a Mach-O image",
    "pe": "a PE file (a Windows binary), not a Mach-O image",
    "zip": "a ZIP archive, not a Mach-O image",
    "ar": "a static library (ar archive), not a Mach-O image",
}


def _not_macho_reason(head: bytes) -> str:
    if not head:
        return "empty file"
    if len(head) < 4:
        return f"file too small for a Mach-O header ({len(head)} bytes)"
    kind = sniff(head[:512])
    return (_NOT_MACHO.get(kind) if kind else None) or "no Mach-O magic (not a Mach-O image)"


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def _decode(raw: bytes) -> str:
    # dyld compares these names as bytes; keep every byte visible and the decoding injective
    # for the UTF-8 that real install names use.
    return raw.decode("utf-8", "backslashreplace")


class _Slice:
    """One thin Mach-O image inside ``data[base : base + size]``."""

    def __init__(self, path: str, data: Any, base: int, size: int) -> None:
        self.path = path
        self.data = data
        self.base = base
        self.size = size
        self.warnings: Dict[str, None] = {}

    def fail(self, reason: str) -> InvalidImageError:
        return _invalid(self.path, reason)

    def warn(self, text: str) -> None:
        if len(self.warnings) < 64:
            self.warnings[text] = None

    def header(self) -> Tuple[str, bool, bool, Tuple[int, ...]]:
        if self.size < 4:
            raise self.fail("file truncated inside the Mach-O header")
        (magic,) = struct.unpack_from("<I", self.data, self.base)
        if magic == MH_MAGIC_64:
            end, is64 = "<", True
        elif magic == MH_MAGIC:
            end, is64 = "<", False
        elif magic == MH_CIGAM_64:
            end, is64 = ">", True
        elif magic == MH_CIGAM:
            end, is64 = ">", False
        elif struct.unpack_from(">I", self.data, self.base)[0] in (FAT_MAGIC, FAT_MAGIC_64):
            raise self.fail("a fat file nested inside a fat file")
        else:
            raise self.fail(_not_macho_reason(bytes(self.data[self.base : self.base + 512])))
        hsize = 32 if is64 else 28
        if self.size < hsize:
            raise self.fail("file truncated inside the Mach-O header")
        fields = struct.unpack_from(end + "IIIIIII", self.data, self.base)
        return end, is64, end == "<", fields

    def need(self, what: str, cmdsize: int, n: int) -> None:
        if cmdsize < n:
            raise self.fail(f"{what}: cmdsize {cmdsize} too small (needs {n})")

    def cstring(self, cmd_off: int, cmd_size: int, str_off: int, what: str) -> str:
        """The NUL-terminated string at ``str_off`` inside the command at ``cmd_off``."""
        if str_off < 8 or str_off >= cmd_size:
            raise self.fail(f"{what}: string offset {str_off} is outside its load command")
        start = cmd_off + str_off
        stop = cmd_off + cmd_size
        end = self.data.find(b"\0", start, min(stop, start + MAX_NAME + 1))
        if end < 0:
            if stop - start > MAX_NAME:
                raise self.fail(f"{what}: string longer than {MAX_NAME} bytes")
            raise self.fail(f"{what}: string is not NUL-terminated inside its load command")
        return _decode(bytes(self.data[start:end]))


def _parse_slice(
    path: str, data: Any, base: int, size: int
) -> Tuple[_Slice, Dict[str, Any]]:
    sl = _Slice(path, data, base, size)
    end, is64, little, fields = sl.header()
    _magic, cputype, cpusubtype, filetype, ncmds, sizeofcmds, flags = fields
    hsize = 32 if is64 else 28
    if sizeofcmds > MAX_SIZEOFCMDS:
        raise sl.fail(f"sizeofcmds {sizeofcmds} exceeds the limit of {MAX_SIZEOFCMDS}")
    if ncmds > MAX_LOAD_COMMANDS:
        raise sl.fail(f"ncmds {ncmds} exceeds the limit of {MAX_LOAD_COMMANDS}")
    if hsize + sizeofcmds > size:
        raise sl.fail(
            f"truncated or corrupt: load commands end at 0x{hsize + sizeofcmds:x} "
            f"but the image has 0x{size:x} bytes"
        )
    if ncmds * 8 > sizeofcmds:
        raise sl.fail(f"{ncmds} load commands cannot fit in sizeofcmds {sizeofcmds}")

    install_name: Optional[str] = None
    id_versions: Tuple[Optional[int], Optional[int]] = (None, None)
    deps: List[DylibRef] = []
    rpaths: List[str] = []
    min_os: Optional[MinOS] = None
    uuid: Optional[str] = None
    env: List[str] = []
    u32 = end + "I"

    pos = base + hsize
    limit = pos + sizeofcmds
    for index in range(ncmds):
        if pos + 8 > limit:
            raise sl.fail(f"load command {index} starts past the end of sizeofcmds")
        cmd, cmdsize = struct.unpack_from(end + "II", data, pos)
        if cmdsize < 8:
            raise sl.fail(f"load command {index} has cmdsize {cmdsize} (less than 8)")
        if cmdsize % 4:
            raise sl.fail(f"load command {index} has cmdsize {cmdsize} (not a multiple of 4)")
        if pos + cmdsize > limit:
            raise sl.fail(f"load command {index} extends past the end of sizeofcmds")
        what = f"load command {index} (0x{cmd:x})"
        if cmd in _DYLIB_COMMANDS or cmd == LC_ID_DYLIB:
            sl.need(what, cmdsize, 24)
            name_off, stamp, current, compat = struct.unpack_from(end + "IIII", data, pos + 8)
            name = sl.cstring(pos, cmdsize, name_off, what)
            if cmd == LC_ID_DYLIB:
                if install_name is not None:
                    raise sl.fail("more than one LC_ID_DYLIB")
                install_name = name
                id_versions = (current, compat)
            else:
                deps.append(DylibRef(name, _DYLIB_COMMANDS[cmd], current, compat, stamp))
        elif cmd == LC_RPATH:
            sl.need(what, cmdsize, 12)
            (off,) = struct.unpack_from(u32, data, pos + 8)
            rp = sl.cstring(pos, cmdsize, off, what)
            if rp in rpaths:
                sl.warn(f"LC_RPATH {rp!r} is listed more than once")
            rpaths.append(rp)
        elif cmd == LC_DYLD_ENVIRONMENT:
            sl.need(what, cmdsize, 12)
            (off,) = struct.unpack_from(u32, data, pos + 8)
            env.append(sl.cstring(pos, cmdsize, off, what))
        elif cmd == LC_BUILD_VERSION:
            sl.need(what, cmdsize, 24)
            plat, minos, sdk, ntools = struct.unpack_from(end + "IIII", data, pos + 8)
            if 24 + 8 * ntools > cmdsize:
                raise sl.fail(f"{what}: {ntools} build tools do not fit in cmdsize {cmdsize}")
            known = PLATFORMS.get(plat)
            if known is None:
                sl.warn(f"LC_BUILD_VERSION names unknown platform {plat}")
            pname = known or f"platform-{plat}"
            if min_os is None or (min_os.platform != "macos" and pname == "macos"):
                min_os = MinOS(pname, minos, sdk, "LC_BUILD_VERSION")
        elif cmd in _VERSION_MIN:
            sl.need(what, cmdsize, 16)
            version, sdk = struct.unpack_from(end + "II", data, pos + 8)
            plat_name = _VERSION_MIN[cmd]
            if min_os is None:
                cname = {LC_VERSION_MIN_MACOSX: "LC_VERSION_MIN_MACOSX",
                         LC_VERSION_MIN_IPHONEOS: "LC_VERSION_MIN_IPHONEOS",
                         LC_VERSION_MIN_TVOS: "LC_VERSION_MIN_TVOS",
                         LC_VERSION_MIN_WATCHOS: "LC_VERSION_MIN_WATCHOS"}[cmd]
                min_os = MinOS(plat_name, version, sdk, cname)
        elif cmd == LC_UUID:
            sl.need(what, cmdsize, 24)
            raw = bytes(data[pos + 8 : pos + 24])
            h = raw.hex().upper()
            uuid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        elif cmd in (LC_SEGMENT, LC_SEGMENT_64):
            seg64 = cmd == LC_SEGMENT_64
            sl.need(what, cmdsize, 72 if seg64 else 56)
            segname = bytes(data[pos + 8 : pos + 24]).split(b"\0", 1)[0]
            if seg64:
                fileoff, filesize = struct.unpack_from(end + "QQ", data, pos + 40)
            else:
                fileoff, filesize = struct.unpack_from(end + "II", data, pos + 32)
            if filesize and fileoff + filesize > size:
                seg = _decode(segname) or "(unnamed)"
                raise sl.fail(
                    f"truncated: segment {seg} needs bytes up to 0x{fileoff + filesize:x} "
                    f"but the image has 0x{size:x}"
                )
        pos += cmdsize
    if pos != limit:
        sl.warn(f"{limit - pos} bytes of sizeofcmds follow the last load command")

    return sl, {
        "cputype": cputype,
        "cpusubtype": cpusubtype,
        "filetype": filetype,
        "flags": flags,
        "is_64": is64,
        "little_endian": little,
        "ncmds": ncmds,
        "sizeofcmds": sizeofcmds,
        "install_name": install_name,
        "id_current_version": id_versions[0],
        "id_compatibility_version": id_versions[1],
        "dependencies": tuple(deps),
        "rpaths": tuple(rpaths),
        "min_os": min_os,
        "uuid": uuid,
        "dyld_environment": tuple(env),
    }


def _fat_slices(path: str, data: Any, size: int) -> List[Tuple[int, int, int, int]]:
    """``(cputype, cpusubtype, offset, size)`` of each slice listed by a fat header."""
    if size < 8:
        raise _invalid(path, "file truncated inside the fat header")
    magic, count = struct.unpack_from(">II", data, 0)
    wide = magic == FAT_MAGIC_64
    if count == 0:
        raise _invalid(path, "fat header lists no architectures")
    if count > MAX_FAT_ARCHES:
        raise _invalid(
            path,
            f"fat header lists {count} architectures (more than {MAX_FAT_ARCHES}; "
            "a Java class file?)",
        )
    entry = 32 if wide else 20
    if 8 + entry * count > size:
        raise _invalid(path, "file truncated inside the fat header")
    out: List[Tuple[int, int, int, int]] = []
    for i in range(count):
        at = 8 + entry * i
        if wide:
            cpu, sub, off, sz, _align, _res = struct.unpack_from(">IIQQII", data, at)
        else:
            cpu, sub, off, sz, _align = struct.unpack_from(">IIIII", data, at)
        if off < 8 + entry * count or off + sz > size:
            raise _invalid(
                path,
                f"truncated or corrupt: fat slice {i} ({arch_name(cpu, sub)}) at "
                f"0x{off:x}+0x{sz:x} is outside the file (0x{size:x} bytes)",
            )
        out.append((cpu, sub, off, sz))
    return out


def facts_from_buffer(
    data: Any,
    path: str = "<memory>",
    *,
    arch: Optional[str] = None,
    mtime_ns: int = 0,
) -> MachOFacts:
    """:func:`read_macho_facts` over bytes, a bytearray or an mmap already in memory."""
    if not isinstance(data, (bytes, bytearray, mmap.mmap)):
        data = bytes(data)
    size = len(data)
    head = bytes(data[:8])
    kind = _magic_kind(head)
    if kind is None:
        raise _invalid(path, _not_macho_reason(bytes(data[:512])))
    warnings: List[str] = []
    if kind == "fat":
        slices = _fat_slices(path, data, size)
        names = tuple(arch_name(c, s) for c, s, _o, _z in slices)
        pick = _choose(names, arch)
        if pick is None:
            raise _invalid(
                path, f"no {arch} slice in this universal file (it has {', '.join(names)})"
            )
        cpu, sub, base, slice_size = slices[pick]
        sl, info = _parse_slice(path, data, base, slice_size)
        if info["cputype"] != cpu:
            raise _invalid(
                path,
                f"fat header says slice {pick} is {names[pick]} but its Mach-O header says "
                f"{arch_name(info['cputype'], info['cpusubtype'])}",
            )
        fat = True
    else:
        sl, info = _parse_slice(path, data, 0, size)
        names = (arch_name(info["cputype"], info["cpusubtype"]),)
        if arch is not None and names[0] != arch:
            raise _invalid(path, f"the image is {names[0]}, not {arch}")
        pick, base, slice_size, fat = 0, 0, size, False
    warnings.extend(sl.warnings)
    return MachOFacts(
        path=path,
        size=size,
        mtime_ns=mtime_ns,
        arch=names[pick],
        arches=names,
        fat=fat,
        slice_offset=base,
        slice_size=slice_size,
        warnings=tuple(warnings),
        **info,
    )


def read_macho_facts(path: StrPath, *, arch: Optional[str] = None) -> MachOFacts:
    """The load-relevant facts of one slice of the Mach-O file at ``path``.

    ``arch`` picks the slice of a universal file (``"arm64"``, ``"x86_64"``, ``"arm64e"``...);
    by default the host's architecture on macOS, else ``arm64``, else ``x86_64``, else the first
    slice. Asking for an architecture the file does not hold, even a thin file, raises
    :class:`InvalidImageError` (dyld: "incompatible architecture").

    Raises :class:`InvalidImageError` for anything that is not a readable Mach-O image.
    """
    p = os.fspath(path)
    f = OpenFile(p, "Mach-O")
    try:
        if f.size == 0:
            raise _invalid(p, "empty file")
        try:
            mm = mmap.mmap(f.fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            reason = _os_reason(exc) if isinstance(exc, OSError) else "cannot map the file"
            raise _invalid(p, reason) from None
        try:
            return facts_from_buffer(mm, p, arch=arch, mtime_ns=f.mtime_ns)
        finally:
            mm.close()
    finally:
        f.close()
