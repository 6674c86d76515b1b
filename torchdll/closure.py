"""Replay a sequence of load calls on the loader model: the dependency closure and its failures.

:func:`simulate` takes ``LoadLibraryExW`` calls in order (for example torch's preload of every
``torch\\lib\\*.dll`` with flags ``0x1100``) and, for each, maps the target and its static
imports the way the loader does:

* every import is resolved with :func:`torchdll.resolver.resolve`, using the importer's own
  ``DependentLoadFlags`` when it has them and the call's flags otherwise ("the system searches
  for the dependent DLLs as if they were loaded with just their module names");
* modules mapped earlier in the same call, or by earlier successful calls, are found through
  the loaded-module list; a failed call maps nothing (the loader unloads what it mapped);
* once the graph is mapped, every imported name and ordinal is looked up in the exporter,
  following forwarders (``NTDLL.RtlFoo``, ``dll.#12``) -- a missing name is 127, a missing
  ordinal 182;
* delay-load imports are resolved too, as the default delay-load helper would later resolve
  them (``LoadLibraryExA(name, NULL, 0)``: the standard search), but they never fail the call;
  their outcome is reported as *latent*.

The first failure in import order decides the call's predicted error and its *culprit* edge:
the module that is really missing, the symbol that is really absent -- not the first DLL the
caller happened to try.
"""

from __future__ import annotations

import ntpath
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from .apisets import ApiSetSchema, default_schema
from .errors import InvalidImageError
from .fsview import FileView
from .model import ImageFacts, ImportedModule, LoadContext, Resolution, Rule
from .resolver import ERROR_BAD_EXE_FORMAT, ERROR_MOD_NOT_FOUND, resolve

__all__ = [
    "ERROR_INVALID_ORDINAL",
    "ERROR_PROC_NOT_FOUND",
    "CallResult",
    "Edge",
    "InitFailure",
    "Origin",
    "InitRule",
    "LoadCall",
    "LoadSimulator",
    "MissingSymbol",
    "Simulation",
    "dependency_closure",
    "simulate",
]

#: winerror.h
ERROR_PROC_NOT_FOUND = 127
ERROR_INVALID_ORDINAL = 182

_MAX_FORWARD_HOPS = 16


@dataclass(frozen=True)
class LoadCall:
    """One ``LoadLibraryExW(target, NULL, flags)`` call."""

    target: str
    flags: int = 0


@dataclass(frozen=True)
class MissingSymbol:
    """An import that the resolved exporter does not provide.

    ``symbol`` is a name or ``#N`` for an ordinal; ``exporter`` is the module where the lookup
    finally failed (after forwarders); ``chain`` lists the forwarder hops taken.
    """

    symbol: str
    exporter: str
    chain: Tuple[str, ...] = ()
    error: int = ERROR_PROC_NOT_FOUND


@dataclass(frozen=True)
class Edge:
    """``importer`` imports ``name``: how it resolved and what is missing from it."""

    importer: str
    name: str
    delay: bool
    flags: int
    resolution: Resolution
    missing: Tuple[MissingSymbol, ...] = ()
    #: for a delay-load edge: the error the delay helper's own load of the found DLL would
    #: return (its dependencies), and the edge inside that load that causes it
    load_error: Optional[int] = None
    load_culprit: Optional["Edge"] = None

    @property
    def error(self) -> Optional[int]:
        if self.resolution.error is not None:
            return self.resolution.error
        if self.missing:
            return self.missing[0].error
        return self.load_error


@dataclass(frozen=True)
class CallResult:
    """The predicted outcome of one load call.

    ``error`` is ``None`` on success, else the Win32 code the call returns; ``culprit`` is the
    edge that causes it (``None`` when the target itself was not found or is bad, see
    ``resolution``). ``mapped`` lists the modules the call maps (in load order) and ``edges``
    every import it resolved (delay imports included, marked).
    """

    call: LoadCall
    resolution: Resolution
    error: Optional[int]
    culprit: Optional[Edge]
    mapped: Tuple[str, ...]
    edges: Tuple[Edge, ...] = ()
    bad_image: Optional[str] = None
    reason: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Origin:
    """How a module got into the process: the load call that mapped it and the rule that found
    it (``Rule.FULL_PATH`` for the call's own target)."""

    call: LoadCall
    rule: Optional[Rule]


@dataclass(frozen=True)
class InitFailure:
    """A module whose initialisation is expected to fail: ``code`` (1114 for a DllMain or static
    constructor failure), the ``edge`` that explains it, and why."""

    code: int
    edge: Optional[Edge]
    reason: str


#: An initialisation rule: given the simulator, the modules a call maps (in load order) and the
#: edges it resolved, the first expected initialisation failure, or ``None``.
InitRule = Callable[["LoadSimulator", Tuple[str, ...], Tuple[Edge, ...]], Optional[InitFailure]]


@dataclass(frozen=True)
class Simulation:
    """The result of :func:`simulate`: per-call outcomes and the whole dependency graph.

    ``edges`` concatenates the edges of every call; a module that a failed call mapped is mapped
    again (and its edges resolved again) by the next call that needs it, as on Windows.
    """

    results: Tuple[CallResult, ...]
    edges: Tuple[Edge, ...]
    modules: Mapping[str, ImageFacts] = field(default_factory=dict)
    invalid: Mapping[str, str] = field(default_factory=dict)
    loaded: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def edges_from(self, importer: str) -> Tuple[Edge, ...]:
        low = importer.lower()
        return tuple(e for e in self.edges if e.importer.lower() == low)

    @property
    def missing_modules(self) -> Tuple[Edge, ...]:
        return tuple(e for e in self.edges if not e.delay and e.resolution.error is not None)

    @property
    def missing_symbols(self) -> Tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.missing)

    @property
    def latent(self) -> Tuple[Edge, ...]:
        """Delay-load edges that would fail when first used."""
        return tuple(e for e in self.edges if e.delay and e.error is not None)


def _base(path: str) -> str:
    return path.rsplit("\\", 1)[-1].lower()


class LoadSimulator:
    """A process whose loads are replayed one call at a time.

    :func:`simulate` uses it for a fixed context; a caller that replays a program which changes
    its own state between loads (torch's loader patches PATH and retries after a 126) sets
    :attr:`context` between calls. The loaded-module list carries over from call to call.
    """

    def __init__(self, ctx: LoadContext, view: FileView, apisets: Optional[ApiSetSchema] = None,
                 follow_delay: bool = True, init_rules: Sequence[InitRule] = ()) -> None:
        self.ctx = ctx
        self.init_rules = tuple(init_rules)
        self.view = view
        self.apisets = apisets if apisets is not None else default_schema()
        self.follow_delay = follow_delay
        self.loaded: Dict[str, str] = dict(ctx.loaded)
        self.loaded_paths: Set[str] = {p.lower() for p in self.loaded.values()}
        self.modules: Dict[str, ImageFacts] = {}
        self.invalid: Dict[str, str] = {}
        self.done: Set[str] = set()  # modules whose imports were already checked
        self.origins: Dict[str, Origin] = {}  # lower-case path -> how it was loaded
        self._map_forward: Optional[Callable[[str, Optional[Rule]], None]] = None

    def facts(self, path: str) -> Optional[ImageFacts]:
        key = path.lower()
        if key in self.invalid:
            return None
        hit = self.modules.get(key)
        if hit is None:
            try:
                hit = self.view.facts(path)
            except InvalidImageError as exc:
                self.invalid[key] = exc.reason
                return None
            self.modules[key] = hit
        return hit

    # -- symbol checks -------------------------------------------------------------------
    def _lookup(
        self, exporter: str, symbol: str, flags: int, load_dir: Optional[str],
        loaded: Mapping[str, str], chain: Tuple[str, ...] = (),
    ) -> Optional[MissingSymbol]:
        """``None`` if ``exporter`` provides ``symbol`` (a name or ``#N``), else what is missing."""
        facts = self.facts(exporter)
        if facts is None:
            return MissingSymbol(symbol, exporter, chain, ERROR_BAD_EXE_FORMAT)
        exports = facts.exports
        is_ord = symbol.startswith("#") and symbol[1:].isdigit()
        if is_ord:
            ordinal = int(symbol[1:])
            if not exports.has_ordinal(ordinal):
                return MissingSymbol(symbol, exporter, chain, ERROR_INVALID_ORDINAL)
            fwd = exports.forwarder_of_ordinal(ordinal)
        else:
            if not exports.has_name(symbol):
                return MissingSymbol(symbol, exporter, chain, ERROR_PROC_NOT_FOUND)
            fwd = exports.forwarder_of_name(symbol)
        if fwd is None:
            return None
        if len(chain) >= _MAX_FORWARD_HOPS:
            return MissingSymbol(symbol, exporter, chain + (fwd,), ERROR_PROC_NOT_FOUND)
        mod, _, target = fwd.rpartition(".")
        if not mod or not target:
            return MissingSymbol(symbol, exporter, chain + (fwd,), ERROR_PROC_NOT_FOUND)
        res = resolve(mod, self.ctx, self.view, flags=flags, importer=exporter,
                      load_dir=load_dir, loaded=loaded, apisets=self.apisets)
        if res.path is None:
            return MissingSymbol(symbol, exporter, chain + (fwd,), res.error or ERROR_MOD_NOT_FOUND)
        if self._map_forward is not None and res.rule is not Rule.LOADED:
            # the loader loads a forwarder's target module (with its imports) when it snaps
            self._map_forward(res.path, res.rule)
        return self._lookup(res.path, target, flags, load_dir, loaded, chain + (fwd,))

    def _check_symbols(self, importer: str, edge_res: Resolution, names: Sequence[str],
                       ordinals: Sequence[int], flags: int, load_dir: Optional[str],
                       loaded: Mapping[str, str]) -> Tuple[MissingSymbol, ...]:
        assert edge_res.path is not None
        missing: List[MissingSymbol] = []
        facts = self.facts(edge_res.path)
        if facts is not None and names:
            # fast path: a name exported here and not forwarded needs no further work
            has = facts.exports.names.__contains__
            forwarded = facts.exports.forwarders
            slow = [n for n in names if not has(n) or n in forwarded]
        else:
            slow = list(names)
        for sym in [*slow, *(f"#{o}" for o in ordinals)]:
            miss = self._lookup(edge_res.path, sym, flags, load_dir, loaded)
            if miss is not None:
                missing.append(miss)
        return tuple(missing)

    @property
    def context(self) -> LoadContext:
        """The process state used for the next call (its ``loaded`` field is ignored: the
        simulator keeps its own loaded-module list, see :attr:`loaded`)."""
        return self.ctx

    @context.setter
    def context(self, ctx: LoadContext) -> None:
        self.ctx = ctx

    def simulation(self, results: Sequence[CallResult]) -> Simulation:
        """Bundle ``results`` (returned by :meth:`run`) with the graph facts gathered so far."""
        edges = tuple(e for r in results for e in r.edges)
        return Simulation(tuple(results), edges, dict(self.modules), dict(self.invalid),
                          dict(self.loaded))

    # -- one call ------------------------------------------------------------------------
    def run(self, call: LoadCall) -> CallResult:
        """Replay one load call and predict its outcome."""
        edges: List[Edge] = []
        top = resolve(call.target, self.ctx, self.view, flags=call.flags,
                      loaded=self.loaded, apisets=self.apisets)
        if top.path is None:
            return CallResult(call, top, top.error or ERROR_MOD_NOT_FOUND, None, ())
        if top.rule is Rule.LOADED or top.path.lower() in self.done:
            return CallResult(call, top, None, None, ())
        load_dir = ntpath.dirname(top.path) if top.rule is Rule.FULL_PATH else None
        # Names visible during this call: the process's modules plus what this call maps.
        visible: Dict[str, str] = dict(self.loaded)
        mapped: List[str] = []
        mapped_keys: Set[str] = set()
        rules: Dict[str, Optional[Rule]] = {}
        errors: List[Tuple[int, Optional[Edge], Optional[str]]] = []
        delayed: List[Tuple[str, ImportedModule]] = []
        pending: List[Tuple[Edge, Sequence[str], Sequence[int], int]] = []

        def map_tree(root: str, rule: Optional[Rule]) -> None:
            """Map ``root`` and its static imports, depth-first in import order."""
            if root.lower() in mapped_keys or root.lower() in self.done:
                return
            rules.setdefault(root.lower(), rule)
            visible.setdefault(_base(root), root)
            stack = [root]
            while stack:
                path = stack.pop()
                key = path.lower()
                if key in mapped_keys or key in self.done:
                    continue
                mapped.append(path)
                mapped_keys.add(key)
                facts = self.facts(path)
                if facts is None:
                    errors.append((ERROR_BAD_EXE_FORMAT, None, path))
                    continue
                flags = facts.dependent_load_flags or call.flags
                children: List[str] = []
                for imp in facts.imports:
                    if imp.delay:
                        delayed.append((path, imp))
                        continue
                    res = resolve(imp.dll, self.ctx, self.view, flags=flags, importer=path,
                                  load_dir=load_dir, loaded=visible, apisets=self.apisets)
                    edge = Edge(path, imp.dll, False, flags, res)
                    if res.path is None:
                        edges.append(edge)
                        errors.append((res.error or ERROR_MOD_NOT_FOUND, edge, None))
                        continue
                    pending.append((edge, imp.names, imp.ordinals, flags))
                    if res.rule is not Rule.LOADED and res.path.lower() not in self.done:
                        visible.setdefault(_base(res.path), res.path)
                        rules.setdefault(res.path.lower(), res.rule)
                        children.append(res.path)
                stack.extend(reversed(children))

        map_tree(top.path, top.rule)
        # snap imports: names and ordinals against exporters (after forwarders, whose target
        # modules are mapped -- with their own imports -- as they are met)
        self._map_forward = map_tree
        try:
            i = 0
            while i < len(pending):
                edge, names, ordinals, flags = pending[i]
                i += 1
                missing = self._check_symbols(edge.importer, edge.resolution, names, ordinals,
                                              flags, load_dir, visible)
                final = Edge(edge.importer, edge.name, False, flags, edge.resolution, missing)
                edges.append(final)
                if missing:
                    errors.append((missing[0].error, final, None))
        finally:
            self._map_forward = None
        # in the order the loader meets them: mapping the graph, then snapping imports (a
        # forwarder's target is mapped while snapping)
        first_error = errors[0] if errors else None

        reason: Optional[str] = None
        if first_error is None:
            # every module is mapped and snapped: initialisers run now (dependencies first)
            for rule in self.init_rules:
                failure = rule(self, tuple(mapped), tuple(edges))
                if failure is not None:
                    first_error = (failure.code, failure.edge, None)
                    reason = failure.reason
                    break
        if first_error is None:
            for path in mapped:
                self.origins.setdefault(path.lower(), Origin(call, rules.get(path.lower())))
                self.loaded.setdefault(_base(path), path)
                self.loaded_paths.add(path.lower())
                self.done.add(path.lower())
        # delay imports: resolved later by the delay helper (LoadLibraryExA(name, NULL, 0)),
        # which also loads the found DLL's own imports: a failure there is latent too
        if self.follow_delay:
            for importer, imp in delayed:
                edges.append(self._delay_edge(importer, imp, self.loaded if first_error is None else visible))
        if first_error is None:
            return CallResult(call, top, None, None, tuple(mapped), tuple(edges))
        code, culprit, bad = first_error
        return CallResult(call, top, code, culprit, tuple(mapped), tuple(edges), bad_image=bad,
                          reason=reason)

    def _delay_edge(self, importer: str, imp: ImportedModule, loaded: Mapping[str, str]) -> Edge:
        res = resolve(imp.dll, self.ctx, self.view, flags=0, importer=importer, loaded=loaded,
                      apisets=self.apisets)
        if res.path is None or self.facts(res.path) is None:
            return Edge(importer, imp.dll, True, 0, res)
        load_error: Optional[int] = None
        load_culprit: Optional[Edge] = None
        if res.rule is not Rule.LOADED and res.path.lower() not in self.done:
            dry = self.dry_run(LoadCall(res.path, 0))
            load_error, load_culprit = dry.error, dry.culprit
        latent = self._check_symbols(importer, res, imp.names, imp.ordinals, 0, None, self.loaded)
        return Edge(importer, imp.dll, True, 0, res, latent, load_error, load_culprit)

    def dry_run(self, call: LoadCall) -> CallResult:
        """Replay ``call`` without keeping anything it maps (a load that may happen later)."""
        saved = (dict(self.loaded), set(self.loaded_paths), set(self.done), dict(self.origins),
                 self.ctx, self.follow_delay)
        self.follow_delay = False
        try:
            return self.run(call)
        finally:
            (self.loaded, self.loaded_paths, self.done, self.origins, self.ctx,
             self.follow_delay) = saved


def simulate(
    calls: Sequence[LoadCall],
    ctx: LoadContext,
    view: FileView,
    *,
    apisets: Optional[ApiSetSchema] = None,
    follow_delay: bool = True,
) -> Simulation:
    """Replay ``calls`` in order and predict each outcome (see the module docstring)."""
    sim = LoadSimulator(ctx, view, apisets, follow_delay)
    return sim.simulation([sim.run(c) for c in calls])


def dependency_closure(
    roots: Sequence[str],
    ctx: LoadContext,
    view: FileView,
    *,
    flags: int = 0x1100,
    apisets: Optional[ApiSetSchema] = None,
) -> Simulation:
    """Load each root (a full Windows path) in order with ``flags``: torch's own preload uses
    ``0x1100`` (``LOAD_LIBRARY_SEARCH_DEFAULT_DIRS | LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR``)."""
    return simulate([LoadCall(r, flags) for r in roots], ctx, view, apisets=apisets)
