"""examples/fastapi_server/main.py: start-up through the guard, its endpoints, a failing start.

fastapi is optional: the example's ``--check`` mode needs none, the app's routes are exercised
with a minimal stand-in of ``fastapi.FastAPI`` when fastapi is absent (and with the real one when
it is installed). torch is a tiny stand-in package, so this runs in the unit tier anywhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fastapi_server" / "main.py"

FAKE_TORCH = '''
__version__ = "0.0.0+fake"


class _Tensor:
    def __init__(self, values):
        self.values = list(values)

    def sum(self):
        return _Tensor([sum(self.values)])

    def item(self):
        return self.values[0]


def tensor(values):
    return _Tensor(values)
'''

BROKEN_TORCH = '''
raise ImportError("libc10.so: cannot open shared object file: No such file or directory",
                  name="torch._C", path=__file__.replace("__init__.py", "_C.cpython-311-x86_64-linux-gnu.so"))
'''


def _site(tmp_path: Path, body: str) -> Path:
    (tmp_path / "torch").mkdir(parents=True)
    (tmp_path / "torch" / "__init__.py").write_text(body)
    return tmp_path


def _run(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    return subprocess.run([sys.executable, str(EXAMPLE), *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_check_mode_imports_torch_through_the_guard(tmp_path: Path) -> None:
    proc = _run(_site(tmp_path, FAKE_TORCH), "--check")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["total"] == {"total": 6.5}
    assert data["health"]["torch"] == "0.0.0+fake" and data["health"]["prechecks"] == []


def test_a_dll_failure_stops_the_server_with_the_explanation(tmp_path: Path) -> None:
    proc = _run(_site(tmp_path, BROKEN_TORCH), "--check")
    assert proc.returncode == 1
    assert proc.stderr.startswith("cannot start: import torch failed: a DLL it needs was not found")
    assert "libc10.so was not found by the dynamic loader" in proc.stderr
    assert "fix 1: See every missing library: ldd" in proc.stderr


class _StubFastAPI:
    """Just enough of fastapi.FastAPI: ``get``/``post`` decorators that record the routes."""

    def __init__(self, title: str = "") -> None:
        self.title = title
        self.routes: Dict[str, Callable[..., Any]] = {}

    def _route(self, method: str, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.routes[f"{method} {path}"] = fn
            return fn
        return register

    def get(self, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self._route("GET", path)

    def post(self, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self._route("POST", path)


@pytest.fixture
def isolated_torch() -> Iterator[None]:
    """Hide a real torch while the example imports the stand-in, and put everything back after
    (monkeypatch.delitem would restore the stand-in: it was the value it deleted last)."""
    saved = sys.modules.pop("torch", None)
    yield
    sys.modules.pop("torch", None)
    if saved is not None:
        sys.modules["torch"] = saved


def _load_example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stub: bool) -> types.ModuleType:
    monkeypatch.syspath_prepend(str(_site(tmp_path, FAKE_TORCH)))
    if stub:
        monkeypatch.setitem(sys.modules, "fastapi", types.SimpleNamespace(FastAPI=_StubFastAPI))
    spec = importlib.util.spec_from_file_location("fastapi_example_main", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.usefixtures("isolated_torch")
def test_routes_with_a_stand_in_fastapi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = _load_example(monkeypatch, tmp_path, stub=True)
    app = module.app
    assert isinstance(app, _StubFastAPI) and set(app.routes) == {"GET /health", "POST /total"}
    assert app.routes["GET /health"]()["torch"] == "0.0.0+fake"
    assert app.routes["POST /total"]([1.0, 2.0]) == {"total": 3.0}
    assert module.main(["--check"]) == 0


@pytest.mark.usefixtures("isolated_torch")
def test_without_fastapi_the_app_is_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if it were not installed
    module = _load_example(monkeypatch, tmp_path, stub=False)
    assert module.app is None
    assert module.main([]) == 2
    assert "pip install fastapi" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("fastapi") is None, reason="fastapi is not installed")
@pytest.mark.usefixtures("isolated_torch")
def test_routes_with_the_real_fastapi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = _load_example(monkeypatch, tmp_path, stub=False)
    paths: List[str] = sorted(getattr(r, "path", "") for r in module.app.routes)
    assert "/health" in paths and "/total" in paths
