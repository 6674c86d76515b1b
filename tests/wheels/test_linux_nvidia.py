"""Cause 37 (pytorch#138460) on the real NVIDIA binaries: a CUDA toolkit's older
``libnvJitLink.so.12`` on ``LD_LIBRARY_PATH`` shadows the copy pip installed for torch.

The two manylinux x86_64 wheels of ``nvidia-nvjitlink-cu12`` are downloaded once by exact
version (tests/support/wheelcache.py; about 20 MB each) and only their
``nvidia/nvjitlink/lib/libnvJitLink.so.12`` is extracted:

* 12.4.127, the copy torch's CUDA 12.4 builds pin: it defines
  ``__nvJitLinkComplete_12_4@@libnvJitLink.so.12``;
* 12.1.105, standing in for a CUDA 12.1 toolkit's ``lib64``: same soname, same version node
  ``libnvJitLink.so.12``, but only the ``_12_0`` and ``_12_1`` entry points.

A stand-in ``libcusparse.so.12`` (built with gcc, linked against the real 12.4 library, no
RUNPATH, as pip's) references ``__nvJitLinkComplete_12_4@libnvJitLink.so.12``; a synthetic
torch (tests/support/linuxtorch.py: torch's own loader functions, a real ``_C`` extension)
links both through ``libtorch_cuda.so``. The real ld.so then fails exactly as in the issue with
the toolkit on ``LD_LIBRARY_PATH``; the model must predict the same text, name the cause, and
agree with ``readelf`` on the real libraries' symbol versions.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from tests.support import elfbuild
from tests.support.linuxtorch import build_fake_torch, import_in_child, model_context
from tests.support.tiers import require_executable, unavailable
from tests.support.wheelcache import WheelUnavailable, extract, link_file, wheel

pytestmark = [pytest.mark.wheels, pytest.mark.linux]

if not sys.platform.startswith("linux"):  # pragma: no cover - the tier needs glibc's ld.so
    pytest.skip("the ld.so tier needs Linux", allow_module_level=True)

import platform as _platform

if _platform.machine() not in ("x86_64", "AMD64"):  # pragma: no cover
    pytest.skip("the NVIDIA wheels used here are x86-64 binaries", allow_module_level=True)

from torchdll._elf import read_elf_facts
from torchdll.linuxdiag import LinuxCheckContext, diagnose_linux
from torchdll.report import Severity

PACKAGE = "nvidia-nvjitlink-cu12"
#: version -> the wheel's platform tag (12.1.105 was published as manylinux1 only)
WHEELS = {"12.4.127": "manylinux2014_x86_64", "12.1.105": "manylinux1_x86_64"}
PIP = "12.4.127"
TOOLKIT = "12.1.105"
MEMBER = "nvidia/nvjitlink/lib/libnvJitLink.so.12"
NODE = "libnvJitLink.so.12"
SYMBOL = "__nvJitLinkComplete_12_4"
#: the tail of pytorch#138460's message (ld.so's "undefined symbol" with the version)
ISSUE_TAIL = f"undefined symbol: {SYMBOL}, version {NODE}"


# --------------------------------------------------------------------------------------------
# the real libraries and readelf
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_libs() -> dict[str, Path]:
    """version -> the extracted real ``libnvJitLink.so.12`` (in the test cache)."""
    out: dict[str, Path] = {}
    for version, plat in WHEELS.items():
        try:
            whl = wheel(PACKAGE, version, platform=plat)
        except WheelUnavailable as exc:
            unavailable(str(exc))
        lib = extract(whl, [MEMBER]) / MEMBER
        if not lib.is_file():
            pytest.fail(f"{whl.name} has no {MEMBER}")
        out[version] = lib
    return out


@pytest.fixture(scope="module")
def readelf() -> str:
    return require_executable("readelf", "apt install binutils")


Sym = tuple[str, Optional[str], bool]  # name, version, default (@@)


def readelf_defined(readelf: str, lib: Path, prefix: str = "__nvJitLink") -> set[Sym]:
    """Defined dynamic symbols starting with ``prefix``, per ``readelf --dyn-syms -W``."""
    text = subprocess.run([readelf, "--dyn-syms", "-W", str(lib)], capture_output=True, text=True,
                          check=True).stdout
    out: set[Sym] = set()
    for line in text.splitlines():
        parts = line.split()
        # Num: Value Size Type Bind Vis Ndx Name [(n)]
        if len(parts) < 8 or not parts[0].endswith(":") or not parts[0][:-1].isdigit():
            continue
        ndx, name = parts[6], parts[7]
        if ndx == "UND" or not name.startswith(prefix):
            continue
        if "@@" in name:
            base, ver = name.split("@@", 1)
            out.add((base, ver, True))
        elif "@" in name:
            base, ver = name.split("@", 1)
            out.add((base, ver, False))
        else:
            out.add((name, None, True))
    return out


def readelf_verdefs(readelf: str, lib: Path) -> list[tuple[str, bool]]:
    """``(name, is_base)`` of every Elf_Verdef, per ``readelf -V -W``."""
    text = subprocess.run([readelf, "-V", "-W", str(lib)], capture_output=True, text=True,
                          check=True).stdout
    section = text.split("Version definition section", 1)
    if len(section) < 2:
        return []
    body = section[1].split("Version needs section", 1)[0]
    out = []
    for m in re.finditer(r"Flags:\s*(\S+)\s+Index:\s*\d+\s+Cnt:\s*\d+\s+Name:\s*(\S+)", body):
        out.append((m.group(2), m.group(1) == "BASE"))
    return out


def test_readelf_sees_the_12_4_symbol_only_in_the_pip_copy(real_libs: dict[str, Path], readelf: str) -> None:
    new = readelf_defined(readelf, real_libs[PIP])
    old = readelf_defined(readelf, real_libs[TOOLKIT])
    assert (SYMBOL, NODE, True) in new
    assert not any(name == SYMBOL for name, _, _ in old)
    # the toolkit copy is the same ABI line: the same soname and the same (non-base) version node
    assert (NODE, False) in readelf_verdefs(readelf, real_libs[TOOLKIT])
    assert (NODE, False) in readelf_verdefs(readelf, real_libs[PIP])
    assert ("__nvJitLinkComplete_12_1", NODE, True) in old


@pytest.mark.parametrize("version", list(WHEELS))
def test_read_elf_facts_agrees_with_readelf(real_libs: dict[str, Path], readelf: str, version: str) -> None:
    lib = real_libs[version]
    facts = read_elf_facts(lib)
    oracle = readelf_defined(readelf, lib)
    assert oracle, "readelf listed no __nvJitLink* definitions"
    assert facts.soname == NODE and facts.version_base == NODE
    assert NODE in facts.version_defs
    assert facts.has_versym and facts.runpath == () and facts.rpath == ()
    model = {(n, v) for n, v in facts.defined if n.startswith("__nvJitLink")}
    assert model == {(n, v) for n, v, _ in oracle}
    # default (@@) definitions are the visible ones; none is hidden in NVIDIA's libraries
    assert {n for n, _, default in oracle if default} == {n for n in facts.visible if n.startswith("__nvJitLink")}
    assert facts.defines(SYMBOL, NODE) is (version == PIP)
    assert facts.defines("__nvJitLinkComplete_12_1", NODE)


# --------------------------------------------------------------------------------------------
# the scenario
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree(real_libs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    if elfbuild.find_gcc() is None:
        unavailable("gcc not found (apt install gcc)")
    root = tmp_path_factory.mktemp("cause37-real")
    site = root / "site-packages"
    nv = site / "nvidia"
    jit = nv / "nvjitlink" / "lib" / "libnvJitLink.so.12"
    link_file(real_libs[PIP], jit)
    link_file(real_libs[TOOLKIT], root / "cuda-12.1" / "lib64" / "libnvJitLink.so.12")
    cudart = elfbuild.build_lib(nv / "cuda_runtime" / "lib", "libcudart.so.12", soname="libcudart.so.12",
                                defines=["cudaGetDeviceCount"], marker="pip-cudart")
    # pip's libcusparse.so.12 of CUDA 12.4: no RUNPATH, needs the 12.4 entry point
    sparse = elfbuild.build_lib(nv / "cusparse" / "lib", "libcusparse.so.12", soname="libcusparse.so.12",
                                needed=[jit], refs=[f"{SYMBOL}@{NODE}"], marker="pip-sparse-real-jit")
    facts = read_elf_facts(sparse)
    assert facts.runpath == () and facts.rpath == () and "libnvJitLink.so.12" in facts.needed
    assert any(u.name == SYMBOL and u.version == NODE for u in facts.undefined)
    build_fake_torch(site, global_deps_needed=[cudart],
                     global_deps_runpath=["$ORIGIN/../../nvidia/cuda_runtime/lib"],
                     cuda_lib_needed=[jit, sparse],
                     cuda_lib_runpath=["$ORIGIN/../../nvidia/nvjitlink/lib", "$ORIGIN/../../nvidia/cusparse/lib"])
    return root


def _model(site: Path, llp: str | None) -> LinuxCheckContext:
    return model_context(site, llp)  # type: ignore[no-any-return]


def _toolkit(tree: Path) -> str:
    return str(tree / "cuda-12.1" / "lib64")


def test_real_import_fails_as_in_the_issue(tree: Path) -> None:
    site = tree / "site-packages"
    real_error, _ = import_in_child(site, _toolkit(tree))
    sparse = site / "torch" / "lib" / "../../nvidia/cusparse/lib/libcusparse.so.12"
    assert real_error is not None
    # as in the issue: the import of torch._C fails (libtorch_global_deps loads fine); ld.so
    # names the object by the path it was found by (libtorch_cuda's $ORIGIN RUNPATH)
    assert real_error == f"ImportError: {sparse}: {ISSUE_TAIL}", real_error


def test_model_predicts_the_identical_error_and_names_the_cause(tree: Path) -> None:
    site = tree / "site-packages"
    llp = _toolkit(tree)
    real_error, _ = import_in_child(site, llp)
    lctx = _model(site, llp)
    replay = lctx.primary
    assert replay is not None and not replay.ok
    assert replay.error == real_error
    report = diagnose_linux(lctx)
    top = report.findings[0]
    assert top.id == "linux-ld-library-path-shadowing", [f.id for f in report.findings]
    assert top.severity is Severity.ERROR
    assert top.explains == "torch"
    assert any(llp in e.value for e in top.evidence)
    assert any("torchdll run" in step for step in top.fix)
    pred = report.predictions[0]
    assert pred.culprit_path == str(Path(llp) / "libnvJitLink.so.12")
    assert pred.rule == "ld-library-path"


def test_without_the_toolkit_the_real_import_and_the_model_agree(tree: Path) -> None:
    site = tree / "site-packages"
    real_error, maps = import_in_child(site, None)
    assert real_error is None, real_error
    real_jit = str(site / "nvidia" / "nvjitlink" / "lib" / "libnvJitLink.so.12")
    assert real_jit in maps
    lctx = _model(site, None)
    assert lctx.primary is not None and lctx.primary.ok, lctx.primary.error if lctx.primary else None
    predicted = {os.path.realpath(load.path) for step in lctx.primary.steps for load in step.call.loaded}
    assert {os.path.realpath(p) for p in maps if str(site) in p} == {p for p in predicted if str(site) in p}
    assert not [f for f in diagnose_linux(lctx).findings if f.severity is Severity.ERROR]


def test_torchdll_run_fixes_the_same_command(tree: Path) -> None:
    site = tree / "site-packages"
    llp = _toolkit(tree)
    command = [sys.executable, "-m", "torchdll", "run", "--"]
    real_error, maps = import_in_child(site, llp, command=command, extra_env={"PYTHONPATH": str(site)})
    assert real_error is None, real_error
    assert str(site / "nvidia" / "nvjitlink" / "lib" / "libnvJitLink.so.12") in maps
    assert not any(p.startswith(llp) for p in maps)
