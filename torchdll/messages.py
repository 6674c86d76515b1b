"""English and Korean messages (``torchdll/data/messages.json``, one catalogue for both).

:func:`language` picks the language: ``TORCHDLL_LANG`` (``ko``, ``ko_KR``, ``en``...) when it
names a supported one, else the locale (``LC_ALL``, ``LC_MESSAGES``, ``LANG``, then
:func:`locale.getlocale`, whose Windows form is ``Korean_Korea``), else English.
:func:`text` formats one message. Only fixed phrases are translated: paths, versions and the
evidence the checks compute are shown as they are.
"""

from __future__ import annotations

import functools
import locale
import os
from typing import Any, Dict, Optional, Tuple

__all__ = ["LANGUAGES", "has", "language", "messages", "text"]

#: Supported languages (the first is the fallback).
LANGUAGES: Tuple[str, ...] = ("en", "ko")


def _normalise(value: Optional[str]) -> Optional[str]:
    """``"ko_KR.UTF-8"``/``"Korean_Korea.949"``/``"ko"`` -> ``"ko"``; ``None`` if unsupported."""
    if not value:
        return None
    low = value.strip().lower()
    if low.startswith("ko"):
        return "ko"
    if low.startswith("en"):
        return "en"
    return None


def language() -> str:
    """``"ko"`` or ``"en"``: from ``TORCHDLL_LANG``, else the locale, else ``"en"``."""
    chosen = _normalise(os.environ.get("TORCHDLL_LANG"))
    if chosen:
        return chosen
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var)
        if value:  # the first one set decides (POSIX precedence)
            return _normalise(value) or "en"
    try:
        current = locale.getlocale()[0]
    except (ValueError, TypeError):  # pragma: no cover - a malformed locale
        current = None
    return _normalise(current) or "en"


@functools.lru_cache(maxsize=None)
def messages() -> Dict[str, Dict[str, str]]:
    """Message id -> ``{"en": template, "ko": template}``. The English of each finding's title
    and summary comes from the findings catalogue (``data/findings/*.json``) and that of
    ``error.<code>.torch`` from ``data/error_codes.json``: each English text is written once."""
    from . import _data

    table: Dict[str, Dict[str, str]] = {k: dict(v) for k, v in _data.load("messages.json")["messages"].items()}
    for fid, body in _data.findings_catalogue().items():
        for part in ("title", "summary"):
            table.setdefault(f"finding.{fid}.{part}", {})["en"] = body[part]
    for code, body in _data.load("error_codes.json")["codes"].items():
        if "torch" in body:
            table.setdefault(f"error.{code}.torch", {})["en"] = body["torch"]
    return table


def has(msg_id: str) -> bool:
    """Whether ``msg_id`` is in the catalogue."""
    return msg_id in messages()


def text(msg_id: str, lang: Optional[str] = None, **fields: Any) -> str:
    """The message ``msg_id`` in ``lang`` (default :func:`language`), formatted with ``fields``.

    Falls back to English when the language lacks it; raises :class:`KeyError` for an unknown
    id."""
    entry = messages()[msg_id]
    use = _normalise(lang) if lang else language()
    template = entry.get(use or "en") or entry["en"]
    return template.format(**fields) if fields else template
