"""Fakes of the Win32 boundary, so :mod:`torchdll._win32` runs (and is tested) on any OS.

* :class:`FakeWinreg` behaves like the ``winreg`` module for reading: ``OpenKey``/``OpenKeyEx``
  (usable as context managers), ``QueryValueEx``, ``EnumValue``, ``QueryInfoKey``, ``CloseKey``,
  the ``HKEY_*``/``REG_*``/``KEY_*`` constants, case-insensitive key and value names,
  :class:`FileNotFoundError` for a missing key or value and :class:`PermissionError` where
  :meth:`FakeWinreg.deny` says so (both with ``winerror`` set, as on Windows).
* :class:`FakeKernel32` and :class:`FakePsapi` emulate the few foreign functions torchdll
  calls, with their Win32 semantics: they fill ``ctypes`` buffers, report required sizes,
  truncate with ``ERROR_INSUFFICIENT_BUFFER`` and keep a last error. Each function refuses to run
  before ``argtypes`` and ``restype`` were declared, and checks its arguments against the
  declared ``argtypes`` with ``from_param``, as a real foreign function would.
* :func:`fake_api` wires them into a :class:`torchdll._win32.WinApi`; :func:`typical_registry`
  gives a registry like a fresh Windows 11 machine.
* Writes (persistent Path repair): ``CreateKey``/``CreateKeyEx``, ``SetValueEx``, ``DeleteValue``
  on handles opened with write access; ``HKEY_LOCAL_MACHINE`` refuses write access unless
  :attr:`FakeWinreg.admin`; :class:`RegistryFaults` injects a write that fails midway, a write
  that stores something else (so the read-back differs), failing deletes and key creation.
  :class:`FakeUser32` (``SendMessageTimeoutW``) and :class:`FakeShell32` (``IsUserAnAdmin``)
  complete :func:`fake_repair_api`.
"""

from __future__ import annotations

import ctypes
import errno
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from torchdll._win32 import WinApi

__all__ = [
    "FakeAddedDllDirectory",
    "FakeDllDirectories",
    "FakeFunction",
    "FakeHKEY",
    "FakeKernel32",
    "FakeLoaderKernel32",
    "FakePsapi",
    "FakeShell32",
    "FakeUser32",
    "FakeVersionDll",
    "FakeWinreg",
    "FakeWriteHKEY",
    "DEFAULT_MEMORY_STATUS",
    "fake_global_memory_status_ex",
    "RegistryFaults",
    "fake_api",
    "fake_loader_api",
    "fake_repair_api",
    "typical_registry",
]

# winerror.h
ERROR_SUCCESS = 0
ERROR_FILE_NOT_FOUND = 2
ERROR_ACCESS_DENIED = 5
ERROR_INVALID_HANDLE = 6
ERROR_INSUFFICIENT_BUFFER = 122
ERROR_MOD_NOT_FOUND = 126
ERROR_NO_MORE_ITEMS = 259
ERROR_NO_SYSTEM_RESOURCES = 1450
ERROR_TIMEOUT = 1460

_UNSET: Any = object()


def _winerror(cls: type[OSError], code: int, text: str) -> OSError:
    posix = {FileNotFoundError: errno.ENOENT, PermissionError: errno.EACCES}.get(cls, errno.EINVAL)
    exc = cls(posix, text)
    # Real winreg errors carry it; typeshed declares it on Windows only, hence setattr.
    setattr(exc, "winerror", code)  # noqa: B010
    return exc


# --------------------------------------------------------------------------------------------
# winreg
# --------------------------------------------------------------------------------------------


@dataclass
class _Key:
    name: str
    values: Dict[str, Tuple[str, Any, int]] = field(default_factory=dict)  # lower -> (name, v, t)
    subkeys: Dict[str, "_Key"] = field(default_factory=dict)
    denied: bool = False
    denied_values: set = field(default_factory=set)  # type: ignore[type-arg]


class FakeHKEY:
    """An open key, like ``winreg.PyHKEY`` (context manager, ``Close``, ``int()``)."""

    _next = 0x1000

    def __init__(self, key: _Key) -> None:
        self._key: Optional[_Key] = key
        FakeHKEY._next += 4
        self.handle = FakeHKEY._next

    @property
    def key(self) -> _Key:
        if self._key is None:
            raise _winerror(OSError, ERROR_INVALID_HANDLE, "The handle is invalid")
        return self._key

    def Close(self) -> None:
        self._key = None

    def Detach(self) -> int:
        self._key = None
        return self.handle

    def __int__(self) -> int:
        return self.handle

    def __enter__(self) -> FakeHKEY:  # noqa: PYI034 - mirrors winreg.PyHKEY
        return self

    def __exit__(self, *exc: object) -> None:
        self.Close()


#: winnt.h access bits that allow changing a key (KEY_SET_VALUE, KEY_CREATE_SUB_KEY, DELETE,
#: WRITE_DAC, WRITE_OWNER).
_WRITE_BITS = 0x0002 | 0x0004 | 0x00010000 | 0x00040000 | 0x00080000


class FakeWriteHKEY(FakeHKEY):
    """An open key with write access (what ``CreateKeyEx`` or ``OpenKey(..., KEY_SET_VALUE)`` give)."""

    def __init__(self, key: _Key, access: int) -> None:
        super().__init__(key)
        self.access = access


def _halve(value: Any, kind: int) -> Tuple[Any, int]:
    return value[: len(value) // 2], kind


@dataclass
class RegistryFaults:
    """Faults injected into the fake's writes; each counter goes down as its fault fires.

    ``fail_writes``: ``SetValueEx`` calls that raise ``OSError(winerror=write_error)``; with
    ``partial`` they first store the first half of the value (a write that fails midway).
    ``alter_writes``: ``SetValueEx`` calls that succeed but store ``alter(value, type)`` instead
    (another writer, a truncating tool...): the read-back differs. ``fail_deletes``:
    ``DeleteValue`` calls that raise. ``fail_creates``: ``CreateKeyEx`` calls that raise.
    """

    fail_writes: int = 0
    partial: bool = False
    write_error: int = ERROR_NO_SYSTEM_RESOURCES
    alter_writes: int = 0
    alter: Callable[[Any, int], Tuple[Any, int]] = _halve
    fail_deletes: int = 0
    fail_creates: int = 0


class FakeWinreg:
    """An in-memory registry with the read API of the ``winreg`` module."""

    HKEY_CLASSES_ROOT = 0x80000000
    HKEY_CURRENT_USER = 0x80000001
    HKEY_LOCAL_MACHINE = 0x80000002
    HKEY_USERS = 0x80000003
    HKEY_CURRENT_CONFIG = 0x80000005

    REG_NONE = 0
    REG_SZ = 1
    REG_EXPAND_SZ = 2
    REG_BINARY = 3
    REG_DWORD = 4
    REG_MULTI_SZ = 7
    REG_QWORD = 11

    KEY_QUERY_VALUE = 0x0001
    KEY_ENUMERATE_SUB_KEYS = 0x0008
    KEY_READ = 0x20019
    KEY_WOW64_64KEY = 0x0100
    KEY_WOW64_32KEY = 0x0200

    error = OSError

    def __init__(self) -> None:
        self._hives: Dict[int, _Key] = {
            h: _Key(n)
            for h, n in (
                (self.HKEY_CLASSES_ROOT, "HKEY_CLASSES_ROOT"),
                (self.HKEY_CURRENT_USER, "HKEY_CURRENT_USER"),
                (self.HKEY_LOCAL_MACHINE, "HKEY_LOCAL_MACHINE"),
                (self.HKEY_USERS, "HKEY_USERS"),
                (self.HKEY_CURRENT_CONFIG, "HKEY_CURRENT_CONFIG"),
            )
        }
        self.opened: List[str] = []

    # -- set-up ------------------------------------------------------------------------------

    def _walk(self, hive: int, subkey: str, create: bool) -> Optional[_Key]:
        cur = self._hives[hive]
        for part in [p for p in subkey.split("\\") if p]:
            nxt = cur.subkeys.get(part.lower())
            if nxt is None:
                if not create:
                    return None
                nxt = cur.subkeys[part.lower()] = _Key(part)
            cur = nxt
        return cur

    def create_key(self, hive: int, subkey: str) -> None:
        self._walk(hive, subkey, True)

    def set_value(self, hive: int, subkey: str, name: str, value: Any, kind: int) -> None:
        """Store a value (creating the key and its parents)."""
        key = self._walk(hive, subkey, True)
        assert key is not None
        key.values[name.lower()] = (name, value, kind)

    def delete_value(self, hive: int, subkey: str, name: str) -> None:
        key = self._walk(hive, subkey, False)
        if key is not None:
            key.values.pop(name.lower(), None)

    def deny(self, hive: int, subkey: str, name: Optional[str] = None) -> None:
        """Make opening ``subkey`` (or, with ``name``, querying that value) raise PermissionError."""
        key = self._walk(hive, subkey, True)
        assert key is not None
        if name is None:
            key.denied = True
        else:
            key.denied_values.add(name.lower())

    # -- the winreg API ----------------------------------------------------------------------

    def _resolve(self, key: Any) -> _Key:
        if isinstance(key, FakeHKEY):
            return key.key
        if isinstance(key, int) and key in self._hives:
            return self._hives[key]
        raise _winerror(OSError, ERROR_INVALID_HANDLE, "The handle is invalid")

    def OpenKey(
        self, key: Any, sub_key: Optional[str], reserved: int = 0, access: int = KEY_READ
    ) -> FakeHKEY:
        if not isinstance(reserved, int) or not isinstance(access, int):
            raise TypeError("reserved and access must be integers")
        cur = self._resolve(key)
        for part in [p for p in (sub_key or "").split("\\") if p]:
            nxt = cur.subkeys.get(part.lower())
            if nxt is None:
                raise _winerror(
                    FileNotFoundError, ERROR_FILE_NOT_FOUND, "The system cannot find the file specified"
                )
            cur = nxt
            if cur.denied:
                raise _winerror(PermissionError, ERROR_ACCESS_DENIED, "Access is denied")
        self.opened.append(sub_key or "")
        return self._handle(cur, access)

    OpenKeyEx = OpenKey

    def CloseKey(self, hkey: Any) -> None:
        if isinstance(hkey, FakeHKEY):
            hkey.Close()

    def QueryValueEx(self, key: Any, value_name: Optional[str]) -> Tuple[Any, int]:
        k = self._resolve(key)
        lname = (value_name or "").lower()
        if lname in k.denied_values:
            raise _winerror(PermissionError, ERROR_ACCESS_DENIED, "Access is denied")
        hit = k.values.get(lname)
        if hit is None:
            raise _winerror(
                FileNotFoundError, ERROR_FILE_NOT_FOUND, "The system cannot find the file specified"
            )
        return hit[1], hit[2]

    def EnumValue(self, key: Any, index: int) -> Tuple[str, Any, int]:
        k = self._resolve(key)
        items = list(k.values.values())
        if not 0 <= index < len(items):
            raise _winerror(OSError, ERROR_NO_MORE_ITEMS, "No more data is available")
        return items[index]

    def QueryInfoKey(self, key: Any) -> Tuple[int, int, int]:
        k = self._resolve(key)
        return len(k.subkeys), len(k.values), 0

    # -- writes ------------------------------------------------------------------------------

    KEY_SET_VALUE = 0x0002
    KEY_CREATE_SUB_KEY = 0x0004
    KEY_WRITE = 0x20006
    KEY_ALL_ACCESS = 0xF003F

    #: The process token is elevated: HKEY_LOCAL_MACHINE may be opened for writing.
    admin = False

    @property
    def faults(self) -> RegistryFaults:
        """The faults to inject (created on first use)."""
        found = self.__dict__.get("_faults")
        if found is None:
            found = self.__dict__["_faults"] = RegistryFaults()
        return found  # type: ignore[no-any-return]

    @property
    def writes(self) -> List[Tuple[str, str, Any, int]]:
        """Every ``SetValueEx`` that reached the store: ``(key name, value name, value, type)``."""
        return self.__dict__.setdefault("_writes", [])  # type: ignore[no-any-return]

    def remove_key(self, hive: int, subkey: str) -> None:
        """Delete a key and everything below it (set-up: "the key is missing")."""
        parts = [p for p in subkey.split("\\") if p]
        parent = self._walk(hive, "\\".join(parts[:-1]), False)
        if parent is not None and parts:
            parent.subkeys.pop(parts[-1].lower(), None)

    def value_of(self, hive: int, subkey: str, name: str) -> Optional[Tuple[Any, int]]:
        """``(value, type)`` as stored, or ``None`` (inspection: bypasses faults and denials)."""
        key = self._walk(hive, subkey, False)
        hit = None if key is None else key.values.get(name.lower())
        return None if hit is None else (hit[1], hit[2])

    def _in_machine_hive(self, key: _Key) -> bool:
        stack = [self._hives[self.HKEY_LOCAL_MACHINE]]
        while stack:
            cur = stack.pop()
            if cur is key:
                return True
            stack.extend(cur.subkeys.values())
        return False

    def _handle(self, key: _Key, access: int) -> FakeHKEY:
        if not access & _WRITE_BITS:
            return FakeHKEY(key)
        if not self.admin and self._in_machine_hive(key):
            raise _winerror(PermissionError, ERROR_ACCESS_DENIED, "Access is denied")
        return FakeWriteHKEY(key, access)

    def CreateKeyEx(self, key: Any, sub_key: str, reserved: int = 0, access: int = KEY_WRITE) -> FakeHKEY:
        if not isinstance(reserved, int) or not isinstance(access, int):
            raise TypeError("reserved and access must be integers")
        if self.faults.fail_creates > 0:
            self.faults.fail_creates -= 1
            raise _winerror(OSError, self.faults.write_error, "Insufficient system resources")
        cur = self._resolve(key)
        if not self.admin and self._in_machine_hive(cur):
            raise _winerror(PermissionError, ERROR_ACCESS_DENIED, "Access is denied")
        for part in [p for p in (sub_key or "").split("\\") if p]:
            nxt = cur.subkeys.get(part.lower())
            if nxt is None:
                nxt = cur.subkeys[part.lower()] = _Key(part)
            cur = nxt
            if cur.denied:
                raise _winerror(PermissionError, ERROR_ACCESS_DENIED, "Access is denied")
        self.opened.append(sub_key or "")
        return FakeWriteHKEY(cur, access)

    def CreateKey(self, key: Any, sub_key: str) -> FakeHKEY:
        return self.CreateKeyEx(key, sub_key, 0, self.KEY_ALL_ACCESS)

    def _writable(self, key: Any) -> _Key:
        if not isinstance(key, FakeWriteHKEY) or not key.access & self.KEY_SET_VALUE:
            raise _winerror(PermissionError, ERROR_ACCESS_DENIED, "Access is denied")
        return key.key

    def SetValueEx(self, key: Any, value_name: Optional[str], reserved: int, type: int, value: Any) -> None:
        k = self._writable(key)
        if type in (self.REG_SZ, self.REG_EXPAND_SZ) and not isinstance(value, str):
            raise TypeError(f"a REG_SZ/REG_EXPAND_SZ value must be a str, not {value.__class__.__name__}")
        name = value_name or ""
        faults = self.faults
        if faults.fail_writes > 0:
            faults.fail_writes -= 1
            if faults.partial:
                k.values[name.lower()] = (name, value[: len(value) // 2], type)
            raise _winerror(OSError, faults.write_error, "Insufficient system resources")
        if faults.alter_writes > 0:
            faults.alter_writes -= 1
            value, type = faults.alter(value, type)
        k.values[name.lower()] = (name, value, type)
        self.writes.append((k.name, name, value, type))

    def DeleteValue(self, key: Any, value: Optional[str]) -> None:
        k = self._writable(key)
        if self.faults.fail_deletes > 0:
            self.faults.fail_deletes -= 1
            raise _winerror(OSError, self.faults.write_error, "Insufficient system resources")
        if (value or "").lower() not in k.values:
            raise _winerror(FileNotFoundError, ERROR_FILE_NOT_FOUND, "The system cannot find the file specified")
        del k.values[(value or "").lower()]


#: The KnownDLLs value names of a Windows 11 23H2 x64 install (each maps to "<name>.dll").
DEFAULT_KNOWN_DLLS = (
    "advapi32", "clbcatq", "combase", "COMDLG32", "coml2", "difxapi", "gdi32", "gdiplus",
    "IMAGEHLP", "IMM32", "kernel32", "MSCTF", "MSVCRT", "NORMALIZ", "NSI", "ole32",
    "OLEAUT32", "PSAPI", "rpcrt4", "sechost", "Setupapi", "SHCORE", "SHELL32", "SHLWAPI",
    "user32", "WLDAP32", "wow64cpu", "wow64win", "WS2_32",
)  # fmt: skip


def typical_registry(
    *,
    user_path: Optional[Tuple[str, int]] = (
        r"%USERPROFILE%\AppData\Local\Microsoft\WindowsApps;",
        FakeWinreg.REG_EXPAND_SZ,
    ),
    system_path: Optional[Tuple[str, int]] = (
        (
            r"%SystemRoot%\system32;%SystemRoot%;%SystemRoot%\System32\Wbem;"
            r"%SYSTEMROOT%\System32\WindowsPowerShell\v1.0\;%SYSTEMROOT%\System32\OpenSSH\\"
        ),
        FakeWinreg.REG_EXPAND_SZ,
    ),
    safe_dll_search_mode: Optional[int] = None,
    long_paths_enabled: Optional[int] = 0,
    known_dlls: Sequence[str] = DEFAULT_KNOWN_DLLS,
) -> FakeWinreg:
    """A registry like a fresh Windows 11 machine; ``None`` leaves a value out."""
    reg = FakeWinreg()
    hklm, hkcu = FakeWinreg.HKEY_LOCAL_MACHINE, FakeWinreg.HKEY_CURRENT_USER
    sm = r"SYSTEM\CurrentControlSet\Control\Session Manager"
    reg.create_key(hkcu, "Environment")
    reg.set_value(hkcu, "Environment", "TEMP", r"%USERPROFILE%\AppData\Local\Temp", reg.REG_EXPAND_SZ)
    if user_path is not None:
        reg.set_value(hkcu, "Environment", "Path", user_path[0], user_path[1])
    reg.set_value(hklm, sm + r"\Environment", "OS", "Windows_NT", reg.REG_SZ)
    if system_path is not None:
        reg.set_value(hklm, sm + r"\Environment", "Path", system_path[0], system_path[1])
    reg.set_value(hklm, sm, "ProtectionMode", 1, reg.REG_DWORD)
    if safe_dll_search_mode is not None:
        reg.set_value(hklm, sm, "SafeDllSearchMode", safe_dll_search_mode, reg.REG_DWORD)
    reg.create_key(hklm, sm + r"\KnownDLLs")
    for name in known_dlls:
        reg.set_value(hklm, sm + r"\KnownDLLs", name, name + ".dll", reg.REG_SZ)
    if known_dlls:
        reg.set_value(hklm, sm + r"\KnownDLLs", "DllDirectory", r"%SystemRoot%\system32", reg.REG_EXPAND_SZ)
    fs = r"SYSTEM\CurrentControlSet\Control\FileSystem"
    reg.create_key(hklm, fs)
    if long_paths_enabled is not None:
        reg.set_value(hklm, fs, "LongPathsEnabled", long_paths_enabled, reg.REG_DWORD)
    return reg


# --------------------------------------------------------------------------------------------
# kernel32 / psapi
# --------------------------------------------------------------------------------------------


def _deref(arg: Any) -> Any:
    """The ctypes object behind ``byref(x)``, ``pointer(x)`` or ``x``."""
    if hasattr(arg, "_obj"):  # CArgObject from byref()
        return arg._obj
    if isinstance(arg, ctypes._Pointer):
        return arg.contents
    return arg


def _write_wstr(buf: Any, size: int, text: str) -> None:
    """Copy ``text`` and a terminating null into ``buf`` (a ``c_wchar`` array of ``size``)."""
    if not isinstance(buf, ctypes.Array) or buf._type_ is not ctypes.c_wchar:
        raise TypeError(f"expected a c_wchar buffer, got {type(buf).__name__}")
    if len(buf) < size:
        raise AssertionError(f"caller claims {size} chars but the buffer holds {len(buf)}")
    for i, ch in enumerate(text[:size]):
        buf[i] = ch
    if len(text) < size:
        buf[len(text)] = "\0"


class FakeFunction:
    """A foreign function stand-in: ``argtypes``/``restype`` must be declared before a call."""

    def __init__(self, name: str, impl: Callable[..., int], owner: "_FakeLib") -> None:
        self.__name__ = name
        self.impl = impl
        self.owner = owner
        self.argtypes: Any = _UNSET
        self.restype: Any = _UNSET
        self.calls: List[Tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> int:
        if self.argtypes is _UNSET or self.restype is _UNSET:
            raise AssertionError(f"{self.__name__} called before argtypes/restype were declared")
        if len(args) != len(self.argtypes):
            raise TypeError(f"{self.__name__}: {len(self.argtypes)} arguments expected, got {len(args)}")
        for i, (kind, arg) in enumerate(zip(self.argtypes, args)):
            try:
                kind.from_param(arg)
            except (TypeError, ctypes.ArgumentError) as exc:
                raise ctypes.ArgumentError(f"argument {i + 1}: {exc}") from None
        self.calls.append(args)
        result = self.impl(*args)
        if isinstance(self.restype, type) and issubclass(self.restype, ctypes._SimpleCData):
            # What a real call returns: the C value converted by restype (HANDLE -1 -> 2**64-1).
            return self.restype(result).value  # type: ignore[no-any-return]
        return result


class _FakeLib:
    last_error: int = ERROR_SUCCESS

    def _export(self, name: str, impl: Callable[..., int]) -> FakeFunction:
        fn = FakeFunction(name, impl, self)
        setattr(self, name, fn)
        return fn

    def set_error(self, code: int) -> None:
        self.last_error = code

    def get_last_error(self) -> int:
        return self.last_error


class FakeKernel32(_FakeLib):
    """kernel32 for one process whose modules are ``modules`` (the image first).

    ``windows_dir``/``system_dir`` feed ``GetWindowsDirectoryW``/``GetSystemDirectoryW``.
    ``k32_enum=False`` leaves ``K32EnumProcessModules`` out (pre-Windows 7: psapi only).
    ``load_during_enum`` modules appear after the first enumeration call (a racing load).
    ``fail`` maps a function name to a Win32 error it returns with.
    ``memory`` holds what ``GlobalMemoryStatusEx`` fills in (see :data:`DEFAULT_MEMORY_STATUS`).
    """

    #: GetCurrentProcess() returns (HANDLE)-1, which a HANDLE restype turns into 2**N - 1.
    PSEUDO_PROCESS = (1 << (8 * ctypes.sizeof(ctypes.c_void_p))) - 1

    GetModuleFileNameW: FakeFunction
    GetCurrentProcess: FakeFunction
    GetSystemDirectoryW: FakeFunction
    GetWindowsDirectoryW: FakeFunction
    GlobalMemoryStatusEx: FakeFunction
    K32EnumProcessModules: FakeFunction  # absent with k32_enum=False, as before Windows 7

    def __init__(
        self,
        modules: Sequence[str],
        *,
        windows_dir: str = "C:\\Windows",
        system_dir: str = "C:\\Windows\\system32",
        k32_enum: bool = True,
        load_during_enum: Sequence[str] = (),
        fail: Optional[Dict[str, int]] = None,
    ) -> None:
        self.modules: List[str] = list(modules)
        self.windows_dir = windows_dir
        self.system_dir = system_dir
        self.pending = list(load_during_enum)
        self.fail = dict(fail or {})
        self.last_error = ERROR_SUCCESS
        self._export("GetModuleFileNameW", self._get_module_file_name)
        self._export("GetCurrentProcess", lambda: self.PSEUDO_PROCESS)
        self._export("GetSystemDirectoryW", lambda buf, size: self._folder("GetSystemDirectoryW", self.system_dir, buf, size))
        self._export("GetWindowsDirectoryW", lambda buf, size: self._folder("GetWindowsDirectoryW", self.windows_dir, buf, size))
        if k32_enum:
            self._export("K32EnumProcessModules", self.enum_process_modules)
        #: What GlobalMemoryStatusEx reports (MEMORYSTATUSEX field -> value); tests change it.
        self.memory: Dict[str, int] = dict(DEFAULT_MEMORY_STATUS)
        self._export("GlobalMemoryStatusEx", lambda status: fake_global_memory_status_ex(self, status))

    @staticmethod
    def handle_of(index: int) -> int:
        return 0x7FF800000000 + 0x100000 * index

    def _get_module_file_name(self, module: Any, buf: Any, size: int) -> int:
        if "GetModuleFileNameW" in self.fail:
            self.last_error = self.fail["GetModuleFileNameW"]
            return 0
        if module is None or module == 0:
            path = self.modules[0]
        else:
            handles = {self.handle_of(i): p for i, p in enumerate(self.modules)}
            if module not in handles:
                self.last_error = ERROR_MOD_NOT_FOUND
                return 0
            path = handles[module]
        if size == 0:
            self.last_error = ERROR_INSUFFICIENT_BUFFER
            return 0
        if len(path) < size:
            _write_wstr(buf, size, path)
            self.last_error = ERROR_SUCCESS
            return len(path)
        # Vista+: truncate to size - 1 chars, null-terminate, return size, set the error.
        _write_wstr(buf, size, path[: size - 1])
        self.last_error = ERROR_INSUFFICIENT_BUFFER
        return size

    def _folder(self, name: str, value: str, buf: Any, size: int) -> int:
        if name in self.fail:
            self.last_error = self.fail[name]
            return 0
        if len(value) + 1 > size:
            return len(value) + 1  # required size, including the terminating null
        _write_wstr(buf, size, value)
        return len(value)

    def enum_process_modules(self, process: Any, handles: Any, cb: int, needed: Any) -> int:
        if "EnumProcessModules" in self.fail:
            self.last_error = self.fail["EnumProcessModules"]
            return 0
        if process != self.PSEUDO_PROCESS:
            self.last_error = ERROR_INVALID_HANDLE
            return 0
        item = ctypes.sizeof(ctypes.c_void_p)
        if ctypes.sizeof(handles) < cb:
            raise AssertionError("cb larger than the handle array")
        n = len(self.modules)
        fits = min(n, cb // item)
        for i in range(fits):
            handles[i] = self.handle_of(i)
        _deref(needed).value = n * item
        if self.pending:  # a module loads before the caller's next call
            self.modules.append(self.pending.pop(0))
        return 1


class FakePsapi(_FakeLib):
    """psapi.dll exporting ``EnumProcessModules`` (forwarded to the kernel32 fake)."""

    EnumProcessModules: FakeFunction

    def __init__(self, kernel32: FakeKernel32) -> None:
        self.kernel32 = kernel32
        self._export("EnumProcessModules", kernel32.enum_process_modules)

    def get_last_error(self) -> int:
        return self.kernel32.last_error


def fake_api(
    kernel32: Optional[FakeKernel32] = None,
    winreg: Optional[FakeWinreg] = None,
    psapi: Optional[FakePsapi] = None,
) -> WinApi:
    """A :class:`WinApi` over fakes (defaults: a python.exe process and :func:`typical_registry`)."""
    if kernel32 is None:
        kernel32 = FakeKernel32(
            [
                "C:\\Python311\\python.exe",
                "C:\\Windows\\SYSTEM32\\ntdll.dll",
                "C:\\Windows\\System32\\KERNEL32.DLL",
                "C:\\Python311\\python311.dll",
                "C:\\Python311\\VCRUNTIME140.dll",
            ]
        )
    if psapi is None:
        psapi = FakePsapi(kernel32)
    return WinApi(
        kernel32=kernel32,
        psapi=psapi,
        winreg=winreg if winreg is not None else typical_registry(),
        get_last_error=kernel32.get_last_error,
    )


# --------------------------------------------------------------------------------------------
# user32 / shell32 (persistent Path repair)
# --------------------------------------------------------------------------------------------


class FakeUser32(_FakeLib):
    """user32 with ``SendMessageTimeoutW``; ``broadcasts`` records each call's arguments.

    ``fail=True`` makes the call return 0 with ``ERROR_TIMEOUT`` (a hung top-level window).
    """

    SendMessageTimeoutW: FakeFunction

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.last_error = ERROR_SUCCESS
        self.broadcasts: List[Tuple[int, int, int, str, int, int]] = []
        self._export("SendMessageTimeoutW", self._send)

    def _send(self, hwnd: Any, msg: int, wparam: int, lparam: str, flags: int, timeout: int,
              result: Any) -> int:
        self.broadcasts.append((int(hwnd or 0), msg, wparam, lparam, flags, timeout))
        if self.fail:
            self.last_error = ERROR_TIMEOUT
            return 0
        _deref(result).value = 0
        return 1


class FakeShell32(_FakeLib):
    """shell32 with ``IsUserAnAdmin`` returning ``admin``."""

    IsUserAnAdmin: FakeFunction

    def __init__(self, admin: bool = False) -> None:
        self.admin = admin
        self._export("IsUserAnAdmin", lambda: 1 if self.admin else 0)


def fake_repair_api(
    winreg: Optional[FakeWinreg] = None,
    *,
    admin: bool = False,
    broadcast_fails: bool = False,
) -> WinApi:
    """A :class:`WinApi` for Path repair: a registry (default :func:`typical_registry`) whose
    HKLM is writable only when ``admin``, ``IsUserAnAdmin`` agreeing, and a user32 whose
    broadcast succeeds unless ``broadcast_fails``."""
    reg = winreg if winreg is not None else typical_registry()
    reg.admin = admin
    kernel32 = FakeKernel32(["C:\\Python311\\python.exe"])
    return WinApi(
        kernel32=kernel32,
        psapi=FakePsapi(kernel32),
        winreg=reg,
        get_last_error=kernel32.get_last_error,
        user32=FakeUser32(fail=broadcast_fails),
        shell32=FakeShell32(admin=admin),
    )


# --------------------------------------------------------------------------------------------
# Loading DLLs, loaded-module queries, version resources (torchdll.probe, torchdll.guard)
# --------------------------------------------------------------------------------------------

ERROR_INVALID_PARAMETER = 87
ERROR_RESOURCE_TYPE_NOT_FOUND = 1813
#: verrsrc.h
_VS_FFI_SIGNATURE = 0xFEEF04BD
_VS_FFI_STRUCVERSION = 0x00010000
#: Offset of VS_FIXEDFILEINFO in a VS_VERSIONINFO block: wLength, wValueLength, wType (6 bytes),
#: L"VS_VERSION_INFO\0" (32 bytes), padding to a 32-bit boundary (2 bytes).
_FIXED_OFFSET = 40
_FIXED_SIZE = 52


def _base_name(path: str) -> str:
    return path.replace("/", "\\").rsplit("\\", 1)[-1].lower()


class FakeLoaderKernel32(FakeKernel32):
    """:class:`FakeKernel32` that also loads DLLs: ``LoadLibraryExW``, ``FreeLibrary``,
    ``GetModuleHandleW``, ``SetThreadErrorMode``.

    ``outcomes`` maps a full path or a base name (case-insensitive) to the Win32 error its load
    fails with (126, 1114...); every other name loads (it is appended to :attr:`modules`, so
    ``GetModuleFileNameW`` and ``EnumProcessModules`` see it). A bare name is taken as already
    loaded when a module of that base name is; a path containing a separator is loaded as that
    path. ``LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR`` (0x100) with a relative name fails with 87, as on
    Windows. ``loads`` records ``(name, flags)`` of every call; ``refcounts`` the references.
    """

    LoadLibraryExW: FakeFunction
    FreeLibrary: FakeFunction
    GetModuleHandleW: FakeFunction
    SetThreadErrorMode: FakeFunction

    def __init__(self, modules: Sequence[str], *, outcomes: Optional[Dict[str, int]] = None,
                 **kwargs: Any) -> None:
        super().__init__(modules, **kwargs)
        self.outcomes = {k.lower(): v for k, v in (outcomes or {}).items()}
        self.loads: List[Tuple[str, int]] = []
        self.refcounts: Dict[int, int] = {}
        self.error_mode = 0
        self._export("LoadLibraryExW", self._load_library_ex)
        self._export("FreeLibrary", self._free_library)
        self._export("GetModuleHandleW", self._get_module_handle)
        self._export("SetThreadErrorMode", self._set_thread_error_mode)

    def _find(self, name: str) -> Optional[int]:
        by_path = "\\" in name or "/" in name
        for i, path in enumerate(self.modules):
            if (path.lower() == name.lower()) if by_path else (_base_name(path) == _base_name(name)):
                return i
        return None

    def _load_library_ex(self, name: Any, reserved: Any, flags: int) -> int:
        self.loads.append((str(name), int(flags)))
        if reserved not in (None, 0):
            self.last_error = ERROR_INVALID_PARAMETER
            return 0
        text = str(name)
        absolute = len(text) > 2 and text[1] == ":" and text[2] in "\\/" or text.startswith("\\\\")
        if flags & 0x100 and not absolute:
            self.last_error = ERROR_INVALID_PARAMETER
            return 0
        code = self.outcomes.get(text.lower(), self.outcomes.get(_base_name(text)))
        if code:
            self.last_error = code
            return 0
        index = self._find(text)
        if index is None:
            self.modules.append(text)
            index = len(self.modules) - 1
        handle = self.handle_of(index)
        self.refcounts[handle] = self.refcounts.get(handle, 0) + 1
        self.last_error = ERROR_SUCCESS
        return handle

    def _free_library(self, handle: Any) -> int:
        if not self.refcounts.get(handle):
            self.last_error = ERROR_INVALID_HANDLE
            return 0
        self.refcounts[handle] -= 1
        return 1

    def _get_module_handle(self, name: Any) -> int:
        if name is None:
            return self.handle_of(0)
        index = self._find(str(name))
        if index is None:
            self.last_error = ERROR_MOD_NOT_FOUND
            return 0
        return self.handle_of(index)

    def _set_thread_error_mode(self, mode: int, old: Any) -> int:
        if old is not None:
            _deref(old).value = self.error_mode
        self.error_mode = int(mode)
        return 1


class FakeVersionDll(_FakeLib):
    """version.dll over ``files``: full path (case-insensitive) -> FileVersion ``(a, b, c, d)``.

    ``GetFileVersionInfoW`` writes a ``VS_VERSIONINFO`` block whose ``VS_FIXEDFILEINFO`` sits at
    its real offset (40) and ``VerQueryValueW(block, "\\\\")`` points into the caller's buffer, as
    on Windows. A file not in ``files`` has no version resource (size 0, error 1813).
    """

    GetFileVersionInfoSizeW: FakeFunction
    GetFileVersionInfoW: FakeFunction
    VerQueryValueW: FakeFunction

    def __init__(self, files: Optional[Dict[str, Tuple[int, int, int, int]]] = None) -> None:
        self.files = {k.lower(): v for k, v in (files or {}).items()}
        self.last_error = ERROR_SUCCESS
        self._export("GetFileVersionInfoSizeW", self._size)
        self._export("GetFileVersionInfoW", self._info)
        self._export("VerQueryValueW", self._query)

    def _block(self, version: Tuple[int, int, int, int]) -> bytes:
        import struct

        a, b, c, d = version
        fixed = struct.pack("<13I", _VS_FFI_SIGNATURE, _VS_FFI_STRUCVERSION, (a << 16) | b, (c << 16) | d,
                            (a << 16) | b, (c << 16) | d, 0x3F, 0, 0x40004, 2, 0, 0, 0)
        key = "VS_VERSION_INFO\0".encode("utf-16-le")
        head = struct.pack("<HHH", _FIXED_OFFSET + _FIXED_SIZE, _FIXED_SIZE, 0) + key + b"\0\0"
        assert len(head) == _FIXED_OFFSET
        return head + fixed

    def _size(self, path: Any, handle: Any) -> int:
        if handle is not None:
            _deref(handle).value = 0
        version = self.files.get(str(path).lower())
        if version is None:
            self.last_error = ERROR_RESOURCE_TYPE_NOT_FOUND
            return 0
        return len(self._block(version))

    def _info(self, path: Any, handle: int, size: int, data: Any) -> int:
        version = self.files.get(str(path).lower())
        if version is None:
            self.last_error = ERROR_RESOURCE_TYPE_NOT_FOUND
            return 0
        block = self._block(version)
        if size < len(block) or ctypes.sizeof(data) < size:
            self.last_error = ERROR_INSUFFICIENT_BUFFER
            return 0
        ctypes.memmove(data, block, len(block))
        return 1

    def _query(self, block: Any, sub_block: str, pointer: Any, length: Any) -> int:
        if sub_block != "\\":
            return 0
        raw = ctypes.string_at(ctypes.addressof(block), _FIXED_OFFSET + _FIXED_SIZE)
        import struct

        if struct.unpack_from("<I", raw, _FIXED_OFFSET)[0] != _VS_FFI_SIGNATURE:
            return 0
        _deref(pointer).value = ctypes.addressof(block) + _FIXED_OFFSET
        _deref(length).value = _FIXED_SIZE
        return 1


def fake_loader_api(
    modules: Sequence[str] = (
        "C:\\Python311\\python.exe",
        "C:\\Windows\\SYSTEM32\\ntdll.dll",
        "C:\\Windows\\System32\\KERNEL32.DLL",
        "C:\\Python311\\python311.dll",
        "C:\\Python311\\VCRUNTIME140.dll",
    ),
    *,
    outcomes: Optional[Dict[str, int]] = None,
    versions: Optional[Dict[str, Tuple[int, int, int, int]]] = None,
) -> WinApi:
    """A :class:`WinApi` whose kernel32 loads DLLs (:class:`FakeLoaderKernel32`) and whose
    version.dll knows ``versions`` (full path -> FileVersion)."""
    kernel32 = FakeLoaderKernel32(modules, outcomes=outcomes)
    return WinApi(kernel32=kernel32, psapi=FakePsapi(kernel32), winreg=typical_registry(),
                  get_last_error=kernel32.get_last_error, version=FakeVersionDll(versions))


# --------------------------------------------------------------------------------------------
# os.add_dll_directory with CPython's semantics (Lib/os.py, Modules/posixmodule.c)
# --------------------------------------------------------------------------------------------


class FakeDllDirectoryCookie:
    """The capsule ``nt._add_dll_directory`` returns; closing it again is a TypeError."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.valid = True


class FakeAddedDllDirectory:
    """``os._AddedDllDirectory``: ``close()`` (a second one raises TypeError, as CPython's
    ``_remove_dll_directory`` does with an invalidated capsule), context manager, no
    ``__del__`` (dropping the handle does *not* remove the directory)."""

    def __init__(self, path: str, cookie: FakeDllDirectoryCookie, owner: "FakeDllDirectories") -> None:
        self.path: Optional[str] = path
        self._cookie = cookie
        self._owner = owner

    def close(self) -> None:
        self._owner._remove(self._cookie)
        self.path = None

    def __enter__(self) -> "FakeAddedDllDirectory":
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.path:
            return f"<AddedDllDirectory({self.path!r})>"
        return "<AddedDllDirectory()>"


class FakeDllDirectories:
    """``os.add_dll_directory`` of CPython on Windows, for tests on any OS.

    ``exists(path)`` says whether a directory exists (default: never). Semantics copied from
    CPython: the path is passed as given to ``AddDllDirectory``; a relative path fails with
    ``OSError`` [WinError 87] (ERROR_INVALID_PARAMETER), a missing folder with
    ``FileNotFoundError`` [WinError 3]; the result has ``close()`` and a second close raises
    ``TypeError("Provided cookie was not returned from os.add_dll_directory")``.
    :attr:`active` lists the folders currently added (in order, duplicates kept: Windows
    keeps one entry per successful call); :attr:`calls` every ``add_dll_directory`` call.
    """

    def __init__(self, exists: Optional[Callable[[str], bool]] = None) -> None:
        self.exists = exists or (lambda path: False)
        self.active: List[str] = []
        self.calls: List[str] = []
        self.removed: List[str] = []

    def add_dll_directory(self, path: Any) -> FakeAddedDllDirectory:
        import ntpath
        import os as _os

        text = _os.fspath(path)
        self.calls.append(text)
        if not isinstance(text, str):
            raise TypeError("add_dll_directory: path should be string or os.PathLike, not bytes")
        if not ntpath.isabs(text) or text.startswith("\\") and not text.startswith("\\\\"):
            raise _winerror_with_filename(OSError, 87, "The parameter is incorrect", text)
        if not self.exists(text):
            raise _winerror_with_filename(FileNotFoundError, 3, "The system cannot find the path specified", text)
        self.active.append(text)
        return FakeAddedDllDirectory(text, FakeDllDirectoryCookie(text), self)

    def _remove(self, cookie: FakeDllDirectoryCookie) -> None:
        if not cookie.valid:
            raise TypeError("Provided cookie was not returned from os.add_dll_directory")
        cookie.valid = False
        self.active.remove(cookie.path)
        self.removed.append(cookie.path)


def _winerror_with_filename(cls: type[OSError], code: int, text: str, filename: str) -> OSError:
    posix = {FileNotFoundError: errno.ENOENT}.get(cls, errno.EINVAL)
    exc = cls(posix, text, filename)
    setattr(exc, "winerror", code)  # noqa: B010 - what a Windows OSError carries
    return exc


# --------------------------------------------------------------------------------------------
# GlobalMemoryStatusEx (commit limit / available commit for the snapshot)
# --------------------------------------------------------------------------------------------

#: A 16 GiB machine with a 4 GiB paging file: commit limit 20 GiB, 12 GiB of it available.
DEFAULT_MEMORY_STATUS: Dict[str, int] = {
    "dwMemoryLoad": 40,
    "ullTotalPhys": 16 << 30,
    "ullAvailPhys": 10 << 30,
    "ullTotalPageFile": 20 << 30,
    "ullAvailPageFile": 12 << 30,
    "ullTotalVirtual": 128 << 40,
    "ullAvailVirtual": 127 << 40,
    "ullAvailExtendedVirtual": 0,
}


def fake_global_memory_status_ex(kernel32: FakeKernel32, status: Any) -> int:
    """``GlobalMemoryStatusEx``: fails with ``ERROR_INVALID_PARAMETER`` unless ``dwLength`` is
    ``sizeof(MEMORYSTATUSEX)`` (as Windows does), or with ``kernel32.fail`` when listed."""
    from torchdll._win32 import MEMORYSTATUSEX

    if "GlobalMemoryStatusEx" in kernel32.fail:
        kernel32.last_error = kernel32.fail["GlobalMemoryStatusEx"]
        return 0
    struct = _deref(status)
    if not isinstance(struct, MEMORYSTATUSEX) or struct.dwLength != ctypes.sizeof(MEMORYSTATUSEX):
        kernel32.last_error = ERROR_INVALID_PARAMETER
        return 0
    for name, value in kernel32.memory.items():
        setattr(struct, name, value)
    kernel32.last_error = ERROR_SUCCESS
    return 1
