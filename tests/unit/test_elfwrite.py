"""torchdll._elfwrite: ELF objects written in pure Python, judged by glibc's real ``ld.so``
(``dlopen`` in a child Python, ``execve`` of a written executable), by binutils ``readelf`` and
by torchdll's own reader (``_elf.read_elf_facts``) and loader model (``ldso.LdSimulator``),
which must predict the real outcome and ``dlerror()`` text of every case."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.tiers import unavailable
from torchdll import ldso
from torchdll._elf import (
    RELOC_EAGER,
    RELOC_PLT,
    ElfFacts,
    UndefinedSymbol,
    VersionNeed,
    read_elf_facts,
)
from torchdll._elfwrite import DF_1_PIE, build_elf, elf_bytes, elf_hash, gnu_hash, split_symbol

NOW = os.RTLD_NOW | os.RTLD_GLOBAL if hasattr(os, "RTLD_NOW") else 0x102
LAZY = os.RTLD_LAZY if hasattr(os, "RTLD_LAZY") else 0x1
DF_1_NODEFLIB = 0x800


# --------------------------------------------------------------------------------------------
# the real loader, in a child process
# --------------------------------------------------------------------------------------------


def _real_loader_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"needs Linux and glibc's ld.so (this is {sys.platform})"
    libc, _version = platform.libc_ver()
    if libc != "glibc":
        return f"needs glibc's ld.so (this C library: {libc or 'unknown'})"
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"the objects are x86-64; this machine is {platform.machine()}"
    return None


@pytest.fixture
def real_loader() -> None:
    reason = _real_loader_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def readelf() -> str:
    if not sys.platform.startswith("linux"):
        pytest.skip("readelf's output is compared on Linux only")
    path = shutil.which("readelf")
    if path is None:
        unavailable("readelf not found (apt-get install binutils)")
    return path


#: Opens ``argv[1]`` with flags ``argv[2]``: ``ctypes.CDLL`` when the flags hold RTLD_NOW;
#: otherwise libc's own ``dlopen`` (``ctypes`` always ORs RTLD_NOW in, so it cannot load
#: lazily). Then reads the ``long`` behind each ``sym`` / ``sym@V`` of ``argv[3:]`` through
#: ``dlsym`` / ``dlvsym``. Prints ``{"ok", "error", "values"}``.
CHILD = r"""
import ctypes, json, os, sys
path, flags, wanted = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
libc = ctypes.CDLL(None)
libc.dlopen.restype = ctypes.c_void_p
libc.dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.dlerror.restype = ctypes.c_char_p
libc.dlsym.restype = ctypes.c_void_p
libc.dlsym.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
libc.dlvsym.restype = ctypes.c_void_p
libc.dlvsym.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
handle, error = None, None
if flags & os.RTLD_NOW:
    try:
        handle = ctypes.CDLL(path, mode=flags)._handle
    except OSError as exc:
        error = str(exc)
else:
    handle = libc.dlopen(os.fsencode(path), flags)
    if not handle:
        error = os.fsdecode(libc.dlerror())
values = {}
for spec in wanted if handle else ():
    name, _, version = spec.partition("@")
    addr = (libc.dlvsym(handle, name.encode(), version.encode()) if version
            else libc.dlsym(handle, name.encode()))
    values[spec] = ctypes.c_long.from_address(addr).value if addr else None
print(json.dumps({"ok": error is None, "error": error, "values": values}))
"""


def child_env(llp: str | None = None, **extra: str) -> dict[str, str]:
    """A clean environment: nothing of this process's LD_* variables leaks into the child."""
    env = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"}
    if llp is not None:
        env["LD_LIBRARY_PATH"] = llp
    env.update(extra)
    return env


def real_dlopen(path: Path | str, flags: int, env: Mapping[str, str],
                symbols: Sequence[str] = ()) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), str(flags), *symbols],
                          check=False, capture_output=True, text=True, env=dict(env), timeout=60)
    assert proc.returncode == 0, proc.stderr  # an ld.so crash or assertion is never expected
    result: dict[str, Any] = json.loads(proc.stdout)
    result["stderr"] = proc.stderr
    return result


_CONTEXTS: dict[tuple[tuple[str, str], ...], ldso.LdContext] = {}


def predict(path: Path | str, flags: int, env: Mapping[str, str]) -> ldso.DlopenResult:
    """The loader model's prediction for a fresh child Python started with ``env``."""
    key = tuple(sorted(env.items()))
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        ctx = _CONTEXTS[key] = ldso.live_context(dict(env), executable=sys.executable, loaded=[])
    return ldso.LdSimulator(ctx).dlopen(str(path), flags)


# --------------------------------------------------------------------------------------------
# the cases: real ld.so == expected text == model
# --------------------------------------------------------------------------------------------


def dep_lib(root: Path) -> Path:
    """libdep.so.1: V1 (default and hidden definitions), V2, an unversioned symbol."""
    return build_elf(root / "dep" / "libdep.so.1", soname="libdep.so.1",
                     defines=["a@@V1", "b@V1", "c@@V2", "plain"])


def user_lib(root: Path, **kwargs: Any) -> Path:
    """lib/libuser.so needing libdep.so.1 through RUNPATH $ORIGIN/../dep."""
    return build_elf(root / "lib" / "libuser.so", soname="libuser.so", needed=["libdep.so.1"],
                     runpath="$ORIGIN/../dep", **kwargs)


Case = tuple[Path, int, dict[str, str], Optional[str]]  # (path, flags, env, expected error)


def case_ok_tree(root: Path) -> list[Case]:
    dep_lib(root)
    user = user_lib(root, uses=["a@V1", "b@V1", "plain"], lazy_uses=["c@V2"])
    return [(user, flags, child_env(), None) for flags in (NOW, LAZY)]


def case_missing_lib(root: Path) -> list[Case]:
    user = build_elf(root / "libuser.so", needed=["libx.so.1"], uses=["q"])
    text = "libx.so.1: cannot open shared object file: No such file or directory"
    return [(user, NOW, child_env(), text), (user, LAZY, child_env(), text)]


def case_missing_version(root: Path) -> list[Case]:
    dep_lib(root)
    user = user_lib(root, uses=["a@V3"])
    text = (f"{root}/lib/../dep/libdep.so.1: version `V3' not found "
            f"(required by {root}/lib/libuser.so)")
    return [(user, NOW, child_env(), text), (user, LAZY, child_env(), text)]


def case_missing_symbol(root: Path) -> list[Case]:
    """V1 exists but holds no ``s``: a GLOB_DAT reference fails in either mode."""
    dep_lib(root)
    user = user_lib(root, uses=["a@V1", "s@V1"])
    text = f"{root}/lib/libuser.so: undefined symbol: s, version V1"
    return [(user, NOW, child_env(), text), (user, LAZY, child_env(), text)]


def case_missing_unversioned_symbol(root: Path) -> list[Case]:
    dep_lib(root)
    user = user_lib(root, uses=["plain", "nothere"])
    return [(user, NOW, child_env(), f"{root}/lib/libuser.so: undefined symbol: nothere")]


def case_lazy_missing_symbol(root: Path) -> list[Case]:
    """A JUMP_SLOT reference to a missing symbol: loads lazily, fails under RTLD_NOW."""
    dep_lib(root)
    user = user_lib(root, uses=["a@V1"], lazy_uses=["s@V1"])
    return [(user, LAZY, child_env(), None),
            (user, NOW, child_env(), f"{root}/lib/libuser.so: undefined symbol: s, version V1")]


def case_hidden_version_binds_only_by_version(root: Path) -> list[Case]:
    """``b@V1`` is hidden: a plain ``b`` reference still binds to it (the only definition,
    index >= 2: ``check_match``'s ``num_versions == 1``), as it does in glibc."""
    dep_lib(root)
    user = user_lib(root, uses=["b"])
    return [(user, NOW, child_env(), None)]


def case_wrong_class_by_path(root: Path) -> list[Case]:
    lib = build_elf(root / "libuser.so", elf_class=32, machine=3, defines=["x"])
    return [(lib, NOW, child_env(), f"{lib}: wrong ELF class: ELFCLASS32")]


def case_wrong_class_by_search(root: Path) -> list[Case]:
    """A 32-bit candidate is skipped; when nothing else is found the search says so."""
    build_elf(root / "w" / "libwc.so.1", elf_class=32, machine=3, defines=["x"])
    user = build_elf(root / "libuser.so", needed=["libwc.so.1"], runpath="$ORIGIN/w")
    ok_user = build_elf(root / "ok" / "libuser.so", needed=["libwc.so.1"],
                        runpath="$ORIGIN/../w:$ORIGIN/../g")
    build_elf(root / "g" / "libwc.so.1", defines=["x"])
    return [(user, NOW, child_env(), "libwc.so.1: wrong ELF class: ELFCLASS32"),
            (ok_user, NOW, child_env(), None)]


def case_wrong_machine_by_path(root: Path) -> list[Case]:
    """Same class, another machine: ``open_verify`` closes the file, errno ENOENT."""
    lib = build_elf(root / "libarm.so", machine=183, defines=["x"])
    return [(lib, NOW, child_env(), (f"{lib}: cannot open shared object file: "
             "No such file or directory"))]


def case_rpath_and_runpath(root: Path) -> list[Case]:
    """DT_RPATH finds the dependency; a DT_RUNPATH beside it disables it."""
    build_elf(root / "a" / "libq.so.1", soname="libq.so.1", defines=["q"])
    rp = build_elf(root / "rp.so", needed=["libq.so.1"], rpath="$ORIGIN/a", uses=["q"])
    both = build_elf(root / "both.so", needed=["libq.so.1"], rpath="$ORIGIN/a",
                     runpath="$ORIGIN/b", uses=["q"])
    text = "libq.so.1: cannot open shared object file: No such file or directory"
    return [(rp, NOW, child_env(), None), (both, NOW, child_env(), text),
            (both, NOW, child_env(llp=str(root / "a")), None)]


def case_nodeflib(root: Path) -> list[Case]:
    """DF_1_NODEFLIB: a library that only the cache or system folders have is not found (and,
    nothing having been opened, dlerror() has no strerror part); one already loaded is."""
    import ctypes.util

    if ctypes.util.find_library("z") is None:
        pytest.skip("no libz.so.1 in this machine's ld.so.cache")
    plain = build_elf(root / "plain.so", needed=["libz.so.1"])
    nodeflib = build_elf(root / "nd.so", needed=["libz.so.1"], flags_1=DF_1_NODEFLIB)
    libc = build_elf(root / "ndc.so", needed=["libc.so.6"], flags_1=DF_1_NODEFLIB)
    return [(plain, NOW, child_env(), None),
            (nodeflib, NOW, child_env(), "libz.so.1: cannot open shared object file"),
            (libc, NOW, child_env(), None)]


def case_two_files_version_attribution(root: Path) -> list[Case]:
    """A version needed from the second DT_NEEDED file must be mapped there explicitly; by
    default it is needed from the first one, which then lacks it."""
    build_elf(root / "m" / "liba.so.1", soname="liba.so.1", defines=["a@@VA"])
    build_elf(root / "m" / "libb.so.1", soname="libb.so.1", defines=["b@@VB"])
    spec: dict[str, Any] = {"needed": ["liba.so.1", "libb.so.1"], "runpath": "$ORIGIN/m",
                                "uses": ["a@VA", "b@VB"]}
    right = build_elf(root / "right.so", version_needs={"libb.so.1": ["VB"]}, **spec)
    wrong = build_elf(root / "wrong.so", **spec)
    return [(right, NOW, child_env(), None),
            (wrong, NOW, child_env(),
             f"{root}/m/liba.so.1: version `VB' not found (required by {wrong})")]


CASES = {f.__name__[5:]: f for f in (
    case_ok_tree, case_missing_lib, case_missing_version, case_missing_symbol,
    case_missing_unversioned_symbol, case_lazy_missing_symbol,
    case_hidden_version_binds_only_by_version, case_wrong_class_by_path,
    case_wrong_class_by_search, case_wrong_machine_by_path, case_rpath_and_runpath,
    case_nodeflib, case_two_files_version_attribution,
)}


@pytest.mark.parametrize("name", list(CASES))
def test_real_loader_and_model_agree(name: str, tmp_path: Path, real_loader: None) -> None:
    root = tmp_path / name
    for path, flags, env, expected in CASES[name](root):
        real = real_dlopen(path, flags, env)
        assert (real["ok"], real["error"]) == (expected is None, expected), (path, flags)
        model = predict(path, flags, env)
        assert (model.ok, model.error) == (expected is None, expected), (path, flags)


def test_real_loader_binds_every_reference(tmp_path: Path, real_loader: None) -> None:
    """``LD_DEBUG=bindings``: the GLOB_DAT references bind at load in either mode, to the
    right version; the JUMP_SLOT one only under RTLD_NOW."""
    dep = dep_lib(tmp_path)
    user = user_lib(tmp_path, uses=["a@V1", "b@V1", "plain"], lazy_uses=["c@V2"])

    def bindings(flags: int) -> list[tuple[str, str, str]]:
        res = real_dlopen(user, flags, child_env(LD_DEBUG="bindings"))
        assert res["ok"]
        pattern = (re.escape(f"binding file {user} [0] to ")
                   + r"(\S+) \[0\]: normal symbol `(\w+)'(?: \[(\w+)\])?")
        return sorted(re.findall(pattern, res["stderr"]))

    dep_as_found = str(tmp_path / "lib" / ".." / "dep" / "libdep.so.1")
    eager = [(dep_as_found, "a", "V1"), (dep_as_found, "b", "V1"), (dep_as_found, "plain", "")]
    assert bindings(LAZY) == eager
    assert bindings(NOW) == sorted(eager + [(dep_as_found, "c", "V2")])
    assert dep.exists()


def test_real_loader_reads_the_data_symbols(tmp_path: Path, real_loader: None) -> None:
    """``dlsym`` / ``dlvsym`` find every definition with its value (the symbol's index in
    ``defines`` + 1); a hidden version only through ``dlvsym``; the version hashes in the file
    are right (``dlvsym`` compares them to its own ``_dl_elf_hash``)."""
    dep = dep_lib(tmp_path)
    res = real_dlopen(dep, NOW, child_env(), ["a", "a@V1", "b", "b@V1", "c@V2", "c", "plain",
                                              "a@V2", "nope"])
    assert res["ok"], res
    assert res["values"] == {"a": 1, "a@V1": 1, "b": None, "b@V1": 2, "c@V2": 3, "c": 3,
                             "plain": 4, "a@V2": None, "nope": None}


@pytest.mark.parametrize("hash_style", ["both", "gnu", "sysv"])
def test_real_loader_finds_every_symbol_through_each_hash_table(
        tmp_path: Path, real_loader: None, hash_style: str) -> None:
    """Hundreds of symbols over many buckets: with only DT_GNU_HASH, only DT_HASH, or both
    (then glibc uses DT_GNU_HASH), every name is found and an absent one is not."""
    names = [f"sym_{i}" for i in range(260)]
    versioned = [f"v{i}@@V{i % 7}" for i in range(40)]
    lib = build_elf(tmp_path / "lib.so", defines=names + versioned, hash_style=hash_style)
    wanted = names + [f"v{i}@V{i % 7}" for i in range(40)] + ["absent", "sym_260"]
    res = real_dlopen(lib, NOW, child_env(), wanted)
    expected: dict[str, int | None] = {n: i for i, n in enumerate(names, 1)}
    expected.update({f"v{i}@V{i % 7}": 261 + i for i in range(40)})
    expected.update({"absent": None, "sym_260": None})
    assert res["values"] == expected


def test_pie_runs_and_reports_a_missing_library(tmp_path: Path, real_loader: None) -> None:
    """The executable: the kernel maps it and its PT_INTERP, ld.so binds its references, the
    entry point exits 0; with a missing DT_NEEDED ld.so's start-up error is the usual one."""
    interp = "/lib64/ld-linux-x86-64.so.2"
    if not os.path.exists(interp):
        pytest.skip(f"no {interp} on this machine")
    dep_lib(tmp_path)
    good = build_elf(tmp_path / "bin" / "prog", exec_=True, needed=["libdep.so.1"],
                     runpath="$ORIGIN/../dep", uses=["a@V1"], lazy_uses=["c@V2"])
    proc = subprocess.run([str(good)], check=False, capture_output=True, text=True,
                          env=child_env(LD_BIND_NOW="1"), timeout=30)
    assert (proc.returncode, proc.stderr) == (0, "")
    bad = build_elf(tmp_path / "bin" / "bad", exec_=True, needed=["libx.so.1"])
    proc = subprocess.run([str(bad)], check=False, capture_output=True, text=True,
                          env=child_env(), timeout=30)
    assert proc.returncode == 127
    assert proc.stderr == (f"{bad}: error while loading shared libraries: libx.so.1: cannot "
                           "open shared object file: No such file or directory\n")


def test_pie_cannot_be_dlopened(tmp_path: Path, real_loader: None) -> None:
    prog = build_elf(tmp_path / "prog", exec_=True, defines=["x"])
    res = real_dlopen(prog, NOW, child_env())
    assert res["error"] == f"{prog}: cannot dynamically load position-independent executable"


def test_model_refuses_to_dlopen_a_pie(tmp_path: Path, real_loader: None) -> None:
    prog = build_elf(tmp_path / "prog", exec_=True, defines=["x"])
    model = predict(prog, NOW, child_env())
    assert model.error == f"{prog}: cannot dynamically load position-independent executable"


def run_child(path: Path, flags: int, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CHILD, str(path), str(flags)], check=False,
                          capture_output=True, text=True, env=dict(env), timeout=60)


def test_versioned_reference_into_an_unversioned_needed_file_aborts(
        tmp_path: Path, real_loader: None) -> None:
    """``x@V1`` needed from a file without symbol versioning: the version check passes (the
    file has no Elf_Verdef), then ``check_match`` asserts and ld.so kills the process -- under
    RTLD_NOW as under RTLD_LAZY, since the GLOB_DAT reference is bound at load."""
    build_elf(tmp_path / "dep" / "libnv.so.1", soname="libnv.so.1", defines=["x"])
    user = build_elf(tmp_path / "lib" / "libuser.so", needed=["libnv.so.1"],
                     runpath="$ORIGIN/../dep", uses=["x@V1"])
    for flags in (NOW, LAZY):
        proc = run_child(user, flags, child_env())
        assert proc.returncode == 127 and proc.stdout == ""
        assert proc.stderr.startswith("Inconsistency detected by ld.so: dl-lookup.c: ")
        assert "check_match: Assertion `version->filename == NULL" in proc.stderr


def test_model_predicts_the_check_match_abort(tmp_path: Path, real_loader: None) -> None:
    build_elf(tmp_path / "dep" / "libnv.so.1", soname="libnv.so.1", defines=["x"])
    user = build_elf(tmp_path / "lib" / "libuser.so", needed=["libnv.so.1"],
                     runpath="$ORIGIN/../dep", uses=["x@V1"])
    res = predict(user, NOW, child_env())
    assert not res.ok and res.kind == "abort" and "check_match: Assertion" in (res.error or "")


REF_NAMES = ["a", "b", "c", "d"]
REF_VERSIONS = [None, "V1", "V2", "V3"]


def _spelled(name: str, version: str | None) -> str:
    return name if version is None else f"{name}@{version}"


@st.composite
def trees(draw: st.DrawFn) -> dict[str, Any]:
    """libdep.so.1 (always versioned: see the abort above) and a libuser.so referencing it."""
    pairs = [(n, v) for n in REF_NAMES for v in REF_VERSIONS]
    defs = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=8))
    hidden = draw(st.lists(st.booleans(), min_size=len(defs), max_size=len(defs)))
    defines = [n if v is None else f"{n}@{'' if h else '@'}{v}" for (n, v), h in zip(defs, hidden)]
    version_defs: list[str] = draw(st.lists(st.sampled_from(["V1", "V2", "V3"]), unique=True))
    if not version_defs and all(v is None for _n, v in defs):
        version_defs = ["V9"]
    uses = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=4))
    lazy = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=4))
    return {"dep": {"defines": defines, "version_defs": version_defs},
            "user": {"uses": [_spelled(*p) for p in uses],
                     "lazy_uses": [_spelled(*p) for p in lazy]},
            "flags": draw(st.sampled_from([NOW, LAZY]))}


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(tree=trees())
def test_model_matches_real_loader_on_random_trees(tree: dict[str, Any], tmp_path: Path,
                                                   real_loader: None) -> None:
    """Differential: random definitions, versions and references (eager and lazy), both
    modes; the model's outcome and dlerror() text are the real ones."""
    root = tmp_path / f"t{len(list(tmp_path.iterdir()))}"
    build_elf(root / "dep" / "libdep.so.1", soname="libdep.so.1", **tree["dep"])
    user = build_elf(root / "lib" / "libuser.so", needed=["libdep.so.1"],
                     runpath="$ORIGIN/../dep", **tree["user"])
    real = real_dlopen(user, tree["flags"], child_env())
    model = predict(user, tree["flags"], child_env())
    assert (model.ok, model.error) == (real["ok"], real["error"])


# --------------------------------------------------------------------------------------------
# read_elf_facts reads back what was written
# --------------------------------------------------------------------------------------------

RICH: dict[str, Any] = {
    "soname": "librich.so.2",
    "needed": ["libdep.so.1", "libc.so.6", "libstdc++.so.6"],
    "rpath": ["/opt/x", "$ORIGIN/../lib"],
    "runpath": "$ORIGIN",
    "defines": ["d1", "d2@@R_2", "d3@R_1", "d4@@R_1"],
    "uses": ["a@V1", "printf@GLIBC_2.2.5", "plain", "twice@V2"],
    "lazy_uses": ["twice@V2", "lazy_only", "strlen@GLIBC_2.2.5"],
    "version_needs": {"libc.so.6": ["GLIBC_2.2.5", "GLIBC_2.34"], "libstdc++.so.6": ["CXXABI_1.3"]},
    "version_defs": ["R_1", "R_0"],
    "flags_1": DF_1_NODEFLIB,
}


def rich_expectations(facts: ElfFacts) -> None:
    assert facts.warnings == ()
    assert (facts.elf_class, facts.machine, facts.type, facts.interpreter) == (64, 62, 3, None)
    assert facts.soname == "librich.so.2"
    assert facts.needed == ("libdep.so.1", "libc.so.6", "libstdc++.so.6")
    assert facts.rpath == ("/opt/x", "$ORIGIN/../lib")
    assert facts.runpath == ("$ORIGIN",)
    assert (facts.flags, facts.flags_1) == (0, DF_1_NODEFLIB)
    assert facts.version_base == "librich.so.2"
    assert facts.version_defs == ("R_1", "R_0", "R_2")
    assert facts.version_needs == (
        VersionNeed("libdep.so.1", ("V1", "V2")),
        VersionNeed("libc.so.6", ("GLIBC_2.2.5", "GLIBC_2.34")),
        VersionNeed("libstdc++.so.6", ("CXXABI_1.3",)),
    )
    assert facts.undefined == (
        UndefinedSymbol("a", "V1", False, "libdep.so.1"),
        UndefinedSymbol("printf", "GLIBC_2.2.5", False, "libc.so.6"),
        UndefinedSymbol("plain", None, False, None),
        UndefinedSymbol("twice", "V2", False, "libdep.so.1"),
        UndefinedSymbol("lazy_only", None, False, None),
        UndefinedSymbol("strlen", "GLIBC_2.2.5", False, "libc.so.6"),
    )
    assert [u.reloc for u in facts.undefined] == [
        RELOC_EAGER, RELOC_EAGER, RELOC_EAGER, RELOC_EAGER | RELOC_PLT, RELOC_PLT, RELOC_PLT]
    assert facts.defined == {("d1", None), ("d2", "R_2"), ("d3", "R_1"), ("d4", "R_1")}
    assert facts.visible == {"d1", "d2", "d4"}  # d3@R_1 is hidden
    assert facts.has_versym and facts.symbols_read
    assert facts.symbol_count == 1 + 6 + 4
    assert facts.exec_stack is False and facts.tls_size == 0
    assert facts.defines("d3", "R_1") and not facts.defines("d3", "R_2")
    assert facts.defines("d2", None) and facts.defines("d1", "ANY")


def test_read_back_every_table(tmp_path: Path) -> None:
    rich_expectations(read_elf_facts(build_elf(tmp_path / "librich.so.2", **RICH)))


@pytest.mark.parametrize("hash_style", ["gnu", "sysv"])
def test_read_back_without_section_headers(tmp_path: Path, hash_style: str) -> None:
    """Stripped of its section table, the symbols are counted through the hash table, as
    ld.so does: the same facts."""
    image = bytearray(elf_bytes(hash_style=hash_style, **RICH))
    struct.pack_into("<Q", image, 0x28, 0)  # e_shoff
    struct.pack_into("<HH", image, 0x3C, 0, 0)  # e_shnum, e_shstrndx
    path = tmp_path / "stripped.so"
    path.write_bytes(bytes(image))
    rich_expectations(read_elf_facts(path))


@pytest.mark.parametrize("elf_class,machine", [(32, 3), (32, 40), (32, 62), (64, 183)],
                         ids=["i386", "arm", "x32", "aarch64"])
def test_read_back_other_classes_and_machines(tmp_path: Path, elf_class: int,
                                              machine: int) -> None:
    """Elf32 structures (REL relocations on i386/ARM, RELA on x32) read back the same."""
    path = build_elf(tmp_path / "lib.so", elf_class=elf_class, machine=machine,
                     soname="libo.so.1", needed=["libc.so.6"], defines=["a@@V1", "b"],
                     uses=["u@GLIBC_2.0"], lazy_uses=["l"], runpath="$ORIGIN")
    facts = read_elf_facts(path)
    assert facts.warnings == ()
    assert (facts.elf_class, facts.machine, facts.little_endian) == (elf_class, machine, True)
    assert facts.version_needs == (VersionNeed("libc.so.6", ("GLIBC_2.0",)),)
    assert facts.version_defs == ("V1",) and facts.version_base == "libo.so.1"
    assert facts.undefined == (UndefinedSymbol("u", "GLIBC_2.0", False, "libc.so.6"),
                               UndefinedSymbol("l", None, False, None))
    assert [u.reloc for u in facts.undefined] == [RELOC_EAGER, RELOC_PLT]
    assert facts.defined == {("a", "V1"), ("b", None)}


def test_read_back_executable(tmp_path: Path) -> None:
    prog = build_elf(tmp_path / "prog", exec_=True, needed=["libdep.so.1"], uses=["a@V1"])
    facts = read_elf_facts(prog)
    assert facts.warnings == ()
    assert facts.interpreter == "/lib64/ld-linux-x86-64.so.2"
    assert facts.type == 3 and facts.flags_1 == DF_1_PIE
    assert facts.undefined == (UndefinedSymbol("a", "V1", False, "libdep.so.1"),)
    assert os.access(prog, os.X_OK) or sys.platform == "win32"
    other = read_elf_facts(build_elf(tmp_path / "p2", exec_=True, interp="/x/ld.so",
                                     flags_1=DF_1_NODEFLIB))
    assert other.interpreter == "/x/ld.so" and other.flags_1 == DF_1_PIE | DF_1_NODEFLIB


def test_unversioned_library_has_no_version_tables(tmp_path: Path) -> None:
    facts = read_elf_facts(build_elf(tmp_path / "lib.so", defines=["x", "y"], uses=["z"]))
    assert facts.warnings == ()
    assert not facts.has_versym and facts.version_base is None
    assert facts.version_defs == () and facts.version_needs == ()
    assert facts.defined == {("x", None), ("y", None)}
    assert facts.binds_unversioned == {"x", "y"}


# --------------------------------------------------------------------------------------------
# the layout, straight from the bytes
# --------------------------------------------------------------------------------------------


def program_headers(image: bytes) -> list[tuple[int, int, int, int, int, int, int]]:
    """(type, flags, offset, vaddr, filesz, memsz, align) of a 64-bit image."""
    phoff, = struct.unpack_from("<Q", image, 0x20)
    phnum, = struct.unpack_from("<H", image, 0x38)
    out = []
    for i in range(phnum):
        t, f, off, va, _pa, fs, ms, al = struct.unpack_from("<IIQQQQQQ", image, phoff + 56 * i)
        out.append((t, f, off, va, fs, ms, al))
    return out


@pytest.mark.parametrize("exec_", [False, True])
def test_segments(exec_: bool) -> None:
    image = elf_bytes(exec_=exec_, **RICH)
    phdrs = program_headers(image)
    types = [p[0] for p in phdrs]
    head = [6, 3] if exec_ else []  # PT_PHDR, PT_INTERP before any PT_LOAD
    assert types == head + [1, 1, 2, 0x6474E551]
    loads = [p for p in phdrs if p[0] == 1]
    for _t, _f, off, va, fs, ms, al in loads:
        assert al == 0x1000 and off % al == va % al and fs == ms and off + fs <= len(image)
    (_, f1, off1, va1, fs1, _, _), (_, f2, _off2, va2, fs2, _, _) = loads
    assert (off1, va1) == (0, 0) and f1 == (5 if exec_ else 4) and f2 == 6  # R(X), RW
    assert (va1 + fs1 - 1) // 0x1000 < va2 // 0x1000  # no memory page shared
    dyn = next(p for p in phdrs if p[0] == 2)
    assert va2 <= dyn[3] and dyn[3] + dyn[4] <= va2 + fs2
    stack = phdrs[-1]
    assert stack[1] == 6  # PT_GNU_STACK: RW, not executable
    entry, = struct.unpack_from("<Q", image, 0x18)
    assert (entry != 0) is exec_ and (not exec_ or va1 <= entry < va1 + fs1)


# --------------------------------------------------------------------------------------------
# readelf agrees
# --------------------------------------------------------------------------------------------


def run_readelf(readelf: str, path: Path, *options: str) -> str:
    proc = subprocess.run([readelf, "-W", *options, str(path)], check=False, capture_output=True,
                          text=True, env=child_env(), timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr  # not one warning
    return proc.stdout


def test_readelf_agrees(tmp_path: Path, readelf: str) -> None:
    path = build_elf(tmp_path / "librich.so.2", **RICH)
    out = run_readelf(readelf, path, "-d", "-V", "--dyn-syms", "-r")
    dyn = dict(re.findall(r"^\s*0x[0-9a-f]+ \((\w+)\)\s+(.*)$", out, re.MULTILINE)[::1])
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.*)\]", out)
    assert needed == RICH["needed"]
    assert dyn["SONAME"] == "Library soname: [librich.so.2]"
    assert dyn["RPATH"] == "Library rpath: [/opt/x:$ORIGIN/../lib]"
    assert dyn["RUNPATH"] == "Library runpath: [$ORIGIN]"
    assert dyn["FLAGS_1"] == "Flags: NODEFLIB"
    assert dyn["PLTREL"] == "RELA" and dyn["RELAENT"] == "24 (bytes)"
    for tag in ("HASH", "GNU_HASH", "STRTAB", "SYMTAB", "VERSYM", "VERDEF", "VERNEED", "PLTGOT",
                "JMPREL", "RELA"):
        assert int(dyn[tag], 16) != 0, tag
    assert (dyn["VERDEFNUM"], dyn["VERNEEDNUM"]) == ("4", "3")

    verdefs = re.findall(r"Rev: 1\s+Flags: (\w+)\s+Index: (\d+)\s+Cnt: 1\s+Name: (\S+)", out)
    assert verdefs == [("BASE", "1", "librich.so.2"), ("none", "2", "R_1"),
                       ("none", "3", "R_0"), ("none", "4", "R_2")]
    needs: list[tuple[str, list[tuple[str, str]]]] = []
    for line in out.splitlines():
        m = re.search(r"Version: 1\s+File: (\S+)\s+Cnt: \d+", line)
        if m:
            needs.append((m.group(1), []))
        m = re.search(r"Name: (\S+)\s+Flags: none\s+Version: (\d+)", line)
        if m:
            needs[-1][1].append((m.group(1), m.group(2)))
    assert needs == [("libdep.so.1", [("V1", "5"), ("V2", "6")]),
                     ("libc.so.6", [("GLIBC_2.2.5", "7"), ("GLIBC_2.34", "8")]),
                     ("libstdc++.so.6", [("CXXABI_1.3", "9")])]

    rows = re.findall(r"^\s*\d+: [0-9a-f]+\s+\d+ (\w+)\s+(\w+)\s+\w+\s+(\w+) (\S+)(?: \(\d+\))?$",
                      out, re.MULTILINE)
    undef = [(typ, name) for typ, _b, ndx, name in rows if ndx == "UND"]
    assert undef == [("NOTYPE", "a@V1"), ("NOTYPE", "printf@GLIBC_2.2.5"), ("NOTYPE", "plain"),
                     ("FUNC", "twice@V2"), ("FUNC", "lazy_only"), ("FUNC", "strlen@GLIBC_2.2.5")]
    defined = {name for typ, bind, ndx, name in rows if ndx != "UND"}
    assert defined == {"d1", "d2@@R_2", "d3@R_1", "d4@@R_1"}
    assert {(typ, bind) for typ, bind, ndx, _n in rows if ndx != "UND"} == {("OBJECT", "GLOBAL")}

    relocs = re.findall(r"^[0-9a-f]+\s+[0-9a-f]+ (R_X86_64_\w+)\s+[0-9a-f]+ (\S+) \+ 0$", out,
                        re.MULTILINE)
    assert relocs == [("R_X86_64_GLOB_DAT", "a@V1"), ("R_X86_64_GLOB_DAT", "printf@GLIBC_2.2.5"),
                      ("R_X86_64_GLOB_DAT", "plain"), ("R_X86_64_GLOB_DAT", "twice@V2"),
                      ("R_X86_64_JUMP_SLOT", "twice@V2"), ("R_X86_64_JUMP_SLOT", "lazy_only"),
                      ("R_X86_64_JUMP_SLOT", "strlen@GLIBC_2.2.5")]


@pytest.mark.parametrize("kwargs", [
    {},
    {"defines": ["x"]},
    {"uses": ["x"], "hash_style": "gnu"},
    {"defines": ["x@@V"], "hash_style": "sysv"},
    {"exec_": True, "needed": ["libc.so.6"], "uses": ["environ@GLIBC_2.2.5"]},
    {"elf_class": 32, "machine": 3, **{k: v for k, v in RICH.items() if k != "flags_1"}},
    {"elf_class": 32, "machine": 40, "lazy_uses": ["f"], "exec_": True},
    {"machine": 183, "uses": ["g"], "exec_": True},
    {"machine": 183, "defines": ["g"], "interp": "/lib/ld-linux-aarch64.so.1"},
], ids=["empty", "define", "gnu-only", "sysv-only", "exec", "i386", "arm-exec", "aarch64-exec",
        "with-interp"])
def test_readelf_is_silent_on_every_shape(tmp_path: Path, readelf: str,
                                          kwargs: dict[str, Any]) -> None:
    """``readelf -a`` (every table, the hash histograms, the section-to-segment mapping) does
    not print a single warning."""
    path = build_elf(tmp_path / "lib.so", **kwargs)
    out = run_readelf(readelf, path, "-a")
    assert "Section to Segment mapping" in out


# --------------------------------------------------------------------------------------------
# determinism, hashes, property-based round trips
# --------------------------------------------------------------------------------------------


def test_deterministic(tmp_path: Path) -> None:
    one = build_elf(tmp_path / "a" / "librich.so.2", **RICH).read_bytes()
    two = build_elf(tmp_path / "b" / "other-name.so", **RICH).read_bytes()  # soname names base
    assert one == two == elf_bytes(**RICH)
    assert elf_bytes(defines=["x@@V"]) != elf_bytes(file_name="b.so", defines=["x@@V"])
    assert elf_bytes(defines=["x"]) == elf_bytes(file_name="b.so", defines=["x"])  # no verdef


def test_hash_functions() -> None:
    # The published values ("printf": Drepper/Bahrami's GNU hash notes); "" is the start value.
    assert elf_hash("") == 0 and gnu_hash("") == 5381
    assert elf_hash("printf") == 0x077905A6
    assert gnu_hash("printf") == 0x156B2BB8
    assert elf_hash("GLIBCXX_3.4") == 0x08922974  # vd_hash in libstdc++.so.6
    assert elf_hash("GLIBC_2.2.5") == 0x09691A75  # vd_hash in x86-64 libc.so.6
    assert all(elf_hash(s) < 1 << 28 for s in ("a" * 100, "\udcff" * 9, "x.y_z@"))


def test_split_symbol() -> None:
    assert split_symbol("s") == ("s", None, False)
    assert split_symbol("s@V") == ("s", "V", True)
    assert split_symbol("s@@V") == ("s", "V", False)
    assert split_symbol("s@V", reference=True) == ("s", "V", False)
    for bad in ("", "@V", "s@", "s@@", "s@V@W", "s@@V@", "a\0b"):
        with pytest.raises(ValueError):
            split_symbol(bad)
    with pytest.raises(ValueError):
        split_symbol("s@@V", reference=True)


NAMES = st.sampled_from(["a", "b", "c", "dd", "e_1", "f.g", "hhhhhhhhhhhhhhhhhh", "\u00e9t\u00e9"])
VERSIONS = st.sampled_from(["V1", "V2", "GLIBC_2.2.5", "GLIBCXX_3.4.29"])
FILES = st.sampled_from(["liba.so.1", "libb.so.2", "libc.so.6"])


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    defs = draw(st.lists(st.tuples(NAMES, st.none() | VERSIONS, st.booleans()), max_size=12,
                         unique_by=lambda t: (t[0], t[1])))
    defines = [n if v is None else f"{n}@{'' if hidden else '@'}{v}" for n, v, hidden in defs]
    taken = {(n, v) for n, v, _h in defs}
    refs = st.tuples(NAMES, st.none() | VERSIONS).filter(lambda t: t not in taken)
    uses = draw(st.lists(refs, max_size=8, unique=True))
    lazy = draw(st.lists(refs, max_size=8, unique=True))
    needed = draw(st.lists(FILES, max_size=3, unique=True))
    if not needed and any(v for _n, v in uses + lazy):
        needed = ["liba.so.1"]
    version_needs: dict[str, list[str]] | None = None
    explicit: bool = draw(st.booleans())
    if needed and explicit:
        files: list[str] = draw(st.lists(st.sampled_from(needed), unique=True))
        version_needs = {}
        for f in files:
            version_needs[f] = draw(st.lists(VERSIONS, min_size=1, max_size=3, unique=True))
    return dict(
        soname=draw(st.none() | st.just("libx.so.3")), needed=needed,
        rpath=draw(st.none() | st.just("/r1:$ORIGIN")), runpath=draw(st.none() | st.just("")),
        defines=defines, uses=[n if v is None else f"{n}@{v}" for n, v in uses],
        lazy_uses=[n if v is None else f"{n}@{v}" for n, v in lazy],
        version_needs=version_needs,
        version_defs=draw(st.lists(st.sampled_from(["X1", "X2", "V1"]), unique=True)),
        flags_1=draw(st.sampled_from([0, DF_1_NODEFLIB, 1])),
        exec_=draw(st.booleans()), hash_style=draw(st.sampled_from(["both", "gnu", "sysv"])),
        **dict(zip(("elf_class", "machine"),
                   draw(st.sampled_from([(64, 62), (32, 3), (64, 183), (32, 62), (32, 40)])))),
    )


def expected_need_file(spec: Mapping[str, Any], version: str) -> str:
    """The module's documented rule: first file listing it in version_needs, else needed[0]."""
    for file, versions in (spec["version_needs"] or {}).items():
        if version in versions:
            return str(file)
    return str(spec["needed"][0])


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(spec=specs())
def test_round_trip_property(spec: dict[str, Any], tmp_path: Path) -> None:
    image = elf_bytes(**spec)
    assert elf_bytes(**spec) == image
    path = tmp_path / "x.so"
    path.write_bytes(image)
    facts = read_elf_facts(path)
    assert facts.warnings == ()
    assert (facts.elf_class, facts.machine) == (spec["elf_class"], spec["machine"])
    assert facts.needed == tuple(spec["needed"]) and facts.soname == spec["soname"]
    assert facts.rpath == (() if spec["rpath"] is None else tuple(spec["rpath"].split(":")))
    assert facts.runpath == (() if spec["runpath"] is None else ("",))
    assert facts.flags_1 == spec["flags_1"] | (DF_1_PIE if spec["exec_"] else 0)
    assert (facts.interpreter is not None) is spec["exec_"]
    expected_defs = list(spec["version_defs"])
    for d in spec["defines"]:
        _n, v, _h = split_symbol(d)
        if v is not None and v not in expected_defs:
            expected_defs.append(v)
    assert facts.version_defs == tuple(expected_defs)
    assert facts.version_base == ((spec["soname"] or "a.so") if expected_defs else None)
    defined = set()
    for d in spec["defines"]:
        n, v, _h = split_symbol(d)
        defined.add((n, v))
    assert facts.defined == defined
    undefined = []
    for kind in ("uses", "lazy_uses"):
        for u in spec[kind]:
            n, v, _h = split_symbol(u, reference=True)
            item = UndefinedSymbol(n, v, False, expected_need_file(spec, v) if v else None)
            if item not in undefined:
                undefined.append(item)
    assert list(facts.undefined) == undefined
    for u in facts.undefined:
        key = u.name if u.version is None else f"{u.name}@{u.version}"
        bits = (RELOC_EAGER if key in spec["uses"] else 0) | (
            RELOC_PLT if key in spec["lazy_uses"] else 0)
        assert u.reloc == bits, key
    needs = {n.file: n.versions for n in facts.version_needs}
    assert list(needs) == [f for f in spec["needed"] if f in needs]  # DT_NEEDED order
    for u in facts.undefined:
        if u.version:
            assert u.version in needs[str(u.file)]
    for file, versions in (spec["version_needs"] or {}).items():
        assert needs[file][: len(versions)] == tuple(versions)


# --------------------------------------------------------------------------------------------
# argument validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {"defines": ["a@@"]}, {"defines": ["@V"]}, {"defines": ["a@V@W"]}, {"defines": [""]},
    {"defines": ["a\0b"]}, {"defines": ["a", "a"]}, {"defines": ["a@@V", "a@V"]},
    {"uses": ["a@@V"], "needed": ["l.so"]}, {"uses": ["x", "x"]},
    {"uses": ["a"], "defines": ["a"]}, {"lazy_uses": ["a@V"], "defines": ["a@@V"],
                                        "needed": ["l.so"]},
    {"uses": ["x@V"]}, {"lazy_uses": ["x@V"]},
    {"needed": ["liba.so"], "version_needs": {"libz.so": ["V"]}},
    {"needed": ["liba.so"], "version_needs": {"liba.so": []}},
    {"needed": ["liba.so"], "version_needs": {"liba.so": ["V", "V"]}},
    {"needed": ["liba.so"], "version_needs": {"liba.so": ["V@W"]}},
    {"version_defs": ["V", "V"]}, {"version_defs": [""]}, {"version_defs": ["V@W"]},
    {"elf_class": 16}, {"machine": -1}, {"machine": 0x10000}, {"flags_1": -1},
    {"flags_1": 1 << 32}, {"hash_style": "none"}, {"uses": ["x"], "machine": 8},
    {"exec_": True, "machine": 8}, {"interp": ""}, {"soname": ""}, {"needed": [""]},
    {"needed": ["a\0"]}, {"rpath": "a\0b"}, {"runpath": ["a:b"]}, {"runpath": ["\0"]},
], ids=lambda kw: repr(kw)[:60])
def test_nonsense_is_a_value_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        elf_bytes(**kwargs)


@pytest.mark.parametrize("kwargs", [
    {"needed": "libfoo.so.1"}, {"defines": "abc"}, {"uses": [1]}, {"needed": [b"x"]},
    {"machine": "62"}, {"machine": 62.0}, {"flags_1": True}, {"exec_": 1},
    {"version_needs": [("liba.so", ["V"])], "needed": ["liba.so"]},
    {"version_needs": {"liba.so": "V"}, "needed": ["liba.so"]}, {"soname": 3},
    {"rpath": 5}, {"interp": b"/x"}, {"version_defs": None},
], ids=lambda kw: repr(kw)[:60])
def test_wrong_types_are_type_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        elf_bytes(**kwargs)


def test_build_elf_creates_parents_and_returns_the_path(tmp_path: Path) -> None:
    target = tmp_path / "x" / "y" / "libz.so"
    assert build_elf(str(target), defines=["z"]) == target
    assert target.read_bytes()[:4] == b"\x7fELF"


def test_a_version_node_named_like_the_soname_as_nvidia_ships_it(tmp_path: Path, real_loader: None) -> None:
    """NVIDIA's CUDA libraries define ``libnvJitLink.so.12`` twice: the VER_FLG_BASE entry and
    the node their symbols carry (``__nvJitLinkComplete_12_4@@libnvJitLink.so.12``). Written
    that way, the real loader binds a reference to it, and so does the model."""
    build_elf(tmp_path / "dep" / "libnv.so.12", soname="libnv.so.12", version_defs=["libnv.so.12"],
              defines=["f@@libnv.so.12"])
    user = build_elf(tmp_path / "lib" / "libuser.so", needed=["libnv.so.12"],
                     runpath="$ORIGIN/../dep", uses=["f@libnv.so.12"])
    facts = read_elf_facts(tmp_path / "dep" / "libnv.so.12")
    assert facts.version_base == "libnv.so.12" and facts.version_defs == ("libnv.so.12",)
    proc = run_child(user, NOW, child_env())
    assert proc.returncode == 0, proc.stderr
    assert predict(user, NOW, child_env()).ok
