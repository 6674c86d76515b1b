"""Root conftest of the sample project (it also makes ``app`` importable from ``tests/``).

The torchdll plugin is loaded by its ``pytest11`` entry point once torchdll is installed; with
an older install, uncomment: ``pytest_plugins = ["torchdll.pytest_plugin"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

HERE = Path(__file__).resolve().parent


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> Optional[bool]:
    # This folder is a fixture inside torchdll's own test suite, which copies it elsewhere to
    # run it: skip it when it is collected as part of another project.
    if config.rootpath.resolve() != HERE:
        return True
    return None
