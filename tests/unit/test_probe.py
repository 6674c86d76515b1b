"""The run-time probe: plan, child protocol, backends, bottom-up bisection, CLI (any OS)."""

from __future__ import annotations

import argparse
import io
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from tests.support.fakewin import FakeDllDirectories, fake_loader_api
from torchdll import _cli_probe
from torchdll.errors import ProbeError, ProbeUnavailableError
from torchdll.probe import (
    DEFAULT_RUNTIMES,
    EVENT_PREFIX,
    ChildProcessBackend,
    FakeBackend,
    Kernel32Loader,
    ProbePlan,
    ProbeResult,
    ScriptedLoader,
    child_main,
    default_backend,
    execute_plan,
    parse_events,
    plan_closure,
    probe,
)
from torchdll.testing import WindowsEnv

LIB = "C:\\venv\\Lib\\site-packages\\torch\\lib"
C10 = f"{LIB}\\c10.dll"
UV = f"{LIB}\\uv.dll"
QT_MSVCP = ["C:\\Qt\\bin\\msvcp140.dll", "14.26.28720.3"]


# -- the plan --------------------------------------------------------------------------------


def test_plan_round_trips_through_json() -> None:
    plan = ProbePlan(loads=(UV, C10), flags=0x1100, dll_directories=(LIB,), path="C:\\Windows",
                     preload=(QT_MSVCP[0],), loader="scripted", script={"outcomes": {"c10.dll": 1114}})
    data = json.loads(plan.to_json())
    assert data["schema"] == "torchdll.probe-plan" and data["schema_version"] == 1
    assert ProbePlan.from_dict(data) == plan


@pytest.mark.parametrize("bad", [
    [], {"schema": "x"}, {"schema": "torchdll.probe-plan", "schema_version": 2},
    {"schema": "torchdll.probe-plan", "schema_version": 1, "loads": "a.dll"},
    {"schema": "torchdll.probe-plan", "schema_version": 1, "loads": [1]},
    {"schema": "torchdll.probe-plan", "schema_version": 1, "flags": -1},
    {"schema": "torchdll.probe-plan", "schema_version": 1, "flags": True},
    {"schema": "torchdll.probe-plan", "schema_version": 1, "path": 3},
    {"schema": "torchdll.probe-plan", "schema_version": 1, "script": []},
    {"schema": "torchdll.probe-plan", "schema_version": 1, "loader": "wine"},
])
def test_plan_rejects_what_is_not_a_plan(bad: Any) -> None:
    with pytest.raises(ValueError):
        ProbePlan.from_dict(bad)


# -- the executor and the child's protocol -----------------------------------------------------


def _events(plan: ProbePlan, loader: ScriptedLoader) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    execute_plan(plan, loader, out.append)
    return out


def test_executor_order_and_stop_at_first_failure() -> None:
    loader = ScriptedLoader({"uv.dll": 126}, runtimes={"msvcp140.dll": QT_MSVCP}, missing_dirs=["C:\\gone"])
    plan = ProbePlan(loads=(UV, C10), dll_directories=(LIB, "C:\\gone"), preload=(QT_MSVCP[0],))
    events = _events(plan, loader)
    kinds = [e["event"] for e in events]
    assert kinds == ["start", "dll_directory", "dll_directory", "load", "load", "runtimes", "done"]
    assert events[2] == {"event": "dll_directory", "path": "C:\\gone", "ok": False, "winerror": 3}
    assert events[3]["phase"] == "preload" and events[3]["flags"] == 0 and events[3]["ok"]
    assert events[4] == {"event": "load", "phase": "load", "index": 0, "path": UV, "flags": 0x1100,
                         "ok": False, "winerror": 126}
    assert loader.calls == [(QT_MSVCP[0], 0), (UV, 0x1100)]  # c10.dll never tried
    assert events[5]["modules"] == [{"name": "msvcp140.dll", "path": QT_MSVCP[0], "file_version": QT_MSVCP[1]}]


def test_executor_can_go_on_after_a_failure() -> None:
    loader = ScriptedLoader({UV.lower(): 126})
    events = _events(ProbePlan(loads=(UV, C10), stop_at_first_failure=False), loader)
    assert [e.get("ok") for e in events if e["event"] == "load"] == [False, True]


def test_child_main_speaks_the_protocol() -> None:
    plan = ProbePlan(loads=(C10,), loader="scripted", script={"outcomes": {"c10.dll": 1114}})
    out = io.StringIO()
    assert child_main(io.StringIO(plan.to_json()), out) == 0
    lines = out.getvalue().splitlines()
    assert all(line.startswith(EVENT_PREFIX) for line in lines)
    run = parse_events(lines, plan, "test")
    assert run.complete and run.first_failure() is not None and run.first_failure().winerror == 1114  # type: ignore[union-attr]


def test_child_main_rejects_a_bad_plan() -> None:
    out = io.StringIO()
    assert child_main(io.StringIO("{not json"), out) == 2
    assert json.loads(out.getvalue()[len(EVENT_PREFIX):])["event"] == "error"


def test_parse_events_skips_noise_and_finds_the_crash() -> None:
    plan = ProbePlan(loads=(UV, C10))
    lines = [
        "hello from a DllMain",
        EVENT_PREFIX + json.dumps({"event": "start", "backend": "kernel32"}),
        EVENT_PREFIX + "{broken",
        EVENT_PREFIX + json.dumps({"event": "load", "phase": "load", "index": 0, "path": UV,
                                   "flags": 4352, "ok": True, "winerror": 0}),
    ]
    run = parse_events(lines, plan, "child", exit_code=-11)
    assert not run.complete and run.crashed_at == C10 and run.exit_code == -11
    assert run.backend == "child/kernel32"
    assert any("unreadable" in n for n in run.notes)
    # a plan that stopped at a reported failure did not crash, even without "done"
    lines[-1] = lines[-1].replace('"ok": true, "winerror": 0', '"ok": false, "winerror": 126')
    assert parse_events(lines, plan, "child").crashed_at is None
    # a crash during the preloads names the preload
    pre = ProbePlan(loads=(C10,), preload=(QT_MSVCP[0],))
    assert parse_events(lines[:2], pre, "child").crashed_at == QT_MSVCP[0]


# -- the real child process, with the scripted loader ---------------------------------------------


def test_child_process_backend_runs_a_real_child() -> None:
    be = ChildProcessBackend(loader="scripted", script={"outcomes": {"c10.dll": 1114},
                                                        "runtimes": {"msvcp140.dll": QT_MSVCP}})
    result = probe(C10, backend=be, closure=[UV, C10], timeout=60)
    assert result.backend == "child-process/scripted"
    assert [s.name for s in result.steps] == ["uv.dll", "c10.dll"]
    assert result.failing is not None and result.failing.path == C10 and result.winerror == 1114
    assert result.direct is not None and result.direct.winerror == 1114
    assert result.explain() == ("c10.dll's dependencies load; c10.dll fails (1114): its own initialisation "
                                "fails, with msvcp140.dll 14.26.28720.3 from C:\\Qt\\bin already loaded")


def test_child_process_backend_reports_a_crash() -> None:
    be = ChildProcessBackend(loader="scripted", script={"crash_on": "uv.dll", "crash_code": 5})
    run = be.run(ProbePlan(loads=(UV, C10)), 60)
    assert not run.complete and run.exit_code == 5 and run.crashed_at == UV
    result = probe(C10, backend=be, closure=[UV, C10], direct=False, timeout=60)
    assert not result.ok and result.explain() == "loading uv.dll killed the probe process (its initialisation crashed)"


def test_child_environment_path_and_pythonpath() -> None:
    be = ChildProcessBackend(env={"Path": "C:\\old", "PYTHONPATH": "/elsewhere", "X": "1"})
    env = be._environment(ProbePlan(loads=(C10,), path="C:\\new"))
    assert env["PATH"] == "C:\\new" and "Path" not in env and env["X"] == "1"
    root = os.path.dirname(os.path.dirname(os.path.abspath(sys.modules["torchdll.probe"].__file__ or "")))
    assert env["PYTHONPATH"] == root + os.pathsep + "/elsewhere"
    assert ChildProcessBackend(env={"PATH": "keep"})._environment(ProbePlan(loads=(C10,)))["PATH"] == "keep"


def _script(tmp_path: Path, body: str) -> str:
    exe = tmp_path / "fakepython"
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe)


@pytest.mark.skipif(sys.platform == "win32", reason="uses a POSIX shell script as the interpreter")
def test_child_timeout_is_reported(tmp_path: Path) -> None:
    be = ChildProcessBackend(_script(tmp_path, "cat >/dev/null; sleep 30"))
    run = be.run(ProbePlan(loads=(C10,)), 0.5)
    assert not run.complete and run.exit_code is None and run.crashed_at == C10
    assert any("killed after 0.5 s" in n for n in run.notes)


@pytest.mark.skipif(sys.platform == "win32", reason="uses a POSIX shell script as the interpreter")
def test_child_that_rejects_the_plan_is_a_probe_error(tmp_path: Path) -> None:
    line = EVENT_PREFIX + json.dumps({"event": "error", "message": "bad plan: nope"})
    be = ChildProcessBackend(_script(tmp_path, f"cat >/dev/null; echo '{line}'; exit 2"))
    with pytest.raises(ProbeError, match="bad plan: nope"):
        be.run(ProbePlan(loads=(C10,)), 30)


def test_missing_interpreter_is_a_probe_error(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="cannot start"):
        ChildProcessBackend(str(tmp_path / "no-python")).run(ProbePlan(loads=(C10,)), 5)


def test_default_backend() -> None:
    with pytest.raises(ProbeUnavailableError, match="Windows"):
        default_backend("linux")
    assert isinstance(default_backend("win32"), ChildProcessBackend)


# -- probe() with the fake backend ---------------------------------------------------------------


def test_first_dll_that_fails_by_itself_is_a_dependency() -> None:
    be = FakeBackend({"uv.dll": 127})
    result = probe(C10, backend=be, closure=[UV, C10])
    assert result.failing is not None and result.failing.name == "uv.dll" and result.winerror == 127
    assert result.direct is not None and result.direct.path == C10 and result.direct.ok  # fake: c10 loads alone
    assert result.explain().startswith("uv.dll, a dependency of c10.dll, fails by itself (127)")
    assert [p.loads for p in be.runs] == [(C10,), (UV, C10)]
    assert not result.ok


def test_everything_loads() -> None:
    result = probe(C10, backend=FakeBackend(), closure=[UV, C10], dll_directories=[LIB])
    assert result.ok and result.winerror is None and result.failing is None
    assert result.explain() == "c10.dll and its dependencies load in a fresh process"


def test_target_is_appended_to_a_closure_without_it_and_single_probe_is_direct() -> None:
    be = FakeBackend({"c10.dll": 126})
    result = probe(C10, backend=be, closure=[UV])
    assert result.order == (UV, C10)
    single = probe(C10, backend=be, closure=[C10])
    assert len(be.runs) == 3  # two for the first probe, one for the single-DLL probe
    assert single.direct is not None and single.direct.winerror == 126 and single.winerror == 126


def test_direct_failure_but_bottom_up_success_is_a_search_order_problem() -> None:
    class Split(FakeBackend):
        def run(self, plan: ProbePlan, timeout: float) -> Any:
            self.outcomes = {"c10.dll": 126} if len(plan.loads) == 1 else {}
            return super().run(plan, timeout)

    result = probe(C10, backend=Split(), closure=[UV, C10])
    assert result.winerror == 126 and not result.ok
    assert "search-order problem" in result.explain()


def test_crash_in_the_fake_backend() -> None:
    result = probe(C10, backend=FakeBackend(crash_on="uv.dll"), closure=[UV, C10])
    assert result.crashed_at == UV
    assert any("killed the child" in n for n in result.notes) is False  # direct load of c10 alone is fine


def test_failed_preload_and_directory_are_notes() -> None:
    be = FakeBackend({"msvcp140.dll": 193}, missing_dirs=["C:\\gone"])
    result = probe(C10, backend=be, closure=[C10], preload=[QT_MSVCP[0]], dll_directories=["C:\\gone"])
    assert any("preload of C:\\Qt\\bin\\msvcp140.dll failed (193)" in n for n in result.notes)
    assert any("os.add_dll_directory(C:\\gone) failed" in n for n in result.notes)
    assert result.preloaded[0].winerror == 193


def test_without_a_windows_snapshot_the_target_is_probed_alone() -> None:
    if sys.platform == "win32":
        pytest.skip("on Windows the live snapshot is used")
    result = probe(C10, backend=FakeBackend())
    assert result.order == (C10,)
    assert any("no Windows snapshot" in n for n in result.notes)


def test_a_broken_model_falls_back_to_the_target() -> None:
    class Broken:
        platform = "win32"

        def load_context(self, **kw: Any) -> Any:
            raise RuntimeError("no context")

    result = probe(C10, backend=FakeBackend(), snapshot=Broken(), view=object())  # type: ignore[arg-type]
    assert result.order == (C10,) and any("could not be computed" in n for n in result.notes)


def test_result_to_dict_is_json() -> None:
    result = probe(C10, backend=FakeBackend({"c10.dll": 1114}, runtimes={"msvcp140.dll": QT_MSVCP}),
                   closure=[UV, C10])
    data = json.loads(json.dumps(result.to_dict()))
    assert data["ok"] is False and data["winerror"] == 1114 and data["failing"]["path"] == C10
    assert data["runtimes"][0]["file_version"] == "14.26.28720.3" and "explanation" in data
    assert str(result) == result.explain()


# -- the closure from the loader model -----------------------------------------------------------


def test_plan_closure_is_bottom_up(tmp_path: Path) -> None:
    env = WindowsEnv(tmp_path)
    env.add_system(msvcp140=(14, 29, 30133, 0))
    lib = env.add_torch("2.9.0")
    order, notes = plan_closure(f"{lib}\\torch_python.dll", snapshot=env.snapshot(), view=env.view(),
                                user_dirs=[lib])
    names = [p.rsplit("\\", 1)[-1].lower() for p in order]
    assert names[-1] == "torch_python.dll" and notes == ()
    assert names.index("c10.dll") < names.index("torch_cpu.dll") < names.index("shm.dll")
    assert names.index("msvcp140.dll") < names.index("c10.dll")
    # already loaded (python311.dll, the base vcruntime140.dll) and KnownDLLs are not reloaded
    assert "python311.dll" not in names and "kernel32.dll" not in names and "vcruntime140.dll" not in names


def test_plan_closure_notes_what_the_model_cannot_find(tmp_path: Path) -> None:
    env = WindowsEnv(tmp_path)
    env.add_system(msvcp140=None)
    lib = env.add_torch("2.9.0")
    order, notes = plan_closure(f"{lib}\\c10.dll", snapshot=env.snapshot(), view=env.view(), user_dirs=[lib])
    assert order[-1].endswith("c10.dll")
    assert notes == ("model: c10.dll imports MSVCP140.dll, which is not found",)
    missing, notes2 = plan_closure("C:\\nowhere\\x.dll", snapshot=env.snapshot(), view=env.view())
    assert missing == ("C:\\nowhere\\x.dll",) and "does not find the target" in notes2[0]


def test_probe_computes_the_closure_from_a_snapshot(tmp_path: Path) -> None:
    env = WindowsEnv(tmp_path)
    env.add_system(msvcp140=(14, 29, 30133, 0))
    lib = env.add_torch("2.9.0")
    be = FakeBackend({"c10.dll": 1114}, runtimes={"msvcp140.dll": ["C:\\Windows\\System32\\msvcp140.dll", "14.29.30133.0"]})
    result = probe(f"{lib}\\torch_cpu.dll", backend=be, snapshot=env.snapshot(), view=env.view(),
                   dll_directories=[lib])
    assert result.failing is not None and result.failing.name == "c10.dll"
    assert result.explain() == (
        "c10.dll, a dependency of torch_cpu.dll, fails by itself (1114): its own initialisation fails, "
        "with msvcp140.dll 14.29.30133.0 from C:\\Windows\\System32 already loaded")
    assert be.runs[1].dll_directories == (lib,) and be.runs[1].runtimes == DEFAULT_RUNTIMES


# -- the Windows loader through the Win32 seam (fakes) -------------------------------------------


def test_kernel32_loader_over_the_fakes() -> None:
    api = fake_loader_api(outcomes={"c10.dll": 1114},
                          versions={"C:\\Python311\\VCRUNTIME140.dll": (14, 38, 33135, 0)})
    dirs = FakeDllDirectories(lambda p: p == LIB)
    loader = Kernel32Loader(api, add_dll_directory=dirs.add_dll_directory)
    assert api.kernel32.error_mode == 0x8001  # SEM_FAILCRITICALERRORS | SEM_NOOPENFILEERRORBOX
    assert loader.add_dll_directory(LIB) == 0 and dirs.active == [LIB]
    assert loader.add_dll_directory("C:\\gone") == 3
    assert loader.add_dll_directory("relative") == 87
    assert loader.load(UV, 0x1100) == 0
    assert loader.load(C10, 0x1100) == 1114
    assert loader.load("uv.dll", 0x1100) == 87  # DLL_LOAD_DIR needs a full path
    assert api.module_handle("uv.dll") is not None
    assert loader.runtimes(["vcruntime140.dll", "msvcp140.dll"])[0].file_version == "14.38.33135.0"
    assert len(loader.runtimes(["vcruntime140.dll", "msvcp140.dll"])) == 1
    # a module without a version resource
    assert loader.runtimes(["uv.dll"])[0].file_version is None


def test_kernel32_loader_without_add_dll_directory() -> None:
    loader = Kernel32Loader(fake_loader_api(), add_dll_directory=None)
    if not hasattr(os, "add_dll_directory"):
        assert loader.add_dll_directory(LIB) == 120


def test_win32_free_library_and_errors() -> None:
    api = fake_loader_api()
    handle = api.load_library_ex(UV, 0x1100)
    api.free_library(handle)
    with pytest.raises(OSError) as info:
        api.free_library(handle)
    assert info.value.winerror == 6  # type: ignore[attr-defined]
    assert api.file_version("C:\\nope.dll") is None
    assert api.loaded_module_version("nope.dll") is None


# -- the CLI -----------------------------------------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    _cli_probe.configure_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["probe", *argv])


def test_cli_text_output() -> None:
    out = io.StringIO()
    be = FakeBackend({"c10.dll": 1114}, runtimes={"msvcp140.dll": QT_MSVCP})
    status = _cli_probe.execute(_args(C10, "--flags", "0x1100", "--dll-dir", LIB, "--no-closure"), out,
                                backend=be, platform="win32")
    text = out.getvalue()
    assert status == 1
    assert text.splitlines()[0].startswith("c10.dll's dependencies load; c10.dll fails (1114)")
    assert "FAIL C:\\venv\\Lib\\site-packages\\torch\\lib\\c10.dll  (1114)" in text
    assert "msvcp140.dll 14.26.28720.3  C:\\Qt\\bin\\msvcp140.dll" in text
    assert be.runs[0].dll_directories == (LIB,)


def test_cli_json_and_success() -> None:
    out = io.StringIO()
    status = _cli_probe.execute(_args(C10, "--json", "--no-closure"), out, backend=FakeBackend())
    data = json.loads(out.getvalue())
    assert status == 0 and data["schema"] == "torchdll.probe" and data["result"]["ok"] is True


def test_cli_off_windows_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    assert _cli_probe.execute(_args(C10), out, platform="linux") == 2
    assert "Windows loader" in capsys.readouterr().err
    out = io.StringIO()
    assert _cli_probe.execute(_args(C10, "--json"), out, platform="linux") == 2
    assert "Windows loader" in json.loads(out.getvalue())["error"]


def test_cli_rejects_bad_flags() -> None:
    with pytest.raises(SystemExit):
        _args(C10, "--flags", "zzz")


def test_probe_result_is_frozen() -> None:
    result = ProbeResult(C10, 0x1100, "fake", None, (), None, None)
    assert result.ok
    with pytest.raises(AttributeError):
        result.winerror = 1  # type: ignore[misc]


def test_plan_closure_leaves_out_known_dlls_and_their_dependencies(tmp_path: Path) -> None:
    # kernel32 is a KnownDLL the first time it is imported and a loaded module afterwards; its
    # own dependencies (ntdll, KernelBase) come from System32: none of them belongs in the plan.
    env = WindowsEnv(tmp_path)
    env.add_system()
    lib = env.add_torch("2.9.0")
    snap = env.snapshot(loaded_modules=(f"{env.base}\\python.exe", f"{env.base}\\{env.python_dll}"))
    order, _ = plan_closure(f"{lib}\\shm.dll", snapshot=snap, view=env.view(), user_dirs=[lib])
    names = {p.rsplit("\\", 1)[-1].lower() for p in order}
    assert {"kernel32.dll", "ntdll.dll", "kernelbase.dll"}.isdisjoint(names)
    assert {"c10.dll", "torch_cpu.dll", "shm.dll"} <= names
