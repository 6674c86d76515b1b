"""Checks: small functions from what diagnose() knows to findings, one family per module.

A check is ``check(ctx: CheckContext) -> Iterable[Finding]``. It reads; it never changes the
machine. Checks are listed in :data:`CHECKS` by module and function name and imported only when
:func:`run_checks` runs them. A check that raises is reported as an ``internal-error`` finding
instead of breaking the diagnosis.

Families (module: finding ids, see ``data/findings.json``):

* ``path``: the seed case (a Python environment's own DLL folder on the user/system Path),
  foreign torch/CUDA/OpenMP folders on PATH, conda base mixes, DLLs dropped into System32,
  user-site shadowing, a source tree in the current directory, long paths, Store Python;
* ``runtime``: VC++ runtime missing, older than the toolset that built torch (the 1114 of
  torch >= 2.9), copies next to the base ``python.exe``/in a conda root/already loaded,
  ``vcruntime140_threads.dll``/``msvcp140_atomic_wait.dll`` needs;
* ``openmp``: libomp140 (torch 2.4.0), duplicate OpenMP runtimes, conda OpenMP mixes (182);
* ``platform``: wrong architecture / 32-bit Python, CUDA builds without the NVIDIA driver,
  paging-file risk, unsigned DLLs under Smart App Control, MKL and the user base (torch 2.3.0);
* ``companions``: torchvision/torchaudio built for another torch (pins and symbols), Python ABI
  of ``torch_python.dll``, partial installs (RECORD).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..fsview import FileView
from ..installs import Installs
from ..model import ImageFacts, LoadContext
from ..report import Confidence, Evidence, Finding, Severity
from ..snapshot import Snapshot
from ..torchload import ExtensionReplay, TorchReplay

__all__ = ["CHECKS", "Check", "CheckContext", "run_checks"]


@dataclass(frozen=True)
class CheckContext:
    """Everything a check may look at.

    ``context`` is the process before ``import torch`` (from the snapshot). ``replays`` holds one
    :class:`~torchdll.torchload.TorchReplay` per importable torch (the one ``import torch`` picks
    first); ``extensions`` the replays of torchvision/torchaudio extension modules loaded after it.
    PATH entries are in ``context.path``; the registry ``Path`` values in ``snapshot.user_path``
    and ``snapshot.system_path`` (classify them with :mod:`torchdll.pathenv`).
    """

    snapshot: Snapshot
    view: FileView
    installs: Installs
    context: LoadContext
    replays: Tuple[TorchReplay, ...] = ()
    extensions: Tuple[ExtensionReplay, ...] = ()
    _facts: Dict[str, Optional[ImageFacts]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def primary(self) -> Optional[TorchReplay]:
        return self.replays[0] if self.replays else None

    def facts(self, win_path: str) -> Optional[ImageFacts]:
        """PE facts of a file through the view (``None`` if absent or not a valid image)."""
        from ..errors import InvalidImageError

        key = win_path.lower()
        if key not in self._facts:
            try:
                self._facts[key] = self.view.facts(win_path)
            except InvalidImageError:
                self._facts[key] = None
        return self._facts[key]


Check = Callable[[CheckContext], Iterable[Finding]]

#: (module, function) of every check, in the order they run.
CHECKS: Tuple[Tuple[str, str], ...] = (
    ("torchdll.checks.prediction", "check_prediction"),
    ("torchdll.checks.path", "check_path"),
    ("torchdll.checks.runtime", "check_runtime"),
    ("torchdll.checks.openmp", "check_openmp"),
    ("torchdll.checks.platform", "check_platform"),
    ("torchdll.checks.companions", "check_companions"),
)


def _load(spec: Tuple[str, str]) -> Optional[Check]:
    try:
        module = importlib.import_module(spec[0])
    except ModuleNotFoundError as exc:
        if exc.name == spec[0]:
            return None  # a family not shipped (yet)
        raise
    fn = getattr(module, spec[1])
    return fn  # type: ignore[no-any-return]


def run_checks(ctx: CheckContext, checks: Optional[Sequence[Tuple[str, str]]] = None) -> List[Finding]:
    """Run ``checks`` (default: all) and collect their findings; a failing check becomes an
    ``internal-error`` finding."""
    out: List[Finding] = []
    for spec in checks if checks is not None else CHECKS:
        try:
            fn = _load(spec)
            if fn is None:
                continue
            out.extend(fn(ctx))
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            out.append(Finding(
                "internal-error", Severity.INFO, f"check {spec[0]}.{spec[1]} failed",
                detail="This is a bug in torchdll; the other checks ran. Please report it.",
                confidence=Confidence.CERTAIN,
                evidence=(Evidence("error", f"{type(exc).__name__}: {exc}"),)))
    return out


def findings_of(ctx: CheckContext, fns: Iterable[Check]) -> List[Finding]:
    """Run check functions directly (for tests)."""
    out: List[Finding] = []
    for fn in fns:
        out.extend(fn(ctx))
    return out
