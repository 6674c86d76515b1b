"""Start-up checks of a user's application: refuse to start when ``import torch`` will fail.

``torchdll.diagnose()`` predicts what ``import torch`` will do on this machine without importing
it; the server refuses to start (and logs why) rather than crash on its first request.
"""

from __future__ import annotations

import logging

import torchdll
from torchdll.report import Report, Severity

log = logging.getLogger("app.startup")


class StartupError(RuntimeError):
    """The application cannot start on this machine."""

    def __init__(self, message: str, report: Report) -> None:
        super().__init__(message)
        self.report = report


def check_torch() -> Report:
    """Diagnose this machine; raise :class:`StartupError` when torch will not load."""
    report = torchdll.diagnose()
    failing = [p for p in report.predictions if p.target == "torch" and not p.ok]
    if failing:
        p = failing[0]
        causes = [f.id for f in report.findings if f.severity is Severity.ERROR]
        message = (f"refusing to start: torch {p.version} will fail with WinError {p.winerror} "
                   f"on {p.dll} (causes: {', '.join(causes) or 'unknown'})")
        log.error(message)
        raise StartupError(message, report)
    if not any(p.target == "torch" for p in report.predictions):
        raise StartupError("refusing to start: torch is not installed", report)
    for f in report.findings:
        if f.severity is Severity.WARNING:
            log.warning("torchdll: %s (%s)", f.title, f.id)
    return report


def start() -> str:
    """Start the application (here: only its checks); returns a status line."""
    report = check_torch()
    torch = next(p for p in report.predictions if p.target == "torch")
    return f"started with torch {torch.version}"
