"""The loader model against Wine's loader, on hundreds of generated scenarios.

One session fixture (``differential_run`` in conftest.py) generates the scenarios
(``scenarios.py``, seeded), runs them under Wine in a few batches, predicts each with
``torchdll.closure.simulate`` and judges it (``differential.py``). Each scenario is one test
here: it fails only on an unexplained disagreement (or a harness error); agreements, known Wine
deviations and known model bugs pass and are counted in the terminal summary.

Reproduce one scenario: ``TORCHDLL_WINE_SEED=<seed> pytest tests/wine -k s0042``.
"""

from __future__ import annotations

import pytest

from . import differential
from .conftest import scenario_count, scenario_seed

COUNT = scenario_count()


@pytest.mark.parametrize("index", range(COUNT), ids=[f"s{i:04d}" for i in range(COUNT)])
def test_scenario(differential_run: differential.Summary, index: int) -> None:
    verdict = differential_run.verdicts[index]
    if verdict.status in (differential.DISAGREE, differential.BROKEN):
        pytest.fail(f"seed {scenario_seed()}\n{verdict.report()}", pytrace=False)


def test_agreement_figure(differential_run: differential.Summary) -> None:
    """Enough scenarios were judged, and most of them fall outside every known family."""
    summary = differential_run
    assert len(summary.verdicts) == COUNT
    judged = [v for v in summary.verdicts
              if v.status in (differential.AGREE, differential.DISAGREE)]
    assert summary.count(differential.BROKEN) == 0
    assert summary.count(differential.DISAGREE) == 0, "\n\n".join(
        v.report() for v in summary.verdicts if v.status == differential.DISAGREE)
    # The families must stay exceptions: if most scenarios needed one, the generator (or the
    # model) would have drifted and the figure would say little.
    assert len(judged) >= 0.6 * COUNT
