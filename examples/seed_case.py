"""The seed case of torchdll, rebuilt on any OS and diagnosed with ``torchdll.diagnose()``.

A user's FastAPI server (``python main.py`` in a venv) failed with::

    OSError: [WinError 1114] A dynamic link library (DLL) initialization routine failed.
    Error loading "...\\.venv\\Lib\\site-packages\\torch\\lib\\c10.dll" or one of its dependencies.

and the venv's own ``...\\.venv\\Lib\\site-packages\\torch\\lib`` had been added to the Windows
user ``Path``. This script builds that machine with :class:`torchdll.testing.WindowsEnv` -- real
(tiny) PE files whose import and export tables follow torch 2.9's, written under a temporary
folder as a mirrored ``C:`` drive -- then runs ``diagnose()`` offline and prints the report:

* the user is ``홍길동`` (a non-ASCII user name: every path below has it);
* the venv was made from a Miniconda base interpreter, whose folder is the process's
  *application directory* and holds an old ``msvcp140.dll`` (14.29, from an old conda runtime);
* torch 2.9.0 is installed in the venv (its DLLs are built with MSVC 14.42);
* the user ``Path`` (``HKCU\\Environment``, ``REG_EXPAND_SZ``) holds
  ``%USERPROFILE%\\proj\\.venv\\Lib\\site-packages\\torch\\lib``.

What torchdll answers: the replay of torch's own loader predicts the 1114 on ``c10.dll`` and
names the file really at fault; the Path entry is reported with its exact text, where it is,
the loader rules that do and do not search it, and the command that removes it.

Run: python examples/seed_case.py
"""

from __future__ import annotations

import sys
import tempfile

from torchdll.diagnosis import diagnose
from torchdll.report import Report, render_text
from torchdll.testing import MSVCP, WindowsEnv

USER = "홍길동"
SEED_ENTRY = "%USERPROFILE%\\proj\\.venv\\Lib\\site-packages\\torch\\lib"


def build(root: str) -> WindowsEnv:
    """The seed machine, written under ``root``."""
    env = WindowsEnv(root, user=USER, base=f"C:\\Users\\{USER}\\miniconda3", conda=True)
    env.add_system()  # a current VC++ Redistributable (14.44) in System32
    # An old conda runtime next to the base interpreter: the application directory is searched
    # before System32, so this copy wins for every DLL that imports msvcp140.dll.
    env.add_dll(f"{env.base}\\msvcp140.dll", exports=MSVCP,
                imports={"VCRUNTIME140.dll": ["memcpy"]}, file_version=(14, 29, 30133, 0),
                linker=(14, 29))
    env.add_torch("2.9.0")
    env.user_path.append(SEED_ENTRY)  # the seed: the venv's own torch\lib on the user Path
    env.cwd = f"{env.user_home}\\server"
    return env


def summary(report: Report) -> str:
    """Three lines: the prediction, the first cause, and what became of the Path entry."""
    lines = []
    for p in report.predictions:
        state = "loads" if p.ok else f"fails with WinError {p.winerror} on {p.dll}"
        lines.append(f"prediction: {p.target} {p.version} {state}")
    if report.findings:
        top = report.findings[0]
        lines.append(f"first finding: {top.id} ({top.severity.value}): {top.title}")
    seed = next((f for f in report.findings if f.id == "env-dll-dir-on-path"), None)
    if seed is not None:
        apply = next(c for c in seed.commands["powershell"] if c.endswith("--apply"))
        lines.append(f"the Path entry: {seed.id} ({seed.severity.value}); fix: {apply}")
    return "\n".join(lines) + "\n"


def main() -> None:
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(encoding="utf-8")  # the user name is Korean; a Windows pipe is not UTF-8
    with tempfile.TemporaryDirectory(prefix="torchdll-seed-") as root:
        env = build(root)
        report = diagnose(env.snapshot(), view=env.view())
        sys.stdout.write(render_text(report, colour=False))
        sys.stdout.write("\n" + summary(report))


if __name__ == "__main__":
    main()
