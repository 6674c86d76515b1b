"""The machine, the interpreter and Windows policy: architecture (193), CUDA builds without the
NVIDIA driver, the paging file (1455), Smart App Control (4551), torch 2.3.0 and the user base's
MKL, Store Python, and long paths.

The Smart App Control state and the commit limit come from the snapshot
(``smart_app_control``, ``commit_limit``, ``commit_available``; :func:`_snapshot_fact`). A
snapshot without them (an older one, or an unreadable registry) leaves the 4551 note out and
keeps the 1455 risk at ``possible``.
"""

from __future__ import annotations

import ntpath
import os
from typing import Any, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from ..installs import read_record, read_text
from ..model import Candidate, Machine, Skip
from ..report import Confidence, Evidence, Finding, Severity
from ..resolver import machine_compatible
from ..torchload import TorchReplay
from . import CheckContext
from .runtime import (
    TorchImage,
    bound_copy,
    failing_edge,
    family_data,
    importers_of,
    index_args,
    loadable,
    pip_commands,
    process_machine,
    torch_images,
)

__all__ = ["check_platform"]

NVCUDA = "nvcuda.dll"


def _table() -> Mapping[str, Any]:
    table: Mapping[str, Any] = family_data("platform")["platform"]
    return table


def _snapshot_fact(ctx: CheckContext, name: str) -> Optional[Any]:
    """An optional snapshot field (``None`` when this snapshot version does not have it)."""
    return getattr(ctx.snapshot, name, None)


def _windows_build(ctx: CheckContext) -> int:
    parts = ctx.snapshot.os_release.split(".")
    return int(parts[2]) if len(parts) >= 3 and parts[2].isdigit() else 0


def _explains(replay: TorchReplay, code: int) -> Optional[str]:
    return replay.prediction.target if replay.prediction.winerror == code else None


def _user(replay: TorchReplay) -> str:
    return " --user" if replay.install.scope == "user" else ""


# --------------------------------------------------------------------------------------------
# wrong-architecture-193
# --------------------------------------------------------------------------------------------


def _bad_candidates(replay: TorchReplay) -> List[Candidate]:
    out: List[Candidate] = []
    seen = set()
    results = list(replay.simulation.results)
    resolutions = [r.resolution for r in results] + [e.resolution for e in replay.simulation.edges]
    for res in resolutions:
        for cand in res.candidates:
            if (
                cand.outcome in (Skip.WRONG_MACHINE, Skip.UNREADABLE)
                and cand.path.lower() not in seen
            ):
                seen.add(cand.path.lower())
                out.append(cand)
    return out


def _named_bad_file(replay: TorchReplay) -> Optional[str]:
    """The file a failing 193 load is about: a bad image it mapped, or a bad file it named."""
    failing = replay.failing
    if failing is None:
        return None
    if failing.bad_image:
        return failing.bad_image
    for cand in failing.resolution.candidates:
        if cand.outcome in (Skip.WRONG_MACHINE, Skip.UNREADABLE):
            return cand.path
    return None


def _python_fix(proc: Machine) -> Tuple[Tuple[str, ...], Mapping[str, Tuple[str, ...]]]:
    if proc == Machine.ARM64:
        steps: Tuple[str, ...] = (
            "This is an ARM64 Python: install an x64 CPython (it runs emulated on Windows on "
            "ARM) and recreate the environment with it, or use a torch build for ARM64 where one "
            "exists.",
        )
    else:
        steps = (
            "torch has no 32-bit Windows builds: install a 64-bit CPython ('Windows installer "
            "(64-bit)' from python.org, or 'winget install Python.Python.3.12'), recreate the "
            "virtual environment with it and reinstall torch.",
            "'py -0p' lists the installed Pythons; 64-bit ones are marked -64.",
        )
    check = (
        "python -c \"import struct, platform; print(struct.calcsize('P') * 8, platform.machine())\""
    )
    return steps, {"powershell": ("py -0p", check), "cmd": ("py -0p", check)}


def _architecture(
    ctx: CheckContext, replay: TorchReplay, images: Sequence[TorchImage]
) -> Iterator[Finding]:
    proc = process_machine(ctx)
    foreign = [i for i in images if not machine_compatible(proc, i.facts.machine)]
    if foreign:
        steps, commands = _python_fix(proc)
        yield Finding(
            "wrong-architecture-193",
            Severity.ERROR,
            f"this {proc.label} Python cannot load torch's {foreign[0].facts.machine.label} DLLs "
            "(WinError 193)",
            detail=(
                f"The process runs as {proc.label} ({ctx.snapshot.python.bits}-bit Python) and "
                f"torch's DLLs are built for {foreign[0].facts.machine.label}; Windows cannot map "
                "them into it."
            ),
            confidence=Confidence.CERTAIN,
            evidence=(
                Evidence(
                    "python",
                    f"{ctx.snapshot.python.executable} ({ctx.snapshot.python.bits}-bit, machine "
                    f"{ctx.snapshot.machine})",
                ),
                Evidence(
                    "torch DLLs",
                    f"{len(foreign)} of {len(images)} built for {foreign[0].facts.machine.label}, "
                    f"e.g. {foreign[0].path}",
                ),
            ),
            fix=steps,
            commands=commands,
            references=("pytorch/pytorch#41585", "tanluren/yolov3-channel-and-layer-pruning#3"),
            explains=_explains(replay, 193),
        )
        return
    bad = _bad_candidates(replay)
    if not bad:
        return
    failing = replay.failing
    named = replay.prediction.winerror == 193
    culprit = failing_edge(replay)
    only_copy = (
        culprit is not None
        and culprit.resolution.path is None
        and any(c.outcome is Skip.WRONG_MACHINE for c in culprit.resolution.candidates)
    )
    ev: List[Evidence] = []
    for cand in bad[:6]:
        facts = ctx.facts(cand.path)
        what = (
            f"built for {facts.machine.label}"
            if facts is not None and cand.outcome is Skip.WRONG_MACHINE
            else "not a valid PE image (truncated or corrupt?)"
        )
        ev.append(
            Evidence(
                "skipped" if not named else "bad file", f"{cand.path}: {what} [{cand.rule.value}]"
            )
        )
    if failing is not None and failing.bad_image:
        ev.insert(0, Evidence("invalid image", failing.bad_image))
    if named:
        severity, conf = Severity.ERROR, Confidence.CERTAIN
        name = ntpath.basename(_named_bad_file(replay) or bad[0].path)
        title = f"WinError 193: {name} is built for another architecture or damaged"
    elif only_copy and culprit is not None:
        severity, conf = Severity.ERROR, Confidence.CERTAIN
        title = f"the only {culprit.name.lower()} found is built for another architecture"
    else:
        severity, conf = Severity.INFO, Confidence.CERTAIN
        title = f"{len(bad)} DLL(s) for another architecture skipped by the loader"
    yield Finding(
        "wrong-architecture-193",
        severity,
        title,
        detail=(
            "A file named by path must match the process; a wrong-machine file found by a search "
            "is skipped (and a load that finds nothing else fails with 126)."
        ),
        confidence=conf,
        evidence=tuple(ev),
        fix=(
            "Delete or move the 32-bit/foreign copies out of those folders (they usually come "
            "from a 'DLL download' site or an old installer), or reinstall the package they "
            "belong to.",
            "If a torch DLL itself is damaged, reinstall torch: pip install --force-reinstall "
            "--no-deps torch.",
        ),
        references=(
            "pytorch/pytorch#46592",
            "pytorch/pytorch#100694",
            "patrickloeber/pytorch-chatbot#10",
        ),
        explains=replay.prediction.target if (named or only_copy) else None,
    )


# --------------------------------------------------------------------------------------------
# CUDA builds: the NVIDIA driver and the paging file
# --------------------------------------------------------------------------------------------


def _cuda_dlls(replay: TorchReplay) -> List[str]:
    prefixes = tuple(_table()["cuda_dll_prefixes"])
    return [n for n in replay.install.dlls if n.lower().startswith(prefixes)]


def _is_cuda(replay: TorchReplay) -> bool:
    return bool(replay.install.cuda) or bool(_cuda_dlls(replay))


def _path_providers(ctx: CheckContext) -> List[str]:
    out: List[str] = []
    for folder in ctx.context.path:
        real = ctx.view.listdir(folder).get(NVCUDA)
        if real:
            path = ntpath.join(folder.rstrip("\\"), real)
            if path.lower() not in (o.lower() for o in out):
                out.append(path)
    return out


def _driver(
    ctx: CheckContext, replay: TorchReplay, images: Sequence[TorchImage]
) -> Iterator[Finding]:
    if not _is_cuda(replay):
        return
    sys_copy = ntpath.join(ctx.snapshot.system32 or "C:\\Windows\\System32", NVCUDA)
    if ctx.view.host_path(sys_copy) is not None:
        return  # the NVIDIA driver is installed
    install = replay.install
    users = importers_of(images, NVCUDA)
    culprit = failing_edge(replay)
    explains = (
        culprit is not None and culprit.resolution.path is None and culprit.name.lower() == NVCUDA
    )
    providers = _path_providers(ctx)
    bound = (
        bound_copy(ctx, replay, NVCUDA, importer=users[0].path) if users and not explains else None
    )
    ev = [
        Evidence("torch build", f"{install.version} (CUDA {install.cuda or 'unknown'})"),
        Evidence("System32", f"no {NVCUDA}: the NVIDIA display driver is not installed"),
    ]
    if users:
        ev.append(Evidence("imported by", ", ".join(u.name for u in users)))
    for p in providers:
        zluda = any(m in p.lower() for m in _table()["zluda_markers"])
        ev.append(Evidence("on PATH", f"{p}" + (" (ZLUDA)" if zluda else "")))
    cpu = pip_commands(
        ctx,
        "uninstall -y torch",
        f'install{_user(replay)} "torch=={install.base_version}" -i '
        "https://download.pytorch.org/whl/cpu",
    )
    fix = (
        f"No NVIDIA GPU: install the CPU build of torch {install.base_version} (or the ROCm/XPU "
        "build for AMD/Intel GPUs).",
        "NVIDIA GPU: install the NVIDIA display driver (it puts nvcuda.dll into System32).",
        "ZLUDA: follow its setup so its nvcuda.dll folder is on PATH.",
    )
    refs = ("pytorch/pytorch#3395", "pytorch/pytorch#39327", "patientx/ComfyUI-Zluda#63")
    if bound is not None:
        yield Finding(
            "cuda-wheel-without-nvidia-driver",
            Severity.INFO,
            f"{NVCUDA} comes from PATH ({ntpath.dirname(bound.path)}), not from an NVIDIA driver",
            detail=(
                "torch's first attempt (LoadLibraryExW 0x1100) does not search PATH and fails "
                "with 126; its fallback then patches PATH and finds this copy. It works as long "
                "as that folder stays on PATH."
            ),
            confidence=Confidence.CERTAIN,
            evidence=tuple(ev),
            references=refs,
        )
        return
    if not users and not explains:
        yield Finding(
            "cuda-wheel-without-nvidia-driver",
            Severity.WARNING,
            f"a CUDA build of torch ({install.version}) without the NVIDIA driver: CUDA will be "
            "unavailable",
            detail=(
                "No torch DLL links nvcuda.dll directly, so import works; "
                "torch.cuda.is_available() is False."
            ),
            confidence=Confidence.LIKELY,
            evidence=tuple(ev),
            fix=fix,
            commands=cpu,
            references=refs,
        )
        return
    yield Finding(
        "cuda-wheel-without-nvidia-driver",
        Severity.ERROR,
        "CUDA build of torch without the NVIDIA driver: WinError 126 on "
        f"{users[0].name if users else 'caffe2_nvrtc.dll'} ({NVCUDA} missing)",
        detail=(
            f"{', '.join(u.name for u in users) or 'A torch DLL'} links the CUDA driver API "
            f"({NVCUDA}), installed only with the NVIDIA display driver; torch loads every DLL of "
            "torch\\lib at import."
        ),
        confidence=Confidence.CERTAIN,
        evidence=tuple(ev),
        fix=fix,
        commands=cpu,
        references=refs,
        explains=replay.prediction.target if explains else None,
    )


def _size(ctx: CheckContext, path: str) -> int:
    host = ctx.view.host_path(path)
    try:
        return os.path.getsize(host) if host else 0
    except OSError:
        return 0


def _pagefile(ctx: CheckContext, replay: TorchReplay) -> Iterator[Finding]:
    explains = _explains(replay, 1455)
    if not _is_cuda(replay) and explains is None:
        return
    names = _cuda_dlls(replay) or list(replay.install.dlls)
    total = sum(_size(ctx, replay.install.dll_path(n)) for n in names)
    mib = total // (1 << 20)
    ev = [
        Evidence(
            "CUDA DLLs in torch\\lib",
            f"{len(names)} files, {mib} MiB (committed again by every process that imports torch: "
            "each DataLoader worker)",
        )
    ]
    limit = _snapshot_fact(ctx, "commit_limit")
    avail = _snapshot_fact(ctx, "commit_available")
    confidence, severity = Confidence.POSSIBLE, Severity.INFO
    if isinstance(limit, int) and isinstance(avail, int):
        ev.append(Evidence("commit", f"{avail >> 20} MiB available of {limit >> 20} MiB"))
        if avail < total * 2:
            confidence, severity = Confidence.LIKELY, Severity.WARNING
    else:
        ev.append(Evidence("commit limit", "not in this snapshot (RAM + paging file size unknown)"))
    if explains:
        severity, confidence = Severity.ERROR, Confidence.CERTAIN
    yield Finding(
        "pagefile-commit-1455",
        severity,
        "WinError 1455 risk: the CUDA DLLs need a large commit in every process that imports torch",
        detail=(
            "Windows does not overcommit: if RAM + paging file cannot back the CUDA DLL images of "
            "the main process and every DataLoader worker, import torch fails with WinError 1455 "
            "'The paging file is too small for this operation to complete'."
        ),
        confidence=confidence,
        evidence=tuple(ev),
        fix=(
            "Let Windows manage the paging file size on a drive with free space (System "
            "Properties > Advanced > Performance > Virtual memory), or make it larger.",
            "Use fewer DataLoader workers (num_workers=0 to 2) when it fails in workers.",
        ),
        commands={
            "powershell": (
                "Get-CimInstance Win32_PageFileUsage |",
                "  Select-Object Name, AllocatedBaseSize, CurrentUsage",
                "(Get-CimInstance Win32_ComputerSystem).AutomaticManagedPagefile",
                "SystemPropertiesPerformance.exe",
            ),
            "cmd": ("SystemPropertiesPerformance.exe",),
        },
        references=("pytorch/pytorch#59904", "ultralytics/yolov3#1643"),
        explains=explains,
    )


# --------------------------------------------------------------------------------------------
# app-control-4551
# --------------------------------------------------------------------------------------------


def _sac_state(ctx: CheckContext) -> Optional[int]:
    value = _snapshot_fact(ctx, "smart_app_control")
    return value if isinstance(value, int) else None


def _app_control(
    ctx: CheckContext, replay: TorchReplay, images: Sequence[TorchImage]
) -> Iterator[Finding]:
    unsigned = [i for i in images if not i.facts.signed]
    explains = _explains(replay, 4551)
    if not unsigned and explains is None:
        return
    sac = _sac_state(ctx)
    table = _table()
    if explains is not None:
        severity, confidence = Severity.ERROR, Confidence.CERTAIN
        title = "WinError 4551: Application Control blocks torch's unsigned DLLs"
    elif sac == 1:
        severity, confidence = Severity.WARNING, Confidence.LIKELY
        title = f"Smart App Control is on and {len(unsigned)} of torch's DLLs are unsigned (4551)"
    elif sac == 2:  # evaluation mode; an unknown state says nothing (no noise on healthy machines)
        severity, confidence = Severity.INFO, Confidence.POSSIBLE
        title = (
            f"{len(unsigned)} of torch's DLLs are unsigned: if Smart App Control is on, Windows "
            "blocks them (WinError 4551)"
        )
    else:
        return
    state = table["sac_states"].get(str(sac), "unknown (not in this snapshot)")
    names = ", ".join(i.name for i in unsigned[:6]) + (
        f" (+{len(unsigned) - 6} more)" if len(unsigned) > 6 else ""
    )
    key = "HKLM\\SYSTEM\\CurrentControlSet\\Control\\CI\\Policy"
    yield Finding(
        "app-control-4551",
        severity,
        title,
        detail=(
            "Smart App Control (Windows 11) and App Control for Business/AppLocker policies block "
            "code without a trusted signature or reputation; torch's DLLs carry no Authenticode "
            "signature. A block can start without any change to the environment (cloud "
            "reputation)."
        ),
        confidence=confidence,
        evidence=(
            Evidence("unsigned", names),
            Evidence("Smart App Control", state),
            Evidence("Windows build", ctx.snapshot.os_release or "unknown"),
        ),
        fix=(
            "Check Windows Security > App & browser control > Smart App Control settings; turn "
            "it off if it blocks torch (on Windows 11 24H2+ it can be turned on again later).",
            "Managed machines: ask for an App Control (WDAC) allow rule for the environment's "
            "folder.",
            "The Code Integrity event log (events 3077/3033) names every blocked file.",
        ),
        commands={
            "powershell": (
                f"$k = '{key.replace('HKLM', 'HKLM:')}'",
                "Get-ItemProperty $k -Name VerifiedAndReputablePolicyState",
                "$log = 'Microsoft-Windows-CodeIntegrity/Operational'",
                "Get-WinEvent -LogName $log -MaxEvents 50 |",
                "  Where-Object Id -in 3033,3077 | Format-List TimeCreated, Message",
            ),
            "cmd": (
                f"set K={key}",
                "reg query %K% /v VerifiedAndReputablePolicyState",
                "citool.exe -lp",
            ),
        },
        references=(
            "pytorch/pytorch#182008",
            "LykosAI/StabilityMatrix#1712",
            "Comfy-Org/ComfyUI#15117",
        ),
        explains=explains,
    )


# --------------------------------------------------------------------------------------------
# mkl-userbase-2.3.0
# --------------------------------------------------------------------------------------------


def _mkl_userbase(
    ctx: CheckContext, replay: TorchReplay, images: Sequence[TorchImage]
) -> Iterator[Finding]:
    userbase = ctx.snapshot.python.userbase
    if not userbase or "userbase_library_bin" in replay.variant.dll_paths:
        return
    folder = ntpath.join(userbase, "Library", "bin")
    listing = ctx.view.listdir(folder)
    if not listing:
        return
    wanted = sorted(
        {
            imp.dll.lower()
            for i in images
            for imp in i.facts.static_imports
            if imp.dll.lower() in listing
        }
    )
    missing = [
        n
        for n in wanted
        if bound_copy(ctx, replay, n, importer=importers_of(images, n)[0].path) is None
    ]
    culprit = failing_edge(replay)
    explains = (
        culprit is not None and culprit.resolution.path is None and culprit.name.lower() in listing
    )
    if not missing and not explains:
        return
    install = replay.install
    ev = [
        Evidence("torch", f"{install.version} ({install.torch_dir})"),
        Evidence("in the user base", f"{folder}: {', '.join(missing)}"),
        Evidence("torch adds", "; ".join(replay.dll_paths) + f" -- not {folder} (added in 2.3.1)"),
    ]
    upgrade = pip_commands(ctx, f'install{_user(replay)} "torch==2.3.1"')
    snippet = f'import os; os.add_dll_directory(r"{folder}"); import torch'
    yield Finding(
        "mkl-userbase-2.3.0",
        Severity.ERROR,
        f"torch {install.base_version} cannot find its MKL DLLs in the user base: WinError 126",
        detail=(
            f"torch {install.base_version} depends on the mkl wheel, whose DLLs a user install "
            f"('pip install --user', Store Python) puts into {folder}; this torch's loader never "
            "adds that folder."
        ),
        confidence=Confidence.CERTAIN if explains else Confidence.LIKELY,
        evidence=tuple(ev),
        fix=(
            "Upgrade to torch 2.3.1 or later (it adds <userbase>\\Library\\bin), keeping "
            "torchvision/torchaudio matching.",
            "Or install torch into a virtual environment instead of the user site.",
            f"Stopgap: add the folder before importing torch: {snippet}",
        ),
        commands=upgrade,
        references=("pytorch/pytorch#125109", "pytorch/pytorch#125684"),
        explains=replay.prediction.target if explains else None,
    )


# --------------------------------------------------------------------------------------------
# ms-store-python and long-path-partial-install
# --------------------------------------------------------------------------------------------


def _store_paths(ctx: CheckContext) -> List[str]:
    py = ctx.snapshot.python
    markers = tuple(_table()["store_markers"])
    candidates = (
        py.executable,
        py.base_executable,
        py.prefix,
        py.base_prefix,
        ctx.snapshot.app_dir,
    )
    out: List[str] = []
    for path in candidates:
        if path and any(m in path.lower() + "\\" for m in markers) and path not in out:
            out.append(path)
    return out


def _store_python(ctx: CheckContext, replay: TorchReplay) -> Iterator[Finding]:
    paths = _store_paths(ctx)
    if not paths:
        return
    py = ctx.snapshot.python
    failing = not replay.prediction.ok
    ev = [Evidence("interpreter", p) for p in paths]
    if py.userbase:
        ev.append(
            Evidence(
                "user base", f"{py.userbase} ('pip install --user' and torch 2.3.0's MKL go here)"
            )
        )
    yield Finding(
        "ms-store-python",
        Severity.WARNING if failing else Severity.INFO,
        "Python from the Microsoft Store"
        + (": a known source of torch load failures" if failing else ""),
        detail=(
            "The Store Python runs from C:\\Program Files\\WindowsApps with a redirected user "
            "base and long paths, and brings no VC++ runtime of its own; torch's load failures "
            "with it come from those (see the other findings)."
        ),
        confidence=Confidence.CERTAIN,
        evidence=tuple(ev),
        fix=(
            "Prefer a python.org (or conda) Python: install it, create a virtual environment and "
            "reinstall torch there.",
        ),
        commands={
            "powershell": ("winget install -e --id Python.Python.3.12", "py -3.12 -m venv .venv"),
            "cmd": ("winget install -e --id Python.Python.3.12", "py -3.12 -m venv .venv"),
        },
        references=("pytorch/pytorch#32916", "pytorch/pytorch#23823", "SkyTNT/midi-model#15"),
    )


def _long_record_paths(
    ctx: CheckContext, site: str, dist_info: Optional[str], floor: int
) -> List[str]:
    """Full paths of the files a dist-info ``RECORD`` lists that are at least ``floor``
    characters long (RECORD's longest line bounds them all: most installs are rejected unparsed)."""
    if not dist_info:
        return []
    text = read_text(ctx.view, ntpath.join(dist_info, "RECORD")) or ""
    widest = max((len(line) for line in text.splitlines()), default=0)
    if len(site) + 1 + widest < floor:
        return []
    out: List[str] = []
    for entry in read_record(ctx.view, dist_info):
        rel = entry.path.replace("/", "\\")
        if len(site) + 1 + len(rel) < floor and ".." not in rel:
            continue
        full = ntpath.normpath(ntpath.join(site, rel))
        if len(full) >= floor:
            out.append(full)
    return out


def _long_paths(ctx: CheckContext, replay: TorchReplay) -> Iterator[Finding]:
    if ctx.snapshot.long_paths_enabled:
        return
    table = _table()
    limit, near = int(table["max_path"]), int(table["near_max_path"])
    install = replay.install
    paths = _long_record_paths(ctx, install.site_packages, install.dist_info, near)
    for comp in ctx.installs.companions_of(install):
        paths += _long_record_paths(ctx, comp.site_packages, comp.dist_info, near)
    if not paths:
        return
    longest = max(paths, key=len)
    over = [p for p in paths if len(p) >= limit]
    absent = [p for p in over if ctx.view.host_path(p) is None]
    explains = replay.failing is not None and any(
        p.lower()
        in (replay.failing.call.target.lower(), (replay.prediction.culprit_path or "").lower())
        for p in absent
    )
    if absent:
        severity, confidence = Severity.ERROR, Confidence.CERTAIN
        title = (
            f"{len(absent)} installed file(s) are missing: their paths exceed MAX_PATH ({limit})"
        )
    elif over:
        severity, confidence = Severity.WARNING, Confidence.POSSIBLE
        title = (
            f"{len(over)} installed path(s) exceed MAX_PATH ({limit}): the next reinstall or "
            "upgrade fails"
        )
    else:
        severity, confidence = Severity.INFO, Confidence.POSSIBLE
        title = (
            f"installed paths come within {limit - len(longest)} characters of MAX_PATH ({limit})"
        )
    ev = [
        Evidence("longest path", f"{len(longest)} characters: {longest}"),
        Evidence("LongPathsEnabled", "0 (HKLM\\SYSTEM\\CurrentControlSet\\Control\\FileSystem)"),
    ]
    ev += [Evidence("missing", p) for p in absent[:5]]
    key = "HKLM\\SYSTEM\\CurrentControlSet\\Control\\FileSystem"
    reinstall = pip_commands(
        ctx,
        f'install --force-reinstall --no-deps "torch=={install.version}"'
        f"{index_args(install.local)}",
    )
    yield Finding(
        "long-path-partial-install",
        severity,
        title,
        detail=(
            "Without long paths, pip cannot create files whose full path reaches 260 characters "
            "([WinError 206] The filename or extension is too long): an install stops midway and "
            "leaves a partial package."
        ),
        confidence=confidence,
        evidence=tuple(ev),
        fix=(
            "Enable long paths (administrator), open a new terminal, then reinstall torch.",
            "Or move the environment to a shorter folder (for example C:\\venvs\\t) and reinstall.",
        ),
        commands={
            "powershell": (
                f"$k = '{key.replace('HKLM', 'HKLM:')}'",
                "Set-ItemProperty $k -Name LongPathsEnabled -Value 1 -Type DWord",
                *reinstall["powershell"],
            ),
            "cmd": (
                f"set K={key}",
                "reg add %K% /v LongPathsEnabled /t REG_DWORD /d 1 /f",
                *reinstall["cmd"],
            ),
        },
        references=("pytorch/pytorch#23823", "pytorch/test-infra#8094", "pypa/pip#10046"),
        explains=replay.prediction.target if explains else None,
    )


def check_platform(ctx: CheckContext) -> Iterable[Finding]:
    """Platform findings for every replayed torch."""
    out: List[Finding] = []
    for replay in ctx.replays:
        images = torch_images(ctx, replay)
        out += _architecture(ctx, replay, images)
        out += _store_python(ctx, replay)
        if not loadable(ctx, images):
            continue  # nothing else matters until the architecture is right
        out += _driver(ctx, replay, images)
        out += _pagefile(ctx, replay)
        out += _app_control(ctx, replay, images)
        out += _mkl_userbase(ctx, replay, images)
        out += _long_paths(ctx, replay)
    return out
