"""torchdll.ldcache: glibc's ld.so.cache (old, compat and new formats, glibc-hwcaps extension),
_dl_load_cache_lookup's choice, and the interpreter's system search path.

Real-tool tiers: the machine's own /etc/ld.so.cache against ``ldconfig -p``; caches written by
the real ``ldconfig`` over libraries built with ``gcc``; the real loader's choice (``ld.so
--list`` in a private mount namespace where our cache is bind-mounted on /etc/ld.so.cache).
"""

from __future__ import annotations

import functools
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.tiers import unavailable
from torchdll import ldcache
from torchdll.ldcache import (
    DL_CACHE_HWCAP_EXTENSION,
    CacheEntry,
    LdCache,
    LdCacheError,
    SystemSearch,
    cache_flags,
    default_interpreter,
    libcmp,
    parse_interpreter_help,
    parse_ld_so_cache,
    read_ld_so_cache,
    system_search,
)

linux_only = pytest.mark.skipif(
    sys.platform != "linux", reason="glibc's loader and ldconfig are Linux tools"
)

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

X86_64: Dict[str, Any] = {"elf_class": 64, "machine": 62}
HWCAPS_ALL = ("x86-64-v4", "x86-64-v3", "x86-64-v2")

# ---------------------------------------------------------------------------------------------
# A cache writer laid out like glibc's elf/cache.c save_cache (no string tail merging), so that
# ABI-specific and corrupt caches can be made without ldconfig. `ldconfig -p` reads its output
# in test_handmade_cache_is_read_by_ldconfig.
# ---------------------------------------------------------------------------------------------


@dataclass
class Spec:
    name: str
    path: str
    flags: int = 0x303
    hwcaps: Optional[str] = None  # glibc-hwcaps subdirectory
    isa_level: int = 0
    legacy_hwcap: int = 0  # raw hwcap for a legacy (non-extension) entry
    osversion: int = 0


def ldconfig_order(specs: Sequence[Spec]) -> List[Spec]:
    """Sort like elf/cache.c compare(): descending _dl_cache_libcmp, flags descending, hwcaps
    entries first (by name)."""

    def compare(e1: Spec, e2: Spec) -> int:
        res = libcmp(e2.name.encode(), e1.name.encode())
        if res == 0:
            if e1.flags != e2.flags:
                return 1 if e1.flags < e2.flags else -1
            if (e1.hwcaps is None) != (e2.hwcaps is None):
                return -1 if e1.hwcaps is not None else 1
            if e1.hwcaps is not None and e2.hwcaps is not None and e1.hwcaps != e2.hwcaps:
                return -1 if e1.hwcaps < e2.hwcaps else 1
        return res

    return sorted(specs, key=functools.cmp_to_key(compare))


def build_cache(
    specs: Sequence[Spec],
    fmt: str = "new",
    *,
    byteorder: str = "little",
    generator: Optional[str] = "handmade test writer",
    sort: bool = True,
    endian_flag: Optional[int] = None,
) -> bytes:
    e = "<" if byteorder == "little" else ">"
    entries = ldconfig_order(specs) if sort else list(specs)
    subdirs = sorted({s.hwcaps for s in entries if s.hwcaps is not None})
    strings = bytearray()
    offsets: Dict[str, int] = {}

    def intern(text: str) -> int:
        if text not in offsets:
            offsets[text] = len(strings)
            strings.extend(text.encode() + b"\0")
        return offsets[text]

    for sub in subdirs:  # ldconfig's table starts with them too; the file ends with a path
        intern(sub)
    for s in entries:
        intern(s.name)
        intern(s.path)

    out = bytearray()
    new_size = 48 + 24 * len(entries)
    if fmt in ("old", "compat"):
        old = list(entries)
        if fmt == "compat" and len(old) % 2:
            old.append(old[-1])  # ldconfig keeps the old table even-sized
        str_offset = new_size if fmt == "compat" else 0
        out += ldcache.CACHEMAGIC + b"\0" + struct.pack(e + "I", len(old))
        for s in old:
            out += struct.pack(
                e + "iII", s.flags, str_offset + offsets[s.name], str_offset + offsets[s.path]
            )
        if fmt == "old":
            return bytes(out + strings)
        out += b"\0" * ((-len(out)) % 8)
    base = len(out)
    ext_dir = 0
    out += ldcache.CACHEMAGIC_VERSION_NEW
    flag = endian_flag if endian_flag is not None else (2 if byteorder == "little" else 3)
    out += struct.pack(e + "IIB3xI12x", len(entries), len(strings), flag, 0)
    for s in entries:
        if s.hwcaps is not None:
            hwcap = DL_CACHE_HWCAP_EXTENSION | (s.isa_level << 32) | subdirs.index(s.hwcaps)
        else:
            hwcap = s.legacy_hwcap
        out += struct.pack(
            e + "iIIIQ",
            s.flags,
            new_size + offsets[s.name],
            new_size + offsets[s.path],
            s.osversion,
            hwcap,
        )
    out += strings
    if generator is not None or subdirs:
        out += b"\0" * ((-len(out)) % 4)
        ext_dir = len(out)
        sections: List[Tuple[int, bytes]] = []
        if generator is not None:
            sections.append((0, generator.encode()))
        if subdirs:
            sections.append(
                (1, b"".join(struct.pack(e + "I", new_size + offsets[d]) for d in subdirs))
            )
        data_at = ext_dir + 8 + 16 * len(sections)
        out += struct.pack(e + "II", ldcache.CACHE_EXTENSION_MAGIC, len(sections))
        payload = bytearray()
        for tag, blob in sections:
            payload += b"\0" * ((-(data_at + len(payload))) % 4)
            out += struct.pack(e + "IIII", tag, 0, data_at + len(payload), len(blob))
            payload += blob
        out += payload
        struct.pack_into(e + "I", out, base + 32, ext_dir)
    return bytes(out)


SAMPLE = [
    Spec("libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6"),
    Spec("libm.so.6", "/lib/x86_64-linux-gnu/libm.so.6"),
    Spec("libv.so.2", "/opt/v/libv.so.2"),
    Spec("libv.so.10", "/opt/v/libv.so.10"),
    Spec("libv.so.9", "/opt/v/libv.so.9"),
    Spec("libx.so.1", "/opt/a/libx.so.1"),
    Spec("libx.so.1", "/opt/a/glibc-hwcaps/x86-64-v2/libx.so.1", hwcaps="x86-64-v2"),
    Spec("libx.so.1", "/opt/a/glibc-hwcaps/x86-64-v3/libx.so.1", hwcaps="x86-64-v3", isa_level=2),
    Spec("libx.so.1", "/usr/lib/i386-linux-gnu/libx.so.1", flags=0x3),
    Spec("libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1"),
]


def pairs(cache: LdCache) -> List[Tuple[str, str]]:
    return [(e.name, e.path) for e in cache.entries]


# ---------------------------------------------------------------------------------------------
# Real tools
# ---------------------------------------------------------------------------------------------


def find_ldconfig() -> str:
    for cand in (shutil.which("ldconfig"), "/sbin/ldconfig", "/usr/sbin/ldconfig"):
        if cand and os.access(cand, os.X_OK):
            return cand
    unavailable("ldconfig not found (glibc's ldconfig, package libc-bin)")


def require_gcc() -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        unavailable("gcc not found (needed to build test libraries)")
    return gcc


def host_abi() -> Tuple[int, int]:
    """(ELF class, e_machine) of this Python, from its own ELF header."""
    with open(sys.executable, "rb") as handle:
        head = handle.read(20)
    assert head[:4] == b"\x7fELF"
    order = "<" if head[5] == 1 else ">"
    return (64 if head[4] == 2 else 32), struct.unpack_from(order + "H", head, 18)[0]


LINE = re.compile(
    r"^\t(?P<name>\S+) \((?P<descr>[^)]*?)"
    r"(?:, hwcap: (?P<hwcap>\"[^\"]*\"|0x[0-9a-f]+))?\) => (?P<path>.*)$"
)


@dataclass
class Listed:
    name: str
    descr: str
    hwcap: Optional[str]
    path: str


def ldconfig_p(ldconfig: str, cache: Optional[Path] = None) -> Tuple[int, List[Listed]]:
    argv = [ldconfig, "-p"] + (["-C", str(cache)] if cache is not None else [])
    proc = subprocess.run(argv, capture_output=True, check=True, env={**os.environ, "LC_ALL": "C"})
    lines = proc.stdout.decode("utf-8", "surrogateescape").splitlines()
    count = int(lines[0].split()[0])
    listed = []
    for line in lines[1:]:
        m = LINE.match(line)
        if m:
            hw = m.group("hwcap")
            listed.append(
                Listed(
                    m.group("name"),
                    m.group("descr"),
                    hw.strip('"') if hw else None,
                    m.group("path"),
                )
            )
    return count, listed


# --- the machine's own cache ------------------------------------------------------------------


@pytest.fixture(scope="module")
def system_cache() -> LdCache:
    if sys.platform != "linux":
        pytest.skip("Linux only")
    if not os.path.exists("/etc/ld.so.cache"):
        unavailable("/etc/ld.so.cache missing (not a glibc system)")
    cache = read_ld_so_cache()
    assert cache is not None
    return cache


@linux_only
def test_system_cache_matches_ldconfig_p(system_cache: LdCache) -> None:
    count, listed = ldconfig_p(find_ldconfig())
    assert count == len(system_cache.entries) == len(listed)
    assert [(x.name, x.path) for x in listed] == pairs(system_cache)  # same entries, cache order
    for entry, shown in zip(system_cache.entries, listed):
        if entry.is_hwcaps_extension:
            assert shown.hwcap == entry.hwcaps_subdir
        elif entry.hwcap:
            assert shown.hwcap == f"{entry.hwcap:#018x}"
        else:
            assert shown.hwcap is None
    assert system_cache.format in ("new", "compat", "old")
    if system_cache.generator is not None:
        assert system_cache.generator.startswith("ldconfig")


@linux_only
def test_system_cache_lookup_finds_every_listed_soname(system_cache: LdCache) -> None:
    elf_class, machine = host_abi()
    accepted, _ = cache_flags(elf_class, machine)
    _, listed = ldconfig_p(find_ldconfig())
    mine = [(e, shown) for e, shown in zip(system_cache.entries, listed) if e.flags in accepted]
    assert mine, "no entry of this machine's ABI in /etc/ld.so.cache"
    hwcaps = system_search().hwcaps_subdirs
    for subdirs in ((), hwcaps):
        expected: Dict[str, str] = {}
        best: Dict[str, int] = {}
        for entry, shown in mine:  # ldconfig -p lists the cache in order
            if shown.hwcap is None and entry.name not in expected:
                expected[entry.name] = shown.path
        for entry, shown in mine:
            if entry.is_hwcaps_extension and shown.hwcap in subdirs:
                prio = subdirs.index(shown.hwcap)
                if prio < best.get(entry.name, len(subdirs)):
                    best[entry.name] = prio
                    expected[entry.name] = shown.path
        assert len(expected) > 10
        for name, path in expected.items():
            assert (
                system_cache.lookup(
                    name, elf_class=elf_class, machine=machine, hwcaps_subdirs=subdirs
                )
                == path
            )
    assert (
        system_cache.lookup("libtorchdll-no-such.so.1", elf_class=elf_class, machine=machine)
        is None
    )


@linux_only
def test_system_cache_is_sorted_by_libcmp(system_cache: LdCache) -> None:
    names = [e.name.encode("utf-8", "surrogateescape") for e in system_cache.entries]
    for a, b in zip(names, names[1:]):
        assert libcmp(a, b) >= 0  # ldconfig writes descending order; lookup binary-searches it


@linux_only
def test_system_cache_agrees_with_the_real_loader(system_cache: LdCache) -> None:
    """Every library ld.so resolves through the cache for the dependencies of a few distribution
    programs (built without RPATH/RUNPATH) is the one lookup() names."""
    elf_class, machine = host_abi()
    search = system_search()
    if not os.path.exists(search.interpreter):
        unavailable(f"program interpreter {search.interpreter} missing")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_") and k != "GLIBC_TUNABLES"}
    checked = 0
    for exe in ("/bin/ls", "/bin/sh", "/bin/tar", "/usr/bin/curl", "/usr/bin/ssh", "/usr/bin/gpg"):
        if not os.path.exists(exe):
            continue
        proc = subprocess.run(
            [search.interpreter, "--list", exe], capture_output=True, env=env, check=False
        )
        if proc.returncode != 0:
            continue
        for m in re.finditer(r"^\t(\S+) => (\S+) \(0x", proc.stdout.decode(), re.MULTILINE):
            got = system_cache.lookup(
                m.group(1),
                elf_class=elf_class,
                machine=machine,
                hwcaps_subdirs=search.hwcaps_subdirs,
            )
            if got is not None:  # not in the cache: found in a system directory instead
                assert os.path.realpath(got) == os.path.realpath(m.group(2))
                checked += 1
    assert checked > 0


# --- caches written by the real ldconfig --------------------------------------------------------

GCC_LIBS = [
    # (directory, file name, soname, extra linker flags)
    ("a", "libx.so.1", "libx.so.1", []),
    ("a/glibc-hwcaps/x86-64-v2", "libx.so.1", "libx.so.1", []),
    ("a/glibc-hwcaps/x86-64-v3", "libx.so.1", "libx.so.1", ["-Wl,-z,x86-64-v3"]),
    ("a", "libv.so.2", "libv.so.2", []),
    ("a", "libv.so.10", "libv.so.10", []),
    ("a", "libv.so.9", "libv.so.9", []),
    ("b", "liby.so.2.0.1", "liby.so.2", []),  # cached under its soname link's path
    ("b", "libw.so.1", "libw.so.1", ["-nostdlib"]),  # no libc.so.6 in DT_NEEDED
    ("c", "libx.so.1", "libx.so.1", []),  # same soname in a later ld.so.conf directory
]


@dataclass
class Built:
    libs: Path  # where the libraries are, at their real host paths
    root: Path  # ldconfig -r root holding a copy of them at the same paths
    x86_isa_marked: bool
    exe: Path  # links libx.so.1, libv.so.10, liby.so.2


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    if sys.platform != "linux":
        pytest.skip("Linux only")
    gcc = require_gcc()
    find_ldconfig()
    top = tmp_path_factory.mktemp("ldcache")
    libs = top / "libs"
    src = top / "x.c"
    src.write_text("int x(void) { return 1; }\n")
    isa_marked = False
    for directory, filename, soname, extra in GCC_LIBS:
        (libs / directory).mkdir(parents=True, exist_ok=True)
        out = libs / directory / filename
        argv = [gcc, "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(out), str(src)]
        proc = subprocess.run(argv + extra, capture_output=True, check=False)
        if proc.returncode != 0 and extra == ["-Wl,-z,x86-64-v3"]:
            proc = subprocess.run(
                argv, capture_output=True, check=False
            )  # not x86-64 / old binutils
        elif extra == ["-Wl,-z,x86-64-v3"]:
            isa_marked = True
        assert proc.returncode == 0, proc.stderr.decode()
    main = top / "main.c"
    main.write_text("int x(void);\nint main(void) { return x() - 1; }\n")
    exe = top / "exe"
    link = [
        gcc,
        "-o",
        str(exe),
        str(main),
        "-Wl,--no-as-needed",
        str(libs / "a" / "libx.so.1"),
        str(libs / "a" / "libv.so.10"),
        str(libs / "b" / "liby.so.2.0.1"),
    ]
    subprocess.run(link, check=True, capture_output=True)
    (libs / "b" / "liby.so.2").symlink_to("liby.so.2.0.1")  # the link ldconfig would make
    root = top / "root"
    shutil.copytree(libs, root / str(libs).lstrip("/"), symlinks=True)
    (root / "etc").mkdir()
    (root / "etc" / "ld.so.conf").write_text("".join(f"{libs / d}\n" for d in ("a", "b", "c")))
    return Built(libs, root, isa_marked, exe)


def run_ldconfig(built: Built, fmt: str) -> Path:
    """ldconfig -r ROOT: chroot()s when root (else resolves paths under ROOT), so neither the
    system's cache, its aux-cache nor any link outside ROOT is touched (-X: no links)."""
    name = f"{fmt}.cache"
    proc = subprocess.run(
        [
            find_ldconfig(),
            "-X",
            "-i",
            "-r",
            str(built.root),
            "-C",
            f"/etc/{name}",
            "-f",
            "/etc/ld.so.conf",
            "-c",
            fmt,
        ],
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return built.root / "etc" / name


FORMATS = ("new", "compat", "old")


@linux_only
@pytest.mark.parametrize("fmt", FORMATS)
def test_ldconfig_cache_parses_like_ldconfig_p(built: Built, fmt: str) -> None:
    path = run_ldconfig(built, fmt)
    cache = read_ld_so_cache(str(path))
    assert cache is not None and cache.source == str(path)
    count, listed = ldconfig_p(find_ldconfig(), path)
    assert cache.format == fmt
    assert [(x.name, x.path) for x in listed] == pairs(cache)
    assert (
        count == len(cache.entries) == len(GCC_LIBS)
    )  # one entry per file, hwcaps copies included
    libs = str(built.libs)
    for entry in cache.entries:
        assert os.path.isabs(entry.path) and entry.path.startswith(libs)
    assert ("liby.so.2", f"{libs}/b/liby.so.2") in pairs(cache)  # the soname link, not the file
    elf_class, machine = host_abi()
    _, default_id = cache_flags(elf_class, machine)
    assert {e.flags for e in cache.entries} == {default_id}  # even -nostdlib libw is libc6
    if fmt == "new":
        assert cache.hwcaps == ("x86-64-v2", "x86-64-v3")
        assert cache.generator is not None and "ldconfig" in cache.generator
        hw = {e.path: e for e in cache.entries if e.is_hwcaps_extension}
        v2 = hw[f"{libs}/a/glibc-hwcaps/x86-64-v2/libx.so.1"]
        v3 = hw[f"{libs}/a/glibc-hwcaps/x86-64-v3/libx.so.1"]
        assert (v2.hwcaps_subdir, v3.hwcaps_subdir) == ("x86-64-v2", "x86-64-v3")
        assert v2.isa_level == 0
        assert v3.isa_level == (2 if built.x86_isa_marked else 0)
        assert [x.hwcap for x in listed if x.hwcap] == ["x86-64-v2", "x86-64-v3"]
    elif fmt == "compat":
        # ldconfig -p and the loader resolve the hwcaps names from the start of the file, where
        # the compat layout does not put them: neither sees "x86-64-v2" there.
        assert "x86-64-v2" not in cache.hwcaps and len(cache.hwcaps) == 2
        assert [x.hwcap for x in listed if x.hwcap is not None] == [
            e.hwcaps_subdir for e in cache.entries if e.is_hwcaps_extension
        ]
    else:
        assert cache.hwcaps == () and cache.generator is None
        assert not any(e.hwcap for e in cache.entries)


# Expected answers, checked against the real loader in test_lookup_matches_the_real_loader.
# hwcaps masks: (), only v2, v3 then v2.
EXPECTED = {
    "new": [
        "a/libx.so.1",
        "a/glibc-hwcaps/x86-64-v2/libx.so.1",
        "a/glibc-hwcaps/x86-64-v3/libx.so.1",
    ],
    "compat": ["a/libx.so.1", "a/libx.so.1", "a/libx.so.1"],  # hwcaps entries unusable there
    "old": ["a/glibc-hwcaps/x86-64-v2/libx.so.1"] * 3,  # first libc6 entry, no hwcap data
}
MASKS: Tuple[Tuple[str, ...], ...] = ((), ("x86-64-v2",), ("x86-64-v3", "x86-64-v2"))


@linux_only
@pytest.mark.parametrize("fmt", FORMATS)
def test_ldconfig_cache_lookup(built: Built, fmt: str) -> None:
    cache = read_ld_so_cache(str(run_ldconfig(built, fmt)))
    assert cache is not None
    elf_class, machine = host_abi()
    libs = str(built.libs)

    def look(name: str, subdirs: Sequence[str] = (), **kw: Any) -> Optional[str]:
        return cache.lookup(
            name, elf_class=elf_class, machine=machine, hwcaps_subdirs=subdirs, **kw
        )

    for subdirs, want in zip(MASKS, EXPECTED[fmt]):
        assert look("libx.so.1", subdirs) == f"{libs}/{want}"
    # the earlier ld.so.conf directory wins over libs/c for a plain lookup
    assert look("libx.so.1") == f"{libs}/{EXPECTED[fmt][0]}"
    for v in ("libv.so.2", "libv.so.9", "libv.so.10"):  # numeric order in the binary search
        assert look(v) == f"{libs}/a/{v}"
    assert look("libv.so.3") is None and look("libv.so") is None and look("libx.so") is None
    assert look("liby.so.2") == f"{libs}/b/liby.so.2"
    assert look("libw.so.1") == f"{libs}/b/libw.so.1"
    other_class = 32 if elf_class == 64 else 64
    assert (
        cache.lookup("libx.so.1", elf_class=other_class, machine=machine) is None or machine == 40
    )
    if fmt == "new" and built.x86_isa_marked:
        # the v3 copy is marked as needing x86-64-v3: a CPU with only v2 skips it
        assert (
            look("libx.so.1", ("x86-64-v3", "x86-64-v2"), x86_isa_level=1)
            == f"{libs}/{EXPECTED['new'][1]}"
        )
        assert look("libx.so.1", ("x86-64-v3",), x86_isa_level=1) == f"{libs}/a/libx.so.1"


def private_loader_list(
    cache_file: Path, interpreter: str, mask: Sequence[str], exe: Path
) -> Dict[str, str]:
    """ld.so --list EXE with CACHE_FILE bind-mounted on /etc/ld.so.cache in a private mount
    namespace (the system's cache is untouched)."""
    if shutil.which("unshare") is None:
        pytest.skip("util-linux unshare not available")
    script = 'mount --bind "$1" /etc/ld.so.cache && exec "$2" --glibc-hwcaps-mask "$3" --list "$4"'
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_") and k != "GLIBC_TUNABLES"}
    proc = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            str(cache_file),
            interpreter,
            ":".join(mask) or "none",
            str(exe),
        ],
        capture_output=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0 and (b"unshare" in proc.stderr or b"mount" in proc.stderr):
        pytest.skip(f"no private mount namespace here: {proc.stderr.decode().strip()}")
    assert proc.returncode == 0, proc.stderr.decode()
    return {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\t(\S+) => (\S+) \(0x", proc.stdout.decode(), re.MULTILINE)
    }


@linux_only
@pytest.mark.parametrize("fmt", FORMATS)
def test_lookup_matches_the_real_loader(built: Built, fmt: str) -> None:
    elf_class, machine = host_abi()
    if machine != 62:
        pytest.skip("the x86-64-vN subdirectories are only searched by the x86-64 loader")
    search = system_search()
    if search.source != "ld.so --help" or "x86-64-v2" not in search.hwcaps_subdirs:
        pytest.skip("needs a glibc >= 2.33 loader on an x86-64-v2 CPU")
    cache_file = run_ldconfig(built, fmt)
    cache = read_ld_so_cache(str(cache_file))
    assert cache is not None
    for mask in MASKS:
        if any(m not in search.hwcaps_subdirs for m in mask):
            continue
        resolved = private_loader_list(cache_file, search.interpreter, mask, built.exe)
        for name in ("libx.so.1", "libv.so.10", "liby.so.2"):
            ours = cache.lookup(name, elf_class=elf_class, machine=machine, hwcaps_subdirs=mask)
            assert ours == resolved[name], (fmt, mask, name)


# --- hand-made caches ---------------------------------------------------------------------------


@linux_only
@pytest.mark.parametrize("fmt", FORMATS)
def test_handmade_cache_is_read_by_ldconfig(tmp_path: Path, fmt: str) -> None:
    """The test writer makes caches the real ldconfig -p accepts and lists the same way."""
    ldconfig = find_ldconfig()
    path = tmp_path / "ld.so.cache"
    path.write_bytes(build_cache(SAMPLE, fmt))
    cache = read_ld_so_cache(str(path))
    assert cache is not None
    _, listed = ldconfig_p(ldconfig, path)
    assert [(x.name, x.path) for x in listed] == pairs(cache)
    if fmt == "new":
        assert [x.hwcap for x in listed] == [e.hwcaps_subdir for e in cache.entries]


def test_old_format_only_cache_built_with_struct() -> None:
    strings = (
        b"libfoo.so.1\0/usr/lib/libfoo.so.1\0libbar.so.2\0/lib/libbar.so.2\0/lib32/libbar.so.2\0"
    )
    off = {
        s: strings.index(s.encode() + b"\0")
        for s in (
            "libfoo.so.1",
            "/usr/lib/libfoo.so.1",
            "libbar.so.2",
            "/lib/libbar.so.2",
            "/lib32/libbar.so.2",
        )
    }
    table = [  # descending libcmp order: libfoo > libbar
        (0x303, off["libfoo.so.1"], off["/usr/lib/libfoo.so.1"]),
        (0x1, off["libbar.so.2"], off["/lib32/libbar.so.2"]),  # plain ELF, i386-acceptable
        (0x303, off["libbar.so.2"], off["/lib/libbar.so.2"]),
    ]
    order = "<" if sys.byteorder == "little" else ">"
    data = b"ld.so-1.7.0\0" + struct.pack(order + "I", len(table))
    data += b"".join(struct.pack(order + "iII", *row) for row in table) + strings
    cache = parse_ld_so_cache(data, "handmade")
    assert cache.format == "old" and cache.source == "handmade" and cache.hwcaps == ()
    assert cache.entries == (
        CacheEntry("libfoo.so.1", "/usr/lib/libfoo.so.1", 0x303, 0, 0, None),
        CacheEntry("libbar.so.2", "/lib32/libbar.so.2", 0x1, 0, 0, None),
        CacheEntry("libbar.so.2", "/lib/libbar.so.2", 0x303, 0, 0, None),
    )
    assert cache.lookup("libbar.so.2", **X86_64) == "/lib/libbar.so.2"
    assert cache.lookup("libfoo.so.1", **X86_64) == "/usr/lib/libfoo.so.1"
    # i386 accepts flags 1 and 3: the FLAG_ELF entry is taken
    assert cache.lookup("libbar.so.2", elf_class=32, machine=3) == "/lib32/libbar.so.2"
    assert cache.lookup("libfoo.so.1", elf_class=32, machine=3) is None
    assert cache.lookup("libbar.so.2", elf_class=64, machine=183) is None


def test_i386_prefers_libc6_entry_over_plain_elf() -> None:
    """search_cache stops at flags == _DL_CACHE_DEFAULT_ID (3) but keeps going past flags 1."""
    specs = [
        Spec("libq.so.1", "/lib/elf/libq.so.1", flags=0x1),
        Spec("libq.so.1", "/lib/libc6/libq.so.1", flags=0x3),
    ]
    for fmt in FORMATS:
        cache = parse_ld_so_cache(build_cache(specs, fmt, generator=None))
        # ldconfig order puts flags 3 before flags 1
        assert [e.flags for e in cache.entries] == [3, 1]
        assert cache.lookup("libq.so.1", elf_class=32, machine=3) == "/lib/libc6/libq.so.1"
        unsorted = parse_ld_so_cache(build_cache(specs, fmt, generator=None, sort=False))
        want = "/lib/libc6/libq.so.1" if fmt == "old" else "/lib/elf/libq.so.1"
        # new format: once a candidate is found, the next plain entry ends the scan
        assert unsorted.lookup("libq.so.1", elf_class=32, machine=3) == want


def test_old_format_keeps_the_last_entry_before_the_default_id() -> None:
    """Old format: no "candidate found, stop at the next plain entry" rule, so among FLAG_ELF
    entries the last one wins; the new format keeps the first."""
    specs = [
        Spec("libr.so.1", "/first/libr.so.1", flags=0x1),
        Spec("libr.so.1", "/second/libr.so.1", flags=0x1),
    ]
    old = parse_ld_so_cache(build_cache(specs, "old", sort=False))
    new = parse_ld_so_cache(build_cache(specs, "new", sort=False))
    assert old.lookup("libr.so.1", elf_class=32, machine=3) == "/second/libr.so.1"
    assert new.lookup("libr.so.1", elf_class=32, machine=3) == "/first/libr.so.1"


def test_abi_flags_select_entries() -> None:
    specs = [
        Spec("libk.so.1", "/usr/lib64/libk.so.1", flags=0x303),
        Spec("libk.so.1", "/usr/libx32/libk.so.1", flags=0x803),
        Spec("libk.so.1", "/usr/lib/aarch64/libk.so.1", flags=0xA03),
        Spec("libk.so.1", "/usr/lib/armhf/libk.so.1", flags=0x903),
        Spec("libk.so.1", "/usr/lib/armel/libk.so.1", flags=0xB03),
        Spec("libk.so.1", "/usr/lib/riscv/libk.so.1", flags=0x1003),
        Spec("libk.so.1", "/usr/lib/ppc64/libk.so.1", flags=0x503),
        Spec("libk.so.1", "/usr/lib/s390x/libk.so.1", flags=0x403),
        Spec("libk.so.1", "/usr/lib/loong/libk.so.1", flags=0x1203),
        Spec("libk.so.1", "/usr/lib/i386/libk.so.1", flags=0x3),
    ]
    cache = parse_ld_so_cache(build_cache(specs))

    def look(elf_class: int, machine: int, e_flags: Optional[int] = None) -> Optional[str]:
        return cache.lookup("libk.so.1", elf_class=elf_class, machine=machine, e_flags=e_flags)

    assert look(64, 62) == "/usr/lib64/libk.so.1"
    assert look(32, 62) == "/usr/libx32/libk.so.1"
    assert look(64, 183) == "/usr/lib/aarch64/libk.so.1"
    assert look(32, 40) == "/usr/lib/armhf/libk.so.1"
    assert (
        look(32, 40, e_flags=0x05000000) == "/usr/lib/armel/libk.so.1"
    )  # no EF_ARM_ABI_FLOAT_HARD
    assert look(64, 243) == "/usr/lib/riscv/libk.so.1"
    assert look(64, 243, e_flags=0) is None  # soft-float: no 0xf03 entry
    assert look(64, 21) == "/usr/lib/ppc64/libk.so.1"
    assert look(64, 22) == "/usr/lib/s390x/libk.so.1"
    assert look(64, 258) == "/usr/lib/loong/libk.so.1"
    assert look(32, 3) == "/usr/lib/i386/libk.so.1"
    assert look(64, 50) is None  # ia64 wants 0x203
    # ARM also accepts unmarked libc6 objects, and 3 stays the "stop" id there
    arm = parse_ld_so_cache(build_cache([Spec("libk.so.1", "/lib/plain/libk.so.1", flags=0x3)]))
    assert arm.lookup("libk.so.1", elf_class=32, machine=40) == "/lib/plain/libk.so.1"
    assert cache_flags(64, 62) == (frozenset({0x303}), 0x303)
    assert cache_flags(32, 3) == (frozenset({1, 3}), 3)
    assert cache_flags(32, 40) == (frozenset({0x903, 3}), 3)
    assert cache_flags(64, 8, e_flags=0x400) == (frozenset({0xE03}), 0xE03)
    assert cache_flags(32, 8, e_flags=0x20) == (frozenset({0x603}), 0x603)
    assert cache_flags(32, 8) == (frozenset({1, 3}), 3)


def test_hwcaps_priority_and_isa_level() -> None:
    cache = parse_ld_so_cache(build_cache(SAMPLE))
    assert cache.hwcaps == ("x86-64-v2", "x86-64-v3")
    assert cache.generator == "handmade test writer"

    def look(subdirs: Sequence[str], **kw: Any) -> Optional[str]:
        return cache.lookup("libx.so.1", **X86_64, hwcaps_subdirs=subdirs, **kw)

    assert look(()) == "/opt/a/libx.so.1"
    assert look(HWCAPS_ALL) == "/opt/a/glibc-hwcaps/x86-64-v3/libx.so.1"
    assert look(("x86-64-v2",)) == "/opt/a/glibc-hwcaps/x86-64-v2/libx.so.1"
    assert (
        look(("x86-64-v2", "x86-64-v3")) == "/opt/a/glibc-hwcaps/x86-64-v2/libx.so.1"
    )  # order = priority
    assert look(("x86-64-v3",)) == "/opt/a/glibc-hwcaps/x86-64-v3/libx.so.1"
    assert look(("x86-64-v3",), x86_isa_level=1) == "/opt/a/libx.so.1"  # marked v3, CPU has v2
    assert look(HWCAPS_ALL, x86_isa_level=1) == "/opt/a/glibc-hwcaps/x86-64-v2/libx.so.1"
    assert look(("power10",)) == "/opt/a/libx.so.1"
    # the ISA check is x86-only: the same entries on another ABI ignore the level bits
    other = [Spec(s.name, s.path, 0xA03, s.hwcaps, s.isa_level) for s in SAMPLE]
    arm64 = parse_ld_so_cache(build_cache(other))
    assert arm64.lookup("libx.so.1", elf_class=64, machine=183, hwcaps_subdirs=("x86-64-v3",)) == (
        "/opt/a/glibc-hwcaps/x86-64-v3/libx.so.1"
    )
    # only hwcaps entries: nothing eligible without a supported subdirectory
    only = parse_ld_so_cache(build_cache([s for s in SAMPLE if s.hwcaps]))
    assert only.lookup("libx.so.1", **X86_64) is None
    assert (
        only.lookup("libx.so.1", **X86_64, hwcaps_subdirs=("x86-64-v2",))
        == "/opt/a/glibc-hwcaps/x86-64-v2/libx.so.1"
    )


def test_legacy_hwcap_entries_are_skipped() -> None:
    specs = [
        Spec("libl.so.1", "/lib/tls/libl.so.1", legacy_hwcap=1 << 63),
        Spec("libl.so.1", "/lib/libl.so.1"),
    ]
    cache = parse_ld_so_cache(build_cache(specs, sort=False))
    assert cache.entries[0].legacy_hwcap and not cache.entries[0].is_hwcaps_extension
    assert cache.lookup("libl.so.1", **X86_64) == "/lib/libl.so.1"
    assert parse_ld_so_cache(build_cache(specs[:1])).lookup("libl.so.1", **X86_64) is None
    # bit 62 plus another high bit is not an extension entry (dl_cache_hwcap_extension)
    odd = CacheEntry("a", "/a", 0x303, 0, DL_CACHE_HWCAP_EXTENSION | (1 << 50), None)
    assert not odd.is_hwcaps_extension and odd.legacy_hwcap and odd.isa_level == 0


def test_numeric_soname_order_and_binary_search() -> None:
    names = [f"libn.so.{i}" for i in (0, 1, 2, 3, 9, 10, 11, 99, 100, 101, 1000)] + [
        "libn.so",
        "libn-2.so.1",
        "libna.so.1",
        "libn.so.1.2",
        "libn.so.1.10",
        "A.so",
        "z.so",
    ]
    specs = [Spec(n, f"/opt/n/{n}") for n in names]
    cache = parse_ld_so_cache(build_cache(specs))
    for n in names:
        assert cache.lookup(n, **X86_64) == f"/opt/n/{n}"
    for missing in ("libn.so.4", "libn.so.12", "libn.so.1.3", "libm.so.6", "", "libn"):
        assert cache.lookup(missing, **X86_64) is None
    keys = [e.name for e in cache.entries]
    assert keys.index("libn.so.10") < keys.index("libn.so.9") < keys.index("libn.so.2")


def test_libcmp_matches_glibc() -> None:
    assert libcmp(b"libc.so.10", b"libc.so.9") > 0
    assert libcmp(b"libc.so.9", b"libc.so.10") < 0
    assert libcmp(b"libc.so.6", b"libc.so.6") == 0
    assert libcmp(b"libc.so.06", b"libc.so.6") == 0  # numeric runs compare by value
    assert libcmp(b"lib1", b"liba") == 1 and libcmp(b"liba", b"lib1") == -1  # digits sort high
    assert libcmp(b"libc", b"libc.so") < 0 and libcmp(b"libc.so", b"libc") > 0
    assert libcmp(b"\xe9", b"a") < 0  # signed char (x86)
    assert libcmp(b"\xe9", b"a", signed_char=False) > 0


def test_big_endian_cache() -> None:
    cache = parse_ld_so_cache(build_cache(SAMPLE, byteorder="big"))
    assert cache.byteorder == "big" and cache.hwcaps == ("x86-64-v2", "x86-64-v3")
    assert pairs(cache) == pairs(parse_ld_so_cache(build_cache(SAMPLE)))
    assert (
        cache.lookup("libx.so.1", **X86_64, hwcaps_subdirs=HWCAPS_ALL)
        == "/opt/a/glibc-hwcaps/x86-64-v3/libx.so.1"
    )


def test_endianness_flag() -> None:
    unset = parse_ld_so_cache(build_cache(SAMPLE, endian_flag=0, byteorder=sys.byteorder))
    assert unset.byteorder == sys.byteorder
    with pytest.raises(LdCacheError, match="invalid"):
        parse_ld_so_cache(build_cache(SAMPLE, endian_flag=1))


def test_empty_caches() -> None:
    for fmt in ("new", "compat"):
        cache = parse_ld_so_cache(build_cache([], fmt))
        assert cache.entries == () and cache.lookup("libc.so.6", **X86_64) is None
    # an empty old-format file is just its 16-byte header, which glibc refuses
    # (cachesize > sizeof *cache); so does an empty new header without extensions
    with pytest.raises(LdCacheError, match="truncated header"):
        parse_ld_so_cache(build_cache([], "old"))
    bare = build_cache([], "new", generator=None)
    assert len(bare) == 48
    with pytest.raises(LdCacheError, match="truncated header"):
        parse_ld_so_cache(bare)


# --- corrupt data -------------------------------------------------------------------------------


def small_caches() -> Iterator[Tuple[str, bytes]]:
    for fmt in FORMATS:
        yield fmt, build_cache(SAMPLE, fmt)


@pytest.mark.parametrize("fmt,blob", list(small_caches()), ids=FORMATS)
def test_every_truncation_is_an_ld_cache_error(fmt: str, blob: bytes) -> None:
    assert parse_ld_so_cache(blob).entries
    for cut in range(len(blob)):
        with pytest.raises(LdCacheError) as info:
            parse_ld_so_cache(blob[:cut], "cut")
        assert info.value.source == "cut" and info.value.reason
        assert str(info.value).startswith("cut: ")


@linux_only
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_truncation_of_an_ldconfig_cache(built: Built, fmt: str) -> None:
    blob = run_ldconfig(built, fmt).read_bytes()
    parse_ld_so_cache(blob)
    for cut in range(len(blob)):
        with pytest.raises(LdCacheError):
            parse_ld_so_cache(blob[:cut])


def test_specific_corruptions() -> None:
    good = bytearray(build_cache(SAMPLE))
    nlibs = struct.unpack_from("<I", good, 20)[0]
    ext = struct.unpack_from("<I", good, 32)[0]
    cases: List[Tuple[str, bytes]] = []

    def patch(fmt: str, offset: int, value: int) -> bytes:
        blob = bytearray(good)
        struct.pack_into(fmt, blob, offset, value)
        return bytes(blob)

    cases.append(("do not fit", patch("<I", 20, 0xFFFFFFFF)))
    cases.append(("outside the file", patch("<I", 48 + 4, 0x7FFFFFFF)))  # key of entry 0
    cases.append(("outside the file", patch("<I", 48 + 8, len(good))))  # value of entry 0
    cases.append(("misaligned extension", patch("<I", 32, ext + 1)))
    cases.append(("extension directory runs past", patch("<I", 32, len(good) - 4 & ~3)))
    cases.append(("extension directory magic", patch("<I", ext, 0x12345678)))
    cases.append(("extension sections do not fit", patch("<I", ext + 4, 0x10000000)))
    cases.append(("section 0 runs past", patch("<I", ext + 8 + 12, 0xFFFFFF)))
    hw_entry = next(
        i for i, e in enumerate(parse_ld_so_cache(bytes(good)).entries) if e.is_hwcaps_extension
    )
    cases.append(
        ("glibc-hwcaps index 7", patch("<Q", 48 + 24 * hw_entry + 16, DL_CACHE_HWCAP_EXTENSION | 7))
    )
    cases.append(("unknown magic", b"GLIBC-ld.so.cache1.1" + bytes(good[20:])))
    cases.append(("empty", b""))
    cases.append(("truncated header", b"glibc-ld.so"))
    plain = build_cache([s for s in SAMPLE if s.hwcaps is None])
    unterminated = bytearray(plain[: struct.unpack_from("<I", plain, 32)[0]])
    struct.pack_into("<I", unterminated, 32, 0)
    while unterminated[-1] == 0:
        unterminated.pop()
    cases.append(("runs past the end", bytes(unterminated)))
    assert nlibs == len(SAMPLE)
    for reason, blob in cases:
        with pytest.raises(LdCacheError, match=reason):
            parse_ld_so_cache(blob)


def test_unknown_extension_tags_and_dropped_hwcaps_section_are_tolerated() -> None:
    plain = [s for s in SAMPLE if s.hwcaps is None]
    blob = bytearray(build_cache(plain))
    ext = struct.unpack_from("<I", blob, 32)[0]
    struct.pack_into("<I", blob, ext + 8, 99)  # generator section re-tagged as unknown
    cache = parse_ld_so_cache(bytes(blob))
    assert cache.generator is None and len(cache.entries) == len(plain)


def test_long_and_overlapping_strings_are_bounded() -> None:
    # entries whose names run 5000 bytes without a NUL
    blob = bytearray(build_cache([Spec("a" * 5000, "/x")], generator=None))
    with pytest.raises(LdCacheError, match="longer than"):
        parse_ld_so_cache(bytes(blob))
    # entries pointing into one 4000-byte string at successive offsets: ~8 MB of text from a
    # 100 kB file
    n = 4000
    strings = b"b" * 4000 + b"\0"
    head = ldcache.CACHEMAGIC_VERSION_NEW + struct.pack("<IIB3xI12x", n, len(strings), 2, 0)
    size = 48 + 24 * n
    body = b"".join(
        struct.pack("<iIIIQ", 0x303, size + (i % 3999), size + (i % 3999), 0, 0) for i in range(n)
    )
    start = time.monotonic()
    with pytest.raises(LdCacheError, match="overlap"):
        parse_ld_so_cache(head + body + strings)
    assert time.monotonic() - start < 5


def test_not_bytes_and_too_large() -> None:
    with pytest.raises(LdCacheError, match="not bytes"):
        parse_ld_so_cache(12345)  # type: ignore[arg-type]
    big = ldcache.CACHEMAGIC_VERSION_NEW + b"\0" * ldcache.MAX_CACHE_SIZE
    with pytest.raises(LdCacheError, match="too large"):
        parse_ld_so_cache(big)
    assert parse_ld_so_cache(memoryview(build_cache(SAMPLE))).entries


def test_ld_cache_error_shape() -> None:
    err = LdCacheError("/etc/ld.so.cache", "bad magic")
    assert isinstance(err, ValueError)
    assert (err.source, err.reason) == ("/etc/ld.so.cache", "bad magic")
    assert str(err) == "/etc/ld.so.cache: not a usable ld.so cache: bad magic"
    copy = pickle.loads(pickle.dumps(err))
    assert (type(copy), copy.source, copy.reason, str(copy)) == (
        LdCacheError,
        err.source,
        err.reason,
        str(err),
    )


SEEDS = [build_cache(SAMPLE, fmt) for fmt in FORMATS] + [build_cache(SAMPLE, byteorder="big")]


@FUZZ
@given(data=st.data())
def test_random_corruption_gives_a_cache_or_ld_cache_error(data: st.DataObject) -> None:
    blob = bytearray(data.draw(st.sampled_from(SEEDS)))
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        kind = data.draw(st.sampled_from(["byte", "u32", "cut", "insert"]))
        if kind == "byte":
            blob[pos] = data.draw(st.integers(0, 255))
        elif kind == "u32" and pos + 4 <= len(blob):
            value = data.draw(st.sampled_from([0, 1, 3, 4, 0x7FFFFFFF, 0xFFFFFFFF, len(blob), pos]))
            struct.pack_into("<I", blob, pos, value)
        elif kind == "cut":
            del blob[pos:]
            if not blob:
                break
        elif kind == "insert":
            blob[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
    try:
        cache = parse_ld_so_cache(bytes(blob))
    except LdCacheError:
        return
    for entry in cache.entries[:8]:
        cache.lookup(entry.name, **X86_64, hwcaps_subdirs=HWCAPS_ALL)
        cache.lookup(entry.name, elf_class=32, machine=3)


@FUZZ
@given(
    prefix=st.sampled_from([ldcache.CACHEMAGIC + b"\0", ldcache.CACHEMAGIC_VERSION_NEW, b""]),
    tail=st.binary(max_size=600),
)
def test_random_bytes_after_magic(prefix: bytes, tail: bytes) -> None:
    try:
        parse_ld_so_cache(prefix + tail)
    except LdCacheError:
        pass


# --- read_ld_so_cache -----------------------------------------------------------------------------


def test_read_missing_file_is_none(tmp_path: Path) -> None:
    assert read_ld_so_cache(str(tmp_path / "nope" / "ld.so.cache")) is None


def test_read_unreadable_file_is_ld_cache_error(tmp_path: Path) -> None:
    with pytest.raises(LdCacheError, match="cannot read") as info:
        read_ld_so_cache(str(tmp_path))  # a directory
    assert isinstance(info.value.__cause__, OSError) and info.value.source == str(tmp_path)


@pytest.mark.skipif(
    sys.platform == "win32" or (hasattr(os, "geteuid") and os.geteuid() == 0),
    reason="POSIX permissions (root reads anything)",
)
def test_read_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "ld.so.cache"
    path.write_bytes(build_cache(SAMPLE))
    path.chmod(0)
    try:
        with pytest.raises(LdCacheError, match="cannot read"):
            read_ld_so_cache(str(path))
    finally:
        path.chmod(0o644)


def test_read_corrupt_and_good_files(tmp_path: Path) -> None:
    path = tmp_path / "ld.so.cache"
    path.write_bytes(b"not a cache at all")
    with pytest.raises(LdCacheError, match="unknown magic") as info:
        read_ld_so_cache(str(path))
    assert info.value.source == str(path)
    path.write_bytes(build_cache(SAMPLE, "compat"))
    cache = read_ld_so_cache(str(path))
    assert cache is not None and cache.format == "compat" and len(cache.entries) == len(SAMPLE)


# --- system_search -------------------------------------------------------------------------

# `/lib64/ld-linux-x86-64.so.2 --help` on Debian 12 (glibc 2.36), verbatim.
DEBIAN12_HELP = """\
Usage: /lib64/ld-linux-x86-64.so.2 [OPTION]... EXECUTABLE-FILE [ARGS-FOR-PROGRAM...]
You have invoked 'ld.so', the program interpreter for dynamically-linked
ELF programs.  Usually, the program interpreter is invoked automatically
when a dynamically-linked executable is started.

You may invoke the program interpreter program directly from the command
line to load and run an ELF executable file; this is like executing that
file itself, but always uses the program interpreter you invoked,
instead of the program interpreter specified in the executable file you
run.  Invoking the program interpreter directly provides access to
additional diagnostics, and changing the dynamic linker behavior without
setting environment variables (which would be inherited by subprocesses).

  --list                list all dependencies and how they are resolved
  --verify              verify that given object really is a dynamically linked
                        object we can handle
  --inhibit-cache       Do not use /etc/ld.so.cache
  --library-path PATH   use given PATH instead of content of the environment
                        variable LD_LIBRARY_PATH
  --glibc-hwcaps-prepend LIST
                        search glibc-hwcaps subdirectories in LIST
  --glibc-hwcaps-mask LIST
                        only search built-in subdirectories if in LIST
  --inhibit-rpath LIST  ignore RUNPATH and RPATH information in object names
                        in LIST
  --audit LIST          use objects named in LIST as auditors
  --preload LIST        preload objects named in LIST
  --argv0 STRING        set argv[0] to STRING before running
  --list-tunables       list all tunables with minimum and maximum values
  --list-diagnostics    list diagnostics information
  --help                display this help and exit
  --version             output version information and exit

This program interpreter self-identifies as: /lib64/ld-linux-x86-64.so.2

Shared library search path:
  (libraries located via /etc/ld.so.cache)
  /lib/x86_64-linux-gnu (system search path)
  /usr/lib/x86_64-linux-gnu (system search path)
  /lib (system search path)
  /usr/lib (system search path)

Subdirectories of glibc-hwcaps directories, in priority order:
  x86-64-v4 (supported, searched)
  x86-64-v3 (supported, searched)
  x86-64-v2 (supported, searched)

Legacy HWCAP subdirectories under library search path directories:
  haswell (AT_PLATFORM; supported, searched)
  tls (supported, searched)
  avx512_1 (supported, searched)
  x86_64 (supported, searched)
"""

# glibc 2.31 and older have no --help: it is taken for the program to run (exit 127).
OLD_GLIBC_STDERR = (
    "--help: error while loading shared libraries: --help: cannot open shared object file\n"
)

# glibc <= 2.31 when run without a program: usage only, no search path.
OLD_GLIBC_USAGE = """\
Usage: ld.so [OPTION]... EXECUTABLE-FILE [ARGS-FOR-PROGRAM...]
You have invoked `ld.so', the helper program for shared library executables.
This program usually lives in the file `/lib/ld.so', and special directives
in executable files using ELF shared libraries tell the system's program
loader to load the helper program from this file.  This helper program loads
the shared libraries needed by the program executable, prepares the program
to run, and runs it.  You may invoke this helper program directly from the
command line to load and run an ELF executable file; this is like executing
that file itself, but always uses this helper program from the file you
specified, instead of the helper program file specified in the executable
file you run.  This is mostly of use for maintainers to test new versions
of this helper program; chances are you did not intend to run this program.

  --list                list all dependencies and how they are resolved
  --verify              verify that given object really is a dynamically linked
                        object we can handle
  --inhibit-cache       Do not use /etc/ld.so.cache
  --library-path PATH   use given PATH instead of content of the environment
                        variable LD_LIBRARY_PATH
  --inhibit-rpath LIST  ignore RUNPATH and RPATH information in object names
                        in LIST
  --audit LIST          use objects named in LIST as auditors
"""

# glibc 2.32 (elf/dl-usage.c before glibc-hwcaps): search path, no subdirectories.
GLIBC_232_HELP = """\
This program interpreter self-identifies as: /lib64/ld-linux-x86-64.so.2

Shared library search path:
  (libraries located via /etc/ld.so.cache)
  /lib64 (system search path)
  /usr/lib64 (system search path)
"""

# glibc 2.37+ layout (no legacy section) with LD_LIBRARY_PATH set, --glibc-hwcaps-prepend and
# --glibc-hwcaps-mask in use: the markers elf/dl-usage.c prints.
FEDORA_MASKED_HELP = """\
This program interpreter self-identifies as: /lib64/ld-linux-x86-64.so.2

Shared library search path:
  /opt/custom/lib (LD_LIBRARY_PATH)
  (libraries located via /etc/ld.so.cache)
  /lib64 (system search path)
  /usr/lib64 (system search path)

Subdirectories of glibc-hwcaps directories, in priority order:
  mine (searched)
  x86-64-v4 (masked)
  x86-64-v3 (supported, masked)
  x86-64-v2 (supported, searched)
"""

NO_HWCAPS_HELP = """\
Shared library search path:
  (libraries located via /etc/ld.so.cache)
  /lib/aarch64-linux-gnu (system search path)
  /usr/lib/aarch64-linux-gnu (system search path)
  /lib (system search path)
  /usr/lib (system search path)

No subdirectories of glibc-hwcaps directories are searched.
"""


class FakeRun:
    def __init__(
        self,
        stdout: str = "",
        returncode: int = 0,
        stderr: str = "",
        raises: Optional[BaseException] = None,
        as_text: bool = False,
    ) -> None:
        self.stdout, self.returncode, self.stderr, self.raises, self.as_text = (
            stdout,
            returncode,
            stderr,
            raises,
            as_text,
        )
        self.calls: List[Tuple[List[str], Dict[str, Any]]] = []

    def __call__(self, argv: List[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        self.calls.append((argv, kwargs))
        if self.raises is not None:
            raise self.raises
        out: Any = self.stdout if self.as_text else self.stdout.encode()
        err: Any = self.stderr if self.as_text else self.stderr.encode()
        return subprocess.CompletedProcess(argv, self.returncode, out, err)


def no_dirs(path: str) -> bool:
    return False


def test_system_search_debian12_help() -> None:
    run = FakeRun(DEBIAN12_HELP)
    got = system_search(machine=62, run=run, isdir=no_dirs)
    assert got == SystemSearch(
        interpreter="/lib64/ld-linux-x86-64.so.2",
        system_dirs=("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib"),
        hwcaps_subdirs=("x86-64-v4", "x86-64-v3", "x86-64-v2"),
        legacy_hwcaps=("haswell", "tls", "avx512_1", "x86_64"),
        source="ld.so --help",
    )
    ((argv, kwargs),) = run.calls
    assert argv == ["/lib64/ld-linux-x86-64.so.2", "--help"]
    assert kwargs["timeout"] == 5 and kwargs["check"] is False


def test_system_search_other_help_layouts() -> None:
    masked = system_search(
        "/lib64/ld-linux-x86-64.so.2", machine=62, run=FakeRun(FEDORA_MASKED_HELP, as_text=True)
    )
    assert masked.system_dirs == (
        "/lib64",
        "/usr/lib64",
    )  # LD_LIBRARY_PATH entries are not system dirs
    assert masked.hwcaps_subdirs == (
        "mine",
        "x86-64-v2",
    )  # prepended, then supported and not masked
    assert masked.legacy_hwcaps == () and masked.source == "ld.so --help"
    g232 = system_search(machine=62, run=FakeRun(GLIBC_232_HELP), isdir=no_dirs)
    assert (g232.system_dirs, g232.hwcaps_subdirs, g232.source) == (
        ("/lib64", "/usr/lib64"),
        (),
        "ld.so --help",
    )
    arm = system_search(machine=183, run=FakeRun(NO_HWCAPS_HELP))
    assert arm.interpreter == "/lib/ld-linux-aarch64.so.1"
    assert arm.system_dirs[0] == "/lib/aarch64-linux-gnu" and arm.hwcaps_subdirs == ()
    assert parse_interpreter_help(OLD_GLIBC_USAGE) is None


def debian(path: str) -> bool:
    return path in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64")


def fedora(path: str) -> bool:
    return path in ("/lib64", "/usr/lib64")


@pytest.mark.parametrize(
    "run",
    [
        FakeRun(OLD_GLIBC_USAGE, returncode=127),
        FakeRun("", returncode=127, stderr=OLD_GLIBC_STDERR),
        FakeRun(raises=FileNotFoundError(2, "No such file or directory")),
        FakeRun(raises=OSError(8, "Exec format error")),
        FakeRun(raises=subprocess.TimeoutExpired(["ld.so", "--help"], 5)),
        FakeRun(DEBIAN12_HELP.split("Shared library")[0]),
    ],
    ids=["old-usage", "old-error", "missing", "foreign-arch", "timeout", "no-search-path"],
)
def test_system_search_falls_back_to_builtin(run: FakeRun) -> None:
    deb = system_search(machine=62, run=run, isdir=debian)
    assert deb == SystemSearch(
        "/lib64/ld-linux-x86-64.so.2",
        ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib"),
        (),
        (),
        "builtin",
    )
    assert system_search(machine=62, run=run, isdir=fedora).system_dirs == ("/lib64", "/usr/lib64")
    assert system_search(machine=62, run=run, isdir=no_dirs).system_dirs == ("/lib", "/usr/lib")
    assert system_search(machine=3, run=run, isdir=fedora).system_dirs == ("/lib", "/usr/lib")
    aarch64 = system_search(machine=183, run=run, isdir=lambda p: p == "/usr/lib/aarch64-linux-gnu")
    assert aarch64.system_dirs == (
        "/lib/aarch64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/lib",
        "/usr/lib",
    )
    assert aarch64.interpreter == "/lib/ld-linux-aarch64.so.1"


def test_default_interpreter() -> None:
    assert default_interpreter(62) == "/lib64/ld-linux-x86-64.so.2"
    assert default_interpreter(183) == "/lib/ld-linux-aarch64.so.1"
    assert default_interpreter(3) == "/lib/ld-linux.so.2"
    with pytest.raises(ValueError):
        default_interpreter(0x9999)


@linux_only
def test_system_search_with_the_real_interpreter() -> None:
    _, machine = host_abi()
    interpreter = default_interpreter(machine)
    if not os.path.exists(interpreter):
        unavailable(f"program interpreter {interpreter} missing")
    got = system_search()
    assert got.interpreter == interpreter
    glibc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    version = (
        tuple(int(p) for p in glibc.split()[-1].split(".")[:2])
        if glibc.startswith("glibc")
        else (0, 0)
    )
    if version < (2, 32):
        assert got.source == "builtin"
        return
    assert got.source == "ld.so --help"
    assert got.system_dirs and all(os.path.isabs(d) for d in got.system_dirs)
    assert any(os.path.isdir(d) for d in got.system_dirs)
    real = subprocess.run([interpreter, "--help"], capture_output=True, check=True).stdout.decode()
    for d in got.system_dirs:
        assert f"  {d} (system search path)\n" in real
    for sub in got.hwcaps_subdirs:
        assert re.search(rf"^  {re.escape(sub)} \((supported, )?searched\)$", real, re.MULTILINE)
    if version >= (2, 37):
        assert got.legacy_hwcaps == ()
    # The same answer as the canned Debian 12 fixture on such a machine
    if real == DEBIAN12_HELP:
        assert got == system_search(machine=62, run=FakeRun(DEBIAN12_HELP))
