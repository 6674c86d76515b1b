"""The bundled demo of a broken Linux machine: cause 37 of the research notes (pytorch#138460).

A user's venv holds a CUDA build of torch with pip's ``nvidia-*`` libraries; a CUDA 12.1
toolkit is on ``LD_LIBRARY_PATH`` (set years ago in ``~/.bashrc``). ``import torch`` fails with::

    ImportError: .../site-packages/torch/lib/../../nvidia/cusparse/lib/libcusparse.so.12:
    undefined symbol: __nvJitLinkComplete_12_4, version libnvJitLink.so.12

because ld.so searches ``LD_LIBRARY_PATH`` before ``libtorch_cuda.so``'s ``RUNPATH`` and binds
the toolkit's older ``libnvJitLink.so.12``. :func:`build_linux_demo` writes that machine's files
under a folder (real ELF files, :mod:`torchdll._elfwrite`: no compiler, any host OS) and returns
the context ``diagnose`` needs; the paths inside are the machine's own (``/home/user/...``),
read under the folder.

``python -m torchdll doctor --demo linux`` prints the report. The torch part of the tree is
loadable by the real glibc loader (its paths are ``$ORIGIN``-relative), which is how the tests
check that the demo's message is the one ld.so prints.
"""

from __future__ import annotations

import os
import posixpath
from typing import Dict, Union

from .linuxdiag import LinuxCheckContext

__all__ = ["build_linux_demo", "DEMO_SITE", "DEMO_TOOLKIT", "DEMO_TORCH"]

DEMO_HOME = "/home/user/app"
DEMO_SITE = f"{DEMO_HOME}/.venv/lib/python3.11/site-packages"
DEMO_TOOLKIT = "/usr/local/cuda-12.1/lib64"
DEMO_TORCH = "2.5.1"
DEMO_SOABI = "cpython-311-x86_64-linux-gnu"
_SYSTEM = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu")
_NVIDIA_REQS = ("nvidia-cuda-runtime-cu12==12.4.127", "nvidia-nvjitlink-cu12==12.4.127",
                "nvidia-cusparse-cu12==12.3.1.170")


def _init_text() -> str:
    """A torch/__init__.py that carries what torchdll reads from the real one: the CUDA preload
    list of ``_preload_cuda_deps`` and the post-success preload of 2.6+ (``/proc/self/maps``)."""
    from .linuxload import CUDA_PRELOADS

    rows = "\n".join(f'        ("{a}", "{b}"),' for a, b in CUDA_PRELOADS)
    return ('"""Synthetic torch for the torchdll demo (the loader parts torchdll reads)."""\n\n\n'
            "def _preload_cuda_deps(err=None):\n    cuda_libs = [\n" + rows + "\n    ]\n\n\n"
            "def _load_global_deps():\n    with open(\"/proc/self/maps\") as f:\n        pass\n")


def build_linux_demo(root: Union[str, "os.PathLike[str]"]) -> LinuxCheckContext:
    """Write the demo machine under ``root`` and return its :class:`LinuxCheckContext`."""
    from ._elfwrite import build_elf
    from .ldso import LdContext, PosixView
    from .linuxload import find_linux_torch, replay_linux_torch

    base = os.fspath(root)

    def at(path: str) -> str:
        return os.path.join(base, path.lstrip("/"))

    def lib(path: str, **kw: object) -> None:
        build_elf(at(path), **kw)  # type: ignore[arg-type]

    glibc = ["GLIBC_2.2.5", "GLIBC_2.34"]
    # the system: an interpreter and its C library
    lib("/usr/bin/python3.11", exec_=True, needed=["libc.so.6"], defines=["Py_Initialize"])
    lib(f"{_SYSTEM[0]}/libc.so.6", soname="libc.so.6", version_defs=glibc,
        defines=["malloc@@GLIBC_2.2.5", "dlopen@@GLIBC_2.34"])
    # pip's CUDA libraries (no RUNPATH to each other, as shipped)
    nv = f"{DEMO_SITE}/nvidia"
    lib(f"{nv}/cuda_runtime/lib/libcudart.so.12", soname="libcudart.so.12",
        version_defs=["libcudart.so.12"], defines=["cudaGetDeviceCount@@libcudart.so.12"])
    jit = ["__nvJitLinkCreate_12_4", "__nvJitLinkAddData_12_1", "__nvJitLinkComplete_12_4"]
    lib(f"{nv}/nvjitlink/lib/libnvJitLink.so.12", soname="libnvJitLink.so.12",
        version_defs=["libnvJitLink.so.12"], defines=[f"{s}@@libnvJitLink.so.12" for s in jit])
    lib(f"{nv}/cusparse/lib/libcusparse.so.12", soname="libcusparse.so.12", needed=["libnvJitLink.so.12"],
        version_defs=["libcusparse.so.12"], defines=["cusparseCreate@@libcusparse.so.12"],
        uses=["__nvJitLinkComplete_12_4@libnvJitLink.so.12"])
    # the CUDA 12.1 toolkit on LD_LIBRARY_PATH: an older libnvJitLink.so.12
    lib(f"{DEMO_TOOLKIT}/libnvJitLink.so.12", soname="libnvJitLink.so.12",
        version_defs=["libnvJitLink.so.12"],
        defines=["__nvJitLinkCreate_12_1@@libnvJitLink.so.12", "__nvJitLinkAddData_12_1@@libnvJitLink.so.12"])
    # torch
    tl = f"{DEMO_SITE}/torch/lib"
    lib(f"{tl}/libc10.so", soname="libc10.so", defines=["c10_init"])
    lib(f"{tl}/libtorch_global_deps.so", soname="libtorch_global_deps.so", needed=["libcudart.so.12"],
        runpath="$ORIGIN/../../nvidia/cuda_runtime/lib")
    lib(f"{tl}/libtorch_cuda.so", soname="libtorch_cuda.so",
        needed=["libc10.so", "libcudart.so.12", "libnvJitLink.so.12", "libcusparse.so.12"],
        runpath="$ORIGIN/../../nvidia/cuda_runtime/lib:$ORIGIN/../../nvidia/nvjitlink/lib:"
                "$ORIGIN/../../nvidia/cusparse/lib:$ORIGIN",
        defines=["torch_cuda_init"], uses=["cusparseCreate@libcusparse.so.12", "c10_init"])
    lib(f"{tl}/libtorch_python.so", soname="libtorch_python.so", needed=["libtorch_cuda.so", "libc10.so"],
        runpath="$ORIGIN", defines=["torch_python_init"], uses=["torch_cuda_init"])
    lib(f"{DEMO_SITE}/torch/_C.{DEMO_SOABI}.so", needed=["libtorch_python.so"], runpath="$ORIGIN/lib",
        defines=["PyInit__C"], uses=["torch_python_init"])
    texts: Dict[str, str] = {
        f"{DEMO_SITE}/torch/__init__.py": _init_text(),
        f"{DEMO_SITE}/torch/version.py": f"__version__ = '{DEMO_TORCH}+cu124'\ncuda = '12.4'\n",
        f"{DEMO_SITE}/torch-{DEMO_TORCH}.dist-info/METADATA":
            "Metadata-Version: 2.1\nName: torch\nVersion: " + DEMO_TORCH + "\n"
            + "".join(f"Requires-Dist: {r} ; platform_system == \"Linux\"\n" for r in _NVIDIA_REQS) + "\n",
        f"{DEMO_HOME}/main.py": "import torch\n",
    }
    for rel in ("nvidia_cuda_runtime_cu12-12.4.127", "nvidia_nvjitlink_cu12-12.4.127",
                "nvidia_cusparse_cu12-12.3.1.170"):
        texts[f"{DEMO_SITE}/{rel}.dist-info/METADATA"] = "Metadata-Version: 2.1\n"
    for path, text in texts.items():
        os.makedirs(posixpath.dirname(at(path)), exist_ok=True)
        with open(at(path), "w", encoding="utf-8") as fh:
            fh.write(text)
    environ = {"LD_LIBRARY_PATH": DEMO_TOOLKIT, "HOME": "/home/user", "PATH": "/usr/bin:/bin"}
    ld = LdContext(ld_library_path=(DEMO_TOOLKIT,), system_dirs=_SYSTEM, executable="/usr/bin/python3.11",
                   cwd=DEMO_HOME, root=base, platform="x86_64", lib="lib/x86_64-linux-gnu")
    view = PosixView(base)
    sys_path = (DEMO_HOME, "/usr/lib/python311.zip", "/usr/lib/python3.11",
                "/usr/lib/python3.11/lib-dynload", DEMO_SITE)
    torches = tuple(find_linux_torch(sys_path, soabi=DEMO_SOABI, view=view))
    replays = tuple(replay_linux_torch(ld, t, sys_path, view) for t in torches[:1])
    return LinuxCheckContext(ld, environ, dict(environ), sys_path, torches, replays, view, "linux")
