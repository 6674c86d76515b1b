"""The predicted failure itself: which DLL torch will name, and which file is really at fault.

This family turns a failing replay into one ``predicted-load-failure`` finding with the loader's
evidence (the edge, the rule that picked the file, every folder tried). The other families add
the *cause* of that failure (an old runtime, a foreign folder on PATH...) with its fix.
"""

from __future__ import annotations

import ntpath
from typing import Iterable, List, Optional

from ..closure import CallResult
from ..report import Confidence, Evidence, Finding, Prediction, Severity
from . import CheckContext

__all__ = ["check_prediction", "failure_evidence"]

_GENERIC_FIX = {
    126: ("Install what the missing DLL belongs to, or put the folder that holds it where the "
          "loader looks (torch adds its own folders with os.add_dll_directory; PATH is not searched "
          "by torch's first attempt)."),
    127: ("Make the right copy of the exporting DLL win: remove the folder of the wrong copy from "
          "PATH, or stop the package that loads it first from loading it before torch."),
    182: "Keep a single OpenMP/MKL provider in the environment (see the OpenMP findings).",
    193: "Use files built for this process's architecture (64-bit Python needs 64-bit DLLs).",
    1114: "See the findings below for the DLL whose initialisation fails and why.",
}


def failure_evidence(result: CallResult) -> List[Evidence]:
    """Evidence lines for a failed load call: the culprit edge, its rule and the folders tried."""
    ev: List[Evidence] = [Evidence("load", f"LoadLibraryExW({result.call.target}, 0x{result.call.flags:x})")]
    edge = result.culprit
    if edge is None:
        if result.bad_image:
            ev.append(Evidence("invalid image", result.bad_image))
        return ev
    res = edge.resolution
    ev.append(Evidence("importer", edge.importer))
    ev.append(Evidence("imports", edge.name + (" (delay load)" if edge.delay else "")))
    if res.path:
        ev.append(Evidence("resolved to", f"{res.path} [{res.rule.value if res.rule else '?'}]"))
    for miss in edge.missing[:5]:
        chain = f" (via {' -> '.join(miss.chain)})" if miss.chain else ""
        ev.append(Evidence("missing symbol", f"{miss.symbol} in {miss.exporter}{chain}"))
    if len(edge.missing) > 5:
        ev.append(Evidence("missing symbols", f"{len(edge.missing)} in all"))
    if res.path is None:
        for cand in res.candidates:
            ev.append(Evidence("tried", f"{cand.path} ({cand.rule.value}: {cand.outcome.value})"))
    for note in res.notes[:3]:
        ev.append(Evidence("note", note))
    return ev


def _finding(pred: Prediction, result: Optional[CallResult]) -> Finding:
    code = pred.winerror or 0
    named = ntpath.basename(pred.dll or "")
    detail = (f"{pred.target} {pred.version} will fail with WinError {code} on {named}. "
              f"The real cause: {pred.culprit}." if pred.culprit else
              f"{pred.target} {pred.version} will fail with WinError {code} on {named}.")
    return Finding(
        id="predicted-load-failure",
        severity=Severity.ERROR,
        title=f"import {pred.target} will fail: WinError {code} on {named}",
        detail=detail,
        confidence=Confidence.CERTAIN if code in (126, 127, 182, 193) else Confidence.LIKELY,
        evidence=tuple(failure_evidence(result)) if result is not None else (),
        fix=(_GENERIC_FIX.get(code, "See the findings below."),),
        explains=pred.target,
    )


def check_prediction(ctx: CheckContext) -> Iterable[Finding]:
    for replay in ctx.replays:
        if not replay.prediction.ok:
            yield _finding(replay.prediction, replay.failing)
    for ext in ctx.extensions:
        if ext.prediction.outcome == "fails" and ext.prediction.winerror is not None:
            failing = next((r for r in ext.results if not r.ok), None)
            yield _finding(ext.prediction, failing)
