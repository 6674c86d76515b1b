"""Write minimal but real ELF shared objects (and PIE executables) in pure Python.

The Linux counterpart of :mod:`torchdll._pebuild`: tests of the loader model
(:mod:`torchdll.ldso`) and the demo of a broken Linux environment need libraries with chosen
``DT_NEEDED`` entries, sonames, search paths, symbol versions, defined and undefined symbols,
on any host and without a compiler. What this module writes is accepted by glibc's ``ld.so``
(``dlopen``, and ``execve`` for executables) and by ``readelf -W`` without a warning; the
layout follows the System V gABI ("ELF-64 Object File Format", "Dynamic Linking"), the LSB
("Symbol Versioning": ``.gnu.version*``), the GNU ``DT_GNU_HASH`` format and the x86-64 /
i386 / AArch64 psABI relocation numbers.

API: :func:`elf_bytes` returns the image, :func:`build_elf` writes it (parents created) and
returns the path; :func:`split_symbol`, :func:`elf_hash` and :func:`gnu_hash` are the helpers
tests reuse. Symbols are spelled the way ``.symver`` and ``readelf`` spell them:

* ``defines``: ``"sym"`` (unversioned), ``"sym@@V"`` (version ``V``, the default one a plain
  reference binds to), ``"sym@V"`` (version ``V``, hidden: only ``sym@V`` references bind to
  it). Each becomes a global ``STT_OBJECT`` of one word in ``.data`` (``st_value`` != 0, which
  ``ld.so``'s ``check_match`` requires of a definition).
* ``uses``: ``"sym"`` or ``"sym@V"``, undefined symbols bound when the object is relocated,
  whatever the ``dlopen`` mode: one ``R_X86_64_GLOB_DAT`` (``R_386_GLOB_DAT``,
  ``R_AARCH64_GLOB_DAT``) into ``.got`` each, in ``DT_RELA`` (``DT_REL`` on i386).
* ``lazy_uses``: the same, bound through ``DT_JMPREL`` ``*_JUMP_SLOT`` relocations into
  ``.got.plt``: ``ld.so`` looks them up at load time only under ``RTLD_NOW`` (``LD_BIND_NOW``,
  ``DF_1_NOW``). A name may be in both lists (one symbol, both relocations).

Versions:

* version *definitions* (``Elf_Verdef``): index 1 is the ``VER_FLG_BASE`` entry, named after
  ``soname`` (or the file name when there is none, as ``ld`` does); then ``version_defs`` in
  the given order, then the versions of ``defines`` not listed there, in first-use order.
  Written only when there is at least one version to define.
* version *needs* (``Elf_Verneed``): every ``sym@V`` of ``uses``/``lazy_uses`` needs ``V`` from
  one file. The rule: the first file that lists ``V`` in ``version_needs`` (a mapping
  ``{needed file: [versions]}``, which may also list versions no symbol uses); otherwise the
  first ``DT_NEEDED`` entry. Every file of ``version_needs`` must be in ``needed`` (glibc's
  ``_dl_check_map_versions`` looks the file up among the loaded dependencies). Records follow
  ``needed`` order; versions within a file: the listed ones first, then those of the uses.
  Version indices continue after the definitions. ``DT_VERSYM`` is written when either table is.

Layout (file offset = virtual address in the first segment):

* ``PT_LOAD`` #1 (``R``, ``R+X`` when there is code): ELF header, program headers, ``.interp``,
  ``.gnu.hash``, ``.hash``, ``.dynsym``, ``.dynstr``, ``.gnu.version``, ``.gnu.version_d``,
  ``.gnu.version_r``, ``.rela.dyn``, ``.rela.plt`` (``.rel.*`` on i386/ARM), ``.text``;
* ``PT_LOAD`` #2 (``RW``): ``.dynamic``, ``.got``, ``.got.plt``, ``.data``, right after #1 in
  the file and one page higher in memory (``p_vaddr = p_offset + 0x1000``: the
  ``p_offset % p_align == p_vaddr % p_align`` rule holds and they never share a memory page);
* ``PT_DYNAMIC``, ``PT_GNU_STACK`` (``RW``: glibc >= 2.41 refuses to ``dlopen`` a library asking
  for an executable stack), and for executables ``PT_PHDR`` + ``PT_INTERP`` first (a library
  gets ``PT_INTERP`` too when ``interp`` is given, like ``libc.so.6``);
* then the non-allocated ``.shstrtab`` and the section header table, for ``readelf``.

Relocations only write into the ``RW`` segment (no ``DT_TEXTREL``). ``.got.plt`` starts with
the three reserved words (``[0]`` = address of ``.dynamic``, ``[1]`` = ``[2]`` = 0: ``ld.so``
stores its link map and resolver there under lazy binding). There is no ``.plt`` code: the
jump slots start as 0 (lazy binding adds the load address) and nothing ever calls them.

``exec_=True`` writes a position-independent executable: ``ET_DYN`` with ``PT_PHDR``,
``PT_INTERP`` (``interp``, default the psABI path of the machine, e.g.
``/lib64/ld-linux-x86-64.so.2``), ``DF_1_PIE`` added to ``DT_FLAGS_1`` (so ``dlopen`` refuses it
like any PIE), ``DT_DEBUG``, and an entry point that calls ``exit_group(0)`` (x86-64, i386,
AArch64; other machines get an empty ``.text`` and are not runnable).

``elf_class=32`` writes real ``Elf32`` structures; ``machine`` only selects relocation numbers
(62 x86-64 incl. x32, 3 i386, 183 AArch64, 40 ARM); files of another class or machine exist to
be rejected ("wrong ELF class: ELFCLASS32", or skipped as another machine), so any ``e_machine``
is accepted when there are no relocations to write. Little-endian only.

``hash_style`` is ``ld --hash-style``: ``"both"`` (default: ``DT_GNU_HASH``, which glibc
prefers, and ``DT_HASH``), ``"gnu"`` or ``"sysv"``. Undefined symbols come first in ``.dynsym``
(below ``DT_GNU_HASH``'s ``symoffset``), then the definitions grouped by GNU hash bucket.

What glibc's ``ld.so`` insists on (2.36, found by removing each piece; a crash is not an error
message, so none of these is optional): ``DT_RELAENT`` whenever ``DT_RELA`` is present (without
it ``elf_get_dynamic_info`` dereferences NULL: SIGSEGV); ``DT_PLTREL`` = ``DT_RELA`` on x86-64
(an assertion); ``DT_PLTGOT`` with ``DT_JMPREL`` under lazy binding (SIGSEGV); every
``Elf_Verneed`` file among the object's loaded dependencies (an assertion in
``_dl_check_map_versions``); ``PT_PHDR`` in a PIE, from which the kernel-mapped main program's
load address is computed (SIGSEGV without it).

Output is deterministic: the same arguments give the same bytes (no time stamps, no hashing of
unordered containers). Nonsense arguments raise :class:`ValueError` (empty or NUL-containing
names, malformed symbol specs, duplicates, a versioned use with no ``DT_NEEDED`` to need it
from, a ``version_needs`` file that is not needed, out-of-range numbers) and arguments of the
wrong type :class:`TypeError`.
"""

from __future__ import annotations

import os
import pathlib
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Callable, Union

__all__ = ["build_elf", "elf_bytes", "elf_hash", "gnu_hash", "split_symbol"]

PAGE = 0x1000

# e_ident / header values
_ELFCLASS = {32: 1, 64: 2}
_ET_DYN = 3
# program header types and flags
_PT_LOAD, _PT_DYNAMIC, _PT_INTERP, _PT_PHDR = 1, 2, 3, 6
_PT_GNU_STACK = 0x6474E551
_PF_X, _PF_W, _PF_R = 1, 2, 4
# section header types and flags
_SHT_PROGBITS, _SHT_STRTAB, _SHT_RELA, _SHT_HASH, _SHT_DYNAMIC, _SHT_REL, _SHT_DYNSYM = (
    1, 3, 4, 5, 6, 9, 11)
_SHT_GNU_HASH, _SHT_GNU_VERDEF, _SHT_GNU_VERNEED, _SHT_GNU_VERSYM = (
    0x6FFFFFF6, 0x6FFFFFFD, 0x6FFFFFFE, 0x6FFFFFFF)
_SHF_WRITE, _SHF_ALLOC, _SHF_EXECINSTR, _SHF_INFO_LINK = 0x1, 0x2, 0x4, 0x40
# dynamic tags
_DT_NULL, _DT_NEEDED, _DT_PLTRELSZ, _DT_PLTGOT, _DT_HASH = 0, 1, 2, 3, 4
_DT_STRTAB, _DT_SYMTAB = 5, 6
_DT_RELA, _DT_RELASZ, _DT_RELAENT, _DT_STRSZ, _DT_SYMENT = 7, 8, 9, 10, 11
_DT_SONAME, _DT_RPATH, _DT_REL, _DT_RELSZ, _DT_RELENT, _DT_PLTREL = 14, 15, 17, 18, 19, 20
_DT_DEBUG, _DT_JMPREL, _DT_RUNPATH = 21, 23, 29
_DT_GNU_HASH = 0x6FFFFEF5
_DT_VERSYM, _DT_FLAGS_1, _DT_VERDEF, _DT_VERDEFNUM, _DT_VERNEED, _DT_VERNEEDNUM = (
    0x6FFFFFF0, 0x6FFFFFFB, 0x6FFFFFFC, 0x6FFFFFFD, 0x6FFFFFFE, 0x6FFFFFFF)
DF_1_PIE = 0x08000000
# symbols and versions
_STB_GLOBAL = 1
_STT_NOTYPE, _STT_OBJECT, _STT_FUNC = 0, 1, 2
_VER_NDX_GLOBAL = 1
_VER_FLG_BASE = 0x1
_VERSYM_HIDDEN = 0x8000


@dataclass(frozen=True)
class _Arch:
    """Relocation numbers of one machine: GLOB_DAT, JUMP_SLOT, and whether it uses RELA."""

    glob_dat: int
    jump_slot: int
    rela: bool


_ARCHS = {
    62: _Arch(6, 7, True),  # R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT (x86-64 and x32)
    3: _Arch(6, 7, False),  # R_386_GLOB_DAT, R_386_JMP_SLOT
    183: _Arch(1025, 1026, True),  # R_AARCH64_GLOB_DAT, R_AARCH64_JUMP_SLOT
    40: _Arch(21, 22, False),  # R_ARM_GLOB_DAT, R_ARM_JUMP_SLOT
}

#: (class, machine) -> entry code of an executable: exit_group(0).
_EXIT_CODE = {
    # xor edi,edi / mov eax,231 / syscall / hlt
    (64, 62): bytes.fromhex("31ffb8e70000000f05f4"),
    # xor ebx,ebx / mov eax,252 / int 0x80 / hlt
    (32, 3): bytes.fromhex("31dbb8fc000000cd80f4"),
    # movz x0,#0 / movz x8,#94 / svc #0
    (64, 183): struct.pack("<3I", 0xD2800000, 0xD2800BC8, 0xD4000001),
}

#: (class, machine) -> the psABI program interpreter.
_INTERP = {
    (64, 62): "/lib64/ld-linux-x86-64.so.2",
    (32, 62): "/libx32/ld-linux-x32.so.2",
    (32, 3): "/lib/ld-linux.so.2",
    (64, 183): "/lib/ld-linux-aarch64.so.1",
    (32, 40): "/lib/ld-linux-armhf.so.3",
}

#: SysV hash bucket counts (the ones GNU ld picks from).
_BUCKETS = (1, 3, 17, 37, 67, 97, 131, 197, 263, 521, 1031, 2053, 4099, 8209, 16411, 32771)

StrPath = Union[str, "os.PathLike[str]"]


# --------------------------------------------------------------------------------------------
# hashes and names
# --------------------------------------------------------------------------------------------


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def elf_hash(name: str) -> int:
    """The SysV ELF hash (``DT_HASH``, ``vd_hash``, ``vna_hash``) of ``name``."""
    h = 0
    for c in _b(name):
        h = ((h << 4) + c) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


def gnu_hash(name: str) -> int:
    """The GNU hash (``DT_GNU_HASH``, Bernstein's ``h * 33 + c``) of ``name``."""
    h = 5381
    for c in _b(name):
        h = (h * 33 + c) & 0xFFFFFFFF
    return h


def _check_name(kind: str, text: object, *, allow_empty: bool = False) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{kind}: {text!r} is not a str")
    if not text and not allow_empty:
        raise ValueError(f"{kind}: empty name")
    if "\0" in text:
        raise ValueError(f"{kind}: NUL in {text!r}")
    return text


def split_symbol(spec: str, *, reference: bool = False) -> tuple[str, str | None, bool]:
    """``"sym"``, ``"sym@V"``, ``"sym@@V"`` -> ``(name, version or None, hidden)``.

    ``hidden`` is true for ``sym@V`` definitions (a non-default version). A ``reference``
    (a use) may not be spelled ``sym@@V``: the default-version marker only means something for
    a definition. Raises :class:`ValueError` for anything else (empty parts, three ``@``...).
    """
    _check_name("symbol", spec)
    name, at, rest = spec.partition("@")
    if not at:
        version: str | None = None
        hidden = False
    elif rest.startswith("@"):
        if reference:
            raise ValueError(f"reference {spec!r}: 'sym@@V' is only for definitions, use 'sym@V'")
        version, hidden = rest[1:], False
    else:
        version, hidden = rest, True
    if not name or (version is not None and (not version or "@" in version)):
        raise ValueError(f"malformed symbol {spec!r}: expected 'sym', 'sym@V' or 'sym@@V'")
    return name, version, hidden and not reference


# --------------------------------------------------------------------------------------------
# small builders
# --------------------------------------------------------------------------------------------


class _StrTab:
    """A string table: offset 0 is the empty string, equal strings are stored once."""

    def __init__(self) -> None:
        self.data = bytearray(b"\0")
        self._at: dict[str, int] = {"": 0}

    def add(self, text: str) -> int:
        at = self._at.get(text)
        if at is None:
            at = self._at[text] = len(self.data)
            self.data += _b(text) + b"\0"
        return at


def _align(n: int, a: int) -> int:
    return -(-n // a) * a


@dataclass
class _Section:
    name: str
    type: int
    flags: int
    align: int
    size: int
    entsize: int = 0
    link: str = ""  # name of the linked section
    info: int | str = 0  # a number, or the name of a section (its index)
    offset: int = 0
    addr: int = 0
    data: bytes = b""


@dataclass(frozen=True)
class _Symbol:
    name: str
    version: str | None
    hidden: bool
    defined: bool
    func: bool = False


def _strings(kind: str, value: object) -> list[str]:
    """A sequence of names (a lone str is a mistake, not a sequence of letters)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{kind} must be a sequence of str, not {type(value).__name__}")
    return [_check_name(kind, v) for v in value]


def _search_path(kind: str, value: str | Sequence[str] | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _check_name(kind, value, allow_empty=True)
    parts = _strings(kind, value)
    if any(":" in p for p in parts):
        raise ValueError(f"{kind}: an entry contains ':' (give one str to pass a joined list)")
    return ":".join(parts)


def _int(kind: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{kind} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{kind} {value} out of range {low}..{high}")
    return value


# --------------------------------------------------------------------------------------------
# the image
# --------------------------------------------------------------------------------------------


def elf_bytes(
    *,
    file_name: str = "a.so",
    soname: str | None = None,
    needed: Sequence[str] = (),
    rpath: str | Sequence[str] | None = None,
    runpath: str | Sequence[str] | None = None,
    defines: Sequence[str] = (),
    uses: Sequence[str] = (),
    lazy_uses: Sequence[str] = (),
    version_needs: Mapping[str, Sequence[str]] | None = None,
    version_defs: Sequence[str] = (),
    flags_1: int = 0,
    elf_class: int = 64,
    machine: int = 62,
    exec_: bool = False,
    interp: str | None = None,
    hash_style: str = "both",
) -> bytes:
    """The bytes of an ELF object with exactly the requested dynamic tables.

    See the module docstring for the meaning of every argument. ``file_name`` only names the
    base version definition when there is no ``soname``.
    """
    # ---- arguments -----------------------------------------------------------------------
    if elf_class not in _ELFCLASS or isinstance(elf_class, bool):
        raise ValueError(f"elf_class must be 32 or 64, not {elf_class!r}")
    machine = _int("machine", machine, 0, 0xFFFF)
    flags_1 = _int("flags_1", flags_1, 0, 0xFFFFFFFF)
    if not isinstance(exec_, bool):
        raise TypeError("exec_ must be a bool")
    if hash_style not in ("both", "gnu", "sysv"):
        raise ValueError(f"hash_style must be 'both', 'gnu' or 'sysv', not {hash_style!r}")
    want_gnu, want_sysv = hash_style != "sysv", hash_style != "gnu"
    needed_l = _strings("needed", needed)
    if soname is not None:
        _check_name("soname", soname)
    _check_name("file_name", file_name)
    rpath_s = _search_path("rpath", rpath)
    runpath_s = _search_path("runpath", runpath)
    is64 = elf_class == 64
    word = 8 if is64 else 4
    if exec_:
        flags_1 |= DF_1_PIE
        if interp is None:
            interp = _INTERP.get((elf_class, machine))
            if interp is None:
                raise ValueError(f"no default interpreter for ELFCLASS{elf_class} e_machine "
                                 f"{machine}: pass interp=")
    if interp is not None:
        _check_name("interp", interp)

    defs = [split_symbol(s) for s in _strings("defines", defines)]
    if len({(n, v) for n, v, _h in defs}) != len(defs):
        raise ValueError("defines: a symbol is defined twice at one version")
    eager = [split_symbol(s, reference=True)[:2] for s in _strings("uses", uses)]
    lazy = [split_symbol(s, reference=True)[:2] for s in _strings("lazy_uses", lazy_uses)]
    for kind, refs in (("uses", eager), ("lazy_uses", lazy)):
        if len(set(refs)) != len(refs):
            raise ValueError(f"{kind}: a symbol is listed twice")
    defined_keys = {(n, v) for n, v, _h in defs}
    clash = sorted((n, v or "") for n, v in set(eager) | set(lazy) if (n, v) in defined_keys)
    if clash:
        raise ValueError(f"symbols both defined and used: {clash}")
    if (eager or lazy) and machine not in _ARCHS:
        raise ValueError(f"relocation numbers of e_machine {machine} are not known "
                         f"(known: {sorted(_ARCHS)})")
    arch = _ARCHS.get(machine, _ARCHS[62])

    # ---- versions ------------------------------------------------------------------------
    base = soname if soname is not None else file_name
    vdefs: list[str] = []
    for v in _strings("version_defs", version_defs):
        if v in vdefs:
            raise ValueError(f"version_defs: {v!r} listed twice")
        vdefs.append(v)
    for _n, dv, _h in defs:
        if dv is not None and dv not in vdefs:
            vdefs.append(dv)
    # a node named like the base (the soname) is allowed: NVIDIA's CUDA libraries define
    # ``libnvJitLink.so.12`` twice (VER_FLG_BASE, then the node their symbols carry)
    if any("@" in v for v in vdefs):
        raise ValueError("version names cannot contain '@'")
    def_index = {v: i for i, v in enumerate(vdefs, 2)}

    explicit: dict[str, list[str]] = {}
    if version_needs is not None:
        if not isinstance(version_needs, Mapping):
            raise TypeError("version_needs must be a mapping {needed file: [versions]}")
        for file, versions in version_needs.items():
            _check_name("version_needs file", file)
            if file not in needed_l:
                raise ValueError(f"version_needs: {file!r} is not in needed (glibc finds the file "
                                 "of a version need among the object's dependencies)")
            vs = _strings(f"version_needs[{file!r}]", versions)
            if not vs or len(set(vs)) != len(vs):
                raise ValueError(f"version_needs[{file!r}]: empty or with duplicates")
            if any("@" in v for v in vs):
                raise ValueError("version names cannot contain '@'")
            explicit[file] = vs
    need_file: dict[str, str] = {}  # version of a use -> the file it is needed from
    for file, vs in explicit.items():
        for v in vs:
            need_file.setdefault(v, file)
    needs: dict[str, list[str]] = {f: list(vs) for f, vs in explicit.items()}
    for name, uv in eager + lazy:
        if uv is None or uv in need_file:
            continue
        if not needed_l:
            raise ValueError(f"use {name}@{uv}: version needs a DT_NEEDED file to come from "
                             "(needed is empty)")
        need_file[uv] = needed_l[0]
        needs.setdefault(needed_l[0], []).append(uv)
    need_records = [(f, needs[f]) for f in dict.fromkeys(needed_l) if f in needs]
    need_index: dict[tuple[str, str], int] = {}
    nxt = 2 + len(vdefs)
    for file, vs in need_records:
        for v in vs:
            need_index[(file, v)] = nxt
            nxt += 1
    if nxt > 0x7FFF:
        raise ValueError("too many versions (indices are 15-bit)")
    versioned = bool(vdefs or need_records)

    # ---- symbols: undefined first (not hashed by DT_GNU_HASH), then definitions by bucket --
    undef: dict[tuple[str, str | None], bool] = {}  # key -> referenced through the PLT
    for key in eager:
        undef[key] = False
    for key in lazy:
        undef[key] = True
    syms: list[_Symbol] = [_Symbol(n, v, False, False, f) for (n, v), f in undef.items()]
    n_gnu = max(1, len(defs))
    gnu_buckets = max(b for b in _BUCKETS if b <= n_gnu) if defs else 1
    def_syms = [_Symbol(n, v, h, True) for n, v, h in defs]
    def_syms.sort(key=lambda s: gnu_hash(s.name) % gnu_buckets)  # stable: defines order
    symoffset = 1 + len(syms)
    syms += def_syms
    sym_index = {(s.name, s.version): i for i, s in enumerate(syms, 1)}
    nsyms = 1 + len(syms)

    # ---- strings -------------------------------------------------------------------------
    dynstr = _StrTab()
    needed_at = [dynstr.add(n) for n in needed_l]
    soname_at = dynstr.add(soname) if soname is not None else None
    rpath_at = dynstr.add(rpath_s) if rpath_s is not None else None
    runpath_at = dynstr.add(runpath_s) if runpath_s is not None else None
    name_at = [dynstr.add(s.name) for s in syms]
    base_at = dynstr.add(base) if vdefs else 0
    vdef_at = [dynstr.add(v) for v in vdefs]
    vneed_at = [(dynstr.add(f), [dynstr.add(v) for v in vs]) for f, vs in need_records]

    # ---- sizes, then addresses -----------------------------------------------------------
    sym_fmt = struct.Struct("<IBBHQQ" if is64 else "<IIIBBH")
    rel_fmt = struct.Struct(("<QQq" if is64 else "<IIi") if arch.rela else
                            ("<QQ" if is64 else "<II"))
    dyn_fmt = struct.Struct("<qQ" if is64 else "<iI")
    phdr_size, shdr_size, ehdr_size = (56, 64, 64) if is64 else (32, 40, 52)
    rel_prefix = ".rela" if arch.rela else ".rel"
    rel_type = _SHT_RELA if arch.rela else _SHT_REL
    code = _EXIT_CODE.get((elf_class, machine), b"") if exec_ else b""
    bloom_words = 1
    while bloom_words * 8 * word < 4 * len(defs):
        bloom_words *= 2
    sysv_buckets = max(b for b in _BUCKETS if b <= max(1, nsyms // 2))
    verdef_size = 28 * (1 + len(vdefs)) if vdefs else 0
    verneed_size = sum(16 + 16 * len(vs) for _f, vs in need_records)

    ro: list[_Section] = []
    rw: list[_Section] = []
    if interp is not None:
        ro.append(_Section(".interp", _SHT_PROGBITS, _SHF_ALLOC, 1, len(_b(interp)) + 1))
    if want_gnu:
        ro.append(_Section(".gnu.hash", _SHT_GNU_HASH, _SHF_ALLOC, word,
                           16 + word * bloom_words + 4 * gnu_buckets + 4 * len(defs),
                           link=".dynsym"))
    if want_sysv:
        ro.append(_Section(".hash", _SHT_HASH, _SHF_ALLOC, word, 8 + 4 * (sysv_buckets + nsyms),
                           4, link=".dynsym"))
    ro.append(_Section(".dynsym", _SHT_DYNSYM, _SHF_ALLOC, word, nsyms * sym_fmt.size,
                       sym_fmt.size, link=".dynstr", info=1))
    ro.append(_Section(".dynstr", _SHT_STRTAB, _SHF_ALLOC, 1, len(dynstr.data)))
    if versioned:
        ro.append(_Section(".gnu.version", _SHT_GNU_VERSYM, _SHF_ALLOC, 2, 2 * nsyms, 2,
                           link=".dynsym"))
    if vdefs:
        ro.append(_Section(".gnu.version_d", _SHT_GNU_VERDEF, _SHF_ALLOC, word, verdef_size,
                           link=".dynstr", info=1 + len(vdefs)))
    if need_records:
        ro.append(_Section(".gnu.version_r", _SHT_GNU_VERNEED, _SHF_ALLOC, word, verneed_size,
                           link=".dynstr", info=len(need_records)))
    if eager:
        ro.append(_Section(rel_prefix + ".dyn", rel_type, _SHF_ALLOC, word,
                           len(eager) * rel_fmt.size, rel_fmt.size, link=".dynsym"))
    if lazy:
        ro.append(_Section(rel_prefix + ".plt", rel_type, _SHF_ALLOC | _SHF_INFO_LINK, word,
                           len(lazy) * rel_fmt.size, rel_fmt.size, link=".dynsym",
                           info=".got.plt"))
    if exec_:
        ro.append(_Section(".text", _SHT_PROGBITS, _SHF_ALLOC | _SHF_EXECINSTR, 16,
                           max(len(code), 1)))

    def dynamic(addr: Callable[[str], int]) -> list[tuple[int, int]]:
        """The dynamic section (called once with dummy addresses, to size it)."""
        tags = [(_DT_NEEDED, at) for at in needed_at]
        if soname_at is not None:
            tags.append((_DT_SONAME, soname_at))
        if rpath_at is not None:
            tags.append((_DT_RPATH, rpath_at))
        if runpath_at is not None:
            tags.append((_DT_RUNPATH, runpath_at))
        if want_gnu:
            tags.append((_DT_GNU_HASH, addr(".gnu.hash")))
        if want_sysv:
            tags.append((_DT_HASH, addr(".hash")))
        tags += [(_DT_STRTAB, addr(".dynstr")), (_DT_SYMTAB, addr(".dynsym")),
                 (_DT_STRSZ, len(dynstr.data)), (_DT_SYMENT, sym_fmt.size)]
        if exec_:
            tags.append((_DT_DEBUG, 0))
        if lazy:
            tags += [(_DT_PLTGOT, addr(".got.plt")), (_DT_PLTRELSZ, len(lazy) * rel_fmt.size),
                     (_DT_PLTREL, _DT_RELA if arch.rela else _DT_REL),
                     (_DT_JMPREL, addr(rel_prefix + ".plt"))]
        if eager:
            if arch.rela:
                tags += [(_DT_RELA, addr(".rela.dyn")), (_DT_RELASZ, len(eager) * rel_fmt.size),
                         (_DT_RELAENT, rel_fmt.size)]
            else:
                tags += [(_DT_REL, addr(".rel.dyn")), (_DT_RELSZ, len(eager) * rel_fmt.size),
                         (_DT_RELENT, rel_fmt.size)]
        if flags_1:
            tags.append((_DT_FLAGS_1, flags_1))
        if vdefs:
            tags += [(_DT_VERDEF, addr(".gnu.version_d")), (_DT_VERDEFNUM, 1 + len(vdefs))]
        if need_records:
            tags += [(_DT_VERNEED, addr(".gnu.version_r")), (_DT_VERNEEDNUM, len(need_records))]
        if versioned:
            tags.append((_DT_VERSYM, addr(".gnu.version")))
        tags.append((_DT_NULL, 0))
        return tags

    n_dyn = len(dynamic(lambda _name: 0))
    rw.append(_Section(".dynamic", _SHT_DYNAMIC, _SHF_ALLOC | _SHF_WRITE, word,
                       n_dyn * dyn_fmt.size, dyn_fmt.size, link=".dynstr"))
    if eager:
        rw.append(_Section(".got", _SHT_PROGBITS, _SHF_ALLOC | _SHF_WRITE, word,
                           len(eager) * word, word))
    if lazy:
        rw.append(_Section(".got.plt", _SHT_PROGBITS, _SHF_ALLOC | _SHF_WRITE, word,
                           (3 + len(lazy)) * word, word))
    if defs:
        rw.append(_Section(".data", _SHT_PROGBITS, _SHF_ALLOC | _SHF_WRITE, word,
                           len(defs) * word))

    phdr_types = ([_PT_PHDR, _PT_INTERP] if exec_ else
                  [_PT_INTERP] if interp is not None else [])
    phdr_types += [_PT_LOAD, _PT_LOAD, _PT_DYNAMIC, _PT_GNU_STACK]
    pos = ehdr_size + len(phdr_types) * phdr_size
    for sec in ro:
        sec.offset = sec.addr = pos = _align(pos, sec.align)
        pos += sec.size
    ro_end = pos
    rw_start = pos = _align(pos, 16)
    for sec in rw:
        sec.offset = pos = _align(pos, sec.align)
        sec.addr = sec.offset + PAGE
        pos += sec.size
    rw_end = pos
    sections = ro + rw
    by_name = {s.name: s for s in sections}

    def addr(name: str) -> int:
        return by_name[name].addr

    # ---- contents ------------------------------------------------------------------------
    if interp is not None:
        by_name[".interp"].data = _b(interp) + b"\0"
    if exec_:
        by_name[".text"].data = code or b"\0"

    data_addr = addr(".data") if defs else 0
    value_of = {(n, v): data_addr + word * i for i, (n, v, _h) in enumerate(defs)}
    data_shndx = 1 + sections.index(by_name[".data"]) if defs else 0
    symtab = bytearray(sym_fmt.size)
    for s, at in zip(syms, name_at):
        if s.defined:
            info = (_STB_GLOBAL << 4) | _STT_OBJECT
            value, size, shndx = value_of[(s.name, s.version)], word, data_shndx
        else:
            info = (_STB_GLOBAL << 4) | (_STT_FUNC if s.func else _STT_NOTYPE)
            value = size = shndx = 0
        if is64:
            symtab += sym_fmt.pack(at, info, 0, shndx, value, size)
        else:
            symtab += sym_fmt.pack(at, value, size, info, 0, shndx)
    by_name[".dynsym"].data = bytes(symtab)
    by_name[".dynstr"].data = bytes(dynstr.data)

    # DT_HASH: nbucket, nchain, buckets, chains (each chain pushed at its bucket's head).
    buckets = [0] * sysv_buckets
    chains = [0] * nsyms
    for i, s in enumerate(syms, 1):
        b = elf_hash(s.name) % sysv_buckets
        chains[i], buckets[b] = buckets[b], i
    if want_sysv:
        by_name[".hash"].data = struct.pack(f"<{2 + sysv_buckets + nsyms}I", sysv_buckets,
                                            nsyms, *buckets, *chains)

    # DT_GNU_HASH: nbuckets, symoffset, bloom size, bloom shift, bloom, buckets, chain.
    shift = 6 if is64 else 5
    bits = 8 * word
    bloom = [0] * bloom_words
    gbuckets = [0] * gnu_buckets
    chain: list[int] = []
    hashes = [gnu_hash(s.name) for s in def_syms]
    for i, h in enumerate(hashes):
        bloom[(h // bits) % bloom_words] |= (1 << (h % bits)) | (1 << ((h >> shift) % bits))
        b = h % gnu_buckets
        if gbuckets[b] == 0:
            gbuckets[b] = symoffset + i
        last = i + 1 == len(hashes) or hashes[i + 1] % gnu_buckets != b
        chain.append((h & ~1) | (1 if last else 0))
    if want_gnu:
        by_name[".gnu.hash"].data = (
            struct.pack("<4I", gnu_buckets, symoffset, bloom_words, shift)
            + struct.pack(f"<{bloom_words}{'Q' if is64 else 'I'}", *bloom)
            + struct.pack(f"<{gnu_buckets + len(chain)}I", *gbuckets, *chain))

    if versioned:
        versym = [0]
        for s in syms:
            if s.version is None:
                versym.append(_VER_NDX_GLOBAL)
            elif s.defined:
                versym.append(def_index[s.version] | (_VERSYM_HIDDEN if s.hidden else 0))
            else:
                versym.append(need_index[(need_file[s.version], s.version)])
        by_name[".gnu.version"].data = struct.pack(f"<{nsyms}H", *versym)
    if vdefs:
        blob = bytearray()
        entries = [(base, base_at, _VER_FLG_BASE, 1)]
        entries += [(v, at, 0, def_index[v]) for v, at in zip(vdefs, vdef_at)]
        for k, (v, at, flags, ndx) in enumerate(entries):
            nxt_off = 28 if k + 1 < len(entries) else 0
            # Elf_Verdef: version, flags, ndx, cnt, hash, aux, next; Elf_Verdaux: name, next
            blob += struct.pack("<HHHHIII", 1, flags, ndx, 1, elf_hash(v), 20, nxt_off)
            blob += struct.pack("<II", at, 0)
        by_name[".gnu.version_d"].data = bytes(blob)
    if need_records:
        blob = bytearray()
        for k, ((file, vs), (file_at, vs_at)) in enumerate(zip(need_records, vneed_at)):
            size = 16 + 16 * len(vs)
            nxt_off = size if k + 1 < len(need_records) else 0
            # Elf_Verneed: version, cnt, file, aux, next
            blob += struct.pack("<HHIII", 1, len(vs), file_at, 16, nxt_off)
            for j, (v, at) in enumerate(zip(vs, vs_at)):
                # Elf_Vernaux: hash, flags, other, name, next
                blob += struct.pack("<IHHII", elf_hash(v), 0, need_index[(file, v)], at,
                                    16 if j + 1 < len(vs) else 0)
        by_name[".gnu.version_r"].data = bytes(blob)

    def reloc(offset: int, sym: int, typ: int) -> bytes:
        r_info = (sym << 32 | typ) if is64 else (sym << 8 | typ)
        return rel_fmt.pack(offset, r_info, 0) if arch.rela else rel_fmt.pack(offset, r_info)

    if eager:
        got = addr(".got")
        by_name[rel_prefix + ".dyn"].data = b"".join(
            reloc(got + word * i, sym_index[key], arch.glob_dat) for i, key in enumerate(eager))
        by_name[".got"].data = bytes(word * len(eager))
    if lazy:
        gotplt = addr(".got.plt")
        by_name[rel_prefix + ".plt"].data = b"".join(
            reloc(gotplt + word * (3 + i), sym_index[key], arch.jump_slot)
            for i, key in enumerate(lazy))
        wfmt = "<Q" if is64 else "<I"
        by_name[".got.plt"].data = struct.pack(wfmt, addr(".dynamic")) + bytes(
            word * (2 + len(lazy)))
    if defs:
        wfmt = f"<{len(defs)}{'Q' if is64 else 'I'}"
        by_name[".data"].data = struct.pack(wfmt, *range(1, len(defs) + 1))
    by_name[".dynamic"].data = b"".join(dyn_fmt.pack(t, v) for t, v in dynamic(addr))

    # ---- section header string table and section headers ---------------------------------
    shstr = _StrTab()
    name_off = {sec.name: shstr.add(sec.name) for sec in sections}
    shstrtab_name = shstr.add(".shstrtab")
    shstr_off = rw_end
    shoff = _align(shstr_off + len(shstr.data), word)
    index = {sec.name: i for i, sec in enumerate(sections, 1)}
    shdr_fmt = struct.Struct("<IIQQQQIIQQ" if is64 else "<IIIIIIIIII")
    shdrs = bytearray(shdr_fmt.size)
    for sec in sections:
        assert len(sec.data) == sec.size, sec.name
        info = index[sec.info] if isinstance(sec.info, str) else sec.info
        shdrs += shdr_fmt.pack(name_off[sec.name], sec.type, sec.flags, sec.addr, sec.offset,
                               sec.size, index.get(sec.link, 0), info, sec.align, sec.entsize)
    shdrs += shdr_fmt.pack(shstrtab_name, _SHT_STRTAB, 0, 0, shstr_off, len(shstr.data), 0, 0,
                           1, 0)
    shnum = len(sections) + 2

    # ---- program headers and ELF header --------------------------------------------------
    phdr_fmt = struct.Struct("<IIQQQQQQ" if is64 else "<IIIIIIII")

    def phdr(typ: int, flags: int, offset: int, vaddr: int, size: int, align: int) -> bytes:
        if is64:
            return phdr_fmt.pack(typ, flags, offset, vaddr, vaddr, size, size, align)
        return phdr_fmt.pack(typ, offset, vaddr, vaddr, size, size, flags, align)

    phdrs = bytearray()
    loads = 0
    for typ in phdr_types:
        if typ == _PT_PHDR:
            phdrs += phdr(typ, _PF_R, ehdr_size, ehdr_size, len(phdr_types) * phdr_size, word)
        elif typ == _PT_INTERP:
            sec = by_name[".interp"]
            phdrs += phdr(typ, _PF_R, sec.offset, sec.addr, sec.size, 1)
        elif typ == _PT_LOAD and loads == 0:
            loads += 1
            phdrs += phdr(typ, _PF_R | (_PF_X if exec_ else 0), 0, 0, ro_end, PAGE)
        elif typ == _PT_LOAD:
            phdrs += phdr(typ, _PF_R | _PF_W, rw_start, rw_start + PAGE, rw_end - rw_start, PAGE)
        elif typ == _PT_DYNAMIC:
            sec = by_name[".dynamic"]
            phdrs += phdr(typ, _PF_R | _PF_W, sec.offset, sec.addr, sec.size, word)
        else:  # PT_GNU_STACK: not executable
            phdrs += phdr(typ, _PF_R | _PF_W, 0, 0, 0, 16)

    ident = b"\x7fELF" + bytes([_ELFCLASS[elf_class], 1, 1, 0]) + bytes(8)
    entry = addr(".text") if exec_ else 0
    ehdr = struct.pack("<16sHHI" + ("QQQ" if is64 else "III") + "IHHHHHH", ident, _ET_DYN,
                       machine, 1, entry, ehdr_size, shoff, 0, ehdr_size, phdr_size,
                       len(phdr_types), shdr_size, shnum, shnum - 1)

    image = bytearray(ehdr + phdrs)
    for sec in sections:
        image += bytes(sec.offset - len(image)) + sec.data
    image += bytes(shstr_off - len(image)) + shstr.data
    image += bytes(shoff - len(image)) + shdrs
    return bytes(image)


def build_elf(
    path: StrPath,
    *,
    soname: str | None = None,
    needed: Sequence[str] = (),
    rpath: str | Sequence[str] | None = None,
    runpath: str | Sequence[str] | None = None,
    defines: Sequence[str] = (),
    uses: Sequence[str] = (),
    lazy_uses: Sequence[str] = (),
    version_needs: Mapping[str, Sequence[str]] | None = None,
    version_defs: Sequence[str] = (),
    flags_1: int = 0,
    elf_class: int = 64,
    machine: int = 62,
    exec_: bool = False,
    interp: str | None = None,
    hash_style: str = "both",
) -> pathlib.Path:
    """Write :func:`elf_bytes` to ``path`` (parents created; executables get mode 0o755).

    The base version definition is named after ``soname``, or the file name of ``path``.
    """
    target = pathlib.Path(path)
    image = elf_bytes(
        file_name=target.name, soname=soname, needed=needed, rpath=rpath, runpath=runpath,
        defines=defines, uses=uses, lazy_uses=lazy_uses, version_needs=version_needs,
        version_defs=version_defs, flags_1=flags_1, elf_class=elf_class, machine=machine,
        exec_=exec_, interp=interp, hash_style=hash_style)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(image)
    if exec_:
        target.chmod(0o755)
    return target
