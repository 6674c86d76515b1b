"""OpenMP runtimes: torch 2.4.0's libomp140, two Intel OpenMP runtimes in one process, and
conda environments that mix OpenMP providers (WinError 182).

torch's wheels ship Intel OpenMP (``torch\\lib\\libiomp5md.dll``) and load it by full path, so
another copy that is -- or will be -- in the process is a second runtime: the Intel runtime
aborts the whole process when it finds another one initialised (``OMP: Error #15``), which is
not an exception torch can report. torch 2.4.0's cp310-cp312 wheels instead import
``libomp140.x86_64.dll``, LLVM's OpenMP that only Visual Studio installs.
"""

from __future__ import annotations

import ntpath
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

from ..closure import Edge, MissingSymbol
from ..report import Confidence, Evidence, Finding, Severity
from ..torchload import TorchReplay
from . import CheckContext
from .runtime import (
    TorchImage,
    bound_copy,
    failing_edge,
    family_data,
    importers_of,
    loadable,
    pip_install,
    place_of,
    static_resolution,
    torch_images,
    version_text,
)

__all__ = ["check_openmp", "conda_packages"]

LIBOMP140 = "libomp140.x86_64.dll"
IOMP = "libiomp5md.dll"
ERROR_INVALID_ORDINAL = 182


def _table() -> Mapping[str, Any]:
    table: Mapping[str, Any] = family_data("openmp")["openmp"]
    return table


# --------------------------------------------------------------------------------------------
# libomp140-missing
# --------------------------------------------------------------------------------------------


def _ordinals(image: TorchImage, name: str) -> Tuple[int, ...]:
    low = name.lower()
    for imp in image.facts.static_imports:
        if imp.dll.lower() == low:
            return imp.ordinals
    return ()


def _libomp140(
    ctx: CheckContext, replay: TorchReplay, images: Sequence[TorchImage]
) -> Iterator[Finding]:
    users = importers_of(images, LIBOMP140)
    if not users or bound_copy(ctx, replay, LIBOMP140, importer=users[0].path) is not None:
        return
    culprit = failing_edge(replay)
    explains = (
        culprit is not None
        and culprit.resolution.path is None
        and culprit.name.lower() == LIBOMP140
    )
    seen = any(
        e.name.lower() == LIBOMP140 and e.resolution.path is None for e in replay.simulation.edges
    )
    res = (
        culprit.resolution
        if explains and culprit
        else static_resolution(ctx, replay, LIBOMP140, users[0].path)
    )
    ev: List[Evidence] = []
    for user in users:
        ords = _ordinals(user, LIBOMP140)
        what = f"{len(ords)} by ordinal: #{', #'.join(map(str, ords[:5]))}" if ords else "by name"
        ev.append(Evidence("imported by", f"{user.name} ({what})"))
    folders: List[str] = []
    for cand in res.candidates:
        if ntpath.dirname(cand.path) not in folders:
            folders.append(ntpath.dirname(cand.path))
    if folders:
        ev.append(Evidence("searched", "; ".join(folders)))
    ev.append(
        Evidence(
            "not redistributable",
            "Visual Studio ships it in "
            "VC\\Redist\\MSVC\\<version>\\debug_nonredist\\x64\\Microsoft.VC143.OpenMP.LLVM; the "
            "VC++ Redistributable does not",
        )
    )
    fixed = str(_table()["fixed_torch_for_libomp140"])
    install = replay.install
    commands = pip_install(ctx, f"torch=={fixed}", install.local)
    yield Finding(
        "libomp140-missing",
        Severity.ERROR,
        f"{LIBOMP140} is missing: torch {install.version} fails with WinError 126 on "
        f"{users[0].name}",
        detail=(
            f"torch {install.base_version}'s {', '.join(u.name for u in users)} import LLVM OpenMP "
            "from Visual Studio, which is not installed here (a packaging regression of the 2.4.0 "
            f"wheels, fixed in {fixed})."
        ),
        confidence=Confidence.CERTAIN if (explains or seen) else Confidence.LIKELY,
        evidence=tuple(ev),
        fix=(
            f"Upgrade to torch {fixed} (same features, imports libiomp5md.dll from torch\\lib "
            "instead), or go back to 2.3.1; keep torchvision/torchaudio matching.",
            "Or install the Visual Studio 2022 Build Tools with 'MSVC v143 - VS 2022 C++ x64/x86 "
            f"build tools' (users report it provides {LIBOMP140}).",
            f"Do not download {LIBOMP140} from DLL download sites.",
        ),
        commands=commands,
        references=("pytorch/pytorch#131662", "pytorch/pytorch#130697", "kohya-ss/sd-scripts#1597"),
        explains=replay.prediction.target if explains else None,
    )


# --------------------------------------------------------------------------------------------
# omp-duplicate-runtime
# --------------------------------------------------------------------------------------------


def _mapped_copies(ctx: CheckContext, replay: TorchReplay) -> List[str]:
    """Every distinct path of ``libiomp5md.dll`` in the process after the replay: modules loaded
    before the import, then what each load call mapped."""
    out: List[str] = []

    def add(path: str) -> None:
        if ntpath.basename(path).lower() == IOMP and path.lower() not in (o.lower() for o in out):
            out.append(path)

    for path in ctx.snapshot.loaded_modules:
        add(path)
    for result in replay.simulation.results:
        for path in result.mapped:
            add(path)
    return out


def _candidate_folders(ctx: CheckContext, replay: TorchReplay) -> List[str]:
    """Folders from which another package (or a load by name) may bring a second copy."""
    snap, py = ctx.snapshot, ctx.snapshot.python
    folders: List[str] = list(replay.dll_paths)
    folders += [snap.app_dir, snap.system32 or "C:\\Windows\\System32"]
    for prefix in (py.prefix, py.base_prefix):
        if prefix:
            folders += [prefix, ntpath.join(prefix, "Library", "bin")]
    if py.userbase:
        folders.append(ntpath.join(py.userbase, "Library", "bin"))
    folders += list(ctx.context.path)
    site = replay.install.site_packages
    for low, real in ctx.view.listdir(site).items():
        if ("." not in low or low.endswith(".libs")) and low != "torch":
            folders.append(ntpath.join(site, real))
    return folders


def _reachable_copies(ctx: CheckContext, replay: TorchReplay, exclude: Iterable[str]) -> List[str]:
    skip = {p.lower() for p in exclude}
    out: List[str] = []
    seen: Set[str] = set()
    for folder in _candidate_folders(ctx, replay):
        key = folder.rstrip("\\").lower()
        if not folder or key in seen:
            continue
        seen.add(key)
        real = ctx.view.listdir(folder).get(IOMP)
        if real is None:
            continue
        path = ntpath.join(folder.rstrip("\\"), real)
        if path.lower() not in skip:
            out.append(path)
    return out


def _truthy(value: Optional[str]) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _copy_line(ctx: CheckContext, replay: TorchReplay, path: str) -> Evidence:
    facts = ctx.facts(path)
    version = facts.version.file_version if facts is not None and facts.version else None
    return Evidence(
        "copy", f"{path} (FileVersion {version_text(version)}; {place_of(ctx, replay, path).text})"
    )


def _conda_commands(
    ctx: CheckContext, replay: TorchReplay, others: Sequence[str]
) -> Dict[str, Tuple[str, ...]]:
    """conda commands, when the other copies come from a conda environment."""
    kinds = {place_of(ctx, replay, p).kind for p in others}
    conda = ctx.snapshot.python.conda or any(place_of(ctx, replay, p).conda for p in others)
    if not conda and "library-bin" not in kinds:
        return {}
    lines = ("conda list openmp", "conda list mkl", "conda install nomkl")
    return {"powershell": lines, "cmd": lines}


def _duplicates(ctx: CheckContext, replay: TorchReplay) -> Iterator[Finding]:
    install = replay.install
    real = ctx.view.listdir(install.lib_dir).get(IOMP)
    if real is None:
        return  # this torch does not ship its own Intel OpenMP
    own = ntpath.join(install.lib_dir, real)
    mapped = _mapped_copies(ctx, replay)
    others_loaded = [p for p in mapped if p.lower() != own.lower()]
    both = bool(others_loaded) and any(p.lower() == own.lower() for p in mapped)
    others = others_loaded or _reachable_copies(ctx, replay, [own])
    if not others:
        return
    allowed = _truthy(ctx.snapshot.environ.get("KMP_DUPLICATE_LIB_OK"))
    ev = [_copy_line(ctx, replay, own)] + [_copy_line(ctx, replay, p) for p in others]
    if others_loaded:
        ev.append(
            Evidence(
                "already loaded",
                f"{others_loaded[0]} is in the process before import torch; torch loads {own} by "
                "full path: two OpenMP runtimes",
            )
        )
    if allowed:
        ev.append(
            Evidence(
                "KMP_DUPLICATE_LIB_OK",
                "TRUE: the abort is suppressed; Intel calls this unsafe and unsupported (wrong "
                "results, crashes)",
            )
        )
    if both and not allowed:
        severity, confidence = Severity.ERROR, Confidence.LIKELY
        title = f"import torch will abort the process: 'OMP: Error #15' ({IOMP} already loaded)"
    else:
        severity = Severity.WARNING
        confidence = Confidence.LIKELY if others_loaded else Confidence.POSSIBLE
        title = (
            f"two copies of {IOMP} in one process (suppressed by KMP_DUPLICATE_LIB_OK)"
            if both
            else f"a second {IOMP} can be loaded with torch's: 'OMP: Error #15' if both initialise"
        )
    yield Finding(
        "omp-duplicate-runtime",
        severity,
        title,
        detail=(
            "The Intel OpenMP runtime aborts the process when another copy of itself is "
            "initialised ('OMP: Error #15: Initializing libiomp5md.dll, but found libiomp5md.dll "
            "already initialized') -- a hard exit, not a Python exception. Which copy loads first "
            "depends on import order (numpy/MKL from conda, other wheels that bundle it, then "
            "torch)."
        ),
        confidence=confidence,
        evidence=tuple(ev),
        fix=(
            "Keep one OpenMP runtime per environment: in a conda environment with pip torch, "
            "install numpy and friends without MKL ('conda install nomkl', or pip's numpy), or "
            "use conda's torch.",
            "Or remove the extra copy's package if nothing needs it; import torch first as a "
            "stopgap.",
            "Do not rely on KMP_DUPLICATE_LIB_OK=TRUE: it only hides the conflict.",
        ),
        commands=_conda_commands(ctx, replay, others),
        references=("pytorch/pytorch#191367", "meta-pytorch/csprng#115", "HiLab-git/MIDeepSeg#4"),
    )


# --------------------------------------------------------------------------------------------
# conda-openmp-mix
# --------------------------------------------------------------------------------------------


def conda_packages(ctx: CheckContext, prefix: str) -> Tuple[str, ...]:
    """Names of the packages in ``prefix\\conda-meta`` (``name-version-build.json``)."""
    names: List[str] = []
    for low in ctx.view.listdir(ntpath.join(prefix, "conda-meta")):
        if low.endswith(".json") and low.count("-") >= 2:
            names.append(low[: -len(".json")].rsplit("-", 2)[0])
    return tuple(sorted(set(names)))


def _providers(ctx: CheckContext) -> Tuple[str, List[str], List[str]]:
    """The conda prefix looked at and its Intel and LLVM OpenMP packages."""
    py = ctx.snapshot.python
    groups = _table()["conda_providers"]
    for prefix in dict.fromkeys(p for p in (py.prefix, py.base_prefix) if p):
        pkgs = conda_packages(ctx, prefix)
        intel = [p for p in pkgs if p in groups["intel"]]
        llvm = [p for p in pkgs if p in groups["llvm"]]
        if intel or llvm:
            return prefix, intel, llvm
    return "", [], []


def _ordinal_failure(replay: TorchReplay) -> Optional[Tuple[Edge, MissingSymbol]]:
    edge = failing_edge(replay)
    if edge is None or replay.prediction.winerror != ERROR_INVALID_ORDINAL:
        return None
    miss = next((m for m in edge.missing if m.error == ERROR_INVALID_ORDINAL), None)
    return (edge, miss) if miss is not None else None


def _is_openmp(name: str) -> bool:
    low = ntpath.basename(name).lower()
    return any(low.startswith(p) for p in _table()["ordinal_exporters"])


def _openmp_mix(ctx: CheckContext, replay: TorchReplay) -> Iterator[Finding]:
    prefix, intel, llvm = _providers(ctx)
    mixed = bool(intel and llvm)
    failure = _ordinal_failure(replay)
    relevant = failure is not None and (
        mixed or _is_openmp(failure[1].exporter) or _is_openmp(failure[0].name)
    )
    if not relevant and not mixed:
        return
    ev: List[Evidence] = []
    if failure is not None and relevant:
        edge, miss = failure
        res = edge.resolution
        ev += [
            Evidence("importer", edge.importer),
            Evidence("imports", f"{miss.symbol} (an ordinal) from {edge.name}"),
            Evidence(
                "resolved to",
                f"{res.path} [{res.rule.value if res.rule else '?'}], which lacks it"
                + (f" (in {miss.exporter})" if miss.exporter != res.path else ""),
            ),
        ]
    if prefix:
        ev.append(Evidence("conda-meta", f"{prefix}: " + ", ".join(intel + llvm)))
    where = f' -p "{prefix}"' if prefix else ""
    yield Finding(
        "conda-openmp-mix",
        Severity.ERROR if relevant else Severity.WARNING,
        (
            "WinError 182: an OpenMP/MKL DLL lacks an ordinal torch imports (mixed OpenMP "
            "providers)"
            if relevant
            else "both Intel and LLVM OpenMP are installed in this conda environment"
        ),
        detail=(
            "conda-forge's llvm-openmp ships a libiomp5md.dll compatibility shim; with "
            "intel-openmp (or a package that drags another OpenMP/MKL) in the same environment, "
            "the copy that wins does not export every ordinal the other builds import: WinError "
            "182 'The operating system cannot run %1' or 'The ordinal N could not be located'."
        ),
        confidence=Confidence.CERTAIN if relevant else Confidence.LIKELY,
        evidence=tuple(ev),
        fix=(
            "Keep one OpenMP provider in the environment: see which packages bring them (conda "
            "list openmp).",
            "Force-reinstall intel-openmp (this fixed conda-forge/pytorch-cpu-feedstock#354), or "
            "remove llvm-openmp if nothing needs it.",
            "Or recreate the environment from a single channel (conda-forge only, or pip-only "
            "torch).",
        ),
        commands={
            "powershell": (
                f"conda list{where} openmp",
                f"conda install{where} --force-reinstall intel-openmp",
            ),
            "cmd": (
                f"conda list{where} openmp",
                f"conda install{where} --force-reinstall intel-openmp",
            ),
        },
        references=(
            "robotology/robotology-superbuild#1702",
            "conda-forge/pytorch-cpu-feedstock#354",
            "pytorch/pytorch#36868",
        ),
        explains=replay.prediction.target if relevant else None,
    )


def check_openmp(ctx: CheckContext) -> Iterable[Finding]:
    """OpenMP findings for every replayed torch."""
    out: List[Finding] = []
    for replay in ctx.replays:
        images = torch_images(ctx, replay)
        if not loadable(ctx, images):
            continue  # wrong-architecture-193 (platform) says it all
        out += _libomp140(ctx, replay, images)
        out += _duplicates(ctx, replay)
        out += _openmp_mix(ctx, replay)
    return out
