"""Read ``LD_DEBUG=libs,files`` output: which search step found each object ld.so mapped.

glibc's ld.so prints, for every object it has to find (``elf/dl-load.c``):

* ``file=NAME [NS];  needed by REQUESTER [NS]`` (a ``DT_NEEDED`` entry) or
  ``file=NAME [NS];  dynamically loaded by CALLER [NS]`` (a dlopen() call), unless NAME matched
  an object already loaded (by name or ``DT_SONAME``): then it prints nothing at all;
* ``find library=NAME [NS]; searching`` when NAME has no slash and a search starts;
* one `` search path=DIR:DIR...\\t\\t(LABEL)`` header per run of directories with the same label,
  LABEL being ``RPATH from file X``, ``LD_LIBRARY_PATH``, ``RUNPATH from file X`` or
  ``system search path``, and `` search cache=/etc/ld.so.cache`` before the cache lookup;
* ``  trying file=PATH`` for every candidate (the last one before the object is mapped is the
  file that was taken: its path is the object's ``l_name``);
* ``file=NAME [NS];  generating link map`` when a new object is mapped.

The rule of a new object is the kind of the header above its successful ``trying file`` line:
``rpath``, ``ld-library-path``, ``runpath``, ``ld.so.cache`` or ``system-dir``; an object
named by a path (no ``find library`` line) is ``path``. An object that was already loaded is
``loaded``: for a name that matched by name or soname ld.so prints nothing, for a file found
again under another path it prints ``file=... needed by`` and no ``generating link map``.

Caveat (the one place where LD_DEBUG can mislead): a header's LABEL is that of the *first*
search list that created the directory entry (ld.so keeps one ``r_search_path_elem`` per
directory string, ``GL(dl_all_dirs)``), not of the list being searched. A ``DT_RUNPATH`` entry
spelled like an earlier ``DT_RPATH`` entry is printed as ``RPATH from file <first>``, an empty
entry shared with ``LD_LIBRARY_PATH`` as ``LD_LIBRARY_PATH``. The scenario generator spells the
entries of each kind differently so that labels stay true, and :meth:`Search.consistent`
flags a block whose label sequence is impossible (e.g. RPATH after LD_LIBRARY_PATH).

``dlrun`` brackets every dlopen() with ``dlrun: step N`` / ``dlrun: end N`` lines on the same
file descriptor, so requests are attributed to their call even when a call prints nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

RPATH = "rpath"
LD_LIBRARY_PATH = "ld-library-path"
RUNPATH = "runpath"
CACHE = "ld.so.cache"
SYSTEM = "system-dir"
PATH = "path"
LOADED = "loaded"

RULES = (RPATH, LD_LIBRARY_PATH, RUNPATH, CACHE, SYSTEM, PATH, LOADED)

_PREFIX = re.compile(r"^\s*\d+:\t?")
_FILE = re.compile(r"^file=(?P<name>.*) \[(?P<ns>\d+)\];  (?P<what>needed by|dynamically loaded by) "
                   r"(?P<req>.*) \[\d+\]$")
_MAP = re.compile(r"^file=(?P<name>.*) \[(?P<ns>\d+)\];  generating link map$")
_FIND = re.compile(r"^find library=(?P<name>.*) \[(?P<ns>\d+)\]; searching$")
_SEARCH = re.compile(r"^ search path=(?P<dirs>.*?)\t\t\((?P<label>.*)\)$")
_CACHE = re.compile(r"^ search cache=(?P<file>.*)$")
_TRY = re.compile(r"^  trying file=(?P<file>.*)$")
_MARK = re.compile(r"^dlrun: (?P<what>step|end) (?P<n>\d+)$")
_ASSERT = re.compile(r"Inconsistency detected by ld\.so: .*")


def label_kind(label: str) -> tuple[str, str | None]:
    """``"RPATH from file /x/liba.so"`` -> (``rpath``, ``/x/liba.so``)."""
    source: str | None = None
    head = label
    if " from file " in label:
        head, source = label.split(" from file ", 1)
    kind = {"RPATH": RPATH, "RUNPATH": RUNPATH, "LD_LIBRARY_PATH": LD_LIBRARY_PATH,
            "system search path": SYSTEM}.get(head)
    if kind is None:
        raise ValueError(f"unknown search path label {label!r}")
    return kind, source


@dataclass
class Segment:
    """One header of a search (or the cache lookup) and the files tried under it."""

    kind: str
    label: str
    source: str | None  # "from file X" of the label (the list that created the entries)
    dirs: list[str]
    tried: list[str] = field(default_factory=list)


@dataclass
class Search:
    name: str
    segments: list[Segment] = field(default_factory=list)

    def last_try(self) -> str | None:
        for seg in reversed(self.segments):
            if seg.tried:
                return seg.tried[-1]
        return None

    def segment_of(self, path: str) -> Segment | None:
        """The segment of the last ``trying file=path`` line."""
        for seg in reversed(self.segments):
            if path in seg.tried:
                return seg
        return None

    def consistent(self) -> bool:
        """Whether the label sequence is one ld.so can print when labels are true.

        Order of ``_dl_map_object``: the RPATH lists (requester, its loaders, the main
        program), LD_LIBRARY_PATH, the requester's RUNPATH, the cache, the system
        directories; RPATH and RUNPATH lists never both (a requester with DT_RUNPATH skips
        every DT_RPATH)."""
        order = {RPATH: 0, LD_LIBRARY_PATH: 1, RUNPATH: 2, CACHE: 3, SYSTEM: 4}
        kinds = [s.kind for s in self.segments]
        if RPATH in kinds and RUNPATH in kinds:
            return False
        ranks = [order[k] for k in kinds]
        return ranks == sorted(ranks)


@dataclass
class Request:
    """One ``file=NAME`` request: a DT_NEEDED entry or a dlopen() argument."""

    name: str
    how: str  # "needed" or "dlopen"
    requester: str  # REQUESTER / CALLER as printed (an l_name)
    search: Search | None = None
    path: str | None = None  # l_name of the object mapped for it (None: none mapped)

    @property
    def mapped(self) -> bool:
        return self.path is not None

    @property
    def rule(self) -> str:
        """The rule that found the file (``loaded`` when no new object was mapped), as the
        label of its header says (see :meth:`rule_given` for the corrected one)."""
        if self.path is None:
            return LOADED
        if self.search is None:
            return PATH
        seg = self.search.segment_of(self.path)
        if seg is None:
            return PATH
        return seg.kind

    def rule_given(self, has_runpath: bool | None) -> str:
        """:attr:`rule`, corrected with one fact about the requester: whether it has
        ``DT_RUNPATH``.

        A requester with ``DT_RUNPATH`` has no RPATH phase, so a header labelled ``RPATH``
        in its search is its RUNPATH list reusing entries an RPATH list created first (an
        ``$ORIGIN`` of an object found through an RPATH entry expands to that very string); a
        requester without ``DT_RUNPATH`` has no RUNPATH phase, so a ``RUNPATH`` label there
        is an RPATH list of its loader chain reusing entries. ``None``: not known, no
        correction."""
        rule = self.rule
        if has_runpath is True and rule == RPATH:
            return RUNPATH
        if has_runpath is False and rule == RUNPATH:
            return RPATH
        return rule


@dataclass
class Step:
    """What ld.so printed during one dlopen() call (step 0: program start-up)."""

    index: int
    requests: list[Request] = field(default_factory=list)
    searches: list[Search] = field(default_factory=list)  # including failed ones
    closed: bool = False  # the "dlrun: end N" marker was seen

    def new_objects(self) -> list[Request]:
        return [r for r in self.requests if r.mapped]

    def rule_of(self, l_name: str) -> str | None:
        for r in self.requests:
            if r.path == l_name:
                return r.rule
        return None

    def request_of(self, l_name: str) -> Request | None:
        for r in self.requests:
            if r.path == l_name:
                return r
        return None


@dataclass
class Trace:
    steps: list[Step]
    crash: str | None = None  # "Inconsistency detected by ld.so: ..." (an assertion)
    other: list[str] = field(default_factory=list)  # unrecognised lines (not debug output)

    def step(self, n: int) -> Step:
        for s in self.steps:
            if s.index == n:
                return s
        raise KeyError(n)


def parse(text: str) -> Trace:
    """Parse the standard error of ``dlrun`` run with ``LD_DEBUG=libs,files``."""
    steps: list[Step] = [Step(0)]
    crash: str | None = None
    other: list[str] = []
    current: Request | None = None  # the request the next find/search/map lines belong to
    search: Search | None = None
    for raw in text.splitlines():
        m = _MARK.match(raw)
        if m:
            n = int(m.group("n"))
            if m.group("what") == "step":
                steps.append(Step(n))
            else:
                steps[-1].closed = steps[-1].index == n
            current, search = None, None
            continue
        a = _ASSERT.search(raw)
        if a:
            crash = a.group(0).strip()
            continue
        if not _PREFIX.match(raw):
            if raw.strip():
                other.append(raw)
            continue
        line = _PREFIX.sub("", raw, count=1)
        step = steps[-1]
        m = _FILE.match(line)
        if m:
            current = Request(m.group("name"), "needed" if m.group("what") == "needed by"
                              else "dlopen", m.group("req"))
            step.requests.append(current)
            search = None
            continue
        m = _FIND.match(line)
        if m:
            search = Search(m.group("name"))
            step.searches.append(search)
            if current is not None and current.name == m.group("name") and current.search is None:
                current.search = search
            continue
        m = _SEARCH.match(line)
        if m and search is not None:
            kind, source = label_kind(m.group("label"))
            dirs = m.group("dirs").split(":") if m.group("dirs") else []
            search.segments.append(Segment(kind, m.group("label"), source, dirs))
            continue
        m = _CACHE.match(line)
        if m and search is not None:
            search.segments.append(Segment(CACHE, "cache", m.group("file"), []))
            continue
        m = _TRY.match(line)
        if m and search is not None:
            if not search.segments:  # cannot happen with glibc 2.36; keep the try anyway
                search.segments.append(Segment(RPATH, "?", None, []))
            search.segments[-1].tried.append(m.group("file"))
            continue
        m = _MAP.match(line)
        if m:
            req = current if current is not None and current.name == m.group("name") else None
            if req is None:  # the main program's own request is never printed: make one
                req = Request(m.group("name"), "needed", "")
                step.requests.append(req)
            if req.search is not None:
                req.path = req.search.last_try() or req.name
            else:
                req.path = req.name
            current, search = None, None
            continue
        # everything else (calling init/fini, dynamic:, entry:, opening file=...) is ignored
    return Trace(steps, crash, other)


def rules_by_object(step: Step) -> dict[str, str]:
    """l_name -> rule for every object mapped during ``step``."""
    return {r.path: r.rule for r in step.requests if r.path is not None}
