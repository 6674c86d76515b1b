"""``python -m torchdll`` / ``torchdll``: a thin front-end over the library.

Commands:

* ``doctor``    (the default) predict what ``import torch`` will do here, name the culprit and
                the fix; ``--snapshot FILE --root DIR`` analyses another machine; ``--demo`` a
                bundled broken Windows environment (the seed case)
* ``explain``   what ``WinError N`` means for torch and what usually causes it
* ``demo``      build the bundled broken Windows environment and show what the loader does
* ``resolve``   resolve one module name with the loader model (live, or snapshot + mirror)
* ``closure``   replay load calls of one or more DLLs and show every edge and failure
* ``pe``        print the PE facts torchdll reads from a file
* ``snapshot``  capture this machine's loader-relevant facts as JSON

Every command takes ``--json`` for tools. Exit status: 0 ok, 1 problems found (``doctor``) or a
predicted load failure (``resolve``, ``closure``), 2 bad input. ``demo`` and ``doctor --demo``
exit 0 when they ran.
"""

from __future__ import annotations

import argparse
import ntpath
import os
import sys
import tempfile
from typing import TYPE_CHECKING, Optional, Sequence, TextIO

if TYPE_CHECKING:
    from .closure import CallResult, Simulation
    from .fsview import FileView
    from .model import LoadContext, Resolution

__all__ = ["main"]

_ERRORS = {
    87: "The parameter is incorrect",
    126: "The specified module could not be found",
    127: "The specified procedure could not be found",
    182: "The operating system cannot run %1",
    193: "%1 is not a valid Win32 application",
}


def _win_error(code: Optional[int]) -> str:
    return f"[WinError {code}] {_ERRORS.get(code or 0, '')}".rstrip()


def _rule(res: "Resolution") -> str:
    return res.rule.value if res.rule else "not found"


def _print_resolution(res: "Resolution", out: TextIO, indent: str = "") -> None:
    target = res.path or _win_error(res.error)
    out.write(f"{indent}{res.name} -> {target}   [{_rule(res)}]\n")
    for cand in res.candidates:
        out.write(f"{indent}    tried {cand.path}  ({cand.rule.value}: {cand.outcome.value})\n")
    for note in res.notes:
        out.write(f"{indent}    note: {note}\n")


def _describe_failure(result: "CallResult") -> str:
    if result.culprit is None:
        if result.bad_image:
            return f"{result.bad_image} is not a valid image"
        return f"{result.call.target}: {_win_error(result.error)}"
    edge = result.culprit
    where = ntpath.basename(edge.importer)
    if edge.resolution.path is None:
        return f"{where} needs {edge.name}, which is not found ({_win_error(edge.resolution.error)})"
    missing = ", ".join(m.symbol for m in edge.missing[:3])
    more = f" and {len(edge.missing) - 3} more" if len(edge.missing) > 3 else ""
    return (f"{where} imports {missing}{more} from {edge.name}, but {edge.name} resolved to "
            f"{edge.resolution.path} [{_rule(edge.resolution)}], which does not export "
            f"{'it' if len(edge.missing) == 1 else 'them'}")


def _print_simulation(sim: "Simulation", out: TextIO, *, verbose: bool,
                      stop_at_failure: bool = False) -> None:
    for result in sim.results:
        name = ntpath.basename(result.call.target)
        status = "ok" if result.ok else f"FAILS with {_win_error(result.error)}"
        out.write(f"  LoadLibraryExW({name}, 0x{result.call.flags:x}): {status}\n")
        if not result.ok:
            out.write(f"      culprit: {_describe_failure(result)}\n")
        if verbose:
            for edge in result.edges:
                mark = " (delay)" if edge.delay else ""
                target = edge.resolution.path or _win_error(edge.resolution.error)
                out.write(f"      {ntpath.basename(edge.importer)} -> {edge.name}{mark}: {target} "
                          f"[{_rule(edge.resolution)}]\n")
        if stop_at_failure and not result.ok:
            return
    for edge in sim.latent:
        out.write(f"  latent: delay-load {edge.name} from {ntpath.basename(edge.importer)} "
                  f"would fail with {_win_error(edge.error)}\n")


# -- commands -----------------------------------------------------------------------------


def _cmd_doctor(args: argparse.Namespace, out: TextIO) -> int:
    from .diagnosis import diagnose
    from .messages import language, text
    from .report import write

    fmt = "json" if args.json else ("markdown" if args.markdown else "text")
    lang = args.lang or language()
    if args.demo == "linux":
        from .demo_linux import build_linux_demo
        from .linuxdiag import diagnose_linux

        with tempfile.TemporaryDirectory(prefix="torchdll-doctor-demo-") as root:
            report = diagnose_linux(build_linux_demo(root), source="offline",
                                    platform="linux (demo: Debian 12 x86-64, a venv with torch 2.5.1+cu124)")
            if fmt == "text":
                out.write(text("cli.demo_header_linux", lang) + "\n\n")
            write(report, fmt, out, lang=lang)
        return 0
    if args.demo:
        from .demo import build_seed_demo

        with tempfile.TemporaryDirectory(prefix="torchdll-doctor-demo-") as root:
            snap, view = build_seed_demo(root)
            report = diagnose(snap, view=view)
            if fmt == "text":
                out.write(text("cli.demo_header", lang) + "\n\n")
            write(report, fmt, out, lang=lang)
        return 0
    if args.snapshot:
        from .snapshot import Snapshot, load_offline

        if args.root:
            snap, view = load_offline(args.snapshot, args.root)
            report = diagnose(snap, view=view)
        else:
            report = diagnose(Snapshot.load(args.snapshot))
    else:
        report = diagnose()
    write(report, fmt, out, lang=lang)
    return 0 if report.ok else 1


def _cmd_explain(args: argparse.Namespace, out: TextIO) -> int:
    import json as _json

    from . import _data

    codes = _data.load("error_codes.json")["codes"]
    text = args.code.strip().lower().replace("winerror", "").strip(" []:")
    try:
        number = int(text, 0)
    except ValueError:
        number = -1
    if number & 0xFFFF0000 == 0x80070000:  # an HRESULT wrapping a Win32 error (0x800711C7 -> 4551)
        number &= 0xFFFF
    entry = codes.get(str(number))
    if entry is None:
        raise ValueError(f"unknown error code {args.code!r}; known: {', '.join(codes)}")
    catalogue = _data.findings_catalogue()
    causes = [(c, catalogue.get(c, {}).get("title", c)) for c in entry.get("causes", [])]
    if args.json:
        out.write(_json.dumps({"code": number, **entry, "causes": [
            {"id": c, "title": t} for c, t in causes]}, indent=2, ensure_ascii=False) + "\n")
        return 0
    out.write(f"WinError {number} ({entry['name']}): {entry['message']}\n\n")
    out.write(f"For torch: {entry['torch']}\n")
    if causes:
        out.write("\nUsual causes (finding ids of 'torchdll doctor'):\n")
        for cid, title in causes:
            out.write(f"  - {cid}: {title}\n")
    out.write("\nRun 'python -m torchdll doctor' to find which one applies here.\n")
    return 0


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        return _run_demo(args, args.keep, out)
    with tempfile.TemporaryDirectory(prefix="torchdll-demo-") as root:
        return _run_demo(args, root, out)


def _run_demo(args: argparse.Namespace, root: str, out: TextIO) -> int:
    from ._json import dumps
    from .closure import simulate
    from .demo import TORCH_LIB, build_demo

    env = build_demo(root)
    torch_first = simulate([*env.preload, env.plain_load], env.context, env.view)
    plugin_first = simulate([env.plain_load, *env.preload], env.context, env.view)
    if args.json:
        out.write(dumps({"torch_first": torch_first, "plugin_first": plugin_first}) + "\n")
        return 0
    out.write(
        "torchdll demo: a broken Windows environment, modelled on Linux\n"
        f"  python          {env.context.app_dir}\\python.exe (the application directory)\n"
        f"  torch           {TORCH_LIB}\n"
        "  user Path       " + "\n                  ".join(env.user_path) + "\n\n"
        "1. torch imported first: torch preloads torch\\lib\\*.dll with 0x1100 (PATH is not\n"
        "   searched); later a plugin that links c10.dll is loaded with the standard search.\n"
    )
    _print_simulation(torch_first, out, verbose=args.verbose)
    out.write(
        "\n2. the plugin imported first: its standard search walks PATH and binds the OLD\n"
        "   environment's c10.dll; when torch then preloads its DLLs, every import of c10.dll\n"
        "   binds to the module already loaded under that name -- the wrong one.\n"
    )
    _print_simulation(plugin_first, out, verbose=args.verbose, stop_at_failure=True)
    failed = next((r for r in plugin_first.results if not r.ok), None)
    if failed is not None:
        out.write(
            "\n  torch stops at the first failure and prints:\n"
            f"    OSError: {_win_error(failed.error)}. Error loading \"{failed.call.target}\" "
            "or one of its dependencies.\n"
            f"  torchdll names the culprit instead: {_describe_failure(failed)}.\n"
            "  The fix: take other environments' torch\\lib folders (and your own) off the\n"
            "  Windows Path. Run with --verbose to see every edge and the rule that chose it.\n"
        )
    return 0


def _context_from_args(args: argparse.Namespace) -> "tuple[LoadContext, FileView]":
    from dataclasses import replace

    from .fsview import MirrorView, NativeView

    if args.snapshot:
        from .snapshot import Snapshot, load_offline

        view: FileView
        if args.root:
            snap, view = load_offline(args.snapshot, args.root)
        else:
            snap, view = Snapshot.load(args.snapshot), NativeView()
        ctx = snap.load_context(user_dirs=tuple(args.user_dir or ()))
        if args.path:
            ctx = replace(ctx, path=tuple(args.path))
        return ctx, view
    if args.root:
        from .model import LoadContext

        mirror = MirrorView(args.root)
        return LoadContext(app_dir=args.app_dir or "C:\\Python", user_dirs=tuple(args.user_dir or ()),
                           path=tuple(args.path or ())), mirror
    from .snapshot import collect

    ctx = collect().load_context(user_dirs=tuple(args.user_dir or ()))
    if args.path:
        ctx = replace(ctx, path=tuple(args.path))
    return ctx, NativeView()


def _flags(text: str) -> int:
    return int(text, 0)


def _cmd_resolve(args: argparse.Namespace, out: TextIO) -> int:
    from ._json import dumps
    from .resolver import resolve

    ctx, view = _context_from_args(args)
    res = resolve(args.name, ctx, view, flags=args.flags, importer=args.importer,
                  load_dir=ntpath.dirname(args.importer) if args.importer else None)
    if args.json:
        out.write(dumps(res) + "\n")
    else:
        _print_resolution(res, out)
    return 0 if res.found else 1


def _cmd_closure(args: argparse.Namespace, out: TextIO) -> int:
    from ._json import dumps
    from .closure import dependency_closure

    ctx, view = _context_from_args(args)
    sim = dependency_closure(args.dll, ctx, view, flags=args.flags)
    if args.json:
        out.write(dumps(sim) + "\n")
    else:
        _print_simulation(sim, out, verbose=args.verbose)
    return 0 if sim.ok else 1


def _cmd_pe(args: argparse.Namespace, out: TextIO) -> int:
    from ._json import dumps
    from ._pe import read_facts

    facts = read_facts(args.file)
    if args.json:
        data = facts
        out.write(dumps(data) + "\n")
        return 0
    out.write(f"{facts.path}\n  machine {facts.machine.label}, {'DLL' if facts.is_dll else 'EXE'}, "
              f"linker {facts.linker_version[0]}.{facts.linker_version[1]}")
    if facts.rich and facts.rich.toolset:
        out.write(f", Rich toolset {facts.rich.toolset} (build {facts.rich.max_build})")
    out.write(f"\n  DependentLoadFlags 0x{facts.dependent_load_flags:x}, "
              f"signature {'present' if facts.signed else 'absent'}\n")
    if facts.version and facts.version.file_version_str:
        out.write(f"  FileVersion {facts.version.file_version_str}\n")
    out.write(f"  exports {len(facts.exports.names)} names, {len(facts.exports.ordinals)} ordinals, "
              f"{len({k for k in facts.exports.forwarders if k.startswith('#')})} forwarded\n")
    for imp in facts.imports:
        kind = "delay " if imp.delay else ""
        out.write(f"  {kind}import {imp.dll}: {len(imp.names)} names, {len(imp.ordinals)} ordinals\n")
    for warning in facts.warnings:
        out.write(f"  warning: {warning}\n")
    return 0


def _cmd_snapshot(args: argparse.Namespace, out: TextIO) -> int:
    from .snapshot import collect

    snap = collect()
    if args.output:
        snap.save(args.output)
        out.write(f"snapshot written to {args.output}\n")
    else:
        out.write(snap.to_json() + "\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="torchdll", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"torchdll {__version__}")
    sub = parser.add_subparsers(dest="command")

    doc = sub.add_parser("doctor", help="predict what 'import torch' will do and why (default)")
    doc.add_argument("--demo", nargs="?", const="windows", choices=("windows", "linux"), default=None,
                     help="diagnose a bundled broken environment (works on any OS): 'windows' (the "
                          "default: the seed case, WinError 1114) or 'linux' (a CUDA toolkit on "
                          "LD_LIBRARY_PATH shadowing pip's libnvJitLink)")
    doc.add_argument("--snapshot", metavar="FILE", help="analyse a snapshot from another machine")
    doc.add_argument("--root", metavar="DIR", help="folder mirroring the snapshot machine's drives")
    doc.add_argument("--lang", choices=("en", "ko"), default=None,
                     help="language of the text and Markdown report (default: TORCHDLL_LANG or "
                          "the locale; JSON is always English)")
    fmt = doc.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="versioned JSON (schema/report-v1.json)")
    fmt.add_argument("--markdown", action="store_true", help="Markdown to paste into an issue")

    exp = sub.add_parser("explain", help="what WinError N means for torch")
    exp.add_argument("code", help="the number, e.g. 1114 or 126")
    exp.add_argument("--json", action="store_true")

    demo = sub.add_parser("demo", help="show the loader model on a bundled broken environment")
    demo.add_argument("--keep", metavar="DIR", help="build the demo tree in DIR and keep it")
    demo.add_argument("--verbose", "-v", action="store_true", help="print every edge")
    demo.add_argument("--json", action="store_true")

    def target_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--snapshot", metavar="FILE", help="a snapshot captured by 'torchdll snapshot'")
        p.add_argument("--root", metavar="DIR", help="folder mirroring the target's drives (DIR/C/...)")
        p.add_argument("--app-dir", help="application directory (with --root and no snapshot)")
        p.add_argument("--user-dir", action="append", metavar="DIR", help="an AddDllDirectory folder")
        p.add_argument("--path", action="append", metavar="DIR", help="a PATH entry (repeatable)")
        p.add_argument("--flags", type=_flags, default=None, help="LoadLibraryExW flags, e.g. 0x1100")
        p.add_argument("--json", action="store_true")

    res = sub.add_parser("resolve", help="resolve one module name")
    res.add_argument("name")
    res.add_argument("--importer", metavar="PATH", help="Windows path of the importing module")
    target_opts(res)

    clo = sub.add_parser("closure", help="load DLLs (full Windows paths) and show their closure")
    clo.add_argument("dll", nargs="+")
    clo.add_argument("--verbose", "-v", action="store_true")
    target_opts(clo)

    pe = sub.add_parser("pe", help="print the PE facts of a file")
    pe.add_argument("file")
    pe.add_argument("--json", action="store_true")

    snap = sub.add_parser("snapshot", help="capture this machine's loader facts as JSON")
    snap.add_argument("--output", "-o", metavar="FILE")

    from . import _cli_linux, _cli_path, _cli_probe, _cli_run

    _cli_path.configure_parser(sub)
    _cli_probe.configure_parser(sub)
    _cli_run.configure_parser(sub)
    _cli_linux.configure_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None, out: Optional[TextIO] = None) -> int:
    """Run the CLI; returns the exit status."""
    from .errors import InvalidImageError, SnapshotError

    stream = out or sys.stdout
    parser = _parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    from . import _cli_linux, _cli_path, _cli_probe, _cli_run

    handlers = {"doctor": _cmd_doctor, "explain": _cmd_explain, "demo": _cmd_demo, "resolve": _cmd_resolve, "closure": _cmd_closure,
                "pe": _cmd_pe, "snapshot": _cmd_snapshot, "fix-path": _cli_path.execute,
                "probe": _cli_probe.execute, "run": _cli_run.execute,
                "elf": _cli_linux.execute_elf, "ldd": _cli_linux.execute_ldd}
    if args.command is None:
        args = parser.parse_args(["doctor"])
    if getattr(args, "flags", 0) is None:
        args.flags = 0x1100 if args.command == "closure" else 0
    try:
        return handlers[args.command](args, stream)
    except (InvalidImageError, SnapshotError, ValueError) as exc:
        sys.stderr.write(f"torchdll: error: {exc}\n")
        return 2
    except BrokenPipeError:  # pragma: no cover - e.g. piped into head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
