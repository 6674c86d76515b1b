"""Loader-model bugs found by the Wine differential test: now regression tests.

Each test is minimal and runs on the model alone (synthetic DLLs in a mirrored tree; no Wine
needed) and names the evidence that Windows behaves as the test expects; docs/wine.md has the
details and the Wine measurements (``test_wine_quirks.py``). They were written as strict
xfails while the bugs were open; all seven are fixed (torchdll/resolver.py, closure.py).
A new model bug found by the tier goes here the same way: a minimal test marked
``pytest.mark.xfail(strict=True, reason=...)``, plus a ``MODEL_BUG`` family in
``differential.py``, until the model is fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torchdll._pebuild import ExportSpec, write_pe
from torchdll.closure import CallResult, LoadCall, simulate
from torchdll.fsview import MirrorView
from torchdll.model import LoadContext, Machine


def put(root: Path, win_path: str, **kwargs: Any) -> None:
    drive, rest = win_path[0], win_path[3:]
    write_pe(root.joinpath(drive, *rest.split("\\")), name=win_path.rsplit("\\", 1)[-1],
             **kwargs)


def context(root: Path, **kwargs: Any) -> LoadContext:
    for d in ("app", "Windows\\System32", "Windows\\System"):
        root.joinpath("C", *d.split("\\")).mkdir(parents=True, exist_ok=True)
    base: dict[str, Any] = {"app_dir": "C:\\app", "cwd": "C:\\app", "known_dlls": {}}
    base.update(kwargs)
    return LoadContext(**base)


def run(root: Path, ctx: LoadContext, calls: Sequence[tuple[str, int]]
        ) -> tuple[CallResult, ...]:
    return simulate([LoadCall(t, f) for t, f in calls], ctx, MirrorView(root)).results


def path_of(results: Sequence[CallResult], name: str) -> str | None:
    for r in results:
        for p in r.mapped:
            if p.lower().endswith("\\" + name):
                return str(p)
    return None


def test_search_finding_only_wrong_machine_is_193(tmp_path: Path) -> None:
    """A search that finds only wrong-machine files fails with 193 (the model said 126).

    oracle/odpi#49: "When incorrect-architecture OCI.DLL is in the PATH and
    correct-architecture OCI.DLL isn't there, GetLastError() returns ERROR_BAD_EXE_FORMAT";
    Wine 8's find_dll_file turns a complete search that met only such files into
    STATUS_INVALID_IMAGE_FORMAT (test_wine_quirks.test_wrong_machine).
    """
    put(tmp_path, "C:\\x86\\foo.dll", machine=Machine.I386, exports=["f"])
    ctx = context(tmp_path, path=("C:\\x86",))
    (res,) = run(tmp_path, ctx, [("foo.dll", 0)])
    assert res.error == 193


def test_altered_search_path_after_set_default_dll_directories(tmp_path: Path) -> None:
    """After SetDefaultDllDirectories, LOAD_WITH_ALTERED_SEARCH_PATH means
    LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR plus the default flags (the model used mode C/B).

    A relative name fails with 87 (java-native-access/jna#1614 and JuliaLang/julia#47775
    reproduce it on Windows); an absolute one searches the DLL's folder and the default
    directories, not PATH (Wine 8 ntdll LdrGetDllPath; measured in test_wine_quirks).
    """
    put(tmp_path, "C:\\app\\foo.dll", exports=["f"])
    put(tmp_path, "C:\\lib\\top.dll", imports={"dep.dll": ["f"]})
    put(tmp_path, "C:\\onpath\\dep.dll", exports=["f"])
    ctx = context(tmp_path, default_flags=0x1000, path=("C:\\onpath",))
    relative, absolute = run(tmp_path, ctx, [("foo.dll", 0x8), ("C:\\lib\\top.dll", 0x8)])
    assert relative.error == 87
    assert absolute.error == 126  # dep.dll is only on PATH, which mode A never searches


def test_altered_search_path_honours_set_dll_directory(tmp_path: Path) -> None:
    """LOAD_WITH_ALTERED_SEARCH_PATH honours SetDllDirectory: the DLL directory takes the place
    of the current directory, as in the standard order (the model ignored it in mode C).

    Windows' kernel32 LoadLibraryExW computes the altered order with the routine that inserts
    the DLL directory (BaseComputeProcessDllPath(altered ? lpFileName : NULL)); SetDllDirectory
    "affects all subsequent calls to the LoadLibrary and LoadLibraryEx functions"; Wine 8's
    LdrGetDllPath does the same (measured in test_wine_quirks).
    """
    put(tmp_path, "C:\\lib\\top.dll", imports={"dep.dll": ["f"]})
    put(tmp_path, "C:\\dlldir\\dep.dll", exports=["f"])
    put(tmp_path, "C:\\cwd\\dep.dll", exports=["f"])
    ctx = context(tmp_path, cwd="C:\\cwd", dll_directory="C:\\dlldir")
    (res,) = run(tmp_path, ctx, [("C:\\lib\\top.dll", 0x8)])
    assert res.error is None
    assert path_of([res], "dep.dll") == "C:\\dlldir\\dep.dll"


def test_forwarder_target_is_loaded(tmp_path: Path) -> None:
    """The module a forwarder points to is loaded and stays: later loads find it by name (the
    model resolved it for the symbol check only).

    "The corresponding target DLL is not loaded until somebody links to the forwarder entry"
    (R. Chen, The Old New Thing, 2006-07-19 and 2008-02-04); measured under Wine 8
    (test_wine_quirks.test_forwarder_target_is_loaded_with_its_imports).
    """
    put(tmp_path, "C:\\lib\\usefw.dll", imports={"fw.dll": ["g"]})
    put(tmp_path, "C:\\lib\\fw.dll", exports=[ExportSpec("g", forwarder="tgt.f")])
    put(tmp_path, "C:\\lib\\tgt.dll", exports=["f"])
    put(tmp_path, "C:\\onpath\\tgt.dll", exports=["f"])
    ctx = context(tmp_path, path=("C:\\onpath",))
    first, second = run(tmp_path, ctx, [("C:\\lib\\usefw.dll", 0x1100), ("tgt.dll", 0)])
    assert first.error is None
    assert "C:\\lib\\tgt.dll" in first.mapped
    assert second.resolution.path == "C:\\lib\\tgt.dll"  # the loaded module, not PATH's copy


def test_forwarder_target_dependencies_are_loaded(tmp_path: Path) -> None:
    """A forwarder's target is loaded with its own imports: one missing fails the load with 126
    (the model only checked that the target file exists). Measured under Wine 8
    (err:module:find_forwarded_export "module not found for forward").
    """
    put(tmp_path, "C:\\lib\\usefw.dll", imports={"fw.dll": ["g"]})
    put(tmp_path, "C:\\lib\\fw.dll", exports=[ExportSpec("g", forwarder="tgt.f")])
    put(tmp_path, "C:\\lib\\tgt.dll", exports=["f"], imports={"missing.dll": ["x"]})
    ctx = context(tmp_path)
    (res,) = run(tmp_path, ctx, [("C:\\lib\\usefw.dll", 0x1100)])
    assert res.error == 126


def test_latent_edge_checks_the_delay_dll_dependencies(tmp_path: Path) -> None:
    """The delay helper loads a delay-loaded DLL with LoadLibraryExA(name, NULL, 0), which fails
    when that DLL's own imports are missing (the model's latent edge only checked that the DLL
    is found and exports the symbols). Measured under Wine 8
    (test_wine_quirks.test_delay_load_resolves_like_a_load_call).
    """
    put(tmp_path, "C:\\app\\host.dll", delay_imports={"dl.dll": ["f"]})
    put(tmp_path, "C:\\app\\dl.dll", exports=["f"], imports={"missing.dll": ["x"]})
    ctx = context(tmp_path)
    (res,) = run(tmp_path, ctx, [("C:\\app\\host.dll", 0)])
    assert res.error is None
    (edge,) = [e for e in res.edges if e.delay]
    assert edge.error == 126


def test_adddir_order_is_last_added_first(tmp_path: Path) -> None:
    """AddDllDirectory folders are searched last-added-first (the model used the order of
    addition).

    Microsoft leaves the order unspecified; Wine's conformance test
    dlls/kernel32/tests/module.c test_LoadLibraryEx_search_flags, which also runs on Windows,
    expects folder 3 after AddDllDirectory(1), (2), (3); Wine 8 measured the same.
    """
    put(tmp_path, "C:\\u1\\foo.dll", exports=["f"])
    put(tmp_path, "C:\\u2\\foo.dll", exports=["f"])
    ctx = context(tmp_path, user_dirs=("C:\\u1", "C:\\u2"))
    (res,) = run(tmp_path, ctx, [("foo.dll", 0x1000)])
    assert res.resolution.path == "C:\\u2\\foo.dll"
