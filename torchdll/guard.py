"""``safe_import_torch()``: import torch with its DLL folders set up, and explain a failure.

::

    import torchdll
    with torchdll.safe_import_torch() as torch:
        app = create_app(torch)

    torch = torchdll.import_torch()          # the same, without a ``with`` block

On enter (all under one process-wide lock, :data:`torchdll._dlldirs.LOCK`):

1. **PATH** (Windows): :func:`torchdll.sanitize.sanitize_path` with the default policy removes
   other environments' DLL folders and broken entries from *this process's* ``PATH``; each
   removal is logged (logger ``"torchdll"``) and kept in :attr:`safe_import_torch.path_result`.
   On Linux/macOS PATH is not a library search path: nothing is done unless a policy asks.
2. **DLL folders** (Windows): the folders torch's own loader adds (``torch\\lib``,
   ``sys.exec_prefix\\Library\\bin``..., per torch version, ``data/torch_loader.json``), found
   *without importing torch* (``importlib.util.find_spec``), are added with
   ``os.add_dll_directory`` -- absolute, existing and de-duplicated only. The handles live in a
   process-wide registry (:mod:`torchdll._dlldirs`) for the life of the process after a
   successful import (torch loads more DLLs later) and are closed, idempotently, only when the
   import fails. ``SetDefaultDllDirectories``/``SetDllDirectory`` are never called.
3. **Pre-import checks** (Windows, cheap: no PE parsing): an ``msvcp140.dll`` already loaded in
   the process (by PyQt, a host application...) older than 14.40 with torch >= 2.9 (its static
   initialisation will fail: WinError 1114), read through the Win32 version API. A finding is
   warned (:class:`~torchdll.errors.PrecheckWarning`) and, if the import then fails, ranked first.
4. ``import torch``.

Any DLL-load ``OSError``/``ImportError`` raised by the import **or inside the ``with`` block**
(``import torchvision`` failing with 127...) becomes a :class:`~torchdll.errors.TorchDLLError`
subclass chosen by the Win32 code; other exceptions pass through untouched. Only then is the
expensive work done: a live snapshot and :func:`torchdll.diagnosis.diagnose` (Windows), and, when
the code is unknown (CPython's ``ImportError("DLL load failed while importing _C: ...")``
discards it) or the prediction cannot explain the failure, a re-probe in a child process
(:func:`torchdll.probe.probe`). On Linux/macOS the dynamic loader's message is the only source
("cannot open shared object file", "undefined symbol", "version `GLIBCXX_...' not found").

The happy path does no PE parsing, starts no process and runs no diagnosis (a test checks that
``torchdll._pe`` and ``pefile`` are not imported).
"""

from __future__ import annotations

import os
import sys
from types import ModuleType, TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    MutableMapping,
    Optional,
    Sequence,
    Tuple,
)

from ._dlldirs import LOCK, REGISTRY, DllDirectory, DllDirectoryRegistry

if TYPE_CHECKING:
    from ._win32 import WinApi
    from .errors import TorchDLLError
    from .fsview import FileView
    from .probe import ProbeBackend, ProbeResult
    from .report import Finding, Prediction, Report
    from .sanitize import SanitizeResult
    from .snapshot import Snapshot

__all__ = ["GuardSystem", "LoadFailure", "classify", "import_torch", "safe_import_torch", "torch_dll_dirs"]

#: torch >= 2.9 is built with MSVC 14.42: msvcp140.dll older than 14.40 fails its static
#: initialisation (pytorch#169429, microsoft/STL#4730).
_MSVCP_MIN = (14, 40)
_TORCH_NEEDS_NEW_MSVCP = (2, 9)


# --------------------------------------------------------------------------------------------
# The seam: everything the guard asks of the OS
# --------------------------------------------------------------------------------------------


class GuardSystem:
    """The OS-level functions the guard uses; tests pass one built from fakes.

    ``platform``: ``sys.platform``; ``environ``: ``os.environ``; ``add_dll_directory``:
    ``os.add_dll_directory`` (``None`` where it does not exist); ``isdir``/``read_text``: file
    access; ``find_spec``: ``importlib.util.find_spec``; ``import_module``:
    ``importlib.import_module``; ``exec_prefix``/``base_exec_prefix``/``userbase``: the
    interpreter's prefixes (what torch's own loader reads); ``api``: a
    :class:`~torchdll._win32.WinApi` (created on first use, Windows only); ``snapshot`` and
    ``view``: how the failure path collects the live process and reads files (default
    :func:`torchdll.snapshot.collect`, :class:`~torchdll.fsview.NativeView`);
    ``probe_backend``: the probe backend (default :func:`torchdll.probe.default_backend`).
    ``path_view``/``interpreter``: what PATH sanitizing looks into folders with and which
    environment is "this" one (defaults: the live file system and ``sys``; a
    :class:`~torchdll.snapshot.PythonInfo` fits).
    """

    def __init__(
        self,
        *,
        platform: Optional[str] = None,
        environ: Optional[MutableMapping[str, str]] = None,
        add_dll_directory: Any = "default",
        isdir: Optional[Callable[[str], bool]] = None,
        read_text: Optional[Callable[[str], Optional[str]]] = None,
        find_spec: Optional[Callable[[str], Any]] = None,
        import_module: Optional[Callable[[str], ModuleType]] = None,
        exec_prefix: Optional[str] = None,
        base_exec_prefix: Optional[str] = None,
        userbase: Optional[str] = None,
        api: Optional[WinApi] = None,
        snapshot: Optional[Callable[[], Snapshot]] = None,
        view: Optional[Callable[[], FileView]] = None,
        probe_backend: Optional[ProbeBackend] = None,
        path_view: Optional[FileView] = None,
        interpreter: Optional[Any] = None,
        listdir: Optional[Callable[[str], List[str]]] = None,
        start_environ: Optional[Callable[[], Optional[Mapping[str, str]]]] = None,
        linux_report: Optional[Callable[[], Report]] = None,
    ) -> None:
        self.platform = platform if platform is not None else sys.platform
        self.environ: MutableMapping[str, str] = os.environ if environ is None else environ
        self.add_dll_directory: Optional[Callable[[str], Any]] = (
            getattr(os, "add_dll_directory", None) if add_dll_directory == "default" else add_dll_directory)
        self.isdir = isdir if isdir is not None else os.path.isdir
        self._read_text = read_text
        self._find_spec = find_spec
        self._import_module = import_module
        self.exec_prefix = exec_prefix if exec_prefix is not None else sys.exec_prefix
        self.base_exec_prefix = base_exec_prefix if base_exec_prefix is not None else sys.base_exec_prefix
        self._userbase = userbase
        self._api = api
        self._snapshot = snapshot
        self._view = view
        self.probe_backend = probe_backend
        self.path_view = path_view
        self.interpreter = interpreter
        self._listdir = listdir
        self._start_environ = start_environ
        self._linux_report = linux_report

    @property
    def windows(self) -> bool:
        return self.platform == "win32"

    @property
    def userbase(self) -> Optional[str]:
        if self._userbase is None:
            import sysconfig

            value = sysconfig.get_config_var("userbase")
            self._userbase = value if isinstance(value, str) else ""
        return self._userbase or None

    @property
    def api(self) -> WinApi:
        if self._api is None:
            from ._win32 import WinApi

            self._api = WinApi()
        return self._api

    def read_text(self, path: str) -> Optional[str]:
        if self._read_text is not None:
            return self._read_text(path)
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                return fh.read(1 << 16)
        except OSError:
            return None

    def find_spec(self, name: str) -> Any:
        if self._find_spec is not None:
            return self._find_spec(name)
        import importlib.util

        try:
            return importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None

    def import_module(self, name: str) -> ModuleType:
        if self._import_module is not None:
            return self._import_module(name)
        import importlib

        return importlib.import_module(name)

    def snapshot(self) -> Snapshot:
        if self._snapshot is not None:
            return self._snapshot()
        from .snapshot import collect

        return collect()

    def view(self) -> FileView:
        if self._view is not None:
            return self._view()
        from .fsview import NativeView

        return NativeView()

    def listdir(self, folder: str) -> List[str]:
        if self._listdir is not None:
            return self._listdir(folder)
        try:
            return os.listdir(folder)
        except OSError:
            return []

    def start_environ(self) -> Optional[Mapping[str, str]]:
        """The environment this process started with (what ``ld.so`` read), or ``None``."""
        if self._start_environ is not None:
            return self._start_environ()
        from ._startenv import initial_environ

        return initial_environ()

    def linux_report(self) -> Report:
        if self._linux_report is not None:
            return self._linux_report()
        from .linuxdiag import diagnose_linux

        return diagnose_linux()


# --------------------------------------------------------------------------------------------
# Cheap facts: torch's folder, version and DLL folders, without importing it
# --------------------------------------------------------------------------------------------

_VERSION_RE = r"""(?m)^__version__\s*(?::\s*str\s*)?=\s*['"]([^'"]+)['"]"""


def _version_key(version: str) -> Tuple[int, ...]:
    import re

    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    return tuple(int(x) for x in m.group(1).split(".")) if m else (0,)


def _torch_dir(system: GuardSystem, module: str = "torch") -> Optional[str]:
    spec = system.find_spec(module)
    locations = getattr(spec, "submodule_search_locations", None) if spec is not None else None
    if locations:
        return str(list(locations)[0])
    origin = getattr(spec, "origin", None) if spec is not None else None
    return os.path.dirname(origin) if isinstance(origin, str) else None


def _torch_version(system: GuardSystem, torch_dir: str) -> Optional[str]:
    join = _join(system)
    import re

    text = system.read_text(join(torch_dir, "version.py"))
    m = re.search(_VERSION_RE, text or "")
    return m.group(1) if m else None


def _join(system: GuardSystem) -> Callable[..., str]:
    import ntpath
    import posixpath

    return ntpath.join if system.windows else posixpath.join


def torch_dll_dirs(system: GuardSystem, torch_dir: str, version: Optional[str]) -> List[str]:
    """The folders torch's own loader would add with ``os.add_dll_directory`` (existing ones,
    de-duplicated, in torch's order), from ``data/torch_loader.json`` -- the same table and
    kinds as :func:`torchdll.torchload.torch_dll_paths`, computed without the loader model."""
    from . import _data

    join = _join(system)
    rows = _data.load("torch_loader.json")["variants"]
    key = _version_key(version) if version else (99,)
    chosen = rows[0]
    for row in rows:
        if _version_key(row["since"]) <= key:
            chosen = row
    ep, bep, ub = system.exec_prefix, system.base_exec_prefix, system.userbase
    candidates: Dict[str, Optional[str]] = {
        "torch_lib": join(torch_dir, "lib"),
        "exec_prefix_library_bin": join(ep, "Library", "bin") if ep else None,
        "base_exec_prefix_library_bin": join(bep, "Library", "bin") if bep and bep != ep else None,
        "userbase_library_bin": join(ub, "Library", "bin") if ub else None,
        "exec_prefix_bin": join(ep, "bin") if ep else None,
    }
    out: List[str] = []
    seen: set[str] = set()
    for kind in chosen["dll_paths"]:
        d = candidates.get(kind)
        if not d or d.lower() in seen:
            continue
        seen.add(d.lower())
        try:
            if system.isdir(d):
                out.append(d)
        except OSError:
            continue
    return out


# --------------------------------------------------------------------------------------------
# Classification: is this a DLL load failure, and which code?
# --------------------------------------------------------------------------------------------


class LoadFailure:
    """What :func:`classify` recognised in an exception.

    ``code``: the Win32 code (``None`` when the error does not carry one: CPython's extension
    ``ImportError``; or off Windows, where there is none); ``dll``: what the failing call named;
    ``source``: how it was recognised (``winerror``, ``ctypes``, ``extension``, ``posix``);
    ``kind``: the error class name; ``culprit``/``importer``/``symbol``: what the dynamic
    loader's message names (POSIX).
    """

    def __init__(self, code: Optional[int], dll: Optional[str], source: str, kind: str, *,
                 culprit: Optional[str] = None, importer: Optional[str] = None,
                 symbol: Optional[str] = None) -> None:
        self.code = code
        self.dll = dll
        self.source = source
        self.kind = kind
        self.culprit = culprit
        self.importer = importer
        self.symbol = symbol

    def __repr__(self) -> str:
        return f"LoadFailure(code={self.code!r}, dll={self.dll!r}, source={self.source!r}, kind={self.kind!r})"


def _frames(exc: BaseException) -> List[Any]:
    out = []
    tb = exc.__traceback__
    while tb is not None:
        out.append(tb.tb_frame)
        tb = tb.tb_next
    return out


def _norm_file(frame: Any) -> str:
    return str(frame.f_code.co_filename).replace("\\", "/")


def _ctypes_frame(exc: BaseException) -> Optional[Any]:
    """The innermost frame when it is ctypes' ``CDLL.__init__`` (``ctypes/__init__.py``)."""
    frames = _frames(exc)
    if frames and _norm_file(frames[-1]).endswith("/ctypes/__init__.py"):
        return frames[-1]
    return None


#: torch's own (English, not localised) suffix: ``Error loading "<dll>" or one of its dependencies.``
_TORCH_NAMED = r'Error loading "([^"]+)"'


def _named_dll(exc: BaseException) -> Optional[str]:
    """What the failing call named: ctypes' ``name``, torch's loader variable ``dll``, the
    path torch appends to the message (its own English text, not Windows'), or ``filename``."""
    frame = _ctypes_frame(exc)
    if frame is not None:
        name = frame.f_locals.get("name")
        if isinstance(name, str):
            return name
    for f in reversed(_frames(exc)):
        if _norm_file(f).endswith("/torch/__init__.py") and isinstance(f.f_locals.get("dll"), str):
            return str(f.f_locals["dll"])
    import re

    m = re.search(_TORCH_NAMED, str(getattr(exc, "strerror", None) or exc))
    if m:
        return m.group(1)
    filename = getattr(exc, "filename", None)
    return filename if isinstance(filename, str) else None


# The dynamic loader's own text (glibc ld.so / dyld). English: Python does not set
# LC_MESSAGES, so glibc does not translate dlerror() (see docs/guard.md). Patterns are compiled
# (and cached by ``re``) on the failure path only.
_POSIX_PATTERNS: Tuple[Tuple[str, str], ...] = (
    ("glibcxx", r"(?P<culprit>[^\s:]+): version [`'](?P<symbol>[^'`]+)' not found"
                r"(?: \(required by (?P<importer>[^)]+)\))?"),
    ("not-found", r"(?P<culprit>[^\s:][^:]*): cannot open shared object file"),
    ("undefined", r"(?:(?P<importer>[^\s:][^:]*): )?undefined symbol: (?P<symbol>\S+)"),
    ("static-tls", r"(?P<culprit>[^\s:][^:]*): cannot allocate memory in static TLS block"),
    ("bad-image", r"(?:(?P<culprit>[^\s:][^:]*): )?(?:wrong ELF class|invalid ELF header|"
                  r"file too short|ELF load command|incompatible architecture|not a mach-o file)"),
    ("not-found", r"Library not loaded: (?P<culprit>\S+)"),
    ("undefined", r"Symbol not found: (?P<symbol>\S+)"),
    ("not-found", r"(?P<culprit>\S+): (?:image not found|no such file)"),
    ("commit", r"(?P<culprit>[^\s:][^:]*): failed to map segment from shared object"),
)
_POSIX_KIND = {"glibcxx": ("ProcedureNotFoundError", None), "not-found": ("DllNotFoundError", 2),
               "undefined": ("ProcedureNotFoundError", None), "static-tls": ("DllInitError", None),
               "bad-image": ("BadImageError", 8), "commit": ("CommitLimitError", 12)}
_POSIX_LIB = r"(?i)\.(so(\.\d+)*|dylib)$|\.so\."


def classify(exc: BaseException, platform: Optional[str] = None) -> Optional[LoadFailure]:
    """Recognise a DLL load failure in ``exc``; ``None`` for anything else (it passes through).

    Windows: by the number only -- ``OSError.winerror`` in the DLL-load codes (5 and 206 only
    with a named DLL); ctypes' ``FileNotFoundError`` (raised in ``CDLL.__init__``, no number):
    126; an ``ImportError`` whose ``path`` is an extension module (``.pyd``): code unknown,
    re-probe. Linux/macOS: the dynamic loader's message is the only source.
    """
    import re

    from .errors import AMBIGUOUS_LOAD_CODES, DLL_LOAD_CODES, TorchDLLError, dll_error_class

    if isinstance(exc, TorchDLLError) or not isinstance(exc, (OSError, ImportError)):
        return None
    if isinstance(exc, ModuleNotFoundError):
        return None
    plat = platform if platform is not None else sys.platform
    if plat == "win32":
        winerror = getattr(exc, "winerror", None)
        if isinstance(exc, OSError) and isinstance(winerror, int):
            dll = _named_dll(exc)
            if winerror in DLL_LOAD_CODES or (winerror in AMBIGUOUS_LOAD_CODES and dll and
                                             (_ctypes_frame(exc) is not None or re.search(_TORCH_NAMED, str(exc)))):
                return LoadFailure(winerror, dll, "winerror", dll_error_class(winerror).kind)
            return None
        if isinstance(exc, FileNotFoundError) and _ctypes_frame(exc) is not None:
            return LoadFailure(126, _named_dll(exc), "ctypes", "DllNotFoundError")
        path = getattr(exc, "path", None)
        if isinstance(exc, ImportError) and isinstance(path, str) and path.lower().endswith((".pyd", ".dll")):
            return LoadFailure(None, path, "extension", "DllLoadError")
        return None
    text = str(exc.msg if isinstance(exc, ImportError) and exc.msg else exc)
    path = getattr(exc, "path", None)
    for kind, pattern in _POSIX_PATTERNS:
        m = re.search(pattern, text)
        if m is None:
            continue
        groups = m.groupdict()
        culprit, importer, symbol = groups.get("culprit"), groups.get("importer"), groups.get("symbol")
        if kind == "undefined" and importer is None and isinstance(path, str):
            importer = path
        dll = path if isinstance(path, str) else _named_dll(exc) if _ctypes_frame(exc) else None
        return LoadFailure(None, dll or culprit or importer, "posix", _POSIX_KIND[kind][0],
                           culprit=culprit, importer=importer, symbol=symbol)
    if isinstance(exc, ImportError) and isinstance(path, str) and re.search(_POSIX_LIB, path):
        return LoadFailure(None, path, "posix", "DllLoadError")
    if isinstance(exc, OSError) and _ctypes_frame(exc) is not None:
        return LoadFailure(None, _named_dll(exc), "posix", "DllLoadError")
    return None


# --------------------------------------------------------------------------------------------
# The guard
# --------------------------------------------------------------------------------------------


class safe_import_torch:  # noqa: N801 - used like a function: with safe_import_torch() as torch
    """Import torch safely: ``with safe_import_torch() as torch: ...`` (see the module doc).

    Options: ``policy`` -- the PATH policy (a :class:`~torchdll.sanitize.PathPolicy` or a
    name; default: ``default`` on Windows, nothing on Linux/macOS); ``sanitize`` -- ``False``
    leaves PATH alone; ``add_dll_directories`` -- ``False`` adds no folder; ``prechecks`` --
    ``False`` skips them; ``diagnose`` -- ``False``: on failure, no snapshot and no report
    (the code and the named DLL only); ``probe`` -- ``False``: never re-probe in a child;
    ``module`` -- what to import (``"torch"``); ``system``/``registry`` -- seams for tests.

    After the block (or after :meth:`__enter__`): ``torch`` (the module), ``path_result``
    (the :class:`~torchdll.sanitize.SanitizeResult` or ``None``), ``dll_directories`` (the
    folders in the DLL search for this import), ``skipped_directories`` (``(path, reason)``),
    ``findings`` (pre-import findings), ``error`` (the :class:`~torchdll.errors.TorchDLLError`
    raised, if any). Re-entrant, nestable, thread-safe; one instance may be entered again.
    """

    def __init__(
        self,
        *,
        policy: Optional[Any] = None,
        sanitize: bool = True,
        add_dll_directories: bool = True,
        prechecks: bool = True,
        diagnose: bool = True,
        probe: bool = True,
        module: str = "torch",
        system: Optional[GuardSystem] = None,
        registry: Optional[DllDirectoryRegistry] = None,
    ) -> None:
        self.policy = policy
        self.sanitize = sanitize
        self.add_dll_directories = add_dll_directories
        self.prechecks = prechecks
        self.diagnose = diagnose
        self.probe = probe
        self.module = module
        self.system = system if system is not None else GuardSystem()
        self.registry = registry if registry is not None else REGISTRY
        self.torch: Optional[ModuleType] = None
        self.path_result: Optional[SanitizeResult] = None
        self.dll_directories: Tuple[str, ...] = ()
        self.skipped_directories: Tuple[Tuple[str, str], ...] = ()
        self.findings: Tuple[Finding, ...] = ()
        self.torch_dir: Optional[str] = None
        self.torch_version: Optional[str] = None
        self.error: Optional[TorchDLLError] = None
        self._added: List[DllDirectory] = []
        self._old_path: Optional[Tuple[Optional[str], str]] = None

    # -- enter / exit ------------------------------------------------------------------------

    def __enter__(self) -> ModuleType:
        with LOCK:
            self._prepare()
            try:
                module = self.system.import_module(self.module)
            except BaseException as exc:
                err = self._convert(exc)
                self._rollback()
                if err is None:
                    raise
                self.error = err
                raise err from exc
        self.torch = module
        return module

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        if exc is None or not isinstance(exc, (OSError, ImportError)):
            return None
        with LOCK:
            err = self._convert(exc)
        if err is None:
            return None
        self.error = err
        raise err from exc

    # -- the happy path ----------------------------------------------------------------------

    def _prepare(self) -> None:
        sysm = self.system
        self.findings = ()
        self.error = None
        self._added = []
        self._old_path = None
        if self.sanitize:
            self._sanitize_path()
        if not sysm.windows:
            if self.prechecks and (sysm.platform.startswith("linux") or sysm.platform == "darwin"):
                self.findings = tuple(self._linux_prechecks())
            return
        self.torch_dir = _torch_dir(sysm, self.module.split(".")[0] if self.module else "torch")
        if self.torch_dir is not None:
            self.torch_version = _torch_version(sysm, self.torch_dir)
        if self.add_dll_directories and self.torch_dir is not None and sysm.add_dll_directory is not None:
            dirs = torch_dll_dirs(sysm, self.torch_dir, self.torch_version)
            result = self.registry.add_all(dirs, sysm.add_dll_directory, sysm.isdir)
            self._added = list(result.added)
            self.dll_directories = result.paths
            self.skipped_directories = tuple(result.skipped)
        if self.prechecks:
            self.findings = tuple(self._prechecks())

    def _sanitize_path(self) -> None:
        sysm = self.system
        policy = self.policy
        if not sysm.windows and (policy is None or isinstance(policy, str) and policy == "default"):
            return  # POSIX PATH is not a library search path: the default policy removes nothing
        from .sanitize import PathPolicy, default_syntax, sanitize_path

        if isinstance(policy, str):
            policy = PathPolicy.named(policy)
        if policy is None:
            policy = PathPolicy()
        if not sysm.windows and not policy.strip_posix:
            return
        before = _get_path(sysm.environ, sysm.windows)
        result = sanitize_path(environ=sysm.environ, policy=policy,
                               syntax=default_syntax(sysm.platform), view=sysm.path_view,
                               python=sysm.interpreter)
        self.path_result = result
        if result.applied:
            self._old_path = before

    def _prechecks(self) -> List[Finding]:
        """Cheap checks through Win32 (no PE parsing): an msvcp140.dll already loaded that is too
        old for this torch. Warned now, ranked first if the import fails."""
        out: List[Finding] = []
        key = _version_key(self.torch_version) if self.torch_version else None
        if key is None or key[:2] < _TORCH_NEEDS_NEW_MSVCP:
            return out
        try:
            hit = self.system.api.loaded_module_version("msvcp140.dll")
        except OSError:
            return out
        if hit is None:
            return out
        path, version = hit
        if version is None or version[:2] >= _MSVCP_MIN:
            return out
        import warnings

        from .errors import PrecheckWarning
        from .report import Confidence, Evidence, Finding, Severity

        shown = ".".join(map(str, version))
        finding = Finding(
            id="old-msvcp140-preloaded", severity=Severity.ERROR, confidence=Confidence.CERTAIN,
            title=f"msvcp140.dll {shown} is already loaded from {os.path.dirname(path) or path}: "
                  f"torch {self.torch_version} needs 14.40 or later (WinError 1114)",
            detail=("Something imported before torch (PyQt, a host application, another package) "
                    "loaded an old Microsoft C++ runtime; Windows reuses the loaded copy for torch's "
                    "DLLs, whose static initialisation then fails."),
            evidence=(Evidence("loaded module", path), Evidence("FileVersion", shown),
                      Evidence("torch", self.torch_version or "?")),
            fix=("Import torch (through torchdll.safe_import_torch) before the package that loads "
                 f"{path}, at the very top of your program.",
                 "Or update that package / the runtime it ships to msvcp140.dll 14.40 or later.",
                 "Or install the current Microsoft Visual C++ 2015-2022 Redistributable (x64)."),
            references=("https://github.com/pytorch/pytorch/issues/169429",),
            explains=self.module.split(".")[0],
        )
        out.append(finding)
        warnings.warn(PrecheckWarning(finding.title), stacklevel=4)
        return out

    def _linux_prechecks(self) -> List[Finding]:
        """Cheap (folder listings only): an ``LD_LIBRARY_PATH`` entry (macOS: ``DYLD_*``) holding
        libraries named like torch's own or pip's ``nvidia-*`` ones. The dynamic loader read it at
        process start, so it cannot be fixed from here: warn, and name ``torchdll run``."""
        sysm = self.system
        darwin = sysm.platform == "darwin"
        start = None if darwin else sysm.start_environ()
        env = start if start is not None else sysm.environ
        variables = (("DYLD_LIBRARY_PATH", "DYLD_FRAMEWORK_PATH", "DYLD_FALLBACK_LIBRARY_PATH")
                     if darwin else ("LD_LIBRARY_PATH",))
        values = [(v, env.get(v) or "") for v in variables if env.get(v)]
        if not values:
            return []
        torch_dir = _torch_dir(sysm, self.module.split(".")[0] if self.module else "torch")
        if torch_dir is None:
            return []
        import posixpath

        def libs(folder: str) -> List[str]:
            return [n for n in sysm.listdir(folder) if ".so" in n or n.endswith(".dylib")]

        names = set(libs(posixpath.join(torch_dir, "lib")))
        nvidia = posixpath.join(posixpath.dirname(torch_dir), "nvidia")
        own = {posixpath.join(torch_dir, "lib")}
        for pkg in sysm.listdir(nvidia):
            folder = posixpath.join(nvidia, pkg, "lib")
            own.add(folder)
            names.update(libs(folder))
        hits: List[Tuple[str, str, List[str]]] = []
        for var, value in values:
            entries = value.replace(";", ":").split(":") if not darwin else value.split(":")
            for entry in entries:
                folder = posixpath.normpath(entry or ".")
                if folder in own:
                    continue
                found = sorted(n for n in sysm.listdir(entry or ".") if n in names)
                if found:
                    hits.append((var, entry, found))
        if not hits:
            return []
        import warnings

        from .errors import PrecheckWarning
        from .report import Confidence, Evidence, Finding, Severity

        shown = "; ".join(f"{e} ({', '.join(n[:3])}{' ...' if len(n) > 3 else ''})" for _, e, n in hits)
        loader = "dyld" if darwin else "ld.so"
        finding = Finding(
            id="macos-dyld-variables" if darwin else "linux-ld-library-path-shadowing",
            severity=Severity.WARNING, confidence=Confidence.POSSIBLE,
            title=f"{hits[0][0]} holds other copies of torch's libraries: {shown}",
            detail=(f"{loader} searches {hits[0][0]} before torch's own folders; it read the variable "
                    "when this process started, so changing os.environ now does nothing. Start the "
                    "program without those entries."),
            evidence=tuple(Evidence(f"shadowing entry ({v})", f"{e}: {', '.join(n)}") for v, e, n in hits),
            fix=(_restart_command(),
                 f"or remove the entries from {hits[0][0]} before starting Python"),
            explains=self.module.split(".")[0])
        warnings.warn(PrecheckWarning(finding.title + " -- start with: python -m torchdll run -- python ..."),
                      stacklevel=4)
        return [finding]

    def _rollback(self) -> None:
        """Undo this guard's own changes after a failed import: close the folders it added
        (idempotently) and restore PATH if nobody changed it since."""
        self.registry.release(self._added)
        self._added = []
        if self._old_path is not None and self.path_result is not None:
            key, value = self._old_path
            current = _get_path(self.system.environ, self.system.windows)
            if current[1] == self.path_result.new_value:
                self.system.environ[key or "PATH"] = value
        self._old_path = None

    # -- the failure path --------------------------------------------------------------------

    def _convert(self, exc: BaseException) -> Optional[TorchDLLError]:
        info = classify(exc, self.system.platform)
        if info is None:
            return None
        try:
            if self.system.windows:
                return self._windows_error(exc, info)
            return self._posix_error(exc, info)
        except Exception as inner:  # noqa: BLE001 - never hide the real failure behind ours
            from .errors import dll_error_class

            cls = dll_error_class(info.code)
            return cls("", winerror=info.code, errno=getattr(exc, "errno", None), module=self.module,
                       dll=info.dll, original=_describe(exc),
                       notes=(f"torchdll could not analyse the failure: {type(inner).__name__}: {inner}",))

    def _windows_error(self, exc: BaseException, info: LoadFailure) -> TorchDLLError:
        import ntpath

        from .errors import dll_error_class

        notes: List[str] = []
        report: Optional[Report] = None
        prediction: Optional[Prediction] = None
        candidates: Tuple[str, ...] = ()
        snap: Optional[Snapshot] = None
        view: Optional[FileView] = None
        if self.diagnose:
            try:
                report, candidates, snap, view = self._diagnose()
                prediction = _pick_prediction(report, info.dll, self.module)
            except Exception as inner:  # noqa: BLE001
                notes.append(f"diagnose failed: {type(inner).__name__}: {inner}")
        code = info.code
        probe_result: Optional[ProbeResult] = None
        unexplained = prediction is None or prediction.ok or not prediction.culprit
        if self.probe and info.dll and (code is None or unexplained):
            probe_result, probe_note = self._probe(info.dll, snap, view)
            if probe_note:
                notes.append(probe_note)
            if code is None and probe_result is not None:
                code = probe_result.winerror
        if code is None and prediction is not None and not prediction.ok:
            code = prediction.winerror
            notes.append("the code is the prediction's: the error carried none and no probe confirmed it")
        causes = _causes(self.findings, report)
        fix = _fix(causes)
        culprit = importer = rule = None
        summary = ""
        if prediction is not None and not prediction.ok:
            culprit, importer, rule = prediction.culprit_path, prediction.importer, prediction.rule
            summary = prediction.culprit or ""
        if probe_result is not None and not probe_result.ok:
            if not summary:
                summary = probe_result.explain()
            if culprit is None and probe_result.failing is not None:
                culprit = probe_result.failing.path
        if not summary and self.findings:
            summary = self.findings[0].title
        if not summary and code is not None:
            from .torchload import error_message

            summary = f"{ntpath.basename(info.dll or '?')}: {error_message(code)}"
        if report is not None:
            notes.extend(report.notes)
        cls = dll_error_class(code)
        return cls(summary, winerror=code, errno=getattr(exc, "errno", None), module=self.module,
                   dll=info.dll, culprit=culprit, importer=importer, rule=rule, candidates=candidates,
                   causes=causes, fix=fix, report=report, probe=probe_result,
                   original=_describe(exc), notes=notes)

    def _diagnose(self) -> Tuple[Report, Tuple[str, ...], Snapshot, FileView]:
        from .diagnosis import diagnose, diagnose_context

        snap = self.system.snapshot()
        view = self.system.view()
        candidates: Tuple[str, ...] = ()
        try:
            cctx = diagnose_context(snap, view)
            failing = cctx.primary.failing if cctx.primary is not None else None
            edge = failing.culprit if failing is not None else None
            if edge is not None:
                candidates = tuple(c.path for c in edge.resolution.candidates)
        except Exception:  # noqa: BLE001 - candidates are a bonus; diagnose() reports itself
            pass
        return diagnose(snap, view=view), candidates, snap, view

    def _probe(self, dll: str, snap: Optional[Snapshot],
               view: Optional[FileView]) -> Tuple[Optional[ProbeResult], Optional[str]]:
        from ._dlldirs import is_absolute_windows_path
        from .probe import default_backend, probe

        if not is_absolute_windows_path(dll):
            return None, f"not re-probed: {dll} is not a full path"
        try:
            backend = self.system.probe_backend or default_backend(self.system.platform)
            preload = self._loaded_runtimes(snap)
            dirs = tuple(dict.fromkeys([*self.dll_directories, *self.registry.active()]))
            return probe(dll, backend=backend, dll_directories=dirs, preload=preload,
                         snapshot=snap if snap is not None and snap.platform == "win32" else None,
                         view=view, path=_get_path(self.system.environ, True)[1] or None), None
        except Exception as inner:  # noqa: BLE001
            return None, f"the re-probe failed: {type(inner).__name__}: {inner}"

    @staticmethod
    def _loaded_runtimes(snap: Optional[Snapshot]) -> Tuple[str, ...]:
        """Runtime DLLs this process already has (the child loads them first, to reproduce a
        conflict such as an old msvcp140.dll from another package)."""
        if snap is None:
            return ()
        import ntpath

        names = ("msvcp140.dll", "msvcp140_1.dll", "vcruntime140.dll", "vcruntime140_1.dll",
                 "libiomp5md.dll", "vcomp140.dll")
        return tuple(p for p in snap.loaded_modules if ntpath.basename(p).lower() in names)

    def _posix_error(self, exc: BaseException, info: LoadFailure) -> TorchDLLError:
        import platform as _platform

        from . import __version__
        from .errors import dll_error_class
        from .report import Prediction, Report

        finding = _posix_finding(info, self.module)
        linux_report: Optional[Report] = None
        notes_extra: List[str] = []
        if self.diagnose and self.system.platform.startswith("linux"):
            try:
                linux_report = self.system.linux_report()
            except Exception as inner:  # noqa: BLE001 - the loader's message still explains a lot
                notes_extra.append(f"diagnose failed: {type(inner).__name__}: {inner}")
        cls: type[TorchDLLError] = dll_error_class(None)
        from . import errors as _errors

        cls = getattr(_errors, info.kind, cls)
        errno = getattr(exc, "errno", None)
        if errno is None:
            errno = next((e for k, (n, e) in _POSIX_KIND.items() if n == info.kind and e), None)
        summary = finding.title
        prediction = Prediction(target=self.module.split(".")[0], version="", outcome="fails",
                                dll=info.dll, message=_describe(exc), culprit=summary,
                                culprit_path=info.culprit, importer=info.importer)
        if linux_report is not None and linux_report.predictions:
            from .report import Severity

            specific = tuple(f for f in linux_report.findings
                             if f.severity is Severity.ERROR and f.id != "linux-import-fails")
            causes = specific + tuple(f for f in self.findings if f not in specific)
            if not causes:
                causes = (finding,)
            pred = next((p for p in linux_report.predictions if not p.ok), None)
            culprit = (pred.culprit_path if pred is not None else None) or info.culprit
            importer = (pred.importer if pred is not None else None) or info.importer
            notes = tuple(notes_extra) + linux_report.notes
            if pred is None:
                notes += ("the ld.so model predicted success: the failure depends on something it does "
                          "not model (see the original error)",)
            return cls(causes[0].title, winerror=getattr(exc, "winerror", None), errno=errno,
                       module=self.module, dll=info.dll, culprit=culprit, importer=importer,
                       rule=pred.rule if pred is not None else None, causes=causes, fix=_fix(causes),
                       report=linux_report, original=_describe(exc), notes=notes)
        notes = tuple(notes_extra) + (
            "on Linux and macOS the dynamic loader's message is the only source of the cause "
            "(its English text: Python does not set LC_MESSAGES)",)
        causes = (finding,) + tuple(self.findings)
        report = Report(
            (prediction,), causes, f"{sys.platform} {_platform.release()}",
            f"{_platform.python_version()} {sys.executable}", "live", __version__, notes)
        return cls(summary, winerror=getattr(exc, "winerror", None), errno=errno, module=self.module,
                   dll=info.dll, culprit=info.culprit, importer=info.importer, causes=causes,
                   fix=_fix(causes), report=report, original=_describe(exc), notes=notes)


def _restart_command() -> str:
    """How to start this program again through ``torchdll run`` (its own script and arguments
    when it was started as ``python script.py ...``)."""
    import shlex

    argv = list(sys.argv)
    if argv and argv[0].endswith(".py"):
        return "python -m torchdll run -- python " + " ".join(shlex.quote(a) for a in argv)
    return "python -m torchdll run -- python main.py"


def import_torch(**options: Any) -> ModuleType:
    """The function form: ``torch = torchdll.import_torch()`` (options as
    :class:`safe_import_torch`); raises the same :class:`~torchdll.errors.TorchDLLError`."""
    with safe_import_torch(**options) as torch:
        return torch


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _get_path(environ: MutableMapping[str, str], windows: bool) -> Tuple[Optional[str], str]:
    if "PATH" in environ:
        return "PATH", environ["PATH"]
    if windows:
        for key in environ:
            if key.upper() == "PATH":
                return key, environ[key]
    return None, ""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _pick_prediction(report: Report, dll: Optional[str], module: str) -> Optional[Prediction]:
    """The prediction that matches the failing DLL (by base name), else the first failing one
    (else the one of the imported package)."""
    import ntpath

    preds = report.predictions
    if dll:
        base = ntpath.basename(dll.replace("/", "\\")).lower()
        for p in preds:
            if p.dll and ntpath.basename(p.dll).lower() == base:
                return p
    failing = [p for p in preds if not p.ok]
    if failing:
        return failing[0]
    top = module.split(".")[0]
    return next((p for p in preds if p.target == top), None)


def _causes(prechecks: Sequence[Finding], report: Optional[Report]) -> Tuple[Finding, ...]:
    from .report import Severity

    out: List[Finding] = list(prechecks)
    seen = {f.id for f in out}
    if report is not None:
        for f in report.findings:
            if f.severity is Severity.INFO or f.id in seen:
                continue
            seen.add(f.id)
            out.append(f)
    # the generic "import will fail" finding says only "see below": put real causes first
    out.sort(key=lambda f: f.id == "predicted-load-failure")
    return tuple(out)


def _fix(causes: Sequence[Finding]) -> Tuple[str, ...]:
    for f in causes:
        if f.fix:
            return tuple(f.fix)
    return ()


def _posix_finding(info: LoadFailure, module: str) -> Finding:
    import posixpath

    from .report import Confidence, Evidence, Finding, Severity

    culprit = info.culprit or info.dll or "a library"
    importer = info.importer or info.dll
    evidence = tuple(Evidence(k, v) for k, v in (("library", info.culprit), ("needed by", importer),
                                                   ("symbol", info.symbol)) if v)
    base = posixpath.basename(culprit)
    if info.kind == "DllNotFoundError":
        return Finding(
            "posix-library-not-found", Severity.ERROR, f"{base} was not found by the dynamic loader",
            detail="A shared library that torch (or one of its libraries) links to is missing or "
                   "not on the loader's search path.",
            confidence=Confidence.CERTAIN, evidence=evidence,
            fix=(f"See every missing library: ldd {importer or '<library>'} (macOS: otool -L)",
                 "Reinstall torch in this environment (pip install --force-reinstall torch==<version>): "
                 "a partial or mixed install lacks its own libraries",
                 "If it is a system library (libgomp, libcudart...), install it or add its folder "
                 "to LD_LIBRARY_PATH"),
            explains=module.split(".")[0])
    if info.source == "posix" and info.symbol and info.symbol.startswith(("GLIBCXX_", "CXXABI_", "GLIBC_")):
        return Finding(
            "posix-libstdcxx-too-old", Severity.ERROR,
            f"{base} is too old: {posixpath.basename(importer or '?')} needs {info.symbol}",
            detail="The C++ (or C) runtime the loader found first predates the one torch was built "
                   "with: usually an old copy from a conda environment, an application bundle or "
                   "LD_LIBRARY_PATH shadows the system's.",
            confidence=Confidence.CERTAIN, evidence=evidence,
            fix=(f"Check which copy is used and what it provides: strings {culprit} | grep {info.symbol.split('_')[0]}_",
                 "In a conda environment: conda install -c conda-forge libstdcxx-ng (a newer libstdc++)",
                 "Remove the folder holding the old copy from LD_LIBRARY_PATH, or import torch before "
                 "the package that loads it"),
            explains=module.split(".")[0])
    if info.kind == "ProcedureNotFoundError":
        return Finding(
            "posix-undefined-symbol", Severity.ERROR,
            f"{posixpath.basename(importer or culprit)} needs {info.symbol or 'a symbol'}, which the "
            "loaded libraries do not provide",
            detail="Two builds are mixed: a torchvision/torchaudio built for another torch, or a "
                   "second torch's libraries found first (LD_LIBRARY_PATH, LD_PRELOAD).",
            confidence=Confidence.LIKELY, evidence=evidence,
            fix=("Install matching versions together: pip install torch==X torchvision==Y (see the "
                 "compatibility table of torchvision)",
                 "Look for another torch or CUDA on LD_LIBRARY_PATH / LD_PRELOAD and remove it"),
            explains=module.split(".")[0])
    if info.kind == "BadImageError":
        return Finding(
            "posix-wrong-architecture", Severity.ERROR,
            f"{base} is not a valid library for this process (wrong architecture or corrupt)",
            confidence=Confidence.CERTAIN, evidence=evidence,
            fix=(f"Check it: file {culprit}", "Reinstall the package that ships it for this "
                 "interpreter's architecture"),
            explains=module.split(".")[0])
    if info.kind == "DllInitError":
        return Finding(
            "posix-static-tls", Severity.ERROR, f"{base} cannot be loaded this late: no static TLS left",
            detail="A library with initial-exec TLS (often libgomp) was loaded after many others.",
            confidence=Confidence.LIKELY, evidence=evidence,
            fix=("Import torch first, at the top of the program",
                 f"Or preload it: LD_PRELOAD={culprit} python ..."),
            explains=module.split(".")[0])
    if info.kind == "CommitLimitError":
        return Finding(
            "posix-out-of-memory", Severity.ERROR, f"{base} could not be mapped: out of memory",
            confidence=Confidence.LIKELY, evidence=evidence,
            fix=("Free memory or raise the limit (ulimit -v, container memory limit)",),
            explains=module.split(".")[0])
    return Finding(
        "posix-load-failed", Severity.ERROR, f"a native library of {module} failed to load ({base})",
        confidence=Confidence.POSSIBLE, evidence=evidence,
        fix=("Read the original error (the exception's __cause__) and run: ldd on the library",),
        explains=module.split(".")[0])
