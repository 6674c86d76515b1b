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
