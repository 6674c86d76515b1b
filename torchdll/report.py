"""Findings, the report that ranks them, and its renderers (text, JSON, Markdown).

A :class:`Finding` is one thing torchdll found: a stable ``id`` (a slug from the catalogue in
``data/findings.json``), a severity, how sure we are, the evidence (paths, versions, which
loader rule picked which file), and the fix as exact steps. A :class:`Report` holds the
predictions (what ``import torch`` will do) and the findings, ranked so that the cause of a
predicted failure comes first.

The JSON form is versioned (``"schema": "torchdll.report"``, ``"schema_version": 1``) and
described by ``torchdll/schema/report-v1.json``; a test validates real output against it.
"""

from __future__ import annotations

import enum
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, TextIO, Tuple

__all__ = [
    "REPORT_SCHEMA_NAME",
    "REPORT_SCHEMA_VERSION",
    "Confidence",
    "Evidence",
    "Finding",
    "Prediction",
    "Report",
    "Severity",
    "render_json",
    "render_markdown",
    "render_text",
]

REPORT_SCHEMA_NAME = "torchdll.report"
REPORT_SCHEMA_VERSION = 1


class Severity(str, enum.Enum):
    """``error``: will break (or breaks) the import; ``warning``: a risk or a likely cause of an
    intermittent failure; ``info``: worth knowing, nothing to do."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"error": 0, "warning": 1, "info": 2}[self.value]


class Confidence(str, enum.Enum):
    """How the finding was decided: ``certain`` (read from files or the process), ``likely``
    (a known cause whose mechanism we can see but not prove), ``possible`` (a known risk)."""

    CERTAIN = "certain"
    LIKELY = "likely"
    POSSIBLE = "possible"


@dataclass(frozen=True)
class Evidence:
    """One fact behind a finding: a label and a value (a path, a version, a rule...)."""

    label: str
    value: str


@dataclass(frozen=True)
class Finding:
    """One problem or fact, with what proves it and how to fix it.

    ``fix`` are steps a person follows in order; ``commands`` maps a shell name
    (``"powershell"``, ``"cmd"``, ``"bash"``) to commands that carry the fix out.
    ``explains`` names the prediction (a target like ``torch``) whose failure this finding
    explains; such findings are ranked first.
    """

    id: str
    severity: Severity
    title: str
    detail: str = ""
    confidence: Confidence = Confidence.CERTAIN
    evidence: Tuple[Evidence, ...] = ()
    fix: Tuple[str, ...] = ()
    commands: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)
    references: Tuple[str, ...] = ()
    explains: Optional[str] = None


@dataclass(frozen=True)
class Prediction:
    """What loading one package's native code will do.

    ``target`` is ``torch``, ``torchvision``, ``torchaudio``...; ``outcome`` is ``"ok"`` or
    ``"fails"``; ``winerror`` the predicted code; ``dll`` the file the package's own loader names
    in its error (for torch: the first ``torch\\lib`` DLL whose load fails); ``message`` the text
    the user will see; ``culprit`` a one-line account of the real cause in that DLL's closure.
    """

    target: str
    version: str
    outcome: str
    winerror: Optional[int] = None
    dll: Optional[str] = None
    message: Optional[str] = None
    culprit: Optional[str] = None
    culprit_path: Optional[str] = None
    importer: Optional[str] = None
    rule: Optional[str] = None
    steps: Tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


@dataclass(frozen=True)
class Report:
    """A diagnosis: predictions, ranked findings, and what it was computed from."""

    predictions: Tuple[Prediction, ...] = ()
    findings: Tuple[Finding, ...] = ()
    platform: str = ""
    python: str = ""
    source: str = "live"
    torchdll_version: str = ""
    notes: Tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """No predicted failure and no error-severity finding."""
        return all(p.ok for p in self.predictions) and not any(
            f.severity is Severity.ERROR for f in self.findings)

    def ranked(self) -> "Report":
        """A copy with findings ordered: causes of predicted failures first, then by severity,
        then by confidence; stable otherwise."""
        failing = {p.target for p in self.predictions if not p.ok}
        conf = {Confidence.CERTAIN: 0, Confidence.LIKELY: 1, Confidence.POSSIBLE: 2}

        def key(item: Tuple[int, Finding]) -> Tuple[int, int, int, int]:
            i, f = item
            return (0 if f.explains in failing else 1, f.severity.rank, conf[f.confidence], i)

        ordered = tuple(f for _, f in sorted(enumerate(self.findings), key=key))
        return Report(self.predictions, ordered, self.platform, self.python, self.source,
                      self.torchdll_version, self.notes)

    def to_dict(self) -> Dict[str, Any]:
        from ._json import to_jsonable

        data: Dict[str, Any] = {
            "schema": REPORT_SCHEMA_NAME,
            "schema_version": REPORT_SCHEMA_VERSION,
            "ok": self.ok,
        }
        body = to_jsonable(self)
        assert isinstance(body, dict)
        data.update(body)
        return data


# -- renderers -------------------------------------------------------------------------------


def render_json(report: Report) -> str:
    import json

    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False)


def _use_colour(stream: Optional[TextIO]) -> bool:
    if os.environ.get("NO_COLOR") or stream is None:
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


_COLOURS = {"error": "\033[31m", "warning": "\033[33m", "info": "\033[36m", "ok": "\033[32m"}


def _wrap(text: str, width: int, indent: str, subsequent: Optional[str] = None) -> List[str]:
    import textwrap

    return textwrap.wrap(text, width=width, initial_indent=indent,
                         subsequent_indent=indent if subsequent is None else subsequent,
                         break_long_words=True, break_on_hyphens=False) or [indent.rstrip()]


def render_text(report: Report, *, width: int = 80, stream: Optional[TextIO] = None,
                colour: Optional[bool] = None) -> str:
    """A report a person can act on in an 80-column terminal; colour only on a terminal and
    never when ``NO_COLOR`` is set."""
    use = _use_colour(stream) if colour is None else colour

    def paint(kind: str, text: str) -> str:
        return f"{_COLOURS[kind]}{text}\033[0m" if use else text

    lines: List[str] = []
    for p in report.predictions:
        if p.ok:
            lines.append(paint("ok", f"{p.target} {p.version}: loads") + " (predicted)")
            continue
        lines.append(paint("error", f"{p.target} {p.version}: import will FAIL") +
                     (f" with WinError {p.winerror}" if p.winerror else ""))
        if p.message:
            lines += _wrap(f"you will see: {p.message}", width, "  ")
        if p.culprit:
            lines += _wrap(f"real cause: {p.culprit}", width, "  ")
    for note in report.notes:
        lines += _wrap(f"note: {note}", width, "")
    if report.findings:
        lines.append("")
    for n, f in enumerate(report.findings, 1):
        plain_tag = f"[{f.severity.value.upper()}, {f.confidence.value}] ({f.id})"
        tag = f"[{paint(f.severity.value, f.severity.value.upper())}, {f.confidence.value}] ({f.id})"
        head = _wrap(f"{n}. {f.title}", width, "", "   ")
        if len(head[-1]) + 2 + len(plain_tag) <= width:
            head[-1] = f"{head[-1]}  {tag}"
            lines += head
        else:
            lines += head + [f"   {tag}"]
        if f.detail:
            lines += _wrap(f.detail, width, "   ")
        for ev in f.evidence:
            wrapped = _wrap(f"{ev.label}: {ev.value}", width - 2, "     ")
            wrapped[0] = "   - " + wrapped[0][5:]
            lines += wrapped
        if f.fix:
            lines.append("   fix:")
            for i, step in enumerate(f.fix, 1):
                lines += _wrap(f"{i}) {step}", width, "     ")
        for shell, cmds in f.commands.items():
            lines.append(f"   {shell}:")
            lines += [f"     {c}" for c in cmds]
    if report.ok and report.predictions:
        lines.append("")
        lines.append(paint("ok", "no problems found"))
    return "\n".join(lines) + "\n"


def render_markdown(report: Report) -> str:
    """Markdown to paste into a GitHub issue."""
    out: List[str] = ["## torchdll report", ""]
    out.append(f"- platform: `{report.platform}`  python: `{report.python}`  source: {report.source}")
    out.append(f"- torchdll {report.torchdll_version}")
    out += [f"- note: {_md(n)}" for n in report.notes]
    out.append("")
    if report.predictions:
        out += ["| package | version | predicted | WinError | DLL named | real cause |",
                "| --- | --- | --- | --- | --- | --- |"]
        for p in report.predictions:
            out.append(f"| {p.target} | {p.version} | {'loads' if p.ok else '**fails**'} | "
                       f"{p.winerror or ''} | {_md(p.dll or '')} | {_md(p.culprit or '')} |")
        out.append("")
    for n, f in enumerate(report.findings, 1):
        out.append(f"### {n}. {f.title}")
        out.append("")
        out.append(f"`{f.id}` — {f.severity.value}, {f.confidence.value}")
        out.append("")
        if f.detail:
            out += [f.detail, ""]
        if f.evidence:
            out += [f"- {ev.label}: `{ev.value}`" for ev in f.evidence]
            out.append("")
        if f.fix:
            out += [f"{i}. {step}" for i, step in enumerate(f.fix, 1)]
            out.append("")
        for shell, cmds in f.commands.items():
            out += [f"```{shell}", *cmds, "```", ""]
        if f.references:
            out.append("References: " + ", ".join(f.references))
            out.append("")
    if not report.findings:
        out += ["No problems found.", ""]
    return "\n".join(out)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write(report: Report, fmt: str = "text", stream: Optional[TextIO] = None) -> None:
    """Render ``report`` as ``text``, ``json`` or ``markdown`` to ``stream`` (stdout)."""
    out = stream or sys.stdout
    if fmt == "json":
        out.write(render_json(report) + "\n")
    elif fmt == "markdown":
        out.write(render_markdown(report))
    else:
        out.write(render_text(report, stream=out))
