"""A CI step that fails the build when torch will not load on the machine (or snapshot) checked.

It runs :func:`torchdll.diagnose` and prints a Markdown report for the CI log; the exit code is
1 when the report predicts a load failure or has an error-severity finding, 0 otherwise (2 on
bad input). torch is never imported.

* ``python examples/ci_check.py``: this machine (on a Windows runner, after ``pip install``;
  on Linux the ld.so model replays ``import torch`` the same way);
* ``python examples/ci_check.py --snapshot FILE --root DIR``: a snapshot taken on another
  machine with ``torchdll snapshot`` and the folder mirroring its drives (``DIR/C/...``);
* ``python examples/ci_check.py --demo``: the bundled seed case (a venv whose torch 2.9 fails
  with WinError 1114), built from synthetic PE files in a temporary folder -- fails, as it should.

In GitHub Actions, also append the report to the job summary::

    - run: python examples/ci_check.py --summary "$GITHUB_STEP_SUMMARY"
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from typing import List, Optional

from torchdll.diagnosis import diagnose
from torchdll.report import Report, Severity, render_markdown


def failures(report: Report) -> List[str]:
    """Why the build fails: one line per predicted failure and per error-severity finding."""
    out = [f"{p.target} {p.version}: predicted WinError {p.winerror} on {p.dll}" if p.winerror is not None
           else f"{p.target} {p.version}: predicted {p.message}"  # Linux: the ld.so model's message
           for p in report.predictions if not p.ok]
    out += [f"{f.id}: {f.title}" for f in report.findings if f.severity is Severity.ERROR]
    return out


def run(args: argparse.Namespace) -> Report:
    if args.demo:
        from torchdll.demo import build_seed_demo

        with tempfile.TemporaryDirectory(prefix="torchdll-ci-demo-") as root:
            snap, view = build_seed_demo(root)
            return diagnose(snap, view=view)
    if args.snapshot:
        from torchdll.snapshot import Snapshot, load_offline

        if args.root:
            snap, view = load_offline(args.snapshot, args.root)
            return diagnose(snap, root=args.root, view=view)
        return diagnose(Snapshot.load(args.snapshot))
    return diagnose()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Fail a CI build when torch will not load.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--demo", action="store_true", help="check the bundled seed case")
    source.add_argument("--snapshot", metavar="FILE", help="a snapshot from 'torchdll snapshot'")
    parser.add_argument("--root", metavar="DIR", help="the folder mirroring the snapshot's drives")
    parser.add_argument("--summary", metavar="FILE", help="also append the Markdown report here")
    args = parser.parse_args(argv)
    if args.root and not args.snapshot:
        parser.error("--root needs --snapshot")
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(encoding="utf-8")  # paths may be non-ASCII; a Windows pipe is not UTF-8
    try:
        report = run(args)
    except (OSError, ValueError) as exc:  # torchdll.errors.SnapshotError is a ValueError
        print(f"ci_check: cannot read the input: {exc}", file=sys.stderr)
        return 2
    markdown = render_markdown(report)
    sys.stdout.write(markdown)
    if args.summary:
        with open(args.summary, "a", encoding="utf-8") as fh:
            fh.write(markdown + "\n")
    problems = failures(report)
    if problems:
        print("\nci_check: FAILED -- torch will not load here:")
        for line in problems:
            print(f"  - {line}")
        return 1
    if not report.predictions:
        print("\nci_check: passed (nothing to check: " + ("; ".join(report.notes) or "no torch") + ")")
    else:
        print("\nci_check: passed -- torch is predicted to load")
    return 0


if __name__ == "__main__":
    sys.exit(main())
