"""A static model of how dyld (macOS 12+, "dyld 4") finds one dylib for one load command.

:func:`resolve_install_name` answers "which file does dyld bind the install name ``name``,
named by a load command of ``loader``, to; by which rule; and what did it try on the way". It
follows dyld's ``Loader::getLoader``/``Loader::forEachPath``, which compose
``ProcessConfig::PathOverrides::forEachPathVariant`` (the ``DYLD_*`` variables) with
``Loader::forEachResolvedAtPathVar`` (the ``@`` prefixes), and ``man 1 dyld``:

1. **Overrides** (``DYLD_FRAMEWORK_PATH`` / ``DYLD_LIBRARY_PATH``). For a framework install name
   (``.../Foo.framework/Foo`` or ``.../Foo.framework/Versions/A/Foo``) each
   ``DYLD_FRAMEWORK_PATH`` directory is tried with the framework's partial path
   (``Foo.framework/Versions/A/Foo``); for any other install name each ``DYLD_LIBRARY_PATH``
   directory is tried with the install name's **leaf name**: ``@rpath/libc10.dylib`` becomes
   ``$DIR/libc10.dylib``, *before* the install path itself is looked at ("For each dylib that a
   program uses, the dynamic linker looks for its leaf name in each directory in
   DYLD_LIBRARY_PATH", dyld(1)). This is how a stray ``libomp.dylib`` in a
   ``DYLD_LIBRARY_PATH`` directory replaces torch's own. dyld 4 consults only one of the two
   variables per name (dyld 3 and older also tried ``DYLD_LIBRARY_PATH`` for frameworks).
2. **The install path**, with its ``@`` prefix expanded (``forEachResolvedAtPathVar``):

   * ``@loader_path/...`` -> the directory of the image whose load command names the library;
   * ``@executable_path/...`` -> the directory of the main executable;
   * ``@rpath/...`` -> each ``LC_RPATH`` entry in turn, walking the **run-path stack**: first the
     loading image's own ``LC_RPATH`` entries, then those of the image that loaded it, and so
     on back to the main executable ("The run path stack is built from the LC_RPATH load
     commands in the dependency chain that lead to the current dylib load", dyld(1); dyld 4
     walks its ``LoadChain`` from the current image through ``previous`` links). An
     ``LC_RPATH`` that starts with ``@loader_path`` is relative to the image *that holds the
     LC_RPATH*, not to the one being loaded; ``@executable_path`` to the main executable; an
     absolute one is used as is; a relative one is relative to the current directory;
   * any other name starting with ``@`` is never tried as a path;
   * an absolute name is tried as is, a relative one relative to the current directory.
3. **Fallbacks**: each ``DYLD_FALLBACK_LIBRARY_PATH`` directory with the leaf name (frameworks:
   ``DYLD_FALLBACK_FRAMEWORK_PATH`` with the partial path). Only when the variable is *unset*
   does dyld use its default, ``/usr/local/lib:/usr/lib`` (frameworks:
   ``/Library/Frameworks:/System/Library/Frameworks``); a candidate equal to the install path is
   not tried twice. (The man page of macOS 14 says executables built in fall 2023 or later get
   no default fallback at all, and restricted processes only ``/usr/lib``: set
   :attr:`DyldContext.default_fallback` for those.)

The first candidate that exists and is loadable wins; an existing file that cannot be loaded
(wrong architecture, not Mach-O: :attr:`DyldContext.check`) is skipped and the search goes on,
as dyld does ("tried: '...' (mach-o file, but is an incompatible architecture ...)").

**The dyld shared cache.** From macOS 11 the system libraries live only in the dyld shared
cache, not on disk (macOS Big Sur 11.0.1 release notes: "copies of dynamic libraries are no
longer present on the filesystem"), so a file-exists test on ``/usr/lib/libSystem.B.dylib``
fails on a real Mac too. Install names for which :attr:`DyldContext.system_library` is true
(by default anything under ``/usr/lib/`` or ``/System/Library/``) are therefore taken as
present, with :attr:`DyldResolution.shared_cache` set; and, as dyld 4 does on customer caches
for a path in the cache that is not overridable, ``DYLD_LIBRARY_PATH`` and the fallbacks are not
consulted for them. The shortcut applies to install names only, never to the directories the
search builds (``/usr/lib/libomp.dylib`` reached through the fallback must really exist).

**DYLD_* and SIP.** dyld reads ``DYLD_*`` once, at launch. "Any dynamic linker (dyld)
environment variables, such as DYLD_LIBRARY_PATH, are purged when launching protected
processes" (Apple, *System Integrity Protection Guide: Runtime Protections*): a SIP-protected
executable such as ``/usr/bin/python3`` (the Command Line Tools shim) never sees them, and
neither does the Python it runs. A hardened-runtime executable without the
``com.apple.security.cs.allow-dyld-environment-variables`` entitlement ignores them too. With
:attr:`DyldContext.env_allowed` left ``None``, the model drops every ``DYLD_*`` variable when
:func:`sip_protected` says the executable lives in a protected location.

``DYLD_INSERT_LIBRARIES`` names libraries loaded before the program's own dependencies; dyld
expands ``@executable_path`` in them but never ``@rpath`` or ``@loader_path``. :func:`closure`
resolves them and reports them as injected; :func:`dyld_environment_findings` lists them.

Not modelled: already-loaded images (an ``@rpath/`` name matching an image already in the
process by install name or by inode wins before any search, so load order can hide a missing
file), ``DYLD_VERSIONED_*_PATH`` overrides (listed by :func:`dyld_environment_findings` only),
``DYLD_IMAGE_SUFFIX``, ``DYLD_ROOT_PATH``, ``LC_DYLD_ENVIRONMENT`` of the main executable
(:class:`~torchdll._macho.MachOFacts` reads it; pass its values in ``environ``), the implicit
``@rpath/`` that ``dlopen("libfoo.dylib")`` adds for a bare leaf name, the Catalyst
``/System/iOSSupport`` prefix, ``realpath`` retries, code-signing and library-validation
failures, compatibility-version checks, and the exact contents of the shared cache.

Nothing here runs dyld: an injectable file-exists function answers what exists, so the same
code analyses a Mac, a mirrored tree or an unpacked wheel on Linux.
"""

from __future__ import annotations

import enum
import os
import posixpath
from dataclasses import dataclass, field, replace
from typing import (
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
)

from ._macho import DylibKind, DylibRef, MachOFacts, read_macho_facts
from .errors import InvalidImageError

__all__ = [
    "DEFAULT_FALLBACK_FRAMEWORK_PATH",
    "DEFAULT_FALLBACK_LIBRARY_PATH",
    "DYLD_PATH_VARIABLES",
    "DyldCandidate",
    "DyldClosure",
    "DyldContext",
    "DyldEdge",
    "DyldIssue",
    "DyldOutcome",
    "DyldResolution",
    "DyldRule",
    "closure",
    "dyld_environment_findings",
    "framework_partial_path",
    "leaf_name",
    "resolve_install_name",
    "sip_protected",
    "system_library",
]

#: dyld's default ``DYLD_FALLBACK_LIBRARY_PATH`` on macOS (``FallbackPathMode::classic``).
DEFAULT_FALLBACK_LIBRARY_PATH: Tuple[str, ...] = ("/usr/local/lib", "/usr/lib")
#: dyld's default ``DYLD_FALLBACK_FRAMEWORK_PATH`` on macOS.
DEFAULT_FALLBACK_FRAMEWORK_PATH: Tuple[str, ...] = (
    "/Library/Frameworks",
    "/System/Library/Frameworks",
)

#: The colon-separated directory lists dyld reads from the environment.
DYLD_PATH_VARIABLES = (
    "DYLD_LIBRARY_PATH",
    "DYLD_FRAMEWORK_PATH",
    "DYLD_FALLBACK_LIBRARY_PATH",
    "DYLD_FALLBACK_FRAMEWORK_PATH",
    "DYLD_VERSIONED_LIBRARY_PATH",
    "DYLD_VERSIONED_FRAMEWORK_PATH",
)

#: Locations SIP protects (System Integrity Protection Guide: /System, /usr except /usr/local,
#: /bin, /sbin). An executable under one of them launches with every DYLD_* variable purged.
_SIP_PREFIXES = ("/System/", "/usr/", "/bin/", "/sbin/")
_SIP_EXCEPTIONS = ("/usr/local/",)

#: Install names served by the dyld shared cache on macOS 11+ (never on disk there).
_SYSTEM_PREFIXES = ("/usr/lib/", "/System/Library/")

#: Most images :func:`closure` maps before it gives up (torch has a dozen).
MAX_CLOSURE_IMAGES = 4096


class DyldRule(str, enum.Enum):
    """Which step of dyld's search found (or was asked to find) a library."""

    DYLD_LIBRARY_PATH = "dyld-library-path"
    RPATH = "rpath"
    LOADER_PATH = "loader-path"
    EXECUTABLE_PATH = "executable-path"
    INSTALL_NAME = "install-name"
    DYLD_FALLBACK = "dyld-fallback"
    DYLD_FRAMEWORK_PATH = "dyld-framework-path"
    NOT_FOUND = "not-found"


class DyldOutcome(str, enum.Enum):
    """What became of one candidate path."""

    ABSENT = "absent"  # no such file
    REJECTED = "rejected"  # a file, but dyld could not use it (see ``reason``)
    SELECTED = "selected"


@dataclass(frozen=True)
class DyldCandidate:
    """One path dyld tried, the rule that built it and what became of it."""

    path: str
    rule: DyldRule
    outcome: DyldOutcome
    reason: Optional[str] = None


@dataclass(frozen=True)
class DyldResolution:
    """The outcome of resolving one install name for one load command.

    ``path`` is ``None`` (and ``rule`` :attr:`DyldRule.NOT_FOUND`) when nothing was found.
    ``shared_cache`` is true when the install name was taken as served by the dyld shared cache
    (``path`` is then the install name itself). ``candidates`` are the paths tried, in order.
    """

    name: str
    path: Optional[str]
    rule: DyldRule
    candidates: Tuple[DyldCandidate, ...] = ()
    notes: Tuple[str, ...] = ()
    shared_cache: bool = False

    @property
    def found(self) -> bool:
        return self.path is not None


def system_library(install_name: str) -> bool:
    """Whether an install name belongs to the OS (``/usr/lib/...``, ``/System/Library/...``):
    on macOS 11+ such libraries live in the dyld shared cache and not on disk."""
    return install_name.startswith(_SYSTEM_PREFIXES)


def sip_protected(executable: Optional[str]) -> bool:
    """Whether ``executable`` lies where SIP protects it (``/usr/bin/python3``, ``/bin/sh``...),
    so dyld purges ``DYLD_*`` when launching it. ``/usr/local`` is not protected."""
    if not executable:
        return False
    p = posixpath.normpath(executable)
    return p.startswith(_SIP_PREFIXES) and not p.startswith(_SIP_EXCEPTIONS)


def _isfile(path: str) -> bool:
    return os.path.isfile(path)


@dataclass(frozen=True)
class DyldContext:
    """Everything dyld consults for a search in one process.

    ``environ`` holds the process environment as dyld saw it at launch (only ``DYLD_*`` keys
    matter; others are ignored). ``executable`` is the main executable (``@executable_path``;
    ``None`` when unknown). ``exists(path)`` says whether a file exists (default
    :func:`os.path.isfile`); ``check(path)``, when given, returns ``None`` for a loadable file or
    the reason dyld would reject it (wrong architecture...). ``system_library(install_name)``
    says which install names the dyld shared cache serves. ``env_allowed``: whether dyld honours
    ``DYLD_*`` at all (``None``: unless :func:`sip_protected` says the executable is protected).
    ``default_fallback``/``default_framework_fallback`` are used only when the matching
    ``DYLD_FALLBACK_*`` variable is unset. ``cwd`` anchors relative paths (``None``: left
    relative).
    """

    environ: Mapping[str, str] = field(default_factory=dict)
    executable: Optional[str] = None
    exists: Callable[[str], bool] = _isfile
    check: Optional[Callable[[str], Optional[str]]] = None
    system_library: Callable[[str], bool] = system_library
    env_allowed: Optional[bool] = None
    default_fallback: Tuple[str, ...] = DEFAULT_FALLBACK_LIBRARY_PATH
    default_framework_fallback: Tuple[str, ...] = DEFAULT_FALLBACK_FRAMEWORK_PATH
    cwd: Optional[str] = None

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], executable: Optional[str] = None, **kwargs: object
    ) -> "DyldContext":
        """A context keeping only the ``DYLD_*`` variables of ``environ``."""
        dyld = {k: v for k, v in environ.items() if k.startswith("DYLD_")}
        return cls(environ=dyld, executable=executable, **kwargs)  # type: ignore[arg-type]

    @property
    def dyld_env_honoured(self) -> bool:
        if self.env_allowed is not None:
            return self.env_allowed
        return not sip_protected(self.executable)

    def variable(self, name: str) -> Optional[List[str]]:
        """The directories of a ``DYLD_*`` list as dyld splits it (``None`` when unset or not
        honoured). Empty entries are kept: dyld joins them as ``"" + "/" + leaf``."""
        if not self.dyld_env_honoured:
            return None
        value = self.environ.get(name)
        return None if value is None else value.split(":")

    def inserted_libraries(self) -> List[str]:
        """``DYLD_INSERT_LIBRARIES`` entries (empty when unset, empty or not honoured)."""
        value = self.environ.get("DYLD_INSERT_LIBRARIES") if self.dyld_env_honoured else None
        return value.split(":") if value else []


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------


def leaf_name(path: str) -> str:
    """Everything after the last ``/`` (dyld's ``getLibraryLeafName``)."""
    return path.rsplit("/", 1)[-1]


def framework_partial_path(path: str) -> Optional[str]:
    """``Foo.framework/Versions/A/Foo`` for a framework install name, else ``None``
    (dyld's ``getFrameworkPartialPath``: the leaf must equal the framework's name)."""
    dot = path.rfind(".framework/")
    if dot < 0:
        return None
    start = path.rfind("/", 0, dot) + 1
    name = path[start:dot]
    if name and name == leaf_name(path):
        return path[start:]
    return None


def _concat(path: str, suffix: str) -> str:
    # dyld's concatenatePaths: no double slash when path ends and suffix starts with '/'
    if path.endswith("/") and suffix.startswith("/"):
        return path + suffix[1:]
    return path + suffix


def _expand_loader_path(value: str, image: str) -> Optional[str]:
    """dyld's ``expandAtLoaderPath``: ``@loader_path`` followed by ``/`` or nothing."""
    if not value.startswith("@loader_path") or value[12:13] not in ("/", ""):
        return None
    slash = image.rfind("/")
    if slash < 0:
        return None
    return image[:slash] + value[12:]


def _expand_executable_path(value: str, executable: Optional[str]) -> Optional[str]:
    """dyld's ``expandAtExecutablePath``."""
    if not value.startswith("@executable_path") or value[16:17] not in ("/", ""):
        return None
    if not executable:
        return None
    slash = executable.rfind("/")
    if slash < 0:
        return None
    if value[16:17] == "/":
        return executable[:slash] + value[16:]
    return executable[: slash + 1]


def _relative(ctx: DyldContext, path: str) -> str:
    if ctx.cwd and not path.startswith("/"):
        return posixpath.join(ctx.cwd, path)
    return path


# --------------------------------------------------------------------------------------------
# One search
# --------------------------------------------------------------------------------------------


class _Search:
    def __init__(self, ctx: DyldContext, name: str) -> None:
        self.ctx = ctx
        self.name = name
        self.candidates: List[DyldCandidate] = []
        self.notes: List[str] = []
        self.found: Optional[DyldCandidate] = None

    def attempt(self, path: str, rule: DyldRule) -> bool:
        """Try one candidate; ``True`` stops the search."""
        if not self.ctx.exists(path):
            self.candidates.append(DyldCandidate(path, rule, DyldOutcome.ABSENT))
            return False
        reason = self.ctx.check(path) if self.ctx.check is not None else None
        if reason is not None:
            self.candidates.append(DyldCandidate(path, rule, DyldOutcome.REJECTED, reason))
            return False
        cand = DyldCandidate(path, rule, DyldOutcome.SELECTED)
        self.candidates.append(cand)
        self.found = cand
        return True

    def result(self) -> DyldResolution:
        if self.found is None:
            return DyldResolution(self.name, None, DyldRule.NOT_FOUND, tuple(self.candidates),
                                  tuple(self.notes))
        return DyldResolution(self.name, self.found.path, self.found.rule,
                              tuple(self.candidates), tuple(self.notes))


def _rpath_expansions(
    ctx: DyldContext, tail: str, rpath_stack: Sequence[Tuple[str, Sequence[str]]], notes: List[str]
) -> Iterable[str]:
    for image, rpaths in rpath_stack:
        for rp in rpaths:
            expanded = _expand_loader_path(rp, image)
            if expanded is None and rp.startswith("@executable_path"):
                expanded = _expand_executable_path(rp, ctx.executable)
                if expanded is None:
                    notes.append(f"LC_RPATH {rp!r} of {image}: main executable unknown, "
                                 "not expanded")
                    continue
            if expanded is not None:
                yield _concat(expanded, tail)
            elif rp.startswith("/"):
                yield _concat(rp, tail)
            else:
                yield _relative(ctx, _concat(rp, tail))


def resolve_install_name(
    ctx: DyldContext,
    install_name: str,
    *,
    loader: str,
    rpath_stack: Sequence[Tuple[str, Sequence[str]]],
) -> DyldResolution:
    """Where dyld finds ``install_name`` when a load command of ``loader`` names it.

    ``rpath_stack`` is the run-path stack for this load: ``(image path, its raw LC_RPATH
    entries)`` pairs from the loading image itself (normally ``loader``) back through the
    images that loaded it to the main executable, innermost first. ``@loader_path`` in an
    LC_RPATH is expanded relative to the image of its own pair.
    """
    s = _Search(ctx, install_name)
    if not ctx.dyld_env_honoured and any(k.startswith("DYLD_") for k in ctx.environ):
        s.notes.append("DYLD_* variables are ignored: the executable is SIP-protected or does "
                       "not allow them (purged at launch)")

    if install_name.startswith("/") and ctx.system_library(install_name):
        s.notes.append("served by the dyld shared cache (macOS 11+: not on disk); "
                       "DYLD_* overrides do not apply")
        cand = DyldCandidate(install_name, DyldRule.INSTALL_NAME, DyldOutcome.SELECTED)
        return DyldResolution(install_name, install_name, DyldRule.INSTALL_NAME, (cand,),
                              tuple(s.notes), shared_cache=True)

    partial = framework_partial_path(install_name)
    leaf = leaf_name(install_name)

    # 1. DYLD_FRAMEWORK_PATH (frameworks) or DYLD_LIBRARY_PATH (leaf name)
    if partial is not None:
        for d in ctx.variable("DYLD_FRAMEWORK_PATH") or ():
            if s.attempt(_relative(ctx, f"{d}/{partial}"), DyldRule.DYLD_FRAMEWORK_PATH):
                return s.result()
    else:
        for d in ctx.variable("DYLD_LIBRARY_PATH") or ():
            if s.attempt(_relative(ctx, f"{d}/{leaf}"), DyldRule.DYLD_LIBRARY_PATH):
                return s.result()

    # 2. the install path, @-prefixes expanded
    if install_name.startswith("@loader_path") and install_name[12:13] in ("/", ""):
        expanded = _expand_loader_path(install_name, loader)
        if expanded is None:
            s.notes.append(f"@loader_path cannot be expanded: loader {loader!r} has no directory")
        elif s.attempt(expanded, DyldRule.LOADER_PATH):
            return s.result()
    elif install_name.startswith("@executable_path") and install_name[16:17] in ("/", ""):
        expanded = _expand_executable_path(install_name, ctx.executable)
        if expanded is None:
            s.notes.append("@executable_path cannot be expanded: main executable unknown")
        elif s.attempt(expanded, DyldRule.EXECUTABLE_PATH):
            return s.result()
    elif install_name.startswith("@rpath/"):
        tail = install_name[6:]
        if not any(rp for _img, rp in rpath_stack):
            s.notes.append("no LC_RPATH anywhere in the loading chain: @rpath cannot expand")
        for path in _rpath_expansions(ctx, tail, rpath_stack, s.notes):
            if s.attempt(path, DyldRule.RPATH):
                return s.result()
    elif install_name.startswith("@"):
        s.notes.append(f"dyld does not expand the prefix of {install_name!r}; "
                       "it is never tried as a path")
    else:
        if not install_name.startswith("/"):
            s.notes.append("relative install name: resolved against the current directory "
                           "(refused in hardened programs)")
        if s.attempt(_relative(ctx, install_name), DyldRule.INSTALL_NAME):
            return s.result()

    # 3. fallbacks (default only when the variable is unset)
    if partial is not None:
        dirs = ctx.variable("DYLD_FALLBACK_FRAMEWORK_PATH")
        tail_name = partial
        default = ctx.default_framework_fallback
    else:
        dirs = ctx.variable("DYLD_FALLBACK_LIBRARY_PATH")
        tail_name = leaf
        default = ctx.default_fallback
    for d in default if dirs is None else dirs:
        path = f"{d}/{tail_name}"
        if path == install_name:
            continue  # dyld does not try the original path twice
        if s.attempt(_relative(ctx, path), DyldRule.DYLD_FALLBACK):
            return s.result()
    return s.result()


# --------------------------------------------------------------------------------------------
# Closure
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DyldEdge:
    """One dependency of one image and where it resolved."""

    importer: str
    dependency: DylibRef
    resolution: DyldResolution

    @property
    def weak(self) -> bool:
        return self.dependency.kind is DylibKind.WEAK


@dataclass(frozen=True)
class DyldClosure:
    """Every image dyld would map to load ``root``, and every dependency edge.

    ``images`` are the files mapped from disk, ``root`` first, in the order dyld reaches them
    (shared-cache libraries are not files and are not listed). ``inserted`` are the
    ``DYLD_INSERT_LIBRARIES`` entries, resolved. ``invalid`` pairs a path with the reason it
    could not be read. ``executable_rpaths`` are the LC_RPATH entries of the main executable
    that close every run-path stack.
    """

    root: str
    arch: str
    images: Tuple[str, ...]
    edges: Tuple[DyldEdge, ...]
    inserted: Tuple[DyldResolution, ...] = ()
    invalid: Tuple[Tuple[str, str], ...] = ()
    executable_rpaths: Tuple[str, ...] = ()
    notes: Tuple[str, ...] = ()

    @property
    def unresolved(self) -> Tuple[DyldEdge, ...]:
        """Required (non-weak) dependencies dyld would not find: each one fails the load."""
        return tuple(e for e in self.edges if not e.resolution.found and not e.weak)

    @property
    def weak_missing(self) -> Tuple[DyldEdge, ...]:
        """Weak dependencies that are absent (dyld carries on without them)."""
        return tuple(e for e in self.edges if not e.resolution.found and e.weak)

    @property
    def system(self) -> Tuple[DyldEdge, ...]:
        """Edges served by the dyld shared cache."""
        return tuple(e for e in self.edges if e.resolution.shared_cache)

    @property
    def ok(self) -> bool:
        return not self.unresolved and not self.invalid

    def resolution_of(self, importer: str, install_name: str) -> Optional[DyldResolution]:
        for e in self.edges:
            if e.importer == importer and e.dependency.name == install_name:
                return e.resolution
        return None


def closure(
    ctx: DyldContext,
    path: str,
    *,
    arch: Optional[str] = None,
    read: Callable[..., MachOFacts] = read_macho_facts,
) -> DyldClosure:
    """Walk the dylib load commands of ``path`` recursively with :func:`resolve_install_name`.

    ``path`` is loaded as ``dlopen`` from the main executable loads a Python extension: its
    run-path stack is its own LC_RPATH entries, then the executable's (read from
    ``ctx.executable`` when that is a readable Mach-O file; an executable that is itself
    ``path`` is not counted twice). Each dependency's stack is its own entries on top of its
    loader's. Every image is walked once, from the first chain that reaches it (dyld maps a
    file once). Candidates that are not Mach-O or lack the root's architecture are skipped, as
    dyld skips them, unless ``ctx.check`` is given. Install names of the shared cache
    (``/usr/lib/*``, ``/System/Library/*`` by default) count as present and are not walked.

    Raises :class:`~torchdll.errors.InvalidImageError` when ``path`` itself is not a readable
    Mach-O image; any other unreadable file ends up in :attr:`DyldClosure.invalid` or as a
    rejected candidate.
    """
    root = os.fspath(path)
    root_facts = read(root, arch=arch)
    want = root_facts.arch
    cache: Dict[str, object] = {root: root_facts}

    def facts_of(p: str) -> object:
        if p not in cache:
            try:
                cache[p] = read(p, arch=want)
            except InvalidImageError as exc:
                cache[p] = exc.reason
        return cache[p]

    def check(p: str) -> Optional[str]:
        got = facts_of(p)
        return got if isinstance(got, str) else None

    walk_ctx = ctx if ctx.check is not None else replace(ctx, check=check)
    notes: List[str] = []

    exe_rpaths: Tuple[str, ...] = ()
    exe = ctx.executable
    tail_stack: List[Tuple[str, Sequence[str]]] = []
    if exe and exe != root and root_facts.filetype != 0x2:
        exe_facts = facts_of(exe) if ctx.exists(exe) else "not found"
        if isinstance(exe_facts, MachOFacts):
            exe_rpaths = exe_facts.rpaths
            tail_stack = [(exe, exe_rpaths)]
        else:
            notes.append(f"main executable {exe} not readable ({exe_facts}): "
                         "its LC_RPATH entries are not part of the run-path stacks")

    inserted: List[DyldResolution] = []
    for entry in ctx.inserted_libraries():
        # dyld expands @executable_path in inserted libraries, never @rpath or @loader_path
        loader = exe or entry
        inserted.append(resolve_install_name(walk_ctx, entry, loader=loader, rpath_stack=()))

    images: List[str] = [root]
    seen: Set[str] = {posixpath.normpath(root)}
    edges: List[DyldEdge] = []
    invalid: List[Tuple[str, str]] = []
    # depth-first in load-command order, as dyld 4 recurses through dependents
    work: List[Tuple[str, MachOFacts, List[Tuple[str, Sequence[str]]]]] = [
        (root, root_facts, [(root, root_facts.rpaths)] + tail_stack)
    ]
    while work:
        image, facts, chain = work.pop()
        children: List[Tuple[str, MachOFacts, List[Tuple[str, Sequence[str]]]]] = []
        for dep in facts.dependencies:
            res = resolve_install_name(walk_ctx, dep.name, loader=image, rpath_stack=chain)
            edges.append(DyldEdge(image, dep, res))
            if res.path is None or res.shared_cache:
                continue
            key = posixpath.normpath(res.path)
            if key in seen:
                continue
            seen.add(key)
            got = facts_of(res.path)
            if not isinstance(got, MachOFacts):
                invalid.append((res.path, str(got)))
                continue
            if len(images) >= MAX_CLOSURE_IMAGES:
                notes.append(f"more than {MAX_CLOSURE_IMAGES} images; walk stopped")
                work.clear()
                children.clear()
                break
            images.append(res.path)
            children.append((res.path, got, [(res.path, got.rpaths)] + chain))
        work.extend(reversed(children))

    return DyldClosure(
        root=root,
        arch=want,
        images=tuple(images),
        edges=tuple(edges),
        inserted=tuple(inserted),
        invalid=tuple(invalid),
        executable_rpaths=exe_rpaths,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------------
# Environment findings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DyldIssue:
    """One ``DYLD_*`` variable entry and what it does to torch.

    ``kind``: ``"shadows-torch"`` (the entry holds libraries whose leaf names are torch's own,
    and dyld would take them *instead of* torch's), ``"inserted-library"`` (a
    ``DYLD_INSERT_LIBRARIES`` entry: loaded into every process; ``shadowed`` lists a torch name
    it duplicates, e.g. a second ``libomp.dylib``) or ``"set-but-harmless"``.
    """

    variable: str
    entry: str
    shadowed: Tuple[str, ...]
    kind: str
    note: str = ""


def _torch_dylibs(
    torch_lib_dir: Optional[str], listdir: Callable[[str], Iterable[str]]
) -> Dict[str, str]:
    if not torch_lib_dir:
        return {}
    try:
        names = list(listdir(torch_lib_dir))
    except OSError:
        return {}
    # APFS and HFS+ are case-insensitive by default: compare folded names
    return {n.casefold(): n for n in names if n.lower().endswith(".dylib")}


def dyld_environment_findings(
    environ: Mapping[str, str],
    torch_lib_dir: Optional[str],
    listdir: Callable[[str], Iterable[str]] = os.listdir,
    *,
    executable: Optional[str] = None,
) -> List[DyldIssue]:
    """One :class:`DyldIssue` per entry of every ``DYLD_*`` variable set in ``environ``.

    ``DYLD_LIBRARY_PATH`` entries holding a file with the leaf name of one of torch's dylibs
    (``torch_lib_dir``: ``libc10.dylib``, ``libtorch_cpu.dylib``, ``libomp.dylib``...) shadow it:
    dyld tries them before torch's ``@rpath``/``@loader_path`` locations. An empty entry means
    the root directory (dyld builds ``"" + "/" + leaf``). ``DYLD_VERSIONED_LIBRARY_PATH``
    entries with such names are reported as shadowing too: dyld overrides the library with the
    found file's install name (``@rpath/libc10.dylib``...) when the found file is newer than the
    library at that path, and always when no file is at that path, as for an ``@rpath`` name
    (``checkVersionedPath``). The model compares leaf names only. Fallback and framework
    variables cannot shadow torch's dylibs. With a
    SIP-protected ``executable`` everything is harmless: dyld never sees the variables.
    """
    torch = _torch_dylibs(torch_lib_dir, listdir)
    stripped = sip_protected(executable)
    issues: List[DyldIssue] = []

    def names_in(directory: str) -> Optional[List[str]]:
        try:
            return list(listdir(directory or "/"))
        except OSError:
            return None

    keys = [k for k in DYLD_PATH_VARIABLES if k in environ]
    keys += ["DYLD_INSERT_LIBRARIES"] if "DYLD_INSERT_LIBRARIES" in environ else []
    keys += sorted(k for k in environ if k.startswith("DYLD_") and k not in keys)
    for var in keys:
        value = environ[var]
        if stripped:
            issues.append(DyldIssue(var, value, (), "set-but-harmless",
                                    f"{executable} is SIP-protected: dyld purges DYLD_* at launch"))
            continue
        if var == "DYLD_INSERT_LIBRARIES":
            for entry in value.split(":") if value else []:
                hit = torch.get(leaf_name(entry).casefold())
                issues.append(DyldIssue(
                    var, entry, (hit,) if hit else (), "inserted-library",
                    "loaded into every process before its own libraries"
                    + (f"; a second copy of torch's {hit}" if hit else ""),
                ))
            continue
        if var not in DYLD_PATH_VARIABLES:
            issues.append(DyldIssue(var, value, (), "set-but-harmless",
                                    "does not change which files dyld loads"))
            continue
        for entry in value.split(":"):
            listing = names_in(entry)
            if listing is None:
                issues.append(DyldIssue(var, entry, (), "set-but-harmless",
                                        "not a readable directory"))
                continue
            hits = sorted({torch[n.casefold()] for n in listing if n.casefold() in torch})
            if var in ("DYLD_LIBRARY_PATH", "DYLD_VERSIONED_LIBRARY_PATH") and hits:
                note = ("searched by leaf name before the install path"
                        if var == "DYLD_LIBRARY_PATH"
                        else "replaces the library whose install name it shares (for an "
                             "@rpath install name whatever its version)")
                issues.append(DyldIssue(var, entry, tuple(hits), "shadows-torch", note))
            elif var == "DYLD_FALLBACK_LIBRARY_PATH":
                extra = f"; would supply {', '.join(hits)} only if torch's copy were missing"
                issues.append(DyldIssue(
                    var, entry, (), "set-but-harmless",
                    "searched only after the install path (and replaces the default "
                    "/usr/local/lib:/usr/lib)" + (extra if hits else ""),
                ))
            elif var in ("DYLD_FRAMEWORK_PATH", "DYLD_FALLBACK_FRAMEWORK_PATH",
                         "DYLD_VERSIONED_FRAMEWORK_PATH"):
                issues.append(DyldIssue(var, entry, (), "set-but-harmless",
                                        "applies to frameworks only; torch's libraries are dylibs"))
            else:
                issues.append(DyldIssue(var, entry, (), "set-but-harmless",
                                        "holds none of torch's library names"))
    return issues
