"""Oracles: questions about the Windows loader that only real Windows can answer.

Each test asks Windows (``LoadLibraryW`` / ``LoadLibraryExW`` through ctypes, or CPython's
``os.add_dll_directory``) and, where the loader model has an opinion, asks torchdll the same
question (``torchdll.resolve`` / ``torchdll.simulate`` over ``NativeView`` and the LoadContext of
this test process) and requires the two answers to agree. What Windows did is recorded with the
``fact`` fixture (``$TORCHDLL_WINDOWS_FACTS``), so a failing run still tells us the real value.

On any other OS every test skips with its reason (also under ``CI=true``: these are not a tier
that CI must provide on Linux). The claims come from ``docs/loader-model.md`` and the team's
``research/anchors.md`` sections 3 and 4 ("verify on Windows"); which Wine deviation each settles
is in ``docs/windows-ci.md``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.windows.conftest import (
    IS_64BIT,
    LOAD_LIBRARY_SAFE_CURRENT_DIRS,
    LOAD_LIBRARY_SEARCH_DEFAULT_DIRS,
    LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR,
    LOAD_LIBRARY_SEARCH_SYSTEM32,
    LOAD_LIBRARY_SEARCH_USER_DIRS,
    LOAD_WITH_ALTERED_SEARCH_PATH,
    Kernel32,
    Model,
)

pytestmark = pytest.mark.skipif(
    sys.platform != "win32",
    reason="Windows loader oracle: needs the real Windows loader (runs in .github/workflows/windows.yml)",
)

ERROR_INVALID_PARAMETER = 87
ERROR_MOD_NOT_FOUND = 126
ERROR_BAD_EXE_FORMAT = 193


def same(a: Any, b: Any) -> bool:
    """Same file (tolerates 8.3 short names such as ``RUNNER~1`` in the temp folder)."""
    return a is not None and b is not None and os.path.samefile(str(a), str(b))


def other_machine() -> Any:
    from torchdll.model import Machine

    return Machine.I386 if IS_64BIT else Machine.AMD64


# ---------------------------------------------------------------------------------------------
# The model's input: the LoadContext built for this process
# ---------------------------------------------------------------------------------------------


def test_model_context_describes_this_process(kernel32: Kernel32, model: Model, fact: Callable[..., None]) -> None:
    """app_dir is the folder of the process image (GetModuleFileNameW(NULL): for a venv the
    base interpreter), no process default (CPython never calls SetDefaultDllDirectories), and
    the process machine."""
    from torchdll.model import Machine

    ctx = model.ctx()
    image = kernel32.module_path(None)
    fact("process_image", image, app_dir=ctx.app_dir, machine=ctx.machine.label)
    assert same(ctx.app_dir, os.path.dirname(image))
    assert ctx.default_flags is None
    assert ctx.machine == (Machine.AMD64 if IS_64BIT else Machine.I386) or ctx.machine == Machine.ARM64


# ---------------------------------------------------------------------------------------------
# (a) os.add_dll_directory only reaches loads that ask for USER_DIRS
# ---------------------------------------------------------------------------------------------


def test_plain_loadlibrary_ignores_add_dll_directory(
    kernel32: Kernel32, model: Model, tmp_path: Path, unique: Callable[[str], str],
    make_dll: Callable[..., Path], added_dirs: list, fact: Callable[..., None],
) -> None:
    """anchors §4: after os.add_dll_directory(d), LoadLibraryW of a DLL only in d fails with
    126, while LoadLibraryExW(name, 0x1000) (DEFAULT_DIRS, what ctypes uses) finds it."""
    d = tmp_path / "added"
    plain, ex = unique("plain"), unique("ex")
    make_dll(d, plain)
    make_dll(d, ex)
    added_dirs.append(os.add_dll_directory(str(d)))

    path, err = kernel32.load(plain)
    fact("LoadLibraryW_after_add_dll_directory", err, path=path)
    assert path is None and err == ERROR_MOD_NOT_FOUND

    ex_path, ex_err = kernel32.load_ex(ex, LOAD_LIBRARY_SEARCH_DEFAULT_DIRS)
    fact("LoadLibraryExW_0x1000_after_add_dll_directory", ex_err, path=ex_path)
    assert ex_err == 0 and same(ex_path, d / ex)

    ctx = model.ctx(user_dirs=(str(d),))
    assert model.resolve(plain, ctx, 0).error == ERROR_MOD_NOT_FOUND
    res = model.resolve(ex, ctx, LOAD_LIBRARY_SEARCH_DEFAULT_DIRS)
    assert same(res.path, d / ex)
    assert res.rule is not None and res.rule.value == "user-dir"


# ---------------------------------------------------------------------------------------------
# (b) a relative os.add_dll_directory fails; (c) a second close() raises TypeError
# ---------------------------------------------------------------------------------------------


def test_relative_add_dll_directory_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fact: Callable[..., None],
) -> None:
    """anchors §3.6 / §4: AddDllDirectory needs an absolute path; expected OSError [WinError 87].
    torchdll never passes one (``_dlldirs.is_absolute_windows_path``)."""
    from torchdll._dlldirs import is_absolute_windows_path

    (tmp_path / "rel").mkdir()
    monkeypatch.chdir(tmp_path)
    assert not is_absolute_windows_path("rel")
    with pytest.raises(OSError) as info:
        handle = os.add_dll_directory("rel")
        handle.close()  # pragma: no cover - only if Windows accepted it
    exc = info.value
    fact("relative_add_dll_directory", getattr(exc, "winerror", None),
         exception=type(exc).__name__, message=str(exc))
    assert exc.winerror == ERROR_INVALID_PARAMETER, f"observed {type(exc).__name__}: {exc!r}"


def test_second_close_of_add_dll_directory_handle_raises_typeerror(
    tmp_path: Path, fact: Callable[..., None],
) -> None:
    """anchors §4: the handle's capsule is invalidated by close(); a second close() raises
    TypeError. torchdll's DllDirectory.close() is idempotent over exactly that."""
    from torchdll._dlldirs import DllDirectory

    handle = os.add_dll_directory(str(tmp_path))
    handle.close()
    with pytest.raises(TypeError) as info:
        handle.close()
    fact("second_close", type(info.value).__name__, message=str(info.value))

    wrapped = DllDirectory(str(tmp_path), os.add_dll_directory(str(tmp_path)))
    assert wrapped.close() is True
    assert wrapped.close() is False


# ---------------------------------------------------------------------------------------------
# (d) order among AddDllDirectory folders
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [LOAD_LIBRARY_SEARCH_DEFAULT_DIRS, LOAD_LIBRARY_SEARCH_USER_DIRS])
def test_add_dll_directory_order(
    flags: int, kernel32: Kernel32, model: Model, tmp_path: Path, unique: Callable[[str], str],
    make_dll: Callable[..., Path], added_dirs: list, fact: Callable[..., None],
) -> None:
    """Microsoft: "unspecified". The model searches the folder added last first (Wine's
    conformance test test_LoadLibraryEx_search_flags expects it, and it runs on Windows)."""
    first, second = tmp_path / "first", tmp_path / "second"
    name = unique("order")
    make_dll(first, name)
    make_dll(second, name)
    added_dirs.append(os.add_dll_directory(str(first)))
    added_dirs.append(os.add_dll_directory(str(second)))

    path, err = kernel32.load_ex(name, flags)
    winner = "second (last added)" if same(path, second / name) else (
        "first (first added)" if same(path, first / name) else path)
    fact("add_dll_directory_order", winner, flags=hex(flags), error=err)
    assert err == 0

    res = model.resolve(name, model.ctx(user_dirs=(str(first), str(second))), flags)
    assert same(res.path, path), f"Windows bound {path}, the model {res.path}"


# ---------------------------------------------------------------------------------------------
# (e) wrong machine: skipped during a search, 193 when nothing else is found
# ---------------------------------------------------------------------------------------------


def test_search_finding_only_wrong_machine_fails_with_193(
    kernel32: Kernel32, model: Model, tmp_path: Path, unique: Callable[[str], str],
    make_dll: Callable[..., Path], added_dirs: list, fact: Callable[..., None],
) -> None:
    """loader-model: a search that finds only other-machine files -> 193 (oracle/odpi#49);
    by full path -> 193."""
    d = tmp_path / "other"
    name = unique("wrongarch")
    make_dll(d, name, machine=other_machine())
    added_dirs.append(os.add_dll_directory(str(d)))

    path, err = kernel32.load_ex(name, LOAD_LIBRARY_SEARCH_DEFAULT_DIRS)
    fact("search_only_wrong_machine", err)
    full_path, full_err = kernel32.load_ex(str(d / name), 0)
    fact("full_path_wrong_machine", full_err)
    assert path is None and err == ERROR_BAD_EXE_FORMAT
    assert full_path is None and full_err == ERROR_BAD_EXE_FORMAT

    ctx = model.ctx(user_dirs=(str(d),))
    assert model.resolve(name, ctx, LOAD_LIBRARY_SEARCH_DEFAULT_DIRS).error == ERROR_BAD_EXE_FORMAT
    assert model.resolve(str(d / name), ctx, 0).error == ERROR_BAD_EXE_FORMAT


def test_wrong_machine_copy_is_skipped_and_the_search_goes_on(
    kernel32: Kernel32, model: Model, tmp_path: Path, unique: Callable[[str], str],
    make_dll: Callable[..., Path], added_dirs: list, fact: Callable[..., None],
) -> None:
    """Windows Internals: a wrong-machine file met during a search is skipped. The wrong copy
    is in the folder added last (searched first by the model), the right one in the other."""
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    name = unique("skip")
    make_dll(right, name)
    make_dll(wrong, name, machine=other_machine())
    added_dirs.append(os.add_dll_directory(str(right)))
    added_dirs.append(os.add_dll_directory(str(wrong)))

    path, err = kernel32.load_ex(name, LOAD_LIBRARY_SEARCH_DEFAULT_DIRS)
    fact("wrong_machine_skipped", err, path=path)
    assert err == 0 and same(path, right / name)
    res = model.resolve(name, model.ctx(user_dirs=(str(right), str(wrong))), LOAD_LIBRARY_SEARCH_DEFAULT_DIRS)
    assert same(res.path, right / name)


def test_dependency_whose_only_copy_is_wrong_machine(
    kernel32: Kernel32, model: Model, tmp_path: Path, unique: Callable[[str], str],
    make_dll: Callable[..., Path], fact: Callable[..., None],
) -> None:
    """Wine deviation ``dependency-failure-is-126``: Wine fails the load with 126; the evidence
    says Windows passes the dependency's status on (0xC000007B -> 193). Windows decides; the
    model must agree with it."""
    d = tmp_path / "dep"
    top, dep = unique("top"), unique("dep")
    make_dll(d, dep, machine=other_machine())
    make_dll(d, top, imports={dep: ["oracle_export"]})
    flags = LOAD_LIBRARY_SEARCH_DEFAULT_DIRS | LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR

    path, err = kernel32.load_ex(str(d / top), flags)
    fact("dependency_only_wrong_machine", err)
    predicted = model.simulate(str(d / top), model.ctx(), flags)
    assert path is None
    assert err == predicted.error, f"Windows {err}, model {predicted.error}"


# ---------------------------------------------------------------------------------------------
# (f) LOAD_LIBRARY_SAFE_CURRENT_DIRS and DependentLoadFlags (both ignored by Wine 8)
# ---------------------------------------------------------------------------------------------


def test_safe_current_dirs_drops_the_current_directory(
    kernel32: Kernel32, model: Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    unique: Callable[[str], str], make_dll: Callable[..., Path], fact: Callable[..., None],
) -> None:
    """Wine deviation ``safe-current-dirs-ignored``: 0x2000 removes the current directory from
    the standard search (libloaderapi.h, RS1+)."""
    plain, safe = unique("cwd"), unique("cwdsafe")
    make_dll(tmp_path, plain)
    make_dll(tmp_path, safe)
    monkeypatch.chdir(tmp_path)

    path, err = kernel32.load_ex(plain, 0)
    fact("standard_search_uses_cwd", err, path=path)
    safe_path, safe_err = kernel32.load_ex(safe, LOAD_LIBRARY_SAFE_CURRENT_DIRS)
    fact("safe_current_dirs", safe_err, path=safe_path)

    ctx = model.ctx(cwd=str(tmp_path))
    res = model.resolve(plain, ctx, 0)
    res_safe = model.resolve(safe, ctx, LOAD_LIBRARY_SAFE_CURRENT_DIRS)
    assert err == 0 and same(path, tmp_path / plain) and same(res.path, path)
    assert safe_path is None and safe_err == ERROR_MOD_NOT_FOUND
    assert res_safe.error == ERROR_MOD_NOT_FOUND


@pytest.mark.parametrize("flags", [
    LOAD_LIBRARY_SEARCH_DEFAULT_DIRS | LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR,
    LOAD_WITH_ALTERED_SEARCH_PATH,
])
def test_dependent_load_flags_govern_the_static_imports(
    flags: int, kernel32: Kernel32, model: Model, tmp_path: Path, unique: Callable[[str], str],
    make_dll: Callable[..., Path], fact: Callable[..., None],
) -> None:
    """Wine deviation ``dependent-load-flags-ignored``. ``top`` imports ``dep``, which sits next
    to it: found through the load dir (0x1100) / the altered search (0x8) without
    DependentLoadFlags; with DependentLoadFlags = 0x800 (System32 only) the model says 126."""
    d = tmp_path / "dlf"
    dep, top_free, top_dlf = unique("dep"), unique("free"), unique("dlf")
    make_dll(d, dep)
    make_dll(d, top_free, imports={dep: ["oracle_export"]})
    make_dll(d, top_dlf, imports={dep: ["oracle_export"]},
             dependent_load_flags=LOAD_LIBRARY_SEARCH_SYSTEM32)

    _free_path, free_err = kernel32.load_ex(str(d / top_free), flags)
    _dlf_path, dlf_err = kernel32.load_ex(str(d / top_dlf), flags)
    fact("without_dependent_load_flags", free_err, flags=hex(flags))
    fact("dependent_load_flags_0x800", dlf_err, flags=hex(flags))

    ctx = model.ctx()
    assert free_err == 0
    assert model.simulate(str(d / top_free), ctx, flags).error is None
    predicted = model.simulate(str(d / top_dlf), ctx, flags).error
    assert (dlf_err or None) == predicted, f"Windows {dlf_err}, model {predicted}"
    assert dlf_err == ERROR_MOD_NOT_FOUND


# ---------------------------------------------------------------------------------------------
# (g) LOAD_WITH_ALTERED_SEARCH_PATH after SetDefaultDllDirectories (in a child process)
# ---------------------------------------------------------------------------------------------

_CHILD = r"""
import ctypes, json, os, sys
from ctypes import wintypes
k = ctypes.WinDLL("kernel32", use_last_error=True)
k.SetDefaultDllDirectories.argtypes = [wintypes.DWORD]
k.SetDefaultDllDirectories.restype = wintypes.BOOL
k.LoadLibraryExW.argtypes = [wintypes.LPCWSTR, wintypes.HANDLE, wintypes.DWORD]
k.LoadLibraryExW.restype = wintypes.HMODULE
k.FreeLibrary.argtypes = [wintypes.HMODULE]
k.FreeLibrary.restype = wintypes.BOOL
folder, relative, full, on_path = sys.argv[1:5]

def load(name, flags):
    ctypes.set_last_error(0)
    h = k.LoadLibraryExW(name, None, flags)
    err = ctypes.get_last_error()
    if h:
        k.FreeLibrary(h)
        return 0
    return err

out = {"before_on_path_0": load(on_path, 0)}
out["set_default"] = bool(k.SetDefaultDllDirectories(0x1000)) or ctypes.get_last_error()
out["relative_0x8"] = load(relative, 0x8)
out["full_0x8"] = load(os.path.join(folder, full), 0x8)
out["on_path_0"] = load(on_path.replace("before", "after"), 0)
print(json.dumps(out))
"""


def test_altered_search_path_after_set_default_dll_directories(
    model: Model, tmp_path: Path, unique: Callable[[str], str], make_dll: Callable[..., Path],
    child: Callable[..., Any], fact: Callable[..., None],
) -> None:
    """loader-model mode C: after SetDefaultDllDirectories, 0x8 means DLL_LOAD_DIR + the process
    default, so a relative name fails with 87 (jna#1614, julia#47775) and PATH is no longer
    searched. SetDefaultDllDirectories is irreversible: only a child process calls it."""
    d = tmp_path / "onpath"
    relative, full = unique("rel"), unique("full")
    before = unique("before")
    after = before.replace("before", "after")
    for name in (relative, full, before, after):
        make_dll(d, name)
    env = dict(os.environ)
    env["PATH"] = str(d) + os.pathsep + env.get("PATH", "")

    out = child(_CHILD, str(d), relative, full, before, env=env)
    fact("child_after_set_default_dll_directories", out)
    assert out["set_default"] is True
    assert out["before_on_path_0"] == 0  # PATH is searched before the call
    assert out["relative_0x8"] == ERROR_INVALID_PARAMETER
    assert out["full_0x8"] == 0
    assert out["on_path_0"] == ERROR_MOD_NOT_FOUND

    ctx = model.ctx(default_flags=LOAD_LIBRARY_SEARCH_DEFAULT_DIRS, path=(str(d),) + model.ctx().path)
    assert model.resolve(relative, ctx, LOAD_WITH_ALTERED_SEARCH_PATH).error == ERROR_INVALID_PARAMETER
    assert model.simulate(str(d / full), ctx, LOAD_WITH_ALTERED_SEARCH_PATH).error is None
    assert model.resolve(after, ctx, 0).error == ERROR_MOD_NOT_FOUND
