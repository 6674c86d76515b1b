"""The closure layer: replaying load calls, culprits, symbols, forwarders, delay loads."""

from __future__ import annotations

from tests.support.memview import MemoryView, dll
from torchdll.closure import LoadCall, dependency_closure, simulate
from torchdll.model import LoadContext, Machine, Rule

APP = "C:\\Python311"
SYS32 = "C:\\Windows\\System32"
LIB = "C:\\venv\\Lib\\site-packages\\torch\\lib"
BIN = "C:\\venv\\Library\\bin"


def ctx(**kw: object) -> LoadContext:
    base: dict[str, object] = dict(app_dir=APP, cwd="C:\\work", user_dirs=(LIB,),
                                   known_dlls={"kernel32.dll": "kernel32.dll"})
    base.update(kw)
    return LoadContext(**base)  # type: ignore[arg-type]


def system() -> list:  # type: ignore[type-arg]
    return [dll(f"{SYS32}\\kernel32.dll", exports=["GetTickCount", "LoadLibraryW"],
                forwarders={"AcquireSRWLockExclusive": "NTDLL.RtlAcquireSRWLockExclusive"}),
            dll(f"{SYS32}\\ntdll.dll", exports=["RtlAcquireSRWLockExclusive"])]


def test_transitive_missing_module_names_the_real_culprit() -> None:
    # shm.dll -> torch_cpu.dll -> mkl_intel_thread.1.dll (absent): torch reports shm.dll,
    # the model names mkl_intel_thread.1.dll and its importer.
    view = MemoryView(system() + [
        dll(f"{LIB}\\shm.dll", imports={"torch_cpu.dll": ["f"], "KERNEL32.dll": ["GetTickCount"]}),
        dll(f"{LIB}\\torch_cpu.dll", exports=["f"], imports={"mkl_intel_thread.1.dll": ["g"]}),
    ])
    sim = dependency_closure([f"{LIB}\\shm.dll"], ctx(), view)
    res = sim.results[0]
    assert res.error == 126
    assert res.culprit is not None
    assert res.culprit.importer == f"{LIB}\\torch_cpu.dll"
    assert res.culprit.name == "mkl_intel_thread.1.dll"
    # torch\lib is both the DLL load dir and a user dir: searched once
    assert [c.rule for c in res.culprit.resolution.candidates] == [Rule.DLL_LOAD_DIR, Rule.APP_DIR, Rule.SYSTEM32]


def test_complete_closure_succeeds_and_records_rules() -> None:
    view = MemoryView(system() + [
        dll(f"{LIB}\\shm.dll", imports={"torch_cpu.dll": ["f"]}),
        dll(f"{LIB}\\torch_cpu.dll", exports=["f"], imports={"mkl_intel_thread.1.dll": ["g"]}),
        dll(f"{BIN}\\mkl_intel_thread.1.dll", exports=["g"]),
    ])
    sim = dependency_closure([f"{LIB}\\shm.dll"], ctx(user_dirs=(LIB, BIN)), view)
    assert sim.ok
    edge = next(e for e in sim.edges if e.name == "mkl_intel_thread.1.dll")
    assert edge.resolution.rule is Rule.USER_DIR and edge.resolution.path == f"{BIN}\\mkl_intel_thread.1.dll"
    assert set(sim.results[0].mapped) == {f"{LIB}\\shm.dll", f"{LIB}\\torch_cpu.dll", f"{BIN}\\mkl_intel_thread.1.dll"}


def test_missing_export_is_127_with_exporter() -> None:
    view = MemoryView(system() + [
        dll(f"{LIB}\\a.dll", imports={"b.dll": ["present", "absent"]}),
        dll(f"{LIB}\\b.dll", exports=["present"]),
    ])
    res = dependency_closure([f"{LIB}\\a.dll"], ctx(), view).results[0]
    assert res.error == 127
    assert res.culprit is not None
    assert [(m.symbol, m.exporter) for m in res.culprit.missing] == [("absent", f"{LIB}\\b.dll")]


def test_missing_ordinal_is_182() -> None:
    view = MemoryView(system() + [
        dll(f"{LIB}\\a.dll", imports={"b.dll": [2, 7]}),
        dll(f"{LIB}\\b.dll", exports=["x", "y"]),
    ])
    res = dependency_closure([f"{LIB}\\a.dll"], ctx(), view).results[0]
    assert res.error == 182
    assert res.culprit is not None and [m.symbol for m in res.culprit.missing] == ["#7"]


def test_forwarder_chain_is_followed_through_system_dlls() -> None:
    view = MemoryView(system() + [dll(f"{LIB}\\a.dll", imports={"KERNEL32.dll": ["AcquireSRWLockExclusive"]})])
    assert dependency_closure([f"{LIB}\\a.dll"], ctx(), view).ok


def test_broken_forwarder_reports_final_exporter_and_chain() -> None:
    view = MemoryView(system() + [
        dll(f"{LIB}\\a.dll", imports={"fwd_a.dll": ["chain_fn"]}),
        dll(f"{LIB}\\fwd_a.dll", exports=["chain_fn"], forwarders={"chain_fn": "fwd_b.chain_fn"}),
        dll(f"{LIB}\\fwd_b.dll", exports=["chain_fn"], forwarders={"chain_fn": "fwd_c.#9"}),
        dll(f"{LIB}\\fwd_c.dll", exports=["other"]),
    ])
    res = dependency_closure([f"{LIB}\\a.dll"], ctx(), view).results[0]
    assert res.error == 182
    assert res.culprit is not None
    miss = res.culprit.missing[0]
    assert miss.exporter == f"{LIB}\\fwd_c.dll" and miss.symbol == "#9"
    assert miss.chain == ("fwd_b.chain_fn", "fwd_c.#9")


def test_forwarder_cycle_terminates() -> None:
    view = MemoryView(system() + [
        dll(f"{LIB}\\a.dll", imports={"x.dll": ["f"]}),
        dll(f"{LIB}\\x.dll", exports=["f"], forwarders={"f": "y.f"}),
        dll(f"{LIB}\\y.dll", exports=["f"], forwarders={"f": "x.f"}),
    ])
    res = dependency_closure([f"{LIB}\\a.dll"], ctx(), view).results[0]
    assert res.error == 127


def test_dependent_load_flags_of_importer_restrict_its_imports() -> None:
    # libiomp-style: an importer with DependentLoadFlags=0x800 searches System32 only.
    view = MemoryView(system() + [
        dll(f"{LIB}\\a.dll", imports={"dep.dll": []}, dependent_load_flags=0x800),
        dll(f"{LIB}\\dep.dll"),
    ])
    res = dependency_closure([f"{LIB}\\a.dll"], ctx(), view).results[0]
    assert res.error == 126
    assert res.culprit is not None and res.culprit.flags == 0x800
    assert [c.rule for c in res.culprit.resolution.candidates] == [Rule.SYSTEM32]


def test_failed_call_maps_nothing_and_success_feeds_later_calls() -> None:
    view = MemoryView(system() + [
        dll(f"{LIB}\\bad.dll", imports={"c10.dll": [], "ghost.dll": []}),
        dll(f"{LIB}\\c10.dll"),
        dll("C:\\elsewhere\\c10.dll"),
        dll(f"{LIB}\\ok.dll", imports={"c10.dll": []}),
        dll("C:\\elsewhere\\later.dll", imports={"c10.dll": []}),
    ])
    sim = simulate([LoadCall(f"{LIB}\\bad.dll", 0x1100), LoadCall(f"{LIB}\\ok.dll", 0x1100),
                    LoadCall("C:\\elsewhere\\later.dll", 0x1100)], ctx(), view)
    assert [r.error for r in sim.results] == [126, None, None]
    assert "c10.dll" in sim.loaded and sim.loaded["c10.dll"] == f"{LIB}\\c10.dll"
    later = next(e for e in sim.edges if e.importer == "C:\\elsewhere\\later.dll")
    # bound to torch\lib's copy through the loaded-module list, not its own neighbour
    assert later.resolution.rule is Rule.LOADED and later.resolution.path == f"{LIB}\\c10.dll"


def test_module_mapped_earlier_in_the_same_call_is_reused() -> None:
    view = MemoryView(system() + [
        dll(f"{LIB}\\a.dll", imports={"b.dll": [], "c.dll": []}),
        dll(f"{LIB}\\b.dll", imports={"c.dll": []}),
        dll(f"{LIB}\\c.dll"),
        dll(f"{APP}\\c.dll"),
    ])
    sim = dependency_closure([f"{LIB}\\a.dll"], ctx(), view)
    assert sim.ok
    paths = {e.resolution.path for e in sim.edges if e.name == "c.dll"}
    assert paths == {f"{LIB}\\c.dll"}


def test_delay_import_failure_is_latent_not_fatal() -> None:
    view = MemoryView(system() + [dll(f"{LIB}\\a.dll", delay={"nvcuda.dll": ["cuInit"]})])
    sim = dependency_closure([f"{LIB}\\a.dll"], ctx(), view)
    assert sim.ok
    assert [e.name for e in sim.latent] == ["nvcuda.dll"]
    # the delay helper uses the standard search: PATH is consulted
    assert any(c.rule is Rule.PATH for c in sim.latent[0].resolution.candidates) is False  # no PATH entries here
    view2 = MemoryView(system() + [dll(f"{LIB}\\a.dll", delay={"nvcuda.dll": ["cuInit"]}),
                                   dll("C:\\zluda\\nvcuda.dll", exports=["cuInit"])])
    sim2 = dependency_closure([f"{LIB}\\a.dll"], ctx(path=("C:\\zluda",)), view2)
    assert sim2.latent == ()
    edge = next(e for e in sim2.edges if e.delay)
    assert edge.resolution.rule is Rule.PATH


def test_invalid_image_in_graph_is_193() -> None:
    view = MemoryView(system() + [dll(f"{LIB}\\a.dll", imports={"b.dll": []})])
    view.add(f"{LIB}\\b.dll", Machine.AMD64)  # machine readable...
    view.files[f"{LIB}\\b.dll".lower()] = None  # ...then declared corrupt
    res = dependency_closure([f"{LIB}\\a.dll"], ctx(), view).results[0]
    assert res.error == 193


def test_wrong_machine_dependency_skipped_then_bad_format() -> None:
    view = MemoryView(system() + [dll(f"{LIB}\\a.dll", imports={"b.dll": []}),
                                  dll(f"{LIB}\\b.dll", machine=Machine.I386)])
    res = dependency_closure([f"{LIB}\\a.dll"], ctx(), view).results[0]
    assert res.error == 193  # only a file of another machine: the search fails with 193
    assert res.culprit is not None
    assert "x86" in " ".join(res.culprit.resolution.notes)


def test_each_module_is_parsed_once() -> None:
    files = system() + [dll(f"{LIB}\\m{i}.dll", imports={f"m{i+1}.dll": ["f"]}, exports=["f"]) for i in range(50)]
    files.append(dll(f"{LIB}\\m50.dll", exports=["f"]))
    view = MemoryView(files)
    sim = dependency_closure([f"{LIB}\\m{i}.dll" for i in range(51)], ctx(), view)
    assert sim.ok
    assert view.facts_calls == 51


def test_simulator_replays_torch_style_fallback_with_patched_path() -> None:
    # torch: LoadLibraryExW(dll, 0x1100) fails with 126 -> PATH = dll_paths + PATH -> LoadLibraryW(dll)
    from dataclasses import replace

    from torchdll.closure import LoadSimulator

    view = MemoryView(system() + [dll(f"{LIB}\\a.dll", imports={"dep.dll": ["f"]}),
                                  dll("C:\\onpath\\dep.dll", exports=["f"])])
    sim = LoadSimulator(ctx(), view)
    first = sim.run(LoadCall(f"{LIB}\\a.dll", 0x1100))
    assert first.error == 126
    sim.context = replace(sim.context, path=(LIB, "C:\\onpath"))
    second = sim.run(LoadCall(f"{LIB}\\a.dll", 0))
    assert second.ok
    edge = next(e for e in second.edges if e.name == "dep.dll")
    assert edge.resolution.rule is Rule.PATH
    whole = sim.simulation([first, second])
    assert [r.error for r in whole.results] == [126, None] and whole.loaded["dep.dll"] == "C:\\onpath\\dep.dll"
