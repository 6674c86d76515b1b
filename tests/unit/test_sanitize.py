"""sanitize_path() and plan_sanitize(): policies, the process environment, logging, properties."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from typing import Dict, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.memview import MemoryView
from torchdll.errors import PathValueError
from torchdll.pathenv import EntryKind, Interpreter, PathSyntax, parse_path
from torchdll.sanitize import (
    DEFAULT_POLICY,
    MINIMAL_POLICY,
    POLICIES,
    REPORT_ONLY_POLICY,
    STRICT_POLICY,
    PathPolicy,
    Removal,
    SanitizeResult,
    default_syntax,
    plan_sanitize,
    sanitize_path,
)
from torchdll.snapshot import RegistryValue

REG = PathSyntax.REGISTRY
PROC = PathSyntax.PROCESS
POSIX = PathSyntax.POSIX

HOME = "C:\\Users\\홍길동"
VENV = HOME + "\\proj\\.venv"
TORCH_LIB = VENV + "\\Lib\\site-packages\\torch\\lib"
OLD_LIB = HOME + "\\miniconda3\\envs\\old\\Lib\\site-packages\\torch\\lib"
CONDA_BIN = HOME + "\\miniconda3\\Library\\bin"
ZLUDA_IN_ENV = VENV + "\\Lib\\site-packages\\zluda"
ENV = {"SystemRoot": "C:\\Windows", "USERPROFILE": HOME}
PY = Interpreter(prefix=VENV, exec_prefix=VENV, base_prefix="C:\\Python311", base_exec_prefix="C:\\Python311")

VIEW = MemoryView({
    TORCH_LIB + "\\c10.dll": None,
    TORCH_LIB + "\\torch_cpu.dll": None,
    OLD_LIB + "\\c10.dll": None,
    HOME + "\\miniconda3\\python.exe": None,  # MemoryView lists only direct parents of files
    CONDA_BIN + "\\libiomp5md.dll": None,
    ZLUDA_IN_ENV + "\\nvcuda.dll": None,
    "C:\\zluda\\nvcuda.dll": None,
    "C:\\tools\\msvcp140.dll": None,
    "C:\\Windows\\System32\\kernel32.dll": None,
    "C:\\Windows\\System32\\c10.dll": None,  # a "fix" that poisons System32: still never removed
    "C:\\Program Files\\NVIDIA GPU Computing Toolkit\\CUDA\\v12.4\\bin\\cudart64_12.dll": None,
})

#: The seed user's Path, as the process sees it.
SEED = (
    "C:\\Windows\\system32;C:\\Windows;C:\\Windows\\System32\\Wbem;"
    + HOME + "\\AppData\\Local\\Microsoft\\WindowsApps;"
    + TORCH_LIB + ";" + OLD_LIB + ";C:\\zluda;;bin;" + CONDA_BIN + ";C:\\tools"
)


def plan(value: str, syntax: PathSyntax = PROC, policy: PathPolicy = DEFAULT_POLICY, **kw: object) -> SanitizeResult:
    return plan_sanitize(value, syntax, policy=policy, environ=ENV, view=VIEW, python=PY, **kw)  # type: ignore[arg-type]


def removed_raws(result: SanitizeResult) -> List[str]:
    return [r.entry.raw for r in result.removed]


# --------------------------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------------------------


def test_default_policy_on_the_seed_case() -> None:
    result = plan(SEED)
    assert removed_raws(result) == [TORCH_LIB, OLD_LIB, "", "bin"]
    assert result.new_value == (
        "C:\\Windows\\system32;C:\\Windows;C:\\Windows\\System32\\Wbem;"
        + HOME + "\\AppData\\Local\\Microsoft\\WindowsApps;C:\\zluda;" + CONDA_BIN + ";C:\\tools"
    )
    seed = result.removed[0]
    assert isinstance(seed, Removal)
    entry, reasons = seed
    assert entry.index == 4 and reasons[0].code is EntryKind.THIS_ENV_DLL_DIR
    assert "this environment's site-packages" in seed.reason
    # Reported, not removed: conda base and the folder with an old msvcp140.dll.
    reported = {e.raw: e.kind for e in result.reported}
    assert reported[CONDA_BIN] is EntryKind.FOREIGN_CONDA_BIN
    assert reported["C:\\tools"] is EntryKind.SHADOWING_DLLS
    assert reported["C:\\zluda"] is EntryKind.NVCUDA_PROVIDER
    assert [e.index for e in result.kept] == [0, 1, 2, 3, 6, 9, 10]
    assert result.changed and not result.applied and result.policy == "default"


def test_minimal_strict_and_report_only_policies() -> None:
    assert removed_raws(plan(SEED, policy=MINIMAL_POLICY)) == [TORCH_LIB, OLD_LIB]
    strict = plan(SEED, policy=STRICT_POLICY)
    apps = HOME + "\\AppData\\Local\\Microsoft\\WindowsApps"  # missing in this view
    assert removed_raws(strict) == [apps, TORCH_LIB, OLD_LIB, "", "bin", CONDA_BIN, "C:\\tools"]
    nothing = plan(SEED, policy=REPORT_ONLY_POLICY)
    assert nothing.removed == () and nothing.new_value == SEED and not nothing.changed
    assert set(POLICIES) == {"default", "minimal", "strict", "report-only"}
    assert PathPolicy.named("strict") is STRICT_POLICY
    with pytest.raises(ValueError, match="unknown PATH policy"):
        PathPolicy.named("aggressive")


def test_system_folders_survive_every_policy() -> None:
    value = "C:\\Windows\\System32;c:/windows/system32/;%SystemRoot%;C:\\Windows\\System32\\nowhere"
    everything = PathPolicy(name="everything", strip=frozenset(EntryKind))
    for policy in (*POLICIES.values(), everything):
        for syntax in (PROC, REG):
            assert plan(value, syntax, policy).new_value == value, (policy.name, syntax)


def test_a_variable_expanding_to_several_folders_is_never_removed() -> None:
    env = dict(ENV, MYLIBS=OLD_LIB + ";C:\\tools")
    value = "%MYLIBS%;" + OLD_LIB
    for policy in POLICIES.values():
        result = plan_sanitize(value, REG, policy=policy, environ=env, view=VIEW, python=PY)
        assert "%MYLIBS%" in [e.raw for e in result.kept], policy.name
    everything = PathPolicy(name="everything", strip=frozenset(EntryKind))
    result = plan_sanitize(value, REG, policy=everything, environ=env, view=VIEW, python=PY)
    assert result.new_value == ""


def test_nvcuda_providers_are_kept_unless_the_policy_says_otherwise() -> None:
    assert plan(ZLUDA_IN_ENV).removed == ()  # a DLL folder of this env, but it supplies nvcuda.dll
    no_keep = PathPolicy(name="no-zluda", keep_nvcuda_providers=False)
    assert removed_raws(plan(ZLUDA_IN_ENV, policy=no_keep)) == [ZLUDA_IN_ENV]


def test_policy_coerces_strings_and_is_frozen() -> None:
    policy = PathPolicy(name="x", strip=frozenset({"empty"}))  # type: ignore[arg-type]
    assert policy.strip == frozenset({EntryKind.EMPTY})
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.name = "y"  # type: ignore[misc]


def test_removing_duplicates_keeps_the_first_occurrence() -> None:
    dups = PathPolicy(name="dups", strip=frozenset({EntryKind.DUPLICATE}))
    result = plan("C:\\a;C:\\A\\;c:/a;C:\\b", policy=dups)
    assert result.new_value == "C:\\a;C:\\b"
    assert [r.entry.index for r in result.removed] == [1, 2]


def test_the_plan_is_a_fixed_point() -> None:
    # Removing the quoted copy must not turn its twin into a removable duplicate, and so on.
    for value in ('"C:\\a";C:\\a;C:\\a', "C:\\a;;C:\\a;bin;C:\\a", "bin;bin;;"):
        first = plan(value, policy=STRICT_POLICY)
        again = plan(first.new_value, policy=STRICT_POLICY)
        assert again.removed == () and again.new_value == first.new_value


def test_registry_values_keep_quotes_vars_and_the_terminator() -> None:
    value = '%SystemRoot%\\system32;"C:\\Program Files\\x;y";%NOPE%\\bin;' + TORCH_LIB + ";"
    result = plan(value, REG)
    assert result.new_value == '%SystemRoot%\\system32;"C:\\Program Files\\x;y";%NOPE%\\bin;'
    assert result.reg_type == "REG_EXPAND_SZ" and result.syntax is REG


def test_everything_removed_gives_an_empty_value() -> None:
    assert plan(TORCH_LIB + ";;", REG).new_value == ""


def test_to_dict_is_json() -> None:
    data = plan(SEED).to_dict()
    text = json.dumps(data, ensure_ascii=False)
    assert json.loads(text)["removed"][0]["removed_for"] == ["this-env-dll-dir"]
    assert data["kept"][0]["kind"] == "system-dir"


# --------------------------------------------------------------------------------------------
# sanitize_path(): the process environment
# --------------------------------------------------------------------------------------------


def test_sanitize_path_applies_to_the_environment_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    env: Dict[str, str] = dict(ENV, Path=SEED)
    with caplog.at_level(logging.INFO, logger="torchdll"):
        result = sanitize_path(environ=env, syntax=PROC, view=VIEW, python=PY)
    assert result.applied and env["Path"] == result.new_value and "PATH" not in env
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4
    assert f'"{TORCH_LIB}"' in warnings[0].getMessage()
    assert "this-env-dll-dir" in warnings[0].getMessage()
    assert "(empty entry)" in warnings[2].getMessage()
    assert all(r.name == "torchdll" for r in caplog.records)
    assert any("fix-path" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_sanitize_path_with_a_string_only_plans(caplog: pytest.LogCaptureFixture) -> None:
    env = dict(ENV, PATH="C:\\keep")
    with caplog.at_level(logging.DEBUG, logger="torchdll"):
        result = sanitize_path(SEED, environ=env, syntax=PROC, view=VIEW, python=PY)
    assert not result.applied and env["PATH"] == "C:\\keep"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    forced = sanitize_path(SEED, environ=env, syntax=PROC, view=VIEW, python=PY, apply=True)
    assert forced.applied and env["PATH"] == forced.new_value


def test_sanitize_path_without_changes_writes_nothing() -> None:
    class Guarded(dict):  # type: ignore[type-arg]
        def __setitem__(self, key: str, value: str) -> None:
            raise AssertionError("nothing to write")

    env = Guarded(ENV, PATH="C:\\Windows\\System32")
    result = sanitize_path(environ=env, syntax=PROC, view=VIEW, python=PY)
    assert not result.applied and not result.changed


def test_sanitize_path_without_a_path_variable() -> None:
    env: Dict[str, str] = dict(ENV)
    result = sanitize_path(environ=env, syntax=PROC, view=VIEW, python=PY)
    assert result.new_value == "" and "PATH" not in env


def test_sanitize_path_reads_a_registry_value_as_a_plan() -> None:
    value = RegistryValue("%SystemRoot%\\system32;" + TORCH_LIB + ";", "REG_EXPAND_SZ")
    result = sanitize_path(value, environ=dict(ENV), view=VIEW, python=PY)
    assert result.syntax is REG and result.new_value == "%SystemRoot%\\system32;"
    with pytest.raises(ValueError, match="apply_path_repair"):
        sanitize_path(value, environ=dict(ENV), view=VIEW, python=PY, apply=True)
    with pytest.raises(ValueError, match="apply_path_repair"):
        sanitize_path(environ=dict(ENV), syntax=REG, view=VIEW, python=PY)
    with pytest.raises(TypeError):
        sanitize_path(42, view=VIEW, python=PY)  # type: ignore[arg-type]


def test_a_nul_that_would_be_written_is_a_typed_error() -> None:
    keeps_nul = PathPolicy(name="relative-only", strip=frozenset({EntryKind.RELATIVE}))
    env = dict(ENV, PATH="bin;C:\\a\x00b")
    with pytest.raises(PathValueError, match="NUL"):
        sanitize_path(environ=env, syntax=PROC, view=VIEW, python=PY, policy=keeps_nul)
    assert env["PATH"] == "bin;C:\\a\x00b"
    # The default policy removes the unusable entry instead.
    assert sanitize_path(environ=env, syntax=PROC, view=VIEW, python=PY).new_value == ""


def test_posix_paths_are_left_alone_by_default() -> None:
    env = {"PATH": "/usr/bin::relative:/usr/bin"}
    result = sanitize_path(environ=env, syntax=POSIX, view=VIEW, python=PY)
    assert not result.changed and env["PATH"] == "/usr/bin::relative:/usr/bin"
    kinds = {k for e in result.reported for k in e.kinds}
    assert kinds == {EntryKind.EMPTY, EntryKind.RELATIVE, EntryKind.DUPLICATE, EntryKind.MISSING}
    strict = sanitize_path(environ=env, syntax=POSIX, view=VIEW, python=PY, policy=STRICT_POLICY)
    assert env["PATH"] == "/usr/bin" and strict.applied


def test_default_syntax_follows_the_platform() -> None:
    assert default_syntax("win32") is PROC
    assert default_syntax("linux") is POSIX and default_syntax("darwin") is POSIX


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX defaults")
def test_sanitize_path_defaults_to_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin::/bin")
    result = sanitize_path()
    assert result.syntax is POSIX and result.old_value == "/usr/bin::/bin"
    assert not result.changed and os.environ["PATH"] == "/usr/bin::/bin"


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

SYSTEM_SPELLINGS = [
    "%SystemRoot%\\system32", "%SYSTEMROOT%", "%windir%\\System32\\Wbem", "C:\\Windows\\System32",
    "c:/windows/system32/", "C:\\WINDOWS", "\\\\?\\C:\\Windows\\System32", '"C:\\Windows\\System32"',
    "C:\\Windows\\SysWOW64\\", "C:\\Windows\\System32\\OpenSSH\\",
]
POOL = SYSTEM_SPELLINGS + [
    TORCH_LIB, TORCH_LIB + "\\", OLD_LIB, CONDA_BIN, "C:\\zluda", "C:\\tools", ZLUDA_IN_ENV,
    "C:\\Program Files\\NVIDIA GPU Computing Toolkit\\CUDA\\v12.4\\bin", "", "bin", "C:foo", "\\x",
    '"C:\\a;b"', '"C:\\unclosed', "%NOPE%\\x", "%USERPROFILE%\\bin", "100%", "%", "\\\\srv\\share",
    "\\\\?\\C:\\x", HOME + "\\AppData\\Local\\Microsoft\\WindowsApps", "C:\\a\x00b", "C:\\A", "c:/a/",
]
entry_text = st.one_of(
    st.sampled_from(POOL),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.text(alphabet='C:\\/;"%.ab홍 ', max_size=10),
)
values = st.builds(
    lambda parts, trail: ";".join(parts) + (";" if trail else ""),
    st.lists(entry_text, max_size=12),
    st.booleans(),
)
syntaxes = st.sampled_from([REG, PROC])
policies = st.sampled_from(list(POLICIES.values()))
PROPS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def is_subsequence(small: List[str], big: List[str]) -> bool:
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


@PROPS
@given(values, syntaxes)
def test_property_parse_round_trips(value: str, syntax: PathSyntax) -> None:
    assert parse_path(value, syntax, environ=ENV).serialize() == value


@PROPS
@given(values, syntaxes, policies)
def test_property_idempotent(value: str, syntax: PathSyntax, policy: PathPolicy) -> None:
    first = plan(value, syntax, policy)
    second = plan(first.new_value, syntax, policy)
    assert second.new_value == first.new_value and second.removed == ()


@PROPS
@given(values, syntaxes, policies)
def test_property_order_preserving_and_never_adds(value: str, syntax: PathSyntax, policy: PathPolicy) -> None:
    result = plan(value, syntax, policy)
    before = [e.raw for e in parse_path(value, syntax, environ=ENV).entries]
    after = [e.raw for e in parse_path(result.new_value, syntax, environ=ENV).entries]
    assert is_subsequence(after, before)
    assert len(after) <= len(before)
    assert [e.raw for e in result.kept] == after or (after == [] and all(e.raw == "" for e in result.kept))
    indices = [e.index for e in result.kept]
    assert indices == sorted(indices)
    assert sorted(indices + [r.entry.index for r in result.removed]) == list(range(len(before)))


@PROPS
@given(values, st.lists(st.sampled_from(SYSTEM_SPELLINGS), min_size=1, max_size=4), syntaxes, policies)
def test_property_never_removes_windows_folders(value: str, system: List[str], syntax: PathSyntax,
                                                policy: PathPolicy) -> None:
    combined = ";".join(system) + ";" + value
    result = plan(combined, syntax, policy)
    kept = [e.raw for e in result.kept]
    for spelling in system:
        assert spelling in kept
    assert not any(r.entry.has(EntryKind.SYSTEM_DIR) for r in result.removed)


@PROPS
@given(values, syntaxes, policies)
def test_property_kept_entries_keep_quotes_and_vars_verbatim(value: str, syntax: PathSyntax,
                                                            policy: PathPolicy) -> None:
    result = plan(value, syntax, policy)
    originals = {e.index: e.raw for e in parse_path(value, syntax, environ=ENV).entries}
    for e in result.kept:
        assert e.raw == originals[e.index]
    for r in result.removed:
        assert r.entry.raw == originals[r.entry.index] and r.reasons


@PROPS
@given(st.text(max_size=40), st.sampled_from(list(PathSyntax)))
def test_property_arbitrary_text_never_crashes(value: str, syntax: PathSyntax) -> None:
    result = plan(value, syntax)
    assert len(result.new_value) <= len(value)


def test_an_empty_entry_left_alone_is_still_written_and_accounted_for() -> None:
    minimal = plan(";" + TORCH_LIB, REG, MINIMAL_POLICY)
    assert minimal.new_value == ";" and [e.index for e in minimal.kept] == [0]
    relative_only = PathPolicy(name="relative", strip_posix=frozenset({EntryKind.RELATIVE}))
    posix = plan(":bin", POSIX, relative_only)
    assert posix.new_value == "" and posix.kept == ()
    assert sorted(r.entry.index for r in posix.removed) == [0, 1]
    assert "on its own" in posix.removed[0].reason


@PROPS
@given(values, syntaxes, st.data())
def test_property_any_subset_serializes_and_parses_back(value: str, syntax: PathSyntax,
                                                       data: st.DataObject) -> None:
    parsed = parse_path(value, syntax, environ=ENV)
    keep = [e for e in parsed.entries if data.draw(st.booleans())]
    again = parse_path(parsed.serialize(keep), syntax, environ=ENV)
    assert [e.raw for e in again.entries] == [e.raw for e in keep]
