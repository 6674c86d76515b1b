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
    # Linux and macOS: ELF facts, the ld.so model, the loader environment of a new process
    "read_elf_facts": "torchdll._elf",
    "ElfFacts": "torchdll._elf",
    "LdContext": "torchdll.ldso",
    "LdSimulator": "torchdll.ldso",
    "live_context": "torchdll.ldso",
    "diagnose_linux": "torchdll.linuxdiag",
    "plan_loader_env": "torchdll.loaderenv",
    "EnvPlan": "torchdll.loaderenv",
}

__all__ = [  # a literal list, so type checkers know the public names (a test keeps it = _LAZY)
    "__version__",
    "BadImageError",
    "BlockedByPolicyError",
    "CommitLimitError",
    "Confidence",
    "DllAccessDeniedError",
    "DllInitError",
    "DllLoadError",
    "DllNotFoundError",
    "ElfFacts",
    "EntryKind",
    "EnvPlan",
    "Finding",
    "ImageFacts",
    "InvalidImageError",
    "LdContext",
    "LdSimulator",
    "LoadCall",
    "LoadContext",
    "LoadFlags",
    "Machine",
    "MirrorView",
    "NativeView",
    "PathAccessDeniedError",
    "PathBackupError",
    "PathChangedError",
    "PathPolicy",
    "PathRepairError",
    "PathRepairOutcome",
    "PathRepairPlan",
    "PathTooLongError",
    "PathValueError",
    "PathVerifyError",
    "PrecheckWarning",
    "Prediction",
    "ProbeError",
    "ProbeResult",
    "ProcedureNotFoundError",
    "Report",
    "Resolution",
    "Rule",
    "SanitizeResult",
    "Severity",
    "Snapshot",
    "SnapshotError",
    "TorchDLLError",
    "TorchDLLWarning",
    "analyze_path",
    "apply_path_repair",
    "collect_snapshot",
    "dependency_closure",
    "diagnose",
    "diagnose_linux",
    "import_torch",
    "live_context",
    "load_offline",
    "plan_loader_env",
    "plan_path_repair",
    "probe_dll",
    "read_elf_facts",
    "read_image_facts",
    "resolve",
    "safe_import_torch",
    "sanitize_path",
    "simulate",
    "undo_path_repair",
]

_RENAMED = {"read_image_facts": "read_facts", "collect_snapshot": "collect", "probe_dll": "probe"}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    # explicit 'as' re-exports, so strict type checkers see the public names
    from ._pe import read_facts as read_image_facts  # noqa: F401
    from .closure import LoadCall as LoadCall
    from .closure import dependency_closure as dependency_closure
    from .closure import simulate as simulate
    from .diagnosis import diagnose as diagnose
    from .errors import BadImageError as BadImageError
    from .errors import BlockedByPolicyError as BlockedByPolicyError
    from .errors import CommitLimitError as CommitLimitError
    from .errors import DllAccessDeniedError as DllAccessDeniedError
    from .errors import DllInitError as DllInitError
    from .errors import DllLoadError as DllLoadError
    from .errors import DllNotFoundError as DllNotFoundError
    from .errors import InvalidImageError as InvalidImageError
    from .errors import PathAccessDeniedError as PathAccessDeniedError
    from .errors import PathBackupError as PathBackupError
    from .errors import PathChangedError as PathChangedError
    from .errors import PathRepairError as PathRepairError
    from .errors import PathTooLongError as PathTooLongError
    from .errors import PathValueError as PathValueError
    from .errors import PathVerifyError as PathVerifyError
    from .errors import PrecheckWarning as PrecheckWarning
    from .errors import ProbeError as ProbeError
    from .errors import ProcedureNotFoundError as ProcedureNotFoundError
    from .errors import SnapshotError as SnapshotError
    from .errors import TorchDLLError as TorchDLLError
    from .errors import TorchDLLWarning as TorchDLLWarning
    from .fsview import MirrorView as MirrorView
    from .fsview import NativeView as NativeView
    from .guard import import_torch as import_torch
    from .guard import safe_import_torch as safe_import_torch
    from .model import ImageFacts as ImageFacts
    from .model import LoadContext as LoadContext
    from .model import LoadFlags as LoadFlags
    from .model import Machine as Machine
    from .model import Resolution as Resolution
    from .model import Rule as Rule
    from .pathenv import EntryKind as EntryKind
    from .pathenv import analyze_path as analyze_path
    from .probe import ProbeResult as ProbeResult
    from .probe import probe as probe_dll  # noqa: F401
    from .registry import PathRepairOutcome as PathRepairOutcome
    from .registry import PathRepairPlan as PathRepairPlan
    from .registry import apply_path_repair as apply_path_repair
    from .registry import plan_path_repair as plan_path_repair
    from .registry import undo_path_repair as undo_path_repair
    from .report import Confidence as Confidence
    from .report import Finding as Finding
    from .report import Prediction as Prediction
    from .report import Report as Report
    from .report import Severity as Severity
    from .resolver import resolve as resolve
    from ._elf import ElfFacts as ElfFacts
    from ._elf import read_elf_facts as read_elf_facts
    from .ldso import LdContext as LdContext
    from .ldso import LdSimulator as LdSimulator
    from .ldso import live_context as live_context
    from .linuxdiag import diagnose_linux as diagnose_linux
    from .loaderenv import EnvPlan as EnvPlan
    from .loaderenv import plan_loader_env as plan_loader_env
    from .sanitize import PathPolicy as PathPolicy
    from .sanitize import SanitizeResult as SanitizeResult
    from .sanitize import sanitize_path as sanitize_path
    from .snapshot import Snapshot as Snapshot
    from .snapshot import collect as collect_snapshot  # noqa: F401
    from .snapshot import load_offline as load_offline


def __getattr__(name: str) -> "Any":
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'torchdll' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)
