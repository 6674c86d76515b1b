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


def _broken_machines(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A handful of differently broken machines, so many check branches fire."""
    def env(name: str) -> WindowsEnv:
        return WindowsEnv(tmp_path / name)

    e1 = env("no-redist")
    e1.add_system(msvcp140=None, vcruntime140=None)
    e1.add_torch("2.14.1")
    yield e1
    e2 = env("libomp")
    e2.add_system()
    e2.add_torch("2.4.0")
    yield e2
    e3 = env("mkl")
    e3.add_system()
    e3.add_torch("2.3.1")
    yield e3
    e4 = env("companion")
    e4.add_system()
    e4.add_torch("2.3.1")
    e4.add_mkl()
    e4.add_companion("torchvision", "0.19.0", torch_pin="torch==2.4.0", needs=["?missing@c10@@YAXXZ"])
    yield e4
    e5 = env("foreign")
    e5.add_system()
    e5.add_torch("2.9.0")
    other = e5.add_torch("2.3.1", site_packages="C:\\old\\Lib\\site-packages")
    e5.user_path.insert(0, other)
    e5.user_path.insert(0, f"{e5.site_packages}\\torch\\lib")
    e5.user_path.append("")
    yield e5


def test_every_finding_id_from_many_broken_machines_is_catalogued(tmp_path: Path) -> None:
    catalogue = _data.findings_catalogue()
    seen: set[str] = set()
    for env in _broken_machines(tmp_path):
        report = diagnose(env.snapshot(), view=env.view())
        assert report.findings  # every machine above has something to report
        seen |= {f.id for f in report.findings}
    assert "internal-error" not in seen
    assert seen <= set(catalogue), seen - set(catalogue)
    assert {"predicted-load-failure", "vcredist-missing", "libomp140-missing",
            "torchvision-torchaudio-mismatch", "env-dll-dir-on-path",
            "foreign-torch-dlls-on-path"} <= seen


def test_the_target_machines_own_apiset_schema_is_read(tmp_path: Path) -> None:
    from torchdll._pebuild import build_pe
    from torchdll.diagnosis import target_apisets
    from tests.support.tiers import unavailable

    env = WindowsEnv(tmp_path)
    env.add_system()
    env.add_torch("2.9.0")
    assert target_apisets(env.view(), env.system32) is None  # none there: the shipped table
    env.add_file(f"{env.system32}\\apisetschema.dll", build_pe(name="apisetschema.dll"))
    assert target_apisets(env.view(), env.system32) is None  # no .apiset section: fall back
    wine = Path("/usr/lib/x86_64-linux-gnu/wine/x86_64-windows/apisetschema.dll")
    if not wine.exists():
        unavailable("Wine's apisetschema.dll not installed (apt-get install wine64)")
    env.add_file(f"{env.system32}\\apisetschema.dll", wine.read_bytes())
    schema = target_apisets(env.view(), env.system32)
    assert schema is not None and len(schema.entries) > 300
    assert schema.lookup("api-ms-win-crt-heap-l1-1-0.dll") == (True, "ucrtbase.dll")
    assert diagnose(env.snapshot(), view=env.view()).predictions[0].ok
