"""``torchdll probe DLL``: load a DLL's closure bottom-up in a child process, report what fails.

Wired into :mod:`torchdll.cli` with :func:`configure_parser` (adds the sub-command) and
:func:`execute` (runs it, returns the exit status). The work is done by :mod:`torchdll.probe`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, Optional, TextIO

if TYPE_CHECKING:
    from .probe import ProbeBackend

__all__ = ["JSON_SCHEMA", "configure_parser", "execute"]

#: ``--json`` output: ``{"schema": JSON_SCHEMA, "schema_version": 1, "result": {...}}``.
JSON_SCHEMA = "torchdll.probe"

DESCRIPTION = """\
Load DLL with the real Windows loader in a child process (your process is not touched): first
alone (the error a caller sees), then its closure bottom-up -- leaves first, DLL last -- so the
first load that fails is the first DLL that fails by itself, with its Win32 code and the
versions of the runtime DLLs (msvcp140, vcruntime140, OpenMP) loaded at that point.
"""

EPILOG = r"""examples:
  torchdll probe C:\venv\Lib\site-packages\torch\lib\c10.dll
  torchdll probe C:\venv\Lib\site-packages\torch\_C.cp311-win_amd64.pyd --dll-dir C:\venv\Lib\site-packages\torch\lib
  torchdll probe c10.dll-path --preload C:\Qt\bin\msvcp140.dll     (reproduce a conflict)

The closure comes from torchdll's loader model on this machine (add --no-closure to load the DLL
alone). Flags default to 0x1100, what CPython and torch use.

exit status: 0 everything loads; 1 a load fails (the report says which and why); 2 the probe
cannot run here (not Windows) or bad arguments.
"""


def _flags(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r} (e.g. 0x1100)") from None


def configure_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``probe`` sub-command to ``subparsers`` (from ``add_subparsers()``)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "probe",
        help="load a DLL's closure bottom-up in a child process and report the first failure",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dll", help="full path of the DLL (or .pyd) to probe")
    p.add_argument("--flags", type=_flags, default=0x1100, help="LoadLibraryExW flags (default 0x1100)")
    p.add_argument("--dll-dir", action="append", default=[], metavar="DIR",
                   help="os.add_dll_directory(DIR) in the child first (repeatable)")
    p.add_argument("--preload", action="append", default=[], metavar="PATH",
                   help="load PATH first with flags 0 (repeatable)")
    p.add_argument("--path", metavar="VALUE", help="PATH of the child (default: inherited)")
    p.add_argument("--no-closure", action="store_true", help="load the DLL alone, no bisection")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per child (default 120)")
    p.add_argument("--json", action="store_true", help="versioned JSON")
    return p


def execute(args: argparse.Namespace, out: TextIO, *, backend: Optional[ProbeBackend] = None,
            platform: Optional[str] = None) -> int:
    """Run ``probe`` with parsed ``args``; returns the exit status. ``backend`` and
    ``platform`` (default ``sys.platform``) are seams for tests."""
    from .errors import ProbeError
    from .probe import default_backend, probe

    plat = platform if platform is not None else sys.platform
    try:
        be = backend if backend is not None else default_backend(plat)
        result = probe(args.dll, flags=args.flags, backend=be, dll_directories=args.dll_dir,
                       preload=args.preload, path=args.path,
                       closure=[args.dll] if args.no_closure else None, timeout=args.timeout)
    except ProbeError as exc:
        if args.json:
            out.write(json.dumps({"schema": JSON_SCHEMA, "schema_version": 1, "error": str(exc)}) + "\n")
        else:
            sys.stderr.write(f"torchdll probe: {exc}\n")
        return 2
    if args.json:
        out.write(json.dumps({"schema": JSON_SCHEMA, "schema_version": 1, "result": result.to_dict()},
                             indent=2, ensure_ascii=False) + "\n")
        return 0 if result.ok else 1
    out.write(result.explain() + "\n")
    if result.direct is not None:
        d = result.direct
        out.write(f"  alone: {d.name}: {'loads' if d.ok else f'fails ({d.winerror})'}\n")
    if result.steps:
        out.write(f"  bottom-up ({len(result.steps)} of {len(result.order)} loads, flags 0x{result.flags:x}):\n")
        for s in result.steps:
            out.write(f"    {'ok ' if s.ok else 'FAIL'} {s.path}" + ("" if s.ok else f"  ({s.winerror})") + "\n")
    if result.runtimes:
        out.write("  runtime DLLs loaded:\n")
        for r in result.runtimes:
            out.write(f"    {r.name} {r.file_version or '(no version)'}  {r.path}\n")
    for note in result.notes:
        out.write(f"  note: {note}\n")
    return 0 if result.ok else 1
