"""The torch causes as small trees: first what the real ld.so says, then the model.

* cause 37: ``libcusparse.so.12`` (wheel, DT_RUNPATH to the wheel's nvjitlink) needs
  ``__nvJitLinkComplete_12_4@libnvJitLink.so.12``; a CUDA 12.1 toolkit
  ``libnvJitLink.so.12`` on LD_LIBRARY_PATH has the version node but not the symbol, and
  LD_LIBRARY_PATH is searched before DT_RUNPATH;
* cause 38: ``libcudart.so.12`` exists nowhere;
* cause 39: an old ``libstdc++.so.6`` (GLIBCXX_3.4 .. 3.4.29) on LD_LIBRARY_PATH, a torch
  library that needs GLIBCXX_3.4.30.

Each has a "fixed" twin where the load succeeds (cause 37 without the toolkit on the path,
cause 39 with a new libstdc++ on it).
"""

from __future__ import annotations

import os

import pytest

from . import differential, ldebug
from .scenarios import named

NAMES = [sc.name for sc in named()]


@pytest.mark.parametrize("name", NAMES)
def test_real_ld_so_error_text(named_cases, name: str) -> None:  # type: ignore[no-untyped-def]
    case = named_cases[name]
    run = case.run()
    assert run.done, run.stderr[-2000:]
    assert [c.error for c in run.calls] == case.expect()
    for c in run.calls:
        if not c.ok:
            assert c.new == []  # a failed dlopen leaves nothing behind


def test_cause37_toolkit_copy_wins_over_runpath(named_cases) -> None:  # type: ignore[no-untyped-def]
    run = named_cases["cause37"].run()
    step = run.trace.step(1)
    # the toolkit copy was mapped (then unloaded with everything else) through LD_LIBRARY_PATH
    (req,) = [r for r in step.requests if r.name == "libnvJitLink.so.12"]
    assert req.path is not None and req.path.endswith("cuda-12.1/lib64/libnvJitLink.so.12")
    assert req.rule == ldebug.LD_LIBRARY_PATH


def test_cause37_fixed_uses_the_wheel_copy(named_cases) -> None:  # type: ignore[no-untyped-def]
    run = named_cases["cause37-fixed"].run()
    (call,) = run.calls
    assert call.ok
    assert [os.path.basename(os.path.dirname(o.real or "")) for o in call.new] == ["lib", "lib"]
    assert call.new[1].real.endswith("nvidia/nvjitlink/lib/libnvJitLink.so.12")


@pytest.mark.parametrize("name", NAMES)
def test_model_agrees(named_cases, name: str) -> None:  # type: ignore[no-untyped-def]
    case = named_cases[name]
    verdict = differential.judge(case.sc, case.root, case.run())
    assert verdict.status == differential.AGREE, verdict.report()


@pytest.mark.parametrize("name", NAMES)
def test_model_error_text_is_exact(named_cases, name: str) -> None:  # type: ignore[no-untyped-def]
    """For the torch causes the model's text must be ld.so's, byte for byte (no
    normalization): the diagnosis quotes it."""
    case = named_cases[name]
    run = case.run()
    pred = differential.predict(case.sc, case.root, run)
    assert [c.error for c in pred.calls] == [c.error for c in run.calls]
