"""Sanitize a Windows PATH and plan the repair of the persistent Path -- on any OS.

Builds a small Windows tree (empty files are enough: classification looks at names) in a
temporary folder, mirrored as ``<tmp>/C/...``, for the seed case: a venv whose own
``site-packages\\torch\\lib`` and another environment's ``torch\\lib`` were put on the Path, next
to a ZLUDA folder that must stay. Then:

1. plans a sanitize of the *process* PATH (what ``sanitize_path()`` does at start-up on Windows)
   and prints every removal with its reason and what is only reported;
2. applies it to an environment mapping (a dict here; ``os.environ`` by default), which logs
   each removal at WARNING on the ``torchdll`` logger (stderr when logging is not configured);
3. plans the repair of the *registry* value (``REG_EXPAND_SZ``, ``%VARS%`` kept) that
   ``torchdll fix-path`` would show, without touching any registry.

Run: python examples/sanitize_path.py
"""

from __future__ import annotations

import os
import tempfile

from torchdll.fsview import MirrorView
from torchdll.pathenv import Interpreter, PathSyntax
from torchdll.registry import plan_path_repair
from torchdll.sanitize import sanitize_path

HOME = "C:\\Users\\민수"
VENV = HOME + "\\proj\\.venv"
TORCH_LIB = VENV + "\\Lib\\site-packages\\torch\\lib"
OLD_LIB = HOME + "\\miniconda3\\envs\\old\\Lib\\site-packages\\torch\\lib"
FILES = [
    TORCH_LIB + "\\c10.dll",
    TORCH_LIB + "\\torch_cpu.dll",
    OLD_LIB + "\\c10.dll",
    "C:\\zluda\\nvcuda.dll",
    "C:\\Windows\\System32\\kernel32.dll",
]


def build(root: str) -> MirrorView:
    for win in FILES:
        host = os.path.join(root, win[0], *win[3:].split("\\"))
        os.makedirs(os.path.dirname(host), exist_ok=True)
        open(host, "wb").close()
    return MirrorView(root)


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        view = build(root)
        python = Interpreter(prefix=VENV, exec_prefix=VENV)  # "this environment"
        environ = {"SystemRoot": "C:\\Windows", "USERPROFILE": HOME}
        process_path = ";".join([
            "C:\\Windows\\system32", "C:\\Windows", TORCH_LIB, OLD_LIB, "C:\\zluda", "", "bin",
        ])

        print("1. the process PATH (plan only)")
        result = sanitize_path(process_path, syntax=PathSyntax.PROCESS, environ=environ,
                               view=view, python=python)
        for entry, reasons in result.removed:
            print(f"   removed {entry.raw or '(empty)'}: {reasons[0].code.value}")
        for entry in result.reported:
            print(f"   kept    {entry.raw}: {entry.kind.value}")
        print(f"   new PATH: {result.new_value}")

        print("2. applied to an environment mapping (each removal is logged on stderr: logger 'torchdll')")
        env = dict(environ, PATH=process_path)
        applied = sanitize_path(environ=env, syntax=PathSyntax.PROCESS, view=view, python=python)
        print(f"   applied={applied.applied}, PATH now has {len(env['PATH'].split(';'))} entries")

        print("3. the persistent user Path (what 'torchdll fix-path' shows)")
        user_path = "%USERPROFILE%\\AppData\\Local\\Microsoft\\WindowsApps;" + TORCH_LIB + ";"
        plan = plan_path_repair("user", value=(user_path, "REG_EXPAND_SZ"), environ=environ,
                                view=view, python=python)
        for line in plan.lines():
            print("   " + line[:110])


if __name__ == "__main__":
    main()
