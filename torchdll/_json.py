"""Turn torchdll's frozen dataclasses into plain JSON values (stable, sorted where unordered)."""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any, Mapping


def to_jsonable(obj: Any) -> Any:
    """Dataclasses -> dicts, enums -> their value (``Machine`` -> its label), tuples -> lists,
    sets -> sorted lists, mappings -> dicts with string keys."""
    from .model import Machine

    if isinstance(obj, Machine):
        return obj.label
    if isinstance(obj, enum.Enum):
        return obj.value
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (frozenset, set)):
        return sorted(to_jsonable(v) for v in obj)
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False)
