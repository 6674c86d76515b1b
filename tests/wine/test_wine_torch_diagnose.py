"""``diagnose()``'s prediction of ``import torch`` against Wine running torch's own sequence.

For the torch 2.3.1 layout (``tests/support/torchlayout.py``, with and without mkl) the model's
prediction -- ``diagnose(layout_snapshot(layout), view=layout.view)``: outcome, WinError and
the DLL torch names in its message -- must equal what Wine's loader does when ``loadplan.exe``
performs the sequence of torch 2.3.1's ``_load_dll_libraries``:

1. ``os.add_dll_directory`` for each of ``dll_paths`` (torch's own list: taken from the replay,
   ``diagnose_context(...).replays[0].dll_paths``);
2. the VC++ runtime probe: ``vcruntime140.dll``, ``msvcp140.dll``, ``vcruntime140_1.dll`` with
   ``LoadLibraryExW(name, NULL, 0x1000)`` (a failure only prints a warning and ends the probe);
3. ``LoadLibraryExW(dll, NULL, 0x1100)`` for ``torch\\lib\\*.dll`` in glob order; after a 126,
   ``PATH = dll_paths + PATH`` (once) and ``LoadLibraryW(dll)``; the first failure ends it.

``loadplan`` has no branches, so the sequence is driven from here: a plan is run, and when a
0x1100 load fails with 126 the plan is extended with the PATH change and the ``loadw`` retry
and run again from a fresh process (every run starts from a pristine process).

One expected exception, as in ``test_wine_torch.py``: ``torch_python.dll`` binds every import
and then its initialisers crash calling the ``python311.dll`` stand-in (998); it counts as
loaded. ``import torch._C`` (the ``.pyd``) is not replayed in Wine for the same reason.
"""

from __future__ import annotations

import ntpath
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tests.support.torchlayout import build_torch_layout, layout_snapshot
from torchdll.diagnosis import diagnose, diagnose_context
from torchdll.report import Prediction

from . import runner
from .test_wine_torch import INIT_CRASH, _lower_windows_folder

pytestmark = [pytest.mark.wine, pytest.mark.wheels]

VC_PROBE = ("vcruntime140.dll", "msvcp140.dll", "vcruntime140_1.dll")
FLAGS_CTYPES = 0x1000
FLAGS_PRELOAD = 0x1100
_STEP = re.compile(r"^(vc_probe|preload|fallback) (\S+) 0x[0-9a-f]+: (ok|WinError (\d+))$")


@dataclass(frozen=True)
class Call:
    action: str  # vc_probe | preload | fallback
    target: str
    error: int | None  # None: loaded


@dataclass
class Observed:
    prediction: Prediction
    dll_paths: tuple[str, ...]
    calls: list[Call]
    runs: int
    outcome: tuple[str, int | None, str | None]  # what torch would report under Wine


def _torch_under_wine(run_plan: Callable[[str], runner.PlanRun], *, path: str, cwd: str,
                      preload: list[str], dll_paths: tuple[str, ...], dlls: list[str]
                      ) -> tuple[list[Call], int]:
    """Drive torch's sequence (module docstring); return the calls as torch saw them."""
    fallback: set[int] = set()
    runs = 0
    while True:
        lines = [f"env PATH={path}", f"cwd {cwd}"]
        lines += [f"adddir {d}" for d in dll_paths]
        lines += [f"preload {p}" for p in preload]
        lines += [f"load 0x{FLAGS_CTYPES:x} {n}" for n in VC_PROBE]
        patched = False
        for i, dll in enumerate(dlls):
            lines.append(f"load 0x{FLAGS_PRELOAD:x} {dll}")
            if i in fallback:
                if not patched:
                    lines.append("env PATH=" + ";".join((*dll_paths, path)))
                    patched = True
                lines.append(f"loadw {dll}")
        run = run_plan("\n".join(lines) + "\n")
        runs += 1
        assert run.done, f"loadplan did not finish: {run}"
        setup = [s for s in run.steps if s.op in ("env", "cwd", "adddir", "preload")]
        assert all(s.ok for s in setup), [(s.op, s.arg, s.error) for s in setup if not s.ok]
        loads = [s for s in run.steps if s.op in ("load", "loadw")]
        calls: list[Call] = []
        vc, rest = loads[:len(VC_PROBE)], loads[len(VC_PROBE):]
        for step in vc:
            err = runner.windows_outcome(step).error
            calls.append(Call("vc_probe", step.arg, err))
            if err is not None:
                break  # torch's try block ends at the first failure (a warning only)
        extend = False
        i = 0
        for step in rest:
            out = runner.windows_outcome(step)
            if step.op == "load":
                dll = dlls[i]
                i += 1
                err = out.error
                if ntpath.basename(dll).lower() == INIT_CRASH and err == 998:
                    noise = [d for d in step.debug if "not found" in d or "No implementation" in d]
                    assert not noise, noise  # every import bound: the stand-in's artefact only
                    err = None
                calls.append(Call("preload", dll, err))
                if err is None:
                    continue
                if err != 126:
                    return calls, runs
                if (i - 1) not in fallback:
                    fallback.add(i - 1)
                    extend = True
                    break
            else:  # loadw: the retry after PATH = dll_paths + PATH
                calls.append(Call("fallback", step.arg, out.error))
                if out.error is not None:
                    return calls, runs
        if not extend:
            return calls, runs


def _observe(prefix: runner.WinePrefix, exe: Path, work: Path, with_mkl: bool) -> Observed:
    layout = build_torch_layout(work / "tree", with_mkl=with_mkl)
    snap = layout_snapshot(layout)
    report = diagnose(snap, view=layout.view)
    (prediction,) = [p for p in report.predictions if p.target == "torch"]
    dll_paths = diagnose_context(snap, layout.view).replays[0].dll_paths

    c_drive = layout.root / "C"
    _lower_windows_folder(c_drive)
    app = layout.context.app_dir
    shutil.copyfile(exe, c_drive.joinpath(*app[3:].split("\\"), "loadplan.exe"))
    plans = c_drive / "torchdll-diagnose"
    plans.mkdir()
    lp = runner.light_prefix(prefix, work / "prefix", c_drive)
    counter = iter(range(1, 1000))

    def run_plan(text: str) -> runner.PlanRun:
        n = next(counter)
        (plans / f"plan{n}.txt").write_text(text, encoding="utf-8")
        out = plans / f"plan{n}.out"
        lp.run([app + "\\loadplan.exe", f"C:\\torchdll-diagnose\\plan{n}.txt"], out,
               overrides=runner.MSVC_NATIVE, timeout=600)
        return runner.parse_single_output(out.read_text(errors="replace"), f"plan{n}")

    try:
        calls, runs = _torch_under_wine(
            run_plan, path=snap.process_path, cwd=snap.cwd,
            preload=list(layout.context.loaded.values()), dll_paths=tuple(dll_paths),
            dlls=[c.target for c in layout.preload])
    finally:
        lp.shutdown()
    failing = next((c for c in calls if c.action != "vc_probe" and c.error is not None), None)
    outcome = ("ok", None, None) if failing is None else ("fails", failing.error, failing.target)
    return Observed(prediction, tuple(dll_paths), calls, runs, outcome)


_CACHE: dict[bool, Observed] = {}


@pytest.fixture(scope="module")
def observed(wine_prefix: runner.WinePrefix, loadplan_exe: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[bool], Observed]]:
    def get(with_mkl: bool) -> Observed:
        if with_mkl not in _CACHE:
            work = tmp_path_factory.mktemp("diag-mkl" if with_mkl else "diag-nomkl")
            _CACHE[with_mkl] = _observe(wine_prefix, loadplan_exe, work, with_mkl)
        return _CACHE[with_mkl]

    yield get
    _CACHE.clear()


def _predicted(p: Prediction) -> tuple[str, int | None, str | None]:
    return (p.outcome, p.winerror, p.dll)


@pytest.mark.parametrize("with_mkl", [True, False], ids=["with-mkl", "without-mkl"])
def test_diagnose_prediction_equals_wine(observed: Callable[[bool], Observed],
                                         with_mkl: bool) -> None:
    obs = observed(with_mkl)
    predicted = _predicted(obs.prediction)
    got = obs.outcome
    assert (predicted[0], predicted[1]) == (got[0], got[1]), (predicted, got, obs.calls)
    assert (predicted[2] or "").lower() == (got[2] or "").lower(), (predicted, got)
    assert all(c.error is None for c in obs.calls if c.action == "vc_probe"), obs.calls
    if with_mkl:
        assert got == ("ok", None, None)
        assert len([c for c in obs.calls if c.action == "preload"]) == 11
        assert obs.runs == 1
        assert len(obs.dll_paths) == 2  # torch\lib and Library\bin
    else:
        assert got[:2] == ("fails", 126) and ntpath.basename(got[2] or "") == "shm.dll"
        # torch's fallback ran: 0x1100 gave 126, then PATH = dll_paths + PATH, LoadLibraryW: 126
        shm = [c for c in obs.calls if ntpath.basename(c.target) == "shm.dll"]
        assert [(c.action, c.error) for c in shm] == [("preload", 126), ("fallback", 126)]
        assert obs.runs == 2
        assert "WinError 126" in (obs.prediction.message or "")
        assert "shm.dll" in (obs.prediction.message or "")


@pytest.mark.parametrize("with_mkl", [True, False], ids=["with-mkl", "without-mkl"])
def test_diagnose_steps_equal_wine_call_by_call(observed: Callable[[bool], Observed],
                                                with_mkl: bool) -> None:
    """Every load torch makes, in order, with its outcome: the replay's steps vs Wine."""
    obs = observed(with_mkl)
    replayed = []
    for text in obs.prediction.steps:  # "preload shm.dll 0x1100: WinError 126"
        m = _STEP.match(text)
        if m:
            replayed.append((m.group(1), m.group(2).lower(),
                             int(m.group(4)) if m.group(4) else None))
    wine = [(c.action, ntpath.basename(c.target).lower(), c.error) for c in obs.calls]
    assert len(replayed) >= len(VC_PROBE) + 1 and replayed == wine
