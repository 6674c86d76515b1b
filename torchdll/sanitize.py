"""Sanitize a PATH: decide what to remove under a :class:`PathPolicy`, and apply it on request.

:func:`plan_sanitize` is pure: it parses and classifies a value (:mod:`torchdll.pathenv`) and
returns a :class:`SanitizeResult` -- the new value, every removed entry with the issues it was
removed for, and the kept entries with what is only reported. :func:`sanitize_path` is the front
end for the current process: by default it reads ``os.environ["PATH"]``, writes the result back
and logs each removed entry (logger ``"torchdll"``, level ``WARNING``: the process environment
was changed without the caller asking for each change, so it must show without any logging
set-up; silence it with ``logging.getLogger("torchdll").setLevel(logging.ERROR)``).

Guarantees (property-tested): entries are only removed, never added, reordered or rewritten;
the result is a fixed point (sanitizing it again removes nothing); ``%SystemRoot%`` and the
folders below it are never removed; kept entries keep their exact text (quotes, ``%VARS%``).
The persistent Path in the registry is repaired by :mod:`torchdll.registry`.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, replace
from typing import (
    Any,
    Dict,
    FrozenSet,
    List,
    Mapping,
    MutableMapping,
    NamedTuple,
    Optional,
    Tuple,
    Union,
)

from .fsview import FileView, NativeView
from .pathenv import (
    EntryIssue,
    EntryKind,
    Interpreter,
    InterpreterFacts,
    PathEntry,
    PathSyntax,
    Severity,
    analyze_path,
)

__all__ = [
    "DEFAULT_POLICY",
    "MINIMAL_POLICY",
    "POLICIES",
    "REPORT_ONLY_POLICY",
    "STRICT_POLICY",
    "PathPolicy",
    "Removal",
    "SanitizeResult",
    "plan_sanitize",
    "sanitize_path",
]

_log = logging.getLogger("torchdll")


# --------------------------------------------------------------------------------------------
# Policy and plan
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PathPolicy:
    """Which kinds of entries a sanitize removes; everything else is reported, not removed.

    ``strip``: kinds removed from a Windows PATH (process or registry value).
    ``strip_posix``: kinds removed from a POSIX PATH. Empty by default: on Linux and macOS PATH
    is not a library search path, so torchdll leaves it alone unless asked.
    ``keep_nvcuda_providers``: keep folders holding ``nvcuda.dll`` (ZLUDA-style set-ups need
    them on PATH) even when they also match ``strip``.

    System folders (``%SystemRoot%`` and below) are never removed, whatever the policy; a
    ``%VAR%`` expanding to several folders is removed only when ``strip`` names
    :attr:`~torchdll.pathenv.EntryKind.VARIABLE_LIST` (no named policy does).

    Named policies (:data:`POLICIES`): ``default`` strips DLL folders inside any environment's
    site-packages (this one's: the seed case; another's: foreign torch/CUDA bundles), other
    torch ``lib`` folders, empty, relative and invalid entries; ``minimal`` only the DLL folders;
    ``strict`` also foreign conda ``Library\\bin``, CUDA toolkit folders, folders with shadowing
    runtime DLLs, quoted, unexpanded, duplicate and missing entries; ``report-only`` nothing.
    """

    name: str = "default"
    strip: FrozenSet[EntryKind] = frozenset({
        EntryKind.THIS_ENV_DLL_DIR,
        EntryKind.FOREIGN_TORCH_LIB,
        EntryKind.OTHER_ENV_DLL_DIR,
        EntryKind.EMPTY,
        EntryKind.RELATIVE,
        EntryKind.INVALID,
    })
    strip_posix: FrozenSet[EntryKind] = frozenset()
    keep_nvcuda_providers: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "strip", frozenset(EntryKind(k) for k in self.strip))
        object.__setattr__(self, "strip_posix", frozenset(EntryKind(k) for k in self.strip_posix))

    @classmethod
    def named(cls, name: str) -> PathPolicy:
        """One of :data:`POLICIES` (``default``, ``minimal``, ``strict``, ``report-only``)."""
        try:
            return POLICIES[name]
        except KeyError:
            raise ValueError(f"unknown PATH policy {name!r} (choose from {', '.join(POLICIES)})") from None

    def removal_reasons(self, entry: PathEntry, syntax: PathSyntax) -> Tuple[EntryIssue, ...]:
        """The issues for which this policy removes ``entry`` (empty: keep it)."""
        if entry.has(EntryKind.SYSTEM_DIR):
            return ()
        if entry.has(EntryKind.VARIABLE_LIST) and EntryKind.VARIABLE_LIST not in self.strip:
            return ()
        if self.keep_nvcuda_providers and entry.has(EntryKind.NVCUDA_PROVIDER):
            return ()
        strip = self.strip_posix if syntax is PathSyntax.POSIX else self.strip
        return tuple(issue for issue in entry.issues if issue.code in strip)


DEFAULT_POLICY = PathPolicy()
MINIMAL_POLICY = PathPolicy(
    name="minimal",
    strip=frozenset({EntryKind.THIS_ENV_DLL_DIR, EntryKind.FOREIGN_TORCH_LIB, EntryKind.OTHER_ENV_DLL_DIR}),
)
STRICT_POLICY = PathPolicy(
    name="strict",
    strip=DEFAULT_POLICY.strip | {
        EntryKind.FOREIGN_CONDA_BIN,
        EntryKind.CUDA_TOOLKIT_BIN,
        EntryKind.SHADOWING_DLLS,
        EntryKind.QUOTED,
        EntryKind.UNEXPANDED,
        EntryKind.DUPLICATE,
        EntryKind.MISSING,
    },
    strip_posix=frozenset({EntryKind.EMPTY, EntryKind.RELATIVE, EntryKind.INVALID, EntryKind.DUPLICATE}),
)
REPORT_ONLY_POLICY = PathPolicy(name="report-only", strip=frozenset())
#: The named policies, by name.
POLICIES: Dict[str, PathPolicy] = {
    p.name: p for p in (DEFAULT_POLICY, MINIMAL_POLICY, STRICT_POLICY, REPORT_ONLY_POLICY)
}


class Removal(NamedTuple):
    """A removed entry and the issues it was removed for (unpacks as ``entry, reasons``)."""

    entry: PathEntry
    reasons: Tuple[EntryIssue, ...]

    @property
    def reason(self) -> str:
        return "; ".join(str(r) for r in self.reasons)


@dataclass(frozen=True)
class SanitizeResult:
    """What a sanitize decided (and whether it was applied).

    ``old_value``/``new_value``: the PATH before and after. ``removed``: every removed entry with
    the issues it was removed for, in PATH order (indices are those of ``old_value``). ``kept``:
    the entries of ``new_value`` with their (reported, not acted on) issues, indices of
    ``old_value``. ``applied``: ``new_value`` was written to the environment. ``policy``: the
    policy's name. ``syntax``/``reg_type``: how the value was read.
    """

    old_value: str
    new_value: str
    removed: Tuple[Removal, ...]
    kept: Tuple[PathEntry, ...]
    applied: bool = False
    policy: str = "default"
    syntax: PathSyntax = PathSyntax.PROCESS
    reg_type: Optional[str] = None

    @property
    def changed(self) -> bool:
        return self.new_value != self.old_value

    @property
    def reported(self) -> Tuple[PathEntry, ...]:
        """Kept entries that still have issues (other than being a system folder)."""
        return tuple(e for e in self.kept if any(i.code is not EntryKind.SYSTEM_DIR for i in e.issues))

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready view (used by ``torchdll fix-path --json``)."""
        return {
            "syntax": self.syntax.value,
            "reg_type": self.reg_type,
            "policy": self.policy,
            "old_value": self.old_value,
            "new_value": self.new_value,
            "changed": self.changed,
            "applied": self.applied,
            "removed": [
                {**_entry_dict(r.entry), "removed_for": [i.code.value for i in r.reasons]}
                for r in self.removed
            ],
            "kept": [_entry_dict(e) for e in self.kept],
        }


def _entry_dict(e: PathEntry) -> Dict[str, Any]:
    return {
        "index": e.index,
        "raw": e.raw,
        "expanded": e.expanded,
        "kind": e.kind.value,
        "issues": [
            {"code": i.code.value, "severity": i.severity.value, "reason": i.reason} for i in e.issues
        ],
    }


_ALONE = EntryIssue(EntryKind.EMPTY, Severity.INFO,
                    "an empty entry left on its own: an empty PATH has no entries")

#: A value stops shrinking after at most this many rounds (each round removes one entry or more).
_MAX_ROUNDS = 64


def plan_sanitize(
    value: str,
    syntax: PathSyntax = PathSyntax.PROCESS,
    *,
    reg_type: str = "REG_EXPAND_SZ",
    policy: PathPolicy = DEFAULT_POLICY,
    environ: Optional[Mapping[str, str]] = None,
    view: Optional[FileView] = None,
    python: Optional[InterpreterFacts] = None,
    look_into_network: bool = False,
) -> SanitizeResult:
    """Decide what ``policy`` removes from ``value``; change nothing.

    The decision is repeated on its own result until nothing more goes (position-dependent
    findings such as duplicates can change once entries are removed), so the plan is
    idempotent: planning ``new_value`` again removes nothing. Entries are only ever removed,
    never added, reordered or rewritten; kept entries keep their exact text.
    """
    view = NativeView() if view is None else view
    python = Interpreter.current() if python is None else python
    current = analyze_path(value, syntax, reg_type=reg_type, environ=environ, view=view,
                           python=python, look_into_network=look_into_network)
    origin = [e.index for e in current.entries]  # original index of each current entry
    removed: List[Removal] = []
    for _ in range(_MAX_ROUNDS):
        decisions = [(e, policy.removal_reasons(e, current.syntax)) for e in current.entries]
        if not any(reasons for _, reasons in decisions):
            break
        keep = [e for e, reasons in decisions if not reasons]
        removed.extend(
            Removal(replace(e, index=origin[e.index]), reasons) for e, reasons in decisions if reasons
        )
        origin = [origin[e.index] for e in keep]
        current = analyze_path(current.serialize(keep), current.syntax, reg_type=reg_type,
                               environ=environ, view=view, python=python,
                               look_into_network=look_into_network)
        # A POSIX value left with one empty entry serializes to "", which has no entries.
        for e in keep[len(current.entries):]:
            removed.append(Removal(replace(e, index=origin[e.index]), (_ALONE,)))
        origin = origin[: len(current.entries)]
    removed.sort(key=lambda r: r.entry.index)
    kept = tuple(replace(e, index=origin[e.index]) for e in current.entries)
    return SanitizeResult(
        old_value=value,
        new_value=current.serialize(),
        removed=tuple(removed),
        kept=kept,
        applied=False,
        policy=policy.name,
        syntax=current.syntax,
        reg_type=current.reg_type,
    )


# --------------------------------------------------------------------------------------------
# The current process
# --------------------------------------------------------------------------------------------


def default_syntax(platform: Optional[str] = None) -> PathSyntax:
    """:attr:`PathSyntax.PROCESS` on Windows, :attr:`PathSyntax.POSIX` elsewhere."""
    return PathSyntax.PROCESS if (platform or sys.platform) == "win32" else PathSyntax.POSIX


def _path_key(environ: Mapping[str, str], windows: bool) -> Optional[str]:
    """The spelling of the PATH variable in ``environ`` (``Path`` on Windows is common)."""
    if "PATH" in environ:
        return "PATH"
    if windows:
        for key in sorted(environ):
            if key.upper() == "PATH":
                return key
    return None


def sanitize_path(
    path: Union[str, Any, None] = None,
    *,
    environ: Optional[MutableMapping[str, str]] = None,
    policy: PathPolicy = DEFAULT_POLICY,
    apply: Optional[bool] = None,
    syntax: Optional[PathSyntax] = None,
    reg_type: str = "REG_EXPAND_SZ",
    view: Optional[FileView] = None,
    python: Optional[InterpreterFacts] = None,
    look_into_network: bool = False,
) -> SanitizeResult:
    """Remove what ``policy`` strips from a PATH; by default from this process's own PATH.

    ``path``: ``None`` reads ``PATH`` from ``environ`` (default ``os.environ``); a string is
    taken as given; a :class:`~torchdll.snapshot.RegistryValue` is read as a registry value with
    its type (plan only: the persistent Path is repaired by :mod:`torchdll.registry`).
    ``apply``: write ``new_value`` back to ``environ["PATH"]`` -- by default only when ``path``
    is ``None`` (the current process). Each removed entry is logged with its reason on the
    ``"torchdll"`` logger at ``WARNING`` when applied. ``syntax`` defaults to the process PATH
    rules of this OS (:func:`default_syntax`); on POSIX the default policy removes nothing.
    ``view``/``python``: see :func:`torchdll.pathenv.classify_path`.

    Raises :class:`~torchdll.errors.PathValueError` only when a value must be written and cannot
    be (it would still hold a NUL character), and :class:`ValueError` for applying a registry
    value. Odd input never raises otherwise.
    """
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    if path is not None and not isinstance(path, str):
        value_attr, type_attr = getattr(path, "value", None), getattr(path, "type", None)
        if not isinstance(value_attr, str) or not isinstance(type_attr, str):
            raise TypeError(f"path must be a str or a RegistryValue, not {type(path).__name__}")
        if apply:
            raise ValueError("a registry value is repaired with torchdll.registry.apply_path_repair, "
                             "not applied to the process environment")
        return plan_sanitize(value_attr, PathSyntax.REGISTRY, reg_type=type_attr, policy=policy,
                             environ=env, view=view, python=python,
                             look_into_network=look_into_network)
    syn = default_syntax() if syntax is None else PathSyntax(syntax)
    if apply is None:
        apply = path is None
    if apply and syn is PathSyntax.REGISTRY:
        raise ValueError("a registry value is repaired with torchdll.registry.apply_path_repair, "
                         "not applied to the process environment")
    key = _path_key(env, syn.windows)
    value = (env.get(key, "") if key is not None else "") if path is None else path
    result = plan_sanitize(value, syn, reg_type=reg_type, policy=policy, environ=env, view=view,
                           python=python, look_into_network=look_into_network)
    if not apply or not result.changed:
        for removal in result.removed:
            _log.debug("sanitize_path (plan): would remove \"%s\": %s", removal.entry.raw, removal.reason)
        return result
    if "\x00" in result.new_value:
        from .errors import PathValueError

        raise PathValueError("PATH", "the sanitized value still holds a NUL character; it cannot "
                                     "be put into the environment")
    env[key or "PATH"] = result.new_value
    for removal in result.removed:
        shown = f'"{removal.entry.raw}"' if removal.entry.raw else "(empty entry)"
        _log.warning("removed %s from this process's PATH: %s", shown, removal.reason)
    _log.info("sanitize_path removed %d PATH entr%s for this process only; 'torchdll fix-path' "
              "shows how to repair the persistent Windows Path", len(result.removed),
              "y" if len(result.removed) == 1 else "ies")
    return replace(result, applied=True)
