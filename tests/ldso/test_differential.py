"""The ld.so model against the real ld.so, on hundreds of generated scenarios.

One session fixture (``differential_run`` in conftest.py) generates the scenarios
(``scenarios.py``, seeded), builds their trees with gcc, runs each with ``dlrun`` under
``LD_DEBUG``, predicts each with ``torchdll.ldso.LdSimulator`` and judges it
(``differential.py``). Each scenario is one test here: it fails on a disagreement (or a
harness error); agreements and known ld.so quirks (``differential.QUIRKS``) pass and are
counted in the terminal summary.

Reproduce one scenario: ``TORCHDLL_LDSO_SEED=<seed> pytest tests/ldso -k s0042`` (the failure
message names the seed), or in Python ``scenarios.generate(42, "<seed>", syslib)``.
"""

from __future__ import annotations

import pytest

from . import differential
from .conftest import scenario_count, seed_of

COUNT = scenario_count()


@pytest.mark.parametrize("index", range(COUNT), ids=[f"s{i:04d}" for i in range(COUNT)])
def test_scenario(differential_run: differential.Summary, index: int) -> None:
    verdict = differential_run.verdicts[index]
    if verdict.status in (differential.DISAGREE, differential.BROKEN):
        pytest.fail(f"seed {seed_of(index)}, index {index}\n{verdict.report()}", pytrace=False)


def test_agreement_figure(differential_run: differential.Summary) -> None:
    """Every scenario was judged, none broke the harness, and the quirks stay exceptions."""
    summary = differential_run
    assert len(summary.verdicts) == COUNT
    assert summary.count(differential.BROKEN) == 0, "\n\n".join(
        v.report() for v in summary.verdicts if v.status == differential.BROKEN)
    # The quirk families must stay rare: if many scenarios needed one, the generator would
    # have drifted towards what the model does not cover and the figure would say little.
    assert summary.count(differential.QUIRK) <= max(3, 0.05 * COUNT)
    # The generator must keep producing every kind of outcome the model predicts.
    outcomes = {o for v in summary.verdicts for o in v.outcomes}
    if COUNT >= 100:
        for family in ("ok", "cannot open shared object file: No such file or directory",
                       "undefined symbol", "version not found", "wrong ELF class"):
            assert family in outcomes, f"no scenario ended with {family!r}"
        rules = {r for v in summary.verdicts for r in v.rules}
        for rule in ("path", "rpath", "ld-library-path", "runpath", "ld.so.cache"):
            assert rule in rules, f"no object was found by {rule!r}"
