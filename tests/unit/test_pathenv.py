"""PATH parsing and classification (torchdll.pathenv), on mirrored Windows trees (any OS)."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import ClassVar, Dict, Iterable, List, Mapping, Optional

import pytest

from tests.support.memview import MemoryView
from torchdll.fsview import MirrorView, NativeView
from torchdll.pathenv import (
    EntryKind,
    Interpreter,
    PathEntry,
    PathSyntax,
    Severity,
    analyze_path,
    classify_path,
    expand_vars,
    parse_path,
)
from torchdll.snapshot import PythonInfo

REG = PathSyntax.REGISTRY
PROC = PathSyntax.PROCESS
POSIX = PathSyntax.POSIX

HOME = "C:\\Users\\홍길동"
VENV = HOME + "\\proj\\.venv"
TORCH_LIB = VENV + "\\Lib\\site-packages\\torch\\lib"
OLD_ENV = HOME + "\\miniconda3\\envs\\old"
OLD_LIB = OLD_ENV + "\\Lib\\site-packages\\torch\\lib"
CONDA_BASE = HOME + "\\miniconda3"
ENV = {"SystemRoot": "C:\\Windows", "USERPROFILE": HOME, "ProgramFiles": "C:\\Program Files"}
PY = Interpreter(prefix=VENV, exec_prefix=VENV, base_prefix="C:\\Python311", base_exec_prefix="C:\\Python311")


def mirror(root: Path, files: Iterable[str]) -> MirrorView:
    """Create empty files at Windows paths under ``root`` (``C:\\x`` -> ``root/C/x``)."""
    for win in files:
        drive, rest = win.split(":\\", 1) if ":\\" in win else ("UNC", win.lstrip("\\"))
        host = root.joinpath(drive, *rest.split("\\"))
        if win.endswith("\\"):
            host.mkdir(parents=True, exist_ok=True)
        else:
            host.parent.mkdir(parents=True, exist_ok=True)
            host.write_bytes(b"")
    return MirrorView(root)


@pytest.fixture
def tree(tmp_path: Path) -> MirrorView:
    return mirror(tmp_path, [
        TORCH_LIB + "\\c10.dll",
        TORCH_LIB + "\\torch_cpu.dll",
        VENV + "\\Scripts\\python.exe",
        VENV + "\\Lib\\site-packages\\nvidia\\cudnn\\bin\\cudnn64_9.dll",
        OLD_LIB + "\\c10.dll",
        OLD_LIB + "\\torch_cpu.dll",
        OLD_ENV + "\\Lib\\site-packages\\nvidia\\cublas\\bin\\cublas64_12.dll",
        OLD_ENV + "\\Lib\\site-packages\\somepkg\\bin\\tool.exe",
        CONDA_BASE + "\\conda-meta\\history",
        CONDA_BASE + "\\python.exe",
        CONDA_BASE + "\\python311.dll",
        CONDA_BASE + "\\Library\\bin\\libiomp5md.dll",
        CONDA_BASE + "\\Library\\bin\\mkl_core.2.dll",
        "C:\\Python311\\python.exe",
        "C:\\Python311\\Library\\bin\\zlib.dll",
        "C:\\Windows\\System32\\kernel32.dll",
        "C:\\Windows\\System32\\Wbem\\wmic.exe",
        "C:\\Windows\\SysWOW64\\kernel32.dll",
        "C:\\Windows\\notepad.exe",
        "C:\\zluda\\nvcuda.dll",
        "C:\\zluda\\cublas64_11.dll",
        "C:\\tools\\msvcp140.dll",
        "C:\\tools\\libiomp5md.dll",
        "C:\\empty\\",
        "C:\\libtorch\\lib\\c10.dll",
        "C:\\libtorch\\lib\\torch.dll",
        "C:\\Program Files\\NVIDIA GPU Computing Toolkit\\CUDA\\v12.4\\bin\\cudart64_12.dll",
        "C:\\Program Files\\NVIDIA\\CUDNN\\v9.1\\bin\\cudnn64_9.dll",
        "C:\\Program Files\\Git\\cmd\\git.exe",
        "C:\\cuda_custom\\bin\\nvcc.exe",
        "D:\\Python39\\python39.dll",
        "D:\\Python39\\python.exe",
        "\\\\server\\share\\torch\\lib\\c10.dll",
    ])


def analyze(value: str, view: object, syntax: PathSyntax = REG, *, environ: Mapping[str, str] = ENV,
            python: object = PY, **kw: object) -> tuple[PathEntry, ...]:
    parsed = analyze_path(value, syntax, environ=environ, view=view, python=python, **kw)  # type: ignore[arg-type]
    assert parsed.serialize() == value
    return parsed.entries


def one(value: str, view: object, syntax: PathSyntax = REG, **kw: object) -> PathEntry:
    entries = analyze(value, view, syntax, **kw)
    assert len(entries) == 1, entries
    return entries[0]


# --------------------------------------------------------------------------------------------
# Parsing: splitting and round trips
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    "",
    ";",
    ";;",
    "C:\\a",
    "C:\\a;",
    "C:\\a;;",
    ";C:\\a",
    '"C:\\with;semicolon";C:\\b',
    '"C:\\unclosed;C:\\b',
    'C:\\a";C:\\b";C:\\c',
    "%SystemRoot%\\system32;%SYSTEMROOT%;%NotDefined%\\x;",
    "100%;C:\\a%b;%",
    "c:/Mixed/CASE/;C:\\Trailing\\\\",
    HOME + "\\AppData\\Local\\Microsoft\\WindowsApps;",
    "C:\\nul\x00here;C:\\ok",
    "\\\\?\\C:\\x;\\\\server\\share;\\\\?\\UNC\\server\\share\\y",
    "  spaced  ; C:\\a ",
])
@pytest.mark.parametrize("syntax", [REG, PROC, POSIX])
def test_serialize_gives_back_the_exact_value(value: str, syntax: PathSyntax) -> None:
    parsed = parse_path(value, syntax, environ=ENV)
    assert parsed.serialize() == value


def test_a_single_trailing_semicolon_is_a_terminator_not_an_entry() -> None:
    parsed = parse_path(HOME + "\\AppData\\Local\\Microsoft\\WindowsApps;", REG)
    assert [e.raw for e in parsed.entries] == [HOME + "\\AppData\\Local\\Microsoft\\WindowsApps"]
    assert parsed.terminated
    parsed = parse_path("A;;", REG)
    assert [e.raw for e in parsed.entries] == ["A", ""] and parsed.terminated
    assert parse_path("", REG).entries == ()
    assert [e.raw for e in parse_path(";", REG).entries] == [""]


def test_quotes_group_semicolons_in_both_windows_syntaxes() -> None:
    for syntax in (REG, PROC):
        parsed = parse_path('"C:\\a;b";C:\\c', syntax)
        assert [e.raw for e in parsed.entries] == ['"C:\\a;b"', "C:\\c"]


def test_an_unmatched_quote_is_literal_and_does_not_swallow_the_rest() -> None:
    parsed = parse_path('"C:\\a;C:\\b;C:\\c', REG)
    assert [e.raw for e in parsed.entries] == ['"C:\\a', "C:\\b", "C:\\c"]
    assert parsed.entries[0].has(EntryKind.QUOTED)
    assert "unmatched" in parsed.entries[0].issue(EntryKind.QUOTED).reason  # type: ignore[union-attr]
    assert not parsed.entries[1].issues


def test_posix_splits_on_colons_without_quotes_or_variables() -> None:
    parsed = parse_path('/usr/bin:"/opt/x;y":%HOME%/bin:', POSIX, environ={"HOME": "/root"})
    assert [e.raw for e in parsed.entries] == ["/usr/bin", '"/opt/x;y"', "%HOME%/bin", ""]
    assert parsed.entries[2].expanded == "%HOME%/bin"
    assert parsed.entries[3].kind is EntryKind.EMPTY
    assert parsed.entries[3].severity is Severity.WARNING  # the current directory on POSIX


def test_rejects_non_strings_and_unknown_registry_types() -> None:
    with pytest.raises(TypeError):
        parse_path(b"C:\\a", REG)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="REG_SZ"):
        parse_path("C:\\a", REG, reg_type="REG_DWORD")


# --------------------------------------------------------------------------------------------
# %VAR% expansion (registry REG_EXPAND_SZ only)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("%SystemRoot%\\system32", "C:\\Windows\\system32"),
    ("%SYSTEMROOT%\\x", "C:\\Windows\\x"),        # names are case-insensitive
    ("%systemroot%%SystemRoot%", "C:\\WindowsC:\\Windows"),
    ("%NOPE%\\x", "%NOPE%\\x"),                    # undefined: kept as written
    ("100%", "100%"),                              # a lone % is literal
    ("%", "%"),
    ("%%", "%%"),
    ("a%NOPE%SystemRoot%", "a%NOPE%SystemRoot%"),   # scanning resumes after the closing %
    ("%NOPE%%SystemRoot%", "%NOPE%C:\\Windows"),
    ("%REC%", "%SystemRoot%"),                     # no second expansion
    ("%홍%", "길동"),
])
def test_expand_vars_follows_expand_environment_strings(text: str, expected: str) -> None:
    env = {"SystemRoot": "C:\\Windows", "REC": "%SystemRoot%", "홍": "길동"}
    assert expand_vars(text, env) == expected


def test_reg_expand_sz_is_expanded_and_reg_sz_is_not() -> None:
    expanded = parse_path("%SystemRoot%\\system32", REG, reg_type="REG_EXPAND_SZ", environ=ENV)
    assert expanded.entries[0].expanded == "C:\\Windows\\system32"
    literal = parse_path("%SystemRoot%\\system32;%TOOLS%\\bin", REG, reg_type="REG_SZ", environ=ENV)
    assert literal.entries[0].expanded == "%SystemRoot%\\system32"
    issue = literal.entries[1].issue(EntryKind.UNEXPANDED)
    assert issue is not None and "REG_SZ" in issue.reason and "never expands" in issue.reason
    assert literal.reg_type == "REG_SZ"


def test_unexpanded_variables_name_no_folder() -> None:
    e = parse_path("%NOPE%\\bin", REG, environ=ENV).entries[0]
    assert e.kind is EntryKind.UNEXPANDED and e.folders == ()
    assert "not defined" in e.issues[0].reason
    p = parse_path("%NOPE%\\bin", PROC).entries[0]
    assert p.kind is EntryKind.UNEXPANDED and "left unexpanded" in p.issues[0].reason


def test_process_path_is_never_expanded_again() -> None:
    e = parse_path("%SystemRoot%\\x", PROC, environ=ENV).entries[0]
    assert e.expanded == "%SystemRoot%\\x"


def test_a_variable_holding_semicolons_gives_several_loader_folders(tmp_path: Path) -> None:
    view = mirror(tmp_path, [OLD_LIB + "\\c10.dll", "C:\\ok\\a.dll"])
    env = dict(ENV, MORE="C:\\ok;" + OLD_LIB)
    e = one("%MORE%", view, environ=env)
    assert e.folders == ("C:\\ok", OLD_LIB)
    assert e.kinds == (EntryKind.VARIABLE_LIST,) and e.severity is Severity.WARNING
    assert f"{OLD_LIB}: foreign-torch-lib" in e.issues[0].reason and "edit the variable" in e.issues[0].reason
    # %PATH% in a registry value: protected as a system folder too, System32 never listed.
    env = dict(ENV, PATH="C:\\Windows\\System32;C:\\ok")
    p = one("%PATH%", view, environ=env)
    assert p.kinds == (EntryKind.SYSTEM_DIR, EntryKind.VARIABLE_LIST)


# --------------------------------------------------------------------------------------------
# Shapes: quoted, relative, UNC, \\?\, invalid
# --------------------------------------------------------------------------------------------


def test_quoted_entries_never_match_a_folder_for_the_loader(tree: MirrorView) -> None:
    proc = one(f'"{TORCH_LIB}"', tree, PROC)
    assert proc.kind is EntryKind.QUOTED and proc.folders == ()
    reason = proc.issues[0].reason
    assert "literally" in reason and "never matches a folder for DLL loading" in reason
    assert not proc.has(EntryKind.THIS_ENV_DLL_DIR)  # the loader never reaches its DLLs
    reg = one(f'"{TORCH_LIB}"', tree, REG)
    assert "copies the quotes" in reg.issues[0].reason


def test_a_quoted_entry_with_semicolons_is_split_by_the_loader(tree: MirrorView) -> None:
    e = one(f'"C:\\x;{OLD_LIB};C:\\y"', tree, PROC)
    assert e.folders == (OLD_LIB,)  # the unquoted middle piece is a real folder to the loader
    assert e.has(EntryKind.QUOTED) and e.has(EntryKind.FOREIGN_TORCH_LIB)
    assert "splits it at ';'" in e.issue(EntryKind.QUOTED).reason  # type: ignore[union-attr]


@pytest.mark.parametrize("raw, what", [
    ("bin", "relative ('bin')"),
    (".\\tools", "relative"),
    ("..\\x", "relative"),
    ("C:foo", "drive-relative ('C:foo')"),
    ("C:", "drive-relative"),
    ("\\tools", "root-relative"),
    ("/tools", "root-relative"),
])
def test_relative_entries_depend_on_the_current_directory(raw: str, what: str) -> None:
    e = one(raw, MemoryView(), PROC)
    assert e.kind is EntryKind.RELATIVE and e.severity is Severity.WARNING
    assert what in e.issues[0].reason


@pytest.mark.parametrize("raw", ["C:\\x", "c:/x", "C:\\", "D:/"])
def test_absolute_entries_are_not_relative(raw: str) -> None:
    assert not one(raw, MemoryView(), PROC).has(EntryKind.RELATIVE)


def test_unc_folders_are_not_looked_into_unless_asked(tree: MirrorView) -> None:
    entry = one("\\\\server\\share\\torch\\lib", tree, REG)
    assert entry.kinds == (EntryKind.UNC,)  # not MISSING, not FOREIGN: never touched
    looked = one("\\\\server\\share\\torch\\lib", tree, REG, look_into_network=True)
    assert looked.has(EntryKind.FOREIGN_TORCH_LIB) and looked.has(EntryKind.UNC)


def test_extended_paths_are_classified_and_looked_into(tree: MirrorView) -> None:
    e = one("\\\\?\\" + OLD_LIB, tree, REG)
    assert e.has(EntryKind.EXTENDED_PATH) and e.has(EntryKind.FOREIGN_TORCH_LIB)
    assert e.normalized == one(OLD_LIB, tree, REG).normalized


def test_nul_and_control_characters_are_invalid_and_never_reach_the_view() -> None:
    class Exploding:
        def listdir(self, win_dir: str) -> Mapping[str, str]:
            raise AssertionError("the view must not be asked")

        def host_path(self, win_path: str) -> Optional[str]:
            raise AssertionError("the view must not be asked")

    for raw in ("C:\\a\x00b", "C:\\tab\there"):
        e = one(raw, Exploding(), PROC)
        assert e.kind is EntryKind.INVALID and e.folders == ()


def test_native_view_survives_nul_and_windows_paths_on_any_os() -> None:
    entries = analyze("C:\\nope\x00;C:\\Windows\\System32;" + TORCH_LIB, NativeView(), PROC)
    assert entries[0].kind is EntryKind.INVALID


# --------------------------------------------------------------------------------------------
# Duplicates
# --------------------------------------------------------------------------------------------


def test_duplicates_ignore_case_slashes_trailing_separators_and_dots() -> None:
    value = "C:\\Tools;c:/tools/;C:\\TOOLS\\\\;C:\\x\\..\\tools;C:\\tools.;\\\\?\\C:\\tools;C:\\other"
    entries = analyze(value, MemoryView(), PROC)
    assert not entries[0].has(EntryKind.DUPLICATE)
    for e in entries[1:6]:
        issue = e.issue(EntryKind.DUPLICATE)
        assert issue is not None and "entry #1" in issue.reason, e.raw
    assert not entries[6].has(EntryKind.DUPLICATE)


def test_a_quoted_and_an_unquoted_spelling_are_not_duplicates() -> None:
    entries = analyze('"C:\\a";C:\\a', MemoryView(), PROC)
    assert not entries[1].has(EntryKind.DUPLICATE)


def test_non_ascii_duplicates_compare_case_insensitively() -> None:
    entries = analyze("C:\\Users\\Émile\\bin;c:\\users\\émile\\BIN", MemoryView(), PROC)
    assert entries[1].has(EntryKind.DUPLICATE)


# --------------------------------------------------------------------------------------------
# Folder classification (mirrored tree)
# --------------------------------------------------------------------------------------------


def test_seed_case_this_environments_torch_lib(tree: MirrorView) -> None:
    e = one(TORCH_LIB, tree)
    assert e.kind is EntryKind.THIS_ENV_DLL_DIR and e.severity is Severity.WARNING
    assert "this environment's site-packages" in e.issues[0].reason
    assert "c10.dll" in e.issues[0].reason


def test_another_dll_folder_of_this_environment(tree: MirrorView) -> None:
    e = one(VENV + "\\Lib\\site-packages\\nvidia\\cudnn\\bin", tree)
    assert e.kind is EntryKind.THIS_ENV_DLL_DIR
    assert not e.has(EntryKind.CUDA_TOOLKIT_BIN)  # a wheel's bundle, not a toolkit


def test_another_environments_torch_lib(tree: MirrorView) -> None:
    e = one(OLD_LIB + "\\", tree)
    assert e.kind is EntryKind.FOREIGN_TORCH_LIB and e.severity is Severity.ERROR
    assert OLD_ENV in e.issues[0].reason  # the environment root, in its original case


def test_another_environments_cuda_bundle(tree: MirrorView) -> None:
    e = one(OLD_ENV + "\\Lib\\site-packages\\nvidia\\cublas\\bin", tree)
    assert e.kind is EntryKind.OTHER_ENV_DLL_DIR


def test_site_packages_folders_without_dlls_are_fine(tree: MirrorView) -> None:
    assert one(OLD_ENV + "\\Lib\\site-packages\\somepkg\\bin", tree).issues == ()


def test_a_libtorch_lib_outside_site_packages_is_foreign(tree: MirrorView) -> None:
    e = one("C:\\libtorch\\lib", tree)
    assert e.kind is EntryKind.FOREIGN_TORCH_LIB and "libtorch" in e.issues[0].reason


def test_user_site_counts_as_this_environment(tmp_path: Path) -> None:
    site = HOME + "\\AppData\\Roaming\\Python\\Python311\\site-packages"
    view = mirror(tmp_path, [site + "\\torch\\lib\\c10.dll"])
    enabled = Interpreter(prefix=VENV, exec_prefix=VENV, user_site=site, user_site_enabled=True)
    disabled = Interpreter(prefix=VENV, exec_prefix=VENV, user_site=site, user_site_enabled=False)
    assert one(site + "\\torch\\lib", view, python=enabled).kind is EntryKind.THIS_ENV_DLL_DIR
    assert one(site + "\\torch\\lib", view, python=disabled).kind is EntryKind.FOREIGN_TORCH_LIB


def test_another_conda_environments_library_bin(tree: MirrorView) -> None:
    e = one(CONDA_BASE + "\\Library\\bin", tree)
    assert e.kind is EntryKind.FOREIGN_CONDA_BIN
    assert "libiomp5md.dll" in e.issues[0].reason
    assert not e.has(EntryKind.SHADOWING_DLLS)  # said once


def test_this_installations_library_bin_is_not_foreign(tree: MirrorView) -> None:
    assert one("C:\\Python311\\Library\\bin", tree).issues == ()
    conda_py = Interpreter(prefix=CONDA_BASE, exec_prefix=CONDA_BASE, base_prefix=CONDA_BASE,
                           base_exec_prefix=CONDA_BASE)
    assert one(CONDA_BASE + "\\Library\\bin", tree, python=conda_py).issues == ()


def test_cuda_toolkit_folders_by_location_variable_and_content(tree: MirrorView) -> None:
    by_location = one("C:\\Program Files\\NVIDIA GPU Computing Toolkit\\CUDA\\v12.4\\bin", tree)
    assert by_location.kind is EntryKind.CUDA_TOOLKIT_BIN
    by_content = one("C:\\Program Files\\NVIDIA\\CUDNN\\v9.1\\bin", tree)
    assert by_content.kind is EntryKind.CUDA_TOOLKIT_BIN and "cudnn64_9.dll" in by_content.issues[0].reason
    env = dict(ENV, CUDA_PATH_V11_8="C:\\cuda_custom")
    by_variable = one("C:\\cuda_custom\\bin", tree, environ=env)
    assert by_variable.kind is EntryKind.CUDA_TOOLKIT_BIN
    assert one("C:\\cuda_custom\\bin", tree).issues == ()


def test_runtime_dlls_are_reported_with_their_position(tree: MirrorView) -> None:
    before, _, after = analyze("C:\\tools;%SystemRoot%\\system32;C:\\tools", tree)
    assert before.has(EntryKind.SHADOWING_DLLS)
    reason = before.issue(EntryKind.SHADOWING_DLLS).reason  # type: ignore[union-attr]
    assert "msvcp140.dll" in reason and "before System32" in reason
    assert "before System32" not in after.issue(EntryKind.SHADOWING_DLLS).reason  # type: ignore[union-attr]


def test_nvcuda_providers_are_recognised(tree: MirrorView) -> None:
    e = one("C:\\zluda", tree)
    assert e.kind is EntryKind.NVCUDA_PROVIDER and "ZLUDA" in e.issues[0].reason


def test_system_folders(tree: MirrorView) -> None:
    value = ("%SystemRoot%\\system32;%SystemRoot%;%SystemRoot%\\System32\\Wbem;C:\\WINDOWS\\SysWOW64;"
             "%windir%\\x;c:/windows/system32/")
    for e in analyze(value, tree):
        assert e.kind is EntryKind.SYSTEM_DIR, e.raw
    # Unexpanded (no SystemRoot in the environment) they are still recognised by their text.
    bare = analyze("%SystemRoot%\\system32;%WINDIR%", tree, environ={})
    assert all(e.has(EntryKind.SYSTEM_DIR) for e in bare)


def test_system_folders_are_not_listed(tmp_path: Path) -> None:
    class Counting(MirrorView):
        asked: ClassVar[List[str]] = []

        def listdir(self, win_dir: str) -> Mapping[str, str]:
            self.asked.append(win_dir)
            return super().listdir(win_dir)

    mirror(tmp_path, ["C:\\Windows\\System32\\c10.dll"])
    view = Counting(tmp_path)
    one("C:\\Windows\\System32", view)
    assert view.asked == []


def test_missing_and_empty_folders(tree: MirrorView) -> None:
    assert one("C:\\nowhere", tree).kinds == (EntryKind.MISSING,)
    assert one("C:\\empty", tree).issues == ()


def test_user_writable_folders_ahead_of_the_windows_folders(tree: MirrorView) -> None:
    entries = analyze("C:\\empty;C:\\Program Files\\Git\\cmd;%SystemRoot%\\system32;C:\\empty2", tree)
    assert entries[0].has(EntryKind.USER_WRITABLE_AHEAD)
    assert not entries[1].has(EntryKind.USER_WRITABLE_AHEAD)  # Program Files needs admin rights
    assert not entries[3].has(EntryKind.USER_WRITABLE_AHEAD)  # after the system folders
    # Without any Windows folder in the value (a user Path) nothing is "ahead".
    assert not one("C:\\empty", tree).has(EntryKind.USER_WRITABLE_AHEAD)


def test_other_python_installations(tree: MirrorView) -> None:
    e = one("D:\\Python39", tree)
    assert e.kind is EntryKind.OTHER_PYTHON and "python39.dll" in e.issues[0].reason
    assert one(VENV + "\\Scripts", tree).issues == ()  # this environment's own
    assert one("C:\\Python311", tree).issues == ()     # the base of this venv


def test_snapshot_python_info_is_accepted(tree: MirrorView) -> None:
    info = PythonInfo(prefix=VENV, exec_prefix=VENV, base_prefix="C:\\Python311",
                      base_exec_prefix="C:\\Python311")
    assert one(TORCH_LIB, tree, python=info).kind is EntryKind.THIS_ENV_DLL_DIR


def test_interpreter_current_reads_sys() -> None:
    me = Interpreter.current()
    assert me.prefix == sys.prefix and me.exec_prefix == sys.exec_prefix
    assert me.base_prefix == getattr(sys, "base_prefix", sys.prefix)


def test_a_failing_view_does_not_crash_classification() -> None:
    class Broken:
        def listdir(self, win_dir: str) -> Mapping[str, str]:
            raise OSError(5, "Access is denied")

        def host_path(self, win_path: str) -> Optional[str]:
            return win_path

    e = one("C:\\locked", Broken())
    assert e.issues == ()


def test_entry_kind_follows_precedence(tree: MirrorView) -> None:
    e = one("\\\\?\\C:\\nowhere", tree)
    assert e.kinds == (EntryKind.MISSING, EntryKind.EXTENDED_PATH)
    assert e.kind is EntryKind.MISSING and one("C:\\empty", tree).kind is EntryKind.OK
    assert e.reasons[0].startswith("missing: ")


# --------------------------------------------------------------------------------------------
# Absurd input
# --------------------------------------------------------------------------------------------


def test_very_long_values_parse_and_classify_quickly() -> None:
    entries = [f"C:\\dir{i}\\홍길동\\bin" for i in range(3000)]
    value = ";".join(entries) + ";" + "x" * 40000
    assert len(value) > 32767
    start = time.perf_counter()
    parsed = analyze_path(value, REG, environ=ENV, view=MemoryView(), python=PY)
    assert time.perf_counter() - start < 60  # a hang guard, not a speed goal
    assert parsed.serialize() == value and len(parsed.entries) == 3001


@pytest.mark.parametrize("value", [
    '"', '""', '"""', ";\"", "%", "%%%", "%;%", "%\x00%", "\x00", "C:\\\udcff", "\\\\", "\\\\?\\",
    "\\\\?\\UNC\\", "C:\\" + "é" * 5000, ":" * 100, "ß\\İ;ß\\ı", "\\\\server", "\\\\server\\",
])
@pytest.mark.parametrize("syntax", [REG, PROC, POSIX])
def test_odd_values_never_crash(value: str, syntax: PathSyntax) -> None:
    parsed = analyze_path(value, syntax, environ=ENV, view=MemoryView(), python=PY)
    assert parsed.serialize() == value


def test_posix_classification(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    value = f"{tmp_path}/bin:{tmp_path}/bin/::relative:{tmp_path}/nowhere:{tmp_path}/BIN"
    entries = analyze_path(value, POSIX, view=NativeView(), python=PY).entries
    assert entries[0].issues == ()
    assert entries[1].kinds == (EntryKind.DUPLICATE,)
    assert entries[2].kind is EntryKind.EMPTY
    assert entries[3].kind is EntryKind.RELATIVE
    assert entries[4].kind is EntryKind.MISSING
    assert not entries[5].has(EntryKind.DUPLICATE)  # POSIX is case-sensitive


def test_classify_uses_os_environ_and_the_native_view_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SystemRoot", "D:\\Win")
    parsed = classify_path(parse_path("D:\\Win\\System32", PROC))
    assert parsed.entries[0].kind is EntryKind.SYSTEM_DIR
    assert os.environ["SystemRoot"] == "D:\\Win"


def test_entries_are_dataclasses_with_helpers(tree: MirrorView) -> None:
    e = one(TORCH_LIB, tree)
    assert e.issue(EntryKind.MISSING) is None and e.has(EntryKind.THIS_ENV_DLL_DIR)
    assert str(e.issues[0]).startswith("this-env-dll-dir: ")
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.raw = "x"  # type: ignore[misc]
    facts: Dict[str, object] = {"index": e.index, "raw": e.raw}
    assert facts == {"index": 0, "raw": TORCH_LIB}
