"""safe_import_torch with the real torch wheel installed in this environment (Linux CPU wheel).

Needs ``pip install torch==2.13.0`` (the CPU wheel). Without torch these tests skip with a reason
on a developer machine and fail in CI (``CI=true``), where torch must be installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.tiers import unavailable

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pefile", "torchdll._pe", "torchdll.diagnosis", "torchdll.probe", "torchdll.snapshot",
         "torchdll._elf", "torchdll.ldso", "torchdll.linuxdiag")


@pytest.fixture(scope="module")
def torch_dir() -> Path:
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        unavailable("torch is not installed (pip install torch==2.13.0, the CPU wheel)")
    return Path(list(spec.submodule_search_locations)[0])


def _run(code: str, *, pythonpath: str = "", timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, str(ROOT), env.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-W", "ignore", "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_real_torch_imports_through_the_guard_cheaply(torch_dir: Path) -> None:
    proc = _run(f"""
        import json, sys
        from torchdll.guard import safe_import_torch
        guard = safe_import_torch()
        with guard as torch:
            total = float(torch.ones(3).sum())
        print(json.dumps({{"version": torch.__version__, "total": total,
                          "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules),
                          "path_result": guard.path_result is not None}}))
    """)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["total"] == 3.0 and data["heavy"] == []
    assert data["path_result"] is (sys.platform == "win32")


def test_failure_inside_the_block_with_real_torch_loaded(torch_dir: Path) -> None:
    if sys.platform != "linux":
        pytest.skip("uses glibc's dlopen message")
    proc = _run("""
        import ctypes
        from torchdll.errors import DllNotFoundError
        from torchdll.guard import safe_import_torch
        try:
            with safe_import_torch() as torch:
                ctypes.CDLL("libtorchvision-missing-for-test.so")
        except DllNotFoundError as err:
            print(type(err).__name__, err.culprit, err.errno, float(torch.ones(2).sum()))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["DllNotFoundError", "libtorchvision-missing-for-test.so", "2", "2.0"]


def _broken_copy(torch_dir: Path, dest: Path, missing: str) -> Path:
    """A torch made of symlinks to the installed one, with one library of torch/lib left out."""
    pkg = dest / "torch"
    (pkg / "lib").mkdir(parents=True)
    for entry in torch_dir.iterdir():
        if entry.name != "lib":
            (pkg / entry.name).symlink_to(entry)
    for entry in (torch_dir / "lib").iterdir():
        if entry.name != missing:
            (pkg / "lib" / entry.name).symlink_to(entry)
    return dest


def test_real_missing_library_becomes_dll_not_found(torch_dir: Path, tmp_path: Path) -> None:
    if sys.platform != "linux":
        pytest.skip("the symlinked copy of torch is a Linux layout")
    if not (torch_dir / "lib" / "libc10.so").exists():
        pytest.skip("this torch has no lib/libc10.so")
    site = _broken_copy(torch_dir, tmp_path / "site", "libc10.so")
    proc = _run("""
        import json, pickle
        from torchdll.errors import TorchDLLError
        from torchdll.guard import safe_import_torch
        try:
            with safe_import_torch() as torch:
                pass
        except TorchDLLError as err:
            back = pickle.loads(pickle.dumps(err))
            print(json.dumps({"kind": type(err).__name__, "culprit": err.culprit, "errno": err.errno,
                              "finding": err.causes[0].id, "cause": type(err.__cause__).__name__,
                              "str": str(err), "pickled": str(back) == str(err)}))
    """, pythonpath=str(site))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["kind"] == "DllNotFoundError" and data["culprit"] == "libc10.so"
    assert data["errno"] == 2 and data["finding"] == "posix-library-not-found"
    assert data["cause"] in ("ImportError", "OSError") and data["pickled"]
    assert "libc10.so was not found by the dynamic loader" in data["str"]
