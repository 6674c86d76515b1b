"""The only module of torchdll that talks to Win32.

Everything here is a thin, typed wrapper over one Win32 call (through :mod:`ctypes`) or one
registry read (through :mod:`winreg`). The wrappers live on :class:`WinApi`, whose constructor
takes the low-level objects (``kernel32``, ``psapi``, the ``winreg`` module and a last-error
getter). By default the real ones are loaded on first use, so this module imports on any OS;
tests on Linux pass the fakes of ``tests/support/fakewin.py`` and exercise the same code.

Conventions:

* Every foreign function gets ``argtypes`` and ``restype`` before its first call
  (:meth:`WinApi._fn`), also on injected objects, so a fake can check the declaration.
* Win32 failures raise :class:`WinApiError` (an :class:`OSError` that keeps ``winerror`` on
  every OS), never a message parsed from localised text.
* Registry reads return ``(value, type_name)`` or ``None`` when the key or value is absent.
  Access denied (and any other registry failure) also gives ``None``, plus a line in
  :attr:`WinApi.notes`: callers record those notes instead of failing.
"""

from __future__ import annotations

import ctypes
import ntpath
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

__all__ = [
    "ENVIRONMENT_VARIABLE_MAX_CHARS",
    "ERROR_ACCESS_DENIED",
    "ERROR_INSUFFICIENT_BUFFER",
    "ERROR_MOD_NOT_FOUND",
    "HKCU",
    "HKLM",
    "KNOWN_DLLS_KEY",
    "LONG_PATHS_KEY",
    "CI_POLICY_KEY",
    "MEMORYSTATUSEX",
    "SMART_APP_CONTROL_VALUE",
    "VC_RUNTIMES_X64_KEYS",
    "LOAD_LIBRARY_SEARCH_DEFAULT_DIRS",
    "LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR",
    "MAX_PATH",
    "SEM_FAILCRITICALERRORS",
    "SEM_NOOPENFILEERRORBOX",
    "REG_TYPE_NAMES",
    "SESSION_MANAGER_KEY",
    "SYSTEM_ENVIRONMENT_KEY",
    "UNICODE_STRING_MAX_CHARS",
    "USER_ENVIRONMENT_KEY",
    "RegData",
    "RegRead",
    "WinApi",
    "WinApiError",
]

# --------------------------------------------------------------------------------------------
# Constants, with their source
# --------------------------------------------------------------------------------------------

#: minwindef.h
MAX_PATH = 260
#: The longest path the Win32 API can return: UNICODE_STRING holds at most 32,767 WCHARs
#: (documented under "Maximum Path Length Limitation"; GetModuleFileNameW remarks).
UNICODE_STRING_MAX_CHARS = 32767
#: winerror.h
ERROR_SUCCESS = 0
ERROR_ACCESS_DENIED = 5
ERROR_INSUFFICIENT_BUFFER = 122
ERROR_MOD_NOT_FOUND = 126

#: libloaderapi.h ``LoadLibraryExW`` flags (the ones torch and CPython pass: 0x1100).
LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR = 0x00000100
LOAD_LIBRARY_SEARCH_DEFAULT_DIRS = 0x00001000
#: errhandlingapi.h ``SetThreadErrorMode`` modes: no "missing DLL"/"critical error" dialog boxes
#: during a probe (CPython sets SEM_FAILCRITICALERRORS around extension-module loads).
SEM_FAILCRITICALERRORS = 0x0001
SEM_NOOPENFILEERRORBOX = 0x8000
#: verrsrc.h ``VS_FIXEDFILEINFO.dwSignature``.
VS_FFI_SIGNATURE = 0xFEEF04BD

#: winnt.h ``REG_*`` value types.
REG_TYPE_NAMES: Dict[int, str] = {
    0: "REG_NONE",
    1: "REG_SZ",
    2: "REG_EXPAND_SZ",
    3: "REG_BINARY",
    4: "REG_DWORD",
    5: "REG_DWORD_BIG_ENDIAN",
    6: "REG_LINK",
    7: "REG_MULTI_SZ",
    8: "REG_RESOURCE_LIST",
    9: "REG_FULL_RESOURCE_DESCRIPTOR",
    10: "REG_RESOURCE_REQUIREMENTS_LIST",
    11: "REG_QWORD",
}

#: Hive short names accepted by :meth:`WinApi.read_value`, mapped to :mod:`winreg` attributes.
HKCU = "HKCU"
HKLM = "HKLM"
_HIVES = {HKCU: "HKEY_CURRENT_USER", HKLM: "HKEY_LOCAL_MACHINE"}

#: Where Windows keeps the persistent PATH halves (read by userenv.dll at log-on).
USER_ENVIRONMENT_KEY = "Environment"
SYSTEM_ENVIRONMENT_KEY = r"SYSTEM\CurrentControlSet\Control\Session Manager\Environment"
#: SafeDllSearchMode (DWORD) lives here; absent means enabled (Dynamic-Link Library Search Order).
SESSION_MANAGER_KEY = r"SYSTEM\CurrentControlSet\Control\Session Manager"
#: The documented view of the \KnownDlls object directory.
KNOWN_DLLS_KEY = SESSION_MANAGER_KEY + r"\KnownDLLs"
#: LongPathsEnabled (DWORD); absent means disabled (Maximum Path Length Limitation).
LONG_PATHS_KEY = r"SYSTEM\CurrentControlSet\Control\FileSystem"

#: Smart App Control state (DWORD ``VerifiedAndReputablePolicyState``: 0 off, 1 on,
#: 2 evaluation), as read by Windows Security and documented in Microsoft's Smart App Control
#: FAQ / App Control for Business docs.
CI_POLICY_KEY = r"SYSTEM\CurrentControlSet\Control\CI\Policy"
SMART_APP_CONTROL_VALUE = "VerifiedAndReputablePolicyState"
#: Where the VC++ 2015-2022 Redistributable (x64) records itself: ``Installed`` (DWORD 1) and
#: ``Version`` (REG_SZ ``v14.44.35211.00``), plus ``Major``/``Minor``/``Bld``/``Rbld`` DWORDs
#: ("Visual C++ Redistributable: detect installation", Microsoft Learn). The installer bundle
#: is 32-bit, so on 64-bit Windows the key also (or only) appears under WOW6432Node.
VC_RUNTIMES_X64_KEYS: Tuple[str, ...] = (
    r"SOFTWARE\Microsoft\VisualStudio\14.0\VC\Runtimes\x64",
    r"SOFTWARE\WOW6432Node\Microsoft\VisualStudio\14.0\VC\Runtimes\x64",
)


class MEMORYSTATUSEX(ctypes.Structure):
    """sysinfoapi.h ``MEMORYSTATUSEX`` (64 bytes; ``dwLength`` must be set before the call).

    ``ullTotalPageFile`` is the commit limit (RAM + paging files, or the process's job limit if
    smaller), ``ullAvailPageFile`` what can still be committed. Fixed-width fields, so the
    layout is the Windows one on every OS (the fakes fill it on Linux too).
    """

    _fields_ = [
        ("dwLength", ctypes.c_uint32),
        ("dwMemoryLoad", ctypes.c_uint32),
        ("ullTotalPhys", ctypes.c_uint64),
        ("ullAvailPhys", ctypes.c_uint64),
        ("ullTotalPageFile", ctypes.c_uint64),
        ("ullAvailPageFile", ctypes.c_uint64),
        ("ullTotalVirtual", ctypes.c_uint64),
        ("ullAvailVirtual", ctypes.c_uint64),
        ("ullAvailExtendedVirtual", ctypes.c_uint64),
    ]


#: KnownDLLs values that name folders, not DLLs.
_KNOWN_DLLS_NOT_DLLS = frozenset({"dlldirectory", "dlldirectory32"})

#: Retries of the EnumProcessModules grow-and-retry loop (modules may load between calls).
_ENUM_RETRIES = 8

#: What a registry value can hold, as :mod:`winreg` returns it.
RegData = Union[str, int, bytes, List[str], None]
#: ``(value, type_name)`` of one registry value.
RegRead = Tuple[RegData, str]

# -- registry writes and the environment broadcast (persistent Path repair) --------------------

#: winnt.h registry access rights.
KEY_QUERY_VALUE = 0x0001
KEY_SET_VALUE = 0x0002
#: winuser.h: ``SendMessageTimeoutW(HWND_BROADCAST, WM_SETTINGCHANGE, 0, "Environment",
#: SMTO_ABORTIFHUNG, ...)`` is how Explorer and other top-level windows learn that the
#: persistent environment changed ("Environment Variables" docs, Win32 System Information).
HWND_BROADCAST = 0xFFFF
WM_SETTINGCHANGE = 0x001A
SMTO_ABORTIFHUNG = 0x0002
#: How long the broadcast may wait for each hung window, in milliseconds.
BROADCAST_TIMEOUT_MS = 5000
#: "The maximum size of a user-defined environment variable is 32,767 characters"
#: (``SetEnvironmentVariableW`` / "Environment Variables" docs): a longer Path cannot reach a
#: process whole, even though the registry value itself may be longer.
ENVIRONMENT_VARIABLE_MAX_CHARS = 32767
#: The value types a Path may be written with (winnt.h).
_STRING_TYPES = {"REG_SZ": 1, "REG_EXPAND_SZ": 2}


class WinApiError(OSError):
    """A Win32 call failed. ``winerror`` is kept on every OS (plain OSError drops it on POSIX)."""

    def __init__(self, function: str, winerror: int) -> None:
        super().__init__(f"{function} failed with Win32 error {winerror}")
        self.function = function
        self.winerror = winerror

    def __reduce__(self) -> Tuple[type, Tuple[str, int]]:
        return (type(self), (self.function, self.winerror))


def _load_library(name: str) -> Any:
    """``ctypes.WinDLL(name, use_last_error=True)`` (``WinDLL`` exists on Windows only)."""
    win_dll = getattr(ctypes, "WinDLL", None)
    if win_dll is None:
        raise OSError(f"cannot load {name}.dll: ctypes.WinDLL is only available on Windows")
    return win_dll(name, use_last_error=True)


class WinApi:
    """Typed access to the few Win32 facts torchdll needs.

    ``kernel32`` and ``psapi`` are ctypes library objects (``ctypes.WinDLL`` with
    ``use_last_error=True`` by default), ``winreg`` the registry module, ``get_last_error``
    the function that returns the thread's saved last error (``ctypes.get_last_error``).
    Each default is loaded on first use; any of them can be replaced by a fake.
    """

    def __init__(
        self,
        kernel32: Any = None,
        psapi: Any = None,
        winreg: Any = None,
        get_last_error: Optional[Callable[[], int]] = None,
        *,
        user32: Any = None,
        shell32: Any = None,
        version: Any = None,
    ) -> None:
        self._kernel32 = kernel32
        self._psapi = psapi
        self._winreg = winreg
        self._get_last_error = get_last_error
        self._user32 = user32
        self._shell32 = shell32
        self._version = version
        self._declared: Dict[Tuple[int, str], Any] = {}
        #: Problems met while reading (access denied, unexpected types...), for the snapshot.
        self.notes: List[str] = []

    # ----------------------------------------------------------------------------------------
    # Lazy low-level objects
    # ----------------------------------------------------------------------------------------

    @property
    def kernel32(self) -> Any:
        if self._kernel32 is None:
            self._kernel32 = _load_library("kernel32")
        return self._kernel32

    @property
    def psapi(self) -> Any:
        if self._psapi is None:
            self._psapi = _load_library("psapi")
        return self._psapi

    @property
    def winreg(self) -> Any:
        if self._winreg is None:
            import winreg  # Windows only; imported on first use

            self._winreg = winreg
        return self._winreg

    def last_error(self) -> int:
        """The last error saved by the previous foreign call (0 if none can be read)."""
        if self._get_last_error is None:
            getter = getattr(ctypes, "get_last_error", None)
            if getter is None:
                return ERROR_SUCCESS
            self._get_last_error = getter
        assert self._get_last_error is not None
        return int(self._get_last_error())

    def take_notes(self) -> Tuple[str, ...]:
        """Return the notes gathered so far and start a new list."""
        notes, self.notes = tuple(self.notes), []
        return notes

    # ----------------------------------------------------------------------------------------
    # Foreign-function declarations
    # ----------------------------------------------------------------------------------------

    def _fn(self, lib: Any, name: str) -> Any:
        """``lib.name`` with argtypes and restype declared (once per library object)."""
        key = (id(lib), name)
        hit = self._declared.get(key)
        if hit is not None:
            return hit
        from ctypes import wintypes  # lazily: only what the signatures need

        signatures: Dict[str, Tuple[List[Any], Any]] = {
            # libloaderapi.h
            "GetModuleFileNameW": (
                [wintypes.HMODULE, wintypes.LPWSTR, wintypes.DWORD],
                wintypes.DWORD,
            ),
            # processthreadsapi.h
            "GetCurrentProcess": ([], wintypes.HANDLE),
            # psapi.h: K32EnumProcessModules (kernel32, Windows 7+) and EnumProcessModules
            "K32EnumProcessModules": (
                [
                    wintypes.HANDLE,
                    ctypes.POINTER(wintypes.HMODULE),
                    wintypes.DWORD,
                    ctypes.POINTER(wintypes.DWORD),
                ],
                wintypes.BOOL,
            ),
            "EnumProcessModules": (
                [
                    wintypes.HANDLE,
                    ctypes.POINTER(wintypes.HMODULE),
                    wintypes.DWORD,
                    ctypes.POINTER(wintypes.DWORD),
                ],
                wintypes.BOOL,
            ),
            # sysinfoapi.h
            "GetSystemDirectoryW": ([wintypes.LPWSTR, wintypes.UINT], wintypes.UINT),
            "GetWindowsDirectoryW": ([wintypes.LPWSTR, wintypes.UINT], wintypes.UINT),
            # BOOL GlobalMemoryStatusEx(LPMEMORYSTATUSEX lpBuffer)
            "GlobalMemoryStatusEx": ([ctypes.POINTER(MEMORYSTATUSEX)], wintypes.BOOL),
            # winuser.h: LRESULT SendMessageTimeoutW(HWND, UINT, WPARAM, LPARAM, UINT, UINT,
            # PDWORD_PTR); lParam carries a string pointer here, hence LPCWSTR.
            "SendMessageTimeoutW": (
                [
                    wintypes.HWND,
                    wintypes.UINT,
                    wintypes.WPARAM,
                    wintypes.LPCWSTR,
                    wintypes.UINT,
                    wintypes.UINT,
                    ctypes.POINTER(ctypes.c_size_t),
                ],
                wintypes.LPARAM,
            ),
            # shlobj_core.h: BOOL IsUserAnAdmin(void) -- TRUE only for an elevated token.
            "IsUserAnAdmin": ([], wintypes.BOOL),
            # libloaderapi.h: load probes (torchdll.probe) and loaded-module queries (guard)
            "LoadLibraryExW": ([wintypes.LPCWSTR, wintypes.HANDLE, wintypes.DWORD], wintypes.HMODULE),
            "FreeLibrary": ([wintypes.HMODULE], wintypes.BOOL),
            "GetModuleHandleW": ([wintypes.LPCWSTR], wintypes.HMODULE),
            # errhandlingapi.h: BOOL SetThreadErrorMode(DWORD dwNewMode, LPDWORD lpOldMode)
            "SetThreadErrorMode": ([wintypes.DWORD, ctypes.POINTER(wintypes.DWORD)], wintypes.BOOL),
            # winver.h (version.dll)
            "GetFileVersionInfoSizeW": ([wintypes.LPCWSTR, ctypes.POINTER(wintypes.DWORD)], wintypes.DWORD),
            "GetFileVersionInfoW": (
                [wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD, wintypes.LPVOID],
                wintypes.BOOL,
            ),
            "VerQueryValueW": (
                [
                    wintypes.LPCVOID,
                    wintypes.LPCWSTR,
                    ctypes.POINTER(wintypes.LPVOID),
                    ctypes.POINTER(wintypes.UINT),
                ],
                wintypes.BOOL,
            ),
        }
        argtypes, restype = signatures[name]
        fn = getattr(lib, name)
        fn.argtypes = argtypes
        fn.restype = restype
        self._declared[key] = fn
        return fn

    def _fail(self, function: str) -> WinApiError:
        return WinApiError(function, self.last_error())

    # ----------------------------------------------------------------------------------------
    # Process facts
    # ----------------------------------------------------------------------------------------

    def module_file_name(self, module: Optional[int] = None) -> str:
        """``GetModuleFileNameW``: the full path of a loaded module (``None``: the process image).

        The buffer starts at ``MAX_PATH`` and doubles while the result is truncated (the call
        then returns the buffer size and sets ``ERROR_INSUFFICIENT_BUFFER``), up to the
        32,767-character limit of a Win32 path.
        """
        fn = self._fn(self.kernel32, "GetModuleFileNameW")
        size = MAX_PATH
        while True:
            buf = ctypes.create_unicode_buffer(size)
            n = int(fn(module, buf, size))
            if n == 0:
                raise self._fail("GetModuleFileNameW")
            if n < size:
                return ctypes.wstring_at(buf, n)
            # Truncated (n == size). Windows XP did not set the error; treat n == size as such.
            if size > UNICODE_STRING_MAX_CHARS:
                raise WinApiError("GetModuleFileNameW", ERROR_INSUFFICIENT_BUFFER)
            size = min(size * 2, UNICODE_STRING_MAX_CHARS + 1)

    def process_image(self) -> str:
        """The full path of the process image (``GetModuleFileNameW(NULL)``).

        In a CPython venv on Windows this is the *base* interpreter: the venv's ``python.exe``
        is a launcher that starts it (bpo-34977), so its folder is the loader's application
        directory, not the venv's ``Scripts``.
        """
        return self.module_file_name(None)

    def app_dir(self) -> str:
        """The loader's application directory: the folder of :meth:`process_image`."""
        return ntpath.dirname(self.process_image())

    def module_handles(self) -> List[int]:
        """``K32EnumProcessModules`` (or psapi ``EnumProcessModules``): handles in load order.

        The handle array grows and the call is retried while the needed size exceeds it
        (modules can be loaded between two calls, so the size is re-read each time).
        """
        from ctypes import wintypes

        try:
            enum = self._fn(self.kernel32, "K32EnumProcessModules")
            enum_name = "K32EnumProcessModules"
        except AttributeError:  # before Windows 7 the function is only exported by psapi.dll
            enum = self._fn(self.psapi, "EnumProcessModules")
            enum_name = "EnumProcessModules"
        process = self._fn(self.kernel32, "GetCurrentProcess")()
        item = ctypes.sizeof(wintypes.HMODULE)
        count = 256
        for _ in range(_ENUM_RETRIES):
            handles = (wintypes.HMODULE * count)()
            needed = wintypes.DWORD(0)
            if not enum(process, handles, ctypes.sizeof(handles), ctypes.byref(needed)):
                raise self._fail(enum_name)
            got = int(needed.value) // item
            if got <= count:
                return [int(h) for h in handles[:got] if h]
            count = got + 16  # room for modules loaded meanwhile
        raise WinApiError(enum_name, ERROR_INSUFFICIENT_BUFFER)

    def loaded_modules(self) -> List[str]:
        """Full paths of the modules of this process, in load order (the image first).

        A module unloaded between the enumeration and the name query is skipped.
        """
        out: List[str] = []
        for handle in self.module_handles():
            try:
                out.append(self.module_file_name(handle))
            except WinApiError as exc:
                self.notes.append(f"GetModuleFileNameW(0x{handle:x}) failed: Win32 error {exc.winerror}")
        return out

    def _system_folder(self, name: str) -> str:
        # GetSystemDirectoryW/GetWindowsDirectoryW return the length without the terminating
        # null on success, the size needed *with* it when the buffer is too small, 0 on failure.
        fn = self._fn(self.kernel32, name)
        size = MAX_PATH
        for _ in range(4):
            buf = ctypes.create_unicode_buffer(size)
            n = int(fn(buf, size))
            if n == 0:
                raise self._fail(name)
            if n < size:
                return ctypes.wstring_at(buf, n)
            size = n
        raise WinApiError(name, ERROR_INSUFFICIENT_BUFFER)

    def system_directory(self) -> str:
        """``GetSystemDirectoryW`` (``C:\\Windows\\System32``, also in a WOW64 process)."""
        return self._system_folder("GetSystemDirectoryW")

    def windows_directory(self) -> str:
        """``GetWindowsDirectoryW`` (``C:\\Windows``)."""
        return self._system_folder("GetWindowsDirectoryW")

    # ----------------------------------------------------------------------------------------
    # Registry
    # ----------------------------------------------------------------------------------------

    def _hive(self, hive: str) -> Any:
        try:
            return getattr(self.winreg, _HIVES[hive])
        except KeyError:
            raise ValueError(f"unknown hive {hive!r} (use 'HKCU' or 'HKLM')") from None

    def _note_failure(self, where: str, exc: OSError) -> None:
        if isinstance(exc, PermissionError):
            self.notes.append(f"access denied reading {where}")
        else:
            code = getattr(exc, "winerror", None) or exc.errno
            self.notes.append(f"could not read {where} (error {code})")

    def read_value(self, hive: str, subkey: str, name: str) -> Optional[RegRead]:
        """One registry value as ``(value, type_name)``; ``None`` if absent or unreadable.

        ``REG_EXPAND_SZ`` strings are returned as stored, unexpanded. Access denied and other
        failures add a note (see :attr:`notes`).
        """
        wr = self.winreg
        where = f"{hive}\\{subkey}\\{name}"
        try:
            with wr.OpenKey(self._hive(hive), subkey, 0, wr.KEY_READ) as key:
                value, kind = wr.QueryValueEx(key, name)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._note_failure(where, exc)
            return None
        return value, REG_TYPE_NAMES.get(int(kind), f"REG_TYPE_{int(kind)}")

    def read_values(self, hive: str, subkey: str) -> Optional[Dict[str, RegRead]]:
        """Every value of a key: ``{name: (value, type_name)}``; ``None`` if absent/unreadable."""
        wr = self.winreg
        where = f"{hive}\\{subkey}"
        out: Dict[str, RegRead] = {}
        try:
            with wr.OpenKey(self._hive(hive), subkey, 0, wr.KEY_READ) as key:
                _, n_values, _ = wr.QueryInfoKey(key)
                for index in range(int(n_values)):
                    name, value, kind = wr.EnumValue(key, index)
                    out[name] = (value, REG_TYPE_NAMES.get(int(kind), f"REG_TYPE_{int(kind)}"))
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._note_failure(where, exc)
            return None
        return out

    def _read_string(self, hive: str, subkey: str, name: str) -> Optional[Tuple[str, str]]:
        hit = self.read_value(hive, subkey, name)
        if hit is None:
            return None
        value, kind = hit
        if kind not in ("REG_SZ", "REG_EXPAND_SZ") or not isinstance(value, str):
            self.notes.append(f"{hive}\\{subkey}\\{name} has unexpected type {kind}; ignored")
            return None
        return value, kind

    def _read_dword(self, hive: str, subkey: str, name: str) -> Optional[int]:
        hit = self.read_value(hive, subkey, name)
        if hit is None:
            return None
        value, kind = hit
        if kind not in ("REG_DWORD", "REG_QWORD") or not isinstance(value, int):
            self.notes.append(f"{hive}\\{subkey}\\{name} has unexpected type {kind}; ignored")
            return None
        return value

    def user_path(self) -> Optional[Tuple[str, str]]:
        """``HKCU\\Environment\\Path`` as ``(value, "REG_SZ" | "REG_EXPAND_SZ")`` or ``None``."""
        return self._read_string(HKCU, USER_ENVIRONMENT_KEY, "Path")

    def system_path(self) -> Optional[Tuple[str, str]]:
        """The machine ``Path`` (Session Manager\\Environment), as :meth:`user_path`."""
        return self._read_string(HKLM, SYSTEM_ENVIRONMENT_KEY, "Path")

    def known_dlls(self) -> Dict[str, str]:
        """The KnownDLLs registry list: lower-case file name -> file name as registered.

        Keys are the *file* names (``kernel32.dll``), which is what a load is matched on; the
        registry value names (``kernel32``, ``_wow64cpu``) are arbitrary. The ``DllDirectory``
        and ``DllDirectory32`` values name folders and are skipped. Empty if the key is absent
        or unreadable (a note says which). Note: the live ``\\KnownDlls`` object directory also
        holds the dependencies of these DLLs; the registry is the documented subset.
        """
        noted = len(self.notes)
        values = self.read_values(HKLM, KNOWN_DLLS_KEY)
        out: Dict[str, str] = {}
        if values is None:
            if len(self.notes) == noted:
                self.notes.append(f"{HKLM}\\{KNOWN_DLLS_KEY} is absent")
            return out
        for name, (value, kind) in values.items():
            if name.lower() in _KNOWN_DLLS_NOT_DLLS:
                continue
            if not isinstance(value, str) or kind not in ("REG_SZ", "REG_EXPAND_SZ"):
                continue
            file_name = value.strip()
            if file_name:
                out.setdefault(file_name.lower(), file_name)
        return out

    def safe_dll_search_mode(self) -> bool:
        """``SafeDllSearchMode``: absent or unreadable means enabled (the default); 0 disables."""
        value = self._read_dword(HKLM, SESSION_MANAGER_KEY, "SafeDllSearchMode")
        return True if value is None else value != 0

    def long_paths_enabled(self) -> bool:
        """``LongPathsEnabled`` (FileSystem key): absent or unreadable means disabled."""
        value = self._read_dword(HKLM, LONG_PATHS_KEY, "LongPathsEnabled")
        return False if value is None else value != 0

    def smart_app_control(self) -> Optional[int]:
        """Smart App Control state (``CI\\Policy\\VerifiedAndReputablePolicyState``): 0 off,
        1 on, 2 evaluation; ``None`` when absent (Windows 10, older 11) or unreadable (a note
        says so when access is denied)."""
        return self._read_dword(HKLM, CI_POLICY_KEY, SMART_APP_CONTROL_VALUE)

    def memory_status(self) -> MEMORYSTATUSEX:
        """``GlobalMemoryStatusEx`` with ``dwLength`` set; :class:`WinApiError` on failure."""
        status = MEMORYSTATUSEX()
        status.dwLength = ctypes.sizeof(MEMORYSTATUSEX)
        if not self._fn(self.kernel32, "GlobalMemoryStatusEx")(ctypes.byref(status)):
            raise self._fail("GlobalMemoryStatusEx")
        return status

    def commit_charge(self) -> Tuple[int, int]:
        """``(commit limit, commit available)`` in bytes: ``ullTotalPageFile`` and
        ``ullAvailPageFile`` of :meth:`memory_status`."""
        status = self.memory_status()
        return int(status.ullTotalPageFile), int(status.ullAvailPageFile)

    def vc_redist_x64(self) -> Optional[str]:
        """The version of the installed VC++ 2015-2022 x64 Redistributable (``"v14.44.35211.00"``),
        or ``None`` when not installed. The first of :data:`VC_RUNTIMES_X64_KEYS` with
        ``Installed`` = 1 wins; its ``Version`` string, else ``vMajor.Minor.Bld.Rbld`` from the
        DWORDs; an installed key without any version gives ``""``."""
        for key in VC_RUNTIMES_X64_KEYS:
            installed = self._read_dword(HKLM, key, "Installed")
            if not installed:
                continue
            hit = self._read_string(HKLM, key, "Version")
            if hit is not None and hit[0].strip():
                return hit[0].strip()
            parts = [self._read_dword(HKLM, key, n) for n in ("Major", "Minor", "Bld", "Rbld")]
            if all(p is not None for p in parts):
                major, minor, bld, rbld = parts
                return f"v{major}.{minor}.{bld}.{rbld:02d}"
            return ""
        return None

    # ----------------------------------------------------------------------------------------
    # Registry writes, elevation, the environment broadcast (persistent Path repair)
    # ----------------------------------------------------------------------------------------

    @property
    def user32(self) -> Any:
        if self._user32 is None:
            self._user32 = _load_library("user32")
        return self._user32

    @property
    def shell32(self) -> Any:
        if self._shell32 is None:
            self._shell32 = _load_library("shell32")
        return self._shell32

    @staticmethod
    def _winerror_of(exc: OSError) -> int:
        return int(getattr(exc, "winerror", None) or exc.errno or 0)

    def query_value(self, hive: str, subkey: str, name: str) -> Optional[RegRead]:
        """One registry value as ``(value, type_name)``; ``None`` only when key or value is absent.

        Unlike :meth:`read_value`, any other failure (access denied...) raises
        :class:`WinApiError` (``RegQueryValueExW``) instead of becoming a note: a repair must
        tell an absent value from an unreadable one.
        """
        wr = self.winreg
        try:
            with wr.OpenKey(self._hive(hive), subkey, 0, wr.KEY_READ) as key:
                value, kind = wr.QueryValueEx(key, name)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise WinApiError("RegQueryValueExW", self._winerror_of(exc)) from exc
        return value, REG_TYPE_NAMES.get(int(kind), f"REG_TYPE_{int(kind)}")

    def set_string_value(self, hive: str, subkey: str, name: str, value: str, type_name: str) -> None:
        """``RegSetValueExW`` of a string with exactly the type given (``REG_SZ``/``REG_EXPAND_SZ``).

        The key is opened with ``RegCreateKeyExW`` (``KEY_SET_VALUE | KEY_QUERY_VALUE``; an
        absent key is created). A type other than the two string types, or a value holding a NUL
        character, raises :class:`ValueError` before anything is opened; a Win32 failure raises
        :class:`WinApiError` (``winerror`` 5 when access is denied).
        """
        if type_name not in _STRING_TYPES:
            raise ValueError(f"refusing to write a Path as {type_name!r} (REG_SZ or REG_EXPAND_SZ only)")
        if "\x00" in value:
            raise ValueError("refusing to write a string holding a NUL character")
        wr = self.winreg
        kind = int(getattr(wr, type_name, _STRING_TYPES[type_name]))
        try:
            key = wr.CreateKeyEx(self._hive(hive), subkey, 0, KEY_SET_VALUE | KEY_QUERY_VALUE)
        except OSError as exc:
            raise WinApiError("RegCreateKeyExW", self._winerror_of(exc)) from exc
        with key:
            try:
                wr.SetValueEx(key, name, 0, kind, value)
            except OSError as exc:
                raise WinApiError("RegSetValueExW", self._winerror_of(exc)) from exc

    def delete_value(self, hive: str, subkey: str, name: str) -> bool:
        """``RegDeleteValueW``; ``False`` when the key or value was already absent."""
        wr = self.winreg
        try:
            key = wr.OpenKey(self._hive(hive), subkey, 0, KEY_SET_VALUE | KEY_QUERY_VALUE)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise WinApiError("RegOpenKeyExW", self._winerror_of(exc)) from exc
        with key:
            try:
                wr.DeleteValue(key, name)
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise WinApiError("RegDeleteValueW", self._winerror_of(exc)) from exc
        return True

    def is_admin(self) -> bool:
        """``IsUserAnAdmin``: the process runs with an elevated administrator token.

        Under UAC an administrator's normal (filtered) token gives ``False``: writing the system
        Path needs an elevated prompt.
        """
        return bool(self._fn(self.shell32, "IsUserAnAdmin")())

    def broadcast_environment_change(self, timeout_ms: int = BROADCAST_TIMEOUT_MS) -> bool:
        """Tell top-level windows (Explorer first) that the persistent environment changed.

        ``SendMessageTimeoutW(HWND_BROADCAST, WM_SETTINGCHANGE, 0, "Environment",
        SMTO_ABORTIFHUNG, timeout_ms, &result)``. Returns ``False`` when the call failed or timed
        out (programs then see the new Path after the next sign-in); never raises for that.
        """
        fn = self._fn(self.user32, "SendMessageTimeoutW")
        result = ctypes.c_size_t(0)
        sent = fn(HWND_BROADCAST, WM_SETTINGCHANGE, 0, "Environment", SMTO_ABORTIFHUNG,
                  int(timeout_ms), ctypes.byref(result))
        return bool(sent)


    # ----------------------------------------------------------------------------------------
    # Load probes and loaded modules (torchdll.probe, torchdll.guard)
    # ----------------------------------------------------------------------------------------

    @property
    def version_dll(self) -> Any:
        """version.dll (``GetFileVersionInfoSizeW``/``GetFileVersionInfoW``/``VerQueryValueW``)."""
        if self._version is None:
            self._version = _load_library("version")
        return self._version

    def load_library_ex(self, path: str, flags: int) -> int:
        """``LoadLibraryExW(path, NULL, flags)``: the module handle, or :class:`WinApiError`
        with the loader's code (126, 127, 193, 1114...) read through ``use_last_error``.

        The caller owns the reference: :meth:`free_library` releases it.
        """
        fn = self._fn(self.kernel32, "LoadLibraryExW")
        handle = fn(path, None, int(flags))
        if not handle:
            raise self._fail("LoadLibraryExW")
        return int(handle)

    def free_library(self, handle: int) -> None:
        """``FreeLibrary``; :class:`WinApiError` on failure."""
        if not self._fn(self.kernel32, "FreeLibrary")(handle):
            raise self._fail("FreeLibrary")

    def module_handle(self, name: str) -> Optional[int]:
        """``GetModuleHandleW(name)``: the handle of a loaded module (by base name or full path),
        ``None`` when no module of that name is loaded. No reference is taken."""
        handle = self._fn(self.kernel32, "GetModuleHandleW")(name)
        return int(handle) if handle else None

    def set_thread_error_mode(self, mode: int) -> int:
        """``SetThreadErrorMode(mode, &old)``: returns the previous mode."""
        from ctypes import wintypes

        old = wintypes.DWORD(0)
        if not self._fn(self.kernel32, "SetThreadErrorMode")(int(mode), ctypes.byref(old)):
            raise self._fail("SetThreadErrorMode")
        return int(old.value)

    def file_version(self, path: str) -> Optional[Tuple[int, int, int, int]]:
        """The ``FileVersion`` of the ``VS_FIXEDFILEINFO`` in a file's version resource
        (``GetFileVersionInfoSizeW``, ``GetFileVersionInfoW``, ``VerQueryValueW(..., "\\")``);
        ``None`` when the file has no version resource (or it cannot be read)."""
        from ctypes import wintypes

        lib = self.version_dll
        handle = wintypes.DWORD(0)
        size = int(self._fn(lib, "GetFileVersionInfoSizeW")(path, ctypes.byref(handle)))
        if size == 0:
            return None
        data = ctypes.create_string_buffer(size)
        if not self._fn(lib, "GetFileVersionInfoW")(path, 0, size, data):
            return None
        pointer = wintypes.LPVOID()
        length = wintypes.UINT(0)
        if not self._fn(lib, "VerQueryValueW")(data, "\\", ctypes.byref(pointer), ctypes.byref(length)):
            return None
        if not pointer.value or int(length.value) < 16:
            return None
        fixed = ctypes.string_at(pointer.value, 16)
        import struct

        signature, _struc, ms, ls = struct.unpack("<IIII", fixed)
        if signature != VS_FFI_SIGNATURE:
            return None
        return (ms >> 16, ms & 0xFFFF, ls >> 16, ls & 0xFFFF)

    def loaded_module_version(self, name: str) -> Optional[Tuple[str, Optional[Tuple[int, int, int, int]]]]:
        """``(full path, FileVersion)`` of a loaded module (by base name), ``None`` if no module
        of that name is loaded. The version comes from the file's version resource."""
        handle = self.module_handle(name)
        if handle is None:
            return None
        path = self.module_file_name(handle)
        return path, self.file_version(path)
