"""A tiny user application (a fixture of torchdll's tests: see ``tests/unit/test_pytest_plugin.py``)."""
