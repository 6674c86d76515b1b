"""examples/qt_import_order.py and examples/ci_check.py run and print (and exit with) what they
promise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Tuple

from torchdll.testing import MSVCP, WindowsEnv

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
VENV_LIB = "C:\\Users\\dev\\proj\\.venv\\Lib\\site-packages"


def run(*args: str) -> Tuple[int, str, str]:
    env = dict(os.environ, NO_COLOR="1", PYTHONIOENCODING="utf-8")
    proc = subprocess.run([sys.executable, *args], capture_output=True, env=env, timeout=120,
                          check=False)
    return proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8", "replace")


def test_qt_import_order_example() -> None:
    code, out, err = run(str(EXAMPLES / "qt_import_order.py"))
    assert code == 0, err
    qt_first, torch_first = out.split("== import torch, then import PyQt5")
    assert qt_first.startswith("== import PyQt5, then import torch\n")
    assert (f"prediction: torch 2.9.0+cpu fails with WinError 1114 on {VENV_LIB}\\torch\\lib\\c10.dll"
            in qt_first)
    assert f"binds {VENV_LIB}\\PyQt5\\Qt5\\bin\\msvcp140.dll (FileVersion 14.26.28720.3" in qt_first
    assert "finding 1: predicted-load-failure (error)" in qt_first
    assert "finding 2: old-msvcp140-preloaded (error): PyQt5 already loaded msvcp140.dll 14.26.28720.3" in qt_first
    assert "fix: Import torch before PyQt5" in qt_first and "ok: False" in qt_first
    assert "prediction: torch 2.9.0+cpu loads" in torch_first and "fails" not in torch_first
    assert "finding 1: old-msvcp140-preloaded (warning)" in torch_first
    assert "ok: True" in torch_first


def test_ci_check_demo_fails_the_build() -> None:
    code, out, err = run(str(EXAMPLES / "ci_check.py"), "--demo")
    assert code == 1, err
    assert out.startswith("## torchdll report\n")
    assert "| torch | 2.9.0+cpu | **fails** | 1114 |" in out
    assert "ci_check: FAILED -- torch will not load here:" in out
    assert "  - torch 2.9.0+cpu: predicted WinError 1114 on " in out
    assert "  - msvcp140-too-old: msvcp140.dll 14.29.30133.0 is too old" in out


def _snapshot(tmp_path: Path, *, qt_first: bool) -> Tuple[str, str]:
    env = WindowsEnv(tmp_path / "mirror")
    env.add_system()
    env.add_torch("2.9.0")
    if qt_first:
        env.loaded.append(env.add_dll(f"{env.site_packages}\\PyQt5\\Qt5\\bin\\msvcp140.dll",
                                      exports=MSVCP, file_version=(14, 26, 28720, 3)))
    snap = tmp_path / "snapshot.json"
    env.snapshot().save(snap)
    return str(snap), str(env.root)


def test_ci_check_passes_a_healthy_snapshot(tmp_path: Path) -> None:
    snap, root = _snapshot(tmp_path, qt_first=False)
    summary = tmp_path / "summary.md"
    code, out, err = run(str(EXAMPLES / "ci_check.py"), "--snapshot", snap, "--root", root,
                         "--summary", str(summary))
    assert code == 0, out + err
    assert "| torch | 2.9.0+cpu | loads |" in out
    assert out.rstrip().endswith("ci_check: passed -- torch is predicted to load")
    assert summary.read_text(encoding="utf-8").startswith("## torchdll report\n")


def test_ci_check_fails_a_broken_snapshot(tmp_path: Path) -> None:
    snap, root = _snapshot(tmp_path, qt_first=True)
    code, out, err = run(str(EXAMPLES / "ci_check.py"), "--snapshot", snap, "--root", root)
    assert code == 1, err
    assert "`old-msvcp140-preloaded` — error" in out
    assert "  - old-msvcp140-preloaded: PyQt5 already loaded msvcp140.dll 14.26.28720.3" in out


def test_ci_check_bad_input_exits_2(tmp_path: Path) -> None:
    snap, _ = _snapshot(tmp_path, qt_first=False)
    code, out, err = run(str(EXAMPLES / "ci_check.py"), "--snapshot", snap, "--root",
                         str(tmp_path / "missing"))
    assert code == 2 and "ci_check: cannot read the input:" in err and out == ""
    code, _, err = run(str(EXAMPLES / "ci_check.py"), "--root", str(tmp_path))
    assert code == 2 and "--root needs --snapshot" in err


def test_ci_check_live_on_this_machine() -> None:
    code, out, err = run(str(EXAMPLES / "ci_check.py"))
    if sys.platform == "win32":  # pragma: no cover - depends on the runner's torch
        assert code in (0, 1), err
    else:  # Linux: the ld.so model replays the torch installed here (the CPU build loads)
        import importlib.util

        assert code == 0, err
        if importlib.util.find_spec("torch") is not None:
            assert "ci_check: passed -- torch is predicted to load" in out
        else:
            assert "ci_check: passed (nothing to check: no torch installation found" in out
