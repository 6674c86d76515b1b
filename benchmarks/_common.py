"""What the benchmarks share: the machine, timing, child processes, and the layouts measured.

* :func:`machine_info` -- the machine a result was measured on (CPU, cores, memory, OS, Python,
  torchdll commit, load average).
* :func:`interleave` -- run several timed tasks in rounds (A B C A B C ...), so that machine
  noise hits each figure and its peer alike; :func:`median`.
* :func:`run_child` -- a child process with its own wall time and peak RSS.
* :func:`measure_import` -- ``import torchdll`` over a bare interpreter (whole process and
  ``-X importtime``).
* :func:`build_layout` -- a mirrored Windows venv from the real torch win_amd64 wheel of any
  version (the shape of ``tests/support/torchlayout.py``, which is fixed to torch 2.3.1), with
  MKL when that torch requires it; :func:`diagnose_cold` / :func:`diagnose_warm` time
  ``diagnose()`` on it; :class:`ReadTracker` records the files it read.
* Peers: :func:`ensure_delvewheel` / :func:`delvewheel_show`, :func:`pefile_naive` (a full
  ``pefile.PE()`` parse per file, in a child), :func:`diagnose_child` (a cold diagnose in a
  fresh process: time and peak RSS).
* :func:`build_synthetic` -- a generated ``torch\\lib`` of N DLLs (torchdll.testing.WindowsEnv)
  for the scaling measurement.

Everything downloaded goes into the test wheel cache (``$TORCHDLL_TEST_CACHE`` or
``~/.cache/torchdll-tests``, see tests/support/wheelcache.py), by exact version, once.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

if TYPE_CHECKING:
    from torchdll.report import Report
    from torchdll.snapshot import Snapshot

WINE_X64 = Path("/usr/lib/x86_64-linux-gnu/wine/x86_64-windows")
MKL_VERSION = "2021.4.0"
MSVC_RUNTIME_VERSION = "14.44.35112"
DELVEWHEEL_VERSION = "1.13.2"

APP = "C:\\Python311"
VENV = "C:\\venv"
TORCH_LIB = VENV + "\\Lib\\site-packages\\torch\\lib"
LIBRARY_BIN = VENV + "\\Library\\bin"


class Unavailable(Exception):
    """A prerequisite of one measurement is missing (the runner reports it and goes on)."""


# ---------------------------------------------------------------------------------------------
# the machine
# ---------------------------------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def machine_info() -> Dict[str, Any]:
    """The machine and software a result was measured with."""
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor() or platform.machine())
    mem = re.search(r"MemTotal:\s+(\d+) kB", _read("/proc/meminfo"))
    try:  # read-only git queries: the commit, and whether tracked files differ from it
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=30).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    try:
        from torchdll import __version__ as tdv
    except Exception:  # noqa: BLE001
        tdv = "?"
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem.group(1)) / (1 << 20), 1) if mem else None,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "torchdll": tdv,
        "commit": commit + ("+changes" if commit and dirty else ""),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def machine_line(info: Dict[str, Any]) -> str:
    mem = f", {info['memory_gib']} GiB" if info.get("memory_gib") else ""
    return (f"{info['cpu']}, {info['cores']} cores{mem}; {info['os']}; {info['python']}; "
            f"torchdll {info['torchdll']} ({info['commit'] or 'no git'})")


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def interleave(tasks: Sequence[Tuple[str, Callable[[], float], int]]) -> Dict[str, List[float]]:
    """Run ``(name, fn, runs)`` tasks in rounds -- each round runs every task that still has
    runs left, in order -- and collect what each ``fn`` returns (its own elapsed seconds, so
    that set-up is not timed)."""
    out: Dict[str, List[float]] = {name: [] for name, _, _ in tasks}
    for r in range(max((n for _, _, n in tasks), default=0)):
        for name, fn, n in tasks:
            if r < n:
                out[name].append(fn())
    return out


def write_result(name: str, data: Dict[str, Any], dest: Optional[Path] = None) -> Path:
    path = dest or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


@dataclass
class ChildResult:
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    maxrss_mib: float
    cpu_s: float = float("nan")


#: Runs argv[2:] and writes its wall time and peak RSS to argv[1]. A process started straight
#: from the (large) benchmark process would report at least the parent's RSS as its
#: ``ru_maxrss`` (Linux keeps the high-water mark of the forked image across exec), so the
#: command is started from this small wrapper instead.
_WRAP = r"""
import json, resource, subprocess, sys, time
start = time.perf_counter()
rc = subprocess.run(sys.argv[2:]).returncode
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as fh:
    json.dump({"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
               "maxrss_kib": usage.ru_maxrss}, fh)
sys.exit(rc)
"""


def run_child(cmd: Sequence[str], *, env: Optional[Dict[str, str]] = None, timeout: float = 900,
              cwd: Optional[str] = None) -> ChildResult:
    """Run ``cmd``: its exit code, output, wall time and *its own* peak RSS."""
    with tempfile.TemporaryDirectory(prefix="bench-child-") as tmp:
        stats = os.path.join(tmp, "stats.json")
        out_path, err_path = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-S", "-c", _WRAP, stats, *cmd],
                                    stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                    cwd=cwd, start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)  # the wrapper and the command it started
                proc.wait()
                rc = -9
        try:
            with open(stats) as fh:
                st = json.load(fh)
        except (OSError, ValueError):
            st = {"wall_s": float("nan"), "maxrss_kib": 0, "cpu_s": float("nan")}
        with open(out_path, "rb") as fo, open(err_path, "rb") as fe:
            return ChildResult(rc, fo.read().decode("utf-8", "replace"),
                               fe.read().decode("utf-8", "replace"), st["wall_s"],
                               st["maxrss_kib"] / 1024, st["cpu_s"])


_PYCACHE: Optional[str] = None


def pycache_dir() -> str:
    """A bytecode cache for child interpreters, kept for this process's lifetime."""
    global _PYCACHE
    if _PYCACHE is None:
        _PYCACHE = tempfile.mkdtemp(prefix="torchdll-bench-pycache-")
        import atexit

        atexit.register(shutil.rmtree, _PYCACHE, True)
    return _PYCACHE


def compile_bytecode() -> None:
    """Compile torchdll into :func:`pycache_dir` once (an installed package has its .pyc)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "torchdll")],
                   env=clean_env(), check=False, capture_output=True)


def clean_env(**extra: str) -> Dict[str, str]:
    """The environment of a measured child: bytecode written and read (as for an installed
    package, whose ``.pyc`` files pip compiles; this machine may set
    ``PYTHONDONTWRITEBYTECODE``, which would recompile torchdll's sources in every child) in a
    cache outside the repository, the PE facts cache on."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE", "TORCHDLL_NO_CACHE")}
    env["PYTHONPYCACHEPREFIX"] = pycache_dir()
    env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------
# 1. import torchdll
# ---------------------------------------------------------------------------------------------


def _py(code: str, *flags: str) -> List[str]:
    # -S: no site, so no editable-install finder skews the figures; the repo goes on sys.path
    # as a plain install would put the package there.
    return [sys.executable, "-S", *flags, "-c",
            f"import sys; sys.path.insert(0, {str(REPO)!r}); {code}"]


def _time_process(code: str) -> float:
    start = time.perf_counter()
    subprocess.run(_py(code), check=True, env=clean_env())
    return time.perf_counter() - start


def _importtime() -> Dict[str, int]:
    proc = subprocess.run(_py("import torchdll", "-X", "importtime"), capture_output=True,
                          text=True, check=True, env=clean_env())
    out: Dict[str, int] = {}
    for line in proc.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2].startswith("torchdll"):
            out[parts[2]] = int(parts[1])  # cumulative microseconds
    return out


def measure_import(runs: int, importtime_runs: int = 5) -> Dict[str, Any]:
    """``python -S -c pass`` and ``python -S -c "import torchdll"`` alternately ``runs`` times,
    and ``-X importtime`` ``importtime_runs`` times (median of the cumulative time of the
    ``torchdll`` package)."""
    compile_bytecode()
    _time_process("import torchdll")  # warm the page cache
    times = interleave([("bare", lambda: _time_process("pass"), runs),
                        ("torchdll", lambda: _time_process("import torchdll"), runs)])
    bare, ours = median(times["bare"]) * 1000, median(times["torchdll"]) * 1000
    samples = [_importtime() for _ in range(importtime_runs)]
    top = sorted(s.get("torchdll", 0) for s in samples)
    mid = samples[[s.get("torchdll", 0) for s in samples].index(top[len(top) // 2])]
    loaded = json.loads(subprocess.run(
        _py("import json, torchdll; print(json.dumps(sorted(m for m in sys.modules "
            "if m.startswith(('pefile', 'ctypes', 'torchdll')))))"),
        capture_output=True, text=True, check=True, env=clean_env()).stdout)
    return {
        "runs": runs,
        "bare_interpreter_ms_median": round(bare, 2),
        "import_torchdll_ms_median": round(ours, 2),
        "import_cost_ms": round(ours - bare, 2),
        "ratio": round(ours / bare, 3),
        "importtime_runs": importtime_runs,
        "importtime_torchdll_us_median": top[len(top) // 2] if top else None,
        "importtime_cumulative_us": mid,
        "modules_after_import": loaded,
        "goal_ms": 10.0,
        "goal_met": (ours - bare) < 10.0,
    }


# ---------------------------------------------------------------------------------------------
# 3. real torch layouts
# ---------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    from tests.support.wheelcache import cache_dir as _cache_dir

    return _cache_dir()


def scratch_dir() -> Path:
    """A folder for layouts and throw-away PE caches, on the cache's file system (so the
    layouts are hard links, not copies, of the extracted wheels)."""
    return Path(tempfile.mkdtemp(prefix="bench-", dir=cache_dir()))


def get_wheel(name: str, version: str) -> Path:
    from tests.support.wheelcache import WheelUnavailable, wheel

    try:
        return wheel(name, version)
    except WheelUnavailable as exc:
        raise Unavailable(f"cannot download {name}=={version}: {exc}") from exc


def newest_torch_win(python: str = "3.11") -> str:
    """The newest torch version with a cp311 win_amd64 wheel on the index (``pip index``)."""
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull)
    env.pop("PIP_CONSTRAINT", None)
    env.pop("PIP_FIND_LINKS", None)
    proc = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "torch", "--platform",
                           "win_amd64", "--python-version", python, "--only-binary=:all:"],
                          env=env, capture_output=True, text=True, timeout=300)
    m = re.search(r"^torch \(([^)]+)\)", proc.stdout, re.M)
    if proc.returncode != 0 or not m:
        raise Unavailable(f"pip index versions torch failed: {proc.stderr.strip()[-300:]}")
    return m.group(1)


@dataclass
class Layout:
    """A mirrored venv (``root/C/...``) with the real torch ``version``."""

    version: str
    root: Path
    wheel: Path
    torch_lib: Path  # host folder of torch\lib
    with_mkl: bool
    snapshot: "Snapshot"
    extra: Dict[str, Any] = field(default_factory=dict)


def build_layout(root: Path, version: str, *, with_mkl: Optional[bool] = None) -> Layout:
    """The torch ``version`` win_amd64 wheel unpacked into a mirrored venv under ``root``, built by
    the test suite's ``tests/support/torchlayout.py`` (Wine's x64 DLLs with the msvc-runtime
    wheel's VC++ DLLs as System32, a ``python311.dll`` stand-in, and -- when that torch requires
    it (``with_mkl=None``) -- the mkl wheel's ``Library\\bin``)."""
    import pytest

    from tests.support.torchlayout import build_torch_layout
    from tests.support.torchlayout import layout_snapshot as snapshot_of

    if not WINE_X64.is_dir():
        raise Unavailable(f"Wine's x64 PE DLLs are missing ({WINE_X64}; apt-get install wine64)")
    try:
        lay = build_torch_layout(root, with_mkl=with_mkl, version=version)
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:  # the helper's "unavailable"
        raise Unavailable(str(exc)) from exc
    lib = root / "C" / "venv" / "Lib" / "site-packages" / "torch" / "lib"
    return Layout(version, root, get_wheel("torch", version), lib, lay.with_mkl, snapshot_of(lay))


class ReadTracker:
    """Records the files torchdll reads PE facts from while active (wraps ``_pe.read_facts``)."""

    def __init__(self) -> None:
        self.paths: Dict[str, None] = {}

    def __enter__(self) -> "ReadTracker":
        from torchdll import _pe

        self._orig = _pe.read_facts
        orig = self._orig

        def tracked(path: Any, **kw: Any) -> Any:
            self.paths[os.fspath(path)] = None
            return orig(path, **kw)

        _pe.read_facts = tracked  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        from torchdll import _pe

        _pe.read_facts = self._orig  # type: ignore[assignment]


def _check(report: "Report") -> str:
    """The outcome of the first prediction (``ok`` on a healthy layout)."""
    if not report.predictions:
        return "no prediction"
    p = report.predictions[0]
    return "ok" if p.ok else f"{p.outcome} {p.winerror} {p.dll} ({p.culprit})"


def diagnose_timed(root: Path, snap: "Snapshot", cache: Path,
                   cpu: Optional[List[float]] = None) -> Tuple[float, "Report"]:
    """One ``diagnose()`` with a new file view (as a new process would have) and the PE facts
    cache in ``cache`` (empty: cold; filled: warm): wall seconds (and CPU seconds appended to
    ``cpu``)."""
    from torchdll.diagnosis import diagnose
    from torchdll.fsview import MirrorView

    os.environ.pop("TORCHDLL_NO_CACHE", None)
    os.environ["TORCHDLL_CACHE_DIR"] = str(cache)
    cpu0 = time.process_time()
    start = time.perf_counter()
    report = diagnose(snap, view=MirrorView(root))
    wall = time.perf_counter() - start
    if cpu is not None:
        cpu.append(time.process_time() - cpu0)
    return wall, report


class DiagnoseRunner:
    """Cold and warm ``diagnose()`` on one tree, as zero-argument timed callables."""

    def __init__(self, root: Path, snap: "Snapshot", scratch: Path) -> None:
        self.root, self.snap, self.scratch = root, snap, scratch
        self.warm_cache = Path(tempfile.mkdtemp(prefix="warm-", dir=scratch))
        self.outcomes: Dict[str, int] = {}
        self.findings = 0
        self.cpu: Dict[str, List[float]] = {"cold": [], "warm": []}
        with ReadTracker() as tracker:
            self.fill_s, report = diagnose_timed(root, snap, self.warm_cache)
        self.files = list(tracker.paths)
        self._note(report)

    def _note(self, report: "Report") -> None:
        key = _check(report)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        self.findings = len(report.findings)

    def cold(self) -> float:
        cache = Path(tempfile.mkdtemp(prefix="cold-", dir=self.scratch))
        try:
            dt, report = diagnose_timed(self.root, self.snap, cache, self.cpu["cold"])
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        self._note(report)
        return dt

    def warm(self) -> float:
        dt, report = diagnose_timed(self.root, self.snap, self.warm_cache, self.cpu["warm"])
        self._note(report)
        return dt


def closure_stats(files: Sequence[str]) -> Dict[str, Any]:
    """Size of what diagnose read: files, MiB, imported modules and symbols (each symbol is
    looked up in its exporter, after forwarders)."""
    from torchdll._pe import read_facts

    mib = modules = symbols = exports = 0
    for f in files:
        facts = read_facts(f)
        mib += os.path.getsize(f)
        modules += len(facts.imports)
        symbols += sum(len(i.names) + len(i.ordinals) for i in facts.imports)
        exports += len(facts.exports)
    return {"files": len(files), "mib": round(mib / (1 << 20), 1), "import_edges": modules,
            "imported_symbols": symbols, "exports": exports}


#: Where diagnose() spends its time: label -> (file suffix, function) whose cumulative time is
#: reported (phases overlap: symbol checks and export names are part of the loader replay).
PHASES = {
    "diagnose() total": ("torchdll/diagnosis.py", "diagnose"),
    "find_installs": ("torchdll/installs.py", "find_installs"),
    "loader replay (replay_torch)": ("torchdll/torchload.py", "replay_torch"),
    "  resolve() (search order)": ("torchdll/resolver.py", "resolve"),
    "  symbol checks (LoadSimulator._check_symbols)": ("torchdll/closure.py", "_check_symbols"),
    "    export-name lookups (_pe._LazyNames._load, builds each table once)":
        ("torchdll/_pe.py", "_load"),
    "PE facts read (_pe.read_facts)": ("torchdll/_pe.py", "read_facts"),
    "  parsed (_pe.parse_file)": ("torchdll/_pe.py", "parse_file"),
    "  from the cache (_pecache.load)": ("torchdll/_pecache.py", "load"),
    "  written to the cache (_pecache.store)": ("torchdll/_pecache.py", "store"),
    "checks (run_checks)": ("torchdll/checks/__init__.py", "run_checks"),
}


def profile_run(fn: Callable[[], Any], top: int = 10) -> Dict[str, Any]:
    """Run ``fn`` under cProfile: cumulative seconds per :data:`PHASES` entry, per check
    function, and the ``top`` functions by own time (cProfile inflates call-heavy code, so
    compare shares, not absolute figures, with the unprofiled timings)."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    try:
        fn()
    finally:
        prof.disable()
    stats: Dict[Any, Any] = pstats.Stats(prof).stats  # type: ignore[attr-defined]

    def where(key: Tuple[str, int, str]) -> str:
        file, line, name = key
        try:
            file = str(Path(file).resolve().relative_to(REPO))
        except ValueError:
            file = os.path.basename(file)
        return f"{file}:{line}({name})"

    phases: Dict[str, float] = {}
    for label, (suffix, name) in PHASES.items():
        phases[label] = round(max((v[3] for k, v in stats.items()
                                   if k[0].endswith(suffix) and k[2] == name), default=0.0), 4)
    checks = {where(k): round(v[3], 4) for k, v in stats.items()
              if "torchdll/checks/" in k[0]
              and any(c[2] == "run_checks" for c in v[4])}
    mine = str(Path(__file__).resolve().parent)
    by_own = sorted(((k, v) for k, v in stats.items() if not k[0].startswith(mine)),
                    key=lambda kv: -kv[1][2])[:top]
    return {
        "profiled_total_s": round(sum(v[2] for v in stats.values()), 4),
        "phases_cumulative_s": phases,
        "checks_cumulative_s": dict(sorted(checks.items(), key=lambda kv: -kv[1])),
        "top_own_time": [{"function": where(k), "calls": v[1], "own_s": round(v[2], 4),
                          "cumulative_s": round(v[3], 4)} for k, v in by_own],
    }


# ---------------------------------------------------------------------------------------------
# peers
# ---------------------------------------------------------------------------------------------


def ensure_delvewheel(install: bool = True) -> List[str]:
    """The command that runs delvewheel (installed with pip at an exact version if missing)."""
    import importlib.util

    if importlib.util.find_spec("delvewheel") is None:
        if not install:
            raise Unavailable("delvewheel is not installed (pip install delvewheel)")
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                               f"delvewheel=={DELVEWHEEL_VERSION}"],
                              capture_output=True, text=True, timeout=600)
        importlib.invalidate_caches()
        if proc.returncode != 0 or importlib.util.find_spec("delvewheel") is None:
            raise Unavailable(f"pip install delvewheel=={DELVEWHEEL_VERSION} failed: "
                              f"{proc.stderr.strip()[-300:]}")
    return [sys.executable, "-m", "delvewheel"]


def delvewheel_version(cmd: Sequence[str]) -> str:
    try:
        from importlib.metadata import version

        return version("delvewheel")
    except Exception:  # noqa: BLE001
        return "?"


class DelvewheelRunner:
    """``delvewheel show --add-path <torch\\lib> <wheel>`` as a timed callable."""

    def __init__(self, cmd: Sequence[str], wheel: Path, add_path: Path) -> None:
        self.argv = [*cmd, "show", "--add-path", str(add_path), str(wheel)]
        self.rss: List[float] = []
        self.cpu: List[float] = []
        self.last: Optional[ChildResult] = None

    def __call__(self) -> float:
        res = run_child(self.argv, timeout=900, env=clean_env())
        if res.returncode != 0 or "torch_cpu.dll" not in res.stdout + res.stderr:
            raise RuntimeError(f"delvewheel show failed ({res.returncode}): {res.stderr[-300:]}")
        self.last = res
        self.rss.append(res.maxrss_mib)
        self.cpu.append(res.cpu_s)
        # delvewheel unpacks the whole wheel into a temporary folder: flush those writes now,
        # untimed, so that they do not slow down the next measurement
        os.sync()
        return res.wall_s


_PEFILE_CHILD = r"""
import json, resource, sys, time
import pefile
files = []
start = time.perf_counter()
for path in sys.argv[1:]:
    t = time.perf_counter()
    pe = pefile.PE(path)
    dt = time.perf_counter() - t
    exp = len(pe.DIRECTORY_ENTRY_EXPORT.symbols) if hasattr(pe, "DIRECTORY_ENTRY_EXPORT") else 0
    imp = sum(len(d.imports) for d in getattr(pe, "DIRECTORY_ENTRY_IMPORT", []))
    pe.close()
    del pe
    files.append([path, round(dt, 4), exp, imp])
print(json.dumps({"seconds": time.perf_counter() - start, "files": files,
                  "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def pefile_naive(paths: Sequence[str], timeout: float = 900) -> Dict[str, Any]:
    """``pefile.PE(path)`` (a full parse, pefile's default caps) of each file, once, in a
    child process: total seconds, per-file seconds, the child's peak RSS."""
    if not paths:
        return {"seconds": 0.0, "files": [], "maxrss_mib": 0.0}
    res = run_child([sys.executable, "-c", _PEFILE_CHILD, *paths], timeout=timeout, env=clean_env())
    if res.returncode != 0:
        raise RuntimeError(f"pefile child failed ({res.returncode}): {res.stderr[-300:]}")
    out: Dict[str, Any] = json.loads(res.stdout)
    return out


_DIAGNOSE_CHILD = r"""
import json, os, resource, sys, time
start = time.perf_counter()
sys.path.insert(0, sys.argv[3])
from torchdll.diagnosis import diagnose
from torchdll.fsview import MirrorView
from torchdll.snapshot import Snapshot

def status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0

snap = Snapshot.load(sys.argv[1])
rss_before = status("VmRSS")
t0 = time.perf_counter()
report = diagnose(snap, view=MirrorView(sys.argv[2]))
t1 = time.perf_counter()
p = report.predictions[0] if report.predictions else None
print(json.dumps({
    "imports_s": t0 - start, "diagnose_s": t1 - t0,
    "rss_before_mib": rss_before, "rss_after_mib": status("VmRSS"), "vmhwm_mib": status("VmHWM"),
    "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "ok": bool(p is not None and p.ok), "findings": len(report.findings)}))
"""


def diagnose_child(layout: Layout, scratch: Path) -> Dict[str, Any]:
    """A cold ``diagnose()`` (empty PE facts cache) in a fresh process: its time and peak RSS
    (``ru_maxrss`` of the child, and ``VmHWM`` from /proc)."""
    snap_file = scratch / f"snapshot-{layout.version}.json"
    layout.snapshot.save(snap_file)
    compile_bytecode()
    cache = Path(tempfile.mkdtemp(prefix="rss-", dir=scratch))
    try:
        res = run_child([sys.executable, "-c", _DIAGNOSE_CHILD, str(snap_file), str(layout.root),
                         str(REPO)], env=clean_env(TORCHDLL_CACHE_DIR=str(cache)), timeout=600)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if res.returncode != 0:
        raise RuntimeError(f"diagnose child failed ({res.returncode}): {res.stderr[-500:]}")
    out: Dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    out["wall_s"] = res.wall_s
    out["child_maxrss_mib"] = res.maxrss_mib
    return out


# ---------------------------------------------------------------------------------------------
# 5. synthetic layouts
# ---------------------------------------------------------------------------------------------

#: shape of a generated DLL: exports, and imports from up to three other generated DLLs
GEN_EXPORTS = 500
GEN_NAMES_PER_IMPORT = 40


def _gen_exports(i: int) -> List[str]:
    return [f"?fn{j}@gen{i}@@YAXPEAX_K@Z" for j in range(GEN_EXPORTS)]


def build_synthetic(root: Path, n_dlls: int) -> Tuple["Snapshot", Dict[str, Any]]:
    """A healthy simulated machine whose ``torch\\lib`` holds ``n_dlls`` DLLs: the nine of a
    torch 2.9 CPU wheel (torchdll.testing) plus generated ``genNNNN.dll`` forming a tree --
    DLL *i* imports 40 names each from its parent ``(i-1)//2``, its predecessor ``i-1`` and
    ``(i-1)//3`` -- each exporting 500 mangled names and importing the usual
    KERNEL32/VC++/UCRT symbols. ``torch_cpu.dll`` imports from ``gen0000.dll``, so every
    generated DLL is in the closure of the replayed loads."""
    from torchdll.testing import CRT, KERNEL32, MSVCP, VCRT, TorchDll, WindowsEnv, torch_dlls

    env = WindowsEnv(root)
    env.add_system()
    standard = list(torch_dlls("2.9.0", python_dll=env.python_dll))
    n_gen = max(1, n_dlls - len(standard))
    gen: List[TorchDll] = []
    for i in range(n_gen):
        imports: Dict[str, Tuple[Any, ...]] = {
            "KERNEL32.dll": KERNEL32, "MSVCP140.dll": MSVCP, "VCRUNTIME140.dll": VCRT, **CRT}
        for j in sorted({(i - 1) // 2, i - 1, (i - 1) // 3}) if i else ():
            names = _gen_exports(j)
            start = (i * 7) % (GEN_EXPORTS - GEN_NAMES_PER_IMPORT)
            imports[f"gen{j:04d}.dll"] = tuple(names[start:start + GEN_NAMES_PER_IMPORT])
        gen.append(TorchDll(f"gen{i:04d}.dll", imports, tuple(_gen_exports(i))))
    first = _gen_exports(0)[:GEN_NAMES_PER_IMPORT]
    dlls = [TorchDll(d.name, {**d.imports, "gen0000.dll": tuple(first)}, d.exports, d.linker)
            if d.name == "torch_cpu.dll" else d for d in standard]
    env.add_torch("2.9.0", dlls=[*dlls, *gen])
    info = {"torch_lib_dlls": len(dlls) + len(gen), "generated": n_gen,
            "exports_per_generated": GEN_EXPORTS,
            "imports_per_generated": f"up to 3 x {GEN_NAMES_PER_IMPORT} + "
                                     f"{len(KERNEL32) + len(MSVCP) + len(VCRT) + 4} system"}
    return env.snapshot(), info
