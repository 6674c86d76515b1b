"""The replay of torch's own loader (torch/__init__.py) on synthetic Windows machines."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchdll.diagnosis import diagnose_context
from torchdll.installs import glob_order
from torchdll.testing import WindowsEnv, torch_dlls
from torchdll.torchload import loader_variant


@pytest.fixture
def env(tmp_path: Path) -> WindowsEnv:
    return WindowsEnv(tmp_path)


def replay(env: WindowsEnv):  # type: ignore[no-untyped-def]
    ctx = diagnose_context(env.snapshot(), env.view())
    assert ctx.replays, "no torch found"
    return ctx.replays[0]


@pytest.mark.parametrize(
    ("version", "paths", "probe"),
    [
        ("1.5.1", 2, 2),
        ("2.2.2", 3, 3),
        ("2.3.1", 4, 3),
        ("2.8.0", 5, 3),
        ("2.9.0", 5, 3),
        ("2.15.0", 5, 3),
    ],
)
def test_loader_variants_follow_the_release_history(version: str, paths: int, probe: int) -> None:
    v = loader_variant(version)
    assert len(v.dll_paths) == paths and len(v.vc_probe) == probe
    assert v.dll_paths[0] == "torch_lib"


def test_healthy_machine_loads_every_dll_in_glob_order(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.9.0")
    r = replay(env)
    assert r.prediction.ok
    preloads = [s for s in r.steps if s.action == "preload"]
    names = [s.target.rsplit("\\", 1)[-1] for s in preloads]
    assert names == glob_order(d.name for d in torch_dlls("2.9.0"))
    assert all(s.flags == 0x1100 and s.result is not None and s.result.ok for s in preloads)
    assert [s.action for s in r.steps][-1] == "import_pyd"
    assert r.dll_paths == (f"{env.site_packages}\\torch\\lib",)
    assert not r.path_patched


def test_glob_order_is_ntfs_upper_case_order() -> None:
    assert glob_order(["_C.pyd", "c10.dll", "Torch.dll", "torch_cpu.dll"]) == [
        "c10.dll", "Torch.dll", "torch_cpu.dll", "_C.pyd"]


def test_old_msvcp140_in_app_dir_predicts_1114_on_c10(tmp_path: Path) -> None:
    env = WindowsEnv(tmp_path, base="C:\\Users\\dev\\miniconda3", conda=True)
    env.add_system()
    env.add_dll(f"{env.base}\\msvcp140.dll", exports=("_Mtx_lock", "?_Xlength_error@std@@YAXPEBD@Z", "_Thrd_yield"),
                file_version=(14, 29, 30133, 0))
    env.add_torch("2.9.0")
    r = replay(env)
    p = r.prediction
    assert (p.outcome, p.winerror) == ("fails", 1114)
    assert p.dll is not None and p.dll.endswith("\\torch\\lib\\c10.dll")
    assert p.culprit_path == f"{env.base}\\msvcp140.dll"
    assert "app-dir" in (p.culprit or "") and "14.29" in (p.culprit or "")
    assert p.message is not None and p.message.startswith("OSError: [WinError 1114]")


def test_same_old_runtime_is_harmless_for_torch_built_before_14_40(tmp_path: Path) -> None:
    env = WindowsEnv(tmp_path, base="C:\\Users\\dev\\miniconda3", conda=True)
    env.add_system()
    env.add_dll(f"{env.base}\\msvcp140.dll", exports=("_Mtx_lock", "?_Xlength_error@std@@YAXPEBD@Z", "_Thrd_yield"),
                file_version=(14, 29, 30133, 0))
    env.add_torch("2.8.0")  # MSVC 14.38
    assert replay(env).prediction.ok


def test_missing_mkl_fails_shm_after_the_path_fallback(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.3.1")
    r = replay(env)
    assert (r.prediction.winerror, r.prediction.dll.rsplit("\\", 1)[-1]) == (126, "shm.dll")  # type: ignore[union-attr]
    assert r.path_patched
    actions = [s.action for s in r.steps]
    assert actions.index("patch_path") < actions.index("fallback")
    assert r.failing is not None and r.failing.call.flags == 0  # the LoadLibraryW retry failed
    assert "mkl_intel_thread.1.dll" in (r.prediction.culprit or "")


def test_mkl_in_library_bin_is_added_by_torch_and_found(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.3.1")
    env.add_mkl()
    r = replay(env)
    assert r.prediction.ok
    assert f"{env.prefix}\\Library\\bin" in r.dll_paths


def test_126_fallback_can_be_rescued_by_path(env: WindowsEnv) -> None:
    # libomp140 missing for torch 2.4.0's fbgemm.dll unless a folder on PATH supplies it
    env.add_system()
    env.add_torch("2.4.0")
    assert replay(env).prediction.winerror == 126
    env.add_dll("C:\\VS\\bin\\libomp140.x86_64.dll", exports=("__kmpc_fork_call",))
    env.user_path.append("C:\\VS\\bin")
    r = replay(env)
    assert r.prediction.ok and r.path_patched


def test_vc_runtime_missing_is_warned_and_fails_c10(env: WindowsEnv) -> None:
    env.add_system(msvcp140=None, vcruntime140=None)
    env.add_torch("2.9.0")
    r = replay(env)
    assert r.vc_probe_failed == ("msvcp140.dll",)  # vcruntime140 is next to python.exe
    assert any(s.action == "warning" for s in r.steps)
    assert r.prediction.winerror == 126
    assert r.prediction.dll is not None and r.prediction.dll.endswith("c10.dll")


def test_c_pyd_failure_is_an_import_error(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.9.0")
    # a torch_python.dll that no longer exports what _C.pyd imports
    env.add_dll(f"{env.site_packages}\\torch\\lib\\torch_python.dll", exports=("somethingElse",),
                imports={"c10.dll": ["?c10_alloc@c10@@YAPEAX_K@Z"]})
    p = replay(env).prediction
    assert p.winerror == 127
    assert p.message is not None and p.message.startswith("ImportError: DLL load failed while importing _C")


def test_loaded_foreign_c10_breaks_torch_cpu_with_127(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.9.0")
    old = env.add_dll("C:\\old\\torch\\lib\\c10.dll", exports=("?c10_alloc@c10@@YAPEAX_K@Z",))
    snap = env.snapshot(loaded_modules=(*env.loaded, old))
    r = diagnose_context(snap, env.view()).replays[0]
    assert r.prediction.winerror == 127
    assert r.prediction.culprit_path == old and r.prediction.rule == "loaded-module"
