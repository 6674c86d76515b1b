"""The application's start-up checks, tested on simulated Windows machines (any OS)."""

from __future__ import annotations

import pytest

from app.startup import StartupError, start
from torchdll.testing import MSVCP, assert_finding, assert_torch_loadable


def test_starts_on_a_healthy_machine(healthy_windows_env, use_windows_env, torch_report):
    assert_torch_loadable(torch_report())
    use_windows_env()
    assert start() == "started with torch 2.9.0+cpu"


def test_refuses_to_start_without_the_vc_redistributable(windows_env, use_windows_env):
    windows_env.add_system(msvcp140=None, vcruntime140=None)
    windows_env.add_torch("2.9.0")
    use_windows_env()
    with pytest.raises(StartupError, match="WinError 126") as info:
        start()
    assert_finding(info.value.report, "vcredist-missing", severity="error")


def test_refuses_to_start_when_qt_preloads_an_old_msvcp140(healthy_windows_env, use_windows_env):
    env = healthy_windows_env
    qt = env.add_dll(f"{env.site_packages}\\PyQt5\\Qt5\\bin\\msvcp140.dll", exports=MSVCP,
                     file_version=(14, 26, 28720, 3))
    env.loaded.append(qt)  # the app imported PyQt5 before torch
    use_windows_env()
    with pytest.raises(StartupError, match="WinError 1114") as info:
        start()
    assert "old-msvcp140-preloaded" in str(info.value)


@pytest.mark.torchdll_env(user="홍길동")
def test_non_ascii_user_name_still_starts(healthy_windows_env, use_windows_env):
    assert "홍길동" in healthy_windows_env.site_packages
    use_windows_env()
    assert start().startswith("started with torch 2.9.0")


def test_torch_missing(windows_env, use_windows_env, torch_report):
    windows_env.add_system()
    with pytest.raises(AssertionError, match="no torch prediction"):
        assert_torch_loadable(torch_report())
    use_windows_env()
    with pytest.raises(StartupError, match="not installed"):
        start()
