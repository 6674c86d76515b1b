"""The Microsoft Visual C++ runtime: missing, older than the toolset that built torch, already
loaded by someone else, or shipped by the program that embeds Python.

Every verdict starts from what the replay of torch's loader bound (:mod:`torchdll.torchload`):
the copy of ``msvcp140.dll`` that c10.dll really gets, the rule that brought it into the process
(``loaded-module``, ``app-dir``, ``user-dir``, ``system32``...) and where that folder is (next
to the base ``python.exe``, a conda root, System32, a package's bundle, a host application). When
the replay stopped before a DLL was reached, the same question is answered by resolving the name
statically in the process torch left behind, so a user learns every problem at once.

The helpers at the top (torch's images, bound copies, places, fixes) are shared with the
``openmp`` and ``platform`` families.
"""

from __future__ import annotations

import ntpath
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from ..closure import CallResult, Edge
from ..model import ImageFacts, Machine, Resolution, Rule
from ..report import Confidence, Evidence, Finding, Severity
from ..torchload import FLAGS_PRELOAD, MSVCP_CONSTEXPR_MUTEX, TorchReplay
from . import CheckContext

__all__ = [
    "Copy",
    "Place",
    "TorchImage",
    "bound_copy",
    "cd_commands",
    "check_runtime",
    "family_data",
    "failing_edge",
    "importers_of",
    "index_args",
    "is_host_process",
    "is_python_dir",
    "loadable",
    "pip_commands",
    "pip_install",
    "place_of",
    "process_machine",
    "ps_quote",
    "python_command",
    "static_resolution",
    "torch_images",
    "version_text",
]

Version4 = Tuple[int, int, int, int]
Toolset = Tuple[int, int]

MSVCP = "msvcp140.dll"
#: the runtime DLLs whose absence is "the Redistributable is not installed" (torch probes them)
CORE = ("vcruntime140.dll", "msvcp140.dll", "vcruntime140_1.dll")
#: copies python.exe itself loads at start: torch cannot bind another one
INTERPRETER_OWN = ("vcruntime140.dll", "vcruntime140_1.dll")


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def family_data(family: str) -> Mapping[str, Any]:
    """The parsed ``data/findings/<family>.json`` (its tables beyond the catalogue entries)."""
    import json
    from importlib import resources

    folder = resources.files("torchdll").joinpath("data").joinpath("findings")
    doc: Mapping[str, Any] = json.loads(folder.joinpath(f"{family}.json").read_text("utf-8"))
    return doc


def _runtime_table() -> Mapping[str, Any]:
    table: Mapping[str, Any] = family_data("runtime")["vc_runtime"]
    return table


def version_text(version: Optional[Sequence[int]]) -> str:
    return "unknown" if version is None else ".".join(str(v) for v in version)


def _toolset_text(toolset: Toolset) -> str:
    return f"{toolset[0]}.{toolset[1]}"


@dataclass(frozen=True)
class TorchImage:
    """One of torch's own images (``torch\\lib\\*.dll`` or ``_C.pyd``) and its PE facts."""

    path: str
    facts: ImageFacts

    @property
    def name(self) -> str:
        return ntpath.basename(self.path)

    @property
    def toolset(self) -> Toolset:
        """The newest MSVC toolset that built it: the linker version of the optional header, or
        the Rich header's newest compiler/linker when that is newer."""
        rich = self.facts.rich.toolset if self.facts.rich else None
        parts = rich.split(".") if rich else []
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            return max(self.facts.linker_version, (int(parts[0]), int(parts[1])))
        return self.facts.linker_version

    def imports(self, name: str) -> bool:
        low = name.lower()
        return any(i.dll.lower() == low for i in self.facts.static_imports)


def torch_images(ctx: CheckContext, replay: TorchReplay) -> Tuple[TorchImage, ...]:
    """torch's DLLs in glob order, then ``_C.pyd``; unreadable files are left out."""
    install = replay.install
    paths = [install.dll_path(n) for n in install.dlls]
    if install.pyd:
        paths.append(install.pyd)
    out: List[TorchImage] = []
    for p in paths:
        facts = ctx.facts(p)
        if facts is not None:
            out.append(TorchImage(p, facts))
    return tuple(out)


def importers_of(images: Iterable[TorchImage], name: str) -> Tuple[TorchImage, ...]:
    """The images that import ``name`` statically."""
    return tuple(i for i in images if i.imports(name))


def _newest(images: Sequence[TorchImage]) -> TorchImage:
    """The image built by the newest toolset (the first one in load order on a tie)."""
    best = images[0]
    for img in images[1:]:
        if img.toolset > best.toolset:
            best = img
    return best


def process_machine(ctx: CheckContext) -> Machine:
    """The machine DLLs must be built for (a 32-bit Python on x64 Windows is x86)."""
    machine = ctx.context.machine
    if ctx.snapshot.python.bits == 32 and machine not in (Machine.I386, Machine.ARMNT):
        return Machine.I386
    return machine


def loadable(ctx: CheckContext, images: Sequence[TorchImage]) -> bool:
    """Whether torch's images fit this process at all (if not, only the platform family speaks)."""
    from ..resolver import machine_compatible

    proc = process_machine(ctx)
    return all(machine_compatible(proc, i.facts.machine) for i in images)


def failing_edge(replay: TorchReplay) -> Optional[Edge]:
    """The culprit edge of the predicted failure, if any."""
    return replay.failing.culprit if replay.failing is not None else None


@dataclass(frozen=True)
class Copy:
    """The copy of a DLL that torch binds: path, FileVersion, and how it got into the process.

    ``rule`` is the loader rule that *first* brought it in (a later import finds it as a
    ``loaded-module``); ``preloaded``: it was in the process before ``import torch``;
    ``static``: the replay never reached it, the name was resolved in the process it left.
    """

    name: str
    path: str
    rule: Optional[Rule]
    preloaded: bool
    version: Optional[Version4]
    static: bool = False

    @property
    def folder(self) -> str:
        return ntpath.dirname(self.path)


def _results(replay: TorchReplay) -> Iterator[CallResult]:
    for step in replay.steps:
        if step.result is not None:
            yield step.result


def _resolutions(replay: TorchReplay) -> Iterator[Resolution]:
    for result in _results(replay):
        yield result.resolution
        for edge in result.edges:
            if not edge.delay:
                yield edge.resolution


def _first_rule(ctx: CheckContext, replay: TorchReplay, path: str) -> Tuple[Optional[Rule], bool]:
    low = path.lower()
    if any(m.lower() == low for m in ctx.snapshot.loaded_modules):
        return Rule.LOADED, True
    for res in _resolutions(replay):
        if res.path is not None and res.path.lower() == low and res.rule not in (None, Rule.LOADED):
            return res.rule, False
    return None, False


def _file_version(ctx: CheckContext, path: str) -> Optional[Version4]:
    facts = ctx.facts(path)
    if facts is None or facts.version is None:
        return None
    return facts.version.file_version


def _edge_path(replay: TorchReplay, name: str) -> Optional[str]:
    low = name.lower()
    lib = replay.install.torch_dir.lower() + "\\"
    fallback: Optional[str] = None
    for edge in replay.simulation.edges:
        if edge.delay or edge.name.lower() != low or edge.resolution.path is None:
            continue
        if edge.importer.lower().startswith(lib):
            return edge.resolution.path
        fallback = fallback or edge.resolution.path
    if fallback:
        return fallback
    for step in replay.steps:  # torch's VC++ probe loads the runtime by name
        if step.action == "vc_probe" and step.target.lower() == low and step.result is not None:
            return step.result.resolution.path
    return None


def static_resolution(
    ctx: CheckContext, replay: TorchReplay, name: str, importer: str
) -> Resolution:
    """Resolve ``name`` for ``importer`` (a torch DLL) as its preload would, in the process the
    replay left behind (for DLLs the replay never reached)."""
    from ..resolver import resolve

    return resolve(
        name,
        replay.context,
        ctx.view,
        flags=FLAGS_PRELOAD,
        importer=importer,
        load_dir=replay.install.lib_dir,
        loaded=dict(replay.simulation.loaded),
    )


def bound_copy(
    ctx: CheckContext, replay: TorchReplay, name: str, importer: Optional[str] = None
) -> Optional[Copy]:
    """The copy of ``name`` torch binds (``None``: not found anywhere torch looks)."""
    path = _edge_path(replay, name)
    static: Optional[Resolution] = None
    if path is None and importer is not None:
        static = static_resolution(ctx, replay, name, importer)
        path = static.path
    if path is None:
        return None
    rule, preloaded = _first_rule(ctx, replay, path)
    if rule is None and static is not None:
        rule = static.rule
    version = _file_version(ctx, path)
    return Copy(name.lower(), path, rule, preloaded, version, static is not None)


@dataclass(frozen=True)
class Place:
    """What a folder is, for a person: ``kind`` is one of ``system32``, ``app-python`` (next to
    the base python.exe), ``app-host`` (an embedding program's folder), ``torch-lib``,
    ``conda-root``, ``library-bin``, ``package`` (bundled in site-packages) or ``folder``."""

    kind: str
    text: str
    package: Optional[str] = None
    conda: bool = False


def _dir_of(path: Optional[str]) -> str:
    return ntpath.dirname(path).lower() if path else ""


def is_python_dir(ctx: CheckContext, folder: str) -> bool:
    """Whether ``folder`` holds a Python interpreter (its ``python.exe`` or ``pythonw.exe``)."""
    if not folder:
        return False
    listing = ctx.view.listdir(folder)
    if "python.exe" in listing or "pythonw.exe" in listing:
        return True
    py = ctx.snapshot.python
    for exe in (py.base_executable, py.executable):
        if (
            exe
            and ntpath.basename(exe).lower().startswith("python")
            and _dir_of(exe) == folder.lower()
        ):
            return True
    return False


def is_conda_dir(ctx: CheckContext, folder: str) -> bool:
    return "conda-meta" in ctx.view.listdir(folder)


def is_host_process(ctx: CheckContext) -> bool:
    """The process is not a Python interpreter: Python is embedded in another program."""
    app = ctx.snapshot.app_dir
    return bool(app) and not is_python_dir(ctx, app)


def _package_of(folder: str) -> Optional[str]:
    low = folder.lower()
    marker = "\\site-packages\\"
    at = low.find(marker)
    if at < 0:
        return None
    rest = folder[at + len(marker) :]
    return rest.split("\\", 1)[0] or None


def place_of(ctx: CheckContext, replay: TorchReplay, path: str) -> Place:
    """Where ``path`` lives, in the words a person needs to fix it."""
    folder = ntpath.dirname(path)
    low = folder.lower()
    snap = ctx.snapshot
    if low == (snap.system32 or "C:\\Windows\\System32").lower():
        return Place(
            "system32", "System32 (installed by the VC++ Redistributable or another installer)"
        )
    if low == snap.app_dir.lower():
        if not is_python_dir(ctx, folder):
            return Place(
                "app-host",
                f"the host application's folder {folder} (the process's application directory, "
                "searched before System32)",
            )
        conda = is_conda_dir(ctx, folder)
        what = "a conda installation root, " if conda else ""
        return Place(
            "app-python",
            f"next to the base python.exe in {folder} ({what}the application directory: searched "
            "before System32)",
            conda=conda,
        )
    if low == replay.install.lib_dir.lower():
        return Place("torch-lib", f"torch's own folder {folder}")
    if low.endswith("\\library\\bin"):
        return Place(
            "library-bin",
            f"{folder} (a conda/Intel Library\\bin folder that torch adds with "
            "os.add_dll_directory)",
        )
    if is_conda_dir(ctx, folder):
        return Place("conda-root", f"the conda environment root {folder}", conda=True)
    pkg = _package_of(folder)
    if pkg:
        return Place("package", f"{folder} (bundled with the {pkg} package)", package=pkg)
    return Place("folder", folder)


def python_command(ctx: CheckContext) -> str:
    """The interpreter of the snapshot (the one whose pip must act)."""
    return ctx.snapshot.python.executable or "python"


def index_args(local: Optional[str]) -> str:
    """pip arguments selecting the PyTorch index of a build (``cu121``, ``rocm6.1``, ``xpu``);
    empty for CPU builds, which PyPI serves."""
    if local and local != "cpu" and local[:2] in ("cu", "ro", "xp"):
        return f" -i https://download.pytorch.org/whl/{local}"
    return ""


def ps_quote(text: str) -> str:
    """A PowerShell single-quoted literal (no expansion; ``'`` doubled)."""
    return "'" + text.replace("'", "''") + "'"


def pip_commands(ctx: CheckContext, *args: str) -> Dict[str, Tuple[str, ...]]:
    """PowerShell and cmd lines that run ``python -m pip <args>`` for each ``args`` with this
    environment's interpreter (named once, so the pip lines stay short)."""
    exe = python_command(ctx)
    return {
        "powershell": (f"$py = {ps_quote(exe)}",) + tuple(f"& $py -m pip {a}" for a in args),
        "cmd": (f"set PY={exe}",) + tuple(f'"%PY%" -m pip {a}' for a in args),
    }


def pip_install(
    ctx: CheckContext, requirement: str, local: Optional[str] = None
) -> Dict[str, Tuple[str, ...]]:
    """Commands that install ``requirement`` into this interpreter, from the PyTorch index of
    the same build for non-PyPI builds."""
    return pip_commands(ctx, f'install "{requirement}"{index_args(local)}')


def redist_fix(url_note: str = "") -> Tuple[Tuple[str, ...], Dict[str, Tuple[str, ...]]]:
    """The steps and commands that install (or update) the x64 VC++ 2015-2022 Redistributable.
    Commands are run in order, each line short enough for an 80-column terminal."""
    table = _runtime_table()
    url, key, wid = table["redist_url"], table["registry_key"], table["winget_id"]
    steps = (
        f"Install the current Microsoft Visual C++ 2015-2022 Redistributable (x64): {url} (or "
        f"with winget, below){url_note}; then open a new terminal.",
        f"Check what is installed: the registry key {key} (Version, Installed).",
    )
    commands = {
        "powershell": (
            f"winget install --id {wid} -e",
            f"$k = '{key.replace('HKLM', 'HKLM:')}'",
            "Get-ItemProperty $k | Select-Object Version, Installed",
        ),
        "cmd": (
            "cd /d %TEMP%",
            f"curl -L -o vc_redist.x64.exe {url}",
            "vc_redist.x64.exe /install /passive /norestart",
            f"set K={key}",
            "reg query %K% /v Version",
        ),
    }
    return steps, commands


def cd_commands(folder: str) -> Tuple[str, str]:
    """``(powershell, cmd)`` lines that enter ``folder`` (so the next lines stay short)."""
    return f"cd {ps_quote(folder)}", f'cd /d "{folder}"'


def _required_msvcp(toolset: Toolset) -> Toolset:
    """The msvcp140 version a toolset needs not to *fail*: 14.40 for code built by 14.40+."""
    return MSVCP_CONSTEXPR_MUTEX if toolset >= MSVCP_CONSTEXPR_MUTEX else (0, 0)


def _older(copy: Copy, toolset: Toolset) -> bool:
    return copy.version is not None and tuple(copy.version[:2]) < toolset


def _rule_text(copy: Copy) -> str:
    if copy.preloaded:
        return "loaded-module (already in the process before import torch)"
    rule = copy.rule.value if copy.rule else "unknown rule"
    return rule + (
        " (resolved without replaying: the replay stopped earlier)" if copy.static else ""
    )


# --------------------------------------------------------------------------------------------
# vcredist-missing and the satellite DLLs torch never probes
# --------------------------------------------------------------------------------------------


def _tried(res: Optional[Resolution]) -> List[Evidence]:
    if res is None:
        return []
    folders: List[str] = []
    for cand in res.candidates:
        d = ntpath.dirname(cand.path)
        if d not in folders:
            folders.append(d)
    return [Evidence("searched", "; ".join(folders))] if folders else []


def _probe_resolution(replay: TorchReplay, name: str) -> Optional[Resolution]:
    for step in replay.steps:
        if step.action == "vc_probe" and step.target.lower() == name and step.result is not None:
            return step.result.resolution
    return None


def _missing_edges(replay: TorchReplay, names: Sequence[str]) -> List[Edge]:
    """Static imports of ``names`` that no load resolved (a first attempt that failed with 126
    and a PATH fallback that found the DLL does not count)."""
    low = {n.lower() for n in names}
    edges = [e for e in replay.simulation.edges if not e.delay and e.name.lower() in low]
    found = {e.name.lower() for e in edges if e.resolution.path is not None}
    return [e for e in edges if e.resolution.path is None and e.name.lower() not in found]


def _vcredist_missing(ctx: CheckContext, replay: TorchReplay) -> Iterator[Finding]:
    culprit = failing_edge(replay)
    explains = (
        culprit is not None and culprit.resolution.path is None and culprit.name.lower() in CORE
    )
    missing = sorted({e.name.lower() for e in _missing_edges(replay, CORE)})
    probe = [n.lower() for n in replay.vc_probe_failed]
    if not missing and not probe:
        return
    names = sorted(set(missing) | set(probe))
    ev: List[Evidence] = []
    if probe:
        ev.append(
            Evidence(
                "torch's probe",
                f"ctypes.CDLL({probe[0]!r}) fails: torch prints 'Microsoft Visual C++ "
                "Redistributable is not installed, this may lead to the DLL load failure.'",
            )
        )
    seen = sorted({(e.name, ntpath.basename(e.importer)) for e in _missing_edges(replay, CORE)})
    for name, importer in seen[:3]:
        ev.append(Evidence("not found", f"{name}, imported by {importer}"))
    also = [name for name, _, _ in _missing_satellites(ctx, replay, torch_images(ctx, replay))]
    if also:
        ev.append(
            Evidence(
                "also missing", ", ".join(also) + " (same Redistributable; torch never probes them)"
            )
        )
    ev += _tried(
        culprit.resolution if explains and culprit else _probe_resolution(replay, names[0])
    )
    if ctx.snapshot.vc_redist_x64 is not None:
        # The registry says a Redistributable is installed, yet the DLLs are not found:
        # a broken install (or files removed by hand), not a missing one.
        ev.append(Evidence("registry", f"VC++ Redistributable x64 {ctx.snapshot.vc_redist_x64 or '(no version)'} "
                           "is recorded as installed: repair it rather than install it"))
    steps, commands = redist_fix()
    if explains or missing:
        severity, title = (
            Severity.ERROR,
            f"the VC++ Redistributable (x64) is missing: {', '.join(names)} not found",
        )
    else:
        severity = Severity.WARNING
        title = f"torch will warn that the VC++ Redistributable is missing ({', '.join(names)})"
        ev.append(
            Evidence(
                "note",
                "torch still loads: its DLLs find the runtime later (PATH fallback), but only by "
                "luck of PATH",
            )
        )
    yield Finding(
        "vcredist-missing",
        severity,
        title,
        detail=(
            "torch's DLLs import the Microsoft Visual C++ runtime (msvcp140.dll, "
            "vcruntime140.dll, vcruntime140_1.dll); it is found neither next to the application, "
            "nor in torch's DLL directories, nor in System32."
        ),
        confidence=Confidence.CERTAIN,
        evidence=tuple(ev),
        fix=steps,
        commands=commands,
        references=("pytorch/pytorch#39734", "pytorch/pytorch#39841"),
        explains=replay.prediction.target if explains else None,
    )


def _core_missing(replay: TorchReplay) -> bool:
    return bool(replay.vc_probe_failed or _missing_edges(replay, CORE))


def _missing_satellites(
    ctx: CheckContext, replay: TorchReplay, images: Sequence[TorchImage]
) -> List[Tuple[str, Mapping[str, Any], Tuple[TorchImage, ...]]]:
    """The runtime DLLs torch's probe never checks that torch imports and cannot find:
    ``(name, table row, importers)``."""
    out: List[Tuple[str, Mapping[str, Any], Tuple[TorchImage, ...]]] = []
    for name, row in _runtime_table()["dlls"].items():
        users = importers_of(images, name)
        if row.get("finding") and users:
            if bound_copy(ctx, replay, name, importer=users[0].path) is None:
                out.append((name, row, users))
    return out


def _satellites(
    ctx: CheckContext, replay: TorchReplay, images: Sequence[TorchImage]
) -> Iterator[Finding]:
    if _core_missing(replay):
        return  # the whole Redistributable is missing: vcredist-missing names them too
    culprit = failing_edge(replay)
    for name, row, users in _missing_satellites(ctx, replay, images):
        seen = _missing_edges(replay, (name,))
        explains = (
            culprit is not None and culprit.resolution.path is None and culprit.name.lower() == name
        )
        res = seen[0].resolution if seen else static_resolution(ctx, replay, name, users[0].path)
        ev = [
            Evidence("imported by", ", ".join(u.name for u in users)),
            Evidence("in the Redistributable since", row["since"]),
            Evidence(
                "torch's probe",
                "checks only "
                + ", ".join(n for n, r in _runtime_table()["dlls"].items() if r.get("probed"))
                + ": no warning is printed",
            ),
        ]
        sys_copy = ntpath.join(ctx.snapshot.system32 or "C:\\Windows\\System32", MSVCP)
        if ctx.view.host_path(sys_copy):
            ev.append(Evidence("System32 msvcp140.dll", version_text(_file_version(ctx, sys_copy))))
        ev += _tried(res)
        steps, commands = redist_fix(f" ({row['since']} or later ships {name})")
        yield Finding(
            row["finding"],
            Severity.ERROR,
            f"{name} is missing: {users[0].name} cannot load (WinError 126)",
            detail=(
                f"{users[0].name} of torch {replay.install.version} imports {name}, which ships "
                f"with the VC++ Redistributable {row['since']} and later; no copy is found where "
                "torch's DLLs look."
                + ("" if seen else " The replay stopped earlier, so this failure comes next.")
            ),
            confidence=Confidence.CERTAIN if seen else Confidence.LIKELY,
            evidence=tuple(ev),
            fix=steps,
            commands=commands,
            references=("shared/research/causes.md section 2.1",),
            explains=replay.prediction.target if explains else None,
        )


# --------------------------------------------------------------------------------------------
# Older runtimes: msvcp140 (the 1114 of torch >= 2.9), preloaded copies, hosts, the rest
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OldRuntime:
    """A runtime DLL torch binds that is older than the newest toolset among its importers."""

    copy: Copy
    place: Place
    importer: TorchImage

    @property
    def toolset(self) -> Toolset:
        return self.importer.toolset

    @property
    def fails(self) -> bool:
        """The 1114 rule of the replay (:func:`torchdll.torchload.stl_mutex_rule`): msvcp140
        < 14.40 bound to code *linked* by MSVC >= 14.40."""
        linker = self.importer.facts.linker_version
        return (
            self.copy.name == MSVCP
            and self.copy.version is not None
            and tuple(self.copy.version[:2]) < _required_msvcp(linker)
        )


def _interpreter_own(old: OldRuntime) -> bool:
    """python.exe's own vcruntime140*.dll: loaded at start, torch cannot bind another one."""
    return old.place.kind == "app-python" and old.copy.name in INTERPRETER_OWN


def _old_runtimes(
    ctx: CheckContext, replay: TorchReplay, images: Sequence[TorchImage]
) -> List[OldRuntime]:
    out: List[OldRuntime] = []
    for name in _runtime_table()["dlls"]:
        users = importers_of(images, name)
        if not users:
            continue
        top = _newest(users)
        copy = bound_copy(ctx, replay, name, importer=top.path)
        if copy is not None and _older(copy, top.toolset):
            out.append(OldRuntime(copy, place_of(ctx, replay, copy.path), top))
    return out


def _explains(replay: TorchReplay, path: str) -> bool:
    edge = failing_edge(replay)
    return (
        edge is not None
        and edge.resolution.path is not None
        and edge.resolution.path.lower() == path.lower()
        and replay.prediction.winerror in (1114, 127, 182)
    )


def _copy_evidence(old: OldRuntime, replay: TorchReplay) -> List[Evidence]:
    c = old.copy
    return [
        Evidence(
            "torch needs",
            f"{old.importer.name} of torch {replay.install.version} is linked by MSVC "
            f"{_toolset_text(old.toolset)}",
        ),
        Evidence("bound copy", f"{c.path} (FileVersion {version_text(c.version)})"),
        Evidence("found by", f"{_rule_text(c)}: {old.place.text}"),
    ]


def _system32_copy_evidence(ctx: CheckContext, old: OldRuntime) -> List[Evidence]:
    if old.place.kind == "system32":
        return []
    other = ntpath.join(ctx.snapshot.system32 or "C:\\Windows\\System32", old.copy.name)
    if not ctx.view.host_path(other):
        return [Evidence("System32", f"no {old.copy.name}")]
    return [
        Evidence(
            "System32",
            f"{other} is {version_text(_file_version(ctx, other))}, not used: "
            f"{'the loaded copy wins' if old.copy.preloaded else 'this folder is searched first'}",
        )
    ]


def _fix_for_place(ctx: CheckContext, old: OldRuntime) -> Tuple[List[str], Dict[str, List[str]]]:
    """Steps for an old copy in ``old.place``; the commands carry out the first step only."""
    c, place = old.copy, old.place
    if place.kind == "system32":
        redist_steps, redist_cmds = redist_fix(" -- 14.40 or later" if old.fails else "")
        return list(redist_steps), {k: list(v) for k, v in redist_cmds.items()}
    ps_cd, cmd_cd = cd_commands(c.folder)
    rename = (
        "move the old copy out of the way so the current one from System32 is used: rename "
        f"{c.path} (install the current VC++ Redistributable first)"
    )
    if place.conda:
        steps = [
            f"Update the conda runtime package that put {c.name} into {c.folder}: vc14_runtime "
            "14.40 or later (conda-forge).",
            f"Or {rename}.",
        ]
        line = 'conda install -p . -c conda-forge "vc14_runtime>=14.40"'
        return steps, {"powershell": [ps_cd, line], "cmd": [cmd_cd, line]}
    steps = [
        rename[0].upper() + rename[1:] + ".",
        f"Or update or remove what installed it ({place.text}).",
    ]
    return steps, {
        "powershell": [ps_cd, f"Rename-Item {c.name} {c.name}.old"],
        "cmd": [cmd_cd, f"ren {c.name} {c.name}.old"],
    }


def _msvcp140_verdict(
    ctx: CheckContext, replay: TorchReplay, olds: Sequence[OldRuntime]
) -> Iterator[Finding]:
    old = next((o for o in olds if o.copy.name == MSVCP), None)
    if old is None or old.place.kind == "app-host":
        return  # fine, or reported by host-process-runtime
    if old.copy.preloaded and old.place.kind not in ("system32", "app-python"):
        yield _preloaded_finding(ctx, replay, old)
        return
    explains = _explains(replay, old.copy.path)
    ev = _copy_evidence(old, replay)
    if old.fails:
        ev.append(
            Evidence(
                "rule",
                "msvcp140.dll older than 14.40 with code built by MSVC 14.40+: std::mutex's "
                "constexpr constructor (microsoft/STL#4730) makes c10.dll's static "
                "initialisation fail -> WinError 1114",
            )
        )
    ev += _system32_copy_evidence(ctx, old)
    ev += [
        Evidence("same folder, also older", f"{o.copy.name} {version_text(o.copy.version)}")
        for o in olds
        if o is not old
        and o.copy.folder.lower() == old.copy.folder.lower()
        and not _interpreter_own(o)
    ]
    steps, commands = _fix_for_place(ctx, old)
    if old.fails:
        steps.append(
            "Or, if you cannot change the runtime, use torch 2.8 (built with MSVC 14.38): "
            f'python -m pip install "torch<2.9"{index_args(replay.install.local)}'
        )
    version = version_text(old.copy.version)
    if old.fails:
        title = (
            f"msvcp140.dll {version} is too old for torch {replay.install.version}: WinError 1114 "
            "on c10.dll"
        )
        severity, confidence = Severity.ERROR, Confidence.LIKELY
    elif explains:
        title = f"msvcp140.dll {version} is older than torch's toolset and lacks what torch imports"
        severity, confidence = Severity.ERROR, Confidence.CERTAIN
    else:
        title = (
            f"msvcp140.dll {version} is older than the MSVC {_toolset_text(old.toolset)} that "
            "built torch (same side of 14.40: no known failure)"
        )
        severity, confidence = Severity.WARNING, Confidence.POSSIBLE
    yield Finding(
        "msvcp140-too-old",
        severity,
        title,
        detail=(
            f"torch binds {old.copy.path}, found by the rule '{_rule_text(old.copy)}'; it is older "
            f"than the toolset that built {old.importer.name}."
        ),
        confidence=confidence,
        evidence=tuple(ev),
        fix=tuple(steps),
        commands={k: tuple(v) for k, v in commands.items()},
        references=("pytorch/pytorch#169429", "microsoft/STL#4730", "pytorch/pytorch#196987"),
        explains=replay.prediction.target if explains else None,
    )


def _preloaded_finding(ctx: CheckContext, replay: TorchReplay, old: OldRuntime) -> Finding:
    c = old.copy
    who = old.place.package or ntpath.dirname(c.path)
    ev = _copy_evidence(old, replay) + _system32_copy_evidence(ctx, old)
    steps = [
        f"Import torch before {who}: put 'import torch' at the top of the main script (before Qt, "
        "spaCy or the plugin that loads it).",
        f"Or update {who} to a release that ships msvcp140 14.40 or later (PyQt6 >= 6.7 does), or "
        "run the torch work in a separate process.",
        "A fresh 'python -c \"import torch\"' works: only this process's import order is at fault.",
    ]
    explains = _explains(replay, c.path)
    return Finding(
        "old-msvcp140-preloaded",
        Severity.ERROR if old.fails or explains else Severity.WARNING,
        f"{who} already loaded msvcp140.dll {version_text(c.version)}: "
        + ("import torch fails with WinError 1114" if old.fails else "older than torch's toolset"),
        detail=(
            f"{c.path} was loaded before import torch; Windows reuses a loaded module by its base "
            "name, so every torch DLL binds that copy whatever the search order."
        ),
        confidence=Confidence.LIKELY if old.fails else Confidence.POSSIBLE,
        evidence=tuple(ev),
        fix=tuple(steps),
        references=(
            "pytorch/pytorch#166628",
            "micro-manager/pymmcore#119",
            "explosion/spaCy#13894",
        ),
        explains=replay.prediction.target if explains else None,
    )


def _bundled_copies(ctx: CheckContext, replay: TorchReplay) -> List[str]:
    """``msvcp140.dll`` copies bundled by packages next to torch (loaded if imported first)."""
    site = replay.install.site_packages
    out: List[str] = []
    folders = list(_runtime_table()["bundling_packages"]["folders"])
    for low, real in ctx.view.listdir(site).items():
        if "." not in low or low.endswith(".libs"):
            folders.append(real)
    for rel in folders:
        folder = ntpath.join(site, rel)
        if MSVCP in ctx.view.listdir(folder):
            path = ntpath.join(folder, ctx.view.listdir(folder)[MSVCP])
            if path.lower() not in (o.lower() for o in out):
                out.append(path)
    return out


def _bundled_risk(
    ctx: CheckContext, replay: TorchReplay, images: Sequence[TorchImage], olds: Sequence[OldRuntime]
) -> Iterator[Finding]:
    users = importers_of(images, MSVCP)
    if not users or any(o.copy.name == MSVCP and o.copy.preloaded for o in olds):
        return
    top = _newest(users)
    need = _required_msvcp(top.toolset)
    if need == (0, 0):
        return
    for path in _bundled_copies(ctx, replay):
        version = _file_version(ctx, path)
        if version is None or tuple(version[:2]) >= need:
            continue
        pkg = _package_of(ntpath.dirname(path)) or ntpath.dirname(path)
        yield Finding(
            "old-msvcp140-preloaded",
            Severity.WARNING,
            f"{pkg} bundles msvcp140.dll {version_text(version)}: importing it before torch "
            "breaks torch (WinError 1114)",
            detail=(
                f"If {pkg} is imported before torch, its msvcp140.dll stays loaded and torch "
                f"{replay.install.version} (MSVC {_toolset_text(top.toolset)}) fails to initialise "
                "c10.dll."
            ),
            confidence=Confidence.POSSIBLE,
            evidence=(
                Evidence("bundled copy", f"{path} (FileVersion {version_text(version)})"),
                Evidence("torch needs", f"msvcp140.dll >= {_toolset_text(need)}"),
            ),
            fix=(
                f"Import torch before {pkg} in every entry point.",
                f"Or update {pkg} to a release with a current runtime.",
            ),
            references=("micro-manager/pymmcore#119", "explosion/spaCy#13894"),
        )


def _host_runtime(
    ctx: CheckContext, replay: TorchReplay, olds: Sequence[OldRuntime]
) -> Iterator[Finding]:
    if not is_host_process(ctx):
        return
    here = [o for o in olds if o.place.kind == "app-host"]
    if not here:
        return
    fails = any(o.fails for o in here)
    explains = any(_explains(replay, o.copy.path) for o in here)
    ev = [
        Evidence(
            "application directory", f"{ctx.snapshot.app_dir} (no python.exe: Python is embedded)"
        )
    ]
    for o in here:
        ev.append(
            Evidence(
                o.copy.name,
                f"{o.copy.path} {version_text(o.copy.version)} < MSVC {_toolset_text(o.toolset)} "
                f"of {o.importer.name}",
            )
        )
    yield Finding(
        "host-process-runtime",
        Severity.ERROR if fails or explains else Severity.WARNING,
        (
            "the host application's VC++ runtime is too old for torch: WinError 1114"
            if fails
            else "the host application's folder holds VC++ runtime DLLs older than torch's toolset"
        ),
        detail=(
            "The loader searches the application directory before System32, so the host's own "
            "runtime DLLs win; installing the VC++ Redistributable does not change that."
        ),
        confidence=Confidence.LIKELY if fails else Confidence.POSSIBLE,
        evidence=tuple(ev),
        fix=(
            "Update the host application (a release that ships the VC++ runtime 14.40 or later).",
            "Import torch as early as possible in the host (before its plugins load their DLLs).",
            "Or run torch in a separate python.exe process (a worker started with subprocess).",
        ),
        references=("TerraLabAI/QGIS_AI-Segmentation#150", "pytorch/pytorch#104128"),
        explains=replay.prediction.target if explains else None,
    )


def _older_than_toolset(
    ctx: CheckContext, replay: TorchReplay, olds: Sequence[OldRuntime]
) -> Iterator[Finding]:
    msvcp = next((o for o in olds if o.copy.name == MSVCP and o.place.kind != "app-host"), None)
    reported = {msvcp.copy.folder.lower()} if msvcp is not None else set()
    groups: Dict[str, List[OldRuntime]] = {}
    for o in olds:
        if o.copy.name == MSVCP or o.place.kind == "app-host" or o.copy.folder.lower() in reported:
            continue
        if _interpreter_own(o):
            continue  # python.exe's own copy: loaded at start, the tested configuration
        groups.setdefault(o.copy.folder, []).append(o)
    for folder, items in groups.items():
        explains = any(_explains(replay, o.copy.path) for o in items)
        ev: List[Evidence] = []
        for o in items:
            ev += _copy_evidence(o, replay)
        steps, commands = _fix_for_place(ctx, items[0])
        names = ", ".join(f"{o.copy.name} {version_text(o.copy.version)}" for o in items)
        yield Finding(
            "runtime-older-than-toolset",
            Severity.ERROR if explains else Severity.WARNING,
            f"{names} in {folder} {'is' if len(items) == 1 else 'are'} older than the toolset "
            "that built torch",
            detail=(
                "Microsoft requires the VC++ runtime to be at least as new as the newest toolset "
                "of any component; these copies are older."
            ),
            confidence=Confidence.CERTAIN if explains else Confidence.POSSIBLE,
            evidence=tuple(ev),
            fix=tuple(steps),
            commands={k: tuple(v) for k, v in commands.items()},
            references=("https://learn.microsoft.com/cpp/porting/binary-compat-2015-2017",),
            explains=replay.prediction.target if explains else None,
        )


def check_runtime(ctx: CheckContext) -> Iterable[Finding]:
    """VC++ runtime findings for every replayed torch."""
    out: List[Finding] = []
    for replay in ctx.replays:
        images = torch_images(ctx, replay)
        if not loadable(ctx, images):
            continue  # wrong-architecture-193 (platform) says it all
        olds = _old_runtimes(ctx, replay, images)
        out += _vcredist_missing(ctx, replay)
        out += _msvcp140_verdict(ctx, replay, olds)
        out += _host_runtime(ctx, replay, olds)
        out += _bundled_risk(ctx, replay, images, olds)
        out += _satellites(ctx, replay, images)
        out += _older_than_toolset(ctx, replay, olds)
    return out
