"""Fixtures for the Windows oracles: kernel32 through ctypes, the loader model's context for
this very process, synthetic DLLs, and a record of every observed fact.

Everything Windows-specific happens inside the fixtures, so on Linux the module imports fine and
each oracle skips with its reason (see ``test_oracles.py``). The oracles never call
``SetDefaultDllDirectories`` or ``SetDllDirectory`` in the test process: both change every
later load of the process for good. A child process does that (``run_child``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

WINDOWS = sys.platform == "win32"
IS_64BIT = sys.maxsize > 2**32
FACTS_ENV = "TORCHDLL_WINDOWS_FACTS"

# LoadLibraryExW flags (libloaderapi.h), as used by the oracles
LOAD_WITH_ALTERED_SEARCH_PATH = 0x8
LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR = 0x100
LOAD_LIBRARY_SEARCH_USER_DIRS = 0x400
LOAD_LIBRARY_SEARCH_SYSTEM32 = 0x800
LOAD_LIBRARY_SEARCH_DEFAULT_DIRS = 0x1000
LOAD_LIBRARY_SAFE_CURRENT_DIRS = 0x2000


class Kernel32:
    """The few kernel32 functions the oracles call, with argtypes/restype and last-error."""

    def __init__(self) -> None:
        import ctypes
        from ctypes import wintypes

        self._ctypes = ctypes
        k = ctypes.WinDLL("kernel32", use_last_error=True)  # a private instance: own prototypes
        k.LoadLibraryW.argtypes = [wintypes.LPCWSTR]
        k.LoadLibraryW.restype = wintypes.HMODULE
        k.LoadLibraryExW.argtypes = [wintypes.LPCWSTR, wintypes.HANDLE, wintypes.DWORD]
        k.LoadLibraryExW.restype = wintypes.HMODULE
        k.FreeLibrary.argtypes = [wintypes.HMODULE]
        k.FreeLibrary.restype = wintypes.BOOL
        k.GetModuleFileNameW.argtypes = [wintypes.HMODULE, wintypes.LPWSTR, wintypes.DWORD]
        k.GetModuleFileNameW.restype = wintypes.DWORD
        self.k = k
        self._handles: List[int] = []

    def _result(self, handle: Optional[int]) -> Tuple[Optional[str], int]:
        error = self._ctypes.get_last_error()
        if not handle:
            return None, error
        path = self.module_path(handle)
        self.k.FreeLibrary(handle)  # unload at once: later loads must not meet it by name
        return path, 0

    def load(self, name: str) -> Tuple[Optional[str], int]:
        """``LoadLibraryW(name)``: ``(path of the module, 0)`` or ``(None, GetLastError())``."""
        self._ctypes.set_last_error(0)
        return self._result(self.k.LoadLibraryW(name))

    def load_ex(self, name: str, flags: int) -> Tuple[Optional[str], int]:
        """``LoadLibraryExW(name, NULL, flags)``, as :meth:`load`."""
        self._ctypes.set_last_error(0)
        return self._result(self.k.LoadLibraryExW(name, None, flags))

    def module_path(self, handle: Optional[int]) -> str:
        buf = self._ctypes.create_unicode_buffer(32768)
        n = self.k.GetModuleFileNameW(handle, buf, len(buf))
        return buf.value[:n]


@pytest.fixture(scope="session")
def kernel32() -> Kernel32:
    if not WINDOWS:  # pragma: no cover - the oracles skip first
        pytest.skip("needs the real Windows loader")
    return Kernel32()


@pytest.fixture(scope="session")
def live_snapshot() -> Any:
    """torchdll's snapshot of this test process (what ``diagnose()`` would read here)."""
    if not WINDOWS:  # pragma: no cover
        pytest.skip("needs the real Windows loader")
    from torchdll.snapshot import collect

    return collect()


@pytest.fixture
def model(live_snapshot: Any) -> "Model":
    return Model(live_snapshot)


class Model:
    """torchdll's loader model of this process: ``ctx()`` builds the LoadContext, ``resolve``
    and ``simulate`` run the model over a fresh ``NativeView`` (its listings are cached, so one
    view per question, after the test wrote its files)."""

    def __init__(self, snapshot: Any) -> None:
        self.snapshot = snapshot

    def ctx(self, *, user_dirs: Tuple[str, ...] = (), cwd: Optional[str] = None, **changes: Any) -> Any:
        ctx = self.snapshot.load_context(user_dirs=tuple(user_dirs),
                                         cwd=os.getcwd() if cwd is None else cwd)
        return dataclasses.replace(ctx, **changes) if changes else ctx

    def resolve(self, name: str, ctx: Any, flags: int = 0) -> Any:
        from torchdll import NativeView, resolve

        return resolve(name, ctx, NativeView(), flags=flags)

    def simulate(self, target: str, ctx: Any, flags: int = 0) -> Any:
        from torchdll import LoadCall, NativeView, simulate

        return simulate([LoadCall(target, flags)], ctx, NativeView()).results[0]


@pytest.fixture
def unique() -> Callable[[str], str]:
    """A DLL name no other test (and no earlier load in this process) uses."""
    tag = uuid.uuid4().hex[:10]
    return lambda stem: f"tdo_{stem}_{tag}.dll"


@pytest.fixture
def make_dll() -> Callable[..., Path]:
    """``make_dll(folder, name, **write_pe_kwargs)``: a small valid PE DLL (this process's
    machine unless ``machine=`` says otherwise) written with ``torchdll._pebuild.write_pe``."""
    from torchdll._pebuild import write_pe
    from torchdll.model import Machine

    def make(folder: Path, name: str, **kw: Any) -> Path:
        kw.setdefault("machine", Machine.AMD64 if IS_64BIT else Machine.I386)
        kw.setdefault("exports", ["oracle_export"])
        return write_pe(Path(folder) / name, name=name, **kw)

    return make


@pytest.fixture
def fact(request: pytest.FixtureRequest, record_property: Callable[[str, Any], None]) -> Callable[..., None]:
    """``fact(key, observed, model=...)``: record what Windows did (junit property, and one
    JSON line in ``$TORCHDLL_WINDOWS_FACTS`` when set: the workflow uploads that file)."""

    def record(key: str, observed: Any, **extra: Any) -> None:
        record_property(key, observed)
        target = os.environ.get(FACTS_ENV)
        if target:
            row: Dict[str, Any] = {"test": request.node.nodeid, "fact": key, "observed": observed,
                                   "python": sys.version.split()[0], "64bit": IS_64BIT, **extra}
            with open(target, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row, default=str) + "\n")

    return record


def run_child(code: str, *args: str, env: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Run ``code`` in a fresh interpreter (for process-wide changes such as
    ``SetDefaultDllDirectories``) and return the JSON object it prints last."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, check=False,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def child() -> Callable[..., Dict[str, Any]]:
    return run_child


@pytest.fixture
def added_dirs() -> Iterator[List[Any]]:
    """Handles of ``os.add_dll_directory`` opened by a test; closed afterwards whatever happens."""
    handles: List[Any] = []
    yield handles
    for h in reversed(handles):
        try:
            h.close()
        except TypeError:  # already closed by the test
            pass
