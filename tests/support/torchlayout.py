"""A mirrored Windows venv built from the real torch win_amd64 wheel, for the real-wheel tier.

Layout under ``root`` (drive C mirrored as ``root/C``)::

    C:\\Python311\\                       base interpreter dir = the application directory:
                                          vcruntime140*.dll from msvc-runtime, python311.dll (*)
    C:\\Windows\\System32\\               Wine 8's x64 PE DLLs, with the Microsoft VC++ runtime
                                          DLLs of the msvc-runtime wheel laid over them
    C:\\venv\\Lib\\site-packages\\torch\\lib\\*.dll     from the torch wheel
    C:\\venv\\Library\\bin\\*.dll                       from the mkl wheel (optional)

(*) No Windows CPython can be downloaded here, so ``python311.dll`` is a stand-in written by
``torchdll._pebuild`` that exports exactly what ``torch_python.dll`` imports from it; edges to
it prove resolution, not symbol compatibility.

The load context replays torch 2.3.1's loader: ``os.add_dll_directory`` for each existing
``dll_paths`` entry (``torch\\lib``, ``sys.exec_prefix\\Library\\bin``), then
``LoadLibraryExW(dll, NULL, 0x1100)`` for every ``torch\\lib\\*.dll`` in glob order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import re
from typing import TYPE_CHECKING, Optional, Tuple

from tests.support.tiers import unavailable
from tests.support.wheelcache import WheelUnavailable, extract, link_dir, link_file, wheel
from torchdll.closure import LoadCall
from torchdll.fsview import MirrorView
from torchdll.model import LoadContext

if TYPE_CHECKING:
    from torchdll.snapshot import Snapshot

WINE_X64 = Path("/usr/lib/x86_64-linux-gnu/wine/x86_64-windows")
TORCH_VERSION = "2.3.1"
MKL_VERSION = "2021.4.0"
MSVC_RUNTIME_VERSION = "14.44.35112"

APP = "C:\\Python311"
VENV = "C:\\venv"
TORCH_LIB = VENV + "\\Lib\\site-packages\\torch\\lib"
LIBRARY_BIN = VENV + "\\Library\\bin"


@dataclass(frozen=True)
class TorchLayout:
    root: Path
    view: MirrorView
    context: LoadContext
    preload: Tuple[LoadCall, ...]
    version: str = TORCH_VERSION
    with_mkl: bool = False


def requires_mkl(dist_info: Path) -> bool:
    """Whether a torch wheel's METADATA asks for the mkl wheel on Windows (torch 2.3.x)."""
    meta = dist_info / "METADATA"
    text = meta.read_text(errors="replace") if meta.is_file() else ""
    return bool(re.search(r"^Requires-Dist: mkl\b.*Windows", text, re.M))


def _get(name: str, version: str, patterns: list[str]) -> Path:
    try:
        return extract(wheel(name, version), patterns)
    except WheelUnavailable as exc:
        unavailable(f"cannot download {name}=={version}: {exc}")


def build_torch_layout(root: Path, *, with_mkl: Optional[bool], version: str = TORCH_VERSION) -> TorchLayout:
    """``with_mkl=None``: add the mkl wheel's DLLs when that torch requires them."""
    from torchdll import _data
    from torchdll._pe import read_facts
    from torchdll._pebuild import build_pe

    if not WINE_X64.is_dir():
        unavailable("Wine's x64 PE DLLs are missing (apt-get install wine64)")
    torch = _get("torch", version, ["torch/lib/*.dll", "torch/_C.*.pyd", "torch/version.py",
                                          "torch/__init__.py", "torch-*.dist-info/METADATA",
                                          "torch-*.dist-info/RECORD"])
    msvc = _get("msvc-runtime", MSVC_RUNTIME_VERSION, ["*.data/data/Scripts/*.dll"])
    msvc_dir = next(msvc.glob("*.data/data/Scripts"))  # the complete set (data/ lacks vcruntime140)

    c = root / "C"
    sys32 = c / "Windows" / "System32"
    link_dir(WINE_X64, sys32, "*.dll")
    link_dir(msvc_dir, sys32, "*.dll")
    app = c / "Python311"
    for name in ("vcruntime140.dll", "vcruntime140_1.dll"):
        link_file(msvc_dir / name, app / name)
    site = c / "venv" / "Lib" / "site-packages"
    lib = site / "torch" / "lib"
    dlls = link_dir(torch / "torch" / "lib", lib, "*.dll")
    link_dir(torch / "torch", site / "torch", "*.py*")
    for dist in torch.glob("torch-*.dist-info"):
        link_dir(dist, site / dist.name)
        if with_mkl is None:
            with_mkl = requires_mkl(dist)
    # python311.dll stand-in: exports what torch_python.dll takes from it
    wanted: list[str] = []
    for imp in read_facts(lib / "torch_python.dll").imports:
        if imp.dll.lower() == "python311.dll":
            wanted.extend(imp.names)
    (app / "python311.dll").write_bytes(build_pe(name="python311.dll", exports=sorted(set(wanted))))
    user_dirs = [TORCH_LIB]
    if with_mkl:
        mkl = _get("mkl", MKL_VERSION, ["*.data/data/Library/bin/*.dll"])
        link_dir(next(mkl.glob("*.data/data/Library/bin")), c / "venv" / "Library" / "bin", "*.dll")
        user_dirs.append(LIBRARY_BIN)
    ctx = LoadContext(
        app_dir=APP,
        cwd=VENV,
        user_dirs=tuple(user_dirs),
        known_dlls=_data.default_known_dlls(),
        loaded={"python311.dll": APP + "\\python311.dll"},
    )
    calls = tuple(LoadCall(f"{TORCH_LIB}\\{p.name}", 0x1100)
                  for p in sorted(dlls, key=lambda p: p.name.upper()))
    return TorchLayout(root, MirrorView(root), ctx, calls, version, bool(with_mkl))


def layout_snapshot(layout: TorchLayout) -> "Snapshot":
    """The snapshot of ``C:\\venv\\Scripts\\python.exe main.py`` in the layout."""
    from torchdll.snapshot import PythonInfo, Snapshot

    py = PythonInfo(executable=VENV + "\\Scripts\\python.exe", base_executable=APP + "\\python.exe",
                    version="3.11.9", prefix=VENV, base_prefix=APP, exec_prefix=VENV,
                    base_exec_prefix=APP, is_venv=True, bits=64,
                    sys_path=(VENV, APP + "\\Lib", VENV + "\\Lib\\site-packages"))
    return Snapshot(platform="win32", os_release="10.0.22631", machine="x64", app_dir=APP, cwd=VENV,
                    process_path="C:\\Windows\\System32;C:\\Windows", system32="C:\\Windows\\System32",
                    windows_dir="C:\\Windows", system_dir="C:\\Windows\\System",
                    known_dlls=dict(layout.context.known_dlls),
                    loaded_modules=(APP + "\\python.exe", APP + "\\python311.dll"), python=py)
