"""Minimal reproductions of every disagreement the differential test found between
``torchdll.ldso`` and the real ld.so (glibc 2.36), one test each.

Each test first pins what the real ld.so does (so the repro stays honest if the machine
changes), then asks the model for the same calls. All of them failed against the model as
first delivered; they stay as regression tests (``differential.MODEL_BUGS`` labels generated
scenarios that fall into one of these families again).
"""

from __future__ import annotations

import os

import pytest

from .conftest import AdHoc


def _glibc_version() -> tuple:
    text = os.confstr("CS_GNU_LIBC_VERSION") or "glibc 0.0"
    major, minor = text.split()[1].split(".")[:2]
    return int(major), int(minor)


def test_lazy_dlopen_still_binds_address_relocations(adhoc: AdHoc) -> None:
    """Under RTLD_LAZY only PLT (R_X86_64_JUMP_SLOT) relocations are deferred. A symbol whose
    address is taken (R_X86_64_64 / R_X86_64_GLOB_DAT: function pointers, data) is looked up
    when the object is relocated, and a missing one fails dlopen(RTLD_LAZY) too.
    Seen in generated scenarios with ``refs`` (feature "address-ref") and RTLD_LAZY."""
    lib = adhoc.lib("a/libref.so", refs=["missing_fn"])
    run = adhoc.run(f"lazy {lib}")
    assert run.calls[0].error == f"{lib}: undefined symbol: missing_fn"
    (res,) = adhoc.model(run, f"lazy {lib}")
    assert (res.ok, res.error) == (False, f"{lib}: undefined symbol: missing_fn")


def test_search_that_only_found_a_wrong_class_file(adhoc: AdHoc) -> None:
    """When the search found no usable file but skipped one of the other ELF class, dlerror()
    says "NAME: wrong ELF class: ELFCLASS32", not "cannot open shared object file"
    (``_dl_map_object``: ``found_other_class``). Same for a DT_NEEDED entry."""
    adhoc.lib("w/libwo.so.1", m32=True)
    dep = adhoc.lib("link/libwo.so.1", defines=["wo"])
    user = adhoc.lib("a/libwu.so", needed=[dep])
    llp = adhoc.path("w")
    run = adhoc.run("now libwo.so.1", f"now {user}", llp=llp)
    expected = "libwo.so.1: wrong ELF class: ELFCLASS32"
    assert [c.error for c in run.calls] == [expected, expected]
    results = adhoc.model(run, "now libwo.so.1", f"now {user}", llp=llp)
    assert [r.error for r in results] == [expected, expected]


def test_undefined_symbol_reported_in_glibc_relocation_order(adhoc: AdHoc) -> None:
    """With several objects missing symbols, RTLD_NOW reports the first one *relocated*.
    glibc sorts the dlopen's search list with ``_dl_sort_maps_dfs``: a depth-first walk over
    the breadth-first list taken from its END, each object's DT_NEEDED in order, then relocates
    in post-order. For ``a`` needing ``b`` then ``c`` (both without dependencies) that is c,
    b, a: c's error wins. The model walks depth-first from the root (b, c, a) and reports b."""
    b = adhoc.lib("link/libob.so", uses=["gone_b"])
    c = adhoc.lib("link/liboc.so", uses=["gone_c"])
    a = adhoc.lib("a/liboa.so", needed=[b, c], runpath=["$ORIGIN/../link"])
    run = adhoc.run(f"now {a}")
    expected = f"{adhoc.path('a/../link/liboc.so')}: undefined symbol: gone_c"
    assert run.calls[0].error == expected
    (res,) = adhoc.model(run, f"now {a}")
    assert res.error == expected


def test_cannot_open_without_errno_when_nothing_was_tried(adhoc: AdHoc) -> None:
    """The ": No such file or directory" suffix is strerror(errno) of the search's last
    open(). A search that opens nothing -- ``-z nodefaultlib`` with no RPATH/RUNPATH and no
    LD_LIBRARY_PATH, or only folders ld.so already knows do not exist (an LD_LIBRARY_PATH
    folder is first tried during start-up) -- leaves errno 0 and the text ends at "file"."""
    dep = adhoc.lib("link/libgone.so", defines=["g"])
    lib = adhoc.lib("n/libndf.so", needed=[dep], nodeflib=True)
    dep.unlink()
    expected = "libgone.so: cannot open shared object file"
    for llp in (None, adhoc.path("no-such-folder")):
        run = adhoc.run(f"now {lib}", llp=llp)
        assert run.calls[0].error == expected
        (res,) = adhoc.model(run, f"now {lib}", llp=llp)
        assert res.error == expected, f"LD_LIBRARY_PATH={llp}"


@pytest.mark.skipif(_glibc_version() >= (2, 37), reason="glibc 2.37 removed legacy hwcaps")
def test_legacy_hwcaps_subdirectories(adhoc: AdHoc) -> None:
    """glibc <= 2.36 searches legacy hwcaps subdirectories of every search-path folder
    (``tls/``, the platform such as ``haswell/``, hwcap names such as ``x86_64/``, combined)
    after ``glibc-hwcaps/`` and before the folder itself."""
    adhoc.lib("d/libhw.so.1", defines=["hw"])
    legacy = adhoc.lib("d/tls/libhw.so.1", defines=["hw"], marker="tls")
    llp = adhoc.path("d")
    run = adhoc.run("now libhw.so.1", llp=llp)
    assert [o.name for o in run.calls[0].new] == [str(legacy)]
    (res,) = adhoc.model(run, "now libhw.so.1", llp=llp)
    assert [ld.path for ld in res.loaded] == [str(legacy)]


def test_platform_token_is_the_loaders_platform(adhoc: AdHoc) -> None:
    """``$PLATFORM`` expands to ld.so's ``dl_platform``: on x86-64 glibc derives it from the
    CPU ("haswell", "xeon_phi") and only falls back to AT_PLATFORM ("x86_64")."""
    for plat in ("x86_64", "haswell", "xeon_phi"):
        adhoc.lib(f"plat/{plat}/libpt.so", defines=["pt"], marker=plat)
    user = adhoc.lib("a/libpu.so", needed=[adhoc.root / "plat/x86_64/libpt.so"],
                     rpath=["$ORIGIN/../plat/$PLATFORM"])
    run = adhoc.run(f"now {user}")
    assert run.calls[0].ok
    real = run.calls[0].new[1].real
    (res,) = adhoc.model(run, f"now {user}")
    assert [os.path.realpath(ld.path) for ld in res.loaded] == [str(user), real]


def test_an_empty_dt_rpath_or_runpath_string_is_ignored(adhoc: AdHoc) -> None:
    """A DT_RPATH/DT_RUNPATH whose whole value is "" searches nothing (``decompose_rpath``:
    "Ignore empty rpaths"), while an empty *entry* in a longer list (``":"``, ``"x:"``) is the
    working directory. An empty DT_RUNPATH still exists, though: it still turns off the
    DT_RPATH of the loader chain."""
    dep = adhoc.lib("wd/libcw.so", defines=["cw"])
    for kind in ("rpath", "runpath"):
        empty = adhoc.lib(f"{kind}-empty/libce.so", needed=[dep], **{kind: [""]})
        colon = adhoc.lib(f"{kind}-colon/libce.so", needed=[dep], **{kind: ["", ""]})
        run = adhoc.run(f"now {empty}", f"now {colon}", cwd="wd")
        missing = "libcw.so: cannot open shared object file: No such file or directory"
        assert [c.error for c in run.calls] == [missing, None]
        results = adhoc.model(run, f"now {empty}", f"now {colon}")
        assert [r.error for r in results] == [missing, None], kind
    # the loader chain: outer (RPATH to lib/) -> inner (empty DT_RUNPATH) -> libcx.so in lib/
    leaf = adhoc.lib("lib/libcx.so", defines=["cx"])
    inner = adhoc.lib("in/libci.so", needed=[leaf], runpath=[""])
    outer = adhoc.lib("out/libco.so", needed=[inner], rpath=["$ORIGIN/../in", "$ORIGIN/../lib"])
    run = adhoc.run(f"now {outer}")
    assert run.calls[0].error == "libcx.so: cannot open shared object file: No such file or directory"
    (res,) = adhoc.model(run, f"now {outer}")
    assert res.error == run.calls[0].error
