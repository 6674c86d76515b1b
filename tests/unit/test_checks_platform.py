"""The platform family (torchdll.checks.platform) on simulated Windows machines."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, List, Sequence

import pytest

from torchdll import _data
from torchdll.checks.platform import check_platform
from torchdll.diagnosis import diagnose, diagnose_context
from torchdll.model import Machine
from torchdll.report import Confidence, Finding, Severity
from torchdll.snapshot import Snapshot
from tests.support.findings import by_id, evidence, run_check
from torchdll.testing import MSVCP, TorchDll, WindowsEnv, torch_dlls

IDS = {
    "wrong-architecture-193",
    "cuda-wheel-without-nvidia-driver",
    "pagefile-commit-1455",
    "app-control-4551",
    "mkl-userbase-2.3.0",
    "ms-store-python",
    "long-path-partial-install",
}
WIN10 = "10.0.19045"  # no Smart App Control on Windows 10
STORE_ID = "PythonSoftwareFoundation.Python.3.11_qbz5n2kfra8p0"


@pytest.fixture
def env(tmp_path: Path) -> WindowsEnv:
    return WindowsEnv(tmp_path)


def run(env: WindowsEnv, **overrides: object) -> List[Finding]:
    return run_check(check_platform, env, **overrides)


def run_future(env: WindowsEnv, **fields: object) -> List[Finding]:
    """With the optional snapshot facts (smart_app_control, commit_limit...), through JSON as a
    snapshot file from another machine would come."""
    snap = Snapshot.from_json(env.snapshot(**fields).to_json())
    return list(check_platform(diagnose_context(snap, env.view())))


def cuda_dlls(version: str = "2.5.1") -> Sequence[TorchDll]:
    return tuple(torch_dlls(version)) + (
        TorchDll("caffe2_nvrtc.dll", {"nvcuda.dll": ("cuInit",), "VCRUNTIME140.dll": ("memcpy",)}),
        TorchDll("cudart64_12.dll", {"KERNEL32.dll": ("GetTickCount",)}),
    )


# -- healthy machines ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.3.1", "2.4.1", "2.8.0", "2.9.0"])
def test_a_healthy_machine_has_no_platform_finding(env: WindowsEnv, version: str) -> None:
    env.add_system()
    env.add_torch(version)
    if version.startswith("2.3"):
        env.add_mkl()
    assert run(env, os_release=WIN10) == []


def test_on_windows_11_without_the_smart_app_control_state_there_is_no_note(env: WindowsEnv) -> None:
    """An unknown Smart App Control state is not reported: it would be noise on every healthy
    Windows 11 machine. The state, when the snapshot has it, decides (see the tests below)."""
    env.add_system()
    env.add_torch("2.9.0")
    assert run(env) == []


def test_every_id_is_in_the_catalogue() -> None:
    catalogue = _data.findings_catalogue()
    assert IDS <= set(catalogue) and all(catalogue[i]["family"] == "platform" for i in IDS)


# -- wrong-architecture-193 ---------------------------------------------------------------------


def test_32_bit_python_explains_the_193(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.9.0")
    py = dataclasses.replace(env.snapshot().python, bits=32)
    found = run(env, machine="x86", python=py)
    f = by_id(found)["wrong-architecture-193"]
    assert (
        f.severity is Severity.ERROR
        and f.confidence is Confidence.CERTAIN
        and f.explains == "torch"
    )
    assert "x86 Python" in f.title and "x64" in f.title
    assert any("py -0p" in c for c in f.commands["powershell"])
    assert [x.id for x in found] == ["wrong-architecture-193"]  # nothing else matters yet


def test_arm64_python_with_x64_torch(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.9.0")
    f = by_id(run(env, machine="arm64"))["wrong-architecture-193"]
    assert "arm64" in f.title and "x64 CPython" in f.fix[0]


def test_damaged_torch_dll_named_by_path_is_the_193(env: WindowsEnv) -> None:
    env.add_system()
    lib = env.add_torch("2.9.0")
    env.add_file(f"{lib}\\uv.dll", b"MZ" + b"\0" * 30)  # truncated
    ctx = diagnose_context(env.snapshot(), env.view())
    assert ctx.replays[0].prediction.winerror == 193
    f = by_id(list(check_platform(ctx)))["wrong-architecture-193"]
    assert (
        f.explains == "torch" and "uv.dll" in evidence(f) and "not a valid PE image" in evidence(f)
    )


def test_only_a_32_bit_copy_of_a_dependency(env: WindowsEnv) -> None:
    env.add_system(msvcp140=None)
    env.add_dll(f"{env.base}\\msvcp140.dll", exports=MSVCP, machine=Machine.I386)
    env.add_torch("2.9.0")
    f = by_id(run(env))["wrong-architecture-193"]
    assert f.severity is Severity.ERROR and f.explains == "torch"
    assert "built for x86" in evidence(f) and "msvcp140.dll" in f.title


def test_a_skipped_32_bit_copy_is_only_info(env: WindowsEnv) -> None:
    env.add_system()
    env.add_dll(f"{env.base}\\msvcp140.dll", exports=MSVCP, machine=Machine.I386)
    env.add_torch("2.9.0")
    f = by_id(run(env))["wrong-architecture-193"]
    assert f.severity is Severity.INFO and f.explains is None


# -- cuda-wheel-without-nvidia-driver and pagefile-commit-1455 ----------------------------------


def test_cuda_build_without_driver_explains_the_126_on_caffe2_nvrtc(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.5.1", local="cu121", cuda="12.1", dlls=cuda_dlls())
    f = by_id(run(env))["cuda-wheel-without-nvidia-driver"]
    assert (
        f.severity is Severity.ERROR
        and f.confidence is Confidence.CERTAIN
        and f.explains == "torch"
    )
    assert "caffe2_nvrtc.dll" in f.title and "CUDA 12.1" in evidence(f)
    assert any("whl/cpu" in c for c in f.commands["cmd"])
    assert any("uninstall" in c for c in f.commands["cmd"])


def test_zluda_on_path_rescues_the_import(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.5.1", local="cu121", cuda="12.1", dlls=cuda_dlls())
    env.add_dll("C:\\ZLUDA\\nvcuda.dll", exports=["cuInit"])
    env.user_path.append("C:\\ZLUDA")
    ctx = diagnose_context(env.snapshot(), env.view())
    assert ctx.replays[0].prediction.ok and ctx.replays[0].path_patched
    f = by_id(list(check_platform(ctx)))["cuda-wheel-without-nvidia-driver"]
    assert f.severity is Severity.INFO and "C:\\ZLUDA" in f.title and "(ZLUDA)" in evidence(f)


def test_cuda_build_with_the_driver_is_fine(env: WindowsEnv) -> None:
    env.add_system(extra=["nvcuda.dll"])
    env.add_dll(f"{env.system32}\\nvcuda.dll", exports=["cuInit"])
    env.add_torch("2.5.1", local="cu121", cuda="12.1", dlls=cuda_dlls())
    found = by_id(run(env, os_release=WIN10))
    assert "cuda-wheel-without-nvidia-driver" not in found
    f = found["pagefile-commit-1455"]  # CUDA builds only
    assert f.severity is Severity.INFO and f.confidence is Confidence.POSSIBLE
    assert "not in this snapshot" in evidence(f)


def test_pagefile_with_a_low_commit_limit_is_a_warning(env: WindowsEnv) -> None:
    env.add_system()
    env.add_dll(f"{env.system32}\\nvcuda.dll", exports=["cuInit"])
    env.add_torch("2.5.1", local="cu121", cuda="12.1", dlls=cuda_dlls())
    f = by_id(run_future(env, commit_limit=8 << 30, commit_available=0))["pagefile-commit-1455"]
    assert f.severity is Severity.WARNING and f.confidence is Confidence.LIKELY
    assert "0 MiB available of 8192 MiB" in evidence(f)


def test_cpu_build_has_no_cuda_finding(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.5.1")
    found = by_id(run(env))
    assert "cuda-wheel-without-nvidia-driver" not in found and "pagefile-commit-1455" not in found


# -- app-control-4551 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (1, (Severity.WARNING, Confidence.LIKELY)),
        (2, (Severity.INFO, Confidence.POSSIBLE)),
        (0, None),
    ],
)
def test_smart_app_control_state_decides(env: WindowsEnv, state: int, expected: object) -> None:
    env.add_system()
    env.add_torch("2.9.0")
    f = by_id(run_future(env, smart_app_control=state)).get("app-control-4551")
    assert (None if f is None else (f.severity, f.confidence)) == expected


def test_signed_torch_dlls_are_not_reported(env: WindowsEnv) -> None:
    env.add_system()
    lib = env.add_torch("2.9.0")
    for d in torch_dlls("2.9.0"):
        env.add_dll(f"{lib}\\{d.name}", imports=d.imports, exports=d.exports, signed=True)
    env.add_dll(
        f"{env.site_packages}\\torch\\_C.cp311-win_amd64.pyd",
        imports={"torch_python.dll": ["initModule"]},
        exports=["PyInit__C"],
        signed=True,
    )
    assert "app-control-4551" not in by_id(run_future(env, smart_app_control=1))


# -- mkl-userbase-2.3.0 -------------------------------------------------------------------------


def _user_install(env: WindowsEnv, version: str) -> None:
    site = f"{env.user_home}\\AppData\\Roaming\\Python\\Python311\\site-packages"
    env.add_system()
    env.add_torch(version, site_packages=site)
    env.add_mkl(f"{env.user_home}\\AppData\\Roaming\\Python\\Library\\bin")


def test_torch_2_3_0_user_install_explains_the_126_on_shm(tmp_path: Path) -> None:
    env = WindowsEnv(tmp_path, venv=False)
    _user_install(env, "2.3.0")
    f = by_id(run(env))["mkl-userbase-2.3.0"]
    assert (
        f.severity is Severity.ERROR
        and f.confidence is Confidence.CERTAIN
        and f.explains == "torch"
    )
    assert "mkl_intel_thread.1.dll" in evidence(f) and "added in 2.3.1" in evidence(f)
    assert '--user "torch==2.3.1"' in f.commands["cmd"][1]
    assert "os.add_dll_directory" in f.fix[2]


def test_torch_2_3_1_adds_the_user_base(tmp_path: Path) -> None:
    env = WindowsEnv(tmp_path, venv=False)
    _user_install(env, "2.3.1")
    ctx = diagnose_context(env.snapshot(), env.view())
    assert ctx.replays[0].prediction.ok
    assert "mkl-userbase-2.3.0" not in by_id(list(check_platform(ctx)))


# -- ms-store-python ----------------------------------------------------------------------------


def test_store_python_is_named(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.9.0")
    py = dataclasses.replace(
        env.snapshot().python,
        executable=f"{env.user_home}\\AppData\\Local\\Microsoft\\WindowsApps\\{STORE_ID}\\python.exe",
        base_prefix="C:\\Program Files\\WindowsApps\\PythonSoftwareFoundation.Python.3.11_"
        "3.11.2544.0_x64__qbz5n2kfra8p0",
        userbase=f"{env.user_home}\\AppData\\Local\\Packages\\{STORE_ID}\\LocalCache\\local-packages",
    )
    f = by_id(run(env, python=py))["ms-store-python"]
    assert f.severity is Severity.INFO and f.confidence is Confidence.CERTAIN
    assert "LocalCache\\local-packages" in evidence(f)


def test_the_windowsapps_alias_folder_on_path_is_not_store_python(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.9.0")
    assert any("WindowsApps" in p for p in env.user_path)
    assert "ms-store-python" not in by_id(run(env))


# -- long-path-partial-install ------------------------------------------------------------------


def _deep(env: WindowsEnv, depth: int) -> str:
    env.site_packages = f"{env.prefix}\\{'d' * depth}\\Lib\\site-packages"
    env.add_system()
    env.add_torch("2.9.0")
    return env.site_packages


def _add_record_line(env: WindowsEnv, site: str, rel: str) -> None:
    record = f"{site}\\torch-2.9.0+cpu.dist-info\\RECORD"
    env.add_file(record, env.files[record].decode() + f"{rel},sha256=AAAA,10\n")


def test_files_past_max_path_that_pip_never_wrote(env: WindowsEnv) -> None:
    site = _deep(env, 120)
    rel = (
        "torch-2.9.0+cpu.dist-info/licenses/third_party/kineto/libkineto/third_party/"
        + "x" * 80
        + ".txt"
    )
    _add_record_line(env, site, rel)
    f = by_id(run(env))["long-path-partial-install"]
    assert f.severity is Severity.ERROR and f.confidence is Confidence.CERTAIN
    assert "missing" in f.title and "LongPathsEnabled" in evidence(f)
    assert any("LongPathsEnabled" in c for c in f.commands["cmd"])


def test_paths_past_max_path_that_exist_are_a_warning(env: WindowsEnv) -> None:
    _deep(env, 200)
    f = by_id(run(env))["long-path-partial-install"]
    assert f.severity is Severity.WARNING


def test_long_paths_enabled_silences_it(env: WindowsEnv) -> None:
    _deep(env, 200)
    assert "long-path-partial-install" not in by_id(run(env, long_paths_enabled=True))


def test_paths_near_the_limit_are_info(env: WindowsEnv) -> None:
    site = _deep(env, 60)
    longest = max(
        len(f"{site}\\torch\\_C.cp311-win_amd64.pyd"),
        len(f"{site}\\torch\\lib\\torch_global_deps.dll"),
    )
    assert longest < 240  # push one RECORD entry to 250 characters
    _add_record_line(env, site, "torch/" + "n" * (250 - len(site) - 7))
    f = by_id(run(env))["long-path-partial-install"]
    assert f.severity is Severity.INFO and "within 10 characters" in f.title


# -- end to end ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "expected", "code"),
    [
        ("x86", "wrong-architecture-193", 193),
        ("cuda", "cuda-wheel-without-nvidia-driver", 126),
        ("mkl-user", "mkl-userbase-2.3.0", 126),
    ],
)
def test_diagnose_ranks_the_platform_cause_right_after_the_prediction(
    tmp_path: Path, case: str, expected: str, code: int
) -> None:
    env = WindowsEnv(tmp_path, venv=case != "mkl-user")
    overrides: Dict[str, object] = {}
    if case == "mkl-user":
        _user_install(env, "2.3.0")
    else:
        env.add_system()
    if case == "x86":
        env.add_torch("2.9.0")
        overrides = {
            "machine": "x86",
            "python": dataclasses.replace(env.snapshot().python, bits=32),
        }
    if case == "cuda":
        env.add_torch("2.5.1", local="cu121", cuda="12.1", dlls=cuda_dlls())
    report = diagnose(env.snapshot(**overrides), view=env.view())
    torch = report.predictions[0]
    assert (torch.outcome, torch.winerror) == ("fails", code)
    assert [f.id for f in report.findings[:2]] == ["predicted-load-failure", expected]


# -- the optional snapshot facts, as collected (torchdll.snapshot, schema version 1) -------------


def test_smart_app_control_on_with_unsigned_torch_dlls_warns(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.9.0")
    f = by_id(run(env, smart_app_control=1))["app-control-4551"]
    assert f.severity is Severity.WARNING and f.confidence is Confidence.LIKELY
    assert "Smart App Control is on" in f.title
    assert "app-control-4551" not in by_id(run(env, smart_app_control=0))


def test_a_snapshot_written_before_the_optional_facts_is_not_judged(env: WindowsEnv) -> None:
    env.add_system()
    env.add_torch("2.9.0")
    data = env.snapshot(smart_app_control=1).to_dict()
    for name in ("smart_app_control", "commit_limit", "commit_available", "vc_redist_x64"):
        del data[name]
    old = Snapshot.from_dict(data)
    assert old.smart_app_control is None
    assert "app-control-4551" not in by_id(list(check_platform(diagnose_context(old, env.view()))))


def test_the_commit_limit_raises_the_pagefile_confidence(env: WindowsEnv) -> None:
    env.add_system()
    env.add_dll(f"{env.system32}\\nvcuda.dll", exports=["cuInit"])
    env.add_torch("2.5.1", local="cu121", cuda="12.1", dlls=cuda_dlls())
    without = by_id(run(env))["pagefile-commit-1455"]
    small = by_id(run_future(env, commit_limit=6 << 30, commit_available=0))["pagefile-commit-1455"]
    ample = by_id(run_future(env, commit_limit=64 << 30, commit_available=48 << 30))["pagefile-commit-1455"]
    assert (without.severity, without.confidence) == (Severity.INFO, Confidence.POSSIBLE)
    assert (small.severity, small.confidence) == (Severity.WARNING, Confidence.LIKELY)
    order = list(Confidence)  # certain, likely, possible
    assert order.index(small.confidence) < order.index(without.confidence)
    assert (ample.severity, ample.confidence) == (Severity.INFO, Confidence.POSSIBLE)
    assert "49152 MiB available of 65536 MiB" in evidence(ample)
