"""The OpenMP family (torchdll.checks.openmp) on simulated Windows machines."""

from __future__ import annotations

from pathlib import Path
from typing import List

import pytest

from tests.support.findings import by_id, evidence, run_check
from torchdll import _data
from torchdll.checks.openmp import check_openmp
from torchdll.diagnosis import diagnose, diagnose_context
from torchdll.report import Confidence, Finding, Severity
from torchdll.testing import WindowsEnv, torch_dlls

IDS = {"libomp140-missing", "omp-duplicate-runtime", "conda-openmp-mix"}
IOMP_EXPORTS = ("omp_get_max_threads", "__kmpc_fork_call")


@pytest.fixture
def env(tmp_path: Path) -> WindowsEnv:
    return WindowsEnv(tmp_path)


def run(env: WindowsEnv, **overrides: object) -> List[Finding]:
    return run_check(check_openmp, env, **overrides)


@pytest.mark.parametrize("version", ["2.3.1", "2.4.1", "2.8.0", "2.9.0"])
def test_a_healthy_machine_has_no_openmp_finding(env: WindowsEnv, version: str) -> None:
    env.add_system()
    env.add_torch(version)
    if version.startswith("2.3"):
        env.add_mkl()
    assert run(env) == []


def test_every_id_is_in_the_catalogue() -> None:
    catalogue = _data.findings_catalogue()
    assert IDS <= set(catalogue) and all(catalogue[i]["family"] == "openmp" for i in IDS)


# -- libomp140-missing --------------------------------------------------------------------------


def test_torch_2_4_0_without_libomp140_explains_the_126_on_fbgemm(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.4.0")
    f = by_id(run(env))["libomp140-missing"]
    assert (
        f.severity is Severity.ERROR
        and f.confidence is Confidence.CERTAIN
        and f.explains == "torch"
    )
    assert "fbgemm.dll" in f.title and "2.4.0" in f.title
    text = evidence(f)
    assert "imported by: fbgemm.dll" in text and "C:\\Windows\\System32" in text
    assert "debug_nonredist" in text
    assert f.commands["cmd"] == (
        "set PY=C:\\Users\\dev\\proj\\.venv\\Scripts\\python.exe",
        '"%PY%" -m pip install "torch==2.4.1"',
    )


def test_cuda_build_fix_keeps_its_index(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.4.0", local="cu121", cuda="12.1")
    f = by_id(run(env))["libomp140-missing"]
    assert (
        f.commands["powershell"][1]
        == '& $py -m pip install "torch==2.4.1" -i https://download.pytorch.org/whl/cu121'
    )


def test_libomp140_from_visual_studio_is_fine(env: WindowsEnv) -> None:
    env.add_system()
    env.add_dll(f"{env.system32}\\libomp140.x86_64.dll", exports=["__kmpc_fork_call"])
    env.add_torch("2.4.0")
    assert "libomp140-missing" not in by_id(run(env))


# -- omp-duplicate-runtime ----------------------------------------------------------------------


def _conda_iomp(env: WindowsEnv) -> str:
    return env.add_dll(
        f"{env.prefix}\\Library\\bin\\libiomp5md.dll",
        exports=IOMP_EXPORTS,
        file_version=(5, 0, 2024, 1),
    )


def test_second_copy_already_loaded_means_an_abort(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.9.0")
    env.loaded.append(_conda_iomp(env))
    f = by_id(run(env))["omp-duplicate-runtime"]
    assert f.severity is Severity.ERROR and f.confidence is Confidence.LIKELY
    assert "OMP: Error #15" in f.title
    text = evidence(f)
    assert "torch\\lib\\libiomp5md.dll" in text and "Library\\bin\\libiomp5md.dll" in text
    assert "already loaded" in text


def test_kmp_duplicate_lib_ok_turns_the_abort_into_a_warning(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.9.0")
    env.loaded.append(_conda_iomp(env))
    f = by_id(run(env, environ={**env.environ, "KMP_DUPLICATE_LIB_OK": "TRUE"}))[
        "omp-duplicate-runtime"
    ]
    assert f.severity is Severity.WARNING and "KMP_DUPLICATE_LIB_OK" in evidence(f)


def test_second_copy_reachable_is_an_import_order_risk(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.9.0")
    _conda_iomp(env)
    f = by_id(run(env))["omp-duplicate-runtime"]
    assert f.severity is Severity.WARNING and f.confidence is Confidence.POSSIBLE
    assert "conda install nomkl" in f.commands["cmd"]  # the copy is in a Library\bin


def test_a_wheel_bundling_its_own_copy_is_found(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.9.0")
    env.add_dll(f"{env.site_packages}\\ctranslate2\\libiomp5md.dll", exports=IOMP_EXPORTS)
    f = by_id(run(env))["omp-duplicate-runtime"]
    assert "ctranslate2" in evidence(f)
    assert f.commands == {}  # no conda here: no conda commands


def test_torch_without_its_own_openmp_has_no_duplicate(env: WindowsEnv) -> None:
    env.add_system()
    dlls = [d for d in torch_dlls("2.9.0") if d.name != "libiomp5md.dll"]
    env.add_torch("2.9.0", dlls=dlls)
    _conda_iomp(env)  # conda's copy is the only one: torch_cpu binds it
    assert "omp-duplicate-runtime" not in by_id(run(env))


# -- conda-openmp-mix ---------------------------------------------------------------------------


def _conda_env(tmp_path: Path, *, llvm: bool = True, intel: bool = True) -> WindowsEnv:
    """A conda environment with a conda-forge-like torch (no libiomp5md.dll in torch\\lib) whose
    fbgemm.dll imports Intel OpenMP by ordinal, and llvm-openmp's shim in Library\\bin."""
    env = WindowsEnv(tmp_path, venv=False, base="C:\\Users\\dev\\miniforge3\\envs\\ml", conda=True)
    env.add_system()
    dlls = []
    for d in torch_dlls("2.5.1"):
        if d.name == "libiomp5md.dll":
            continue
        if d.name == "fbgemm.dll":
            d = type(d)(d.name, {**d.imports, "libiomp5md.dll": (242,)}, d.exports, d.linker)
        dlls.append(d)
    env.add_torch("2.5.1", local=None, dlls=dlls)
    env.add_dll(f"{env.prefix}\\Library\\bin\\libiomp5md.dll", exports=IOMP_EXPORTS)  # the shim
    meta = f"{env.prefix}\\conda-meta"
    if llvm:
        env.add_file(f"{meta}\\llvm-openmp-18.1.8-h2f4c8e9_0.json", "{}")
    if intel:
        env.add_file(f"{meta}\\intel-openmp-2024.2.1-h57928b3_1083.json", "{}")
    env.add_file(f"{meta}\\numpy-1.26.4-py311h0b4df5a_0.json", "{}")
    return env


def test_missing_ordinal_in_the_openmp_shim_explains_the_182(tmp_path: Path) -> None:
    env = _conda_env(tmp_path)
    ctx = diagnose_context(env.snapshot(), env.view())
    assert ctx.replays[0].prediction.winerror == 182
    f = by_id(list(check_openmp(ctx)))["conda-openmp-mix"]
    assert (
        f.severity is Severity.ERROR
        and f.confidence is Confidence.CERTAIN
        and f.explains == "torch"
    )
    text = evidence(f)
    assert "#242" in text and "Library\\bin\\libiomp5md.dll" in text
    assert "intel-openmp" in text and "llvm-openmp" in text
    assert any("--force-reinstall intel-openmp" in c for c in f.commands["cmd"])


def test_both_providers_without_a_failure_is_a_warning(tmp_path: Path) -> None:
    env = _conda_env(tmp_path)
    env.add_dll(
        f"{env.prefix}\\Library\\bin\\libiomp5md.dll", exports=IOMP_EXPORTS, ordinal_base=242
    )  # this copy has the ordinal
    ctx = diagnose_context(env.snapshot(), env.view())
    assert ctx.replays[0].prediction.ok
    f = by_id(list(check_openmp(ctx)))["conda-openmp-mix"]
    assert (
        f.severity is Severity.WARNING and f.confidence is Confidence.LIKELY and f.explains is None
    )


def test_a_single_provider_is_fine(tmp_path: Path) -> None:
    env = _conda_env(tmp_path, llvm=False)
    env.add_dll(
        f"{env.prefix}\\Library\\bin\\libiomp5md.dll", exports=IOMP_EXPORTS, ordinal_base=242
    )
    assert "conda-openmp-mix" not in by_id(run(env))


def test_a_182_on_an_openmp_dll_is_explained_without_markers(tmp_path: Path) -> None:
    env = _conda_env(tmp_path, llvm=False, intel=False)
    f = by_id(run(env))["conda-openmp-mix"]
    assert f.explains == "torch" and "conda-meta" not in evidence(f)


# -- end to end ---------------------------------------------------------------------------------


def test_diagnose_2_4_0_ranks_libomp140_after_the_prediction(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.4.0")
    report = diagnose(env.snapshot(), view=env.view())
    torch = report.predictions[0]
    assert (torch.outcome, torch.winerror) == ("fails", 126)
    assert torch.dll is not None and torch.dll.endswith("torch\\lib\\fbgemm.dll")
    assert [f.id for f in report.findings[:2]] == ["predicted-load-failure", "libomp140-missing"]


def test_diagnose_182_ranks_the_openmp_mix_after_the_prediction(tmp_path: Path) -> None:
    env = _conda_env(tmp_path)
    report = diagnose(env.snapshot(), view=env.view())
    assert report.predictions[0].winerror == 182
    assert [f.id for f in report.findings[:2]] == ["predicted-load-failure", "conda-openmp-mix"]
