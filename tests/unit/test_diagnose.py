"""diagnose() end to end on synthetic Windows machines (and its honest answer elsewhere)."""

from __future__ import annotations

from pathlib import Path

from torchdll import _data
from torchdll.checks import CHECKS, CheckContext, run_checks
from torchdll.demo import build_seed_demo
from torchdll.diagnosis import diagnose
from torchdll.report import Severity
from torchdll.snapshot import collect
from torchdll.testing import WindowsEnv


def test_seed_demo_predicts_1114_on_c10_and_names_the_old_runtime(tmp_path: Path) -> None:
    snap, view = build_seed_demo(tmp_path)
    report = diagnose(snap, view=view)
    torch = report.predictions[0]
    assert (torch.target, torch.outcome, torch.winerror) == ("torch", "fails", 1114)
    assert torch.dll is not None and torch.dll.endswith("torch\\lib\\c10.dll")
    assert torch.culprit_path is not None and torch.culprit_path.endswith("miniconda3\\msvcp140.dll")
    assert report.findings[0].explains == "torch" and report.findings[0].severity is Severity.ERROR
    assert not report.ok
    assert report.source == "snapshot"


def test_healthy_machine_is_ok(tmp_path: Path) -> None:
    env = WindowsEnv(tmp_path)
    env.add_system()
    env.add_torch("2.9.0")
    report = diagnose(env.snapshot(), view=env.view())
    assert [p.outcome for p in report.predictions] == ["ok"]
    assert [f for f in report.findings if f.severity is Severity.ERROR] == []


def test_no_torch_is_a_note_not_a_crash(tmp_path: Path) -> None:
    env = WindowsEnv(tmp_path)
    env.add_system()
    report = diagnose(env.snapshot(), view=env.view())
    assert report.predictions == ()
    assert any("no torch installation" in n for n in report.notes)


def test_linux_live_answer_is_honest() -> None:
    report = diagnose(collect())
    assert report.predictions == () and report.findings == ()
    assert any("only on Windows" in n for n in report.notes)


def test_every_finding_id_a_check_can_emit_is_in_the_catalogue(tmp_path: Path) -> None:
    snap, view = build_seed_demo(tmp_path)
    report = diagnose(snap, view=view)
    catalogue = _data.findings_catalogue()
    assert {f.id for f in report.findings} <= set(catalogue)
    for fid, entry in catalogue.items():
        assert entry["severity"] in ("error", "warning", "info"), fid
        assert entry["title"] and entry["summary"], fid


def test_a_broken_check_becomes_an_internal_error_finding(tmp_path: Path) -> None:
    env = WindowsEnv(tmp_path)
    env.add_system()
    ctx = CheckContext(env.snapshot(), env.view(), installs=None, context=None)  # type: ignore[arg-type]
    out = run_checks(ctx, [("torchdll.checks.prediction", "check_prediction"), ("json", "not_there")])
    assert [f.id for f in out] == ["internal-error"]
    assert ("torchdll.checks.prediction", "check_prediction") in CHECKS
