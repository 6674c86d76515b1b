"""A :class:`torchdll.probe.ProbeBackend` whose "child process" is ``loadplan.exe`` under Wine.

:func:`torchdll.probe.probe` hands a backend one :class:`~torchdll.probe.ProbePlan` per child.
:class:`WineProbeBackend` translates it into ``loadplan.c`` directives::

    env PATH=<plan.path>            (only when the plan sets a PATH)
    adddir <dir>                    per plan.dll_directories (os.add_dll_directory)
    preload <dll>                   per plan.preload (LoadLibraryExW(dll, NULL, 0))
    load 0x<flags> <dll>            per plan.loads, in order

runs it with :meth:`runner.WinePrefix.run` (one fresh Wine process per plan: module state must
not leak between plans) and turns the JSON lines back into the probe's child protocol, parsed by
:func:`torchdll.probe.parse_events`, so a :class:`~torchdll.probe.ProbeRun` means the same
thing for every backend.

Translation rules:

* a load counts with the error Windows would return (:func:`runner.windows_outcome`): Wine
  binds a stub for a missing import and lets the load succeed; the backend reports 127 / 182
  (126 for a forwarder whose module cannot be loaded) as the differential test does;
* ``loadplan`` executes every directive; ``stop_at_first_failure`` is applied here: the steps
  after the first failure are dropped (after a failure -- and after a stub binding -- the Wine
  process holds modules Windows would not, so those steps are not evidence anyway);
* runtimes: the runtime DLLs (``plan.runtimes``) among the modules of the process after the last
  load that succeeded (Windows unloads what a failed load mapped; Wine keeps it). Their
  ``file_version`` is read from the file's version resource (``torchdll._pe.read_facts``) when
  the backend was given ``host_path`` (Windows path -> host file); otherwise it is ``None``:
  ``loadplan`` itself does not report versions.

The caller places ``loadplan.exe`` in the folder that is to be the application directory (as
:class:`conftest.PlanRunner` and the torch replay do) and owns the prefix (a light prefix runs
its own wineserver: shut it down when done).
"""

from __future__ import annotations

import itertools
import json
import ntpath
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchdll.probe import EVENT_PREFIX, ProbePlan, ProbeRun, parse_events

from . import runner

_LOAD_OPS = ("preload", "load")


class WineProbeBackend:
    """Runs probe plans with ``loadplan.exe`` under Wine (see the module docstring).

    ``prefix``: the Wine prefix (shared, or a light one). ``exe``: Windows path of the copy of
    ``loadplan.exe`` in the application directory. ``work``: a host folder and its Windows path
    where plans and outputs are written. ``overrides``: ``WINEDLLOVERRIDES`` (e.g.
    :data:`runner.MSVC_NATIVE`). ``host_path``: maps a Windows path to the host file, to read
    runtime file versions (``MirrorView(root).host_path`` fits). ``runs`` keeps every (plan text, parsed run) for assertions.
    """

    name = "wine"

    def __init__(self, prefix: runner.WinePrefix, exe: str, work: tuple[Path, str], *,
                 overrides: str = "", host_path: Callable[[str], Path | str | None] | None = None) -> None:
        self.prefix = prefix
        self.exe = exe
        self.work_host, self.work_win = Path(work[0]), work[1].rstrip("\\")
        self.work_host.mkdir(parents=True, exist_ok=True)
        self.overrides = overrides
        self.host_path = host_path
        self.runs: list[tuple[str, runner.PlanRun]] = []
        self._n = itertools.count(1)

    # -- plan -> loadplan directives --------------------------------------------------------
    @staticmethod
    def directives(plan: ProbePlan) -> str:
        lines: list[str] = []
        if plan.path is not None:
            lines.append(f"env PATH={plan.path}")
        lines += [f"adddir {d}" for d in plan.dll_directories]
        lines += [f"preload {p}" for p in plan.preload]
        lines += [f"load 0x{plan.flags:x} {p}" for p in plan.loads]
        return "\n".join(lines) + "\n"

    # -- the backend protocol ---------------------------------------------------------------
    def run(self, plan: ProbePlan, timeout: float) -> ProbeRun:
        text = self.directives(plan)
        n = next(self._n)
        plan_host = self.work_host / f"probe{n}.txt"
        out_host = self.work_host / f"probe{n}.out"
        plan_host.write_text(text, encoding="utf-8")
        plan_win = f"{self.work_win}\\{plan_host.name}"
        self.prefix.run([self.exe, plan_win], out_host, overrides=self.overrides,
                        timeout=max(timeout, 60.0))
        wine_run = runner.parse_single_output(out_host.read_text(errors="replace"), plan_win)
        self.runs.append((text, wine_run))
        return self.translate(plan, wine_run)

    # -- loadplan JSON lines -> the probe protocol -------------------------------------------
    def translate(self, plan: ProbePlan, wine_run: runner.PlanRun) -> ProbeRun:
        events: list[dict[str, Any]] = [{"event": "start", "backend": "loadplan"}]
        notes: list[str] = []
        modules_ok: tuple[str, ...] = ()
        index = {"preload": 0, "load": 0}
        stopped = False
        setup_failed = False
        for step in wine_run.steps:
            if step.op == "env" and not step.ok:
                setup_failed = True
                notes.append(f"wine: setting PATH failed ({step.error})")
            elif step.op == "adddir":
                events.append({"event": "dll_directory", "path": step.arg, "ok": step.ok,
                               "winerror": 0 if step.ok else step.error})
            elif step.op in _LOAD_OPS:
                phase = step.op
                path = step.arg  # the target (flags are reported apart)
                outcome = runner.windows_outcome(step)
                code = outcome.error or 0
                if outcome.stubbed:
                    notes.append(f"wine bound stubs loading {ntpath.basename(path)}: "
                                 + ", ".join(f"{s.dll}!{s.symbol}" for s in outcome.stubs[:5])
                                 + f" -> {code} as on Windows")
                events.append({"event": "load", "phase": phase, "index": index[phase],
                               "path": path, "flags": step.flags if phase == "load" else 0,
                               "ok": code == 0, "winerror": code})
                index[phase] += 1
                if code == 0:
                    modules_ok = step.modules
                elif phase == "load" and plan.stop_at_first_failure:
                    stopped = True
                    break
        if wine_run.done or stopped:
            events.append({"event": "runtimes", "modules": self._runtimes(plan, modules_ok)})
            events.append({"event": "done"})
        if setup_failed:
            events.append({"event": "error", "message": "a setup step failed"})
        if wine_run.fatal:
            notes.append(f"loadplan: {wine_run.fatal}")
        lines = [EVENT_PREFIX + json.dumps(ev) for ev in events]
        run = parse_events(lines, plan, self.name, exit_code=wine_run.exit if wine_run.exit is not None
                           else (0 if wine_run.done else 1))
        return ProbeRun(run.backend, run.loads, run.directories, run.runtimes, run.complete,
                        run.exit_code, run.crashed_at, run.stderr, run.notes + tuple(notes))

    def _runtimes(self, plan: ProbePlan, modules: tuple[str, ...]) -> list[dict[str, Any]]:
        wanted = {r.lower(): r for r in plan.runtimes}
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for path in modules:
            base = ntpath.basename(path).lower()
            if base not in wanted or base in seen:
                continue
            seen.add(base)
            out.append({"name": wanted[base], "path": path,
                        "file_version": self._file_version(path)})
        return out

    def _file_version(self, path: str) -> str | None:
        if self.host_path is None:
            return None
        try:
            from torchdll._pe import read_facts

            host = self.host_path(path)
            if host is None:
                return None
            facts = read_facts(Path(host))
        except Exception:  # noqa: BLE001 - a version is a nicety, never a failure
            return None
        info = getattr(facts, "version", None)
        version = getattr(info, "file_version", None) if info is not None else None
        if not version:
            return None
        return ".".join(map(str, version)) if not isinstance(version, str) else version
