"""Compare torchdll's ld.so model with what the real ld.so did, scenario by scenario.

For each :class:`~tests.ldso.scenarios.Scenario`:

* the **observation** is ``dlrun``'s output (per call: success or the exact ``dlerror()``
  text, the objects that are new in the process, in ``dl_iterate_phdr`` order) and the rule
  of every new object read from ``LD_DEBUG`` (:mod:`tests.ldso.ldebug`);
* the **prediction** is :class:`torchdll.ldso.LdSimulator` over
  ``live_context(environ={"LD_LIBRARY_PATH": ...}, executable=dlrun, loaded=<the objects
  dlrun started with>, cwd=<the run's working directory>)``, one ``dlopen`` per call;
* they are compared call by call: success or failure; the error text (after
  :func:`normalize_error`); the new objects by real path, in order; the object the handle
  refers to; the rule of each new object (when the LD_DEBUG block is consistent, see
  :meth:`~tests.ldso.ldebug.Search.consistent`).

Normalizations (the only ones):

* every path in an error text -- the object before the first ``": "`` and the one in
  ``(required by X)`` -- is replaced by its ``os.path.realpath`` (relative paths against the
  run's working directory). ld.so prints ``l_name``, the path as it was *found*:
  ``/t/d1/../lib/libx.so.1`` through ``$ORIGIN/../lib``, ``libx.so.1`` (relative, no slash)
  through an empty search-path entry, the link's path for a symbolic link. The model may spell
  these differently (it writes ``./libx.so.1`` for the empty entry), and both name the same
  file. The object of an "undefined symbol" or "version not found" message is always an
  ``l_name``, so there a slash-less object that exists in the working directory is a path too.
  How many errors needed this is counted (``exact`` vs ``normalized`` in the summary);
* new objects are compared by ``os.path.realpath`` (same reason).

A scenario that does not agree is checked against :data:`QUIRKS` -- genuine ld.so behaviours
the model deliberately does not cover -- and is otherwise an unexplained **disagreement**.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import ldebug
from .runner import Run
from .scenarios import ROOT, Scenario

AGREE = "agree"
QUIRK = "known-ld.so-quirk"
DISAGREE = "disagree"
BROKEN = "harness-error"


# --------------------------------------------------------------------------------------------
# normalization
# --------------------------------------------------------------------------------------------


def real(path: str, cwd: str) -> str:
    return os.path.realpath(path if path.startswith("/") else os.path.join(cwd, path))


_REQUIRED = re.compile(r"^(?P<head>.*) \(required by (?P<req>.*)\)$")


#: messages whose object is always an l_name (a path, even without a slash: relative to the
#: working directory when found through an empty or relative search-path entry); the others
#: ("cannot open shared object file", ...) name what was asked for
_OBJECT_IS_A_PATH = ("undefined symbol: ", "version `", "wrong ELF class", "invalid ELF header",
                     "file too short")


def normalize_error(text: str | None, cwd: str) -> str | None:
    """The error with every path replaced by its real path (see the module docstring)."""
    if text is None:
        return None
    obj, sep, rest = text.partition(": ")
    if sep and ("/" in obj or (rest.startswith(_OBJECT_IS_A_PATH[:2])
                               and os.path.exists(os.path.join(cwd, obj)))):
        obj = real(obj, cwd)
    m = _REQUIRED.match(rest)
    if m and "/" in m.group("req"):
        rest = f"{m.group('head')} (required by {real(m.group('req'), cwd)})"
    return obj + sep + rest


# --------------------------------------------------------------------------------------------
# prediction and observation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    real: str
    rule: str | None  # None: not known (LD_DEBUG block inconsistent)
    raw: str  # the path as reported (l_name / LdLoad.path)
    name: str | None = None  # what was asked for (DT_NEEDED entry or dlopen argument)
    requester: str | None = None  # real path of the object whose DT_NEEDED it was, or of
    # the caller of dlopen (LdLoad's docstring says None for the dlopen itself; the model
    # gives the caller, as LD_DEBUG's "dynamically loaded by" does: both are accepted)
    by_dlopen: bool = False  # asked for by the dlopen call itself


@dataclass
class CallView:
    """One call, as observed or predicted."""

    ok: bool
    error: str | None  # raw text
    new: list[Loaded]
    handle: str | None = None  # real path of the object the handle refers to
    notes: list[str] = field(default_factory=list)
    mapped: list[str] = field(default_factory=list)  # l_names LD_DEBUG saw mapped (even if
    # the call failed and ld.so unloaded them again)
    legacy: list[str] = field(default_factory=list)  # of those: found by a search in a
    # legacy hwcaps subdirectory (tls/...)


@dataclass
class Observation:
    calls: list[CallView]
    crash: str | None = None  # dlrun died during call len(calls)
    notes: list[str] = field(default_factory=list)


@dataclass
class Prediction:
    calls: list[CallView]
    results: list = field(default_factory=list)  # the raw DlopenResult objects


class HarnessProblem(Exception):
    pass


def runpath_oracle(sc: Scenario, root: Path, cwd: str) -> Callable[[str], bool | None]:
    """Whether the object at an ``l_name`` has ``DT_RUNPATH``, from what the harness built
    (the scenario's files), not from the model: ``None`` for objects it did not build."""
    by_real: dict[str, bool] = {}
    for f in sc.files:
        p = root / f.rel
        if p.exists():
            by_real[os.path.realpath(str(p))] = bool(sc.libs[f.lib].runpath)

    def has_runpath(l_name: str) -> bool | None:
        if not l_name:
            return None
        return by_real.get(real(l_name, cwd))

    return has_runpath


def observe(sc: Scenario, run: Run, root: Path | None = None) -> Observation:
    cwd = run.cwd
    oracle = runpath_oracle(sc, root, cwd) if root is not None else (lambda _p: None)
    exe = run.initial[0].name if run.initial else ""
    if run.bad_lines:
        raise HarnessProblem(f"unparsable dlrun output: {run.bad_lines[:3]}")
    if not run.initial:
        raise HarnessProblem(f"dlrun printed nothing (exit {run.exit}): {run.stderr[-500:]}")
    crash = run.crash
    if crash is None and len(run.calls) != len(sc.calls):
        raise HarnessProblem(f"{len(run.calls)} results for {len(sc.calls)} calls")
    calls: list[CallView] = []
    notes: list[str] = []
    for i, c in enumerate(run.calls):
        try:
            step = run.trace.step(i + 1)
        except KeyError:
            raise HarnessProblem(f"no LD_DEBUG section for call {i + 1}") from None
        view = CallView(c.ok, c.error, [], None)
        view.mapped = [r.path for r in step.requests if r.path is not None]
        view.legacy = [r.path for r in step.requests if r.path is not None
                       and r.search is not None and _in_legacy_subdir(r)]
        if c.ok and c.object is not None:
            view.handle = c.object.real or real(c.object.name, cwd)
        for o in c.new:
            req = step.request_of(o.name)
            rule: str | None
            if req is None:
                rule = None
                view.notes.append(f"call {i}: no LD_DEBUG record maps {o.name}")
            else:
                requester = req.requester
                rule = req.rule_given(False if requester in ("", exe) or req.how == "dlopen"
                                      else oracle(requester))
                if req.search is not None and not req.search.consistent():
                    view.notes.append(
                        f"call {i}: LD_DEBUG labels of the search for {req.name} are not in "
                        f"ld.so's order ({[s.kind for s in req.search.segments]}): rule not "
                        "compared")
                    rule = None
            name = req.name if req is not None else None
            # "needed by X" / "dynamically loaded by <caller>"
            by = real(req.requester, cwd) if req is not None and req.requester else None
            view.new.append(Loaded(o.real or real(o.name, cwd), rule, o.name, name, by,
                                   req is not None and req.how == "dlopen"))
        if not c.ok and c.new:
            raise HarnessProblem(f"call {i} failed but left {[o.name for o in c.new]} loaded")
        if c.ok and view.mapped != [o.name for o in c.new]:
            raise HarnessProblem(f"call {i}: LD_DEBUG mapped {view.mapped}, dlrun saw "
                                 f"{[o.name for o in c.new]} appear")
        calls.append(view)
    return Observation(calls, crash, notes)


LEGACY_TOKENS = ("tls", "haswell", "xeon_phi", "avx512_1", "x86_64")


def _in_legacy_subdir(req: ldebug.Request) -> bool:
    """Whether the search found the file in a legacy hwcaps subdirectory of one of the
    folders it searched (``<dir>/tls/``, ``<dir>/haswell/x86_64/``...)."""
    assert req.search is not None and req.path is not None
    seg = req.search.segment_of(req.path)
    found = os.path.dirname(req.path)
    for d in seg.dirs if seg is not None else ():
        if d != found and found.startswith(d.rstrip("/") + "/"):
            rest = found[len(d.rstrip("/")) + 1:].split("/")
            if all(part in LEGACY_TOKENS for part in rest):
                return True
    return False


def model_context(sc: Scenario, root: Path, run: Run):  # type: ignore[no-untyped-def]
    from torchdll.ldso import live_context

    llp = sc.ld_library_path(str(root))
    environ = {} if llp is None else {"LD_LIBRARY_PATH": llp}
    exe = run.initial[0].real or run.initial[0].name
    loaded = [o.name for o in run.initial[1:] if o.real is not None]
    return live_context(environ=environ, executable=exe, loaded=loaded, cwd=run.cwd)


def predict(sc: Scenario, root: Path, run: Run, ctx=None) -> Prediction:  # type: ignore[no-untyped-def]
    from torchdll.ldso import LdSimulator

    ctx = ctx if ctx is not None else model_context(sc, root, run)
    sim = LdSimulator(ctx)
    calls: list[CallView] = []
    results = []
    for call in sc.calls:
        target = call.target.replace(ROOT, str(root))
        res = sim.dlopen(target, call.mode)
        results.append(res)
        loads = [Loaded(real(ld.path, run.cwd), ld.rule.value if ld.rule is not None else None,
                        ld.path, ld.name,
                        real(ld.requester, run.cwd) if ld.requester else None)
                 for ld in res.loaded]
        handle = real(res.handle, run.cwd) if res.ok and res.handle else None
        view = CallView(bool(res.ok), res.error, loads if res.ok else [], handle)
        view.mapped = [x.real for x in loads]  # on failure: what it mapped before failing
        calls.append(view)
    return Prediction(calls, results)


# --------------------------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------------------------


def _same_request(p: Loaded, o: Loaded) -> bool:
    if p.name != o.name:
        return False
    return p.requester == o.requester or (p.requester is None and o.by_dlopen)


def mismatches(sc: Scenario, pred: Prediction, obs: Observation, cwd: str) -> list[str]:
    out: list[str] = []
    for i, o in enumerate(obs.calls):
        p = pred.calls[i]
        call = sc.calls[i]
        head = f"call {i} (dlopen {call.flags} {call.target})"
        if p.ok != o.ok:
            out.append(f"{head}: model {'loads' if p.ok else repr(p.error)}, "
                       f"ld.so {'loads' if o.ok else repr(o.error)}")
            break  # the process states differ from here on
        if not o.ok:
            pn, on = normalize_error(p.error, cwd), normalize_error(o.error, cwd)
            if pn != on:
                out.append(f"{head}: model error {p.error!r}, ld.so {o.error!r}")
            # what ld.so mapped before it gave up (LD_DEBUG; then it unloaded them)
            o_mapped = [real(m, cwd) for m in o.mapped]
            if p.mapped != o_mapped:
                out.append(f"{head}: mapped before failing: model {p.mapped}, ld.so {o_mapped}")
            continue
        p_paths = [x.real for x in p.new]
        o_paths = [x.real for x in o.new]
        if p_paths != o_paths:
            out.append(f"{head}: new objects: model {p_paths}, ld.so {o_paths}")
            break
        if p.handle != o.handle:
            out.append(f"{head}: handle: model {p.handle}, ld.so {o.handle}")
        for pl, ol in zip(p.new, o.new):
            if ol.rule is not None and pl.rule != ol.rule:
                out.append(f"{head}: rule of {ol.raw}: model {pl.rule}, ld.so {ol.rule}")
            if ol.name is not None and not _same_request(pl, ol):
                out.append(f"{head}: {ol.raw} asked for as {pl.name!r} by {pl.requester} in "
                           f"the model, as {ol.name!r} by {ol.requester} in ld.so")
    if obs.crash is not None:
        i = len(obs.calls)
        p = pred.calls[i] if i < len(pred.calls) else None
        raw = pred.results[i] if i < len(pred.results) else None
        predicted_abort = (raw is not None and getattr(raw, "kind", None) == "abort"
                           and "check_match" in obs.crash and "check_match" in (raw.error or ""))
        if not predicted_abort:  # the model predicts check_match's abort: that is agreement
            out.append(f"call {i}: ld.so aborted the process ({obs.crash}); model "
                       + ("loads" if p is not None and p.ok else repr(p.error if p else None)))
    return out


# --------------------------------------------------------------------------------------------
# known ld.so quirks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quirk:
    """A genuine ld.so behaviour the model deliberately does not cover.

    ``applies(scenario, observation, k)`` must say *why this scenario* shows it, from what
    ld.so did in call ``k``, the first call where model and ld.so part (not from the model's
    answer)."""

    name: str
    summary: str
    applies: Callable[[Scenario, Observation, int], bool]


def first_difference(pred: Prediction, obs: Observation, cwd: str) -> int:
    """Index of the first call where the model and ld.so part (``len(obs.calls)``: the call
    during which ld.so aborted the process, or none)."""
    for i, o in enumerate(obs.calls):
        p = pred.calls[i]
        if p.ok != o.ok:
            return i
        if not o.ok and (normalize_error(p.error, cwd) != normalize_error(o.error, cwd)
                         or p.mapped != [real(m, cwd) for m in o.mapped]):
            return i
        if o.ok and ([x.real for x in p.new] != [x.real for x in o.new]
                     or p.handle != o.handle
                     or any(ol.rule is not None and pl.rule != ol.rule
                            for pl, ol in zip(p.new, o.new))
                     or any(ol.name is not None and not _same_request(pl, ol)
                            for pl, ol in zip(p.new, o.new))):
            return i
    return len(obs.calls)


def _crashed_in_check_match(sc: Scenario, obs: Observation, k: int) -> bool:
    return (k == len(obs.calls) and obs.crash is not None and "check_match" in obs.crash
            and any(f.kind == "unversioned" for f in sc.files))


QUIRKS: tuple[Quirk, ...] = (
    Quirk(
        "check-match-assertion",
        "ld.so aborts the whole process (\"Inconsistency detected by ld.so: dl-lookup.c: "
        "check_match: Assertion `version->filename == NULL || ! _dl_name_match_p "
        "(version->filename, map)' failed!\", exit 127) when a versioned reference meets a "
        "definition in the very object its Elf_Verneed names and that object has no symbol "
        "versioning at all (dl-version.c lets such a provider pass silently, dl-lookup.c then "
        "asserts). There is no dlerror() to predict: the process is gone. Only scenarios with "
        "an 'unversioned' copy can show it.",
        _crashed_in_check_match,
    ),
)


# --------------------------------------------------------------------------------------------
# model bugs found so far (labels for the report: the scenarios still fail)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelBug:
    """A disagreement family that ``test_model_bugs.py`` reproduces in a minimal tree. Used
    only to label failing scenarios in reports and the summary."""

    name: str
    test: str  # the test in test_model_bugs.py
    matches: Callable[[Scenario, CallView, CallView, str, str], bool]
    # (scenario, model's call, ld.so's call, the call's flags, working directory)


def _missing_symbol(text: str | None) -> str | None:
    m = re.search(r"undefined symbol: ([^,\s]+)", text or "")
    return m.group(1) if m else None


def _lazy_refs(sc: Scenario, p: CallView, o: CallView, flags: str, cwd: str) -> bool:
    sym = _missing_symbol(o.error)
    return ("lazy" in flags.split(",") and p.ok and sym is not None
            and any(r.split("@")[0] == sym for lib in sc.libs.values() for r in lib.refs))


def _wrong_class_only(sc: Scenario, p: CallView, o: CallView, flags: str, cwd: str) -> bool:
    return bool(o.error and p.error and o.error.endswith(": wrong ELF class: ELFCLASS32")
                and p.error == o.error.replace(
                    "wrong ELF class: ELFCLASS32",
                    "cannot open shared object file: No such file or directory"))


def _relocation_order(sc: Scenario, p: CallView, o: CallView, flags: str, cwd: str) -> bool:
    """Both report an undefined symbol, after mapping the same objects: only which missing
    symbol comes first differs."""
    return bool(_missing_symbol(o.error) and _missing_symbol(p.error) and p.error != o.error
                and p.mapped == [real(m, cwd) for m in o.mapped])


def _errno_without_open(sc: Scenario, p: CallView, o: CallView, flags: str, cwd: str) -> bool:
    return bool(o.error and o.error.endswith(": cannot open shared object file")
                and p.error == o.error + ": No such file or directory")


def _empty_path_string(sc: Scenario, p: CallView, o: CallView, flags: str, cwd: str) -> bool:
    return any(lib.rpath == [""] or lib.runpath == [""] for lib in sc.libs.values())


MODEL_BUGS: tuple[ModelBug, ...] = (
    ModelBug("lazy-dlopen-binds-address-relocations",
             "test_lazy_dlopen_still_binds_address_relocations", _lazy_refs),
    ModelBug("wrong-class-only-candidate", "test_search_that_only_found_a_wrong_class_file",
             _wrong_class_only),
    ModelBug("relocation-order", "test_undefined_symbol_reported_in_glibc_relocation_order",
             _relocation_order),
    ModelBug("errno-suffix-without-open", "test_cannot_open_without_errno_when_nothing_was_tried",
             _errno_without_open),
    ModelBug("empty-dt-rpath-string", "test_an_empty_dt_rpath_or_runpath_string_is_ignored",
             _empty_path_string),
)


def classify(sc: Scenario, pred: Prediction, obs: Observation, cwd: str
             ) -> tuple[str, ...]:
    """The model-bug families of the first call where model and ld.so part."""
    k = first_difference(pred, obs, cwd)
    if k >= len(obs.calls):
        return ()
    return tuple(b.name for b in MODEL_BUGS
                 if b.matches(sc, pred.calls[k], obs.calls[k], sc.calls[k].flags, cwd))


# --------------------------------------------------------------------------------------------
# verdicts
# --------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    scenario: Scenario
    status: str
    quirks: tuple[str, ...] = ()
    bugs: tuple[str, ...] = ()  # known model-bug families (the verdict stays DISAGREE)
    details: list[str] = field(default_factory=list)
    compared_calls: int = 0
    outcomes: tuple[str, ...] = ()  # per compared call: "ok" or the error family
    rules: tuple[str, ...] = ()  # rules of the new objects compared
    exact_errors: int = 0
    normalized_errors: int = 0
    legacy_finds: int = 0  # objects ld.so found in a legacy hwcaps subdirectory
    seconds: float = 0.0

    def report(self) -> str:
        head = f"{self.scenario.name}: {self.status}"
        if self.quirks or self.bugs:
            head += f" ({', '.join(self.quirks + self.bugs)})"
        return "\n".join([head, *("  " + d for d in self.details), self.scenario.describe()])


def error_family(text: str | None) -> str:
    if text is None:
        return "ok"
    for key in ("cannot open shared object file: No such file or directory",
                "cannot open shared object file", "wrong ELF class", "version `",
                "undefined symbol", "invalid ELF header", "file too short"):
        if key in text:
            return {"version `": "version not found"}.get(key, key)
    return "other"


def judge(sc: Scenario, root: Path, run: Run | None, ctx=None) -> Verdict:  # type: ignore[no-untyped-def]
    if run is None:
        return Verdict(sc, BROKEN, details=["no run"])
    try:
        obs = observe(sc, run, root)
    except HarnessProblem as exc:
        return Verdict(sc, BROKEN, details=[str(exc), run.stderr[-800:]])
    try:
        pred = predict(sc, root, run, ctx)
    except Exception as exc:  # noqa: BLE001 - a model crash is a disagreement, with its trace
        import traceback

        return Verdict(sc, DISAGREE, details=[f"the model raised {exc!r}",
                                              traceback.format_exc()[-1500:]])
    diff = mismatches(sc, pred, obs, run.cwd)
    notes = [n for c in obs.calls for n in c.notes] + obs.notes
    exact = normalized = 0
    for p, o in zip(pred.calls, obs.calls):
        if not o.ok and not p.ok:
            if p.error == o.error:
                exact += 1
            elif normalize_error(p.error, run.cwd) == normalize_error(o.error, run.cwd):
                normalized += 1
    verdict = Verdict(sc, AGREE, details=notes, compared_calls=len(obs.calls),
                      outcomes=tuple(error_family(c.error) if not c.ok else "ok"
                                     for c in obs.calls),
                      rules=tuple(x.rule for c in obs.calls for x in c.new if x.rule),
                      exact_errors=exact, normalized_errors=normalized,
                      legacy_finds=sum(len(c.legacy) for c in obs.calls))
    if not diff:
        return verdict
    k = first_difference(pred, obs, run.cwd)
    quirks = tuple(q.name for q in QUIRKS if q.applies(sc, obs, k))
    verdict.details = diff + notes
    verdict.status = QUIRK if quirks else DISAGREE
    verdict.quirks = quirks
    if not quirks:
        verdict.bugs = classify(sc, pred, obs, run.cwd)
        if verdict.bugs:
            verdict.details.append("known model bug: " + ", ".join(
                f"{b.name} (tests/ldso/test_model_bugs.py::{b.test})" for b in MODEL_BUGS
                if b.name in verdict.bugs))
    return verdict


@dataclass
class Summary:
    verdicts: list[Verdict]
    seconds: dict[str, float] = field(default_factory=dict)
    seed: str = ""

    def count(self, status: str) -> int:
        return sum(1 for v in self.verdicts if v.status == status)

    def lines(self) -> list[str]:
        n = len(self.verdicts)
        agree, quirk = self.count(AGREE), self.count(QUIRK)
        dis, broken = self.count(DISAGREE), self.count(BROKEN)
        calls = sum(v.compared_calls for v in self.verdicts)
        out = [
            f"ld.so differential (seed {self.seed}): {n} scenarios, {calls} dlopen calls",
            (f"  agree: {agree}   disagree: {dis}   known ld.so quirks: {quirk}   "
            f"harness errors: {broken}"),
        ]
        fam: dict[str, int] = {}
        rules: dict[str, int] = {}
        feats: dict[str, int] = {}
        exact = normalized = 0
        for v in self.verdicts:
            if v.status != AGREE:
                continue
            for o in v.outcomes:
                fam[o] = fam.get(o, 0) + 1
            for r in v.rules:
                rules[r] = rules.get(r, 0) + 1
            for f in v.scenario.features:
                feats[f] = feats.get(f, 0) + 1
            exact += v.exact_errors
            normalized += v.normalized_errors

        def fmt(d: dict[str, int]) -> str:
            return ", ".join(f"{k} {c}" for k, c in sorted(d.items(), key=lambda kv: -kv[1]))

        out.append("  outcomes of the agreeing calls: " + fmt(fam))
        out.append("  rules of the objects they loaded (from LD_DEBUG): " + fmt(rules))
        out.append(f"  error texts: {exact} identical, {normalized} identical after realpath "
                   "normalization; objects found in legacy hwcaps subdirectories (tls/...): "
                   f"{sum(v.legacy_finds for v in self.verdicts if v.status == AGREE)}")
        out.append("  features of the agreeing scenarios: " + fmt(feats))
        for q in QUIRKS:
            c = sum(1 for v in self.verdicts if q.name in v.quirks)
            if c:
                out.append(f"    quirk {q.name}: {c}")
        for b in MODEL_BUGS:
            c = sum(1 for v in self.verdicts if b.name in v.bugs)
            if c:
                out.append(f"    disagreement, known model bug {b.name}: {c}")
        unexplained = sum(1 for v in self.verdicts if v.status == DISAGREE and not v.bugs)
        if dis:
            out.append(f"    disagreement not matching a known model bug: {unexplained}")
        if self.seconds:
            out.append("  time: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items()))
        return out


def run_all(items: Sequence[tuple[Scenario, Path]], dlrun: Path, workers: int
            ) -> dict[str, Run]:
    """Run every scenario (one dlrun process each), ``workers`` at a time."""
    import concurrent.futures

    from . import tree

    def one(item: tuple[Scenario, Path]) -> tuple[str, Run]:
        sc, root = item
        return sc.name, tree.run(sc, root, dlrun)

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(pool.map(one, items))


__all__ = [
    "AGREE",
    "BROKEN",
    "DISAGREE",
    "QUIRK",
    "QUIRKS",
    "Quirk",
    "Summary",
    "Verdict",
    "judge",
    "ldebug",
    "normalize_error",
    "observe",
    "predict",
    "run_all",
]
