"""Write a scenario's tree: link-time builds, placed copies, links; then run it with dlrun.

``<root>/.link`` holds the link-time build of every library (and an empty stub for every
``DT_NEEDED`` name that is not one of the scenario's libraries, so that the name is recorded
verbatim). Every placed file is a fresh copy (its own inode) unless the scenario asks for a
symbolic or hard link.
"""

from __future__ import annotations

from pathlib import Path

from tests.support import elfbuild

from . import runner
from .scenarios import (
    CANONICAL,
    DIRS,
    HARDLINK,
    IDENTICAL,
    ROOT,
    SYMLINK,
    WRONG_CLASS,
    Lib,
    Scenario,
)


def _topo(sc: Scenario) -> list[str]:
    """Library keys, every library after the libraries it needs."""
    by_soname = {lib.soname: k for k, lib in sc.libs.items()}
    out: list[str] = []
    state: dict[str, int] = {}

    def visit(k: str) -> None:
        if state.get(k) == 2:
            return
        if state.get(k) == 1:
            raise ValueError(f"{sc.name}: DT_NEEDED cycle through {k}")
        state[k] = 1
        for name in sc.libs[k].needs:
            if name in by_soname:
                visit(by_soname[name])
        state[k] = 2
        out.append(k)

    for k in sorted(sc.libs):
        visit(k)
    return out


def _resolve(entries: list[str], root: str) -> list[str]:
    return [e.replace(ROOT, root) for e in entries]


def write(sc: Scenario, root: Path) -> dict[str, Path]:
    """Build and place everything; return key -> link-time build."""
    root_s = str(root)
    for d in DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / sc.cwd).mkdir(parents=True, exist_ok=True)
    link = root / ".link"
    link.mkdir(parents=True, exist_ok=True)
    sonames = {lib.soname for lib in sc.libs.values()}
    for lib in sc.libs.values():
        for name in lib.needs:
            if name not in sonames and not (link / name).exists():
                elfbuild.build_lib(link, name, soname=name)  # an empty stand-in, link time only
    built: dict[str, Path] = {}

    def build(lib: Lib, out_dir: Path, file_name: str, defines: list[str],
              nodes: dict[str, list[str]], marker: str = "") -> Path:
        return elfbuild.build_lib(
            out_dir, file_name, soname=None if lib.no_soname else lib.soname,
            needed=[link / n for n in lib.needs],
            rpath=_resolve(lib.rpath, root_s), runpath=_resolve(lib.runpath, root_s),
            defines=defines, uses=lib.uses, refs=lib.refs, version_script=nodes,
            nodeflib=lib.nodeflib, marker=marker)

    for k in _topo(sc):
        lib = sc.libs[k]
        built[k] = build(lib, link, lib.soname, list(lib.symbols),
                         {n: [] for n in lib.node_script})
    # files first, links after (a link may point at a file listed later)
    for f in sorted(sc.files, key=lambda f: f.kind in (SYMLINK, HARDLINK)):
        dest = root / f.rel
        lib = sc.libs[f.lib]
        if f.kind in (CANONICAL, IDENTICAL):
            elfbuild.place(built[f.lib], dest, "copy")
        elif f.kind == SYMLINK:
            elfbuild.place(root / (f.target or ""), dest, "symlink")
        elif f.kind == HARDLINK:
            elfbuild.place(root / (f.target or ""), dest, "hardlink")
        elif f.kind == WRONG_CLASS:
            elfbuild.build_lib(dest.parent, dest.name, soname=lib.soname,
                               defines=[f"qz32_{f.lib}"], m32=True)
        else:
            build(lib, dest.parent, dest.name, f.defines(lib), f.version_nodes(lib), f.kind)
    return built


def run(sc: Scenario, root: Path, dlrun: Path, debug: bool = True) -> runner.Run:
    root_s = str(root)
    return runner.run_plan(dlrun, sc.steps(root_s), cwd=root / sc.cwd,
                           ld_library_path=sc.ld_library_path(root_s), debug=debug)


def resolve_text(text: str | None, root: Path) -> str | None:
    return None if text is None else text.replace(ROOT, str(root))
