"""diagnose() on a real torch layout (mirrored venv; MKL when that torch needs it): cold and warm.

Cold: an empty PE facts cache (a fresh ``TORCHDLL_CACHE_DIR``) and a new file view each run;
warm: the cache filled, a new view each run (as a new process would have). The two alternate.
Goals: cold < 1 s, warm < 100 ms. Writes ``benchmarks/results/diagnose.json`` (torch 2.3.1) or
``diagnose-<version>.json``. ``python benchmarks/run_all.py`` (section ``layouts``) measures
the same next to delvewheel and a naive pefile parse.

    python benchmarks/bench_diagnose.py [--runs 7] [--torch 2.3.1]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _common as C  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--torch", default="2.3.1", help="torch version of the layout")
    args = ap.parse_args()
    scratch = C.scratch_dir()
    try:
        layout = C.build_layout(scratch / "layout", args.torch)
        d = C.DiagnoseRunner(layout.root, layout.snapshot, scratch)
        times = C.interleave([("cold", d.cold, args.runs), ("warm", d.warm, args.runs)])
    except C.Unavailable as exc:
        sys.exit(f"not available: {exc}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    cold, warm = C.median(times["cold"]), C.median(times["warm"])
    result = {
        "machine": C.machine_line(C.machine_info()),
        "layout": (f"torch {args.torch} win_amd64"
                   f"{' + mkl ' + C.MKL_VERSION if layout.with_mkl else ''}"
                   f" + msvc-runtime {C.MSVC_RUNTIME_VERSION} + Wine System32"),
        "runs": args.runs,
        "files_read": len(d.files),
        "predictions": d.outcomes,
        "cold_median_s": round(cold, 4),
        "cached_median_s": round(warm, 4),
        "goal_cold_s": 1.0,
        "goal_cached_s": 0.1,
        "cold_ok": cold < 1.0,
        "cached_ok": warm < 0.1,
    }
    print(f"diagnose(), real torch {args.torch} layout ({len(d.files)} files), "
          f"median of {args.runs}:")
    for label, value, goal, ok in (("cold", cold, 1000, result["cold_ok"]),
                                   ("cached", warm, 100, result["cached_ok"])):
        print(f"  {label:<6} {value * 1000:8.1f} ms   goal < {goal:4d} ms: "
              f"{'met' if ok else 'MISSED'}")
    name = "diagnose" if args.torch == "2.3.1" else f"diagnose-{args.torch}"
    C.write_result(name, result)


if __name__ == "__main__":
    main()
