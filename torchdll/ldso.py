"""A model of glibc's dynamic loader (``ld.so``) for one process: which file each ``DT_NEEDED``
name and each ``dlopen`` resolves to, by which rule, and why a load fails.

The shape is the one of the Windows model (:mod:`torchdll.resolver`, :mod:`torchdll.closure`):
a frozen :class:`LdContext` (what the loader consults), a :class:`LdResolution` per name (path,
the :class:`LdRule` that matched, every candidate tried and why it was skipped), and a
:class:`LdSimulator` that replays ``dlopen`` calls against a growing set of loaded objects and
predicts the ``dlerror()`` text of a failure.

What is modelled (glibc 2.36, ``elf/dl-load.c`` ``_dl_map_object``, ``elf/dl-deps.c``,
``elf/dl-version.c``, ``elf/dl-lookup.c``, ``elf/dl-open.c``), in the loader's order:

1. a name containing ``/`` is opened as a path (relative to the current directory);
2. an object already loaded whose name (the path it was loaded by, the names it was asked for)
   or ``DT_SONAME`` equals the name is reused;
3. ``DT_RPATH`` of the requesting object, then of the object that loaded it, up to the main
   program -- only when the requesting object has no ``DT_RUNPATH``;
4. ``LD_LIBRARY_PATH`` (split on ``:`` and ``;``; an empty entry is the current directory;
   read once at process start: :func:`live_context` uses ``/proc/self/environ``);
5. ``DT_RUNPATH`` of the requesting object only (not inherited);
6. ``/etc/ld.so.cache`` (:mod:`torchdll.ldcache`), unless the requester has ``-z nodefaultlib``;
7. the system directories (``ld.so --help``), unless ``-z nodefaultlib``.

In every directory, the ``glibc-hwcaps/<level>`` subdirectories the CPU supports come first,
then (glibc < 2.37) the legacy hwcaps combinations (``tls/haswell/x86_64``...), in the order
this machine's ld.so prints them. Folders found missing are never tried again (and a search
that opened nothing reports no ``strerror``). A file of the wrong ELF class or machine is skipped and the search goes on. ``$ORIGIN``,
``$LIB`` and ``$PLATFORM`` are expanded; ``$ORIGIN`` of a library is the folder of the path it
was found by (symbolic links are not resolved), of the main program its real folder. A file
found by search that is already loaded under another name (same device and inode) is reused.

After mapping, each new object's version needs (``Elf_Verneed``) are checked against the
definitions (``Elf_Verdef``) of the object they name -- "version `GLIBCXX_3.4.30' not found" --
then every non-weak undefined symbol a relocation looks up -- data and address relocations
always, PLT ones only for ``RTLD_NOW`` (what Python's ``ctypes`` and extension imports use) --
is searched in the global scope and then the local scope of the ``dlopen`` ("undefined symbol:
X, version Y"), objects in glibc's relocation order (``_dl_sort_maps_dfs``), symbols in
relocation order. A failed ``dlopen`` leaves the process as it was.

``LD_PRELOAD`` and ``/etc/ld.so.preload`` are mapped at start, before the main program's
dependencies, into the global scope.

Not modelled (documented in docs/linux.md): secure (setuid) mode,
``LD_AUDIT``, ``dlmopen`` namespaces, ``DT_FILTER``, which of several definitions wins
(interposition), TLS/IFUNC failures, and lazy-binding failures that happen only when a function
is first called.
"""

from __future__ import annotations

import enum
import functools
import os
import posixpath
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from ._elf import ElfFacts

__all__ = [
    "LdContext", "LdRule", "LdSkip", "LdCandidate", "LdResolution", "LoadedObject", "LdLoad",
    "DlopenResult", "LdSimulator", "PosixView", "live_context", "split_search_path",
    "RTLD_LAZY", "RTLD_NOW", "RTLD_GLOBAL", "RTLD_LOCAL", "DF_1_NODEFLIB", "machine_label",
    "preload_entries",
]

RTLD_LAZY = 0x1
RTLD_NOW = 0x2
RTLD_GLOBAL = 0x100
RTLD_LOCAL = 0x0
DF_1_NODEFLIB = 0x800
DF_1_NOW = 0x1
DF_1_PIE = 0x08000000
DF_BIND_NOW = 0x8

_MACHINES = {3: "i386", 62: "x86-64", 183: "aarch64", 40: "arm", 243: "riscv", 21: "ppc64", 22: "s390"}


def machine_label(machine: int) -> str:
    return _MACHINES.get(machine, f"e_machine {machine}")


class LdRule(str, enum.Enum):
    """Which step of ``ld.so``'s search found (or was asked to find) an object."""

    PATH = "path"
    LOADED = "loaded"
    PRELOAD = "preload"
    RPATH = "rpath"
    LD_LIBRARY_PATH = "ld-library-path"
    RUNPATH = "runpath"
    CACHE = "ld.so.cache"
    SYSTEM_DIR = "system-dir"


class LdSkip(str, enum.Enum):
    """Why a candidate file was not used."""

    ABSENT = "absent"
    WRONG_CLASS = "wrong-class"
    WRONG_MACHINE = "wrong-machine"
    INVALID = "invalid"
    SELECTED = "selected"


@dataclass(frozen=True)
class LdCandidate:
    path: str
    rule: LdRule
    outcome: LdSkip
    origin: Optional[str] = None  # for RPATH/RUNPATH: the object whose entry this was


@dataclass(frozen=True)
class LdResolution:
    """The outcome of resolving one name for one requesting object."""

    name: str
    path: Optional[str]
    rule: Optional[LdRule]
    requester: Optional[str] = None
    candidates: Tuple[LdCandidate, ...] = ()
    error: Optional[str] = None  # the dlerror() text when nothing was found

    @property
    def found(self) -> bool:
        return self.path is not None


@dataclass(frozen=True)
class LoadedObject:
    """An object already in the process. ``global_scope``: its symbols are in the global
    scope (the main program and its dependencies, ``LD_PRELOAD``, ``RTLD_GLOBAL`` loads)."""

    path: str
    soname: Optional[str] = None
    global_scope: bool = False
    names: Tuple[str, ...] = ()


@dataclass(frozen=True)
class LdContext:
    """Everything ``ld.so`` consults in one process.

    ``ld_library_path`` holds the entries as the loader read them at process start (use
    :func:`split_search_path`). ``system_dirs`` and ``hwcaps_subdirs`` come from
    :func:`torchdll.ldcache.system_search`; ``cache`` is the parsed ``/etc/ld.so.cache``.
    ``executable`` is the main program (its ``DT_RPATH`` applies to every search unless the
    requester has ``DT_RUNPATH``); ``loaded`` the objects already in the process, in load order.
    ``root`` (offline analysis): absolute paths are read under this host folder.
    """

    ld_library_path: Tuple[str, ...] = ()
    system_dirs: Tuple[str, ...] = ("/lib", "/usr/lib")
    hwcaps_subdirs: Tuple[str, ...] = ()
    cache: Optional[object] = None  # torchdll.ldcache.LdCache
    elf_class: int = 64
    machine: int = 62
    executable: Optional[str] = None
    loaded: Tuple[LoadedObject, ...] = ()
    cwd: str = "/"
    lib: str = "lib/x86_64-linux-gnu"  # $LIB
    platform: str = "x86_64"  # $PLATFORM
    root: Optional[str] = None
    environ_note: Optional[str] = None  # e.g. "LD_LIBRARY_PATH changed after start (ignored)"
    #: subdirectories ld.so tries in every search folder, in order, before the folder itself
    #: (glibc-hwcaps levels, then glibc < 2.37's legacy hwcaps combinations such as
    #: ``tls/haswell/x86_64``); empty: ``glibc-hwcaps/<hwcaps_subdirs>`` only
    search_subdirs: Tuple[str, ...] = ()
    #: ``LD_PRELOAD`` entries, then those of ``/etc/ld.so.preload``: mapped at start, global
    preload: Tuple[str, ...] = ()


def split_search_path(value: Optional[str], separators: str = ":;") -> Tuple[str, ...]:
    """Split ``LD_LIBRARY_PATH`` the way ``ld.so`` does (``:`` and ``;``; empty entries kept:
    they mean the current directory). ``None`` or ``""`` gives no entries."""
    if not value:
        return ()
    out = [value]
    for sep in separators:
        out = [piece for part in out for piece in part.split(sep)]
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


class PosixView:
    """Reads the files the model asks about: the live file system, or a tree under ``root``."""

    def __init__(self, root: Optional[str] = None) -> None:
        self.root = root
        self._facts: Dict[Tuple[str, bool], object] = {}
        self._headers: Dict[str, object] = {}

    def host(self, path: str) -> str:
        if self.root is None:
            return path
        return os.path.join(self.root, path.lstrip("/"))

    def is_file(self, path: str) -> bool:
        try:
            return os.path.isfile(self.host(path))
        except (OSError, ValueError):
            return False

    def identity(self, path: str) -> Optional[Tuple[int, int]]:
        try:
            st = os.stat(self.host(path))
        except (OSError, ValueError):
            return None
        return (st.st_dev, st.st_ino)

    def header(self, path: str) -> object:
        """ELF header (raises :class:`~torchdll.errors.InvalidImageError`)."""
        from ._elf import read_elf_header

        key = self.host(path)
        got = self._headers.get(key)
        if got is None:
            try:
                got = read_elf_header(key)
            except Exception as exc:  # noqa: BLE001 - cached and re-raised
                got = exc
            self._headers[key] = got
        if isinstance(got, Exception):
            raise got
        return got

    def facts(self, path: str, symbols: bool = False) -> ElfFacts:
        from ._elf import read_elf_facts

        key = (self.host(path), symbols)
        got = self._facts.get(key)
        if got is None and not symbols:
            got = self._facts.get((key[0], True))
        if got is None:
            try:
                got = read_elf_facts(key[0], symbols=symbols)
            except Exception as exc:  # noqa: BLE001 - cached and re-raised
                got = exc
            self._facts[key] = got
        if isinstance(got, Exception):
            raise got
        return got  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LdLoad:
    """One object mapped by a ``dlopen``: asked for as ``name`` by ``requester`` (for the
    ``dlopen`` target itself: the calling object, by default the main program), found at
    ``path`` by ``rule``."""

    name: str
    path: str
    rule: LdRule
    requester: Optional[str]
    soname: Optional[str] = None
    candidates: Tuple[LdCandidate, ...] = ()


@dataclass(frozen=True)
class MissingVersion:
    version: str
    provider: str  # path of the object that lacks it
    required_by: str


@dataclass(frozen=True)
class MissingSymbol:
    symbol: str
    version: Optional[str]
    required_by: str
    provider: Optional[str] = None  # the object the version need names (it lacks the symbol)


@dataclass(frozen=True)
class DlopenResult:
    """What one ``dlopen`` does. ``error`` is the predicted ``dlerror()`` text; ``kind`` one of
    ``not-found``, ``invalid``, ``version``, ``symbol``, ``abort`` (ld.so kills the process
    instead of returning: glibc's ``check_match`` assertion), ``None`` on success. ``edges`` maps
    every (requester, needed name) pair seen to the object it bound to (new or already loaded).
    """

    target: str
    flags: int
    ok: bool
    error: Optional[str] = None
    kind: Optional[str] = None
    loaded: Tuple[LdLoad, ...] = ()
    edges: Tuple[Tuple[str, str, str, LdRule], ...] = ()  # (requester, name, path, rule)
    failed: Optional[LdResolution] = None
    missing_version: Optional[MissingVersion] = None
    missing_symbol: Optional[MissingSymbol] = None
    handle: Optional[str] = None  # path of the object dlopen returned


# --------------------------------------------------------------------------------------------
# The simulator
# --------------------------------------------------------------------------------------------


@dataclass
class _Obj:
    path: str  # l_name: the path it was loaded by
    soname: Optional[str]
    names: List[str]
    identity: Optional[Tuple[int, int]]
    global_scope: bool
    loader: Optional["_Obj"] = None
    origin: Optional[str] = None
    facts: Optional[ElfFacts] = None
    searchlist: List["_Obj"] = field(default_factory=list)
    main: bool = False
    deps: List["_Obj"] = field(default_factory=list)  # DT_NEEDED, bound, in order


class _Fail(Exception):
    def __init__(self, error: str, kind: str, resolution: Optional[LdResolution] = None) -> None:
        super().__init__(error)
        self.error = error
        self.kind = kind
        self.resolution = resolution


class LdSimulator:
    """Replays ``dlopen`` calls against a process described by an :class:`LdContext`."""

    def __init__(self, ctx: LdContext, view: Optional[PosixView] = None) -> None:
        self.ctx = ctx
        self.view = view if view is not None else PosixView(ctx.root)
        self._objs: List[_Obj] = []
        self._main: Optional[_Obj] = None
        self._dead: Set[str] = set()  # folders ld.so found missing (it never tries them again)
        self.preloaded: Set[str] = set()  # paths mapped from LD_PRELOAD / /etc/ld.so.preload
        self._attempted = False
        if ctx.executable:
            self._main = _Obj(ctx.executable, None, [], self.view.identity(ctx.executable), True,
                              origin=posixpath.dirname(os.path.realpath(self.view.host(ctx.executable)))
                              if ctx.root is None else posixpath.dirname(ctx.executable), main=True)
            self._main.facts = self._try_facts(ctx.executable)
            self._objs.append(self._main)
        for lo in ctx.loaded:
            if self._main is not None and lo.path == self._main.path:
                continue
            obj = _Obj(lo.path, lo.soname, list(lo.names), self.view.identity(lo.path), lo.global_scope,
                       origin=posixpath.dirname(lo.path))
            obj.facts = self._try_facts(lo.path)
            if obj.soname is None and obj.facts is not None:
                obj.soname = obj.facts.soname
            self._objs.append(obj)
        if self._main is not None:
            self._start_main()
            self._main.searchlist = [o for o in self._objs if o.global_scope or o is self._main]

    def _start_main(self) -> None:
        """Map the main program's dependencies the way ld.so does at process start (breadth
        first, global scope), for those not given as already loaded. A dependency that cannot
        be found is left out (the real process would not have started)."""
        main = self._main
        assert main is not None
        if main.facts is None:
            return
        for name in self.ctx.preload:  # rtld.c do_preload: before the main program's needs
            hit = self._match_loaded(name, self._objs)
            if hit is None:
                try:
                    hit, _, _ = self._map(name, main, self._objs, [], [])
                except _Fail:
                    continue  # "cannot be preloaded ...: ignored"
            hit.global_scope = True
            self.preloaded.add(hit.path)
        queue = [main]
        seen = {id(main)}
        searched: Set[str] = set()
        while queue:
            obj = queue.pop(0)
            if obj.facts is None:
                continue
            for needed in obj.facts.needed:
                if needed not in searched and "/" not in needed:
                    # the first request for a name searched the folders at start-up (even for an
                    # object we were told is loaded): that is when ld.so learns which are missing
                    searched.add(needed)
                    self.resolve(needed, obj)
                hit = self._match_loaded(needed, self._objs)
                if hit is None:
                    try:
                        hit, _, _ = self._map(needed, obj, self._objs, [], [])
                    except _Fail:
                        continue
                if not hit.global_scope:
                    hit.global_scope = True
                if id(hit) not in seen:
                    seen.add(id(hit))
                    queue.append(hit)

    # -- state -----------------------------------------------------------------------------

    def loaded_paths(self) -> List[str]:
        return [o.path for o in self._objs]

    def loaded_objects(self) -> Tuple[LoadedObject, ...]:
        """The objects in the process now, as :class:`LoadedObject` (feed them to another
        context to continue from this state)."""
        return tuple(LoadedObject(o.path, o.soname, o.global_scope, tuple(o.names)) for o in self._objs)

    def _try_facts(self, path: str, symbols: bool = False) -> Optional[ElfFacts]:
        from .errors import InvalidImageError

        try:
            return self.view.facts(path, symbols)
        except (InvalidImageError, OSError):
            return None

    # -- search ------------------------------------------------------------------------------

    def _expand(self, entry: str, origin: Optional[str]) -> Optional[str]:
        """Expand dynamic string tokens; ``None`` drops the entry (unknown origin)."""
        if "$" not in entry:
            return entry
        out = []
        i = 0
        while i < len(entry):
            ch = entry[i]
            if ch != "$":
                out.append(ch)
                i += 1
                continue
            rest = entry[i + 1:]
            matched = None
            for token in ("ORIGIN", "PLATFORM", "LIB"):
                if rest.startswith("{" + token + "}"):
                    matched = (token, len(token) + 2)
                    break
                if rest.startswith(token) and (len(rest) == len(token) or not (rest[len(token)].isalnum() or rest[len(token)] == "_")):
                    matched = (token, len(token))
                    break
            if matched is None:
                out.append(ch)
                i += 1
                continue
            token, length = matched
            if token == "ORIGIN":
                if origin is None:
                    return None
                out.append(origin)
            elif token == "PLATFORM":
                out.append(self.ctx.platform)
            else:
                out.append(self.ctx.lib)
            i += 1 + length
        return "".join(out)

    def _dirs(self, entries: Sequence[str], origin: Optional[str]) -> List[str]:
        if tuple(entries) == ("",):
            return []  # decompose_rpath: an empty DT_RPATH/DT_RUNPATH string names no folder
        out: List[str] = []
        seen: Set[str] = set()
        for raw in entries:
            d = self._expand(raw, origin)
            if d is None:
                continue
            if len(d) > 1:
                d = d.rstrip("/") or "/"
            if d not in seen:  # fillin_rpath: a folder already in this list is not added again
                seen.add(d)
                out.append(d)
        return out

    def _abs(self, path: str) -> str:
        return path if path.startswith("/") else posixpath.join(self.ctx.cwd, path)

    def _check_file(self, path: str) -> LdSkip:
        from .errors import InvalidImageError

        if not self.view.is_file(self._abs(path)):
            return LdSkip.ABSENT
        try:
            hdr = self.view.header(self._abs(path))
        except InvalidImageError:
            return LdSkip.INVALID
        if getattr(hdr, "elf_class") != self.ctx.elf_class:
            return LdSkip.WRONG_CLASS
        if getattr(hdr, "machine") != self.ctx.machine:
            return LdSkip.WRONG_MACHINE
        return LdSkip.SELECTED

    def _try_dirs(self, name: str, dirs: Sequence[str], rule: LdRule, cands: List[LdCandidate],
                  origin_obj: Optional[str] = None) -> Optional[str]:
        rel = self.ctx.search_subdirs or tuple(f"glibc-hwcaps/{s}" for s in self.ctx.hwcaps_subdirs)
        for d in dirs:
            subs = [posixpath.join(d, s) for s in rel] + [d]
            for sub in subs:
                # an empty entry is the current directory, and ld.so names the file just "name"
                path = (sub + "/" + name if sub != "/" else "/" + name) if sub else name
                if sub in self._dead:
                    continue  # ld.so knows this folder does not exist: nothing is opened
                outcome = self._check_file(path)
                self._attempted = True
                if outcome is LdSkip.ABSENT and not os.path.isdir(self.view.host(self._abs(sub))):
                    self._dead.add(sub)
                if outcome is LdSkip.ABSENT and sub != d:
                    continue  # hwcaps subdirectories are only worth listing when they hold the file
                cands.append(LdCandidate(path, rule, outcome, origin_obj))
                if outcome is LdSkip.SELECTED:
                    return path
                if outcome is LdSkip.INVALID:
                    raise _Fail(self._invalid_reason(path), "invalid")
        return None

    def _nodeflib(self, obj: Optional[_Obj]) -> bool:
        return bool(obj is not None and obj.facts is not None and obj.facts.flags_1 & DF_1_NODEFLIB)

    def resolve(self, name: str, requester: Optional[_Obj]) -> LdResolution:
        """Search for a file named ``name`` (no ``/``) for ``requester``; does not check what is
        already loaded (see :meth:`_map`)."""
        cands: List[LdCandidate] = []
        self._attempted = False
        req_path = requester.path if requester is not None else None
        req_facts = requester.facts if requester is not None else None
        has_runpath = bool(req_facts is not None and req_facts.runpath)
        found: Optional[Tuple[str, LdRule]] = None
        if not has_runpath:
            did_main = False
            chain = requester
            while chain is not None and found is None:
                if chain.facts is not None and chain.facts.rpath:
                    path = self._try_dirs(name, self._dirs(chain.facts.rpath, chain.origin), LdRule.RPATH,
                                          cands, chain.path)
                    if path is not None:
                        found = (path, LdRule.RPATH)
                        break
                    did_main = did_main or chain is self._main
                chain = chain.loader
            main = self._main
            if (found is None and not did_main and main is not None and main.facts is not None
                    and main.facts.rpath):
                path = self._try_dirs(name, self._dirs(main.facts.rpath, main.origin), LdRule.RPATH, cands,
                                      main.path)
                if path is not None:
                    found = (path, LdRule.RPATH)
        if found is None and self.ctx.ld_library_path:
            llp_origin = self._main.origin if self._main is not None else None
            path = self._try_dirs(name, self._dirs(self.ctx.ld_library_path, llp_origin),
                                  LdRule.LD_LIBRARY_PATH, cands)
            if path is not None:
                found = (path, LdRule.LD_LIBRARY_PATH)
        if found is None and requester is not None and has_runpath:
            assert req_facts is not None
            path = self._try_dirs(name, self._dirs(req_facts.runpath, requester.origin), LdRule.RUNPATH, cands,
                                  requester.path)
            if path is not None:
                found = (path, LdRule.RUNPATH)
        nodeflib = self._nodeflib(requester if requester is not None else self._main)
        if found is None and self.ctx.cache is not None:
            cached = self._cache_lookup(name)
            if cached is not None and not (nodeflib and any(
                    cached.startswith(d.rstrip("/") + "/") for d in self.ctx.system_dirs)):
                outcome = self._check_file(cached)
                cands.append(LdCandidate(cached, LdRule.CACHE, outcome))
                if outcome is LdSkip.SELECTED:
                    found = (cached, LdRule.CACHE)
        if found is None and not nodeflib:
            path = self._try_dirs(name, list(self.ctx.system_dirs), LdRule.SYSTEM_DIR, cands)
            if path is not None:
                found = (path, LdRule.SYSTEM_DIR)
        if found is None:
            if any(c.outcome is LdSkip.WRONG_CLASS for c in cands):
                # _dl_map_object: found_other_class
                error = f"{name}: wrong ELF class: {self._other_class()}"
            elif self._attempted:
                error = f"{name}: cannot open shared object file: No such file or directory"
            else:  # nothing was opened: errno is 0 and dlerror() has no strerror part
                error = f"{name}: cannot open shared object file"
            return LdResolution(name, None, None, req_path, tuple(cands), error)
        return LdResolution(name, found[0], found[1], req_path, tuple(cands))

    def _other_class(self) -> str:
        return "ELFCLASS32" if self.ctx.elf_class == 64 else "ELFCLASS64"

    def _cache_lookup(self, name: str) -> Optional[str]:
        cache = self.ctx.cache
        lookup = getattr(cache, "lookup", None)
        if lookup is None:
            return None
        result = lookup(name, elf_class=self.ctx.elf_class, machine=self.ctx.machine,
                        hwcaps_subdirs=self.ctx.hwcaps_subdirs)
        return result if isinstance(result, str) else None

    # -- mapping -----------------------------------------------------------------------------

    @staticmethod
    def _match_loaded(name: str, objs: Iterable[_Obj]) -> Optional[_Obj]:
        for obj in objs:
            if obj.main:
                continue
            if name == obj.path or name in obj.names:
                return obj
            if obj.soname is not None and obj.soname == name:
                if name not in obj.names:
                    obj.names.append(name)
                return obj
        return None

    def _map(self, name: str, requester: Optional[_Obj], objs: List[_Obj],
             new: List[_Obj], loads: List[LdLoad]) -> Tuple[_Obj, LdRule, Optional[LdResolution]]:
        hit = self._match_loaded(name, objs)
        if hit is not None:
            return hit, LdRule.LOADED, None
        if "/" in name:
            path = name
            outcome = self._check_file(path)
            res = LdResolution(name, path if outcome is LdSkip.SELECTED else None,
                               LdRule.PATH if outcome is LdSkip.SELECTED else None,
                               requester.path if requester else None,
                               (LdCandidate(path, LdRule.PATH, outcome),))
            if outcome is LdSkip.ABSENT:
                raise _Fail(f"{name}: cannot open shared object file: No such file or directory",
                            "not-found", res)
            if outcome is LdSkip.INVALID:
                raise _Fail(self._invalid_reason(path), "invalid", res)
            if outcome is LdSkip.WRONG_CLASS:
                raise _Fail(f"{name}: wrong ELF class: {self._other_class()}", "invalid", res)
            if outcome is LdSkip.WRONG_MACHINE:
                raise _Fail(f"{name}: cannot open shared object file: No such file or directory",
                            "not-found", res)
            rule = LdRule.PATH
        else:
            res = self.resolve(name, requester)
            if res.path is None:
                raise _Fail(res.error or name, "not-found", res)
            path, rule = res.path, res.rule or LdRule.PATH
        ident = self.view.identity(self._abs(path))
        if ident is not None:
            for obj in objs:
                if obj.identity == ident and not obj.main:
                    if name not in obj.names:
                        obj.names.append(name)
                    return obj, LdRule.LOADED, res
        facts = self._try_facts(self._abs(path))
        if facts is None:
            raise _Fail(self._invalid_reason(path), "invalid", res)
        if facts.flags_1 & DF_1_PIE:  # _dl_map_object_from_fd, without __RTLD_OPENEXEC
            raise _Fail(f"{path}: cannot dynamically load position-independent executable", "invalid", res)
        obj = _Obj(path, facts.soname, [name], ident, False, loader=requester,
                   origin=posixpath.dirname(self._abs(path)), facts=facts)
        objs.append(obj)
        new.append(obj)
        loads.append(LdLoad(name, path, rule, requester.path if requester else None, facts.soname,
                            res.candidates if res is not None else ()))
        return obj, rule, res

    def _invalid_reason(self, path: str) -> str:
        from .errors import InvalidImageError

        try:
            self.view.header(self._abs(path))
        except InvalidImageError as exc:
            reason = getattr(exc, "reason", str(exc))
            return f"{path}: {reason}"
        return f"{path}: invalid ELF header"

    def dlopen(self, name: str, flags: int = RTLD_NOW | RTLD_LOCAL, caller: Optional[str] = None) -> DlopenResult:
        """Predict ``dlopen(name, flags)`` called from the object at ``caller`` (default: the
        main program). On success the new objects stay loaded for the next calls."""
        objs = list(self._objs)
        # names lists are mutated on match; snapshot them so a failure can roll back
        saved_names = {id(o): list(o.names) for o in self._objs}
        new: List[_Obj] = []
        loads: List[LdLoad] = []
        edges: List[Tuple[str, str, str, LdRule]] = []
        caller_obj = None
        if caller is not None:
            caller_obj = next((o for o in self._objs if o.path == caller), None)
        if caller_obj is None:
            caller_obj = self._main
        try:
            root, rule, _ = self._map(name, caller_obj, objs, new, loads)
            edges.append(("", name, root.path, rule))
            # breadth-first over DT_NEEDED (elf/dl-deps.c)
            searchlist: List[_Obj] = [root]
            queue = [root]
            while queue:
                obj = queue.pop(0)
                if obj.facts is None:
                    continue
                fresh = obj in new
                for needed in obj.facts.needed:
                    dep, drule, _ = self._map(needed, obj, objs, new, loads)
                    edges.append((obj.path, needed, dep.path, drule))
                    if fresh and dep not in obj.deps:
                        obj.deps.append(dep)
                    if dep not in searchlist:
                        searchlist.append(dep)
                        queue.append(dep)
            full = searchlist
            for obj in new:
                obj.searchlist = full
            self._check_versions(new, objs)
            self._check_symbols(new, objs, full, root, bool(flags & RTLD_NOW))
        except _Fail as fail:
            for o in self._objs:
                o.names[:] = saved_names.get(id(o), o.names)
            return DlopenResult(name, flags, False, fail.error, fail.kind, tuple(loads), tuple(edges),
                                fail.resolution, getattr(fail, "missing_version", None),
                                getattr(fail, "missing_symbol", None))
        if flags & RTLD_GLOBAL:
            for obj in [root] + [o for o in full]:
                obj.global_scope = True
        self._objs = objs
        return DlopenResult(name, flags, True, None, None, tuple(loads), tuple(edges), handle=root.path)

    # -- versions and symbols ------------------------------------------------------------

    def _find_needed(self, file: str, obj: _Obj, objs: List[_Obj]) -> Optional[_Obj]:
        """The object a version need names (dl-version.c ``find_needed``: by the names an
        object was loaded by, in the namespace, then in ``obj``'s search list)."""
        for group in (objs, obj.searchlist):
            for o in group:
                if not o.main and (file == o.path or file in o.names or file == o.soname):
                    return o
        return None

    def _check_versions(self, new: List[_Obj], objs: List[_Obj]) -> None:
        for obj in new:
            assert obj.facts is not None
            for need in obj.facts.version_needs:
                provider = self._find_needed(need.file, obj, objs)
                if provider is None or provider.facts is None:
                    continue
                if not provider.facts.version_defs and provider.facts.version_base is None:
                    continue  # the provider has no symbol versioning: accepted (dl-version.c)
                defs = set(provider.facts.version_defs)
                if provider.facts.version_base is not None:
                    defs.add(provider.facts.version_base)  # match_symbol accepts the base name too
                for version in need.versions:
                    if version in defs or version in need.weak:
                        continue
                    fail = _Fail(f"{provider.path}: version `{version}' not found (required by {obj.path})",
                                 "version")
                    fail.missing_version = MissingVersion(version, provider.path, obj.path)  # type: ignore[attr-defined]
                    raise fail

    def _relocation_order(self, root: _Obj, new: List[_Obj]) -> List[_Obj]:
        """The order glibc relocates a dlopen's new objects: ``_dl_sort_maps_dfs`` over them
        (in load order, walked from the end, each object's dependencies in DT_NEEDED order,
        placed in reverse post-order), relocated from the end of that list."""
        members = {id(o) for o in new}
        visited: Set[int] = set()
        rpo: List[_Obj] = []

        def dfs(obj: _Obj) -> None:
            visited.add(id(obj))
            for dep in obj.deps:
                if id(dep) in members and id(dep) not in visited:
                    dfs(dep)
            rpo.append(obj)  # post-order; reversed below = the head-first fill of glibc

        for obj in reversed(new):
            if id(obj) not in visited:
                dfs(obj)
        sorted_maps = list(reversed(rpo))
        return list(reversed(sorted_maps))

    def _check_symbols(self, new: List[_Obj], objs: List[_Obj], local: List[_Obj], root: _Obj,
                       now: bool) -> None:
        """Symbol lookups of relocation: those of data/address relocations always, those of PLT
        relocations only with ``RTLD_NOW`` (or an object linked ``-z now``)."""
        from ._elf import RELOC_EAGER, RELOC_PLT

        global_scope = [o for o in objs if o.global_scope or o.main]
        scope = global_scope + [o for o in local if o not in global_scope]
        # ElfFacts.defines() of any object in scope, as three unions (the test is a disjunction)
        defined: Set[Tuple[str, Optional[str]]] = set()
        unversioned: Set[str] = set()
        binds_unversioned: Set[str] = set()
        for o in scope:
            of = self._try_facts(self._abs(o.path), symbols=True)
            if of is not None and of.symbols_read:
                defined |= of.defined
                unversioned |= of.unversioned
                binds_unversioned |= of.binds_unversioned
        for obj in self._relocation_order(root, new):
            facts = self._try_facts(self._abs(obj.path), symbols=True)
            if facts is None:
                continue
            bind_now = now or bool(facts.flags & DF_BIND_NOW or facts.flags_1 & DF_1_NOW)
            mask = RELOC_EAGER | RELOC_PLT if bind_now else RELOC_EAGER
            for sym in facts.undefined:
                if sym.weak or not sym.reloc & mask:
                    continue
                if sym.version is None:
                    found = sym.name in binds_unversioned
                else:
                    found = (sym.name, sym.version) in defined or sym.name in unversioned
                    if sym.file:
                        self._check_match_abort(sym.name, sym.version, sym.file, obj, scope)
                if not found:
                    text = f"{obj.path}: undefined symbol: {sym.name}"
                    if sym.version:
                        text += f", version {sym.version}"
                    fail = _Fail(text, "symbol")
                    provider = None
                    if sym.version:
                        need = next((n for n in facts.version_needs if sym.version in n.versions), None)
                        if need is not None:
                            hit = self._find_needed(need.file, obj, scope)
                            provider = hit.path if hit is not None else None
                    fail.missing_symbol = MissingSymbol(sym.name, sym.version, obj.path,  # type: ignore[attr-defined]
                                                        provider)
                    raise fail


    def _check_match_abort(self, name: str, version: str, file: str, obj: _Obj, scope: List[_Obj]) -> None:
        """A versioned reference whose lookup first reaches the very file its version need names,
        when that file has no symbol versioning: glibc's ``check_match`` asserts and ld.so kills
        the process (exit status 127) instead of returning an error."""
        provider = self._find_needed(file, obj, scope)
        pf = self._try_facts(self._abs(provider.path), symbols=True) if provider is not None else None
        if pf is None or pf.has_versym or not ((name, None) in pf.defined or name in pf.visible):
            return
        for o in scope:
            of = self._try_facts(self._abs(o.path), symbols=True)
            if of is None or not of.symbols_read:
                continue
            if not of.has_versym:
                if (name, None) in of.defined or name in of.visible:
                    if o is provider:
                        raise _Fail("Inconsistency detected by ld.so: dl-lookup.c: check_match: Assertion "
                                    "`version->filename == NULL || ! _dl_name_match_p (version->filename, "
                                    "map)' failed! (ld.so kills the process: exit status 127)", "abort")
                    return
            elif of.defines(name, version):
                return


# --------------------------------------------------------------------------------------------
# The live process
# --------------------------------------------------------------------------------------------


from ._startenv import initial_environ as _initial_environ  # noqa: E402 - kept for callers


def _mapped_objects() -> List[str]:
    """Paths of the ELF objects mapped in this process, in first-mapping order."""
    out: List[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith("/"):
                    p = parts[5].rstrip("\n")
                    if p.endswith(" (deleted)") or p in out:
                        continue
                    if ".so" in posixpath.basename(p) or p == os.path.realpath("/proc/self/exe"):
                        out.append(p)
    except OSError:
        pass
    return out


def live_context(environ: Optional[Mapping[str, str]] = None, *, executable: Optional[str] = None,
                 loaded: Optional[Sequence[str]] = None, cwd: Optional[str] = None,
                 system: Optional[object] = None, cache: object = "auto") -> LdContext:
    """The loader context of this machine for a process started with ``environ`` (default:
    the environment *this* process started with, as ``ld.so`` read it), running
    ``executable`` (default: this interpreter) with ``loaded`` objects already mapped (default:
    this process's, read from ``/proc/self/maps``; ``[]`` for a fresh process).
    """
    from . import ldcache

    exe = executable if executable is not None else os.path.realpath("/proc/self/exe")
    if environ is None:
        start = _initial_environ()
        environ = start if start is not None else dict(os.environ)
        note = None
        if start is not None and start.get("LD_LIBRARY_PATH") != os.environ.get("LD_LIBRARY_PATH"):
            note = ("LD_LIBRARY_PATH was changed after this process started; ld.so uses the value "
                    "it started with")
    else:
        note = None
    sysinfo = system
    if sysinfo is None:
        try:
            sysinfo = ldcache.system_search()
        except (ValueError, OSError):  # a machine ldcache has no table for: the generic layout
            sysinfo = ldcache.SystemSearch("", ("/lib", "/usr/lib"), (), (), "fallback")
    if cache == "auto":
        try:
            cache = ldcache.read_ld_so_cache()
        except ldcache.LdCacheError:
            cache = None
    machine, elf_class = 62, 64
    try:
        from ._elf import read_elf_header

        hdr = read_elf_header(exe)
        machine, elf_class = hdr.machine, hdr.elf_class
    except Exception:  # noqa: BLE001 - fall back to the defaults of x86-64
        pass
    paths = list(loaded) if loaded is not None else [p for p in _mapped_objects() if p != exe]
    objs = _loaded_objects(exe, paths)
    dst_lib, dst_platform = _dst_values(getattr(sysinfo, "interpreter", None))
    preload = preload_entries(environ.get("LD_PRELOAD"), _read_text("/etc/ld.so.preload"))
    subdirs = _probe_subdirs(getattr(sysinfo, "interpreter", None))
    return LdContext(
        ld_library_path=split_search_path(environ.get("LD_LIBRARY_PATH")),
        system_dirs=tuple(getattr(sysinfo, "system_dirs", ("/lib", "/usr/lib"))),
        hwcaps_subdirs=tuple(getattr(sysinfo, "hwcaps_subdirs", ())),
        cache=cache, elf_class=elf_class, machine=machine, executable=exe, loaded=objs,
        cwd=cwd or os.getcwd(), environ_note=note, search_subdirs=subdirs, preload=preload,
        lib=dst_lib or _dst_lib(machine),
        platform=dst_platform or ("x86_64" if machine == 62 else machine_label(machine)),
    )


def preload_entries(ld_preload: Optional[str], etc_preload: Optional[str] = None) -> Tuple[str, ...]:
    """The objects ld.so preloads: ``LD_PRELOAD`` (split on spaces and colons), then
    ``/etc/ld.so.preload`` (whitespace-separated), empty entries dropped."""
    import re

    out = [e for e in re.split(r"[ :\t]", ld_preload or "") if e]
    out += [e for e in (etc_preload or "").split() if e]
    return tuple(out)


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            return fh.read(1 << 16)
    except OSError:
        return None


@functools.lru_cache(maxsize=8)
def _dst_values(interpreter: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    """``($LIB, $PLATFORM)`` as this machine's ld.so expands them, from ``ld.so
    --list-diagnostics`` (glibc 2.33+: ``dl_dst_lib``, ``dl_platform`` = ``AT_PLATFORM``);
    ``(None, None)`` when it cannot tell."""
    import subprocess

    if not interpreter or not os.path.exists(interpreter):
        return None, None
    try:
        proc = subprocess.run([interpreter, "--list-diagnostics"], capture_output=True, text=True,
                              timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None, None
    values: Dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in ("dl_dst_lib", "dl_platform") and value.startswith('"') and value.endswith('"'):
            values[key] = value[1:-1]
    return values.get("dl_dst_lib"), values.get("dl_platform")


@functools.lru_cache(maxsize=8)
def _probe_subdirs(interpreter: Optional[str]) -> Tuple[str, ...]:
    """The per-folder subdirectories this machine's ld.so tries, in order, read from the search
    path it prints under ``LD_DEBUG=libs`` for a folder that does not exist."""
    import subprocess

    if not interpreter or not os.path.exists(interpreter) or not os.path.exists("/bin/true"):
        return ()
    marker = "/nonexistent-torchdll-probe"
    env = {"LD_DEBUG": "libs", "LD_LIBRARY_PATH": marker, "PATH": "/usr/bin:/bin"}
    try:
        proc = subprocess.run([interpreter, "/bin/true"], capture_output=True, text=True, env=env, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ()
    for line in proc.stderr.splitlines():
        text = line.split("search path=", 1)
        if len(text) == 2 and "(LD_LIBRARY_PATH)" in text[1]:
            dirs = text[1].split("\t")[0].strip().split(":")
            subs = [d[len(marker) + 1:] for d in dirs if d.startswith(marker + "/")]
            return tuple(subs)
    return ()


def _dst_lib(machine: int) -> str:
    triplets = {62: "x86_64-linux-gnu", 183: "aarch64-linux-gnu", 3: "i386-linux-gnu"}
    t = triplets.get(machine)
    if t and os.path.isdir(f"/lib/{t}"):
        return f"lib/{t}"
    return "lib64" if machine in (62, 183) and os.path.isdir("/lib64") else "lib"


def _loaded_objects(exe: Optional[str], paths: Sequence[str]) -> Tuple[LoadedObject, ...]:
    """Loaded objects with their scope: the main program's static dependencies (and ld.so)
    are global; everything else (extension modules, ctypes loads) is assumed local."""
    from ._elf import read_elf_facts
    from .errors import InvalidImageError

    global_sonames: Set[str] = set()
    if exe:
        try:
            f = read_elf_facts(exe, symbols=False)
            global_sonames.update(f.needed)
            if f.interpreter:
                global_sonames.add(posixpath.basename(f.interpreter))
        except (InvalidImageError, OSError):
            pass
    out: List[LoadedObject] = []
    facts: Dict[str, Optional[ElfFacts]] = {}
    for p in paths:
        try:
            facts[p] = read_elf_facts(p, symbols=False)
        except (InvalidImageError, OSError):
            facts[p] = None
    # dependencies of global objects are global too (the main program's search list)
    changed = True
    while changed:
        changed = False
        for p in paths:
            fp = facts.get(p)
            if fp is None:
                continue
            if (fp.soname in global_sonames or posixpath.basename(p) in global_sonames):
                for n in fp.needed:
                    if n not in global_sonames:
                        global_sonames.add(n)
                        changed = True
    for p in paths:
        fp = facts.get(p)
        if fp is None:
            continue
        soname = fp.soname
        is_global = soname in global_sonames or posixpath.basename(p) in global_sonames
        out.append(LoadedObject(p, soname, is_global, (posixpath.basename(p),) if is_global else ()))
    return tuple(out)
