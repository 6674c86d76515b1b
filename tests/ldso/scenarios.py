"""A seeded, reproducible generator of ld.so scenarios, and the named torch scenarios.

A :class:`Scenario` is a small tree of synthetic shared libraries (built by
:mod:`tests.support.elfbuild`), an ``LD_LIBRARY_PATH``, a working directory and 1-3 dlopen()
calls. The same scenario is run by ``dlrun`` under the real ld.so and predicted by
``torchdll.ldso``.

Layout. A scenario owns a root folder. Its libraries live in ``lib``, ``d0``, ``d1``,
``d2``, ``d0/sub``, ``llp0``, ``llp1``, ``cwd`` (the working directory of the run, which
is what an empty search-path entry means) and ``plat/<value>`` (for ``$PLATFORM`` / ``$LIB``
entries); ``.link`` holds the link-time builds (never on a search path). Paths are written with the placeholder ``@ROOT@`` and resolved by
:meth:`Scenario.resolve` when the tree is written.

What varies (all drawn from ``random.Random(f"{seed}:{index}")``):

* 2-8 libraries ``libqz<k>.so.1`` with a ``DT_SONAME``; version nodes (``QZ<K>_1.0`` style
  or named after the soname, like NVIDIA's ``libnvJitLink.so.12``), default (``@@``),
  hidden (``@``) and unversioned definitions; ``DT_NEEDED`` edges to later libraries (an
  acyclic graph), to system libraries (``libm.so.6`` from the cache; a library that is in a
  system directory but not in the cache, found by the session) and to names that exist
  nowhere;
* uses of the needed libraries' symbols (versioned or not) through the PLT (bound lazily
  under ``RTLD_LAZY``) or by address (bound at load time whatever the mode), and unversioned
  uses of a library that is *not* needed (satisfied only by an earlier ``RTLD_GLOBAL``
  dlopen);
* ``DT_RPATH`` or ``DT_RUNPATH`` (``$ORIGIN``, ``$ORIGIN/../lib``, ``${ORIGIN}``, absolute
  and nonexistent folders, empty entries), ``-z nodefaultlib``;
* rarely: a library without ``DT_SONAME``; a ``$PLATFORM`` or ``$LIB`` entry with copies in
  every folder it may expand to (``plat/x86_64``, ``plat/haswell``, ...);
* 1-3 placements per library: the link-time build, identical copies (another inode),
  shadowing copies missing a symbol (its version node kept: NVIDIA's toolkit-vs-wheel
  mismatch), missing a version node, without any symbol versioning, a wrong-class
  (ELFCLASS32) copy, symbolic and hard links, copies in ``glibc-hwcaps/x86-64-v2`` or
  ``tls`` subfolders, a file name that differs from the soname;
* ``LD_LIBRARY_PATH`` with 0-3 entries (tree folders, shadow folders, a nonexistent one, a
  relative one, an empty one);
* 1-3 calls: ``dlopen(path | name, RTLD_NOW | RTLD_LAZY, RTLD_GLOBAL | RTLD_LOCAL)`` of
  placed files (also through a relative path), sonames, missing names, a system library,
  and repeats.

LD_DEBUG labels (``tests/ldso/ldebug.py``) name the list that first created a directory
entry, so the generator keeps the expanded strings of ``DT_RPATH`` entries apart from those
of ``LD_LIBRARY_PATH`` and ``DT_RUNPATH`` entries (by spelling an entry ``X/.`` when its plain
spelling is taken), and uses an empty entry in one kind of list only.
"""

from __future__ import annotations

import os
import posixpath
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

ROOT = "@ROOT@"

#: folders of a generated scenario (relative to its root); "cwd" is the working directory
DIRS = ("lib", "d0", "d1", "d2", "d0/sub", "llp0", "llp1", "cwd")
HOME_DIRS = ("lib", "d0", "d1", "d2", "d0/sub")
SHADOW_DIRS = ("llp0", "llp1", "d1", "d2", "cwd", "lib")

#: system libraries a scenario may need or dlopen
SYSTEM_CACHED = "libm.so.6"  # in /etc/ld.so.cache on every glibc system
#: stands for a library found in a system directory but not in the cache when the session
#: found one (``conftest.uncached_system_lib``); else this name, which exists nowhere
SYSTEM_UNCACHED = "libqznosys.so.9"
MISSING = "libqzmissing.so.3"

#: where copies for ``$PLATFORM`` / ``$LIB`` entries go (under ``plat/``): the x86-64 values
#: ld.so may use (AT_PLATFORM "x86_64", or "haswell" / "xeon_phi" that glibc derives from the
#: CPU; ``$LIB``: the multiarch folder, lib64, lib)
PLATFORM_DIRS = ("x86_64", "haswell", "xeon_phi")
LIB_DIRS = ("lib/x86_64-linux-gnu", "lib64", "lib")

FLAG_CHOICES = (("now", 3.0), ("lazy", 2.0))
SCOPE_CHOICES = (("local", 2.0), ("global", 1.5))

#: kinds of placed files
CANONICAL = "canonical"  # the link-time build, copied
IDENTICAL = "identical"  # the same bytes again (a separate inode)
MISSING_SYMBOL = "missing-symbol"  # one defined symbol dropped, its version node kept
MISSING_NODE = "missing-node"  # one version node dropped with all its symbols
UNVERSIONED = "unversioned"  # the same symbols, no symbol versioning at all
WRONG_CLASS = "wrong-class"  # an ELFCLASS32 object with the same soname
SYMLINK = "symlink"
HARDLINK = "hardlink"


@dataclass
class Lib:
    """One synthetic library (what its link-time build contains)."""

    key: str
    soname: str
    symbols: list[str]  # "f@@V" default, "f@V" hidden, "f" unversioned
    needs: list[str] = field(default_factory=list)  # DT_NEEDED names, in order
    uses: list[str] = field(default_factory=list)  # called through the PLT
    refs: list[str] = field(default_factory=list)  # referenced by address
    rpath: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)
    nodeflib: bool = False
    node_script: dict[str, list[str]] = field(default_factory=dict)  # extra (empty) nodes
    no_soname: bool = False  # built without DT_SONAME (``soname`` is then only its file name)

    @property
    def nodes(self) -> list[str]:
        out: list[str] = list(self.node_script)
        for s in self.symbols:
            if "@" in s:
                node = s.split("@")[-1]
                if node not in out:
                    out.append(node)
        return out


@dataclass
class Placed:
    """One file of the tree: a build of a library (possibly altered) or a link to another."""

    rel: str  # path relative to the scenario root
    lib: str  # key of the library
    kind: str = CANONICAL
    drop_symbols: tuple[str, ...] = ()
    drop_nodes: tuple[str, ...] = ()
    target: str | None = None  # symlink / hardlink: rel of the file it points to

    def defines(self, lib: Lib) -> list[str]:
        out = []
        for s in lib.symbols:
            name = s.split("@")[0]
            node = s.split("@")[-1] if "@" in s else None
            if name in self.drop_symbols or (node is not None and node in self.drop_nodes):
                continue
            if self.kind == UNVERSIONED:
                s = name
            out.append(s)
        return out

    def version_nodes(self, lib: Lib) -> dict[str, list[str]]:
        if self.kind == UNVERSIONED:
            return {}
        return {n: [] for n in lib.nodes if n not in self.drop_nodes}


@dataclass
class Call:
    target: str  # a path (with @ROOT@, or relative to the working directory) or a name
    flags: str  # "now,global" ...

    def step(self, root: str) -> str:
        return f"{self.flags} {self.target.replace(ROOT, root)}"

    @property
    def mode(self) -> int:
        mode = os.RTLD_NOW if "now" in self.flags.split(",") else os.RTLD_LAZY
        if "global" in self.flags.split(","):
            mode |= os.RTLD_GLOBAL
        return mode


@dataclass
class Scenario:
    index: int
    seed: str
    name: str
    libs: dict[str, Lib]
    files: list[Placed]
    llp: list[str]  # LD_LIBRARY_PATH entries (None: unset when empty list and llp_unset)
    cwd: str  # relative to the root
    calls: list[Call]
    features: frozenset[str] = frozenset()
    expect: list[str | None] | None = None  # named scenarios: dlerror() per call
    note: str = ""

    def ld_library_path(self, root: str) -> str | None:
        if not self.llp:
            return None
        return ":".join(e.replace(ROOT, root) for e in self.llp)

    def steps(self, root: str) -> list[str]:
        return [c.step(root) for c in self.calls]

    def lib_of_soname(self, soname: str) -> Lib | None:
        for lib in self.libs.values():
            if lib.soname == soname:
                return lib
        return None

    def describe(self) -> str:
        out = [f"# scenario {self.name} (seed {self.seed}): {', '.join(sorted(self.features))}"]
        if self.note:
            out.append(f"# {self.note}")
        out.append(f"# LD_LIBRARY_PATH={':'.join(self.llp) if self.llp else '(unset)'}  "
                   f"cwd={self.cwd}")
        for k in sorted(self.libs):
            lib = self.libs[k]
            bits = [f"soname {lib.soname}", "defines " + ",".join(lib.symbols)]
            if lib.needs:
                bits.append("needs " + ",".join(lib.needs))
            if lib.uses:
                bits.append("uses " + ",".join(lib.uses))
            if lib.refs:
                bits.append("refs " + ",".join(lib.refs))
            if lib.rpath:
                bits.append("RPATH " + ":".join(lib.rpath))
            if lib.runpath:
                bits.append("RUNPATH " + ":".join(lib.runpath))
            if lib.nodeflib:
                bits.append("nodeflib")
            if lib.no_soname:
                bits.append("no DT_SONAME")
            out.append(f"#   lib {k}: " + " | ".join(bits))
        for f in self.files:
            extra = ""
            if f.drop_symbols:
                extra += " without " + ",".join(f.drop_symbols)
            if f.drop_nodes:
                extra += " without nodes " + ",".join(f.drop_nodes)
            if f.target:
                extra += f" -> {f.target}"
            out.append(f"#   file {f.rel}: {f.kind} of {f.lib}{extra}")
        for c in self.calls:
            out.append(f"dlopen {c.flags} {c.target}")
        return "\n".join(out)


# --------------------------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------------------------


def _weighted(rng: random.Random, choices: Sequence[tuple[str, float]]) -> str:
    return rng.choices([c[0] for c in choices], [c[1] for c in choices])[0]


def _origin_entry(from_dir: str, to_dir: str, rng: random.Random) -> str:
    rel = posixpath.relpath(to_dir, from_dir)
    base = "${ORIGIN}" if rng.random() < 0.08 else "$ORIGIN"
    return base if rel == "." else f"{base}/{rel}"


def _expand(entry: str, origin: str) -> str:
    return entry.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)


def _respell(entry: str) -> str:
    """The same folder under another string (``X`` -> ``X/.``)."""
    return entry + "/." if entry else entry


def generate(index: int, seed: object, syslib: str | None = None) -> Scenario:
    """Scenario number ``index`` of the run seeded with ``seed`` (independent of the others).

    ``syslib``: the base name of a library in a system directory that is not in
    ``/etc/ld.so.cache`` (machine-specific, found by the session); the scenarios draw the
    same random numbers with or without it."""
    rng = random.Random(f"{seed}:{index}")
    uncached = syslib or SYSTEM_UNCACHED
    features: set[str] = set()
    n = rng.randint(2, 8)
    keys = "abcdefgh"[:n]
    libs: dict[str, Lib] = {}

    # -- libraries, their symbols and version nodes ------------------------------------
    for k in keys:
        soname = f"libqz{k}.so.1"
        style = rng.random()
        symbols: list[str] = []
        if style < 0.25:  # no versioning at all
            symbols = [f"qz{k}_f", f"qz{k}_g", f"qz{k}_u"]
        elif style < 0.45:  # one node named after the soname (NVIDIA style)
            symbols = [f"qz{k}_f@@{soname}", f"qz{k}_g@@{soname}", f"qz{k}_u"]
        else:
            v1, v2 = f"QZ{k.upper()}_1.0", f"QZ{k.upper()}_2.0"
            symbols = [f"qz{k}_f@@{v1}", f"qz{k}_g@@{v2}", f"qz{k}_u"]
            if rng.random() < 0.3:
                symbols.append(f"qz{k}_old@QZ{k.upper()}_0.9")  # hidden version
                features.add("hidden-version")
        libs[k] = Lib(k, soname, symbols)

    # -- edges -----------------------------------------------------------------------------
    for i, k in enumerate(keys):
        lib = libs[k]
        for other in keys[i + 1:]:
            if rng.random() < 0.45:
                lib.needs.append(libs[other].soname)
                dep = libs[other]
                picks = rng.sample(dep.symbols, rng.randint(1, 2))
                for s in picks:
                    name = s.split("@")[0]
                    ver = s.split("@")[-1] if "@" in s else None
                    spec = name if ver is None else f"{name}@{ver}"
                    if rng.random() < 0.25:
                        lib.refs.append(spec)
                        features.add("address-ref")
                    else:
                        lib.uses.append(spec)
        r = rng.random()
        if r < 0.02:
            lib.needs.append(MISSING)
            features.add("missing-lib")
        elif r < 0.1:
            lib.needs.append(SYSTEM_CACHED)
            features.add("needs-system-lib")
        elif r < 0.13:
            lib.needs.append(uncached)
            features.add("needs-uncached-system-lib")
        if rng.random() < 0.07:
            lib.nodeflib = True
            features.add("nodeflib")
    # a use of a library that is not needed (satisfied by an RTLD_GLOBAL dlopen, or not)
    if n >= 2 and rng.random() < 0.25:
        user, provider = rng.sample(list(keys), 2)
        if libs[provider].soname not in libs[user].needs:
            libs[user].uses.append(f"qz{provider}_u")
            features.add("global-symbol")

    # -- placements ------------------------------------------------------------------------
    files: list[Placed] = []
    homes: dict[str, str] = {}  # key -> folder of the canonical copy
    for k in keys:
        home = rng.choice(HOME_DIRS)
        homes[k] = home
        lib = libs[k]
        if rng.random() < 0.12:  # real file libqzk.so.1.2.3, soname-named symlink
            real = f"{home}/libqz{k}.so.1.2.3"
            files.append(Placed(real, k))
            files.append(Placed(f"{home}/{lib.soname}", k, SYMLINK, target=real))
            features.add("versioned-file-name")
        else:
            files.append(Placed(f"{home}/{lib.soname}", k))
        for _ in range(rng.choices([0, 1, 2], [0.45, 0.4, 0.15])[0]):
            folder = rng.choice([d for d in SHADOW_DIRS if d != home])
            rel = f"{folder}/{lib.soname}"
            if any(f.rel == rel for f in files):
                continue
            kind = rng.choices(
                [IDENTICAL, MISSING_SYMBOL, MISSING_NODE, UNVERSIONED, WRONG_CLASS, SYMLINK,
                 HARDLINK],
                [0.18, 0.25, 0.2, 0.04, 0.13, 0.1, 0.1])[0]
            p = Placed(rel, k, kind)
            # mostly drop what a dependent really uses
            used = [s for other in libs.values() for s in other.uses + other.refs
                    if s.split("@")[0].startswith(f"qz{k}_")]
            victim = rng.choice(used) if used and rng.random() < 0.8 else rng.choice(lib.symbols)
            victim_node = victim.split("@")[-1] if "@" in victim else None
            if kind == MISSING_NODE and victim_node is None:
                victim_node = rng.choice(lib.nodes) if lib.nodes else None
            if kind == MISSING_SYMBOL or (kind == MISSING_NODE and victim_node is None):
                p.kind = MISSING_SYMBOL
                p.drop_symbols = (victim.split("@")[0],)
            elif kind == MISSING_NODE:
                p.drop_nodes = (victim_node,)
            elif kind in (SYMLINK, HARDLINK):
                p.target = next(f.rel for f in files if f.lib == k and f.kind == CANONICAL)
            if rng.random() < 0.1 and kind not in (SYMLINK, HARDLINK):
                sub = rng.choice(["glibc-hwcaps/x86-64-v2", "tls"])
                p.rel = f"{folder}/{sub}/{lib.soname}"
                features.add("hwcaps-subdir")
            features.add(f"copy-{p.kind}")
            files.append(p)

    # -- search paths ----------------------------------------------------------------------
    def dep_dirs(lib: Lib) -> list[str]:
        out = []
        for name in lib.needs:
            dep = next((d for d in libs.values() if d.soname == name), None)
            if dep is not None:
                out.append(homes[dep.key])
        return out

    empty_owner: str | None = rng.choice([None, None, None, "rpath", "runpath", "llp"])
    for k in keys:
        lib = libs[k]
        r = rng.random()
        if r < 0.4:
            kind = "rpath"
        elif r < 0.75:
            kind = "runpath"
        else:
            continue
        entries: list[str] = []
        targets = dep_dirs(lib)
        for d in targets:
            if rng.random() < 0.85:
                if rng.random() < 0.75:
                    entries.append(_origin_entry(homes[k], d, rng))
                else:
                    entries.append(f"{ROOT}/{d}")
                    features.add(f"{kind}-absolute")
        if rng.random() < 0.25:
            entries.insert(rng.randint(0, len(entries)), f"{ROOT}/nope")
            features.add(f"{kind}-nonexistent")
        if rng.random() < 0.2:
            extra = rng.choice(SHADOW_DIRS)
            entries.insert(rng.randint(0, len(entries)), _origin_entry(homes[k], extra, rng))
        if empty_owner == kind and rng.random() < 0.5:
            entries.insert(rng.randint(0, len(entries)), "")
            features.add(f"{kind}-empty-entry")
        if not entries:
            entries = [_origin_entry(homes[k], rng.choice(HOME_DIRS), rng)]
        # dedupe, keep order
        seen: list[str] = []
        for e in entries:
            if e not in seen:
                seen.append(e)
        if kind == "rpath":
            lib.rpath = seen
        else:
            lib.runpath = seen
        features.add(kind)

    llp: list[str] = []
    shadow_dirs = sorted({posixpath.dirname(f.rel).split("/glibc-hwcaps")[0].split("/tls")[0]
                          for f in files if f.kind != CANONICAL})
    home_dirs = sorted(set(homes.values()))
    for _ in range(rng.choices([0, 1, 2, 3], [0.25, 0.3, 0.3, 0.15])[0]):
        r = rng.random()
        if r < 0.3:
            entry = f"{ROOT}/{rng.choice(home_dirs)}"
        elif r < 0.75:
            entry = f"{ROOT}/{rng.choice(shadow_dirs or home_dirs)}"
        elif r < 0.83:
            entry = f"{ROOT}/nope-llp"
            features.add("llp-nonexistent")
        elif r < 0.91:
            entry = posixpath.relpath(rng.choice(shadow_dirs + home_dirs), "cwd")
            features.add("llp-relative")
        else:
            if empty_owner != "llp":
                continue
            entry = ""
            features.add("llp-empty-entry")
        if entry not in llp:
            llp.append(entry)
    # most dependencies should be findable: add a way to the ones that are not (mostly)
    for k in keys:
        lib = libs[k]
        own = lib.rpath or lib.runpath
        reach = {posixpath.normpath(posixpath.join(homes[k], _expand(e, ".")))
                 for e in own if "ORIGIN" in e}
        reach |= {e[len(ROOT) + 1:] for e in own + llp if e.startswith(ROOT + "/")}
        for d in dep_dirs(lib):
            if d in reach or rng.random() < 0.2:
                continue
            if own and rng.random() < 0.6:
                own.append(_origin_entry(homes[k], d, rng))
            elif len(llp) < 3:
                llp.append(f"{ROOT}/{d}")
            reach.add(d)
    if llp:
        features.add("ld-library-path")

    # -- rarer features, from their own random stream (the rest stays as it was) ------------
    extra = random.Random(f"{seed}:{index}:extra")
    for k in keys:
        if extra.random() < 0.05:
            libs[k].no_soname = True
            features.add("no-soname")
    if n >= 2 and extra.random() < 0.1:
        users = [u for u in keys if any(libs[x].soname in libs[u].needs for x in keys)]
        if users:
            u = extra.choice(users)
            k = extra.choice([x for x in keys if libs[x].soname in libs[u].needs])
            token = extra.choice(["$PLATFORM", "${PLATFORM}", "$LIB"])
            for sub in PLATFORM_DIRS if "PLATFORM" in token else LIB_DIRS:
                files.append(Placed(f"plat/{sub}/{libs[k].soname}", k, IDENTICAL))
            entry = f"{_origin_entry(homes[u], 'plat', extra)}/{token}"
            if libs[u].runpath:
                libs[u].runpath.insert(0, entry)
            else:
                libs[u].rpath.insert(0, entry)
            features.add("lib-token" if token == "$LIB" else "platform-token")
    for k in keys:  # a DT_RPATH/DT_RUNPATH that is the empty string (ld.so ignores it)
        lib = libs[k]
        if (lib.rpath or lib.runpath) and extra.random() < 0.04:
            if lib.rpath:
                lib.rpath = [""]
            else:
                lib.runpath = [""]
            features.add("empty-path-string")

    _separate_labels(libs, files, llp)

    # -- calls -----------------------------------------------------------------------------
    calls: list[Call] = []
    placed = [f for f in files]
    for j in range(rng.choices([1, 2, 3], [0.45, 0.35, 0.2])[0]):
        flags = f"{_weighted(rng, FLAG_CHOICES)},{_weighted(rng, SCOPE_CHOICES)}"
        r = rng.random()
        if j == 0 and r < 0.75 or r < 0.45:
            # a placed file of a library with dependencies, by absolute path
            pool = [f for f in placed if libs[f.lib].needs] or placed
            if j == 0:
                pool = [f for f in pool if f.lib == keys[0]] or pool
            f = rng.choice(pool)
            if rng.random() < 0.07:
                target = posixpath.relpath(f.rel, "cwd")
                features.add("dlopen-relative-path")
            else:
                target = f"{ROOT}/{f.rel}"
        elif r < 0.8:
            target = libs[rng.choice(list(keys))].soname
            features.add("dlopen-by-name")
        elif r < 0.84:
            target = MISSING
            features.add("dlopen-missing")
        elif r < 0.92:
            target = rng.choice([SYSTEM_CACHED, uncached])
            features.add("dlopen-system")
        elif calls:
            target = rng.choice(calls).target
            features.add("dlopen-repeat")
        else:
            target = f"{ROOT}/{placed[0].rel}"
        calls.append(Call(target, flags))
    if extra.random() < 0.08:  # a system library the process has (libc) or not (libdl)
        at = extra.randint(0, len(calls))
        calls.insert(at, Call(extra.choice(["libc.so.6", "libdl.so.2"]),
                              f"{_weighted(extra, FLAG_CHOICES)},{_weighted(extra, SCOPE_CHOICES)}"))
        features.add("dlopen-system")
        if len(calls) > 3:
            calls.pop()
    if any("global" in c.flags for c in calls[:-1]):
        features.add("rtld-global-before")
    return Scenario(index, str(seed), f"s{index:04d}", libs, files, llp, "cwd", calls,
                    frozenset(features))


def _separate_labels(libs: dict[str, Lib], files: list[Placed], llp: list[str]) -> None:
    """Re-spell DT_RPATH entries whose expanded string another kind of list also produces.

    Origins considered: every folder that holds a file, and every expanded search-path
    string (a library found through ``$ORIGIN/../lib`` has ``d0/../lib`` as its origin),
    two rounds deep -- an over-approximation: re-spelling costs nothing.
    """
    origins: set[str] = {f"{ROOT}/{posixpath.dirname(f.rel)}" for f in files}
    cwd = f"{ROOT}/cwd"

    def expansions(entries: list[str], extra: set[str]) -> set[str]:
        out: set[str] = set()
        for e in entries:
            if "ORIGIN" in e:
                out |= {_expand(e, o) for o in extra}
            else:
                out.add(e)
        return out

    for _ in range(2):
        more: set[str] = set()
        for lib in libs.values():
            for e in expansions(lib.rpath + lib.runpath, origins):
                if e and e.startswith(ROOT):
                    more.add(e)
        origins |= more
    llp_strings = {e if e.startswith(ROOT) or not e else posixpath.join(cwd, e) for e in llp}
    llp_strings |= set(llp)
    runpath_strings: set[str] = set()
    for lib in libs.values():
        runpath_strings |= expansions(lib.runpath, origins)
    taken = llp_strings | runpath_strings
    for lib in libs.values():
        if not lib.rpath:
            continue
        fixed: list[str] = []
        for e in lib.rpath:
            spelled = e
            for _ in range(3):
                if expansions([spelled], origins) & taken and spelled:
                    spelled = _respell(spelled)
                else:
                    break
            if spelled == "" and "" in taken:
                continue  # an empty entry in one kind of list only
            fixed.append(spelled)
        lib.rpath = fixed or [f"{ROOT}/nope-rpath"]


def generate_many(count: int, seed: object, syslib: str | None = None) -> list[Scenario]:
    return [generate(i, seed, syslib) for i in range(count)]


# --------------------------------------------------------------------------------------------
# named scenarios: the torch causes
# --------------------------------------------------------------------------------------------

NVJIT = "libnvJitLink.so.12"
SP = "site-packages/nvidia"


def cause37(with_toolkit_on_llp: bool = True) -> Scenario:
    """Cause 37: libcusparse.so.12 (wheel) needs ``__nvJitLinkComplete_12_4`` in version
    ``libnvJitLink.so.12``; the wheel's libnvJitLink.so.12 defines it, a CUDA 12.1 toolkit
    copy on LD_LIBRARY_PATH defines the node but not the symbol. cusparse finds nvJitLink
    through its DT_RUNPATH, which comes after LD_LIBRARY_PATH: the toolkit copy wins."""
    libs = {
        "j": Lib("j", NVJIT, ["__nvJitLinkCreate_12_1@@" + NVJIT,
                              "__nvJitLinkComplete_12_4@@" + NVJIT]),
        "s": Lib("s", "libcusparse.so.12", ["cusparseCreate"], needs=[NVJIT],
                 uses=["__nvJitLinkCreate_12_1@" + NVJIT, "__nvJitLinkComplete_12_4@" + NVJIT],
                 runpath=["$ORIGIN/../../nvjitlink/lib"]),
    }
    files = [
        Placed(f"{SP}/nvjitlink/lib/{NVJIT}", "j"),
        Placed(f"{SP}/cusparse/lib/libcusparse.so.12", "s"),
        Placed(f"cuda-12.1/lib64/{NVJIT}", "j", MISSING_SYMBOL,
               drop_symbols=("__nvJitLinkComplete_12_4",)),
    ]
    llp = [f"{ROOT}/cuda-12.1/lib64"] if with_toolkit_on_llp else []
    target = f"{ROOT}/{SP}/cusparse/lib/libcusparse.so.12"
    expect: list[str | None] = [
        f"{target}: undefined symbol: __nvJitLinkComplete_12_4, version {NVJIT}"
        if with_toolkit_on_llp else None]
    return Scenario(-37, "named", "cause37" + ("" if with_toolkit_on_llp else "-fixed"), libs,
                    files, llp, "cwd", [Call(target, "now,global")],
                    frozenset({"named", "cause-37"}), expect,
                    "a CUDA toolkit libnvJitLink on LD_LIBRARY_PATH shadows the wheel's")


def cause38() -> Scenario:
    """Cause 38: a torch library needs ``libcudart.so.12`` and no copy exists anywhere."""
    libs = {"t": Lib("t", "libtorch_cuda.so", ["torch_cuda_init"], needs=["libcudart.so.12"],
                     rpath=["$ORIGIN/../../nvidia/cuda_runtime/lib", "$ORIGIN"])}
    files = [Placed("site-packages/torch/lib/libtorch_cuda.so", "t")]
    target = f"{ROOT}/site-packages/torch/lib/libtorch_cuda.so"
    return Scenario(-38, "named", "cause38", libs, files, [], "cwd",
                    [Call(target, "now,global")], frozenset({"named", "cause-38"}),
                    ["libcudart.so.12: cannot open shared object file: No such file or directory"],
                    "the CUDA runtime is nowhere: not beside torch, not on any path")


GLIBCXX_OLD = [f"GLIBCXX_3.4.{i}" if i else "GLIBCXX_3.4" for i in range(30)]


def cause39(fixed: bool = False) -> Scenario:
    """Cause 39: an old ``libstdc++.so.6`` (GLIBCXX_3.4 .. 3.4.29) on LD_LIBRARY_PATH, a
    library that needs ``GLIBCXX_3.4.30``: "version `GLIBCXX_3.4.30' not found"."""
    new_nodes = GLIBCXX_OLD + ["GLIBCXX_3.4.30"]
    libs = {
        "c": Lib("c", "libstdc++.so.6", ["tdl_cxx_old@@GLIBCXX_3.4",
                                         "tdl_cxx_new@@GLIBCXX_3.4.30"],
                 node_script={n: [] for n in new_nodes}),
        "t": Lib("t", "libtorch_cpu.so", ["torch_cpu_init"], needs=["libstdc++.so.6"],
                 uses=["tdl_cxx_old@GLIBCXX_3.4", "tdl_cxx_new@GLIBCXX_3.4.30"],
                 rpath=["$ORIGIN"]),
    }
    files = [
        Placed("site-packages/torch/lib/libtorch_cpu.so", "t"),
        Placed("old-gcc/lib64/libstdc++.so.6", "c", MISSING_NODE,
               drop_nodes=("GLIBCXX_3.4.30",)),
    ]
    if fixed:
        files.append(Placed("new-gcc/lib64/libstdc++.so.6", "c"))
    llp = [f"{ROOT}/{'new-gcc' if fixed else 'old-gcc'}/lib64"]
    target = f"{ROOT}/site-packages/torch/lib/libtorch_cpu.so"
    expect: list[str | None] = [None if fixed else (
        f"{ROOT}/old-gcc/lib64/libstdc++.so.6: version `GLIBCXX_3.4.30' not found "
        f"(required by {target})")]
    return Scenario(-39, "named", "cause39" + ("-fixed" if fixed else ""), libs, files, llp,
                    "cwd", [Call(target, "now,global")], frozenset({"named", "cause-39"}),
                    expect, "an old libstdc++.so.6 on LD_LIBRARY_PATH shadows the system one")


def named() -> list[Scenario]:
    return [cause37(), cause37(False), cause38(), cause39(), cause39(True)]
