"""Compare torchdll's loader model with what Wine's loader did, scenario by scenario.

For each :class:`~tests.wine.scenarios.Scenario`:

* the **prediction** is :func:`torchdll.closure.simulate` over the scenario's context and calls:
  per call the error (or success) and the set of scenario modules in the process afterwards
  (which file every module name is bound to); for the delay-load step, the latent edge;
* the **observation** is the plan's output under Wine, translated to Windows terms by
  :func:`tests.wine.runner.windows_outcome` (a stub binding is the 127/182/126 Windows would
  return, and the modules Wine kept loaded are not counted). Calls after a stubbed one are not
  compared: Wine's process then holds modules Windows would have unloaded;
* when they differ, the scenario is re-predicted with the model's inputs adjusted the way Wine
  behaves, one :class:`Family` or a combination at a time (:data:`FAMILIES`). If an adjusted
  prediction agrees, the scenario is a *known deviation* of that family (or a *known model
  bug*, whose xfail test names it); otherwise it is an unexplained **disagreement**.

The families are explicit and few; docs/wine.md gives the evidence for each.
"""

from __future__ import annotations

import dataclasses
import itertools
import ntpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional

from torchdll.closure import CallResult, LoadCall, LoadSimulator
from torchdll.fsview import FileView
from torchdll.model import ImageFacts, LoadContext, Machine

from .runner import Outcome, PlanRun, windows_outcome
from .scenarios import Scenario

AGREE = "agree"
DEVIATION = "known-wine-deviation"
MODEL_BUG = "known-model-bug"
DISAGREE = "disagree"
BROKEN = "harness-error"


def norm(path: str) -> str:
    return ntpath.normpath(path.replace("/", "\\")).lower()


# --------------------------------------------------------------------------------------------
# predictions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DelayPrediction:
    dll: str
    path: str | None
    error: int | None
    missing: frozenset[str]


@dataclass(frozen=True)
class Prediction:
    errors: tuple[int | None, ...]  # per call, None = success
    loaded: tuple[frozenset[str], ...]  # per call: normalised paths of scenario modules after it
    delay: tuple[DelayPrediction, ...] | None  # latent edges of the delay module, if comparable
    results: tuple[CallResult, ...] = ()


class NoDependentLoadFlags:
    """A view whose images all have ``DependentLoadFlags == 0`` (what Wine 8 honours)."""

    def __init__(self, view: FileView) -> None:
        self._view = view

    def listdir(self, win_dir: str) -> Mapping[str, str]:
        return self._view.listdir(win_dir)

    def host_path(self, win_path: str) -> str | None:
        return self._view.host_path(win_path)

    def machine(self, win_path: str) -> Machine | None:
        return self._view.machine(win_path)

    def facts(self, win_path: str) -> ImageFacts:
        facts = self._view.facts(win_path)
        if facts.dependent_load_flags:
            facts = dataclasses.replace(facts, dependent_load_flags=0)
        return facts


def _relevant(path: str, token: str) -> bool:
    return ntpath.basename(path.replace("/", "\\")).lower().startswith(token)


Adjust = Callable[[LoadCall, LoadContext], tuple[LoadCall, LoadContext]]
Post = Callable[[CallResult, LoadContext], Optional[int]]


def predict(sc: Scenario, view: FileView, ctx: LoadContext | None = None,
            adjust: Sequence[Adjust] = (), post: Post | None = None,
            latest_wins: bool = False) -> Prediction:
    """Replay the scenario's calls on the model, one at a time.

    ``adjust`` functions may change a call and the context it runs in (the families use that);
    ``post`` may change the error code a result reports. ``latest_wins`` emulates Wine's
    one-entry lookup cache (ntdll's ``cached_modref``): the module the harness touched last --
    loadplan enumerates the modules after every step, so the last one of the process's list --
    is what its base name finds; other names find the first one loaded.
    """
    ctx = ctx or sc.context
    sim = LoadSimulator(ctx, view)
    results: list[CallResult] = []
    loaded: set[str] = {norm(p) for p in ctx.loaded.values() if _relevant(p, sc.token)}
    errors: list[int | None] = []
    after: list[frozenset[str]] = []
    order: list[str] = list(ctx.loaded.values())  # the process's modules, in load order
    for call in sc.load_calls():
        call_ctx = ctx
        for fn in adjust:
            call, call_ctx = fn(call, call_ctx)
        sim.context = call_ctx
        if latest_wins and order:
            first: dict[str, str] = {}
            for p in order:
                first.setdefault(ntpath.basename(p).lower(), p)
            first[ntpath.basename(order[-1]).lower()] = order[-1]
            sim.loaded = first
        res = sim.run(call)
        results.append(res)
        err = res.error if post is None else post(res, call_ctx)
        errors.append(err)
        if res.error is None and err is None:
            loaded |= {norm(p) for p in res.mapped if _relevant(p, sc.token)}
            order += list(res.mapped)
        after.append(frozenset(loaded))
    delay: tuple[DelayPrediction, ...] | None = None
    if sc.delay_module and results:
        last = results[-1]
        key = norm(sc.delay_module)
        names = [ntpath.basename(p).lower() for p in order]
        # under Wine's lookup cache, a delay load that meets a name loaded twice depends on
        # what the harness touched last: not compared
        ambiguous = latest_wins and len(set(names)) < len(names)
        if last.error is None and key in {norm(p) for p in last.mapped} and not ambiguous:
            items = []
            for e in last.edges:
                if not (e.delay and norm(e.importer) == key):
                    continue
                if e.resolution.path is None or e.load_error is not None:
                    # not found, or the delay helper's own load of it fails
                    d_err = e.resolution.error if e.resolution.path is None else e.load_error
                    if d_err is not None and post is not None:
                        d_err = post(CallResult(LoadCall(e.name, 0), e.resolution, d_err,
                                                e.load_culprit, ()), ctx)
                    items.append(DelayPrediction(e.name.lower(), None, d_err, frozenset()))
                else:
                    items.append(DelayPrediction(e.name.lower(), e.resolution.path, None,
                                                 frozenset(m.symbol for m in e.missing)))
            delay = tuple(items)
    return Prediction(tuple(errors), tuple(after), delay, tuple(results))


# --------------------------------------------------------------------------------------------
# observations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DelayObservation:
    dll: str
    path: str | None
    error: int | None
    missing: frozenset[str]
    codes: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Observation:
    outcomes: tuple[Outcome, ...]  # per compared call
    loaded: tuple[frozenset[str], ...]
    compared: int  # calls compared (stops after the first stubbed call)
    delay: tuple[DelayObservation, ...] | None
    notes: tuple[str, ...] = ()
    adapted: tuple[str, ...] = ()  # "stub" / "leftovers": observation adapters that fired


class HarnessProblem(Exception):
    pass


def observe(sc: Scenario, run: PlanRun | None) -> Observation:
    if run is None:
        raise HarnessProblem("no output for this plan")
    if run.fatal:
        raise HarnessProblem(f"loadplan: {run.fatal}")
    if not run.done:
        raise HarnessProblem(f"plan did not finish (exit {run.exit}, {len(run.steps)} steps)")
    for st in run.steps:
        if st.op in ("env", "cwd", "setdlldir", "defaultdirs", "adddir", "preload") and not st.ok:
            raise HarnessProblem(f"setup step {st.op} {st.arg!r} failed with {st.error}")
    loads = [st for st in run.steps if st.op in ("load", "loadw")]
    if len(loads) != len(sc.calls):
        raise HarnessProblem(f"{len(loads)} load steps for {len(sc.calls)} calls")
    outcomes: list[Outcome] = []
    loaded_sets: list[frozenset[str]] = []
    notes: list[str] = []
    previous = frozenset(norm(p) for p in sc.context.loaded.values() if _relevant(p, sc.token))
    adapted: list[str] = []
    for st in loads:
        out = windows_outcome(st, sc.token)
        now = frozenset(norm(m) for m in st.modules if _relevant(m, sc.token))
        i = len(outcomes)
        outcomes.append(out)
        if out.stubbed:
            # Windows fails the call and unloads what it mapped; Wine's process keeps them.
            loaded_sets.append(previous)
            adapted.append("stub")
            notes.append(f"call {i} bound stubs in Wine "
                         f"({', '.join(f'{s.dll}!{s.symbol}' for s in out.stubs)}); later calls "
                         "not compared")
            break
        if out.error is not None and now != previous:
            # Wine does not unload the dependencies a failed load had already mapped.
            loaded_sets.append(previous)
            adapted.append("leftovers")
            notes.append(f"call {i} failed in Wine and left {sorted(now - previous)} loaded; "
                         "later calls not compared")
            break
        loaded_sets.append(now)
        previous = now
    delay: tuple[DelayObservation, ...] | None = None
    delay_steps = [st for st in run.steps if st.op == "delay"]
    if sc.delay_module and delay_steps and len(outcomes) == len(sc.calls) and delay_steps[0].ok:
        st = delay_steps[0]
        stub_out = windows_outcome(dataclasses.replace(st, ok=True, error=0), sc.token)
        items = []
        for entry in st.delay:
            ok = bool(entry.get("ok"))
            err = None if ok else int(entry.get("error", 0))
            path = entry.get("path") if ok else None
            codes = frozenset() if err is None else frozenset({err})
            if ok and stub_out.stubbed:
                err, path, codes = stub_out.error, None, stub_out.codes
            items.append(DelayObservation(str(entry.get("dll", "")).lower(),
                                          str(path) if path else None, err,
                                          frozenset(str(m) for m in entry.get("missing", ())),
                                          codes))
        delay = tuple(items)
    return Observation(tuple(outcomes), tuple(loaded_sets), len(outcomes), delay, tuple(notes),
                       tuple(adapted))


# --------------------------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------------------------


def mismatches(sc: Scenario, pred: Prediction, obs: Observation) -> list[str]:
    out: list[str] = []
    for i in range(obs.compared):
        p_err, o = pred.errors[i], obs.outcomes[i]
        call = sc.calls[i]
        if p_err is None and o.error is not None:
            out.append(f"call {i} ({call.directive()}): model loads, Wine gives {sorted(o.codes)}")
        elif p_err is not None and o.error is None:
            out.append(f"call {i} ({call.directive()}): model {p_err}, Wine loads")
        elif p_err is not None and p_err not in o.codes:
            out.append(f"call {i} ({call.directive()}): model {p_err}, Wine {sorted(o.codes)}")
        if pred.loaded[i] != obs.loaded[i]:
            only_p = sorted(pred.loaded[i] - obs.loaded[i])
            only_o = sorted(obs.loaded[i] - pred.loaded[i])
            out.append(f"after call {i}: modules only in the model {only_p}, only in Wine {only_o}")
    if pred.delay is not None and obs.delay is not None:
        p_by = {d.dll: d for d in pred.delay}
        for o_d in obs.delay:
            p_d = p_by.get(o_d.dll)
            if p_d is None:
                out.append(f"delay {o_d.dll}: no latent edge in the model")
                continue
            if (p_d.path is None) != (o_d.path is None) or (
                    p_d.path and o_d.path and norm(p_d.path) != norm(o_d.path)):
                out.append(f"delay {o_d.dll}: model {p_d.path or p_d.error}, "
                           f"Wine {o_d.path or o_d.error}")
            elif p_d.path is None and p_d.error not in o_d.codes:
                out.append(f"delay {o_d.dll}: model error {p_d.error}, Wine {o_d.error}")
            elif p_d.path is not None and p_d.missing != o_d.missing:
                out.append(f"delay {o_d.dll}: model misses {sorted(p_d.missing)}, "
                           f"Wine misses {sorted(o_d.missing)}")
    return out


# --------------------------------------------------------------------------------------------
# known deviation families
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """A way Wine (or Windows, against the model) behaves, as an adjustment of the prediction.

    ``kind`` is :data:`DEVIATION` (Wine differs from documented or evidenced Windows behaviour,
    or picks one answer where Microsoft specifies none) or :data:`MODEL_BUG` (the evidence says
    Windows does what Wine does, and the model does not: ``xfail`` names the strict-xfail test
    in ``test_wine_model_bugs.py`` that pins the bug until the model is fixed; none is open
    now, see docs/wine.md for the ones found and fixed). ``ctx`` adjusts the whole context,
    ``adjust`` one call (and the context it runs in), ``view`` the file view, ``post`` the
    error a result reports.
    """

    name: str
    kind: str
    summary: str
    applies: Callable[[Scenario, Prediction], bool]
    ctx: Callable[[LoadContext], LoadContext] | None = None
    adjust: Adjust | None = None
    view: Callable[[FileView], FileView] | None = None
    post: Post | None = None
    latest_wins: bool = False
    xfail: str | None = None


def _dependency_failure_is_126(res: CallResult, ctx: LoadContext) -> int | None:
    """Wine fails with 126 when a static import, or a forwarder's target, cannot be loaded
    for any reason (and its stub warning says only "module not found for forward")."""
    if res.error is None or res.culprit is None:
        return res.error
    culprit = res.culprit
    if culprit.resolution.error not in (None, 126):
        return 126
    if culprit.missing and culprit.missing[0].error not in (126, 127, 182):
        return 126
    return res.error


def _post_chain(fns: Sequence[Post]) -> Post:
    def run(res: CallResult, ctx: LoadContext) -> int | None:
        err = res.error
        for fn in fns:
            err = fn(dataclasses.replace(res, error=err), ctx)
        return err
    return run


def _drop_safe_current_dirs(call: LoadCall, ctx: LoadContext) -> tuple[LoadCall, LoadContext]:
    return LoadCall(call.target, call.flags & ~0x2000), ctx


FAMILIES: tuple[Family, ...] = (
    Family(
        "dependent-load-flags-ignored", DEVIATION,
        "Wine 8 ignores DependentLoadFlags (the load-config field Windows 10 RS1+ uses for a "
        "module's static imports)",
        applies=lambda sc, p: any(f.dependent_load_flags for f in sc.files),
        view=NoDependentLoadFlags,
    ),
    Family(
        "same-base-name-latest-wins", DEVIATION,
        "with two loaded modules of the same base name, Wine binds the name to the one its "
        "loader looked up last (ntdll's one-entry cache, cached_modref); Windows to the one "
        "loaded first",
        applies=lambda sc, p: any("\\" in c.target for c in sc.calls),
        latest_wins=True,
    ),
    Family(
        "blank-path-entry-is-cwd", DEVIATION,
        "Wine searches a blank PATH entry (\";;\") as the current directory; the model skips "
        "blank entries (Microsoft documents neither)",
        applies=lambda sc, p: "" in sc.context.path,
        ctx=lambda c: dataclasses.replace(c, path=tuple(e or "." for e in c.path)),
    ),
    Family(
        "set-dll-directory-empty-keeps-cwd", DEVIATION,
        "SetDllDirectory(\"\") does not remove the current directory from the search in Wine",
        applies=lambda sc, p: sc.context.dll_directory == "",
        ctx=lambda c: dataclasses.replace(c, dll_directory=None),
    ),
    Family(
        "safe-current-dirs-ignored", DEVIATION,
        "Wine 8 ignores LOAD_LIBRARY_SAFE_CURRENT_DIRS (0x2000): the current directory stays "
        "in the standard search",
        applies=lambda sc, p: any(c.flags & 0x2000 for c in sc.calls),
        adjust=_drop_safe_current_dirs,
    ),
    Family(
        "dependency-failure-is-126", DEVIATION,
        "Wine fails a load with 126 whatever stopped one of its static imports (Windows passes "
        "the dependency's own status on, e.g. 193 for a dependency that is not a valid image)",
        applies=lambda sc, p: any(f.garbage or f.machine != Machine.AMD64 for f in sc.files),
        post=_dependency_failure_is_126,
    ),
)


def predict_with(sc: Scenario, view: FileView, families: Sequence[Family]) -> Prediction:
    ctx = sc.context
    adjust: list[Adjust] = []
    posts: list[Post] = []
    latest = any(f.latest_wins for f in families)
    for fam in families:
        if fam.ctx:
            ctx = fam.ctx(ctx)
        if fam.adjust:
            adjust.append(fam.adjust)
        if fam.view:
            view = fam.view(view)
        if fam.post:
            posts.append(fam.post)
    return predict(sc, view, ctx, adjust, _post_chain(posts) if posts else None, latest)


# --------------------------------------------------------------------------------------------
# verdicts
# --------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    scenario: Scenario
    status: str
    families: tuple[str, ...] = ()
    details: list[str] = field(default_factory=list)
    compared_calls: int = 0
    adapted: tuple[str, ...] = ()
    observed: tuple[int | None, ...] = ()  # the Windows-equivalent outcome of each compared call
    delay_compared: bool = False

    def report(self) -> str:
        head = f"{self.scenario.name}: {self.status}"
        if self.families:
            head += f" ({', '.join(self.families)})"
        return "\n".join([head, *("  " + d for d in self.details), self.scenario.describe()])


def judge(sc: Scenario, view: FileView, run: PlanRun | None) -> Verdict:
    try:
        obs = observe(sc, run)
    except HarnessProblem as exc:
        return Verdict(sc, BROKEN, details=[str(exc)])
    pred = predict(sc, view)
    diff = mismatches(sc, pred, obs)
    if not diff:
        return Verdict(sc, AGREE, details=list(obs.notes), compared_calls=obs.compared,
                       adapted=obs.adapted, observed=tuple(o.error for o in obs.outcomes),
                       delay_compared=pred.delay is not None and obs.delay is not None)
    applicable = [f for f in FAMILIES if f.applies(sc, pred)]
    for size in range(1, len(applicable) + 1):
        for combo in itertools.combinations(applicable, size):
            if not mismatches(sc, predict_with(sc, view, combo), obs):
                kind = MODEL_BUG if any(f.kind == MODEL_BUG for f in combo) else DEVIATION
                return Verdict(sc, kind, tuple(f.name for f in combo), diff + list(obs.notes),
                               obs.compared, obs.adapted)
    return Verdict(sc, DISAGREE, details=diff + list(obs.notes), compared_calls=obs.compared,
                   adapted=obs.adapted)


@dataclass
class Summary:
    verdicts: list[Verdict]
    seconds: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    retried: dict[str, str] = field(default_factory=dict)  # plan -> why its first run failed

    def count(self, status: str) -> int:
        return sum(1 for v in self.verdicts if v.status == status)

    def by_family(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in self.verdicts:
            for f in v.families:
                out[f] = out.get(f, 0) + 1
        return out

    def lines(self) -> list[str]:
        n = len(self.verdicts)
        agree = self.count(AGREE)
        dev = self.count(DEVIATION)
        bug = self.count(MODEL_BUG)
        dis = self.count(DISAGREE)
        broken = self.count(BROKEN)
        judged = n - dev - bug - broken
        calls = sum(v.compared_calls for v in self.verdicts)
        pct = 100.0 * agree / judged if judged else 0.0
        out = [
            f"Wine differential (seed {self.seed}): {n} scenarios, {calls} load calls compared",
            f"  agreements: {agree}/{judged} ({pct:.1f}%) of the scenarios outside known families",
            (f"  known Wine deviations: {dev}   known model bugs: {bug}   "
            f"disagreements: {dis}   harness errors: {broken}"),
        ]
        seen: dict[str, int] = {}
        for v in self.verdicts:
            if v.status == AGREE:
                for err in v.observed:
                    key = "loaded" if err is None else str(err)
                    seen[key] = seen.get(key, 0) + 1
        out.append("  outcomes of the agreeing calls: " + ", ".join(
            f"{k} {n}" for k, n in sorted(seen.items(), key=lambda kv: -kv[1]))
            + f"; delay-load steps compared: {sum(v.delay_compared for v in self.verdicts)}")
        feats: dict[str, int] = {}
        for v in self.verdicts:
            if v.status == AGREE:
                for feat in v.scenario.features:
                    feats[feat] = feats.get(feat, 0) + 1
        out.append("  features of the agreeing scenarios: " + ", ".join(
            f"{k} {n}" for k, n in sorted(feats.items(), key=lambda kv: -kv[1])))
        stub = sum(1 for v in self.verdicts if "stub" in v.adapted)
        left = sum(1 for v in self.verdicts if "leftovers" in v.adapted)
        out.append(f"  Wine-only effects translated (later calls of the plan not compared): "
                   f"stub bindings -> 127/182/126 in {stub} scenarios, modules left loaded by "
                   f"a failed load in {left}")
        fam = self.by_family()
        for f in FAMILIES:
            if f.name in fam:
                out.append(f"    {f.name} [{f.kind}]: {fam[f.name]}")
        if self.retried:
            out.append(f"  plans run twice after a harness hiccup: {len(self.retried)} ("
                       + "; ".join(f"{k}: {v}" for k, v in sorted(self.retried.items())[:3])
                       + ")")
        if self.seconds:
            out.append("  time: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items()))
        return out
