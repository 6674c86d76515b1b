"""examples/sanitize_path.py runs on any OS and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sanitize_path.py"


def test_sanitize_path_example() -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True,
                          encoding="utf-8", timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "removed C:\\Users\\민수\\proj\\.venv\\Lib\\site-packages\\torch\\lib: this-env-dll-dir" in out
    assert "envs\\old\\Lib\\site-packages\\torch\\lib: foreign-torch-lib" in out
    assert "removed (empty): empty" in out and "removed bin: relative" in out
    assert "kept    C:\\zluda: nvcuda-provider" in out
    assert "new PATH: C:\\Windows\\system32;C:\\Windows;C:\\zluda" in out
    assert "applied=True, PATH now has 3 entries" in out
    assert "HKCU\\Environment\\Path (REG_EXPAND_SZ): 2 entries, remove 1, keep 1" in out
    assert "%USERPROFILE%\\AppData\\Local\\Microsoft\\WindowsApps;" in out
    # The applied sanitize logged each removal through the "torchdll" logger (WARNING -> stderr).
    assert proc.stderr.count("from this process's PATH") == 4
