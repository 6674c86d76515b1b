"""Tier 3b: torchdll's ld.so model (``torchdll.ldso``) checked against the real glibc ld.so.

Every test in this folder carries the ``ldso`` marker. Session fixtures build ``dlrun``
(``src/dlrun.c``, cached by content), generate the scenarios (``scenarios.py``), build their
trees with gcc (``tests/support/elfbuild.py``: cached by content, so a second session builds
almost nothing), run each scenario in one ``dlrun`` process under ``LD_DEBUG=libs,files``
and judge it against the model (``differential.py``). Without gcc the tests skip on a
developer machine and fail under ``CI=true`` (``tests/support/tiers.py``); on a system without
glibc they always skip (there is no ld.so to compare with).

Environment:

* ``TORCHDLL_LDSO_SCENARIOS`` -- how many generated scenarios (default 200);
* ``TORCHDLL_LDSO_SEED`` -- one seed for all of them (``random``: a new one, printed); by
  default scenario ``i`` uses ``DEFAULT_SEEDS[i % len(DEFAULT_SEEDS)]``; a failure message
  names the seed and index (``scenarios.generate(index, seed)``);
* ``TORCHDLL_LDSO_REPORT`` -- a file to write every scenario that did not simply agree;
* ``TORCHDLL_LDSO_KEEP`` -- a folder to build the trees in (kept after the session, for
  reading and for re-running ``dlrun`` by hand); default: ``<cache>/../ldso-trees/work``
  (kept until the next session empties it);
* ``TORCHDLL_ELF_CACHE`` -- the build cache (default ``<torchdll-tests cache>/elf``).
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import os
import random
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import elfbuild
from tests.support.tiers import unavailable

from . import differential, runner, scenarios, tree

HERE = Path(__file__).resolve().parent
DEFAULT_SCENARIOS = 200
DEFAULT_SEEDS = (20240611, 7, 1337, 424242)

_SUMMARY: list[differential.Summary] = []
MARK = ".torchdll-ldso-trees"  # a folder the tier may empty


def scenario_count() -> int:
    return int(os.environ.get("TORCHDLL_LDSO_SCENARIOS", DEFAULT_SCENARIOS))


_RANDOM_SEED = str(random.SystemRandom().randrange(1, 10**9))


def scenario_seeds() -> tuple[str, ...]:
    env = os.environ.get("TORCHDLL_LDSO_SEED")
    if env == "random":
        return (_RANDOM_SEED,)
    if env:
        return (env,)
    return tuple(str(s) for s in DEFAULT_SEEDS)


def seed_of(index: int) -> str:
    seeds = scenario_seeds()
    return seeds[index % len(seeds)]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "ldso: needs gcc and glibc's ld.so (the Linux loader model, tier 3b)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.ldso)


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    for summary in _SUMMARY:
        terminalreporter.section("torchdll ld.so model vs the real ld.so")
        for line in summary.lines():
            terminalreporter.write_line(line)


# --------------------------------------------------------------------------------------------
# tools
# --------------------------------------------------------------------------------------------


def _glibc() -> str | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError, AttributeError):
        return None


@pytest.fixture(scope="session")
def glibc() -> str:
    version = _glibc()
    if not version:
        pytest.skip("no glibc: the ld.so tier compares with glibc's dynamic loader")
    return version


@pytest.fixture(scope="session")
def gcc(glibc: str) -> str:
    path = elfbuild.find_gcc()
    if path is None:
        unavailable("gcc not found (apt-get install gcc)")
    return path


@pytest.fixture(scope="session")
def ldso_work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where the trees are built: ``$TORCHDLL_LDSO_KEEP``, else one stable folder next to the
    build cache (``<cache>/../ldso-trees/work``, emptied at the start of each session, locked
    while it runs; a concurrent session falls back to a temporary folder).

    A stable folder matters for speed: a library with an absolute DT_RPATH entry names the
    tree's folder, so in a new folder every such library (about 400 of the default 200
    scenarios) must be linked again."""
    keep = os.environ.get("TORCHDLL_LDSO_KEEP")
    if keep:
        path = Path(keep)
        if path.exists() and any(path.iterdir()):
            if not (path / MARK).exists():
                raise pytest.UsageError(f"TORCHDLL_LDSO_KEEP={keep} is not empty and was not "
                                        "made by this tier: refusing to empty it")
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / MARK).write_text("trees of tests/ldso; emptied by every session\n")
        yield path.resolve()
        return
    base = elfbuild.cache_root().parent / "ldso-trees"
    lock = None
    try:
        base.mkdir(parents=True, exist_ok=True)
        lock = open(base / ".lock", "w")  # noqa: SIM115 - held until the session ends
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # busy (another session) or not writable
        if lock is not None:
            lock.close()
        yield Path(os.path.realpath(str(tmp_path_factory.mktemp("ldso"))))
        return
    try:
        work = base / "work"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir()
        yield Path(os.path.realpath(str(work)))
    finally:
        lock.close()


@pytest.fixture(scope="session")
def dlrun(gcc: str, ldso_work: Path) -> Path:
    elfbuild.prune()
    try:
        return runner.build_dlrun(ldso_work / "bin")
    except elfbuild.BuildError as exc:
        unavailable(f"gcc cannot build dlrun (libc6-dev missing?): {exc}")


@pytest.fixture(scope="session")
def syslib(dlrun: Path, ldso_work: Path) -> str | None:
    """A library in a system directory that is not in /etc/ld.so.cache (None: none here)."""
    return runner.uncached_system_lib(dlrun, ldso_work)


def _workers() -> int:
    return max(2, min(8, (os.cpu_count() or 2) * 2))


def build_trees(items: list[tuple[scenarios.Scenario, Path]]) -> None:
    """Write every scenario's tree, a few at a time (gcc runs in child processes)."""

    def one(item: tuple[scenarios.Scenario, Path]) -> None:
        sc, root = item
        root.mkdir(parents=True, exist_ok=True)
        tree.write(sc, root)

    with concurrent.futures.ThreadPoolExecutor(max_workers=_workers()) as pool:
        list(pool.map(one, items))


class Case:
    """A scenario written under the session folder, run on demand."""

    def __init__(self, sc: scenarios.Scenario, root: Path, dlrun: Path) -> None:
        self.sc = sc
        self.root = root
        self.dlrun = dlrun

    def run(self, debug: bool = True) -> runner.Run:
        return tree.run(self.sc, self.root, self.dlrun, debug=debug)

    def expect(self) -> list[str | None]:
        return [tree.resolve_text(e, self.root) for e in (self.sc.expect or [])]


@pytest.fixture(scope="session")
def named_cases(dlrun: Path, ldso_work: Path) -> dict[str, Case]:
    items = [(sc, ldso_work / "named" / sc.name) for sc in scenarios.named()]
    build_trees(items)
    return {sc.name: Case(sc, root, dlrun) for sc, root in items}


@pytest.fixture(scope="session")
def differential_run(dlrun: Path, syslib: str | None, ldso_work: Path
                     ) -> differential.Summary:
    """Generate, build, run with the real ld.so, predict and judge every scenario (once)."""
    count = scenario_count()
    times: dict[str, float] = {}
    t0 = time.monotonic()
    all_sc = [scenarios.generate(i, seed_of(i), syslib) for i in range(count)]
    items = [(sc, ldso_work / "gen" / sc.name) for sc in all_sc]
    times["generate"] = time.monotonic() - t0
    t0 = time.monotonic()
    build_trees(items)
    times["build trees"] = time.monotonic() - t0
    t0 = time.monotonic()
    runs = differential.run_all(items, dlrun, _workers())
    times["real ld.so"] = time.monotonic() - t0
    t0 = time.monotonic()
    verdicts = [differential.judge(sc, root, runs.get(sc.name)) for sc, root in items]
    times["model+compare"] = time.monotonic() - t0
    seeds = scenario_seeds()
    summary = differential.Summary(verdicts, times, ",".join(seeds))
    _SUMMARY.append(summary)
    report = os.environ.get("TORCHDLL_LDSO_REPORT")
    if report:
        Path(report).write_text("\n\n".join(
            v.report() for v in verdicts if v.status != differential.AGREE) + "\n")
    return summary


class AdHoc:
    """A fresh folder for a hand-written case: build libraries, run dlrun, ask the model."""

    _n = 0

    def __init__(self, base: Path, dlrun: Path) -> None:
        AdHoc._n += 1
        self.root = base / f"case{AdHoc._n}"
        self.root.mkdir(parents=True)
        self.dlrun = dlrun

    def lib(self, rel: str, **kwargs) -> Path:  # type: ignore[no-untyped-def]
        """``build_lib`` into ``root/<dirname of rel>`` under the file name of ``rel``."""
        dest = self.root / rel
        kwargs.setdefault("soname", dest.name)
        return elfbuild.build_lib(dest.parent, dest.name, **kwargs)

    def path(self, rel: str) -> str:
        return str(self.root / rel)

    def run(self, *steps: str, llp: str | None = None, cwd: str = "") -> runner.Run:
        folder = self.root / cwd
        folder.mkdir(parents=True, exist_ok=True)
        run = runner.run_plan(self.dlrun, list(steps), cwd=folder, ld_library_path=llp)
        assert run.initial, run.stderr[-2000:]
        return run

    def model(self, run: runner.Run, *steps: str, llp: str | None = None) -> list:
        """The model's DlopenResult for each step, in a context made from ``run``."""
        from torchdll.ldso import LdSimulator, live_context

        environ = {} if llp is None else {"LD_LIBRARY_PATH": llp}
        ctx = live_context(environ=environ, executable=run.initial[0].real or run.initial[0].name,
                           loaded=[o.name for o in run.initial[1:] if o.real], cwd=run.cwd)
        sim = LdSimulator(ctx)
        out = []
        for st in steps:
            flags, target = st.split(" ", 1)
            words = flags.split(",")
            mode = os.RTLD_NOW if "now" in words else os.RTLD_LAZY
            if "global" in words:
                mode |= os.RTLD_GLOBAL
            out.append(sim.dlopen(target, mode))
        return out


@pytest.fixture
def adhoc(dlrun: Path, ldso_work: Path) -> AdHoc:
    return AdHoc(ldso_work / "adhoc", dlrun)
