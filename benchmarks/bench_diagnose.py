"""diagnose() on the real torch 2.3.1 layout (mirrored venv, mkl present): cold and cached.

Cold: an empty torchdll cache (a fresh TORCHDLL_CACHE_DIR) and a new file view each run; cached:
the on-disk PE-facts cache filled, a new view each run (as a new process would). Goals from
issue 3: cold < 1 s, cached < 100 ms. Writes benchmarks/results/diagnose.json.

    python benchmarks/bench_diagnose.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.torchlayout import build_torch_layout, layout_snapshot  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    from torchdll.diagnose import diagnose
    from torchdll.fsview import MirrorView

    root = Path(tempfile.mkdtemp(prefix="bench-diagnose-"))
    layout = build_torch_layout(root, with_mkl=True)
    snap = layout_snapshot(layout)

    def once() -> float:
        t0 = time.perf_counter()
        report = diagnose(snap, view=MirrorView(root))
        dt = time.perf_counter() - t0
        assert report.predictions and report.predictions[0].ok
        return dt

    cold = []
    for _ in range(args.runs):
        os.environ["TORCHDLL_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-cache-")
        cold.append(once())
    os.environ["TORCHDLL_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-cache-")
    once()  # fill
    cached = [once() for _ in range(args.runs)]
    result = {
        "machine": f"{platform.machine()} {platform.system()} {platform.release()}, Python {platform.python_version()}, {os.cpu_count()} cores",
        "layout": "torch 2.3.1 win_amd64 + mkl 2021.4.0 + msvc-runtime 14.44 + Wine 8 System32",
        "runs": args.runs,
        "cold_median_s": round(statistics.median(cold), 4),
        "cached_median_s": round(statistics.median(cached), 4),
        "goal_cold_s": 1.0,
        "goal_cached_s": 0.1,
    }
    result["cold_ok"] = result["cold_median_s"] < 1.0
    result["cached_ok"] = result["cached_median_s"] < 0.1
    print(f"diagnose(), real torch 2.3.1 layout, median of {args.runs}:")
    print(f"  cold   {result['cold_median_s'] * 1000:8.1f} ms   goal < 1000 ms: {'met' if result['cold_ok'] else 'MISSED'}")
    print(f"  cached {result['cached_median_s'] * 1000:8.1f} ms   goal <  100 ms: {'met' if result['cached_ok'] else 'MISSED'}")
    dest = Path(__file__).parent / "results"
    dest.mkdir(exist_ok=True)
    (dest / "diagnose.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
