"""A FastAPI server that imports torch through torchdll's guard.

    pip install torchdll torch fastapi uvicorn
    uvicorn main:app            # or: python main.py
    python main.py --check      # no server: import torch the same way, print the health report

torch is imported once, at start-up, inside ``safe_import_torch()``: the process PATH is cleaned
of other environments' DLL folders, torch's DLL folders are added the way torch itself would,
and a DLL load failure (WinError 126, 127, 1114...) stops the server with a message that names
the real culprit and the fix -- instead of a bare "DLL load failed while importing _C". Later
native imports (torchvision in a request handler...) are explained the same way when they run
inside the guard: see ``classify()``.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, Dict, List, Optional

from torchdll.errors import TorchDLLError
from torchdll.guard import safe_import_torch

log = logging.getLogger("server")

GUARD = safe_import_torch()
try:
    with GUARD as torch:
        # Everything that needs torch's native code at start-up goes here: a DLL failure in it
        # (e.g. loading a torchvision extension) is explained, not just re-raised.
        torch.tensor([0.0]).sum()
except TorchDLLError as err:
    # str(err) says which DLL failed, why, and what to do; err.report has the whole diagnosis.
    sys.stderr.write(f"cannot start: {err}\n")
    raise SystemExit(1) from None


def health() -> Dict[str, Any]:
    """What the guard did, for a health endpoint (and for support requests)."""
    removed: List[str] = []
    if GUARD.path_result is not None:
        removed = [r.entry.raw for r in GUARD.path_result.removed]
    return {
        "torch": torch.__version__,
        "dll_directories": list(GUARD.dll_directories),
        "path_entries_removed": removed,
        "prechecks": [f.id for f in GUARD.findings],
    }


def total(values: List[float]) -> Dict[str, float]:
    """A tiny model: the sum of the values, computed by torch."""
    return {"total": float(torch.tensor(values).sum().item())}


def create_app() -> Any:
    """The FastAPI application (fastapi is imported here, so --check works without it)."""
    from fastapi import FastAPI

    api = FastAPI(title="torch behind torchdll")

    @api.get("/health")
    def get_health() -> Dict[str, Any]:
        return health()

    @api.post("/total")
    def post_total(values: List[float]) -> Dict[str, float]:
        return total(values)

    return api


app: Optional[Any]
try:
    app = create_app()
except ModuleNotFoundError as exc:  # fastapi is not installed: --check still works
    if exc.name != "fastapi":
        raise
    app = None


def main(argv: List[str]) -> int:
    if "--check" in argv:
        print(json.dumps({"health": health(), "total": total([1.0, 2.0, 3.5])}))
        return 0
    if app is None:
        sys.stderr.write("fastapi is not installed: pip install fastapi uvicorn (or use --check)\n")
        return 2
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
