"""Ask the loader model why a DLL resolves where it does.

Builds the bundled demo tree (real, tiny PE files) in a temporary folder, then:
1. resolves one name the way torch's preload would (``0x1100``) and the way a plain
   ``LoadLibraryW`` would (standard search, PATH included), printing the rule and candidates;
2. replays torch's preload and prints the predicted outcome of each call.

Run: python examples/loader_model.py
"""

from __future__ import annotations

import tempfile

import torchdll
from torchdll.demo import TORCH_LIB, build_demo


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        env = build_demo(root)
        importer = f"{TORCH_LIB}\\torch_cpu.dll"
        for flags in (0x1100, 0x0):
            res = torchdll.resolve("c10.dll", env.context, env.view, flags=flags,
                                   importer=importer, load_dir=TORCH_LIB)
            print(f"flags 0x{flags:04x}: c10.dll -> {res.path}  [{res.rule.value if res.rule else '-'}]")
            for cand in res.candidates:
                print(f"    tried {cand.path} ({cand.rule.value}: {cand.outcome.value})")
        sim = torchdll.simulate(env.preload, env.context, env.view)
        for result in sim.results:
            print(f"{result.call.target.rsplit(chr(92), 1)[-1]:<20} {'ok' if result.ok else result.error}")


if __name__ == "__main__":
    main()
