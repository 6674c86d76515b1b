"""Property tests of the loader model over random contexts and file layouts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.memview import MemoryView
from torchdll.model import LoadContext, Machine, Rule, Skip
from torchdll.resolver import resolve, search_dirs

DIRS = ["C:\\app", "C:\\Windows\\System32", "C:\\Windows\\System", "C:\\Windows", "C:\\cwd",
        "C:\\p1", "C:\\p2", "C:\\u1", "C:\\u2", "C:\\lib", "C:\\setdll"]
MACHINES = st.sampled_from([Machine.AMD64, Machine.I386, None])
FLAGS = st.sampled_from([0, 0x8, 0x100 | 0x1000, 0x1000, 0x200, 0x400, 0x800, 0x2000, 0x1100 | 0x2000])


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[LoadContext, MemoryView, int]:
    placed = draw(st.dictionaries(st.sampled_from(DIRS), MACHINES, max_size=6))
    view = MemoryView({f"{d}\\Dep.DLL": m for d, m in placed.items()})
    ctx = LoadContext(
        app_dir="C:\\app",
        cwd="C:\\cwd",
        path=tuple(draw(st.lists(st.sampled_from(["C:\\p1", "C:\\p2", "C:\\u1"]), max_size=3))),
        safe_dll_search_mode=draw(st.booleans()),
        dll_directory=draw(st.sampled_from([None, "", "C:\\setdll"])),
        user_dirs=tuple(draw(st.lists(st.sampled_from(["C:\\u1", "C:\\u2", "C:\\lib"]), max_size=3, unique=True))),
        default_flags=draw(st.sampled_from([None, 0x800, 0x1000])),
    )
    return ctx, view, draw(FLAGS)


def _resolve(ctx: LoadContext, view: MemoryView, flags: int):  # type: ignore[no-untyped-def]
    return resolve("dep", ctx, view, flags=flags, importer="C:\\lib\\importer.dll", load_dir="C:\\lib")


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_result_agrees_with_candidates(s: tuple[LoadContext, MemoryView, int]) -> None:
    ctx, view, flags = s
    res = _resolve(ctx, view, flags)
    outcomes = [c.outcome for c in res.candidates]
    if res.path is not None:
        assert outcomes[-1] is Skip.SELECTED and outcomes.count(Skip.SELECTED) == 1
        assert res.candidates[-1].path == res.path and res.candidates[-1].rule is res.rule
        assert all(o in (Skip.ABSENT, Skip.WRONG_MACHINE) for o in outcomes[:-1])
        assert res.path.lower().endswith("\\dep.dll")
        assert view.machine(res.path) is Machine.AMD64
        assert res.error is None
    else:
        assert Skip.SELECTED not in outcomes
        assert res.error in (126, 193, 87)
        unreadable = bool(outcomes) and outcomes[-1] is Skip.UNREADABLE
        only_wrong = Skip.WRONG_MACHINE in outcomes
        assert (res.error == 193) == (unreadable or only_wrong)


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_first_usable_folder_in_search_order_wins(s: tuple[LoadContext, MemoryView, int]) -> None:
    ctx, view, flags = s
    res = _resolve(ctx, view, flags)
    order: list[str] = []
    for _, d in search_dirs(ctx, flags, "C:\\lib"):
        if d and d.lower() not in order:
            order.append(d.lower())
    expected = None
    for d in order:
        m = view.machine(f"{d}\\dep.dll") if view.host_path(f"{d}\\dep.dll") else "absent"
        if m == "absent" or m is Machine.I386:
            continue
        expected = None if m is None else f"{d}\\dep.dll"
        break
    if res.error == 87:  # 0x8 after SetDefaultDllDirectories needs a full path: no search at all
        assert flags & 0x8 and ctx.default_flags and res.candidates == ()
        return
    assert (res.path.lower() if res.path else None) == expected


@settings(max_examples=200, deadline=None)
@given(scenarios(), st.sampled_from(DIRS))
def test_adding_a_copy_after_the_winner_changes_nothing(s: tuple[LoadContext, MemoryView, int], extra: str) -> None:
    ctx, view, flags = s
    before = _resolve(ctx, view, flags)
    if before.path is None:
        return
    tried = [c.path.rsplit("\\", 1)[0].lower() for c in before.candidates]
    if extra.lower() in tried:
        return
    view.add(f"{extra}\\dep.dll", Machine.AMD64)
    after = _resolve(ctx, view, flags)
    assert (after.path, after.rule) == (before.path, before.rule)


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_loaded_module_always_wins(s: tuple[LoadContext, MemoryView, int]) -> None:
    ctx, view, flags = s
    res = resolve("DEP", ctx, view, flags=flags, importer="C:\\lib\\x.dll", load_dir="C:\\lib",
                  loaded={"dep.dll": "D:\\elsewhere\\dep.dll"})  # importer given: no flag validation
    assert (res.path, res.rule) == ("D:\\elsewhere\\dep.dll", Rule.LOADED)
