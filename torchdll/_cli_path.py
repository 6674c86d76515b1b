"""``torchdll fix-path``: plan, apply and undo the repair of the persistent Windows Path.

Wired into :mod:`torchdll.cli` with :func:`configure_parser` (adds the sub-command) and
:func:`execute` (runs it, returns the exit status). The work is done by
:mod:`torchdll.registry`; this module only reads arguments and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, TextIO

from .errors import PathRepairError, PathValueError
from .sanitize import POLICIES, PathPolicy

if TYPE_CHECKING:
    from ._win32 import WinApi
    from .fsview import FileView
    from .pathenv import InterpreterFacts
    from .registry import PathRepairOutcome, PathRepairPlan

__all__ = ["JSON_SCHEMA", "configure_parser", "execute"]

#: ``--json`` output: ``{"schema": JSON_SCHEMA, "schema_version": 1, "action": ...}``.
JSON_SCHEMA = "torchdll.fix-path"

DESCRIPTION = """\
Repair the persistent Windows Path (yours, or the machine's) so that DLL folders of Python
environments (a venv's torch\\lib, another environment's torch or CUDA bundles) and empty or
relative entries stop leaking into every process. Other findings are shown, not changed.
"""

EPILOG = r"""flow:
  1. torchdll fix-path             plan: a diff of the user Path with the reason for every
                                   removal; changes nothing
  2. torchdll fix-path --apply     back up the value and its type, write the plan with the same
                                   type (REG_EXPAND_SZ stays REG_EXPAND_SZ, %VARS% are kept),
                                   read it back (the backup is restored on any mismatch), and
                                   tell Windows (WM_SETTINGCHANGE): new terminals get the new Path
  3. torchdll fix-path --undo      restore the newest backup (the current value is backed up
                                   first, so a second --undo redoes); --undo FILE restores FILE
  Add --system for the machine Path: --apply and --undo then need an elevated prompt.

examples:
  torchdll fix-path --system --json
  torchdll fix-path --value "%SystemRoot%\system32;C:\venv\Lib\site-packages\torch\lib" --type REG_EXPAND_SZ
  torchdll fix-path --snapshot snapshot.json --root mirror/     (support: another machine's Path)

Backups live in %LOCALAPPDATA%\torchdll\path-backups (TORCHDLL_DATA_DIR moves the data folder;
--backup-dir overrides). On Linux and macOS there is no persistent Windows Path: the command
says so, and --value still shows a plan.

exit status: 0 done or nothing to do; 1 the repair failed (the Path is unchanged or restored, the
message says which and where the backup is); 2 bad arguments or an unusable value.
"""


def configure_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``fix-path`` sub-command to ``subparsers`` (from ``add_subparsers()``)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "fix-path",
        help="plan, apply or undo the repair of the persistent Windows Path",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--user", dest="scope", action="store_const", const="user",
                       help="the user Path, HKCU\\Environment (the default)")
    scope.add_argument("--system", dest="scope", action="store_const", const="system",
                       help="the machine Path, HKLM\\...\\Session Manager\\Environment")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--apply", action="store_true",
                        help="write the plan (after a backup of the value and its type)")
    action.add_argument("--undo", nargs="?", const="", default=None, metavar="BACKUP",
                        help="restore BACKUP (a file in the backup folder or a path), by default "
                             "the newest backup")
    action.add_argument("--list-backups", action="store_true", help="list the backups, newest first")
    p.add_argument("--policy", choices=list(POLICIES), default="default",
                   help="what to remove (default: DLL folders inside Python environments, foreign "
                        "torch lib folders, empty and relative entries)")
    p.add_argument("--value", metavar="STRING",
                   help="plan for this Path value instead of reading the registry (any OS)")
    p.add_argument("--type", dest="reg_type", choices=["REG_EXPAND_SZ", "REG_SZ"],
                   default="REG_EXPAND_SZ", help="registry type of --value (default REG_EXPAND_SZ)")
    p.add_argument("--snapshot", metavar="FILE",
                   help="plan for the Path recorded in a snapshot ('torchdll snapshot'), any OS")
    p.add_argument("--root", metavar="DIR",
                   help="folder mirroring the target's drives (DIR/C/...): look into the folders "
                        "of --value or --snapshot there")
    p.add_argument("--backup-dir", metavar="DIR", help="where backups are written and looked for")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(scope=None)
    return p


def _emit_json(out: TextIO, action: str, **fields: Any) -> None:
    data: Dict[str, Any] = {"schema": JSON_SCHEMA, "schema_version": 1, "action": action}
    data.update(fields)
    out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _plan_text(plan: PathRepairPlan, scope_flag: str, out: TextIO) -> None:
    for line in plan.lines():
        out.write(line + "\n")
    if plan.source != "registry":
        out.write("\nThis plan is for a given value (--value/--snapshot); nothing was read from or "
                  "written to this machine's registry.\n")
    elif plan.too_long:
        out.write("\nNothing was changed, and --apply will refuse: see the note above.\n")
    elif plan.changed:
        out.write(
            f"\nNothing was changed. To write this: torchdll fix-path{scope_flag} --apply\n"
            "(the value and its type are backed up first; torchdll fix-path"
            f"{scope_flag} --undo restores them).\n"
        )
    elif not plan.changed:
        out.write("\nNothing to repair.\n")


def _outcome_text(outcome: PathRepairOutcome, out: TextIO) -> None:
    from .registry import _location

    where = _location(outcome.scope)
    if outcome.action == "none":
        out.write(f"{where} already holds that value; nothing was changed.\n")
        return
    kind = outcome.after.type if outcome.after is not None else "deleted"
    out.write(f"Backed up {where} to {outcome.backup}\n")
    if outcome.action == "apply" and outcome.plan is not None and outcome.plan.result is not None:
        removed = outcome.plan.result.removed
        out.write(f"Removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'}:\n")
        for rem in removed:
            out.write(f"  - {rem.entry.raw or '(empty)'}  [{', '.join(i.code.value for i in rem.reasons)}]\n")
    else:
        out.write(f"Restored {outcome.restored_from}\n")
    out.write(f"Wrote {where} ({kind}) and read it back: OK.\n")
    if outcome.notified:
        out.write("Windows was notified (WM_SETTINGCHANGE): new terminals and programs started from "
                  "now on get the new Path; running ones keep the old one.\n")
    else:
        out.write("Windows could not be notified: programs get the new Path after you sign out "
                  "and in again.\n")
    out.write(f"Undo: torchdll fix-path --undo \"{outcome.backup}\"\n")


def _error(out: TextIO, as_json: bool, exc: BaseException, status: int) -> int:
    if as_json:
        _emit_json(out, "error", error={
            "type": type(exc).__name__,
            "message": str(exc),
            "backup": getattr(exc, "backup", None),
            "restored": getattr(exc, "restored", None),
            "winerror": getattr(exc, "winerror", None),
        })
    sys.stderr.write(f"torchdll fix-path: error: {exc}\n")
    return status


def execute(
    args: argparse.Namespace,
    out: TextIO,
    *,
    api: Optional[WinApi] = None,
    platform: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
    view: Optional[FileView] = None,
    python: Optional[InterpreterFacts] = None,
) -> int:
    """Run ``fix-path`` with parsed ``args``; returns the exit status.

    ``api`` (a :class:`~torchdll._win32.WinApi`, e.g. over fakes), ``platform`` (default
    ``sys.platform``), ``environ``, ``view`` and ``python`` are seams for tests.
    """
    from . import registry

    plat = platform if platform is not None else sys.platform
    scope = args.scope or "user"
    scope_flag = " --system" if scope == "system" else ""
    policy = PathPolicy.named(args.policy)
    as_json = bool(args.json)

    if args.list_backups:
        found = registry.list_backups(args.backup_dir, scope=args.scope)
        if as_json:
            _emit_json(out, "backups", backups=[
                {"path": b.path, "scope": b.scope, "created": b.created, "reason": b.reason,
                 "value": None if b.value is None else {"value": b.value.value, "type": b.value.type}}
                for b in found])
        elif not found:
            out.write(f"No backups in {args.backup_dir or registry.default_backup_dir()}.\n")
        for b in [] if as_json else found:
            out.write(f"{b.created}  {b.scope:<6}  {b.reason}\n    {b.path}\n")
        return 0

    if args.root:
        from .fsview import MirrorView

        view = MirrorView(args.root)
    if args.value is not None or args.snapshot is not None:
        if args.apply or args.undo is not None:
            sys.stderr.write("torchdll fix-path: error: --value and --snapshot only show a plan; "
                             "--apply and --undo work on this machine's registry\n")
            return 2
        value = None if args.value is None else (args.value, args.reg_type)
        if args.snapshot is not None:
            from .errors import SnapshotError
            from .snapshot import Snapshot

            try:
                snap = Snapshot.load(args.snapshot)
            except SnapshotError as exc:
                return _error(out, as_json, exc, 2)
            recorded = snap.user_path if scope == "user" else snap.system_path
            environ = snap.environ if environ is None else environ
            python = snap.python if python is None else python
            if value is None:
                if recorded is None:
                    message = f"the snapshot records no {scope} Path: nothing to plan"
                    if as_json:
                        _emit_json(out, "none", scope=scope, message=message)
                    else:
                        out.write(message + "\n")
                    return 0
                value = (recorded.value, recorded.type)
        try:
            plan = registry.plan_path_repair(scope, value=value, policy=policy,
                                             environ=environ, view=view, python=python)
        except PathValueError as exc:
            return _error(out, as_json, exc, 2)
        if as_json:
            _emit_json(out, "plan", scope=scope, plan=plan.to_dict())
        else:
            _plan_text(plan, scope_flag, out)
        return 0

    if plat != "win32" and api is None:
        message = (f"This is {plat}, not Windows: there is no persistent Windows Path to repair, "
                   "so nothing was read or changed. To see the plan for a Windows Path value, "
                   "pass --value STRING [--type REG_EXPAND_SZ|REG_SZ].")
        if as_json:
            _emit_json(out, "unsupported", scope=scope, platform=plat, message=message)
        else:
            out.write(message + "\n")
        return 0

    try:
        if args.undo is not None:
            outcome = registry.undo_path_repair(args.undo or None, scope=args.scope, api=api,
                                                backup_dir=args.backup_dir)
            if as_json:
                _emit_json(out, outcome.action, scope=outcome.scope, outcome=outcome.to_dict())
            else:
                _outcome_text(outcome, out)
            return 0
        plan = registry.plan_path_repair(scope, api=api, policy=policy, environ=environ, view=view,
                                         python=python)
        if not args.apply:
            if as_json:
                _emit_json(out, "plan", scope=scope, plan=plan.to_dict())
            else:
                _plan_text(plan, scope_flag, out)
            return 0
        outcome = registry.apply_path_repair(plan, api=api, backup_dir=args.backup_dir)
    except PathValueError as exc:
        return _error(out, as_json, exc, 2)
    except PathRepairError as exc:
        return _error(out, as_json, exc, 1)
    if as_json:
        _emit_json(out, outcome.action, scope=scope, plan=plan.to_dict(), outcome=outcome.to_dict())
    elif outcome.action == "none":
        _plan_text(plan, scope_flag, out)
    else:
        _outcome_text(outcome, out)
    return 0
