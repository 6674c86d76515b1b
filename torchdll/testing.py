"""Build simulated Windows environments anywhere, for tests of code that deals with torch's DLLs.

:class:`WindowsEnv` writes a small Windows tree under a host folder (a mirror: ``root/C/...``)
made of real PE files (written by :mod:`torchdll._pebuild`) whose import and export tables
follow the shape of real torch DLLs, and describes the process with a
:class:`~torchdll.snapshot.Snapshot`. ``torchdll.diagnose(env.snapshot(), view=env.view())``
then analyses it on any OS::

    env = WindowsEnv(tmp_path)
    env.add_system(msvcp140=(14, 29, 30133, 0))   # an old VC++ runtime in System32
    env.add_torch("2.9.0")                         # torch\\lib built with MSVC 14.42
    report = torchdll.diagnose(env.snapshot(), view=env.view())
    assert report.predictions[0].winerror == 1114

Everything here is deterministic and writes only below ``root``.
"""

from __future__ import annotations

import hashlib
import base64
import ntpath
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from .fsview import MirrorView
from .model import Machine
from .snapshot import PythonInfo, RegistryValue, Snapshot

__all__ = ["TORCH_DLLS", "TorchDll", "WindowsEnv", "torch_dlls"]

Version4 = Tuple[int, int, int, int]

#: Symbols shared between the synthetic torch DLLs (mangled like the real ones).
C10_EXPORTS = ("?c10_alloc@c10@@YAPEAX_K@Z", "?lock@mutex@c10@@QEAAXXZ", "?str@Error@c10@@QEBAXXZ")
CPU_EXPORTS = ("?empty@at@@YA?AVTensor@1@XZ", "?add@at@@YA?AVTensor@1@AEBV21@0@Z")
PY_IMPORTS = ("PyModule_Create2", "PyErr_SetString", "Py_IncRef")
KERNEL32 = ("GetTickCount", "GetProcAddress", "LoadLibraryExW", "AcquireSRWLockExclusive")
MSVCP = ("?_Xlength_error@std@@YAXPEBD@Z", "_Mtx_lock", "_Thrd_yield")
VCRT = ("memcpy", "memset", "__C_specific_handler")
VCRT1 = ("__CxxFrameHandler4",)
CRT = {"api-ms-win-crt-runtime-l1-1-0.dll": ("_initterm", "_cexit"),
       "api-ms-win-crt-heap-l1-1-0.dll": ("malloc", "free")}


@dataclass(frozen=True)
class TorchDll:
    """One synthetic ``torch\\lib`` DLL: its name, imports and exports."""

    name: str
    imports: Mapping[str, Tuple[Union[str, int], ...]] = field(default_factory=dict)
    exports: Tuple[str, ...] = ()
    linker: Optional[Tuple[int, int]] = None  # default: the torch version's toolset


def torch_dlls(version: str, *, python_dll: str = "python311.dll") -> Tuple[TorchDll, ...]:
    """The DLLs of ``torch\\lib`` for a torch version, with the dependency shape of the real
    CPU wheels: 2.3.x adds MKL (``mkl_intel_thread.1.dll``), 2.4.0 ``libomp140.x86_64.dll`` for
    fbgemm, 2.9+ drops asmjit/fbgemm (causes.md section 3.1)."""
    from .torchload import _vkey

    key = _vkey(version)
    vc = {"MSVCP140.dll": MSVCP, "VCRUNTIME140.dll": VCRT, "VCRUNTIME140_1.dll": VCRT1}
    dlls: List[TorchDll] = [
        TorchDll("c10.dll", {**vc, "KERNEL32.dll": KERNEL32, **CRT}, C10_EXPORTS),
        TorchDll("libiomp5md.dll", {"KERNEL32.dll": KERNEL32, "VCRUNTIME140.dll": VCRT},
                 ("omp_get_max_threads", "__kmpc_fork_call"), linker=(14, 29)),
        TorchDll("libiompstubs5md.dll", {"KERNEL32.dll": KERNEL32}, ("omp_get_num_procs",), linker=(14, 29)),
        TorchDll("torch_global_deps.dll", {"VCRUNTIME140.dll": VCRT}),
        TorchDll("torch.dll", {"VCRUNTIME140.dll": VCRT}),
        TorchDll("uv.dll", {"KERNEL32.dll": KERNEL32, "VCRUNTIME140.dll": VCRT}, ("uv_loop_init",)),
    ]
    cpu_imports: Dict[str, Tuple[Union[str, int], ...]] = {
        "c10.dll": C10_EXPORTS, "libiomp5md.dll": ("__kmpc_fork_call",),
        "uv.dll": ("uv_loop_init",), **vc, **CRT}
    if key < (2, 9):
        dlls.append(TorchDll("asmjit.dll", {"KERNEL32.dll": KERNEL32, "VCRUNTIME140.dll": VCRT}, ("asmjit_init",)))
        fbgemm: Dict[str, Tuple[Union[str, int], ...]] = {"asmjit.dll": ("asmjit_init",), **vc}
        if key[:3] == (2, 4, 0):
            fbgemm["libomp140.x86_64.dll"] = ("__kmpc_fork_call",)
        dlls.append(TorchDll("fbgemm.dll", fbgemm, ("fbgemm_init",)))
        cpu_imports["fbgemm.dll"] = ("fbgemm_init",)
    if (2, 3) <= key[:2] < (2, 4):
        cpu_imports["mkl_intel_thread.1.dll"] = ("mkl_blas_sgemm",)
    if key >= (2, 14):  # measured: 2.14.1's torch_cpu.dll imports it, 2.9.1's does not
        cpu_imports["VCRUNTIME140_THREADS.dll"] = ("_Thrd_create",)
    dlls.append(TorchDll("torch_cpu.dll", cpu_imports, CPU_EXPORTS))
    dlls.append(TorchDll("shm.dll", {"torch_cpu.dll": CPU_EXPORTS[:1], "c10.dll": C10_EXPORTS[:1], **vc},
                         ("shm_open",)))
    py_imports: Dict[str, Tuple[Union[str, int], ...]] = {
        python_dll: PY_IMPORTS, "torch_cpu.dll": CPU_EXPORTS, "c10.dll": C10_EXPORTS,
        "shm.dll": ("shm_open",), **vc}
    if key >= (2, 14):  # likewise torch_python.dll
        py_imports["MSVCP140_ATOMIC_WAIT.dll"] = ("__std_atomic_wait_direct",)
    dlls.append(TorchDll("torch_python.dll", py_imports, ("initModule",)))
    return tuple(dlls)


#: The default torch\lib of :meth:`WindowsEnv.add_torch` (torch 2.9.0).
TORCH_DLLS = torch_dlls("2.9.0")


def _toolset(version: str) -> Tuple[int, int]:
    from .torchload import _vkey

    key = _vkey(version)
    if key >= (2, 9):
        return (14, 42)
    if key >= (2, 5):
        return (14, 38)
    return (14, 29)


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class WindowsEnv:
    """A simulated Windows machine with one Python and (optionally) torch and friends.

    Paths are Windows paths. Defaults: user ``dev``, a python.org CPython 3.11 in
    ``C:\\Users\\dev\\AppData\\Local\\Programs\\Python\\Python311`` and a venv in
    ``C:\\Users\\dev\\proj\\.venv``; the process is ``python main.py`` in ``C:\\Users\\dev\\proj``.
    """

    def __init__(self, root: Union[str, "os.PathLike[str]"], *, user: str = "dev",
                 python: str = "3.11.9", venv: bool = True, base: Optional[str] = None,
                 conda: bool = False) -> None:
        self.root = Path(root)
        self.user_home = f"C:\\Users\\{user}"
        self.python_version = python
        self.conda = conda
        major, minor = python.split(".")[:2]
        self.python_dll = f"python{major}{minor}.dll"
        self.base = base or f"{self.user_home}\\AppData\\Local\\Programs\\Python\\Python{major}{minor}"
        self.prefix = f"{self.user_home}\\proj\\.venv" if venv else self.base
        self.site_packages = f"{self.prefix}\\Lib\\site-packages"
        self.cwd = f"{self.user_home}\\proj"
        self.system32 = "C:\\Windows\\System32"
        self.user_path: List[str] = [f"{self.user_home}\\AppData\\Local\\Microsoft\\WindowsApps"]
        self.system_path: List[str] = ["%SystemRoot%\\system32", "%SystemRoot%", "%SystemRoot%\\System32\\Wbem"]
        self.loaded: List[str] = []
        self.environ: Dict[str, str] = {"SystemRoot": "C:\\Windows", "windir": "C:\\Windows",
                                        "USERPROFILE": self.user_home}
        self.files: Dict[str, bytes] = {}
        self._add_python()

    # -- writing files -----------------------------------------------------------------------
    def host(self, win_path: str) -> Path:
        drive, rest = win_path.split(":\\", 1)
        return self.root.joinpath(drive.upper(), *[p for p in rest.split("\\") if p])

    def add_file(self, win_path: str, data: Union[bytes, str]) -> str:
        raw = data.encode("utf-8") if isinstance(data, str) else data
        target = self.host(win_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(raw)
        self.files[win_path] = raw
        return win_path

    def add_dll(self, win_path: str, *, imports: Mapping[str, Sequence[Union[str, int]]] = {},
                exports: Sequence[str] = (), machine: Machine = Machine.AMD64,
                linker: Tuple[int, int] = (14, 42), file_version: Optional[Version4] = None,
                dll: bool = True, **kwargs: object) -> str:
        """Write a synthetic PE file at ``win_path`` (see :func:`torchdll._pebuild.build_pe`)."""
        from ._pebuild import build_pe

        data = build_pe(name=ntpath.basename(win_path), machine=machine, dll=dll,
                        imports={k: list(v) for k, v in imports.items()}, exports=list(exports),
                        linker_version=linker, file_version=file_version, **kwargs)  # type: ignore[arg-type]
        return self.add_file(win_path, data)

    # -- the pieces of a machine ---------------------------------------------------------------
    def _add_python(self) -> None:
        b = self.base
        self.add_dll(f"{b}\\python.exe", dll=False, imports={self.python_dll: ["Py_Main"]})
        self.add_dll(f"{b}\\{self.python_dll}", exports=["Py_Main", *PY_IMPORTS],
                     imports={"KERNEL32.dll": ["GetTickCount"]})
        self.add_dll(f"{b}\\vcruntime140.dll", exports=VCRT, file_version=(14, 38, 33135, 0))
        self.add_dll(f"{b}\\vcruntime140_1.dll", exports=VCRT1, file_version=(14, 38, 33135, 0))
        if self.conda:
            self.add_file(f"{b}\\conda-meta\\history", "==> conda base <==\n")
        if self.prefix != self.base:
            self.add_file(f"{self.prefix}\\pyvenv.cfg", f"home = {b}\ninclude-system-site-packages = false\n")
            self.add_dll(f"{self.prefix}\\Scripts\\python.exe", dll=False, imports={"KERNEL32.dll": ["GetTickCount"]})
        self.add_file(f"{self.site_packages}\\README.txt", "site-packages\n")
        self.loaded = [f"{b}\\python.exe", f"{self.system32}\\ntdll.dll", f"{self.system32}\\kernel32.dll",
                       f"{self.system32}\\KernelBase.dll", f"{b}\\{self.python_dll}", f"{b}\\vcruntime140.dll"]

    def add_system(self, *, msvcp140: Optional[Version4] = (14, 44, 35211, 0),
                   vcruntime140: Optional[Version4] = (14, 44, 35211, 0),
                   extra: Iterable[str] = ()) -> None:
        """System32 with kernel32/ntdll/ucrtbase and, unless ``None``, the VC++ runtime at the
        given FileVersions (``msvcp140=None``: the VC++ Redistributable is not installed)."""
        s = self.system32
        self.add_dll(f"{s}\\ntdll.dll", exports=["RtlAcquireSRWLockExclusive", "NtClose"])
        self.add_dll(f"{s}\\KernelBase.dll", exports=["GetTickCount"], imports={"ntdll.dll": ["NtClose"]})
        self.add_dll(f"{s}\\kernel32.dll", exports=KERNEL32, imports={"ntdll.dll": ["NtClose"]},
                     file_version=(10, 0, 22621, 3672))
        self.add_dll(f"{s}\\ucrtbase.dll", exports=["_initterm", "_cexit", "malloc", "free"],
                     file_version=(10, 0, 22621, 3593))
        self.add_dll(f"{s}\\ws2_32.dll", exports=["WSAStartup"])
        if msvcp140 is not None:
            self.add_dll(f"{s}\\msvcp140.dll", exports=MSVCP, imports={"VCRUNTIME140.dll": ["memcpy"]},
                         file_version=msvcp140)
            self.add_dll(f"{s}\\msvcp140_atomic_wait.dll", exports=["__std_atomic_wait_direct"],
                         file_version=msvcp140)
        if vcruntime140 is not None:
            self.add_dll(f"{s}\\vcruntime140.dll", exports=VCRT, file_version=vcruntime140)
            self.add_dll(f"{s}\\vcruntime140_1.dll", exports=VCRT1, file_version=vcruntime140)
            self.add_dll(f"{s}\\vcruntime140_threads.dll", exports=["_Thrd_create"], file_version=vcruntime140)
        for name in extra:
            self.add_dll(f"{s}\\{name}")

    def add_torch(self, version: str = "2.9.0", *, site_packages: Optional[str] = None,
                  local: Optional[str] = "cpu", cuda: Optional[str] = None,
                  dlls: Optional[Sequence[TorchDll]] = None, record: bool = True) -> str:
        """Install a synthetic torch into ``site_packages`` (default: the venv's); returns the
        ``torch\\lib`` folder."""
        site = site_packages or self.site_packages
        lib = f"{site}\\torch\\lib"
        toolset = _toolset(version)
        full = f"{version}+{local}" if local else version
        entries: List[Tuple[str, bytes]] = []
        for d in dlls if dlls is not None else torch_dlls(version, python_dll=self.python_dll):
            path = self.add_dll(f"{lib}\\{d.name}", imports=d.imports, exports=d.exports,
                                linker=d.linker or toolset)
            entries.append((f"torch/lib/{d.name}", self.files[path]))
        major, minor = self.python_version.split(".")[:2]
        pyd = self.add_dll(f"{site}\\torch\\_C.cp{major}{minor}-win_amd64.pyd",
                           imports={"torch_python.dll": ["initModule"]}, exports=["PyInit__C"],
                           linker=toolset)
        entries.append((f"torch/_C.cp{major}{minor}-win_amd64.pyd", self.files[pyd]))
        cuda_line = f"'{cuda}'" if cuda else "None"
        vpy = (f"__version__ = '{full}'\ndebug = False\ncuda: Optional[str] = {cuda_line}\n"
               "git_version = '0000000000000000000000000000000000000000'\nhip: Optional[str] = None\n")
        self.add_file(f"{site}\\torch\\version.py", vpy)
        self.add_file(f"{site}\\torch\\__init__.py", "# synthetic torch\n")
        entries += [("torch/version.py", vpy.encode()), ("torch/__init__.py", b"# synthetic torch\n")]
        dist = f"{site}\\torch-{full}.dist-info"
        meta = f"Metadata-Version: 2.1\nName: torch\nVersion: {full}\nRequires-Dist: filelock\n\n"
        self.add_file(f"{dist}\\METADATA", meta)
        if record:
            lines = [f"{rel},{_record_hash(data)},{len(data)}" for rel, data in entries]
            lines.append(f"torch-{full}.dist-info/METADATA,{_record_hash(meta.encode())},{len(meta.encode())}")
            lines.append(f"torch-{full}.dist-info/RECORD,,")
            self.add_file(f"{dist}\\RECORD", "\n".join(lines) + "\n")
        return lib

    def add_mkl(self, folder: Optional[str] = None) -> str:
        """The mkl wheel's ``Library\\bin`` (torch 2.3.x needs ``mkl_intel_thread.1.dll``)."""
        bin_dir = folder or f"{self.prefix}\\Library\\bin"
        self.add_dll(f"{bin_dir}\\mkl_intel_thread.1.dll", exports=["mkl_blas_sgemm"],
                     imports={"KERNEL32.dll": ["GetTickCount"]}, linker=(14, 29))
        self.add_dll(f"{bin_dir}\\mkl_core.1.dll", exports=["mkl_serv_malloc"], linker=(14, 29))
        return bin_dir

    def add_companion(self, name: str, version: str, *, torch_pin: Optional[str] = None,
                      needs: Sequence[str] = C10_EXPORTS[:1], site_packages: Optional[str] = None) -> str:
        """A synthetic torchvision/torchaudio whose extension imports ``needs`` from c10.dll."""
        site = site_packages or self.site_packages
        pkg = f"{site}\\{name}"
        major, minor = self.python_version.split(".")[:2]
        ext = (f"{pkg}\\lib\\libtorchaudio.pyd" if name == "torchaudio"
               else f"{pkg}\\_C.pyd")
        self.add_dll(ext, imports={"c10.dll": list(needs), "torch_cpu.dll": [CPU_EXPORTS[0]]},
                     exports=[f"PyInit_{ntpath.basename(ext).split('.')[0]}"])
        self.add_file(f"{pkg}\\__init__.py", f"# synthetic {name}\n")
        meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        if torch_pin:
            meta += f"Requires-Dist: {torch_pin}\n"
        self.add_file(f"{site}\\{name}-{version}.dist-info\\METADATA", meta + "\n")
        del major, minor
        return pkg

    # -- the process ---------------------------------------------------------------------------
    def expand(self, text: str) -> str:
        from .pathenv import expand_vars

        return expand_vars(text, self.environ)

    def process_path(self) -> str:
        return ";".join(self.expand(e) for e in [*self.system_path, *self.user_path])

    def snapshot(self, **overrides: object) -> Snapshot:
        """The snapshot of ``python main.py`` started from the venv in this environment."""
        major, minor = self.python_version.split(".")[:2]
        exe = f"{self.prefix}\\Scripts\\python.exe" if self.prefix != self.base else f"{self.base}\\python.exe"
        py = PythonInfo(
            executable=exe, base_executable=f"{self.base}\\python.exe", version=self.python_version,
            sys_version=f"{self.python_version} (tags/v{self.python_version}) [MSC v.1938 64 bit (AMD64)]",
            prefix=self.prefix, base_prefix=self.base, exec_prefix=self.prefix,
            base_exec_prefix=self.base, is_venv=self.prefix != self.base, bits=64,
            user_site=f"{self.user_home}\\AppData\\Roaming\\Python\\Python{major}{minor}\\site-packages",
            user_site_enabled=self.prefix == self.base,
            userbase=f"{self.user_home}\\AppData\\Roaming\\Python",
            conda=self.conda,
            sys_path=(self.cwd, f"{self.base}\\python{major}{minor}.zip", f"{self.base}\\DLLs",
                      f"{self.base}\\Lib", self.base, self.prefix, self.site_packages),
        )
        from ._data import default_known_dlls

        fields: Dict[str, object] = dict(
            platform="win32", os_release="10.0.22631", machine="x64", app_dir=self.base,
            cwd=self.cwd, process_path=self.process_path(),
            user_path=RegistryValue(";".join(self.user_path), "REG_EXPAND_SZ"),
            system_path=RegistryValue(";".join(self.system_path), "REG_EXPAND_SZ"),
            system32=self.system32, windows_dir="C:\\Windows", system_dir="C:\\Windows\\System",
            safe_dll_search_mode=True, long_paths_enabled=False,
            known_dlls=default_known_dlls(), loaded_modules=tuple(self.loaded), python=py,
            environ=dict(self.environ),
        )
        fields.update(overrides)
        return Snapshot(**fields)  # type: ignore[arg-type]

    def view(self) -> MirrorView:
        return MirrorView(self.root)


# -- assertions for user projects' tests --------------------------------------------------------

from .report import Finding, Report, Severity  # noqa: E402


def _describe_top_finding(report: Report) -> str:
    if not report.findings:
        return "top finding: none"
    top = report.findings[0]
    line = f"top finding: {top.id} ({top.severity.value}): {top.title}"
    if top.fix:
        line += f"\n  fix: {top.fix[0]}"
    return line


def assert_torch_loadable(report: Report, target: str = "torch") -> None:
    """Fail (``AssertionError``) unless ``report`` predicts that ``import torch`` loads.

    The message names what will fail, the real cause (the prediction's *culprit*) and the
    report's top finding, so a failing test says why without re-running the diagnosis. A report
    without a prediction for ``target`` (torch not found, or not a Windows machine) fails too.
    """
    preds = [p for p in report.predictions if p.target == target]
    if not preds:
        notes = "; ".join(report.notes) or "no prediction in the report"
        raise AssertionError(f"{target} is not loadable: no {target} prediction ({notes})\n"
                             f"  {_describe_top_finding(report)}")
    failing = [p for p in preds if not p.ok]
    if not failing:
        return
    lines: List[str] = []
    for p in failing:
        head = f"{p.target} {p.version} will not load"
        if p.winerror is not None:
            head += f": WinError {p.winerror}"
        if p.dll:
            head += f" on {p.dll}"
        lines.append(head)
        lines.append(f"  culprit: {p.culprit or 'unknown'}")
    lines.append("  " + _describe_top_finding(report))
    raise AssertionError("\n".join(lines))


def assert_finding(report: Report, finding_id: str, *,
                   severity: Optional[Union[Severity, str]] = None) -> Finding:
    """Return the finding ``finding_id`` of ``report``; fail (``AssertionError``) if it is
    missing or (when ``severity`` is given) has another severity."""
    for f in report.findings:
        if f.id == finding_id:
            if severity is not None and f.severity.value != getattr(severity, "value", severity):
                raise AssertionError(f"finding {finding_id} has severity {f.severity.value}, "
                                     f"expected {getattr(severity, 'value', severity)}: {f.title}")
            return f
    ids = ", ".join(f.id for f in report.findings) or "none"
    raise AssertionError(f"finding {finding_id} not in the report (findings: {ids})")


__all__ += ["assert_finding", "assert_torch_loadable"]
