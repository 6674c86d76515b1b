"""Linux (ld.so) and macOS (dyld) checks: causes 37-39 of the research notes.

* ``linux-ld-library-path-shadowing``: an ``LD_LIBRARY_PATH`` folder holds libraries with the
  names of torch's own or pip's ``nvidia-*`` libraries, and the replay binds them (or would,
  but for torch's preloading);
* ``linux-missing-cuda-libs``: a CUDA build without its ``nvidia-*`` libraries;
* ``linux-glibcxx-too-old``: the ``libstdc++.so.6`` found first lacks a ``GLIBCXX_*`` version;
* ``linux-import-fails``: any other failure the replay predicts;
* ``linux-ld-library-path-changed``: ``os.environ['LD_LIBRARY_PATH']`` differs from what the
  loader read at start;
* ``macos-dyld-variables``: ``DYLD_*`` variables shadowing torch's dylibs (macOS only).

A check takes a :class:`~torchdll.linuxdiag.LinuxCheckContext` and yields findings.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
from typing import Callable, Dict, Iterator, List, Optional, Set, Tuple, TypeVar

from ..ldso import DlopenResult, LdRule, split_search_path
from ..linuxload import LinuxReplay, how_found, nvidia_lib_dirs
from ..report import Confidence, Evidence, Finding, Severity

__all__ = ["LINUX_CHECKS", "check_ld_library_path", "check_missing_cuda", "check_libstdcxx",
           "check_prediction", "check_companions", "check_environ_changed", "check_dyld", "shadowing_entries",
           "CUDA_LIB_RE"]

_T = TypeVar("_T")

LINUX_CHECKS: Tuple[Tuple[str, str], ...] = (
    ("torchdll.checks.linux", "check_ld_library_path"),
    ("torchdll.checks.linux", "check_missing_cuda"),
    ("torchdll.checks.linux", "check_libstdcxx"),
    ("torchdll.checks.linux", "check_prediction"),
    ("torchdll.checks.linux", "check_companions"),
    ("torchdll.checks.linux", "check_environ_changed"),
    ("torchdll.checks.linux", "check_dyld"),
)

#: sonames of the CUDA libraries torch (and pip's nvidia-* packages) ship or load.
CUDA_LIB_RE = re.compile(
    r"^lib(cuda|cudart|cublas|cublasLt|cudnn[a-z_]*|cufft|cufftw|curand|cusolver|cusolverMg|cusparse|"
    r"cusparseLt|cupti|nvrtc|nvrtc-builtins|nvJitLink|nvToolsExt|nccl|nvshmem_host|cufile|nvperf_host)"
    r"\.so(\.|$)")


def _lib_names(folder: str) -> List[str]:
    try:
        return sorted(n for n in os.listdir(folder) if ".so" in n or n.endswith(".dylib"))
    except (OSError, ValueError):
        return []


def intended_copies(lctx: "object") -> Dict[str, str]:
    """Library name -> the copy torch means to use (``torch/lib`` and pip's ``nvidia/*/lib``)."""
    out: Dict[str, str] = {}
    torches = getattr(lctx, "torches")
    view = getattr(lctx, "view")
    if not torches:
        return out
    torch = torches[0]
    for name in torch.libs:
        out.setdefault(name, posixpath.join(torch.lib_dir, name))
    for d in nvidia_lib_dirs(getattr(lctx, "sys_path"), view):
        for name in _lib_names(view.host(d)):
            out.setdefault(name, posixpath.join(d, name))
    return out


def shadowing_entries(ld_library_path: Tuple[str, ...], intended: Dict[str, str],
                      cwd: str = "/", host: Callable[[str], str] = lambda p: p) -> List[Tuple[str, Tuple[str, ...]]]:
    """``(entry, names)`` for each ``LD_LIBRARY_PATH`` entry holding libraries named like one of
    ``intended`` (and not being that folder itself). Reads folder listings only; ``host`` maps
    a path of the analysed machine to this one (:meth:`torchdll.ldso.PosixView.host`)."""
    out: List[Tuple[str, Tuple[str, ...]]] = []
    own = {posixpath.dirname(p) for p in intended.values()}
    for entry in ld_library_path:
        folder = entry or "."
        folder = folder if folder.startswith("/") else posixpath.join(cwd, folder)
        if posixpath.normpath(folder) in own:
            continue
        hits = tuple(n for n in _lib_names(host(folder)) if n in intended)
        if hits:
            out.append((entry, hits))
    return out


def _all_edges(replay: LinuxReplay) -> List[Tuple[str, str, str, LdRule]]:
    out: List[Tuple[str, str, str, LdRule]] = []
    for step in replay.steps:
        out.extend(step.call.edges)
    return out


def _sh(value: str) -> str:
    return shlex.quote(value)


def _run_fix(entries: List[str], ld_library_path: Tuple[str, ...]) -> Tuple[str, ...]:
    keep = [e for e in ld_library_path if e not in entries]
    return (
        "python -m torchdll run -- python main.py   (starts the command without "
        + ", ".join(entries) + " on LD_LIBRARY_PATH)",
        ("unset LD_LIBRARY_PATH" if not keep else f"export LD_LIBRARY_PATH={_sh(':'.join(keep))}")
        + "   (before starting Python: ld.so reads it once, at start)",
    )


def _memo(lctx: "object", key: str, compute: Callable[[], _T]) -> _T:
    """Compute a check's result once per context (check_prediction asks the others again)."""
    cache: Optional[Dict[str, object]] = getattr(lctx, "_cache", None)
    if cache is None:
        return compute()
    if key not in cache:
        cache[key] = compute()
    return cache[key]  # type: ignore[return-value]


def check_ld_library_path(lctx: "object") -> Iterator[Finding]:
    yield from _memo(lctx, "ld-library-path", lambda: list(_ld_library_path(lctx)))


def _ld_library_path(lctx: "object") -> Iterator[Finding]:
    replay: Optional[LinuxReplay] = getattr(lctx, "primary")
    ld = getattr(lctx, "ld")
    if replay is None or not ld.ld_library_path:
        return
    intended = intended_copies(lctx)
    bound: List[Tuple[str, str, str, str]] = []  # (name, path, intended, requester)
    for requester, name, path, rule in _all_edges(replay):
        base = posixpath.basename(name)
        if rule is LdRule.LD_LIBRARY_PATH and base in intended and path != intended[base]:
            bound.append((base, path, intended[base], requester))
    static = shadowing_entries(ld.ld_library_path, intended, ld.cwd, getattr(lctx, "view").host)
    if not bound and not static:
        return
    failing = replay.failing
    culprit_dirs: Set[str] = {posixpath.dirname(p) for _, p, _, _ in bound}
    broke = certain = False
    if failing is not None:
        ms, mv = failing.missing_symbol, failing.missing_version
        provider = (ms.provider if ms is not None else None) or (mv.provider if mv is not None else None)
        required_by = (ms.required_by if ms is not None else None) or (mv.required_by if mv is not None else None)
        broke = any(p is not None and posixpath.dirname(p) in culprit_dirs for p in (provider, required_by))
        certain = broke
        if not broke and failing.kind in ("symbol", "version"):
            # an unversioned symbol names no provider: a shadowing copy mapped by the failing
            # dlopen is the likely one that lacks it
            mapped = {load.path for load in failing.loaded}
            broke = any(path in mapped for _, path, _, _ in bound)
    entries = sorted({e for e, _ in static} | {e for e in ld.ld_library_path
                                               if posixpath.normpath(e or ".") in culprit_dirs})
    ev: List[Evidence] = [Evidence("LD_LIBRARY_PATH", ":".join(ld.ld_library_path))]
    for name, path, want, requester in bound[:6]:
        ev.append(Evidence("bound instead", f"{path} (torch expects {want}; needed by "
                                            f"{posixpath.basename(requester) or 'dlopen'})"))
    for entry, names in static[:6]:
        ev.append(Evidence("shadowing entry", f"{entry}: {', '.join(names[:6])}"
                                              + (" ..." if len(names) > 6 else "")))
    if broke and failing is not None:
        ev.append(Evidence("predicted error", failing.error or ""))
    all_names = sorted({b[0] for b in bound} | {n for _, ns in static for n in ns})
    if broke:
        severity, conf = Severity.ERROR, Confidence.CERTAIN if certain else Confidence.LIKELY
        title = (f"LD_LIBRARY_PATH makes torch load {', '.join(all_names[:3])} from "
                 f"{', '.join(sorted(culprit_dirs))[:120]}, which breaks import torch")
    elif bound:
        severity, conf = Severity.WARNING, Confidence.LIKELY
        title = (f"LD_LIBRARY_PATH makes torch load {', '.join(all_names[:3])} from another folder "
                 "(it links today; a version mismatch breaks it)")
    else:
        severity, conf = Severity.WARNING, Confidence.POSSIBLE
        title = (f"LD_LIBRARY_PATH holds other copies of torch's libraries ({', '.join(all_names[:3])}"
                 f"{' ...' if len(all_names) > 3 else ''}); torch's preloading avoids them today")
    want_dirs = sorted({posixpath.dirname(intended[n]) for n in all_names if n in intended})
    fix = _run_fix(entries, ld.ld_library_path)
    if want_dirs:
        fix += ("or put pip's copies first: export LD_LIBRARY_PATH="
                + _sh(":".join(want_dirs)) + ":$LD_LIBRARY_PATH",)
    yield Finding(
        "linux-ld-library-path-shadowing", severity, title,
        detail=("ld.so searches LD_LIBRARY_PATH before a library's RUNPATH ($ORIGIN), so a CUDA "
                "toolkit or another torch listed there wins over the copies torch ships or pip "
                "installed next to it."),
        confidence=conf, evidence=tuple(ev), fix=fix,
        commands={"sh": ("python -m torchdll run -- python main.py",)},
        references=("pytorch/pytorch#138460", "pytorch/pytorch#111469"), explains="torch" if broke else None)


def _failing(lctx: "object") -> Tuple[Optional[LinuxReplay], Optional[DlopenResult]]:
    replay: Optional[LinuxReplay] = getattr(lctx, "primary")
    if replay is None or replay.ok:
        return replay, None
    return replay, replay.failing


def _missing_cuda(lctx: "object") -> Optional[Finding]:
    return _memo(lctx, "missing-cuda", lambda: _compute_missing_cuda(lctx))


def _compute_missing_cuda(lctx: "object") -> Optional[Finding]:
    replay, failing = _failing(lctx)
    if replay is None or replay.ok:
        return None
    name = None
    requester = None
    preload_missing = None
    if replay.error and replay.error.startswith("ValueError:"):
        m = re.match(r"ValueError: (\S+) not found in the system path", replay.error)
        preload_missing = m.group(1) if m else None
    if failing is not None and failing.kind == "not-found" and failing.failed is not None:
        name = posixpath.basename(failing.failed.name)
        requester = failing.failed.requester
    elif preload_missing is not None:
        name = preload_missing
    if name is None or not (CUDA_LIB_RE.match(name) or name.startswith("libcu") or name.startswith("libnv")):
        return None
    torch = replay.torch
    site = torch.site_packages
    host = getattr(lctx, "view").host
    installed = {n.lower().split("-")[0].replace("_", "-") for n in _dir(host(site)) if n.endswith(".dist-info")}
    reqs = [r for r in torch.nvidia_requirements if "linux" in r.lower() or ";" not in r]
    missing = [r for r in reqs if re.split(r"[\s<>=!~;\[(@]", r, maxsplit=1)[0].lower() not in installed]
    ev = [Evidence("missing", name), Evidence("needed by", requester or "torch's loader"),
          Evidence("torch", f"{torch.version} (CUDA {torch.cuda or '?'})"),
          Evidence("predicted error", replay.error or "")]
    if preload_missing is not None and preload_missing != name:
        ev.append(Evidence("torch's preload", f"{preload_missing} is in no nvidia/*/lib folder on sys.path"))
    if missing:
        ev.append(Evidence("not installed", ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")))
    pins = " ".join(shlex.quote(re.split(r";", r)[0].replace(" ", "")) for r in missing[:12])
    fix = (f"pip install {pins}" if missing else
           f"pip install --force-reinstall torch=={torch.version.split('+')[0]}",
           "or, without an NVIDIA GPU: pip install torch --index-url https://download.pytorch.org/whl/cpu")
    return Finding(
        "linux-missing-cuda-libs", Severity.ERROR,
        f"{name} is not installed: torch {torch.version} is a CUDA build and pip's nvidia-* "
        "libraries are missing", detail="", confidence=Confidence.CERTAIN, evidence=tuple(ev), fix=fix,
        references=("pytorch/pytorch#100974",), explains="torch")


def _dir(path: str) -> List[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _vkey(v: str) -> Tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v))


def _libstdcxx(lctx: "object") -> Optional[Finding]:
    return _memo(lctx, "libstdcxx", lambda: _compute_libstdcxx(lctx))


def _compute_libstdcxx(lctx: "object") -> Optional[Finding]:
    replay, failing = _failing(lctx)
    if failing is None or failing.kind != "version" or failing.missing_version is None:
        return None
    mv = failing.missing_version
    if not mv.version.startswith(("GLIBCXX_", "CXXABI_")):
        return None
    assert replay is not None
    rules = how_found(list(replay.steps))
    rule = rules.get(mv.provider)
    sim = replay.simulator
    if rule is None and mv.provider in sim.preloaded:
        rule = LdRule.PRELOAD
    facts = sim._try_facts(mv.provider)
    family = mv.version.split("_")[0] + "_"
    has = sorted((v for v in (facts.version_defs if facts else ()) if v.startswith(family)), key=_vkey)
    ev = [Evidence("found first", mv.provider), Evidence("how", rule.value if rule is not None
                                                          else "already loaded in this process"),
          Evidence("newest it has", has[-1] if has else "none"),
          Evidence("needed", f"{mv.version} by {mv.required_by}")]
    better = _better_libstdcxx(lctx, mv.version, mv.provider)
    if better:
        ev.append(Evidence("has it", better))
    fix: List[str] = []
    ld = getattr(lctx, "ld")
    if rule is LdRule.LD_LIBRARY_PATH:
        entry = posixpath.dirname(mv.provider)
        fix.extend(_run_fix([e for e in ld.ld_library_path if posixpath.normpath(e or ".") == entry] or [entry],
                            ld.ld_library_path))
    elif rule is LdRule.PRELOAD:
        fix.append(f"Remove {mv.provider} from LD_PRELOAD (or /etc/ld.so.preload): it is loaded "
                   "before anything else, for every program")
        fix.append("python -m torchdll run -- python main.py   (starts the command without it)")
    elif rule is LdRule.RPATH:
        fix.append(f"The interpreter's RPATH points at {posixpath.dirname(mv.provider)} (a conda "
                   "environment?): conda install -c conda-forge 'libstdcxx-ng>=12'")
    elif rule is None or rule is LdRule.LOADED:
        fix.append("A package imported before torch loaded this copy: import torch first "
                   "(pytorch/pytorch#115138)")
    else:
        fix.append(f"Update the system's C++ runtime (libstdc++6) or install a newer one next to "
                   f"Python; {mv.provider} is too old for torch {replay.torch.version}")
    return Finding(
        "linux-glibcxx-too-old", Severity.ERROR,
        f"{mv.provider} is too old: {posixpath.basename(mv.required_by)} needs {mv.version}",
        detail=f"ld.so stops with: {failing.error}", confidence=Confidence.CERTAIN, evidence=tuple(ev),
        fix=tuple(fix), references=("pytorch/pytorch#87279", "pytorch/pytorch#115138"), explains="torch")


def _better_libstdcxx(lctx: "object", version: str, bad: str) -> Optional[str]:
    ld = getattr(lctx, "ld")
    cands: List[str] = []
    lookup = getattr(ld.cache, "lookup", None)
    if lookup is not None:
        hit = lookup("libstdc++.so.6", elf_class=ld.elf_class, machine=ld.machine, hwcaps_subdirs=ld.hwcaps_subdirs)
        if hit:
            cands.append(hit)
    cands.extend(posixpath.join(d, "libstdc++.so.6") for d in ld.system_dirs)
    from .._elf import read_elf_facts

    host = getattr(lctx, "view").host
    for c in cands:
        if c == bad or not os.path.isfile(host(c)):
            continue
        try:
            if version in read_elf_facts(host(c), symbols=False).version_defs:
                return c
        except Exception:  # noqa: BLE001
            continue
    return None


def check_missing_cuda(lctx: "object") -> Iterator[Finding]:
    f = _missing_cuda(lctx)
    if f is not None:
        yield f


def check_libstdcxx(lctx: "object") -> Iterator[Finding]:
    f = _libstdcxx(lctx)
    if f is not None:
        yield f


def check_prediction(lctx: "object") -> Iterator[Finding]:
    """Any failure the replay predicts that no specific check explains."""
    replay, failing = _failing(lctx)
    if replay is None or replay.ok:
        return
    if _missing_cuda(lctx) is not None or _libstdcxx(lctx) is not None:
        return
    for f in check_ld_library_path(lctx):
        if f.explains:
            return
    pred = replay.prediction
    ev = [Evidence("predicted error", replay.error or "")]
    if pred.culprit and pred.culprit != replay.error:
        ev.append(Evidence("cause", pred.culprit))
    if failing is not None and failing.failed is not None and failing.failed.candidates:
        for c in failing.failed.candidates[:8]:
            ev.append(Evidence(f"tried ({c.rule.value})", f"{c.path}: {c.outcome.value}"))
    if pred.rule:
        ev.append(Evidence("found by", pred.rule))
    yield Finding(
        "linux-import-fails", Severity.ERROR, f"import torch will fail: {replay.error}",
        detail="", confidence=Confidence.LIKELY, evidence=tuple(ev),
        fix=(f"Reinstall torch in this environment: pip install --force-reinstall "
             f"torch=={replay.torch.version.split('+')[0]}",
             "See what the loader does: LD_DEBUG=libs python -c 'import torch' 2>&1 | tail -40"),
        explains="torch")


def check_companions(lctx: "object") -> Iterator[Finding]:
    """torchvision/torchaudio whose native extension the loader refuses after torch loaded: built
    for another torch (symbols of libtorch/libc10 missing), or for another CUDA build."""
    from .companions import companion_for, pip_install_args

    replay: Optional[LinuxReplay] = getattr(lctx, "primary")
    for comp in getattr(lctx, "companions", ()):
        if comp.ok or replay is None:
            continue
        c = comp.companion
        torch_version = replay.torch.version
        ev = [Evidence(c.name, f"{c.version} in {posixpath.dirname(c.package_dir)}"),
              Evidence("torch", torch_version),
              Evidence("predicted error", comp.error or "")]
        if c.torch_pin:
            ev.append(Evidence("its Requires-Dist", c.torch_pin))
        want = companion_for(c.name, torch_version)
        fix: List[str] = []
        if want:
            fix.append("pip install " + " ".join(pip_install_args(c.name, want, torch_version)))
        fix.append(f"or install torch and {c.name} together from one index: pip install --force-reinstall "
                   f"torch=={torch_version.split('+')[0]} {c.name}")
        yield Finding(
            "linux-companion-mismatch", Severity.ERROR,
            f"{c.name} {c.version} cannot load its native code with torch {torch_version}: "
            + (comp.prediction.culprit or comp.error or ""),
            detail=(f"{c.name} loads {', '.join(posixpath.basename(e) for e in c.extensions)} after torch; "
                    "ld.so looks up the C++ symbols it needs in torch's libraries and fails when they "
                    "come from another torch release or build."),
            confidence=Confidence.CERTAIN, evidence=tuple(ev), fix=tuple(fix), explains=c.name)


def check_environ_changed(lctx: "object") -> Iterator[Finding]:
    start = getattr(lctx, "environ").get("LD_LIBRARY_PATH")
    now = getattr(lctx, "current_environ").get("LD_LIBRARY_PATH")
    if start == now:
        return
    yield Finding(
        "linux-ld-library-path-changed", Severity.INFO,
        "LD_LIBRARY_PATH was changed inside this process: ld.so still uses the value it started with",
        detail="", confidence=Confidence.CERTAIN,
        evidence=(Evidence("at start", start if start is not None else "(unset)"),
                  Evidence("now", now if now is not None else "(unset)")),
        fix=("Set it before starting Python, or start through: python -m torchdll run -- python main.py",))


def check_dyld(lctx: "object") -> Iterator[Finding]:
    if getattr(lctx, "platform", "linux") != "darwin":
        return
    try:
        from ..dyld import dyld_environment_findings
    except ImportError:
        return
    torches = getattr(lctx, "torches")
    lib_dir = torches[0].lib_dir if torches else None
    issues = dyld_environment_findings(getattr(lctx, "environ"), lib_dir, _dir)
    for issue in issues:
        kind = getattr(issue, "kind", "")
        if kind == "set-but-harmless":
            continue
        shadowed = tuple(getattr(issue, "shadowed", ()) or ())
        yield Finding(
            "macos-dyld-variables", Severity.WARNING if kind != "shadows-torch" else Severity.ERROR,
            f"{issue.variable} entry {issue.entry} "
            + (f"shadows torch's {', '.join(shadowed[:4])}" if shadowed else "injects a library into every process"),
            confidence=Confidence.LIKELY,
            evidence=(Evidence(issue.variable, getattr(lctx, "environ").get(issue.variable, "")),),
            fix=(f"Remove {issue.entry} from {issue.variable} before starting Python, or start through: "
                 "python -m torchdll run -- python main.py",))


__all__ += ["intended_copies", "split_search_path"]
