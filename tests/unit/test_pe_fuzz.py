"""Property tests: mutated real PE bytes give ImageFacts or InvalidImageError, nothing else,
quickly and in bounded memory."""

from __future__ import annotations

import os
import struct
import tempfile
import tracemalloc
from pathlib import Path
from typing import Dict, List, Tuple

import pefile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.tiers import unavailable
from torchdll import _pe
from torchdll._pebuild import ExportSpec, build_pe
from torchdll.errors import InvalidImageError
from torchdll.model import ImageFacts, Machine

WINE_SMALL = Path("/usr/lib/x86_64-linux-gnu/wine/x86_64-windows/sfc.dll")

#: Peak traced allocation allowed for one parse of a (small) fuzzed image.
MEMORY_LIMIT = 64 << 20

FUZZ = settings(
    max_examples=150,
    deadline=2000,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Field = Tuple[int, int]  # (file offset, width in bytes)


def interesting_fields(blob: bytes) -> List[Field]:
    """Offsets of header and directory fields worth setting to extreme values."""
    pe = pefile.PE(data=blob, fast_load=True)
    e = pe.DOS_HEADER.e_lfanew
    opt = pe.OPTIONAL_HEADER.get_file_offset()
    plus = pe.OPTIONAL_HEADER.Magic == 0x20B
    fields: List[Field] = [(0x3C, 4), (e + 4, 2), (e + 6, 2), (e + 20, 2), (e + 22, 2), (opt, 2)]
    fields += [(opt + o, 4) for o in (32, 36, 56, 60)]  # alignments, SizeOfImage/Headers
    fields.append((opt + (108 if plus else 92), 4))  # NumberOfRvaAndSizes
    for d in pe.OPTIONAL_HEADER.DATA_DIRECTORY:
        fields += [(d.get_file_offset(), 4), (d.get_file_offset() + 4, 4)]
    for s in pe.sections:
        fields += [(s.get_file_offset() + o, 4) for o in (8, 12, 16, 20)]

    def at(index: int) -> int:
        d = pe.OPTIONAL_HEADER.DATA_DIRECTORY[index]
        return int(pe.get_offset_from_rva(d.VirtualAddress)) if d.VirtualAddress else -1

    exp = at(0)
    if exp >= 0:
        fields += [(exp + o, 4) for o in (12, 16, 20, 24, 28, 32, 36)]
    imp = at(1)
    if imp >= 0:
        fields += [(imp + o, 4) for o in (0, 12, 16, 20, 32, 36)]
    for index, offsets in ((13, (0, 4, 12, 16, 32, 36)), (10, (0,)), (2, (12, 14, 20))):
        start = at(index)
        if start >= 0:
            fields += [(start + o, 4 if o not in (12, 14) else 2) for o in offsets]
    return [(o, w) for o, w in fields if 0 <= o and o + w <= len(blob)]


def _bases() -> Dict[str, bytes]:
    out = {
        "synthetic64": build_pe(
            name="s64.dll",
            imports={"KERNEL32.dll": ["LoadLibraryW", "GetProcAddress", 7]},
            delay_imports={"late.dll": ["Late", 3]},
            exports=["alpha", "beta", ExportSpec("fw", None, "NTDLL.RtlFoo"), ExportSpec(None, 9)],
            dependent_load_flags=0x2000,
            rich=[(0x105, 30154, 3), (0x102, 30154, 1)],
            file_version=(1, 2, 3, 4),
            version_strings={"FileVersion": "1.2.3.4"},
            signed=True,
        ),
        "synthetic32": build_pe(
            machine=Machine.I386,
            name="s32.dll",
            imports={"a.dll": ["x", 2]},
            delay_imports={"b.dll": ["y"]},
            exports=[f"n{i}" for i in range(40)],
            file_version=(9, 8, 7, 6),
        ),
        "arm64x": build_pe(machine=Machine.ARM64X, exports=["e"], imports={"k.dll": ["f"]}),
        # big enough that anything quadratic in the table sizes blows the deadline
        "many-exports": build_pe(
            exports=[f"?fn{i}@@YAXXZ" for i in range(3000)],
            imports={"c10.dll": [f"?imp{i}@@YAXXZ" for i in range(3000)]},
        ),
    }
    if WINE_SMALL.is_file():
        out["wine-sfc"] = WINE_SMALL.read_bytes()
    return out


BASES = _bases()
FIELDS = {name: interesting_fields(blob) for name, blob in BASES.items()}
EXTREMES = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
            0x80000000, 0xFFFFFFF0, 0xFFFFFFFF]


def check(blob: bytes) -> None:
    """The property: ImageFacts (fully usable) or InvalidImageError, in bounded memory."""
    tracemalloc.start()
    try:
        try:
            payload = _pe.parse_buffer("fuzz.dll", blob, len(blob))
        except InvalidImageError as exc:
            assert exc.reason and exc.path == "fuzz.dll"
            return
        facts = _pe.facts_from_payload("fuzz.dll", len(blob), 0, payload)
        assert isinstance(facts, ImageFacts)
        # Touch everything, including the lazily built name mapping.
        assert len(facts.exports.names) <= 0x40000
        for name, ordinal in facts.exports.names.items():
            assert "\0" not in name and isinstance(ordinal, int)
        assert len(facts.exports.ordinals) <= 0x10000
        for key, target in facts.exports.forwarders.items():
            assert isinstance(key, str) and isinstance(target, str)
        for module in facts.imports:
            assert len(module.names) + len(module.ordinals) <= _pe.MAX_THUNKS
            assert all(len(n) <= _pe.MAX_NAME for n in module.names)
        if facts.version is not None:
            assert all(isinstance(v, str) for v in facts.version.strings.values())
        assert len(facts.warnings) <= _pe.MAX_WARNINGS
        assert isinstance(facts.machine, Machine)
    finally:
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < MEMORY_LIMIT, f"peak traced memory {peak} bytes"


base_names = st.sampled_from(sorted(BASES))


def test_bases_parse_cleanly() -> None:
    for name, blob in BASES.items():
        payload = _pe.parse_buffer(name, blob, len(blob))
        facts = _pe.facts_from_payload(name, len(blob), 0, payload)
        assert facts.warnings == (), name
        assert len(facts.exports) > 0, name
        assert FIELDS[name], name


@FUZZ
@given(base=base_names, data=st.data())
def test_byte_overwrites(base: str, data: st.DataObject) -> None:
    blob = bytearray(BASES[base])
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(0, 255)),
                               min_size=1, max_size=32))
    for pos, value in edits:
        blob[pos] = value
    check(bytes(blob))


@FUZZ
@given(base=base_names, data=st.data())
def test_header_region_bit_flips(base: str, data: st.DataObject) -> None:
    """Flips concentrated in the first 4 KB, where every structure starts."""
    blob = bytearray(BASES[base])
    limit = min(len(blob), 0x1000)
    flips = data.draw(st.lists(st.tuples(st.integers(0, limit - 1), st.integers(0, 7)),
                               min_size=1, max_size=8))
    for pos, bit in flips:
        blob[pos] ^= 1 << bit
    check(bytes(blob))


@FUZZ
@given(base=base_names, data=st.data())
def test_truncation(base: str, data: st.DataObject) -> None:
    blob = BASES[base]
    cut = data.draw(st.integers(0, len(blob)))
    check(blob[:cut])


@FUZZ
@given(base=base_names, data=st.data())
def test_extreme_field_values(base: str, data: st.DataObject) -> None:
    blob = bytearray(BASES[base])
    fields = FIELDS[base]
    picks = data.draw(st.lists(st.tuples(st.sampled_from(fields),
                                         st.one_of(st.sampled_from(EXTREMES + [len(blob), len(blob) - 1]),
                                                   st.integers(0, 0xFFFFFFFF))),
                               min_size=1, max_size=6))
    for (offset, width), value in picks:
        struct.pack_into("<H" if width == 2 else "<I", blob, offset, value & ((1 << (8 * width)) - 1))
    check(bytes(blob))


@settings(FUZZ, max_examples=60)
@given(base=base_names, data=st.data())
def test_files_on_disk(base: str, data: st.DataObject) -> None:
    """The file path entry points (mmap, read_machine) under the same mutations."""
    blob = bytearray(BASES[base])
    for (offset, width), value in data.draw(st.lists(
            st.tuples(st.sampled_from(FIELDS[base]), st.sampled_from(EXTREMES)), max_size=3)):
        struct.pack_into("<H" if width == 2 else "<I", blob, offset, value & ((1 << (8 * width)) - 1))
    blob = blob[: data.draw(st.integers(0, len(blob)))]
    fd, name = tempfile.mkstemp(suffix=".dll")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        for fn in (_pe.read_machine, lambda p: _pe.read_facts(p, use_cache=False)):
            try:
                result = fn(name)
            except InvalidImageError as exc:
                assert exc.reason
            else:
                assert isinstance(result, (Machine, ImageFacts))
    finally:
        os.unlink(name)


def test_wine_base_present() -> None:
    if "wine-sfc" not in BASES:
        unavailable(f"{WINE_SMALL} not installed (apt install wine64): fuzzing synthetic bases only")
    facts = _pe.facts_from_payload("sfc", 0, 0, _pe.parse_buffer("sfc", BASES["wine-sfc"], len(BASES["wine-sfc"])))
    assert facts.exports.forwarders["#1"] == "sfc_os.SfcInitProt"
