"""A bundled broken Windows environment, built from synthetic DLLs, for the demo and tests.

It reproduces the situation of the user who lost a day on WinError 1114: a venv whose own
``site-packages\\torch\\lib`` (and another, older environment's ``torch\\lib``) had been put on
the Windows ``Path``. The tree is written under a host folder as a mirrored Windows drive
(``<root>/C/...``), so the loader model can replay torch's loader on Linux:

* torch's preload (``LoadLibraryExW(dll, NULL, 0x1100)`` over ``torch\\lib\\*.dll``) succeeds:
  with ``0x1100`` Windows ignores PATH;
* a DLL loaded with the *standard* search -- what torch's own fallback after a 126, a delay
  load, or a plugin calling plain ``LoadLibraryW`` does -- walks PATH, meets the old
  environment's ``c10.dll`` first, and fails with 127 on a symbol that copy lacks.

Every DLL is a real (tiny) PE file written by :mod:`torchdll._pebuild`; nothing is mocked.
"""

from __future__ import annotations

import ntpath
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Sequence, Tuple, Union

from .closure import LoadCall
from .fsview import MirrorView
from .model import LoadContext, Machine

if TYPE_CHECKING:
    from .snapshot import Snapshot

__all__ = ["DemoEnvironment", "build_demo", "build_seed_demo"]

USER = "C:\\Users\\민수"
BASE_PY = USER + "\\AppData\\Local\\Programs\\Python\\Python311"
VENV = USER + "\\proj\\.venv"
TORCH_LIB = VENV + "\\Lib\\site-packages\\torch\\lib"
OLD_LIB = USER + "\\miniconda3\\envs\\old\\Lib\\site-packages\\torch\\lib"
SYS32 = "C:\\Windows\\System32"

_C10_SYMBOLS = ["?c10_alloc@c10@@YAPEAX_K@Z", "?c10_mutex@c10@@YAXXZ"]

Spec = Dict[str, object]


def _files() -> Dict[str, Spec]:
    """Windows path -> keyword arguments for :func:`torchdll._pebuild.build_pe`."""
    crt = {"api-ms-win-crt-runtime-l1-1-0.dll": ["_initterm"], "api-ms-win-crt-heap-l1-1-0.dll": ["malloc"]}
    vc = {"MSVCP140.dll": ["?_Xlength_error@std@@YAXPEBD@Z"], "VCRUNTIME140.dll": ["memcpy"],
          "VCRUNTIME140_1.dll": ["__CxxFrameHandler4"]}
    k32 = {"KERNEL32.dll": ["GetTickCount", "AcquireSRWLockExclusive"]}
    files: Dict[str, Spec] = {
        # Windows
        f"{SYS32}\\kernel32.dll": dict(exports=["GetTickCount", "LoadLibraryW", "AcquireSRWLockExclusive"],
                                       imports={"ntdll.dll": ["RtlAcquireSRWLockExclusive"]}),
        f"{SYS32}\\ntdll.dll": dict(exports=["RtlAcquireSRWLockExclusive"]),
        f"{SYS32}\\ucrtbase.dll": dict(exports=["_initterm", "malloc", "free"], file_version=(10, 0, 22621, 3672)),
        f"{SYS32}\\msvcp140.dll": dict(exports=["?_Xlength_error@std@@YAXPEBD@Z"], imports=k32,
                                       file_version=(14, 40, 33810, 0)),
        f"{SYS32}\\vcruntime140.dll": dict(exports=["memcpy"], file_version=(14, 40, 33810, 0)),
        f"{SYS32}\\vcruntime140_1.dll": dict(exports=["__CxxFrameHandler4"], file_version=(14, 40, 33810, 0)),
        # the base interpreter (the process's application directory)
        f"{BASE_PY}\\python.exe": dict(dll=False, imports={"python311.dll": ["Py_Main"]}),
        f"{BASE_PY}\\python311.dll": dict(exports=["Py_Main", "PyModule_Create2"], imports=k32),
        f"{BASE_PY}\\vcruntime140.dll": dict(exports=["memcpy"], file_version=(14, 36, 32532, 0)),
        # the venv's torch
        f"{TORCH_LIB}\\c10.dll": dict(exports=_C10_SYMBOLS, imports={**vc, **k32, **crt}, linker_version=(14, 42)),
        f"{TORCH_LIB}\\libiomp5md.dll": dict(exports=["omp_get_max_threads"], imports=k32,
                                             dependent_load_flags=0x2000, file_version=(5, 0, 2021, 1004)),
        f"{TORCH_LIB}\\torch_cpu.dll": dict(exports=["?torch_op@at@@YAXXZ"],
                                            imports={"c10.dll": _C10_SYMBOLS, "libiomp5md.dll": ["omp_get_max_threads"], **vc, **crt},
                                            linker_version=(14, 42)),
        f"{TORCH_LIB}\\shm.dll": dict(exports=["shm_open"], imports={"torch_cpu.dll": ["?torch_op@at@@YAXXZ"], **k32}),
        f"{TORCH_LIB}\\torch_python.dll": dict(exports=["initModule"],
                                               imports={"python311.dll": ["PyModule_Create2"], "torch_cpu.dll": ["?torch_op@at@@YAXXZ"],
                                                        "c10.dll": _C10_SYMBOLS, "shm.dll": ["shm_open"], **vc}),
        # an older environment whose torch\lib is also on PATH
        f"{OLD_LIB}\\c10.dll": dict(exports=_C10_SYMBOLS[:1], imports={**vc, **k32}, linker_version=(14, 29)),
        # a third-party plugin that links c10.dll and is loaded with the standard search
        f"{VENV}\\Lib\\site-packages\\someplugin\\plugin.dll": dict(imports={"c10.dll": _C10_SYMBOLS[:1], **k32}),
    }
    return files


@dataclass(frozen=True)
class DemoEnvironment:
    """The demo tree: where it lies, how to read it, and the loads to replay."""

    root: Path
    view: MirrorView
    context: LoadContext
    user_path: Tuple[str, ...]
    preload: Tuple[LoadCall, ...]
    plain_load: LoadCall


def build_demo(root: Union[str, "os.PathLike[str]"]) -> DemoEnvironment:
    """Write the demo tree under ``root`` and return how to analyse it."""
    from ._pebuild import build_pe

    base = Path(root)
    for win_path, spec in _files().items():
        drive, rest = win_path.split(":\\", 1)
        host = base.joinpath(drive, *rest.split("\\"))
        host.parent.mkdir(parents=True, exist_ok=True)
        host.write_bytes(build_pe(name=ntpath.basename(win_path), machine=Machine.AMD64, **spec))  # type: ignore[arg-type]
    user_path = (
        f"{USER}\\AppData\\Local\\Microsoft\\WindowsApps",
        OLD_LIB,  # an older environment's torch\lib
        TORCH_LIB,  # the seed case: the venv's own torch\lib on the user Path
        f"{USER}\\AppData\\Local\\Programs\\Microsoft VS Code\\bin",
    )
    system_path: Sequence[str] = (SYS32, "C:\\Windows", "C:\\Windows\\System32\\Wbem")
    ctx = LoadContext(
        app_dir=BASE_PY,
        cwd=f"{USER}\\proj",
        path=(*system_path, *user_path),
        known_dlls={"kernel32.dll": "kernel32.dll", "ntdll.dll": "ntdll.dll"},
        user_dirs=(TORCH_LIB,),
        loaded={
            "python.exe": f"{BASE_PY}\\python.exe",
            "python311.dll": f"{BASE_PY}\\python311.dll",
            "ntdll.dll": f"{SYS32}\\ntdll.dll",
            "kernel32.dll": f"{SYS32}\\kernel32.dll",
            "vcruntime140.dll": f"{BASE_PY}\\vcruntime140.dll",
        },
    )
    view = MirrorView(base)
    preload_names: List[str] = sorted(n for n in view.listdir(TORCH_LIB).values() if n.lower().endswith(".dll"))
    preload = tuple(LoadCall(f"{TORCH_LIB}\\{n}", 0x1100) for n in preload_names)
    plain = LoadCall(f"{VENV}\\Lib\\site-packages\\someplugin\\plugin.dll", 0)
    return DemoEnvironment(base, view, ctx, user_path, preload, plain)


# --------------------------------------------------------------------------------------------
# The seed case, for `torchdll doctor --demo`
# --------------------------------------------------------------------------------------------

SEED_USER = "민수"


def build_seed_demo(root: Union[str, "os.PathLike[str]"]) -> "tuple[Snapshot, MirrorView]":
    """The seed report, rebuilt from synthetic PE files: ``python main.py`` (a FastAPI server) in
    a venv fails with WinError 1114 on ``c10.dll``; the venv's own ``torch\\lib`` is on the user
    Path; the VC++ Redistributable in System32 is current (reinstalling it changed nothing).

    The venv was made from a Miniconda base interpreter whose folder -- the process's
    *application directory*, searched before System32 -- holds the msvcp140.dll 14.29 of an old
    conda ``vs2015_runtime``. torch 2.9 is built with MSVC 14.42, whose ``std::mutex`` needs
    msvcp140 >= 14.40: c10.dll's static initialisation fails.
    """
    from .testing import WindowsEnv

    env = WindowsEnv(root, user=SEED_USER, base=f"C:\\Users\\{SEED_USER}\\miniconda3", conda=True)
    env.add_system()  # a current VC++ Redistributable (14.44) in System32
    env.add_dll(f"{env.base}\\msvcp140.dll", exports=("?_Xlength_error@std@@YAXPEBD@Z", "_Mtx_lock", "_Thrd_yield"),
                imports={"VCRUNTIME140.dll": ["memcpy"]}, file_version=(14, 29, 30133, 0), linker=(14, 29))
    lib = env.add_torch("2.9.0")
    env.user_path.insert(0, lib)  # the seed: the venv's own torch\lib on the user Path
    env.cwd = f"{env.user_home}\\server"
    return env.snapshot(), env.view()
