"""examples/seed_case.py runs on any OS, and the seed machine it builds is diagnosed as promised."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from torchdll.diagnosis import diagnose
from torchdll.report import Severity

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seed_case.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("seed_case_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed_example_runs_and_prints_the_report() -> None:
    env = dict(os.environ, NO_COLOR="1")
    proc = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, env=env,
                          timeout=120, check=False)
    out = proc.stdout.decode("utf-8")
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    assert "torch 2.9.0+cpu: import will FAIL with WinError 1114" in out
    assert "(env-dll-dir-on-path)" in out and "(non-ascii-paths)" in out
    assert "python -m torchdll fix-path --user --apply" in out
    assert ("prediction: torch 2.9.0+cpu fails with WinError 1114 on "
            "C:\\Users\\홍길동\\proj\\.venv\\Lib\\site-packages\\torch\\lib\\c10.dll") in out
    assert ("the Path entry: env-dll-dir-on-path (warning); "
            "fix: python -m torchdll fix-path --user --apply") in out
    assert "\033[" not in out


def test_seed_machine_reports_the_exact_entry(tmp_path: Path) -> None:
    seed = _module()
    env = seed.build(str(tmp_path))
    report = diagnose(env.snapshot(), view=env.view())
    torch = report.predictions[0]
    assert (torch.winerror, torch.dll) == (
        1114, "C:\\Users\\홍길동\\proj\\.venv\\Lib\\site-packages\\torch\\lib\\c10.dll")
    assert report.findings[0].explains == "torch"
    entry = next(f for f in report.findings if f.id == "env-dll-dir-on-path")
    # honest: torch's first load ignores PATH, so in this process the entry is a risk, not the cause
    assert entry.severity is Severity.WARNING and entry.explains is None
    labels = {e.label: e.value for e in entry.evidence}
    lib = "C:\\Users\\홍길동\\proj\\.venv\\Lib\\site-packages\\torch\\lib"
    reg = "user Path entry #2 (HKCU\\Environment, REG_EXPAND_SZ)"
    assert labels[reg] == f"{seed.SEED_ENTRY} (expands to {lib})"
    assert "python -m torchdll fix-path --user --apply" in entry.commands["cmd"]
    assert "first finding: predicted-load-failure" in seed.summary(report)
