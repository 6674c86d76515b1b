"""Facts about Wine 8's loader that the harness relies on or corrects for, each measured here.

docs/wine.md cites these tests as the evidence for every deviation family of the differential
test and for every adapter of the harness. Each test runs one small plan (``loadplan.exe``) on
drive Q: of the shared prefix, with synthetic DLLs written by ``torchdll._pebuild``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from torchdll._pebuild import ExportSpec, build_pe
from torchdll.model import Machine

from . import runner
from .conftest import PlanRunner

_counter = itertools.count()


class Case:
    """A fresh folder ``Q:\\caseN`` with helpers to place DLLs and run a plan there."""

    def __init__(self, plans: PlanRunner) -> None:
        self.plans = plans
        self.root = f"Q:\\case{next(_counter)}"
        self.app = self.root + "\\app"
        self.plans.host(self.app).mkdir(parents=True, exist_ok=True)

    def dir(self, name: str) -> str:
        path = f"{self.root}\\{name}"
        self.plans.host(path).mkdir(parents=True, exist_ok=True)
        return path

    def dll(self, win_path: str, data: bytes | None = None, **kwargs: Any) -> str:
        host = self.plans.host(win_path)
        host.parent.mkdir(parents=True, exist_ok=True)
        if data is None:
            data = build_pe(name=win_path.rsplit("\\", 1)[-1], **kwargs)
        host.write_bytes(data)
        if win_path[0].upper() == "C":
            self.plans.prefix.record_placed([host])
        return win_path

    def run(self, *lines: str, overrides: str = "") -> runner.PlanRun:
        run = self.plans.run("\n".join(lines) + "\n", app_dir=self.app, overrides=overrides)
        assert run.done, run
        return run

    def loads(self, *lines: str, overrides: str = "") -> list[runner.Step]:
        return [s for s in self.run(*lines, overrides=overrides).steps
                if s.op in ("load", "loadw")]


def base_names(step: runner.Step) -> dict[str, str]:
    return {m.rsplit("\\", 1)[-1].lower(): m.lower() for m in step.modules}


@pytest.fixture
def case(plans: PlanRunner) -> Case:
    return Case(plans)


# --------------------------------------------------------------------------------------------
# missing symbols: stubs instead of failures (the harness turns them into 127/182/126)
# --------------------------------------------------------------------------------------------


def test_missing_import_binds_a_stub_and_the_load_succeeds(case: Case) -> None:
    case.dll(case.app + "\\dep.dll", exports=["f", ExportSpec(None, 3),
                                              ExportSpec("fw", forwarder="gone.f")])
    by_name = case.dll(case.app + "\\byname.dll", imports={"dep.dll": ["nope"]})
    by_ord = case.dll(case.app + "\\byord.dll", imports={"dep.dll": [9]})
    fwd = case.dll(case.app + "\\byfwd.dll", imports={"dep.dll": ["fw"]})
    steps = case.loads(f"load 0x0 {by_name}", f"load 0x0 {by_ord}", f"load 0x0 {fwd}")
    assert [s.ok for s in steps] == [True, True, True]  # Windows: 127, 182, 126
    outcomes = [runner.windows_outcome(s) for s in steps]
    assert [o.error for o in outcomes] == [127, 182, 126]
    assert all(o.stubbed for o in outcomes)
    assert any("warn:module:import_dll No implementation for dep.dll.nope" in d
               for d in steps[0].debug)
    assert any("module not found for forward 'gone.f'" in d for d in steps[2].debug)


def test_dllmain_returning_false_is_1114(case: Case) -> None:
    data = build_pe(name="initfails.dll", exports=["f"])
    ok_entry = bytes.fromhex("b801000000c3")  # mov eax,1 / ret: _pebuild's DllMain
    assert data.count(ok_entry) == 1
    path = case.dll(case.app + "\\initfails.dll", data.replace(ok_entry, bytes.fromhex(
        "31c0c3909090")))  # xor eax,eax / ret: DllMain returns FALSE
    (step,) = case.loads(f"load 0x0 {path}")
    assert (step.ok, step.error) == (False, 1114)


# --------------------------------------------------------------------------------------------
# the VC++ runtime
# --------------------------------------------------------------------------------------------


def test_builtin_vc_runtime_is_used_unless_forced_native(case: Case) -> None:
    """An app-local msvcp140.dll is *reported* as loaded, but Wine runs its builtin code."""
    case.dll(case.app + "\\msvcp140.dll", exports=["torchdll_marker"])
    plan = ("loadw msvcp140.dll", "proc torchdll_marker msvcp140.dll")
    builtin = case.run(*plan).steps
    native = case.run(*plan, overrides=runner.MSVC_NATIVE).steps
    assert builtin[0].ok and native[0].ok
    assert (builtin[1].ok, native[1].ok) == (False, True)  # the marker exists only natively
    local = (case.app + "\\msvcp140.dll").lower()
    assert base_names(builtin[0])["msvcp140.dll"] == local  # reported path: the native file
    assert base_names(native[0])["msvcp140.dll"] == local


def test_wine_8_has_no_vcruntime140_threads(case: Case) -> None:
    (step,) = case.loads("loadw vcruntime140_threads.dll")
    assert (step.ok, step.error) == (False, 126)


# --------------------------------------------------------------------------------------------
# wrong machine, bad images
# --------------------------------------------------------------------------------------------


def test_wrong_machine(case: Case) -> None:
    x86, x64 = case.dir("x86"), case.dir("x64")
    case.dll(x86 + "\\arch.dll", machine=Machine.I386, exports=["f"])
    case.dll(x64 + "\\arch.dll", exports=["f"])
    case.dll(x86 + "\\only32.dll", machine=Machine.I386, exports=["f"])
    user = case.dll(case.app + "\\user.dll", imports={"only32.dll": ["f"]})
    steps = case.loads(
        f"env PATH={x86};{x64}",
        "load 0x0 arch.dll",          # skipped on PATH, the x64 copy behind it loads
        f"load 0x0 {x86}\\arch.dll",  # named by full path: 193
        "load 0x0 only32.dll",        # only a 32-bit copy: 193 (as on Windows)
        f"load 0x0 {user}",           # ... as a dependency: 126 (Windows: 193)
    )
    assert base_names(steps[0])["arch.dll"] == (x64 + "\\arch.dll").lower()
    assert [s.error for s in steps[1:]] == [193, 193, 126]


def test_dependency_that_is_not_an_image_fails_the_load_with_126(case: Case) -> None:
    case.dll(case.app + "\\junk.dll", b"not a PE file\r\n" * 20)
    user = case.dll(case.dir("lib") + "\\user.dll", imports={"junk.dll": ["f"]})
    steps = case.loads("load 0x0 junk.dll", f"load 0x0 {user}")
    assert [s.error for s in steps] == [193, 126]  # Windows: 193 for both


def test_no_max_path_limit(case: Case) -> None:
    deep = case.root + "".join(f"\\{'d' * 40}{i}" for i in range(7))
    path = case.dll(deep + "\\long.dll", exports=["f"])
    assert len(path) > 260
    (step,) = case.loads(f"load 0x0 {path}")
    assert step.ok  # Windows without long-path support: 206


# --------------------------------------------------------------------------------------------
# search order
# --------------------------------------------------------------------------------------------


def test_add_dll_directory_folders_are_searched_last_added_first(case: Case) -> None:
    dirs = [case.dir(f"u{i}") for i in range(3)]
    for d in dirs:
        case.dll(d + "\\foo.dll", exports=["f"])
    steps = case.loads(*[f"adddir {d}" for d in dirs], "load 0x1000 foo.dll")
    assert base_names(steps[0])["foo.dll"] == (dirs[-1] + "\\foo.dll").lower()


def test_dependent_load_flags_are_ignored(case: Case) -> None:
    lib = case.dir("lib")
    case.dll(lib + "\\dep.dll", exports=["f"])
    top = case.dll(lib + "\\top.dll", imports={"dep.dll": ["f"]}, dependent_load_flags=0x800)
    (step,) = case.loads(f"load 0x8 {top}")
    assert step.ok  # Windows 10+: dep.dll is searched in System32 only -> 126


def test_set_dll_directory_empty_string_keeps_the_current_directory(case: Case) -> None:
    cwd = case.dir("cwd")
    case.dll(cwd + "\\here.dll", exports=["f"])
    (step,) = case.loads(f"cwd {cwd}", "setdlldir", "load 0x0 here.dll")
    assert step.ok  # Windows: SetDllDirectory("") removes the current directory -> 126


def test_safe_current_dirs_flag_is_ignored(case: Case) -> None:
    cwd = case.dir("cwd")
    case.dll(cwd + "\\here.dll", exports=["f"])
    (step,) = case.loads(f"cwd {cwd}", "load 0x2000 here.dll")
    assert step.ok  # LOAD_LIBRARY_SAFE_CURRENT_DIRS drops the current directory on Windows


def test_blank_path_entry_is_the_current_directory(case: Case) -> None:
    cwd = case.dir("cwd")
    case.dll(cwd + "\\here.dll", exports=["f"])
    (without, with_blank) = case.loads(
        f"cwd {cwd}", "setdlldir " + case.dir("empty"),  # SetDllDirectory drops the cwd...
        f"env PATH={case.root}\\nope", "load 0x0 here.dll",
        f"env PATH={case.root}\\nope;;", "load 0x0 here.dll")  # ...a blank entry brings it back
    assert (without.ok, without.error, with_blank.ok) == (False, 126, True)


def test_safe_dll_search_mode_registry_value_is_read(case: Case) -> None:
    cwd = case.dir("cwd")
    name = f"xqsafe{next(_counter)}.dll"
    case.dll(cwd + "\\" + name, exports=["f"])
    case.dll("C:\\windows\\system32\\" + name, exports=["f"])
    plan = (f"cwd {cwd}", f"load 0x0 {name}")
    prefix = case.plans.prefix
    safe = case.loads(*plan)
    prefix.set_safe_dll_search_mode(0)
    try:
        if prefix.read_safe_dll_search_mode(attempts=1) != 0:  # reg.exe did not start: once more
            prefix.set_safe_dll_search_mode(0)
        assert prefix.read_safe_dll_search_mode() == 0
        unsafe = case.loads(*plan)
    finally:
        prefix.set_safe_dll_search_mode(None)
    assert base_names(safe[0])[name].startswith("c:\\windows\\system32\\")
    assert base_names(unsafe[0])[name] == (cwd + "\\" + name).lower()


def test_altered_search_path_after_set_default_dll_directories(case: Case) -> None:
    lib, onpath = case.dir("lib"), case.dir("onpath")
    case.dll(case.app + "\\foo.dll", exports=["f"])
    top = case.dll(lib + "\\top.dll", imports={"dep.dll": ["f"]})
    case.dll(onpath + "\\dep.dll", exports=["f"])
    steps = case.loads(f"env PATH={onpath}", "defaultdirs 0x1000",
                       "load 0x8 foo.dll", f"load 0x8 {top}")
    assert [s.error for s in steps] == [87, 126]  # DLL_LOAD_DIR | DEFAULT_DIRS: no PATH


def test_altered_search_path_honours_set_dll_directory(case: Case) -> None:
    lib, dlldir, cwd = case.dir("lib"), case.dir("dlldir"), case.dir("cwd")
    top = case.dll(lib + "\\top.dll", imports={"dep.dll": ["f"]})
    case.dll(dlldir + "\\dep.dll", exports=["f"])
    case.dll(cwd + "\\dep.dll", exports=["f"])
    (step,) = case.loads(f"cwd {cwd}", f"setdlldir {dlldir}", f"load 0x8 {top}")
    assert base_names(step)["dep.dll"] == (dlldir + "\\dep.dll").lower()


# --------------------------------------------------------------------------------------------
# the loaded-module list
# --------------------------------------------------------------------------------------------


def test_failed_load_leaves_its_dependencies_loaded(case: Case) -> None:
    lib = case.dir("lib")
    case.dll(lib + "\\good.dll", exports=["f"])
    top = case.dll(lib + "\\top.dll", imports={"good.dll": ["f"], "gone.dll": ["f"]})
    (step,) = case.loads(f"load 0x1100 {top}")
    assert (step.ok, step.error) == (False, 126)
    assert "good.dll" in base_names(step)  # Windows unloads what the failed call mapped


def test_same_base_name_binds_to_the_module_looked_up_last(case: Case) -> None:
    a, b = case.dir("a"), case.dir("b")
    case.dll(a + "\\twin.dll", exports=["f", "only_a"])
    case.dll(b + "\\twin.dll", exports=["f"])
    user = case.dll(case.dir("c") + "\\user.dll", imports={"twin.dll": ["only_a"]})
    steps = case.loads(f"load 0x0 {a}\\twin.dll", f"load 0x0 {b}\\twin.dll", f"load 0x0 {user}")
    assert [s.ok for s in steps] == [True, True, True]
    # Windows binds twin.dll to the first one loaded (a, which exports only_a); Wine to b:
    assert runner.windows_outcome(steps[2]).error == 127


def test_forwarder_target_is_loaded_with_its_imports(case: Case) -> None:
    lib, onpath = case.dir("lib"), case.dir("onpath")
    case.dll(lib + "\\fw.dll", exports=[ExportSpec("g", forwarder="tgt.f"),
                                        ExportSpec("h", forwarder="tgt2.f")])
    case.dll(lib + "\\tgt.dll", exports=["f"])
    case.dll(lib + "\\tgt2.dll", exports=["f"], imports={"gone.dll": ["x"]})
    case.dll(onpath + "\\tgt.dll", exports=["f"])
    use_g = case.dll(lib + "\\useg.dll", imports={"fw.dll": ["g"]})
    use_h = case.dll(lib + "\\useh.dll", imports={"fw.dll": ["h"]})
    steps = case.loads(f"env PATH={onpath}", f"load 0x1100 {use_g}", "load 0x0 tgt.dll",
                       f"load 0x1100 {use_h}")
    assert base_names(steps[0])["tgt.dll"] == (lib + "\\tgt.dll").lower()
    assert base_names(steps[1])["tgt.dll"] == (lib + "\\tgt.dll").lower()  # not PATH's copy
    assert runner.windows_outcome(steps[2]).error == 126  # tgt2.dll's own import is missing


def test_delay_load_resolves_like_a_load_call(case: Case) -> None:
    case.dll(case.app + "\\dl.dll", exports=["f"], imports={"gone.dll": ["x"]})
    host = case.dll(case.app + "\\host.dll", delay_imports={"dl.dll": ["f"]})
    run = case.run(f"load 0x0 {host}", f"delay {host}")
    load, delay = run.steps
    assert load.ok and "dl.dll" not in base_names(load)  # delay imports do not load
    (entry,) = delay.delay
    assert (entry["ok"], entry["error"]) == (False, 126)  # dl.dll's own import is missing


# --------------------------------------------------------------------------------------------
# the prefix
# --------------------------------------------------------------------------------------------


def test_windows_folder_must_be_lower_case(wine_prefix: runner.WinePrefix, loadplan_exe: Path,
                                           tmp_path: Path) -> None:
    """A C: drive whose system folder is ``Windows/System32`` works only until something
    creates ``windows`` next to it: then Wine looks in the lower-case one first."""
    outcomes: list[bool] = []
    for layout in (("windows", "system32"), ("Windows", "System32"), "both"):
        tree = tmp_path / f"tree{len(outcomes)}" / "C"
        parts: Sequence[str] = ("Windows", "System32") if isinstance(layout, str) else layout
        sys32 = tree.joinpath(*parts)
        sys32.mkdir(parents=True)
        for dll in runner.WINE_X64_DLLS.glob("*.dll"):
            (sys32 / dll.name).symlink_to(dll)
        if layout == "both":
            (tree / "windows" / "system32").mkdir(parents=True)
        (tree / "loadplan.exe").write_bytes(loadplan_exe.read_bytes())
        (tree / "plan.txt").write_text("loadw psapi.dll\n")
        lp = runner.light_prefix(wine_prefix, tmp_path / f"prefix{len(outcomes)}", tree)
        out = tmp_path / f"out{len(outcomes)}.txt"
        try:
            lp.run(["C:\\loadplan.exe", "C:\\plan.txt"], out, debug="-all")
        finally:
            lp.shutdown()
        text = out.read_text(errors="replace")
        outcomes.append("could not load kernel32.dll" not in text and '"done":1' in text)
    assert outcomes == [True, True, False]
