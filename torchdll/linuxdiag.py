"""``diagnose()`` on Linux: the same flow as on Windows, with ``ld.so`` instead of the Windows
loader::

    process (start environment, sys.path, mapped objects) -> torch installs -> replay of torch's
    loader against the ld.so model -> checks (causes 37-39) -> Report

Static: torch is never imported, no library is loaded; ELF files are read.
"""

from __future__ import annotations

import os
import platform as _platform
import sys
import sysconfig
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from .ldso import LdContext, PosixView, live_context
from .linuxload import (
    CompanionReplay,
    LinuxReplay,
    LinuxTorch,
    find_linux_companions,
    find_linux_torch,
    replay_linux_companions,
    replay_linux_torch,
)
from .report import Report

__all__ = ["LinuxCheckContext", "linux_context", "diagnose_linux"]


@dataclass(frozen=True)
class LinuxCheckContext:
    """What the Linux checks look at: the loader context, the process's environment as the loader
    read it (``environ``) and as Python sees it now (``current_environ``), ``sys_path``, the
    torch installs (import order) and the replay of the first one."""

    ld: LdContext
    environ: Mapping[str, str]
    current_environ: Mapping[str, str]
    sys_path: Tuple[str, ...]
    torches: Tuple[LinuxTorch, ...]
    replays: Tuple[LinuxReplay, ...]
    view: PosixView
    platform: str = "linux"
    companions: Tuple[CompanionReplay, ...] = ()
    _cache: Dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    @property
    def primary(self) -> Optional[LinuxReplay]:
        return self.replays[0] if self.replays else None


def linux_context(*, environ: Optional[Mapping[str, str]] = None, sys_path: Optional[Sequence[str]] = None,
                  executable: Optional[str] = None, loaded: Optional[Sequence[str]] = None,
                  soabi: Optional[str] = None, ld: Optional[LdContext] = None,
                  current_environ: Optional[Mapping[str, str]] = None) -> LinuxCheckContext:
    """Collect the Linux context: defaults describe *this* process (the environment it started
    with, its ``sys.path``, interpreter and mapped objects). Pass ``environ``/``sys_path``/
    ``executable``/``loaded=[]`` to describe a fresh process of another command."""
    from ._startenv import initial_environ as _initial_environ

    live = environ is None
    if environ is None:
        start = _initial_environ()
        environ = start if start is not None else dict(os.environ)
    if current_environ is None:
        current_environ = dict(os.environ) if live else dict(environ)
    if ld is None and sys.platform == "darwin":
        ld = LdContext()
    if ld is None:
        ld = live_context(environ, executable=executable, loaded=loaded)
        if current_environ.get("LD_LIBRARY_PATH") != environ.get("LD_LIBRARY_PATH"):
            from dataclasses import replace

            ld = replace(ld, environ_note="LD_LIBRARY_PATH was changed after this process started; "
                                          "ld.so uses the value it started with")
    path = tuple(sys_path if sys_path is not None else sys.path)
    view = PosixView(ld.root)
    soabi = soabi if soabi is not None else (sysconfig.get_config_var("SOABI") if executable is None else None)
    torches = tuple(find_linux_torch(path, soabi=soabi, view=view))
    plat = sys.platform
    if plat == "darwin":  # dyld: no ELF replay; the DYLD_* checks still run
        return LinuxCheckContext(ld, environ, current_environ, path, torches, (), view, plat)
    replays = tuple(replay_linux_torch(ld, t, path, view) for t in torches[:1])
    companions = tuple(replay_linux_companions(replays[0], find_linux_companions(path, view))) if replays else ()
    return LinuxCheckContext(ld, environ, current_environ, path, torches, replays, view, "linux", companions)


def diagnose_linux(lctx: Optional[LinuxCheckContext] = None, *, checks: Optional[Sequence[Tuple[str, str]]] = None,
                   source: str = "live", platform: Optional[str] = None) -> Report:
    """The Linux (and macOS) report for ``lctx`` (default: this process). ``source`` and
    ``platform`` label the report (``"demo"``, a description of the analysed machine)."""
    from . import __version__
    from .checks import run_checks
    from .checks.linux import LINUX_CHECKS

    if lctx is None:
        try:
            lctx = linux_context()
        except Exception as exc:  # noqa: BLE001 - diagnose() answers, it does not raise
            return Report(platform=platform or f"{sys.platform} {_platform.release()} {_platform.machine()}",
                          python=f"{_platform.python_version()} {sys.executable}", source=source,
                          torchdll_version=__version__,
                          notes=(f"torchdll could not model this machine's dynamic loader "
                                 f"({type(exc).__name__}: {exc}); please report it",))
    findings = run_checks(lctx, checks if checks is not None else LINUX_CHECKS)  # type: ignore[arg-type]
    notes: List[str] = []
    if not lctx.torches:
        notes.append("no torch installation found on sys.path")
    if lctx.torches:
        own = lctx.torches[0].torch_dir + "/"
        if any(o.path.startswith(own) for o in lctx.ld.loaded):
            notes.append("torch's libraries are already loaded in this process: the replay reuses them "
                         "(diagnose a fresh process: python -m torchdll)")
    for t in lctx.torches[1:]:
        notes.append(f"another torch {t.version} in {t.site_packages} (later on sys.path: not imported)")
    if lctx.platform == "darwin":
        notes.append("macOS: torchdll checks the DYLD_* variables; the load itself is not replayed "
                     "(dyld's shared cache is not on disk)")
    elif lctx.ld.cache is None and lctx.ld.root is None:
        notes.append("/etc/ld.so.cache could not be read: cache lookups are not modelled")
    predictions = tuple(r.prediction for r in lctx.replays) + tuple(c.prediction for c in lctx.companions)
    python = f"{_platform.python_version()} ({8 * __import__('struct').calcsize('P')}-bit) {sys.executable}"
    where = platform or f"{sys.platform} {_platform.release()} {_platform.machine()}"
    return Report(predictions, tuple(findings), where,
                  python, source, __version__, tuple(notes)).ranked()
