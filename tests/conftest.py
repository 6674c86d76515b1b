from __future__ import annotations

import os

import pytest

# Tests must never write into the user's real torchdll cache.
@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    if "TORCHDLL_CACHE_DIR" not in os.environ or os.environ.get("TORCHDLL_TEST_KEEP_CACHE") != "1":
        monkeypatch.setenv("TORCHDLL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "torchdll-cache"))


# Reports and exception messages follow TORCHDLL_LANG or the locale: the suite expects English
# unless a test asks for another language.
@pytest.fixture(autouse=True)
def _english_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHDLL_LANG", "en")
