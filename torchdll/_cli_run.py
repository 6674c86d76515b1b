"""``torchdll run -- COMMAND ...``: start a command with the loader environment cleaned.

``LD_LIBRARY_PATH`` and ``DYLD_*`` are read by the dynamic loader once, at process start, so
they cannot be fixed from inside Python: this command computes the cleaned environment
(:func:`torchdll.loaderenv.plan_loader_env`, for the torch the command's interpreter would
import), says on stderr what it removed and why, and replaces itself with the command
(``execvpe`` on Linux/macOS; a child process whose exit status is passed on, on Windows).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from typing import Any, List, TextIO

__all__ = ["configure_parser", "execute"]


def configure_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="start a command with LD_LIBRARY_PATH / DYLD_* / PATH cleaned "
                                   "of entries that shadow torch's libraries",
                       description="Start COMMAND with the dynamic loader's environment cleaned: "
                                   "python -m torchdll run -- python main.py")
    p.add_argument("--dry-run", action="store_true", help="print the plan; do not start anything")
    p.add_argument("--json", action="store_true", help="with --dry-run: the plan as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="say nothing when starting the command")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")


def execute(args: argparse.Namespace, out: TextIO) -> int:
    from .loaderenv import plan_loader_env, torch_sys_path

    argv: List[str] = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        sys.stderr.write("torchdll run: give a command after '--', e.g. "
                         "python -m torchdll run -- python main.py\n")
        return 2
    program = shutil.which(argv[0]) if os.sep not in argv[0] else argv[0]
    if program is None or not os.path.exists(program):
        sys.stderr.write(f"torchdll run: command not found: {argv[0]}\n")
        return 127
    sys_path = torch_sys_path(program)
    note = None
    if sys_path is None:
        sys_path = list(sys.path)
        note = (f"{argv[0]} is not a Python interpreter torchdll could ask for its sys.path; "
                f"protecting the torch of {sys.executable}")
    plan = plan_loader_env(sys_path=sys_path)
    lines = plan.describe() + ([note] if note else [])
    if args.dry_run:
        if args.json:
            out.write(json.dumps({
                "command": argv, "program": program, "torch_dir": plan.torch_dir,
                "removed": [{"variable": r.variable, "entry": r.entry, "reason": r.reason} for r in plan.removed],
                "notes": list(plan.notes) + ([note] if note else []),
                "environment": {k: plan.environ.get(k) for k in
                                ("LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH", "DYLD_FALLBACK_LIBRARY_PATH",
                                 "DYLD_FRAMEWORK_PATH", "PATH")},
            }, indent=2) + "\n")
        else:
            for line in lines or ["nothing to clean"]:
                out.write(f"torchdll run: {line}\n")
            out.write("torchdll run: would start: " + " ".join(argv) + "\n")
        return 0
    if not args.quiet:
        for line in lines:
            sys.stderr.write(f"torchdll run: {line}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    if sys.platform == "win32":  # pragma: no cover - no exec on Windows: a child, same status
        return subprocess.call([program] + argv[1:], env=plan.environ)
    try:
        os.execve(program, [argv[0]] + argv[1:], plan.environ)
    except OSError as exc:
        sys.stderr.write(f"torchdll run: cannot start {program}: {exc}\n")
        return 126
    return 0  # pragma: no cover - execve does not return
