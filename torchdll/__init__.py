"""torchdll: find out why ``import torch`` fails to load its DLLs on Windows, and prevent it.

``import torchdll`` is cheap and never raises: every name below is imported on first use
(PEP 562), so nothing heavy (pefile, ctypes, the loader model) loads until you ask for it.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing is not imported: it would cost more than all of torchdll
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

__version__ = "0.1.0.dev0"

# public name -> module that defines it
_LAZY = {
    # PE facts
    "read_image_facts": "torchdll._pe",
    "InvalidImageError": "torchdll.errors",
    "SnapshotError": "torchdll.errors",
    "TorchDLLWarning": "torchdll.errors",
    # data model
    "ImageFacts": "torchdll.model",
    "LoadContext": "torchdll.model",
    "LoadFlags": "torchdll.model",
    "Machine": "torchdll.model",
    "Resolution": "torchdll.model",
    "Rule": "torchdll.model",
    # loader model
    "resolve": "torchdll.resolver",
    "LoadCall": "torchdll.closure",
    "simulate": "torchdll.closure",
    "dependency_closure": "torchdll.closure",
    # file views and snapshots
    "MirrorView": "torchdll.fsview",
    "NativeView": "torchdll.fsview",
    "Snapshot": "torchdll.snapshot",
    "collect_snapshot": "torchdll.snapshot",
    "load_offline": "torchdll.snapshot",
    # diagnosis
    "diagnose": "torchdll.diagnosis",
    "Report": "torchdll.report",
    "Finding": "torchdll.report",
    "Prediction": "torchdll.report",
    "Severity": "torchdll.report",
    "Confidence": "torchdll.report",
    # the import guard, its errors, and the run-time probe
    "safe_import_torch": "torchdll.guard",
    "import_torch": "torchdll.guard",
    "probe_dll": "torchdll.probe",
    "ProbeResult": "torchdll.probe",
    "TorchDLLError": "torchdll.errors",
    "DllNotFoundError": "torchdll.errors",
    "ProcedureNotFoundError": "torchdll.errors",
    "BadImageError": "torchdll.errors",
    "DllInitError": "torchdll.errors",
    "CommitLimitError": "torchdll.errors",
    "BlockedByPolicyError": "torchdll.errors",
    "DllAccessDeniedError": "torchdll.errors",
    "PathTooLongError": "torchdll.errors",
    "DllLoadError": "torchdll.errors",
    "PrecheckWarning": "torchdll.errors",
    "ProbeError": "torchdll.errors",
    # PATH: the current process and the persistent Windows Path
    "sanitize_path": "torchdll.sanitize",
    "PathPolicy": "torchdll.sanitize",
    "SanitizeResult": "torchdll.sanitize",
    "analyze_path": "torchdll.pathenv",
    "EntryKind": "torchdll.pathenv",
    "plan_path_repair": "torchdll.registry",
    "apply_path_repair": "torchdll.registry",
    "undo_path_repair": "torchdll.registry",
    "PathRepairPlan": "torchdll.registry",
    "PathRepairOutcome": "torchdll.registry",
    "PathRepairError": "torchdll.errors",
    "PathAccessDeniedError": "torchdll.errors",
    "PathBackupError": "torchdll.errors",
    "PathChangedError": "torchdll.errors",
    "PathVerifyError": "torchdll.errors",
    "PathValueError": "torchdll.errors",
}

__all__ = ["__version__", *sorted(_LAZY)]

_RENAMED = {"read_image_facts": "read_facts", "collect_snapshot": "collect", "probe_dll": "probe"}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ._pe import read_facts as read_image_facts  # noqa: F401
    from .closure import LoadCall, dependency_closure, simulate  # noqa: F401
    from .errors import InvalidImageError, SnapshotError, TorchDLLWarning  # noqa: F401
    from .fsview import MirrorView, NativeView  # noqa: F401
    from .model import ImageFacts, LoadContext, LoadFlags, Machine, Resolution, Rule  # noqa: F401
    from .resolver import resolve  # noqa: F401
    from .snapshot import Snapshot, load_offline  # noqa: F401
    from .snapshot import collect as collect_snapshot  # noqa: F401
    from .errors import (  # noqa: F401
        PathAccessDeniedError,
        PathBackupError,
        PathChangedError,
        PathRepairError,
        PathValueError,
        PathVerifyError,
    )
    from .pathenv import EntryKind, analyze_path  # noqa: F401
    from .registry import (  # noqa: F401
        PathRepairOutcome,
        PathRepairPlan,
        apply_path_repair,
        plan_path_repair,
        undo_path_repair,
    )
    from .sanitize import PathPolicy, SanitizeResult, sanitize_path  # noqa: F401
    from .diagnosis import diagnose  # noqa: F401
    from .errors import (  # noqa: F401
        BadImageError,
        BlockedByPolicyError,
        CommitLimitError,
        DllAccessDeniedError,
        DllInitError,
        DllLoadError,
        DllNotFoundError,
        PathTooLongError,
        PrecheckWarning,
        ProbeError,
        ProcedureNotFoundError,
        TorchDLLError,
    )
    from .guard import import_torch, safe_import_torch  # noqa: F401
    from .probe import ProbeResult  # noqa: F401
    from .probe import probe as probe_dll  # noqa: F401
    from .report import Confidence, Finding, Prediction, Report, Severity  # noqa: F401


def __getattr__(name: str) -> "Any":
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'torchdll' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)
