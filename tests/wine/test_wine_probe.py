"""The run-time probe (``torchdll.probe.probe``) bisecting real DLL loads under Wine.

:class:`probe_backend.WineProbeBackend` is the probe's "child process": every plan runs in a
fresh Wine process (``loadplan.exe``). The probe computes the bottom-up order with the loader
model over the same mirrored tree, loads leaves first and names the first DLL that fails by
itself; it also loads the target alone (``direct``). Cases:

* a synthetic chain ``top -> mid -> leaf -> gone.dll`` (``gone.dll`` absent): the probe names
  ``leaf.dll`` with 126 while ``top.dll`` alone fails with 126 as well;
* the mingw fixture ``init_fails.dll`` (DllMain returns FALSE), imported by a synthetic
  ``uses_init.dll`` next to a healthy dependency: 1114 named on ``init_fails.dll``, the other
  dependency loading;
* torch 2.3.1 (real wheels): without mkl, probing ``shm.dll`` names ``torch_cpu.dll`` failing
  by itself with 126 (its ``mkl_intel_thread.1.dll`` is absent); with mkl everything loads.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures import build
from tests.support.tiers import unavailable
from tests.support.torchlayout import TorchLayout, build_torch_layout, layout_snapshot
from torchdll import _data
from torchdll._pebuild import build_pe
from torchdll.fsview import MirrorView
from torchdll.probe import ProbeResult, probe
from torchdll.snapshot import Snapshot

from . import runner
from .conftest import PlanRunner
from .probe_backend import WineProbeBackend

pytestmark = pytest.mark.wine

TorchProbe = Callable[[bool, str], ProbeResult]


def _snapshot(app: str) -> Snapshot:
    """A process whose application directory is ``app`` in the shared prefix's Windows."""
    return Snapshot(platform="win32", os_release="10.0.22631", machine="x64", app_dir=app, cwd=app,
                    process_path="C:\\windows\\system32;C:\\windows",
                    system32="C:\\windows\\system32", windows_dir="C:\\windows",
                    system_dir="C:\\windows\\system", known_dlls=_data.default_known_dlls(),
                    loaded_modules=(app + "\\loadplan.exe",))


def _backend(plans: PlanRunner, folder: str) -> tuple[WineProbeBackend, MirrorView]:
    app = f"{plans.letter}:\\{folder}\\app"
    exe = plans.place_exe(app)
    work = plans.drive / folder / "work"
    view = MirrorView(plans.root)
    return WineProbeBackend(plans.prefix, exe, (work, plans.win(work)),
                            host_path=view.host_path), view


def _write(plans: PlanRunner, win_path: str, data: bytes) -> str:
    host = plans.host(win_path)
    host.parent.mkdir(parents=True, exist_ok=True)
    host.write_bytes(data)
    return win_path


def test_missing_leaf_import_is_named_on_the_leaf(plans: PlanRunner) -> None:
    backend, view = _backend(plans, "probe_chain")
    lib = f"{plans.letter}:\\probe_chain\\lib"
    _write(plans, lib + "\\leaf.dll", build_pe(name="leaf.dll", exports=["l"],
                                               imports={"gone.dll": ["g"]}))
    _write(plans, lib + "\\mid.dll", build_pe(name="mid.dll", exports=["m"],
                                              imports={"leaf.dll": ["l"]}))
    top = _write(plans, lib + "\\top.dll", build_pe(name="top.dll", exports=["t"],
                                                    imports={"mid.dll": ["m"]}))
    app = f"{plans.letter}:\\probe_chain\\app"
    res = probe(top, backend=backend, snapshot=_snapshot(app), view=view)

    assert [p.rsplit("\\", 1)[-1] for p in res.order] == ["leaf.dll", "mid.dll", "top.dll"]
    assert res.failing is not None and res.failing.name == "leaf.dll", res.explain()
    assert res.failing.winerror == 126 and res.winerror == 126
    assert [s.name for s in res.steps] == ["leaf.dll"]  # stopped at the first failure
    assert res.direct is not None and res.direct.name == "top.dll"
    assert (res.direct.ok, res.direct.winerror) == (False, 126)
    assert res.backend == "wine/loadplan"
    assert "leaf.dll, a dependency of top.dll, fails by itself (126)" in res.explain()
    assert any("gone.dll" in n for n in res.notes)  # the model saw it too
    # the plans the backend ran: the target alone, then the bottom-up closure
    texts = [t for t, _ in backend.runs]
    assert texts[0].strip() == f"load 0x1100 {top}"
    assert texts[1].splitlines() == [f"load 0x1100 {p}" for p in res.order]


def test_stub_binding_is_reported_as_127(plans: PlanRunner) -> None:
    """Wine binds a stub for a missing import and loads; the backend reports Windows' 127."""
    backend, view = _backend(plans, "probe_stub")
    lib = f"{plans.letter}:\\probe_stub\\lib"
    _write(plans, lib + "\\exporter.dll", build_pe(name="exporter.dll", exports=["a"]))
    top = _write(plans, lib + "\\needs_b.dll", build_pe(name="needs_b.dll", exports=["n"],
                                                         imports={"exporter.dll": ["a", "b"]}))
    res = probe(top, backend=backend, snapshot=_snapshot(f"{plans.letter}:\\probe_stub\\app"),
                view=view)
    assert [s.name for s in res.steps] == ["exporter.dll", "needs_b.dll"]
    assert res.failing is not None and res.failing.name == "needs_b.dll", res.explain()
    assert res.winerror == 127 and res.direct is not None and res.direct.winerror == 127
    assert any("wine bound stubs" in n and "exporter.dll!b" in n for n in res.notes), res.notes


def test_dllmain_returning_false_is_1114_on_that_dll(plans: PlanRunner) -> None:
    try:
        fx = build.ensure_built()
    except build.ToolchainMissing:
        unavailable("mingw-w64 not installed")
    backend, view = _backend(plans, "probe_init")
    lib = f"{plans.letter}:\\probe_init\\lib"
    _write(plans, lib + "\\init_fails.dll", (fx.root / "x64" / "app" / "init_fails.dll").read_bytes())
    _write(plans, lib + "\\healthy.dll", build_pe(name="healthy.dll", exports=["h"]))
    top = _write(plans, lib + "\\uses_init.dll", build_pe(
        name="uses_init.dll", exports=["u"],
        imports={"healthy.dll": ["h"], "init_fails.dll": ["init_fails"]}))
    app = f"{plans.letter}:\\probe_init\\app"
    res = probe(top, backend=backend, snapshot=_snapshot(app), view=view)

    names = [p.rsplit("\\", 1)[-1] for p in res.order]
    assert names[-1] == "uses_init.dll" and set(names) == {"healthy.dll", "init_fails.dll",
                                                             "uses_init.dll"}
    assert res.failing is not None and res.failing.name == "init_fails.dll", res.explain()
    assert res.failing.winerror == 1114 and res.winerror == 1114
    before = [s for s in res.steps if s is not res.failing]
    assert before and all(s.ok for s in before)  # its dependencies (and healthy.dll) load
    assert res.direct is not None and (res.direct.ok, res.direct.winerror) == (False, 1114)
    assert "init_fails.dll, a dependency of uses_init.dll, fails by itself (1114)" in res.explain()

    # probed by itself: its own dependencies (system DLLs) load, the DLL's DllMain says no
    alone = probe(lib + "\\init_fails.dll", backend=backend, snapshot=_snapshot(app), view=view)
    assert alone.failing is not None and alone.failing.name == "init_fails.dll"
    assert alone.winerror == 1114
    assert alone.explain().startswith("init_fails.dll's dependencies load; init_fails.dll fails "
                                      "(1114)")


# --------------------------------------------------------------------------------------------
# torch 2.3.1
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch_probe(wine_prefix: runner.WinePrefix, loadplan_exe: Path,
                tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[Callable[[bool, str], ProbeResult]]:
    """``torch_probe(with_mkl, dll_name) -> ProbeResult`` over a light prefix per layout."""
    from torchdll.diagnosis import diagnose_context

    from .test_wine_torch import _lower_windows_folder

    prefixes: list[runner.WinePrefix] = []
    layouts: dict[bool, tuple[TorchLayout, WineProbeBackend, list[str]]] = {}

    def get(with_mkl: bool, dll: str) -> ProbeResult:
        if with_mkl not in layouts:
            work = tmp_path_factory.mktemp("probe-mkl" if with_mkl else "probe-nomkl")
            layout = build_torch_layout(work / "tree", with_mkl=with_mkl)
            c_drive = layout.root / "C"
            _lower_windows_folder(c_drive)
            app = layout.context.app_dir
            shutil.copyfile(loadplan_exe, c_drive.joinpath(*app[3:].split("\\"), "loadplan.exe"))
            lp = runner.light_prefix(wine_prefix, work / "prefix", c_drive)
            prefixes.append(lp)
            backend = WineProbeBackend(lp, app + "\\loadplan.exe",
                                       (c_drive / "torchdll-probe", "C:\\torchdll-probe"),
                                       overrides=runner.MSVC_NATIVE,
                                       host_path=layout.view.host_path)
            snap = layout_snapshot(layout)
            dll_paths = list(diagnose_context(snap, layout.view).replays[0].dll_paths)
            layouts[with_mkl] = (layout, backend, dll_paths)
        layout, backend, dll_paths = layouts[with_mkl]
        lib = layout.context.user_dirs[0]  # C:\venv\...\torch\lib
        return probe(f"{lib}\\{dll}", backend=backend, snapshot=layout_snapshot(layout),
                     view=layout.view, dll_directories=dll_paths,
                     preload=tuple(layout.context.loaded.values()))

    yield get
    for lp in prefixes:
        lp.shutdown()


@pytest.mark.wheels
def test_torch_without_mkl_names_torch_cpu(torch_probe: TorchProbe) -> None:
    res = torch_probe(False, "shm.dll")
    names = [p.rsplit("\\", 1)[-1].lower() for p in res.order]
    assert names[-1] == "shm.dll" and "torch_cpu.dll" in names and "c10.dll" in names
    assert names.index("c10.dll") < names.index("torch_cpu.dll")
    assert res.failing is not None and res.failing.name.lower() == "torch_cpu.dll", res.explain()
    assert res.failing.winerror == 126 and res.winerror == 126
    assert all(s.ok for s in res.steps[:-1])  # c10.dll and the VC++ runtime load
    assert res.direct is not None and (res.direct.ok, res.direct.winerror) == (False, 126)
    assert any("mkl_intel_thread.1.dll" in n for n in res.notes)  # the model's view of why
    assert "torch_cpu.dll, a dependency of shm.dll, fails by itself (126)" in res.explain()
    by_name = {r.name.lower(): r for r in res.runtimes}
    assert "msvcp140.dll" in by_name and by_name["msvcp140.dll"].file_version, res.runtimes


@pytest.mark.wheels
@pytest.mark.parametrize("dll", ["shm.dll", "torch_cpu.dll"])
def test_torch_with_mkl_everything_loads(torch_probe: TorchProbe, dll: str) -> None:
    res = torch_probe(True, dll)
    assert res.ok, res.explain()
    assert res.failing is None and res.winerror is None
    assert res.steps and all(s.ok for s in res.steps)
    assert res.steps[-1].name.lower() == dll
    assert any(p.lower().endswith("mkl_intel_thread.1.dll") for p in res.order)
