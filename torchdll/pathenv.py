"""Parse and classify PATH values (pure: reads folders through a view, changes nothing).

Three syntaxes, kept apart because Windows reads them differently:

``PathSyntax.REGISTRY``
    A persistent ``Path`` value as stored in the registry (``HKCU\\Environment`` or the Session
    Manager's ``Environment`` key). ``;`` separates entries, except inside double quotes (the
    quotes stay part of the entry). A ``REG_EXPAND_SZ`` value has its ``%NAME%`` references
    expanded with a given environment the way ``ExpandEnvironmentStringsW`` does (names match
    case-insensitively; an undefined one is kept as written); a ``REG_SZ`` value is never
    expanded by Windows, so a ``%NAME%`` in it stays literal for ever.
``PathSyntax.PROCESS``
    ``PATH`` as a Windows process sees it (``os.environ["PATH"]``). Windows already expanded the
    registry values it came from, so nothing is expanded again. The DLL loader uses each entry
    **literally**: it splits at every ``;`` and does not remove quotes, so a quoted entry never
    matches a folder for DLL loading (``cmd.exe`` honours quotes when it looks for programs,
    which is why entries are still grouped by quotes here: an entry is what a person or a shell
    sees, and what is kept or removed as a whole).
``PathSyntax.POSIX``
    ``PATH`` on Linux/macOS: ``:`` separators, no quotes, no variables, case-sensitive, an empty
    entry means the current directory.

Every value round-trips: :meth:`ParsedPath.serialize` of an unchanged parse gives back the exact
original string (quotes, ``%VARS%``, case, slashes, a trailing ``;``). A single ``;`` at the end of
a Windows value is a terminator, not an empty entry (Windows itself writes ``...\\WindowsApps;``).

Classification (:func:`classify_path`) looks into folders through a
:class:`~torchdll.fsview.FileView` (``NativeView`` by default, a ``MirrorView`` of a copied tree on
Linux) and compares them with the running interpreter's prefixes (:class:`Interpreter`,
injectable) to tell *this* environment from *another* one. Each entry gets zero or more
:class:`EntryIssue` (a code from :class:`EntryKind`, a :class:`Severity` and a reason a person can
act on). :mod:`torchdll.sanitize` decides what to remove (a policy) and applies it.

Nothing here raises on odd input (values longer than 32,767 characters, non-ASCII, NUL
characters, lone quotes, a ``%`` without its partner): such entries are classified, never fatal.
"""

from __future__ import annotations

import enum
import os
import posixpath
import re
import sys
from dataclasses import dataclass, replace
from typing import (
    Dict,
    FrozenSet,
    Iterable,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Tuple,
)

from .fsview import FileView, NativeView

__all__ = [
    "REG_TYPES",
    "SHADOWING_DLLS",
    "TORCH_MARKER_DLLS",
    "EntryIssue",
    "EntryKind",
    "Interpreter",
    "InterpreterFacts",
    "ParsedPath",
    "PathEntry",
    "PathSyntax",
    "Severity",
    "analyze_path",
    "classify_path",
    "expand_vars",
    "parse_path",
]

#: The registry value types a Path can have.
REG_TYPES = ("REG_SZ", "REG_EXPAND_SZ")


# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------


class PathSyntax(str, enum.Enum):
    """How a PATH string is read (see the module docstring)."""

    REGISTRY = "registry"
    PROCESS = "process"
    POSIX = "posix"

    @property
    def windows(self) -> bool:
        return self is not PathSyntax.POSIX

    @property
    def separator(self) -> str:
        return ":" if self is PathSyntax.POSIX else ";"


class Severity(str, enum.Enum):
    """How much an issue matters: ``info`` (a fact), ``warning`` (a risk), ``error`` (breaks loads)."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class EntryKind(str, enum.Enum):
    """What torchdll found about one PATH entry (the ``code`` of an :class:`EntryIssue`).

    Listed by precedence: the first kind an entry has is its :attr:`PathEntry.kind`.
    """

    #: ``%SystemRoot%``/``%windir%`` or a folder below it: never removed, whatever the policy.
    SYSTEM_DIR = "system-dir"
    #: A ``%VAR%`` that expands to several folders (``%PATH%``, a user-defined list): reported
    #: with what its folders hold, never removed as a whole (edit the variable instead).
    VARIABLE_LIST = "variable-list"
    #: Holds ``nvcuda.dll`` outside the system folders (ZLUDA-style driver providers): kept by default.
    NVCUDA_PROVIDER = "nvcuda-provider"
    #: Another environment's ``torch\\lib`` (or a libtorch ``lib``): torch DLLs that are not ours.
    FOREIGN_TORCH_LIB = "foreign-torch-lib"
    #: A DLL folder inside *this* environment's site-packages (the seed case: ``.venv\\...\\torch\\lib``).
    THIS_ENV_DLL_DIR = "this-env-dll-dir"
    #: A DLL folder inside *another* environment's site-packages (e.g. ``nvidia\\cudnn\\bin``).
    OTHER_ENV_DLL_DIR = "other-env-dll-dir"
    #: Another conda environment's ``Library\\bin`` (or conda base's).
    FOREIGN_CONDA_BIN = "foreign-conda-bin"
    #: A CUDA toolkit / cuDNN ``bin`` outside site-packages: by-name shadowing of cuDNN/cuBLAS.
    CUDA_TOOLKIT_BIN = "cuda-toolkit-bin"
    #: Holds torch-named or runtime DLLs (``libiomp5md.dll``, ``msvcp140.dll``, MKL...).
    SHADOWING_DLLS = "shadowing-dlls"
    #: Relative, drive-relative (``C:foo``) or root-relative (``\\foo``): depends on the current directory.
    RELATIVE = "relative"
    #: An empty entry (``;;`` or a leading ``;``).
    EMPTY = "empty"
    #: Holds a NUL or another control character: not a usable folder name.
    INVALID = "invalid"
    #: Contains a double quote: the DLL loader never matches it to a folder.
    QUOTED = "quoted"
    #: Holds a ``%NAME%`` that was not (or will not be) expanded: names no folder.
    UNEXPANDED = "unexpanded"
    #: Another Python installation's folder (``python.exe``, ``python3X.dll``).
    OTHER_PYTHON = "other-python"
    #: The folder does not exist.
    MISSING = "missing"
    #: The same folder as an earlier entry.
    DUPLICATE = "duplicate"
    #: A network folder (``\\\\server\\share``).
    UNC = "unc"
    #: A ``\\\\?\\`` or ``\\\\.\\`` path.
    EXTENDED_PATH = "extended-path"
    #: Before the Windows folders in this value and outside Windows/Program Files.
    USER_WRITABLE_AHEAD = "user-writable-ahead"
    #: Nothing to say (the :attr:`PathEntry.kind` of a clean entry; never an issue code).
    OK = "ok"


_PRECEDENCE = {kind: i for i, kind in enumerate(EntryKind)}


@dataclass(frozen=True)
class EntryIssue:
    """One finding about one entry: ``code``, ``severity`` and a ``reason`` a person can act on."""

    code: EntryKind
    severity: Severity
    reason: str

    def __str__(self) -> str:
        return f"{self.code.value}: {self.reason}"


@dataclass(frozen=True)
class PathEntry:
    """One entry of a PATH value.

    ``raw``: the text between separators, exactly as written (quotes, ``%VARS%``, case).
    ``expanded``: ``raw`` after ``%VAR%`` expansion (registry ``REG_EXPAND_SZ`` only; otherwise
    equal to ``raw``). ``normalized``: the comparison key of the folder it names (quotes removed,
    ``/`` as ``\\``, ``.``/``..`` folded, no trailing separator, upper-cased on Windows; ``\\\\?\\``
    removed) or ``""`` for an empty entry. ``index``: position in the value (0-based).
    ``folders``: the folders the DLL loader will actually try for this entry (it splits the
    expanded text at every ``;`` and keeps pieces literally; pieces holding a quote name no
    folder). ``issues``: the findings, most important first.
    """

    raw: str
    expanded: str
    normalized: str
    index: int
    folders: Tuple[str, ...] = ()
    issues: Tuple[EntryIssue, ...] = ()

    @property
    def kinds(self) -> Tuple[EntryKind, ...]:
        """The codes of :attr:`issues`, most important first."""
        return tuple(issue.code for issue in self.issues)

    @property
    def kind(self) -> EntryKind:
        """The most important code, or :attr:`EntryKind.OK`."""
        return self.issues[0].code if self.issues else EntryKind.OK

    @property
    def severity(self) -> Optional[Severity]:
        """The highest severity among the issues (``None`` when there are none)."""
        order = (Severity.ERROR, Severity.WARNING, Severity.INFO)
        for level in order:
            if any(issue.severity is level for issue in self.issues):
                return level
        return None

    def has(self, kind: EntryKind) -> bool:
        return any(issue.code is kind for issue in self.issues)

    def issue(self, kind: EntryKind) -> Optional[EntryIssue]:
        return next((issue for issue in self.issues if issue.code is kind), None)

    @property
    def reasons(self) -> Tuple[str, ...]:
        return tuple(str(issue) for issue in self.issues)


@dataclass(frozen=True)
class ParsedPath:
    """A parsed PATH value: its entries and how to write it back.

    ``value``: the original string. ``syntax``: how it was read. ``reg_type``: ``REG_SZ`` or
    ``REG_EXPAND_SZ`` for :attr:`PathSyntax.REGISTRY` values, else ``None``. ``terminated``: the
    Windows value ends with a single ``;`` after its last entry (kept when writing back).
    """

    value: str
    syntax: PathSyntax
    entries: Tuple[PathEntry, ...]
    terminated: bool = False
    reg_type: Optional[str] = None

    def serialize(self, entries: Optional[Iterable[PathEntry]] = None) -> str:
        """Join ``entries`` (default: all) with the separator, keeping the terminator.

        ``serialize()`` of an unchanged parse is the original :attr:`value`, character for
        character; parsing the result of any subset gives back that subset. With no entries
        left the result is ``""``.
        """
        chosen = self.entries if entries is None else tuple(entries)
        if not chosen:
            return ""
        sep = self.syntax.separator
        text = sep.join(e.raw for e in chosen)
        # A Windows value ending in an empty entry needs the terminator too, or that entry would
        # read back as the terminator (an unchanged parse never ends that way: round trips hold).
        if self.terminated or (chosen[-1].raw == "" and self.syntax is not PathSyntax.POSIX):
            text += sep
        return text


# --------------------------------------------------------------------------------------------
# The running interpreter
# --------------------------------------------------------------------------------------------


class InterpreterFacts(Protocol):
    """What classification needs to know about the interpreter (``snapshot.PythonInfo`` fits)."""

    @property
    def prefix(self) -> str: ...

    @property
    def exec_prefix(self) -> str: ...

    @property
    def base_prefix(self) -> str: ...

    @property
    def base_exec_prefix(self) -> str: ...

    @property
    def user_site(self) -> Optional[str]: ...

    @property
    def user_site_enabled(self) -> bool: ...


@dataclass(frozen=True)
class Interpreter:
    """The prefixes that define "this environment" (``sys.prefix`` and friends).

    ``prefix``/``exec_prefix``: this environment (a venv's own folder in a venv).
    ``base_prefix``/``base_exec_prefix``: the installation a venv was made from (its
    ``Library\\bin`` is one of torch's own DLL folders, so it is not "another" conda env).
    ``user_site``: the per-user site-packages, counted as this environment's when enabled.
    """

    prefix: str
    exec_prefix: str = ""
    base_prefix: str = ""
    base_exec_prefix: str = ""
    user_site: Optional[str] = None
    user_site_enabled: bool = False

    @classmethod
    def current(cls) -> Interpreter:
        """The running interpreter."""
        user_site: Optional[str] = None
        enabled = False
        site = sys.modules.get("site")
        if site is not None:  # not imported under -S: no user site either
            try:
                user_site = site.getusersitepackages()
                enabled = bool(site.ENABLE_USER_SITE)
            except Exception:  # noqa: BLE001 - a half-initialised site module
                user_site = None
        return cls(
            prefix=sys.prefix,
            exec_prefix=sys.exec_prefix,
            base_prefix=getattr(sys, "base_prefix", sys.prefix),
            base_exec_prefix=getattr(sys, "base_exec_prefix", sys.exec_prefix),
            user_site=user_site,
            user_site_enabled=enabled,
        )


# --------------------------------------------------------------------------------------------
# Windows path text
# --------------------------------------------------------------------------------------------

_EXTENDED_PREFIXES = ("\\\\?\\", "\\\\.\\", "\\??\\")
#: ``%NAME%`` as it can appear unexpanded: no separators, ``=``, quotes or NUL in the name.
_UNEXPANDED = re.compile(r"%[^%=\\/;:\"\x00]+%")
_CONTROL = re.compile(r"[\x00-\x1f]")


def _upper(text: str) -> str:
    """Upper-case one character at a time (like NTFS's upcase table: no ``ß`` -> ``SS``)."""
    if text.isascii():
        return text.upper()
    return "".join(u if len(u := c.upper()) == 1 else c for c in text)


def _split_drive(p: str) -> Tuple[str, str]:
    """``("C:", rest)``, ``("\\\\server\\share", rest)`` or ``("", p)`` (``p`` uses ``\\``)."""
    if p.startswith("\\\\"):
        parts = p[2:].split("\\", 2)
        drive = "\\\\" + "\\".join(parts[:2])
        return drive, p[len(drive):]
    if len(p) >= 2 and p[1] == ":" and p[0].isalpha():
        return p[:2], p[2:]
    return "", p


def _clean_windows(text: str) -> str:
    """A Windows path in canonical form, case kept: ``/`` -> ``\\``, ``\\\\?\\`` removed,
    repeated separators, ``.`` and ``..`` folded, trailing dots/spaces of components removed
    (as Win32 does), no trailing separator except after a drive root."""
    p = text.replace("/", "\\")
    if p.startswith(_EXTENDED_PREFIXES):
        rest = p[4:]
        p = "\\\\" + rest[4:] if rest[:4].upper() == "UNC\\" else rest
    drive, rest = _split_drive(p)
    rooted = rest.startswith("\\") or drive.startswith("\\\\")
    out: List[str] = []
    for comp in rest.split("\\"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append(comp)
            continue
        out.append(comp.rstrip(". ") or comp)
    body = "\\".join(out)
    if drive.startswith("\\\\"):
        return drive + ("\\" + body if body else "")
    if rest.startswith("\\"):
        return drive + "\\" + body
    return drive + body


def _key_windows(text: str) -> str:
    return _upper(_clean_windows(text))


def _under(key: str, parent: str) -> bool:
    """``key`` is ``parent`` or below it (both comparison keys)."""
    if not parent:
        return False
    if key == parent:
        return True
    sep = "/" if parent.startswith("/") else "\\"
    return key.startswith(parent if parent.endswith(sep) else parent + sep)


def _quote_state(value: str) -> Tuple[int, ...]:
    """Indices of the quotes that pair up left to right (an odd last one is literal)."""
    quotes = [i for i, c in enumerate(value) if c == '"']
    if len(quotes) % 2:
        quotes.pop()
    return tuple(quotes)


def _split_windows(value: str) -> Tuple[List[str], bool]:
    """Split at ``;`` outside paired double quotes; report a terminating ``;``."""
    if not value:
        return [], False
    parts: List[str] = []
    if '"' not in value:
        parts = value.split(";")
    else:
        paired = set(_quote_state(value))
        inside = False
        start = 0
        for i, c in enumerate(value):
            if c == '"' and i in paired:
                inside = not inside
            elif c == ";" and not inside:
                parts.append(value[start:i])
                start = i + 1
        parts.append(value[start:])
    terminated = len(parts) > 1 and parts[-1] == ""
    if terminated:
        parts.pop()
    return parts, terminated


def expand_vars(text: str, environ: Mapping[str, str]) -> str:
    """Expand ``%NAME%`` like ``ExpandEnvironmentStringsW`` (as Wine and ReactOS implement it).

    Names match case-insensitively. An undefined ``%NAME%`` is kept as written and scanning goes
    on after its closing ``%``; a ``%`` without a partner is literal; nothing is expanded twice.
    """
    if "%" not in text:
        return text
    lookup = {_upper(k): v for k, v in environ.items()}
    out: List[str] = []
    i, n = 0, len(text)
    while i < n:
        j = text.find("%", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        k = text.find("%", j + 1)
        if k < 0:
            out.append(text[j:])
            break
        name = text[j + 1 : k]
        value = lookup.get(_upper(name)) if name else None
        out.append(text[j : k + 1] if value is None else value)
        i = k + 1
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def _get_env(environ: Mapping[str, str], name: str) -> Optional[str]:
    hit = environ.get(name)
    if hit is not None:
        return hit
    upper = name.upper()
    for key in sorted(environ):
        if key.upper() == upper:
            return environ[key]
    return None


def _unquote(text: str) -> str:
    return text.replace('"', "")


def parse_path(
    value: str,
    syntax: PathSyntax = PathSyntax.PROCESS,
    *,
    reg_type: str = "REG_EXPAND_SZ",
    environ: Optional[Mapping[str, str]] = None,
) -> ParsedPath:
    """Split ``value`` into entries with the rules of ``syntax`` (no file system access).

    ``reg_type`` (``REG_SZ``/``REG_EXPAND_SZ``) matters for :attr:`PathSyntax.REGISTRY` only;
    ``environ`` (default ``os.environ``) expands its ``%VARS%``. Syntactic issues (empty,
    relative, quoted, unexpanded, invalid, UNC, ``\\\\?\\``) are attached here; folder-based ones
    by :func:`classify_path`.
    """
    if not isinstance(value, str):
        raise TypeError(f"a PATH value must be a str, not {type(value).__name__}")
    syntax = PathSyntax(syntax)
    if syntax is PathSyntax.REGISTRY and reg_type not in REG_TYPES:
        raise ValueError(f"reg_type must be 'REG_SZ' or 'REG_EXPAND_SZ', not {reg_type!r}")
    env: Mapping[str, str] = os.environ if environ is None else environ
    if syntax is PathSyntax.POSIX:
        parts, terminated = (value.split(":") if value else []), False
    else:
        parts, terminated = _split_windows(value)
    expand = syntax is PathSyntax.REGISTRY and reg_type == "REG_EXPAND_SZ"
    entries = []
    for index, raw in enumerate(parts):
        expanded = expand_vars(raw, env) if expand else raw
        entries.append(_syntactic_entry(raw, expanded, index, syntax, reg_type))
    return ParsedPath(
        value=value,
        syntax=syntax,
        entries=tuple(entries),
        terminated=terminated,
        reg_type=reg_type if syntax is PathSyntax.REGISTRY else None,
    )


def _issue(code: EntryKind, severity: Severity, reason: str) -> EntryIssue:
    return EntryIssue(code, severity, reason)


def _syntactic_entry(raw: str, expanded: str, index: int, syntax: PathSyntax, reg_type: str) -> PathEntry:
    issues: List[EntryIssue] = []
    if syntax is PathSyntax.POSIX:
        if raw == "":
            issues.append(_issue(EntryKind.EMPTY, Severity.WARNING,
                                 "an empty entry: POSIX shells read it as the current directory"))
            return PathEntry(raw, raw, "", index, (), tuple(issues))
        if _CONTROL.search(raw):
            issues.append(_issue(EntryKind.INVALID, Severity.WARNING,
                                 "holds a NUL or control character: not a usable folder name"))
        if not raw.startswith("/"):
            issues.append(_issue(EntryKind.RELATIVE, Severity.WARNING,
                                 f"relative ({raw!r}): resolved against the current directory of "
                                 "each process"))
        norm = posixpath.normpath(raw)
        return PathEntry(raw, raw, norm, index, (raw,) if not issues else (), tuple(issues))

    # Windows
    if raw == "":
        issues.append(_issue(EntryKind.EMPTY, Severity.INFO,
                             "an empty entry: the DLL loader skips it, but some tools read it as "
                             "the current directory"))
        return PathEntry(raw, expanded, "", index, (), tuple(issues))
    plain = _unquote(expanded)
    normalized = _key_windows(plain.strip()) if plain.strip() else ""
    # What the loader tries: the expanded text split at every ';', pieces taken literally.
    pieces = [p for p in expanded.split(";") if p]
    folders = tuple(p for p in pieces if '"' not in p)
    if _CONTROL.search(expanded):
        issues.append(_issue(EntryKind.INVALID, Severity.WARNING,
                             "holds a NUL or control character: not a usable folder name "
                             "(Windows strings end at the first NUL)"))
        folders = ()
    if '"' in raw:
        issues.append(_issue(EntryKind.QUOTED, Severity.INFO, _quoted_reason(raw, syntax, folders)))
    elif '"' in expanded:
        issues.append(_issue(EntryKind.QUOTED, Severity.INFO,
                             "a variable expands to text with a double quote: " +
                             _quoted_reason(expanded, syntax, folders)))
    unexpanded = _UNEXPANDED.findall(expanded)
    if unexpanded:
        issues.append(_issue(EntryKind.UNEXPANDED, Severity.INFO,
                             _unexpanded_reason(unexpanded[0], syntax, reg_type)))
        folders = tuple(f for f in folders if not _UNEXPANDED.search(f))
    for folder in folders:
        issue = _shape_issue(folder)
        if issue is not None and not any(i.code is issue.code for i in issues):
            issues.append(issue)
    return PathEntry(raw, expanded, normalized, index, folders, tuple(issues))


def _quoted_reason(text: str, syntax: PathSyntax, folders: Tuple[str, ...]) -> str:
    if text.count('"') % 2:
        head = "holds an unmatched double quote"
    else:
        head = "in double quotes"
    if syntax is PathSyntax.REGISTRY:
        why = (f"{head}: Windows copies the quotes into each process's PATH, where the DLL loader "
               "takes entries literally and does not remove quotes, so it never matches a folder "
               "for DLL loading (cmd.exe still finds programs there)")
    else:
        why = (f"{head}: the DLL loader takes PATH entries literally and does not remove quotes, "
               "so this entry never matches a folder for DLL loading (cmd.exe still finds "
               "programs there)")
    if ";" in _unquote(text):
        why += "; the loader even splits it at ';'"
        if folders:
            why += " and uses the unquoted pieces " + ", ".join(repr(f) for f in folders)
    return why


def _unexpanded_reason(name: str, syntax: PathSyntax, reg_type: str) -> str:
    if syntax is PathSyntax.REGISTRY and reg_type == "REG_SZ":
        return (f"{name} in a REG_SZ value: Windows never expands it (only REG_EXPAND_SZ values "
                "are expanded), so the entry names no folder")
    if syntax is PathSyntax.REGISTRY:
        return (f"{name} is not defined in the environment used for expansion: Windows keeps it "
                "as written and the entry names no folder")
    return (f"{name} was left unexpanded (undefined when the environment was built, or stored "
            "in a REG_SZ value): the entry names no folder")


def _shape_issue(folder: str) -> Optional[EntryIssue]:
    """Relative / UNC / extended, from the text alone."""
    p = folder.replace("/", "\\")
    if p.startswith(_EXTENDED_PREFIXES):
        return _issue(EntryKind.EXTENDED_PATH, Severity.INFO,
                      f"a {p[:4]} path: used literally, without Win32 normalisation")
    if p.startswith("\\\\"):
        return _issue(EntryKind.UNC, Severity.INFO,
                      "a network folder: every search that reaches it waits on the network, and "
                      "whoever controls the share can plant DLLs there (torchdll does not look "
                      "inside network folders)")
    drive, rest = _split_drive(p)
    if drive and rest.startswith("\\"):
        return None
    if drive:
        return _issue(EntryKind.RELATIVE, Severity.WARNING,
                      f"drive-relative ({folder!r}): resolved against the current directory of "
                      f"drive {drive}, so a folder planted there is searched for DLLs")
    if p.startswith("\\"):
        return _issue(EntryKind.RELATIVE, Severity.WARNING,
                      f"root-relative ({folder!r}): resolved on whatever drive is current")
    return _issue(EntryKind.RELATIVE, Severity.WARNING,
                  f"relative ({folder!r}): resolved against the current directory of each "
                  "process, so a folder planted wherever a program starts is searched for DLLs "
                  "(DLL planting)")


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------

#: Names that mark a folder as a torch ``lib`` (causes.md 2.11).
TORCH_MARKER_DLLS: FrozenSet[str] = frozenset({
    "c10.dll", "c10_cuda.dll", "torch.dll", "torch_cpu.dll", "torch_cuda.dll", "torch_python.dll",
})
#: torch-named and runtime DLLs a foreign copy of which breaks torch (causes.md 2.2, 2.7, 2.8,
#: 2.11-2.13). ``vcruntime140*.dll`` is left out: every python.org install ships it and the
#: System32 copy is searched before PATH.
SHADOWING_DLLS: FrozenSet[str] = frozenset({
    "libiomp5md.dll", "libiompstubs5md.dll", "libomp140.x86_64.dll", "libomp140.aarch64.dll",
    "msvcp140.dll", "msvcp140_1.dll", "msvcp140_2.dll", "msvcp140_atomic_wait.dll",
    "msvcp140_codecvt_ids.dll", "concrt140.dll", "vcomp140.dll", "fbgemm.dll", "asmjit.dll",
    "shm.dll", "torch_global_deps.dll", "caffe2_nvrtc.dll", "nvtoolsext64_1.dll", "zlibwapi.dll",
})
_SHADOWING_PREFIXES = ("mkl_", "libiomp")
#: CUDA runtime libraries (causes.md 2.25): cudart, cuBLAS, cuDNN, cuFFT, cuRAND, cuSOLVER...
_CUDA_PREFIXES = ("cudart64_", "cublas", "cudnn", "cufft", "curand", "cusolver", "cusparse",
                  "nvrtc64_", "nvjitlink")
_PYTHON_DLL = re.compile(r"^python3\d*\.dll$")


def _is_shadowing(name: str) -> bool:
    return name in SHADOWING_DLLS or (name.endswith(".dll") and name.startswith(_SHADOWING_PREFIXES))


def _is_cuda(name: str) -> bool:
    return name.endswith(".dll") and name.startswith(_CUDA_PREFIXES)


def _names(names: Iterable[str], limit: int = 3) -> str:
    items = sorted(names)
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


@dataclass(frozen=True)
class _Facts:
    windows_keys: Tuple[str, ...]
    system32_keys: Tuple[str, ...]
    program_keys: Tuple[str, ...]
    cuda_keys: Tuple[str, ...]
    this_roots: Tuple[str, ...]
    base_roots: Tuple[str, ...]
    this_sites: Tuple[str, ...]
    look_into_network: bool


def _facts(environ: Mapping[str, str], python: InterpreterFacts, look_into_network: bool) -> _Facts:
    windows = [v for v in (_get_env(environ, "SystemRoot"), _get_env(environ, "windir")) if v]
    windows_keys = tuple(dict.fromkeys(_key_windows(w) for w in (windows or ["C:\\Windows"])))
    system32_keys = tuple(
        k + "\\" + sub for k in windows_keys for sub in ("SYSTEM32", "SYSWOW64", "SYSNATIVE")
    )
    programs = [
        _get_env(environ, name)
        for name in ("ProgramFiles", "ProgramFiles(x86)", "ProgramW6432", "ProgramData")
    ]
    defaults = ["C:\\Program Files", "C:\\Program Files (x86)"]
    program_keys = tuple(dict.fromkeys(_key_windows(p) for p in programs + defaults if p))
    cuda: List[str] = []
    for name in sorted(environ):
        upper = name.upper()
        cuda_var = upper in ("CUDA_PATH", "CUDA_HOME") or upper.startswith("CUDA_PATH_V")
        if cuda_var and environ[name]:
            cuda.append(_key_windows(environ[name]) + "\\BIN")

    def keys(*paths: Optional[str]) -> Tuple[str, ...]:
        return tuple(dict.fromkeys(_key_windows(p) for p in paths if p))

    this_roots = keys(python.prefix, python.exec_prefix)
    base_roots = keys(python.base_prefix, python.base_exec_prefix)
    sites = [r + "\\LIB\\SITE-PACKAGES" for r in this_roots]
    if python.user_site_enabled and python.user_site:
        sites.append(_key_windows(python.user_site))
    return _Facts(
        windows_keys=windows_keys,
        system32_keys=system32_keys,
        program_keys=program_keys,
        cuda_keys=tuple(cuda),
        this_roots=this_roots,
        base_roots=base_roots,
        this_sites=tuple(dict.fromkeys(sites)),
        look_into_network=look_into_network,
    )


def _site_root(key: str) -> Optional[str]:
    """The environment root of a folder inside a ``site-packages`` (key form), else ``None``."""
    comps = key.split("\\")
    try:
        at = comps.index("SITE-PACKAGES")
    except ValueError:
        return None
    if at >= 1 and comps[at - 1] == "LIB":
        return "\\".join(comps[: at - 1])
    if at >= 2 and comps[at - 1].startswith("PYTHON") and comps[at - 2] == "LIB":
        return "\\".join(comps[: at - 2])
    return "\\".join(comps[:at])


_CONDA_BIN_TAILS = (("LIBRARY", "BIN"), ("LIBRARY", "MINGW-W64", "BIN"), ("LIBRARY", "USR", "BIN"))


def _conda_root(key: str) -> Optional[str]:
    comps = key.split("\\")
    for tail in _CONDA_BIN_TAILS:
        if len(comps) > len(tail) and tuple(comps[-len(tail):]) == tail:
            return "\\".join(comps[: -len(tail)])
    return None


def _is_system(entry: PathEntry, folder_keys: Sequence[str], facts: _Facts) -> bool:
    raw = _upper(entry.raw.lstrip('"'))
    if raw.startswith(("%SYSTEMROOT%", "%WINDIR%")):
        return True
    keys = list(folder_keys) + ([entry.normalized] if entry.normalized else [])
    return any(_under(k, w) for k in keys for w in facts.windows_keys)


def _safe_listdir(view: FileView, folder: str) -> Optional[Mapping[str, str]]:
    """The folder's names (lower-case keys), or ``None`` when it does not exist."""
    try:
        if view.host_path(folder) is None:
            return None
        return view.listdir(folder)
    except (OSError, ValueError):
        return {}


def classify_path(
    parsed: ParsedPath,
    *,
    view: Optional[FileView] = None,
    python: Optional[InterpreterFacts] = None,
    environ: Optional[Mapping[str, str]] = None,
    look_into_network: bool = False,
) -> ParsedPath:
    """Add folder-based and position-based issues to every entry of ``parsed``.

    ``view`` (default :class:`~torchdll.fsview.NativeView`) is asked what each folder holds;
    ``python`` (default :meth:`Interpreter.current`) tells this environment from others;
    ``environ`` (default ``os.environ``) gives ``SystemRoot``/``windir``, ``ProgramFiles*`` and
    ``CUDA_PATH*``. Network folders are not looked into unless ``look_into_network``. System
    folders are not listed (they are never removed; DLLs dropped into System32 are a separate
    check). Entries are returned in the same order with the same ``raw`` text.
    """
    view = NativeView() if view is None else view
    python = Interpreter.current() if python is None else python
    env: Mapping[str, str] = os.environ if environ is None else environ
    if parsed.syntax is PathSyntax.POSIX:
        return _classify_posix(parsed, view)
    facts = _facts(env, python, look_into_network)
    first_pass = [_classify_entry(e, view, facts, parsed.syntax) for e in parsed.entries]
    return replace(parsed, entries=tuple(_positional(first_pass, facts)))


def _classify_posix(parsed: ParsedPath, view: FileView) -> ParsedPath:
    out: List[PathEntry] = []
    seen: Dict[str, int] = {}
    for e in parsed.entries:
        issues = list(e.issues)
        if e.folders:
            try:
                exists = view.host_path(e.folders[0]) is not None
            except (OSError, ValueError):
                exists = True
            if not exists:
                issues.append(_issue(EntryKind.MISSING, Severity.INFO, "the folder does not exist"))
        if e.normalized:
            first = seen.setdefault(e.normalized, e.index)
            if first != e.index:
                issues.append(_issue(EntryKind.DUPLICATE, Severity.INFO,
                                     f"the same folder as entry #{first + 1}"))
        out.append(replace(e, issues=_sorted(issues)))
    return replace(parsed, entries=tuple(out))


def _sorted(issues: Iterable[EntryIssue]) -> Tuple[EntryIssue, ...]:
    unique: Dict[EntryKind, EntryIssue] = {}
    for issue in issues:
        unique.setdefault(issue.code, issue)
    return tuple(sorted(unique.values(), key=lambda i: _PRECEDENCE[i.code]))


def _classify_entry(entry: PathEntry, view: FileView, facts: _Facts, syntax: PathSyntax) -> PathEntry:
    issues = list(entry.issues)
    folders = [_clean_windows(f) for f in entry.folders]
    keys = [_upper(f) for f in folders]
    system = _is_system(entry, keys, facts)
    if system:
        issues.append(_issue(EntryKind.SYSTEM_DIR, Severity.INFO,
                             "a Windows system folder: never removed"))
    if len(folders) > 1 and entry.raw != entry.expanded and '"' not in entry.raw:
        found: List[EntryIssue] = []
        shown: List[str] = []
        for folder, key in zip(folders, keys):
            if any(_under(key, w) for w in facts.windows_keys):
                continue
            for issue in _folder_issues(folder, key, view, facts):
                found.append(issue)
                shown.append(f"{folder}: {issue.code.value}")
        serious = any(i.severity is not Severity.INFO for i in found)
        issues.append(_issue(
            EntryKind.VARIABLE_LIST, Severity.WARNING if serious else Severity.INFO,
            f"a variable that expands to {len(folders)} folders here (a list such as %PATH%): "
            "reported, never removed as a whole; edit the variable itself"
            + (f" ({'; '.join(shown)})" if shown else "")))
        return replace(entry, issues=_sorted(issues))
    if system:
        return replace(entry, issues=_sorted(issues))
    for folder, key in zip(folders, keys):
        issues.extend(_folder_issues(folder, key, view, facts))
    return replace(entry, issues=_sorted(issues))


def _folder_issues(folder: str, key: str, view: FileView, facts: _Facts) -> List[EntryIssue]:
    out: List[EntryIssue] = []
    absolute = (len(key) >= 3 and key[1] == ":" and key[2] == "\\") or key.startswith("\\\\")
    if not absolute:
        return out  # relative entries were flagged while parsing; never looked into
    network = key.startswith("\\\\")
    names: Optional[Mapping[str, str]] = {}
    if not network or facts.look_into_network:
        names = _safe_listdir(view, folder)
    if names is None:
        out.append(_issue(EntryKind.MISSING, Severity.INFO, "the folder does not exist"))
        names = {}
    dlls = {n for n in names if n.endswith(".dll")}
    site_root = _site_root(key)
    this_env = any(_under(key, root) for root in facts.this_roots)
    ours = this_env or any(_under(key, root) for root in facts.base_roots)
    torch_names = dlls & TORCH_MARKER_DLLS

    if "nvcuda.dll" in dlls:
        out.append(_issue(EntryKind.NVCUDA_PROVIDER, Severity.INFO,
                          "holds nvcuda.dll (a CUDA driver provider such as ZLUDA): kept, torch's "
                          "PATH fallback needs it to load CUDA builds without the NVIDIA driver"))

    if site_root is not None and dlls:
        in_this_site = any(_under(key, site) for site in facts.this_sites)
        if in_this_site:
            what = "torch's own DLL folder" if torch_names else "a DLL folder"
            out.append(_issue(EntryKind.THIS_ENV_DLL_DIR, Severity.WARNING,
                              f"{what} inside this environment's site-packages ({_names(dlls)}): "
                              "packages add their DLL folders themselves when imported (torch with "
                              "os.add_dll_directory); on PATH it is searched by every process, "
                              "including other environments with other torch versions "
                              "(WinError 1114/127/182)"))
        elif torch_names:
            out.append(_issue(EntryKind.FOREIGN_TORCH_LIB, Severity.ERROR,
                              f"another environment's torch\\lib ({_parent_of(folder, site_root) or folder}): holds "
                              f"{_names(torch_names)}; torch's PATH fallback and by-name loads "
                              "(cuDNN, plugins) can bind these instead of this environment's "
                              "copies (WinError 1114/127/182)"))
        else:
            out.append(_issue(EntryKind.OTHER_ENV_DLL_DIR, Severity.WARNING,
                              f"inside another Python environment's site-packages "
                              f"({_parent_of(folder, site_root) or folder}) and holds DLLs ({_names(dlls)}): by-name "
                              "loads can bind them instead of this environment's copies"))
    elif torch_names and not ours:
        out.append(_issue(EntryKind.FOREIGN_TORCH_LIB, Severity.ERROR,
                          f"holds PyTorch DLLs ({_names(torch_names)}) that are not this "
                          "environment's torch (a libtorch or another install): torch's PATH "
                          "fallback and by-name loads can bind them (WinError 1114/127/182)"))

    conda_root = _conda_root(key)
    foreign_conda = False
    if conda_root is not None and not ours and site_root is None:
        root_names = _safe_listdir(view, _parent_of(folder, conda_root)) or {}
        if "conda-meta" in root_names or "python.exe" in root_names:
            foreign_conda = True
            shadow = {n for n in dlls if _is_shadowing(n)}
            held = f" (holds {_names(shadow)})" if shadow else ""
            out.append(_issue(EntryKind.FOREIGN_CONDA_BIN, Severity.WARNING,
                              f"another conda environment's Library\\bin "
                              f"({_parent_of(folder, conda_root)}){held}: its msvcp140.dll, "
                              "libiomp5md.dll or MKL can be taken instead of the ones this "
                              "environment's torch expects (conda base on PATH)"))

    cuda_named = {n for n in dlls if _is_cuda(n)}
    if site_root is None and (
        "\\NVIDIA GPU COMPUTING TOOLKIT\\CUDA\\" in key + "\\"
        or key in facts.cuda_keys
        or cuda_named
    ):
        held = f" ({_names(cuda_named)})" if cuda_named else ""
        out.append(_issue(EntryKind.CUDA_TOOLKIT_BIN, Severity.WARNING,
                          f"a CUDA toolkit or cuDNN folder{held}: lazy by-name loads of cuDNN/"
                          "cuBLAS can take these instead of the versions torch bundles"))

    if not this_env and not ours:
        shadow = {n for n in dlls if _is_shadowing(n)} - TORCH_MARKER_DLLS
        if shadow and not torch_names and site_root is None and not foreign_conda:
            out.append(_issue(EntryKind.SHADOWING_DLLS, Severity.WARNING,
                              f"holds torch-named or runtime DLLs ({_names(shadow)}): System32 is "
                              "searched before PATH, but names System32 lacks (OpenMP, MKL, or "
                              "msvcp140.dll without the VC++ redistributable) are taken from here"))
        python_dlls = {n for n in dlls if _PYTHON_DLL.match(n)}
        if (python_dlls or "python.exe" in names) and site_root is None and conda_root is None:
            what = _names(python_dlls) if python_dlls else "python.exe"
            out.append(_issue(EntryKind.OTHER_PYTHON, Severity.INFO,
                              f"another Python installation's folder ({what}): 'python' and 'pip' "
                              "typed in a shell may start that interpreter"))
    return out


def _parent_of(folder: str, root_key: str) -> str:
    """The prefix of ``folder`` (original case) whose key is ``root_key`` (``_upper`` keeps lengths)."""
    return folder[: len(root_key)]


def _positional(entries: List[PathEntry], facts: _Facts) -> List[PathEntry]:
    """Duplicates, and user-writable entries ahead of the Windows folders."""
    def is_core_system(e: PathEntry) -> bool:
        if not e.has(EntryKind.SYSTEM_DIR):
            return False
        return e.normalized in facts.windows_keys or e.normalized in facts.system32_keys or _upper(
            e.raw
        ).startswith(("%SYSTEMROOT%", "%WINDIR%"))

    first_system = next((e.index for e in entries if is_core_system(e)), None)
    def is_system32(e: PathEntry) -> bool:
        if not e.has(EntryKind.SYSTEM_DIR):
            return False
        raw = _upper(e.raw).rstrip("\\")
        return e.normalized in facts.system32_keys or raw in ("%SYSTEMROOT%\\SYSTEM32", "%WINDIR%\\SYSTEM32")

    first_system32 = next((e.index for e in entries if is_system32(e)), None)
    seen: Dict[Tuple[bool, str], PathEntry] = {}
    out: List[PathEntry] = []
    for e in entries:
        issues = list(e.issues)
        if e.normalized:
            dup_key = ('"' in e.raw, e.normalized)
            first = seen.setdefault(dup_key, e)
            if first is not e:
                issues.append(_issue(EntryKind.DUPLICATE, Severity.INFO,
                                     f"the same folder as entry #{first.index + 1} ({first.raw!r}): "
                                     "searched once, the later copy only adds length"))
        if (
            first_system is not None
            and e.index < first_system
            and e.folders
            and not e.has(EntryKind.SYSTEM_DIR)
            and not e.has(EntryKind.RELATIVE)
            and not e.has(EntryKind.UNC)
            and not any(_under(_key_windows(f), p) for f in e.folders for p in facts.program_keys)
        ):
            issues.append(_issue(EntryKind.USER_WRITABLE_AHEAD, Severity.INFO,
                                 "comes before the Windows folders in this PATH and lies outside "
                                 "Windows and Program Files (usually writable without admin rights): "
                                 "programs found through PATH are taken from here first"))
        shadow = next((i for i in issues if i.code is EntryKind.SHADOWING_DLLS), None)
        if shadow is not None and first_system32 is not None and e.index < first_system32:
            issues[issues.index(shadow)] = replace(
                shadow, reason=shadow.reason + "; it also comes before System32 in this PATH, so "
                "tools that walk PATH in order (torchvision on Python 3.8 adds every PATH folder "
                "as a DLL directory) see it first")
        out.append(replace(e, issues=_sorted(issues)))
    return out


def analyze_path(
    value: str,
    syntax: PathSyntax = PathSyntax.PROCESS,
    *,
    reg_type: str = "REG_EXPAND_SZ",
    environ: Optional[Mapping[str, str]] = None,
    view: Optional[FileView] = None,
    python: Optional[InterpreterFacts] = None,
    look_into_network: bool = False,
) -> ParsedPath:
    """:func:`parse_path` then :func:`classify_path`."""
    parsed = parse_path(value, syntax, reg_type=reg_type, environ=environ)
    return classify_path(parsed, view=view, python=python, environ=environ,
                         look_into_network=look_into_network)
