"""A pytest plugin: test your project's start-up code against simulated Windows machines.

Registered as the ``torchdll`` plugin (entry point ``pytest11``), so installing torchdll makes
these fixtures available to every test; without the entry point, load it with
``pytest -p torchdll.pytest_plugin`` or ``pytest_plugins = ["torchdll.pytest_plugin"]`` in
your root ``conftest.py``. (With the entry point installed, ``-p torchdll.pytest_plugin`` alone
registers the module twice and pytest stops; ``-p no:torchdll -p torchdll.pytest_plugin`` works
either way.)

Fixtures (each test gets its own machine in ``tmp_path``; nothing outside it is written):

``windows_env``
    an empty :class:`~torchdll.testing.WindowsEnv` (a Python and a venv, no System32, no
    torch). Options for its constructor come from the ``torchdll_env`` marker::

        @pytest.mark.torchdll_env(user="홍길동", python="3.12.4")
        def test_non_ascii_user(windows_env): ...

``healthy_windows_env``
    the same machine with a current System32 (VC++ runtime 14.44) and torch 2.9.0 installed:
    ``import torch`` is predicted to load. Break it in the test (``add_dll``, ``loaded``,
    ``user_path``...) to simulate a user's machine.

``torch_report``
    a function: ``torch_report(env=None, **snapshot_overrides)`` runs
    :func:`torchdll.diagnose` on ``env`` (default: the test's ``windows_env``) and returns the
    :class:`~torchdll.report.Report`.

``use_windows_env``
    a function: ``use_windows_env(env=None)`` makes *live* ``torchdll.diagnose()`` calls
    (no arguments, as start-up code makes them) analyse ``env`` instead of this machine, for
    the rest of the test. Returns ``env``.

Use :func:`torchdll.testing.assert_torch_loadable` and :func:`torchdll.testing.assert_finding`
on the reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional

import pytest

from .diagnosis import diagnose
from .report import Report
from .testing import WindowsEnv

__all__ = ["healthy_windows_env", "torch_report", "use_windows_env", "windows_env"]

TorchReport = Callable[..., Report]
UseWindowsEnv = Callable[..., WindowsEnv]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "torchdll_env(**kwargs): keyword arguments for the WindowsEnv of the windows_env fixture "
        "(user=, python=, venv=, base=, conda=)",
    )


@pytest.fixture
def windows_env(request: pytest.FixtureRequest, tmp_path: Path) -> WindowsEnv:
    """A simulated Windows machine (a Python and a venv) mirrored under ``tmp_path``."""
    marker = request.node.get_closest_marker("torchdll_env")
    kwargs: Dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    return WindowsEnv(tmp_path / "windows", **kwargs)


@pytest.fixture
def healthy_windows_env(windows_env: WindowsEnv) -> WindowsEnv:
    """``windows_env`` with a current System32 and torch 2.9.0: torch is predicted to load."""
    windows_env.add_system()
    windows_env.add_torch("2.9.0")
    return windows_env


@pytest.fixture
def torch_report(windows_env: WindowsEnv) -> TorchReport:
    """``torch_report(env=None, **snapshot_overrides)``: diagnose a simulated machine."""

    def make(env: Optional[WindowsEnv] = None, **overrides: object) -> Report:
        target = windows_env if env is None else env
        return diagnose(target.snapshot(**overrides), view=target.view())

    return make


@pytest.fixture
def use_windows_env(windows_env: WindowsEnv, monkeypatch: pytest.MonkeyPatch) -> UseWindowsEnv:
    """``use_windows_env(env=None)``: live ``torchdll.diagnose()`` analyses ``env`` (default:
    the test's ``windows_env``) until the end of the test."""
    from . import diagnosis

    def use(env: Optional[WindowsEnv] = None) -> WindowsEnv:
        target = windows_env if env is None else env
        # diagnose() with no snapshot collects this process's facts and reads files natively:
        # swap both for the simulated machine (reads go through its mirror folder).
        monkeypatch.setattr(diagnosis, "collect", lambda: target.snapshot())
        monkeypatch.setattr(diagnosis, "NativeView", lambda: target.view())
        return target

    return use
