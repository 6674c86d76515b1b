"""``tests/support/elfbuild.py`` builds what it is asked for (checked with binutils' readelf,
independently of torchdll's ELF reader), caches by content and places copies and links."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import elfbuild
from tests.support.tiers import unavailable


@pytest.fixture(scope="module")
def readelf(gcc: str) -> str:
    path = shutil.which("readelf")
    if path is None:
        unavailable("readelf not found (apt-get install binutils)")
    return path


def _re(readelf: str, *args: str) -> str:
    return subprocess.run([readelf, "-W", *args], capture_output=True, text=True,
                          check=True).stdout


def test_dynamic_section(tmp_path: Path, readelf: str) -> None:
    b = elfbuild.build_lib(tmp_path / "link", "libeb.so.1", soname="libeb.so.1",
                           defines=["eb_f"])
    c = elfbuild.build_lib(tmp_path / "link", "libec.so.2", soname="libec.so.2",
                           defines=["ec_f"])
    a = elfbuild.build_lib(tmp_path / "out", "libea.so", soname="libea.so.1", needed=[c, b, "-lm"],
                           rpath=["$ORIGIN/../lib", "", "/abs/x"], nodeflib=True, uses=["eb_f"])
    d = _re(readelf, "-d", str(a))
    assert "Library soname: [libea.so.1]" in d
    assert re.findall(r"Shared library: \[(.*?)\]", d) == ["libec.so.2", "libeb.so.1", "libm.so.6"]
    assert "Library rpath: [$ORIGIN/../lib::/abs/x]" in d
    assert "RUNPATH" not in d
    assert "NODEFLIB" in d
    assert "BIND_NOW" not in d and "FLAGS" in d  # -z lazy: no DF_BIND_NOW/DF_1_NOW
    r = elfbuild.build_lib(tmp_path / "out", "libr.so", runpath=["$ORIGIN"], needed=[b])
    d = _re(readelf, "-d", str(r))
    assert "Library runpath: [$ORIGIN]" in d and "(RPATH)" not in d
    assert "SONAME" not in d
    with pytest.raises(ValueError):
        elfbuild.build_lib(tmp_path, "x.so", rpath=["a"], runpath=["b"])


def test_versions_defined_and_needed(tmp_path: Path, readelf: str) -> None:
    p = elfbuild.build_lib(tmp_path / "link", "libev.so.1", soname="libev.so.1",
                           defines=["v_new@@EV_2", "v_old@EV_1", "v_plain"],
                           version_script={"EV_0": []})
    v = _re(readelf, "-V", str(p))
    # an empty node is a weak definition (ld sets VER_FLG_WEAK); order: script, then defines
    assert re.findall(r"Flags: (?:none|WEAK)\s+Index: \d+\s+Cnt: \d+\s+Name: (\S+)", v) == [
        "EV_0", "EV_2", "EV_1"]
    syms = _re(readelf, "--dyn-syms", str(p))
    assert re.search(r" v_new@@EV_2$", syms, re.MULTILINE)
    assert re.search(r" v_old@EV_1$", syms, re.MULTILINE)
    assert re.search(r" v_plain$", syms, re.MULTILINE)
    u = elfbuild.build_lib(tmp_path / "out", "libeu.so", needed=[p],
                           uses=["v_new", "v_old@EV_1"], refs=["v_plain"])
    v = _re(readelf, "-V", str(u))
    assert "File: libev.so.1" in v
    assert sorted(re.findall(r"Name: (EV_\d)\s+Flags: none", v)) == ["EV_1", "EV_2"]
    rel = _re(readelf, "-r", str(u))
    # uses: PLT (lazy) relocations; refs: relocated at load time
    assert re.search(r"R_X86_64_JUMP_SLOT\s+\S+\s+v_new@EV_2", rel)
    assert re.search(r"R_X86_64_JUMP_SLOT\s+\S+\s+v_old@EV_1", rel)
    assert re.search(r"R_X86_64_(64|GLOB_DAT)\s+\S+\s+v_plain", rel)
    assert "JUMP_SLOT" not in next(ln for ln in rel.splitlines() if "v_plain" in ln)


def test_constructor_uses(tmp_path: Path, readelf: str) -> None:
    p = elfbuild.build_lib(tmp_path, "libctor.so", uses=["x_f"], uses_from="constructor")
    assert "INIT_ARRAY" in _re(readelf, "-d", str(p))
    with pytest.raises(ValueError):
        elfbuild.build_lib(tmp_path, "liby.so", uses=["x"], uses_from="elsewhere")


def test_wrong_class_objects(tmp_path: Path, readelf: str) -> None:
    p = elfbuild.build_lib(tmp_path, "lib32.so.1", soname="lib32.so.1", defines=["f"], m32=True)
    h = _re(readelf, "-h", str(p))
    assert "ELF32" in h and "80386" in h
    if elfbuild.m32_links():  # the plain x86-64 toolchain links -m32 -nostdlib objects
        assert "Library soname: [lib32.so.1]" in _re(readelf, "-d", str(p))
    stub = elfbuild.elf32_stub(tmp_path / "stub", "libs.so")
    data = stub.read_bytes()
    assert data[:5] == b"\x7fELF\x01" and len(data) == 512
    assert "ELF32" in _re(readelf, "-h", str(stub))
    with pytest.raises(ValueError):
        elfbuild.build_lib(tmp_path, "x.so", m32=True, needed=[p])


def test_cache_hits_and_fresh_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     gcc: str) -> None:
    monkeypatch.setenv("TORCHDLL_ELF_CACHE", str(tmp_path / "cache"))
    a = elfbuild.build_lib(tmp_path / "one", "libcc.so", defines=["cc_f"], marker="m1")
    calls = []
    real_run = subprocess.run

    def spy(argv, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(argv)
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)
    b = elfbuild.build_lib(tmp_path / "two", "libcc.so", defines=["cc_f"], marker="m1")
    assert not [c for c in calls if "-shared" in c]  # no gcc run: a cache hit
    assert a.read_bytes() == b.read_bytes()
    assert os.stat(a).st_ino != os.stat(b).st_ino  # a copy, never the cached inode
    c = elfbuild.build_lib(tmp_path / "three", "libcc.so", defines=["cc_f"], marker="m2")
    assert [x for x in calls if "-shared" in x]  # another marker: another build
    assert c.read_bytes() != a.read_bytes()
    assert len(list((tmp_path / "cache").glob("*/*/libcc.so"))) == 2
    assert elfbuild.prune(max_age_days=0) == 2 or not list((tmp_path / "cache").glob("*/*"))


def test_place(tmp_path: Path, gcc: str) -> None:
    src = elfbuild.build_lib(tmp_path / "a", "libpl.so.1", defines=["p"])
    cp = elfbuild.place(src, tmp_path / "b" / "libpl.so.1")
    assert os.stat(cp).st_ino != os.stat(src).st_ino
    ln = elfbuild.place(src, tmp_path / "c" / "libpl.so.1", "symlink")
    assert os.readlink(ln) == "../a/libpl.so.1" and os.path.samefile(ln, src)
    hl = elfbuild.place(src, tmp_path / "d" / "libpl.so.1", "hardlink")
    assert os.stat(hl).st_ino == os.stat(src).st_ino
    with pytest.raises(ValueError):
        elfbuild.place(src, tmp_path / "e", "teleport")


def test_split_symbol() -> None:
    assert elfbuild.split_symbol("f") == ("f", None, True)
    assert elfbuild.split_symbol("f@@V") == ("f", "V", True)
    assert elfbuild.split_symbol("f@V.1") == ("f", "V.1", False)
    with pytest.raises(ValueError):
        elfbuild.generate_source(defines=["not an identifier"])
