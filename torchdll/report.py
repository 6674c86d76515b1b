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


def _cols(text: str) -> int:
    """Terminal columns of ``text``: East Asian wide and fullwidth characters (Hangul...) take
    two, combining marks none."""
    import unicodedata

    return sum(0 if unicodedata.combining(ch) else
               2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _wrap_cols(text: str, width: int, indent: str, subsequent: Optional[str] = None) -> List[str]:
    """:func:`_wrap` by display columns (for Korean): breaks at spaces, and inside a word only
    when the word alone is wider than a line."""
    rest_indent = indent if subsequent is None else subsequent
    lines: List[str] = []
    line, prefix = "", indent
    for word in text.split():
        while word:
            room = width - _cols(prefix)
            sep = " " if line else ""
            if _cols(line + sep + word) <= room:
                line += sep + word
                word = ""
            elif line:
                lines.append(prefix + line)
                line, prefix = "", rest_indent
            else:  # a word wider than the whole line: cut it by columns
                cut, used = 0, 0
                while cut < len(word) and used + _cols(word[cut]) <= max(room, 1):
                    used += _cols(word[cut])
                    cut += 1
                cut = max(cut, 1)
                lines.append(prefix + word[:cut])
                word, prefix = word[cut:], rest_indent
    if line:
        lines.append(prefix + line)
    return lines or [indent.rstrip()]


def _catalogued(f: Finding, lang: str) -> Tuple[str, str, Tuple[str, ...]]:
    """Title, detail and fix steps of ``f`` as shown in ``lang``: in English the finding's own
    (with its dynamic evidence); otherwise the catalogue's translation of its id (title, summary
    and a generic fix), or the English text when the id is not catalogued."""
    from .messages import has, text

    if lang == "en" or not has(f"finding.{f.id}.title"):
        return f.title, f.detail, f.fix
    return (text(f"finding.{f.id}.title", lang), text(f"finding.{f.id}.summary", lang),
            (text(f"finding.{f.id}.fix", lang),))


def _lang(lang: Optional[str]) -> str:
    from .messages import language

    if lang is None:
        return language()
    return "ko" if lang.lower().startswith("ko") else "en"


def render_text(report: Report, *, width: int = 80, stream: Optional[TextIO] = None,
                colour: Optional[bool] = None, lang: Optional[str] = None) -> str:
    """A report a person can act on in an 80-column terminal; colour only on a terminal and
    never when ``NO_COLOR`` is set. ``lang``: ``"en"`` or ``"ko"`` (default:
    :func:`torchdll.messages.language`); in Korean the fixed words and each finding's title,
    summary and fix come from the message catalogue, and prose is wrapped by display columns
    (Hangul is double-width); evidence values and commands are shown unchanged."""
    from .messages import text as msg

    lang = _lang(lang)
    ko = lang == "ko"
    use = _use_colour(stream) if colour is None else colour
    wrap = _wrap_cols if ko else _wrap
    cols = _cols if ko else len

    def paint(kind: str, text: str) -> str:
        return f"{_COLOURS[kind]}{text}\033[0m" if use else text

    def sev(f: Finding) -> str:
        name = f.severity.value
        return name.upper() if not ko else msg(f"report.severity.{name}", lang)

    def conf(f: Finding) -> str:
        return f.confidence.value if not ko else msg(f"report.confidence.{f.confidence.value}", lang)

    lines: List[str] = []
    for p in report.predictions:
        if p.ok:
            lines.append(paint("ok", f"{p.target} {p.version}: {msg('report.loads', lang)}") +
                         " " + msg("report.predicted", lang))
            continue
        lines.append(paint("error", f"{p.target} {p.version}: {msg('report.will_fail', lang)}") +
                     (" " + msg("report.with_winerror", lang, winerror=p.winerror)
                      if p.winerror else ""))
        if p.message:
            lines += wrap(msg("report.you_will_see", lang, message=p.message), width, "  ")
        if p.culprit:
            lines += wrap(msg("report.real_cause", lang, cause=p.culprit), width, "  ")
    for note in report.notes:
        lines += wrap(msg("report.note", lang, note=note), width, "")
    if report.findings:
        lines.append("")
    for n, f in enumerate(report.findings, 1):
        title, detail, fix = _catalogued(f, lang)
        plain_tag = f"[{sev(f)}, {conf(f)}] ({f.id})"
        tag = f"[{paint(f.severity.value, sev(f))}, {conf(f)}] ({f.id})"
        head = wrap(f"{n}. {title}", width, "", "   ")
        if cols(head[-1]) + 2 + cols(plain_tag) <= width:
            head[-1] = f"{head[-1]}  {tag}"
            lines += head
        else:
            lines += head + [f"   {tag}"]
        if detail:
            lines += wrap(detail, width, "   ")
        if ko:
            lines += _fix_lines(fix, width, wrap, msg("report.fix", lang))
        for ev in f.evidence:
            wrapped = wrap(f"{ev.label}: {ev.value}", width - 2, "     ")
            wrapped[0] = "   - " + wrapped[0][5:]
            lines += wrapped
        if not ko:
            lines += _fix_lines(fix, width, wrap, msg("report.fix", lang))
        for shell, cmds in f.commands.items():
            lines.append(f"   {shell}:")
            lines += [f"     {c}" for c in cmds]
    if report.ok and report.predictions:
        lines.append("")
        lines.append(paint("ok", msg("report.no_problems", lang)))
    return "\n".join(lines) + "\n"


def _fix_lines(fix: Tuple[str, ...], width: int, wrap: Any, label: str) -> List[str]:
    if not fix:
        return []
    lines = [f"   {label}"]
    for i, step in enumerate(fix, 1):
        lines += wrap(f"{i}) {step}", width, "     ")
    return lines


def render_markdown(report: Report, *, lang: Optional[str] = None) -> str:
    """Markdown to paste into a GitHub issue (``lang`` as in :func:`render_text`)."""
    from .messages import text as msg

    lang = _lang(lang)
    ko = lang == "ko"

    def m(key: str) -> str:
        return msg(f"report.md.{key}", lang)

    out: List[str] = [f"## {m('title')}", ""]
    out.append(f"- {m('platform')}: `{report.platform}`  python: `{report.python}`  "
               f"{m('source')}: {report.source}")
    out.append(f"- torchdll {report.torchdll_version}")
    out += [f"- {msg('report.note', lang, note=_md(n))}" for n in report.notes]
    out.append("")
    if report.predictions:
        out += [f"| {m('package')} | {m('version')} | {m('predicted')} | WinError | "
                f"{m('dll_named')} | {m('real_cause')} |",
                "| --- | --- | --- | --- | --- | --- |"]
        for p in report.predictions:
            state = msg("report.loads", lang) if p.ok else f"**{m('fails')}**"
            out.append(f"| {p.target} | {p.version} | {state} | "
                       f"{p.winerror or ''} | {_md(p.dll or '')} | {_md(p.culprit or '')} |")
        out.append("")
    for n, f in enumerate(report.findings, 1):
        title, detail, fix = _catalogued(f, lang)
        severity = msg(f"report.severity.{f.severity.value}", lang)
        confidence = msg(f"report.confidence.{f.confidence.value}", lang)
        out.append(f"### {n}. {title}")
        out.append("")
        out.append(f"`{f.id}` — {severity}, {confidence}")
        out.append("")
        if detail:
            out += [detail, ""]
        steps = [f"{i}. {step}" for i, step in enumerate(fix, 1)]
        if ko and steps:
            out += [f"**{msg('report.fix', lang)}**", "", *steps, ""]
        if f.evidence:
            out += [f"- {ev.label}: `{ev.value}`" for ev in f.evidence]
            out.append("")
        if not ko and steps:
            out += steps
            out.append("")
        for shell, cmds in f.commands.items():
            out += [f"```{shell}", *cmds, "```", ""]
        if f.references:
            out.append(f"{m('references')}: " + ", ".join(f.references))
            out.append("")
    if not report.findings:
        out += [m("no_problems"), ""]
    return "\n".join(out)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write(report: Report, fmt: str = "text", stream: Optional[TextIO] = None,
          lang: Optional[str] = None) -> None:
    """Render ``report`` as ``text``, ``json`` or ``markdown`` to ``stream`` (stdout); ``lang``
    (``"en"``/``"ko"``, default the user's language) applies to text and Markdown, JSON stays
    English."""
    out = stream or sys.stdout
    if fmt == "json":
        out.write(render_json(report) + "\n")
    elif fmt == "markdown":
        out.write(render_markdown(report, lang=lang))
    else:
        out.write(render_text(report, stream=out, lang=lang))
