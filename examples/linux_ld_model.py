"""The Linux side of torchdll in one script, on any OS (no compiler, no torch, nothing loaded).

1. Write a tiny Linux machine of real ELF files (``torchdll._elfwrite``): a library that needs
   ``libfoo.so.1`` through ``RUNPATH=$ORIGIN/../lib``, an older ``libfoo.so.1`` without the
   version it needs in a folder on ``LD_LIBRARY_PATH``.
2. Ask the ld.so model (``torchdll.LdSimulator``) what ``dlopen`` does, with and without that
   ``LD_LIBRARY_PATH``: which file each name binds, by which rule, and the exact ``dlerror()``.
3. Read the facts it used (``torchdll.read_elf_facts``).
4. On a Linux machine with torch: ``torchdll.diagnose_linux()`` for this process and
   ``torchdll.plan_loader_env()`` for the environment ``torchdll run`` would start a program with.

    python examples/linux_ld_model.py
"""

from __future__ import annotations

import os
import sys
import tempfile

import torchdll
from torchdll._elfwrite import build_elf


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        def at(path: str) -> str:
            return os.path.join(root, path.lstrip("/"))

        build_elf(at("/usr/bin/python3"), exec_=True)
        build_elf(at("/opt/app/lib/libfoo.so.1"), soname="libfoo.so.1", version_defs=["FOO_1", "FOO_2"],
                  defines=["foo@@FOO_2"])
        build_elf(at("/opt/old/libfoo.so.1"), soname="libfoo.so.1", version_defs=["FOO_1"], defines=["foo@@FOO_1"])
        build_elf(at("/opt/app/bin/libapp.so"), needed=["libfoo.so.1"], runpath="$ORIGIN/../lib",
                  uses=["foo@FOO_2"])
        for llp in ((), ("/opt/old",)):
            ctx = torchdll.LdContext(ld_library_path=llp, system_dirs=("/lib/x86_64-linux-gnu",),
                                     executable="/usr/bin/python3", root=root)
            res = torchdll.LdSimulator(ctx).dlopen("/opt/app/bin/libapp.so")
            print(f"LD_LIBRARY_PATH={':'.join(llp) or '(unset)'}")
            for load in res.loaded:
                print(f"  {load.name:<24} -> {load.path}  [{load.rule.value}]")
            print(f"  dlopen: {'ok' if res.ok else res.error}")
        facts = torchdll.read_elf_facts(at("/opt/app/bin/libapp.so"))
        print("libapp.so needs", ", ".join(facts.needed), "runpath", ":".join(facts.runpath),
              "versions", {n.file: n.versions for n in facts.version_needs})
    if sys.platform.startswith("linux"):
        report = torchdll.diagnose_linux()
        for p in report.predictions:
            print(f"this machine: torch {p.version}: {'loads' if p.ok else p.message}")
        if not report.predictions:
            print("this machine: " + "; ".join(report.notes))
        plan = torchdll.plan_loader_env()
        print("torchdll run would change:", plan.describe() or "nothing")


if __name__ == "__main__":
    main()
