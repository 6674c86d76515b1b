"""Snapshots: the facts about one Python process that the Windows loader model needs.

A :class:`Snapshot` is collected live (:func:`collect`) or read from a JSON file written on
another machine (:meth:`Snapshot.load`, :func:`load_offline`). It holds facts only: what the
process, the registry and the interpreter said, never a conclusion. :meth:`Snapshot.load_context`
turns it into the :class:`~torchdll.model.LoadContext` the resolver consumes.

The JSON form is versioned (``"schema": "torchdll.snapshot"``, ``"schema_version": 1``) and
described by ``torchdll/schema/snapshot-v1.json``. Readers ignore fields they do not know, so a
later minor addition stays readable; a newer ``schema_version`` is refused with a clear error.
Files are written as pure ASCII JSON (``\\uXXXX`` escapes), so any Windows path survives,
including unpaired surrogates; UTF-8 (with or without BOM) and UTF-16 with a BOM (what Windows
PowerShell 5 writes for ``>``) are accepted on reading.

Privacy: a snapshot contains paths (user names appear in them), the PATH strings and the
allow-listed environment variables of :data:`ENVIRON_NAMES`; nothing else from the environment.
"""

from __future__ import annotations

import json
import ntpath
import os
import platform as _platform
import re
import site
import struct
import sys
import sysconfig
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Literal,
    Mapping,
    NoReturn,
    Optional,
    Tuple,
    TypeVar,
    Union,
)

from .errors import SnapshotError
from .fsview import MirrorView
from .model import LoadContext, Machine

if TYPE_CHECKING:
    from ._win32 import WinApi

#: The registry value types a Path can have in a snapshot.
RegType = Literal["REG_SZ", "REG_EXPAND_SZ"]

__all__ = [
    "ENVIRON_NAMES",
    "ENVIRON_PREFIXES",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "PythonInfo",
    "RegistryValue",
    "Snapshot",
    "collect",
    "json_schema",
    "load_offline",
]

SCHEMA_NAME = "torchdll.snapshot"
SCHEMA_VERSION = 1

#: Environment variables a snapshot keeps (matched case-insensitively on Windows), and why:
#: CUDA_PATH*/NVTOOLSEXT_PATH feed torch's own DLL directories; CONDA_*/VIRTUAL_ENV/PYTHON*
#: describe the interpreter set-up; KMP_DUPLICATE_LIB_OK/OMP_NUM_THREADS the OpenMP runtime;
#: CUDA_VISIBLE_DEVICES the GPU view; SystemRoot...ProgramFiles(x86) expand %VARS% in PATH and
#: locate system and vendor folders; LD_/DYLD_* are the POSIX loader paths.
ENVIRON_NAMES: Tuple[str, ...] = (
    "CUDA_PATH",
    "NVTOOLSEXT_PATH",
    "CONDA_PREFIX",
    "CONDA_DEFAULT_ENV",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONNOUSERSITE",
    "PYTHONUSERBASE",
    "KMP_DUPLICATE_LIB_OK",
    "OMP_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "SystemRoot",
    "windir",
    "SystemDrive",
    "USERPROFILE",
    "APPDATA",
    "LOCALAPPDATA",
    "ProgramFiles",
    "ProgramFiles(x86)",
    "LD_LIBRARY_PATH",
    "DYLD_LIBRARY_PATH",
    "DYLD_FALLBACK_LIBRARY_PATH",
)
#: Name prefixes kept as well: ``CUDA_PATH_V12_4`` and friends, and torchdll's own settings.
ENVIRON_PREFIXES: Tuple[str, ...] = ("CUDA_PATH_V", "TORCHDLL_")

_REG_TYPES = ("REG_SZ", "REG_EXPAND_SZ")


# --------------------------------------------------------------------------------------------
# The data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryValue:
    """A registry string as stored: ``value`` unexpanded, ``type`` ``REG_SZ``/``REG_EXPAND_SZ``.

    The type matters: a ``%VAR%`` inside a ``REG_SZ`` Path is never expanded by Windows.
    """

    value: str
    type: RegType = "REG_EXPAND_SZ"


@dataclass(frozen=True)
class PythonInfo:
    """The interpreter of the snapshotted process.

    ``executable``: ``sys.executable`` (in a Windows venv, the venv's launcher ``python.exe``).
    ``base_executable``: ``sys._base_executable`` when the interpreter has it, else ``None``.
    ``version``: ``"3.11.7"``; ``sys_version``: the full ``sys.version`` (compiler, and
    "packaged by conda-forge"/"Anaconda" for conda builds).
    ``implementation``: ``sys.implementation.name``.
    ``prefix``/``base_prefix``/``exec_prefix``/``base_exec_prefix``: the ``sys`` values.
    ``is_venv``: ``prefix != base_prefix``. ``bits``: pointer size in bits (32/64).
    ``user_site``: ``site.getusersitepackages()``; ``user_site_enabled``: ``site.ENABLE_USER_SITE``.
    ``userbase``: ``sysconfig.get_config_var("userbase")`` (torch 2.3.1+ adds
    ``userbase\\Library\\bin`` to its DLL directories).
    ``conda``: ``"conda"`` in ``sys.version``, or a ``conda-meta`` folder in ``prefix`` or
    ``base_prefix``. ``sys_path``: ``sys.path`` in order.
    """

    executable: str = ""
    base_executable: Optional[str] = None
    version: str = ""
    sys_version: str = ""
    implementation: str = "cpython"
    prefix: str = ""
    base_prefix: str = ""
    exec_prefix: str = ""
    base_exec_prefix: str = ""
    is_venv: bool = False
    bits: int = 64
    user_site: Optional[str] = None
    user_site_enabled: bool = False
    userbase: Optional[str] = None
    conda: bool = False
    sys_path: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "sys_path", tuple(self.sys_path))


@dataclass(frozen=True)
class Snapshot:
    """Facts about one process, enough to model how Windows will load DLLs into it.

    Paths are those of the snapshotted machine (Windows paths for a ``win32`` snapshot).

    ``platform``: ``"win32"``, ``"linux"``, ``"darwin"`` (``sys.platform``, ``linux*`` folded).
    ``os_release``: Windows: ``platform.version()`` (``"10.0.22631"``, the build matters);
    POSIX: ``platform.release()``.
    ``machine``: the *process* architecture, ``"x64"``, ``"x86"``, ``"arm64"`` (a 32-bit
    Python on 64-bit Windows is ``"x86"``): the machine DLLs must be built for.
    ``app_dir``: the loader's application directory: folder of ``GetModuleFileNameW(NULL)`` on
    Windows (the *base* interpreter's folder for a venv), of ``sys.executable`` on POSIX.
    ``cwd``: the current directory.
    ``process_path``: ``PATH`` as the process sees it, the raw string.
    ``user_path``/``system_path``: the persistent Path values of ``HKCU\\Environment`` and
    ``HKLM\\...\\Session Manager\\Environment`` with their type; ``None`` if absent/unreadable.
    ``system32``/``windows_dir``/``system_dir``: ``GetSystemDirectoryW``,
    ``GetWindowsDirectoryW``, and the 16-bit ``System`` folder; empty strings off Windows.
    ``safe_dll_search_mode``: the registry switch (absent means enabled).
    ``long_paths_enabled``: ``FileSystem\\LongPathsEnabled`` (absent means disabled).
    ``known_dlls``: KnownDLLs registry list, lower-case file name -> file name.
    ``loaded_modules``: full paths of the modules in the process, in load order (Windows:
    ``EnumProcessModules``; Linux: distinct ``.so`` files of ``/proc/self/maps``, in address
    order; empty elsewhere).
    ``python``: see :class:`PythonInfo`.
    ``environ``: the allow-listed variables (:data:`ENVIRON_NAMES`, :data:`ENVIRON_PREFIXES`).
    ``notes``: what could not be read while collecting (access denied...).
    ``collected_at``: ISO 8601 UTC time; ``torchdll_version``: the collecting torchdll.

    Optional facts (added within schema version 1; ``None`` when unknown, and when an older
    snapshot lacks them): ``smart_app_control``: ``CI\\Policy\\VerifiedAndReputablePolicyState``
    (0 off, 1 on, 2 evaluation). ``commit_limit``/``commit_available``: bytes,
    ``GlobalMemoryStatusEx`` ``ullTotalPageFile``/``ullAvailPageFile`` (RAM + paging file).
    ``vc_redist_x64``: ``Version`` of the installed VC++ 2015-2022 x64 Redistributable
    (``"v14.44.35211.00"``; ``""`` if installed without a readable version).
    """

    platform: str = "win32"
    os_release: str = ""
    machine: str = "x64"
    app_dir: str = ""
    cwd: str = ""
    process_path: str = ""
    user_path: Optional[RegistryValue] = None
    system_path: Optional[RegistryValue] = None
    system32: str = ""
    windows_dir: str = ""
    system_dir: str = ""
    safe_dll_search_mode: bool = True
    long_paths_enabled: bool = False
    known_dlls: Mapping[str, str] = field(default_factory=dict)
    loaded_modules: Tuple[str, ...] = ()
    python: PythonInfo = field(default_factory=PythonInfo)
    environ: Mapping[str, str] = field(default_factory=dict)
    notes: Tuple[str, ...] = ()
    collected_at: str = ""
    torchdll_version: str = ""
    smart_app_control: Optional[int] = None
    commit_limit: Optional[int] = None
    commit_available: Optional[int] = None
    vc_redist_x64: Optional[str] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "known_dlls", dict(self.known_dlls))
        object.__setattr__(self, "environ", dict(self.environ))
        object.__setattr__(self, "loaded_modules", tuple(self.loaded_modules))
        object.__setattr__(self, "notes", tuple(self.notes))

    # ----------------------------------------------------------------------------------------
    # JSON
    # ----------------------------------------------------------------------------------------

    def to_dict(self) -> Dict[str, Any]:
        """The JSON object of this snapshot (what :meth:`to_json` writes)."""
        out: Dict[str, Any] = {"schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, RegistryValue):
                value = {"value": value.value, "type": value.type}
            elif isinstance(value, PythonInfo):
                value = {g.name: _jsonable(getattr(value, g.name)) for g in fields(value)}
            out[f.name] = _jsonable(value)
        return out

    def to_json(self) -> str:
        """JSON text: sorted keys, indent 2, ASCII only."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, ensure_ascii=True)

    @classmethod
    def from_dict(cls, data: object, source: str = "<dict>") -> Snapshot:
        """Validate a decoded JSON object; any problem raises :class:`SnapshotError`."""
        return _parse(data, source)

    @classmethod
    def from_json(cls, text: Union[str, bytes], source: str = "<string>") -> Snapshot:
        """Parse and validate JSON text (``bytes`` are decoded as :meth:`load` does)."""
        if isinstance(text, (bytes, bytearray)):
            text = _decode(bytes(text), source)
        text = text.removeprefix("\ufeff")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            hint = " (truncated?)" if exc.pos >= len(text.rstrip()) else ""
            raise SnapshotError(
                source, f"not valid JSON{hint}: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        except RecursionError:
            raise SnapshotError(source, "not valid JSON: nested too deeply") from None
        return _parse(data, source)

    def save(self, path: Union[str, os.PathLike[str]]) -> None:
        """Write :meth:`to_json` to ``path`` (atomically: a temporary file, then a rename)."""
        from ._fileio import atomic_write

        atomic_write(os.fspath(path), (self.to_json() + "\n").encode("ascii"), prefix=".snapshot-")

    @classmethod
    def load(cls, path: Union[str, os.PathLike[str]]) -> Snapshot:
        """Read and validate a snapshot file; any problem raises :class:`SnapshotError`."""
        source = os.fspath(path)
        try:
            with open(source, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            raise SnapshotError(source, "no such file") from None
        except OSError as exc:
            raise SnapshotError(source, f"cannot read: {exc.strerror or exc}") from None
        return cls.from_json(_decode(raw, source), source)

    # ----------------------------------------------------------------------------------------
    # Loader-model input
    # ----------------------------------------------------------------------------------------

    def load_context(
        self,
        *,
        user_dirs: Iterable[str] = (),
        cwd: Optional[str] = None,
        loaded: Union[Mapping[str, str], Iterable[str], None] = None,
        machine: Optional[Machine] = None,
    ) -> LoadContext:
        """The :class:`LoadContext` of a load in this process.

        ``user_dirs``: ``AddDllDirectory`` folders in order. ``cwd`` overrides the snapshot's.
        ``loaded`` overrides the loaded modules: full paths in load order, or a ready mapping
        of lower-case base name -> path. ``machine`` overrides the snapshot's machine.
        Missing system folders (a POSIX snapshot) fall back to the ``LoadContext`` defaults.
        ``path`` comes from :attr:`process_path` split by simple rules (see ``_split_path``).
        """
        defaults = _DEFAULT_CONTEXT
        windows_dir = self.windows_dir or defaults.windows_dir
        system32 = self.system32 or (
            ntpath.join(self.windows_dir, "System32") if self.windows_dir else defaults.system32
        )
        system_dir = self.system_dir or (
            ntpath.join(self.windows_dir, "System") if self.windows_dir else defaults.system_dir
        )
        if loaded is None:
            loaded_map = _first_by_base_name(self.loaded_modules)
        elif isinstance(loaded, Mapping):
            loaded_map = {str(k).lower(): str(v) for k, v in loaded.items()}
        else:
            loaded_map = _first_by_base_name(loaded)
        return LoadContext(
            app_dir=self.app_dir,
            system32=system32,
            windows_dir=windows_dir,
            system_dir=system_dir,
            cwd=self.cwd if cwd is None else cwd,
            path=_split_path(self.process_path),
            safe_dll_search_mode=self.safe_dll_search_mode,
            user_dirs=tuple(user_dirs),
            loaded=loaded_map,
            known_dlls=self._known_dlls(),
            machine=machine if machine is not None else _machine_of(self.machine),
        )


    def _known_dlls(self) -> Dict[str, str]:
        """The snapshot's KnownDLLs; for a Windows snapshot whose registry key could not be
        read, the usual Windows 10/11 list (``data/known_dlls.json``) rather than none."""
        if self.known_dlls or self.platform != "win32":
            return dict(self.known_dlls)
        from . import _data

        return _data.default_known_dlls()

_DEFAULT_CONTEXT = LoadContext(app_dir="")


def _first_by_base_name(paths: Iterable[str]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for p in paths:
        out.setdefault(ntpath.basename(p).lower(), p)
    return out


def _machine_of(label: str) -> Machine:
    try:
        return Machine.from_label(label)
    except ValueError:
        return Machine.UNKNOWN


def _split_path(raw: str) -> Tuple[str, ...]:
    """Split the process PATH the way the loader reads it.

    ``;`` separates entries and empty entries are dropped; nothing else changes. The loader
    takes entries literally: by the time a process sees PATH, Windows has already expanded the
    ``REG_EXPAND_SZ`` registry values it came from (an undefined ``%NAME%`` stays as written),
    and double quotes are not removed (only ``cmd.exe`` honours them when it looks for
    programs). Registry values are parsed with their own rules in ``pathenv``.
    """
    return tuple(entry for entry in raw.split(";") if entry)


# --------------------------------------------------------------------------------------------
# JSON validation
# --------------------------------------------------------------------------------------------

_T = TypeVar("_T")


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return {str(k): v for k, v in sorted(value.items())}
    return value


def _decode(raw: bytes, source: str) -> str:
    try:
        if raw.startswith(b"\xef\xbb\xbf"):
            return raw[3:].decode("utf-8")
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            return raw.decode("utf-16")
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SnapshotError(source, f"not UTF-8 text (bad byte at offset {exc.start})") from None


class _Reader:
    """Typed field access on decoded JSON; every problem is a :class:`SnapshotError`."""

    def __init__(self, source: str, data: object, where: str = "") -> None:
        self.source = source
        self.where = where
        if not isinstance(data, dict):
            self.fail(where or "top level", f"expected a JSON object, got {_kind(data)}")
        self.data: Dict[str, Any] = data

    def fail(self, where: str, reason: str) -> NoReturn:
        raise SnapshotError(self.source, f"field {where!r}: {reason}" if where else reason)

    def _get(self, key: str) -> Tuple[str, Any]:
        where = f"{self.where}.{key}" if self.where else key
        if key not in self.data:
            self.fail(where, "missing")
        return where, self.data[key]

    def _typed(self, key: str, kind: type, label: str, nullable: bool = False) -> Any:
        where, value = self._get(key)
        if value is None and nullable:
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(where, f"expected {label}{' or null' if nullable else ''}, got {_kind(value)}")
        return value

    def get_str(self, key: str) -> str:
        return str(self._typed(key, str, "a string"))

    def get_opt_str(self, key: str) -> Optional[str]:
        value = self._typed(key, str, "a string", nullable=True)
        return None if value is None else str(value)

    def get_bool(self, key: str) -> bool:
        return bool(self._typed(key, bool, "true or false"))

    def get_int(self, key: str) -> int:
        return int(self._typed(key, int, "an integer"))

    def get_optional_int(self, key: str) -> Optional[int]:
        """An optional addition: ``None`` when the key is missing (older snapshot) or null."""
        if key not in self.data:
            return None
        value = self._typed(key, int, "an integer", nullable=True)
        return None if value is None else int(value)

    def get_optional_str(self, key: str) -> Optional[str]:
        """An optional addition: ``None`` when the key is missing (older snapshot) or null."""
        return self.get_opt_str(key) if key in self.data else None

    def get_str_list(self, key: str) -> Tuple[str, ...]:
        where = f"{self.where}.{key}" if self.where else key
        items = self._typed(key, list, "a list of strings")
        for i, item in enumerate(items):
            if not isinstance(item, str):
                self.fail(f"{where}[{i}]", f"expected a string, got {_kind(item)}")
        return tuple(items)

    def get_str_map(self, key: str) -> Dict[str, str]:
        where = f"{self.where}.{key}" if self.where else key
        items = self._typed(key, dict, "an object of strings")
        for k, v in items.items():
            if not isinstance(v, str):
                self.fail(f"{where}.{k}", f"expected a string, got {_kind(v)}")
        return dict(items)

    def sub(self, key: str, nullable: bool = False) -> Optional[_Reader]:
        where, value = self._get(key)
        if value is None and nullable:
            return None
        if not isinstance(value, dict):
            self.fail(where, f"expected an object{' or null' if nullable else ''}, got {_kind(value)}")
        return _Reader(self.source, value, where)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _registry_value(r: _Reader, key: str) -> Optional[RegistryValue]:
    sub = r.sub(key, nullable=True)
    if sub is None:
        return None
    kind = sub.get_str("type")
    if kind not in _REG_TYPES:
        sub.fail(f"{sub.where}.type", f"expected 'REG_SZ' or 'REG_EXPAND_SZ', got {kind!r}")
    return RegistryValue(value=sub.get_str("value"), type=kind)  # type: ignore[arg-type]


def _python_info(r: _Reader) -> PythonInfo:
    return PythonInfo(
        executable=r.get_str("executable"),
        base_executable=r.get_opt_str("base_executable"),
        version=r.get_str("version"),
        sys_version=r.get_str("sys_version"),
        implementation=r.get_str("implementation"),
        prefix=r.get_str("prefix"),
        base_prefix=r.get_str("base_prefix"),
        exec_prefix=r.get_str("exec_prefix"),
        base_exec_prefix=r.get_str("base_exec_prefix"),
        is_venv=r.get_bool("is_venv"),
        bits=r.get_int("bits"),
        user_site=r.get_opt_str("user_site"),
        user_site_enabled=r.get_bool("user_site_enabled"),
        userbase=r.get_opt_str("userbase"),
        conda=r.get_bool("conda"),
        sys_path=r.get_str_list("sys_path"),
    )


def _parse(data: object, source: str) -> Snapshot:
    r = _Reader(source, data)
    schema = r.data.get("schema")
    if schema != SCHEMA_NAME:
        what = "no 'schema' field" if schema is None else f"schema is {schema!r}"
        r.fail("", f"not a torchdll snapshot ({what}, expected {SCHEMA_NAME!r})")
    version = r.data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        r.fail("schema_version", f"expected an integer, got {_kind(version)}")
    if version > SCHEMA_VERSION:
        r.fail(
            "",
            f"schema_version {version} is newer than this torchdll reads "
            f"(up to {SCHEMA_VERSION}); upgrade torchdll to read this snapshot",
        )
    if version < 1:
        r.fail("schema_version", f"unsupported version {version}")
    python = r.sub("python")
    assert python is not None
    return Snapshot(
        platform=r.get_str("platform"),
        os_release=r.get_str("os_release"),
        machine=r.get_str("machine"),
        app_dir=r.get_str("app_dir"),
        cwd=r.get_str("cwd"),
        process_path=r.get_str("process_path"),
        user_path=_registry_value(r, "user_path"),
        system_path=_registry_value(r, "system_path"),
        system32=r.get_str("system32"),
        windows_dir=r.get_str("windows_dir"),
        system_dir=r.get_str("system_dir"),
        safe_dll_search_mode=r.get_bool("safe_dll_search_mode"),
        long_paths_enabled=r.get_bool("long_paths_enabled"),
        known_dlls=r.get_str_map("known_dlls"),
        loaded_modules=r.get_str_list("loaded_modules"),
        python=_python_info(python),
        environ=r.get_str_map("environ"),
        notes=r.get_str_list("notes"),
        collected_at=r.get_str("collected_at"),
        torchdll_version=r.get_str("torchdll_version"),
        smart_app_control=r.get_optional_int("smart_app_control"),
        commit_limit=r.get_optional_int("commit_limit"),
        commit_available=r.get_optional_int("commit_available"),
        vc_redist_x64=r.get_optional_str("vc_redist_x64"),
    )


def json_schema() -> Dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the snapshot format, from the package data."""
    from importlib import resources

    text = resources.files("torchdll").joinpath("schema/snapshot-v1.json").read_text("utf-8")
    schema: Dict[str, Any] = json.loads(text)
    return schema


# --------------------------------------------------------------------------------------------
# Live collection
# --------------------------------------------------------------------------------------------


def _normalise_platform(name: str) -> str:
    return "linux" if name.startswith("linux") else name


def _allowed_name(key: str, case_insensitive: bool) -> Optional[str]:
    """The allow-list spelling of ``key`` if a snapshot keeps it, else ``None``."""
    if case_insensitive:
        upper = key.upper()
        for name in ENVIRON_NAMES:
            if name.upper() == upper:
                return name
        return upper if upper.startswith(ENVIRON_PREFIXES) else None
    if key in ENVIRON_NAMES or key.startswith(ENVIRON_PREFIXES):
        return key
    return None


def _pick_environ(environ: Mapping[str, str], case_insensitive: bool) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for key in sorted(environ):
        name = _allowed_name(key, case_insensitive)
        if name is not None:
            out.setdefault(name, environ[key])
    return out


def _get_env(environ: Mapping[str, str], name: str, case_insensitive: bool) -> Optional[str]:
    hit = environ.get(name)
    if hit is not None or not case_insensitive:
        return hit
    for key in sorted(environ):
        if key.upper() == name.upper():
            return environ[key]
    return None


_MACHINES = {
    "amd64": "x64",
    "x86_64": "x64",
    "x64": "x64",
    "arm64": "arm64",
    "aarch64": "arm64",
    "arm64ec": "arm64ec",
    "win32": "x86",
    "x86": "x86",
    "i386": "x86",
    "i486": "x86",
    "i586": "x86",
    "i686": "x86",
}


def _process_machine() -> str:
    """The architecture of this interpreter's process (what its DLLs must be built for)."""
    plat = sysconfig.get_platform().lower()
    tail = "win32" if plat == "win32" else plat.rsplit("-", 1)[-1]
    label = _MACHINES.get(tail) or _MACHINES.get(_platform.machine().lower())
    if label is None:
        label = _platform.machine().lower() or "unknown"
    if struct.calcsize("P") == 4:  # a 32-bit process on a 64-bit OS
        label = {"x64": "x86", "arm64": "arm"}.get(label, label)
    return label


def _collect_python() -> PythonInfo:
    prefix, base_prefix = sys.prefix, getattr(sys, "base_prefix", sys.prefix)
    try:
        user_site: Optional[str] = site.getusersitepackages()
    except Exception:  # noqa: BLE001 - site can be half-initialised under -S/-I
        user_site = None
    userbase = sysconfig.get_config_var("userbase")
    conda = "conda" in sys.version or any(
        os.path.isdir(os.path.join(p, "conda-meta")) for p in {prefix, base_prefix}
    )
    return PythonInfo(
        executable=sys.executable or "",
        base_executable=getattr(sys, "_base_executable", None),
        version=_platform.python_version(),
        sys_version=sys.version,
        implementation=sys.implementation.name,
        prefix=prefix,
        base_prefix=base_prefix,
        exec_prefix=sys.exec_prefix,
        base_exec_prefix=getattr(sys, "base_exec_prefix", sys.exec_prefix),
        is_venv=prefix != base_prefix,
        bits=struct.calcsize("P") * 8,
        user_site=user_site,
        user_site_enabled=bool(site.ENABLE_USER_SITE),
        userbase=userbase if isinstance(userbase, str) else None,
        conda=conda,
        sys_path=tuple(str(p) for p in sys.path),
    )


_SO_NAME = re.compile(r"\.so(\.[0-9A-Za-z_]+)*$")


def _linux_modules(maps: str = "/proc/self/maps") -> Tuple[str, ...]:
    """Distinct shared objects mapped into this process, in ``maps`` order (by address, which
    is not load order: ELF has no load-order list to read from outside the dynamic linker)."""
    seen: Dict[str, None] = {}
    try:
        with open(maps, encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                parts = line.rstrip("\n").split(None, 5)
                if len(parts) < 6 or not parts[5].startswith("/"):
                    continue
                path = parts[5]
                if path.endswith(" (deleted)"):
                    continue
                if _SO_NAME.search(os.path.basename(path)):
                    seen.setdefault(path, None)
    except OSError:
        return ()
    return tuple(seen)


def _version() -> str:
    package = sys.modules.get(__package__ or "torchdll")
    found = getattr(package, "__version__", None)
    if isinstance(found, str):
        return found
    try:
        from importlib.metadata import version

        return version("torchdll")
    except Exception:  # noqa: BLE001 - not installed (running from a source tree)
        return "unknown"


def _attempt(notes: List[str], what: str, call: Callable[[], _T], default: _T) -> _T:
    try:
        return call()
    except (OSError, ImportError) as exc:
        code = getattr(exc, "winerror", None)
        notes.append(f"{what}: " + (f"Win32 error {code}" if code else f"{type(exc).__name__}: {exc}"))
        return default


def collect(
    *,
    api: Optional[WinApi] = None,
    platform: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
    cwd: Optional[str] = None,
) -> Snapshot:
    """Snapshot the running process.

    ``platform`` (default ``sys.platform``) chooses the collector: ``"win32"`` reads Win32
    through ``api`` (default: a real :class:`~torchdll._win32.WinApi`), anything else reads
    ``sys``/``os``/``/proc``. ``environ`` (default ``os.environ``) and ``cwd`` (default
    ``os.getcwd()``) can be given, so Windows collection can be exercised with fakes on Linux.
    Never raises for an unreadable registry value or a failing call: the snapshot records
    ``None``/empty and a line in :attr:`Snapshot.notes`.
    """
    plat = _normalise_platform(platform if platform is not None else sys.platform)
    windows = plat == "win32"
    env: Mapping[str, str] = os.environ if environ is None else environ
    notes: List[str] = []
    if cwd is None:
        cwd = _attempt(notes, "current directory", os.getcwd, "")
    common: Dict[str, Any] = {
        "platform": plat,
        "os_release": _platform.version() if windows else _platform.release(),
        "machine": _process_machine(),
        "cwd": cwd,
        "process_path": _get_env(env, "PATH", windows) or "",
        "python": _collect_python(),
        "environ": _pick_environ(env, windows),
        "collected_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "torchdll_version": _version(),
    }
    if not windows:
        return Snapshot(
            app_dir=os.path.dirname(sys.executable) if sys.executable else "",
            loaded_modules=_linux_modules() if plat == "linux" else (),
            notes=tuple(notes),
            **common,
        )

    if api is None:
        from ._win32 import WinApi

        api = WinApi()
    win = api

    def fallback_app_dir() -> str:
        return ntpath.dirname(getattr(sys, "_base_executable", None) or sys.executable or "")

    app_dir = _attempt(notes, "GetModuleFileNameW(NULL)", win.app_dir, None)
    if app_dir is None:
        app_dir = fallback_app_dir()
        notes.append(f"application directory guessed from the interpreter path: {app_dir}")
    windows_dir = _attempt(notes, "GetWindowsDirectoryW", win.windows_directory, "")

    def reg(read: Callable[[], Optional[Tuple[str, str]]], what: str) -> Optional[RegistryValue]:
        hit = _attempt(notes, what, read, None)
        if hit is None:
            return None
        value, kind = hit
        return RegistryValue(value=value, type=kind)  # type: ignore[arg-type]

    commit = _attempt(notes, "GlobalMemoryStatusEx", win.commit_charge, None)
    snap = Snapshot(
        app_dir=app_dir,
        user_path=reg(win.user_path, "user Path"),
        system_path=reg(win.system_path, "system Path"),
        system32=_attempt(notes, "GetSystemDirectoryW", win.system_directory, ""),
        windows_dir=windows_dir,
        system_dir=ntpath.join(windows_dir, "System") if windows_dir else "",
        safe_dll_search_mode=_attempt(notes, "SafeDllSearchMode", win.safe_dll_search_mode, True),
        long_paths_enabled=_attempt(notes, "LongPathsEnabled", win.long_paths_enabled, False),
        known_dlls=_attempt(notes, "KnownDLLs", win.known_dlls, {}),
        loaded_modules=tuple(_attempt(notes, "EnumProcessModules", win.loaded_modules, [])),
        smart_app_control=_attempt(notes, "Smart App Control state", win.smart_app_control, None),
        commit_limit=commit[0] if commit else None,
        commit_available=commit[1] if commit else None,
        vc_redist_x64=_attempt(notes, "VC++ Redistributable (x64)", win.vc_redist_x64, None),
        notes=(),
        **common,
    )
    return replace(snap, notes=tuple(notes) + win.take_notes())


# --------------------------------------------------------------------------------------------
# Offline analysis
# --------------------------------------------------------------------------------------------


def load_offline(
    snapshot_path: Union[str, os.PathLike[str]], root: Union[str, os.PathLike[str]]
) -> Tuple[Snapshot, MirrorView]:
    """A snapshot from another machine and a view of the folder that mirrors its drives.

    ``root`` holds one folder per drive letter (``root/C/Windows/System32/...``) and/or
    ``root/UNC/server/share/...``. Raises :class:`SnapshotError` if the snapshot is invalid,
    or ``root`` is missing or has no drive folder.
    """
    snap = Snapshot.load(snapshot_path)
    source = os.fspath(root)
    if not os.path.isdir(source):
        reason = "mirror folder does not exist" if not os.path.exists(source) else "not a folder"
        raise SnapshotError(source, reason)
    try:
        with os.scandir(source) as it:
            drives = [
                e.name
                for e in it
                if e.is_dir() and ((len(e.name) == 1 and e.name.isalpha()) or e.name.upper() == "UNC")
            ]
    except OSError as exc:
        raise SnapshotError(source, f"cannot list the mirror folder: {exc.strerror or exc}") from None
    if not drives:
        raise SnapshotError(
            source, "no drive folder in the mirror (expected C/, D/... or UNC/ below it)"
        )
    return snap, MirrorView(source)
