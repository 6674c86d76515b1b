"""torchdll._win32 driven through the fakes of tests/support/fakewin.py (any OS)."""

from __future__ import annotations

import ctypes
import pickle
import subprocess
import sys
from ctypes import wintypes

import pytest

from tests.support.fakewin import (
    FakeKernel32,
    FakePsapi,
    FakeWinreg,
    fake_api,
    typical_registry,
)
from torchdll import _win32
from torchdll._win32 import (
    ERROR_INSUFFICIENT_BUFFER,
    ERROR_MOD_NOT_FOUND,
    KNOWN_DLLS_KEY,
    SESSION_MANAGER_KEY,
    SYSTEM_ENVIRONMENT_KEY,
    WinApi,
    WinApiError,
)

HKLM = FakeWinreg.HKEY_LOCAL_MACHINE
HKCU = FakeWinreg.HKEY_CURRENT_USER
KOREAN_HOME = "C:\\Users\\홍길동"


def _modules(n: int) -> list[str]:
    return ["C:\\Python311\\python.exe"] + [f"C:\\Windows\\System32\\mod{i:04d}.dll" for i in range(n - 1)]


# --------------------------------------------------------------------------------------------
# Import and laziness
# --------------------------------------------------------------------------------------------


def test_module_imports_without_windows_libraries() -> None:
    # A fresh interpreter: importing _win32 must not touch winreg or load any DLL.
    code = (
        "import sys, torchdll._win32 as w; api = w.WinApi(); "
        "assert 'winreg' not in sys.modules or sys.platform == 'win32'; "
        "assert 'ctypes.wintypes' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


@pytest.mark.skipif(sys.platform == "win32", reason="the real libraries exist on Windows")
def test_default_objects_fail_cleanly_off_windows() -> None:
    api = WinApi()
    with pytest.raises(OSError):
        _ = api.kernel32
    with pytest.raises(ImportError):
        _ = api.winreg
    assert api.last_error() == 0


def test_win_api_error_keeps_winerror_and_pickles() -> None:
    exc = WinApiError("GetModuleFileNameW", 126)
    assert isinstance(exc, OSError)
    assert exc.winerror == 126
    back = pickle.loads(pickle.dumps(exc))
    assert (type(back), back.function, back.winerror) == (WinApiError, "GetModuleFileNameW", 126)
    assert "126" in str(exc)


# --------------------------------------------------------------------------------------------
# Foreign-function declarations
# --------------------------------------------------------------------------------------------


def test_every_foreign_function_declares_argtypes_and_restype() -> None:
    k32 = FakeKernel32(_modules(3))
    api = fake_api(kernel32=k32)
    api.loaded_modules()
    api.system_directory()
    api.windows_directory()
    expected = {
        "GetModuleFileNameW": ([wintypes.HMODULE, wintypes.LPWSTR, wintypes.DWORD], wintypes.DWORD),
        "GetCurrentProcess": ([], wintypes.HANDLE),
        "K32EnumProcessModules": (
            [wintypes.HANDLE, ctypes.POINTER(wintypes.HMODULE), wintypes.DWORD, ctypes.POINTER(wintypes.DWORD)],
            wintypes.BOOL,
        ),
        "GetSystemDirectoryW": ([wintypes.LPWSTR, wintypes.UINT], wintypes.UINT),
        "GetWindowsDirectoryW": ([wintypes.LPWSTR, wintypes.UINT], wintypes.UINT),
    }
    for name, (argtypes, restype) in expected.items():
        fn = getattr(k32, name)
        assert fn.calls, f"{name} was not exercised"
        assert list(fn.argtypes) == argtypes, name
        assert fn.restype is restype, name


def test_undeclared_call_is_refused_by_the_fake() -> None:
    # The fakes are strict: a call before declaring argtypes/restype fails loudly.
    k32 = FakeKernel32(_modules(1))
    with pytest.raises(AssertionError, match="argtypes"):
        k32.GetCurrentProcess()


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------


def test_module_list_grows_its_buffer() -> None:
    mods = _modules(300)  # more than the 256 handles of the first try
    k32 = FakeKernel32(mods)
    api = fake_api(kernel32=k32)
    assert api.loaded_modules() == mods
    enum_calls = k32.K32EnumProcessModules.calls
    assert len(enum_calls) == 2
    first_cb, second_cb = enum_calls[0][2], enum_calls[1][2]
    assert first_cb == 256 * ctypes.sizeof(ctypes.c_void_p)
    assert second_cb >= 300 * ctypes.sizeof(ctypes.c_void_p)


def test_module_list_handles_a_load_between_calls() -> None:
    mods = _modules(256)
    k32 = FakeKernel32(mods, load_during_enum=["C:\\late\\one.dll", "C:\\late\\two.dll"])
    api = fake_api(kernel32=k32)
    first = api.loaded_modules()
    # The first call fit exactly; one more module loaded meanwhile is not seen yet.
    assert first == mods[:256]
    second = api.loaded_modules()
    assert second[:256] == mods
    assert "C:\\late\\one.dll" in second


def test_module_list_retries_while_it_keeps_growing() -> None:
    k32 = FakeKernel32(_modules(256), load_during_enum=[f"C:\\x\\{i}.dll" for i in range(40)])
    api = fake_api(kernel32=k32)
    # 256 fit; the next call sees 257 (> 256) and retries with room to spare.
    api.loaded_modules()
    mods = api.loaded_modules()
    assert len(mods) >= 257
    assert len(set(mods)) == len(mods)


def test_module_list_uses_psapi_before_windows_7() -> None:
    k32 = FakeKernel32(_modules(5), k32_enum=False)
    psapi = FakePsapi(k32)
    api = fake_api(kernel32=k32, psapi=psapi)
    assert api.loaded_modules() == _modules(5)
    assert psapi.EnumProcessModules.calls
    assert psapi.EnumProcessModules.restype is wintypes.BOOL


def test_module_enumeration_failure_raises_with_winerror() -> None:
    k32 = FakeKernel32(_modules(5), fail={"EnumProcessModules": 5})
    api = fake_api(kernel32=k32)
    with pytest.raises(WinApiError) as info:
        api.module_handles()
    assert info.value.winerror == 5


def test_module_unloaded_during_listing_is_skipped_with_a_note() -> None:
    mods = _modules(4)
    k32 = FakeKernel32(mods)
    api = fake_api(kernel32=k32)
    handles = api.module_handles()
    assert len(handles) == 4
    real = k32._get_module_file_name

    def gone(module: object, buf: object, size: int) -> int:
        if module == FakeKernel32.handle_of(2):
            k32.last_error = ERROR_MOD_NOT_FOUND
            return 0
        return real(module, buf, size)

    k32.GetModuleFileNameW.impl = gone
    assert api.loaded_modules() == [mods[0], mods[1], mods[3]]
    assert any("126" in n for n in api.take_notes())
    assert api.notes == []


@pytest.mark.parametrize("length", [8, 259, 260, 261, 519, 520, 1000, 4097, 32767])
def test_module_file_name_of_any_length(length: int) -> None:
    prefix = "\\\\?\\C:\\"
    path = prefix + "d" * (length - len(prefix))
    assert len(path) == length
    k32 = FakeKernel32([path])
    api = fake_api(kernel32=k32)
    assert api.process_image() == path
    sizes = [call[2] for call in k32.GetModuleFileNameW.calls]
    assert sizes[0] == _win32.MAX_PATH
    assert all(b > a for a, b in zip(sizes, sizes[1:]))  # the buffer only grows
    assert sizes[-1] > len(path)


def test_module_path_longer_than_max_path_grows_buffer() -> None:
    path = "C:\\" + "\\".join(["very long folder name"] * 30) + "\\python.exe"
    assert len(path) > 600
    k32 = FakeKernel32([path])
    api = fake_api(kernel32=k32)
    assert api.process_image() == path
    assert [c[2] for c in k32.GetModuleFileNameW.calls] == [260, 520, 1040]
    assert api.app_dir() == path.rsplit("\\", 1)[0]


def test_module_path_beyond_the_win32_limit_is_an_error() -> None:
    k32 = FakeKernel32(["C:\\" + "x" * 40000])
    api = fake_api(kernel32=k32)
    with pytest.raises(WinApiError) as info:
        api.process_image()
    assert info.value.winerror == ERROR_INSUFFICIENT_BUFFER


def test_module_file_name_failure_raises() -> None:
    api = fake_api(kernel32=FakeKernel32(_modules(2), fail={"GetModuleFileNameW": 5}))
    with pytest.raises(WinApiError) as info:
        api.process_image()
    assert info.value.winerror == 5


def test_non_ascii_module_paths() -> None:
    venv_base = KOREAN_HOME + "\\AppData\\Local\\Programs\\Python\\Python311"
    mods = [
        venv_base + "\\python.exe",
        "C:\\Windows\\SYSTEM32\\ntdll.dll",
        KOREAN_HOME + "\\프로젝트\\.venv\\Lib\\site-packages\\torch\\lib\\c10.dll",
        "C:\\Données\\ünïcødé\\😀.dll",
    ]
    api = fake_api(kernel32=FakeKernel32(mods))
    assert api.loaded_modules() == mods
    assert api.app_dir() == venv_base


# --------------------------------------------------------------------------------------------
# System folders
# --------------------------------------------------------------------------------------------


def test_system_folders() -> None:
    api = fake_api(kernel32=FakeKernel32(_modules(1), windows_dir="D:\\WINDOWS", system_dir="D:\\WINDOWS\\system32"))
    assert api.windows_directory() == "D:\\WINDOWS"
    assert api.system_directory() == "D:\\WINDOWS\\system32"


def test_system_folder_longer_than_max_path() -> None:
    long_dir = "C:\\" + "w" * 400
    k32 = FakeKernel32(_modules(1), windows_dir=long_dir)
    api = fake_api(kernel32=k32)
    assert api.windows_directory() == long_dir
    # First call reports the size needed (with the null), the second uses exactly that.
    assert [c[1] for c in k32.GetWindowsDirectoryW.calls] == [260, len(long_dir) + 1]


def test_system_folder_failure() -> None:
    api = fake_api(kernel32=FakeKernel32(_modules(1), fail={"GetSystemDirectoryW": 8}))
    with pytest.raises(WinApiError) as info:
        api.system_directory()
    assert info.value.winerror == 8


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def test_paths_keep_their_registry_type() -> None:
    reg = typical_registry(
        user_path=(KOREAN_HOME + "\\bin;%USERPROFILE%\\tools", FakeWinreg.REG_EXPAND_SZ),
        system_path=("C:\\Windows\\system32;C:\\CUDA\\bin", FakeWinreg.REG_SZ),
    )
    api = fake_api(winreg=reg)
    assert api.user_path() == (KOREAN_HOME + "\\bin;%USERPROFILE%\\tools", "REG_EXPAND_SZ")
    assert api.system_path() == ("C:\\Windows\\system32;C:\\CUDA\\bin", "REG_SZ")
    assert api.notes == []


def test_missing_registry_values_and_keys_are_none() -> None:
    api = fake_api(winreg=typical_registry(user_path=None, system_path=None))
    assert api.user_path() is None
    assert api.system_path() is None
    empty = fake_api(winreg=FakeWinreg())  # not even HKCU\Environment
    assert empty.user_path() is None
    assert empty.system_path() is None
    assert empty.read_value("HKLM", "SOFTWARE\\Nope", "x") is None
    assert empty.read_values("HKLM", "SOFTWARE\\Nope") is None
    assert api.notes == [] and empty.notes == []


def test_access_denied_is_none_plus_a_note() -> None:
    reg = typical_registry()
    reg.deny(HKLM, SYSTEM_ENVIRONMENT_KEY)  # the whole key
    reg.deny(HKCU, "Environment", "Path")  # one value
    api = fake_api(winreg=reg)
    assert api.system_path() is None
    assert api.user_path() is None
    notes = api.take_notes()
    assert len(notes) == 2
    assert all("access denied" in n for n in notes)
    assert any("Session Manager\\Environment" in n for n in notes)
    assert any("HKCU\\Environment\\Path" in n for n in notes)


def test_unexpected_value_type_is_none_plus_a_note() -> None:
    reg = typical_registry()
    reg.set_value(HKCU, "Environment", "Path", b"\x00\x01", FakeWinreg.REG_BINARY)
    api = fake_api(winreg=reg)
    assert api.user_path() is None
    assert any("REG_BINARY" in n for n in api.notes)


@pytest.mark.parametrize(
    ("stored", "expected"),
    [(None, True), (0, False), (1, True), (2, True)],
)
def test_safe_dll_search_mode(stored: int | None, expected: bool) -> None:
    api = fake_api(winreg=typical_registry(safe_dll_search_mode=stored))
    assert api.safe_dll_search_mode() is expected
    assert api.notes == []


def test_safe_dll_search_mode_unreadable_or_odd_means_default() -> None:
    reg = typical_registry(safe_dll_search_mode=0)
    reg.deny(HKLM, SESSION_MANAGER_KEY, "SafeDllSearchMode")
    api = fake_api(winreg=reg)
    assert api.safe_dll_search_mode() is True
    assert any("access denied" in n for n in api.take_notes())
    reg2 = typical_registry()
    reg2.set_value(HKLM, SESSION_MANAGER_KEY, "SafeDllSearchMode", "0", FakeWinreg.REG_SZ)
    api2 = fake_api(winreg=reg2)
    assert api2.safe_dll_search_mode() is True
    assert any("REG_SZ" in n for n in api2.notes)


@pytest.mark.parametrize(("stored", "expected"), [(None, False), (0, False), (1, True)])
def test_long_paths_enabled(stored: int | None, expected: bool) -> None:
    api = fake_api(winreg=typical_registry(long_paths_enabled=stored))
    assert api.long_paths_enabled() is expected


def test_known_dlls_keyed_by_lower_case_file_name() -> None:
    reg = typical_registry(known_dlls=("kernel32", "USER32"))
    reg.set_value(HKLM, KNOWN_DLLS_KEY, "_wow64cpu", "wow64cpu.dll", FakeWinreg.REG_SZ)
    reg.set_value(HKLM, KNOWN_DLLS_KEY, "DllDirectory32", "%SystemRoot%\\SysWOW64", FakeWinreg.REG_EXPAND_SZ)
    api = fake_api(winreg=reg)
    assert api.known_dlls() == {
        "kernel32.dll": "kernel32.dll",
        "user32.dll": "USER32.dll",
        "wow64cpu.dll": "wow64cpu.dll",
    }
    assert api.notes == []


def test_known_dlls_missing_or_denied() -> None:
    api = fake_api(winreg=FakeWinreg())
    assert api.known_dlls() == {}
    assert any("absent" in n for n in api.take_notes())
    reg = typical_registry()
    reg.deny(HKLM, KNOWN_DLLS_KEY)
    denied = fake_api(winreg=reg)
    assert denied.known_dlls() == {}
    notes = denied.take_notes()
    assert len(notes) == 1 and "access denied" in notes[0]


def test_unknown_hive_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="hive"):
        fake_api().read_value("HKXX", "a", "b")


def test_fake_winreg_matches_winreg_behaviour() -> None:
    reg = typical_registry()
    with pytest.raises(FileNotFoundError) as info:
        reg.OpenKey(HKLM, "SOFTWARE\\Missing")
    assert info.value.winerror == 2  # type: ignore[attr-defined]
    with reg.OpenKey(HKCU, "ENVIRONMENT") as key:  # case-insensitive
        assert reg.QueryValueEx(key, "path")[1] == reg.REG_EXPAND_SZ
        _, n_values, _ = reg.QueryInfoKey(key)
        names = {reg.EnumValue(key, i)[0] for i in range(n_values)}
        assert "Path" in names
        with pytest.raises(OSError):
            reg.EnumValue(key, n_values)
    with pytest.raises(OSError):
        reg.QueryValueEx(key, "Path")  # closed handle


# --------------------------------------------------------------------------------------------
# The real thing (Windows CI only)
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform != "win32", reason="needs Windows")
def test_real_windows_api() -> None:  # pragma: no cover - Windows only
    import ntpath
    import os

    api = WinApi()
    image = api.process_image()
    assert image.lower().endswith(".exe")
    base = getattr(sys, "_base_executable", sys.executable)
    assert ntpath.normcase(api.app_dir()) == ntpath.normcase(os.path.dirname(base))
    mods = api.loaded_modules()
    names = {ntpath.basename(m).lower() for m in mods}
    assert "ntdll.dll" in names and "kernel32.dll" in names
    assert os.path.isdir(api.system_directory())
    assert os.path.isdir(api.windows_directory())
    assert "kernel32.dll" in api.known_dlls()
    assert isinstance(api.safe_dll_search_mode(), bool)
    sp = api.system_path()
    assert sp is not None and sp[1] in ("REG_SZ", "REG_EXPAND_SZ")


# --------------------------------------------------------------------------------------------
# Smart App Control, commit charge, VC++ Redistributable (optional snapshot facts)
# --------------------------------------------------------------------------------------------

CI_POLICY = _win32.CI_POLICY_KEY
VC_NATIVE, VC_WOW = _win32.VC_RUNTIMES_X64_KEYS


@pytest.mark.parametrize("state", [0, 1, 2])
def test_smart_app_control_state_is_read(state: int) -> None:
    reg = typical_registry()
    reg.set_value(HKLM, CI_POLICY, "VerifiedAndReputablePolicyState", state, reg.REG_DWORD)
    api = fake_api(winreg=reg)
    assert api.smart_app_control() == state
    assert api.notes == []


def test_smart_app_control_absent_is_none_without_a_note() -> None:
    api = fake_api(winreg=typical_registry())  # Windows 10: no CI\Policy value
    assert api.smart_app_control() is None
    assert api.notes == []


def test_smart_app_control_access_denied_is_none_with_a_note() -> None:
    reg = typical_registry()
    reg.set_value(HKLM, CI_POLICY, "VerifiedAndReputablePolicyState", 1, reg.REG_DWORD)
    reg.deny(HKLM, CI_POLICY, "VerifiedAndReputablePolicyState")
    api = fake_api(winreg=reg)
    assert api.smart_app_control() is None
    assert api.notes == [f"access denied reading HKLM\\{CI_POLICY}\\VerifiedAndReputablePolicyState"]


def test_smart_app_control_of_the_wrong_type_is_ignored() -> None:
    reg = typical_registry()
    reg.set_value(HKLM, CI_POLICY, "VerifiedAndReputablePolicyState", "1", reg.REG_SZ)
    api = fake_api(winreg=reg)
    assert api.smart_app_control() is None
    assert "unexpected type REG_SZ" in api.notes[0]


def test_memory_status_sets_dw_length_and_reads_the_struct() -> None:
    assert ctypes.sizeof(_win32.MEMORYSTATUSEX) == 64  # sysinfoapi.h layout
    k32 = FakeKernel32(_modules(1))
    k32.memory.update(ullTotalPageFile=24 << 30, ullAvailPageFile=5 << 30, ullTotalPhys=16 << 30)
    api = fake_api(kernel32=k32)
    status = api.memory_status()
    assert status.dwLength == 64 and status.ullTotalPhys == 16 << 30
    assert api.commit_charge() == (24 << 30, 5 << 30)
    fn = k32.GlobalMemoryStatusEx
    assert list(fn.argtypes) == [ctypes.POINTER(_win32.MEMORYSTATUSEX)]
    assert fn.restype is wintypes.BOOL
    assert len(fn.calls) == 2


def test_the_fake_refuses_a_memory_status_without_dw_length() -> None:
    k32 = FakeKernel32(_modules(1))
    api = fake_api(kernel32=k32)
    api.memory_status()  # declares the function
    assert k32.GlobalMemoryStatusEx(ctypes.byref(_win32.MEMORYSTATUSEX())) == 0
    assert k32.last_error == 87


def test_memory_status_failure_raises_with_the_win32_error() -> None:
    api = fake_api(kernel32=FakeKernel32(_modules(1), fail={"GlobalMemoryStatusEx": 5}))
    with pytest.raises(WinApiError) as info:
        api.commit_charge()
    assert (info.value.function, info.value.winerror) == ("GlobalMemoryStatusEx", 5)


def _redist(reg: FakeWinreg, key: str, version: object = "v14.44.35211.00", installed: int = 1) -> None:
    reg.set_value(HKLM, key, "Installed", installed, reg.REG_DWORD)
    if version is not None:
        reg.set_value(HKLM, key, "Version", version, reg.REG_SZ)


@pytest.mark.parametrize("key", [VC_NATIVE, VC_WOW])
def test_vc_redist_version_from_either_view(key: str) -> None:
    reg = typical_registry()
    _redist(reg, key)
    api = fake_api(winreg=reg)
    assert api.vc_redist_x64() == "v14.44.35211.00"
    assert api.notes == []


def test_vc_redist_native_key_wins() -> None:
    reg = typical_registry()
    _redist(reg, VC_NATIVE, "v14.44.35211.00")
    _redist(reg, VC_WOW, "v14.38.33135.00")
    assert fake_api(winreg=reg).vc_redist_x64() == "v14.44.35211.00"


def test_vc_redist_not_installed() -> None:
    reg = typical_registry()
    assert fake_api(winreg=reg).vc_redist_x64() is None
    _redist(reg, VC_NATIVE, installed=0)  # uninstalled: the key can stay behind
    api = fake_api(winreg=reg)
    assert api.vc_redist_x64() is None
    assert api.notes == []


def test_vc_redist_version_from_the_dwords() -> None:
    reg = typical_registry()
    _redist(reg, VC_NATIVE, version=None)
    for name, value in (("Major", 14), ("Minor", 40), ("Bld", 33810), ("Rbld", 0)):
        reg.set_value(HKLM, VC_NATIVE, name, value, reg.REG_DWORD)
    assert fake_api(winreg=reg).vc_redist_x64() == "v14.40.33810.00"


def test_vc_redist_installed_without_a_version_is_empty() -> None:
    reg = typical_registry()
    _redist(reg, VC_NATIVE, version=None)
    assert fake_api(winreg=reg).vc_redist_x64() == ""


def test_vc_redist_access_denied_falls_back_to_the_other_view_with_a_note() -> None:
    reg = typical_registry()
    _redist(reg, VC_NATIVE)
    reg.deny(HKLM, VC_NATIVE)
    api = fake_api(winreg=reg)
    assert api.vc_redist_x64() is None
    assert api.notes == [f"access denied reading HKLM\\{VC_NATIVE}\\Installed"]
    _redist(reg, VC_WOW, "v14.42.34433.00")
    assert fake_api(winreg=reg).vc_redist_x64() == "v14.42.34433.00"
