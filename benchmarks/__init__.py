"""torchdll's benchmarks: ``python -m benchmarks`` (= ``python benchmarks/run_all.py``) runs them
all and prints one table; ``benchmarks/bench_*.py`` run one part each. See docs/benchmarks.md."""
