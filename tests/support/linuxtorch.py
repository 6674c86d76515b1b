"""A synthetic Linux torch install that runs torch's *own* loader code, for checking the
ld.so model against the real loader in a child Python.

:func:`build_fake_torch` writes ``site/torch`` with:

* ``__init__.py``: the functions ``_get_cuda_dep_paths``, ``_preload_cuda_lib``,
  ``_preload_cuda_deps`` and ``_load_global_deps`` copied verbatim (by ``ast`` source
  segments) from the torch installed in this environment, then ``_load_global_deps()`` and
  ``from torch._C import *`` -- exactly the sequence of the real ``import torch``;
* ``version.py`` (``__version__``, ``cuda``);
* ``lib/*.so`` built by :mod:`tests.support.elfbuild` and ``_C.<SOABI>.so``, a real (tiny)
  Python extension linked against ``libtorch_python.so`` with ``RUNPATH=$ORIGIN:$ORIGIN/lib``.

The CUDA libraries of a scenario (pip's ``site/nvidia/<pkg>/lib`` and a "toolkit" folder) are
built by the tests with :func:`tests.support.elfbuild.build_lib`.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tests.support import elfbuild
from tests.support.tiers import unavailable

LOADER_FUNCTIONS = ("_get_cuda_dep_paths", "_preload_cuda_lib", "_preload_cuda_deps", "_load_global_deps")


def real_torch_init() -> Path:
    """``torch/__init__.py`` of the torch installed here (without importing torch)."""
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        unavailable("torch is not installed in this environment (pip install torch==2.13.0)")
    return Path(spec.origin)


def loader_source() -> str:
    """torch's own Linux loader functions, verbatim."""
    text = real_torch_init().read_text("utf-8")
    tree = ast.parse(text)
    parts = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in LOADER_FUNCTIONS:
            seg = ast.get_source_segment(text, node)
            assert seg is not None
            parts.append(seg)
    found = {p.split("(", 1)[0].split()[-1] for p in parts}
    missing = set(LOADER_FUNCTIONS) - found
    if missing:
        unavailable(f"the installed torch has no {sorted(missing)} (torch 2.6+ expected)")
    return "\n\n\n".join(parts)


INIT_TEMPLATE = '''"""A synthetic torch: the real torch's Linux loader functions, then its import of _C."""
from __future__ import annotations

import ctypes
import glob
import os
import platform
import sys

{loader}


_load_global_deps()
from torch._C import *  # noqa: F401,F403
'''


def _extension_source() -> str:
    return ("#include <Python.h>\n"
            "extern int torch_python_init(void);\n"
            "static struct PyModuleDef m = {PyModuleDef_HEAD_INIT, \"_C\", NULL, -1, NULL};\n"
            "PyMODINIT_FUNC PyInit__C(void) { torch_python_init(); return PyModule_Create(&m); }\n")


def build_extension(torch_dir: Path) -> Path:
    gcc = elfbuild.find_gcc()
    if gcc is None:
        unavailable("gcc not found (apt install gcc)")
    soabi = sysconfig.get_config_var("SOABI")
    out = torch_dir / f"_C.{soabi}.so"
    src = torch_dir / "_C_ext.c"
    src.write_text(_extension_source())
    inc = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(inc, "Python.h")):
        unavailable(f"Python's headers are missing ({inc}/Python.h; apt install python3-dev)")
    cmd = [gcc, "-shared", "-fPIC", f"-I{inc}", str(src), "-o", str(out), f"-L{torch_dir / 'lib'}",
           "-ltorch_python", "-Wl,--enable-new-dtags,-rpath,$ORIGIN:$ORIGIN/lib"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building _C failed: {proc.stderr}")
    src.unlink()
    return out


def build_fake_torch(site: Path, *, version: str = "2.13.0+cu126", cuda: Optional[str] = "12.6",
                     global_deps_needed: Sequence[Path] = (), global_deps_runpath: Sequence[str] = ("$ORIGIN",),
                     cuda_lib_needed: Sequence[Path] = (), cuda_lib_runpath: Sequence[str] = ("$ORIGIN",),
                     cuda_lib_uses: Sequence[str] = (), python_needs_cuda: bool = True) -> Path:
    """Build ``site/torch``; returns the torch folder. ``libtorch_global_deps.so`` links
    ``global_deps_needed``; ``libtorch_cuda.so`` links ``cuda_lib_needed`` and references
    ``cuda_lib_uses`` by address (bound at load, like C++ vtables); ``libtorch_python.so``
    links ``libtorch_cuda.so`` when ``python_needs_cuda``."""
    torch_dir = site / "torch"
    lib = torch_dir / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    (torch_dir / "__init__.py").write_text(INIT_TEMPLATE.format(loader=loader_source()))
    (torch_dir / "version.py").write_text(
        f"__version__ = {version!r}\ncuda = {cuda!r}\ngit_version = 'synthetic'\n")
    c10 = elfbuild.build_lib(lib, "libc10.so", soname="libc10.so", defines=["c10_init"], marker="c10")
    elfbuild.build_lib(lib, "libtorch_global_deps.so", soname="libtorch_global_deps.so",
                       needed=list(global_deps_needed), runpath=list(global_deps_runpath), marker="gd")
    needed_py: List[Path] = [c10]
    if python_needs_cuda:
        tc = elfbuild.build_lib(lib, "libtorch_cuda.so", soname="libtorch_cuda.so",
                                needed=[c10, *cuda_lib_needed], runpath=list(cuda_lib_runpath),
                                defines=["torch_cuda_init"], refs=list(cuda_lib_uses), marker="tc")
        needed_py.append(tc)
    elfbuild.build_lib(lib, "libtorch_python.so", soname="libtorch_python.so", needed=needed_py,
                       runpath=["$ORIGIN"], defines=["torch_python_init"], marker="tp")
    build_extension(torch_dir)
    return torch_dir


PROBE = """
import json, sys
sys.path.insert(0, {site!r})
import ctypes, glob, os, platform  # what torch/__init__.py imports before loading
maps = []
for line in open('/proc/self/maps'):
    parts = line.split(None, 5)
    if len(parts) == 6 and parts[5].startswith('/'):
        p = parts[5].rstrip('\\n')
        if p not in maps and ('.so' in os.path.basename(p) or p == os.path.realpath(sys.executable)):
            maps.append(p)
print(json.dumps({{"sys_path": sys.path, "maps": maps, "exe": os.path.realpath('/proc/self/exe')}}))
"""

IMPORT = """
import sys, os
sys.path.insert(0, {site!r})
try:
    import torch
except BaseException as exc:
    print("ERROR " + type(exc).__name__ + ": " + str(exc))
else:
    print("OK")
maps = []
for line in open('/proc/self/maps'):
    parts = line.split(None, 5)
    if len(parts) == 6 and parts[5].startswith('/'):
        p = parts[5].rstrip('\\n')
        if p not in maps and '.so' in os.path.basename(p):
            maps.append(p)
import json
print("MAPS " + json.dumps(maps))
"""


def child_env(ld_library_path: Optional[str]) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LD_", "PYTHON"))}
    if ld_library_path is not None:
        env["LD_LIBRARY_PATH"] = ld_library_path
    return env


def probe_child(site: Path, ld_library_path: Optional[str]) -> Dict[str, object]:
    """sys.path, mapped objects and executable of a fresh child about to ``import torch``."""
    proc = subprocess.run([sys.executable, "-c", PROBE.format(site=str(site))], capture_output=True, text=True,
                          env=child_env(ld_library_path), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def model_context(site: Path, ld_library_path: Optional[str], extra_env: Optional[Dict[str, str]] = None) -> Any:
    """The model's context of the child :func:`import_in_child` runs: its sys.path, its
    executable, the objects it has mapped before ``import torch``, and the environment
    (``LD_LIBRARY_PATH``, ``LD_PRELOAD``...) it starts with."""
    from torchdll.linuxdiag import linux_context

    facts = probe_child(site, ld_library_path)
    environ: Dict[str, str] = {"LD_LIBRARY_PATH": ld_library_path} if ld_library_path is not None else {}
    environ.update(extra_env or {})
    maps = [str(p) for p in facts["maps"] if p != facts["exe"]]  # type: ignore[union-attr]
    return linux_context(environ=environ, current_environ=environ, sys_path=list(facts["sys_path"]),  # type: ignore[call-overload]
                         executable=str(facts["exe"]), loaded=maps, soabi=sysconfig.get_config_var("SOABI"))


def import_in_child(site: Path, ld_library_path: Optional[str], command: Optional[List[str]] = None,
                    extra_env: Optional[Dict[str, str]] = None) -> Tuple[Optional[str], List[str]]:
    """``(error or None, mapped .so files)`` of a real ``import torch`` in a fresh child."""
    argv = (command or []) + [sys.executable, "-c", IMPORT.format(site=str(site))]
    env = child_env(ld_library_path)
    env.update(extra_env or {})
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    status = next(line for line in lines if line.startswith(("OK", "ERROR ")))
    maps = json.loads(next(line for line in lines if line.startswith("MAPS "))[5:])
    return (None if status == "OK" else status[len("ERROR "):]), maps
