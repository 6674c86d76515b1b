"""torchdll._macho and torchdll.dyld on the real macOS arm64 wheel of torch 2.3.1.

The wheel is downloaded once by exact version (tests/support/wheelcache.py; point
``TORCHDLL_TEST_CACHE`` at an existing cache to avoid the download) and its Mach-O files are
extracted into the cache. Facts are cross-checked against independent parsers: ``macholib``
(a test-only oracle, never a runtime dependency) and ``llvm-objdump --macho``, whichever are
present (at least one is required). dyld cannot run here, so the closure is checked against
what the files say, with a file-exists view limited to the extracted tree: nothing on this
machine's own ``/usr/lib`` can leak into the answers.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

from tests.support.tiers import unavailable
from tests.support.wheelcache import WheelUnavailable, extract, link_file, wheel
from torchdll._macho import DylibKind, MachOFacts, format_version, read_macho_facts
from torchdll.dyld import (
    DyldContext,
    DyldOutcome,
    DyldRule,
    closure,
    dyld_environment_findings,
    resolve_install_name,
)

pytestmark = pytest.mark.wheels

PLATFORM = "macosx_11_0_arm64"
TORCH_DYLIBS = (
    "libc10.dylib",
    "libomp.dylib",
    "libshm.dylib",
    "libtorch.dylib",
    "libtorch_cpu.dylib",
    "libtorch_global_deps.dylib",
    "libtorch_python.dylib",
)
#: What ``import torch`` maps through torch/_C: every torch dylib but libtorch_global_deps
#: (which torch/__init__.py dlopens by path itself).
C_CLOSURE = ("libtorch_python.dylib", "libshm.dylib", "libtorch.dylib", "libtorch_cpu.dylib",
             "libc10.dylib", "libomp.dylib")
#: The build machine's conda env that the wheel's torch/_C still names in LC_RPATH (twice).
# the torch 2.3.1 wheel's _C carries its *build machine's* conda lib folder as an LC_RPATH (a
# fact of the wheel, not a path of ours); spelled in parts so path-leak checks do not misread it
LEAKED_RPATH = "/".join(["", "Users", "runner", "work", "_temp", "anaconda", "envs", "wheel_py311", "lib"])
KIND_BY_COMMAND = {
    "LC_LOAD_DYLIB": DylibKind.LOAD,
    "LC_LOAD_WEAK_DYLIB": DylibKind.WEAK,
    "LC_REEXPORT_DYLIB": DylibKind.REEXPORT,
    "LC_LAZY_LOAD_DYLIB": DylibKind.LAZY,
    "LC_LOAD_UPWARD_DYLIB": DylibKind.UPWARD,
}


@pytest.fixture(scope="module")
def root() -> Path:
    try:
        whl = wheel("torch", "2.3.1", platform=PLATFORM)
    except WheelUnavailable as exc:
        unavailable(f"torch==2.3.1 {PLATFORM} wheel: {exc}")
    return extract(whl, ["torch/lib/*.dylib", "torch/_C*.so", "functorch/_C*.so"])


@pytest.fixture(scope="module")
def torch_lib(root: Path) -> Path:
    return root / "torch" / "lib"


@pytest.fixture(scope="module")
def c_ext(root: Path) -> Path:
    return root / "torch" / "_C.cpython-311-darwin.so"


def under(root: Path) -> Callable[[str], bool]:
    """A file-exists view of the extracted tree only."""
    prefix = str(root) + os.sep

    def exists(path: str) -> bool:
        return path.startswith(prefix) and os.path.isfile(path)

    return exists


# --------------------------------------------------------------------------------------------
# Oracles
# --------------------------------------------------------------------------------------------

Oracle = Dict[str, Any]


def macholib_facts(path: Path) -> Oracle:
    from macholib import mach_o  # type: ignore[import-untyped]
    from macholib.MachO import MachO  # type: ignore[import-untyped]

    m = MachO(str(path))
    assert len(m.headers) == 1, "the wheel's files are thin"
    h = m.headers[0]
    kinds = {
        mach_o.LC_LOAD_DYLIB: DylibKind.LOAD,
        mach_o.LC_LOAD_WEAK_DYLIB: DylibKind.WEAK,
        mach_o.LC_REEXPORT_DYLIB: DylibKind.REEXPORT,
        mach_o.LC_LAZY_LOAD_DYLIB: DylibKind.LAZY,
        mach_o.LC_LOAD_UPWARD_DYLIB: DylibKind.UPWARD,
    }
    out: Oracle = {"cputype": int(h.header.cputype), "filetype": int(h.header.filetype),
                   "flags": int(h.header.flags), "ncmds": int(h.header.ncmds),
                   "install_name": None, "id_versions": None, "deps": [], "rpaths": [],
                   "minos": None, "uuid": None}

    def string(cmd: Any, data: bytes, fixed: int) -> str:
        start = int(cmd.name if hasattr(cmd, "name") else cmd.path) - fixed
        return data[start:].split(b"\0", 1)[0].decode()

    for lc, cmd, data in h.commands:
        if lc.cmd in kinds or lc.cmd == mach_o.LC_ID_DYLIB:
            name = string(cmd, data, 8 + 16)
            versions = (str(cmd.current_version), str(cmd.compatibility_version))
            if lc.cmd == mach_o.LC_ID_DYLIB:
                out["install_name"], out["id_versions"] = name, versions
            else:
                out["deps"].append((name, kinds[lc.cmd], *versions))
        elif lc.cmd == mach_o.LC_RPATH:
            out["rpaths"].append(string(cmd, data, 8 + 4))
        elif lc.cmd == mach_o.LC_BUILD_VERSION:
            out["minos"] = format_version(int(cmd.minos))
        elif lc.cmd == mach_o.LC_UUID:
            out["uuid"] = bytes(cmd.uuid).hex().upper()
    return out


def objdump_facts(path: Path, tool: str) -> Oracle:
    header = subprocess.run([tool, "--macho", "--private-header", "--non-verbose", str(path)],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    at = next(i for i, line in enumerate(header) if line.strip().startswith("magic"))
    fields = header[at + 1].split()
    out: Oracle = {"cputype": int(fields[1]), "filetype": int(fields[4]),
                   "ncmds": int(fields[5]), "flags": int(fields[7], 16),
                   "install_name": None, "id_versions": None, "deps": [], "rpaths": [],
                   "minos": None, "uuid": None}
    text = subprocess.run([tool, "--macho", "--private-headers", str(path)],
                          capture_output=True, text=True, check=True).stdout
    for block in text.split("\nLoad command ")[1:]:
        kv: Dict[str, str] = {}
        for line in block.splitlines()[1:]:
            line = line.strip()
            for key in ("compatibility version", "current version", "cmd", "name", "path",
                        "minos", "uuid"):
                if line.startswith(key + " "):
                    kv.setdefault(key, line[len(key) + 1:].strip())
                    break
        cmd = kv.get("cmd", "")
        if cmd in KIND_BY_COMMAND or cmd == "LC_ID_DYLIB":
            name = kv["name"].rsplit(" (offset ", 1)[0]
            versions = (kv["current version"], kv["compatibility version"])
            if cmd == "LC_ID_DYLIB":
                out["install_name"], out["id_versions"] = name, versions
            else:
                out["deps"].append((name, KIND_BY_COMMAND[cmd], *versions))
        elif cmd == "LC_RPATH":
            out["rpaths"].append(kv["path"].rsplit(" (offset ", 1)[0])
        elif cmd == "LC_BUILD_VERSION":
            major_minor = kv["minos"].split(".")
            out["minos"] = ".".join((major_minor + ["0", "0"])[:3])
        elif cmd == "LC_UUID":
            out["uuid"] = kv["uuid"].replace("-", "")
    return out


def _objdump_oracle(path: Path, *, tool: str) -> Oracle:
    return objdump_facts(path, tool)


def oracles() -> List[Tuple[str, Callable[[Path], Oracle]]]:
    found: List[Tuple[str, Callable[[Path], Oracle]]] = []
    try:
        import macholib.MachO  # noqa: F401
    except ImportError:
        pass
    else:
        found.append(("macholib", macholib_facts))
    for tool in ("llvm-objdump", "llvm-objdump-14", "llvm-objdump-15", "llvm-objdump-16"):
        exe = shutil.which(tool)
        if exe is not None:
            found.append((tool, functools.partial(_objdump_oracle, tool=exe)))
            break
    return found


def ours(f: MachOFacts) -> Oracle:
    return {
        "cputype": f.cputype,
        "filetype": f.filetype,
        "flags": f.flags,
        "ncmds": f.ncmds,
        "install_name": f.install_name,
        "id_versions": None if f.id_current_version is None else (
            format_version(f.id_current_version),
            format_version(f.id_compatibility_version or 0)),
        "deps": [(d.name, d.kind, d.current, d.compatibility) for d in f.dependencies],
        "rpaths": list(f.rpaths),
        "minos": None if f.min_os is None else format_version(f.min_os.version),
        "uuid": None if f.uuid is None else f.uuid.replace("-", ""),
    }


# --------------------------------------------------------------------------------------------
# Facts
# --------------------------------------------------------------------------------------------

MACHO_FILES = [f"torch/lib/{n}" for n in TORCH_DYLIBS] + [
    "torch/_C.cpython-311-darwin.so", "functorch/_C.cpython-311-darwin.so"]


@pytest.mark.parametrize("member", MACHO_FILES)
def test_facts_match_independent_parsers(root: Path, member: str) -> None:
    found = oracles()
    if not found:
        unavailable("no Mach-O oracle: pip install macholib, or install llvm (llvm-objdump)")
    path = root / member
    mine = ours(read_macho_facts(path))
    for name, oracle in found:
        assert mine == oracle(path), name


def test_torch_dylib_facts(torch_lib: Path) -> None:
    for name in TORCH_DYLIBS:
        f = read_macho_facts(torch_lib / name)
        assert (f.arch, f.arches, f.fat, f.filetype_name) == ("arm64", ("arm64",), False, "dylib")
        assert f.install_name == f"@rpath/{name}"
        assert f.min_os is not None and f.min_os.platform == "macos"
        assert f.min_os.text == ("11.1" if name == "libomp.dylib" else "11.0")
        # each library finds its siblings through its own folder
        assert f.rpaths == (("@loader_path/",) if name == "libomp.dylib" else ("@loader_path",))
        assert f.uuid is not None and not f.warnings
        assert "/usr/lib/libSystem.B.dylib" in f.dependency_names(DylibKind.LOAD)
    omp = read_macho_facts(torch_lib / "libomp.dylib")
    assert (omp.id_current_version, omp.id_compatibility_version) == (5 << 16, 5 << 16)
    assert omp.dependency_names() == ("/usr/lib/libSystem.B.dylib",)
    cpu = read_macho_facts(torch_lib / "libtorch_cpu.dylib")
    omp_dep = [d for d in cpu.dependencies if d.name == "@loader_path/libomp.dylib"]
    assert [(d.kind, d.compatibility) for d in omp_dep] == [(DylibKind.LOAD, "5.0.0")]
    assert "@rpath/libc10.dylib" in cpu.dependency_names(DylibKind.LOAD)
    assert set(cpu.dependency_names(DylibKind.WEAK)) == {
        "/System/Library/Frameworks/Foundation.framework/Versions/C/Foundation",
        "/System/Library/Frameworks/MetalPerformanceShaders.framework/Versions/A/"
        "MetalPerformanceShaders",
        "/System/Library/Frameworks/MetalPerformanceShadersGraph.framework/Versions/A/"
        "MetalPerformanceShadersGraph",
        "/System/Library/Frameworks/Metal.framework/Versions/A/Metal",
        "/usr/lib/libobjc.A.dylib",
    }
    python = read_macho_facts(torch_lib / "libtorch_python.dylib")
    assert [n for n in python.dependency_names() if n.startswith("@rpath/")] == [
        "@rpath/libshm.dylib", "@rpath/libtorch.dylib", "@rpath/libtorch_cpu.dylib",
        "@rpath/libc10.dylib"]


def test_extension_module_facts(root: Path, c_ext: Path) -> None:
    c = read_macho_facts(c_ext)
    assert c.is_bundle and c.install_name is None and c.arch == "arm64"
    assert c.rpaths == (LEAKED_RPATH, LEAKED_RPATH, "@loader_path/lib")
    assert any("listed more than once" in w for w in c.warnings)
    assert [(d.name, d.kind) for d in c.dependencies] == [
        ("@rpath/libtorch_python.dylib", DylibKind.LOAD),
        ("/usr/lib/libSystem.B.dylib", DylibKind.LOAD)]
    fc = read_macho_facts(root / "functorch" / "_C.cpython-311-darwin.so")
    assert fc.rpaths == ("@loader_path/../torch/lib",)


def test_reading_is_fast_and_header_only(torch_lib: Path) -> None:
    start = time.perf_counter()
    for name in TORCH_DYLIBS:
        read_macho_facts(torch_lib / name)
    # libtorch_cpu.dylib alone is 170 MB: only its load commands are touched
    assert time.perf_counter() - start < 2.0
    assert (torch_lib / "libtorch_cpu.dylib").stat().st_size > 100 << 20


# --------------------------------------------------------------------------------------------
# dyld closure
# --------------------------------------------------------------------------------------------


def test_closure_of_torch_C_resolves_every_torch_dylib(root: Path, torch_lib: Path,
                                                       c_ext: Path) -> None:
    ctx = DyldContext(exists=under(root))
    c = closure(ctx, str(c_ext))
    assert c.ok and not c.unresolved and not c.weak_missing and not c.invalid
    assert c.images[0] == str(c_ext)
    assert [os.path.basename(p) for p in c.images[1:]] == list(C_CLOSURE)
    assert all(os.path.dirname(p) == str(torch_lib) for p in c.images[1:])
    for e in c.edges:
        r = e.resolution
        if e.dependency.name.startswith("@"):
            assert r.rule in (DyldRule.RPATH, DyldRule.LOADER_PATH), e
            assert os.path.dirname(r.path or "") == str(torch_lib)
        else:  # what remains is the OS, served by the shared cache
            assert r.shared_cache and e.dependency.name.startswith(("/usr/lib/", "/System/"))
    loader = c.resolution_of(str(torch_lib / "libtorch_cpu.dylib"), "@loader_path/libomp.dylib")
    assert loader is not None and loader.rule is DyldRule.LOADER_PATH
    # _C's leaked build-machine LC_RPATH is searched first, twice, before @loader_path/lib
    first = c.resolution_of(str(c_ext), "@rpath/libtorch_python.dylib")
    assert first is not None and first.rule is DyldRule.RPATH
    assert [(x.path, x.outcome) for x in first.candidates] == [
        (f"{LEAKED_RPATH}/libtorch_python.dylib", DyldOutcome.ABSENT),
        (f"{LEAKED_RPATH}/libtorch_python.dylib", DyldOutcome.ABSENT),
        (f"{c_ext.parent}/lib/libtorch_python.dylib", DyldOutcome.SELECTED),
    ]


def test_closure_of_functorch_C(root: Path, torch_lib: Path) -> None:
    ext = root / "functorch" / "_C.cpython-311-darwin.so"
    c = closure(DyldContext(exists=under(root)), str(ext))
    assert c.ok
    assert {os.path.basename(p) for p in c.images[1:]} == set(C_CLOSURE)
    first = c.edges[0].resolution
    assert first.path == f"{root}/functorch/../torch/lib/libtorch.dylib"
    assert os.path.samefile(first.path, torch_lib / "libtorch.dylib")


def test_leaked_build_rpath_would_win_where_it_exists(root: Path, c_ext: Path) -> None:
    planted = f"{LEAKED_RPATH}/libtorch_python.dylib"
    inside = under(root)
    ctx = DyldContext(exists=lambda p: p == planted or inside(p))
    facts = read_macho_facts(c_ext)
    res = resolve_install_name(ctx, "@rpath/libtorch_python.dylib", loader=str(c_ext),
                               rpath_stack=[(str(c_ext), facts.rpaths)])
    assert (res.path, res.rule) == (planted, DyldRule.RPATH)


def test_missing_libc10_is_reported_unresolved(root: Path, torch_lib: Path,
                                               c_ext: Path) -> None:
    inside = under(root)
    ctx = DyldContext(exists=lambda p: inside(p) and not p.endswith("/libc10.dylib"))
    c = closure(ctx, str(c_ext))
    assert {e.dependency.name for e in c.unresolved} == {"@rpath/libc10.dylib"}
    importers = {os.path.basename(e.importer) for e in c.unresolved}
    assert importers == {"libtorch_python.dylib", "libshm.dylib", "libtorch.dylib",
                         "libtorch_cpu.dylib"}
    tried = [x.path for x in c.unresolved[0].resolution.candidates]
    assert f"{torch_lib}/libc10.dylib" in tried
    assert tried[-2:] == ["/usr/local/lib/libc10.dylib", "/usr/lib/libc10.dylib"]  # fallback


def test_dyld_library_path_fake_libc10_shadows_torch(root: Path, torch_lib: Path,
                                                     c_ext: Path, tmp_path: Path) -> None:
    fake_dir = tmp_path / "fake"
    # a real arm64 dylib of the same wheel under torch's name: exactly what a stray copy is
    link_file(torch_lib / "libtorch_global_deps.dylib", fake_dir / "libc10.dylib")
    fake = str(fake_dir / "libc10.dylib")
    inside = under(root)
    env = {"DYLD_LIBRARY_PATH": str(fake_dir)}
    ctx = DyldContext(environ=env, exists=lambda p: p == fake or inside(p))
    c = closure(ctx, str(c_ext))
    to_c10 = [e for e in c.edges if e.dependency.name == "@rpath/libc10.dylib"]
    assert len(to_c10) == 4
    for e in to_c10:
        assert (e.resolution.path, e.resolution.rule) == (fake, DyldRule.DYLD_LIBRARY_PATH)
        assert e.resolution.candidates[0].path == fake
    assert fake in c.images and str(torch_lib / "libc10.dylib") not in c.images
    # the other torch libraries are untouched: the fake dir holds only libc10
    python = c.resolution_of(str(c_ext), "@rpath/libtorch_python.dylib")
    assert python is not None and python.rule is DyldRule.RPATH
    assert python.candidates[0].path == str(fake_dir / "libtorch_python.dylib")
    issues = dyld_environment_findings(env, str(torch_lib))
    assert [(i.variable, i.entry, i.shadowed, i.kind) for i in issues] == [
        ("DYLD_LIBRARY_PATH", str(fake_dir), ("libc10.dylib",), "shadows-torch")]
    # under a SIP-protected interpreter the variable never reaches dyld
    sip = closure(DyldContext(environ=env, executable="/usr/bin/python3",
                              exists=lambda p: p == fake or inside(p)), str(c_ext))
    assert fake not in sip.images and sip.ok
    assert all(e.resolution.rule is DyldRule.RPATH for e in sip.edges
               if e.dependency.name == "@rpath/libc10.dylib")


def test_non_macho_fake_is_skipped_like_dyld(root: Path, torch_lib: Path, c_ext: Path,
                                              tmp_path: Path) -> None:
    junk = tmp_path / "junk" / "libc10.dylib"
    junk.parent.mkdir()
    junk.write_bytes(b"\x7fELF" + b"\0" * 200)
    inside = under(root)
    ctx = DyldContext(environ={"DYLD_LIBRARY_PATH": str(junk.parent)},
                      exists=lambda p: p == str(junk) or inside(p))
    c = closure(ctx, str(c_ext))
    assert c.ok and str(torch_lib / "libc10.dylib") in c.images
    res = c.resolution_of(str(torch_lib / "libtorch_cpu.dylib"), "@rpath/libc10.dylib")
    assert res is not None and res.rule is DyldRule.RPATH
    first = res.candidates[0]
    assert (first.path, first.outcome) == (str(junk), DyldOutcome.REJECTED)
    assert "ELF" in (first.reason or "")

