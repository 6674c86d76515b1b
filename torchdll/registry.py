"""Safe, reversible repair of the persistent Windows ``Path`` (user or system).

The flow mirrors ``torchdll fix-path``:

1. :func:`plan_path_repair` reads the ``Path`` value of ``HKCU\\Environment`` (``scope="user"``)
   or of the Session Manager's ``Environment`` key (``scope="system"``) and returns a
   :class:`PathRepairPlan`: the old and new value (same registry type), every removed entry with
   its reason, what is only reported. It changes nothing.
2. :func:`apply_path_repair` writes a plan:

   * system scope without an elevated token: :class:`~torchdll.errors.PathAccessDeniedError`,
     nothing changed;
   * a new value longer than 32,767 characters (the limit of one environment variable) or
     holding a NUL: :class:`~torchdll.errors.PathValueError`, nothing changed;
   * the value is read again; if it changed since the plan:
     :class:`~torchdll.errors.PathChangedError`, nothing changed;
   * a backup of the current value **and its type** is written to
     ``<user data dir>/torchdll/path-backups/path-<scope>-<UTC time>.json`` and read back; if
     that fails: :class:`~torchdll.errors.PathBackupError`, nothing changed;
   * the new value is written **with the old type** (``REG_EXPAND_SZ`` stays ``REG_EXPAND_SZ``,
     so ``%SystemRoot%`` entries keep working; unexpanded ``%VARS%`` are kept verbatim);
   * it is read back; on a failed write or any difference the original value is written back
     and checked (:class:`~torchdll.errors.PathRepairError` /
     :class:`~torchdll.errors.PathVerifyError` with ``restored`` and ``backup`` set);
   * ``WM_SETTINGCHANGE`` ("Environment") is broadcast so Explorer, and the programs it starts
     from now on, see the new Path.

3. :func:`undo_path_repair` restores a backup (the newest by default), backing up the current
   value first, with the same checks. A second undo therefore restores what the first replaced.

All registry access goes through :class:`torchdll._win32.WinApi`, so the whole flow runs on Linux
against the in-memory fake of ``tests/support/fakewin.py``. Backups are plain JSON (schema
``torchdll.path-backup`` version 1); the folder can be moved with ``TORCHDLL_DATA_DIR``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple, Union

from ._fileio import atomic_write
from .errors import (
    PathAccessDeniedError,
    PathBackupError,
    PathChangedError,
    PathRepairError,
    PathValueError,
    PathVerifyError,
)
from .fsview import FileView
from .pathenv import REG_TYPES, EntryKind, InterpreterFacts, PathSyntax, Severity
from .sanitize import DEFAULT_POLICY, PathPolicy, SanitizeResult, plan_sanitize
from .snapshot import RegistryValue

if TYPE_CHECKING:
    from ._win32 import WinApi

__all__ = [
    "BACKUP_SCHEMA",
    "BACKUP_SCHEMA_VERSION",
    "MAX_PATH_CHARS",
    "SCOPES",
    "PathBackup",
    "PathRepairOutcome",
    "PathRepairPlan",
    "apply_path_repair",
    "default_backup_dir",
    "list_backups",
    "plan_path_repair",
    "read_backup",
    "undo_path_repair",
]

BACKUP_SCHEMA = "torchdll.path-backup"
BACKUP_SCHEMA_VERSION = 1
#: The longest value a single environment variable can have (``SetEnvironmentVariableW``):
#: the registry accepts longer values, but Windows cannot hand them to a process whole.
MAX_PATH_CHARS = 32767
#: scope -> (hive, key) of the persistent Path; the value is always named ``Path``.
SCOPES: Dict[str, Tuple[str, str]] = {
    "user": ("HKCU", "Environment"),
    "system": ("HKLM", r"SYSTEM\CurrentControlSet\Control\Session Manager\Environment"),
}
VALUE_NAME = "Path"
ERROR_ACCESS_DENIED = 5
_UNREADABLE = object()


def _location(scope: str) -> str:
    hive, key = SCOPES[scope]
    return f"{hive}\\{key}\\{VALUE_NAME}"


def _check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ValueError(f"scope must be 'user' or 'system', not {scope!r}")
    return scope


def default_backup_dir() -> Path:
    """``$TORCHDLL_DATA_DIR/path-backups``, else platformdirs' user data dir of ``torchdll``
    (``%LOCALAPPDATA%\\torchdll\\path-backups`` on Windows)."""
    env = os.environ.get("TORCHDLL_DATA_DIR")
    if env:
        base = Path(env)
    else:
        import platformdirs

        base = Path(platformdirs.user_data_dir("torchdll", appauthor=False))
    return base / "path-backups"


def _default_api(scope: str) -> WinApi:
    if sys.platform != "win32":
        raise PathRepairError(
            f"the persistent Windows Path ({_location(scope)}) exists only on Windows; this is "
            f"{sys.platform}: nothing to repair",
            scope=scope,
        )
    from ._win32 import WinApi

    return WinApi()


# --------------------------------------------------------------------------------------------
# Plan
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PathRepairPlan:
    """What a repair would do; making one changes nothing.

    ``scope``: ``"user"``/``"system"``; ``location``: the registry value (``HKCU\\Environment\\Path``).
    ``old``/``new``: the value before and after, same type (``None``: there is no Path value).
    ``result``: the sanitize decision (removed entries with reasons, kept ones with what is only
    reported), ``None`` when there is no value. ``source``: ``"registry"`` (read from it, can be
    applied) or ``"value"`` (given by the caller, for support and tests: cannot be applied).
    ``notes``: anything else worth saying (length limits...).
    """

    scope: str
    location: str
    old: Optional[RegistryValue]
    new: Optional[RegistryValue]
    result: Optional[SanitizeResult]
    source: str = "registry"
    notes: Tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.old != self.new

    @property
    def too_long(self) -> bool:
        return self.new is not None and len(self.new.value) > MAX_PATH_CHARS

    def lines(self) -> List[str]:
        """The plan as text lines: a diff of the entries, with the reason for each removal."""
        out: List[str] = []
        if self.old is None or self.result is None:
            out.append(f"{self.location}: no such value, nothing to repair")
            out.extend(f"  note: {n}" for n in self.notes)
            return out
        removed = {r.entry.index: r for r in self.result.removed}
        kept = {e.index: e for e in self.result.kept}
        total = len(removed) + len(kept)
        out.append(f"{self.location} ({self.old.type}): {total} entr{'y' if total == 1 else 'ies'}, "
                   f"remove {len(removed)}, keep {len(kept)}")
        for index in sorted(set(removed) | set(kept)):
            if index in removed:
                rem = removed[index]
                out.append(f"  - {_show(rem.entry.raw)}")
                out.extend(f"        {i.code.value} ({i.severity.value}): {i.reason}" for i in rem.reasons)
                continue
            entry = kept[index]
            issues = [i for i in entry.issues if i.code is not EntryKind.SYSTEM_DIR]
            serious = any(i.severity is not Severity.INFO for i in issues)
            mark = "!" if serious else ("i" if issues else " ")
            out.append(f"  {mark} {_show(entry.raw)}")
            out.extend(f"        {i.code.value} ({i.severity.value}, kept): {i.reason}" for i in issues)
        out.extend(f"  note: {n}" for n in self.notes)
        if self.changed and self.new is not None:
            out.append(f"new value ({self.new.type}, {len(self.new.value)} characters):")
            out.append(f"  {_show(self.new.value)}")
        return out

    def to_dict(self) -> Dict[str, Any]:
        return {
            "scope": self.scope,
            "location": self.location,
            "source": self.source,
            "old": _value_dict(self.old),
            "new": _value_dict(self.new),
            "changed": self.changed,
            "notes": list(self.notes),
            "sanitize": self.result.to_dict() if self.result is not None else None,
        }


def _show(text: str) -> str:
    return text if text else "(empty)"


def _value_dict(value: Optional[RegistryValue]) -> Optional[Dict[str, str]]:
    return None if value is None else {"value": value.value, "type": value.type}


def _as_value(value: Union[RegistryValue, Tuple[str, str], None]) -> Optional[RegistryValue]:
    if value is None or isinstance(value, RegistryValue):
        return value
    text, kind = value
    if kind not in REG_TYPES:
        raise PathValueError("Path", f"type must be REG_SZ or REG_EXPAND_SZ, not {kind!r}")
    return RegistryValue(text, kind)  # type: ignore[arg-type]


def _read(api: WinApi, scope: str) -> Optional[RegistryValue]:
    """The current value; ``None`` when absent. Unreadable or of a non-string type: an error."""
    from ._win32 import WinApiError

    hive, key = SCOPES[scope]
    try:
        hit = api.query_value(hive, key, VALUE_NAME)
    except WinApiError as exc:
        cls = PathAccessDeniedError if exc.winerror == ERROR_ACCESS_DENIED else PathRepairError
        raise cls(f"cannot read {_location(scope)} (Win32 error {exc.winerror}); nothing was changed",
                  scope=scope, winerror=exc.winerror) from exc
    if hit is None:
        return None
    value, kind = hit
    if kind not in REG_TYPES or not isinstance(value, str):
        raise PathRepairError(f"{_location(scope)} has type {kind}, not REG_SZ/REG_EXPAND_SZ; "
                              "torchdll leaves it alone", scope=scope)
    return RegistryValue(value, kind)  # type: ignore[arg-type]


def plan_path_repair(
    scope: str = "user",
    *,
    value: Union[RegistryValue, Tuple[str, str], None] = None,
    api: Optional[WinApi] = None,
    policy: PathPolicy = DEFAULT_POLICY,
    environ: Optional[Mapping[str, str]] = None,
    view: Optional[FileView] = None,
    python: Optional[InterpreterFacts] = None,
) -> PathRepairPlan:
    """The repair of the user (or system) Path under ``policy``; changes nothing.

    ``value`` (a :class:`~torchdll.snapshot.RegistryValue` or ``(text, type)``) plans for that
    value instead of reading the registry: that works on any OS, and such a plan cannot be
    applied. ``api`` (default: a real :class:`~torchdll._win32.WinApi`, Windows only) reads the
    registry. ``environ`` (default ``os.environ``) expands ``%VARS%`` of a ``REG_EXPAND_SZ``
    value; ``view`` and ``python`` are those of :func:`torchdll.pathenv.classify_path`.
    """
    _check_scope(scope)
    given = _as_value(value)
    if value is None:
        old = _read(api if api is not None else _default_api(scope), scope)
        source = "registry"
    else:
        old, source = given, "value"
    location = _location(scope)
    if old is None:
        return PathRepairPlan(scope, location, None, None, None, source)
    result = plan_sanitize(old.value, PathSyntax.REGISTRY, reg_type=old.type, policy=policy,
                           environ=environ, view=view, python=python)
    new = RegistryValue(result.new_value, old.type)
    notes: List[str] = []
    if len(new.value) > MAX_PATH_CHARS:
        notes.append(f"the new value is {len(new.value)} characters, longer than the "
                     f"{MAX_PATH_CHARS} an environment variable can hold: it will not be written; "
                     "shorten it by hand")
    if "\x00" in new.value:
        notes.append("the new value holds a NUL character: it will not be written")
    if old.type == "REG_SZ" and any(e.has(EntryKind.UNEXPANDED) for e in result.kept):
        notes.append("this value is REG_SZ, so its %VARS% are never expanded; torchdll keeps the "
                     "type (changing it is your call: regedit, or an installer)")
    return PathRepairPlan(scope, location, old, new, result, source, tuple(notes))


# --------------------------------------------------------------------------------------------
# Backups
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PathBackup:
    """One backup file: the Path ``value`` (with its type; ``None``: there was no value) of
    ``scope`` at ``created`` (ISO 8601 UTC), saved ``reason`` (``"before apply"``...)."""

    path: str
    scope: str
    value: Optional[RegistryValue]
    created: str
    reason: str
    torchdll_version: str = ""


def _version() -> str:
    package = sys.modules.get(__package__ or "torchdll")
    found = getattr(package, "__version__", None)
    return found if isinstance(found, str) else "unknown"


def read_backup(path: Union[str, "os.PathLike[str]"]) -> PathBackup:
    """Read and validate a backup file (:class:`~torchdll.errors.PathBackupError` if unusable)."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise PathBackupError(f"cannot read the backup {source}: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != BACKUP_SCHEMA:
        raise PathBackupError(f"{source} is not a torchdll Path backup")
    version = data.get("schema_version")
    if not isinstance(version, int) or version > BACKUP_SCHEMA_VERSION or version < 1:
        raise PathBackupError(f"{source}: unsupported backup schema_version {version!r}")
    scope = data.get("scope")
    if scope not in SCOPES:
        raise PathBackupError(f"{source}: unknown scope {scope!r}")
    raw_value, kind = data.get("value"), data.get("type")
    value: Optional[RegistryValue]
    if raw_value is None:
        value = None
    elif isinstance(raw_value, str) and kind in REG_TYPES and "\x00" not in raw_value:
        value = RegistryValue(raw_value, kind)
    else:
        raise PathBackupError(f"{source}: the saved value or type is invalid ({kind!r})", scope=scope)
    created, reason = data.get("created", ""), data.get("reason", "")
    return PathBackup(source, scope, value, str(created), str(reason), str(data.get("torchdll_version", "")))


def list_backups(
    backup_dir: Union[str, "os.PathLike[str]", None] = None, *, scope: Optional[str] = None
) -> List[PathBackup]:
    """Valid backups in ``backup_dir`` (default :func:`default_backup_dir`), newest first."""
    folder = Path(backup_dir) if backup_dir is not None else default_backup_dir()
    found: List[PathBackup] = []
    try:
        names = sorted(p for p in folder.iterdir() if p.name.startswith("path-") and p.suffix == ".json")
    except OSError:
        return []
    for p in names:
        try:
            backup = read_backup(p)
        except PathBackupError:
            continue
        if scope is None or backup.scope == scope:
            found.append(backup)
    found.sort(key=lambda b: (b.created, b.path), reverse=True)
    return found


def _write_backup(folder: Path, scope: str, value: Optional[RegistryValue], reason: str) -> str:
    """Save ``value`` and its type; read it back. Any failure: PathBackupError (nothing changed)."""
    now = datetime.now(timezone.utc)
    data: Dict[str, Any] = {
        "schema": BACKUP_SCHEMA,
        "schema_version": BACKUP_SCHEMA_VERSION,
        "scope": scope,
        "location": _location(scope),
        "value": None if value is None else value.value,
        "type": None if value is None else value.type,
        "created": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "reason": reason,
        "torchdll_version": _version(),
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Names sort by time; on a coarse clock two backups may share a stamp: move on by 1 µs.
        while True:
            stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
            if not any(folder.glob(f"path-*-{stamp}.json")):
                break
            now += timedelta(microseconds=1)
        data["created"] = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        text = json.dumps(data, indent=2, ensure_ascii=True) + "\n"
        target = folder / f"path-{scope}-{stamp}.json"
        atomic_write(target, text.encode("ascii"), prefix=".path-backup-", fsync=True)
    except OSError as exc:
        raise PathBackupError(
            f"cannot write a backup of {_location(scope)} to {folder} ({exc.strerror or exc}); "
            "nothing was changed", scope=scope) from exc
    back = read_backup(target)
    if back.value != value or back.scope != scope:
        raise PathBackupError(f"the backup {target} does not read back as written; nothing was "
                              "changed", scope=scope, backup=str(target))
    return str(target)


# --------------------------------------------------------------------------------------------
# Writing with verification
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PathRepairOutcome:
    """What :func:`apply_path_repair` or :func:`undo_path_repair` did.

    ``action``: ``"apply"``, ``"undo"`` or ``"none"`` (nothing to change). ``before``/``after``:
    the value in the registry before and after. ``backup``: the backup written before the change
    (``None`` when nothing changed). ``restored_from``: the backup an undo restored.
    ``notified``: the ``WM_SETTINGCHANGE`` broadcast was delivered (``False``: programs see the
    new Path after the next sign-in). ``plan``: the plan that was applied.
    """

    action: str
    scope: str
    before: Optional[RegistryValue]
    after: Optional[RegistryValue]
    backup: Optional[str] = None
    restored_from: Optional[str] = None
    notified: bool = False
    plan: Optional[PathRepairPlan] = None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "action": self.action,
            "scope": self.scope,
            "location": _location(self.scope),
            "before": _value_dict(self.before),
            "after": _value_dict(self.after),
            "backup": self.backup,
            "restored_from": self.restored_from,
            "notified": self.notified,
        }


def _write(api: WinApi, scope: str, value: Optional[RegistryValue]) -> None:
    hive, key = SCOPES[scope]
    if value is None:
        api.delete_value(hive, key, VALUE_NAME)
    else:
        api.set_string_value(hive, key, VALUE_NAME, value.value, value.type)


def _ensure(api: WinApi, scope: str, original: Optional[RegistryValue]) -> bool:
    """Make the registry hold ``original`` again; ``True`` when it verifiably does."""
    from ._win32 import WinApiError

    try:
        if _read(api, scope) == original:
            return True
        _write(api, scope, original)
        return _read(api, scope) == original
    except (WinApiError, PathRepairError, ValueError):
        return False


def _failure_tail(restored: bool, backup: str) -> str:
    if restored:
        return f"the original value is back in place (backup: {backup})"
    return (f"restoring the original value failed too; it is saved in {backup}: run "
            f"'torchdll fix-path --undo \"{backup}\"' (from an elevated prompt for the system Path)")


def _commit(api: WinApi, scope: str, target: Optional[RegistryValue],
            original: Optional[RegistryValue], backup: str) -> None:
    """Write ``target`` and verify it; on any failure put ``original`` back, then raise."""
    from ._win32 import WinApiError

    location = _location(scope)
    try:
        _write(api, scope, target)
    except (WinApiError, ValueError) as exc:
        restored = _ensure(api, scope, original)
        code = getattr(exc, "winerror", None)
        cls = PathAccessDeniedError if code == ERROR_ACCESS_DENIED else PathRepairError
        raise cls(f"writing {location} failed ({exc}); {_failure_tail(restored, backup)}",
                  scope=scope, backup=backup, winerror=code, restored=restored) from exc
    after: object
    try:
        after = _read(api, scope)
    except PathRepairError:
        after = _UNREADABLE
    if after != target:
        restored = _ensure(api, scope, original)
        raise PathVerifyError(f"{location} did not read back as written; "
                              f"{_failure_tail(restored, backup)}",
                              scope=scope, backup=backup, restored=restored)


def _broadcast(api: WinApi) -> bool:
    try:
        return api.broadcast_environment_change()
    except (OSError, AttributeError):
        return False


def _require_rights(api: WinApi, scope: str, action: str) -> None:
    if scope != "system":
        return
    try:
        admin = api.is_admin()
    except OSError:
        admin = False
    if not admin:
        raise PathAccessDeniedError(
            f"{action} the system Path ({_location(scope)}) needs administrator rights: run the "
            "command from an elevated prompt (Run as administrator); nothing was changed",
            scope=scope, winerror=ERROR_ACCESS_DENIED)


def _check_writable(value: Optional[RegistryValue]) -> None:
    if value is None:
        return
    if "\x00" in value.value:
        raise PathValueError("Path", "the value holds a NUL character; Windows strings end there")
    if len(value.value) > MAX_PATH_CHARS:
        raise PathValueError("Path", f"the value is {len(value.value)} characters; an environment "
                                     f"variable holds at most {MAX_PATH_CHARS}: refusing to write it")


def apply_path_repair(
    plan: Optional[PathRepairPlan] = None,
    *,
    scope: str = "user",
    api: Optional[WinApi] = None,
    backup_dir: Union[str, "os.PathLike[str]", None] = None,
    broadcast: bool = True,
    policy: PathPolicy = DEFAULT_POLICY,
    environ: Optional[Mapping[str, str]] = None,
    view: Optional[FileView] = None,
    python: Optional[InterpreterFacts] = None,
) -> PathRepairOutcome:
    """Write a plan (or plan ``scope`` now and write that), safely; see the module docstring.

    Raises :class:`~torchdll.errors.PathAccessDeniedError`, :class:`~torchdll.errors.PathValueError`,
    :class:`~torchdll.errors.PathChangedError`, :class:`~torchdll.errors.PathBackupError` (all:
    nothing changed), or :class:`~torchdll.errors.PathRepairError` /
    :class:`~torchdll.errors.PathVerifyError` after a failed write (``restored`` says whether
    the original is back; ``backup`` holds it in any case).
    """
    if plan is not None:
        scope = plan.scope
        if plan.source != "registry":
            raise ValueError("this plan was made for a given value, not read from the registry; "
                             "it cannot be applied")
    _check_scope(scope)
    api = api if api is not None else _default_api(scope)
    if plan is None:
        plan = plan_path_repair(scope, api=api, policy=policy, environ=environ, view=view,
                                python=python)
    if not plan.changed:
        return PathRepairOutcome("none", scope, plan.old, plan.old, plan=plan)
    _require_rights(api, scope, "writing")
    _check_writable(plan.new)
    current = _read(api, scope)
    if current != plan.old:
        raise PathChangedError(f"{plan.location} changed since the plan was made; nothing was "
                               "changed: plan again", scope=scope)
    folder = Path(backup_dir) if backup_dir is not None else default_backup_dir()
    backup = _write_backup(folder, scope, current, "before fix-path --apply")
    _commit(api, scope, plan.new, current, backup)
    notified = _broadcast(api) if broadcast else False
    return PathRepairOutcome("apply", scope, current, plan.new, backup=backup, notified=notified,
                             plan=plan)


def undo_path_repair(
    backup: Union[str, "os.PathLike[str]", None] = None,
    *,
    scope: Optional[str] = None,
    api: Optional[WinApi] = None,
    backup_dir: Union[str, "os.PathLike[str]", None] = None,
    broadcast: bool = True,
) -> PathRepairOutcome:
    """Restore a backup: ``backup`` (a file, or a file name in ``backup_dir``) or the newest one
    (of ``scope``, when given). The current value is backed up first, so an undo is undoable.

    Errors as for :func:`apply_path_repair`; no backup at all:
    :class:`~torchdll.errors.PathBackupError`.
    """
    folder = Path(backup_dir) if backup_dir is not None else default_backup_dir()
    if scope is not None:
        _check_scope(scope)
    if backup is None or os.fspath(backup) == "":
        found = list_backups(folder, scope=scope)
        if not found:
            what = f"{scope} Path " if scope else ""
            raise PathBackupError(f"no {what}backup in {folder}: nothing to undo", scope=scope)
        chosen = found[0]
    else:
        candidate = Path(os.fspath(backup))
        if not candidate.exists() and not candidate.is_absolute() and (folder / candidate).exists():
            candidate = folder / candidate
        chosen = read_backup(candidate)
        if scope is not None and chosen.scope != scope:
            raise PathBackupError(f"{chosen.path} is a backup of the {chosen.scope} Path, not the "
                                  f"{scope} Path", scope=scope)
    scope = chosen.scope
    api = api if api is not None else _default_api(scope)
    _require_rights(api, scope, "restoring")
    _check_writable(chosen.value)
    current = _read(api, scope)
    if current == chosen.value:
        return PathRepairOutcome("none", scope, current, current, restored_from=chosen.path)
    pre = _write_backup(folder, scope, current, f"before fix-path --undo {os.path.basename(chosen.path)}")
    _commit(api, scope, chosen.value, current, pre)
    notified = _broadcast(api) if broadcast else False
    return PathRepairOutcome("undo", scope, current, chosen.value, backup=pre,
                             restored_from=chosen.path, notified=notified)
