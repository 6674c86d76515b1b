"""A model of glibc's ``/etc/ld.so.cache`` and of the dynamic loader's built-in search path.

Three pieces:

* :func:`parse_ld_so_cache` / :func:`read_ld_so_cache` read the cache file ``ldconfig`` writes,
  in all three layouts glibc's loader accepts (``elf/dl-cache.c``, ``_dl_load_cache_lookup``):
  the old libc5 ``"ld.so-1.7.0"`` format, the old format with the new one hidden in its string
  table (``ldconfig -c compat``), and the new ``"glibc-ld.so.cache1.1"`` format alone (the
  default since glibc 2.32), including the extension directory (glibc 2.33+) with its
  ``cache_extension_tag_generator`` and ``cache_extension_tag_glibc_hwcaps`` sections.
  Structures and constants follow ``sysdeps/generic/dl-cache.h`` and
  ``sysdeps/generic/ldconfig.h``.
* :meth:`LdCache.lookup` answers what ``_dl_load_cache_lookup`` returns for a soname, mirroring
  ``search_cache`` of glibc 2.33+ (binary search with ``_dl_cache_libcmp``, the
  ``_dl_cache_check_flags`` rule of the process's ABI, glibc-hwcaps priorities, the x86 ISA
  level check). Deviations are listed in its docstring.
* :func:`system_search` asks the program interpreter (``ld.so --help``, glibc 2.32+) for its
  system search directories and glibc-hwcaps subdirectories, with a built-in fallback.

Reading a cache never raises anything but :class:`LdCacheError` for bad data, and its cost is
bounded by the size of the data (:data:`MAX_CACHE_SIZE`, :data:`MAX_STRING_LENGTH`).
"""

from __future__ import annotations

import os
import platform
import struct
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple, Union

__all__ = [
    "DL_CACHE_HWCAP_EXTENSION",
    "FLAG_AARCH64_LIB64",
    "FLAG_ELF",
    "FLAG_ELF_LIBC6",
    "FLAG_X8664_LIB64",
    "MAX_CACHE_SIZE",
    "MAX_STRING_LENGTH",
    "CacheEntry",
    "LdCache",
    "LdCacheError",
    "SystemSearch",
    "cache_flags",
    "default_interpreter",
    "libcmp",
    "parse_interpreter_help",
    "parse_ld_so_cache",
    "read_ld_so_cache",
    "system_search",
]

# --- constants from sysdeps/generic/ldconfig.h ---------------------------------------------------

FLAG_ELF = 0x0001
FLAG_ELF_LIBC5 = 0x0002
FLAG_ELF_LIBC6 = 0x0003
FLAG_TYPE_MASK = 0x00FF
FLAG_REQUIRED_MASK = 0xFF00
FLAG_SPARC_LIB64 = 0x0100
FLAG_IA64_LIB64 = 0x0200
FLAG_X8664_LIB64 = 0x0300
FLAG_S390_LIB64 = 0x0400
FLAG_POWERPC_LIB64 = 0x0500
FLAG_MIPS64_LIBN32 = 0x0600
FLAG_MIPS64_LIBN64 = 0x0700
FLAG_X8664_LIBX32 = 0x0800
FLAG_ARM_LIBHF = 0x0900
FLAG_AARCH64_LIB64 = 0x0A00
FLAG_ARM_LIBSF = 0x0B00
FLAG_MIPS_LIB32_NAN2008 = 0x0C00
FLAG_MIPS64_LIBN32_NAN2008 = 0x0D00
FLAG_MIPS64_LIBN64_NAN2008 = 0x0E00
FLAG_RISCV_FLOAT_ABI_SOFT = 0x0F00
FLAG_RISCV_FLOAT_ABI_DOUBLE = 0x1000
FLAG_LARCH_FLOAT_ABI_SOFT = 0x1100
FLAG_LARCH_FLOAT_ABI_DOUBLE = 0x1200

# --- constants from sysdeps/generic/dl-cache.h ---------------------------------------------------

CACHEMAGIC = b"ld.so-1.7.0"
CACHEMAGIC_VERSION_NEW = b"glibc-ld.so.cache1.1"
#: hwcap bit of an entry from a glibc-hwcaps subdirectory; the low 32 bits index the
#: cache_extension_tag_glibc_hwcaps section, bits 32..41 hold the ISA level (x86).
DL_CACHE_HWCAP_EXTENSION = 1 << 62
DL_CACHE_HWCAP_ISA_LEVEL_MASK = (1 << 10) - 1
CACHE_EXTENSION_MAGIC = 0xEAA42174  # (uint32_t) -358342284
CACHE_EXTENSION_TAG_GENERATOR = 0
CACHE_EXTENSION_TAG_GLIBC_HWCAPS = 1

_OLD_HEADER = 16  # sizeof (struct cache_file): magic[11], pad, nlibs
_OLD_ENTRY = 12  # sizeof (struct file_entry): flags, key, value
_NEW_HEADER = 48  # sizeof (struct cache_file_new)
_NEW_ENTRY = 24  # sizeof (struct file_entry_new): flags, key, value, osversion, hwcap
_ALIGN = 8  # __alignof__ (struct cache_file_new)

#: Larger files are refused (real caches are well under a megabyte).
MAX_CACHE_SIZE = 64 * 1024 * 1024
#: Longest name or path accepted in the string table (PATH_MAX, NUL included).
MAX_STRING_LENGTH = 4096

# e_machine values
EM_SPARC = 2
EM_386 = 3
EM_MIPS = 8
EM_SPARC32PLUS = 18
EM_PPC = 20
EM_PPC64 = 21
EM_S390 = 22
EM_ARM = 40
EM_SPARCV9 = 43
EM_IA_64 = 50
EM_X86_64 = 62
EM_AARCH64 = 183
EM_RISCV = 243
EM_LOONGARCH = 258

# Architectures whose C ABI makes plain ``char`` unsigned (affects _dl_cache_libcmp on bytes
# >= 0x80; ldconfig sorts with the same comparison on the same architecture).
_UNSIGNED_CHAR_MACHINES = frozenset({EM_ARM, EM_AARCH64, EM_PPC, EM_PPC64, EM_S390, EM_RISCV})


class LdCacheError(ValueError):
    """``ld.so.cache`` data that glibc would not accept, or a cache file that cannot be read.

    ``source`` names the data (a path, or ``"<bytes>"``) and ``reason`` says, in a few words, what
    is wrong with it. The message never depends on the locale.
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: not a usable ld.so cache: {reason}")

    def __reduce__(self) -> Tuple[Any, Tuple[str, str]]:
        return (type(self), (self.source, self.reason))


@dataclass(frozen=True)
class CacheEntry:
    """One library entry of the cache, in file order.

    ``name`` is the soname (the lookup key) and ``path`` the file the loader opens. ``flags`` is
    the ``FLAG_*`` word (``FLAG_ELF_LIBC6 | FLAG_X8664_LIB64`` = ``0x303`` for x86-64 libraries).
    ``osversion`` and ``hwcap`` are 0 in the old format. ``hwcaps_subdir`` is the
    glibc-hwcaps subdirectory name (``"x86-64-v3"``) of an extension entry, resolved the way the
    loader resolves it, else None.
    """

    name: str
    path: str
    flags: int
    osversion: int
    hwcap: int
    hwcaps_subdir: Optional[str]

    @property
    def is_hwcaps_extension(self) -> bool:
        """True for an entry from a glibc-hwcaps subdirectory (``dl_cache_hwcap_extension``)."""
        return _is_hwcap_extension(self.hwcap)

    @property
    def isa_level(self) -> int:
        """x86 ISA level bit index an extension entry needs (0 baseline, 1 v2, 2 v3, 3 v4)."""
        if not self.is_hwcaps_extension:
            return 0
        return (self.hwcap >> 32) & DL_CACHE_HWCAP_ISA_LEVEL_MASK

    @property
    def legacy_hwcap(self) -> bool:
        """True for an entry from a legacy HWCAP subdirectory (``tls``, ``haswell``...)."""
        return self.hwcap != 0 and not self.is_hwcaps_extension


def _is_hwcap_extension(hwcap: int) -> bool:
    # sysdeps/generic/dl-cache.h, dl_cache_hwcap_extension: only bit 62 set in the upper half,
    # ignoring the ISA level bits.
    return ((hwcap >> 32) & ~DL_CACHE_HWCAP_ISA_LEVEL_MASK) == (DL_CACHE_HWCAP_EXTENSION >> 32)


def cache_flags(
    elf_class: int, machine: int, e_flags: Optional[int] = None
) -> Tuple[FrozenSet[int], int]:
    """``(flags _dl_cache_check_flags accepts, _DL_CACHE_DEFAULT_ID)`` for a process's ABI.

    From ``sysdeps/unix/sysv/linux/<arch>/dl-cache.h`` (the generic rule, ``flags == 1 ||
    flags == 3``, for architectures without their own). ``e_flags`` picks the float ABI on
    ARM / RISC-V / LoongArch and the MIPS ABI and NaN encoding; when None the common choice is
    assumed (ARM hard-float, RISC-V and LoongArch double-float, MIPS legacy NaN).
    """
    generic = (frozenset({FLAG_ELF, FLAG_ELF_LIBC6}), FLAG_ELF_LIBC6)

    def only(flag: int) -> Tuple[FrozenSet[int], int]:
        value = flag | FLAG_ELF_LIBC6
        return frozenset({value}), value

    if machine == EM_X86_64:
        return only(FLAG_X8664_LIB64 if elf_class == 64 else FLAG_X8664_LIBX32)
    if machine == EM_AARCH64 and elf_class == 64:
        return only(FLAG_AARCH64_LIB64)
    if machine == EM_PPC64 and elf_class == 64:
        return only(FLAG_POWERPC_LIB64)
    if machine == EM_S390 and elf_class == 64:
        return only(FLAG_S390_LIB64)
    if machine == EM_SPARCV9 and elf_class == 64:
        return only(FLAG_SPARC_LIB64)
    if machine == EM_IA_64:
        return only(FLAG_IA64_LIB64)
    if machine == EM_ARM:
        # sysdeps/unix/sysv/linux/arm/dl-cache.h: unmarked libc6 objects stay acceptable, and
        # _DL_CACHE_DEFAULT_ID keeps its generic value 3.
        soft = e_flags is not None and not (e_flags & 0x400)  # EF_ARM_ABI_FLOAT_HARD
        marked = (FLAG_ARM_LIBSF if soft else FLAG_ARM_LIBHF) | FLAG_ELF_LIBC6
        return frozenset({marked, FLAG_ELF_LIBC6}), FLAG_ELF_LIBC6
    if machine == EM_RISCV:
        soft = e_flags is not None and (e_flags & 0x6) != 0x4  # EF_RISCV_FLOAT_ABI_DOUBLE
        return only(FLAG_RISCV_FLOAT_ABI_SOFT if soft else FLAG_RISCV_FLOAT_ABI_DOUBLE)
    if machine == EM_LOONGARCH:
        soft = e_flags is not None and (e_flags & 0x7) != 0x3  # EF_LARCH_ABI_DOUBLE_FLOAT
        return only(FLAG_LARCH_FLOAT_ABI_SOFT if soft else FLAG_LARCH_FLOAT_ABI_DOUBLE)
    if machine == EM_MIPS:
        nan2008 = e_flags is not None and bool(e_flags & 0x400)  # EF_MIPS_NAN2008
        if elf_class == 64:
            return only(FLAG_MIPS64_LIBN64_NAN2008 if nan2008 else FLAG_MIPS64_LIBN64)
        if e_flags is not None and e_flags & 0x20:  # EF_MIPS_ABI2: n32
            return only(FLAG_MIPS64_LIBN32_NAN2008 if nan2008 else FLAG_MIPS64_LIBN32)
        return only(FLAG_MIPS_LIB32_NAN2008) if nan2008 else generic
    return generic


def libcmp(p1: bytes, p2: bytes, *, signed_char: bool = True) -> int:
    """``_dl_cache_libcmp``: compare sonames, runs of digits numerically (``libc.so.10`` after
    ``libc.so.9``). Negative, zero or positive like ``strcmp``."""
    n1, n2 = len(p1), len(p2)
    i = j = 0

    def ch(data: bytes, k: int, n: int) -> int:
        if k >= n:
            return 0
        c = data[k]
        return c - 256 if signed_char and c >= 0x80 else c

    while i < n1 and p1[i] != 0:
        c1 = ch(p1, i, n1)
        c2 = ch(p2, j, n2)
        if 0x30 <= c1 <= 0x39:
            if 0x30 <= c2 <= 0x39:
                val1 = 0
                while i < n1 and 0x30 <= p1[i] <= 0x39:
                    val1 = val1 * 10 + p1[i] - 0x30
                    i += 1
                val2 = 0
                while j < n2 and 0x30 <= p2[j] <= 0x39:
                    val2 = val2 * 10 + p2[j] - 0x30
                    j += 1
                if val1 != val2:
                    return val1 - val2
            else:
                return 1
        elif 0x30 <= c2 <= 0x39:
            return -1
        elif c1 != c2:
            return c1 - c2
        else:
            i += 1
            j += 1
    return ch(p1, i, n1) - ch(p2, j, n2)


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class LdCache:
    """A parsed ``ld.so.cache``: the entries the loader searches, in file order.

    ``format`` is ``"new"`` (glibc-ld.so.cache1.1 alone), ``"compat"`` (old format with the new
    one inside; the entries are the new ones, which is what glibc uses) or ``"old"``.
    ``hwcaps`` lists the cache_extension_tag_glibc_hwcaps names in section order and
    ``generator`` is the cache_extension_tag_generator text (``"ldconfig (GNU libc) stable
    release version 2.36"``), both empty/None without extensions. ``byteorder`` is ``"little"``
    or ``"big"``.
    """

    entries: Tuple[CacheEntry, ...]
    source: str = "<bytes>"
    format: str = "new"
    byteorder: str = sys.byteorder
    hwcaps: Tuple[str, ...] = ()
    generator: Optional[str] = None

    def lookup(
        self,
        name: str,
        *,
        elf_class: int,
        machine: int,
        hwcaps_subdirs: Sequence[str] = (),
        e_flags: Optional[int] = None,
        x86_isa_level: Optional[int] = None,
    ) -> Optional[str]:
        """The path ``_dl_load_cache_lookup`` returns for ``name`` in a process of this ABI.

        Mirrors ``search_cache`` in ``elf/dl-cache.c`` (glibc 2.33+): a binary search over the
        entries (which ``ldconfig`` sorts in descending ``_dl_cache_libcmp`` order), back to the
        first entry with the name, then a scan of the entries with that name:

        * only entries whose flags pass ``_dl_cache_check_flags`` for ``(elf_class, machine,
          e_flags)`` count (:func:`cache_flags`);
        * an entry from a glibc-hwcaps subdirectory counts only if its subdirectory is in
          ``hwcaps_subdirs`` (the loader's active subdirectories, best first, as
          :attr:`SystemSearch.hwcaps_subdirs` gives them) and, on x86, if the CPU has its ISA
          level; the one with the best priority wins;
        * once a candidate is found, the next plain entry ends the scan (ldconfig puts the
          hwcaps entries first), so the first acceptable plain entry wins when no hwcaps entry
          does;
        * plain entries with a legacy hwcap value (``tls``, ``haswell``... directories) are
          skipped;
        * old-format caches have no hwcap data: each acceptable entry replaces the candidate
          until one whose flags equal ``_DL_CACHE_DEFAULT_ID`` ends the scan.

        ``x86_isa_level`` is the highest x86 ISA level the CPU has (0 baseline, 1 v2, 2 v3,
        3 v4); by default the highest ``x86-64-vN`` in ``hwcaps_subdirs`` stands for it.

        Deviations: glibc 2.33-2.36 may still use a legacy-hwcap entry when the CPU's AT_HWCAP
        and AT_PLATFORM match it (glibc 2.37 dropped that; this model always skips them).
        Priorities are matched by name, where glibc merges two sorted lists (equal for caches
        ldconfig writes). The returned path is not checked: like glibc, a path whose file is
        gone is still returned (the loader then falls back to the system directories).
        """
        accepted, default_id = cache_flags(elf_class, machine, e_flags)
        priorities: Dict[str, int] = {}
        for wanted in hwcaps_subdirs:
            priorities.setdefault(wanted, len(priorities) + 1)
        check_isa = machine in (EM_386, EM_X86_64)
        if x86_isa_level is None:
            x86_isa_level = 0
            for level_name in hwcaps_subdirs:
                if level_name.startswith("x86-64-v") and level_name[8:].isdigit():
                    x86_isa_level = max(x86_isa_level, int(level_name[8:]) - 1)
        signed_char = machine not in _UNSIGNED_CHAR_MACHINES
        has_hwcap_data = self.format != "old"
        key = _encode(name)
        entries = self.entries

        def cmp_at(index: int) -> int:
            return libcmp(key, _encode(entries[index].name), signed_char=signed_char)

        left, right = 0, len(entries) - 1
        best: Optional[str] = None
        best_priority = 0
        while left <= right:
            middle = (left + right) // 2
            cmpres = cmp_at(middle)
            if cmpres == 0:
                left = middle
                while middle > 0 and cmp_at(middle - 1) == 0:
                    middle -= 1
                while True:  # do { ... } while (++middle <= right);
                    entry = entries[middle]
                    if middle > left and cmp_at(middle) != 0:
                        break
                    if entry.flags in accepted:
                        named = False
                        skip = False
                        if has_hwcap_data:
                            named = entry.is_hwcaps_extension
                            if (
                                named
                                and check_isa
                                and not _isa_compatible(entry.isa_level, x86_isa_level)
                            ):
                                skip = True
                            elif not named and best is not None:
                                break
                            elif not named and entry.hwcap != 0:
                                skip = True
                            elif named:
                                subdir = entry.hwcaps_subdir
                                priority = 0 if subdir is None else priorities.get(subdir, 0)
                                if priority == 0:
                                    skip = True
                                elif best is None or priority < best_priority:
                                    best_priority = priority
                                else:
                                    skip = True
                        if not skip:
                            best = entry.path
                            if not named and entry.flags == default_id:
                                break
                    middle += 1
                    if middle > right:
                        break
                break
            if cmpres < 0:
                left = middle + 1
            else:
                right = middle - 1
        return best


def _isa_compatible(level: int, cpu_level: int) -> bool:
    # sysdeps/x86/dl-isa-level.h: (1 << level) must be in cpu_features->isa_1, whose bits are
    # baseline, v2, v3, v4 (GNU_PROPERTY_X86_ISA_1_*); levels are cumulative.
    return level <= min(cpu_level, 3)


class _Strings:
    """NUL-terminated strings of the cache, memoised, with a bounded total cost."""

    def __init__(self, data: bytes, source: str) -> None:
        self._data = data
        self._source = source
        self._memo: Dict[int, str] = {}
        # Real caches decode to about their own size (names share the tails of paths).
        self._budget = 4 * len(data) + (1 << 20)

    def at(self, offset: int, what: str) -> str:
        cached = self._memo.get(offset)
        if cached is not None:
            return cached
        data = self._data
        if not 0 <= offset < len(data):
            raise LdCacheError(
                self._source, f"{what} string offset {offset:#x} is outside the file"
            )
        end = data.find(b"\0", offset, min(len(data), offset + MAX_STRING_LENGTH))
        if end < 0:
            if offset + MAX_STRING_LENGTH <= len(data):
                raise LdCacheError(
                    self._source,
                    f"{what} string at {offset:#x} is longer than {MAX_STRING_LENGTH - 1} bytes",
                )
            raise LdCacheError(
                self._source, f"{what} string at {offset:#x} runs past the end of the file"
            )
        self._budget -= end - offset + 1
        if self._budget < 0:
            raise LdCacheError(self._source, "string table references overlap excessively")
        text = data[offset:end].decode("utf-8", "surrogateescape")
        self._memo[offset] = text
        return text


def parse_ld_so_cache(
    data: Union[bytes, bytearray, memoryview], source: str = "<bytes>"
) -> LdCache:
    """Parse the contents of an ``ld.so.cache`` file.

    Accepts what ``_dl_load_cache_lookup`` accepts (new format, old format, old format with the
    new one embedded at ``ALIGN_CACHE(16 + nlibs * 12)``), and is stricter about the rest: every
    string index must point at a NUL-terminated string inside the file (at most
    :data:`MAX_STRING_LENGTH` bytes), the extension directory must be well formed (as
    ``ldconfig -p`` requires) and every glibc-hwcaps entry must index an existing subdirectory
    name (the loader would merely never pick such an entry). A new-format header whose
    endianness flag says "invalid" is refused, as the loader refuses it; a big-endian cache is
    read as such. Raises :class:`LdCacheError`, and nothing else, for any other input.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise LdCacheError(source, f"not bytes ({type(data).__name__})")
    try:
        raw = bytes(data)
    except (TypeError, ValueError, BufferError) as exc:  # e.g. a released memoryview
        raise LdCacheError(source, f"unreadable buffer ({exc})") from exc
    size = len(raw)
    if size == 0:
        raise LdCacheError(source, "empty file")
    if size > MAX_CACHE_SIZE:
        raise LdCacheError(source, f"file too large ({size} bytes, limit {MAX_CACHE_SIZE})")
    strings = _Strings(raw, source)

    if raw.startswith(CACHEMAGIC_VERSION_NEW):
        # Checked first since glibc 2.32 (elf/dl-cache.c, _dl_load_cache_lookup).
        if size <= _NEW_HEADER:
            raise LdCacheError(source, f"truncated header ({size} bytes)")
        order = _new_byteorder(raw, 0, source)
        return _parse_new(raw, 0, order, "new", strings, source)

    if raw.startswith(CACHEMAGIC):
        if size <= _OLD_HEADER:
            raise LdCacheError(source, f"truncated header ({size} bytes)")
        order = sys.byteorder
        fmt = "<" if order == "little" else ">"
        (nlibs,) = struct.unpack_from(fmt + "I", raw, 12)
        if (size - _OLD_HEADER) // _OLD_ENTRY < nlibs:
            raise LdCacheError(source, f"{nlibs} entries do not fit in {size} bytes")
        table = _OLD_HEADER + nlibs * _OLD_ENTRY
        new_offset = (table + _ALIGN - 1) & ~(_ALIGN - 1)
        if size >= new_offset + _NEW_HEADER and raw.startswith(CACHEMAGIC_VERSION_NEW, new_offset):
            new_order = _new_byteorder(raw, new_offset, source)
            return _parse_new(raw, new_offset, new_order, "compat", strings, source)
        entries: List[CacheEntry] = []
        for flags, key, value in struct.iter_unpack(fmt + "iII", raw[_OLD_HEADER:table]):
            entries.append(
                CacheEntry(
                    name=strings.at(table + key, "name"),
                    path=strings.at(table + value, "path"),
                    flags=flags,
                    osversion=0,
                    hwcap=0,
                    hwcaps_subdir=None,
                )
            )
        return LdCache(tuple(entries), source, "old", order)

    if size < len(CACHEMAGIC_VERSION_NEW) and (
        CACHEMAGIC_VERSION_NEW.startswith(raw) or CACHEMAGIC.startswith(raw)
    ):
        raise LdCacheError(source, f"truncated header ({size} bytes)")
    raise LdCacheError(source, "unknown magic (neither ld.so-1.7.0 nor glibc-ld.so.cache1.1)")


def _new_byteorder(raw: bytes, offset: int, source: str) -> str:
    # cache_file_new.flags & cache_file_new_flags_endian_mask (sysdeps/generic/dl-cache.h)
    endian = raw[offset + 28] & 3
    if endian == 1:
        raise LdCacheError(source, "header marks the cache invalid (endianness flag 1)")
    if endian == 2:
        return "little"
    if endian == 3:
        return "big"
    return sys.byteorder  # written by an ldconfig without endianness support: native order


def _parse_new(
    raw: bytes, base: int, order: str, fmt_name: str, strings: _Strings, source: str
) -> LdCache:
    size = len(raw)
    fmt = "<" if order == "little" else ">"
    (nlibs,) = struct.unpack_from(fmt + "I", raw, base + 20)  # len_strings (+24) is not used
    (extension_offset,) = struct.unpack_from(fmt + "I", raw, base + 32)
    if (size - base - _NEW_HEADER) // _NEW_ENTRY < nlibs:
        raise LdCacheError(source, f"{nlibs} entries do not fit in {size} bytes")
    hwcaps, generator = _parse_extensions(raw, extension_offset, fmt, strings, source)
    start = base + _NEW_HEADER
    entries: List[CacheEntry] = []
    # String indices count from the start of the new header (search_cache's string_table).
    for flags, key, value, osversion, hwcap in struct.iter_unpack(
        fmt + "iIIIQ", raw[start : start + nlibs * _NEW_ENTRY]
    ):
        subdir: Optional[str] = None
        if _is_hwcap_extension(hwcap):
            index = hwcap & 0xFFFFFFFF
            if index >= len(hwcaps):
                raise LdCacheError(
                    source,
                    f"glibc-hwcaps index {index} out of range ({len(hwcaps)} subdirectories)",
                )
            subdir = hwcaps[index]
        entries.append(
            CacheEntry(
                name=strings.at(base + key, "name"),
                path=strings.at(base + value, "path"),
                flags=flags,
                osversion=osversion,
                hwcap=hwcap,
                hwcaps_subdir=subdir,
            )
        )
    return LdCache(tuple(entries), source, fmt_name, order, hwcaps, generator)


def _parse_extensions(
    raw: bytes, offset: int, fmt: str, strings: _Strings, source: str
) -> Tuple[Tuple[str, ...], Optional[str]]:
    """cache_extension_load + cache_extension_verify (sysdeps/generic/dl-cache.h)."""
    if offset == 0:
        return (), None
    size = len(raw)
    if offset % 4:
        raise LdCacheError(source, f"misaligned extension directory offset {offset:#x}")
    if offset + 8 > size:
        raise LdCacheError(source, "extension directory runs past the end of the file")
    magic, count = struct.unpack_from(fmt + "II", raw, offset)
    if magic != CACHE_EXTENSION_MAGIC:
        raise LdCacheError(source, f"bad extension directory magic {magic:#010x}")
    if offset + 8 + count * 16 > size:
        raise LdCacheError(source, f"{count} extension sections do not fit in the file")
    sections: Dict[int, Tuple[int, int]] = {}
    for i in range(count):
        tag, _flags, sec_offset, sec_size = struct.unpack_from(
            fmt + "IIII", raw, offset + 8 + 16 * i
        )
        if sec_offset + sec_size > size:
            raise LdCacheError(source, f"extension section {i} runs past the end of the file")
        if tag <= CACHE_EXTENSION_TAG_GLIBC_HWCAPS:
            sections[tag] = (sec_offset, sec_size)  # unknown tags are ignored; a later one wins
    generator: Optional[str] = None
    if CACHE_EXTENSION_TAG_GENERATOR in sections:
        gen_offset, gen_size = sections[CACHE_EXTENSION_TAG_GENERATOR]
        generator = raw[gen_offset : gen_offset + gen_size].decode("utf-8", "replace")
    hwcaps: List[str] = []
    if CACHE_EXTENSION_TAG_GLIBC_HWCAPS in sections:
        hw_offset, hw_size = sections[CACHE_EXTENSION_TAG_GLIBC_HWCAPS]
        # An empty, misaligned or ragged section is dropped by cache_extension_verify.
        if hw_size and hw_offset % 4 == 0 and hw_size % 4 == 0:
            for (index,) in struct.iter_unpack(fmt + "I", raw[hw_offset : hw_offset + hw_size]):
                # The loader (glibc_hwcaps_compare) and ldconfig -p read these names relative to
                # the start of the file, although ldconfig writes them relative to the new
                # header: in "compat" files they name unrelated bytes, as they do for glibc.
                hwcaps.append(strings.at(index, "glibc-hwcaps"))
    return tuple(hwcaps), generator


def read_ld_so_cache(path: str = "/etc/ld.so.cache") -> Optional[LdCache]:
    """Read and parse a cache file; None if it does not exist (the loader then goes without).

    Unreadable files (permissions, a directory...) raise :class:`LdCacheError` with the
    ``OSError`` as ``__cause__``, as do corrupt ones.
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as handle:
            data = handle.read(MAX_CACHE_SIZE + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LdCacheError(source, f"cannot read: {exc.strerror or exc}") from exc
    return parse_ld_so_cache(data, source)


# --- the interpreter's search path ----------------------------------------------------------------


@dataclass(frozen=True)
class SystemSearch:
    """What the program interpreter searches after DT_RUNPATH / LD_LIBRARY_PATH and the cache.

    ``system_dirs`` are the ``(system search path)`` directories in order; ``hwcaps_subdirs`` the
    glibc-hwcaps subdirectories searched, best first (``x86-64-v4``...); ``legacy_hwcaps`` the
    legacy HWCAP subdirectories (glibc 2.33-2.36 only). ``source`` is ``"ld.so --help"`` when
    the interpreter said so itself, ``"builtin"`` when guessed.
    """

    interpreter: str
    system_dirs: Tuple[str, ...]
    hwcaps_subdirs: Tuple[str, ...]
    legacy_hwcaps: Tuple[str, ...]
    source: str


_INTERPRETERS = {
    EM_X86_64: "/lib64/ld-linux-x86-64.so.2",
    EM_AARCH64: "/lib/ld-linux-aarch64.so.1",
    EM_386: "/lib/ld-linux.so.2",
    EM_ARM: "/lib/ld-linux-armhf.so.3",
    EM_PPC64: "/lib64/ld64.so.2",
    EM_S390: "/lib/ld64.so.1",
    EM_RISCV: "/lib/ld-linux-riscv64-lp64d.so.1",
    EM_LOONGARCH: "/lib64/ld-linux-loongarch-lp64d.so.1",
}

_TRIPLETS = {
    EM_X86_64: "x86_64-linux-gnu",
    EM_AARCH64: "aarch64-linux-gnu",
    EM_386: "i386-linux-gnu",
    EM_ARM: "arm-linux-gnueabihf",
    EM_PPC64: "powerpc64le-linux-gnu",
    EM_S390: "s390x-linux-gnu",
    EM_RISCV: "riscv64-linux-gnu",
    EM_LOONGARCH: "loongarch64-linux-gnu",
}

_LIB64_MACHINES = frozenset({EM_X86_64, EM_AARCH64, EM_PPC64, EM_S390, EM_RISCV, EM_LOONGARCH})

_MACHINE_NAMES = {
    "x86_64": EM_X86_64,
    "amd64": EM_X86_64,
    "aarch64": EM_AARCH64,
    "arm64": EM_AARCH64,
    "i386": EM_386,
    "i486": EM_386,
    "i586": EM_386,
    "i686": EM_386,
    "armv6l": EM_ARM,
    "armv7l": EM_ARM,
    "armv8l": EM_ARM,
    "ppc64le": EM_PPC64,
    "ppc64": EM_PPC64,
    "s390x": EM_S390,
    "riscv64": EM_RISCV,
    "loongarch64": EM_LOONGARCH,
}

HELP_TIMEOUT = 5.0


def default_interpreter(machine: int) -> str:
    """The PT_INTERP glibc programs of this ``e_machine`` name (the 64-bit/hard-float ABI)."""
    try:
        return _INTERPRETERS[machine]
    except KeyError:
        raise ValueError(f"no known glibc program interpreter for e_machine {machine}") from None


def _host_machine() -> int:
    name = platform.machine().lower()
    machine = _MACHINE_NAMES.get(name)
    if machine is None:
        raise ValueError(f"unknown host machine {name!r}; pass machine=")
    if machine == EM_X86_64 and struct.calcsize("P") == 4:
        return EM_386
    return machine


def parse_interpreter_help(
    text: str,
) -> Optional[Tuple[Tuple[str, ...], Tuple[str, ...], Tuple[str, ...]]]:
    """``(system_dirs, hwcaps_subdirs, legacy_hwcaps)`` from ``ld.so --help`` output.

    The format is ``elf/dl-usage.c`` (glibc 2.32+): ``"  DIR (system search path)"`` lines under
    ``Shared library search path:``; ``"  NAME (supported, searched)"``, ``"  NAME (searched)"``
    (prepended), ``"  NAME (supported, masked)"``, ``"  NAME (masked)"`` or a bare ``"  NAME"``
    under ``Subdirectories of glibc-hwcaps directories, in priority order:`` (2.33+); legacy
    HWCAP subdirectories likewise (2.33-2.36). Only searched subdirectories are kept. None when
    the text has no search path section (glibc 2.31 and older).
    """
    sections: Dict[str, List[str]] = {}
    current: Optional[List[str]] = None
    for line in text.splitlines():
        if not line.strip():
            current = None
            continue
        if line.startswith("Shared library search path:"):
            current = sections.setdefault("path", [])
        elif line.startswith("Subdirectories of glibc-hwcaps directories"):
            current = sections.setdefault("hwcaps", [])
        elif line.startswith("Legacy HWCAP subdirectories"):
            current = sections.setdefault("legacy", [])
        elif current is not None and line.startswith("  "):
            current.append(line[2:])
        else:
            current = None
    if "path" not in sections:
        return None

    def split(item: str) -> Tuple[str, str]:
        if item.endswith(")") and " (" in item:
            head, _, marker = item.rpartition(" (")
            return head, marker[:-1]
        return item, ""

    dirs: List[str] = []
    for item in sections["path"]:
        directory, marker = split(item)
        if marker == "system search path" and directory not in dirs:
            dirs.append(directory)

    def searched(items: List[str]) -> Tuple[str, ...]:
        names: List[str] = []
        for item in items:
            name, marker = split(item)
            words = [w.strip() for w in marker.replace(";", ",").split(",")]
            if "searched" in words and name not in names:
                names.append(name)
        return tuple(names)

    return tuple(dirs), searched(sections.get("hwcaps", [])), searched(sections.get("legacy", []))


def _builtin_dirs(machine: int, isdir: Callable[[str], bool]) -> Tuple[str, ...]:
    triplet = _TRIPLETS.get(machine)
    if triplet is not None and (isdir(f"/lib/{triplet}") or isdir(f"/usr/lib/{triplet}")):
        # Debian/Ubuntu multiarch: slibdir=/lib/<triplet>, then the generic directories.
        return (f"/lib/{triplet}", f"/usr/lib/{triplet}", "/lib", "/usr/lib")
    if machine in _LIB64_MACHINES and (isdir("/lib64") or isdir("/usr/lib64")):
        return ("/lib64", "/usr/lib64")  # Fedora / RHEL / SUSE style
    return ("/lib", "/usr/lib")


def system_search(
    interpreter: Optional[str] = None,
    *,
    machine: Optional[int] = None,
    run: Callable[..., Any] = subprocess.run,
    isdir: Callable[[str], bool] = os.path.isdir,
) -> SystemSearch:
    """Ask ``<interpreter> --help`` (timeout 5 s) for the search path; fall back to a table.

    ``interpreter`` defaults to :func:`default_interpreter` of ``machine`` (default: this
    Python's). When the interpreter is missing, cannot run here, times out or is older than
    glibc 2.32 (no search path in its help), the directories come from a built-in table:
    Debian multiarch ``/lib/<triplet>:/usr/lib/<triplet>:/lib:/usr/lib`` if such a directory
    exists, else ``/lib64:/usr/lib64`` for 64-bit machines that have one, else
    ``/lib:/usr/lib``; no glibc-hwcaps subdirectories are assumed then (glibc before 2.33 has
    none). ``run`` and ``isdir`` are injectable for tests. ``ValueError`` if ``machine`` is
    not given and this Python's machine is unknown, or has no known interpreter.
    """
    if machine is None:
        machine = _host_machine()
    if interpreter is None:
        interpreter = default_interpreter(machine)
    try:
        completed = run(
            [interpreter, "--help"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=HELP_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        completed = None
    if completed is not None:
        out = getattr(completed, "stdout", None)
        if isinstance(out, (bytes, bytearray)):
            text = bytes(out).decode("utf-8", "surrogateescape")
        elif isinstance(out, str):
            text = out
        else:
            text = ""
        parsed = parse_interpreter_help(text)
        if parsed is not None and parsed[0]:
            dirs, hwcaps, legacy = parsed
            return SystemSearch(interpreter, dirs, hwcaps, legacy, "ld.so --help")
    return SystemSearch(interpreter, _builtin_dirs(machine, isdir), (), (), "builtin")
