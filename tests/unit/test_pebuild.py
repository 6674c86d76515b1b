"""Round-trip every feature of torchdll._pebuild through pefile (and, if present, Wine)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pefile
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torchdll._pebuild import ExportSpec, build_pe, load_config_offsets, write_pe
from torchdll.model import Machine

MACHINES = [Machine.I386, Machine.AMD64, Machine.ARM64]
ORDINAL_FLAG = {Machine.I386: 0x80000000, Machine.AMD64: 1 << 63, Machine.ARM64: 1 << 63}

SCN_MEM_EXECUTE = 0x20000000
SCN_MEM_WRITE = 0x80000000


def parse(data: bytes, **kwargs: Any) -> pefile.PE:
    """Full parse; the image must not raise a single pefile warning."""
    pe = pefile.PE(data=data, fast_load=False, **kwargs)
    assert pe.get_warnings() == []
    return pe


def section_of(pe: pefile.PE, rva: int) -> Any:
    section = pe.get_section_by_rva(rva)
    assert section is not None, hex(rva)
    return section


def sec_name(section: Any) -> bytes:
    return bytes(section.Name).rstrip(b"\0")


# --------------------------------------------------------------------------------------------
# headers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("dll", [True, False])
def test_headers(machine: Machine, dll: bool) -> None:
    data = build_pe(machine=machine, dll=dll, linker_version=(14, 38), timestamp=0x5F000000,
                    imports={"kernel32.dll": ["GetTickCount"]})
    pe = parse(data)
    fh, oh = pe.FILE_HEADER, pe.OPTIONAL_HEADER
    assert fh.Machine == machine
    assert fh.TimeDateStamp == 0x5F000000
    assert oh.Magic == (0x10B if machine == Machine.I386 else 0x20B)
    assert fh.SizeOfOptionalHeader == (224 if machine == Machine.I386 else 240)
    assert fh.Characteristics & 0x0002  # EXECUTABLE_IMAGE
    assert bool(fh.Characteristics & 0x2000) is dll  # IMAGE_FILE_DLL
    assert not fh.Characteristics & 0x0001  # RELOCS_STRIPPED
    assert pe.is_dll() is dll and pe.is_exe() is not dll
    assert (oh.MajorLinkerVersion, oh.MinorLinkerVersion) == (14, 38)
    assert oh.DllCharacteristics == 0x0040 | 0x0100  # DYNAMIC_BASE | NX_COMPAT
    assert oh.Subsystem == (2 if dll else 3)
    assert oh.NumberOfRvaAndSizes == 16 and len(oh.DATA_DIRECTORY) == 16
    assert (oh.FileAlignment, oh.SectionAlignment) == (0x200, 0x1000)
    assert oh.SizeOfHeaders == min(s.PointerToRawData for s in pe.sections)
    last = max(pe.sections, key=lambda s: s.VirtualAddress)
    assert oh.SizeOfImage == -(-(last.VirtualAddress + last.Misc_VirtualSize) // 0x1000) * 0x1000
    assert pe.verify_checksum() and oh.CheckSum != 0
    # Entry point: inside the executable .text for both kinds (DLLs: a DllMain returning TRUE).
    text = section_of(pe, oh.AddressOfEntryPoint)
    assert sec_name(text) == b".text" and text.Characteristics & SCN_MEM_EXECUTE
    assert oh.BaseOfCode == text.VirtualAddress
    for section in pe.sections:
        assert section.PointerToRawData % 0x200 == 0 and section.SizeOfRawData % 0x200 == 0
        assert section.VirtualAddress % 0x1000 == 0
        assert section.Misc_VirtualSize <= section.SizeOfRawData


def test_entry_stub_bytes() -> None:
    def entry(**kw: Any) -> bytes:
        pe = parse(build_pe(**kw))
        return bytes(pe.get_data(pe.OPTIONAL_HEADER.AddressOfEntryPoint, 8))

    assert entry(machine=Machine.AMD64).startswith(bytes.fromhex("b801000000c3"))  # return TRUE
    assert entry(machine=Machine.AMD64, dll=False).startswith(bytes.fromhex("31c0c3"))
    assert entry(machine=Machine.I386).startswith(bytes.fromhex("b801000000c20c00"))
    assert entry(machine=Machine.ARM64)[4:8] == struct.pack("<I", 0xD65F03C0)  # ret


def test_machine_arm32_is_pe32() -> None:
    pe = parse(build_pe(machine=Machine.ARMNT, exports=["f"]))
    assert pe.FILE_HEADER.Machine == Machine.ARMNT and pe.OPTIONAL_HEADER.Magic == 0x10B
    assert pe.DIRECTORY_ENTRY_EXPORT.symbols[0].address & 1  # Thumb code address


# --------------------------------------------------------------------------------------------
# imports and delay imports
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("machine", MACHINES)
def test_imports(machine: Machine) -> None:
    wanted: dict[str, list[str | int]] = {
        "KERNEL32.dll": ["GetTickCount", "Sleep", 17], "torch_cpu.dll": [3, "??0Foo@@QEAA@XZ"]}
    pe = parse(build_pe(machine=machine, imports=wanted))
    got = {
        d.dll.decode(): [i.name.decode() if i.name is not None else i.ordinal for i in d.imports]
        for d in pe.DIRECTORY_ENTRY_IMPORT
    }
    assert got == wanted
    ptr = 4 if machine == Machine.I386 else 8
    fmt = "<I" if ptr == 4 else "<Q"
    iat_dir = pe.OPTIONAL_HEADER.DATA_DIRECTORY[12]
    for desc in pe.DIRECTORY_ENTRY_IMPORT:
        assert desc.struct.OriginalFirstThunk and desc.struct.FirstThunk
        assert desc.struct.OriginalFirstThunk != desc.struct.FirstThunk
        count = len(desc.imports)
        ilt = pe.get_data(desc.struct.OriginalFirstThunk, ptr * (count + 1))
        iat = pe.get_data(desc.struct.FirstThunk, ptr * (count + 1))
        assert ilt == iat  # unbound: the IAT starts as a copy of the ILT
        assert struct.unpack_from(fmt, ilt, ptr * count)[0] == 0  # null terminator
        for k, imp in enumerate(desc.imports):
            value = struct.unpack_from(fmt, ilt, ptr * k)[0]
            if imp.name is None:
                assert value == ORDINAL_FLAG[machine] | imp.ordinal
            else:
                assert not value & ORDINAL_FLAG[machine] and value == imp.hint_name_table_rva
        # every IAT slot lies inside the IAT data directory
        start = desc.struct.FirstThunk
        assert iat_dir.VirtualAddress <= start
        assert start + ptr * (count + 1) <= iat_dir.VirtualAddress + iat_dir.Size
        assert sec_name(section_of(pe, start)) == b".rdata"
    # hints are the rank of the name among that DLL's imported names
    assert [i.hint for i in pe.DIRECTORY_ENTRY_IMPORT[0].imports if i.name] == [0, 1]


def test_import_validation() -> None:
    with pytest.raises(ValueError):
        build_pe(imports={"a.dll": []})
    with pytest.raises(ValueError):
        build_pe(imports={"a.dll": [0]})
    with pytest.raises(ValueError):
        build_pe(delay_imports={"a.dll": [0x10000]})
    with pytest.raises(TypeError):
        build_pe(imports={"a.dll": [True]})


@pytest.mark.parametrize("machine", MACHINES)
def test_delay_imports(machine: Machine) -> None:
    wanted: dict[str, list[str | int]] = {
        "cudnn64_9.dll": ["cudnnCreate", 5], "nvToolsExt64_1.dll": ["nvtxRangePushA"]}
    pe = parse(build_pe(machine=machine, delay_imports=wanted,
                        imports={"kernel32.dll": ["Sleep"]}))
    got = {
        d.dll.decode(): [i.name.decode() if i.name is not None else i.ordinal for i in d.imports]
        for d in pe.DIRECTORY_ENTRY_DELAY_IMPORT
    }
    assert got == wanted
    assert [d.dll for d in pe.DIRECTORY_ENTRY_IMPORT] == [b"kernel32.dll"]
    ptr = 4 if machine == Machine.I386 else 8
    handles = set()
    for desc in pe.DIRECTORY_ENTRY_DELAY_IMPORT:
        s = desc.struct
        assert s.grAttrs == 1  # RVA based
        assert s.pBoundIAT == 0 and s.pUnloadIAT == 0 and s.dwTimeStamp == 0
        # module handle slot and IAT are written at run time: writable .data, initially the
        # handle is NULL; the INT is read-only
        for rva in (s.phmod, s.pIAT):
            assert section_of(pe, rva).Characteristics & SCN_MEM_WRITE
        assert pe.get_data(s.phmod, ptr) == bytes(ptr)
        assert not section_of(pe, s.pINT).Characteristics & SCN_MEM_WRITE
        n = len(desc.imports) + 1
        assert pe.get_data(s.pIAT, ptr * n) == pe.get_data(s.pINT, ptr * n)
        handles.add(s.phmod)
    assert len(handles) == 2


# --------------------------------------------------------------------------------------------
# exports
# --------------------------------------------------------------------------------------------


def export_map(pe: pefile.PE) -> dict[Any, Any]:
    return {
        (e.name.decode() if e.name else f"#{e.ordinal}"): (e.ordinal,
                                                           e.forwarder and e.forwarder.decode())
        for e in pe.DIRECTORY_ENTRY_EXPORT.symbols
    }


@pytest.mark.parametrize("machine", MACHINES)
def test_exports(machine: Machine) -> None:
    exports: list[str | ExportSpec] = [
        "zeta", "Alpha", "_beta", "alpha",  # ASCII order: "Alpha" < "_beta" < "alpha" < "zeta"
        ExportSpec(ordinal=40),  # NONAME
        ExportSpec("RtlFoo", forwarder="NTDLL.RtlFoo"),
        ExportSpec(None, 41, forwarder="other.#12"),
        ExportSpec("pinned", ordinal=20),
    ]
    pe = parse(build_pe(machine=machine, name="torch_python.dll", exports=exports,
                        ordinal_base=10, timestamp=77))
    ed = pe.DIRECTORY_ENTRY_EXPORT
    assert ed.name == b"torch_python.dll"
    assert ed.struct.Base == 10 and ed.struct.TimeDateStamp == 77
    assert ed.struct.NumberOfNames == 6 and ed.struct.NumberOfFunctions == 41 - 10 + 1
    assert export_map(pe) == {
        "zeta": (10, None), "Alpha": (11, None), "_beta": (12, None), "alpha": (13, None),
        "#40": (40, None), "RtlFoo": (14, "NTDLL.RtlFoo"), "#41": (41, "other.#12"),
        "pinned": (20, None),
    }
    # The name pointer table itself is in byte order (the loader binary-searches it).
    npt = struct.unpack(f"<{ed.struct.NumberOfNames}I",
                        pe.get_data(ed.struct.AddressOfNames, 4 * ed.struct.NumberOfNames))
    names = [pe.get_string_at_rva(rva) for rva in npt]
    assert names == sorted(names) == [b"Alpha", b"RtlFoo", b"_beta", b"alpha", b"pinned", b"zeta"]
    # Forwarders point inside the export directory, code exports at distinct .text stubs.
    exp_dir = pe.OPTIONAL_HEADER.DATA_DIRECTORY[0]
    code = [e.address for e in ed.symbols if e.forwarder is None]
    for e in ed.symbols:
        inside = exp_dir.VirtualAddress <= e.address < exp_dir.VirtualAddress + exp_dir.Size
        assert inside is (e.forwarder is not None)
        if e.forwarder is None:
            assert sec_name(section_of(pe, e.address)) == b".text"
    assert len(set(code)) == len(code) == 6
    # unused ordinals 21..39 have a zero EAT entry
    eat = struct.unpack("<32I", pe.get_data(ed.struct.AddressOfFunctions, 4 * 32))
    assert eat[21 - 10] == 0 and eat[39 - 10] == 0


def test_export_ordinal_assignment() -> None:
    exports: list[str | ExportSpec] = ["a", ExportSpec("b", 6), ExportSpec(), "c",
                                       ExportSpec(ordinal=5)]
    pe = parse(build_pe(exports=exports, ordinal_base=3))
    assert export_map(pe) == {"a": (3, None), "b": (6, None), "#4": (4, None),
                              "c": (7, None), "#5": (5, None)}


def test_export_validation() -> None:
    with pytest.raises(ValueError):
        build_pe(exports=["a", "a"])
    with pytest.raises(ValueError):
        build_pe(exports=[ExportSpec("a", 1), ExportSpec("b", 1)])
    with pytest.raises(ValueError):
        build_pe(exports=[ExportSpec("a", 2)], ordinal_base=3)
    with pytest.raises(ValueError):
        build_pe(exports=["a"], ordinal_base=0)


def test_no_exports_means_no_export_directory() -> None:
    pe = parse(build_pe(imports={"kernel32.dll": ["Sleep"]}))
    assert not hasattr(pe, "DIRECTORY_ENTRY_EXPORT")
    assert pe.OPTIONAL_HEADER.DATA_DIRECTORY[0].VirtualAddress == 0


def test_60k_exports_complete() -> None:
    names = [f"at::native::op_{i:05d}" for i in range(60_000)]
    data = build_pe(exports=names)
    pe = parse(data, max_symbol_exports=100_000)
    symbols = pe.DIRECTORY_ENTRY_EXPORT.symbols
    assert len(symbols) == 60_000
    assert [s.name.decode() for s in symbols] == names  # already sorted input
    assert sorted(s.ordinal for s in symbols) == list(range(1, 60_001))


def test_10k_imports_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"cublasLtFunction{i}" for i in range(10_000)]
    data = build_pe(imports={"cublasLt64_12.dll": names},
                    delay_imports={"cudnn64_9.dll": names[:3000]})
    monkeypatch.setattr(pefile, "MAX_IMPORT_SYMBOLS", 100_000)  # pefile caps at 8192
    pe = parse(data)
    assert [i.name.decode() for i in pe.DIRECTORY_ENTRY_IMPORT[0].imports] == names
    assert len(pe.DIRECTORY_ENTRY_DELAY_IMPORT[0].imports) == 3000


SYMBOL = st.text("abcXYZ019_?@$", min_size=1, max_size=40)


@settings(max_examples=40, deadline=None)
@given(
    machine=st.sampled_from(MACHINES),
    names=st.lists(SYMBOL, unique=True, max_size=60),
    noname=st.integers(0, 5),
    base=st.integers(1, 300),
    imports=st.dictionaries(st.sampled_from(["a.dll", "B.DLL", "c10.dll"]),
                            st.lists(SYMBOL | st.integers(1, 0xFFFF), min_size=1, max_size=20,
                                     unique=True), max_size=3),
)
def test_random_tables_round_trip(machine: Machine, names: list[str], noname: int, base: int,
                                  imports: dict[str, list[str | int]]) -> None:
    exports: list[str | ExportSpec] = [*names, *(ExportSpec() for _ in range(noname))]
    pe = parse(build_pe(machine=machine, exports=exports, ordinal_base=base, imports=imports,
                        delay_imports=imports))
    if exports:
        assert export_map(pe) == {
            **{n: (base + i, None) for i, n in enumerate(names)},
            **{f"#{o}": (o, None) for o in range(base + len(names), base + len(exports))},
        }
    for entry in ("DIRECTORY_ENTRY_IMPORT", "DIRECTORY_ENTRY_DELAY_IMPORT"):
        got = {
            d.dll.decode(): [i.name.decode() if i.name is not None else i.ordinal
                             for i in d.imports]
            for d in getattr(pe, entry, [])
        }
        assert got == imports


# --------------------------------------------------------------------------------------------
# load config, hybrid images, relocations
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("chpe", [False, True])
def test_load_config(machine: Machine, chpe: bool) -> None:
    pe = parse(build_pe(machine=machine, dependent_load_flags=0x800, chpe_metadata=chpe))
    lc = pe.DIRECTORY_ENTRY_LOAD_CONFIG.struct
    ptr = 4 if machine == Machine.I386 else 8
    offsets, size = load_config_offsets(ptr)
    assert size == (0xC0 if ptr == 4 else 0x140)  # the current SDK's structure sizes
    assert lc.Size == size == pe.OPTIONAL_HEADER.DATA_DIRECTORY[10].Size
    assert lc.DependentLoadFlags == 0x800  # LOAD_LIBRARY_SEARCH_SYSTEM32
    # at its documented offset (winnt.h): 0x36 in the 32-bit structure, 0x4E in the 64-bit
    rva = pe.OPTIONAL_HEADER.DATA_DIRECTORY[10].VirtualAddress
    assert offsets["DependentLoadFlags"] == (0x36 if ptr == 4 else 0x4E)
    assert pe.get_word_at_rva(rva + offsets["DependentLoadFlags"]) == 0x800
    assert offsets["CHPEMetadataPointer"] == (0x7C if ptr == 4 else 0xC8)
    if not chpe:
        assert lc.CHPEMetadataPointer == 0
        assert not hasattr(pe, "DIRECTORY_ENTRY_BASERELOC")
        return
    va = lc.CHPEMetadataPointer
    base = pe.OPTIONAL_HEADER.ImageBase
    assert base < va < base + pe.OPTIONAL_HEADER.SizeOfImage
    assert pe.get_dword_at_rva(va - base) == 1  # metadata Version
    # the pointer is an absolute address, so .reloc must fix it up
    relocs = [e for block in pe.DIRECTORY_ENTRY_BASERELOC for e in block.entries if e.type]
    assert [(e.rva, e.type) for e in relocs] == [
        (rva + offsets["CHPEMetadataPointer"], 3 if ptr == 4 else 10)]


def test_load_config_only_when_asked() -> None:
    pe = parse(build_pe(exports=["f"]))
    assert not hasattr(pe, "DIRECTORY_ENTRY_LOAD_CONFIG")
    with pytest.raises(ValueError):
        build_pe(dependent_load_flags=0x10000)


@pytest.mark.parametrize(("hybrid", "header"), [(Machine.ARM64EC, Machine.AMD64),
                                                (Machine.ARM64X, Machine.ARM64)])
def test_hybrid_machines(hybrid: Machine, header: Machine) -> None:
    pe = parse(build_pe(machine=hybrid))
    assert pe.FILE_HEADER.Machine == header
    assert pe.DIRECTORY_ENTRY_LOAD_CONFIG.struct.CHPEMetadataPointer != 0
    assert pe.DIRECTORY_ENTRY_LOAD_CONFIG.struct.DependentLoadFlags == 0


# --------------------------------------------------------------------------------------------
# Rich header
# --------------------------------------------------------------------------------------------


def rich_checksum(data: bytes, dans: int, values: list[int]) -> int:
    """The documented algorithm, written independently of the builder."""
    def rol(v: int, n: int) -> int:
        n &= 31
        return ((v << n) | (v >> (32 - n))) & 0xFFFFFFFF

    total = dans + sum(rol(data[i], i) for i in range(dans) if not 0x3C <= i < 0x40)
    total += sum(rol(values[k], values[k + 1]) for k in range(0, len(values), 2))
    return total & 0xFFFFFFFF


@pytest.mark.parametrize("machine", MACHINES)
def test_rich_header(machine: Machine) -> None:
    entries = [(0x0104, 33810, 12), (0x0105, 33811, 3), (0x0001, 0, 250), (0x0102, 33923, 1)]
    data = build_pe(machine=machine, rich=entries)
    pe = parse(data)
    rich = pe.parse_rich_header()
    assert rich is not None
    assert rich["values"] == [v for p, b, c in entries for v in ((p << 16) | b, c)]
    assert rich["clear_data"][:16] == b"DanS" + bytes(12)
    dans = data.index(struct.pack("<I", 0x536E6144 ^ rich["checksum"]))
    assert dans == 0x80
    assert rich["checksum"] == rich_checksum(data, dans, rich["values"])
    assert struct.unpack_from("<I", data, 0x3C)[0] > data.index(b"Rich")  # e_lfanew after it


def test_no_rich_header() -> None:
    pe = parse(build_pe())
    assert pe.parse_rich_header() is None and pe.RICH_HEADER is None
    assert parse(build_pe(rich=[])).parse_rich_header()["values"] == []


# --------------------------------------------------------------------------------------------
# version resource
# --------------------------------------------------------------------------------------------


def version_of(pe: pefile.PE) -> tuple[Any, dict[bytes, bytes], dict[bytes, str]]:
    fixed = pe.VS_FIXEDFILEINFO[0]
    strings: dict[bytes, bytes] = {}
    var: dict[bytes, str] = {}
    for info in pe.FileInfo[0]:
        for table in getattr(info, "StringTable", []):
            assert table.LangID == b"040904b0"
            strings.update(table.entries)
        for v in getattr(info, "Var", []):
            var.update(v.entry)
    return fixed, strings, var


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("dll", [True, False])
def test_version_resource(machine: Machine, dll: bool) -> None:
    strings = {"FileVersion": "14.40.33810.0", "ProductName": "Microsoft® Visual C++",
               "OriginalFilename": "msvcp140.dll"}
    pe = parse(build_pe(machine=machine, dll=dll, file_version=(14, 40, 33810, 0),
                        version_strings=strings))
    fixed, got, var = version_of(pe)
    assert fixed.Signature == 0xFEEF04BD
    assert (fixed.FileVersionMS, fixed.FileVersionLS) == ((14 << 16) | 40, 33810 << 16)
    assert (fixed.ProductVersionMS, fixed.ProductVersionLS) == ((14 << 16) | 40, 33810 << 16)
    assert fixed.FileType == (2 if dll else 1)
    assert got == {k.encode(): v.encode("utf-8") for k, v in strings.items()}
    assert var == {b"Translation": "0x0409 0x04b0"}
    assert sec_name(section_of(pe, pe.OPTIONAL_HEADER.DATA_DIRECTORY[2].VirtualAddress)) == \
        b".rsrc"


def test_version_variants() -> None:
    fixed, got, _ = version_of(parse(build_pe(file_version=(1, 2, 3, 4),
                                              product_version=(5, 6, 7, 8))))
    assert (fixed.ProductVersionMS, fixed.ProductVersionLS) == (0x50006, 0x70008)
    assert got == {}
    fixed, got, _ = version_of(parse(build_pe(version_strings={"CompanyName": "NVIDIA"})))
    assert fixed.FileVersionMS == 0 and got == {b"CompanyName": b"NVIDIA"}
    pe = parse(build_pe())
    assert not hasattr(pe, "VS_FIXEDFILEINFO") and not hasattr(pe, "DIRECTORY_ENTRY_RESOURCE")


def test_version_string_outside_the_bmp() -> None:
    data = build_pe(version_strings={"Comments": "\U0001F600"})
    parse(data)
    key = data.index("Comments\0".encode("utf-16-le"))
    length, value_len, kind = struct.unpack_from("<HHH", data, key - 6)
    assert (value_len, kind) == (3, 1)  # WCHARs: a surrogate pair + the terminator; text
    value_at = key + 18 + (-(key + 18 - (key - 6)) % 4)
    assert data[value_at:value_at + 6] == "\U0001F600\0".encode("utf-16-le")
    assert length == value_at + 6 - (key - 6)


# --------------------------------------------------------------------------------------------
# certificate, padding, writing
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pad_to", [0, 300_000])
def test_signed(pad_to: int) -> None:
    data = build_pe(signed=True, pad_to=pad_to, exports=["f"])
    pe = parse(data)
    sec = pe.OPTIONAL_HEADER.DATA_DIRECTORY[4]
    assert sec.VirtualAddress % 8 == 0 and sec.VirtualAddress + sec.Size == len(data)
    length, revision, kind = struct.unpack_from("<IHH", data, sec.VirtualAddress)
    assert (revision, kind) == (0x0200, 0x0002)  # WIN_CERT_REVISION_2_0, PKCS_SIGNED_DATA
    assert length <= sec.Size and -(-length // 8) * 8 == sec.Size
    end_of_sections = max(s.PointerToRawData + s.SizeOfRawData for s in pe.sections)
    assert sec.VirtualAddress >= end_of_sections  # outside every section (not mapped)
    assert len(data) >= pad_to and pe.verify_checksum()
    unsigned = parse(build_pe(exports=["f"]))
    assert unsigned.OPTIONAL_HEADER.DATA_DIRECTORY[4].VirtualAddress == 0


def test_pad_to() -> None:
    small = build_pe(exports=["f"])
    assert build_pe(exports=["f"], pad_to=100) == small  # already larger: no-op
    big = build_pe(exports=["f"], pad_to=3_000_001)
    assert len(big) == 3_000_001
    pe = parse(big)
    assert pe.verify_checksum()
    assert len(pe.get_overlay()) == 3_000_001 - len(small)
    # everything up to the overlay is the same image, apart from the checksum
    checksum_at = pe.OPTIONAL_HEADER.get_file_offset() + 64
    assert big[:checksum_at] == small[:checksum_at]
    assert big[checksum_at + 4: len(small)] == small[checksum_at + 4:]


def test_zero_heavy_image_gets_text_filler() -> None:
    # 64-bit ordinal thunks are 5/8 zero bytes: such a tiny image would be >50% zeros, which
    # pefile reports as possible truncation; the builder pads .text instead.
    ordinals: dict[str, list[str | int]] = {d: list(range(1, 21)) for d in ("a.dll", "b.dll")}
    data = build_pe(imports=ordinals, delay_imports=ordinals)
    pe = parse(data)
    assert data.count(0) <= len(data) // 2
    assert pe.sections[0].Misc_VirtualSize > 0x200
    assert parse(build_pe(imports={"a.dll": ["f"]})).sections[0].Misc_VirtualSize < 0x20


def test_write_pe(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {"exports": ["f"], "imports": {"kernel32.dll": ["Sleep"]}}
    path = write_pe(tmp_path / "a" / "b" / "x.dll", **kwargs)
    assert path == tmp_path / "a" / "b" / "x.dll"
    assert path.read_bytes() == build_pe(**kwargs)


def test_everything_at_once_is_deterministic() -> None:
    kwargs: dict[str, Any] = {
        "machine": Machine.AMD64, "name": "c10.dll",
        "imports": {"kernel32.dll": ["Sleep", 3]},
        "delay_imports": {"cudart64_12.dll": ["cudaMalloc"]},
        "exports": ["f", ExportSpec(None, 9, "x.#1")], "ordinal_base": 2,
        "dependent_load_flags": 0x800, "chpe_metadata": True, "rich": [(0x104, 1, 2)],
        "file_version": (1, 0, 0, 0), "version_strings": {"FileVersion": "1.0"},
        "signed": True, "timestamp": 1, "pad_to": 70_000,
    }
    data = build_pe(**kwargs)
    assert data == build_pe(**kwargs)
    pe = parse(data)
    assert [s.Name.rstrip(b"\0") for s in pe.sections] == [
        b".text", b".rdata", b".data", b".rsrc", b".reloc"]
    assert pe.verify_checksum()


# --------------------------------------------------------------------------------------------
# a real loader: Wine
# --------------------------------------------------------------------------------------------

WINE = "/usr/lib/wine/wine64"
MINGW = "x86_64-w64-mingw32-gcc"

LOADER_C = r"""
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <wchar.h>
/* loader.exe ITEM...: ITEM "Z:..\x.dll" = LoadLibraryExW it; "Z:..\x.exe" = run it and print its
   exit code; anything else = GetProcAddress (NAME or #ORDINAL) in the last loaded DLL. */
int wmain(int argc, wchar_t **argv) {
    HMODULE h = NULL;
    for (int i = 1; i < argc; i++) {
        size_t n = wcslen(argv[i]);
        if (n > 4 && !_wcsicmp(argv[i] + n - 4, L".exe")) {
            STARTUPINFOW si = {sizeof si};
            PROCESS_INFORMATION pi;
            DWORD code = 999;
            if (!CreateProcessW(argv[i], NULL, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi)) {
                printf("RUN %lu\n", GetLastError());
                continue;
            }
            WaitForSingleObject(pi.hProcess, INFINITE);
            GetExitCodeProcess(pi.hProcess, &code);
            printf("EXIT %lu\n", code);
        } else if (n > 4 && !_wcsicmp(argv[i] + n - 4, L".dll")) {
            h = LoadLibraryExW(argv[i], NULL, 0);
            if (h) printf("LOAD OK\n"); else printf("LOAD %lu\n", GetLastError());
        } else {
            char name[256];
            FARPROC p;
            WideCharToMultiByte(CP_ACP, 0, argv[i], -1, name, sizeof name, NULL, NULL);
            p = GetProcAddress(h, name[0] == '#' ? (LPCSTR)(ULONG_PTR)atoi(name + 1) : name);
            printf("PROC %s %lu\n", name, p ? 0UL : GetLastError());
        }
    }
    return 0;
}
"""


@pytest.mark.wine
@pytest.mark.skipif(not os.access(WINE, os.X_OK), reason=f"{WINE} not installed")
@pytest.mark.skipif(shutil.which(MINGW) is None, reason=f"{MINGW} not installed")
def test_wine_loads_synthesized_dlls(tmp_path: Path) -> None:
    """Wine's real loader maps, binds and resolves the images (one Wine process: ~1-10 s)."""
    loader = tmp_path / "loader.exe"
    subprocess.run([MINGW, "-municode", "-O1", "-o", str(loader), "-x", "c", "-"],
                   input=LOADER_C.encode(), check=True, timeout=60)

    def win(path: Path) -> str:
        return "Z:" + str(path).replace("/", "\\")

    good = write_pe(
        tmp_path / "good.dll", name="good.dll", imports={"kernel32.dll": ["GetTickCount"]},
        delay_imports={"torchdll_no_such_delay.dll": ["Nope"]},  # not resolved at load time
        exports=["Foo", ExportSpec("Fwd", forwarder="KERNEL32.GetTickCount"), ExportSpec()],
        dependent_load_flags=0x800, rich=[(0x104, 33810, 3)], file_version=(1, 2, 3, 4),
        version_strings={"FileVersion": "1.2.3.4"}, signed=True,
    )
    missing = write_pe(tmp_path / "missing_dep.dll",
                       imports={"torchdll_no_such_dep.dll": ["Nope"]})
    x86 = write_pe(tmp_path / "x86.dll", machine=Machine.I386,
                   imports={"kernel32.dll": ["GetTickCount"]})
    hybrid = write_pe(tmp_path / "ec.dll", machine=Machine.ARM64EC, exports=["Foo"])
    exe = write_pe(tmp_path / "plain.exe", dll=False, imports={"kernel32.dll": ["Sleep"]})
    items = [win(good), "Foo", "Fwd", "#3", "#4", "Missing", win(missing), win(x86),
             win(hybrid), "Foo", win(exe)]

    env = dict(os.environ, WINEDEBUG="-all", WINEDLLOVERRIDES="mscoree,mshtml=",
               WINEPREFIX=os.path.join(tempfile.gettempdir(), "pebuild-wineprefix"))
    out = tmp_path / "out.txt"
    # stdout goes to a file, not a pipe: the wineserver Wine starts inherits it and lingers.
    with out.open("w") as sink:
        subprocess.run([WINE, str(loader), *items], env=env, stdin=subprocess.DEVNULL,
                       stdout=sink, stderr=subprocess.DEVNULL, timeout=120, check=True)
    assert out.read_text().splitlines() == [
        "LOAD OK", "PROC Foo 0", "PROC Fwd 0", "PROC #3 0", "PROC #4 127", "PROC Missing 127",
        "LOAD 126",  # ERROR_MOD_NOT_FOUND: a dependency is missing
        "LOAD 193",  # ERROR_BAD_EXE_FORMAT: x86 DLL in a 64-bit process
        "LOAD OK", "PROC Foo 0",  # ARM64EC marker (AMD64 + CHPE pointer + .reloc)
        "EXIT 0",  # our EXE runs; its entry stub returns 0
    ]
