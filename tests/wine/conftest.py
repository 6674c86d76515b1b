"""Tier 3: torchdll's loader model checked against Wine's real loader (see docs/wine.md).

Every test in this folder carries the ``wine`` marker. Session fixtures build ``loadplan.exe``
(cached by a hash of its source), take the one shared Wine prefix (``<cache>/wine-prefix``,
created on first use, locked while a session runs) and, for the differential test, run all
generated scenarios in a few Wine invocations. Without Wine or mingw-w64 the tests skip on a
developer machine and fail under ``CI=true`` (``tests/support/tiers.py``).

Environment:

* ``TORCHDLL_WINE_SCENARIOS`` -- how many scenarios (default 300);
* ``TORCHDLL_WINE_SEED`` -- the seed (default 20240609); a failure message names both;
* ``TORCHDLL_WINE_REPORT`` -- a file to write every scenario that did not simply agree;
* ``TORCHDLL_TEST_CACHE`` -- cache folder (default: platformdirs user cache ``torchdll-tests``);
* ``TORCHDLL_WINE`` -- the ``wine64`` binary (default: found by ``tiers.find_wine``).
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.tiers import find_wine, unavailable

from . import differential, runner, scenarios

HERE = Path(__file__).resolve().parent
DEFAULT_SCENARIOS = 300
DEFAULT_SEED = 20240609
SCENARIO_DRIVE = "t"

_SUMMARY: list[differential.Summary] = []


def scenario_count() -> int:
    return int(os.environ.get("TORCHDLL_WINE_SCENARIOS", DEFAULT_SCENARIOS))


def scenario_seed() -> int:
    return int(os.environ.get("TORCHDLL_WINE_SEED", DEFAULT_SEED))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.wine)


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    for summary in _SUMMARY:
        terminalreporter.section("torchdll loader model vs Wine")
        for line in summary.lines():
            terminalreporter.write_line(line)


# --------------------------------------------------------------------------------------------
# tools and the prefix
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def wine_binary() -> str:
    wine = find_wine()
    if wine is None:
        unavailable("wine64 not found (apt-get install wine64; or set TORCHDLL_WINE)")
    return wine


@pytest.fixture(scope="session")
def loadplan_exe() -> Path:
    try:
        return runner.build_loadplan()
    except FileNotFoundError:
        unavailable("x86_64-w64-mingw32-gcc not found (apt-get install gcc-mingw-w64-x86-64)")


@pytest.fixture(scope="session")
def wine_prefix(wine_binary: str, loadplan_exe: Path) -> Iterator[runner.WinePrefix]:
    """The shared prefix, locked for this session (created on first use: ~10-60 s)."""
    prefix = runner.WinePrefix(wine_binary, runner.cache_root() / "wine-prefix")
    with prefix.session():
        yield prefix


@pytest.fixture(scope="session")
def wine_scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wine")


class PlanRunner:
    """Run small ad-hoc plans on a mirror tree mapped to one drive letter of the prefix."""

    def __init__(self, prefix: runner.WinePrefix, exe: Path, root: Path, letter: str) -> None:
        self.prefix = prefix
        self.exe = exe
        self.root = root  # the mirror root: <root>/<LETTER>/..., <root>/C -> drive_c
        self.letter = letter.upper()
        self.drive = root / self.letter
        self.drive.mkdir(parents=True, exist_ok=True)
        c_link = root / "C"
        if not c_link.exists():
            c_link.symlink_to(prefix.drive_c)
        prefix.map_drive(letter, self.drive)
        self._n = 0

    def win(self, host: Path) -> str:
        rel = Path(host).resolve().relative_to(self.drive.resolve())
        return f"{self.letter}:\\" + "\\".join(rel.parts)

    def host(self, win_path: str) -> Path:
        return scenarios.host_path(self.root, win_path)

    def place_exe(self, app_dir: str) -> str:
        target = self.host(app_dir) / "loadplan.exe"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            shutil.copyfile(self.exe, target)
        return f"{app_dir}\\loadplan.exe"

    def run(self, plan: str, app_dir: str | None = None, overrides: str = "",
            debug: str = runner.WINEDEBUG) -> runner.PlanRun:
        """Run one plan (text) with loadplan.exe in ``app_dir`` (default ``<drive>:\\app``)."""
        self._n += 1
        app_dir = app_dir or f"{self.letter}:\\app"
        exe = self.place_exe(app_dir)
        plan_host = self.drive / "plans" / f"adhoc{self._n}.txt"
        plan_host.parent.mkdir(parents=True, exist_ok=True)
        plan_host.write_text(plan, encoding="utf-8")
        out = self.drive / "plans" / f"adhoc{self._n}.out"
        self.prefix.run([exe, self.win(plan_host)], out, overrides=overrides, debug=debug,
                        timeout=300)
        return runner.parse_single_output(out.read_text(errors="replace"), self.win(plan_host))


@pytest.fixture(scope="session")
def plans(wine_prefix: runner.WinePrefix, loadplan_exe: Path, wine_scratch: Path) -> PlanRunner:
    """Ad-hoc plans on drive Q: (a mirror under the session's temporary folder)."""
    return PlanRunner(wine_prefix, loadplan_exe, wine_scratch / "adhoc", "q")


# --------------------------------------------------------------------------------------------
# the differential run
# --------------------------------------------------------------------------------------------


def _run_batches(prefix: runner.WinePrefix, root: Path, items: list[scenarios.Scenario],
                 tag: str, workers: int) -> dict[str, runner.PlanRun]:
    """Run ``items`` in ``workers`` concurrent batches; plan name -> run."""
    if not items:
        return {}
    chunks = [items[i::workers] for i in range(workers)]
    work = root / "T" / "batches"
    work.mkdir(exist_ok=True)

    def one(k: int, chunk: list[scenarios.Scenario]) -> dict[str, runner.PlanRun]:
        lst = work / f"{tag}{k}.list"
        out = work / f"{tag}{k}.out"
        runner.write_batch_list(lst, [(sc.exe, f"T:\\plans\\{sc.name}.txt") for sc in chunk])
        driver = "T:\\batches\\loadplan.exe"
        prefix.run([driver, "--batch", f"T:\\batches\\{lst.name}"], out,
                   timeout=60 + 30 * len(chunk))
        runs = runner.parse_batch_output(out.read_text(errors="replace"))
        return {key.rsplit("\\", 1)[-1][:-4]: run for key, run in runs.items()}

    merged: dict[str, runner.PlanRun] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for res in pool.map(lambda kc: one(*kc), enumerate(c for c in chunks if c)):
            merged.update(res)
    return merged


@pytest.fixture(scope="session")
def differential_run(wine_prefix: runner.WinePrefix, loadplan_exe: Path,
                     wine_scratch: Path) -> differential.Summary:
    """Generate, run under Wine, predict and judge every scenario (once per session)."""
    from torchdll.fsview import MirrorView

    count, seed = scenario_count(), scenario_seed()
    times: dict[str, float] = {}
    t0 = time.monotonic()
    all_sc = scenarios.generate_many(count, seed)
    root = wine_scratch / "mirror"
    (root / "T").mkdir(parents=True)
    (root / "C").symlink_to(wine_prefix.drive_c)
    placed = scenarios.write_tree(all_sc, root, loadplan_exe)
    wine_prefix.record_placed(placed)
    batch_dir = root / "T" / "batches"
    batch_dir.mkdir()
    shutil.copyfile(loadplan_exe, batch_dir / "loadplan.exe")
    wine_prefix.map_drive(SCENARIO_DRIVE, root / "T")
    times["generate+write"] = time.monotonic() - t0

    t0 = time.monotonic()
    workers = max(1, min(2, os.cpu_count() or 1))
    safe = [sc for sc in all_sc if sc.safe_mode]
    unsafe = [sc for sc in all_sc if not sc.safe_mode]
    runs = _run_batches(wine_prefix, root, safe, "safe", workers)
    if unsafe:
        wine_prefix.set_safe_dll_search_mode(0)
        try:
            runs.update(_run_batches(wine_prefix, root, unsafe, "unsafe", workers))
        finally:
            wine_prefix.set_safe_dll_search_mode(None)
    # A plan whose run is unusable (no output, not finished, a setup step failed) is run
    # once more on its own: under heavy load a child can be lost. A second failure stays a
    # harness error and fails its test.
    retried: dict[str, str] = {}
    for sc in all_sc:
        try:
            differential.observe(sc, runs.get(sc.name))
        except differential.HarnessProblem as exc:
            retried[sc.name] = str(exc)
    again = [sc for sc in all_sc if sc.name in retried]
    for mode in (True, False):
        group = [sc for sc in again if sc.safe_mode is mode]
        if not group:
            continue
        if not mode:
            wine_prefix.set_safe_dll_search_mode(0)
        try:
            runs.update(_run_batches(wine_prefix, root, group, f"retry{int(mode)}", 1))
        finally:
            if not mode:
                wine_prefix.set_safe_dll_search_mode(None)
    times["wine"] = time.monotonic() - t0

    t0 = time.monotonic()
    view = MirrorView(root)
    verdicts = [differential.judge(sc, view, runs.get(sc.name)) for sc in all_sc]
    times["model+compare"] = time.monotonic() - t0
    summary = differential.Summary(verdicts, times, seed, retried)
    _SUMMARY.append(summary)
    report = os.environ.get("TORCHDLL_WINE_REPORT")
    if report:  # every scenario outside "agree", for reading (docs/wine.md)
        Path(report).write_text("\n\n".join(
            v.report() for v in verdicts if v.status != differential.AGREE) + "\n")
    return summary
