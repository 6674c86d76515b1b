"""Linux: ``diagnose()`` on the torch installed here, next to what people run today.

Each sample is a fresh interpreter (``TORCHDLL_NO_CACHE`` does not apply: the ELF reader keeps
no cache) timing, inside the process:

* ``diagnose()`` -- the ld.so replay of ``import torch`` plus the checks (goal < 1 s);
* ``read_elf_facts`` of ``libtorch_cpu.so`` without and with its ~75k dynamic symbols;
* the guard's LD_LIBRARY_PATH precheck with a three-entry LD_LIBRARY_PATH (goal < 1 ms);

and, as peers, the wall time of ``ldd torch/lib/libtorch_python.so`` (the real loader in trace
mode: resolves the closure, no version or symbol checks) and of ``python -c "import torch"``
(what the replay predicts, for scale). Writes ``benchmarks/results/linux.json``.

    python benchmarks/bench_linux.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
GOAL_DIAGNOSE_S = 1.0
GOAL_PRECHECK_MS = 1.0

CHILD = r"""
import json, os, sys, time, tempfile
t0 = time.perf_counter()
import torchdll
report = torchdll.diagnose()
t1 = time.perf_counter()
from torchdll._elf import read_elf_facts
import importlib.util
lib = os.path.join(os.path.dirname(importlib.util.find_spec("torch").origin), "lib", "libtorch_cpu.so")
t2 = time.perf_counter(); read_elf_facts(lib, symbols=False); t3 = time.perf_counter()
f = read_elf_facts(lib, symbols=True); t4 = time.perf_counter()
from torchdll.guard import safe_import_torch
d = tempfile.mkdtemp()
g = safe_import_torch()
g.system._start_environ = lambda: {"LD_LIBRARY_PATH": d + ":/usr/lib:/nonexistent"}
t5 = time.perf_counter(); g._linux_prechecks(); t6 = time.perf_counter()
print(json.dumps({"diagnose_s": t1 - t0, "elf_nosym_ms": (t3 - t2) * 1000, "elf_sym_ms": (t4 - t3) * 1000,
                  "symbols": f.symbol_count, "precheck_ms": (t6 - t5) * 1000,
                  "outcome": [p.outcome for p in report.predictions], "findings": [x.id for x in report.findings]}))
"""


def _child(python: str) -> Dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    proc = subprocess.run([python, "-c", CHILD], capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _wall(cmd: List[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True, timeout=600)
    return time.perf_counter() - t0


def measure(runs: int, python: Optional[str] = None) -> Dict[str, Any]:
    python = python or sys.executable
    probe = subprocess.run([python, "-c", "import importlib.util,os;s=importlib.util.find_spec('torch');"
                            "print(os.path.dirname(s.origin) if s else '')"], capture_output=True, text=True)
    torch_dir = probe.stdout.strip()
    if not torch_dir:
        return {"available": False, "reason": "torch is not installed (pip install torch==2.13.0)"}
    samples: List[Dict[str, Any]] = []
    ldd: List[float] = []
    imp: List[float] = []
    for i in range(runs):
        samples.append(_child(python))
        ldd.append(_wall(["ldd", os.path.join(torch_dir, "lib", "libtorch_python.so")]))
        if i < max(3, runs // 2):
            imp.append(_wall([python, "-c", "import torch"]))

    def med(key: str) -> float:
        return statistics.median(s[key] for s in samples)

    return {
        "available": True, "runs": runs, "torch_dir": torch_dir,
        "diagnose_median_s": round(med("diagnose_s"), 4),
        "elf_facts_no_symbols_ms": round(med("elf_nosym_ms"), 2),
        "elf_facts_symbols_ms": round(med("elf_sym_ms"), 1),
        "libtorch_cpu_dynamic_symbols": samples[0]["symbols"],
        "precheck_median_ms": round(med("precheck_ms"), 3),
        "ldd_median_s": round(statistics.median(ldd), 4),
        "import_torch_median_s": round(statistics.median(imp), 3),
        "outcome": samples[0]["outcome"], "findings": samples[0]["findings"],
        "goal_diagnose_s": GOAL_DIAGNOSE_S, "goal_precheck_ms": GOAL_PRECHECK_MS,
        "goals_met": med("diagnose_s") < GOAL_DIAGNOSE_S and med("precheck_ms") < GOAL_PRECHECK_MS,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    if not sys.platform.startswith("linux"):
        sys.exit("not available: Linux only")
    res = measure(args.runs)
    out = REPO / "benchmarks" / "results" / "linux.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
