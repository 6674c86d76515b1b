"""Cost of ``import torchdll`` over a bare interpreter (goal: under 10 ms).

Runs ``python -c pass`` and ``python -c "import torchdll"`` alternately N times (so machine
noise hits both alike), reports medians and their difference, and the self time of the
torchdll modules from ``python -X importtime``. Writes ``benchmarks/results/import.json``.

    python benchmarks/bench_import.py [--runs 40]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL_MS = 10.0


REPO = str(Path(__file__).resolve().parents[1])


def _time(code: str) -> float:
    # -S: no site, so no editable-install finder skews the figures; the repo goes on sys.path
    # as a plain install would put the package there.
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {REPO!r}); {code}"],
                   check=True)
    return (time.perf_counter() - t0) * 1000


def _importtime() -> dict[str, int]:
    proc = subprocess.run([sys.executable, "-S", "-X", "importtime", "-c",
                           f"import sys; sys.path.insert(0, {REPO!r}); import torchdll"],
                          capture_output=True, text=True, check=True)
    out: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2].lstrip().startswith("torchdll"):
            out[parts[2].strip()] = int(parts[1])  # cumulative microseconds
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    bare, ours = [], []
    for _ in range(args.runs):
        bare.append(_time("pass"))
        ours.append(_time("import torchdll"))
    modules = _importtime()
    cost = statistics.median(ours) - statistics.median(bare)
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, torchdll; print(sorted(m for m in sys.modules if m.startswith(('pefile','ctypes','torchdll'))))"],
        capture_output=True, text=True, check=True).stdout.strip()
    result = {
        "machine": f"{platform.machine()} {platform.system()} {platform.release()}, Python {platform.python_version()}",
        "runs": args.runs,
        "bare_interpreter_ms_median": round(statistics.median(bare), 2),
        "import_torchdll_ms_median": round(statistics.median(ours), 2),
        "import_cost_ms": round(cost, 2),
        "importtime_cumulative_us": modules,
        "modules_after_import": loaded,
        "goal_ms": GOAL_MS,
        "goal_met": cost < GOAL_MS,
    }
    print(f"{'bare interpreter':<28}{result['bare_interpreter_ms_median']:>8.2f} ms (median of {args.runs})")
    print(f"{'import torchdll':<28}{result['import_torchdll_ms_median']:>8.2f} ms")
    print(f"{'cost of import torchdll':<28}{cost:>8.2f} ms   goal < {GOAL_MS} ms: {'met' if cost < GOAL_MS else 'MISSED'}")
    print(f"-X importtime (cumulative us): {modules}")
    print(f"modules loaded: {loaded}")
    dest = Path(__file__).parent / "results"
    dest.mkdir(exist_ok=True)
    (dest / "import.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
