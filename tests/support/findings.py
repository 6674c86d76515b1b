"""Helpers shared by the tests of the check families."""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List

from torchdll.checks import CheckContext
from torchdll.diagnosis import diagnose_context
from torchdll.report import Finding
from torchdll.testing import WindowsEnv


def run_check(check: Callable[[CheckContext], Iterable[Finding]], env: WindowsEnv,
              **overrides: object) -> List[Finding]:
    """The findings of one check family on a simulated machine (snapshot fields overridable)."""
    return list(check(diagnose_context(env.snapshot(**overrides), env.view())))


def by_id(findings: Iterable[Finding]) -> Dict[str, Finding]:
    """Findings by id; the first of an id wins (the ranked, most relevant one)."""
    out: Dict[str, Finding] = {}
    for f in findings:
        out.setdefault(f.id, f)
    return out


def evidence(f: Finding) -> str:
    """A finding's evidence as one text, ``label: value`` per line."""
    return "\n".join(f"{e.label}: {e.value}" for e in f.evidence)
