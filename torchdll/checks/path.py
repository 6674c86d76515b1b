"""PATH family: folders on PATH (and in System32, the user site, the script's folder) that make
the Windows loader or Python pick files that are not this environment's.

The seed case of torchdll lives here: a Python environment's own ``site-packages\\torch\\lib``
(or any DLL folder inside an environment) on the user or system ``Path``. Entries are
classified by :mod:`torchdll.pathenv` (this module never re-implements that); what this module
adds is *where* each entry is (process PATH, user Path, system Path), what the replay of
torch's loader bound from it (rule ``path``, or ``loaded-module`` for a module that came from it
first), whether that binding is part of the predicted failure, and the fix.

Finding ids (catalogue: ``data/findings/path.json``): ``env-dll-dir-on-path``,
``foreign-torch-dlls-on-path``, ``conda-base-path-mix``, ``system-cuda-cudnn-shadowing``,
``runtime-dlls-on-path``, ``dlls-copied-to-system32``, ``user-site-shadowing``,
``cwd-source-tree-shadowing``, ``path-relative-or-empty-entries``, ``path-quoted-entry``,
``non-ascii-paths``.

How PATH reaches torch's DLLs (causes.md 2.11, 3.2): torch's first load of every
``torch\\lib\\*.dll`` is ``LoadLibraryExW(dll, NULL, 0x1100)``, which never searches PATH. PATH is
searched by torch's own fallback after a WinError 126 (``PATH = dll_paths + PATH``, then plain
``LoadLibraryW``), by delay-loaded DLLs, by any ``LoadLibrary`` with a bare name and the default
search (C++ libraries, cuDNN sub-libraries, plugins), and by every other process on the machine.
"""

from __future__ import annotations

import ntpath
from dataclasses import dataclass
from functools import lru_cache
from typing import (
    Any,
    Dict,
    FrozenSet,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
)

from ..closure import CallResult
from ..model import Resolution, Rule
from ..pathenv import (
    SHADOWING_DLLS,
    TORCH_MARKER_DLLS,
    EntryKind,
    PathEntry,
    PathSyntax,
    _key_windows,
    analyze_path,
)
from ..report import Confidence, Evidence, Finding, Severity
from . import CheckContext

__all__ = [
    "Binding",
    "Location",
    "PathFolder",
    "check_path",
    "path_folders",
    "path_locations",
    "replay_bindings",
]

#: Rules through which a file of a folder on PATH ends up in the process by name.
_BY_NAME = (Rule.PATH, Rule.LOADED)
_MAX_LISTED = 6
_MAX_BOUND = 4
_SYSTEM32 = "C:\\Windows\\System32"

SYS_REG = "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Environment"
USER_REG = "HKCU\\Environment"

Fix = Tuple[Tuple[str, ...], Dict[str, Tuple[str, ...]]]


# --------------------------------------------------------------------------------------------
# What the family looks at
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """One entry of one PATH value: ``where`` is ``"user Path"``, ``"system Path"`` or
    ``"process PATH"``; ``scope`` is ``"user"``/``"system"`` for the registry values."""

    where: str
    scope: Optional[str]
    entry: PathEntry
    reg_type: Optional[str] = None

    def describe(self) -> str:
        head = f"{self.where} entry #{self.entry.index + 1}"
        if self.reg_type:
            head += f" ({USER_REG if self.scope == 'user' else SYS_REG}, {self.reg_type})"
        return head

    def text(self) -> str:
        e = self.entry
        return e.raw if e.raw == e.expanded else f"{e.raw} (expands to {e.expanded})"


def _scopes(locations: Iterable[Location]) -> Tuple[str, ...]:
    """``user``/``system``, in order of first appearance."""
    out: List[str] = []
    for loc in locations:
        if loc.scope and loc.scope not in out:
            out.append(loc.scope)
    return tuple(out)


@dataclass(frozen=True)
class PathFolder:
    """A folder named by one or more PATH entries (grouped by the folder's comparison key);
    ``names`` is its listing (lower-case name -> name)."""

    key: str
    folder: str
    locations: Tuple[Location, ...]
    names: Mapping[str, str]

    @property
    def kinds(self) -> FrozenSet[EntryKind]:
        return frozenset(k for loc in self.locations for k in loc.entry.kinds)

    @property
    def dlls(self) -> Tuple[str, ...]:
        return tuple(sorted(real for low, real in self.names.items() if low.endswith(".dll")))

    @property
    def scopes(self) -> Tuple[str, ...]:
        return _scopes(self.locations)

    def where(self) -> str:
        """``user Path``, ``user and system Path`` or ``process PATH``."""
        scopes = self.scopes
        return " and ".join(scopes) + " Path" if scopes else "process PATH"


@dataclass(frozen=True)
class Binding:
    """A module the replay bound: who imported it, the file and the rule. ``culprit``: the
    binding is part of the failure of ``target`` (the culprit edge, or another edge to the file
    that lacks a symbol); ``exact``: it is the culprit edge itself. ``via_torch_dirs``: found
    through torch's own folders, which its fallback puts at the front of PATH."""

    target: str
    importer: str
    name: str
    path: str
    rule: Rule
    delay: bool = False
    culprit: bool = False
    exact: bool = False
    via_torch_dirs: bool = False
    folder_key: str = ""

    def describe(self) -> str:
        how = " (delay load)" if self.delay else ""
        who = ntpath.basename(self.importer) if self.importer else "LoadLibrary"
        return f"{who} imports {self.name}{how} -> {self.path} [{self.rule.value}]"


# --------------------------------------------------------------------------------------------
# Reading PATH values and the replay
# --------------------------------------------------------------------------------------------

_Value = Tuple[str, Optional[str], str, PathSyntax, Optional[str]]


def _values(ctx: CheckContext) -> Iterator[_Value]:
    snap = ctx.snapshot
    if snap.user_path is not None:
        yield "user Path", "user", snap.user_path.value, PathSyntax.REGISTRY, snap.user_path.type
    if snap.system_path is not None:
        sp = snap.system_path
        yield "system Path", "system", sp.value, PathSyntax.REGISTRY, sp.type
    if snap.process_path:
        yield "process PATH", None, snap.process_path, PathSyntax.PROCESS, None


def path_locations(ctx: CheckContext) -> List[Location]:
    """Every entry of the user Path, the system Path and the process PATH, classified."""
    out: List[Location] = []
    environ = dict(ctx.snapshot.environ)
    for where, scope, value, syntax, reg_type in _values(ctx):
        parsed = analyze_path(value, syntax, reg_type=reg_type or "REG_EXPAND_SZ",
                              environ=environ, view=ctx.view, python=ctx.snapshot.python)
        out.extend(Location(where, scope, e, reg_type) for e in parsed.entries)
    return out


def _listing(ctx: CheckContext, folder: str) -> Mapping[str, str]:
    try:
        if ctx.view.host_path(folder) is None:
            return {}
        return ctx.view.listdir(folder)
    except (OSError, ValueError):
        return {}


def path_folders(ctx: CheckContext, locations: Sequence[Location]) -> List[PathFolder]:
    """The folders named by ``locations`` (entries with a folder), grouped, first seen first."""
    groups: Dict[str, List[Location]] = {}
    for loc in locations:
        if loc.entry.normalized and loc.entry.folders:
            groups.setdefault(loc.entry.normalized, []).append(loc)
    out: List[PathFolder] = []
    for key, locs in groups.items():
        folder = locs[0].entry.folders[0]
        out.append(PathFolder(key, folder, tuple(locs), _listing(ctx, folder)))
    return out


def _implicated(result: CallResult) -> Set[str]:
    """Lower-case paths of the files a failed call's culprit edge points at."""
    edge = result.culprit
    if edge is None:
        return set()
    paths = {m.exporter.lower() for m in edge.missing}
    if edge.resolution.path:
        paths.add(edge.resolution.path.lower())
    return paths


def _binding(target: str, importer: str, name: str, res: Resolution, *, delay: bool = False,
             culprit: bool = False, exact: bool = False,
             torch_dirs: FrozenSet[str] = frozenset()) -> Optional[Binding]:
    if res.path is None or res.rule is None:
        return None
    folder_key = _key_windows(ntpath.dirname(res.path))
    via = res.rule is Rule.PATH and folder_key in torch_dirs
    return Binding(target, importer, name, res.path, res.rule, delay, culprit, exact, via,
                   folder_key)


def _result_bindings(target: str, result: CallResult, failing: bool,
                     torch_dirs: FrozenSet[str]) -> Iterator[Binding]:
    top = _binding(target, "", result.call.target, result.resolution)
    if top is not None and top.rule is not Rule.FULL_PATH:
        yield top
    implicated = _implicated(result) if failing else set()
    for edge in result.edges:
        path = (edge.resolution.path or "").lower()
        exact = failing and edge is result.culprit
        b = _binding(target, edge.importer, edge.name, edge.resolution, delay=edge.delay,
                     culprit=exact or path in implicated, exact=exact, torch_dirs=torch_dirs)
        if b is not None:
            yield b


def replay_bindings(ctx: CheckContext) -> List[Binding]:
    """Every module the replays bound (imports, delay imports, by-name load calls), once each;
    the version of a binding that is part of a failure wins."""
    out: Dict[Tuple[str, str, str, str], Binding] = {}
    torch_dirs: FrozenSet[str] = frozenset()
    for replay in ctx.replays:
        if replay.path_patched:
            torch_dirs = torch_dirs | {_key_windows(d) for d in replay.dll_paths}
        for result in replay.simulation.results:
            for b in _result_bindings("torch", result, result is replay.failing, torch_dirs):
                _keep(out, b)
    for ext in ctx.extensions:
        failing = next((r for r in ext.results if not r.ok), None)
        for result in ext.results:
            name = ext.companion.name
            for b in _result_bindings(name, result, result is failing, torch_dirs):
                _keep(out, b)
    return list(out.values())


def _keep(out: Dict[Tuple[str, str, str, str], Binding], b: Binding) -> None:
    key = (b.target, b.importer.lower(), b.name.lower(), b.path.lower())
    old = out.get(key)
    if old is None or (b.culprit, b.exact) > (old.culprit, old.exact):
        out[key] = b


def _ranked(bindings: Iterable[Binding]) -> List[Binding]:
    """The culprit edge first, then other bindings of the failure, then the rest."""
    return sorted(bindings, key=lambda b: (not b.exact, not b.culprit, b.delay))


def _bound_from(folder: PathFolder, bindings: Iterable[Binding], *,
                path_only: bool = False) -> List[Binding]:
    """Bindings of files in ``folder`` through PATH (or already loaded from it); with
    ``path_only``, only those found through this PATH entry itself."""
    hits: List[Binding] = []
    for b in bindings:
        if b.folder_key != folder.key or b.rule not in _BY_NAME:
            continue
        if path_only and (b.rule is not Rule.PATH or b.via_torch_dirs):
            continue
        hits.append(b)
    return _ranked(hits)


# --------------------------------------------------------------------------------------------
# Shared wording: evidence, severity, fixes
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _catalogue() -> Dict[str, Dict[str, Any]]:
    from .. import _data

    return _data.findings_catalogue()


def _refs(fid: str) -> Tuple[str, ...]:
    return tuple(_catalogue().get(fid, {}).get("references", ()))


def _names(names: Sequence[str], limit: int = _MAX_LISTED) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _tail(folder: str) -> str:
    """The part of a folder below ``site-packages`` (``torch\\lib``), else the folder."""
    parts = folder.replace("/", "\\").split("\\")
    low = [p.lower() for p in parts]
    if "site-packages" in low:
        rest = parts[low.index("site-packages") + 1:]
        if rest:
            return "\\".join(rest)
    return folder


_RULE_TEXT = ("rule 'path' of the standard search (after the application folder, System32, "
              "System, Windows and the current folder): torch's fallback LoadLibraryW after a "
              "WinError 126, delay loads, LoadLibrary with a bare name; never torch's first "
              "LoadLibraryExW(dll, NULL, 0x1100)")


def _bound_evidence(bound: Sequence[Binding]) -> List[Evidence]:
    ev = [Evidence("bound in the replay" + (" (the failure)" if b.culprit else ""), b.describe())
          for b in bound[:_MAX_BOUND]]
    if len(bound) > _MAX_BOUND:
        ev.append(Evidence("bound in the replay", f"{len(bound)} bindings in all"))
    return ev


def _folder_evidence(folder: PathFolder, bound: Sequence[Binding],
                     names: Optional[Sequence[str]] = None) -> Tuple[Evidence, ...]:
    ev = [Evidence(loc.describe(), loc.text()) for loc in folder.locations]
    ev.append(Evidence("folder", folder.folder))
    held = list(names) if names is not None else list(folder.dlls)
    if held:
        ev.append(Evidence("holds", _names(held)))
    ev.append(Evidence("loader rule", _RULE_TEXT))
    return tuple(ev + _bound_evidence(bound))


def _explains(bound: Sequence[Binding]) -> Optional[str]:
    return next((b.target for b in bound if b.culprit), None)


def _bound_severity(bound: Sequence[Binding], otherwise: Severity) -> Tuple[Severity, Confidence]:
    """Bound in the replay: an error, certain. Otherwise a risk of the given severity."""
    if bound:
        return Severity.ERROR, Confidence.CERTAIN
    if otherwise is Severity.INFO:
        return otherwise, Confidence.POSSIBLE
    return otherwise, Confidence.LIKELY


def _bound_sentence(bound: Sequence[Binding]) -> str:
    if not bound:
        return ""
    b = bound[0]
    if b.culprit:
        return (f" The replay of import {b.target} binds a file from it and that binding is the "
                f"failure: {b.describe()}.")
    return (f" The replay of import {b.target} binds files from it ({b.describe()}): this "
            "process mixes DLLs of two installations.")


def _ps_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _fix_path_step(scope: str, flag: str, policy: Optional[str]) -> str:
    elevated = " from an elevated prompt (Run as administrator)" if scope == "system" else ""
    step = (f"Remove it from the {scope} Path{elevated}: 'python -m torchdll fix-path {flag}' "
            "shows the plan and changes nothing; add '--apply' to write it (the old value is "
            "backed up, its type and %VARIABLES% are kept, '--undo' restores it).")
    if policy == "strict":
        step += (" The strict policy also removes quoted, duplicate and missing entries: read "
                 "the plan first.")
    return step


_PROCESS_ONLY = ("It is in neither the user nor the system Path: whatever starts this process "
                 "adds it (an activate script, an IDE run configuration, a .bat launcher, conda "
                 "activation hooks). Remove it there, or call torchdll.sanitize_path() before "
                 "'import torch'.")
_NEW_TERMINAL = ("Open a new terminal and restart the program: running processes keep the PATH "
                 "they started with.")


def _removal_fix(folder: PathFolder, *, policy: Optional[str] = None) -> Fix:
    """Steps and commands that take ``folder`` off the Path values that hold it."""
    steps: List[str] = []
    lines: List[str] = []
    for scope in folder.scopes:
        flag = f"--{scope}" + (f" --policy {policy}" if policy else "")
        steps.append(_fix_path_step(scope, flag, policy))
        lines += [f"python -m torchdll fix-path {flag}",
                  f"python -m torchdll fix-path {flag} --apply"]
    if not folder.scopes:
        steps.append(_PROCESS_ONLY)
    if EntryKind.NVCUDA_PROVIDER in folder.kinds:
        steps.append("It also holds nvcuda.dll (a ZLUDA-style CUDA provider), which fix-path "
                     "keeps by default: remove it by hand if that provider is not used.")
    steps.append(_NEW_TERMINAL)
    session = (f"$drop = {_ps_quote(folder.folder)}",
               "$env:Path = (($env:Path -split ';') | ? { $_ -ne $drop }) -join ';'")
    ps = (*lines, "# this terminal only:", *session)
    return tuple(steps), {"powershell": ps, "cmd": tuple(lines)}


# --------------------------------------------------------------------------------------------
# env-dll-dir-on-path: the seed case
# --------------------------------------------------------------------------------------------


def _this_env_roots(ctx: CheckContext) -> Tuple[str, ...]:
    py = ctx.snapshot.python
    roots = (py.prefix, py.exec_prefix, py.base_prefix, py.base_exec_prefix)
    return tuple(dict.fromkeys(_key_windows(r) for r in roots if r))


def _inside(key: str, roots: Iterable[str]) -> bool:
    return any(key == r or key.startswith(r.rstrip("\\") + "\\") for r in roots)


def _foreign_copies(ctx: CheckContext, folder: PathFolder,
                    bindings: Sequence[Binding]) -> List[Binding]:
    """By-name bindings of a file named like one of ``folder``'s DLLs, from outside this
    environment."""
    mine = {n.lower() for n in folder.dlls}
    roots = _this_env_roots(ctx)
    return [b for b in bindings
            if b.rule in _BY_NAME and ntpath.basename(b.path).lower() in mine
            and b.folder_key != folder.key and not _inside(b.folder_key, roots)]


_SEED_MECHANISM = (
    "Nothing needs it there: packages add their own DLL folders when they are imported (torch "
    "with os.add_dll_directory), and torch's first load of every torch\\lib DLL (LoadLibraryExW "
    "with flags 0x1100) never searches PATH. PATH is searched by torch's own fallback after a "
    "WinError 126 (LoadLibraryW with PATH), by delay-loaded DLLs, by other packages calling "
    "LoadLibrary with a bare name, and by every other process on this machine: other venvs and "
    "Pythons (and their torch) then pick these DLLs by name and fail with WinError 1114, 127 or "
    "182.")


def _seed_outcome(through: Sequence[Binding], foreign: Sequence[Binding]) -> str:
    if through:
        return " In this process the replay binds files through this entry (below)."
    if foreign:
        return (" In this process the replay binds a foreign copy of one of its DLLs "
                f"({foreign[0].describe()}).")
    return (" In this process the replay takes nothing through it, so it is a risk here rather "
            "than the cause; other programs may already be affected.")


def _env_dll_dir(ctx: CheckContext, folder: PathFolder, bindings: Sequence[Binding]) -> Finding:
    through = _bound_from(folder, bindings, path_only=True)
    foreign = _ranked(_foreign_copies(ctx, folder, bindings))
    tail = _tail(folder.folder)
    torch_lib = bool({n.lower() for n in folder.dlls} & TORCH_MARKER_DLLS)
    label = "torch\\lib" if torch_lib and tail.lower().endswith("torch\\lib") else tail
    detail = (f"{folder.folder} is a DLL folder inside this environment's site-packages, and it "
              f"is on the {folder.where()}. " + _SEED_MECHANISM + _seed_outcome(through, foreign))
    error = bool(through or foreign)
    steps, commands = _removal_fix(folder)
    return Finding(
        id="env-dll-dir-on-path",
        severity=Severity.ERROR if error else Severity.WARNING,
        title=f"this environment's {label} is on the {folder.where()}",
        detail=detail,
        confidence=Confidence.CERTAIN if error else Confidence.LIKELY,
        evidence=_folder_evidence(folder, [*through, *foreign]),
        fix=steps,
        commands=commands,
        references=_refs("env-dll-dir-on-path"),
        explains=_explains(through),
    )


# --------------------------------------------------------------------------------------------
# foreign-torch-dlls-on-path
# --------------------------------------------------------------------------------------------


def _install_label(ctx: CheckContext, folder: PathFolder) -> Optional[str]:
    for t in ctx.installs.torch if ctx.installs is not None else ():
        if _key_windows(t.lib_dir) == folder.key:
            version = t.version if t.version != "unknown" else "(version unknown)"
            return f"torch {version} in {t.env_root}"
    return None


_FOREIGN_MECHANISM = (
    "torch's first load ignores PATH, but its fallback after a WinError 126, delay loads, and "
    "libraries that load DLLs by bare name (cuDNN sub-libraries, plugins, C++ hosts) search PATH "
    "and can bind these copies instead of this environment's: WinError 1114, 127 (a missing "
    "symbol) or 182 (a missing ordinal). A module already loaded from here is reused by name for "
    "every later import.")


def _foreign_torch(ctx: CheckContext, folder: PathFolder, bindings: Sequence[Binding]) -> Finding:
    bound = _bound_from(folder, bindings)
    torch_lib = EntryKind.FOREIGN_TORCH_LIB in folder.kinds
    what = _install_label(ctx, folder) if torch_lib else None
    kind = "torch DLLs" if torch_lib else "DLL folder"
    severity, confidence = _bound_severity(bound, Severity.WARNING)
    detail = (f"{folder.folder} holds another installation's {kind}"
              + (f" ({what})" if what else "") + f" and is on the {folder.where()}. "
              + _FOREIGN_MECHANISM + _bound_sentence(bound))
    steps, commands = _removal_fix(folder)
    where = folder.where()
    title = (f"another environment's torch\\lib is on the {where}" if torch_lib else
             f"another environment's DLL folder ({_tail(folder.folder)}) is on the {where}")
    return Finding("foreign-torch-dlls-on-path", severity, title, detail, confidence,
                   _folder_evidence(folder, bound), steps, commands,
                   _refs("foreign-torch-dlls-on-path"), _explains(bound))


# --------------------------------------------------------------------------------------------
# conda-base-path-mix, runtime-dlls-on-path
# --------------------------------------------------------------------------------------------


def _is_conda_root(folder: PathFolder) -> bool:
    """Another conda installation's root (this environment's is never classified so)."""
    foreign = {EntryKind.SHADOWING_DLLS, EntryKind.OTHER_PYTHON} & folder.kinds
    return "conda-meta" in folder.names and bool(foreign)


def _runtime_names(folder: PathFolder) -> List[str]:
    prefixes = ("mkl_", "libiomp", "libomp", "tbb")
    return [n for n in folder.dlls if n.lower() in SHADOWING_DLLS or n.lower().startswith(prefixes)]


_CONDA_MECHANISM = (
    "Any load that searches PATH (torch's fallback after a WinError 126, delay loads, LoadLibrary "
    "with a bare name) can take its msvcp140.dll, libiomp5md.dll or MKL instead of the ones this "
    "environment's torch expects: WinError 126/182/1114, 'The operating system cannot run %1', "
    "or two OpenMP runtimes in one process.")
_ONE_ENV = ("Use one environment per process: activate the conda environment you run (conda "
            "activate puts its own folders first) instead of keeping conda folders on the Path.")


def _conda_mix(ctx: CheckContext, folder: PathFolder, bindings: Sequence[Binding]) -> Finding:
    bound = _bound_from(folder, bindings)
    names = _runtime_names(folder)
    severity, confidence = _bound_severity(bound, Severity.WARNING if names else Severity.INFO)
    root = _is_conda_root(folder)
    held = f"; it holds runtime, OpenMP or MKL DLLs ({_names(names)})" if names else ""
    what = "the root" if root else "a Library\\bin folder"
    detail = (f"{folder.folder} is {what} of another conda installation (or conda base), on the "
              f"{folder.where()}{held}. "
              + _CONDA_MECHANISM + _bound_sentence(bound))
    steps, commands = _removal_fix(folder, policy="strict")
    part = "root" if root else "Library\\bin"
    return Finding("conda-base-path-mix", severity,
                   f"another conda installation's {part} is on the {folder.where()}",
                   detail, confidence, _folder_evidence(folder, bound, names),
                   (_ONE_ENV, *steps), commands, _refs("conda-base-path-mix"), _explains(bound))


def _system32_names(ctx: CheckContext) -> Set[str]:
    return set(_listing(ctx, ctx.snapshot.system32 or _SYSTEM32))


def _runtime_dlls(ctx: CheckContext, folder: PathFolder,
                  bindings: Sequence[Binding]) -> Optional[Finding]:
    bound = _bound_from(folder, bindings)
    names = _runtime_names(folder)
    lacking = [n for n in names if n.lower() not in _system32_names(ctx)]
    if not bound and not lacking:
        return None  # System32 is searched first for every name it has: only a latent risk
    severity, confidence = _bound_severity(bound, Severity.WARNING)
    here = f": here {_names(lacking)}" if lacking else ""
    detail = (f"{folder.folder} (on the {folder.where()}) holds runtime, OpenMP or MKL DLLs. "
              "System32 is searched before PATH, but a name System32 lacks is taken from here by "
              f"every load that searches PATH{here}." + _bound_sentence(bound))
    steps, commands = _removal_fix(folder, policy="strict")
    return Finding("runtime-dlls-on-path", severity,
                   f"a folder with runtime/OpenMP/MKL DLLs is on the {folder.where()}", detail,
                   confidence, _folder_evidence(folder, bound, names), steps, commands,
                   _refs("runtime-dlls-on-path"), _explains(bound))


# --------------------------------------------------------------------------------------------
# system-cuda-cudnn-shadowing
# --------------------------------------------------------------------------------------------


def _cuda_names(folder: PathFolder) -> List[str]:
    return [n for n in folder.dlls if n.lower().startswith(("cudnn", "cublas"))]


def _primary_cuda(ctx: CheckContext) -> Tuple[Set[str], bool]:
    """The primary torch's DLL names (lower case) and whether it is a CUDA build."""
    primary = ctx.installs.primary() if ctx.installs is not None else None
    if primary is None:
        return set(), False
    return {n.lower() for n in primary.dlls}, primary.cuda is not None


_CUDA_MECHANISM = (
    "torch's CUDA builds bundle their own cuDNN and cuBLAS and load them from torch\\lib first; "
    "libraries loaded lazily by bare name (cuDNN sub-libraries, cuBLASLt, NVRTC) search PATH and "
    "can take these instead: 'cuDNN version incompatibility', 'Could not load library "
    "cudnn_...dll', WinError 127.")
_CPU_BUILD = (" This environment's torch is a CPU build, so it matters to other processes (CUDA "
              "builds elsewhere, TensorFlow, ONNX Runtime) more than here.")
_KEEP_TOOLKIT = ("Keep the toolkit installed if you compile CUDA code, but take its bin folder off "
                 "the Path for processes that run torch (or set it only in the build shell).")


def _cuda_shadowing(ctx: CheckContext, folder: PathFolder,
                    bindings: Sequence[Binding]) -> Optional[Finding]:
    names = _cuda_names(folder)
    bound = _bound_from(folder, bindings)
    if not names and not bound:
        return None
    torch_names, cuda_build = _primary_cuda(ctx)
    clash = [n for n in names if n.lower() in torch_names]
    otherwise = Severity.WARNING if (clash or cuda_build) else Severity.INFO
    severity, confidence = _bound_severity(bound, otherwise)
    detail = (f"{folder.folder} is a CUDA toolkit or cuDNN folder on the {folder.where()} "
              f"holding {_names(names)}. " + _CUDA_MECHANISM
              + (f" Same names as torch's own: {_names(clash)}." if clash else "")
              + ("" if cuda_build else _CPU_BUILD) + _bound_sentence(bound))
    steps, commands = _removal_fix(folder, policy="strict")
    return Finding("system-cuda-cudnn-shadowing", severity,
                   f"a CUDA toolkit/cuDNN folder is on the {folder.where()}", detail, confidence,
                   _folder_evidence(folder, bound, names), (_KEEP_TOOLKIT, *steps), commands,
                   _refs("system-cuda-cudnn-shadowing"), _explains(bound))


# --------------------------------------------------------------------------------------------
# path-relative-or-empty-entries, path-quoted-entry
# --------------------------------------------------------------------------------------------


def _syntax_locations(locations: Sequence[Location],
                      kinds: Tuple[EntryKind, ...]) -> List[Location]:
    """Entries with one of ``kinds``; a process PATH entry that only repeats a registry entry
    (Windows builds the process PATH from the registry values) is left out."""
    hits = [loc for loc in locations if any(loc.entry.has(k) for k in kinds)]
    registry = {loc.entry.expanded for loc in hits if loc.scope}
    return [loc for loc in hits if loc.scope or loc.entry.raw not in registry]


def _syntax_evidence(locs: Sequence[Location],
                     kinds: Tuple[EntryKind, ...]) -> Tuple[Evidence, ...]:
    ev: List[Evidence] = []
    for loc in locs:
        issues = [i for i in (loc.entry.issue(k) for k in kinds) if i is not None]
        reason = issues[0].reason if issues else ""
        ev.append(Evidence(loc.describe(), f"{loc.entry.raw!r}: {reason}"))
    return tuple(ev)


_RELATIVE_DETAIL = (
    "A relative entry is resolved against the current directory of each process: a folder of "
    "that name wherever a program starts (a download folder, a project checkout) is searched for "
    "DLLs by every load that searches PATH. Empty entries are skipped by the DLL loader but read "
    "as the current directory by some tools.")


def _relative_or_empty(locations: Sequence[Location]) -> Optional[Finding]:
    kinds = (EntryKind.RELATIVE, EntryKind.EMPTY)
    locs = _syntax_locations(locations, kinds)
    if not locs:
        return None
    relative = any(loc.entry.has(EntryKind.RELATIVE) for loc in locs)
    scopes = _scopes(locs)
    steps = [f"Remove them from the {s} Path: 'python -m torchdll fix-path --{s}' shows the "
             "plan, '--apply' writes it (the default policy removes empty and relative entries)."
             for s in scopes]
    if not scopes:
        steps.append("They are only in this process's PATH: fix whatever builds it (a launcher "
                     "or activate script), or call torchdll.sanitize_path() at start-up.")
    cmds = tuple(line for s in scopes for line in (
        f"python -m torchdll fix-path --{s}", f"python -m torchdll fix-path --{s} --apply"))
    return Finding(
        "path-relative-or-empty-entries", Severity.WARNING if relative else Severity.INFO,
        "relative entries on the Path (DLL planting)" if relative else "empty entries on the Path",
        detail=_RELATIVE_DETAIL, confidence=Confidence.CERTAIN,
        evidence=_syntax_evidence(locs, kinds), fix=tuple(steps),
        commands={"powershell": cmds, "cmd": cmds} if cmds else {},
        references=_refs("path-relative-or-empty-entries"))


_QUOTED_DETAIL = (
    "The DLL loader takes PATH entries literally and does not remove double quotes, so a quoted "
    "entry never matches a folder when DLLs are searched (cmd.exe still finds programs there). "
    "DLLs you expect to be found through it are not.")
_EDIT_PATH = ("In Windows: Settings > System > About > Advanced system settings > Environment "
              "Variables > Path > Edit.")


def _quoted(locations: Sequence[Location]) -> Optional[Finding]:
    kinds = (EntryKind.QUOTED,)
    locs = _syntax_locations(locations, kinds)
    if not locs:
        return None
    steps = [f"Edit the {loc.where} entry #{loc.entry.index + 1}: replace {loc.entry.raw} with "
             f"{loc.entry.raw.replace(chr(34), '')} (Path entries never need quotes, spaces "
             "included)." for loc in locs]
    return Finding(
        "path-quoted-entry", Severity.INFO,
        "quoted entries on the Path are never searched for DLLs",
        detail=_QUOTED_DETAIL, confidence=Confidence.CERTAIN,
        evidence=_syntax_evidence(locs, kinds), fix=(*steps, _EDIT_PATH),
        references=_refs("path-quoted-entry"))


# --------------------------------------------------------------------------------------------
# dlls-copied-to-system32
# --------------------------------------------------------------------------------------------

_SYSTEM32_EXACT = frozenset({
    "c10.dll", "c10_cuda.dll", "torch.dll", "torch_cpu.dll", "torch_cuda.dll", "torch_python.dll",
    "torch_global_deps.dll", "shm.dll", "fbgemm.dll", "asmjit.dll", "caffe2_nvrtc.dll",
    "libiomp5md.dll", "libiompstubs5md.dll", "uv.dll", "zlibwapi.dll",
})
_SYSTEM32_PREFIXES = ("libomp140", "mkl_", "cudnn", "cublas", "cudart64_", "caffe2_", "c10_",
                      "torch_")


def _dropped_name(name: str) -> bool:
    low = name.lower()
    return low.endswith(".dll") and (low in _SYSTEM32_EXACT or low.startswith(_SYSTEM32_PREFIXES))


def _from_microsoft(ctx: CheckContext, path: str) -> bool:
    """Signed, CompanyName Microsoft: installed by Visual Studio, not copied there by hand."""
    facts = ctx.facts(path)
    if facts is None or not facts.signed or facts.version is None:
        return False
    return "microsoft" in facts.version.strings.get("CompanyName", "").lower()


_SYSTEM32_RULE = ("rule 'system32': searched by every load, torch's first LoadLibraryExW(0x1100) "
                  "included, before PATH (only the application folder, the DLL's own folder and "
                  "os.add_dll_directory folders come earlier)")
_SYSTEM32_FIX = ("Delete them from an elevated prompt (keep a copy elsewhere if you are unsure), "
                 "then install the official packages instead: the VC++ Redistributable, the "
                 "NVIDIA driver, and torch's own wheels (which bundle OpenMP, MKL and cuDNN).")


def _system32(ctx: CheckContext, bindings: Sequence[Binding]) -> Optional[Finding]:
    s32 = ctx.snapshot.system32 or _SYSTEM32
    found = sorted(real for low, real in _listing(ctx, s32).items() if _dropped_name(low))
    found = [n for n in found if not _from_microsoft(ctx, ntpath.join(s32, n))]
    if not found:
        return None
    paths = {ntpath.join(s32, n).lower() for n in found}
    bound = _ranked(b for b in bindings if b.path.lower() in paths)
    severity, confidence = _bound_severity(bound, Severity.WARNING)
    ev = (Evidence("folder", s32), Evidence("holds", _names(found)),
          Evidence("loader rule", _SYSTEM32_RULE), *_bound_evidence(bound))
    seen = " The replay of this environment binds one of them." if bound else ""
    return Finding(
        "dlls-copied-to-system32", severity,
        f"torch/OpenMP/MKL/CUDA DLLs were copied into {s32}",
        detail=(f"{s32} holds {_names(found)}, which Windows does not ship: they were copied "
                "there (a 'missing DLL' download site, an old installer, a forum fix). System32 "
                "is searched by every process, so every torch on this machine that does not find "
                "its own copy first binds these, whatever their version." + seen),
        confidence=confidence, evidence=ev, fix=(_SYSTEM32_FIX,),
        commands={"powershell": ("# elevated PowerShell:",
                                 *(f"Remove-Item {_ps_quote(ntpath.join(s32, n))}" for n in found)),
                  "cmd": tuple(f'del "{ntpath.join(s32, n)}"' for n in found)},
        references=_refs("dlls-copied-to-system32"), explains=_explains(bound))


# --------------------------------------------------------------------------------------------
# user-site-shadowing
# --------------------------------------------------------------------------------------------

_USER_SITE_STEPS = (
    ("Remove the user-site copies: run pip with the base interpreter (it imports the user site "
     "first, so it uninstalls those copies), or delete the folders listed above."),
    ("Or keep the user site out of this process: set PYTHONNOUSERSITE=1, or run python with -s."),
)


def _user_site_fix(ctx: CheckContext) -> Fix:
    py = ctx.snapshot.python
    base = py.base_executable or ntpath.join(py.base_prefix, "python.exe")
    pkgs = "torch torchvision torchaudio"
    return _USER_SITE_STEPS, {
        "powershell": (f"$py = {_ps_quote(base)}", f"& $py -m pip uninstall {pkgs}",
                       "$env:PYTHONNOUSERSITE = '1'"),
        "cmd": (f'set "PY={base}"', f'"%PY%" -m pip uninstall {pkgs}', "set PYTHONNOUSERSITE=1"),
    }


def _user_site_detail(ctx: CheckContext, user: Sequence[str], mixed: bool) -> str:
    installs = ctx.installs
    primary = installs.primary()
    env_torch = [t for t in installs.torch if t.scope == "env"]
    detail = (f"The user site ({ctx.snapshot.python.user_site}) holds "
              f"{_names([_tail(u) for u in user])}. It is on sys.path for every interpreter of "
              "this Python version (venvs with system site packages, embedded and portable "
              "Pythons too), before site-packages.")
    if primary is not None and primary.scope == "user" and env_torch:
        detail += (f" import torch takes the user-site torch {primary.version}, not this "
                   f"environment's {env_torch[0].version}.")
    elif mixed:
        detail += (" torch and its companions come from different places, so a torchvision or "
                   "torchaudio built for another torch can be imported (WinError 127).")
    return detail


def _user_site(ctx: CheckContext) -> Optional[Finding]:
    installs = ctx.installs
    py = ctx.snapshot.python
    user = [t.torch_dir for t in installs.torch if t.scope == "user"]
    user += [c.package_dir for c in installs.companions if c.scope == "user"]
    ours = [t.torch_dir for t in installs.torch if t.scope == "env"]
    ours += [c.package_dir for c in installs.companions if c.scope == "env"]
    if not user:
        enabled = py.is_venv and py.user_site_enabled and py.user_site
        if enabled and ctx.view.host_path(py.user_site or "") is not None:
            return _user_site_info(ctx)
        return None
    mixed = bool(ours)
    failing = [e for e in ctx.extensions if e.companion.scope == "user" and e.prediction.winerror]
    steps, commands = _user_site_fix(ctx)
    return Finding(
        "user-site-shadowing", Severity.WARNING if mixed else Severity.INFO,
        "torch packages in the user site"
        + (" shadow or mix with this environment's" if mixed else ""),
        _user_site_detail(ctx, user, mixed), Confidence.CERTAIN if mixed else Confidence.LIKELY,
        tuple(Evidence("user site", u) for u in user)
        + tuple(Evidence("this environment", o) for o in ours),
        steps, commands, _refs("user-site-shadowing"),
        failing[0].companion.name if failing else None)


def _user_site_info(ctx: CheckContext) -> Finding:
    py = ctx.snapshot.python
    steps, commands = _user_site_fix(ctx)
    return Finding(
        "user-site-shadowing", Severity.INFO, "the user site is enabled in this venv",
        detail=(f"This venv sees the user site ({py.user_site}): packages installed with 'pip "
                "install --user' for this Python version are importable here and come before the "
                "venv's site-packages."),
        confidence=Confidence.CERTAIN, evidence=(Evidence("user site", py.user_site or ""),),
        fix=steps[1:], commands={k: v[-1:] for k, v in commands.items()},
        references=_refs("user-site-shadowing"))


# --------------------------------------------------------------------------------------------
# cwd-source-tree-shadowing
# --------------------------------------------------------------------------------------------


def _script_dir(ctx: CheckContext) -> Optional[str]:
    """sys.path[0]: the script's folder, or the current directory (``''``)."""
    sys_path = ctx.snapshot.python.sys_path
    first = sys_path[0] if sys_path else ""
    return first or ctx.snapshot.cwd or None


def _has_extension(ctx: CheckContext, pkg: str) -> bool:
    return any(low.startswith("_c.") and low.endswith(".pyd") for low in _listing(ctx, pkg))


def _source_tree(ctx: CheckContext) -> List[Finding]:
    folder = _script_dir(ctx)
    if folder is None or "site-packages" in folder.lower():
        return []
    installed = {_key_windows(t.torch_dir) for t in ctx.installs.torch}
    installed |= {_key_windows(c.package_dir) for c in ctx.installs.companions}
    out: List[Finding] = []
    for name in ("torch", "torchvision", "torchaudio"):
        pkg = ntpath.join(folder, name)
        if _key_windows(pkg) in installed:
            continue
        if ctx.view.host_path(ntpath.join(pkg, "__init__.py")) is None:
            continue
        out.append(_source_finding(folder, name, pkg, _has_extension(ctx, pkg)))
    return out


def _source_symptom(name: str, built: bool) -> str:
    if built:
        return "a different build than the installed one is imported"
    if name == "torch":
        return ("'import torch' fails with 'DLL load failed while importing _C' or 'No module "
                "named torch._C'")
    return f"{name}'s operators are missing ('operator {name}::nms does not exist')"


def _source_finding(folder: str, name: str, pkg: str, built: bool) -> Finding:
    what = "a built source tree" if built else "a source checkout (no compiled _C extension)"
    return Finding(
        "cwd-source-tree-shadowing", Severity.WARNING if built else Severity.ERROR,
        f"a {name} folder in the script's folder shadows the installed {name}",
        detail=(f"{pkg} is {what}. sys.path[0] (the script's folder, or the current directory "
                "for 'python -c' and the REPL) comes before site-packages, so 'import "
                f"{name}' finds this folder first: {_source_symptom(name, built)}."),
        confidence=Confidence.CERTAIN,
        evidence=(Evidence("sys.path[0]", folder), Evidence("package", pkg)),
        fix=(f"Run the program elsewhere, or move the {name} folder out of the script's folder.",),
        commands={"powershell": ("Set-Location $HOME",), "cmd": ("cd /d %USERPROFILE%",)},
        references=_refs("cwd-source-tree-shadowing"),
        explains="torch" if name == "torch" and not built else None)


# --------------------------------------------------------------------------------------------
# non-ascii-paths
# --------------------------------------------------------------------------------------------

_NON_ASCII_DETAIL = (
    "Not a loader problem: torch loads its DLLs with the wide-character API (LoadLibraryExW), so "
    "these folders import fine. Some tools still pass paths through the ANSI code page and break "
    "there: TorchScript/JIT files, torch.utils.cpp_extension builds (ninja), Java or .NET hosts. "
    "If one of them fails, use an environment under an ASCII-only folder (for example "
    "C:\\venvs\\proj) or turn on 'Use Unicode UTF-8 for worldwide language support'.")


_NON_ASCII_FIX = ("Nothing to do unless a tool fails on these paths; then move the environment to "
                  "an ASCII-only folder.")


def _non_ascii(ctx: CheckContext) -> Optional[Finding]:
    dirs = [t.torch_dir for t in ctx.installs.torch if t.scope in ("env", "user")]
    odd = [d for d in dirs if not d.isascii()]
    if not odd:
        return None
    venv = ("python -m venv C:\\venvs\\proj",)
    return Finding(
        "non-ascii-paths", Severity.INFO,
        "torch is installed under a path with non-ASCII characters",
        detail=_NON_ASCII_DETAIL, confidence=Confidence.CERTAIN,
        evidence=tuple(Evidence("torch", d) for d in odd),
        fix=(_NON_ASCII_FIX,),
        commands={"powershell": venv, "cmd": venv},
        references=_refs("non-ascii-paths"))


# --------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------


def _folder_finding(ctx: CheckContext, folder: PathFolder,
                    bindings: Sequence[Binding]) -> Optional[Finding]:
    kinds = folder.kinds
    if EntryKind.SYSTEM_DIR in kinds or EntryKind.VARIABLE_LIST in kinds:
        return None
    if EntryKind.THIS_ENV_DLL_DIR in kinds:
        return _env_dll_dir(ctx, folder, bindings)
    if kinds & {EntryKind.FOREIGN_TORCH_LIB, EntryKind.OTHER_ENV_DLL_DIR}:
        return _foreign_torch(ctx, folder, bindings)
    conda_root = _is_conda_root(folder) and bool(_runtime_names(folder))
    if EntryKind.FOREIGN_CONDA_BIN in kinds or conda_root:
        return _conda_mix(ctx, folder, bindings)
    if EntryKind.NVCUDA_PROVIDER in kinds:
        return None  # ZLUDA-style providers: torch's PATH fallback needs them
    if EntryKind.CUDA_TOOLKIT_BIN in kinds:
        return _cuda_shadowing(ctx, folder, bindings)
    if EntryKind.SHADOWING_DLLS in kinds:
        return _runtime_dlls(ctx, folder, bindings)
    return None


def _path_findings(ctx: CheckContext, locations: Sequence[Location]) -> List[Finding]:
    bindings = replay_bindings(ctx)
    found = [_folder_finding(ctx, folder, bindings) for folder in path_folders(ctx, locations)]
    found += [_system32(ctx, bindings), _relative_or_empty(locations), _quoted(locations)]
    return [f for f in found if f is not None]


def _install_findings(ctx: CheckContext) -> List[Finding]:
    if ctx.installs is None:
        return []
    found = [*_source_tree(ctx), _user_site(ctx), _non_ascii(ctx)]
    return [f for f in found if f is not None]


def check_path(ctx: CheckContext) -> Iterable[Finding]:
    """Every finding of the PATH family (nothing for a snapshot of another OS)."""
    if ctx.snapshot.platform != "win32":
        return []
    return _path_findings(ctx, path_locations(ctx)) + _install_findings(ctx)
