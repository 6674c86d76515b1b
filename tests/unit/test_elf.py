"""torchdll._elf: binutils ``readelf`` as the oracle on system and torch libraries, gcc-built
fixtures (versions, RPATH/RUNPATH, DF_1_NODEFLIB) with glibc's own loader as the oracle for
``ElfFacts.defines``, hand-built objects of every class and byte order, and hostile input that
must end in InvalidImageError (or warnings), quickly and in bounded memory."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import socket
import stat
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.tiers import unavailable
from torchdll import _elf, _pe
from torchdll._elf import ElfFacts, UndefinedSymbol, VersionNeed, read_elf_facts
from torchdll.errors import InvalidImageError

LINUX = sys.platform.startswith("linux")

# --------------------------------------------------------------------------------------------
# readelf as the oracle
# --------------------------------------------------------------------------------------------

DF_NAMES = {"ORIGIN": 0x1, "SYMBOLIC": 0x2, "TEXTREL": 0x4, "BIND_NOW": 0x8, "STATIC_TLS": 0x10}
DF_1_ORDER = (
    "NOW", "GLOBAL", "GROUP", "NODELETE", "LOADFLTR", "INITFIRST", "NOOPEN", "ORIGIN", "DIRECT",
    "TRANS", "INTERPOSE", "NODEFLIB", "NODUMP", "CONFALT", "ENDFILTEE", "DISPRELDNE",
    "DISPRELPND", "NODIRECT", "IGNMULDEF", "NOKSYMS", "NOHDR", "EDITED", "NORELOC", "SYMINTPOSE",
    "GLOBAUDIT", "SINGLETON", "STUB", "PIE", "KMOD", "WEAKFILTER", "NOCOMMON",
)
DF_1_NAMES = {name: 1 << bit for bit, name in enumerate(DF_1_ORDER)}
DEFINING_TYPES = {"NOTYPE", "OBJECT", "FUNC", "COMMON", "TLS", "IFUNC"}
DEFINING_BINDS = {"GLOBAL", "WEAK", "UNIQUE"}

_DYN_LINE = re.compile(r"^\s*0x[0-9a-f]+\s+\((\w+)\)\s+(.*)$")
_BRACKET = re.compile(r"\[(.*)\]")
_SYM_LINE = re.compile(
    r"^\s*(\d+):\s+([0-9a-f]+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)(?:\s+\[[^\]]*\])?\s+(\S+)(?:\s(.*))?$"
)
_VERDEF_LINE = re.compile(r"Rev: \d+\s+Flags: (.*?)\s+Index: (\d+)\s+Cnt: \d+\s+Name: (\S+)")
_VERNEED_LINE = re.compile(r"Version: \d+\s+File: (\S+)\s+Cnt: \d+")
_VERNAUX_LINE = re.compile(r"Name: (\S+)\s+Flags: (.*?)\s+Version: \d+")


def readelf_path() -> str:
    found = shutil.which("readelf")
    if found is None:
        unavailable("readelf not found (binutils: the oracle for the ELF reader)")
    return found


def run_readelf(path: Path, *args: str) -> str:
    env = dict(os.environ, LC_ALL="C", LANG="C")
    proc = subprocess.run(
        [readelf_path(), "-W", *args, str(path)], capture_output=True, env=env, check=True
    )
    return proc.stdout.decode("utf-8", "surrogateescape")


@dataclass
class Oracle:
    needed: Tuple[str, ...]
    soname: Optional[str]
    rpath: Tuple[str, ...]
    runpath: Tuple[str, ...]
    flags: Optional[int]  # None when readelf printed a flag name not in the tables above
    flags_1: Optional[int]
    interpreter: Optional[str]
    version_needs: List[Tuple[str, Tuple[str, ...], Tuple[str, ...]]]
    version_defs: Tuple[str, ...]
    version_base: Optional[str]
    undefined: Counter[Tuple[str, Optional[str], bool]]
    defined: Set[Tuple[str, Optional[str]]]
    visible: Set[str]


def _flag_bits(text: str, table: Dict[str, int]) -> Optional[int]:
    bits = 0
    for word in text.replace("Flags:", "").split():
        if word not in table:
            return None
        bits |= table[word]
    return bits


def oracle(path: Path, dynamic: bool = False) -> Oracle:
    """readelf's view of ``path``; ``dynamic`` (``-D``) reads the dynamic section's tables, as
    ld.so does, instead of the section headers (then readelf shows no version records)."""
    how = ("-D",) if dynamic else ()
    needed: List[str] = []
    soname = None
    rpath: Tuple[str, ...] = ()
    runpath: Tuple[str, ...] = ()
    flags: Optional[int] = 0
    flags_1: Optional[int] = 0
    for line in run_readelf(path, *how, "-d").splitlines():
        m = _DYN_LINE.match(line)
        if not m:
            continue
        tag, rest = m.groups()
        inner = _BRACKET.search(rest)
        if tag == "NEEDED" and inner:
            needed.append(inner.group(1))
        elif tag == "SONAME" and inner:
            soname = inner.group(1)
        elif tag == "RPATH" and inner:
            rpath = tuple(inner.group(1).split(":"))
        elif tag == "RUNPATH" and inner:
            runpath = tuple(inner.group(1).split(":"))
        elif tag == "FLAGS":
            flags = _flag_bits(rest, DF_NAMES)
        elif tag == "FLAGS_1":
            flags_1 = _flag_bits(rest, DF_1_NAMES)

    interp = None
    m2 = re.search(r"\[Requesting program interpreter: (.*)\]", run_readelf(path, "-l"))
    if m2:
        interp = m2.group(1)

    needs: List[Tuple[str, List[str], List[str]]] = []
    defs: List[str] = []
    base = None
    section = ""
    for line in ([] if dynamic else run_readelf(path, "-V").splitlines()):
        if line.startswith("Version definition section"):
            section = "def"
        elif line.startswith("Version needs section"):
            section = "need"
        elif line.startswith("Version symbols section"):
            section = "sym"
        elif section == "def" and (m3 := _VERDEF_LINE.search(line)):
            if "BASE" in m3.group(1):
                base = base or m3.group(3)
            else:
                defs.append(m3.group(3))
        elif section == "need" and (m4 := _VERNEED_LINE.search(line)):
            needs.append((m4.group(1), [], []))
        elif section == "need" and (m5 := _VERNAUX_LINE.search(line)):
            _file, strong, weak = needs[-1]
            (weak if "WEAK" in m5.group(2) else strong).append(m5.group(1))

    undefined: Counter[Tuple[str, Optional[str], bool]] = Counter()
    defined: Set[Tuple[str, Optional[str]]] = set()
    visible: Set[str] = set()
    for line in run_readelf(path, *how, "-s" if dynamic else "--dyn-syms").splitlines():
        m6 = _SYM_LINE.match(line)
        if not m6 or m6.group(1) == "0":
            continue
        _num, value, _size, typ, bind, vis, ndx, shown = m6.groups()
        # "@V (n)": a version from Elf_Verneed, printed so whatever the hidden bit says
        shown, needed_version = re.subn(r" \(\d+\)$", "", shown or "")
        if bind == "LOCAL" or vis in ("HIDDEN", "INTERNAL"):
            continue
        sym, at, rest = shown.partition("@")
        version: Optional[str] = None
        hidden = False
        if at:
            version = rest[1:] if rest.startswith("@") else rest
            hidden = not rest.startswith("@") and not needed_version
        if ndx == "UND":
            undefined[(sym, version, bind == "WEAK")] += 1
            continue
        if typ not in DEFINING_TYPES or bind not in DEFINING_BINDS:
            continue
        if int(value, 16) == 0 and ndx != "ABS" and typ != "TLS":
            continue
        if version is None and ndx == "ABS" and sym in defs:
            # ld's symbol for a version node (GLIBC_2.34 at version GLIBC_2.34): readelf does
            # not print a version equal to the symbol's own name
            version = sym
        defined.add((sym, version))
        if not hidden:
            visible.add(sym)
    return Oracle(
        needed=tuple(needed), soname=soname, rpath=rpath, runpath=runpath, flags=flags,
        flags_1=flags_1, interpreter=interp,
        version_needs=[(f, tuple(v), tuple(w)) for f, v, w in needs],
        version_defs=tuple(defs), version_base=base, undefined=undefined, defined=defined,
        visible=visible,
    )


def assert_matches_readelf(path: Path) -> ElfFacts:
    facts = _elf.read_elf_facts(path)
    want = oracle(path)
    assert facts.needed == want.needed
    assert facts.soname == want.soname
    assert facts.rpath == want.rpath
    assert facts.runpath == want.runpath
    if want.flags is not None:
        assert facts.flags == want.flags
    if want.flags_1 is not None:
        assert facts.flags_1 == want.flags_1
    assert facts.interpreter == want.interpreter
    assert [(n.file, n.versions, n.weak) for n in facts.version_needs] == want.version_needs
    assert facts.version_defs == want.version_defs
    assert facts.version_base == want.version_base
    assert facts.symbols_read
    assert Counter((u.name, u.version, u.weak) for u in facts.undefined) == want.undefined
    assert facts.defined == want.defined
    assert facts.visible == want.visible
    assert facts.warnings == ()
    # symbols=False gives the same non-symbol facts, and no symbol facts at all
    lean = _elf.read_elf_facts(path, symbols=False)
    assert not lean.symbols_read and lean.undefined == () and lean.defined == frozenset()
    assert replace(lean, mtime_ns=0) == replace(
        facts, mtime_ns=0, undefined=(), defined=frozenset(), visible=frozenset(),
        unversioned=frozenset(), binds_unversioned=frozenset(), has_versym=False,
        symbols_read=False, symbol_count=0,
    )
    with pytest.raises(ValueError, match="symbols=False"):
        lean.defines("x", None)
    return facts


def _is_elf_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def system_lib_dir() -> Optional[Path]:
    arch = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
    for cand in (Path("/lib") / arch, Path("/usr/lib") / arch, Path("/lib64"), Path("/usr/lib64")):
        if (cand / "libc.so.6").is_file():
            return cand
    return None


REQUIRED_SYSTEM = ("libc.so.6", "libstdc++.so.6", "libm.so.6", "libgcc_s.so.1")


def system_sample(n: int = 24) -> List[Path]:
    """The four required libraries plus an evenly spaced pick from the sorted rest."""
    d = system_lib_dir()
    if d is None:
        return []
    chosen = [d / name for name in REQUIRED_SYSTEM if (d / name).is_file()]
    seen = {p.resolve() for p in chosen}
    rest: List[Path] = []
    for p in sorted(d.glob("*.so*")):
        real = p.resolve()
        if real in seen or not real.is_file() or not _is_elf_file(real):
            continue
        seen.add(real)
        rest.append(p)
    step = max(1, len(rest) // max(1, n - len(chosen)))
    chosen += rest[::step][: n - len(chosen)]
    return chosen


def torch_lib_dir() -> Optional[Path]:
    spec = importlib.util.find_spec("torch")  # never imports torch
    for loc in (spec.submodule_search_locations or []) if spec else []:
        d = Path(loc) / "lib"
        if d.is_dir():
            return d
    return None


def torch_libs() -> List[Path]:
    d = torch_lib_dir()
    if d is None:
        return []
    return [p for p in sorted(d.glob("*.so*")) if p.is_file() and _is_elf_file(p)]


SYSTEM_SAMPLE = system_sample() if LINUX else []
TORCH_LIBS = torch_libs() if LINUX else []


@pytest.mark.skipif(not LINUX, reason="system ELF libraries are a Linux thing")
def test_system_sample_is_large_enough() -> None:
    if system_lib_dir() is None:
        unavailable("no multiarch library directory with libc.so.6")
    names = [p.name for p in SYSTEM_SAMPLE]
    assert len(SYSTEM_SAMPLE) >= 20
    for required in REQUIRED_SYSTEM:
        assert required in names


@pytest.mark.parametrize("path", SYSTEM_SAMPLE, ids=[p.name for p in SYSTEM_SAMPLE])
def test_system_library_matches_readelf(path: Path) -> None:
    assert_matches_readelf(path)


@pytest.mark.parametrize(
    "path", TORCH_LIBS or [None], ids=[p.name for p in TORCH_LIBS] or ["no-torch"]
)
def test_torch_library_matches_readelf(path: Optional[Path]) -> None:
    if path is None:
        pytest.skip("torch is not installed in this environment (no torch/lib to compare)")
    facts = assert_matches_readelf(path)
    assert facts.elf_class == 64 and facts.little_endian and facts.type == 3


def test_libc_facts_and_lookups() -> None:
    d = system_lib_dir() if LINUX else None
    if d is None:
        pytest.skip("no glibc libc.so.6 here")
    libc = _elf.read_elf_facts(d / "libc.so.6")
    assert libc.version_base == "libc.so.6" and libc.soname == "libc.so.6"
    assert "GLIBC_2.2.5" in libc.version_defs or "GLIBC_2.17" in libc.version_defs
    assert libc.has_versym
    oldest = libc.version_defs[0]
    # realpath has a hidden old version and a default newer one in every glibc
    assert ("realpath", oldest) in libc.defined
    assert libc.defines("realpath", oldest)
    assert libc.defines("realpath", None)
    assert not libc.defines("realpath", "GLIBC_9.99")
    assert not libc.defines("no_such_function_here", None)
    header = _elf.read_elf_header(d / "libc.so.6")
    assert (header.elf_class, header.little_endian, header.machine, header.osabi, header.type) == (
        libc.elf_class, libc.little_endian, libc.machine, libc.osabi, libc.type
    )
    assert header.size == libc.size and header.ident_error is None


def test_libtorch_cpu_timing() -> None:
    """A loose guard (the measured numbers are far lower: see the module docstring of _elf)."""
    cpu = next((p for p in TORCH_LIBS if p.name == "libtorch_cpu.so"), None)
    if cpu is None:
        pytest.skip("torch (libtorch_cpu.so) is not installed")
    _elf.read_elf_facts(cpu, symbols=False)  # warm the page cache
    t0 = time.perf_counter()
    lean = _elf.read_elf_facts(cpu, symbols=False)
    t1 = time.perf_counter()
    full = _elf.read_elf_facts(cpu)
    t2 = time.perf_counter()
    assert t1 - t0 < 0.5
    assert t2 - t1 < 3.0
    assert full.symbol_count > 10000 and len(full.defined) > 10000
    assert "libc10.so" in lean.needed and lean.runpath == ("$ORIGIN",)


# --------------------------------------------------------------------------------------------
# gcc-built fixtures
# --------------------------------------------------------------------------------------------

VERSIONED_C = """
int impl_sym_v1(void) { return 1; }
int impl_sym_v2(void) { return 2; }
int impl_hidden_v1(void) { return 3; }
int impl_hidden_v2(void) { return 4; }
__asm__(".symver impl_sym_v1,sym@V1");
__asm__(".symver impl_sym_v2,sym@@V2");
__asm__(".symver impl_hidden_v1,hidden_v1@V1");
__asm__(".symver impl_hidden_v2,hidden_v2@V2");
int old_only(void) { return 5; }
int new_only(void) { return 6; }
int newest(void) { return 7; }
int plain_fn(void) { return 8; }
int data_obj = 9;
"""
VERSIONED_MAP = """
V1 { global: old_only; data_obj; local: impl_*; };
V2 { global: new_only; } V1;
V3 { global: newest; } V2;
"""
USER_C = """
extern int sym(void); extern int new_only(void); extern int old_only(void);
extern int plain_fn(void); extern int data_obj;
extern int maybe_missing(void) __attribute__((weak));
int use(void) {
    return sym() + new_only() + old_only() + plain_fn() + data_obj
        + (maybe_missing ? maybe_missing() : 0);
}
"""


def gcc_path() -> str:
    found = shutil.which("gcc")
    if found is None:
        unavailable("gcc not found (needed to build the ELF fixtures)")
    return found


def gcc_build(
    out: Path, name: str, source: str, *args: str, script: Optional[str] = None
) -> Path:
    """``gcc -shared -fPIC -nostdlib`` ``source`` into ``out/name`` (no libc: tiny, exact)."""
    out.mkdir(parents=True, exist_ok=True)
    stem = name.replace(".", "_")
    (out / f"{stem}.c").write_text(source)
    cmd = [gcc_path(), "-shared", "-fPIC", "-nostdlib", "-o", name, f"{stem}.c", *args]
    if script is not None:
        (out / f"{stem}.map").write_text(script)
        cmd.append(f"-Wl,--version-script={stem}.map")
    proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"gcc failed: {' '.join(cmd)}\n{proc.stderr}")
    return out / name


@dataclass
class Fixtures:
    versioned: Path  # libv.so: V1/V2/V3, sym@V1 + sym@@V2, RUNPATH, NODEFLIB, soname libv.so.1
    user: Path  # libuser.so: needs libv.so.1 (sym@V2...), RPATH '/opt/x::$ORIGIN', weak ref
    plain: Path  # libplain.so: no versioning at all
    sysv: Path  # libsysv.so: like libv.so with DT_HASH only
    empty_runpath: Path  # DT_RUNPATH '' (present but empty)


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Fixtures:
    if not LINUX:
        pytest.skip("gcc fixtures are built for the Linux host")
    out = tmp_path_factory.mktemp("elf-fixtures")
    versioned = gcc_build(
        out, "libv.so", VERSIONED_C, "-Wl,-soname,libv.so.1",
        "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib", "-Wl,-z,nodefaultlib", script=VERSIONED_MAP,
    )
    user = gcc_build(
        out, "libuser.so", USER_C, "-L.", "-lv", "-Wl,--disable-new-dtags,-rpath,/opt/x::$ORIGIN"
    )
    plain = gcc_build(out, "libplain.so", "int sym(void) { return 1; }\nint other = 3;\n")
    sysv = gcc_build(
        out, "libsysv.so", VERSIONED_C, "-Wl,--hash-style=sysv", "-Wl,-soname,libsysv.so",
        script=VERSIONED_MAP,
    )
    empty = gcc_build(
        out, "libempty.so", "int f(void) { return 0; }\n", "-Wl,--enable-new-dtags,-rpath,"
    )
    return Fixtures(versioned, user, plain, sysv, empty)


def test_fixture_versioned_library(fixtures: Fixtures) -> None:
    f = assert_matches_readelf(fixtures.versioned)
    assert f.soname == "libv.so.1" and f.version_base == "libv.so.1"
    assert f.runpath == ("$ORIGIN/../lib",) and f.rpath == ()
    assert f.flags_1 & 0x800  # DF_1_NODEFLIB
    assert f.version_defs == ("V1", "V2", "V3")
    assert f.has_versym
    assert {("sym", "V1"), ("sym", "V2"), ("hidden_v1", "V1"), ("hidden_v2", "V2"),
            ("plain_fn", None), ("newest", "V3"), ("data_obj", "V1")} <= f.defined
    assert "hidden_v2" not in f.visible and "hidden_v1" not in f.visible and "sym" in f.visible
    assert f.unversioned == frozenset({"plain_fn"})
    # check_match, version requested
    assert f.defines("sym", "V1")  # hidden, but asked for by version
    assert f.defines("sym", "V2")
    assert not f.defines("sym", "V3")
    assert f.defines("hidden_v2", "V2")
    assert not f.defines("old_only", "V2")  # only old_only@@V1
    assert f.defines("plain_fn", "V2")  # an unversioned definition satisfies any version
    # check_match, unversioned reference: index < 3 wins even if hidden, else one default
    assert f.defines("sym", None)
    assert f.defines("hidden_v1", None)  # hidden, but index 2 (the oldest version)
    assert not f.defines("hidden_v2", None)  # hidden at index 3: never for unversioned refs
    assert f.defines("newest", None)
    assert f.defines("plain_fn", None)
    assert not f.defines("impl_sym_v1", None)  # made local by the version script


def test_fixture_user_library(fixtures: Fixtures) -> None:
    f = assert_matches_readelf(fixtures.user)
    assert f.needed == ("libv.so.1",)
    assert f.rpath == ("/opt/x", "", "$ORIGIN") and f.runpath == ()
    assert f.version_needs == (VersionNeed("libv.so.1", ("V2", "V1"), ()),)
    und = {u.name: u for u in f.undefined}
    assert und["sym"] == UndefinedSymbol("sym", "V2", False, "libv.so.1")
    assert und["old_only"] == UndefinedSymbol("old_only", "V1", False, "libv.so.1")
    assert und["plain_fn"] == UndefinedSymbol("plain_fn", None, False, None)
    assert und["maybe_missing"] == UndefinedSymbol("maybe_missing", None, True, None)
    assert ("use", None) in f.defined
    provider = _elf.read_elf_facts(fixtures.versioned)
    for u in f.undefined:
        assert provider.defines(u.name, u.version) == (u.name != "maybe_missing")


def test_fixture_unversioned_library(fixtures: Fixtures) -> None:
    f = assert_matches_readelf(fixtures.plain)
    assert not f.has_versym and f.version_defs == () and f.version_base is None
    assert f.defined == frozenset({("sym", None), ("other", None)})
    assert f.visible == f.unversioned == f.binds_unversioned == frozenset({"sym", "other"})
    assert f.defines("sym", None) and f.defines("sym", "ANY_VERSION")  # no versym: any
    assert not f.defines("missing", None)


def test_fixture_empty_runpath(fixtures: Fixtures) -> None:
    f = assert_matches_readelf(fixtures.empty_runpath)
    assert f.runpath == ("",)  # present but empty: ld.so then ignores DT_RPATH


def _strip_section_headers(src: Path, dst: Path) -> None:
    blob = bytearray(src.read_bytes())
    assert blob[4] == 2  # ELFCLASS64 (the host fixtures)
    struct.pack_into("<Q", blob, 0x28, 0)  # e_shoff
    struct.pack_into("<HH", blob, 0x3C, 0, 0)  # e_shnum, e_shstrndx
    dst.write_bytes(bytes(blob))


@pytest.mark.parametrize("which", ["versioned", "sysv", "user"])
def test_symbol_count_without_section_headers(
    fixtures: Fixtures, tmp_path: Path, which: str
) -> None:
    """Without SHT_DYNSYM the count comes from DT_GNU_HASH (walked) or DT_HASH (nchain)."""
    src: Path = getattr(fixtures, which)
    dst = tmp_path / src.name
    _strip_section_headers(src, dst)
    a = _elf.read_elf_facts(src)
    b = _elf.read_elf_facts(dst)
    assert b.symbol_count == a.symbol_count > 1
    assert (b.defined, b.undefined, b.visible, b.binds_unversioned) == (
        a.defined, a.undefined, a.visible, a.binds_unversioned
    )
    assert b.warnings == ()


def test_system_library_without_section_headers(tmp_path: Path) -> None:
    d = system_lib_dir() if LINUX else None
    if d is None:
        pytest.skip("no system libraries here")
    for name in ("libgcc_s.so.1", "libm.so.6"):
        src = d / name
        dst = tmp_path / name
        _strip_section_headers(src, dst)
        a, b = _elf.read_elf_facts(src), _elf.read_elf_facts(dst)
        assert b.symbol_count == a.symbol_count and b.defined == a.defined
        assert b.undefined == a.undefined


# --------------------------------------------------------------------------------------------
# glibc's loader as the oracle for ElfFacts.defines
# --------------------------------------------------------------------------------------------

_G = "int g1(void) { return 3; }\nint g2(void) { return 4; }\n"
_V1_V2 = "V1 { global: g1; local: impl*; };\nV2 { global: g2; } V1;\n"
_F = "int f(void) { return 1; }\n"


def _symver(impl: str, target: str) -> str:
    return f"int {impl}(void) {{ return 1; }}\n__asm__(\".symver {impl},{target}\");\n"


#: Providers of ``f`` (all with soname libprov.so): source and version script.
PROVIDERS: Dict[str, Tuple[str, Optional[str]]] = {
    "plain": (_F, None),
    "default_v1": (_F + _G, "V1 { global: f; g1; local: *; };\nV2 { global: g2; } V1;\n"),
    "hidden_v1_default_v2": (_symver("impl1", "f@V1") + _symver("impl2", "f@@V2") + _G, _V1_V2),
    "hidden_v1_only": (_symver("impl1", "f@V1") + _G, _V1_V2),
    "hidden_v2_only": (_symver("impl2", "f@V2") + _G, _V1_V2),
    "unversioned_in_versioned": (_F + _G, "V1 { global: g1; };\nV2 { global: g2; } V1;\n"),
    "missing": (_G, _V1_V2),
}
#: Consumers: which stub provider they were linked against (fixes the reference's version).
CONSUMERS = {"unversioned": "plain", "at_v1": "default_v1", "at_v2": "hidden_v1_default_v2"}
CONSUMER_C = "extern int f(void);\nint call(void) { return f(); }\n"

DLOPEN = """
import ctypes, os, sys
try:
    ctypes.CDLL(sys.argv[1], mode=os.RTLD_NOW)
except OSError as exc:
    print(exc)
    sys.exit(3)
"""


def _glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError, OSError):
        return False


def _versions_ok(consumer: ElfFacts, provider: ElfFacts) -> bool:
    """dl-version.c's match_symbol: a file with no Elf_Verdef accepts every version."""
    if not provider.version_defs and provider.version_base is None:
        return True
    have = set(provider.version_defs) | {provider.version_base}
    return all(v in have for need in consumer.version_needs for v in need.versions)


def test_defines_agrees_with_the_glibc_loader(tmp_path: Path) -> None:
    if not LINUX or not _glibc():
        pytest.skip("needs a glibc Linux host (the oracle is its ld.so)")
    gcc_path()
    providers: Dict[str, Path] = {}
    for name, (source, script) in PROVIDERS.items():
        providers[name] = gcc_build(tmp_path / "prov" / name, "libprov.so", source,
                                    "-Wl,-soname,libprov.so", script=script)
    consumers: Dict[str, Path] = {}
    for name, stub in CONSUMERS.items():
        stub_dir = providers[stub].parent
        consumers[name] = gcc_build(tmp_path / "cons" / name, f"lib{name}.so", CONSUMER_C,
                                    f"-L{stub_dir}", "-lprov", "-Wl,-rpath,$ORIGIN")
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "LD_PRELOAD")}
    outcomes: Dict[Tuple[str, str], bool] = {}
    for cname, cpath in consumers.items():
        consumer = _elf.read_elf_facts(cpath)
        (ref,) = [u for u in consumer.undefined if u.name == "f"]
        assert ref.version == {"unversioned": None, "at_v1": "V1", "at_v2": "V2"}[cname]
        for pname, ppath in providers.items():
            run = tmp_path / "run" / f"{cname}-{pname}"
            run.mkdir(parents=True)
            shutil.copy2(cpath, run / cpath.name)
            shutil.copy2(ppath, run / "libprov.so")
            provider = _elf.read_elf_facts(run / "libprov.so")
            versions_ok = _versions_ok(consumer, provider)
            symbol_ok = provider.defines(ref.name, ref.version)
            # check_match asserts that the file a versioned reference names has a versym table
            aborts = (ref.version is not None and not provider.has_versym
                      and ref.file == "libprov.so")
            proc = subprocess.run([sys.executable, "-c", DLOPEN, str(run / cpath.name)],
                                  capture_output=True, text=True, env=env, check=False)
            loaded = proc.returncode == 0
            outcomes[(cname, pname)] = loaded
            assert loaded == (versions_ok and symbol_ok and not aborts), (cname, pname, proc.stdout)
            if not versions_ok:
                assert "version `" in proc.stdout
            elif aborts:
                assert "check_match: Assertion" in proc.stderr
            elif not symbol_ok:
                assert "undefined symbol: f" in proc.stdout
    # the interesting cells really happened (glibc's rules, not just "is the name there")
    assert outcomes[("unversioned", "hidden_v1_only")]  # index 2 accepted though hidden
    assert not outcomes[("unversioned", "hidden_v2_only")]  # hidden at index 3
    assert outcomes[("at_v2", "unversioned_in_versioned")]  # an unversioned f satisfies f@V2
    assert not outcomes[("at_v2", "default_v1")]  # V2 exists, but f only at V1
    assert not outcomes[("at_v2", "missing")]
    assert not outcomes[("at_v1", "plain")]  # the named file lost its versions: ld.so aborts
    assert outcomes[("at_v1", "hidden_v1_default_v2")]


# --------------------------------------------------------------------------------------------
# Hand-built ELF objects (every class and byte order)
# --------------------------------------------------------------------------------------------

STB_LOCAL, STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE = 0, 1, 2, 10
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_TLS = 0, 1, 2, 3, 6
STV_DEFAULT, STV_INTERNAL, STV_HIDDEN, STV_PROTECTED = 0, 1, 2, 3
SHN_ABS = 0xFFF1
HIDDEN = 0x8000


@dataclass(frozen=True)
class Sym:
    name: str
    defined: bool = True
    bind: int = STB_GLOBAL
    type: int = STT_FUNC
    versym: int = 1
    vis: int = STV_DEFAULT
    value: Optional[int] = None  # default: non-zero when defined
    shndx: Optional[int] = None  # default: 1 when defined, 0 (UND) otherwise


@dataclass(frozen=True)
class Spec:
    elf_class: int = 64
    little: bool = True
    machine: int = 62
    osabi: int = 3  # ELFOSABI_GNU (readelf then names STB_GNU_UNIQUE "UNIQUE")
    e_type: int = 3
    interp: Optional[str] = None
    needed: Tuple[str, ...] = ()
    soname: Optional[str] = None
    rpath: Optional[str] = None
    runpath: Optional[str] = None
    flags: Optional[int] = None
    flags_1: Optional[int] = None
    #: (file, ((version, vna_other, vna_flags), ...)) per Elf_Verneed
    verneed: Tuple[Tuple[str, Tuple[Tuple[str, int, int], ...]], ...] = ()
    #: (name, vd_ndx, vd_flags) per Elf_Verdef
    verdef: Tuple[Tuple[str, int, int], ...] = ()
    symbols: Tuple[Sym, ...] = ()
    hash: str = "gnu"  # gnu | sysv | sections (an SHT_DYNSYM section, no hash) | none
    versym_table: bool = True
    gnu_stack: Optional[int] = 6  # PF_R | PF_W
    tls_size: int = 0
    base: int = 0x10000  # virtual address of file offset 0


@dataclass
class Built:
    blob: bytes
    fields: Dict[str, Tuple[int, int]]  # name -> (file offset, width in bytes)


def elf_hash(name: bytes) -> int:
    h = 0
    for c in name:
        h = (h << 4) + c
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


def gnu_hash(name: bytes) -> int:
    h = 5381
    for c in name:
        h = (h * 33 + c) & 0xFFFFFFFF
    return h


def build_elf(spec: Spec) -> Built:
    """A minimal but complete ET_DYN: one PT_LOAD over the whole file at ``spec.base``."""
    is64 = spec.elf_class == 64
    e = "<" if spec.little else ">"
    addr = "Q" if is64 else "I"
    ehsize, phsize, shsize, dynsize = (64, 56, 64, 16) if is64 else (52, 32, 40, 8)
    symsize = 24 if is64 else 16
    out = bytearray()
    fields: Dict[str, Tuple[int, int]] = {}
    word = 8 if is64 else 4

    def align(n: int) -> None:
        out.extend(b"\0" * (-len(out) % n))

    strtab = bytearray(b"\0")
    stroff: Dict[str, int] = {"": 0}

    def s(text: str) -> int:
        if text not in stroff:
            stroff[text] = len(strtab)
            strtab.extend(text.encode() + b"\0")
        return stroff[text]

    for text in (*spec.needed, spec.soname, spec.rpath, spec.runpath):
        if text is not None:
            s(text)
    for file, auxes in spec.verneed:
        s(file)
        for name, _o, _f in auxes:
            s(name)
    for name, _n, _f in spec.verdef:
        s(name)
    for sym in spec.symbols:
        s(sym.name)

    phdrs = ["load", "dynamic"] + (["interp"] if spec.interp else [])
    phdrs += (["stack"] if spec.gnu_stack is not None else []) + (["tls"] if spec.tls_size else [])
    out.extend(b"\0" * (ehsize + len(phdrs) * phsize))
    interp_off = len(out)
    if spec.interp:
        out.extend(spec.interp.encode() + b"\0")
    strtab_off = len(out)
    out.extend(strtab)

    align(8)
    symtab_off = len(out)
    syms = (Sym("", defined=False, bind=STB_LOCAL, type=STT_NOTYPE, versym=0),) + spec.symbols
    for i, sym in enumerate(syms):
        value = sym.value if sym.value is not None else (0x1000 + 16 * i if sym.defined else 0)
        shndx = sym.shndx if sym.shndx is not None else (1 if sym.defined else 0)
        info = (sym.bind << 4) | sym.type
        fields[f"st_name.{i}"] = (len(out), 4)
        if is64:
            out.extend(struct.pack(e + "IBBHQQ", stroff[sym.name], info, sym.vis, shndx, value, 8))
        else:
            out.extend(struct.pack(e + "IIIBBH", stroff[sym.name], value, 8, info, sym.vis, shndx))
    nsyms = len(syms)

    versym_off = len(out)
    has_versions = bool(spec.verneed or spec.verdef)
    if has_versions and spec.versym_table:
        for sym in syms:
            out.extend(struct.pack(e + "H", sym.versym))

    align(4)
    verneed_off = len(out)
    for i, (file, auxes) in enumerate(spec.verneed):
        last = i == len(spec.verneed) - 1
        fields[f"vn_version.{i}"] = (len(out), 2)
        fields[f"vn_cnt.{i}"] = (len(out) + 2, 2)
        fields[f"vn_aux.{i}"] = (len(out) + 8, 4)
        fields[f"vn_next.{i}"] = (len(out) + 12, 4)
        out.extend(struct.pack(e + "HHIII", 1, len(auxes), stroff[file], 16,
                               0 if last else 16 + 16 * len(auxes)))
        for j, (name, other, flags) in enumerate(auxes):
            fields[f"vna_name.{i}.{j}"] = (len(out) + 8, 4)
            fields[f"vna_next.{i}.{j}"] = (len(out) + 12, 4)
            out.extend(struct.pack(e + "IHHII", elf_hash(name.encode()), flags, other,
                                   stroff[name], 0 if j == len(auxes) - 1 else 16))

    align(4)
    verdef_off = len(out)
    for i, (name, ndx, flags) in enumerate(spec.verdef):
        last = i == len(spec.verdef) - 1
        fields[f"vd_version.{i}"] = (len(out), 2)
        fields[f"vd_aux.{i}"] = (len(out) + 12, 4)
        fields[f"vd_next.{i}"] = (len(out) + 16, 4)
        out.extend(struct.pack(e + "HHHHIII", 1, flags, ndx, 1, elf_hash(name.encode()), 20,
                               0 if last else 28))
        out.extend(struct.pack(e + "II", stroff[name], 0))

    align(8)
    hash_off = len(out)
    if spec.hash == "sysv":
        fields["hash.nbucket"] = (len(out), 4)
        fields["hash.nchain"] = (len(out) + 4, 4)
        out.extend(struct.pack(e + "II", 1, nsyms))
        out.extend(struct.pack(e + "I", nsyms - 1))  # the one bucket
        out.extend(struct.pack(e + f"{nsyms}I", *[max(0, i - 1) for i in range(nsyms)]))
    elif spec.hash == "gnu":
        fields["gnu.nbuckets"] = (len(out), 4)
        fields["gnu.symoffset"] = (len(out) + 4, 4)
        fields["gnu.bloom_size"] = (len(out) + 8, 4)
        out.extend(struct.pack(e + "IIII", 1, 1, 1, 6))
        out.extend(b"\xff" * word)  # the bloom filter lets everything through
        fields["gnu.bucket"] = (len(out), 4)
        out.extend(struct.pack(e + "I", 1 if nsyms > 1 else 0))
        for i in range(1, nsyms):
            h = gnu_hash(syms[i].name.encode()) & ~1
            fields[f"gnu.chain.{i}"] = (len(out), 4)
            out.extend(struct.pack(e + "I", h | (1 if i == nsyms - 1 else 0)))

    def va(off: int) -> int:
        return spec.base + off

    dyn: List[Tuple[str, int, int]] = [
        (f"DT_NEEDED.{i}", 1, stroff[n]) for i, n in enumerate(spec.needed)
    ]
    if spec.soname is not None:
        dyn.append(("DT_SONAME", 14, stroff[spec.soname]))
    if spec.rpath is not None:
        dyn.append(("DT_RPATH", 15, stroff[spec.rpath]))
    if spec.runpath is not None:
        dyn.append(("DT_RUNPATH", 29, stroff[spec.runpath]))
    dyn += [("DT_STRTAB", 5, va(strtab_off)), ("DT_STRSZ", 10, len(strtab)),
            ("DT_SYMTAB", 6, va(symtab_off)), ("DT_SYMENT", 11, symsize)]
    if spec.hash == "sysv":
        dyn.append(("DT_HASH", 4, va(hash_off)))
    elif spec.hash == "gnu":
        dyn.append(("DT_GNU_HASH", 0x6FFFFEF5, va(hash_off)))
    if has_versions and spec.versym_table:
        dyn.append(("DT_VERSYM", 0x6FFFFFF0, va(versym_off)))
    if spec.verneed:
        dyn += [("DT_VERNEED", 0x6FFFFFFE, va(verneed_off)),
                ("DT_VERNEEDNUM", 0x6FFFFFFF, len(spec.verneed))]
    if spec.verdef:
        dyn += [("DT_VERDEF", 0x6FFFFFFC, va(verdef_off)),
                ("DT_VERDEFNUM", 0x6FFFFFFD, len(spec.verdef))]
    if spec.flags is not None:
        dyn.append(("DT_FLAGS", 30, spec.flags))
    if spec.flags_1 is not None:
        dyn.append(("DT_FLAGS_1", 0x6FFFFFFB, spec.flags_1))
    dyn.append(("DT_NULL", 0, 0))
    align(8)
    dynamic_off = len(out)
    for name, tag, value in dyn:
        fields[f"{name}.tag"] = (len(out), word)
        fields[name] = (len(out) + word, word)
        out.extend(struct.pack(e + addr + addr, tag, value))

    shoff = shnum = 0
    if spec.hash == "sections":
        align(8)
        shoff, shnum = len(out), 2
        out.extend(b"\0" * shsize)  # SHN_UNDEF
        fields["sh.dynsym.size"] = (len(out) + (32 if is64 else 20), word)
        if is64:
            out.extend(struct.pack(e + "IIQQQQIIQQ", 0, 11, 2, va(symtab_off), symtab_off,
                                   nsyms * symsize, 0, 1, 8, symsize))
        else:
            out.extend(struct.pack(e + "IIIIIIIIII", 0, 11, 2, va(symtab_off), symtab_off,
                                   nsyms * symsize, 0, 1, 4, symsize))
    size = len(out)

    ei = [2 if is64 else 1, 1 if spec.little else 2, 1, spec.osabi]
    ident = b"\x7fELF" + bytes(ei) + b"\0" * 8
    fields["e_phoff"] = (0x20 if is64 else 0x1C, word)
    fields["e_shoff"] = (0x28 if is64 else 0x20, word)
    fields["e_phnum"] = (0x38 if is64 else 0x2C, 2)
    fields["e_shnum"] = (0x3C if is64 else 0x30, 2)
    struct.pack_into(e + "16sHHI" + addr * 3 + "IHHHHHH", out, 0, ident, spec.e_type,
                     spec.machine, 1, 0, ehsize, shoff, 0, ehsize, phsize, len(phdrs), shsize,
                     shnum, 0)
    segs = {
        "load": (1, 5, 0, va(0), size, size, 0x1000),
        "dynamic": (2, 6, dynamic_off, va(dynamic_off), dynsize * len(dyn), dynsize * len(dyn),
                    word),
        "interp": (3, 4, interp_off, va(interp_off), len(spec.interp or "") + 1,
                   len(spec.interp or "") + 1, 1),
        "stack": (0x6474E551, spec.gnu_stack or 0, 0, 0, 0, 0, 16),
        "tls": (7, 4, 0, va(0), 0, spec.tls_size, 8),
    }
    for i, kind in enumerate(phdrs):
        p_type, p_flags, off, vaddr, filesz, memsz, p_align = segs[kind]
        at = ehsize + i * phsize
        if is64:
            struct.pack_into(e + "IIQQQQQQ", out, at, p_type, p_flags, off, vaddr, vaddr, filesz,
                             memsz, p_align)
            fields[f"{kind}.p_offset"] = (at + 8, 8)
            fields[f"{kind}.p_vaddr"] = (at + 16, 8)
            fields[f"{kind}.p_filesz"] = (at + 32, 8)
        else:
            struct.pack_into(e + "IIIIIIII", out, at, p_type, off, vaddr, vaddr, filesz, memsz,
                             p_flags, p_align)
            fields[f"{kind}.p_offset"] = (at + 4, 4)
            fields[f"{kind}.p_vaddr"] = (at + 8, 4)
            fields[f"{kind}.p_filesz"] = (at + 16, 4)
    return Built(bytes(out), fields)


#: A spec that exercises every symbol rule (versions: base 1, verneed 2 and 5, verdef 3 and 4).
RICH = Spec(
    interp="/lib/ld-test.so.1",
    needed=("libc.so.6", "libm.so.6", "libc.so.6"),
    soname="libhand.so.1",
    rpath="/r1:$ORIGIN/r2",
    runpath=":$LIB/x:",
    flags=0x8,
    flags_1=0x801,
    verneed=(("libc.so.6", (("GLIBC_2.0", 2, 0),)), ("libm.so.6", (("GLIBC_2.1", 5, 2),))),
    verdef=(("libhand.so.1", 1, 1), ("HAND_1", 3, 0), ("HAND_2", 4, 0)),
    symbols=(
        Sym("puts", defined=False, versym=2),
        Sym("maybe", defined=False, bind=STB_WEAK, versym=0),
        Sym("hidden_ref", defined=False, vis=STV_HIDDEN),
        Sym("local_thing", bind=STB_LOCAL),
        Sym("api", versym=4),
        Sym("api", versym=3 | HIDDEN),
        Sym("old", versym=3 | HIDDEN),
        Sym("plain", versym=1),
        Sym("zero", value=0),
        Sym("absval", value=0, shndx=SHN_ABS, type=STT_OBJECT),
        Sym("tlsvar", value=0, type=STT_TLS),
        Sym("sect", type=STT_SECTION),
        Sym("uniq", bind=STB_GNU_UNIQUE, type=STT_OBJECT, versym=4),
        Sym("prot", vis=STV_PROTECTED),
        Sym("hid", vis=STV_HIDDEN),
        Sym("two", versym=3),
        Sym("two", versym=4),
        Sym("copyrel", versym=2, type=STT_OBJECT),
        Sym("weakdef", bind=STB_WEAK, versym=4),
        Sym("gap", versym=9),
        Sym("mathref", defined=False, versym=5),
    ),
    tls_size=0x40,
)

RICH_DEFINED = frozenset({
    ("api", "HAND_2"), ("api", "HAND_1"), ("old", "HAND_1"), ("plain", None), ("absval", None),
    ("tlsvar", None), ("uniq", "HAND_2"), ("prot", None), ("two", "HAND_1"), ("two", "HAND_2"),
    ("copyrel", "GLIBC_2.0"), ("weakdef", "HAND_2"), ("gap", None),
})
RICH_UNDEFINED = (
    UndefinedSymbol("puts", "GLIBC_2.0", False, "libc.so.6"),
    UndefinedSymbol("maybe", None, True, None),
    UndefinedSymbol("mathref", "GLIBC_2.1", False, "libm.so.6"),
)
CLASSES = [(64, True), (64, False), (32, True), (32, False)]


def write(tmp: Path, blob: bytes, name: str = "t.so") -> Path:
    path = tmp / name
    path.write_bytes(blob)
    return path


@pytest.mark.parametrize("hash_style", ["gnu", "sysv", "sections"])
@pytest.mark.parametrize("elf_class,little", CLASSES, ids=["64le", "64be", "32le", "32be"])
def test_hand_built_every_class_and_byte_order(
    tmp_path: Path, elf_class: int, little: bool, hash_style: str
) -> None:
    spec = replace(RICH, elf_class=elf_class, little=little, machine=20, hash=hash_style)
    path = write(tmp_path, build_elf(spec).blob)
    f = _elf.read_elf_facts(path)
    assert (f.elf_class, f.little_endian, f.machine, f.type) == (elf_class, little, 20, 3)
    assert f.interpreter == "/lib/ld-test.so.1"
    assert f.needed == ("libc.so.6", "libm.so.6", "libc.so.6")
    assert f.soname == "libhand.so.1"
    assert f.rpath == ("/r1", "$ORIGIN/r2")
    assert f.runpath == ("", "$LIB/x", "")
    assert (f.flags, f.flags_1) == (0x8, 0x801)
    assert f.version_needs == (VersionNeed("libc.so.6", ("GLIBC_2.0",), ()),
                               VersionNeed("libm.so.6", (), ("GLIBC_2.1",)))
    assert f.version_defs == ("HAND_1", "HAND_2") and f.version_base == "libhand.so.1"
    assert f.symbol_count == len(RICH.symbols) + 1
    assert f.has_versym
    assert f.undefined == RICH_UNDEFINED
    assert f.defined == RICH_DEFINED
    assert f.visible == {n for n, _v in RICH_DEFINED} - {"old"}
    assert f.unversioned == {"plain", "absval", "tlsvar", "prot", "gap"}
    assert f.binds_unversioned == {"plain", "absval", "tlsvar", "prot", "copyrel", "api", "uniq",
                                   "weakdef", "gap"}
    assert f.exec_stack is False and f.tls_size == 0x40
    assert any("versym index 9" in w for w in f.warnings)
    # check_match
    assert not f.defines("old", None) and f.defines("old", "HAND_1")
    assert not f.defines("old", "HAND_2")
    assert not f.defines("two", None)  # two non-hidden versions: ambiguous, not found
    assert f.defines("two", "HAND_1") and f.defines("two", "HAND_2")
    assert f.defines("copyrel", None)  # index 2
    assert f.defines("plain", "WHATEVER") and f.defines("gap", "WHATEVER")
    assert not f.defines("api", "HAND_3") and not f.defines("zero", None)
    assert not f.defines("hid", None) and not f.defines("sect", None)
    assert not f.defines("local_thing", None) and not f.defines("puts", None)

    head = _elf.read_elf_header(path)
    assert (head.elf_class, head.little_endian, head.machine, head.type, head.osabi) == (
        elf_class, little, 20, 3, 3)
    assert head.size == path.stat().st_size and head.ident_error is None


@pytest.mark.parametrize("hash_style", ["gnu", "sysv"])
def test_hand_built_matches_readelf(tmp_path: Path, hash_style: str) -> None:
    """readelf -D (the dynamic section's view) agrees with the reader on the hand-built
    objects: the builder is right, for every class and byte order."""
    if not LINUX:
        pytest.skip("binutils oracle runs on Linux")
    readelf_path()
    for elf_class, little in CLASSES:
        spec = replace(RICH, elf_class=elf_class, little=little, hash=hash_style,
                       symbols=tuple(s for s in RICH.symbols if s.name != "gap"))
        path = write(tmp_path, build_elf(spec).blob, f"h{elf_class}{little}.so")
        want = oracle(path, dynamic=True)
        f = _elf.read_elf_facts(path)
        assert f.needed == want.needed and f.soname == want.soname
        assert f.rpath == want.rpath and f.runpath == want.runpath
        assert (f.flags, f.flags_1) == (want.flags, want.flags_1)
        assert Counter((u.name, u.version, u.weak) for u in f.undefined) == want.undefined
        assert f.defined == want.defined and f.visible == want.visible
        assert f.warnings == ()


def test_hand_built_without_hash_or_versym(tmp_path: Path) -> None:
    no_hash = _elf.read_elf_facts(write(tmp_path, build_elf(replace(RICH, hash="none")).blob))
    assert no_hash.symbol_count == 0 and no_hash.defined == frozenset()
    assert any("not counted" in w for w in no_hash.warnings)
    assert no_hash.needed == RICH.needed  # everything else is still there

    no_versym = _elf.read_elf_facts(
        write(tmp_path, build_elf(replace(RICH, versym_table=False)).blob, "nv.so"))
    assert not no_versym.has_versym
    assert any("no DT_VERSYM" in w for w in no_versym.warnings)
    assert all(v is None for _n, v in no_versym.defined)
    assert no_versym.defines("old", None) and no_versym.defines("old", "ANY")
    assert all(u.version is None for u in no_versym.undefined)


def test_versym_ignored_without_version_records(tmp_path: Path) -> None:
    """glibc builds l_versyms only when some version index exists (ndx_high > 0)."""
    spec = replace(RICH, verneed=(), verdef=(("libhand.so.1", 1, 1),))
    f = _elf.read_elf_facts(write(tmp_path, build_elf(spec).blob))
    assert f.version_base == "libhand.so.1" and f.version_defs == ()
    assert f.has_versym  # the base definition alone makes ndx_high 1
    assert ("old", None) in f.defined  # index 3 now names nothing: unversioned
    assert not f.defines("old", "HAND_1")  # hidden bit still set on it


def test_gnu_hash_with_unhashed_symbols(tmp_path: Path) -> None:
    built = build_elf(RICH)
    blob = bytearray(built.blob)
    n = len(RICH.symbols) + 1
    off, _w = built.fields["gnu.symoffset"]
    struct.pack_into("<I", blob, off, n)  # nothing hashed: count is symoffset
    struct.pack_into("<I", blob, built.fields["gnu.bucket"][0], 0)
    f = _elf.read_elf_facts(write(tmp_path, bytes(blob)))
    assert f.symbol_count == n and f.defined == RICH_DEFINED


def test_no_dynamic_section(tmp_path: Path) -> None:
    built = build_elf(Spec())
    blob = bytearray(built.blob)
    off, _w = built.fields["e_phnum"]
    struct.pack_into("<H", blob, off, 1)  # only PT_LOAD remains
    f = _elf.read_elf_facts(write(tmp_path, bytes(blob)))
    assert f.needed == () and f.soname is None and f.symbols_read
    assert any("statically linked" in w for w in f.warnings)


# --------------------------------------------------------------------------------------------
# Header reasons (glibc's wording)
# --------------------------------------------------------------------------------------------


def header_reason(tmp: Path, blob: bytes) -> str:
    path = write(tmp, blob, "h.so")
    with pytest.raises(InvalidImageError) as info:
        _elf.read_elf_header(path)
    with pytest.raises(InvalidImageError) as info2:
        _elf.read_elf_facts(path)
    assert info.value.reason == info2.value.reason
    assert info.value.path == str(path)
    assert not _elf.is_elf(path) or blob.startswith(b"\x7fELF")
    return info.value.reason


def test_header_reasons(tmp_path: Path) -> None:
    good = build_elf(Spec()).blob
    assert header_reason(tmp_path, b"") == "file too short (empty file)"
    assert header_reason(tmp_path, b"\x7fEL").startswith("file too short")
    assert header_reason(tmp_path, good[:40]).startswith("file too short")
    assert header_reason(tmp_path, b"hello world, not an ELF file") == "invalid ELF header"
    assert "linker script" in header_reason(tmp_path, b"/* GNU ld script\n GROUP ( x ) */\n")
    assert "PE image" in header_reason(tmp_path, b"MZ" + b"\0" * 100)
    assert "Git LFS" in header_reason(tmp_path, b"version https://git-lfs.github.com/spec/v1\n")
    assert "invalid ELF class" in header_reason(tmp_path, good[:4] + b"\x03" + good[5:])
    assert "invalid ELF data encoding" in header_reason(tmp_path, good[:5] + b"\x00" + good[6:])
    assert header_reason(tmp_path, good[:6] + b"\x02" + good[7:]) == (
        "ELF file version ident does not match current one")
    bad_version = bytearray(good)
    struct.pack_into("<I", bad_version, 20, 2)
    assert header_reason(tmp_path, bytes(bad_version)) == (
        "ELF file version does not match current one")
    bad_phentsize = bytearray(good)
    struct.pack_into("<H", bad_phentsize, 54, 32)
    assert header_reason(tmp_path, bytes(bad_phentsize)) == (
        "ELF file's phentsize not the expected size")


@pytest.mark.parametrize(
    "osabi,patch,expected",
    [(0, (7, 9), "ELF file OS ABI invalid"), (0, (8, 1), "ELF file ABI version invalid"),
     (0, (12, 1), "nonzero padding in e_ident"), (0, (7, 3), None), (3, (8, 2), None),
     (3, (15, 7), "nonzero padding in e_ident")],
)
def test_ident_errors_are_reported_not_raised(
    tmp_path: Path, osabi: int, patch: Tuple[int, int], expected: Optional[str]
) -> None:
    blob = bytearray(build_elf(Spec(osabi=osabi)).blob)
    blob[patch[0]] = patch[1]
    path = write(tmp_path, bytes(blob))
    assert _elf.read_elf_header(path).ident_error == expected
    assert _elf.read_elf_facts(path).ident_error == expected


def test_header_reads_only_the_header(tmp_path: Path) -> None:
    """A valid header whose program headers are cut off: fine for the header, truncated for
    the full reader."""
    blob = build_elf(Spec(elf_class=32, little=False, machine=8)).blob[:64]
    path = write(tmp_path, blob)
    head = _elf.read_elf_header(path)
    assert (head.elf_class, head.little_endian, head.machine) == (32, False, 8)
    with pytest.raises(InvalidImageError, match="truncated"):
        _elf.read_elf_facts(path)


def test_other_machine_and_class_are_not_errors(tmp_path: Path) -> None:
    for cls, little, machine in ((32, True, 3), (64, False, 43), (32, False, 20)):
        f = _elf.read_elf_facts(write(tmp_path, build_elf(
            Spec(elf_class=cls, little=little, machine=machine, needed=("libx.so",))).blob))
        assert (f.elf_class, f.little_endian, f.machine, f.needed) == (cls, little, machine,
                                                                        ("libx.so",))


# --------------------------------------------------------------------------------------------
# Files that cannot be read, consistent with _pe
# --------------------------------------------------------------------------------------------


def os_reason(path: Path) -> str:
    with pytest.raises(InvalidImageError) as a:
        _elf.read_elf_facts(path)
    with pytest.raises(InvalidImageError) as b:
        _elf.read_elf_header(path)
    with pytest.raises(InvalidImageError) as c:
        _pe.read_machine(path)
    assert a.value.reason == b.value.reason == c.value.reason
    assert not _elf.is_elf(path)
    return a.value.reason


def test_missing_file(tmp_path: Path) -> None:
    assert os_reason(tmp_path / "nope.so") == "no such file"


def test_directory(tmp_path: Path) -> None:
    assert os_reason(tmp_path) == "is a directory"


def test_path_through_a_file(tmp_path: Path) -> None:
    f = write(tmp_path, b"x", "file")
    reason = os_reason(f / "child.so")  # the same reason as _pe's, everywhere
    if os.name == "posix":
        assert reason == "a component of the path is not a directory"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_is_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.so"
    os.mkfifo(fifo)
    assert os_reason(fifo) == "not a regular file"  # and it did not block


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no unix sockets here")
def test_socket_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "s.so"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(path))
    except OSError:
        pytest.skip("cannot bind a unix socket here")
    try:
        assert os_reason(path) in ("not a regular file", "cannot read the file (ENXIO)")
    finally:
        sock.close()


def test_permission_denied(tmp_path: Path) -> None:
    if not hasattr(os, "geteuid") or os.geteuid() == 0:
        pytest.skip("root (or no POSIX permissions): every file is readable")
    path = write(tmp_path, build_elf(Spec()).blob)
    path.chmod(0)
    try:
        assert os_reason(path) == "permission denied"
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_is_elf(tmp_path: Path) -> None:
    assert _elf.is_elf(write(tmp_path, build_elf(Spec()).blob))
    assert _elf.is_elf(write(tmp_path, b"\x7fELF", "just-magic"))  # magic only: still "ELF"
    assert not _elf.is_elf(write(tmp_path, b"", "empty"))
    assert not _elf.is_elf(write(tmp_path, b"MZ\0\0", "pe"))
    assert not _elf.is_elf(tmp_path)
    assert not _elf.is_elf(tmp_path / "missing")
    assert not _elf.is_elf(str(tmp_path / "nul\0byte"))


def test_pathlike_and_str_paths(tmp_path: Path) -> None:
    path = write(tmp_path, build_elf(Spec(needed=("a.so",))).blob)
    assert _elf.read_elf_facts(str(path)).needed == _elf.read_elf_facts(path).needed == ("a.so",)
    assert _elf.read_elf_facts(path).path == str(path)


# --------------------------------------------------------------------------------------------
# Corrupt and truncated input
# --------------------------------------------------------------------------------------------


def reason_of(tmp: Path, blob: bytes) -> str:
    path = write(tmp, blob, "bad.so")
    with pytest.raises(InvalidImageError) as info:
        _elf.read_elf_facts(path)
    assert not info.value.reason.startswith("malformed"), info.value.reason
    return info.value.reason


def patched(built: Built, field: str, value: int, little: bool = True) -> bytes:
    off, width = built.fields[field]
    blob = bytearray(built.blob)
    blob[off : off + width] = value.to_bytes(width, "little" if little else "big")
    return bytes(blob)


def test_bad_verneed_and_verdef_versions(tmp_path: Path) -> None:
    built = build_elf(RICH)
    assert reason_of(tmp_path, patched(built, "vn_version.1", 2)) == (
        "unsupported version 2 of Verneed record")
    assert reason_of(tmp_path, patched(built, "vd_version.0", 0)) == (
        "unsupported version 0 of Verdef record")


def test_string_offsets_outside_strtab(tmp_path: Path) -> None:
    built = build_elf(RICH)
    assert "DT_NEEDED string offset" in reason_of(tmp_path, patched(built, "DT_NEEDED.1", 1 << 20))
    assert "DT_SONAME string offset" in reason_of(tmp_path, patched(built, "DT_SONAME", 1 << 20))
    # a symbol whose name is out of range is skipped with a warning
    f = _elf.read_elf_facts(write(tmp_path, patched(built, "st_name.5", 1 << 20)))
    assert ("api", "HAND_2") not in f.defined and ("api", "HAND_1") in f.defined
    assert any("outside DT_STRTAB" in w for w in f.warnings)


def test_tables_outside_the_segments(tmp_path: Path) -> None:
    built = build_elf(RICH)
    assert "outside every PT_LOAD segment" in reason_of(
        tmp_path, patched(built, "DT_STRTAB", 0x7000_0000))
    assert "outside every PT_LOAD" in reason_of(tmp_path, patched(built, "DT_VERNEED", 0x10))
    sysv = build_elf(replace(RICH, hash="sysv"))
    assert "runs past" in reason_of(tmp_path, patched(sysv, "hash.nchain", 0xFFFF))
    assert "dynamic symbols" in reason_of(tmp_path, patched(sysv, "hash.nchain", 0xFFFFFFFF))
    assert "runs past" in reason_of(
        tmp_path, patched(build_elf(replace(RICH, hash="sections")), "sh.dynsym.size", 1 << 20))


def test_gnu_hash_chain_without_end(tmp_path: Path) -> None:
    """A chain whose last word lacks the end bit runs to the end of the segment's file data."""
    built = build_elf(RICH)
    last = len(RICH.symbols)
    blob = patched(built, f"gnu.chain.{last}", 0x1234_5678)  # bit 0 clear: the chain runs on
    dyn_off = int.from_bytes(blob[slice(*_span(built, "dynamic.p_offset"))], "little")
    # the segment's file data now ends where the dynamic section starts (read at its offset)
    blob = _patch(blob, built, "load.p_filesz", dyn_off)
    reason = reason_of(tmp_path, blob)
    assert "DT_GNU_HASH chain" in reason
    far = patched(built, "gnu.bucket", 0xFFFF_FF00)
    assert "DT_GNU_HASH chain" in reason_of(tmp_path, far)


def _span(built: Built, field: str) -> Tuple[int, int]:
    off, width = built.fields[field]
    return off, off + width


def _patch(blob: bytes, built: Built, field: str, value: int) -> bytes:
    off, width = built.fields[field]
    out = bytearray(blob)
    out[off : off + width] = value.to_bytes(width, "little")
    return bytes(out)


def test_dynamic_without_null(tmp_path: Path) -> None:
    built = build_elf(Spec(needed=("a.so",)))
    off, width = built.fields["DT_NULL.tag"]
    blob = bytearray(built.blob)
    blob[off : off + width] = (11).to_bytes(width, "little")  # DT_SYMENT instead of DT_NULL
    f = _elf.read_elf_facts(write(tmp_path, bytes(blob)))
    assert f.needed == ("a.so",)
    assert any("DT_NULL" in w for w in f.warnings)


def test_chain_count_disagreements_are_warnings(tmp_path: Path) -> None:
    built = build_elf(RICH)
    f = _elf.read_elf_facts(write(tmp_path, patched(built, "DT_VERNEEDNUM", 7)))
    assert any("DT_VERNEEDNUM is 7" in w for w in f.warnings)
    f = _elf.read_elf_facts(write(tmp_path, patched(built, "vn_cnt.0", 3)))
    assert any("vn_cnt 3" in w for w in f.warnings)
    assert f.version_needs == (VersionNeed("libc.so.6", ("GLIBC_2.0",), ()),
                               VersionNeed("libm.so.6", (), ("GLIBC_2.1",)))


def test_bounds_are_enforced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = build_elf(RICH)
    path = write(tmp_path, built.blob)
    monkeypatch.setattr(_elf, "MAX_VERNAUX", 1)
    assert "more than 1 Elf_Vernaux" in reason_of(tmp_path, built.blob)
    monkeypatch.setattr(_elf, "MAX_VERNAUX", 1 << 16)
    monkeypatch.setattr(_elf, "MAX_VERNEED", 1)
    assert "more than 1 Elf_Verneed" in reason_of(tmp_path, built.blob)
    monkeypatch.setattr(_elf, "MAX_VERNEED", 4096)
    monkeypatch.setattr(_elf, "MAX_VERDEF", 2)
    assert "more than 2 Elf_Verdef" in reason_of(tmp_path, built.blob)
    monkeypatch.setattr(_elf, "MAX_VERDEF", 1 << 15)
    monkeypatch.setattr(_elf, "MAX_SYMBOLS", 5)
    assert "more than 5 dynamic symbols" in reason_of(tmp_path, built.blob)
    monkeypatch.setattr(_elf, "MAX_SYMBOLS", 1 << 24)
    monkeypatch.setattr(_elf, "MAX_NAME", 4)
    f = _elf.read_elf_facts(path)
    assert f.needed[0] == "libc" and any("longer than 4 bytes" in w for w in f.warnings)
    assert ("api", "HAND") in f.defined and ("weak", "HAND") in f.defined  # cut names
    monkeypatch.setattr(_elf, "MAX_NAME", 1 << 16)
    monkeypatch.setattr(_elf, "MAX_DYNAMIC", 3)
    assert "more than 3 entries" in reason_of(tmp_path, built.blob)


def test_warnings_are_capped(tmp_path: Path) -> None:
    syms = tuple(Sym(f"s{i}", versym=100 + i) for i in range(200))
    spec = replace(RICH, symbols=syms)
    built = build_elf(spec)
    blob = bytearray(built.blob)
    for i in range(1, 201):  # every name offset out of range: one warning each
        off, _w = built.fields[f"st_name.{i}"]
        struct.pack_into("<I", blob, off, 1 << 20)
    f = _elf.read_elf_facts(write(tmp_path, bytes(blob)))
    assert len(f.warnings) == _elf.MAX_WARNINGS
    assert f.warnings[-1].startswith("... and ")


def test_unterminated_last_string(tmp_path: Path) -> None:
    built = build_elf(Spec(soname="abc"))
    blob = patched(built, "DT_STRSZ", 4)  # "\0abc" without its NUL
    f = _elf.read_elf_facts(write(tmp_path, blob))
    assert f.soname == "abc" and any("NUL-terminated" in w for w in f.warnings)


def _truncation_points(size: int, extra: Sequence[int], step: int) -> List[int]:
    return sorted({p for p in [*range(0, size, step), *extra] if 0 <= p < size})


def assert_truncations_raise(tmp: Path, blob: bytes, points: Sequence[int]) -> None:
    path = tmp / "cut.so"
    for n in points:
        path.write_bytes(blob[:n])
        with pytest.raises(InvalidImageError) as info:
            _elf.read_elf_facts(path)
        reason = info.value.reason
        assert "truncated" in reason or "too short" in reason, (n, reason)


@pytest.mark.parametrize("elf_class,little", CLASSES, ids=["64le", "64be", "32le", "32be"])
def test_hand_built_truncated_everywhere(tmp_path: Path, elf_class: int, little: bool) -> None:
    """Every prefix of a file whose last byte belongs to a structure fails as truncated (every
    offset for two layouts, every 7th for the other two)."""
    blob = build_elf(replace(RICH, elf_class=elf_class, little=little, hash="sections")).blob
    step = 1 if (elf_class == 32) != little else 7
    assert_truncations_raise(tmp_path, blob, _truncation_points(len(blob), [len(blob) - 1], step))


def test_gcc_fixture_truncated(fixtures: Fixtures, tmp_path: Path) -> None:
    blob = fixtures.user.read_bytes()
    head = _elf.read_elf_facts(fixtures.user)
    assert head.symbols_read
    assert_truncations_raise(tmp_path, blob, _truncation_points(len(blob), [len(blob) - 1], 37))


def test_system_library_truncated(tmp_path: Path) -> None:
    d = system_lib_dir() if LINUX else None
    if d is None:
        pytest.skip("no system libraries here")
    blob = (d / "libgcc_s.so.1").read_bytes()
    phoff = struct.unpack_from("<Q", blob, 0x20)[0]
    assert_truncations_raise(
        tmp_path, blob,
        _truncation_points(len(blob), [63, 64, phoff + 100, len(blob) - 1], len(blob) // 150),
    )


# --------------------------------------------------------------------------------------------
# Property tests: mutated bytes give ElfFacts or InvalidImageError, quickly, bounded memory
# --------------------------------------------------------------------------------------------

MEMORY_LIMIT = 64 << 20
FUZZ = settings(max_examples=150, deadline=2000, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _fuzz_bases() -> Dict[str, Built]:
    bases = {f"{c}{'le' if le else 'be'}": build_elf(replace(RICH, elf_class=c, little=le))
             for c, le in CLASSES}
    bases["sections"] = build_elf(replace(RICH, hash="sections"))
    bases["sysv32be"] = build_elf(replace(RICH, hash="sysv", elf_class=32, little=False))
    return bases


BASES = _fuzz_bases()
EXTREMES = [0, 1, 2, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF, 1 << 40, (1 << 64) - 1]


def parse_outcome(blob: bytes) -> Optional[ElfFacts]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.so"
        path.write_bytes(blob)
        tracemalloc.start()
        try:
            t0 = time.perf_counter()
            try:
                facts: Optional[ElfFacts] = _elf.read_elf_facts(path)
            except InvalidImageError as exc:
                assert not exc.reason.startswith("malformed"), exc.reason
                facts = None
            elapsed = time.perf_counter() - t0
            _cur, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert elapsed < 1.5
        assert peak < MEMORY_LIMIT
        with contextlib.suppress(InvalidImageError):
            _elf.read_elf_header(path)
        return facts


@FUZZ
@given(
    base=st.sampled_from(sorted(BASES)),
    flips=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_random_byte_flips(base: str, flips: List[Tuple[int, int]]) -> None:
    blob = bytearray(BASES[base].blob)
    for pos, value in flips:
        blob[pos % len(blob)] = value
    parse_outcome(bytes(blob))


@FUZZ
@given(
    base=st.sampled_from(sorted(BASES)),
    data=st.data(),
)
def test_extreme_field_values(base: str, data: st.DataObject) -> None:
    built = BASES[base]
    names = sorted(built.fields)
    chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3))
    blob = bytearray(built.blob)
    little = "le" in base or base == "sections"
    for name in chosen:
        off, width = built.fields[name]
        value = data.draw(st.sampled_from(EXTREMES + [len(blob), len(blob) - 1, 0x10000]))
        value &= (1 << (8 * width)) - 1
        blob[off : off + width] = value.to_bytes(width, "little" if little else "big")
    parse_outcome(bytes(blob))


def test_real_library_byte_flips_are_bounded(fixtures: Fixtures) -> None:
    """Deterministic flips across a gcc-built library: every outcome is facts or the error."""
    blob = fixtures.user.read_bytes()
    positions = list(range(0, 0x400, 3)) + list(range(0x400, len(blob), 211))
    outcomes: Counter[str] = Counter()
    for i, pos in enumerate(positions):
        mutated = bytearray(blob)
        mutated[pos] ^= 0xFF if i % 2 else 0x80
        outcomes["facts" if parse_outcome(bytes(mutated)) is not None else "error"] += 1
    assert outcomes["facts"] and outcomes["error"]



# --------------------------------------------------------------------------------------------
# Relocations: which undefined symbols are bound at load (DT_RELA/DT_REL) and which lazily
# (DT_JMPREL), against readelf -r
# --------------------------------------------------------------------------------------------


def _readelf_reloc_names(path: str) -> Tuple[set, set]:
    out = subprocess.run(["readelf", "-W", "-r", path], capture_output=True, text=True, check=True).stdout
    eager: set = set()
    plt: set = set()
    current: Optional[set] = None
    for line in out.splitlines():
        if line.startswith("Relocation section"):
            current = plt if ".rela.plt" in line or ".rel.plt" in line else eager
            continue
        parts = line.split()
        if current is None or len(parts) < 5 or not re.fullmatch(r"[0-9a-f]+", parts[0]):
            continue
        name = parts[4].split("@")[0]
        current.add(name)
    return eager, plt


@pytest.mark.parametrize("lib", ["libstdc++.so.6", "libgcc_s.so.1", "libm.so.6"])
def test_relocation_kinds_match_readelf(lib: str) -> None:
    from torchdll._elf import RELOC_EAGER, RELOC_PLT

    path = os.path.join("/lib/x86_64-linux-gnu", lib)
    if not os.path.exists(path) or shutil.which("readelf") is None:
        unavailable(f"{path} or readelf missing (apt install binutils)")
    eager, plt = _readelf_reloc_names(path)
    facts = read_elf_facts(path)
    assert facts.undefined
    for sym in facts.undefined:
        assert bool(sym.reloc & RELOC_EAGER) == (sym.name in eager), sym
        assert bool(sym.reloc & RELOC_PLT) == (sym.name in plt), sym


# --------------------------------------------------------------------------------------------
# The on-disk cache (namespace "elf" of torchdll._pecache)
# --------------------------------------------------------------------------------------------


def test_facts_cache_round_trip_and_invalidation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchdll import _pecache

    src = "/lib/x86_64-linux-gnu/libstdc++.so.6"
    if not os.path.exists(src):
        unavailable(f"{src} missing (a Debian x86-64 layout)")
    monkeypatch.setenv("TORCHDLL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHDLL_NO_CACHE", raising=False)
    lib = tmp_path / "libstdc++.so.6"
    shutil.copyfile(src, lib)
    calls: List[str] = []
    real = _elf._read
    monkeypatch.setattr(_elf, "_read", lambda p, symbols: calls.append(p) or real(p, symbols))
    first = read_elf_facts(lib)
    again = read_elf_facts(lib)
    assert calls == [str(lib)]  # the second read came from the cache
    assert again == first and [u.reloc for u in again.undefined] == [u.reloc for u in first.undefined]
    assert again.defined == first.defined and again.visible == first.visible
    folder = _pecache.cache_dir("elf")
    assert folder.name.startswith("elf-v") and len(list(folder.iterdir())) == 1
    # a corrupt entry is a miss, never an error
    next(folder.iterdir()).write_bytes(b"garbage")
    assert read_elf_facts(lib) == first and len(calls) == 2
    # a changed file is read again
    os.utime(lib, ns=(first.mtime_ns + 10**9, first.mtime_ns + 10**9))
    read_elf_facts(lib)
    assert len(calls) == 3
    read_elf_facts(lib, use_cache=False)
    assert len(calls) == 4
