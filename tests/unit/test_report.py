"""Report ranking, renderers, and the versioned JSON schema."""

from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema
import pytest

from torchdll.demo import build_seed_demo
from torchdll.diagnosis import diagnose
from torchdll.report import (
    Confidence, Evidence, Finding, Prediction, Report, Severity, render_json, render_markdown,
    render_text,
)

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "torchdll" / "schema" / "report-v1.json").read_text())


def finding(fid: str, severity: Severity, explains: str | None = None,
            confidence: Confidence = Confidence.CERTAIN) -> Finding:
    return Finding(fid, severity, f"title of {fid}", confidence=confidence, explains=explains,
                   evidence=(Evidence("path", "C:\\Users\\홍길동\\x.dll"),), fix=("do this",),
                   commands={"powershell": ("Remove-Item x",)})


def test_ranking_puts_causes_of_failures_first_then_severity_then_confidence() -> None:
    r = Report(
        predictions=(Prediction("torch", "2.9.0", "fails", 1114),),
        findings=(finding("info-a", Severity.INFO), finding("warn-possible", Severity.WARNING, confidence=Confidence.POSSIBLE),
                  finding("warn-certain", Severity.WARNING), finding("cause", Severity.WARNING, explains="torch"),
                  finding("err", Severity.ERROR)),
    ).ranked()
    assert [f.id for f in r.findings] == ["cause", "err", "warn-certain", "warn-possible", "info-a"]
    assert not r.ok


def test_ok_needs_no_failure_and_no_error() -> None:
    assert Report((Prediction("torch", "2.9.0", "ok"),), (finding("w", Severity.WARNING),)).ok
    assert not Report((Prediction("torch", "2.9.0", "ok"),), (finding("e", Severity.ERROR),)).ok


@pytest.fixture(scope="module")
def seed_report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    snap, view = build_seed_demo(tmp_path_factory.mktemp("seed"))
    return diagnose(snap, view=view)


def test_json_output_validates_against_the_shipped_schema(seed_report: Report) -> None:
    data = json.loads(render_json(seed_report))
    jsonschema.validate(data, SCHEMA)
    assert data["schema"] == "torchdll.report" and data["schema_version"] == 1
    bad = dict(data, schema_version=2)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)


def test_text_fits_80_columns_and_has_no_colour_off_a_tty(seed_report: Report, monkeypatch: pytest.MonkeyPatch) -> None:
    text = render_text(seed_report, stream=io.StringIO())
    assert "\033[" not in text
    # prose wraps at 80 columns; commands are printed whole so they can be copied
    too_long, in_commands = [], False
    for line in text.splitlines():
        if line in ("   powershell:", "   cmd:", "   bash:"):
            in_commands = True
            continue
        if in_commands and line.startswith("     "):
            continue
        in_commands = False
        if len(line) > 80:
            too_long.append(line)
    assert too_long == []


def test_colour_on_a_tty_unless_no_color(seed_report: Report, monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert "\033[31m" in render_text(seed_report, stream=Tty())
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\033[" not in render_text(seed_report, stream=Tty())


def test_markdown_has_a_table_and_escapes_pipes() -> None:
    r = Report((Prediction("torch", "2.9.0", "fails", 127, "C:\\a|b.dll", culprit="x|y"),),
               (finding("f", Severity.ERROR),))
    md = render_markdown(r)
    assert "| torch | 2.9.0 | **fails** | 127 |" in md
    assert "C:\\a\\|b.dll" in md and "x\\|y" in md
    assert "```powershell\nRemove-Item x\n```" in md
