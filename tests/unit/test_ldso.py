"""The ld.so model on trees of real ELF files written by torchdll._elfwrite, under a root folder
(virtual absolute paths): no compiler, no real loader, any OS. The same behaviours are checked
against the real glibc loader by tests/ldso (gcc-built) and tests/unit/test_elfwrite.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Tuple

import pytest

from torchdll._elfwrite import build_elf
from torchdll.ldso import (
    DF_1_NODEFLIB,
    RTLD_GLOBAL,
    RTLD_LAZY,
    RTLD_NOW,
    LdContext,
    LdRule,
    LdSimulator,
    LdSkip,
    split_search_path,
)

SYS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu")


class Tree:
    def __init__(self, root: Path) -> None:
        self.root = root

    def lib(self, path: str, **kw: object) -> str:
        build_elf(str(self.root) + path, **kw)  # type: ignore[arg-type]
        return path

    def ctx(self, llp: Sequence[str] = (), **kw: object) -> LdContext:
        if not os.path.exists(str(self.root) + "/usr/bin/python3"):
            self.lib("/usr/bin/python3", exec_=True)
        base = dict(ld_library_path=tuple(llp), system_dirs=SYS, executable="/usr/bin/python3",
                    cwd="/home/u", root=str(self.root))
        base.update(kw)
        return LdContext(**base)  # type: ignore[arg-type]


@pytest.fixture()
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


def loads(res: object) -> Tuple[Tuple[str, str, str], ...]:
    return tuple((x.name, x.path, x.rule.value) for x in getattr(res, "loaded"))


def test_search_order_rpath_llp_runpath_system(tree: Tree) -> None:
    for d in ("/rp", "/llp", "/run", SYS[0]):
        tree.lib(f"{d}/libx.so.1", soname="libx.so.1")
    a = tree.lib("/app/liba.so", needed=["libx.so.1"], rpath="/rp")
    b = tree.lib("/app/libb.so", needed=["libx.so.1"], runpath="/run")
    c = tree.lib("/app/libc_.so", needed=["libx.so.1"])
    assert loads(LdSimulator(tree.ctx(["/llp"])).dlopen(a))[1] == ("libx.so.1", "/rp/libx.so.1", "rpath")
    assert loads(LdSimulator(tree.ctx(["/llp"])).dlopen(b))[1][2] == "ld-library-path"  # LLP before RUNPATH
    assert loads(LdSimulator(tree.ctx()).dlopen(b))[1] == ("libx.so.1", "/run/libx.so.1", "runpath")
    assert loads(LdSimulator(tree.ctx()).dlopen(c))[1] == ("libx.so.1", f"{SYS[0]}/libx.so.1", "system-dir")


def test_runpath_disables_rpath_and_is_not_inherited(tree: Tree) -> None:
    tree.lib("/rp/liby.so.1", soname="liby.so.1")
    tree.lib("/run/libmid.so", soname="libmid.so", needed=["liby.so.1"])
    both = tree.lib("/app/libboth.so", needed=["liby.so.1"], rpath="/rp", runpath="/nowhere")
    res = LdSimulator(tree.ctx()).dlopen(both)
    assert not res.ok and res.error == "liby.so.1: cannot open shared object file: No such file or directory"
    # libmid is found through the top object's RUNPATH, but its own liby.so.1 is not
    top = tree.lib("/app/libtop.so", needed=["libmid.so"], runpath="/run:/rp")
    res = LdSimulator(tree.ctx()).dlopen(top)
    assert not res.ok and res.failed is not None and res.failed.requester == "/run/libmid.so"
    # an RPATH, in contrast, is inherited down the loader chain
    top2 = tree.lib("/app/libtop2.so", needed=["libmid.so"], rpath="/run:/rp")
    assert LdSimulator(tree.ctx()).dlopen(top2).ok


def test_origin_is_the_folder_it_was_found_by(tree: Tree) -> None:
    tree.lib("/opt/pkg/lib/libdep.so.1", soname="libdep.so.1")
    lib = tree.lib("/opt/pkg/bin/libuse.so", needed=["libdep.so.1"], runpath="$ORIGIN/../lib")
    res = LdSimulator(tree.ctx()).dlopen(lib)
    assert res.ok and loads(res)[1] == ("libdep.so.1", "/opt/pkg/bin/../lib/libdep.so.1", "runpath")


def test_nodeflib_skips_the_system_dirs(tree: Tree) -> None:
    tree.lib(f"{SYS[0]}/libz.so.1", soname="libz.so.1")
    lib = tree.lib("/app/libn.so", needed=["libz.so.1"], flags_1=DF_1_NODEFLIB)
    res = LdSimulator(tree.ctx()).dlopen(lib)
    assert not res.ok and res.error == "libz.so.1: cannot open shared object file"  # nothing was opened


def test_wrong_class_is_skipped_then_named(tree: Tree) -> None:
    tree.lib("/llp/libw.so.1", soname="libw.so.1", elf_class=32, machine=3)
    tree.lib(f"{SYS[0]}/libw.so.1", soname="libw.so.1")
    user = tree.lib("/app/libu.so", needed=["libw.so.1"])
    res = LdSimulator(tree.ctx(["/llp"])).dlopen(user)
    assert res.ok and loads(res)[1][1] == f"{SYS[0]}/libw.so.1"
    assert res.loaded[1].candidates[0].outcome is LdSkip.WRONG_CLASS
    os.remove(str(tree.root) + f"{SYS[0]}/libw.so.1")
    res = LdSimulator(tree.ctx(["/llp"])).dlopen(user)
    assert res.error == "libw.so.1: wrong ELF class: ELFCLASS32"


def test_already_loaded_by_soname(tree: Tree) -> None:
    tree.lib("/first/libs.so.1", soname="libs.so.1", defines=["s"])
    tree.lib("/second/libs.so.1", soname="libs.so.1")
    a = tree.lib("/app/liba.so", needed=["libs.so.1"], runpath="/first")
    b = tree.lib("/app/libb.so", needed=["libs.so.1"], runpath="/second", uses=["s"])
    sim = LdSimulator(tree.ctx())
    assert sim.dlopen(a).ok
    res = sim.dlopen(b)  # libs.so.1 is reused from /first (it defines s): no search
    assert res.ok and [e for e in res.edges if e[1] == "libs.so.1"][0][2:] == ("/first/libs.so.1", LdRule.LOADED)


def test_version_and_symbol_errors(tree: Tree) -> None:
    tree.lib("/dep/libv.so.1", soname="libv.so.1", version_defs=["V1", "V2"], defines=["f@@V2"])
    needs_v3 = tree.lib("/app/libn3.so", needed=["libv.so.1"], runpath="/dep", version_needs={"libv.so.1": ["V3"]})
    res = LdSimulator(tree.ctx()).dlopen(needs_v3)
    assert res.kind == "version" and res.error == "/dep/libv.so.1: version `V3' not found (required by /app/libn3.so)"
    wants_g = tree.lib("/app/libg.so", needed=["libv.so.1"], runpath="/dep", uses=["g@V1"])
    res = LdSimulator(tree.ctx()).dlopen(wants_g)
    assert res.kind == "symbol" and res.error == "/app/libg.so: undefined symbol: g, version V1"
    assert res.missing_symbol is not None and res.missing_symbol.provider == "/dep/libv.so.1"


def test_lazy_binding_defers_plt_lookups_only(tree: Tree) -> None:
    tree.lib("/dep/libd.so.1", soname="libd.so.1", defines=["there"])
    plt = tree.lib("/app/libplt.so", needed=["libd.so.1"], runpath="/dep", lazy_uses=["gone"])
    data = tree.lib("/app/libdata.so", needed=["libd.so.1"], runpath="/dep", uses=["gone"])
    assert LdSimulator(tree.ctx()).dlopen(plt, RTLD_LAZY).ok
    assert LdSimulator(tree.ctx()).dlopen(plt, RTLD_NOW).error == "/app/libplt.so: undefined symbol: gone"
    assert LdSimulator(tree.ctx()).dlopen(data, RTLD_LAZY).error == "/app/libdata.so: undefined symbol: gone"


def test_rtld_global_makes_symbols_visible_to_later_loads(tree: Tree) -> None:
    provider = tree.lib("/p/libprov.so", soname="libprov.so", defines=["shared"])
    user = tree.lib("/u/libuser.so", uses=["shared"])
    sim = LdSimulator(tree.ctx())
    assert sim.dlopen(provider, RTLD_NOW).ok  # RTLD_LOCAL: not in the global scope
    assert sim.dlopen(user).kind == "symbol"
    sim = LdSimulator(tree.ctx())
    assert sim.dlopen(provider, RTLD_NOW | RTLD_GLOBAL).ok
    assert sim.dlopen(user).ok


def test_a_failed_dlopen_changes_nothing(tree: Tree) -> None:
    tree.lib("/d/libok.so.1", soname="libok.so.1")
    bad = tree.lib("/app/libbad.so", needed=["libok.so.1", "libmissing.so.1"], runpath="/d")
    sim = LdSimulator(tree.ctx())
    before = sim.loaded_paths()
    res = sim.dlopen(bad)
    assert not res.ok and [x.path for x in res.loaded] == ["/app/libbad.so", "/d/libok.so.1"]
    assert sim.loaded_paths() == before


def test_a_pie_cannot_be_dlopened(tree: Tree) -> None:
    prog = tree.lib("/opt/tool", exec_=True)
    assert LdSimulator(tree.ctx()).dlopen(prog).error == "/opt/tool: cannot dynamically load position-independent executable"


def test_dlopen_by_path_of_missing_and_invalid_files(tree: Tree) -> None:
    sim = LdSimulator(tree.ctx())
    assert sim.dlopen("/nope/libx.so").error == "/nope/libx.so: cannot open shared object file: No such file or directory"
    junk = tree.root / "junk"
    junk.mkdir()
    (junk / "libj.so").write_bytes(b"not an ELF file at all, but long enough to have a header" * 2)
    res = sim.dlopen("/junk/libj.so")
    assert not res.ok and res.kind == "invalid" and res.error == "/junk/libj.so: invalid ELF header"


def test_ld_library_path_splits_like_ld_so() -> None:
    assert split_search_path("/a;/b::/c") == ("/a", "/b", "", "/c")


def test_ld_preload_is_mapped_first_and_global(tree: Tree) -> None:
    tree.lib("/opt/old/libq.so.1", soname="libq.so.1", version_defs=["Q1"], defines=["q@@Q1"])
    tree.lib(f"{SYS[0]}/libq.so.1", soname="libq.so.1", version_defs=["Q1", "Q2"], defines=["q@@Q2"])
    user = tree.lib("/app/libuser.so", needed=["libq.so.1"], version_needs={"libq.so.1": ["Q2"]})
    assert LdSimulator(tree.ctx()).dlopen(user).ok
    sim = LdSimulator(tree.ctx(preload=("/opt/old/libq.so.1", "libnotthere.so")))
    assert sim.preloaded == {"/opt/old/libq.so.1"}  # a preload that is not found is ignored
    res = sim.dlopen(user)
    assert res.error == "/opt/old/libq.so.1: version `Q2' not found (required by /app/libuser.so)"


def test_preload_entries_split_like_ld_so() -> None:
    from torchdll.ldso import preload_entries

    assert preload_entries("/a/x.so libb.so:/c/y.so  ", "/etc/one.so\n/etc/two.so\n") == (
        "/a/x.so", "libb.so", "/c/y.so", "/etc/one.so", "/etc/two.so")
    assert preload_entries(None) == ()


def test_loaded_objects_continue_in_another_context(tree: Tree) -> None:
    tree.lib("/d/libk.so.1", soname="libk.so.1", defines=["k"])
    a = tree.lib("/app/liba.so", needed=["libk.so.1"], runpath="/d")
    sim = LdSimulator(tree.ctx())
    assert sim.dlopen(a, RTLD_NOW | RTLD_GLOBAL).ok
    state = sim.loaded_objects()
    assert [o.path for o in state if o.path.startswith(("/app", "/d"))] == ["/app/liba.so", "/d/libk.so.1"]
    user = tree.lib("/u/libuser.so", needed=["libk.so.1"], uses=["k"])  # no search path to libk
    again = LdSimulator(tree.ctx(loaded=state))
    res = again.dlopen(user)
    assert res.ok and [e[3] for e in res.edges if e[1] == "libk.so.1"] == [LdRule.LOADED]
