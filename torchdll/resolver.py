"""A pure model of how the Windows loader finds one module for one load call.

:func:`resolve` answers "which file does ``LoadLibraryExW(name, flags)`` -- or an import of
``name`` by some module -- bind to, by which rule, and what was tried on the way". It follows
Microsoft's "Dynamic-link library search order" and the ``LoadLibraryExW`` flag rules as
summarised in ``shared/research/anchors.md`` section 3:

1. name normalisation: case-insensitive, ``.dll`` appended when there is no extension unless the
   name ends with a dot; a name with a path separator is a path;
2. API sets (``api-*``/``ext-*``), resolved per importer;
3. the loaded-module list: a loaded module with the same base name wins wherever it lives
   (the first one loaded, when several share a name);
4. KnownDLLs;
5. a directory search whose order depends on the mode:

   * **A** -- any ``LOAD_LIBRARY_SEARCH_*`` flag (or a process default set by
     ``SetDefaultDllDirectories``): DLL load dir, application dir, user dirs, System32;
   * **B** -- standard order: application dir, System32, System, Windows, current dir, PATH
     (the current dir moves to second place when SafeDllSearchMode is off);
   * **C** -- ``LOAD_WITH_ALTERED_SEARCH_PATH`` with an absolute path: like B with the loaded
     DLL's own folder first;
   * **D** -- ``SetDllDirectory(dir)`` in effect: application dir, ``dir``, System32, System,
     Windows, PATH (no current dir).

During a directory search a file built for another machine is skipped and the search goes
on; a wrong-machine (or unreadable) file named by full path fails with 193.

Nothing here touches the real loader: a :class:`~torchdll.fsview.FileView` answers what files
exist, so the same code analyses a live machine or a mirrored tree on Linux.
"""

from __future__ import annotations

import ntpath
from typing import Iterator, List, Mapping, Optional, Sequence, Tuple

from .apisets import ApiSetSchema, default_schema, is_api_set_name
from .fsview import FileView
from .model import (
    SEARCH_MASK,
    Candidate,
    LoadContext,
    LoadFlags,
    Machine,
    Resolution,
    Rule,
    Skip,
)

__all__ = [
    "ERROR_BAD_EXE_FORMAT",
    "ERROR_INVALID_PARAMETER",
    "ERROR_MOD_NOT_FOUND",
    "effective_flags",
    "machine_compatible",
    "normalize_name",
    "resolve",
    "search_dirs",
]

#: winerror.h
ERROR_INVALID_PARAMETER = 87
ERROR_MOD_NOT_FOUND = 126
ERROR_BAD_EXE_FORMAT = 193

_F = LoadFlags


def normalize_name(name: str) -> str:
    """Apply the loader's name rules: ``/`` -> ``\\``; ``.dll`` appended when the final component
    has no extension; a trailing dot means "no extension" and is removed."""
    name = name.replace("/", "\\")
    head, _, base = name.rpartition("\\")
    if base.endswith("."):
        base = base.rstrip(".")
    elif "." not in base:
        base += ".dll"
    return f"{head}\\{base}" if head else base


def _is_absolute(path: str) -> bool:
    return path.startswith("\\\\") or (len(path) > 2 and path[1] == ":" and path[2] == "\\")


def machine_compatible(process: Machine, image: Machine) -> bool:
    """Whether an image built for ``image`` can be mapped into a ``process`` process.

    ARM64EC images say AMD64 in their header and load into x64 (emulated) processes; ARM64X
    images say ARM64 and load into both native ARM64 and ARM64EC processes.
    """
    if process == image:
        return True
    if process == Machine.AMD64:
        return image == Machine.ARM64EC
    if process == Machine.ARM64:
        return image == Machine.ARM64X
    if process == Machine.ARM64EC:
        return image in (Machine.AMD64, Machine.ARM64X)
    return False


def _base(path: str) -> str:
    return path.replace("/", "\\").rsplit("\\", 1)[-1].lower()


def _dirs_standard(ctx: LoadContext, first: Tuple[Rule, str], flags: int) -> List[Tuple[Rule, str]]:
    cwd_allowed = bool(ctx.cwd) and not (flags & _F.SAFE_CURRENT_DIRS)
    cwd = [(Rule.CWD, ctx.cwd)] if cwd_allowed else []
    system = [
        (Rule.SYSTEM32, ctx.system32),
        (Rule.SYSTEM_DIR, ctx.system_dir),
        (Rule.WINDOWS_DIR, ctx.windows_dir),
    ]
    if ctx.safe_dll_search_mode:
        dirs = [first, *system, *cwd]
    else:
        dirs = [first, *cwd, *system]
    return dirs + [(Rule.PATH, p) for p in ctx.path]


def effective_flags(ctx: LoadContext, flags: int) -> int:
    """The flags a search really uses. After ``SetDefaultDllDirectories``, a call without
    ``LOAD_LIBRARY_SEARCH_*`` flags uses the process default, and ``LOAD_WITH_ALTERED_SEARCH_PATH``
    becomes ``LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR`` plus the default (Wine's LdrGetDllPath; the 87 for
    a relative name is reproduced on Windows by java-native-access/jna#1614 and
    JuliaLang/julia#47775)."""
    if flags & SEARCH_MASK or not ctx.default_flags:
        return flags
    default = ctx.default_flags & SEARCH_MASK
    if flags & _F.LOAD_WITH_ALTERED_SEARCH_PATH:
        return (flags & ~int(_F.LOAD_WITH_ALTERED_SEARCH_PATH)) | int(_F.SEARCH_DLL_LOAD_DIR) | default
    return flags | default


def search_dirs(
    ctx: LoadContext, flags: int = 0, load_dir: Optional[str] = None
) -> List[Tuple[Rule, str]]:
    """The folders a bare-name search visits, in order, for these flags (modes A-D).

    ``AddDllDirectory`` folders are searched **last added first**: Microsoft leaves the order
    unspecified, but Wine's conformance test ``test_LoadLibraryEx_search_flags``, which also runs
    on Windows, expects it, and Wine 8 measured the same.
    """
    flags = effective_flags(ctx, flags)
    search = flags & SEARCH_MASK
    altered = bool(flags & _F.LOAD_WITH_ALTERED_SEARCH_PATH)
    if search:  # mode A
        dirs: List[Tuple[Rule, str]] = []
        if search & _F.SEARCH_DLL_LOAD_DIR and load_dir:
            dirs.append((Rule.DLL_LOAD_DIR, load_dir))
        if search & (_F.SEARCH_APPLICATION_DIR | _F.SEARCH_DEFAULT_DIRS):
            dirs.append((Rule.APP_DIR, ctx.app_dir))
        if search & (_F.SEARCH_USER_DIRS | _F.SEARCH_DEFAULT_DIRS):
            dirs.extend((Rule.USER_DIR, d) for d in reversed(ctx.user_dirs))
            if ctx.dll_directory:
                dirs.append((Rule.DLL_DIRECTORY, ctx.dll_directory))
        if search & (
            _F.SEARCH_SYSTEM32 | _F.SEARCH_DEFAULT_DIRS | _F.SEARCH_SYSTEM32_NO_FORWARDER
        ):
            dirs.append((Rule.SYSTEM32, ctx.system32))
        return dirs
    first = (Rule.ALTERED_DIR, load_dir) if altered and load_dir else (Rule.APP_DIR, ctx.app_dir)
    if ctx.dll_directory is not None:  # mode D (and C with SetDllDirectory: same routine)
        dirs = [first]
        if ctx.dll_directory:
            dirs.append((Rule.DLL_DIRECTORY, ctx.dll_directory))
        dirs += [
            (Rule.SYSTEM32, ctx.system32),
            (Rule.SYSTEM_DIR, ctx.system_dir),
            (Rule.WINDOWS_DIR, ctx.windows_dir),
        ]
        return dirs + [(Rule.PATH, p) for p in ctx.path]
    return _dirs_standard(ctx, first, flags)  # mode B, or C with the DLL's folder first


_INVALID_PATH_CHARS = '"<>|?*'


def _absolutize(directory: str, cwd: str) -> Optional[str]:
    """A search folder as an absolute path (relative PATH entries are relative to the current
    directory), or ``None`` when it cannot be one: blank, relative with no cwd, or holding a
    character no Windows path can (the loader takes PATH entries literally, so a quoted entry
    never matches a folder)."""
    if not directory.strip() or any(c in directory for c in _INVALID_PATH_CHARS):
        return None
    d = directory.replace("/", "\\")
    if _is_absolute(d):
        return d
    if not cwd:
        return None
    if len(d) >= 2 and d[1] == ":":  # drive-relative "C:foo": relative to that drive's cwd
        if cwd[:2].lower() != d[:2].lower():
            return None
        d = d[2:]
    return ntpath.join(cwd, d)


class _Search:
    """One directory search, recording every candidate."""

    def __init__(self, view: FileView, machine: Machine) -> None:
        self.view = view
        self.machine = machine
        self.candidates: List[Candidate] = []
        self.notes: List[str] = []
        self._seen: set[str] = set()

    def probe(self, rule: Rule, directory: str, name: str) -> Optional[str]:
        """Return the path if ``name`` in ``directory`` is usable, else record why not.

        Raises :class:`_BadImage` for a present file that is not a valid image (the loader
        stops there with 193 instead of searching on)."""
        key = directory.rstrip("\\").lower()
        if key in self._seen:
            return None
        self._seen.add(key)
        if "\\" in name:  # a relative path appended to every folder
            path = ntpath.join(directory, name)
            exists = self.view.host_path(path) is not None
        else:
            real = self.view.listdir(directory).get(name.lower())
            path = ntpath.join(directory, real if real else name)
            exists = real is not None
        if not exists:
            self.candidates.append(Candidate(path, rule, Skip.ABSENT))
            return None
        machine = self.view.machine(path)
        if machine is None:
            self.candidates.append(Candidate(path, rule, Skip.UNREADABLE))
            raise _BadImage(path, rule)
        if not machine_compatible(self.machine, machine):
            self.candidates.append(Candidate(path, rule, Skip.WRONG_MACHINE))
            self.notes.append(
                f"skipped {path}: built for {machine.label}, process is {self.machine.label}"
            )
            return None
        self.candidates.append(Candidate(path, rule, Skip.SELECTED))
        return path


class _BadImage(Exception):
    def __init__(self, path: str, rule: Rule) -> None:
        super().__init__(path)
        self.path = path
        self.rule = rule


def _iter_user_dir_duplicates(
    view: FileView, dirs: Sequence[Tuple[Rule, str]], name: str, chosen: str
) -> Iterator[str]:
    for rule, d in dirs:
        if rule is Rule.USER_DIR:
            real = view.listdir(d).get(name.lower())
            if real is not None:
                path = ntpath.join(d, real)
                if path.lower() != chosen.lower():
                    yield path


def resolve(
    name: str,
    ctx: LoadContext,
    view: FileView,
    *,
    flags: int = 0,
    importer: Optional[str] = None,
    load_dir: Optional[str] = None,
    loaded: Optional[Mapping[str, str]] = None,
    apisets: Optional[ApiSetSchema] = None,
) -> Resolution:
    """Resolve ``name`` for one load.

    ``importer`` is the Windows path of the importing module, or ``None`` for the name passed
    to ``LoadLibraryExW`` itself (then flag validation applies). ``load_dir`` is the folder of
    the DLL the load call named (for ``LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR`` and
    ``LOAD_WITH_ALTERED_SEARCH_PATH``). ``loaded`` overrides ``ctx.loaded`` (lower-case base
    name -> path) so a caller can add the modules mapped so far in the same call.
    """
    loaded_map = ctx.loaded if loaded is None else loaded
    schema = apisets if apisets is not None else default_schema()
    norm = normalize_name(name)
    top_level = importer is None
    notes: List[str] = []

    if top_level:
        search_bits = flags & SEARCH_MASK
        if (flags & _F.LOAD_WITH_ALTERED_SEARCH_PATH and not search_bits and ctx.default_flags
                and not _is_absolute(norm)):
            return Resolution(
                name, None, None, error=ERROR_INVALID_PARAMETER,
                notes=("after SetDefaultDllDirectories, LOAD_WITH_ALTERED_SEARCH_PATH acts as "
                       "LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR, which needs a fully qualified path",),
            )
        if flags & _F.LOAD_WITH_ALTERED_SEARCH_PATH and search_bits:
            return Resolution(
                name, None, None, error=ERROR_INVALID_PARAMETER,
                notes=("LOAD_WITH_ALTERED_SEARCH_PATH cannot be combined with "
                       "LOAD_LIBRARY_SEARCH_* flags",),
            )
        if flags & _F.SEARCH_DLL_LOAD_DIR and not _is_absolute(norm):
            return Resolution(
                name, None, None, error=ERROR_INVALID_PARAMETER,
                notes=("LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR needs a fully qualified path",),
            )

    has_path = "\\" in norm

    # 2. API sets
    if not has_path and is_api_set_name(norm):
        known, host = schema.lookup(norm, importer)
        if known and host:
            inner = resolve(host, ctx, view, flags=flags, importer=importer or "",
                            load_dir=load_dir, loaded=loaded_map, apisets=schema)
            return Resolution(
                name, inner.path, Rule.API_SET, inner.candidates, inner.error, host=host,
                notes=(f"API set {norm.lower()} -> {host} ({inner.rule.value if inner.rule else 'not found'})",
                       *inner.notes),
            )
        if known:
            return Resolution(name, None, Rule.API_SET, error=ERROR_MOD_NOT_FOUND,
                              notes=(f"API set {norm.lower()} exists but maps to no host",))
        notes.append(f"{norm.lower()} is not in the API set schema; searched as a file")

    # full path
    if has_path and _is_absolute(norm):
        same = loaded_map.get(_base(norm))  # one lookup: the map is keyed by base name
        if same is not None and same.lower() == norm.lower():
            return Resolution(name, same, Rule.LOADED,
                              (Candidate(same, Rule.LOADED, Skip.SELECTED),), notes=tuple(notes))
        if view.host_path(norm) is None:
            return Resolution(name, None, Rule.FULL_PATH,
                              (Candidate(norm, Rule.FULL_PATH, Skip.ABSENT),),
                              error=ERROR_MOD_NOT_FOUND, notes=tuple(notes))
        machine = view.machine(norm)
        if machine is None or not machine_compatible(ctx.machine, machine):
            skip = Skip.UNREADABLE if machine is None else Skip.WRONG_MACHINE
            why = ("not a valid image" if machine is None
                   else f"built for {machine.label}, process is {ctx.machine.label}")
            return Resolution(name, None, Rule.FULL_PATH, (Candidate(norm, Rule.FULL_PATH, skip),),
                              error=ERROR_BAD_EXE_FORMAT, notes=(*notes, f"{norm}: {why}"))
        return Resolution(name, norm, Rule.FULL_PATH,
                          (Candidate(norm, Rule.FULL_PATH, Skip.SELECTED),), notes=tuple(notes))

    base = _base(norm)
    if not has_path:
        # 3. loaded-module list
        hit = loaded_map.get(base)
        if hit is not None:
            return Resolution(name, hit, Rule.LOADED, (Candidate(hit, Rule.LOADED, Skip.SELECTED),),
                              notes=tuple(notes))
        # 4. KnownDLLs
        known_file = ctx.known_dlls.get(base)
        if known_file is not None:
            path = ntpath.join(ctx.system32, known_file)
            return Resolution(name, path, Rule.KNOWN_DLL,
                              (Candidate(path, Rule.KNOWN_DLL, Skip.SELECTED),), notes=tuple(notes))

    # 5. directory search
    dirs = search_dirs(ctx, flags, load_dir)
    search = _Search(view, ctx.machine)
    for rule, raw_dir in dirs:
        directory = _absolutize(raw_dir, ctx.cwd)
        if directory is None:
            if any(c in raw_dir for c in _INVALID_PATH_CHARS):
                notes.append(f"{rule.value} entry {raw_dir!r} holds a character no folder name can "
                             "(the loader does not remove quotes); skipped")
            elif raw_dir.strip():
                notes.append(f"{rule.value} entry {raw_dir!r} is relative and there is no current directory")
            continue
        try:
            found = search.probe(rule, directory, norm)
        except _BadImage as bad:
            return Resolution(name, None, bad.rule, tuple(search.candidates), ERROR_BAD_EXE_FORMAT,
                              notes=(*notes, *search.notes, f"{bad.path} is not a valid image"))
        if found is not None:
            if rule is Rule.USER_DIR:
                others = list(_iter_user_dir_duplicates(view, dirs, norm, found))
                if others:
                    notes.append(
                        "also in other AddDllDirectory folders (" + ", ".join(others) +
                        "); Windows does not specify their search order"
                    )
            return Resolution(name, found, rule, tuple(search.candidates),
                              notes=(*notes, *search.notes))
    if any(c.outcome is Skip.WRONG_MACHINE for c in search.candidates):
        # Only files of another machine: the search skips them, then fails with 193
        # (oracle/odpi#49; Wine's find_dll_file turns it into STATUS_INVALID_IMAGE_FORMAT).
        return Resolution(name, None, None, tuple(search.candidates), ERROR_BAD_EXE_FORMAT,
                          notes=(*notes, *search.notes, "only files built for another machine were found"))
    return Resolution(name, None, None, tuple(search.candidates), ERROR_MOD_NOT_FOUND,
                      notes=(*notes, *search.notes))
