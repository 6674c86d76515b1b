"""Persistent Path repair (torchdll.registry) against the in-memory winreg fake, with faults.

The invariant every fault test checks: the user's Path is never lost -- after any failure the
registry holds the original value, or (when even restoring failed) the backup file does.
"""

from __future__ import annotations

import ctypes
import json
import os
import pickle
import sys
from ctypes import wintypes
from pathlib import Path
from typing import List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.fakewin import (
    FakeShell32,
    FakeUser32,
    FakeWinreg,
    fake_repair_api,
    typical_registry,
)
from tests.support.memview import MemoryView
from torchdll import registry
from torchdll._win32 import WinApi, WinApiError
from torchdll.errors import (
    PathAccessDeniedError,
    PathBackupError,
    PathChangedError,
    PathRepairError,
    PathValueError,
    PathVerifyError,
)
from torchdll.pathenv import EntryKind, Interpreter
from torchdll.registry import (
    MAX_PATH_CHARS,
    PathRepairPlan,
    apply_path_repair,
    default_backup_dir,
    list_backups,
    plan_path_repair,
    read_backup,
    undo_path_repair,
)
from torchdll.sanitize import REPORT_ONLY_POLICY, STRICT_POLICY
from torchdll.snapshot import RegistryValue

HKCU, HKLM = FakeWinreg.HKEY_CURRENT_USER, FakeWinreg.HKEY_LOCAL_MACHINE
SYS_KEY = r"SYSTEM\CurrentControlSet\Control\Session Manager\Environment"
HOME = "C:\\Users\\홍길동"
VENV = HOME + "\\proj\\.venv"
TORCH_LIB = VENV + "\\Lib\\site-packages\\torch\\lib"
OLD_LIB = HOME + "\\miniconda3\\envs\\old\\Lib\\site-packages\\torch\\lib"
ENV = {"SystemRoot": "C:\\Windows", "USERPROFILE": HOME}
PY = Interpreter(prefix=VENV, exec_prefix=VENV, base_prefix="C:\\Python311", base_exec_prefix="C:\\Python311")
VIEW = MemoryView({TORCH_LIB + "\\c10.dll": None, OLD_LIB + "\\c10.dll": None})

USER_PATH = "%USERPROFILE%\\AppData\\Local\\Microsoft\\WindowsApps;" + TORCH_LIB + ";%NOPE%\\bin;"
USER_NEW = "%USERPROFILE%\\AppData\\Local\\Microsoft\\WindowsApps;%NOPE%\\bin;"
SYSTEM_PATH = "%SystemRoot%\\system32;%SystemRoot%;" + OLD_LIB + ";;C:\\Program Files\\Git\\cmd"
SYSTEM_NEW = "%SystemRoot%\\system32;%SystemRoot%;C:\\Program Files\\Git\\cmd"


def make(user: Optional[Tuple[str, int]] = (USER_PATH, FakeWinreg.REG_EXPAND_SZ),
         system: Optional[Tuple[str, int]] = (SYSTEM_PATH, FakeWinreg.REG_EXPAND_SZ),
         *, admin: bool = False, broadcast_fails: bool = False) -> Tuple[FakeWinreg, WinApi]:
    reg = typical_registry(user_path=user, system_path=system)
    return reg, fake_repair_api(reg, admin=admin, broadcast_fails=broadcast_fails)


def user_value(reg: FakeWinreg) -> Optional[Tuple[object, int]]:
    return reg.value_of(HKCU, "Environment", "Path")


def system_value(reg: FakeWinreg) -> Optional[Tuple[object, int]]:
    return reg.value_of(HKLM, SYS_KEY, "Path")


def plan_for(api: WinApi, scope: str = "user", **kw: object) -> PathRepairPlan:
    return plan_path_repair(scope, api=api, environ=ENV, view=VIEW, python=PY, **kw)  # type: ignore[arg-type]


def apply(api: WinApi, backups: Path, scope: str = "user", **kw: object) -> registry.PathRepairOutcome:
    return apply_path_repair(plan_for(api, scope), api=api, backup_dir=backups, **kw)  # type: ignore[arg-type]


def backup_files(folder: Path) -> List[Path]:
    return sorted(folder.glob("path-*.json")) if folder.exists() else []


@pytest.fixture
def backups(tmp_path: Path) -> Path:
    return tmp_path / "backups"


# --------------------------------------------------------------------------------------------
# Plan
# --------------------------------------------------------------------------------------------


def test_plan_reads_the_registry_and_changes_nothing() -> None:
    reg, api = make()
    plan = plan_for(api)
    assert plan.old == RegistryValue(USER_PATH, "REG_EXPAND_SZ")
    assert plan.new == RegistryValue(USER_NEW, "REG_EXPAND_SZ")
    assert plan.changed and plan.source == "registry" and plan.location == "HKCU\\Environment\\Path"
    assert [r.entry.raw for r in plan.result.removed] == [TORCH_LIB]  # type: ignore[union-attr]
    assert reg.writes == [] and user_value(reg) == (USER_PATH, FakeWinreg.REG_EXPAND_SZ)
    lines = "\n".join(plan.lines())
    assert f"  - {TORCH_LIB}" in lines and "this-env-dll-dir" in lines
    assert "unexpanded (info, kept)" in lines and USER_NEW in lines
    assert json.loads(json.dumps(plan.to_dict()))["new"]["type"] == "REG_EXPAND_SZ"


def test_plan_of_the_system_path() -> None:
    _, api = make()
    plan = plan_for(api, "system")
    assert plan.new == RegistryValue(SYSTEM_NEW, "REG_EXPAND_SZ")
    assert plan.location.startswith("HKLM\\SYSTEM\\CurrentControlSet")


def test_plan_of_a_given_value_needs_no_registry() -> None:
    plan = plan_path_repair("user", value=(USER_PATH, "REG_SZ"), environ=ENV, view=VIEW, python=PY)
    assert plan.source == "value" and plan.new == RegistryValue(USER_NEW, "REG_SZ")
    assert any("REG_SZ" in n for n in plan.notes)  # %NOPE% will never expand in a REG_SZ value
    with pytest.raises(ValueError, match="cannot be applied"):
        apply_path_repair(plan, api=make()[1])
    with pytest.raises(PathValueError):
        plan_path_repair("user", value=("x", "REG_DWORD"))
    with pytest.raises(ValueError, match="scope"):
        plan_path_repair("machine", value=("x", "REG_SZ"))


@pytest.mark.parametrize("missing", ["value", "key"])
def test_a_missing_value_or_key_means_nothing_to_repair(missing: str, backups: Path) -> None:
    reg, api = make(user=None)
    if missing == "key":
        reg.remove_key(HKCU, "Environment")
    plan = plan_for(api)
    assert plan.old is None and plan.new is None and not plan.changed
    assert "no such value" in plan.lines()[0]
    outcome = apply_path_repair(plan, api=api, backup_dir=backups)
    assert outcome.action == "none" and reg.writes == [] and backup_files(backups) == []
    assert reg._walk(HKCU, "Environment", False) is None or missing == "value"  # never created


def test_unreadable_and_non_string_values_are_errors() -> None:
    reg, api = make()
    reg.deny(HKCU, "Environment")
    with pytest.raises(PathAccessDeniedError, match="cannot read"):
        plan_for(api)
    reg, api = make(user=(b"\x00\x01", FakeWinreg.REG_BINARY))
    with pytest.raises(PathRepairError, match="REG_BINARY"):
        plan_for(api)


@pytest.mark.skipif(sys.platform == "win32", reason="the real registry exists on Windows")
def test_reading_the_registry_off_windows_says_there_is_none() -> None:
    with pytest.raises(PathRepairError, match="only on Windows"):
        plan_path_repair("user")
    with pytest.raises(PathRepairError, match="only on Windows"):
        apply_path_repair(scope="system")


# --------------------------------------------------------------------------------------------
# Apply
# --------------------------------------------------------------------------------------------


def test_apply_backs_up_writes_with_the_same_type_verifies_and_notifies(backups: Path) -> None:
    reg, api = make()
    outcome = apply(api, backups)
    assert outcome.action == "apply" and outcome.notified
    assert user_value(reg) == (USER_NEW, FakeWinreg.REG_EXPAND_SZ)  # REG_EXPAND_SZ kept, %VARS% kept
    assert outcome.before == RegistryValue(USER_PATH, "REG_EXPAND_SZ")
    assert outcome.after == RegistryValue(USER_NEW, "REG_EXPAND_SZ")
    [file] = backup_files(backups)
    assert str(file) == outcome.backup
    data = json.loads(file.read_text("ascii"))
    assert (data["schema"], data["scope"], data["value"], data["type"]) == (
        "torchdll.path-backup", "user", USER_PATH, "REG_EXPAND_SZ")
    assert data["reason"] == "before fix-path --apply" and data["created"].endswith("Z")
    user32 = api.user32
    assert isinstance(user32, FakeUser32)
    assert user32.broadcasts == [(0xFFFF, 0x001A, 0, "Environment", 0x0002, 5000)]
    assert json.loads(json.dumps(outcome.to_dict()))["backup"] == outcome.backup


def test_reg_sz_stays_reg_sz(backups: Path) -> None:
    reg, api = make(user=(USER_PATH, FakeWinreg.REG_SZ))
    apply(api, backups)
    assert user_value(reg) == (USER_NEW, FakeWinreg.REG_SZ)
    assert read_backup(backup_files(backups)[0]).value == RegistryValue(USER_PATH, "REG_SZ")


def test_apply_plans_by_itself_when_given_a_scope(backups: Path) -> None:
    reg, api = make()
    outcome = apply_path_repair(scope="user", api=api, backup_dir=backups, environ=ENV, view=VIEW,
                                python=PY)
    assert outcome.action == "apply" and user_value(reg) == (USER_NEW, FakeWinreg.REG_EXPAND_SZ)


def test_nothing_to_change_writes_nothing(backups: Path) -> None:
    reg, api = make(user=(USER_NEW, FakeWinreg.REG_EXPAND_SZ))
    outcome = apply(api, backups)
    assert outcome.action == "none" and reg.writes == [] and backup_files(backups) == []
    assert apply_path_repair(plan_for(api, policy=REPORT_ONLY_POLICY), api=api,
                             backup_dir=backups).action == "none"


def test_system_scope_without_admin_is_refused_before_anything(backups: Path) -> None:
    reg, api = make(admin=False)
    with pytest.raises(PathAccessDeniedError, match="administrator") as info:
        apply(api, backups, "system")
    assert info.value.winerror == 5 and info.value.backup is None and info.value.restored is None
    assert system_value(reg) == (SYSTEM_PATH, FakeWinreg.REG_EXPAND_SZ)
    assert reg.writes == [] and backup_files(backups) == []


def test_system_scope_with_admin(backups: Path) -> None:
    reg, api = make(admin=True)
    outcome = apply(api, backups, "system")
    assert outcome.action == "apply" and system_value(reg) == (SYSTEM_NEW, FakeWinreg.REG_EXPAND_SZ)
    assert read_backup(outcome.backup).scope == "system"  # type: ignore[arg-type]


def test_access_denied_on_write_despite_the_admin_check(backups: Path) -> None:
    reg, api = make(admin=True)
    reg.admin = False  # IsUserAnAdmin says yes, the registry says no (a policy, UAC virtualisation)
    with pytest.raises(PathAccessDeniedError) as info:
        apply(api, backups, "system")
    assert info.value.restored is True and info.value.winerror == 5
    assert system_value(reg) == (SYSTEM_PATH, FakeWinreg.REG_EXPAND_SZ)


def test_a_value_changed_since_the_plan_is_not_overwritten(backups: Path) -> None:
    reg, api = make()
    plan = plan_for(api)
    reg.set_value(HKCU, "Environment", "Path", USER_PATH + "C:\\new;", FakeWinreg.REG_EXPAND_SZ)
    with pytest.raises(PathChangedError, match="plan again"):
        apply_path_repair(plan, api=api, backup_dir=backups)
    assert user_value(reg) == (USER_PATH + "C:\\new;", FakeWinreg.REG_EXPAND_SZ)
    assert backup_files(backups) == []


def test_a_key_removed_since_the_plan_is_not_recreated(backups: Path) -> None:
    reg, api = make()
    plan = plan_for(api)
    reg.remove_key(HKCU, "Environment")
    with pytest.raises(PathChangedError):
        apply_path_repair(plan, api=api, backup_dir=backups)
    assert reg._walk(HKCU, "Environment", False) is None and reg.writes == []


def test_a_result_longer_than_an_environment_variable_is_refused(backups: Path) -> None:
    long_value = ";".join(f"C:\\tools\\t{i:05d}" for i in range(2500)) + ";bin"
    assert len(long_value) > MAX_PATH_CHARS
    reg, api = make(user=(long_value, FakeWinreg.REG_EXPAND_SZ))
    plan = plan_for(api)
    assert plan.changed and plan.too_long and any("32767" in n for n in plan.notes)
    with pytest.raises(PathValueError, match="32767"):
        apply_path_repair(plan, api=api, backup_dir=backups)
    assert user_value(reg) == (long_value, FakeWinreg.REG_EXPAND_SZ) and backup_files(backups) == []


def test_a_nul_in_the_value_to_write_is_refused(backups: Path) -> None:
    reg, api = make()
    old = RegistryValue(USER_PATH, "REG_EXPAND_SZ")
    bad = PathRepairPlan("user", "HKCU\\Environment\\Path", old, RegistryValue("C:\\a\x00b", "REG_EXPAND_SZ"), None)
    with pytest.raises(PathValueError, match="NUL"):
        apply_path_repair(bad, api=api, backup_dir=backups)
    assert reg.writes == []
    with pytest.raises(ValueError, match="NUL"):
        api.set_string_value("HKCU", "Environment", "Path", "a\x00b", "REG_SZ")
    with pytest.raises(ValueError, match="REG_SZ or REG_EXPAND_SZ"):
        api.set_string_value("HKCU", "Environment", "Path", "a", "REG_MULTI_SZ")


def test_broadcast_failure_is_reported_not_fatal(backups: Path) -> None:
    reg, api = make(broadcast_fails=True)
    outcome = apply(api, backups)
    assert outcome.action == "apply" and not outcome.notified
    assert user_value(reg) == (USER_NEW, FakeWinreg.REG_EXPAND_SZ)
    assert apply(make()[1], backups, broadcast=False).notified is False


# --------------------------------------------------------------------------------------------
# Fault injection: the Path is never lost
# --------------------------------------------------------------------------------------------


def test_a_write_that_fails_midway_is_rolled_back(backups: Path) -> None:
    reg, api = make()
    reg.faults.fail_writes, reg.faults.partial = 1, True
    with pytest.raises(PathRepairError, match="back in place") as info:
        apply(api, backups)
    assert type(info.value) is PathRepairError and info.value.restored is True
    assert info.value.winerror == 1450
    assert user_value(reg) == (USER_PATH, FakeWinreg.REG_EXPAND_SZ)
    assert read_backup(info.value.backup).value == RegistryValue(USER_PATH, "REG_EXPAND_SZ")  # type: ignore[arg-type]


def test_when_restoring_fails_too_the_backup_holds_the_value(backups: Path) -> None:
    reg, api = make()
    reg.faults.fail_writes, reg.faults.partial = 2, True
    with pytest.raises(PathRepairError, match="--undo") as info:
        apply(api, backups)
    assert info.value.restored is False
    assert user_value(reg) != (USER_PATH, FakeWinreg.REG_EXPAND_SZ)  # the registry is damaged...
    backup = info.value.backup
    assert backup is not None and read_backup(backup).value == RegistryValue(USER_PATH, "REG_EXPAND_SZ")
    outcome = undo_path_repair(backup, api=api, backup_dir=backups)  # ...and the undo repairs it
    assert outcome.action == "undo"
    assert user_value(reg) == (USER_PATH, FakeWinreg.REG_EXPAND_SZ)


def test_a_read_back_mismatch_restores_the_backup(backups: Path) -> None:
    reg, api = make()
    reg.faults.alter_writes = 1
    with pytest.raises(PathVerifyError, match="did not read back") as info:
        apply(api, backups)
    assert info.value.restored is True
    assert user_value(reg) == (USER_PATH, FakeWinreg.REG_EXPAND_SZ)


def test_a_type_change_on_write_counts_as_a_mismatch(backups: Path) -> None:
    reg, api = make()
    reg.faults.alter_writes = 1
    reg.faults.alter = lambda value, kind: (value, FakeWinreg.REG_SZ)  # the bug this tool must never have
    with pytest.raises(PathVerifyError):
        apply(api, backups)
    assert user_value(reg) == (USER_PATH, FakeWinreg.REG_EXPAND_SZ)


def test_a_mismatch_that_also_hits_the_restore(backups: Path) -> None:
    reg, api = make()
    reg.faults.alter_writes = 2
    with pytest.raises(PathVerifyError) as info:
        apply(api, backups)
    assert info.value.restored is False
    undo_path_repair(info.value.backup, api=api, backup_dir=backups)
    assert user_value(reg) == (USER_PATH, FakeWinreg.REG_EXPAND_SZ)


def test_a_failing_key_open_changes_nothing(backups: Path) -> None:
    reg, api = make()
    reg.faults.fail_creates = 1
    with pytest.raises(PathRepairError) as info:
        apply(api, backups)
    assert info.value.restored is True and user_value(reg) == (USER_PATH, FakeWinreg.REG_EXPAND_SZ)


def test_a_locked_backup_folder_changes_nothing(tmp_path: Path) -> None:
    reg, api = make()
    locked = tmp_path / "locked"
    locked.write_text("a file where the folder should be")
    with pytest.raises(PathBackupError, match="nothing was changed") as info:
        apply(api, locked)
    assert info.value.backup is None and reg.writes == []
    assert user_value(reg) == (USER_PATH, FakeWinreg.REG_EXPAND_SZ)


def test_a_backup_that_cannot_be_renamed_into_place_changes_nothing(backups: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    reg, api = make()

    def sharing_violation(src: str, dst: str) -> None:
        raise PermissionError(13, "The process cannot access the file", dst)

    monkeypatch.setattr(registry.os, "replace", sharing_violation)
    with pytest.raises(PathBackupError):
        apply(api, backups)
    assert reg.writes == [] and backup_files(backups) == []
    assert list(backups.iterdir()) == []  # the temporary file was removed


def test_a_backup_that_does_not_read_back_changes_nothing(backups: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    reg, api = make()
    real = registry.read_backup
    monkeypatch.setattr(registry, "read_backup",
                        lambda p: registry.PathBackup(str(p), "user", RegistryValue("x", "REG_SZ"), "", ""))
    with pytest.raises(PathBackupError, match="does not read back"):
        apply(api, backups)
    monkeypatch.setattr(registry, "read_backup", real)
    assert reg.writes == []


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fail_writes=st.integers(0, 3),
    partial=st.booleans(),
    alter_writes=st.integers(0, 3),
    fail_creates=st.integers(0, 2),
    locked=st.booleans(),
)
def test_property_the_path_is_never_lost(tmp_path_factory: pytest.TempPathFactory, fail_writes: int,
                                         partial: bool, alter_writes: int, fail_creates: int,
                                         locked: bool) -> None:
    folder = tmp_path_factory.mktemp("faults") / "backups"
    if locked:
        folder.write_text("locked")
    reg, api = make()
    original = (USER_PATH, FakeWinreg.REG_EXPAND_SZ)
    faults = reg.faults
    faults.fail_writes, faults.partial = fail_writes, partial
    faults.alter_writes, faults.fail_creates = alter_writes, fail_creates
    try:
        apply(api, folder)
    except PathRepairError as exc:
        if user_value(reg) != original:
            assert exc.restored is False and exc.backup is not None
            assert read_backup(exc.backup).value == RegistryValue(*original[:1], "REG_EXPAND_SZ")  # type: ignore[arg-type]
        else:
            assert exc.restored in (True, None)
    else:
        assert user_value(reg) == (USER_NEW, FakeWinreg.REG_EXPAND_SZ)
        assert [read_backup(p).value for p in backup_files(folder)] == [RegistryValue(USER_PATH, "REG_EXPAND_SZ")]


# --------------------------------------------------------------------------------------------
# Undo and backups
# --------------------------------------------------------------------------------------------


def test_undo_restores_the_newest_backup_and_is_itself_undoable(backups: Path) -> None:
    reg, api = make()
    applied = apply(api, backups)
    undone = undo_path_repair(api=api, backup_dir=backups)
    assert undone.action == "undo" and undone.restored_from == applied.backup
    assert user_value(reg) == (USER_PATH, FakeWinreg.REG_EXPAND_SZ)
    assert read_backup(undone.backup).value == RegistryValue(USER_NEW, "REG_EXPAND_SZ")  # type: ignore[arg-type]
    assert len(backup_files(backups)) == 2
    redone = undo_path_repair(api=api, backup_dir=backups)  # the newest backup is the undo's own
    assert redone.restored_from == undone.backup
    assert user_value(reg) == (USER_NEW, FakeWinreg.REG_EXPAND_SZ)
    assert [b.reason.split(" ")[2] for b in list_backups(backups)] == ["--undo", "--undo", "--apply"]


def test_undo_by_file_name_and_scope_checks(backups: Path) -> None:
    reg, api = make(admin=True)
    user_backup = apply(api, backups).backup
    system_backup = apply(api, backups, "system").backup
    assert user_backup and system_backup
    with pytest.raises(PathBackupError, match="not the user Path"):
        undo_path_repair(system_backup, scope="user", api=api, backup_dir=backups)
    outcome = undo_path_repair(os.path.basename(user_backup), api=api, backup_dir=backups)
    assert outcome.scope == "user" and user_value(reg) == (USER_PATH, FakeWinreg.REG_EXPAND_SZ)
    assert system_value(reg) == (SYSTEM_NEW, FakeWinreg.REG_EXPAND_SZ)
    latest_system = undo_path_repair(scope="system", api=api, backup_dir=backups)
    assert latest_system.restored_from == system_backup
    assert system_value(reg) == (SYSTEM_PATH, FakeWinreg.REG_EXPAND_SZ)


def test_undo_of_the_system_path_needs_admin(backups: Path) -> None:
    reg, api = make(admin=True)
    backup = apply(api, backups, "system").backup
    reg.admin = False
    shell32 = api.shell32
    assert isinstance(shell32, FakeShell32)
    shell32.admin = False
    with pytest.raises(PathAccessDeniedError):
        undo_path_repair(backup, api=api, backup_dir=backups)
    assert system_value(reg) == (SYSTEM_NEW, FakeWinreg.REG_EXPAND_SZ)


def test_undo_without_backups_and_when_already_in_place(backups: Path) -> None:
    _, api = make()
    with pytest.raises(PathBackupError, match="nothing to undo"):
        undo_path_repair(api=api, backup_dir=backups)
    applied = apply(api, backups)
    undo_path_repair(applied.backup, api=api, backup_dir=backups)
    again = undo_path_repair(applied.backup, api=api, backup_dir=backups)
    assert again.action == "none" and again.backup is None


def test_undo_when_the_value_was_deleted_meanwhile_can_be_undone_too(backups: Path) -> None:
    reg, api = make()
    applied = apply(api, backups)
    reg.delete_value(HKCU, "Environment", "Path")
    undone = undo_path_repair(applied.backup, api=api, backup_dir=backups)
    assert read_backup(undone.backup).value is None  # type: ignore[arg-type]
    assert user_value(reg) == (USER_PATH, FakeWinreg.REG_EXPAND_SZ)
    undo_path_repair(undone.backup, api=api, backup_dir=backups)  # back to "no value": DeleteValue
    assert user_value(reg) is None


def test_a_failing_delete_is_rolled_back(backups: Path) -> None:
    reg, api = make()
    applied = apply(api, backups)
    reg.delete_value(HKCU, "Environment", "Path")
    undone = undo_path_repair(applied.backup, api=api, backup_dir=backups)
    reg.faults.fail_deletes = 1
    with pytest.raises(PathRepairError) as info:
        undo_path_repair(undone.backup, api=api, backup_dir=backups)
    assert info.value.restored is True and user_value(reg) == (USER_PATH, FakeWinreg.REG_EXPAND_SZ)


@pytest.mark.parametrize("content, match", [
    ("not json", "cannot read"),
    ('{"schema": "other"}', "not a torchdll Path backup"),
    ('{"schema": "torchdll.path-backup", "schema_version": 9, "scope": "user"}', "schema_version"),
    ('{"schema": "torchdll.path-backup", "schema_version": 1, "scope": "HKLM"}', "unknown scope"),
    (('{"schema": "torchdll.path-backup", "schema_version": 1, "scope": "user", "value": "x", '
      '"type": "REG_DWORD"}'), "invalid"),
    (('{"schema": "torchdll.path-backup", "schema_version": 1, "scope": "user", "value": "a\\u0000b", '
      '"type": "REG_SZ"}'), "invalid"),
])
def test_invalid_backups_are_refused(tmp_path: Path, content: str, match: str) -> None:
    bad = tmp_path / "path-user-bad.json"
    bad.write_text(content)
    with pytest.raises(PathBackupError, match=match):
        read_backup(bad)
    assert list_backups(tmp_path) == []  # skipped when listing
    with pytest.raises(PathBackupError):
        undo_path_repair(bad, api=make()[1], backup_dir=tmp_path)


def test_a_backup_cannot_point_the_undo_at_another_registry_key(backups: Path) -> None:
    reg, api = make()
    backups.mkdir()
    crafted = backups / "path-user-crafted.json"
    crafted.write_text(json.dumps({
        "schema": "torchdll.path-backup", "schema_version": 1, "scope": "user",
        "location": "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run", "value": "C:\\x",
        "type": "REG_SZ", "created": "2030-01-01T00:00:00.000000Z",
    }))
    undo_path_repair(crafted, api=api, backup_dir=backups)
    assert user_value(reg) == ("C:\\x", FakeWinreg.REG_SZ)
    assert reg.value_of(HKLM, "SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run", "Path") is None


def test_default_backup_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCHDLL_DATA_DIR", str(tmp_path))
    assert default_backup_dir() == tmp_path / "path-backups"
    monkeypatch.delenv("TORCHDLL_DATA_DIR")
    import platformdirs

    assert default_backup_dir() == Path(platformdirs.user_data_dir("torchdll", appauthor=False)) / "path-backups"


def test_list_backups_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    assert list_backups(tmp_path / "nope") == []


# --------------------------------------------------------------------------------------------
# The Win32 seam (torchdll._win32 additions) and the errors
# --------------------------------------------------------------------------------------------


def test_new_foreign_functions_declare_argtypes_and_restype() -> None:
    _, api = make()
    api.broadcast_environment_change(1234)
    api.is_admin()
    user32, shell32 = api.user32, api.shell32
    assert list(user32.SendMessageTimeoutW.argtypes) == [
        wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPCWSTR, wintypes.UINT, wintypes.UINT,
        ctypes.POINTER(ctypes.c_size_t),
    ]
    assert user32.SendMessageTimeoutW.restype is wintypes.LPARAM
    assert user32.SendMessageTimeoutW.calls[0][5] == 1234
    assert list(shell32.IsUserAnAdmin.argtypes) == [] and shell32.IsUserAnAdmin.restype is wintypes.BOOL


def test_query_value_tells_absent_from_unreadable() -> None:
    reg, api = make()
    assert api.query_value("HKCU", "Environment", "Nope") is None
    assert api.query_value("HKCU", "NoSuchKey", "Path") is None
    reg.deny(HKCU, "Environment", "Path")
    with pytest.raises(WinApiError) as info:
        api.query_value("HKCU", "Environment", "Path")
    assert info.value.winerror == 5 and info.value.function == "RegQueryValueExW"


def test_write_helpers_report_win32_errors() -> None:
    reg, api = make()
    with pytest.raises(WinApiError) as info:
        api.set_string_value("HKLM", SYS_KEY, "Path", "x", "REG_SZ")
    assert (info.value.function, info.value.winerror) == ("RegCreateKeyExW", 5)
    assert api.delete_value("HKCU", "Environment", "Nope") is False
    assert api.delete_value("HKCU", "NoSuchKey", "Path") is False
    with pytest.raises(WinApiError):
        api.delete_value("HKLM", SYS_KEY, "Path")
    reg.faults.fail_writes = 1
    with pytest.raises(WinApiError) as info:
        api.set_string_value("HKCU", "Environment", "Path", "x", "REG_SZ")
    assert (info.value.function, info.value.winerror) == ("RegSetValueExW", 1450)


def test_fake_registry_refuses_writes_through_read_handles() -> None:
    reg = typical_registry()
    with reg.OpenKey(HKCU, "Environment", 0, reg.KEY_READ) as key, pytest.raises(PermissionError):
        reg.SetValueEx(key, "Path", 0, reg.REG_SZ, "x")
    with reg.OpenKey(HKCU, "Environment", 0, reg.KEY_SET_VALUE) as key:
        reg.SetValueEx(key, "Path", 0, reg.REG_SZ, "x")
    with pytest.raises(PermissionError):
        reg.OpenKey(HKLM, SYS_KEY, 0, reg.KEY_SET_VALUE)


@pytest.mark.parametrize("cls", [PathRepairError, PathAccessDeniedError, PathBackupError,
                                 PathChangedError, PathVerifyError])
def test_repair_errors_are_oserrors_that_pickle(cls: type) -> None:
    exc = cls("boom", scope="user", backup="b.json", winerror=5, restored=True)
    assert isinstance(exc, OSError) and isinstance(exc, PathRepairError) and str(exc) == "boom"
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls
    assert (back.scope, back.backup, back.winerror, back.restored) == ("user", "b.json", 5, True)
    value_error = pickle.loads(pickle.dumps(PathValueError("Path", "too long")))
    assert isinstance(value_error, ValueError) and (value_error.what, value_error.reason) == ("Path", "too long")


def test_strict_policy_reaches_the_registry_plan() -> None:
    _, api = make()
    plan = plan_for(api, policy=STRICT_POLICY)
    removed = {r.entry.raw: r.reasons[0].code for r in plan.result.removed}  # type: ignore[union-attr]
    assert removed["%NOPE%\\bin"] is EntryKind.UNEXPANDED


def test_backups_made_within_one_clock_tick_keep_their_order(backups: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import datetime, timezone

    fixed = datetime(2030, 1, 1, tzinfo=timezone.utc)

    class Frozen(datetime):  # a coarse clock: every call returns the same instant
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return fixed

    monkeypatch.setattr(registry, "datetime", Frozen)
    _, api = make()
    applied = apply(api, backups)
    undone = undo_path_repair(api=api, backup_dir=backups)
    assert undone.restored_from == applied.backup
    assert [b.path for b in list_backups(backups)] == [undone.backup, applied.backup]
    assert len({p.name for p in backup_files(backups)}) == 2
