"""A small, complete and bounded reader of the ELF facts the glibc loader model needs.

Three entry points:

* :func:`read_elf_header` reads the first 64 bytes only and reports what ``ld.so`` looks at
  before it maps anything (class, byte order, ``e_machine``, OS ABI, type): the loader model
  uses it to skip files of the wrong class or machine the way ``open_verify`` does.
* :func:`is_elf` says whether a file starts with the ELF magic (it never raises).
* :func:`read_elf_facts` maps the file (``mmap``, never a full read) and fills an
  :class:`ElfFacts`: the header fields, ``PT_INTERP``, the dynamic section (``DT_NEEDED`` in
  order, ``DT_SONAME``, ``DT_RPATH``, ``DT_RUNPATH``, ``DT_FLAGS``, ``DT_FLAGS_1``), version
  needs and definitions, and (unless ``symbols=False``) the dynamic symbols: what the object
  needs from others and what it defines, with versions.

Everything is read the way glibc's ``ld.so`` reads it, not the way ``readelf`` does:

* the dynamic section is found through ``PT_DYNAMIC`` and every address in it (``DT_STRTAB``,
  ``DT_SYMTAB``, ``DT_VERSYM``, ``DT_VERNEED``, ``DT_VERDEF``, the hash tables) is mapped through
  the ``PT_LOAD`` segments (virtual address -> file offset; a later segment wins where two
  overlap, as with ``mmap(MAP_FIXED)``); section headers are only used to count the dynamic
  symbols (``SHT_DYNSYM``), falling back to ``DT_HASH``'s ``nchain`` or a walk of
  ``DT_GNU_HASH``;
* of repeated tags the last one wins (``elf_get_dynamic_info``), except ``DT_NEEDED``, which are
  all kept in order; ``DT_RPATH`` is reported even when ``DT_RUNPATH`` is present (``ld.so``
  then ignores it: that is the loader model's business, so both are kept raw);
* ``Elf_Verneed``/``Elf_Vernaux`` and ``Elf_Verdef`` chains are walked until ``vn_next``,
  ``vna_next`` or ``vd_next`` is 0 (``_dl_check_map_versions`` ignores ``DT_VERNEEDNUM`` and
  ``vn_cnt``; a disagreement is a warning); a record whose version is not 1 makes the object
  unloadable ("unsupported version ... of Verneed record") and raises;
* a symbol's version is ``versym & 0x7fff`` looked up among the ``vna_other`` and ``vd_ndx``
  indices (the ``VER_FLG_BASE`` definition excluded, like ``l_versions``); the versym table only
  counts when the object has some version index (``ndx_high > 0``), as in glibc;
* definitions follow ``check_match``/``do_lookup_x`` (``elf/dl-lookup.c``): a dynamic symbol
  defines its name when ``st_shndx != SHN_UNDEF``, its value is non-zero (or it is ``SHN_ABS``
  or ``STT_TLS``), its type is NOTYPE/OBJECT/FUNC/COMMON/TLS/GNU_IFUNC, its binding GLOBAL,
  WEAK or GNU_UNIQUE and its visibility neither HIDDEN nor INTERNAL. :meth:`ElfFacts.defines`
  answers a lookup with ``check_match``'s version rules (see there).

Not modelled: which undefined symbols relocations really use (``ld.so`` only looks up those),
symbols a hash table does not reach, and the ``ELF_RTYPE_CLASS_PLT`` rule that lets an
executable's undefined-but-valued PLT symbols satisfy non-PLT references.

Every bound is explicit (:data:`MAX_NAME`, :data:`MAX_DYNAMIC`, :data:`MAX_VERNEED`,
:data:`MAX_VERNAUX`, :data:`MAX_VERDEF`, :data:`MAX_SECTIONS`, :data:`MAX_SYMBOLS`, a budget for
all strings proportional to the file size; every table must lie inside the file-backed part of
a ``PT_LOAD`` segment and every chain walk stops at one of those bounds), so hostile input cannot
make the reader hang or allocate much more than the file's size. Anything that is not a readable
ELF file (too short, no magic, truncated: a ``PT_LOAD`` segment, ``PT_INTERP``, the program or
section header table running past the end of the file; a table outside every segment...) raises
:class:`~torchdll.errors.InvalidImageError` and nothing else; survivable oddities end up in
:attr:`ElfFacts.warnings`.

Strings are decoded as UTF-8 with ``surrogateescape`` (what :func:`os.fsdecode` does on Linux),
so names compare exactly and a ``DT_NEEDED`` entry matches the directory listing it names.

Cost, torch 2.13.0's ``libtorch_cpu.so`` (434 MB, 75,415 dynamic symbols, 5 MB of strings),
page cache warm: ``symbols=False`` about 0.3 ms (a handful of pages); ``symbols=True`` about
130-160 ms (one ``iter_unpack`` pass over ``.dynsym``, the string table decoded in bulk).
"""

from __future__ import annotations

import array
import itertools
import mmap
import os
import stat
import struct
import sys
from dataclasses import astuple, dataclass, field, fields, replace
from typing import Any, Dict, FrozenSet, Iterator, List, Optional, Set, Tuple, Union

from ._fileio import OpenFile, Warnings, os_reason, read_at, sniff
from .errors import InvalidImageError


def _invalid(path: str, reason: str) -> InvalidImageError:
    return InvalidImageError(path, reason, "ELF")


__all__ = [
    "MAX_NAME",
    "ElfFacts",
    "ElfHeader",
    "UndefinedSymbol",
    "VersionNeed",
    "is_elf",
    "read_elf_facts",
    "read_elf_header",
]

StrPath = Union[str, "os.PathLike[str]"]

#: Longest string read (symbol, library or version name; longer ones are cut, with a warning).
MAX_NAME = 1 << 16
#: Most dynamic-section entries read (real objects have well under 200).
MAX_DYNAMIC = 1 << 16
#: Most ``Elf_Verneed`` records (one per needed file) walked.
MAX_VERNEED = 4096
#: Most ``Elf_Vernaux`` records walked, over all files.
MAX_VERNAUX = 1 << 16
#: Most ``Elf_Verdef`` records walked (version indices are 15-bit).
MAX_VERDEF = 1 << 15
#: Most section headers scanned for ``SHT_DYNSYM`` (more: the section table is ignored).
MAX_SECTIONS = 1 << 20
#: Most dynamic symbols read (libtorch_cpu.so has about 75,000).
MAX_SYMBOLS = 1 << 24
MAX_RELOCS = 1 << 25  # entries per relocation table (libtorch_cpu.so has ~1.7 M)
#: Most warnings kept in :attr:`ElfFacts.warnings`.
MAX_WARNINGS = 64

ELFCLASS32 = 1
ELFCLASS64 = 2
ELFDATA2LSB = 1
ELFDATA2MSB = 2
ELFOSABI_SYSV = 0
ELFOSABI_GNU = 3

PT_LOAD = 1
PT_DYNAMIC = 2
PT_INTERP = 3
PT_TLS = 7
PT_GNU_STACK = 0x6474E551
PF_X = 1

SHT_DYNSYM = 11
SHN_UNDEF = 0
SHN_ABS = 0xFFF1
SHN_XINDEX = 0xFFFF

DT_NULL = 0
DT_NEEDED = 1
DT_PLTRELSZ = 2
DT_RELA = 7
DT_RELASZ = 8
DT_RELAENT = 9
DT_REL = 17
DT_RELSZ = 18
DT_RELENT = 19
DT_PLTREL = 20
DT_JMPREL = 23
DT_HASH = 4
DT_STRTAB = 5
DT_SYMTAB = 6
DT_STRSZ = 10
DT_SYMENT = 11
DT_SONAME = 14
DT_RPATH = 15
DT_RUNPATH = 29
DT_FLAGS = 30
DT_GNU_HASH = 0x6FFFFEF5
DT_VERSYM = 0x6FFFFFF0
DT_FLAGS_1 = 0x6FFFFFFB
DT_VERDEF = 0x6FFFFFFC
DT_VERDEFNUM = 0x6FFFFFFD
DT_VERNEED = 0x6FFFFFFE
DT_VERNEEDNUM = 0x6FFFFFFF

VER_FLG_BASE = 0x1
VER_FLG_WEAK = 0x2
VERSYM_HIDDEN = 0x8000

STB_LOCAL = 0
STB_GLOBAL = 1
STB_WEAK = 2
STB_GNU_UNIQUE = 10
STT_TLS = 6
STV_INTERNAL = 1
STV_HIDDEN = 2

#: Symbol types ``check_match`` accepts as definitions: NOTYPE, OBJECT, FUNC, COMMON, TLS,
#: GNU_IFUNC.
_ALLOWED_STT = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 5) | (1 << 6) | (1 << 10)
_DEFINING_BINDS = frozenset([STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE])

_MAGIC = b"\x7fELF"
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ElfHeader:
    """What ``ld.so``'s ``open_verify`` reads from an ELF header (first 64 bytes only)."""

    path: str
    size: int  # file size in bytes (fstat)
    mtime_ns: int  # modification time (fstat)
    elf_class: int  # 32 or 64 (EI_CLASS)
    little_endian: bool  # EI_DATA is ELFDATA2LSB
    machine: int  # e_machine (62 = x86-64, 183 = aarch64, 3 = i386)
    osabi: int  # EI_OSABI (0 SYSV, 3 GNU)
    abi_version: int  # EI_ABIVERSION
    type: int  # e_type (1 REL, 2 EXEC, 3 DYN, 4 CORE)
    # What glibc would say about the rest of e_ident when class, byte order and machine match
    # the process ("ELF file OS ABI invalid", "ELF file ABI version invalid", "nonzero padding
    # in e_ident"), or None. The GNU ABI-version ceiling (LIBC_ABI_MAX) varies with glibc
    # releases and is not checked.
    ident_error: Optional[str] = None


@dataclass(frozen=True)
class VersionNeed:
    """One ``Elf_Verneed`` entry: versions this object needs from the object named ``file``."""

    file: str
    versions: Tuple[str, ...]  # version names without VER_FLG_WEAK, in file order
    weak: Tuple[str, ...] = ()  # versions flagged VER_FLG_WEAK (a missing one is only a warning)


@dataclass(frozen=True)
class UndefinedSymbol:
    """A non-local undefined dynamic symbol this object needs from some other object."""

    name: str
    version: Optional[str]  # version name from .gnu.version/.gnu.version_r, None if unversioned
    weak: bool  # STB_WEAK: not finding it is not an error
    # The file the version is expected in (the Elf_Verneed vn_file of the version's index):
    # glibc reports "symbol X version V not defined in file F" when F is loaded without it.
    file: Optional[str] = None
    # Which relocations look it up: RELOC_EAGER (DT_RELA/DT_REL: data, addresses; bound when
    # the object is relocated, whatever the mode), RELOC_PLT (DT_JMPREL: deferred under
    # RTLD_LAZY), both, or 0 (never looked up). RELOC_EAGER | RELOC_PLT when not known.
    reloc: int = field(default=3, compare=False)


RELOC_EAGER = 1
RELOC_PLT = 2


@dataclass(frozen=True)
class ElfFacts:
    """Everything the glibc loader model needs to know about one ELF object."""

    path: str
    size: int
    mtime_ns: int
    elf_class: int  # 32 or 64
    little_endian: bool
    machine: int  # e_machine (62 = x86-64, 183 = aarch64, 3 = i386)
    osabi: int
    type: int  # e_type (2 EXEC, 3 DYN)
    interpreter: Optional[str]  # PT_INTERP
    soname: Optional[str]
    needed: Tuple[str, ...]
    rpath: Tuple[str, ...]  # DT_RPATH split on ':' (raw, $ORIGIN not expanded; empty kept as '')
    runpath: Tuple[str, ...]  # DT_RUNPATH split on ':'
    flags: int  # DT_FLAGS
    flags_1: int  # DT_FLAGS_1 (DF_1_NODEFLIB = 0x800)
    version_needs: Tuple[VersionNeed, ...]
    version_defs: Tuple[str, ...]  # Elf_Verdef names, excluding the VER_FLG_BASE entry
    undefined: Tuple[UndefinedSymbol, ...]  # in the order ld.so's relocations look them up
    defined: FrozenSet[Tuple[str, Optional[str]]] = field(repr=False, default=frozenset())
    # (name, version) for every defined global/weak/unique dynamic symbol (see the module
    # docstring for the exact filter); version None when the object has no versym table or the
    # symbol's index names no version (0, 1, the base definition). A hidden (non-default)
    # version is still listed with its version.
    warnings: Tuple[str, ...] = ()
    # Names with at least one definition whose versym lacks the hidden bit 0x8000 (all defined
    # names when there is no versym table).
    visible: FrozenSet[str] = field(repr=False, default=frozenset())
    # Names with a definition that carries no version and no hidden bit: what a *versioned*
    # reference accepts when the exact version is missing (check_match's "default one").
    unversioned: FrozenSet[str] = field(repr=False, default=frozenset())
    # Names an *unversioned* reference binds to (check_match + do_lookup_x): a definition with
    # versym index 0, 1 or 2 (the oldest version), or exactly one non-hidden definition with a
    # higher index; every defined name when there is no versym table.
    binds_unversioned: FrozenSet[str] = field(repr=False, default=frozenset())
    has_versym: bool = False  # DT_VERSYM present and some version index defined (l_versyms)
    symbols_read: bool = False  # False when read with symbols=False: no symbol facts at all
    symbol_count: int = 0  # dynamic symbols in the table (index 0 included), 0 if not read
    version_base: Optional[str] = None  # name of the VER_FLG_BASE Elf_Verdef (usually the soname)
    abi_version: int = 0  # EI_ABIVERSION
    ident_error: Optional[str] = None  # see ElfHeader.ident_error
    # PT_GNU_STACK asks for an executable stack (PF_X); None when there is no PT_GNU_STACK
    # (then the architecture's default applies: executable on x86). Since glibc 2.41 dlopen
    # fails for such a library instead of making the stack executable.
    exec_stack: Optional[bool] = None
    tls_size: int = 0  # PT_TLS p_memsz (static TLS the object needs; 0 without PT_TLS)

    def defines(self, name: str, version: Optional[str]) -> bool:
        """Would a reference to ``name`` (at ``version``, or unversioned) bind here?

        glibc's ``check_match`` (``elf/dl-lookup.c``) for one object:

        * ``version`` ``None``: with no versym table, any definition; otherwise a definition
          with versym index 0, 1 or 2 (the oldest version, hidden or not), or exactly one
          non-hidden definition with a higher index (``num_versions == 1``);
        * ``version`` ``V``: a definition at ``V`` (hidden or not); or a definition without a
          version and without the hidden bit (the unversioned "default one"); or, when the
          object has no versym table, any definition.

        Version names are compared by name (glibc also compares the ELF hash stored in the
        file). One case is the caller's to catch: a versioned reference that reaches the very
        file its ``Elf_Verneed`` names (:attr:`UndefinedSymbol.file`) while that file has no
        versym table (``has_versym`` false) makes ``ld.so`` abort ("Inconsistency detected by
        ld.so: dl-lookup.c: ...: check_match: Assertion ... failed!"); this method answers
        ``True`` there, as glibc does for any other object. Raises :class:`ValueError` when the
        facts were read with ``symbols=False``.
        """
        if not self.symbols_read:
            raise ValueError(f"{self.path}: dynamic symbols were not read (symbols=False)")
        if version is None:
            return name in self.binds_unversioned
        return (name, version) in self.defined or name in self.unversioned


# --------------------------------------------------------------------------------------------
# Errors and file access (same reasons as torchdll._pe)
# --------------------------------------------------------------------------------------------


_NOT_ELF = {
    "lfs": "a Git LFS pointer file, not the library itself",
    "ld-script": "a GNU ld linker script (text), not a shared object",
    "html": "an HTML/XML text file",
    "pe": "a PE image (a Windows binary)",
    "macho": "a Mach-O file (a macOS binary)",
    "zip": "a ZIP archive",
    "ar": "a static library (ar archive)",
    "script": "a script",
}


def _not_elf_reason(head: bytes) -> str:
    """glibc's "invalid ELF header", with a hint at what the file is when that is cheap."""
    kind = sniff(head[:512])
    hint = _NOT_ELF.get(kind) if kind else None
    return f"invalid ELF header ({hint})" if hint else "invalid ELF header"


def _decode(raw: bytes) -> str:
    return raw.decode(_ENCODING, _ERRORS)


# --------------------------------------------------------------------------------------------
# Header
# --------------------------------------------------------------------------------------------


class _Formats:
    """``struct`` layouts of one ELF class and byte order."""

    __slots__ = (
        "dyn",
        "ehdr",
        "is64",
        "phdr",
        "shdr",
        "swap",
        "sym",
        "u32",
        "verdaux",
        "verdef",
        "vernaux",
        "verneed",
        "word",
    )

    def __init__(self, is64: bool, little: bool) -> None:
        e = "<" if little else ">"
        self.is64 = is64
        if is64:
            self.ehdr = struct.Struct(e + "16sHHIQQQIHHHHHH")
            # p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
            self.phdr = struct.Struct(e + "IIQQQQQQ")
            # sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info, ...
            self.shdr = struct.Struct(e + "IIQQQQIIQQ")
            self.dyn = struct.Struct(e + "QQ")
            # st_name, st_info, st_other, st_shndx, st_value, st_size
            self.sym = struct.Struct(e + "IBBHQQ")
            self.word = 8
        else:
            self.ehdr = struct.Struct(e + "16sHHIIIIIHHHHHH")
            # p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags, p_align
            self.phdr = struct.Struct(e + "IIIIIIII")
            self.shdr = struct.Struct(e + "IIIIIIIIII")
            self.dyn = struct.Struct(e + "II")
            # st_name, st_value, st_size, st_info, st_other, st_shndx
            self.sym = struct.Struct(e + "IIIBBH")
            self.word = 4
        self.verneed = struct.Struct(e + "HHIII")  # vn_version, vn_cnt, vn_file, vn_aux, vn_next
        self.vernaux = struct.Struct(e + "IHHII")  # vna_hash, vna_flags, vna_other, vna_name, next
        self.verdef = struct.Struct(e + "HHHHIII")  # vd_version, flags, ndx, cnt, hash, aux, next
        self.verdaux = struct.Struct(e + "II")  # vda_name, vda_next
        self.u32 = struct.Struct(e + "I")
        self.swap = little != (sys.byteorder == "little")


_FORMATS = {
    (is64, little): _Formats(is64, little) for is64 in (False, True) for little in (False, True)
}


class _RawHeader:
    """The parsed ELF header: the public part plus the table positions."""

    __slots__ = ("fmt", "head", "phentsize", "phnum", "phoff", "shentsize", "shnum", "shoff")

    def __init__(self, head: ElfHeader, fmt: _Formats, fields: Tuple[Any, ...]) -> None:
        self.head = head
        self.fmt = fmt
        (_ident, _type, _machine, _version, _entry, self.phoff, self.shoff, _flags, _ehsize,
         self.phentsize, self.phnum, self.shentsize, self.shnum, _shstrndx) = fields


def _parse_header(path: str, data: bytes, size: int, mtime_ns: int) -> _RawHeader:
    """Validate and parse the ELF header at the start of ``data`` (at least its first bytes)."""
    if len(data) < 4 or data[:4] != _MAGIC:
        if not data:
            raise _invalid(path, "file too short (empty file)")
        if _MAGIC.startswith(bytes(data[:4])):
            raise _invalid(path, f"file too short ({size} bytes)")
        raise _invalid(path, _not_elf_reason(bytes(data[:512])))
    if len(data) < 6:
        raise _invalid(path, f"file too short ({size} bytes)")
    ei_class, ei_data = data[4], data[5]
    if ei_class not in (ELFCLASS32, ELFCLASS64):
        raise _invalid(path, f"invalid ELF class {ei_class} (EI_CLASS)")
    if ei_data not in (ELFDATA2LSB, ELFDATA2MSB):
        raise _invalid(path, f"invalid ELF data encoding {ei_data} (EI_DATA)")
    fmt = _FORMATS[(ei_class == ELFCLASS64, ei_data == ELFDATA2LSB)]
    if len(data) < fmt.ehdr.size:
        raise _invalid(path, f"file too short ({size} bytes)")
    if data[6] != 1:
        raise _invalid(path, "ELF file version ident does not match current one")
    fields = fmt.ehdr.unpack_from(data, 0)
    ident: bytes = fields[0]
    e_type, machine, version = fields[1], fields[2], fields[3]
    phentsize, phnum = fields[9], fields[10]
    if version != 1:
        raise _invalid(path, "ELF file version does not match current one")
    if phnum and phentsize != fmt.phdr.size:
        raise _invalid(path, "ELF file's phentsize not the expected size")
    osabi, abi_version = ident[7], ident[8]
    ident_error: Optional[str] = None
    if osabi not in (ELFOSABI_SYSV, ELFOSABI_GNU):
        ident_error = "ELF file OS ABI invalid"
    elif abi_version != 0 and osabi != ELFOSABI_GNU:
        ident_error = "ELF file ABI version invalid"
    elif any(ident[9:16]):
        ident_error = "nonzero padding in e_ident"
    head = ElfHeader(
        path=path,
        size=size,
        mtime_ns=mtime_ns,
        elf_class=64 if fmt.is64 else 32,
        little_endian=ei_data == ELFDATA2LSB,
        machine=machine,
        osabi=osabi,
        abi_version=abi_version,
        type=e_type,
        ident_error=ident_error,
    )
    return _RawHeader(head, fmt, fields)


def read_elf_header(path: StrPath) -> ElfHeader:
    """The ELF header of ``path``, reading only its first 64 bytes.

    Raises :class:`InvalidImageError` with a glibc-like reason for anything that is not an ELF
    file ("file too short", "invalid ELF header", "ELF file version does not match current
    one", "ELF file's phentsize not the expected size"...) and for files that cannot be opened.
    A valid header of another class, byte order or machine is *not* an error: ``ld.so`` skips
    such files, and so should the caller.
    """
    p = os.fspath(path)
    f = OpenFile(p, "ELF")
    try:
        try:
            head = read_at(f.fd, 0, 64)
        except OSError as exc:
            raise _invalid(p, os_reason(exc)) from None
    finally:
        f.close()
    return _parse_header(p, head, f.size, f.mtime_ns).head


def is_elf(path: StrPath) -> bool:
    """Whether ``path`` is a regular file that starts with the ELF magic. Never raises."""
    try:
        p = os.fspath(path)
        f = OpenFile(p, "ELF")
    except (InvalidImageError, TypeError, ValueError):
        return False
    try:
        return read_at(f.fd, 0, 4) == _MAGIC
    except OSError:
        return False
    finally:
        f.close()


# --------------------------------------------------------------------------------------------
# The mapped object
# --------------------------------------------------------------------------------------------


class _Segment:
    __slots__ = ("fend", "mend", "offset", "vaddr")

    def __init__(self, vaddr: int, fend: int, mend: int, offset: int) -> None:
        self.vaddr = vaddr  # first virtual address
        self.fend = fend  # one past the last file-backed address
        self.mend = mend  # one past the last mapped address (the rest reads as zeros)
        self.offset = offset  # file offset of ``vaddr``


class _Elf:
    """An ELF file over a buffer (an mmap, or bytes in tests): segments, strings, warnings."""

    def __init__(self, path: str, data: Any, raw: _RawHeader) -> None:
        self.path = path
        self.data = data
        self.size = raw.head.size
        self.raw = raw
        self.fmt = raw.fmt
        self._warnings = Warnings(MAX_WARNINGS)
        self.budget = 4 * self.size + (1 << 20)
        self.loads: List[_Segment] = []

    def fail(self, reason: str) -> InvalidImageError:
        return _invalid(self.path, reason)

    def warn(self, text: str) -> None:
        self._warnings.add(text)

    @property
    def warnings(self) -> Tuple[str, ...]:
        return tuple(self._warnings.items())

    def spend(self, n: int) -> None:
        self.budget -= n
        if self.budget < 0:
            raise self.fail("string tables larger than the file can hold")

    # -- virtual addresses ----------------------------------------------------------------

    def segment(self, vaddr: int) -> Optional[_Segment]:
        """The PT_LOAD segment mapping ``vaddr`` (the last one, where segments overlap)."""
        for seg in reversed(self.loads):
            if seg.vaddr <= vaddr < seg.mend:
                return seg
        return None

    def avail(self, vaddr: int, what: str) -> Tuple[int, int]:
        """``(file offset, file-backed bytes from there)`` for ``vaddr``; raises if unmapped."""
        seg = self.segment(vaddr)
        if seg is None:
            raise self.fail(f"{what} at address 0x{vaddr:x} is outside every PT_LOAD segment")
        if vaddr >= seg.fend:
            raise self.fail(
                f"{what} at address 0x{vaddr:x} lies in the zero-filled (bss) part of a segment"
            )
        return seg.offset + (vaddr - seg.vaddr), seg.fend - vaddr

    def map(self, vaddr: int, n: int, what: str) -> int:
        """File offset of ``n`` file-backed bytes at ``vaddr``; raises if they are not."""
        off, avail = self.avail(vaddr, what)
        if n > avail:
            raise self.fail(
                f"{what} at address 0x{vaddr:x} ({n} bytes) runs past the end of its PT_LOAD "
                "segment's file data (truncated or corrupt)"
            )
        return off

    def read(self, vaddr: int, n: int, what: str) -> bytes:
        off = self.map(vaddr, n, what)
        return bytes(self.data[off : off + n])


class _StrTab:
    """``DT_STRTAB``: NUL-terminated strings at offsets below ``DT_STRSZ``."""

    __slots__ = ("cache", "elf", "off", "size")

    def __init__(self, elf: _Elf, off: int, size: int) -> None:
        self.elf = elf
        self.off = off
        self.size = size
        self.cache: Dict[int, str] = {}

    def get(self, index: int, what: str) -> Optional[str]:
        """The string at ``index``; ``None`` (and a warning) when ``index`` is out of range."""
        s = self.cache.get(index)
        if s is not None:
            return s
        if index >= self.size:
            self.elf.warn(f"{what}: string offset 0x{index:x} is outside DT_STRTAB "
                          f"(0x{self.size:x} bytes)")
            return None
        data = self.elf.data
        start = self.off + index
        left = self.size - index
        end = data.find(b"\0", start, start + min(left, MAX_NAME + 1))
        if end < 0:
            if left <= MAX_NAME:
                self.elf.warn(f"{what}: string at 0x{index:x} is not NUL-terminated inside "
                              "DT_STRTAB")
                end = start + left
            else:
                self.elf.warn(f"{what}: string at 0x{index:x} is longer than {MAX_NAME} bytes; "
                              "cut")
                end = start + MAX_NAME
        self.elf.spend(end - start + 1)
        s = _decode(bytes(data[start:end]))
        self.cache[index] = s
        return s

    def bulk(self) -> Dict[int, str]:
        """Every NUL-terminated string of the table by its offset, decoded at once (names at
        other offsets, the tails of merged strings, are left to :meth:`get`)."""
        blob = bytes(self.elf.data[self.off : self.off + self.size])
        self.elf.spend(len(blob))
        if blob.isascii():  # the usual case: one decode, and str lengths are byte lengths
            pieces: List[str] = blob.decode("ascii").split("\0")
            pieces.pop()  # the bytes after the last NUL are not a terminated string
            lengths = list(map(len, pieces))
        else:
            raw = blob.split(b"\0")
            raw.pop()
            pieces = [_decode(p) for p in raw]
            lengths = list(map(len, raw))
        if not pieces:
            return {}
        starts = itertools.accumulate(map((1).__add__, lengths), initial=0)
        if max(lengths) <= MAX_NAME:
            return dict(zip(starts, pieces))
        return {o: p for o, p, n in zip(starts, pieces, lengths) if n <= MAX_NAME}


# --------------------------------------------------------------------------------------------
# Program headers, dynamic section, section headers
# --------------------------------------------------------------------------------------------


class _Program:
    __slots__ = ("dynamic", "exec_stack", "interp", "tls_size")

    def __init__(self) -> None:
        self.dynamic: Optional[Tuple[int, int, int]] = None  # (p_offset, p_vaddr, p_filesz)
        self.interp: Optional[str] = None
        self.exec_stack: Optional[bool] = None
        self.tls_size = 0


def _program_headers(elf: _Elf) -> _Program:
    raw, fmt, size = elf.raw, elf.fmt, elf.size
    prog = _Program()
    if raw.phnum == 0:
        return prog
    end = raw.phoff + raw.phnum * fmt.phdr.size
    if end > size:
        raise elf.fail(
            f"file truncated: program headers end at 0x{end:x} but the file has 0x{size:x} bytes"
        )
    interp: Optional[Tuple[int, int]] = None
    blob = bytes(elf.data[raw.phoff : end])
    for i, ph in enumerate(fmt.phdr.iter_unpack(blob)):
        if fmt.is64:
            p_type, p_flags, p_offset, p_vaddr, _pa, p_filesz, p_memsz, _al = ph
        else:
            p_type, p_offset, p_vaddr, _pa, p_filesz, p_memsz, p_flags, _al = ph
        if p_type == PT_LOAD:
            if p_filesz and p_offset + p_filesz > size:
                raise elf.fail(
                    f"file truncated: PT_LOAD segment {i} needs file bytes up to "
                    f"0x{p_offset + p_filesz:x} but the file has 0x{size:x}"
                )
            if p_filesz > p_memsz:
                elf.warn(f"PT_LOAD segment {i}: p_filesz 0x{p_filesz:x} > p_memsz 0x{p_memsz:x}")
            mem = max(p_memsz, p_filesz)
            elf.loads.append(_Segment(p_vaddr, p_vaddr + p_filesz, p_vaddr + mem, p_offset))
        elif p_type == PT_DYNAMIC:
            if prog.dynamic is not None:
                elf.warn("more than one PT_DYNAMIC; the last one is used")
            prog.dynamic = (p_offset, p_vaddr, p_filesz)
        elif p_type == PT_INTERP:
            interp = (p_offset, p_filesz)
        elif p_type == PT_GNU_STACK:
            prog.exec_stack = bool(p_flags & PF_X)
        elif p_type == PT_TLS:
            prog.tls_size = p_memsz
    if interp is not None:
        off, n = interp
        if off + n > size:
            raise elf.fail(
                f"file truncated: PT_INTERP needs file bytes up to 0x{off + n:x} but the file "
                f"has 0x{size:x}"
            )
        n = min(n, MAX_NAME)
        text = bytes(elf.data[off : off + n]).split(b"\0", 1)[0]
        prog.interp = _decode(text)
    if not elf.loads and raw.head.type in (2, 3):
        elf.warn("object file has no loadable segments")
    return prog


def _check_section_table(elf: _Elf) -> Tuple[int, int]:
    """``(offset, count)`` of usable section headers (``count`` 0 when there are none); raises
    when the table runs past the end of the file (a truncated file)."""
    raw, fmt, size = elf.raw, elf.fmt, elf.size
    shoff, shnum, shentsize = raw.shoff, raw.shnum, raw.shentsize
    if shoff == 0:
        return 0, 0
    if shnum == 0:  # extended numbering: the count is section 0's sh_size (if there is one)
        if shentsize != fmt.shdr.size:
            return 0, 0
        if shoff + fmt.shdr.size > size:
            raise elf.fail(f"file truncated: section header table at 0x{shoff:x} is past the "
                           f"end of the file (0x{size:x} bytes)")
        shnum = fmt.shdr.unpack_from(elf.data, shoff)[5]
        if shnum == 0:
            return 0, 0
    end = shoff + shnum * max(shentsize, 1)
    if end > size:
        raise elf.fail(
            f"file truncated: section headers end at 0x{end:x} but the file has 0x{size:x} bytes"
        )
    if shentsize != fmt.shdr.size:
        elf.warn(f"e_shentsize {shentsize} is not {fmt.shdr.size}; section headers ignored")
        return 0, 0
    if shnum > MAX_SECTIONS:
        elf.warn(f"more than {MAX_SECTIONS} section headers; section headers ignored")
        return 0, 0
    return shoff, shnum


class _Dynamic:
    """The tags of the dynamic section that matter (last one wins, DT_NEEDED all kept)."""

    __slots__ = ("counts", "needed", "tags")

    def __init__(self) -> None:
        self.needed: List[int] = []
        self.tags: Dict[int, int] = {}
        self.counts: Dict[int, int] = {}


_TAG_NAMES = {DT_NEEDED: "DT_NEEDED", DT_SONAME: "DT_SONAME", DT_RPATH: "DT_RPATH",
              DT_RUNPATH: "DT_RUNPATH"}

_DYN_TAGS = frozenset([
    DT_HASH, DT_STRTAB, DT_SYMTAB, DT_STRSZ, DT_SYMENT, DT_SONAME, DT_RPATH, DT_RUNPATH,
    DT_FLAGS, DT_GNU_HASH, DT_VERSYM, DT_FLAGS_1, DT_VERDEF, DT_VERDEFNUM, DT_VERNEED,
    DT_VERNEEDNUM, DT_PLTRELSZ, DT_RELA, DT_RELASZ, DT_RELAENT, DT_REL, DT_RELSZ, DT_RELENT,
    DT_PLTREL, DT_JMPREL,
])


def _dynamic(elf: _Elf, where: Tuple[int, int, int]) -> _Dynamic:
    p_offset, p_vaddr, p_filesz = where
    ent = elf.fmt.dyn.size
    seg = elf.segment(p_vaddr)
    if seg is not None and p_vaddr < seg.fend:
        off, avail = elf.avail(p_vaddr, "PT_DYNAMIC")
        if p_filesz > avail:
            raise elf.fail(f"PT_DYNAMIC ({p_filesz} bytes) runs past the end of its PT_LOAD "
                           "segment's file data (truncated or corrupt)")
    else:
        # ld.so would read it through the load address; readelf uses p_offset. Do the latter.
        elf.warn(f"PT_DYNAMIC at 0x{p_vaddr:x} is not inside a PT_LOAD segment's file data; "
                 "read at its file offset")
        off, avail = p_offset, elf.size - p_offset
        if p_offset + p_filesz > elf.size:
            raise elf.fail(f"file truncated: PT_DYNAMIC needs file bytes up to "
                           f"0x{p_offset + p_filesz:x} but the file has 0x{elf.size:x}")
    count = p_filesz // ent
    count = min(count, MAX_DYNAMIC)
    dyn = _Dynamic()
    blob = bytes(elf.data[off : off + count * ent])
    terminated = False
    for tag, value in elf.fmt.dyn.iter_unpack(blob):
        if tag == DT_NULL:
            terminated = True
            break
        if tag == DT_NEEDED:
            dyn.needed.append(value)
        elif tag in _DYN_TAGS:
            dyn.counts[tag] = dyn.counts.get(tag, 0) + 1
            dyn.tags[tag] = value
    if not terminated:
        if p_filesz // ent > MAX_DYNAMIC:
            raise elf.fail(f"dynamic section has more than {MAX_DYNAMIC} entries before DT_NULL")
        elf.warn("dynamic section has no DT_NULL terminator inside PT_DYNAMIC")
    return dyn


# --------------------------------------------------------------------------------------------
# Versions
# --------------------------------------------------------------------------------------------

class _Versions:
    """Version records: ``Elf_Verneed`` per file, ``Elf_Verdef`` names, and the index table
    (``l_versions``): version index -> (version name, needed file or ``None`` for a definition).
    """

    __slots__ = ("base", "defs", "index", "ndx_high", "needs")

    def __init__(self) -> None:
        self.needs: List[VersionNeed] = []
        self.defs: List[str] = []
        self.base: Optional[str] = None
        self.index: Dict[int, Tuple[str, Optional[str]]] = {}
        self.ndx_high = 0  # highest version index used (glibc builds l_versyms only when > 0)


def _version_needs(
    elf: _Elf, strtab: _StrTab, addr: int, num: Optional[int], vers: _Versions
) -> None:
    fmt = elf.fmt
    index = vers.index
    aux_total = 0
    ent = addr
    while True:
        if len(vers.needs) >= MAX_VERNEED:
            raise elf.fail(f"more than {MAX_VERNEED} Elf_Verneed records")
        raw = elf.read(ent, fmt.verneed.size, "Elf_Verneed record")
        vn_version, vn_cnt, vn_file, vn_aux, vn_next = fmt.verneed.unpack(raw)
        if vn_version != 1:
            raise elf.fail(f"unsupported version {vn_version} of Verneed record")
        file = strtab.get(vn_file, "Elf_Verneed file name") or ""
        versions: List[str] = []
        weak: List[str] = []
        aux = ent + vn_aux
        seen = 0
        while True:
            aux_total += 1
            if aux_total > MAX_VERNAUX:
                raise elf.fail(f"more than {MAX_VERNAUX} Elf_Vernaux records")
            raw = elf.read(aux, fmt.vernaux.size, "Elf_Vernaux record")
            _hash, vna_flags, vna_other, vna_name, vna_next = fmt.vernaux.unpack(raw)
            seen += 1
            ndx = vna_other & 0x7FFF
            vers.ndx_high = max(vers.ndx_high, ndx)
            name = strtab.get(vna_name, f"version needed from {file}")
            if name is not None:
                (weak if vna_flags & VER_FLG_WEAK else versions).append(name)
                if ndx in index and index[ndx][0] != name:
                    elf.warn(f"version index {ndx} is used for both {index[ndx][0]} and {name}")
                index[ndx] = (name, file)
            if vna_next == 0:
                break
            aux += vna_next
        if seen != vn_cnt:
            elf.warn(f"Elf_Verneed for {file}: vn_cnt {vn_cnt} but {seen} Elf_Vernaux records")
        vers.needs.append(VersionNeed(file=file, versions=tuple(versions), weak=tuple(weak)))
        if vn_next == 0:
            break
        ent += vn_next
    if num is not None and num != len(vers.needs):
        elf.warn(f"DT_VERNEEDNUM is {num} but the chain has {len(vers.needs)} Elf_Verneed records")


def _version_defs(
    elf: _Elf, strtab: _StrTab, addr: int, num: Optional[int], vers: _Versions
) -> None:
    fmt = elf.fmt
    ent = addr
    count = 0
    while True:
        count += 1
        if count > MAX_VERDEF:
            raise elf.fail(f"more than {MAX_VERDEF} Elf_Verdef records")
        raw = elf.read(ent, fmt.verdef.size, "Elf_Verdef record")
        vd_version, vd_flags, vd_ndx, _cnt, _hash, vd_aux, vd_next = fmt.verdef.unpack(raw)
        if vd_version != 1:
            raise elf.fail(f"unsupported version {vd_version} of Verdef record")
        (vda_name, _vda_next) = fmt.verdaux.unpack(
            elf.read(ent + vd_aux, fmt.verdaux.size, "Elf_Verdaux record")
        )
        ndx = vd_ndx & 0x7FFF
        vers.ndx_high = max(vers.ndx_high, ndx)
        name = strtab.get(vda_name, "version definition name")
        if name is not None:
            if vd_flags & VER_FLG_BASE:
                # The base version names the object; it is not available for matching.
                if vers.base is None:
                    vers.base = name
            else:
                vers.defs.append(name)
                vers.index[ndx] = (name, None)
        if vd_next == 0:
            break
        ent += vd_next
    if num is not None and num != count:
        elf.warn(f"DT_VERDEFNUM is {num} but the chain has {count} Elf_Verdef records")


# --------------------------------------------------------------------------------------------
# Symbols
# --------------------------------------------------------------------------------------------


def _u32_array(elf: _Elf, vaddr: int, count: int, what: str) -> array.array[int]:
    out = array.array("I")
    if array.array("I").itemsize != 4:  # pragma: no cover - every supported platform has 4
        out = array.array("L")
    out.frombytes(elf.read(vaddr, 4 * count, what))
    if elf.fmt.swap:
        out.byteswap()
    return out


def _symbol_count(elf: _Elf, dyn: _Dynamic, sections: Tuple[int, int]) -> int:
    """How many entries the dynamic symbol table has (index 0 included)."""
    fmt = elf.fmt
    symtab = dyn.tags[DT_SYMTAB]
    shoff, shnum = sections
    if shnum:
        blob = bytes(elf.data[shoff : shoff + shnum * fmt.shdr.size])
        other = False
        for sh in fmt.shdr.iter_unpack(blob):
            if sh[1] == SHT_DYNSYM:
                if sh[3] == symtab:
                    return int(sh[5] // fmt.sym.size)
                other = True
        if other:
            elf.warn("the SHT_DYNSYM section's address is not DT_SYMTAB; counting symbols "
                     "through the hash table")
    if DT_HASH in dyn.tags:
        return int(_u32_array(elf, dyn.tags[DT_HASH], 2, "DT_HASH header")[1])  # nchain
    if DT_GNU_HASH in dyn.tags:
        return _gnu_hash_count(elf, dyn.tags[DT_GNU_HASH])
    elf.warn("no SHT_DYNSYM section, DT_HASH or DT_GNU_HASH: dynamic symbols not counted")
    return 0


def _gnu_hash_count(elf: _Elf, addr: int) -> int:
    """Symbol count from ``DT_GNU_HASH``: one past the end of the chain of the highest bucket."""
    fmt = elf.fmt
    head = _u32_array(elf, addr, 4, "DT_GNU_HASH header")
    nbuckets, symoffset, bloom_size = head[0], head[1], head[2]
    buckets_at = addr + 16 + bloom_size * fmt.word
    buckets = _u32_array(elf, buckets_at, nbuckets, "DT_GNU_HASH buckets")
    top = max(buckets) if nbuckets else 0
    if top < symoffset:
        if top:
            elf.warn("DT_GNU_HASH bucket below symoffset; ignored")
        return int(symoffset)  # no hashed symbol: only the unhashed ones below symoffset
    chain_at = buckets_at + 4 * nbuckets
    idx = top
    while True:
        pos = chain_at + 4 * (idx - symoffset)
        off, avail = elf.avail(pos, "DT_GNU_HASH chain")
        n = min(avail // 4, 4096)
        if n == 0:
            raise elf.fail("DT_GNU_HASH chain runs past the end of its segment's file data")
        words = array.array("I")
        words.frombytes(bytes(elf.data[off : off + 4 * n]))
        if fmt.swap:
            words.byteswap()
        for h in words:
            if h & 1:
                return int(idx + 1)
            idx += 1
        if idx - symoffset > MAX_SYMBOLS:
            raise elf.fail(f"DT_GNU_HASH chain longer than {MAX_SYMBOLS} entries")


class _Symbols:
    __slots__ = ("binds_unversioned", "count", "defined", "has_versym", "undefined",
                 "unversioned", "visible")

    def __init__(self) -> None:
        self.count = 0
        self.has_versym = False
        self.undefined: Tuple[UndefinedSymbol, ...] = ()
        self.defined: FrozenSet[Tuple[str, Optional[str]]] = frozenset()
        self.visible: FrozenSet[str] = frozenset()
        self.unversioned: FrozenSet[str] = frozenset()
        self.binds_unversioned: FrozenSet[str] = frozenset()


def _symbols(
    elf: _Elf, dyn: _Dynamic, strtab: Optional[_StrTab], vers: _Versions,
    sections: Tuple[int, int],
) -> _Symbols:
    out = _Symbols()
    fmt = elf.fmt
    if DT_SYMTAB not in dyn.tags:
        return out
    if strtab is None:
        raise elf.fail("DT_SYMTAB without DT_STRTAB")
    syment = dyn.tags.get(DT_SYMENT)
    if syment is not None and syment != fmt.sym.size:
        elf.warn(f"DT_SYMENT is {syment}, not {fmt.sym.size}; ignored (ld.so ignores it too)")
    count = _symbol_count(elf, dyn, sections)
    if count > MAX_SYMBOLS:
        raise elf.fail(f"more than {MAX_SYMBOLS} dynamic symbols ({count})")
    out.count = count
    if count <= 1:
        return out
    blob = elf.read(dyn.tags[DT_SYMTAB], count * fmt.sym.size, "dynamic symbol table")

    versym: Optional[array.array[int]] = None
    if DT_VERSYM in dyn.tags and vers.ndx_high > 0:
        versym = array.array("H")
        versym.frombytes(elf.read(dyn.tags[DT_VERSYM], 2 * count, "DT_VERSYM table"))
        if fmt.swap:
            versym.byteswap()
    elif vers.ndx_high > 0:
        elf.warn("version records but no DT_VERSYM: symbols read as unversioned")
    elif DT_VERSYM in dyn.tags:
        elf.warn("DT_VERSYM without version records: ignored, as ld.so does")
    index = vers.index
    out.has_versym = versym is not None

    undefined: List[UndefinedSymbol] = []
    undef_index: List[int] = []
    plain: List[str] = []  # the common case: defined, versym 0 or 1 without the hidden bit
    defined: Set[Tuple[str, Optional[str]]] = set()
    visible: Set[str] = set()
    unversioned: Set[str] = set()
    low: Set[str] = set()  # defined with versym index < 3
    high: Dict[str, int] = {}  # non-hidden definitions with versym index >= 3, per name
    unknown: Set[int] = set()
    names = strtab.bulk()
    names_get = names.get
    plain_append = plain.append
    allowed = _ALLOWED_STT
    binds = _DEFINING_BINDS

    rows: Iterator[Tuple[int, ...]] = fmt.sym.iter_unpack(blob)
    if not fmt.is64:  # (st_name, st_value, st_size, st_info, st_other, st_shndx) -> 64-bit order
        rows = ((r[0], r[3], r[4], r[5], r[1], r[2]) for r in rows)
    flags: Iterator[int] = iter(versym) if versym is not None else itertools.repeat(0)
    next(rows)  # index 0 is the reserved undefined symbol
    next(flags)
    for i, ((st_name, info, other, shndx, value, _sz), v) in enumerate(zip(rows, flags), 1):
        if info < 16:
            continue  # STB_LOCAL
        vis = other & 3
        if vis in (STV_HIDDEN, STV_INTERNAL):
            continue  # binds locally: never looked up, never found
        if shndx:
            typ = info & 0xF
            if not (allowed >> typ) & 1 or (info >> 4) not in binds:
                continue
            if value == 0 and shndx != SHN_ABS and typ != STT_TLS:
                continue  # check_match: "No value"
        name = names_get(st_name)
        if name is None:
            name = strtab.get(st_name, f"dynamic symbol {i}")
            if name is None:
                continue
            names[st_name] = name
        if shndx and v < 2:
            plain_append(name)
            continue
        ndx = v & 0x7FFF
        version: Optional[str] = None
        file: Optional[str] = None
        if ndx >= 2:
            entry = index.get(ndx)
            if entry is None:
                unknown.add(ndx)
            else:
                version, file = entry
        if not shndx:
            undefined.append(UndefinedSymbol(name, version, info >> 4 == STB_WEAK, file))
            undef_index.append(i)
            continue
        defined.add((name, version))
        hidden = v & VERSYM_HIDDEN
        if not hidden:
            visible.add(name)
            if version is None:
                unversioned.add(name)
        if ndx < 3:
            low.add(name)
        elif not hidden:
            high[name] = high.get(name, 0) + 1
    for ndx in sorted(unknown)[:8]:
        elf.warn(f"versym index {ndx} names no version; symbols using it read as unversioned")
    common = frozenset(plain)
    masks = _reloc_masks(elf, dyn, count)
    if masks is not None:
        # in relocation order, so the first missing symbol found is the one ld.so reports
        last = (0, len(undef_index) + (1 << 40))
        ranked = sorted(zip(undefined, undef_index), key=lambda p: masks.get(p[1], last)[1])
        undefined = [replace(u, reloc=masks.get(i, last)[0]) for u, i in ranked]
    out.undefined = tuple(undefined)
    out.defined = frozenset(itertools.chain(defined, zip(plain, itertools.repeat(None))))
    out.visible = common.union(visible)
    out.unversioned = common.union(unversioned)
    out.binds_unversioned = common.union(low, (n for n, c in high.items() if c == 1))
    return out


def _reloc_indices(elf: _Elf, addr: int, size: int, rela: bool, count: int) -> List[int]:
    """Symbol indices referenced by one relocation table (``r_info`` high bits), in the order
    of their first relocation (the order ld.so processes them), without duplicates."""
    fmt = elf.fmt
    ent = (24 if rela else 16) if fmt.is64 else (12 if rela else 8)
    n = size // ent
    if n <= 0:
        return []
    if n > MAX_RELOCS:
        raise elf.fail(f"more than {MAX_RELOCS} relocations in one table ({n})")
    blob = elf.read(addr, n * ent, "relocation table")
    words = array.array("Q" if fmt.is64 else "I")
    words.frombytes(blob)
    if fmt.swap:
        words.byteswap()
    step = ent // words.itemsize
    shift = 32 if fmt.is64 else 8
    ordered = dict.fromkeys(w >> shift for w in words[1::step])
    return [i for i in ordered if 0 < i < count]


def _reloc_masks(elf: _Elf, dyn: _Dynamic, count: int) -> Optional[Dict[int, Tuple[int, int]]]:
    """Symbol index -> (RELOC_EAGER/RELOC_PLT bits, position of its first relocation in the
    order ld.so processes them: DT_RELA/DT_REL, then DT_JMPREL), or ``None`` when the tables
    cannot be read (then every undefined symbol counts as looked up both ways)."""
    tags = dyn.tags
    try:
        plt: List[int] = []
        jmp = tags.get(DT_JMPREL)
        pltsz = tags.get(DT_PLTRELSZ, 0)
        plt_rela = tags.get(DT_PLTREL, DT_RELA) == DT_RELA
        if jmp is not None and pltsz:
            plt = _reloc_indices(elf, jmp, pltsz, plt_rela, count)
        eager: List[int] = []
        for tag, sztag, rela in ((DT_RELA, DT_RELASZ, True), (DT_REL, DT_RELSZ, False)):
            if tag not in tags:
                continue
            start, size = tags[tag], tags.get(sztag, 0)
            if jmp is not None and plt_rela == rela and start <= jmp < start + size:
                size = jmp - start  # a table that runs into DT_JMPREL: the PLT part is lazy
            eager.extend(_reloc_indices(elf, start, size, rela, count))
    except InvalidImageError as exc:
        elf.warn(f"relocations not read ({exc.reason}): every symbol counted as bound at load")
        return None
    masks: Dict[int, Tuple[int, int]] = {}
    for pos, i in enumerate(eager):
        masks.setdefault(i, (RELOC_EAGER, pos))
    base = len(eager)
    for pos, i in enumerate(plt):
        bits, first = masks.get(i, (0, base + pos))
        masks[i] = (bits | RELOC_PLT, first)
    return masks


# --------------------------------------------------------------------------------------------
# read_elf_facts
# --------------------------------------------------------------------------------------------


def _split_path(value: Optional[str]) -> Tuple[str, ...]:
    return () if value is None else tuple(value.split(":"))


def _parse(path: str, data: Any, size: int, mtime_ns: int, symbols: bool) -> ElfFacts:
    raw = _parse_header(path, bytes(data[:64]), size, mtime_ns)
    elf = _Elf(path, data, raw)
    prog = _program_headers(elf)
    sections = _check_section_table(elf)

    needed: List[str] = []
    soname: Optional[str] = None
    rpath: Optional[str] = None
    runpath: Optional[str] = None
    flags = flags_1 = 0
    vers = _Versions()
    syms = _Symbols()
    if prog.dynamic is None:
        if raw.head.type in (2, 3):
            elf.warn("no PT_DYNAMIC: a statically linked object")
    else:
        dyn = _dynamic(elf, prog.dynamic)
        for tag, n in dyn.counts.items():
            if n > 1 and tag in (DT_SONAME, DT_RPATH, DT_RUNPATH, DT_STRTAB, DT_SYMTAB):
                elf.warn(f"dynamic tag 0x{tag:x} appears {n} times; the last one is used")
        strtab: Optional[_StrTab] = None
        if DT_STRTAB in dyn.tags:
            off, avail = elf.avail(dyn.tags[DT_STRTAB], "DT_STRTAB")
            strsz = dyn.tags.get(DT_STRSZ)
            if strsz is None:
                elf.warn("no DT_STRSZ: DT_STRTAB read to the end of its segment")
                strsz = avail
            elif strsz > avail:
                elf.warn(f"DT_STRSZ 0x{strsz:x} runs past its segment's file data; cut")
                strsz = avail
            strtab = _StrTab(elf, off, strsz)

        def string(tag: int, value: int) -> str:
            what = _TAG_NAMES[tag]
            if strtab is None:
                raise elf.fail(f"{what} but no DT_STRTAB")
            s = strtab.get(value, what)
            if s is None:
                raise elf.fail(f"{what} string offset 0x{value:x} is outside DT_STRTAB")
            return s

        needed = [string(DT_NEEDED, value) for value in dyn.needed]
        tags = dyn.tags
        soname = string(DT_SONAME, tags[DT_SONAME]) if DT_SONAME in tags else None
        rpath = string(DT_RPATH, tags[DT_RPATH]) if DT_RPATH in tags else None
        runpath = string(DT_RUNPATH, tags[DT_RUNPATH]) if DT_RUNPATH in tags else None
        flags = tags.get(DT_FLAGS, 0)
        flags_1 = tags.get(DT_FLAGS_1, 0)
        if strtab is not None:
            if DT_VERNEED in tags:
                _version_needs(elf, strtab, tags[DT_VERNEED], tags.get(DT_VERNEEDNUM), vers)
            if DT_VERDEF in tags:
                _version_defs(elf, strtab, tags[DT_VERDEF], tags.get(DT_VERDEFNUM), vers)
        elif DT_VERNEED in tags or DT_VERDEF in tags:
            elf.warn("version records but no DT_STRTAB: ignored")
        if symbols:
            syms = _symbols(elf, dyn, strtab, vers, sections)
    head = raw.head
    return ElfFacts(
        path=path,
        size=size,
        mtime_ns=mtime_ns,
        elf_class=head.elf_class,
        little_endian=head.little_endian,
        machine=head.machine,
        osabi=head.osabi,
        type=head.type,
        interpreter=prog.interp,
        soname=soname,
        needed=tuple(needed),
        rpath=_split_path(rpath),
        runpath=_split_path(runpath),
        flags=flags,
        flags_1=flags_1,
        version_needs=tuple(vers.needs),
        version_defs=tuple(vers.defs),
        undefined=syms.undefined,
        defined=syms.defined,
        warnings=elf.warnings,
        visible=syms.visible,
        unversioned=syms.unversioned,
        binds_unversioned=syms.binds_unversioned,
        has_versym=syms.has_versym,
        symbols_read=symbols,
        symbol_count=syms.count,
        version_base=vers.base,
        abi_version=head.abi_version,
        ident_error=head.ident_error,
        exec_stack=prog.exec_stack,
        tls_size=prog.tls_size,
    )


def _parse_buffer(path: str, data: Any, size: int, mtime_ns: int, symbols: bool) -> ElfFacts:
    """Parse an in-memory file (bytes or mmap); every failure is an InvalidImageError."""
    try:
        return _parse(path, data, size, mtime_ns, symbols)
    except InvalidImageError:
        raise
    except MemoryError:
        raise _invalid(path, "structures too large to read") from None
    except Exception as exc:  # noqa: BLE001 - a parsing accident: report the file as malformed
        raise _invalid(path, f"malformed ELF file ({type(exc).__name__})") from None


def read_elf_facts(path: StrPath, *, symbols: bool = True, use_cache: Optional[bool] = None) -> ElfFacts:
    """Everything the glibc loader model needs to know about the ELF file at ``path``.

    ``symbols=False`` skips the dynamic symbol table (``undefined``, ``defined`` and the other
    symbol fields stay empty and :attr:`ElfFacts.symbols_read` is ``False``): the headers, the
    dynamic section and the version records only, a few pages of even the largest library.
    With symbols, results are kept in the on-disk facts cache of :mod:`torchdll._pecache`
    (namespace ``elf``, keyed by path, size and mtime; ``TORCHDLL_NO_CACHE=1`` or
    ``use_cache=False`` turns it off): torch's ``libtorch_cpu.so`` takes ~30 ms from the cache
    instead of ~180 ms.

    Raises :class:`InvalidImageError` for anything that is not a readable ELF file.
    """
    p = os.fspath(path)
    from . import _pecache

    if symbols and (use_cache if use_cache is not None else _pecache.enabled()):
        return _read_cached(p)
    return _read(p, symbols)


def _read(p: str, symbols: bool) -> ElfFacts:
    f = OpenFile(p, "ELF")
    try:
        try:
            head = read_at(f.fd, 0, 64)
        except OSError as exc:
            raise _invalid(p, os_reason(exc)) from None
        _parse_header(p, head, f.size, f.mtime_ns)  # fails early (and for empty files)
        try:
            mm = mmap.mmap(f.fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            reason = os_reason(exc) if isinstance(exc, OSError) else "cannot map the file"
            raise _invalid(p, reason) from None
        try:
            return _parse_buffer(p, mm, f.size, f.mtime_ns, symbols)
        finally:
            mm.close()
    finally:
        f.close()


_NESTED = {"version_needs": VersionNeed, "undefined": UndefinedSymbol}


def _to_payload(facts: ElfFacts) -> Tuple[Any, ...]:
    out: List[Any] = []
    for fl in fields(ElfFacts):
        value = getattr(facts, fl.name)
        if fl.name in _NESTED:
            value = tuple(astuple(x) for x in value)
        out.append(value)
    return tuple(out)


def _from_payload(payload: Tuple[Any, ...]) -> ElfFacts:
    names = [fl.name for fl in fields(ElfFacts)]
    if len(payload) != len(names):
        raise ValueError("payload of another layout")
    kw = dict(zip(names, payload))
    for name, cls in _NESTED.items():
        kw[name] = tuple(cls(*x) for x in kw[name])
    return ElfFacts(**kw)


def _read_cached(p: str) -> ElfFacts:
    from . import _pecache

    try:
        st = os.stat(p)
    except (OSError, ValueError):
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        key = _pecache.make_key(p, st.st_size, st.st_mtime_ns)
        payload = _pecache.load(key, "elf")
        if payload is not None:
            try:
                facts = _from_payload(payload)
                if facts.path == p:
                    return facts
                return replace(facts, path=p)
            except Exception:  # noqa: BLE001, S110 - an entry of another shape: a miss
                pass
    facts = _read(p, True)
    _pecache.store(_pecache.make_key(p, facts.size, facts.mtime_ns), _to_payload(facts), "elf")
    return facts


def __dir__() -> List[str]:
    return __all__
