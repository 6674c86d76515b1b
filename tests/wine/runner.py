"""Run load plans under Wine and read back what its loader did.

The C program ``src/loadplan.c`` executes a *load plan* (a text file of directives, see the
comment at the top of the source) and prints one JSON line per step. This module:

* builds ``loadplan.exe`` with mingw-w64, cached by a hash of the source, the compiler version
  and the flags (:func:`build_loadplan`);
* owns one Wine prefix per cache folder (:class:`WinePrefix`): created once (~10 s), reused by
  every later session, locked for the duration of a session, with spare drive letters mapped
  onto mirrored trees so that Windows paths keep their shape;
* runs many plans in one Wine invocation (``loadplan.exe --batch LIST`` starts one child
  process per plan, so the wineserver stays warm: about 15 ms per plan) and parses the
  combined output (:func:`parse_batch_output`);
* turns Wine's "stub binding" debug lines into the error Windows would have returned
  (:func:`stub_bindings`, :func:`windows_outcome`): Wine never fails a load because an
  imported symbol is missing; it binds a stub and prints a ``warn:module`` line.

Everything here is independent of torchdll's model; the differential test compares the two.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "src" / "loadplan.c"
MINGW_X64 = "x86_64-w64-mingw32-gcc"
CFLAGS = ("-municode", "-O2", "-Wall", "-s", "-Wl,--no-insert-timestamp")

#: Wine debug channels the harness needs: module warnings carry the stub bindings.
WINEDEBUG = "-all,err+module,warn+module"
#: Never let a prefix creation ask for Mono or Gecko.
BASE_OVERRIDES = "mscoree,mshtml="
#: The Microsoft VC++ runtime must be loaded as the real (native) DLLs, not Wine's builtins.
MSVC_NATIVE = (
    "msvcp140,msvcp140_1,msvcp140_2,msvcp140_atomic_wait,msvcp140_codecvt_ids,"
    "vcruntime140,vcruntime140_1,concrt140,vcomp140=n"
)

#: Debian's wine64: Wine's own x64 PE DLLs (used to build a minimal System32 for a light prefix)
WINE_X64_DLLS = Path("/usr/lib/x86_64-linux-gnu/wine/x86_64-windows")

PREFIX_VERSION = 1
SESSION_MARK = ".torchdll-placed.json"  # files this harness put into the prefix's C: drive

ERROR_MOD_NOT_FOUND = 126
ERROR_PROC_NOT_FOUND = 127
ERROR_INVALID_ORDINAL = 182


class HarnessError(RuntimeError):
    """The harness itself failed (not a loader outcome): bad output, a crashed batch."""


# --------------------------------------------------------------------------------------------
# cache folder, loadplan.exe
# --------------------------------------------------------------------------------------------


def cache_root() -> Path:
    """``$TORCHDLL_TEST_CACHE`` or the platformdirs user cache ``torchdll-tests``."""
    env = os.environ.get("TORCHDLL_TEST_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(str(platformdirs.user_cache_dir("torchdll-tests", appauthor=False)))


def _first_line(argv: Sequence[str]) -> str:
    out = subprocess.run(list(argv), capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0].strip() if out else ""


def build_loadplan(compiler: str = MINGW_X64) -> Path:
    """Build ``loadplan.exe`` (x64) once per source/compiler/flags hash; return its path."""
    gcc = shutil.which(compiler)
    if gcc is None:
        raise FileNotFoundError(compiler)
    h = hashlib.sha256()
    h.update(SOURCE.read_bytes())
    h.update(_first_line([gcc, "--version"]).encode())
    h.update(json.dumps(CFLAGS).encode())
    key = h.hexdigest()[:16]
    folder = cache_root() / f"loadplan-{key}"
    exe = folder / "loadplan.exe"
    if exe.is_file():
        return exe
    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        proc = subprocess.run([gcc, *CFLAGS, "-o", str(stage / "loadplan.exe"), str(SOURCE)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise HarnessError(f"building loadplan.exe failed:\n{proc.stdout}{proc.stderr}")
        stage.chmod(0o755)
        try:
            os.replace(stage, folder)
        except OSError:
            if not exe.is_file():  # another session won the race with a broken build?
                raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return exe


# --------------------------------------------------------------------------------------------
# the prefix
# --------------------------------------------------------------------------------------------


def wine_version(wine: str) -> str:
    return _first_line([wine, "--version"]) or "unknown"


class WinePrefix:
    """One Wine prefix, reused across sessions, with drive letters mapped onto mirror trees.

    ``with prefix.session():`` takes an exclusive lock (a second pytest session waits), creates
    the prefix if needed and removes files an earlier session left in its C: drive.
    """

    def __init__(self, wine: str, path: Path) -> None:
        self.wine = wine
        self.path = path
        self.wineserver = str(Path(wine).with_name("wineserver"))
        self._placed: list[Path] = []

    # -- environment --------------------------------------------------------------------
    def env(self, overrides: str = "", debug: str = WINEDEBUG) -> dict[str, str]:
        env = dict(os.environ)
        for var in ("WINEDLLPATH", "WINELOADER", "WINESERVER", "WINEARCH", "DISPLAY",
                    "WAYLAND_DISPLAY"):
            env.pop(var, None)
        env["WINEPREFIX"] = str(self.path)
        env["WINEDEBUG"] = debug
        env["WINEDLLOVERRIDES"] = ";".join(x for x in (BASE_OVERRIDES, overrides) if x)
        return env

    @property
    def drive_c(self) -> Path:
        return self.path / "drive_c"

    @property
    def system32(self) -> Path:
        return self.drive_c / "windows" / "system32"

    # -- life cycle ---------------------------------------------------------------------
    @contextlib.contextmanager
    def session(self) -> Iterator[WinePrefix]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.parent / f"{self.path.name}.lock"
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._ensure()
                self._clean_placed()
                yield self
            finally:
                self._clean_placed()
                for letter in "ghijklmnopqrstuvwxy":
                    link = self.path / "dosdevices" / f"{letter}:"
                    if link.is_symlink():
                        link.unlink()

    def _ensure(self) -> None:
        ready = self.path / ".torchdll-ready"
        if ready.is_file() and self.system32.is_dir():
            (self.drive_c / "windows" / "system").mkdir(exist_ok=True)
            return
        if self.path.exists():
            shutil.rmtree(self.path)
        env = self.env(debug="-all")
        subprocess.run([self.wine, "wineboot", "--init"], env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300,
                       check=False)
        # wineboot finishes in the background; wait until the prefix's server has exited.
        subprocess.run([self.wineserver, "-w"], env=env, timeout=300, check=False)
        if not self.system32.is_dir():
            raise HarnessError(f"wineboot did not create {self.system32}")
        (self.drive_c / "windows" / "system").mkdir(exist_ok=True)
        ready.write_text(json.dumps({"version": PREFIX_VERSION, "wine": wine_version(self.wine)}))

    def _clean_placed(self) -> None:
        mark = self.path / SESSION_MARK
        try:
            names = json.loads(mark.read_text())
        except (OSError, ValueError):
            names = []
        for rel in names + [str(p) for p in self._placed]:
            p = Path(rel)
            p = p if p.is_absolute() else self.drive_c / p
            with contextlib.suppress(OSError):
                p.unlink()
        self._placed = []
        with contextlib.suppress(OSError):
            mark.unlink()

    def record_placed(self, paths: Sequence[Path]) -> None:
        """Remember files written into the prefix's C: drive, to delete them later."""
        self._placed.extend(paths)
        (self.path / SESSION_MARK).write_text(json.dumps([str(p) for p in self._placed]))

    def map_drive(self, letter: str, target: Path) -> None:
        link = self.path / "dosdevices" / f"{letter.lower()}:"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path(target).resolve())

    def run(self, args: Sequence[str], out_path: Path, *, overrides: str = "",
            timeout: float = 600, debug: str = WINEDEBUG) -> int:
        """Run ``wine64 ARGS`` with stdout and stderr both going to ``out_path``.

        A file, not a pipe: the wineserver Wine starts inherits the descriptors and lives on
        for a few seconds, so a pipe would not see its end.
        """
        with open(out_path, "wb") as sink:
            proc = subprocess.run([self.wine, *args], env=self.env(overrides, debug),
                                  stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                  timeout=timeout, check=False)
        return proc.returncode

    def shutdown(self) -> None:
        """Stop this prefix's wineserver (and so every process of this prefix)."""
        subprocess.run([self.wineserver, "-k"], env=self.env(debug="-all"), timeout=60,
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def set_safe_dll_search_mode(self, value: int | None) -> None:
        """Set (or delete, with ``None``) HKLM\\...\\Session Manager\\SafeDllSearchMode."""
        key = r"HKLM\System\CurrentControlSet\Control\Session Manager"
        if value is None:
            args = ["reg", "delete", key, "/v", "SafeDllSearchMode", "/f"]
        else:
            args = ["reg", "add", key, "/v", "SafeDllSearchMode", "/t", "REG_DWORD", "/d",
                    str(value), "/f"]
        with tempfile.TemporaryDirectory() as tmp:
            self.run(args, Path(tmp) / "reg.txt", debug="-all", timeout=120)

    def read_safe_dll_search_mode(self, attempts: int = 3) -> int | None:
        """The value, or ``None`` when absent. ``reg.exe`` now and then fails to start under
        load (the same CreateProcess hiccup the plan runner retries), so an empty answer is
        asked again a few times before it counts as "absent"."""
        key = r"HKLM\System\CurrentControlSet\Control\Session Manager"
        for _ in range(attempts):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "reg.txt"
                self.run(["reg", "query", key, "/v", "SafeDllSearchMode"], out, debug="-all")
                text = out.read_text(errors="replace") if out.exists() else ""
            m = re.search(r"SafeDllSearchMode\s+REG_DWORD\s+0x([0-9a-f]+)", text, re.IGNORECASE)
            if m:
                return int(m.group(1), 16)
        return None


def light_prefix(base: WinePrefix, path: Path, drive_c: Path) -> WinePrefix:
    """A throw-away prefix whose C: drive is ``drive_c`` (a mirrored tree), sharing ``base``'s
    registry: no wineboot run, so it is ready at once and Windows paths keep their real shape.

    Wine looks for its system folder as ``C:\\windows\\system32`` with that exact case first:
    ``drive_c`` must spell it ``windows/system32`` (see docs/wine.md). The light prefix runs
    its own wineserver; call :meth:`WinePrefix.shutdown` when done.
    """
    path.mkdir(parents=True, exist_ok=True)
    for name in ("system.reg", "user.reg", "userdef.reg", ".update-timestamp"):
        shutil.copyfile(base.path / name, path / name)
    (path / "dosdevices").mkdir(exist_ok=True)
    link = path / "dosdevices" / "c:"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path(drive_c).resolve())
    return WinePrefix(base.wine, path)


# --------------------------------------------------------------------------------------------
# plans and their output
# --------------------------------------------------------------------------------------------


@dataclass
class Step:
    """One executed plan directive, with the Wine debug lines printed while it ran."""

    index: int
    op: str
    arg: str
    ok: bool
    error: int
    flags: int = 0
    modules: tuple[str, ...] = ()
    delay: tuple[Mapping[str, Any], ...] = ()
    debug: tuple[str, ...] = ()


@dataclass
class PlanRun:
    plan: str
    exit: int | None = None
    steps: list[Step] = field(default_factory=list)
    done: bool = False
    fatal: str | None = None


_DEBUG_LINE = re.compile(r"^[0-9a-f]{4}:(?:err|warn|fixme|trace):")


def parse_batch_output(text: str) -> dict[str, PlanRun]:
    """Plan path (as written in the batch list) -> what the child process printed."""
    runs: dict[str, PlanRun] = {}
    current: PlanRun | None = None
    pending: list[str] = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise HarnessError(f"unparsable loadplan output line: {line[:300]}") from exc
            if "begin" in obj:
                current = runs.setdefault(obj["begin"], PlanRun(obj["begin"]))
                pending = []
            elif "end" in obj:
                run = runs.setdefault(obj["end"], PlanRun(obj["end"]))
                run.exit = int(obj["exit"])
                current = None
                pending = []
            elif current is None:
                continue
            elif "done" in obj:
                current.done = True
            elif "fatal" in obj:
                current.fatal = str(obj["fatal"])
            else:
                current.steps.append(Step(
                    index=int(obj["step"]), op=str(obj["op"]), arg=str(obj["arg"]),
                    ok=bool(obj["ok"]), error=int(obj["error"]), flags=int(obj.get("flags", 0)),
                    modules=tuple(obj.get("modules", ())), delay=tuple(obj.get("delay", ())),
                    debug=tuple(pending)))
                pending = []
        elif current is not None and _DEBUG_LINE.match(line):
            pending.append(line)
    return runs


def parse_single_output(text: str, plan: str = "") -> PlanRun:
    """The output of ``loadplan.exe PLAN`` (no batch markers)."""
    return parse_batch_output(f'{{"begin":{json.dumps(plan)}}}\n{text}\n')[plan]


def write_batch_list(path: Path, items: Sequence[tuple[str, str]]) -> None:
    """``items``: (Windows path of the exe copy, Windows path of the plan)."""
    path.write_text("".join(f"{exe}\t{plan}\n" for exe, plan in items), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Wine's stub bindings -> the error Windows returns
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StubBinding:
    """An import Wine bound to a stub instead of failing the load.

    ``code`` is what Windows returns for the same import: 127 for a missing name, 182 for a
    missing ordinal, 126 when a forwarder names a module that cannot be loaded.
    """

    dll: str
    symbol: str
    importer: str
    code: int
    forward: str | None = None


_NO_IMPL = re.compile(
    r"No implementation for (?P<dll>.+?)\.(?P<sym>[^.\s]+) imported from L\"(?P<imp>(?:[^\"\\]|\\.)*)\"")
_FWD_MODULE = re.compile(r"module not found for forward '(?P<fwd>[^']*)' used by")
_FWD_FUNC = re.compile(r"function not found for forward '(?P<fwd>[^']*)' used by")


def _unescape(text: str) -> str:
    return text.replace("\\\\", "\\")


def stub_bindings(debug: Sequence[str]) -> list[StubBinding]:
    """The stub bindings announced in ``debug`` (Wine 8 ``import_dll`` / forwarder messages).

    A forwarder failure is printed (``err:module:find_forwarded_export``) right before the
    ``No implementation`` warning of the import that needed it; it decides the code.
    """
    out: list[StubBinding] = []
    forward: tuple[str, str] | None = None  # (kind, forwarder string)
    for line in debug:
        m = _FWD_MODULE.search(line)
        if m:
            forward = ("module", m.group("fwd"))
            continue
        m = _FWD_FUNC.search(line)
        if m:
            if forward is None or forward[0] != "module":
                forward = ("function", m.group("fwd"))
            continue
        m = _NO_IMPL.search(line)
        if not m:
            continue
        sym = m.group("sym")
        if forward is not None and forward[0] == "module":
            code = ERROR_MOD_NOT_FOUND
        elif forward is not None:
            target = forward[1].rpartition(".")[2]
            code = ERROR_INVALID_ORDINAL if target.startswith("#") else ERROR_PROC_NOT_FOUND
        else:
            code = ERROR_INVALID_ORDINAL if sym.isdigit() else ERROR_PROC_NOT_FOUND
        out.append(StubBinding(m.group("dll"), ("#" + sym) if sym.isdigit() else sym,
                               _unescape(m.group("imp")), code,
                               forward[1] if forward else None))
        forward = None
    return out


@dataclass(frozen=True)
class Outcome:
    """What a load call did, translated to Windows terms.

    ``error`` is ``None`` on success. ``codes`` is every code Windows could have returned
    (several stub bindings of different kinds in one call: Windows reports one of them, in an
    order nobody documents). ``stubbed`` says Wine really loaded the modules and bound stubs:
    the process state after this call is no longer what Windows would have.
    """

    error: int | None
    codes: frozenset[int] = frozenset()
    stubbed: bool = False
    stubs: tuple[StubBinding, ...] = ()


def windows_outcome(step: Step, relevant: str | None = None) -> Outcome:
    """The Windows result of one load step (see :class:`Outcome`).

    ``relevant`` (lower-case) keeps only stub bindings whose importer's base name starts with
    it: other processes of the prefix print module warnings too.
    """
    stubs = stub_bindings(step.debug)
    if relevant is not None:
        stubs = [s for s in stubs
                 if s.importer.replace("/", "\\").rsplit("\\", 1)[-1].lower().startswith(relevant)]
    if not step.ok:
        return Outcome(step.error, frozenset({step.error}))
    if stubs:
        codes = frozenset(s.code for s in stubs)
        return Outcome(stubs[0].code, codes, True, tuple(stubs))
    return Outcome(None)
