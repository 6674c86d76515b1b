"""The runtime and OpenMP findings on mirrored venvs built from real wheels.

* torch 2.4.0 (cp311): fbgemm.dll imports ``libomp140.x86_64.dll``, which neither Wine nor the
  VC++ runtime provides -> WinError 126 on fbgemm.dll, explained by ``libomp140-missing``;
* torch 2.9.1 (cp311, linked by MSVC 14.42) with the msvc-runtime 14.34.31931 DLLs in System32
  -> WinError 1114 on c10.dll, explained by ``msvcp140-too-old``;
* the same torch with msvc-runtime 14.44.35112 -> loads, and no runtime finding.

Layout (drive C mirrored under a temporary folder), as in :mod:`tests.support.torchlayout`:
System32 = Wine's x64 DLLs with the msvc-runtime wheel's DLLs laid over them; the base
interpreter folder holds the current vcruntime140*.dll (python.exe's own copy) and a
``python311.dll`` stand-in exporting what torch_python.dll imports. Only torch's DLLs,
``_C.pyd`` and ``*.py`` files of the top folder are extracted from the torch wheel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

import pytest

from tests.support.tiers import unavailable
from tests.support.torchlayout import APP, VENV, WINE_X64
from tests.support.wheelcache import WheelUnavailable, extract, link_dir, link_file, wheel
from torchdll.diagnosis import diagnose
from torchdll.fsview import MirrorView
from torchdll.report import Report, Severity
from torchdll.snapshot import PythonInfo, Snapshot

pytestmark = pytest.mark.wheels

NEW_RUNTIME = "14.44.35112"
OLD_RUNTIME = "14.34.31931"  # the newest msvc-runtime on PyPI below 14.40
RUNTIME_IDS = {
    "vcredist-missing",
    "msvcp140-too-old",
    "old-msvcp140-preloaded",
    "host-process-runtime",
    "vcruntime140-threads-missing",
    "msvcp140-atomic-wait-missing",
    "runtime-older-than-toolset",
    "libomp140-missing",
    "omp-duplicate-runtime",
    "conda-openmp-mix",
}


def _get(name: str, version: str, patterns: list[str]) -> Path:
    try:
        return extract(wheel(name, version), patterns)
    except WheelUnavailable as exc:
        unavailable(f"cannot download {name}=={version}: {exc}")


def _runtime_dir(version: str) -> Path:
    root = _get("msvc-runtime", version, ["*.data/data/Scripts/*.dll"])
    return next(root.glob("*.data/data/Scripts"))  # the complete set (data/ lacks vcruntime140)


def build(root: Path, torch_version: str, runtime: str) -> Tuple[Snapshot, MirrorView]:
    from torchdll import _data
    from torchdll._pe import read_facts
    from torchdll._pebuild import build_pe

    if not WINE_X64.is_dir():
        unavailable("Wine's x64 PE DLLs are missing (apt-get install wine64)")
    torch = _get(
        "torch",
        torch_version,
        ["torch/lib/*.dll", "torch/_C.*.pyd", "torch/version.py", "torch/__init__.py"],
    )
    c = root / "C"
    sys32 = c / "Windows" / "System32"
    link_dir(WINE_X64, sys32, "*.dll")
    link_dir(_runtime_dir(runtime), sys32, "*.dll")
    app = c / APP[3:]
    for name in ("vcruntime140.dll", "vcruntime140_1.dll"):
        link_file(_runtime_dir(NEW_RUNTIME) / name, app / name)
    site = c / VENV[3:] / "Lib" / "site-packages"
    lib = site / "torch" / "lib"
    link_dir(torch / "torch" / "lib", lib, "*.dll")
    link_dir(torch / "torch", site / "torch", "*.py*")
    wanted = sorted(
        {
            n
            for i in read_facts(lib / "torch_python.dll").imports
            if i.dll.lower() == "python311.dll"
            for n in i.names
        }
    )
    (app / "python311.dll").write_bytes(build_pe(name="python311.dll", exports=wanted))
    py = PythonInfo(
        executable=VENV + "\\Scripts\\python.exe",
        base_executable=APP + "\\python.exe",
        version="3.11.9",
        prefix=VENV,
        base_prefix=APP,
        exec_prefix=VENV,
        base_exec_prefix=APP,
        is_venv=True,
        bits=64,
        sys_path=(VENV, APP + "\\Lib", VENV + "\\Lib\\site-packages"),
    )
    snap = Snapshot(
        platform="win32",
        os_release="10.0.22631",
        machine="x64",
        app_dir=APP,
        cwd=VENV,
        process_path="C:\\Windows\\System32;C:\\Windows",
        system32="C:\\Windows\\System32",
        windows_dir="C:\\Windows",
        system_dir="C:\\Windows\\System",
        known_dlls=_data.default_known_dlls(),
        loaded_modules=(APP + "\\python.exe", APP + "\\python311.dll", APP + "\\vcruntime140.dll"),
        python=py,
    )
    return snap, MirrorView(root)


def _diagnose(tmp_path_factory: pytest.TempPathFactory, torch: str, runtime: str) -> Report:
    snap, view = build(tmp_path_factory.mktemp(f"torch{torch}-rt{runtime}"), torch, runtime)
    return diagnose(snap, view=view)


@pytest.fixture(scope="module")
def torch240(tmp_path_factory: pytest.TempPathFactory) -> Report:
    return _diagnose(tmp_path_factory, "2.4.0", NEW_RUNTIME)


@pytest.fixture(scope="module")
def torch291_old(tmp_path_factory: pytest.TempPathFactory) -> Report:
    return _diagnose(tmp_path_factory, "2.9.1", OLD_RUNTIME)


@pytest.fixture(scope="module")
def torch291_new(tmp_path_factory: pytest.TempPathFactory) -> Report:
    return _diagnose(tmp_path_factory, "2.9.1", NEW_RUNTIME)


def test_torch_240_without_libomp140_fails_on_fbgemm(torch240: Report) -> None:
    torch = torch240.predictions[0]
    assert (torch.version, torch.outcome, torch.winerror) == ("2.4.0+cpu", "fails", 126)
    assert torch.dll is not None and torch.dll.endswith("torch\\lib\\fbgemm.dll")
    assert "libomp140.x86_64.dll, needed by fbgemm.dll, is not found" in (torch.culprit or "")
    assert [f.id for f in torch240.findings[:2]] == ["predicted-load-failure", "libomp140-missing"]
    f = torch240.findings[1]
    assert f.explains == "torch" and f.severity is Severity.ERROR
    text = "\n".join(e.value for e in f.evidence)
    assert "fbgemm.dll (3 by ordinal" in text and "torch_cpu.dll (5 by ordinal" in text  # measured
    assert '"torch==2.4.1"' in f.commands["cmd"][1]


def test_torch_291_with_msvc_runtime_1434_fails_1114_on_c10(torch291_old: Report) -> None:
    torch = torch291_old.predictions[0]
    assert (torch.version, torch.outcome, torch.winerror) == ("2.9.1+cpu", "fails", 1114)
    assert torch.dll is not None and torch.dll.endswith("torch\\lib\\c10.dll")
    assert [f.id for f in torch291_old.findings[:2]] == [
        "predicted-load-failure",
        "msvcp140-too-old",
    ]
    f = torch291_old.findings[1]
    assert f.explains == "torch" and f.severity is Severity.ERROR
    text = "\n".join(f"{e.label}: {e.value}" for e in f.evidence)
    assert "C:\\Windows\\System32\\msvcp140.dll (FileVersion 14.34.31931.0)" in text
    assert "found by: system32" in text and "linked by MSVC 14.42" in text


def test_torch_291_with_msvc_runtime_1444_loads(torch291_new: Report) -> None:
    torch = torch291_new.predictions[0]
    assert (torch.version, torch.outcome) == ("2.9.1+cpu", "ok")
    assert not {f.id for f in torch291_new.findings} & RUNTIME_IDS
    assert torch291_new.ok
