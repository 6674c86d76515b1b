"""``torchdll fix-path`` (torchdll._cli_path), through its own parser, on any OS."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from tests.support.fakewin import FakeWinreg, fake_repair_api, typical_registry
from tests.support.memview import MemoryView
from torchdll import _cli_path
from torchdll._win32 import WinApi
from torchdll.pathenv import Interpreter
from torchdll.snapshot import PythonInfo, RegistryValue, Snapshot

HKCU, HKLM = FakeWinreg.HKEY_CURRENT_USER, FakeWinreg.HKEY_LOCAL_MACHINE
SYS_KEY = r"SYSTEM\CurrentControlSet\Control\Session Manager\Environment"
HOME = "C:\\Users\\민수"
VENV = HOME + "\\proj\\.venv"
TORCH_LIB = VENV + "\\Lib\\site-packages\\torch\\lib"
ENV = {"SystemRoot": "C:\\Windows", "USERPROFILE": HOME}
PY = Interpreter(prefix=VENV, exec_prefix=VENV)
VIEW = MemoryView({TORCH_LIB + "\\c10.dll": None})
USER_PATH = "%USERPROFILE%\\AppData\\Local\\Microsoft\\WindowsApps;" + TORCH_LIB + ";"
USER_NEW = "%USERPROFILE%\\AppData\\Local\\Microsoft\\WindowsApps;"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torchdll")
    sub = p.add_subparsers(dest="command")
    _cli_path.configure_parser(sub)
    return p


def run(argv: List[str], *, api: Optional[WinApi] = None, platform: str = "linux",
        **seams: Any) -> Tuple[int, str]:
    args = parser().parse_args(["fix-path", *argv])
    out = io.StringIO()
    seams.setdefault("environ", ENV)
    seams.setdefault("view", VIEW)
    seams.setdefault("python", PY)
    code = _cli_path.execute(args, out, api=api, platform=platform, **seams)
    return code, out.getvalue()


def windows(admin: bool = False) -> Tuple[FakeWinreg, WinApi]:
    reg = typical_registry(user_path=(USER_PATH, FakeWinreg.REG_EXPAND_SZ),
                           system_path=("%SystemRoot%\\system32;;bin", FakeWinreg.REG_EXPAND_SZ))
    return reg, fake_repair_api(reg, admin=admin)


def test_help_shows_the_plan_apply_undo_flow(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["fix-path", "--help"])
    text = capsys.readouterr().out
    for needle in ("torchdll fix-path  ", "--apply", "--undo", "--system", "plan:", "back up the value and its type",
                   "REG_EXPAND_SZ stays REG_EXPAND_SZ", "WM_SETTINGCHANGE", "exit status"):
        assert needle in text, needle
    assert text.index("1. torchdll fix-path") < text.index("2. torchdll fix-path --apply") < text.index(
        "3. torchdll fix-path --undo")


def test_options_are_exclusive_where_they_must_be() -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["fix-path", "--user", "--system"])
    with pytest.raises(SystemExit):
        parser().parse_args(["fix-path", "--apply", "--undo"])
    args = parser().parse_args(["fix-path", "--undo"])
    assert args.undo == "" and args.scope is None and not args.apply


@pytest.mark.parametrize("argv", [[], ["--apply"], ["--undo"], ["--system", "--apply"]])
def test_off_windows_there_is_nothing_to_repair(argv: List[str]) -> None:
    code, out = run(argv)
    assert code == 0 and "not Windows" in out and "--value" in out
    code, out = run([*argv, "--json"])
    data = json.loads(out)
    assert code == 0 and data["action"] == "unsupported" and data["schema"] == "torchdll.fix-path"


def test_a_plan_for_a_given_value_on_any_os() -> None:
    code, out = run(["--value", USER_PATH, "--type", "REG_EXPAND_SZ"])
    assert code == 0
    assert f"  - {TORCH_LIB}" in out and "this-env-dll-dir" in out
    assert "nothing was read from or written to" in out
    code, out = run(["--value", USER_PATH, "--json"])
    data = json.loads(out)
    assert data["action"] == "plan" and data["plan"]["new"] == {"value": USER_NEW, "type": "REG_EXPAND_SZ"}
    assert data["plan"]["source"] == "value"


def test_a_reg_sz_value_keeps_its_type() -> None:
    _, out = run(["--value", "%TOOLS%\\bin;" + TORCH_LIB, "--type", "REG_SZ", "--json"])
    plan = json.loads(out)["plan"]
    assert plan["new"] == {"value": "%TOOLS%\\bin", "type": "REG_SZ"}
    assert any("REG_SZ" in note for note in plan["notes"])


def test_value_cannot_be_applied(capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run(["--value", USER_PATH, "--apply"], platform="win32")
    assert code == 2 and "only show a plan" in capsys.readouterr().err


def test_policy_option() -> None:
    _, out = run(["--value", "C:\\a;C:\\A", "--policy", "report-only", "--json"])
    assert json.loads(out)["plan"]["changed"] is False
    _, out = run(["--value", "C:\\a;C:\\A", "--policy", "strict", "--json"])
    assert json.loads(out)["plan"]["new"]["value"] == ""  # both missing in this view


def test_windows_plan_changes_nothing() -> None:
    reg, api = windows()
    code, out = run([], api=api, platform="win32")
    assert code == 0 and reg.writes == []
    assert "HKCU\\Environment\\Path (REG_EXPAND_SZ)" in out
    assert "Nothing was changed. To write this: torchdll fix-path --apply" in out


def test_windows_apply_then_undo(tmp_path: Path) -> None:
    reg, api = windows()
    backups = str(tmp_path / "b")
    code, out = run(["--apply", "--backup-dir", backups], api=api, platform="win32")
    assert code == 0, out
    assert reg.value_of(HKCU, "Environment", "Path") == (USER_NEW, FakeWinreg.REG_EXPAND_SZ)
    assert "Backed up HKCU\\Environment\\Path to" in out and "read it back: OK" in out
    assert f"  - {TORCH_LIB}  [this-env-dll-dir]" in out and "Undo: torchdll fix-path --undo" in out
    code, out = run(["--list-backups", "--backup-dir", backups], api=api, platform="win32")
    assert code == 0 and "before fix-path --apply" in out
    code, out = run(["--undo", "--backup-dir", backups, "--json"], api=api, platform="win32")
    data = json.loads(out)
    assert code == 0 and data["action"] == "undo"
    assert data["outcome"]["after"] == {"value": USER_PATH, "type": "REG_EXPAND_SZ"}
    assert reg.value_of(HKCU, "Environment", "Path") == (USER_PATH, FakeWinreg.REG_EXPAND_SZ)
    code, out = run(["--list-backups", "--backup-dir", backups, "--json"])
    assert len(json.loads(out)["backups"]) == 2


def test_windows_apply_with_nothing_to_do(tmp_path: Path) -> None:
    reg = typical_registry(user_path=(USER_NEW, FakeWinreg.REG_EXPAND_SZ))
    api = fake_repair_api(reg)
    code, out = run(["--apply", "--backup-dir", str(tmp_path)], api=api, platform="win32")
    assert code == 0 and "Nothing to repair." in out and reg.writes == []


def test_system_apply_without_admin_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg, api = windows(admin=False)
    before = reg.value_of(HKLM, SYS_KEY, "Path")
    code, _ = run(["--system", "--apply", "--backup-dir", str(tmp_path)], api=api, platform="win32")
    assert code == 1 and "administrator" in capsys.readouterr().err
    assert reg.value_of(HKLM, SYS_KEY, "Path") == before
    code, out = run(["--system", "--apply", "--json", "--backup-dir", str(tmp_path)], api=api, platform="win32")
    error = json.loads(out)["error"]
    assert code == 1 and error["type"] == "PathAccessDeniedError" and error["winerror"] == 5


def test_undo_without_backups_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, api = windows()
    code, _ = run(["--undo", "--backup-dir", str(tmp_path)], api=api, platform="win32")
    assert code == 1 and "nothing to undo" in capsys.readouterr().err


def test_list_backups_when_there_are_none(tmp_path: Path) -> None:
    code, out = run(["--list-backups", "--backup-dir", str(tmp_path)])
    assert code == 0 and "No backups" in out


def test_a_snapshot_from_another_machine(tmp_path: Path) -> None:
    snap = Snapshot(
        user_path=RegistryValue(USER_PATH, "REG_EXPAND_SZ"),
        system_path=None,
        python=PythonInfo(prefix=VENV, exec_prefix=VENV, base_prefix="C:\\Python311",
                          base_exec_prefix="C:\\Python311"),
        environ={"USERPROFILE": HOME, "SystemRoot": "C:\\Windows"},
    )
    snap_file = tmp_path / "snapshot.json"
    snap.save(snap_file)
    root = tmp_path / "mirror"
    (root / "C" / "Users" / "민수" / "proj" / ".venv" / "Lib" / "site-packages" / "torch" / "lib").mkdir(parents=True)
    (root / "C" / "Users" / "민수" / "proj" / ".venv" / "Lib" / "site-packages" / "torch" / "lib" / "c10.dll").write_bytes(b"")
    args = parser().parse_args(["fix-path", "--snapshot", str(snap_file), "--root", str(root), "--json"])
    out = io.StringIO()
    assert _cli_path.execute(args, out, platform="linux") == 0
    plan: Dict[str, Any] = json.loads(out.getvalue())["plan"]
    assert plan["new"]["value"] == USER_NEW
    assert plan["sanitize"]["kept"][0]["expanded"] == HOME + "\\AppData\\Local\\Microsoft\\WindowsApps"
    args = parser().parse_args(["fix-path", "--system", "--snapshot", str(snap_file)])
    out = io.StringIO()
    assert _cli_path.execute(args, out, platform="linux") == 0
    assert "records no system Path" in out.getvalue()
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    args = parser().parse_args(["fix-path", "--snapshot", str(bad)])
    assert _cli_path.execute(args, io.StringIO(), platform="linux") == 2


def test_a_plan_too_long_to_write_says_so() -> None:
    long_value = ";".join(f"C:\\tools\\t{i:05d}" for i in range(2500)) + ";bin"
    reg = typical_registry(user_path=(long_value, FakeWinreg.REG_EXPAND_SZ))
    code, out = run([], api=fake_repair_api(reg), platform="win32")
    assert code == 0 and "--apply will refuse" in out and "32767" in out
