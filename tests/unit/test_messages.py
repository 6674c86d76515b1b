"""The English/Korean message catalogue, language choice, and the Korean renderers."""

from __future__ import annotations

import io
import locale
import re
import string
from pathlib import Path
from typing import Set

import pytest

from torchdll import _data, messages
from torchdll.cli import main
from torchdll.errors import _KIND_TEXT, DllInitError, TorchDLLError
from torchdll.report import _cols, _wrap_cols, render_markdown, render_text

HANGUL = re.compile("[\uac00-\ud7a3]")


def _fields(template: str) -> Set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def test_every_message_has_both_languages_with_the_same_fields() -> None:
    table = messages.messages()
    assert len(table) > 100
    for msg_id, entry in table.items():
        assert set(entry) == {"en", "ko"}, msg_id
        assert entry["en"].strip() and entry["ko"].strip(), msg_id
        assert _fields(entry["en"]) == _fields(entry["ko"]), msg_id
        assert HANGUL.search(entry["ko"]), f"{msg_id}: the Korean text has no Hangul"


def test_every_finding_has_title_summary_and_fix() -> None:
    table = messages.messages()
    catalogue = _data.findings_catalogue()
    assert catalogue
    for fid, body in catalogue.items():
        for part in ("title", "summary", "fix"):
            assert f"finding.{fid}.{part}" in table, (fid, part)
        # the English is the findings catalogue's own; messages.json holds only the Korean
        assert table[f"finding.{fid}.title"]["en"] == body["title"], fid
        assert table[f"finding.{fid}.summary"]["en"] == body["summary"], fid
    listed = {k[len("finding."):].rsplit(".", 1)[0] for k in table if k.startswith("finding.")}
    assert listed == set(catalogue)
    raw = _data.load("messages.json")["messages"]
    copies = [k for k, v in raw.items() if k.startswith("finding.") and not k.endswith(".fix") and "en" in v]
    assert copies == [], "English titles/summaries belong to data/findings/*.json only"
    assert all(set(raw[f"finding.{fid}.{part}"]) == {"ko"} for fid in catalogue for part in ("title", "summary"))


def test_every_error_code_has_its_message() -> None:
    table = messages.messages()
    codes = _data.load("error_codes.json")["codes"]
    raw = _data.load("messages.json")["messages"]
    for code, body in codes.items():
        assert table[f"error.{code}.torch"]["en"] == body["torch"], code
        assert set(raw[f"error.{code}.torch"]) == {"ko"}, code  # the English lives in error_codes.json


def test_exception_kinds_are_catalogued() -> None:
    for kind, english in _KIND_TEXT.items():
        assert messages.text(f"exc.kind.{kind}", "en") == english


@pytest.mark.parametrize("value,expected", [("ko", "ko"), ("ko_KR", "ko"), ("ko_KR.UTF-8", "ko"),
                                            ("en", "en"), ("en_US", "en")])
def test_language_honours_torchdll_lang(monkeypatch: pytest.MonkeyPatch, value: str,
                                        expected: str) -> None:
    monkeypatch.setenv("LANG", "ko_KR.UTF-8" if expected == "en" else "en_US.UTF-8")
    monkeypatch.setenv("TORCHDLL_LANG", value)
    assert messages.language() == expected


def test_language_falls_back_to_the_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORCHDLL_LANG", raising=False)
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    monkeypatch.setenv("LANG", "ko_KR.UTF-8")
    assert messages.language() == "ko"
    monkeypatch.setenv("LANG", "C.UTF-8")
    assert messages.language() == "en"
    monkeypatch.setenv("TORCHDLL_LANG", "fr")  # unsupported: the locale decides
    monkeypatch.setenv("LC_ALL", "ko_KR.UTF-8")
    assert messages.language() == "ko"
    monkeypatch.delenv("LC_ALL")
    monkeypatch.delenv("LANG")
    monkeypatch.setattr(locale, "getlocale", lambda: ("Korean_Korea", "949"))
    assert messages.language() == "ko"


def test_text_formats_and_falls_back() -> None:
    assert messages.text("exc.fix_step", "ko", n=1, step="x") == "해결 1: x"
    assert messages.text("exc.fix_step", "en", n=2, step="y") == "fix 2: y"
    with pytest.raises(KeyError):
        messages.text("no.such.message", "en")


def _doctor(*argv: str) -> str:
    out = io.StringIO()
    assert main(["doctor", "--demo", *argv], out=out) == 0
    return out.getvalue()


def test_doctor_demo_in_korean() -> None:
    text = _doctor("--lang", "ko")
    assert HANGUL.search(text)
    assert "C:\\Users\\민수\\miniconda3\\msvcp140.dll" in text
    assert "WinError 1114" in text
    assert _doctor("--lang", "en") == _doctor()
    assert not HANGUL.search(_doctor().replace("민수", ""))


def test_doctor_follows_torchdll_lang(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHDLL_LANG", "ko")
    assert _doctor() == _doctor("--lang", "ko")
    assert '"schema": "torchdll.report"' in _doctor("--json")
    assert "가능성" not in _doctor("--json")


def test_exception_message_in_korean(monkeypatch: pytest.MonkeyPatch) -> None:
    err = DllInitError("msvcp140.dll is too old", winerror=1114, dll="c10.dll",
                       fix=("update it",), original="OSError: boom")
    english = str(err)
    assert english.startswith("import torch failed: a DLL's initialisation failed (WinError 1114)")
    monkeypatch.setenv("TORCHDLL_LANG", "ko")
    korean = str(err)
    assert HANGUL.search(korean)
    assert "WinError 1114" in korean and "c10.dll" in korean and "update it" in korean
    plain = TorchDLLError(culprit="C:\\x\\msvcp140.dll", importer="C:\\lib\\c10.dll")
    assert "c10.dll에서 필요" in str(plain)


def _seed_report(tmp_path: Path) -> "object":
    from torchdll.demo import build_seed_demo
    from torchdll.diagnosis import diagnose

    snap, view = build_seed_demo(str(tmp_path))
    return diagnose(snap, view=view)


def test_korean_text_report_fits_80_columns(tmp_path: Path) -> None:
    report = _seed_report(tmp_path)
    text = render_text(report, lang="ko")  # type: ignore[arg-type]
    assert HANGUL.search(text)
    commands = {f"     {c}" for f in report.findings  # type: ignore[attr-defined]
                for cmds in f.commands.values() for c in cmds}
    for line in text.splitlines():
        if line in commands:
            continue
        assert _cols(line) <= 80, line
    md = render_markdown(report, lang="ko")  # type: ignore[arg-type]
    assert "torchdll 보고서" in md and "msvcp140-too-old" in md


def test_wrap_by_columns() -> None:
    assert _cols("가a") == 3
    lines = _wrap_cols("가나다 " * 30, 20, "  ")
    assert all(_cols(line) <= 20 for line in lines)
    assert _wrap_cols("x" * 50, 10, "") == ["x" * 10] * 5
    assert _wrap_cols("", 10, "  ") == [""]
