from __future__ import annotations

import json
import os
import subprocess
import sys

import torchdll


def _fresh(code: str, **env: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_loads_nothing_heavy() -> None:
    out = _fresh("import sys, torchdll, json; print(json.dumps(sorted(sys.modules)))")
    mods = set(json.loads(out))
    assert {"pefile", "ctypes", "winreg", "platformdirs", "json"}.isdisjoint(mods - _baseline())
    assert "typing" not in mods - _baseline()
    assert [m for m in mods if m.startswith("torchdll.")] == []


def _baseline() -> set[str]:
    return set(json.loads(_fresh("import sys, json; print(json.dumps(sorted(sys.modules)))")))


def test_import_never_raises_with_hostile_environment() -> None:
    out = _fresh("import torchdll; print(torchdll.__version__)",
                 PATH='"C:\\a;b";%NOPE%;;relative;' + "x" * 40000, TORCHDLL_CACHE_DIR="/nonexistent/dir",
                 LANG="ko_KR.UTF-8")
    assert out.strip() == torchdll.__version__


def test_every_public_name_resolves_and_dir_matches_all() -> None:
    assert sorted(dir(torchdll)) == sorted(torchdll.__all__)
    for name in torchdll.__all__:
        assert getattr(torchdll, name) is not None


def test_unknown_attribute_is_attribute_error() -> None:
    try:
        torchdll.does_not_exist  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "does_not_exist" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_no_public_name_is_shadowed_by_a_submodule() -> None:
    # importing torchdll.<sub> sets the attribute <sub> on the package: a public function of
    # the same name would silently become a module.
    import pkgutil

    subs = {m.name for m in pkgutil.iter_modules(torchdll.__path__)}
    assert subs.isdisjoint(torchdll.__all__)


def test_all_is_exactly_the_lazy_table() -> None:
    assert torchdll.__all__ == ["__version__", *sorted(torchdll._LAZY)]  # type: ignore[attr-defined]
