"""The companions family: companion/extension ABI, torch_python vs the interpreter, RECORD."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import pytest

from torchdll import _data
from torchdll.checks import CheckContext
from torchdll.checks.companions import (
    _pip_leftover,
    check_companion_mismatch,
    check_companions,
    check_extension_abi,
    check_partial_install,
    check_python_abi,
    companion_for,
    companion_releases,
    expected_torch,
    pip_install_args,
)
from torchdll.diagnosis import diagnose, diagnose_context
from torchdll.report import Confidence, Finding, Severity
from torchdll.testing import C10_EXPORTS, CPU_EXPORTS, PY_IMPORTS, WindowsEnv, torch_dlls

NEW_SYMBOL = "?toScalarType@TypeMeta@caffe2@@QEBA?AW4ScalarType@c10@@XZ"


@pytest.fixture()
def env(tmp_path: Path) -> WindowsEnv:
    e = WindowsEnv(tmp_path)
    e.add_system()
    return e


def ctx_of(env: WindowsEnv) -> CheckContext:
    return diagnose_context(env.snapshot(), env.view())


def ids(findings: List[Finding]) -> List[str]:
    return [f.id for f in findings]


def ev(finding: Finding, label: str) -> List[str]:
    return [e.value for e in finding.evidence if e.label == label]


# -- the release table -------------------------------------------------------------------------


@pytest.mark.parametrize("torch, name, expected", [
    ("2.3.1+cpu", "torchvision", "0.18.1"),
    ("2.3.1", "torchaudio", "2.3.1"),
    ("2.4.0", "torchvision", "0.19.0"),
    ("2.2.2", "torchvision", "0.17.2"),
    ("1.13.1+cu117", "torchvision", "0.14.1"),
    ("1.13.0", "torchaudio", "0.13.0"),
    ("2.0.0", "torchvision", "0.15.1"),  # 0.15.0 and 0.15.1 both pin 2.0.0: the newer
    ("2.0.0", "torchaudio", "2.0.1"),
    ("2.0.1", "torchaudio", "2.0.2"),
    ("2.9.1", "torchvision", "0.24.1"),
    ("2.10.0", "torchaudio", "2.10.0"),
    ("2.12.1", "torchvision", "0.27.1"),
    ("2.12.0", "torchaudio", "2.11.1"),  # torchaudio 2.11 is built on the stable ABI (>=2.11)
    ("2.14.0", "torchvision", "0.29.0"),  # the exact pin wins over >=2.14.0
    ("2.14.1", "torchvision", "0.29.2"),
    ("2.15.0", "torchvision", "0.29.2"),
    ("1.12.1", "torchvision", None),
    ("not-a-version", "torchvision", None),
    ("2.3.1", "torchtext", None),
])
def test_companion_for(torch: str, name: str, expected: Optional[str]) -> None:
    assert companion_for(name, torch) == expected


def test_release_table_is_consistent_and_covers_1_13_to_2_9_plus() -> None:
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    doc = _data.load("companions.json")
    assert doc["_provenance"] and doc["_semantics"]
    for name in ("torchvision", "torchaudio"):
        rows = companion_releases(name)
        versions = [Version(r.version) for r in rows]
        assert versions == sorted(versions) and len(set(versions)) == len(versions), name
        for r in rows:
            SpecifierSet(r.torch)  # parses
            assert r.source
    minors = {row["torch"]: row for row in doc["minor_table"]}
    for t in ["1.13", *(f"2.{m}" for m in range(15))]:
        assert t in minors, t
        # every torch patch release listed resolves to a torchvision of the README's series
        for r in companion_releases("torchvision"):
            if r.torch.startswith("==") and r.torch[2:].rsplit(".", 1)[0] == t:
                assert r.version.rsplit(".", 1)[0] == minors[t]["torchvision"], (t, r)
    for t in ("1.13.0", "2.0.0", "2.3.1", "2.4.0", "2.5.1", "2.6.0", "2.7.1", "2.8.0", "2.9.0", "2.9.1"):
        assert companion_for("torchvision", t) and companion_for("torchaudio", t), t


def test_expected_torch_and_pip_args() -> None:
    assert expected_torch("torchvision", "0.19.0+cu121")[0] == "==2.4.0"  # type: ignore[index]
    assert expected_torch("torchaudio", "2.11.1")[0] == ">=2.11"  # type: ignore[index]
    assert expected_torch("torchvision", "9.9.9") is None
    assert pip_install_args("torchvision", "0.18.1", "2.3.1+cpu") == (
        "torchvision==0.18.1+cpu", "--index-url", "https://download.pytorch.org/whl/cpu")
    assert pip_install_args("torchaudio", "2.3.1", "2.3.1+cu121") == (
        "torchaudio==2.3.1+cu121", "--index-url", "https://download.pytorch.org/whl/cu121")
    assert pip_install_args("torchvision", "0.18.1", "2.3.1") == ("torchvision==0.18.1",)
    assert pip_install_args("torchvision", "0.18.1", "2.3.1+git1234") == ("torchvision==0.18.1",)


# -- torchvision-torchaudio-mismatch -------------------------------------------------------------


def test_matching_pair_has_no_finding(env: WindowsEnv) -> None:
    env.add_torch("2.9.0")
    env.add_companion("torchvision", "0.24.0", torch_pin="torch (==2.9.0)")
    env.add_companion("torchaudio", "2.9.0", torch_pin="torch==2.9.0")
    ctx = ctx_of(env)
    assert [e.prediction.outcome for e in ctx.extensions] == ["ok", "ok"]
    assert list(check_companion_mismatch(ctx)) == []
    assert list(check_companions(ctx)) == []


def test_missing_symbols_are_an_error_that_explains_the_companion(env: WindowsEnv) -> None:
    env.add_torch("2.9.0")
    env.add_companion("torchvision", "0.25.0", torch_pin="torch==2.10.0",
                      needs=[C10_EXPORTS[0], NEW_SYMBOL])
    report = diagnose(env.snapshot(), view=env.view())
    tv = next(p for p in report.predictions if p.target == "torchvision")
    assert (tv.outcome, tv.winerror) == ("fails", 127)
    f = next(f for f in report.findings if f.id == "torchvision-torchaudio-mismatch")
    assert (f.severity, f.confidence, f.explains) == (Severity.ERROR, Confidence.CERTAIN, "torchvision")
    assert NEW_SYMBOL in f.detail and "WinError 127" in f.detail and "torch 2.10.0" in f.detail
    assert any(NEW_SYMBOL in v and "c10.dll" in v for v in ev(f, "missing symbol"))
    assert ev(f, "built for") == ["torch==2.10.0 (Requires-Dist in torchvision-0.25.0.dist-info\\METADATA)"]
    assert f.commands["powershell"] == (
        (f'& "{env.prefix}\\Scripts\\python.exe" -m pip install torchvision==0.24.0+cpu '
         "--index-url https://download.pytorch.org/whl/cpu"),)
    assert f.commands["cmd"][0].startswith(f'"{env.prefix}\\Scripts\\python.exe" -m pip install ')
    # the cause of the predicted failure ranks in the top block
    assert report.findings.index(f) <= 1 and not report.ok


def test_pin_alone_is_a_warning(env: WindowsEnv) -> None:
    # torchvision 0.17.2 on torch 2.3.1: pinned to 2.2.2, every symbol present -> loads
    env.add_torch("2.3.1")
    env.add_mkl()
    env.add_companion("torchvision", "0.17.2", torch_pin="torch (==2.2.2)")
    ctx = ctx_of(env)
    assert ctx.extensions[0].prediction.ok
    (f,) = check_companion_mismatch(ctx)
    assert (f.severity, f.confidence, f.explains) == (Severity.WARNING, Confidence.POSSIBLE, "torchvision")
    assert "==2.2.2" in f.title and "loads today" in f.detail
    assert ev(f, "missing symbol") == []
    assert "torchvision==0.18.1+cpu" in f.commands["cmd"][0]


def test_pypi_torch_gets_a_plain_pypi_command(env: WindowsEnv) -> None:
    env.add_torch("2.3.1", local=None)
    env.add_mkl()
    env.add_companion("torchvision", "0.19.0", torch_pin="torch ==2.4.0", needs=[NEW_SYMBOL])
    (f,) = check_companion_mismatch(ctx_of(env))
    assert f.severity is Severity.ERROR
    assert f.commands["cmd"] == (f'"{env.prefix}\\Scripts\\python.exe" -m pip install torchvision==0.18.1',)
    assert "from PyPI" in f.fix[0]


def test_cuda_torch_gets_its_index_and_label(env: WindowsEnv) -> None:
    env.add_torch("2.3.1", local="cu121", cuda="12.1")
    env.add_mkl()
    env.add_companion("torchaudio", "2.4.0", torch_pin="torch==2.4.0", needs=[NEW_SYMBOL])
    (f,) = check_companion_mismatch(ctx_of(env))
    assert f.explains == "torchaudio" and "import torchaudio raises OSError" in f.detail
    assert f.commands["cmd"][0].endswith(
        "install torchaudio==2.3.1+cu121 --index-url https://download.pytorch.org/whl/cu121")


def test_static_cross_check_when_torch_itself_fails(tmp_path: Path) -> None:
    env = WindowsEnv(tmp_path)
    env.add_system(msvcp140=(14, 29, 30133, 0))  # torch 2.9 -> 1114 on c10.dll
    env.add_torch("2.9.0")
    env.add_companion("torchvision", "0.25.0", torch_pin="torch==2.10.0", needs=[NEW_SYMBOL])
    ctx = ctx_of(env)
    assert ctx.primary is not None and ctx.primary.prediction.winerror == 1114
    assert ctx.extensions[0].results == ()  # never reached
    (f,) = check_companion_mismatch(ctx)
    assert f.severity is Severity.ERROR and "comparing import and export tables" in f.detail
    assert any(NEW_SYMBOL in v for v in ev(f, "missing symbol"))


def test_cuda_companion_on_cpu_torch_needs_dlls_torch_does_not_ship(env: WindowsEnv) -> None:
    env.add_torch("2.9.0")
    env.add_companion("torchvision", "0.24.0+cu126", torch_pin="torch==2.9.0")
    env.add_dll(f"{env.site_packages}\\torchvision\\_C.pyd",
                imports={"c10.dll": [C10_EXPORTS[0]], "c10_cuda.dll": ["?x@cuda@c10@@YAXXZ"],
                         "torch_cuda.dll": ["?y@@YAXXZ"]}, exports=["PyInit__C"])
    report = diagnose(env.snapshot(), view=env.view())
    tv = next(p for p in report.predictions if p.target == "torchvision")
    assert tv.winerror == 126
    f = next(f for f in report.findings if f.id == "torchvision-torchaudio-mismatch")
    assert f.severity is Severity.ERROR and "c10_cuda.dll" in f.detail and "does not ship" in f.detail
    assert "torchvision==0.24.0+cpu" in f.commands["cmd"][0]


def test_build_label_clash_alone_is_a_warning(env: WindowsEnv) -> None:
    env.add_torch("2.9.0", local="cu126", cuda="12.6")
    env.add_companion("torchvision", "0.24.0+cu128", torch_pin="torch==2.9.0")
    (f,) = check_companion_mismatch(ctx_of(env))
    assert f.severity is Severity.WARNING and "+cu128" in f.title and "CUDA" in f.detail
    assert "torchvision==0.24.0+cu126" in f.commands["cmd"][0]


def test_without_a_pin_the_table_says_what_it_was_built_for(env: WindowsEnv) -> None:
    env.add_torch("2.9.0")
    env.add_companion("torchvision", "0.19.0")  # e.g. a conda install without Requires-Dist
    (f,) = check_companion_mismatch(ctx_of(env))
    assert f.severity is Severity.WARNING
    assert ev(f, "built for")[0].startswith("torch==2.4.0 (compatibility table")


def test_stable_abi_releases_accept_newer_torch(env: WindowsEnv) -> None:
    env.add_torch("2.15.0")
    env.add_companion("torchvision", "0.29.2", torch_pin="torch (>=2.14.0)")
    env.add_companion("torchaudio", "2.11.0")  # declares nothing; the table says >=2.11.0
    assert list(check_companion_mismatch(ctx_of(env))) == []


def test_torch_patch_release_missing_from_the_table_gets_the_series(env: WindowsEnv) -> None:
    env.add_torch("2.13.5")
    env.add_companion("torchvision", "0.27.0", torch_pin="torch==2.12.0", needs=[NEW_SYMBOL])
    (f,) = check_companion_mismatch(ctx_of(env))
    assert f.severity is Severity.ERROR and f.commands == {}
    assert "the 0.28.x series" in f.fix[0]


def test_unknown_torch_version_does_not_guess(env: WindowsEnv) -> None:
    env.add_torch("2.9.0")
    env.host(f"{env.site_packages}\\torch\\version.py").unlink()
    env.host(f"{env.site_packages}\\torch-2.9.0+cpu.dist-info\\METADATA").unlink()
    env.add_companion("torchvision", "0.19.0", torch_pin="torch==2.4.0")
    assert list(check_companion_mismatch(ctx_of(env))) == []


# -- third-party-extension-abi -------------------------------------------------------------------


def _ext(env: WindowsEnv, rel: str, needs: List[str], dll: str = "c10.dll") -> str:
    return env.add_dll(f"{env.site_packages}\\{rel}", imports={dll: needs, "KERNEL32.dll": ["GetTickCount"]},
                       exports=["PyInit_x"])


def test_extension_with_missing_symbols_is_an_error(env: WindowsEnv) -> None:
    env.add_torch("2.9.0")
    _ext(env, "torch_scatter\\_scatter_cpu.pyd", [C10_EXPORTS[0], NEW_SYMBOL])
    _ext(env, "torch_scatter\\_version_cpu.pyd", [C10_EXPORTS[1]])  # fine
    dist = f"{env.site_packages}\\torch_scatter-2.1.2+pt23cpu.dist-info"
    env.add_file(f"{dist}\\METADATA", "Metadata-Version: 2.1\nName: torch_scatter\nVersion: 2.1.2\n\n")
    env.add_file(f"{dist}\\top_level.txt", "torch_scatter\n")
    (f,) = check_extension_abi(ctx_of(env))
    assert (f.id, f.severity, f.confidence, f.explains) == (
        "third-party-extension-abi", Severity.ERROR, Confidence.CERTAIN, None)
    assert "torch_scatter" in f.title and NEW_SYMBOL in f.detail and "WinError 127" in f.detail
    assert "DLL load failed while importing _scatter_cpu" in f.detail
    assert ev(f, "module") == [f"{env.site_packages}\\torch_scatter\\_scatter_cpu.pyd"]
    assert "torch_scatter" in f.commands["cmd"][0]


def test_extension_that_matches_torch_is_fine(env: WindowsEnv) -> None:
    env.add_torch("2.9.0")
    _ext(env, "xformers\\_C.pyd", list(C10_EXPORTS))
    _ext(env, "xformers\\ops\\_cpu.pyd", list(CPU_EXPORTS), dll="torch_cpu.dll")
    env.add_dll(f"{env.site_packages}\\numpy\\core\\_multiarray_umath.cp311-win_amd64.pyd",
                imports={"python311.dll": ["Py_IncRef"]})
    assert list(check_extension_abi(ctx_of(env))) == []


def test_top_level_extension_module_and_declared_requirement(env: WindowsEnv) -> None:
    env.add_torch("2.9.0")
    _ext(env, "exllamav2_ext.cp311-win_amd64.pyd", [NEW_SYMBOL], dll="torch_python.dll")
    _ext(env, "other_ext.cp310-win_amd64.pyd", [NEW_SYMBOL])  # another Python: never imported
    dist = f"{env.site_packages}\\exllamav2-0.0.20.dist-info"
    env.add_file(f"{dist}\\METADATA", "Metadata-Version: 2.1\nName: exllamav2\nVersion: 0.0.20\n"
                 "Requires-Dist: torch>=2.2.0\n\n")
    env.add_file(f"{dist}\\top_level.txt", "exllamav2\nexllamav2_ext\n")
    (f,) = check_extension_abi(ctx_of(env))
    assert f.title.startswith("exllamav2 is built for another torch")
    assert ev(f, "declares") == ["torch>=2.2.0"]


def test_extension_needing_cuda_dlls_on_cpu_torch(env: WindowsEnv) -> None:
    env.add_torch("2.9.0")
    env.add_dll(f"{env.site_packages}\\detectron2\\_C.cp311-win_amd64.pyd",
                imports={"c10.dll": [C10_EXPORTS[0]], "torch_cuda.dll": ["?f@@YAXXZ"]})
    (f,) = check_extension_abi(ctx_of(env))
    assert "torch_cuda.dll" in f.detail and "WinError 126" in f.detail


def test_scan_depth_budget_and_own_packages(env: WindowsEnv) -> None:
    env.add_torch("2.9.0")
    env.add_file(f"{env.site_packages}\\torch-2.9.0+cpu.dist-info\\top_level.txt", "functorch\ntorch\ntorchgen\n")
    _ext(env, "functorch\\_C.cp311-win_amd64.pyd", [NEW_SYMBOL])  # torch's own
    _ext(env, "deep\\a\\b\\c\\x.pyd", [NEW_SYMBOL])  # deeper than the walk goes
    assert list(check_extension_abi(ctx_of(env))) == []
    _ext(env, "deep\\a\\b\\x.pyd", [NEW_SYMBOL])  # two levels below the package: found
    assert len(list(check_extension_abi(ctx_of(env)))) == 1
    assert list(check_extension_abi(ctx_of(env), max_files=0)) == []
    assert list(check_extension_abi(ctx_of(env), max_depth=1)) == []


def test_no_torch_no_extension_findings(env: WindowsEnv) -> None:
    _ext(env, "pkg\\x.pyd", [NEW_SYMBOL])
    assert list(check_extension_abi(ctx_of(env))) == []


# -- python-abi-mismatch --------------------------------------------------------------------------


def test_healthy_interpreter_has_no_python_finding(env: WindowsEnv) -> None:
    env.add_torch("2.9.0")
    assert list(check_python_abi(ctx_of(env))) == []


def test_torch_for_another_python_version(env: WindowsEnv) -> None:
    env.add_torch("2.9.0", dlls=torch_dlls("2.9.0", python_dll="python310.dll"))
    report = diagnose(env.snapshot(), view=env.view())
    assert report.predictions[0].winerror == 126
    f = next(f for f in report.findings if f.id == "python-abi-mismatch")
    assert f.severity is Severity.ERROR and f.explains == "torch"
    assert "Python 3.10" in f.title and "python310.dll" in f.detail
    assert "--force-reinstall" in f.commands["cmd"][0] and "torch==2.9.0+cpu" in f.commands["cmd"][0]
    assert report.findings[0].explains == "torch"


def test_interpreter_dll_lacking_names_is_127(env: WindowsEnv) -> None:
    env.add_torch("2.9.0")
    env.add_dll(f"{env.base}\\{env.python_dll}", exports=["Py_Main", PY_IMPORTS[0]])
    ctx = ctx_of(env)
    assert ctx.primary is not None and ctx.primary.prediction.winerror == 127
    (f,) = check_python_abi(ctx)
    assert f.severity is Severity.ERROR and f.explains == "torch" and "WinError 127" in f.detail
    assert ev(f, "interpreter DLL") == [f"{env.base}\\{env.python_dll}"]
    assert {v.split(" ")[0] for v in ev(f, "missing symbol")} == set(PY_IMPORTS[1:])


def test_prerelease_interpreter_is_a_warning(tmp_path: Path) -> None:
    env = WindowsEnv(tmp_path, python="3.13.0rc1")
    env.add_system()
    env.add_torch("2.9.0")
    (f,) = check_python_abi(ctx_of(env))
    assert (f.severity, f.confidence) == (Severity.WARNING, Confidence.POSSIBLE)
    assert "pre-release" in f.title


def test_free_threaded_interpreter_needs_the_t_build(env: WindowsEnv) -> None:
    env.add_torch("2.9.0")
    snap = env.snapshot()
    py = snap.python
    from dataclasses import replace

    snap = replace(snap, python=replace(py, sys_version="3.11.9 experimental free-threading build"))
    (f,) = check_python_abi(diagnose_context(snap, env.view()))
    assert "python311t.dll" in f.detail


def test_extension_tag_for_another_python(env: WindowsEnv) -> None:
    env.add_torch("2.9.0")
    pyd = env.host(f"{env.site_packages}\\torch\\_C.cp311-win_amd64.pyd")
    pyd.rename(pyd.with_name("_C.cp312-win_amd64.pyd"))
    (f,) = check_python_abi(ctx_of(env))
    assert f.severity is Severity.ERROR and "Python 3.12" in f.title
    assert "ModuleNotFoundError" in f.detail


# -- partial-or-mixed-install ---------------------------------------------------------------------


def test_intact_install_has_no_integrity_finding(env: WindowsEnv) -> None:
    env.add_torch("2.9.0")
    assert list(check_partial_install(ctx_of(env), verify_hashes=True)) == []


def test_missing_dll_is_partial_and_explains_the_failure(env: WindowsEnv) -> None:
    env.add_torch("2.3.1")
    env.add_mkl()
    env.host(f"{env.site_packages}\\torch\\lib\\fbgemm.dll").unlink()
    report = diagnose(env.snapshot(), view=env.view())
    assert report.predictions[0].winerror == 126
    f = next(f for f in report.findings if f.id == "partial-or-mixed-install")
    assert (f.severity, f.explains) == (Severity.ERROR, "torch")
    assert "installed partially" in f.title
    assert ev(f, "missing") == [f"{env.site_packages}\\torch\\lib\\fbgemm.dll"]
    assert f.commands["cmd"][0].endswith(
        "install --force-reinstall --no-cache-dir --no-deps torch==2.3.1+cpu "
        "--index-url https://download.pytorch.org/whl/cpu")


def test_size_and_hash_differences(env: WindowsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    env.add_torch("2.9.0")
    uv = env.host(f"{env.site_packages}\\torch\\lib\\uv.dll")
    raw = bytearray(uv.read_bytes())
    raw[-1] ^= 0xFF  # same size, other content (the synthetic PE ends in padding)
    uv.write_bytes(bytes(raw))
    shm = env.host(f"{env.site_packages}\\torch\\lib\\shm.dll")
    shm.write_bytes(shm.read_bytes() + b"\0" * 512)
    (f,) = check_partial_install(ctx_of(env))
    assert f.severity is Severity.ERROR and "mixes files" in f.title
    assert [v.split(" ")[0] for v in ev(f, "size differs")] == [f"{env.site_packages}\\torch\\lib\\shm.dll"]
    assert ev(f, "sha256 differs") == [f"{env.site_packages}\\torch\\lib\\uv.dll"]
    # files at or above the hash limit only get the size check ...
    (f,) = check_partial_install(ctx_of(env), hash_limit=0)
    assert ev(f, "sha256 differs") == []
    # ... unless hashes are verified explicitly (option or environment variable)
    (f,) = check_partial_install(ctx_of(env), hash_limit=0, verify_hashes=True)
    assert len(ev(f, "sha256 differs")) == 1
    monkeypatch.setenv("TORCHDLL_VERIFY_HASHES", "1")
    (f,) = check_partial_install(ctx_of(env), hash_limit=0)
    assert len(ev(f, "sha256 differs")) == 1


def test_dll_dropped_into_torch_lib(env: WindowsEnv) -> None:
    env.add_torch("2.9.0")
    env.add_dll(f"{env.site_packages}\\torch\\lib\\libomp140.x86_64.dll", exports=["__kmpc_fork_call"])
    (f,) = check_partial_install(ctx_of(env))
    assert (f.severity, f.confidence, f.explains) == (Severity.WARNING, Confidence.LIKELY, None)
    assert "libomp140.x86_64.dll" in f.detail and "not installed by pip" in f.title
    assert f.commands["powershell"][0].startswith('Move-Item -LiteralPath "')


def test_broken_dropped_dll_explains_the_failure(env: WindowsEnv) -> None:
    env.add_torch("2.9.0")
    env.add_dll(f"{env.site_packages}\\torch\\lib\\cudnn64_8.dll", imports={"cudart64_110.dll": ["f"]})
    report = diagnose(env.snapshot(), view=env.view())
    assert report.predictions[0].winerror == 126
    f = next(f for f in report.findings if f.id == "partial-or-mixed-install")
    assert (f.severity, f.explains) == (Severity.ERROR, "torch")


def test_pip_leftovers_and_duplicate_dist_infos(env: WindowsEnv) -> None:
    env.add_torch("2.3.1")
    env.add_file(f"{env.site_packages}\\~orch\\lib\\asmjit.dll", b"MZ")
    env.add_file(f"{env.site_packages}\\~orchvision-0.18.1.dist-info\\RECORD", "")
    env.add_file(f"{env.site_packages}\\~umpy\\x.py", "")  # not ours
    env.add_file(f"{env.site_packages}\\torch-2.2.2.dist-info\\METADATA", "Name: torch\nVersion: 2.2.2\n\n")
    (f,) = check_partial_install(ctx_of(env))
    assert (f.severity, f.id) == (Severity.WARNING, "partial-or-mixed-install")
    assert ev(f, "leftover") == [f"{env.site_packages}\\~orch", f"{env.site_packages}\\~orchvision-0.18.1.dist-info"]
    assert len(ev(f, "dist-info")) == 2
    assert f.commands["cmd"][0] == f'rmdir /s /q "{env.site_packages}\\~orch"'


@pytest.mark.parametrize("name, ours", [
    ("~orch", True), ("~-rch", True), ("~~rch", True), ("~orch-2.3.1.dist-info", True),
    ("~orchvision", True), ("~orchaudio-2.3.1.dist-info", True),
    ("~umpy", False), ("~orchmetrics", False), ("torch", False), ("~", False),
])
def test_pip_leftover_names(name: str, ours: bool) -> None:
    assert _pip_leftover(name, ("torch", "torchvision", "torchaudio")) is ours


def test_companion_record_is_checked_too(env: WindowsEnv) -> None:
    env.add_torch("2.9.0")
    env.add_companion("torchvision", "0.24.0", torch_pin="torch==2.9.0")
    pyd = env.host(f"{env.site_packages}\\torchvision\\_C.pyd")
    dist = f"{env.site_packages}\\torchvision-0.24.0.dist-info"
    env.add_file(f"{dist}\\RECORD", f"torchvision/_C.pyd,sha256=AAAA,{pyd.stat().st_size + 1}\n"
                                    "torchvision/image.pyd,sha256=AAAA,10\n")
    (f,) = check_partial_install(ctx_of(env))
    assert f.title.startswith("torchvision 0.24.0 mixes files") and len(ev(f, "missing")) == 1
    assert "torchvision==0.24.0" in f.commands["cmd"][0]


def test_no_record_no_integrity_finding(env: WindowsEnv) -> None:
    env.add_torch("2.9.0", record=False)
    env.host(f"{env.site_packages}\\torch\\lib\\uv.dll").unlink()
    assert list(check_partial_install(ctx_of(env))) == []


# -- the family as registered ----------------------------------------------------------------------


def test_registered_and_catalogued(env: WindowsEnv) -> None:
    from torchdll.checks import CHECKS

    assert ("torchdll.checks.companions", "check_companions") in CHECKS
    catalogue = _data.findings_catalogue()
    for fid in ("torchvision-torchaudio-mismatch", "third-party-extension-abi", "python-abi-mismatch",
                "partial-or-mixed-install"):
        assert catalogue[fid]["family"] == "companions"
    env.add_torch("2.9.0")
    env.add_companion("torchvision", "0.25.0", torch_pin="torch==2.10.0", needs=[NEW_SYMBOL])
    report = diagnose(env.snapshot(), view=env.view())
    assert {f.id for f in report.findings} <= set(catalogue)
    json.loads(json.dumps(report.to_dict()))  # serialisable
