"""An on-disk cache of PE facts (and ELF facts, namespace ``elf``), keyed by (absolute path,
size, mtime_ns).

Parsing a big DLL costs tens of milliseconds; a diagnosis touches hundreds of them, again and
again. Entries live in ``$TORCHDLL_CACHE_DIR`` (or the platformdirs user cache of ``torchdll``),
in a versioned folder (``pe-v<FORMAT>-py<major>.<minor>``) so a format change or another Python
never reads old entries. Each entry is one file named by a hash of its key and holds
``marshal`` data: a header, the key itself (checked on read) and the plain-data payload built by
:func:`torchdll._pe.parse_file`.

Properties:

* writes are atomic (temporary file in the same folder, then :func:`os.replace`), so
  concurrent writers of one key leave one complete entry;
* a corrupt, truncated, foreign or stale entry is ignored (and overwritten), never raised;
* ``TORCHDLL_NO_CACHE=1`` disables the cache;
* an unwritable cache folder degrades to no caching, with one :class:`TorchDLLWarning` per
  folder and process.

Trust: the cache folder belongs to the user, like ``__pycache__``; entries are read with
:func:`marshal.loads`, which must never see data from an untrusted source.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import stat
import sys
import warnings
from pathlib import Path
from typing import Any, Optional, Set, Tuple

from ._fileio import atomic_write
from .errors import TorchDLLWarning
from .model import ImageFacts

__all__ = ["FORMAT", "cache_dir", "enabled", "entry_path", "load", "read_facts_cached", "store"]

#: Bump when the payload layout or the parser's semantics change (per namespace).
FORMAT = 1
#: namespace -> format version of the other namespaces: ``elf`` (torchdll._elf, with symbols)
FORMATS = {"elf": 1}
_MAGIC = ("torchdll-pe-facts", FORMAT, sys.byteorder)


def _format(namespace: str) -> int:
    return FORMAT if namespace == "pe" else FORMATS[namespace]


def _magic(namespace: str) -> Tuple[str, int, str]:
    return (f"torchdll-{namespace}-facts", _format(namespace), sys.byteorder)
_FALSEY = ("", "0", "false", "no", "off")

Key = Tuple[str, int, int]

#: cache folders found unwritable in this process (each warned about once)
_unwritable: Set[str] = set()


def enabled() -> bool:
    """False when ``TORCHDLL_NO_CACHE`` is set to anything but an empty/false value."""
    return os.environ.get("TORCHDLL_NO_CACHE", "").strip().lower() in _FALSEY


def cache_dir(namespace: str = "pe") -> Path:
    """The versioned folder entries are read from and written to (not created here)."""
    env = os.environ.get("TORCHDLL_CACHE_DIR")
    if env:
        base = Path(env)
    else:
        import platformdirs

        base = Path(platformdirs.user_cache_dir("torchdll", appauthor=False))
    return base / f"{namespace}-v{_format(namespace)}-py{sys.version_info[0]}.{sys.version_info[1]}"


def make_key(path: str, size: int, mtime_ns: int) -> Key:
    return (os.path.abspath(path), size, mtime_ns)


def entry_path(key: Key, folder: Optional[Path] = None, namespace: str = "pe") -> Path:
    digest = hashlib.sha256(repr(key).encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return (folder or cache_dir(namespace)) / f"{digest}.facts"


def load(key: Key, namespace: str = "pe") -> Optional[Any]:
    """The payload stored for ``key``, or ``None`` (missing, corrupt, foreign or stale)."""
    try:
        with open(entry_path(key, namespace=namespace), "rb") as fh:
            data = fh.read()
        entry = marshal.loads(data)
    except Exception:  # noqa: BLE001 - missing, unreadable, truncated or garbage: a miss
        return None
    if (
        type(entry) is not tuple
        or len(entry) != 3
        or entry[0] != _magic(namespace)
        or entry[1] != key
        or type(entry[2]) is not tuple
    ):
        return None
    return entry[2]


def store(key: Key, payload: Any, namespace: str = "pe") -> None:
    """Write ``payload`` for ``key`` atomically; failures only disable the cache folder."""
    folder = cache_dir(namespace)
    where = str(folder)
    if where in _unwritable:
        return
    try:
        data = marshal.dumps((_magic(namespace), key, payload))
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(entry_path(key, folder, namespace), data, prefix=".tmp-")
    except (OSError, ValueError) as exc:
        _unwritable.add(where)
        warnings.warn(
            f"torchdll: {namespace.upper()} facts cache disabled, cannot write to {where} ({type(exc).__name__})",
            TorchDLLWarning,
            stacklevel=3,
        )


def read_facts_cached(path: str) -> ImageFacts:
    """:func:`torchdll._pe.read_facts` through the cache (the caller checked :func:`enabled`)."""
    from . import _pe

    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        key = make_key(path, st.st_size, st.st_mtime_ns)
        payload = load(key)
        if payload is not None:
            try:
                return _pe.facts_from_payload(path, st.st_size, st.st_mtime_ns, payload)
            except Exception:  # noqa: BLE001, S110 - an entry of the wrong shape: a miss
                pass
    payload, size, mtime_ns = _pe.parse_file(path)
    store(make_key(path, size, mtime_ns), payload)
    return _pe.facts_from_payload(path, size, mtime_ns, payload)


def __dir__() -> list[str]:
    return __all__
