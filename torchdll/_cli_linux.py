"""``torchdll elf FILE`` and ``torchdll ldd FILE``: the ELF facts of a file, and what this
machine's ``ld.so`` will do to ``dlopen`` it, predicted by the model (which file each
``DT_NEEDED`` binds, by which rule, and the error if any -- like ``ldd``, plus the version and
symbol checks ``ldd`` skips, and without running anything)."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, Dict, TextIO

__all__ = ["configure_parser", "execute_elf", "execute_ldd"]


def configure_parser(sub: Any) -> None:
    elf = sub.add_parser("elf", help="print the ELF facts of a file (needed, soname, RPATH/RUNPATH, versions)")
    elf.add_argument("file")
    elf.add_argument("--symbols", action="store_true", help="also count the dynamic symbols")
    elf.add_argument("--json", action="store_true")
    ldd = sub.add_parser("ldd", help="predict what ld.so does to dlopen FILE here (rules, versions, symbols)")
    ldd.add_argument("file")
    ldd.add_argument("--lazy", action="store_true", help="RTLD_LAZY instead of RTLD_NOW")
    ldd.add_argument("--global", dest="is_global", action="store_true", help="RTLD_GLOBAL")
    ldd.add_argument("--ld-library-path", metavar="VALUE", default=None,
                     help="the LD_LIBRARY_PATH of the process (default: this one's, as it started)")
    ldd.add_argument("--json", action="store_true")


def execute_elf(args: argparse.Namespace, out: TextIO) -> int:
    from ._elf import read_elf_facts

    f = read_elf_facts(args.file, symbols=args.symbols)
    doc: Dict[str, Any] = {
        "path": f.path, "class": f.elf_class, "machine": f.machine, "type": f.type,
        "interpreter": f.interpreter, "soname": f.soname, "needed": list(f.needed),
        "rpath": list(f.rpath) if f.rpath else None, "runpath": list(f.runpath) if f.runpath else None,
        "flags": f.flags, "flags_1": f.flags_1,
        "version_needs": {n.file: list(n.versions) + [f"{w} (weak)" for w in n.weak] for n in f.version_needs},
        "version_defs": list(f.version_defs), "warnings": list(f.warnings),
    }
    if args.symbols:
        doc["undefined_symbols"] = len(f.undefined)
        doc["defined_symbols"] = len(f.defined)
    if args.json:
        out.write(json.dumps(doc, indent=2) + "\n")
        return 0
    for key, value in doc.items():
        if value in (None, [], {}):
            continue
        if isinstance(value, dict):
            out.write(f"{key}:\n")
            for k, v in value.items():
                out.write(f"  {k}: {', '.join(v)}\n")
        elif isinstance(value, list):
            out.write(f"{key}: {', '.join(map(str, value))}\n")
        else:
            out.write(f"{key}: {value}\n")
    return 0


def execute_ldd(args: argparse.Namespace, out: TextIO) -> int:
    from .ldso import RTLD_GLOBAL, RTLD_LAZY, RTLD_NOW, LdSimulator, live_context
    from ._startenv import initial_environ

    environ = dict(initial_environ() or os.environ)
    if args.ld_library_path is not None:
        environ["LD_LIBRARY_PATH"] = args.ld_library_path
    ctx = live_context(environ, loaded=[])
    sim = LdSimulator(ctx)
    flags = (RTLD_LAZY if args.lazy else RTLD_NOW) | (RTLD_GLOBAL if args.is_global else 0)
    target = args.file if "/" in args.file else os.path.join(".", args.file)
    res = sim.dlopen(os.path.abspath(target) if os.path.exists(target) else args.file, flags)
    if args.json:
        out.write(json.dumps({
            "target": res.target, "ok": res.ok, "error": res.error, "kind": res.kind,
            "loaded": [{"name": l.name, "path": l.path, "rule": l.rule.value, "needed_by": l.requester}
                       for l in res.loaded],
            "edges": [{"from": a, "name": n, "to": p, "rule": r.value} for a, n, p, r in res.edges],
        }, indent=2) + "\n")
        return 0 if res.ok else 1
    for load in res.loaded[1:] if res.loaded else ():
        out.write(f"\t{load.name} => {load.path} ({load.rule.value})\n")
    if res.ok:
        out.write(f"ok: dlopen({res.target}) succeeds here ({len(res.loaded)} objects mapped)\n")
        return 0
    out.write(f"FAILS: {res.error}\n")
    if res.failed is not None:
        for c in res.failed.candidates:
            out.write(f"\ttried {c.path} ({c.rule.value}): {c.outcome.value}\n")
    return 1
