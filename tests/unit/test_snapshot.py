"""torchdll.snapshot: collection, the JSON format, load contexts and offline loading."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.fakewin import FakeKernel32, FakeWinreg, fake_api, typical_registry
from torchdll._win32 import CI_POLICY_KEY, SYSTEM_ENVIRONMENT_KEY, VC_RUNTIMES_X64_KEYS
from torchdll.errors import SnapshotError
from torchdll.fsview import MirrorView
from torchdll.model import LoadContext, Machine
from torchdll.snapshot import (
    ENVIRON_NAMES,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    PythonInfo,
    RegistryValue,
    Snapshot,
    _linux_modules,
    _split_path,
    collect,
    json_schema,
    load_offline,
)

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "torchdll" / "schema" / "snapshot-v1.json"
KOREAN_HOME = "C:\\Users\\홍길동"


def windows_snapshot(**changes: Any) -> Snapshot:
    base = Snapshot(
        platform="win32",
        os_release="10.0.22631",
        machine="x64",
        app_dir="C:\\Python311",
        cwd=KOREAN_HOME + "\\proj",
        process_path="C:\\Python311;C:\\Windows\\system32",
        user_path=RegistryValue("%USERPROFILE%\\bin", "REG_EXPAND_SZ"),
        system_path=RegistryValue("C:\\Windows\\system32", "REG_SZ"),
        system32="C:\\Windows\\system32",
        windows_dir="C:\\Windows",
        system_dir="C:\\Windows\\System",
        known_dlls={"kernel32.dll": "kernel32.dll"},
        loaded_modules=("C:\\Python311\\python.exe", "C:\\Windows\\SYSTEM32\\ntdll.dll"),
        python=PythonInfo(
            executable=KOREAN_HOME + "\\proj\\.venv\\Scripts\\python.exe",
            base_executable="C:\\Python311\\python.exe",
            version="3.11.7",
            sys_version="3.11.7 (tags/v3.11.7:fa7a6f2, Dec  4 2023) [MSC v.1937 64 bit (AMD64)]",
            prefix=KOREAN_HOME + "\\proj\\.venv",
            base_prefix="C:\\Python311",
            exec_prefix=KOREAN_HOME + "\\proj\\.venv",
            base_exec_prefix="C:\\Python311",
            is_venv=True,
            sys_path=("C:\\Python311\\python311.zip",),
        ),
        environ={"SystemRoot": "C:\\Windows", "USERPROFILE": KOREAN_HOME},
        collected_at="2025-01-02T03:04:05Z",
        torchdll_version="0.1.0",
    )
    return replace(base, **changes)


# --------------------------------------------------------------------------------------------
# Live collection on this (POSIX) machine
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX collector")
def test_collect_posix_is_plausible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHDLL_PROBE_SETTING", "1")
    monkeypatch.setenv("CUDA_PATH_V12_4", "/opt/cuda")
    monkeypatch.setenv("SECRET_TOKEN", "do-not-collect")
    snap = collect()
    assert snap.platform in ("linux", "darwin") or snap.platform == sys.platform
    assert snap.app_dir == os.path.dirname(sys.executable)
    assert snap.cwd == os.getcwd()
    assert snap.process_path == os.environ.get("PATH", "")
    assert snap.machine in ("x64", "x86", "arm64", "arm") or snap.machine
    assert snap.os_release == platform.release()
    assert snap.user_path is None and snap.system_path is None
    assert snap.system32 == snap.windows_dir == snap.system_dir == ""
    assert snap.known_dlls == {}
    assert snap.notes == ()
    assert snap.environ["TORCHDLL_PROBE_SETTING"] == "1"
    assert snap.environ["CUDA_PATH_V12_4"] == "/opt/cuda"
    assert "SECRET_TOKEN" not in snap.environ
    assert all(k in ENVIRON_NAMES or k.startswith(("CUDA_PATH_V", "TORCHDLL_")) for k in snap.environ)
    datetime.strptime(snap.collected_at, "%Y-%m-%dT%H:%M:%SZ")
    assert snap.torchdll_version
    py = snap.python
    assert py.executable == sys.executable
    assert py.version == platform.python_version()
    assert py.sys_version == sys.version
    assert py.prefix == sys.prefix and py.base_prefix == sys.base_prefix
    assert py.is_venv == (sys.prefix != sys.base_prefix)
    assert py.bits in (32, 64)
    assert py.sys_path == tuple(sys.path)
    assert py.base_executable == getattr(sys, "_base_executable", None)
    assert Snapshot.from_json(snap.to_json()) == snap


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/maps")
def test_collect_linux_lists_shared_objects() -> None:
    mods = collect().loaded_modules
    assert mods, "no shared objects found in /proc/self/maps"
    assert len(set(mods)) == len(mods)
    assert all(os.path.isabs(m) and ".so" in os.path.basename(m) for m in mods)
    assert any(os.path.basename(m).startswith(("libc.so", "libc-", "ld-linux", "libm.so")) for m in mods)


def test_linux_maps_parsing(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text(
        "55d0-55d1 r--p 00000000 08:01 1 /usr/bin/python3.11\n"
        "7f00-7f01 r--p 00000000 08:01 2 /usr/lib/libz.so.1.2.13\n"
        "7f01-7f02 r-xp 00001000 08:01 2 /usr/lib/libz.so.1.2.13\n"
        "7f02-7f03 rw-p 00000000 00:00 0 \n"
        "7f03-7f04 rw-p 00000000 00:00 0 [heap]\n"
        "7f04-7f05 r--p 00000000 08:01 3 /opt/my libs/libsp ace.so\n"
        "7f05-7f06 r--p 00000000 08:01 4 /opt/gone/libgone.so (deleted)\n"
        "7f06-7f07 r--p 00000000 08:01 5 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
        "7f07-7f08 r--p 00000000 08:01 6 /usr/lib/locale/C.utf8/LC_CTYPE\n"
        "7f08-7f09 r--p 00000000 08:01 7 /usr/lib/notaso.sox\n",
        encoding="utf-8",
    )
    assert _linux_modules(str(maps)) == (
        "/usr/lib/libz.so.1.2.13",
        "/opt/my libs/libsp ace.so",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
    )
    assert _linux_modules(str(tmp_path / "absent")) == ()


# --------------------------------------------------------------------------------------------
# Windows collection with the fakes
# --------------------------------------------------------------------------------------------


WIN_ENVIRON = {
    "Path": KOREAN_HOME + "\\bin;\"C:\\Program Files\\Tool\";%CUDA_PATH%\\bin",
    "SYSTEMROOT": "C:\\Windows",
    "USERPROFILE": KOREAN_HOME,
    "cuda_path_v12_4": "C:\\CUDA\\v12.4",
    "PROGRAMFILES(X86)": "C:\\Program Files (x86)",
    "TorchDLL_Debug": "1",
    "SECRET_TOKEN": "x",
}


def test_collect_windows_with_fakes() -> None:
    mods = [
        "C:\\Python311\\python.exe",
        "C:\\Windows\\SYSTEM32\\ntdll.dll",
        KOREAN_HOME + "\\proj\\.venv\\Lib\\site-packages\\torch\\lib\\c10.dll",
    ]
    reg = typical_registry(safe_dll_search_mode=0, long_paths_enabled=1)
    api = fake_api(kernel32=FakeKernel32(mods), winreg=reg)
    snap = collect(api=api, platform="win32", environ=WIN_ENVIRON, cwd=KOREAN_HOME + "\\proj")
    assert snap.platform == "win32"
    assert snap.app_dir == "C:\\Python311"
    assert snap.cwd == KOREAN_HOME + "\\proj"
    assert snap.process_path == WIN_ENVIRON["Path"]
    assert snap.loaded_modules == tuple(mods)
    assert snap.system32 == "C:\\Windows\\system32"
    assert snap.windows_dir == "C:\\Windows"
    assert snap.system_dir == "C:\\Windows\\System"
    assert snap.safe_dll_search_mode is False
    assert snap.long_paths_enabled is True
    assert snap.known_dlls["kernel32.dll"] == "kernel32.dll"
    assert "dlldirectory" not in snap.known_dlls
    assert snap.user_path is not None and snap.user_path.type == "REG_EXPAND_SZ"
    assert snap.system_path is not None and snap.system_path.value.startswith("%SystemRoot%")
    assert snap.environ == {
        "SystemRoot": "C:\\Windows",
        "USERPROFILE": KOREAN_HOME,
        "CUDA_PATH_V12_4": "C:\\CUDA\\v12.4",
        "ProgramFiles(x86)": "C:\\Program Files (x86)",
        "TORCHDLL_DEBUG": "1",
    }
    assert snap.notes == ()
    assert Snapshot.from_json(snap.to_json()) == snap


def test_collect_windows_never_raises_and_records_notes() -> None:
    reg = typical_registry()
    reg.deny(FakeWinreg.HKEY_LOCAL_MACHINE, SYSTEM_ENVIRONMENT_KEY)
    k32 = FakeKernel32(["C:\\Python311\\python.exe"], fail={"GetModuleFileNameW": 5, "EnumProcessModules": 5})
    snap = collect(api=fake_api(kernel32=k32, winreg=reg), platform="win32", environ={}, cwd="C:\\")
    assert snap.system_path is None
    assert snap.user_path is not None
    assert snap.loaded_modules == ()
    assert snap.app_dir  # guessed from the interpreter path
    assert snap.process_path == ""
    joined = "\n".join(snap.notes)
    assert "access denied" in joined
    assert "GetModuleFileNameW(NULL): Win32 error 5" in joined
    assert "EnumProcessModules: Win32 error 5" in joined
    assert "guessed" in joined


def test_collect_windows_optional_facts() -> None:
    reg = typical_registry()
    hklm = FakeWinreg.HKEY_LOCAL_MACHINE
    reg.set_value(hklm, CI_POLICY_KEY, "VerifiedAndReputablePolicyState", 2, reg.REG_DWORD)
    wow = VC_RUNTIMES_X64_KEYS[1]  # only the WOW6432Node copy, as some installs leave it
    reg.set_value(hklm, wow, "Installed", 1, reg.REG_DWORD)
    reg.set_value(hklm, wow, "Version", "v14.44.35211.00", reg.REG_SZ)
    k32 = FakeKernel32(["C:\\Python311\\python.exe"])
    k32.memory.update(ullTotalPageFile=9 << 30, ullAvailPageFile=1 << 30)
    snap = collect(api=fake_api(kernel32=k32, winreg=reg), platform="win32", environ={}, cwd="C:\\")
    assert (snap.smart_app_control, snap.commit_limit, snap.commit_available, snap.vc_redist_x64) == (
        2, 9 << 30, 1 << 30, "v14.44.35211.00"
    )
    assert snap.notes == ()
    assert Snapshot.from_json(snap.to_json()) == snap


def test_collect_windows_optional_facts_unreadable() -> None:
    reg = typical_registry()
    reg.deny(FakeWinreg.HKEY_LOCAL_MACHINE, CI_POLICY_KEY)
    k32 = FakeKernel32(["C:\\Python311\\python.exe"], fail={"GlobalMemoryStatusEx": 5})
    snap = collect(api=fake_api(kernel32=k32, winreg=reg), platform="win32", environ={}, cwd="C:\\")
    assert snap.smart_app_control is None and snap.vc_redist_x64 is None
    assert snap.commit_limit is None and snap.commit_available is None
    joined = "\n".join(snap.notes)
    assert f"access denied reading HKLM\\{CI_POLICY_KEY}" in joined
    assert "GlobalMemoryStatusEx: Win32 error 5" in joined


@pytest.mark.skipif(sys.platform == "win32", reason="the real Win32 API exists here")
def test_collect_windows_mode_without_windows_does_not_raise() -> None:
    snap = collect(platform="win32", environ={"PATH": "C:\\x"}, cwd="C:\\")
    assert snap.platform == "win32"
    assert snap.process_path == "C:\\x"
    assert snap.user_path is None and snap.system_path is None
    assert snap.known_dlls == {} and snap.loaded_modules == ()
    assert snap.safe_dll_search_mode is True
    assert snap.notes  # every failed read is recorded


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------

_PIECES = st.sampled_from(
    [
        "C:\\",
        "Users",
        "홍길동",
        "Données",
        "😀",
        '"',
        "%SystemRoot%",
        "%NOPE%",
        "%",
        ";",
        "\\",
        " ",
        "Program Files (x86)",
        "\ud800",  # an unpaired surrogate: legal in an NTFS name
        "\x00",
        "\n",
    ]
)
_TEXT = st.one_of(st.text(max_size=20), st.lists(_PIECES, max_size=12).map("".join))
_LONG_PATH = _TEXT.map(lambda s: (s + ";C:\\very\\long\\%CUDA_PATH%\\bin;") * (32768 // (len(s) + 28) + 1))
_OPT_TEXT = st.none() | _TEXT
_REG = st.none() | st.builds(RegistryValue, value=_TEXT | _LONG_PATH, type=st.sampled_from(["REG_SZ", "REG_EXPAND_SZ"]))
_MAP = st.dictionaries(_TEXT, _TEXT, max_size=5)

_PYTHON = st.builds(
    PythonInfo,
    executable=_TEXT,
    base_executable=_OPT_TEXT,
    version=_TEXT,
    sys_version=_TEXT,
    implementation=_TEXT,
    prefix=_TEXT,
    base_prefix=_TEXT,
    exec_prefix=_TEXT,
    base_exec_prefix=_TEXT,
    is_venv=st.booleans(),
    bits=st.sampled_from([32, 64]) | st.integers(),
    user_site=_OPT_TEXT,
    user_site_enabled=st.booleans(),
    userbase=_OPT_TEXT,
    conda=st.booleans(),
    sys_path=st.lists(_TEXT, max_size=5).map(tuple),
)

SNAPSHOTS = st.builds(
    Snapshot,
    platform=st.sampled_from(["win32", "linux", "darwin"]) | _TEXT,
    os_release=_TEXT,
    machine=st.sampled_from(["x64", "x86", "arm64"]) | _TEXT,
    app_dir=_TEXT,
    cwd=_TEXT,
    process_path=_TEXT | _LONG_PATH,
    user_path=_REG,
    system_path=_REG,
    system32=_TEXT,
    windows_dir=_TEXT,
    system_dir=_TEXT,
    safe_dll_search_mode=st.booleans(),
    long_paths_enabled=st.booleans(),
    known_dlls=_MAP,
    loaded_modules=st.lists(_TEXT, max_size=5).map(tuple),
    python=_PYTHON,
    environ=_MAP,
    notes=st.lists(_TEXT, max_size=3).map(tuple),
    collected_at=_TEXT,
    torchdll_version=_TEXT,
    smart_app_control=st.none() | st.sampled_from([0, 1, 2]) | st.integers(),
    commit_limit=st.none() | st.integers(min_value=0, max_value=1 << 50),
    commit_available=st.none() | st.integers(min_value=0, max_value=1 << 50),
    vc_redist_x64=_OPT_TEXT,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SNAPSHOTS)
def test_json_round_trip(snap: Snapshot) -> None:
    text = snap.to_json()
    assert text.isascii()
    assert Snapshot.from_json(text) == snap
    assert Snapshot.from_json(text.encode("ascii")) == snap


def test_long_path_round_trip_through_a_file(tmp_path: Path) -> None:
    long_path = ";".join(f"{KOREAN_HOME}\\tools\\\"%CUDA_PATH%\\\"\\{i}" for i in range(2000))
    assert len(long_path) > 32767
    snap = windows_snapshot(process_path=long_path, user_path=RegistryValue(long_path, "REG_SZ"))
    target = tmp_path / "snap.json"
    snap.save(target)
    assert target.read_bytes().isascii()
    assert Snapshot.load(target) == snap
    assert Snapshot.load(str(target)) == snap
    assert [p.name for p in tmp_path.iterdir()] == ["snap.json"]  # no temporary left behind


def test_to_json_layout() -> None:
    snap = windows_snapshot()
    text = snap.to_json()
    data = json.loads(text)
    assert data["schema"] == SCHEMA_NAME == "torchdll.snapshot"
    assert data["schema_version"] == SCHEMA_VERSION == 1
    assert text == json.dumps(data, sort_keys=True, indent=2)
    assert data["user_path"] == {"value": "%USERPROFILE%\\bin", "type": "REG_EXPAND_SZ"}
    assert data["loaded_modules"] == list(snap.loaded_modules)
    assert data["python"]["is_venv"] is True


def test_sequences_and_mappings_are_normalised() -> None:
    snap = Snapshot(loaded_modules=["a"], notes=["n"], known_dlls={"k": "v"}, python=PythonInfo(sys_path=["p"]))  # type: ignore[arg-type]
    assert snap.loaded_modules == ("a",) and snap.notes == ("n",) and snap.python.sys_path == ("p",)
    assert Snapshot.from_json(snap.to_json()) == snap


FACTS: Dict[str, Any] = {
    "smart_app_control": 1,
    "commit_limit": 20 << 30,
    "commit_available": 3 << 30,
    "vc_redist_x64": "v14.44.35211.00",
}


def _old_snapshot_dict() -> Dict[str, Any]:
    """What a torchdll from before the optional fields wrote."""
    data = windows_snapshot().to_dict()
    for name in OPTIONAL_FIELDS:
        del data[name]
    return data


def test_optional_facts_round_trip() -> None:
    snap = windows_snapshot(**FACTS)
    data = json.loads(snap.to_json())
    assert {k: data[k] for k in FACTS} == FACTS
    assert Snapshot.from_json(snap.to_json()) == snap
    unknown = json.loads(windows_snapshot().to_json())
    assert all(unknown[k] is None for k in OPTIONAL_FIELDS)  # always written, null when unknown


def test_old_snapshot_without_the_optional_facts_loads() -> None:
    old = json.dumps(_old_snapshot_dict())
    snap = Snapshot.from_json(old)
    assert all(getattr(snap, k) is None for k in OPTIONAL_FIELDS)
    assert snap == windows_snapshot()
    assert Snapshot.from_dict(json.loads(old)) == snap


def test_unknown_fields_are_ignored() -> None:
    data = windows_snapshot().to_dict()
    data["added_in_v1_1"] = {"anything": [1, 2]}
    data["python"]["new_thing"] = True
    data["user_path"]["extra"] = 1
    assert Snapshot.from_json(json.dumps(data)) == windows_snapshot()


@pytest.mark.parametrize(
    "encode",
    [
        lambda t: t.encode("utf-8"),
        lambda t: b"\xef\xbb\xbf" + t.encode("utf-8"),
        lambda t: t.encode("utf-16"),  # with BOM, as Windows PowerShell 5 writes for ">"
        lambda t: b"\xfe\xff" + t.encode("utf-16-be"),
    ],
    ids=["utf8", "utf8-bom", "utf16le-bom", "utf16be-bom"],
)
def test_accepted_encodings(tmp_path: Path, encode: Callable[[str], bytes]) -> None:
    snap = windows_snapshot()
    text = json.dumps(snap.to_dict(), ensure_ascii=False)  # real non-ASCII characters
    target = tmp_path / "snap.json"
    target.write_bytes(encode(text))
    assert Snapshot.load(target) == snap


def _valid() -> Dict[str, Any]:
    return windows_snapshot().to_dict()


def _without(*keys: str) -> Callable[[Dict[str, Any]], None]:
    def edit(d: Dict[str, Any]) -> None:
        target = d
        for k in keys[:-1]:
            target = target[k]
        del target[keys[-1]]

    return edit


def _setting(value: Any, *keys: str) -> Callable[[Dict[str, Any]], None]:
    def edit(d: Dict[str, Any]) -> None:
        target = d
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value

    return edit


TOP_FIELDS = [f.name for f in fields(Snapshot)]
PY_FIELDS = [f.name for f in fields(PythonInfo)]
#: Added within schema version 1: a missing one reads as None (see the old-snapshot tests).
OPTIONAL_FIELDS = ("smart_app_control", "commit_limit", "commit_available", "vc_redist_x64")
REQUIRED_FIELDS = [k for k in TOP_FIELDS if k not in OPTIONAL_FIELDS]

_MISSING = [pytest.param(_without(k), id=f"missing-{k}") for k in ["schema_version", *REQUIRED_FIELDS]] + [
    pytest.param(_without("python", k), id=f"missing-python.{k}") for k in PY_FIELDS
]

_WRONG_VALUE = {
    "str": 7,
    "opt_str": ["x"],
    "bool": 1,
    "int": "64",
    "list": "C:\\a",
    "map": ["kernel32.dll"],
    "reg": "C:\\a",
    "obj": [],
    "opt_int": "64",
}
_TOP_KINDS = {
    "user_path": "reg",
    "system_path": "reg",
    "safe_dll_search_mode": "bool",
    "long_paths_enabled": "bool",
    "known_dlls": "map",
    "environ": "map",
    "loaded_modules": "list",
    "notes": "list",
    "python": "obj",
    "smart_app_control": "opt_int",
    "commit_limit": "opt_int",
    "commit_available": "opt_int",
    "vc_redist_x64": "opt_str",
}
_PY_KINDS = {
    "base_executable": "opt_str",
    "user_site": "opt_str",
    "userbase": "opt_str",
    "is_venv": "bool",
    "user_site_enabled": "bool",
    "conda": "bool",
    "bits": "int",
    "sys_path": "list",
}
_WRONG_TYPE = [
    pytest.param(_setting(_WRONG_VALUE[_TOP_KINDS.get(k, "str")], k), id=f"type-{k}") for k in TOP_FIELDS
] + [
    pytest.param(_setting(_WRONG_VALUE[_PY_KINDS.get(k, "str")], "python", k), id=f"type-python.{k}")
    for k in PY_FIELDS
]
_OTHER = [
    pytest.param(_setting("torchdll.report", "schema"), id="wrong-schema-name"),
    pytest.param(_without("schema"), id="no-schema-name"),
    pytest.param(_setting("1", "schema_version"), id="version-as-string"),
    pytest.param(_setting(True, "schema_version"), id="version-as-bool"),
    pytest.param(_setting(0, "schema_version"), id="version-zero"),
    pytest.param(_setting(None, "python"), id="python-null"),
    pytest.param(_setting({"value": "x", "type": "REG_DWORD"}, "user_path"), id="reg-type"),
    pytest.param(_setting({"type": "REG_SZ"}, "user_path"), id="reg-no-value"),
    pytest.param(_setting(["a", 1], "loaded_modules"), id="list-item-type"),
    pytest.param(_setting({"a": None}, "environ"), id="map-value-type"),
    pytest.param(_setting(None, "cwd"), id="null-string"),
    pytest.param(_setting(1.5, "python", "bits"), id="float-int"),
    pytest.param(_setting(True, "smart_app_control"), id="optional-int-as-bool"),
    pytest.param(_setting(1.0e9, "commit_limit"), id="optional-int-as-float"),
]


@pytest.mark.parametrize("edit", _MISSING + _WRONG_TYPE + _OTHER)
def test_malformed_snapshot_is_a_snapshot_error(edit: Callable[[Dict[str, Any]], None]) -> None:
    data = _valid()
    edit(data)
    with pytest.raises(SnapshotError) as info:
        Snapshot.from_json(json.dumps(data), source="bad.json")
    assert info.value.source == "bad.json"
    assert info.value.reason


def test_newer_schema_version_says_so() -> None:
    data = _valid()
    data["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(SnapshotError, match="newer"):
        Snapshot.from_json(json.dumps(data))


def test_error_names_the_field() -> None:
    data = _valid()
    data["python"]["sys_path"] = ["ok", 3]
    with pytest.raises(SnapshotError, match=r"python\.sys_path\[1\]"):
        Snapshot.from_json(json.dumps(data))
    del data["python"]["bits"]
    data["python"]["sys_path"] = []
    with pytest.raises(SnapshotError, match=r"python\.bits.*missing"):
        Snapshot.from_json(json.dumps(data))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "{",
        "[]",
        "null",
        '"torchdll.snapshot"',
        "{'schema': 'torchdll.snapshot'}",
        "[" * 100_000 + "]" * 100_000,
    ],
    ids=["empty", "garbage", "open-brace", "list", "null", "string", "single-quotes", "deep"],
)
def test_bad_json_is_a_snapshot_error(text: str) -> None:
    with pytest.raises(SnapshotError):
        Snapshot.from_json(text)


def test_truncated_file(tmp_path: Path) -> None:
    text = windows_snapshot().to_json()
    target = tmp_path / "snap.json"
    for cut in (1, len(text) // 3, len(text) // 2, len(text) - 1):
        target.write_text(text[:cut], encoding="ascii")
        with pytest.raises(SnapshotError) as info:
            Snapshot.load(target)
        assert info.value.source == str(target)


def test_non_utf8_bytes(tmp_path: Path) -> None:
    text = json.dumps(windows_snapshot().to_dict(), ensure_ascii=False)
    target = tmp_path / "snap.json"
    target.write_bytes(text.encode("cp949"))  # a Korean code page, not UTF-8
    with pytest.raises(SnapshotError, match="UTF-8"):
        Snapshot.load(target)
    with pytest.raises(SnapshotError, match="UTF-8"):
        Snapshot.from_json(b'{"a": "\xff"}')


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="no such file"):
        Snapshot.load(tmp_path / "absent.json")
    with pytest.raises(SnapshotError):
        Snapshot.load(tmp_path)  # a folder


def test_snapshot_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Snapshot.from_json("{}")


# --------------------------------------------------------------------------------------------
# JSON Schema
# --------------------------------------------------------------------------------------------


def test_schema_file_matches_what_to_json_writes() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert json_schema() == schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    written = windows_snapshot().to_dict()
    assert set(schema["properties"]) == set(written)
    assert set(schema["required"]) == set(written) - set(OPTIONAL_FIELDS)
    assert schema["properties"]["schema"]["const"] == SCHEMA_NAME
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    py = schema["$defs"]["python"]
    assert set(py["properties"]) == set(py["required"]) == set(written["python"])
    reg = schema["$defs"]["registry_value"]
    assert set(reg["properties"]) == set(reg["required"]) == set(written["user_path"])
    assert reg["properties"]["type"]["enum"] == ["REG_SZ", "REG_EXPAND_SZ"]


def _json_type(value: Any) -> str:
    return {bool: "boolean", int: "integer", str: "string", list: "array", dict: "object", type(None): "null"}[
        type(value)
    ]


def test_schema_types_match_written_values() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    written = windows_snapshot().to_dict()

    def check(props: Dict[str, Any], data: Dict[str, Any], defs: Dict[str, Any]) -> None:
        for name, spec in props.items():
            if "$ref" in spec:
                spec = defs[spec["$ref"].rsplit("/", 1)[-1]]
            if "type" in spec:
                allowed: List[str] = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
                assert _json_type(data[name]) in allowed, name

    check(schema["properties"], written, schema["$defs"])
    check(schema["$defs"]["python"]["properties"], written["python"], schema["$defs"])


def test_jsonschema_validation() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed (optional)")
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(windows_snapshot().to_dict())
    validator.validate(windows_snapshot(user_path=None).to_dict())
    validator.validate(collect().to_dict())
    bad = windows_snapshot().to_dict()
    bad["schema_version"] = 2
    assert list(validator.iter_errors(bad))


def test_jsonschema_optional_fields() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed (optional)")
    validator = jsonschema.Draft202012Validator(json_schema())
    validator.validate(_old_snapshot_dict())  # written before the optional fields: still valid
    validator.validate(windows_snapshot(**FACTS).to_dict())
    validator.validate(windows_snapshot().to_dict())  # all null
    for name, wrong in [("smart_app_control", "1"), ("commit_limit", -1), ("vc_redist_x64", 14)]:
        bad = windows_snapshot().to_dict()
        bad[name] = wrong
        assert list(validator.iter_errors(bad)), name


# --------------------------------------------------------------------------------------------
# load_context
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ()),
        (";;;", ()),
        ("C:\\a;;C:\\b;", ("C:\\a", "C:\\b")),
        # the loader takes entries literally: quotes stay, %VARS% are not expanded again
        ('"C:\\Program Files\\x";C:\\y', ('"C:\\Program Files\\x"', "C:\\y")),
        ("C:\\a\\;C:\\b\\\\", ("C:\\a\\", "C:\\b\\\\")),
        ("%NOPE%\\bin;%NOPE%", ("%NOPE%\\bin", "%NOPE%")),
        (" C:\\space ; ", (" C:\\space ", " ")),
        (f"{KOREAN_HOME}\\bin", (f"{KOREAN_HOME}\\bin",)),
    ],
)
def test_path_splitting(raw: str, expected: tuple[str, ...]) -> None:
    ctx = windows_snapshot(process_path=raw).load_context()
    assert ctx.path == expected


@given(st.lists(st.text(alphabet=st.characters(exclude_characters=";", codec="utf-8"), max_size=30),
                max_size=20))
def test_path_splitting_property(entries: List[str]) -> None:
    raw = ";".join(entries)
    assert _split_path(raw) == tuple(e for e in entries if e)
    assert "" not in _split_path(raw)


def test_load_context_from_windows_snapshot() -> None:
    snap = windows_snapshot(
        loaded_modules=(
            "C:\\Python311\\python.exe",
            "C:\\Python311\\VCRUNTIME140.dll",
            "C:\\Windows\\System32\\vcruntime140.dll",
        ),
        safe_dll_search_mode=False,
    )
    ctx = snap.load_context(user_dirs=["C:\\torch\\lib"])
    assert isinstance(ctx, LoadContext)
    assert ctx.app_dir == "C:\\Python311"
    assert (ctx.system32, ctx.windows_dir, ctx.system_dir) == ("C:\\Windows\\system32", "C:\\Windows", "C:\\Windows\\System")
    assert ctx.cwd == snap.cwd
    assert ctx.safe_dll_search_mode is False
    assert ctx.user_dirs == ("C:\\torch\\lib",)
    assert ctx.loaded == {
        "python.exe": "C:\\Python311\\python.exe",
        "vcruntime140.dll": "C:\\Python311\\VCRUNTIME140.dll",  # the first one loaded wins
    }
    assert ctx.known_dlls == {"kernel32.dll": "kernel32.dll"}
    assert ctx.machine is Machine.AMD64


def test_load_context_overrides() -> None:
    snap = windows_snapshot()
    ctx = snap.load_context(cwd="D:\\elsewhere", loaded=["D:\\x\\A.dll", "E:\\a.DLL"], machine=Machine.ARM64)
    assert ctx.cwd == "D:\\elsewhere"
    assert ctx.loaded == {"a.dll": "D:\\x\\A.dll"}
    assert ctx.machine is Machine.ARM64
    assert snap.load_context(loaded={"B.DLL": "C:\\b.dll"}).loaded == {"b.dll": "C:\\b.dll"}
    assert snap.load_context(loaded=[]).loaded == {}


@pytest.mark.parametrize(
    ("label", "machine"),
    [("x64", Machine.AMD64), ("x86", Machine.I386), ("arm64", Machine.ARM64), ("ppc64le", Machine.UNKNOWN)],
)
def test_load_context_machine(label: str, machine: Machine) -> None:
    assert windows_snapshot(machine=label).load_context().machine is machine


def test_load_context_fills_missing_system_folders() -> None:
    defaults = LoadContext(app_dir="")
    posix = Snapshot(platform="linux", app_dir="/usr/bin")
    ctx = posix.load_context()
    assert (ctx.system32, ctx.windows_dir, ctx.system_dir) == (defaults.system32, defaults.windows_dir, defaults.system_dir)
    partial = windows_snapshot(windows_dir="D:\\WIN", system32="", system_dir="")
    ctx2 = partial.load_context()
    assert (ctx2.system32, ctx2.system_dir) == ("D:\\WIN\\System32", "D:\\WIN\\System")


# --------------------------------------------------------------------------------------------
# load_offline
# --------------------------------------------------------------------------------------------


def _mirror(root: Path, drive: str = "C") -> None:
    sys32 = root / drive / "Windows" / "System32"
    sys32.mkdir(parents=True)
    (sys32 / "kernel32.dll").write_bytes(b"MZ")
    (root / drive / "Python311").mkdir()
    (root / drive / "Python311" / "python311.dll").write_bytes(b"MZ")


def test_load_offline(tmp_path: Path) -> None:
    snap = windows_snapshot()
    snap.save(tmp_path / "snap.json")
    root = tmp_path / "mirror"
    _mirror(root)
    loaded, view = load_offline(tmp_path / "snap.json", root)
    assert loaded == snap
    assert isinstance(view, MirrorView)
    assert view.host_path("C:\\WINDOWS\\system32\\KERNEL32.DLL") == str(root / "C" / "Windows" / "System32" / "kernel32.dll")
    assert "python311.dll" in view.listdir(snap.load_context().app_dir)
    loaded2, view2 = load_offline(str(tmp_path / "snap.json"), str(root))
    assert loaded2 == snap and view2.root == str(root)


@pytest.mark.parametrize("drive", ["c", "D", "UNC"])
def test_load_offline_accepts_any_drive_folder(tmp_path: Path, drive: str) -> None:
    windows_snapshot().save(tmp_path / "snap.json")
    (tmp_path / "m" / drive / "x").mkdir(parents=True)
    load_offline(tmp_path / "snap.json", tmp_path / "m")


def test_load_offline_errors(tmp_path: Path) -> None:
    snap_path = tmp_path / "snap.json"
    windows_snapshot().save(snap_path)
    with pytest.raises(SnapshotError, match="does not exist") as info:
        load_offline(snap_path, tmp_path / "absent")
    assert info.value.source == str(tmp_path / "absent")
    with pytest.raises(SnapshotError, match="not a folder"):
        load_offline(snap_path, snap_path)
    no_drive = tmp_path / "nodrive"
    (no_drive / "Windows" / "System32").mkdir(parents=True)
    (no_drive / "C").write_text("a file, not a drive folder")
    with pytest.raises(SnapshotError, match="no drive folder"):
        load_offline(snap_path, no_drive)
    _mirror(tmp_path / "ok")
    with pytest.raises(SnapshotError):
        load_offline(tmp_path / "absent.json", tmp_path / "ok")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SnapshotError):
        load_offline(tmp_path / "bad.json", tmp_path / "ok")


def test_windows_snapshot_without_known_dlls_falls_back_to_default_table() -> None:
    ctx = windows_snapshot(known_dlls={}).load_context()
    assert ctx.known_dlls["kernel32.dll"] == "kernel32.dll"
    assert windows_snapshot(known_dlls={"foo.dll": "foo.dll"}).load_context().known_dlls == {"foo.dll": "foo.dll"}
