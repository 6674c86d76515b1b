"""torch 2.3.1's own preload replayed on a mirrored venv built from the real wheels."""

from __future__ import annotations

import ntpath

import pytest

from tests.support.torchlayout import LIBRARY_BIN, TORCH_LIB, build_torch_layout
from torchdll.closure import simulate
from torchdll.model import Rule

pytestmark = pytest.mark.wheels


@pytest.fixture(scope="module")
def with_mkl(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    layout = build_torch_layout(tmp_path_factory.mktemp("torch-mkl"), with_mkl=True)
    return layout, simulate(layout.preload, layout.context, layout.view)


@pytest.fixture(scope="module")
def without_mkl(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    layout = build_torch_layout(tmp_path_factory.mktemp("torch-nomkl"), with_mkl=False)
    return layout, simulate(layout.preload, layout.context, layout.view)


def test_closure_is_complete_with_mkl_in_library_bin(with_mkl) -> None:  # type: ignore[no-untyped-def]
    layout, sim = with_mkl
    assert len(sim.results) == 11  # the 11 DLLs of torch 2.3.1's torch\lib
    assert sim.missing_modules == (), [(e.importer, e.name) for e in sim.missing_modules]
    mkl = [e for e in sim.edges if e.name.lower() == "mkl_intel_thread.1.dll"]
    assert mkl and all(e.resolution.path and e.resolution.path.startswith(LIBRARY_BIN) for e in mkl)
    assert {e.resolution.rule for e in mkl} <= {Rule.USER_DIR, Rule.LOADED}


def test_symbols_between_torch_and_mkl_dlls_all_resolve(with_mkl) -> None:  # type: ignore[no-untyped-def]
    # Complete export tables matter here: torch_python.dll imports thousands of names from
    # torch_cpu.dll and c10.dll; pefile's default caps would report most of them missing.
    from torchdll._pe import read_facts

    layout, sim = with_mkl
    ours = (TORCH_LIB.lower(), LIBRARY_BIN.lower())
    internal = [e for e in sim.edges if e.resolution.path and e.resolution.path.lower().startswith(ours)]
    assert {ntpath.basename(e.importer).lower() for e in internal} >= {
        "fbgemm.dll", "shm.dll", "torch_cpu.dll", "torch_python.dll"}
    assert [e for e in internal if e.missing] == []
    # and nothing is missing anywhere, system DLLs included
    assert sim.missing_symbols == ()
    torch_python_to_cpu = next(e for e in internal if e.importer.endswith("torch_python.dll")
                               and e.name.lower() == "torch_cpu.dll")
    assert torch_python_to_cpu.resolution.rule is Rule.LOADED  # preloaded earlier in glob order
    host = layout.view.host_path(torch_python_to_cpu.importer)
    imported = next(i for i in read_facts(host).imports if i.dll.lower() == "torch_cpu.dll")
    assert len(imported.names) > 4000  # all of them were checked against torch_cpu's exports


def test_vc_runtime_resolves_to_the_application_dir_copy_first(with_mkl) -> None:  # type: ignore[no-untyped-def]
    # python.exe's folder holds vcruntime140.dll (as python.org installs do): with 0x1100 the
    # application dir is searched before System32, so the interpreter's copy wins; every later
    # import binds to it through the loaded-module list.
    _, sim = with_mkl
    vc = [e for e in sim.edges if e.name.lower() == "vcruntime140.dll"]
    assert vc[0].resolution.rule is Rule.APP_DIR
    assert {e.resolution.path for e in vc} == {"C:\\Python311\\vcruntime140.dll"}
    assert {e.resolution.rule for e in vc[1:]} == {Rule.LOADED}
    msvcp = next(e for e in sim.edges if e.name.lower() == "msvcp140.dll")
    assert msvcp.resolution.rule is Rule.SYSTEM32


def test_without_mkl_shm_fails_and_names_mkl_intel_thread(without_mkl) -> None:  # type: ignore[no-untyped-def]
    _, sim = without_mkl
    first_failure = next(r for r in sim.results if not r.ok)
    assert ntpath.basename(first_failure.call.target) == "shm.dll"
    assert first_failure.error == 126
    culprit = first_failure.culprit
    assert culprit is not None
    assert ntpath.basename(culprit.importer) == "torch_cpu.dll"
    assert culprit.name.lower() == "mkl_intel_thread.1.dll"
    tried = [c.rule for c in culprit.resolution.candidates]
    assert tried == [Rule.DLL_LOAD_DIR, Rule.APP_DIR, Rule.SYSTEM32]
