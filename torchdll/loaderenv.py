"""Clean the environment a dynamic loader reads at process start, for a new process.

``LD_LIBRARY_PATH`` (glibc ``ld.so``) and ``DYLD_*`` (macOS ``dyld``) are read once, when a
process starts: changing them inside Python does nothing for that process. So the fix for a
shadowing entry is to start the program again with a cleaned environment, which is what
``python -m torchdll run -- python main.py`` does with the plan computed here. On Windows the
process PATH is cleaned with :func:`torchdll.sanitize.sanitize_path` (the same policy as
:func:`torchdll.sanitize_path`).

What is removed, and why:

* an ``LD_LIBRARY_PATH`` entry holding libraries named like torch's own (``torch/lib``) or
  pip's CUDA libraries (``site-packages/nvidia/*/lib``): it would win over them (cause 37);
* an entry whose ``libstdc++.so.6`` lacks a ``GLIBCXX_*`` version torch's libraries need
  (cause 39; the only check that reads ELF files);
* on macOS, ``DYLD_LIBRARY_PATH``/``DYLD_FALLBACK_LIBRARY_PATH``/``DYLD_FRAMEWORK_PATH``
  entries holding dylibs named like torch's.

Nothing else is touched; every removal says why. The plan is a pure value (:class:`EnvPlan`).
"""

from __future__ import annotations

import os
import posixpath
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple

__all__ = ["EnvPlan", "Removal", "plan_loader_env", "torch_sys_path"]


@dataclass(frozen=True)
class Removal:
    variable: str
    entry: str
    reason: str


@dataclass(frozen=True)
class EnvPlan:
    """The environment to start a command with: ``environ`` (a full copy), what was removed and
    why, and notes (e.g. no torch found)."""

    environ: Dict[str, str]
    removed: Tuple[Removal, ...] = ()
    notes: Tuple[str, ...] = ()
    torch_dir: Optional[str] = None
    changed: bool = field(default=False)

    def describe(self) -> List[str]:
        out = [f"removed {r.entry!r} from {r.variable}: {r.reason}" for r in self.removed]
        return out + list(self.notes)


def _listdir(folder: str) -> List[str]:
    try:
        return sorted(os.listdir(folder))
    except (OSError, ValueError):
        return []


def _needed_glibcxx(lib_dir: str, names: Sequence[str]) -> Tuple[str, ...]:
    """GLIBCXX_/CXXABI_ versions torch's own libraries need from libstdc++.so.6."""
    from ._elf import read_elf_facts
    from .errors import InvalidImageError

    need: Set[str] = set()
    for name in names:
        if not name.startswith("lib") or ".so" not in name:
            continue
        try:
            facts = read_elf_facts(posixpath.join(lib_dir, name), symbols=False)
        except (InvalidImageError, OSError):
            continue
        for vn in facts.version_needs:
            if vn.file == "libstdc++.so.6":
                need.update(vn.versions)
    return tuple(sorted(need))


def _lacks(path: str, versions: Sequence[str]) -> Optional[str]:
    from ._elf import read_elf_facts
    from .errors import InvalidImageError

    try:
        facts = read_elf_facts(path, symbols=False)
    except (InvalidImageError, OSError):
        return None
    have = set(facts.version_defs)
    missing = [v for v in versions if v not in have]
    return missing[-1] if missing else None


def plan_loader_env(environ: Optional[Mapping[str, str]] = None, *, sys_path: Optional[Sequence[str]] = None,
                    platform: Optional[str] = None, cwd: Optional[str] = None) -> EnvPlan:
    """Compute the cleaned environment for a new process running the torch found on
    ``sys_path`` (default: this interpreter's). ``environ`` is not modified."""
    env = dict(os.environ if environ is None else environ)
    plat = platform or sys.platform
    path = list(sys_path if sys_path is not None else sys.path)
    if plat == "win32":
        return _plan_windows(env, path)
    from .checks.linux import shadowing_entries
    from .linuxload import find_linux_torch, nvidia_lib_dirs

    torches = find_linux_torch(path)
    if not torches:
        return EnvPlan(env, (), ("no torch found on the interpreter's sys.path: nothing to protect",))
    torch = torches[0]
    intended: Dict[str, str] = {}
    lib_names = _listdir(torch.lib_dir)
    for n in lib_names:
        intended.setdefault(n, posixpath.join(torch.lib_dir, n))
    for d in nvidia_lib_dirs(path):
        for n in _listdir(d):
            intended.setdefault(n, posixpath.join(d, n))
    removed: List[Removal] = []
    variables = (("DYLD_LIBRARY_PATH", "DYLD_FALLBACK_LIBRARY_PATH", "DYLD_FRAMEWORK_PATH")
                 if plat == "darwin" else ("LD_LIBRARY_PATH",))
    here = cwd or os.getcwd()
    for var in variables:
        value = env.get(var)
        if not value:
            continue
        seps = ":;" if var == "LD_LIBRARY_PATH" else ":"
        from .ldso import split_search_path

        entries = list(split_search_path(value, seps))
        drop = {e: f"holds {', '.join(n[:4])}{' ...' if len(n) > 4 else ''}, which shadow torch's own copies"
                for e, n in shadowing_entries(tuple(entries), intended, here)}
        if var == "LD_LIBRARY_PATH":
            needs: Optional[Tuple[str, ...]] = None
            for e in entries:
                folder = e or "."
                folder = folder if folder.startswith("/") else posixpath.join(here, folder)
                cand = posixpath.join(folder, "libstdc++.so.6")
                if e in drop or not os.path.isfile(cand):
                    continue
                if needs is None:
                    needs = _needed_glibcxx(torch.lib_dir, lib_names)
                missing = _lacks(cand, needs)
                if missing:
                    drop[e] = f"its libstdc++.so.6 lacks {missing}, which torch's libraries need"
        if not drop:
            continue
        keep = [e for e in entries if e not in drop]
        for e in entries:
            if e in drop and not any(r.entry == e and r.variable == var for r in removed):
                removed.append(Removal(var, e, drop[e]))
        if keep:
            env[var] = ":".join(keep)
        else:
            del env[var]
    if plat != "darwin" and env.get("LD_PRELOAD"):
        _plan_preload(env, torch.lib_dir, lib_names, intended, removed)
    return EnvPlan(env, tuple(removed), (), torch.torch_dir, bool(removed))


def _plan_preload(env: Dict[str, str], lib_dir: str, lib_names: List[str], intended: Mapping[str, str],
                  removed: List[Removal]) -> None:
    """``LD_PRELOAD`` entries (split on spaces and colons) that are another copy of one of
    torch's libraries, or a ``libstdc++.so.6`` too old for torch's libraries."""
    import re

    entries = [e for e in re.split(r"[ :]", env["LD_PRELOAD"]) if e]
    needs: Optional[Tuple[str, ...]] = None
    keep: List[str] = []
    for e in entries:
        base = posixpath.basename(e)
        reason = None
        if base in intended and e != intended[base]:
            reason = f"another copy of torch's {base}, loaded before torch's own"
        elif base.startswith("libstdc++.so") and os.path.isfile(e):
            if needs is None:
                needs = _needed_glibcxx(lib_dir, lib_names)
            missing = _lacks(e, needs)
            if missing:
                reason = f"a libstdc++ without {missing}, which torch's libraries need"
        if reason:
            removed.append(Removal("LD_PRELOAD", e, reason))
        else:
            keep.append(e)
    if len(keep) != len(entries):
        if keep:
            env["LD_PRELOAD"] = " ".join(keep)
        else:
            del env["LD_PRELOAD"]


def _plan_windows(env: Dict[str, str], path: Sequence[str]) -> EnvPlan:
    from .sanitize import sanitize_path

    from .pathenv import PathSyntax

    result = sanitize_path(environ=env, apply=True, syntax=PathSyntax.PROCESS)  # env: our own copy
    removed = tuple(Removal("PATH", r.entry.raw, r.reason) for r in result.removed)
    return EnvPlan(env, removed, (), None, bool(removed))


def _shebang_python(path: str) -> Optional[str]:
    """The interpreter of a script started through ``#!`` (console scripts such as ``uvicorn``,
    ``gunicorn`` or ``torchrun`` installed by pip), when it is a Python."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    parts = first[2:].decode("utf-8", "replace").split()
    if not parts:
        return None
    if posixpath.basename(parts[0]) == "env" and len(parts) > 1:  # #!/usr/bin/env python3
        import shutil

        return shutil.which(parts[1]) if "python" in parts[1] else None
    return parts[0] if "python" in posixpath.basename(parts[0]) else None


def torch_sys_path(program: str, timeout: float = 20.0) -> Optional[List[str]]:
    """``sys.path`` of the Python interpreter ``program``, or of the interpreter a ``#!``
    script names (``None`` if it is neither or it fails)."""
    import json
    import shutil
    import subprocess

    exe = shutil.which(program) if os.sep not in program else program
    if exe is not None and "python" not in posixpath.basename(exe).lower():
        exe = _shebang_python(exe)
    if exe is None or "python" not in posixpath.basename(exe).lower():
        return None
    try:
        proc = subprocess.run([exe, "-c", "import json,sys;print(json.dumps(sys.path))"],
                              capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    try:
        value = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return [str(v) for v in value] if isinstance(value, list) else None
