"""diagnose() on a mirrored venv built from the real torch 2.3.1 and mkl 2021.4.0 wheels."""

from __future__ import annotations

import pytest

from tests.support.torchlayout import build_torch_layout, layout_snapshot
from torchdll.diagnosis import diagnose

pytestmark = pytest.mark.wheels


def test_real_torch_231_with_mkl_is_predicted_to_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    layout = build_torch_layout(tmp_path, with_mkl=True)
    report = diagnose(layout_snapshot(layout), view=layout.view)
    torch = report.predictions[0]
    assert (torch.target, torch.version, torch.outcome) == ("torch", "2.3.1+cpu", "ok")
    assert "import_pyd _C.cp311-win_amd64.pyd 0x1100: ok" in torch.steps


def test_real_torch_231_without_mkl_names_mkl_intel_thread(tmp_path) -> None:  # type: ignore[no-untyped-def]
    layout = build_torch_layout(tmp_path, with_mkl=False)
    report = diagnose(layout_snapshot(layout), view=layout.view)
    torch = report.predictions[0]
    assert (torch.outcome, torch.winerror) == ("fails", 126)
    assert torch.dll is not None and torch.dll.endswith("torch\\lib\\shm.dll")
    assert "mkl_intel_thread.1.dll, needed by torch_cpu.dll, is not found" in (torch.culprit or "")
    assert torch.message == ('OSError: [WinError 126] The specified module could not be found. '
                             f'Error loading "{torch.dll}" or one of its dependencies.')
    assert report.findings[0].id == "predicted-load-failure"
