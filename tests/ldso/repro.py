"""Rebuild one scenario by hand, run it with the real ld.so and with the model, print both.

    python -m tests.ldso.repro SEED INDEX [--dir DIR] [--syslib NAME] [--debug]
    python -m tests.ldso.repro named cause37 [--dir DIR]

The tree stays in DIR (default: a new temporary folder) for re-running ``dlrun`` by hand: the
printed command line and environment reproduce the run exactly. ``--syslib`` must name the
same uncached system library the session used (its failure message shows the scenario, with
the name) for scenarios that need one.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from . import differential, runner, scenarios, tree


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.ldso.repro")
    ap.add_argument("seed", help="the seed, or 'named'")
    ap.add_argument("index", help="the scenario index, or a named scenario's name")
    ap.add_argument("--dir", help="build the tree here (default: a temporary folder)")
    ap.add_argument("--syslib", help="the uncached system library of the session")
    ap.add_argument("--debug", action="store_true", help="print ld.so's LD_DEBUG output")
    args = ap.parse_args(argv)
    if args.seed == "named":
        found = [sc for sc in scenarios.named() if sc.name == args.index]
        if not found:
            ap.error(f"no named scenario {args.index!r}: "
                     f"{', '.join(sc.name for sc in scenarios.named())}")
        sc = found[0]
    else:
        sc = scenarios.generate(int(args.index), args.seed, args.syslib)
    base = Path(args.dir or tempfile.mkdtemp(prefix="ldso-repro-")).resolve()
    dlrun = runner.build_dlrun(base / "bin")
    root = base / sc.name
    root.mkdir(parents=True, exist_ok=True)
    tree.write(sc, root)
    run = tree.run(sc, root, dlrun)
    print(sc.describe().replace(scenarios.ROOT, str(root)))
    llp = sc.ld_library_path(str(root))
    print(f"\n# run: cd {shlex.quote(run.cwd)} && "
          + (f"LD_LIBRARY_PATH={shlex.quote(llp)} " if llp is not None else "")
          + "LC_ALL=C " + " ".join(shlex.quote(a) for a in run.argv))
    for c in run.calls:
        print(f"ld.so   call {c.step}: " + ("ok " + str([o.name for o in c.new]) if c.ok
                                             else repr(c.error)))
    if run.crash:
        print(f"ld.so   aborted: {run.crash}")
    pred = differential.predict(sc, root, run)
    for i, p in enumerate(pred.calls):
        print(f"model   call {i + 1}: " + ("ok " + str([(x.raw, x.rule) for x in p.new]) if p.ok
                                          else repr(p.error)))
    verdict = differential.judge(sc, root, run)
    print(f"\nverdict: {verdict.status}")
    for d in verdict.details:
        print("  " + d)
    if args.debug:
        print(run.stderr)
    return 0 if verdict.status in (differential.AGREE, differential.QUIRK) else 1


if __name__ == "__main__":
    sys.exit(main())
