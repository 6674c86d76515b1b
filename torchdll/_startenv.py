"""The environment this process started with: what the dynamic loader read at exec time.

``ld.so`` reads ``LD_LIBRARY_PATH`` (and macOS dyld ``DYLD_*``) once, before Python runs; later
changes to ``os.environ`` do not reach it. Linux keeps the original block in
``/proc/self/environ``. Tiny on purpose: the import guard's happy path uses it.
"""

from __future__ import annotations

import os
from typing import Dict, Optional

__all__ = ["initial_environ"]


def initial_environ() -> Optional[Dict[str, str]]:
    """The start environment (``None`` where ``/proc/self/environ`` cannot be read)."""
    try:
        with open("/proc/self/environ", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    out: Dict[str, str] = {}
    for item in data.split(b"\0"):
        if b"=" in item:
            k, _, v = item.partition(b"=")
            out[os.fsdecode(k)] = os.fsdecode(v)
    return out
