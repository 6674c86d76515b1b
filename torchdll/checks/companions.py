"""Packages that link against torch's DLLs, the Python torch was built for, and file integrity.

Four findings (``data/findings/companions.json``):

* ``torchvision-torchaudio-mismatch``: a companion built for another torch. Its
  ``Requires-Dist: torch==X`` pin alone is a *warning* (torchvision 0.17.2, pinned to 2.2.2,
  still loads on torch 2.3.1); the import/export cross-check decides the *error* (torchvision
  0.19.0 on torch 2.3.1: ``_C.pyd`` imports c10/torch_cpu symbols torch 2.3.1 lacks -> 127). The
  symbols come from the replay of the companion's extension loads
  (:class:`~torchdll.torchload.ExtensionReplay`) or, when that replay never ran (``import
  torch`` fails first), from a direct comparison of import and export tables. The fix names the
  release pair from ``data/companions.json`` and the index torch came from.
* ``third-party-extension-abi``: the same cross-check for any other ``.pyd`` in site-packages
  that imports from ``c10.dll``/``torch_cpu.dll``/``torch_python.dll`` (a bounded walk: top-level
  modules and two folder levels below each top-level package).
* ``python-abi-mismatch``: ``torch_python.dll`` against the running interpreter (its
  ``python3XY.dll`` name, then every C-API name it imports against that DLL's exports), and
  ``torch\\_C`` built for another interpreter tag.
* ``partial-or-mixed-install``: RECORD of torch and its companions (binary files: ``*.dll``,
  ``*.pyd``) against the files (size always; sha256 below 64 MB, or for all files with
  ``verify_hashes=True`` / ``TORCHDLL_VERIFY_HASHES=1``), pip's ``~orch*`` leftovers, several
  dist-info folders of one package, DLLs in ``torch\\lib`` that RECORD does not list.
"""

from __future__ import annotations

import base64
import hashlib
import ntpath
import os
import re
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from packaging.version import Version

from ..closure import CallResult
from ..installs import CompanionInstall, TorchInstall, dist_metadata, read_text
from ..report import Confidence, Evidence, Finding, Prediction, Severity
from . import CheckContext

__all__ = [
    "HASH_LIMIT",
    "CompanionRelease",
    "LinkProblem",
    "check_companion_mismatch",
    "check_companions",
    "check_extension_abi",
    "check_partial_install",
    "check_python_abi",
    "companion_for",
    "companion_releases",
    "expected_torch",
    "pip_install_args",
]

#: RECORD sha256 is checked below this size unless hashes are verified explicitly.
HASH_LIMIT = 64 << 20
_TRUE = ("1", "true", "yes", "on")

#: DLL names of torch builds (CPU, CUDA, ROCm, XPU) an extension may link against.
_TORCH_FAMILY = frozenset({
    "c10.dll", "torch_cpu.dll", "torch_python.dll", "torch.dll", "torch_global_deps.dll", "shm.dll",
    "c10_cuda.dll", "torch_cuda.dll", "torch_cuda_cpp.dll", "torch_cuda_cu.dll", "caffe2_nvrtc.dll",
    "c10_hip.dll", "torch_hip.dll", "c10_xpu.dll", "torch_xpu.dll",
})
#: what a third-party extension must import to be considered a torch C++ extension
_EXTENSION_MARKERS = frozenset({"c10.dll", "torch_cpu.dll", "torch_python.dll"})
_PY_DLL = re.compile(r"^python(\d)(\d+)(t?)(_d)?\.dll$", re.IGNORECASE)

_REF_MISMATCH = ("shared/research/causes.md section 2.20", "https://github.com/pytorch/vision#installation",
                 "https://docs.pytorch.org/audio/stable/installation.html#compatibility-matrix")
_REF_EXT = ("shared/research/causes.md section 2.21",)
_REF_PY = ("shared/research/causes.md section 2.22",)
_REF_PARTIAL = ("shared/research/causes.md section 2.18", "shared/research/causes.md section 2.19")


def check_companions(ctx: CheckContext) -> Iterable[Finding]:
    """Every finding of this family (the registered check)."""
    yield from check_companion_mismatch(ctx)
    yield from check_extension_abi(ctx)
    yield from check_python_abi(ctx)
    yield from check_partial_install(ctx)


# -- versions and the release table ------------------------------------------------------------


def _version(text: str) -> Optional[Version]:
    from packaging.version import InvalidVersion

    try:
        return Version(text)
    except InvalidVersion:
        return None


def _version_key(text: str) -> Version:
    return _version(text) or Version("0")


def _base(version: str) -> str:
    return version.partition("+")[0]


def _label(version: Optional[str]) -> Optional[str]:
    if not version or "+" not in version:
        return None
    return version.partition("+")[2].lower() or None


def _spec_of(requirement: str) -> Optional[str]:
    """The version specifier of a ``Requires-Dist`` value (``torch (==2.2.2)`` -> ``==2.2.2``)."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return str(Requirement(requirement).specifier)
    except InvalidRequirement:
        m = re.search(r"((?:===|==|!=|~=|>=|<=|>|<)\s*[^\s,;)]+(?:\s*,\s*(?:===|==|!=|~=|>=|<=|>|<)\s*[^\s,;)]+)*)",
                      requirement)
        return m.group(1).replace(" ", "") if m else None


def _contains(spec: str, version: str) -> Optional[bool]:
    """Whether ``version`` satisfies ``spec`` (``None`` when either cannot be parsed)."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    if _version(version) is None:
        return None
    try:
        return SpecifierSet(spec).contains(version, prereleases=True)
    except InvalidSpecifier:
        return None


@dataclass(frozen=True)
class CompanionRelease:
    """One torchvision/torchaudio release and the torch versions it is built for."""

    name: str
    version: str
    torch: str
    source: str


def companion_releases(name: str) -> Tuple[CompanionRelease, ...]:
    """The releases of ``name`` listed in ``data/companions.json``, oldest first."""
    from .. import _data

    rows = _data.load("companions.json")["companions"].get(name, [])
    return tuple(CompanionRelease(name, r["version"], r["torch"], r["source"]) for r in rows)


def companion_for(name: str, torch_version: str) -> Optional[str]:
    """The ``name`` release to install next to ``torch_version``: the one pinned to exactly that
    version, else the newest whose specifier contains it, else ``None``."""
    base = _base(torch_version)
    tv = _version(base)
    if tv is None:
        return None
    fitting = [r for r in companion_releases(name) if _contains(r.torch, base)]
    exact = [r for r in fitting if r.torch.startswith("==") and _version(r.torch[2:]) == tv]
    pool = exact or fitting
    if not pool:
        return None
    return max(pool, key=lambda r: _version_key(r.version)).version


def _minor_companion(name: str, torch_version: str) -> Optional[str]:
    """The companion minor series for a torch minor (README table), e.g. ``0.18`` for 2.3."""
    from .. import _data

    parts = _base(torch_version).split(".")
    minor = ".".join(parts[:2])
    for row in _data.load("companions.json")["minor_table"]:
        if row["torch"] == minor and name in row:
            return str(row[name])
    return None


def expected_torch(name: str, version: str) -> Optional[Tuple[str, str]]:
    """``(specifier, source)`` of the torch a companion release is built for, from the table."""
    base = _version(_base(version))
    if base is None:
        return None
    for r in companion_releases(name):
        if _version(r.version) == base:
            return r.torch, r.source
    return None


def _index_label(label: Optional[str]) -> Optional[str]:
    from .. import _data

    if label and re.match(_data.load("companions.json")["index"]["labels"], label):
        return label
    return None


def pip_install_args(name: str, version: str, torch_dist_version: str) -> Tuple[str, ...]:
    """``pip install`` arguments for ``name==version`` from where torch came from: the PyTorch
    index with the same local label when torch's METADATA version carries one (``+cpu``,
    ``+cu121``), plain PyPI otherwise."""
    from .. import _data

    label = _index_label(_label(torch_dist_version))
    if label is None:
        return (f"{name}=={version}",)
    url = _data.load("companions.json")["index"]["url"].format(label=label)
    return (f"{name}=={version}+{label}", "--index-url", url)


def _pip_commands(ctx: CheckContext, args: Sequence[str]) -> Dict[str, Tuple[str, ...]]:
    exe = ctx.snapshot.python.executable or "python"
    tail = " ".join(args)
    return {"powershell": (f'& "{exe}" -m pip {tail}',), "cmd": (f'"{exe}" -m pip {tail}',)}


def _torch_dist_version(ctx: CheckContext, torch: TorchInstall) -> str:
    """The version pip sees (METADATA), which decides the index; version.py's otherwise."""
    meta, _ = dist_metadata(ctx.view, torch.dist_info)
    return meta or torch.version


# -- linking against torch ------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkProblem:
    """``importer`` imports from the torch DLL ``dll``: the symbols the installed one lacks, or
    ``absent`` when torch does not ship that DLL at all (a CUDA build's DLL on a CPU torch)."""

    importer: str
    dll: str
    missing: Tuple[str, ...] = ()
    absent: bool = False
    exporter: Optional[str] = None

    @property
    def error(self) -> int:
        if self.absent:
            return 126
        return 182 if all(s.startswith("#") for s in self.missing) else 127


def _torch_names(torch: TorchInstall) -> Set[str]:
    return {d.lower() for d in torch.dlls} | set(_TORCH_FAMILY)


def _under(path: str, folder: str) -> bool:
    return path.lower().startswith(folder.lower().rstrip("\\") + "\\")


def _problems_from_results(results: Sequence[CallResult], folder: str,
                           names: Set[str]) -> List[LinkProblem]:
    """Torch-DLL edges of modules under ``folder`` that the replay found broken."""
    out: List[LinkProblem] = []
    seen: Set[Tuple[str, str]] = set()
    for r in results:
        for e in r.edges:
            if e.delay or e.name.lower() not in names or not _under(e.importer, folder):
                continue
            key = (e.importer.lower(), e.name.lower())
            if key in seen:
                continue
            seen.add(key)
            if e.resolution.path is None:
                out.append(LinkProblem(e.importer, e.name, absent=True))
            elif e.missing:
                out.append(LinkProblem(e.importer, e.name, tuple(m.symbol for m in e.missing),
                                       exporter=e.resolution.path))
    return out


def _static_problems(ctx: CheckContext, module: str, torch: TorchInstall,
                     names: Set[str]) -> Optional[List[LinkProblem]]:
    """Compare the torch-DLL imports of ``module`` with the exports of the installed torch's
    DLLs directly (``None`` when the module cannot be read or imports nothing from torch)."""
    facts = ctx.facts(module)
    if facts is None:
        return None
    linked = False
    out: List[LinkProblem] = []
    for imp in facts.static_imports:
        low = imp.dll.lower()
        if low not in names:
            continue
        linked = True
        target = torch.dll_path(_real_name(torch, imp.dll))
        exporter = ctx.facts(target) if low in {d.lower() for d in torch.dlls} else None
        if exporter is None:
            out.append(LinkProblem(module, imp.dll, absent=True))
            continue
        exports = exporter.exports
        missing = [n for n in imp.names if not exports.has_name(n)]
        missing += [f"#{o}" for o in imp.ordinals if not exports.has_ordinal(o)]
        if missing:
            out.append(LinkProblem(module, imp.dll, tuple(missing), exporter=target))
    return out if linked else None


def _real_name(torch: TorchInstall, name: str) -> str:
    low = name.lower()
    return next((d for d in torch.dlls if d.lower() == low), name)


def _problem_evidence(problems: Sequence[LinkProblem], limit: int = 5) -> List[Evidence]:
    ev: List[Evidence] = []
    shown = 0
    for p in problems:
        who = ntpath.basename(p.importer)
        if p.absent:
            ev.append(Evidence("needs", f"{p.dll} (imported by {who}), which this torch does not ship"))
            continue
        for sym in p.missing:
            if shown >= limit:
                break
            ev.append(Evidence("missing symbol", f"{sym} from {p.dll} (imported by {who})"))
            shown += 1
    total = sum(len(p.missing) for p in problems)
    if total > shown:
        per = ", ".join(f"{ntpath.basename(p.importer)} <- {p.dll}: {len(p.missing)}"
                        for p in problems if p.missing)
        ev.append(Evidence("missing symbols", f"{total} in all ({per})"))
    return ev


def _link_summary(problems: Sequence[LinkProblem], torch: TorchInstall) -> str:
    """``imports A from c10.dll and N more symbols, which torch X does not export`` (or the
    torch DLLs it needs that this torch does not ship)."""
    syms = [(s, p.dll) for p in problems for s in p.missing]
    if syms:
        more = f" and {len(syms) - 1} more symbol{'s' if len(syms) > 2 else ''}" if len(syms) > 1 else ""
        return (f"imports {syms[0][0]} from {syms[0][1]}{more}, which torch {torch.version} "
                "does not export")
    absent = sorted({p.dll for p in problems if p.absent})
    return f"needs {', '.join(absent)}, which torch {torch.version} does not ship"


# -- torchvision / torchaudio ---------------------------------------------------------------------


def check_companion_mismatch(ctx: CheckContext) -> Iterator[Finding]:
    """``torchvision-torchaudio-mismatch`` for each companion importable next to the torch
    ``import torch`` picks."""
    torch = ctx.installs.primary()
    if torch is None:
        return
    replays = {e.companion.package_dir.lower(): e for e in ctx.extensions}
    names = _torch_names(torch)
    for comp in ctx.installs.companions_of(torch):
        ext = replays.get(comp.package_dir.lower())
        finding = _companion_finding(ctx, torch, comp, names,
                                     ext.results if ext is not None else (),
                                     ext.prediction if ext is not None else None)
        if finding is not None:
            yield finding


def _companion_finding(ctx: CheckContext, torch: TorchInstall, comp: CompanionInstall,
                       names: Set[str], results: Sequence[CallResult],
                       prediction: Optional[Prediction]) -> Optional[Finding]:
    replayed = bool(results)
    if replayed:
        problems = _problems_from_results(results, comp.package_dir, names)
    else:
        problems = []
        for ext in comp.extensions:
            problems += _static_problems(ctx, ext, torch, names) or []

    # the pin: Requires-Dist, else the release table
    pin_spec: Optional[str] = None
    pin_text = ""
    if comp.torch_requirement:
        pin_spec = _spec_of(comp.torch_requirement)
        where = ntpath.basename(comp.dist_info) + "\\METADATA" if comp.dist_info else "METADATA"
        pin_text = f"{comp.torch_requirement} (Requires-Dist in {where})"
    else:
        known = expected_torch(comp.name, comp.version)
        if known is not None:
            pin_spec = known[0]
            pin_text = f"torch{known[0]} (compatibility table: {known[1]})"
    pin_ok = _contains(pin_spec, torch.version) if pin_spec else None
    torch_label = _index_label(_label(torch.version))
    comp_label = _index_label(_label(comp.version))
    label_clash = (torch_label is not None and comp_label is not None and torch_label != comp_label)
    if not problems and pin_ok is not False and not label_clash:
        return None

    dist_version = _torch_dist_version(ctx, torch)
    target = companion_for(comp.name, torch.version)
    ev: List[Evidence] = [
        Evidence(comp.name, f"{comp.version} in {comp.package_dir}"),
        Evidence("torch", f"{torch.version} in {torch.torch_dir}"),
    ]
    if pin_text:
        ev.append(Evidence("built for", pin_text))
    ev += _problem_evidence(problems)
    fix: List[str] = []
    commands: Dict[str, Tuple[str, ...]] = {}
    if target is not None:
        args = ("install",) + pip_install_args(comp.name, target, dist_version)
        commands = _pip_commands(ctx, args)
        where = ("from the same PyTorch index" if len(args) > 2 else "from PyPI, where torch came from")
        fix.append(f"Install the {comp.name} release made for torch {_base(torch.version)}: "
                   f"{comp.name} {target}, {where} (commands below).")
    else:
        series = _minor_companion(comp.name, torch.version)
        fix.append(f"Install the {comp.name} release made for torch {_base(torch.version)}"
                   + (f" (the {series}.x series)" if series else "")
                   + ", from the index torch came from (see the compatibility table).")
    built_for = _pinned_version(pin_spec)
    if built_for and built_for != _base(torch.version):
        fix.append(f"Or install the torch {comp.name} {comp.version} was built for (torch {built_for}), "
                   "from the same index, and keep the pair together from then on.")
    fix.append("Install torch, torchvision and torchaudio in one pip command so pip keeps them matched.")

    if problems:
        code = problems[0].error
        if prediction is not None and prediction.winerror:
            code = prediction.winerror
        what = _link_summary(problems, torch)
        symptom = ("torchvision swallows the error: 'Failed to load image Python extension' and later "
                   "'operator torchvision::nms does not exist'" if comp.name == "torchvision"
                   else f"import {comp.name} raises OSError: [WinError {code}]")
        detail = (f"{comp.name} {comp.version} {what}: loading its extension fails with WinError {code} "
                  f"({symptom}).")
        if pin_ok is False and built_for:
            detail += f" It was built for torch {built_for}."
        if not replayed:
            detail += " (Found by comparing import and export tables: the load itself is never reached "\
                      "because import torch fails first.)"
        n = sum(len(p.missing) for p in problems)
        title = (f"{comp.name} {comp.version} does not match torch {torch.version}: "
                 + (f"{n} imported symbol{'s' if n != 1 else ''} missing" if n else "torch DLLs it needs are absent"))
        return Finding("torchvision-torchaudio-mismatch", Severity.ERROR, title, detail,
                       Confidence.CERTAIN, tuple(ev), tuple(fix), commands, _REF_MISMATCH, comp.name)

    if prediction is not None and prediction.outcome == "fails" and replayed:
        loads = (" Every symbol its extension modules import from torch is exported by this torch; "
                 "their load fails for another reason (see the prediction), and the pin is a risk on top: "
                 "pip reports the conflict and a later upgrade of either can break the pair.")
    else:
        loads = (" Every symbol its extension modules import from torch is exported by this torch"
                 + (" (the replay predicts they load)" if replayed else "") + ", so it loads today; "
                 "pip reports the conflict, a later upgrade of either breaks it, and operators may "
                 "misbehave.")
    if pin_ok is False:
        title = f"{comp.name} {comp.version} is pinned to another torch ({pin_spec}; installed {torch.version})"
        detail = f"{comp.name} {comp.version} declares {pin_text}, but torch {torch.version} is installed." + loads
    else:
        title = (f"{comp.name} {comp.version} is a +{comp_label} build next to torch {torch.version}")
        detail = (f"{comp.name} is the +{comp_label} build and torch the +{torch_label} build: torchvision "
                  "refuses a CUDA version different from torch's at import ('Detected that PyTorch and "
                  "torchvision were compiled with different CUDA versions').")
    return Finding("torchvision-torchaudio-mismatch", Severity.WARNING, title, detail,
                   Confidence.POSSIBLE, tuple(ev), tuple(fix), commands, _REF_MISMATCH, comp.name)


def _pinned_version(spec: Optional[str]) -> Optional[str]:
    if spec and spec.startswith("==") and "," not in spec:
        return _base(spec[2:].strip())
    return None


# -- third-party C++ extensions ---------------------------------------------------------------------

_SKIP_SUFFIXES = (".py", ".pyc", ".pth", ".txt", ".json", ".cfg", ".toml", ".typed", ".pyi", ".dll",
                  ".so", ".exe", ".md", ".rst", ".dist-info", ".egg-info", ".data", ".libs")


def _site_dirs(ctx: CheckContext) -> List[str]:
    """The site-packages folders the running interpreter imports from."""
    py = ctx.snapshot.python
    out: List[str] = []
    cands = list(py.sys_path)
    if py.user_site_enabled and py.user_site:
        cands.append(py.user_site)
    for p in cands:
        low = p.lower().rstrip("\\/")
        if low.endswith(("site-packages", "dist-packages")) and low not in (o.lower() for o in out):
            out.append(p.rstrip("\\/"))
    return out


def _own_top_levels(ctx: CheckContext, torch: TorchInstall) -> Set[str]:
    """Top-level names that belong to torch and its companions (functorch, torchgen...)."""
    own = {"torch", "torchvision", "torchaudio", "functorch", "torchgen", "torio"}
    dists = [torch.dist_info] + [c.dist_info for c in ctx.installs.companions_of(torch)]
    for dist in dists:
        if dist:
            text = read_text(ctx.view, ntpath.join(dist, "top_level.txt")) or ""
            own |= {line.strip().lower() for line in text.splitlines() if line.strip()}
    return own


def _pyd_importable(name: str, py_version: str) -> bool:
    """False for a ``.cpXY-`` tag of another interpreter (CPython never imports it)."""
    m = re.search(r"\.cp(\d)(\d+)[^.]*\.pyd$", name, re.IGNORECASE)
    if not m:
        return True
    parts = py_version.split(".")
    return len(parts) < 2 or (m.group(1) == parts[0] and m.group(2) == re.sub(r"\D.*", "", parts[1]))


def _scan_pyds(ctx: CheckContext, site: str, skip: Set[str], *, max_depth: int,
               budget: List[int]) -> Iterator[Tuple[str, str]]:
    """``(top-level name, .pyd path)`` in ``site``: top-level modules, and ``.pyd`` files in each
    top-level package folder and up to ``max_depth`` folder levels below it (``pkg\\a\\b\\x.pyd``
    with the default 2); ``budget`` = [folders, files] left."""
    view = ctx.view
    py_version = ctx.snapshot.python.version
    for low, real in sorted(view.listdir(site).items()):
        if budget[0] <= 0 or budget[1] <= 0:
            return
        if low.startswith((".", "~", "__")):
            continue
        top = low.split(".", 1)[0]
        if top in skip:
            continue
        path = ntpath.join(site, real)
        if low.endswith(".pyd"):
            budget[1] -= 1
            if _pyd_importable(real, py_version):
                yield top, path
            continue
        if low.endswith(_SKIP_SUFFIXES):
            continue
        frontier = [(path, 0)]  # (folder, levels below the top-level package)
        while frontier and budget[0] > 0 and budget[1] > 0:
            folder, depth = frontier.pop(0)
            budget[0] -= 1
            for sub_low, sub_real in sorted(view.listdir(folder).items()):
                sub = ntpath.join(folder, sub_real)
                if sub_low.endswith(".pyd"):
                    budget[1] -= 1
                    if _pyd_importable(sub_real, py_version):
                        yield top, sub
                elif depth < max_depth and "." not in sub_low and sub_low != "__pycache__":
                    frontier.append((sub, depth + 1))


def _owner_dist(ctx: CheckContext, site: str, top: str) -> Tuple[Optional[str], Optional[str]]:
    """``(distribution name, its torch requirement)`` owning a top-level name, from the
    ``top_level.txt`` of the dist-infos in ``site`` (only read for flagged packages)."""
    from ..installs import _torch_requirement

    for low, real in sorted(ctx.view.listdir(site).items()):
        if not low.endswith(".dist-info"):
            continue
        dist = ntpath.join(site, real)
        tops = read_text(ctx.view, ntpath.join(dist, "top_level.txt"))
        if tops is None:
            continue
        if top in {line.strip().lower() for line in tops.splitlines()}:
            _, requires = dist_metadata(ctx.view, dist)
            name = real[: -len(".dist-info")].rsplit("-", 1)[0]
            return name, _torch_requirement(requires)
    return None, None


def check_extension_abi(ctx: CheckContext, *, max_depth: int = 2, max_folders: int = 3000,
                        max_files: int = 1500) -> Iterator[Finding]:
    """``third-party-extension-abi``: other ``.pyd`` files linked against torch's DLLs whose
    imports the installed torch does not provide (one finding per top-level package)."""
    torch = ctx.installs.primary()
    if torch is None:
        return
    names = _torch_names(torch)
    skip = _own_top_levels(ctx, torch)
    budget = [max_folders, max_files]
    for site in _site_dirs(ctx):
        flagged: Dict[str, List[LinkProblem]] = {}
        for top, pyd in _scan_pyds(ctx, site, skip, max_depth=max_depth, budget=budget):
            facts = ctx.facts(pyd)
            if facts is None or not any(i.dll.lower() in _EXTENSION_MARKERS for i in facts.static_imports):
                continue
            problems = _static_problems(ctx, pyd, torch, names)
            if problems:
                flagged.setdefault(top, []).extend(problems)
        for top, problems in flagged.items():
            yield _extension_finding(ctx, torch, site, top, problems)


def _extension_finding(ctx: CheckContext, torch: TorchInstall, site: str, top: str,
                       problems: List[LinkProblem]) -> Finding:
    dist, requirement = _owner_dist(ctx, site, top)
    package = dist or top
    modules = sorted({ntpath.basename(p.importer) for p in problems})
    code = problems[0].error
    n = sum(len(p.missing) for p in problems)
    ev: List[Evidence] = [Evidence("package", f"{package} ({ntpath.join(site, top)})"),
                          Evidence("torch", f"{torch.version} in {torch.torch_dir}")]
    if requirement:
        ev.append(Evidence("declares", requirement))
    ev += [Evidence("module", p) for p in sorted({p.importer for p in problems})][:3]
    ev += _problem_evidence(problems)
    message = {127: "The specified procedure could not be found.",
               126: "The specified module could not be found.",
               182: "The operating system cannot run %1."}[code]
    what = _link_summary(problems, torch)
    detail = (f"{', '.join(modules)} of {package} {what}: importing it fails with "
              f"'DLL load failed while importing {modules[0].split('.')[0]}: {message}' "
              f"(WinError {code}). It was built against another torch (or another build of it).")
    fix = ((f"Install the {package} build made for torch {torch.version} (check the project's "
            "install notes: prebuilt extension wheels are usually published per torch version and "
            "CUDA tag), or rebuild it against the installed torch."),
           f"Or install the torch version {package} was built for, from the same index.")
    commands = _pip_commands(ctx, ("install", "--force-reinstall", "--no-cache-dir", "--no-deps",
                                   "--no-binary", package, package))
    title = (f"{package} is built for another torch: "
             + (f"{n} imported symbol{'s' if n != 1 else ''} missing from torch {torch.version}"
                if n else f"needs torch DLLs torch {torch.version} does not ship"))
    return Finding("third-party-extension-abi", Severity.ERROR, title, detail, Confidence.CERTAIN,
                   tuple(ev), fix, commands, _REF_EXT, None)


# -- torch_python.dll and the interpreter -----------------------------------------------------------


def _interpreter_dll(ctx: CheckContext, name: str) -> Optional[str]:
    """The ``python3XY.dll`` this process uses: the loaded module, else next to the base
    interpreter, else in the base prefix."""
    snap = ctx.snapshot
    low = name.lower()
    for mod in snap.loaded_modules:
        if ntpath.basename(mod).lower() == low:
            return mod
    py = snap.python
    dirs = [ntpath.dirname(py.base_executable) if py.base_executable else "", py.base_prefix,
            snap.app_dir, ntpath.dirname(py.executable) if py.executable else ""]
    for d in dirs:
        if d:
            cand = ntpath.join(d, name)
            if ctx.view.host_path(cand) is not None:
                return cand
    return None


def _free_threaded(ctx: CheckContext) -> bool:
    py = ctx.snapshot.python
    return "free-threading" in py.sys_version.lower() or bool(
        re.search(r"python3\.?\d+t(_d)?\.exe$", py.executable.lower()))


def _prerelease(version: str) -> bool:
    return bool(re.search(r"\d(a|b|rc|c)\d*", version.lower())) or version.endswith("+")


def check_python_abi(ctx: CheckContext) -> Iterator[Finding]:
    """``python-abi-mismatch``: torch_python.dll (and torch._C) against this interpreter."""
    torch = ctx.installs.primary()
    py = ctx.snapshot.python
    if torch is None or not py.version:
        return
    parts = py.version.split(".")
    if len(parts) < 2 or not parts[0].isdigit():
        return
    minor = re.sub(r"\D.*", "", parts[1])
    ft = _free_threaded(ctx)
    expected = f"python{parts[0]}{minor}{'t' if ft else ''}.dll"
    tp_name = _real_name(torch, "torch_python.dll")
    tp = torch.dll_path(tp_name)
    facts = ctx.facts(tp) if tp_name.lower() in (d.lower() for d in torch.dlls) else None
    found_problem = False
    if facts is not None:
        imports = [i for i in facts.static_imports if _PY_DLL.match(i.dll)]
        for imp in imports:
            m = _PY_DLL.match(imp.dll)
            assert m is not None
            built = f"{m.group(1)}.{m.group(2)}{'t' if m.group(3) else ''}"
            ev = [Evidence("interpreter", f"Python {py.version} ({py.executable})"),
                  Evidence("torch_python.dll", f"{tp} imports {imp.dll}")]
            if imp.dll.lower() != expected:
                found_problem = True
                yield Finding(
                    "python-abi-mismatch", Severity.ERROR,
                    f"torch {torch.version} is built for Python {built}, this is Python {parts[0]}.{minor}",
                    f"torch_python.dll imports {imp.dll}, not {expected}: this torch belongs to another "
                    "interpreter (an environment copied or upgraded in place). Windows either fails to find "
                    f"{imp.dll} (WinError 126 on torch_python.dll) or loads a second interpreter into "
                    "the process, which crashes.",
                    Confidence.CERTAIN, tuple(ev),
                    (("Reinstall torch with this interpreter so pip picks the wheel for its "
                      "version (commands below), or run the Python that torch was installed for."),),
                    _pip_commands(ctx, _reinstall_args(ctx, torch)), _REF_PY,
                    "torch" if _explains(ctx, "torch", [tp]) else None)
                continue
            dll = _interpreter_dll(ctx, imp.dll)
            if dll is None:
                continue
            pyfacts = ctx.facts(dll)
            if pyfacts is None:
                continue
            missing = [n for n in imp.names if not pyfacts.exports.has_name(n)]
            missing += [f"#{o}" for o in imp.ordinals if not pyfacts.exports.has_ordinal(o)]
            if not missing:
                continue
            found_problem = True
            ev.append(Evidence("interpreter DLL", dll))
            ev += [Evidence("missing symbol", f"{s} from {imp.dll}") for s in missing[:5]]
            if len(missing) > 5:
                ev.append(Evidence("missing symbols", f"{len(missing)} in all"))
            pre = _prerelease(py.version)
            yield Finding(
                "python-abi-mismatch", Severity.ERROR,
                f"{imp.dll} of this interpreter lacks {len(missing)} name{'s' if len(missing) != 1 else ''} "
                "torch_python.dll imports",
                f"torch_python.dll imports {missing[0]} from {imp.dll}, which {dll} does not export: "
                f"loading torch_python.dll fails with WinError 127 (The specified procedure could not be "
                f"found). Python {py.version} is " + ("a pre-release; " if pre else "not the build torch expects; ")
                + "torch wheels are built against final CPython releases.",
                Confidence.CERTAIN, tuple(ev),
                (("Use a final CPython release of a version torch supports (python.org or the "
                  "Microsoft Store), create a fresh virtual environment with it, and install torch "
                  "there."),
                 ("If an IDE or debugger starts another interpreter than your shell, select the "
                  "same interpreter in the IDE.")),
                {}, _REF_PY, "torch" if _explains(ctx, "torch", [tp, dll]) else None)
    if torch.pyd:
        tag = re.search(r"\.cp(\d)(\d+)", ntpath.basename(torch.pyd), re.IGNORECASE)
        listing = ctx.view.listdir(torch.torch_dir)
        usable = any(
            low.startswith("_c.") and low.endswith(".pyd")
            and (low == "_c.pyd" or f".cp{parts[0]}{minor}" in low) for low in listing)
        if tag and not usable:
            found_problem = True
            yield Finding(
                "python-abi-mismatch", Severity.ERROR,
                f"torch\\{ntpath.basename(torch.pyd)} is for Python {tag.group(1)}.{tag.group(2)}, "
                f"this is Python {parts[0]}.{minor}",
                f"CPython imports only extension modules tagged .cp{parts[0]}{minor}: 'from torch._C import *' "
                "fails with ModuleNotFoundError (No module named 'torch._C').",
                Confidence.CERTAIN,
                (Evidence("extension", torch.pyd), Evidence("interpreter", f"Python {py.version}")),
                ("Reinstall torch with this interpreter (commands below).",),
                _pip_commands(ctx, _reinstall_args(ctx, torch)), _REF_PY,
                "torch" if _explains(ctx, "torch", [torch.pyd]) else None)
    if not found_problem and _prerelease(py.version):
        yield Finding(
            "python-abi-mismatch", Severity.WARNING,
            f"Python {py.version} is a pre-release",
            "torch wheels are built against final CPython releases; a pre-release interpreter may lack "
            "C-API names torch_python.dll imports (WinError 127) or change their behaviour.",
            Confidence.POSSIBLE, (Evidence("interpreter", f"Python {py.version} ({py.executable})"),),
            ("Use a final CPython release for environments with torch.",), {}, _REF_PY, None)


def _reinstall_args(ctx: CheckContext, torch: TorchInstall) -> Tuple[str, ...]:
    dist_version = _torch_dist_version(ctx, torch)
    label = _index_label(_label(dist_version))
    spec = f"torch=={dist_version}" if _version(dist_version) is not None else "torch"
    args: Tuple[str, ...] = ("install", "--force-reinstall", "--no-cache-dir", "--no-deps", spec)
    if label:
        from .. import _data

        args += ("--index-url", _data.load("companions.json")["index"]["url"].format(label=label))
    return args


# -- RECORD, leftovers, dropped-in DLLs ------------------------------------------------------------

#: sha256 digests computed in this process: (host path, size, mtime_ns) -> RECORD-style digest
_HASHES: Dict[Tuple[str, int, int], str] = {}


def _record_digest(host: str, size: int, mtime_ns: int) -> Optional[str]:
    key = (host, size, mtime_ns)
    hit = _HASHES.get(key)
    if hit is not None:
        return hit
    h = hashlib.sha256()
    try:
        with open(host, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    digest = "sha256=" + base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode("ascii")
    _HASHES[key] = digest
    return digest


@dataclass(frozen=True)
class _BinaryRow:
    path: str
    hash: Optional[str]
    size: Optional[int]


def _binary_rows(ctx: CheckContext, dist_info: str) -> Optional[List[_BinaryRow]]:
    """RECORD rows of ``*.dll``/``*.pyd`` files (``None`` when there is no RECORD). Lines are
    filtered before CSV parsing: torch's RECORD has ~15 000 rows, a few dozen binary."""
    import csv

    text = read_text(ctx.view, ntpath.join(dist_info, "RECORD"))
    if text is None:
        return None
    lines = [ln for ln in text.splitlines() if ".dll" in ln.lower() or ".pyd" in ln.lower()]
    out: List[_BinaryRow] = []
    for row in csv.reader(lines):
        if not row or not row[0].lower().endswith((".dll", ".pyd")):
            continue
        rel = row[0].replace("\\", "/")
        if rel.startswith("/") or ":" in rel or ".." in rel.split("/"):
            continue  # Scripts\\ and data files outside site-packages: not ours to judge
        digest = row[1] if len(row) > 1 and row[1] else None
        size = int(row[2]) if len(row) > 2 and row[2].isdigit() else None
        out.append(_BinaryRow(rel, digest, size))
    return out


@dataclass(frozen=True)
class _Integrity:
    missing: Tuple[str, ...]
    resized: Tuple[Tuple[str, int, int], ...]  # path, RECORD size, size on disk
    changed: Tuple[str, ...]
    unlisted: Tuple[str, ...]
    checked: int
    hashed: int
    skipped_hash: int


def _integrity(ctx: CheckContext, site: str, dist_info: str, lib_dirs: Sequence[str],
               verify_hashes: bool, hash_limit: int) -> Optional[_Integrity]:
    rows = _binary_rows(ctx, dist_info)
    if rows is None:
        return None
    missing: List[str] = []
    resized: List[Tuple[str, int, int]] = []
    changed: List[str] = []
    hashed = skipped = 0
    for row in rows:
        win = ntpath.join(site, *row.path.split("/"))
        host = ctx.view.host_path(win)
        if host is None:
            missing.append(win)
            continue
        try:
            st = os.stat(host)
        except OSError:
            missing.append(win)
            continue
        if row.size is not None and st.st_size != row.size:
            resized.append((win, row.size, st.st_size))
            continue
        if not row.hash or not row.hash.lower().startswith("sha256="):
            continue
        if not verify_hashes and st.st_size >= hash_limit:
            skipped += 1
            continue
        digest = _record_digest(host, st.st_size, st.st_mtime_ns)
        hashed += 1
        if digest is not None and digest != row.hash:
            changed.append(win)
    listed = {ntpath.join(site, *r.path.split("/")).lower() for r in rows}
    unlisted: List[str] = []
    for folder in lib_dirs:
        for low, real in ctx.view.listdir(folder).items():
            path = ntpath.join(folder, real)
            if low.endswith((".dll", ".pyd")) and path.lower() not in listed:
                unlisted.append(path)
    return _Integrity(tuple(missing), tuple(resized), tuple(changed), tuple(sorted(unlisted)),
                      len(rows), hashed, skipped)


def _prediction_of(ctx: CheckContext, target: str) -> Optional[Tuple[Prediction, Optional[CallResult]]]:
    if target == "torch" and ctx.primary is not None:
        return ctx.primary.prediction, ctx.primary.failing
    for ext in ctx.extensions:
        if ext.companion.name == target:
            failing = next((r for r in ext.results if not r.ok), None)
            return ext.prediction, failing
    return None


def _explains(ctx: CheckContext, target: str, paths: Iterable[str]) -> bool:
    """Whether the predicted failure of ``target`` involves one of ``paths`` (the DLL named, the
    culprit, its importer, or a missing module of that name)."""
    got = _prediction_of(ctx, target)
    if got is None or got[0].ok or got[0].winerror is None:
        return False
    pred, failing = got
    lows = {p.lower() for p in paths}
    bases = {ntpath.basename(p).lower() for p in paths}
    involved = {x.lower() for x in (pred.dll, pred.culprit_path, pred.importer) if x}
    if failing is not None and failing.culprit is not None:
        involved.add(failing.culprit.importer.lower())
        if failing.culprit.resolution.path is None and failing.culprit.name.lower() in bases:
            return True
    return bool(lows & involved)


def _dist_label(dist_info: str) -> str:
    return ntpath.basename(dist_info)


def check_partial_install(ctx: CheckContext, *, verify_hashes: Optional[bool] = None,
                          hash_limit: int = HASH_LIMIT) -> Iterator[Finding]:
    """``partial-or-mixed-install`` for the torch ``import torch`` picks and its companions."""
    if verify_hashes is None:
        verify_hashes = os.environ.get("TORCHDLL_VERIFY_HASHES", "").strip().lower() in _TRUE
    torch = ctx.installs.primary()
    if torch is None:
        return
    targets: List[Tuple[str, str, Optional[str], Sequence[str], str]] = [
        ("torch", torch.site_packages, torch.dist_info, [torch.lib_dir], torch.version)]
    for comp in ctx.installs.companions_of(torch):
        targets.append((comp.name, comp.site_packages, comp.dist_info,
                        [comp.package_dir, ntpath.join(comp.package_dir, "lib")], comp.version))
    for name, site, dist_info, lib_dirs, version in targets:
        if dist_info is None:
            continue
        result = _integrity(ctx, site, dist_info, lib_dirs, verify_hashes, hash_limit)
        if result is None:
            continue
        yield from _integrity_findings(ctx, name, version, site, dist_info, result, torch)
    yield from _leftovers(ctx, torch)


def _integrity_findings(ctx: CheckContext, name: str, version: str, site: str, dist_info: str,
                        r: _Integrity, torch: TorchInstall) -> Iterator[Finding]:
    record = ntpath.join(dist_info, "RECORD")
    bad = list(r.missing) + [p for p, _, _ in r.resized] + list(r.changed)
    if bad:
        ev: List[Evidence] = [Evidence("RECORD", f"{record} ({r.checked} binary files listed, "
                                                 f"{r.hashed} hashed, {r.skipped_hash} above the hash limit)")]
        ev += [Evidence("missing", p) for p in r.missing[:5]]
        ev += [Evidence("size differs", f"{p} (RECORD {want} bytes, on disk {got})") for p, want, got in r.resized[:5]]
        ev += [Evidence("sha256 differs", p) for p in r.changed[:5]]
        if len(bad) > 15:
            ev.append(Evidence("files", f"{len(bad)} in all"))
        parts = []
        if r.missing:
            parts.append(f"{len(r.missing)} missing")
        if r.resized:
            parts.append(f"{len(r.resized)} of another size")
        if r.changed:
            parts.append(f"{len(r.changed)} with another sha256")
        kind = ("mixes files of another build" if (r.resized or r.changed) else "is installed partially")
        dist_version = _torch_dist_version(ctx, torch) if name == "torch" else version
        spec = f"{name}=={dist_version}" if _version(dist_version) is not None else name
        args: Tuple[str, ...] = ("install", "--force-reinstall", "--no-cache-dir", "--no-deps", spec)
        label = _index_label(_label(_torch_dist_version(ctx, torch)))
        if label and (name == "torch" or _label(version) == label):
            from .. import _data

            args += ("--index-url", _data.load("companions.json")["index"]["url"].format(label=label))
        yield Finding(
            "partial-or-mixed-install", Severity.ERROR,
            f"{name} {version} {kind}: {', '.join(parts)} of the DLLs/extensions RECORD lists",
            f"The files of {name} do not match what pip installed ({_dist_label(dist_info)}\\RECORD): "
            "an upgrade interrupted while a process held the DLLs, files of two versions, or a file "
            "quarantined by antivirus. Loads of the affected DLLs fail or bind the wrong code.",
            Confidence.CERTAIN, tuple(ev),
            (("Close every Python process using this environment (Jupyter kernels, web UIs, IDE "
              "language servers): Windows cannot replace DLLs that are loaded."),
             "Delete leftover '~...' folders in site-packages (see the other finding, if any).",
             (f"Reinstall {name} cleanly (commands below); if antivirus quarantined a file, restore "
              "it or add an exclusion first.")),
            _pip_commands(ctx, args), _REF_PARTIAL, name if _explains(ctx, name, bad) else None)
    if r.unlisted:
        explained = _explains(ctx, name, r.unlisted)
        folder = ntpath.dirname(r.unlisted[0])
        ev = [Evidence("not in RECORD", p) for p in r.unlisted[:8]]
        if len(r.unlisted) > 8:
            ev.append(Evidence("files", f"{len(r.unlisted)} in all"))
        ev.append(Evidence("RECORD", record))
        loads_all = name == "torch"
        ps = tuple(f'Move-Item -LiteralPath "{p}" -Destination "$env:TEMP\\"' for p in r.unlisted[:8])
        cmd = tuple(f'move "{p}" "%TEMP%\\"' for p in r.unlisted[:8])
        yield Finding(
            "partial-or-mixed-install", Severity.ERROR if explained else Severity.WARNING,
            f"{len(r.unlisted)} DLL{'s' if len(r.unlisted) != 1 else ''} in {folder} "
            f"{'were' if len(r.unlisted) != 1 else 'was'} not installed by pip",
            (f"{', '.join(ntpath.basename(p) for p in r.unlisted[:5])} "
             f"{'are' if len(r.unlisted) != 1 else 'is'} not listed in {name}'s RECORD: copied in by hand or "
             "by another tool (a common 'fix' for missing-DLL errors). "
             + ("torch loads every DLL in torch\\lib at import, so a foreign or broken copy breaks "
                "import torch, and a copy of a system runtime shadows the real one."
                if loads_all else "They can shadow the DLLs the package expects.")),
            Confidence.CERTAIN if explained else Confidence.LIKELY, tuple(ev),
            ("Move these files out of the package folder (commands below move them to %TEMP%).",
             ("Install what they were meant to provide the supported way (the VC++ "
              "Redistributable, the matching torch build) instead of copying DLLs."),
             f"If {name} still fails, reinstall it with pip --force-reinstall."),
            {"powershell": ps, "cmd": cmd}, _REF_PARTIAL, name if explained else None)


#: pip's AdjacentTempDirectory replaces the first characters of a name with '~' and these
_LEADING = set("-~.=%0123456789")


def _pip_leftover(low: str, names: Sequence[str]) -> bool:
    """Whether ``low`` is pip's temporary name for one of ``names`` (``~orch``, ``~-rch``,
    ``~orchvision-0.18.1.dist-info``)."""
    if not low.startswith("~"):
        return False
    for name in names:
        for i in range(1, len(name)):
            head, tail = low[:i], low[i:]
            if all(c in _LEADING for c in head[1:]) and tail.startswith(name[i:]):
                rest = tail[len(name) - i:]
                if rest == "" or rest.startswith("-"):
                    return True
    return False


def _leftovers(ctx: CheckContext, torch: TorchInstall) -> Iterator[Finding]:
    """pip's ``~orch``-style temp folders and duplicate dist-infos next to the torch in use."""
    from ..installs import COMPANIONS

    sites = [torch.site_packages] + [c.site_packages for c in ctx.installs.companions_of(torch)]
    seen: Set[str] = set()
    for site in sites:
        if site.lower() in seen:
            continue
        seen.add(site.lower())
        listing = ctx.view.listdir(site)
        ours = ("torch",) + COMPANIONS
        tilde = sorted(real for low, real in listing.items() if _pip_leftover(low, ours))
        dupes: List[str] = []
        for name in ours:
            prefix = name + "-"
            hits = sorted(real for low, real in listing.items()
                          if low.startswith(prefix) and low.endswith(".dist-info"))
            if len(hits) > 1:
                dupes += hits
        if not tilde and not dupes:
            continue
        ev = [Evidence("leftover", ntpath.join(site, t)) for t in tilde[:8]]
        ev += [Evidence("dist-info", ntpath.join(site, d)) for d in dupes[:8]]
        ps = tuple(f'Remove-Item -Recurse -Force -LiteralPath "{ntpath.join(site, t)}"' for t in tilde[:8])
        cmd = tuple(f'rmdir /s /q "{ntpath.join(site, t)}"' for t in tilde[:8])
        what = []
        if tilde:
            what.append(f"{len(tilde)} '~' folder{'s' if len(tilde) != 1 else ''} pip left behind")
        if dupes:
            what.append("several dist-info folders of one package")
        yield Finding(
            "partial-or-mixed-install", Severity.WARNING,
            f"An interrupted torch upgrade left traces in site-packages: {' and '.join(what)}",
            "pip renames a package to '~<name>' while it replaces it and deletes that folder at the "
            "end; a leftover means an upgrade or uninstall was interrupted (a process held the DLLs: "
            "WinError 5 or 32). The installed files may be a mix of two versions; pip's own view of "
            "what is installed may be wrong.",
            Confidence.LIKELY, tuple(ev),
            ("Close every Python process using this environment.",
             ("Delete the '~' folders (commands below) and any duplicate dist-info folder of a "
              "version you no longer have."),
             "Reinstall torch and its companions in one pip command with --force-reinstall."),
            {"powershell": ps, "cmd": cmd} if tilde else {}, _REF_PARTIAL, None)

