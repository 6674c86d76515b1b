"""Write small but valid Windows PE images (DLLs and EXEs) in pure Python.

Used by tests, fuzzers, benchmarks and the demo to synthesize DLLs with chosen imports, exports,
delay imports, load-config flags, Rich header, version resource and security directory on any
host, without a compiler.  The layout follows the Microsoft "PE Format" specification (PE/COFF):

* MS-DOS stub and signature (section 2), the undocumented Rich header between them;
* COFF file header (3.3), optional header PE32/PE32+ standard + Windows fields and data
  directories (3.4), section table (4);
* ``.edata`` export directory table, address table, name pointer table, ordinal table and
  forwarders (6.3) -- placed in ``.rdata`` as MSVC does;
* ``.idata`` import directory table, lookup table, hint/name table, IAT (6.4) -- in ``.rdata``;
* delay-load import tables (5.8, ``IMAGE_DELAYLOAD_DESCRIPTOR``, RVA-based);
* base relocations (6.6), load configuration structure (6.11), resource tree (6.9) holding a
  ``VS_VERSIONINFO`` (MSDN "VS_VERSIONINFO structure"), attribute certificate table (4.7).

Layout, in RVA and file order: headers, ``.text`` (entry stub + one stub per export), ``.rdata``,
``.data`` (only with delay imports: module handles and delay IATs, which the delay helper writes),
``.rsrc`` (only with a version resource), ``.reloc`` (only when an absolute address is stored),
then the optional ``pad_to`` overlay and the optional certificate at the very end of the file.

Slack bytes (header padding, section tails past VirtualSize, the ``pad_to`` overlay) are filled
with a 0..255 byte ramp instead of zeros: ``pefile``'s full parse warns when one byte value is
more than half of a file ("may indicate truncation"), which tiny 0x200-aligned images always hit.
Loaders never read those bytes.
"""

from __future__ import annotations

import os
import pathlib
import struct
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torchdll.model import Machine

__all__ = ["ExportSpec", "build_pe", "load_config_offsets", "write_pe"]

FILE_ALIGNMENT = 0x200
SECTION_ALIGNMENT = 0x1000

# Section characteristics (spec 4.1).
_SCN_CODE = 0x00000020 | 0x20000000 | 0x40000000  # CNT_CODE | MEM_EXECUTE | MEM_READ
_SCN_RDATA = 0x00000040 | 0x40000000  # CNT_INITIALIZED_DATA | MEM_READ
_SCN_DATA = _SCN_RDATA | 0x80000000  # ... | MEM_WRITE
_SCN_RELOC = _SCN_RDATA | 0x02000000  # ... | MEM_DISCARDABLE

# Data directory indexes (spec 3.4.3).
_DIR_EXPORT, _DIR_IMPORT, _DIR_RESOURCE, _DIR_SECURITY, _DIR_BASERELOC = 0, 1, 2, 4, 5
_DIR_LOAD_CONFIG, _DIR_IAT, _DIR_DELAY_IMPORT = 10, 12, 13

# The classic 64-byte DOS stub at 0x40 ("This program cannot be run in DOS mode.").
_DOS_STUB = (
    bytes.fromhex("0e1fba0e00b409cd21b8014ccd21")
    + b"This program cannot be run in DOS mode.\r\r\n$"
).ljust(64, b"\0")

_FILL = bytes(range(256))  # slack filler, see the module docstring


def _fill(n: int) -> bytes:
    return (_FILL * (n // 256 + 1))[:n]


def _align(n: int, a: int) -> int:
    return -(-n // a) * a


@dataclass(frozen=True)
class ExportSpec:
    """One export: by name or ordinal only, at a given or the next free ordinal, maybe forwarded."""

    name: str | None = None  # None = export by ordinal only (NONAME)
    ordinal: int | None = None  # None = next free ordinal
    forwarder: str | None = None  # "NTDLL.RtlFoo" or "other.#12"


# --------------------------------------------------------------------------------------------
# machine-dependent code stubs
# --------------------------------------------------------------------------------------------

_ARM64_RET = struct.pack("<I", 0xD65F03C0)
#: machine -> (DLL entry = DllMain returning TRUE, EXE entry returning 0, 4-byte export stub)
_STUBS: dict[int, tuple[bytes, bytes, bytes]] = {
    # mov eax,1 / ret 0Ch (stdcall, 3 args);  xor eax,eax / ret 4;  xor eax,eax / ret / int3
    Machine.I386: (bytes.fromhex("b801000000c20c00"), bytes.fromhex("31c0c20400"),
                   bytes.fromhex("31c0c3cc")),
    # mov eax,1 / ret;  xor eax,eax / ret;  xor eax,eax / ret / int3
    Machine.AMD64: (bytes.fromhex("b801000000c3"), bytes.fromhex("31c0c3"),
                    bytes.fromhex("31c0c3cc")),
    # movz w0,#1 / ret;  movz w0,#0 / ret;  ret
    Machine.ARM64: (struct.pack("<I", 0x52800020) + _ARM64_RET,
                    struct.pack("<I", 0x52800000) + _ARM64_RET, _ARM64_RET),
    # Thumb-2: movs r0,#1 / bx lr;  movs r0,#0 / bx lr;  bx lr / nop
    Machine.ARMNT: (struct.pack("<HH", 0x2001, 0x4770), struct.pack("<HH", 0x2000, 0x4770),
                    struct.pack("<HH", 0x4770, 0xBF00)),
}


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


class _Buf:
    """A section under construction: bytes plus the RVA they will be mapped at."""

    def __init__(self, rva: int) -> None:
        self.rva = rva
        self.data = bytearray()

    def tell(self) -> int:
        return self.rva + len(self.data)

    def add(self, blob: bytes, align: int = 1) -> int:
        """Append ``blob`` at the next ``align``-aligned RVA (zero padding); return that RVA."""
        self.data += bytes(-len(self.data) % align)
        rva = self.tell()
        self.data += blob
        return rva


def _cstr(text: str) -> bytes:
    if "\0" in text:
        raise ValueError(f"NUL in name {text!r}")
    return text.encode("utf-8") + b"\0"


def _hint_name(hint: int, name: str) -> bytes:
    """Hint/Name table entry (6.4.3): WORD hint, ASCII name, NUL, pad to an even size."""
    blob = struct.pack("<H", hint) + _cstr(name)
    return blob + bytes(len(blob) % 2)


def _check_entries(kind: str, table: Mapping[str, Sequence[str | int]]) -> None:
    for dll, entries in table.items():
        if not dll or not entries:
            raise ValueError(f"{kind}: {dll!r} needs a non-empty name and at least one entry")
        for entry in entries:
            if isinstance(entry, bool) or not isinstance(entry, (str, int)):
                raise TypeError(f"{kind}: {dll}: {entry!r} is neither a name nor an ordinal")
            if isinstance(entry, int) and not 0 < entry <= 0xFFFF:
                raise ValueError(f"{kind}: {dll}: ordinal {entry} out of range 1..65535")
            if isinstance(entry, str) and not entry:
                raise ValueError(f"{kind}: {dll}: empty import name")


def _thunks(buf: _Buf, entries: Sequence[str | int], ptr: int) -> bytes:
    """Write hint/name entries for ``entries`` into ``buf``; return the null-terminated ILT.

    Each hint is the name's rank in sorted order: exactly right when the target DLL exports the
    same names (its name pointer table is sorted), and harmless otherwise (the loader falls back
    to a binary search when ``NPT[hint]`` is not the name).
    """
    flag = 1 << (8 * ptr - 1)  # IMAGE_ORDINAL_FLAG32 / IMAGE_ORDINAL_FLAG64
    ranks = {n: i for i, n in enumerate(sorted({e for e in entries if isinstance(e, str)}))}
    values = [
        flag | e if isinstance(e, int) else buf.add(_hint_name(ranks[e], e), 2) for e in entries
    ]
    values.append(0)
    return struct.pack(f"<{len(values)}{'Q' if ptr == 8 else 'I'}", *values)


# --------------------------------------------------------------------------------------------
# exports (spec 6.3)
# --------------------------------------------------------------------------------------------


def _assign_ordinals(specs: Sequence[ExportSpec], base: int) -> list[int]:
    if not 0 < base <= 0xFFFF:
        raise ValueError(f"ordinal_base {base} out of range 1..65535")
    explicit = [s.ordinal for s in specs if s.ordinal is not None]
    taken = set(explicit)
    if len(taken) != len(explicit):
        raise ValueError("duplicate explicit export ordinals")
    if explicit and (min(explicit) < base or max(explicit) > 0xFFFF):
        raise ValueError(f"explicit export ordinals must lie in {base}..65535")
    names = [s.name for s in specs if s.name is not None]
    if len(set(names)) != len(names):
        raise ValueError("duplicate export names")
    if "" in names or any(s.forwarder == "" for s in specs):
        raise ValueError("empty export name or forwarder (use None)")
    ordinals: list[int] = []
    nxt = base
    for spec in specs:
        if spec.ordinal is not None:
            ordinals.append(spec.ordinal)
            continue
        while nxt in taken:
            nxt += 1
        taken.add(nxt)
        ordinals.append(nxt)
    if ordinals and max(ordinals) > 0xFFFF:
        raise ValueError("too many exports: ordinals exceed 65535")
    return ordinals


def _export_directory(
    buf: _Buf, dll_name: str, specs: Sequence[ExportSpec], ordinals: Sequence[int],
    base: int, stub_rvas: Sequence[int], timestamp: int,
) -> tuple[int, int]:
    """Append the export directory (one contiguous block); return its (RVA, size).

    Block layout: directory table (40 bytes), export address table, name pointer table,
    ordinal table, then strings (DLL name, export names, forwarders).  Forwarder strings must
    lie inside [RVA, RVA+size) -- that is how a loader tells a forwarder from code.
    """
    n_func = max(ordinals) - base + 1
    named = sorted(  # the loader binary-searches the name pointer table: strcmp order
        ((s.name.encode("utf-8"), o - base) for s, o in zip(specs, ordinals) if s.name),
    )
    dir_rva = buf.add(b"", 4)
    strings_rva = dir_rva + 40 + 4 * n_func + 4 * len(named) + 2 * len(named)
    strings = bytearray(_cstr(dll_name))

    name_rvas = []
    for raw, _index in named:
        name_rvas.append(strings_rva + len(strings))
        strings += raw + b"\0"
    eat = [0] * n_func  # unused ordinals in the range stay 0 (no export)
    stubs = iter(stub_rvas)
    for spec, ordinal in zip(specs, ordinals):
        if spec.forwarder:
            eat[ordinal - base] = strings_rva + len(strings)
            strings += _cstr(spec.forwarder)
        else:
            eat[ordinal - base] = next(stubs)

    buf.data += struct.pack(
        "<IIHHIIIIIII", 0, timestamp, 0, 0, strings_rva, base, n_func, len(named),
        dir_rva + 40, dir_rva + 40 + 4 * n_func, dir_rva + 40 + 4 * n_func + 4 * len(named),
    )
    buf.data += struct.pack(f"<{n_func}I", *eat)
    buf.data += struct.pack(f"<{len(named)}I", *name_rvas)
    buf.data += struct.pack(f"<{len(named)}H", *(index for _raw, index in named))
    buf.data += strings
    return dir_rva, buf.tell() - dir_rva


# --------------------------------------------------------------------------------------------
# load config (spec 6.11; winnt.h IMAGE_LOAD_CONFIG_DIRECTORY32/64)
# --------------------------------------------------------------------------------------------


def _load_config_fields(ptr: int) -> list[tuple[str, int]]:
    """(field, size) in declaration order, up to GuardMemcpyFunctionPointer (Windows 11 SDK)."""
    p = ptr
    heap_affinity = (
        [("ProcessHeapFlags", 4), ("ProcessAffinityMask", 4)] if p == 4
        else [("ProcessAffinityMask", 8), ("ProcessHeapFlags", 4)]  # the order differs in 64
    )
    return [
        ("Size", 4), ("TimeDateStamp", 4), ("MajorVersion", 2), ("MinorVersion", 2),
        ("GlobalFlagsClear", 4), ("GlobalFlagsSet", 4), ("CriticalSectionDefaultTimeout", 4),
        ("DeCommitFreeBlockThreshold", p), ("DeCommitTotalFreeThreshold", p),
        ("LockPrefixTable", p), ("MaximumAllocationSize", p), ("VirtualMemoryThreshold", p),
        *heap_affinity, ("CSDVersion", 2), ("DependentLoadFlags", 2),
        ("EditList", p), ("SecurityCookie", p), ("SEHandlerTable", p), ("SEHandlerCount", p),
        ("GuardCFCheckFunctionPointer", p), ("GuardCFDispatchFunctionPointer", p),
        ("GuardCFFunctionTable", p), ("GuardCFFunctionCount", p), ("GuardFlags", 4),
        ("CodeIntegrity", 12), ("GuardAddressTakenIatEntryTable", p),
        ("GuardAddressTakenIatEntryCount", p), ("GuardLongJumpTargetTable", p),
        ("GuardLongJumpTargetCount", p), ("DynamicValueRelocTable", p),
        ("CHPEMetadataPointer", p), ("GuardRFFailureRoutine", p),
        ("GuardRFFailureRoutineFunctionPointer", p), ("DynamicValueRelocTableOffset", 4),
        ("DynamicValueRelocTableSection", 2), ("Reserved2", 2),
        ("GuardRFVerifyStackPointerFunctionPointer", p), ("HotPatchTableOffset", 4),
        ("Reserved3", 4), ("EnclaveConfigurationPointer", p), ("VolatileMetadataPointer", p),
        ("GuardEHContinuationTable", p), ("GuardEHContinuationCount", p),
        ("GuardXFGCheckFunctionPointer", p), ("GuardXFGDispatchFunctionPointer", p),
        ("GuardXFGTableDispatchFunctionPointer", p), ("CastGuardOsDeterminedFailureMode", p),
        ("GuardMemcpyFunctionPointer", p),
    ]


def load_config_offsets(ptr: int) -> tuple[dict[str, int], int]:
    """Field offsets of IMAGE_LOAD_CONFIG_DIRECTORY32 (``ptr=4``) or 64 (``ptr=8``), and size."""
    offsets: dict[str, int] = {}
    pos = 0
    for field, size in _load_config_fields(ptr):
        offsets[field] = pos
        pos += size
    return offsets, pos


def _load_config(
    buf: _Buf, ptr: int, image_base: int, dependent_load_flags: int, chpe: bool
) -> tuple[int, int, int | None]:
    """Append the load config (+ CHPE metadata); return (RVA, size, RVA of the CHPE pointer).

    ``Size`` is the full structure of the current SDK (0xC0 for PE32, 0x140 for PE32+), which
    covers every field we set.  The CHPE pointer is a VA, hence the returned RVA for ``.reloc``.
    """
    offsets, size = load_config_offsets(ptr)
    pfmt = "<Q" if ptr == 8 else "<I"
    chpe_va = 0
    if chpe:
        # Minimal IMAGE_ARM64EC_METADATA / IMAGE_CHPE_METADATA_X86: Version 1, no code ranges.
        chpe_va = image_base + buf.add(struct.pack("<I", 1).ljust(0x50, b"\0"), 8)
    blob = bytearray(size)
    struct.pack_into("<I", blob, offsets["Size"], size)
    struct.pack_into("<H", blob, offsets["DependentLoadFlags"], dependent_load_flags)
    struct.pack_into(pfmt, blob, offsets["CHPEMetadataPointer"], chpe_va)
    rva = buf.add(bytes(blob), 8)
    return rva, size, (rva + offsets["CHPEMetadataPointer"]) if chpe else None


# --------------------------------------------------------------------------------------------
# version resource (VS_VERSIONINFO in an RT_VERSION resource, spec 6.9)
# --------------------------------------------------------------------------------------------


def _ver_node(key: str, value: bytes, value_len: int, wtype: int, children: Sequence[bytes]
              ) -> bytes:
    """One version block: wLength, wValueLength, wType, szKey, pad, Value, pad, Children.

    Every block starts 4-aligned; ``wLength`` excludes the block's own trailing padding.
    """
    node = bytearray(struct.pack("<HHH", 0, value_len, wtype) + (key + "\0").encode("utf-16-le"))
    node += bytes(-len(node) % 4) + value
    for child in children:
        node += bytes(-len(node) % 4) + child
    struct.pack_into("<H", node, 0, len(node))
    return bytes(node)


def _version_info(
    file_version: tuple[int, int, int, int], product_version: tuple[int, int, int, int],
    strings: Mapping[str, str], dll: bool,
) -> bytes:
    def ms_ls(v: tuple[int, int, int, int]) -> tuple[int, int]:
        return (v[0] << 16) | v[1], (v[2] << 16) | v[3]

    fixed = struct.pack(
        "<13I", 0xFEEF04BD, 0x00010000, *ms_ls(file_version), *ms_ls(product_version),
        0x3F, 0, 0x00040004, 2 if dll else 1, 0, 0, 0,  # mask, flags, VOS_NT_WINDOWS32, VFT_*
    )
    children = []
    if strings:
        values = {k: (v + "\0").encode("utf-16-le") for k, v in strings.items()}
        # wValueLength of a String counts WCHARs (UTF-16 code units), terminator included
        table = [_ver_node(k, v, len(v) // 2, 1, ()) for k, v in values.items()]
        children.append(_ver_node("StringFileInfo", b"", 0, 1,
                                  [_ver_node("040904b0", b"", 0, 1, table)]))
    translation = _ver_node("Translation", struct.pack("<HH", 0x0409, 0x04B0), 4, 0, ())
    children.append(_ver_node("VarFileInfo", b"", 0, 1, [translation]))
    return _ver_node("VS_VERSION_INFO", fixed, len(fixed), 0, children)


def _resource_section(rva: int, version: bytes) -> bytes:
    """Type RT_VERSION(16) / name 1 / language 0x0409 -> the VS_VERSIONINFO blob."""
    def directory(ident: int, target: int) -> bytes:  # IMAGE_RESOURCE_DIRECTORY + 1 ID entry
        return struct.pack("<IIHHHHII", 0, 0, 0, 0, 0, 1, ident, target)

    subdir = 0x80000000  # high bit: the entry points at another directory
    return (
        directory(16, subdir | 24) + directory(1, subdir | 48) + directory(0x0409, 72)
        + struct.pack("<IIII", rva + 88, len(version), 0, 0)  # IMAGE_RESOURCE_DATA_ENTRY
        + version
    )


# --------------------------------------------------------------------------------------------
# Rich header, checksum, certificate
# --------------------------------------------------------------------------------------------


def _rol32(value: int, n: int) -> int:
    n %= 32
    return ((value << n) | (value >> (32 - n))) & 0xFFFFFFFF


def _rich_header(dos: bytes, entries: Sequence[tuple[int, int, int]]) -> bytes:
    """Rich header placed right after ``dos`` (the DOS header + stub, e_lfanew still zero).

    Checksum = offset of "DanS" + each DOS byte rotated left by its offset (skipping e_lfanew,
    0x3C..0x3F) + each comp.id rotated left by its count, mod 2**32; it is the XOR key too.
    """
    ids = []
    for prod, build, count in entries:
        if not (0 <= prod <= 0xFFFF and 0 <= build <= 0xFFFF and 0 <= count <= 0xFFFFFFFF):
            raise ValueError(f"bad Rich entry {(prod, build, count)}")
        ids.append(((prod << 16) | build, count))
    key = len(dos)
    key += sum(_rol32(b, i) for i, b in enumerate(dos) if not 0x3C <= i < 0x40)
    key += sum(_rol32(comp, count) for comp, count in ids)
    key &= 0xFFFFFFFF
    words = [0x536E6144 ^ key, key, key, key]  # "DanS" then three zero dwords, all XORed
    words += [w ^ key for pair in ids for w in pair]
    words += [0x68636952, key]  # "Rich" and the key in clear
    return struct.pack(f"<{len(words)}I", *words)


def _sum16(data: bytes | bytearray) -> int:
    """Sum of the little-endian 16-bit words of ``data`` (odd length: zero-padded)."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    words = memoryview(data).cast("H")  # host byte order
    if sys.byteorder == "big":
        return sum(((w & 0xFF) << 8) | (w >> 8) for w in words)
    return sum(words)


def _pe_checksum(head: bytes | bytearray, pad_len: int, tail: bytes) -> int:
    """IMAGE_OPTIONAL_HEADER.CheckSum of head + _fill(pad_len) + tail (field already zero).

    The one's-complement word sum of the periodic filler is computed per 256-byte period, so
    multi-gigabyte ``pad_to`` images stay cheap; ``head`` has an even length.
    """
    full, rest = divmod(pad_len, len(_FILL))
    total = _sum16(head) + full * _sum16(_FILL) + _sum16(_FILL[:rest]) + _sum16(tail)
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total + len(head) + pad_len + len(tail)


def _certificate() -> bytes:
    """WIN_CERTIFICATE (spec 4.7): dwLength, wRevision 2.0, WIN_CERT_TYPE_PKCS_SIGNED_DATA.

    The payload is only a DER ContentInfo header with the signedData OID (1.2.840.113549.1.7.2):
    enough to say "Authenticode-signed", not a verifiable signature.
    """
    payload = bytes.fromhex("300b06092a864886f70d010702")
    blob = struct.pack("<IHH", 8 + len(payload), 0x0200, 0x0002) + payload
    return blob + bytes(-len(blob) % 8)


# --------------------------------------------------------------------------------------------
# the image
# --------------------------------------------------------------------------------------------


def build_pe(
    *,
    machine: int = Machine.AMD64,
    dll: bool = True,
    name: str = "test.dll",
    imports: Mapping[str, Sequence[str | int]] = {},  # never mutated
    delay_imports: Mapping[str, Sequence[str | int]] = {},  # never mutated
    exports: Sequence[str | ExportSpec] = (),
    ordinal_base: int = 1,
    dependent_load_flags: int = 0,
    chpe_metadata: bool = False,
    linker_version: tuple[int, int] = (14, 42),
    rich: Sequence[tuple[int, int, int]] | None = None,
    file_version: tuple[int, int, int, int] | None = None,
    product_version: tuple[int, int, int, int] | None = None,
    version_strings: Mapping[str, str] | None = None,
    signed: bool = False,
    timestamp: int = 0,
    pad_to: int = 0,
    _filler: int = 0,
) -> bytes:
    """Return the bytes of a PE image with exactly the requested tables (see module docstring).

    ``machine`` ``Machine.ARM64EC`` / ``Machine.ARM64X`` write AMD64 / ARM64 in the header and
    force ``chpe_metadata`` -- that is how real hybrid images look.  Unknown machines get a
    PE32+ header and x64 stubs.  DLLs get an entry point (a DllMain returning TRUE) because
    pefile warns about any AddressOfEntryPoint below SizeOfHeaders, 0 included.
    ``_filler`` is internal: bytes of filler appended to ``.text`` (see the end).
    """
    args = dict(locals())  # first statement: the arguments, for the rebuild at the end
    if machine in (Machine.ARM64EC, Machine.ARM64X):
        machine, chpe_metadata = (Machine.AMD64 if machine == Machine.ARM64EC
                                  else Machine.ARM64), True
    pe32 = machine in (Machine.I386, Machine.ARMNT)
    ptr = 4 if pe32 else 8
    image_base = (0x10000000 if dll else 0x400000) if pe32 else (
        0x180000000 if dll else 0x140000000)
    _check_entries("imports", imports)
    _check_entries("delay_imports", delay_imports)
    if not 0 <= dependent_load_flags <= 0xFFFF:
        raise ValueError("dependent_load_flags is a WORD")
    specs = [ExportSpec(name=e) if isinstance(e, str) else e for e in exports]
    ordinals = _assign_ordinals(specs, ordinal_base)
    want_load_config = dependent_load_flags > 0 or chpe_metadata
    want_version = file_version is not None or bool(version_strings)

    # Which sections exist is known up front, hence the header size and the first RVA.
    names = [".text"]
    if exports or imports or delay_imports or want_load_config:
        names.append(".rdata")
    if delay_imports:
        names.append(".data")
    if want_version:
        names.append(".rsrc")
    if chpe_metadata:
        names.append(".reloc")
    dos = b"MZ" + struct.pack("<29HI", 0x90, 3, 0, 4, 0, 0xFFFF, 0, 0xB8, 0, 0, 0, 0x40,
                              *([0] * 17), 0) + _DOS_STUB
    rich_blob = _rich_header(dos, rich) if rich is not None else b""
    e_lfanew = _align(len(dos) + len(rich_blob), 8)
    opt_size = 224 if pe32 else 240
    sec_table = e_lfanew + 4 + 20 + opt_size
    size_of_headers = _align(sec_table + 40 * len(names), FILE_ALIGNMENT)

    # .text: entry stub, then one 4-byte stub per non-forwarded export.  ARM32 code runs in
    # Thumb mode, so its code addresses carry bit 0 (as MSVC writes them).
    thumb = 1 if machine == Machine.ARMNT else 0
    dll_entry, exe_entry, export_stub = _STUBS.get(machine, _STUBS[Machine.AMD64])
    text = _Buf(_align(size_of_headers, SECTION_ALIGNMENT))
    entry_rva = text.add(dll_entry if dll else exe_entry) | thumb
    n_stubs = sum(1 for s in specs if not s.forwarder)
    first_stub = text.add(export_stub * n_stubs, 16)
    if _filler:
        text.add(_fill(_filler), 16)  # never executed, only dilutes zero bytes (see the end)
    stub_rvas = range(first_stub | thumb, first_stub + 4 * n_stubs, 4)
    dirs: dict[int, tuple[int, int]] = {}  # data directory index -> (RVA, size)
    chpe_field: int | None = None  # RVA of the load config's CHPEMetadataPointer
    delay_data: list[bytes] = []  # contents of .data, produced while building .rdata

    def build_rdata(rva: int, data_rva: int) -> _Buf:
        """.rdata at ``rva``; ``data_rva`` is where .data will go (known on the 2nd call)."""
        nonlocal chpe_field
        buf = _Buf(rva)
        if specs:
            dirs[_DIR_EXPORT] = _export_directory(
                buf, name, specs, ordinals, ordinal_base, stub_rvas, timestamp)
        if imports:
            # hint/name entries and DLL names first, so every table only points backwards.
            dll_rvas = [buf.add(_cstr(dll)) for dll in imports]
            ilts = [_thunks(buf, entries, ptr) for entries in imports.values()]
            ilt_rvas = [buf.add(ilt, ptr) for ilt in ilts]
            iat_rva = buf.add(b"".join(ilts), ptr)  # unbound IAT = copy of the ILT
            iat_rvas = [iat_rva + sum(len(t) for t in ilts[:i]) for i in range(len(ilts))]
            desc = b"".join(  # IMAGE_IMPORT_DESCRIPTOR: OFT, TimeDateStamp, Fwd, Name, FT
                struct.pack("<IIIII", o, 0, 0, n, f)
                for o, n, f in zip(ilt_rvas, dll_rvas, iat_rvas)
            )
            dirs[_DIR_IAT] = (iat_rva, buf.tell() - iat_rva)
            dirs[_DIR_IMPORT] = (buf.add(desc + bytes(20), 4), len(desc) + 20)
        if delay_imports:
            # .data holds one module-handle slot per DLL, then the delay IATs (writable, since
            # __delayLoadHelper2 stores there).  The IATs start as copies of the INTs: a real
            # linker puts load-thunk VAs there, which only the program itself ever calls.
            dll_rvas = [buf.add(_cstr(dll)) for dll in delay_imports]
            ints = [_thunks(buf, entries, ptr) for entries in delay_imports.values()]
            int_rvas = [buf.add(t, ptr) for t in ints]
            iat = data_rva + ptr * len(ints)
            delay_desc = bytearray()
            for i, (dll_rva, int_rva) in enumerate(zip(dll_rvas, int_rvas)):
                # Attributes=1 (RVA based), Name, ModuleHandle, IAT, INT, BoundIAT, UnloadIAT, TS
                delay_desc += struct.pack("<8I", 1, dll_rva, data_rva + ptr * i, iat, int_rva,
                                          0, 0, 0)
                iat += len(ints[i])
            dirs[_DIR_DELAY_IMPORT] = (buf.add(bytes(delay_desc) + bytes(32), 4),
                                       len(delay_desc) + 32)
            delay_data[:] = [bytes(ptr * len(ints)), *ints]
        if want_load_config:
            lc_rva, lc_size, chpe_field = _load_config(
                buf, ptr, image_base, dependent_load_flags, chpe_metadata)
            dirs[_DIR_LOAD_CONFIG] = (lc_rva, lc_size)
        return buf

    # Build .rdata twice when .data follows it: first only to learn its size.
    sections: list[tuple[str, int, _Buf]] = [(".text", _SCN_CODE, text)]
    nxt = _align(text.tell(), SECTION_ALIGNMENT)
    if ".rdata" in names:
        rdata = build_rdata(nxt, 0)
        data_rva = _align(rdata.tell(), SECTION_ALIGNMENT)
        if delay_imports:
            rdata = build_rdata(nxt, data_rva)
        sections.append((".rdata", _SCN_RDATA, rdata))
        nxt = data_rva
    if delay_imports:
        data = _Buf(nxt)
        data.add(b"".join(delay_data))
        sections.append((".data", _SCN_DATA, data))
        nxt = _align(data.tell(), SECTION_ALIGNMENT)
    if want_version:
        fv = file_version or (0, 0, 0, 0)
        if any(not 0 <= part <= 0xFFFF for part in fv + (product_version or fv)):
            raise ValueError("version parts are 16-bit")
        blob = _version_info(fv, product_version or fv, version_strings or {}, dll)
        rsrc = _Buf(nxt)
        rsrc.add(_resource_section(nxt, blob))
        dirs[_DIR_RESOURCE] = (nxt, len(rsrc.data))
        sections.append((".rsrc", _SCN_RDATA, rsrc))
        nxt = _align(rsrc.tell(), SECTION_ALIGNMENT)
    if chpe_field is not None:
        # One IMAGE_BASE_RELOCATION block: page RVA, SizeOfBlock, the DIR64/HIGHLOW entry for
        # the CHPE pointer and an ABSOLUTE (no-op) entry padding the block to 4 bytes.
        kind = 3 if pe32 else 10  # IMAGE_REL_BASED_HIGHLOW / IMAGE_REL_BASED_DIR64
        reloc = _Buf(nxt)
        entry = (kind << 12) | (chpe_field & 0xFFF)
        reloc.add(struct.pack("<IIHH", chpe_field & ~0xFFF, 12, entry, 0))
        dirs[_DIR_BASERELOC] = (nxt, 12)
        sections.append((".reloc", _SCN_RELOC, reloc))
        nxt = _align(reloc.tell(), SECTION_ALIGNMENT)
    assert [s[0] for s in sections] == names

    # Section table and raw data (each section padded to FileAlignment with the filler).
    raw = bytearray()
    table = bytearray()
    size_code = size_data = 0
    for sec_name, flags, buf in sections:
        raw_size = _align(len(buf.data), FILE_ALIGNMENT)
        table += struct.pack("<8sIIIIIIHHI", sec_name.encode(), len(buf.data), buf.rva, raw_size,
                             size_of_headers + len(raw), 0, 0, 0, 0, flags)
        raw += buf.data + _fill(raw_size - len(buf.data))
        if flags & 0x20:
            size_code += raw_size
        else:
            size_data += raw_size
    size_of_image = nxt

    # Overlay (pad_to) and certificate, which must be the last bytes of the file (4.7).
    body_len = size_of_headers + len(raw)
    cert = _certificate() if signed else b""
    pad_len = max(0, pad_to - body_len - len(cert))
    if cert:
        pad_len = _align(body_len + pad_len, 8) - body_len
        dirs[_DIR_SECURITY] = (body_len + pad_len, len(cert))  # a file offset, not an RVA

    # COFF file header: EXECUTABLE_IMAGE, DLL, 32BIT_MACHINE (PE32) / LARGE_ADDRESS_AWARE.
    characteristics = 0x0002 | (0x2000 if dll else 0) | (0x0100 if pe32 else 0x0020)
    file_header = struct.pack("<HHIIIHH", machine, len(sections), timestamp, 0, 0, opt_size,
                              characteristics)
    # DYNAMIC_BASE | NX_COMPAT.  DYNAMIC_BASE is truthful even without .reloc: the stubs are
    # position independent, every table holds RVAs, and the one absolute address we may store
    # (the CHPE pointer) gets a real .reloc entry.  IMAGE_FILE_RELOCS_STRIPPED stays clear, so
    # a loader may map at ImageBase or elsewhere (zero fixups) -- both correct; Wine does.
    dll_chars = 0x0040 | 0x0100
    # Subsystem: console (3) for EXEs; Windows GUI (2) for DLLs, like MSVC's /DLL default.
    subsystem = 2 if dll else 3
    os_ver = (6, 2) if machine in (Machine.ARM64, Machine.ARMNT) else (6, 0)
    fields: list[int] = [0x10B if pe32 else 0x20B, linker_version[0], linker_version[1],
                         size_code, size_data, 0, entry_rva, text.rva]
    if pe32:
        fields.append(sections[1][2].rva if len(sections) > 1 else 0)  # BaseOfData
    fields += [image_base, SECTION_ALIGNMENT, FILE_ALIGNMENT, *os_ver, 0, 0, *os_ver, 0,
               size_of_image, size_of_headers, 0, subsystem, dll_chars,
               0x100000, 0x1000, 0x100000, 0x1000, 0, 16]
    opt = struct.pack("<HBBIIIII" + ("I" if pe32 else "") + ("I" if pe32 else "Q")
                      + "IIHHHHHHIIIIHH" + ("IIII" if pe32 else "QQQQ") + "II", *fields)
    opt += b"".join(struct.pack("<II", *dirs.get(i, (0, 0))) for i in range(16))

    headers = bytearray(dos + rich_blob)
    headers += bytes(e_lfanew - len(headers))
    struct.pack_into("<I", headers, 0x3C, e_lfanew)
    headers += b"PE\0\0" + file_header + opt + table
    headers += _fill(size_of_headers - len(headers))
    headers += raw
    struct.pack_into("<I", headers, e_lfanew + 24 + 64, _pe_checksum(headers, pad_len, cert))
    if pad_len < 1 << 20:
        image = bytes(headers + _fill(pad_len) + cert)
        # pefile warns when 0x00 is over half of a file.  Tiny images whose tables are mostly
        # 64-bit thunks (ordinal imports) get there; rebuild once with enough filler in .text
        # (+ FILE_ALIGNMENT: the first bytes only replace the filler already in .text's slack).
        zeros = image.count(0)
        if zeros > 0.48 * len(image) and not _filler:
            grow = (zeros - 0.45 * len(image)) / 0.54
            args["_filler"] = _align(int(grow), 16) + FILE_ALIGNMENT
            return build_pe(**args)
        return image
    # Big overlay: fill the buffer in place by doubling the pattern (one copy, not five).
    out = bytearray(len(headers) + pad_len + len(cert))
    out[: len(headers)] = headers
    start, done = len(headers), len(_FILL)
    view = memoryview(out)
    view[start : start + done] = _FILL
    while done < pad_len:
        step = min(done, pad_len - done)
        view[start + done : start + done + step] = view[start : start + step]
        done += step
    view.release()
    out[len(out) - len(cert) :] = cert
    return bytes(out)


def write_pe(path: str | os.PathLike[str], **kwargs: Any) -> pathlib.Path:
    """:func:`build_pe` ``**kwargs`` and write the image to ``path`` (parents created)."""
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(build_pe(**kwargs))
    return target
