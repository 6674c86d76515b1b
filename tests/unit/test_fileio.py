"""The pieces the PE, ELF and Mach-O readers share: what a foreign file looks like, the capped
warning set, the atomic write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from torchdll._fileio import Warnings, atomic_write, sniff


@pytest.mark.parametrize("head, kind", [
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:...", "lfs"),
    (b"\xef\xbb\xbf  /* GNU ld script\n   Use the shared library */", "ld-script"),
    (b"GROUP ( /lib/x86_64-linux-gnu/libc.so.6 )", "ld-script"),
    (b"\n<!DOCTYPE html><html>", "html"),
    (b"\x7fELF\x02\x01\x01", "elf"),
    (b"MZ\x90\x00", "pe"),
    (b"\xcf\xfa\xed\xfe\x0c\x00\x00\x01", "macho"),
    (b"\xca\xfe\xba\xbe\x00\x00\x00\x02", "macho"),
    (b"PK\x03\x04\x14\x00", "zip"),
    (b"!<arch>\n/               ", "ar"),
    (b"ZM\x00\x00", "zm"),
    (b"#!/bin/sh\n", "script"),
    (b"\x00\x01\x02\x03", None),
    (b"", None),
])
def test_sniff(head: bytes, kind: object) -> None:
    assert sniff(head) == kind


def test_the_readers_word_the_same_sniff_for_their_format(tmp_path: Path) -> None:
    from torchdll import _elf, _macho, _pe

    lfs = b"version https://git-lfs.github.com/spec/v1\n"
    assert _pe._not_mz_reason(lfs) == "a Git LFS pointer file, not the DLL itself"
    assert _elf._not_elf_reason(lfs) == "invalid ELF header (a Git LFS pointer file, not the library itself)"
    assert _macho._not_macho_reason(lfs) == "a Git LFS pointer file, not the library itself"
    script = b"GROUP ( libc.so.6 )"
    assert _elf._not_elf_reason(script) == "invalid ELF header (a GNU ld linker script (text), not a shared object)"
    assert _pe._not_mz_reason(script) == "no MZ signature (not a PE image)"


def test_warnings_are_a_capped_ordered_set() -> None:
    w = Warnings(4)
    for text in ["a", "b", "a", "c", "d", "e", "c"]:
        w.add(text)
    assert w.items() == ["a", "b", "c", "... and 2 more"]
    assert Warnings(4).items() == []


def test_atomic_write_replaces_or_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f.json"
    atomic_write(target, b"one", fsync=True)
    assert target.read_bytes() == b"one"

    def fail(src: str, dst: object) -> None:
        raise PermissionError("locked")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(PermissionError):
        atomic_write(target, b"two")
    assert target.read_bytes() == b"one" and os.listdir(tmp_path) == ["f.json"]  # no temporary left
