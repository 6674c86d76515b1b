"""The os.add_dll_directory registry, driven through a fake with CPython's exact semantics."""

from __future__ import annotations

import threading

import pytest

from tests.support.fakewin import FakeDllDirectories
from torchdll._dlldirs import DllDirectoryRegistry, is_absolute_windows_path

LIB = "C:\\venv\\Lib\\site-packages\\torch\\lib"
BIN = "C:\\venv\\Library\\bin"
EXISTING = {LIB.lower(), BIN.lower()}


def _exists(path: str) -> bool:
    return path.lower().rstrip("\\") in EXISTING


# -- the fake behaves like CPython ----------------------------------------------------------


def test_fake_rejects_relative_with_winerror_87() -> None:
    fake = FakeDllDirectories(_exists)
    with pytest.raises(OSError) as info:
        fake.add_dll_directory("torch\\lib")
    assert info.value.winerror == 87  # type: ignore[attr-defined]
    with pytest.raises(OSError):
        fake.add_dll_directory("\\venv\\lib")  # drive-relative


def test_fake_missing_folder_is_file_not_found_winerror_3() -> None:
    with pytest.raises(FileNotFoundError) as info:
        FakeDllDirectories(_exists).add_dll_directory("C:\\nope")
    assert info.value.winerror == 3 and info.value.filename == "C:\\nope"  # type: ignore[attr-defined]


def test_fake_second_close_raises_type_error_and_gc_does_not_remove() -> None:
    fake = FakeDllDirectories(_exists)
    handle = fake.add_dll_directory(LIB)
    assert repr(handle) == f"<AddedDllDirectory({LIB!r})>"
    del handle  # no destructor: the folder stays
    assert fake.active == [LIB]
    h2 = fake.add_dll_directory(BIN)
    h2.close()
    assert repr(h2) == "<AddedDllDirectory()>"
    with pytest.raises(TypeError, match="Provided cookie was not returned from os.add_dll_directory"):
        h2.close()
    with fake.add_dll_directory(BIN):
        assert BIN in fake.active
    assert fake.active == [LIB]


# -- the registry ---------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "ok"), [
    ("C:\\x", True), ("c:/x", True), ("\\\\server\\share\\x", True), ("\\\\server", False),
    ("C:x", False), ("\\x", False), ("x\\y", False), ("", False),
])
def test_absolute_windows_paths(path: str, ok: bool) -> None:
    assert is_absolute_windows_path(path) is ok


def test_adds_absolute_existing_deduplicated_only() -> None:
    fake = FakeDllDirectories(_exists)
    reg = DllDirectoryRegistry()
    out = reg.add_all([LIB, "torch\\lib", "C:\\missing", LIB.upper(), LIB + "\\", BIN],
                      fake.add_dll_directory, _exists)
    assert [d.path for d in out.added] == [LIB, BIN]
    assert out.skipped == [("torch\\lib", "not an absolute path"), ("C:\\missing", "the folder does not exist")]
    assert fake.calls == [LIB, BIN]  # relative/missing never reach os.add_dll_directory
    assert reg.active() == (LIB, BIN) and LIB.lower() in reg


def test_second_add_keeps_the_first_handle() -> None:
    fake = FakeDllDirectories(_exists)
    reg = DllDirectoryRegistry()
    first = reg.add_all([LIB], fake.add_dll_directory, _exists)
    again = reg.add_all([LIB, BIN], fake.add_dll_directory, _exists)
    assert [d.path for d in again.kept] == [LIB] and [d.path for d in again.added] == [BIN]
    assert again.paths == (LIB, BIN)
    assert fake.calls == [LIB, BIN]
    # releasing the second call's own additions leaves the first call's folder alone
    assert reg.release(again.added) == 1
    assert fake.active == [LIB] and reg.active() == (LIB,)
    assert first.added[0].closed is False


def test_close_is_idempotent() -> None:
    fake = FakeDllDirectories(_exists)
    reg = DllDirectoryRegistry()
    entry = reg.add_all([LIB], fake.add_dll_directory, _exists).added[0]
    assert entry.close() is True
    assert entry.close() is False  # no TypeError from CPython's second close
    assert reg.release([entry]) == 0
    assert fake.active == [] and reg.active() == () and "closed" in repr(entry)


def test_handle_closed_by_someone_else_is_not_an_error() -> None:
    fake = FakeDllDirectories(_exists)
    reg = DllDirectoryRegistry()
    entry = reg.add_all([LIB], fake.add_dll_directory, _exists).added[0]
    entry._handle.close()  # another owner of the same handle closed it
    assert entry.close() is False and reg.active() == ()


def test_oserror_from_add_is_a_skip_reason() -> None:
    def denied(path: str) -> object:
        exc = PermissionError(13, "Access is denied", path)
        exc.winerror = 5  # type: ignore[attr-defined]
        raise exc

    out = DllDirectoryRegistry().add_all([LIB], denied, _exists)
    assert out.added == [] and out.skipped == [(LIB, "os.add_dll_directory failed (PermissionError, error 5)")]


def test_isdir_raising_counts_as_missing() -> None:
    def broken(path: str) -> bool:
        raise OSError("I/O error")

    out = DllDirectoryRegistry().add_all([LIB], FakeDllDirectories(_exists).add_dll_directory, broken)
    assert out.skipped == [(LIB, "the folder does not exist")]


def test_threads_add_each_folder_once() -> None:
    fake = FakeDllDirectories(_exists)
    reg = DllDirectoryRegistry()
    barrier = threading.Barrier(16)

    def work() -> None:
        barrier.wait()
        for _ in range(50):
            reg.add_all([LIB, BIN], fake.add_dll_directory, _exists)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(fake.calls) == sorted([LIB, BIN])
    assert set(reg.active()) == {LIB, BIN}
