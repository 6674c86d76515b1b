"""``python -m benchmarks [--quick]``: the same as ``python benchmarks/run_all.py``."""

from benchmarks.run_all import main

raise SystemExit(main())
