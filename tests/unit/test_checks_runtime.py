"""The VC++ runtime family (torchdll.checks.runtime) on simulated Windows machines."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, List

import pytest

from torchdll import _data
from torchdll.checks.runtime import check_runtime
from torchdll.diagnosis import diagnose, diagnose_context
from torchdll.report import Confidence, Finding, Severity
from tests.support.findings import by_id, evidence, run_check
from torchdll.testing import MSVCP, WindowsEnv

IDS = {
    "vcredist-missing",
    "msvcp140-too-old",
    "old-msvcp140-preloaded",
    "host-process-runtime",
    "vcruntime140-threads-missing",
    "msvcp140-atomic-wait-missing",
    "runtime-older-than-toolset",
}
OLD = (14, 29, 30133, 0)
QT = (14, 26, 28720, 3)
HOST = "C:\\Program Files\\QGIS 3.34\\bin"


@pytest.fixture
def env(tmp_path: Path) -> WindowsEnv:
    return WindowsEnv(tmp_path)


def run(env: WindowsEnv, **overrides: object) -> List[Finding]:
    return run_check(check_runtime, env, **overrides)


def remove(env: WindowsEnv, win_path: str) -> None:
    env.host(win_path).unlink()


# -- healthy machines -------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.3.1", "2.4.1", "2.8.0", "2.9.0", "2.15.0"])
def test_a_healthy_machine_has_no_runtime_finding(env: WindowsEnv, version: str) -> None:
    env.add_system()
    env.add_torch(version)
    if version.startswith("2.3"):
        env.add_mkl()
    assert run(env) == []


def test_every_id_is_in_the_catalogue() -> None:
    catalogue = _data.findings_catalogue()
    assert IDS <= set(catalogue)
    assert all(catalogue[i]["family"] == "runtime" for i in IDS)


# -- vcredist-missing -------------------------------------------------------------------------


def test_no_redistributable_explains_the_126_on_c10(env: WindowsEnv) -> None:
    env.add_system(msvcp140=None, vcruntime140=None)
    env.add_torch("2.14.1")
    found = by_id(run(env))
    f = found["vcredist-missing"]
    assert (
        f.severity is Severity.ERROR
        and f.confidence is Confidence.CERTAIN
        and f.explains == "torch"
    )
    assert "msvcp140.dll" in f.title
    text = evidence(f)
    assert "Microsoft Visual C++ Redistributable is not installed" in text
    assert "C:\\Windows\\System32" in text  # where it looked
    assert "msvcp140_atomic_wait.dll" in text and "vcruntime140_threads.dll" in text  # folded in
    # the satellites are not reported separately when the whole Redistributable is missing
    assert (
        "msvcp140-atomic-wait-missing" not in found and "vcruntime140-threads-missing" not in found
    )
    assert any(
        "winget install --id Microsoft.VCRedist.2015+.x64" in c for c in f.commands["powershell"]
    )
    assert any("vc_redist.x64.exe" in c for c in f.commands["cmd"])


def test_runtime_only_on_path_is_a_warning_torch_still_loads(env: WindowsEnv) -> None:
    env.add_system(msvcp140=None)
    env.add_dll("C:\\Tools\\bin\\msvcp140.dll", exports=MSVCP, file_version=(14, 44, 35211, 0))
    env.add_dll(
        "C:\\Tools\\bin\\msvcp140_atomic_wait.dll",
        exports=["__std_atomic_wait_direct"],
        file_version=(14, 44, 35211, 0),
    )
    env.system_path.append("C:\\Tools\\bin")
    env.add_torch("2.9.0")
    ctx = diagnose_context(env.snapshot(), env.view())
    assert ctx.replays[0].prediction.ok and ctx.replays[0].vc_probe_failed == ("msvcp140.dll",)
    f = by_id(list(check_runtime(ctx)))["vcredist-missing"]
    assert f.severity is Severity.WARNING and f.explains is None
    assert "PATH" in evidence(f)


# -- msvcp140-too-old -------------------------------------------------------------------------


def test_old_system32_msvcp140_is_the_1114(env: WindowsEnv) -> None:
    env.add_system(msvcp140=OLD)
    env.add_torch("2.14.1")  # imports the threads/atomic_wait DLLs
    f = by_id(run(env))["msvcp140-too-old"]
    assert (
        f.severity is Severity.ERROR and f.confidence is Confidence.LIKELY and f.explains == "torch"
    )
    assert "1114" in f.title and "14.29.30133.0" in f.title
    text = evidence(f)
    assert "C:\\Windows\\System32\\msvcp140.dll (FileVersion 14.29.30133.0)" in text
    assert "found by: system32" in text and "MSVC 14.42" in text and "14.40" in text
    assert "msvcp140_atomic_wait.dll 14.29.30133.0" in text  # same folder, same fix
    assert any("winget" in c for c in f.commands["powershell"])
    assert any('"torch<2.9"' in step for step in f.fix)  # an alternative: text, not a command


def test_old_copy_next_to_the_conda_base_python_names_the_app_dir(tmp_path: Path) -> None:
    env = WindowsEnv(tmp_path, base="C:\\Users\\dev\\miniconda3", conda=True)
    env.add_system()  # a current Redistributable: it does not help
    env.add_dll(f"{env.base}\\msvcp140.dll", exports=MSVCP, file_version=OLD)
    env.add_torch("2.9.0")
    found = by_id(run(env))
    f = found["msvcp140-too-old"]
    assert f.explains == "torch"
    text = evidence(f)
    assert "found by: app-dir" in text and "next to the base python.exe" in text and "conda" in text
    assert "System32\\msvcp140.dll is 14.44.35211.0, not used" in text
    assert "vcruntime140" not in text  # python.exe's own copies are not blamed
    assert f.commands["powershell"] == (
        "cd 'C:\\Users\\dev\\miniconda3'",
        'conda install -p . -c conda-forge "vc14_runtime>=14.40"',
    )
    assert "rename C:\\Users\\dev\\miniconda3\\msvcp140.dll" in f.fix[1]
    assert "runtime-older-than-toolset" not in found


def test_older_but_same_side_of_14_40_is_a_warning(env: WindowsEnv) -> None:
    env.add_system(msvcp140=OLD)  # 14.29 < 14.38 (torch 2.8 toolset), no 1114 rule
    env.add_torch("2.8.0")
    ctx = diagnose_context(env.snapshot(), env.view())
    assert ctx.replays[0].prediction.ok
    f = by_id(list(check_runtime(ctx)))["msvcp140-too-old"]
    assert (
        f.severity is Severity.WARNING
        and f.confidence is Confidence.POSSIBLE
        and f.explains is None
    )
    assert "same side of 14.40" in f.title


def test_msvcp140_lacking_an_export_is_the_127(env: WindowsEnv) -> None:
    env.add_system()
    env.add_dll(f"{env.system32}\\msvcp140.dll", exports=MSVCP[:2], file_version=(14, 41, 34120, 0))
    env.add_torch("2.9.0")
    ctx = diagnose_context(env.snapshot(), env.view())
    assert ctx.replays[0].prediction.winerror == 127
    f = by_id(list(check_runtime(ctx)))["msvcp140-too-old"]
    assert (
        f.severity is Severity.ERROR
        and f.confidence is Confidence.CERTAIN
        and f.explains == "torch"
    )
    assert "lacks" in f.title


def test_current_msvcp140_is_not_too_old(env: WindowsEnv) -> None:
    env.add_system(msvcp140=(14, 42, 34433, 0))
    env.add_torch("2.9.0")
    assert "msvcp140-too-old" not in by_id(run(env))


# -- old-msvcp140-preloaded -------------------------------------------------------------------


def _pyqt(env: WindowsEnv, version: tuple = QT) -> str:  # type: ignore[type-arg]
    return env.add_dll(
        f"{env.site_packages}\\PyQt5\\Qt5\\bin\\msvcp140.dll", exports=MSVCP, file_version=version
    )


def test_qt_loaded_first_is_the_1114(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.9.0")
    env.loaded.append(_pyqt(env))
    found = by_id(run(env))
    f = found["old-msvcp140-preloaded"]
    assert (
        f.severity is Severity.ERROR and f.explains == "torch" and f.confidence is Confidence.LIKELY
    )
    assert "PyQt5" in f.title and "14.26.28720.3" in f.title
    assert "Import torch before PyQt5" in f.fix[0]
    assert "loaded-module (already in the process before import torch)" in evidence(f)
    assert "msvcp140-too-old" not in found


def test_qt_bundle_not_loaded_is_an_import_order_warning(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.9.0")
    _pyqt(env)
    f = by_id(run(env))["old-msvcp140-preloaded"]
    assert (
        f.severity is Severity.WARNING
        and f.confidence is Confidence.POSSIBLE
        and f.explains is None
    )
    assert "PyQt5\\Qt5\\bin\\msvcp140.dll" in evidence(f)


@pytest.mark.parametrize(("torch", "qt"), [("2.8.0", QT), ("2.9.0", (14, 40, 33807, 0))])
def test_qt_bundle_is_harmless_when_torch_does_not_need_14_40(
    env: WindowsEnv, torch: str, qt: tuple
) -> None:  # type: ignore[type-arg]
    env.add_system()
    env.add_torch(torch)
    _pyqt(env, qt)
    assert "old-msvcp140-preloaded" not in by_id(run(env))


# -- host-process-runtime ---------------------------------------------------------------------


def _host(env: WindowsEnv, msvcp: tuple = OLD) -> Dict[str, object]:  # type: ignore[type-arg]
    exe = env.add_dll(
        f"{HOST}\\qgis-bin.exe", dll=False, imports={"KERNEL32.dll": ["GetTickCount"]}
    )
    env.add_dll(f"{HOST}\\msvcp140.dll", exports=MSVCP, file_version=msvcp)
    env.add_dll(
        f"{HOST}\\vcruntime140.dll",
        exports=("memcpy", "memset", "__C_specific_handler"),
        file_version=msvcp,
    )
    snap = env.snapshot()
    py = dataclasses.replace(snap.python, executable=exe, base_executable=None)
    return {"app_dir": HOST, "python": py, "loaded_modules": (exe, f"{HOST}\\vcruntime140.dll")}


def test_embedding_host_with_old_runtime_is_the_1114(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.9.0")
    found = by_id(run(env, **_host(env)))
    f = found["host-process-runtime"]
    assert f.severity is Severity.ERROR and f.explains == "torch"
    text = evidence(f)
    assert "no python.exe" in text and f"{HOST}\\msvcp140.dll 14.29.30133.0" in text
    assert f"{HOST}\\vcruntime140.dll" in text
    assert "msvcp140-too-old" not in found and "runtime-older-than-toolset" not in found


def test_embedding_host_with_current_runtime_is_fine(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.9.0")
    assert run(env, **_host(env, (14, 44, 35211, 0))) == []


# -- satellites torch never probes -------------------------------------------------------------


def test_missing_vcruntime140_threads_explains_the_126(env: WindowsEnv) -> None:
    env.add_system()
    remove(env, f"{env.system32}\\vcruntime140_threads.dll")
    env.add_torch("2.14.1")  # imports the threads/atomic_wait DLLs
    found = by_id(run(env))
    f = found["vcruntime140-threads-missing"]
    assert (
        f.severity is Severity.ERROR
        and f.confidence is Confidence.CERTAIN
        and f.explains == "torch"
    )
    assert "torch_cpu.dll" in evidence(f) and "14.38" in evidence(f) and "no warning" in evidence(f)
    assert "vcredist-missing" not in found


def test_missing_atomic_wait_after_a_1114_is_reported_too(env: WindowsEnv) -> None:
    env.add_system(msvcp140=OLD)
    remove(env, f"{env.system32}\\msvcp140_atomic_wait.dll")
    env.add_torch("2.14.1")  # imports the threads/atomic_wait DLLs
    found = by_id(run(env))
    assert found["msvcp140-too-old"].explains == "torch"
    f = found["msvcp140-atomic-wait-missing"]  # the replay stopped at c10.dll; this comes next
    assert f.confidence is Confidence.LIKELY and f.explains is None and "comes next" in f.detail


def test_satellites_are_not_needed_by_older_torch(env: WindowsEnv) -> None:
    env.add_system()
    remove(env, f"{env.system32}\\vcruntime140_threads.dll")
    remove(env, f"{env.system32}\\msvcp140_atomic_wait.dll")
    env.add_torch("2.8.0")
    assert run(env) == []


# -- runtime-older-than-toolset ---------------------------------------------------------------


def test_old_vcruntime140_threads_is_a_warning(env: WindowsEnv) -> None:
    env.add_system(vcruntime140=(14, 38, 33135, 0))
    env.add_torch("2.14.1")  # imports the threads/atomic_wait DLLs
    found = run(env)
    assert [f.id for f in found] == ["runtime-older-than-toolset"]
    f = found[0]
    assert f.severity is Severity.WARNING and f.confidence is Confidence.POSSIBLE
    assert "vcruntime140_threads.dll 14.38.33135.0" in f.title
    # System32's vcruntime140.dll is older too, but python.exe's own copy is the one bound
    assert "vcruntime140.dll" not in f.title.replace("vcruntime140_threads.dll", "")


def test_interpreters_own_vcruntime140_is_not_blamed(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.9.0")  # python.exe's vcruntime140*.dll are 14.38, torch is 14.42
    ctx = diagnose_context(env.snapshot(), env.view())
    assert any(
        "Python311\\vcruntime140.dll" in (e.resolution.path or "")
        for e in ctx.replays[0].simulation.edges
    )
    assert list(check_runtime(ctx)) == []


# -- end to end ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "expected", "code"),
    [
        ("old-system32", "msvcp140-too-old", 1114),
        ("no-redist", "vcredist-missing", 126),
        ("qt-first", "old-msvcp140-preloaded", 1114),
        ("host", "host-process-runtime", 1114),
        ("threads", "vcruntime140-threads-missing", 126),
    ],
)
def test_diagnose_ranks_the_runtime_cause_right_after_the_prediction(
    env: WindowsEnv, case: str, expected: str, code: int
) -> None:
    overrides: Dict[str, object] = {}
    env.add_system(
        msvcp140=OLD
        if case == "old-system32"
        else None
        if case == "no-redist"
        else (14, 44, 35211, 0),
        vcruntime140=None if case == "no-redist" else (14, 44, 35211, 0),
    )
    if case == "threads":
        remove(env, f"{env.system32}\\vcruntime140_threads.dll")
    env.add_torch("2.14.1")  # imports the threads/atomic_wait DLLs
    if case == "qt-first":
        env.loaded.append(_pyqt(env))
    if case == "host":
        overrides = _host(env)
    report = diagnose(env.snapshot(**overrides), view=env.view())
    torch = report.predictions[0]
    assert (torch.outcome, torch.winerror) == ("fails", code)
    assert [f.id for f in report.findings[:2]] == ["predicted-load-failure", expected]
    assert report.findings[1].explains == "torch" and not report.ok


def test_redist_recorded_as_installed_but_files_missing_says_repair(env: WindowsEnv) -> None:
    env.add_system(msvcp140=None, vcruntime140=None)
    env.add_torch("2.9.0")
    snap = env.snapshot(vc_redist_x64="v14.44.35211.00")
    from torchdll.diagnosis import diagnose

    report = diagnose(snap, view=env.view())
    f = next(f for f in report.findings if f.id == "vcredist-missing")
    assert any(ev.label == "registry" and "v14.44.35211.00" in ev.value and "repair" in ev.value
               for ev in f.evidence)
    plain = next(f for f in diagnose(env.snapshot(), view=env.view()).findings if f.id == "vcredist-missing")
    assert not any(ev.label == "registry" for ev in plain.evidence)
