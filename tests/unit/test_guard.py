"""safe_import_torch: happy path, every error branch, rollback, nesting, threads (any OS).

Windows is simulated: a :class:`~torchdll.testing.WindowsEnv` (synthetic PE files) provides the
file system, the snapshot and torch's layout; :class:`FakeDllDirectories` gives
``os.add_dll_directory`` CPython's semantics; ``import torch`` is replaced by a function that
returns a module or raises what Windows would.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import textwrap
import threading
import types
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from tests.support.fakewin import FakeDllDirectories, fake_loader_api
from torchdll._dlldirs import DllDirectoryRegistry
from torchdll.errors import (
    BadImageError,
    DllInitError,
    DllLoadError,
    DllNotFoundError,
    PrecheckWarning,
    ProcedureNotFoundError,
    TorchDLLError,
)
from torchdll.guard import GuardSystem, classify, import_torch, safe_import_torch, torch_dll_dirs
from torchdll.probe import FakeBackend
from torchdll.report import Report
from torchdll.testing import WindowsEnv
from torchdll.torchload import error_message, loader_variant, torch_dll_paths


def winerror(code: int, dll: Optional[str] = None, cls: type[OSError] = OSError) -> OSError:
    """What torch's loader raises: ctypes.WinError(code) with its English suffix."""
    text = error_message(code) + (f' Error loading "{dll}" or one of its dependencies.' if dll else "")
    exc = cls(errno.EINVAL, text)
    exc.winerror = code  # type: ignore[attr-defined]
    return exc


class Machine:
    """A simulated Windows process about to ``import torch``."""

    def __init__(self, root: Path, *, version: str = "2.9.0",
                 msvcp140: Optional[tuple[int, int, int, int]] = (14, 44, 35211, 0)) -> None:
        self.env = WindowsEnv(root)
        self.env.add_system(msvcp140=msvcp140)
        self.lib = self.env.add_torch(version)
        self.torch_dir = f"{self.env.site_packages}\\torch"
        self.view = self.env.view()
        self.dirs = FakeDllDirectories(self.isdir)
        self.environ: Dict[str, str] = {"PATH": self.env.process_path(), "SystemRoot": "C:\\Windows"}
        self.module = types.ModuleType("torch")
        self.error: Optional[BaseException] = None
        self.imports: List[str] = []
        self.snapshots = 0
        self.backend = FakeBackend()
        self.registry = DllDirectoryRegistry()
        self.api = fake_loader_api(list(self.env.loaded))

    def isdir(self, path: str) -> bool:
        host = self.view.host_path(path)
        return host is not None and os.path.isdir(host)

    def read_text(self, path: str) -> Optional[str]:
        host = self.view.host_path(path)
        return None if host is None else Path(host).read_text("utf-8")

    def import_module(self, name: str) -> types.ModuleType:
        self.imports.append(name)
        if self.error is not None:
            raise self.error
        return self.module

    def snapshot(self) -> Any:
        self.snapshots += 1
        return self.env.snapshot(process_path=self.environ["PATH"])

    def find_spec(self, name: str) -> Any:
        if name != "torch":
            return None
        return types.SimpleNamespace(submodule_search_locations=[self.torch_dir], origin=None)

    def system(self, **overrides: Any) -> GuardSystem:
        kw: Dict[str, Any] = dict(
            platform="win32", environ=self.environ, add_dll_directory=self.dirs.add_dll_directory,
            isdir=self.isdir, read_text=self.read_text, find_spec=self.find_spec,
            import_module=self.import_module, exec_prefix=self.env.prefix,
            base_exec_prefix=self.env.base, userbase=f"{self.env.user_home}\\AppData\\Roaming\\Python",
            api=self.api, snapshot=self.snapshot, view=self.env.view, probe_backend=self.backend,
            path_view=self.view, interpreter=self.env.snapshot().python)
        kw.update(overrides)
        return GuardSystem(**kw)

    def guard(self, **options: Any) -> safe_import_torch:
        system = options.pop("system", None) or self.system()
        return safe_import_torch(system=system, registry=self.registry, **options)


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path)


# --------------------------------------------------------------------------------------------
# Happy path
# --------------------------------------------------------------------------------------------


def test_happy_path_adds_torch_dirs_and_imports(machine: Machine) -> None:
    guard = machine.guard()
    with guard as torch:
        assert torch is machine.module
    assert machine.imports == ["torch"]
    assert guard.torch is machine.module and guard.torch_version == "2.9.0+cpu"
    assert guard.dll_directories == (machine.lib,)
    assert machine.dirs.active == [machine.lib]  # kept after success, for the life of the process
    assert machine.registry.active() == (machine.lib,)
    assert machine.snapshots == 0 and machine.backend.runs == []  # no diagnosis, no probe
    assert guard.findings == () and guard.error is None


def test_existing_prefix_folders_are_added_in_torch_order(tmp_path: Path) -> None:
    m = Machine(tmp_path)
    bin_dir = m.env.add_mkl()  # <venv>\Library\bin
    base_bin = m.env.add_mkl(f"{m.env.base}\\Library\\bin")
    with m.guard() as _:
        pass
    assert m.dirs.active == [m.lib, bin_dir, base_bin]
    assert m.dirs.calls == [m.lib, bin_dir, base_bin]


def test_seed_case_path_entry_is_removed_and_logged(machine: Machine, caplog: pytest.LogCaptureFixture) -> None:
    machine.environ["PATH"] = machine.lib + ";" + machine.environ["PATH"]
    guard = machine.guard()
    with caplog.at_level(logging.WARNING, logger="torchdll"):
        with guard:
            pass
    assert guard.path_result is not None and guard.path_result.applied
    assert [r.entry.raw for r in guard.path_result.removed] == [machine.lib]
    assert machine.lib not in machine.environ["PATH"].split(";")
    assert any("removed" in r.message and "torch" in r.message for r in caplog.records)


def test_options_turn_steps_off(machine: Machine) -> None:
    machine.environ["PATH"] = machine.lib + ";" + machine.environ["PATH"]
    before = machine.environ["PATH"]
    guard = machine.guard(sanitize=False, add_dll_directories=False, prechecks=False)
    with guard:
        pass
    assert machine.environ["PATH"] == before and machine.dirs.calls == [] and guard.path_result is None


def test_named_policy(machine: Machine) -> None:
    guard = machine.guard(policy="report-only")
    machine.environ["PATH"] = machine.lib + ";" + machine.environ["PATH"]
    with guard:
        pass
    assert guard.path_result is not None and guard.path_result.removed == ()


def test_no_torch_found_adds_nothing_and_import_error_passes_through(machine: Machine) -> None:
    missing = ModuleNotFoundError("No module named 'torch'", name="torch")
    machine.error = missing
    system = machine.system(find_spec=lambda name: None)
    with pytest.raises(ModuleNotFoundError) as info:
        with machine.guard(system=system):
            pass
    assert info.value is missing and machine.dirs.calls == [] and machine.snapshots == 0


def test_function_form(machine: Machine) -> None:
    assert import_torch(system=machine.system(), registry=machine.registry) is machine.module
    machine.error = winerror(1114, f"{machine.lib}\\c10.dll")
    with pytest.raises(DllInitError):
        import_torch(system=machine.system(), registry=machine.registry, probe=False)


def test_version_py_variants_and_unknown_version(tmp_path: Path) -> None:
    m = Machine(tmp_path)
    m.env.add_file(f"{m.torch_dir}\\version.py", "__version__: str = '2.9.1'\n")
    guard = m.guard()
    with guard:
        pass
    assert guard.torch_version == "2.9.1"
    m.env.add_file(f"{m.torch_dir}\\version.py", "nothing here\n")
    guard = m.guard()
    with guard:
        pass
    assert guard.torch_version is None and guard.dll_directories == (m.lib,)


# --------------------------------------------------------------------------------------------
# Pre-import checks
# --------------------------------------------------------------------------------------------

QT_MSVCP = "C:\\Users\\dev\\proj\\.venv\\Lib\\site-packages\\PyQt5\\Qt5\\bin\\msvcp140.dll"


def _qt_loaded(machine: Machine, version: tuple[int, int, int, int]) -> None:
    machine.api = fake_loader_api([*machine.env.loaded, QT_MSVCP], versions={QT_MSVCP: version})


def test_old_msvcp140_already_loaded_is_warned(machine: Machine) -> None:
    _qt_loaded(machine, (14, 26, 28720, 3))
    guard = machine.guard()
    with pytest.warns(PrecheckWarning, match="msvcp140.dll 14.26.28720.3 is already loaded"):
        with guard as torch:
            assert torch is machine.module
    assert [f.id for f in guard.findings] == ["old-msvcp140-preloaded"]
    assert guard.findings[0].evidence[0].value == QT_MSVCP


def test_precheck_quiet_for_new_runtime_or_older_torch(tmp_path: Path) -> None:
    m = Machine(tmp_path / "a")
    _qt_loaded(m, (14, 44, 35211, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with m.guard():
            pass
    old = Machine(tmp_path / "b", version="2.8.0")
    _qt_loaded(old, (14, 26, 28720, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with old.guard():
            pass


def test_precheck_survives_a_failing_win32_call(machine: Machine) -> None:
    class Broken:
        def loaded_module_version(self, name: str) -> Any:
            raise OSError(5, "denied")

    with machine.guard(system=machine.system(api=Broken())) as _:
        pass


def test_precheck_finding_is_the_first_cause_when_the_import_fails(machine: Machine) -> None:
    _qt_loaded(machine, (14, 26, 28720, 3))
    machine.error = winerror(1114, f"{machine.lib}\\c10.dll")
    with pytest.warns(PrecheckWarning), pytest.raises(DllInitError) as info:
        with machine.guard(probe=False):
            pass
    assert info.value.causes[0].id == "old-msvcp140-preloaded"
    assert "PyQt5" in info.value.fix[0]


# --------------------------------------------------------------------------------------------
# Failures while importing: re-diagnosis of the live (simulated) machine
# --------------------------------------------------------------------------------------------


def test_1114_old_runtime_is_explained_and_rolled_back(tmp_path: Path) -> None:
    m = Machine(tmp_path, msvcp140=(14, 29, 30133, 0))
    m.environ["PATH"] = m.lib + ";" + m.environ["PATH"]
    original_path = m.environ["PATH"]
    cause = winerror(1114, f"{m.lib}\\c10.dll")
    m.error = cause
    guard = m.guard(probe=False)
    with pytest.raises(DllInitError) as info:
        with guard:
            pytest.fail("the body must not run")
    err = info.value
    assert err.__cause__ is cause and guard.error is err
    assert err.winerror == 1114 and err.errno == errno.EINVAL
    assert err.dll == f"{m.lib}\\c10.dll"
    assert err.culprit == "C:\\Windows\\System32\\msvcp140.dll" and err.importer == f"{m.lib}\\c10.dll"
    assert err.rule == "loaded-module" and err.candidates == ("C:\\Windows\\System32\\msvcp140.dll",)
    assert err.causes[0].id == "msvcp140-too-old"
    assert "predicted-load-failure" in [c.id for c in err.causes][1:]
    assert err.fix and "Redistributable" in err.fix[0]
    assert err.report is not None and err.report.predictions[0].winerror == 1114
    assert "14.29.30133.0" in str(err) and str(err).startswith("import torch failed: a DLL's initialisation failed")
    assert isinstance(err, OSError)
    # rolled back: the folders this guard added are gone, PATH is as it was
    assert m.dirs.active == [] and m.dirs.removed == [m.lib] and m.registry.active() == ()
    assert m.environ["PATH"] == original_path
    assert m.snapshots == 1


def test_126_missing_runtime_lists_candidates(tmp_path: Path) -> None:
    m = Machine(tmp_path, msvcp140=None)
    m.error = winerror(126, f"{m.lib}\\c10.dll")
    with pytest.raises(DllNotFoundError) as info:
        with m.guard():
            pass
    err = info.value
    assert err.winerror == 126 and err.culprit == "MSVCP140.dll"
    assert "C:\\Windows\\System32\\MSVCP140.dll" in err.candidates
    assert err.causes[0].id == "vcredist-missing"
    assert m.backend.runs == []  # the prediction explains it: no probe


def test_import_error_without_a_number_is_re_probed(tmp_path: Path) -> None:
    m = Machine(tmp_path, msvcp140=(14, 29, 30133, 0))
    pyd = f"{m.torch_dir}\\_C.cp311-win_amd64.pyd"
    m.error = ImportError("DLL load failed while importing _C: 動態連結程式庫 (DLL) 初始化例行程序失敗。",
                          name="torch._C", path=pyd)
    m.backend = FakeBackend({"c10.dll": 1114}, runtimes={"msvcp140.dll": ["C:\\Windows\\System32\\msvcp140.dll",
                                                                          "14.29.30133.0"]})
    with pytest.raises(DllInitError) as info:
        with m.guard():
            pass
    err = info.value
    assert err.winerror == 1114 and err.dll == pyd
    assert err.probe is not None and err.probe.failing is not None and err.probe.failing.name == "c10.dll"
    assert err.probe.order[-1] == pyd and m.lib in m.backend.runs[-1].dll_directories
    assert m.backend.runs[-1].path == m.environ["PATH"]
    assert err.culprit == "C:\\Windows\\System32\\msvcp140.dll"  # the model's culprit, confirmed


def test_import_error_without_probe_takes_the_predicted_code(tmp_path: Path) -> None:
    m = Machine(tmp_path, msvcp140=(14, 29, 30133, 0))
    m.error = ImportError("DLL load failed while importing _C", name="torch._C",
                          path=f"{m.torch_dir}\\_C.cp311-win_amd64.pyd")
    with pytest.raises(DllInitError) as info:
        with m.guard(probe=False):
            pass
    assert info.value.winerror == 1114 and info.value.probe is None
    assert any("prediction" in n for n in info.value.notes)


def test_import_error_with_nothing_to_go_on_is_the_fallback(machine: Machine) -> None:
    machine.error = ImportError("DLL load failed while importing _C", name="torch._C",
                                path=f"{machine.torch_dir}\\_C.cp311-win_amd64.pyd")
    with pytest.raises(DllLoadError) as info:
        with machine.guard(probe=False, diagnose=False):
            pass
    err = info.value
    assert type(err) is DllLoadError and err.winerror is None and err.report is None
    assert "original error: ImportError: DLL load failed" in str(err)


def test_unexplained_failure_is_confirmed_by_the_probe(machine: Machine) -> None:
    # the model predicts success; the real loader says 193 for a dependency
    machine.error = winerror(193, f"{machine.lib}\\torch_cpu.dll")
    machine.backend = FakeBackend({"uv.dll": 193})
    with pytest.raises(BadImageError) as info:
        with machine.guard():
            pass
    err = info.value
    assert err.probe is not None and err.probe.failing is not None and err.probe.failing.name == "uv.dll"
    assert err.culprit is not None and err.culprit.endswith("uv.dll")
    assert "uv.dll, a dependency of torch_cpu.dll, fails by itself (193)" in err.summary


def test_probe_failure_and_relative_dll_are_notes(machine: Machine) -> None:
    machine.error = winerror(193, "uv.dll")
    with pytest.raises(BadImageError) as info:
        with machine.guard():
            pass
    assert any("not a full path" in n for n in info.value.notes)

    class Exploding(FakeBackend):
        def run(self, plan: Any, timeout: float) -> Any:
            raise RuntimeError("child exploded")

    machine.error = winerror(193, f"{machine.lib}\\uv.dll")
    machine.backend = Exploding()
    with pytest.raises(BadImageError) as info:
        with machine.guard():
            pass
    assert any("re-probe failed: RuntimeError: child exploded" in n for n in info.value.notes)


def test_diagnose_failure_never_hides_the_error(machine: Machine) -> None:
    def broken() -> Any:
        raise RuntimeError("no snapshot today")

    machine.error = winerror(126, f"{machine.lib}\\c10.dll")
    with pytest.raises(DllNotFoundError) as info:
        with machine.guard(system=machine.system(snapshot=broken), probe=False):
            pass
    assert info.value.report is None
    assert any("diagnose failed: RuntimeError: no snapshot today" in n for n in info.value.notes)
    assert "c10.dll: The specified module could not be found." in info.value.summary


def test_analysis_crash_gives_a_minimal_error(machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: Any, exc: BaseException, info: Any) -> Any:
        raise KeyError("bug")

    monkeypatch.setattr(safe_import_torch, "_windows_error", boom)
    machine.error = winerror(1455, f"{machine.lib}\\torch_cpu.dll")
    with pytest.raises(TorchDLLError) as info:
        with machine.guard():
            pass
    assert info.value.winerror == 1455 and type(info.value).__name__ == "CommitLimitError"
    assert any("could not analyse" in n for n in info.value.notes)


def _ctypes_style_error(name: str) -> FileNotFoundError:
    """A FileNotFoundError raised from a frame of ctypes/__init__.py with a ``name`` local, as
    ctypes.CDLL raises for ERROR_MOD_NOT_FOUND on Windows (no winerror)."""
    source = textwrap.dedent("""
        def cdll(name):
            raise FileNotFoundError(f"Could not find module '{name}' (or one of its dependencies). "
                                    "Try using the full path with constructor syntax.")
    """)
    space: Dict[str, Any] = {}
    exec(compile(source, "C:/Python311/Lib/ctypes/__init__.py", "exec"), space)  # noqa: S102
    try:
        space["cdll"](name)
    except FileNotFoundError as exc:
        return exc
    raise AssertionError("unreachable")


def test_ctypes_file_not_found_is_126(machine: Machine) -> None:
    machine.error = _ctypes_style_error("C:\\vendor\\plugin.dll")
    with pytest.raises(DllNotFoundError) as info:
        with machine.guard(probe=False):
            pass
    assert info.value.winerror == 126 and info.value.dll == "C:\\vendor\\plugin.dll"


# --------------------------------------------------------------------------------------------
# Failures inside the with block, and what passes through
# --------------------------------------------------------------------------------------------


def test_failure_inside_the_block_is_converted_and_dirs_are_kept(machine: Machine) -> None:
    vision = f"{machine.env.site_packages}\\torchvision\\_C.pyd"
    guard = machine.guard(probe=False)
    with pytest.raises(ProcedureNotFoundError) as info:
        with guard:
            raise winerror(127, vision)
    assert info.value.dll == vision and info.value.winerror == 127
    assert machine.dirs.active == [machine.lib]  # torch imported fine: its folders stay


@pytest.mark.parametrize("exc", [
    ValueError("not ours"),
    KeyboardInterrupt(),
    ModuleNotFoundError("No module named 'torchvision'"),
    FileNotFoundError(2, "No such file or directory", "data.csv"),
    PermissionError(13, "denied"),
])
def test_other_exceptions_pass_through_untouched(machine: Machine, exc: BaseException) -> None:
    if isinstance(exc, PermissionError):
        exc.winerror = 5  # type: ignore[attr-defined] # ambiguous code, no DLL named
    with pytest.raises(type(exc)) as info:
        with machine.guard():
            raise exc
    assert info.value is exc


def test_torchdll_error_from_an_inner_guard_passes_the_outer_one_unchanged(machine: Machine) -> None:
    with pytest.raises(DllInitError) as info:
        with machine.guard():
            with machine.guard(probe=False):
                raise winerror(1114, f"{machine.lib}\\c10.dll")
    assert isinstance(info.value.__cause__, OSError) and not isinstance(info.value.__cause__, TorchDLLError)


def test_ambiguous_code_with_a_named_dll_is_converted(machine: Machine) -> None:
    with pytest.raises(TorchDLLError) as info:
        with machine.guard(probe=False, diagnose=False):
            raise winerror(5, f"{machine.lib}\\c10.dll", PermissionError)
    assert type(info.value).__name__ == "DllAccessDeniedError"


# --------------------------------------------------------------------------------------------
# Nesting, repetition, threads
# --------------------------------------------------------------------------------------------


def test_nested_use_adds_each_folder_once(machine: Machine) -> None:
    with machine.guard() as outer:
        with machine.guard() as inner:
            assert inner is outer
    assert machine.dirs.calls == [machine.lib] and machine.dirs.active == [machine.lib]


def test_inner_failure_does_not_remove_the_outer_folders(machine: Machine) -> None:
    with machine.guard():
        machine.error = winerror(1114, f"{machine.lib}\\c10.dll")
        with pytest.raises(DllInitError):
            with machine.guard(probe=False):
                pass
        machine.error = None
    assert machine.dirs.active == [machine.lib] and machine.registry.active() == (machine.lib,)


def test_repeated_use_after_a_failure(machine: Machine) -> None:
    machine.error = winerror(126, f"{machine.lib}\\c10.dll")
    guard = machine.guard(probe=False)
    with pytest.raises(DllNotFoundError):
        with guard:
            pass
    assert machine.dirs.active == []
    machine.error = None
    with guard as torch:  # the same instance, entered again
        assert torch is machine.module
    assert machine.dirs.active == [machine.lib] and guard.error is None


def test_threads(machine: Machine) -> None:
    results: List[Any] = []
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        for _ in range(5):
            with machine.guard() as torch:
                results.append(torch)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 40 and all(r is machine.module for r in results)
    assert machine.dirs.calls == [machine.lib]


# --------------------------------------------------------------------------------------------
# torch's DLL folders without the loader model
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.5.1", "1.13.1", "2.3.1", "2.8.0", "2.9.0", "2.13.0"])
def test_dll_dirs_agree_with_the_loader_replay(tmp_path: Path, version: str) -> None:
    m = Machine(tmp_path, version=version)
    userbase = f"{m.env.user_home}\\AppData\\Roaming\\Python"
    for folder in (f"{m.env.prefix}\\Library\\bin", f"{m.env.base}\\Library\\bin", f"{userbase}\\Library\\bin",
                   f"{m.env.prefix}\\bin"):
        m.env.add_file(f"{folder}\\marker.txt", "x")
    system = m.system()
    ours = torch_dll_dirs(system, m.torch_dir, version)
    from torchdll.installs import find_installs

    install = find_installs(m.view, m.env.snapshot().python.sys_path).primary()
    assert install is not None
    theirs = torch_dll_paths(install, exec_prefix=m.env.prefix, base_exec_prefix=m.env.base,
                             userbase=userbase, is_venv=True, variant=loader_variant(version), view=m.view)
    assert tuple(ours) == theirs


# --------------------------------------------------------------------------------------------
# classify()
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "kind"), [
    (126, "DllNotFoundError"), (127, "ProcedureNotFoundError"), (182, "ProcedureNotFoundError"),
    (193, "BadImageError"), (216, "BadImageError"), (1114, "DllInitError"), (1455, "CommitLimitError"),
    (4551, "BlockedByPolicyError"), (225, "BlockedByPolicyError"), (14001, "DllLoadError"),
])
def test_classify_windows_codes(code: int, kind: str) -> None:
    info = classify(winerror(code, "C:\\t\\c10.dll"), "win32")
    assert info is not None and info.code == code and info.kind == kind and info.dll == "C:\\t\\c10.dll"
    assert "winerror" in repr(info)


def test_classify_windows_non_dll_errors() -> None:
    assert classify(winerror(2), "win32") is None
    assert classify(winerror(5), "win32") is None  # access denied with no DLL named
    assert classify(winerror(206), "win32") is None
    assert classify(OSError(22, "no winerror"), "win32") is None
    assert classify(ImportError("cannot import name x"), "win32") is None
    assert classify(ImportError("x", path="C:\\a\\b.py"), "win32") is None
    assert classify(ValueError("x"), "win32") is None
    assert classify(FileNotFoundError(2, "x", "f.txt"), "win32") is None  # not from ctypes


def test_classify_uses_torch_frame_local_dll() -> None:
    source = "def _load_dll_libraries(dll):\n    raise ERR\n"
    err = winerror(126)
    space: Dict[str, Any] = {"ERR": err}
    exec(compile(source, "C:/venv/Lib/site-packages/torch/__init__.py", "exec"), space)  # noqa: S102
    try:
        space["_load_dll_libraries"]("C:\\venv\\torch\\lib\\c10.dll")
    except OSError as exc:
        info = classify(exc, "win32")
    assert info is not None and info.dll == "C:\\venv\\torch\\lib\\c10.dll"


POSIX_CASES = [
    (ImportError("libc10.so: cannot open shared object file: No such file or directory",
                 path="/venv/torch/_C.cpython-311-x86_64-linux-gnu.so"),
     "DllNotFoundError", "libc10.so", None, None),
    (OSError("/venv/torch/lib/libtorch_global_deps.so: cannot open shared object file: No such file or directory"),
     "DllNotFoundError", "/venv/torch/lib/libtorch_global_deps.so", None, None),
    (ImportError("/venv/torch/lib/libtorch_python.so: undefined symbol: _ZN3c104impl8GPUTrace", path="/venv/torch/_C.so"),
     "ProcedureNotFoundError", None, "/venv/torch/lib/libtorch_python.so", "_ZN3c104impl8GPUTrace"),
    (ImportError("undefined symbol: _ZN2at4_ops", path="/venv/torchvision/_C.so"),
     "ProcedureNotFoundError", None, "/venv/torchvision/_C.so", "_ZN2at4_ops"),
    (ImportError("/usr/lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.30' not found "
                 "(required by /venv/torch/lib/libtorch_cpu.so)", path="/venv/torch/_C.so"),
     "ProcedureNotFoundError", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/venv/torch/lib/libtorch_cpu.so",
     "GLIBCXX_3.4.30"),
    (ImportError("/venv/torch/lib/libtorch_cpu.so: wrong ELF class: ELFCLASS32", path="/venv/torch/_C.so"),
     "BadImageError", "/venv/torch/lib/libtorch_cpu.so", None, None),
    (ImportError("/lib/aarch64-linux-gnu/libgomp.so.1: cannot allocate memory in static TLS block",
                 path="/venv/torch/_C.so"),
     "DllInitError", "/lib/aarch64-linux-gnu/libgomp.so.1", None, None),
    (ImportError("dlopen(/venv/torch/_C.so, 0x0002): Library not loaded: @rpath/libc10.dylib",
                 path="/venv/torch/_C.so"),
     "DllNotFoundError", "@rpath/libc10.dylib", None, None),
    (ImportError("dlopen(/venv/torch/_C.so, 2): Symbol not found: __ZN3c10", path="/venv/torch/_C.so"),
     "ProcedureNotFoundError", None, None, "__ZN3c10"),
    (ImportError("/venv/torch/lib/libtorch_cuda.so: failed to map segment from shared object",
                 path="/venv/torch/_C.so"),
     "CommitLimitError", "/venv/torch/lib/libtorch_cuda.so", None, None),
    (ImportError("something odd", path="/venv/torch/_C.cpython-311-x86_64-linux-gnu.so"),
     "DllLoadError", None, None, None),
]


@pytest.mark.parametrize(("exc", "kind", "culprit", "importer", "symbol"), POSIX_CASES)
def test_classify_posix_messages(exc: BaseException, kind: str, culprit: Optional[str],
                                 importer: Optional[str], symbol: Optional[str]) -> None:
    info = classify(exc, "linux")
    assert info is not None and info.kind == kind and info.code is None
    assert info.culprit == culprit and info.symbol == symbol
    if importer is not None:
        assert info.importer == importer


def test_classify_posix_non_dll_errors() -> None:
    assert classify(ImportError("cannot import name 'x' from 'y'"), "linux") is None
    assert classify(FileNotFoundError(2, "No such file", "x"), "linux") is None
    assert classify(ModuleNotFoundError("No module named 'torch'"), "linux") is None


# --------------------------------------------------------------------------------------------
# Linux/macOS
# --------------------------------------------------------------------------------------------


def _posix_system(error: Optional[BaseException], environ: Optional[Dict[str, str]] = None,
                  imports: Optional[List[str]] = None) -> GuardSystem:
    module = types.ModuleType("torch")

    def import_module(name: str) -> types.ModuleType:
        if imports is not None:
            imports.append(name)
        if error is not None:
            raise error
        return module

    return GuardSystem(linux_report=lambda: Report(), platform="linux", environ=environ if environ is not None else {"PATH": "/usr/bin:"},
                       import_module=import_module, add_dll_directory=None)


@pytest.mark.parametrize(("exc", "kind", "finding"), [
    (POSIX_CASES[0][0], DllNotFoundError, "posix-library-not-found"),
    (POSIX_CASES[2][0], ProcedureNotFoundError, "posix-undefined-symbol"),
    (POSIX_CASES[4][0], ProcedureNotFoundError, "posix-libstdcxx-too-old"),
    (POSIX_CASES[5][0], BadImageError, "posix-wrong-architecture"),
    (POSIX_CASES[6][0], DllInitError, "posix-static-tls"),
    (POSIX_CASES[9][0], TorchDLLError, "posix-out-of-memory"),
    (POSIX_CASES[10][0], DllLoadError, "posix-load-failed"),
])
def test_posix_failures_map_into_the_hierarchy(exc: BaseException, kind: type, finding: str) -> None:
    with pytest.raises(kind) as info:
        with safe_import_torch(system=_posix_system(exc), registry=DllDirectoryRegistry()):
            pass
    err = info.value
    assert err.__cause__ is exc and err.winerror is None
    assert err.causes[0].id == finding and err.fix == err.causes[0].fix
    assert err.report is not None and err.report.predictions[0].outcome == "fails"
    assert "only source" in err.report.notes[0]
    if finding == "posix-library-not-found":
        assert err.errno == errno.ENOENT and err.culprit == "libc10.so"
        assert "libc10.so was not found by the dynamic loader" in str(err)


def test_posix_default_leaves_path_alone() -> None:
    environ = {"PATH": "/usr/bin::relative"}
    guard = safe_import_torch(system=_posix_system(None, environ), registry=DllDirectoryRegistry())
    with guard:
        pass
    assert environ["PATH"] == "/usr/bin::relative" and guard.path_result is None and guard.dll_directories == ()


def test_posix_strict_policy_sanitizes() -> None:
    environ = {"PATH": "/usr/bin::relative"}
    guard = safe_import_torch(system=_posix_system(None, environ), registry=DllDirectoryRegistry(),
                              policy="strict")
    with guard:
        pass
    assert guard.path_result is not None and environ["PATH"] == "/usr/bin"


@pytest.mark.skipif(sys.platform != "linux", reason="needs glibc's dlopen")
def test_real_ctypes_failure_inside_the_block() -> None:
    import ctypes

    guard = safe_import_torch(system=_posix_system(None), registry=DllDirectoryRegistry())
    with pytest.raises(DllNotFoundError) as info:
        with guard:
            ctypes.CDLL("libtorchdll-does-not-exist.so.1")
    assert info.value.dll == "libtorchdll-does-not-exist.so.1"
    assert info.value.culprit == "libtorchdll-does-not-exist.so.1"


# --------------------------------------------------------------------------------------------
# The happy path stays cheap: no PE parsing, no subprocess, no diagnosis
# --------------------------------------------------------------------------------------------

HEAVY = ("pefile", "torchdll._pe", "torchdll.diagnosis", "torchdll.probe", "torchdll.snapshot",
         "torchdll.closure", "torchdll.resolver", "torchdll.torchload")


def test_happy_path_imports_nothing_heavy_posix(tmp_path: Path) -> None:
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("__version__ = '2.13.0'\n")
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import torchdll.guard\n"
            "with torchdll.guard.safe_import_torch() as torch: pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


def test_happy_path_imports_nothing_heavy_windows_shaped(tmp_path: Path) -> None:
    """The Windows branch (sanitize, DLL folders, pre-checks) over the fakes, in a fresh process."""
    root = Path(__file__).resolve().parents[2]
    code = textwrap.dedent(f"""
        import sys, types
        sys.path.insert(0, {str(root)!r})
        from tests.support.fakewin import FakeDllDirectories, fake_loader_api
        from torchdll.guard import GuardSystem, safe_import_torch
        tdir = {str(tmp_path)!r}
        module = types.ModuleType("torch")
        dirs = FakeDllDirectories(lambda p: True)
        system = GuardSystem(platform="win32", environ={{"PATH": "C:\\\\Windows\\\\system32;C:\\\\x\\\\torch\\\\lib"}},
                             add_dll_directory=dirs.add_dll_directory, isdir=lambda p: True,
                             read_text=lambda p: "__version__ = '2.9.0+cpu'\\n",
                             find_spec=lambda n: types.SimpleNamespace(submodule_search_locations=["C:\\\\x\\\\torch"]),
                             import_module=lambda n: module, exec_prefix="C:\\\\x", base_exec_prefix="C:\\\\x",
                             userbase="C:\\\\u", api=fake_loader_api())
        with safe_import_torch(system=system) as torch:
            assert torch is module
        assert dirs.active, dirs.calls
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stderr


def test_default_system_reads_this_interpreter() -> None:
    system = GuardSystem()
    assert system.platform == sys.platform and system.environ is os.environ
    assert system.exec_prefix == sys.exec_prefix
    assert system.find_spec("torchdll") is not None and system.find_spec("no_such_module_x") is None
    assert system.read_text(__file__) is not None and system.read_text("/no/such/file") is None
    assert system.import_module("json") is sys.modules["json"]
    assert isinstance(system.userbase, (str, type(None)))
    assert system.view() is not None
    snap = system.snapshot()
    assert snap.platform in ("linux", "darwin", "win32")
    assert system.api is system.api
