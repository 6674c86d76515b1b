"""Replay torch's own Windows loader on the loader model: the prediction of ``import torch``.

For a torch installation and a process (a :class:`~torchdll.snapshot.Snapshot`), do what
``torch/__init__.py`` of that torch version does (``data/torch_loader.json``):

1. ``os.add_dll_directory`` for each existing folder of ``dll_paths``;
2. the VC++ runtime probe: ``ctypes.CDLL("vcruntime140.dll")``, ``"msvcp140.dll"``,
   ``"vcruntime140_1.dll"`` (``LOAD_LIBRARY_SEARCH_DEFAULT_DIRS``; a failure only prints a
   warning, but a success *loads* that copy for the rest of the process);
3. ``LoadLibraryExW(dll, NULL, 0x1100)`` for every ``torch\\lib\\*.dll`` in glob order: an error
   other than 126 is raised at once; after a 126, PATH becomes ``dll_paths + PATH`` and the DLL is
   retried with plain ``LoadLibraryW``;
4. ``import torch._C``: CPython loads ``_C.*.pyd`` with ``LoadLibraryExW(pyd, NULL, 0x1100)``.

Each load is replayed with :class:`~torchdll.closure.LoadSimulator`, including the
initialisation rule torch >= 2.9 trips over (an ``msvcp140.dll`` older than 14.40 bound to a DLL
built with MSVC 14.40 or later fails its static initialisation: WinError 1114). The result is
what torch will print -- and the culprit it will not.
"""

from __future__ import annotations

import ntpath
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Tuple

from .apisets import ApiSetSchema
from .closure import CallResult, Edge, InitFailure, LoadCall, LoadSimulator, Simulation
from .fsview import FileView
from .installs import CompanionInstall, TorchInstall
from .model import LoadContext, Machine
from .report import Prediction

__all__ = [
    "ExtensionReplay",
    "LoaderVariant",
    "Step",
    "TorchReplay",
    "error_message",
    "how_bound",
    "loader_variant",
    "replay_extensions",
    "replay_torch",
    "stl_mutex_rule",
    "torch_dll_paths",
]

FLAGS_PRELOAD = 0x1100  # LOAD_LIBRARY_SEARCH_DEFAULT_DIRS | LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR
FLAGS_CTYPES = 0x1000  # ctypes.CDLL("name") without a slash: LOAD_LIBRARY_SEARCH_DEFAULT_DIRS
MSVCP_CONSTEXPR_MUTEX = (14, 40)  # microsoft/STL#4730: 14.40+ STL needs msvcp140 >= 14.40


def _vkey(version: str) -> Tuple[int, ...]:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version).release
    except InvalidVersion:
        return (0,)


@dataclass(frozen=True)
class LoaderVariant:
    """How one range of torch releases loads its DLLs (see ``data/torch_loader.json``)."""

    since: str
    dll_paths: Tuple[str, ...]
    vc_probe: Tuple[str, ...]
    vc_probe_skip_arm64: Tuple[str, ...] = ()
    nvtoolsext: bool = True


def loader_variant(version: str) -> LoaderVariant:
    """The loader of the newest variant not newer than ``version`` (oldest known for older)."""
    from . import _data

    rows = _data.load("torch_loader.json")["variants"]
    key = _vkey(version)
    chosen = rows[0]
    for row in rows:
        if _vkey(row["since"]) <= key:
            chosen = row
    return LoaderVariant(chosen["since"], tuple(chosen["dll_paths"]), tuple(chosen["vc_probe"]),
                         tuple(chosen.get("vc_probe_skip_arm64", ())), bool(chosen.get("nvtoolsext", True)))


def error_message(code: int) -> str:
    """The English ``FormatMessage`` text of a Win32 error (torchdll never parses it)."""
    from . import _data

    entry = _data.load("error_codes.json")["codes"].get(str(code))
    return entry["message"] if entry else f"Unknown error {code}."


def torch_dll_paths(install: TorchInstall, *, exec_prefix: str, base_exec_prefix: str,
                    userbase: Optional[str], is_venv: bool, variant: LoaderVariant,
                    view: FileView) -> Tuple[str, ...]:
    """The folders torch adds with ``os.add_dll_directory`` (only those that exist)."""
    candidates: Dict[str, Optional[str]] = {
        "torch_lib": install.lib_dir,
        "exec_prefix_library_bin": ntpath.join(exec_prefix, "Library", "bin") if exec_prefix else None,
        "base_exec_prefix_library_bin": (ntpath.join(base_exec_prefix, "Library", "bin")
                                         if is_venv and base_exec_prefix else None),
        "userbase_library_bin": ntpath.join(userbase, "Library", "bin") if userbase else None,
        "exec_prefix_bin": ntpath.join(exec_prefix, "bin") if exec_prefix else None,
    }
    out: List[str] = []
    for kind in variant.dll_paths:
        d = candidates.get(kind)
        if d and view.host_path(d) is not None and d.lower() not in (o.lower() for o in out):
            out.append(d)
    return tuple(out)


def stl_mutex_rule(sim: LoadSimulator, mapped: Tuple[str, ...],
                   edges: Tuple[Edge, ...]) -> Optional[InitFailure]:
    """torch >= 2.9 (MSVC 14.42): ``std::mutex``'s constexpr constructor needs msvcp140 >= 14.40;
    an older msvcp140 makes the first lock in a DLL's static initialisation fault -> 1114
    (pytorch#169429, microsoft/STL#4730). Fires for the first module, in load order, that was
    linked by MSVC >= 14.40 and binds an msvcp140.dll whose FileVersion is below 14.40."""
    by_importer: Dict[str, Edge] = {}
    for e in edges:
        if not e.delay and e.name.lower() == "msvcp140.dll" and e.resolution.path:
            by_importer.setdefault(e.importer.lower(), e)
    for path in reversed(mapped):  # dependencies initialise before their importers
        edge = by_importer.get(path.lower())
        if edge is None or edge.resolution.path is None:
            continue
        facts = sim.facts(path)
        runtime = sim.facts(edge.resolution.path)
        if facts is None or runtime is None:
            continue
        linker = facts.linker_version
        fv = runtime.version.file_version if runtime.version else None
        if linker >= MSVCP_CONSTEXPR_MUTEX and fv is not None and fv[:2] < MSVCP_CONSTEXPR_MUTEX:
            return InitFailure(
                1114, edge,
                f"{ntpath.basename(path)} was built with MSVC {linker[0]}.{linker[1]} and binds "
                f"{edge.resolution.path} (FileVersion {'.'.join(map(str, fv))}, "
                f"{how_bound(sim, edge)}): msvcp140.dll older than 14.40 makes its static "
                "initialisation fail")
    return None


def how_bound(sim: LoadSimulator, edge: Edge) -> str:
    """How the file an edge bound to was chosen, following a loaded-module hit back to the load
    that first brought the module in (e.g. torch's VC++ probe finding it in the app dir)."""
    res = edge.resolution
    rule = res.rule.value if res.rule else "unknown rule"
    if res.rule is None or res.path is None or res.rule.value != "loaded-module":
        return f"found by rule {rule}"
    origin = sim.origins.get(res.path.lower())
    if origin is None:
        return "already loaded in the process before the import"
    how = origin.rule.value if origin.rule else "unknown rule"
    return (f"already loaded by LoadLibraryExW({origin.call.target}, 0x{origin.call.flags:x}), "
            f"which found it by rule {how}")


@dataclass(frozen=True)
class Step:
    """One thing torch's loader does, with the replayed outcome of the loads it makes."""

    action: str
    target: str
    flags: int = 0
    result: Optional[CallResult] = None
    note: str = ""


@dataclass(frozen=True)
class TorchReplay:
    """The replay of ``import torch`` for one installation."""

    install: TorchInstall
    variant: LoaderVariant
    dll_paths: Tuple[str, ...]
    steps: Tuple[Step, ...]
    simulation: Simulation
    prediction: Prediction
    failing: Optional[CallResult]
    vc_probe_failed: Tuple[str, ...]
    path_patched: bool
    context: LoadContext
    #: the process after the import, to replay later loads (torchvision, torchaudio) in it
    simulator: LoadSimulator = field(compare=False, repr=False, default=None)  # type: ignore[assignment]


def _describe(result: CallResult) -> str:
    if result.reason:
        return result.reason
    edge = result.culprit
    if edge is None:
        if result.bad_image:
            return f"{result.bad_image} is not a valid image for this process"
        return f"{result.call.target} could not be loaded ({result.error})"
    importer = ntpath.basename(edge.importer)
    res = edge.resolution
    if res.path is None:
        tried = ", ".join(sorted({ntpath.dirname(c.path) for c in res.candidates})) or "nowhere"
        return f"{edge.name}, needed by {importer}, is not found (searched: {tried})"
    miss = edge.missing[0]
    via = f" via {' -> '.join(miss.chain)}" if miss.chain else ""
    return (f"{importer} imports {miss.symbol} from {edge.name}, but {edge.name} resolved to "
            f"{res.path} [{res.rule.value if res.rule else '?'}]{via}, which lacks it"
            + (f" ({len(edge.missing)} symbols missing)" if len(edge.missing) > 1 else ""))


def replay_torch(
    install: TorchInstall,
    *,
    context: LoadContext,
    view: FileView,
    exec_prefix: str,
    base_exec_prefix: str,
    userbase: Optional[str] = None,
    is_venv: bool = False,
    environ: Optional[Dict[str, str]] = None,
    apisets: Optional[ApiSetSchema] = None,
) -> TorchReplay:
    """Replay ``import torch`` for ``install`` in a process described by ``context``.

    ``context`` gives the process state before the import (loaded modules, PATH, app dir...);
    its ``user_dirs`` are kept and torch's folders are added after them. ``apisets``: the
    target machine's API-set schema (default: the table shipped with torchdll).
    """
    variant = loader_variant(install.base_version)
    dll_paths = torch_dll_paths(install, exec_prefix=exec_prefix, base_exec_prefix=base_exec_prefix,
                                userbase=userbase, is_venv=is_venv, variant=variant, view=view)
    steps: List[Step] = [Step("add_dll_directory", d) for d in dll_paths]
    ctx = replace(context, user_dirs=tuple(context.user_dirs) + tuple(
        d for d in dll_paths if d.lower() not in (u.lower() for u in context.user_dirs)))
    sim = LoadSimulator(ctx, view, apisets, init_rules=(stl_mutex_rule,))
    results: List[CallResult] = []

    # the VC++ runtime probe
    probe_failed: List[str] = []
    for name in variant.vc_probe:
        if ctx.machine == Machine.ARM64 and name in variant.vc_probe_skip_arm64:
            continue
        res = sim.run(LoadCall(name, FLAGS_CTYPES))
        results.append(res)
        steps.append(Step("vc_probe", name, FLAGS_CTYPES, res))
        if not res.ok:
            probe_failed.append(name)
            steps.append(Step("warning", name, note="torch prints: Microsoft Visual C++ "
                              "Redistributable is not installed, this may lead to the DLL load failure."))
            break  # torch's try block stops at the first failure

    failing: Optional[CallResult] = None
    patched = False
    for name in install.dlls:
        dll = install.dll_path(name)
        res = sim.run(LoadCall(dll, FLAGS_PRELOAD))
        results.append(res)
        steps.append(Step("preload", dll, FLAGS_PRELOAD, res))
        if res.ok:
            continue
        if res.error != 126:
            failing = res
            break
        if not patched:
            patched = True
            new_path = tuple(dll_paths) + tuple(sim.context.path)
            sim.context = replace(sim.context, path=new_path)
            steps.append(Step("patch_path", ";".join(dll_paths), note="PATH = dll_paths + PATH"))
        retry = sim.run(LoadCall(dll, 0))
        results.append(retry)
        steps.append(Step("fallback", dll, 0, retry))
        if not retry.ok:
            failing = retry
            break

    if failing is None and install.pyd:
        res = sim.run(LoadCall(install.pyd, FLAGS_PRELOAD))
        results.append(res)
        steps.append(Step("import_pyd", install.pyd, FLAGS_PRELOAD, res))
        if not res.ok:
            failing = res

    simulation = sim.simulation(results)
    if failing is None:
        prediction = Prediction("torch", install.version, "ok",
                                steps=tuple(_step_text(s) for s in steps))
    else:
        code = failing.error or 0
        target = failing.call.target
        if target == install.pyd:
            message = (f"ImportError: DLL load failed while importing _C: "
                       f"{error_message(code)}")
        else:
            message = (f"OSError: [WinError {code}] {error_message(code)} "
                       f"Error loading \"{target}\" or one of its dependencies.")
        culprit_path = None
        importer = None
        rule = None
        if failing.culprit is not None:
            cres = failing.culprit.resolution
            culprit_path = cres.path or failing.culprit.name
            importer = failing.culprit.importer
            rule = cres.rule.value if cres.rule else None
        prediction = Prediction("torch", install.version, "fails", code, target, message,
                                _describe(failing), culprit_path, importer, rule,
                                tuple(_step_text(s) for s in steps))
    return TorchReplay(install, variant, dll_paths, tuple(steps), simulation, prediction, failing,
                       tuple(probe_failed), patched, sim.context, sim)


def _step_text(step: Step) -> str:
    if step.result is None:
        return f"{step.action} {step.target}" + (f" ({step.note})" if step.note else "")
    outcome = "ok" if step.result.ok else f"WinError {step.result.error}"
    return f"{step.action} {ntpath.basename(step.target)} 0x{step.flags:x}: {outcome}"


@dataclass(frozen=True)
class ExtensionReplay:
    """The replay of a companion's extension modules, loaded after torch in the same process.

    torchvision adds its own folder with ``os.add_dll_directory`` and loads ``_C.pyd`` and
    ``image.pyd`` through ``torch.ops.load_library`` (``ctypes.CDLL(path)``: a path, so
    ``LOAD_LIBRARY_SEARCH_DEFAULT_DIRS | LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR``); torchaudio loads
    ``lib\\libtorchaudio.pyd`` the same way.
    """

    companion: CompanionInstall
    results: Tuple[CallResult, ...]
    prediction: Prediction


_EXTENSION_SYMPTOM = {
    "torchvision": ("torchvision swallows the error: 'UserWarning: Failed to load image Python "
                    "extension' and later 'RuntimeError: operator torchvision::nms does not exist'"),
    "torchaudio": "OSError: [WinError {code}] {message}",
}


def replay_extensions(replay: TorchReplay,
                      companions: Tuple[CompanionInstall, ...]) -> Tuple[ExtensionReplay, ...]:
    """Load each companion's extension modules in the process ``import torch`` left behind.

    When torch itself is predicted to fail, the companions are never reached: their predictions
    say so (outcome ``"fails"`` with no code of their own).
    """
    out: List[ExtensionReplay] = []
    sim = replay.simulator
    for comp in companions:
        if not replay.prediction.ok or sim is None:
            out.append(ExtensionReplay(comp, (), Prediction(
                comp.name, comp.version, "fails", None, None,
                "not reached: import torch fails first", None)))
            continue
        ctx = sim.context
        if comp.package_dir.lower() not in (u.lower() for u in ctx.user_dirs):
            sim.context = replace(ctx, user_dirs=tuple(ctx.user_dirs) + (comp.package_dir,))
        results: List[CallResult] = []
        failing: Optional[CallResult] = None
        for ext in comp.extensions:
            res = sim.run(LoadCall(ext, FLAGS_PRELOAD))
            results.append(res)
            if not res.ok and failing is None:
                failing = res
        if failing is None:
            pred = Prediction(comp.name, comp.version, "ok")
        else:
            code = failing.error or 0
            template = _EXTENSION_SYMPTOM.get(comp.name, "OSError: [WinError {code}] {message}")
            message = template.format(code=code, message=error_message(code))
            cres = failing.culprit.resolution if failing.culprit else None
            pred = Prediction(comp.name, comp.version, "fails", code, failing.call.target, message,
                              _describe(failing), cres.path if cres else None,
                              failing.culprit.importer if failing.culprit else None,
                              cres.rule.value if cres and cres.rule else None)
        out.append(ExtensionReplay(comp, tuple(results), pred))
    return tuple(out)
