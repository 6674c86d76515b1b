"""Behaviour oracles that only a real Windows loader can answer (skipped elsewhere).

See ``docs/windows-ci.md`` and ``.github/workflows/windows.yml``.
"""
