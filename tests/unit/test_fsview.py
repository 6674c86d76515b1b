from __future__ import annotations

from pathlib import Path

import pytest

from torchdll.fsview import MirrorView, split_windows_path


@pytest.mark.parametrize(
    ("path", "anchor", "parts"),
    [
        ("C:\\Windows\\System32", "C", ("Windows", "System32")),
        ("c:/a/b/../c/./d.dll", "C", ("a", "c", "d.dll")),
        ("\\\\?\\C:\\long\\path", "C", ("long", "path")),
        ("\\\\server\\share\\dir\\x.dll", "UNC/server/share", ("dir", "x.dll")),
        ("\\\\?\\UNC\\server\\share\\x.dll", "UNC/server/share", ("x.dll",)),
        ("C:\\dir. \\x.dll", "C", ("dir", "x.dll")),
        ("C:\\Users\\홍길동\\x.dll", "C", ("Users", "홍길동", "x.dll")),
    ],
)
def test_split_windows_path(path: str, anchor: str, parts: tuple[str, ...]) -> None:
    assert split_windows_path(path) == (anchor, parts)


@pytest.mark.parametrize("bad", ["relative\\x.dll", "C:foo", "", "\\\\server"])
def test_split_rejects_relative_and_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        split_windows_path(bad)


def test_mirror_is_case_insensitive_on_a_case_sensitive_host(tmp_path: Path) -> None:
    (tmp_path / "C" / "windows" / "system32").mkdir(parents=True)
    (tmp_path / "C" / "windows" / "system32" / "KERNEL32.dll").write_bytes(b"x")
    view = MirrorView(tmp_path)
    host = view.host_path("c:\\WINDOWS\\System32\\kernel32.DLL")
    assert host == str(tmp_path / "C" / "windows" / "system32" / "KERNEL32.dll")
    assert view.listdir("C:\\Windows\\System32") == {"kernel32.dll": "KERNEL32.dll"}
    assert view.listdir("C:\\Nope") == {}
    assert view.host_path("D:\\x") is None


def test_mirror_unc_and_inverse_mapping(tmp_path: Path) -> None:
    f = tmp_path / "UNC" / "srv" / "share" / "a.dll"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"x")
    view = MirrorView(tmp_path)
    assert view.host_path("\\\\srv\\share\\A.DLL") == str(f)
    assert view.to_windows(f) == "\\\\srv\\share\\a.dll"
    assert view.to_windows(tmp_path / "C" / "x" / "y.dll") == "C:\\x\\y.dll"
    with pytest.raises(ValueError):
        view.to_windows(tmp_path.parent)


def test_mirror_facts_of_missing_file_is_typed_error(tmp_path: Path) -> None:
    from torchdll.errors import InvalidImageError

    (tmp_path / "C").mkdir()
    with pytest.raises(InvalidImageError):
        MirrorView(tmp_path).facts("C:\\absent.dll")
    assert MirrorView(tmp_path).machine("C:\\absent.dll") is None
