"""A seeded, reproducible generator of loader scenarios for the Wine differential test.

A :class:`Scenario` is a small Windows tree of synthetic DLLs (written by
:mod:`torchdll._pebuild`), the process state of one program (:class:`~torchdll.model.LoadContext`:
PATH, current directory, ``SetDllDirectory``, ``SetDefaultDllDirectories``,
``AddDllDirectory`` folders, preloaded modules, SafeDllSearchMode) and a sequence of
``LoadLibraryExW`` / ``LoadLibraryW`` calls. The same scenario is fed to torchdll's model
(:func:`torchdll.closure.simulate` over a :class:`~torchdll.fsview.MirrorView`) and, as a load
plan, to ``loadplan.exe`` under Wine.

Layout. Every scenario owns ``T:\\sNNNN\\`` (``app`` holds its copy of loadplan.exe and is the
application directory; ``d0``..``d3`` are ordinary folders, one of them the current directory)
and may also put files into ``C:\\windows\\system32``, ``C:\\windows\\system`` and
``C:\\windows`` of the Wine prefix. All of its DLL names start with the scenario's token
(``xq0007a.dll``, ``xq0007b.dll``...), so scenarios never see each other's files even though
they share one tree and one System32. The mirror root given to :func:`write_tree` has ``T``
(the scenario drive) and ``C`` (a symbolic link to the prefix's ``drive_c``), so the model and
Wine read the same bytes.

What varies (all drawn from ``random.Random(f"{seed}:{index}")``):

* 2-5 module names; each with 0-3 copies in random folders (app dir, d0-d3, System32, System,
  Windows); copies export different symbols (``v<k>`` is unique to copy k, ``g`` and ordinal 7
  exist in some copies only), some are built for i386 (wrong machine), a few are not PE files;
* static imports between names (acyclic, by name and by ordinal), forwarders (to another name,
  by name or ordinal, or to a missing module), one delay-load import per scenario at most,
  ``DependentLoadFlags`` on some copies;
* PATH (order, missing folders, relative entries, blank entries), the current directory,
  ``SetDllDirectory`` (a folder or ``""``), ``AddDllDirectory`` folders and their order,
  ``SetDefaultDllDirectories``, preloaded modules, SafeDllSearchMode off;
* 1-3 calls: full paths, bare names (any case, with or without ``.dll``), relative paths,
  missing names; flags 0, 0x8, 0x1100, 0x1000, 0x900, 0x800, 0x600, 0x200, 0x400, 0x100,
  0x1008 (invalid), 0x2000, or ``LoadLibraryW``; then, in most scenarios with a delay import,
  a load of the module that has it, followed by the ``delay`` step.
"""

from __future__ import annotations

import ntpath
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from torchdll._pebuild import ExportSpec, build_pe
from torchdll.closure import LoadCall
from torchdll.model import LoadContext, Machine

DRIVE = "T"
SYS32 = "C:\\windows\\system32"
SYSDIR = "C:\\windows\\system"
WINDIR = "C:\\windows"
SYSTEM_FOLDERS = (SYS32, SYSDIR, WINDIR)

FULL_PATH_FLAGS: tuple[tuple[int, float], ...] = (
    (0x0, 3), (0x8, 2), (0x1100, 3), (0x1000, 2), (0x900, 1), (0x800, 1), (0x600, 1),
    (0x200, 0.5), (0x400, 0.5), (0x100, 0.5), (0x1008, 0.3), (0x2000, 0.3),
)
NAME_FLAGS: tuple[tuple[int, float], ...] = (
    (0x0, 4), (0x1000, 2), (0x800, 1), (0x600, 1), (0x200, 0.5), (0x400, 0.7), (0x100, 0.4),
    (0x2000, 0.4), (0x8, 0.3),
)
DEFAULT_DIRS_CHOICES = (0x1000, 0x800, 0xA00, 0xC00, 0x600, 0x1400)
DLF_CHOICES = (0x800, 0x200, 0xC00, 0x1000, 0xA00)

Export = Union[str, ExportSpec]
_ODD_IMPORTS: list[str | int] = ["g", "w", "nope", 7]
_DELAY_IMPORTS: list[str | int] = ["f", "g", "v0", 7]


@dataclass
class DllFile:
    """One file of a scenario: a synthetic DLL, or (``garbage``) a file that is not a PE."""

    path: str
    machine: Machine = Machine.AMD64
    exports: tuple[Export, ...] = ()
    imports: dict[str, list[str | int]] = field(default_factory=dict)
    delay_imports: dict[str, list[str | int]] = field(default_factory=dict)
    dependent_load_flags: int = 0
    garbage: bool = False
    timestamp: int = 0

    @property
    def name(self) -> str:
        return ntpath.basename(self.path).lower()

    def data(self) -> bytes:
        if self.garbage:
            return b"This file is named like a DLL but is not a PE image.\r\n" * 8
        return build_pe(machine=self.machine, name=ntpath.basename(self.path),
                        exports=self.exports, imports=self.imports,
                        delay_imports=self.delay_imports,
                        dependent_load_flags=self.dependent_load_flags,
                        timestamp=self.timestamp)


@dataclass
class Call:
    """One load call of the plan: ``LoadLibraryExW(target, NULL, flags)`` or ``LoadLibraryW``."""

    target: str
    flags: int = 0
    api: str = "ex"  # "ex" or "w"

    def directive(self) -> str:
        if self.api == "w":
            return f"loadw {self.target}"
        return f"load 0x{self.flags:x} {self.target}"

    def load_call(self) -> LoadCall:
        return LoadCall(self.target, 0 if self.api == "w" else self.flags)


@dataclass
class Scenario:
    index: int
    seed: int
    token: str
    root: str  # T:\sNNNN
    files: list[DllFile]
    context: LoadContext
    calls: list[Call]
    preloads: list[str] = field(default_factory=list)
    delay_module: str | None = None
    features: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        return f"s{self.index:04d}"

    @property
    def exe(self) -> str:
        return self.context.app_dir + "\\loadplan.exe"

    @property
    def safe_mode(self) -> bool:
        return self.context.safe_dll_search_mode

    def load_calls(self) -> list[LoadCall]:
        return [c.load_call() for c in self.calls]

    def plan(self) -> str:
        ctx = self.context
        lines = [f"# scenario {self.name} (seed {self.seed}): {', '.join(sorted(self.features))}",
                 "env PATH=" + ";".join(ctx.path), f"cwd {ctx.cwd}"]
        if ctx.dll_directory is not None:
            lines.append(f"setdlldir {ctx.dll_directory}".rstrip(" "))
        if ctx.default_flags is not None:
            lines.append(f"defaultdirs 0x{ctx.default_flags:x}")
        lines += [f"adddir {d}" for d in ctx.user_dirs]
        lines += [f"preload {p}" for p in self.preloads]
        lines += [c.directive() for c in self.calls]
        if self.delay_module:
            lines.append(f"delay {self.delay_module}")
        return "\n".join(lines) + "\n"

    def describe(self) -> str:
        """A readable dump for failure messages."""
        out = [self.plan().rstrip("\n"), "# files:"]
        for f in self.files:
            if f.garbage:
                out.append(f"#   {f.path}: not a PE file")
                continue
            bits = [f.machine.label]
            if f.exports:
                bits.append("exports " + ",".join(
                    e if isinstance(e, str) else
                    f"{e.name or ''}#{e.ordinal or ''}{'->' + e.forwarder if e.forwarder else ''}"
                    for e in f.exports))
            if f.imports:
                bits.append("imports " + "; ".join(f"{k}:{v}" for k, v in f.imports.items()))
            if f.delay_imports:
                bits.append("delay " + "; ".join(f"{k}:{v}" for k, v in f.delay_imports.items()))
            if f.dependent_load_flags:
                bits.append(f"DLF 0x{f.dependent_load_flags:x}")
            out.append(f"#   {f.path}: {' | '.join(bits)}")
        return "\n".join(out)


def _weighted(rng: random.Random, choices: Sequence[tuple[int, float]]) -> int:
    values = [c[0] for c in choices]
    weights = [c[1] for c in choices]
    return rng.choices(values, weights)[0]


def _random_case(rng: random.Random, text: str) -> str:
    r = rng.random()
    if r < 0.15:
        return text.upper()
    if r < 0.25:
        return "".join(c.upper() if rng.random() < 0.5 else c for c in text)
    return text


def generate(index: int, seed: int) -> Scenario:
    """Scenario number ``index`` of the run seeded with ``seed`` (independent of the others)."""
    rng = random.Random(f"{seed}:{index}")
    token = f"xq{index:04d}"
    root = f"{DRIVE}:\\s{index:04d}"
    app = root + "\\app"
    dirs = [f"{root}\\d{k}" for k in range(4)]
    features: set[str] = set()

    # -- module names and their copies -------------------------------------------------
    n_names = rng.randint(2, 5)
    letters = "abcde"[:n_names]
    names = [f"{token}{c}.dll" for c in letters]
    missing_name = f"{token}z.dll"  # never exists
    places = [app] * 2 + dirs * 3 + [SYS32] * 2 + [SYSDIR, WINDIR]
    copies: dict[str, list[DllFile]] = {}
    files: list[DllFile] = []
    stamp = 0x5F000000 + index * 64
    for k, name in enumerate(names):
        count = rng.choices([0, 1, 2, 3], [0.08, 0.37, 0.35, 0.2])[0] if k else rng.choice([1, 2, 3])
        folders: list[str] = []
        while len(folders) < count:
            place = rng.choice(places)
            if place not in folders:
                folders.append(place)
        # what every copy of this name imports (an acyclic graph: only later names)
        later = names[k + 1:]
        base_imports: dict[str, list[str | int]] = {}
        for other in later:
            if rng.random() < 0.45:
                syms: list[str | int] = [rng.choice(["f", "f", "g", "w"])]
                if rng.random() < 0.25:
                    syms.append(rng.choice([1, 7]))
                base_imports[other] = sorted(set(syms), key=str)
        if k and rng.random() < 0.06:
            base_imports[missing_name] = ["f"]
        name_copies = []
        for j, folder in enumerate(folders):
            stamp += 1
            dll = DllFile(path=f"{folder}\\{name}", timestamp=stamp)
            if rng.random() < 0.03:
                dll.garbage = True
                features.add("not-a-pe")
            else:
                if rng.random() < 0.10:
                    dll.machine = Machine.I386
                    features.add("wrong-machine")
                exports: list[Export] = ["f", f"v{j}"]
                if rng.random() < 0.6:
                    exports.append("g")
                if rng.random() < 0.5:
                    exports.append(ExportSpec(None, 7))
                if later and rng.random() < 0.4:
                    target = rng.choice(later + [missing_name] * (1 if rng.random() < 0.3 else 0))
                    what = rng.choice(["f", "f", "g", "#7", "#1", "nope"])
                    exports.append(ExportSpec("w", forwarder=f"{target[:-4]}.{what}"))
                    features.add("forwarder")
                elif rng.random() < 0.5:
                    exports.append("w")
                dll.exports = tuple(exports)
                imports = {d: list(s) for d, s in base_imports.items()}
                if imports and rng.random() < 0.2:  # this copy differs from its siblings
                    victim = rng.choice(sorted(imports))
                    if rng.random() < 0.5:
                        del imports[victim]
                    else:
                        imports[victim] = [rng.choice(_ODD_IMPORTS)]
                dll.imports = imports
                if rng.random() < 0.07:
                    dll.dependent_load_flags = rng.choice(DLF_CHOICES)
                    features.add("dependent-load-flags")
            name_copies.append(dll)
            files.append(dll)
        copies[name] = name_copies
        if any(f.imports.get(missing_name) for f in name_copies):
            features.add("missing-dependency")

    # one delay-load import at most
    delay_module = None
    candidates = [f for f in files if not f.garbage and f.machine == Machine.AMD64]
    if candidates and rng.random() < 0.2:
        host = rng.choice(candidates)
        target = rng.choice(names[1:] + [missing_name]) if len(names) > 1 else missing_name
        if ntpath.basename(host.path).lower() != target:
            host.delay_imports = {target: [rng.choice(_DELAY_IMPORTS)]}
            delay_module = host.path
            features.add("delay-import")

    # -- process state -----------------------------------------------------------------
    cwd = rng.choice(dirs)
    path_dirs = rng.sample(dirs + [app], rng.randint(0, 5))
    if rng.random() < 0.15:
        path_dirs.insert(rng.randint(0, len(path_dirs)), SYS32)
    extras = []
    if rng.random() < 0.12:
        extras.append(f"{root}\\nope")
        features.add("path-missing-dir")
    if rng.random() < 0.12:
        extras.append("..\\" + ntpath.basename(rng.choice(dirs)))
        features.add("path-relative")
    if rng.random() < 0.06:
        extras.append("")
        features.add("path-blank")
    for e in extras:
        path_dirs.insert(rng.randint(0, len(path_dirs)), e)
    safe = rng.random() >= 0.1
    if not safe:
        features.add("unsafe-search-mode")
    dll_directory: str | None = None
    r = rng.random()
    if r < 0.14:
        dll_directory = rng.choice(dirs)
        features.add("set-dll-directory")
    elif r < 0.2:
        dll_directory = ""
        features.add("set-dll-directory-empty")
    user_dirs: list[str] = []
    if rng.random() < 0.5:
        user_dirs = rng.sample(dirs + [app], rng.randint(1, 3))
        features.add("add-dll-directory")
    default_flags: int | None = None
    if rng.random() < 0.15:
        default_flags = rng.choice(DEFAULT_DIRS_CHOICES)
        features.add("default-dll-directories")

    # preloaded modules: x64 copies without static imports (they always load)
    preloads: list[str] = []
    loaded: dict[str, str] = {}
    if rng.random() < 0.3:
        pre = [f for f in files if not f.garbage and f.machine == Machine.AMD64 and not f.imports
               and not f.delay_imports]
        for f in rng.sample(pre, min(len(pre), rng.randint(1, 2))):
            if f.name not in loaded:
                loaded[f.name] = f.path
                preloads.append(f.path)
                features.add("preloaded")

    ctx = LoadContext(
        app_dir=app, system32=SYS32, system_dir=SYSDIR, windows_dir=WINDIR, cwd=cwd,
        path=tuple(path_dirs), safe_dll_search_mode=safe, dll_directory=dll_directory,
        user_dirs=tuple(user_dirs), default_flags=default_flags, loaded=loaded, known_dlls={},
    )

    # -- calls ---------------------------------------------------------------------------
    calls: list[Call] = []
    for _ in range(rng.choices([1, 2, 3], [0.45, 0.35, 0.2])[0]):
        kind = rng.choices(["full", "name", "relative", "missing"], [0.55, 0.33, 0.05, 0.07])[0]
        existing = [f for f in files]
        if kind == "full" and existing:
            f = rng.choice(existing)
            flags = _weighted(rng, FULL_PATH_FLAGS)
            target = f.path
            if rng.random() < 0.1:
                target = ntpath.join(ntpath.dirname(target), _random_case(rng, ntpath.basename(target)))
        elif kind == "relative" and existing:
            f = rng.choice([x for x in existing if x.path.startswith(root)] or existing)
            if not f.path.startswith(root):
                target, flags = f.path, 0
            else:
                # "..\\d1\\xq0007b.dll" is appended to every search folder; from any folder of
                # the scenario it names the same file
                target = "..\\" + f.path[len(root) + 1:]
                flags = rng.choice([0, 0, 0x1000])
                features.add("relative-target")
        elif kind == "missing":
            target = rng.choice([missing_name, f"{root}\\d0\\{missing_name}"])
            flags = _weighted(rng, NAME_FLAGS if "\\" not in target else FULL_PATH_FLAGS)
        else:
            target = _random_case(rng, rng.choice(names))
            if rng.random() < 0.2:
                target = target[:-4]
            flags = _weighted(rng, NAME_FLAGS)
        if flags & 0x2000:
            features.add("safe-current-dirs")
        if flags == 0x8 and "\\" not in target and default_flags is None:
            flags = 0  # LOAD_WITH_ALTERED_SEARCH_PATH + relative name: "undefined behaviour"
        api = "w" if flags == 0 and rng.random() < 0.3 else "ex"
        calls.append(Call(target, flags, api))
        if flags & 0x8 and default_flags is not None:
            features.add("altered-with-default-dirs")

    if delay_module and rng.random() < 0.8:
        # the delay step is compared with the latent edges of the last call: make that call
        # the one that maps the module with the delay import
        calls.append(Call(delay_module, rng.choice([0x0, 0x8, 0x1100])))
    return Scenario(index, seed, token, root, files, ctx, calls, preloads, delay_module,
                    frozenset(features))


def generate_many(count: int, seed: int) -> list[Scenario]:
    return [generate(i, seed) for i in range(count)]


# --------------------------------------------------------------------------------------------
# writing the tree
# --------------------------------------------------------------------------------------------


def host_path(mirror_root: Path, win_path: str) -> Path:
    """``T:\\s1\\a.dll`` -> ``<mirror_root>/T/s1/a.dll`` (``C`` is the prefix's drive_c)."""
    drive, rest = win_path[0].upper(), win_path[3:]
    return mirror_root.joinpath(drive, *[p for p in rest.split("\\") if p])


def write_tree(scenarios: Sequence[Scenario], mirror_root: Path, exe: Path,
               plan_dir: Path | None = None) -> list[Path]:
    """Write every scenario's files, exe copy and plan; return the files written below ``C``.

    Plans go to ``<mirror_root>/T/plans/<name>.txt`` (``T:\\plans\\<name>.txt``) unless
    ``plan_dir`` says otherwise.
    """
    placed: list[Path] = []
    plans = plan_dir or host_path(mirror_root, f"{DRIVE}:\\plans")
    plans.mkdir(parents=True, exist_ok=True)
    for sc in scenarios:
        for d in ["app", "d0", "d1", "d2", "d3"]:
            host_path(mirror_root, f"{sc.root}\\{d}").mkdir(parents=True, exist_ok=True)
        app_exe = host_path(mirror_root, sc.exe)
        try:
            if app_exe.exists():
                app_exe.unlink()
            app_exe.hardlink_to(exe)
        except OSError:
            app_exe.write_bytes(exe.read_bytes())
        for f in sc.files:
            target = host_path(mirror_root, f.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.data())
            if f.path[0].upper() == "C":
                placed.append(target)
        (plans / f"{sc.name}.txt").write_text(sc.plan(), encoding="utf-8")
    return placed
