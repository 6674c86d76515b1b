"""Run-time probe: bisect a failing DLL load in a **child process** with the real loader.

The static model (:mod:`torchdll.closure`) predicts a load; the probe *does* it, in a fresh
child process so that the caller's process is not disturbed (a DLL that loads stays loaded, a
DllMain can crash). :func:`probe` loads the failing DLL's closure **bottom-up** -- leaves first,
the DLL itself last -- with the flags torch uses (``0x1100``), so the first load that fails is
the first DLL that fails *by itself*: all of its dependencies are already in the process. It
also loads the DLL alone in another fresh child (the ``direct`` outcome: the code the caller
sees), and reports the versions of the runtime DLLs loaded at the time of the failure::

    c10.dll's dependencies load; c10.dll's own initialisation fails (1114) with msvcp140.dll
    14.26.28720.3 from C:\\...\\PyQt5\\Qt5\\bin already loaded

Backends
========
A backend runs one :class:`ProbePlan` and returns a :class:`ProbeRun` (what each step did). It
is any object with a ``name`` and ``run(plan, timeout) -> ProbeRun`` (:class:`ProbeBackend`):

* :class:`ChildProcessBackend` (the default on Windows): ``python -c <child>`` with the plan as
  JSON on standard input; the child loads through ``ctypes`` kernel32 (``LoadLibraryExW``
  declared with argtypes/restype, ``use_last_error=True``; :class:`Kernel32Loader`);
* :class:`FakeBackend`: the same plan executor in this process over a :class:`ScriptedLoader`
  (outcomes by path or name), for unit tests on any OS; ``ChildProcessBackend(loader="scripted")``
  runs that scripted loader in a real child, to test the process plumbing on any OS;
* a Wine backend lives with the Wine test tier (``tests/wine``): it translates the plan into
  ``loadplan.c`` directives (``env PATH=``, ``adddir``, ``preload``, ``load FLAGS TARGET``) and
  its JSON lines back into a :class:`ProbeRun`.

The child protocol (what a child reads and prints)
==================================================
Standard input: one JSON object, the plan (:meth:`ProbePlan.to_dict`)::

    {"schema": "torchdll.probe-plan", "schema_version": 1,
     "flags": 4352,                      # LoadLibraryExW flags of every "loads" step
     "dll_directories": ["C:\\\\...\\\\torch\\\\lib"],  # os.add_dll_directory, first
     "path": "C:\\\\Windows\\\\system32;...",  # PATH of the child (null: inherited)
     "preload": ["C:\\\\...\\\\msvcp140.dll"],    # LoadLibraryExW(p, NULL, 0) before the loads
     "loads": ["...leaf.dll", "...", "...target.dll"],  # in this order, leaves first
     "runtimes": ["msvcp140.dll", "vcruntime140.dll"],  # report these if loaded at the end
     "stop_at_first_failure": true,
     "loader": "kernel32",               # or "scripted" (tests), with "script": {...}
     "script": null}

Standard output: one line per event, each ``@torchdll-probe `` followed by a JSON object
(other lines -- a DLL printing from its DllMain -- are ignored)::

    {"event": "start", "backend": "kernel32", "pid": 1234, "python": "3.11.9"}
    {"event": "dll_directory", "path": "...", "ok": true, "winerror": 0}
    {"event": "load", "phase": "preload"|"load", "index": 0, "path": "...", "flags": 4352,
     "ok": false, "winerror": 1114}
    {"event": "runtimes", "modules": [{"name": "msvcp140.dll", "path": "...",
                                        "file_version": "14.26.28720.3"}]}
    {"event": "done"}

Exit status 0 when the plan ran (whatever the loads did), 2 for an unreadable plan. A child
that dies before ``done`` (a DllMain crashed it, a timeout) is reported as such: the step after
the last one it printed is the one that crashed it.
"""

from __future__ import annotations

import json
import ntpath
import os
import subprocess
import sys
from dataclasses import dataclass, field, replace
from typing import (
    IO,
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Tuple,
)

from .errors import ProbeError, ProbeUnavailableError

if TYPE_CHECKING:
    from ._win32 import WinApi
    from .fsview import FileView
    from .snapshot import Snapshot

__all__ = [
    "DEFAULT_FLAGS",
    "DEFAULT_RUNTIMES",
    "EVENT_PREFIX",
    "PLAN_SCHEMA",
    "ChildProcessBackend",
    "FakeBackend",
    "Kernel32Loader",
    "LoadOutcome",
    "ProbeBackend",
    "ProbePlan",
    "ProbeResult",
    "ProbeRun",
    "RuntimeModule",
    "ScriptedLoader",
    "child_main",
    "default_backend",
    "execute_plan",
    "parse_events",
    "plan_closure",
    "probe",
]

#: ``LOAD_LIBRARY_SEARCH_DEFAULT_DIRS | LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR``: what CPython uses for
#: ``.pyd`` files and torch for its preload of ``torch\\lib\\*.dll``.
DEFAULT_FLAGS = 0x1100
PLAN_SCHEMA = "torchdll.probe-plan"
PLAN_SCHEMA_VERSION = 1
#: Every protocol line of a child starts with this.
EVENT_PREFIX = "@torchdll-probe "
#: Runtime DLLs whose loaded copy (path and FileVersion) a probe reports.
DEFAULT_RUNTIMES = (
    "msvcp140.dll", "msvcp140_1.dll", "msvcp140_atomic_wait.dll", "vcruntime140.dll",
    "vcruntime140_1.dll", "vcruntime140_threads.dll", "libiomp5md.dll", "libomp140.x86_64.dll",
    "vcomp140.dll", "ucrtbase.dll",
)  # fmt: skip
DEFAULT_TIMEOUT = 120.0

#: winerror.h, for the messages of :meth:`ProbeResult.explain`
_MEANING = {
    126: "a DLL it needs is not found",
    127: "a function it imports is missing from a DLL already loaded",
    182: "an ordinal it imports is missing from a DLL already loaded",
    193: "it is not a valid image for this process",
    216: "it is built for another machine type",
    1114: "its own initialisation fails",
    1455: "the paging file is too small to commit it",
    4551: "an application-control policy blocks it",
    225: "antivirus blocks it",
    5: "access is denied",
    206: "its path is too long",
    87: "the loader rejected the call (a relative path with these flags?)",
}


# --------------------------------------------------------------------------------------------
# Plan, events, run
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbePlan:
    """What one child process does (see the module docstring for the JSON form)."""

    loads: Tuple[str, ...]
    flags: int = DEFAULT_FLAGS
    dll_directories: Tuple[str, ...] = ()
    path: Optional[str] = None
    preload: Tuple[str, ...] = ()
    runtimes: Tuple[str, ...] = DEFAULT_RUNTIMES
    stop_at_first_failure: bool = True
    loader: str = "kernel32"
    script: Optional[Mapping[str, Any]] = None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "schema": PLAN_SCHEMA, "schema_version": PLAN_SCHEMA_VERSION, "flags": self.flags,
            "dll_directories": list(self.dll_directories), "path": self.path,
            "preload": list(self.preload), "loads": list(self.loads),
            "runtimes": list(self.runtimes), "stop_at_first_failure": self.stop_at_first_failure,
            "loader": self.loader, "script": dict(self.script) if self.script is not None else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> ProbePlan:
        """Parse a plan; :class:`ValueError` for anything that is not one."""
        if not isinstance(data, dict) or data.get("schema") != PLAN_SCHEMA:
            raise ValueError(f"not a {PLAN_SCHEMA} object")
        if data.get("schema_version") != PLAN_SCHEMA_VERSION:
            raise ValueError(f"unsupported plan schema_version {data.get('schema_version')!r}")

        def strings(key: str) -> Tuple[str, ...]:
            value = data.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{key}: a list of strings expected")
            return tuple(value)

        flags = data.get("flags", DEFAULT_FLAGS)
        path = data.get("path")
        script = data.get("script")
        if not isinstance(flags, int) or isinstance(flags, bool) or not 0 <= flags <= 0xFFFFFFFF:
            raise ValueError("flags: a 32-bit unsigned integer expected")
        if path is not None and not isinstance(path, str):
            raise ValueError("path: a string or null expected")
        if script is not None and not isinstance(script, dict):
            raise ValueError("script: an object or null expected")
        loader = data.get("loader", "kernel32")
        if loader not in ("kernel32", "scripted"):
            raise ValueError(f"loader: unknown loader {loader!r}")
        return cls(loads=strings("loads"), flags=flags, dll_directories=strings("dll_directories"),
                   path=path, preload=strings("preload"), runtimes=strings("runtimes"),
                   stop_at_first_failure=bool(data.get("stop_at_first_failure", True)),
                   loader=loader, script=script)


@dataclass(frozen=True)
class LoadOutcome:
    """One ``LoadLibraryExW`` of a plan: ``winerror`` is 0 when ``ok``."""

    phase: str
    index: int
    path: str
    flags: int
    ok: bool
    winerror: int = 0

    @property
    def name(self) -> str:
        return ntpath.basename(self.path.replace("/", "\\"))


@dataclass(frozen=True)
class RuntimeModule:
    """A runtime DLL loaded in the child: its base name, path and FileVersion (``a.b.c.d``)."""

    name: str
    path: str
    file_version: Optional[str] = None


@dataclass(frozen=True)
class ProbeRun:
    """What a backend reports for one plan.

    ``complete``: the child printed ``done``; otherwise ``crashed_at`` names the step it died in
    (the first step it did not report) and ``exit_code`` says how it ended (``None``: killed
    after the timeout).
    """

    backend: str
    loads: Tuple[LoadOutcome, ...] = ()
    directories: Tuple[Tuple[str, bool, int], ...] = ()
    runtimes: Tuple[RuntimeModule, ...] = ()
    complete: bool = True
    exit_code: Optional[int] = 0
    crashed_at: Optional[str] = None
    stderr: str = ""
    notes: Tuple[str, ...] = ()

    def first_failure(self, phase: str = "load") -> Optional[LoadOutcome]:
        return next((o for o in self.loads if o.phase == phase and not o.ok), None)


class ProbeBackend(Protocol):
    """Runs one :class:`ProbePlan` in a fresh process with a real (or scripted) loader."""

    name: str

    def run(self, plan: ProbePlan, timeout: float) -> ProbeRun: ...


# --------------------------------------------------------------------------------------------
# The plan executor (runs in the child) and its loaders
# --------------------------------------------------------------------------------------------


class Loader(Protocol):
    """What :func:`execute_plan` needs from a loader (one per child process)."""

    name: str

    def add_dll_directory(self, path: str) -> int: ...

    def load(self, path: str, flags: int) -> int: ...

    def runtimes(self, names: Sequence[str]) -> List[RuntimeModule]: ...


class Kernel32Loader:
    """The real Windows loader through :class:`torchdll._win32.WinApi` (``LoadLibraryExW``).

    Error dialogs are turned off for the thread (``SetThreadErrorMode``), as CPython does around
    extension loads. A successful load is kept (never freed): the next DLL of the plan must find
    it loaded. ``add_dll_directory`` defaults to ``os.add_dll_directory``.
    """

    name = "kernel32"

    def __init__(self, api: Optional[WinApi] = None,
                 add_dll_directory: Optional[Callable[[str], Any]] = None) -> None:
        from ._win32 import SEM_FAILCRITICALERRORS, SEM_NOOPENFILEERRORBOX, WinApi

        self.api = api if api is not None else WinApi()
        self._add = add_dll_directory if add_dll_directory is not None else getattr(os, "add_dll_directory", None)
        self._handles: List[Any] = []
        try:
            self.api.set_thread_error_mode(SEM_FAILCRITICALERRORS | SEM_NOOPENFILEERRORBOX)
        except OSError:
            pass  # dialogs may show; the probe still works

    def add_dll_directory(self, path: str) -> int:
        if self._add is None:
            return 120  # ERROR_CALL_NOT_IMPLEMENTED
        try:
            self._handles.append(self._add(path))
        except OSError as exc:
            return int(getattr(exc, "winerror", None) or exc.errno or 87)
        return 0

    def load(self, path: str, flags: int) -> int:
        try:
            self.api.load_library_ex(path, flags)
        except OSError as exc:
            return int(getattr(exc, "winerror", None) or exc.errno or 0) or 1
        return 0

    def runtimes(self, names: Sequence[str]) -> List[RuntimeModule]:
        out: List[RuntimeModule] = []
        for name in names:
            try:
                hit = self.api.loaded_module_version(name)
            except OSError:
                continue
            if hit is not None:
                path, version = hit
                out.append(RuntimeModule(name, path, ".".join(map(str, version)) if version else None))
        return out


class ScriptedLoader:
    """A loader that follows a script instead of loading anything (tests, any OS).

    ``outcomes``: full path or base name (case-insensitive) -> Win32 error of its load (others
    succeed). ``crash_on``: a path or name whose load kills the process (``os._exit(crash_code)``,
    like an access violation in a DllMain). ``runtimes``: base name -> ``[path, version]``
    reported as loaded. ``missing_dirs``: folders ``add_dll_directory`` fails for (error 3).
    """

    name = "scripted"

    def __init__(self, outcomes: Optional[Mapping[str, int]] = None, *, crash_on: Optional[str] = None,
                 crash_code: int = 3, runtimes: Optional[Mapping[str, Sequence[Optional[str]]]] = None,
                 missing_dirs: Sequence[str] = (), exit: Callable[[int], Any] = os._exit) -> None:
        self.outcomes = {k.lower(): int(v) for k, v in (outcomes or {}).items()}
        self.crash_on = crash_on.lower() if crash_on else None
        self.crash_code = crash_code
        self.loaded_runtimes = {k.lower(): list(v) for k, v in (runtimes or {}).items()}
        self.missing_dirs = {d.lower() for d in missing_dirs}
        self.calls: List[Tuple[str, int]] = []
        self._exit = exit

    @classmethod
    def from_script(cls, script: Mapping[str, Any]) -> ScriptedLoader:
        return cls(script.get("outcomes") or {}, crash_on=script.get("crash_on"),
                   crash_code=int(script.get("crash_code", 3)), runtimes=script.get("runtimes") or {},
                   missing_dirs=script.get("missing_dirs") or ())

    def add_dll_directory(self, path: str) -> int:
        return 3 if path.lower() in self.missing_dirs else 0

    def load(self, path: str, flags: int) -> int:
        self.calls.append((path, flags))
        base = ntpath.basename(path.replace("/", "\\")).lower()
        if self.crash_on in (path.lower(), base):
            sys.stdout.flush()
            self._exit(self.crash_code)
        return self.outcomes.get(path.lower(), self.outcomes.get(base, 0))

    def runtimes(self, names: Sequence[str]) -> List[RuntimeModule]:
        out: List[RuntimeModule] = []
        for name in names:
            hit = self.loaded_runtimes.get(name.lower())
            if hit:
                out.append(RuntimeModule(name, str(hit[0]), hit[1] if len(hit) > 1 else None))
        return out


def execute_plan(plan: ProbePlan, loader: Loader, emit: Callable[[Dict[str, Any]], None]) -> None:
    """Run ``plan`` with ``loader``, reporting each step through ``emit`` (the child's body).

    Order: ``dll_directories`` (``os.add_dll_directory``), ``preload`` (flags 0), ``loads``
    (``plan.flags``; stops after the first failure when ``stop_at_first_failure``), then the
    runtime report. ``plan.path`` is applied by whoever starts the child (its environment).
    """
    emit({"event": "start", "backend": loader.name, "pid": os.getpid(),
          "python": ".".join(map(str, sys.version_info[:3]))})
    for d in plan.dll_directories:
        code = loader.add_dll_directory(d)
        emit({"event": "dll_directory", "path": d, "ok": code == 0, "winerror": code})
    for i, p in enumerate(plan.preload):
        code = loader.load(p, 0)
        emit({"event": "load", "phase": "preload", "index": i, "path": p, "flags": 0,
              "ok": code == 0, "winerror": code})
    for i, p in enumerate(plan.loads):
        code = loader.load(p, plan.flags)
        emit({"event": "load", "phase": "load", "index": i, "path": p, "flags": plan.flags,
              "ok": code == 0, "winerror": code})
        if code and plan.stop_at_first_failure:
            break
    modules = [{"name": m.name, "path": m.path, "file_version": m.file_version}
               for m in loader.runtimes(plan.runtimes)]
    emit({"event": "runtimes", "modules": modules})
    emit({"event": "done"})


def _loader_for(plan: ProbePlan) -> Loader:
    if plan.loader == "scripted":
        return ScriptedLoader.from_script(plan.script or {})
    return Kernel32Loader()


def child_main(stdin: Optional[IO[str]] = None, stdout: Optional[IO[str]] = None) -> int:
    """The child process: read a plan from ``stdin``, print events to ``stdout``."""
    src = stdin if stdin is not None else sys.stdin
    out = stdout if stdout is not None else sys.stdout
    try:
        plan = ProbePlan.from_dict(json.loads(src.read()))
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        out.write(EVENT_PREFIX + json.dumps({"event": "error", "message": f"bad plan: {exc}"}) + "\n")
        out.flush()
        return 2

    def emit(event: Dict[str, Any]) -> None:
        out.write(EVENT_PREFIX + json.dumps(event) + "\n")
        out.flush()  # line by line: a crash must not lose what was already done

    execute_plan(plan, _loader_for(plan), emit)
    return 0


def parse_events(lines: Sequence[str], plan: ProbePlan, backend: str, *, exit_code: Optional[int] = 0,
                 stderr: str = "") -> ProbeRun:
    """Turn a child's output lines into a :class:`ProbeRun` (lines without the prefix are
    skipped; a missing ``done`` means the child died in the step after the last reported)."""
    loads: List[LoadOutcome] = []
    dirs: List[Tuple[str, bool, int]] = []
    runtimes: List[RuntimeModule] = []
    notes: List[str] = []
    done = False
    name = backend
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line.startswith(EVENT_PREFIX):
            continue
        try:
            ev = json.loads(line[len(EVENT_PREFIX):])
        except ValueError:
            notes.append(f"unreadable protocol line: {line[:120]!r}")
            continue
        kind = ev.get("event") if isinstance(ev, dict) else None
        if kind == "start":
            child = ev.get("backend")
            name = backend if not child or backend.endswith(str(child)) else f"{backend}/{child}"
        elif kind == "dll_directory":
            dirs.append((str(ev.get("path")), bool(ev.get("ok")), int(ev.get("winerror") or 0)))
        elif kind == "load":
            loads.append(LoadOutcome(str(ev.get("phase")), int(ev.get("index", 0)), str(ev.get("path")),
                                     int(ev.get("flags", 0)), bool(ev.get("ok")), int(ev.get("winerror") or 0)))
        elif kind == "runtimes":
            for m in ev.get("modules") or []:
                runtimes.append(RuntimeModule(str(m.get("name")), str(m.get("path")), m.get("file_version")))
        elif kind == "error":
            notes.append(f"child: {ev.get('message')}")
        elif kind == "done":
            done = True
    crashed_at: Optional[str] = None
    if not done:
        pre = [o for o in loads if o.phase == "preload"]
        main = [o for o in loads if o.phase == "load"]
        if len(pre) < len(plan.preload):
            crashed_at = plan.preload[len(pre)]
        elif len(main) < len(plan.loads) and not (main and not main[-1].ok and plan.stop_at_first_failure):
            crashed_at = plan.loads[len(main)]
    return ProbeRun(name, tuple(loads), tuple(dirs), tuple(runtimes), done, exit_code, crashed_at,
                    stderr, tuple(notes))


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------

#: What ``python -c`` runs in the child: nothing but the probe module (no torchdll __init__
#: work, no typing-heavy imports).
CHILD_CODE = "import sys; from torchdll.probe import child_main; sys.exit(child_main())"


class ChildProcessBackend:
    """``python -c CHILD_CODE`` with the plan on stdin (the default backend on Windows).

    ``python``: the interpreter (default ``sys.executable``: the same Python, so the same
    application directory). ``loader``: ``"kernel32"`` (real loads, Windows) or ``"scripted"``
    (with ``script``, any OS: tests of the process plumbing). ``env``: the child's
    environment (default ``os.environ``); the plan's ``path`` replaces its ``PATH``. The folder
    holding the torchdll package is put first on ``PYTHONPATH`` so the child imports the same
    torchdll.
    """

    def __init__(self, python: Optional[str] = None, *, loader: str = "kernel32",
                 script: Optional[Mapping[str, Any]] = None,
                 env: Optional[Mapping[str, str]] = None) -> None:
        self.python = python or sys.executable
        self.loader = loader
        self.script = dict(script) if script is not None else None
        self.env = env
        self.name = f"child-process/{loader}"

    def _environment(self, plan: ProbePlan) -> Dict[str, str]:
        env = dict(os.environ if self.env is None else self.env)
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        old = env.get("PYTHONPATH")
        env["PYTHONPATH"] = here + (os.pathsep + old if old else "")
        if plan.path is not None:
            for key in [k for k in env if k.upper() == "PATH"]:
                del env[key]
            env["PATH"] = plan.path
        return env

    def run(self, plan: ProbePlan, timeout: float) -> ProbeRun:
        plan = replace(plan, loader=self.loader, script=self.script if self.loader == "scripted" else plan.script)
        try:
            proc = subprocess.run([self.python, "-c", CHILD_CODE], input=plan.to_json(),
                                  capture_output=True, text=True, timeout=timeout,
                                  env=self._environment(plan), errors="replace")
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout or ""
            text = out.decode("utf-8", "replace") if isinstance(out, bytes) else out
            run = parse_events(text.splitlines(), plan, self.name, exit_code=None)
            return replace(run, notes=run.notes + (f"the child was killed after {timeout:g} s",))
        except OSError as exc:
            raise ProbeError(f"cannot start the probe child {self.python!r}: {exc}") from exc
        run = parse_events(proc.stdout.splitlines(), plan, self.name, exit_code=proc.returncode,
                           stderr=proc.stderr[-4000:])
        if proc.returncode == 2 and not run.loads:
            raise ProbeError("the probe child rejected the plan: " + "; ".join(run.notes or (proc.stderr[-500:],)))
        return run


class FakeBackend:
    """Runs plans in this process with a :class:`ScriptedLoader` (unit tests, any OS).

    ``runs`` records every plan. ``crash_on`` makes the "child" stop reporting at that step,
    as if its DllMain had crashed it (``exit_code`` 0xC0000005).
    """

    name = "fake"

    def __init__(self, outcomes: Optional[Mapping[str, int]] = None, *, crash_on: Optional[str] = None,
                 runtimes: Optional[Mapping[str, Sequence[Optional[str]]]] = None,
                 missing_dirs: Sequence[str] = ()) -> None:
        self.outcomes = dict(outcomes or {})
        self.crash_on = crash_on
        self.runtimes = dict(runtimes or {})
        self.missing_dirs = tuple(missing_dirs)
        self.runs: List[ProbePlan] = []

    def run(self, plan: ProbePlan, timeout: float) -> ProbeRun:
        self.runs.append(plan)
        lines: List[str] = []

        class _Crash(Exception):
            pass

        def crash(code: int) -> None:
            raise _Crash(code)

        loader = ScriptedLoader(self.outcomes, crash_on=self.crash_on, runtimes=self.runtimes,
                                missing_dirs=self.missing_dirs, exit=crash)
        exit_code: Optional[int] = 0
        try:
            execute_plan(plan, loader, lambda ev: lines.append(EVENT_PREFIX + json.dumps(ev)))
        except _Crash:
            exit_code = 0xC0000005
        return parse_events(lines, plan, self.name, exit_code=exit_code)


def default_backend(platform: Optional[str] = None) -> ProbeBackend:
    """:class:`ChildProcessBackend` on Windows; elsewhere :class:`ProbeUnavailableError`."""
    plat = platform if platform is not None else sys.platform
    if plat != "win32":
        raise ProbeUnavailableError(
            "the run-time probe loads DLLs with the Windows loader: run it on Windows "
            "(tests use FakeBackend or a Wine backend)")
    return ChildProcessBackend()


# --------------------------------------------------------------------------------------------
# The closure, bottom-up
# --------------------------------------------------------------------------------------------


def plan_closure(target: str, *, flags: int = DEFAULT_FLAGS, snapshot: Snapshot,
                 view: FileView, user_dirs: Sequence[str] = ()) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """``(order, notes)``: the modules ``LoadLibraryExW(target, flags)`` maps, leaves first and
    ``target`` last, from the loader model on ``snapshot`` (the process) read through ``view``.

    Modules the process already has (loaded-module rule) and KnownDLLs are left out: they are
    in every process. Static imports only (delay loads happen later, if ever). An import the
    model cannot resolve is a note: loading its importer will show the real outcome.
    """
    from .closure import LoadCall, LoadSimulator
    from .model import Rule

    ctx = snapshot.load_context(user_dirs=tuple(user_dirs))
    sim = LoadSimulator(ctx, view, follow_delay=False)
    result = sim.run(LoadCall(target, flags))
    top = result.resolution.path
    notes: List[str] = []
    if top is None:
        return (target,), ("the model does not find the target itself",)
    already = {p.lower() for p in ctx.loaded.values()}
    # KnownDLLs and everything they pull in (ntdll, kernelbase, msvcrt...) are in every
    # process: leave them out, however a later import reached them (often the loaded-module
    # rule, once the first import mapped them).
    static = [e for e in result.edges if not e.delay]
    system = {e.resolution.path.lower() for e in static
              if e.resolution.path and e.resolution.rule is Rule.KNOWN_DLL}
    grew = True
    while grew:
        grew = False
        for e in static:
            p = e.resolution.path
            if p and e.importer.lower() in system and p.lower() not in system:
                system.add(p.lower())
                grew = True
    children: Dict[str, List[str]] = {}
    for e in static:
        res = e.resolution
        if res.path is None:
            notes.append(f"model: {ntpath.basename(e.importer)} imports {e.name}, which is not found")
            continue
        if res.path.lower() in already or res.path.lower() in system:
            continue
        children.setdefault(e.importer.lower(), []).append(res.path)
    order: List[str] = []
    seen: set[str] = set()
    stack: List[Tuple[str, int]] = [(top, 0)]
    seen.add(top.lower())
    while stack:  # iterative post-order DFS in import order
        node, i = stack[-1]
        kids = children.get(node.lower(), [])
        if i < len(kids):
            stack[-1] = (node, i + 1)
            kid = kids[i]
            if kid.lower() not in seen:
                seen.add(kid.lower())
                stack.append((kid, 0))
            continue
        stack.pop()
        order.append(node)
    if order[-1].lower() != target.lower() and top.lower() != target.lower():
        notes.append(f"the target resolves to {top}")
    return tuple(order), tuple(notes)


# --------------------------------------------------------------------------------------------
# probe()
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeResult:
    """What :func:`probe` found.

    ``direct``: the target loaded alone in a fresh child (the code a caller sees; ``None`` when
    that child died). ``steps``: the bottom-up loads (leaves first), up to the first failure.
    ``failing``: the first DLL that fails by itself (``None``: everything loaded). ``winerror``:
    the code of ``failing`` (else of ``direct``; ``None`` when all loaded). ``runtimes``: runtime
    DLLs loaded in the bisecting child when it stopped. ``crashed_at``: a DLL whose load killed
    the child. ``order``: the planned bottom-up order.
    """

    target: str
    flags: int
    backend: str
    direct: Optional[LoadOutcome]
    steps: Tuple[LoadOutcome, ...]
    failing: Optional[LoadOutcome]
    winerror: Optional[int]
    runtimes: Tuple[RuntimeModule, ...] = ()
    preloaded: Tuple[LoadOutcome, ...] = ()
    crashed_at: Optional[str] = None
    order: Tuple[str, ...] = ()
    notes: Tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """The target and its closure loaded (no failure, no crash)."""
        return self.failing is None and self.crashed_at is None and (self.direct is None or self.direct.ok)

    def explain(self) -> str:
        """One or two sentences a person can act on."""
        target = ntpath.basename(self.target.replace("/", "\\"))
        if self.crashed_at:
            return (f"loading {ntpath.basename(self.crashed_at)} killed the probe process "
                    "(its initialisation crashed)")
        if self.failing is None:
            if self.direct is not None and not self.direct.ok:
                return (f"{target} fails ({self.direct.winerror}) when loaded alone, but its closure "
                        "loads bottom-up: a dependency is found only after being loaded by full path "
                        "(a search-order problem)")
            return f"{target} and its dependencies load in a fresh process"
        name = self.failing.name
        meaning = _MEANING.get(self.failing.winerror, f"it fails with error {self.failing.winerror}")
        if self.failing.path.lower() == self.target.lower() or name.lower() == target.lower():
            head = f"{name}'s dependencies load; {name} fails ({self.failing.winerror}): {meaning}"
        else:
            head = f"{name}, a dependency of {target}, fails by itself ({self.failing.winerror}): {meaning}"
        runtime = self._runtime_text()
        return head + (f", with {runtime} already loaded" if runtime else "")

    def _runtime_text(self) -> str:
        shown = [r for r in self.runtimes if r.name.lower().startswith(("msvcp140", "vcruntime140"))]
        if not shown:
            return ""
        first = shown[0]
        version = f" {first.file_version}" if first.file_version else ""
        return f"{first.name}{version} from {ntpath.dirname(first.path)}"

    def __str__(self) -> str:
        return self.explain()

    def to_dict(self) -> Dict[str, Any]:
        from ._json import to_jsonable

        data = to_jsonable(self)
        assert isinstance(data, dict)
        data["ok"] = self.ok
        data["explanation"] = self.explain()
        return data


def probe(
    dll_path: str,
    *,
    flags: int = DEFAULT_FLAGS,
    backend: Optional[ProbeBackend] = None,
    closure: Optional[Sequence[str]] = None,
    dll_directories: Sequence[str] = (),
    preload: Sequence[str] = (),
    path: Optional[str] = None,
    runtimes: Sequence[str] = DEFAULT_RUNTIMES,
    snapshot: Optional[Snapshot] = None,
    view: Optional[FileView] = None,
    direct: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> ProbeResult:
    """Find the first DLL of ``dll_path``'s closure that fails to load by itself.

    ``backend``: see the module docstring (default :func:`default_backend`). ``closure``: the
    bottom-up order to load (default: :func:`plan_closure` on ``snapshot``/``view``, the live
    process and file system on Windows; the target alone when no model is available).
    ``dll_directories``: folders the child adds first (torch's ``dll_paths``);
    ``preload``: DLLs the child loads first with flags 0 (to reproduce a conflict: an old
    ``msvcp140.dll`` another package loaded); ``path``: the child's PATH (default: inherited).
    ``direct``: also load the target alone in its own child. Raises :class:`ProbeError` only
    when no child could run; load failures are results.
    """
    be = backend if backend is not None else default_backend()
    notes: List[str] = []
    if closure is not None:
        order = tuple(closure) or (dll_path,)
        if order[-1].lower() != dll_path.lower():
            order = order + (dll_path,)
    else:
        order = (dll_path,)
        try:
            snap, fview = snapshot, view
            if snap is None and sys.platform == "win32":
                from .snapshot import collect

                snap = collect()
            if snap is not None and fview is None:
                from .fsview import NativeView

                fview = NativeView()
            if snap is not None and fview is not None and snap.platform == "win32":
                order, model_notes = plan_closure(dll_path, flags=flags, snapshot=snap, view=fview,
                                                  user_dirs=dll_directories)
                notes.extend(model_notes)
            else:
                notes.append("no Windows snapshot: the closure was not computed, the target is probed alone")
        except Exception as exc:  # noqa: BLE001 - the probe still runs on the target alone
            notes.append(f"the closure could not be computed ({type(exc).__name__}: {exc}); "
                         "the target is probed alone")
    common = dict(flags=flags, dll_directories=tuple(dll_directories), path=path,
                  preload=tuple(preload), runtimes=tuple(runtimes))
    direct_outcome: Optional[LoadOutcome] = None
    if direct and len(order) > 1:
        first = be.run(ProbePlan(loads=(order[-1],), **common), timeout)  # type: ignore[arg-type]
        direct_outcome = first.first_failure() or next((o for o in first.loads if o.phase == "load"), None)
        notes.extend(first.notes)
        if first.crashed_at:
            notes.append(f"loaded alone, {ntpath.basename(first.crashed_at)} killed the child")
    run = be.run(ProbePlan(loads=order, **common), timeout)  # type: ignore[arg-type]
    notes.extend(run.notes)
    for d, ok, err in run.directories:
        if not ok:
            notes.append(f"os.add_dll_directory({d}) failed in the child (error {err})")
    steps = tuple(o for o in run.loads if o.phase == "load")
    pre = tuple(o for o in run.loads if o.phase == "preload")
    for o in pre:
        if not o.ok:
            notes.append(f"preload of {o.path} failed ({o.winerror})")
    failing = run.first_failure()
    if direct_outcome is None:
        direct_outcome = steps[-1] if steps and len(order) == 1 else None
    code: Optional[int] = failing.winerror if failing is not None else None
    if code is None and direct_outcome is not None and not direct_outcome.ok:
        code = direct_outcome.winerror
    if not run.complete and run.crashed_at is None and run.exit_code is None:
        notes.append("the probe child timed out")
    return ProbeResult(dll_path, flags, run.backend, direct_outcome, steps, failing, code,
                       run.runtimes, pre, run.crashed_at, tuple(order), tuple(notes))
