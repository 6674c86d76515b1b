"""Opening the files the readers parse (PE, ELF, Mach-O): one place for the checks and the
short, locale-independent reasons an :class:`~torchdll.errors.InvalidImageError` carries."""

from __future__ import annotations

import errno
import os
import stat
from typing import Dict, List, Optional

from .errors import InvalidImageError

__all__ = ["OpenFile", "Warnings", "atomic_write", "os_reason", "read_at", "sniff"]


def os_reason(exc: OSError) -> str:
    """A short, locale-independent reason for an OSError raised while opening or reading."""
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, NotADirectoryError):
        return "a component of the path is not a directory"
    if isinstance(exc, PermissionError):
        return "permission denied"
    code = errno.errorcode.get(exc.errno or 0, "")
    return f"cannot read the file ({code or type(exc).__name__})"


class OpenFile:
    """An open regular file: descriptor plus the stat values taken from that descriptor.
    Anything else (missing, a folder, a FIFO, no permission, a NUL in the path) raises
    :class:`~torchdll.errors.InvalidImageError` naming ``kind`` (``"PE"``, ``"ELF"``...)."""

    __slots__ = ("fd", "mtime_ns", "size")

    def __init__(self, path: str, kind: str = "PE") -> None:
        flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            if isinstance(exc, PermissionError) and os.path.isdir(path):
                raise InvalidImageError(path, "is a directory", kind) from None  # Windows: EACCES
            raise InvalidImageError(path, os_reason(exc), kind) from None
        except ValueError:  # an embedded NUL character
            raise InvalidImageError(path, "invalid path", kind) from None
        try:
            st = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            raise InvalidImageError(path, os_reason(exc), kind) from None
        if stat.S_ISDIR(st.st_mode):
            os.close(fd)
            raise InvalidImageError(path, "is a directory", kind)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise InvalidImageError(path, "not a regular file", kind)
        self.fd = fd
        self.size = st.st_size
        self.mtime_ns = st.st_mtime_ns

    def close(self) -> None:
        os.close(self.fd)


def read_at(fd: int, offset: int, count: int) -> bytes:
    """Up to ``count`` bytes at ``offset`` (fewer at the end of the file)."""
    os.lseek(fd, offset, os.SEEK_SET)
    chunks: List[bytes] = []
    while count > 0:
        chunk = os.read(fd, count)
        if not chunk:
            break
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def atomic_write(target: "str | os.PathLike[str]", data: bytes, *, prefix: str = ".tmp-",
                 fsync: bool = False) -> None:
    """Write ``data`` to ``target`` atomically: a temporary file in the same folder (flushed to
    disk first when ``fsync``), then :func:`os.replace`. On any failure the temporary file is
    removed and the exception propagates; ``target`` is either the old file or the new one."""
    import tempfile

    folder = os.path.dirname(os.path.abspath(os.fspath(target)))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class Warnings:
    """The survivable oddities a reader met: an insertion-ordered set of at most ``limit``
    texts; those past the limit are only counted (``"... and N more"``)."""

    __slots__ = ("_dropped", "_limit", "_seen")

    def __init__(self, limit: int) -> None:
        self._seen: Dict[str, None] = {}
        self._dropped = 0
        self._limit = limit

    def add(self, text: str) -> None:
        if text in self._seen:
            return
        if len(self._seen) < self._limit - 1:
            self._seen[text] = None
        else:
            self._dropped += 1

    def items(self) -> List[str]:
        out = list(self._seen)
        if self._dropped:
            out.append(f"... and {self._dropped} more")
        return out


def sniff(head: bytes) -> Optional[str]:
    """What a file that is not the expected image looks like, from its first bytes (at most
    512): ``"lfs"``, ``"ld-script"``, ``"html"``, ``"elf"``, ``"pe"``, ``"macho"``, ``"zip"``,
    ``"ar"``, ``"zm"``, ``"script"``, or ``None``. Each reader words the kinds it reports."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:64].lower()
    if text.startswith(b"version https://git-lfs"):
        return "lfs"
    if text.startswith((b"/* gnu ld script", b"group", b"input", b"output_format")):
        return "ld-script"
    if text.startswith(b"<"):
        return "html"
    for kind, magics in (("elf", (b"\x7fELF",)), ("pe", (b"MZ",)),
                         ("macho", (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe")),
                         ("zip", (b"PK\x03\x04",)), ("ar", (b"!<arch>\n",)), ("zm", (b"ZM",)),
                         ("script", (b"#!",))):
        if head.startswith(magics):
            return kind
    return None
