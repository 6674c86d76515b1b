"""torchdll._pe on real Windows wheels: complete tables, speed, Rich/linker, version resources.

The wheels are downloaded once by exact version (tests/support/wheelcache.py; point
``TORCHDLL_TEST_CACHE`` at an existing cache to avoid the download).
"""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pefile
import pytest

from tests.support.tiers import unavailable
from tests.support.wheelcache import WheelUnavailable, extract, wheel
from torchdll import _pe
from torchdll.model import Machine

pytestmark = pytest.mark.wheels

#: pefile's module-global caps that silently truncate torch's tables (anchors.md 2.9).
PEFILE_CAPS = ("MAX_IMPORT_SYMBOLS", "MAX_SYMBOL_NAME_LENGTH", "MAX_IMPORT_NAME_LENGTH",
               "MAX_DLL_LENGTH")


def extracted(name: str, version: str, patterns: List[str]) -> Path:
    try:
        whl = wheel(name, version)
    except WheelUnavailable as exc:
        unavailable(f"{name}=={version} wheel: {exc}")
    return extract(whl, patterns)


@pytest.fixture(scope="module")
def torch_lib() -> Path:
    return extracted("torch", "2.3.1", ["torch/lib/*.dll"]) / "torch" / "lib"


@pytest.fixture(scope="module")
def openmp_bin() -> Path:
    root = extracted("intel-openmp", "2021.4.0", ["*.dll"])
    return root / "intel_openmp-2021.4.0.data" / "data" / "Library" / "bin"


@pytest.fixture(scope="module")
def msvc_runtime() -> Path:
    root = extracted("msvc-runtime", "14.44.35112", ["*.dll"])
    return root / "msvc_runtime-14.44.35112.data" / "data"


@pytest.fixture
def lifted_pefile_caps() -> Iterator[None]:
    """Lift pefile's process-global caps for one test, then restore them."""
    saved = {k: getattr(pefile, k) for k in PEFILE_CAPS}
    for k in PEFILE_CAPS:
        setattr(pefile, k, 1 << 16)  # above any real name or count, still cheap to slice
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(pefile, k, v)


def pefile_parse(path: Path, *directories: str) -> Any:
    """pefile with the given data directories parsed, nothing capped (not the slow full load:
    for these directories the result is the same, and ``PE(path)`` takes ~10 s here)."""
    pe = pefile.PE(str(path), fast_load=True, max_symbol_exports=1 << 20)
    pe.parse_data_directories(
        directories=[pefile.DIRECTORY_ENTRY[f"IMAGE_DIRECTORY_ENTRY_{d}"] for d in directories]
    )
    assert not [w for w in pe.get_warnings() if "symbol" in w.lower() or "import" in w.lower()]
    return pe


def export_directory_counts(path: Path) -> Tuple[int, int]:
    """(NumberOfFunctions, NumberOfNames) straight from IMAGE_EXPORT_DIRECTORY."""
    pe = pefile.PE(str(path), fast_load=True)
    try:
        d = pe.OPTIONAL_HEADER.DATA_DIRECTORY[0]
        raw = pe.get_data(d.VirtualAddress, 40)
        return struct.unpack_from("<II", raw, 20)
    finally:
        pe.close()


# --------------------------------------------------------------------------------------------
# torch 2.3.1
# --------------------------------------------------------------------------------------------


def test_torch_cpu_exports_complete(torch_lib: Path, lifted_pefile_caps: None) -> None:
    path = torch_lib / "torch_cpu.dll"
    facts = _pe.read_facts(path, use_cache=False)
    nfuncs, nnames = export_directory_counts(path)
    assert nnames == 61789  # far beyond pefile's default 8192
    assert len(facts.exports.names) == nnames
    assert len(facts.exports) == nfuncs
    pe = pefile_parse(path, "EXPORT")
    try:
        symbols = pe.DIRECTORY_ENTRY_EXPORT.symbols
        assert len(symbols) == nfuncs
        names: Dict[str, int] = {s.name.decode(): s.ordinal for s in symbols if s.name}
        assert dict(facts.exports.names) == names
        assert facts.exports.ordinals == frozenset(s.ordinal for s in symbols if s.address)
        fwd = {f"#{s.ordinal}": s.forwarder.decode() for s in symbols if s.forwarder}
        assert {k: v for k, v in facts.exports.forwarders.items() if k.startswith("#")} == fwd
    finally:
        pe.close()
    # MSVC decorated names get long: the longest is past pefile's default 512-byte cap.
    assert max(map(len, facts.exports.names)) > 512
    assert facts.exports.dll_name == "torch_cpu.dll"
    assert facts.machine is Machine.AMD64 and facts.is_dll and facts.warnings == ()


def test_torch_cpu_is_read_without_loading_the_file_and_round_trips_the_cache(
        torch_lib: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Speed is measured by benchmarks/bench_pe.py, not here; this checks the property behind it:
    # the 125 MiB file is mapped, never read into Python memory.
    path = torch_lib / "torch_cpu.dll"
    assert path.stat().st_size > 100 << 20
    tracemalloc.start()
    cold = _pe.read_facts(path, use_cache=False)
    _cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 64 << 20, f"peak traced memory {peak >> 20} MiB for a {path.stat().st_size >> 20} MiB file"

    monkeypatch.setenv("TORCHDLL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHDLL_NO_CACHE", raising=False)
    _pe.read_facts(path)  # fills the cache
    warm = _pe.read_facts(path)
    assert warm == cold


def test_torch_python_imports_complete(torch_lib: Path, lifted_pefile_caps: None) -> None:
    path = torch_lib / "torch_python.dll"
    facts = _pe.read_facts(path, use_cache=False)
    pe = pefile_parse(path, "IMPORT", "DELAY_IMPORT")
    try:
        oracle = [
            (e.dll.decode(), tuple(i.name.decode() for i in e.imports if not i.import_by_ordinal),
             tuple(i.ordinal for i in e.imports if i.import_by_ordinal))
            for e in pe.DIRECTORY_ENTRY_IMPORT
        ]
    finally:
        pe.close()
    mine = [(m.dll, m.names, m.ordinals) for m in facts.static_imports]
    assert mine == oracle
    by_dll = {m.dll: m for m in facts.imports}
    assert len(by_dll["c10.dll"].names) == 448
    assert len(by_dll["torch_cpu.dll"].names) == 4815
    # 5,793 symbols in all: under pefile's default MAX_IMPORT_SYMBOLS (8192) for this release;
    # newer torch_python.dll builds pass it and lose whole modules with default pefile.
    assert sum(len(m.names) + len(m.ordinals) for m in facts.imports) == 5793


@pytest.mark.parametrize("name", ["torch_cpu.dll", "torch_python.dll", "c10.dll", "torch.dll"])
def test_torch_linker_and_rich_toolset(torch_lib: Path, name: str) -> None:
    facts = _pe.read_facts(torch_lib / name, use_cache=False)
    assert facts.linker_version == (14, 29)  # torch 2.3.1 was linked by VS 2019 16.11
    assert facts.rich is not None
    assert facts.rich.max_build == 30154 and facts.rich.toolset == "14.29"
    assert (0x0102, 30154) in {(p, b) for p, b, _ in facts.rich.entries}  # Linker1400
    assert facts.signed is False and facts.version is None


def test_torch_uv_is_older(torch_lib: Path) -> None:
    facts = _pe.read_facts(torch_lib / "uv.dll", use_cache=False)
    assert facts.linker_version[0] == 14 and facts.rich is not None
    assert facts.rich.toolset == "14.16"


# --------------------------------------------------------------------------------------------
# intel-openmp 2021.4.0 and msvc-runtime 14.44.35112
# --------------------------------------------------------------------------------------------


def test_libiomp5md_load_config_and_version(openmp_bin: Path) -> None:
    path = openmp_bin / "libiomp5md.dll"
    facts = _pe.read_facts(path, use_cache=False)
    pe = pefile.PE(str(path), fast_load=True)
    try:
        d = pe.OPTIONAL_HEADER.DATA_DIRECTORY[10]
        (size,) = struct.unpack("<I", pe.get_data(d.VirtualAddress, 4))
        (dlf,) = struct.unpack("<H", pe.get_data(d.VirtualAddress + 0x4E, 2))
    finally:
        pe.close()
    # This build's load config is large enough to carry DependentLoadFlags, and it is 0
    # (no LOAD_LIBRARY_SEARCH_SYSTEM32 / 0x800, no 0x2000): checked, not assumed.
    assert size >= 0x50 and dlf == 0
    assert facts.dependent_load_flags == 0
    assert facts.signed is True
    assert facts.version is not None
    assert facts.version.file_version == (5, 0, 2021, 804)
    assert facts.version.strings["OriginalFilename"] == "libiomp5md.dll"
    assert facts.version.strings["CompanyName"] == "Intel Corporation"
    assert "omp_get_max_threads" in facts.exports.names


def test_msvcp140_file_version(msvc_runtime: Path) -> None:
    facts = _pe.read_facts(msvc_runtime / "msvcp140.dll", use_cache=False)
    assert facts.version is not None
    # The wheel is versioned 14.44.35112 but ships the 14.44.35211 runtime files.
    assert facts.version.file_version == (14, 44, 35211, 0)
    assert facts.version.file_version_str == "14.44.35211.0"
    assert facts.version.strings["FileVersion"] == "14.44.35211.0"
    assert facts.linker_version == (14, 44)
    assert facts.rich is not None and facts.rich.toolset == "14.44"
    assert facts.signed is True
    assert {m.dll.lower() for m in facts.imports} >= {"kernel32.dll", "vcruntime140.dll"}
