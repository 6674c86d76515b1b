"""The DLL-load exception hierarchy: classes per code, attributes, str(), pickling."""

from __future__ import annotations

import multiprocessing
import pickle

import pytest

from torchdll.errors import (
    BadImageError,
    BlockedByPolicyError,
    CommitLimitError,
    DllAccessDeniedError,
    DllInitError,
    DllLoadError,
    DllNotFoundError,
    PathTooLongError,
    ProcedureNotFoundError,
    TorchDLLError,
    dll_error_class,
)
from torchdll.report import Evidence, Finding, Prediction, Report, Severity

DLL = "C:\\venv\\Lib\\site-packages\\torch\\lib\\c10.dll"


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (126, DllNotFoundError), (127, ProcedureNotFoundError), (182, ProcedureNotFoundError),
        (193, BadImageError), (216, BadImageError), (1114, DllInitError), (1455, CommitLimitError),
        (4551, BlockedByPolicyError), (225, BlockedByPolicyError), (5, DllAccessDeniedError),
        (206, PathTooLongError), (14001, DllLoadError), (None, DllLoadError), (0, DllLoadError),
    ],
)
def test_class_per_code(code: int | None, cls: type[TorchDLLError]) -> None:
    assert dll_error_class(code) is cls
    err = cls("x", winerror=code)
    assert isinstance(err, TorchDLLError) and isinstance(err, OSError)
    assert err.winerror == code and err.code == code


def test_except_oserror_still_catches_it() -> None:
    with pytest.raises(OSError) as info:
        raise DllInitError("boom", winerror=1114, errno=22)
    assert info.value.errno == 22 and info.value.winerror == 1114


def _report() -> Report:
    finding = Finding("msvcp140-too-old", Severity.ERROR, "msvcp140.dll 14.29 is too old",
                      evidence=(Evidence("path", "C:\\Windows\\System32\\msvcp140.dll"),),
                      fix=("Install the VC++ Redistributable 14.40+", "Or use torch 2.8"),
                      commands={"powershell": ("winget install Microsoft.VCRedist.2015+.x64",)})
    pred = Prediction("torch", "2.9.0+cpu", "fails", 1114, DLL, culprit="c10.dll binds an old msvcp140.dll")
    return Report((pred,), (finding,), "win32 10.0.22631 x64", "3.11.9", "live", "0.1.0")


def _full_error() -> DllInitError:
    report = _report()
    err = DllInitError(
        "c10.dll binds C:\\Windows\\System32\\msvcp140.dll (FileVersion 14.29): too old",
        winerror=1114, errno=22, dll=DLL, culprit="C:\\Windows\\System32\\msvcp140.dll",
        importer=DLL, rule="loaded-module", candidates=("C:\\Windows\\System32\\msvcp140.dll",),
        causes=report.findings, fix=report.findings[0].fix, report=report,
        original="OSError: [WinError 1114] ...", notes=("a note",))
    try:
        raise err from OSError(22, "A dynamic link library (DLL) initialization routine failed")
    except DllInitError as caught:
        return caught


def test_str_is_short_and_actionable() -> None:
    text = str(_full_error())
    lines = text.splitlines()
    assert lines[0] == "import torch failed: a DLL's initialisation failed (WinError 1114)"
    assert f"  loading: {DLL}" in lines
    assert any(line.startswith("  cause: c10.dll binds") for line in lines)
    assert "  fix 1: Install the VC++ Redistributable 14.40+" in lines
    assert "  fix 2: Or use torch 2.8" in lines
    assert lines[-1] == "  details: the exception's .report, or run 'python -m torchdll'"
    assert len(lines) <= 8


def test_str_without_report_shows_the_original() -> None:
    err = DllNotFoundError("", winerror=126, dll=DLL, culprit="MSVCP140.dll", importer=DLL,
                           original="OSError: [WinError 126] ...")
    text = str(err)
    assert "culprit: MSVCP140.dll (needed by c10.dll)" in text
    assert text.endswith("original error: OSError: [WinError 126] ...")
    assert "DllNotFoundError(winerror=126" in repr(err)


def test_posix_str_has_no_winerror() -> None:
    err = DllNotFoundError("libc10.so was not found by the dynamic loader", errno=2)
    assert str(err).splitlines()[0] == "import torch failed: a DLL it needs was not found"


def _same(a: TorchDLLError, b: TorchDLLError) -> None:
    assert type(a) is type(b)
    for attr in ("winerror", "errno", "dll", "culprit", "importer", "rule", "candidates", "causes",
                 "fix", "report", "original", "notes", "module", "summary"):
        assert getattr(a, attr) == getattr(b, attr), attr
    assert str(a) == str(b)


def test_pickle_round_trip_keeps_everything_and_the_cause() -> None:
    err = _full_error()
    back = pickle.loads(pickle.dumps(err))
    _same(err, back)
    assert isinstance(back.__cause__, OSError)
    assert back.__cause__.args == err.__cause__.args  # type: ignore[union-attr]


def test_pickle_drops_an_unpicklable_cause() -> None:
    class Local(Exception):  # a local class cannot be pickled
        pass

    try:
        raise DllLoadError("x", winerror=None) from Local("nope")
    except DllLoadError as err:
        back = pickle.loads(pickle.dumps(err))
    assert back.__cause__ is None and back.summary == "x"


def _raise_in_child(code: int) -> None:
    raise dll_error_class(code)("from a worker", winerror=code, dll=DLL, report=_report(),
                                causes=_report().findings)


def test_round_trip_through_a_multiprocessing_child() -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        result = pool.apply_async(_raise_in_child, (1114,))
        with pytest.raises(DllInitError) as info:
            result.get(timeout=60)
    err = info.value
    assert err.winerror == 1114 and err.dll == DLL
    assert err.report == _report() and err.causes[0].id == "msvcp140-too-old"
