"""A small, complete and bounded reader of the PE facts torchdll needs.

Two entry points:

* :func:`read_machine` reads only the first few KB of a file (DOS header, ``PE\\0\\0``,
  ``IMAGE_FILE_HEADER.Machine``) and reports the machine the COFF header names.
* :func:`read_facts` maps the file (``mmap``, never a full read) and fills an
  :class:`~torchdll.model.ImageFacts`: headers, Rich header, load-config flags, signature
  presence, static and delay imports, the complete export table and the version resource.

Why not ``pefile.PE(path)``: a full parse of torch's ``torch_cpu.dll`` takes 10-20 s, and pefile
caps exports at 8192, import symbols at a module-global 8192 and symbol names at 512 bytes,
silently truncating torch's tables. Even ``fast_load=True`` drops sections after three warnings,
reads the bytes that follow a section's raw data instead of the zeros the loader maps, and
copies the header region. So this module walks every structure itself, over the mapped bytes,
the way the Windows loader does:

* RVAs are mapped through the section table (bytes past a section's raw data read as zeros);
  a section whose raw data runs past the end of the file makes the image invalid (truncated);
* import descriptors end at the first one with ``Name == 0`` or ``FirstThunk == 0``;
* export address table entries past index 65535 are unreachable (name ordinals and imported
  ordinals are 16-bit) and ignored.

Every bound is explicit (:data:`MAX_NAME`, :data:`MAX_DESCRIPTORS`, :data:`MAX_THUNKS`, a
budget for all strings proportional to the file size), so hostile input cannot make the reader
hang or allocate much more than the file's size. Anything that is not a readable PE image raises
:class:`~torchdll.errors.InvalidImageError` and nothing else; survivable oddities end up in
:attr:`ImageFacts.warnings`.

``pefile`` is not used on this path at all (tests use it, with its caps lifted, as an oracle).
"""

from __future__ import annotations

import array
import bisect
import functools
import itertools
import mmap
import os
import struct
from typing import (
    Any,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from ._fileio import OpenFile, Warnings, os_reason, read_at, sniff
from .errors import InvalidImageError
from .model import ExportTable, ImageFacts, ImportedModule, Machine, RichInfo, VersionInfo

__all__ = [
    "MAX_NAME",
    "facts_from_payload",
    "parse_buffer",
    "parse_file",
    "read_facts",
    "read_machine",
    "toolset_for_build",
]

StrPath = Union[str, "os.PathLike[str]"]

#: Longest symbol, DLL or forwarder name read (MSVC truncates decorated names at 4096 chars).
MAX_NAME = 4096
#: Most import / delay-import descriptors walked (real images have at most a few hundred).
MAX_DESCRIPTORS = 4096
#: Most thunks read for one imported module (a DLL cannot export more than 65535 ordinals).
MAX_THUNKS = 0x10000
#: Highest export table index reachable through a 16-bit ordinal or name-ordinal.
MAX_EXPORT_FUNCTIONS = 0x10000
#: Most export names read.
MAX_EXPORT_NAMES = 0x40000
#: Most warnings kept in :attr:`ImageFacts.warnings`.
MAX_WARNINGS = 64
#: How much of the file :func:`read_machine` reads in one go.
HEAD_READ = 4096

_DIR_EXPORT = 0
_DIR_IMPORT = 1
_DIR_RESOURCE = 2
_DIR_SECURITY = 4
_DIR_LOAD_CONFIG = 10
_DIR_DELAY_IMPORT = 13

_IMAGE_FILE_DLL = 0x2000
_RT_VERSION = 16
_VS_FFI_SIGNATURE = 0xFEEF04BD

# Offsets inside IMAGE_LOAD_CONFIG_DIRECTORY{32,64} (winnt.h).
_LC_DEPENDENT_LOAD_FLAGS = {False: 0x36, True: 0x4E}
_LC_CHPE_METADATA = {False: (0x7C, 4), True: (0xC8, 8)}

# Rich header product ids of the VS 2015+ toolchain whose build says which toolset made the
# image: Linker1400 (0x102) and the Utc1900_* compilers (0x104-0x10e). Import libraries (0x101)
# and resource converters come from whatever SDK was linked and are left out on purpose.
_RICH_TOOL_PRODUCTS = frozenset([0x102, *range(0x104, 0x10F)])

_KNOWN_MACHINES = {int(m): m for m in Machine}


# --------------------------------------------------------------------------------------------
# Errors and file access
# --------------------------------------------------------------------------------------------


_NOT_PE = {
    "lfs": "a Git LFS pointer file, not the DLL itself",
    "html": "an HTML/XML text file (a web page saved under a DLL name?)",
    "elf": "an ELF file (a Linux binary), not a PE image",
    "macho": "a Mach-O file (a macOS binary), not a PE image",
    "zip": "a ZIP archive, not a PE image",
    "zm": "a ZM-signature DOS executable, not a PE image",
}


def _not_mz_reason(head: bytes) -> str:
    """Why a file that does not start with ``MZ`` is not a PE image, as specific as cheap."""
    if not head:
        return "empty file"
    kind = sniff(head[:512])
    return (_NOT_PE.get(kind) if kind else None) or "no MZ signature (not a PE image)"


# --------------------------------------------------------------------------------------------
# read_machine
# --------------------------------------------------------------------------------------------


def _machine_of(value: int) -> Machine:
    return _KNOWN_MACHINES.get(value, Machine.UNKNOWN)


def read_machine(path: StrPath) -> Machine:
    """The machine named by the COFF header of ``path``, reading only its first few KB.

    This is the value the Windows loader compares with the process (``IMAGE_FILE_HEADER``):
    ARM64EC images report :attr:`Machine.AMD64` and ARM64X images :attr:`Machine.ARM64` here;
    only :func:`read_facts` tells the hybrid kinds apart (it needs the load-config directory).

    A well-formed PE whose machine value torchdll does not model (IA-64, RISC-V, ...) returns
    :attr:`Machine.UNKNOWN` rather than raising: it *is* an image, just one no modelled process
    can load, which callers should report as a wrong machine, not as an unreadable file.

    Raises :class:`InvalidImageError` for anything that is not a PE image (too short, no ``MZ``
    or ``PE\\0\\0`` signature, ``e_lfanew`` outside the file, unknown optional-header magic) and
    for files that cannot be opened.
    """
    p = os.fspath(path)
    f = OpenFile(p, "PE")
    try:
        try:
            head = read_at(f.fd, 0, HEAD_READ)
            if head[:2] != b"MZ":
                raise InvalidImageError(p, _not_mz_reason(head))
            if len(head) < 64:
                raise InvalidImageError(p, _too_small(len(head)))
            (e_lfanew,) = struct.unpack_from("<I", head, 0x3C)
            if e_lfanew + 26 > f.size:
                raise InvalidImageError(p, f"e_lfanew 0x{e_lfanew:x} points outside the file")
            nt = head[e_lfanew : e_lfanew + 26]
            if len(nt) < 26:
                nt = read_at(f.fd, e_lfanew, 26)
        except OSError as exc:
            raise InvalidImageError(p, os_reason(exc)) from None
    finally:
        f.close()
    if len(nt) < 26:
        raise InvalidImageError(p, "file truncated inside the NT headers")
    _check_pe_signature(p, nt[:4], e_lfanew)
    (machine,) = struct.unpack_from("<H", nt, 4)
    (magic,) = struct.unpack_from("<H", nt, 24)
    if magic not in (0x10B, 0x20B):
        raise InvalidImageError(p, f"unknown optional header magic 0x{magic:x}")
    return _machine_of(machine)


def _too_small(size: int) -> str:
    return "empty file" if size == 0 else f"file too small for a DOS header ({size} bytes)"


def _check_pe_signature(path: str, sig: bytes, e_lfanew: int) -> None:
    if sig == b"PE\0\0":
        return
    if sig[:2] in (b"NE", b"LE", b"LX"):
        kind = sig[:2].decode("ascii")
        raise InvalidImageError(path, f"a 16-bit/OS2 {kind} executable, not a PE image")
    raise InvalidImageError(path, f"no PE signature at e_lfanew 0x{e_lfanew:x}")


# --------------------------------------------------------------------------------------------
# The mapped image
# --------------------------------------------------------------------------------------------


class _Budget:
    """Caps the total bytes of strings materialised from one file."""

    __slots__ = ("left",)

    def __init__(self, file_size: int) -> None:
        self.left = 4 * file_size + (1 << 20)

    def spend(self, path: str, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise InvalidImageError(path, "name tables larger than the file can hold")


class _Section:
    __slots__ = ("fend", "name", "raw", "va", "vend")

    def __init__(self, name: str, va: int, vend: int, raw: int, fend: int) -> None:
        self.name = name
        self.va = va  # first RVA
        self.vend = vend  # one past the last mapped RVA
        self.raw = raw  # file offset of ``va``
        self.fend = fend  # one past the last file-backed RVA (the rest reads as zeros)


class _Image:
    """Headers of a PE file over a buffer (an mmap, or bytes in tests), plus RVA reads."""

    def __init__(self, path: str, data: Any, size: int) -> None:
        self.path = path
        self.data = data
        self.size = size
        self._warnings = Warnings(MAX_WARNINGS)
        self.budget = _Budget(size)
        self._last: Optional[_Section] = None
        self._parse_headers()

    # -- headers --------------------------------------------------------------------------

    def _fail(self, reason: str) -> InvalidImageError:
        return InvalidImageError(self.path, reason)

    def warn(self, text: str) -> None:
        self._warnings.add(text)

    @property
    def warnings(self) -> List[str]:
        return self._warnings.items()

    def _parse_headers(self) -> None:
        data, size = self.data, self.size
        if bytes(data[:2]) != b"MZ":
            raise self._fail(_not_mz_reason(bytes(data[:512])))
        if size < 64:
            raise self._fail(_too_small(size))
        (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
        self.e_lfanew = e_lfanew
        if e_lfanew + 24 > size:
            raise self._fail(f"e_lfanew 0x{e_lfanew:x} points outside the file")
        _check_pe_signature(self.path, bytes(data[e_lfanew : e_lfanew + 4]), e_lfanew)
        (
            self.machine_raw,
            nsections,
            self.timestamp,
            _symptr,
            _nsyms,
            opt_size,
            self.characteristics,
        ) = struct.unpack_from("<HHIIIHH", data, e_lfanew + 4)
        opt = e_lfanew + 24
        if opt + 2 > size:
            raise self._fail("file truncated inside the optional header")
        (magic,) = struct.unpack_from("<H", data, opt)
        if magic == 0x10B:
            self.plus = False
            fixed = 96
        elif magic == 0x20B:
            self.plus = True
            fixed = 112
        else:
            raise self._fail(f"unknown optional header magic 0x{magic:x}")
        if opt + fixed > size:
            raise self._fail("file truncated inside the optional header")
        self.linker_version = (data[opt + 2], data[opt + 3])
        if self.plus:
            (self.image_base,) = struct.unpack_from("<Q", data, opt + 24)
        else:
            (self.image_base,) = struct.unpack_from("<I", data, opt + 28)
        salign, falign = struct.unpack_from("<II", data, opt + 32)
        self.size_of_image, self.size_of_headers = struct.unpack_from("<II", data, opt + 56)
        self.subsystem, self.dll_characteristics = struct.unpack_from("<HH", data, opt + 68)
        (nrva,) = struct.unpack_from("<I", data, opt + fixed - 4)
        if nrva > 16:
            self.warn(f"NumberOfRvaAndSizes is {nrva} (more than 16); extra entries ignored")
        ndirs = min(nrva, 16)
        if opt + fixed + 8 * ndirs > size:
            raise self._fail("file truncated inside the data directories")
        if opt_size < fixed + 8 * ndirs:
            self.warn(f"SizeOfOptionalHeader {opt_size} is smaller than its data directories")
        flat = struct.unpack_from(f"<{2 * ndirs}I", data, opt + fixed)
        self.dirs = [(flat[2 * i], flat[2 * i + 1]) for i in range(ndirs)]
        self.dirs += [(0, 0)] * (16 - ndirs)
        self._parse_sections(opt + opt_size, nsections, salign, falign)

    def _parse_sections(self, table: int, count: int, salign: int, falign: int) -> None:
        size = self.size
        if table + 40 * count > size:
            raise self._fail(f"section table ({count} sections) extends past the end of the file")
        if salign == 0:
            self.warn("SectionAlignment is 0")
        salign = salign or 0x1000
        low_align = salign < 0x1000

        def align_up(value: int, to: int) -> int:
            return -(-value // to) * to

        sections: List[_Section] = []
        for i in range(count):
            raw_name, vsize, va, rawsize, rawptr = struct.unpack_from("<8sIIII", self.data, table + 40 * i)
            name = raw_name.split(b"\0", 1)[0].decode("ascii", "backslashreplace")
            extent = vsize or rawsize
            vend = va + align_up(extent, salign)
            start = rawptr if low_align else rawptr & ~0x1FF
            backed = 0 if rawptr == 0 else min(rawsize, vend - va)
            if backed and start + backed > size:
                raise self._fail(
                    f"truncated or corrupt: section {name or i} needs file bytes up to 0x{start + backed:x} "
                    f"but the file has 0x{size:x}"
                )
            sections.append(_Section(name, va, vend, start, va + backed))
        sections.sort(key=lambda s: s.va)
        for a, b in zip(sections, sections[1:]):
            if a.vend > b.va:
                self.warn(f"sections {a.name!r} and {b.name!r} overlap")
                break
        self.sections = sections
        self._starts = [sec.va for sec in sections]
        first_va = sections[0].va if sections else self.size_of_image
        # The headers occupy RVAs [0, first section) in memory; the file provides SizeOfHeaders.
        self.header_end = min(self.size_of_headers, first_va, size) if sections else size
        self.header_vend = first_va if sections else max(self.size_of_image, size)
        if falign and falign & (falign - 1):
            self.warn(f"FileAlignment 0x{falign:x} is not a power of two")

    # -- RVA access -------------------------------------------------------------------------

    def span(self, rva: int) -> Optional[Tuple[int, int]]:
        """``(file offset, file-backed bytes from there)`` for ``rva``, or ``None``.

        ``None`` means the RVA lies outside every section and the headers. A mapped RVA whose
        bytes the file does not provide (virtual tail of a section) gives ``(0, 0)``: it reads
        as zeros.
        """
        s = self._last
        if s is None or not (s.va <= rva < s.vend):
            i = bisect.bisect_right(self._starts, rva) - 1
            s = self.sections[i] if i >= 0 and rva < self.sections[i].vend else None
            if s is None:
                if 0 <= rva < self.header_vend:
                    if rva < self.header_end:
                        return rva, self.header_end - rva
                    return 0, 0
                return None
            self._last = s
        if rva < s.fend:
            return s.raw + (rva - s.va), s.fend - rva
        return 0, 0

    def read(self, rva: int, n: int) -> Optional[bytes]:
        """``n`` bytes at ``rva`` as the loader would map them (zeros past raw data)."""
        sp = self.span(rva)
        if sp is None:
            return None
        off, avail = sp
        if avail >= n:
            return bytes(self.data[off : off + n])
        # A virtual tail, or a structure straddling two sections (at most a few hops).
        parts: List[bytes] = []
        left = n
        for _ in range(8):
            if avail <= 0:
                break
            take = min(avail, left)
            parts.append(bytes(self.data[off : off + take]))
            left -= take
            if left == 0:
                break
            sp = self.span(rva + n - left)
            if sp is None:
                break
            off, avail = sp
        return b"".join(parts).ljust(n, b"\0")

    def u32(self, rva: int) -> Optional[int]:
        b = self.read(rva, 4)
        return None if b is None else int.from_bytes(b, "little")

    def cstr_bytes(self, rva: int, what: str) -> Optional[bytes]:
        """The NUL-terminated byte string at ``rva`` (at most :data:`MAX_NAME` bytes)."""
        sp = self.span(rva)
        if sp is None:
            self.warn(f"{what} at RVA 0x{rva:x} is outside the image")
            return None
        off, avail = sp
        if avail <= 0:
            return b""
        limit = min(avail, MAX_NAME + 1)
        end = self.data.find(b"\0", off, off + limit)
        if end < 0:
            if avail <= MAX_NAME:
                # Runs into zero-filled memory (or the next section): the string ends there.
                end = off + avail
            else:
                self.warn(f"{what} at RVA 0x{rva:x} is longer than {MAX_NAME} bytes; truncated")
                end = off + MAX_NAME
        raw = bytes(self.data[off:end])
        self.budget.spend(self.path, len(raw) + 1)
        return raw

    def cstr(self, rva: int, what: str) -> Optional[str]:
        raw = self.cstr_bytes(rva, what)
        return None if raw is None else _decode(raw)

    def u32_array(self, rva: int, count: int) -> Tuple[int, ...]:
        """Up to ``count`` little-endian DWORDs at ``rva``; entries past the raw data are 0."""
        if count <= 0:
            return ()
        sp = self.span(rva)
        if sp is None:
            return ()
        off, avail = sp
        n = min(count, avail // 4)
        return struct.unpack_from(f"<{n}I", self.data, off) if n else ()

    def u16_array(self, rva: int, count: int) -> Tuple[int, ...]:
        if count <= 0:
            return ()
        sp = self.span(rva)
        if sp is None:
            return ()
        off, avail = sp
        n = min(count, avail // 2)
        return struct.unpack_from(f"<{n}H", self.data, off) if n else ()


def _decode(raw: bytes) -> str:
    # Windows compares these names as bytes; any injective decoding keeps lookups exact.
    return raw.decode("utf-8", "backslashreplace")


# --------------------------------------------------------------------------------------------
# Imports
# --------------------------------------------------------------------------------------------

_ImportPayload = Tuple[str, bool, Tuple[str, ...], Tuple[int, ...]]


def _thunks(img: _Image, rva: int, what: str) -> Iterator[int]:
    """The non-zero entries of a thunk array, in order, stopping at the first zero."""
    width = 8 if img.plus else 4
    fmt = "<Q" if img.plus else "<I"
    pos = rva
    produced = 0
    while True:
        sp = img.span(pos)
        if sp is None:
            img.warn(f"{what}: thunk table at RVA 0x{pos:x} is outside the image")
            return
        off, avail = sp
        n = min(avail // width, 512)
        if n == 0:
            return  # zero-filled memory (or a straddling entry): the table ends here
        for (value,) in struct.iter_unpack(fmt, img.data[off : off + n * width]):
            if value == 0:
                return
            produced += 1
            if produced > MAX_THUNKS:
                img.warn(f"{what}: more than {MAX_THUNKS} thunks; rest ignored")
                return
            yield value
        pos += n * width


def _import_list(
    img: _Image, table: int, dll: str, *, va_based: bool
) -> Tuple[Tuple[str, ...], Tuple[int, ...]]:
    names: List[str] = []
    ordinals: List[int] = []
    flag = 1 << 63 if img.plus else 1 << 31
    base = img.image_base if va_based else 0
    what = f"imports from {dll}"
    for value in _thunks(img, table, what):
        if value & flag:
            ordinals.append(value & 0xFFFF)
            continue
        hint_rva = (value & (flag - 1)) - base
        if not 0 <= hint_rva < 1 << 32:
            img.warn(f"{what}: hint/name address 0x{value:x} is outside the image")
            continue
        name = img.cstr(hint_rva + 2, f"{what}: import name")
        if name is not None:
            names.append(name)
    return tuple(names), tuple(ordinals)


def _descriptors(img: _Image, directory: int, size: int, what: str) -> Iterator[Tuple[int, bytes]]:
    """``(index, raw bytes)`` of the fixed-size descriptors of an import-like directory, bounded
    by :data:`MAX_DESCRIPTORS` and stopping (with a warning) at one outside the image."""
    rva, _size = img.dirs[directory]
    if rva == 0:
        return
    for i in range(MAX_DESCRIPTORS + 1):
        if i == MAX_DESCRIPTORS:
            img.warn(f"more than {MAX_DESCRIPTORS} {what} descriptors; rest ignored")
            return
        raw = img.read(rva + size * i, size)
        if raw is None:
            img.warn(f"{what} descriptor {i} at RVA 0x{rva + size * i:x} is outside the image")
            return
        yield i, raw


def _static_imports(img: _Image) -> List[_ImportPayload]:
    out: List[_ImportPayload] = []
    for _i, raw in _descriptors(img, _DIR_IMPORT, 20, "import"):
        oft, _ts, _fwd, name_rva, ft = struct.unpack("<IIIII", raw)
        # The loader stops at the first descriptor without a name or an IAT.
        if name_rva == 0 or ft == 0:
            break
        dll = img.cstr(name_rva, "imported DLL name")
        if dll is None:
            continue
        names, ordinals = _import_list(img, oft or ft, dll, va_based=False)
        out.append((dll, False, names, ordinals))
    return out


def _delay_imports(img: _Image) -> List[_ImportPayload]:
    out: List[_ImportPayload] = []
    for i, raw in _descriptors(img, _DIR_DELAY_IMPORT, 32, "delay-import"):
        attrs, name_addr, _hmod, _iat, int_addr, _biat, _uiat, _ts = struct.unpack("<8I", raw)
        if name_addr == 0:
            break
        # Attributes bit 0 set: fields are RVAs. Clear (VC6 delayimp): they are VAs.
        va_based = not attrs & 1
        sub = img.image_base if va_based else 0
        name_rva = name_addr - sub
        if not 0 <= name_rva < 1 << 32:
            img.warn(f"delay-import descriptor {i}: DLL name address 0x{name_addr:x} is invalid")
            continue
        dll = img.cstr(name_rva, "delay-imported DLL name")
        if dll is None:
            continue
        # Only the name table names the symbols: the delay IAT points at the helper thunks.
        table = int_addr - sub
        if int_addr == 0 or not 0 <= table < 1 << 32:
            img.warn(f"delay imports from {dll}: no import name table")
            out.append((dll, True, (), ()))
            continue
        names, ordinals = _import_list(img, table, dll, va_based=va_based)
        out.append((dll, True, names, ordinals))
    return out


# --------------------------------------------------------------------------------------------
# Exports
# --------------------------------------------------------------------------------------------

#: (dll_name, ordinal_base, names blob (utf-8, NUL-separated), name indices ('H' bytes),
#:  name count, live indices ('H' bytes, or an int n meaning 0..n-1), forwarder pairs)
_ExportPayload = Tuple[str, int, bytes, bytes, int, Union[bytes, int], Tuple[Tuple[str, str], ...]]

_EMPTY_EXPORTS: _ExportPayload = ("", 1, b"", b"", 0, 0, ())


def _exports(img: _Image) -> _ExportPayload:
    rva, size = img.dirs[_DIR_EXPORT]
    if rva == 0:
        return _EMPTY_EXPORTS
    raw = img.read(rva, 40)
    if raw is None:
        img.warn(f"export directory at RVA 0x{rva:x} is outside the image")
        return _EMPTY_EXPORTS
    (_c, _ts, _maj, _min, name_rva, base, nfuncs, nnames, funcs_rva, names_rva, ords_rva) = (
        struct.unpack("<IIHHIIIIIII", raw)
    )
    dll_name = (img.cstr(name_rva, "export DLL name") or "") if name_rva else ""
    if nfuncs > MAX_EXPORT_FUNCTIONS:
        img.warn(f"NumberOfFunctions {nfuncs} exceeds 65536; unreachable entries ignored")
        nfuncs = MAX_EXPORT_FUNCTIONS
    if nnames > MAX_EXPORT_NAMES:
        img.warn(f"NumberOfNames {nnames} exceeds {MAX_EXPORT_NAMES}; extra names ignored")
        nnames = MAX_EXPORT_NAMES

    funcs = img.u32_array(funcs_rva, nfuncs) if funcs_rva else ()
    # Entries past the raw data are zeros in memory: not exported.
    if len(funcs) < nfuncs and funcs_rva and img.span(funcs_rva) is None:
        img.warn(f"export address table at RVA 0x{funcs_rva:x} is outside the image")

    lo, hi = rva, rva + size
    live: List[int] = []
    fwd_by_index: Dict[int, str] = {}
    for i, f in enumerate(funcs):
        if not f:
            continue
        live.append(i)
        if lo <= f < hi:
            target = img.cstr(f, "export forwarder")
            if target:
                fwd_by_index[i] = target
    forwarders: List[Tuple[str, str]] = [(f"#{base + i}", t) for i, t in fwd_by_index.items()]

    name_rvas = img.u32_array(names_rva, nnames) if (names_rva and nnames) else ()
    name_ords = img.u16_array(ords_rva, nnames) if (ords_rva and nnames) else ()
    n = min(len(name_rvas), len(name_ords))
    if n < nnames:
        img.warn(f"export name tables hold {n} of NumberOfNames {nnames} entries")
    name_rvas, name_ords = name_rvas[:n], name_ords[:n]

    blob, idx, count = _export_names(img, name_rvas, name_ords, nfuncs)
    if fwd_by_index and count:
        names = blob.decode("utf-8").split("\0")
        ords = array.array("H")
        ords.frombytes(idx)
        forwarders += [(nm, fwd_by_index[o]) for nm, o in zip(names, ords) if o in fwd_by_index]

    live_payload: Union[bytes, int]
    if len(live) == len(funcs):
        live_payload = len(funcs)
    else:
        live_payload = array.array("H", live).tobytes()
    return (dll_name, base, blob, idx, count, live_payload, tuple(forwarders))


def _export_names(
    img: _Image,
    name_rvas: Sequence[int],
    name_ords: Sequence[int],
    nfuncs: int,
) -> Tuple[bytes, bytes, int]:
    """The export names as one NUL-joined UTF-8 blob plus their ordinal indices."""
    if not name_rvas:
        return b"", b"", 0
    region: Optional[bytes] = None
    fast = _contiguous_names(img, name_rvas)
    if fast is not None:
        parts, region = fast
    else:
        parts = []
        for r in name_rvas:
            raw = img.cstr_bytes(r, "export name")
            parts.append(raw if raw is not None else b"")
    if any(map(bytes.__gt__, parts, parts[1:])):
        img.warn("export name table is not sorted; the loader's binary search may miss names")
    keep_all = True
    bad = 0
    for p, o in zip(parts, name_ords):
        if not p or o >= nfuncs:
            keep_all = False
            bad += 1
    if keep_all:
        names_b = parts
        ords_list: Sequence[int] = name_ords
        joined = region if region is not None else b"\0".join(parts)
    else:
        img.warn(f"{bad} export names are empty or point past the export address table")
        pairs = [(p, o) for p, o in zip(parts, name_ords) if p and o < nfuncs]
        names_b = [p for p, _ in pairs]
        ords_list = [o for _, o in pairs]
        joined = b"\0".join(names_b)
    if not joined.isascii():
        joined = _decode(joined).encode("utf-8")
    return joined, array.array("H", ords_list).tobytes(), len(names_b)


def _contiguous_names(
    img: _Image, name_rvas: Sequence[int]
) -> Optional[Tuple[List[bytes], bytes]]:
    """Fast path: MSVC and lld write all export names back to back in name order."""
    first, last = name_rvas[0], name_rvas[-1]
    if last < first:
        return None
    sp = img.span(first)
    if sp is None:
        return None
    off, avail = sp
    tail_len = last - first
    if tail_len >= avail:
        return None
    end = img.data.find(b"\0", off + tail_len, off + min(avail, tail_len + MAX_NAME + 1))
    if end < 0:
        return None
    region = bytes(img.data[off:end])
    parts = region.split(b"\0")
    if len(parts) != len(name_rvas):
        return None
    starts = list(itertools.accumulate((len(p) + 1 for p in parts), initial=first))
    starts.pop()
    if starts != list(name_rvas):
        return None
    if max(map(len, parts)) > MAX_NAME:
        return None
    img.budget.spend(img.path, len(region) + 1)
    return parts, region  # region == b"\0".join(parts)


# --------------------------------------------------------------------------------------------
# Load config, signature, Rich header
# --------------------------------------------------------------------------------------------


def _load_config(img: _Image) -> Tuple[int, int]:
    """``(DependentLoadFlags, CHPEMetadataPointer)``; each 0 unless the struct's Size covers it."""
    rva, _dsize = img.dirs[_DIR_LOAD_CONFIG]
    if rva == 0:
        return 0, 0
    head = img.read(rva, 4)
    if head is None:
        img.warn(f"load-config directory at RVA 0x{rva:x} is outside the image")
        return 0, 0
    (size,) = struct.unpack("<I", head)
    chpe_off, chpe_width = _LC_CHPE_METADATA[img.plus]
    want = min(size, chpe_off + chpe_width)
    body = img.read(rva, want) or b""
    dlf_off = _LC_DEPENDENT_LOAD_FLAGS[img.plus]
    dlf = struct.unpack_from("<H", body, dlf_off)[0] if size >= dlf_off + 2 else 0
    if size >= chpe_off + chpe_width:
        chpe = int.from_bytes(body[chpe_off : chpe_off + chpe_width], "little")
    else:
        chpe = 0
    return dlf, chpe


def _signed(img: _Image) -> bool:
    off, size = img.dirs[_DIR_SECURITY]
    if off == 0 or size == 0:
        return False
    # This directory holds a *file offset*, not an RVA.
    if off + size > img.size or size < 8:
        img.warn(f"security directory (offset 0x{off:x}, size {size}) is not inside the file")
        return False
    (length,) = struct.unpack_from("<I", img.data, off)
    if length < 8 or length > size:
        img.warn("the WIN_CERTIFICATE in the security directory is malformed")
    return True


_RichPayload = Tuple[Tuple[Tuple[int, int, int], ...], int]


def _rich(img: _Image) -> Optional[_RichPayload]:
    limit = min(img.e_lfanew, 0x10000, img.size)
    if limit <= 0x40:
        return None
    stub = bytes(img.data[0x40:limit])
    at = stub.rfind(b"Rich")
    if at < 0 or at % 4 or at + 8 > len(stub):
        return None
    (key,) = struct.unpack_from("<I", stub, at + 4)
    dans = 0x536E6144 ^ key
    words = struct.unpack_from(f"<{at // 4}I", stub, 0)
    try:
        start = len(words) - 1 - words[::-1].index(dans)
    except ValueError:
        img.warn("Rich header without a DanS marker")
        return None
    body = words[start + 1 : at // 4]
    if body[:3] != (key, key, key):
        img.warn("Rich header padding is not zero; entries may be garbage")
    body = body[3:]
    entries: List[Tuple[int, int, int]] = []
    for i in range(0, len(body) - 1, 2):
        comp = body[i] ^ key
        count = body[i + 1] ^ key
        entries.append((comp >> 16, comp & 0xFFFF, count))
    builds = [b for p, b, _ in entries if p in _RICH_TOOL_PRODUCTS]
    return tuple(entries), max(builds) if builds else 0


@functools.lru_cache(maxsize=1)
def _toolset_table() -> Tuple[Tuple[int, int, str], ...]:
    from . import _data

    doc = _data.load("msvc_toolsets.json")
    rows = [(int(r["first_build"]), int(r["last_build"]), str(r["toolset"])) for r in doc["toolsets"]]
    return tuple(sorted(rows))


def toolset_for_build(build: int) -> Optional[str]:
    """The MSVC toolset (``"14.42"``) whose compiler or linker has Rich-header ``build``.

    ``None`` for 0 and for builds outside ``data/msvc_toolsets.json`` (pre-2015 or newer than
    the table).
    """
    if build <= 0:
        return None
    for first, last, name in _toolset_table():
        if first <= build <= last:
            return name
    return None


# --------------------------------------------------------------------------------------------
# Version resource
# --------------------------------------------------------------------------------------------

_VersionPayload = Tuple[
    Optional[Tuple[int, int, int, int]],
    Optional[Tuple[int, int, int, int]],
    Tuple[Tuple[str, str], ...],
]


def _res_entries(img: _Image, base: int, rel: int) -> Optional[List[Tuple[int, int]]]:
    """``(name_or_id, offset_to_data)`` of the resource directory at ``base + rel``."""
    head = img.read(base + rel, 16)
    if head is None:
        return None
    named, ids = struct.unpack_from("<HH", head, 12)
    count = named + ids
    sp = img.span(base + rel + 16)
    if sp is None:
        return None
    off, avail = sp
    count = min(count, avail // 8)
    flat = struct.unpack_from(f"<{2 * count}I", img.data, off) if count else ()
    return [(flat[2 * i], flat[2 * i + 1]) for i in range(count)]


def _version(img: _Image) -> Optional[_VersionPayload]:
    base, _size = img.dirs[_DIR_RESOURCE]
    if base == 0:
        return None
    root = _res_entries(img, base, 0)
    if root is None:
        img.warn(f"resource directory at RVA 0x{base:x} is outside the image")
        return None
    target = next((o for n, o in root if n == _RT_VERSION), None)
    # Walk type -> name -> language; each level is a directory but the last. Prefer resource
    # id 1, then the neutral language, then en-US, else the first entry (a fixed choice, not
    # the analysing machine's locale).
    for prefer in ((1,), (0, 0x409)):
        if target is None:
            return None
        if not target & 0x80000000:
            img.warn("malformed RT_VERSION resource directory")
            return None
        entries = _res_entries(img, base, target & 0x7FFFFFFF)
        if not entries:
            return None
        by_id = dict(reversed(entries))
        target = next((by_id[k] for k in prefer if k in by_id), entries[0][1])
    if target is None or target & 0x80000000:
        img.warn("malformed RT_VERSION resource directory")
        return None
    leaf = img.read(base + target, 16)
    if leaf is None:
        return None
    data_rva, data_size = struct.unpack_from("<II", leaf)
    blob = img.read(data_rva, min(data_size, 0x10000))
    if blob is None:
        img.warn("version resource data is outside the image")
        return None
    return _parse_version_blob(img, blob)


def _block(blob: bytes, pos: int, end: int) -> Optional[Tuple[int, int, int, str, int]]:
    """``(wLength, wValueLength, wType, key, value offset)`` of the block at ``pos``."""
    if pos + 6 > end:
        return None
    length, vlen, vtype = struct.unpack_from("<HHH", blob, pos)
    if length < 6 or pos + length > end:
        return None
    kend = pos + 6
    while kend + 1 < pos + length and blob[kend : kend + 2] != b"\0\0":
        kend += 2
    key = blob[pos + 6 : kend].decode("utf-16-le", "replace")
    value = (kend + 2 + 3) & ~3
    return length, vlen, vtype, key, value


def _parse_version_blob(img: _Image, blob: bytes) -> Optional[_VersionPayload]:
    top = _block(blob, 0, len(blob))
    if top is None or top[3] != "VS_VERSION_INFO":
        img.warn("version resource is not a VS_VERSIONINFO block")
        return None
    length, vlen, _vt, _key, value = top
    end = length
    file_v: Optional[Tuple[int, int, int, int]] = None
    prod_v: Optional[Tuple[int, int, int, int]] = None
    if vlen >= 52 and value + 52 <= end:
        sig, _sv, fms, fls, pms, pls = struct.unpack_from("<6I", blob, value)
        if sig == _VS_FFI_SIGNATURE:
            file_v = (fms >> 16, fms & 0xFFFF, fls >> 16, fls & 0xFFFF)
            prod_v = (pms >> 16, pms & 0xFFFF, pls >> 16, pls & 0xFFFF)
        else:
            img.warn("VS_FIXEDFILEINFO has a bad signature")
    strings: List[Tuple[str, str]] = []
    pos = (value + vlen + 3) & ~3
    found_table = False
    for _ in range(64):
        blk = _block(blob, pos, end)
        if blk is None:
            break
        clen, _cvl, _ct, ckey, cval = blk
        if ckey == "StringFileInfo" and not found_table:
            tbl = _block(blob, cval, pos + clen)
            if tbl is not None:
                found_table = True
                strings = _string_table(blob, tbl, cval)
        pos = (pos + clen + 3) & ~3
    return file_v, prod_v, tuple(strings)


def _string_table(blob: bytes, tbl: Tuple[int, int, int, str, int], tpos: int) -> List[Tuple[str, str]]:
    tlen, _tvl, _tt, _tkey, tval = tbl
    end = tpos + tlen
    out: List[Tuple[str, str]] = []
    pos = tval
    for _ in range(1024):
        pos = (pos + 3) & ~3
        blk = _block(blob, pos, end)
        if blk is None:
            break
        slen, _svl, _st, skey, sval = blk
        raw = blob[sval : pos + slen] if sval < pos + slen else b""
        text = raw[: len(raw) & ~1].decode("utf-16-le", "replace").split("\0", 1)[0]
        out.append((skey, text))
        pos += slen
    return out


# --------------------------------------------------------------------------------------------
# Assembling ImageFacts
# --------------------------------------------------------------------------------------------

#: Everything :func:`read_facts` learns, as plain data (what :mod:`torchdll._pecache` stores).
Payload = Tuple[Any, ...]


def _parse_image(img: _Image) -> Payload:
    dlf, chpe = _load_config(img)
    raw = img.machine_raw
    machine = _machine_of(raw)
    if machine is Machine.UNKNOWN and raw != 0:
        img.warn(f"unsupported machine 0x{raw:04x}")
    if chpe:
        if machine is Machine.AMD64:
            machine = Machine.ARM64EC
        elif machine is Machine.ARM64:
            machine = Machine.ARM64X
        elif machine is Machine.I386:
            img.warn("x86 image with CHPE metadata (hybrid x86 for ARM64)")
    imports = _static_imports(img) + _delay_imports(img)
    exports = _exports(img)
    version = _version(img)
    rich = _rich(img)
    signed = _signed(img)
    return (
        int(machine),
        bool(img.characteristics & _IMAGE_FILE_DLL),
        img.characteristics,
        img.dll_characteristics,
        img.subsystem,
        img.linker_version,
        rich,
        dlf,
        signed,
        tuple(imports),
        exports,
        version,
        tuple(img.warnings),
    )


class _LazyNames(Mapping[str, int]):
    """``name -> ordinal`` built from the NUL-joined names blob on first use.

    Loading 60,000 names into a dict costs a few ms; most callers never look at them, and a
    cached read should not pay for it.
    """

    __slots__ = ("_base", "_blob", "_count", "_idx", "_map")

    def __init__(self, blob: bytes, idx: bytes, base: int, count: int) -> None:
        self._blob = blob
        self._idx = idx
        self._base = base
        self._count = count
        self._map: Optional[Dict[str, int]] = None

    def _load(self) -> Dict[str, int]:
        m = self._map
        if m is None:
            if self._count:
                names = self._blob.decode("utf-8").split("\0")
                ords = array.array("H")
                ords.frombytes(self._idx)
                base = self._base
                m = dict(zip(names, [base + o for o in ords]))
            else:
                m = {}
            self._map = m
            self._blob = b""
            self._idx = b""
        return m

    def __getitem__(self, key: str) -> int:
        return self._load()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._load()

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        state = "loaded" if self._map is not None else "not loaded"
        return f"<export names: {self._count} entries, {state}>"

    def __reduce__(self) -> Tuple[Any, ...]:
        return (dict, (dict(self._load()),))


def facts_from_payload(path: str, size: int, mtime_ns: int, payload: Payload) -> ImageFacts:
    """Build :class:`ImageFacts` from plain data (a fresh parse or a cache entry)."""
    (
        machine,
        is_dll,
        characteristics,
        dll_characteristics,
        subsystem,
        linker,
        rich,
        dlf,
        signed,
        imports,
        exports,
        version,
        warnings,
    ) = payload
    dll_name, base, blob, idx, count, live, fwd = exports
    if isinstance(live, int):
        ordinals = frozenset(range(base, base + live))
    else:
        arr = array.array("H")
        arr.frombytes(live)
        ordinals = frozenset([base + i for i in arr])
    table = ExportTable(
        dll_name=dll_name,
        ordinal_base=base,
        names=_LazyNames(blob, idx, base, count),
        ordinals=ordinals,
        forwarders=dict(fwd),
    )
    return ImageFacts(
        path=path,
        size=size,
        mtime_ns=mtime_ns,
        machine=Machine(machine),
        is_dll=is_dll,
        characteristics=characteristics,
        dll_characteristics=dll_characteristics,
        subsystem=subsystem,
        linker_version=(linker[0], linker[1]),
        rich=None
        if rich is None
        else RichInfo(entries=rich[0], max_build=rich[1], toolset=toolset_for_build(rich[1])),
        dependent_load_flags=dlf,
        signed=signed,
        imports=tuple(ImportedModule(dll=d, delay=dl, names=n, ordinals=o) for d, dl, n, o in imports),
        exports=table,
        version=None
        if version is None
        else VersionInfo(file_version=version[0], product_version=version[1], strings=dict(version[2])),
        warnings=warnings,
    )


def parse_file(path: str) -> Tuple[Payload, int, int]:
    """Parse ``path`` without any cache: ``(payload, size, mtime_ns)``."""
    f = OpenFile(path, "PE")
    try:
        if f.size == 0:
            raise InvalidImageError(path, "empty file")
        try:
            mm = mmap.mmap(f.fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            reason = os_reason(exc) if isinstance(exc, OSError) else "cannot map the file"
            raise InvalidImageError(path, reason) from None
        try:
            payload = parse_buffer(path, mm, f.size)
        finally:
            mm.close()
        return payload, f.size, f.mtime_ns
    finally:
        f.close()


def parse_buffer(path: str, data: Any, size: int) -> Payload:
    """Parse an in-memory image (bytes or mmap); every failure is an InvalidImageError."""
    try:
        return _parse_image(_Image(path, data, size))
    except InvalidImageError:
        raise
    except MemoryError:
        raise InvalidImageError(path, "structures too large to read") from None
    except Exception as exc:  # noqa: BLE001 - any other parsing accident: a malformed image
        raise InvalidImageError(path, f"malformed image ({type(exc).__name__})") from None


def read_facts(path: StrPath, *, use_cache: Optional[bool] = None) -> ImageFacts:
    """Everything torchdll needs to know about the PE file at ``path``.

    ``use_cache`` ``None`` or ``True`` consults the on-disk cache (:mod:`torchdll._pecache`)
    unless ``TORCHDLL_NO_CACHE`` is set; ``False`` always parses the file. Raises
    :class:`InvalidImageError` for anything that is not a readable PE image.
    """
    p = os.fspath(path)
    if use_cache is not False:
        from . import _pecache

        if _pecache.enabled():
            return _pecache.read_facts_cached(p)
    payload, size, mtime_ns = parse_file(p)
    return facts_from_payload(p, size, mtime_ns, payload)


def __dir__() -> List[str]:
    return __all__
