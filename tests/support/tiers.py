"""Tier gating: skip with a reason on a developer machine, fail loudly in CI.

In CI (``CI=true``) the fixture, Wine and real-wheel tiers must run, so a missing tool is an
error there, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> NoReturn:
    """Skip the test (developer machine) or fail it (CI) because a tier prerequisite is missing.

    The tiers gated here (mingw-w64, Wine and its PE DLLs, wheels unpacked into mirrored trees)
    are Linux-side tools: on Windows and macOS they never exist, so there they always skip, even
    in CI (the Windows workflow checks the same facts against the real loader instead)."""
    if IN_CI and sys.platform.startswith("linux"):
        pytest.fail(f"tier prerequisite missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_executable(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} not found ({hint})")
    return path


WINE_CANDIDATES = ("/usr/lib/wine/wine64", "/usr/bin/wine64", "/usr/lib/wine/wine")


def find_wine() -> str | None:
    env = os.environ.get("TORCHDLL_WINE")
    if env:
        return env if os.access(env, os.X_OK) else None
    for cand in WINE_CANDIDATES:
        if os.access(cand, os.X_OK):
            return cand
    return shutil.which("wine64")
