"""Causes 37-39 end to end on the real ld.so: a synthetic torch that runs torch's own loader code
(and the real CPU torch 2.13.0 for the libstdc++ case) is imported in a child Python; the
model's prediction (``diagnose``'s replay) must give the same error text, the checks must name
the cause, and ``torchdll run`` must make the same import succeed where the fix is the
environment.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import pytest

from tests.support import elfbuild
from tests.support.linuxtorch import build_fake_torch, import_in_child, model_context
from tests.support.tiers import unavailable
from torchdll.linuxdiag import LinuxCheckContext, diagnose_linux
from torchdll.report import Severity

pytestmark = [pytest.mark.linux]

if not sys.platform.startswith("linux"):  # pragma: no cover - the tier needs glibc's ld.so
    pytest.skip("the ld.so tier needs Linux", allow_module_level=True)


@pytest.fixture(scope="module", autouse=True)
def _gcc() -> None:
    if elfbuild.find_gcc() is None:
        unavailable("gcc not found (apt install gcc)")


def _model(site: Path, llp: Optional[str]) -> LinuxCheckContext:
    return model_context(site, llp)  # type: ignore[no-any-return]


def _run_prefix() -> List[str]:
    return [sys.executable, "-m", "torchdll", "run", "--"]


# --------------------------------------------------------------------------------------------
# cause 37: a CUDA toolkit on LD_LIBRARY_PATH shadows pip's libnvJitLink
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nvjitlink_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cause37")
    site = root / "site-packages"
    nv = site / "nvidia"
    cudart = elfbuild.build_lib(nv / "cuda_runtime" / "lib", "libcudart.so.12", soname="libcudart.so.12",
                                defines=["cudaGetDeviceCount"], marker="pip-cudart")
    jit = elfbuild.build_lib(nv / "nvjitlink" / "lib", "libnvJitLink.so.12", soname="libnvJitLink.so.12",
                             defines=["__nvJitLinkAddData_12_1@@libnvJitLink.so.12",
                                      "__nvJitLinkComplete_12_4@@libnvJitLink.so.12"], marker="pip-jit")
    sparse = elfbuild.build_lib(nv / "cusparse" / "lib", "libcusparse.so.12", soname="libcusparse.so.12",
                                needed=[jit], refs=["__nvJitLinkComplete_12_4@libnvJitLink.so.12"],
                                marker="pip-sparse")
    # the toolkit's older copy: the same soname and version node, without the 12.4 symbol
    elfbuild.build_lib(root / "cuda-12.1" / "lib64", "libnvJitLink.so.12", soname="libnvJitLink.so.12",
                       defines=["__nvJitLinkAddData_12_1@@libnvJitLink.so.12"], marker="toolkit-jit")
    build_fake_torch(site, global_deps_needed=[cudart],
                     global_deps_runpath=["$ORIGIN/../../nvidia/cuda_runtime/lib"],
                     cuda_lib_needed=[jit, sparse],
                     cuda_lib_runpath=["$ORIGIN/../../nvidia/nvjitlink/lib", "$ORIGIN/../../nvidia/cusparse/lib"])
    return root


def test_cause37_prediction_equals_the_real_loader(nvjitlink_tree: Path) -> None:
    site = nvjitlink_tree / "site-packages"
    llp = str(nvjitlink_tree / "cuda-12.1" / "lib64")
    real_error, _ = import_in_child(site, llp)
    assert real_error is not None and "undefined symbol: __nvJitLinkComplete_12_4, version libnvJitLink.so.12" in real_error
    lctx = _model(site, llp)
    replay = lctx.primary
    assert replay is not None and not replay.ok
    assert replay.error == real_error
    report = diagnose_linux(lctx)
    top = report.findings[0]
    assert top.id == "linux-ld-library-path-shadowing" and top.severity is Severity.ERROR
    assert top.explains == "torch"
    assert any(llp in e.value for e in top.evidence)
    assert any("torchdll run" in step for step in top.fix)
    pred = report.predictions[0]
    assert pred.culprit_path == str(nvjitlink_tree / "cuda-12.1" / "lib64" / "libnvJitLink.so.12")
    assert pred.rule == "ld-library-path"


def test_cause37_without_the_entry_imports(nvjitlink_tree: Path) -> None:
    site = nvjitlink_tree / "site-packages"
    real_error, maps = import_in_child(site, None)
    assert real_error is None
    lctx = _model(site, None)
    assert lctx.primary is not None and lctx.primary.ok
    # ld.so names an object by the path it was found by ($ORIGIN/../..); /proc/self/maps by
    # the kernel's resolved path: compare resolved paths
    predicted = {os.path.realpath(load.path) for step in lctx.primary.steps for load in step.call.loaded}
    assert {p for p in maps if str(site) in p} == {p for p in predicted if str(site) in p}
    assert not [f for f in diagnose_linux(lctx).findings if f.severity is Severity.ERROR]


def test_cause37_torchdll_run_fixes_the_same_command(nvjitlink_tree: Path) -> None:
    site = nvjitlink_tree / "site-packages"
    llp = str(nvjitlink_tree / "cuda-12.1" / "lib64")
    # torchdll run asks the command's interpreter for sys.path: make it see the synthetic site
    real_error, maps = import_in_child(site, llp, command=_run_prefix(), extra_env={"PYTHONPATH": str(site)})
    assert real_error is None, real_error
    assert str(site / "nvidia" / "nvjitlink" / "lib" / "libnvJitLink.so.12") in maps


# --------------------------------------------------------------------------------------------
# cause 38: a CUDA build without pip's nvidia-* libraries
# --------------------------------------------------------------------------------------------


def test_cause38_missing_cuda_runtime(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    cudart = elfbuild.build_lib(scratch, "libcudart.so.12", soname="libcudart.so.12",
                                defines=["cudaGetDeviceCount"], marker="absent-cudart")
    site = tmp_path / "site-packages"
    build_fake_torch(site, global_deps_needed=[cudart], python_needs_cuda=False)
    cudart.unlink()  # linked against, then gone: what a wheel without its nvidia-* deps looks like
    real_error, _ = import_in_child(site, None)
    assert real_error is not None and real_error.startswith("ValueError: libcublasLt.so.*[0-9] not found")
    lctx = _model(site, None)
    assert lctx.primary is not None and lctx.primary.error == real_error
    report = diagnose_linux(lctx)
    ids = [f.id for f in report.findings]
    assert ids[0] == "linux-missing-cuda-libs", ids
    top = report.findings[0]
    assert any(e.label == "missing" and e.value == "libcudart.so.12" for e in top.evidence)
    assert any(e.label == "torch's preload" and "libcublasLt" in e.value for e in top.evidence)


# --------------------------------------------------------------------------------------------
# cause 39: an old libstdc++ on LD_LIBRARY_PATH, with the real CPU torch 2.13.0
# --------------------------------------------------------------------------------------------


def _real_site() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        unavailable("torch is not installed in this environment (pip install torch==2.13.0)")
    return Path(spec.origin).parent.parent


def test_cause39_old_libstdcxx_with_the_real_torch(tmp_path: Path) -> None:
    site = _real_site()
    old = tmp_path / "oldgcc" / "lib"
    nodes = {f"GLIBCXX_3.4.{n}" if n else "GLIBCXX_3.4": [] for n in range(0, 20)}
    nodes.update({f"CXXABI_1.3.{n}" if n else "CXXABI_1.3": [] for n in range(0, 8)})
    elfbuild.build_lib(old, "libstdc++.so.6", soname="libstdc++.so.6", defines=["old_stdcxx_marker"],
                       version_script=nodes, marker="old-stdcxx")
    real_error, _ = import_in_child(site, str(old))
    assert real_error is not None and "version `GLIBCXX_3.4." in real_error and "not found" in real_error
    lctx = _model(site, str(old))
    assert lctx.primary is not None and lctx.primary.error == real_error
    report = diagnose_linux(lctx)
    top = report.findings[0]
    assert top.id == "linux-glibcxx-too-old" and top.severity is Severity.ERROR
    assert any(e.label == "how" and e.value == "ld-library-path" for e in top.evidence)
    assert any("torchdll run" in s for s in top.fix)


def test_real_torch_replay_matches_the_real_import() -> None:
    """The CPU torch 2.13.0 installed here: predicted to load, and the predicted files of
    torch/lib are exactly those the real import maps."""
    site = _real_site()
    real_error, maps = import_in_child(site, None)
    assert real_error is None
    lctx = _model(site, None)
    replay = lctx.primary
    assert replay is not None and replay.ok, replay.error if replay else None
    predicted = {os.path.realpath(load.path) for step in replay.steps for load in step.call.loaded}
    torch_dir = str(site / "torch")
    assert {p for p in maps if p.startswith(torch_dir)} == {p for p in predicted if p.startswith(torch_dir)}
    real = {os.path.realpath(p) for p in maps}
    assert all(os.path.realpath(p) in real for p in predicted)


def test_real_torch_with_a_foreign_libc10_first_on_ld_library_path(tmp_path: Path) -> None:
    """Another build's libc10.so on LD_LIBRARY_PATH (it has none of torch's symbols): ld.so
    reports the first symbol in *relocation* order; the model must name the same one."""
    site = _real_site()
    other = tmp_path / "other-torch" / "lib"
    elfbuild.build_lib(other, "libc10.so", soname="libc10.so", defines=["c10_other_build"], marker="foreign-c10")
    real_error, _ = import_in_child(site, str(other))
    assert real_error is not None and "undefined symbol: " in real_error
    lctx = _model(site, str(other))
    assert lctx.primary is not None and lctx.primary.error == real_error
    top = diagnose_linux(lctx).findings[0]
    assert top.id == "linux-ld-library-path-shadowing" and top.severity is Severity.ERROR


GUARDED = r"""
import json, warnings
import torchdll
caught = []
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    try:
        with torchdll.safe_import_torch() as torch:
            result = {"ok": True}
    except torchdll.TorchDLLError as exc:
        result = {"ok": False, "type": type(exc).__name__, "causes": [c.id for c in exc.causes],
                  "culprit": exc.culprit, "fix": list(exc.fix), "original": exc.original}
result["warnings"] = [str(x.message) for x in w]
print(json.dumps(result))
"""


def test_guard_warns_then_explains_the_real_failure(tmp_path: Path) -> None:
    """safe_import_torch() with the real torch and a foreign libc10.so on LD_LIBRARY_PATH: a
    PrecheckWarning naming torchdll run, then a TorchDLLError whose first cause is the
    shadowing entry (from the ld.so replay), not just the loader's message."""
    import json
    import subprocess

    _real_site()
    other = tmp_path / "other-torch" / "lib"
    elfbuild.build_lib(other, "libc10.so", soname="libc10.so", defines=["c10_other_build"], marker="foreign-c10")
    from tests.support.linuxtorch import child_env

    proc = subprocess.run([sys.executable, "-c", GUARDED], capture_output=True, text=True,
                          env=child_env(str(other)), timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not res["ok"] and res["type"] == "ProcedureNotFoundError"
    assert res["causes"][0] == "linux-ld-library-path-shadowing"
    assert any("torchdll run" in step for step in res["fix"])
    assert any("torchdll run" in w and str(other) in w for w in res["warnings"])
    assert "undefined symbol" in res["original"]


def test_cause39_old_libstdcxx_through_ld_preload(tmp_path: Path) -> None:
    """The same old libstdc++ in LD_PRELOAD: mapped at start, before anything asks for it; the
    model must give the real message, say how it got there, and torchdll run must drop it."""
    site = _real_site()
    old = tmp_path / "oldgcc" / "lib"
    nodes = {f"GLIBCXX_3.4.{n}" if n else "GLIBCXX_3.4": [] for n in range(0, 20)}
    preload = elfbuild.build_lib(old, "libstdc++.so.6", soname="libstdc++.so.6", defines=["old_stdcxx_marker"],
                                 version_script=nodes, marker="old-stdcxx-preload")
    env = {"LD_PRELOAD": str(preload)}
    real_error, _ = import_in_child(site, None, extra_env=env)
    assert real_error is not None and "libstdc++.so.6: version `" in real_error and "not found" in real_error
    lctx = model_context(site, None, env)
    assert lctx.primary is not None and lctx.primary.error == real_error
    top = diagnose_linux(lctx).findings[0]
    assert top.id == "linux-glibcxx-too-old"
    assert any(e.label == "how" and e.value == "preload" for e in top.evidence)
    fixed, _ = import_in_child(site, None, command=_run_prefix(), extra_env=env)
    assert fixed is None


COMPANION = r"""
import ctypes, sys
sys.path.insert(0, sys.argv[1])
import torch
try:
    ctypes.CDLL(sys.argv[2])
except OSError as exc:
    print("ERROR OSError: " + str(exc))
else:
    print("OK")
"""


@pytest.mark.parametrize("needs", ["c10_init", "c10_new_api_of_torch_2_6"])
def test_torchvision_built_for_another_torch(tmp_path: Path, needs: str) -> None:
    """torchvision's _C.so after torch: the model predicts the real loader's verdict (and its
    undefined symbol) and names the mismatch."""
    import subprocess

    site = tmp_path / "site-packages"
    build_fake_torch(site, version="2.5.1+cpu", cuda=None, python_needs_cuda=False)
    tv = site / "torchvision"
    ext = elfbuild.build_lib(tv, "_C.so", needed=[site / "torch" / "lib" / "libc10.so"],
                             runpath=["$ORIGIN/../torch/lib"], refs=[needs], marker=f"tv-{needs}")
    (tv / "__init__.py").write_text("")
    (tv / "version.py").write_text("__version__ = '0.21.0'\n")
    info = site / "torchvision-0.21.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torchvision\nVersion: 0.21.0\n"
                                   "Requires-Dist: torch==2.6.0\n\n")
    from tests.support.linuxtorch import child_env

    proc = subprocess.run([sys.executable, "-c", COMPANION, str(site), str(ext)], capture_output=True, text=True,
                          env=child_env(None), timeout=120)
    assert proc.returncode == 0, proc.stderr
    real = proc.stdout.strip().splitlines()[-1]
    lctx = _model(site, None)
    (comp,) = lctx.companions
    if needs == "c10_init":
        assert real == "OK" and comp.ok
        assert not [f for f in diagnose_linux(lctx).findings if f.id == "linux-companion-mismatch"]
        return
    assert real == f"ERROR {comp.error}" and comp.error.endswith(f"undefined symbol: {needs}")
    report = diagnose_linux(lctx)
    finding = next(f for f in report.findings if f.id == "linux-companion-mismatch")
    assert finding.severity is Severity.ERROR and finding.explains == "torchvision"
    assert any(e.label == "its Requires-Dist" and e.value == "torch==2.6.0" for e in finding.evidence)
    assert any(s.startswith("pip install torchvision==0.20.1") for s in finding.fix), finding.fix
    assert [p.target for p in report.predictions] == ["torch", "torchvision"]
