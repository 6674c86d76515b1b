"""Cost of ``import torchdll`` over a bare interpreter (goal: under 10 ms).

Runs ``python -S -c pass`` and ``python -S -c "import torchdll"`` alternately N times (so machine
noise hits both alike), with torchdll's bytecode compiled once into a cache as an installed
package has it; reports medians and their difference, and the cumulative time of the torchdll
package from ``python -X importtime``. Writes ``benchmarks/results/import.json``. Part of
``python benchmarks/run_all.py`` (section ``import``).

    python benchmarks/bench_import.py [--runs 40]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _common as C  # noqa: E402

GOAL_MS = 10.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    info = C.machine_info()
    result = {"machine": C.machine_line(info), **C.measure_import(args.runs)}
    cost = result["import_cost_ms"]
    print(f"{'bare interpreter':<28}{result['bare_interpreter_ms_median']:>8.2f} ms "
          f"(median of {args.runs})")
    print(f"{'import torchdll':<28}{result['import_torchdll_ms_median']:>8.2f} ms")
    print(f"{'cost of import torchdll':<28}{cost:>8.2f} ms   goal < {GOAL_MS} ms: "
          f"{'met' if cost < GOAL_MS else 'MISSED'}")
    print(f"-X importtime (cumulative us): {result['importtime_cumulative_us']}")
    print(f"modules loaded: {result['modules_after_import']}")
    C.write_result("import", result)


if __name__ == "__main__":
    main()
