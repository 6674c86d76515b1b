"""The PATH family (torchdll.checks.path) on simulated Windows machines, through diagnose().

Every scenario is a :class:`~torchdll.testing.WindowsEnv`: real (tiny) PE files in a mirrored
tree, a snapshot of ``python main.py`` in a venv, and the replay of torch's own loader.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Dict, List, Sequence

import pytest

from torchdll import _data
from torchdll.checks import findings_of
from torchdll.checks.path import check_path
from torchdll.diagnosis import diagnose, diagnose_context
from torchdll.report import Confidence, Finding, Report, Severity
from tests.support.findings import evidence as evidence_text
from torchdll.testing import C10_EXPORTS, MSVCP, TorchDll, WindowsEnv, torch_dlls

CATALOGUE = Path(__file__).resolve().parents[2] / "torchdll" / "data" / "findings" / "path.json"
PATH_IDS = frozenset(json.loads(CATALOGUE.read_text("utf-8"))["findings"])
SEED_ENTRY = "%USERPROFILE%\\proj\\.venv\\Lib\\site-packages\\torch\\lib"
OLD_SITE = "C:\\Users\\dev\\miniconda3\\envs\\old\\Lib\\site-packages"
OLD_LIB = OLD_SITE + "\\torch\\lib"
CONDA = "C:\\Users\\dev\\miniconda3"
TOOLKIT = "C:\\Program Files\\NVIDIA GPU Computing Toolkit\\CUDA\\v12.4\\bin"


def machine(tmp_path: Path, **kw: object) -> WindowsEnv:
    env = WindowsEnv(tmp_path, **kw)  # type: ignore[arg-type]
    env.add_system()
    return env


def run(env: WindowsEnv, **overrides: object) -> Report:
    report = diagnose(env.snapshot(**overrides), view=env.view())
    catalogue = _data.findings_catalogue()
    assert all(f.id in catalogue for f in report.findings)
    return report


def ours(report: Report) -> List[Finding]:
    return [f for f in report.findings if f.id in PATH_IDS]


def only(report: Report, fid: str) -> Finding:
    hits = [f for f in report.findings if f.id == fid]
    assert len(hits) == 1, [f.id for f in report.findings]
    return hits[0]


def ev(finding: Finding) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for e in finding.evidence:
        out.setdefault(e.label, e.value)
    return out


def commands(finding: Finding, shell: str) -> Sequence[str]:
    return finding.commands.get(shell, ())


# --------------------------------------------------------------------------------------------
# healthy machines: nothing from this family
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.9.0", "2.4.1", "2.3.1"])
def test_healthy_machine_has_no_path_findings(tmp_path: Path, version: str) -> None:
    env = machine(tmp_path)
    env.add_torch(version)
    if version.startswith("2.3"):
        env.add_mkl()
    report = run(env)
    assert report.predictions[0].ok
    assert ours(report) == []


def test_healthy_machine_without_venv_or_torch_has_no_path_findings(tmp_path: Path) -> None:
    env = machine(tmp_path, venv=False)
    assert ours(run(env)) == []


def test_other_os_snapshot_yields_nothing(tmp_path: Path) -> None:
    env = machine(tmp_path)
    env.add_torch()
    env.user_path.append(SEED_ENTRY)
    ctx = diagnose_context(env.snapshot(platform="linux"), env.view())
    assert list(check_path(ctx)) == []


# --------------------------------------------------------------------------------------------
# env-dll-dir-on-path: the seed case
# --------------------------------------------------------------------------------------------


def test_seed_case_end_to_end(tmp_path: Path) -> None:
    """The venv's own torch\\lib on the user Path (REG_EXPAND_SZ), a Korean user name."""
    env = machine(tmp_path, user="홍길동")
    lib = env.add_torch("2.9.0")
    env.user_path.append(SEED_ENTRY)
    report = run(env)
    assert report.predictions[0].ok  # torch's first load (0x1100) never searches PATH
    f = only(report, "env-dll-dir-on-path")
    assert f.severity is Severity.WARNING and f.explains is None
    assert f.title == "this environment's torch\\lib is on the user Path"
    e = ev(f)
    reg = "user Path entry #2 (HKCU\\Environment, REG_EXPAND_SZ)"
    assert e[reg] == f"{SEED_ENTRY} (expands to {lib})"
    assert e["process PATH entry #5"] == lib
    assert e["folder"] == lib and "c10.dll" in e["holds"]
    assert "never torch's first LoadLibraryExW" in e["loader rule"]
    assert "python -m torchdll fix-path --user --apply" in commands(f, "powershell")
    assert "python -m torchdll fix-path --user --apply" in commands(f, "cmd")
    ps = commands(f, "powershell")
    assert f"$drop = '{lib}'" in ps
    assert "$env:Path = (($env:Path -split ';') | ? { $_ -ne $drop }) -join ';'" in ps
    for words in ("0x1100", "fallback after a WinError 126", "delay-loaded", "every other process"):
        assert words in f.detail
    assert f.references and f.confidence is Confidence.LIKELY
    assert all(len(c) <= 75 for cmds in f.commands.values() for c in cmds)  # 80 columns rendered
    # the non-ASCII user name is only a note, and nothing else of ours fires
    assert {g.id for g in ours(report)} == {"env-dll-dir-on-path", "non-ascii-paths"}
    assert only(report, "non-ascii-paths").severity is Severity.INFO


def test_seed_entry_in_the_system_path_needs_an_elevated_fix(tmp_path: Path) -> None:
    env = machine(tmp_path)
    lib = env.add_torch()
    env.system_path.append(lib)
    f = only(run(env), "env-dll-dir-on-path")
    assert f.title.endswith("is on the system Path")
    assert "python -m torchdll fix-path --system --apply" in commands(f, "powershell")
    assert any("elevated" in step for step in f.fix)
    assert any(label.startswith("system Path entry #4 (HKLM\\") for label in ev(f))


def test_seed_entry_only_in_the_process_path(tmp_path: Path) -> None:
    env = machine(tmp_path)
    lib = env.add_torch()
    f = only(run(env, process_path=env.process_path() + ";" + lib), "env-dll-dir-on-path")
    assert f.title.endswith("is on the process PATH")
    assert not any("fix-path" in c for c in commands(f, "powershell"))
    assert any("activate script" in step for step in f.fix)


def test_any_env_internal_dll_folder_counts(tmp_path: Path) -> None:
    env = machine(tmp_path)
    env.add_torch()
    cudnn = env.add_dll(f"{env.site_packages}\\nvidia\\cudnn\\bin\\cudnn64_9.dll",
                        exports=["cudnnCreate"])
    env.user_path.append(cudnn.rsplit("\\", 1)[0])
    f = only(run(env), "env-dll-dir-on-path")
    assert f.title == "this environment's nvidia\\cudnn\\bin is on the user Path"
    assert ev(f)["holds"] == "cudnn64_9.dll"


def test_env_dll_dir_bound_by_torch_fallback_is_the_cause(tmp_path: Path) -> None:
    """No VC++ runtime in System32: c10.dll's first load fails with 126, torch's fallback
    searches PATH and binds PyQt5's bundled msvcp140 14.26 from an env folder on the Path:
    c10.dll (MSVC 14.42) fails its initialisation, WinError 1114."""
    env = WindowsEnv(tmp_path)
    env.add_system(msvcp140=None)
    env.add_torch("2.9.0")
    qt = f"{env.site_packages}\\PyQt5\\Qt5\\bin"
    env.add_dll(f"{qt}\\msvcp140.dll", exports=MSVCP,
                file_version=(14, 26, 28720, 3), linker=(14, 26))
    env.user_path.append(qt)
    report = run(env)
    torch = report.predictions[0]
    assert (torch.winerror, torch.dll and torch.dll.rsplit("\\", 1)[-1]) == (1114, "c10.dll")
    f = only(report, "env-dll-dir-on-path")
    assert (f.severity, f.explains, f.confidence) == (Severity.ERROR, "torch", Confidence.CERTAIN)
    bound = ev(f)["bound in the replay (the failure)"]
    assert bound == f"c10.dll imports MSVCP140.dll -> {qt}\\msvcp140.dll [path]"
    assert report.findings.index(f) < 2  # ranked with the prediction, before anything else


def test_env_dll_dir_is_an_error_when_a_foreign_copy_of_its_dlls_is_bound(tmp_path: Path) -> None:
    env = machine(tmp_path)
    lib = env.add_torch()
    env.add_dll(f"{OLD_LIB}\\c10.dll", exports=C10_EXPORTS[:1])
    env.user_path += [OLD_LIB, lib]
    env.loaded.append(f"{OLD_LIB}\\c10.dll")
    f = only(run(env), "env-dll-dir-on-path")
    assert f.severity is Severity.ERROR and f.explains is None  # the foreign folder explains
    assert "foreign copy" in f.detail and OLD_LIB in evidence_text(f)


# --------------------------------------------------------------------------------------------
# foreign-torch-dlls-on-path
# --------------------------------------------------------------------------------------------


def test_foreign_torch_lib_not_bound_is_a_warning(tmp_path: Path) -> None:
    env = machine(tmp_path)
    env.add_torch("2.9.0")
    env.add_torch("2.3.1", site_packages=OLD_SITE)
    env.user_path.append(OLD_LIB)
    report = run(env)
    assert report.predictions[0].ok
    f = only(report, "foreign-torch-dlls-on-path")
    assert f.severity is Severity.WARNING and f.explains is None
    assert f.title == "another environment's torch\\lib is on the user Path"
    assert "torch 2.3.1+cpu in C:\\Users\\dev\\miniconda3\\envs\\old" in f.detail
    assert "python -m torchdll fix-path --user --apply" in commands(f, "cmd")


def test_foreign_c10_loaded_by_a_plugin_before_torch_is_the_cause(tmp_path: Path) -> None:
    """A plugin loaded another environment's c10.dll (found through PATH) before import torch:
    torch's own DLLs import c10.dll by name and get that copy (127)."""
    env = machine(tmp_path)
    env.add_torch("2.9.0")
    env.add_dll(f"{OLD_LIB}\\c10.dll", exports=C10_EXPORTS[:1], linker=(14, 29))
    env.user_path.append(OLD_LIB)
    env.loaded.append(f"{OLD_LIB}\\c10.dll")
    report = run(env)
    assert report.predictions[0].winerror == 127
    f = only(report, "foreign-torch-dlls-on-path")
    assert (f.severity, f.explains, f.confidence) == (Severity.ERROR, "torch", Confidence.CERTAIN)
    assert ev(f)["bound in the replay (the failure)"] == (
        f"torch_cpu.dll imports c10.dll -> {OLD_LIB}\\c10.dll [loaded-module]")
    causes = [g for g in report.findings if g.explains == "torch"]
    assert report.findings[: len(causes)] == tuple(causes) and f in causes


def test_foreign_dll_bound_by_torch_fallback_after_126_is_the_cause(tmp_path: Path) -> None:
    """uv.dll is missing from this torch\\lib: the first load of torch_cpu.dll fails with 126,
    torch puts its folders before PATH and retries with LoadLibraryW, which walks PATH and takes
    the old environment's uv.dll -- a copy that lacks the symbol (127)."""
    env = machine(tmp_path)
    env.add_torch("2.9.0", dlls=[d for d in torch_dlls("2.9.0") if d.name != "uv.dll"])
    env.add_torch("2.3.1", site_packages=OLD_SITE, dlls=[
        TorchDll("c10.dll", exports=C10_EXPORTS[:1]), TorchDll("uv.dll", exports=("uv_run",))])
    env.user_path.append(OLD_LIB)
    report = run(env)
    torch = report.predictions[0]
    assert torch.winerror == 127 and "patch_path" in " ".join(torch.steps)
    f = only(report, "foreign-torch-dlls-on-path")
    assert f.explains == "torch" and f.severity is Severity.ERROR
    assert ev(f)["bound in the replay (the failure)"] == (
        f"torch_cpu.dll imports uv.dll -> {OLD_LIB}\\uv.dll [path]")
    assert "binds a file from it and that binding is the failure" in f.detail


def test_other_environments_dll_folder(tmp_path: Path) -> None:
    env = machine(tmp_path)
    env.add_torch()
    folder = f"{OLD_SITE}\\nvidia\\cublas\\bin"
    env.add_dll(f"{folder}\\cublas64_12.dll", exports=["cublasCreate_v2"])
    env.system_path.append(folder)
    f = only(run(env), "foreign-torch-dlls-on-path")
    assert f.title == "another environment's DLL folder (nvidia\\cublas\\bin) is on the system Path"
    assert f.severity is Severity.WARNING


# --------------------------------------------------------------------------------------------
# conda-base-path-mix and runtime-dlls-on-path
# --------------------------------------------------------------------------------------------


def _conda_base(env: WindowsEnv, *, msvcp: bool = False) -> str:
    env.add_file(f"{CONDA}\\conda-meta\\history", "==> base <==\n")
    env.add_dll(f"{CONDA}\\python.exe", dll=False, imports={"KERNEL32.dll": ["GetTickCount"]})
    lib = f"{CONDA}\\Library\\bin"
    env.add_dll(f"{lib}\\libiomp5md.dll", exports=["__kmpc_fork_call"], linker=(14, 29))
    env.add_dll(f"{lib}\\mkl_core.2.dll", exports=["mkl_serv_malloc"], linker=(14, 29))
    if msvcp:
        env.add_dll(f"{CONDA}\\msvcp140.dll", exports=MSVCP,
                    file_version=(14, 29, 30133, 0), linker=(14, 29))
    return lib


def test_conda_base_library_bin_on_path(tmp_path: Path) -> None:
    env = machine(tmp_path)
    env.add_torch()
    lib = _conda_base(env)
    env.user_path.append(lib)
    f = only(run(env), "conda-base-path-mix")
    assert f.severity is Severity.WARNING and f.explains is None
    assert f.title == "another conda installation's Library\\bin is on the user Path"
    assert ev(f)["holds"] == "libiomp5md.dll, mkl_core.2.dll"
    assert "python -m torchdll fix-path --user --policy strict --apply" in commands(f, "powershell")


def test_own_conda_base_is_not_foreign(tmp_path: Path) -> None:
    env = WindowsEnv(tmp_path, base=CONDA, conda=True)
    env.add_system()
    env.add_torch()
    env.user_path.append(_conda_base(env))
    assert [f.id for f in ours(run(env))] == []


def test_conda_root_runtime_bound_by_fallback_explains_1114(tmp_path: Path) -> None:
    """No VC++ runtime in System32, conda base's root on the Path: torch's fallback after the
    126 binds conda's msvcp140 14.29 and c10.dll fails to initialise (1114)."""
    env = WindowsEnv(tmp_path)
    env.add_system(msvcp140=None)
    env.add_torch("2.9.0")
    _conda_base(env, msvcp=True)
    env.user_path.append(CONDA)
    report = run(env)
    assert report.predictions[0].winerror == 1114
    f = only(report, "conda-base-path-mix")
    assert f.title == "another conda installation's root is on the user Path"
    assert f.severity is Severity.ERROR and f.explains == "torch"
    assert ev(f)["bound in the replay (the failure)"].endswith(f"{CONDA}\\msvcp140.dll [path]")


def test_runtime_dlls_folder_only_when_it_matters(tmp_path: Path) -> None:
    env = machine(tmp_path)
    env.add_torch()
    app = "C:\\Tools\\app"
    env.add_dll(f"{app}\\msvcp140.dll", exports=["_Mtx_lock"])  # System32 has one: not reported
    env.user_path.append(app)
    assert ours(run(env)) == []
    env.add_dll(f"{app}\\libiomp5md.dll", exports=["__kmpc_fork_call"])  # System32 lacks it
    f = only(run(env), "runtime-dlls-on-path")
    assert f.severity is Severity.WARNING and "libiomp5md.dll" in f.detail


# --------------------------------------------------------------------------------------------
# system-cuda-cudnn-shadowing
# --------------------------------------------------------------------------------------------


def _toolkit(env: WindowsEnv) -> None:
    env.add_dll(f"{TOOLKIT}\\cublas64_12.dll", exports=["cublasCreate_v2"])
    env.add_dll(f"{TOOLKIT}\\cudnn64_9.dll", exports=["cudnnCreate"])
    env.add_dll(f"{TOOLKIT}\\cudart64_12.dll", exports=["cudaMalloc"])
    env.system_path.append(TOOLKIT)


def test_cuda_toolkit_on_path_with_a_cpu_torch_is_a_note(tmp_path: Path) -> None:
    env = machine(tmp_path)
    env.add_torch()
    _toolkit(env)
    f = only(run(env), "system-cuda-cudnn-shadowing")
    assert f.severity is Severity.INFO and "CPU build" in f.detail
    assert ev(f)["holds"] == "cublas64_12.dll, cudnn64_9.dll"


def test_cuda_toolkit_shadowing_a_cuda_torch(tmp_path: Path) -> None:
    env = machine(tmp_path)
    dlls = [*torch_dlls("2.9.0"), TorchDll("cublas64_12.dll", exports=("cublasCreate_v2",)),
            TorchDll("cudnn64_9.dll", exports=("cudnnCreate",))]
    env.add_torch("2.9.0", local="cu124", cuda="12.4", dlls=dlls)
    _toolkit(env)
    f = only(run(env), "system-cuda-cudnn-shadowing")
    assert f.severity is Severity.WARNING
    assert "Same names as torch's own: cublas64_12.dll, cudnn64_9.dll" in f.detail


def test_zluda_nvcuda_provider_is_not_reported(tmp_path: Path) -> None:
    env = machine(tmp_path)
    env.add_torch()
    env.add_dll("C:\\zluda\\nvcuda.dll", exports=["cuInit"])
    env.add_dll("C:\\zluda\\cublas64_11.dll", exports=["cublasCreate_v2"])
    env.user_path.append("C:\\zluda")
    assert ours(run(env)) == []


# --------------------------------------------------------------------------------------------
# dlls-copied-to-system32
# --------------------------------------------------------------------------------------------


def test_dlls_copied_to_system32(tmp_path: Path) -> None:
    env = machine(tmp_path)
    env.add_torch("2.9.0")
    env.add_system(extra=["c10.dll", "libiomp5md.dll", "mkl_core.2.dll"])
    report = run(env)
    f = only(report, "dlls-copied-to-system32")
    assert f.severity is Severity.WARNING and f.explains is None
    assert ev(f)["holds"] == "c10.dll, libiomp5md.dll, mkl_core.2.dll"
    assert "Remove-Item 'C:\\Windows\\System32\\c10.dll'" in commands(f, "powershell")
    assert 'del "C:\\Windows\\System32\\c10.dll"' in commands(f, "cmd")


def test_libomp140_in_system32_bound_by_torch_240_is_the_cause(tmp_path: Path) -> None:
    """torch 2.4.0's fbgemm.dll needs libomp140.x86_64.dll; a copy from a DLL site in System32
    (without the symbols) is what the loader takes."""
    env = machine(tmp_path)
    env.add_torch("2.4.0")
    env.add_system(extra=["libomp140.x86_64.dll"])
    report = run(env)
    assert report.predictions[0].winerror == 127
    f = only(report, "dlls-copied-to-system32")
    assert f.severity is Severity.ERROR and f.explains == "torch"
    assert ev(f)["bound in the replay (the failure)"].endswith(
        "fbgemm.dll imports libomp140.x86_64.dll -> "
        "C:\\Windows\\System32\\libomp140.x86_64.dll [system32]")


def test_signed_microsoft_libomp140_is_not_reported(tmp_path: Path) -> None:
    env = machine(tmp_path)
    env.add_torch("2.4.0")
    env.add_dll("C:\\Windows\\System32\\libomp140.x86_64.dll", exports=["__kmpc_fork_call"],
                signed=True, file_version=(20, 1, 8, 0),
                version_strings={"CompanyName": "Microsoft Corporation"})
    report = run(env)
    assert report.predictions[0].ok
    assert ours(report) == []


# --------------------------------------------------------------------------------------------
# user-site-shadowing
# --------------------------------------------------------------------------------------------


def _user_site(env: WindowsEnv) -> str:
    major, minor = env.python_version.split(".")[:2]
    return f"{env.user_home}\\AppData\\Roaming\\Python\\Python{major}{minor}\\site-packages"


def test_torch_in_user_site_and_in_the_environment(tmp_path: Path) -> None:
    env = machine(tmp_path, venv=False)
    env.add_torch("2.9.0")
    env.add_torch("2.8.0", site_packages=_user_site(env))
    f = only(run(env), "user-site-shadowing")
    assert f.severity is Severity.WARNING
    assert ev(f)["user site"] == _user_site(env) + "\\torch"
    assert "$env:PYTHONNOUSERSITE = '1'" in commands(f, "powershell")
    assert "& $py -m pip uninstall torch torchvision torchaudio" in commands(f, "powershell")
    assert "set PYTHONNOUSERSITE=1" in commands(f, "cmd")


def test_companion_in_user_site_mixes_with_the_environments_torch(tmp_path: Path) -> None:
    env = machine(tmp_path, venv=False)
    env.add_torch("2.9.0")
    env.add_companion("torchaudio", "2.1.0", site_packages=_user_site(env))
    f = only(run(env), "user-site-shadowing")
    assert f.severity is Severity.WARNING and "different places" in f.detail


def test_user_site_enabled_in_a_venv_is_a_note(tmp_path: Path) -> None:
    env = machine(tmp_path)
    env.add_torch()
    env.add_file(_user_site(env) + "\\README.txt", "x")
    snap = env.snapshot()
    py = dataclasses.replace(snap.python, user_site_enabled=True)
    report = run(env, python=py)
    f = only(report, "user-site-shadowing")
    assert f.severity is Severity.INFO and f.title == "the user site is enabled in this venv"


def test_user_site_disabled_in_a_venv_is_ignored(tmp_path: Path) -> None:
    env = machine(tmp_path)
    env.add_torch()
    env.add_torch("2.8.0", site_packages=_user_site(env))  # not importable from this venv
    assert ours(run(env)) == []


# --------------------------------------------------------------------------------------------
# cwd-source-tree-shadowing
# --------------------------------------------------------------------------------------------


def test_source_checkout_in_the_script_folder(tmp_path: Path) -> None:
    env = machine(tmp_path)
    env.add_torch()
    env.add_file(f"{env.cwd}\\torch\\__init__.py", "# source checkout\n")
    f = only(run(env), "cwd-source-tree-shadowing")
    assert f.severity is Severity.ERROR and f.explains == "torch"
    assert ev(f) == {"sys.path[0]": env.cwd, "package": f"{env.cwd}\\torch"}
    assert "DLL load failed while importing _C" in f.detail


def test_built_tree_and_torchvision_checkout(tmp_path: Path) -> None:
    env = machine(tmp_path)
    env.add_torch()
    env.add_file(f"{env.cwd}\\torch\\__init__.py", "")
    env.add_dll(f"{env.cwd}\\torch\\_C.cp311-win_amd64.pyd", exports=["PyInit__C"])
    env.add_file(f"{env.cwd}\\torchvision\\__init__.py", "")
    found = {f.title: f for f in ours(run(env)) if f.id == "cwd-source-tree-shadowing"}
    torch = found["a torch folder in the script's folder shadows the installed torch"]
    vision = found["a torchvision folder in the script's folder shadows the installed torchvision"]
    assert torch.severity is Severity.WARNING and torch.explains is None
    assert vision.severity is Severity.ERROR and "torchvision::nms" in vision.detail


def test_no_script_folder_package_when_sys_path0_is_site_packages(tmp_path: Path) -> None:
    env = machine(tmp_path)
    env.add_torch()
    snap = env.snapshot()
    py = dataclasses.replace(snap.python, sys_path=(env.site_packages,))
    assert [f.id for f in ours(run(env, python=py))] == []


# --------------------------------------------------------------------------------------------
# path-relative-or-empty-entries, path-quoted-entry
# --------------------------------------------------------------------------------------------


def test_relative_and_empty_entries(tmp_path: Path) -> None:
    env = machine(tmp_path)
    env.add_torch()
    env.user_path += ["", "bin"]
    f = only(run(env), "path-relative-or-empty-entries")
    assert f.severity is Severity.WARNING and "planting" in f.title
    assert [e.label for e in f.evidence] == [
        "user Path entry #2 (HKCU\\Environment, REG_EXPAND_SZ)",
        "user Path entry #3 (HKCU\\Environment, REG_EXPAND_SZ)"]
    text = evidence_text(f)
    assert "'': an empty entry" in text and "'bin': relative" in text
    assert "python -m torchdll fix-path --user --apply" in commands(f, "powershell")


def test_only_empty_entries_are_a_note(tmp_path: Path) -> None:
    env = machine(tmp_path)
    env.add_torch()
    env.system_path.insert(1, "")
    f = only(run(env), "path-relative-or-empty-entries")
    assert f.severity is Severity.INFO and f.title == "empty entries on the Path"


def test_quoted_entry(tmp_path: Path) -> None:
    env = machine(tmp_path)
    env.add_torch()
    env.add_dll("C:\\Program Files\\Foo\\foo.dll")
    env.user_path.append('"C:\\Program Files\\Foo"')
    report = run(env)
    f = only(report, "path-quoted-entry")
    assert f.severity is Severity.INFO and f.confidence is Confidence.CERTAIN
    assert len(f.evidence) == 1  # the registry entry, not its copy in the process PATH again
    assert any('replace "C:\\Program Files\\Foo" with C:\\Program Files\\Foo' in s for s in f.fix)


# --------------------------------------------------------------------------------------------
# non-ascii-paths, report plumbing, catalogue
# --------------------------------------------------------------------------------------------


def test_non_ascii_torch_path_is_only_a_note(tmp_path: Path) -> None:
    env = machine(tmp_path, user="José")
    env.add_torch()
    report = run(env)
    assert report.predictions[0].ok
    f = only(report, "non-ascii-paths")
    assert f.severity is Severity.INFO and "Not a loader problem" in f.detail
    assert ev(f)["torch"] == "C:\\Users\\José\\proj\\.venv\\Lib\\site-packages\\torch"


def test_findings_serialise_and_check_runs_standalone(tmp_path: Path) -> None:
    env = machine(tmp_path, user="홍길동")
    env.add_torch()
    env.user_path += [SEED_ENTRY, "bin"]
    ctx = diagnose_context(env.snapshot(), env.view())
    found = findings_of(ctx, [check_path])
    assert {f.id for f in found} == {
        "env-dll-dir-on-path", "path-relative-or-empty-entries", "non-ascii-paths"}
    report = Report(findings=tuple(found))
    data = json.loads(json.dumps(report.to_dict(), ensure_ascii=False))
    assert data["findings"][0]["commands"]["powershell"]


def test_catalogue_is_complete() -> None:
    doc = json.loads(CATALOGUE.read_text("utf-8"))
    assert doc["_provenance"]
    merged = _data.findings_catalogue()
    for fid, entry in doc["findings"].items():
        assert entry["severity"] in ("error", "warning", "info"), fid
        assert entry["title"] and entry["summary"] and entry["references"], fid
        assert merged[fid]["family"] == "path"
    source = (CATALOGUE.parents[2] / "checks" / "path.py").read_text("utf-8")
    for fid in doc["findings"]:
        assert f'"{fid}"' in source, fid
