"""Every example runs and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(name: str) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_loader_model_example() -> None:
    out = run("loader_model.py")
    assert "flags 0x1100: c10.dll -> " in out and "[dll-load-dir]" in out
    assert "flags 0x0000: c10.dll -> " in out and "envs\\old" in out and "[path]" in out
    assert "torch_python.dll     ok" in out


def test_linux_ld_model_example() -> None:
    out = run("linux_ld_model.py")
    assert "libfoo.so.1              -> /opt/app/bin/../lib/libfoo.so.1  [runpath]" in out
    assert "libfoo.so.1              -> /opt/old/libfoo.so.1  [ld-library-path]" in out
    assert "dlopen: /opt/old/libfoo.so.1: version `FOO_2' not found (required by /opt/app/bin/libapp.so)" in out
    if sys.platform.startswith("linux"):
        assert "this machine: " in out and "torchdll run would change:" in out
