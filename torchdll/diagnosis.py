"""``diagnose()``: predict what ``import torch`` will do, name the culprit, say how to fix it.

Static: torch is never imported. The flow is the one of the design notes::

    snapshot (live or offline) -> installs -> replay of torch's loader -> checks -> Report
"""

from __future__ import annotations

import ntpath
import sys
from typing import List, Optional, Sequence, Tuple, Union

from .apisets import ApiSetSchema
from .checks import CheckContext, run_checks
from .fsview import FileView, MirrorView, NativeView
from .installs import Installs, find_installs
from .report import Finding, Report
from .snapshot import Snapshot, collect
from .torchload import ExtensionReplay, TorchReplay, replay_extensions, replay_torch

__all__ = ["diagnose", "diagnose_context", "target_apisets"]


def _registry_path_entries(snap: Snapshot) -> List[str]:
    """Folders of the user and system Path values (expanded with the snapshot's variables), to
    find other environments whose DLL folders are on them."""
    from .pathenv import PathSyntax, parse_path

    out: List[str] = []
    for value in (snap.user_path, snap.system_path):
        if value is None:
            continue
        parsed = parse_path(value.value, PathSyntax.REGISTRY, reg_type=value.type,
                            environ=dict(snap.environ))
        for entry in parsed.entries:
            out.extend(entry.folders)
    return out


def target_apisets(view: FileView, system32: str) -> Optional[ApiSetSchema]:
    """The API-set schema of the analysed machine, read from its own
    ``System32\\apisetschema.dll`` when the view has one (``None``: use the shipped table)."""
    from .apisets import ApiSetFormatError, schema_from_dll
    from .errors import InvalidImageError

    host = view.host_path(ntpath.join(system32, "apisetschema.dll"))
    if host is None:
        return None
    try:
        return schema_from_dll(host)
    except (InvalidImageError, ApiSetFormatError, OSError):
        return None


def diagnose_context(
    snapshot: Snapshot,
    view: FileView,
    *,
    user_dirs: Sequence[str] = (),
) -> CheckContext:
    """Everything :func:`diagnose` computes before the checks run (useful for tools and tests)."""
    ctx = snapshot.load_context(user_dirs=tuple(user_dirs))
    py = snapshot.python
    installs: Installs = find_installs(
        view, py.sys_path,
        user_site=py.user_site if py.user_site_enabled else None,
        path_entries=[*ctx.path, *_registry_path_entries(snapshot)],
        python_version=py.version or None,
    )
    replays: List[TorchReplay] = []
    extensions: Tuple[ExtensionReplay, ...] = ()
    primary = installs.primary()
    if primary is not None:
        replay = replay_torch(primary, context=ctx, view=view, exec_prefix=py.exec_prefix,
                              base_exec_prefix=py.base_exec_prefix, userbase=py.userbase,
                              is_venv=py.is_venv, apisets=target_apisets(view, ctx.system32))
        replays.append(replay)
        extensions = replay_extensions(replay, installs.companions_of(primary))
    return CheckContext(snapshot, view, installs, ctx, tuple(replays), extensions)


def diagnose(
    snapshot: Optional[Snapshot] = None,
    *,
    root: Union[str, "object", None] = None,
    view: Optional[FileView] = None,
    checks: Optional[Sequence[Tuple[str, str]]] = None,
) -> Report:
    """Diagnose this machine (default) or a snapshot of another one.

    ``snapshot``: a :class:`~torchdll.snapshot.Snapshot` (default: collect this process's).
    ``root``: a folder mirroring the snapshot machine's drives (``root/C/...``) for offline
    analysis; ``view`` overrides how files are read. ``checks`` restricts the checks run.
    Never imports torch and never changes anything.

    On Linux (and macOS) without a snapshot, the live process is diagnosed with the ``ld.so``
    model instead (:func:`torchdll.linuxdiag.diagnose_linux`).
    """
    from . import __version__

    snap = snapshot if snapshot is not None else collect()
    if snapshot is None and root is None and view is None and snap.platform != "win32":
        from .linuxdiag import diagnose_linux

        return diagnose_linux(checks=None if checks is None else [c for c in checks if c[0] == "torchdll.checks.linux"])
    if view is None:
        view = MirrorView(root) if root is not None else NativeView()  # type: ignore[arg-type]
    source = "live" if snapshot is None else ("offline" if root is not None else "snapshot")
    python = f"{snap.python.version} ({snap.python.bits}-bit) {snap.python.executable}"
    offline_windows = root is not None or isinstance(view, MirrorView)
    if snap.platform != "win32" and not offline_windows:
        return Report(
            platform=f"{snap.platform} {snap.os_release}", python=python, source=source,
            torchdll_version=__version__,
            notes=("torch loads Windows DLLs only on Windows: this machine runs "
                   f"{snap.platform}. Analyse a Windows machine with 'torchdll snapshot' there "
                   "and 'torchdll doctor --snapshot FILE --root DIR' here.",),
        )
    cctx = diagnose_context(snap, view)
    findings: List[Finding] = run_checks(cctx, checks)
    predictions = tuple(r.prediction for r in cctx.replays) + tuple(e.prediction for e in cctx.extensions)
    notes: List[str] = []
    if not cctx.installs.torch:
        notes.append("no torch installation found on sys.path, in the user site or in folders on PATH")
    for t in cctx.installs.torch:
        if t.scope == "other":
            notes.append(f"another torch {t.version} in {ntpath.dirname(t.torch_dir)} (reachable through PATH)")
    return Report(predictions, tuple(findings), f"{snap.platform} {snap.os_release} {snap.machine}",
                  python, source, __version__, tuple(notes)).ranked()


def _main() -> None:  # pragma: no cover - convenience: python -m torchdll.diagnose
    from .report import write

    write(diagnose(), "text", sys.stdout)
