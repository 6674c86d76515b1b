"""The LD_DEBUG parser (``ldebug.py``) on captured real output, and on a live run.

``data/ldebug-chain.txt`` is ``dlrun``'s standard error under ``LD_DEBUG=libs,files`` (glibc
2.36, x86-64; the tree's folder replaced by ``/srv/demo``) for::

    LD_LIBRARY_PATH=/srv/demo/nope:/srv/demo/llp
    app/liba1.so.1  RPATH $ORIGIN/../lib:/srv/none, needs libb1.so.1 libm.so.6
    lib/libb1.so.1  needs libc1.so.1 (no RPATH/RUNPATH: the RPATH of liba1 applies)
    lib/libc1.so.1  an ELFCLASS32 copy (skipped)
    llp/libc1.so.1  the good copy
    dlopen now app/liba1.so.1; lazy libb1.so.1; now llp/libc1.so.1; now libnothere.so.7;
    lazy,global libc1.so.1

``data/ldebug-label-reuse.txt`` shows the one way LD_DEBUG misleads (see ldebug.py):
``app/libb2.so.1`` (RPATH ``$ORIGIN/../lib``) needs ``lib/libc2.so.1`` (RUNPATH ``$ORIGIN``),
which needs ``libd2.so.1``: libc2's origin is ``/srv/demo/app/../lib``, so its RUNPATH entry is
the very string libb2's RPATH created first, and the header says ``RPATH from file libb2``.
"""

from __future__ import annotations

from pathlib import Path

from . import ldebug

DATA = Path(__file__).resolve().parent / "data"


def _chain() -> ldebug.Trace:
    return ldebug.parse((DATA / "ldebug-chain.txt").read_text())


def test_steps_follow_the_markers() -> None:
    trace = _chain()
    assert [s.index for s in trace.steps] == [0, 1, 2, 3, 4, 5]
    assert all(s.closed for s in trace.steps[1:])
    assert trace.crash is None
    assert trace.other == []


def test_startup_request_comes_from_the_cache() -> None:
    step = _chain().step(0)
    (req,) = step.requests
    assert (req.name, req.how, req.requester) == ("libc.so.6", "needed", "/srv/demo/bin/dlrun")
    assert req.path == "/lib/x86_64-linux-gnu/libc.so.6"
    assert req.rule == ldebug.CACHE
    kinds = [s.kind for s in req.search.segments]
    assert kinds == [ldebug.LD_LIBRARY_PATH, ldebug.CACHE]
    assert req.search.consistent()


def test_first_dlopen_maps_four_objects_by_four_rules() -> None:
    step = _chain().step(1)
    new = step.new_objects()
    assert [(r.name, r.path, r.rule) for r in new] == [
        ("/srv/demo/app/liba1.so.1", "/srv/demo/app/liba1.so.1", ldebug.PATH),
        ("libb1.so.1", "/srv/demo/app/../lib/libb1.so.1", ldebug.RPATH),
        ("libm.so.6", "/lib/x86_64-linux-gnu/libm.so.6", ldebug.CACHE),
        ("libc1.so.1", "/srv/demo/llp/libc1.so.1", ldebug.LD_LIBRARY_PATH),
    ]
    assert [r.requester for r in new] == [
        "/srv/demo/bin/dlrun", "/srv/demo/app/liba1.so.1", "/srv/demo/app/liba1.so.1",
        "/srv/demo/app/../lib/libb1.so.1"]
    assert new[0].how == "dlopen" and new[1].how == "needed"
    assert ldebug.rules_by_object(step)["/srv/demo/llp/libc1.so.1"] == ldebug.LD_LIBRARY_PATH


def test_inherited_rpath_and_skipped_wrong_class_copy() -> None:
    """libb1 has no RPATH: its search for libc1 walks liba1's RPATH (the loader chain), tries
    the ELFCLASS32 copy in lib/, skips it and finds the LD_LIBRARY_PATH copy."""
    req = _chain().step(1).request_of("/srv/demo/llp/libc1.so.1")
    assert req is not None and req.search is not None
    rpath, llp = req.search.segments
    assert (rpath.kind, rpath.source) == (ldebug.RPATH, "/srv/demo/app/liba1.so.1")
    assert rpath.tried == ["/srv/demo/app/../lib/libc1.so.1"]
    assert llp.kind == ldebug.LD_LIBRARY_PATH and llp.tried == ["/srv/demo/llp/libc1.so.1"]
    assert req.search.last_try() == "/srv/demo/llp/libc1.so.1"


def test_hwcaps_subdirectories_are_listed_then_pruned() -> None:
    """The first search through a folder tries every hwcaps subdirectory; the ones that do
    not exist are remembered and left out of later headers."""
    step = _chain().step(1)
    first = step.request_of("/srv/demo/app/../lib/libb1.so.1").search.segments[0]
    assert first.dirs[0] == "/srv/demo/app/../lib/glibc-hwcaps/x86-64-v4"
    assert first.dirs[-1] == "/srv/none"  # the whole RPATH list is printed at once
    stop = first.dirs.index("/srv/demo/app/../lib")
    # every folder up to the one holding the file was tried, in order, then the search stopped
    assert first.tried == [d + "/libb1.so.1" for d in first.dirs[:stop + 1]]
    later = step.request_of("/srv/demo/llp/libc1.so.1").search.segments[0]
    assert later.dirs == ["/srv/demo/app/../lib"]


def test_already_loaded_objects_print_nothing() -> None:
    trace = _chain()
    for n in (2, 3, 5):  # a soname match, an l_name match, a soname match again
        step = trace.step(n)
        assert step.requests == [] and step.searches == [] and step.new_objects() == []


def test_failed_search_reaches_the_system_directories() -> None:
    step = _chain().step(4)
    (req,) = step.requests
    assert req.name == "libnothere.so.7" and req.how == "dlopen"
    assert not req.mapped and req.rule == ldebug.LOADED  # nothing mapped for it
    kinds = [s.kind for s in req.search.segments]
    assert kinds == [ldebug.LD_LIBRARY_PATH, ldebug.CACHE, ldebug.SYSTEM]
    system = req.search.segments[-1]
    assert "/lib/x86_64-linux-gnu" in system.dirs and "/usr/lib" in system.dirs
    assert system.tried[-1] == "/usr/lib/libnothere.so.7"
    assert req.search.segments[1].tried == []  # the cache had no entry


def test_label_reuse_is_corrected_by_the_requesters_runpath() -> None:
    trace = ldebug.parse((DATA / "ldebug-label-reuse.txt").read_text())
    req = trace.step(1).request_of("/srv/demo/app/../lib/libd2.so.1")
    assert req is not None
    assert req.requester == "/srv/demo/app/../lib/libc2.so.1"
    seg = req.search.segment_of(req.path)
    assert (seg.kind, seg.source) == (ldebug.RPATH, "/srv/demo/app/libb2.so.1")
    assert req.rule == ldebug.RPATH  # what the label says
    assert req.rule_given(True) == ldebug.RUNPATH  # libc2 has DT_RUNPATH: no RPATH phase
    assert req.rule_given(None) == ldebug.RPATH
    # the reverse: a requester without DT_RUNPATH has no RUNPATH phase
    search = ldebug.Search("libx.so", [ldebug.Segment(ldebug.RUNPATH, "RUNPATH from file /o.so",
                                                      "/o.so", ["/d"], ["/d/libx.so"])])
    other = ldebug.Request("libx.so", "needed", "/r.so", search, "/d/libx.so")
    assert other.rule == ldebug.RUNPATH and other.rule_given(False) == ldebug.RPATH


def test_consistency_check_flags_impossible_orders() -> None:
    seg = ldebug.Segment
    ok = ldebug.Search("x", [seg(ldebug.RPATH, "", None, []), seg(ldebug.LD_LIBRARY_PATH, "", None, []),
                             seg(ldebug.CACHE, "", None, []), seg(ldebug.SYSTEM, "", None, [])])
    assert ok.consistent()
    bad = ldebug.Search("x", [seg(ldebug.LD_LIBRARY_PATH, "", None, []), seg(ldebug.RPATH, "", None, [])])
    assert not bad.consistent()
    both = ldebug.Search("x", [seg(ldebug.RPATH, "", None, []), seg(ldebug.RUNPATH, "", None, [])])
    assert not both.consistent()


def test_labels() -> None:
    assert ldebug.label_kind("RPATH from file /a/b.so") == (ldebug.RPATH, "/a/b.so")
    assert ldebug.label_kind("RUNPATH from file x") == (ldebug.RUNPATH, "x")
    assert ldebug.label_kind("LD_LIBRARY_PATH") == (ldebug.LD_LIBRARY_PATH, None)
    assert ldebug.label_kind("system search path") == (ldebug.SYSTEM, None)


def test_assertion_and_foreign_lines() -> None:
    text = ("dlrun: step 1\n"
            "     12:\tfile=/x/a.so [0];  dynamically loaded by /x/dlrun [0]\n"
            "     12:\tfile=/x/a.so [0];  generating link map\n"
            "Inconsistency detected by ld.so: dl-lookup.c: 107: check_match: Assertion `x' failed!\n")
    trace = ldebug.parse(text)
    assert trace.crash and trace.crash.startswith("Inconsistency detected by ld.so: dl-lookup.c")
    assert not trace.step(1).closed
    assert trace.step(1).new_objects()[0].rule == ldebug.PATH


def test_live_run_agrees_with_dlrun(named_cases) -> None:  # type: ignore[no-untyped-def]
    """On a live run, every object dlrun saw appear has exactly one LD_DEBUG record."""
    case = named_cases["cause37-fixed"]
    run = case.run()
    (call,) = run.calls
    assert call.ok
    step = run.trace.step(1)
    assert [r.path for r in step.new_objects()] == [o.name for o in call.new]
    rules = [step.rule_of(o.name) for o in call.new]
    assert rules == [ldebug.PATH, ldebug.RUNPATH]
