"""Facts about glibc's ld.so that the harness relies on or that ``differential.QUIRKS`` names,
each measured here on the real loader with a small hand-built tree.

These tests do not involve the model: they are the evidence for the quirks, for the
normalizations of the differential test and for the wrong-class fallback of elfbuild.
"""

from __future__ import annotations

import os

from tests.support import elfbuild

from .conftest import AdHoc


def test_failed_dlopen_unloads_everything(adhoc: AdHoc) -> None:
    b = adhoc.lib("link/libfb.so.1", defines=["fb_f"])
    adhoc.lib("a/libfa.so.1", needed=[b], runpath=["$ORIGIN/../link"], uses=["fb_gone"])
    run = adhoc.run(f"now {adhoc.path('a/libfa.so.1')}")
    (call,) = run.calls
    assert call.error == f"{adhoc.path('a/libfa.so.1')}: undefined symbol: fb_gone"
    assert call.new == []
    # but LD_DEBUG saw libfb mapped (and then destroyed)
    assert [r.name for r in run.trace.step(1).requests] == [adhoc.path("a/libfa.so.1"),
                                                             "libfb.so.1"]


def test_lazy_defers_plt_but_not_address_relocations(adhoc: AdHoc) -> None:
    """RTLD_LAZY defers R_X86_64_JUMP_SLOT (calls); a function whose address is taken is
    bound when the object is relocated, RTLD_LAZY or not."""
    adhoc.lib("a/libplt.so", uses=["nowhere_called"])
    adhoc.lib("a/libaddr.so", refs=["nowhere_taken"])
    run = adhoc.run(f"lazy {adhoc.path('a/libplt.so')}", f"lazy {adhoc.path('a/libaddr.so')}",
                    f"now {adhoc.path('a/libplt.so')}")
    plt, addr, again = run.calls
    assert plt.ok
    assert addr.error == f"{adhoc.path('a/libaddr.so')}: undefined symbol: nowhere_taken"
    # dlopen(RTLD_NOW) of an object already loaded lazily does not re-check its symbols
    assert again.ok and again.new == []


def test_search_skips_wrong_class_and_reports_it_when_nothing_else(adhoc: AdHoc) -> None:
    adhoc.lib("w/libwc.so.1", m32=True)
    good = adhoc.lib("g/libwc.so.1", defines=["wc"])
    llp_both = f"{adhoc.path('w')}:{adhoc.path('g')}"
    run = adhoc.run("now libwc.so.1", llp=llp_both)
    assert run.calls[0].ok and run.calls[0].new[0].name == str(good)
    run = adhoc.run("now libwc.so.1", f"now {adhoc.path('w/libwc.so.1')}", llp=adhoc.path("w"))
    assert [c.error for c in run.calls] == [
        "libwc.so.1: wrong ELF class: ELFCLASS32",
        f"{adhoc.path('w/libwc.so.1')}: wrong ELF class: ELFCLASS32"]


def test_hand_crafted_elfclass32_header_is_a_wrong_class_object(adhoc: AdHoc) -> None:
    """elfbuild's fallback when even ``gcc -m32 -nostdlib`` fails: 512 bytes of header."""
    elfbuild.elf32_stub(adhoc.root / "s", "libst.so.1")
    good = adhoc.lib("g/libst.so.1", defines=["st"])
    run = adhoc.run("now libst.so.1", f"now {adhoc.path('s/libst.so.1')}",
                    llp=f"{adhoc.path('s')}:{adhoc.path('g')}")
    found, by_path = run.calls
    assert found.ok and found.new[0].name == str(good)
    assert by_path.error == f"{adhoc.path('s/libst.so.1')}: wrong ELF class: ELFCLASS32"


def test_errno_suffix_only_when_the_search_opened_something(adhoc: AdHoc) -> None:
    """"cannot open shared object file" carries ": No such file or directory" only when the
    failed search attempted an open(): not when -z nodefaultlib leaves nothing to try, nor when
    every folder is already known not to exist (LD_LIBRARY_PATH folders are first tried, and
    remembered, during start-up)."""
    dep = adhoc.lib("link/libnone.so", defines=["x"])
    lib = adhoc.lib("n/libnd.so", needed=[dep], nodeflib=True)
    os.remove(dep)
    plain = "libnone.so: cannot open shared object file"
    run = adhoc.run(f"now {lib}")
    assert run.calls[0].error == plain
    run = adhoc.run(f"now {lib}", llp=adhoc.path("does-not-exist"))
    assert run.calls[0].error == plain
    run = adhoc.run(f"now {lib}", llp=adhoc.path("n"))
    assert run.calls[0].error == plain + ": No such file or directory"


def test_dlopen_by_path_of_a_second_copy_loads_it_again(adhoc: AdHoc) -> None:
    """Two files with one soname: by name the loaded one is reused; by path the other is
    mapped as a second object."""
    one = adhoc.lib("d1/libtw.so.1", defines=["tw"])
    two = adhoc.lib("d2/libtw.so.1", defines=["tw"], marker="two")
    run = adhoc.run(f"now {one}", "now libtw.so.1", f"now {two}",
                    f"now {adhoc.path('d2/../d1/libtw.so.1')}")
    first, by_name, by_path, same_file = run.calls
    assert [o.name for o in first.new] == [str(one)]
    assert by_name.new == [] and by_name.object.name == str(one)
    assert [o.name for o in by_path.new] == [str(two)]
    # another spelling of a loaded file: the same object (device and inode)
    assert same_file.new == [] and same_file.object.name == str(one)


def test_origin_of_a_symlinked_library_is_the_links_folder(adhoc: AdHoc) -> None:
    dep = adhoc.lib("real/dep/libod.so", defines=["od"])
    lib = adhoc.lib("real/libol.so", needed=[dep], runpath=["$ORIGIN/dep"])
    elfbuild.place(lib, adhoc.root / "elsewhere" / "libol.so", "symlink")
    run = adhoc.run(f"now {adhoc.path('elsewhere/libol.so')}")
    assert run.calls[0].error == "libod.so: cannot open shared object file: No such file or directory"
    run = adhoc.run(f"now {lib}")
    assert run.calls[0].ok


def test_empty_search_path_entry_is_the_working_directory(adhoc: AdHoc) -> None:
    dep = adhoc.lib("wd/libem.so", defines=["em"])
    lib = adhoc.lib("a/libuse.so", needed=[dep], rpath=["", "/nonexistent"])
    run = adhoc.run(f"now {lib}", cwd="wd")
    (call,) = run.calls
    # l_name is relative: the folder string is "" and the file name is appended to it
    assert [o.name for o in call.new] == [str(lib), "libem.so"]
    assert call.new[1].real == str(dep)


def test_ld_debug_label_names_the_first_list_that_created_an_entry(adhoc: AdHoc) -> None:
    """The one way LD_DEBUG misleads (``ldebug.Request.rule_given`` corrects it)."""
    d = adhoc.lib("lib/libld.so", defines=["ld"])
    c = adhoc.lib("lib/liblc.so", needed=[d], runpath=["$ORIGIN"])
    b = adhoc.lib("app/liblb.so", needed=[c], rpath=["$ORIGIN/../lib"])
    run = adhoc.run(f"now {b}")
    req = run.trace.step(1).request_of(adhoc.path("app/../lib/libld.so"))
    assert req is not None
    assert req.rule == "rpath" and req.rule_given(True) == "runpath"


def test_quirk_check_match_assertion(adhoc: AdHoc) -> None:
    """differential.QUIRKS "check-match-assertion": a versioned reference, its Verneed naming
    a file that has no symbol versioning but defines the symbol: ld.so aborts the process."""
    link = adhoc.lib("link/libvv.so.1", defines=["vv_f@@VV_1"])
    user = adhoc.lib("a/libvu.so", needed=[link], uses=["vv_f@VV_1"],
                     runpath=["$ORIGIN/../plain"])
    adhoc.lib("plain/libvv.so.1", defines=["vv_f"], marker="unversioned")
    lazy = adhoc.run(f"lazy {user}")
    assert lazy.calls[0].ok  # dl-version.c accepts a provider without versioning
    now = adhoc.run(f"now {user}")
    assert not now.done and now.exit == 127
    assert now.crash is not None and "check_match: Assertion" in now.crash
