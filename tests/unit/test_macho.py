"""torchdll._macho and torchdll.dyld on hand-built Mach-O images.

A small builder below writes thin (64- and 32-bit, little- and big-endian) and fat
(``FAT_MAGIC`` and ``FAT_MAGIC_64``) images with :mod:`struct`, following <mach-o/loader.h> and
<mach-o/fat.h>. Every image ends with a ``__LINKEDIT`` payload its segment command covers, so a
file cut short anywhere is a truncated image.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torchdll import _macho, dyld
from torchdll._macho import DylibKind, MachOFacts, facts_from_buffer, is_macho, read_macho_facts
from torchdll.dyld import (
    DyldContext,
    DyldOutcome,
    DyldRule,
    closure,
    dyld_environment_findings,
    framework_partial_path,
    resolve_install_name,
)
from torchdll.errors import InvalidImageError

# --------------------------------------------------------------------------------------------
# Builder
# --------------------------------------------------------------------------------------------

ARM64 = 0x0100000C
X86_64 = 0x01000007
I386 = 7
PPC = 18
MH_DYLIB = 6
MH_BUNDLE = 8
MH_EXECUTE = 2

LC_SEGMENT = 0x1
LC_LOAD_DYLIB = 0xC
LC_ID_DYLIB = 0xD
LC_SEGMENT_64 = 0x19
LC_UUID = 0x1B
LC_LOAD_WEAK_DYLIB = 0x80000018
LC_RPATH = 0x8000001C
LC_REEXPORT_DYLIB = 0x8000001F
LC_LAZY_LOAD_DYLIB = 0x20
LC_LOAD_UPWARD_DYLIB = 0x80000023
LC_VERSION_MIN_MACOSX = 0x24
LC_DYLD_ENVIRONMENT = 0x27
LC_BUILD_VERSION = 0x32


def ver(major: int, minor: int = 0, patch: int = 0) -> int:
    return (major << 16) | (minor << 8) | patch


class Cmds:
    """Load commands for one image, in one byte order and word size."""

    def __init__(self, *, big: bool = False, is64: bool = True) -> None:
        self.e = ">" if big else "<"
        self.is64 = is64
        self.items: List[bytes] = []

    def _pad(self, n: int) -> int:
        a = 8 if self.is64 else 4
        return -(-n // a) * a

    def _with_string(self, cmd: int, fixed: bytes, text: str) -> "Cmds":
        raw = text.encode() + b"\0"
        head = 8 + len(fixed)
        size = self._pad(head + len(raw))
        body = struct.pack(self.e + "II", cmd, size) + fixed + raw
        self.items.append(body.ljust(size, b"\0"))
        return self

    def dylib(self, cmd: int, name: str, current: int = ver(1), compat: int = ver(1),
              stamp: int = 2) -> "Cmds":
        fixed = struct.pack(self.e + "IIII", 24, stamp, current, compat)
        return self._with_string(cmd, fixed, name)

    def id(self, name: str, current: int = ver(1, 2, 3), compat: int = ver(1)) -> "Cmds":
        return self.dylib(LC_ID_DYLIB, name, current, compat)

    def load(self, name: str, **kw: int) -> "Cmds":
        return self.dylib(LC_LOAD_DYLIB, name, **kw)

    def rpath(self, path: str) -> "Cmds":
        return self._with_string(LC_RPATH, struct.pack(self.e + "I", 12), path)

    def dyld_env(self, text: str) -> "Cmds":
        return self._with_string(LC_DYLD_ENVIRONMENT, struct.pack(self.e + "I", 12), text)

    def build_version(self, platform: int, minos: int, sdk: int, ntools: int = 1) -> "Cmds":
        tools = b"".join(struct.pack(self.e + "II", 3, ver(1000)) for _ in range(ntools))
        size = 24 + len(tools)
        self.items.append(struct.pack(self.e + "IIIIII", LC_BUILD_VERSION, size, platform,
                                      minos, sdk, ntools) + tools)
        return self

    def version_min(self, version: int, sdk: int, cmd: int = LC_VERSION_MIN_MACOSX) -> "Cmds":
        self.items.append(struct.pack(self.e + "IIII", cmd, 16, version, sdk))
        return self

    def uuid(self, raw: bytes) -> "Cmds":
        self.items.append(struct.pack(self.e + "II", LC_UUID, 24) + raw)
        return self

    def segment(self, name: str, fileoff: int, filesize: int) -> "Cmds":
        seg = name.encode().ljust(16, b"\0")
        if self.is64:
            body = struct.pack(self.e + "II16sQQQQiiII", LC_SEGMENT_64, 72, seg, 0, filesize,
                               fileoff, filesize, 1, 1, 0, 0)
        else:
            body = struct.pack(self.e + "II16sIIIIiiII", LC_SEGMENT, 56, seg, 0, filesize,
                               fileoff, filesize, 1, 1, 0, 0)
        self.items.append(body)
        return self

    def raw(self, data: bytes) -> "Cmds":
        self.items.append(data)
        return self


def image(cmds: Cmds, *, cputype: int = ARM64, cpusubtype: int = 0, filetype: int = MH_DYLIB,
          flags: int = 0x85, payload: int = 48) -> bytes:
    """A thin image: header, the commands, a __LINKEDIT segment command over ``payload`` bytes
    of trailing data (so any truncation cuts into something the loader needs)."""
    e, is64 = cmds.e, cmds.is64
    hsize = 32 if is64 else 28
    seg_size = 72 if is64 else 56
    body = b"".join(cmds.items)
    data_off = hsize + len(body) + seg_size
    data_off = -(-data_off // 16) * 16
    seg = Cmds(big=e == ">", is64=is64).segment("__LINKEDIT", data_off, payload).items[0]
    all_cmds = body + seg
    ncmds = len(cmds.items) + 1
    magic = 0xFEEDFACF if is64 else 0xFEEDFACE
    head = struct.pack(e + "IIIIIII", magic, cputype, cpusubtype, filetype, ncmds, len(all_cmds),
                       flags)
    if is64:
        head += b"\0" * 4
    blob = (head + all_cmds).ljust(data_off, b"\0")
    return blob + bytes((i * 7 + 1) & 0xFF for i in range(payload))


def fat(slices: Sequence[Tuple[int, int, bytes]], *, wide: bool = False, align: int = 4) -> bytes:
    """A universal file holding ``(cputype, cpusubtype, image)`` slices, 2**align aligned."""
    entry = 32 if wide else 20
    pos = 8 + entry * len(slices)
    table = b""
    body = b""
    step = 1 << align
    for cpu, sub, blob in slices:
        off = -(-pos // step) * step
        body += b"\0" * (off - pos) + blob
        if wide:
            table += struct.pack(">IIQQII", cpu, sub, off, len(blob), align, 0)
        else:
            table += struct.pack(">IIIII", cpu, sub, off, len(blob), align)
        pos = off + len(blob)
    magic = 0xCAFEBABF if wide else 0xCAFEBABE
    return struct.pack(">II", magic, len(slices)) + table + body


def full_dylib(name: str = "@rpath/libfull.dylib") -> bytes:
    c = Cmds()
    c.id(name, current=ver(2, 1, 3), compat=ver(2))
    c.load("/usr/lib/libSystem.B.dylib", current=ver(1319, 100, 3), compat=ver(1))
    c.dylib(LC_LOAD_WEAK_DYLIB, "/System/Library/Frameworks/Metal.framework/Versions/A/Metal",
            current=ver(306, 5, 16), compat=ver(1))
    c.dylib(LC_REEXPORT_DYLIB, "@rpath/libreexported.dylib", current=ver(3), compat=ver(3))
    c.dylib(LC_LAZY_LOAD_DYLIB, "@loader_path/liblazy.dylib", current=ver(4), compat=ver(4))
    c.dylib(LC_LOAD_UPWARD_DYLIB, "@executable_path/../lib/libup.dylib", current=ver(5),
            compat=ver(5), stamp=7)
    c.rpath("@loader_path")
    c.rpath("@loader_path/../lib")
    c.rpath("/opt/lib")
    c.rpath("@loader_path")  # duplicated on purpose
    c.build_version(1, ver(11, 0), ver(14, 2))
    c.uuid(bytes(range(16)))
    c.dyld_env("DYLD_LIBRARY_PATH=@executable_path/lib")
    return image(c)


def write(tmp: Path, name: str, data: bytes) -> str:
    p = tmp / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return str(p)


# --------------------------------------------------------------------------------------------
# _macho: facts
# --------------------------------------------------------------------------------------------


def test_thin_dylib_every_load_command(tmp_path: Path) -> None:
    path = write(tmp_path, "libfull.dylib", full_dylib())
    f = read_macho_facts(path)
    assert (f.arch, f.arches, f.fat) == ("arm64", ("arm64",), False)
    assert (f.cputype, f.cpusubtype, f.filetype, f.flags) == (ARM64, 0, MH_DYLIB, 0x85)
    assert f.is_64 and f.little_endian and f.is_dylib and f.filetype_name == "dylib"
    assert f.install_name == "@rpath/libfull.dylib"
    assert (f.id_current_version, f.id_compatibility_version) == (ver(2, 1, 3), ver(2))
    assert [(d.name, d.kind, d.current, d.compatibility) for d in f.dependencies] == [
        ("/usr/lib/libSystem.B.dylib", DylibKind.LOAD, "1319.100.3", "1.0.0"),
        ("/System/Library/Frameworks/Metal.framework/Versions/A/Metal", DylibKind.WEAK,
         "306.5.16", "1.0.0"),
        ("@rpath/libreexported.dylib", DylibKind.REEXPORT, "3.0.0", "3.0.0"),
        ("@loader_path/liblazy.dylib", DylibKind.LAZY, "4.0.0", "4.0.0"),
        ("@executable_path/../lib/libup.dylib", DylibKind.UPWARD, "5.0.0", "5.0.0"),
    ]
    assert f.dependencies[1].weak and not f.dependencies[0].weak
    assert f.dependencies[4].timestamp == 7
    assert f.dependency_names(DylibKind.WEAK) == (
        "/System/Library/Frameworks/Metal.framework/Versions/A/Metal",)
    # raw, in order, duplicates kept (dyld walks them so)
    assert f.rpaths == ("@loader_path", "@loader_path/../lib", "/opt/lib", "@loader_path")
    assert any("more than once" in w for w in f.warnings)
    assert f.min_os is not None
    assert (f.min_os.platform, f.min_os.text, f.min_os.sdk, f.min_os.command) == (
        "macos", "11.0", ver(14, 2), "LC_BUILD_VERSION")
    assert f.min_os.parts == (11, 0, 0)
    assert f.uuid == "00010203-0405-0607-0809-0A0B0C0D0E0F"
    assert f.dyld_environment == ("DYLD_LIBRARY_PATH=@executable_path/lib",)
    assert f.ncmds == 14 and f.slice_offset == 0 and f.slice_size == f.size == os.path.getsize(path)
    assert f.mtime_ns == os.stat(path).st_mtime_ns
    assert is_macho(path)


def test_builder_writes_what_macholib_reads(tmp_path: Path) -> None:
    """The hand-built images are real Mach-O: an independent parser agrees (when installed;
    the wheel tier runs the same oracle on torch's own files and requires it)."""
    mach_o = pytest.importorskip("macholib.mach_o")
    MachO = pytest.importorskip("macholib.MachO").MachO
    path = write(tmp_path, "u.dylib", fat([(X86_64, 3, image(Cmds().id("@rpath/x.dylib"),
                                                             cputype=X86_64)),
                                           (ARM64, 0, full_dylib())]))
    m = MachO(path)
    assert [int(h.header.cputype) for h in m.headers] == [X86_64, ARM64]
    h = m.headers[1]
    names, rpaths = [], []
    for lc, cmd, data in h.commands:
        if lc.cmd == mach_o.LC_RPATH:
            rpaths.append(data.split(b"\0", 1)[0].decode())
        elif hasattr(cmd, "current_version") and lc.cmd != mach_o.LC_ID_DYLIB:
            names.append((data.split(b"\0", 1)[0].decode(), str(cmd.current_version)))
    f = read_macho_facts(path, arch="arm64")
    assert names == [(d.name, d.current) for d in f.dependencies]
    assert tuple(rpaths) == f.rpaths
    assert (int(h.header.ncmds), int(h.header.flags)) == (f.ncmds, f.flags)


def test_version_min_macosx_and_patch_level(tmp_path: Path) -> None:
    c = Cmds().version_min(ver(10, 9, 5), ver(10, 15)).load("/usr/lib/libc++.1.dylib")
    f = read_macho_facts(write(tmp_path, "a.so", image(c, filetype=MH_BUNDLE)))
    assert f.min_os is not None
    assert (f.min_os.platform, f.min_os.text, f.min_os.command) == (
        "macos", "10.9.5", "LC_VERSION_MIN_MACOSX")
    assert f.install_name is None and f.is_bundle and f.filetype_name == "bundle"


def test_zippered_build_version_prefers_macos_and_unknown_platform_warns() -> None:
    c = Cmds().build_version(6, ver(14, 0), ver(17)).build_version(1, ver(11, 0), ver(14))
    f = facts_from_buffer(image(c))
    assert f.min_os is not None and (f.min_os.platform, f.min_os.text) == ("macos", "11.0")
    g = facts_from_buffer(image(Cmds().build_version(99, ver(1), ver(1))))
    assert g.min_os is not None and g.min_os.platform == "platform-99"
    assert any("unknown platform 99" in w for w in g.warnings)


@pytest.mark.parametrize("wide", [False, True], ids=["FAT_MAGIC", "FAT_MAGIC_64"])
def test_fat_file_slices(tmp_path: Path, wide: bool) -> None:
    x86 = image(Cmds().id("@rpath/libx86.dylib").rpath("@loader_path/x86"), cputype=X86_64,
                cpusubtype=3)
    arm = image(Cmds().id("@rpath/libarm.dylib").rpath("@loader_path/arm"), cputype=ARM64)
    data = fat([(X86_64, 3, x86), (ARM64, 0, arm)], wide=wide)
    path = write(tmp_path, "libu.dylib", data)
    assert is_macho(path)
    a = read_macho_facts(path, arch="arm64")
    assert (a.arch, a.arches, a.fat) == ("arm64", ("x86_64", "arm64"), True)
    assert a.install_name == "@rpath/libarm.dylib" and a.rpaths == ("@loader_path/arm",)
    assert data[a.slice_offset : a.slice_offset + a.slice_size] == arm
    x = read_macho_facts(path, arch="x86_64")
    assert (x.arch, x.install_name, x.cputype) == ("x86_64", "@rpath/libx86.dylib", X86_64)
    assert data[x.slice_offset : x.slice_offset + x.slice_size] == x86
    default = read_macho_facts(path)
    assert default.arch == (_macho.host_arch() or "arm64")
    with pytest.raises(InvalidImageError, match=r"no arm64e slice .*x86_64, arm64"):
        read_macho_facts(path, arch="arm64e")


def test_fat_default_is_first_slice_without_known_arch() -> None:
    ppc = image(Cmds(big=True, is64=False).id("/usr/lib/libppc.dylib"), cputype=PPC)
    i386 = image(Cmds(is64=False).id("/usr/lib/lib386.dylib"), cputype=I386)
    f = facts_from_buffer(fat([(PPC, 0, ppc), (I386, 3, i386)]))
    if _macho.host_arch() is None:
        assert f.arch == "ppc" and f.install_name == "/usr/lib/libppc.dylib"
    assert f.arches == ("ppc", "i386")


def test_32_bit_and_big_endian_thin_images() -> None:
    f = facts_from_buffer(image(Cmds(is64=False).id("/usr/lib/lib32.dylib").rpath("/x"),
                                cputype=I386))
    assert (f.arch, f.is_64, f.little_endian, f.install_name, f.rpaths) == (
        "i386", False, True, "/usr/lib/lib32.dylib", ("/x",))
    b = facts_from_buffer(image(Cmds(big=True, is64=False).id("/usr/lib/libbe.dylib")
                                .load("/usr/lib/libSystem.B.dylib", current=ver(88, 1, 2)),
                                cputype=PPC))
    assert (b.arch, b.little_endian, b.install_name) == ("ppc", False, "/usr/lib/libbe.dylib")
    assert b.dependencies[0].current == "88.1.2"


def test_arch_names() -> None:
    assert _macho.arch_name(ARM64, 2 | 0x80000000) == "arm64e"
    assert _macho.arch_name(ARM64, 0) == "arm64"
    assert _macho.arch_name(X86_64, 8) == "x86_64h"
    assert _macho.arch_name(X86_64, 3) == "x86_64"
    assert _macho.arch_name(0x0200000C) == "arm64_32"
    assert _macho.arch_name(0x1234) == "cpu-0x1234"
    f = facts_from_buffer(image(Cmds(), cpusubtype=2 | 0x80000000))
    assert f.arch == "arm64e"
    with pytest.raises(InvalidImageError, match="the image is arm64e, not arm64"):
        facts_from_buffer(image(Cmds(), cpusubtype=2), arch="arm64")


def test_is_macho_sniffing(tmp_path: Path) -> None:
    assert not is_macho(write(tmp_path, "elf", b"\x7fELF" + b"\0" * 60))
    java = struct.pack(">IHH", 0xCAFEBABE, 0, 55) + b"\0" * 32  # Java 11 class file
    assert not is_macho(write(tmp_path, "A.class", java))
    assert not is_macho(write(tmp_path, "empty", b""))
    assert not is_macho(str(tmp_path))
    assert not is_macho(str(tmp_path / "missing"))
    assert is_macho(write(tmp_path, "cigam", struct.pack(">I", 0xFEEDFACF)))


# --------------------------------------------------------------------------------------------
# _macho: invalid input raises InvalidImageError with a reason, and nothing else
# --------------------------------------------------------------------------------------------


def _corrupt(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


def _first_cmd(data: bytes) -> int:
    return 32  # thin 64-bit header size: the first load command starts here


def test_invalid_images_have_specific_reasons(tmp_path: Path) -> None:
    good = image(Cmds().id("@rpath/liba.dylib").rpath("@loader_path"))
    cases: Dict[str, Tuple[bytes, str]] = {
        "empty": (b"", "empty file"),
        "elf": (b"\x7fELF" + b"\0" * 100, "an ELF file"),
        "pe": (b"MZ" + b"\0" * 100, "a PE file"),
        "lfs": (b"version https://git-lfs.github.com/spec/v1\n", "Git LFS pointer"),
        "short": (good[:20], "truncated inside the Mach-O header"),
        "sizeofcmds": (_corrupt(good, 20, "<I", len(good)), "load commands end at"),
        "ncmds": (_corrupt(good, 16, "<I", 1000), "cannot fit in sizeofcmds"),
        "cmdsize0": (_corrupt(good, 36, "<I", 0), "cmdsize 0 (less than 8)"),
        "cmdsize_odd": (_corrupt(good, 36, "<I", 42), "not a multiple of 4"),
        "cmdsize_big": (_corrupt(good, 36, "<I", 4096), "extends past the end of sizeofcmds"),
        "name_offset": (_corrupt(good, 40, "<I", 500), "outside its load command"),
        "too_many": (_corrupt(good, 16, "<I", _macho.MAX_LOAD_COMMANDS + 1), "exceeds the limit"),
        "java": (struct.pack(">IHH", 0xCAFEBABE, 0, 55) + b"\0" * 64, "Java class file"),
        "fat_empty": (struct.pack(">II", 0xCAFEBABE, 0), "lists no architectures"),
        "fat_short": (struct.pack(">II", 0xCAFEBABE, 2) + b"\0" * 10, "inside the fat header"),
    }
    unterminated = bytearray(good)
    id_size = struct.unpack_from("<I", good, 36)[0]
    unterminated[32 + 24 : 32 + id_size] = b"A" * (id_size - 24)
    cases["unterminated"] = (bytes(unterminated), "not NUL-terminated")
    two_ids = image(Cmds().id("@rpath/a.dylib").id("@rpath/b.dylib"))
    cases["two_ids"] = (two_ids, "more than one LC_ID_DYLIB")
    long_name = image(Cmds().load("/x/" + "a" * (_macho.MAX_NAME + 10)))
    cases["long_name"] = (long_name, f"longer than {_macho.MAX_NAME} bytes")
    seg_past = image(Cmds().segment("__TEXT", 0, 1 << 20))
    cases["segment"] = (seg_past, "truncated: segment __TEXT needs bytes up to 0x100000")
    small = image(Cmds().build_version(1, ver(11), ver(11)))
    cases["tools"] = (_corrupt(small, 32 + 20, "<I", 1000), "build tools do not fit")
    arm = image(Cmds().id("@rpath/l.dylib"))
    cases["fat_outside"] = (fat([(ARM64, 0, arm)])[:-10], "is outside the file")
    cases["fat_mismatch"] = (fat([(X86_64, 3, arm)]), "header says slice 0 is x86_64")
    cases["fat_nested"] = (fat([(ARM64, 0, fat([(ARM64, 0, arm)]))]),
                           "fat file nested inside a fat file")
    for name, (data, reason) in cases.items():
        path = write(tmp_path, name, data)
        with pytest.raises(InvalidImageError) as info:
            read_macho_facts(path)
        assert reason in info.value.reason, (name, info.value.reason)
        assert info.value.path == path


def test_os_errors_become_invalid_image_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match="no such file"):
        read_macho_facts(tmp_path / "missing.dylib")
    with pytest.raises(InvalidImageError, match="is a directory"):
        read_macho_facts(tmp_path)
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        with pytest.raises(InvalidImageError, match="not a regular file"):
            read_macho_facts(fifo)


@pytest.mark.parametrize("kind", ["thin64", "thin32be", "fat", "fat64"])
def test_truncation_at_every_offset(tmp_path: Path, kind: str) -> None:
    if kind == "thin64":
        data = full_dylib()
    elif kind == "thin32be":
        data = image(Cmds(big=True, is64=False).id("/usr/lib/libbe.dylib").rpath("/r"),
                     cputype=PPC)
    else:
        data = fat([(X86_64, 3, image(Cmds().id("@rpath/x.dylib"), cputype=X86_64)),
                    (ARM64, 0, full_dylib())], wide=kind == "fat64")
    read_macho_facts(write(tmp_path, "whole", data))  # the whole file is fine
    path = tmp_path / "cut"
    for n in range(len(data)):
        path.write_bytes(data[:n])
        with pytest.raises(InvalidImageError):
            read_macho_facts(path)


FUZZ = settings(max_examples=300, deadline=2000, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SEEDS = [full_dylib(),
         fat([(X86_64, 3, image(Cmds().id("@rpath/x.dylib").rpath("@loader_path"),
                                cputype=X86_64)), (ARM64, 0, full_dylib())]),
         image(Cmds(big=True, is64=False).id("/usr/lib/libbe.dylib").rpath("/r"), cputype=PPC)]


def _parse_only_invalid(data: bytes) -> Optional[MachOFacts]:
    try:
        return facts_from_buffer(data, "fuzz", arch=None)
    except InvalidImageError:
        return None


@FUZZ
@given(seed=st.sampled_from(SEEDS),
       edits=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), min_size=1,
                      max_size=12))
def test_random_byte_corruption_only_invalid_image_error(
    seed: bytes, edits: List[Tuple[int, int]]
) -> None:
    b = bytearray(seed)
    for off, val in edits:
        b[off % len(b)] = val
    f = _parse_only_invalid(bytes(b))
    if f is not None:
        assert f.arch in f.arches
        for d in f.dependencies:
            assert len(d.name.encode("utf-8", "backslashreplace")) <= 4 * _macho.MAX_NAME


@FUZZ
@given(seed=st.sampled_from(SEEDS), word=st.integers(0, 200),
       value=st.sampled_from([0, 1, 7, 8, 0x7F, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]))
def test_extreme_field_values_only_invalid_image_error(seed: bytes, word: int, value: int) -> None:
    b = bytearray(seed)
    off = (word * 4) % (len(b) - 3)
    fmt = ">I" if seed[:4] in (b"\xca\xfe\xba\xbe", b"\xfe\xed\xfa\xce") else "<I"
    struct.pack_into(fmt, b, off, value)
    _parse_only_invalid(bytes(b))


@FUZZ
@given(magic=st.sampled_from([b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf",
                              b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf"]),
       rest=st.binary(max_size=600))
def test_random_bodies_behind_a_magic(magic: bytes, rest: bytes) -> None:
    _parse_only_invalid(magic + rest)


def test_corrupted_files_on_disk_only_invalid_image_error(tmp_path: Path) -> None:
    # the file path (mmap) and the buffer path must agree on a sample of corruptions
    seed = SEEDS[1]
    path = tmp_path / "c.dylib"
    for i in range(0, len(seed), 7):
        b = bytearray(seed)
        b[i] ^= 0xFF
        path.write_bytes(bytes(b))
        try:
            on_disk: Optional[MachOFacts] = read_macho_facts(path)
        except InvalidImageError:
            on_disk = None
        in_memory = _parse_only_invalid(bytes(b))
        assert (on_disk is None) == (in_memory is None), i
        if on_disk is not None and in_memory is not None:
            assert on_disk.dependencies == in_memory.dependencies
            assert on_disk.rpaths == in_memory.rpaths


# --------------------------------------------------------------------------------------------
# dyld: the search for one install name
# --------------------------------------------------------------------------------------------


def vctx(files: Iterable[str], **kw: object) -> DyldContext:
    present: Set[str] = set(files)
    return DyldContext(exists=present.__contains__, **kw)  # type: ignore[arg-type]


def tried(res: dyld.DyldResolution) -> List[Tuple[str, str, str]]:
    return [(c.path, c.rule.value, c.outcome.value) for c in res.candidates]


def test_rpath_walks_the_loading_chain_innermost_first() -> None:
    stack = [
        ("/app/plugins/libplug.dylib", ["@loader_path/a", "/abs/b"]),
        ("/app/lib/libmid.dylib", ["@loader_path/../c/"]),
        ("/app/bin/exe", ["@executable_path/../d", "rel/e"]),
    ]
    ctx = vctx({"/app/bin/../d/libx.dylib"}, executable="/app/bin/exe", cwd="/home/u")
    res = resolve_install_name(ctx, "@rpath/libx.dylib", loader="/app/plugins/libplug.dylib",
                               rpath_stack=stack)
    assert res.found and res.rule is DyldRule.RPATH
    assert res.path == "/app/bin/../d/libx.dylib"
    assert tried(res) == [
        ("/app/plugins/a/libx.dylib", "rpath", "absent"),  # @loader_path: the image holding it
        ("/abs/b/libx.dylib", "rpath", "absent"),
        ("/app/lib/../c/libx.dylib", "rpath", "absent"),  # no double slash
        ("/app/bin/../d/libx.dylib", "rpath", "selected"),
    ]
    # not found anywhere: the relative LC_RPATH, then the default fallback by leaf name
    miss = resolve_install_name(vctx((), executable="/app/bin/exe", cwd="/home/u"),
                                "@rpath/libx.dylib", loader="/app/plugins/libplug.dylib",
                                rpath_stack=stack)
    assert miss.path is None and miss.rule is DyldRule.NOT_FOUND
    assert [p for p, _r, _o in tried(miss)][-3:] == [
        "/home/u/rel/e/libx.dylib", "/usr/local/lib/libx.dylib", "/usr/lib/libx.dylib"]
    assert tried(miss)[-1][1] == "dyld-fallback"


def test_loader_path_in_lc_rpath_is_relative_to_the_image_holding_it() -> None:
    # libmid's LC_RPATH "@loader_path" points at libmid's folder even when libplug loads
    stack = [("/p/plug/libplug.dylib", []), ("/p/mid/libmid.dylib", ["@loader_path"])]
    ctx = vctx({"/p/mid/libz.dylib", "/p/plug/libz.dylib"})
    res = resolve_install_name(ctx, "@rpath/libz.dylib", loader="/p/plug/libplug.dylib",
                               rpath_stack=stack)
    assert res.path == "/p/mid/libz.dylib"


def test_at_loader_path_and_executable_path_install_names() -> None:
    ctx = vctx({"/t/lib/libomp.dylib", "/py/bin/../lib/libpython.dylib"},
               executable="/py/bin/python")
    a = resolve_install_name(ctx, "@loader_path/libomp.dylib", loader="/t/lib/libtorch_cpu.dylib",
                             rpath_stack=[])
    assert (a.path, a.rule) == ("/t/lib/libomp.dylib", DyldRule.LOADER_PATH)
    b = resolve_install_name(ctx, "@executable_path/../lib/libpython.dylib", loader="/x/y.so",
                             rpath_stack=[])
    assert (b.path, b.rule) == ("/py/bin/../lib/libpython.dylib", DyldRule.EXECUTABLE_PATH)
    c = resolve_install_name(vctx(()), "@executable_path/libq.dylib", loader="/x/y.so",
                             rpath_stack=[])
    assert not c.found and any("main executable unknown" in n for n in c.notes)
    # only @loader_path/, @executable_path/ and @rpath/ are expanded; nothing else is a path
    d = resolve_install_name(vctx({"@loader_pathX/libq.dylib"}), "@loader_pathX/libq.dylib",
                             loader="/x/y.so", rpath_stack=[])
    assert not d.found and [c.rule for c in d.candidates] == [DyldRule.DYLD_FALLBACK] * 2


def test_dyld_library_path_shadows_by_leaf_name_before_the_install_path() -> None:
    torch = "/site/torch/lib"
    stack = [(f"{torch}/libtorch_cpu.dylib", ["@loader_path"])]
    files = {f"{torch}/libc10.dylib", "/fake/libc10.dylib"}
    ctx = vctx(files, environ={"DYLD_LIBRARY_PATH": "/empty:/fake"})
    res = resolve_install_name(ctx, "@rpath/libc10.dylib", loader=f"{torch}/libtorch_cpu.dylib",
                               rpath_stack=stack)
    assert (res.path, res.rule) == ("/fake/libc10.dylib", DyldRule.DYLD_LIBRARY_PATH)
    assert tried(res) == [("/empty/libc10.dylib", "dyld-library-path", "absent"),
                          ("/fake/libc10.dylib", "dyld-library-path", "selected")]
    # an absolute install name is shadowed the same way (leaf name only)
    abs_res = resolve_install_name(vctx({"/fake/libpng16.dylib", "/opt/lib/libpng16.dylib"},
                                        environ={"DYLD_LIBRARY_PATH": "/fake"}),
                                   "/opt/lib/libpng16.dylib", loader="/x.so", rpath_stack=[])
    assert (abs_res.path, abs_res.rule) == ("/fake/libpng16.dylib", DyldRule.DYLD_LIBRARY_PATH)
    # without the fake, the rpath wins
    clean = resolve_install_name(vctx(files - {"/fake/libc10.dylib"},
                                      environ={"DYLD_LIBRARY_PATH": "/fake"}),
                                 "@rpath/libc10.dylib", loader=f"{torch}/libtorch_cpu.dylib",
                                 rpath_stack=stack)
    assert (clean.path, clean.rule) == (f"{torch}/libc10.dylib", DyldRule.RPATH)
    # an empty entry is dyld's "" + "/" + leaf
    root = resolve_install_name(vctx({"/libc10.dylib"}, environ={"DYLD_LIBRARY_PATH": ""}),
                                "@rpath/libc10.dylib", loader="/x.so", rpath_stack=[])
    assert root.path == "/libc10.dylib"


def test_shared_cache_install_names_are_present_and_not_overridden() -> None:
    ctx = vctx({"/fake/libSystem.B.dylib"}, environ={"DYLD_LIBRARY_PATH": "/fake"})
    res = resolve_install_name(ctx, "/usr/lib/libSystem.B.dylib", loader="/x.so", rpath_stack=[])
    assert res.shared_cache and res.rule is DyldRule.INSTALL_NAME
    assert res.path == "/usr/lib/libSystem.B.dylib" and len(res.candidates) == 1
    fw = "/System/Library/Frameworks/Metal.framework/Versions/A/Metal"
    assert resolve_install_name(vctx(()), fw, loader="/x.so", rpath_stack=[]).shared_cache
    # the shortcut is for install names only: a fallback into /usr/lib must really exist
    miss = resolve_install_name(vctx(()), "@rpath/libomp.dylib", loader="/x.so", rpath_stack=[])
    assert not miss.found and "/usr/lib/libomp.dylib" in [c.path for c in miss.candidates]


def test_fallback_default_only_when_unset() -> None:
    name = "@rpath/libfoo.dylib"
    d = resolve_install_name(vctx({"/usr/local/lib/libfoo.dylib"}), name, loader="/a/b.so",
                             rpath_stack=[("/a/b.so", ["@loader_path"])])
    assert (d.path, d.rule) == ("/usr/local/lib/libfoo.dylib", DyldRule.DYLD_FALLBACK)
    assert tried(d)[0] == ("/a/libfoo.dylib", "rpath", "absent")
    s = resolve_install_name(vctx({"/usr/local/lib/libfoo.dylib", "/mine/libfoo.dylib"},
                                  environ={"DYLD_FALLBACK_LIBRARY_PATH": "/nope:/mine"}),
                             name, loader="/a/b.so", rpath_stack=[])
    assert s.path == "/mine/libfoo.dylib"
    assert [c.path for c in s.candidates] == ["/nope/libfoo.dylib", "/mine/libfoo.dylib"]
    e = resolve_install_name(vctx({"/usr/local/lib/libfoo.dylib"},
                                  environ={"DYLD_FALLBACK_LIBRARY_PATH": ""}),
                             name, loader="/a/b.so", rpath_stack=[])
    assert not e.found and [c.path for c in e.candidates] == ["/libfoo.dylib"]
    none = resolve_install_name(vctx({"/usr/local/lib/libfoo.dylib"}, default_fallback=()),
                                name, loader="/a/b.so", rpath_stack=[])
    assert not none.found and none.candidates == ()
    # the install path itself is not tried twice
    same = resolve_install_name(vctx(()), "/usr/local/lib/libbar.dylib", loader="/a",
                                rpath_stack=[])
    assert [c.path for c in same.candidates] == ["/usr/local/lib/libbar.dylib",
                                                 "/usr/lib/libbar.dylib"]


def test_framework_install_names_use_dyld_framework_path() -> None:
    name = "@rpath/Foo.framework/Versions/A/Foo"
    files = {"/fw/Foo.framework/Versions/A/Foo", "/lib/Foo"}
    env = {"DYLD_FRAMEWORK_PATH": "/fw", "DYLD_LIBRARY_PATH": "/lib"}
    res = resolve_install_name(vctx(files, environ=env), name, loader="/a/b.so", rpath_stack=[])
    assert (res.path, res.rule) == ("/fw/Foo.framework/Versions/A/Foo",
                                    DyldRule.DYLD_FRAMEWORK_PATH)
    # a dylib ignores DYLD_FRAMEWORK_PATH
    dy = resolve_install_name(vctx({"/fw/libq.dylib"}, environ={"DYLD_FRAMEWORK_PATH": "/fw"}),
                              "@rpath/libq.dylib", loader="/a/b.so", rpath_stack=[])
    assert not dy.found
    # framework fallback: the default framework folders with the partial path
    fb = resolve_install_name(vctx({"/Library/Frameworks/Foo.framework/Versions/A/Foo"}), name,
                              loader="/a/b.so", rpath_stack=[])
    assert (fb.path, fb.rule) == ("/Library/Frameworks/Foo.framework/Versions/A/Foo",
                                  DyldRule.DYLD_FALLBACK)


def test_framework_partial_path_matches_dyld() -> None:
    # the examples of dyld's getFrameworkPartialPath comment
    assert framework_partial_path("/path/foo.framework/foo") == "foo.framework/foo"
    assert framework_partial_path("/path/foo.framework/Versions/A/foo") == \
        "foo.framework/Versions/A/foo"
    assert framework_partial_path("/path/foo.framework/Frameworks/bar.framework/bar") == \
        "bar.framework/bar"
    assert framework_partial_path("/path/foo.framework/Libraries/bar.dylb") is None
    assert framework_partial_path("/path/foo.framework/bar") is None
    assert framework_partial_path("@rpath/libc10.dylib") is None


def test_sip_protected_executable_ignores_dyld_variables() -> None:
    assert dyld.sip_protected("/usr/bin/python3") and dyld.sip_protected("/bin/sh")
    assert not dyld.sip_protected("/usr/local/bin/python3")
    assert not dyld.sip_protected("/opt/homebrew/bin/python3")
    files = {"/fake/libc10.dylib", "/t/libc10.dylib"}
    env = {"DYLD_LIBRARY_PATH": "/fake", "DYLD_INSERT_LIBRARIES": "/fake/libc10.dylib"}
    stack = [("/t/libtorch.dylib", ["@loader_path"])]
    sip = vctx(files, environ=env, executable="/usr/bin/python3")
    res = resolve_install_name(sip, "@rpath/libc10.dylib", loader="/t/libtorch.dylib",
                               rpath_stack=stack)
    assert (res.path, res.rule) == ("/t/libc10.dylib", DyldRule.RPATH)
    assert any("SIP" in n for n in res.notes) and sip.inserted_libraries() == []
    forced = vctx(files, environ=env, executable="/usr/bin/python3", env_allowed=True)
    assert resolve_install_name(forced, "@rpath/libc10.dylib", loader="/t/libtorch.dylib",
                                rpath_stack=stack).rule is DyldRule.DYLD_LIBRARY_PATH
    assert DyldContext.from_environ({"PATH": "/bin", **env}).environ == env


def test_unloadable_candidates_are_skipped_and_the_search_goes_on() -> None:
    files = {"/fake/libc10.dylib", "/t/libc10.dylib"}
    def check(p: str) -> Optional[str]:
        return "incompatible architecture (x86_64)" if p.startswith("/fake") else None

    ctx = vctx(files, environ={"DYLD_LIBRARY_PATH": "/fake"}, check=check)
    res = resolve_install_name(ctx, "@rpath/libc10.dylib", loader="/t/x.dylib",
                               rpath_stack=[("/t/x.dylib", ["@loader_path"])])
    assert res.path == "/t/libc10.dylib"
    assert res.candidates[0].outcome is DyldOutcome.REJECTED
    assert res.candidates[0].reason == "incompatible architecture (x86_64)"


def test_relative_install_name_and_empty_rpath_stack() -> None:
    rel = resolve_install_name(vctx({"/cwd/libs/librel.dylib"}, cwd="/cwd"), "libs/librel.dylib",
                               loader="/a.so", rpath_stack=[])
    assert (rel.path, rel.rule) == ("/cwd/libs/librel.dylib", DyldRule.INSTALL_NAME)
    r = resolve_install_name(vctx(()), "@rpath/libz.dylib", loader="/a.so", rpath_stack=[])
    assert any("no LC_RPATH" in n for n in r.notes)


# --------------------------------------------------------------------------------------------
# dyld: closure over real files
# --------------------------------------------------------------------------------------------


def _dylib(name: str, deps: Sequence[Tuple[int, str]] = (), rpaths: Sequence[str] = (),
           cputype: int = ARM64, filetype: int = MH_DYLIB) -> bytes:
    c = Cmds()
    if filetype == MH_DYLIB:
        c.id(name)
    for cmd, dep in deps:
        c.dylib(cmd, dep)
    for rp in rpaths:
        c.rpath(rp)
    return image(c, cputype=cputype, filetype=filetype)


ACCELERATE = "/System/Library/Frameworks/Accelerate.framework/Versions/A/Accelerate"


@pytest.fixture
def tree(tmp_path: Path) -> Dict[str, str]:
    """An "installed package": ext.so -> libA -> (libB, libC), with a wrong-arch libB first on
    the rpath, a missing required lib, a missing weak lib and system libraries."""
    t = tmp_path
    paths = {
        "exe": write(t, "py/bin/python", _dylib("", [(LC_LOAD_DYLIB, "/usr/lib/libSystem.B.dylib")],
                                                ["@executable_path/../lib"], filetype=MH_EXECUTE)),
        "ext": write(t, "pkg/ext.so", _dylib("", [(LC_LOAD_DYLIB, "@rpath/libA.dylib"),
                                                  (LC_LOAD_DYLIB, "/usr/lib/libSystem.B.dylib")],
                                             ["@loader_path/x86", "@loader_path/lib"],
                                             filetype=MH_BUNDLE)),
        "A": write(t, "pkg/lib/libA.dylib", _dylib("@rpath/libA.dylib", [
            (LC_LOAD_DYLIB, "@rpath/libB.dylib"),
            (LC_LOAD_DYLIB, "@loader_path/libC.dylib"),
            (LC_LOAD_WEAK_DYLIB, "@rpath/libWeakMissing.dylib"),
            (LC_LOAD_DYLIB, "@rpath/libpy.dylib"),
            (LC_LOAD_DYLIB, ACCELERATE),
        ], ["@loader_path"])),
        "B_x86": write(t, "pkg/x86/libB.dylib", _dylib("@rpath/libB.dylib", cputype=X86_64)),
        "B": write(t, "pkg/lib/libB.dylib", _dylib("@rpath/libB.dylib",
                                                   [(LC_LOAD_DYLIB, "@rpath/libMissing.dylib"),
                                                    (LC_LOAD_DYLIB, "@rpath/libC.dylib")])),
        "C": write(t, "pkg/lib/libC.dylib", _dylib("@rpath/libC.dylib")),
        "py": write(t, "py/lib/libpy.dylib", _dylib("@rpath/libpy.dylib")),
    }
    return paths


def test_closure_walks_dependencies_with_the_resolver(tree: Dict[str, str]) -> None:
    ctx = DyldContext(executable=tree["exe"], default_fallback=())
    c = closure(ctx, tree["ext"])
    assert c.arch == "arm64" and c.executable_rpaths == ("@executable_path/../lib",)
    py_path = os.path.dirname(tree["exe"]) + "/../lib/libpy.dylib"  # as dyld builds it
    assert c.images == (tree["ext"], tree["A"], tree["B"], tree["C"], py_path)
    assert os.path.samefile(py_path, tree["py"])
    rule = {(os.path.basename(e.importer), e.dependency.name): e.resolution for e in c.edges}
    b = rule[("libA.dylib", "@rpath/libB.dylib")]
    # libA's own @loader_path first, so the wrong-arch libB under x86/ is never reached here
    assert (b.path, b.rule) == (tree["B"], DyldRule.RPATH)
    ext_a = rule[("ext.so", "@rpath/libA.dylib")]
    assert ext_a.candidates[0].path.endswith("pkg/x86/libA.dylib")
    assert ext_a.candidates[0].outcome is DyldOutcome.ABSENT
    assert rule[("libA.dylib", "@loader_path/libC.dylib")].rule is DyldRule.LOADER_PATH
    # only the executable's LC_RPATH (@executable_path/../lib) finds libpy
    py = rule[("libA.dylib", "@rpath/libpy.dylib")]
    assert (py.path, py.rule) == (py_path, DyldRule.RPATH)
    assert [e.dependency.name for e in c.unresolved] == ["@rpath/libMissing.dylib"]
    assert [e.dependency.name for e in c.weak_missing] == ["@rpath/libWeakMissing.dylib"]
    assert {e.dependency.name for e in c.system} == {"/usr/lib/libSystem.B.dylib", ACCELERATE}
    assert not c.ok
    # libB's missing dep searched libB's rpath stack: libB (none), libA, ext, executable
    missing = c.unresolved[0].resolution
    assert [p.path for p in missing.candidates] == [
        os.path.dirname(tree["A"]) + "/libMissing.dylib",
        os.path.dirname(tree["ext"]) + "/x86/libMissing.dylib",
        os.path.dirname(tree["ext"]) + "/lib/libMissing.dylib",
        os.path.dirname(tree["exe"]) + "/../lib/libMissing.dylib",
    ]


def test_closure_skips_wrong_arch_files_like_dyld(tree: Dict[str, str]) -> None:
    # ext.so asks for libB directly: its first LC_RPATH (x86/) holds an x86_64 libB
    Path(tree["ext"]).write_bytes(_dylib("", [(LC_LOAD_DYLIB, "@rpath/libB.dylib")],
                                         ["@loader_path/x86", "@loader_path/lib"],
                                         filetype=MH_BUNDLE))
    c = closure(DyldContext(default_fallback=()), tree["ext"])
    res = c.resolution_of(tree["ext"], "@rpath/libB.dylib")
    assert res is not None and res.path == tree["B"]
    assert res.candidates[0].outcome is DyldOutcome.REJECTED
    assert res.candidates[0].path == os.path.dirname(tree["ext"]) + "/x86/libB.dylib"
    assert res.candidates[0].reason == "the image is x86_64, not arm64"


def test_closure_dyld_library_path_and_inserted_libraries(tree: Dict[str, str],
                                                          tmp_path: Path) -> None:
    fake = write(tmp_path, "fake/libC.dylib", _dylib("@rpath/libC.dylib"))
    junk = write(tmp_path, "fake/libB.dylib", b"not a dylib at all")
    env = {"DYLD_LIBRARY_PATH": os.path.dirname(fake),
           "DYLD_INSERT_LIBRARIES": "@executable_path/../lib/libpy.dylib"}
    c = closure(DyldContext(environ=env, executable=tree["exe"], default_fallback=()),
                tree["ext"])
    c_res = c.resolution_of(tree["A"], "@loader_path/libC.dylib")
    assert c_res is not None and (c_res.path, c_res.rule) == (fake, DyldRule.DYLD_LIBRARY_PATH)
    b_res = c.resolution_of(tree["A"], "@rpath/libB.dylib")
    assert b_res is not None and b_res.path == tree["B"]
    assert (b_res.candidates[0].path, b_res.candidates[0].outcome) == (junk, DyldOutcome.REJECTED)
    assert [r.path for r in c.inserted] == [
        os.path.join(os.path.dirname(tree["exe"]), "../lib/libpy.dylib")]
    assert c.inserted[0].rule is DyldRule.EXECUTABLE_PATH


def test_closure_reports_unreadable_main_executable(tree: Dict[str, str]) -> None:
    c = closure(DyldContext(executable="/nonexistent/python", default_fallback=()), tree["ext"])
    assert any("not readable" in n for n in c.notes)
    assert c.executable_rpaths == ()
    assert "@rpath/libpy.dylib" in [e.dependency.name for e in c.unresolved]


# --------------------------------------------------------------------------------------------
# dyld: environment findings
# --------------------------------------------------------------------------------------------

TORCH_LIB = "/site/torch/lib"
LISTING = {
    TORCH_LIB: ["libc10.dylib", "libtorch_cpu.dylib", "libomp.dylib", "libshm.dylib"],
    "/brew/lib": ["libomp.dylib", "libpng.dylib", "LIBC10.DYLIB"],
    "/other": ["libpng.dylib"],
    "/": ["libtorch_cpu.dylib", "usr"],
}


def listdir(path: str) -> List[str]:
    if path not in LISTING:
        raise FileNotFoundError(path)
    return LISTING[path]


def test_environment_findings_classify_each_entry() -> None:
    env = {
        "DYLD_LIBRARY_PATH": "/brew/lib:/other:/gone:",
        "DYLD_FALLBACK_LIBRARY_PATH": "/brew/lib",
        "DYLD_FRAMEWORK_PATH": "/brew/lib",
        "DYLD_INSERT_LIBRARIES": "/brew/lib/libomp.dylib:/x/libhook.dylib",
        "DYLD_PRINT_LIBRARIES": "1",
        "PATH": "/usr/bin",
    }
    got = [(i.variable, i.entry, i.shadowed, i.kind)
           for i in dyld_environment_findings(env, TORCH_LIB, listdir)]
    assert got == [
        ("DYLD_LIBRARY_PATH", "/brew/lib", ("libc10.dylib", "libomp.dylib"), "shadows-torch"),
        ("DYLD_LIBRARY_PATH", "/other", (), "set-but-harmless"),
        ("DYLD_LIBRARY_PATH", "/gone", (), "set-but-harmless"),
        ("DYLD_LIBRARY_PATH", "", ("libtorch_cpu.dylib",), "shadows-torch"),  # "" is "/"
        ("DYLD_FRAMEWORK_PATH", "/brew/lib", (), "set-but-harmless"),
        ("DYLD_FALLBACK_LIBRARY_PATH", "/brew/lib", (), "set-but-harmless"),
        ("DYLD_INSERT_LIBRARIES", "/brew/lib/libomp.dylib", ("libomp.dylib",),
         "inserted-library"),
        ("DYLD_INSERT_LIBRARIES", "/x/libhook.dylib", (), "inserted-library"),
        ("DYLD_PRINT_LIBRARIES", "1", (), "set-but-harmless"),
    ]


def test_environment_findings_without_torch_or_under_sip() -> None:
    env = {"DYLD_LIBRARY_PATH": "/brew/lib"}
    no_torch = dyld_environment_findings(env, None, listdir)
    assert [(i.kind, i.shadowed) for i in no_torch] == [("set-but-harmless", ())]
    sip = dyld_environment_findings(env, TORCH_LIB, listdir, executable="/usr/bin/python3")
    assert [i.kind for i in sip] == ["set-but-harmless"] and "SIP" in sip[0].note
    assert dyld_environment_findings({"HOME": "/h"}, TORCH_LIB, listdir) == []


def test_environment_findings_on_real_directories(tmp_path: Path) -> None:
    torch_lib = tmp_path / "torch" / "lib"
    shadow = tmp_path / "shadow"
    for d, names in ((torch_lib, ["libc10.dylib", "libtorch_cpu.dylib"]),
                     (shadow, ["libc10.dylib", "README"])):
        d.mkdir(parents=True)
        for n in names:
            (d / n).write_bytes(b"x")
    issues = dyld_environment_findings({"DYLD_LIBRARY_PATH": str(shadow)}, str(torch_lib))
    assert [(i.entry, i.shadowed, i.kind) for i in issues] == [
        (str(shadow), ("libc10.dylib",), "shadows-torch")]
