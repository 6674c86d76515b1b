"""torchdll._pe: every ImageFacts field on synthetic images, Wine's real DLLs against pefile,
and hostile input that must end in InvalidImageError (or warnings), quickly."""

from __future__ import annotations

import os
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pefile
import pytest

from tests.support.tiers import unavailable
from torchdll import _pe
from torchdll._pebuild import ExportSpec, build_pe
from torchdll.errors import InvalidImageError
from torchdll.model import ImageFacts, Machine

WINE64 = Path("/usr/lib/x86_64-linux-gnu/wine/x86_64-windows")
WINE32 = Path("/usr/lib/x86_64-linux-gnu/wine/i386-windows")


def facts_of(tmp_path: Path, blob: bytes, name: str = "t.dll") -> ImageFacts:
    path = tmp_path / name
    path.write_bytes(blob)
    return _pe.read_facts(path, use_cache=False)


def reason_of(tmp_path: Path, blob: bytes, name: str = "bad.dll") -> str:
    path = tmp_path / name
    path.write_bytes(blob)
    with pytest.raises(InvalidImageError) as info:
        _pe.read_facts(path, use_cache=False)
    assert info.value.path == str(path)
    return info.value.reason


# --------------------------------------------------------------------------------------------
# Patching helpers (pefile locates structures of well-formed synthetic images)
# --------------------------------------------------------------------------------------------


class Layout:
    """Offsets of a synthetic image's structures, found with pefile's header parser."""

    def __init__(self, blob: bytes) -> None:
        self.pe = pefile.PE(data=bytes(blob), fast_load=True)

    def dir(self, index: int) -> Tuple[int, int, int]:
        """(RVA, Size, file offset of the data-directory entry)."""
        d = self.pe.OPTIONAL_HEADER.DATA_DIRECTORY[index]
        return d.VirtualAddress, d.Size, d.get_file_offset()

    def off(self, rva: int) -> int:
        return int(self.pe.get_offset_from_rva(rva))

    @property
    def e_lfanew(self) -> int:
        return int(self.pe.DOS_HEADER.e_lfanew)

    @property
    def opt(self) -> int:
        return int(self.pe.OPTIONAL_HEADER.get_file_offset())


def put(blob: bytearray, off: int, fmt: str, *values: int) -> None:
    struct.pack_into("<" + fmt, blob, off, *values)


def with_mapped_tail(blob: bytes, extra: int) -> Tuple[bytearray, int, int]:
    """Append ``extra`` bytes mapped into the last section; return (image, RVA, offset)."""
    lay = Layout(blob)
    last = max(lay.pe.sections, key=lambda s: s.VirtualAddress)
    out = bytearray(blob)
    start_off = last.PointerToRawData + last.SizeOfRawData
    start_rva = last.VirtualAddress + last.SizeOfRawData
    del out[start_off:]
    out += bytes(extra)
    new_raw = len(out) - last.PointerToRawData
    sec = last.get_file_offset()
    put(out, sec + 8, "I", new_raw)  # VirtualSize
    put(out, sec + 16, "I", new_raw)  # SizeOfRawData
    size_of_image = -(-(last.VirtualAddress + new_raw) // 0x1000) * 0x1000
    put(out, lay.opt + 56, "I", size_of_image)
    for i in (4,):  # a trailing certificate would now sit inside the section: drop it
        put(out, lay.dir(i)[2], "II", 0, 0)
    return out, start_rva, start_off


def set_dir(blob: bytearray, index: int, rva: int, size: int) -> None:
    put(blob, Layout(bytes(blob)).dir(index)[2], "II", rva, size)


RICH = [(0x0105, 30154, 12), (0x0104, 30034, 3), (0x0102, 30154, 1), (0x0101, 33135, 40),
        (0x0093, 30729, 2)]

FULL: Dict[str, Any] = {
    "name": "full.dll",
    "imports": {"KERNEL32.dll": ["LoadLibraryW", "GetProcAddress"], "WS2_32.dll": [115, "send", 23]},
    "delay_imports": {"late.dll": ["LateFn", 7], "later.dll": ["Other"]},
    "exports": ["alpha", "beta", ExportSpec("fwd", None, "NTDLL.RtlFoo"),
                ExportSpec(None, 20, "other.#3"), ExportSpec(None, 30), "gamma"],
    "ordinal_base": 5,
    "dependent_load_flags": 0x2000,
    "linker_version": (14, 29),
    "rich": RICH,
    "file_version": (1, 2, 3, 4),
    "product_version": (5, 6, 7, 8),
    "version_strings": {"FileVersion": "1.2.3.4", "ProductName": "Full", "CompanyName": "Us"},
    "signed": True,
}


@pytest.fixture(scope="module")
def full_blob() -> bytes:
    return build_pe(**FULL)


# --------------------------------------------------------------------------------------------
# Every field on a synthetic image
# --------------------------------------------------------------------------------------------


def test_full_image_every_field(tmp_path: Path, full_blob: bytes) -> None:
    f = facts_of(tmp_path, full_blob)
    st = os.stat(tmp_path / "t.dll")
    assert f.path == str(tmp_path / "t.dll")
    assert (f.size, f.mtime_ns) == (len(full_blob), st.st_mtime_ns)
    assert f.machine is Machine.AMD64 and f.is_dll
    lay = Layout(full_blob)
    assert f.characteristics == lay.pe.FILE_HEADER.Characteristics and f.characteristics & 0x2000
    assert f.dll_characteristics == lay.pe.OPTIONAL_HEADER.DllCharacteristics != 0
    assert f.subsystem == lay.pe.OPTIONAL_HEADER.Subsystem == 2
    assert f.linker_version == (14, 29)
    assert f.rich is not None
    assert f.rich.entries == tuple(RICH)
    # The import library (33135) and the VS2008 entry are not compiler/linker builds.
    assert f.rich.max_build == 30154 and f.rich.toolset == "14.29"
    assert f.dependent_load_flags == 0x2000
    assert f.signed is True
    assert [(m.dll, m.delay, m.names, m.ordinals) for m in f.imports] == [
        ("KERNEL32.dll", False, ("LoadLibraryW", "GetProcAddress"), ()),
        ("WS2_32.dll", False, ("send",), (115, 23)),
        ("late.dll", True, ("LateFn",), (7,)),
        ("later.dll", True, ("Other",), ()),
    ]
    assert [m.dll for m in f.static_imports] == ["KERNEL32.dll", "WS2_32.dll"]
    assert [m.dll for m in f.delay_imports] == ["late.dll", "later.dll"]
    ex = f.exports
    assert ex.dll_name == "full.dll" and ex.ordinal_base == 5
    assert dict(ex.names) == {"alpha": 5, "beta": 6, "fwd": 7, "gamma": 8}
    assert ex.ordinals == frozenset({5, 6, 7, 8, 20, 30})
    assert len(ex) == 6 and ex.has_ordinal(30) and not ex.has_ordinal(9)
    assert dict(ex.forwarders) == {"#7": "NTDLL.RtlFoo", "fwd": "NTDLL.RtlFoo", "#20": "other.#3"}
    assert ex.forwarder_of_name("fwd") == "NTDLL.RtlFoo" and ex.forwarder_of_ordinal(20) == "other.#3"
    assert ex.forwarder_of_name("alpha") is None and ex.forwarder_of_ordinal(30) is None
    assert f.version is not None
    assert f.version.file_version == (1, 2, 3, 4) and f.version.file_version_str == "1.2.3.4"
    assert f.version.product_version == (5, 6, 7, 8)
    assert dict(f.version.strings) == FULL["version_strings"]
    assert f.warnings == ()


def test_minimal_image_defaults(tmp_path: Path) -> None:
    f = facts_of(tmp_path, build_pe())
    assert f.rich is None and f.version is None and f.signed is False
    assert f.imports == () and len(f.exports) == 0 and dict(f.exports.names) == {}
    assert f.dependent_load_flags == 0 and f.warnings == ()


def test_exe_is_not_a_dll(tmp_path: Path) -> None:
    f = facts_of(tmp_path, build_pe(dll=False, name="app.exe", imports={"a.dll": ["f"]}))
    assert f.is_dll is False and not f.characteristics & 0x2000
    assert f.imports[0].dll == "a.dll"


@pytest.mark.parametrize(
    "machine, header",
    [
        (Machine.I386, Machine.I386),
        (Machine.AMD64, Machine.AMD64),
        (Machine.ARM64, Machine.ARM64),
        (Machine.ARMNT, Machine.ARMNT),
        (Machine.ARM64EC, Machine.AMD64),
        (Machine.ARM64X, Machine.ARM64),
    ],
)
def test_machine_and_hybrids(tmp_path: Path, machine: Machine, header: Machine) -> None:
    blob = build_pe(machine=machine, imports={"k.dll": ["f", 3]}, exports=["e"])
    path = tmp_path / "m.dll"
    path.write_bytes(blob)
    # read_machine reports the COFF header; only read_facts sees the CHPE metadata.
    assert _pe.read_machine(path) is header
    f = _pe.read_facts(path, use_cache=False)
    assert f.machine is machine
    assert f.imports[0].names == ("f",) and f.imports[0].ordinals == (3,)
    assert dict(f.exports.names) == {"e": 1} and f.warnings == ()


def test_x86_with_chpe_stays_x86_with_warning(tmp_path: Path) -> None:
    f = facts_of(tmp_path, build_pe(machine=Machine.I386, chpe_metadata=True))
    assert f.machine is Machine.I386
    assert any("CHPE" in w for w in f.warnings)


def test_unknown_machine_is_unknown_not_an_error(tmp_path: Path) -> None:
    blob = build_pe(machine=0x0200)  # IA-64: a valid PE no modelled process loads
    path = tmp_path / "ia64.dll"
    path.write_bytes(blob)
    assert _pe.read_machine(path) is Machine.UNKNOWN
    f = _pe.read_facts(path, use_cache=False)
    assert f.machine is Machine.UNKNOWN
    assert "unsupported machine 0x0200" in f.warnings


def test_rich_header_absent_or_without_tool_entries(tmp_path: Path) -> None:
    only_libs = facts_of(tmp_path, build_pe(rich=[(0x0101, 33135, 4), (0x0093, 30729, 1)]))
    assert only_libs.rich is not None and only_libs.rich.entries == ((0x101, 33135, 4), (0x93, 30729, 1))
    assert only_libs.rich.max_build == 0 and only_libs.rich.toolset is None
    newest = facts_of(tmp_path, build_pe(rich=[(0x0102, 35207, 1), (0x0105, 34433, 9)]))
    assert newest.rich is not None and newest.rich.max_build == 35207
    assert newest.rich.toolset == "14.44"


@pytest.mark.parametrize(
    "build, toolset",
    [(30133, "14.29"), (30154, "14.29"), (30034, "14.29"), (33808, "14.40"), (34433, "14.42"),
     (34438, "14.42"), (34808, "14.43"), (35207, "14.44"), (24215, "14.0"), (27054, "14.16"),
     (0, None), (9000, None), (60000, None)],
)
def test_toolset_table(build: int, toolset: Optional[str]) -> None:
    assert _pe.toolset_for_build(build) == toolset


def test_toolset_table_is_contiguous_and_has_provenance() -> None:
    import json

    doc = json.loads((Path(_pe.__file__).parent / "data" / "msvc_toolsets.json").read_text())
    assert "Visual Studio" in doc["_provenance"]
    rows = doc["toolsets"]
    for a, b in zip(rows, rows[1:]):
        assert a["last_build"] + 1 == b["first_build"]
    for r in rows:
        assert r["first_build"] <= r["ga_build"] <= r["last_build"]


def test_dependent_load_flags_needs_the_size_to_cover_the_field(tmp_path: Path) -> None:
    blob = bytearray(build_pe(dependent_load_flags=0x0800))
    assert facts_of(tmp_path, bytes(blob)).dependent_load_flags == 0x0800
    lay = Layout(bytes(blob))
    rva, _size, _entry = lay.dir(10)
    put(blob, lay.off(rva), "I", 0x4E)  # Size ends right before DependentLoadFlags (PE32+)
    assert facts_of(tmp_path, bytes(blob)).dependent_load_flags == 0
    put(blob, lay.off(rva), "I", 0x50)
    assert facts_of(tmp_path, bytes(blob)).dependent_load_flags == 0x0800


def test_dependent_load_flags_pe32(tmp_path: Path) -> None:
    f = facts_of(tmp_path, build_pe(machine=Machine.I386, dependent_load_flags=0x0A00))
    assert f.machine is Machine.I386 and f.dependent_load_flags == 0x0A00


def test_chpe_pointer_ignored_when_size_does_not_cover_it(tmp_path: Path) -> None:
    blob = bytearray(build_pe(machine=Machine.ARM64EC))
    lay = Layout(bytes(blob))
    rva, _size, _entry = lay.dir(10)
    put(blob, lay.off(rva), "I", 0xC8)  # ends before CHPEMetadataPointer
    assert facts_of(tmp_path, bytes(blob)).machine is Machine.AMD64


def test_signature_outside_the_file_is_not_signed(tmp_path: Path) -> None:
    blob = bytearray(build_pe(signed=True))
    assert facts_of(tmp_path, bytes(blob)).signed
    lay = Layout(bytes(blob))
    off, size, entry = lay.dir(4)
    put(blob, entry, "II", off, size + 16)  # now ends past the file
    f = facts_of(tmp_path, bytes(blob))
    assert f.signed is False
    assert any("security directory" in w for w in f.warnings)
    put(blob, entry, "II", 0, 0)
    assert facts_of(tmp_path, bytes(blob)).signed is False


def test_truncated_certificate_only_unsigns(tmp_path: Path) -> None:
    blob = build_pe(signed=True)
    f = facts_of(tmp_path, blob[:-1])
    assert f.signed is False and f.exports is not None


def test_delay_descriptor_with_virtual_addresses(tmp_path: Path) -> None:
    """VC6-style delay descriptors (Attributes bit 0 clear) hold VAs, also in the name table."""
    # The descriptor fields are 32 bits wide, so VA-based descriptors only exist in PE32.
    blob = bytearray(build_pe(machine=Machine.I386, delay_imports={"old.dll": ["Fn", 9, "Gn"]}))
    lay = Layout(bytes(blob))
    base = lay.pe.OPTIONAL_HEADER.ImageBase
    rva, _size, _entry = lay.dir(13)
    d = lay.off(rva)
    attrs, name, hmod, iat, int_rva = struct.unpack_from("<5I", blob, d)
    put(blob, d, "5I", attrs & ~1, name + base, hmod + base, iat + base, int_rva + base)
    t = lay.off(int_rva)
    while True:
        (value,) = struct.unpack_from("<I", blob, t)
        if value == 0:
            break
        if not value & 0x80000000:
            put(blob, t, "I", value + base)
        t += 4
    f = facts_of(tmp_path, bytes(blob))
    assert [(m.dll, m.delay, m.names, m.ordinals) for m in f.imports] == [
        ("old.dll", True, ("Fn", "Gn"), (9,))
    ]


def test_import_list_ends_at_a_descriptor_without_iat(tmp_path: Path) -> None:
    """Like the loader (ReactOS LdrpWalkImportDescriptor): Name == 0 or FirstThunk == 0 ends it."""
    blob = bytearray(build_pe(imports={"a.dll": ["f"], "b.dll": ["g"], "c.dll": ["h"]}))
    lay = Layout(bytes(blob))
    d = lay.off(lay.dir(1)[0])
    assert [m.dll for m in facts_of(tmp_path, bytes(blob)).imports] == ["a.dll", "b.dll", "c.dll"]
    put(blob, d + 20 + 16, "I", 0)  # b.dll's FirstThunk
    assert [m.dll for m in facts_of(tmp_path, bytes(blob)).imports] == ["a.dll"]


def test_more_than_8192_exports_and_imports_are_complete(tmp_path: Path) -> None:
    names = [f"fn_{i:05d}" for i in range(9000)]
    blob = build_pe(exports=names, imports={"big.dll": names})
    f = facts_of(tmp_path, blob)
    assert len(f.exports.names) == 9000 and len(f.exports) == 9000
    assert f.exports.names["fn_08999"] == 9000
    assert f.imports[0].names == tuple(names)


def test_noname_and_sparse_ordinals(tmp_path: Path) -> None:
    blob = build_pe(exports=[ExportSpec(None, 100), ExportSpec("x", 103), ExportSpec(None, 65535)],
                    ordinal_base=100)
    f = facts_of(tmp_path, blob)
    assert f.exports.ordinals == frozenset({100, 103, 65535})
    assert dict(f.exports.names) == {"x": 103}
    assert not f.exports.has_ordinal(101)


def test_names_mapping_is_lazy_and_complete(tmp_path: Path) -> None:
    f = facts_of(tmp_path, build_pe(exports=["b", "a", "c"]))
    names = f.exports.names
    assert "not loaded" in repr(names)
    assert names["a"] == 2 and "zz" not in names and sorted(names) == ["a", "b", "c"]
    assert len(names) == 3 and "loaded" in repr(names)
    import pickle

    assert pickle.loads(pickle.dumps(names)) == {"b": 1, "a": 2, "c": 3}


def test_facts_equal_between_file_and_buffer(tmp_path: Path, full_blob: bytes) -> None:
    f = facts_of(tmp_path, full_blob)
    payload = _pe.parse_buffer("x", full_blob, len(full_blob))
    g = _pe.facts_from_payload(f.path, f.size, f.mtime_ns, payload)
    assert f == g


def test_reads_are_not_a_full_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pefile is not needed at all on the read path."""
    import builtins

    real_import = builtins.__import__

    def guarded(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pefile":
            raise AssertionError("pefile imported by _pe")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded)
    f = facts_of(tmp_path, build_pe(exports=["a"]))
    assert dict(f.exports.names) == {"a": 1}


# --------------------------------------------------------------------------------------------
# Wine's real DLLs, cross-checked against a full pefile parse with every cap lifted
# --------------------------------------------------------------------------------------------


def pefile_oracle(path: Path) -> Dict[str, Any]:
    """Exports, imports and version info by pefile, with its module-global caps lifted."""
    caps = ("MAX_IMPORT_SYMBOLS", "MAX_IMPORT_NAME_LENGTH", "MAX_SYMBOL_NAME_LENGTH", "MAX_DLL_LENGTH")
    saved = {k: getattr(pefile, k) for k in caps}
    try:
        for k in caps:
            setattr(pefile, k, 1 << 30)
        pe = pefile.PE(str(path), max_symbol_exports=1 << 20)  # full parse
    finally:
        for k, v in saved.items():
            setattr(pefile, k, v)
    try:
        names: Dict[str, int] = {}
        ordinals = set()
        fwd: Dict[str, str] = {}
        exp = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
        for s in exp.symbols if exp else ():
            if s.name is not None:
                names[s.name.decode()] = s.ordinal
            if s.address:
                ordinals.add(s.ordinal)
            if s.forwarder:
                fwd[f"#{s.ordinal}"] = s.forwarder.decode()
                if s.name:
                    fwd[s.name.decode()] = s.forwarder.decode()
        imports = []
        for attr, delay in (("DIRECTORY_ENTRY_IMPORT", False), ("DIRECTORY_ENTRY_DELAY_IMPORT", True)):
            for e in getattr(pe, attr, []):
                imports.append((
                    e.dll.decode(), delay,
                    tuple(i.name.decode() for i in e.imports if not i.import_by_ordinal),
                    tuple(i.ordinal for i in e.imports if i.import_by_ordinal),
                ))
        fv = None
        if hasattr(pe, "VS_FIXEDFILEINFO"):
            v = pe.VS_FIXEDFILEINFO[0]
            fv = (v.FileVersionMS >> 16, v.FileVersionMS & 0xFFFF, v.FileVersionLS >> 16,
                  v.FileVersionLS & 0xFFFF)
        return {
            "machine": pe.FILE_HEADER.Machine, "names": names, "ordinals": ordinals, "fwd": fwd,
            "imports": imports, "fv": fv, "linker": (pe.OPTIONAL_HEADER.MajorLinkerVersion,
                                                     pe.OPTIONAL_HEADER.MinorLinkerVersion),
            "subsystem": pe.OPTIONAL_HEADER.Subsystem,
            "dllchars": pe.OPTIONAL_HEADER.DllCharacteristics,
        }
    finally:
        pe.close()


def wine_dll(name: str, folder: Path = WINE64) -> Path:
    path = folder / name
    if not path.is_file():
        unavailable(f"Wine PE DLL {path} not installed (apt install wine64)")
    return path


@pytest.mark.parametrize("name", ["kernel32.dll", "ucrtbase.dll", "sfc.dll", "msvcp140.dll", "ws2_32.dll"])
def test_wine_dll_matches_full_pefile_parse(name: str) -> None:
    path = wine_dll(name)
    f = _pe.read_facts(path, use_cache=False)
    o = pefile_oracle(path)
    assert int(f.machine) == o["machine"] == Machine.AMD64
    assert dict(f.exports.names) == o["names"]
    assert set(f.exports.ordinals) == o["ordinals"]
    assert dict(f.exports.forwarders) == o["fwd"]
    assert [(m.dll, m.delay, m.names, m.ordinals) for m in f.imports] == o["imports"]
    assert (f.version.file_version if f.version else None) == o["fv"]
    assert f.linker_version == o["linker"]
    assert (f.subsystem, f.dll_characteristics) == (o["subsystem"], o["dllchars"])
    assert f.warnings == ()


def test_wine_kernel32_forwarders() -> None:
    f = _pe.read_facts(wine_dll("kernel32.dll"), use_cache=False)
    fwd = f.exports.forwarders
    assert fwd["HeapAlloc"] == "NTDLL.RtlAllocateHeap"
    assert fwd[f"#{f.exports.names['HeapAlloc']}"] == "NTDLL.RtlAllocateHeap"
    targets = {v.split(".", 1)[0].lower() for v in fwd.values()}
    assert {"ntdll", "kernelbase"} <= targets
    assert "GetProcAddress" in f.exports.names and "GetProcAddress" not in fwd
    assert {m.dll.lower() for m in f.imports} >= {"kernelbase.dll", "ntdll.dll"}
    assert f.version is not None and f.version.strings.get("OriginalFilename") == "kernel32.dll"
    # Wine ships several languages: the neutral/en-US table wins, not the first in the file.
    assert f.version.strings.get("ProductName") == "Wine"


def test_wine_ucrtbase_exports() -> None:
    f = _pe.read_facts(wine_dll("ucrtbase.dll"), use_cache=False)
    for name in ("malloc", "free", "_initterm", "__stdio_common_vfprintf"):
        assert name in f.exports.names
    assert len(f.exports) > 2000
    assert f.exports.forwarders["__C_specific_handler"] == "ntdll.__C_specific_handler"


def test_wine_x86_vs_x64() -> None:
    x64 = wine_dll("kernel32.dll")
    candidates = sorted(WINE32.glob("*.dll")) if WINE32.is_dir() else []
    if not candidates:
        unavailable(f"no i386 Wine PE DLL in {WINE32}")
    x86 = candidates[0]
    assert _pe.read_machine(x64) is Machine.AMD64
    assert _pe.read_machine(x86) is Machine.I386
    f = _pe.read_facts(x86, use_cache=False)
    o = pefile_oracle(x86)
    assert f.machine is Machine.I386 and o["machine"] == Machine.I386
    assert dict(f.exports.names) == o["names"]
    assert [(m.dll, m.delay, m.names, m.ordinals) for m in f.imports] == o["imports"]


# --------------------------------------------------------------------------------------------
# Hostile input: one exception type, useful reasons, no hangs
# --------------------------------------------------------------------------------------------


def test_zero_byte_file(tmp_path: Path) -> None:
    assert reason_of(tmp_path, b"") == "empty file"
    path = tmp_path / "bad.dll"
    with pytest.raises(InvalidImageError, match="empty file"):
        _pe.read_machine(path)


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"<!DOCTYPE html><html><body>404 Not Found</body></html>" * 4, "HTML"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n", "Git LFS"),
        (b"\x7fELF" + bytes(200), "ELF"),
        (b"PK\x03\x04" + bytes(200), "ZIP"),
        (b"hello, I am text" * 10, "no MZ"),
        (b"MZ" + bytes(10), "too small"),
    ],
)
def test_not_a_pe(tmp_path: Path, content: bytes, needle: str) -> None:
    assert needle in reason_of(tmp_path, content)
    with pytest.raises(InvalidImageError, match=needle):
        _pe.read_machine(tmp_path / "bad.dll")


def test_truncated_everywhere(tmp_path: Path) -> None:
    blob = build_pe(exports=["a", "b"], imports={"k.dll": ["f"]}, file_version=(1, 0, 0, 0))
    lay = Layout(blob)
    cuts = sorted({1, 63, 64, lay.e_lfanew + 2, lay.e_lfanew + 23, lay.e_lfanew + 26,
                   lay.opt + 50, lay.opt + 200, len(blob) // 2, len(blob) - 1})
    for cut in cuts:
        reason = reason_of(tmp_path, blob[:cut])
        assert reason, cut
    assert "truncated" in reason_of(tmp_path, blob[: len(blob) - 1])


def test_bad_e_lfanew(tmp_path: Path) -> None:
    blob = bytearray(build_pe())
    put(blob, 0x3C, "I", 0xFFFFFFF0)
    assert "e_lfanew" in reason_of(tmp_path, bytes(blob))
    with pytest.raises(InvalidImageError, match="e_lfanew"):
        _pe.read_machine(tmp_path / "bad.dll")


def test_ne_and_missing_pe_signature(tmp_path: Path) -> None:
    blob = bytearray(build_pe())
    e = Layout(bytes(blob)).e_lfanew
    blob[e : e + 4] = b"NE\0\0"
    assert "16-bit" in reason_of(tmp_path, bytes(blob))
    blob[e : e + 4] = b"XX\0\0"
    assert "no PE signature" in reason_of(tmp_path, bytes(blob))


def test_unknown_optional_header_magic(tmp_path: Path) -> None:
    blob = bytearray(build_pe())
    put(blob, Layout(bytes(blob)).opt, "H", 0x107)
    assert "magic" in reason_of(tmp_path, bytes(blob))
    with pytest.raises(InvalidImageError, match="magic"):
        _pe.read_machine(tmp_path / "bad.dll")


def test_section_table_past_the_end(tmp_path: Path) -> None:
    blob = bytearray(build_pe())
    put(blob, Layout(bytes(blob)).e_lfanew + 6, "H", 0xFFFF)
    assert "section table" in reason_of(tmp_path, bytes(blob))


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.dll").mkdir()
    for fn in (_pe.read_facts, _pe.read_machine):
        with pytest.raises(InvalidImageError) as info:
            fn(tmp_path / "dir.dll")
        assert info.value.reason == "is a directory"


def test_missing_and_path_through_a_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match="no such file"):
        _pe.read_facts(tmp_path / "nope.dll")
    (tmp_path / "file.dll").write_bytes(build_pe())
    with pytest.raises(InvalidImageError, match="not a directory"):
        _pe.read_facts(tmp_path / "file.dll" / "inner.dll")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
def test_fifo_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.dll"
    os.mkfifo(fifo)
    for fn in (_pe.read_facts, _pe.read_machine):
        with pytest.raises(InvalidImageError, match="not a regular file"):
            fn(fifo)


def test_socket_is_not_a_file(tmp_path: Path) -> None:
    if not hasattr(socket, "AF_UNIX"):
        pytest.skip("no AF_UNIX sockets")
    path = tmp_path / "s.dll"
    sock = socket.socket(socket.AF_UNIX)
    try:
        try:
            sock.bind(str(path))
        except OSError as exc:
            pytest.skip(f"cannot bind a unix socket here: {exc}")
        with pytest.raises(InvalidImageError):
            _pe.read_facts(path, use_cache=False)
    finally:
        sock.close()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_unreadable_file(tmp_path: Path) -> None:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root from reading")
    path = tmp_path / "locked.dll"
    path.write_bytes(build_pe())
    path.chmod(0)
    try:
        with pytest.raises(InvalidImageError, match="permission denied"):
            _pe.read_facts(path, use_cache=False)
        with pytest.raises(InvalidImageError, match="permission denied"):
            _pe.read_machine(path)
    finally:
        path.chmod(0o644)


def test_reason_is_in_the_message(tmp_path: Path) -> None:
    path = tmp_path / "x.dll"
    path.write_bytes(b"")
    with pytest.raises(InvalidImageError) as info:
        _pe.read_facts(path, use_cache=False)
    assert str(info.value) == f"{path}: not a readable PE image: empty file"
    assert isinstance(info.value, ValueError)


# -- structures pointing anywhere -----------------------------------------------------------


@pytest.fixture
def timed() -> Iterator[None]:
    # A hang guard, not a speed goal (benchmarks/ measures speed): a walk that loops or goes
    # quadratic on hostile input takes minutes; the bound is far above any normal run.
    start = time.perf_counter()
    yield
    assert time.perf_counter() - start < 60.0


def test_directories_outside_the_image(tmp_path: Path, full_blob: bytes, timed: None) -> None:
    blob = bytearray(full_blob)
    for index in (0, 1, 2, 10, 13):
        set_dir(blob, index, 0x7FFF0000, 0x100)
    f = facts_of(tmp_path, bytes(blob))
    assert f.imports == () and len(f.exports) == 0 and f.version is None
    assert f.dependent_load_flags == 0
    assert any("outside the image" in w for w in f.warnings)


def test_absurd_export_counts(tmp_path: Path, timed: None) -> None:
    blob = bytearray(build_pe(exports=["a", "b", "c"]))
    lay = Layout(bytes(blob))
    d = lay.off(lay.dir(0)[0])
    put(blob, d + 20, "II", 0xFFFFFFFF, 0xFFFFFFFF)  # NumberOfFunctions, NumberOfNames
    f = facts_of(tmp_path, bytes(blob))
    assert any("NumberOfFunctions" in w for w in f.warnings)
    assert any("NumberOfNames" in w for w in f.warnings)
    assert {"a", "b", "c"} <= set(f.exports.names)
    assert len(f.exports) <= 0x10000


def test_export_name_ordinals_past_the_table(tmp_path: Path) -> None:
    blob = bytearray(build_pe(exports=["a", "b"]))
    lay = Layout(bytes(blob))
    d = lay.off(lay.dir(0)[0])
    ords_rva = struct.unpack_from("<I", blob, d + 36)[0]
    put(blob, lay.off(ords_rva) + 2, "H", 500)  # "b" now names function index 500
    f = facts_of(tmp_path, bytes(blob))
    assert dict(f.exports.names) == {"a": 1}
    assert any("past the export address table" in w for w in f.warnings)


def test_endless_import_descriptor_chain(tmp_path: Path, timed: None) -> None:
    blob, rva, off = with_mapped_tail(build_pe(), 0x30000)
    # name "x.dll" and a one-entry name table, then 6000 identical descriptors, never a zero one
    blob[off : off + 6] = b"x.dll\0"
    put(blob, off + 0x10, "QQ", rva + 0x20, 0)
    blob[off + 0x22 : off + 0x25] = b"fn\0"
    first = off + 0x40
    count = (len(blob) - first) // 20
    for i in range(count):
        put(blob, first + 20 * i, "5I", rva + 0x10, 0, 0, rva, rva + 0x10)
    set_dir(blob, 1, rva + 0x40, 20)
    f = facts_of(tmp_path, bytes(blob))
    assert len(f.imports) == _pe.MAX_DESCRIPTORS
    assert f.imports[0] == f.imports[-1] and f.imports[0].names == ("fn",)
    assert any("import descriptors" in w for w in f.warnings)


def test_endless_thunk_table(tmp_path: Path, timed: None) -> None:
    blob, rva, off = with_mapped_tail(build_pe(), 8 * 0x10100 + 0x100)
    blob[off : off + 6] = b"x.dll\0"
    blob[off + 0x12 : off + 0x15] = b"fn\0"
    put(blob, off + 0x20, "5I", rva + 0x80, 0, 0, rva, rva + 0x80)
    put(blob, off + 0x34, "5I", 0, 0, 0, 0, 0)
    table = off + 0x80
    for i in range((len(blob) - table) // 8):
        put(blob, table + 8 * i, "Q", rva + 0x10)
    set_dir(blob, 1, rva + 0x20, 40)
    f = facts_of(tmp_path, bytes(blob))
    assert len(f.imports) == 1 and len(f.imports[0].names) == _pe.MAX_THUNKS
    assert any("thunks" in w for w in f.warnings)


def test_names_without_nul(tmp_path: Path, timed: None) -> None:
    blob, rva, off = with_mapped_tail(build_pe(exports=["a"]), 0x3000)
    blob[off : off + 0x3000] = b"A" * 0x3000  # no NUL anywhere in the tail
    lay = Layout(bytes(blob))
    d = lay.off(lay.dir(0)[0])
    names_rva = struct.unpack_from("<I", blob, d + 32)[0]
    put(blob, lay.off(names_rva), "I", rva)
    put(blob, d + 12, "I", rva + 0x10)  # the DLL name too
    f = facts_of(tmp_path, bytes(blob))
    (name,) = f.exports.names
    assert name == "A" * _pe.MAX_NAME
    assert f.exports.dll_name == "A" * _pe.MAX_NAME
    assert any("longer than" in w for w in f.warnings)


def test_string_budget_stops_memory_blowup(tmp_path: Path, timed: None) -> None:
    """200,000 export names all pointing at one 4 KB string: ~800 MB if materialised."""
    n = 200_000
    blob, rva, off = with_mapped_tail(build_pe(exports=["a"]), 0x2000 + 6 * n)
    blob[off : off + 4000] = b"B" * 4000
    names_rva, ords_rva = rva + 0x2000, rva + 0x2000 + 4 * n
    struct.pack_into(f"<{n}I", blob, off + 0x2000, *([rva] * n))
    lay = Layout(bytes(blob))
    d = lay.off(lay.dir(0)[0])
    put(blob, d + 24, "III", n, 0, 0)
    put(blob, d + 32, "II", names_rva, ords_rva)
    path = tmp_path / "budget.dll"
    path.write_bytes(bytes(blob))
    with pytest.raises(InvalidImageError, match="name tables larger"):
        _pe.read_facts(path, use_cache=False)


def test_resource_directory_loop(tmp_path: Path, timed: None) -> None:
    blob, rva, off = with_mapped_tail(build_pe(), 0x100)
    # a root directory with one RT_VERSION entry whose subdirectory is the root itself
    put(blob, off, "IIHHHH", 0, 0, 0, 0, 0, 1)
    put(blob, off + 16, "II", 16, 0x80000000)
    set_dir(blob, 2, rva, 0x100)
    f = facts_of(tmp_path, bytes(blob))
    assert f.version is None
    assert any("RT_VERSION" in w for w in f.warnings)


def version_blob(file_version: Tuple[int, int, int, int]) -> bytes:
    """The raw VS_VERSIONINFO bytes _pebuild writes for ``file_version``."""
    pe = pefile.PE(data=build_pe(file_version=file_version), fast_load=True)
    pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_RESOURCE"]])
    (vtype,) = [t for t in pe.DIRECTORY_ENTRY_RESOURCE.entries if t.id == 16]
    leaf = vtype.directory.entries[0].directory.entries[0].data.struct
    return bytes(pe.get_data(leaf.OffsetToData, leaf.Size))


@pytest.mark.parametrize(
    "langs, expected",
    [
        ([0x401, 0x409, 0x40C], 0x409),  # en-US beats the first entry
        ([0x401, 0x000, 0x409], 0x000),  # neutral beats en-US
        ([0x401, 0x40C], 0x401),  # otherwise the first
    ],
)
def test_version_language_choice(tmp_path: Path, langs: List[int], expected: int) -> None:
    blobs = {lang: version_blob((lang, 1, 2, 3)) for lang in langs}
    image, rva, off = with_mapped_tail(build_pe(), 0x2000)

    def directory(at: int, entries: List[Tuple[int, int]]) -> None:
        put(image, off + at, "IIHHHH", 0, 0, 0, 0, 0, len(entries))
        for i, (ident, target) in enumerate(entries):
            put(image, off + at + 16 + 8 * i, "II", ident, target)

    directory(0x000, [(16, 0x80000000 | 0x100)])
    directory(0x100, [(1, 0x80000000 | 0x200)])
    directory(0x200, [(lang, 0x300 + 16 * i) for i, lang in enumerate(langs)])
    data = 0x800
    for i, lang in enumerate(langs):
        image[off + data : off + data + len(blobs[lang])] = blobs[lang]
        put(image, off + 0x300 + 16 * i, "IIII", rva + data, len(blobs[lang]), 0, 0)
        data += (len(blobs[lang]) + 15) & ~15
    set_dir(image, 2, rva, 0x2000)
    f = facts_of(tmp_path, bytes(image))
    assert f.version is not None and f.version.file_version == (expected, 1, 2, 3)


def test_export_directory_straddling_the_end_of_the_mapped_image(tmp_path: Path) -> None:
    blob = bytearray(build_pe(exports=["a"]))
    lay = Layout(bytes(blob))
    size_of_image = lay.pe.OPTIONAL_HEADER.SizeOfImage
    set_dir(blob, 0, size_of_image - 8, 40)
    f = facts_of(tmp_path, bytes(blob))
    assert len(f.exports) == 0


def test_many_distinct_bad_names_stay_linear(tmp_path: Path, timed: None) -> None:
    """200,000 names, each pointing somewhere else outside the image: capped warnings, fast."""
    n = 200_000
    blob, rva, off = with_mapped_tail(build_pe(exports=["a"]), 6 * n)
    struct.pack_into(f"<{n}I", blob, off, *range(0x70000000, 0x70000000 + 16 * n, 16))
    lay = Layout(bytes(blob))
    d = lay.off(lay.dir(0)[0])
    put(blob, d + 24, "I", n)
    put(blob, d + 32, "II", rva, rva + 4 * n)
    start = time.perf_counter()
    f = facts_of(tmp_path, bytes(blob))
    assert time.perf_counter() - start < 60.0  # hang guard: the quadratic bug took minutes
    assert len(f.warnings) == _pe.MAX_WARNINGS and f.warnings[-1].startswith("... and ")
    assert dict(f.exports.names) == {}


def test_warnings_are_capped(tmp_path: Path) -> None:
    blob, rva, off = with_mapped_tail(build_pe(), 0x2000)
    # 200 descriptors whose DLL names lie outside the image: one warning each
    for i in range(200):
        put(blob, off + 20 * i, "5I", 0, 0, 0, 0x7F000000 + 16 * i, rva + 0x1F00)
    set_dir(blob, 1, rva, 20)
    f = facts_of(tmp_path, bytes(blob))
    assert len(f.warnings) == _pe.MAX_WARNINGS
    assert f.warnings[-1].startswith("... and ")


def test_permission_denied_is_a_typed_error_even_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # chmod 000 does not stop root (CI runs as root), so make the open itself fail.
    import builtins

    path = tmp_path / "locked.dll"
    path.write_bytes(build_pe())
    real_open = builtins.open

    def deny(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if os.fspath(file) == os.fspath(path):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    monkeypatch.setattr(os, "open", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    with pytest.raises(InvalidImageError, match="(?i)permission"):
        _pe.read_facts(path, use_cache=False)
    with pytest.raises(InvalidImageError, match="(?i)permission"):
        _pe.read_machine(path)
