"""Tables shipped in ``torchdll/data`` (each file records its provenance), loaded lazily."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Dict


@lru_cache(maxsize=None)
def load(name: str) -> Any:
    """The parsed JSON of ``torchdll/data/<name>``."""
    from importlib import resources

    return json.loads(resources.files("torchdll").joinpath("data").joinpath(name).read_text("utf-8"))


def default_known_dlls() -> Dict[str, str]:
    """Lower-case name -> file name of the usual KnownDLLs of a 64-bit Windows 10/11."""
    return {n.lower(): n for n in load("known_dlls.json")["x64"]}


def findings_catalogue() -> Dict[str, Dict[str, Any]]:
    """Every finding id torchdll can report -> its catalogue entry (title, summary, severity,
    references), merged from ``data/findings/*.json`` (one file per check family)."""
    from importlib import resources

    out: Dict[str, Dict[str, Any]] = {}
    folder = resources.files("torchdll").joinpath("data").joinpath("findings")
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".json"):
            doc = json.loads(entry.read_text("utf-8"))
            for fid, body in doc["findings"].items():
                out[fid] = dict(body, family=entry.name[:-5])
    return out
