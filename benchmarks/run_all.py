"""Run every benchmark and print ONE table: each torchdll figure next to its peer measured in the
same run, on the same files, with the ratio; the machine it ran on. Written as JSON too.

    python benchmarks/run_all.py [--quick] [--only SECTION ...] [--update-docs]
    python -m benchmarks ...                       # the same

Sections (docs/benchmarks.md says what each measures and why):

``import``   ``import torchdll`` over a bare interpreter (whole process, ``-X importtime``)
``guard``    ``safe_import_torch()`` happy path vs bare ``import torch`` (benchmarks/bench_guard.py)
``layouts``  ``diagnose()`` on real torch layouts (2.3.1 and the newest win_amd64 torch), cold and
             warm, vs ``delvewheel show`` and a naive full ``pefile.PE()`` parse of each file
``memory``   peak RSS of a cold diagnose, in a fresh process, on the newest torch layout
``scaling``  diagnose time vs DLLs in the closure (synthetic 10 / 100 / 1000 DLLs)

Figures are medians of repeated runs; peers run interleaved with torchdll (A B A B ...), so
machine noise hits both alike. What is downloaded (wheels, delvewheel) is fetched once by exact
version into the test wheel cache; a peer that cannot be had is reported "not available" with
the reason. Goals missed are reported, not failures: the exit status is 0 when the run
completed (2 on bad arguments).

Writes ``benchmarks/results/all.json`` (``--quick``: ``all-quick.json``); ``--update-docs``
also puts the table into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _common as C  # noqa: E402

#: torch 2.3.1 is the project's reference layout (tests, docs); the newest torch with a cp311
#: win_amd64 wheel when this was written -- ``--newest-torch latest`` asks the index again.
TORCH_OLD = "2.3.1"
TORCH_NEWEST = "2.15.0"
GUARD_TORCH = "2.13.0"
SECTIONS = ("import", "guard", "layouts", "memory", "scaling", "linux")
DOCS = C.REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- benchmarks:table:begin -->", "<!-- benchmarks:table:end -->"


@dataclass
class Config:
    quick: bool
    import_runs: int
    importtime_runs: int
    guard_runs: int
    diagnose_runs: int
    delvewheel_runs: int
    naive_pefile: bool
    profile: bool
    memory_runs: int
    scaling_sizes: tuple
    scaling_runs: int


def config(quick: bool) -> Config:
    if quick:
        return Config(True, 10, 3, 3, 3, 1, False, False, 1, (10, 100, 1000), 3)
    return Config(False, 30, 5, 20, 15, 3, True, True, 3, (10, 100, 1000), 9)


@dataclass
class Row:
    section: str
    what: str
    torchdll: str
    peer: str = ""
    ratio: str = ""
    goal: str = ""
    status: str = "info"  # met | MISSED | info | n/a


def _ms(s: float) -> str:
    if math.isnan(s):
        return "?"
    return f"{s * 1000:.1f} ms" if s < 10 else f"{s:.1f} s"


def _s(s: float) -> str:
    return f"{s:.2f} s" if s < 100 else f"{s:.0f} s"


def _x(peer: float, ours: float) -> str:
    return f"{peer / ours:.1f}x faster" if ours > 0 else "?"


def _status(ok: bool) -> str:
    return "met" if ok else "MISSED"


# ---------------------------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------------------------


def section_import(cfg: Config, state: Dict[str, Any]) -> Dict[str, Any]:
    res = C.measure_import(cfg.import_runs, cfg.importtime_runs)
    cost = res["import_cost_ms"]
    state["rows"] += [
        Row("1 import", "import torchdll, whole process",
            f"{cost:+.1f} ms ({res['import_torchdll_ms_median']:.1f} ms)",
            f"bare interpreter {res['bare_interpreter_ms_median']:.1f} ms",
            f"{res['ratio']:.2f}x", "< 10 ms", _status(cost < 10)),
        Row("1 import", "import torchdll, -X importtime",
            f"{res['importtime_torchdll_us_median'] / 1000:.1f} ms",
            f"loads {', '.join(res['modules_after_import'])}", "", "< 10 ms",
            _status(res["importtime_torchdll_us_median"] / 1000 < 10)),
    ]
    return res


def _guard_unavailable(state: Dict[str, Any], reason: str) -> Dict[str, Any]:
    state["rows"].append(Row("2 guard", "safe_import_torch() vs import torch", "not available",
                             reason, "", "< 2 % overhead", "n/a"))
    return {"available": False, "reason": reason}


def _torch_version() -> Optional[str]:
    try:
        from importlib.metadata import version

        return version("torch")
    except Exception:  # noqa: BLE001
        return None


def _local_torch_wheel(version: str) -> Optional[Path]:
    """A local ``torch==version`` wheel in pip's find-links folders (fast to install)."""
    for folder in os.environ.get("PIP_FIND_LINKS", "").split():
        for whl in Path(folder.replace("file://", "")).glob(f"torch-{version}*.whl"):
            return whl
    return None


def section_guard(cfg: Config, state: Dict[str, Any]) -> Dict[str, Any]:
    bench = Path(__file__).with_name("bench_guard.py")
    if not bench.is_file():
        return _guard_unavailable(state, "benchmarks/bench_guard.py is not there (yet)")
    try:
        import importlib.util

        if importlib.util.find_spec("torchdll.guard") is None:
            return _guard_unavailable(state, "torchdll.guard is not there (yet)")
    except Exception as exc:  # noqa: BLE001
        return _guard_unavailable(state, f"torchdll.guard does not import: {exc}")
    installed = _torch_version()
    if installed is None:
        local = _local_torch_wheel(GUARD_TORCH)
        if local is None and not state["args"].install_torch:
            return _guard_unavailable(
                state, f"torch is not installed: pip install torch=={GUARD_TORCH} (from PyPI it "
                       "brings several GB of CUDA libraries; --install-torch does it)")
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                               f"torch=={GUARD_TORCH}"], capture_output=True, text=True,
                              timeout=1800)
        if proc.returncode != 0:
            return _guard_unavailable(state, f"pip install torch=={GUARD_TORCH} failed: "
                                             f"{proc.stderr.strip()[-200:]}")
        installed = _torch_version()
    out = C.RESULTS / "guard.json"
    start = time.time()
    proc = subprocess.run([sys.executable, str(bench), "--runs", str(cfg.guard_runs)],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0 or not out.is_file() or out.stat().st_mtime < start:
        return _guard_unavailable(state, f"bench_guard.py failed ({proc.returncode}): "
                                         f"{(proc.stderr or proc.stdout).strip()[-300:]}")
    res: Dict[str, Any] = json.loads(out.read_text())
    pct = res.get("overhead_percent")
    bare = res.get("bare_import_torch_ms_median")
    guarded = res.get("guarded_import_torch_ms_median")
    note = (f"import torch {bare:.0f} ms, sd {res.get('bare_ms_stdev', 0):.0f} ms "
            f"(torch {res.get('torch', installed)})")
    state["rows"].append(Row(
        "2 guard", f"safe_import_torch() happy path (n={res.get('runs')})",
        f"{guarded:.0f} ms, sd {res.get('guarded_ms_stdev', 0):.0f} ms", note,
        f"{res.get('overhead_ms', 0):+.0f} ms = {pct:+.2f} %", "< 2 %",
        _status(pct is not None and pct < 2.0)))
    own = res.get("guard_own_cost_ms_median")
    if own is not None:
        own_pct = res.get("guard_own_cost_percent", 100.0 * own / bare)
        state["rows"].append(Row(
            "2 guard", "the guard alone (torch already imported)", f"{own:.2f} ms",
            f"import torch {bare:.0f} ms", f"{own_pct:.2f} %", "< 2 %", _status(own_pct < 2.0)))
    res["available"] = True
    res["stdout"] = proc.stdout.strip().splitlines()
    return res


def _layout(state: Dict[str, Any], version: str) -> C.Layout:
    cache = state.setdefault("layouts_built", {})
    if version not in cache:
        start = time.perf_counter()
        cache[version] = C.build_layout(state["scratch"] / f"torch-{version}", version)
        cache[version].extra["build_s"] = round(time.perf_counter() - start, 2)
    built: C.Layout = cache[version]
    return built


def _delvewheel(state: Dict[str, Any]) -> List[str]:
    if "delvewheel" not in state:
        try:
            state["delvewheel"] = C.ensure_delvewheel(install=not state["args"].no_install)
        except C.Unavailable as exc:
            state["delvewheel"] = exc
    if isinstance(state["delvewheel"], Exception):
        raise state["delvewheel"]
    cmd: List[str] = state["delvewheel"]
    return cmd


def measure_layout(cfg: Config, state: Dict[str, Any], version: str) -> Dict[str, Any]:
    sec = f"3 torch {version}"
    try:
        layout = _layout(state, version)
    except C.Unavailable as exc:
        state["rows"].append(Row(sec, "diagnose() on the real layout", "not available", str(exc),
                                 status="n/a"))
        return {"available": False, "reason": str(exc)}
    d = C.DiagnoseRunner(layout.root, layout.snapshot, state["scratch"])
    tasks: List[Any] = [("cold", d.cold, cfg.diagnose_runs), ("warm", d.warm, cfg.diagnose_runs)]
    dw_note = ""
    dw: Optional[C.DelvewheelRunner] = None
    try:
        dw = C.DelvewheelRunner(_delvewheel(state), layout.wheel, layout.torch_lib)
        tasks.append(("delvewheel", dw, cfg.delvewheel_runs))
    except C.Unavailable as exc:
        dw_note = f"delvewheel not available: {exc}"
    try:
        times = C.interleave(tasks)
    except RuntimeError as exc:  # delvewheel failed: measure torchdll alone
        dw_note, dw = f"delvewheel failed: {exc}", None
        times = C.interleave(tasks[:2])
    cold, warm = C.median(times["cold"]), C.median(times["warm"])
    closure = C.closure_stats(d.files)
    res: Dict[str, Any] = {
        "available": True, "torch": version, "wheel": layout.wheel.name,
        "with_mkl": layout.with_mkl, "layout_build_s": layout.extra.get("build_s"),
        "closure": closure, "outcomes": d.outcomes, "findings": d.findings,
        "first_run_fill_s": round(d.fill_s, 4),
        "cold_s": [round(t, 4) for t in times["cold"]], "cold_median_s": round(cold, 4),
        "warm_s": [round(t, 4) for t in times["warm"]], "warm_median_s": round(warm, 4),
        "cold_cpu_median_s": round(C.median(d.cpu["cold"]), 4),
        "warm_cpu_median_s": round(C.median(d.cpu["warm"]), 4),
    }
    what = (f"closure: {closure['files']} files, {closure['mib']:.0f} MiB, "
            f"{closure['imported_symbols']:,} symbols")
    ok_pred = list(d.outcomes) == ["ok"]
    state["rows"].append(Row(sec, what, f"prediction {', '.join(d.outcomes)}",
                             status="info" if ok_pred else "MISSED"))
    peer = ""
    dmed = float("nan")
    if dw is not None and times.get("delvewheel"):
        dmed = C.median(times["delvewheel"])
        dcpu = C.median(dw.cpu)
        res["delvewheel"] = {"version": C.delvewheel_version(dw.argv), "argv": dw.argv,
                             "s": [round(t, 3) for t in times["delvewheel"]],
                             "median_s": round(dmed, 3), "cpu_median_s": round(dcpu, 3),
                             "peak_rss_mb": round(max(dw.rss) * 1.048576, 1)}
        peer = f"delvewheel show {_s(dmed)} (CPU {_s(dcpu)})"
    else:
        res["delvewheel"] = {"available": False, "reason": dw_note}
        peer = dw_note or "delvewheel not run"
    has_dw = not math.isnan(dmed)
    state["rows"] += [
        Row(sec, "diagnose() cold", f"{_ms(cold)} (CPU {_ms(res['cold_cpu_median_s'])})", peer,
            _x(dmed, cold) if has_dw else "",
            "< 1 s, > 10x",
            _status(cold < 1.0 and (not has_dw or dmed / cold > 10))),
        Row(sec, "diagnose() warm", f"{_ms(warm)} (CPU {_ms(res['warm_cpu_median_s'])})", peer,
            _x(dmed, warm) if has_dw else "", "< 100 ms", _status(warm < 0.1)),
    ]
    if cfg.profile:
        state["profiles"][f"torch {version} warm"] = C.profile_run(d.warm)
        state["profiles"][f"torch {version} cold"] = C.profile_run(d.cold)
    if cfg.naive_pefile:
        big = [f for f in d.files if os.path.basename(f).lower() == "torch_cpu.dll"]
        rest = [f for f in d.files if f not in big]
        try:
            one = C.pefile_naive(big)
            others = C.pefile_naive(rest)
            total = one["seconds"] + others["seconds"]
            res["pefile_naive"] = {"torch_cpu": one, "rest": others, "total_s": round(total, 2),
                                   "files": len(d.files)}
            state["rows"].append(Row(
                sec, "vs naive pefile.PE() per file (once)", _ms(cold) + " (cold)",
                f"pefile {_s(total)}: torch_cpu {_s(one['seconds'])} + "
                f"{len(rest)} others {_s(others['seconds'])}",
                _x(total, cold), "", "info"))
        except (RuntimeError, ValueError) as exc:
            res["pefile_naive"] = {"available": False, "reason": str(exc)}
            state["rows"].append(Row(sec, "naive pefile parse", "not available", str(exc),
                                     status="n/a"))
    else:
        res["pefile_naive"] = {"available": False, "reason": "skipped in --quick"}
        state["rows"].append(Row(sec, "vs naive pefile.PE() per file", "skipped (--quick)",
                                 status="n/a"))
    return res


def section_layouts(cfg: Config, state: Dict[str, Any]) -> Dict[str, Any]:
    return {v: measure_layout(cfg, state, v) for v in state["torch_versions"]}


def section_memory(cfg: Config, state: Dict[str, Any]) -> Dict[str, Any]:
    version = state["torch_versions"][-1]
    sec = "4 memory"
    try:
        layout = _layout(state, version)
    except C.Unavailable as exc:
        state["rows"].append(Row(sec, "peak RSS, cold diagnose", "not available", str(exc),
                                 status="n/a"))
        return {"available": False, "reason": str(exc)}
    runs = [C.diagnose_child(layout, state["scratch"]) for _ in range(cfg.memory_runs)]
    hwm = C.median([r["vmhwm_mib"] for r in runs]) * 1.048576
    maxrss = C.median([r["ru_maxrss_mib"] for r in runs]) * 1.048576
    base = C.median([r["rss_before_mib"] for r in runs]) * 1.048576
    wall = C.median([r["wall_s"] for r in runs])
    res: Dict[str, Any] = {"available": True, "torch": version, "runs": runs,
                           "peak_rss_mb_median": round(hwm, 1),
                           "ru_maxrss_mb_median": round(maxrss, 1),
                           "rss_before_diagnose_mb": round(base, 1),
                           "process_wall_s_median": round(wall, 3)}
    peers = []
    lay = state["results"].get("layouts", {}).get(version, {})
    pf = lay.get("pefile_naive", {}).get("torch_cpu")
    if pf:
        peers.append(f"pefile torch_cpu {pf['maxrss_mib'] * 1.048576:.0f} MB")
    dwm = lay.get("delvewheel", {}).get("peak_rss_mb")
    if dwm:
        peers.append(f"delvewheel {dwm:.0f} MB")
    state["rows"] += [
        Row(sec, f"peak RSS, cold diagnose, torch {version}",
            f"{hwm:.0f} MB ({base:.0f} MB before)", ", ".join(peers) or "-",
            "", "< 200 MB", _status(hwm < 200)),
        Row(sec, "that process: python + imports + diagnose", _s(wall),
            f"diagnose alone {C.median([r['diagnose_s'] for r in runs]) * 1000:.0f} ms"),
    ]
    return res


def section_scaling(cfg: Config, state: Dict[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {"sizes": {}}
    prev: Optional[Dict[str, Any]] = None
    for n in cfg.scaling_sizes:
        root = state["scratch"] / f"synthetic-{n}"
        start = time.perf_counter()
        snap, info = C.build_synthetic(root, n)
        build_s = time.perf_counter() - start
        d = C.DiagnoseRunner(root, snap, state["scratch"])
        runs = cfg.scaling_runs if n < 1000 else max(1, cfg.scaling_runs // 3)
        times = C.interleave([("cold", d.cold, runs), ("warm", d.warm, runs)])
        cold, warm = C.median(times["cold"]), C.median(times["warm"])
        closure = C.closure_stats(d.files)
        cur = {**info, "build_s": round(build_s, 2), "closure": closure, "outcomes": d.outcomes,
               "cold_s": [round(t, 4) for t in times["cold"]], "cold_median_s": round(cold, 4),
               "warm_s": [round(t, 4) for t in times["warm"]], "warm_median_s": round(warm, 4),
               "cold_ms_per_dll": round(cold / n * 1000, 3),
               "warm_ms_per_dll": round(warm / n * 1000, 3),
               "cold_cpu_median_s": round(C.median(d.cpu["cold"]), 4),
               "warm_cpu_median_s": round(C.median(d.cpu["warm"]), 4)}
        if cfg.profile and n == max(cfg.scaling_sizes):
            state["profiles"][f"{n} synthetic DLLs warm"] = C.profile_run(d.warm)
        out["sizes"][n] = cur
        peer = ratio = ""
        if prev is not None:
            peer = (f"{prev['torch_lib_dlls']} DLLs: {_ms(prev['cold_median_s'])} / "
                    f"{_ms(prev['warm_median_s'])}")
            ratio = (f"x{cold / prev['cold_median_s']:.1f} / "
                     f"x{warm / prev['warm_median_s']:.1f}")
        state["rows"].append(Row(
            "5 scaling", f"{n} DLLs ({closure['files']} files, "
                         f"{closure['imported_symbols']:,} symbols), cold / warm",
            f"{_ms(cold)} / {_ms(warm)} ({cur['cold_ms_per_dll']:.2f} / "
            f"{cur['warm_ms_per_dll']:.2f} ms/DLL)", peer, ratio))
        prev = cur
        shutil.rmtree(root, ignore_errors=True)
    sizes = sorted(out["sizes"])
    if len(sizes) >= 2:
        a, b = out["sizes"][sizes[-2]], out["sizes"][sizes[-1]]
        k = math.log(sizes[-1] / sizes[-2])
        def k_of(key: str) -> float:
            return math.log(b[key] / a[key]) / k

        exp_cold, exp_warm = k_of("cold_median_s"), k_of("warm_median_s")
        cpu_cold, cpu_warm = k_of("cold_cpu_median_s"), k_of("warm_cpu_median_s")
        per = b["warm_ms_per_dll"] / a["warm_ms_per_dll"]
        per_cpu = (b["warm_cpu_median_s"] / sizes[-1]) / (a["warm_cpu_median_s"] / sizes[-2])
        out.update({"exponent_cold": round(exp_cold, 3), "exponent_warm": round(exp_warm, 3),
                    "exponent_cold_cpu": round(cpu_cold, 3),
                    "exponent_warm_cpu": round(cpu_warm, 3),
                    "warm_per_dll_ratio": round(per, 2),
                    "warm_cpu_per_dll_ratio": round(per_cpu, 2)})
        # The growth law is a property of the code: judged on CPU time, which the other
        # processes on a shared machine disturb far less than wall time (both are shown).
        linear = cpu_cold < 1.15 and cpu_warm < 1.15
        state["rows"].append(Row(
            "5 scaling", f"growth {sizes[-2]} -> {sizes[-1]} DLLs: time ~ N^k, cold / warm",
            f"k = {exp_cold:.2f} / {exp_warm:.2f}, CPU {cpu_cold:.2f} / {cpu_warm:.2f}",
            f"warm ms/DLL x{per:.2f}, CPU x{per_cpu:.2f}", "",
            "CPU k < 1.15, ms/DLL x < 1.3", _status(linear and per_cpu < 1.3)))
    return out


def section_linux(cfg: Config, state: Dict[str, Any]) -> Dict[str, Any]:
    """diagnose() with the ld.so model on the torch of this interpreter (Linux only)."""
    from benchmarks import bench_linux

    if not sys.platform.startswith("linux"):
        state["rows"].append(Row("6 linux", "diagnose() (ld.so model)", "not available", "Linux only",
                                 status="n/a"))
        return {"available": False}
    res = bench_linux.measure(3 if cfg.quick else 7)
    if not res.get("available"):
        state["rows"].append(Row("6 linux", "diagnose() (ld.so model)", "not available",
                                 res.get("reason", ""), status="n/a"))
        return res
    d, ldd = res["diagnose_median_s"], res["ldd_median_s"]
    state["rows"] += [
        Row("6 linux", "diagnose() live, real torch (replay + symbol checks)", _s(d),
            f"import torch {_s(res['import_torch_median_s'])}; ldd {_ms(ldd)} (no symbol checks)",
            _x(res["import_torch_median_s"], d), "< 1 s", _status(d < bench_linux.GOAL_DIAGNOSE_S)),
        Row("6 linux", "read_elf_facts(libtorch_cpu.so), no symbols / "
            f"{res['libtorch_cpu_dynamic_symbols']} symbols",
            f"{res['elf_facts_no_symbols_ms']:.1f} ms / {res['elf_facts_symbols_ms']:.0f} ms"),
        Row("6 linux", "guard LD_LIBRARY_PATH precheck (3 entries)", f"{res['precheck_median_ms']:.2f} ms",
            "", "", "< 1 ms", _status(res["precheck_median_ms"] < bench_linux.GOAL_PRECHECK_MS)),
    ]
    return res


RUNNERS: Dict[str, Callable[[Config, Dict[str, Any]], Dict[str, Any]]] = {
    "import": section_import, "guard": section_guard, "layouts": section_layouts,
    "memory": section_memory, "scaling": section_scaling, "linux": section_linux,
}


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------

HEAD = ("section", "measurement", "torchdll", "peer (same run)", "ratio", "goal", "status")


def _cells(r: Row) -> List[str]:
    return [r.section, r.what, r.torchdll, r.peer, r.ratio, r.goal, r.status]


def text_table(rows: List[Row]) -> str:
    widths = [len(h) for h in HEAD]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, _cells(r))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEAD, widths)),
             "  ".join("-" * w for w in widths)]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(_cells(r), widths)).rstrip())
    return "\n".join(lines)


def markdown_table(rows: List[Row]) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    for r in rows:
        cells = [esc(c) for c in _cells(r)]
        cells[-1] = {"MISSED": "**MISSED**"}.get(cells[-1], cells[-1])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def profile_text(name: str, prof: Dict[str, Any], md: bool = False) -> str:
    """A short summary of one :func:`C.profile_run` result."""
    total = prof["phases_cumulative_s"].get("diagnose() total") or prof["profiled_total_s"] or 1.0
    lines = [f"{'**' if md else ''}cProfile, {name}{'**' if md else ''} "
             f"(cumulative time under the profiler, and share of diagnose()):", ""]
    pre = "    " if md else "  "
    for label, sec in prof["phases_cumulative_s"].items():
        if sec:
            lines.append(f"{pre}{label.rstrip():<72} {sec * 1000:7.1f} ms "
                         f"{100 * sec / total:5.1f} %")
    checks = ", ".join(f"{k.split('(')[-1].rstrip(')')} {v * 1000:.1f} ms"
                       for k, v in list(prof["checks_cumulative_s"].items())[:5])
    if checks:
        lines.append(f"{pre}checks: {checks}")
    lines.append(f"{pre}most own time: " + ", ".join(
        f"{t['function']} {t['own_s'] * 1000:.1f} ms/{t['calls']} calls"
        for t in prof["top_own_time"][:5]))
    return "\n".join(lines)


def missed_profiles(result: Dict[str, Any]) -> List[tuple]:
    """The profiles of the measurements whose goal was missed (diagnose and scaling rows)."""
    out = []
    for row in result["table"]:
        if row["status"] != "MISSED":
            continue
        sec, what = row["section"], row["what"]
        for name, prof in result["profiles"].items():
            if (sec.startswith("3 torch") and name.startswith(sec[2:]) and
                    name.split()[-1] in what) or (sec == "5 scaling" and "synthetic" in name):
                out.append((name, prof))
    return out


def update_docs(result: Dict[str, Any], rows: List[Row]) -> bool:
    if not DOCS.is_file():
        return False
    text = DOCS.read_text()
    if BEGIN not in text or END not in text:
        return False
    block = "\n".join([
        BEGIN,
        f"Measured {result['finished']} with `python benchmarks/run_all.py"
        f"{' --quick' if result['mode'] == 'quick' else ''}` "
        f"(run took {result['duration_s']:.0f} s; torch {', '.join(result['torch_versions'])}).",
        "",
        f"Machine: {C.machine_line(result['machine'])}; load average at start "
        f"{' / '.join(map(str, result['machine']['loadavg_at_start']))}.",
        "",
        markdown_table(rows),
        *[part for name, prof in missed_profiles(result)
          for part in ("", profile_text(name, prof, md=True))],
        END,
    ])
    head, rest = text.split(BEGIN, 1)
    DOCS.write_text(head + block + rest.split(END, 1)[1])
    return True


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true",
                    help="fewer runs, no naive pefile parse (about 2 minutes)")
    ap.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                    help=f"run only these sections ({', '.join(SECTIONS)})")
    ap.add_argument("--newest-torch", default=TORCH_NEWEST, metavar="VERSION",
                    help=f"the newer real layout (default {TORCH_NEWEST}; 'latest' asks the index)")
    ap.add_argument("--json", type=Path, help="where to write the results")
    ap.add_argument("--update-docs", action="store_true",
                    help="put the table into docs/benchmarks.md")
    ap.add_argument("--no-install", action="store_true",
                    help="do not pip-install missing peers (delvewheel)")
    ap.add_argument("--install-torch", action="store_true",
                    help=f"pip install torch=={GUARD_TORCH} for the guard section if missing")
    ap.add_argument("--from-json", type=Path, metavar="PATH",
                    help="measure nothing: print (and with --update-docs, document) a saved run")
    args = ap.parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        saved_rows = [Row(**r) for r in saved["table"]]
        print(text_table(saved_rows))
        for name, prof in missed_profiles(saved):
            print()
            print(profile_text(name, prof))
        if args.update_docs:
            print("updated docs/benchmarks.md" if update_docs(saved, saved_rows)
                  else "docs/benchmarks.md has no table markers: not updated")
        return 0
    cfg = config(args.quick)
    t0 = time.perf_counter()
    machine = C.machine_info()
    print(f"machine: {C.machine_line(machine)}", flush=True)
    newest = args.newest_torch
    if newest == "latest":
        try:
            newest = C.newest_torch_win()
        except C.Unavailable as exc:
            print(f"  cannot ask the index for the newest torch ({exc}); using {TORCH_NEWEST}")
            newest = TORCH_NEWEST
    state: Dict[str, Any] = {"rows": [], "args": args, "results": {}, "profiles": {},
                             "torch_versions": [TORCH_OLD, newest]}
    scratch = None
    errors: Dict[str, str] = {}
    try:
        scratch = C.scratch_dir()
        state["scratch"] = scratch
        for name in args.only or SECTIONS:
            start = time.perf_counter()
            print(f"[{time.perf_counter() - t0:6.1f} s] {name} ...", flush=True)
            try:
                state["results"][name] = RUNNERS[name](cfg, state)
            except Exception as exc:  # noqa: BLE001 - report it, go on with the next section
                errors[name] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                state["results"][name] = {"error": errors[name],
                                          "traceback": traceback.format_exc()}
                state["rows"].append(Row(name, "error", errors[name][:200], status="n/a"))
                print(traceback.format_exc(), file=sys.stderr)
            state["results"][name]["section_s"] = round(time.perf_counter() - start, 1)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    rows: List[Row] = state["rows"]
    duration = time.perf_counter() - t0
    result = {
        "mode": "quick" if args.quick else "full",
        "finished": time.strftime("%Y-%m-%d %H:%M %Z"),
        "duration_s": round(duration, 1),
        "machine": machine,
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "torch_versions": state["torch_versions"],
        "config": asdict(cfg),
        "goals_missed": [f"{r.section}: {r.what}" for r in rows if r.status == "MISSED"],
        "errors": errors,
        "table": [asdict(r) for r in rows],
        "profiles": state["profiles"],
        "sections": state["results"],
    }
    print()
    print(text_table(rows))
    print()
    print(f"machine: {C.machine_line(machine)}")
    print(f"mode {result['mode']}, {duration:.0f} s; load average start "
          f"{machine['loadavg_at_start']}, end {result['loadavg_at_end']}")
    missed = result["goals_missed"]
    print("goals missed: " + ("; ".join(missed) if missed else "none"))
    for name, prof in missed_profiles(result):
        print()
        print(profile_text(name, prof))
    dest = args.json or C.RESULTS / ("all-quick.json" if args.quick else "all.json")
    print(f"wrote {C.write_result('all', result, dest)}")
    if args.update_docs:
        print("updated docs/benchmarks.md" if update_docs(result, rows)
              else "docs/benchmarks.md has no table markers: not updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
