"""torchdll's pytest plugin and assertion helpers, used the way a user project uses them.

``tests/sample_project`` is a tiny application whose start-up code calls ``torchdll.diagnose()``
and refuses to start when torch will not load; its own tests use the plugin's fixtures. pytester
copies it into a fresh folder and runs pytest there, as its developers would.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from torchdll.report import Finding, Prediction, Report, Severity
from torchdll.testing import MSVCP, WindowsEnv, assert_finding, assert_torch_loadable

pytest_plugins = ["pytester"]

SAMPLE = Path(__file__).resolve().parents[1] / "sample_project"
SAMPLE_TESTS = 5
# Load the plugin by module name whether or not the ``pytest11`` entry point (named ``torchdll``)
# is installed: with it installed, ``-p torchdll.pytest_plugin`` alone registers the same module
# twice and pytest stops with "Plugin already registered under a different name".
PLUGIN = ("-p", "no:torchdll", "-p", "torchdll.pytest_plugin")


def _copy_sample(pytester: pytest.Pytester) -> None:
    for item in SAMPLE.iterdir():
        if item.name in ("__pycache__", ".pytest_cache"):
            continue
        target = pytester.path / item.name
        if item.is_dir():
            shutil.copytree(item, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(item, target)


def test_sample_project_passes_with_the_plugin(pytester: pytest.Pytester) -> None:
    _copy_sample(pytester)
    result = pytester.runpytest_subprocess(*PLUGIN, "-v")
    result.assert_outcomes(passed=SAMPLE_TESTS)
    result.stdout.fnmatch_lines([
        "*test_startup.py::test_starts_on_a_healthy_machine PASSED*",
        "*test_startup.py::test_refuses_to_start_when_qt_preloads_an_old_msvcp140 PASSED*",
    ])


def test_sample_project_needs_the_plugin(pytester: pytest.Pytester) -> None:
    # honest: without the plugin its marker (--strict-markers) and fixtures do not exist, so the
    # test above really runs through the plugin
    _copy_sample(pytester)
    result = pytester.runpytest_subprocess("-p", "no:torchdll")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*'torchdll_env' not found in `markers` configuration option*"])
    result = pytester.runpytest_subprocess("-p", "no:torchdll", "-o", "addopts=")
    result.assert_outcomes(errors=SAMPLE_TESTS)
    result.stdout.fnmatch_lines(["*fixture 'healthy_windows_env' not found*"])


def test_plugin_loads_from_the_pytest11_entry_point(pytester: pytest.Pytester, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # The entry point the project declares: [project.entry-points.pytest11] torchdll = ...
    site = tmp_path / "site"
    dist = site / "torchdll_plugin_probe-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: torchdll-plugin-probe\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[pytest11]\ntorchdll = torchdll.pytest_plugin\n")
    _copy_sample(pytester)
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(site), *([old] if old else [])]))
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=SAMPLE_TESTS)
    result.stdout.no_fnmatch_line("*already registered*")
    result = pytester.runpytest_subprocess(*PLUGIN)  # what this suite passes: fine with it too
    result.assert_outcomes(passed=SAMPLE_TESTS)
    result = pytester.runpytest_subprocess("-p", "torchdll.pytest_plugin")  # the trap
    assert result.ret != 0
    assert "Plugin already registered under a different name" in result.stderr.str() + result.stdout.str()


def test_a_failing_user_test_explains_the_failure(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_broken='''
        from torchdll.testing import MSVCP, assert_torch_loadable

        def test_old_runtime_next_to_python(healthy_windows_env, torch_report):
            env = healthy_windows_env
            env.add_dll(f"{env.base}\\\\msvcp140.dll", exports=MSVCP, file_version=(14, 29, 30133, 0))
            assert_torch_loadable(torch_report())
    ''')
    result = pytester.runpytest_subprocess(*PLUGIN)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*AssertionError: torch 2.9.0+cpu will not load: WinError 1114 on *torch\\lib\\c10.dll",
        "*culprit: *msvcp140.dll*",
        "*top finding: predicted-load-failure (error)*",
    ])


def test_marker_configures_the_machine(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_marker='''
        import pytest

        @pytest.mark.torchdll_env(user="alice", python="3.12.4", venv=False)
        def test_env(windows_env, tmp_path):
            assert windows_env.user_home == "C:\\\\Users\\\\alice"
            assert windows_env.python_dll == "python312.dll"
            assert windows_env.prefix == windows_env.base
            assert windows_env.root == tmp_path / "windows"
    ''')
    result = pytester.runpytest_subprocess(*PLUGIN, "--strict-markers")
    result.assert_outcomes(passed=1)


# -- the assertion helpers, directly -----------------------------------------------------------


def _diagnose(env: WindowsEnv) -> Report:
    from torchdll.diagnosis import diagnose

    return diagnose(env.snapshot(), view=env.view())


def test_assert_torch_loadable_passes_on_a_healthy_machine(tmp_path: Path) -> None:
    env = WindowsEnv(tmp_path)
    env.add_system()
    env.add_torch("2.9.0")
    assert_torch_loadable(_diagnose(env))


def test_assert_torch_loadable_names_culprit_and_top_finding(tmp_path: Path) -> None:
    env = WindowsEnv(tmp_path)
    env.add_system(msvcp140=(14, 29, 30133, 0))
    env.add_torch("2.9.0")
    report = _diagnose(env)
    with pytest.raises(AssertionError) as info:
        assert_torch_loadable(report)
    message = str(info.value)
    torch = report.predictions[0]
    assert torch.culprit and f"culprit: {torch.culprit}" in message
    top = report.findings[0]
    assert f"top finding: {top.id} ({top.severity.value}): {top.title}" in message
    assert "WinError 1114 on C:\\Users\\dev\\proj\\.venv\\Lib\\site-packages\\torch\\lib\\c10.dll" in message


def test_assert_torch_loadable_without_torch(tmp_path: Path) -> None:
    env = WindowsEnv(tmp_path)
    env.add_system()
    with pytest.raises(AssertionError, match="no torch prediction .*no torch installation found"):
        assert_torch_loadable(_diagnose(env))
    with pytest.raises(AssertionError, match="top finding: none"):
        assert_torch_loadable(Report())


def test_assert_torch_loadable_checks_only_the_target() -> None:
    ok = Prediction("torch", "2.9.0", "ok")
    bad = Prediction("torchvision", "0.24.0", "fails", winerror=127, dll="_C.pyd", culprit="c10 symbol")
    report = Report((ok, bad))
    assert_torch_loadable(report)
    with pytest.raises(AssertionError, match="torchvision 0.24.0 will not load: WinError 127 on _C.pyd"):
        assert_torch_loadable(report, target="torchvision")


def test_assert_finding(tmp_path: Path) -> None:
    env = WindowsEnv(tmp_path)
    env.add_system()
    env.add_torch("2.9.0")
    env.loaded.append(env.add_dll(f"{env.site_packages}\\PyQt5\\Qt5\\bin\\msvcp140.dll", exports=MSVCP,
                                  file_version=(14, 26, 28720, 3)))
    report = _diagnose(env)
    found = assert_finding(report, "old-msvcp140-preloaded", severity=Severity.ERROR)
    assert isinstance(found, Finding) and found.explains == "torch"
    assert assert_finding(report, "old-msvcp140-preloaded", severity="error") is found
    with pytest.raises(AssertionError, match="has severity error, expected warning"):
        assert_finding(report, "old-msvcp140-preloaded", severity="warning")
    with pytest.raises(AssertionError, match=r"finding nope not in the report \(findings: predicted-load-failure, "):
        assert_finding(report, "nope")


def test_sample_project_is_not_collected_by_this_suite(pytester: pytest.Pytester) -> None:
    # tests/sample_project sits below this suite's testpaths; its conftest skips it when the
    # rootdir is torchdll's own (running it then would need the plugin loaded)
    repo = SAMPLE.parents[1]
    result = pytester.runpytest_subprocess("-c", str(repo / "pyproject.toml"), "--rootdir", str(repo),
                                           "--collect-only", "-q", str(SAMPLE))
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED, result.stdout.str()
    assert "test_startup" not in result.stdout.str()
