"""diagnose() on a mirrored venv of the real torch 2.3.1 wheel with real torchvision wheels.

The team's measurement this reproduces: torchvision 0.19.0 (built for torch 2.4.0) fails with
WinError 127 on torch 2.3.1, while 0.17.2 (pinned to torch 2.2.2) still loads on it -- the pin
alone is a warning, the symbols decide. 0.18.1 is the matching release.
"""

from __future__ import annotations

import ntpath
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

import pytest

from tests.support.tiers import unavailable
from tests.support.torchlayout import APP, TORCH_VERSION, VENV, TorchLayout, build_torch_layout
from tests.support.wheelcache import WheelUnavailable, extract, link_file, wheel
from torchdll._data import default_known_dlls
from torchdll.diagnosis import diagnose
from torchdll.report import Confidence, Finding, Report, Severity
from torchdll.snapshot import PythonInfo, Snapshot

pytestmark = pytest.mark.wheels

SITE = VENV + "\\Lib\\site-packages"
OURS = ("torchvision-torchaudio-mismatch", "third-party-extension-abi", "python-abi-mismatch",
        "partial-or-mixed-install")


def _get(name: str, version: str, patterns: List[str]) -> Path:
    try:
        return extract(wheel(name, version), patterns)
    except WheelUnavailable as exc:
        unavailable(f"cannot download {name}=={version}: {exc}")


def _link_tree(src: Path, dst: Path, tops: Iterable[str]) -> None:
    for top in tops:
        for p in sorted((src / top).rglob("*")):
            if p.is_file():
                link_file(p, dst / p.relative_to(src))


def _snapshot() -> Snapshot:
    """The process ``C:\\venv\\Scripts\\python.exe main.py`` on the mirrored machine."""
    py = PythonInfo(
        executable=VENV + "\\Scripts\\python.exe", base_executable=APP + "\\python.exe",
        version="3.11.9", sys_version="3.11.9 (tags/v3.11.9:de54cf5, Apr  2 2024) [MSC v.1938 64 bit (AMD64)]",
        prefix=VENV, base_prefix=APP, exec_prefix=VENV, base_exec_prefix=APP, is_venv=True, bits=64,
        user_site="C:\\Users\\dev\\AppData\\Roaming\\Python\\Python311\\site-packages",
        user_site_enabled=False, userbase="C:\\Users\\dev\\AppData\\Roaming\\Python",
        sys_path=(VENV, APP + "\\python311.zip", APP + "\\DLLs", APP + "\\Lib", APP, VENV, SITE))
    return Snapshot(
        platform="win32", os_release="10.0.22631", machine="x64", app_dir=APP, cwd=VENV,
        process_path="C:\\Windows\\System32;C:\\Windows;C:\\Windows\\System32\\Wbem",
        system32="C:\\Windows\\System32", windows_dir="C:\\Windows", system_dir="C:\\Windows\\System",
        known_dlls=default_known_dlls(),
        loaded_modules=(APP + "\\python.exe", "C:\\Windows\\System32\\ntdll.dll",
                        "C:\\Windows\\System32\\kernel32.dll", APP + "\\python311.dll"),
        python=py, environ={"SystemRoot": "C:\\Windows", "windir": "C:\\Windows"})


def _venv(root: Path, torchvision: str) -> TorchLayout:
    """torch 2.3.1 (+ mkl) mirrored by tests.support.torchlayout, completed with what
    find_installs and the RECORD check read, and one torchvision wheel installed next to it."""
    layout = build_torch_layout(root, with_mkl=True)
    site = root / "C" / "venv" / "Lib" / "site-packages"
    torch = _get("torch", TORCH_VERSION, [
        "torch/version.py", "torch/__init__.py", "torch/_C.cp311-win_amd64.pyd", "torch/bin/*.dll",
        "functorch/_C.cp311-win_amd64.pyd", f"torch-{TORCH_VERSION}.dist-info/*"])
    _link_tree(torch, site, ["torch", "functorch", f"torch-{TORCH_VERSION}.dist-info"])
    tv = _get("torchvision", torchvision, [
        "torchvision/*.pyd", "torchvision/*.dll", "torchvision/version.py", "torchvision/__init__.py",
        f"torchvision-{torchvision}.dist-info/*"])
    _link_tree(tv, site, ["torchvision", f"torchvision-{torchvision}.dist-info"])
    return layout


_CACHE: Dict[str, Tuple[TorchLayout, Report]] = {}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    def go(torchvision: str) -> Tuple[TorchLayout, Report]:
        if torchvision not in _CACHE:
            layout = _venv(tmp_path_factory.mktemp(f"tv-{torchvision}"), torchvision)
            _CACHE[torchvision] = (layout, diagnose(_snapshot(), view=layout.view))
        return _CACHE[torchvision]
    return go


def _ours(report: Report) -> List[Finding]:
    return [f for f in report.findings if f.id in OURS]


def _outcomes(report: Report) -> Dict[str, Tuple[str, object]]:
    return {p.target: (p.outcome, p.winerror) for p in report.predictions}


def test_matching_torchvision_loads_and_nothing_is_reported(run) -> None:  # type: ignore[no-untyped-def]
    _, report = run("0.18.1")
    assert _outcomes(report) == {"torch": ("ok", None), "torchvision": ("ok", None)}
    # RECORD of torch and torchvision verified (sizes, sha256 below 64 MB), pins agree,
    # torch_python.dll matches the interpreter DLL, functorch is torch's own extension
    assert _ours(report) == [], [(f.id, f.title) for f in _ours(report)]


def test_torchvision_0_19_0_fails_with_127_and_names_the_symbols(run) -> None:  # type: ignore[no-untyped-def]
    _, report = run("0.19.0")
    assert _outcomes(report) == {"torch": ("ok", None), "torchvision": ("fails", 127)}
    (f,) = [f for f in report.findings if f.id == "torchvision-torchaudio-mismatch"]
    assert (f.severity, f.confidence, f.explains) == (Severity.ERROR, Confidence.CERTAIN, "torchvision")
    missing = [e.value for e in f.evidence if e.label == "missing symbol"]
    assert missing and all(("c10.dll" in m or "torch_cpu.dll" in m) for m in missing)
    assert "torch 2.4.0" in f.detail  # its pin, next to the symbols
    # torch 2.3.1 came from PyPI (METADATA 2.3.1, no +cpu): the matching release from PyPI
    assert f.commands["cmd"] == (f'"{VENV}\\Scripts\\python.exe" -m pip install torchvision==0.18.1',)
    # the cause of torchvision's predicted failure is in the top block of the ranking
    assert report.findings.index(f) < 2
    assert not [g for g in _ours(report) if g is not f and g.severity is Severity.ERROR]


def test_torchvision_0_17_2_still_loads_and_its_pin_is_only_a_warning(run) -> None:  # type: ignore[no-untyped-def]
    _, report = run("0.17.2")
    assert _outcomes(report) == {"torch": ("ok", None), "torchvision": ("ok", None)}
    (f,) = _ours(report)
    assert (f.id, f.severity, f.explains) == ("torchvision-torchaudio-mismatch", Severity.WARNING, "torchvision")
    assert "2.2.2" in f.title and not [e for e in f.evidence if e.label == "missing symbol"]
    assert "torchvision==0.18.1" in f.commands["cmd"][0]


def test_a_real_extension_built_for_another_torch(tmp_path: Path) -> None:
    # torchvision 0.19.0's _C.pyd dropped in as a third-party package (built for torch 2.4.0)
    layout = _venv(tmp_path, "0.18.1")
    tv19 = _get("torchvision", "0.19.0", ["torchvision/_C.pyd"])
    site = tmp_path / "C" / "venv" / "Lib" / "site-packages"
    link_file(tv19 / "torchvision" / "_C.pyd", site / "someext" / "_C.cp311-win_amd64.pyd")
    report = diagnose(_snapshot(), view=layout.view)
    (f,) = [f for f in report.findings if f.id == "third-party-extension-abi"]
    assert f.severity is Severity.ERROR and "someext" in f.title and "WinError 127" in f.detail
    assert [e for e in f.evidence if e.label == "missing symbol"]


def test_interpreter_dll_lacking_a_name_torch_python_imports(tmp_path: Path) -> None:
    from torchdll._pe import read_facts
    from torchdll._pebuild import build_pe

    layout = _venv(tmp_path, "0.18.1")
    app = tmp_path / "C" / "Python311"
    lib = tmp_path / "C" / "venv" / "Lib" / "site-packages" / "torch" / "lib"
    wanted = sorted({n for imp in read_facts(lib / "torch_python.dll").imports
                     if imp.dll.lower() == "python311.dll" for n in imp.names})
    dropped = wanted[len(wanted) // 2]
    (app / "python311.dll").write_bytes(build_pe(name="python311.dll", exports=[n for n in wanted if n != dropped]))
    report = diagnose(_snapshot(), view=layout.view)
    torch = report.predictions[0]
    assert (torch.outcome, torch.winerror) == ("fails", 127)
    assert torch.dll is not None and ntpath.basename(torch.dll) == "torch_python.dll"
    (f,) = [f for f in report.findings if f.id == "python-abi-mismatch"]
    assert (f.severity, f.explains) == (Severity.ERROR, "torch")
    assert [e.value for e in f.evidence if e.label == "missing symbol"] == [f"{dropped} from python311.dll"]


def test_record_catches_a_dll_of_another_torch(tmp_path: Path) -> None:
    # c10.dll of torchvision's folder is not torch's: put a foreign DLL of another size in
    # torch\lib under c10.dll's name -> RECORD says the install is mixed
    layout = _venv(tmp_path, "0.18.1")
    lib = tmp_path / "C" / "venv" / "Lib" / "site-packages" / "torch" / "lib"
    src = tmp_path / "C" / "venv" / "Lib" / "site-packages" / "torchvision" / "zlib.dll"
    target = lib / "uv.dll"
    target.unlink()
    link_file(src, target)
    report = diagnose(_snapshot(), view=layout.view)
    (f,) = [f for f in report.findings if f.id == "partial-or-mixed-install"]
    assert f.severity is Severity.ERROR and "mixes files" in f.title
    assert [e.value.split(" ")[0] for e in f.evidence if e.label == "size differs"] == [
        f"{SITE}\\torch\\lib\\uv.dll"]
