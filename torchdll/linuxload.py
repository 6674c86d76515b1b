"""Replay of what ``import torch`` does to the dynamic loader on Linux, against the
:mod:`torchdll.ldso` model. torch is never imported.

torch's ``__init__.py`` (2.x) on Linux, read from the installed file itself:

1. ``ctypes.CDLL(torch/lib/libtorch_global_deps.so, mode=RTLD_GLOBAL)`` (ctypes adds
   ``RTLD_NOW``);
2. if that raises and the message names one of the CUDA libraries of ``_preload_cuda_deps``
   (``libcublas``, ``libcudnn``, ``libnvJitLink``...), each of them is loaded by full path from
   the first ``sys.path`` entry holding ``nvidia/<pkg>/lib/<pattern>`` (``ValueError: ... not
   found in the system path`` when a required one is nowhere), then step 1 is retried;
3. builds that read ``/proc/self/maps`` (2.6+) also preload those libraries after a successful
   step 1 when ``libcudart`` got loaded, ignoring errors (the fix for pytorch#138460);
4. ``from torch._C import *``: Python ``dlopen``\\ s ``torch/_C.cpython-<tag>.so`` with
   ``sys.getdlopenflags()`` (``RTLD_NOW``).

The CUDA library list and the presence of steps 2-3 are read from the installed
``torch/__init__.py``; the built-in list is used when that file cannot be read.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .ldso import RTLD_GLOBAL, RTLD_NOW, DlopenResult, LdContext, LdRule, LdSimulator, PosixView
from .report import Prediction

__all__ = ["LinuxTorch", "LinuxStep", "LinuxReplay", "find_linux_torch", "replay_linux_torch", "how_found",
           "LinuxCompanion", "CompanionReplay", "find_linux_companions", "replay_linux_companions",
           "CUDA_PRELOADS", "nvidia_lib_dirs"]

#: torch 2.13's ``_preload_cuda_deps`` list (folder under ``nvidia/``, file pattern), in order.
CUDA_PRELOADS: Tuple[Tuple[str, str], ...] = (
    ("cublas", "libcublasLt.so.*[0-9]"), ("cublas", "libcublas.so.*[0-9]"),
    ("cudnn", "libcudnn.so.*[0-9]"), ("cuda_nvrtc", "libnvrtc.so.*[0-9]"),
    ("cuda_nvrtc", "libnvrtc-builtins.so.*[0-9]"), ("cuda_runtime", "libcudart.so.*[0-9]"),
    ("cuda_cupti", "libcupti.so.*[0-9]"), ("cufft", "libcufft.so.*[0-9]"),
    ("curand", "libcurand.so.*[0-9]"), ("nvjitlink", "libnvJitLink.so.*[0-9]"),
    ("cusparse", "libcusparse.so.*[0-9]"), ("cusparselt", "libcusparseLt.so.*[0-9]"),
    ("cusolver", "libcusolver.so.*[0-9]"), ("nccl", "libnccl.so.*[0-9]"),
    ("nvshmem", "libnvshmem_host.so.*[0-9]"), ("cufile", "libcufile.so.*[0-9]"),
)
_PRELOAD_RE = re.compile(r'\(\s*"([A-Za-z0-9_]+)"\s*,\s*"(lib[^"]+\.so[^"]*)"\s*\)')


@dataclass(frozen=True)
class LinuxTorch:
    """A torch installation on a Linux file system (paths are POSIX)."""

    site_packages: str
    version: str
    cuda: Optional[str]
    extension: Optional[str]
    global_deps: Optional[str]
    dist_info: Optional[str]
    requires: Tuple[str, ...]
    cuda_preloads: Tuple[Tuple[str, str], ...]
    preload_after_success: bool
    libs: Tuple[str, ...]

    @property
    def torch_dir(self) -> str:
        return posixpath.join(self.site_packages, "torch")

    @property
    def lib_dir(self) -> str:
        return posixpath.join(self.site_packages, "torch", "lib")

    @property
    def nvidia_requirements(self) -> Tuple[str, ...]:
        """``Requires-Dist`` entries on ``nvidia-*`` packages that apply on Linux x86-64."""
        out = []
        for req in self.requires:
            name = re.split(r"[\s<>=!~;\[(@]", req.strip(), maxsplit=1)[0]
            if name.lower().startswith("nvidia-"):
                out.append(req)
        return tuple(out)


_PRELOAD_DICT_RE = re.compile(r"""['"]([A-Za-z0-9_]+)['"]\s*:\s*['"](lib[^'"]+\.so[^'"]*)['"]""")


def _function_text(source: str, name: str, limit: int = 6000) -> str:
    """The text of top-level function ``name`` in ``source`` (up to the next top-level def)."""
    start = source.find(f"def {name}(")
    if start < 0:
        return ""
    end = source.find("\ndef ", start + 4)
    return source[start:end if end > 0 else start + limit][:limit]


def _cuda_preloads(init: str) -> Tuple[Tuple[str, str], ...]:
    """torch's CUDA preload list, read from its ``__init__.py``: a list of tuples inside
    ``_preload_cuda_deps`` (torch 2.2+), or a dict inside ``_load_global_deps`` that calls
    ``_preload_cuda_deps(folder, pattern)`` per entry (torch 2.0-2.1)."""
    rows = _PRELOAD_RE.findall(_function_text(init, "_preload_cuda_deps"))
    if rows:
        return tuple(rows)
    rows = _PRELOAD_DICT_RE.findall(_function_text(init, "_load_global_deps"))
    return tuple(rows)


def _read(view: PosixView, path: str, limit: int = 4 << 20) -> Optional[str]:
    try:
        with open(view.host(path), "rb") as fh:
            return fh.read(limit).decode("utf-8", "replace")
    except (OSError, ValueError):
        return None


def _listdir(view: PosixView, path: str) -> List[str]:
    try:
        return sorted(os.listdir(view.host(path)))
    except (OSError, ValueError):
        return []


def _metadata(view: PosixView, site: str) -> Tuple[Optional[str], Tuple[str, ...]]:
    infos = [n for n in _listdir(view, site) if n.lower().startswith("torch-") and n.endswith(".dist-info")]
    for info in infos:
        text = _read(view, posixpath.join(site, info, "METADATA"))
        if text is None:
            continue
        head = text.split("\n\n", 1)[0]
        requires = tuple(line.split(":", 1)[1].strip() for line in head.splitlines()
                         if line.startswith("Requires-Dist:"))
        return posixpath.join(site, info), requires
    return None, ()


def _extension_for(names: Sequence[str], tag: Optional[str]) -> Optional[str]:
    cands = [n for n in names if n.startswith("_C.") and n.endswith(".so")]
    if tag:
        for n in cands:
            if f".{tag}-" in n or n == f"_C.{tag}.so":
                return n
    abi3 = [n for n in cands if ".abi3." in n]
    if abi3:
        return abi3[0]
    return cands[0] if cands and not tag else None


def find_linux_torch(sys_path: Sequence[str], *, soabi: Optional[str] = None,
                     view: Optional[PosixView] = None) -> List[LinuxTorch]:
    """torch installations on ``sys_path`` (in import order; the first is what ``import torch``
    picks). ``soabi`` is ``sysconfig.get_config_var('SOABI')`` of the interpreter
    (``cpython-311-x86_64-linux-gnu``): it selects ``_C.<soabi>.so``."""
    view = view if view is not None else PosixView()
    out: List[LinuxTorch] = []
    seen = set()
    for entry in sys_path:
        if not entry or not entry.startswith("/"):
            continue
        site = posixpath.normpath(entry)
        if site in seen:
            continue
        seen.add(site)
        torch_dir = posixpath.join(site, "torch")
        init = _read(view, posixpath.join(torch_dir, "__init__.py"))
        if init is None:
            continue
        vtext = _read(view, posixpath.join(torch_dir, "version.py")) or ""
        m = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", vtext, re.M)
        c = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", vtext, re.M)
        names = _listdir(view, torch_dir)
        ext = _extension_for(names, soabi)
        libs = tuple(n for n in _listdir(view, posixpath.join(torch_dir, "lib")) if ".so" in n)
        dist_info, requires = _metadata(view, site)
        preloads = _cuda_preloads(init)
        out.append(LinuxTorch(
            site_packages=site, version=m.group(1) if m else "?", cuda=c.group(1) if c else None,
            extension=posixpath.join(torch_dir, ext) if ext else None,
            global_deps=posixpath.join(torch_dir, "lib", "libtorch_global_deps.so")
            if "libtorch_global_deps.so" in libs else None,
            dist_info=dist_info, requires=requires,
            cuda_preloads=preloads or (CUDA_PRELOADS if "_preload_cuda_deps" in init else ()),
            preload_after_success="/proc/self/maps" in init, libs=libs))
    return out


def nvidia_lib_dirs(sys_path: Sequence[str], view: Optional[PosixView] = None) -> List[str]:
    """``site-packages/nvidia/*/lib`` folders (pip's CUDA libraries), in sys.path order."""
    view = view if view is not None else PosixView()
    out: List[str] = []
    for entry in sys_path:
        if not entry.startswith("/"):
            continue
        base = posixpath.join(posixpath.normpath(entry), "nvidia")
        for pkg in _listdir(view, base):
            d = posixpath.join(base, pkg, "lib")
            if os.path.isdir(view.host(d)) and d not in out:
                out.append(d)
    return out


def _find_cuda_lib(view: PosixView, sys_path: Sequence[str], folder: str, pattern: str,
                   cuda: Optional[str]) -> Optional[str]:
    """torch's ``_get_cuda_dep_paths`` over ``sys.path`` (glob order is directory order; sorted
    here)."""
    for entry in sys_path:
        if not entry.startswith("/"):
            continue
        dirs = [posixpath.join(entry, "nvidia", folder, "lib")]
        if cuda:
            dirs.append(posixpath.join(entry, "nvidia", f"cu{cuda.split('.')[0]}", "lib"))
        dirs.append(posixpath.join(entry, folder, "lib"))
        hits: List[str] = []
        for d in dirs:
            hits.extend(posixpath.join(d, n) for n in _listdir(view, d) if fnmatch.fnmatchcase(n, pattern))
        if hits:
            return hits[0]
    return None


@dataclass(frozen=True)
class LinuxStep:
    """One call torch's loader makes: what, and the model's result."""

    what: str
    call: DlopenResult


@dataclass(frozen=True)
class LinuxReplay:
    torch: LinuxTorch
    steps: Tuple[LinuxStep, ...]
    ok: bool
    error: Optional[str]  # the Python exception text the user would see
    failing: Optional[DlopenResult]
    prediction: Prediction
    simulator: LdSimulator


def _python_error(kind: str, text: str) -> str:
    return f"{kind}: {text}"


def replay_linux_torch(ctx: LdContext, torch: LinuxTorch, sys_path: Sequence[str],
                       view: Optional[PosixView] = None) -> LinuxReplay:
    """Replay ``import torch`` for ``torch`` in a process described by ``ctx``."""
    view = view if view is not None else PosixView(ctx.root)
    sim = LdSimulator(ctx, view)
    steps: List[LinuxStep] = []
    error: Optional[str] = None
    failing: Optional[DlopenResult] = None

    def preload_all(strict: bool) -> Optional[str]:
        for folder, pattern in torch.cuda_preloads:
            path = _find_cuda_lib(view, sys_path, folder, pattern, torch.cuda)
            if path is None:
                if strict:
                    return _python_error("ValueError", f"{pattern} not found in the system path {list(sys_path)}")
                return "missing"
            r = sim.dlopen(path, RTLD_NOW)
            steps.append(LinuxStep(f"preload {posixpath.basename(path)} (torch._preload_cuda_deps)", r))
            if not r.ok:
                return _python_error("OSError", r.error or "")
        return None

    if torch.global_deps is not None:
        r = sim.dlopen(torch.global_deps, RTLD_NOW | RTLD_GLOBAL)
        steps.append(LinuxStep("ctypes.CDLL(libtorch_global_deps.so, RTLD_GLOBAL)", r))
        if not r.ok:
            names = [p.split(".", 1)[0] for _, p in torch.cuda_preloads]
            if torch.cuda_preloads and any(n in (r.error or "") for n in names):
                err = preload_all(strict=True)
                if err is not None:
                    error = err
                    failing = steps[-1].call if not steps[-1].call.ok else r
                else:
                    r2 = sim.dlopen(torch.global_deps, RTLD_NOW | RTLD_GLOBAL)
                    steps.append(LinuxStep("ctypes.CDLL(libtorch_global_deps.so, RTLD_GLOBAL) again", r2))
                    if not r2.ok:
                        error, failing = _python_error("OSError", r2.error or ""), r2
            else:
                error, failing = _python_error("OSError", r.error or ""), r
        elif torch.preload_after_success and any(
                posixpath.basename(p).startswith("libcudart.so") for p in sim.loaded_paths()):
            preload_all(strict=False)  # errors are swallowed by torch here
    if error is None:
        if torch.extension is None:
            error = "ImportError: torch/_C extension module for this interpreter not found"
        else:
            r = sim.dlopen(torch.extension, RTLD_NOW)
            steps.append(LinuxStep("from torch._C import * (dlopen RTLD_NOW)", r))
            if not r.ok:
                error, failing = _python_error("ImportError", r.error or ""), r
    prediction = _prediction(torch, steps, error, failing)
    return LinuxReplay(torch, tuple(steps), error is None, error, failing, prediction, sim)


def how_found(steps: Sequence[LinuxStep]) -> Dict[str, LdRule]:
    """Path -> the search step that mapped it, over every call of a replay (objects loaded
    before the replay are absent: they were already in the process)."""
    out: Dict[str, LdRule] = {}
    for step in steps:
        for load in step.call.loaded:
            out.setdefault(load.path, load.rule)
    return out


def _culprit(failing: DlopenResult, steps: Sequence[LinuxStep] = ()) -> Tuple[Optional[str], Optional[str], Optional[str], Optional[str]]:
    """(one-line account, culprit path, importer, rule) of a failed dlopen."""
    if failing.kind == "not-found" and failing.failed is not None:
        res = failing.failed
        who = res.requester or "dlopen"
        return (f"{res.name} (needed by {posixpath.basename(who)}) is in none of the searched folders",
                None, res.requester, None)
    rules = how_found(list(steps) + [LinuxStep("", failing)])
    if failing.kind == "version" and failing.missing_version is not None:
        mv = failing.missing_version
        rule = rules.get(mv.provider)
        how = f" (found by {rule.value})" if rule is not None else ""
        return (f"{mv.provider}{how} lacks version {mv.version} needed by {posixpath.basename(mv.required_by)}",
                mv.provider, mv.required_by, rule.value if rule is not None else None)
    if failing.kind == "symbol" and failing.missing_symbol is not None:
        ms = failing.missing_symbol
        provider = ms.provider
        rule = rules.get(provider) if provider else None
        ver = f"@{ms.version}" if ms.version else ""
        where = f" from {provider}" + (f" (found by {rule.value})" if rule else "") if provider else ""
        return (f"{posixpath.basename(ms.required_by)} needs {ms.symbol}{ver}, missing{where}",
                provider, ms.required_by, rule.value if rule is not None else None)
    return (failing.error, None, None, None)


def _prediction(torch: LinuxTorch, steps: Sequence[LinuxStep], error: Optional[str],
                failing: Optional[DlopenResult]) -> Prediction:
    texts = tuple(f"{s.what}: {'ok' if s.call.ok else s.call.error}" for s in steps)
    if error is None:
        return Prediction("torch", torch.version, "ok", steps=texts)
    culprit = culprit_path = importer = rule = None
    dll = None
    if failing is not None:
        culprit, culprit_path, importer, rule = _culprit(failing, steps)
        dll = failing.target
    return Prediction("torch", torch.version, "fails", None, dll, error, culprit or error, culprit_path,
                      importer, rule, texts)


# --------------------------------------------------------------------------------------------
# torchvision / torchaudio: their native extensions, loaded after torch
# --------------------------------------------------------------------------------------------

#: extension modules each companion loads with ``torch.ops.load_library`` (``ctypes.CDLL``,
#: RTLD_NOW | RTLD_LOCAL) or imports, relative to the package folder, in load order.
COMPANION_EXTENSIONS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("torchvision", ("_C.so",)),
    ("torchaudio", ("lib/libtorchaudio.so", "lib/_torchaudio.so")),
)


@dataclass(frozen=True)
class LinuxCompanion:
    name: str
    version: str
    package_dir: str
    extensions: Tuple[str, ...]
    torch_pin: Optional[str]  # the Requires-Dist on torch (``torch==2.5.1``), when there is one


@dataclass(frozen=True)
class CompanionReplay:
    companion: LinuxCompanion
    steps: Tuple[LinuxStep, ...]
    ok: bool
    error: Optional[str]
    failing: Optional[DlopenResult]
    prediction: Prediction


def find_linux_companions(sys_path: Sequence[str], view: Optional[PosixView] = None) -> List[LinuxCompanion]:
    """torchvision and torchaudio on ``sys_path`` (the first of each), with their extensions."""
    view = view if view is not None else PosixView()
    out: List[LinuxCompanion] = []
    for name, rels in COMPANION_EXTENSIONS:
        for entry in sys_path:
            if not entry.startswith("/"):
                continue
            site = posixpath.normpath(entry)
            pkg = posixpath.join(site, name)
            if _read(view, posixpath.join(pkg, "__init__.py"), 1) is None:
                continue
            vtext = _read(view, posixpath.join(pkg, "version.py")) or ""
            m = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", vtext, re.M)
            exts = tuple(posixpath.join(pkg, r) for r in rels if os.path.isfile(view.host(posixpath.join(pkg, r))))
            pin = None
            for info in _listdir(view, site):
                if info.lower().startswith(name + "-") and info.endswith(".dist-info"):
                    head = (_read(view, posixpath.join(site, info, "METADATA")) or "").split("\n\n", 1)[0]
                    for line in head.splitlines():
                        req = line.partition(":")[2].strip() if line.startswith("Requires-Dist:") else ""
                        if re.match(r"torch\s*(==|>=|<=|~=|<|>|!=)", req) and "extra" not in req:
                            pin = req.split(";")[0].replace(" ", "")
                    break
            out.append(LinuxCompanion(name, m.group(1) if m else "?", pkg, exts, pin))
            break
    return out


def replay_linux_companions(replay: LinuxReplay, companions: Sequence[LinuxCompanion]) -> List[CompanionReplay]:
    """After a successful torch replay: load each companion's extensions into the same process
    (``RTLD_NOW``, as ``torch.ops.load_library`` does)."""
    out: List[CompanionReplay] = []
    if not replay.ok:
        return out
    sim = replay.simulator
    for comp in companions:
        steps: List[LinuxStep] = []
        failing: Optional[DlopenResult] = None
        for ext in comp.extensions:
            r = sim.dlopen(ext, RTLD_NOW)
            steps.append(LinuxStep(f"{comp.name}: load {posixpath.basename(ext)} (RTLD_NOW)", r))
            if not r.ok:
                failing = r
                break
        error = _python_error("OSError", failing.error or "") if failing is not None else None
        texts = tuple(f"{s.what}: {'ok' if s.call.ok else s.call.error}" for s in steps)
        if failing is None:
            pred = Prediction(comp.name, comp.version, "ok", steps=texts)
        else:
            culprit, culprit_path, importer, rule = _culprit(failing, list(replay.steps) + steps)
            pred = Prediction(comp.name, comp.version, "fails", None, failing.target, error, culprit or error,
                              culprit_path, importer, rule, texts)
        out.append(CompanionReplay(comp, tuple(steps), failing is None, error, failing, pred))
    return out
