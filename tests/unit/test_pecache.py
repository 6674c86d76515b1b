"""torchdll._pecache: hits, invalidation, corruption, versioning, opt-out, concurrency."""

from __future__ import annotations

import marshal
import multiprocessing
import os
import sys
import warnings
from pathlib import Path
from typing import Any, List, Tuple

import pytest

from torchdll import _pe, _pecache
from torchdll._pebuild import ExportSpec, build_pe
from torchdll.errors import InvalidImageError, TorchDLLWarning
from torchdll.model import ImageFacts


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache folder and fresh per-process 'unwritable' state for each test."""
    root = tmp_path / "cache"
    monkeypatch.setenv("TORCHDLL_CACHE_DIR", str(root))
    monkeypatch.delenv("TORCHDLL_NO_CACHE", raising=False)
    monkeypatch.setattr(_pecache, "_unwritable", set())
    return root


@pytest.fixture
def dll(tmp_path: Path) -> Path:
    path = tmp_path / "lib" / "a.dll"
    path.parent.mkdir()
    path.write_bytes(build_pe(
        name="a.dll", exports=["one", "two", ExportSpec("fw", None, "k.Fn")],
        imports={"k.dll": ["f", 3]}, file_version=(1, 2, 3, 4), rich=[(0x105, 34433, 1)],
    ))
    return path


class ParseCounter:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = _pe.parse_file

        def counted(path: str) -> Any:
            self.calls += 1
            return real(path)

        monkeypatch.setattr(_pe, "parse_file", counted)


def forbid_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(path: str) -> Any:
        raise AssertionError(f"parsed {path} although it was cached")

    monkeypatch.setattr(_pe, "parse_file", boom)


def key_of(path: Path) -> Tuple[str, int, int]:
    st = path.stat()
    return _pecache.make_key(str(path), st.st_size, st.st_mtime_ns)


def entries(cache: Path) -> List[Path]:
    return sorted(p for p in cache.rglob("*") if p.is_file())


def test_hit_after_miss(cache: Path, dll: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = ParseCounter(monkeypatch)
    first = _pe.read_facts(dll)
    assert counter.calls == 1
    (entry,) = entries(cache)
    assert entry == _pecache.entry_path(key_of(dll))
    forbid_parsing(monkeypatch)
    second = _pe.read_facts(dll)
    assert second == first
    assert dict(second.exports.names) == {"one": 1, "two": 2, "fw": 3}
    assert second.exports.forwarders == {"#3": "k.Fn", "fw": "k.Fn"}
    assert second.rich is not None and second.rich.toolset == "14.42"
    assert second.version is not None and second.version.file_version == (1, 2, 3, 4)
    assert second.imports[0].names == ("f",) and second.imports[0].ordinals == (3,)
    # use_cache=True behaves like None; a relative spelling of the path hits the same entry
    assert _pe.read_facts(dll, use_cache=True) == first
    monkeypatch.chdir(dll.parent)
    rel = _pe.read_facts("a.dll")
    assert rel.path == "a.dll" and rel.exports == first.exports


def test_use_cache_false_neither_reads_nor_writes(cache: Path, dll: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = ParseCounter(monkeypatch)
    _pe.read_facts(dll, use_cache=False)
    _pe.read_facts(dll, use_cache=False)
    assert counter.calls == 2 and entries(cache) == []


@pytest.mark.parametrize("value", ["1", "yes", "true"])
def test_no_cache_env(cache: Path, dll: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("TORCHDLL_NO_CACHE", value)
    counter = ParseCounter(monkeypatch)
    _pe.read_facts(dll)
    _pe.read_facts(dll, use_cache=True)
    assert counter.calls == 2 and entries(cache) == []
    assert not _pecache.enabled()


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_no_cache_env_falsey_values_keep_the_cache(cache: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("TORCHDLL_NO_CACHE", value)
    assert _pecache.enabled()


def test_invalidated_by_mtime(cache: Path, dll: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = ParseCounter(monkeypatch)
    _pe.read_facts(dll)
    st = dll.stat()
    os.utime(dll, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    f = _pe.read_facts(dll)
    assert counter.calls == 2 and f.mtime_ns == st.st_mtime_ns + 1_000_000_000
    _pe.read_facts(dll)
    assert counter.calls == 2
    assert len(entries(cache)) == 2  # old entries are simply never looked up again


def test_invalidated_by_size_and_content(cache: Path, dll: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _pe.read_facts(dll)
    st = dll.stat()
    dll.write_bytes(build_pe(name="a.dll", exports=["other"], pad_to=st.st_size + 0x200))
    os.utime(dll, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime, different size
    after = _pe.read_facts(dll)
    assert after.size != before.size
    assert dict(after.exports.names) == {"other": 1}


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"",
        lambda data: data[: len(data) // 2],
        lambda data: b"\x00garbage" * 50,
        lambda data: marshal.dumps(("something", "else", ())),
        lambda data: marshal.dumps([1, 2, 3]),
        lambda data: marshal.dumps((_pecache._MAGIC, ("other", 1, 2), ())),
        lambda data: marshal.dumps((("torchdll-pe-facts", 0, sys.byteorder), None, ())),
    ],
    ids=["empty", "truncated", "garbage", "foreign-tuple", "foreign-list", "wrong-key", "old-format"],
)
def test_corrupt_entry_is_ignored_and_rewritten(
    cache: Path, dll: Path, monkeypatch: pytest.MonkeyPatch, damage: Any
) -> None:
    good = _pe.read_facts(dll)
    entry = _pecache.entry_path(key_of(dll))
    data = entry.read_bytes()
    entry.write_bytes(damage(data))
    counter = ParseCounter(monkeypatch)
    again = _pe.read_facts(dll)
    assert again == good and counter.calls == 1
    assert entry.read_bytes() == data  # rewritten with a valid entry
    assert _pecache.load(key_of(dll)) is not None


def test_right_key_wrong_payload_shape_is_a_miss(cache: Path, dll: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = _pe.read_facts(dll)
    key = key_of(dll)
    entry = _pecache.entry_path(key)
    entry.write_bytes(marshal.dumps((_pecache._MAGIC, key, ("too", "short"))))
    counter = ParseCounter(monkeypatch)
    assert _pe.read_facts(dll) == good and counter.calls == 1


def test_entry_verified_against_its_key(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry copied to another key's file name (a hash collision) is not trusted."""
    a, b = tmp_path / "a.dll", tmp_path / "b.dll"
    a.write_bytes(build_pe(name="a.dll", exports=["from_a"]))
    b.write_bytes(build_pe(name="b.dll", exports=["from_b"]))
    _pe.read_facts(a)
    _pecache.entry_path(key_of(b)).write_bytes(_pecache.entry_path(key_of(a)).read_bytes())
    assert dict(_pe.read_facts(b).exports.names) == {"from_b": 1}


def test_versioned_folder(cache: Path, dll: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _pecache.cache_dir()
    assert folder.parent == cache
    assert folder.name == f"pe-v{_pecache.FORMAT}-py{sys.version_info[0]}.{sys.version_info[1]}"
    _pe.read_facts(dll)
    assert [p.parent for p in entries(cache)] == [folder]
    # A new format reads nothing written by the old one.
    monkeypatch.setattr(_pecache, "FORMAT", _pecache.FORMAT + 1)
    counter = ParseCounter(monkeypatch)
    _pe.read_facts(dll)
    assert counter.calls == 1 and len(entries(cache)) == 2


def test_default_location_is_platformdirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import platformdirs

    monkeypatch.delenv("TORCHDLL_CACHE_DIR", raising=False)
    seen = []

    def fake(appname: str, *args: Any, **kwargs: Any) -> str:
        seen.append(appname)
        return str(tmp_path / "user-cache")

    monkeypatch.setattr(platformdirs, "user_cache_dir", fake)
    assert _pecache.cache_dir().parent == tmp_path / "user-cache"
    assert seen == ["torchdll"]


def test_unwritable_folder_degrades_with_one_warning(
    tmp_path: Path, dll: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    # mkdir below a regular file fails even for root
    monkeypatch.setenv("TORCHDLL_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.delenv("TORCHDLL_NO_CACHE", raising=False)
    monkeypatch.setattr(_pecache, "_unwritable", set())
    with pytest.warns(TorchDLLWarning, match="cache disabled"):
        first = _pe.read_facts(dll)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = _pe.read_facts(dll)
    assert first == second and dict(first.exports.names)["one"] == 1


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_read_only_folder(cache: Path, dll: Path) -> None:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("running as root: a read-only folder is still writable")
    folder = _pecache.cache_dir()
    folder.mkdir(parents=True)
    folder.chmod(0o500)
    try:
        with pytest.warns(TorchDLLWarning):
            f = _pe.read_facts(dll)
        assert dict(f.exports.names)["two"] == 2
    finally:
        folder.chmod(0o700)


def test_invalid_images_raise_through_the_cache(cache: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.dll"
    bad.write_bytes(b"<html>nope</html>")
    for _ in range(2):
        with pytest.raises(InvalidImageError, match="HTML"):
            _pe.read_facts(bad)
    with pytest.raises(InvalidImageError, match="no such file"):
        _pe.read_facts(tmp_path / "missing.dll")
    assert entries(cache) == []


def test_load_and_store_round_trip(cache: Path, dll: Path) -> None:
    payload, size, mtime = _pe.parse_file(str(dll))
    key = _pecache.make_key(str(dll), size, mtime)
    assert _pecache.load(key) is None
    _pecache.store(key, payload)
    assert _pecache.load(key) == payload
    assert not [p for p in entries(cache) if p.name.startswith(".tmp-")]


def test_big_export_table_round_trip(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"?f{i}@@YAXXZ" for i in range(20000)]
    path = tmp_path / "big.dll"
    path.write_bytes(build_pe(exports=names, ordinal_base=10))
    cold = _pe.read_facts(path)
    forbid_parsing(monkeypatch)
    warm = _pe.read_facts(path)
    assert len(warm.exports.names) == 20000 and warm.exports.names["?f19999@@YAXXZ"] == 20009
    assert warm.exports.ordinals == cold.exports.ordinals == frozenset(range(10, 20010))
    assert warm == cold


# -- concurrency -----------------------------------------------------------------------------


def _writer(args: Tuple[str, str, int]) -> str:
    cache_dir, path, rounds = args
    os.environ["TORCHDLL_CACHE_DIR"] = cache_dir
    os.environ.pop("TORCHDLL_NO_CACHE", None)
    payload, size, mtime = _pe.parse_file(path)
    key = _pecache.make_key(path, size, mtime)
    for _ in range(rounds):
        _pecache.store(key, payload)
        got = _pecache.load(key)
        assert got is None or got == payload  # never a torn entry
        facts = _pe.read_facts(path)
        assert dict(facts.exports.names)["two"] == 2
    return "ok"


def test_concurrent_writers_leave_a_valid_entry(cache: Path, dll: Path) -> None:
    ctx = multiprocessing.get_context("spawn" if sys.platform == "win32" else "fork")
    jobs = [(str(cache), str(dll), 40)] * 6
    with ctx.Pool(6) as pool:
        assert pool.map(_writer, jobs) == ["ok"] * 6
    files = entries(cache)
    assert [p.name for p in files] == [_pecache.entry_path(key_of(dll)).name]
    payload, _size, _mtime = _pe.parse_file(str(dll))
    assert _pecache.load(key_of(dll)) == payload


def test_facts_survive_pickling(cache: Path, dll: Path) -> None:
    import pickle

    _pe.read_facts(dll)
    warm = _pe.read_facts(dll)
    clone = pickle.loads(pickle.dumps(warm))
    assert isinstance(clone, ImageFacts) and clone == warm


def test_unusable_cache_folder_degrades_even_as_root(tmp_path: Path, dll: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A cache "folder" below a regular file can never be created, root or not.
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TORCHDLL_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(TorchDLLWarning):
        f = _pe.read_facts(dll)
    assert dict(f.exports.names)["two"] == 2
    assert blocker.read_text() == "not a folder"
