"""The Qt import-order hazard, on a simulated Windows machine: ``import PyQt5`` before
``import torch`` breaks torch with WinError 1114.

A PyQt5-like package ships its own ``Qt5\\bin\\msvcp140.dll`` (14.26, older than the 14.40
that torch 2.9's MSVC 14.42 build needs). Windows keeps one ``msvcp140.dll`` per process: once
Qt has loaded its copy, every later DLL that imports ``msvcp140.dll`` gets that one, whatever
the search order says -- so ``c10.dll``'s initialisation fails. Import torch first and the
current System32 copy (14.44) is the one loaded; Qt then runs with it too.

This is a simulation: no Qt and no torch are installed or imported, and it runs on any OS.
:class:`torchdll.testing.WindowsEnv` writes tiny PE files shaped like the real DLLs under a
temporary folder (a mirrored ``C:`` drive), and the process's already-loaded modules list
(``env.loaded``) says whether Qt's copy was loaded before ``import torch``. ``diagnose()`` then
predicts both orders. :func:`torchdll.safe_import_torch` reports the same finding on a real
machine when ``import torch`` fails after Qt.

Run: python examples/qt_import_order.py
"""

from __future__ import annotations

import sys
import tempfile
from typing import List

from torchdll.diagnosis import diagnose
from torchdll.report import Report
from torchdll.testing import MSVCP, WindowsEnv

QT_MSVCP_VERSION = (14, 26, 28720, 3)


def build(root: str, *, qt_first: bool) -> WindowsEnv:
    """The machine: current VC++ runtime, torch 2.9.0 and PyQt5 (with its old msvcp140.dll)
    in the venv; ``qt_first``: PyQt5 was imported before torch, so its copy is loaded."""
    env = WindowsEnv(root)
    env.add_system()  # System32: msvcp140.dll 14.44
    env.add_torch("2.9.0")
    qt = env.add_dll(f"{env.site_packages}\\PyQt5\\Qt5\\bin\\msvcp140.dll", exports=MSVCP,
                     imports={"VCRUNTIME140.dll": ["memcpy"]}, file_version=QT_MSVCP_VERSION,
                     linker=(14, 26))
    env.add_dll(f"{env.site_packages}\\PyQt5\\Qt5\\bin\\Qt5Core.dll", exports=["qVersion"],
                imports={"MSVCP140.dll": ["_Mtx_lock"]}, linker=(14, 26))
    if qt_first:
        env.loaded += [qt, f"{env.site_packages}\\PyQt5\\Qt5\\bin\\Qt5Core.dll"]
    return env


def describe(title: str, report: Report) -> str:
    lines: List[str] = [f"== {title}"]
    for p in report.predictions:
        if p.ok:
            lines.append(f"prediction: {p.target} {p.version} loads")
        else:
            lines.append(f"prediction: {p.target} {p.version} fails with WinError {p.winerror} on {p.dll}")
            if p.culprit:
                lines.append(f"real cause: {p.culprit}")
    for n, f in enumerate(report.findings[:3], 1):
        lines.append(f"finding {n}: {f.id} ({f.severity.value}): {f.title}")
        if f.fix:
            lines.append(f"  fix: {f.fix[0]}")
    lines.append(f"ok: {report.ok}")
    return "\n".join(lines) + "\n"


def main() -> None:
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(encoding="utf-8")
    for qt_first, title in ((True, "import PyQt5, then import torch"),
                            (False, "import torch, then import PyQt5")):
        with tempfile.TemporaryDirectory(prefix="torchdll-qt-") as root:
            env = build(root, qt_first=qt_first)
            report = diagnose(env.snapshot(), view=env.view())
            sys.stdout.write(describe(title, report) + "\n")


if __name__ == "__main__":
    main()
