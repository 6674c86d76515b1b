"""Build ``dlrun`` and run dlopen() plans with the real ld.so.

``src/dlrun.c`` calls dlopen() once per step and prints one JSON line per call (see the
comment at the top of the source). This module builds it with the host gcc (cached by
content, :mod:`tests.support.elfbuild`), runs it with a controlled environment
(``LD_LIBRARY_PATH`` of the scenario, ``LD_DEBUG=libs,files``, the C locale so that
``dlerror()`` and ``strerror()`` texts are English) and parses both outputs.

Nothing here knows about torchdll's model: the differential test compares the two.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import elfbuild

from . import ldebug

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "src" / "dlrun.c"

#: variables that would change what ld.so does: never inherited by a run
LOADER_VARIABLES = ("LD_LIBRARY_PATH", "LD_PRELOAD", "LD_BIND_NOW", "LD_BIND_NOT", "LD_DEBUG",
                    "LD_DEBUG_OUTPUT", "LD_AUDIT", "LD_PROFILE", "LD_DYNAMIC_WEAK",
                    "LD_HWCAP_MASK", "LD_ASSUME_KERNEL", "LD_USE_LOAD_BIAS", "GLIBC_TUNABLES",
                    "LD_ORIGIN_PATH", "LD_TRACE_LOADED_OBJECTS")


class HarnessError(RuntimeError):
    """The harness failed (not an ld.so outcome): no output, a bad line, a timeout."""


def build_dlrun(out_dir: os.PathLike) -> Path:
    """``dlrun`` built from ``src/dlrun.c`` (no RPATH/RUNPATH), copied into ``out_dir``."""
    return elfbuild.build_program(out_dir, "dlrun", source=SOURCE, libs=["-ldl"],
                                  cflags=("-O2", "-Wall"))


@dataclass(frozen=True)
class Obj:
    name: str  # l_name as ld.so stored it (dlpi_name); the main program: realpath of its exe
    real: str | None  # realpath in dlrun's process, None when there is no such file


@dataclass
class CallOutcome:
    step: int
    target: str
    flags: str
    ok: bool
    error: str | None
    object: Obj | None  # what the handle refers to (success only)
    new: list[Obj]


@dataclass
class Run:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    exit: int
    initial: list[Obj]
    calls: list[CallOutcome]
    done: bool
    stderr: str
    trace: ldebug.Trace
    bad_lines: list[str] = field(default_factory=list)

    @property
    def crash(self) -> str | None:
        """An ld.so assertion or fatal error that killed dlrun (it never exits on its own
        before ``done``)."""
        if self.done:
            return None
        if self.trace.crash:
            return self.trace.crash
        tail = [ln for ln in self.trace.other if ln.strip()]
        return tail[-1] if tail else f"dlrun exited with {self.exit}"


def _obj(data: Mapping[str, object]) -> Obj:
    real = data.get("real")
    return Obj(str(data.get("name", "")), str(real) if real is not None else None)


def child_env(ld_library_path: str | None, debug: bool = True,
              base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    for var in LOADER_VARIABLES:
        env.pop(var, None)
    for var in ("LANGUAGE", "LC_MESSAGES", "LANG"):
        env.pop(var, None)
    env["LC_ALL"] = "C"
    if ld_library_path is not None:
        env["LD_LIBRARY_PATH"] = ld_library_path
    if debug:
        env["LD_DEBUG"] = "libs,files"
    return env


def run_plan(dlrun: os.PathLike, steps: Sequence[str], *, cwd: os.PathLike,
             ld_library_path: str | None = None, debug: bool = True,
             timeout: float = 30) -> Run:
    """Run ``dlrun STEP...`` in ``cwd``; ``LD_LIBRARY_PATH`` is set only when not None."""
    argv = [os.fspath(dlrun), *steps]
    env = child_env(ld_library_path, debug)
    try:
        proc = subprocess.run(argv, cwd=os.fspath(cwd), env=env, capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"dlrun timed out after {timeout} s: {argv}") from exc
    out = proc.stdout.decode("utf-8", "surrogateescape")
    err = proc.stderr.decode("utf-8", "surrogateescape")
    initial: list[Obj] = []
    calls: list[CallOutcome] = []
    done = False
    bad: list[str] = []
    for line in out.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if rec.get("op") == "initial":
            initial = [_obj(o) for o in rec.get("objects", [])]
        elif rec.get("op") == "dlopen":
            obj = rec.get("object")
            calls.append(CallOutcome(
                int(rec["step"]), str(rec["target"]), str(rec["flags"]), bool(rec["ok"]),
                rec.get("error"), _obj(obj) if isinstance(obj, dict) else None,
                [_obj(o) for o in rec.get("new", [])]))
        elif "done" in rec:
            done = True
        else:
            bad.append(line)
    return Run(argv, env, os.fspath(cwd), proc.returncode, initial, calls, done, err,
               ldebug.parse(err), bad)


# --------------------------------------------------------------------------------------------
# facts about this machine's ld.so, asked of ld.so itself
# --------------------------------------------------------------------------------------------


def system_search_dirs(dlrun: os.PathLike, cwd: os.PathLike) -> list[str]:
    """The system search directories, as ld.so lists them in LD_DEBUG for a name it cannot
    find (hwcaps subdirectories left out)."""
    run = run_plan(dlrun, ["lazy libqz-no-such-library.so.0"], cwd=cwd)
    dirs: list[str] = []
    for search in run.trace.step(1).searches:
        for seg in search.segments:
            if seg.kind == ldebug.SYSTEM:
                dirs += [d for d in seg.dirs if d not in dirs]
    # each folder comes with its hwcaps subdirectories: glibc-hwcaps/<level> and the legacy
    # tls/<platform>/<hwcap>/... combinations (whose names appear after "tls/")
    tokens = {"glibc-hwcaps", "tls"}
    for d in dirs:
        if "/tls/" in d:
            tokens.update(d.split("/tls/", 1)[1].split("/"))

    def is_sub(d: str) -> bool:
        for o in dirs:
            if o != d and d.startswith(o.rstrip("/") + "/"):
                parts = d[len(o.rstrip("/")) + 1:].split("/")
                if parts[0] == "glibc-hwcaps" and len(parts) == 2:
                    return True
                if all(p in tokens for p in parts):
                    return True
        return False

    return [d for d in dirs if not is_sub(d)]


def cached_names() -> set | None:
    """The names in /etc/ld.so.cache, from ``ldconfig -p`` (None: no ldconfig)."""
    for ldconfig in ("/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"):
        try:
            proc = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=30,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0:
            return {line.split()[0] for line in proc.stdout.splitlines()[1:] if line.strip()}
    return None


def uncached_system_lib(dlrun: os.PathLike, cwd: os.PathLike, tries: int = 12) -> str | None:
    """The base name of a shared library that lies in a system directory, is not in the
    cache and loads without pulling in anything new besides itself (smallest first); None when
    there is none. Only ld.so and ldconfig are asked: not torchdll."""
    names = cached_names()
    if names is None:
        return None
    cands = []
    for d in system_search_dirs(dlrun, cwd):
        try:
            entries = os.listdir(d)
        except OSError:
            continue
        for e in entries:
            p = os.path.join(d, e)
            if not e.startswith("lib") or ".so" not in e or e in names or not os.path.isfile(p):
                continue
            try:
                with open(p, "rb") as fh:
                    head = fh.read(20)
                size = os.path.getsize(p)
            except OSError:
                continue
            if head[:5] == b"\x7fELF\x02" and head[18:20] == b"\x3e\x00" and size < 4 << 20:
                cands.append((size, e))
    for _size, e in sorted(cands)[:tries]:
        run = run_plan(dlrun, [f"lazy {e}"], cwd=cwd)
        if run.calls and run.calls[0].ok and len(run.calls[0].new) == 1:
            return e
    return None
